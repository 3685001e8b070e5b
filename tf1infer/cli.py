"""The ``tf1infer`` command.

    tf1infer inspect MODEL [--json] [load options]
                                       what a model file holds: format, recorded versions, inputs,
                                       outputs, signatures, Lambda layers, parameter count
    tf1infer export MODEL OUT_DIR [--atol A] [--sample-input F] [--overwrite] [load options]
                                       a TF2 SavedModel, verified against the original
    tf1infer demo [MODEL]              load a legacy model, predict, compare with Keras, time both

Errors print one line (``tf1infer: error: ...``) and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Sequence

from tf1infer.errors import Tf1InferError, UnsafeModelError


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
        {"name": name, "tensor": spec.name, "shape": list(spec.shape) if spec.shape is not None else None, "dtype": str(spec.dtype)}
        for name, spec in zip(names, specs)
    ]


def _inspect(args: argparse.Namespace) -> int:
    import tf1infer
    from tf1infer.loaders import describe_without_loading

    options = _load_options(args)
    try:
        with tf1infer.load(args.model, format=args.format, **options) as predictor:
            report = {
                **predictor.metadata,
                "inputs": _spec_rows(predictor.input_names, predictor.inputs),
                "outputs": _spec_rows(predictor.output_names, predictor.outputs),
            }
    except UnsafeModelError as exc:
        # Still say what the file holds, read without running its code, and why it was not loaded.
        report = describe_without_loading(args.model, args.format, **options) or {}
        report["loaded"] = False
        report["why_not_loaded"] = str(exc)
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
        return 0
    width = max(len(key) for key in report) + 2
    for key, value in report.items():
        if key in ("inputs", "outputs"):
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
    from tf1infer.export import export_saved_model

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


def _demo(args: argparse.Namespace) -> int:
    from tf1infer.demo import run_demo

    run_demo(args.model)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tf1infer", description="Run legacy TensorFlow 1.x / Keras models fast.")
    commands = parser.add_subparsers(dest="command", required=True)
    inspect = commands.add_parser("inspect", help="show a model's format, versions, inputs and outputs")
    inspect.add_argument("model", help="model file or directory")
    inspect.add_argument("--json", action="store_true", help="machine-readable output")
    _add_load_options(inspect)
    inspect.set_defaults(run=_inspect)
    export = commands.add_parser("export", help="export a model to a verified TF2 SavedModel")
    export.add_argument("model", help="model file or directory")
    export.add_argument("out_dir", help="the SavedModel directory to write")
    export.add_argument("--atol", type=float, default=1e-5, help="absolute tolerance of the verification (default: %(default)g)")
    export.add_argument("--rtol", type=float, default=1e-4, help="relative tolerance of the verification (default: %(default)g)")
    export.add_argument("--sample-input", help="real inputs to verify with: .npy, or .npz with one array per input name")
    export.add_argument("--overwrite", action="store_true", help="replace OUT_DIR once the new export is verified")
    export.add_argument("--signature-name", default="serving_default", help="name of the exported signature (default: %(default)s)")
    export.add_argument("--all-signatures", action="store_true", help="also export a SavedModel's other predict-style signatures")
    export.add_argument("--no-verify", action="store_true", help="skip the comparison with the original (not recommended)")
    _add_load_options(export)
    export.set_defaults(run=_export)
    demo = commands.add_parser("demo", help="predict with a legacy model through tf1infer and Keras, and time both")
    demo.add_argument("model", nargs="?", default="legacy_models/mlp.h5", help="a Keras .h5 model (default: %(default)s)")
    demo.set_defaults(run=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except Tf1InferError as exc:
        print(f"tf1infer: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
