"""tf1infer serve: TensorFlow Serving's REST and gRPC APIs, driven with real clients (requests, tensorflow-serving-api).

One server (in this process, on free ports of 127.0.0.1) holds every kind of model at once: TF Serving's own
half_plus_two SavedModel as ``default`` version 123 (the conformance cases of TF Serving's
tensorflow_model_server_test.py and http_rest_api_handler_test.cc run against it), a zoo .h5, the corpus
mini-Xception, a Keras 1 file, a frozen graph and a meta graph. Predictions are compared with the model's own
``predict`` on the same rows (1e-6) and, for TF Serving's and the TF1 fixtures, with their formulas. The
shutdown and memory tests run ``tf1infer serve`` as a separate process.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

pytest.importorskip("tensorflow_serving.apis", reason="the serve extra (tensorflow-serving-api) is not installed")
pytest.importorskip("aiohttp", reason="the serve extra (aiohttp) is not installed")

import grpc  # noqa: E402
import requests  # noqa: E402
import tensorflow as tf  # noqa: E402
from conftest import CORPUS_ABSENT, CORPUS_DIR, ROOT, ZOO_DIR, loaded_models, serving_models, tf1_formula  # noqa: E402
from tensorflow_serving.apis import (  # noqa: E402
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

import tf1infer  # noqa: E402
from tf1infer.serving import open_inference_protos as v2_pb  # noqa: E402
from tf1infer.serving.models import Batching, ModelConfig  # noqa: E402
from tf1infer.serving.server import Limits, Server  # noqa: E402
from tf1infer.verification.synthetic import verification_batches  # noqa: E402

HALF_PLUS_TWO = CORPUS_DIR / "tfserving_saved_model_half_plus_two_cpu"
BAD_HALF_PLUS_TWO = CORPUS_DIR / "tfserving_bad_half_plus_two"
XCEPTION = CORPUS_DIR / "keras205_gender_mini_xception.hdf5"
# TF Serving's expected metadata for half_plus_two (servables/tensorflow/testdata/, Apache-2.0; see its README).
METADATA_JSON = ROOT / "tests" / "data" / "tfserving" / "half_plus_two_model_metadata.json"
needs_corpus = pytest.mark.skipif(not HALF_PLUS_TWO.is_dir(), reason=CORPUS_ABSENT)
pytestmark = needs_corpus
RPC_TIMEOUT = 30.0
# Served outputs against predict() on the same rows: the same session and kernels, other batch compositions.
EXACT = 1e-6

MODELS = {
    "default": (HALF_PLUS_TWO, {}),
    "cnn": (ZOO_DIR / "cnn.h5", {}),
    "xception": (XCEPTION, {}),
    "keras1": (ZOO_DIR / "keras1" / "conv_merge.h5", {}),
    "two": (ZOO_DIR / "two_in_two_out.h5", {}),
    "frozen": (ZOO_DIR / "tf1" / "frozen.pb", {"outputs": ["logits", "probs"]}),
    "meta": (ZOO_DIR / "tf1" / "meta_v2", {"outputs": ["logits", "probs"]}),
}


@pytest.fixture(scope="module")
def server():
    with serving_models(MODELS) as running:
        yield running


@pytest.fixture(scope="module")
def rest(server):
    session = requests.Session()
    base = f"http://127.0.0.1:{server.rest_port}"

    def call(method: str, path: str, body=None, **kwargs):
        data = body if isinstance(body, (bytes, str)) or body is None else json.dumps(body)
        return session.request(method, base + path, data=data, timeout=RPC_TIMEOUT, **kwargs)

    call.base = base
    yield call
    session.close()


@pytest.fixture(scope="module")
def channel(server):
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as opened:
        yield opened


@pytest.fixture(scope="module")
def stub(channel):
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


@pytest.fixture(scope="module")
def predictors():
    with loaded_models(MODELS, leave_out=("default",)) as loaded:
        yield loaded


def _v2_infer(channel: grpc.Channel):
    """The Open Inference Protocol's ModelInfer on ``channel`` (its other tests use tritonclient: test_serving_v2.py)."""
    return channel.unary_unary(
        "/inference.GRPCInferenceService/ModelInfer",
        request_serializer=v2_pb.ModelInferRequest.SerializeToString,
        response_deserializer=v2_pb.ModelInferResponse.FromString,
    )


def _v2_request(name: str, alias: str, array: np.ndarray) -> v2_pb.ModelInferRequest:
    request = v2_pb.ModelInferRequest(model_name=name)
    request.inputs.add(name=alias, datatype="FP32", shape=array.shape)
    request.raw_input_contents.append(array.astype("<f4").tobytes())
    return request


def _v2_output(response: v2_pb.ModelInferResponse) -> np.ndarray:
    return np.frombuffer(response.raw_output_contents[0], "<f4").reshape(response.outputs[0].shape)


def _predict_request(name: str, arrays: dict, signature: str = "", version: int | None = None, outputs=()):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    for alias, array in arrays.items():
        request.inputs[alias].CopyFrom(tf.make_tensor_proto(array))
    request.output_filter.extend(outputs)
    return request


# -- TF Serving's own cases (tensorflow_model_server_test.py), on half_plus_two as `default` version 123 -------------


def test_grpc_predict_half_plus_two(stub):
    for outputs in ((), ("y",)):
        request = _predict_request("default", {"x": np.array([2.0], np.float32)}, outputs=outputs)
        response = stub.Predict(request, RPC_TIMEOUT)
        assert list(response.outputs["y"].float_val) == [3.0]  # Typed field, as official clients read it.
        assert response.model_spec.name == "default"
        assert response.model_spec.signature_name == "serving_default"
        assert response.model_spec.version.value == 123
    # Inputs in the typed fields rather than tensor_content, as hand-built requests carry them.
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "default"
    request.model_spec.version.value = 123
    tensor = request.inputs["x"]
    tensor.dtype = tf.float32.as_datatype_enum
    tensor.tensor_shape.dim.add(size=3)
    tensor.float_val.extend([2.0, 3.0, 4.0])
    assert list(stub.Predict(request, RPC_TIMEOUT).outputs["y"].float_val) == [3.0, 3.5, 4.0]


def test_grpc_classify_regress_multi_inference(stub):
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "default"
    request.model_spec.signature_name = "classify_x_to_y"
    request.input.example_list.examples.add().features.feature["x"].float_list.value.extend([2.0])
    result = stub.Classify(request, RPC_TIMEOUT)
    assert len(result.result.classifications) == 1 and len(result.result.classifications[0].classes) == 1
    assert result.result.classifications[0].classes[0].score == 3.0
    assert (result.model_spec.name, result.model_spec.signature_name, result.model_spec.version.value) == (
        "default",
        "classify_x_to_y",
        123,
    )

    request = regression_pb2.RegressionRequest()
    request.model_spec.name = "default"
    request.model_spec.signature_name = "regress_x_to_y"
    request.input.example_list.examples.add().features.feature["x"].float_list.value.extend([2.0])
    result = stub.Regress(request, RPC_TIMEOUT)
    assert [item.value for item in result.result.regressions] == [3.0]
    assert result.model_spec.signature_name == "regress_x_to_y" and result.model_spec.version.value == 123

    request = inference_pb2.MultiInferenceRequest()
    for signature, method in (("regress_x_to_y", "regress"), ("classify_x_to_y", "classify")):
        task = request.tasks.add()
        task.model_spec.name = "default"
        task.model_spec.signature_name = signature
        task.method_name = f"tensorflow/serving/{method}"
    request.input.example_list.examples.add().features.feature["x"].float_list.value.extend([2.0])
    result = stub.MultiInference(request, RPC_TIMEOUT)
    assert len(result.results) == 2
    assert result.results[0].regression_result.regressions[0].value == 3.0
    assert result.results[1].classification_result.classifications[0].classes[0].score == 3.0
    for index, signature in enumerate(("regress_x_to_y", "classify_x_to_y")):
        assert result.results[index].model_spec.signature_name == signature
        assert result.results[index].model_spec.version.value == 123


def test_grpc_model_status_and_metadata(channel, stub):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "default"
    result = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, RPC_TIMEOUT)
    assert len(result.model_version_status) == 1
    assert result.model_version_status[0].version == 123
    assert result.model_version_status[0].status.error_code == 0

    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "default"
    request.metadata_field.append("signature_def")
    result = stub.GetModelMetadata(request, RPC_TIMEOUT)
    assert result.model_spec.name == "default" and result.model_spec.version.value == 123
    assert list(result.metadata) == ["signature_def"]
    signatures = get_model_metadata_pb2.SignatureDefMap()
    assert result.metadata["signature_def"].Unpack(signatures)
    assert signatures.signature_def["serving_default"].inputs["x"].name == "x:0"


def test_rest_predict_classify_regress(rest):
    # TF Serving's test client posts with urllib's default form content type; the type is not checked.
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    response = rest("POST", "/v1/models/default:predict", {"instances": [2.0, 3.0, 4.0]}, headers=form)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("application/json")
    assert response.json() == {"predictions": [3.0, 3.5, 4.0]}
    assert rest("POST", "/v1/models/default:predict", {"inputs": [2.0, 3.0, 4.0]}).json() == {
        "outputs": [3.0, 3.5, 4.0]
    }
    body = {"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]}
    assert rest("POST", "/v1/models/default:classify", body).json() == {"results": [[["", 3.0]]]}
    body = {"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}]}
    assert rest("POST", "/v1/models/default:regress", body).json() == {"results": [3.0]}
    # The context's features reach every example (regress_x2_to_y3 reads x2, a float input of its own).
    body = {"signature_name": "regress_x_to_y", "context": {"x": 4.0}, "examples": [{}, {"x": 2.0}]}
    assert rest("POST", "/v1/models/default/versions/123:regress", body).json() == {"results": [4.0, 3.0]}


def test_rest_status_metadata_and_metrics(rest):
    assert rest("GET", "/v1/models/default").json() == {
        "model_version_status": [
            {"version": "123", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        ]
    }
    assert rest("GET", "/v1/models/default/versions/123").json()["model_version_status"][0]["version"] == "123"
    expected = json.loads(METADATA_JSON.read_text())
    assert rest("GET", "/v1/models/default/metadata").json() == expected  # TF Serving's own expected file.
    scraped = rest("GET", "/monitoring/prometheus/metrics")
    assert scraped.status_code == 200 and "# TYPE" in scraped.text
    assert re.search(
        r'tf1infer_serving_requests_total\{api="rest",code="OK",method="predict",model="default"\} \d', scraped.text
    )


def test_rest_number_formatting_strings_and_gzip(rest):
    # Six significant digits where they read back as the same float32, else nine; whole numbers keep '.0'.
    body = {"inputs": [[0.2], [1e-7], [1 / 3], [float("nan")], [float("inf")]]}
    text = rest("POST", "/v1/models/default:predict", json.dumps(body)).text
    assert text == '{"outputs":[[2.1],[2.0],[2.16666675],[NaN],[Infinity]]}'
    packed = gzip.compress(json.dumps({"instances": [2.0]}).encode())
    response = rest("POST", "/v1/models/default:predict", packed, headers={"Content-Encoding": "gzip"})
    assert response.json() == {"predictions": [3.0]}
    # A serialized tf.Example as {"b64": ...} into the classify signature's string input, through predict.
    example = tf.train.Example()
    example.features.feature["x"].float_list.value.append(6.0)
    encoded = base64.b64encode(example.SerializeToString()).decode()
    body = {"signature_name": "classify_x_to_y", "instances": [{"b64": encoded}]}
    assert rest("POST", "/v1/models/default:predict", body).json() == {"predictions": [[5.0]]}


# -- every format, REST and gRPC, equal to predict on the same rows -------------------------------------------------


def _rows(predictor, seed: int = 0) -> list[np.ndarray]:
    """Verification rows: random rows plus what the layers treat specially (image ranges, table ends)."""
    batches = verification_batches(predictor.inputs, np.random.default_rng(seed), random_rows=4)
    return batches[0]


@pytest.mark.parametrize("name", ["cnn", "xception", "keras1", "two", "frozen", "meta"])
def test_every_format_answers_rest_and_grpc_like_predict(name, rest, stub, predictors):
    predictor = predictors[name]
    arrays = _rows(predictor)
    want = predictor.predict(arrays if len(arrays) > 1 else arrays[0])
    want = dict(zip(predictor.output_names, want if isinstance(want, list) else [want]))
    names = predictor.input_names
    # Row format, one request per row (as clients send single samples), and columnar, all rows at once.
    rows = [
        {alias: array[row].tolist() for alias, array in zip(names, arrays)}
        if len(names) > 1
        else arrays[0][row].tolist()
        for row in range(len(arrays[0]))
    ]
    got_rows = []
    for row in rows:
        answer = rest("POST", f"/v1/models/{name}:predict", {"instances": [row]})
        assert answer.status_code == 200, answer.text
        got_rows.append(answer.json()["predictions"][0])
    columnar = rest("POST", f"/v1/models/{name}:predict", {"inputs": dict(zip(names, [a.tolist() for a in arrays]))})
    assert columnar.status_code == 200, columnar.text
    outputs = columnar.json()["outputs"]
    response = stub.Predict(_predict_request(name, dict(zip(names, arrays))), RPC_TIMEOUT)
    for alias, expected in want.items():
        from_rows = np.array([row[alias] if len(want) > 1 else row for row in got_rows])
        from_columns = np.array(outputs[alias] if len(want) > 1 else outputs)
        np.testing.assert_allclose(from_rows, expected, atol=EXACT, rtol=0)
        np.testing.assert_allclose(from_columns, expected, atol=EXACT, rtol=0)
        served = tf.make_ndarray(response.outputs[alias])
        assert served.dtype == expected.dtype and served.shape == expected.shape
        np.testing.assert_allclose(served, expected, atol=EXACT, rtol=0)
    if name in ("frozen", "meta"):  # And the TF1 fixtures' own formula.
        for alias, expected in tf1_formula(arrays[0].astype(np.float64)).items():
            np.testing.assert_allclose(tf.make_ndarray(response.outputs[alias]), expected, atol=1e-5)


def test_concurrent_single_sample_clients_get_their_own_rows(server, predictors):
    """32 gRPC clients at once, one image each: gathered into batches, each answered with its own row."""
    predictor = predictors["xception"]
    images = np.random.default_rng(3).uniform(0, 255, (64, 64, 64, 1)).astype(np.float32)
    want = predictor.predict(images)
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        calls = [
            stub.Predict.future(_predict_request("xception", {"input_1": image[None]}), RPC_TIMEOUT) for image in images
        ]
        got = np.concatenate([tf.make_ndarray(call.result().outputs["predictions"]) for call in calls])
    np.testing.assert_allclose(got, want, atol=EXACT, rtol=0)
    rows = server.metrics.registry.get_sample_value(
        "tf1infer_serving_batch_size_sum", {"model": "xception", "version": "1"}
    )
    assert rows >= 64  # Every row went through the micro-batcher.


def test_the_serving_bench_client_measures_a_live_server(server, predictors, tmp_path):
    """make bench-tf1's load generator, briefly, against every API of the server (TF Serving's, the Open Inference
    Protocol's): it counts requests and gets predict's answer."""
    from tf1infer.bench.serving import SERVE_APIS, run_client, serving_md

    sample = np.random.default_rng(4).uniform(0, 255, (1, 16, 16, 3)).astype(np.float32)
    np.save(tmp_path / "sample.npy", sample)
    want = predictors["cnn"].predict(sample)
    records = []
    for api in SERVE_APIS:
        port = server.grpc_port if api.endswith("grpc") else server.rest_port
        record = run_client(api, port, "input_1", str(tmp_path / "sample.npy"), 2, 0.3, model="cnn")
        assert record["requests"] > 0 and record["p99_ms"] >= record["p50_ms"] > 0 and record["client_cpu_s"] >= 0
        np.testing.assert_allclose(np.array(record.pop("first")).reshape(want.shape), want, atol=EXACT, err_msg=api)
        records.append({"model": "cnn", "callers": 2, "api": api, **record})
    table = serving_md(records)
    assert "| cnn | 2 | - |" in table and f"{records[0]['requests_per_second']:,.0f}" in table
    v2_row = next(line for line in table.splitlines() if line.startswith("| cnn | 2 |") and line.count("|") == 10)
    assert "error" not in v2_row and " - |" not in v2_row.split("|", 3)[3], v2_row


# -- bad requests: the documented status, a JSON error, and the next good request answered -------------------------

# (method, path, body, status, words in the error). TF Serving's malformed URLs first (http_rest_api_handler_test.cc).
MALFORMED_URLS = [
    ("GET", "/v1/foo", "", 400, "Malformed request: GET /v1/foo"),
    ("POST", "/v1/foo", "", 400, "Malformed request: POST /v1/foo"),
    ("GET", "/v1/models", "", 400, "Missing model name in request."),
    ("GET", "/v1/models/debug/model_name", "", 400, "Malformed request"),
    ("POST", "/v1/models", "", 400, "Malformed request"),
    ("GET", "/v1/models/foo:predict", "", 400, "Malformed request"),
    ("GET", "/v1/models/foo/version/50:predict", "", 400, "Malformed request"),
    ("POST", "/v1/models/foo/version/50:regress", "", 400, "Malformed request"),
    ("POST", "/v1/models/foo/versions/HELLO:regress", "", 400, "Malformed request"),
    ("POST", f"/v1/models/foo/versions/{2**64 - 1}:regress", "", 400, "Failed to convert version"),
    ("POST", "/v1/models/foo/metadata", "", 400, "Malformed request"),
    ("POST", "/v1/models/foo/label/some_label:regress", "", 400, "Malformed request"),
    ("POST", "/v1/models/foo/versions/50/labels/some_label:regress", "", 400, "Malformed request"),
    ("POST", "/v1/models/foo/versions/some_label:regress", "", 400, "Malformed request"),
    ("PUT", "/v1/models/default:predict", "{}", 400, "Malformed request: PUT"),
    ("DELETE", "/v1/models/default", "", 400, "Malformed request: DELETE"),
    ("GET", "/", "", 400, "Malformed request: GET /"),
    (
        "GET",
        "/v3/models/default",
        "",
        400,
        "Malformed request",
    ),  # /v2: the Open Inference Protocol (test_serving_v2.py).
    ("POST", "/v1/models/default:explain", "{}", 400, "Malformed request"),
    ("POST", "/v1/models/default:predict/extra", "{}", 400, "Malformed request"),
    ("GET", "/v1/models/default/metadata/extra", "", 400, "Malformed request"),
    ("POST", "/v1/models/default/versions/-1:predict", "{}", 400, "Malformed request"),
    ("GET", "/v1/models/../../etc/passwd", "", 400, "Malformed request"),
    ("POST", "/v1//models/default:predict", "{}", 400, "Malformed request"),
]
# Unknown models, versions, labels, signatures.
UNKNOWN = [
    ("POST", "/v1/models/foo:predict", '{"instances": [1]}', 404, "Servable not found for request: Latest(foo)"),
    ("POST", "/v1/models/foo/versions/50:predict", '{"instances": [1]}', 404, "Specific(foo, 50)"),
    ("POST", "/v1/models/default99:predict", '{"instances": [1]}', 404, "Servable not found"),
    ("POST", "/v1/models/default/versions/124:predict", '{"instances": [1]}', 404, "Specific(default, 124)"),
    ("GET", "/v1/models/foo", "", 404, "Servable not found for request: Latest(foo)"),
    ("GET", "/v1/models/default/versions/1", "", 404, "Specific(default, 1)"),
    ("GET", "/v1/models/foo/metadata", "", 404, "Servable not found"),
    (
        "POST",
        "/v1/models/default/labels/nope:predict",
        '{"instances": [1.0]}',
        400,
        "Unrecognized servable version label",
    ),
    ("GET", "/v1/models/default/labels/nope", "", 400, "Unrecognized servable version label"),
    (
        "POST",
        "/v1/models/default:predict",
        '{"signature_name": "nope", "instances": [1.0]}',
        400,
        'Serving signature name: "nope" not found',
    ),
    (
        "POST",
        "/v1/models/cnn:predict",
        '{"signature_name": "classify_x_to_y", "instances": [1.0]}',
        400,
        "not found in signature def",
    ),
    (
        "POST",
        "/v1/models/default:classify",
        '{"examples": [{"x": 2.0}]}',
        400,
        "Expected classification signature method_name",
    ),
    (
        "POST",
        "/v1/models/default:regress",
        '{"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]}',
        400,
        "Expected regression signature",
    ),
    ("POST", "/v1/models/cnn:classify", '{"examples": [{"x": 2.0}]}', 400, "Expected classification signature"),
]
# Bodies TF Serving refuses.
BAD_BODIES = [
    ("", "JSON Parse error: The document is empty"),
    ("   ", "JSON Parse error: The document is empty"),
    ("instances = [1, 2]", "JSON Parse error: Invalid value"),
    ('{"instances": [1, 2]', "JSON Parse error"),
    ('{"instances": [1, 2]]}', "JSON Parse error"),
    ('{"instances": [1, 2], }', "JSON Parse error"),
    ("{'instances': [1]}", "JSON Parse error"),
    ('{"instances": [1.0}', "JSON Parse error"),
    ('{"instances": [1.0]} trailing', "JSON Parse error"),
    ('{"instances": ["unterminated]}', "JSON Parse error"),
    ("\xff\xfe{}", "JSON Parse error"),
    ("[1, 2, 3]", "Is not object"),
    ('"instances"', "Is not object"),
    ("3.0", "Is not object"),
    ("null", "Is not object"),
    ("{}", "Missing 'inputs' or 'instances' key"),
    ('{"instance": [1.0]}', "Missing 'inputs' or 'instances' key"),
    ('{"instances": [1.0], "inputs": [1.0]}', "expecting only one of 'inputs' or 'instances'"),
    ('{"instances": 1.0}', "Expecting 'instances' to be an list/array"),
    ('{"instances": {"x": [1.0]}}', "Expecting 'instances' to be an list/array"),
    ('{"instances": []}', "No values in 'instances' array"),
    ('{"signature_name": 100, "instances": [1.0]}', "'signature_name' key must be a string value."),
    ('{"signature_name": ["serving_default"], "instances": [1.0]}', "'signature_name' key must be a string value."),
    ('{"signature_name": null, "instances": [1.0]}', "'signature_name' key must be a string value."),
    ('{ "instances": ["x", "y"] }', "not of expected type: float"),
    ('{"instances": [true]}', "not of expected type: float"),
    ('{"instances": [1.0, false]}', "not of expected type: float"),
    ('{"instances": [null]}', "not of expected type: float"),
    ('{"instances": [1.0, null]}', "not of expected type: float"),
    ('{"instances": [{"b64": "AAAA"}]}', "not of expected type: float"),
    ('{"instances": [[1.0], [2.0, 3.0]]}', "Encountered list at unexpected size"),
    ('{"instances": [[1.0], 2.0]}', "Encountered list at unexpected"),
    ('{"instances": [1.0, [2.0]]}', "Encountered list at unexpected"),
    ('{"instances": [[[1.0]], [2.0]]}', "Encountered list at unexpected"),
    ('{"instances": [{"x": 1.0}, 2.0]}', "at item 1 of input list"),
    ('{"instances": [2.0, {"x": 1.0}]}', "at item 1 of input list"),
    ('{"instances": [{"y": 1.0}]}', "keys must be equal to: x"),
    ('{"instances": [{"x": 1.0, "z": 2.0}]}', "keys must be equal to: x"),
    ('{"inputs": {"y": [1.0]}}', "Missing named input: x in 'inputs' object."),
    ('{"inputs": {"x": [1.0], "z": [1.0]}}', "input size does not match signature"),
    ('{"inputs": "text"}', "not of expected type: float"),
    ('{"inputs": {"b64": "AAAA"}}', "not of expected type: float"),
    ('{"inputs": [[1.0, 2.0], [3.0]]}', "Encountered list at unexpected size"),
    ('{"inputs": [' + "[" * 2000 + "1.0" + "]" * 2000 + "]}", "JSON Parse error"),
    ('{"instances": [' + "[" * 70 + "1.0" + "]" * 70 + "]}", "input 'x'"),
    ('{"instances": [1e400]}', "JSON Parse error"),
    ('{"signature_name": "classify_x_to_y", "instances": ' + "[" * 990 + '"a"' + "]" * 990 + "}", "nests too deeply"),
    ('{"signature_name": "classify_x_to_y", "instances": [["a"], "b"]}', "Encountered list at unexpected"),
    (
        '{"signature_name": "classify_x_to_y", "instances": [{"b64": "not base64!"}]}',
        "not formatted correctly for base64",
    ),
    ('{"signature_name": "classify_x_to_y", "instances": [1]}', "not of expected type: string"),
    ('{"inputs": {"x": [1.0], "z": ["not a number"]}}', "Sent extra: {z}"),
]
# Multi-input and typed models: names, shapes, types.
MODEL_BODIES = [
    ("two", '{"instances": [[1, 2, 3, 4, 5, 6]]}', "instances is a plain list, but expecting list of objects"),
    ("two", '{"inputs": [[1, 2, 3, 4, 5, 6]]}', "inputs is a plain value/list, but expecting an object"),
    ("two", '{"instances": [{"features": [1, 2, 3, 4, 5, 6]}]}', "keys must be equal to: features,extra"),
    ("two", '{"inputs": {"features": [[1, 2, 3, 4, 5, 6]]}}', "Missing named input: extra"),
    (
        "two",
        '{"inputs": {"features": [[1, 2, 3, 4, 5, 6]], "extra": [[1, 2]]}}',
        "input 'extra' (extra:0) expects shape [-1,3]",
    ),
    ("two", '{"inputs": {"features": [[1, 2, 3, 4, 5, 6]], "extra": [1, 2, 3]}}', "expects shape [-1,3]; got [3]"),
    (
        "two",
        '{"inputs": {"features": [[1, 2, 3, 4, 5, 6]], "extra": [[1, 2, 3]], "more": [1]}}',
        "input size does not match",
    ),
    ("two", '{"instances": [{"features": [1, 2, 3, 4, 5, 6], "extra": [1, 2, "3"]}]}', "not of expected type: float"),
    ("cnn", '{"instances": [[1, 2]]}', "input 'input_1' (input_1:0) expects shape [-1,16,16,3]; got [1,2]"),
    ("cnn", '{"instances": [1.0]}', "expects shape [-1,16,16,3]; got [1]"),
    ("cnn", '{"inputs": 1.0}', "expects shape [-1,16,16,3]; got []"),
    ("xception", '{"instances": [[[1.0]]]}', "expects shape [-1,64,64,1]"),
    ("frozen", '{"instances": [[1, 2]]}', "expects shape"),
    ("meta", '{"instances": [["a", "b", "c", "d"]]}', "not of expected type: float"),
    ("keras1", '{"instances": [1]}', "instances is a plain list, but expecting list of objects"),
    ("keras1", '{"instances": [{"image": 1, "meta": [1, 2, 3]}]}', "expects shape [-1,3,10,10]; got [1]"),
]


@pytest.mark.parametrize(
    "method, path, body, status, words",
    MALFORMED_URLS
    + UNKNOWN
    + [("POST", "/v1/models/default:predict", body, 400, words) for body, words in BAD_BODIES]
    + [("POST", f"/v1/models/{name}:predict", body, 400, words) for name, body, words in MODEL_BODIES],
)
def test_bad_request_gets_its_status_and_the_next_good_one_is_answered(rest, method, path, body, status, words):
    answer = rest(method, path, body.encode("latin-1") if body.startswith("\xff") else body)
    assert answer.status_code == status, answer.text
    assert answer.headers["Content-Type"].startswith("application/json")
    assert words in answer.json()["error"], answer.json()
    good = rest("POST", "/v1/models/default:predict", {"instances": [2.0]})
    assert good.status_code == 200 and good.json() == {"predictions": [3.0]}


def test_bad_grpc_requests_get_their_codes(stub, channel):
    cases = [
        (_predict_request("foo", {"x": np.array([1.0], np.float32)}), grpc.StatusCode.NOT_FOUND, "Latest(foo)"),
        (
            _predict_request("default", {"x": np.array([1.0], np.float32)}, version=7),
            grpc.StatusCode.NOT_FOUND,
            "Specific(default, 7)",
        ),
        (
            _predict_request("default", {"x": np.array([1.0], np.float32)}, signature="nope"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "not found in signature def",
        ),
        (
            _predict_request("default", {"x": np.array([1.0], np.float64)}),
            grpc.StatusCode.INVALID_ARGUMENT,
            "Expects arg[0] to be float but double is provided",
        ),
        (
            _predict_request("default", {"z": np.array([1.0], np.float32)}),
            grpc.StatusCode.INVALID_ARGUMENT,
            "input tensor alias not found in signature: z",
        ),
        (_predict_request("default", {}), grpc.StatusCode.INVALID_ARGUMENT, "Missing but required: {x}"),
        (
            _predict_request("default", {"x": np.array([1.0], np.float32)}, outputs=["nope"]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "output tensor alias not found",
        ),
        (
            _predict_request("cnn", {"input_1": np.zeros((1, 16, 16), np.float32)}),
            grpc.StatusCode.INVALID_ARGUMENT,
            "expects shape [-1,16,16,3]",
        ),
        (
            _predict_request("two", {"features": np.zeros((2, 6), np.float32), "extra": np.zeros((3, 3), np.float32)}),
            grpc.StatusCode.INVALID_ARGUMENT,
            "",
        ),
        (predict_pb2.PredictRequest(), grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec"),
    ]
    huge = _predict_request("default", {"x": np.array([1.0], np.float32)})
    huge.inputs["x"].tensor_shape.dim[0].size = 10**12  # A few bytes declaring four terabytes.
    cases.append((huge, grpc.StatusCode.INVALID_ARGUMENT, "more than the server's limit"))
    for request, code, words in cases:
        with pytest.raises(grpc.RpcError) as raised:
            stub.Predict(request, RPC_TIMEOUT)
        assert raised.value.code() == code and words in raised.value.details(), raised.value.details()
        good = stub.Predict(_predict_request("default", {"x": np.array([2.0], np.float32)}), RPC_TIMEOUT)
        assert list(good.outputs["y"].float_val) == [3.0]
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "default"
    with pytest.raises(grpc.RpcError) as raised:
        stub.GetModelMetadata(request, RPC_TIMEOUT)
    assert "at least one metadata_field" in raised.value.details()
    request.metadata_field.append("other")
    with pytest.raises(grpc.RpcError) as raised:
        stub.GetModelMetadata(request, RPC_TIMEOUT)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_oversized_bodies_are_refused_413(tmp_path):
    small = Server(
        [ModelConfig("default", str(HALF_PLUS_TWO))],
        rest_port=0,
        grpc_port=0,
        limits=Limits(max_request_bytes=64 * 1024),
        out=io.StringIO(),
    ).start_in_thread()
    try:
        url = f"http://127.0.0.1:{small.rest_port}/v1/models/default:predict"
        big = json.dumps({"instances": [1.0] * 40000})
        answer = requests.post(url, data=big, timeout=RPC_TIMEOUT)
        assert answer.status_code == 413 and "larger than the server's limit of 65536" in answer.json()["error"]
        bomb = gzip.compress(big.encode())  # 2 kB that inflate past the limit.
        answer = requests.post(url, data=bomb, headers={"Content-Encoding": "gzip"}, timeout=RPC_TIMEOUT)
        assert answer.status_code == 413
        assert requests.post(url, data='{"instances": [2.0]}', timeout=RPC_TIMEOUT).json() == {"predictions": [3.0]}
        with grpc.insecure_channel(f"127.0.0.1:{small.grpc_port}") as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            with pytest.raises(grpc.RpcError) as raised:
                stub.Predict(_predict_request("default", {"x": np.zeros(40000, np.float32)}), RPC_TIMEOUT)
            assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        small.stop()


def test_full_queue_answers_503_at_once_and_deadlines_504(predictors):
    """4 requests may wait: of 40 sent at once, the rest are refused at once; the accepted ones all answer right."""
    busy = Server(
        [ModelConfig("xception", str(XCEPTION))],
        rest_port=0,
        grpc_port=0,
        batching=Batching(max_batch_size=1, max_queued_requests=4),
        limits=Limits(timeout=0.05),
        out=io.StringIO(),
    ).start_in_thread()
    try:
        images = np.random.default_rng(5).uniform(0, 1, (40, 64, 64, 64, 1)).astype(np.float32)
        with grpc.insecure_channel(f"127.0.0.1:{busy.grpc_port}") as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            started = time.perf_counter()
            done_at: dict[int, float] = {}
            calls = []
            for index, batch in enumerate(images):
                call = stub.Predict.future(_predict_request("xception", {"input_1": batch}), RPC_TIMEOUT)
                call.add_done_callback(lambda _, index=index: done_at.setdefault(index, time.perf_counter() - started))
                calls.append(call)
            refused, answered = [], []
            for index, call in enumerate(calls):
                try:
                    answered.append((index, tf.make_ndarray(call.result().outputs["predictions"])))
                except grpc.RpcError as exc:
                    assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc.details()
                    assert "queue" in exc.details()
                    refused.append(index)
        assert refused and len(answered) >= 5, (len(refused), len(answered))
        for index, got in answered:  # The queued requests ran, unharmed by the refusals.
            np.testing.assert_allclose(got, predictors["xception"].predict(images[index]), atol=EXACT, rtol=0)
        # Refused at once: a refusal never waited for the queue to move (its median wait is below an answer's).
        assert np.median([done_at[index] for index in refused]) < np.median([done_at[index] for index, _ in answered])
        # The same over the Open Inference Protocol's gRPC API: UNAVAILABLE at once, the accepted ones right.
        with grpc.insecure_channel(f"127.0.0.1:{busy.grpc_port}") as channel:
            infer = _v2_infer(channel)
            calls = [infer.future(_v2_request("xception", "input_1", batch), RPC_TIMEOUT) for batch in images]
            refused, answered = [], []
            for index, call in enumerate(calls):
                try:
                    answered.append((index, _v2_output(call.result())))
                except grpc.RpcError as exc:
                    assert exc.code() == grpc.StatusCode.UNAVAILABLE and "queue" in exc.details(), exc.details()
                    refused.append(index)
        assert refused and len(answered) >= 5, (len(refused), len(answered))
        for index, got in answered:
            np.testing.assert_allclose(got, predictors["xception"].predict(images[index]), atol=EXACT, rtol=0)
        # A REST request still waiting past its deadline (50 ms here) is answered 504; the run goes on unharmed.
        url = f"http://127.0.0.1:{busy.rest_port}/v1/models/xception:predict"
        many = {"inputs": np.zeros((128, 64, 64, 1), np.float32).tolist()}
        answer = requests.post(url, data=json.dumps(many), timeout=RPC_TIMEOUT)
        assert answer.status_code == 504 and "deadline" in answer.json()["error"]
        # V2 REST too (Triton's binary tensor extension): 504, and a full queue's 503.
        header = json.dumps({"inputs": [{"name": "input_1", "shape": [128, 64, 64, 1], "datatype": "FP32",
                                         "parameters": {"binary_data_size": 128 * 64 * 64 * 4}}]}).encode()  # fmt: skip
        body = header + np.zeros((128, 64, 64, 1), "<f4").tobytes()
        v2_url = f"http://127.0.0.1:{busy.rest_port}/v2/models/xception/infer"
        headers = {"Inference-Header-Content-Length": str(len(header))}
        answer = requests.post(v2_url, data=body, headers=headers, timeout=RPC_TIMEOUT)
        assert answer.status_code == 504 and "deadline" in answer.json()["error"], answer.text
        one = requests.post(url, data=json.dumps({"instances": images[0][:1].tolist()}), timeout=RPC_TIMEOUT)
        assert one.status_code in (200, 504)  # The big run may still hold the model.
    finally:
        busy.stop()


def test_batch_with_one_bad_request_fails_only_that_request():
    """An embedding id beyond the table passes the checks and fails in the kernel: its batch is re-run one by one."""
    path = ZOO_DIR / "embedding.h5"
    running = Server(
        [ModelConfig("embedding", str(path))],
        rest_port=None,
        grpc_port=0,
        batching=Batching(max_batch_size=64, batch_timeout_micros=50_000),
        out=io.StringIO(),
    ).start_in_thread()
    try:
        predictor = tf1infer.load(str(path))
        spec = predictor.inputs[0]
        rows = np.random.default_rng(0).integers(1, 50, (16, *spec.shape[1:])).astype(spec.dtype)
        bad = rows[:1].copy()
        bad[0, 0] = 10**6
        with grpc.insecure_channel(f"127.0.0.1:{running.grpc_port}") as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            name = predictor.input_names[0]
            calls = [
                stub.Predict.future(_predict_request("embedding", {name: row[None]}), RPC_TIMEOUT) for row in rows[:8]
            ]
            calls.insert(4, stub.Predict.future(_predict_request("embedding", {name: bad}), RPC_TIMEOUT))
            results = []
            for call in calls:
                try:
                    results.append(tf.make_ndarray(next(iter(call.result().outputs.values()))))
                except grpc.RpcError as exc:
                    results.append(exc)
        assert isinstance(results[4], grpc.RpcError) and results[4].code() == grpc.StatusCode.INVALID_ARGUMENT
        good = np.concatenate(results[:4] + results[5:])
        np.testing.assert_allclose(good, predictor.predict(rows[:8]), atol=EXACT, rtol=0)
        predictor.close()
    finally:
        running.stop()


# -- the command: start-up lines, failing fast, SIGTERM, flat memory ----------------------------------------------


def _serve(*args: str) -> tuple[subprocess.Popen, dict[str, int]]:
    """``tf1infer serve`` in a child; its ports, read from the start-up line."""
    child = subprocess.Popen(
        [sys.executable, "-m", "tf1infer", "serve", "--rest-port", "0", "--grpc-port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    lines = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            break
        lines.append(line)
        found = re.search(r"REST at http://127\.0\.0\.1:(\d+)/.*gRPC at 127\.0\.0\.1:(\d+)", line)
        if found:
            threading.Thread(target=lambda: lines.extend(child.stdout), daemon=True).start()
            return child, {"rest": int(found[1]), "grpc": int(found[2]), "lines": lines}
    child.kill()
    raise AssertionError("tf1infer serve did not start:\n" + "".join(lines))


def test_serve_fails_fast_on_a_model_that_does_not_load(tmp_path):
    broken = tmp_path / "broken.h5"
    broken.write_bytes((ZOO_DIR / "cnn.h5").read_bytes()[:5000])  # An upload cut short.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tf1infer",
            "serve",
            f"cnn={ZOO_DIR / 'cnn.h5'}",
            f"broken={broken}",
            "--rest-port",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    errors = [line for line in result.stderr.splitlines() if line.startswith("tf1infer: error:")]
    assert result.returncode == 2, result.stdout + result.stderr
    assert len(errors) == 1 and "cannot serve broken" in errors[0] and str(broken) in errors[0], result.stderr
    assert "loading cnn version 1" in result.stdout and "serving" not in result.stdout.split("loading broken")[-1]


def test_a_meta_graph_without_signatures_is_served_by_its_placeholders(tmp_path):
    """TF Serving's bad_half_plus_two has no signature_def: TF Serving answers FAILED_PRECONDITION for it. tf1infer
    loads a meta graph by its placeholders and sink ops, so it serves the graph under serving_default."""
    running = Server([ModelConfig("default", str(BAD_HALF_PLUS_TWO))], rest_port=0, grpc_port=None, out=io.StringIO())
    running.start_in_thread()
    try:
        base = f"http://127.0.0.1:{running.rest_port}/v1/models/default"
        metadata = requests.get(base + "/metadata", timeout=RPC_TIMEOUT).json()
        signature = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]
        assert signature["inputs"]["Placeholder"]["name"] == "Placeholder:0"
        assert signature["inputs"]["Placeholder"]["tensor_shape"]["unknown_rank"] is True
        answer = requests.post(base + ":predict", data='{"instances": [2.0, 4.0]}', timeout=RPC_TIMEOUT)
        assert answer.json() == {"predictions": [3.0, 4.0]}
        answer = requests.post(base + ":predict", data='{"signature_name": "x", "inputs": [2.0]}', timeout=RPC_TIMEOUT)
        assert answer.status_code == 400
    finally:
        running.stop()


@pytest.mark.skipif(not XCEPTION.is_file(), reason=CORPUS_ABSENT)
def test_memory_stays_flat_and_sigterm_answers_every_request_in_flight():
    """Both APIs, TF Serving's and the Open Inference Protocol's, in turn: 20,000 requests, then SIGTERM."""
    psutil = pytest.importorskip("psutil")
    child, ports = _serve(f"default={HALF_PLUS_TWO}", f"xception={XCEPTION}", "--max-batch-size", "4")
    try:
        process = psutil.Process(child.pid)
        url = f"http://127.0.0.1:{ports['rest']}/v1/models/default:predict"
        v2_url = f"http://127.0.0.1:{ports['rest']}/v2/models/default/infer"
        header = json.dumps({"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32",
                                         "parameters": {"binary_data_size": 4}}],
                             "parameters": {"binary_data_output": True}}).encode()  # fmt: skip
        v2_headers = {"Inference-Header-Content-Length": str(len(header))}
        v2_bodies = [header + np.float32(value).tobytes() for value in range(7)]

        async def send(count: int, clients: int = 16) -> None:
            import aiohttp

            async with aiohttp.ClientSession() as session:

                async def client(offset: int) -> None:
                    for index in range(offset, count, clients):
                        value = index % 7
                        if index % 2:  # Every other request over the Open Inference Protocol, binary tensors.
                            async with session.post(v2_url, data=v2_bodies[value], headers=v2_headers) as answer:
                                assert answer.status == 200
                                raw = await answer.read()
                                assert raw[-4:] == np.float32(0.5 * value + 2.0).tobytes()
                            continue
                        body = b'{"instances": [%d.0]}' % value
                        async with session.post(url, data=body) as answer:
                            assert answer.status == 200
                            assert await answer.json() == {"predictions": [0.5 * value + 2.0]}

                await asyncio.gather(*(client(offset) for offset in range(clients)))

        asyncio.run(send(2000))  # Warm-up.
        before = process.memory_info().rss
        asyncio.run(send(20000))
        after = process.memory_info().rss
        assert after - before < 24 * 2**20, f"RSS grew {(after - before) / 2**20:.1f} MiB over 20,000 requests"

        # One large request holds the model (2,048 images, a second or two); 64 single images queue behind it. All
        # 65 are in flight when SIGTERM comes; every one is answered, then the server exits 0.
        rng = np.random.default_rng(9)
        large = rng.uniform(0, 255, (2048, 64, 64, 1)).astype(np.float32)
        images = rng.uniform(0, 255, (64, 1, 64, 64, 1)).astype(np.float32)
        with grpc.insecure_channel(
            f"127.0.0.1:{ports['grpc']}", options=[("grpc.max_send_message_length", 64 * 2**20)]
        ) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            holder = stub.Predict.future(_predict_request("xception", {"input_1": large}), 120.0)
            metrics_url = f"http://127.0.0.1:{ports['rest']}/monitoring/prometheus/metrics"

            def in_flight() -> float:
                text = requests.get(metrics_url, timeout=RPC_TIMEOUT).text
                return float(re.search(r"^tf1infer_serving_requests_in_flight (\S+)$", text, re.M)[1])

            deadline = time.monotonic() + 60
            while in_flight() < 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            # Half over TF Serving's API, half over the Open Inference Protocol's.
            infer = _v2_infer(channel)
            calls = [
                stub.Predict.future(_predict_request("xception", {"input_1": image}), 120.0)
                if index % 2
                else infer.future(_v2_request("xception", "input_1", image), 120.0)
                for index, image in enumerate(images)
            ]
            seen = 0.0
            while seen < 65 and time.monotonic() < deadline:
                seen = in_flight()
            assert seen == 65 and not holder.done(), seen
            child.send_signal(signal.SIGTERM)
            answers = [
                tf.make_ndarray(call.result().outputs["predictions"]) if index % 2 else _v2_output(call.result())
                for index, call in enumerate(calls)
            ]
            held = tf.make_ndarray(holder.result().outputs["predictions"])
        assert child.wait(timeout=120) == 0, "".join(ports["lines"])
        with tf1infer.load(str(XCEPTION)) as reference:
            np.testing.assert_allclose(np.concatenate(answers), reference.predict(images[:, 0]), atol=EXACT, rtol=0)
            np.testing.assert_allclose(held, reference.predict(large), atol=EXACT, rtol=0)
        assert any("answering the 65 in flight" in line for line in ports["lines"]), ports["lines"]
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
