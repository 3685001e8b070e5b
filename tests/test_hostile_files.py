"""Damaged and forged model files the fuzz campaign found, each pinned down: typed error, bounded time and memory."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import zipfile

import h5py
import numpy as np
import pytest
import tf_keras
from conftest import ZOO_DIR, needs_keras3, zoo_path
from test_fuzz import Worker

import tf1infer
from tf1infer.errors import ModelLoadError

TF1 = ZOO_DIR / "tf1"


# One child for the module, as the fuzz campaign's: it is restarted after a hang or a crash.
_CHILD = Worker()


@pytest.fixture(scope="module", autouse=True)
def _stop_child():
    yield
    _CHILD.stop()
    _CHILD.process = None


def load_in_child(path, **options) -> dict:
    """Load and predict in a child process with the fuzz test's time limit; its result record."""
    _CHILD.send({"path": str(path), "options": options})
    while (result := _CHILD.poll()) is None:
        pass
    return result


def _copy(tmp_path, name: str):
    target = tmp_path / os.path.basename(name)
    shutil.copyfile(name, target)
    return target


@pytest.mark.parametrize("offset", [3072, 4096])
def test_zeroed_global_heap_no_longer_hangs(tmp_path, offset):
    # The hang: libhdf5 walked a global heap whose zeroed free-space object has size 0, forever.
    path = _copy(tmp_path, zoo_path("lstm"))
    data = bytearray(path.read_bytes())
    data[offset : offset + 4096] = bytes(4096)
    path.write_bytes(bytes(data))
    result = load_in_child(path)
    assert result["outcome"] == "typed", result
    assert "global heap at byte 2048 has a free-space object of size 0" in result["message"]
    assert str(path) in result["message"]


def test_forged_variable_length_count_is_refused_before_libhdf5_allocates_it(tmp_path):
    path = _copy(tmp_path, zoo_path("mlp"))
    data = bytearray(path.read_bytes())
    heap = data.find(b"GCOL")
    descriptor = data.find(struct.pack("<QI", heap, 1))  # keras_version: (count, heap address, object index).
    data[descriptor - 4 : descriptor] = struct.pack("<I", 553_648_134)
    path.write_bytes(bytes(data))
    result = load_in_child(path)
    assert result["outcome"] == "typed", result
    assert "claims 553,648,134 elements of a 6-byte heap object" in result["message"]
    assert result["peak_mb"] < 256  # libhdf5 allocated 528 MiB for this 20 KB file before failing.


def test_attribute_of_a_type_keras_never_writes_is_refused_unread(tmp_path):
    path = _copy(tmp_path, zoo_path("mlp"))
    value = np.empty(1, dtype=object)
    value[0] = np.arange(3, dtype="int8")
    with h5py.File(path, "r+") as handle:
        handle.attrs.create("backend", data=value, dtype=h5py.vlen_dtype(np.int8))
    with pytest.raises(
        ModelLoadError,
        match=r"mlp.h5: the HDF5 file is corrupt or forged: attribute 'backend' of '/' has a variable-length sequence type",
    ):
        tf1infer.load(path)


def test_dataset_declaring_more_than_the_file_holds_is_not_allocated(tmp_path):
    path = _copy(tmp_path, zoo_path("mlp"))
    with h5py.File(path, "r+") as handle:
        name = "/model_weights/dense/dense/kernel:0"
        del handle[name]
        handle.create_dataset(name, shape=(2**40,), dtype="float32", chunks=(1024,))
    with pytest.raises(
        ModelLoadError,
        match=r"dataset '/model_weights/dense/dense/kernel:0' declares shape \(1099511627776,\) of float32",
    ):
        tf1infer.load(path)


@pytest.mark.parametrize(
    "stored, message",
    [
        ("5", r"model_config should be a JSON object, found a number 5"),
        ('"Sequential"', r"model_config should be a JSON object, found text 'Sequential'"),
        ('{"class_name": 5, "config": {}}', r"model_config.class_name should be text, found a number 5"),
        (
            '{"class_name": "Sequential", "config": {"layers": {"a": 1}}}',
            r"model_config.config.layers should be a list",
        ),
        (
            '{"class_name": "Sequential", "config": {"layers": [1]}}',
            r"model_config.config.layers\[0\] should be a JSON object",
        ),
        ('{"class_name": "NotALayer", "config": {}}', r"unknown layer class\(es\) NotALayer"),
        ("[" * 100000 + "]" * 100000, r"'model_config' attribute nests too deeply"),
    ],
)
def test_model_config_of_the_wrong_shape_is_named(tmp_path, stored, message):
    path = _copy(tmp_path, zoo_path("mlp"))
    with h5py.File(path, "r+") as handle:
        handle.attrs["model_config"] = stored
    with pytest.raises(ModelLoadError, match=rf"mlp.h5: .*{message}"):
        tf1infer.load(path)


def test_root_attribute_that_is_not_text(tmp_path):
    path = _copy(tmp_path, zoo_path("mlp"))
    with h5py.File(path, "r+") as handle:
        handle.attrs["keras_version"] = np.void(b"\xff\xff")
    with pytest.raises(ModelLoadError, match=r"root attribute 'keras_version' should be text, found void"):
        tf1infer.load(path)


def test_functional_config_whose_nodes_never_connect_is_refused_not_spun_on(tmp_path):
    path = _copy(tmp_path, zoo_path("embedding"))
    with h5py.File(path, "r+") as handle:
        config = json.loads(handle.attrs["model_config"])
        config["config"]["layers"][2]["inbound_nodes"] = []  # The pooling layer: the classifier waits on it forever.
        handle.attrs["model_config"] = json.dumps(config)
    result = load_in_child(path)
    assert result["outcome"] == "typed", result
    assert (
        "layer 'topic' waits on node(s) [['global_average_pooling1d', 0]], which no layer produces" in result["message"]
    )


def test_shared_layers_and_nested_models_still_connect(tmp_path, eager_model):
    # The connection check must not refuse what tf_keras builds: a layer called twice, a nested model called twice.
    inner = tf_keras.Sequential([tf_keras.Input((4,)), tf_keras.layers.Dense(3, activation="tanh")], name="inner")
    shared = tf_keras.layers.Dense(4, name="shared")
    a, b = tf_keras.Input((4,), name="a"), tf_keras.Input((4,), name="b")
    merged = tf_keras.layers.Concatenate()([inner(shared(a)), inner(shared(b))])
    model = tf_keras.Model([a, b], tf_keras.layers.Dense(2, name="out")(merged))
    path = tmp_path / "shared.h5"
    model.save(str(path))
    x = [np.random.default_rng(5).normal(size=(6, 4)).astype("float32") for _ in range(2)]
    with tf1infer.load(path) as predictor:
        np.testing.assert_allclose(predictor.predict(x), eager_model(str(path)).predict(x, verbose=0), atol=1e-6)


@pytest.mark.parametrize(
    "content, message", [(b"", "ValueError: Invalid checkpoint state"), (b"\xff\xfe garbage", "UnicodeDecodeError")]
)
def test_unreadable_checkpoint_state_file_is_named(tmp_path, content, message):
    folder = tmp_path / "meta_v2"
    shutil.copytree(TF1 / "meta_v2", folder)
    (folder / "checkpoint").write_bytes(content)
    with pytest.raises(
        ModelLoadError,
        match=rf"meta_v2/checkpoint: the checkpoint state file is unreadable \({message}.*checkpoint='path/prefix'",
    ):
        tf1infer.load(folder, outputs=["probs"])
    # Naming the checkpoint does not read the state file.
    with tf1infer.load(folder, outputs=["probs"], checkpoint=str(folder / "model.ckpt-7")) as predictor:
        assert predictor.predict(np.ones((2, 4), "float32")).shape == (2, 3)


def test_truncated_checkpoint_data_keeps_tensorflows_reason(tmp_path):
    folder = tmp_path / "meta_v2"
    shutil.copytree(TF1 / "meta_v2", folder)
    data = folder / "model.ckpt-7.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:40])
    with pytest.raises(
        ModelLoadError,
        match=r"checkpoint .*model.ckpt-7 .*(OutOfRange|DataLoss|InvalidArgument)\w* at op 'save/RestoreV2'",
    ):
        tf1infer.load(folder, outputs=["probs"])


def test_keras3_archive_with_a_member_that_fails_its_crc(tmp_path):
    source = ZOO_DIR / "keras3" / "two_in_two_out.keras"
    with zipfile.ZipFile(source) as archive:
        members = {info.filename: archive.read(info.filename) for info in archive.infolist()}
    path = tmp_path / "damaged.keras"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    raw = bytearray(path.read_bytes())
    at = raw.find(members["model.weights.h5"][:64]) + 4096
    raw[at] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(ModelLoadError, match=r"damaged.keras: archive member 'model.weights.h5' is corrupt \(its CRC"):
        tf1infer.load(path)


@pytest.mark.parametrize("content", [b"\xff\xfe{", b"[1, 2]"])
def test_keras3_config_of_the_wrong_kind(tmp_path, content):
    source = ZOO_DIR / "keras3" / "two_in_two_out.keras"
    path = tmp_path / "bad.keras"
    with zipfile.ZipFile(source) as archive, zipfile.ZipFile(path, "w") as out:
        for info in archive.infolist():
            out.writestr(info.filename, content if info.filename == "config.json" else archive.read(info.filename))
    with pytest.raises(
        ModelLoadError,
        match=r"bad.keras: (the archive's config.json is not valid JSON text|config.json should be a JSON object)",
    ):
        tf1infer.load(path)


def test_cli_prints_one_error_line_and_exits_2(tmp_path):
    path = _copy(tmp_path, zoo_path("lstm"))
    data = bytearray(path.read_bytes())
    data[3072 : 3072 + 4096] = bytes(4096)
    path.write_bytes(bytes(data))
    done = subprocess.run(
        [sys.executable, "-m", "tf1infer.cli", "inspect", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("tf1infer: ")]
    assert errors == [
        line
        for line in done.stderr.splitlines()
        if line.strip() and not line.startswith(("WARNING", "I0000", "E0000", "W0000"))
    ]
    assert len(errors) == 1 and errors[0].startswith(f"tf1infer: error: {path}: the HDF5 file is corrupt")
    assert "Traceback" not in done.stderr


@needs_keras3
def test_keras3_weights_that_keras_only_warns_about_are_refused(monkeypatch):
    # Keras 3 warns, and goes on, when a damaged weights file lacks a layer's group: the layer would keep its
    # freshly-initialized weights and the model would give wrong outputs without an error.
    import warnings

    import keras

    real_load = keras.saving.load_model

    def load_and_skip(*args, **kwargs):
        model = real_load(*args, **kwargs)
        warnings.warn(
            "Skipping nested container at 'hidden': no matching group found in the saved file. "
            "Affected layers will retain their freshly-initialized weights.",
            stacklevel=2,
        )
        return model

    monkeypatch.setattr(keras.saving, "load_model", load_and_skip)
    with pytest.raises(
        ModelLoadError,
        match=r"two_in_two_out.keras: Keras 3 could not load all of the stored weights .*Skipping nested container",
    ):
        tf1infer.load(ZOO_DIR / "keras3" / "two_in_two_out.keras")
