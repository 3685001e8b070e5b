"""The Open Inference Protocol's gRPC API (``inference.GRPCInferenceService``) and ``grpc.health.v1``, on the gRPC port.

ServerLive, ServerReady, ModelReady, ServerMetadata, ModelMetadata and
ModelInfer, with the messages of :mod:`open_inference_protos`. Inputs come in
the typed ``contents`` (``fp32_contents``, ``int_contents``, ...; FP16 and
BF16 have none and must be raw) or, for every input at once,
``raw_input_contents`` (what ``tritonclient.grpc`` sends). Outputs are
answered in ``raw_output_contents``, as Triton answers, with each output's
name, datatype and shape in ``outputs``. Failures are the call's status
(INVALID_ARGUMENT, NOT_FOUND, UNAVAILABLE for a full queue, DEADLINE_EXCEEDED
past the call's deadline). ModelReady of a model that is not served answers
``ready: false``; ModelMetadata of one is NOT_FOUND.

The standard health service (``grpc.health.v1``, the protos of
``grpcio-health-checking``) reports SERVING for the server (``""``) and for each
service it holds from start until shutdown, NOT_SERVING once shutdown begins
(Kubernetes' gRPC probes read it). Its servicer is :class:`HealthService`,
not the package's reference one, whose ``Watch`` streams never end: one probe
watching would hold a stopping server for its whole grace period.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tf1infer.serving import open_inference as v2
from tf1infer.serving import open_inference_protos as pb
from tf1infer.serving.grpc_api import Calls, deadline
from tf1infer.serving.models import ModelRegistry
from tf1infer.serving.status import ServingError, invalid

# The typed field of each datatype (FP16 and BF16 have none: raw bytes only).
_CONTENTS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


class InferenceService:
    """``inference.GRPCInferenceService``."""

    def __init__(self, calls: Calls):
        self._calls = calls

    @property
    def _registry(self) -> ModelRegistry:
        return self._calls.registry

    async def ServerLive(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        return pb.ServerReadyResponse(ready=True)  # Models load before the ports open.

    async def ModelReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        async def work() -> Any:
            try:
                v2.find(self._registry, request.name, request.version)
            except ServingError as exc:
                if exc.code != "NOT_FOUND":
                    raise
                return pb.ModelReadyResponse(ready=False)
            return pb.ModelReadyResponse(ready=True)

        return await self._calls.answer(context, "model_ready", request.name, work, api="v2_grpc")

    async def ServerMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        return pb.ServerMetadataResponse(**v2.server_metadata())

    async def ModelMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        async def work() -> Any:
            servable = v2.find(self._registry, request.name, request.version)
            metadata = v2.model_metadata(self._registry, servable)
            response = pb.ModelMetadataResponse(
                name=metadata["name"], versions=metadata["versions"], platform=metadata["platform"]
            )
            for target, tensors in ((response.inputs, metadata["inputs"]), (response.outputs, metadata["outputs"])):
                for tensor in tensors:
                    target.add(name=tensor["name"], datatype=tensor["datatype"], shape=tensor["shape"])
            response.properties["format"] = servable.format
            response.properties["signature"] = v2.signature(servable).key
            return response

        return await self._calls.answer(context, "model_metadata", request.name, work, api="v2_grpc")

    async def ModelInfer(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        async def work() -> Any:
            _refuse_extensions(request.parameters, "the request")
            tensors = _inputs(request)
            names = []
            for output in request.outputs:
                _refuse_extensions(output.parameters, f"output '{output.name}'")
                names.append(output.name)
            timeout = deadline(context)
            if "timeout" in request.parameters and request.parameters["timeout"].int64_param > 0:
                requested = request.parameters["timeout"].int64_param / 1e6  # Triton's, in microseconds.
                timeout = requested if timeout is None else min(timeout, requested)
            result = await v2.infer(self._registry, request.model_name, request.model_version, tensors, names, timeout)
            response = pb.ModelInferResponse(
                model_name=result.servable.name, model_version=str(result.servable.version), id=request.id
            )
            for name, array in result.outputs:
                response.outputs.add(name=name, datatype=v2.datatype(array.dtype), shape=array.shape)
                response.raw_output_contents.append(v2.raw_bytes(array))
            return response

        return await self._calls.answer(context, "infer", request.model_name, work, api="v2_grpc")


def _refuse_extensions(parameters: Any, where: str) -> None:
    if "shared_memory_region" in parameters:
        raise invalid(f"{where}: the shared-memory extension is not supported; send the tensor's data")
    if "classification" in parameters:
        raise invalid(f"{where}: the classification extension is not supported; request the output itself")


def _inputs(request: Any) -> list[v2.RequestTensor]:
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise invalid(
            f"raw_input_contents holds {len(raw)} tensors for {len(request.inputs)} inputs: "
            "send every input raw, or none"
        )
    tensors = []
    for index, tensor in enumerate(request.inputs):
        _refuse_extensions(tensor.parameters, f"input '{tensor.name}'")
        dtype = v2.numpy_dtype(tensor.datatype, tensor.name)
        shape = v2.shape_of(list(tensor.shape), tensor.name)
        if raw:
            if tensor.HasField("contents"):
                raise invalid(f"input '{tensor.name}' has both contents and raw_input_contents: send one")
            array = v2.from_raw(raw[index], dtype, shape, tensor.name, tensor.datatype)
        else:
            array = _from_contents(tensor, dtype, shape)
        tensors.append(v2.RequestTensor(tensor.name, tensor.datatype, array))
    return tensors


def _from_contents(tensor: Any, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    field = _CONTENTS.get(tensor.datatype)
    if field is None:
        raise invalid(f"input '{tensor.name}': {tensor.datatype} has no typed contents; send it in raw_input_contents")
    for other in set(_CONTENTS.values()) - {field}:
        if len(getattr(tensor.contents, other)):
            raise invalid(f"input '{tensor.name}' of {tensor.datatype} holds {other}; its values go in {field}")
    values = getattr(tensor.contents, field)
    if dtype.kind == "O":
        return v2.strings_tensor(list(values), shape, tensor.name)
    wide: np.ndarray = np.array(
        values, dtype={"b": np.bool_, "i": np.int64, "u": np.uint64, "f": np.float64}[dtype.kind]
    )
    v2.check_count(wide.size, math.prod(shape), shape, tensor.name)
    if dtype.kind in "iu" and wide.size:
        info = np.iinfo(dtype)
        if wide.min() < info.min or wide.max() > info.max:
            raise invalid(f"input '{tensor.name}': a value is outside the range of {tensor.datatype}")
    return wide.astype(dtype).reshape(shape)


class HealthService(health_pb2_grpc.HealthServicer):
    """``grpc.health.v1.Health``: Check and Watch, each ``Watch`` ending once it has told NOT_SERVING at shutdown.

    Args:
        services: the services the port holds; each, and the server (``""``), is SERVING until :meth:`stopping`.
    """

    def __init__(self, services: list[str]):
        self._status = {name: health_pb2.HealthCheckResponse.SERVING for name in ["", *services]}
        self._changed = asyncio.Condition()
        self._stopping = False

    async def Check(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        status = self._status.get(request.service)
        if status is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {v2.clip(request.service)!r}")
        return health_pb2.HealthCheckResponse(status=status)

    async def Watch(self, request: Any, context: grpc.aio.ServicerContext) -> None:  # noqa: N802
        last = None
        async with self._changed:
            while True:
                status = self._status.get(request.service, health_pb2.HealthCheckResponse.SERVICE_UNKNOWN)
                if status != last:
                    await context.write(health_pb2.HealthCheckResponse(status=status))
                    last = status
                if self._stopping:
                    return  # Told NOT_SERVING: the stream ends, so that it does not hold the stopping server.
                await self._changed.wait()

    async def stopping(self) -> None:
        """Every service NOT_SERVING from now on; each watcher is told, and its stream ends."""
        async with self._changed:
            self._stopping = True
            for name in self._status:
                self._status[name] = health_pb2.HealthCheckResponse.NOT_SERVING
            self._changed.notify_all()


def add_services(server: grpc.aio.Server, calls: Calls, services: list[str]) -> HealthService:
    """Register ``inference.GRPCInferenceService`` and ``grpc.health.v1.Health`` (reporting ``services``) on
    ``server``; the health service is returned, for shutdown to call :meth:`HealthService.stopping`."""
    service = InferenceService(calls)
    handlers = {
        method: grpc.unary_unary_rpc_method_handler(
            getattr(service, method),
            request_deserializer=request_type.FromString,
            response_serializer=response_type.SerializeToString,
        )
        for method, (request_type, response_type) in pb.METHODS.items()
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(pb.SERVICE, handlers),))
    health = HealthService(services)
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    return health


__all__ = ["HealthService", "InferenceService", "add_services"]
