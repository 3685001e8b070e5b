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

Where the high-water mark cannot be reset (not Linux), the resident size after
each run stands in for its peak, which undercounts memory freed within the run.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from tf1infer.errors import InputError

logger = logging.getLogger(__name__)

DEFAULT_MEMORY_LIMIT = 0.25
DEFAULT_MAX_BATCH_SIZE = 4096
_MAX_PROBES = 20


@dataclass
class BatchSizeChoice:
    """The outcome of an automatic batch size search.

    Attributes:
        batch_size: the size chosen.
        memory_limit: the limit in bytes.
        probes: ``(batch size, measured bytes)`` of each run made to choose.
        exact_peak: whether peaks were measured with a resettable high-water
            mark (Linux) rather than estimated from the resident size.
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
        raise InputError(f"memory_limit must be bytes (int) or a fraction of available memory (float); got {memory_limit!r}")
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
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _status_bytes(field_name: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear_refs:
            clear_refs.write("5")  # 5: reset the peak resident set size to the current one.
        return True
    except OSError:
        return False


def current_rss() -> int:
    rss = _status_bytes("VmRSS")
    if rss is not None:
        return rss
    import resource  # Not Linux: the lifetime peak is the best available figure.

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _release_free_memory() -> None:
    """Return the C heap's free memory to the system (glibc only), so the next run's needs show in RSS.

    Without it, memory that earlier runs freed stays mapped and is reused, and
    a later measurement would count only what goes beyond it.
    """
    global _malloc_trim
    if _malloc_trim is None:
        try:
            import ctypes

            _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


_malloc_trim: Any = None


def measure_peak(action: Callable[[], Any]) -> tuple[int, bool]:
    """``(bytes the resident size rose by while action ran, whether the peak was measured exactly)``."""
    _release_free_memory()
    before = current_rss()
    exact = _reset_peak()
    action()
    peak = _status_bytes("VmHWM") if exact else None
    return max(0, (peak if peak is not None else current_rss()) - before), exact and peak is not None


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
        peak, exact = measure_peak(lambda: run([np.repeat(array[:1], size, axis=0) for array in sample]))
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
            choice.probes[0][1] / 2**20, limit / 2**20,
        )
        best = 1
    choice.batch_size = best
    return choice
