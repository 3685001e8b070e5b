"""export_saved_model: every fixture format and corpus entry round-trips through a TF2 SavedModel.

Every model is exported (with the built-in verification on), then all exports
are run in one separate Python process that imports only TensorFlow, and each
one's ``serving_default`` outputs are compared with an independent reference:
tf_keras eager predict, the fixtures' numpy formulas, Keras 3's predict, or
the corpus manifest's reference outputs and formulas.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from conftest import (
    CORPUS_DIR,
    CUSTOM_OBJECTS,
    HALF_PLUS,
    KERAS3_MISSING,
    ZOO_DIR,
    ZOO_MODELS,
    assert_held_to_float64,
    case_inputs,
    corpus_entry,
    tf1_formula,
    zoo_path,
)

import tf1infer
from tf1infer.errors import ExportError, ExportVerificationError

ATOL = 1e-5
ROWS = 6


# case id -> (path, load options, how to get the reference outputs)
CASES: dict[str, tuple[Path, dict, str]] = {
    **{f"zoo-{name}": (Path(zoo_path(name)), {"custom_objects": CUSTOM_OBJECTS}, "eager") for name in ZOO_MODELS},
    "zoo-lambda": (ZOO_DIR / "lambda.h5", {"lambdas": {"affine": lambda x: x * 2.0 + 1.0}}, "original"),
    **{
        f"keras1-{name}": (ZOO_DIR / "keras1" / f"{name}.h5", {}, "keras1")
        for name in ("conv_merge", "rnn_sequential", "conv_theano")
    },
    "tf1-saved_model": (ZOO_DIR / "tf1" / "saved_model", {}, "tf1"),
    "tf1-tf2_saved_model": (ZOO_DIR / "tf1" / "tf2_saved_model", {}, "tf1"),
    "tf1-meta_v2": (ZOO_DIR / "tf1" / "meta_v2", {"outputs": ["logits", "probs"]}, "tf1"),
    "tf1-meta_v1": (ZOO_DIR / "tf1" / "meta_v1", {"outputs": ["logits", "probs"]}, "tf1"),
    "tf1-meta_old_version": (ZOO_DIR / "tf1" / "meta_old_version", {"outputs": ["logits", "probs"]}, "tf1"),
    "tf1-frozen_pb": (ZOO_DIR / "tf1" / "frozen.pb", {"outputs": ["logits", "probs"]}, "tf1"),
    "tf1-frozen_pbtxt": (ZOO_DIR / "tf1" / "frozen.pbtxt", {"outputs": ["logits", "probs"]}, "tf1"),
    "tf1-keras_json": (
        ZOO_DIR / "tf1" / "keras_arch.json",
        {"weights": ZOO_DIR / "tf1" / "keras_weights.h5"},
        "eager-mlp",
    ),
}
if not KERAS3_MISSING:  # A .keras file loads only with Keras 3 (TensorFlow 2.16+); test_tf_versions checks the refusal.
    CASES["keras3-two_in_two_out"] = (ZOO_DIR / "keras3" / "two_in_two_out.keras", {}, "keras3")
CORPUS_CASES = {
    "keras205_gender_mini_xception": {},
    "tfserving_saved_model_half_plus_two_cpu": {},
    "tfserving_saved_model_half_plus_three": {},
    "tfserving_bad_half_plus_two": {"inputs": ["Placeholder:0"], "outputs": ["Add:0"]},
}
for _name, _options in CORPUS_CASES.items():
    _entry = corpus_entry(_name)
    if _entry is not None:
        CASES[f"corpus-{_name}"] = (CORPUS_DIR / _entry["path"], _options, "corpus")


def _inputs_for(case_id: str, predictor) -> list[np.ndarray]:
    path, _, kind = CASES[case_id]
    return case_inputs(case_id, path, kind, predictor, ROWS)


def _reference(case_id: str, inputs: list[np.ndarray], original: list[np.ndarray], eager_model) -> list[np.ndarray]:
    path, _, kind = CASES[case_id]
    if kind == "eager":
        return _as_list(eager_model(str(path)).predict(inputs, verbose=0))
    if kind == "eager-mlp":
        return _as_list(eager_model(zoo_path("mlp")).predict(inputs, verbose=0))
    if kind == "keras1":
        stored = np.load(path.with_suffix(".npz"))
        return [stored[key] for key in stored.files if key.startswith("outputs/")]
    if kind == "keras3":
        import keras

        return _as_list(keras.saving.load_model(path).predict(inputs, verbose=0))
    if kind == "tf1":
        expected = tf1_formula(inputs[0])
        return [expected["logits"], expected["probs"]]
    if kind == "corpus":
        entry = corpus_entry(case_id.removeprefix("corpus-"))
        if "output" in entry["reference"]:
            return [np.load(CORPUS_DIR / entry["reference"]["output"])]
        text = next(iter(entry["reference"]["formula"].values()))
        scale, offset = HALF_PLUS[text]
        return [scale * inputs[0] + offset]
    return original  # Lambda model: its load is checked against tf_keras elsewhere; here the export is.


def _as_list(value) -> list[np.ndarray]:
    return value if isinstance(value, list) else [value]


# Runs every export with plain TensorFlow in a fresh process and stores serving_default's outputs.
_RUN_EXPORTS = """
import json, sys
import numpy as np
import tensorflow as tf
jobs = json.loads(sys.argv[1])
for export_dir, inputs_path, outputs_path in jobs:
    loaded = tf.saved_model.load(export_dir)
    stored = np.load(inputs_path)
    outputs = loaded.signatures["serving_default"](**{k: tf.constant(stored[k]) for k in stored.files})
    np.savez(outputs_path, **{k: v.numpy() for k, v in outputs.items()})
leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("tf1infer", "tf_keras"))
print(json.dumps({"leaked": leaked}))
"""


@pytest.fixture(scope="module")
def round_trips(tmp_path_factory):
    """Export every case, then run every export in one TensorFlow-only process."""
    root = tmp_path_factory.mktemp("exports")
    results, jobs = {}, []
    for case_id, (path, options, _) in CASES.items():
        with tf1infer.load(path, **options) as predictor:
            inputs = _inputs_for(case_id, predictor)
            original = _as_list(predictor.predict(inputs))
            report = tf1infer.export_saved_model(predictor, root / case_id)
            names = (list(predictor.input_names), list(predictor.output_names))
        np.savez(root / f"{case_id}.in.npz", **dict(zip(names[0], inputs)))
        jobs.append([str(root / case_id), str(root / f"{case_id}.in.npz"), str(root / f"{case_id}.out.npz")])
        results[case_id] = {"report": report, "inputs": inputs, "original": original, "names": names}
    finished = subprocess.run(
        [sys.executable, "-I", "-c", _RUN_EXPORTS, json.dumps(jobs)],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        check=False,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert json.loads(finished.stdout.strip().splitlines()[-1]) == {"leaked": []}
    for case_id, result in results.items():
        stored = np.load(root / f"{case_id}.out.npz")
        result["exported"] = {key: stored[key] for key in stored.files}
    return results


@pytest.mark.parametrize("case_id", sorted(CASES))
def test_export_round_trip_matches_the_reference(case_id, round_trips, eager_model):
    result = round_trips[case_id]
    input_names, output_names = result["names"]
    report = result["report"]
    assert report.verified and report.samples > 0
    assert_held_to_float64(report.errors, report)
    (signature,) = report.signatures.values()
    assert list(signature["inputs"]) == input_names and list(signature["outputs"]) == output_names
    # Exported outputs carry the original names, dtypes and values.
    assert sorted(result["exported"]) == sorted(output_names)
    expected = _reference(case_id, result["inputs"], result["original"], eager_model)
    for name, want, original in zip(output_names, expected, result["original"]):
        got = result["exported"][name]
        assert got.dtype == original.dtype and got.shape == original.shape
        np.testing.assert_allclose(
            got, np.asarray(want).reshape(got.shape), atol=ATOL, rtol=0, err_msg=f"{case_id}: {name}"
        )


def test_export_keeps_dynamic_batch_integer_inputs_and_variables(round_trips):
    report = round_trips["zoo-embedding"]["report"]
    (signature,) = report.signatures.values()
    assert signature["inputs"] == {"token_ids": {"shape": [None, 12], "dtype": "int32"}}
    # Weights stay variables: all 836 parameters are in the checkpoint, none folded into the graph.
    stored_weights = tf.train.list_variables(os.path.join(report.out_dir, "variables", "variables"))
    assert sum(int(np.prod(shape)) for name, shape in stored_weights if "VARIABLE_VALUE" in name) == 836
    stored = json.loads(Path(report.out_dir, "assets.extra", "tf1infer_export.json").read_text())
    assert stored["errors"] == report.errors and stored["source_format"] == "keras-h5"


def test_saved_model_cli_shows_the_signature(round_trips):
    out_dir = round_trips["zoo-two_in_two_out"]["report"].out_dir
    cli = Path(sys.executable).parent / "saved_model_cli"
    shown = subprocess.run(
        [str(cli), "show", "--dir", out_dir, "--all"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    ).stdout
    assert "signature_def['serving_default']" in shown
    for expected in ("inputs['features']", "inputs['extra']", "outputs['score']", "outputs['probs']", "shape: (-1, 6)"):
        assert expected in shown, expected


@pytest.mark.skipif(corpus_entry("tfserving_saved_model_half_plus_two_cpu") is None, reason="shared corpus absent")
def test_all_signatures_exports_the_predict_style_ones(tmp_path):
    entry = corpus_entry("tfserving_saved_model_half_plus_two_cpu")
    report = tf1infer.export_saved_model(CORPUS_DIR / entry["path"], tmp_path / "all", all_signatures=True)
    assert sorted(report.signatures) == ["regress_x2_to_y3", "serving_default"]
    assert sorted(report.skipped_signatures) == ["classify_x_to_y", "regress_x_to_y", "regress_x_to_y2"]
    saved = tf.saved_model.load(str(tmp_path / "all"))
    x2 = np.array([[1.0], [4.0]], "float32")
    np.testing.assert_allclose(saved.signatures["regress_x2_to_y3"](inputs=tf.constant(x2))["outputs"], 0.5 * x2 + 3.0)
    assert sorted(os.listdir(tmp_path / "all" / "assets")) == ["foo.txt"]  # The source's assets come along.


def test_stateful_signature_is_skipped(tmp_path):
    report = tf1infer.export_saved_model(ZOO_DIR / "tf1" / "saved_model", tmp_path / "out", all_signatures=True)
    assert sorted(report.signatures) == ["logits_only", "serving_default"]
    assert report.skipped_signatures == {"count_calls": "its outputs change variables (stateful)"}


def _leftovers(parent: Path) -> list[str]:
    return sorted(name for name in os.listdir(parent) if "tf1infer-" in name)


def test_existing_out_dir_is_refused_unless_overwrite(tmp_path):
    out_dir = tmp_path / "model"
    out_dir.mkdir()
    (out_dir / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match=r"model: already exists; pass overwrite=True"):
        tf1infer.export_saved_model(zoo_path("mlp"), out_dir)
    assert (out_dir / "keep.txt").read_text() == "mine"
    tf1infer.export_saved_model(zoo_path("mlp"), out_dir, overwrite=True)
    assert not (out_dir / "keep.txt").exists() and (out_dir / "saved_model.pb").is_file()
    assert _leftovers(tmp_path) == []


def _random_graph(path: Path) -> None:
    """A frozen graph whose output is x plus fresh random noise: no two runs agree."""
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 3], name="x")
        tf.add(x, tf.random.uniform(tf.shape(x)), name="noisy")
    path.write_bytes(graph.as_graph_def().SerializeToString())


def test_failed_verification_leaves_nothing_and_keeps_the_old_export(tmp_path):
    model = tmp_path / "noisy.pb"
    _random_graph(model)
    with pytest.raises(
        ExportVerificationError,
        match=r"output 'serving_default/noisy' of the export differs from the original: max abs error",
    ):
        tf1infer.export_saved_model(model, tmp_path / "fresh")
    assert not (tmp_path / "fresh").exists()
    assert _leftovers(tmp_path) == []

    tf1infer.export_saved_model(zoo_path("mlp"), tmp_path / "existing")
    report_file = tmp_path / "existing" / "assets.extra" / "tf1infer_export.json"
    before = report_file.read_text()
    with pytest.raises(ExportVerificationError):
        tf1infer.export_saved_model(model, tmp_path / "existing", overwrite=True)
    assert report_file.read_text() == before
    assert _leftovers(tmp_path) == []


def test_interrupted_export_leaves_nothing(tmp_path, monkeypatch):
    import tf1infer.export.saved_model as export_module

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(export_module, "_write_report", interrupted)
    with pytest.raises(KeyboardInterrupt):
        tf1infer.export_saved_model(zoo_path("mlp"), tmp_path / "out")
    assert os.listdir(tmp_path) == []


def test_sample_inputs_are_verified_too(tmp_path):
    samples = tmp_path / "samples.npz"
    rng = np.random.default_rng(3)
    np.savez(
        samples, features=rng.normal(size=(5, 6)).astype("float32"), extra=rng.normal(size=(5, 3)).astype("float32")
    )
    report = tf1infer.export_saved_model(
        zoo_path("two_in_two_out"), tmp_path / "out", sample_inputs=samples, random_samples=4
    )
    assert report.samples == 4 + 5


def test_export_command_prints_the_report(tmp_path, capsys):
    from tf1infer.cli import main

    assert main(["export", zoo_path("cnn"), str(tmp_path / "cnn"), "--atol", "1e-6"]) == 0
    shown = capsys.readouterr().out
    assert f"to {tmp_path / 'cnn'}" in shown and "samples in a separate TensorFlow-only process" in shown
    assert "against the float32 session with atol=1e-06 rtol=0.0001" in shown  # The fixed rule the command asked for.
    assert main(["export", zoo_path("cnn"), str(tmp_path / "cnn_default")]) == 0
    shown = capsys.readouterr().out
    assert "against the model run in float64: within 16x the float32 session's own deviation" in shown
    assert "(float32 session: " in shown
    assert main(["export", zoo_path("cnn"), str(tmp_path / "cnn")]) == 2
    assert "already exists" in capsys.readouterr().err


def test_exports_share_one_verification_process_and_a_dead_one_is_replaced(tmp_path):
    from tf1infer.export.saved_model import VerificationWorker

    first = tf1infer.export_saved_model(zoo_path("mlp"), tmp_path / "a")
    worker = VerificationWorker._current
    assert first.verified and worker is not None and worker.process.poll() is None
    second = tf1infer.export_saved_model(zoo_path("cnn"), tmp_path / "b")
    assert second.verified and VerificationWorker._current is worker  # TensorFlow started once for both.
    with pytest.MonkeyPatch.context() as patch:  # Other TensorFlow settings: a worker of their own.
        patch.setenv("TF_ENABLE_ONEDNN_OPTS", "0" if os.environ.get("TF_ENABLE_ONEDNN_OPTS") == "1" else "1")
        assert tf1infer.export_saved_model(zoo_path("mlp"), tmp_path / "other").verified
        assert (
            VerificationWorker._current is not worker and VerificationWorker._current.settings["TF_ENABLE_ONEDNN_OPTS"]
        )
    worker = VerificationWorker._current
    worker.process.kill()  # A worker that dies between exports is replaced by the next one.
    worker.process.wait()
    third = tf1infer.export_saved_model(zoo_path("mlp"), tmp_path / "c")
    assert third.verified and VerificationWorker._current is not worker
    # The worker is a plain TensorFlow process: it never imported tf1infer (every report checks; this one too).
    running = subprocess.run(
        ["ps", "-ww", "-o", "args=", "-p", str(VerificationWorker._current.process.pid)], capture_output=True, text=True
    ).stdout.split()
    assert running[1:2] == ["-I"] and running[2].endswith("saved_model_worker.py") and running[3:] == ["--serve"], (
        running
    )
