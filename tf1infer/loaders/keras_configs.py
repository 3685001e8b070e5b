"""Walking a Keras model config (any Keras version's JSON, as a dict), shared by the Keras 1 and Keras 2 loaders."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def iter_layer_configs(config: Any) -> Iterator[dict]:
    """Every layer config in a Keras model config, nested models and wrappers included."""
    if not isinstance(config, dict):
        return
    if "class_name" in config:
        yield config
    inner = config.get("config", config)
    if isinstance(inner, list):  # Keras 2.0-2.1 Sequential: config is the layer list.
        layers = inner
    elif isinstance(inner, dict):
        layers = inner.get("layers") or []
        for key in ("layer", "backward_layer"):  # TimeDistributed, Bidirectional.
            if isinstance(inner.get(key), dict):
                yield from iter_layer_configs(inner[key])
    else:
        layers = []
    for layer in layers:
        yield from iter_layer_configs(layer)
