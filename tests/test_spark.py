"""tf1infer.spark on a local[2] Spark: outputs equal to predict, one load per Python worker, typed errors, Parquet CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import CORPUS_ABSENT, CORPUS_DIR, assert_same_rows, random_inputs, zoo_path

import tf1infer
from tf1infer.errors import InputError, InvalidOptionError, MissingDependencyError

pyspark = pytest.importorskip("pyspark", reason="pyspark is not installed (pip install 'tf1infer[spark]')")
pd = pytest.importorskip("pandas")
JAVA_MISSING = shutil.which("java") is None and not os.environ.get("JAVA_HOME")
pytestmark = pytest.mark.skipif(JAVA_MISSING, reason="no Java runtime (java on PATH or JAVA_HOME): Spark cannot start")

from tf1infer.spark import check_worker_python, predict_parquet, predict_udf, spark_session, typed_error  # noqa: E402

# Spark's workers bind to the loopback address; without it Spark may pick an address no test machine routes.
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

MINI_XCEPTION = CORPUS_DIR / "keras205_gender_mini_xception.hdf5"
HALF_PLUS_TWO = CORPUS_DIR / "tfserving_saved_model_half_plus_two_cpu" / "00000123"


@pytest.fixture(scope="module")
def spark():
    session = spark_session("local[2]", quiet=True)
    yield session
    session.stop()


def _frame(spark, columns: dict, partitions: int):
    return spark.createDataFrame(pd.DataFrame(columns)).repartition(partitions)


def _reference(path: str, arrays: list[np.ndarray]) -> list[np.ndarray]:
    with tf1infer.load(path) as predictor:
        outputs = predictor.predict(arrays if len(arrays) > 1 else arrays[0])
    return outputs if isinstance(outputs, list) else [outputs]


def test_two_inputs_two_outputs_come_back_as_a_struct_equal_to_predict(spark):
    path = zoo_path("two_in_two_out")
    with tf1infer.load(path) as predictor:
        features, extra = random_inputs(predictor.inputs, 600, seed=11)
    frame = _frame(spark, {"id": np.arange(600), "features": list(features), "extra": list(extra)}, partitions=6)
    udf = predict_udf(path, batch_size=32)
    assert udf.input_names == ["features", "extra"] and udf.output_fields == ["score", "probs"]
    got = frame.select("id", udf("features", "extra").alias("out")).select("id", "out.*").toPandas().sort_values("id")
    score, probs = _reference(path, [features, extra])
    # One value per row (shape (1,)) is a scalar column; (4,) an array column.
    assert got["score"].dtype == np.float32
    assert_same_rows(got["score"].to_numpy()[:, None], score)
    assert_same_rows(np.stack(got["probs"].to_numpy()), probs)
    # Six tasks on two Python workers: each worker loads the model once and reuses it.
    assert 1 <= udf.model_loads.value <= 2


def test_one_input_from_double_and_nested_array_columns(spark):
    # The MLP's (10,) samples as array<double>; the CNN's (16, 16, 3) samples as nested array<array<array<float>>>.
    mlp = zoo_path("mlp")
    with tf1infer.load(mlp) as predictor:
        (x,) = random_inputs(predictor.inputs, 200, seed=3)
    doubles = x.astype(np.float64)
    got = _frame(spark, {"id": np.arange(200), "x": list(doubles)}, 2).select("id", predict_udf(mlp)("x").alias("y"))
    got = got.toPandas().sort_values("id")
    assert_same_rows(np.stack(got["y"].to_numpy()), _reference(mlp, [x])[0])

    cnn = zoo_path("cnn")
    with tf1infer.load(cnn) as predictor:
        (images,) = random_inputs(predictor.inputs, 64, seed=4)
    nested = images.tolist()  # Python floats, nested three deep.
    frame = spark.createDataFrame(
        [(i, image) for i, image in enumerate(nested)], "id long, image array<array<array<float>>>"
    )
    got = frame.select("id", predict_udf(cnn)("image").alias("y")).toPandas().sort_values("id")
    assert_same_rows(np.stack(got["y"].to_numpy()), _reference(cnn, [images])[0])


@pytest.mark.skipif(not HALF_PLUS_TWO.is_dir(), reason=CORPUS_ABSENT)
def test_a_saved_model_directory_is_shipped_and_scalar_columns_score(spark):
    # TF Serving's half_plus_two (a TF1 SavedModel directory, shipped with addFile): y = 0.5 x + 2, one value per row.
    x = np.random.default_rng(5).normal(size=300).astype(np.float32)
    udf = predict_udf(str(HALF_PLUS_TWO))
    got = (
        _frame(spark, {"id": np.arange(300), "x": x}, 3).select("id", udf("x").alias("y")).toPandas().sort_values("id")
    )
    np.testing.assert_allclose(got["y"].to_numpy(), 0.5 * x + 2, rtol=1e-6, atol=1e-6)


@pytest.mark.skipif(not MINI_XCEPTION.is_file(), reason=CORPUS_ABSENT)
def test_corpus_mini_xception_4000_rows_equal_predict_with_one_load_per_worker(spark):
    # 4,000 rows in eight partitions of 500: enough for many batches per task and two workers; the throughput at
    # 10,000 rows is the benchmark's (README), not a test's.
    path = str(MINI_XCEPTION)
    with tf1infer.load(path) as predictor:
        (faces,) = random_inputs(predictor.inputs, 4_000, seed=21)
    flat = faces.reshape(len(faces), -1)
    frame = _frame(spark, {"id": np.arange(len(faces)), "face": list(flat)}, partitions=8).cache()
    assert frame.count() == 4_000
    udf = predict_udf(path, batch_size=64)
    got = frame.select("id", udf("face").alias("gender")).toPandas().sort_values("id")
    have = np.stack(got["gender"].to_numpy())
    want = _reference(path, [faces])[0]
    assert have.shape == want.shape == (4_000, 2)
    np.testing.assert_allclose(have, want, rtol=0, atol=1e-5)
    # Eight tasks, two Python workers: at most one load each.
    assert 1 <= udf.model_loads.value <= 2
    frame.unpersist()


def test_bad_rows_raise_typed_errors_naming_the_input(spark):
    udf = predict_udf(zoo_path("mlp"))
    good = np.random.default_rng(6).normal(size=(5, 10)).tolist()
    for bad_row, found in (([1.0] * 9, "has 9"), (None, "is null")):
        frame = spark.createDataFrame([(row,) for row in good + [bad_row]], "x array<double>")
        with pytest.raises(Exception) as failure:
            frame.select(udf("x")).collect()
        # The driver's exception carries the task's InputError; typed_error gives it back as its own type.
        assert "tf1infer.errors.InputError" in str(failure.value)
        error = typed_error(failure.value, "test")
        assert isinstance(error, InputError)
        assert "input 'input_1'" in str(error) and found in str(error) and "Spark partition" in str(error)
    with pytest.raises(Exception) as failure:
        spark.createDataFrame([(row,) for row in good], "x array<double>").select(udf("x", "x")).collect()
    assert isinstance(typed_error(failure.value, "test"), InputError)


def test_models_without_fixed_sample_shapes_and_bad_settings_are_refused(spark):
    with pytest.raises(InvalidOptionError, match=r"input 'input_1' has sample shape \(None, 4\)"):
        predict_udf(zoo_path("gru"))
    with pytest.raises(InvalidOptionError, match="batch_size"):
        predict_udf(zoo_path("mlp"), batch_size=0)


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tf1infer.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})},
    )


def test_cli_parquet_round_trip(tmp_path, spark):
    path = zoo_path("two_in_two_out")
    with tf1infer.load(path) as predictor:
        features, extra = random_inputs(predictor.inputs, 400, seed=8)
    source = tmp_path / "in.parquet"
    pd.DataFrame({"id": np.arange(400), "label": np.arange(400) % 3, "a": list(features), "b": list(extra)}).to_parquet(
        source
    )
    output = tmp_path / "scored.parquet"
    done = _cli(
        "predict", path, str(source), "-o", str(output), "--spark", "local[2]", "--columns", "a,b", "--batch-size", "50"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "wrote 400 rows" in done.stdout
    got = pd.read_parquet(output).sort_values("id")
    assert list(got.columns) == ["id", "label", "score", "probs"]  # Other columns kept, inputs replaced by outputs.
    np.testing.assert_array_equal(got["label"].to_numpy(), np.arange(400) % 3)
    score, probs = _reference(path, [features, extra])
    assert_same_rows(got["score"].to_numpy()[:, None], score)
    assert_same_rows(np.stack(got["probs"].to_numpy()), probs)
    assert sorted(os.listdir(tmp_path)) == ["in.parquet", "scored.parquet"]  # No partial output left behind.

    # An existing output is never overwritten; input columns are matched by name without --columns.
    again = _cli("predict", path, str(source), "-o", str(output), "--spark", "local[2]")
    assert again.returncode == 2 and again.stderr.strip().splitlines()[-1].startswith("tf1infer: error: ")
    assert "already exists" in again.stderr
    # (On this process's session: another CLI run would start a JVM of its own for one error line, whose
    # printing test_hostile_files checks for every typed error.)
    with pytest.raises(InputError, match=r"no column\(s\) \['features', 'extra'\].*pass --columns"):
        predict_parquet(path, str(source), str(tmp_path / "other.parquet"), master="local[2]", quiet=True)
    assert sorted(os.listdir(tmp_path)) == ["in.parquet", "scored.parquet"]


def test_missing_java_or_pyspark_is_one_clear_message(tmp_path):
    # No java anywhere: PATH without it, JAVA_HOME unset.
    bare_path = os.pathsep.join(
        d for d in os.environ["PATH"].split(os.pathsep) if not os.path.exists(os.path.join(d, "java"))
    )
    env = {"PATH": bare_path, "JAVA_HOME": ""}
    done = _cli(
        "predict",
        zoo_path("mlp"),
        str(tmp_path / "in.parquet"),
        "-o",
        str(tmp_path / "out.parquet"),
        "--spark",
        "local[2]",
        env=env,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("tf1infer: error: Spark needs a Java runtime")
    # pyspark hidden from the interpreter.
    code = (
        "import sys; sys.modules['pyspark'] = None\n"
        "from tf1infer.spark import predict_udf\n"
        "try:\n    predict_udf('m.h5')\n"
        "except ImportError as exc:\n    print(type(exc).__name__, exc)\n"
    )
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert shown.stdout.startswith("MissingDependencyError tf1infer.spark needs pyspark"), shown.stdout + shown.stderr
    assert "pip install 'tf1infer[spark]'" in shown.stdout


def test_workers_that_would_start_another_python_are_refused_in_words(spark, tmp_path, monkeypatch):
    # A real second interpreter without this environment's packages: what workers start when the driver runs in a
    # virtualenv that is not on PATH and PYSPARK_PYTHON is unset (PySpark then starts the python3 on PATH).
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True, timeout=120)
    bare_python = str(bare / "bin" / "python")
    monkeypatch.setattr(spark.sparkContext, "pythonExec", bare_python)  # What PySpark read from PYSPARK_PYTHON.
    with pytest.raises(MissingDependencyError) as raised:
        predict_udf(zoo_path("mlp"))
    message = str(raised.value)
    assert f"Spark's workers would start {bare_python}, not this driver's Python ({sys.executable})" in message
    assert "cannot import tf1infer, tensorflow, numpy, pandas, pyarrow, pyspark" in message
    assert f"set PYSPARK_PYTHON={sys.executable}" in message

    with pytest.raises(MissingDependencyError, match=r"would start 'no-such-python3'.*not found; set PYSPARK_PYTHON="):
        check_worker_python("local[2]", "no-such-python3")
    check_worker_python("local[2]", sys.executable)  # The driver's own Python: nothing to check.
    check_worker_python("spark://cluster:7077", bare_python)  # A cluster's workers are not visible from here.
