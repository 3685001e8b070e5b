"""The Keras 2 model surface legacy inference code uses, against tf_keras on the same files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import CORPUS_ABSENT, CORPUS_DIR, ZOO_DIR, corpus_entry, needs_keras3, random_inputs, zoo_path

import tf1infer
from tf1infer.errors import LayerNotFoundError, ModelLoadError, UnsupportedOperationError

ATOL = 1e-5


@pytest.fixture(scope="module")
def cnn():
    with tf1infer.load_model(zoo_path("cnn")) as model:
        yield model


def test_summary_layers_and_shapes_read_as_keras_has_them(cnn, eager_model):
    reference = eager_model(zoo_path("cnn"))
    printed: list[str] = []
    cnn.summary(print_fn=printed.append)
    expected: list[str] = []
    reference.summary(print_fn=expected.append)
    assert printed == expected
    assert [layer.name for layer in cnn.layers] == [layer.name for layer in reference.layers]
    assert [layer.class_name for layer in cnn.layers] == [type(layer).__name__ for layer in reference.layers]
    assert cnn.layers[-1].output_shape == reference.layers[-1].output_shape == (None, 5)
    assert cnn.layers[0].input_shape == (None, 16, 16, 3)
    assert cnn.count_params() == reference.count_params() == 1573
    assert cnn.get_layer("dense").get_config() == reference.get_layer("dense").get_config()
    assert cnn.get_layer(index=-1).name == "dense"
    for view, layer in zip(cnn.layers, reference.layers):
        for have, want in zip(view.get_weights(), layer.get_weights()):
            np.testing.assert_array_equal(have, want)
        assert view.count_params() == layer.count_params()
    assert len(cnn.get_weights()) == len(reference.get_weights())
    # The layers' configs as Keras writes them (build_config records how each was built, eagerly or in a graph).
    assert [layer["config"] for layer in json.loads(cnn.to_json())["config"]["layers"]] == [
        layer["config"] for layer in json.loads(reference.to_json())["config"]["layers"]
    ]


def test_get_layer_of_a_missing_name_lists_the_layers(cnn):
    with pytest.raises(LayerNotFoundError, match=r"no layer named 'fc2'; the model's layers are \['conv2d', "):
        cnn.get_layer("fc2")
    with pytest.raises(ValueError, match=rf"get_layer\(index=40\): the model has {len(cnn.layers)} layers"):
        cnn.get_layer(index=40)


def test_compile_and_make_predict_function_are_accepted_and_change_nothing(cnn):
    x = random_inputs(cnn.inputs, 4, seed=1)[0]
    before = cnn.predict(x)
    assert cnn.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"]) is None
    assert cnn._make_predict_function() is None and cnn.make_predict_function() is None
    np.testing.assert_array_equal(cnn.predict(x), before)
    assert cnn.graph.finalized


@pytest.mark.parametrize(
    "method", ["fit", "fit_generator", "train_on_batch", "evaluate", "set_weights", "load_weights", "optimizer"]
)
def test_training_methods_are_typed_refusals_pointing_to_the_keras3_export(cnn, method):
    with pytest.raises(UnsupportedOperationError, match=r"frozen inference graph.*tf1infer.export_keras"):
        attribute = getattr(cnn, method)
        attribute()


def test_unknown_attributes_are_still_attribute_errors(cnn):
    assert not hasattr(cnn, "no_such_thing")


def test_k_function_idiom_gives_the_inner_layer_output(cnn, eager_model):
    import tf_keras

    reference = eager_model(zoo_path("cnn"))
    x = random_inputs(cnn.inputs, 7, seed=2)[0]
    want = tf_keras.Model(reference.input, reference.layers[-2].output).predict(x, verbose=0)
    assert cnn.input.name == cnn.inputs[0].name  # model.input, as Keras code passes it around.
    features = cnn.function([cnn.layers[-2].output])
    [have] = features([x, 0])  # A learning-phase value, as K.function([model.input, K.learning_phase()], ...) took.
    np.testing.assert_allclose(have, want, atol=ATOL, rtol=0)
    [by_name] = cnn.function("dropout_1")([x])
    np.testing.assert_array_equal(by_name, have)
    with pytest.raises(LayerNotFoundError, match=r"'fc2' is not in the graph.*neither a layer nor a tensor"):
        cnn.function(["fc2"])


@pytest.mark.parametrize("name, layer", [("mlp", "dense_1"), ("two_in_two_out", "dense")])
def test_load_with_layer_outputs_fetches_intermediate_layers(name, layer, eager_model):
    import tf_keras

    reference = eager_model(zoo_path(name))
    sub_model = tf_keras.Model(reference.inputs, [reference.get_layer(layer).output, reference.outputs[0]])
    with tf1infer.load(zoo_path(name), outputs=[layer, reference.output_names[0]]) as predictor:
        assert predictor.output_names == [layer, reference.output_names[0]]
        x = random_inputs(predictor.inputs, 9, seed=3)
        have = predictor.predict(x if len(x) > 1 else x[0], batch_size=4)
        want = sub_model.predict(x if len(x) > 1 else x[0], verbose=0)
        for got, expected in zip(have, want):
            np.testing.assert_allclose(got, expected, atol=ATOL, rtol=0)
    with pytest.raises(ModelLoadError, match=r"'fc2' is not in the graph.*it is not a layer either"):
        tf1infer.load(zoo_path(name), outputs=["fc2"])


def test_save_writes_a_keras_h5_that_loads_back(cnn, tmp_path):
    path = tmp_path / "again.h5"
    cnn.save(path)
    x = random_inputs(cnn.inputs, 3, seed=4)[0]
    with tf1infer.load(path) as again:
        np.testing.assert_array_equal(again.predict(x), cnn.predict(x))
    with pytest.raises(
        UnsupportedOperationError,
        match=r"save\(\) writes Keras .h5 files; for a Keras 3 .keras file use tf1infer.export_keras",
    ):
        cnn.save(tmp_path / "again.keras")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.h5"]


def test_graph_formats_say_they_have_no_keras_layers():
    with tf1infer.load(ZOO_DIR / "tf1" / "frozen.pb") as graph_model:
        with pytest.raises(UnsupportedOperationError, match=r"layers needs a Keras model, and this is a frozen-graph"):
            _ = graph_model.layers
        with pytest.raises(UnsupportedOperationError, match=r"summary needs a Keras model"):
            graph_model.summary()


def test_predict_generator_as_keras2_had_it(cnn):
    x = random_inputs(cnn.inputs, 6, seed=5)[0]
    batches = (x[i : i + 2] for i in range(0, 6, 2))
    np.testing.assert_allclose(cnn.predict_generator(batches, steps=3), cnn.predict(x), atol=1e-6, rtol=1e-6)


def test_model_from_json_then_load_weights(eager_model):
    architecture = (ZOO_DIR / "tf1" / "keras_arch.json").read_text()
    model = tf1infer.model_from_json(architecture)
    model.compile(optimizer="sgd", loss="mse")  # Flask apps compile before loading the weights.
    with pytest.raises(UnsupportedOperationError, match=r"predict: this model has an architecture but no weights yet"):
        model.predict(np.ones((1, 10), np.float32))
    model.load_weights(ZOO_DIR / "tf1" / "keras_weights.h5")
    x = np.random.default_rng(6).normal(size=(5, 10)).astype("float32")
    np.testing.assert_allclose(model.predict(x), eager_model(zoo_path("mlp")).predict(x, verbose=0), atol=ATOL, rtol=0)
    assert [layer.name for layer in model.layers] == ["dense", "dense_1", "dense_2"]
    with pytest.raises(UnsupportedOperationError, match="by_name=True"):
        model.load_weights(ZOO_DIR / "tf1" / "keras_weights.h5", by_name=True)
    model.close()


@pytest.mark.skipif(corpus_entry("keras205_gender_mini_xception") is None, reason=CORPUS_ABSENT)
def test_corpus_model_layers_and_features_as_keras_gives_them():
    """The face_classification mini-Xception (Keras 2.0.5): its layers and an inner feature map, against tf_keras."""
    import tf_keras

    path = CORPUS_DIR / corpus_entry("keras205_gender_mini_xception")["path"]
    reference = tf_keras.models.load_model(path, compile=False)
    x = np.load(CORPUS_DIR / corpus_entry("keras205_gender_mini_xception")["reference"]["input"])
    with tf1infer.load_model(path) as model:
        assert [layer.name for layer in model.layers] == [layer.name for layer in reference.layers]
        assert [layer.output_shape for layer in model.layers] == [layer.output_shape for layer in reference.layers]
        [features] = model.function([model.layers[-3].output])([x, 0])
        want = tf_keras.Model(reference.input, reference.layers[-3].output).predict(x, verbose=0)
        np.testing.assert_allclose(features, want, atol=ATOL, rtol=0)


@needs_keras3
def test_keras3_file_with_layer_outputs():
    import keras

    path = ZOO_DIR / "keras3" / "two_in_two_out.keras"
    reference = keras.saving.load_model(path)
    inner = reference.layers[-3].name
    with tf1infer.load(path, outputs=[inner, "probs"]) as predictor:
        assert predictor.output_names == [inner, "probs"]
        x = random_inputs(predictor.inputs, 5, seed=8)
        want = keras.Model(
            reference.inputs, [reference.get_layer(inner).output, reference.get_layer("probs").output]
        ).predict(x, verbose=0)
        for have, expected in zip(predictor.predict(x), want):
            np.testing.assert_allclose(have, expected, atol=ATOL, rtol=0)
    with pytest.raises(ModelLoadError, match=r"outputs= names \['fc2'\]; the model's layers are"):
        tf1infer.load(path, outputs=["fc2"])
