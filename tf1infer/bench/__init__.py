"""``make bench-tf1``: tf1infer against every other way of running a legacy model, side by side.

For each model (the zoo's MLP, CNN, LSTM and GRU, the shared corpus's mini-Xception)
and batch size (1, 32, 256), every peer in :data:`tf1infer.bench.peers.PEERS`
runs in its own process on the same inputs. Reported per runner: microseconds
per sample, the ratio to the fastest, percent of the physical limit (FLOPs over
a measured matmul peak), load time and RSS growth per 10,000 calls. Then the
same-process checks (:data:`tf1infer.bench.peers.CHECKS`: tf1infer and one peer
timed interleaved in one process, for the races too close for separate
processes to call), the streaming measurements (:mod:`tf1infer.bench.streaming`)
concurrent single-sample callers with and without micro-batching
(:mod:`tf1infer.bench.concurrency`), single-sample clients against ``tf1infer
serve`` over REST and gRPC beside a Flask + tf_keras server
(:mod:`tf1infer.bench.serving`), and int8 against float32 on TF Lite with
accuracy on real-photo crops (:mod:`tf1infer.bench.int8`).

Outputs: a table on stdout, ``bench-results/latest.json`` (one record per model
x batch size x runner), ``bench-results/latest.md``, ``bench-results/latest.png``,
and, after a full run, ``BENCHMARKS.md`` (method, machine, table).

Usage: python -m tf1infer.bench [--quick] [--models mlp,cnn,lstm,gru,mini_xception]
       [--peers keras_predict,...] [--batch-sizes 1,32,256] [--checks tflite,...]
       [--no-streaming] [--no-concurrency] [--no-serving] [--no-int8] [--json PATH] [--benchmarks-md PATH]
       python -m tf1infer.bench --render bench-results/latest.json   (the reports again, from saved results)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from tf1infer.bench import report
from tf1infer.bench.peers import CHECKS, PEERS, MissingPeer, run_check, run_peer
from tf1infer.bench.timing import FULL, QUICK

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODELS = {
    "mlp": os.path.join(ROOT, "legacy_models", "mlp.h5"),
    "cnn": os.path.join(ROOT, "legacy_models", "cnn.h5"),
    "lstm": os.path.join(ROOT, "legacy_models", "lstm.h5"),
    "gru": os.path.join(ROOT, "legacy_models", "gru.h5"),
    "mini_xception": os.path.join(ROOT, "..", "shared", "corpus", "keras205_gender_mini_xception.hdf5"),
}
STREAMING_MODELS = ("mlp", "mini_xception")
CONCURRENCY_MODELS = ("cnn", "mini_xception")
BATCH_SIZES = (1, 32, 256)
PASSES = 2  # Processes per peer in a full run (see _run_peers); report.METHOD says twice.
RECORD = "BENCH-RECORD "  # Prefix of a worker's result lines: TensorFlow prints to stdout too.


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="short timing rounds, one pass; serving at 32 clients on the mini-Xception only",
    )
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated: " + ", ".join(MODELS))
    parser.add_argument("--peers", default=",".join(PEERS), help="comma-separated: " + ", ".join(PEERS))
    parser.add_argument("--batch-sizes", default=",".join(map(str, BATCH_SIZES)))
    parser.add_argument("--no-streaming", action="store_true", help="skip the streaming throughput and memory runs")
    parser.add_argument(
        "--no-concurrency", action="store_true", help="skip the concurrent callers (micro-batching) runs"
    )
    parser.add_argument(
        "--no-serving", action="store_true", help="skip tf1infer serve (REST, gRPC) against Flask + tf_keras"
    )
    parser.add_argument("--no-int8", action="store_true", help="skip int8 against float32 TF Lite on real-photo crops")
    parser.add_argument(
        "--spark",
        nargs="?",
        const="local[2]",
        metavar="MASTERS",
        help="also score on Apache Spark (the spark extra and Java): comma-separated masters "
        "(default local[2]), beside one process",
    )
    parser.add_argument(
        "--checks",
        help="same-process checks, comma-separated: " + ", ".join(CHECKS) + " (default: all; none with --quick)",
    )
    parser.add_argument(
        "--json", default=os.path.join("bench-results", "latest.json"), help="where to write the records"
    )
    parser.add_argument(
        "--benchmarks-md", default="BENCHMARKS.md", help="rewritten after a full run (not with --quick)"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--model-path", help=argparse.SUPPRESS)
    parser.add_argument("--count", help=argparse.SUPPRESS)  # Samples (streaming) or batch sizes (peers).
    parser.add_argument(
        "--render", metavar="JSON", help="rewrite the reports (and BENCHMARKS.md, for a full run) from saved results"
    )
    args = parser.parse_args(argv)
    if args.worker:
        return _worker(args)
    if args.render:
        with open(args.render) as handle:
            result = json.load(handle)
        result.setdefault("models", {r["model"]: MODELS.get(r["model"], r["model"]) for r in result["records"]})
        result.setdefault("checks", [])
        result.setdefault("check_errors", [])
        result.setdefault("concurrency", [])
        result.setdefault("serving", [])
        result.setdefault("spark", [])
        result.setdefault("int8", [])
        _print_results(result)
        _write_reports(result, args.render, None if result["quick"] else args.benchmarks_md)
        return 0

    started = time.perf_counter()
    models, missing_models = {}, []
    for name in _split(args.models):
        if name not in MODELS:
            parser.error(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
        if os.path.exists(MODELS[name]):
            models[name] = MODELS[name]
        else:
            missing_models.append(name)
    peers = _split(args.peers)
    for peer in peers:
        if peer not in PEERS:
            parser.error(f"unknown peer {peer!r}; choose from {', '.join(PEERS)}")
    checks = _split(args.checks if args.checks is not None else "" if args.quick else ",".join(CHECKS))
    for check in checks:
        if check not in CHECKS:
            parser.error(f"unknown check {check!r}; choose from {', '.join(CHECKS)}")
    batch_sizes = [int(size) for size in _split(args.batch_sizes)]
    info = report.machine()
    print(f"tf1infer bench{' (quick)' if args.quick else ''}: {report.machine_line(info)}")
    for name in missing_models:
        print(f"  model {name}: skipped, {MODELS[name]} not found")

    limit_runs = _spawn(
        ["--worker", "limits", "--model-path", json.dumps(models)] + (["--quick"] if args.quick else [])
    )
    limits = (
        limit_runs[0]
        if limit_runs and "error" not in limit_runs[0]
        else {"error": limit_runs[0]["error"] if limit_runs else "no output"}
    )
    records, errors, missing = _run_peers(peers, models, batch_sizes, args.quick)
    for error in errors:
        if error.get("model") is None:
            print(f"  {error['peer']}: {error['error']}")
    check_records, check_errors = _run_checks(checks, models, batch_sizes, args.quick)
    result = {
        "machine": info,
        "quick": args.quick,
        "batch_sizes": batch_sizes,
        "models": models,
        "limits": limits,
        "records": records,
        "errors": errors,
        "missing_peers": missing,
        "checks": check_records,
        "check_errors": check_errors,
        "streaming": [],
        "concurrency": [],
        "serving": [],
        "spark": [],
        "int8": [],
    }
    _print_results(result)
    if not args.no_streaming:
        from tf1infer.bench.streaming import report_streaming

        result["streaming"] = report_streaming(
            {m: p for m, p in models.items() if m in STREAMING_MODELS}, MODELS["mlp"], args.quick, _spawn_one
        )
    if not args.no_concurrency:
        from tf1infer.bench.concurrency import report_concurrency

        def spawn_concurrency(path, callers, mode, seconds):
            return _spawn_one(f"concurrency:{mode}:{seconds}", path, callers)

        result["concurrency"] = report_concurrency(
            {m: p for m, p in models.items() if m in CONCURRENCY_MODELS}, args.quick, spawn_concurrency
        )
    if not args.no_serving:
        from tf1infer.bench.serving import CALLERS as SERVING_CALLERS
        from tf1infer.bench.serving import report_serving

        def in_process(path, callers):
            return _spawn_one(f"concurrency:micro-batched:{1.5 if args.quick else 4.0}", path, callers)

        # A quick pass measures the headline point only: 32 clients on the mini-Xception (each server a
        # process of its own with TensorFlow's import: most of this section's time).
        result["serving"] = report_serving(
            {m: p for m, p in models.items() if m in (("mini_xception",) if args.quick else CONCURRENCY_MODELS)},
            args.quick,
            in_process,
            callers=(32,) if args.quick else SERVING_CALLERS,
        )
    if not args.no_int8:
        from tf1infer.bench.int8 import INT8_MODELS, report_int8

        def spawn_int8(path, sizes):
            return _spawn_one("int8:quick" if args.quick else "int8", path, ",".join(map(str, sizes)))

        result["int8"] = report_int8({m: p for m, p in models.items() if m in INT8_MODELS}, batch_sizes, spawn_int8)
    if args.spark:
        from tf1infer.bench.spark import SPARK_MODELS, report_spark

        def spawn_spark(master, path, rows):
            return _spawn_one(f"spark:{master}", path, rows)

        result["spark"] = report_spark(
            {m: p for m, p in models.items() if m in SPARK_MODELS}, _split(args.spark), args.quick, spawn_spark
        )
    os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
    with open(args.json, "w") as handle:
        json.dump(result, handle, indent=1)
    _write_reports(result, args.json, None if args.quick else args.benchmarks_md)
    print(f"bench took {time.perf_counter() - started:.0f} s")
    return 0


def _print_results(result: dict) -> None:
    records, batch_sizes, limits = result["records"], result["batch_sizes"], result["limits"]
    report.print_tables(report.tables(records, batch_sizes, limits), result["models"], limits, result["errors"])
    for note in _notes(records):
        print(f"  note {note}")
    print("\nsummary:")
    for line in report.summary_lines(records, batch_sizes):
        print(f"  {line}")
    for line in report.checks_text(result["checks"], batch_sizes, result["check_errors"]):
        print(line)


def _notes(records: list[dict]) -> list[str]:
    return sorted({f"{r['model']}: {r['runner']}: {r['note']}" for r in records if r.get("note")})


def _write_reports(result: dict, json_path: str, benchmarks_md: str | None) -> None:
    """latest.md and latest.png beside ``json_path``; BENCHMARKS.md when a path is given."""
    records, batch_sizes, limits = result["records"], result["batch_sizes"], result["limits"]
    folder = os.path.dirname(json_path) or "."
    model_tables = report.tables(records, batch_sizes, limits)
    table_md = report.markdown(model_tables, result["models"], limits, result["errors"], _notes(records))
    if result["missing_peers"]:
        table_md += "\nMissing peers: " + "; ".join(result["missing_peers"]) + "\n"
    checks_md = report.checks_md(result["checks"], batch_sizes, result["check_errors"])
    from tf1infer.bench.concurrency import concurrency_md

    callers_md = concurrency_md(result.get("concurrency", []))
    from tf1infer.bench.serving import SERVING_METHOD, serving_md

    served_md = serving_md(result.get("serving", []))
    from tf1infer.bench.spark import spark_md

    scaling_md = spark_md(result.get("spark", []))
    from tf1infer.bench.int8 import INT8_METHOD, int8_md

    quantized_md = int8_md(result.get("int8", []))
    with open(os.path.join(folder, "latest.md"), "w") as handle:
        handle.write(
            f"Machine: {report.machine_line(result['machine'])}\n\n{table_md}"
            + (f"\n### Same-process checks\n\n{checks_md}" if checks_md else "")
            + (f"\n### Concurrent callers\n\n{callers_md}" if callers_md else "")
            + (f"\n### Serving\n\n{SERVING_METHOD}\n\n{served_md}" if served_md else "")
            + (f"\n### Scaling out on Spark\n\n{scaling_md}" if scaling_md else "")
            + (f"\n### int8 on TF Lite\n\n{INT8_METHOD}\n\n{quantized_md}" if quantized_md else "")
        )
    chart_path = os.path.join(folder, "latest.png")
    why_not = report.chart(records, batch_sizes, chart_path)
    print(
        f"\nwrote {json_path}, {os.path.join(folder, 'latest.md')}"
        + (f", {chart_path}" if why_not is None else f" (no chart: {why_not})")
    )
    if benchmarks_md:
        summary = report.summary_lines(records, batch_sizes)
        with open(benchmarks_md, "w") as handle:
            handle.write(
                report.benchmarks_md(
                    result["machine"],
                    table_md,
                    summary,
                    result["streaming"],
                    checks_md,
                    callers_md,
                    f"{SERVING_METHOD}\n\n{served_md}" if served_md else "",
                )
                + (f"\n## Scaling out on Spark\n\n{scaling_md}" if scaling_md else "")
                + (f"\n## int8 on TF Lite\n\n{INT8_METHOD}\n\n{quantized_md}" if quantized_md else "")
            )
        print(f"wrote {benchmarks_md}")


def _run_peers(peers: list[str], models: dict, batch_sizes: list[int], quick: bool):
    """Every peer in its own process; a full run makes PASSES of them, in alternating order.

    On a small shared machine a whole process can land in a slow spell (seen here:
    the same TF Lite call at 208 or 351 us from one process to the next), so each
    runner keeps the fastest of its passes' medians; all are in the record.
    """
    passes = 1 if quick else PASSES
    best: dict[tuple, dict] = {}
    errors: list = []
    missing: list = []
    for number in range(passes):
        for peer in peers if number % 2 == 0 else peers[::-1]:
            if any(peer in line for line in missing):
                continue
            print(f"  pass {number + 1}/{passes}: {peer}: {PEERS[peer]}", flush=True)
            worker = ["--worker", peer, "--model-path", json.dumps(models), "--count", ",".join(map(str, batch_sizes))]
            for record in _spawn(worker + (["--quick"] if quick else [])):
                if "missing" in record:
                    missing.append(f"{peer}: {record['missing']}")
                    print(f"    MISSING PEER {peer}: {record['missing']}")
                elif "error" in record:
                    if number == 0:
                        errors.append(record)
                else:
                    key = (record["model"], record["runner"], record["batch_size"])
                    seen = best.get(key)
                    record["pass_us_per_sample"] = (seen["pass_us_per_sample"] if seen else []) + [
                        record["us_per_sample"]
                    ]
                    if seen is None or record["us_per_sample"] < seen["us_per_sample"]:
                        best[key] = record
                    else:
                        seen["pass_us_per_sample"] = record["pass_us_per_sample"]
    return list(best.values()), errors, missing


def _run_checks(checks: list[str], models: dict, batch_sizes: list[int], quick: bool):
    """Each same-process check (:data:`~tf1infer.bench.peers.CHECKS`) in a process of its own, once."""
    records, errors = [], []
    for check in checks:
        print(f"  check {check}: {' and '.join(CHECKS[check][0])} in one process, interleaved", flush=True)
        worker = [
            "--worker",
            f"check:{check}",
            "--model-path",
            json.dumps(models),
            "--count",
            ",".join(map(str, batch_sizes)),
        ]
        for record in _spawn(worker + (["--quick"] if quick else [])):
            if "missing" in record:
                print(f"    skipped, a peer is missing: {record['missing']}")
            elif "error" in record:
                errors.append({**record, "peer": check})
            else:
                records.append(record)
    return records, errors


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _spawn(arguments: list[str]) -> list[dict]:
    """Run a worker in a fresh process; its records, or one ``error`` record."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
    done = subprocess.run([sys.executable, "-m", "tf1infer.bench", *arguments], capture_output=True, text=True, env=env)
    records = [json.loads(line[len(RECORD) :]) for line in done.stdout.splitlines() if line.startswith(RECORD)]
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        records.append(
            {"error": f"worker failed (exit {done.returncode}): {last}", "peer": arguments[1], "model": None}
        )
    return records


def _spawn_one(worker: str, model_path: str, count) -> dict | str:
    """A worker that measures one thing: its record, or why it failed (a string)."""
    out = _spawn(["--worker", worker, "--model-path", model_path, "--count", str(count)])
    return out[0] if out and "error" not in out[0] else (out[0]["error"] if out else "failed: no output")


def _emit(record: dict) -> None:
    print(RECORD + json.dumps(record), flush=True)


def _worker(args) -> int:
    if args.worker == "limits":
        from tf1infer.bench.limits import matmul_peak, model_flops

        flops = {}
        for model, path in json.loads(args.model_path).items():
            try:
                flops[model] = model_flops(path)
            except Exception as exc:  # A count that fails leaves that model without a limit, not the run.
                flops[model] = {"flops_per_sample": None, "error": f"{type(exc).__name__}: {exc}"[:200]}
        _emit({"flops": flops, **matmul_peak(seconds=0.5 if args.quick else 2.0)})
        return 0
    if args.worker.startswith("concurrency:"):
        from tf1infer.bench.concurrency import run_worker as run_concurrency

        _, mode, seconds = args.worker.split(":")
        _emit(run_concurrency(args.model_path, int(args.count), mode, float(seconds)))
        return 0
    if args.worker.startswith("spark:"):
        from tf1infer.bench.spark import run_worker as run_spark

        _emit(run_spark(args.worker[len("spark:") :], args.model_path, int(args.count)))
        return 0
    if args.worker in ("int8", "int8:quick"):
        from tf1infer.bench.int8 import run_worker as run_int8

        _emit(
            run_int8(args.model_path, [int(size) for size in args.count.split(",")], quick=args.worker == "int8:quick")
        )
        return 0
    if args.worker in ("throughput", "memory"):
        from tf1infer.bench.streaming import run_worker

        _emit(run_worker(args.worker, args.model_path, int(args.count)))
        return 0
    batch_sizes = [int(size) for size in args.count.split(",")]
    models, budget = json.loads(args.model_path), QUICK if args.quick else FULL
    if args.worker.startswith("check:"):
        records = run_check(args.worker[len("check:") :], models, batch_sizes, budget)
    else:
        records = run_peer(args.worker, models, batch_sizes, budget)
    try:  # The records are generated lazily: a missing package shows while they are read.
        for record in records:
            _emit(record)
    except MissingPeer as exc:
        _emit({"missing": str(exc)})
    return 0
