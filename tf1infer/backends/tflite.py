"""``backend="tflite"``: the frozen inference graph converted once to TF Lite and run on XNNPACK.

TensorFlow's per-kernel overhead dominates small batches (a few hundred small
ops per call); XNNPACK's does not. A batch of one row runs on one interpreter
using every core; a larger batch is cut into chunks that run on one
single-threaded interpreter per core, in parallel (``Interpreter.invoke``
releases the GIL). Small chunks keep each core's activations in its cache; the
chunk size is measured at load, against running the batch whole on the
multi-threaded interpreter, which wins for models so small that handing chunks
to threads costs more than it saves.

The interpreter is ``ai_edge_litert``'s where that package is installed (the
``litert`` extra: TensorFlow 2.21 deprecates ``tf.lite.Interpreter`` in its
favour), TensorFlow's own otherwise; ``TF1INFER_TFLITE_INTERPRETER=tensorflow``
(or ``ai_edge_litert``) chooses. ``backend_report["tflite_interpreter"]`` says
which ran. Neither runs Flex ops: only TF Lite's builtin ones.

Recurrent layers convert too: their loops' lists need a static element shape,
so those graphs are converted at a few fixed batch sizes and any call runs as
chunks of them (:func:`convert`).

Nothing is trusted unverified: at load the TF Lite runtime runs the verification
batches (:func:`tf1infer.verification.synthetic.verification_batches`: random rows, padding
inside sequences, the ends of embedding tables, image ranges, two sequence
lengths) through both of its paths, and each output is compared with the same
frozen graph run in float64: TF Lite must be within a small factor of the
float32 session's own deviation from it (:class:`tf1infer.verification.reference.Tolerance`;
where float64 cannot run, within 1e-5 + 1e-4 x |session| of the session). A
model TF Lite cannot convert or whose outputs differ by more falls back to the
session (:func:`tf1infer.backends.build`), with the reason logged and kept in
:attr:`Predictor.backend_report`.
"""

from __future__ import annotations

import collections
import contextlib
import importlib.metadata
import logging
import math
import os
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import tensorflow as tf

from tf1infer.backends.measure import available_cores, probe_rows, seconds_per_row
from tf1infer.errors import InvalidOptionError
from tf1infer.io.feeds import TensorSpec
from tf1infer.loaders.graph_tools import fix_batch_dimension, has_tensor_lists
from tf1infer.runtime.runner import Runner
from tf1infer.verification.reference import Float64Unavailable, Tolerance, deviation_text, float64_runner
from tf1infer.verification.synthetic import random_array, verification_batches

logger = logging.getLogger(__name__)

# How close TF Lite must be: within a small factor of the float32 session's own deviation from float64 (float32
# sums in another order differ in the last bits; a wrong conversion differs by more).
VERIFY_TOLERANCE = Tolerance()
CHUNK_CANDIDATES = (1, 4, 16, 64)
# Batch sizes a model with recurrent loops is converted at (see convert); also its chunk candidates.
FIXED_ROWS = (1, 4, 16, 64)


class TFLiteRuntime:
    """TF Lite flatbuffers run on XNNPACK; called like ``Session.make_callable``'s callable.

    Args:
        models: ``{None: flatbuffer}`` for a model whose batch axis is free;
            for one converted at fixed batch sizes (recurrent layers:
            :func:`convert`), ``{rows: flatbuffer}`` with 1 among the sizes.
            A call of any size then runs as chunks of those sizes, the last
            chunk padded with copies of its last row (rows never interact in
            an inference graph) and the padding's outputs dropped.
        inputs, outputs: the Predictor's specs, in its order.
        threads: cores to use.
        chunk_rows: rows per interpreter call on the parallel path; None: every
            batch runs whole on the multi-threaded interpreter (best for models
            so small that splitting costs more than it saves; free batch axis only).
    """

    def __init__(
        self,
        models: dict[int | None, bytes],
        inputs: Sequence[TensorSpec],
        outputs: Sequence[TensorSpec],
        threads: int,
        chunk_rows: int | None = 1,
    ):
        self._models = dict(models)
        self.fixed_rows = tuple(sorted(size for size in self._models if size is not None))
        self._inputs = tuple(inputs)
        self._outputs = tuple(outputs)
        self.threads = max(1, int(threads))
        self.chunk_rows = chunk_rows
        # Chosen once: interpreters are made per input shapes (a sequence model's lengths) and must all be of one kind.
        self._interpreter_class, self.interpreter = interpreter_source()
        # Interpreters are not thread-safe; one call at a time (the session backend has no such limit).
        self._lock = threading.Lock()
        self._latency = _Interpreters(self, threads=self.threads)
        self._workers = [_Interpreters(self, threads=1) for _ in range(self.threads)]
        self._pool = (
            ThreadPoolExecutor(self.threads - 1, thread_name_prefix="tf1infer-tflite") if self.threads > 1 else None
        )

    def model_for(self, rows: int) -> bytes:
        return self._models[None] if None in self._models else self._models[rows]

    def __call__(self, *feeds: np.ndarray) -> list[np.ndarray]:
        rows = feeds[0].shape[0]
        with self._lock:
            if self.fixed_rows:
                return self._latency.run(feeds) if rows == 1 else self._run_parallel(feeds, rows)
            if rows <= 1 or self.chunk_rows is None:
                return self._latency.run(feeds)
            return self._run_parallel(feeds, rows)

    def _chunks(self, rows: int) -> list[tuple[int, int]]:
        if not self.fixed_rows:
            size = self.chunk_rows or 1  # The parallel path runs only with a chunk size.
        else:
            # The largest converted size that still gives every core a chunk, at most the tuned one.
            wanted = min(self.chunk_rows or self.fixed_rows[-1], max(1, -(-rows // self.threads)))
            size = max(fixed for fixed in self.fixed_rows if fixed <= wanted)
        return [(start, min(start + size, rows)) for start in range(0, rows, size)]

    def _padded_rows(self, rows: int) -> int:
        """The converted size a chunk of ``rows`` runs at: its own on a free batch axis, else the next size up."""
        if not self.fixed_rows:
            return rows
        return next((fixed for fixed in self.fixed_rows if fixed >= rows), self.fixed_rows[-1])

    def _run_chunk(
        self, interpreters: _Interpreters, feeds: Sequence[np.ndarray], start: int, stop: int
    ) -> list[np.ndarray]:
        rows = stop - start
        padding = self._padded_rows(rows) - rows
        if not padding:
            return interpreters.run([feed[start:stop] for feed in feeds])
        padded = [
            np.concatenate([feed[start:stop], np.repeat(feed[stop - 1 : stop], padding, axis=0)]) for feed in feeds
        ]
        return [value[:rows] for value in interpreters.run(padded)]

    def _run_parallel(self, feeds: Sequence[np.ndarray], rows: int) -> list[np.ndarray]:
        if rows == 0:  # Converted sizes hold no empty batch: a one-row run of zeros gives the outputs' other axes.
            return [
                value[:0]
                for value in self._latency.run([np.zeros((1,) + feed.shape[1:], feed.dtype) for feed in feeds])
            ]
        chunks = self._chunks(rows)
        workers = min(self.threads, len(chunks))
        share = math.ceil(len(chunks) / workers)
        parts = [chunks[i * share : (i + 1) * share] for i in range(workers)]
        results: list[np.ndarray] | None = None

        def run_part(worker: int) -> list[tuple[int, int, list[np.ndarray]]]:
            return [
                (start, stop, self._run_chunk(self._workers[worker], feeds, start, stop))
                for start, stop in parts[worker]
            ]

        futures = [self._pool.submit(run_part, worker) for worker in range(1, workers)] if self._pool else []
        pieces = run_part(0)
        for future in futures:
            pieces += future.result()
        for start, stop, values in pieces:
            if results is None:
                results = [np.empty((rows,) + value.shape[1:], dtype=value.dtype) for value in values]
            for result, value in zip(results, values):
                result[start:stop] = value
        assert results is not None  # rows > 0: there was at least one chunk.
        return results

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self._latency.clear()
        for worker in self._workers:
            worker.clear()


class _Interpreters:
    """Interpreters of one thread count, kept per input shapes (a resize reallocates every tensor)."""

    KEEP = 4  # The chunk size, the remainder of a batch, and more (a fixed-size model has up to 4 sizes).

    def __init__(self, runtime: TFLiteRuntime, threads: int):
        self._runtime = runtime
        self._threads = threads
        self._by_shapes: collections.OrderedDict[tuple, Callable] = collections.OrderedDict()
        self._last_shapes: Any = None
        self._last: Any = None

    def run(self, feeds: Sequence[np.ndarray]) -> list[np.ndarray]:
        # Per-call Python work matters at batch 1 on a small model (the zoo MLP's whole call takes 1.6 us):
        # the call for the last shapes is kept at hand, made once with the interpreter's methods bound.
        # Shapes, not rows: a sequence model's time axis differs from call to call.
        shapes = feeds[0].shape if len(feeds) == 1 else tuple(feed.shape for feed in feeds)
        if shapes != self._last_shapes:
            self._last, self._last_shapes = self._get(shapes, feeds), shapes
        return self._last(feeds)

    def _get(self, shapes: tuple, feeds: Sequence[np.ndarray]) -> Callable[[Sequence[np.ndarray]], list[np.ndarray]]:
        call = self._by_shapes.get(shapes)
        if call is not None:
            self._by_shapes.move_to_end(shapes)
            return call
        interpreter = new_interpreter(
            self._runtime.model_for(feeds[0].shape[0]), self._threads, self._runtime._interpreter_class
        )
        input_indices = _match(interpreter.get_input_details(), self._runtime._inputs, "input")
        for index, feed in zip(input_indices, feeds):
            interpreter.resize_tensor_input(index, feed.shape, strict=False)
        interpreter.allocate_tensors()
        output_indices = _match(interpreter.get_output_details(), self._runtime._outputs, "output")
        call = _bound_call(interpreter, input_indices, output_indices)
        self._by_shapes[shapes] = call
        if len(self._by_shapes) > self.KEEP:
            self._by_shapes.popitem(last=False)
        return call

    def clear(self) -> None:
        self._by_shapes.clear()
        self._last_shapes, self._last = None, None


def _bound_call(interpreter, input_indices: Sequence[int], output_indices: Sequence[int]):
    """``feeds -> outputs`` on ``interpreter``, with no per-call lookups (and no loops for one input and output)."""
    set_tensor, invoke, get_tensor = interpreter.set_tensor, interpreter.invoke, interpreter.get_tensor
    if len(input_indices) == 1 and len(output_indices) == 1:
        (input_index,), (output_index,) = input_indices, output_indices

        def call_one(feeds):
            set_tensor(input_index, feeds[0])
            invoke()
            return [get_tensor(output_index)]

        return call_one

    def call(feeds):
        for index, feed in zip(input_indices, feeds):
            set_tensor(index, feed)
        invoke()
        return [get_tensor(index) for index in output_indices]

    return call


INTERPRETER_ENV = "TF1INFER_TFLITE_INTERPRETER"
LITERT, TENSORFLOW = "ai_edge_litert", "tensorflow"


def interpreter_source() -> tuple[Callable[..., Any], str]:
    """The Interpreter class to use and what it is (``"ai_edge_litert 2.3.0"``, ``"tensorflow 2.21.0"``).

    ``ai_edge_litert``'s where it is installed, else TensorFlow's;
    ``TF1INFER_TFLITE_INTERPRETER`` (``ai_edge_litert`` or ``tensorflow``) chooses,
    and asking for ``ai_edge_litert`` where it is missing is an error, not a silent swap.
    """
    wanted = os.environ.get(INTERPRETER_ENV, "").strip().lower() or None
    if wanted not in (None, LITERT, TENSORFLOW):
        raise InvalidOptionError(f"{INTERPRETER_ENV} must be {LITERT!r} or {TENSORFLOW!r}; got {wanted!r}")
    if wanted != TENSORFLOW:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:
            if wanted == LITERT:
                raise InvalidOptionError(
                    f"{INTERPRETER_ENV}={LITERT} but ai_edge_litert cannot be imported ({exc}); "
                    "pip install 'tf1infer[litert]', or unset it to use TensorFlow's interpreter"
                ) from exc
        else:
            return Interpreter, f"{LITERT} {importlib.metadata.version('ai-edge-litert')}"
    return tf.lite.Interpreter, f"{TENSORFLOW} {tf.__version__}"


def new_interpreter(model_content: bytes, threads: int, interpreter_class: Callable[..., Any] | None = None):
    """An interpreter of ``interpreter_class`` (default: :func:`interpreter_source`'s) for ``model_content``."""
    if interpreter_class is None:
        interpreter_class, _ = interpreter_source()
    with warnings.catch_warnings():
        # TensorFlow's tf.lite.Interpreter warns that it will move to ai_edge_litert; where that package is not
        # installed, the one in the tensorflow release is the one that needs no extra dependency.
        warnings.simplefilter("ignore")
        return interpreter_class(model_content=model_content, num_threads=threads)


def _match(details: list[dict], specs: Sequence[TensorSpec], role: str) -> list[int]:
    """Flatbuffer tensor indices for ``specs``, by name; by position where names were not kept."""
    by_name = {detail["name"]: detail["index"] for detail in details}
    indices = []
    for position, spec in enumerate(specs):
        name = spec.name[:-2] if spec.name.endswith(":0") else spec.name
        if name in by_name:
            indices.append(by_name[name])
        elif len(details) == len(specs):
            indices.append(details[position]["index"])
        else:
            raise ValueError(f"the TF Lite model has no {role} named {name!r}")
    return indices


@contextlib.contextmanager
def captured_stderr():
    """Collect what C++ code writes to file descriptor 2 (the converter's MLIR diagnostics) into a list."""
    lines: list[str] = []
    with tempfile.TemporaryFile(mode="w+b") as sink:
        saved = os.dup(2)
        try:
            os.dup2(sink.fileno(), 2)
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines.extend(sink.read().decode("utf-8", "replace").splitlines())


def convert(
    graph_def, feeds: dict[str, str], inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]
) -> dict[int | None, bytes]:
    """The frozen inference GraphDef as TF Lite flatbuffers: ``{None: model}`` with a free batch axis, where it converts.

    Loops over TensorLists (Keras recurrent layers as TF 2 builds them) convert
    only where every list's element shape is static, and an element holds one
    time step of every row: those graphs are converted once per size in
    :data:`FIXED_ROWS` with the batch axis fixed
    (:func:`~tf1infer.loaders.graph_tools.fix_batch_dimension`), and
    :class:`TFLiteRuntime` runs any batch as chunks of those sizes. TF Lite
    then runs the loop as a ``WHILE`` of builtin ops.

    Raises ``ConversionError`` with the converter's reason(s).
    """
    try:
        return {None: convert_to_tflite(graph_def, feeds, inputs, outputs)}
    except ConversionError as exc:
        batched = all(spec.shape and spec.shape[0] is None for spec in (*inputs, *outputs))
        if not (batched and has_tensor_lists(graph_def)):
            raise
        free_batch = exc
    try:
        return {
            rows: convert_to_tflite(fix_batch_dimension(graph_def, feeds.values(), rows), feeds, inputs, outputs)
            for rows in FIXED_ROWS
        }
    except ConversionError as exc:
        raise ConversionError(f"{free_batch}; with a fixed batch size: {str(exc).split(': ', 1)[-1]}") from exc


def convert_to_tflite(
    graph_def,
    feeds: dict[str, str],
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    calibration: Sequence[list[np.ndarray]] | None = None,
) -> bytes:
    """The frozen inference GraphDef as a TF Lite flatbuffer with builtin ops only.

    float32, or with ``calibration`` (one-row samples: a list of arrays, one
    per input, each) int8: post-training quantization of weights and
    activations, the activation ranges observed on those samples; the model's
    inputs and outputs stay float32 (quantized at its edges).

    Raises ``ConversionError`` with the converter's first error line.
    """
    graph = tf.Graph()
    with graph.as_default():
        tf.import_graph_def(graph_def, name="")
    input_tensors = [graph.get_tensor_by_name(feeds[spec.name]) for spec in inputs]
    output_tensors = [graph.get_tensor_by_name(spec.name) for spec in outputs]
    converter = tf.compat.v1.lite.TFLiteConverter(graph_def, input_tensors, output_tensors)
    if calibration is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: iter(calibration)
    try:
        with captured_stderr() as diagnostics, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return converter.convert()
    except Exception as exc:  # The converter raises ConverterError, ValueError and more, by stage.
        errors = [line.split("error: ", 1)[1] for line in diagnostics if "error: " in line]
        message = errors[0] if errors else (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConversionError(f"TF Lite cannot convert this graph: {message}") from exc


class ConversionError(Exception):
    """Internal: the reason a runtime is unavailable; becomes a logged fallback."""


def verify(
    runtime: TFLiteRuntime,
    reference: Runner,
    inputs: Sequence[TensorSpec],
    output_names: Sequence[str],
    rows: int,
    tolerance: Tolerance | None,
    float64: Runner | None = None,
) -> dict[str, Any]:
    """Check TF Lite against the session (and ``float64``, the frozen graph in float64) on the verification batches.

    Each batch of :func:`~tf1infer.verification.synthetic.verification_batches` (``rows``
    random rows at least, so that the parallel path reaches every worker) runs
    whole, and its first row alone (the one-row path). ``tolerance``:
    :data:`VERIFY_TOLERANCE` for float32; None (int8) checks shapes and dtypes
    and measures, without a bound.

    Returns ``{"max_deviation": largest max_abs_error, "deviations": {output:
    figures}, "float64_unavailable": reason or None}``.
    """
    rng = np.random.default_rng(20261122)
    batches = verification_batches(inputs, rng, random_rows=rows)
    passes = [[array[:1] for array in batches[0]], *batches]
    collected: dict[str, tuple[list, list, list]] = {name: ([], [], []) for name in output_names}
    unavailable = None
    for feeds in passes:
        try:
            got = runtime(*feeds)
        except (RuntimeError, ValueError, IndexError) as exc:
            raise ConversionError(f"the TF Lite interpreter cannot run it: {str(exc).strip().splitlines()[0]}") from exc
        want = reference(*feeds)
        exact = None
        if float64 is not None and tolerance is not None:
            try:
                exact = float64(*feeds)
            except Float64Unavailable as exc:
                float64, unavailable = None, str(exc)
        for position, (name, value, expected) in enumerate(zip(output_names, got, want)):
            if value.shape != expected.shape or value.dtype != expected.dtype:
                raise ConversionError(
                    f"output '{name}' comes back as {value.dtype}{list(value.shape)} from TF Lite, "
                    f"{expected.dtype}{list(expected.shape)} from the session"
                )
            if expected.dtype.kind in "fc" and not np.array_equal(np.isfinite(value), np.isfinite(expected)):
                raise ConversionError(
                    f"output '{name}' holds NaN or infinite values from TF Lite where the session's are finite"
                )
            collected[name][0].append(value.ravel())
            collected[name][1].append(expected.ravel())
            if exact is not None:
                collected[name][2].append(exact[position].ravel())
    deviations = {}
    for name, (got_parts, want_parts, exact_parts) in collected.items():
        value, expected = np.concatenate(got_parts), np.concatenate(want_parts)
        exact_all = np.concatenate(exact_parts) if float64 is not None and len(exact_parts) == len(got_parts) else None
        figures = (tolerance or Tolerance()).judge(value, expected, exact_all)
        ok = figures.pop("ok")
        if tolerance is not None and not ok:
            raise ConversionError(
                f"output '{name}' differs from the session's: {deviation_text('', figures).lstrip(': ')}"
            )
        deviations[name] = figures
    worst = max((figures["max_abs_error"] for figures in deviations.values()), default=0.0)
    return {"max_deviation": worst, "deviations": deviations, "float64_unavailable": unavailable}


def tune_chunk_rows(runtime: TFLiteRuntime, inputs: Sequence[TensorSpec]) -> dict[Any, float]:
    """Measure the parallel path per chunk size, and the whole batch on one interpreter; keep the fastest.

    The chunk sizes are :data:`CHUNK_CANDIDATES`, or a fixed-size model's own
    sizes (which have no whole-batch path). Returns {chunk size or "whole": us per row}.
    """
    rng = np.random.default_rng(7)
    one = [random_array(spec, 1, rng) for spec in inputs]
    per_row = seconds_per_row(runtime, one)
    candidates = runtime.fixed_rows or CHUNK_CANDIDATES
    rows = probe_rows(per_row, runtime.threads * max(candidates))
    feeds = [random_array(spec, rows, rng) for spec in inputs]
    measured: dict[Any, float] = {}
    for chunk in candidates:
        if chunk * runtime.threads > max(rows, runtime.threads):
            break
        runtime.chunk_rows = chunk
        measured[chunk] = round(seconds_per_row(runtime, feeds) * 1e6, 2)
    if not runtime.fixed_rows:  # Fixed sizes run in chunks only.
        runtime.chunk_rows = None
        measured["whole"] = round(seconds_per_row(runtime, feeds) * 1e6, 2)
    best = min(measured, key=lambda chunk: measured[chunk])
    runtime.chunk_rows = None if best == "whole" else best
    return measured


def covering_rows(runtime: TFLiteRuntime) -> int:
    """Rows that reach every worker, with a remainder of 3 (padded to 4 where the sizes are fixed)."""
    return 2 * runtime.threads * (runtime.chunk_rows or 1) + 3


def tflite_backend(
    session_runner: Runner,
    frozen: Callable[[], tuple[Any, dict[str, str]]],
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    output_names: Sequence[str],
    threads: int | None,
) -> tuple[TFLiteRuntime, dict[str, Any]]:
    """Convert, tune and verify: a TF Lite runtime as exact as the session, and what was measured.

    ``frozen`` returns the frozen inference GraphDef and its feed names.
    Raises ``ConversionError`` (or ``ModelLoadError`` from freezing) with the
    reason TF Lite cannot stand in for the session.
    """
    threads = int(threads) if threads else available_cores()
    started = time.perf_counter()
    graph_def, feeds = frozen()
    models = convert(graph_def, feeds, inputs, outputs)
    runtime = TFLiteRuntime(models, inputs, outputs, threads)
    report: dict[str, Any] = {"tflite_interpreter": runtime.interpreter}
    exact: Any = None  # The float64 runner, closed at the end.
    try:
        report["chunk_us_per_row"] = tune_chunk_rows(runtime, inputs)
        try:
            exact = float64_runner(graph_def, [feeds[spec.name] for spec in inputs], [spec.name for spec in outputs])
        except Float64Unavailable as exc:
            report["float64_unavailable"] = str(exc)
        checked = verify(runtime, session_runner, inputs, output_names, covering_rows(runtime), VERIFY_TOLERANCE, exact)
        report["max_deviation"], report["deviations"] = checked["max_deviation"], checked["deviations"]
        if checked["float64_unavailable"]:
            report["float64_unavailable"] = checked["float64_unavailable"]
    except BaseException:
        runtime.close()
        raise
    finally:
        if exact is not None:
            exact.close()
    if runtime.fixed_rows:
        report["fixed_rows"] = list(runtime.fixed_rows)
    report.update(
        tflite_bytes=sum(map(len, models.values())),
        threads=threads,
        chunk_rows=runtime.chunk_rows,
        convert_seconds=round(time.perf_counter() - started, 3),
    )
    return runtime, report
