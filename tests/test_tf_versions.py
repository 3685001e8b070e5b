"""What differs across the supported TensorFlow range (2.15 ... 2.21, numpy 1.26 and 2.x), on whichever is installed.

make test runs these on the newest TensorFlow and make test-tf TF=2.15 on the oldest: each difference tf1infer
handles is exercised for real at the end where it exists, and simulated (with the same check the code makes) at
the other.
"""

from __future__ import annotations

import json
import shutil
import sys
from importlib import metadata

import h5py
import numpy as np
import pytest
from conftest import ZOO_DIR, assert_same_rows, random_inputs, zoo_path
from packaging.requirements import Requirement

import tf1infer
from tf1infer.errors import MissingDependencyError
from tf1infer.loaders import keras_versions


def _requirement(name: str) -> Requirement:
    for text in metadata.requires("tf1infer") or []:
        requirement = Requirement(text)
        if requirement.name == name and requirement.marker is None:
            return requirement
    raise AssertionError(f"tf1infer does not require {name}")


def test_installed_tensorflow_and_numpy_are_in_the_declared_range():
    import tensorflow as tf

    for name, version in (("tensorflow", tf.__version__), ("numpy", np.__version__)):
        assert _requirement(name).specifier.contains(version), (name, version, str(_requirement(name)))
    # tf-keras is not a requirement (pip would upgrade an older TensorFlow to meet the newest tf-keras): an extra.
    assert all(
        Requirement(text).name != "tf-keras" or Requirement(text).marker is not None
        for text in metadata.requires("tf1infer") or []
    )


def test_a_file_saved_by_a_newer_tf_keras_loads_on_every_release(tmp_path):
    # tf-keras 2.16+ records InputLayer(optional=False); tf-keras 2.15 refuses the argument. tf1infer drops it where
    # the installed InputLayer does not take it (its signature says), so the same file loads at both ends.
    path = tmp_path / "newer.h5"
    shutil.copy(zoo_path("two_in_two_out"), path)
    with h5py.File(path, "r+") as file:
        config = json.loads(file.attrs["model_config"])
        inputs = [layer for layer in config["config"]["layers"] if layer["class_name"] == "InputLayer"]
        assert len(inputs) == 2
        for layer in inputs:
            layer["config"]["optional"] = False
        file.attrs["model_config"] = json.dumps(config)
    with tf1infer.load(zoo_path("two_in_two_out")) as original, tf1infer.load(path) as newer:
        x = random_inputs(original.inputs, 16, seed=3)
        for got, want in zip(newer.predict(x), original.predict(x)):
            assert_same_rows(got, want)


def test_keras_models_without_tf_keras_say_which_release_to_install(monkeypatch):
    import tensorflow as tf

    minor = ".".join(tf.__version__.split(".")[:2])
    monkeypatch.setitem(sys.modules, "tf_keras", None)  # As if tf-keras were not installed.
    with pytest.raises(MissingDependencyError) as raised:
        tf1infer.load(zoo_path("mlp"))
    message = str(raised.value)
    assert message.startswith(f"{zoo_path('mlp')}: Keras models are rebuilt with Keras 2 (the tf-keras package)")
    assert f"pip install 'tf-keras~={minor}.0'" in message
    monkeypatch.undo()
    import tf_keras

    monkeypatch.setattr(tf_keras, "__version__", "2.99.0")  # As if pip had been bypassed: the wrong release.
    with pytest.raises(
        MissingDependencyError,
        match=rf"tf-keras 2.99.0 runs on TensorFlow 2.99, but TensorFlow {minor} "
        rf"is installed; install the matching release: pip install 'tf-keras~={minor}.0'",
    ):
        tf1infer.load(zoo_path("mlp"))
    monkeypatch.setitem(sys.modules, "tf_keras", None)
    # The formats that need no Keras still load.
    with tf1infer.load(ZOO_DIR / "tf1" / "saved_model") as predictor:
        assert predictor.outputs


def _without_keras3(monkeypatch) -> None:
    """Where Keras 3 is installed, hide it the way tf1infer looks for it; where it is not (TF 2.15), the real thing."""
    if keras_versions.keras3_version() is not None:
        monkeypatch.setattr(keras_versions, "keras3_version", lambda: None)


def test_keras3_files_and_the_keras3_export_are_refused_without_keras3(monkeypatch, tmp_path):
    import tensorflow as tf

    real = keras_versions.keras3_version() is None
    _without_keras3(monkeypatch)
    minor = ".".join(tf.__version__.split(".")[:2])
    keras3_file = ZOO_DIR / "keras3" / "two_in_two_out.keras"
    with pytest.raises(MissingDependencyError) as raised:
        tf1infer.load(keras3_file)
    message = str(raised.value)
    assert message.startswith(f"{keras3_file}: a .keras file (written by Keras 3.")
    assert (
        f"loads only with Keras 3, which needs TensorFlow 2.16 or later; this environment has TensorFlow {minor}"
        in message
    )
    if real:
        assert "keras 2.15.0 is Keras 2" in message or "keras is not installed" in message

    import tf1infer.export.keras3 as keras3_export

    monkeypatch.setattr(keras3_export, "keras3_available", keras_versions.keras3_version)
    with pytest.raises(
        MissingDependencyError,
        match=r"the Keras 3 export runs only with Keras 3, which needs TensorFlow "
        r"2\.16 or later; this environment has TensorFlow 2\.\d+.*export_saved_model",
    ):
        tf1infer.export_keras(zoo_path("mlp"), tmp_path / "mlp.keras")
    assert not list(tmp_path.iterdir())


def test_the_session_runner_finds_its_private_entry_points_here():
    # The direct call uses private Session members (checked by name, not by version; make_callable otherwise).
    # Both ends of the range have them: a release that drops one shows up here before it slows anyone down.
    from tf1infer.loaders import load_graph
    from tf1infer.runtime.session_runner import SessionRunner, session_callable

    loaded = load_graph(zoo_path("mlp"))
    try:
        run = session_callable(loaded.session, loaded.inputs, loaded.outputs)
        assert isinstance(run, SessionRunner), type(run)
        x = np.random.default_rng(1).random((5, 10), dtype=np.float32)
        assert_same_rows(run(x)[0], loaded.session.run(loaded.outputs[0], {loaded.inputs[0]: x}))
    finally:
        loaded.session.close()
