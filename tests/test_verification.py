"""Verification that real inputs cannot fool: padded rows, table ends, image ranges, the float64 reference.

Every check tf1infer makes of a converted model (SavedModel and Keras 3 exports,
the TF Lite backend) feeds :func:`tf1infer.verification.synthetic.verification_batches` and
holds the candidate to the model's own float32 error against the same graph in
float64 (:mod:`tf1infer.verification.reference`). These tests show what the rows hold, that
the float64 graph is the model (against tf_keras), and that the rule catches
what a fixed tolerance let through: Keras 3's default masking, a perturbed weight.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from conftest import CORPUS_DIR, KERAS3_MISSING, ZOO_DIR, assert_held_to_float64, corpus_entries, corpus_entry, zoo_path

import tf1infer
from tf1infer.errors import ExportError, ExportVerificationError, ModelLoadError
from tf1infer.verification.reference import Float64Unavailable, Tolerance, frozen_float64_runner
from tf1infer.verification.synthetic import verification_batches

needs_keras3 = pytest.mark.skipif(KERAS3_MISSING, reason="the Keras 3 export needs Keras 3 (TensorFlow 2.16+)")


# lambda_resize.h5's Lambda, as its training script wrote it: a lambda reading the global ``tf``.
resize = lambda t: tf.compat.v1.image.resize_images(t, (20, 20), align_corners=True)  # noqa: E731


def _graph_and_tensors(predictor):
    graph = predictor.graph
    return (
        graph,
        [graph.get_tensor_by_name(s.name) for s in predictor.inputs],
        [graph.get_tensor_by_name(s.name) for s in predictor.outputs],
    )


def test_masks_and_tables_are_read_from_the_graph():
    with tf1infer.load(zoo_path("seq2seq_masked")) as predictor:
        assert [(spec.mask_value, spec.index_limit) for spec in predictor.inputs] == [(0.0, 25), (0.0, 20)]
    with tf1infer.load(zoo_path("masking_bidirectional")) as predictor:
        assert [(spec.mask_value, spec.index_limit) for spec in predictor.inputs] == [(0.0, None)]
    with tf1infer.load(
        zoo_path("embedding")
    ) as predictor:  # An Embedding without mask_zero: 0 is an id like the others.
        assert [(spec.mask_value, spec.index_limit) for spec in predictor.inputs] == [(None, 100)]


def test_verification_batches_hold_padding_table_ends_and_two_lengths():
    with tf1infer.load(zoo_path("seq2seq_masked")) as predictor:
        batches = verification_batches(predictor.inputs, np.random.default_rng(0))
    assert [[array.shape for array in batch] for batch in batches] == [[(20, 12)] * 2, [(20, 5)] * 2]
    for batch in batches:
        for array, limit in zip(batch, (25, 20)):
            assert array.dtype == np.float32 and np.array_equal(array, np.round(array)) and array.max() == limit - 1
            padded = array == 0
            assert not padded[:8].any()  # The random rows hold no padding...
            rows = padded[8:]
            steps = array.shape[1]
            # ... the built ones do: after the end, before the start, inside (one step, several), all but one step.
            assert any(r[-1] and not r[0] for r in rows)
            assert any(r[0] and not r[-1] for r in rows)
            assert any(not r[0] and not r[-1] and r.any() for r in rows)
            assert any(r.sum() == steps - 1 for r in rows)
            assert any(1 < r.sum() < steps - 1 and not r[0] and not r[-1] for r in rows)
    with tf1infer.load(zoo_path("cnn")) as predictor:
        (batch,) = verification_batches(predictor.inputs, np.random.default_rng(0))
    (images,) = batch
    assert images.shape[1:] == (16, 16, 3)
    assert images[-2].min() >= 0 and images[-2].max() > 200 and 0 <= images[-1].min() and images[-1].max() <= 1


@pytest.mark.parametrize(
    "name", ["cnn", "channels_first", "seq2seq_masked", "masking_bidirectional", "masked_states", "lambda_resize"]
)
def test_float64_graph_computes_the_model(name, eager_model):
    """The float64 twin (FusedBatchNorm as arithmetic, resizing cast back, loops retyped) agrees with tf_keras to
    float32's precision, and is not the float32 graph (its outputs are float64 and differ in the last bits)."""
    options = {"lambdas": {"resize": resize}} if name == "lambda_resize" else {}
    with tf1infer.load(zoo_path(name), **options) as predictor:
        graph, inputs, outputs = _graph_and_tensors(predictor)
        run = frozen_float64_runner(graph, predictor.session, inputs, outputs, name)
        batch = verification_batches(predictor.inputs, np.random.default_rng(1))[0]
        exact = run(*batch)
        run.close()
        session = predictor.session.run(outputs, dict(zip(inputs, batch)))
    if name == "lambda_resize":
        import tf_keras

        reference = tf_keras.models.load_model(zoo_path(name), safe_mode=False, compile=False)
    else:
        reference = eager_model(zoo_path(name))
    eager = reference.predict(batch if len(batch) > 1 else batch[0], verbose=0)
    eager = eager if isinstance(eager, list) else [eager]
    for value, float32, want in zip(exact, session, eager):
        assert value.dtype == np.float64
        scale = max(1.0, float(np.abs(want).max()))
        np.testing.assert_allclose(value, want, rtol=0, atol=2e-5 * scale)
        assert not np.array_equal(value, float32.astype(np.float64))


def test_random_graph_has_no_float64_reference(tmp_path):
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, (None, 3), name="x")
        tf.add(x, tf.random.uniform(tf.shape(x)), name="noisy")
    path = tmp_path / "noisy.pb"
    path.write_bytes(graph.as_graph_def().SerializeToString())
    with tf1infer.load(path, outputs=["noisy"]) as predictor:
        graph, inputs, outputs = _graph_and_tensors(predictor)
        with pytest.raises(Float64Unavailable, match=r"draws random numbers \(RandomUniform\)"):
            frozen_float64_runner(graph, predictor.session, inputs, outputs, "noisy")


def test_tolerance_follows_the_models_own_error():
    rng = np.random.default_rng(0)
    exact = rng.normal(size=1000)
    session = exact.astype(np.float32)  # float32's own error: rounding, up to half an ulp.
    noise = Tolerance().judge((exact + rng.normal(scale=2e-7, size=1000)).astype(np.float32), session, exact)
    floor = 8 * np.finfo(np.float32).eps * np.abs(exact).max()  # A few ulps of the output's magnitude.
    assert noise["ok"] and noise["float32_session_error"] > 0
    assert noise["allowed"] == pytest.approx(max(16 * noise["float32_session_error"], floor))
    wrong = exact.copy()
    wrong[500] += 5e-5  # Under the old fixed rule (1e-5 + 1e-4 x |value|) for most values, but no float32 noise.
    assert not Tolerance().judge(wrong.astype(np.float32), session, exact)["ok"]
    # An exact model (float32 error 0) still gets a few ulps of room.
    assert Tolerance().judge(np.float32([1.0, 2.0]), np.float32([1.0, 2.0]), np.float64([1.0, 2.0]))["allowed"] > 0
    # Without float64, or with fixed tolerances, the fixed rule against the session applies.
    fixed = Tolerance(atol=1e-3).judge(wrong.astype(np.float32), session, exact)
    assert fixed["ok"] and fixed["allowed"] is None


def test_saved_model_export_of_masked_models_reports_both_deviations(tmp_path):
    for name in ("seq2seq_masked", "masking_bidirectional"):
        report = tf1infer.export_saved_model(zoo_path(name), tmp_path / name)
        assert_held_to_float64(report.errors, report)
        assert report.samples >= 20  # Random rows plus the padded ones, at two lengths.
        assert "(float32 session: " in str(report)


@needs_keras3
def test_keras3_default_masking_is_rejected_and_jax_left_out_where_it_differs(tmp_path, monkeypatch):
    """Keras 3 calls an RNN started from initial_state without its input's mask: the decoder runs every padding
    step. The export passes the mask as Keras 2 did; without that, verification refuses the file. Keras 3's JAX
    backend still differs on padding before the start, so it is left out, and refused when asked for."""
    import tf1infer.export.keras3_translate as translate

    report = tf1infer.export_keras(zoo_path("seq2seq_masked"), tmp_path / "fixed.keras", training_step=False)
    assert "called with its input's mask" in " ".join(report.translations["decoder"])
    assert_held_to_float64(report.backends["tensorflow"], report)
    assert "jax" not in report.backends and "jax" in report.load_with["inexact_backends"]
    from tf1infer.export.keras3 import available_backends

    if "jax" in available_backends():  # Installed here (make test), so it was asked for and left out.
        assert (
            report.backends_skipped["jax"].startswith("left out: ")
            and "initial state as output" in report.backends_skipped["jax"]
        )
    with pytest.raises(
        ExportError, match=r"cannot export to Keras 3 for its jax backend: 'decoder' starts from initial_state"
    ):
        tf1infer.export_keras(zoo_path("seq2seq_masked"), tmp_path / "j.keras", backends=["jax"])

    monkeypatch.setattr(translate, "_masks_as_keras2", lambda source, model, plan: model)
    with pytest.raises(
        ExportVerificationError, match=r"output 'probs' of the .keras file on Keras 3's tensorflow backend differs"
    ):
        tf1infer.export_keras(
            zoo_path("seq2seq_masked"), tmp_path / "default.keras", backends=["tensorflow"], training_step=False
        )
    assert not (tmp_path / "default.keras").exists()


@needs_keras3
def test_a_perturbed_weight_passes_the_old_fixed_rule_and_fails_the_float64_one(tmp_path, monkeypatch):
    import tf1infer.export.keras3 as keras3_export
    from tf1infer.export.keras3_translate import copy_weights

    def perturbed(source, plan, old_model, session, new_model):
        copied = copy_weights(source, plan, old_model, session, new_model)
        layer = new_model.get_layer("dense_1")
        kernel, bias = layer.get_weights()
        layer.set_weights([kernel * np.float32(1 + 3e-5), bias])  # One weight matrix off by 3e-5, relatively.
        return copied

    monkeypatch.setattr(keras3_export, "copy_weights", perturbed)
    options = {"backends": ["tensorflow"], "training_step": False}
    loose = tf1infer.export_keras(zoo_path("mlp"), tmp_path / "loose.keras", atol=1e-5, rtol=1e-4, **options)
    assert loose.reference == "float64" and "atol=1e-05" in loose.tolerance  # The old rule let it through...
    with pytest.raises(ExportVerificationError, match=r"output 'dense_2' .* differs from the original"):
        tf1infer.export_keras(
            zoo_path("mlp"), tmp_path / "strict.keras", **options
        )  # ... the model's own error does not.


@needs_keras3
def test_lambda_reading_tf_loads_in_a_fresh_keras3_process_with_the_reports_snippet(tmp_path):
    import tf_keras

    report = tf1infer.export_keras(zoo_path("lambda_resize"), tmp_path / "resize.keras", lambdas={"resize": resize})
    assert report.load_with["snippet"] == "keras.saving.load_model(path, safe_mode=False)"
    assert "with the globals it reads (tf) carried in its bytecode" in report.translations["resize"][0]
    assert "call TensorFlow" in report.backends_skipped["jax"]
    assert_held_to_float64(report.backends["tensorflow"], report)
    x = np.random.default_rng(2).uniform(0, 255, (5, 12, 12, 3)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    snippet = report.load_with["snippet"].replace("path", repr(str(report.path)))
    code = (
        "import sys, numpy as np, keras\n"
        f"model = {snippet}\n"
        f"np.save({str(tmp_path / 'y.npy')!r}, np.asarray(model.predict(np.load({str(tmp_path / 'x.npy')!r}), verbose=0)))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tf1infer', 'tf_keras')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-c", code],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
    reference = tf_keras.models.load_model(zoo_path("lambda_resize"), safe_mode=False, compile=False).predict(
        x, verbose=0
    )
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), reference, rtol=0, atol=1e-5)


SCALE = np.float32(0.5)


def _shift(x):
    return x - 1.0


class _Opaque:
    pass


OPAQUE = _Opaque()


@needs_keras3
def test_lambda_reading_keras2_backend_numpy_and_a_helper_is_carried(tmp_path):
    import tf_keras.backend as K

    report = tf1infer.export_keras(
        ZOO_DIR / "lambda.h5",
        tmp_path / "k.keras",
        lambdas={"affine": lambda x: K.abs(_shift(x)) * SCALE + np.float32(1.0)},
        backends=["tensorflow"],
        training_step=False,
    )
    assert (
        "with the globals it reads (_shift, SCALE, np, K) carried" in report.translations["affine"][0]
    )  # K: a closure variable.
    assert_held_to_float64(report.backends["tensorflow"], report)
    with pytest.raises(
        ExportError, match=r"Lambda layer 'affine': its function reads the global 'OPAQUE' \(.*_Opaque\)"
    ):
        tf1infer.export_keras(
            ZOO_DIR / "lambda.h5", tmp_path / "o.keras", lambdas={"affine": lambda x: x * (OPAQUE is None)}
        )
    assert sorted(os.listdir(tmp_path)) == ["k.keras", "k.keras.report.json"]
    assert json.loads((tmp_path / "k.keras.report.json").read_text())["reference"] == "float64"


@needs_keras3
def test_a_keras3_layer_can_replace_a_lambda(tmp_path):
    """lambdas= takes a Keras 3 layer too: the session runs it in place of the Lambda, and the .keras file holds it as
    a native layer (no bytecode: it loads without safe_mode=False, on JAX as on TensorFlow)."""
    import keras

    report = tf1infer.export_keras(
        zoo_path("lambda_resize"),
        tmp_path / "native.keras",
        lambdas={"resize": keras.layers.Resizing(20, 20)},
        training_step=False,
    )
    assert report.load_with["snippet"] == "keras.saving.load_model(path)" and report.load_with["safe_mode"] is True
    assert report.translations["resize"] == [
        "Lambda replaced by the supplied Keras 3 layer Resizing (a native layer: no bytecode)"
    ]
    for errors in report.backends.values():
        assert_held_to_float64(errors, report)
    from tf1infer.export.keras3 import available_backends

    assert set(report.backends) == set(available_backends()) and not report.backends_skipped  # JAX runs it too.
    model = keras.saving.load_model(report.path)
    assert type(model.get_layer("resize")).__name__ == "Resizing"
    # A layer with weights cannot stand in: the legacy file holds none for it (tf_keras refuses it at load).
    with pytest.raises(
        ModelLoadError, match=r"(?s)cannot build the architecture .*Variables were created within a Lambda layer"
    ):
        tf1infer.export_keras(
            zoo_path("lambda_resize"),
            tmp_path / "weighted.keras",
            lambdas={"resize": keras.layers.Conv2D(4, 1, padding="same")},
            training_step=False,
        )


# With the real-world corpus (make test-real-world): about a minute of exports; make test keeps loading these files
# against their training functions (tests/test_lambda_recovery.py).
@pytest.mark.real_world
@pytest.mark.parametrize("entry", corpus_entries("keras-h5-lambda"))
def test_corpus_lambda_files_load_by_themselves_and_export_verified(entry, tmp_path):
    """The real Lambda files (Keras 1.2 to tf.keras 2.8, bytecode of Python 2.7 to 3.10) with no lambdas=: each
    function is recovered from its bytecode, never run (tests/test_lambda_recovery.py checks it against the training
    code's). Each loads, runs on TF Lite or falls back with a reason, and exports to SavedModel and Keras 3, verified
    against float64. In the .keras file a recovered function is keras.ops (loads in safe mode) unless it calls
    TensorFlow only (tf.space_to_depth), which keeps its function as bytecode."""
    path = CORPUS_DIR / entry["path"]
    with tf1infer.load(path, backend="tflite") as predictor:
        assert len(predictor.metadata["recovered_lambdas"]) == len(entry["lambdas"])
        report = predictor.backend_report
        assert report.get("deviations") or report.get("fallback_reason")
        batch = verification_batches(predictor.inputs, np.random.default_rng(0))[0]
        outputs = predictor.predict(batch if len(batch) > 1 else batch[0])
        assert all(np.isfinite(output).all() for output in (outputs if isinstance(outputs, list) else [outputs]))
    saved = tf1infer.export_saved_model(path, tmp_path / "saved")
    assert_held_to_float64(saved.errors, saved)
    if not KERAS3_MISSING:
        exported = tf1infer.export_keras(path, tmp_path / "model.keras", backends=["tensorflow"], training_step=False)
        assert_held_to_float64(exported.backends["tensorflow"], exported)
        tensorflow_only = entry["name"] == "keras122_lambda_space_to_depth"
        assert exported.load_with["safe_mode"] is not tensorflow_only, exported.load_with


@pytest.mark.parametrize(
    "name", ["keras224tf_lambda_normalize", "keras208_lambda_normalize_py27", "keras120_lambda_normalize"]
)
def test_corpus_normalizing_lambda_computes_its_formula(name):
    """x / 255 - 0.5 as the first layer: the model on x equals the model with an identity Lambda on the normalized x."""
    from corpus_lambdas import LAMBDAS

    entry = corpus_entry(name)
    if entry is None:
        pytest.skip("../shared/corpus is absent")
    ((layer, function),) = LAMBDAS[name].items()
    path = CORPUS_DIR / entry["path"]
    with (
        tf1infer.load(path, lambdas={layer: function}) as model,
        tf1infer.load(path, lambdas={layer: lambda x: x}) as identity,
    ):
        x = np.random.default_rng(1).uniform(0, 255, (4, *model.inputs[0].shape[1:])).astype("float32")
        np.testing.assert_allclose(
            model.predict(x), identity.predict(x / np.float32(255.0) - np.float32(0.5)), rtol=0, atol=1e-6
        )


def test_the_likely_cause_of_a_refusal_in_words():
    """likely_cause reads the figures: an ill-conditioned model (the float32 session itself far from float64), float32
    rounding (a deviation far below the output's size), or a suspect part of the translation."""
    from tf1infer.export.saved_model import likely_cause

    rule = Tolerance()
    ill = {"max_abs_error": 3e-2, "max_rel_error": 0.5, "float32_session_error": 1e-3, "allowed": 1.6e-2}
    assert "ill-conditioned on these rows (the original float32 session is itself 0.001 from float64)" in likely_cause(
        ill, 1.0, True, [], rule
    )
    rounding = {"max_abs_error": 2e-6, "max_rel_error": 1e-4, "float32_session_error": 1e-8, "allowed": 1.6e-7}
    assert "float32 rounding beyond this model's own" in likely_cause(rounding, 10.0, True, ["layer 'x': y"], rule)
    wrong = {"max_abs_error": 0.5, "max_rel_error": 0.9, "float32_session_error": 1e-8, "allowed": 1.6e-7}
    cause = likely_cause(wrong, 2.0, True, ["layer 'gru': hard_sigmoid", "layer 'l': a Lambda's function"], rule)
    assert cause.startswith("likely cause: a part that computes differently from the original: layer 'gru'")
    assert "(also: layer 'l': a Lambda's function)" in cause and "lambdas= for a Lambda's function" in cause
    assert "please report it" in likely_cause(wrong, 2.0, True, [], rule)
