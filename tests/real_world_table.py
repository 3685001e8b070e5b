"""The real-world corpus's figures as a table: `.venv/bin/python tests/real_world_table.py [NAME ...]`.

For each file of legacy_models/real_world/ (tests/test_real_world_keras.py checks the same things and asserts
them): its independent reference's deviation from the float32 session and from the float64 twin of the graph, the
session's own deviation from float64, and the SavedModel and Keras 3 (TensorFlow / JAX) exports' deviations from
float64, each export verified as the tests verify it. Prints a Markdown table.
"""

from __future__ import annotations

import os
import sys
import tempfile

import numpy as np

sys.path[:0] = [os.path.dirname(os.path.abspath(__file__))]
import test_real_world_keras as corpus  # noqa: E402 - the tests' own references and rows.

import tf1infer  # noqa: E402


def figures(name: str) -> dict:
    entry = corpus.ENTRIES[name]
    path = corpus.REAL_WORLD / entry["path"]
    row: dict = {"name": name, "entry": entry, "reference": corpus._reference_kind(entry)}
    with tf1infer.load(path) as predictor:
        _, reference, session, exact = corpus.run_against_reference(name, predictor)
    row["session"] = max(float(np.abs(s - x).max()) for s, x in zip(session, exact))
    row["scale"] = max(float(np.abs(x).max()) for x in exact)
    if reference is not None:
        row["vs_session"] = max(float(np.abs(np.float32(r) - s).max()) for r, s in zip(reference, session))
        row["vs_float64"] = max(float(np.abs(np.float64(r) - x).max()) for r, x in zip(reference, exact))
    scratch = tempfile.mkdtemp()
    saved = tf1infer.export_saved_model(path, os.path.join(scratch, "saved"))
    row["saved_model"] = max(error["max_abs_error"] for error in saved.errors.values())
    keras3 = tf1infer.export_keras(path, os.path.join(scratch, "model.keras"), training_step=False)
    row["keras3"] = {b: max(e["max_abs_error"] for e in errors.values()) for b, errors in keras3.backends.items()}
    row["safe_mode"] = keras3.load_with["safe_mode"]
    return row


def _g(value) -> str:
    return f"{value:.2g}"


def main(names: list[str]) -> None:
    print(
        "| file | written by | layers | reference | reference vs float32 / vs float64 | session vs float64 (output "
        "scale) | SavedModel | Keras 3 TF / JAX | safe mode |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name in names or sorted(corpus.ENTRIES):
        row = figures(name)
        entry = row["entry"]
        versus = f"{_g(row['vs_session'])} / {_g(row['vs_float64'])}" if "vs_session" in row else "none"
        keras3 = " / ".join(_g(row["keras3"][b]) if b in row["keras3"] else "left out" for b in ("tensorflow", "jax"))
        print(
            f"| {name} | {entry['written_by']} | {', '.join(entry['layers'])} | {row['reference']} | {versus} | "
            f"{_g(row['session'])} ({_g(row['scale'])}) | {_g(row['saved_model'])} | {keras3} | "
            f"{'yes' if row['safe_mode'] else 'no'} |",
            flush=True,
        )


if __name__ == "__main__":
    main(sys.argv[1:])
