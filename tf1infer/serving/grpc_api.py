"""TensorFlow Serving's gRPC API on grpcio's asyncio server, with the generated protos of ``tensorflow-serving-api``.

``tensorflow.serving.PredictionService``: Predict (with ``output_filter``),
Classify, Regress, MultiInference, GetModelMetadata; and
``tensorflow.serving.ModelService``: GetModelStatus (HandleReloadConfigRequest
answers UNIMPLEMENTED: models are given at start-up). Each response echoes the
model spec with the version served and the signature resolved. Failures are
the call's status, with the code TF Serving gives (INVALID_ARGUMENT,
NOT_FOUND, UNAVAILABLE for a full queue, DEADLINE_EXCEEDED past the call's
deadline) and a message naming the input.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    inference_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from tf1infer.serving import examples, metrics, protos
from tf1infer.serving.models import CLASSIFY_METHOD, REGRESS_METHOD, ModelRegistry, Servable
from tf1infer.serving.status import ServingError, invalid

log = logging.getLogger("tf1infer.serving")
_T = TypeVar("_T")


class Calls:
    """What both services share: finding the servable, timing and counting calls, turning failures into statuses."""

    def __init__(self, registry: ModelRegistry, server_metrics: metrics.ServerMetrics, max_request_bytes: int):
        self.registry = registry
        self.metrics = server_metrics
        self.max_request_bytes = max_request_bytes

    def find(self, spec: Any) -> Servable:
        if not spec.name:
            raise invalid("Missing ModelSpec")
        which = spec.WhichOneof("version_choice")
        version = spec.version.value if which == "version" else None
        label = spec.version_label if which == "version_label" else None
        return self.registry.find(spec.name, version, label)

    async def answer(
        self,
        context: grpc.aio.ServicerContext,
        method: str,
        model: str,
        work: Callable[[], Awaitable[_T]],
        api: str = "grpc",
    ) -> _T:
        started = time.perf_counter()
        self.metrics.started()
        code = "OK"
        try:
            return await work()
        except ServingError as exc:
            code = exc.code
            await context.abort(getattr(grpc.StatusCode, exc.code), exc.message)
        except Exception as exc:  # noqa: BLE001 - grpc.aio's own abort exception passes through (BaseException).
            code = "INTERNAL"
            log.exception("gRPC %s failed", method)
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}")
        finally:
            self.metrics.answered(
                model if model in self.registry.names else "", api, method, code, time.perf_counter() - started
            )
        raise AssertionError("unreachable: context.abort raises")  # pragma: no cover


def deadline(context: grpc.aio.ServicerContext) -> float | None:
    """Seconds left of the call's deadline (None: the client set none)."""
    remaining = context.time_remaining()
    return None if remaining is None else max(remaining, 0.0)


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    """``tensorflow.serving.PredictionService``."""

    def __init__(self, calls: Calls):
        self._calls = calls

    async def Predict(self, request: predict_pb2.PredictRequest, context: grpc.aio.ServicerContext):  # noqa: N802
        async def work() -> predict_pb2.PredictResponse:
            servable = self._calls.find(request.model_spec)
            signature = servable.signature(request.model_spec.signature_name)
            wanted = list(request.output_filter)
            unknown = [alias for alias in wanted if alias not in signature.output_aliases]
            if unknown:
                raise invalid(
                    f"output tensor alias not found in signature: {unknown[0]} Outputs expected to be in the set "
                    f"{{{','.join(signature.output_aliases)}}}."
                )
            if len(set(wanted)) != len(wanted):
                raise invalid(f"duplicate output tensor alias in output_filter: {','.join(wanted)}")
            named = {
                alias: protos.ndarray(proto, alias, self._calls.max_request_bytes)
                for alias, proto in request.inputs.items()
            }
            outputs = await signature.run(signature.arrange(named), deadline(context))
            response = predict_pb2.PredictResponse()
            response.model_spec.CopyFrom(protos.model_spec(servable, signature.key))
            for alias, array in zip(signature.output_aliases, outputs):
                if not wanted or alias in wanted:
                    response.outputs[alias].CopyFrom(protos.tensor_proto(array))
            return response

        return await self._calls.answer(context, "predict", request.model_spec.name, work)

    async def Classify(self, request: classification_pb2.ClassificationRequest, context):  # noqa: N802
        return await self._answer_examples(
            request, context, examples.CLASSIFY, classification_pb2.ClassificationResponse, _fill_classifications
        )

    async def Regress(self, request: regression_pb2.RegressionRequest, context):  # noqa: N802
        return await self._answer_examples(
            request, context, examples.REGRESS, regression_pb2.RegressionResponse, _fill_regressions
        )

    async def MultiInference(self, request: inference_pb2.MultiInferenceRequest, context):  # noqa: N802
        async def work() -> inference_pb2.MultiInferenceResponse:
            if not request.tasks:
                raise invalid("Expected at least one task")
            names = {task.model_spec.name for task in request.tasks}
            if len(names) != 1:
                raise invalid("All ModelSpecs in a MultiInferenceRequest must access the same model name.")
            signatures = [task.model_spec.signature_name or "serving_default" for task in request.tasks]
            duplicated = sorted({key for key in signatures if signatures.count(key) > 1})
            if duplicated:
                raise invalid(f"Duplicate evaluation of signature: {duplicated[0]}")
            serialized = examples.examples_from_input(request.input)
            response = inference_pb2.MultiInferenceResponse()
            for task in request.tasks:
                servable = self._calls.find(task.model_spec)
                signature = servable.signature(task.model_spec.signature_name)
                method = {CLASSIFY_METHOD: examples.CLASSIFY, REGRESS_METHOD: examples.REGRESS}.get(task.method_name)
                if method is None:
                    raise invalid(f"Unsupported signature method_name: {task.method_name}")
                outputs = await examples.run_examples(signature, method, serialized, deadline(context))
                result = response.results.add()
                result.model_spec.CopyFrom(protos.model_spec(servable, signature.key))
                if method == examples.CLASSIFY:
                    _fill_classifications(result.classification_result, outputs)
                else:
                    _fill_regressions(result.regression_result, outputs)
            return response

        return await self._calls.answer(context, "multi_inference", _first_name(request), work)

    async def GetModelMetadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest, context):  # noqa: N802
        async def work() -> get_model_metadata_pb2.GetModelMetadataResponse:
            if not request.metadata_field:
                raise invalid("GetModelMetadataRequest must specify at least one metadata_field")
            for field in request.metadata_field:
                if field != protos.SIGNATURE_DEF_FIELD:
                    raise invalid(f"Metadata field {field} is not supported")
            return protos.metadata_response(self._calls.find(request.model_spec))

        return await self._calls.answer(context, "metadata", request.model_spec.name, work)

    async def _answer_examples(
        self,
        request: Any,
        context: grpc.aio.ServicerContext,
        method: str,
        response_type: Callable[[], Any],
        fill: Callable[[Any, Any], None],
    ) -> Any:
        """Classify or Regress: the examples run through the named signature, the results in ``response.result``."""

        async def work() -> Any:
            servable = self._calls.find(request.model_spec)
            signature = servable.signature(request.model_spec.signature_name)
            examples.check_method(signature, method)
            serialized = examples.examples_from_input(request.input)
            outputs = await examples.run_examples(signature, method, serialized, deadline(context))
            response = response_type()
            response.model_spec.CopyFrom(protos.model_spec(servable, signature.key))
            fill(response.result, outputs)
            return response

        return await self._calls.answer(context, method, request.model_spec.name, work)


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    """``tensorflow.serving.ModelService``: GetModelStatus."""

    def __init__(self, calls: Calls):
        self._calls = calls

    async def GetModelStatus(self, request, context):  # noqa: N802
        async def work():
            spec = request.model_spec
            which = spec.WhichOneof("version_choice")
            if which is None:
                versions = self._calls.registry.versions(spec.name)
                if not spec.name:
                    raise invalid("Missing model name in request.")
                if not versions:
                    self._calls.find(spec)  # NOT_FOUND in TF Serving's words.
                return protos.status_response(versions.values())
            return protos.status_response([self._calls.find(spec)])

        return await self._calls.answer(context, "status", request.model_spec.name, work)

    async def HandleReloadConfigRequest(self, request, context):  # noqa: N802
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED, "tf1infer serve takes its models at start-up; restart it to change them"
        )


def _fill_classifications(result: Any, outputs: Any) -> None:
    for pairs in examples.classifications(outputs):
        classification = result.classifications.add()
        for label, score in pairs:
            item = classification.classes.add(label=label)
            if score is not None:
                item.score = score


def _fill_regressions(result: Any, outputs: Any) -> None:
    for value in outputs["outputs"].reshape(-1).tolist():
        result.regressions.add(value=value)


def _first_name(request: inference_pb2.MultiInferenceRequest) -> str:
    return request.tasks[0].model_spec.name if request.tasks else ""


def add_services(server: grpc.aio.Server, calls: Calls) -> None:
    """Register both services on ``server``."""
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionService(calls), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(calls), server)


__all__ = ["Calls", "ModelService", "PredictionService", "add_services", "deadline"]
