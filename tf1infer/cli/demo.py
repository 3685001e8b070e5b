"""``tf1infer demo``: run a legacy model through tf1infer and through Keras, side by side.

Prints what was loaded, predicts on the model's sample inputs, checks the two
agree, and times the classic ``for x in data: model.predict(x)`` loop against
tf1infer's ``predict_on_batch`` on the same rows.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO

import numpy as np

import tf1infer

# The zoo's MLP (legacy_models/mlp.h5, tf.keras 2 HDF5) and its sample inputs, shipped in the package so that
# `tf1infer demo` runs from an installed wheel; legacy_models/make_zoo.py writes both copies.
DEMO_MODEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "demo_data", "mlp.h5")


def _samples_path(model_path: str) -> str:
    folder, name = os.path.split(model_path)
    return os.path.join(folder, "samples", os.path.splitext(name)[0] + ".npz")


def _per_call_seconds(function, feeds: list, repeats: int) -> float:
    """Median over ``repeats`` passes of the mean time per call over ``feeds``."""
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        for feed in feeds:
            function(feed)
        timings.append((time.perf_counter() - start) / len(feeds))
    return float(np.median(timings))


def run_demo(model_path: str, out: TextIO | None = None, keras_calls: int = 30) -> dict:
    """Load ``model_path`` with tf1infer and tf_keras, compare outputs and per-sample time; print a report (to stdout)."""
    out = out or sys.stdout
    import tf_keras  # Only the comparison needs it; tf1infer itself builds through it in its own graph.

    started = time.perf_counter()
    predictor = tf1infer.load(model_path)
    load_seconds = time.perf_counter() - started
    samples_file = _samples_path(model_path)
    if os.path.isfile(samples_file):
        with np.load(samples_file) as data:
            x = {name: data[name] for name in predictor.input_names}
        relative = os.path.relpath(samples_file)
        source = samples_file if relative.startswith(os.pardir) else relative  # The package's own copy: in full.
    else:
        rng = np.random.default_rng(0)
        x = {
            name: rng.normal(size=(16,) + tuple(d or 7 for d in (spec.shape or ())[1:])).astype(spec.dtype)
            for name, spec in zip(predictor.input_names, predictor.inputs)
        }
        source = "random normal data"
    ordered = [x[name] for name in predictor.input_names]
    feed = ordered[0] if len(ordered) == 1 else ordered
    rows = len(ordered[0])

    keras_model = tf_keras.models.load_model(model_path, compile=False)
    ours = predictor.predict(feed)
    theirs = keras_model.predict(feed, verbose=0)
    pairs = zip(ours, theirs) if isinstance(ours, list) else [(ours, theirs)]
    max_error = max(float(np.max(np.abs(a - b))) for a, b in pairs)

    singles = [[a[i : i + 1] for a in ordered] for i in range(rows)]
    singles = [s[0] if len(s) == 1 else s for s in singles]
    keras_model.predict(singles[0], verbose=0)  # Warm-up: the first call traces a tf.function.
    keras_seconds = _per_call_seconds(
        lambda s: keras_model.predict(s, verbose=0), singles[: min(rows, keras_calls)], repeats=1
    )
    ours_seconds = _per_call_seconds(predictor.predict_on_batch, singles, repeats=50)
    predictor.close()

    print(f"tf1infer {tf1infer.__version__} demo", file=out)
    print(
        f"  model     {model_path} ({predictor.metadata['format']}, written by Keras "
        f"{predictor.metadata.get('keras_version') or '?'}, {predictor.metadata.get('parameters', '?')} parameters)",
        file=out,
    )
    print(f"  loaded in {load_seconds * 1000:.0f} ms into one finalized graph and one persistent session", file=out)
    for label, names, specs in (
        ("input ", predictor.input_names, predictor.inputs),
        ("output", predictor.output_names, predictor.outputs),
    ):
        for name, spec in zip(names, specs):
            print(f"  {label}    {name}: {spec.shape} {spec.dtype} (tensor {spec.name})", file=out)
    print(f"  predicted {rows} rows from {source}; max |tf1infer - keras| = {max_error:.2e}", file=out)
    print("  one sample per call, median time per sample:", file=out)
    print(f"    keras model.predict(x)       {keras_seconds * 1e6:10.0f} us", file=out)
    print(
        f"    tf1infer predict_on_batch(x) {ours_seconds * 1e6:10.0f} us   ({keras_seconds / ours_seconds:.0f}x faster)",
        file=out,
    )
    return {"rows": rows, "max_error": max_error, "keras_seconds": keras_seconds, "tf1infer_seconds": ours_seconds}
