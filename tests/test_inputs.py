"""Input conversion: safe casts and layouts are accepted, everything else is an InputError naming the input."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import random_inputs, zoo_path

import tf1infer
from tf1infer.errors import InputError, Tf1InferError


@pytest.fixture(scope="module")
def embedding():
    with tf1infer.load(zoo_path("embedding")) as predictor:
        yield predictor


@pytest.fixture(scope="module")
def x10():
    return np.random.default_rng(10).normal(size=(6, 10)).astype("float32")


def test_float64_ints_and_lists_are_cast_like_keras(mlp, x10):
    expected = mlp.predict(x10)
    np.testing.assert_allclose(mlp.predict(x10.astype("float64")), expected, atol=1e-7)
    np.testing.assert_allclose(mlp.predict(x10.tolist()), expected, atol=1e-7)
    np.testing.assert_allclose(mlp.predict_on_batch(tuple(map(tuple, x10))), expected, atol=1e-7)
    ints = np.arange(60).reshape(6, 10) % 5
    np.testing.assert_allclose(mlp.predict(ints), mlp.predict(ints.astype("float32")), atol=0)


def test_non_contiguous_and_broadcast_views(mlp, x10):
    wide = np.asfortranarray(x10)
    assert not wide.flags.c_contiguous
    np.testing.assert_allclose(mlp.predict_on_batch(wide), mlp.predict_on_batch(x10), atol=0)
    strided = np.repeat(x10, 2, axis=0)[::2]
    np.testing.assert_allclose(mlp.predict(strided), mlp.predict(x10), atol=0)
    row = x10[0]
    broadcast = np.broadcast_to(row, (40, 10))
    assert broadcast.strides[0] == 0
    out = mlp.predict(broadcast, batch_size=16)
    np.testing.assert_allclose(out, np.repeat(mlp.predict(row[None]), 40, axis=0), atol=1e-6)


def test_one_dimensional_input_is_expanded_for_one_feature_inputs():
    with tf1infer.load(zoo_path("mlp")) as predictor:
        with pytest.raises(InputError, match=r"size 10 on axis 1.*got shape \(10,\).*single sample"):
            predictor.predict(np.ones(10, dtype="float32") * 0.5)


def test_empty_batch_returns_empty_outputs(mlp, two_inputs, x10):
    out = mlp.predict(x10[:0])
    assert out.shape == (0, 3) and out.dtype == np.float32
    assert mlp.predict_on_batch(x10[:0]).shape == (0, 3)
    score, probs = two_inputs.predict([np.zeros((0, 6)), np.zeros((0, 3))])
    assert score.shape == (0, 1) and probs.shape == (0, 4)


def test_multi_input_list_and_dict_agree(two_inputs):
    features, extra = random_inputs(two_inputs.inputs, 11, seed=1)
    by_list = two_inputs.predict([features, extra], batch_size=4)
    by_dict = two_inputs.predict({"extra": extra, "features": features}, batch_size=4)
    by_tensor_name = two_inputs.predict({"extra:0": extra, "features:0": features})
    for a, b, c in zip(by_list, by_dict, by_tensor_name):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(a, c, atol=1e-6)
    assert [o.shape for o in by_list] == [(11, 1), (11, 4)]


@pytest.mark.parametrize(
    "bad, message",
    [
        (
            np.ones((4, 10, 1), "float32"),
            r"input 'input_1' expects rank-2 arrays \(of shape \(None, 10\), float32\); got shape \(4, 10, 1\)",
        ),
        (np.ones((4, 9), "float32"), r"input 'input_1' expects size 10 on axis 1 .*got shape \(4, 9\)"),
        (np.full((4, 10), "a"), r"input 'input_1' expects float32 values .*got <U1 \(strings\)"),
        ([[1.0, 2.0], [3.0]], r"input 'input_1' could not be converted to an array"),
        (None, r"input 'input_1' is None"),
        ([np.ones((2, 10)), np.ones((2, 10))], r"model requires 1 input \('input_1'\); got a list of 2 arrays"),
        ({"input_2": np.ones((2, 10))}, r"unknown input name 'input_2'; the model's inputs are 'input_1'"),
        (np.array([[1 + 2j] * 10]), r"expects float32 values .*complex"),
    ],
)
def test_bad_inputs_raise_input_error_naming_the_input(mlp, bad, message):
    for method in (mlp.predict, mlp.predict_on_batch):
        with pytest.raises(InputError, match=message):
            method(bad)


def test_input_error_is_a_value_error_and_a_tf1infer_error(mlp):
    with pytest.raises(ValueError):
        mlp.predict(np.ones((2, 3)))
    with pytest.raises(Tf1InferError):
        mlp.predict(np.ones((2, 3)))


def test_multi_input_errors(two_inputs):
    features, extra = random_inputs(two_inputs.inputs, 3)
    with pytest.raises(InputError, match=r"model requires 2 inputs \('features', 'extra'\); got a list of 1"):
        two_inputs.predict([features])
    with pytest.raises(InputError, match=r"model requires 2 inputs .*got ndarray"):
        two_inputs.predict(features)
    with pytest.raises(InputError, match=r"missing input\(s\) extra"):
        two_inputs.predict({"features": features})
    with pytest.raises(InputError, match=r"different numbers of samples: 'features': 3, 'extra': 2"):
        two_inputs.predict([features, extra[:2]])


def test_integer_inputs_accept_whole_floats_and_refuse_fractions(embedding):
    (ids,) = random_inputs(embedding.inputs, 5, seed=2)
    expected = embedding.predict(ids)
    np.testing.assert_array_equal(embedding.predict(ids.astype("float32")), expected)
    np.testing.assert_array_equal(embedding.predict(ids.astype("int64")), expected)
    with pytest.raises(
        InputError, match=r"input 'token_ids' expects int32 values; got float64 values that are not whole"
    ):
        embedding.predict(ids + 0.5)
    with pytest.raises(InputError, match=r"outside int32's range"):
        embedding.predict(ids.astype("int64") + 2**40)


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, "8", True])
def test_invalid_batch_size(mlp, x10, batch_size):
    with pytest.raises(InputError, match="batch_size must be a positive integer"):
        mlp.predict(x10, batch_size=batch_size)
