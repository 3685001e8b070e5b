"""Classify and Regress: ``tf.Example`` inputs for signatures that parse them, as TF Serving runs them.

A classify or regress signature takes one string tensor of serialized
``tf.Example`` protos (its graph parses them). Requests carry the examples as
JSON objects (REST: ``{"examples": [{"x": 2.0}], "context"?: {...}}``) or as
``Example`` protos (gRPC's ``Input``); the context's features are merged into
every example, as TF Serving does. Results: for classify, each example's
``(label, score)`` pairs from the signature's ``classes`` and ``scores``
outputs (a missing one gives empty labels or no scores); for regress, each
example's value from ``outputs``.

JSON features follow ``util/json_tensor.cc``: a JSON integer (or a boolean) is
an ``int64_list`` value, any other number a ``float_list`` value, a string or
``{"b64": ...}`` a ``bytes_list`` value; a feature is one value or a list of
values of one kind.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from tensorflow.core.example import example_pb2, feature_pb2

from tf1infer.serving.json_tensors import excerpt, float_tokens, json_type
from tf1infer.serving.models import CLASSIFY_METHOD, REGRESS_METHOD, Signature
from tf1infer.serving.status import invalid

CLASSIFY, REGRESS = "classify", "regress"
_METHODS = {CLASSIFY: CLASSIFY_METHOD, REGRESS: REGRESS_METHOD}


def examples_from_json(document: Mapping[str, Any], method: str) -> list[bytes]:
    """The serialized examples of a REST classify or regress request, the context merged into each."""
    context = None
    if "context" in document:
        context = _example_from_json(document["context"])
    if "examples" not in document:
        raise invalid(
            f"JSON Value: {excerpt(document)} When method is {method}, key 'examples' is expected and was not found"
        )
    examples = document["examples"]
    if not isinstance(examples, list):
        raise invalid(f"JSON Value: {excerpt(document)} Expecting 'examples' value to be an list/array")
    if not examples:
        raise invalid(f"JSON Value: {excerpt(document)} 'examples' value is an empty array")
    return [_merged(context, _example_from_json(item)) for item in examples]


def examples_from_input(request_input: Any) -> list[bytes]:
    """The serialized examples of a gRPC ``Input`` (an example list, or one with a context)."""
    kind = request_input.WhichOneof("kind")
    if kind == "example_list":
        examples, context = list(request_input.example_list.examples), None
    elif kind == "example_list_with_context":
        examples = list(request_input.example_list_with_context.examples)
        context = request_input.example_list_with_context.context
    else:
        raise invalid("Input is empty")
    if not examples:
        raise invalid("Input is empty")
    return [_merged(context, example) for example in examples]


def check_method(signature: Signature, method: str) -> None:
    """TF Serving's checks: the signature's method, and one string input."""
    expected = _METHODS[method]
    if signature.method_name != expected:
        kind = "classification" if method == CLASSIFY else "regression"
        raise invalid(f"Expected {kind} signature method_name to be {expected}. Was: {signature.method_name}")
    if len(signature.inputs) != 1 or signature.inputs[0].dtype.kind != "O":
        raise invalid("Expected one input Tensor.")


async def run_examples(
    signature: Signature, method: str, serialized: Sequence[bytes], timeout: float | None
) -> dict[str, np.ndarray]:
    """The signature's outputs for the examples, checked against what classify or regress needs."""
    check_method(signature, method)
    feed = np.empty(len(serialized), dtype=object)
    feed[:] = list(serialized)
    outputs = dict(zip(signature.output_aliases, await signature.run([feed], timeout)))
    rows = len(serialized)
    if method == CLASSIFY:
        classes, scores = outputs.get("classes"), outputs.get("scores")
        if classes is None and scores is None:
            raise invalid("Expected classification signature outputs to contain 'classes' or 'scores'")
        for name, array in (("classes", classes), ("scores", scores)):
            if array is not None and (array.ndim != 2 or array.shape[0] != rows):
                raise invalid(f"Expected Tensor shape: [{rows} N] but got {list(array.shape)} for '{name}'")
    else:
        values = outputs.get("outputs")
        if values is None:
            raise invalid("No output tensor named 'outputs' in the regression signature")
        if values.shape not in ((rows,), (rows, 1)):
            raise invalid(
                f"Expected output Tensor shape to be either [{rows}] or [{rows}, 1] but got {list(values.shape)}"
            )
    return outputs


def classifications(outputs: Mapping[str, np.ndarray]) -> list[list[tuple[str, float | None]]]:
    """Each example's ``(label, score)`` pairs."""
    classes, scores = outputs.get("classes"), outputs.get("scores")
    reference = scores if scores is not None else classes
    assert reference is not None  # run_examples checked.
    results = []
    for row in range(reference.shape[0]):
        count = reference.shape[1]
        labels = [_label(classes[row, k]) if classes is not None else "" for k in range(count)]
        values = [float(scores[row, k]) if scores is not None else None for k in range(count)]
        results.append(list(zip(labels, values)))
    return results


def classify_json(outputs: Mapping[str, np.ndarray]) -> str:
    """``{"results": [[[label, score], ...], ...]}``, scores written as TF Serving writes floats."""
    scores = outputs.get("scores")
    tokens = float_tokens(np.asarray(scores, dtype=np.float32)) if scores is not None else None
    rows = []
    for row, pairs in enumerate(classifications(outputs)):
        items = []
        for k, (label, _) in enumerate(pairs):
            score = tokens[row, k] if tokens is not None else "0.0"
            items.append(f"[{json.dumps(label)},{score}]")
        rows.append("[" + ",".join(items) + "]")
    return '{"results":[' + ",".join(rows) + "]}"


def regress_json(outputs: Mapping[str, np.ndarray]) -> str:
    """``{"results": [value, ...]}``."""
    values = np.asarray(outputs["outputs"], dtype=np.float32).reshape(-1)
    return '{"results":[' + ",".join(float_tokens(values).tolist()) + "]}"


def _label(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _merged(context: example_pb2.Example | None, example: example_pb2.Example) -> bytes:
    if context is None:
        return example.SerializeToString()
    merged = example_pb2.Example()
    merged.CopyFrom(context)
    for name, feature in example.features.feature.items():
        merged.features.feature[name].CopyFrom(feature)
    return merged.SerializeToString()


def _example_from_json(value: Any) -> example_pb2.Example:
    if not isinstance(value, dict):
        raise invalid(f"Example must be JSON object but got JSON {json_type(value)}")
    example = example_pb2.Example()
    for name, content in value.items():
        feature = feature_pb2.Feature()
        for item in content if isinstance(content, list) else [content]:
            _add_value(feature, name, item)
        example.features.feature[name].CopyFrom(feature)
    return example


def _add_value(feature: feature_pb2.Feature, name: str, value: Any) -> None:
    kind = feature.WhichOneof("kind")
    if value is None or isinstance(value, list) or (isinstance(value, dict) and set(value) != {"b64"}):
        raise invalid(f"Feature: {name} has element with unexpected JSON type: {json_type(value)}")
    if isinstance(value, bool) or isinstance(value, int):
        _expect(kind, "int64_list", name)
        if not -(2**63) <= int(value) < 2**63:
            raise invalid(f"Feature: {name} has uint64_t element. Only int64_t is supported.")
        feature.int64_list.value.append(int(value))
    elif isinstance(value, float):
        _expect(kind, "float_list", name)
        feature.float_list.value.append(value)
    elif isinstance(value, str):
        _expect(kind, "bytes_list", name)
        feature.bytes_list.value.append(value.encode("utf-8"))
    else:
        _expect(kind, "bytes_list", name)
        try:
            feature.bytes_list.value.append(base64.b64decode(value["b64"], validate=True))
        except (binascii.Error, ValueError, TypeError):
            raise invalid(f"JSON Value: {excerpt(value)} not formatted correctly for base64 data") from None


def _expect(kind: str | None, wanted: str, name: str) -> None:
    if kind is not None and kind != wanted:
        raise invalid(f"Unexpected element type in feature: {name} expecting type: {kind.split('_')[0]}")


__all__ = [
    "CLASSIFY",
    "REGRESS",
    "check_method",
    "classifications",
    "classify_json",
    "examples_from_input",
    "examples_from_json",
    "regress_json",
    "run_examples",
]
