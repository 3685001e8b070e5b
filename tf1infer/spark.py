"""Scale out on Apache Spark: score DataFrames and Parquet datasets with one Predictor per Python worker.

Install with ``pip install 'tf1infer[spark]'`` (pyspark, pandas, pyarrow; Spark
needs a Java runtime). The core of tf1infer never imports this module.

    >>> from tf1infer.spark import predict_udf
    >>> scores = predict_udf("legacy_models/two_in_two_out.h5", batch_size=64)
    >>> df.withColumn("scores", scores("features", "extra")).write.parquet("scored.parquet")

How it works, and why:

- The UDF is an iterator pandas UDF, the mechanism of Spark's own
  ``pyspark.ml.functions.predict_batch_udf``. tf1infer converts the columns
  itself instead of calling ``predict_batch_udf``: there, rows of the wrong
  length or nested arrays fail inside Spark's ``np.vstack`` before any code
  of ours runs, with a NumPy message naming neither the column nor the input.
  Here every column becomes the model input's array with a typed
  :class:`~tf1infer.errors.InputError` naming the input, the partition and
  what was expected and found.
- A Predictor cannot be pickled (it holds a graph and a session), so the UDF
  carries only the model's path and load options; each Python worker loads
  the model on its first task and keeps it in a small per-process cache
  keyed on the path, the file's size and modification time, and the
  options (two models at most; an evicted one is closed). Python workers are
  reused across tasks (``spark.python.worker.reuse``, on by default; with it
  off, every task imports TensorFlow again). ``udf.model_loads`` is a Spark
  accumulator counting the loads on executors.
- Model files reach executors through ``SparkContext.addFile`` (directories
  included): a ``.h5``/``.keras``/``.pb`` file or a SavedModel directory as is,
  a meta graph with the directory holding it (its checkpoint lives there),
  and the ``weights``/``architecture`` files and ``checkpoint`` prefix
  options alike. Pass ``distribute=False`` where the path is on storage that
  every executor mounts at the same place (NFS, ``/dbfs``...).
- Each task's Predictor runs ``spark.task.cpus`` intra-op threads, so that the
  tasks of an executor do not oversubscribe its cores. TensorFlow fixes its
  thread pools at the first session of a process, so the first model a
  worker loads sets them.
"""

from __future__ import annotations

import collections
import math
import os
import re
import shutil
import sys
import threading
import time
import uuid
from dataclasses import dataclass

# pyspark reads the UDF's type hints at run time: it knows typing's Iterator and Union, not collections.abc's or X | Y.
from typing import Any, Iterator, Union  # noqa: UP035

import numpy as np

from tf1infer.errors import (
    InputError,
    InvalidOptionError,
    MissingDependencyError,
    OutputFileError,
    Tf1InferError,
)
from tf1infer.loaders.base import ENDPOINTS_UNKNOWN

DEFAULT_BATCH_SIZE = 64
_CACHE_SIZE = 2
# Load options that name files: shipped to executors beside the model. The checkpoint option is a prefix (files
# beside it share it), so its directory goes.
_FILE_OPTIONS = ("weights", "architecture")
_PREFIX_OPTIONS = ("checkpoint",)


def predict_udf(
    path: str | os.PathLike, *, batch_size: int = DEFAULT_BATCH_SIZE, distribute: bool = True, **load_options: Any
):
    """A Spark UDF that scores rows with the model at ``path``, loaded once per Python worker.

    Call it with one column per model input, in input order (see
    ``udf.input_names``): a numeric column for an input of one value per row,
    else an array column holding each row's sample, flattened or nested
    (``array<float>`` of 4096 values or ``array<array<float>>`` of 64x64 for
    a (64, 64, 1) input). Integer, float and double columns are cast to the
    input's dtype as :meth:`Predictor.predict` casts.

    Args:
        path: the model file or directory, as :func:`tf1infer.load` takes it.
        batch_size: rows per ``sess.run`` inside each task.
        distribute: ship the model to executors with ``SparkContext.addFile``;
            False where ``path`` is on storage every executor sees at the
            same path.
        **load_options: passed to :func:`tf1infer.load` on every worker
            (``intra_op_threads`` defaults to the task's ``spark.task.cpus``).

    Returns:
        The UDF: ``udf(*columns)`` is a Column. One output per row of shape
        ``()`` or ``(1,)`` gives a scalar column, any other a flattened array
        column; several outputs give a struct with one field per output
        (``udf.output_fields``). ``udf.model_loads`` counts the loads on
        executors (an accumulator, read on the driver after an action).

    Raises:
        MissingDependencyError: pyspark, pandas or pyarrow is missing.
        InvalidOptionError: no active Spark session, a bad ``batch_size``, or
            a model input whose sample shape is not fixed.
        ModelLoadError: the model does not load (it is loaded on the driver
            first, to read its inputs and outputs).

    Example:
        >>> spark = SparkSession.builder.master("local[2]").getOrCreate()
        >>> udf = predict_udf("legacy_models/mlp.h5")
        >>> spark.read.parquet("rows.parquet").select(udf("input_1").alias("probs")).show()
    """
    _require_spark_libraries()
    from pyspark.sql import SparkSession
    from pyspark.sql.functions import pandas_udf

    import tf1infer

    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise InvalidOptionError(f"batch_size must be a positive integer, got {batch_size!r}")
    spark = SparkSession.getActiveSession()
    if spark is None:
        raise InvalidOptionError(
            "predict_udf needs an active SparkSession: create one first (SparkSession.builder...getOrCreate())"
        )
    source = os.fspath(path)
    check_worker_python(spark.sparkContext.master, spark.sparkContext.pythonExec)  # type: ignore[arg-type]  # pythonExec is set on a running context
    with tf1infer.load(source, **load_options) as predictor:
        model = _ModelSignature.of(predictor, source)
    reference, options = (
        _ship(spark.sparkContext, source, load_options)
        if distribute
        else (_ModelReference(os.path.abspath(source)), dict(load_options))
    )
    loads = spark.sparkContext.accumulator(0)

    def score(data: Iterator[Any]) -> Iterator[Any]:  # Runs on executors; it carries plain data only.
        return _score(data, reference, options, model, batch_size, loads)

    score.__annotations__ = _iterator_hints()  # How pyspark tells an iterator pandas UDF (as predict_batch_udf).
    udf = pandas_udf(score, model.return_type())  # type: ignore[call-overload]  # pyspark's stubs list no iterator-of-batches overload
    udf.model_loads = loads
    udf.input_names = list(model.input_names)
    udf.output_fields = [field.name for field in model.fields]
    return udf


def predict_parquet(
    model_path: str,
    input_path: str,
    output_path: str,
    *,
    master: str,
    columns: list[str] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    quiet: bool = False,
    **load_options: Any,
) -> dict[str, Any]:
    """Score a Parquet dataset on Spark into a new Parquet dataset (``tf1infer predict ... --spark``).

    The model's inputs are read from the columns named like them (or from
    ``columns``, in input order); every other column is kept beside the
    outputs (ids, labels). The result is written next to ``output_path``
    first and renamed into place once complete: no half-written output.

    Returns:
        ``{"rows", "seconds", "rows_per_second", "output", "model_loads"}``.

    Raises:
        MissingDependencyError: pyspark/pandas/pyarrow or Java is missing.
        InputError: the input cannot be read, or its columns do not fit.
        OutputFileError: ``output_path`` exists or cannot be written.
        Tf1InferError: what a task raised, retyped on the driver.
    """
    if os.path.exists(output_path):
        raise OutputFileError(f"{output_path}: already exists; remove it or choose another output")
    spark = spark_session(master, batch_size=batch_size, quiet=quiet)
    partial = f"{output_path.rstrip('/')}.partial-{uuid.uuid4().hex[:8]}"
    try:
        try:
            frame = spark.read.parquet(input_path)
        except Exception as exc:  # noqa: BLE001 - Spark's AnalysisException and Py4J errors: Spark's own words.
            raise InputError(f"{input_path}: Spark cannot read it as Parquet: {_spark_reason(exc)}") from exc
        udf = predict_udf(model_path, batch_size=batch_size, **load_options)
        chosen = _input_columns(input_path, frame.columns, udf.input_names, columns)
        kept = [name for name in frame.columns if name not in chosen]
        outputs = udf.output_fields
        clashes = sorted(set(outputs) & set(kept))
        if clashes:
            raise InputError(
                f"{input_path}: column(s) {clashes} would be overwritten by the model's outputs of the same names"
            )
        scored = frame.select(*kept, udf(*chosen).alias("__tf1infer_outputs"))
        if len(outputs) == 1:
            scored = scored.withColumnRenamed("__tf1infer_outputs", outputs[0])
        else:
            scored = scored.select(*kept, *(f"__tf1infer_outputs.{name}" for name in outputs))
        began = time.perf_counter()
        try:
            scored.write.parquet(partial)
        except Exception as exc:  # noqa: BLE001 - a task's failure, retyped below.
            raise typed_error(exc, f"{input_path} scored with {model_path}") from exc
        seconds = time.perf_counter() - began
        rows = spark.read.parquet(partial).count()
        os.replace(partial, output_path)
        return {
            "rows": rows,
            "seconds": round(seconds, 3),
            "rows_per_second": round(rows / seconds, 1) if seconds else None,
            "output": output_path,
            "model_loads": udf.model_loads.value,
        }
    finally:
        if os.path.exists(partial):
            shutil.rmtree(partial, ignore_errors=True)


def spark_session(
    master: str, *, batch_size: int = DEFAULT_BATCH_SIZE, quiet: bool = False, app_name: str = "tf1infer"
):
    """A SparkSession on ``master`` set up for tf1infer (workers run this Python; Arrow batches a multiple of ``batch_size``).

    Raises:
        MissingDependencyError: pyspark/pandas/pyarrow is missing, or no Java
            runtime is found, or Spark's JVM does not start (its reason kept).
    """
    _require_spark_libraries()
    _require_java()
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # Else workers run whatever python3 is on PATH.
    builder = (
        SparkSession.builder.master(master)
        .appName(app_name)
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(batch_size * 16))
        .config("spark.ui.showConsoleProgress", "false" if quiet else "true")
    )
    try:
        spark = builder.getOrCreate()
    except Exception as exc:  # noqa: BLE001 - PySparkRuntimeError (JAVA_GATEWAY_EXITED) and friends.
        raise MissingDependencyError(f"Spark did not start on master {master!r}: {_spark_reason(exc)}") from exc
    # A failing task is logged by the JVM with its whole stack; tf1infer reports it once, typed, instead.
    spark.sparkContext.setLogLevel("OFF" if quiet else "FATAL")
    return spark


def typed_error(exc: BaseException, what: str) -> Tf1InferError:
    """The tf1infer error a Spark task raised, as its own type on the driver (else a Tf1InferError with Spark's reason).

    Spark hands a task's Python exception to the driver as text inside its
    own exception; this finds ``tf1infer.errors.InputError: ...`` there.
    """
    from tf1infer import errors

    text = str(exc)
    found = re.findall(r"tf1infer\.errors\.(\w+): (.+)", text)
    if found:
        name, message = found[-1]
        kind = getattr(errors, name, None)
        if isinstance(kind, type) and issubclass(kind, Tf1InferError):
            return kind(f"{message} (raised in a Spark task)")
    return Tf1InferError(f"{what}: Spark failed: {_spark_reason(exc)}")


# -- the model's shape, as Spark sees it -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Field:
    name: str  # The Spark field name (the output's name, made a valid identifier).
    scalar: bool  # One value per row: shape () or (1,).
    dtype: np.dtype


@dataclass(frozen=True)
class _ModelSignature:
    """What executors need to know of the model without loading it first: plain data, pickled with the UDF."""

    source: str
    input_names: tuple[str, ...]
    input_shapes: tuple[tuple[int, ...], ...]  # Each input's sample shape (no batch axis).
    input_dtypes: tuple[np.dtype, ...]
    fields: tuple[_Field, ...]

    @classmethod
    def of(cls, predictor, source: str) -> _ModelSignature:
        unknown = predictor.metadata.get(ENDPOINTS_UNKNOWN)
        if unknown is not None:  # A training graph: nothing a column could feed.
            raise InvalidOptionError(unknown)
        shapes = []
        for name, spec in zip(predictor.input_names, predictor.inputs):
            if spec.shape is None or any(size is None for size in spec.shape[1:]):
                raise InvalidOptionError(
                    f"{source}: input '{name}' has sample shape {None if spec.shape is None else spec.shape[1:]}; Spark "
                    "columns are scored in batches of fixed-size samples: load the model with fixed input shapes"
                )
            shapes.append(tuple(spec.shape[1:]))
        names, fields = set(), []
        for raw, spec in zip(predictor.output_names, predictor.outputs):
            name = re.sub(r"\W", "_", raw) or "output"
            while name in names:
                name += "_"
            names.add(name)
            sample = None if spec.shape is None else tuple(spec.shape[1:])
            fields.append(_Field(name, sample in ((), (1,)), np.dtype(spec.dtype)))
        return cls(
            source,
            tuple(predictor.input_names),
            tuple(shapes),
            tuple(np.dtype(spec.dtype) for spec in predictor.inputs),
            tuple(fields),
        )

    def return_type(self):
        from pyspark.sql import types

        def spark_type(field: _Field):
            element = _spark_scalar_type(field.dtype, self.source, field.name)
            return element if field.scalar else types.ArrayType(element)

        if len(self.fields) == 1:
            return spark_type(self.fields[0])
        return types.StructType([types.StructField(field.name, spark_type(field)) for field in self.fields])


def _spark_scalar_type(dtype: np.dtype, source: str, name: str):
    from pyspark.sql import types

    by_dtype = {
        "float32": types.FloatType(),
        "float64": types.DoubleType(),
        "float16": types.FloatType(),
        "int8": types.ByteType(),
        "int16": types.ShortType(),
        "int32": types.IntegerType(),
        "int64": types.LongType(),
        "uint8": types.ShortType(),
        "uint16": types.IntegerType(),
        "bool": types.BooleanType(),
    }
    if dtype.name in by_dtype:
        return by_dtype[dtype.name]
    if dtype.kind in "OSU":
        return types.BinaryType()
    raise InvalidOptionError(f"{source}: output '{name}' has dtype {dtype}, which has no Spark column type")


# -- executors' side --------------------------------------------------------------------------------------------


def _iterator_hints() -> dict:
    import pandas as pd

    return {"data": Iterator[Union[pd.Series, pd.DataFrame]], "return": Iterator[pd.DataFrame]}  # noqa: UP007


def _score(
    data: Iterator[Any], reference: _ModelReference, options: dict, model: _ModelSignature, batch_size: int, loads
) -> Iterator[Any]:
    import pandas as pd

    predictor = _worker_predictor(reference, options, loads)
    expected = len(model.input_names)
    for batch in data:
        columns = list(batch) if isinstance(batch, tuple) else [batch]
        if isinstance(batch, pd.DataFrame):  # A struct column arrives as a DataFrame: its fields are not inputs.
            columns = [batch]
        if len(columns) != expected:
            raise InputError(
                f"{model.source}: the UDF takes {expected} column(s), one per model input "
                f"({', '.join(model.input_names)}); it was given {len(columns)}"
            )
        arrays = [
            _column_array(column, name, shape, dtype, model.source)
            for column, name, shape, dtype in zip(columns, model.input_names, model.input_shapes, model.input_dtypes)
        ]
        rows = len(arrays[0])
        outputs = predictor.predict(arrays if expected > 1 else arrays[0], batch_size=batch_size)
        outputs = outputs if isinstance(outputs, list) else [outputs]
        values = {field.name: _column_values(output, field, rows) for field, output in zip(model.fields, outputs)}
        if len(model.fields) == 1:
            yield pd.Series(values[model.fields[0].name])
        else:
            yield pd.DataFrame(values)


def _column_array(column, name: str, shape: tuple[int, ...], dtype: np.dtype, source: str) -> np.ndarray:
    """One pandas column as the input's (rows, *shape) array, or an InputError naming what does not fit."""
    if not hasattr(column, "to_numpy"):
        raise InputError(
            f"{source}: input '{name}' got a {type(column).__name__} column; give a numeric or array column"
        )
    values = column.to_numpy()
    if not shape:  # One value per row.
        if values.dtype == object:
            raise InputError(
                f"{source}: input '{name}' takes one number per row; its column holds {type(values[0]).__name__} values"
                f"{_where()}"
            )
        return values
    size = math.prod(shape)
    rows = []
    for index, value in enumerate(values):
        if value is None:
            raise InputError(f"{source}: input '{name}': row {index} of a batch is null{_where()}")
        flat = _flatten(value)
        if flat.size != size:
            raise InputError(
                f"{source}: input '{name}' takes {size} values per row (a {shape} sample, flattened or nested); "
                f"row {index} of a batch has {flat.size}{_where()}"
            )
        rows.append(flat)
    if not rows:
        return np.zeros((0, *shape), dtype=dtype)
    stacked = np.stack(rows)
    if stacked.dtype == object:
        raise InputError(f"{source}: input '{name}': its column holds non-numeric values{_where()}")
    return stacked.reshape((len(rows), *shape))


def _flatten(value: Any) -> np.ndarray:
    """A row's values, flat: nested arrays (``array<array<float>>``) arrive as object arrays of arrays."""
    array = np.asarray(value)
    if array.dtype != object:
        return array.reshape(-1)
    parts = [_flatten(item) for item in array.reshape(-1) if item is not None]
    if len(parts) != array.size:
        return np.asarray([None], dtype=object)  # A null inside a row: counted as a wrong size, never as a value.
    return np.concatenate(parts) if parts else np.zeros(0)


def _column_values(output: np.ndarray, field: _Field, rows: int):
    if field.scalar:
        return output.reshape(rows)
    return list(output.reshape(rows, -1))


def _where() -> str:
    from pyspark import TaskContext

    context = TaskContext.get()
    return "" if context is None else f" (Spark partition {context.partitionId()})"


_PREDICTORS: collections.OrderedDict[tuple, Any] = collections.OrderedDict()
_PREDICTORS_LOCK = threading.Lock()


def _worker_predictor(reference: _ModelReference, options: dict, loads):
    """This Python worker's Predictor for the model: loaded on first use, then reused by every task."""
    import tf1infer

    path = reference.local_path()
    resolved: dict[str, Any] = {
        key: value.local_path() if isinstance(value, _ModelReference) else value for key, value in options.items()
    }
    if "intra_op_threads" not in resolved and "session_config" not in resolved:
        resolved["intra_op_threads"] = _task_cpus()
    stat = os.stat(path)
    key = (path, stat.st_size, stat.st_mtime_ns, repr(sorted(resolved.items())))
    with _PREDICTORS_LOCK:
        if key in _PREDICTORS:
            _PREDICTORS.move_to_end(key)
            return _PREDICTORS[key]
        predictor = tf1infer.load(path, **resolved)
        loads.add(1)
        _PREDICTORS[key] = predictor
        while len(_PREDICTORS) > _CACHE_SIZE:
            _PREDICTORS.popitem(last=False)[1].close()
        return predictor


def _task_cpus() -> int:
    from pyspark import TaskContext

    context = TaskContext.get()
    return max(1, int(context.cpus())) if context is not None else 1


@dataclass(frozen=True)
class _ModelReference:
    """A path as an executor finds it: as is, or under the directory Spark copied ``addFile`` files to."""

    path: str
    shipped_as: str | None = None  # The name given to addFile.
    inside: str | None = None  # The file inside a shipped directory.

    def local_path(self) -> str:
        if self.shipped_as is None:
            return self.path
        from pyspark import SparkFiles

        root = SparkFiles.get(self.shipped_as)
        return os.path.join(root, self.inside) if self.inside else root


def _ship(context, source: str, options: dict) -> tuple[_ModelReference, dict]:
    """Hand the model and the files its options name to ``SparkContext.addFile``; their references for executors."""
    model_path = os.path.abspath(source)
    if os.path.isfile(model_path) and model_path.endswith(".meta"):
        reference = _add(context, os.path.dirname(model_path), os.path.basename(model_path))
    else:
        reference = _add(context, model_path)
    shipped = dict(options)
    for key in _FILE_OPTIONS:
        if isinstance(options.get(key), (str, os.PathLike)) and os.path.isfile(options[key]):
            shipped[key] = _add(context, os.path.abspath(options[key]))
    for key in _PREFIX_OPTIONS:
        if isinstance(options.get(key), (str, os.PathLike)):
            prefix = os.path.abspath(options[key])
            if os.path.isdir(os.path.dirname(prefix)):
                shipped[key] = _add(context, os.path.dirname(prefix), os.path.basename(prefix))
    return reference, shipped


def _add(context, path: str, inside: str | None = None) -> _ModelReference:
    try:
        context.addFile(path, recursive=os.path.isdir(path))
    except Exception as exc:  # noqa: BLE001 - Py4J's error for a name already shipped from another path.
        raise InvalidOptionError(
            f"{path}: Spark refused to ship it to executors ({_spark_reason(exc)}); give each model file its own name, "
            "or pass distribute=False with a path every executor can read"
        ) from exc
    return _ModelReference(path, os.path.basename(path), inside)


# -- the driver's side ------------------------------------------------------------------------------------------


def _input_columns(
    input_path: str, available: list[str], input_names: list[str], columns: list[str] | None
) -> list[str]:
    chosen = list(columns) if columns else list(input_names)
    if len(chosen) != len(input_names):
        raise InputError(
            f"--columns names {len(chosen)} column(s); the model takes {len(input_names)} input(s) "
            f"({', '.join(input_names)})"
        )
    missing = [name for name in chosen if name not in available]
    if missing:
        how = "" if columns else " (columns are matched to model inputs by name; pass --columns to choose others)"
        raise InputError(f"{input_path}: no column(s) {missing}{how}; it has {available}")
    return chosen


# What a worker's Python needs to run the UDF.
_WORKER_MODULES = ("tf1infer", "tensorflow", "numpy", "pandas", "pyarrow", "pyspark")


def check_worker_python(master: str, python: str) -> None:
    """Fail early, in words, where Spark's local workers would start a Python that cannot run the UDF.

    PySpark starts workers with ``PYSPARK_PYTHON`` as it was when the
    SparkContext was created, else the ``python3`` on PATH: with the driver in
    a virtualenv that is not on PATH, that is another Python, and each task
    dies with "No module named 'pandas'" inside a Java stack trace. Only local
    masters are checked: a cluster's workers run on other machines.

    Raises:
        MissingDependencyError: the workers' Python is missing, or lacks a
            module the UDF needs; the message says what to set.
    """
    if not master.startswith("local"):
        return
    fix = (
        f"set PYSPARK_PYTHON={sys.executable} in the environment before the SparkSession is created "
        f"(or create it with tf1infer.spark.spark_session, which does)"
    )
    found = shutil.which(python)
    if found is None:
        raise MissingDependencyError(
            f"Spark's workers would start {python!r} (PYSPARK_PYTHON, else python3 on PATH), which is not found; {fix}"
        )
    if os.path.abspath(found) == os.path.abspath(sys.executable):
        return
    missing = _missing_modules(found)
    if missing:
        raise MissingDependencyError(
            f"Spark's workers would start {found}, not this driver's Python ({sys.executable}), and it cannot import "
            f"{', '.join(missing)}; {fix}"
        )


def _missing_modules(python: str) -> list[str]:
    """The modules of :data:`_WORKER_MODULES` that ``python`` cannot find (every one, if it does not run)."""
    import subprocess

    probe = (
        "import importlib.util, sys\n"
        f"print(' '.join(m for m in {_WORKER_MODULES!r} if importlib.util.find_spec(m) is None))"
    )
    try:
        # From the root directory: "python -c" puts the working directory first on sys.path, and a driver started
        # in a source checkout would find its packages there where a worker would not.
        result = subprocess.run(
            [python, "-c", probe], capture_output=True, text=True, timeout=60, check=False, cwd=os.sep
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [f"anything ({type(exc).__name__}: {exc})"]
    if result.returncode != 0:
        return [f"anything (it exited with status {result.returncode}: {result.stderr.strip()[-300:]})"]
    return result.stdout.split()


def _require_spark_libraries() -> None:
    try:
        import pandas  # noqa: F401
        import pyarrow  # noqa: F401
        import pyspark  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(
            f"tf1infer.spark needs pyspark, pandas and pyarrow ({exc}): pip install 'tf1infer[spark]'"
        ) from exc


def _require_java() -> None:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and os.path.exists(os.path.join(java_home, "bin", "java")):
        return
    if shutil.which("java"):
        return
    raise MissingDependencyError(
        "Spark needs a Java runtime (Java 17 or 21) and none was found: no java on PATH"
        + (f", and JAVA_HOME={java_home} has no bin/java" if java_home else " and JAVA_HOME is not set")
        + "; install one (e.g. apt-get install openjdk-17-jre-headless) or set JAVA_HOME"
    )


def _spark_reason(exc: BaseException) -> str:
    """Spark's message without the JVM stack trace that follows it."""
    lines = [line for line in str(exc).splitlines() if line.strip() and not line.startswith(("\tat ", "	at "))]
    return " ".join(lines[:6])[:2000] or type(exc).__name__


__all__ = ["predict_udf", "predict_parquet", "spark_session", "typed_error", "DEFAULT_BATCH_SIZE"]
