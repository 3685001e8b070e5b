"""tf1infer.io.images: image folders decoded by TensorFlow, in sorted order, bad files reported.

Reference: the pixel arrays the test encodes. PNG is lossless, so a folder of PNGs at the
model's size must predict exactly what ``predict`` gives on those arrays (times ``rescale``);
an upscale by 2 with nearest interpolation must equal ``np.repeat`` of the pixels.
"""

from __future__ import annotations

import logging

import h5py
import numpy as np
import pytest
import tensorflow as tf
from conftest import zoo_path

import tf1infer
from tf1infer.errors import InputError


def _write_png(path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tf.io.encode_png(pixels).numpy())


@pytest.fixture(scope="module")
def cnn():
    with tf1infer.load(zoo_path("cnn")) as predictor:  # input (None, 16, 16, 3)
        yield predictor


@pytest.fixture()
def pixels():
    return np.random.default_rng(7).integers(0, 256, (9, 16, 16, 3), dtype=np.uint8)


def test_folder_of_pngs_predicts_like_the_arrays(cnn, pixels, tmp_path):
    names = [f"img_{index:02d}.png" for index in range(len(pixels))]
    for name, image in zip(reversed(names), reversed(pixels)):  # Written out of order: read sorted.
        _write_png(tmp_path / name, image)
    source = tf1infer.images(tmp_path, rescale=1 / 255)
    assert source.files == names
    keys, outputs = [], []
    for batch_keys, batch in cnn.predict_iter(source, batch_size=4, with_keys=True):
        keys += batch_keys
        outputs.append(batch)
    assert keys == names
    want = cnn.predict(pixels.astype(np.float32) * np.float32(1 / 255))
    np.testing.assert_allclose(np.concatenate(outputs), want, rtol=0, atol=1e-6)


def test_nearest_upscale_matches_repeated_pixels(cnn, tmp_path):
    small = np.random.default_rng(3).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    _write_png(tmp_path / "small.png", small)
    big = np.repeat(np.repeat(small, 2, axis=0), 2, axis=1).astype(np.float32)
    (have,) = list(cnn.predict_iter(tf1infer.images(tmp_path)))
    np.testing.assert_allclose(have, cnn.predict(big[np.newaxis]), rtol=0, atol=1e-6)


def test_class_subfolders_give_labels_and_bad_files_are_reported(cnn, pixels, tmp_path, caplog):
    folder = tmp_path / "photos"
    for index in range(4):
        _write_png(folder / "cat" / f"{index}.png", pixels[index])
        _write_png(folder / "dog" / f"{index}.png", pixels[4 + index])
    (folder / "cat" / "notes.txt").write_text("not an image")
    (folder / "dog" / "truncated.png").write_bytes((folder / "dog" / "0.png").read_bytes()[:40])
    (folder / "dog" / "empty.jpg").write_bytes(b"")
    (folder / "dog" / ".DS_Store").write_bytes(b"hidden files are not listed")
    out = tmp_path / "out.h5"
    with caplog.at_level(logging.WARNING):
        summary = cnn.predict_to(out, tf1infer.images(folder, labels="inferred"), batch_size=3)
    bad = {"cat/notes.txt", "dog/truncated.png", "dog/empty.jpg"}
    assert summary.rows == 8
    assert {key for key, _ in summary.skipped} == bad
    assert all(f"skipped {name}" in caplog.text for name in bad)  # On the console as they happen.
    with h5py.File(out, "r") as file:
        assert [key.decode() for key in file["keys"][:]] == [f"cat/{i}.png" for i in range(4)] + [
            f"dog/{i}.png" for i in range(4)
        ]
        assert file["labels"][:].tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
        assert file.attrs["class_names"] == '["cat", "dog"]'
        skipped = {key.decode(): reason.decode() for key, reason in file["skipped"][:]}
        np.testing.assert_allclose(file["dense"][:], cnn.predict(pixels[:8].astype(np.float32)), atol=1e-6)
    assert skipped.keys() == bad
    assert "Unknown image file format" in skipped["cat/notes.txt"]
    assert all(reason.startswith("not a decodable image: ") for reason in skipped.values())


def test_decoding_graph_is_built_once_and_finalized(cnn, pixels, tmp_path):
    for index, image in enumerate(pixels):
        _write_png(tmp_path / f"{index}.png", image)
    reader = tf1infer.images(tmp_path).reader_for(cnn._feeds)
    chunks = list(reader.chunks(batch_size=2))
    graph = reader._session.graph
    assert graph.finalized
    operations = len(graph.get_operations())
    list(reader.chunks(batch_size=5))
    assert len(graph.get_operations()) == operations
    assert [chunk.position for chunk in chunks] == [2, 4, 6, 8, 9]
    reader.close()


def test_image_source_errors(cnn, tmp_path):
    with pytest.raises(InputError, match="not a folder of images"):
        tf1infer.images(tmp_path / "missing")
    with pytest.raises(InputError, match="no files to read"):
        tf1infer.images(tmp_path)
    _write_png(tmp_path / "a.png", np.ones((4, 4, 3), np.uint8))
    with pytest.raises(InputError, match="color must be one of"):
        tf1infer.images(tmp_path, color="cmyk")
    with pytest.raises(InputError, match="takes 3 channel\\(s\\); color='grayscale' gives 1"):
        cnn.predict_iter(tf1infer.images(tmp_path, color="grayscale"))
    with pytest.raises(InputError, match="labels='inferred' needs one subfolder per class"):
        tf1infer.images(tmp_path, labels="inferred")
    with tf1infer.load(zoo_path("mlp")) as mlp:
        with pytest.raises(InputError, match="an image folder feeds \\(batch, height, width, channels\\) inputs"):
            mlp.predict_iter(tf1infer.images(tmp_path))
