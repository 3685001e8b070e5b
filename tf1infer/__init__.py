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
import sys
import types
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public names and the modules that define them. They are imported on first use (PEP 562), so that
# ``import tf1infer`` does not import TensorFlow: the ``tf1infer`` command sets how much of
# TensorFlow's C++ log to show, which TensorFlow reads once, when it is imported.
_PUBLIC = {
    "ExportReport": "tf1infer.export",
    "ImageFolder": "tf1infer.images",
    "KerasExportReport": "tf1infer.keras3_export",
    "LayerView": "tf1infer.keras_face",
    "PredictionSummary": "tf1infer.writers",
    "Predictor": "tf1infer.predictor",
    "TensorSpec": "tf1infer.feeds",
    "detect_format": "tf1infer.loaders",
    "export_keras": "tf1infer.keras3_export",
    "export_saved_model": "tf1infer.export",
    "images": "tf1infer.images",
    "load": "tf1infer.loading",
    "load_model": "tf1infer.loading",
    "model_from_json": "tf1infer.keras_face",
}

__all__ = sorted([*_PUBLIC, "errors", "__version__"])

if TYPE_CHECKING:  # What static analysers and IDEs see; at run time these come from __getattr__.
    from tf1infer import errors
    from tf1infer.export import ExportReport, export_saved_model
    from tf1infer.feeds import TensorSpec
    from tf1infer.images import ImageFolder, images
    from tf1infer.keras3_export import KerasExportReport, export_keras
    from tf1infer.keras_face import LayerView, model_from_json
    from tf1infer.loaders import detect_format
    from tf1infer.loading import load, load_model
    from tf1infer.predictor import Predictor
    from tf1infer.writers import PredictionSummary


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


class _Package(types.ModuleType):
    """Keeps ``tf1infer.images`` the function: importing the submodule of the same name would rebind it."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _PUBLIC and isinstance(value, types.ModuleType) and hasattr(value, name):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
