"""The session backend: the finalized inference graph, run by the Session's C call on tensors resolved once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from tf1infer.backends.kinds import SESSION
from tf1infer.backends.measure import seconds_per_row
from tf1infer.errors import Tf1InferError
from tf1infer.io.feeds import TensorSpec
from tf1infer.loaders.base import LoadedGraph
from tf1infer.loaders.graph_tools import state_writers
from tf1infer.runtime import kernels
from tf1infer.runtime.runner import Backend, Runner
from tf1infer.runtime.session_runner import session_callable
from tf1infer.verification.synthetic import random_array

# oneDNN's convolutions on CPUs without AVX-512 take a path at batch size 1 that is an order of magnitude slower
# than at 2 (measured on a 2-core AVX2 AMD EPYC with TF_ENABLE_ONEDNN_OPTS=1: mini-Xception 55 ms a call at one row,
# 3.8 ms at two; tf.function and hand-written sess.run alike). Where load measures a one-row call this much slower
# than a two-row call, one-row calls run as two copies of the row.
SINGLE_ROW_PADDING_GAIN = 1.5


def session_backend(loaded: LoadedGraph, source: str) -> Backend:
    """The session's own runner for ``loaded``; one-row calls padded to two where that measures faster.

    The probe runs the model: never on a caller's own session (``from_session``), nor on outputs that write state.
    """
    try:
        runner = session_callable(loaded.session, loaded.inputs, loaded.outputs)
    except (tf.errors.OpError, ValueError, TypeError) as exc:
        raise Tf1InferError(f"{source}: cannot prepare the session to run the model: {exc}") from exc
    report: dict[str, Any] = {"requested": SESSION, "backend": SESSION}
    if loaded.owns_session and not state_writers(tensor.op for tensor in loaded.outputs):
        inputs = [TensorSpec.from_tensor(tensor) for tensor in loaded.inputs]
        outputs = [TensorSpec.from_tensor(tensor) for tensor in loaded.outputs]
        runner, padding = pad_single_rows(runner, inputs, outputs)
        if padding:
            report["single_row_padding"] = padding
    return Backend(runner, report)


def pad_single_rows(
    session_runner: Runner, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]
) -> tuple[Runner, dict[str, Any] | None]:
    """``session_runner``, or one that runs one-row calls as two rows where that is measured faster.

    Measured only where oneDNN's kernels are on (:func:`tf1infer.runtime.kernels.onednn_enabled`) and every input and
    output has a free batch axis, on random inputs. Returns the runner and what was measured (None where nothing
    was): ``{"one_row_ms", "two_rows_ms", "padded"}``.
    """
    batched = all(spec.shape and spec.shape[0] is None for spec in (*inputs, *outputs))
    if not (batched and kernels.onednn_enabled()):
        return session_runner, None
    rng = np.random.default_rng(20261122)
    one = [random_array(spec, 1, rng) for spec in inputs]
    two = [np.concatenate([array, array]) for array in one]
    try:
        one_row = seconds_per_row(session_runner, one)
        two_rows = seconds_per_row(session_runner, two) * 2
    except (tf.errors.OpError, ValueError, TypeError):  # Random inputs this graph rejects: leave it as it is.
        return session_runner, None
    report = {
        "one_row_ms": round(one_row * 1e3, 3),
        "two_rows_ms": round(two_rows * 1e3, 3),
        "padded": two_rows * SINGLE_ROW_PADDING_GAIN < one_row,
    }
    if not report["padded"]:
        return session_runner, report

    def run(*feeds: np.ndarray) -> list:
        if feeds[0].shape[0] != 1:
            return session_runner(*feeds)
        return [output[:1] for output in session_runner(*[np.concatenate([feed, feed]) for feed in feeds])]

    return run, report
