"""The exception hierarchy of tf1infer.

Every error tf1infer raises on purpose derives from :class:`Tf1InferError`, so one
``except tf1infer.errors.Tf1InferError`` catches them all. Where a built-in type
fits, the error also derives from it (``InputError`` is a ``ValueError``,
``ModelNotFoundError`` a ``FileNotFoundError``) so that code written against Keras's
own exceptions keeps working after switching to tf1infer.

Messages name the file or input, what was expected and what was found. The
TensorFlow or h5py exception that caused an error, if any, is chained as
``__cause__``.
"""

from __future__ import annotations


class Tf1InferError(Exception):
    """Base class of every error raised by tf1infer."""


class ModelLoadError(Tf1InferError):
    """A model file or directory could not be loaded."""


class ModelNotFoundError(ModelLoadError, FileNotFoundError):
    """The model path does not exist."""


class UnsafeModelError(ModelLoadError):
    """Loading the model would execute Python code stored in the file.

    Raised for Keras ``Lambda`` layers unless a replacement function is given
    for each of them with ``lambdas=``.
    """


class InvalidOptionError(Tf1InferError, TypeError):
    """``load()`` got an option the model's format does not take (a ``TypeError``, as for a bad keyword)."""


class InputError(Tf1InferError, ValueError):
    """Data passed to a predict method does not fit the model's inputs."""


class PredictionError(Tf1InferError, RuntimeError):
    """TensorFlow failed while running the model on valid-looking inputs."""


class OutputFileError(Tf1InferError):
    """A prediction output file cannot be written, or an interrupted run cannot be resumed."""


class ExportError(Tf1InferError):
    """A model could not be exported (``out_dir`` exists, or the graph has parts that do not export)."""


class ExportVerificationError(ExportError):
    """The exported SavedModel does not reproduce the original outputs; nothing was written."""


class PredictorClosedError(Tf1InferError, RuntimeError):
    """The Predictor was used after ``close()``."""
