"""precision="int8" on the TF Lite backend: calibration sources, accuracy on real photographs, refusals."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from conftest import CORPUS_ABSENT, CORPUS_DIR, ZOO_DIR, random_inputs, zoo_path

import tf1infer
from tf1infer.backends import int8 as int8_backend
from tf1infer.errors import InputError, InvalidOptionError, ModelLoadError
from tf1infer.runtime import kernels

MINI_XCEPTION = CORPUS_DIR / "keras205_gender_mini_xception.hdf5"
needs_corpus = pytest.mark.skipif(not MINI_XCEPTION.is_file(), reason=CORPUS_ABSENT)
# Measured on 1,000 held-out crops: top-1 agreement 87.2%, mean |int8 - float32| 0.028, max 0.21 (scores in [0, 1]).
# Every flip was a near tie (float32's two scores less than 0.2 apart); where they are 0.2 or more apart int8
# agreed on all 482 crops.
MIN_TOP1_AGREEMENT = 0.80
MIN_CONFIDENT_AGREEMENT = 0.98
CONFIDENT_GAP = 0.2
MAX_MEAN_ABS = 0.05
MAX_ABS = 0.3


@pytest.fixture(scope="module")
def photo_crops():
    """Real photographs, not noise: calibration crops and held-out crops from different pictures."""
    from tf1infer.bench.int8 import CALIBRATION_PHOTOS, held_out_inputs, mini_xception_inputs, photo_crops

    calibration = mini_xception_inputs(photo_crops(CALIBRATION_PHOTOS))
    return calibration, held_out_inputs(600)


@needs_corpus
def test_int8_mini_xception_agrees_with_float32_on_held_out_photographs(photo_crops):
    calibration, held_out = photo_crops
    assert len(held_out) >= 500
    with (
        tf1infer.load(MINI_XCEPTION) as fp32,
        tf1infer.load(MINI_XCEPTION, backend="tflite", precision="int8", calibration=calibration) as int8,
    ):
        report = int8.backend_report
        assert int8.backend == "tflite" and report["precision"] == "int8" and int8.metadata["precision"] == "int8"
        assert report["calibration_rows"] == int8_backend.CALIBRATION_ROWS  # More crops than that: spread over them.
        assert report["int8_dot_products"] == kernels.int8_dot_products()
        quantized, reference = int8.predict(held_out), fp32.predict(held_out)
        assert quantized.dtype == np.float32 and quantized.shape == reference.shape == (len(held_out), 2)
        agrees = quantized.argmax(1) == reference.argmax(1)
        agreement = float(np.mean(agrees))
        confident = np.abs(reference[:, 1] - reference[:, 0]) >= CONFIDENT_GAP
        deviation = np.abs(quantized - reference)
        assert agreement >= MIN_TOP1_AGREEMENT and deviation.mean() <= MAX_MEAN_ABS and deviation.max() <= MAX_ABS
        assert confident.sum() >= 100 and np.mean(agrees[confident]) >= MIN_CONFIDENT_AGREEMENT
        assert deviation.max() > 1e-4  # Quantization really happened: float32 TF Lite is within 1e-5.
        accuracy = int8.precision_report(held_out)
    measured = accuracy["precisions"]["int8"]["outputs"]["predictions"]
    # The report's float32 reference is a frozen copy of the graph: float32 reorderings may flip a near tie.
    assert abs(measured["top1_agreement"] - agreement) <= 0.002
    assert measured["mean_abs"] == pytest.approx(float(deviation.mean()), abs=1e-4)
    assert accuracy["calibration_samples"] == len(held_out)


@needs_corpus
def test_int8_calibrates_on_an_image_folder_and_a_generator(tmp_path, photo_crops):
    from PIL import Image

    calibration, held_out = photo_crops
    folder = tmp_path / "crops"
    folder.mkdir()
    for index in range(40):  # Grey PNGs, as a user's folder of face crops would be.
        pixels = ((calibration[index * 30, ..., 0] / 2 + 0.5) * 255).round().astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{index:03d}.png")
    images = tf1infer.images(folder, rescale=2 / 255)
    with tf1infer.load(MINI_XCEPTION, backend="tflite", precision="int8", calibration=images) as from_folder:
        assert from_folder.backend_report["calibration_rows"] == 40
        from_folder_scores = from_folder.predict(held_out[:64])

    def batches():
        for start in range(0, 90, 30):
            yield calibration[start : start + 30]

    with tf1infer.load(MINI_XCEPTION, backend="tflite", precision="int8", calibration=batches()) as from_generator:
        assert from_generator.backend_report["calibration_rows"] == 90
        assert from_generator.predict(held_out[:64]).shape == from_folder_scores.shape == (64, 2)


def test_int8_runs_integer_inputs_and_several_outputs():
    """Token ids feeding an Embedding, and a two-input two-output model, against float32 within int8's tolerance."""
    for name in ("embedding", "two_in_two_out"):
        with tf1infer.load(zoo_path(name)) as fp32:
            calibration = random_inputs(fp32.inputs, 300, seed=1)
            x = random_inputs(fp32.inputs, 200, seed=2)
            with tf1infer.load(
                zoo_path(name),
                backend="tflite",
                precision="int8",
                calibration=calibration if len(calibration) > 1 else calibration[0],
            ) as int8:
                got = int8.predict(x if len(x) > 1 else x[0])
                want = fp32.predict(x if len(x) > 1 else x[0])
                report = int8.precision_report(x if len(x) > 1 else x[0])["precisions"]["int8"]
        for have, expected in zip(got if isinstance(got, list) else [got], want if isinstance(want, list) else [want]):
            assert have.dtype == expected.dtype and have.shape == expected.shape
            assert 0 < np.abs(have - expected).max() <= MAX_ABS and np.abs(have - expected).mean() <= MAX_MEAN_ABS
        assert set(report["outputs"]) == set(int8.output_names)
        assert all(0.0 <= entry.get("top1_agreement", 1.0) <= 1.0 for entry in report["outputs"].values())


def test_int8_refusals_say_what_to_do():
    x = random_inputs(tf1infer.load(zoo_path("mlp")).inputs, 20, seed=3)[0]
    with pytest.raises(
        InvalidOptionError, match=r"precision='int8' runs on TF Lite's integer kernels: pass backend='tflite'"
    ):
        tf1infer.load(zoo_path("mlp"), precision="int8", calibration=x)
    with pytest.raises(InvalidOptionError, match=r"needs calibration=.*never calibrates on random data"):
        tf1infer.load(zoo_path("mlp"), backend="tflite", precision="int8")
    with pytest.raises(InvalidOptionError, match=r"calibration= applies only to precision='int8'"):
        tf1infer.load(zoo_path("mlp"), backend="tflite", calibration=x)
    with pytest.raises(InputError, match="calibration= holds no samples"):
        tf1infer.load(zoo_path("mlp"), backend="tflite", precision="int8", calibration=x[:0])
    with pytest.raises(InputError, match="input_1"):
        tf1infer.load(zoo_path("mlp"), backend="tflite", precision="int8", calibration=x[:, :7])
    with pytest.raises(ModelLoadError, match=r"lstm.h5: precision='int8' is not available for this model: recurrent"):
        tf1infer.load(
            zoo_path("lstm"),
            backend="tflite",
            precision="int8",
            calibration=np.random.default_rng(0).normal(size=(20, 8, 4)).astype(np.float32),
        )


def test_int8_precision_report_needs_an_int8_predictor_and_held_out_data():
    with tf1infer.load(zoo_path("cnn")) as fp32:
        x = random_inputs(fp32.inputs, 40, seed=4)[0]
        assert (
            "loaded with precision='int8'"
            in fp32.precision_report(x, precisions=["int8"])["precisions"]["int8"]["unavailable"]
        )
    with tf1infer.load(zoo_path("cnn"), backend="tflite", precision="int8", calibration=x) as int8:
        assert "held-out samples you give" in int8.precision_report()["precisions"]["int8"]["unavailable"]
        report = int8.precision_report(random_inputs(int8.inputs, 30, seed=5)[0])
        assert set(report["precisions"]) == {"float32", "int8"}  # The default for an int8 Predictor.
        assert 0 < report["precisions"]["int8"]["max_abs"] <= MAX_ABS


def test_int8_without_dot_product_instructions_is_said_in_words(caplog):
    x = random_inputs(tf1infer.load(zoo_path("cnn")).inputs, 40, seed=6)[0]
    with caplog.at_level(logging.WARNING, logger="tf1infer.backends.int8"):
        tf1infer.load(zoo_path("cnn"), backend="tflite", precision="int8", calibration=x).close()
    warned = "no int8 dot-product instructions" in caplog.text
    assert warned == (kernels.int8_dot_products() is False)


def test_int8_dot_product_detection_reads_the_cpu_flags(tmp_path):
    cases = {
        "flags\t: sse4_2 avx2 fma avx512_vnni\n": True,
        "flags\t: sse4_2 avx avx2 fma\n": False,
        "Features\t: fp asimd asimddp\n": True,
        "Features\t: fp asimd\n": False,
    }
    for index, (text, expected) in enumerate(cases.items()):
        (tmp_path / f"cpuinfo{index}").write_text("processor\t: 0\n" + text)
        assert kernels.int8_dot_products(str(tmp_path / f"cpuinfo{index}")) is expected
    assert kernels.int8_dot_products(str(tmp_path / "missing")) is None


def test_cli_predicts_at_int8_with_a_calibration_file(tmp_path, capsys):
    from tf1infer.cli import main

    rng = np.random.default_rng(7)
    np.save(tmp_path / "calibration.npy", rng.normal(size=(200, 10)).astype(np.float32))
    x = rng.normal(size=(50, 10)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert (
        main(
            [
                "predict",
                zoo_path("mlp"),
                str(tmp_path / "x.npy"),
                "-o",
                str(tmp_path / "y.npy"),
                "--backend",
                "tflite",
                "--precision",
                "int8",
                "--calibration",
                str(tmp_path / "calibration.npy"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "backend: tflite, int8 calibrated on 200 samples" in out
    with tf1infer.load(zoo_path("mlp")) as fp32:
        deviation = np.abs(np.load(tmp_path / "y.npy") - fp32.predict(x))
    assert 0 < deviation.max() <= MAX_ABS
    assert (
        main(
            [
                "predict",
                zoo_path("mlp"),
                str(tmp_path / "x.npy"),
                "-o",
                str(tmp_path / "z.npy"),
                "--backend",
                "tflite",
                "--precision",
                "int8",
            ]
        )
        == 2
    )
    assert "needs calibration=" in capsys.readouterr().err
    assert not (tmp_path / "z.npy").exists()


def test_a_path_string_is_not_calibration_data():
    """A string is not data: calibration='legacy_models' is refused, not read as characters."""
    with pytest.raises(InputError, match="string"):
        tf1infer.load(zoo_path("mlp"), backend="tflite", precision="int8", calibration=str(ZOO_DIR))
