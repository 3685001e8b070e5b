"""The ``tensorflow-serving-api`` messages both APIs answer with, and tensors to and from ``TensorProto``.

Status and metadata are built once as the real protos (``GetModelStatusResponse``,
``GetModelMetadataResponse`` holding a ``SignatureDefMap``); gRPC sends them,
REST writes them as JSON the way TF Serving's REST handler does (status with
the protos' JSON names, metadata with their field names).

Tensors in requests are read with ``tf.make_ndarray`` (``tensor_content`` or the
typed fields), after checking what the declared shape would cost: a request
of a few bytes may declare a billion elements. Tensors in responses use the
typed fields (``float_val``, ``int64_val``, ...), as TF Serving's responses do
and official clients read.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, model_pb2

from tf1infer.serving.models import Servable
from tf1infer.serving.status import invalid

SIGNATURE_DEF_FIELD = "signature_def"

# Typed TensorProto fields by NumPy dtype (tensorflow/core/framework/tensor.proto).
_FIELDS = {
    np.dtype(np.float32): "float_val",
    np.dtype(np.float64): "double_val",
    np.dtype(np.int32): "int_val",
    np.dtype(np.int16): "int_val",
    np.dtype(np.int8): "int_val",
    np.dtype(np.uint8): "int_val",
    np.dtype(np.uint16): "int_val",
    np.dtype(np.int64): "int64_val",
    np.dtype(np.uint32): "uint32_val",
    np.dtype(np.uint64): "uint64_val",
    np.dtype(np.bool_): "bool_val",
}


def model_spec(servable: Servable, signature_name: str = "") -> model_pb2.ModelSpec:
    """The ``ModelSpec`` echoed in a response: the name, the version served, the signature resolved."""
    spec = model_pb2.ModelSpec(name=servable.name, signature_name=signature_name)
    spec.version.value = servable.version
    return spec


def metadata_response(servable: Servable) -> get_model_metadata_pb2.GetModelMetadataResponse:
    """``GetModelMetadataResponse``: the model spec and every signature, as a packed ``SignatureDefMap``."""
    signatures = get_model_metadata_pb2.SignatureDefMap()
    for key, signature in servable.signatures.items():
        signatures.signature_def[key].CopyFrom(signature.proto)
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.CopyFrom(model_spec(servable))
    response.metadata[SIGNATURE_DEF_FIELD].Pack(signatures)
    return response


def status_response(servables: Iterable[Servable]) -> get_model_status_pb2.GetModelStatusResponse:
    """``GetModelStatusResponse``: each version AVAILABLE, status OK (a version that fails to load stops the server)."""
    response = get_model_status_pb2.GetModelStatusResponse()
    for servable in sorted(servables, key=lambda item: item.version):
        status = response.model_version_status.add()
        status.version = servable.version
        status.state = get_model_status_pb2.ModelVersionStatus.AVAILABLE
        status.status.error_code = 0
        status.status.error_message = ""
    return response


def status_json(servables: Iterable[Servable]) -> dict[str, Any]:
    """The REST status body: the proto's JSON names (``model_version_status``), defaults printed."""
    return _to_dict(status_response(servables), field_names=False)


def metadata_json(servable: Servable) -> dict[str, Any]:
    """The REST metadata body, in TF Serving's shape: ``{"model_spec", "metadata": {"signature_def": {...}}}``."""
    response = metadata_response(servable)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    response.metadata[SIGNATURE_DEF_FIELD].Unpack(signatures)
    return {
        "model_spec": _to_dict(response.model_spec, field_names=True),
        "metadata": {SIGNATURE_DEF_FIELD: _to_dict(signatures, field_names=True)},
    }


def _to_dict(message: Any, field_names: bool) -> dict[str, Any]:
    """``MessageToDict`` with every field printed; protobuf 5.26 renamed the option that asks for it."""
    try:
        return json_format.MessageToDict(
            message, preserving_proto_field_name=field_names, always_print_fields_with_no_presence=True
        )
    except TypeError:  # protobuf < 5.26 (TensorFlow 2.15's).
        return json_format.MessageToDict(  # The older protobuf's name for the option.
            message, preserving_proto_field_name=field_names, including_default_value_fields=True
        )


def ndarray(proto: tensor_pb2.TensorProto, alias: str, max_bytes: int) -> np.ndarray:
    """A request tensor as an array, refusing shapes that would cost more than ``max_bytes`` to build."""
    dims = [dim.size for dim in proto.tensor_shape.dim]
    if any(size < 0 for size in dims):
        raise invalid(f"input '{alias}': a tensor shape with a negative size {dims}")
    try:
        dtype = tf.dtypes.as_dtype(proto.dtype)
    except TypeError:
        raise invalid(f"input '{alias}': unknown dtype enum {proto.dtype}") from None
    if dtype in (tf.resource, tf.variant) or proto.dtype == types_pb2.DT_INVALID:
        raise invalid(f"input '{alias}': tensors of {dtype.name} cannot be sent")
    elements = int(np.prod(dims, dtype=np.float64)) if dims else 1
    itemsize = 8 if dtype == tf.string else max(dtype.size, 1)
    if elements * itemsize > max_bytes:
        raise invalid(
            f"input '{alias}': shape {dims} of {dtype.name} would take {elements * itemsize} bytes, more than the "
            f"server's limit of {max_bytes} (--max-request-bytes)"
        )
    try:
        return tf.make_ndarray(proto)
    except (TypeError, ValueError) as exc:
        raise invalid(
            f"input '{alias}': the TensorProto does not hold a {dtype.name} tensor of shape {dims}: {exc}"
        ) from None


def tensor_proto(array: np.ndarray) -> tensor_pb2.TensorProto:
    """An output array as a ``TensorProto`` with its values in the typed field."""
    array = np.asarray(array)
    proto = tensor_pb2.TensorProto()
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    if array.dtype.kind in "OSU":
        proto.dtype = types_pb2.DT_STRING
        proto.string_val.extend(item if isinstance(item, bytes) else str(item).encode() for item in array.reshape(-1))
        return proto
    proto.dtype = tf.dtypes.as_dtype(array.dtype).as_datatype_enum
    field = _FIELDS.get(array.dtype)
    if field is not None:
        getattr(proto, field).extend(array.reshape(-1).tolist())
    elif array.dtype == np.float16:
        proto.half_val.extend(array.reshape(-1).view(np.uint16).tolist())
    else:  # bfloat16 and others: the raw bytes, which every reader of TensorProto accepts.
        proto.tensor_content = np.ascontiguousarray(array).tobytes()
    return proto


__all__ = [
    "SIGNATURE_DEF_FIELD",
    "metadata_json",
    "metadata_response",
    "model_spec",
    "ndarray",
    "status_json",
    "status_response",
    "tensor_proto",
]
