"""Many callers, one model: single-sample requests from 1 to 128 threads, with and without micro-batching.

Each measurement runs in a fresh process (``--worker concurrency``): the model is
loaded once, warmed up, then N threads each send one sample per call in a loop
for a fixed time, starting together. Reported per model x callers x mode:
samples per second over all threads, and the p50 and p99 latency of one call
(from the caller's side: queueing, waiting for the batch to fill, the run, the
scatter). The run time of one full batch is measured too, to check the latency
bound micro-batching promises: p99 within ``max_wait_ms`` plus two batch runs
(one already running when a request arrives, then its own).
"""

from __future__ import annotations

import threading
import time

import numpy as np

CALLERS = (1, 8, 32, 128)
MODES = ("unbatched", "micro-batched")


def run_worker(model_path: str, callers: int, mode: str, seconds: float) -> dict:
    """One measurement in this process."""
    import tf1infer
    from tf1infer.verification.synthetic import random_array

    with tf1infer.load(model_path, micro_batching=mode == "micro-batched") as predictor:
        spec = predictor.inputs[0]
        samples = random_array(spec, 256, np.random.default_rng(0))
        for i in range(64):  # Warm-up, and the first runs' one-off costs.
            predictor.predict_on_batch(samples[i : i + 1])
        batch_size = predictor.micro_batching.max_batch_size if predictor.micro_batching else 32
        batch_seconds = _median_seconds(lambda: predictor._run([samples[:batch_size]]), 20)
        latencies: list[list[float]] = [[] for _ in range(callers)]
        start_line = threading.Barrier(callers + 1)
        stop_at = [0.0]

        def caller(index: int) -> None:
            own = latencies[index]
            row = index % len(samples)
            start_line.wait()
            while True:
                began = time.perf_counter()
                if began >= stop_at[0]:
                    return
                predictor.predict_on_batch(samples[row : row + 1])
                own.append(time.perf_counter() - began)
                row = (row + 1) % len(samples)

        threads = [threading.Thread(target=caller, args=(i,), daemon=True) for i in range(callers)]
        for thread in threads:
            thread.start()
        began = time.perf_counter()
        stop_at[0] = began + seconds
        start_line.wait()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - began
        stats = predictor.micro_batching_stats
        settings = predictor.micro_batching
    every = np.concatenate([np.asarray(own) for own in latencies]) if any(latencies) else np.zeros(1)
    record = {
        "callers": callers,
        "mode": mode,
        "samples_per_second": round(len(every) / elapsed, 1),
        "p50_ms": round(float(np.percentile(every, 50)) * 1e3, 3),
        "p99_ms": round(float(np.percentile(every, 99)) * 1e3, 3),
        "requests": int(len(every)),
        "batch_run_ms": round(batch_seconds * 1e3, 3),
        "batch_size": batch_size,
    }
    if settings is not None:
        record.update(
            max_wait_ms=settings.max_wait_ms,
            mean_batch_rows=round(stats["rows"] / max(1, stats["batches"]), 1),
            p99_bound_ms=round(settings.max_wait_ms + 2 * batch_seconds * 1e3, 3),
        )
    return record


def _median_seconds(call, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def report_concurrency(models: dict[str, str], quick: bool, spawn) -> list[dict]:
    """Every model x callers x mode, each in a fresh process through ``spawn(path, callers, mode, seconds)``."""
    seconds = 1.0 if quick else 3.0
    records = []
    for model, path in models.items():
        for callers in CALLERS:
            for mode in MODES:
                print(f"  concurrency: {model}, {callers} caller(s), {mode}", flush=True)
                result = spawn(path, callers, mode, seconds)
                if isinstance(result, str):
                    records.append({"model": model, "callers": callers, "mode": mode, "error": result})
                else:
                    records.append({"model": model, **result})
    for line in concurrency_lines(records):
        print(line)
    return records


def concurrency_md(records: list[dict]) -> str:
    """A markdown table: one row per model x callers, unbatched beside micro-batched."""
    if not records:
        return ""
    rows = [
        "| model | callers | unbatched samples/s | micro-batched samples/s | gain | unbatched p50 / p99 ms | "
        "micro-batched p50 / p99 ms | p99 bound ms | mean batch rows |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for model, callers, plain, batched in _pairs(records):
        gain = (
            batched["samples_per_second"] / plain["samples_per_second"] if plain["samples_per_second"] else float("nan")
        )
        rows.append(
            f"| {model} | {callers} | {plain['samples_per_second']:,.0f} | {batched['samples_per_second']:,.0f} | {gain:.2f}x | "
            f"{plain['p50_ms']:.2f} / {plain['p99_ms']:.2f} | {batched['p50_ms']:.2f} / {batched['p99_ms']:.2f} | "
            f"{batched['p99_bound_ms']:.2f} | {batched['mean_batch_rows']} |"
        )
    errors = [r for r in records if "error" in r]
    notes = "".join(f"\n{r['model']}, {r['callers']} caller(s), {r['mode']}: {r['error']}" for r in errors)
    return "\n".join(rows) + "\n" + notes


def concurrency_lines(records: list[dict]) -> list[str]:
    lines = [
        "\nconcurrent single-sample callers (samples/s; p99 ms; micro-batched p99 bound = max wait + 2 batch runs):"
    ]
    for model, callers, plain, batched in _pairs(records):
        gain = (
            batched["samples_per_second"] / plain["samples_per_second"] if plain["samples_per_second"] else float("nan")
        )
        within = "within" if batched["p99_ms"] <= batched["p99_bound_ms"] else "OVER"
        lines.append(
            f"  {model:14s} {callers:4d} callers: {plain['samples_per_second']:9,.0f} -> {batched['samples_per_second']:9,.0f} "
            f"({gain:.2f}x); p99 {plain['p99_ms']:.2f} -> {batched['p99_ms']:.2f} ms, {within} bound {batched['p99_bound_ms']:.2f}"
        )
    return lines


def _pairs(records: list[dict]):
    done = {(r["model"], r["callers"], r["mode"]): r for r in records if "error" not in r}
    for (model, callers, mode), plain in done.items():
        batched = done.get((model, callers, "micro-batched"))
        if mode == "unbatched" and batched:
            yield model, callers, plain, batched
