"""The tf1infer command: inspect, demo, and one-line errors."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ZOO_DIR, assert_same_rows, needs_keras3, zoo_path

from tf1infer.cli import main
from tf1infer.cli.demo import run_demo
from tf1infer.loaders import keras_versions
from tf1infer.runtime.kernels import onednn_enabled


def test_inspect_prints_inputs_and_outputs(capsys):
    assert main(["inspect", zoo_path("two_in_two_out")]) == 0
    shown = capsys.readouterr().out
    lines = [" ".join(line.split()) for line in shown.splitlines()]
    assert "format keras-h5" in lines
    assert "input features: (None, 6) float32 (tensor features:0)" in lines
    assert "output probs: (None, 4) float32 (tensor probs/Softmax:0)" in lines


def test_inspect_lists_signatures_one_per_line(capsys):
    assert main(["inspect", str(ZOO_DIR / "tf1" / "saved_model")]) == 0
    lines = [" ".join(line.split()) for line in capsys.readouterr().out.splitlines()]
    assert "signatures count_calls (tensorflow/serving/predict): (x: float32) -> (logits: float32)" in lines
    assert "logits_only (tensorflow/serving/predict): (x: float32) -> (logits: float32)" in lines
    assert "input x: (None, 4) float32 (tensor x:0)" in lines


def test_inspect_json(capsys):
    assert main(["inspect", zoo_path("embedding"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["inputs"] == [{"name": "token_ids", "tensor": "token_ids:0", "shape": [None, 12], "dtype": "int32"}]
    assert report["parameters"] == 836


def test_errors_are_one_line_with_status_2(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "missing.h5")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tf1infer: error: ") and "missing.h5: no such file or directory" in err
    assert err.count("\n") == 1
    with pytest.raises(SystemExit):
        main(["no-such-command"])


def test_demo_reports_agreement_and_timings():
    out = io.StringIO()
    result = run_demo(zoo_path("cnn"), out=out, keras_calls=3)
    report = out.getvalue()
    assert result["rows"] == 16 and result["max_error"] <= 1e-5
    assert "predicted 16 rows from" in report and "keras model.predict(x)" in report
    assert result["keras_seconds"] > 0 and result["tf1infer_seconds"] > 0


# Every fixture format, with the options it needs, its format name and parameter count.
# The TF1 fixtures all hold the same 4-6-3 network: 4*6 + 6 + 6*3 + 3 = 51 weights.
INSPECT_CASES = [
    ("mlp.h5", [], "keras-h5", 931),
    ("keras1/conv_merge.h5", [], "keras-h5", None),
    ("keras3/two_in_two_out.keras", [], "keras-v3", None),
    ("tf1/saved_model", [], "saved-model", 51),
    ("tf1/tf2_saved_model", [], "saved-model", 51),
    ("tf1/meta_v2", ["--outputs", "logits,probs"], "meta-graph", 51),
    ("tf1/meta_v1", ["--outputs", "logits"], "meta-graph", 51),
    ("tf1/meta_old_version", [], "meta-graph", 51),
    ("tf1/frozen.pb", [], "frozen-graph", 51),
    ("tf1/frozen.pbtxt", ["--inputs", "x", "--outputs", "probs"], "frozen-graph", 51),
    ("tf1/keras_arch.json", ["--weights", str(ZOO_DIR / "tf1" / "keras_weights.h5")], "keras-json", 931),
]


@pytest.mark.parametrize(
    "relative, options, fmt, parameters",
    [
        pytest.param(*case, id=case[0], marks=[needs_keras3] if case[0].endswith(".keras") else [])
        for case in INSPECT_CASES
    ],
)
def test_inspect_every_format(relative, options, fmt, parameters, capsys):
    assert main(["inspect", str(ZOO_DIR / relative), "--json", *options]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["format"] == fmt
    assert report["inputs"] and report["outputs"]
    assert all(row["dtype"] and row["name"] for row in report["inputs"] + report["outputs"])
    if parameters is not None:
        assert report["parameters"] == parameters
    else:
        assert report["parameters"] > 0
    recorded = {key: report.get(key) for key in ("keras_version", "tensorflow_version", "graph_def_producer_version")}
    assert any(recorded.values()), f"no recorded version in {report}"


def test_inspect_shows_what_a_lambda_computes(capsys):
    """Read from the stored bytecode, never run (a refused Lambda's inspect: tests/test_fuzz.py's hostile files)."""
    assert main(["inspect", zoo_path("lambda"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["lambda_layers"] == ["affine"]
    assert report["recovered_lambdas"] == ["affine: computes x * 2.0 + 1.0 (read from its Python 3.11 bytecode)"]
    assert report["keras_version"] and report["model_class"] == "Sequential"


def test_inspect_takes_format_options(capsys):
    assert main(["inspect", str(ZOO_DIR / "tf1" / "saved_model"), "--signature", "logits_only", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["signature"] == "logits_only"
    assert [row["name"] for row in report["outputs"]] == ["logits"]


def test_inspect_option_the_format_does_not_take(capsys):
    assert main(["inspect", str(ZOO_DIR / "tf1" / "frozen.pb"), "--signature", "serving_default"]) == 2
    err = capsys.readouterr().err
    assert "option(s) signature that the frozen-graph loader does not take" in err and err.count("\n") == 1


# -- predict ------------------------------------------------------------------------------------------


def test_predict_npy_to_npy_and_h5(tmp_path, capsys):
    import h5py
    import numpy as np

    import tf1infer

    x = np.random.default_rng(5).normal(size=(300, 10)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    with tf1infer.load(zoo_path("mlp")) as predictor:
        want = predictor.predict(x, batch_size=64)
    assert (
        main(["predict", zoo_path("mlp"), str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy"), "--batch-size", "64"])
        == 0
    )
    assert "wrote 300 rows to" in capsys.readouterr().out
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), want)
    assert (
        main(
            [
                "predict",
                zoo_path("mlp"),
                str(tmp_path / "x.npy"),
                "-o",
                str(tmp_path / "y.h5"),
                "--batch-size",
                "auto",
                "--quiet",
            ]
        )
        == 0
    )
    assert "chosen for a memory limit of" in capsys.readouterr().out
    with h5py.File(tmp_path / "y.h5", "r") as file:
        assert_same_rows(file["dense_2"][:], want)  # Batches of the size chosen.


def test_predict_with_the_tflite_backend_and_its_fallback(tmp_path, capsys):
    import numpy as np

    import tf1infer

    x = np.random.default_rng(6).normal(size=(70, 10)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    with tf1infer.load(zoo_path("mlp")) as predictor:
        want = predictor.predict(x)
    assert (
        main(
            ["predict", zoo_path("mlp"), str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy"), "--backend", "tflite"]
        )
        == 0
    )
    assert "backend: tflite\n" in capsys.readouterr().out
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), want, rtol=0, atol=1e-5)
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():  # erf outside GELU's pattern has no TF Lite builtin.
        tf.math.erf(tf.compat.v1.placeholder(tf.float32, [None, 4], name="x"), name="erf")
    (tmp_path / "erf.pb").write_bytes(graph.as_graph_def().SerializeToString())
    np.save(tmp_path / "e.npy", np.random.default_rng(7).normal(size=(5, 4)).astype(np.float32))
    assert (
        main(
            [
                "predict",
                str(tmp_path / "erf.pb"),
                str(tmp_path / "e.npy"),
                "-o",
                str(tmp_path / "s.npy"),
                "--backend",
                "auto",
            ]
        )
        == 0
    )
    assert "backend: session (TF Lite fell back: TF Lite cannot convert this graph: 'tf.Erf'" in capsys.readouterr().out
    assert np.load(tmp_path / "s.npy").shape == (5, 4)


def test_predict_npz_and_h5_inputs_by_name(tmp_path, capsys):
    import h5py
    import numpy as np
    from conftest import random_inputs

    import tf1infer

    with tf1infer.load(zoo_path("two_in_two_out")) as predictor:
        arrays = dict(zip(predictor.input_names, random_inputs(predictor.inputs, 40, seed=9)))
        want = dict(zip(predictor.output_names, predictor.predict(arrays)))
    np.savez(tmp_path / "in.npz", **arrays)
    with h5py.File(tmp_path / "in.h5", "w") as file:
        for name, array in arrays.items():
            file[name] = array
        file["row_ids"] = np.arange(40)  # Other datasets are left alone.
    for source in ("in.npz", "in.h5"):
        out = tmp_path / f"out-{source}.h5"
        assert main(["predict", zoo_path("two_in_two_out"), str(tmp_path / source), "-o", str(out)]) == 0
        with h5py.File(out, "r") as file:
            for name, array in want.items():
                np.testing.assert_array_equal(file[name][:], array)
    capsys.readouterr()


def test_predict_image_folder_with_labels(tmp_path, capsys):
    import h5py
    import numpy as np
    import tensorflow as tf

    for label in ("a", "b"):
        (tmp_path / "images" / label).mkdir(parents=True)
        (tmp_path / "images" / label / "1.png").write_bytes(tf.io.encode_png(np.full((16, 16, 3), 9, np.uint8)).numpy())
    (tmp_path / "images" / "b" / "bad.png").write_bytes(b"garbage")
    out = tmp_path / "out.h5"
    assert (
        main(["predict", zoo_path("cnn"), str(tmp_path / "images"), "-o", str(out), "--labels", "--rescale", "0.5"])
        == 0
    )
    captured = capsys.readouterr()
    assert "wrote 2 rows" in captured.out and "b/bad.png: not a decodable image" in captured.out
    assert "skipped b/bad.png" in captured.err
    with h5py.File(out, "r") as file:
        assert file["labels"][:].tolist() == [0, 1]
        assert file["skipped"].shape == (1, 2)


def test_predict_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys):
    import numpy as np

    np.save(tmp_path / "x.npy", np.ones((5, 7), np.float32))
    cases = [
        ([str(tmp_path / "x.npy")], "expects size 10 on axis 1"),
        ([str(tmp_path / "missing.npy")], "no such input file or image folder"),
        ([str(tmp_path / "x.npy"), "--batch-size", "0"], "--batch-size must be a positive integer or 'auto'"),
        ([str(tmp_path / "x.npy"), "--memory-limit", "lots", "--batch-size", "auto"], "--memory-limit must be"),
    ]
    for arguments, message in cases:
        assert main(["predict", zoo_path("mlp"), *arguments, "-o", str(tmp_path / "y.h5")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("tf1infer: error: ") and message in err[-1]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["x.npy"]


def test_killed_predict_resumes_to_the_same_file(tmp_path):
    """A real crash: the process is killed mid-run, then --resume finishes the .partial file."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import h5py
    import numpy as np

    x = np.random.default_rng(12).normal(size=(40000, 10)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    command = [sys.executable, "-m", "tf1infer.cli", "predict", zoo_path("mlp"), str(tmp_path / "x.npy"), "--quiet"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    partial = tmp_path / "killed.h5.partial"
    # One row per batch (a commit each): slow enough to be killed part way through.
    process = subprocess.Popen(
        command + ["-o", str(tmp_path / "killed.h5"), "--batch-size", "1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    rows = 0
    while time.time() < deadline and rows < 500:
        time.sleep(0.2)
        if partial.exists():
            try:
                with h5py.File(partial, "r", locking=False) as file:
                    rows = int(file.attrs.get("rows", 0))
            except OSError:
                pass  # Caught between writes: look again.
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert 500 <= rows < 40000, "the run must be killed part way through"
    assert not (tmp_path / "killed.h5").exists()
    subprocess.run(
        command + ["-o", str(tmp_path / "killed.h5"), "--resume"], env=env, check=True, stdout=subprocess.DEVNULL
    )
    subprocess.run(command + ["-o", str(tmp_path / "whole.h5")], env=env, check=True, stdout=subprocess.DEVNULL)
    with h5py.File(tmp_path / "killed.h5", "r") as resumed, h5py.File(tmp_path / "whole.h5", "r") as whole:
        assert resumed.attrs["rows"] == 40000
        # Rows before the kill ran one at a time, the rest in batches that start elsewhere than the whole run's.
        assert_same_rows(resumed["dense_2"][:], whole["dense_2"][:])


def test_inspect_precision(capsys):
    assert main(["inspect", zoo_path("mlp"), "--precision", "--calibration-samples", "8"]) == 0
    lines = [" ".join(line.split()) for line in capsys.readouterr().out.splitlines()]
    assert "precision deviation from float32 on 8 random samples:" in lines
    bfloat16 = (
        "bfloat16: max abs "
        if onednn_enabled()
        else "bfloat16: unavailable: precision='bfloat16' needs TensorFlow's oneDNN"
    )
    assert any(line.startswith(bfloat16) for line in lines)
    assert main(["inspect", zoo_path("mlp"), "--precision", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)["precision_report"]
    assert 0 < report["precisions"]["float16"]["max_rel"] < 5e-3


def _run_cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    """``python -m tf1infer ARGS`` with TF_CPP_MIN_LOG_LEVEL unset (the suite sets it), plus ``env``."""
    base = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run(
        [sys.executable, "-m", "tf1infer", *args], capture_output=True, text=True, timeout=300, env={**base, **env}
    )


def _log_messages(text: str) -> set[str]:
    """TensorFlow's C++ log lines without their timestamp and thread id (``I0000 00:00:17... 2519 file.cc:31] msg``,
    ``2026-12-02 12:26:22.252284: I external/.../file.cc:31] msg``)."""
    prefix = r"^(?:[IWEF]\d{4} [\d:.]+\s+\d+ |\d{4}-\d\d-\d\d [\d:.]+: [IWEF] )"  # TensorFlow 2.21's, 2.15's.
    return {re.sub(prefix, "", line) for line in text.splitlines() if line.strip()}


def test_cli_hides_tensorflows_start_up_log_unless_asked():
    quiet = _run_cli("inspect", zoo_path("mlp"))
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == ""  # Not one line of CUDA probing, CPU features or MLIR passes.
    assert quiet.stdout.startswith("format                 keras-h5")
    # What TensorFlow itself prints when imported here comes back with --verbose, or when the user chose a level.
    bare = subprocess.run(
        [sys.executable, "-c", "import tensorflow"],
        capture_output=True,
        text=True,
        timeout=300,
        env={key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"},
    )
    shown = _run_cli("inspect", zoo_path("mlp"), "--verbose")
    assert shown.returncode == 0, shown.stderr
    assert _log_messages(bare.stderr) <= _log_messages(shown.stderr), (bare.stderr, shown.stderr)
    # The user's own TF_CPP_MIN_LOG_LEVEL is theirs to set: the command then leaves TensorFlow's log alone.
    from tf1infer.cli.commands import _hides_tensorflow_log

    assert _hides_tensorflow_log(["inspect", "m.h5"], {})
    assert not _hides_tensorflow_log(["inspect", "m.h5", "--verbose"], {})
    assert not _hides_tensorflow_log(["inspect", "m.h5"], {"TF_CPP_MIN_LOG_LEVEL": "0"})


def test_a_failing_tensorflow_import_is_not_hidden(tmp_path):
    # A broken install (a stand-in tensorflow package first on the path) prints natively, then fails to import.
    (tmp_path / "tensorflow").mkdir()
    (tmp_path / "tensorflow" / "__init__.py").write_text(
        "import os\nos.write(2, b'native loader: libtensorflow_framework.so.2 missing\\n')\n"
        "raise ImportError('libtensorflow_framework.so.2: cannot open shared object file')\n"
    )
    done = _run_cli("kernels", PYTHONPATH=str(tmp_path))
    assert done.returncode != 0
    assert "native loader: libtensorflow_framework.so.2 missing" in done.stderr
    assert "ImportError: libtensorflow_framework.so.2: cannot open shared object file" in done.stderr


def test_version_names_tensorflow_numpy_and_the_kernel_family(capsys):
    import tensorflow as tf

    import tf1infer
    from tf1infer.runtime import kernels

    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    shown = dict(
        line.split(None, 1) if not line.startswith("keras 3") else ("keras 3", line[11:])
        for line in capsys.readouterr().out.splitlines()
    )
    assert shown["tf1infer"] == tf1infer.__version__
    assert shown["tensorflow"] == tf.__version__
    assert shown["numpy"] == np.__version__
    assert shown["kernels"] == kernels.describe()
    assert shown["keras 3"] == (keras_versions.keras3_version() or "not installed")


def test_demo_runs_from_any_folder_on_the_model_the_package_carries(tmp_path, monkeypatch, capsys):
    """`tf1infer demo` from an installed wheel has no repository at hand: the package carries the zoo's MLP and
    its samples (written there by legacy_models/make_zoo.py, byte for byte)."""
    from tf1infer.cli.demo import DEMO_MODEL

    carried = Path(DEMO_MODEL)
    assert carried.read_bytes() == (ZOO_DIR / "mlp.h5").read_bytes()
    assert (carried.parent / "samples" / "mlp.npz").read_bytes() == (ZOO_DIR / "samples" / "mlp.npz").read_bytes()
    monkeypatch.chdir(tmp_path)
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "predicted 16 rows from" in out and "samples/mlp.npz" in out and "max |tf1infer - keras|" in out
