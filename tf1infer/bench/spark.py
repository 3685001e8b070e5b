"""Scaling out: rows/s of ``tf1infer.spark.predict_udf`` on ``local[N]`` beside one process's ``predict``.

Each measurement runs in a fresh process (``--worker spark:MASTER``, or
``spark:single`` for one process). The rows are random inputs of the model's
shape, built once, cached in Spark and counted before the clock starts; the
scored rows go to Spark's ``noop`` sink, so the time is reading, scoring and
nothing else. The first action on a fresh session pays for starting the Python
workers, importing TensorFlow in each and loading the model ("cold"); the
second reuses them ("warm"), which is what a long job sees.
"""

from __future__ import annotations

import time

import numpy as np

BATCH_SIZE = 64
SPARK_MODELS = ("mlp", "mini_xception")


def run_worker(master: str, model_path: str, rows: int) -> dict:
    """One measurement in this process: ``master`` is ``single`` (one process, no Spark) or a Spark master URL."""
    import tf1infer
    from tf1infer.verification.synthetic import random_array

    with tf1infer.load(model_path) as predictor:
        samples = random_array(predictor.inputs[0], rows, np.random.default_rng(0))
        if master == "single":
            predictor.predict(samples[:BATCH_SIZE], batch_size=BATCH_SIZE)  # Warm-up.
            began = time.perf_counter()
            predictor.predict(samples, batch_size=BATCH_SIZE)
            seconds = time.perf_counter() - began
            return {
                "master": master,
                "rows": rows,
                "warm_seconds": round(seconds, 3),
                "warm_rows_per_second": round(rows / seconds, 1),
            }
    import os

    import pandas as pd

    from tf1infer.spark import predict_udf, spark_session

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    spark = spark_session(master, batch_size=BATCH_SIZE, quiet=True, app_name="tf1infer bench")
    try:
        cores = spark.sparkContext.defaultParallelism
        frame = spark.createDataFrame(pd.DataFrame({"x": list(samples.reshape(rows, -1))}))
        frame = frame.repartition(cores * 4).cache()
        frame.count()
        udf = predict_udf(model_path, batch_size=BATCH_SIZE)
        record = {"master": master, "rows": rows, "partitions": cores * 4}
        for run in ("cold", "warm"):
            began = time.perf_counter()
            frame.select(udf("x")).write.format("noop").mode("overwrite").save()
            seconds = time.perf_counter() - began
            record[f"{run}_seconds"] = round(seconds, 3)
            record[f"{run}_rows_per_second"] = round(rows / seconds, 1)
        record["model_loads"] = udf.model_loads.value
        return record
    finally:
        spark.stop()


def report_spark(models: dict[str, str], masters: list[str], quick: bool, spawn) -> list[dict]:
    """Every model x (one process, then each master), each in a fresh process through ``spawn(master, path, rows)``."""
    records = []
    for model, path in models.items():
        rows = {"mlp": 20_000, "mini_xception": 2_000 if quick else 10_000}.get(model, 5_000)
        for master in ["single", *masters]:
            print(f"  spark: {model}, {rows} rows, {'one process' if master == 'single' else master}", flush=True)
            result = spawn(master, path, rows)
            records.append(
                {"model": model, "master": master, "error": result}
                if isinstance(result, str)
                else {"model": model, **result}
            )
    for line in spark_lines(records):
        print(line)
    return records


def spark_md(records: list[dict]) -> str:
    if not records:
        return ""
    rows = [
        "| model | where | rows | warm rows/s | cold rows/s (workers start, import TF, load) | loads on executors |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in records:
        if "error" in r:
            rows.append(f"| {r['model']} | {r['master']} | | failed: {r['error']} | | |")
            continue
        where = "one process, `predict`" if r["master"] == "single" else f"Spark `{r['master']}`"
        cold = f"{r['cold_rows_per_second']:,.0f}" if "cold_rows_per_second" in r else ""
        rows.append(
            f"| {r['model']} | {where} | {r['rows']:,} | {r['warm_rows_per_second']:,.0f} | {cold} | "
            f"{r.get('model_loads', '')} |"
        )
    return "\n".join(rows) + "\n"


def spark_lines(records: list[dict]) -> list[str]:
    lines = ["\nscaling out (rows/s, warm; Spark's cold first run in brackets):"]
    for r in records:
        if "error" in r:
            lines.append(f"  {r['model']:14s} {r['master']:10s} failed: {r['error']}")
        else:
            cold = f" ({r['cold_rows_per_second']:,.0f} cold)" if "cold_rows_per_second" in r else ""
            lines.append(f"  {r['model']:14s} {r['master']:10s} {r['warm_rows_per_second']:10,.0f}{cold}")
    return lines
