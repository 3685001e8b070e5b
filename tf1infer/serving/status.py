"""Failures as TensorFlow Serving reports them: a canonical error code, its HTTP status and its gRPC status.

TF Serving turns every failure into a ``tensorflow::Status``; its REST server
maps the code to an HTTP status (``model_servers/http_server.cc``) and writes
``{"error": message}``, its gRPC server sends the same code and message as the
call's status. :class:`ServingError` carries that pair here, and
:func:`from_exception` gives tf1infer's own errors the code TF Serving would
give the same failure.
"""

from __future__ import annotations

from tf1infer.errors import InputError, PredictionError, PredictorClosedError, QueueFullError

# model_servers/http_server.cc, ToHTTPStatusCode.
HTTP_STATUS = {
    "OK": 200,
    "CANCELLED": 500,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
    "UNAUTHENTICATED": 401,
}


class ServingError(Exception):
    """A failed request: ``code`` (a canonical code name, as gRPC's ``StatusCode``) and the message for the client.

    Args:
        code: ``"INVALID_ARGUMENT"``, ``"NOT_FOUND"``, ``"UNAVAILABLE"``, ...
        message: what the client reads, in TF Serving's words where TF Serving has some.
    """

    def __init__(self, code: str, message: str):
        if code not in HTTP_STATUS:
            raise ValueError(f"unknown status code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.code]


def invalid(message: str) -> ServingError:
    return ServingError("INVALID_ARGUMENT", message)


def not_found(message: str) -> ServingError:
    return ServingError("NOT_FOUND", message)


def from_exception(exc: BaseException) -> ServingError:
    """The status TF Serving would answer for ``exc``: TensorFlow's own code where a run failed in TensorFlow."""
    if isinstance(exc, ServingError):
        return exc
    if isinstance(exc, QueueFullError):
        # TF Serving's batching queue: "The batch scheduling queue to which this task was submitted is full".
        return ServingError(
            "UNAVAILABLE", f"The batch scheduling queue to which this task was submitted is full: {exc}"
        )
    if isinstance(exc, PredictorClosedError):
        return ServingError("UNAVAILABLE", f"the server is shutting down: {exc}")
    if isinstance(exc, InputError):
        return invalid(str(exc))
    if isinstance(exc, PredictionError):
        return ServingError(tensorflow_code(exc.__cause__) or "INVALID_ARGUMENT", str(exc))
    return ServingError("INTERNAL", f"{type(exc).__name__}: {exc}")


def dtype_string(dtype) -> str:
    """TensorFlow's ``DataTypeString`` (what TF Serving's messages say): ``float``, ``double``, ``int32``, ``string``..."""
    import tensorflow as tf

    try:
        name = tf.dtypes.as_dtype(dtype).name
    except TypeError:
        return str(dtype)
    return {"float32": "float", "float64": "double", "float16": "half"}.get(name, name)


def tensorflow_code(exc: BaseException | None) -> str | None:
    """The canonical code name of a ``tf.errors.OpError`` (``"INVALID_ARGUMENT"``), or None for anything else."""
    code = getattr(exc, "error_code", None)
    if not isinstance(code, int):
        return None
    from tensorflow.core.protobuf import error_codes_pb2

    try:
        name = error_codes_pb2.Code.Name(code)
    except ValueError:
        return None
    return name if name in HTTP_STATUS else None


__all__ = ["HTTP_STATUS", "ServingError", "dtype_string", "from_exception", "invalid", "not_found", "tensorflow_code"]
