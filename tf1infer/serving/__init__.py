"""``tf1infer serve``: legacy models behind TensorFlow Serving's REST and gRPC APIs and the Open Inference
Protocol (KServe V2), micro-batched.

Every format :func:`tf1infer.load` reads (Keras 1/2 ``.h5`` with Lambda
functions passed by the operator, TF1 SavedModels, frozen graphs, meta graph +
checkpoint) answers TF Serving's clients (``requests``/curl on
``/v1/models/NAME:predict``, ``tensorflow-serving-api`` stubs over gRPC) and
the Open Inference Protocol's (``/v2/models/NAME/infer``, Triton's binary
tensor extension, ``inference.GRPCInferenceService``: ``tritonclient``,
KServe, Seldon) on the same two ports.

Example:
    >>> from tf1infer.serving import Server, ModelConfig
    >>> server = Server([ModelConfig("gender", "model.h5", options={"lambdas": {"lambda_1": fn}})])
    >>> server.run()  # until SIGTERM / Ctrl-C; or server.start_in_thread() ... server.stop()

Needs the ``serve`` extra (aiohttp, grpcio, grpcio-health-checking,
prometheus-client, orjson, tensorflow-serving-api): see :func:`require_serving`.
"""

from __future__ import annotations

import importlib
from typing import Any

from tf1infer.errors import MissingDependencyError

# The modules of the serve extra, and what pip calls each.
_REQUIRED = {
    "aiohttp": "aiohttp",
    "grpc": "grpcio",
    "grpc_health.v1": "grpcio-health-checking",
    "prometheus_client": "prometheus-client",
    "orjson": "orjson",
    "tensorflow_serving.apis": "tensorflow-serving-api",
}


def require_serving() -> None:
    """Check that the serve extra is installed, naming what is missing and the pip command that adds it.

    ``tensorflow-serving-api`` X.Y requires TensorFlow X.Y or newer, so pip would
    meet it by upgrading an older TensorFlow; the command named here pins it
    to the TensorFlow installed.
    """
    missing = []
    for module, package in _REQUIRED.items():
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(package)
    if missing:
        import tensorflow as tf

        minor = ".".join(tf.__version__.split(".")[:2])
        others = [package for package in missing if package != "tensorflow-serving-api"]
        command = "pip install " + " ".join(
            [*others, *([f"'tensorflow-serving-api~={minor}.0'"] if "tensorflow-serving-api" in missing else [])]
        )
        raise MissingDependencyError(
            f"tf1infer serve needs {', '.join(missing)} (the serve extra); beside TensorFlow {tf.__version__}: {command}"
        )


def __getattr__(name: str) -> Any:
    # Imported on first use: the server's modules import aiohttp, grpcio and the serving protos.
    if name in ("Server", "Limits"):
        require_serving()
        from tf1infer.serving import server

        return getattr(server, name)
    if name in ("ModelConfig", "Batching"):
        require_serving()
        from tf1infer.serving import models

        return getattr(models, name)
    raise AttributeError(f"module 'tf1infer.serving' has no attribute {name!r}")


__all__ = ["Batching", "Limits", "ModelConfig", "Server", "require_serving"]
