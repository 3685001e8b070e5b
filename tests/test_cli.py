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
