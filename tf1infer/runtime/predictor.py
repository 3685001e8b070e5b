"""The Predictor's core: one finalized graph, one persistent Session, Keras-style predict.

Every format ends here. At construction the graph is finalized (no op can be
added afterwards, so repeated calls cannot grow it), and the Predictor is handed
a ready runner (:class:`~tf1infer.runtime.runner.Backend`, built by
:func:`tf1infer.backends.build`; for :meth:`BasePredictor.from_session`, the
Session's own callable, :mod:`tf1infer.runtime.session_runner`). A call is:
check the feed (:mod:`tf1infer.io.feeds`), run the runner, or queue it for the
micro-batcher that wraps it (:mod:`tf1infer.runtime.microbatch`), return numpy
arrays. The Keras 2 and TF1 session surfaces are mixed in above this
(:mod:`tf1infer.faces`, :class:`tf1infer.Predictor`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import tensorflow as tf

from tf1infer.errors import (
    InputError,
    InvalidOptionError,
    PredictionError,
    PredictorClosedError,
    Tf1InferError,
    tensorflow_reason,
)
from tf1infer.io import batching, streaming
from tf1infer.io.feeds import FeedConverter, TensorSpec
from tf1infer.loaders.base import ENDPOINTS_UNKNOWN, LoadedGraph, resolve_tensor, short_name
from tf1infer.loaders.graph_tools import state_writers
from tf1infer.runtime.memory import DEFAULT_MAX_BATCH_SIZE, choose_batch_size
from tf1infer.runtime.microbatch import DEFAULT_MAX_BATCH_SIZE as DEFAULT_MICRO_BATCH_SIZE
from tf1infer.runtime.microbatch import (
    DEFAULT_MAX_QUEUE_SIZE,
    DEFAULT_MAX_WAIT_MS,
    MicroBatcher,
    MicroBatchingSettings,
    check_batchable,
)
from tf1infer.runtime.runner import Backend
from tf1infer.runtime.session_runner import session_callable

if TYPE_CHECKING:
    from tf1infer.io.writers import PredictionSummary
    from tf1infer.runtime.memory import BatchSizeChoice

logger = logging.getLogger(__name__)

_P = TypeVar("_P", bound="BasePredictor")


# How a failure of each backend names what failed.
_RUNTIME_NAMES = {"session": "the session", "tflite": "the TF Lite interpreter"}


class BasePredictor:
    """Runs calls, checks feeds and owns the session's lifetime: :class:`tf1infer.Predictor` without its faces.

    Args:
        loaded: the loaded model.
        backend: the ready runner to call (:func:`tf1infer.backends.build`);
            None runs the session's own callable.
        finalize: finalize the graph first, so that nothing can add ops to it.
    """

    def __init__(self, loaded: LoadedGraph, backend: Backend | None = None, *, finalize: bool = True):
        self._graph = loaded.graph
        self._session = loaded.session
        self._owns_session = loaded.owns_session
        self._inputs = tuple(TensorSpec.from_tensor(tensor) for tensor in loaded.inputs)
        self._outputs = tuple(TensorSpec.from_tensor(tensor) for tensor in loaded.outputs)
        self._input_names = tuple(loaded.input_names)
        self._output_names = tuple(loaded.output_names)
        self.metadata: dict[str, Any] = dict(loaded.metadata)
        self._keras_model = loaded.keras_model
        self._source = self.metadata.get("path") or "model"
        self._feeds = FeedConverter(self._inputs, self._input_names, self.metadata.get(ENDPOINTS_UNKNOWN))
        # A graph built with a fixed batch size (Keras's batch_input_shape=(25, ...), a stateful RNN's): runs of
        # other sizes are split into runs of exactly that size, the last one padded.
        self._fixed_batch = _fixed_batch_size(loaded.inputs)
        self._single_output = len(self._outputs) == 1
        if finalize and not self._graph.finalized:
            self._graph.finalize()
        if backend is None:
            try:
                runner = session_callable(self._session, loaded.inputs, loaded.outputs)
            except (tf.errors.OpError, ValueError, TypeError) as exc:
                raise Tf1InferError(f"{self._source}: cannot prepare the session to run the model: {exc}") from exc
            backend = Backend(runner, {"requested": "session", "backend": "session"})
        self._writes_state = bool(state_writers(tensor.op for tensor in loaded.outputs))  # allow_stateful outputs.
        self._callable = backend.runner
        self._backend_report = dict(backend.report)
        self._close_backend = backend.close
        self._batcher: MicroBatcher | None = None

    @classmethod
    def from_session(
        cls: type[_P],
        session: tf.compat.v1.Session,
        inputs: Sequence[Any] | Mapping[str, Any],
        outputs: Sequence[Any] | Mapping[str, Any],
        *,
        finalize: bool = True,
    ) -> _P:
        """Wrap a TF1 graph and session you already have.

        An old ``sess.run`` loop gains batching, input validation and the
        guard against graph growth. The session stays yours: ``close()`` does
        not close it.

        Args:
            session: a ``tf.compat.v1.Session`` whose variables are initialized.
            inputs: input tensors, tensor names (``"x:0"``) or op names, in
                order; or a dict from the name callers will use to each of them.
            outputs: output tensors or names, likewise.
            finalize: finalize the session's graph, so that nothing can add ops
                to it while the Predictor is in use (recommended). With False,
                code that keeps adding ops to the graph still leaks.

        Returns:
            A Predictor running ``session``.

        Raises:
            ModelLoadError: a name does not exist in the graph.

        Example:
            >>> predictor = tf1infer.Predictor.from_session(sess, ["Placeholder:0"], ["Add:0"])
            >>> y = predictor.predict(x, batch_size=256)
        """
        graph = session.graph
        input_names, input_tensors = _named_tensors(graph, inputs, "input")
        output_names, output_tensors = _named_tensors(graph, outputs, "output")
        loaded = LoadedGraph(
            graph=graph,
            session=session,
            inputs=input_tensors,
            outputs=output_tensors,
            input_names=input_names,
            output_names=output_names,
            metadata={"format": "session"},
            owns_session=False,
        )
        return cls(loaded, finalize=finalize)

    # -- metadata -----------------------------------------------------------

    @property
    def inputs(self) -> list[TensorSpec]:
        """The model's inputs (name, shape, dtype), in order."""
        return list(self._inputs)

    @property
    def outputs(self) -> list[TensorSpec]:
        """The model's outputs (name, shape, dtype), in order."""
        return list(self._outputs)

    @property
    def input_names(self) -> list[str]:
        """Input names as Keras has them (layer names) or as the signature keys them."""
        return list(self._input_names)

    @property
    def output_names(self) -> list[str]:
        return list(self._output_names)

    @property
    def input_shape(self) -> tuple | list[tuple]:
        """Shape of the input, or a list of shapes for several inputs (as Keras)."""
        return _keras_shape(self._inputs)

    @property
    def output_shape(self) -> tuple | list[tuple]:
        return _keras_shape(self._outputs)

    @property
    def session(self) -> tf.compat.v1.Session:
        """The underlying ``tf.compat.v1.Session``."""
        return self._session

    @property
    def graph(self) -> tf.Graph:
        """The underlying (finalized) ``tf.Graph``."""
        return self._graph

    @property
    def backend(self) -> str:
        """The runtime in use: ``"session"``, ``"tflite"`` or ``"auto"`` (see :mod:`tf1infer.backends`)."""
        return self._backend_report["backend"]

    @property
    def backend_report(self) -> dict[str, Any]:
        """What load measured and decided for the backend.

        Keys: ``requested`` and ``backend``; with TF Lite: ``max_deviation``
        (TF Lite's largest deviation from the float64 reference at
        verification, or from the session where float64 cannot run:
        ``float64_unavailable`` says why), ``deviations`` (per output:
        ``max_abs_error``, ``max_rel_error``, ``float32_session_error``,
        ``allowed``), ``chunk_rows`` and
        ``chunk_us_per_row`` (the parallel path's chunk size and its probe),
        ``threads``, ``tflite_bytes``, ``convert_seconds``; with ``"auto"``:
        ``auto_choice`` ({batch size: runtime}) and ``auto_us_per_row``;
        after a fallback: ``fallback_reason``. Where oneDNN's kernels are
        on: ``single_row_padding`` (``one_row_ms``, ``two_rows_ms`` and
        ``padded``: whether one-row calls to the session run as two rows,
        because that measured faster at load).
        """
        return dict(self._backend_report)

    # -- prediction ---------------------------------------------------------

    def predict_on_batch(self, x: Any) -> np.ndarray | list[np.ndarray]:
        """Run the model once on ``x`` as a single batch, with the least overhead.

        Args:
            x: a numpy array (or array-like) for a one-input model; a list in
                input order or a dict keyed by input name for several inputs.

        Returns:
            A numpy array for a one-output model, else a list in output order.

        Raises:
            InputError: ``x`` does not fit the model's inputs.
            PredictionError: TensorFlow failed while running the model.
        """
        return self._pack(self._dispatch(self._feeds.fast_convert(x)))

    __call__ = predict_on_batch

    async def predict_async(self, x: Any) -> np.ndarray | list[np.ndarray]:
        """``predict_on_batch`` for coroutines: ``y = await predictor.predict_async(x)``.

        With micro-batching on, the request joins the same queue as threaded
        callers'; without it, the run happens in the event loop's default
        executor. Either way the event loop is never blocked, not even while
        a full queue makes the request wait for room. ``x`` is validated
        first, so a bad input raises :class:`InputError` here at once.

        Example:
            >>> async def handle(request):
            ...     return await predictor.predict_async(request.sample[None])
        """
        feeds = self._feeds.fast_convert(x)
        batcher = self._batcher
        if batcher is not None and self._fits_batcher(batcher, feeds):
            return self._pack(await batcher.run_async(feeds))
        return self._pack(await asyncio.get_running_loop().run_in_executor(None, self._run, feeds))

    def predict(
        self,
        x: Any,
        batch_size: int | None = None,
        verbose: int = 0,
        steps: int | None = None,
        max_queue_size: int = 10,
        workers: int = 1,
        use_multiprocessing: bool = False,
    ) -> np.ndarray | list[np.ndarray]:
        """Predict on ``x`` in batches, as ``keras.Model.predict`` does.

        Args:
            x: input data: a numpy array (or array-like) for a one-input model,
                a list in input order or a dict keyed by input name for several
                inputs; or a batch source (generator, ``keras.utils.Sequence``,
                ``tf.data.Dataset``) yielding such batches, or ``(x, y)`` tuples.
            batch_size: rows per ``sess.run``; default 32. Ignored for batch
                sources, whose batches are run as they come.
            verbose: 0 silent, 1 progress bar, 2 one line at the end.
            steps: run at most this many batches, then stop.
            max_queue_size, workers, use_multiprocessing: accepted for
                compatibility with Keras calls and ignored: batches are fed
                from this thread.

        Returns:
            A numpy array with one row per sample for a one-output model, else a
            list of arrays in output order.

        Raises:
            InputError: ``x`` does not fit the model's inputs.
            PredictionError: TensorFlow failed while running the model.

        Example:
            >>> predictor = tf1infer.load("legacy_models/mlp.h5")
            >>> predictor.predict(np.random.rand(1000, 10), batch_size=256).shape
            (1000, 3)
        """
        del max_queue_size, workers, use_multiprocessing
        batch_size = batching.check_batch_size(batch_size)
        steps = batching.check_steps(steps)
        if batching.is_batch_source(x):
            return self._predict_source(x, steps, verbose)
        arrays = self._feeds.prepare(x)
        if arrays[0].ndim == 0:  # Unknown-rank input given a scalar: nothing to split.
            return self.predict_on_batch(x)
        count = arrays[0].shape[0]
        if steps is not None:
            count = min(count, steps * batch_size)
        if count <= batch_size:
            with batching.progress(1, verbose) as bar:
                result = self._dispatch([self._feeds.finish(i, a[:count]) for i, a in enumerate(arrays)])
                bar.update(1)
            return self._pack(result)
        results: list[np.ndarray] | None = None
        with batching.progress(-(-count // batch_size), verbose) as bar:
            for start, stop in batching.batch_bounds(count, batch_size):
                batch = self._dispatch([self._feeds.finish(i, a[start:stop]) for i, a in enumerate(arrays)])
                if results is None:
                    # Preallocate once: no list of batches, no concatenate copy.
                    results = [np.empty((count,) + out.shape[1:], dtype=out.dtype) for out in batch]
                for column, out in zip(results, batch):
                    column[start:stop] = out
                bar.update(1)
        assert results is not None  # count > batch_size: at least one batch ran.
        return self._pack(results)

    def predict_iter(
        self,
        source: Any,
        batch_size: int | str | None = 32,
        prefetch: int = 2,
        *,
        batched: bool | None = None,
        memory_limit: int | float | None = None,
        with_keys: bool = False,
    ) -> Iterator[Any]:
        """Predict on a stream, yielding output batches in input order, in memory set by the batch size.

        The next batch is read (and, for images, decoded) on a background
        thread while the session runs the current one, at most ``prefetch``
        batches ahead. An exception in the source is raised here with its own
        traceback; leaving the loop early stops the thread and closes the
        source (a generator's ``finally`` blocks run).

        Args:
            source: arrays, an HDF5 dataset (read in slices, never whole), a
                list or dict of those for several inputs; or a generator, any
                iterable, a ``keras.utils.Sequence``-style object or a
                ``tf.data.Dataset`` yielding single samples or whole batches;
                or :func:`tf1infer.io.images`. An item whose first input has the
                model input's rank is a batch, one with one axis less a single
                sample; single samples are gathered into batches of
                ``batch_size``, batches run as they come.
            batch_size: rows per run, or ``"auto"``: the largest size whose
                measured peak memory stays under ``memory_limit`` (see
                :meth:`auto_batch_size`).
            prefetch: batches prepared ahead of the running one.
            batched: force how items are read: ``True`` each item is a batch,
                ``False`` each is one sample; ``None`` decides on the first item.
            memory_limit: for ``batch_size="auto"``: bytes, or a fraction of
                the memory available now (default 0.25).
            with_keys: yield ``(keys, outputs)``, where ``keys`` names each row
                (an image's path; ``None`` for sources without keys).

        Yields:
            One output batch per batch read: an array for a one-output model,
            else a list of arrays in output order.

        Raises:
            InputError: the source or a sample does not fit the model.
            PredictionError: TensorFlow failed. Out-of-memory is not an error
                until a single sample fails: the batch is split and retried.

        Example:
            >>> predictor = tf1infer.load("legacy_models/mlp.h5")
            >>> samples = (np.random.rand(10) for _ in range(1000))  # one at a time
            >>> sum(len(batch) for batch in predictor.predict_iter(samples, batch_size=64))
            1000
        """
        reader, size, _ = self._open_stream(source, batch_size, prefetch, batched, memory_limit)
        return self._iterate(reader, size, prefetch, with_keys)

    def predict_to(
        self,
        path: str | os.PathLike,
        source: Any,
        batch_size: int | str | None = 32,
        prefetch: int = 2,
        *,
        batched: bool | None = None,
        memory_limit: int | float | None = None,
        resume: bool = False,
        verbose: int = 0,
    ) -> PredictionSummary:
        """Predict on a stream and write the outputs to ``path`` as they are computed.

        ``.npy`` holds the output of a single-output model; ``.h5`` holds one
        chunked dataset per output (named after it), plus ``keys``,
        ``labels`` and ``skipped`` when the source has them (see
        :mod:`tf1infer.io.writers`). The file gets exactly one row per input
        sample, in input order. It is written as ``<path>.partial`` and renamed
        when complete; an interrupted ``.h5`` run keeps the partial file, and
        ``resume=True`` continues it from the last complete batch.

        Args:
            path: the ``.npy`` or ``.h5`` file to write (replaced if it exists).
            source, batch_size, prefetch, batched, memory_limit: as for
                :meth:`predict_iter`.
            resume: continue ``<path>.partial`` from where it stopped. The
                source must give the same data again; rows already written are
                skipped, not recomputed.
            verbose: 1 for a progress bar (samples/s, ETA), 0 for none.

        Returns:
            A :class:`~tf1infer.io.writers.PredictionSummary`: rows, batch size,
            skipped inputs, time.

        Raises:
            InputError, PredictionError: as for :meth:`predict_iter`; the
                partial file of an ``.h5`` run is kept for ``resume=True``.
            OutputFileError: the file cannot be written or resumed.
            InvalidOptionError: the extension is not .npy / .h5, or .npy is
                asked for a model with several outputs or with ``resume``.

        Example:
            >>> predictor.predict_to("scores.h5", h5py.File("inputs.h5")["x"], batch_size=256)
        """
        from tf1infer.io.writers import PredictionSummary, open_writer, run_to_file

        reader, size, choice = self._open_stream(source, batch_size, prefetch, batched, memory_limit)
        try:
            writer = open_writer(path, self._output_names, reader, os.path.abspath(str(self._source)), resume)
            start = writer.start()
        except BaseException:
            reader.close()  # Nothing was started: release the source (a generator's finally runs).
            raise
        summary = PredictionSummary(
            path=os.fspath(path), rows=0, batch_size=size, batch_size_choice=choice, resumed_at=start and writer.rows
        )
        runner = streaming.BatchRunner(self._dispatch, self._source)
        total = reader.length if reader.length is not None else getattr(reader, "size_hint", None)
        return run_to_file(
            writer, streaming.stream(reader, runner, size or 1, prefetch, start), total, verbose, summary
        )

    def auto_batch_size(
        self, x: Any, memory_limit: int | float | None = None, max_batch_size: int = 4096, prefetch: int = 2
    ) -> BatchSizeChoice:
        """The largest batch size whose measured peak memory stays under ``memory_limit``.

        Probes by running the model on the first sample of ``x`` repeated 1, 2,
        4... times and reading the process's peak memory after each run (see
        :mod:`tf1infer.runtime.memory`). ``predict_iter`` and ``predict_to`` call this
        for ``batch_size="auto"``.

        Args:
            x: any source ``predict_iter`` takes (only its first sample is used).
            memory_limit: bytes, or a fraction of the memory available now;
                default 0.25.
            max_batch_size: the largest size considered.
            prefetch: the prefetch depth of the run it is for (queued input
                batches count against the limit).

        Returns:
            A :class:`~tf1infer.runtime.memory.BatchSizeChoice` with ``batch_size`` and
            the measured probes.
        """
        reader = streaming.open_reader(x, self._feeds)
        try:
            return self._choose_batch_size(reader, memory_limit, max_batch_size, prefetch)
        finally:
            reader.close()

    def predict_classes(self, x: Any, batch_size: int | None = None, verbose: int = 0) -> np.ndarray:
        """Class index per sample, as Keras 2's ``Sequential.predict_classes``.

        Argmax over the last axis when the output has several units, else
        ``probability > 0.5`` as int32.
        """
        probabilities = self._single_output_of("predict_classes", self.predict(x, batch_size, verbose))
        if probabilities.shape[-1] > 1:
            return probabilities.argmax(axis=-1)
        return (probabilities > 0.5).astype("int32")

    def predict_proba(self, x: Any, batch_size: int | None = None, verbose: int = 0) -> np.ndarray:
        """The model's output, as Keras 2's ``Sequential.predict_proba``.

        Like Keras, warns when the values are not in [0, 1].
        """
        probabilities = self._single_output_of("predict_proba", self.predict(x, batch_size, verbose))
        if probabilities.size and (probabilities.min() < 0.0 or probabilities.max() > 1.0):
            warnings.warn(
                "Network returning invalid probability values. The last layer might not normalize "
                "predictions into probabilities (like softmax or sigmoid would).",
                stacklevel=2,
            )
        return probabilities

    # -- micro-batching -------------------------------------------------------

    def enable_micro_batching(
        self: _P,
        max_batch_size: int = DEFAULT_MICRO_BATCH_SIZE,
        max_wait_ms: float = DEFAULT_MAX_WAIT_MS,
        max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE,
    ) -> _P:
        """Gather concurrent calls into shared batches, as TF Serving's batching does (see :mod:`tf1infer.runtime.microbatch`).

        From then on, every call of up to ``max_batch_size`` rows (``predict``,
        ``predict_on_batch``, ``predictor(x)``, ``predict_async``, and the
        batches of ``predict_iter``) is validated in its caller's thread,
        queued, run in one batch with other callers' requests of the same
        trailing shape, and answered with exactly its own rows. Larger calls
        run on their own as before. A lone caller waits up to ``max_wait_ms``
        for company: turn this on for concurrent traffic.

        Args:
            max_batch_size: rows per gathered batch.
            max_wait_ms: how long the oldest queued request waits for the
                batch to fill before it runs anyway.
            max_queue_size: requests that may wait; beyond that, callers block
                until there is room (back-pressure).

        Returns:
            This Predictor.

        Raises:
            InvalidOptionError: a setting out of range, micro-batching already
                on, or a model whose inputs and outputs have no free batch axis
                or whose outputs write state.

        Example:
            >>> predictor = tf1infer.load("legacy_models/cnn.h5").enable_micro_batching(max_wait_ms=2)
            >>> # in each of many threads: predictor.predict_on_batch(one_image[None])
        """
        if self.closed:
            _closed()
        settings = MicroBatchingSettings(max_batch_size, max_wait_ms, max_queue_size)
        if self._batcher is not None:
            raise InvalidOptionError(f"{self._source}: micro-batching is already on ({self._batcher.settings})")
        check_batchable(self._inputs, self._outputs, self._writes_state, self._source)
        self._batcher = MicroBatcher(self._run, settings, self._source)
        return self

    @property
    def micro_batching(self) -> MicroBatchingSettings | None:
        """The micro-batching settings, or None where it is off."""
        return None if self._batcher is None else self._batcher.settings

    @property
    def micro_batching_stats(self) -> dict[str, int]:
        """``{"batches", "rows", "queued"}``: gathered batches run, their rows, and requests waiting now."""
        batcher = self._batcher
        if batcher is None:
            return {"batches": 0, "rows": 0, "queued": 0}
        return {"batches": batcher.batches_run, "rows": batcher.rows_run, "queued": batcher.queued}

    def _dispatch(self, feeds: list[np.ndarray]) -> list[np.ndarray]:
        """Run validated feeds: through the micro-batching queue where it is on and they fit, else directly."""
        batcher = self._batcher
        if batcher is not None and self._fits_batcher(batcher, feeds):
            return batcher.run(feeds)
        return self._run(feeds)

    @staticmethod
    def _fits_batcher(batcher: MicroBatcher, feeds: list[np.ndarray]) -> bool:
        return feeds[0].ndim > 0 and 0 < feeds[0].shape[0] <= batcher.settings.max_batch_size

    # -- lifecycle ----------------------------------------------------------

    def close(self) -> None:
        """Release the callable and close the session (if the Predictor created it).

        With micro-batching on, new calls are refused first, every queued
        request is run and answered, and the batching thread ends.
        """
        if self._callable is _closed:
            return
        if self._batcher is not None:
            self._batcher.close()
        self._callable = _closed
        self._close_backend()
        if self._owns_session:
            self._session.close()

    @property
    def closed(self) -> bool:
        return self._callable is _closed

    def __enter__(self: _P) -> _P:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        inputs = ", ".join(str(spec) for spec in self._inputs)
        outputs = ", ".join(str(spec) for spec in self._outputs)
        state = " closed" if self.closed else ""
        return f"<Predictor{state} {self.metadata.get('format', '?')} {self._source!r} inputs=[{inputs}] outputs=[{outputs}]>"

    # -- internals ----------------------------------------------------------

    def _run(self, feeds: list[np.ndarray]) -> list[np.ndarray]:
        if feeds[0].ndim and feeds[0].shape[0] == 0:
            return self._empty_outputs(feeds)
        if self._fixed_batch is not None and feeds[0].ndim and feeds[0].shape[0] != self._fixed_batch:
            return self._run_fixed_batches(feeds, self._fixed_batch)
        return self._run_with(self._callable, feeds)

    def _run_fixed_batches(self, feeds: list[np.ndarray], size: int) -> list[np.ndarray]:
        """Run a graph whose batch size is fixed at ``size`` on any number of rows.

        Rows go in runs of ``size``; the last run is filled up with copies of its last row (real values, so no
        kernel sees made-up data) and only its own rows are kept.
        """
        rows = feeds[0].shape[0]
        parts: list[list[np.ndarray]] = []
        for start in range(0, rows, size):
            chunk = [feed[start : start + size] for feed in feeds]
            taken = chunk[0].shape[0]
            if taken < size:
                chunk = [np.concatenate([part, np.repeat(part[-1:], size - taken, axis=0)]) for part in chunk]
            parts.append([out[:taken] for out in self._run_with(self._callable, chunk)])
        return [np.concatenate(column) for column in zip(*parts)]

    def _run_with(
        self, runner: Callable[..., list[np.ndarray]], feeds: list[np.ndarray], what: str | None = None
    ) -> list[np.ndarray]:
        """``runner(*feeds)``, TensorFlow's and the runtime's failures reported as PredictionError.

        ``what`` names the call in the message (default: the model on its inputs' shapes).
        """
        if self.closed:
            _closed()
        try:
            return runner(*feeds)
        except tf.errors.OpError as exc:
            raise PredictionError(
                f"{self._source}: TensorFlow failed running {what or self._call_text(feeds)}: {tensorflow_reason(exc)}"
                f"{_unfed_placeholder_hint(exc)}"
            ) from exc
        except Tf1InferError:
            raise  # PredictorClosedError is a RuntimeError too; it needs no rewording.
        except RuntimeError as exc:  # The TF Lite interpreter's failures; a caller's session closed under it.
            runtime = _RUNTIME_NAMES.get(self.backend, "the runtime")
            raise PredictionError(
                f"{self._source}: {runtime} failed running {what or self._call_text(feeds)}: {tensorflow_reason(exc)}"
            ) from exc

    def _call_text(self, feeds: list[np.ndarray]) -> str:
        shapes = ", ".join(f"'{name}': {feed.shape}" for name, feed in zip(self._input_names, feeds))
        return f"the model on inputs {shapes}"

    def _empty_outputs(self, feeds: list[np.ndarray]) -> list[np.ndarray]:
        """Outputs for a batch of zero rows, without running kernels that may reject it."""
        row_shapes = [spec.shape[1:] if spec.shape is not None else None for spec in self._outputs]
        if all(shape is not None and None not in shape for shape in row_shapes):
            # Every shape is known here (checked just above); mypy cannot narrow through all().
            return [np.zeros((0, *shape), dtype=spec.dtype) for shape, spec in zip(row_shapes, self._outputs)]  # type: ignore[misc]
        try:
            return self._callable(*feeds)
        except tf.errors.OpError as exc:
            raise PredictionError(
                f"{self._source}: the model cannot run on an empty batch and its output shapes are not "
                f"fully known: {tensorflow_reason(exc)}"
            ) from exc

    def _pack(self, outputs: list[np.ndarray]) -> np.ndarray | list[np.ndarray]:
        return outputs[0] if self._single_output else list(outputs)

    def _predict_source(self, source: Any, steps: int | None, verbose: int):
        collected: list[list[np.ndarray]] = []
        with batching.progress(batching.source_length(source, steps), verbose) as bar:
            for x in batching.iterate_source(source, steps):
                collected.append(self._dispatch(self._feeds.convert(x)))
                bar.update(1)
        if not collected:
            raise InputError("the batch source yielded no batches; nothing to predict")
        merged = [np.concatenate([batch[i] for batch in collected]) for i in range(len(self._outputs))]
        return self._pack(merged)

    def _open_stream(self, source: Any, batch_size: Any, prefetch: int, batched: Any, memory_limit: Any):
        """The reader for ``source`` and the batch size to read it with (``None``: the source's own batches)."""
        if self.closed:
            _closed()
        batched = streaming.check_batched(batched)
        if batch_size != "auto":
            batch_size = batching.check_batch_size(batch_size)
            if memory_limit is not None:
                raise InputError("memory_limit applies to batch_size='auto'; a batch size was given")
        reader = streaming.open_reader(source, self._feeds, batched)
        choice = None
        try:
            if reader.yields_batches:
                if batch_size == "auto":
                    logger.info(
                        "%s: the source yields its own batches; batch_size='auto' has nothing to choose", self._source
                    )
                return reader, None, None
            if batch_size == "auto":
                choice = self._choose_batch_size(reader, memory_limit, DEFAULT_MAX_BATCH_SIZE, prefetch)
                batch_size = choice.batch_size
                logger.info("%s: %s", self._source, choice)
        except BaseException:
            reader.close()
            raise
        return reader, batch_size, choice

    def _choose_batch_size(self, reader, memory_limit: Any, max_batch_size: int, prefetch: int) -> BatchSizeChoice:
        sample = reader.first_sample()
        if sample is None:
            raise InputError("the source is empty; there is no sample to choose a batch size with")
        if reader.length:
            max_batch_size = min(max_batch_size, reader.length)
        return choose_batch_size(self._run, sample, memory_limit, max_batch_size, queued_batches=prefetch + 1)

    def _iterate(self, reader, batch_size: int | None, prefetch: int, with_keys: bool) -> Iterator[Any]:
        runner = streaming.BatchRunner(self._dispatch, self._source)
        for chunk, outputs in streaming.stream(reader, runner, batch_size or 1, prefetch):
            for key, reason in chunk.skipped:
                logger.warning("skipped %s: %s", key, reason)
            if chunk.rows == 0:
                continue  # Nothing but skipped inputs in this one.
            packed = self._pack(outputs)
            yield (chunk.keys, packed) if with_keys else packed

    def _single_output_of(self, method: str, result: Any) -> np.ndarray:
        if not self._single_output:
            raise Tf1InferError(
                f"{method} needs a model with one output; this one has {len(self._outputs)} "
                f"({', '.join(self._output_names)}): use predict() and pick the output"
            )
        return result


def _unfed_placeholder_hint(exc: BaseException) -> str:
    """How to feed a placeholder the outputs need that is no input (a dropout keep_prob, a training flag)."""
    match = _UNFED_PLACEHOLDER.search(str(exc))
    if not match:
        return ""
    name = match.group(1)
    return (
        f". Placeholder {name!r} is not an input of this Predictor: give it the value it takes on every call at load, "
        f"tf1infer.load(path, constants={{{name!r}: ...}}) (a dropout keep_prob: 1.0), or feed it per call with "
        f"predictor.run(fetches, {{'{name}:0': value, ...}})"
    )


_UNFED_PLACEHOLDER = re.compile(r"must feed a value for placeholder tensor '([^']+)'")


def _fixed_batch_size(inputs: Sequence[Any]) -> int | None:
    """The batch size every input's graph tensor fixes, or None where the batch axis is free (the usual case)."""
    sizes = set()
    for tensor in inputs:
        shape = getattr(tensor, "shape", None)
        if shape is None or shape.rank is None or shape.rank == 0:
            return None
        sizes.add(shape[0])
    if len(sizes) != 1 or None in sizes:
        return None
    (size,) = sizes
    return int(size) if size else None


def _closed(*_: Any) -> Any:
    raise PredictorClosedError("this Predictor is closed; load the model again to predict")


def _keras_shape(specs: Sequence[TensorSpec]) -> Any:
    shapes = [spec.shape for spec in specs]
    return shapes[0] if len(shapes) == 1 else shapes


def _named_tensors(graph: tf.Graph, refs: Any, role: str) -> tuple[list[str], list[tf.Tensor]]:
    if isinstance(refs, (str, tf.Tensor)):
        refs = [refs]
    if isinstance(refs, Mapping):
        names = [str(key) for key in refs]
        tensors = [resolve_tensor(graph, ref, role) for ref in refs.values()]
    else:
        tensors = [resolve_tensor(graph, ref, role) for ref in refs]
        names = [short_name(t) for t in tensors]
    if not tensors:
        raise Tf1InferError(f"from_session needs at least one {role}")
    return names, tensors
