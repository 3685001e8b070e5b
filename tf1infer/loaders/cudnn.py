"""GPU-trained recurrent layers (Keras 2's ``CuDNNLSTM`` / ``CuDNNGRU``) as the layers that run on any CPU.

Text models trained on GPUs in 2017-2019 used ``CuDNNLSTM`` and ``CuDNNGRU``:
their only kernel is cuDNN's (``CudnnRNN*`` ops), so on a CPU they fail with
"No OpKernel was registered to support Op 'CudnnRNNV3'". What they compute is
an ``LSTM`` (tanh and sigmoid activations, one bias per gate per side, summed)
and a ``GRU(reset_after=True)`` (the reset gate applied after the recurrent
product). Keras 2 itself converted such weights when it loaded them into those
layers; this module rewrites the layer configs the same way, and the weights
then go through Keras's own conversion (``_convert_rnn_weights`` in tf_keras's
HDF5 loader: per-gate kernel layout, LSTM's two bias halves summed, GRU's biases
stacked), which recognises cuDNN weights by their bias size.

The rewrite is shared by the loader (so the Predictor's graph runs on CPUs) and
therefore by the Keras 3 export, which starts from the loaded model.
"""

from __future__ import annotations

import copy
from typing import Any

# Config keys of CuDNNLSTM / CuDNNGRU that the plain layers take as they are.
_SHARED_KEYS = (
    "name",
    "trainable",
    "dtype",
    "units",
    "kernel_initializer",
    "recurrent_initializer",
    "bias_initializer",
    "kernel_regularizer",
    "recurrent_regularizer",
    "bias_regularizer",
    "activity_regularizer",
    "kernel_constraint",
    "recurrent_constraint",
    "bias_constraint",
    "return_sequences",
    "return_state",
    "go_backwards",
    "stateful",
    "batch_input_shape",
    "batch_size",
    "input_dtype",
)

# What cuDNN's kernels compute, as settings of the plain layers.
_AS_PLAIN = {
    "CuDNNLSTM": ("LSTM", {"activation": "tanh", "recurrent_activation": "sigmoid", "use_bias": True}),
    "CuDNNGRU": (
        "GRU",
        {"activation": "tanh", "recurrent_activation": "sigmoid", "use_bias": True, "reset_after": True},
    ),
}


def convert_cudnn_layers(config: Any) -> tuple[Any, list[str]]:
    """``config`` with every CuDNNLSTM / CuDNNGRU layer (nested and wrapped ones too) as LSTM / GRU.

    Returns:
        The converted config (a copy; ``config`` itself is not changed) and
        ``"name (CuDNNLSTM -> LSTM)"`` for each converted layer, in config order.
    """
    if not _has_cudnn(config):
        return config, []
    config = copy.deepcopy(config)
    converted: list[str] = []
    _convert(config, converted)
    return config, converted


def _has_cudnn(node: Any) -> bool:
    if isinstance(node, dict):
        return node.get("class_name") in _AS_PLAIN or any(_has_cudnn(value) for value in node.values())
    if isinstance(node, list):
        return any(_has_cudnn(item) for item in node)
    return False


def _convert(node: Any, converted: list[str]) -> None:
    if isinstance(node, list):
        for item in node:
            _convert(item, converted)
        return
    if not isinstance(node, dict):
        return
    class_name = node.get("class_name")
    if class_name in _AS_PLAIN and isinstance(node.get("config"), dict):
        plain, settings = _AS_PLAIN[class_name]
        old = node["config"]
        new = {key: old[key] for key in _SHARED_KEYS if key in old}
        if plain == "LSTM":
            new["unit_forget_bias"] = old.get("unit_forget_bias", True)
        new.update(settings)
        node["class_name"] = plain
        node["config"] = new
        node.pop("module", None)
        node.pop("registered_name", None)
        converted.append(
            f"{old.get('name', '?')} ({class_name} -> {plain}{'(reset_after=True)' if plain == 'GRU' else ''})"
        )
        return
    for value in node.values():
        _convert(value, converted)


__all__ = ["convert_cudnn_layers"]
