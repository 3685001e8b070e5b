"""Streaming prediction: read any source in batches on a background thread, run them in order.

:meth:`Predictor.predict_iter` and :meth:`Predictor.predict_to` are built from
three parts, each here:

- a **reader** turns the caller's source into :class:`Chunk` objects (one
  batch of converted feeds, plus where in the source it ends, and the keys,
  labels and skipped files an image folder reports);
- a :class:`Prefetcher` runs the reader on a background thread, at most
  ``prefetch`` chunks ahead, so reading, decoding and casting the next batch
  overlap the session running the current one, and a fast producer cannot
  fill memory;
- a :class:`BatchRunner` runs each chunk and, when TensorFlow runs out of
  memory, splits it in two and tries again (then keeps the smaller size), so
  no sample is lost or repeated.

How a source is read:

- numpy arrays, HDF5 datasets, memory maps (anything with ``shape``, ``dtype``
  and slicing), or a list / dict of them for a model with several inputs: in
  slices of ``batch_size`` rows, so an HDF5 dataset larger than memory is read
  from disk slice by slice.
- ``tf.data.Dataset``, ``keras.utils.Sequence``-style objects (``__len__``
  and ``__getitem__``), generators and other iterables: item by item. Each
  item is a single sample or a whole batch, told apart by rank on the first
  item: if the first input's value has the rank of the model's input it is a
  batch, with one axis less it is one sample (``batched=True`` or ``False``
  forces either). Single samples are gathered into batches of
  ``batch_size``; batches run as they come. Items are unpacked like Keras: a
  tuple ``(x,)``, ``(x, y)`` or ``(x, y, sample_weight)`` gives ``x``.
- :func:`tf1infer.io.images`: an image folder, decoded by TensorFlow.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tensorflow as tf

from tf1infer.errors import InputError, PredictionError
from tf1infer.io import batching
from tf1infer.io.feeds import FeedConverter

logger = logging.getLogger(__name__)


@dataclass
class Chunk:
    """One batch of converted feeds and where it ends in the source.

    Attributes:
        arrays: one array per model input, ready to feed.
        position: how far into the source this batch reaches, in the
            source's own unit (rows of an array, items of an iterable, files
            of an image folder): where a resumed run starts again.
        keys: an identifier per row (an image's path), when the source has them.
        labels: a class index per row, when the source has them.
        skipped: ``(key, reason)`` of each item the source could not read
            since the previous chunk.
    """

    arrays: list[np.ndarray]
    position: int
    keys: list[str] | None = None
    labels: np.ndarray | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return int(self.arrays[0].shape[0]) if self.arrays[0].ndim else 1


class Reader:
    """Base of the readers: what the streaming code needs from any source."""

    #: rows the source holds, when known in advance (sizes a preallocated output).
    length: int | None = None
    #: whether the source yields whole batches whose size the caller chose.
    yields_batches: bool = False
    #: whether rows come with keys (image paths) and labels (class indices).
    has_keys: bool = False
    has_labels: bool = False
    class_names: list[str] | None = None

    def describe(self) -> str:
        """A short description of the source, stored with resumable output to check a resume."""
        raise NotImplementedError

    def first_sample(self) -> list[np.ndarray] | None:
        """The first sample as one-row feeds, without consuming it (auto batch size probes with it)."""
        raise NotImplementedError

    def chunks(self, batch_size: int, start: int = 0) -> Iterator[Chunk]:
        """Chunks of up to ``batch_size`` rows, beginning at source position ``start``."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the source (a generator is closed, so its ``finally`` blocks run)."""


def is_sliceable(value: Any) -> bool:
    """Arrays that can be read in row slices: numpy arrays, HDF5 datasets, memory maps, tensors."""
    return isinstance(value, np.ndarray) or (
        hasattr(value, "shape") and hasattr(value, "dtype") and hasattr(value, "__getitem__") and len(value.shape) > 0
    )


class ArrayReader(Reader):
    """Reads arrays (or a list / dict of them, one per input) in slices of rows."""

    def __init__(self, data: Any, converter: FeedConverter):
        self._converter = converter
        if isinstance(data, Mapping):
            arranged = converter.arrange(dict(data.items()) if not isinstance(data, dict) else data)
        else:
            arranged = converter.arrange(data)
        if not all(is_sliceable(value) for value in arranged):
            arranged = [np.asarray(value) for value in arranged]
        self._arrays = arranged
        counts = {name: int(value.shape[0]) for name, value in zip(converter.names, arranged)}
        if len(set(counts.values())) > 1:
            listed = ", ".join(f"'{name}': {count}" for name, count in counts.items())
            raise InputError(f"inputs have different numbers of samples: {listed}")
        self.length = next(iter(counts.values()))
        # Check rank, fixed sizes and dtype on shape-only stand-ins (broadcast views of one element):
        # nothing is read from an HDF5 file yet.
        converter.prepare([np.broadcast_to(np.zeros((), np.dtype(value.dtype)), value.shape) for value in arranged])

    def describe(self) -> str:
        shapes = ", ".join(f"{tuple(value.shape)} {np.dtype(value.dtype)}" for value in self._arrays)
        return f"arrays {shapes}"

    def first_sample(self) -> list[np.ndarray] | None:
        if not self.length:
            return None
        return self._converter.convert([np.asarray(value[0:1]) for value in self._arrays])

    def chunks(self, batch_size: int, start: int = 0) -> Iterator[Chunk]:
        for begin, end in batching.batch_bounds((self.length or 0) - start, batch_size):
            begin, end = begin + start, end + start
            arrays = self._converter.convert([np.asarray(value[begin:end]) for value in self._arrays])
            yield Chunk(arrays, end)


class IterableReader(Reader):
    """Reads generators, ``Sequence``-style objects, ``tf.data.Dataset`` and other iterables, item by item."""

    def __init__(self, source: Any, converter: FeedConverter, batched: bool | None):
        self._source = source
        self._converter = converter
        self._forced = batched
        self._iterator: Iterator[Any] | None = None
        self._peeked: list[Any] = []
        self._indexable = hasattr(source, "__getitem__") and hasattr(source, "__len__")
        self._start = 0
        self._batched: bool | None = None

    @property
    def yields_batches(self) -> bool:  # type: ignore[override]
        return self._decide(self._peek())

    def describe(self) -> str:
        return f"{type(self._source).__module__}.{type(self._source).__qualname__}"

    def first_sample(self) -> list[np.ndarray] | None:
        item = self._peek()
        if item is _EXHAUSTED:
            return None
        arrays = self._arrange(item)
        if not self._decide(item):
            arrays = [np.asarray(value)[np.newaxis] for value in arrays]
        return self._converter.convert([np.asarray(value)[:1] for value in arrays])

    def chunks(self, batch_size: int, start: int = 0) -> Iterator[Chunk]:
        self._skip(start)
        item = self._peek()
        if item is _EXHAUSTED:
            return
        position = start
        if self._decide(item):
            for item in self._items():
                position += 1
                yield Chunk(self._converter.convert(self._arrange(item)), position)
            return
        # One-input models keep each sample as is (no per-sample list): this loop runs once per sample.
        single = len(self._converter.specs) == 1
        pending: list[Any] = []
        for item in self._items():
            if single and type(item) is np.ndarray:
                pending.append(item)
            else:
                arranged = self._arrange(item)
                pending.append(arranged[0] if single else arranged)
            if len(pending) == batch_size:
                position += len(pending)
                yield Chunk(self._stack(pending, position, single), position)
                pending = []
        if pending:
            position += len(pending)
            yield Chunk(self._stack(pending, position, single), position)

    def close(self) -> None:
        # For a generator, iter() is the generator itself: closing it runs its finally blocks.
        close = getattr(self._iterator, "close", None)
        if callable(close):
            close()

    # -- internals --------------------------------------------------------

    def _open(self) -> Iterator[Any]:
        if self._iterator is None:
            source = self._source
            if isinstance(source, tf.data.Dataset):
                self._iterator = source.as_numpy_iterator()
            elif self._indexable:
                # keras.utils.Sequence's contract is indexing; a resumed run starts at its index unread.
                self._iterator = (source[index] for index in range(self._start, len(source)))
            else:
                self._iterator = iter(source)
        return self._iterator

    def _peek(self) -> Any:
        if not self._peeked:
            self._peeked.append(next(self._open(), _EXHAUSTED))
        return self._peeked[0]

    def _items(self) -> Iterator[Any]:
        # next() rather than `yield from`: leaving this loop early (a resume skipping items) must not
        # close the source, as closing a generator that delegates with `yield from` would.
        while True:
            item = self._peeked.pop() if self._peeked else next(self._open(), _EXHAUSTED)
            if item is _EXHAUSTED:
                return
            yield item

    def _skip(self, count: int) -> None:
        """Drop the first ``count`` items (a resumed run has their results already)."""
        if not count:
            return
        if self._indexable and self._iterator is None:
            if count > len(self._source):
                raise InputError(f"cannot resume at item {count}: the source now has only {len(self._source)} items")
            self._start = count
            return
        dropped = 0
        for _ in self._items():
            dropped += 1
            if dropped == count:
                break
        if dropped < count and count:
            raise InputError(f"cannot resume at item {count}: the source now has only {dropped} items")

    def _arrange(self, item: Any) -> list[Any]:
        return self._converter.arrange(batching.unpack_inputs(item))

    def _decide(self, item: Any) -> bool:
        if self._batched is None:
            if self._forced is not None:
                self._batched = bool(self._forced)
            elif item is _EXHAUSTED:
                return False
            else:
                self._batched = self._looks_like_batch(self._arrange(item))
        return self._batched

    def _looks_like_batch(self, arrays: list[Any]) -> bool:
        spec, name = self._converter.specs[0], self._converter.names[0]
        if spec.shape is None:
            return True  # Unknown rank: nothing to tell by; batched=False says otherwise.
        rank = len(spec.shape)
        shape = np.shape(arrays[0])
        if len(shape) == rank:
            return True
        if len(shape) == rank - 1:
            return False
        raise InputError(
            f"the source's first item gives input '{name}' an array of shape {shape}; expected a batch of rank "
            f"{rank} {spec.shape} or a single sample of rank {rank - 1} {spec.shape[1:]}"
        )

    def _stack(self, samples: list[Any], position: int, single: bool) -> list[np.ndarray]:
        stacked = []
        for index, name in enumerate(self._converter.names):
            values = samples if single else [sample[index] for sample in samples]
            try:
                stacked.append(np.stack(values))
            except ValueError:
                shapes = [np.shape(value) for value in values]
                odd = next(i for i, shape in enumerate(shapes) if shape != shapes[0])
                raise InputError(
                    f"sample {position - len(samples) + odd} gives input '{name}' shape {shapes[odd]}, "
                    f"unlike sample {position - len(samples)} ({shapes[0]}); samples gathered into one batch need one shape"
                ) from None
        return self._converter.convert(stacked)


_EXHAUSTED = object()


def open_reader(source: Any, converter: FeedConverter, batched: bool | None = None) -> Reader:
    """The reader for ``source`` (see the module docstring for how each kind is read)."""
    if isinstance(source, Reader):
        return source
    bind = getattr(source, "reader_for", None)
    if callable(bind):  # tf1infer.images() and other sources that know how to read themselves.
        return bind(converter)
    if isinstance(source, (str, bytes)):
        raise InputError(
            f"got the string {source!r} as data; to read files use tf1infer.images(folder) or load the arrays first"
        )
    if _is_array_data(source, converter):
        if batched is False:
            raise InputError("batched=False applies to iterables of samples; arrays are always read in row slices")
        return ArrayReader(source, converter)
    if not (hasattr(source, "__iter__") or hasattr(source, "__getitem__")):
        raise InputError(
            f"cannot stream from a {type(source).__name__}: expected arrays, an HDF5 dataset, a generator, "
            "an iterable, a keras.utils.Sequence, a tf.data.Dataset or tf1infer.images(...)"
        )
    return IterableReader(source, converter, batched)


def _is_array_data(source: Any, converter: FeedConverter) -> bool:
    if is_sliceable(source) and not isinstance(source, tf.data.Dataset):
        return True
    if isinstance(source, Mapping):
        return all(is_sliceable(value) or isinstance(value, (list, tuple)) for value in source.values())
    if isinstance(source, (list, tuple)) and len(converter.specs) > 1 and len(source) == len(converter.specs):
        return all(is_sliceable(value) for value in source)
    return False


class Prefetcher:
    """Runs a reader on a background thread, at most ``prefetch`` chunks ahead of the consumer.

    Iterate to get chunks in order. An exception in the reader is raised to
    the consumer with its original traceback. :meth:`close` (also called when
    the consumer stops early) stops the thread and closes the source.
    """

    def __init__(self, produce: Callable[[], Iterator[Chunk]], reader: Reader, prefetch: int):
        if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 1:
            raise InputError(f"prefetch must be a positive integer; got {prefetch!r}")
        self._produce = produce
        self._reader = reader
        self._queue: queue.Queue = queue.Queue(maxsize=prefetch)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name="tf1infer-prefetch", daemon=True)
        self._thread.start()

    def __iter__(self) -> Iterator[Chunk]:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.error.with_traceback(item.error.__traceback__)
            yield item

    def close(self) -> None:
        self._stop.set()
        while self._thread.is_alive():
            try:  # Unblock a producer waiting for room in the queue.
                self._queue.get(timeout=0.05)
            except queue.Empty:
                pass
        self._thread.join()

    def _work(self) -> None:
        chunks = None
        try:
            chunks = self._produce()
            for chunk in chunks:
                if not self._put(chunk):
                    return
            self._put(_END)
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, who re-raises it.
            self._put(_Failure(error))
        finally:
            if chunks is not None and hasattr(chunks, "close"):
                chunks.close()
            try:
                self._reader.close()
            except Exception:  # noqa: BLE001 - the run's own outcome matters more than a failed close.
                logger.warning("closing the source failed", exc_info=True)

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                # Yield the GIL: a consumer back from sess.run would otherwise wait for Python's
                # switch interval (5 ms) while this thread makes the next batch.
                time.sleep(0)
                return True
            except queue.Full:
                continue
        return False


_END = object()


@dataclass
class _Failure:
    error: BaseException


class BatchRunner:
    """Runs batches through ``run``; on out-of-memory, splits the batch in halves and retries.

    Once a batch had to be split, later batches run at the size that worked,
    so a run that hits the limit once does not pay for a failure per batch.
    """

    def __init__(self, run: Callable[[list[np.ndarray]], list[np.ndarray]], source: str):
        self._run = run
        self._source = source
        self.max_rows: int | None = None
        self.splits = 0

    def __call__(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        rows = arrays[0].shape[0] if arrays[0].ndim else 1
        if self.max_rows is not None and rows > self.max_rows:
            return self._in_pieces(arrays, rows, self.max_rows)
        try:
            return self._run(arrays)
        except (PredictionError, MemoryError) as error:
            if rows <= 1 or not _out_of_memory(error):
                raise
            self.max_rows = max(1, rows // 2)
            self.splits += 1
            logger.warning(
                "%s: out of memory on a batch of %d; running it as batches of %d and keeping that size",
                self._source,
                rows,
                self.max_rows,
            )
            return self._in_pieces(arrays, rows, self.max_rows)

    def _in_pieces(self, arrays: list[np.ndarray], rows: int, size: int) -> list[np.ndarray]:
        pieces = [self([array[start:stop] for array in arrays]) for start, stop in batching.batch_bounds(rows, size)]
        return [np.concatenate([piece[index] for piece in pieces]) for index in range(len(pieces[0]))]


def _out_of_memory(error: BaseException) -> bool:
    return isinstance(error, MemoryError) or isinstance(error.__cause__, tf.errors.ResourceExhaustedError)


def check_batched(batched: Any) -> bool | None:
    if batched is None or isinstance(batched, bool):
        return batched
    raise InputError(f"batched must be True, False or None (decide from the first item); got {batched!r}")


def stream(
    reader: Reader,
    runner: BatchRunner,
    batch_size: int,
    prefetch: int,
    start: int = 0,
) -> Iterator[tuple[Chunk, list[np.ndarray]]]:
    """``(chunk, outputs)`` for each chunk of ``reader``, in order, read ahead on a background thread."""
    prefetcher = Prefetcher(lambda: reader.chunks(batch_size, start), reader, prefetch)
    try:
        for chunk in prefetcher:
            yield chunk, runner(chunk.arrays)
    finally:
        prefetcher.close()
