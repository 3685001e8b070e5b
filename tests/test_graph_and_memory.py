"""The inference graph is built once: finalized, no training branches, flat op count and memory, thread-safe."""

from __future__ import annotations

import gc
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import psutil
import pytest
import tensorflow as tf
from conftest import CUSTOM_OBJECTS, ZOO_MODELS, as_list, random_inputs, zoo_path

import tf1infer

TRAINING_SWITCH_OPS = {"If", "StatelessIf", "Switch", "Merge", "PlaceholderWithDefault"}


@pytest.mark.parametrize("name", ZOO_MODELS)
def test_graph_is_finalized_without_training_branches(name):
    with tf1infer.load(zoo_path(name), custom_objects=CUSTOM_OBJECTS) as predictor:
        graph = predictor.graph
        assert graph.finalized
        op_types = {op.type for op in graph.get_operations()}
        assert not op_types & TRAINING_SWITCH_OPS, op_types & TRAINING_SWITCH_OPS
        assert not [op.name for op in graph.get_operations() if "learning_phase" in op.name]
        with pytest.raises(RuntimeError, match="finalized"):
            with graph.as_default():
                tf.constant(1.0)


def test_loading_changes_no_process_wide_state():
    import tf_keras

    eager = tf_keras.models.load_model(zoo_path("cnn"), compile=False)  # Built before any tf1infer load.
    (x,) = random_inputs([tf1infer.TensorSpec("x", (None, 16, 16, 3), np.dtype("float32"))], 3)
    before = tf.compat.v1.get_default_graph()
    with tf1infer.load(zoo_path("cnn")) as predictor, tf1infer.load(zoo_path("lambda"), lambdas={"affine": abs}):
        expected = predictor.predict(x)
    assert tf.executing_eagerly()
    assert tf.compat.v1.get_default_graph() is before
    assert tf.compat.v1.get_default_session() is None
    # tf_keras swaps layer classes between v1 and v2 bases process-wide; the eager model must still work.
    np.testing.assert_allclose(eager.predict(x, verbose=0), expected, atol=1e-5)
    np.testing.assert_allclose(eager(x, training=False).numpy(), expected, atol=1e-5)


def test_dropout_and_batchnorm_outputs_are_identical_on_repeated_calls():
    with tf1infer.load(zoo_path("cnn")) as predictor:
        (x,) = random_inputs(predictor.inputs, 32, seed=3)
        first = predictor.predict(x)
        for _ in range(5):
            np.testing.assert_array_equal(predictor.predict(x), first)
            np.testing.assert_array_equal(predictor.predict_on_batch(x), predictor.predict_on_batch(x))
        # Dropout at inference keeps every unit: no row is zeroed out.
        assert np.all(first.sum(axis=1) > 0.999)


def test_op_count_does_not_change_over_2000_calls():
    with tf1infer.load(zoo_path("mlp")) as predictor:
        (x,) = random_inputs(predictor.inputs, 4, seed=4)
        op_count = len(predictor.graph.get_operations())
        for index in range(1000):
            predictor.predict_on_batch(x)
            predictor.predict(x[: 1 + index % 4])
        assert len(predictor.graph.get_operations()) == op_count


def test_rss_grows_less_than_2mb_over_5000_calls():
    process = psutil.Process()
    with tf1infer.load(zoo_path("mlp")) as predictor:
        (x,) = random_inputs(predictor.inputs, 8, seed=5)
        for _ in range(1000):  # Warm-up: allocator pools and caches settle.
            predictor.predict_on_batch(x)
        gc.collect()
        before = process.memory_info().rss
        for _ in range(5000):
            predictor.predict_on_batch(x)
        gc.collect()
        growth = process.memory_info().rss - before
    assert growth < 2 * 1024 * 1024, f"RSS grew by {growth / 1024:.0f} KiB over 5,000 calls"


@pytest.mark.parametrize("name", ["mlp", "two_in_two_out", "lstm"])
def test_threads_get_exactly_the_serial_results(name):
    with tf1infer.load(zoo_path(name)) as predictor:
        jobs = [random_inputs(predictor.inputs, 1 + index % 9, seed=index) for index in range(96)]
        feeds = [job[0] if len(job) == 1 else job for job in jobs]
        serial = [as_list(predictor.predict_on_batch(feed)) for feed in feeds]
        barrier = threading.Barrier(6)

        def run(index):
            if index < 6:
                barrier.wait()  # Start the first calls together.
            method = predictor.predict if index % 2 else predictor.predict_on_batch
            return index, as_list(method(feeds[index]))

        with ThreadPoolExecutor(max_workers=6) as pool:
            results = list(pool.map(run, range(len(feeds))))
        for index, outputs in results:
            for got, want in zip(outputs, serial[index]):
                np.testing.assert_array_equal(got, want)


def test_several_predictors_live_in_one_process():
    first = tf1infer.load(zoo_path("mlp"))
    second = tf1infer.load(zoo_path("mlp"))
    other = tf1infer.load(zoo_path("cnn"))
    try:
        assert len({id(p.graph) for p in (first, second, other)}) == 3
        assert len({id(p.session) for p in (first, second, other)}) == 3
        (x,) = random_inputs(first.inputs, 5, seed=6)
        np.testing.assert_array_equal(first.predict(x), second.predict(x))
        second.close()
        assert first.predict(x).shape == (5, 3)  # Closing one leaves the others working.
        assert other.predict(random_inputs(other.inputs, 2)[0]).shape == (2, 5)
    finally:
        for predictor in (first, second, other):
            predictor.close()
