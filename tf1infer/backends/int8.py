"""``precision="int8"``: TF Lite's post-training integer quantization, calibrated on the caller's real samples.

The caller asked for a different model, not a faster one, so there is no
fallback: a model that cannot be quantized raises ModelLoadError. Its accuracy
is measured on the calibration rows at load and by ``precision_report`` on
held-out rows.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from tf1infer.backends.kinds import TFLITE
from tf1infer.backends.measure import available_cores
from tf1infer.backends.tflite import (
    ConversionError,
    TFLiteRuntime,
    convert_to_tflite,
    covering_rows,
    tune_chunk_rows,
    verify,
)
from tf1infer.errors import InputError, ModelLoadError
from tf1infer.io import streaming
from tf1infer.io.feeds import FeedConverter, TensorSpec
from tf1infer.loaders.graph_tools import has_tensor_lists
from tf1infer.runtime.kernels import int8_dot_products
from tf1infer.runtime.runner import Runner

logger = logging.getLogger(__name__)

# int8 calibration uses at most this many rows (the converter runs the float model on each, one at a time).
CALIBRATION_ROWS = 500


def calibration_samples(
    calibration: Any, feeds: FeedConverter, limit: int = CALIBRATION_ROWS
) -> list[list[np.ndarray]]:
    """One-row samples (one array per input) for int8 calibration, read and validated as ``predict_to`` reads.

    Arrays give ``limit`` rows spread evenly over them; other sources (a
    generator, ``tf1infer.images(...)``) their first ``limit`` rows.
    """
    reader = streaming.open_reader(calibration, feeds)
    total = reader.length if isinstance(reader, streaming.ArrayReader) else None
    spread = None
    if total and total > limit:
        spread = set(np.linspace(0, total - 1, limit).round().astype(int).tolist())
    samples: list[list[np.ndarray]] = []
    start = 0
    for chunk in reader.chunks(256):
        rows = chunk.arrays[0].shape[0] if chunk.arrays and chunk.arrays[0].ndim else 0
        for row in range(rows):
            if spread is None or start + row in spread:
                # Copies: a view would keep its whole chunk alive.
                samples.append([array[row : row + 1].copy() for array in chunk.arrays])
        start += rows
        if len(samples) >= limit:
            break
    if not samples:
        raise InputError("calibration= holds no samples; int8 needs real inputs to observe each tensor's range")
    return samples[:limit]


def prepare_int8(
    session_runner: Runner,
    frozen: Callable[[], tuple[Any, dict[str, str]]],
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    output_names: Sequence[str],
    threads: int | None,
    source: str,
    calibration: Sequence[list[np.ndarray]],
) -> tuple[TFLiteRuntime, dict[str, Any]]:
    """The int8 TF Lite runtime calibrated on ``calibration`` (one-row samples), and what was measured.

    Raises ModelLoadError where the model cannot be quantized or the quantized model does not run.
    """
    report: dict[str, Any] = {}
    threads = int(threads) if threads else available_cores()
    started = time.perf_counter()
    try:
        graph_def, feeds = frozen()
        if has_tensor_lists(graph_def):
            raise ConversionError(
                "recurrent loops run on TF Lite only as float32 models converted at fixed batch sizes, which are "
                "not quantized"
            )
        model = convert_to_tflite(graph_def, feeds, inputs, outputs, calibration)
    except ConversionError as exc:
        raise ModelLoadError(f"{source}: precision='int8' is not available for this model: {exc}") from exc
    runtime = TFLiteRuntime({None: model}, inputs, outputs, threads)
    try:
        report["chunk_us_per_row"] = tune_chunk_rows(runtime, inputs)
        verify(runtime, session_runner, inputs, output_names, covering_rows(runtime), tolerance=None)
        # The deviation that matters is on real data: the calibration rows here, held-out rows in precision_report.
        batch = [np.concatenate(parts) for parts in zip(*calibration)]
        deviations = [_abs_deviation(got, want) for got, want in zip(runtime(*batch), session_runner(*batch))]
    except ConversionError as exc:
        runtime.close()
        raise ModelLoadError(f"{source}: precision='int8': the quantized model does not run: {exc}") from exc
    except BaseException:
        runtime.close()
        raise
    dot_products = int8_dot_products()
    if dot_products is False:
        logger.warning(
            "%s: precision='int8' runs, but this CPU has no int8 dot-product instructions (AVX-VNNI, AVX-512 VNNI, AMX, "
            "Arm dotprod or i8mm), and there TF Lite's int8 kernels can be slower than its float32 ones (the "
            "mini-Xception took 1.2-1.5x as long on a 2-core AVX2 AMD EPYC); compare backend_report['chunk_us_per_row'] "
            "with a float32 load",
            source,
        )
    report.update(
        backend=TFLITE,
        precision="int8",
        tflite_interpreter=runtime.interpreter,
        int8_dot_products=dot_products,
        calibration_rows=len(calibration),
        calibration_max_abs=max(deviations, default=0.0),
        tflite_bytes=len(model),
        threads=threads,
        chunk_rows=runtime.chunk_rows,
        convert_seconds=round(time.perf_counter() - started, 3),
    )
    return runtime, report


def _abs_deviation(got: np.ndarray, want: np.ndarray) -> float:
    if want.dtype.kind not in "fc" or not want.size:
        return 0.0 if np.array_equal(got, want) else float("inf")
    return float(np.max(np.abs(got.astype(np.float64) - want)))
