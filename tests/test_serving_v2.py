"""tf1infer serve: the Open Inference Protocol (KServe V2), driven with its real clients (tritonclient http and grpc).

One server (in this process, on free ports of 127.0.0.1) holds TF Serving's half_plus_two SavedModel as ``default``
version 123, a zoo .h5, the corpus mini-Xception, an embedding model (INT32 ids), a two-input two-output model and
a frozen graph. Outputs are compared with the model's own ``predict`` on verification rows (random rows plus image
ranges and the first and last ids of an embedding table) to 1e-6, over tritonclient.http with the binary tensor
extension on and off and over tritonclient.grpc; the frozen graph also with its formula. The queue-full, deadline,
memory and SIGTERM cases for V2 run in test_serving.py, beside their TF Serving twins and on the same servers.
"""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

pytest.importorskip("aiohttp", reason="the serve extra (aiohttp) is not installed")
pytest.importorskip("grpc_health", reason="the serve extra (grpcio-health-checking) is not installed")
tritonhttp = pytest.importorskip("tritonclient.http", reason="the test extra (tritonclient[http]) is not installed")
tritongrpc = pytest.importorskip("tritonclient.grpc", reason="the test extra (tritonclient[grpc]) is not installed")

import grpc  # noqa: E402
import requests  # noqa: E402
from conftest import CORPUS_ABSENT, CORPUS_DIR, ZOO_DIR, loaded_models, serving_models, tf1_formula  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

import tf1infer  # noqa: E402
from tf1infer.serving import open_inference as v2  # noqa: E402
from tf1infer.serving import open_inference_protos as pb  # noqa: E402
from tf1infer.verification.synthetic import verification_batches  # noqa: E402

HALF_PLUS_TWO = CORPUS_DIR / "tfserving_saved_model_half_plus_two_cpu"
XCEPTION = CORPUS_DIR / "keras205_gender_mini_xception.hdf5"
pytestmark = pytest.mark.skipif(not HALF_PLUS_TWO.is_dir(), reason=CORPUS_ABSENT)
TIMEOUT = 30.0
# Served outputs against predict() on the same rows: the same session and kernels.
EXACT = 1e-6

MODELS = {
    "default": (HALF_PLUS_TWO, {}),
    "cnn": (ZOO_DIR / "cnn.h5", {}),
    "xception": (XCEPTION, {}),
    "embedding": (ZOO_DIR / "embedding.h5", {}),
    "two": (ZOO_DIR / "two_in_two_out.h5", {}),
    "frozen": (ZOO_DIR / "tf1" / "frozen.pb", {"outputs": ["logits", "probs"]}),
}


@pytest.fixture(scope="module")
def server():
    with serving_models(MODELS) as running:
        yield running


@pytest.fixture(scope="module")
def http(server):
    client = tritonhttp.InferenceServerClient(f"127.0.0.1:{server.rest_port}", network_timeout=TIMEOUT)
    yield client
    client.close()


@pytest.fixture(scope="module")
def grpc_client(server):
    client = tritongrpc.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    yield client
    client.close()


@pytest.fixture(scope="module")
def rest(server):
    session = requests.Session()
    base = f"http://127.0.0.1:{server.rest_port}"

    def call(method: str, path: str, body=None, headers=None):
        data = body if isinstance(body, (bytes, str)) or body is None else json.dumps(body)
        return session.request(method, base + path, data=data, headers=headers, timeout=TIMEOUT)

    yield call
    session.close()


@pytest.fixture(scope="module")
def predictors():
    with loaded_models(MODELS, leave_out=("default",)) as loaded:
        yield loaded


def _http_inputs(names, arrays, binary: bool):
    inputs = []
    for name, array in zip(names, arrays):
        tensor = tritonhttp.InferInput(name, list(array.shape), v2.datatype(array.dtype))
        tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)
    return inputs


def _grpc_inputs(names, arrays):
    inputs = []
    for name, array in zip(names, arrays):
        tensor = tritongrpc.InferInput(name, list(array.shape), v2.datatype(array.dtype))
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs


# -- outputs equal to predict, over every client and encoding ---------------------------------------------------


@pytest.mark.parametrize("name", ["cnn", "xception", "embedding", "two", "frozen"])
def test_every_client_and_encoding_answers_like_predict(name, http, grpc_client, predictors):
    predictor = predictors[name]
    # Verification rows: random rows plus what the layers treat specially (image ranges 0..255, ids 0 and the
    # table's last id); the served output must be predict's on the same rows.
    arrays = verification_batches(predictor.inputs, np.random.default_rng(0), random_rows=4)[0]
    want = predictor.predict(arrays if len(arrays) > 1 else arrays[0])
    want = dict(zip(predictor.output_names, want if isinstance(want, list) else [want]))
    names = predictor.input_names
    answers = {}
    for binary in (True, False):
        outputs = [tritonhttp.InferRequestedOutput(alias, binary_data=binary) for alias in predictor.output_names]
        result = http.infer(name, _http_inputs(names, arrays, binary), outputs=outputs, request_id=f"{name}-{binary}")
        assert result.get_response()["id"] == f"{name}-{binary}"
        assert result.get_response()["model_version"] == "1"
        answers[f"http binary={binary}"] = result
    answers["grpc"] = grpc_client.infer(name, _grpc_inputs(names, arrays), request_id="g")
    for how, result in answers.items():
        for alias, expected in want.items():
            got = result.as_numpy(alias)
            assert got.dtype == expected.dtype and got.shape == expected.shape, how
            np.testing.assert_allclose(got, expected, atol=EXACT, rtol=0, err_msg=how)
    if name == "frozen":  # And the TF1 fixture's own formula.
        for alias, expected in tf1_formula(arrays[0].astype(np.float64)).items():
            np.testing.assert_allclose(answers["grpc"].as_numpy(alias), expected, atol=1e-5)


def test_half_plus_two_over_every_client(http, grpc_client, rest):
    x = np.array([[2.0], [3.0], [4.0]], np.float32)
    for binary in (True, False):
        result = http.infer("default", _http_inputs(["x"], [x], binary), model_version="123")
        assert result.as_numpy("y").ravel().tolist() == [3.0, 3.5, 4.0]
    for compression in ("gzip", "deflate"):  # tritonclient's compressed requests: the header length counts inflated.
        result = http.infer("default", _http_inputs(["x"], [x], True), request_compression_algorithm=compression)
        assert result.as_numpy("y").ravel().tolist() == [3.0, 3.5, 4.0]
    result = grpc_client.infer("default", _grpc_inputs(["x"], [x]))
    assert result.as_numpy("y").ravel().tolist() == [3.0, 3.5, 4.0]
    assert result.get_response().model_name == "default" and result.get_response().model_version == "123"
    # curl's way: plain JSON, flat data, no outputs named (every output, as JSON).
    answer = rest(
        "POST",
        "/v2/models/default/infer",
        {"id": "42", "inputs": [{"name": "x", "shape": [3, 1], "datatype": "FP32", "data": [2.0, 3.0, 4.0]}]},
    )
    assert answer.status_code == 200 and answer.headers["Content-Type"] == "application/json"
    assert answer.json() == {
        "model_name": "default",
        "model_version": "123",
        "id": "42",
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [3, 1], "data": [3.0, 3.5, 4.0]}],
    }
    # Nested data reads the same; the binary response's layout, by hand.
    body = json.dumps({"inputs": [{"name": "x", "shape": [2, 1], "datatype": "FP32", "data": [[2.0], [4.0]]}],
                       "parameters": {"binary_data_output": True}})  # fmt: skip
    answer = rest("POST", "/v2/models/default/versions/123/infer", body)
    length = int(answer.headers["Inference-Header-Content-Length"])
    header = json.loads(answer.content[:length])
    assert header["outputs"][0]["parameters"] == {"binary_data_size": 8} and "data" not in header["outputs"][0]
    assert np.frombuffer(answer.content[length:], "<f4").tolist() == [3.0, 4.0]


def test_concurrent_grpc_clients_are_gathered_and_get_their_own_rows(server, predictors):
    """32 single-image requests at once over tritonclient.grpc's async calls: batched, each answered its own row."""
    predictor = predictors["xception"]
    images = np.random.default_rng(3).uniform(0, 255, (32, 1, 64, 64, 1)).astype(np.float32)
    before = (
        server.metrics.registry.get_sample_value(
            "tf1infer_serving_batch_size_count", {"model": "xception", "version": "1"}
        )
        or 0.0
    )
    client = tritongrpc.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    try:
        import queue

        answers: queue.Queue = queue.Queue()
        for index, image in enumerate(images):
            client.async_infer(
                "xception",
                _grpc_inputs(["input_1"], [image]),
                callback=lambda result, error, index=index: answers.put((index, result, error)),
                client_timeout=TIMEOUT,
            )
        got = [None] * len(images)
        for _ in images:
            index, result, error = answers.get(timeout=TIMEOUT)
            assert error is None, error
            got[index] = result.as_numpy("predictions")
    finally:
        client.close()
    np.testing.assert_allclose(np.concatenate(got), predictor.predict(images[:, 0]), atol=EXACT, rtol=0)
    runs = server.metrics.registry.get_sample_value(
        "tf1infer_serving_batch_size_count", {"model": "xception", "version": "1"}
    )
    assert runs - before < len(images)  # Some requests shared a run.


# -- metadata, readiness, health ----------------------------------------------------------------------------------


def test_metadata_and_readiness_as_specified(http, grpc_client, rest, server):
    assert http.is_server_live() and http.is_server_ready()
    assert grpc_client.is_server_live() and grpc_client.is_server_ready()
    assert rest("GET", "/v2/health/live").json() == {"live": True}
    assert rest("GET", "/v2/health/ready").json() == {"ready": True}
    for client in (http, grpc_client):
        assert client.is_model_ready("cnn") and client.is_model_ready("default", "123")
        assert not client.is_model_ready("nope") and not client.is_model_ready("default", "7")
    assert rest("GET", "/v2/models/cnn/ready").json() == {"name": "cnn", "ready": True}
    expected = {
        "name": "cnn",
        "versions": ["1"],
        "platform": "tensorflow_graphdef",
        "inputs": [{"name": "input_1", "datatype": "FP32", "shape": [-1, 16, 16, 3]}],
        "outputs": [{"name": "dense", "datatype": "FP32", "shape": [-1, 5]}],
    }
    assert http.get_model_metadata("cnn") == expected
    assert http.get_model_metadata("cnn", "1") == expected
    from_grpc = grpc_client.get_model_metadata("cnn", as_json=True)
    assert from_grpc["name"] == "cnn" and from_grpc["platform"] == "tensorflow_graphdef"
    assert [(t["name"], t["datatype"], [int(s) for s in t["shape"]]) for t in from_grpc["inputs"]] == [
        ("input_1", "FP32", [-1, 16, 16, 3])
    ]
    default = http.get_model_metadata("default")
    assert default["platform"] == "tensorflow_savedmodel" and default["versions"] == ["123"]
    assert default["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 1]}]
    assert http.get_model_metadata("embedding")["inputs"][0]["datatype"] == "INT32"
    for client in (http, grpc_client):
        metadata = client.get_server_metadata(**({"as_json": True} if client is grpc_client else {}))
        assert metadata["name"] == "tf1infer" and metadata["version"] == tf1infer.__version__
        assert "binary_tensor_data" in metadata["extensions"]

    # Counted in the server's metrics by protocol and method; an unknown model's name never becomes a label.
    def counted(api: str, method: str, model: str, code: str = "OK") -> float:
        labels = {"model": model, "api": api, "method": method, "code": code}
        return server.metrics.registry.get_sample_value("tf1infer_serving_requests_total", labels) or 0.0

    assert counted("v2_rest", "model_metadata", "cnn") >= 2 and counted("v2_grpc", "model_metadata", "cnn") >= 1
    assert counted("v2_rest", "model_ready", "cnn") >= 2 and counted("v2_grpc", "model_ready", "cnn") >= 1
    assert counted("v2_rest", "model_ready", "", "NOT_FOUND") >= 1 and counted("v2_rest", "model_ready", "nope") == 0
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "inference.GRPCInferenceService", "tensorflow.serving.PredictionService"):
            answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=TIMEOUT)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING, service
        with pytest.raises(grpc.RpcError) as raised:
            health.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=TIMEOUT)
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND


# -- every error case, with its status; the next good request is answered ------------------------------------------


def _infer_body(name="x", shape=(1, 1), datatype="FP32", data=(2.0,), **extra) -> dict:
    tensor = {"name": name, "shape": list(shape), "datatype": datatype, "data": list(data)}
    return {"inputs": [tensor], **extra}


def _binary_body(json_part: dict, raw: bytes) -> tuple[bytes, dict]:
    text = json.dumps(json_part).encode()
    return text + raw, {"Inference-Header-Content-Length": str(len(text))}


_ONE = struct.pack("<f", 2.0)
BAD_REQUESTS = [
    # (method, path, body, headers, status, words)
    ("GET", "/v2/models/nope", None, None, 404, "unknown model: 'nope'"),
    ("POST", "/v2/models/nope/infer", _infer_body(), None, 404, "unknown model: 'nope' (served: cnn, default"),
    ("GET", "/v2/models/default/versions/7", None, None, 404, "model 'default' has no version '7' (versions: 123)"),
    ("GET", "/v2/models/default/versions/abc/ready", None, None, 404, "has no version 'abc'"),
    ("GET", "/v2/models/nope/ready", None, None, 404, "unknown model"),
    ("GET", "/v2/foo", None, None, 404, "no Open Inference Protocol route for GET /v2/foo"),
    ("GET", "/v2/models/default/infer", None, None, 404, "no Open Inference Protocol route"),
    ("POST", "/v2/models/default", _infer_body(), None, 404, "no Open Inference Protocol route"),
    ("POST", "/v2/models/default/infer", "{not json", None, 400, "JSON Parse error"),
    ("POST", "/v2/models/default/infer", "", None, 400, "The document is empty"),
    ("POST", "/v2/models/default/infer", "[1]", None, 400, "Is not object"),
    ("POST", "/v2/models/default/infer", {}, None, 400, "'inputs' must be a non-empty array"),
    ("POST", "/v2/models/default/infer", {"inputs": [1]}, None, 400, "inputs[0] must be an object"),
    ("POST", "/v2/models/default/infer", {"inputs": [{"shape": [1]}]}, None, 400, "needs a string 'name'"),
    ("POST", "/v2/models/default/infer", _infer_body(name="z"), None, 400, "unknown input 'z'; the model's inputs: x"),
    ("POST", "/v2/models/default/infer", _infer_body(datatype="FP64"), None, 400, "the model takes FP32"),
    ("POST", "/v2/models/default/infer", _infer_body(datatype="FLOAT"), None, 400, "unknown datatype \"FLOAT\""),
    ("POST", "/v2/models/default/infer", _infer_body(shape=(2, 1)), None, 400, "holds 2 elements; the data has 1"),
    ("POST", "/v2/models/default/infer", _infer_body(shape=(-1, 1)), None, 400, "non-negative integers"),
    ("POST", "/v2/models/default/infer", _infer_body(shape="1"), None, 400, "shape must be a list"),
    ("POST", "/v2/models/default/infer", _infer_body(shape=(2, 1), data=[[1.0], [2.0, 3.0]]), None, 400, "ragged"),
    ("POST", "/v2/models/default/infer", _infer_body(data=["2.0"]), None, 400, "FP32 data holds \"2.0\""),
    ("POST", "/v2/models/default/infer", _infer_body(data=[True]), None, 400, "FP32 data holds true"),
    ("POST", "/v2/models/default/infer", {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": 2.0}]},
     None, 400, "data must be a JSON array"),  # fmt: skip
    ("POST", "/v2/models/default/infer", {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32"}]}, None, 400,
     "neither 'data' nor parameters.binary_data_size"),  # fmt: skip
    ("POST", "/v2/models/default/infer", {**_infer_body(), "id": 7}, None, 400, "'id' must be a string"),
    ("POST", "/v2/models/default/infer", {**_infer_body(), "outputs": [{"name": "q"}]}, None, 400,
     "unknown output 'q'; the model's outputs: y"),  # fmt: skip
    ("POST", "/v2/models/default/infer", {**_infer_body(), "outputs": [{"name": "y"}, {"name": "y"}]}, None, 400,
     "requested twice"),  # fmt: skip
    ("POST", "/v2/models/default/infer", {**_infer_body(), "outputs": [{"name": "y", "parameters":
     {"classification": 2}}]}, None, 400, "classification extension is not supported"),  # fmt: skip
    ("POST", "/v2/models/default/infer", {"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "parameters":
     {"shared_memory_region": "r"}}]}, None, 400, "shared-memory extension is not supported"),  # fmt: skip
    ("POST", "/v2/models/cnn/infer", _infer_body(name="input_1", shape=(1, 16, 16), data=[0.0] * 256), None, 400,
     "input 'input_1' (input_1:0) expects shape [-1,16,16,3]; got [1,16,16]"),  # fmt: skip
    ("POST", "/v2/models/embedding/infer", _infer_body(name="token_ids", shape=(1, 12), datatype="INT32",
     data=[1] * 11 + [2**40]), None, 400, "1099511627776 is outside the range of INT32"),  # fmt: skip
    ("POST", "/v2/models/embedding/infer", _infer_body(name="token_ids", shape=(1, 12), datatype="INT32",
     data=[1.5] * 12), None, 400, "INT32 data holds 1.5"),  # fmt: skip
    ("POST", "/v2/models/two/infer", _infer_body(name="features", shape=(1, 6), data=[0.0] * 6), None, 400,
     "missing input 'extra'"),  # fmt: skip
    # Triton's binary tensor extension, wrong in every way a hand-built client gets it wrong.
    ("POST", "/v2/models/default/infer", *_binary_body({"inputs": [{"name": "x", "shape": [2, 1], "datatype": "FP32",
     "parameters": {"binary_data_size": 4}}]}, _ONE), 400, "shape [2,1] of FP32 takes 8 bytes; the request holds 4"),
    ("POST", "/v2/models/default/infer", *_binary_body({"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32",
     "parameters": {"binary_data_size": 8}}]}, _ONE), 400, "runs past the 4 bytes after the JSON"),
    ("POST", "/v2/models/default/infer", *_binary_body({"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32",
     "parameters": {"binary_data_size": 4}}]}, _ONE + b"xx"), 400, "2 bytes of binary data after the JSON belong to no"),
    ("POST", "/v2/models/default/infer", json.dumps({"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32",
     "parameters": {"binary_data_size": 4}}]}), None, 400, "no Inference-Header-Content-Length header"),
    ("POST", "/v2/models/default/infer", b"{}", {"Inference-Header-Content-Length": "99"}, 400,
     "must be a byte count within the body's 2 bytes"),  # fmt: skip
    ("POST", "/v2/models/default/infer", *_binary_body({"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32",
     "data": [2.0], "parameters": {"binary_data_size": 4}}]}, _ONE), 400, "both 'data' and binary_data_size"),
]  # fmt: skip


@pytest.mark.parametrize("method, path, body, headers, status, words", BAD_REQUESTS)
def test_bad_request_gets_its_status_and_the_next_good_one_is_answered(rest, method, path, body, headers, status,
                                                                       words):  # fmt: skip
    answer = rest(method, path, body, headers)
    assert answer.status_code == status, answer.text
    assert answer.headers["Content-Type"].startswith("application/json")
    assert words in answer.json()["error"], answer.json()
    good = rest("POST", "/v2/models/default/infer", _infer_body())
    assert good.status_code == 200 and good.json()["outputs"][0]["data"] == [3.0]


def test_the_http_client_reports_the_servers_error(http):
    x = np.array([[2.0]], np.float64)
    with pytest.raises(InferenceServerException) as raised:
        http.infer("default", _http_inputs(["x"], [x], True))
    assert raised.value.status() == "400" and "the model takes FP32; the request sends FP64" in raised.value.message()
    with pytest.raises(InferenceServerException) as raised:
        http.get_model_metadata("nope")
    assert raised.value.status() == "404"


def _raw_request(model: str, tensors, raw: bool = True) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=model)
    for name, array in tensors:
        tensor = request.inputs.add(name=name, datatype=v2.datatype(array.dtype), shape=array.shape)
        if raw:
            request.raw_input_contents.append(v2.raw_bytes(array))
        else:
            getattr(tensor.contents, {"FP32": "fp32_contents", "INT32": "int_contents"}[tensor.datatype]).extend(
                array.reshape(-1).tolist()
            )
    return request


def test_bad_grpc_requests_get_their_codes(server, grpc_client):
    x = np.array([[2.0]], np.float32)
    channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
    infer = channel.unary_unary(
        "/inference.GRPCInferenceService/ModelInfer",
        request_serializer=pb.ModelInferRequest.SerializeToString,
        response_deserializer=pb.ModelInferResponse.FromString,
    )
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    typed = _raw_request("default", [("x", x)], raw=False)
    assert infer(typed, timeout=TIMEOUT).raw_output_contents[0] == struct.pack("<f", 3.0)  # Typed contents work.
    mixed = _raw_request("default", [("x", x)], raw=False)
    mixed.inputs[0].contents.int_contents.append(1)
    half = _raw_request("default", [("x", x)], raw=False)
    half.inputs[0].datatype = "FP16"
    half.inputs[0].contents.Clear()
    short = _raw_request("default", [("x", x)])
    short.raw_input_contents[0] = b"\0\0"
    extra = _raw_request("default", [("x", x)])
    extra.raw_input_contents.append(b"")
    both = _raw_request("default", [("x", x)])
    both.inputs[0].contents.fp32_contents.append(2.0)
    ids = np.ones((1, 12), np.int32)
    ids[0, 0] = 10**6  # Passes every check; fails in the kernel (beyond the embedding table).
    ids = _raw_request("embedding", [("token_ids", ids)], raw=False)
    shared = _raw_request("default", [("x", x)])
    shared.inputs[0].parameters["shared_memory_region"].string_param = "r"
    cases = [
        (_raw_request("nope", [("x", x)]), grpc.StatusCode.NOT_FOUND, "unknown model: 'nope'"),
        (pb.ModelInferRequest(model_name="default", model_version="9"), grpc.StatusCode.NOT_FOUND, "no version '9'"),
        (_raw_request("default", [("x", x.astype(np.float64))]), invalid, "the model takes FP32"),
        (_raw_request("default", [("z", x)]), invalid, "unknown input 'z'"),
        (pb.ModelInferRequest(model_name="default"), invalid, "missing input 'x'"),
        (mixed, invalid, "holds int_contents; its values go in fp32_contents"),
        (half, invalid, "FP16 has no typed contents"),
        (short, invalid, "takes 4 bytes; the request holds 2"),
        (extra, invalid, "raw_input_contents holds 2 tensors for 1 inputs"),
        (both, invalid, "both contents and raw_input_contents"),
        (shared, invalid, "shared-memory extension"),
        (ids, invalid, "indices[0,0] = 1000000 is not in [0, 100)"),  # TensorFlow's own reason.
    ]
    try:
        for request, code, words in cases:
            with pytest.raises(grpc.RpcError) as raised:
                infer(request, timeout=TIMEOUT)
            assert raised.value.code() == code and words in raised.value.details(), raised.value.details()
            good = grpc_client.infer("default", _grpc_inputs(["x"], [x]))
            assert good.as_numpy("y").tolist() == [[3.0]]
    finally:
        channel.close()
    with pytest.raises(InferenceServerException) as raised:
        grpc_client.get_model_metadata("nope")
    assert raised.value.status() == "StatusCode.NOT_FOUND"


# -- the wire format: datatypes both ways, the descriptor against Triton's --------------------------------------------


@pytest.mark.parametrize("name", sorted(v2.DATATYPES))
def test_every_datatype_reads_back_from_raw_and_json(name):
    dtype = v2.DATATYPES[name]
    if name == "BYTES":
        array = np.array([[b"", b"a\x00b"], ["é".encode(), b"last"]], dtype=object)
        decoded = v2.from_raw(v2.raw_bytes(array), dtype, (2, 2), "t", name)
        assert decoded.tolist() == array.tolist()
        text = v2.from_json_data([["", "a"], ["é", "z"]], dtype, (2, 2), "t", name)
        assert text.tolist() == [[b"", b"a"], ["é".encode(), b"z"]]
        return
    if name == "BOOL":
        array = np.array([[True, False], [False, True]])
    elif dtype.kind in "iu":
        info = np.iinfo(dtype)
        array = np.array([[info.min, info.max], [0, 1]], dtype)  # The ends of the type's range.
    else:
        array = np.array([[0.5, -2.0], [65504.0 if name == "FP16" else 1e30, 0.0]], np.float64).astype(dtype)
    assert v2.datatype(array.dtype) == name
    assert v2.from_raw(v2.raw_bytes(array), dtype, (2, 2), "t", name).tolist() == array.tolist()
    from_json = v2.from_json_data(array.astype(object if dtype.kind in "iub" else np.float64).tolist(), dtype,
                                  (2, 2), "t", name)  # fmt: skip
    assert from_json.dtype == dtype and from_json.tolist() == array.tolist()


def test_non_finite_outputs_are_written_as_bare_nan_and_infinity():
    from tf1infer.serving.open_inference_rest import _dumps

    values = np.array([np.nan, np.inf, -np.inf, 0.1], np.float32)
    text = _dumps({"data": values}, finite=False)
    assert text.startswith(b'{"data": [NaN, Infinity, -Infinity, ')
    back = np.array(json.loads(text)["data"], np.float32)
    assert np.isnan(back[0]) and back[1:].tolist() == values[1:].tolist()
    assert json.loads(_dumps({"data": values[3:]}))["data"] == [0.1]  # float32's shortest exact text.


def test_messages_match_triton_clients_on_the_wire():
    """Every field of the protocol's messages has the number, type and label of the same field in tritonclient's
    grpc_service.proto (a superset): what one side writes, the other reads."""
    from tritonclient.grpc import service_pb2

    def check(ours, theirs, path):
        for field in ours.fields:
            if f"{path}.{field.name}" == "ModelMetadata.properties":
                continue  # The protocol's; not in Triton's proto, whose readers skip it as an unknown field.
            other = theirs.fields_by_name.get(field.name)
            assert other is not None, f"{path}.{field.name} is not in tritonclient's proto"
            assert (field.number, field.type) == (other.number, other.type), f"{path}.{field.name}"
            assert field.message_type is None or field.message_type.name == other.message_type.name
            if field.message_type is not None:
                check(field.message_type, other.message_type, f"{path}.{field.name}")

    for name, (request, response) in pb.METHODS.items():
        assert service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods_by_name[name]
        for message in (request, response):
            check(message.DESCRIPTOR, service_pb2.DESCRIPTOR.message_types_by_name[message.DESCRIPTOR.name], name)


def test_bytes_tensors_through_a_string_graph_over_every_client(tmp_path):
    """BYTES in and out through a real graph: a frozen TF1 graph taking strings (any bytes, not only UTF-8) and
    answering each one's length and the strings themselves, over both encodings of HTTP and over gRPC."""
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        text = tf.compat.v1.placeholder(tf.string, [None], name="text")
        tf.identity(tf.strings.length(text), name="length")
        tf.identity(text, name="echo")
    (tmp_path / "strings.pb").write_bytes(graph.as_graph_def().SerializeToString())
    words = np.array([b"", b"legacy", "Kéras".encode(), b"\xff\x00raw"], dtype=object)
    models = {"strings": (tmp_path / "strings.pb", {"outputs": ["length", "echo"]})}
    with serving_models(models) as running:
        http = tritonhttp.InferenceServerClient(f"127.0.0.1:{running.rest_port}", network_timeout=TIMEOUT)
        rpc = tritongrpc.InferenceServerClient(f"127.0.0.1:{running.grpc_port}")
        try:
            metadata = http.get_model_metadata("strings")
            assert metadata["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
            assert [(o["name"], o["datatype"]) for o in metadata["outputs"]] == [("length", "INT32"), ("echo", "BYTES")]
            results = [
                http.infer("strings", _http_inputs(["text"], [words], True)),
                rpc.infer("strings", _grpc_inputs(["text"], [words])),
            ]
            for result in results:
                assert result.as_numpy("length").tolist() == [0, 6, 6, 5]
                assert result.as_numpy("echo").tolist() == words.tolist()
            # JSON carries text: UTF-8 strings in and out; bytes that are not UTF-8 must be asked for as binary.
            text_only = words[:3]
            as_json = http.infer(
                "strings",
                _http_inputs(["text"], [text_only], False),
                outputs=[tritonhttp.InferRequestedOutput(name, binary_data=False) for name in ("length", "echo")],
            )
            assert as_json.as_numpy("length").tolist() == [0, 6, 6]
            echoed = as_json.as_numpy("echo").tolist()  # tritonclient gives JSON strings back as str.
            assert [item.encode() if isinstance(item, str) else item for item in echoed] == text_only.tolist()
            with pytest.raises(InferenceServerException) as raised:
                http.infer(
                    "strings",
                    _http_inputs(["text"], [words], True),
                    outputs=[tritonhttp.InferRequestedOutput("echo", binary_data=False)],
                )
            assert raised.value.status() == "400" and "not UTF-8 text" in raised.value.message()
        finally:
            http.close()
            rpc.close()


def test_a_health_watcher_is_told_not_serving_and_does_not_hold_a_stopping_server():
    """Kubernetes-style gRPC probes watch: at shutdown the watcher reads NOT_SERVING, its stream ends, and the server
    stops at once (a stream that never ended would hold it for the whole grace period, 60 s by default)."""
    import threading
    import time

    with serving_models({"default": (HALF_PLUS_TWO, {})}) as running:
        channel = grpc.insecure_channel(f"127.0.0.1:{running.grpc_port}")
        try:
            stream = health_pb2_grpc.HealthStub(channel).Watch(
                health_pb2.HealthCheckRequest(service="inference.GRPCInferenceService"), timeout=TIMEOUT
            )
            assert next(stream).status == health_pb2.HealthCheckResponse.SERVING
            started = time.monotonic()
            stopper = threading.Thread(target=running.stop)
            stopper.start()
            assert next(stream).status == health_pb2.HealthCheckResponse.NOT_SERVING
            with pytest.raises(StopIteration):  # The stream ends with OK, not cut off.
                next(stream)
            stopper.join(TIMEOUT)
            assert not stopper.is_alive() and time.monotonic() - started < 10
        finally:
            channel.close()
