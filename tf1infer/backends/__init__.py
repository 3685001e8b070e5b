"""What runs a Predictor's calls, built once at load: the persistent TF1 session, or TF Lite with XNNPACK.

``load(..., backend=...)`` chooses, and :func:`build` hands the Predictor a
ready :class:`~tf1infer.runtime.runner.Backend` (the Predictor never converts,
verifies or measures):

``"session"`` (default, :mod:`.session`)
    The finalized inference graph, run by the Session's C call on tensors
    resolved once (:mod:`tf1infer.runtime.session_runner`).
``"tflite"`` (:mod:`.tflite`)
    The frozen inference graph converted once to a TF Lite flatbuffer and run
    on XNNPACK's float32 kernels, verified against float64 at load.
``"auto"`` (:mod:`.auto`)
    Both, measured at load at batch sizes 1, 32 and 256; each call takes the
    runtime that was faster at the measured size nearest its own.

A model TF Lite cannot convert, or whose outputs differ by more than the
verification allows, falls back to the session, and the reason is logged and
kept in :attr:`Predictor.backend_report`. ``precision="int8"`` with
``calibration=`` samples converts with TF Lite's post-training integer
quantization instead (:mod:`.int8`); the caller asked for a different model,
so there is no fallback. Reduced float precisions are graph rewrites run on
the session (:mod:`.precision`).
"""

from __future__ import annotations

import logging
from typing import Any

from tf1infer.backends.auto import AutoRunner, measure_auto
from tf1infer.backends.int8 import calibration_samples, prepare_int8
from tf1infer.backends.kinds import AUTO, BACKENDS, SESSION, TFLITE, check_backend
from tf1infer.backends.session import session_backend
from tf1infer.backends.tflite import ConversionError, tflite_backend
from tf1infer.errors import InvalidOptionError, ModelLoadError, UnsupportedOperationError
from tf1infer.io.feeds import FeedConverter, TensorSpec
from tf1infer.loaders.base import ENDPOINTS_UNKNOWN, LoadedGraph
from tf1infer.loaders.graph_tools import frozen_inference_graph
from tf1infer.runtime.runner import Backend


def _refuse(reason: str):
    def runner(*feeds: Any) -> Any:
        raise UnsupportedOperationError(reason)

    return runner


__all__ = ["AUTO", "BACKENDS", "SESSION", "TFLITE", "Backend", "build", "check_backend"]

logger = logging.getLogger(__name__)


def build(
    loaded: LoadedGraph, backend: str = SESSION, *, threads: int | None = None, calibration: Any = None
) -> Backend:
    """The runner for ``backend`` over ``loaded``'s graph: converted, verified, calibrated and measured.

    Args:
        loaded: the loaded model (its graph finalized).
        backend: ``"session"``, ``"tflite"`` or ``"auto"``.
        threads: cores TF Lite may use (default: every core this process may run on).
        calibration: with ``backend="tflite"``, real input samples for int8
            quantization (load's ``calibration=``).

    Returns:
        A :class:`Backend`: ``runner``, ``report`` (what was measured and
        decided) and ``close``.

    Raises:
        ModelLoadError: int8 asked for and the model cannot be quantized.
        InputError: calibration samples that do not fit the model's inputs.
    """
    backend = check_backend(backend)
    source = loaded.metadata.get("path") or "model"
    unknown = loaded.metadata.get(ENDPOINTS_UNKNOWN)
    if unknown is not None:  # A training graph loaded for run() by name: nothing to convert, nothing predict can run.
        if backend != SESSION:
            raise InvalidOptionError(
                f"backend={backend!r} converts the model's outputs, which are not known: {unknown}"
            )
        return Backend(_refuse(unknown), {"requested": SESSION, "backend": SESSION, "endpoints": "unknown"})
    session = session_backend(loaded, source)
    if backend == SESSION:
        return session
    inputs = [TensorSpec.from_tensor(tensor) for tensor in loaded.inputs]
    outputs = [TensorSpec.from_tensor(tensor) for tensor in loaded.outputs]
    output_names = list(loaded.output_names)

    def frozen():
        return frozen_inference_graph(
            loaded.graph, loaded.session, loaded.inputs, loaded.outputs, source, "backend='tflite'", "backend='session'"
        )

    report: dict[str, Any] = {"requested": backend, "backend": SESSION}
    if "single_row_padding" in session.report:
        report["single_row_padding"] = session.report["single_row_padding"]
    if calibration is not None:
        samples = calibration_samples(calibration, FeedConverter(inputs, list(loaded.input_names)))
        runtime, measured = prepare_int8(
            session.runner, frozen, inputs, outputs, output_names, threads, source, samples
        )
        return Backend(runtime, {**report, **measured}, runtime.close)
    try:
        runtime, measured = tflite_backend(session.runner, frozen, inputs, outputs, output_names, threads)
    except (ConversionError, ModelLoadError) as exc:
        report["fallback_reason"] = str(exc)
        level = logging.WARNING if backend == TFLITE else logging.INFO
        logger.log(level, "%s: backend=%r runs on the TF1 session instead: %s", source, backend, exc)
        return Backend(session.runner, report)
    report.update(measured)
    if backend == TFLITE:
        report["backend"] = TFLITE
        return Backend(runtime, report, runtime.close)
    choice, timings = measure_auto(session.runner, runtime, inputs)
    report.update(backend=AUTO, auto_choice=choice, auto_us_per_row=timings)
    return Backend(AutoRunner({SESSION: session.runner, TFLITE: runtime}, choice), report, runtime.close)
