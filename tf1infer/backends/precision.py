"""Reduced precision: the frozen inference graph, run under TensorFlow's automatic mixed-precision rewrite.

``tf1infer.load(path, precision="bfloat16")`` (or ``"float16"``) does not set
a process-wide Keras policy. It takes the loaded inference graph, pruned to its
outputs, turns its variables into constants, imports it into a new graph and
opens that graph's session with one of grappler's mixed-precision passes
enabled in the session's ``RewriterConfig``:

- ``bfloat16``: ``auto_mixed_precision_onednn_bfloat16``. The ops oneDNN runs
  in bfloat16 (convolutions, matrix multiplies, their element-wise neighbours)
  are converted, with casts at the edges. On CPUs with AVX512_BF16 or AMX the
  arithmetic runs in native bfloat16. This needs oneDNN's kernels on in this
  process (:func:`tf1infer.runtime.kernels.onednn_enabled`): elsewhere it is refused
  with the reason and the way to turn them on.
- ``float16``: ``auto_mixed_precision_cpu``. Tensors between ops are rounded to
  float16 while each op computes in float32. It previews the accuracy of a
  float16 deployment (a GPU, TF Lite) and is not faster on a CPU.

Inputs and outputs keep their float32 dtype: callers feed and receive the same
arrays as before. :func:`precision_report` measures the deviation from float32
on a calibration batch, so that the choice rests on numbers.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import rewriter_config_pb2

from tf1infer.errors import InvalidOptionError, ModelLoadError
from tf1infer.io.feeds import FeedConverter
from tf1infer.loaders.base import LoadedGraph, ModelGraph, new_session
from tf1infer.loaders.graph_tools import frozen_inference_graph
from tf1infer.runtime.kernels import onednn_enabled
from tf1infer.runtime.session_runner import session_callable
from tf1infer.verification.synthetic import random_array

FLOAT32 = "float32"
INT8 = "int8"  # TF Lite only: see tf1infer.backends.tflite.
REDUCED_PRECISIONS = ("bfloat16", "float16")
PRECISIONS = (FLOAT32,) + REDUCED_PRECISIONS + (INT8,)


def check_precision(precision: Any) -> str:
    """``precision`` checked: a known name that this process's kernels can run (else InvalidOptionError)."""
    precision = _known_precision(precision)
    reason = unavailable_reason(precision)
    if reason:
        raise InvalidOptionError(f"precision={precision!r} {reason}")
    return precision


def unavailable_reason(precision: str) -> str | None:
    """Why this process cannot run ``precision``, in words; None where it can.

    bfloat16 needs oneDNN's kernels, which TensorFlow turns on by default only
    on CPUs with AVX-512 VNNI / BF16 or AMX; the plain kernels have no bfloat16
    rewrite to run.
    """
    if precision == "bfloat16" and not onednn_enabled():
        return (
            "needs TensorFlow's oneDNN kernels, which are off in this process (TensorFlow turns them on by default "
            "only on CPUs with AVX-512 VNNI/BF16 or AMX; TF_ENABLE_ONEDNN_OPTS=1 set before TensorFlow is imported "
            "turns them on elsewhere, for x86-64 builds of TensorFlow); use 'float16' to preview reduced precision, "
            "or float32"
        )
    return None


def _known_precision(precision: Any) -> str:
    if precision is None:
        return FLOAT32
    if precision not in PRECISIONS:
        raise InvalidOptionError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    return precision


def session_config(precision: str, base: tf.compat.v1.ConfigProto | None = None) -> tf.compat.v1.ConfigProto:
    """A copy of ``base`` with the grappler rewrite for ``precision`` switched on."""
    config = tf.compat.v1.ConfigProto()
    if base is not None:
        config.CopyFrom(base)
    rewrites = config.graph_options.rewrite_options
    if precision == "bfloat16":
        rewrites.auto_mixed_precision_onednn_bfloat16 = rewriter_config_pb2.RewriterConfig.ON
    elif precision == "float16":
        rewrites.auto_mixed_precision_cpu = rewriter_config_pb2.RewriterConfig.ON
    return config


def frozen_graph_of(predictor, purpose: str = "reduced precision", instead: str = "precision='float32'"):
    """:func:`frozen_inference_graph` of a Predictor's own inputs and outputs.

    Returns the GraphDef and, per input spec name, the tensor to feed in it.
    """
    graph = predictor.graph
    inputs = [graph.get_tensor_by_name(spec.name) for spec in predictor.inputs]
    outputs = [graph.get_tensor_by_name(spec.name) for spec in predictor.outputs]
    source = predictor.metadata.get("path", "model")
    return frozen_inference_graph(graph, predictor.session, inputs, outputs, source, purpose, instead)


# TensorFlow 2.21's auto_mixed_precision_cpu pass crashes the process (a segmentation fault, seen on
# the zoo's GRU) on graphs whose loops are functional While ops, as recurrent layers build them.
_FLOAT16_CRASHES_ON = {"While", "StatelessWhile"}


def check_rewritable(graph_def, precision: str, source: str) -> None:
    """Refuse a rewrite known to crash TensorFlow on this graph, instead of letting it take the process down."""
    if precision != "float16":
        return
    ops = {node.op for node in graph_def.node} | {
        node.op for function in graph_def.library.function for node in function.node_def
    }
    loops = sorted(ops & _FLOAT16_CRASHES_ON)
    if loops:
        raise ModelLoadError(
            f"{source}: precision='float16' is not available for graphs with {', '.join(loops)} loops (recurrent "
            "layers): TensorFlow's float16 CPU rewrite crashes on them; use 'bfloat16' or 'float32'"
        )


def reduce_precision(
    loaded: LoadedGraph,
    precision: str,
    base_config: tf.compat.v1.ConfigProto | None = None,
    intra_op_threads: int | None = None,
    inter_op_threads: int | None = None,
) -> LoadedGraph:
    """``loaded`` as a frozen graph whose session runs at ``precision``; ``loaded``'s own session is closed."""
    source = loaded.metadata.get("path", "model")
    graph_def, feeds = frozen_inference_graph(loaded.graph, loaded.session, loaded.inputs, loaded.outputs, source)
    check_rewritable(graph_def, precision, source)
    graph = ModelGraph()
    with graph.as_default():
        tf.import_graph_def(graph_def, name="")
    reduced = LoadedGraph(
        graph=graph,
        session=new_session(graph, session_config(precision, base_config), intra_op_threads, inter_op_threads),
        inputs=[graph.get_tensor_by_name(feeds[tensor.name]) for tensor in loaded.inputs],
        outputs=[graph.get_tensor_by_name(tensor.name) for tensor in loaded.outputs],
        input_names=list(loaded.input_names),
        output_names=list(loaded.output_names),
        metadata={**loaded.metadata, "precision": precision},
        owns_session=True,
    )
    if loaded.owns_session:
        loaded.session.close()
    return reduced


def precision_report(
    predictor, x: Any = None, precisions: Sequence[str] | None = None, samples: int = 32
) -> dict[str, Any]:
    """Deviation of each reduced precision from float32 on a batch of inputs.

    Args:
        predictor: a :class:`~tf1infer.Predictor` at any precision.
        x: the inputs (real held-out data is best; required for ``int8``);
            default: ``samples`` random rows drawn from each input's shape and
            dtype (never zeros).
        precisions: which to measure; default ``int8`` for a Predictor loaded
            at int8, else both ``bfloat16`` and ``float16``. ``int8`` is the
            Predictor's own TF Lite model, so it is measured only on a
            Predictor loaded with ``precision="int8"`` (its calibration is
            part of it).
        samples: rows of random data when ``x`` is not given.

    Returns:
        ``{"calibration_samples": n, "precisions": {precision: {"max_abs",
        "mean_abs", "max_rel", "ms_per_batch", "outputs": {name: {"max_abs",
        "mean_abs", "max_rel"[, "top1_agreement"]}}}}}``, where ``max_rel``
        is the largest absolute deviation divided by the largest float32
        magnitude of that output, ``top1_agreement`` (for classifier outputs:
        one row of two or more scores per sample) the fraction of rows whose
        highest-scoring class is float32's, and ``ms_per_batch`` the median
        time of the batch at that precision (float32 included for
        comparison). A precision that cannot run here has ``{"unavailable":
        reason}`` instead. ``calibration_samples`` is the row count of ``x``
        (the name is kept for compatibility: these rows are measured on).
    """
    own_int8 = predictor.backend_report.get("precision") == INT8
    default = (INT8,) if own_int8 else REDUCED_PRECISIONS
    precisions = [_known_precision(p) for p in (precisions or default)]
    source = predictor.metadata.get("path", "model")
    if x is None:
        rng = np.random.default_rng(20261122)
        feeds = [random_array(spec, samples, rng) for spec in predictor.inputs]
    else:
        feeds = FeedConverter(tuple(predictor.inputs), tuple(predictor.input_names)).convert(x)
    base = getattr(predictor.session, "_config", None)
    graph_def, feed_names = frozen_graph_of(predictor)
    frozen = tf.Graph()
    with frozen.as_default():
        tf.import_graph_def(graph_def, name="")
    frozen.finalize()
    frozen_inputs = [frozen.get_tensor_by_name(feed_names[spec.name]) for spec in predictor.inputs]
    frozen_outputs = [frozen.get_tensor_by_name(spec.name) for spec in predictor.outputs]
    results: dict[str, Any] = {}
    reference, reference_ms = _run(frozen, session_config(FLOAT32, base), frozen_inputs, frozen_outputs, feeds)
    results[FLOAT32] = {"max_abs": 0.0, "mean_abs": 0.0, "max_rel": 0.0, "ms_per_batch": reference_ms}
    for precision in precisions:
        if precision == INT8:
            if not own_int8:
                results[precision] = {
                    "unavailable": "int8 is measured on a Predictor loaded with precision='int8', "
                    "backend='tflite' and calibration= (the calibration is part of the model)"
                }
                continue
            if x is None:
                results[precision] = {
                    "unavailable": "int8 is measured on held-out samples you give (x=): its "
                    "accuracy on random inputs says nothing about real data"
                }
                continue
            values, ms = _time(lambda: predictor._callable(*feeds))
        else:
            reason = unavailable_reason(precision)
            if reason:
                results[precision] = {"unavailable": f"precision={precision!r} {reason}"}
                continue
            try:
                check_rewritable(graph_def, precision, source)
            except ModelLoadError as exc:
                results[precision] = {"unavailable": str(exc).split(": ", 1)[1]}
                continue
            values, ms = _run(frozen, session_config(precision, base), frozen_inputs, frozen_outputs, feeds)
        per_output = {
            name: _deviation(value, want) for name, value, want in zip(predictor.output_names, values, reference)
        }
        results[precision] = {
            "max_abs": max(d["max_abs"] for d in per_output.values()),
            "mean_abs": max(d["mean_abs"] for d in per_output.values()),
            "max_rel": max(d["max_rel"] for d in per_output.values()),
            "ms_per_batch": ms,
            "outputs": per_output,
        }
    return {"calibration_samples": int(feeds[0].shape[0]) if feeds[0].ndim else 1, "precisions": results}


def _run(graph, config, inputs, outputs, feeds) -> tuple[list[np.ndarray], float]:
    with tf.compat.v1.Session(graph=graph, config=config) as session:
        run = session_callable(session, inputs, outputs)  # As the Predictor runs its own: comparable times.
        return _time(lambda: run(*feeds))


def _time(run) -> tuple[list[np.ndarray], float]:
    """``run()``'s values (its first call, which also runs grappler's rewrite, untimed) and median ms of 3 more."""
    values = run()
    times = []
    for _ in range(3):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return values, round(float(np.median(times)) * 1e3, 3)


def _deviation(value: np.ndarray, want: np.ndarray) -> dict[str, float]:
    if want.dtype.kind not in "fc" or want.size == 0:
        equal = want.size == 0 or np.array_equal(value, want)
        return {name: 0.0 if equal else float("inf") for name in ("max_abs", "mean_abs", "max_rel")}
    absolute = np.abs(value.astype(np.float64) - want)
    difference = float(np.max(absolute))
    scale = float(np.max(np.abs(want)))
    deviation = {
        "max_abs": difference,
        "mean_abs": float(np.mean(absolute)),
        "max_rel": difference / scale if scale else difference,
    }
    if want.ndim == 2 and want.shape[1] >= 2:  # One row of class scores per sample.
        deviation["top1_agreement"] = float(np.mean(np.argmax(value, axis=1) == np.argmax(want, axis=1)))
    return deviation
