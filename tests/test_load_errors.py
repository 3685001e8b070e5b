"""Load errors are typed, name the path and the cause, and loading Lambda bytecode is refused by default."""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest
import tf_keras
from conftest import CUSTOM_OBJECTS, random_inputs, zoo_path

import tf1infer
from tf1infer.errors import ModelLoadError, ModelNotFoundError, Tf1InferError, UnsafeModelError


def test_missing_file(tmp_path):
    path = tmp_path / "nope.h5"
    with pytest.raises(ModelNotFoundError, match=f"{path}: no such file or directory"):
        tf1infer.load(path)
    with pytest.raises(FileNotFoundError):
        tf1infer.load_model(str(path))


def test_not_an_hdf5_file(tmp_path):
    path = tmp_path / "model.h5"
    path.write_text("this is not a model\n")
    with pytest.raises(ModelLoadError, match=rf"{path}: not an HDF5 file: expected a Keras model .* found bytes"):
        tf1infer.load(path)
    empty = tmp_path / "empty.h5"
    empty.write_bytes(b"")
    with pytest.raises(ModelLoadError, match="found an empty file"):
        tf1infer.load(empty)


def test_unknown_format(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(b"\x00" * 32)
    with pytest.raises(
        ModelLoadError, match=r"cannot tell the model format of this file; supported formats: .*keras-h5"
    ):
        tf1infer.load(path)


@pytest.mark.parametrize("keep", [0.3, 0.7, 0.95])
def test_truncated_file(tmp_path, keep):
    source = zoo_path("cnn")
    data = open(source, "rb").read()
    path = tmp_path / "truncated.h5"
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(
        ModelLoadError, match=rf"{path}: cannot (be read as HDF5|read the weights).*truncated or corrupt"
    ):
        tf1infer.load(path)


def test_weights_only_file_explains_architecture_and_loads_with_it(tmp_path, eager_model):
    reference = eager_model(zoo_path("mlp"))
    weights = tmp_path / "weights.h5"
    reference.save_weights(str(weights))
    with pytest.raises(ModelLoadError, match=rf"{weights}: holds weights only .*architecture="):
        tf1infer.load(weights)
    arch = tmp_path / "arch.json"
    arch.write_text(reference.to_json())
    (x,) = random_inputs([tf1infer.TensorSpec("x", (None, 10), np.dtype("float32"))], 9)
    expected = reference.predict(x, verbose=0)
    for architecture in (str(arch), reference.to_json(), json.loads(reference.to_json())):
        with tf1infer.load(weights, architecture=architecture) as predictor:
            np.testing.assert_allclose(predictor.predict(x), expected, atol=1e-6)

    def build():
        return tf_keras.models.model_from_json(reference.to_json())

    with tf1infer.load(weights, architecture=build) as predictor:
        np.testing.assert_allclose(predictor.predict(x), expected, atol=1e-6)


def test_architecture_that_does_not_fit_the_weights(tmp_path, eager_model):
    weights = tmp_path / "weights.h5"
    eager_model(zoo_path("mlp")).save_weights(str(weights))
    other = eager_model(zoo_path("custom_layer")).to_json()
    with pytest.raises(ModelLoadError, match=rf"{weights}: the stored weights do not fit the architecture"):
        tf1infer.load(weights, architecture=other, custom_objects=CUSTOM_OBJECTS)


def test_hdf5_file_that_is_not_a_keras_model(tmp_path):
    path = tmp_path / "data.h5"
    with h5py.File(path, "w") as handle:
        handle["table"] = np.arange(5)
        handle.attrs["creator"] = "pandas"
    with pytest.raises(ModelLoadError, match=r"not a Keras model: no 'model_config' attribute .*creator"):
        tf1infer.load(path)


def test_unknown_layer_class_names_it_and_custom_objects():
    with pytest.raises(
        ModelLoadError, match=r"custom_layer.h5: unknown layer class\(es\) Scale .*custom_objects=\{'Scale': Scale\}"
    ):
        tf1infer.load(zoo_path("custom_layer"))


def test_unknown_option_lists_the_valid_ones():
    with pytest.raises(
        TypeError, match=r"option\(s\) custom_object that the keras-h5 loader does not take; it takes: custom_objects"
    ):
        tf1infer.load(zoo_path("mlp"), custom_object={})


def test_compile_is_accepted_and_ignored():
    with tf1infer.load(zoo_path("mlp"), compile=True) as predictor:
        assert predictor.output_shape == (None, 3)


def test_session_config_and_thread_counts():
    import tensorflow as tf

    config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=1)
    with tf1infer.load(zoo_path("mlp"), session_config=config, inter_op_threads=1) as predictor:
        assert predictor.session._config.intra_op_parallelism_threads == 1
        assert predictor.session._config.inter_op_parallelism_threads == 1
    assert config.inter_op_parallelism_threads == 0  # The caller's ConfigProto is not modified.


def test_ops_run_in_the_calling_thread_unless_a_pool_is_asked_for(monkeypatch):
    import tensorflow as tf

    from tf1infer.loaders.base import RUN_IN_CALLER_THREAD

    x = np.random.default_rng(3).normal(size=(5, 10)).astype("float32")
    with tf1infer.load(zoo_path("mlp")) as caller_thread:
        assert caller_thread.session._config.inter_op_parallelism_threads == RUN_IN_CALLER_THREAD
        expected = caller_thread.predict(x)
    with tf1infer.load(zoo_path("mlp"), inter_op_threads=0) as pooled:  # 0: TensorFlow's own choice of pool.
        assert pooled.session._config.inter_op_parallelism_threads == 0
        np.testing.assert_allclose(pooled.predict(x), expected, rtol=0, atol=1e-6)
    config = tf.compat.v1.ConfigProto(inter_op_parallelism_threads=3)
    with tf1infer.load(zoo_path("mlp"), session_config=config) as configured:
        assert configured.session._config.inter_op_parallelism_threads == 3
    monkeypatch.setenv("TF_NUM_INTEROP_THREADS", "2")  # TensorFlow reads it when the config says 0.
    with tf1infer.load(zoo_path("mlp")) as from_environment:
        assert from_environment.session._config.inter_op_parallelism_threads == 0
    with tf1infer.load(zoo_path("mlp"), precision="float16", inter_op_threads=2) as reduced:
        assert reduced.session._config.inter_op_parallelism_threads == 2


# -- Lambda layers -----------------------------------------------------------------------


def lambda_formula(x: np.ndarray) -> np.ndarray:
    """What lambda.h5 computes, from its weights read with h5py: Dense -> 2x+1 -> Dense."""
    with h5py.File(zoo_path("lambda"), "r") as handle:
        group = handle["model_weights"]
        names = [n.decode() if isinstance(n, bytes) else n for n in group.attrs["layer_names"]]
        params = []
        for name in (n for n in names if n.startswith("dense")):
            layer = group[name]
            kernel, bias = (np.asarray(layer[w]) for w in layer.attrs["weight_names"])
            params.append((kernel, bias))
    (k1, b1), (k2, b2) = params
    return ((x @ k1 + b1) * 2.0 + 1.0) @ k2 + b2


def test_lambda_layers_load_by_the_function_read_from_their_bytecode():
    """The zoo's Lambda (x * 2.0 + 1.0) is recovered from its bytecode (tests/test_lambda_recovery.py has the rest);
    one that is not recovered is an UnsafeModelError, a ModelLoadError (tests/test_fuzz.py's hostile files)."""
    x = np.random.default_rng(6).normal(size=(6, 5)).astype("float32")
    with tf1infer.load(zoo_path("lambda")) as predictor:
        assert predictor.metadata["recovered_lambdas"] == [
            "affine: computes x * 2.0 + 1.0 (read from its Python 3.11 bytecode)"
        ]
        np.testing.assert_allclose(predictor.predict(x), lambda_formula(x), atol=1e-5)
    assert issubclass(UnsafeModelError, ModelLoadError)


def test_lambda_replacement_runs_no_stored_bytecode(monkeypatch):
    from tf_keras.src.utils import generic_utils

    def forbidden(*args, **kwargs):
        raise AssertionError("stored bytecode was deserialized")

    monkeypatch.setattr(generic_utils, "func_load", forbidden)
    x = np.random.default_rng(7).normal(size=(13, 5)).astype("float32")
    with tf1infer.load(zoo_path("lambda"), lambdas={"affine": lambda t: t * 2.0 + 1.0}) as predictor:
        np.testing.assert_allclose(predictor.predict(x, batch_size=4), lambda_formula(x), atol=1e-5)


def test_lambda_replacement_can_be_any_callable():
    import functools

    def affine(t, scale, offset):
        return t * scale + offset

    x = np.random.default_rng(8).normal(size=(3, 5)).astype("float32")
    replacement = functools.partial(affine, scale=2.0, offset=1.0)
    with tf1infer.load(zoo_path("lambda"), lambdas={"affine": replacement}) as predictor:
        np.testing.assert_allclose(predictor.predict(x), lambda_formula(x), atol=1e-5)


def test_lambda_names_that_are_not_lambda_layers():
    with pytest.raises(ModelLoadError, match=r"lambdas= names dense, which are not Lambda layers .* are affine"):
        tf1infer.load(zoo_path("lambda"), lambdas={"affine": abs, "dense": abs})


def test_safe_mode_false_runs_bytecode_of_this_python():
    x = np.random.default_rng(9).normal(size=(4, 5)).astype("float32")
    with tf1infer.load(zoo_path("lambda"), safe_mode=False) as predictor:
        np.testing.assert_allclose(predictor.predict(x), lambda_formula(x), atol=1e-5)


def test_safe_mode_false_with_bytecode_from_another_python(tmp_path):
    path = tmp_path / "foreign.h5"
    shutil.copy(zoo_path("lambda"), path)
    with h5py.File(path, "r+") as handle:
        config = json.loads(handle.attrs["model_config"])
        for layer in config["config"]["layers"]:
            if layer["class_name"] == "Lambda":
                code, defaults, closure = layer["config"]["function"]
                layer["config"]["function"] = [code[: len(code) // 2], defaults, closure]  # Unreadable marshal data.
        handle.attrs["model_config"] = json.dumps(config)
    with pytest.raises(
        UnsafeModelError, match=r"bytecode of Lambda layer\(s\) affine cannot be read by this Python .*lambdas="
    ):
        tf1infer.load(path, safe_mode=False)
    with pytest.raises(Tf1InferError):
        tf1infer.load(path)
