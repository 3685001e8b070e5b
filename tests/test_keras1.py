"""Keras 1.x HDF5 files (legacy_models/keras1/, written by make_keras1_fixtures.py) against numpy references.

Each reference is computed from the Keras 1 formulas on the Keras 1 weight
layouts (per-gate LSTM/GRU matrices, Theano-ordered kernels, a true
convolution for the Theano backend), so it shares no code with the converter.
"""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest
from conftest import ZOO_DIR

import tf1infer
from tf1infer.errors import ModelLoadError

KERAS1 = ZOO_DIR / "keras1"
# float32 inference against a float64 numpy reference.
ATOL = 1e-5


def reference(name: str) -> tuple[dict, dict]:
    stored = np.load(KERAS1 / f"{name}.npz")
    inputs = {key.split("/", 1)[1]: stored[key] for key in stored if key.startswith("inputs/")}
    outputs = {key.split("/", 1)[1]: stored[key] for key in stored if key.startswith("outputs/")}
    return inputs, outputs


@pytest.mark.parametrize("name", ["conv_merge", "rnn_sequential", "conv_theano", "lambda_py35"])
def test_keras1_file_gives_the_keras1_outputs(name):
    """lambda_py35's three Lambdas are Python 3.5 bytecode, recovered (tests/test_lambda_recovery.py)."""
    inputs, expected = reference(name)
    with tf1infer.load(KERAS1 / f"{name}.h5") as predictor:
        assert predictor.metadata["converted_from_keras1"] is True
        assert predictor.metadata["keras_version"] == "1.2.2"
        assert predictor.input_names == list(inputs)
        assert predictor.output_names == list(expected)
        outputs = predictor.predict(inputs, batch_size=2)
    (want,) = expected.values()
    np.testing.assert_allclose(outputs, want, atol=ATOL, rtol=0)


def test_keras1_sequential_keeps_its_int32_input():
    with tf1infer.load(KERAS1 / "rnn_sequential.h5") as predictor:
        (spec,) = predictor.inputs
        assert predictor.input_names == ["embedding_1_input"]
        assert spec.dtype == np.int32
        assert spec.shape == (None, 7)


def test_keras1_dropout_and_batchnorm_run_in_inference_mode():
    inputs, expected = reference("conv_merge")
    with tf1infer.load(KERAS1 / "conv_merge.h5") as predictor:
        op_types = {op.type for op in predictor.graph.get_operations()}
        first = predictor.predict_on_batch(inputs)
        second = predictor.predict_on_batch(inputs)
    assert not op_types & {"Switch", "Merge", "If", "StatelessIf", "RandomUniform"}
    np.testing.assert_array_equal(first, second)


def _rewrite_config(source, target, edit) -> None:
    shutil.copyfile(source, target)
    with h5py.File(target, "r+") as handle:
        config = json.loads(handle.attrs["model_config"])
        edit(config)
        handle.attrs["model_config"] = json.dumps(config).encode("utf8")


def test_batchnorm_modes_without_keras2_equivalent_are_refused(tmp_path):
    def batch_statistics_at_inference(config):
        for layer in config["config"]["layers"]:
            if layer["class_name"] == "BatchNormalization":
                layer["config"]["mode"] = 2

    target = tmp_path / "bn_mode2.h5"
    _rewrite_config(KERAS1 / "conv_merge.h5", target, batch_statistics_at_inference)
    with pytest.raises(
        ModelLoadError, match=r"bn_mode2.h5: BatchNormalization layer 'batchnormalization_1' uses Keras 1 mode=2"
    ):
        tf1infer.load(target)


def test_merge_of_sequential_models_is_refused_with_the_way_out(tmp_path):
    def merge_of_branches(config):
        branch = {
            "class_name": "Sequential",
            "config": [
                {
                    "class_name": "Dense",
                    "config": {"name": "d", "output_dim": 2, "batch_input_shape": [None, 3], "input_dtype": "float32"},
                }
            ],
        }
        merge = {"class_name": "Merge", "config": {"name": "merge_1", "mode": "concat", "layers": [branch, branch]}}
        config.clear()
        config.update({"class_name": "Sequential", "config": [merge]})

    target = tmp_path / "merged_branches.h5"
    _rewrite_config(KERAS1 / "conv_theano.h5", target, merge_of_branches)
    with pytest.raises(
        ModelLoadError,
        match=r"merged_branches.h5: Merge layer 'merge_1' merges whole Sequential models.*architecture=build_model",
    ):
        tf1infer.load(target)


def test_merge_mode_given_as_python_function_is_refused(tmp_path):
    def function_mode(config):
        for layer in config["config"]["layers"]:
            if layer["class_name"] == "Merge":
                layer["config"].update(mode="<marshalled bytecode>", mode_type="lambda")

    target = tmp_path / "lambda_merge.h5"
    _rewrite_config(KERAS1 / "conv_merge.h5", target, function_mode)
    with pytest.raises(ModelLoadError, match=r"Merge layer 'merge_1' uses mode .*bytecode"):
        tf1infer.load(target)


def test_weights_that_do_not_fit_the_converted_layers_name_both(tmp_path):
    target = tmp_path / "wrong_weights.h5"
    shutil.copyfile(KERAS1 / "conv_theano.h5", target)
    with h5py.File(target, "r+") as handle:
        group = handle["model_weights/dense_1"]
        del group["dense_1_W"]
        group.create_dataset("dense_1_W", data=np.ones((5, 3), "float32"))
    with pytest.raises(
        ModelLoadError,
        match=r"weights stored for layer 'dense_1' have shapes \[\(5, 3\), \(3,\)\], layer 'dense_1' \(Dense\) expects \[\(32, 3\), \(3,\)\]",
    ):
        tf1infer.load(target)


def test_keras2_theano_file_kernels_are_flipped_inside_wrappers_too(tmp_path):
    """A Keras 2 file written by the Theano backend (root attribute backend='theano'): its Conv2D kernels are
    flipped on load as Keras 2 did, inside TimeDistributed too, and a plain file's are not."""
    import tf_keras

    inputs = tf_keras.Input((2, 5, 5, 3))
    x = tf_keras.layers.TimeDistributed(tf_keras.layers.Conv2D(4, (3, 2), name="conv"), name="frames")(inputs)
    model = tf_keras.Model(inputs, tf_keras.layers.Conv3D(2, (1, 2, 2), name="volume")(x))
    path = tmp_path / "theano.h5"
    model.save(str(path))
    with h5py.File(path, "r+") as handle:
        handle.attrs["backend"] = "theano"
    kernel, bias = model.get_layer("frames").layer.get_weights()
    volume_kernel, volume_bias = model.get_layer("volume").get_weights()
    x = np.random.default_rng(4).normal(size=(3, 2, 5, 5, 3)).astype("float32")
    model.get_layer("frames").layer.set_weights([kernel[::-1, ::-1], bias])  # Theano convolves: Keras 2 flipped.
    model.get_layer("volume").set_weights([volume_kernel[::-1, ::-1, ::-1], volume_bias])
    want = model.predict(x, verbose=0)
    with tf1infer.load(path) as predictor:
        assert predictor.metadata["theano_kernels_flipped"] == ["conv", "volume"]
        np.testing.assert_allclose(predictor.predict(x), want, rtol=1e-5, atol=1e-5)
