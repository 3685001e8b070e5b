"""The Open Inference Protocol's gRPC messages (package ``inference``), built from its ``.proto`` without gencode.

The messages come from ``open_inference_grpc.proto`` beside this module (KServe's
``specification/protocol/open_inference_grpc.proto``, Apache-2.0, unchanged),
compiled once into the serialized ``FileDescriptorProto`` below:

    python -m grpc_tools.protoc -I tf1infer/serving --descriptor_set_out=oip.desc open_inference_grpc.proto

(then the set's one file, serialized, base64). Why not generated ``_pb2``
modules: gencode is tied to the protobuf release that wrote it (newer gencode
refuses TensorFlow 2.15's protobuf 4.25), and it registers ``inference.*`` in
protobuf's default pool, where Triton's own client (``tritonclient.grpc``,
whose ``grpc_service.proto`` is a superset of this one under the same names)
registers them too: one process could not hold both. The messages are built in
a pool of their own, from the descriptor alone, on any protobuf release
TensorFlow 2.15 to 2.21 run with. On the wire they are the protocol's messages;
``tests/test_serving_v2.py`` checks each field against tritonclient's.
"""

from __future__ import annotations

import base64
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool

try:
    from google.protobuf.message_factory import GetMessageClass as _message_class
except ImportError:  # protobuf before 4.21.
    from google.protobuf.message_factory import MessageFactory

    _message_class = MessageFactory().GetPrototype

SERVICE = "inference.GRPCInferenceService"
_DESCRIPTOR = (
    "ChlvcGVuX2luZmVyZW5jZV9ncnBjLnByb3RvEglpbmZlcmVuY2UiEwoRU2VydmVyTGl2ZVJlcXVlc3QiKAoSU2VydmVyTGl2ZVJlc3BvbnNl"
    "EhIKBGxpdmUYASABKAhSBGxpdmUiFAoSU2VydmVyUmVhZHlSZXF1ZXN0IisKE1NlcnZlclJlYWR5UmVzcG9uc2USFAoFcmVhZHkYASABKAhS"
    "BXJlYWR5IkEKEU1vZGVsUmVhZHlSZXF1ZXN0EhIKBG5hbWUYASABKAlSBG5hbWUSGAoHdmVyc2lvbhgCIAEoCVIHdmVyc2lvbiIqChJNb2Rl"
    "bFJlYWR5UmVzcG9uc2USFAoFcmVhZHkYASABKAhSBXJlYWR5IhcKFVNlcnZlck1ldGFkYXRhUmVxdWVzdCJmChZTZXJ2ZXJNZXRhZGF0YVJl"
    "c3BvbnNlEhIKBG5hbWUYASABKAlSBG5hbWUSGAoHdmVyc2lvbhgCIAEoCVIHdmVyc2lvbhIeCgpleHRlbnNpb25zGAMgAygJUgpleHRlbnNp"
    "b25zIkQKFE1vZGVsTWV0YWRhdGFSZXF1ZXN0EhIKBG5hbWUYASABKAlSBG5hbWUSGAoHdmVyc2lvbhgCIAEoCVIHdmVyc2lvbiLgAwoVTW9k"
    "ZWxNZXRhZGF0YVJlc3BvbnNlEhIKBG5hbWUYASABKAlSBG5hbWUSGgoIdmVyc2lvbnMYAiADKAlSCHZlcnNpb25zEhoKCHBsYXRmb3JtGAMg"
    "ASgJUghwbGF0Zm9ybRJHCgZpbnB1dHMYBCADKAsyLy5pbmZlcmVuY2UuTW9kZWxNZXRhZGF0YVJlc3BvbnNlLlRlbnNvck1ldGFkYXRhUgZp"
    "bnB1dHMSSQoHb3V0cHV0cxgFIAMoCzIvLmluZmVyZW5jZS5Nb2RlbE1ldGFkYXRhUmVzcG9uc2UuVGVuc29yTWV0YWRhdGFSB291dHB1dHMS"
    "UAoKcHJvcGVydGllcxgGIAMoCzIwLmluZmVyZW5jZS5Nb2RlbE1ldGFkYXRhUmVzcG9uc2UuUHJvcGVydGllc0VudHJ5Ugpwcm9wZXJ0aWVz"
    "GlYKDlRlbnNvck1ldGFkYXRhEhIKBG5hbWUYASABKAlSBG5hbWUSGgoIZGF0YXR5cGUYAiABKAlSCGRhdGF0eXBlEhQKBXNoYXBlGAMgAygD"
    "UgVzaGFwZRo9Cg9Qcm9wZXJ0aWVzRW50cnkSEAoDa2V5GAEgASgJUgNrZXkSFAoFdmFsdWUYAiABKAlSBXZhbHVlOgI4ASKdCAoRTW9kZWxJ"
    "bmZlclJlcXVlc3QSHQoKbW9kZWxfbmFtZRgBIAEoCVIJbW9kZWxOYW1lEiMKDW1vZGVsX3ZlcnNpb24YAiABKAlSDG1vZGVsVmVyc2lvbhIO"
    "CgJpZBgDIAEoCVICaWQSTAoKcGFyYW1ldGVycxgEIAMoCzIsLmluZmVyZW5jZS5Nb2RlbEluZmVyUmVxdWVzdC5QYXJhbWV0ZXJzRW50cnlS"
    "CnBhcmFtZXRlcnMSRQoGaW5wdXRzGAUgAygLMi0uaW5mZXJlbmNlLk1vZGVsSW5mZXJSZXF1ZXN0LkluZmVySW5wdXRUZW5zb3JSBmlucHV0"
    "cxJRCgdvdXRwdXRzGAYgAygLMjcuaW5mZXJlbmNlLk1vZGVsSW5mZXJSZXF1ZXN0LkluZmVyUmVxdWVzdGVkT3V0cHV0VGVuc29yUgdvdXRw"
    "dXRzEiwKEnJhd19pbnB1dF9jb250ZW50cxgHIAMoDFIQcmF3SW5wdXRDb250ZW50cxrNAgoQSW5mZXJJbnB1dFRlbnNvchISCgRuYW1lGAEg"
    "ASgJUgRuYW1lEhoKCGRhdGF0eXBlGAIgASgJUghkYXRhdHlwZRIUCgVzaGFwZRgDIAMoA1IFc2hhcGUSXQoKcGFyYW1ldGVycxgEIAMoCzI9"
    "LmluZmVyZW5jZS5Nb2RlbEluZmVyUmVxdWVzdC5JbmZlcklucHV0VGVuc29yLlBhcmFtZXRlcnNFbnRyeVIKcGFyYW1ldGVycxI6Cghjb250"
    "ZW50cxgFIAEoCzIeLmluZmVyZW5jZS5JbmZlclRlbnNvckNvbnRlbnRzUghjb250ZW50cxpYCg9QYXJhbWV0ZXJzRW50cnkSEAoDa2V5GAEg"
    "ASgJUgNrZXkSLwoFdmFsdWUYAiABKAsyGS5pbmZlcmVuY2UuSW5mZXJQYXJhbWV0ZXJSBXZhbHVlOgI4ARrzAQoaSW5mZXJSZXF1ZXN0ZWRP"
    "dXRwdXRUZW5zb3ISEgoEbmFtZRgBIAEoCVIEbmFtZRJnCgpwYXJhbWV0ZXJzGAIgAygLMkcuaW5mZXJlbmNlLk1vZGVsSW5mZXJSZXF1ZXN0"
    "LkluZmVyUmVxdWVzdGVkT3V0cHV0VGVuc29yLlBhcmFtZXRlcnNFbnRyeVIKcGFyYW1ldGVycxpYCg9QYXJhbWV0ZXJzRW50cnkSEAoDa2V5"
    "GAEgASgJUgNrZXkSLwoFdmFsdWUYAiABKAsyGS5pbmZlcmVuY2UuSW5mZXJQYXJhbWV0ZXJSBXZhbHVlOgI4ARpYCg9QYXJhbWV0ZXJzRW50"
    "cnkSEAoDa2V5GAEgASgJUgNrZXkSLwoFdmFsdWUYAiABKAsyGS5pbmZlcmVuY2UuSW5mZXJQYXJhbWV0ZXJSBXZhbHVlOgI4ASLfBQoSTW9k"
    "ZWxJbmZlclJlc3BvbnNlEh0KCm1vZGVsX25hbWUYASABKAlSCW1vZGVsTmFtZRIjCg1tb2RlbF92ZXJzaW9uGAIgASgJUgxtb2RlbFZlcnNp"
    "b24SDgoCaWQYAyABKAlSAmlkEk0KCnBhcmFtZXRlcnMYBCADKAsyLS5pbmZlcmVuY2UuTW9kZWxJbmZlclJlc3BvbnNlLlBhcmFtZXRlcnNF"
    "bnRyeVIKcGFyYW1ldGVycxJJCgdvdXRwdXRzGAUgAygLMi8uaW5mZXJlbmNlLk1vZGVsSW5mZXJSZXNwb25zZS5JbmZlck91dHB1dFRlbnNv"
    "clIHb3V0cHV0cxIuChNyYXdfb3V0cHV0X2NvbnRlbnRzGAYgAygMUhFyYXdPdXRwdXRDb250ZW50cxrQAgoRSW5mZXJPdXRwdXRUZW5zb3IS"
    "EgoEbmFtZRgBIAEoCVIEbmFtZRIaCghkYXRhdHlwZRgCIAEoCVIIZGF0YXR5cGUSFAoFc2hhcGUYAyADKANSBXNoYXBlEl8KCnBhcmFtZXRl"
    "cnMYBCADKAsyPy5pbmZlcmVuY2UuTW9kZWxJbmZlclJlc3BvbnNlLkluZmVyT3V0cHV0VGVuc29yLlBhcmFtZXRlcnNFbnRyeVIKcGFyYW1l"
    "dGVycxI6Cghjb250ZW50cxgFIAEoCzIeLmluZmVyZW5jZS5JbmZlclRlbnNvckNvbnRlbnRzUghjb250ZW50cxpYCg9QYXJhbWV0ZXJzRW50"
    "cnkSEAoDa2V5GAEgASgJUgNrZXkSLwoFdmFsdWUYAiABKAsyGS5pbmZlcmVuY2UuSW5mZXJQYXJhbWV0ZXJSBXZhbHVlOgI4ARpYCg9QYXJh"
    "bWV0ZXJzRW50cnkSEAoDa2V5GAEgASgJUgNrZXkSLwoFdmFsdWUYAiABKAsyGS5pbmZlcmVuY2UuSW5mZXJQYXJhbWV0ZXJSBXZhbHVlOgI4"
    "ASLXAQoOSW5mZXJQYXJhbWV0ZXISHwoKYm9vbF9wYXJhbRgBIAEoCEgAUglib29sUGFyYW0SIQoLaW50NjRfcGFyYW0YAiABKANIAFIKaW50"
    "NjRQYXJhbRIjCgxzdHJpbmdfcGFyYW0YAyABKAlIAFILc3RyaW5nUGFyYW0SIwoMZG91YmxlX3BhcmFtGAQgASgBSABSC2RvdWJsZVBhcmFt"
    "EiMKDHVpbnQ2NF9wYXJhbRgFIAEoBEgAUgt1aW50NjRQYXJhbUISChBwYXJhbWV0ZXJfY2hvaWNlIsMCChNJbmZlclRlbnNvckNvbnRlbnRz"
    "EiMKDWJvb2xfY29udGVudHMYASADKAhSDGJvb2xDb250ZW50cxIhCgxpbnRfY29udGVudHMYAiADKAVSC2ludENvbnRlbnRzEiUKDmludDY0"
    "X2NvbnRlbnRzGAMgAygDUg1pbnQ2NENvbnRlbnRzEiMKDXVpbnRfY29udGVudHMYBCADKA1SDHVpbnRDb250ZW50cxInCg91aW50NjRfY29u"
    "dGVudHMYBSADKARSDnVpbnQ2NENvbnRlbnRzEiMKDWZwMzJfY29udGVudHMYBiADKAJSDGZwMzJDb250ZW50cxIjCg1mcDY0X2NvbnRlbnRz"
    "GAcgAygBUgxmcDY0Q29udGVudHMSJQoOYnl0ZXNfY29udGVudHMYCCADKAxSDWJ5dGVzQ29udGVudHMy/AMKFEdSUENJbmZlcmVuY2VTZXJ2"
    "aWNlEksKClNlcnZlckxpdmUSHC5pbmZlcmVuY2UuU2VydmVyTGl2ZVJlcXVlc3QaHS5pbmZlcmVuY2UuU2VydmVyTGl2ZVJlc3BvbnNlIgAS"
    "TgoLU2VydmVyUmVhZHkSHS5pbmZlcmVuY2UuU2VydmVyUmVhZHlSZXF1ZXN0Gh4uaW5mZXJlbmNlLlNlcnZlclJlYWR5UmVzcG9uc2UiABJL"
    "CgpNb2RlbFJlYWR5EhwuaW5mZXJlbmNlLk1vZGVsUmVhZHlSZXF1ZXN0Gh0uaW5mZXJlbmNlLk1vZGVsUmVhZHlSZXNwb25zZSIAElcKDlNl"
    "cnZlck1ldGFkYXRhEiAuaW5mZXJlbmNlLlNlcnZlck1ldGFkYXRhUmVxdWVzdBohLmluZmVyZW5jZS5TZXJ2ZXJNZXRhZGF0YVJlc3BvbnNl"
    "IgASVAoNTW9kZWxNZXRhZGF0YRIfLmluZmVyZW5jZS5Nb2RlbE1ldGFkYXRhUmVxdWVzdBogLmluZmVyZW5jZS5Nb2RlbE1ldGFkYXRhUmVz"
    "cG9uc2UiABJLCgpNb2RlbEluZmVyEhwuaW5mZXJlbmNlLk1vZGVsSW5mZXJSZXF1ZXN0Gh0uaW5mZXJlbmNlLk1vZGVsSW5mZXJSZXNwb25z"
    "ZSIAYgZwcm90bzM="
)


def _build() -> dict[str, Any]:
    pool = descriptor_pool.DescriptorPool()
    pool.Add(descriptor_pb2.FileDescriptorProto.FromString(base64.b64decode("".join(_DESCRIPTOR))))
    file = pool.FindFileByName("open_inference_grpc.proto")
    return {name: _message_class(message) for name, message in file.message_types_by_name.items()}


_MESSAGES = _build()
ServerLiveRequest = _MESSAGES["ServerLiveRequest"]
ServerLiveResponse = _MESSAGES["ServerLiveResponse"]
ServerReadyRequest = _MESSAGES["ServerReadyRequest"]
ServerReadyResponse = _MESSAGES["ServerReadyResponse"]
ModelReadyRequest = _MESSAGES["ModelReadyRequest"]
ModelReadyResponse = _MESSAGES["ModelReadyResponse"]
ServerMetadataRequest = _MESSAGES["ServerMetadataRequest"]
ServerMetadataResponse = _MESSAGES["ServerMetadataResponse"]
ModelMetadataRequest = _MESSAGES["ModelMetadataRequest"]
ModelMetadataResponse = _MESSAGES["ModelMetadataResponse"]
ModelInferRequest = _MESSAGES["ModelInferRequest"]
ModelInferResponse = _MESSAGES["ModelInferResponse"]
InferParameter = _MESSAGES["InferParameter"]
InferTensorContents = _MESSAGES["InferTensorContents"]

# Each method of the service: (request type, response type).
METHODS = {
    "ServerLive": (ServerLiveRequest, ServerLiveResponse),
    "ServerReady": (ServerReadyRequest, ServerReadyResponse),
    "ModelReady": (ModelReadyRequest, ModelReadyResponse),
    "ServerMetadata": (ServerMetadataRequest, ServerMetadataResponse),
    "ModelMetadata": (ModelMetadataRequest, ModelMetadataResponse),
    "ModelInfer": (ModelInferRequest, ModelInferResponse),
}

__all__ = ["METHODS", "SERVICE", *_MESSAGES]
