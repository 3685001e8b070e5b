"""Keras HDF5 models (``model.save("model.h5")`` from Keras 1.x, Keras 2 and tf.keras).

The file is read with h5py first, so that every problem (not HDF5, truncated,
weights only, unknown layer classes, ``Lambda`` bytecode) is reported before any
TensorFlow work, with the path in the message. The architecture is then built
with tf_keras inside the model's own ``tf.Graph`` with the learning phase fixed
to inference (0): Dropout becomes identity and BatchNormalization reads its
moving statistics, so no training branch or ``keras_learning_phase`` switch is
left in the graph. Keras 1.x files are first converted by :mod:`keras1`.

``Lambda`` layers hold marshalled Python bytecode, which runs as soon as the
layer is called, and which only the Python version that wrote it can read.
tf1infer never deserializes it: :mod:`lambda_recovery` reads what each
function computes as data and builds the same computation from TensorFlow ops
when it uses only whitelisted operations (``x / 255.0 - 0.5``,
``K.resize_images(...)``...). A Lambda that is not recovered must be supplied
with ``lambdas={"layer_name": function}`` (the refusal shows what was read of
it), or, for a trusted file written by this Python, ``safe_mode=False``.
"""

from __future__ import annotations

import copy
import inspect
import json
import logging
import os
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np
import tensorflow as tf

try:
    import tf_keras
except ImportError:  # Keras 2 is optional (see loaders/keras_versions.py): the loaders below check for it first.
    tf_keras = None

from tf1infer.errors import ModelLoadError, UnsafeModelError, tensorflow_reason
from tf1infer.loaders import keras1
from tf1infer.loaders.base import LoadedGraph, graph_and_session, require_path
from tf1infer.loaders.cudnn import convert_cudnn_layers
from tf1infer.loaders.hdf5_safety import H5PY_ERRORS, check_global_heaps, check_structure
from tf1infer.loaders.keras_configs import iter_layer_configs
from tf1infer.loaders.keras_versions import require_tf_keras
from tf1infer.loaders.lambda_recovery import NotRecovered, Recovered, recover

logger = logging.getLogger(__name__)

FORMAT = "keras-h5"
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
# Names tf_keras resolves that are not attributes of tf_keras.layers.
_MODEL_CLASSES = {"Functional", "Model", "Sequential"}
# Lambda replacements are registered under this prefix in custom_objects.
_LAMBDA_PREFIX = "tf1infer_lambda:"
# Root attributes Keras writes as text; anything else there is damage.
_TEXT_ATTRIBUTES = ("model_config", "keras_version", "backend", "training_config")


@dataclass(frozen=True)
class LambdaLayerInfo:
    """Where a Lambda layer sits in a model, for error messages and ``inspect``."""

    name: str
    position: int
    layer_count: int
    inbound: tuple[str, ...]
    input_shape: Any
    output_shape: Any
    has_bytecode_mask: bool
    # What the stored bytecode computes (lambda_recovery), or why it was not recovered.
    recovered: Recovered | None = None
    not_recovered: NotRecovered | None = None

    def describe(self) -> str:
        inbound = ", ".join(self.inbound) if self.inbound else "the previous layer"
        text = (
            f"'{self.name}' (layer {self.position} of {self.layer_count}, input from {inbound}, "
            f"input shape {_shape_text(self.input_shape)}, output shape {_shape_text(self.output_shape)})"
        )
        return f"{text}: {self.recovery_text()}"

    def recovery_text(self) -> str:
        if self.recovered is not None:
            return f"computes {self.recovered.expression} (read from its Python {self.recovered.python} bytecode)"
        if self.not_recovered is None:
            return "not read"
        reason = self.not_recovered.reason
        if self.not_recovered.expression:
            return f"reads as {self.not_recovered.expression}, not recovered: {reason}"
        return f"not recovered: {reason}"


def looks_like_hdf5(path: str) -> bool:
    """True if ``path`` is a file starting with the HDF5 signature."""
    if not os.path.isfile(path):
        return False
    with open(path, "rb") as handle:
        return handle.read(8) == _HDF5_SIGNATURE


def load_keras_h5(
    path: str | os.PathLike,
    *,
    custom_objects: Mapping[str, Any] | None = None,
    lambdas: Mapping[str, Callable] | None = None,
    safe_mode: bool = True,
    architecture: Any = None,
    compile: Any = None,
    outputs: Sequence[Any] | None = None,
    session_config: tf.compat.v1.ConfigProto | None = None,
    intra_op_threads: int | None = None,
    inter_op_threads: int | None = None,
) -> LoadedGraph:
    """Load a Keras HDF5 model (or HDF5 weights plus ``architecture``) for inference.

    Args:
        path: the ``.h5`` / ``.hdf5`` file.
        custom_objects: custom layer classes and functions, by the class name
            recorded in the file, as for ``keras.models.load_model``.
        lambdas: replacement functions for ``Lambda`` layers, keyed by layer
            name. Required for every Lambda layer while ``safe_mode`` is True.
            A weightless Keras 3 layer may stand in for one too (the Keras 3
            export then writes that layer instead of the Lambda).
        safe_mode: refuse to deserialize Python bytecode stored in the file.
        architecture: for a weights-only file: a JSON string, a path to a JSON
            file, a config dict, or a function returning a tf_keras model
            (called inside the Predictor's graph).
        compile: accepted for ``keras.models.load_model`` compatibility and
            ignored: inference needs no optimizer or loss.
        outputs: what to fetch instead of the model's outputs: layer names
            (their output, as ``Model(model.input, layer.output)`` gives it) or
            tensor names of the graph, in order; they are named as given.
        session_config: ``tf.compat.v1.ConfigProto`` for the session.
        intra_op_threads, inter_op_threads: thread pool sizes, overriding
            ``session_config``.

    Returns:
        The loaded graph, not yet finalized.

    Raises:
        ModelNotFoundError: ``path`` does not exist.
        ModelLoadError: the file is not a readable Keras model.
        UnsafeModelError: the model has Lambda layers without replacements.
    """
    del compile  # Inference needs no optimizer, loss or metrics.
    path = require_path(path)
    if os.path.isdir(path):
        raise ModelLoadError(f"{path}: is a directory; a Keras HDF5 model is a single .h5 file")
    if not looks_like_hdf5(path):
        raise ModelLoadError(
            f"{path}: not an HDF5 file: expected a Keras model saved with model.save('model.h5'), "
            f"found {_describe_file_start(path)}"
        )
    require_tf_keras(path)
    attrs = _read_root_attributes(path)
    config = _model_config(path, attrs, architecture)
    custom_objects = dict(custom_objects or {})
    lambda_layers: list[LambdaLayerInfo] = []
    from_keras1 = isinstance(config, dict) and keras1.is_keras1(attrs, config)
    if from_keras1:
        config = keras1.convert_config(path, config)
    cudnn_layers: list[str] = []
    if isinstance(config, dict):
        config, cudnn_layers = convert_cudnn_layers(config)
        _drop_newer_defaults(config)
        lambda_layers = _lambda_layers(config, custom_objects, attrs)
        if lambda_layers:
            config = _apply_lambda_policy(path, config, lambda_layers, lambdas, safe_mode, custom_objects)
    elif lambdas:
        raise ModelLoadError(
            f"{path}: lambdas= applies to a model loaded from its config, not to architecture=callable"
        )

    with graph_and_session(session_config, intra_op_threads, inter_op_threads) as (graph, session):
        with graph.as_default(), session.as_default(), _inference_learning_phase():
            bytecode_lambdas = [
                info.name for info in lambda_layers if info.name not in (lambdas or {}) and info.recovered is None
            ]
            model = _build_model(path, config, custom_objects, attrs, bytecode_lambdas)
            flipped: list[str] = []
            if from_keras1:
                keras1.load_weights(path, model, attrs.get("backend"))
            else:
                _load_weights(path, model)
                flipped = _flip_theano_kernels(model, attrs.get("backend"))
            inputs = list(model.inputs)
            output_names = list(model.output_names)
            if outputs is None:
                output_tensors = list(model.outputs)
            else:
                output_names, output_tensors = _chosen_outputs(path, model, graph, outputs)
            metadata = {
                "format": FORMAT,
                "path": os.path.abspath(path),
                "keras_version": attrs.get("keras_version"),
                "converted_from_keras1": from_keras1,
                "backend": attrs.get("backend"),
                "model_class": type(model).__name__,
                "parameters": int(model.count_params()),
                "lambda_layers": [info.name for info in lambda_layers],
            }
            recovered = [info for info in lambda_layers if info.recovered and info.name not in (lambdas or {})]
            if recovered:
                metadata["recovered_lambdas"] = [f"{info.name}: {info.recovery_text()}" for info in recovered]
            if cudnn_layers:
                metadata["cudnn_layers_run_as"] = cudnn_layers
            if flipped:  # Keras 2 Theano files only (keras1 flips Keras 1's itself).
                metadata["theano_kernels_flipped"] = flipped
            if outputs is not None:
                metadata["chosen_outputs"] = output_names
            input_names = list(model.input_names)
        restore_keras_class_versions(model)
    return LoadedGraph(graph, session, inputs, output_tensors, input_names, output_names, metadata, keras_model=model)


def _chosen_outputs(
    path: str, model: Any, graph: tf.Graph, outputs: Sequence[Any]
) -> tuple[list[str], list[tf.Tensor]]:
    """Names and tensors of ``outputs=``: a layer's output by layer name, else a tensor or op of the graph."""
    from tf1infer.loaders.base import resolve_tensor

    items = [outputs] if isinstance(outputs, str) else list(outputs)
    if not items:
        raise ModelLoadError(f"{path}: outputs= is empty; name layers (or tensors) to fetch")
    layers = {layer.name: layer for layer in _all_layers(model)}
    names, tensors = [], []
    for item in items:
        if isinstance(item, str) and item in layers:
            tensor = layers[item].output
            if isinstance(tensor, (list, tuple)):
                raise ModelLoadError(
                    f"{path}: layer {item!r} has {len(tensor)} outputs; name one of its tensors instead: "
                    f"{[t.name for t in tensor]}"
                )
            names.append(item)
            tensors.append(tensor)
            continue
        try:
            tensor = resolve_tensor(graph, item, "output", path)
        except ModelLoadError as exc:
            raise ModelLoadError(f"{exc}; it is not a layer either (layers: {list(layers)})") from None
        names.append(item if isinstance(item, str) else tensor.name)
        tensors.append(tensor)
    return names, tensors


def describe_file(path: str | os.PathLike, *, architecture: Any = None) -> dict[str, Any]:
    """What a Keras HDF5 file records, read without building the model or running any code from it.

    Used by ``tf1infer inspect`` for a model that cannot be loaded as it is
    (Lambda layers in safe mode): versions, model class, layer count, and each
    Lambda layer with its position and shapes.
    """
    path = require_path(path)
    if not looks_like_hdf5(path):
        raise ModelLoadError(f"{path}: not an HDF5 file: found {_describe_file_start(path)}")
    attrs = _read_root_attributes(path)
    config = _model_config(path, attrs, architecture)
    if not isinstance(config, dict):
        return {"format": FORMAT, "path": os.path.abspath(path), "keras_version": attrs.get("keras_version")}
    from_keras1 = keras1.is_keras1(attrs, config)
    if from_keras1:
        config = keras1.convert_config(path, config)
    config, cudnn_layers = convert_cudnn_layers(config)
    described = {
        "format": FORMAT,
        "path": os.path.abspath(path),
        "keras_version": attrs.get("keras_version"),
        "converted_from_keras1": from_keras1,
        "backend": attrs.get("backend"),
        "model_class": config.get("class_name"),
        "layers": sum(1 for _ in iter_layer_configs(config)) - 1,
        "lambda_layers": [info.describe() for info in _lambda_layers(config, {}, attrs)],
    }
    if cudnn_layers:
        described["cudnn_layers_run_as"] = cudnn_layers
    return described


def load_keras_json(
    path: str | os.PathLike,
    *,
    weights: str | os.PathLike | None = None,
    custom_objects: Mapping[str, Any] | None = None,
    lambdas: Mapping[str, Callable] | None = None,
    safe_mode: bool = True,
    compile: Any = None,
    outputs: Sequence[Any] | None = None,
    session_config: tf.compat.v1.ConfigProto | None = None,
    intra_op_threads: int | None = None,
    inter_op_threads: int | None = None,
) -> LoadedGraph:
    """Load ``model_from_json(open(path).read())`` + ``load_weights(weights)``, the Keras 2 pattern.

    The options are those of :func:`load_keras_h5`; ``path`` is the architecture.
    """
    path = require_path(path)
    if weights is None:
        raise ModelLoadError(
            f"{path}: a JSON file holds the architecture only: pass the weights file with weights='weights.h5'"
        )
    loaded = load_keras_h5(
        weights,
        architecture=path,
        custom_objects=custom_objects,
        lambdas=lambdas,
        safe_mode=safe_mode,
        compile=compile,
        outputs=outputs,
        session_config=session_config,
        intra_op_threads=intra_op_threads,
        inter_op_threads=inter_op_threads,
    )
    weights_path = loaded.metadata.pop("path")
    loaded.metadata = {
        "format": "keras-json",
        "path": os.path.abspath(path),
        "weights": weights_path,
        **{key: value for key, value in loaded.metadata.items() if key != "format"},
    }
    return loaded


def _read_root_attributes(path: str) -> dict[str, Any]:
    """The root attributes of the file (model_config, keras_version, ...), the text ones checked to be text.

    The file's structure is checked first (:mod:`hdf5_safety`): a damaged global
    heap would make libhdf5 loop forever, a damaged attribute type crash h5py,
    and an absurd declared dataset size be allocated before any read fails.
    """
    check_global_heaps(path)
    try:
        with h5py.File(path, "r") as handle:
            check_structure(handle, path)
            attrs = {key: handle.attrs[key] for key in handle.attrs.keys()}
            attrs["_has_model_weights"] = "model_weights" in handle
    except H5PY_ERRORS as exc:
        raise ModelLoadError(
            f"{path}: cannot be read as HDF5 (the file is truncated or corrupt): {type(exc).__name__}: {exc}"
        ) from exc
    for key in _TEXT_ATTRIBUTES:
        if key in attrs:
            attrs[key] = _attribute_text(path, key, attrs[key])
    return attrs


def _attribute_text(path: str, key: str, value: Any) -> str:
    if isinstance(value, np.ndarray) and value.shape == (1,):  # Some writers store text as a 1-element array.
        value = value[0]
    if isinstance(value, (bytes, np.bytes_)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ModelLoadError(f"{path}: root attribute {key!r} is not UTF-8 text: {exc}") from exc
    if isinstance(value, str):
        return value
    raise ModelLoadError(f"{path}: root attribute {key!r} should be text, found {type(value).__name__} {_short(value)}")


def _model_config(path: str, attrs: Mapping[str, Any], architecture: Any) -> Any:
    """The architecture to build: the file's model_config, or ``architecture``."""
    if architecture is not None:
        return _architecture_config(path, architecture)
    stored = attrs.get("model_config")
    if stored is None:
        if "layer_names" in attrs or attrs.get("_has_model_weights"):
            raise ModelLoadError(
                f"{path}: holds weights only (no 'model_config' attribute, as written by "
                "model.save_weights): pass the architecture, e.g. "
                "tf1infer.load(path, architecture='model.json') with the JSON from model.to_json(), "
                "or architecture=build_model, a function that returns the tf_keras model"
            )
        raise ModelLoadError(
            f"{path}: is an HDF5 file but not a Keras model: no 'model_config' attribute and "
            f"no weights; root attributes found: {sorted(k for k in attrs if not k.startswith('_')) or 'none'}"
        )
    try:
        config = json.loads(stored)
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"{path}: its 'model_config' attribute is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise ModelLoadError(f"{path}: its 'model_config' attribute nests too deeply to be a model") from exc
    check_config_shape(path, config, "model_config")
    return config


def check_config_shape(path: str, config: Any, what: str) -> None:
    """Refuse a model config whose parts have the wrong JSON types, naming the part.

    A Keras model config is an object with a text ``class_name`` and a
    ``config`` that is an object (or, for old Sequential models, a list of
    layers); each layer is such an object too, its ``inbound_nodes`` a list and
    its ``name`` text. Checked before tf_keras or the Keras 1 converter reads it,
    so that damage is reported as what it is instead of as an AttributeError.
    """
    problem = _config_problem(config, what, depth=0)
    if problem:
        raise ModelLoadError(f"{path}: {problem}; the file is damaged or not written by Keras")


def _config_problem(config: Any, where: str, depth: int) -> str | None:
    if depth > 64:
        return f"{where} nests models more than 64 deep"
    if not isinstance(config, dict):
        return f"{where} should be a JSON object, found {_json_type(config)}"
    if not isinstance(config.get("class_name"), str):
        return f"{where}.class_name should be text, found {_json_type(config.get('class_name'))}"
    inner = config.get("config")
    if isinstance(inner, list) and config["class_name"] == "Sequential":  # Keras 1 and 2.0-2.1 Sequential.
        layers, layers_where = inner, f"{where}.config"
    elif isinstance(inner, dict):
        if "name" in inner and inner["name"] is not None and not isinstance(inner["name"], str):
            return f"{where}.config.name should be text, found {_json_type(inner['name'])}"
        layers, layers_where = inner.get("layers", []), f"{where}.config.layers"
        if not isinstance(layers, list):
            return f"{layers_where} should be a list, found {_json_type(layers)}"
        for key in ("layer", "backward_layer"):  # TimeDistributed, Bidirectional.
            if key in inner and inner[key] is not None:
                problem = _config_problem(inner[key], f"{where}.config.{key}", depth + 1)
                if problem:
                    return problem
    else:
        return f"{where}.config should be a JSON object, found {_json_type(inner)}"
    if "name" in config and config["name"] is not None and not isinstance(config["name"], str):
        return f"{where}.name should be text, found {_json_type(config['name'])}"
    if "inbound_nodes" in config and not isinstance(config["inbound_nodes"], list):
        return f"{where}.inbound_nodes should be a list, found {_json_type(config['inbound_nodes'])}"
    for index, layer in enumerate(layers):
        problem = _config_problem(layer, f"{layers_where}[{index}]", depth + 1)
        if problem:
            return problem
    return None


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "text", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else f"{names.get(type(value), type(value).__name__)} {_short(value)}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _architecture_config(path: str, architecture: Any) -> Any:
    if callable(architecture):
        return architecture
    if isinstance(architecture, dict):
        check_config_shape(path, architecture, "architecture")
        return architecture
    if isinstance(architecture, (str, os.PathLike)):
        text, named = os.fspath(architecture), path  # Messages name the JSON file where there is one.
        if not text.lstrip().startswith(("{", '"')):
            if not os.path.isfile(text):
                raise ModelLoadError(f"{path}: architecture={text!r} is neither JSON text nor an existing JSON file")
            named = text
            try:
                with open(text, encoding="utf-8") as handle:
                    text = handle.read()
            except UnicodeDecodeError as exc:
                raise ModelLoadError(f"{named}: not a JSON architecture: the file is not UTF-8 text ({exc})") from exc
        try:
            config = json.loads(text)
            if isinstance(config, str) and config.lstrip().startswith("{"):
                # JSON text holding JSON text: json.dump(model.to_json(), f), as many drive scripts saved it.
                config = json.loads(config)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise ModelLoadError(f"{named}: the architecture is not valid JSON: {type(exc).__name__}: {exc}") from exc
        check_config_shape(named, config, "architecture")
        return config
    raise ModelLoadError(
        f"{path}: architecture must be JSON text, a JSON file path, a config dict or a function "
        f"returning a model; got {type(architecture).__name__}"
    )


def _build_model(
    path: str, config: Any, custom_objects: dict[str, Any], attrs: Mapping[str, Any], bytecode_lambdas: list[str]
):
    """Build the architecture in the current (private) graph."""
    if callable(config):
        model = config()
        if not isinstance(model, tf_keras.Model):
            raise ModelLoadError(
                f"{path}: architecture function returned {type(model).__name__}, expected a tf_keras Model"
            )
        return model
    problem = _connection_problem(config)
    if problem:
        raise ModelLoadError(f"{path}: the architecture's layer connections cannot be built: {problem}")
    try:
        with _lambda_bytecode_scope(allowed=bool(bytecode_lambdas)):
            model = tf_keras.models.model_from_json(json.dumps(config), custom_objects=custom_objects)
    except (EOFError, SystemError) as exc:
        # marshal's errors for bytecode of another Python version.
        raise _foreign_bytecode_error(path, bytecode_lambdas, exc) from exc
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        if bytecode_lambdas and ("marshal" in str(exc) or "code" in str(exc)):
            raise _foreign_bytecode_error(path, bytecode_lambdas, exc) from exc
        raise ModelLoadError(_build_failure_message(path, config, custom_objects, attrs, exc)) from exc
    if not isinstance(model, tf_keras.Model):  # tf_keras hands back what it cannot resolve (a class name) as is.
        raise ModelLoadError(_build_failure_message(path, config, custom_objects, attrs, None))
    return model


def _connection_problem(config: Any) -> str | None:
    """Why tf_keras could never connect a functional config's layers, or None.

    tf_keras rebuilds a functional model by calling each layer on its inbound
    nodes, retrying those whose inputs do not exist yet "until all nodes are
    processed": a node that waits on one that never comes (a layer whose
    inbound nodes were emptied, a cycle, a node index past the end) makes that
    loop spin forever. This repeats the same rounds on the config alone. It
    counts a node as available at least whenever tf_keras would, so a config
    it finds stuck, tf_keras would spin on.
    """
    for model_config in _functional_configs(config):
        layers = [layer for layer in model_config["config"].get("layers", []) if isinstance(layer, dict)]
        by_name = {layer.get("name"): layer for layer in layers}
        processed = {name: 0 for name in by_name}
        pending = {name: list(layer.get("inbound_nodes") or []) for name, layer in by_name.items()}

        def available(reference: list) -> bool:  # Called only within this iteration.
            name, node_index = reference[0], reference[1]
            layer = by_name.get(name)  # noqa: B023
            if layer is None or not isinstance(node_index, int):
                return False
            if layer.get("class_name") == "InputLayer":
                return True
            first = 1 if skips_first_node(layer) else 0
            return node_index < first + processed[name]  # noqa: B023

        while any(pending.values()):
            progress = False
            for name in by_name:
                while pending[name] and all(available(ref) for ref in _node_references(pending[name][0])):
                    pending[name].pop(0)
                    processed[name] += 1
                    progress = True
            if not progress:
                name = next(name for name, nodes in pending.items() if nodes)
                waits_on = [ref[:2] for ref in _node_references(pending[name][0]) if not available(ref)]
                return (
                    f"layer {name!r} waits on node(s) {waits_on}, which no layer produces (a damaged or forged config)"
                )
        for key in ("input_layers", "output_layers"):
            for reference in _node_references(model_config["config"].get(key, [])):
                if reference[0] not in by_name:
                    return f"{key} names layer {reference[0]!r}, which the model does not have"
    return None


def _functional_configs(config: Any) -> Iterator[dict]:
    """Every functional model config (a top-level one, nested ones) in ``config``."""
    for layer in iter_layer_configs(config):
        inner = layer.get("config")
        if isinstance(inner, dict) and isinstance(inner.get("layers"), list) and "input_layers" in inner:
            yield layer


def skips_first_node(layer: dict) -> bool:
    """Whether tf_keras numbers this layer's config nodes from 1: a nested model built on its own InputLayer."""
    if layer.get("class_name") in ("Functional", "Model"):
        return True
    if layer.get("class_name") == "Sequential":
        inner = layer.get("config")
        first = (inner if isinstance(inner, list) else (inner or {}).get("layers") or [None])[0]
        # Unsure cases count as skipping: that only makes more nodes available, never fewer.
        return (
            not isinstance(first, dict)
            or first.get("class_name") == "InputLayer"
            or "batch_input_shape" in (first.get("config") or {})
        )
    return False


def _node_references(node: Any) -> list[list]:
    """The ``[layer name, node index, tensor index, ...]`` entries a node (or a kwargs value) refers to."""
    found: list[list] = []
    if isinstance(node, list):
        if len(node) >= 3 and isinstance(node[0], str) and isinstance(node[1], int) and isinstance(node[2], int):
            if node[0] != "_CONSTANT_VALUE":
                found.append(node)
            if len(node) >= 4:
                found.extend(_node_references(node[3]))
        else:
            for item in node:
                found.extend(_node_references(item))
    elif isinstance(node, dict):
        for value in node.values():
            found.extend(_node_references(value))
    return found


def _foreign_bytecode_error(path: str, names: list[str], exc: BaseException) -> UnsafeModelError:
    example = ", ".join(f'"{name}": lambda x: ...' for name in names)
    return UnsafeModelError(
        f"{path}: the bytecode of Lambda layer(s) {', '.join(names)} cannot be read by this Python "
        f"({type(exc).__name__}: {exc}); it was most likely written by another Python version. "
        f"Supply the functions instead: lambdas={{{example}}}"
    )


def _build_failure_message(path, config, custom_objects, attrs, exc) -> str:
    unknown = sorted(
        {
            layer["class_name"]
            for layer in iter_layer_configs(config)
            if not _is_known_class(layer.get("class_name"), custom_objects)
        }
    )
    written_by = f" (written by Keras {attrs['keras_version']})" if attrs.get("keras_version") else ""
    if unknown:
        examples = ", ".join(f"'{name}': {name}" for name in unknown)
        return (
            f"{path}: unknown layer class(es) {', '.join(unknown)}{written_by}: pass their "
            f"implementation with custom_objects={{{examples}}}"
        )
    hint = ""
    if str(attrs.get("keras_version", "")).startswith("1."):
        hint = (
            "; the Keras 1 config was converted to Keras 2 (output_dim, nb_filter, border_mode, Merge, ...), "
            "but this argument or layer has no Keras 2 conversion"
        )
    if exc is None:
        return f"{path}: the architecture's top level, {config.get('class_name')!r}, is not a model{written_by}"
    return f"{path}: cannot build the architecture{written_by}: {type(exc).__name__}: {exc}{hint}"


# Layers whose kernels Keras 2 itself converted when a file written by its Theano backend was loaded on TensorFlow
# (keras/engine/saving.py, preprocess_weights_for_loading: conv_utils.convert_kernel); tf_keras dropped that step.
_THEANO_CONVOLUTIONS = {"Conv1D": 1, "Conv2D": 1, "Conv3D": 1, "Conv2DTranspose": 1, "ConvLSTM2D": 2}


def _flip_theano_kernels(model, backend: Any) -> list[str]:
    """Flip the spatial axes of the convolution kernels of a Keras 2 file written by the Theano backend.

    Theano's conv2d is a true convolution (the kernel flipped), TensorFlow's a
    correlation: the same stored kernel computes something else on TensorFlow
    unless it is flipped, which Keras 2 did on load and tf_keras no longer does.
    Returns the layers changed. (Keras 1 files: :mod:`keras1` does the same.)
    """
    if str(backend or "") != "theano":
        return []
    changed: list[str] = []
    kernels: dict[int, Any] = {}  # By identity: a variable two wrappers share is flipped once.
    for layer in _all_layers(model):
        # Wrappers: TimeDistributed's layer, Bidirectional's two copies (its own .layer holds no weights).
        wrapped = [getattr(layer, key, None) for key in ("layer", "forward_layer", "backward_layer")]
        for candidate in [layer, *(inner for inner in wrapped if inner is not None)]:
            weights = candidate.weights[: _THEANO_CONVOLUTIONS.get(type(candidate).__name__, 0)]
            kernels.update((id(weight), weight) for weight in weights)
            if weights and candidate.name not in changed:
                changed.append(candidate.name)
    assignments = []
    for weight in kernels.values():
        value = tf_keras.backend.get_value(weight)
        spatial = tuple(slice(None, None, -1) for _ in range(value.ndim - 2))
        assignments.append((weight, np.ascontiguousarray(value[spatial])))
    if assignments:
        tf_keras.backend.batch_set_value(assignments)
    return changed


def _load_weights(path: str, model) -> None:
    """tf_keras's ``load_weights`` on the file, its failures on a damaged file typed."""
    try:
        model.load_weights(path)
    except (ValueError, TypeError, IndexError) as exc:  # Arrays of the wrong count, shape or type.
        raise ModelLoadError(
            f"{path}: the stored weights do not fit the architecture: {type(exc).__name__}: {exc}"
        ) from exc
    except tf.errors.OpError as exc:  # A stored array the variable's assignment rejects.
        raise ModelLoadError(
            f"{path}: the stored weights do not fit the architecture: {tensorflow_reason(exc)}"
        ) from exc
    except (OSError, KeyError, RuntimeError) as exc:
        raise ModelLoadError(
            f"{path}: cannot read the weights (the file is truncated or corrupt): {type(exc).__name__}: {exc}"
        ) from exc


def _lambda_bytecode_scope(allowed: bool):
    """tf_keras's own Lambda-bytecode guard, on for this thread unless the caller chose safe_mode=False.

    A second line of defence behind :func:`_apply_lambda_policy`: outside such a
    scope tf_keras's guard is unset (``in_safe_mode()`` is None), and its legacy
    loader would deserialize any Lambda bytecode the policy missed. tf_keras has
    no public, thread-scoped switch for it (only the process-wide
    ``enable_unsafe_deserialization``), hence its internal scope.
    """
    from tf_keras.src.saving.serialization_lib import SafeModeScope

    return SafeModeScope(not allowed)


@contextmanager
def _inference_learning_phase() -> Iterator[None]:
    """Fix the Keras learning phase to 0 for the current graph only.

    tf_keras keys the learning phase by graph, and the scope restores the
    previous value on exit, so no process-wide state changes.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*learning_phase_scope.*", category=UserWarning)
        scope = tf_keras.backend.learning_phase_scope(0)
        scope.__enter__()
    try:
        yield
    finally:
        scope.__exit__(None, None, None)


# Layer arguments that later tf-keras releases record at their default value, which earlier releases refuse
# ("Unrecognized keyword arguments"): a file saved with tf-keras 2.21 loads on tf-keras 2.15 without them.
_NEWER_DEFAULTS = {"InputLayer": {"optional": False}}


def _drop_newer_defaults(config: Any) -> None:
    """Remove :data:`_NEWER_DEFAULTS` arguments the installed tf-keras does not take, where they hold the default.

    Checked against the layer's signature, not the version: an argument set
    to anything but its default is left for tf-keras to refuse by name.
    """
    for class_name, defaults in _NEWER_DEFAULTS.items():
        layer_class = getattr(tf_keras.layers, class_name, None)
        accepted = inspect.signature(layer_class.__init__).parameters if layer_class is not None else {}
        unknown = {name: value for name, value in defaults.items() if name not in accepted}
        if not unknown:
            continue
        for layer in iter_layer_configs(config):
            arguments = layer.get("config")
            if layer.get("class_name") == class_name and isinstance(arguments, dict):
                for name, default in unknown.items():
                    if name in arguments and arguments[name] is default:
                        del arguments[name]


def legacy_read_lambdas(config: Any, legacy: bool = False) -> set[int]:
    """``id()`` of each Lambda layer config in ``config`` that tf_keras's legacy deserializer reads.

    tf_keras reads a layer with its legacy deserializer or its newer one by
    where it sits: a Sequential model's layer without a ``module`` key, and a
    ``TimeDistributed``'s wrapped layer where the wrapper's config has none, go
    to the legacy one; a Functional model's layers and a ``Bidirectional``'s
    to the newer one (``Sequential.from_config``, ``Wrapper.from_config``,
    ``Bidirectional.from_config``, ``reconstruct_from_config``, tf_keras 2.15-2.21).
    """
    found: set[int] = set()
    if not isinstance(config, dict):
        return found
    class_name, inner = config.get("class_name"), config.get("config", config)
    if class_name == "Lambda" and legacy:
        found.add(id(config))
    if isinstance(inner, list):  # Keras 2.0-2.1 Sequential: config is the layer list.
        for layer in inner:
            found |= legacy_read_lambdas(layer, "module" not in layer if isinstance(layer, dict) else False)
    elif isinstance(inner, dict):
        for layer in inner.get("layers") or []:
            if isinstance(layer, dict):
                found |= legacy_read_lambdas(layer, "module" not in layer if class_name == "Sequential" else False)
        for key in ("layer", "backward_layer"):
            if isinstance(inner.get(key), dict):
                found |= legacy_read_lambdas(inner[key], class_name != "Bidirectional" and "module" not in inner)
    return found


def _is_known_class(name: Any, custom_objects: Mapping[str, Any]) -> bool:
    if not isinstance(name, str):
        return False
    return (
        name in custom_objects
        or name in _MODEL_CLASSES
        or hasattr(tf_keras.layers, name)
        or tf_keras.saving.get_registered_object(name) is not None
    )


def _layer_list(config: dict) -> list[dict]:
    inner = config.get("config")
    if isinstance(inner, list):
        return inner
    if isinstance(inner, dict):
        return inner.get("layers") or []
    return []


def _lambda_layers(config: dict, custom_objects: dict[str, Any], attrs: Mapping[str, Any]) -> list[LambdaLayerInfo]:
    """Describe every Lambda layer, building a stand-in model for input shapes, and recover its function."""
    found: list[tuple[dict, int, int]] = []

    def visit(model_config: dict) -> None:
        layers = _layer_list(model_config)
        for position, layer in enumerate(layers, start=1):
            # A Lambda may sit in a nested model or inside a wrapper (TimeDistributed, Bidirectional):
            # it counts as the position of the top-level layer that holds it.
            for inner in iter_layer_configs(layer):
                if inner.get("class_name") == "Lambda":
                    found.append((inner, position, len(layers)))

    visit(config)
    if not found:
        return []
    input_shapes = _stand_in_input_shapes(config, custom_objects, [layer for layer, _, _ in found])
    infos = []
    for layer, position, count in found:
        layer_config = layer.get("config", {})
        name = layer_config.get("name") or layer.get("name", "?")
        inbound = tuple(str(node[0]) for nodes in layer.get("inbound_nodes", []) or [] for node in _inbound(nodes))
        output_shape = layer_config.get("output_shape")
        if layer_config.get("output_shape_type") == "lambda":
            output_shape = "computed by Python code in the file"
        recovered, not_recovered = _recover(name, layer_config, attrs)
        infos.append(
            LambdaLayerInfo(
                name=name,
                position=position,
                layer_count=count,
                inbound=inbound,
                input_shape=input_shapes.get(name),
                output_shape=output_shape,
                has_bytecode_mask=layer_config.get("mask_type") == "lambda" and layer_config.get("mask") is not None,
                recovered=recovered,
                not_recovered=not_recovered,
            )
        )
    return infos


def _recover(name: str, layer_config: dict, attrs: Mapping[str, Any]) -> tuple[Recovered | None, NotRecovered | None]:
    """The Lambda's function read from its bytecode (never run), or why it is not."""
    function_type = layer_config.get("function_type")
    if function_type not in ("lambda", None) or "function" not in layer_config:
        # A function stored by name (function_type "function"): nothing of the file to read.
        return None, NotRecovered(f"its function is stored by name ({layer_config.get('function')!r}), not as bytecode")
    try:
        return recover(
            name, layer_config["function"], layer_config.get("arguments"), tf2=_written_under_tf2(attrs)
        ), None
    except NotRecovered as exc:
        return None, exc


def _written_under_tf2(attrs: Mapping[str, Any]) -> bool | None:
    """True for tf.keras 2.4+ (TensorFlow 2 only); None where the version alone does not tell."""
    version = str(attrs.get("keras_version") or "")
    if version.endswith("-tf") or not version:
        return None
    try:
        major, minor = (int(part) for part in version.split(".")[:2])
    except ValueError:
        return None
    return True if (major, minor) >= (2, 4) else None


def _inbound(nodes: Any) -> list:
    """Inbound node entries of a functional layer config (lists of [name, node, tensor, ...])."""
    if isinstance(nodes, dict):  # Keras 3 style; not expected in HDF5 files.
        return []
    return [entry for entry in nodes if isinstance(entry, (list, tuple)) and entry]


def _stand_in_input_shapes(config: dict, custom_objects: dict, lambda_layers: list[dict]) -> dict[str, Any]:
    """Input shape of each Lambda layer, found by building the model with identity stand-ins.

    Runs in a throwaway graph; no stored bytecode is deserialized. Any failure
    (a stand-in that changes the shapes downstream layers expect) leaves the
    shapes unknown.
    """
    stand_in = copy.deepcopy(config)
    objects = dict(custom_objects)
    names = []
    legacy = legacy_read_lambdas(stand_in)
    for layer in iter_layer_configs(stand_in):
        if layer.get("class_name") == "Lambda":
            layer_config = layer["config"]
            names.append(layer_config.get("name"))
            _replace_lambda_function(layer, objects, lambda x: x, id(layer) in legacy)
    shapes: dict[str, Any] = {}
    try:
        # Safe mode: a mask function stored as bytecode stays in the stand-in, and must not run.
        with tf.Graph().as_default(), warnings.catch_warnings(), _lambda_bytecode_scope(allowed=False):
            warnings.simplefilter("ignore")
            model = tf_keras.models.model_from_json(json.dumps(stand_in), custom_objects=objects)
            for layer in _all_layers(model):
                if layer.name in names:
                    shapes[layer.name] = layer.input_shape
        restore_keras_class_versions(model)
    except Exception as exc:  # Best effort, for a message only.
        logger.debug("stand-in build for Lambda shapes failed: %s", exc)
    return shapes


def restore_keras_class_versions(model) -> None:
    """Undo tf_keras's process-wide class swap after building ``model`` in a v1 graph.

    tf_keras rebinds ``__bases__`` of every Layer/Model class it instantiates
    to its v1 or v2 base, by the mode at that moment. Building in our graph
    leaves ``Sequential``, ``Dense``... on their v1 bases, which breaks eager
    models the caller already has ("Your Layer or Model is in an invalid
    state"). Swap the classes we used back to what the caller's context selects.
    """
    from tf_keras.src.engine import base_layer, base_layer_v1, training, training_v1
    from tf_keras.src.utils import version_utils

    use_v2 = version_utils.should_use_v2()
    for cls in {type(model)} | {type(layer) for layer in _all_layers(model)}:
        version_utils.swap_class(cls, training.Model, training_v1.Model, use_v2)
        version_utils.swap_class(cls, base_layer.Layer, base_layer_v1.Layer, use_v2)


def _all_layers(model) -> Iterator:
    for layer in model.layers:
        yield layer
        if isinstance(layer, tf_keras.Model):
            yield from _all_layers(layer)


def _apply_lambda_policy(
    path: str,
    config: dict,
    infos: list[LambdaLayerInfo],
    lambdas: Mapping[str, Callable] | None,
    safe_mode: bool,
    custom_objects: dict[str, Any],
) -> dict:
    """Replace Lambda functions as asked, or refuse in safe mode. Returns the config to build."""
    lambdas = dict(lambdas or {})
    names = [info.name for info in infos]
    unknown = sorted(set(lambdas) - set(names))
    if unknown:
        raise ModelLoadError(
            f"{path}: lambdas= names {', '.join(unknown)}, which are not Lambda layers of this model; "
            f"its Lambda layers are {', '.join(names)}"
        )
    not_callable = sorted(name for name, function in lambdas.items() if not callable(function))
    if not_callable:
        raise ModelLoadError(f"{path}: lambdas= values must be functions; not callable: {', '.join(not_callable)}")
    missing = [info for info in infos if info.name not in lambdas and info.recovered is None]
    masked = [info for info in infos if info.has_bytecode_mask]
    if safe_mode and (missing or masked):
        lines = "\n".join(f"  - {info.describe()}" for info in missing or masked)
        example = ", ".join(f'"{info.name}": lambda x: ...' for info in missing or masked)
        mask_note = (
            f"\nLayer(s) {', '.join(i.name for i in masked)} also store a mask function as bytecode, "
            "which cannot be replaced; load with safe_mode=False only if you trust the file."
            if masked
            else ""
        )
        raise UnsafeModelError(
            f"{path}: refusing to load: {len(missing or masked)} Lambda layer(s) hold Python bytecode that would run "
            f"on load and that tf1infer does not recover as a whitelisted computation:\n{lines}\n"
            f"Supply the function each layer computes (the code that built the model has it):\n"
            f"  tf1infer.load({os.path.basename(path)!r}, lambdas={{{example}}})\n"
            f"or, only for a file you trust and that was written by this Python version, safe_mode=False."
            f"{mask_note}"
        )
    if missing:
        logger.warning(
            "%s: deserializing Python bytecode of Lambda layer(s) %s (safe_mode=False)",
            path,
            ", ".join(info.name for info in missing),
        )
    # The recovered functions stand in for the bytecode, except where the caller supplied a function.
    for info in infos:
        if info.recovered is not None and info.name not in lambdas:
            lambdas[info.name] = info.recovered.function()
    if not lambdas:
        return config
    config = copy.deepcopy(config)
    legacy = legacy_read_lambdas(config)
    for layer in iter_layer_configs(config):
        layer_config = layer.get("config", {})
        if layer.get("class_name") == "Lambda" and layer_config.get("name") in lambdas:
            _replace_lambda_function(layer, custom_objects, lambdas[layer_config["name"]], id(layer) in legacy)
    return config


def _replace_lambda_function(layer: dict, custom_objects: dict, function: Callable, legacy: bool) -> None:
    """Point a Lambda layer's config at ``function`` instead of its bytecode.

    The function is registered in custom_objects under a reserved name, which
    the config names. tf_keras reads it one of two ways (``legacy``: see
    :func:`legacy_read_lambdas`): its legacy deserializer replaces a config
    string naming a custom function by the function itself, so the Lambda is
    told its function is ``"raw"``; the newer one hands the string on, so the
    Lambda is told to look a ``"function"`` up in custom_objects. Only plain
    functions are replaced by the legacy reader, so other callables (partials,
    instances) are wrapped.
    """
    layer_config = layer["config"]
    if not inspect.isfunction(function):
        callable_object = function

        def function(*args, **kwargs):
            return callable_object(*args, **kwargs)

        # A Keras 3 layer here replaces the Lambda in Keras 3 exports.
        function._tf1infer_replacement = callable_object  # type: ignore[attr-defined]

    key = _LAMBDA_PREFIX + str(layer_config.get("name"))
    custom_objects[key] = function
    layer_config["function"] = key
    layer_config["function_type"] = "raw" if legacy else "function"
    layer_config.pop("module", None)
    if layer_config.get("output_shape_type") == "lambda":
        # The stored shape function is bytecode too; tf_keras infers the shape in graph mode.
        layer_config["output_shape"] = None
        layer_config["output_shape_type"] = "raw"
        layer_config.pop("output_shape_module", None)


def _describe_file_start(path: str) -> str:
    with open(path, "rb") as handle:
        head = handle.read(16)
    if not head:
        return "an empty file"
    if head.startswith(b"PK"):
        return "a zip archive (a Keras 3 .keras file or a zipped folder?)"
    if head.lstrip().startswith((b"{", b"[")):
        return "JSON text (an architecture? pass it with architecture= and the weights file as path)"
    return f"bytes {head[:8]!r}"


def _text(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return value


def _shape_text(shape: Any) -> str:
    if shape is None:
        return "unknown"
    if isinstance(shape, str):
        return shape
    return str(tuple(shape)) if isinstance(shape, (list, tuple)) else str(shape)
