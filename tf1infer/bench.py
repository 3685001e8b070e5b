"""``make bench-tf1``: per-call time at batch 1, tf1infer against the ways people run legacy models.

Each runner runs in its own Python process (so eager, graph-mode and
``disable_eager_execution`` state cannot leak between them), on the same
random input. Times are the median, over several rounds, of the mean time per
call in a round, after warm-up calls.

Runners:
  keras_predict       tf_keras ``model.predict(x)`` per call (the old loop)
  keras_eager_call    tf_keras ``model(x, training=False)``
  tf_function         ``tf.function`` around the eager call
  session_feed_dict   a hand-written TF1 ``sess.run(output, feed_dict=...)`` on the
                      graph Keras builds under ``disable_eager_execution``
  tf1infer            ``Session.make_callable`` on tf1infer's graph (bare), then
                      tf1infer ``predict_on_batch`` and ``predict``, interleaved
                      round by round so they see the same machine state

Streaming (issue: stream without limits), each in a process of its own:
  throughput          tf1infer ``predict`` on the data in one array, against
                      ``predict_iter`` fed one sample at a time by a generator
                      (both batch 32): per-sample microseconds and their ratio
  memory              ``predict_to`` into .h5 from a generator of N single MLP
                      samples (batch 256): the rise of peak RSS during the run,
                      for N = 10k, 100k and 1M (10k and 100k with --quick)

Usage: python -m tf1infer.bench [--models mlp,mini_xception] [--quick] [--json PATH] [--no-streaming]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from typing import Callable

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = {
    "mlp": os.path.join(ROOT, "legacy_models", "mlp.h5"),
    "mini_xception": os.path.join(ROOT, "..", "shared", "corpus", "keras205_gender_mini_xception.hdf5"),
}
RUNNERS = ["keras_predict", "keras_eager_call", "tf_function", "session_feed_dict", "tf1infer"]
BASELINE = "session_feed_dict"


def _rounds(functions: dict[str, Callable[[], object]], calls: int, rounds: int) -> dict[str, float]:
    """Median per-call microseconds of each function; functions alternate round by round."""
    for function in functions.values():
        for _ in range(max(3, calls // 5)):
            function()
    samples: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(rounds):
        for name, function in functions.items():
            start = time.perf_counter()
            for _ in range(calls):
                function()
            samples[name].append((time.perf_counter() - start) / calls * 1e6)
    return {name: float(np.median(values)) for name, values in samples.items()}


def _input_for(shape, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(1,) + tuple(shape[1:])).astype("float32")


def run_worker(runner: str, model_path: str, quick: bool) -> dict[str, float]:
    """Time one runner on one model in this process; returns {label: microseconds per call}."""
    import tensorflow as tf
    import tf_keras

    fast_calls, fast_rounds = (200, 5) if quick else (1000, 9)
    slow_calls, slow_rounds = (5, 3) if quick else (20, 5)
    if runner == "tf1infer":
        import tf1infer

        predictor = tf1infer.load(model_path)
        x = _input_for(predictor.inputs[0].shape)
        graph = predictor.graph
        bare = predictor.session.make_callable(
            [graph.get_tensor_by_name(spec.name) for spec in predictor.outputs],
            feed_list=[graph.get_tensor_by_name(spec.name) for spec in predictor.inputs],
        )
        return _rounds(
            {
                "bare make_callable (same graph)": lambda: bare(x),
                "tf1infer predict_on_batch": lambda: predictor.predict_on_batch(x),
                "tf1infer predict": lambda: predictor.predict(x),
            },
            fast_calls,
            fast_rounds,
        )
    if runner == "session_feed_dict":
        tf.compat.v1.disable_eager_execution()  # Process-wide, as old TF1 scripts did; this process is ours.
        model = tf_keras.models.load_model(model_path, compile=False)
        from tf_keras.src import backend  # get_session is no longer exported by tf_keras.backend.

        session = backend.get_session()
        x = _input_for(model.input_shape)
        return _rounds(
            {"hand-written sess.run(feed_dict)": lambda: session.run(model.output, feed_dict={model.input: x})},
            fast_calls,
            fast_rounds,
        )
    model = tf_keras.models.load_model(model_path, compile=False)
    x = _input_for(model.input_shape)
    if runner == "keras_predict":
        return _rounds({"keras model.predict": lambda: model.predict(x, verbose=0)}, slow_calls, slow_rounds)
    if runner == "keras_eager_call":
        return _rounds({"keras model(x, training=False)": lambda: model(x, training=False)}, slow_calls * 5, slow_rounds)
    if runner == "tf_function":
        function = tf.function(lambda t: model(t, training=False))
        tensor = tf.constant(x)
        return _rounds({"tf.function": lambda: function(tensor)}, fast_calls, fast_rounds)
    raise ValueError(f"unknown runner {runner!r}")


def _one_at_a_time(shape, count: int, seed: int):
    """Single samples made as they are asked for: no array of all of them ever exists."""
    rng = np.random.default_rng(seed)
    for _ in range(count):
        yield rng.standard_normal(tuple(shape[1:]), dtype=np.float32)


def run_stream_worker(mode: str, model_path: str, count: int) -> dict[str, float]:
    """One streaming measurement in this process (see the module docstring)."""
    import tempfile

    import h5py

    import tf1infer
    from tf1infer.memory import current_rss, measure_peak

    predictor = tf1infer.load(model_path)
    shape = predictor.inputs[0].shape
    if mode == "throughput":
        x = np.stack(list(_one_at_a_time(shape, count, 0)))
        predictor.predict(x[:256], batch_size=32)  # Warm-up.
        sum(len(batch) for batch in predictor.predict_iter(_one_at_a_time(shape, 256, 0), batch_size=32))
        rounds = {"predict": [], "predict_iter": []}
        for _ in range(3):
            start = time.perf_counter()
            predictor.predict(x, batch_size=32)
            rounds["predict"].append((time.perf_counter() - start) / count * 1e6)
            # The generator's own cost (making each sample) is timed apart and left out: it is the
            # caller's work, which predict's array also needed once.
            start = time.perf_counter()
            for _ in _one_at_a_time(shape, count, 1):
                pass
            making = time.perf_counter() - start
            start = time.perf_counter()
            rows = sum(len(batch) for batch in predictor.predict_iter(_one_at_a_time(shape, count, 1), batch_size=32))
            rounds["predict_iter"].append((time.perf_counter() - start - making) / rows * 1e6)
        return {name: float(np.median(values)) for name, values in rounds.items()}
    if mode == "memory":
        with tempfile.TemporaryDirectory() as folder:
            out = os.path.join(folder, "out.h5")
            predictor.predict_to(out, _one_at_a_time(shape, 1000, 0), batch_size=256)  # Warm-up.
            before = current_rss()
            start = time.perf_counter()
            rise, _ = measure_peak(lambda: predictor.predict_to(out, _one_at_a_time(shape, count, 1), batch_size=256))
            seconds = time.perf_counter() - start
            with h5py.File(out, "r") as file:
                rows = file.attrs["rows"]
            return {"rows": int(rows), "peak_rss_rise_mib": rise / 2**20, "rss_before_mib": before / 2**20, "seconds": seconds}
    raise ValueError(f"unknown streaming mode {mode!r}")


def _spawn(runner: str, model_path: str, quick: bool, count: int | None = None) -> dict[str, float] | str:
    command = [sys.executable, "-m", "tf1infer.bench", "--worker", runner, "--model-path", model_path]
    if quick:
        command.append("--quick")
    if count is not None:
        command += ["--count", str(count)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        return f"failed: {(done.stderr.strip().splitlines() or ['no output'])[-1]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated: " + ", ".join(MODELS))
    parser.add_argument("--quick", action="store_true", help="fewer calls, for a smoke run")
    parser.add_argument("--json", default=os.path.join("bench-results", "latest.json"), help="where to write the records")
    parser.add_argument("--no-streaming", action="store_true", help="skip the streaming throughput and memory runs")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--model-path", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        if args.worker in ("throughput", "memory"):
            print(json.dumps(run_stream_worker(args.worker, args.model_path, args.count)))
        else:
            print(json.dumps(run_worker(args.worker, args.model_path, args.quick)))
        return 0

    records = []
    print(f"tf1infer bench: batch 1, microseconds per call (median), {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores")
    for model in args.models.split(","):
        path = MODELS[model]
        if not os.path.exists(path):
            print(f"\n{model}: skipped, {path} not found")
            continue
        timings: dict[str, float] = {}
        for runner in RUNNERS:
            result = _spawn(runner, path, args.quick)
            if isinstance(result, str):
                print(f"  {model} {runner}: {result}")
                continue
            timings.update(result)
        baseline = timings.get("hand-written sess.run(feed_dict)")
        bare = timings.get("bare make_callable (same graph)")
        print(f"\n{model} ({os.path.relpath(path)})")
        print(f"  {'runner':<34}{'us/call':>10}{'vs sess.run':>13}{'vs bare callable':>18}")
        for label, micros in timings.items():
            ratio = f"{micros / baseline:.2f}x" if baseline else "-"
            ratio_bare = f"{micros / bare:.2f}x" if bare else "-"
            print(f"  {label:<34}{micros:>10.1f}{ratio:>13}{ratio_bare:>18}")
            records.append({"model": model, "batch_size": 1, "runner": label, "us_per_call": micros})
    if not args.no_streaming:
        records += _streaming(args)
    os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
    with open(args.json, "w") as handle:
        json.dump({"machine": platform.platform(), "cores": os.cpu_count(), "records": records}, handle, indent=1)
    print(f"\nwrote {args.json}")
    return 0


def _streaming(args) -> list[dict]:
    records = []
    print("\nstreaming: predict_iter fed one sample at a time vs predict on one array (batch 32), us/sample")
    print(f"  {'model':<16}{'predict':>10}{'predict_iter':>14}{'throughput ratio':>18}")
    for model in args.models.split(","):
        path = MODELS[model]
        if not os.path.exists(path):
            continue
        count = {"mlp": 20000, "mini_xception": 1000}.get(model, 2000) // (4 if args.quick else 1)
        result = _spawn("throughput", path, args.quick, count)
        if isinstance(result, str):
            print(f"  {model}: {result}")
            continue
        ratio = result["predict"] / result["predict_iter"]
        print(f"  {model:<16}{result['predict']:>10.1f}{result['predict_iter']:>14.1f}{ratio:>17.2f}x")
        records.append({"model": model, "batch_size": 32, "runner": "streaming throughput", "samples": count, **result,
                        "throughput_ratio": ratio})
    print("\nstreaming memory: predict_to .h5 from a generator of single MLP samples (batch 256)")
    print(f"  {'samples':>10}{'peak RSS rise':>16}{'RSS before':>13}{'seconds':>10}")
    for count in (10_000, 100_000) + (() if args.quick else (1_000_000,)):
        result = _spawn("memory", MODELS["mlp"], args.quick, count)
        if isinstance(result, str):
            print(f"  {count:>10}: {result}")
            continue
        print(f"  {count:>10}{result['peak_rss_rise_mib']:>12.1f} MiB{result['rss_before_mib']:>9.0f} MiB{result['seconds']:>10.1f}")
        records.append({"model": "mlp", "batch_size": 256, "runner": "streaming memory", "samples": count, **result})
    return records


if __name__ == "__main__":
    sys.exit(main())
