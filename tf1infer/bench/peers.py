"""The ways to run a legacy model that tf1infer is measured against, one function per peer.

Each peer runs in a process of its own (``python -m tf1infer.bench --worker
PEER``): eager, graph-mode and ``disable_eager_execution`` state cannot leak
between them. A peer loads each model once, then times every batch size on the
same random inputs as every other peer (the seed depends only on the model and
the batch size). It prints one JSON record per model x batch size x label.
A same-process check (:data:`CHECKS`) loads tf1infer and one peer into one
process and alternates their timed rounds.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tf1infer.bench.timing import Budget, measure

# peer -> what it stands for; the order is the table's.
PEERS = {
    "keras_predict": "tf_keras model.predict in a per-batch loop (the old loop)",
    "keras_eager": "tf_keras eager model(x, training=False)",
    "tf_function": "tf.function around the eager call",
    "session_feed_dict": "hand-written TF1 sess.run(feed_dict) on the graph Keras builds with eager execution disabled",
    "onnxruntime": "ONNX Runtime (default CPU settings) on tf2onnx's conversion of the frozen inference graph",
    "tflite_interpreter": "the TF Lite interpreter (all cores, XNNPACK) on the frozen inference graph, resized per batch",
    "saved_model": "the TF2 SavedModel tf1infer.export_saved_model writes, called through its signature",
    "tf1infer": "tf1infer on the persistent TF1 session: predict_on_batch, predict, predict_iter",
    "tf1infer_tflite": "tf1infer backend='tflite', backend='auto' and the session, predict_on_batch",
}
BENCH_EXTRA = "pip install -e '.[bench]' (make bench-tf1 does)"


class MissingPeer(Exception):
    """A peer whose package is not installed."""


@dataclass
class Prepared:
    """A loaded peer: per label, a function of the input returning the call to time."""

    functions: dict[str, Callable[[np.ndarray], Callable[[], Any]]]
    finish: Callable[[], None] = lambda: None
    load_seconds: float | None = None  # When loading is not all of the set-up (the SavedModel's export).
    notes: dict[str, str] = field(default_factory=dict)


def inputs_for(path: str, rows: int, model: str) -> np.ndarray:
    """``rows`` valid synthetic rows for the model's (single) input, the same for every peer of one run."""
    from tf1infer.verification.synthetic import random_array

    seed = sum(map(ord, model)) * 1000 + rows
    return random_array(_input_spec(path), rows, np.random.default_rng(seed))


@functools.cache
def _input_spec(path: str):
    """The model's input as tf1infer reads it from the graph (shape, dtype, index limit)."""
    import tf1infer

    with tf1infer.load(path) as predictor:
        return predictor.inputs[0]


# Same-process checks: the races the per-process table cannot call, because whole processes on a small
# shared machine differ by more than the margins. tf1infer and one peer load in the same process and their
# timed rounds alternate, so that a slow spell falls on both. check -> (peer setups, in load order; the
# tf1infer labels to time: fewer than its peer runs, to keep the run short).
CHECKS = {
    "tflite": (("tflite_interpreter", "tf1infer_tflite"), None),
    "tf_function": (("tf_function", "tf1infer"), ("tf1infer predict_on_batch",)),
    # session_feed_dict first: it disables eager execution for the process, as old TF1 scripts did.
    "sess_run": (("session_feed_dict", "tf1infer"), ("tf1infer predict_on_batch",)),
}


def run_peer(peer: str, models: dict[str, str], batch_sizes: list[int], budget: Budget) -> Iterator[dict]:
    """Records for every model and batch size (or one ``error`` record per model that cannot run)."""
    return run_together(peer, (peer,), models, batch_sizes, budget)


def run_check(check: str, models: dict[str, str], batch_sizes: list[int], budget: Budget) -> Iterator[dict]:
    """A same-process check's records: tf1infer's and its peer's runners, timed interleaved."""
    peers, tf1infer_labels = CHECKS[check]
    return run_together(check, peers, models, batch_sizes, budget, tf1infer_labels)


def run_together(
    name: str,
    peers: tuple[str, ...],
    models: dict[str, str],
    batch_sizes: list[int],
    budget: Budget,
    tf1infer_labels: tuple[str, ...] | None = None,
) -> Iterator[dict]:
    """Load ``peers`` into this process, then time all their runners, alternating round by round."""
    for model, path in models.items():
        loaded: list[tuple[Prepared, float]] = []
        for peer in peers:
            start = time.perf_counter()
            try:
                prepared = _SETUPS[peer](path)
            except MissingPeer:
                for prepared, _ in loaded:
                    prepared.finish()
                raise
            except Exception as exc:  # Any peer may fail on some model (a converter, an op); the table says so.
                yield {
                    "model": model,
                    "peer": name,
                    "error": _first_line(exc) if len(peers) == 1 else f"{peer}: {_first_line(exc)}",
                }
                continue
            loaded.append(
                (prepared, prepared.load_seconds if prepared.load_seconds is not None else time.perf_counter() - start)
            )
        if not loaded:
            continue
        try:
            for rows in batch_sizes:
                x = inputs_for(path, rows, model)
                bound, origin = {}, {}
                for prepared, load_seconds in loaded:
                    for label, make in prepared.functions.items():
                        if tf1infer_labels is None or not label.startswith("tf1infer") or label in tf1infer_labels:
                            bound[label], origin[label] = make(x), (prepared, load_seconds)
                for label, result in measure(bound, rows, budget).items():
                    prepared, load_seconds = origin[label]
                    yield {
                        "model": model,
                        "peer": name,
                        "runner": label,
                        "batch_size": rows,
                        "load_seconds": load_seconds,
                        **result,
                        **({"note": prepared.notes[label]} if label in prepared.notes else {}),
                    }
        finally:
            for prepared, _ in loaded:
                prepared.finish()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"[:300]


def _keras(path: str):
    import tf_keras

    return tf_keras.models.load_model(path, compile=False)


def _keras_predict(path):
    model = _keras(path)
    return Prepared({"keras model.predict": lambda x: lambda: model.predict(x, batch_size=len(x), verbose=0)})


def _keras_eager(path):
    model = _keras(path)
    return Prepared({"keras model(x)": lambda x: lambda: model(x, training=False).numpy()})


def _tf_function(path):
    import tensorflow as tf

    model = _keras(path)
    signature = [tf.TensorSpec((None,) + tuple(model.input_shape[1:]), tf.float32)]
    function = tf.function(lambda t: model(t, training=False), input_signature=signature)
    return Prepared({"tf.function": lambda x: lambda: function(x).numpy()})


def _session_feed_dict(path):
    import tensorflow as tf
    import tf_keras

    tf.compat.v1.disable_eager_execution()  # Process-wide, as old TF1 scripts did; this process is ours.
    tf_keras.backend.clear_session()
    model = _keras(path)
    from tf_keras.src import backend  # get_session is no longer exported by tf_keras.backend.

    session = backend.get_session()
    return Prepared(
        {"hand-written sess.run": lambda x: lambda: session.run(model.output, feed_dict={model.input: x})},
        tf_keras.backend.clear_session,
    )


def _frozen(path: str):
    """tf1infer's frozen inference graph of ``path``: what the converting peers start from."""
    import tf1infer
    from tf1infer.backends.precision import frozen_graph_of

    with tf1infer.load(path) as predictor:
        graph_def, feeds = frozen_graph_of(predictor)
        inputs = [feeds[spec.name] for spec in predictor.inputs]
        return graph_def, inputs, [spec.name for spec in predictor.outputs]


def _onnxruntime(path):
    try:
        import onnxruntime
        import tf2onnx
    except ImportError as exc:
        raise MissingPeer(f"onnxruntime/tf2onnx not installed: {BENCH_EXTRA}") from exc
    graph_def, inputs, outputs = _frozen(path)
    onnx_model, _ = tf2onnx.convert.from_graph_def(graph_def, input_names=inputs, output_names=outputs)
    session = onnxruntime.InferenceSession(onnx_model.SerializeToString(), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return Prepared({"ONNX Runtime": lambda x: lambda: session.run(None, {name: x})})


def _tflite_interpreter(path):
    from tf1infer.backends.measure import available_cores
    from tf1infer.backends.tflite import convert_to_tflite, new_interpreter
    from tf1infer.io.feeds import TensorSpec

    graph_def, inputs, outputs = _frozen(path)
    specs_in = [TensorSpec(name, None, np.dtype("float32")) for name in inputs]
    specs_out = [TensorSpec(name, None, np.dtype("float32")) for name in outputs]
    model = convert_to_tflite(graph_def, {name: name for name in inputs}, specs_in, specs_out)
    interpreter = new_interpreter(model, available_cores())
    index = interpreter.get_input_details()[0]["index"]
    output = interpreter.get_output_details()[0]["index"]

    def make(x):
        interpreter.resize_tensor_input(index, x.shape)
        interpreter.allocate_tensors()

        def call():
            interpreter.set_tensor(index, x)
            interpreter.invoke()
            return interpreter.get_tensor(output)

        return call

    return Prepared({"TF Lite interpreter": make})


def _saved_model(path):
    import tensorflow as tf

    import tf1infer

    folder = tempfile.mkdtemp(prefix="tf1infer-bench-")
    export_dir = os.path.join(folder, "saved_model")
    tf1infer.export_saved_model(path, export_dir, verify=False)  # A one-off migration step: not load time.
    start = time.perf_counter()
    loaded = tf.saved_model.load(export_dir)
    signature = loaded.signatures["serving_default"]
    load_seconds = time.perf_counter() - start
    (name,) = signature.structured_input_signature[1]
    return Prepared(
        {
            "exported TF2 SavedModel": lambda x: (
                lambda: [t.numpy() for t in signature(**{name: tf.constant(x)}).values()]
            )
        },
        lambda: shutil.rmtree(folder, ignore_errors=True),
        load_seconds,
    )


def _tf1infer(path):
    import tf1infer

    predictor = tf1infer.load(path)

    def stream(x):
        # A stream of single samples (an iterator, as a data loader gives them), at least 256 long, read in
        # batches of len(x): one call is one whole stream, so the read-ahead thread's start is in the time.
        samples = list(x) * max(1, 256 // len(x))

        def call():
            return sum(len(y) for y in predictor.predict_iter(iter(samples), batch_size=len(x)))

        call.rows = len(samples)  # type: ignore[attr-defined]  # What the timer counts per call.
        return call

    return Prepared(
        {
            "tf1infer predict_on_batch": lambda x: lambda: predictor.predict_on_batch(x),
            "tf1infer predict": lambda x: lambda: predictor.predict(x, batch_size=len(x)),
            "tf1infer predict_iter (single samples)": stream,
        },
        predictor.close,
    )


def _tf1infer_tflite(path):
    import tf1infer

    tflite = tf1infer.load(path, backend="tflite")
    auto = tf1infer.load(path, backend="auto")
    session = tf1infer.load(path)  # The default backend, timed beside the others in the same process.

    def finish():
        tflite.close()
        auto.close()
        session.close()

    functions = {
        "tf1infer auto predict_on_batch": lambda x: lambda: auto.predict_on_batch(x),
        "tf1infer session predict_on_batch": lambda x: lambda: session.predict_on_batch(x),
    }
    notes = {"tf1infer auto predict_on_batch": _backend_note(auto)}
    if tflite.backend == "tflite":  # Otherwise it fell back: the same session as the tf1infer peer.
        functions = {"tf1infer tflite predict_on_batch": lambda x: lambda: tflite.predict_on_batch(x), **functions}
    else:
        notes["tf1infer auto predict_on_batch"] = f"TF Lite fell back: {tflite.backend_report['fallback_reason']}"
    return Prepared(functions, finish, notes=notes)


def _backend_note(predictor) -> str:
    report = predictor.backend_report
    if "auto_choice" in report:
        return "auto chose " + ", ".join(f"{size}: {runtime}" for size, runtime in report["auto_choice"].items())
    return f"runs on the {report['backend']}"


_SETUPS: dict[str, Callable] = {
    "keras_predict": _keras_predict,
    "keras_eager": _keras_eager,
    "tf_function": _tf_function,
    "session_feed_dict": _session_feed_dict,
    "onnxruntime": _onnxruntime,
    "tflite_interpreter": _tflite_interpreter,
    "saved_model": _saved_model,
    "tf1infer": _tf1infer,
    "tf1infer_tflite": _tf1infer_tflite,
}
