"""What every loader returns, and the helpers loaders share.

A loader's only job is to turn a file into a :class:`LoadedGraph`: a private
``tf.Graph`` holding the inference graph, a ``Session`` holding its weights, and
the input and output tensors. Everything after that (validation, batching,
``sess.run``) is one code path in :mod:`tf1infer.runtime.predictor`, whatever the format.
"""

from __future__ import annotations

import difflib
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import tensorflow as tf
from tensorflow.core.protobuf import rewriter_config_pb2

from tf1infer.errors import ModelLoadError, ModelNotFoundError

# Metadata key of a graph loaded without endpoints (saved with its training ops, none named): why predict cannot
# run, in words; run() by name still works.
ENDPOINTS_UNKNOWN = "endpoints_unknown"


@dataclass
class LoadedGraph:
    """A model brought into its own graph and session, ready to be finalized.

    Attributes:
        graph: the model's private ``tf.Graph``.
        session: a ``tf.compat.v1.Session`` on ``graph`` with every variable
            initialized or restored.
        inputs: input tensors (placeholders), in the model's input order.
        outputs: output tensors, in the model's output order; both empty for
            a graph whose endpoints cannot be told (``metadata[ENDPOINTS_UNKNOWN]``
            says why): it serves ``run()`` by name only.
        input_names: user-facing name of each input (Keras layer name,
            signature key, or op name).
        output_names: user-facing name of each output.
        metadata: facts about the source (format, versions recorded in the
            file...), shown by ``tf1infer inspect``.
        owns_session: whether closing the Predictor closes the session.
        keras_model: for Keras formats, the tf_keras model built in ``graph``
            (its config and layers, for the Keras 3 export); None otherwise.
    """

    graph: tf.Graph
    session: tf.compat.v1.Session
    inputs: list[tf.Tensor]
    outputs: list[tf.Tensor]
    input_names: list[str]
    output_names: list[str]
    metadata: dict[str, Any] = field(default_factory=dict)
    owns_session: bool = True
    keras_model: Any = None


# ConfigProto.inter_op_parallelism_threads < 0: "all operations are performed in caller's thread". An
# inference graph is mostly a chain of ops, and handing each op to TensorFlow's inter-op pool costs a thread
# switch per op. Measured with calls interleaved in one process, against TensorFlow's pool: 1.1-2x faster at
# batch 1 on the zoo's MLP, CNN and LSTM, level at batch 256 and on the mini-Xception, whose time is in its
# convolutions. Each op still spreads over the intra-op pool; concurrent callers each run in their own thread.
RUN_IN_CALLER_THREAD = -1

# TensorFlow's plain CPU kernels (the default wherever oneDNN is off: AVX2-only x86, arm64) refuse channels-first
# convolutions and pooling ("Default MaxPoolingOp only supports NHWC on device type CPU"), which Keras 1 Theano-ordered
# models and Keras 2 channels_first models are made of. Grappler's layout optimizer turns them into channels-last ops
# between transposes when the session first runs the graph; graphs without such ops are left as they are.
CHANNELS_LAST_ON_CPU = rewriter_config_pb2.RewriterConfig.NCHW_TO_NHWC


def new_session(
    graph: tf.Graph,
    session_config: tf.compat.v1.ConfigProto | None = None,
    intra_op_threads: int | None = None,
    inter_op_threads: int | None = None,
) -> tf.compat.v1.Session:
    """Create the one Session a model will use, on its own graph.

    Thread counts given as arguments override those in ``session_config``;
    the caller's ``ConfigProto`` is copied, never modified. Unless a count of
    inter-op threads is given (here, in ``session_config`` or in
    ``TF_NUM_INTEROP_THREADS``), the session runs its ops in the calling
    thread (:data:`RUN_IN_CALLER_THREAD`). Unless ``session_config`` asks
    for another CPU layout conversion, channels-first ops run as channels-last
    ones (:data:`CHANNELS_LAST_ON_CPU`), so that they run on every CPU.
    """
    config = tf.compat.v1.ConfigProto()
    if session_config is not None:
        config.CopyFrom(session_config)
    if intra_op_threads is not None:
        config.intra_op_parallelism_threads = int(intra_op_threads)
    if inter_op_threads is not None:
        config.inter_op_parallelism_threads = int(inter_op_threads)
    elif config.inter_op_parallelism_threads == 0 and not os.environ.get("TF_NUM_INTEROP_THREADS"):
        config.inter_op_parallelism_threads = RUN_IN_CALLER_THREAD
    rewrites = config.graph_options.rewrite_options
    if rewrites.cpu_layout_conversion == rewriter_config_pb2.RewriterConfig.NO_CONVERSION_ON_CPU:
        rewrites.cpu_layout_conversion = CHANNELS_LAST_ON_CPU
    return PersistentSession(graph=graph, config=config)


# tf.import_graph_def's default name scope, which scripts written against it put in front of every name.
IMPORT_PREFIX = "import/"


class ModelGraph(tf.Graph):
    """A Predictor's graph, which also answers to the names TF1 scripts wrote against ``tf.import_graph_def``.

    ``tf.import_graph_def(graph_def)`` puts every op under ``import/``, and
    scripts look tensors up as ``"import/input:0"``; tf1infer imports them
    without the prefix. A name that is not found is tried again with the
    prefix removed (or added), so ``predictor.graph.get_tensor_by_name``,
    ``get_operation_by_name`` and ``predictor.session.run`` take both. Names
    that exist are resolved exactly as ``tf.Graph`` does.
    """

    def get_tensor_by_name(self, name):
        return self._either_name(super().get_tensor_by_name, name)

    def get_operation_by_name(self, name):
        return self._either_name(super().get_operation_by_name, name)

    def as_graph_element(self, obj, allow_tensor=True, allow_operation=True):
        return self._either_name(
            lambda ref: super(ModelGraph, self).as_graph_element(ref, allow_tensor, allow_operation), obj
        )

    @staticmethod
    def _either_name(lookup, name):
        try:
            return lookup(name)
        except (KeyError, ValueError):
            if not isinstance(name, str):
                raise
            other = name[len(IMPORT_PREFIX) :] if name.startswith(IMPORT_PREFIX) else IMPORT_PREFIX + name
            try:
                return lookup(other)
            except (KeyError, ValueError):
                pass
            raise


class PersistentSession(tf.compat.v1.Session):
    """The Session a Predictor owns: a ``with session:`` block does not close it.

    TF1 code holds a session with ``with sess:`` / ``with predictor.session as
    sess:``, and ``Session.__exit__`` closes it, leaving the Predictor with a
    dead session. Here the block still makes the session and its graph the
    defaults, and leaves them, but only :meth:`close` (called by
    ``Predictor.close()``) closes it.
    """

    _in_exit = False

    def __exit__(self, exec_type, exec_value, exec_tb):
        self._in_exit = True
        try:
            super().__exit__(exec_type, exec_value, exec_tb)
        finally:
            self._in_exit = False

    def close(self) -> None:
        if self._in_exit:  # Session.__exit__ closing it: the Predictor closes it when it is done.
            return
        super().close()


@contextmanager
def graph_and_session(
    session_config: tf.compat.v1.ConfigProto | None = None,
    intra_op_threads: int | None = None,
    inter_op_threads: int | None = None,
) -> Iterator[tuple[tf.Graph, tf.compat.v1.Session]]:
    """A new private graph and its session; the session is closed if loading fails inside.

    Loops built inside (Keras recurrent layers) keep no intermediates for
    gradients: see :func:`inference_loops`.
    """
    graph = ModelGraph()
    session = new_session(graph, session_config, intra_op_threads, inter_op_threads)
    try:
        with inference_loops():
            yield graph, session
    except BaseException:
        session.close()
        raise


@contextmanager
def inference_loops() -> Iterator[None]:
    """Build functional loops (``While``) without the intermediates only gradients need.

    In a TF1-style graph TensorFlow makes every ``While`` push each value its
    body computes onto an accumulator list, for a gradient that inference
    never takes: an LSTM layer's loop carries 34 such lists. TF Lite's
    converter cannot lower those lists (their element type is unknown), and
    they cost memory in the session. The switch is process-wide in TensorFlow,
    so it is restored when the last load inside such a scope ends (loads may
    run in several threads at once): a caller's own training graphs built
    afterwards keep their gradients.
    """
    from tensorflow.python.ops import control_flow_util_v2  # The public setter has no getter to restore with.

    global _inference_loop_scopes, _saved_intermediates_setting
    with _INFERENCE_LOOPS_LOCK:
        if not _inference_loop_scopes:
            _saved_intermediates_setting = getattr(
                control_flow_util_v2, "_EXPERIMENTAL_OUTPUT_ALL_INTERMEDIATES_OVERRIDE", None
            )
            tf.compat.v1.experimental.output_all_intermediates(False)
        _inference_loop_scopes += 1
    try:
        yield
    finally:
        with _INFERENCE_LOOPS_LOCK:
            _inference_loop_scopes -= 1
            if not _inference_loop_scopes:
                control_flow_util_v2._EXPERIMENTAL_OUTPUT_ALL_INTERMEDIATES_OVERRIDE = _saved_intermediates_setting


_INFERENCE_LOOPS_LOCK = threading.Lock()
_inference_loop_scopes = 0  # inference_loops scopes open now, in any thread.
_saved_intermediates_setting = None  # TensorFlow's setting before the first of them.


def require_path(path: str | os.PathLike) -> str:
    """Return ``path`` as a string, or raise ModelNotFoundError if it does not exist."""
    path = os.fspath(path)
    if not os.path.exists(path):
        parent = os.path.dirname(os.path.abspath(path))
        hint = "" if os.path.isdir(parent) else f" (its folder {parent} does not exist either)"
        raise ModelNotFoundError(f"{path}: no such file or directory{hint}")
    return path


def closest_names(name: str, candidates: Sequence[str], limit: int = 5) -> list[str]:
    """Candidates that look like ``name``, best first, for "did you mean" hints."""
    by_lower: dict[str, str] = {}
    for candidate in candidates:
        by_lower.setdefault(candidate.lower(), candidate)
    matches = difflib.get_close_matches(name.lower(), list(by_lower), n=limit, cutoff=0.4)
    return [by_lower[match] for match in matches]


def short_name(tensor: tf.Tensor) -> str:
    """How callers name a tensor: its op name for an op's first output, else the tensor name."""
    return tensor.op.name if tensor.value_index == 0 else tensor.name


def resolve_tensor(graph: tf.Graph, ref: Any, role: str, source: str = "graph") -> tf.Tensor:
    """Find the tensor ``ref`` names in ``graph``.

    ``ref`` may be a ``tf.Tensor`` of this graph, a tensor name (``"x:0"``) or
    an op name (``"x"``, meaning its first output).

    Raises:
        ModelLoadError: the tensor does not exist; the message lists the
            closest op names.
    """
    if isinstance(ref, tf.Tensor):
        if ref.graph is not graph:
            raise ModelLoadError(f"{source}: {role} tensor {ref.name} belongs to another graph")
        return ref
    if isinstance(ref, tf.Operation):
        ref = ref.name
    if not isinstance(ref, str):
        raise ModelLoadError(
            f"{source}: {role} must be a tensor, a tensor name or an op name; got {type(ref).__name__}"
        )
    op_name, _, index = ref.partition(":")
    try:
        op = graph.get_operation_by_name(op_name)
    except KeyError:
        suggestions = closest_names(op_name, [op.name for op in graph.get_operations()])
        hint = f"; closest names: {', '.join(suggestions)}" if suggestions else ""
        raise ModelLoadError(f"{source}: {role} {ref!r} is not in the graph{hint}") from None
    position = int(index) if index else 0
    if position >= len(op.outputs):
        raise ModelLoadError(
            f"{source}: {role} {ref!r}: op {op_name} has {len(op.outputs)} output(s), "
            f"so the largest index is {len(op.outputs) - 1}"
        )
    return op.outputs[position]


def quiet_deprecation():
    """Silence TensorFlow's "X is deprecated" log lines around a call of a TF1 API.

    Using the TF1 APIs (loading TF1 SavedModels, pruning TF1 graphs) is what
    this library is for; the warnings would only tell its users what they know.
    """
    from tensorflow.python.util import deprecation  # No public switch for these messages.

    return deprecation.silence()
