"""Timing at load: how the backends measure what is faster on this machine, in little time."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

import numpy as np

from tf1infer.runtime.runner import Runner

# Probing at load stops growing a probe batch past this many seconds per call.
PROBE_SECONDS = 0.2


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def seconds_per_row(
    run: Runner, feeds: Sequence[np.ndarray], min_runs: int = 3, max_runs: int = 25, seconds: float = 0.02
) -> float:
    """The fastest of several timed calls, per row.

    The minimum, not the median: load-time decisions compare runtimes on a
    machine that may be busy, and interference only ever adds time. Calls
    repeat until ``seconds`` have passed (and ``min_runs``, at most ``max_runs``).
    """
    run(*feeds)  # Warm-up: first calls allocate and, for the session, run grappler.
    best, runs, started = float("inf"), 0, time.perf_counter()
    while runs < min_runs or (runs < max_runs and time.perf_counter() - started < seconds):
        start = time.perf_counter()
        run(*feeds)
        best = min(best, time.perf_counter() - start)
        runs += 1
    return best / feeds[0].shape[0]


def probe_rows(per_row: float, wanted: int) -> int:
    """``wanted``, halved until one call takes under PROBE_SECONDS (at least 1)."""
    rows = wanted
    while rows > 1 and per_row * rows > PROBE_SECONDS:
        rows //= 2
    return rows
