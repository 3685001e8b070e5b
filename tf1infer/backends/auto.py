"""``backend="auto"``: the session and TF Lite both, each call on the one measured faster at load for its size."""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

import numpy as np

from tf1infer.backends.kinds import SESSION, TFLITE
from tf1infer.backends.measure import PROBE_SECONDS, seconds_per_row
from tf1infer.backends.tflite import TFLiteRuntime
from tf1infer.io.feeds import TensorSpec
from tf1infer.runtime.runner import Runner
from tf1infer.verification.synthetic import random_array

# Batch sizes "auto" measures at load; a call uses the decision of the nearest one (on a log scale).
AUTO_BATCH_SIZES = (1, 32, 256)


class AutoRunner:
    """Calls whichever runtime measured faster at the measured batch size nearest the call's."""

    def __init__(self, runtimes: dict[str, Runner], choice: dict[int, str]):
        sizes = sorted(choice)
        # Nearest on a log scale = compared with the geometric means of neighbouring sizes (a tie goes to the
        # smaller size); a bisection per call instead of logarithms.
        self._bounds = [math.sqrt(small * large) for small, large in zip(sizes, sizes[1:])]
        self._names = [choice[size] for size in sizes]
        self._runners = [runtimes[name] for name in self._names]

    def runtime_for(self, rows: int) -> str:
        return self._names[bisect.bisect_left(self._bounds, rows)]

    def __call__(self, *feeds: np.ndarray) -> list[np.ndarray]:
        return self._runners[bisect.bisect_left(self._bounds, feeds[0].shape[0])](*feeds)


def measure_auto(session_runner: Runner, runtime: TFLiteRuntime, inputs: Sequence[TensorSpec]):
    rng = np.random.default_rng(11)
    choice: dict[int, str] = {}
    timings: dict[int, dict[str, float]] = {}
    for size in AUTO_BATCH_SIZES:
        feeds = [random_array(spec, size, rng) for spec in inputs]
        # TF Lite first: TensorFlow's thread pool spins a while after a run and would slow what follows it.
        measured = {TFLITE: seconds_per_row(runtime, feeds), SESSION: seconds_per_row(session_runner, feeds)}
        timings[size] = {name: round(value * 1e6, 2) for name, value in measured.items()}
        choice[size] = min(measured, key=lambda name: measured[name])
        if max(measured.values()) * size > PROBE_SECONDS and size != AUTO_BATCH_SIZES[-1]:
            # Larger batches would take long to time at load; they keep the per-row leader of this size.
            for larger in AUTO_BATCH_SIZES[AUTO_BATCH_SIZES.index(size) + 1 :]:
                choice[larger] = choice[size]
            break
    return choice, timings
