"""The Open Inference Protocol's HTTP/REST API, with Triton's binary tensor extension, on the REST port.

Routes (KServe's ``open_inference_rest.yaml``):

- ``POST /v2/models/NAME[/versions/V]/infer``;
- ``GET /v2/models/NAME[/versions/V]`` (metadata) and ``.../ready``;
- ``GET /v2/health/live``, ``GET /v2/health/ready``, ``GET /v2`` (server metadata).

Any other ``/v2`` path or method is ``404 {"error": ...}``. Errors are
``{"error": message}`` with the status of their code (400 a request that does
not fit the model, 404 an unknown model or version, 413 a body over the limit,
503 a full queue, 504 past the deadline); a model that is not served is not
ready: ``.../ready`` answers 404 for it, so a client reading the status alone
(``tritonclient``'s ``is_model_ready``) reads "not ready".

**Binary tensor extension** (Triton's ``binary_tensor_data``, what
``tritonclient.http`` sends by default): the header
``Inference-Header-Content-Length: N`` says the body's first N bytes are the
JSON request; each input whose ``parameters`` hold ``binary_data_size`` takes
that many of the following bytes, in input order. An output is answered in
binary when its ``parameters`` ask ``"binary_data": true``, or the request's
``parameters`` ask ``"binary_data_output": true`` (an output's own setting
wins); the response then carries the same header, each such output has
``parameters.binary_data_size`` and no ``data``, and its bytes follow the
JSON in output order (content type ``application/octet-stream``). JSON
``data`` is flat, row-major.

Request parameters: ``timeout`` (microseconds, Triton's) shortens the
server's deadline for that request. The classification and shared-memory
extensions are refused with a 400 that says so; other parameters are ignored.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import unquote

import numpy as np
import orjson

from tf1infer.serving import json_tensors
from tf1infer.serving import open_inference as v2
from tf1infer.serving.json_tensors import excerpt
from tf1infer.serving.models import ModelRegistry
from tf1infer.serving.status import ServingError, invalid, not_found

HEADER_LENGTH = "Inference-Header-Content-Length"
MODEL_PATH = re.compile(r"/v2/models/([^/]+)(?:/versions/([^/]+))?(/ready|/infer)?")
JSON = "application/json"
BINARY = "application/octet-stream"


class Answer:
    """A V2 response: status 200, the body, and the headers it needs."""

    def __init__(self, body: bytes, header_length: int | None = None):
        self.body = body
        self.headers = {"Content-Type": JSON}
        if header_length is not None:
            self.headers = {"Content-Type": BINARY, HEADER_LENGTH: str(header_length)}


async def dispatch(
    registry: ModelRegistry,
    http_method: str,
    path: str,
    headers: Any,
    body: bytes,
    timeout: float,
    seen: dict[str, str],
) -> Answer:
    """The answer to a ``/v2`` request; ``seen`` gets its model and method (metrics)."""
    if http_method == "GET":
        if path in ("/v2", "/v2/"):
            seen["method"] = "server_metadata"
            return _json(v2.server_metadata())
        if path == "/v2/health/live":
            seen["method"] = "live"
            return _json({"live": True})
        if path == "/v2/health/ready":
            seen["method"] = "ready"
            return _json({"ready": True})  # Models load before the ports open: a listening server is ready.
    match = MODEL_PATH.fullmatch(path)
    action = match[3] if match else None
    if match is None or (http_method, action) not in (("GET", None), ("GET", "/ready"), ("POST", "/infer")):
        raise not_found(
            f"no Open Inference Protocol route for {http_method} {v2.clip(path, 120)} (POST /v2/models/NAME/infer; "
            "GET /v2/models/NAME, /v2/models/NAME/ready, /v2/health/live, /v2/health/ready, /v2)"
        )
    name = unquote(match[1])
    version = unquote(match[2] or "")
    seen["model"] = name
    if action is None:
        seen["method"] = "model_metadata"
        return _json(v2.model_metadata(registry, v2.find(registry, name, version)))
    if action == "/ready":
        seen["method"] = "model_ready"
        servable = v2.find(registry, name, version)
        return _json({"name": servable.name, "ready": True})
    seen["method"] = "infer"
    return await _infer(registry, name, version, headers, body, timeout)


async def _infer(registry: ModelRegistry, name: str, version: str, headers: Any, body: bytes, timeout: float):
    document, binary = _split(headers, body)
    request_id = document.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise invalid(f"'id' must be a string, got {excerpt(request_id, 40)}")
    parameters = _parameters(document.get("parameters"), "the request")
    tensors = _inputs(document.get("inputs"), binary)
    outputs = document.get("outputs")
    names, binary_outputs = _outputs(outputs)
    all_binary = parameters.get("binary_data_output", False)
    if not isinstance(all_binary, bool):
        raise invalid(f"binary_data_output must be true or false, got {excerpt(all_binary, 40)}")
    deadline = parameters.get("timeout")
    if isinstance(deadline, (int, float)) and not isinstance(deadline, bool) and deadline > 0:
        timeout = min(timeout, deadline / 1e6)  # Triton's request timeout, in microseconds.
    result = await v2.infer(registry, name, version, tensors, names, timeout)
    response: dict[str, Any] = {"model_name": result.servable.name, "model_version": str(result.servable.version)}
    if request_id is not None:
        response["id"] = request_id
    response["outputs"] = []
    chunks = []
    finite = True
    for output, array in result.outputs:
        entry: dict[str, Any] = {"name": output, "datatype": v2.datatype(array.dtype), "shape": list(array.shape)}
        if binary_outputs.get(output, all_binary):
            raw = v2.raw_bytes(array)
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = data = v2.json_data(array, output)
            if isinstance(data, np.ndarray) and data.dtype.kind == "f" and not np.isfinite(data).all():
                finite = False
        response["outputs"].append(entry)
    text = _dumps(response, finite)
    if not chunks:
        return Answer(text)
    return Answer(b"".join([text, *chunks]), header_length=len(text))


def _split(headers: Any, body: bytes) -> tuple[dict[str, Any], memoryview]:
    """The JSON request and the binary data after it (Inference-Header-Content-Length)."""
    header = headers.get(HEADER_LENGTH)
    if header is None:
        return json_tensors.parse_body(body), memoryview(b"")
    if not header.strip().isdigit() or int(header) > len(body):
        raise invalid(f"{HEADER_LENGTH} must be a byte count within the body's {len(body)} bytes, got {header[:40]!r}")
    length = int(header)
    return json_tensors.parse_body(body[:length]), memoryview(body)[length:]


def _parameters(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid(f"'parameters' of {where} must be an object, got {excerpt(value, 60)}")
    if "shared_memory_region" in value:
        raise invalid(f"{where}: the shared-memory extension is not supported; send the tensor's data")
    if "classification" in value:
        raise invalid(f"{where}: the classification extension is not supported; request the output itself")
    return value


def _inputs(value: Any, binary: memoryview) -> list[v2.RequestTensor]:
    if not isinstance(value, list) or not value:
        raise invalid("'inputs' must be a non-empty array of input tensors")
    tensors = []
    offset = 0
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise invalid(f"inputs[{index}] must be an object, got {excerpt(item, 60)}")
        name = item.get("name")
        if not isinstance(name, str):
            raise invalid(f"inputs[{index}] needs a string 'name', got {excerpt(name, 60)}")
        dtype = v2.numpy_dtype(item.get("datatype"), name)
        datatype_name = str(item["datatype"])
        shape = v2.shape_of(item.get("shape"), name)
        parameters = _parameters(item.get("parameters"), f"input '{name}'")
        size = parameters.get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise invalid(f"input '{name}': binary_data_size must be a byte count, got {excerpt(size, 40)}")
            if "data" in item:
                raise invalid(f"input '{name}' has both 'data' and binary_data_size: send one")
            if offset + size > len(binary):
                raise invalid(
                    f"input '{name}': binary_data_size {size} runs past the {len(binary)} bytes after the JSON"
                    + ("" if len(binary) else f" (no {HEADER_LENGTH} header: the body was read as JSON alone)")
                )
            array = v2.from_raw(binary[offset : offset + size], dtype, shape, name, datatype_name)
            offset += size
        elif "data" in item:
            array = v2.from_json_data(item["data"], dtype, shape, name, datatype_name)
        else:
            raise invalid(f"input '{name}' has neither 'data' nor parameters.binary_data_size")
        tensors.append(v2.RequestTensor(name, datatype_name, array))
    if offset != len(binary):
        raise invalid(f"{len(binary) - offset} bytes of binary data after the JSON belong to no input")
    return tensors


def _outputs(value: Any) -> tuple[list[str] | None, dict[str, bool]]:
    """The names asked for (None: every output) and the binary setting of those that give one."""
    if value is None:
        return None, {}
    if not isinstance(value, list):
        raise invalid(f"'outputs' must be an array of requested outputs, got {excerpt(value, 60)}")
    names = []
    binary = {}
    for index, item in enumerate(value):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise invalid(f"outputs[{index}] must be an object with a string 'name', got {excerpt(item, 60)}")
        name = item["name"]
        parameters = _parameters(item.get("parameters"), f"output '{name}'")
        names.append(name)
        if "binary_data" in parameters:
            if not isinstance(parameters["binary_data"], bool):
                raise invalid(
                    f"output '{name}': binary_data must be true or false, got {excerpt(parameters['binary_data'], 40)}"
                )
            binary[name] = parameters["binary_data"]
    return names, binary


def _json(document: dict[str, Any]) -> Answer:
    return Answer(_dumps(document))


def _dumps(document: dict[str, Any], finite: bool = True) -> bytes:
    """orjson writes numeric arrays itself, float32 in the shortest text that reads back the same float32. It
    would write NaN and infinities as null: responses holding them take the standard library's bare
    NaN/Infinity (as Triton writes them; Python's json and tritonclient read them back)."""
    if finite:
        try:
            return orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)
        except orjson.JSONEncodeError as exc:
            raise ServingError("INTERNAL", f"the response cannot be written as JSON: {exc}") from exc
    return json.dumps(document, default=lambda array: array.tolist()).encode()


__all__ = ["HEADER_LENGTH", "MODEL_PATH", "Answer", "dispatch"]
