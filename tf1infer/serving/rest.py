"""TensorFlow Serving's REST API on aiohttp.

Routes, matched with TF Serving's own patterns (``model_servers/http_rest_api_util.cc``):

- ``POST /v1/models/NAME[/versions/N | /labels/L]:predict`` (also ``:classify``, ``:regress``);
- ``GET /v1/models/NAME[/versions/N | /labels/L]`` (status) and the same with ``/metadata``;
- ``GET /monitoring/prometheus/metrics`` (Prometheus text format);
- the Open Inference Protocol's ``/v2/...`` routes (:mod:`tf1infer.serving.open_inference_rest`).

Anything else is ``400 {"error": "Malformed request: METHOD PATH"}``, as TF
Serving answers. Every answer is JSON (errors included); the request's content
type is not checked (TF Serving's own test client posts urllib's default
form type); gzip bodies are accepted (aiohttp decompresses them, counting the
decompressed bytes against the size limit). A body over the limit is answered
413 before it is read whole.

Why aiohttp: one asyncio server with a C HTTP parser and keep-alive, its own
request size limit, and a graceful shutdown that stops listening and then
waits for the requests it has accepted (what SIGTERM needs); the handlers
await the micro-batcher's answers, so thousands of open requests cost no
threads. An ASGI server would add a second layer (uvicorn + a framework) for
the same loop.
"""

from __future__ import annotations

import logging
import re
import time
from urllib.parse import unquote

from aiohttp import web

from tf1infer.serving import examples, json_tensors, metrics, open_inference_rest, protos
from tf1infer.serving.models import ModelRegistry
from tf1infer.serving.status import ServingError, invalid, not_found

log = logging.getLogger("tf1infer.serving")

# TF Serving's kPredictionApiGegex and kModelStatusApiRegex, matched on the whole path.
PREDICTION_PATH = re.compile(
    r"(?i)/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)"
)
STATUS_PATH = re.compile(r"(?i)/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:\/(metadata))?")
JSON = "application/json"
_INT64_MAX = 2**63 - 1


class RestApi:
    """The REST side of a server: one handler for every path.

    Args:
        registry: the models served.
        server_metrics: where requests are counted.
        max_request_bytes: the largest body accepted (413 beyond).
        timeout: seconds a request may wait for its answer (504 beyond; TF Serving's REST default is 30 s).
    """

    def __init__(
        self,
        registry: ModelRegistry,
        server_metrics: metrics.ServerMetrics,
        max_request_bytes: int,
        timeout: float,
    ):
        self.registry = registry
        self.metrics = server_metrics
        self.max_request_bytes = max_request_bytes
        self.timeout = timeout

    def application(self) -> web.Application:
        app = web.Application(client_max_size=self.max_request_bytes)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.rel_url.raw_path
        if request.method == "GET" and path == metrics.PATH:  # Not counted: scraping must not move what it reads.
            return web.Response(body=self.metrics.exposition(), headers={"Content-Type": metrics.CONTENT_TYPE})
        started = time.perf_counter()
        self.metrics.started()
        # Filled in as the request is understood, for the metrics.
        seen = {"model": "", "method": "unknown", "api": "v2_rest" if _is_v2(path) else "rest"}
        code = "OK"
        try:
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge as exc:
                code = "RESOURCE_EXHAUSTED"
                message = (
                    f"the request body is larger than the server's limit of {self.max_request_bytes} bytes ({exc.text})"
                )
                return _json_response(413, json_tensors.dumps({"error": message}))
            if seen["api"] == "v2_rest":
                answer = await open_inference_rest.dispatch(
                    self.registry, request.method, path, request.headers, body, self.timeout, seen
                )
                return web.Response(body=answer.body, headers=answer.headers)
            text = await self._dispatch(request.method, path, body, seen)
            return _json_response(200, text.encode() if isinstance(text, str) else text)
        except ServingError as exc:
            code = exc.code
            return _json_response(exc.http_status, json_tensors.dumps({"error": exc.message}))
        except Exception as exc:  # noqa: BLE001 - a bug must cost one request a 500, never the server.
            code = "INTERNAL"
            log.exception("REST %s %s failed", request.method, request.rel_url)
            return _json_response(500, json_tensors.dumps({"error": f"internal error: {type(exc).__name__}: {exc}"}))
        finally:
            # Only names of served models become labels: a stranger's made-up names must not grow the metrics.
            model = seen["model"] if seen["model"] in self.registry.names else ""
            self.metrics.answered(model, seen["api"], seen["method"], code, time.perf_counter() - started)

    async def _dispatch(self, http_method: str, path: str, body: bytes, seen: dict[str, str]) -> str | bytes:
        """The response body for a request TF Serving's routes accept; ``seen`` gets its model and method."""
        match = None
        if http_method == "POST":
            match = PREDICTION_PATH.fullmatch(path)
        elif http_method == "GET":
            match = STATUS_PATH.fullmatch(path)
        if match is None:
            raise invalid(f"Malformed request: {http_method} {path}")
        name = unquote(match[1] or "")
        seen["model"] = name
        version = _version(match[2])
        label = unquote(match[3]) if match[3] else None
        if http_method == "GET":
            if not name:
                raise invalid("Missing model name in request.")
            if match[4]:
                seen["method"] = "metadata"
                servable = self.registry.find(name, version, label)
                return json_tensors.dumps(protos.metadata_json(servable))
            seen["method"] = "status"
            if version is None and label is None:
                versions = self.registry.versions(name)
                if not versions:
                    raise not_found(f"Servable not found for request: Latest({name})")
                servables = list(versions.values())
            else:
                servables = [self.registry.find(name, version, label)]
            return json_tensors.dumps(protos.status_json(servables))
        method = seen["method"] = match[4].lower()
        if method == "predict":
            fast = await self._simple_predict(name, version, label, body)
            if fast is not None:
                return fast
        document = json_tensors.parse_body(body)
        signature_name = json_tensors.signature_name(document)
        servable = self.registry.find(name, version, label)
        signature = servable.signature(signature_name)
        if method == "predict":
            kind = json_tensors.request_format(document)
            named = json_tensors.tensors_from_request(document, body, signature.inputs, kind)
            feeds = signature.arrange(named)
            outputs = await signature.run(feeds, self.timeout)
            return json_tensors.predict_response(dict(zip(signature.output_aliases, outputs)), kind)
        examples.check_method(signature, method)
        serialized = examples.examples_from_json(document, method)
        results = await examples.run_examples(signature, method, serialized, self.timeout)
        if method == examples.CLASSIFY:
            return examples.classify_json(results)
        return examples.regress_json(results)

    async def _simple_predict(self, name: str, version: int | None, label: str | None, body: bytes) -> str | None:
        """A predict request of plain numbers for a one-input signature, without building Python lists (see
        :func:`json_tensors.numeric_tensor`); None sends the request through the full parse."""
        simple = json_tensors.simple_request(body)
        if simple is None:
            return None
        kind, text = simple
        servable = self.registry.find(name, version, label)
        signature = servable.signature(None)
        if len(signature.inputs) != 1:
            return None
        array = json_tensors.numeric_tensor(text, signature.inputs[0])
        if array is None:
            return None
        feeds = signature.arrange({signature.inputs[0].alias: array})
        outputs = await signature.run(feeds, self.timeout)
        return json_tensors.predict_response(dict(zip(signature.output_aliases, outputs)), kind)


def _is_v2(path: str) -> bool:
    return path == "/v2" or path.startswith("/v2/")


def _version(text: str | None) -> int | None:
    if not text:
        return None
    version = int(text)
    if version > _INT64_MAX:
        raise invalid(f"Failed to convert version: {text} to numeric.")
    return version


def _json_response(status: int, body: bytes) -> web.Response:
    return web.Response(status=status, body=body, content_type=JSON)


__all__ = ["PREDICTION_PATH", "STATUS_PATH", "RestApi"]
