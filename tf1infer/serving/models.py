"""The models a server holds: each name's versions, each version's signatures, each signature's runner.

A model is given as a path and a name. A TensorFlow Serving *base path* (a
directory whose subdirectories are numbered versions, ``1/``, ``00000123/``) is
served as TF Serving serves it: the highest version by default, or every one;
any other path (an ``.h5`` file, a SavedModel, a frozen graph, a meta graph
directory) is version 1. Each version is loaded once with
:func:`tf1infer.load`, into its own graph and session.

Signatures, as TF Serving keys them: a TF1 SavedModel keeps every signature it
stores (they share the version's session: one load, several entry points); a
Keras model has ``serving_default``, keyed by its input and output layer names
(what TF Serving serves for a Keras SavedModel); graph formats have one
``serving_default`` from the chosen inputs and outputs.

A signature whose inputs and outputs all have a free batch axis runs through a
:class:`~tf1infer.runtime.microbatch.MicroBatcher`: concurrent requests with
the same trailing shapes are gathered into one run, as TF Serving's batching
does. The others (a scalar input, a serialized ``tf.Example`` of unknown
shape) run one request at a time in a small thread pool. Either way the
number of requests waiting is bounded: beyond it a request is refused at once
(503 / UNAVAILABLE), never queued without limit.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tensorflow as tf

from tf1infer.errors import InvalidOptionError, ModelLoadError, QueueFullError, Tf1InferError, tensorflow_reason
from tf1infer.loaders.base import ENDPOINTS_UNKNOWN
from tf1infer.loaders.graph_tools import check_no_state_changes
from tf1infer.loaders.saved_model import DEFAULT_SIGNATURE, is_saved_model_dir, read_saved_model
from tf1infer.loading import load
from tf1infer.predictor import Predictor
from tf1infer.runtime.microbatch import MicroBatcher, MicroBatchingSettings
from tf1infer.runtime.session_runner import SessionRunner
from tf1infer.serving.status import ServingError, dtype_string, from_exception, invalid, not_found, tensorflow_code

PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
_VERSION_DIR = re.compile(r"^\d+$")


@dataclass(frozen=True)
class Batching:
    """How requests for one signature are gathered, in TF Serving's terms.

    Args:
        enabled: gather concurrent requests into shared runs (``serve``'s default).
        max_batch_size: rows per gathered run (TF Serving's ``max_batch_size``).
        batch_timeout_micros: how long the oldest request waits for company
            while the model is idle and more callers are on the way (TF
            Serving's ``batch_timeout_micros``); a request that came while the
            model ran never waits.
        max_queued_requests: requests that may wait for a run; one more is
            answered 503 / UNAVAILABLE at once (TF Serving:
            ``max_enqueued_batches`` x ``max_batch_size``).
    """

    enabled: bool = True
    max_batch_size: int = 32
    batch_timeout_micros: int = 1000
    max_queued_requests: int = 1024

    def settings(self) -> MicroBatchingSettings:
        return MicroBatchingSettings(
            self.max_batch_size if self.enabled else 1, self.batch_timeout_micros / 1000.0, self.max_queued_requests
        )


@dataclass(frozen=True)
class ModelConfig:
    """One model to serve.

    Args:
        name: the name clients use (``/v1/models/NAME``, ``model_spec.name``).
        path: the model file or directory, or a TF Serving base path of numbered versions.
        options: :func:`tf1infer.load` options (``lambdas=``, ``custom_objects=``, ``inputs=``, ...).
        versions: ``"latest"`` (TF Serving's default policy) or ``"all"`` for a base path.
        labels: version labels (``{"stable": 1, "canary": 2}``), for ``/labels/NAME`` and ``version_label``.

    Example:
        >>> ModelConfig("gender", "legacy_models/cnn.h5")
        >>> ModelConfig("default", "/models/half_plus_two", versions="all", labels={"stable": 123})
    """

    name: str
    path: str
    options: Mapping[str, Any] = field(default_factory=dict)
    versions: str = "latest"
    labels: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str, options: Mapping[str, Any] | None = None) -> ModelConfig:
        """``NAME=PATH`` or ``PATH`` (the name: the file's name without its extension, or the directory's name)."""
        name, separator, path = text.partition("=")
        if not separator:
            path = text
            name = os.path.splitext(os.path.basename(os.path.normpath(text)))[0]
        if not name or not path:
            raise InvalidOptionError(f"model {text!r}: expected NAME=PATH or PATH")
        return cls(name, path, dict(options or {}))

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[^/:]+", self.name):
            # TF Serving's URLs take the name from /v1/models/NAME: neither '/' nor ':' can be part of it.
            raise InvalidOptionError(f"model name {self.name!r}: a name may not be empty or hold '/' or ':'")
        if self.versions not in ("latest", "all"):
            raise InvalidOptionError(f"model {self.name!r}: versions must be 'latest' or 'all', got {self.versions!r}")


@dataclass(frozen=True)
class Endpoint:
    """One signature input or output: the alias clients use and the tensor behind it."""

    alias: str
    tensor_name: str
    dtype: np.dtype
    shape: tuple[int | None, ...] | None  # None: unknown rank.
    checked: bool  # A placeholder: TensorFlow refuses a feed of another shape, so a mismatch is the client's error.

    @property
    def dtype_enum(self) -> int:
        return tf.dtypes.as_dtype(self.dtype).as_datatype_enum


class Signature:
    """One servable entry point: named inputs to named outputs, run on the version's session.

    Args:
        key: the signature's name (``serving_default``, ``classify_x_to_y``, ...).
        method_name: ``tensorflow/serving/predict``, ``.../classify`` or ``.../regress``.
        predictor: runs the signature's tensors; its input and output order is the endpoints' order.
        proto: the ``SignatureDef`` metadata requests are answered with.
        batching: how requests are gathered; batching needs a free batch axis everywhere.
        source: names the model in messages.
        on_batch: observes each gathered run's rows (metrics).
    """

    def __init__(
        self,
        key: str,
        method_name: str,
        predictor: Predictor,
        proto: Any,
        batching: Batching,
        source: str,
        on_batch: Callable[[int], None] | None = None,
    ):
        self.key = key
        self.method_name = method_name
        self.predictor = predictor
        self.proto = proto
        self.source = source
        graph = predictor.graph
        self.inputs = tuple(
            _endpoint(alias, spec, graph) for alias, spec in zip(predictor.input_names, predictor.inputs)
        )
        self.outputs = tuple(
            _endpoint(alias, spec, graph) for alias, spec in zip(predictor.output_names, predictor.outputs)
        )
        self._by_alias = {endpoint.alias: index for index, endpoint in enumerate(self.inputs)}
        self._max_waiting = batching.max_queued_requests
        self._waiting = 0  # Unbatched requests queued or running (see run).
        self._lock = threading.Lock()
        batchable = all(
            endpoint.shape is not None and len(endpoint.shape) > 0 and endpoint.shape[0] is None
            for endpoint in (*self.inputs, *self.outputs)
        )
        tensors = [graph.get_tensor_by_name(endpoint.tensor_name) for endpoint in (*self.inputs, *self.outputs)]
        self._runner = SessionRunner(
            predictor.session, tensors[: len(self.inputs)], tensors[len(self.inputs) :], feeds_as_given=True
        )
        self.batcher: MicroBatcher | None = None
        if batchable:
            self.batcher = MicroBatcher(self.run_now, batching.settings(), f"{source} {key}", on_batch)
        # Requests that cannot share a batch run here, one at a time per signature (the session itself is shared).
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"tf1infer-serve-{key}")

    @property
    def input_aliases(self) -> list[str]:
        return [endpoint.alias for endpoint in self.inputs]

    @property
    def output_aliases(self) -> list[str]:
        return [endpoint.alias for endpoint in self.outputs]

    def queue_depth(self) -> int:
        """Requests waiting for a run now."""
        return (self.batcher.queued if self.batcher is not None else 0) + self._waiting

    def arrange(self, named: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """The request's tensors in input order, checked: every alias known and present, dtypes equal, shapes
        that TensorFlow would refuse refused here with the input's name (TF Serving's messages)."""
        extra = sorted(set(named) - set(self._by_alias))
        missing = [alias for alias in self.input_aliases if alias not in named]
        if extra and len(named) == len(self.inputs) and len(extra) == 1 and len(missing) == 1:
            raise invalid(
                f"input tensor alias not found in signature: {extra[0]}. "
                f"Inputs expected to be in the set {{{','.join(self.input_aliases)}}}."
            )
        if extra or missing:
            raise invalid(
                f"input size does not match signature: {len(named)}!={len(self.inputs)} "
                f"len({{{','.join(sorted(named))}}}) != len({{{','.join(self.input_aliases)}}}). "
                f"Sent extra: {{{','.join(extra)}}}. Missing but required: {{{','.join(missing)}}}."
            )
        arrays = []
        for index, endpoint in enumerate(self.inputs):
            array = named[endpoint.alias]
            if array.dtype != endpoint.dtype and not (array.dtype.kind in "OSU" and endpoint.dtype.kind == "O"):
                raise invalid(
                    f"Expects arg[{index}] to be {dtype_string(endpoint.dtype)} but "
                    f"{dtype_string(array.dtype)} is provided (input '{endpoint.alias}')"
                )
            if endpoint.checked and endpoint.shape is not None and not _fits(array.shape, endpoint.shape):
                raise invalid(
                    f"input '{endpoint.alias}' ({endpoint.tensor_name}) expects shape {_shape_text(endpoint.shape)}; "
                    f"got {_shape_text(array.shape)}"
                )
            arrays.append(array)
        return arrays

    async def run(self, feeds: list[np.ndarray], timeout: float | None) -> list[np.ndarray]:
        """The outputs for checked feeds, gathered with other requests where they can be.

        Raises:
            ServingError: UNAVAILABLE on a full queue or while shutting down, DEADLINE_EXCEEDED past
                ``timeout`` seconds, TensorFlow's code where the run failed.
        """
        try:
            if self.batcher is not None and _batchable(feeds):
                answer = self.batcher.run_async(feeds, wait_for_room=False)
            else:
                answer = self._run_alone(feeds)
            return await asyncio.wait_for(answer, timeout)
        except (asyncio.TimeoutError, TimeoutError):
            raise ServingError(
                "DEADLINE_EXCEEDED", f"{self.source}: no answer within the request's deadline ({timeout:g} s)"
            ) from None
        except Tf1InferError as exc:
            raise from_exception(exc) from exc

    def run_now(self, feeds: list[np.ndarray]) -> list[np.ndarray]:
        """One session run on checked feeds, in this thread; TensorFlow's failure keeps its code."""
        try:
            return self._runner(*feeds)
        except tf.errors.OpError as exc:
            code = tensorflow_code(exc) or "UNKNOWN"
            raise ServingError(code, f"{self.source}: {tensorflow_reason(exc)}") from exc
        except RuntimeError as exc:  # The session was closed under the call (shutdown).
            raise ServingError("UNAVAILABLE", f"{self.source}: {exc}") from exc

    async def _run_alone(self, feeds: list[np.ndarray]) -> list[np.ndarray]:
        with self._lock:
            if self._waiting >= self._max_waiting:
                raise QueueFullError(f"{self.source} {self.key}: {self._waiting} requests waiting")
            self._waiting += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, self.run_now, feeds)
        finally:
            with self._lock:
                self._waiting -= 1

    def close(self) -> None:
        """Answer every queued request, then stop (the predictor is closed by its version)."""
        if self.batcher is not None:
            self.batcher.close()
        self._pool.shutdown(wait=True)


@dataclass
class Servable:
    """One loaded version of a model: its signatures, and the predictors to close."""

    name: str
    version: int
    path: str
    format: str
    signatures: dict[str, Signature]
    predictors: list[Predictor]
    skipped: dict[str, str] = field(default_factory=dict)  # Signatures not served, with the reason.
    loaded_in: float = 0.0

    def signature(self, key: str | None) -> Signature:
        """The signature ``key`` (default ``serving_default``), or TF Serving's 400."""
        name = key or DEFAULT_SIGNATURE
        found = self.signatures.get(name)
        if found is None:
            raise invalid(f'Serving signature name: "{name}" not found in signature def')
        return found

    def close(self) -> None:
        for signature in self.signatures.values():
            signature.close()
        for predictor in self.predictors:
            predictor.close()


class ModelRegistry:
    """Every servable by name and version, looked up as TF Serving looks them up."""

    def __init__(self) -> None:
        self._models: dict[str, dict[int, Servable]] = {}
        self._labels: dict[str, dict[str, int]] = {}

    def add(self, servable: Servable, labels: Mapping[str, int] | None = None) -> None:
        self._models.setdefault(servable.name, {})[servable.version] = servable
        if labels:
            self._labels.setdefault(servable.name, {}).update(labels)

    @property
    def names(self) -> list[str]:
        return sorted(self._models)

    def versions(self, name: str) -> dict[int, Servable]:
        return dict(self._models.get(name, {}))

    def servables(self) -> list[Servable]:
        return [servable for versions in self._models.values() for servable in versions.values()]

    def find(self, name: str, version: int | None = None, label: str | None = None) -> Servable:
        """The servable a request names: a version, a label, or the highest version.

        Raises:
            ServingError: NOT_FOUND in TF Serving's words ("Servable not found for request: Latest(NAME)"),
                INVALID_ARGUMENT for an unknown label or both a version and a label.
        """
        if version is not None and label is not None:
            raise invalid(f"Both model version ({version}) and model version label ({label}) cannot be supplied.")
        versions = self._models.get(name)
        if label is not None:
            labelled = self._labels.get(name, {}).get(label)
            if labelled is None:
                raise invalid(f"Unrecognized servable version label: {label}")
            version = labelled
        if version is None:
            if not versions:
                raise not_found(f"Servable not found for request: Latest({name})")
            return versions[max(versions)]
        if not versions or version not in versions:
            raise not_found(f"Servable not found for request: Specific({name}, {version})")
        return versions[version]

    def close(self) -> None:
        for servable in self.servables():
            servable.close()


def version_paths(config: ModelConfig) -> dict[int, str]:
    """``{version: path}`` to load for ``config``: numbered subdirectories of a base path, else the path as 1."""
    path = config.path
    if not os.path.exists(path):
        raise ModelLoadError(f"{path}: no such file or directory")
    numbered = {}
    if os.path.isdir(path) and not is_saved_model_dir(path):
        for entry in os.listdir(path):
            if _VERSION_DIR.match(entry) and os.path.isdir(os.path.join(path, entry)):
                numbered[int(entry)] = os.path.join(path, entry)
    if not numbered:
        return {1: path}
    if config.versions == "latest":
        highest = max(numbered)
        return {highest: numbered[highest]}
    return dict(sorted(numbered.items()))


def load_servable(
    config: ModelConfig,
    version: int,
    path: str,
    batching: Batching,
    on_batch: Callable[[str, int], Callable[[int], None]] | None = None,
) -> Servable:
    """Load one version with :func:`tf1infer.load` and make a :class:`Signature` of each of its entry points.

    ``on_batch(name, version)`` gives each signature's batch observer (the server's metrics).

    Raises:
        Tf1InferError: the model does not load (the caller reports it and stops).
    """
    started = time.perf_counter()
    options = dict(config.options)
    stored = _saved_model_signatures(path, options)
    if stored is not None and "signature" not in options and DEFAULT_SIGNATURE not in stored:
        if not stored:
            raise ModelLoadError(f"{path}: the SavedModel has no signatures: nothing to serve")
        options["signature"] = sorted(stored)[0]  # Loads the graph; each signature is served by its own name.
    primary = load(path, **options)
    unknown = primary.metadata.get(ENDPOINTS_UNKNOWN)
    if unknown is not None:  # A training graph loaded for run() by name: nothing a request could feed.
        primary.close()
        raise ModelLoadError(unknown)
    source = f"{config.name} (version {version})"
    observer = on_batch(config.name, version) if on_batch is not None else None
    signatures: dict[str, Signature] = {}
    skipped: dict[str, str] = {}
    predictors = [primary]
    try:
        fmt = str(primary.metadata.get("format", "?"))
        if stored is not None:
            primary_key = str(primary.metadata.get("signature") or DEFAULT_SIGNATURE)
            for key, proto in sorted(stored.items()):
                if key == primary_key:
                    predictor = primary
                else:
                    try:
                        predictor = _signature_predictor(primary, proto, options, f"{path}: signature {key!r}")
                    except (Tf1InferError, KeyError, ValueError) as exc:
                        skipped[key] = str(exc)
                        continue
                    predictors.append(predictor)
                signatures[key] = Signature(key, proto.method_name, predictor, proto, batching, source, observer)
        else:
            key = str(primary.metadata.get("signature") or DEFAULT_SIGNATURE)
            proto = _signature_proto(primary)
            signatures[key] = Signature(key, PREDICT_METHOD, primary, proto, batching, source, observer)
    except BaseException:
        for predictor in predictors:
            predictor.close()
        raise
    return Servable(config.name, version, path, fmt, signatures, predictors, skipped, time.perf_counter() - started)


def _saved_model_signatures(path: str, options: Mapping[str, Any]) -> dict[str, Any] | None:
    """A SavedModel's stored ``SignatureDef``s for the tag set to load (None: not a SavedModel)."""
    if options.get("format") not in (None, "saved-model") or not is_saved_model_dir(path):
        return None
    tags = options.get("tags") or ["serve"]
    tags = {tags} if isinstance(tags, str) else set(tags)
    for meta_graph in read_saved_model(path).meta_graphs:
        if set(meta_graph.meta_info_def.tags) == tags:
            return dict(meta_graph.signature_def)
    return None  # tf1infer.load names the tag sets there are.


def _signature_predictor(primary: Predictor, proto: Any, options: Mapping[str, Any], source: str) -> Predictor:
    """A Predictor for another signature of the SavedModel ``primary`` loaded: the same session, other tensors."""
    inputs = {alias: info.name for alias, info in sorted(proto.inputs.items())}
    outputs = {alias: info.name for alias, info in sorted(proto.outputs.items())}
    graph = primary.graph
    check_no_state_changes(
        [graph.get_tensor_by_name(name) for name in outputs.values()], bool(options.get("allow_stateful")), source
    )
    return Predictor.from_session(primary.session, inputs, outputs)


def _signature_proto(predictor: Predictor) -> Any:
    """The ``SignatureDef`` TF Serving would show for a Keras or graph model: its inputs and outputs by name."""
    from tensorflow.core.protobuf import meta_graph_pb2

    proto = meta_graph_pb2.SignatureDef(method_name=PREDICT_METHOD)
    for target, names, specs in (
        (proto.inputs, predictor.input_names, predictor.inputs),
        (proto.outputs, predictor.output_names, predictor.outputs),
    ):
        for alias, spec in zip(names, specs):
            info = target[alias]
            info.name = spec.name
            info.dtype = tf.dtypes.as_dtype(spec.dtype).as_datatype_enum
            if spec.shape is None:
                info.tensor_shape.unknown_rank = True
            else:
                for size in spec.shape:
                    info.tensor_shape.dim.add(size=-1 if size is None else size)
    return proto


def _endpoint(alias: str, spec: Any, graph: tf.Graph) -> Endpoint:
    try:
        op_type = graph.get_tensor_by_name(spec.name).op.type
    except (KeyError, ValueError):
        op_type = ""
    return Endpoint(alias, spec.name, np.dtype(spec.dtype), spec.shape, op_type in ("Placeholder", "PlaceholderV2"))


def _batchable(feeds: Sequence[np.ndarray]) -> bool:
    """Feeds that can join a gathered run: every one with the same number of rows, at least one."""
    if any(feed.ndim == 0 for feed in feeds):
        return False
    rows = feeds[0].shape[0]
    return rows > 0 and all(feed.shape[0] == rows for feed in feeds)


def _fits(shape: tuple[int, ...], expected: tuple[int | None, ...]) -> bool:
    return len(shape) == len(expected) and all(want is None or want == got for want, got in zip(expected, shape))


def _shape_text(shape: Sequence[int | None]) -> str:
    return "[" + ",".join("-1" if size is None else str(size) for size in shape) + "]"


__all__ = [
    "Batching",
    "Endpoint",
    "ModelConfig",
    "ModelRegistry",
    "Servable",
    "Signature",
    "load_servable",
    "version_paths",
]
