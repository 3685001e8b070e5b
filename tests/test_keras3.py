"""Keras 3 ``.keras`` archives (legacy_models/keras3/) against Keras 3's own predict."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
from conftest import KERAS3_MISSING, KERAS3_MISSING_REASON

if KERAS3_MISSING:
    pytest.skip(KERAS3_MISSING_REASON, allow_module_level=True)

from conftest import ZOO_DIR, random_inputs

import tf1infer
from tf1infer.errors import ModelLoadError, UnsafeModelError

KERAS3 = ZOO_DIR / "keras3"


@pytest.fixture(scope="module")
def keras3():
    import keras

    return keras


def test_keras3_file_matches_keras3_predict(keras3):
    path = KERAS3 / "two_in_two_out.keras"
    reference_model = keras3.saving.load_model(path)
    with tf1infer.load(path) as predictor:
        assert tf1infer.detect_format(path) == "keras-v3"
        assert predictor.input_names == ["features", "extra"]
        assert predictor.output_names == ["score", "probs"]
        assert predictor.graph.finalized
        assert predictor.metadata["parameters"] == reference_model.count_params()
        for rows in (1, 7, 64):
            inputs = random_inputs(predictor.inputs, rows, seed=rows)
            expected = reference_model.predict(inputs, verbose=0)
            outputs = predictor.predict(inputs, batch_size=16)
            for got, want in zip(outputs, expected):
                np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
        by_name = predictor.predict({"extra": inputs[1], "features": inputs[0]}, batch_size=16)
        np.testing.assert_array_equal(by_name[0], outputs[0])


def test_keras3_lambda_is_refused_in_safe_mode():
    with pytest.raises(
        UnsafeModelError, match=r"lambda.keras: refusing to load: Lambda layer\(s\) double hold Python bytecode"
    ):
        tf1infer.load(KERAS3 / "lambda.keras")


def test_keras3_lambda_runs_with_safe_mode_off(keras3, tmp_path):
    # Written here, by this Python: stored bytecode is only readable by the Python version that wrote it.
    model = keras3.Sequential(
        [keras3.Input((3,), name="values"), keras3.layers.Lambda(lambda x: x * 2.0 + 1.0, name="double")]
    )
    path = tmp_path / "trusted.keras"
    model.save(path)
    values = np.random.default_rng(0).normal(size=(4, 3)).astype("float32")
    with tf1infer.load(path, safe_mode=False) as predictor:
        np.testing.assert_allclose(predictor.predict(values), values * 2.0 + 1.0, atol=1e-6)


def test_zip_without_keras_config_is_named(tmp_path):
    path = tmp_path / "other.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "not a model")
    with pytest.raises(ModelLoadError, match=r"other.keras: a zip archive without config.json.*readme.txt"):
        tf1infer.load(path)


def test_truncated_keras_archive(tmp_path):
    path = tmp_path / "cut.keras"
    path.write_bytes((KERAS3 / "two_in_two_out.keras").read_bytes()[:300])
    with pytest.raises(ModelLoadError, match=r"cut.keras: not a readable .keras archive"):
        tf1infer.load(path)
