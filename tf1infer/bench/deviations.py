"""Per model: the float32 session's deviation from float64, and each converted runtime's, as verification measures them.

``python -m tf1infer.bench.deviations [--markdown]`` (``make deviations``) loads every
model of the repository's fixtures (the zoo, the Keras 1 and Keras 3 fixtures,
the TF1 formats) and of ``../shared/corpus`` (the Lambda files with their
training code's functions), and for each runs the checks tf1infer makes:
the TF Lite backend at load, ``export_saved_model`` and ``export_keras`` (Keras
models; TensorFlow and, where installed and exact, JAX), each verified on the
verification batches against the frozen graph in float64. It prints, per model,
the float32 session's deviation from float64 and each candidate's (largest over
its outputs, as ``candidate (session)``: each check runs its own rows), or why a
candidate was refused or left out. Run it under each kernel family
(``TF_ENABLE_ONEDNN_OPTS=0`` and ``=1``): the figures are the machine's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ZOO = os.path.join(ROOT, "legacy_models")
CORPUS = os.path.join(ROOT, "..", "shared", "corpus")


def _cases() -> list[tuple[str, str, dict[str, Any], bool]]:
    """(name, path, load options, whether it is a Keras model) for every model measured."""
    sys.path.insert(0, ZOO)
    import tensorflow as tf
    import zoo_layers

    keras3_objects = {}
    try:
        import zoo_layers_keras3

        keras3_objects = {"Scale": zoo_layers_keras3.Scale}
    except ImportError:  # Keras 2 only (TensorFlow 2.15): no Keras 3 export anyway.
        pass
    special: dict[str, dict[str, Any]] = {
        "custom_layer": {"custom_objects": {"Scale": zoo_layers.Scale}, "keras3_custom_objects": keras3_objects},
        "lambda": {"lambdas": {"affine": lambda x: x * 2.0 + 1.0}},
        "lambda_resize": {
            "lambdas": {"resize": lambda t: tf.compat.v1.image.resize_images(t, (20, 20), align_corners=True)}
        },
    }
    cases: list[tuple[str, str, dict[str, Any], bool]] = []
    for file in sorted(os.listdir(ZOO)):
        if file.endswith(".h5"):
            name = file[:-3]
            cases.append((f"zoo {name}", os.path.join(ZOO, file), special.get(name, {}), True))
    for file in sorted(os.listdir(os.path.join(ZOO, "keras1"))):
        if file.endswith(".h5"):
            cases.append((f"keras1 {file[:-3]}", os.path.join(ZOO, "keras1", file), {}, True))
    for file in sorted(os.listdir(os.path.join(ZOO, "keras3"))):
        options = {"safe_mode": False} if "lambda" in file else {}
        cases.append((f"keras3 {file[:-6]}", os.path.join(ZOO, "keras3", file), options, True))
    tf1 = os.path.join(ZOO, "tf1")
    graph_outputs = {"outputs": ["logits", "probs"]}
    cases += [
        ("tf1 saved_model", os.path.join(tf1, "saved_model"), {}, False),
        ("tf1 tf2_saved_model", os.path.join(tf1, "tf2_saved_model"), {}, False),
        ("tf1 meta_v2", os.path.join(tf1, "meta_v2"), graph_outputs, False),
        ("tf1 frozen.pb", os.path.join(tf1, "frozen.pb"), graph_outputs, False),
        (
            "tf1 keras_json",
            os.path.join(tf1, "keras_arch.json"),
            {"weights": os.path.join(tf1, "keras_weights.h5")},
            True,
        ),
    ]
    cases += _corpus_cases()
    return cases


def _corpus_cases() -> list[tuple[str, str, dict[str, Any], bool]]:
    manifest = os.path.join(CORPUS, "MANIFEST.json")
    if not os.path.exists(manifest):
        return []
    from corpus_lambdas import LAMBDAS as lambdas  # legacy_models/: the training code's functions.

    options = {"tfserving_bad_half_plus_two": {"inputs": ["Placeholder:0"], "outputs": ["Add:0"]}}
    with open(manifest, encoding="utf-8") as handle:
        entries = json.load(handle)["entries"]
    cases = []
    for entry in entries:
        name, path = entry["name"], os.path.join(CORPUS, entry["path"])
        keras = entry["format"].startswith("keras")
        load_options = {"lambdas": lambdas[name]} if name in lambdas else options.get(name, {})
        if entry["format"] == "keras-h5-lambda" and name not in lambdas:
            continue
        cases.append((f"corpus {name}", path, load_options, keras))
    return cases


def _worst(errors: dict[str, dict[str, Any]]) -> str:
    """``"candidate (session)"``: the largest max_abs_error and float32_session_error over a verification's outputs."""
    candidate = max((figures["max_abs_error"] for figures in errors.values()), default=0.0)
    sessions = [
        figures["float32_session_error"]
        for figures in errors.values()
        if figures.get("float32_session_error") is not None
    ]
    return f"{candidate:.2g} ({max(sessions):.2g})" if sessions else f"{candidate:.2g} (no float64)"


def _reason(exc: BaseException) -> str:
    return f"refused: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}"


def measure(name: str, path: str, options: dict[str, Any], keras: bool) -> dict[str, Any]:
    import tf1infer
    from tf1infer.export.keras3 import available_backends, keras3_available

    row: dict[str, Any] = {"model": name}
    keras3_options = {k: options[k] for k in ("keras3_custom_objects",) if k in options}
    load_options = {k: v for k, v in options.items() if k != "keras3_custom_objects"}
    try:
        with tf1infer.load(path, backend="tflite", **load_options) as predictor:
            backend_report = predictor.backend_report
            if backend_report.get("deviations"):
                row["tflite"] = _worst(backend_report["deviations"])
            else:
                row["tflite"] = f"falls back: {backend_report.get('fallback_reason', '?')[:160]}"
    except Exception as exc:  # A row of the table, whatever went wrong.
        row["tflite"] = _reason(exc)
    with tempfile.TemporaryDirectory() as scratch:
        try:
            report = tf1infer.export_saved_model(path, os.path.join(scratch, "saved"), **load_options)
            row["saved_model"] = _worst(report.errors)
            if report.float64_unavailable:
                row["saved_model"] += f": {report.float64_unavailable}"
        except Exception as exc:
            row["saved_model"] = _reason(exc)
        if keras and keras3_available():
            try:
                keras_report = tf1infer.export_keras(
                    path, os.path.join(scratch, "model.keras"), training_step=False, **load_options, **keras3_options
                )
                for backend in available_backends():
                    if backend in keras_report.backends:
                        row[f"keras3_{backend}"] = _worst(keras_report.backends[backend])
                    else:
                        row[f"keras3_{backend}"] = keras_report.backends_skipped.get(backend, "not checked")[:160]
            except Exception as exc:
                row["keras3_tensorflow"] = _reason(exc)
    return row


def _cell(value: Any) -> str:
    return f"{value:.2g}" if isinstance(value, float) else str(value if value is not None else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="models whose name contains this")
    args = parser.parse_args(argv)
    import tensorflow as tf

    from tf1infer.runtime.kernels import onednn_enabled

    print(f"TensorFlow {tf.__version__}, oneDNN kernels {'on' if onednn_enabled() else 'off'}", flush=True)
    columns = ["model", "tflite", "saved_model", "keras3_tensorflow", "keras3_jax"]
    print("| " + " | ".join(columns) + " |")
    print("|" + " --- |" * len(columns))
    started = time.perf_counter()
    for name, path, options, keras in _cases():
        if args.only and args.only not in name:
            continue
        row = measure(name, path, options, keras)
        print("| " + " | ".join(_cell(row.get(column)) for column in columns) + " |", flush=True)
    print(f"({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
