"""The model's own numerics as the yardstick: a float64 reference, and tolerances from float32's error against it.

A converted model (a TF Lite flatbuffer, an exported SavedModel or ``.keras``
file) never matches the float32 session bit for bit: its kernels sum in
another order. A fixed tolerance cannot tell that noise from a wrong
conversion: after 45 recurrent steps, 4e-5 is noise; on an easy input, a
wrong mask semantics can hide under 1e-5. So every check measures against
the same frozen inference graph run in float64 (:func:`float64_graph`), and
accepts a candidate whose deviation from it is within :data:`FACTOR` times the
float32 session's own deviation (plus a floor of a few float32 ulps of the
output's magnitude): what a correct float32 computation of this model can
differ by, measured on the very rows checked.

Where float64 cannot run (an op without a float64 kernel, a graph that does
not import once retyped), :func:`float64_runner` says why, and the check
falls back to a fixed tolerance against the float32 session.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2

# A candidate may deviate from float64 by this many times the float32 session's own deviation...
FACTOR = 16.0
# ... or by this many float32 ulps of the output's largest magnitude, whichever is larger.
FLOOR_ULPS = 8
# The fixed rule where float64 cannot run: |candidate - session| <= ATOL + RTOL * |session|.
ATOL, RTOL = 1e-5, 1e-4
_EPS32 = float(np.finfo(np.float32).eps)

# Ops whose output is float32 whatever their input type: a Cast to float64 follows them in the float64 graph.
_FLOAT_OUTPUT_OPS = {"ResizeBilinear", "ResizeBicubic", "ResizeArea", "ScaleAndTranslate"}
_FUSED_BATCH_NORMS = {"FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3"}


class Float64Unavailable(Exception):
    """Why the float64 reference cannot run for this graph."""


def _random_ops(graph_def) -> list[str]:
    """Ops drawing random numbers: their float64 twin draws others, so it is no reference."""
    nodes = [*graph_def.node, *(node for function in graph_def.library.function for node in function.node_def)]
    return sorted(
        {
            node.op
            for node in nodes
            if ("Random" in node.op and not node.op.startswith("Stateless"))
            or node.op in ("Multinomial", "TruncatedNormal", "ParameterizedTruncatedNormal")
        }
    )


def float64_graph(graph_def):
    """A copy of a frozen inference GraphDef computing in float64 wherever it computed in float32.

    Every float32 type attribute (of nodes, of the functions recurrent loops
    run, of their signatures) becomes float64 and every float32 constant is
    widened. Inference-mode ``FusedBatchNorm`` ops, which have no float64
    kernel, become the arithmetic they compute; image resizing, whose output
    is float32 whatever its input, is followed by a cast. Fed float32
    placeholders become float64 ones: feed them the same values widened.
    """
    from tensorflow.core.framework import graph_pb2

    rewritten = graph_pb2.GraphDef()
    rewritten.CopyFrom(graph_def)
    _retype_nodes(rewritten.node)
    for function in rewritten.library.function:
        for arg in (*function.signature.input_arg, *function.signature.output_arg):
            if arg.type == types_pb2.DT_FLOAT:
                arg.type = types_pb2.DT_DOUBLE
        _retype_nodes(function.node_def)
        for attr in function.attr.values():
            _retype_attr(attr)
    nodes = list(rewritten.node)
    del rewritten.node[:]
    for node in nodes:
        rewritten.node.extend(_expanded(node))
    return rewritten


def _retype_nodes(nodes) -> None:
    for node in nodes:
        for key, attr in node.attr.items():
            if key == "value" and attr.HasField("tensor") and attr.tensor.dtype == types_pb2.DT_FLOAT:
                attr.tensor.CopyFrom(tf.make_tensor_proto(tf.make_ndarray(attr.tensor).astype(np.float64)))
            else:
                _retype_attr(attr)


def _retype_attr(attr) -> None:
    if attr.type == types_pb2.DT_FLOAT and attr.WhichOneof("value") == "type":
        attr.type = types_pb2.DT_DOUBLE
    elif attr.HasField("list") and attr.list.type:
        attr.list.type[:] = [types_pb2.DT_DOUBLE if t == types_pb2.DT_FLOAT else t for t in attr.list.type]


def _expanded(node) -> list:
    """``node``, or the float64 nodes computing its output 0 under its name."""
    if node.op in _FLOAT_OUTPUT_OPS:
        inner = type(node)()
        inner.CopyFrom(node)
        inner.name = node.name + "/tf1infer_float32"
        cast = _node(node.name, "Cast", [inner.name], node.device, SrcT=types_pb2.DT_FLOAT, DstT=types_pb2.DT_DOUBLE)
        return [inner, cast]
    if node.op in _FUSED_BATCH_NORMS:
        if node.attr["is_training"].b:
            raise Float64Unavailable(f"{node.name} ({node.op}) normalizes with batch statistics")
        return _batch_norm_arithmetic(node)
    return [node]


def _node(name: str, op: str, inputs: Sequence[str], device: str, **attrs: Any):
    node = tf.compat.v1.NodeDef(name=name, op=op, input=list(inputs), device=device)
    for key, value in attrs.items():
        if isinstance(value, int) and key in ("T", "SrcT", "DstT", "dtype", "Tshape"):
            node.attr[key].type = value
        elif isinstance(value, np.ndarray):
            node.attr[key].tensor.CopyFrom(tf.make_tensor_proto(value))
        else:
            node.attr[key].CopyFrom(value)
    return node


def _batch_norm_arithmetic(node) -> list:
    """``(x - mean) * scale / sqrt(variance + epsilon) + offset``, as FusedBatchNorm computes it at inference."""
    x, scale, offset, mean, variance = list(node.input)[:5]
    name, device, double = node.name, node.device, types_pb2.DT_DOUBLE
    epsilon = np.asarray(node.attr["epsilon"].f, dtype=np.float64)
    data_format = node.attr["data_format"].s.decode() if "data_format" in node.attr else "NHWC"
    nodes = [
        _node(f"{name}/tf1infer/epsilon", "Const", [], device, dtype=double, value=epsilon),
        _node(f"{name}/tf1infer/variance", "AddV2", [variance, f"{name}/tf1infer/epsilon"], device, T=double),
        _node(f"{name}/tf1infer/rsqrt", "Rsqrt", [f"{name}/tf1infer/variance"], device, T=double),
        _node(f"{name}/tf1infer/multiplier", "Mul", [scale, f"{name}/tf1infer/rsqrt"], device, T=double),
        _node(f"{name}/tf1infer/shift", "Mul", [mean, f"{name}/tf1infer/multiplier"], device, T=double),
        _node(f"{name}/tf1infer/bias", "Sub", [offset, f"{name}/tf1infer/shift"], device, T=double),
    ]
    multiplier, bias = f"{name}/tf1infer/multiplier", f"{name}/tf1infer/bias"
    if data_format.startswith("NC"):  # Per-channel vectors along axis 1: shaped [C, 1, 1(, 1)].
        shape = np.asarray([-1] + [1] * (len(data_format) - 2), dtype=np.int32)
        nodes.append(_node(f"{name}/tf1infer/shape", "Const", [], device, dtype=types_pb2.DT_INT32, value=shape))
        for part in ("multiplier", "bias"):
            nodes.append(
                _node(
                    f"{name}/tf1infer/{part}_nc",
                    "Reshape",
                    [f"{name}/tf1infer/{part}", f"{name}/tf1infer/shape"],
                    device,
                    T=double,
                    Tshape=types_pb2.DT_INT32,
                )
            )
        multiplier, bias = f"{name}/tf1infer/multiplier_nc", f"{name}/tf1infer/bias_nc"
    nodes.append(_node(f"{name}/tf1infer/scaled", "Mul", [x, multiplier], device, T=double))
    nodes.append(_node(name, "AddV2", [f"{name}/tf1infer/scaled", bias], device, T=double))
    return nodes


def float64_runner(
    graph_def, feed_names: Sequence[str], output_names: Sequence[str]
) -> Callable[..., list[np.ndarray]]:
    """``feeds -> outputs`` running :func:`float64_graph` of ``graph_def`` in a session of its own.

    ``feed_names`` and ``output_names`` are tensor names in ``graph_def``.
    Float feeds are widened to float64; outputs come back as float64 where
    the original computed float32.

    Raises:
        Float64Unavailable: the graph cannot be retyped or imported in float64; the runner raises it
            too where a call fails (an op without a float64 kernel is found when it runs).
    """
    from tf1infer.loaders.base import quiet_deprecation

    random = _random_ops(graph_def)
    if random:
        raise Float64Unavailable(
            f"the graph draws random numbers ({', '.join(random)}), so no run of it is a reference"
        )
    try:
        rewritten = float64_graph(graph_def)
        graph = tf.Graph()
        with graph.as_default(), quiet_deprecation():
            tf.import_graph_def(rewritten, name="")
        feeds = [graph.get_tensor_by_name(name) for name in feed_names]
        outputs = [graph.get_tensor_by_name(name) for name in output_names]
    except Float64Unavailable:
        raise
    except Exception as exc:  # import_graph_def raises ValueError, InvalidArgumentError... for graphs it refuses.
        raise Float64Unavailable(_first_line(exc)) from exc
    graph.finalize()
    session = tf.compat.v1.Session(graph=graph)

    def run(*arrays: np.ndarray) -> list[np.ndarray]:
        feed = {
            tensor: (array.astype(np.float64) if tensor.dtype == tf.float64 and array.dtype.kind == "f" else array)
            for tensor, array in zip(feeds, arrays)
        }
        try:
            return session.run(outputs, feed)
        except tf.errors.OpError as exc:
            raise Float64Unavailable(_first_line(exc)) from exc

    run.close = session.close  # type: ignore[attr-defined]
    return run


def frozen_float64_runner(graph, session, inputs: Sequence[tf.Tensor], outputs: Sequence[tf.Tensor], source: str):
    """:func:`float64_runner` of the frozen inference graph computing ``outputs`` from ``inputs`` in ``session``.

    Raises:
        Float64Unavailable: the graph cannot be frozen (tables, state) or run in float64; the reason in words.
    """
    from tf1infer.errors import ModelLoadError
    from tf1infer.loaders.graph_tools import frozen_inference_graph

    try:
        graph_def, feeds = frozen_inference_graph(
            graph, session, inputs, outputs, source, "the float64 reference", "a fixed tolerance"
        )
    except ModelLoadError as exc:
        raise Float64Unavailable(str(exc).split(": ", 1)[-1]) from exc
    return float64_runner(graph_def, [feeds[tensor.name] for tensor in inputs], [tensor.name for tensor in outputs])


def _first_line(exc: BaseException) -> str:
    from tf1infer.errors import tensorflow_reason

    text = tensorflow_reason(exc) if isinstance(exc, tf.errors.OpError) else f"{type(exc).__name__}: {exc}"
    return (text.strip().splitlines() or [type(exc).__name__])[0][:300]


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """How close a converted model's output must be: from the model's float32 error, or fixed.

    With ``atol`` and ``rtol`` None (the default), an output passes where
    ``max|candidate - float64| <= max(FACTOR * max|session - float64|,
    FLOOR_ULPS * eps32 * max|float64|)``. Where no float64 reference runs, or
    ``atol`` / ``rtol`` are given, the fixed rule ``|candidate - session| <=
    atol + rtol * |session|`` applies (``ATOL`` and ``RTOL`` by default).
    """

    atol: float | None = None
    rtol: float | None = None
    factor: float = FACTOR
    floor_ulps: float = FLOOR_ULPS

    @property
    def fixed(self) -> bool:
        return self.atol is not None or self.rtol is not None

    def describe(self, float64: bool) -> str:
        """The rule, in words, for a report: ``float64`` says whether the float64 reference ran."""
        if self.fixed or not float64:
            atol = self.atol if self.atol is not None else ATOL
            rtol = self.rtol if self.rtol is not None else RTOL
            return f"against the float32 session with atol={atol:g} rtol={rtol:g}"
        return (
            f"against the model run in float64: within {self.factor:g}x the float32 session's own deviation "
            f"(at least {self.floor_ulps:g} float32 ulps)"
        )

    def judge(self, got: np.ndarray, session: np.ndarray, float64: np.ndarray | None) -> dict[str, Any]:
        """Per-output figures and the verdict: ``max_abs_error`` / ``max_rel_error`` (against float64 where
        it ran, else the session), ``float32_session_error`` (the session against float64, or None),
        ``allowed`` (the bound on ``max_abs_error``; None for the fixed rule), ``ok``."""
        if session.dtype.kind not in "fc" or session.size == 0:
            equal = bool(np.array_equal(got, session))
            return {
                "max_abs_error": 0.0 if equal else float("inf"),
                "max_rel_error": 0.0,
                "float32_session_error": None,
                "allowed": 0.0,
                "ok": equal,
            }
        candidate = got.astype(np.float64)
        if float64 is None or float64.shape != session.shape:
            return self._fixed(candidate, session.astype(np.float64), None)
        want = float64.astype(np.float64)
        finite = np.isfinite(want)
        if not np.array_equal(np.isfinite(candidate), finite) and not np.array_equal(
            np.isfinite(candidate), np.isfinite(session)
        ):
            return {
                **_sizes(candidate, want),
                "float32_session_error": _sizes(session.astype(np.float64), want)["max_abs_error"],
                "allowed": 0.0,
                "ok": False,
            }
        session_error = _sizes(session.astype(np.float64), want)["max_abs_error"]
        if self.fixed:
            return self._fixed(candidate, session.astype(np.float64), session_error)
        sizes = _sizes(candidate, want)
        magnitude = float(np.max(np.abs(want[finite]))) if finite.any() else 0.0
        allowed = max(self.factor * session_error, self.floor_ulps * _EPS32 * magnitude)
        return {
            **sizes,
            "float32_session_error": session_error,
            "allowed": allowed,
            "ok": sizes["max_abs_error"] <= allowed,
        }

    def _fixed(self, candidate: np.ndarray, session: np.ndarray, session_error: float | None) -> dict[str, Any]:
        atol = ATOL if self.atol is None else self.atol
        rtol = RTOL if self.rtol is None else self.rtol
        ok = bool(np.allclose(candidate, session, atol=atol, rtol=rtol, equal_nan=True))
        return {**_sizes(candidate, session), "float32_session_error": session_error, "allowed": None, "ok": ok}


def _sizes(have: np.ndarray, want: np.ndarray) -> dict[str, float]:
    """Largest absolute and relative difference over the finite entries."""
    difference = np.abs(have - want)
    finite = np.isfinite(difference)
    if not finite.any():
        return {"max_abs_error": 0.0, "max_rel_error": 0.0}
    scale = np.maximum(np.abs(want), np.finfo(np.float32).tiny)
    return {
        "max_abs_error": float(difference[finite].max()),
        "max_rel_error": float((difference[finite] / scale[finite]).max()),
    }


def deviation_text(name: str, figures: Mapping[str, Any]) -> str:
    """One line of a report: the candidate's deviation and, where measured, the float32 session's."""
    text = f"{name}: max abs error {figures['max_abs_error']:.3g}, max rel error {figures['max_rel_error']:.3g}"
    if figures.get("float32_session_error") is not None:
        text += f" (float32 session: {figures['float32_session_error']:.3g} from float64"
        text += f"; allowed {figures['allowed']:.3g})" if figures.get("allowed") is not None else ")"
    return text


__all__ = [
    "ATOL",
    "FACTOR",
    "FLOOR_ULPS",
    "Float64Unavailable",
    "RTOL",
    "Tolerance",
    "deviation_text",
    "float64_graph",
    "float64_runner",
    "frozen_float64_runner",
]
