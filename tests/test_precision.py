"""Reduced precision: the bfloat16 / float16 graph rewrite against float32, and precision_report.

Tolerances, relative to the largest float32 magnitude of each output (what
``precision_report`` calls ``max_rel``): bfloat16 3e-2 (8 bits of mantissa:
a single rounding is 4e-3; the zoo measures up to 6.5e-3 and the corpus
mini-Xception 1.3e-2), float16 5e-3 (measured up to 1.3e-3).

bfloat16 runs only where oneDNN's kernels are on; elsewhere each bfloat16 test
checks the refusal instead (the suite runs both ways: ``make test-both``).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import CORPUS_ABSENT, CORPUS_DIR, CUSTOM_OBJECTS, as_list, random_inputs, zoo_path

import tf1infer
from tf1infer.errors import InvalidOptionError, ModelLoadError
from tf1infer.runtime.kernels import onednn_enabled

TOLERANCE = {"bfloat16": 3e-2, "float16": 5e-3}
RECURRENT = {"lstm", "gru"}
MODELS = ["mlp", "cnn", "lstm", "gru", "embedding", "two_in_two_out", "custom_layer", "channels_first"]
ONEDNN = onednn_enabled()
REFUSED_WITHOUT_ONEDNN = "precision='bfloat16' needs TensorFlow's oneDNN kernels, which are off in this process"


def refused_here(path: str, precision: str) -> bool:
    """True (after checking the refusal's message) where this process's kernels cannot run ``precision``."""
    if precision != "bfloat16" or ONEDNN:
        return False
    with pytest.raises(InvalidOptionError, match=REFUSED_WITHOUT_ONEDNN + r".*TF_ENABLE_ONEDNN_OPTS=1"):
        tf1infer.load(path, precision=precision)
    return True


def _max_rel(have: list[np.ndarray], want: list[np.ndarray]) -> float:
    return max(float(np.abs(h - w).max() / np.abs(w).max()) for h, w in zip(have, want))


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_reduced_precision_stays_near_float32(name, precision):
    path = zoo_path(name)
    with tf1infer.load(path, custom_objects=CUSTOM_OBJECTS) as full:
        x = random_inputs(full.inputs, rows=16, seed=3)
        x = x if len(x) > 1 else x[0]
        want = as_list(full.predict(x))
    if precision == "float16" and name in RECURRENT:
        with pytest.raises(ModelLoadError, match="float16.*While"):
            tf1infer.load(path, precision=precision)
        return
    if refused_here(path, precision):
        return
    with tf1infer.load(path, custom_objects=CUSTOM_OBJECTS, precision=precision) as reduced:
        assert reduced.metadata["precision"] == precision
        assert reduced.graph.finalized
        have = as_list(reduced.predict(x))
    assert [h.dtype for h in have] == [w.dtype for w in want]  # Callers still get float32.
    deviation = _max_rel(have, want)
    assert deviation <= TOLERANCE[precision]
    # The rewrite really ran: reduced precision is visible in the outputs.
    assert deviation > 1e-6


def test_precision_report_on_float32_model():
    with tf1infer.load(zoo_path("cnn")) as predictor:
        x = random_inputs(predictor.inputs, rows=8, seed=5)[0]
        report = predictor.precision_report(x)
        want = predictor.predict(x)
    assert report["calibration_samples"] == 8
    precisions = report["precisions"]
    assert precisions["float32"]["max_abs"] == 0.0
    for precision, tolerance in TOLERANCE.items():
        entry = precisions[precision]
        if refused_here(zoo_path("cnn"), precision):
            assert set(entry) == {"unavailable"} and entry["unavailable"].startswith(REFUSED_WITHOUT_ONEDNN)
            continue
        assert 0 < entry["max_rel"] <= tolerance
        assert entry["ms_per_batch"] > 0
        # The report's figure is what loading at that precision gives on the same batch, to float32 rounding: the
        # report's float32 reference runs the frozen graph, `want` the variables' graph (oneDNN fuses them apart).
        with tf1infer.load(zoo_path("cnn"), precision=precision) as reduced:
            assert entry["max_abs"] == pytest.approx(float(np.abs(reduced.predict(x) - want).max()), rel=0, abs=1e-6)


def test_precision_report_marks_float16_unavailable_for_loops():
    with tf1infer.load(zoo_path("lstm")) as predictor:
        report = predictor.precision_report(samples=4)
    assert "While" in report["precisions"]["float16"]["unavailable"]
    if ONEDNN:
        assert 0 < report["precisions"]["bfloat16"]["max_rel"] <= TOLERANCE["bfloat16"]
    else:
        assert report["precisions"]["bfloat16"]["unavailable"].startswith(REFUSED_WITHOUT_ONEDNN)


@pytest.mark.skipif(not (CORPUS_DIR / "keras205_gender_mini_xception.hdf5").is_file(), reason=CORPUS_ABSENT)
def test_bfloat16_on_corpus_model():
    path = str(CORPUS_DIR / "keras205_gender_mini_xception.hdf5")
    if refused_here(path, "bfloat16"):
        return
    x = np.random.default_rng(1).random((8, 64, 64, 1), dtype=np.float32)
    with tf1infer.load(path) as full, tf1infer.load(path, precision="bfloat16") as reduced:
        assert 1e-6 < _max_rel([reduced.predict(x)], [full.predict(x)]) <= TOLERANCE["bfloat16"]


def test_unknown_precision_is_refused():
    with pytest.raises(
        InvalidOptionError, match="precision must be one of float32, bfloat16, float16, int8; got 'int4'"
    ):
        tf1infer.load(zoo_path("mlp"), precision="int4")


def test_tf1_saved_model_at_bfloat16(tmp_path):
    from conftest import ZOO_DIR, tf1_formula

    if refused_here(str(ZOO_DIR / "tf1" / "saved_model"), "bfloat16"):
        return
    x = np.random.default_rng(2).normal(size=(6, 4)).astype(np.float32)
    with tf1infer.load(str(ZOO_DIR / "tf1" / "saved_model"), precision="bfloat16") as reduced:
        have = reduced.predict(x)
    want = tf1_formula(x)
    outputs = have if isinstance(have, list) else [have]
    names = reduced.output_names
    assert _max_rel(outputs, [want[name] for name in names]) <= TOLERANCE["bfloat16"]
