"""TensorFlow Serving's REST JSON: request bodies to arrays, arrays to response bodies.

The rules are TF Serving's (``util/json_tensor.cc``, ``g3doc/api_rest.md``):

- A predict request holds ``instances`` (row format: each element is one row,
  rows stacked on a new first axis; with several inputs each row is an object
  keyed by input name) or ``inputs`` (columnar: the whole tensor, or an object
  of tensors), never both. ``signature_name`` must be a string.
- The dtype comes from the signature, not from the JSON: a float input takes
  any JSON number (``NaN``, ``Infinity``, ``-Infinity`` included), an integer
  input JSON integers only, a boolean input ``true``/``false``, a string input
  strings or ``{"b64": "..."}``.
- Floats are written with six significant digits where that reads back as
  the same float, else with all of them (9 for float32, 17 for float64);
  whole numbers keep a ``.0``; non-finite values are bare ``NaN`` and
  ``Infinity``. A string output whose name ends in ``_bytes`` is written as
  ``{"b64": ...}``.

Parsing uses orjson (several times faster than the standard library on
image-sized bodies); a body orjson refuses is read again with the standard
library, which accepts the bare ``NaN``/``Infinity`` TF Serving accepts, so
the error message a client sees for broken JSON is the standard library's
(with the offset). Arrays are built from the parsed lists with one NumPy
call; only a body that holds ``true``, ``false`` or ``null`` somewhere is
walked value by value (NumPy would turn them into numbers silently).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import orjson

from tf1infer.serving.status import ServingError, dtype_string, invalid

INSTANCES, INPUTS = "instances", "inputs"
# The standard library's parse errors in rapidjson's words, which TF Serving's clients and tests match on.
_RAPIDJSON_WORDS = {
    "Expecting value": "Invalid value.",
    "Extra data": "The document root must not be followed by other values.",
    "Expecting property name enclosed in double quotes": "Missing a name for object member.",
    "Expecting ':' delimiter": "Missing a colon after a name of object member.",
    "Expecting ',' delimiter": "Missing a comma or ']' after an array element.",
    "Unterminated string starting at": "Missing a closing quotation mark in string.",
    "Invalid control character at": "Invalid encoding in string.",
}
# Found anywhere in the body (even inside a string), they send the request through the value-by-value check.
_LITERALS = (b"true", b"false", b"null")


def parse_body(body: bytes) -> dict[str, Any]:
    """The request's JSON object, or INVALID_ARGUMENT in TF Serving's words."""
    if not body.strip():
        raise invalid("JSON Parse error: The document is empty")
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        try:
            document = json.loads(body, parse_float=_finite_float)
        except _TooBig:
            raise invalid("JSON Parse error: Number too big to be stored in double.") from None
        except json.JSONDecodeError as exc:
            reason = _RAPIDJSON_WORDS.get(exc.msg, exc.msg)
            raise invalid(f"JSON Parse error: {reason} at offset: {exc.pos}") from None
        except RecursionError:
            raise invalid("JSON Parse error: the document nests too deeply") from None
        except UnicodeDecodeError as exc:
            raise invalid(f"JSON Parse error: the document is not UTF-8 ({exc.reason})") from None
    if not isinstance(document, dict):
        raise invalid(f"JSON Value: {excerpt(document)} Is not object")
    return document


class _TooBig(ValueError):
    pass


def _finite_float(text: str) -> float:
    """A JSON number as a float; one beyond float64's range (``1e400``) is an error, as in rapidjson, not infinity."""
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise _TooBig(text)
    return value


def signature_name(document: Mapping[str, Any]) -> str:
    name = document.get("signature_name", "")
    if not isinstance(name, str):
        raise invalid(
            f"JSON Value: {excerpt(name)} not formatted correctly. 'signature_name' key must be a string value."
        )
    return name


def request_format(document: Mapping[str, Any]) -> str:
    """``"instances"`` (row format) or ``"inputs"`` (columnar): exactly one of the two keys."""
    has_instances, has_inputs = INSTANCES in document, INPUTS in document
    if has_instances and has_inputs:
        raise invalid(
            f"JSON Value: {excerpt(document)} Not formatted correctly expecting only one of 'inputs' or "
            "'instances' keys to exist "
        )
    if has_instances:
        if not isinstance(document[INSTANCES], list):
            raise invalid(f"JSON Value: {excerpt(document)} Expecting 'instances' to be an list/array")
        if not document[INSTANCES]:
            raise invalid(f"JSON Value: {excerpt(document)} No values in 'instances' array")
        return INSTANCES
    if has_inputs:
        return INPUTS
    raise invalid("Missing 'inputs' or 'instances' key")


# The fast path (see numeric_request): a body that is only {"instances": [...]} or {"inputs": [...]}.
_SIMPLE_BODY = re.compile(rb'\A\s*\{\s*"(instances|inputs)"\s*:\s*(\[.*\])\s*\}\s*\Z', re.S)
_NUMBER_CHARACTERS = b"0123456789.eE+- \t\n\r"
_SKELETONS: dict[tuple[int, ...], bytes] = {}


def simple_request(body: bytes) -> tuple[str, bytes] | None:
    """``(kind, the tensor's JSON text)`` where the body holds nothing but ``instances`` or ``inputs``, else None."""
    match = _SIMPLE_BODY.match(body)
    if match is None:
        return None
    return match[1].decode(), match[2]


def numeric_tensor(text: bytes, endpoint: Any) -> np.ndarray | None:
    """One float input's tensor read straight from its JSON text (the row list, or the columnar tensor), or None
    where the text is anything but a regular nested list of plain numbers of the input's row shape.

    Why: ``orjson`` then ``np.array`` on an image's nested lists builds thousands of Python lists (1.6 ms for one
    64x64 image here, most of a request's time). Here the brackets are checked against the exact nesting the
    shape has (commas included, so ragged rows never pass), and the numbers are parsed as one flat list (0.5 ms).
    Whatever does not pass (literals, strings, NaN, ragged rows, a number orjson refuses) takes the full parse,
    which gives TF Serving's errors.
    """
    shape = endpoint.shape
    if endpoint.dtype.kind != "f" or shape is None or not shape or None in shape[1:]:
        return None
    skeleton = text.translate(None, _NUMBER_CHARACTERS)
    if skeleton.strip(b"[],"):
        return None
    try:
        values = orjson.loads(b"[" + text.translate(None, b"[]") + b"]")
    except orjson.JSONDecodeError:
        return None
    per_row = int(np.prod(shape[1:], dtype=np.int64))
    if not values or per_row == 0 or len(values) % per_row:
        return None
    full_shape = (len(values) // per_row, *shape[1:])
    if skeleton != _skeleton(full_shape):
        return None
    return np.array(values).astype(endpoint.dtype, copy=False).reshape(full_shape)


def _skeleton(shape: tuple[int, ...]) -> bytes:
    """The brackets and commas of a JSON tensor of ``shape``: ``(2, 2)`` -> ``[[,],[,]]``."""
    known = _SKELETONS.get(shape)
    if known is None:
        inner = b"[" + b"," * max(shape[-1] - 1, 0) + b"]"
        for size in reversed(shape[:-1]):
            inner = b"[" + b",".join([inner] * size) + b"]"
        known = inner
        if len(_SKELETONS) > 256:  # A few row counts per model; bounded all the same.
            _SKELETONS.clear()
        _SKELETONS[shape] = known
    return known


def tensors_from_request(
    document: Mapping[str, Any], body: bytes, inputs: Sequence[Any], request_kind: str
) -> dict[str, np.ndarray]:
    """``{alias: array}`` for a predict request, each array of its input's dtype.

    Args:
        document: the parsed body.
        body: the raw body (only searched for JSON literals; see the module's notes).
        inputs: the signature's input endpoints (``alias``, ``dtype``).
        request_kind: :func:`request_format`'s answer.
    """
    strict = any(literal in body for literal in _LITERALS)
    names = [endpoint.alias for endpoint in inputs]
    dtypes = {endpoint.alias: endpoint.dtype for endpoint in inputs}
    if request_kind == INSTANCES:
        rows = document[INSTANCES]
        objects = [isinstance(row, dict) and not _is_b64(row) for row in rows]
        if any(objects) and not all(objects):
            index = objects.index(not objects[0])
            raise invalid(
                f"Expecting {'object' if objects[0] else 'value/list'} but got "
                f"{'list' if objects[0] else 'object'} at item {index} of input list"
            )
        if not objects[0]:
            if len(names) != 1:
                raise invalid(
                    "instances is a plain list, but expecting list of objects as multiple input tensors required "
                    "as per tensorinfo_map"
                )
            return {names[0]: _array(rows, dtypes[names[0]], names[0], strict)}
        columns: dict[str, list[Any]] = {name: [] for name in names}
        for index, row in enumerate(rows):
            if set(row) != set(names):
                raise invalid(
                    f"Failed to process element: {index} of 'instances' list. JSON object: {excerpt(row)} keys "
                    f"must be equal to: {','.join(names)}"
                )
            for name in names:
                columns[name].append(row[name])
        return {name: _array(column, dtypes[name], name, strict) for name, column in columns.items()}
    value = document[INPUTS]
    if isinstance(value, dict) and not _is_b64(value):
        for name in names:
            if name not in value:
                raise invalid(f"Missing named input: {name} in 'inputs' object.")
        # Keys the signature lacks reach the signature's own check, which names them (their values unread).
        return {
            name: _array(item, dtypes[name], name, strict) if name in dtypes else np.empty(0)
            for name, item in value.items()
        }
    if len(names) != 1:
        raise invalid(
            "inputs is a plain value/list, but expecting an object as multiple input tensors required as per "
            "tensorinfo_map"
        )
    return {names[0]: _array(value, dtypes[names[0]], names[0], strict)}


def _array(value: Any, dtype: np.dtype, name: str, strict: bool) -> np.ndarray:
    """One input's JSON value as an array of ``dtype``, refusing values TF Serving refuses for that dtype."""
    if dtype.kind == "O" or dtype.kind in "SU":
        try:
            return _string_array(value, name)
        except RecursionError:
            raise invalid(f"input '{name}': the value nests too deeply for a tensor") from None
    if strict:  # true, false or null somewhere: NumPy would take them as numbers (or objects) without a word.
        _refuse_first_not_taken(value, dtype, name)
    try:
        array = np.array(value)
    except ValueError:
        try:
            message = _ragged_message(value, name)
        except RecursionError:
            message = f"input '{name}': the value nests too deeply for a tensor"
        raise invalid(message) from None
    kind = array.dtype.kind
    if dtype.kind == "f":
        allowed = kind in "fiu"
    elif dtype.kind in "iu":
        allowed = kind in "iu"
    elif dtype.kind == "b":
        allowed = kind == "b"
    else:
        raise ServingError("UNIMPLEMENTED", f"input '{name}': JSON cannot carry {dtype} tensors")
    if not allowed or array.dtype.hasobject:
        _refuse_first_not_taken(value, dtype, name)
        raise invalid(f"input '{name}': the values do not form a {dtype_string(dtype)} tensor")
    if dtype.kind in "iu" and array.size:
        info = np.iinfo(dtype)
        low, high = array.min(), array.max()
        if low < info.min or high > info.max:
            raise invalid(f"input '{name}': values from {low} to {high} do not fit {dtype_string(dtype)}")
    return array.astype(dtype, copy=False)


def _string_array(value: Any, name: str) -> np.ndarray:
    """Strings (UTF-8 encoded) and ``{"b64": ...}`` values as an object array of bytes."""

    def convert(item: Any) -> Any:
        if isinstance(item, list):
            return [convert(element) for element in item]
        if isinstance(item, str):
            return item.encode("utf-8")
        if isinstance(item, dict) and _is_b64(item):
            try:
                return base64.b64decode(item["b64"], validate=True)
            except (binascii.Error, ValueError):
                raise invalid(f"JSON Value: {excerpt(item)} not formatted correctly for base64 data") from None
        raise invalid(
            f"JSON Value: {excerpt(item)} Type: {json_type(item)} is not of expected type: string (input '{name}')"
        )

    converted = convert(value)
    try:
        array = np.empty(_shape_of(converted, name), dtype=object)
    except ValueError as exc:
        raise invalid(f"input '{name}': {exc}") from None
    array[...] = converted  # Element by element: the shape was checked to match.
    return array


def _shape_of(value: Any, name: str) -> tuple[int, ...]:
    """The shape of nested lists, refusing ragged ones (TF Serving: 'Encountered list at unexpected size')."""
    shape: list[int] = []
    level = value
    while isinstance(level, list):
        shape.append(len(level))
        if not level:
            break
        level = level[0]

    def check(item: Any, depth: int) -> None:
        if depth == len(shape):
            if isinstance(item, list):
                raise invalid(f"input '{name}': Encountered list at unexpected level: {depth} expected < {depth}")
            return
        if not isinstance(item, list) or len(item) != shape[depth]:
            size = len(item) if isinstance(item, list) else "a value"
            raise invalid(
                f"input '{name}': Encountered list at unexpected size: {size} at level: {depth} "
                f"expected size: {shape[depth]}"
            )
        for element in item:
            check(element, depth + 1)

    check(value, 0)
    return tuple(shape)


def _refuse_first_not_taken(value: Any, dtype: np.dtype, name: str) -> None:
    """INVALID_ARGUMENT naming the first value in nested lists that a ``dtype`` input cannot take from JSON (a
    boolean for a number input, a number for a boolean one, null, a string, an object); linear in the values."""
    pending = [iter([value])]
    while pending:
        item = next(pending[-1], _END)
        if item is _END:
            pending.pop()
        elif isinstance(item, list):
            pending.append(iter(item))
        elif not _takes(dtype, item):
            raise invalid(
                f"JSON Value: {excerpt(item)} Type: {json_type(item)} is not of expected type: "
                f"{dtype_string(dtype)} (input '{name}')"
            )


_END = object()


def _takes(dtype: np.dtype, item: Any) -> bool:
    if isinstance(item, bool):
        return dtype.kind == "b"
    if dtype.kind == "f":
        return isinstance(item, (int, float))
    return dtype.kind in "iu" and isinstance(item, int)


def _ragged_message(value: Any, name: str) -> str:
    try:
        _shape_of(value, name)
    except ServingError as exc:
        return exc.message
    return f"input '{name}': the values do not form a tensor (rows of different shapes)"


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def json_type(value: Any) -> str:
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "Bool"
    if isinstance(value, (int, float)):
        return "Number"
    if isinstance(value, str):
        return "String"
    if isinstance(value, list):
        return "Array"
    return "Object"


def excerpt(value: Any, limit: int = 200) -> str:
    """A value as JSON, cut short: messages name what was sent without echoing (or even writing out) a whole image."""
    try:
        text = json.dumps(_shrunk(value, 3), allow_nan=True, default=str)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


# -- responses ---------------------------------------------------------------------------------------------------


def tensor_json(array: np.ndarray, name: str) -> str:
    """One tensor as TF Serving writes it (nested lists, its number formatting)."""
    return _nest(_tokens(array, name.endswith("_bytes")))


def predict_response(outputs: Mapping[str, np.ndarray], request_kind: str) -> str:
    """``{"predictions": ...}`` for a row-format request, ``{"outputs": ...}`` for a columnar one."""
    names = list(outputs)
    if request_kind == INPUTS:
        if len(names) == 1:
            return '{"outputs":' + tensor_json(outputs[names[0]], names[0]) + "}"
        parts = [json.dumps(name) + ":" + tensor_json(outputs[name], name) for name in names]
        return '{"outputs":{' + ",".join(parts) + "}}"
    rows = None
    for name in names:
        shape = np.shape(outputs[name])
        if not shape:
            raise invalid(f"Tensor name: {name} has no shape information ")
        if rows is None:
            rows = shape[0]
        elif shape[0] != rows:
            raise invalid(f"Tensor name: {name} has inconsistent batch size: {shape[0]} expecting: {rows}")
    if len(names) == 1:
        return '{"predictions":' + tensor_json(outputs[names[0]], names[0]) + "}"
    tokens = {name: _tokens(outputs[name], name.endswith("_bytes")) for name in names}
    keys = {name: json.dumps(name) for name in names}
    objects = [
        "{" + ",".join(keys[name] + ":" + _nest(tokens[name][row]) for name in names) + "}" for row in range(rows or 0)
    ]
    return '{"predictions":[' + ",".join(objects) + "]}"


def _shrunk(value: Any, depth: int) -> Any:
    """``value`` with at most 8 items per list or object and 3 levels, the rest elided (for messages)."""
    if isinstance(value, list):
        if depth == 0:
            return "[...]"
        return [_shrunk(item, depth - 1) for item in value[:8]] + (["..."] if len(value) > 8 else [])
    if isinstance(value, dict):
        if depth == 0:
            return "{...}"
        items = list(value.items())
        shrunk = {key: _shrunk(item, depth - 1) for key, item in items[:8]}
        if len(items) > 8:
            shrunk["..."] = "..."
        return shrunk
    return value


def _tokens(array: np.ndarray, as_b64: bool) -> np.ndarray:
    """Each element's JSON text, in an array of the tensor's shape."""
    array = np.asarray(array)
    kind = array.dtype.kind
    if kind == "f":
        return float_tokens(array)
    if kind == "b":
        return np.where(array, "true", "false")
    if kind in "iu":
        return array.astype(str)
    if kind in "OSU":
        flat = [_string_token(item, as_b64) for item in array.reshape(-1).tolist()]
        tokens = np.empty(len(flat), dtype=object)
        tokens[:] = flat
        return tokens.reshape(array.shape)
    raise ServingError("UNIMPLEMENTED", f"tensors of {array.dtype} cannot be written as JSON")


def float_tokens(array: np.ndarray) -> np.ndarray:
    """TF Serving's ``WriteDecimal``: %g (six digits) where it reads back equal, else max_digits10; whole numbers
    with a '.0'; NaN, Infinity, -Infinity bare."""
    if array.dtype not in (np.float32, np.float64):
        array = array.astype(np.float32)  # float16 and bfloat16 outputs: written as float32 (TF Serving: half_val).
    wide = array.astype(np.float64)
    finite = np.isfinite(wide)
    safe = np.where(finite, wide, 0.0)
    short = np.char.mod("%g", safe)
    full_digits = "%.9g" if array.dtype == np.float32 else "%.17g"
    back = short.astype(array.dtype)
    inexact = finite & (back != array)
    if inexact.any():
        short = np.where(inexact, np.char.mod(full_digits, safe), short)
    plain = ~(np.char.find(short, ".") >= 0) & ~(np.char.find(short, "e") >= 0)
    short = np.where(finite & plain, np.char.add(short, ".0"), short)
    if not finite.all():
        short = short.astype("<U12")
        short[np.isnan(wide)] = "NaN"
        short[np.isposinf(wide)] = "Infinity"
        short[np.isneginf(wide)] = "-Infinity"
    return short


def _string_token(item: Any, as_b64: bool) -> str:
    data = item if isinstance(item, bytes) else str(item).encode("utf-8")
    if not as_b64:
        try:
            return json.dumps(data.decode("utf-8"))
        except UnicodeDecodeError:
            pass  # Not text: written as base64 rather than as broken JSON.
    return '{"b64":"' + base64.b64encode(data).decode("ascii") + '"}'


def _nest(tokens: Any) -> str:
    if not isinstance(tokens, np.ndarray):  # One element of a row: a NumPy string scalar, or a str.
        return str(tokens)
    if tokens.ndim == 0:
        return str(tokens[()])
    if tokens.ndim == 1:
        return "[" + ",".join(tokens.tolist()) + "]"
    return "[" + ",".join(_nest(part) for part in tokens) + "]"


def dumps(value: Any) -> bytes:
    """A response object (status, metadata, errors) as JSON bytes."""
    return orjson.dumps(value)


__all__ = [
    "INPUTS",
    "INSTANCES",
    "dumps",
    "parse_body",
    "predict_response",
    "request_format",
    "signature_name",
    "tensor_json",
    "tensors_from_request",
]
