"""The ``tf1infer`` command.

    tf1infer inspect MODEL [--json]    what a model file holds: format, versions, inputs, outputs
    tf1infer demo [MODEL]              load a legacy model, predict, compare with Keras, time both

Errors print one line (``tf1infer: error: ...``) and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from tf1infer.errors import Tf1InferError


def _inspect(args: argparse.Namespace) -> int:
    import tf1infer

    with tf1infer.load(args.model, format=args.format) as predictor:
        report = {
            **{k: v for k, v in predictor.metadata.items()},
            "inputs": [
                {"name": name, "tensor": spec.name, "shape": list(spec.shape) if spec.shape else None, "dtype": str(spec.dtype)}
                for name, spec in zip(predictor.input_names, predictor.inputs)
            ],
            "outputs": [
                {"name": name, "tensor": spec.name, "shape": list(spec.shape) if spec.shape else None, "dtype": str(spec.dtype)}
                for name, spec in zip(predictor.output_names, predictor.outputs)
            ],
        }
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
        elif isinstance(value, list) and value:
            for index, item in enumerate(value):
                print(f"{key if index == 0 else '':<{width}}{item}")
        else:
            print(f"{key:<{width}}{value}")
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
    inspect.add_argument("--format", help="force the format instead of detecting it")
    inspect.add_argument("--json", action="store_true", help="machine-readable output")
    inspect.set_defaults(run=_inspect)
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
