"""A recovered Lambda written as native Keras 3: a small Functional model of ``keras.ops``, with no bytecode.

A Lambda whose function tf1infer read from its stored bytecode
(:mod:`tf1infer.loaders.lambda_recovery`) is known as an expression, not only
as Python. Where every part of it has a ``keras.ops`` counterpart that
computes the same thing (arithmetic, subscripts, the elementwise functions,
reductions, concatenate, transpose, ``K.l2_normalize`` by its formula,
``K.resize_images`` with nearest neighbours as repeats...), the export writes
that expression as a nested Functional model in place of the Lambda. Keras 3
saves its operations by class, so the ``.keras`` file loads without
``safe_mode=False`` and runs on every backend, JAX included. Anything without a
counterpart (``tf.space_to_depth``, bilinear resizing with ``align_corners``)
returns None: the Lambda is then written with its function's bytecode, as a
supplied function is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tf1infer.loaders import lambda_recovery as lr


class _Unmapped(Exception):
    pass


def _reduction(name: str) -> Callable:
    def apply(ops, x, axis=None, keepdims=False, **rest):
        _no_rest(rest)
        return getattr(ops, name)(x, axis=_axis(axis), keepdims=bool(keepdims))

    return apply


def _unary(name: str) -> Callable:
    def apply(ops, x, **rest):
        _no_rest(rest)
        return getattr(ops, name)(x)

    return apply


def _no_rest(rest: dict) -> None:
    # tf.X(..., name="...") only names the op.
    rest.pop("name", None)
    if rest:
        raise _Unmapped(f"arguments {sorted(rest)}")


def _axis(axis: Any) -> Any:
    return tuple(axis) if isinstance(axis, list) else axis


def _l2_normalize(ops, x, axis=None, epsilon=1e-12, **rest):
    rest.pop("dim", None)
    _no_rest(rest)
    # tf.nn.l2_normalize (what Keras 2's K.l2_normalize calls): x * rsqrt(max(sum(x ** 2), epsilon)).
    return x * ops.rsqrt(ops.maximum(ops.sum(ops.square(x), axis=_axis(axis), keepdims=True), epsilon))


def _resize_images(ops, x, height_factor, width_factor, data_format=None, interpolation="nearest", **rest):
    _no_rest(rest)
    if interpolation != "nearest" or not all(isinstance(f, int) for f in (height_factor, width_factor)):
        raise _Unmapped("resize_images other than nearest by whole factors")
    rows, cols = (2, 3) if data_format in ("channels_first", "th") else (1, 2)
    return ops.repeat(ops.repeat(x, height_factor, axis=rows), width_factor, axis=cols)


def _concatenate(ops, tensors, axis=-1, **rest):
    _no_rest(rest)
    return ops.concatenate(list(tensors), axis=axis)


def _concat(ops, values, axis, **rest):
    _no_rest(rest)
    return ops.concatenate(list(values), axis=axis)


def _expand_dims(ops, x, axis=-1, **rest):
    _no_rest(rest)
    return ops.expand_dims(x, axis)


def _squeeze(ops, x, axis=None, **rest):
    _no_rest(rest)
    return ops.squeeze(x, axis=_axis(axis))


def _reshape(ops, x, shape, **rest):
    _no_rest(rest)
    return ops.reshape(x, tuple(shape))


def _transpose(ops, x, perm=None, **rest):
    rest.pop("pattern", None)
    _no_rest(rest)
    return ops.transpose(x, axes=None if perm is None else tuple(perm))


def _clip(ops, x, low, high, **rest):
    _no_rest(rest)
    return ops.clip(x, low, high)


def _binary(name: str) -> Callable:
    def apply(ops, x, y, **rest):
        _no_rest(rest)
        return getattr(ops, name)(x, y)

    return apply


def _softmax(ops, x, axis=-1, **rest):
    rest.pop("dim", None)
    _no_rest(rest)
    return ops.softmax(x, axis=axis)


def _cast(ops, x, dtype, **rest):
    _no_rest(rest)
    if not isinstance(dtype, str):
        raise _Unmapped("a dtype that is not a name")
    return ops.cast(x, dtype)


def _constant(ops, value, dtype=None, **rest):
    _no_rest(rest)
    if dtype is not None or not isinstance(value, (int, float, list, tuple)):
        raise _Unmapped("a constant with a dtype")
    import numpy as np

    # tf.constant of Python floats is float32 (ints: int32); Keras 3 stores the array in the operation using it.
    array = np.asarray(value)
    return array.astype("float32" if array.dtype.kind == "f" else "int32")


def _stack(ops, values, axis=0, **rest):
    _no_rest(rest)
    return ops.stack(list(values), axis=axis)


_ELEMENTWISE = {
    "abs": "abs", "sqrt": "sqrt", "square": "square", "exp": "exp", "log": "log", "sign": "sign", "tanh": "tanh",
    "sigmoid": "sigmoid", "softplus": "softplus", "softsign": "softsign", "sin": "sin", "cos": "cos",
    "round": "round", "floor": "floor", "ceil": "ceil", "negative": "negative", "rsqrt": "rsqrt",
    "reciprocal": "reciprocal", "log1p": "log1p", "relu": "relu", "nn.relu": "relu", "nn.sigmoid": "sigmoid",
    "nn.tanh": "tanh", "nn.softplus": "softplus", "nn.softsign": "softsign", "nn.relu6": "relu6", "nn.elu": "elu",
    "nn.selu": "selu", "ones_like": "ones_like", "zeros_like": "zeros_like",
}  # fmt: skip
_REDUCTIONS = {"mean": "mean", "sum": "sum", "max": "max", "min": "min", "prod": "prod"}
_BINARIES = {
    "maximum": "maximum", "minimum": "minimum", "pow": "power", "add": "add", "subtract": "subtract",
    "multiply": "multiply", "divide": "true_divide", "truediv": "true_divide", "realdiv": "true_divide",
}  # fmt: skip


def _table() -> dict[str, Callable]:
    table: dict[str, Callable] = {}
    for member, op in _ELEMENTWISE.items():
        for prefix in ("keras.backend.", "tensorflow.", "tf1.", "tensorflow.math.", "tf1.math."):
            table[prefix + member] = _unary(op)
    for member, op in _REDUCTIONS.items():
        table["keras.backend." + member] = _reduction(op)
        for prefix in ("tensorflow.", "tf1.", "tensorflow.math.", "tf1.math."):
            table[prefix + "reduce_" + member] = _reduction(op)
    for member, op in _BINARIES.items():
        for prefix in ("keras.backend.", "tensorflow.", "tf1.", "tensorflow.math.", "tf1.math."):
            table[prefix + member] = _binary(op)
    for prefix in ("tensorflow.", "tf1."):
        table.update(
            {
                prefix + "concat": _concat,
                prefix + "expand_dims": _expand_dims,
                prefix + "squeeze": _squeeze,
                prefix + "reshape": _reshape,
                prefix + "transpose": _transpose,
                prefix + "clip_by_value": _clip,
                prefix + "nn.softmax": _softmax,
                prefix + "nn.l2_normalize": _l2_normalize,
                prefix + "math.l2_normalize": _l2_normalize,
                prefix + "cast": _cast,
                prefix + "stack": _stack,
                prefix + "constant": _constant,
            }
        )
    table.update(
        {
            "keras.backend.concatenate": _concatenate,
            "keras.backend.expand_dims": _expand_dims,
            "keras.backend.squeeze": _squeeze,
            "keras.backend.reshape": _reshape,
            "keras.backend.permute_dimensions": _transpose,
            "keras.backend.transpose": _transpose,
            "keras.backend.clip": _clip,
            "keras.backend.softmax": _softmax,
            "keras.backend.l2_normalize": _l2_normalize,
            "keras.backend.resize_images": _resize_images,
            "keras.backend.cast": _cast,
            "keras.backend.stack": _stack,
        }
    )
    return table


_OPS = _table()
_OPERATORS = {
    "+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b, "/": lambda a, b: a / b,
    "**": lambda a, b: a**b, "//": lambda a, b: a // b, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
}  # fmt: skip


def keras3_layer(recovered: lr.Recovered, input_shape: Any, name: str) -> Any | None:
    """The recovered function as a Keras 3 Functional model named ``name``, or None where a part has no keras.ops form.

    Args:
        recovered: the Lambda's recovered function.
        input_shape: the Lambda's input shape with the batch (a list of them for several inputs).
        name: the Lambda layer's name, which the model takes.
    """
    import keras

    several = isinstance(input_shape, list) and input_shape and isinstance(input_shape[0], (list, tuple))
    shapes = input_shape if several else [input_shape]
    if any(shape is None for shape in shapes):
        return None
    inputs = [keras.Input(batch_shape=tuple(shape)) for shape in shapes]
    try:
        output = _build(recovered.tree, inputs if several else inputs[0], keras.ops)
    except (_Unmapped, TypeError, ValueError, IndexError):
        return None
    if not isinstance(output, keras.KerasTensor):
        return None
    return keras.Model(inputs if several else inputs[0], output, name=name)


def _build(node: Any, inputs: Any, ops: Any) -> Any:
    if isinstance(node, lr.Param):
        return inputs
    if isinstance(node, lr.Const):
        if node.value is Ellipsis or isinstance(node.value, (type(None), bool, int, float, str)):
            return node.value
        raise _Unmapped(repr(node.value))
    if isinstance(node, lr.Sequence_):
        items = [_build(item, inputs, ops) for item in node.items]
        return tuple(items) if node.kind == "tuple" else items
    if isinstance(node, lr.SliceNode):
        return slice(*(_build(part, inputs, ops) for part in (node.start, node.stop, node.step)))
    if isinstance(node, lr.Subscript):
        return _build(node.obj, inputs, ops)[_build(node.index, inputs, ops)]
    if isinstance(node, lr.Unary) and node.op in ("-", "+"):
        operand = _build(node.operand, inputs, ops)
        return -operand if node.op == "-" else operand
    if (
        isinstance(node, lr.BinOp)
        and node.op == "py2/"
        and any(isinstance(side, lr.Const) and isinstance(side.value, float) for side in (node.left, node.right))
    ):
        # Python 2's / with a float operand is true division.
        return _build(node.left, inputs, ops) / _build(node.right, inputs, ops)
    if isinstance(node, lr.BinOp) and node.op in _OPERATORS:
        return _OPERATORS[node.op](_build(node.left, inputs, ops), _build(node.right, inputs, ops))
    if isinstance(node, lr.Call) and isinstance(node.func, lr.Ref) and node.func.path in _OPS:
        args = [_build(arg, inputs, ops) for arg in node.args]
        kwargs = {key: _build(value, inputs, ops) for key, value in node.kwargs}
        return _OPS[node.func.path](ops, *args, **kwargs)
    raise _Unmapped(type(node).__name__)


__all__ = ["keras3_layer"]
