"""Real Keras files written by others (legacy_models/real_world/): loaded, checked, exported to SavedModel and Keras 3.

26 files written by Keras 1.2.2 to 2.2.0, on the TensorFlow and the Theano backends, by Deeplearning4j's Keras
model-import tests (Apache-2.0; MANIFEST.json gives each file's origin, commit, licence, layers and training code).
Each file is loaded by tf1infer and compared with an independent reference where one exists, on the rows
verification uses (random rows, ids at the ends of their tables, padded sequences):

- the predictions Keras itself stored beside the model when it wrote it (``*_inputs_and_outputs.h5``);
- tf_keras running the same file eagerly, for Keras 2 files of the TensorFlow backend;
- a numpy true convolution for the Theano-backend Conv2D (Theano convolves, TensorFlow correlates: Keras 2 flipped
  such kernels on load, tf_keras no longer does);
- none for the other Keras 1 and Theano files: their exports are still verified against the loaded graph in float64.

The comparison's tolerance is the model's own float32 error (tf1infer.verification.reference.Tolerance: within 16x
the float32 session's deviation from the float64 twin of the graph). Each file is then exported to a TF2 SavedModel
and to Keras 3 (TensorFlow and, where its ops allow, JAX), each verified in a fresh process.

These 26 exports take about three minutes on two cores, so they run in their own target, `make test-real-world`
(CI runs it once), not in `make test`.
"""

from __future__ import annotations

import importlib.util
import json

import h5py
import numpy as np
import pytest
from conftest import KERAS3_MISSING, ZOO_DIR, assert_held_to_float64

import tf1infer
from tf1infer.verification.reference import Tolerance, frozen_float64_runner
from tf1infer.verification.synthetic import verification_batches

pytestmark = pytest.mark.real_world

REAL_WORLD = ZOO_DIR / "real_world"
MANIFEST = json.loads((REAL_WORLD / "MANIFEST.json").read_text())
ENTRIES = {entry["name"]: entry for entry in MANIFEST["entries"]}
HAS_JAX = importlib.util.find_spec("jax") is not None

# What each file's Keras 3 export does where it is not "exports on every backend, loads in safe mode".
KERAS3_EXCEPTIONS = {
    # tf.space_to_depth, recovered from the bytecode, has no keras.ops form: the Lambda keeps its function as
    # bytecode (safe_mode=False) and JAX is left out, with the reason.
    "dl4j_space_to_depth_graph_tensorflow_2": "tensorflow-only bytecode",
}


def _reference_kind(entry: dict) -> str:
    if "reference" in entry:
        return "stored predictions"
    if entry["name"] == "dl4j_conv2d_theano_2":
        return "numpy true convolution"
    if "tensorflow backend" in entry["written_by"] and "Lambda" not in entry["layers"]:
        return "tf_keras"
    return "none"


def test_the_corpus_is_what_the_issue_asks():
    """At least 20 files, under 1 MB each and 15 MB in all, each with its origin and licence file."""
    sizes = [(REAL_WORLD / entry["path"]).stat().st_size for entry in MANIFEST["entries"]]
    assert len(sizes) >= 20 and max(sizes) < 2**20 and sum(sizes) < 15 * 2**20
    for entry in MANIFEST["entries"]:
        licence = entry["license"].split("(")[1].rstrip(")")
        assert (REAL_WORLD / licence).is_file() and entry["origin"]["commit"], entry["name"]
    versions = {entry["written_by"].split(",")[0].split(" (")[0] for entry in MANIFEST["entries"]}
    assert {"Keras 1.2.2", "Keras 2.0.6", "Keras 2.1.3", "Keras 2.2.0"} <= versions


def _rows(predictor) -> list[np.ndarray]:
    """Verification's rows; a model built for a fixed batch size gets that many rows (tiled)."""
    batch = verification_batches(predictor.inputs, np.random.default_rng(0))[0]
    fixed = predictor.inputs[0].shape[0] if predictor.inputs[0].shape else None
    if fixed:
        batch = [np.resize(array, (fixed, *array.shape[1:])) for array in batch]
    return batch


def _theano_convolution(path, x: np.ndarray) -> np.ndarray:
    """Keras 2 + Theano's Conv2D (valid, channels_last, stride 1): a true convolution, the kernel flipped."""
    with h5py.File(path, "r") as handle:
        group = handle["model_weights"]["conv2d_1"]["conv2d_1"]
        kernel, bias = (
            group["kernel"][()].astype(np.float64),
            group["bias"][()].astype(np.float64),
        )  # Theano names no ":0"
    rows, cols = kernel.shape[:2]
    flipped = kernel[::-1, ::-1]
    out_h, out_w = x.shape[1] - rows + 1, x.shape[2] - cols + 1
    out = np.zeros((x.shape[0], out_h, out_w, kernel.shape[3]))
    for i in range(out_h):
        for j in range(out_w):
            out[:, i, j] = np.einsum("brsc,rscf->bf", x[:, i : i + rows, j : j + cols].astype(np.float64), flipped)
    return out + bias


def _reference(entry: dict, path, batch: list[np.ndarray]) -> list[np.ndarray] | None:
    kind = _reference_kind(entry)
    if kind == "numpy true convolution":
        return [_theano_convolution(path, batch[0])]
    if kind == "tf_keras":
        import tf_keras

        model = tf_keras.models.load_model(str(path), compile=False)
        fixed = model.inputs[0].shape[0]
        out = model.predict(batch if len(batch) > 1 else batch[0], batch_size=fixed or 32, verbose=0)
        return out if isinstance(out, list) else [out]
    return None


def run_against_reference(name: str, predictor) -> tuple[list, list | None, list, list]:
    """The rows a file is checked on, its independent reference's outputs (None where it has none), and the loaded
    model's outputs in float32 (the session) and in float64 (its frozen graph's twin). tests/real_world_table.py
    prints these."""
    entry = ENTRIES[name]
    path = REAL_WORLD / entry["path"]
    if "reference" in entry:
        with h5py.File(REAL_WORLD / entry["reference"]["path"], "r") as handle:
            batch = [handle["inputs"][key][()] for key in handle["inputs"]]
            reference: list[np.ndarray] | None = [handle["predictions"][key][()] for key in handle["predictions"]]
    else:
        batch = _rows(predictor)
        reference = _reference(entry, path, batch)
    graph = predictor.graph
    inputs = [graph.get_tensor_by_name(spec.name) for spec in predictor.inputs]
    outputs = [graph.get_tensor_by_name(spec.name) for spec in predictor.outputs]
    run = frozen_float64_runner(graph, predictor.session, inputs, outputs, name)
    exact = run(*batch)
    run.close()
    session = predictor.predict(batch if len(batch) > 1 else batch[0])
    return batch, reference, session if isinstance(session, list) else [session], exact


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_real_world_file_matches_its_reference_and_exports_verified(name, tmp_path):
    entry = ENTRIES[name]
    path = REAL_WORLD / entry["path"]
    with tf1infer.load(path) as predictor:
        _, reference, session, exact = run_against_reference(name, predictor)
    for want, have, float64 in zip(reference or [], session, exact):
        verdict = Tolerance().judge(np.asarray(want, np.float32), have, float64)
        assert verdict["ok"], (name, _reference_kind(entry), verdict)
    saved = tf1infer.export_saved_model(path, tmp_path / "saved")
    assert_held_to_float64(saved.errors, saved)
    if KERAS3_MISSING:
        return
    exported = tf1infer.export_keras(path, tmp_path / "model.keras", training_step=False)
    assert_held_to_float64(exported.backends["tensorflow"], exported)
    if KERAS3_EXCEPTIONS.get(name) == "tensorflow-only bytecode":
        assert exported.load_with["safe_mode"] is False and "jax" not in exported.backends
        return
    assert exported.load_with["safe_mode"] is True, exported.load_with
    if HAS_JAX:
        assert_held_to_float64(exported.backends["jax"], exported)


def test_theano_convolution_kernels_are_flipped_on_load():
    """Keras 2 + Theano files: the loaded graph names the layers it converted (Keras 2 did this on load)."""
    with tf1infer.load(REAL_WORLD / "dl4j_conv2d_reshape_theano_2.h5") as predictor:
        assert predictor.metadata["theano_kernels_flipped"] == ["conv2d_1", "conv2d_2"]
    with tf1infer.load(REAL_WORLD / "dl4j_cnn_batch_norm.h5") as predictor:  # TensorFlow backend: nothing to flip.
        assert "theano_kernels_flipped" not in predictor.metadata


@pytest.mark.skipif(KERAS3_MISSING, reason="Keras 3 is not installed")
def test_a_refused_export_says_what_differed_its_likely_cause_and_the_way_out(tmp_path):
    """A custom layer's Keras 3 class that computes something else (the offset forgotten): refused, naming the class
    as the likely cause and keras3_custom_objects= as the option."""
    import zoo_layers
    import zoo_layers_keras3

    from tf1infer.errors import ExportVerificationError

    with pytest.raises(ExportVerificationError) as info:
        tf1infer.export_keras(
            ZOO_DIR / "custom_layer.h5",
            tmp_path / "wrong.keras",
            custom_objects={"Scale": zoo_layers.Scale},
            keras3_custom_objects={"Scale": zoo_layers_keras3.ScaleWithoutOffset},
            backends=["tensorflow"],
            training_step=False,
        )
    message = str(info.value)
    assert "differs from the original: max abs error" in message and "nothing was written" in message
    assert (
        "likely cause: a part that computes differently from the original: the Keras 3 class "
        "zoo_layers_keras3.ScaleWithoutOffset supplied for a custom layer" in message
    )
    assert "keras3_custom_objects= for a custom layer's class" in message
    assert not (tmp_path / "wrong.keras").exists()


@pytest.mark.skipif(KERAS3_MISSING, reason="Keras 3 is not installed")
def test_keras2_hard_sigmoid_exact_keeps_the_weights_and_the_function(tmp_path):
    """keras2_hard_sigmoid='exact': the gates use Keras 2's formula (tf1infer.keras2_activations, Keras 3 alone) with
    the weights as stored; an Activation('hard_sigmoid') layer, which no weights can absorb, exports too (refused by
    the default, naming the option)."""
    import tf_keras

    from tf1infer.errors import ExportError

    report = tf1infer.export_keras(
        ZOO_DIR / "keras1" / "rnn_sequential.h5", tmp_path / "rnn.keras", keras2_hard_sigmoid="exact",
        training_step=False,
    )  # fmt: skip
    assert report.load_with["safe_mode"] is True
    assert (
        "custom_objects={'keras2_hard_sigmoid': tf1infer.keras2_activations.keras2_hard_sigmoid}"
        in (report.load_with["snippet"])
    )
    assert any("clip(0.2 x + 0.5, 0, 1) exactly, weights untouched" in c for c in report.translations["lstm_1"])
    for errors in report.backends.values():
        assert_held_to_float64(errors, report)
    model = tf_keras.Sequential(
        [tf_keras.Input((4,)), tf_keras.layers.Dense(3), tf_keras.layers.Activation("hard_sigmoid")]
    )
    path = tmp_path / "activation.h5"
    model.save(str(path))
    with pytest.raises(ExportError, match="keras2_hard_sigmoid='exact' keeps Keras 2's function"):
        tf1infer.export_keras(path, tmp_path / "refused.keras", training_step=False)
    exact = tf1infer.export_keras(path, tmp_path / "a.keras", keras2_hard_sigmoid="exact", training_step=False)
    assert_held_to_float64(exact.backends["tensorflow"], exact)
