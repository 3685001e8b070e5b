"""backend='tflite' and 'auto': outputs against independent references, fallbacks with reasons, lifecycle."""

from __future__ import annotations

import logging
import threading

import numpy as np
import pytest
from conftest import (
    CORPUS_DIR,
    HALF_PLUS,
    ZOO_DIR,
    as_list,
    assert_held_to_float64,
    corpus_entries,
    random_inputs,
    tf1_formula,
    zoo_path,
)

import tf1infer
from tf1infer.backends import auto, tflite
from tf1infer.errors import InvalidOptionError, PredictorClosedError
from tf1infer.verification.reference import Tolerance
from tf1infer.verification.synthetic import verification_batches

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
        assert_held_to_float64(report["deviations"])
        assert "float64_unavailable" not in report
        assert isinstance(predictor._callable, tflite.TFLiteRuntime)  # Calls go to the interpreters, not the session.
        assert report["chunk_rows"] in tflite.CHUNK_CANDIDATES + (None,) and report["threads"] >= 1
        fastest = min(report["chunk_us_per_row"], key=report["chunk_us_per_row"].get)
        assert report["chunk_rows"] == (None if fastest == "whole" else fastest)
        x = random_inputs(predictor.inputs, 300, seed=5)
        feed = x[0] if len(x) == 1 else x
        # 1 row: the multi-threaded interpreter; 7 and 300: chunks on parallel interpreters, with remainders.
        for batch_size in (1, 7, 300):
            assert_close(
                predictor.predict(feed, batch_size=batch_size),
                reference.predict(feed, batch_size=batch_size, verbose=0),
            )
        assert_close(
            predictor.predict_on_batch([a[:1] for a in x] if len(x) > 1 else x[0][:1]),
            reference.predict([a[:1] for a in x] if len(x) > 1 else x[0][:1], verbose=0),
        )


@pytest.mark.parametrize("entry", corpus_entries("keras-h5"))
def test_tflite_corpus_keras_model_matches_stored_reference(entry, eager_model):
    path = str(CORPUS_DIR / entry["path"])
    reference = entry["reference"]
    x = np.load(CORPUS_DIR / reference["input"])
    with tf1infer.load(path, backend="tflite") as predictor:
        assert predictor.backend == "tflite", predictor.backend_report
        np.testing.assert_allclose(
            predictor.predict(x), np.load(CORPUS_DIR / reference["output"]), rtol=0, atol=reference["atol"]
        )
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
        np.testing.assert_allclose(
            predictor.predict(x, batch_size=2), scale * x + offset, rtol=0, atol=reference["atol"]
        )


def test_tflite_tf1_saved_model_with_two_outputs():
    x = np.random.default_rng(4).normal(size=(50, 4)).astype("float32")
    with tf1infer.load(ZOO_DIR / "tf1" / "saved_model", backend="tflite") as predictor:
        assert predictor.backend == "tflite", predictor.backend_report
        logits, probs = predictor.predict(x, batch_size=16)
    expected = tf1_formula(x)
    np.testing.assert_allclose(logits, expected["logits"], rtol=0, atol=ATOL)
    np.testing.assert_allclose(probs, expected["probs"], rtol=0, atol=ATOL)


RECURRENT = ["lstm", "gru", "seq2seq", "seq2seq_masked", "masking_bidirectional", "masked_states"]


@pytest.mark.parametrize("name", RECURRENT)
def test_recurrent_zoo_models_run_on_tflite_at_every_batch_size(name, eager_model):
    """LSTM, GRU (variable length) and the masked two-input seq2seq: fixed-size flatbuffers, chunks, padding."""
    reference = eager_model(zoo_path(name))
    with tf1infer.load(zoo_path(name), backend="tflite") as predictor:
        report = predictor.backend_report
        assert predictor.backend == "tflite", report
        assert report["fixed_rows"] == list(tflite.FIXED_ROWS) and report["chunk_rows"] in tflite.FIXED_ROWS
        assert_held_to_float64(report["deviations"])
        assert "float64_unavailable" not in report
        # Rows: one; a padded 3 (runs at 4); sizes between the converted ones; more than every chunk. Unknown
        # sequence lengths change between calls (the interpreters are kept per shape).
        for rows, length in ((1, 7), (3, 7), (9, 4), (100, 7), (2, 11)):
            x = random_inputs(predictor.inputs, rows, seed=rows, free_dim=length)
            feed = x[0] if len(x) == 1 else x
            assert_close(predictor.predict_on_batch(feed), reference.predict(feed, batch_size=rows, verbose=0))
        # Padding after the end, before the start and inside, the ends of the embedding tables (what verification
        # feeds), and the zoo's own padded samples.
        stored = np.load(ZOO_DIR / "samples" / f"{name}.npz")
        for batch in [
            *verification_batches(predictor.inputs, np.random.default_rng(3)),
            [stored[n] for n in predictor.input_names],
        ]:
            feed = batch[0] if len(batch) == 1 else batch
            assert_close(predictor.predict_on_batch(feed), reference.predict(feed, batch_size=len(batch[0]), verbose=0))
        one = random_inputs(predictor.inputs, 1, seed=0, free_dim=6)
        empty = as_list(predictor.predict_on_batch([a[:0] for a in one] if len(one) > 1 else one[0][:0]))
        assert [e.shape for e in empty] == [
            (0,) + o.shape[1:] for o in as_list(predictor.predict_on_batch(one if len(one) > 1 else one[0]))
        ]


def test_keras1_recurrent_fixture_runs_on_tflite():
    """Keras 1.2.2's Embedding -> LSTM(return_sequences) -> GRU, against its numpy reference."""
    stored = np.load(ZOO_DIR / "keras1" / "rnn_sequential.npz")
    x = stored["inputs/embedding_1_input"]
    with tf1infer.load(ZOO_DIR / "keras1" / "rnn_sequential.h5", backend="tflite") as predictor:
        assert predictor.backend == "tflite", predictor.backend_report
        for batch_size in (1, len(x)):
            np.testing.assert_allclose(
                predictor.predict(x, batch_size=batch_size), stored["outputs/dense_1"], rtol=0, atol=ATOL
            )


def test_every_recurrent_layer_kind_runs_on_tflite(tmp_path):
    """Bidirectional LSTM, SimpleRNN backwards, a Keras 2.2-style GRU (reset_after=False), masking from mask_zero."""
    import tf_keras
    from tf_keras import layers

    ids = layers.Input(shape=(None,), dtype="int32", name="ids")
    hidden = layers.Embedding(50, 8, mask_zero=True)(ids)
    hidden = layers.Bidirectional(layers.LSTM(6, return_sequences=True))(hidden)
    hidden = layers.SimpleRNN(5, return_sequences=True, go_backwards=True)(hidden)
    hidden = layers.GRU(4, reset_after=False)(hidden)
    model = tf_keras.Model(ids, layers.Dense(3, activation="softmax")(hidden))
    rng = np.random.default_rng(3)
    for weight in model.weights:
        weight.assign(rng.normal(0, 0.5, weight.shape))
    model.save(tmp_path / "recurrent.h5")
    with tf1infer.load(tmp_path / "recurrent.h5", backend="tflite") as predictor:
        assert predictor.backend == "tflite", predictor.backend_report
        for rows, length in ((1, 7), (5, 3), (70, 11)):
            x = rng.integers(1, 50, (rows, length)).astype("int32")
            x[: rows // 2 + 1, -2:] = 0  # Padded tails, masked out.
            assert_close(predictor.predict(x), model.predict(x, verbose=0))


def test_recurrent_auto_picks_the_faster_runtime_per_batch_size(eager_model):
    with tf1infer.load(zoo_path("lstm"), backend="auto") as predictor:
        report = predictor.backend_report
        assert predictor.backend == "auto" and report["fixed_rows"] == list(tflite.FIXED_ROWS)
        for size, runtime in report["auto_choice"].items():
            timings = report["auto_us_per_row"].get(size)
            if timings:
                assert runtime == min(timings, key=timings.get)
        x = random_inputs(predictor.inputs, 300, seed=4)[0]
        for batch_size in (1, 32, 300):
            assert_close(
                predictor.predict(x, batch_size=batch_size),
                eager_model(zoo_path("lstm")).predict(x, batch_size=batch_size, verbose=0),
            )


def test_loading_leaves_tensorflows_loop_intermediates_switch_as_it_was():
    """Loaders build loops without gradient intermediates (inference_loops) and restore TensorFlow's setting."""
    import tensorflow as tf
    from tensorflow.python.ops import control_flow_util_v2

    from tf1infer.loaders.base import inference_loops

    with tf.Graph().as_default():
        before = control_flow_util_v2.output_all_intermediates()
        with inference_loops():
            assert control_flow_util_v2.output_all_intermediates() is False
            with inference_loops():  # Another load at the same time (another thread) ends first.
                pass
            assert control_flow_util_v2.output_all_intermediates() is False
        tf1infer.load(zoo_path("lstm")).close()
        assert control_flow_util_v2.output_all_intermediates() == before
    with tf1infer.load(zoo_path("lstm")) as predictor:  # The layer's own lists only; no gradient accumulators.
        assert not [op.name for op in predictor.graph.get_operations() if op.type == "EmptyTensorList"]


@pytest.mark.parametrize("backend", ["tflite", "auto"])
def test_ops_tflite_cannot_run_fall_back_to_the_session_with_a_logged_reason(backend, tmp_path, caplog):
    """A TF1 probit output (the normal CDF through erf): no TF Lite builtin computes erf outside GELU's pattern,
    and the interpreter in the tensorflow package runs no Flex (TensorFlow) ops."""
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")
        tf.identity(0.5 * (1.0 + tf.math.erf(x / np.sqrt(2.0))), name="probit")
    (tmp_path / "probit.pb").write_bytes(graph.as_graph_def().SerializeToString())
    caplog.set_level(logging.INFO, logger="tf1infer.backends")
    with tf1infer.load(tmp_path / "probit.pb", backend=backend) as predictor:
        assert predictor.backend == "session"
        reason = predictor.backend_report["fallback_reason"]
        assert reason.startswith("TF Lite cannot convert this graph: ") and "tf.Erf" in reason
        values = np.random.default_rng(1).normal(size=(9, 4)).astype("float32")
        from math import erf

        expected = np.vectorize(lambda v: 0.5 * (1.0 + erf(v / np.sqrt(2.0))))(values.astype(np.float64))
        np.testing.assert_allclose(predictor.predict(values), expected, rtol=0, atol=1e-6)
    (record,) = [r for r in caplog.records if r.name == "tf1infer.backends"]
    assert record.levelno == (logging.WARNING if backend == "tflite" else logging.INFO)
    assert "probit.pb" in record.getMessage() and "runs on the TF1 session instead" in record.getMessage()


def test_verification_failure_falls_back(monkeypatch, caplog):
    # No float32 reordering is exact to 0: with no tolerance the (real) comparison must refuse TF Lite.
    monkeypatch.setattr(tflite, "VERIFY_TOLERANCE", Tolerance(factor=0.0, floor_ulps=0))
    with (
        caplog.at_level(logging.WARNING, logger="tf1infer.backends"),
        tf1infer.load(zoo_path("mlp"), backend="tflite") as predictor,
    ):
        assert predictor.backend == "session"
        assert "differs from the session's: max abs error" in predictor.backend_report["fallback_reason"]
    assert "differs from the session's" in caplog.text


def test_auto_measures_each_batch_size_and_dispatches_by_nearest(eager_model):
    with tf1infer.load(zoo_path("cnn"), backend="auto") as predictor:
        report = predictor.backend_report
        assert predictor.backend == "auto"
        assert set(report["auto_choice"]) == set(auto.AUTO_BATCH_SIZES)
        assert set(report["auto_choice"].values()) <= {"session", "tflite"}
        for size, runtime in report["auto_choice"].items():
            timings = report["auto_us_per_row"].get(size)
            if timings:  # Every size measured here: the model is small.
                assert runtime == min(timings, key=timings.get)
        x = random_inputs(predictor.inputs, 100, seed=2)[0]
        for batch_size in (1, 30, 100):
            assert_close(
                predictor.predict(x, batch_size=batch_size),
                eager_model(zoo_path("cnn")).predict(x, batch_size=batch_size, verbose=0),
            )


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
    runner = auto.AutoRunner(
        {"session": lambda x: calls.append(("session", len(x))), "tflite": lambda x: calls.append(("tflite", len(x)))},
        {1: "tflite", 32: "session", 256: "tflite"},
    )
    assert [runner.runtime_for(n) for n in (1, 5, 6, 32, 90, 91, 256, 4096)] == [
        "tflite",
        "tflite",
        "session",
        "session",
        "session",
        "tflite",
        "tflite",
        "tflite",
    ]
    runner(np.zeros((40, 2)))
    assert calls == [("session", 40)]
    tie = auto.AutoRunner({"session": None, "tflite": None}, {1: "tflite", 4: "session"})
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


@pytest.mark.parametrize("interpreter", ["ai_edge_litert", "tensorflow"])
def test_tflite_runs_on_the_interpreter_chosen_and_says_which(interpreter, monkeypatch):
    """ai_edge_litert's interpreter where installed (the litert extra; make test installs it), TensorFlow's
    otherwise or when TF1INFER_TFLITE_INTERPRETER says so; both verified against float64 at load, as exact as the
    session, and the report names the one that ran."""
    if interpreter == "ai_edge_litert":
        pytest.importorskip("ai_edge_litert.interpreter", reason="ai_edge_litert is not installed (tf1infer[litert])")
    monkeypatch.setenv("TF1INFER_TFLITE_INTERPRETER", interpreter)
    x = np.random.default_rng(3).random((37, 16, 16, 3), np.float32)
    with tf1infer.load(zoo_path("cnn"), backend="tflite") as lite, tf1infer.load(zoo_path("cnn")) as session:
        report = lite.backend_report
        assert lite.backend == "tflite" and report["tflite_interpreter"].split()[0] == interpreter
        assert report["max_deviation"] <= max(figures["allowed"] for figures in report["deviations"].values())
        np.testing.assert_allclose(lite.predict(x), session.predict(x), rtol=1e-5, atol=1e-5)


def test_an_unknown_or_missing_interpreter_is_refused(monkeypatch):
    from tf1infer.errors import InvalidOptionError

    monkeypatch.setenv("TF1INFER_TFLITE_INTERPRETER", "tflite-runtime")
    with pytest.raises(
        InvalidOptionError, match="TF1INFER_TFLITE_INTERPRETER must be 'ai_edge_litert' or 'tensorflow'"
    ):
        tflite.interpreter_source()
