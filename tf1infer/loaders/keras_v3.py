"""Keras 3 ``.keras`` archives (a zip of ``config.json``, ``metadata.json`` and ``model.weights.h5``).

Keras 3 models only build eagerly, in Keras 3's own classes, so they cannot be
built in a TF1 graph the way tf_keras models are. Instead the model is loaded
once with ``keras.saving.load_model``, given a serving function named after
its inputs and outputs, written as a TF2 SavedModel to a temporary directory
with Keras's own ``ExportArchive``, and that SavedModel is loaded into the
Predictor's graph and session by the SavedModel loader: the same persistent
session, with the weights as variables restored into it. The temporary
directory is removed before returning.

``Lambda`` layers in a ``.keras`` file hold marshalled bytecode too; in safe
mode they are refused, listed from ``config.json`` before Keras is imported.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import tensorflow as tf

from tf1infer.errors import ModelLoadError, UnsafeModelError
from tf1infer.loaders.base import LoadedGraph, require_path
from tf1infer.loaders.hdf5_safety import H5PY_ERRORS, check_global_heaps
from tf1infer.loaders.keras_h5 import check_config_shape
from tf1infer.loaders.keras_versions import require_keras3
from tf1infer.loaders.saved_model import load_saved_model

FORMAT = "keras-v3"
_ENDPOINT = "serving_default"
_WEIGHTS = "model.weights.h5"
# Keras 3's warning that some layers keep their freshly-initialized weights.
_WEIGHTS_SKIPPED = "freshly-initialized weights"
# deflate's best case is about 1032:1; members declaring more than this are not a real model.
_MAX_EXPANSION = 1100


def looks_like_keras_v3(path: str) -> bool:
    """True for a zip archive holding a Keras 3 ``config.json``."""
    if not os.path.isfile(path) or not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            return "config.json" in archive.namelist()
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError):
        return False  # A damaged archive: a .keras name still routes it to the loader, which says what is wrong.


def read_archive_config(path: str) -> tuple[dict, dict]:
    """(config, metadata) of a ``.keras`` archive, without importing Keras.

    The archive is checked first: member sizes that could not be real, a
    member whose bytes do not match its CRC, a weights file libhdf5 would loop
    on, and config and metadata of the wrong JSON types are refused here,
    before Keras reads any of it.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if "config.json" not in names:
                raise ModelLoadError(
                    f"{path}: a zip archive without config.json, so not a Keras 3 .keras file (it holds {names[:10]})"
                )
            _check_members(path, archive)
            config = _json_member(path, archive, "config.json")
            metadata = _json_member(path, archive, "metadata.json") if "metadata.json" in names else {}
            if _WEIGHTS in names:
                check_global_heaps(f"{path}: {_WEIGHTS}", archive.read(_WEIGHTS))
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        OSError,
        EOFError,
        NotImplementedError,
    ) as exc:  # NotImplementedError: an unknown compression method.
        raise ModelLoadError(
            f"{path}: not a readable .keras archive (a zip file): {type(exc).__name__}: {exc}"
        ) from exc
    check_config_shape(path, config, "config.json")
    if not isinstance(metadata, dict):
        raise ModelLoadError(
            f"{path}: the archive's metadata.json should be a JSON object, found {type(metadata).__name__}"
        )
    return config, metadata


def _check_members(path: str, archive: zipfile.ZipFile) -> None:
    archive_size = os.path.getsize(path)
    declared = sum(info.file_size for info in archive.infolist())
    if declared > archive_size * _MAX_EXPANSION + (1 << 20):
        raise ModelLoadError(
            f"{path}: the archive's members declare {declared:,} bytes in a {archive_size:,}-byte file; "
            "refusing to expand it (damaged, or a zip bomb)"
        )
    damaged = archive.testzip()  # Reads every member once and checks its CRC.
    if damaged is not None:
        raise ModelLoadError(f"{path}: archive member {damaged!r} is corrupt (its CRC does not match its bytes)")


def _json_member(path: str, archive: zipfile.ZipFile, name: str) -> Any:
    try:
        return json.loads(archive.read(name))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ModelLoadError(
            f"{path}: the archive's {name} is not valid JSON text: {type(exc).__name__}: {exc}"
        ) from exc


def lambda_layer_names(config: Any) -> list[str]:
    """Names of the Lambda layers anywhere in a Keras 3 model config."""
    return [
        layer.get("config", {}).get("name", "?")
        for layer in _layer_configs(config)
        if layer.get("class_name") == "Lambda"
    ]


def _layer_configs(config: Any) -> Iterator[dict]:
    if isinstance(config, dict):
        if "class_name" in config:
            yield config
        for value in config.values():
            yield from _layer_configs(value)
    elif isinstance(config, list):
        for value in config:
            yield from _layer_configs(value)


def describe_file(path: str | os.PathLike) -> dict[str, Any]:
    """What a ``.keras`` archive records, read without Keras and without running any code from it."""
    path = require_path(path)
    config, metadata = read_archive_config(path)
    return {
        "format": FORMAT,
        "path": os.path.abspath(path),
        "keras_version": metadata.get("keras_version"),
        "saved_at": metadata.get("date_saved"),
        "model_class": config.get("class_name"),
        "lambda_layers": lambda_layer_names(config),
    }


def load_keras_v3(
    path: str | os.PathLike,
    *,
    custom_objects: Mapping[str, Any] | None = None,
    safe_mode: bool = True,
    compile: Any = None,
    outputs: Sequence[str] | None = None,
    session_config: tf.compat.v1.ConfigProto | None = None,
    intra_op_threads: int | None = None,
    inter_op_threads: int | None = None,
) -> LoadedGraph:
    """Load a Keras 3 ``.keras`` file into a private graph and session.

    Args:
        path: the ``.keras`` archive.
        custom_objects: custom classes and functions, as for ``keras.saving.load_model``.
        safe_mode: refuse Lambda layers, whose functions are stored as bytecode.
        compile: accepted for compatibility and ignored.
        outputs: layer names whose outputs to fetch instead of the model's.
        session_config, intra_op_threads, inter_op_threads: as for every format.

    Raises:
        ModelLoadError: not a readable ``.keras`` archive, or Keras cannot build it.
        UnsafeModelError: the model has Lambda layers and ``safe_mode`` is True.
    """
    del compile
    path = require_path(path)
    config, archive_metadata = read_archive_config(path)
    require_keras3(path, f"a .keras file (written by Keras {archive_metadata.get('keras_version', '3')}) loads only")
    lambdas = lambda_layer_names(config)
    if lambdas and safe_mode:
        raise UnsafeModelError(
            f"{path}: refusing to load: Lambda layer(s) {', '.join(lambdas)} hold Python bytecode that would run "
            "on load. Load with safe_mode=False only for a file you trust, or rebuild the model with the "
            "function as a registered custom layer (keras.saving.register_keras_serializable) and resave it"
        )
    model = _load_with_keras(path, custom_objects, safe_mode)
    input_names, output_names = _endpoint_names(path, model)
    served = model
    if outputs is not None:
        served, output_names = _layer_outputs_model(path, model, outputs)
    with tempfile.TemporaryDirectory(prefix="tf1infer-keras3-") as export_dir:
        _export_serving_function(path, served, input_names, output_names, export_dir)
        loaded = load_saved_model(
            export_dir,
            session_config=session_config,
            intra_op_threads=intra_op_threads,
            inter_op_threads=inter_op_threads,
        )
    # The signature lists its keys sorted; the model's own order is the one callers know.
    loaded.inputs = [loaded.inputs[loaded.input_names.index(name)] for name in input_names]
    loaded.outputs = [loaded.outputs[loaded.output_names.index(name)] for name in output_names]
    loaded.input_names, loaded.output_names = input_names, output_names
    loaded.metadata = {
        "format": FORMAT,
        "path": os.path.abspath(path),
        "keras_version": archive_metadata.get("keras_version"),
        "saved_at": archive_metadata.get("date_saved"),
        "model_class": type(model).__name__,
        "parameters": int(model.count_params()),
        "lambda_layers": lambdas,
        "loaded_via": "TF2 SavedModel written by keras.export.ExportArchive, then removed",
    }
    if outputs is not None:
        loaded.metadata["chosen_outputs"] = output_names
    loaded.keras_model = model
    return loaded


def _layer_outputs_model(path: str, model, outputs: Sequence[str]):
    """A Keras 3 model on ``model``'s inputs returning the named layers' outputs, and their names."""
    import keras

    names = [outputs] if isinstance(outputs, str) else list(outputs)
    layers = {layer.name: layer for layer in model.layers}
    unknown = [name for name in names if name not in layers]
    if unknown or not names:
        raise ModelLoadError(f"{path}: outputs= names {unknown or 'nothing'}; the model's layers are {list(layers)}")
    return keras.Model(model.inputs, [layers[name].output for name in names]), names


def _load_with_keras(path: str, custom_objects, safe_mode: bool):
    import keras

    if not tf.executing_eagerly():
        raise ModelLoadError(
            f"{path}: Keras 3 models load only with eager execution on (it was disabled in this process)"
        )
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model = keras.saving.load_model(path, custom_objects=custom_objects, compile=False, safe_mode=safe_mode)
    except (*H5PY_ERRORS, zipfile.BadZipFile, NotImplementedError, AttributeError, IndexError) as exc:
        # Keras's own reading of a damaged archive; the archive was checked, so this is damage Keras finds deeper
        # (a weights file of the wrong layout, a config its classes reject).
        raise ModelLoadError(f"{path}: Keras 3 cannot load this .keras file: {type(exc).__name__}: {exc}") from exc
    skipped = [str(w.message) for w in caught if _WEIGHTS_SKIPPED in str(w.message)]
    if skipped:
        # Keras only warns, and the model would run with freshly-initialized weights: silently wrong outputs.
        raise ModelLoadError(
            f"{path}: Keras 3 could not load all of the stored weights (the archive is damaged): {skipped[0]}"
        )
    for warning in caught:  # Every other warning as Keras gave it.
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return model


def _endpoint_names(path: str, model) -> tuple[list[str], list[str]]:
    """Input layer names and output layer names; a Sequential model answers through its functional twin."""
    functional = getattr(model, "_functional", None) or model
    try:
        inputs = list(model.inputs)
    except (AttributeError, ValueError):
        inputs = []
    if not inputs:
        raise ModelLoadError(f"{path}: the model was saved unbuilt (no input shape), so it has no inputs to serve")
    output_names = list(getattr(functional, "output_names", None) or [model.layers[-1].name])
    return [tensor.name for tensor in inputs], output_names


def _export_serving_function(
    path: str, model, input_names: list[str], output_names: list[str], export_dir: str
) -> None:
    """Write ``model`` as a SavedModel whose ``serving_default`` takes and returns the model's names."""
    import keras

    specs = [
        tf.TensorSpec((None, *tensor.shape[1:]), tf.as_dtype(tensor.dtype), name=name)
        for name, tensor in zip(input_names, model.inputs)
    ]

    def serve(*inputs):
        outputs = model(list(inputs) if len(inputs) > 1 else inputs[0], training=False)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        return dict(zip(output_names, outputs))

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(_ENDPOINT, serve, input_signature=specs)
    try:
        archive.write_out(export_dir, verbose=False)
    except (ValueError, TypeError) as exc:
        raise ModelLoadError(
            f"{path}: cannot trace the Keras 3 model into a graph: {type(exc).__name__}: {exc}"
        ) from exc
