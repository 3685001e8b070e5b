"""The ``tf1infer`` command.

    tf1infer inspect MODEL [--json] [--precision] [load options]
                                       what a model file holds: format, recorded versions, inputs,
                                       outputs, signatures, Lambda layers, parameter count; with
                                       --precision, the deviation of bfloat16 and float16 from float32
    tf1infer export MODEL OUT_DIR [--atol A] [--sample-input F] [--overwrite] [load options]
                                       a TF2 SavedModel, verified against the original
    tf1infer export MODEL OUT.keras [--backends tensorflow,jax] [--no-training-step] [...]
                                       a Keras model as a native Keras 3 .keras file, verified in fresh
                                       Keras 3 processes (--to keras for another file name)
    tf1infer predict MODEL INPUT -o OUT [--batch-size N|auto] [--precision P] [--backend B] [--calibration SAMPLES]
                     [--resume] [--quiet] [load options]
                                       stream INPUT (.npy, .npz, .h5 or an image folder) through the model
                                       into OUT (.npy or .h5), with a progress bar on a terminal
    tf1infer predict MODEL IN.parquet -o OUT.parquet --spark MASTER [--columns A,B] [--batch-size N]
                                       the same on Apache Spark: Parquet in, Parquet out (needs the spark extra)
    tf1infer serve [NAME=]MODEL ... [--rest-port 8501] [--grpc-port 8500] [--host H] [--max-batch-size N]
                   [--batch-timeout-micros U] [--max-queued-requests Q] [--all-versions] [load options]
                                       serve the models over TensorFlow Serving's REST and gRPC APIs and
                                       the Open Inference Protocol (KServe V2, on the same ports),
                                       micro-batched, until SIGTERM or Ctrl-C (needs the serve extra)
    tf1infer demo [MODEL]              load a legacy model, predict, compare with Keras, time both
    tf1infer kernels [--json] [--other]
                                       TensorFlow's CPU kernel family here (oneDNN on or off) and the
                                       CPU's vector extensions; --other: the TF_ENABLE_ONEDNN_OPTS value
                                       that selects the other family
    tf1infer --version                 tf1infer's, TensorFlow's, Keras's and numpy's versions, and the kernel family

TensorFlow's C++ log (CUDA probing, CPU features, MLIR passes: lines printed when TensorFlow starts) is
hidden unless ``--verbose`` is given or ``TF_CPP_MIN_LOG_LEVEL`` is set.
Errors print one line (``tf1infer: error: ...``) and exit with status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from tf1infer.errors import InvalidOptionError, Tf1InferError, UnsafeModelError


def _load_options(args: argparse.Namespace) -> dict[str, Any]:
    """The format options given on the command line (only those given: each format takes its own)."""
    options: dict[str, Any] = {}
    for name in ("signature", "checkpoint", "weights", "architecture"):
        if getattr(args, name, None) is not None:
            options[name] = getattr(args, name)
    for name in ("tags", "inputs", "outputs"):
        if getattr(args, name, None) is not None:
            options[name] = [item for item in getattr(args, name).split(",") if item]
    return options


def _add_load_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("load options (each format takes its own; see the README)")
    group.add_argument("--format", help="force the format instead of detecting it")
    group.add_argument("--tags", help="SavedModel tag set, comma-separated (default: serve)")
    group.add_argument("--signature", help="SavedModel or meta graph signature (default: serving_default)")
    group.add_argument("--inputs", help="meta graph / frozen graph input tensor or op names, comma-separated")
    group.add_argument("--outputs", help="meta graph / frozen graph output tensor or op names, comma-separated")
    group.add_argument("--checkpoint", help="meta graph checkpoint prefix")
    group.add_argument("--weights", help="weights .h5 for a Keras JSON architecture")
    group.add_argument("--architecture", help="JSON architecture for a weights-only .h5")


def _spec_rows(names, specs) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "tensor": spec.name,
            "shape": list(spec.shape) if spec.shape is not None else None,
            "dtype": str(spec.dtype),
        }
        for name, spec in zip(names, specs)
    ]


def _inspect(args: argparse.Namespace) -> int:
    import tf1infer
    from tf1infer.export.keras3 import keras3_export_summary
    from tf1infer.loaders import describe_without_loading

    options = _load_options(args)
    try:
        with tf1infer.load(args.model, format=args.format, **options) as predictor:
            report = {
                **predictor.metadata,
                "inputs": _spec_rows(predictor.input_names, predictor.inputs),
                "outputs": _spec_rows(predictor.output_names, predictor.outputs),
            }
            report["keras3_export"] = keras3_export_summary(predictor)
            if args.precision:
                report["precision_report"] = predictor.precision_report(samples=args.calibration_samples)
    except UnsafeModelError as exc:
        # Still say what the file holds, read without running its code, and why it was not loaded.
        report = describe_without_loading(args.model, args.format, **options) or {}
        report["loaded"] = False
        report["why_not_loaded"] = str(exc)
        report["keras3_export"] = ["once loaded: supply the Lambda functions with lambdas= (Python API)"]
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
        return 0
    width = max(len(key) for key in report) + 2
    for key, value in report.items():
        if key == "precision_report":
            print(f"{'precision':<{width}}deviation from float32 on {value['calibration_samples']} random samples:")
            for name, entry in value["precisions"].items():
                if "unavailable" in entry:
                    print(f"{'':<{width}}  {name}: unavailable: {entry['unavailable']}")
                else:
                    print(
                        f"{'':<{width}}  {name}: max abs {entry['max_abs']:.3g}, max rel {entry['max_rel']:.3g}, "
                        f"{entry['ms_per_batch']:.3g} ms per batch"
                    )
        elif key in ("inputs", "outputs"):
            for item in value:
                shape = tuple(item["shape"]) if item["shape"] is not None else "unknown shape"
                print(f"{key[:-1]:<{width}}{item['name']}: {shape} {item['dtype']} (tensor {item['tensor']})")
        elif (isinstance(value, list) and value) or (isinstance(value, str) and "\n" in value):
            for index, item in enumerate(value if isinstance(value, list) else value.splitlines()):
                print(f"{key if index == 0 else '':<{width}}{item}")
        else:
            print(f"{key:<{width}}{value}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from tf1infer.export.saved_model import export_saved_model

    target = args.to or ("keras" if args.out_dir.endswith(".keras") else "saved-model")
    if target == "keras":
        return _export_keras(args)
    if args.backends or args.no_training_step:
        raise InvalidOptionError(
            "--backends and --no-training-step apply to the Keras 3 export (--to keras, or OUT ending in .keras)"
        )
    report = export_saved_model(
        args.model,
        args.out_dir,
        signature_name=args.signature_name,
        verify=not args.no_verify,
        atol=args.atol,
        rtol=args.rtol,
        sample_inputs=args.sample_input,
        overwrite=args.overwrite,
        all_signatures=args.all_signatures,
        **({"format": args.format} if args.format else {}),
        **_load_options(args),
    )
    print(report)
    return 0


def _export_keras(args: argparse.Namespace) -> int:
    from tf1infer.export.keras3 import export_keras

    if args.signature_name != "serving_default" or args.all_signatures:
        raise InvalidOptionError(
            "--signature-name and --all-signatures apply to the SavedModel export, not to --to keras"
        )
    report = export_keras(
        args.model,
        args.out_dir,
        verify=not args.no_verify,
        atol=args.atol,
        rtol=args.rtol,
        sample_inputs=args.sample_input,
        overwrite=args.overwrite,
        backends=[item for item in args.backends.split(",") if item] if args.backends else None,
        training_step=not args.no_training_step,
        **({"format": args.format} if args.format else {}),
        **_load_options(args),
    )
    print(report)
    return 0


def _predict(args: argparse.Namespace) -> int:
    import logging

    # Skipped inputs and other warnings on the console as they happen, whatever the root logger does.
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter("tf1infer: warning: %(message)s"))
    console.setLevel(logging.WARNING)
    package_logger = logging.getLogger("tf1infer")
    package_logger.addHandler(console)
    try:
        return _run_predict(args)
    finally:
        package_logger.removeHandler(console)


def _run_predict(args: argparse.Namespace) -> int:
    import tf1infer

    if args.spark:
        return _run_spark_predict(args)
    if args.columns:
        raise InvalidOptionError("--columns is for Parquet input with --spark")
    batch_size = args.batch_size if args.batch_size == "auto" else _positive_int("--batch-size", args.batch_size)
    memory_limit = _memory_limit(args.memory_limit) if args.memory_limit is not None else None
    options = {**_load_options(args), **({"format": args.format} if args.format else {})}
    calibration = _calibration(args) if args.calibration else None
    with tf1infer.load(
        args.model, precision=args.precision, backend=args.backend, calibration=calibration, **options
    ) as predictor:
        if args.backend != "session":
            report = predictor.backend_report
            reason = report.get("fallback_reason")
            quantized = (
                f", int8 calibrated on {report['calibration_rows']} samples"
                if report.get("precision") == "int8"
                else ""
            )
            print(f"backend: {predictor.backend}{quantized}" + (f" (TF Lite fell back: {reason})" if reason else ""))
        with _open_input(args, predictor) as source:
            summary = predictor.predict_to(
                args.output,
                source,
                batch_size=batch_size,
                prefetch=args.prefetch,
                memory_limit=memory_limit,
                resume=args.resume,
                verbose=0 if args.quiet or not sys.stdout.isatty() else 1,
            )
    print(summary)
    return 0


def _run_spark_predict(args: argparse.Namespace) -> int:
    """``predict --spark MASTER``: Parquet in, Parquet out, scored by one Predictor per Spark Python worker."""
    if args.batch_size == "auto":
        raise InvalidOptionError("--batch-size auto is for local runs; give a number of rows with --spark")
    if args.resume or args.memory_limit or args.calibration:
        raise InvalidOptionError("--resume, --memory-limit and --calibration are for local runs, not --spark")
    from tf1infer.spark import predict_parquet

    options = {**_load_options(args), **({"format": args.format} if args.format else {})}
    if args.precision != "float32":
        options["precision"] = args.precision
    if args.backend != "session":
        options["backend"] = args.backend
    columns = [name.strip() for name in args.columns.split(",")] if args.columns else None
    summary = predict_parquet(
        args.model,
        args.input,
        args.output,
        master=args.spark,
        columns=columns,
        batch_size=_positive_int("--batch-size", args.batch_size),
        quiet=args.quiet or not sys.stdout.isatty(),
        **options,
    )
    print(
        f"wrote {summary['rows']} rows to {summary['output']} in {summary['seconds']:.1f} s "
        f"({summary['rows_per_second']} rows/s on {args.spark}; model loaded {summary['model_loads']} time(s) on executors)"
    )
    return 0


def _calibration(args: argparse.Namespace) -> Any:
    """``--calibration``'s samples: an array, arrays by input name, or an image folder read like INPUT's."""
    import numpy as np

    import tf1infer
    from tf1infer.errors import InputError

    path = args.calibration
    if os.path.isdir(path):
        return tf1infer.images(
            path, size=_size(args.size), color=args.color, rescale=args.rescale, interpolation=args.interpolation
        )
    extension = os.path.splitext(path)[1].lower()
    try:
        if extension == ".npy":
            return np.load(path, allow_pickle=False)
        if extension == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                return {key: archive[key] for key in archive.files}
        if extension in (".h5", ".hdf5"):
            import h5py

            with h5py.File(path, "r") as file:
                return {key: value[()] for key, value in file.items() if isinstance(value, h5py.Dataset)}
    except (ValueError, OSError) as exc:
        raise InputError(f"{path}: not a readable calibration file ({exc})") from exc
    raise InputError(f"{path}: --calibration must be .npy, .npz, .h5 or an image folder")


@contextlib.contextmanager
def _open_input(args: argparse.Namespace, predictor) -> Iterator[Any]:
    """The streaming source for INPUT; an .h5 file stays open (and unread) until the run ends."""
    import numpy as np

    import tf1infer
    from tf1infer.errors import InputError

    path = args.input
    if os.path.isdir(path):
        yield tf1infer.images(
            path,
            size=_size(args.size),
            color=args.color,
            rescale=args.rescale,
            interpolation=args.interpolation,
            labels="inferred" if args.labels else None,
        )
        return
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such input file or image folder")
    extension = os.path.splitext(path)[1].lower()
    if extension == ".npy":
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)  # Memory-mapped: read batch by batch.
        except (ValueError, OSError) as exc:
            raise InputError(f"{path}: not a readable .npy file ({exc})") from exc
        yield array
    elif extension == ".npz":
        try:
            with np.load(path, allow_pickle=False) as archive:
                arrays = {key: archive[key] for key in archive.files}
        except (ValueError, OSError) as exc:
            raise InputError(f"{path}: not a readable .npz file ({exc})") from exc
        yield _by_input_name(path, arrays, predictor)
    elif extension in (".h5", ".hdf5"):
        import h5py

        try:
            file = h5py.File(path, "r")
        except OSError as exc:
            raise InputError(f"{path}: not a readable HDF5 file ({exc})") from exc
        with file:
            datasets = {key: value for key, value in file.items() if isinstance(value, h5py.Dataset)}
            yield _by_input_name(path, datasets, predictor)
    else:
        raise InputError(f"{path}: INPUT must be .npy, .npz, .h5 or an image folder")


def _size(text: str | None) -> tuple[int, int] | None:
    from tf1infer.errors import InputError

    if not text:
        return None
    try:
        height, width = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise InputError(f"--size must be HEIGHTxWIDTH, e.g. 224x224; got {text!r}") from None
    return height, width


def _by_input_name(path: str, arrays: dict, predictor):
    """One array per model input from a file's named arrays (any one name for a one-input model)."""
    from tf1infer.errors import InputError

    names = predictor.input_names
    if len(names) == 1 and names[0] not in arrays:
        if len(arrays) == 1:
            return next(iter(arrays.values()))
        raise InputError(
            f"{path}: holds {', '.join(sorted(arrays)) or 'nothing'}; the model's input is '{names[0]}' "
            "(name an array after it, or keep one array in the file)"
        )
    missing = [name for name in names if name not in arrays]
    if missing:
        raise InputError(
            f"{path}: holds {', '.join(sorted(arrays)) or 'nothing'}; missing the model's input(s) {', '.join(missing)}"
        )
    return {name: arrays[name] for name in names}


def _positive_int(flag: str, text: str) -> int:
    from tf1infer.errors import InputError

    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise InputError(f"{flag} must be a positive integer or 'auto'; got {text!r}")
    return value


_UNITS = {"k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def _memory_limit(text: str) -> int | float:
    """``0.25`` (a fraction of available memory), ``2G``, ``512M`` or bytes."""
    from tf1infer.errors import InputError

    cleaned = text.strip().lower().removesuffix("b").removesuffix("i")
    try:
        if cleaned and cleaned[-1] in _UNITS:
            return int(float(cleaned[:-1]) * _UNITS[cleaned[-1]])
        value = float(cleaned)
        return value if value <= 1 else int(value)
    except ValueError:
        raise InputError(
            f"--memory-limit must be a fraction like 0.25 or a size like 2G or 512M; got {text!r}"
        ) from None


def _demo(args: argparse.Namespace) -> int:
    from tf1infer.cli.demo import DEMO_MODEL, run_demo

    run_demo(args.model or DEMO_MODEL)
    return 0


def _serve(args: argparse.Namespace) -> int:
    from tf1infer.serving import require_serving

    require_serving()
    from tf1infer.serving.models import Batching, ModelConfig
    from tf1infer.serving.server import Limits, Server

    options = {**_load_options(args), **({"format": args.format} if args.format else {})}
    configs = [ModelConfig.parse(text, options) for text in args.models]
    if args.all_versions:
        configs = [ModelConfig(c.name, c.path, c.options, "all") for c in configs]
    server = Server(
        configs,
        host=args.host,
        rest_port=None if args.rest_port < 0 else args.rest_port,
        grpc_port=None if args.grpc_port < 0 else args.grpc_port,
        batching=Batching(
            enabled=not args.no_batching,
            max_batch_size=args.max_batch_size,
            batch_timeout_micros=args.batch_timeout_micros,
            max_queued_requests=args.max_queued_requests,
        ),
        limits=Limits(max_request_bytes=args.max_request_bytes, timeout=args.rest_timeout_ms / 1000.0),
    )
    return server.run()


def _kernels(args: argparse.Namespace) -> int:
    from tf1infer.runtime import kernels

    family = kernels.kernel_family()
    if args.other:
        print("0" if family["onednn"] else "1")
    elif args.json:
        json.dump(family, sys.stdout, indent=2)
        print()
    else:
        print(kernels.describe(family))
    return 0


def versions() -> dict[str, str]:
    """What ``tf1infer --version`` reports: the versions that decide how a model runs here."""
    import platform

    import numpy as np
    import tensorflow as tf

    import tf1infer
    from tf1infer.loaders.keras_versions import keras3_version
    from tf1infer.runtime import kernels

    try:
        import tf_keras

        keras2 = tf_keras.__version__
    except ImportError:
        keras2 = "not installed"
    return {
        "tf1infer": tf1infer.__version__,
        "tensorflow": tf.__version__,
        "tf_keras": keras2,
        "keras 3": keras3_version() or "not installed",
        "numpy": np.__version__,
        "python": platform.python_version(),
        "kernels": kernels.describe(),
    }


class _VersionAction(argparse.Action):
    """``--version``: computed when asked for, since it imports TensorFlow."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        for name, value in versions().items():
            print(f"{name:<11}{value}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    # --verbose is read before parsing (see main); every command accepts it so that it can go anywhere.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--verbose", action="store_true", help="show TensorFlow's C++ log (hidden unless TF_CPP_MIN_LOG_LEVEL is set)"
    )
    parser = argparse.ArgumentParser(
        prog="tf1infer", description="Run legacy TensorFlow 1.x / Keras models fast.", parents=[common]
    )
    parser.add_argument(
        "--version",
        action=_VersionAction,
        help="show the versions of tf1infer, TensorFlow, Keras and numpy, and the kernel family",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    def add_command(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        return commands.add_parser(name, parents=[common], **kwargs)

    inspect = add_command("inspect", help="show a model's format, versions, inputs and outputs")
    inspect.add_argument("model", help="model file or directory")
    inspect.add_argument("--json", action="store_true", help="machine-readable output")
    inspect.add_argument("--precision", action="store_true", help="measure bfloat16 and float16 against float32")
    inspect.add_argument(
        "--calibration-samples", type=int, default=32, help="random samples for --precision (default: %(default)s)"
    )
    _add_load_options(inspect)
    inspect.set_defaults(run=_inspect)
    export = add_command(
        "export", help="export a model to a verified TF2 SavedModel, or a Keras model to a verified Keras 3 .keras file"
    )
    export.add_argument("model", help="model file or directory")
    export.add_argument("out_dir", metavar="OUT", help="the SavedModel directory to write, or a .keras file (Keras 3)")
    export.add_argument(
        "--to",
        choices=("saved-model", "keras"),
        help="the target (default: keras for an OUT ending in .keras, else saved-model)",
    )
    export.add_argument(
        "--backends",
        help="Keras 3 export: backends to verify on, comma-separated (default: tensorflow, and jax where installed)",
    )
    export.add_argument(
        "--no-training-step",
        action="store_true",
        help="Keras 3 export: skip the check that the file takes a training step",
    )
    export.add_argument(
        "--atol",
        type=float,
        help="a fixed absolute tolerance against the float32 session (default: none; the export must be within a "
        "small factor of the session's own deviation from the model run in float64)",
    )
    export.add_argument("--rtol", type=float, help="a fixed relative tolerance (with --atol; default 1e-4 then)")
    export.add_argument(
        "--sample-input",
        help="real inputs to verify with besides the built rows (the best check there is): .npy, or .npz with one array per input name",
    )
    export.add_argument("--overwrite", action="store_true", help="replace OUT_DIR once the new export is verified")
    export.add_argument(
        "--signature-name", default="serving_default", help="name of the exported signature (default: %(default)s)"
    )
    export.add_argument(
        "--all-signatures", action="store_true", help="also export a SavedModel's other predict-style signatures"
    )
    export.add_argument(
        "--no-verify", action="store_true", help="skip the comparison with the original (not recommended)"
    )
    _add_load_options(export)
    export.set_defaults(run=_export)
    predict = add_command("predict", help="stream inputs through a model into an .npy or .h5 file")
    predict.add_argument("model", help="model file or directory")
    predict.add_argument(
        "input",
        help=".npy, .npz (an array per input name), .h5 (a dataset per input name), an image folder, or Parquet with --spark",
    )
    predict.add_argument(
        "-o", "--output", required=True, help="the .npy or .h5 file to write (a Parquet dataset with --spark)"
    )
    predict.add_argument("--batch-size", default="32", help="rows per run, or 'auto' (default: %(default)s)")
    predict.add_argument(
        "--memory-limit", help="for --batch-size auto: a fraction of available memory (default 0.25) or a size (2G)"
    )
    predict.add_argument(
        "--precision",
        default="float32",
        choices=["float32", "bfloat16", "float16", "int8"],
        help="int8 needs --backend tflite and --calibration (default: %(default)s)",
    )
    predict.add_argument(
        "--calibration",
        metavar="SAMPLES",
        help="for --precision int8: real input samples (.npy, .npz or .h5 by input name, or an image "
        "folder read with the image options below); at most 500 are used",
    )
    predict.add_argument(
        "--backend",
        default="session",
        choices=["session", "tflite", "auto"],
        help="TF1 session, TF Lite on XNNPACK (verified at load) or the faster per batch size (default: %(default)s)",
    )
    predict.add_argument("--prefetch", type=int, default=2, help="batches read ahead (default: %(default)s)")
    predict.add_argument("--resume", action="store_true", help="continue an interrupted .h5 run from OUTPUT.partial")
    predict.add_argument(
        "--quiet", action="store_true", help="no progress bar (there is none when stdout is not a terminal)"
    )
    spark = predict.add_argument_group("Apache Spark (pip install 'tf1infer[spark]')")
    spark.add_argument(
        "--spark",
        metavar="MASTER",
        help="score a Parquet INPUT into a Parquet OUTPUT on Spark, e.g. local[4] or spark://host:7077",
    )
    spark.add_argument(
        "--columns", help="input columns in model input order, comma-separated (default: the model's input names)"
    )
    images = predict.add_argument_group("image folders")
    images.add_argument("--size", help="HEIGHTxWIDTH to resize to (default: the model input's)")
    images.add_argument(
        "--color", choices=["rgb", "grayscale", "rgba"], help="(default: from the model input's channels)"
    )
    images.add_argument("--rescale", type=float, help="multiply pixel values (0-255) by this, e.g. 0.00392156862745098")
    images.add_argument("--interpolation", default="nearest", help="resize method (default: %(default)s, as Keras)")
    images.add_argument("--labels", action="store_true", help="subfolders are classes: write each row's class index")
    _add_load_options(predict)
    predict.set_defaults(run=_predict)
    demo = add_command("demo", help="predict with a legacy model through tf1infer and Keras, and time both")
    demo.add_argument(
        "model", nargs="?", default=None, help="a Keras .h5 model (default: the small MLP that comes with tf1infer)"
    )
    demo.set_defaults(run=_demo)

    serve = add_command(
        "serve",
        help="serve models over TensorFlow Serving's REST and gRPC APIs and the Open Inference Protocol (KServe V2) "
        "(needs the serve extra)",
    )
    serve.add_argument(
        "models",
        nargs="+",
        metavar="MODEL",
        help="NAME=PATH or PATH (named after the file); a TF Serving base path serves its highest numbered version",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s, this machine only)")
    serve.add_argument(
        "--rest-port", type=int, default=8501, help="REST port (default: %(default)s; 0: any free; -1: none)"
    )
    serve.add_argument(
        "--grpc-port", type=int, default=8500, help="gRPC port (default: %(default)s; 0: any free; -1: none)"
    )
    serve.add_argument("--all-versions", action="store_true", help="serve every numbered version, not only the highest")
    serve.add_argument("--max-batch-size", type=int, default=32, help="rows per gathered run (default: %(default)s)")
    serve.add_argument(
        "--batch-timeout-micros",
        type=int,
        default=1000,
        help="how long an idle model waits for more requests to gather (default: %(default)s)",
    )
    serve.add_argument(
        "--max-queued-requests",
        type=int,
        default=1024,
        help="requests that may wait per signature; more are answered 503 (default: %(default)s)",
    )
    serve.add_argument("--no-batching", action="store_true", help="run each request on its own")
    serve.add_argument(
        "--max-request-bytes",
        type=int,
        default=64 * 2**20,
        help="largest request body or gRPC message (default: %(default)s; 413 / RESOURCE_EXHAUSTED beyond)",
    )
    serve.add_argument(
        "--rest-timeout-ms", type=int, default=30000, help="REST request deadline (default: %(default)s; 504 beyond)"
    )
    _add_load_options(serve)
    serve.set_defaults(run=_serve)

    kernels = add_command("kernels", help="TensorFlow's CPU kernel family here and the CPU's vector extensions")
    kernels.add_argument("--json", action="store_true", help="machine-readable output")
    kernels.add_argument(
        "--other", action="store_true", help="print the TF_ENABLE_ONEDNN_OPTS value of the other family"
    )
    kernels.set_defaults(run=_kernels)
    return parser


def hush_tensorflow() -> None:
    """Import TensorFlow with its C++ start-up log hidden, unless the user chose a log level.

    TensorFlow reads ``TF_CPP_MIN_LOG_LEVEL`` once, when it is imported; lines it prints before
    its logging is set up (CUDA probing) ignore the level, so the import runs with the process's
    standard error sent to a file, which is replayed if the import fails.
    """
    if "TF_CPP_MIN_LOG_LEVEL" in os.environ or "tensorflow" in sys.modules:
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _hides_tensorflow_log(argv: Sequence[str], environ: Mapping[str, str]) -> bool:
    """Whether the command hides TensorFlow's C++ log: unless ``--verbose`` is given or the user chose a level."""
    return "--verbose" not in argv and "TF_CPP_MIN_LOG_LEVEL" not in environ


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if _hides_tensorflow_log(argv, os.environ):
        hush_tensorflow()
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except Tf1InferError as exc:
        print(f"tf1infer: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
