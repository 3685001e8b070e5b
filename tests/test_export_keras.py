"""export_keras: every legacy Keras fixture and corpus file becomes a native Keras 3 ``.keras`` file.

Every Keras model is exported, then all files are loaded in one fresh Keras 3
process per backend (TensorFlow, and JAX where installed) that imports neither
tf1infer nor tf_keras, and each one's outputs are compared with an independent
reference: tf_keras eager predict, the Keras 1 fixtures' numpy formulas, what
cuDNN computes, Keras 3's own predict of the source, or the corpus manifest's
reference outputs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import KERAS3_MISSING, KERAS3_MISSING_REASON

if KERAS3_MISSING:
    pytest.skip(KERAS3_MISSING_REASON, allow_module_level=True)

import zoo_layers_keras3  # noqa: E402  (legacy_models/ is on sys.path through conftest)
from conftest import (
    CORPUS_DIR,
    CUDNN_MODELS,
    CUSTOM_OBJECTS,
    ZOO_DIR,
    ZOO_MODELS,
    assert_held_to_float64,
    case_inputs,
    corpus_entry,
    cudnn_reference,
    random_inputs,
    zoo_path,
)

import tf1infer
from tf1infer.cli import main
from tf1infer.errors import ExportError, ExportVerificationError
from tf1infer.export.keras3 import TENSORFLOW, KerasVerificationJob, available_backends, run_verification_jobs

ATOL = 1e-5
ROWS = 6
KERAS3_OBJECTS = {"Scale": zoo_layers_keras3.Scale}


# case id -> (path, export options, how to get the reference outputs)
CASES: dict[str, tuple[Path, dict, str]] = {
    **{
        f"zoo-{name}": (
            Path(zoo_path(name)),
            {"custom_objects": CUSTOM_OBJECTS, "keras3_custom_objects": KERAS3_OBJECTS},
            "eager",
        )
        for name in ZOO_MODELS
    },
    "zoo-thresholded_relu": (Path(zoo_path("thresholded_relu")), {}, "eager"),
    "zoo-lambda": (ZOO_DIR / "lambda.h5", {"lambdas": {"affine": lambda x: x * 2.0 + 1.0}}, "lambda"),
    **{f"zoo-{name}": (Path(zoo_path(name)), {}, "cudnn") for name in CUDNN_MODELS},
    **{
        f"keras1-{name}": (ZOO_DIR / "keras1" / f"{name}.h5", {}, "keras1")
        for name in ("conv_merge", "rnn_sequential", "conv_theano")
    },
    "keras3-two_in_two_out": (ZOO_DIR / "keras3" / "two_in_two_out.keras", {}, "keras3"),
    "keras3-lambda": (ZOO_DIR / "keras3" / "lambda.keras", {"safe_mode": False}, "keras3"),
    "tf1-keras_json": (
        ZOO_DIR / "tf1" / "keras_arch.json",
        {"weights": ZOO_DIR / "tf1" / "keras_weights.h5"},
        "eager-mlp",
    ),
}
if corpus_entry("keras205_gender_mini_xception") is not None:
    CASES["corpus-keras205_gender_mini_xception"] = (
        CORPUS_DIR / corpus_entry("keras205_gender_mini_xception")["path"],
        {},
        "corpus",
    )


# JAX compiles each model with XLA (1-6 s each here), so the suite runs one case of each kind of translation there;
# every case runs on JAX with TF1INFER_KERAS3_JAX_ALL=1 (each export_keras call verifies on JAX by default anyway).
JAX_CASES = (
    set(CASES)
    if os.environ.get("TF1INFER_KERAS3_JAX_ALL")
    else {
        "zoo-lstm",  # dropped tf_keras RNN arguments
        "zoo-seq2seq",  # an RNN started from another's states, masking
        # Padded ids after the end and inside (the JAX backend differs on padding before the start: see the export's report).
        "zoo-seq2seq_masked",
        "zoo-masking_bidirectional",  # Masking through Bidirectional(LSTM), GRU(reset_after=False), SimpleRNN
        "zoo-cudnn_gru",  # CuDNNGRU as GRU(reset_after=True)
        "zoo-channels_first",  # the channels-first convolution between Permute layers
        "zoo-custom_layer",  # a caller's Keras 3 class imported by the worker
        "zoo-lambda",  # bytecode
        "zoo-thresholded_relu",  # a removed layer rebuilt
        "keras1-rnn_sequential",  # Keras 1, hard_sigmoid folded into the weights
        "keras1-conv_theano",  # Keras 1 Theano kernels
        "keras3-two_in_two_out",  # a .keras source
    }
)


def _inputs_for(case_id: str, predictor) -> list[np.ndarray]:
    path, _, kind = CASES[case_id]
    return case_inputs(case_id, path, kind, predictor, ROWS)


def _reference(case_id: str, inputs: list[np.ndarray], eager_model) -> list[np.ndarray]:
    path, options, kind = CASES[case_id]
    if kind == "eager":
        return _as_list(eager_model(str(path)).predict(inputs, verbose=0))
    if kind == "eager-mlp":
        return _as_list(eager_model(zoo_path("mlp")).predict(inputs, verbose=0))
    if kind == "lambda":  # Dense -> 2x + 1 -> Dense, from the file's own weights.
        import h5py

        with h5py.File(path, "r") as handle:
            weights = handle["model_weights"]
            (w1, b1), (w2, b2) = (
                [weights[name][name][key][()] for key in ("kernel:0", "bias:0")] for name in ("dense", "dense_1")
            )
        return [((inputs[0].astype(np.float64) @ w1 + b1) * 2.0 + 1.0) @ w2 + b2]
    if kind == "cudnn":
        return [cudnn_reference(path.stem, inputs[0])]
    if kind == "keras1":
        stored = np.load(path.with_suffix(".npz"))
        return [stored[key] for key in stored.files if key.startswith("outputs/")]
    if kind == "keras3":
        import keras

        model = keras.saving.load_model(path, safe_mode=options.get("safe_mode", True))
        return _as_list(model.predict(inputs if len(inputs) > 1 else inputs[0], verbose=0))
    entry = corpus_entry(case_id.removeprefix("corpus-"))
    return [np.load(CORPUS_DIR / entry["reference"]["output"])]


def _as_list(value) -> list[np.ndarray]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


@pytest.fixture(scope="module")
def exported(tmp_path_factory, eager_model):
    """Every case exported (its own verification off: here all files are verified together, against references)."""
    out = tmp_path_factory.mktemp("keras3")
    results, jobs = {}, []
    for case_id, (path, options, _) in CASES.items():
        options = dict(options)
        keras3_objects = options.pop("keras3_custom_objects", None)
        target = out / f"{case_id}.keras"
        with tf1infer.load(path, **options) as predictor:
            inputs = _inputs_for(case_id, predictor)
            report = tf1infer.export_keras(predictor, target, keras3_custom_objects=keras3_objects, verify=False)
        results[case_id] = {"report": report, "reference": _reference(case_id, inputs, eager_model), "outputs": {}}
        jobs.append(KerasVerificationJob(str(target), [inputs], report.load_with))
    jobs_by_backend = {
        backend: [job for case_id, job in zip(CASES, jobs) if backend == TENSORFLOW or case_id in JAX_CASES]
        for backend in available_backends()
    }
    for backend, backend_results in run_verification_jobs(jobs_by_backend, "test").items():
        case_ids = [case_id for case_id in CASES if backend == TENSORFLOW or case_id in JAX_CASES]
        for case_id, ((outputs,), worker_report) in zip(case_ids, backend_results):
            results[case_id]["outputs"][backend] = outputs
            assert worker_report["backend"] == backend and not worker_report["forbidden_modules"]
    return results


@pytest.mark.parametrize("case_id", list(CASES))
def test_export_reloads_in_a_clean_keras3_process_and_matches(exported, case_id):
    result = exported[case_id]
    assert set(result["outputs"]) == {b for b in available_backends() if b == TENSORFLOW or case_id in JAX_CASES}
    for backend, outputs in result["outputs"].items():
        assert len(outputs) == len(result["reference"]), backend
        for got, want in zip(outputs, result["reference"]):
            assert got.shape == want.shape, (backend, got.shape, want.shape)
            np.testing.assert_allclose(got, want, atol=ATOL, rtol=0, err_msg=f"{case_id} on {backend}")
    needs_unsafe = case_id in ("zoo-lambda", "keras3-lambda")
    assert result["report"].load_with["safe_mode"] is (not needs_unsafe)


def test_translations_are_reported_per_layer(exported):
    translations = exported["zoo-thresholded_relu"]["report"].translations
    assert translations["thresholded"] == [
        "ThresholdedReLU(theta=0.3) as ReLU(threshold=0.3): x where x > theta, else 0"
    ]
    keras1 = exported["keras1-rnn_sequential"]["report"].translations
    assert any("hard_sigmoid: gate weights scaled by 1.2" in change for change in keras1["lstm_1"])
    channels_first = exported["zoo-channels_first"]["report"].translations
    assert any(
        "channels_first as channels_last between Permute layers" in c for c in channels_first["separable_conv2d"]
    )
    custom = exported["zoo-custom_layer"]["report"].load_with
    assert custom["custom_objects"][0]["module"] == "zoo_layers_keras3"
    assert "custom_objects={'tf1infer_zoo>Scale': zoo_layers_keras3.Scale}" in custom["snippet"]  # Its registered name.


@pytest.mark.parametrize("case_id", ["zoo-mlp", "zoo-cnn", "zoo-lstm", "zoo-cudnn_gru", "keras1-rnn_sequential"])
def test_exported_model_trains_in_keras3(exported, case_id):
    import keras

    model = keras.saving.load_model(exported[case_id]["report"].path)
    path, options, _ = CASES[case_id]
    with tf1infer.load(path, **{k: v for k, v in options.items() if k != "keras3_custom_objects"}) as predictor:
        inputs = random_inputs(predictor.inputs, 16, seed=5, free_dim=5)
    targets = [np.asarray(y) + 0.1 for y in _as_list(model.predict(inputs[0], verbose=0))]
    before = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    model.fit(inputs[0], targets[0], epochs=1, batch_size=8, verbose=0)
    after = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
    # A bias feeding BatchNormalization gets no gradient in training (the batch mean takes it out); kernels all do.
    kernels = [(b, a) for w, b, a in zip(model.trainable_weights, before, after) if "kernel" in w.path]
    assert kernels and all(not np.array_equal(b, a) for b, a in kernels)
    assert all(np.isfinite(w).all() for w in after)
    assert np.isfinite(np.asarray(model.predict(inputs[0], verbose=0))).all()


def test_export_verifies_on_every_backend_and_publishes_file_and_report(tmp_path):
    target = tmp_path / "mlp.keras"
    report = tf1infer.export_keras(zoo_path("mlp"), target)
    assert report.verified and set(report.backends) == set(available_backends())
    for errors in report.backends.values():
        assert_held_to_float64(errors, report)
    assert (
        report.training_step["ran"]
        and report.training_step["changed"] == report.training_step["trainable_weights"] == 6
    )
    assert report.training_step["finite"]
    assert sorted(os.listdir(tmp_path)) == ["mlp.keras", "mlp.keras.report.json"]
    assert json.loads((tmp_path / "mlp.keras.report.json").read_text()) == json.loads(json.dumps(report.to_dict()))
    reference = tmp_path / "plain"
    reference.write_text("")
    assert os.stat(target).st_mode & 0o777 == os.stat(reference).st_mode & 0o777  # The user's usual permissions.
    assert f"verified on {report.samples} samples" in str(report) and "training step: 6 of 6" in str(report)
    assert "(float32 session: " in str(report) and "from float64; allowed " in str(report)


def test_a_training_step_that_kills_tensorflow_is_retried_on_the_other_kernel_family(tmp_path, monkeypatch):
    import keras3_abort_layer

    from tf1infer.runtime.kernels import onednn_enabled

    flipped = "0" if onednn_enabled() else "1"
    monkeypatch.setenv("TF1INFER_TEST_TRAIN_ONLY_WITH", flipped)
    report = tf1infer.export_keras(
        zoo_path("custom_layer"),
        tmp_path / "custom.keras",
        custom_objects=CUSTOM_OBJECTS,
        keras3_custom_objects={"Scale": keras3_abort_layer.AbortingScale},
        backends=["tensorflow"],
    )
    step = report.training_step
    assert step["ran"] and step["changed"] == step["trainable_weights"] == 6 and step["finite"]
    assert step["first_attempt"].startswith("TensorFlow's process died in the step (exit status -6")
    assert step["kernels"].endswith(f"(TF_ENABLE_ONEDNN_OPTS={flipped})")
    assert_held_to_float64(report.backends["tensorflow"], report)


def test_lambda_export_needs_safe_mode_false_in_keras3(exported):
    import keras

    path = exported["zoo-lambda"]["report"].path
    with pytest.raises(ValueError, match="safe_mode=False"):
        keras.saving.load_model(path)
    assert exported["zoo-lambda"]["report"].load_with["snippet"] == "keras.saving.load_model(path, safe_mode=False)"


def test_named_lambda_function_is_stored_by_reference(tmp_path, exported):
    report = tf1infer.export_keras(
        ZOO_DIR / "lambda.h5",
        tmp_path / "named.keras",
        lambdas={"affine": zoo_layers_keras3.affine},
        backends=["tensorflow"],
        training_step=False,
    )
    assert report.load_with["safe_mode"] is True
    assert (
        report.load_with["snippet"]
        == "keras.saving.load_model(path, custom_objects={'affine': zoo_layers_keras3.affine})"
    )
    assert report.translations["affine"] == [
        "Lambda: the supplied function zoo_layers_keras3.affine, stored by reference to its module"
    ]
    assert_held_to_float64(report.backends["tensorflow"], report)


def test_lambda_defined_inside_a_function_is_carried_as_bytecode(tmp_path):
    # No other process can import it by name: it is written as a lambda carrying its code (and what it reads).
    offset = 1.0

    def local(x):
        return x + offset

    report = tf1infer.export_keras(
        ZOO_DIR / "lambda.h5",
        tmp_path / "local.keras",
        lambdas={"affine": local},
        backends=["tensorflow"],
        training_step=False,
    )
    assert report.load_with["snippet"] == "keras.saving.load_model(path, safe_mode=False)"
    assert "with the globals it reads (offset) carried in its bytecode" in report.translations["affine"][0]
    assert_held_to_float64(report.backends["tensorflow"], report)


def _nothing_but(folder: Path, names: list[str]) -> None:
    assert sorted(os.listdir(folder)) == sorted(names)


@pytest.mark.parametrize(
    "path, options",
    [
        (ZOO_DIR / "tf1" / "frozen.pb", {"outputs": ["logits", "probs"]}),
        (ZOO_DIR / "tf1" / "meta_v2", {"outputs": ["logits", "probs"]}),
        (ZOO_DIR / "tf1" / "saved_model", {}),
    ],
    ids=["frozen-graph", "meta-graph", "saved-model"],
)
def test_graph_formats_are_refused_with_the_way_to_go(tmp_path, path, options):
    with pytest.raises(ExportError, match=r"no Keras layers to rebuild.*export_saved_model.*keras.layers.TFSMLayer"):
        tf1infer.export_keras(path, tmp_path / "graph.keras", **options)
    _nothing_but(tmp_path, [])


def test_custom_layer_without_a_keras3_class_is_refused_naming_it(tmp_path):
    with pytest.raises(
        ExportError, match=r"layer 'scale' is a Scale, which Keras 3 does not have: pass .*keras3_custom_objects"
    ):
        tf1infer.export_keras(zoo_path("custom_layer"), tmp_path / "custom.keras", custom_objects=CUSTOM_OBJECTS)
    _nothing_but(tmp_path, [])


def _save_tf_keras(path: Path, build) -> Path:
    import tf_keras

    model = build(tf_keras)
    model.save(path, save_format="h5")
    return path


def test_nested_models_wrappers_masking_and_keras2_hard_sigmoid(tmp_path):
    """A functional model calling a nested Sequential (TimeDistributed inside), a Bidirectional LSTM and a GRU with
    Keras 2's hard_sigmoid gates, a hard_sigmoid Dense, over masked steps: against tf_keras eager predict."""
    import keras
    import tf_keras

    layers = tf_keras.layers
    inner = tf_keras.Sequential(
        [
            layers.InputLayer(input_shape=(6, 4)),
            layers.TimeDistributed(layers.Dense(5, activation="tanh"), name="per_step"),
        ],
        name="encoder",
    )
    steps = layers.Input((6, 4), name="steps")
    hidden = inner(layers.Masking(mask_value=0.0)(steps))
    lstm = layers.LSTM(3, recurrent_activation="hard_sigmoid", return_sequences=True, name="steps_lstm")
    hidden = layers.Bidirectional(lstm, name="bilstm")(hidden)
    hidden = layers.GRU(4, recurrent_activation="hard_sigmoid", name="gru")(hidden)
    model = tf_keras.Model(steps, layers.Dense(2, activation="hard_sigmoid", name="out")(hidden), name="nested")
    rng = np.random.default_rng(0)
    for weight in model.weights:
        weight.assign(weight.numpy() + rng.normal(0.0, 0.3, weight.shape).astype("float32"))
    model.save(tmp_path / "nested.h5", save_format="h5")
    data = rng.normal(size=(5, 6, 4)).astype("float32")
    data[0, 4:] = 0.0  # Masked steps.
    report = tf1infer.export_keras(tmp_path / "nested.h5", tmp_path / "nested.keras", sample_inputs=data)
    for errors in report.backends.values():
        assert_held_to_float64(errors, report)
    assert any("gate weights scaled by 1.2" in change for change in report.translations["steps_lstm"])
    assert report.translations["out"] == [
        "activation hard_sigmoid: weights scaled by 1.2 for Keras 3's hard_sigmoid (x/6 + 0.5, Keras 2's was 0.2 x + 0.5)"
    ]
    exported_model = keras.saving.load_model(tmp_path / "nested.keras")
    np.testing.assert_allclose(
        exported_model.predict(data, verbose=0), model.predict(data, verbose=0), atol=ATOL, rtol=0
    )


def test_removed_layer_without_equivalent_is_refused_naming_it(tmp_path):
    source = _save_tf_keras(
        tmp_path / "local.h5",
        lambda k: k.Sequential(
            [
                k.layers.InputLayer(input_shape=(8, 3)),
                k.layers.LocallyConnected1D(4, 3, name="local"),
                k.layers.Flatten(),
            ]
        ),
    )
    with pytest.raises(ExportError, match=r"layer 'local' \(LocallyConnected1D\): Keras 3 removed LocallyConnected1D"):
        tf1infer.export_keras(source, tmp_path / "local.keras")
    _nothing_but(tmp_path, ["local.h5"])


def test_time_major_rnn_is_refused(tmp_path):
    source = _save_tf_keras(
        tmp_path / "time_major.h5",
        lambda k: k.Sequential([k.layers.InputLayer(input_shape=(5, 3)), k.layers.LSTM(4, time_major=True, name="tm")]),
    )
    with pytest.raises(
        ExportError, match=r"layer 'tm' \(LSTM\) has time_major=True: Keras 3 RNN layers only take batch-major"
    ):
        tf1infer.export_keras(source, tmp_path / "time_major.keras")
    _nothing_but(tmp_path, ["time_major.h5"])


def test_existing_file_is_kept_unless_overwrite_and_a_failed_verification_keeps_it(tmp_path, monkeypatch):
    import tf1infer.export.keras3 as keras3_export

    target = tmp_path / "mlp.keras"
    target.write_bytes(b"the old model")
    with pytest.raises(ExportError, match="already exists; pass overwrite=True"):
        tf1infer.export_keras(zoo_path("mlp"), target)
    # A translation that loses the weights: the Keras 3 model keeps its fresh ones, and verification must catch it.
    monkeypatch.setattr(keras3_export, "copy_weights", lambda *args: 0)
    with pytest.raises(
        ExportVerificationError,
        match=r"output 'dense_2' of the .keras file on Keras 3's tensorflow backend differs "
        r"from the original: max abs error .* nothing was written",
    ):
        tf1infer.export_keras(zoo_path("mlp"), target, overwrite=True, backends=["tensorflow"])
    assert target.read_bytes() == b"the old model"
    _nothing_but(tmp_path, ["mlp.keras"])
    with pytest.raises(ExportError, match=r"give a path ending in .keras"):
        tf1infer.export_keras(zoo_path("mlp"), tmp_path / "mlp.h5")


def test_cli_exports_to_keras_by_suffix_and_refuses_graphs(tmp_path, capsys):
    assert (
        main(
            [
                "export",
                zoo_path("thresholded_relu"),
                str(tmp_path / "t.keras"),
                "--backends",
                "tensorflow",
                "--no-training-step",
            ]
        )
        == 0
    )
    shown = capsys.readouterr().out
    assert "thresholded: ThresholdedReLU(theta=0.3) as ReLU(threshold=0.3)" in shown
    assert "tensorflow backend, dense_1: max abs error" in shown
    assert (tmp_path / "t.keras").is_file()
    assert main(["export", str(ZOO_DIR / "tf1" / "frozen.pb"), str(tmp_path / "g.keras"), "--outputs", "probs"]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 1 and errors[0].startswith("tf1infer: error:") and "keras.layers.TFSMLayer" in errors[0]
    assert main(["export", zoo_path("mlp"), str(tmp_path / "saved"), "--to", "keras"]) == 2
    assert "give a path ending in .keras" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["t.keras", "t.keras.report.json"]


def test_inspect_says_whether_and_how_a_model_exports_to_keras3(capsys):
    assert main(["inspect", zoo_path("thresholded_relu"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)["keras3_export"]
    assert summary[0] == "yes"
    assert "thresholded: ThresholdedReLU(theta=0.3) as ReLU(threshold=0.3): x where x > theta, else 0" in summary
    assert main(["inspect", str(ZOO_DIR / "tf1" / "frozen.pb"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["keras3_export"][0].startswith(
        "no: a TensorFlow graph without Keras layers"
    )


# Arguments for the tf_keras layer classes whose constructors require some (the table test below).
_REQUIRED_ARGUMENTS = {
    "units": 2,
    "filters": 2,
    "kernel_size": 2,
    "rate": 0.5,
    "pool_size": 2,
    "size": 2,
    "cropping": 1,
    "target_shape": (2,),
    "dims": (1,),
    "n": 2,
    "input_dim": 3,
    "output_dim": 2,
    "stddev": 0.1,
    "theta": 1.0,
    "axis": -1,
    "height": 2,
    "width": 2,
    "factor": 0.1,
    "depth_multiplier": 1,
    "num_heads": 2,
    "key_dim": 2,
    "num_tokens": 3,
    "max_tokens": 3,
    "activation": "relu",
    "axes": 1,
    "equation": "ab,bc->ac",
    "output_shape": 2,
    "scale": 0.5,
    "height_factor": 0.1,
    "width_factor": 0.1,
    "num_bins": 3,
}
_EXTRA_ARGUMENTS = {"Discretization": {"bin_boundaries": [0.0, 1.0]}, "CategoryEncoding": {"num_tokens": 3}}


def _default_layer_configs():
    import inspect

    import keras
    import tf_keras

    configs = {}
    for name in sorted(dir(tf_keras.layers)):
        cls = getattr(tf_keras.layers, name)
        if not (inspect.isclass(cls) and issubclass(cls, tf_keras.layers.Layer)) or not hasattr(keras.layers, name):
            continue
        if name in ("Lambda", "InputLayer") or name in configs:
            continue
        kwargs = dict(_EXTRA_ARGUMENTS.get(name, {}))
        for parameter, spec in inspect.signature(cls.__init__).parameters.items():
            if parameter in ("self", "args", "kwargs") or spec.default is not inspect.Parameter.empty:
                continue
            if parameter == "layer":
                kwargs[parameter] = tf_keras.layers.LSTM(2) if name == "Bidirectional" else tf_keras.layers.Dense(2)
            elif parameter in ("cell", "cells"):
                kwargs[parameter] = (
                    tf_keras.layers.LSTMCell(2) if parameter == "cell" else [tf_keras.layers.LSTMCell(2)]
                )
            elif parameter in _REQUIRED_ARGUMENTS:
                kwargs[parameter] = _REQUIRED_ARGUMENTS[parameter]
            else:
                kwargs = None
                break
        if kwargs is not None:
            configs[name] = {"class_name": name, "config": cls(**kwargs).get_config()}
    return configs


def test_every_tf_keras_layer_class_translates_to_its_keras3_counterpart():
    """Each tf_keras layer class Keras 3 also has, at its defaults, builds in Keras 3 once translated: arguments
    Keras 3 refuses are dropped where they hold tf_keras's default (Conv*DTranspose's groups, SpatialDropout's
    noise_shape, augmentation layers' rng_type...) and named where they do not."""
    from tf1infer.export.keras3_translate import translate_layer_config

    configs = _default_layer_configs()
    assert len(configs) >= 100
    refused = {}
    for name, config in configs.items():
        try:
            translated, changes = translate_layer_config("table", config)
        except ExportError as exc:
            refused[name] = str(exc)
            continue
        assert "_tf1infer" not in json.dumps(translated, default=str), name  # No internal key is ever written.
    # MultiHeadAttention records the shapes it was built with (query_shape...), which Keras 3 does not take.
    assert set(refused) == {"MultiHeadAttention"}, refused
    assert "has query_shape=None, which Keras 3's MultiHeadAttention does not take" in refused["MultiHeadAttention"]
    groups = translate_layer_config("table", configs["Conv2DTranspose"])[1]
    assert [str(change) for change in groups] == [
        "conv2d_transpose: dropped groups=1 (tf_keras's default; Keras 3's Conv2DTranspose takes no groups)"
    ]
    bigger = {**configs["Conv2DTranspose"], "config": {**configs["Conv2DTranspose"]["config"], "groups": 2}}
    with pytest.raises(ExportError, match=r"has groups=2, which Keras 3's Conv2DTranspose does not take"):
        translate_layer_config("table", bigger)


def test_wrapped_layers_lose_the_input_shape_marker_and_spatial_dropout_its_trainable(tmp_path):
    """A Keras 2.1-style text model: SpatialDropout1D, then a Bidirectional LSTM whose config carries
    batch_input_shape (Keras 2 wrote it on the first layer, inside the wrapper)."""
    import tf_keras
    from tf_keras import layers

    model = tf_keras.Sequential(
        [
            layers.Bidirectional(layers.LSTM(4, return_sequences=True), input_shape=(6, 3), name="bi"),
            layers.SpatialDropout1D(0.2, name="drop"),
            layers.GlobalMaxPooling1D(),
            layers.Dense(2, name="out"),
        ]
    )
    config = json.loads(model.to_json())
    (wrapper,) = [layer for layer in config["config"]["layers"] if layer["class_name"] == "Bidirectional"]
    wrapper["config"]["layer"]["config"]["batch_input_shape"] = [None, 6, 3]
    (tmp_path / "arch.json").write_text(
        json.dumps(json.dumps(config))
    )  # json.dump(model.to_json(), f): double-encoded.
    model.save_weights(tmp_path / "weights.h5")
    x = np.random.default_rng(0).normal(size=(4, 6, 3)).astype("float32")
    want = model.predict(x, verbose=0)  # tf_keras eager, before tf1infer builds graphs in this process.
    report = tf1infer.export_keras(
        tmp_path / "arch.json",
        tmp_path / "bi.keras",
        weights=tmp_path / "weights.h5",
        backends=["tensorflow"],
        training_step=False,
    )
    assert_held_to_float64(report.backends["tensorflow"], report)
    assert report.translations["drop"] == [
        "dropped trainable=True (tf_keras's default; Keras 3's SpatialDropout1D takes no trainable)",
        "dropped noise_shape=None (tf_keras's default; Keras 3's SpatialDropout1D takes no noise_shape)",
    ]
    import keras

    np.testing.assert_allclose(keras.saving.load_model(report.path).predict(x, verbose=0), want, rtol=0, atol=1e-5)


def test_transposed_convolutions_export_equal_to_tf_keras(tmp_path):
    """A decoder of Conv1D/2D/3DTranspose layers (strides 2, 'same' and 'valid', output_padding, a bias and none),
    as segmentation and autoencoder models of Keras 2.0-2.3 hold them, through the Keras 3 file on TensorFlow and
    JAX, equal to tf_keras eager predict on image-range rows with an all-zero and an all-255 image."""
    import tf_keras
    from tf_keras import layers

    image = layers.Input((5, 6, 3), name="image")
    x = layers.Conv2DTranspose(4, 3, strides=2, padding="same", activation="relu", name="up_same")(image)
    x = layers.Conv2DTranspose(3, 2, strides=2, padding="valid", output_padding=1, use_bias=False, name="up_pad")(x)
    two_d = layers.GlobalAveragePooling2D(name="pool2d")(x)
    signal = layers.Input((7, 2), name="signal")
    one_d = layers.GlobalMaxPooling1D(name="pool1d")(layers.Conv1DTranspose(3, 3, strides=2, name="up1d")(signal))
    volume = layers.Input((2, 3, 3, 1), name="volume")
    three_d = layers.Flatten(name="flat3d")(layers.Conv3DTranspose(2, 2, strides=(1, 2, 2), name="up3d")(volume))
    out = layers.Dense(2, name="out")(layers.Concatenate(name="join")([two_d, one_d, three_d]))
    model = tf_keras.Model([image, signal, volume], out)
    rng = np.random.default_rng(3)
    for weight in model.weights:  # Trained-looking weights, not the initializer's zeros for the biases.
        weight.assign(rng.normal(scale=0.3, size=weight.shape).astype("float32"))
    path = tmp_path / "decoder.h5"
    model.save(path)
    images = rng.uniform(0, 255, (5, 5, 6, 3)).astype("float32")
    images[0], images[1] = 0.0, 255.0
    inputs = [
        images / np.float32(255.0),
        rng.normal(size=(5, 7, 2)).astype("float32"),
        rng.uniform(-1, 1, (5, 2, 3, 3, 1)).astype("float32"),
    ]
    want = model.predict(inputs, verbose=0)  # tf_keras eager, before tf1infer builds graphs in this process.
    report = tf1infer.export_keras(path, tmp_path / "decoder.keras", sample_inputs=inputs, training_step=False)
    assert set(report.backends) == set(available_backends())
    for backend in report.backends:
        assert_held_to_float64(report.backends[backend], report)
    assert report.translations["up_same"] == [
        "dropped groups=1 (tf_keras's default; Keras 3's Conv2DTranspose takes no groups)"
    ]
    import keras

    got = keras.saving.load_model(report.path).predict(inputs, verbose=0)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * max(1.0, float(np.abs(want).max())))
