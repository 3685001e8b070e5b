"""tf1infer: run legacy TensorFlow 1.x / Keras models fast, from one persistent Session.

The public surface::

    tf1infer.load(path, backend=..., **options)     # -> Predictor; alias: load_model
    tf1infer.Predictor                              # predict, predict_on_batch, inputs, outputs...
    tf1infer.export_saved_model(model, out_dir)     # a verified TF2 SavedModel -> ExportReport
    tf1infer.export_keras(model, "out.keras")        # a verified, trainable Keras 3 model -> KerasExportReport
    tf1infer.images(folder, ...)                    # an image folder to stream through predict_iter / predict_to
    tf1infer.model_from_json(text).load_weights(p)  # Keras 2's two-step load
    tf1infer.errors                                 # Tf1InferError and its subclasses

Example:
    >>> from tf1infer import load_model          # was: from keras.models import load_model
    >>> model = load_model("legacy_models/mlp.h5")
    >>> y = model.predict(x)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public names and the modules that define them. They are imported on first use (PEP 562), so that
# ``import tf1infer`` does not import TensorFlow: the ``tf1infer`` command sets how much of
# TensorFlow's C++ log to show, which TensorFlow reads once, when it is imported.
_PUBLIC = {
    "ExportReport": "tf1infer.export.saved_model",
    "ImageFolder": "tf1infer.io.images",
    "KerasExportReport": "tf1infer.export.keras3",
    "LayerView": "tf1infer.faces.keras",
    "PredictionSummary": "tf1infer.io.writers",
    "Predictor": "tf1infer.predictor",
    "TensorSpec": "tf1infer.io.feeds",
    "detect_format": "tf1infer.loaders",
    "export_keras": "tf1infer.export.keras3",
    "export_saved_model": "tf1infer.export.saved_model",
    "images": "tf1infer.io.images",
    "load": "tf1infer.loading",
    "load_model": "tf1infer.loading",
    "model_from_json": "tf1infer.loading",
}

__all__ = [
    "ExportReport",
    "ImageFolder",
    "KerasExportReport",
    "LayerView",
    "PredictionSummary",
    "Predictor",
    "TensorSpec",
    "__version__",
    "detect_format",
    "errors",
    "export_keras",
    "export_saved_model",
    "images",
    "load",
    "load_model",
    "model_from_json",
]

if TYPE_CHECKING:  # What static analysers and IDEs see; at run time these come from __getattr__.
    from tf1infer import errors
    from tf1infer.export.keras3 import KerasExportReport, export_keras
    from tf1infer.export.saved_model import ExportReport, export_saved_model
    from tf1infer.faces.keras import LayerView
    from tf1infer.io.feeds import TensorSpec
    from tf1infer.io.images import ImageFolder, images
    from tf1infer.io.writers import PredictionSummary
    from tf1infer.loaders import detect_format
    from tf1infer.loading import load, load_model, model_from_json
    from tf1infer.predictor import Predictor


def __getattr__(name: str) -> Any:
    """A public name (imported now, then cached) or a submodule such as ``tf1infer.errors``."""
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    if not name.startswith("__"):
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
