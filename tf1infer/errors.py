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


class QueueFullError(Tf1InferError, RuntimeError):
    """Micro-batching's request queue is full and the caller asked not to wait (``block=False``)."""


class UnsupportedOperationError(Tf1InferError, NotImplementedError):
    """A Keras or TF1 call that makes no sense for a frozen inference model (``fit``, ``train_on_batch``...).

    The message says why and what to use instead (the Keras 3 export, for training).
    """


class LayerNotFoundError(Tf1InferError, ValueError):
    """``get_layer``, ``outputs=`` or ``function`` named a layer or tensor the model does not have."""


class MissingDependencyError(Tf1InferError, ImportError):
    """An optional integration needs a package or program that is not installed (the message says which)."""


# Lines of a TensorFlow error message that repeat the op's name or show where Python built it: the op's name is
# given once, in front of the reason, instead.
_TENSORFLOW_BOILERPLATE = (
    "Graph execution error",
    "Detected at node",
    "Node:",
    "[[",
    "File ",
    "Traceback",
    "Stack trace",
)


def tensorflow_reason(exc: BaseException) -> str:
    """TensorFlow's own reason for ``exc``, with the failing op's name, for a tf1infer error message.

    ``tf.errors.OpError`` messages start with "Graph execution error:" and a
    traceback of where Python built the op; the reason ("indices[0,1] = 12 is
    not in [0, 10)") comes after. This keeps every line of the reason, drops
    the rest, and names the op and the error class:
    ``"InvalidArgumentError at op 'embedding/embedding_lookup': indices[0,1] = 12 is not in [0, 10)"``.
    Other exceptions give ``"TypeName: message"`` with the whole message.
    """
    message = str(getattr(exc, "message", None) or exc).strip()
    reason_lines = [
        line.strip()
        for line in message.splitlines()
        if line.strip() and not line.strip().startswith(_TENSORFLOW_BOILERPLATE) and not line.startswith((" ", "\t"))
    ]
    reason = "; ".join(reason_lines) or message or "(no message)"
    op = getattr(exc, "op", None)
    node_def = getattr(exc, "node_def", None)
    op_name = getattr(op, "name", None) or getattr(node_def, "name", None)
    if not op_name:
        quoted = [
            line.split("'")[1] for line in message.splitlines() if line.startswith(("Node: '", "Detected at node '"))
        ]
        op_name = quoted[0] if quoted else None
    where = f" at op '{op_name}'" if op_name and op_name not in reason else ""
    return f"{type(exc).__name__}{where}: {reason}"
