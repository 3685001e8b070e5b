"""``tf1infer.load``: check the options, load the graph, build the backend, hand both to a :class:`Predictor`.

Also Keras 2's two-step load, :func:`model_from_json` then ``load_weights``.

Kept apart from the package's ``__init__`` so that ``import tf1infer`` (and the
``tf1infer`` command's start-up) does not import TensorFlow until something
needs it: the command decides how much of TensorFlow's C++ log to show before
TensorFlow reads its settings.
"""

from __future__ import annotations

import os
from typing import Any

from tf1infer import backends
from tf1infer.backends import SESSION, TFLITE, check_backend
from tf1infer.backends.precision import FLOAT32, INT8, check_precision, reduce_precision
from tf1infer.errors import InvalidOptionError, UnsupportedOperationError
from tf1infer.loaders import load_graph
from tf1infer.predictor import Predictor
from tf1infer.runtime.microbatch import MicroBatchingSettings


def load(
    path: str | os.PathLike,
    format: str | None = None,
    *,
    precision: str = "float32",
    backend: str = "session",
    calibration: Any = None,
    micro_batching: bool = False,
    max_batch_size: int | None = None,
    max_wait_ms: float | None = None,
    max_queue_size: int | None = None,
    **options: Any,
) -> Predictor:
    """Load a legacy model into its own graph and persistent session.

    Args:
        path: the model file or directory.
        format: force a format instead of detecting it: ``"keras-h5"``,
            ``"keras-json"``, ``"keras-v3"``, ``"saved-model"``,
            ``"meta-graph"``, ``"frozen-graph"``.
        **options: format options. Keras HDF5: ``custom_objects``,
            ``lambdas``, ``safe_mode``, ``architecture``, ``compile``
            (ignored), ``outputs`` (layer or tensor names to fetch instead of
            the model's outputs); Keras JSON: the same plus ``weights``. SavedModel:
            ``tags``, ``signature``, ``allow_stateful``. Keras 3 ``.keras``:
            ``custom_objects``, ``safe_mode``, ``compile``. Meta graph:
            ``checkpoint``, ``inputs``, ``outputs``, ``signature``,
            ``constants`` (scalar placeholders' values, such as
            ``{"keep_prob": 1.0}``), ``allow_stateful``. Frozen graph:
            ``inputs``, ``outputs``, ``constants``, ``allow_stateful``. Every format: ``session_config`` (a
            ``tf.compat.v1.ConfigProto``), ``intra_op_threads``,
            ``inter_op_threads`` (default: ops run in the calling thread,
            ``-1``, unless the ConfigProto or ``TF_NUM_INTEROP_THREADS``
            sets a count; ``0`` is TensorFlow's own inter-op pool).
        precision: ``"float32"`` (default), ``"bfloat16"`` (native on CPUs
            with AVX512_BF16/AMX) or ``"float16"`` (rounds tensors to float16
            between float32 ops: a preview of float16 accuracy): the frozen
            inference graph runs under TensorFlow's mixed-precision graph
            rewrite, on the session. ``"int8"``: TF Lite's integer kernels
            (``backend="tflite"`` and ``calibration=`` required). Inputs and
            outputs keep their dtypes. See :meth:`Predictor.precision_report`
            for the cost in accuracy.
        backend: ``"session"`` (default): the persistent TF1 session.
            ``"tflite"``: the frozen graph converted to TF Lite and run on
            XNNPACK on every core (``intra_op_threads`` caps them), verified
            against the session at load; several times faster on small
            convolutional models at small batches. ``"auto"``: both, and each
            call takes the one measured faster at load for its batch size.
            A model TF Lite cannot run exactly falls back to the session with
            a logged reason; :attr:`Predictor.backend_report` says what
            happened.
        calibration: with ``precision="int8"`` and ``backend="tflite"``: real
            input samples (an array, a list or dict of arrays, a batch source
            such as a generator or :func:`tf1infer.io.images`) on which TF Lite's
            post-training quantization observes each tensor's range; at most
            500 rows are used (spread evenly over an array; a source's first).
            int8 is never calibrated on random data. Measure the cost with
            :meth:`Predictor.precision_report` on held-out samples.
        micro_batching: gather concurrent calls from many threads (or
            ``predict_async`` coroutines) into shared batches, as TF Serving
            does: see :meth:`Predictor.enable_micro_batching`, whose settings
            ``max_batch_size`` (default 32 rows), ``max_wait_ms`` (default 2)
            and ``max_queue_size`` (default 1024 requests) are taken here too.

    Returns:
        A :class:`Predictor` whose graph is finalized.

    Raises:
        ModelNotFoundError: ``path`` does not exist.
        ModelLoadError: the model cannot be loaded; the message says why.
        UnsafeModelError: loading would run Python code stored in the file.
        InvalidOptionError: an option the format's loader does not take
            (also a ``TypeError``).

    Example:
        >>> import numpy as np, tf1infer
        >>> predictor = tf1infer.load("legacy_models/mlp.h5", intra_op_threads=2)
        >>> predictor.predict(np.random.rand(4, 10)).shape
        (4, 3)
    """
    precision = check_precision(precision)
    backend = check_backend(backend)
    batching_settings: dict[str, Any] = {
        name: value
        for name, value in (
            ("max_batch_size", max_batch_size),
            ("max_wait_ms", max_wait_ms),
            ("max_queue_size", max_queue_size),
        )
        if value is not None
    }
    if batching_settings and not micro_batching:
        raise InvalidOptionError(f"{', '.join(batching_settings)} apply only with micro_batching=True")
    if micro_batching:
        MicroBatchingSettings(**batching_settings)  # Bad settings fail before the model is loaded.
    if precision == INT8 and backend != TFLITE:
        raise InvalidOptionError(
            f"precision='int8' runs on TF Lite's integer kernels: pass backend='tflite' (got {backend!r})"
        )
    if precision == INT8 and calibration is None:
        raise InvalidOptionError(
            "precision='int8' needs calibration=: real input samples (an array, a batch source or "
            "tf1infer.images(...)) on which to observe each tensor's range; tf1infer never calibrates on random data"
        )
    if calibration is not None and precision != INT8:
        raise InvalidOptionError(f"calibration= applies only to precision='int8' (got precision={precision!r})")
    if backend != SESSION and precision not in (FLOAT32, INT8):
        raise InvalidOptionError(
            f"backend={backend!r} runs float32 or int8 TF Lite kernels; precision={precision!r} needs backend='session'"
        )
    loaded = load_graph(path, format, **options)
    if precision not in (FLOAT32, INT8):
        try:
            loaded = reduce_precision(
                loaded,
                precision,
                options.get("session_config"),
                options.get("intra_op_threads"),
                options.get("inter_op_threads"),
            )
        except BaseException:
            if loaded.owns_session:
                loaded.session.close()
            raise
    else:
        loaded.metadata["precision"] = precision
    try:
        if not loaded.graph.finalized:
            loaded.graph.finalize()  # Before anything runs: no op is created after load.
        built = backends.build(loaded, backend, threads=options.get("intra_op_threads"), calibration=calibration)
    except BaseException:
        if loaded.owns_session:
            loaded.session.close()
        raise
    try:
        predictor = Predictor(loaded, built)
    except BaseException:
        built.close()
        if loaded.owns_session:
            loaded.session.close()
        raise
    try:
        if micro_batching:
            predictor.enable_micro_batching(**batching_settings)
    except BaseException:
        predictor.close()
        raise
    return predictor


load_model = load


class ArchitectureOnly:
    """What :func:`model_from_json` returns: an architecture waiting for ``load_weights``, as in Keras 2.

    ``load_weights(path)`` loads the model (this architecture, that file's
    weights) into its own graph and session; from then on it answers as the
    :class:`~tf1infer.Predictor` it became (``predict``, ``layers``...).
    """

    def __init__(self, architecture: str, load_options: dict[str, Any]):
        self._architecture = architecture
        self._load_options = load_options
        self._predictor: Any = None

    def load_weights(
        self, filepath: str | os.PathLike, by_name: bool = False, skip_mismatch: bool = False, **kwargs: Any
    ) -> None:
        """Load the weights of ``filepath`` (an ``.h5`` written by ``save_weights`` or ``save``) into the architecture."""
        if by_name or skip_mismatch:
            raise UnsupportedOperationError(
                f"{filepath}: load_weights(by_name=True / skip_mismatch=True) is not supported: the weights are loaded "
                "layer by layer in order, as load_weights() does by default"
            )
        if self._predictor is not None:
            self._predictor.close()
        self._predictor = load(filepath, format="keras-h5", architecture=self._architecture, **self._load_options)

    def compile(self, *args: Any, **kwargs: Any) -> None:
        """Accepted and ignored, before or after ``load_weights`` (inference needs no optimizer)."""

    def __getattr__(self, name: str) -> Any:
        predictor = self.__dict__.get("_predictor")
        if predictor is None:
            raise UnsupportedOperationError(
                f"{name}: this model has an architecture but no weights yet: call load_weights('weights.h5') first"
            )
        return getattr(predictor, name)

    def __enter__(self) -> ArchitectureOnly:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self._predictor is not None:
            self._predictor.close()


def model_from_json(
    json_string: str, custom_objects: dict[str, Any] | None = None, **load_options: Any
) -> ArchitectureOnly:
    """Keras 2's ``model_from_json``: an architecture whose ``load_weights(path)`` makes it a loaded model.

    Args:
        json_string: what ``model.to_json()`` wrote.
        custom_objects: custom layer classes, as for Keras.
        **load_options: other options of ``tf1infer.load`` for Keras files (``lambdas``, ``safe_mode``...).

    Example:
        >>> model = tf1infer.model_from_json(open("legacy_models/tf1/keras_arch.json").read())
        >>> model.load_weights("legacy_models/tf1/keras_weights.h5")
        >>> model.predict(x)
    """
    if custom_objects is not None:
        load_options["custom_objects"] = custom_objects
    return ArchitectureOnly(json_string, load_options)
