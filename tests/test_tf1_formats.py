"""Every TF1-era format loads through tf1infer.load into one finalized graph and session, and gives the formula's outputs."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import tensorflow as tf
from conftest import CORPUS_DIR, HALF_PLUS, ZOO_DIR, corpus_entries, zoo_path
from conftest import tf1_formula as formula

import tf1infer
from tf1infer.errors import InputError, ModelLoadError

TF1 = ZOO_DIR / "tf1"
ATOL = 1e-5


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(11).normal(size=(37, 4)).astype("float32")


@pytest.mark.parametrize(
    "relative, options, fmt",
    [
        ("saved_model", {}, "saved-model"),
        ("saved_model/saved_model.pb", {}, "saved-model"),
        ("tf2_saved_model", {}, "saved-model"),
        ("meta_v2", {"outputs": ["logits", "probs:0"]}, "meta-graph"),
        (
            "meta_v2/model.ckpt-7.meta",
            {"outputs": ["logits", "probs"], "checkpoint": str(TF1 / "meta_v2" / "model.ckpt-7")},
            "meta-graph",
        ),
        ("meta_v1", {"inputs": ["x:0"], "outputs": ["logits", "probs"]}, "meta-graph"),
        ("meta_old_version", {"outputs": ["logits", "probs"]}, "meta-graph"),
        ("frozen.pb", {"outputs": ["logits", "probs"]}, "frozen-graph"),
        ("frozen.pbtxt", {"inputs": ["x"], "outputs": ["logits:0", "probs:0"]}, "frozen-graph"),
    ],
)
def test_fixture_matches_formula(relative, options, fmt, x):
    expected = formula(x)
    with tf1infer.load(TF1 / relative, **options) as predictor:
        assert predictor.metadata["format"] == fmt
        assert predictor.graph.finalized
        assert predictor.output_names == ["logits", "probs"]
        for batch_size in (1, 7, 64):
            logits, probs = predictor.predict(x, batch_size=batch_size)
            np.testing.assert_allclose(logits, expected["logits"], rtol=0, atol=ATOL)
            np.testing.assert_allclose(probs, expected["probs"], rtol=0, atol=ATOL)


def test_saved_model_inputs_are_keyed_by_signature_names(x):
    with tf1infer.load(TF1 / "saved_model") as predictor:
        assert predictor.input_names == ["x"]
        logits, _ = predictor.predict({"x": x})
        np.testing.assert_allclose(logits, formula(x)["logits"], atol=ATOL)
        assert predictor.metadata["saved_model_kind"] == "TF1 SavedModel"
    with tf1infer.load(TF1 / "saved_model", signature="logits_only") as predictor:
        np.testing.assert_allclose(predictor.predict(x), formula(x)["logits"], atol=ATOL)
    with tf1infer.load(TF1 / "tf2_saved_model") as predictor:
        assert predictor.metadata["saved_model_kind"] == "TF2 SavedModel"


def test_stateful_signature_is_refused_unless_allowed(x):
    with pytest.raises(
        ModelLoadError,
        match=r"signature 'count_calls': computing the outputs would change variables through AssignAddVariableOp.*allow_stateful=True",
    ):
        tf1infer.load(TF1 / "saved_model", signature="count_calls")
    with tf1infer.load(TF1 / "saved_model", signature="count_calls", allow_stateful=True) as predictor:
        np.testing.assert_allclose(predictor.predict(x), formula(x)["logits"], atol=ATOL)


def test_old_unparseable_version_is_what_plain_tensorflow_cannot_import():
    with tf.Graph().as_default():
        with pytest.raises(Exception, match="0.12.head"):
            tf.compat.v1.train.import_meta_graph(str(TF1 / "meta_old_version" / "model.ckpt-7.meta"))
    with tf1infer.load(TF1 / "meta_old_version", outputs=["probs"]) as predictor:
        assert predictor.metadata["tensorflow_version"] == "0.12.head"


def test_default_outputs_skip_sinks_that_change_state(x):
    # meta_v2 also has counted_logits, a sink that increments a counter: not a default output.
    with tf1infer.load(TF1 / "meta_v2") as predictor:
        assert predictor.output_names == ["probs"]
        np.testing.assert_allclose(predictor.predict(x), formula(x)["probs"], atol=ATOL)
    with pytest.raises(ModelLoadError, match="would change variables"):
        tf1infer.load(TF1 / "meta_v2", outputs=["counted_logits"])


def test_frozen_graph_defaults_to_placeholders_and_sinks(x):
    with tf1infer.load(TF1 / "frozen.pb") as predictor:  # logits feeds the softmax, so only probs is a sink.
        assert predictor.input_names == ["x"] and predictor.output_names == ["probs"]
        np.testing.assert_allclose(predictor.predict(x), formula(x)["probs"], atol=ATOL)


def test_keras_json_architecture_with_weights(eager_model):
    reference = eager_model(zoo_path("mlp"))
    data = np.random.default_rng(12).normal(size=(9, 10)).astype("float32")
    with tf1infer.load(TF1 / "keras_arch.json", weights=TF1 / "keras_weights.h5") as predictor:
        assert predictor.metadata["format"] == "keras-json"
        assert predictor.metadata["weights"].endswith("keras_weights.h5")
        np.testing.assert_allclose(predictor.predict(data), reference.predict(data, verbose=0), atol=ATOL)
    with pytest.raises(
        ModelLoadError, match=r"keras_arch.json: a JSON file holds the architecture only: pass the weights file"
    ):
        tf1infer.load(TF1 / "keras_arch.json")


# -- the shared corpus -------------------------------------------------------------------------


def _tf_examples(values: np.ndarray, feature: str = "x") -> np.ndarray:
    return np.array(
        [
            tf.train.Example(
                features=tf.train.Features(
                    feature={feature: tf.train.Feature(float_list=tf.train.FloatList(value=[float(v)]))}
                )
            ).SerializeToString()
            for v in values.ravel()
        ],
        dtype=object,
    )


# Signatures fed serialized tf.Example protos, with what they compute (TF Serving's test models).
EXAMPLE_SIGNATURES = {
    "tfserving_saved_model_half_plus_two_cpu": {"regress_x_to_y": 2.0, "regress_x_to_y2": 3.0, "classify_x_to_y": 2.0},
    "tfserving_saved_model_half_plus_three": {"tensorflow/serving/regress": 3.0},
}


@pytest.mark.parametrize("entry", corpus_entries("tf1-saved-model"))
def test_corpus_saved_models_every_signature(entry):
    path = CORPUS_DIR / entry["path"]
    reference = entry["reference"]
    x = np.load(CORPUS_DIR / reference["input"])
    for signature, text in reference["formula"].items():
        scale, offset = HALF_PLUS[text]
        with tf1infer.load(path, signature=signature) as predictor:
            np.testing.assert_allclose(predictor.predict(x), scale * x + offset, rtol=0, atol=reference["atol"])
    for signature, offset in EXAMPLE_SIGNATURES[entry["name"]].items():
        with tf1infer.load(path, signature=signature) as predictor:
            out = predictor.predict(_tf_examples(x), batch_size=3)
            np.testing.assert_allclose(out.reshape(-1), 0.5 * x.ravel() + offset, rtol=0, atol=reference["atol"])


@pytest.mark.parametrize("entry", corpus_entries("tf1-meta-graph+checkpoint"))
def test_corpus_meta_graph_with_v1_checkpoint(entry):
    path = CORPUS_DIR / entry["path"]
    reference = entry["reference"]
    x = np.load(CORPUS_DIR / reference["input"])
    ((tensor, text),) = reference["formula"].items()
    scale, offset = HALF_PLUS[text]
    with tf1infer.load(path) as predictor:  # Defaults: the placeholder in, the sink out.
        assert predictor.outputs[0].name == tensor
        np.testing.assert_allclose(predictor.predict(x), scale * x + offset, rtol=0, atol=reference["atol"])
    with tf1infer.load(path, inputs=["Placeholder:0"], outputs=[tensor]) as predictor:
        np.testing.assert_allclose(
            predictor.predict(x, batch_size=1), scale * x + offset, rtol=0, atol=reference["atol"]
        )


# -- errors ------------------------------------------------------------------------------------


def test_directory_that_is_no_model(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ModelLoadError, match=r"neither a SavedModel .* nor a checkpoint folder .*notes.txt"):
        tf1infer.load(tmp_path)
    with pytest.raises(ModelLoadError, match=r"not a SavedModel directory"):
        tf1infer.load(tmp_path, format="saved-model")


def test_saved_model_without_variables(tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(TF1 / "saved_model", copy)
    shutil.rmtree(copy / "variables")
    with pytest.raises(ModelLoadError, match=r"has variables but variables/variables.index is missing"):
        tf1infer.load(copy)


def test_unknown_tags_and_signatures_list_the_available_ones():
    with pytest.raises(
        ModelLoadError, match=r"no meta graph with tags \['gpu', 'serve'\]; available tag sets: \[\['serve'\]\]"
    ):
        tf1infer.load(TF1 / "saved_model", tags=["serve", "gpu"])
    with pytest.raises(ModelLoadError) as info:
        tf1infer.load(TF1 / "saved_model", signature="classify")
    message = str(info.value)
    assert "no signature 'classify'" in message
    assert "serving_default (tensorflow/serving/predict): (x: float32) -> (logits: float32, probs: float32)" in message
    assert "logits_only" in message and "count_calls" in message


def test_checkpoint_that_does_not_match_the_graph(tmp_path):
    with pytest.raises(
        ModelLoadError, match=r"checkpoint .*tf2_saved_model/variables/variables does not match the graph"
    ):
        tf1infer.load(
            TF1 / "meta_v1", checkpoint=TF1 / "tf2_saved_model" / "variables" / "variables", outputs=["logits"]
        )
    with pytest.raises(ModelLoadError, match=r"checkpoint '.*nothing' not found"):
        tf1infer.load(TF1 / "meta_v2", checkpoint=tmp_path / "nothing", outputs=["logits"])


def test_meta_graph_without_its_checkpoint(tmp_path):
    shutil.copy(TF1 / "meta_v2" / "model.ckpt-7.meta", tmp_path / "model.meta")
    with pytest.raises(ModelLoadError, match=r"has variables but no checkpoint was found beside it .*checkpoint="):
        tf1infer.load(tmp_path / "model.meta", outputs=["logits"])


def test_unknown_tensor_names_suggest_close_ones():
    with pytest.raises(ModelLoadError, match=r"output 'logit:0' is not in the graph; closest names: logits"):
        tf1infer.load(TF1 / "frozen.pb", outputs=["logit:0"])
    with pytest.raises(ModelLoadError, match=r"input 'X' is not in the graph; closest names: x"):
        tf1infer.load(TF1 / "meta_v2", inputs=["X"], outputs=["logits"])


def test_garbage_protobufs(tmp_path):
    bad = tmp_path / "model.pb"
    bad.write_bytes(b"\xff\xfe not a protobuf")
    with pytest.raises(ModelLoadError, match=r"model.pb: not a GraphDef"):
        tf1infer.load(bad)
    meta = tmp_path / "model.meta"
    meta.write_bytes(b"\xff\xfe not a protobuf")
    with pytest.raises(ModelLoadError, match=r"model.meta: not a MetaGraphDef"):
        tf1infer.load(meta)


def _frozen_graph_def() -> tf.compat.v1.GraphDef:
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString((TF1 / "frozen.pb").read_bytes())
    return graph_def


def test_attribute_that_today_ops_no_longer_have_is_ignored(tmp_path):
    graph_def = _frozen_graph_def()
    matmul = next(node for node in graph_def.node if node.op == "MatMul")
    matmul.attr["use_cudnn_on_gpu"].b = True  # An attribute MatMul does not have (any more).
    path = tmp_path / "old_attr.pb"
    path.write_bytes(graph_def.SerializeToString())
    x = np.random.default_rng(5).normal(size=(6, 4)).astype("float32")
    with tf1infer.load(path, outputs=["probs"]) as predictor:
        np.testing.assert_allclose(predictor.predict(x), formula(x)["probs"], atol=ATOL)


def test_op_this_tensorflow_lacks_is_named(tmp_path):
    graph_def = _frozen_graph_def()
    contrib = graph_def.node.add(name="resampled", op="ContribResampler")
    contrib.input.append("x")
    path = tmp_path / "contrib.pb"
    path.write_bytes(graph_def.SerializeToString())
    with pytest.raises(ModelLoadError, match=r"contrib.pb: cannot import the GraphDef: .*ContribResampler"):
        tf1infer.load(path)


def test_string_inputs_refuse_numbers():
    path = CORPUS_DIR / "tfserving_saved_model_half_plus_two_cpu" / "00000123"
    if not path.exists():
        pytest.skip("shared corpus not found")
    with tf1infer.load(path, signature="regress_x_to_y") as predictor:
        with pytest.raises(InputError, match=r"expects object values .*got float64"):
            predictor.predict(np.ones((2,)))
