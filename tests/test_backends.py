"""backend='tflite' and 'auto': outputs against independent references, fallbacks with reasons, lifecycle."""

from __future__ import annotations

import logging
import threading

import numpy as np
import pytest
from conftest import CORPUS_DIR, HALF_PLUS, ZOO_DIR, as_list, corpus_entries, random_inputs, tf1_formula, zoo_path

import tf1infer
from tf1infer import backends
from tf1infer.errors import InvalidOptionError, PredictorClosedError

ATOL = 1e-5  # The bound for float32 TF Lite against TensorFlow (outputs here are at most ~1 in size).
CONVERTIBLE = ["mlp", "cnn", "embedding", "two_in_two_out", "channels_first"]


def assert_close(got, expected, atol=ATOL):
    got, expected = as_list(got), as_list(expected)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.shape == e.shape and g.dtype == e.dtype
        np.testing.assert_allclose(g, e, rtol=0, atol=atol)


@pytest.mark.parametrize("name", CONVERTIBLE)
def test_tflite_matches_eager_keras(name, eager_model):
    reference = eager_model(zoo_path(name))
    with tf1infer.load(zoo_path(name), backend="tflite") as predictor:
        assert predictor.backend == "tflite", predictor.backend_report
        report = predictor.backend_report
        assert 0 <= report["max_deviation"] <= ATOL
        assert isinstance(predictor._callable, backends.TFLiteRuntime)  # Calls go to the interpreters, not the session.
        assert report["chunk_rows"] in backends.CHUNK_CANDIDATES + (None,) and report["threads"] >= 1
        fastest = min(report["chunk_us_per_row"], key=report["chunk_us_per_row"].get)
        assert report["chunk_rows"] == (None if fastest == "whole" else fastest)
        x = random_inputs(predictor.inputs, 300, seed=5)
        feed = x[0] if len(x) == 1 else x
        # 1 row: the multi-threaded interpreter; 7 and 300: chunks on parallel interpreters, with remainders.
        for batch_size in (1, 7, 300):
            assert_close(predictor.predict(feed, batch_size=batch_size), reference.predict(feed, batch_size=batch_size, verbose=0))
        assert_close(predictor.predict_on_batch([a[:1] for a in x] if len(x) > 1 else x[0][:1]),
                     reference.predict([a[:1] for a in x] if len(x) > 1 else x[0][:1], verbose=0))


@pytest.mark.parametrize("entry", corpus_entries("keras-h5"))
def test_tflite_corpus_keras_model_matches_stored_reference(entry, eager_model):
    path = str(CORPUS_DIR / entry["path"])
    reference = entry["reference"]
    x = np.load(CORPUS_DIR / reference["input"])
    with tf1infer.load(path, backend="tflite") as predictor:
        assert predictor.backend == "tflite", predictor.backend_report
        np.testing.assert_allclose(predictor.predict(x), np.load(CORPUS_DIR / reference["output"]), rtol=0, atol=reference["atol"])
        rows = random_inputs(predictor.inputs, 40, seed=3)[0]
        assert_close(predictor.predict(rows, batch_size=32), eager_model(path).predict(rows, batch_size=32, verbose=0))


@pytest.mark.parametrize("entry", corpus_entries("tf1-saved-model") + corpus_entries("tf1-meta-graph+checkpoint"))
def test_tflite_corpus_tf1_models_match_formula(entry):
    reference = entry["reference"]
    x = np.load(CORPUS_DIR / reference["input"])
    signature, text = next(iter(reference["formula"].items()))
    scale, offset = HALF_PLUS[text]
    options = {"signature": signature} if entry["format"] == "tf1-saved-model" else {}
    with tf1infer.load(CORPUS_DIR / entry["path"], backend="tflite", **options) as predictor:
        assert predictor.backend == "tflite", predictor.backend_report
        np.testing.assert_allclose(predictor.predict(x, batch_size=2), scale * x + offset, rtol=0, atol=reference["atol"])


def test_tflite_tf1_saved_model_with_two_outputs():
    x = np.random.default_rng(4).normal(size=(50, 4)).astype("float32")
    with tf1infer.load(ZOO_DIR / "tf1" / "saved_model", backend="tflite") as predictor:
        assert predictor.backend == "tflite", predictor.backend_report
        logits, probs = predictor.predict(x, batch_size=16)
    expected = tf1_formula(x)
    np.testing.assert_allclose(logits, expected["logits"], rtol=0, atol=ATOL)
    np.testing.assert_allclose(probs, expected["probs"], rtol=0, atol=ATOL)


@pytest.mark.parametrize("backend", ["tflite", "auto"])
def test_recurrent_model_falls_back_to_the_session_with_a_logged_reason(backend, caplog, eager_model):
    caplog.set_level(logging.INFO, logger="tf1infer.backends")
    with tf1infer.load(zoo_path("lstm"), backend=backend) as predictor:
        assert predictor.backend == "session"
        reason = predictor.backend_report["fallback_reason"]
        assert reason.startswith("TF Lite cannot convert this graph: ") and "TensorList" in reason
        x = random_inputs(predictor.inputs, 9, seed=1)[0]
        assert_close(predictor.predict(x), eager_model(zoo_path("lstm")).predict(x, verbose=0))
    (record,) = [r for r in caplog.records if r.name == "tf1infer.backends"]
    assert record.levelno == (logging.WARNING if backend == "tflite" else logging.INFO)
    assert "lstm.h5" in record.getMessage() and "runs on the TF1 session instead" in record.getMessage()


def test_verification_failure_falls_back(monkeypatch, caplog):
    # No float32 reordering is exact to 0: with no tolerance the (real) comparison must refuse TF Lite.
    monkeypatch.setattr(backends, "VERIFY_TOLERANCE", 0.0)
    with caplog.at_level(logging.WARNING, logger="tf1infer.backends"), tf1infer.load(zoo_path("mlp"), backend="tflite") as predictor:
        assert predictor.backend == "session"
        assert "differs from the session's by" in predictor.backend_report["fallback_reason"]
    assert "differs from the session's" in caplog.text


def test_auto_measures_each_batch_size_and_dispatches_by_nearest(eager_model):
    with tf1infer.load(zoo_path("cnn"), backend="auto") as predictor:
        report = predictor.backend_report
        assert predictor.backend == "auto"
        assert set(report["auto_choice"]) == set(backends.AUTO_BATCH_SIZES)
        assert set(report["auto_choice"].values()) <= {"session", "tflite"}
        for size, runtime in report["auto_choice"].items():
            timings = report["auto_us_per_row"].get(size)
            if timings:  # Every size measured here: the model is small.
                assert runtime == min(timings, key=timings.get)
        x = random_inputs(predictor.inputs, 100, seed=2)[0]
        for batch_size in (1, 30, 100):
            assert_close(predictor.predict(x, batch_size=batch_size), eager_model(zoo_path("cnn")).predict(x, batch_size=batch_size, verbose=0))


@pytest.mark.parametrize("chunk_rows", [1, 3, None])
def test_every_tflite_path_matches_the_session(chunk_rows):
    """The parallel path at any chunk size (with remainders) and the whole-batch path give the session's outputs."""
    with tf1infer.load(zoo_path("cnn"), backend="tflite") as predictor, tf1infer.load(zoo_path("cnn")) as session:
        predictor._callable.chunk_rows = chunk_rows
        x = random_inputs(predictor.inputs, 37, seed=12)[0]
        for rows in (1, 2, 7, 37):
            assert_close(predictor.predict_on_batch(x[:rows]), session.predict_on_batch(x[:rows]))


def test_auto_runner_picks_the_nearest_measured_size_on_a_log_scale():
    calls = []
    runner = backends.AutoRunner(
        {"session": lambda x: calls.append(("session", len(x))), "tflite": lambda x: calls.append(("tflite", len(x)))},
        {1: "tflite", 32: "session", 256: "tflite"},
    )
    assert [runner.runtime_for(n) for n in (1, 5, 6, 32, 90, 91, 256, 4096)] == [
        "tflite", "tflite", "session", "session", "session", "tflite", "tflite", "tflite"
    ]
    runner(np.zeros((40, 2)))
    assert calls == [("session", 40)]
    tie = backends.AutoRunner({"session": None, "tflite": None}, {1: "tflite", 4: "session"})
    assert [tie.runtime_for(n) for n in (2, 3)] == ["tflite", "session"]  # 2 is as near 1 as 4: the smaller wins.


def test_tflite_streams_and_serves_concurrent_callers(mlp):
    x = random_inputs(mlp.inputs, 500, seed=8)[0]
    expected = mlp.predict(x, batch_size=64)
    with tf1infer.load(zoo_path("mlp"), backend="tflite") as predictor:
        streamed = np.concatenate(list(predictor.predict_iter(iter(x), batch_size=64)))
        assert_close(streamed, expected)
        results = {}

        def call(index):
            results[index] = predictor.predict(x[index * 50 : (index + 1) * 50], batch_size=16)

        threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for index in range(8):
            assert_close(results[index], expected[index * 50 : (index + 1) * 50])
        assert predictor.graph.finalized
        predictor.close()
        with pytest.raises(PredictorClosedError):
            predictor.predict(x[:1])
    assert not [t for t in threading.enumerate() if t.name.startswith("tf1infer-tflite")]


def test_empty_batch_and_wrong_shape_get_the_usual_answers():
    with tf1infer.load(zoo_path("mlp"), backend="tflite") as predictor:
        assert predictor.predict(np.zeros((0, 10), "float32")).shape == (0, 3)
        with pytest.raises(tf1infer.errors.InputError, match="input_1"):
            predictor.predict(np.ones((4, 11), "float32"))


def test_bad_backend_options():
    with pytest.raises(InvalidOptionError, match=r"backend must be one of 'session', 'tflite', 'auto'; got 'onnx'"):
        tf1infer.load(zoo_path("mlp"), backend="onnx")
    with pytest.raises(InvalidOptionError, match=r"precision='float16' needs backend='session'"):
        tf1infer.load(zoo_path("mlp"), backend="tflite", precision="float16")


def test_threads_option_caps_the_interpreters():
    with tf1infer.load(zoo_path("cnn"), backend="tflite", intra_op_threads=1) as predictor:
        assert predictor.backend_report["threads"] == 1
        x = random_inputs(predictor.inputs, 20, seed=6)[0]
        with tf1infer.load(zoo_path("cnn")) as session:
            assert_close(predictor.predict(x, batch_size=20), session.predict(x, batch_size=20))
