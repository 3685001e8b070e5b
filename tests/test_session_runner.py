"""The Session's direct call (tf1infer.runtime.session_runner): Session.run's outputs and errors without its per-call Python."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from conftest import CUSTOM_OBJECTS, ZOO_MODELS, as_list, random_inputs, zoo_path

import tf1infer
from tf1infer.errors import PredictionError
from tf1infer.runtime import session_runner
from tf1infer.runtime.session_runner import SessionRunner, session_callable


def runner_and_tensors(predictor):
    graph = predictor.graph
    inputs = [graph.get_tensor_by_name(spec.name) for spec in predictor.inputs]
    outputs = [graph.get_tensor_by_name(spec.name) for spec in predictor.outputs]
    return SessionRunner(predictor.session, inputs, outputs), inputs, outputs


def count_session_run_calls(monkeypatch, session) -> list:
    """Record every call that goes through Session.run itself (the path the direct call skips)."""
    calls = []
    real_run = session.run

    def recorded(*args, **kwargs):
        calls.append(args)
        return real_run(*args, **kwargs)

    monkeypatch.setattr(session, "run", recorded)
    return calls


@pytest.mark.parametrize("name", ZOO_MODELS)
def test_direct_call_gives_session_run_outputs_on_every_zoo_model(name, monkeypatch):
    with tf1infer.load(zoo_path(name), custom_objects=CUSTOM_OBJECTS) as predictor:
        runner, inputs, outputs = runner_and_tensors(predictor)
        for rows, seed in ((1, 1), (5, 2)):
            arrays = random_inputs(predictor.inputs, rows, seed=seed)
            want = predictor.session.run(outputs, dict(zip(inputs, arrays)))
            calls = count_session_run_calls(monkeypatch, predictor.session)
            have = runner(*arrays)
            monkeypatch.undo()
            assert calls == [], "the direct call went through Session.run"
            assert len(have) == len(want)
            for got, expected in zip(have, want):  # The same rows in the same batch, same kernels: exactly equal.
                assert got.dtype == expected.dtype and got.shape == expected.shape
                np.testing.assert_array_equal(got, expected)


def test_the_predictor_runs_through_the_direct_call(mlp, monkeypatch):
    x = random_inputs(mlp.inputs, 3, seed=4)[0]
    want = mlp.session.run(mlp.graph.get_tensor_by_name(mlp.outputs[0].name), {mlp.inputs[0].name: x})
    calls = count_session_run_calls(monkeypatch, mlp.session)
    np.testing.assert_array_equal(mlp.predict_on_batch(x), want)
    np.testing.assert_array_equal(mlp.predict(x, batch_size=2)[:2], mlp.predict_on_batch(x[:2]))
    assert calls == []


def half_plus_two():
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, shape=[None, 3], name="x")
        y = tf.add(x * 0.5, 2.0, name="y")
    return graph, x, y


def test_arrays_session_run_would_convert_or_refuse_go_through_session_run(monkeypatch):
    graph, x, y = half_plus_two()
    with tf.compat.v1.Session(graph=graph) as session:
        runner = SessionRunner(session, [x], [y])
        calls = count_session_run_calls(monkeypatch, session)
        values = np.random.default_rng(3).normal(size=(4, 3))
        [converted] = runner(values)  # float64: Session.run converts it to the placeholder's float32.
        assert converted.dtype == np.float32
        np.testing.assert_allclose(converted, values.astype(np.float32) * 0.5 + 2.0, rtol=1e-6)
        [from_list] = runner(values.tolist())
        np.testing.assert_array_equal(from_list, converted)
        assert len(calls) == 2
        with pytest.raises(ValueError, match=r"Cannot feed value of shape \(2, 4\)"):
            runner(np.ones((2, 4), np.float32))  # Fed directly, TensorFlow would not check the shape at all.
        assert len(calls) == 3
        [direct] = runner(values.astype(np.float32))
        assert len(calls) == 3
        np.testing.assert_array_equal(direct, converted)
    with pytest.raises(RuntimeError, match="Attempted to use a closed Session"):
        runner(values.astype(np.float32))


def test_tensorflow_errors_name_the_failing_op_as_session_run_does():
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, shape=[None, None], name="x")
        rows = tf.reshape(x, [-1, 4], name="rows_of_four")
    with tf.compat.v1.Session(graph=graph) as session:
        runner = SessionRunner(session, [x], [rows])
        with pytest.raises(tf.errors.InvalidArgumentError) as direct:
            runner(np.ones((3, 3), np.float32))
        with pytest.raises(tf.errors.InvalidArgumentError) as through_run:
            session.run(rows, {x: np.ones((3, 3), np.float32)})
        assert direct.value.op is not None and direct.value.op.name == "rows_of_four"
        assert direct.value.message == through_run.value.message
        predictor = tf1infer.Predictor.from_session(session, ["x"], ["rows_of_four"])
        with pytest.raises(PredictionError, match=r"InvalidArgumentError at op 'rows_of_four'"):
            predictor.predict_on_batch(np.ones((3, 3), np.float32))


def test_a_graph_left_open_may_grow_between_calls():
    graph, x, y = half_plus_two()
    with tf.compat.v1.Session(graph=graph) as session:
        runner = SessionRunner(session, [x], [y])
        values = np.random.default_rng(5).normal(size=(2, 3)).astype(np.float32)
        [before] = runner(values)
        with graph.as_default():
            doubled = tf.multiply(y, 2.0, name="doubled")
        np.testing.assert_allclose(session.run(doubled, {x: values}), before * 2.0, rtol=1e-6)
        [after] = runner(values)
        np.testing.assert_array_equal(after, before)
        np.testing.assert_allclose(before, values * 0.5 + 2.0, rtol=1e-6)


def test_without_the_entry_points_it_falls_back_to_make_callable(monkeypatch):
    monkeypatch.setattr(
        session_runner, "_SESSION_ENTRY_POINTS", (*session_runner._SESSION_ENTRY_POINTS, "_not_in_any_tf")
    )
    graph, x, y = half_plus_two()
    with tf.compat.v1.Session(graph=graph) as session:
        run = session_callable(session, [x], [y])
        assert not isinstance(run, SessionRunner)
        values = np.random.default_rng(6).normal(size=(3, 3)).astype(np.float32)
        [have] = as_list(run(values))
        np.testing.assert_allclose(have, values * 0.5 + 2.0, rtol=1e-6)


def test_a_closed_session_is_refused_when_the_predictor_is_made():
    graph, x, y = half_plus_two()
    session = tf.compat.v1.Session(graph=graph)
    session.close()
    with pytest.raises(
        tf1infer.errors.Tf1InferError, match="cannot prepare the session to run the model: Session has been closed"
    ):
        tf1infer.Predictor.from_session(session, ["x"], ["y"])


def test_a_callers_session_closed_after_the_predictor_was_made_fails_with_a_prediction_error():
    graph, x, y = half_plus_two()
    session = tf.compat.v1.Session(graph=graph)
    predictor = tf1infer.Predictor.from_session(session, ["x"], ["y"])
    values = np.random.default_rng(7).normal(size=(2, 3)).astype(np.float32)
    np.testing.assert_allclose(predictor.predict_on_batch(values), values * 0.5 + 2.0, rtol=1e-6)
    session.close()  # The caller's own session: the Predictor does not own it.
    with pytest.raises(
        PredictionError, match=r"the session failed running the model on inputs 'x': \(2, 3\): .*closed Session"
    ):
        predictor.predict_on_batch(values)
