"""Choosing a batch size from measured memory (``batch_size="auto"``).

The batch size is found by running the model: on the first real sample of the
data repeated ``n`` times, for ``n`` = 1, 2, 4... The peak memory of each run
is the process's high-water mark (``VmHWM``), which Linux lets a process reset
(``/proc/self/clear_refs``), less the resident size just before the run, after
the C heap has returned its free memory to the system (``malloc_trim``). The
inputs waiting in the prefetch queue are added, since a streaming run holds
them too. Doubling stops when the next size would pass the limit by a linear
fit of the last two measurements; the largest size whose measured peak stayed
under the limit is chosen. Repeating a real sample, rather than drawing random
values, keeps integer ids and strings valid for any model.

Where the high-water mark cannot be reset (macOS, Windows, a container whose
``/proc`` is read-only), the resident size is sampled every millisecond while
the model runs and its largest value stands in for the peak: a spike shorter
than that can be missed, so ``BatchSizeChoice.exact_peak`` is False. Resident
and available memory come from ``/proc`` on Linux and from psutil elsewhere;
``malloc_trim`` is skipped where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tf1infer.errors import InputError

logger = logging.getLogger(__name__)

DEFAULT_MEMORY_LIMIT = 0.25
DEFAULT_MAX_BATCH_SIZE = 4096
_MAX_PROBES = 20
# Linux's files for memory figures; elsewhere (or where they are hidden or read-only) psutil and sampling stand in.
_PROC_MEMINFO = "/proc/meminfo"
_PROC_STATUS = "/proc/self/status"
_PROC_CLEAR_REFS = "/proc/self/clear_refs"
_GLIBC = "libc.so.6"
# How often the resident size is read while a run goes on, where its peak cannot be reset and read.
_SAMPLE_SECONDS = 0.001


@dataclass
class BatchSizeChoice:
    """The outcome of an automatic batch size search.

    Attributes:
        batch_size: the size chosen.
        memory_limit: the limit in bytes.
        probes: ``(batch size, measured bytes)`` of each run made to choose.
        exact_peak: whether peaks were measured with a resettable high-water
            mark (Linux) rather than sampled from the resident size.
    """

    batch_size: int
    memory_limit: int
    probes: list[tuple[int, int]] = field(default_factory=list)
    exact_peak: bool = True

    def __str__(self) -> str:
        measured = dict(self.probes).get(self.batch_size)
        peak = f", measured peak {measured / 2**20:.1f} MiB" if measured is not None else ""
        return f"batch size {self.batch_size}, chosen for a memory limit of {self.memory_limit / 2**20:.0f} MiB{peak}"


def resolve_memory_limit(memory_limit: Any) -> int:
    """Bytes from ``memory_limit``: an int of bytes, or a float in (0, 1] taken of the memory available now."""
    if memory_limit is None:
        memory_limit = DEFAULT_MEMORY_LIMIT
    if isinstance(memory_limit, bool) or not isinstance(memory_limit, (int, float, np.integer, np.floating)):
        raise InputError(
            f"memory_limit must be bytes (int) or a fraction of available memory (float); got {memory_limit!r}"
        )
    if isinstance(memory_limit, (float, np.floating)):
        if not 0.0 < memory_limit <= 1.0:
            raise InputError(f"memory_limit as a fraction of available memory must be in (0, 1]; got {memory_limit}")
        return int(available_memory() * float(memory_limit))
    if memory_limit < 1:
        raise InputError(f"memory_limit must be a positive number of bytes; got {memory_limit}")
    return int(memory_limit)


def available_memory() -> int:
    """Memory available to start new work without swapping (``MemAvailable``), in bytes."""
    try:
        with open(_PROC_MEMINFO, encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import psutil  # Not Linux, or /proc hidden.

    return int(psutil.virtual_memory().available)


def _status_bytes(field_name: str) -> int | None:
    try:
        with open(_PROC_STATUS, encoding="ascii") as status:
            for line in status:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    try:
        with open(_PROC_CLEAR_REFS, "w", encoding="ascii") as clear_refs:
            clear_refs.write("5")  # 5: reset the peak resident set size to the current one.
        return True
    except OSError:
        return False


def current_rss() -> int:
    """The process's resident memory now, in bytes."""
    rss = _status_bytes("VmRSS")
    if rss is not None:
        return rss
    import psutil  # Not Linux, or /proc hidden.

    return int(psutil.Process().memory_info().rss)


def _release_free_memory() -> None:
    """Return the C heap's free memory to the system (glibc only), so the next run's needs show in RSS.

    Without it, memory that earlier runs freed stays mapped and is reused, and
    a later measurement would count only what goes beyond it.
    """
    global _malloc_trim
    if _malloc_trim is None:
        try:
            _malloc_trim = ctypes.CDLL(_GLIBC).malloc_trim
        except (OSError, AttributeError):  # musl, macOS, Windows: nothing to trim with.
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


_malloc_trim: Any = None


def measure_peak(action: Callable[[], Any]) -> tuple[int, bool]:
    """``(bytes the resident size rose by while action ran, whether the peak was measured exactly)``.

    Exact where Linux's high-water mark can be reset and read; elsewhere the
    largest resident size sampled while ``action`` ran.
    """
    _release_free_memory()
    before = current_rss()
    if _status_bytes("VmHWM") is not None and _reset_peak():
        action()
        return max(0, (_status_bytes("VmHWM") or 0) - before), True
    return max(0, _sampled_peak(action) - before), False


def _sampled_peak(action: Callable[[], Any]) -> int:
    """The largest resident size seen while ``action`` runs, read every :data:`_SAMPLE_SECONDS`.

    TensorFlow releases the GIL while it runs, so the sampling thread keeps
    reading during a ``sess.run``.
    """
    largest = current_rss()
    done = threading.Event()

    def sample() -> None:
        nonlocal largest
        while not done.wait(_SAMPLE_SECONDS):
            largest = max(largest, current_rss())

    sampler = threading.Thread(target=sample, name="tf1infer-memory-sampler", daemon=True)
    sampler.start()
    try:
        action()
    finally:
        done.set()
        sampler.join()
    return max(largest, current_rss())


def choose_batch_size(
    run: Callable[[list[np.ndarray]], Any],
    sample: list[np.ndarray],
    memory_limit: Any = DEFAULT_MEMORY_LIMIT,
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
    queued_batches: int = 3,
) -> BatchSizeChoice:
    """The largest batch size whose measured peak memory stays under ``memory_limit``.

    Args:
        run: runs the model on a list of feeds (one per input).
        sample: one sample as one-row feeds.
        memory_limit: bytes, or a fraction of the memory available now.
        max_batch_size: never go above this (larger batches rarely run faster
            per sample, and probing them takes time); also the row count of
            the data when known.
        queued_batches: input batches held besides the one running (the
            prefetch queue): their size counts against the limit.
    """
    limit = resolve_memory_limit(memory_limit)
    row_bytes = sum(array[:1].nbytes for array in sample)
    choice = BatchSizeChoice(batch_size=1, memory_limit=limit)
    best: int | None = None
    size = 1
    for _ in range(_MAX_PROBES):
        peak, exact = measure_peak(lambda: run([np.repeat(array[:1], size, axis=0) for array in sample]))  # noqa: B023 - run now
        used = peak + queued_batches * size * row_bytes
        choice.exact_peak = choice.exact_peak and exact
        choice.probes.append((size, used))
        if used > limit:
            break
        best = size
        if size >= max_batch_size:
            break
        following = min(size * 2, max_batch_size)
        if len(choice.probes) >= 2:
            (small, small_used), (large, large_used) = choice.probes[-2], choice.probes[-1]
            per_row = (large_used - small_used) / (large - small) if large > small else 0
            if per_row > 0 and large_used + per_row * (following - large) > limit:
                following = min(following, int(large + (limit - large_used) / per_row))
        if following - size < max(1, size // 16):
            break  # Within a few percent of the limit: more probes would not change much.
        size = following
    if best is None:
        logger.warning(
            "even one sample needs %.1f MiB, over the memory limit of %.1f MiB; running one sample at a time",
            choice.probes[0][1] / 2**20,
            limit / 2**20,
        )
        best = 1
    choice.batch_size = best
    return choice
