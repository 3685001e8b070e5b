"""The Predictor's Keras-compatible API: metadata, predict arguments, batch sources, lifecycle, from_session."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from conftest import as_list, random_inputs, zoo_path

import tf1infer
from tf1infer.errors import InputError, ModelLoadError, PredictionError, PredictorClosedError, Tf1InferError


def test_metadata_matches_keras(mlp, two_inputs, eager_model):
    for predictor, name in ((mlp, "mlp"), (two_inputs, "two_in_two_out")):
        keras_model = eager_model(zoo_path(name))
        assert predictor.input_names == keras_model.input_names
        assert predictor.output_names == keras_model.output_names
        assert predictor.input_shape == keras_model.input_shape
        assert predictor.output_shape == keras_model.output_shape
    assert mlp.inputs == [tf1infer.TensorSpec("input_1:0", (None, 10), np.dtype("float32"))]
    assert mlp.outputs[0].shape == (None, 3) and mlp.outputs[0].name.endswith(":0")
    assert [spec.name for spec in two_inputs.inputs] == ["features:0", "extra:0"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        mlp.inputs[0].name = "other"
    assert mlp.metadata["format"] == "keras-h5" and mlp.metadata["keras_version"]
    assert isinstance(mlp.session, tf.compat.v1.Session) and mlp.graph is mlp.session.graph
    assert "input_1:0 (None, 10) float32" in repr(mlp)
    with tf1infer.load_model(zoo_path("two_in_two_out")) as drop_in:  # The Keras-named alias loads the same model.
        assert drop_in.input_names == two_inputs.input_names and drop_in.output_shape == two_inputs.output_shape


def test_one_output_gives_an_array_several_give_a_list_in_output_order(mlp, two_inputs):
    (x,) = random_inputs(mlp.inputs, 5)
    assert isinstance(mlp.predict(x), np.ndarray) and isinstance(mlp(x), np.ndarray)
    out = two_inputs.predict(random_inputs(two_inputs.inputs, 5))
    assert isinstance(out, list) and [o.shape[1] for o in out] == [1, 4]


def test_predict_equals_predict_on_batch_for_every_batch_size(mlp):
    (x,) = random_inputs(mlp.inputs, 50, seed=1)
    whole = mlp.predict_on_batch(x)
    for batch_size in (1, 3, 32, 49, 50, 51, 1000):
        np.testing.assert_allclose(mlp.predict(x, batch_size=batch_size), whole, rtol=0, atol=1e-6)


def test_steps_limits_the_number_of_batches(mlp):
    (x,) = random_inputs(mlp.inputs, 50, seed=2)
    out = mlp.predict(x, batch_size=8, steps=3)
    assert out.shape == (24, 3)
    np.testing.assert_allclose(out, mlp.predict(x[:24]), atol=1e-6)
    assert mlp.predict(x, batch_size=8, steps=0).shape == (0, 3)


def test_keras_loader_arguments_are_accepted(mlp):
    (x,) = random_inputs(mlp.inputs, 4, seed=3)
    out = mlp.predict(x, batch_size=2, verbose=0, steps=None, max_queue_size=4, workers=2, use_multiprocessing=True)
    np.testing.assert_allclose(out, mlp.predict(x), atol=1e-6)


def test_verbose_shows_a_progress_bar(mlp, capsys):
    (x,) = random_inputs(mlp.inputs, 40, seed=4)
    mlp.predict(x, batch_size=8, verbose=1)
    shown = capsys.readouterr().out
    assert "5/5" in shown
    mlp.predict(x, batch_size=8, verbose=0)
    assert capsys.readouterr().out == ""


def test_generators_sequences_and_datasets_yield_batches(mlp):
    (x,) = random_inputs(mlp.inputs, 30, seed=5)
    expected = mlp.predict(x)
    batches = [x[i : i + 7] for i in range(0, 30, 7)]

    np.testing.assert_allclose(mlp.predict(iter(batches)), expected, atol=1e-6)
    np.testing.assert_allclose(mlp.predict((b, np.zeros(len(b))) for b in batches), expected, atol=1e-6)

    class Batches(tf_keras.utils.Sequence):
        def __len__(self):
            return len(batches)

        def __getitem__(self, index):
            return (batches[index],)

    np.testing.assert_allclose(mlp.predict(Batches()), expected, atol=1e-6)
    np.testing.assert_allclose(mlp.predict(Batches(), steps=2), expected[:14], atol=1e-6)
    np.testing.assert_allclose(mlp.predict(iter(batches), steps=2), expected[:14], atol=1e-6)
    dataset = tf.data.Dataset.from_tensor_slices(x).batch(7)
    np.testing.assert_allclose(mlp.predict(dataset), expected, atol=1e-6)
    with pytest.raises(InputError, match="yielded no batches"):
        mlp.predict(iter([]))


def test_predict_classes_and_proba_follow_keras_2(mlp, two_inputs):
    (x,) = random_inputs(mlp.inputs, 20, seed=6)
    probabilities = mlp.predict(x)
    np.testing.assert_array_equal(mlp.predict_proba(x), probabilities)
    np.testing.assert_array_equal(mlp.predict_classes(x, batch_size=4), probabilities.argmax(axis=-1))
    with tf1infer.load(zoo_path("gru")) as binary:
        (sequences,) = random_inputs(binary.inputs, 9, seed=7)
        classes = binary.predict_classes(sequences)
        assert classes.dtype == np.int32 and classes.shape == (9, 1)
        np.testing.assert_array_equal(classes, (binary.predict(sequences) > 0.5).astype("int32"))
    with tf1infer.load(zoo_path("lstm")) as linear:  # Its Dense(2) output is not a probability.
        with pytest.warns(UserWarning, match="invalid probability values"):
            linear.predict_proba(random_inputs(linear.inputs, 30, seed=8)[0])
    with pytest.raises(Tf1InferError, match="predict_classes needs a model with one output; this one has 2"):
        two_inputs.predict_classes(random_inputs(two_inputs.inputs, 2))


def test_close_and_context_manager():
    with tf1infer.load(zoo_path("mlp")) as predictor:
        (x,) = random_inputs(predictor.inputs, 2)
        predictor.predict(x)
    assert predictor.closed
    with pytest.raises(PredictorClosedError, match="closed"):
        predictor.predict(x)
    with pytest.raises(PredictorClosedError):
        predictor(x)
    predictor.close()  # Closing twice is harmless.
    with pytest.raises(RuntimeError):  # The session is closed too.
        predictor.session.run(predictor.outputs[0].name, {predictor.inputs[0].name: x})


def half_plus_two_session():
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, shape=[None, 3], name="x")
        scale = tf.compat.v1.get_variable("scale", initializer=tf.constant([0.5, 1.5, -2.0]))
        y = tf.add(x * scale, 2.0, name="y")
        tf.reduce_sum(y, axis=1, name="total")
        session = tf.compat.v1.Session(graph=graph)
        session.run(tf.compat.v1.global_variables_initializer())
    return session


def test_from_session_wraps_an_existing_graph():
    session = half_plus_two_session()
    x = np.random.default_rng(9).normal(size=(10, 3))
    expected = x.astype("float32") * np.float32([0.5, 1.5, -2.0]) + np.float32(2.0)
    predictor = tf1infer.Predictor.from_session(session, ["x:0"], ["y", "total:0"])
    assert predictor.input_names == ["x"] and predictor.output_names == ["y", "total"]
    y, total = predictor.predict(x, batch_size=4)
    np.testing.assert_allclose(y, expected, atol=1e-6)
    np.testing.assert_allclose(total, expected.sum(axis=1), atol=1e-5)
    assert session.graph.finalized
    with pytest.raises(InputError, match=r"input 'x' expects size 3 on axis 1"):
        predictor.predict(np.ones((2, 4)))
    predictor.close()
    np.testing.assert_allclose(session.run("y:0", {"x:0": x}), expected, atol=1e-6)  # The session stays the caller's.
    session.close()


def test_from_session_names_tensors_by_dict_and_suggests_close_names():
    session = half_plus_two_session()
    graph = session.graph
    predictor = tf1infer.Predictor.from_session(
        session, {"features": graph.get_tensor_by_name("x:0")}, {"shifted": "y:0"}, finalize=False
    )
    assert predictor.input_names == ["features"] and predictor.output_names == ["shifted"]
    assert not graph.finalized
    np.testing.assert_allclose(predictor.predict({"features": np.ones((1, 3))}), [[2.5, 3.5, 0.0]], atol=1e-6)
    with pytest.raises(ModelLoadError, match=r"output 'totl:0' is not in the graph; closest names: total"):
        tf1infer.Predictor.from_session(session, ["x"], ["totl:0"])
    with pytest.raises(ModelLoadError, match=r"op y has 1 output\(s\)"):
        tf1infer.Predictor.from_session(session, ["x"], ["y:3"])
    session.close()


def test_tensorflow_failures_become_prediction_errors():
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, shape=[None, None], name="x")
        tf.reshape(x, [-1, 4], name="rows_of_four")
    session = tf.compat.v1.Session(graph=graph)
    predictor = tf1infer.Predictor.from_session(session, ["x"], ["rows_of_four"])
    assert predictor.predict(np.ones((2, 4))).shape == (2, 4)
    with pytest.raises(
        PredictionError, match=r"TensorFlow failed running the model on inputs 'x': \(3, 3\): InvalidArgumentError"
    ):
        predictor.predict_on_batch(np.ones((3, 3)))
    session.close()


def test_list_and_tuple_feeds_give_identical_outputs(two_inputs):
    features, extra = random_inputs(two_inputs.inputs, 3, seed=10)
    a = as_list(two_inputs([features, extra]))
    b = as_list(two_inputs((features, extra)))
    for left, right in zip(a, b):
        np.testing.assert_array_equal(left, right)


def test_a_graph_with_a_fixed_batch_size_runs_any_number_of_rows(tmp_path):
    """batch_input_shape=(4, ...) (as stateful models and many 2017 scripts wrote it): predict, predict_on_batch and
    a batch size other than 4 all run, in runs of exactly 4 rows with the last one filled up, and equal tf_keras
    run at its own batch size."""
    model = tf_keras.Sequential(
        [tf_keras.Input(batch_shape=(4, 3, 2)), tf_keras.layers.LSTM(5), tf_keras.layers.Dense(2)]
    )
    path = tmp_path / "fixed.h5"
    model.save(str(path))
    x = np.random.default_rng(12).normal(size=(10, 3, 2)).astype("float32")
    want = model.predict(np.concatenate([x, x[-2:]]), batch_size=4, verbose=0)[:10]
    with tf1infer.load(path) as predictor:
        assert predictor.inputs[0].shape == (4, 3, 2)
        np.testing.assert_allclose(predictor.predict(x), want, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(predictor.predict(x, batch_size=3), want, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(predictor.predict_on_batch(x[:1]), want[:1], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(predictor(x[:4]), want[:4], rtol=1e-5, atol=1e-6)
