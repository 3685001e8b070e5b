"""Shared fixtures: the zoo in legacy_models/, the shared corpus, random inputs, eager references."""

from __future__ import annotations

import contextlib
import io
import json
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
ZOO_DIR = ROOT / "legacy_models"
CORPUS_DIR = ROOT.parent / "shared" / "corpus"
# Every zoo model that loads without extra arguments beyond custom_objects.
ZOO_MODELS = [
    "mlp",
    "cnn",
    "lstm",
    "gru",
    "embedding",
    "two_in_two_out",
    "custom_layer",
    "channels_first",
    "seq2seq",
    "seq2seq_masked",
    "masking_bidirectional",
    "masked_states",
]

sys.path.insert(0, str(ZOO_DIR))
import make_zoo  # noqa: E402
from zoo_layers import Scale  # noqa: E402

CUSTOM_OBJECTS = {"Scale": Scale}

from tf1infer.loaders.keras_versions import keras3_version  # noqa: E402

# Keras 3 (.keras files, the Keras 3 export) is installed with TensorFlow 2.16 and later; on 2.15 those tests skip,
# and tests/test_tf_versions.py checks the typed refusal instead.
KERAS3_MISSING = keras3_version() is None
KERAS3_MISSING_REASON = (
    "Keras 3 is not installed (TensorFlow 2.15 ships Keras 2): .keras files and export_keras need it"
)
needs_keras3 = pytest.mark.skipif(KERAS3_MISSING, reason=KERAS3_MISSING_REASON)


def tf1_formula(x: np.ndarray) -> dict[str, np.ndarray]:
    """What every legacy_models/tf1/ fixture computes, from the weights saved beside it."""
    p = np.load(ZOO_DIR / "tf1" / "weights.npz")
    logits = np.tanh(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return {"logits": logits, "probs": exp / exp.sum(axis=1, keepdims=True)}


@contextlib.contextmanager
def serving_models(models: Mapping[str, tuple], **settings) -> Iterator:
    """``tf1infer serve`` in this process, on free ports of 127.0.0.1, holding ``{name: (path, load options)}``."""
    from tf1infer.serving.models import ModelConfig
    from tf1infer.serving.server import Server

    configs = [ModelConfig(name, str(path), options) for name, (path, options) in models.items()]
    running = Server(configs, rest_port=0, grpc_port=0, out=io.StringIO(), **settings).start_in_thread()
    try:
        yield running
    finally:
        running.stop()


@contextlib.contextmanager
def loaded_models(models: Mapping[str, tuple], leave_out: tuple[str, ...] = ()) -> Iterator[dict]:
    """The same models loaded with ``tf1infer.load`` (the references served answers are compared with)."""
    import tf1infer

    loaded = {
        name: tf1infer.load(str(path), **options) for name, (path, options) in models.items() if name not in leave_out
    }
    try:
        yield loaded
    finally:
        for predictor in loaded.values():
            predictor.close()


# The corpus manifest's formulas for TF Serving's half_plus models: text -> (scale, offset).
HALF_PLUS = {"y = 0.5*x + 2": (0.5, 2.0), "y3 = 0.5*x2 + 3": (0.5, 3.0), "y = 0.5*x + 3": (0.5, 3.0)}


def zoo_path(name: str) -> str:
    return str(ZOO_DIR / f"{name}.h5")


def random_inputs(specs, rows: int, seed: int = 0, free_dim: int = 7) -> list[np.ndarray]:
    """Random (never zero) data for each input spec; ``free_dim`` fills unknown non-batch axes."""
    rng = np.random.default_rng(seed)
    arrays = []
    for spec in specs:
        shape = [rows] + [free_dim if dim is None else dim for dim in spec.shape[1:]]
        if spec.index_limit:  # Token ids, even in a float input (the zoo's seq2seq): valid rows of the embedding.
            arrays.append(rng.integers(1, spec.index_limit, shape).astype(spec.dtype))
        elif spec.dtype.kind in "iu":
            arrays.append(rng.integers(1, 100, shape).astype(spec.dtype))
        else:
            arrays.append(rng.normal(0.0, 1.0, shape).astype(spec.dtype))
    return arrays


# Rows run in batches of other sizes are summed in another order (Eigen's and oneDNN's kernels both block by
# batch size): a few float32 ulps apart, measured up to 2.4e-7 on outputs of magnitude <= 1. TensorFlow does not
# promise bit-identical rows across batchings and neither does tf1infer; the same rows in the same batches are
# compared exactly.
BATCHING_TOLERANCE = {"rtol": 1e-6, "atol": 1e-6}


def assert_same_rows(have: np.ndarray, want: np.ndarray) -> None:
    """``have`` holds ``want``'s rows, computed in other batches: same shape and dtype, within BATCHING_TOLERANCE."""
    assert have.shape == want.shape and have.dtype == want.dtype, (have.shape, have.dtype, want.shape, want.dtype)
    np.testing.assert_allclose(have, want, **BATCHING_TOLERANCE)


def assert_held_to_float64(errors: dict, report=None) -> None:
    """Every output of a verification passed the float64-based rule: its deviation from the float64 reference is
    within what the model's own float32 error allows (tf1infer.verification.reference.Tolerance), and that bound was computed."""
    if report is not None:
        assert report.reference == "float64" and report.float64_unavailable is None, report.float64_unavailable
    assert errors
    for name, figures in errors.items():
        assert figures["float32_session_error"] is not None and figures["allowed"] is not None, name
        assert 0 <= figures["max_abs_error"] <= figures["allowed"], (name, figures)


def as_list(outputs) -> list[np.ndarray]:
    return outputs if isinstance(outputs, list) else [outputs]


@pytest.fixture(scope="module")
def mlp():
    """The zoo MLP (10 features -> 3 classes), loaded by tf1infer once per test module."""
    import tf1infer

    with tf1infer.load(zoo_path("mlp")) as predictor:
        yield predictor


@pytest.fixture(scope="module")
def two_inputs():
    """The zoo model with two inputs and two outputs, loaded by tf1infer once per test module."""
    import tf1infer

    with tf1infer.load(zoo_path("two_in_two_out")) as predictor:
        yield predictor


# Zoo models whose own eager predict does not run on every CPU (plain CPU kernels refuse channels-first
# pooling): their reference is make_zoo's channels-last twin, same weights, same input.
EAGER_TWINS = {"channels_first": lambda: make_zoo.channels_first("channels_last")}


@pytest.fixture(scope="session")
def eager_model():
    """tf_keras eager models loaded the ordinary way (or their EAGER_TWINS), cached: the independent reference."""
    import tf_keras

    cache = {}

    def get(path: str):
        if path not in cache:
            twin = EAGER_TWINS.get(Path(path).stem) if Path(path).parent == ZOO_DIR else None
            if twin is not None:
                cache[path] = twin()
                cache[path].load_weights(path)
            else:
                cache[path] = tf_keras.models.load_model(path, custom_objects=CUSTOM_OBJECTS, compile=False)
        return cache[path]

    return get


CORPUS_ABSENT = f"shared corpus not found at {CORPUS_DIR} (CI has it beside the checkout)"


def corpus_entry(name: str) -> dict | None:
    """The manifest entry called ``name``, or None when the corpus is absent."""
    manifest = CORPUS_DIR / "MANIFEST.json"
    if not manifest.is_file():
        return None
    return next(entry for entry in json.loads(manifest.read_text())["entries"] if entry["name"] == name)


def case_inputs(case_id: str, path: Path, kind: str, predictor, rows: int) -> list[np.ndarray]:
    """Inputs for an export test case: a Keras 1 fixture's stored inputs, a corpus entry's reference input, else
    ``rows`` random rows (seeded by the case id)."""
    if kind == "keras1":
        stored = np.load(path.with_suffix(".npz"))
        return [stored[f"inputs/{name}"] for name in predictor.input_names]
    if kind == "corpus":
        return [np.load(CORPUS_DIR / corpus_entry(case_id.removeprefix("corpus-"))["reference"]["input"])]
    return random_inputs(predictor.inputs, rows, seed=len(case_id), free_dim=5)


def corpus_entries(fmt: str) -> list:
    """Manifest entries of one format as pytest params, ids by entry name; one skipped param if the corpus is absent."""
    manifest = CORPUS_DIR / "MANIFEST.json"
    if not manifest.is_file():
        return [pytest.param(None, marks=pytest.mark.skip(reason=CORPUS_ABSENT), id="corpus-absent")]
    entries = [entry for entry in json.loads(manifest.read_text())["entries"] if entry["format"] == fmt]
    return [pytest.param(entry, id=entry["name"]) for entry in entries]


# The zoo's GPU-trained recurrent models: no CPU kernel runs their own layers, so their reference is what cuDNN
# computes, in float64 numpy, from the weights exactly as the file stores them.
CUDNN_MODELS = ["cudnn_lstm", "cudnn_gru"]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def cudnn_reference(name: str, x: np.ndarray) -> np.ndarray:
    """What cuDNN computes for ``legacy_models/<name>.h5`` on ``x`` (batch, time, features).

    Keras 2's CuDNN layers hand cuDNN each gate's kernel (features, units)
    flattened as it is, which cuDNN reads as its (units, features) matrix W, and
    one bias per gate for the input side, then one per gate for the recurrent
    side. CuDNNLSTM's gates are i, f, c, o; CuDNNGRU's kernel columns are z, r, h,
    with the reset gate applied after the recurrent product (cuDNN's GRU).
    """
    import h5py

    with h5py.File(ZOO_DIR / f"{name}.h5", "r") as handle:
        group = handle["model_weights"][name][name]
        kernel, recurrent, bias = (
            group[key][()].astype(np.float64) for key in ("kernel:0", "recurrent_kernel:0", "bias:0")
        )
    units, features = recurrent.shape[0], kernel.shape[0]
    gates = kernel.shape[1] // units
    input_w = [kernel[:, g * units : (g + 1) * units].reshape(units, features) for g in range(gates)]
    recurrent_w = [recurrent[:, g * units : (g + 1) * units].reshape(units, units) for g in range(gates)]
    input_b = [bias[g * units : (g + 1) * units] for g in range(gates)]
    recurrent_b = [bias[(gates + g) * units : (gates + g + 1) * units] for g in range(gates)]
    x = x.astype(np.float64)
    h = np.zeros((x.shape[0], units))
    c = np.zeros_like(h)
    steps = []
    for t in range(x.shape[1]):
        xt = x[:, t]
        pre_x = [xt @ w.T + b for w, b in zip(input_w, input_b)]
        pre_h = [h @ w.T + b for w, b in zip(recurrent_w, recurrent_b)]
        if gates == 4:
            i, f, o = (_sigmoid(pre_x[g] + pre_h[g]) for g in (0, 1, 3))
            c = f * c + i * np.tanh(pre_x[2] + pre_h[2])
            h = o * np.tanh(c)
        else:
            z, r = _sigmoid(pre_x[0] + pre_h[0]), _sigmoid(pre_x[1] + pre_h[1])
            h = (1.0 - z) * np.tanh(pre_x[2] + r * pre_h[2]) + z * h
        steps.append(h)
    return np.stack(steps, axis=1) if name == "cudnn_gru" else h


# The files that take longest, first. make test spreads the suite over workers file by file (pytest-xdist's
# loadfile); started first, the long files run beside the many short ones instead of after them.
# Measured with --durations=0 on a 2-core AVX2 machine (seconds of test time per file, this order): test_export_keras
# 127, test_spark 118, test_bench 71, test_export 63, test_verification 62, test_readme 58, test_backends 52,
# test_fuzz 49, test_serving 44, test_cli 40, test_lambda_recovery 32, test_int8 32, test_keras_h5_outputs 28.
_SLOWEST_FILES = [
    "test_export_keras.py",
    "test_spark.py",
    "test_bench.py",
    "test_export.py",
    "test_verification.py",
    "test_readme.py",
    "test_backends.py",
    "test_fuzz.py",
    "test_serving.py",
    "test_cli.py",
    "test_lambda_recovery.py",
    "test_int8.py",
    "test_keras_h5_outputs.py",
]


def pytest_collection_modifyitems(session, config, items):
    rank = {name: index for index, name in enumerate(_SLOWEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # Stable: each file keeps its own order.


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "real_world: exports of real files others wrote, legacy_models/real_world/ and the shared corpus's Lambda"
        " files (make test-real-world; make test leaves them out)",
    )
