"""Outputs of Keras HDF5 models match tf_keras eager predict (abs error <= 1e-5) on random inputs."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import CORPUS_DIR, CUSTOM_OBJECTS, ZOO_DIR, ZOO_MODELS, as_list, corpus_entries, random_inputs, zoo_path

import tf1infer

ATOL = 1e-5  # float32 graph vs eager: same kernels, differences only from batch-dependent blocking.
ROWS = 100  # Not a multiple of 7 or 64: the last batch is partial.


@pytest.fixture(scope="module")
def predictors():
    cache = {}

    def get(path):
        if path not in cache:
            cache[path] = tf1infer.load(path, custom_objects=CUSTOM_OBJECTS)
        return cache[path]

    yield get
    for predictor in cache.values():
        predictor.close()


def assert_matches_eager(predictor, reference, seed: int):
    x = random_inputs(predictor.inputs, ROWS, seed=seed)
    feed = x[0] if len(x) == 1 else x
    for batch_size in (1, 7, 64):
        expected = as_list(reference.predict(feed, batch_size=batch_size, verbose=0))
        got = as_list(predictor.predict(feed, batch_size=batch_size))
        assert len(got) == len(expected)
        for g, e in zip(got, expected):
            assert g.shape == e.shape and g.dtype == e.dtype
            np.testing.assert_allclose(g, e, rtol=0, atol=ATOL, err_msg=f"batch_size={batch_size}")
    # One sess.run over everything agrees too.
    for g, e in zip(as_list(predictor.predict_on_batch(feed)), as_list(reference.predict(feed, verbose=0))):
        np.testing.assert_allclose(g, e, rtol=0, atol=ATOL)


@pytest.mark.parametrize("name", ZOO_MODELS)
def test_zoo_model_matches_eager_keras(name, predictors, eager_model):
    assert_matches_eager(predictors(zoo_path(name)), eager_model(zoo_path(name)), seed=ZOO_MODELS.index(name))


@pytest.mark.parametrize("name", ZOO_MODELS)
def test_zoo_sample_inputs_run(name, predictors, eager_model):
    """The committed sample files feed by input name and give the eager outputs."""
    predictor = predictors(zoo_path(name))
    samples = dict(np.load(ZOO_DIR / "samples" / f"{name}.npz"))
    assert sorted(samples) == sorted(predictor.input_names)
    expected = as_list(eager_model(zoo_path(name)).predict([samples[n] for n in predictor.input_names], verbose=0))
    for g, e in zip(as_list(predictor.predict(samples)), expected):
        np.testing.assert_allclose(g, e, rtol=0, atol=ATOL)


@pytest.mark.parametrize("entry", corpus_entries("keras-h5"))
def test_corpus_keras_h5_matches_reference(entry, predictors, eager_model):
    path = str(CORPUS_DIR / entry["path"])
    predictor = predictors(path)
    assert predictor.input_names == list(entry["inputs"])
    assert predictor.output_names == list(entry["outputs"])
    assert [list(spec.shape) for spec in predictor.inputs] == list(entry["inputs"].values())
    reference = entry["reference"]
    x = np.load(CORPUS_DIR / reference["input"])
    expected = np.load(CORPUS_DIR / reference["output"])
    np.testing.assert_allclose(predictor.predict(x), expected, rtol=0, atol=reference["atol"])
    assert_matches_eager(predictor, eager_model(path), seed=99)
