"""Streaming measurements (issue: stream without limits), each in a process of its own.

throughput  tf1infer ``predict`` on the data in one array, against ``predict_iter``
            fed one sample at a time by a generator (both batch 32): per-sample
            microseconds and their ratio
memory      ``predict_to`` into .h5 from a generator of N single MLP samples
            (batch 256): the rise of peak RSS during the run, for N = 10k, 100k
            and 1M (10k and 100k with --quick)
"""

from __future__ import annotations

import os
import time

import numpy as np


def _one_at_a_time(spec, count: int, seed: int):
    """Single valid samples (:mod:`tf1infer.verification.synthetic`) made as they are asked for: no array of all of them ever exists."""
    from tf1infer.verification.synthetic import random_array

    rng = np.random.default_rng(seed)
    for _ in range(count):
        yield random_array(spec, 1, rng)[0]


def run_worker(mode: str, model_path: str, count: int) -> dict[str, float]:
    """One streaming measurement in this process (see the module docstring)."""
    import tempfile

    import h5py

    import tf1infer
    from tf1infer.runtime.memory import current_rss, measure_peak

    predictor = tf1infer.load(model_path)
    spec = predictor.inputs[0]
    if mode == "throughput":
        x = np.stack(list(_one_at_a_time(spec, count, 0)))
        predictor.predict(x[:256], batch_size=32)  # Warm-up.
        sum(len(batch) for batch in predictor.predict_iter(_one_at_a_time(spec, 256, 0), batch_size=32))
        rounds: dict[str, list] = {"predict": [], "predict_iter": []}
        for _ in range(3):
            start = time.perf_counter()
            predictor.predict(x, batch_size=32)
            rounds["predict"].append((time.perf_counter() - start) / count * 1e6)
            # The generator's own cost (making each sample) is timed apart and left out: it is the
            # caller's work, which predict's array also needed once.
            start = time.perf_counter()
            for _ in _one_at_a_time(spec, count, 1):
                pass
            making = time.perf_counter() - start
            start = time.perf_counter()
            rows = sum(len(batch) for batch in predictor.predict_iter(_one_at_a_time(spec, count, 1), batch_size=32))
            rounds["predict_iter"].append((time.perf_counter() - start - making) / rows * 1e6)
        return {name: float(np.median(values)) for name, values in rounds.items()}
    if mode == "memory":
        with tempfile.TemporaryDirectory() as folder:
            out = os.path.join(folder, "out.h5")
            predictor.predict_to(out, _one_at_a_time(spec, 1000, 0), batch_size=256)  # Warm-up.
            before = current_rss()
            start = time.perf_counter()
            rise, _ = measure_peak(lambda: predictor.predict_to(out, _one_at_a_time(spec, count, 1), batch_size=256))
            seconds = time.perf_counter() - start
            with h5py.File(out, "r") as file:
                rows = file.attrs["rows"]
            return {
                "rows": int(rows),
                "peak_rss_rise_mib": rise / 2**20,
                "rss_before_mib": before / 2**20,
                "seconds": seconds,
            }
    raise ValueError(f"unknown streaming mode {mode!r}")


def report_streaming(models: dict[str, str], mlp_path: str, quick: bool, spawn) -> list[dict]:
    """Run the streaming workers through ``spawn(mode, path, count)``, print their table, return records."""
    records = []
    print("\nstreaming: predict_iter fed one sample at a time vs predict on one array (batch 32), us/sample")
    print(f"  {'model':<16}{'predict':>10}{'predict_iter':>14}{'throughput ratio':>18}")
    for model, path in models.items():
        count = {"mlp": 20000, "mini_xception": 1000}.get(model, 2000) // (4 if quick else 1)
        result = spawn("throughput", path, count)
        if isinstance(result, str):
            print(f"  {model}: {result}")
            continue
        ratio = result["predict"] / result["predict_iter"]
        print(f"  {model:<16}{result['predict']:>10.1f}{result['predict_iter']:>14.1f}{ratio:>17.2f}x")
        records.append(
            {
                "model": model,
                "batch_size": 32,
                "runner": "streaming throughput",
                "samples": count,
                **result,
                "throughput_ratio": ratio,
            }
        )
    print("\nstreaming memory: predict_to .h5 from a generator of single MLP samples (batch 256)")
    print(f"  {'samples':>10}{'peak RSS rise':>16}{'RSS before':>13}{'seconds':>10}")
    for count in (10_000, 100_000) + (() if quick else (1_000_000,)):
        result = spawn("memory", mlp_path, count)
        if isinstance(result, str):
            print(f"  {count:>10}: {result}")
            continue
        print(
            f"  {count:>10}{result['peak_rss_rise_mib']:>12.1f} MiB{result['rss_before_mib']:>9.0f} MiB{result['seconds']:>10.1f}"
        )
        records.append({"model": "mlp", "batch_size": 256, "runner": "streaming memory", "samples": count, **result})
    return records
