"""How the benchmark times a call: interleaved rounds, median, per sample, with the RSS it leaves behind."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tf1infer.runtime.memory import current_rss


@dataclass
class Budget:
    """Seconds of timed calls per measurement, split into rounds (the median round is reported)."""

    seconds: float
    rounds: int


QUICK = Budget(seconds=0.3, rounds=3)
FULL = Budget(seconds=1.0, rounds=5)


def measure(functions: dict[str, Callable[[], object]], rows: int, budget: Budget) -> dict[str, dict[str, float]]:
    """Per label: median microseconds per sample, timed calls, and RSS growth per 10,000 calls.

    Each function processes ``rows`` samples per call (or its own ``rows``
    attribute, for a call that streams more). Labels alternate round by
    round, so that a slow spell of the machine falls on all of them. Warm-up
    (two calls at least, and a tenth of the budget) comes first: first calls
    trace, allocate and run grappler, which a long-running loop pays once.
    """
    calls: dict[str, int] = {}
    for label, function in functions.items():
        start = time.perf_counter()
        warm = 0
        while warm < 2 or time.perf_counter() - start < budget.seconds / 10:
            function()
            warm += 1
        per_call = (time.perf_counter() - start) / warm
        calls[label] = max(1, int(budget.seconds / budget.rounds / max(per_call, 1e-7)))
    times: dict[str, list[float]] = {label: [] for label in functions}
    growth = dict.fromkeys(functions, 0)
    for _ in range(budget.rounds):
        for label, function in functions.items():
            before = current_rss()
            start = time.perf_counter()
            for _ in range(calls[label]):
                function()
            times[label].append((time.perf_counter() - start) / calls[label])
            growth[label] += current_rss() - before
    results = {}
    for label in functions:
        timed_calls = calls[label] * budget.rounds
        results[label] = {
            "us_per_sample": float(np.median(times[label])) / getattr(functions[label], "rows", rows) * 1e6,
            "timed_calls": timed_calls,
            "rss_growth_mib_per_10k_calls": growth[label] / 2**20 / timed_calls * 10_000,
        }
    return results
