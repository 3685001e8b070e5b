"""``make bench-tf1``'s serving section: single-sample clients against ``tf1infer serve`` and a Flask app.

For each model (the zoo CNN, the corpus mini-Xception) and each number of
concurrent clients (1, 8, 32, 128), every client sends one sample per request
in a loop for a fixed time, starting together:

- **REST** to ``tf1infer serve`` (``POST /v1/models/NAME:predict``,
  ``{"instances": [sample]}``), micro-batched (the ``serve`` defaults);
- **gRPC** to the same server (``PredictionService.Predict``, the sample as
  ``tensor_content``);
- the **Open Inference Protocol** (KServe V2) to the same server: gRPC
  ``ModelInfer`` with ``raw_input_contents`` (as ``tritonclient.grpc``
  sends), REST with Triton's binary tensor extension (``tritonclient.http``'s
  default) and REST with JSON ``data`` (curl's way);
- **Flask + tf_keras**: the legacy server users run today, ``model.predict``
  per request from Flask's threaded server (the same REST body);
- beside them, the ceiling: in-process micro-batched ``predict`` from the same
  number of threads (:mod:`tf1infer.bench.concurrency`).

The clients are one process of asyncio tasks (aiohttp for REST, grpcio's
asyncio stub for gRPC): a few tens of microseconds of CPU a request, on the
same 2 cores as the server, so that the load generator costs little of what
it measures (``wrk`` is not installable here without root). Each record
gives the client's own CPU seconds, requests/s, p50 and p99 latency as the
client sees it, and a check that the first answer equals ``predict``.
Servers run in their own processes; a fresh server per model.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

CALLERS = (1, 8, 32, 128)
SERVING_METHOD = (
    "N clients each send one sample per request for 4 s, starting together: REST and gRPC to `tf1infer serve` "
    "(micro-batched, its defaults), over TF Serving's API and the Open Inference Protocol's (gRPC raw tensors, REST "
    "with Triton's binary tensor extension, REST JSON), REST to a Flask app calling tf_keras `model.predict` per request (threaded "
    "server), and, as the ceiling, N threads calling micro-batched `predict` in process. The clients are asyncio "
    "tasks in one process (aiohttp; grpcio's asyncio stub) on the same cores as the server; their own CPU "
    "seconds are given. p99: one request's latency as its client sees it."
)
# The APIs of one `tf1infer serve` per model (measured one after the other), then the Flask floor.
SERVE_APIS = ("grpc", "rest", "v2-grpc", "v2-rest-binary", "v2-rest-json")
APIS = (*SERVE_APIS, "flask")
SERVED_NAME = "m"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the load generator (a child process: python -m tf1infer.bench.serving client ...) ----------------------------


async def _rest_client(
    port: int,
    path: str,
    body: bytes,
    callers: int,
    seconds: float,
    decode: Callable[[bytes, Any], Any],
    headers: dict[str, str] | None = None,
) -> tuple[list[float], Any]:
    import aiohttp

    url = f"http://127.0.0.1:{port}{path}"
    latencies: list[float] = []
    first: list[Any] = []
    connector = aiohttp.TCPConnector(limit=callers)
    async with aiohttp.ClientSession(connector=connector) as session:
        stop_at = time.perf_counter() + seconds

        async def client() -> None:
            while time.perf_counter() < stop_at:
                began = time.perf_counter()
                async with session.post(url, data=body, headers=headers) as answer:
                    payload = await answer.read()
                    if answer.status != 200:
                        raise RuntimeError(f"HTTP {answer.status}: {payload[:200]!r}")
                latencies.append(time.perf_counter() - began)
                if not first:
                    first.append(decode(payload, answer.headers))

        await asyncio.gather(*(client() for _ in range(callers)))
    return latencies, first[0]


async def _grpc_client(port: int, model: str, input_name: str, sample: np.ndarray, callers: int, seconds: float):
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.inputs[input_name].CopyFrom(tf.make_tensor_proto(sample))
    latencies: list[float] = []
    first: list[Any] = []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        stop_at = time.perf_counter() + seconds

        async def client() -> None:
            while time.perf_counter() < stop_at:
                began = time.perf_counter()
                response = await stub.Predict(request, timeout=30.0)
                latencies.append(time.perf_counter() - began)
                if not first:
                    first.append(tf.make_ndarray(next(iter(response.outputs.values()))).tolist())

        await asyncio.gather(*(client() for _ in range(callers)))
    return latencies, first[0]


async def _v2_grpc_client(port: int, model: str, input_name: str, sample: np.ndarray, callers: int, seconds: float):
    import grpc

    from tf1infer.serving import open_inference_protos as pb

    request = pb.ModelInferRequest(model_name=model)
    request.inputs.add(name=input_name, datatype="FP32", shape=sample.shape)
    request.raw_input_contents.append(sample.astype("<f4").tobytes())
    latencies: list[float] = []
    first: list[Any] = []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        infer = channel.unary_unary(
            f"/{pb.SERVICE}/ModelInfer",
            request_serializer=pb.ModelInferRequest.SerializeToString,
            response_deserializer=pb.ModelInferResponse.FromString,
        )
        stop_at = time.perf_counter() + seconds

        async def client() -> None:
            while time.perf_counter() < stop_at:
                began = time.perf_counter()
                response = await infer(request, timeout=30.0)
                latencies.append(time.perf_counter() - began)
                if not first:
                    first.append(np.frombuffer(response.raw_output_contents[0], "<f4").tolist())

        await asyncio.gather(*(client() for _ in range(callers)))
    return latencies, first[0]


def _v2_rest_request(model: str, input_name: str, sample: np.ndarray, binary: bool) -> tuple:
    """The path, body, headers and answer decoder of one V2 REST request (Triton's binary extension or JSON)."""
    tensor: dict[str, Any] = {"name": input_name, "shape": list(sample.shape), "datatype": "FP32"}
    if not binary:
        tensor["data"] = sample.reshape(-1).tolist()
        body = json.dumps({"inputs": [tensor]}).encode()
        return f"/v2/models/{model}/infer", body, None, lambda payload, _: json.loads(payload)["outputs"][0]["data"]
    raw = sample.astype("<f4").tobytes()
    tensor["parameters"] = {"binary_data_size": len(raw)}
    header = json.dumps({"inputs": [tensor], "parameters": {"binary_data_output": True}}).encode()

    def decode(payload: bytes, headers: Any) -> Any:
        return np.frombuffer(payload[int(headers["Inference-Header-Content-Length"]) :], "<f4").tolist()

    headers = {"Inference-Header-Content-Length": str(len(header))}
    return f"/v2/models/{model}/infer", header + raw, headers, decode


def run_client(
    api: str, port: int, input_name: str, sample_path: str, callers: int, seconds: float, model: str = SERVED_NAME
) -> dict:
    """One measurement from this process: requests/s, p50/p99 ms, the client's CPU seconds, the first answer."""
    sample = np.load(sample_path)
    if api in ("grpc", "v2-grpc"):  # Imported before the clock starts: TensorFlow's import is not a request's cost.
        import tensorflow  # noqa: F401
        from tensorflow_serving.apis import prediction_service_pb2_grpc  # noqa: F401
    started_cpu = resource.getrusage(resource.RUSAGE_SELF)
    began = time.perf_counter()
    if api == "grpc":
        latencies, first = asyncio.run(_grpc_client(port, model, input_name, sample, callers, seconds))
    elif api == "v2-grpc":
        latencies, first = asyncio.run(_v2_grpc_client(port, model, input_name, sample, callers, seconds))
    elif api.startswith("v2-rest"):
        path, body, headers, decode = _v2_rest_request(model, input_name, sample, binary=api == "v2-rest-binary")
        latencies, first = asyncio.run(_rest_client(port, path, body, callers, seconds, decode, headers))
    else:
        body = json.dumps({"instances": sample.tolist()}).encode()
        path = f"/v1/models/{model}:predict"
        decode = lambda payload, _: json.loads(payload)["predictions"]  # noqa: E731
        latencies, first = asyncio.run(_rest_client(port, path, body, callers, seconds, decode))
    elapsed = time.perf_counter() - began
    ended_cpu = resource.getrusage(resource.RUSAGE_SELF)
    every = np.asarray(latencies)
    return {
        "requests_per_second": round(len(every) / elapsed, 1),
        "p50_ms": round(float(np.percentile(every, 50)) * 1e3, 3),
        "p99_ms": round(float(np.percentile(every, 99)) * 1e3, 3),
        "requests": int(len(every)),
        "client_cpu_s": round(
            (ended_cpu.ru_utime - started_cpu.ru_utime) + (ended_cpu.ru_stime - started_cpu.ru_stime), 2
        ),
        "seconds": round(elapsed, 2),
        "first": first,
    }


# -- the floor: Flask + tf_keras, model.predict per request -------------------------------------------------------


def run_flask(model_path: str, port: int) -> None:
    """The legacy serving pattern: a Flask app, the model loaded at start-up, ``model.predict`` per request."""
    import tf_keras
    from flask import Flask, jsonify, request

    model = tf_keras.models.load_model(model_path, compile=False)
    app = Flask(__name__)

    @app.post(f"/v1/models/{SERVED_NAME}:predict")
    def predict():
        x = np.asarray(request.get_json(force=True)["instances"], dtype=np.float32)
        return jsonify({"predictions": model.predict(x, verbose=0).tolist()})

    print("flask ready", flush=True)
    app.run(host="127.0.0.1", port=port, threaded=True)


# -- the orchestration (in make bench-tf1's process) --------------------------------------------------------------


def _start(command: list[str], ready: str, timeout: float = 300.0) -> subprocess.Popen:
    child = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert child.stdout is not None
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            break
        seen.append(line)
        if ready in line:
            # Keep reading its output, so that a full pipe never blocks the server.
            threading.Thread(target=lambda: [None for _ in child.stdout], daemon=True).start()  # type: ignore[union-attr]
            return child
    child.kill()
    raise RuntimeError(f"{' '.join(command[:4])} did not start: {''.join(seen)[-500:]}")


def _stop(child: subprocess.Popen) -> None:
    child.terminate()
    try:
        child.wait(timeout=60)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def _client(api: str, port: int, input_name: str, sample_path: str, callers: int, seconds: float) -> dict:
    command = [sys.executable, "-m", "tf1infer.bench.serving", "client", api, str(port), input_name, sample_path]
    out = subprocess.run(
        [*command, str(callers), str(seconds)],
        capture_output=True,
        text=True,
        timeout=seconds + 300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    lines = [line for line in out.stdout.splitlines() if line.startswith("SERVING-RECORD ")]
    if not lines:
        raise RuntimeError(f"client failed: {(out.stderr or out.stdout)[-400:]}")
    return json.loads(lines[-1][len("SERVING-RECORD ") :])


def report_serving(
    models: dict[str, str], quick: bool, in_process: Callable[[str, int], dict | str], callers: tuple = CALLERS
) -> list[dict]:
    """Every model x API x number of clients; ``in_process(path, callers)`` gives the micro-batched ceiling."""
    import tf1infer

    seconds = 1.5 if quick else 4.0
    records: list[dict] = []
    with tempfile.TemporaryDirectory() as scratch:
        for model, path in models.items():
            with tf1infer.load(path) as predictor:
                spec = predictor.inputs[0]
                assert spec.shape is not None  # Both bench models have known input shapes.
                shape = [1] + [dim or 1 for dim in spec.shape[1:]]
                sample = np.random.default_rng(0).uniform(0, 255, shape).astype(np.float32)  # An image's range.
                expected = predictor.predict(sample)
                input_name = predictor.input_names[0]
            sample_path = os.path.join(scratch, f"{model}.npy")
            np.save(sample_path, sample)
            for count in callers:
                print(f"  serving: {model}, {count} client(s), in-process micro-batched", flush=True)
                ceiling = in_process(path, count)
                records.append(
                    {"model": model, "callers": count, "api": "in-process", **ceiling}
                    if isinstance(ceiling, dict)
                    else {"model": model, "callers": count, "api": "in-process", "error": ceiling}
                )
            for group in (SERVE_APIS, ("flask",)):
                rest_port, grpc_port = free_port(), free_port()
                try:
                    if group[0] == "flask":
                        server = _start(
                            [sys.executable, "-m", "tf1infer.bench.serving", "flask", path, str(rest_port)],
                            "flask ready",
                        )
                        time.sleep(1.0)  # Flask prints before it binds.
                    else:
                        server = _start(
                            [
                                sys.executable,
                                "-m",
                                "tf1infer",
                                "serve",
                                f"{SERVED_NAME}={path}",
                                "--rest-port",
                                str(rest_port),
                                "--grpc-port",
                                str(grpc_port),
                            ],
                            "tf1infer serve: serving",
                        )
                except RuntimeError as exc:
                    records += [
                        {"model": model, "callers": c, "api": api, "error": str(exc)} for api in group for c in callers
                    ]
                    continue
                try:
                    for api in group:
                        for count in callers:
                            print(f"  serving: {model}, {count} client(s), {api}", flush=True)
                            port = grpc_port if api.endswith("grpc") else rest_port
                            try:
                                record = _client(api, port, input_name, sample_path, count, seconds)
                            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                                records.append({"model": model, "callers": count, "api": api, "error": str(exc)[:300]})
                                continue
                            first = np.asarray(record.pop("first"), dtype=np.float32).reshape(np.shape(expected))
                            record["max_abs_error"] = float(np.max(np.abs(first - expected)))
                            records.append({"model": model, "callers": count, "api": api, **record})
                finally:
                    _stop(server)
    for line in serving_lines(records):
        print(line)
    return records


def serving_md(records: list[dict]) -> str:
    """A markdown table: per model x clients, requests/s and p99 of each way, and the ratios the issue names."""
    if not records:
        return ""
    rows = [
        "| model | clients | in-process req/s (p99 ms) | gRPC req/s (p99 ms) | REST req/s (p99 ms) | "
        "Flask + tf_keras req/s (p99 ms) | gRPC / in-process | REST / in-process | gRPC / Flask | REST / Flask | "
        "client CPU s (gRPC / REST) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for model, count, by_api in _grouped(records):
        rows.append(
            f"| {model} | {count} | {_cell(by_api, 'in-process')} | {_cell(by_api, 'grpc')} | "
            f"{_cell(by_api, 'rest')} | {_cell(by_api, 'flask')} | {_ratio(by_api, 'grpc', 'in-process')} | "
            f"{_ratio(by_api, 'rest', 'in-process')} | {_ratio(by_api, 'grpc', 'flask')} | "
            f"{_ratio(by_api, 'rest', 'flask')} | {_client_cpu(by_api)} |"
        )
    rows += [
        "",
        "The same server over both protocols (requests/s, p99 ms):",
        "",
        "| model | clients | TF Serving gRPC | V2 gRPC (raw) | TF Serving REST | V2 REST (binary) | V2 REST (JSON) | "
        "V2 gRPC / TF Serving gRPC | V2 REST binary / TF Serving REST |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for model, count, by_api in _grouped(records):
        rows.append(
            f"| {model} | {count} | {_cell(by_api, 'grpc')} | {_cell(by_api, 'v2-grpc')} | {_cell(by_api, 'rest')} | "
            f"{_cell(by_api, 'v2-rest-binary')} | {_cell(by_api, 'v2-rest-json')} | "
            f"{_ratio(by_api, 'v2-grpc', 'grpc')} | {_ratio(by_api, 'v2-rest-binary', 'rest')} |"
        )
    errors = [r for r in records if "error" in r]
    notes = "".join(f"\n{r['model']}, {r['callers']} client(s), {r['api']}: {r['error']}" for r in errors)
    return "\n".join(rows) + "\n" + notes


def serving_lines(records: list[dict]) -> list[str]:
    lines = ["\nserving single-sample clients (requests/s, p99 ms):"]
    for model, count, by_api in _grouped(records):
        parts = []
        for api in ("in-process", *APIS):
            record = by_api.get(api)
            if record is None:
                continue
            parts.append(
                f"{api} error" if "error" in record else f"{api} {_rate(record):,.0f} ({record['p99_ms']:.1f})"
            )
        lines.append(f"  {model:14s} {count:4d} clients: " + ", ".join(parts))
    return lines


def _cell(by_api: dict[str, dict], api: str) -> str:
    record = by_api.get(api)
    if record is None or "error" in record:
        return "error" if record else "-"
    return f"{_rate(record):,.0f} ({record['p99_ms']:.1f})"


def _ratio(by_api: dict[str, dict], top: str, bottom: str) -> str:
    a, b = _rate(by_api.get(top)), _rate(by_api.get(bottom))
    return f"{a / b:.2f}x" if a and b else "-"


def _client_cpu(by_api: dict[str, dict]) -> str:
    return "/".join(
        f"{by_api[api]['client_cpu_s']:.1f}" if "client_cpu_s" in by_api.get(api, {}) else "-"
        for api in ("grpc", "rest")
    )


def _rate(record: dict | None) -> float | None:
    if record is None or "error" in record:
        return None
    return record.get("requests_per_second", record.get("samples_per_second"))


def _grouped(records: list[dict]):
    keys: dict[tuple[str, int], dict[str, dict]] = {}
    for record in records:
        keys.setdefault((record["model"], record["callers"]), {})[record["api"]] = record
    for (model, count), by_api in keys.items():
        yield model, count, by_api


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["client"]:
        api, port, input_name, sample_path, callers, seconds = args[1:7]
        record = run_client(api, int(port), input_name, sample_path, int(callers), float(seconds))
        print("SERVING-RECORD " + json.dumps(record), flush=True)
        return 0
    if args[:1] == ["flask"]:
        run_flask(args[1], int(args[2]))
        return 0
    print("usage: python -m tf1infer.bench.serving client|flask ... (make bench-tf1 runs it)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
