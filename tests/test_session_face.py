"""predictor.run(fetches, feed_dict): the TF1 session loop idioms, against Session.run and the fixtures' formulas."""

from __future__ import annotations

import importlib.util
import io
from collections import namedtuple

import numpy as np
import pytest
import tensorflow as tf
from conftest import ZOO_DIR, tf1_formula

import tf1infer
from tf1infer.errors import (
    ExportError,
    InputError,
    InvalidOptionError,
    LayerNotFoundError,
    ModelLoadError,
    PredictionError,
    UnsupportedOperationError,
)

TF1 = ZOO_DIR / "tf1"


@pytest.fixture(scope="module")
def frozen():
    with tf1infer.load(TF1 / "frozen.pb") as predictor:
        yield predictor


def _rows(rows: int = 5, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(rows, 4)).astype("float32")


@pytest.mark.parametrize(
    "fetch, feed",
    [
        ("probs:0", "x:0"),
        ("probs", "x"),  # An op name: its first output.
        ("import/probs:0", "import/x:0"),  # Names written against tf.import_graph_def's default "import/" scope.
    ],
)
def test_names_as_old_scripts_write_them(frozen, fetch, feed):
    x = _rows()
    have = frozen.run(fetch, {feed: x})
    np.testing.assert_array_equal(have, frozen.session.run("probs:0", {"x:0": x}))
    np.testing.assert_allclose(have, tf1_formula(x)["probs"], atol=1e-5, rtol=0)


def test_graph_and_session_answer_to_import_prefixed_names(frozen):
    graph = frozen.graph
    assert graph.get_tensor_by_name("import/x:0") is graph.get_tensor_by_name("x:0")
    assert graph.get_operation_by_name("import/probs") is graph.get_operation_by_name("probs")
    x = _rows(4, seed=9)
    np.testing.assert_array_equal(
        frozen.session.run("import/probs:0", {"import/x:0": x}), frozen.run("probs:0", {"x:0": x})
    )
    with pytest.raises(KeyError, match="import/nothing"):
        graph.get_tensor_by_name("import/nothing:0")


def test_structures_of_fetches_come_back_as_given(frozen):
    x = _rows(3, seed=1)
    want = frozen.session.run(["logits:0", "probs:0"], {"x:0": x})
    listed = frozen.run(["logits:0", "probs:0"], {"x:0": x})
    assert isinstance(listed, list) and all(np.array_equal(a, b) for a, b in zip(listed, want))
    keyed = frozen.run({"scores": "logits:0", "p": frozen.graph.get_tensor_by_name("probs:0")}, {"x:0": x})
    assert set(keyed) == {"scores", "p"} and np.array_equal(keyed["p"], want[1])
    Pair = namedtuple("Pair", "logits probs")
    pair = frozen.run(Pair("logits:0", "probs:0"), {frozen.graph.get_tensor_by_name("x:0"): x.tolist()})
    assert isinstance(pair, Pair) and np.array_equal(pair.logits, want[0])


def test_runs_through_the_direct_call_and_keeps_one_runner_per_signature(frozen, monkeypatch):
    calls = []
    monkeypatch.setattr(type(frozen.session), "run", lambda *args, **kwargs: calls.append(args))
    runners = []
    for seed in range(3):
        frozen.run("probs:0", {"x:0": _rows(2, seed)})
        runners.append(frozen._runners[(("x:0",), ("probs:0",))])
    assert calls == []  # Not Session.run: the session runner.
    assert runners[0] is runners[1] is runners[2]  # Made once, kept for the next calls.


def test_unknown_names_suggest_the_closest(frozen):
    with pytest.raises(LayerNotFoundError, match=r"fetch 'prbs:0' is not in the graph; closest names: probs"):
        frozen.run("prbs:0", {"x:0": _rows()})
    with pytest.raises(
        InputError, match=r"feed_dict does not fit the graph: Cannot feed value of shape \(2, 3\) for Tensor x:0"
    ):
        frozen.run("probs:0", {"x:0": np.ones((2, 3), np.float32)})
    with pytest.raises(
        PredictionError,
        match=r"TensorFlow failed running 1 fetch\(es\) fed nothing: InvalidArgumentError.*"
        r"must feed a value for placeholder tensor 'x'",
    ):
        frozen.run("probs:0")


@pytest.fixture(scope="module")
def keep_prob_graph(tmp_path_factory):
    """A frozen TF1 classifier with a dropout keep_prob placeholder, as tutorials of 2016-2018 wrote them."""
    path = tmp_path_factory.mktemp("keep_prob") / "dropout.pb"
    weights = np.random.default_rng(7).normal(size=(4, 3)).astype("float32")
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")
        keep_prob = tf.compat.v1.placeholder(tf.float32, [], name="keep_prob")
        hidden = tf.nn.dropout(tf.matmul(x, tf.constant(weights)), rate=1.0 - keep_prob)
        tf.identity(tf.nn.softmax(hidden), name="out")
    tf.io.write_graph(graph.as_graph_def(), str(path.parent), path.name, as_text=False)
    return path, weights


def test_extra_scalar_feeds_such_as_keep_prob(keep_prob_graph):
    path, weights = keep_prob_graph
    x = _rows(6, seed=2)
    logits = x.astype(np.float64) @ weights
    want = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    with tf1infer.load(path, inputs=["x"], outputs=["out"]) as predictor:
        for keep_prob in (1.0, np.float32(1.0), [1.0]):
            have = predictor.run("import/out:0", {"import/x:0": x, "import/keep_prob:0": np.reshape(keep_prob, ())})
            np.testing.assert_allclose(have, want, atol=1e-5, rtol=0)


def test_scalar_placeholders_are_not_batched_inputs_and_take_constants_at_load(keep_prob_graph):
    path, weights = keep_prob_graph
    x = _rows(9, seed=3)
    logits = x.astype(np.float64) @ weights
    want = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    with tf1infer.load(path, constants={"keep_prob": 1.0}) as predictor:
        assert predictor.input_names == ["x"] and predictor.output_names == ["out"]
        assert predictor.metadata["constants"] == {"keep_prob": 1.0}
        for batch_size in (1, 4, 32):
            np.testing.assert_allclose(predictor.predict(x, batch_size=batch_size), want, atol=1e-5, rtol=0)
    with tf1infer.load(path) as unfed:
        assert unfed.input_names == ["x"]  # Not keep_prob: a scalar holds one value for every row.
        with pytest.raises(
            PredictionError,
            match=r"Placeholder 'keep_prob' is not an input of this Predictor: give it .* "
            r"tf1infer.load\(path, constants=\{'keep_prob': ...\}\)",
        ):
            unfed.predict(x)
    with pytest.raises(ModelLoadError, match=r"constants= names 'dropout', which is not a placeholder of the graph"):
        tf1infer.load(path, constants={"dropout": 1.0})


def test_with_session_block_leaves_the_predictor_session_open():
    with tf1infer.load(TF1 / "frozen.pb") as predictor:
        x = _rows()
        with predictor.session as sess:  # How TF1 code holds a session.
            inside = sess.run("probs:0", {"x:0": x})
            assert tf.compat.v1.get_default_session() is sess
        np.testing.assert_array_equal(predictor.predict(x), inside)
        np.testing.assert_array_equal(predictor.run("probs:0", {"x:0": x}), inside)
    with pytest.raises(RuntimeError, match="closed"):
        predictor.session.run("probs:0", {"x:0": x})


@pytest.fixture(scope="module")
def training_checkpoint(tmp_path_factory):
    """A TF1 classifier saved mid-training, with its labels, loss, optimizer, accuracy and summaries."""
    folder = tmp_path_factory.mktemp("training")
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")
        labels = tf.compat.v1.placeholder(tf.float32, [None, 3], name="y_true")
        weights = tf.compat.v1.get_variable("w", [4, 3], initializer=tf.compat.v1.random_normal_initializer(seed=1))
        bias = tf.compat.v1.get_variable("b", [3], initializer=tf.compat.v1.random_normal_initializer(seed=2))
        logits = tf.compat.v1.nn.xw_plus_b(x, weights, bias, name="logits")
        probs = tf.nn.softmax(logits, name="probs")
        loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits), name="loss")
        tf.compat.v1.train.AdamOptimizer(0.01).minimize(loss, name="train")
        correct = tf.equal(tf.argmax(probs, 1), tf.argmax(labels, 1))
        tf.reduce_mean(tf.cast(correct, tf.float32), name="accuracy")
        tf.compat.v1.summary.scalar("loss", loss)
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            tf.compat.v1.train.Saver().save(session, str(folder / "model.ckpt"))
            w, b = session.run([weights, bias])
    return folder, w, b


def test_a_graph_saved_with_training_ops_loads_for_run_and_predict_says_what_to_name(training_checkpoint, tmp_path):
    """Saved mid-training, the graph's sinks are gradients and summaries: its outputs are not guessed. It loads all
    the same, for run() by name (how such a script calls it); predict, exports, serving and Spark say what to name."""
    folder, w, b = training_checkpoint
    x = _rows(5, seed=4)
    logits = x.astype(np.float64) @ w + b
    want = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    with tf1infer.load(folder) as graph_only:
        assert graph_only.input_names == [] and graph_only.output_names == []
        np.testing.assert_allclose(graph_only.run("probs:0", {"x:0": x}), want, atol=1e-5, rtol=0)
        accuracy = graph_only.run("accuracy:0", {"x:0": x, "y_true:0": np.eye(3, dtype=np.float32)[[0, 1, 2, 0, 1]]})
        assert 0.0 <= accuracy <= 1.0
        words = (
            r"saved with its training ops \(gradients.*not the model's outputs, and some placeholders are labels: "
            r"predict\(\) needs them named\. Load it with tf1infer\.load\(path, inputs=\['x'\], "
            r"outputs=\['probs'\]\); run\(fetches, feed_dict\) works by name without them\. Placeholders: "
            r"x \(float32 \(None, 4\)\), y_true .*Likely outputs: .*probs \(Softmax\)"
        )
        for call in (
            graph_only.predict,
            graph_only.predict_on_batch,
            graph_only,
            lambda a: list(graph_only.predict_iter([a])),
        ):
            with pytest.raises(UnsupportedOperationError, match=words):
                call(x)
        with pytest.raises(ExportError, match="nothing to export without the model's inputs and outputs"):
            tf1infer.export_saved_model(graph_only, tmp_path / "exported")
    with pytest.raises(InvalidOptionError, match="backend='tflite' converts the model's outputs, which are not known"):
        tf1infer.load(folder, backend="tflite")
    if importlib.util.find_spec("aiohttp") is not None:  # The serve extra: serving it stops start-up with the message.
        from tf1infer.serving import Server

        with pytest.raises(ModelLoadError, match=r"cannot serve training: .*saved with its training ops.*outputs="):
            Server([f"training={folder}"], rest_port=0, grpc_port=None, out=io.StringIO()).load()
    x = _rows(5, seed=4)
    logits = x.astype(np.float64) @ w + b
    want = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    with tf1infer.load(folder, outputs=["probs"]) as predictor:
        assert predictor.input_names == ["x"]  # Not the labels, which only the loss and the accuracy read.
        np.testing.assert_allclose(predictor.predict(x), want, atol=1e-5, rtol=0)
        np.testing.assert_allclose(predictor.run("probs:0", {"x:0": x}), want, atol=1e-5, rtol=0)


def test_the_suggestion_names_data_inputs_and_fixes_a_dropout_keep_probability(tmp_path):
    """A TF1 training graph with a keep_prob placeholder and an is_training flag: the suggested inputs= is the batch
    of data, the scalars go to constants= at their inference values, and the labels are suggested for neither."""
    graph = tf.Graph()
    with graph.as_default():
        keep = tf.compat.v1.placeholder(tf.float32, [], name="keep_prob")
        training = tf.compat.v1.placeholder_with_default(False, [], name="is_training")
        flag = tf.compat.v1.placeholder(tf.bool, [], name="use_bias")
        labels = tf.compat.v1.placeholder(tf.float32, [None, 3], name="labels")
        x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="features")
        weights = tf.compat.v1.get_variable("w", [4, 3], initializer=tf.compat.v1.ones_initializer())
        hidden = tf.nn.dropout(x, rate=1.0 - keep)
        logits = tf.where(flag, tf.matmul(hidden, weights) + 1.0, tf.matmul(hidden, weights))
        logits = tf.cond(training, lambda: logits * 1.0, lambda: logits)
        tf.nn.softmax(logits, name="probs")
        loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits))
        tf.compat.v1.train.GradientDescentOptimizer(0.1).minimize(loss)
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            tf.compat.v1.train.Saver().save(session, str(tmp_path / "model.ckpt"))
    x = _rows(3, seed=5)
    with tf1infer.load(tmp_path) as graph_only:
        with pytest.raises(UnsupportedOperationError) as raised:
            graph_only.predict(x)
        message = str(raised.value)
        assert "inputs=['features'], outputs=['probs'], constants={'keep_prob': 1.0, 'use_bias': False})" in message
        assert "labels" not in message.split("Load it with")[1].split(";")[0]  # Listed as a placeholder, not suggested.
        ran = graph_only.run("probs:0", {"features:0": x, "keep_prob:0": 1.0, "use_bias:0": False})
    # The suggestion, taken as written, loads a model whose predict equals that run.
    with tf1infer.load(
        tmp_path, inputs=["features"], outputs=["probs"], constants={"keep_prob": 1.0, "use_bias": False}
    ) as model:
        np.testing.assert_allclose(model.predict(x), ran, atol=1e-6, rtol=0)
        np.testing.assert_allclose(ran, np.full((3, 3), 1.0 / 3.0), atol=1e-6)  # Equal weights: equal logits.
