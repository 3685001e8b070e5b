"""The Open Inference Protocol (KServe's V2 protocol), whatever carries it: models, datatypes, tensors, inference.

What both of its transports share (``open_inference_rest`` for HTTP with
Triton's binary tensor extension, ``open_inference_grpc`` for
``inference.GRPCInferenceService``):

- **Models**: a served model by its name and, optionally, its version as a
  string (``"123"``); no version means the highest, as TF Serving's API
  serves. Each model answers V2 requests with its ``serving_default``
  signature (a TF1 SavedModel without one: its first predict signature, by
  name); its V2 inputs and outputs are that signature's aliases (a Keras
  model's input and output layer names). Platform: ``tensorflow_savedmodel``
  for a SavedModel, ``tensorflow_graphdef`` for every other format (each runs
  as a TF1 GraphDef in a session).
- **Datatypes** both ways: BOOL, UINT8..64, INT8..64, FP16, FP32, FP64, BYTES
  (and Triton's BF16). A request's datatype must be the model input's: no
  casting, as TF Serving does not cast (an FP64 tensor for an FP32 input is a
  400 naming the input, so a client's wrong dtype never passes unnoticed).
- **Tensors** from JSON ``data`` (nested or flat, row-major), from raw bytes
  (Triton's binary extension, gRPC's ``raw_input_contents``: little-endian;
  BYTES as 4-byte little-endian lengths, each followed by its bytes) or from
  gRPC's typed ``contents``. The data must hold exactly the elements the shape
  declares: a shape alone never makes the server allocate anything.
- **Inference** goes through the same checks, micro-batcher, queue limit and
  deadline as TF Serving's API (:meth:`Signature.run`).

Failures are :class:`ServingError` with a canonical code: INVALID_ARGUMENT
(400) for a request that does not fit the model, NOT_FOUND (404) for an
unknown model or version, UNAVAILABLE (503) for a full queue,
DEADLINE_EXCEEDED (504) past the deadline.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from tf1infer.loaders.saved_model import DEFAULT_SIGNATURE
from tf1infer.serving.json_tensors import excerpt
from tf1infer.serving.models import PREDICT_METHOD, Endpoint, ModelRegistry, Servable, Signature
from tf1infer.serving.status import invalid, not_found

SERVER_NAME = "tf1infer"
# Triton's binary tensor extension; the others Triton lists (statistics, model repository, shared memory, ...) are
# not implemented here.
EXTENSIONS = ("binary_tensor_data",)
_BFLOAT16 = np.dtype(tf.bfloat16.as_numpy_dtype)
DATATYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BF16": _BFLOAT16,
    "BYTES": np.dtype(object),
}
_NAMES = {dtype: name for name, dtype in DATATYPES.items() if name != "BYTES"}
_MAX_DIMENSION = 2**63 - 1
_LENGTH = struct.Struct("<I")


def datatype(dtype: np.dtype) -> str:
    """The protocol's name for a model tensor's dtype (strings: BYTES)."""
    dtype = np.dtype(dtype)
    if dtype.kind in "OSU":
        return "BYTES"
    name = _NAMES.get(dtype)
    if name is None:
        raise invalid(f"the model's dtype {dtype} has no Open Inference Protocol datatype")
    return name


def numpy_dtype(name: Any, tensor: str) -> np.dtype:
    """The numpy dtype of a request's datatype, or a 400 naming the tensor and the datatypes there are."""
    dtype = DATATYPES.get(name) if isinstance(name, str) else None
    if dtype is None:
        raise invalid(f"input '{tensor}': unknown datatype {excerpt(name, 40)}; expected one of {', '.join(DATATYPES)}")
    return dtype


def clip(text: str, limit: int = 100) -> str:
    """A name a client sent, cut short for a message."""
    return text if len(text) <= limit else text[:limit] + "..."


# -- models ------------------------------------------------------------------------------------------------------


def find(registry: ModelRegistry, name: str, version: str = "") -> Servable:
    """The servable a request names; no version: the highest.

    Raises:
        ServingError: NOT_FOUND naming the model (and the versions it has).
    """
    versions = registry.versions(name)
    if not versions:
        served = registry.names
        listed = ", ".join(served[:20]) + (", ..." if len(served) > 20 else "")
        raise not_found(f"unknown model: '{clip(name)}' (served: {listed})")
    if not version:
        return versions[max(versions)]
    if not version.isdigit() or int(version) not in versions:
        raise not_found(
            f"model '{name}' has no version '{clip(version, 40)}' (versions: {', '.join(map(str, sorted(versions)))})"
        )
    return versions[int(version)]


def signature(servable: Servable) -> Signature:
    """The signature V2 requests run: ``serving_default``, else the first predict signature by name."""
    found = servable.signatures.get(DEFAULT_SIGNATURE)
    if found is not None:
        return found
    predict = [key for key, sig in sorted(servable.signatures.items()) if sig.method_name == PREDICT_METHOD]
    return servable.signatures[(predict or sorted(servable.signatures))[0]]


def platform(servable: Servable) -> str:
    return "tensorflow_savedmodel" if servable.format == "saved-model" else "tensorflow_graphdef"


def tensor_metadata(endpoint: Endpoint) -> dict[str, Any]:
    """``{"name", "datatype", "shape"}``: free dimensions -1; an input of unknown rank as ``[-1]``."""
    shape = [-1] if endpoint.shape is None else [-1 if size is None else int(size) for size in endpoint.shape]
    return {"name": endpoint.alias, "datatype": datatype(endpoint.dtype), "shape": shape}


def model_metadata(registry: ModelRegistry, servable: Servable) -> dict[str, Any]:
    """The model metadata response: name, versions, platform, inputs and outputs."""
    served = signature(servable)
    return {
        "name": servable.name,
        "versions": [str(version) for version in sorted(registry.versions(servable.name))],
        "platform": platform(servable),
        "inputs": [tensor_metadata(endpoint) for endpoint in served.inputs],
        "outputs": [tensor_metadata(endpoint) for endpoint in served.outputs],
    }


def server_metadata() -> dict[str, Any]:
    from tf1infer import __version__

    return {"name": SERVER_NAME, "version": __version__, "extensions": list(EXTENSIONS)}


# -- tensors from a request -----------------------------------------------------------------------------------------


def shape_of(value: Any, tensor: str) -> tuple[int, ...]:
    """A request's ``shape``: a list of non-negative integers."""
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(size, int) and not isinstance(size, bool) and 0 <= size <= _MAX_DIMENSION for size in value
    ):
        raise invalid(f"input '{tensor}': shape must be a list of non-negative integers, got {excerpt(value, 80)}")
    return tuple(int(size) for size in value)


def _elements(shape: Sequence[int]) -> int:
    return math.prod(shape)


def from_json_data(data: Any, dtype: np.dtype, shape: tuple[int, ...], tensor: str, datatype_name: str) -> np.ndarray:
    """A tensor from JSON ``data`` (nested or flat lists, row-major), checked against its datatype and shape."""
    if not isinstance(data, list):
        raise invalid(f"input '{tensor}': data must be a JSON array, got {excerpt(data, 80)}")
    count = _elements(shape)
    if dtype.kind == "O":
        return strings_tensor(_flat_strings(data, tensor), shape, tensor)
    try:
        parsed = np.asarray(data)
    except (ValueError, TypeError, OverflowError):  # Ragged lists (numpy >= 1.24 raises), or values numpy refuses.
        raise invalid(f"input '{tensor}': data is ragged or holds values that are not {datatype_name}") from None
    check_count(parsed.size, count, shape, tensor)
    if parsed.size and dtype.kind in "iu" and parsed.dtype.kind in "fO":
        exact = _whole_numbers(data)  # numpy reads [0, 2**64 - 1] as float64: read integers as integers.
        if exact is not None:
            try:
                return np.array(exact, dtype=dtype).reshape(shape)
            except OverflowError:
                raise invalid(f"input '{tensor}': a value is outside the range of {datatype_name}") from None
    if parsed.size:
        expected = {"b": "b", "i": "iu", "u": "iu", "f": "iuf"}[dtype.kind if dtype != _BFLOAT16 else "f"]
        if parsed.dtype.kind not in expected:
            if parsed.dtype.kind == "O":  # Mixed kinds, null, or integers past 64 bits.
                raise invalid(f"input '{tensor}': {datatype_name} data holds values that are not {datatype_name}")
            first = parsed.reshape(-1)[0].item()
            raise invalid(f"input '{tensor}': {datatype_name} data holds {excerpt(first, 40)}, not a {datatype_name}")
        if dtype.kind in "iu":
            info = np.iinfo(dtype)
            low, high = parsed.min(), parsed.max()
            if low < info.min or high > info.max:
                outside = low if low < info.min else high
                raise invalid(f"input '{tensor}': {outside} is outside the range of {datatype_name}")
    return parsed.astype(dtype).reshape(shape)


def _whole_numbers(data: list) -> list[int] | None:
    """Every value of nested lists if all are integers (not booleans), else None."""
    flat = np.asarray(data, dtype=object).reshape(-1).tolist()
    return flat if all(type(value) is int for value in flat) else None


def _flat_strings(data: list, tensor: str) -> list[bytes]:
    """Every string of nested lists, encoded UTF-8, in row-major order (without numpy's fixed-width copy, which
    one long string would make as long for every element)."""
    flat: list[bytes] = []
    stack: list[Any] = [iter(data)]
    while stack:
        item = next(stack[-1], _END)
        if item is _END:
            stack.pop()
        elif isinstance(item, list):
            if len(stack) > 64:
                raise invalid(f"input '{tensor}': data nests more than 64 lists deep")
            stack.append(iter(item))
        elif isinstance(item, str):
            flat.append(item.encode("utf-8"))
        else:
            raise invalid(f"input '{tensor}': BYTES data holds {excerpt(item, 40)}, not a string")
    return flat


_END = object()


def from_raw(raw: bytes | memoryview, dtype: np.dtype, shape: tuple[int, ...], tensor: str, datatype_name: str):
    """A tensor from raw little-endian bytes (BYTES: a 4-byte little-endian length before each element)."""
    count = _elements(shape)
    if dtype.kind == "O":
        return strings_tensor(_split_bytes(raw, tensor), shape, tensor)
    size = count * dtype.itemsize
    if len(raw) != size:
        raise invalid(
            f"input '{tensor}': shape [{','.join(map(str, shape))}] of {datatype_name} takes {size} bytes; "
            f"the request holds {len(raw)}"
        )
    return np.frombuffer(raw, dtype=dtype.newbyteorder("<")).astype(dtype, copy=False).reshape(shape)


def _split_bytes(raw: bytes | memoryview, tensor: str) -> list[bytes]:
    view = memoryview(raw)
    items = []
    offset = 0
    while offset < len(view):
        if offset + 4 > len(view):
            raise invalid(f"input '{tensor}': BYTES data ends inside an element's 4-byte length")
        (length,) = _LENGTH.unpack_from(view, offset)
        offset += 4
        if offset + length > len(view):
            raise invalid(f"input '{tensor}': a BYTES element of {length} bytes runs past the data's end")
        items.append(bytes(view[offset : offset + length]))
        offset += length
    return items


def strings_tensor(items: list[bytes], shape: tuple[int, ...], tensor: str) -> np.ndarray:
    """A BYTES tensor of ``shape`` from its elements, row-major."""
    check_count(len(items), _elements(shape), shape, tensor)
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array.reshape(shape)


def check_count(found: int, count: int, shape: Sequence[int], tensor: str) -> None:
    """The data holds exactly the elements the shape declares (a shape alone never allocates anything)."""
    if found != count:
        raise invalid(
            f"input '{tensor}': shape [{','.join(map(str, shape))}] holds {count} elements; the data has {found}"
        )


# -- tensors to a response ------------------------------------------------------------------------------------------


def raw_bytes(array: np.ndarray) -> bytes:
    """An output as raw bytes: little-endian, row-major; BYTES as length-prefixed elements."""
    if array.dtype.kind in "OSU":
        parts = []
        for item in array.reshape(-1):
            value = item if isinstance(item, bytes) else str(item).encode("utf-8")
            parts.append(_LENGTH.pack(len(value)))
            parts.append(value)
        return b"".join(parts)
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


def json_data(array: np.ndarray, output: str) -> Any:
    """An output's ``data`` for JSON: a flat array (orjson writes numeric arrays itself), strings as UTF-8 text."""
    flat = np.ascontiguousarray(array).reshape(-1)
    if flat.dtype.kind in "OSU":
        try:
            return [item.decode("utf-8") if isinstance(item, bytes) else str(item) for item in flat.tolist()]
        except UnicodeDecodeError:
            raise invalid(
                f"output '{output}' holds bytes that are not UTF-8 text: request it as binary data "
                '(parameters {"binary_data": true})'
            ) from None
    if flat.dtype == _BFLOAT16:
        return flat.astype(np.float32)
    return flat


# -- inference ----------------------------------------------------------------------------------------------------


@dataclass
class RequestTensor:
    """One input of a request: its name, datatype, shape and values."""

    name: str
    datatype: str
    array: np.ndarray


@dataclass
class Inference:
    """What a request ran on and what came out: ``outputs`` as ``(name, array)`` in the order asked for."""

    servable: Servable
    outputs: list[tuple[str, np.ndarray]]


def feeds(served: Signature, tensors: Sequence[RequestTensor]) -> list[np.ndarray]:
    """The request's tensors in the signature's input order: every input given once, datatypes equal to the model's."""
    by_name: dict[str, RequestTensor] = {}
    expected = {endpoint.alias: endpoint for endpoint in served.inputs}
    for tensor in tensors:
        if tensor.name in by_name:
            raise invalid(f"input '{tensor.name}' is given twice")
        endpoint = expected.get(tensor.name)
        if endpoint is None:
            raise invalid(f"unknown input '{clip(tensor.name)}'; the model's inputs: {', '.join(expected) or '(none)'}")
        wanted = datatype(endpoint.dtype)
        if tensor.datatype != wanted:
            raise invalid(f"input '{tensor.name}': the model takes {wanted}; the request sends {tensor.datatype}")
        by_name[tensor.name] = tensor
    missing = [alias for alias in expected if alias not in by_name]
    if missing:
        raise invalid(f"missing input{'s' if len(missing) > 1 else ''} {', '.join(repr(m) for m in missing)}")
    return served.arrange({name: tensor.array for name, tensor in by_name.items()})


def requested_outputs(served: Signature, names: Sequence[str] | None) -> list[str]:
    """The outputs to answer with: those asked for, in that order, or every output."""
    if not names:
        return served.output_aliases
    known = set(served.output_aliases)
    for name in names:
        if name not in known:
            raise invalid(f"unknown output '{clip(name)}'; the model's outputs: {', '.join(served.output_aliases)}")
    if len(set(names)) != len(names):
        raise invalid(f"an output is requested twice: {', '.join(names)}")
    return list(names)


async def infer(
    registry: ModelRegistry,
    name: str,
    version: str,
    tensors: Sequence[RequestTensor],
    outputs: Sequence[str] | None,
    timeout: float | None,
) -> Inference:
    """Run one request: the model found, inputs and outputs checked, the signature run with the others' requests."""
    servable = find(registry, name, version)
    served = signature(servable)
    wanted = requested_outputs(served, outputs)
    arrays = await served.run(feeds(served, tensors), timeout)
    produced: Mapping[str, np.ndarray] = dict(zip(served.output_aliases, arrays))
    return Inference(servable, [(alias, produced[alias]) for alias in wanted])


__all__ = [
    "DATATYPES",
    "EXTENSIONS",
    "Inference",
    "RequestTensor",
    "check_count",
    "clip",
    "datatype",
    "find",
    "from_json_data",
    "from_raw",
    "infer",
    "json_data",
    "model_metadata",
    "numpy_dtype",
    "raw_bytes",
    "server_metadata",
    "shape_of",
    "signature",
    "strings_tensor",
]
