"""make bench-tf1's machinery: a small real run, the FLOP count, and the summary's arithmetic."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import ROOT, zoo_path

from tf1infer.bench.limits import model_flops
from tf1infer.bench.report import check_rows, summary_lines


def test_a_quick_run_writes_one_record_per_model_batch_and_runner(tmp_path):
    out = tmp_path / "results" / "latest.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tf1infer.bench",
            "--quick",
            "--models",
            "mlp",
            "--peers",
            "tf1infer,tflite_interpreter",
            "--batch-sizes",
            "1,4",
            "--checks",
            "tflite",
            "--no-streaming",
            "--json",
            str(out),
            "--benchmarks-md",
            str(tmp_path / "B.md"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    runners = {
        "tf1infer predict_on_batch",
        "tf1infer predict",
        "tf1infer predict_iter (single samples)",
        "TF Lite interpreter",
    }
    assert {(r["runner"], r["batch_size"]) for r in result["records"]} == {(r, b) for r in runners for b in (1, 4)}
    assert len(result["records"]) == 8
    for record in result["records"]:
        assert record["model"] == "mlp" and record["us_per_sample"] > 0 and record["timed_calls"] >= 3
        assert record["load_seconds"] > 0
    assert result["limits"]["peak_gflops"] > 0 and result["limits"]["flops"]["mlp"]["flops_per_sample"] > 0
    from tf1infer.runtime.kernels import kernel_family

    assert result["machine"]["kernels"] == kernel_family()  # The kernel family the workers ran (same environment).
    import numpy as np
    import tensorflow as tf

    # The TensorFlow and numpy the run used, in the record and the table's machine line.
    assert (result["machine"]["tensorflow"], result["machine"]["numpy"]) == (tf.__version__, np.__version__)
    table = (tmp_path / "results" / "latest.md").read_text()
    assert f"TensorFlow kernels: oneDNN {'on' if result['machine']['kernels']['onednn'] else 'off'} (" in table
    assert f"tensorflow {tf.__version__}" in table and f"numpy {np.__version__}" in table
    assert "| runner | b1 us/sample | x fastest | % of limit |" in table
    assert table.count("1.00x") >= 2  # The fastest runner of each batch size.
    assert "tf1infer predict_iter (single samples)" in table
    checked = {
        "TF Lite interpreter",
        "tf1infer tflite predict_on_batch",
        "tf1infer auto predict_on_batch",
        "tf1infer session predict_on_batch",
    }
    assert {(r["runner"], r["batch_size"]) for r in result["checks"]} == {(r, b) for r in checked for b in (1, 4)}
    assert (
        all(r["peer"] == "tflite" and r["us_per_sample"] > 0 for r in result["checks"]) and not result["check_errors"]
    )
    assert (
        "### Same-process checks" in table
        and "| mlp | tf1infer tflite predict_on_batch | TF Lite interpreter |" in table
    )
    assert "| mlp | tf1infer tflite predict_on_batch | tf1infer session predict_on_batch |" in table
    assert (tmp_path / "results" / "latest.png").is_file() or "no chart: matplotlib not installed" in done.stdout
    assert not (tmp_path / "B.md").exists()  # Quick runs leave BENCHMARKS.md alone.
    assert "mlp, best tf1infer vs best other: batch 1:" in done.stdout
    (tmp_path / "results" / "latest.md").unlink()
    again = subprocess.run(
        [sys.executable, "-m", "tf1infer.bench", "--render", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert again.returncode == 0, again.stderr[-2000:]
    assert (tmp_path / "results" / "latest.md").read_text() == table


def test_flops_of_the_zoo_mlp_match_its_layers():
    # Dense 10->32->16->3: 2*(10*32 + 32*16 + 16*3) = 1760 multiply-adds as FLOPs, 51 bias adds, then
    # TensorFlow's own count of ReLU and softmax (a few per unit).
    flops = model_flops(zoo_path("mlp"))["flops_per_sample"]
    assert 1760 + 51 <= flops <= 1760 + 51 + 60
    assert model_flops(zoo_path("lstm")) == {
        "flops_per_sample": None,
        "why": "the profiler does not count inside While loops",
    }


def test_summary_compares_the_best_of_each_side():
    records = [
        {"model": "m", "batch_size": 1, "runner": "tf1infer predict", "us_per_sample": 100.0},
        {"model": "m", "batch_size": 1, "runner": "tf1infer tflite predict_on_batch", "us_per_sample": 20.0},
        {"model": "m", "batch_size": 1, "runner": "tf.function", "us_per_sample": 150.0},
        {"model": "m", "batch_size": 1, "runner": "ONNX Runtime", "us_per_sample": 40.0},
        {"model": "m", "batch_size": 32, "runner": "tf1infer predict", "us_per_sample": 10.0},
        {"model": "m", "batch_size": 32, "runner": "hand-written sess.run", "us_per_sample": 8.0},
    ]
    assert summary_lines(records, [1, 32]) == [
        "m, best tf1infer vs best other: batch 1: tf1infer tflite predict_on_batch 20.0 us, 2.00x faster than "
        "ONNX Runtime 40.0 us; batch 32: tf1infer predict 10.0 us, 1.25x slower than hand-written sess.run 8.0 us",
        "m, tf1infer session vs best TensorFlow runtime: batch 1: tf1infer predict 100 us, 1.50x faster than "
        "tf.function 150 us; batch 32: tf1infer predict 10.0 us, 1.25x slower than hand-written sess.run 8.0 us",
    ]


def test_same_process_check_rows_put_tf1infer_against_its_peer():
    checks = [
        {"peer": "tflite", "model": "m", "batch_size": 1, "runner": "TF Lite interpreter", "us_per_sample": 40.0},
        {
            "peer": "tflite",
            "model": "m",
            "batch_size": 1,
            "runner": "tf1infer tflite predict_on_batch",
            "us_per_sample": 20.0,
        },
        {"peer": "tflite", "model": "m", "batch_size": 32, "runner": "TF Lite interpreter", "us_per_sample": 3.0},
        {
            "peer": "tflite",
            "model": "m",
            "batch_size": 32,
            "runner": "tf1infer tflite predict_on_batch",
            "us_per_sample": 4.0,
        },
    ]
    assert check_rows(checks, [1, 32, 256]) == [
        ["model", "tf1infer runner", "peer", "batch 1", "batch 32", "batch 256"],
        [
            "m",
            "tf1infer tflite predict_on_batch",
            "TF Lite interpreter",
            "20.0 vs 40.0 us (2.00x)",
            "4.0 vs 3.0 us (0.75x)",
            "-",
        ],
    ]


def test_concurrency_worker_measures_callers_with_and_without_micro_batching():
    records = []
    for mode in ("unbatched", "micro-batched"):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "tf1infer.bench",
                "--worker",
                f"concurrency:{mode}:0.5",
                "--model-path",
                str(ROOT / "legacy_models" / "cnn.h5"),
                "--count",
                "4",
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        (line,) = [line for line in done.stdout.splitlines() if line.startswith("BENCH-RECORD ")]
        records.append({"model": "cnn", **json.loads(line[len("BENCH-RECORD ") :])})
    plain, batched = records
    for record in records:
        assert record["callers"] == 4 and record["requests"] > 20 and record["samples_per_second"] > 0
        assert 0 < record["p50_ms"] <= record["p99_ms"]
    assert 1 <= batched["mean_batch_rows"] <= 4 and batched["p99_bound_ms"] > batched["max_wait_ms"] == 2.0
    from tf1infer.bench.concurrency import concurrency_md

    table = concurrency_md(records)
    assert "| model | callers | unbatched samples/s | micro-batched samples/s | gain |" in table
    assert f"| cnn | 4 | {plain['samples_per_second']:,.0f} | {batched['samples_per_second']:,.0f} |" in table


def test_int8_worker_times_both_precisions_and_measures_agreement_on_photographs():
    import pytest
    from conftest import CORPUS_ABSENT, CORPUS_DIR

    from tf1infer.bench.int8 import HELD_OUT_ROWS, int8_md

    path = CORPUS_DIR / "keras205_gender_mini_xception.hdf5"
    if not path.is_file():
        pytest.skip(CORPUS_ABSENT)
    done = subprocess.run(
        [sys.executable, "-m", "tf1infer.bench", "--worker", "int8:quick", "--model-path", str(path), "--count", "1,8"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("BENCH-RECORD ")]
    record = json.loads(line[len("BENCH-RECORD ") :])
    assert set(record["us_per_sample"]) == {"1", "8"}
    assert all(pair["float32"] > 0 and pair["int8"] > 0 for pair in record["us_per_sample"].values())
    assert record["calibration_rows"] == 500 and record["held_out_rows"] == HELD_OUT_ROWS
    assert 0.8 <= record["top1_agreement"] <= 1.0 and 0 < record["mean_abs"] <= record["max_abs"]
    table = int8_md([{"model": "mini_xception", **record}, {"model": "other", "error": "failed: no output"}])
    assert "| mini_xception | " in table and f"of {HELD_OUT_ROWS:,}" in table and "other: failed: no output" in table
