"""Valid synthetic inputs read from the graph, and TensorFlow's own reason kept in wrapped errors."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from conftest import CORPUS_DIR, zoo_path

import tf1infer
from tf1infer.errors import ExportVerificationError, PredictionError
from tf1infer.verification.synthetic import synthetic_inputs

SEQ2SEQ_VOCABULARY = {"encoder_tokens": 40, "decoder_tokens": 30}  # As make_zoo.py builds it.


def test_float_inputs_feeding_embeddings_get_whole_numbers_below_the_vocabulary():
    with tf1infer.load(zoo_path("seq2seq")) as predictor:
        assert [spec.dtype for spec in predictor.inputs] == [np.dtype("float32")] * 2
        assert {
            name: spec.index_limit for name, spec in zip(predictor.input_names, predictor.inputs)
        } == SEQ2SEQ_VOCABULARY
        for array, limit in zip(
            synthetic_inputs(predictor.inputs, 64, np.random.default_rng(0)), SEQ2SEQ_VOCABULARY.values()
        ):
            assert array.dtype == np.float32
            assert np.array_equal(array, np.round(array))
            assert array.min() >= 1 and array.max() < limit
            assert array.max() >= limit - 3  # The whole range is drawn, not only small ids.
        outputs = predictor.predict(synthetic_inputs(predictor.inputs, 8, np.random.default_rng(1)))
        assert outputs.shape == (8, 5, 30) and np.all(np.isfinite(outputs))


def test_integer_embedding_input_gets_its_vocabulary():
    with tf1infer.load(zoo_path("embedding")) as predictor:
        (spec,) = predictor.inputs
        assert spec.index_limit == 100
        assert predictor.inputs == [tf1infer.TensorSpec(spec.name, spec.shape, spec.dtype)]  # Not compared.


def test_lookups_in_a_tf1_graph_through_cast_identity_and_one_hot(tmp_path):
    graph = tf.Graph()
    with graph.as_default():
        ids = tf.compat.v1.placeholder(tf.float32, (None, 4), name="ids")
        table = tf.constant(np.random.default_rng(0).normal(size=(7, 3)).astype("float32"))
        indices = tf.identity(tf.cast(ids, tf.int32))
        looked_up = tf.reduce_sum(tf.nn.embedding_lookup(table, indices), axis=[1, 2])
        hot = tf.reduce_sum(tf.one_hot(tf.cast(ids, tf.int64), depth=5), axis=[1, 2])
        tf.add(looked_up, hot, name="score")
    path = tmp_path / "lookup.pb"
    path.write_bytes(graph.as_graph_def().SerializeToString())
    with tf1infer.load(path, outputs=["score"]) as predictor:
        (spec,) = predictor.inputs
        assert spec.index_limit == 5  # The smaller of the two tables the input indexes.
        (x,) = synthetic_inputs(predictor.inputs, 50, np.random.default_rng(2))
        assert x.min() >= 1 and x.max() <= 4
        with tf.compat.v1.Session(graph=graph) as session:  # The table as the graph holds it.
            table_value = session.run(table)
        expected = table_value[x.astype(int)].sum(axis=(1, 2)) + 4.0  # one_hot of an id < 5 sums to 1 per id.
        np.testing.assert_allclose(predictor.predict(x), expected, rtol=1e-6, atol=1e-5)  # Sums of 12 float32 terms.


def test_plain_inputs_stay_random_normal_floats():
    with tf1infer.load(zoo_path("mlp")) as predictor:
        (spec,) = predictor.inputs
        assert spec.index_limit is None and spec.example_features is None
        (x,) = synthetic_inputs(predictor.inputs, 500, np.random.default_rng(3))
        assert x.min() < -1 and x.max() > 1 and not np.array_equal(x, np.round(x))


def test_serialized_examples_carry_the_features_their_parser_requires():
    path = CORPUS_DIR / "tfserving_saved_model_half_plus_two_cpu" / "00000123"
    if not path.exists():
        pytest.skip("shared corpus not found at ../shared/corpus (CI has it beside the checkout)")
    with tf1infer.load(path, signature="regress_x_to_y") as predictor:
        (spec,) = predictor.inputs
        assert {key: (dtype, shape) for key, dtype, shape in spec.example_features} == {
            "x": (np.dtype("float32"), (1,)),
            "x2": (np.dtype("float32"), (1,)),
        }
        (examples,) = synthetic_inputs(predictor.inputs, 6, np.random.default_rng(4))
        x = np.array([tf.train.Example.FromString(e).features.feature["x"].float_list.value[0] for e in examples])
        np.testing.assert_allclose(predictor.predict(examples).ravel(), 0.5 * x + 2.0, rtol=1e-6)
        # An empty Example, what every serialized input used to get, is not valid here: "x" has no default.
        with pytest.raises(PredictionError, match="Feature: x .* is required"):
            predictor.predict(np.array([tf.train.Example().SerializeToString()], dtype=object))


def test_prediction_errors_keep_tensorflows_reason_and_the_op():
    with tf1infer.load(zoo_path("seq2seq")) as predictor:
        with pytest.raises(PredictionError) as info:
            predictor.predict([np.full((2, 5), 45.0, "float32"), np.ones((2, 5), "float32")])
    message = str(info.value)
    assert "at op 'embedding/embedding_lookup'" in message
    assert "indices[0,0] = 45 is not in [0, 40)" in message
    assert "Graph execution error" not in message and "Detected at node" not in message
    assert info.value.__cause__ is not None and "45 is not in [0, 40)" in info.value.__cause__.message


def test_export_of_float_inputs_feeding_embeddings_verifies_without_sample_inputs(tmp_path, eager_model):
    out_dir = tmp_path / "seq2seq"
    tf1infer.export_saved_model(zoo_path("seq2seq"), out_dir)
    samples = np.load(zoo_path("seq2seq").replace("seq2seq.h5", "samples/seq2seq.npz"))
    feeds = {name: samples[name] for name in SEQ2SEQ_VOCABULARY}
    expected = eager_model(zoo_path("seq2seq")).predict([feeds["encoder_tokens"], feeds["decoder_tokens"]], verbose=0)
    serving = tf.saved_model.load(str(out_dir)).signatures["serving_default"]
    (got,) = serving(**{name: tf.constant(value) for name, value in feeds.items()}).values()
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-5, rtol=0)


def test_export_verification_failure_keeps_tensorflows_reason(tmp_path):
    bad = {"encoder_tokens": np.full((2, 5), 45.0, "float32"), "decoder_tokens": np.ones((2, 5), "float32")}
    with pytest.raises(ExportVerificationError, match=r"embedding_lookup'.*indices\[.*\] = 45 is not in \[0, 40\)"):
        tf1infer.export_saved_model(zoo_path("seq2seq"), tmp_path / "out", sample_inputs=bad)
    assert not (tmp_path / "out").exists()
