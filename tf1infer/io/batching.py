"""Splitting data into batches, reading batch sources, and progress display.

Kept apart from the Predictor so that the session code only ever sees one
batch at a time, whatever the data came from.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from tf1infer.errors import InputError


def batch_bounds(count: int, batch_size: int) -> Iterator[tuple[int, int]]:
    """(start, stop) of each batch of ``batch_size`` rows over ``count`` rows; the last may be short."""
    for start in range(0, count, batch_size):
        yield start, min(start + batch_size, count)


def check_batch_size(batch_size: Any) -> int:
    if batch_size is None:
        return 32  # Keras's default.
    if isinstance(batch_size, (bool, np.bool_)) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer; got {batch_size!r}")
    return int(batch_size)


def check_steps(steps: Any) -> int | None:
    if steps is None:
        return None
    if isinstance(steps, (bool, np.bool_)) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise InputError(f"steps must be a non-negative integer or None; got {steps!r}")
    return int(steps)


def is_batch_source(x: Any) -> bool:
    """True for data that yields batches (a generator, a Keras ``Sequence``, a ``tf.data.Dataset``).

    Arrays, lists, tuples, dicts and strings are data, not batch sources.
    """
    if isinstance(x, (np.ndarray, list, tuple, dict, str, bytes)) or hasattr(x, "__array__"):
        return False
    if hasattr(x, "__getitem__") and hasattr(x, "__len__"):
        return True  # keras.utils.Sequence and look-alikes.
    return hasattr(x, "__iter__") or hasattr(x, "__next__")


def iterate_source(source: Any, steps: int | None) -> Iterator[Any]:
    """The model inputs of each batch a source yields, at most ``steps`` of them.

    Items are unpacked like Keras does: a tuple ``(x,)``, ``(x, y)`` or
    ``(x, y, sample_weight)`` gives ``x``; anything else (a list of arrays for a
    multi-input model included) is ``x`` itself.
    """
    if hasattr(source, "__getitem__") and hasattr(source, "__len__"):
        count = len(source) if steps is None else min(steps, len(source))
        items: Iterator[Any] = (source[index] for index in range(count))
    else:
        items = iter(source)
        if steps is not None:
            items = (item for _, item in zip(range(steps), items))
    for item in items:
        yield unpack_inputs(item)


def unpack_inputs(item: Any) -> Any:
    if isinstance(item, tuple):
        if 1 <= len(item) <= 3:
            return item[0]
        raise InputError(
            f"a batch source yielded a tuple of {len(item)} items; expected x, (x,), (x, y) or (x, y, sample_weight)"
        )
    return item


def source_length(source: Any, steps: int | None) -> int | None:
    """Number of batches a source will yield, if known."""
    if steps is not None:
        return steps
    try:
        return len(source)
    except TypeError:
        return None


class _NoProgress:
    """Stands in for a bar when ``verbose=0``: even a disabled tqdm costs ~10 us a call to make."""

    def __enter__(self) -> _NoProgress:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        pass

    def update(self, count: int = 1) -> None:
        pass


_NO_PROGRESS = _NoProgress()


def progress(total: int | None, verbose: int, unit: str = "step"):
    """A Keras-like progress bar: shown for ``verbose=1``, a final line only for ``verbose=2``."""
    if not verbose:
        return _NO_PROGRESS
    if verbose == 2:
        return tqdm(total=total, unit=unit, file=sys.stdout, mininterval=float("inf"), dynamic_ncols=True)
    return tqdm(total=total, unit=unit, file=sys.stdout, dynamic_ncols=True)
