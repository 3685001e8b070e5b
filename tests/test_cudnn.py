"""GPU-trained recurrent layers (Keras 2's CuDNNLSTM / CuDNNGRU) run on CPUs, against what cuDNN computes."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import CUDNN_MODELS, cudnn_reference, zoo_path

import tf1infer
from tf1infer.cli import main

# float32 inference against a float64 numpy reference of cuDNN's formulas.
ATOL = 1e-5


@pytest.mark.parametrize("name", CUDNN_MODELS)
def test_cudnn_layers_give_what_cudnn_computes(name):
    rng = np.random.default_rng(3)
    with tf1infer.load(zoo_path(name)) as predictor:
        steps = predictor.inputs[0].shape[1] or 11  # The GRU takes sequences of any length.
        for rows in (1, 7):
            x = rng.normal(0.0, 1.0, (rows, steps, predictor.inputs[0].shape[2])).astype("float32")
            np.testing.assert_allclose(predictor.predict(x), cudnn_reference(name, x), atol=ATOL, rtol=0)
        assert not {op.type for op in predictor.graph.get_operations()} & {"CudnnRNN", "CudnnRNNV2", "CudnnRNNV3"}


def test_cudnn_layers_are_named_in_the_metadata_and_by_inspect(capsys):
    with tf1infer.load(zoo_path("cudnn_gru")) as predictor:
        assert predictor.metadata["cudnn_layers_run_as"] == ["cudnn_gru (CuDNNGRU -> GRU(reset_after=True))"]
    assert main(["inspect", zoo_path("cudnn_lstm")]) == 0
    lines = [" ".join(line.split()) for line in capsys.readouterr().out.splitlines()]
    assert "cudnn_layers_run_as cudnn_lstm (CuDNNLSTM -> LSTM)" in lines
