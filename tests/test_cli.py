"""The tf1infer command: inspect, demo, and one-line errors."""

from __future__ import annotations

import io
import json

import pytest
from conftest import ZOO_DIR, zoo_path

from tf1infer.cli import main
from tf1infer.demo import run_demo


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


@pytest.mark.parametrize("relative, options, fmt, parameters", INSPECT_CASES, ids=[case[0] for case in INSPECT_CASES])
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


def test_inspect_describes_a_lambda_model_without_running_it(capsys):
    assert main(["inspect", zoo_path("lambda"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["loaded"] is False
    assert report["lambda_layers"] == [
        "'affine' (layer 3 of 4, input from the previous layer, input shape (None, 8), output shape unknown)"
    ]
    assert 'lambdas={"affine": lambda x: ...}' in report["why_not_loaded"]
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
