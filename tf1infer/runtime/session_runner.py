"""One call of the Session on fixed input and output tensors, without ``Session.run``'s per-call Python.

In TensorFlow 2.x, ``Session.make_callable(fetches, feed_list=...)`` is
``Session.run`` with a feed dict built per call (TF 1.x's C "callable" fast
path is gone). Every call then builds a fetch handler, converts each feed with
``np.asarray`` (constructing a ``NumpyVersion`` on the way), looks graph
elements up, takes the graph's run lock and restructures the results: about
150 us of Python per call here, more than the whole run of a small model. On
the zoo CNN, a one-row call took 230 us through ``make_callable`` and 81 us
through :class:`SessionRunner`, a 16-row call 615 against 440 us (same
session, same arrays, same outputs).

:class:`SessionRunner` resolves the tensors once and calls the Session's own
C entry point (``TF_SessionRun_wrapper``, through ``BaseSession._do_call``,
which turns TensorFlow's errors into the same typed ``OpError`` with the
failing op that ``Session.run`` raises). What ``Session.run`` checked per call
is kept: an array that is not already of the input's dtype, of a shape the
input cannot take, or a call on a closed session goes through ``Session.run``
itself, and gets its conversion or its error. Those entry points are private
to TensorFlow; where a TensorFlow release lacks them, :func:`session_callable`
falls back to ``make_callable``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

Runner = Callable[..., list[np.ndarray]]

# The private Session members the direct call needs (checked, not assumed).
_SESSION_ENTRY_POINTS = ("_do_call", "_call_tf_sessionrun", "_extend_graph", "_closed")


class SessionRunner:
    """Runs ``outputs`` from arrays fed to ``inputs``; called like ``Session.make_callable``'s callable.

    Args:
        session: the Session (its graph holds the tensors).
        inputs: the tensors fed, in the order of the call's arguments.
        outputs: the tensors fetched; the call returns a list of arrays in this order.
        feeds_as_given: feed arrays of the inputs' dtypes (strings as bytes) in whatever shape they come, as
            TensorFlow Serving's C++ session does: ``Session.run`` refuses a shape the input's static shape
            excludes even where the input is an intermediate tensor that takes it (TF Serving's
            ``half_plus_two`` declares ``x`` as ``[?, 1]`` and is fed ``[3]``). The caller checks placeholders.
    """

    def __init__(
        self,
        session: tf.compat.v1.Session,
        inputs: Sequence[tf.Tensor],
        outputs: Sequence[tf.Tensor],
        feeds_as_given: bool = False,
    ):
        self._session = session
        self._as_given = feeds_as_given
        self._generic = session.make_callable(list(outputs), feed_list=list(inputs))
        self._feeds = [tensor._as_tf_output() for tensor in inputs]  # noqa: SLF001 - the C API's handles.
        self._fetches = [tensor._as_tf_output() for tensor in outputs]  # noqa: SLF001
        self._dtypes = [np.dtype(tensor.dtype.as_numpy_dtype) for tensor in inputs]
        # Object arrays (strings) need Session.run's conversion to bytes: such inputs always take its path.
        self._takes_arrays_as_they_are = not any(dtype.hasobject for dtype in self._dtypes)
        # Per input: its rank and its known dimensions, or None where its rank is unknown.
        self._shapes = [
            None
            if tensor.shape.rank is None
            else (
                tensor.shape.rank,
                tuple((axis, dim) for axis, dim in enumerate(tensor.shape.as_list()) if dim is not None),
            )
            for tensor in inputs
        ]
        # A finalized graph cannot change: the session learns it once. A graph still open may gain ops between
        # calls; Session.run extends the session before each call there, and so does this.
        self._extend_each_call = not session.graph.finalized
        session._extend_graph()  # noqa: SLF001

    def __call__(self, *arrays: Any) -> list[np.ndarray]:
        session = self._session
        if session._closed or not self._takes(arrays):  # noqa: SLF001
            return self._generic(*arrays)  # Session.run's own conversion, or its error.
        if self._extend_each_call:
            session._extend_graph()  # noqa: SLF001
        return session._do_call(
            session._call_tf_sessionrun, None, dict(zip(self._feeds, arrays)), self._fetches, [], None
        )  # noqa: SLF001

    def _takes(self, arrays: Sequence[Any]) -> bool:
        """True where every array can go to TensorFlow as it is: an ndarray of its input's dtype and shape."""
        if not (self._takes_arrays_as_they_are or self._as_given) or len(arrays) != len(self._feeds):
            return False
        for array, dtype, shape in zip(arrays, self._dtypes, self._shapes):
            if type(array) is not np.ndarray or array.dtype != dtype:
                return False
            if shape is not None and not self._as_given:
                rank, known = shape
                if array.ndim != rank or any(array.shape[axis] != dim for axis, dim in known):
                    return False
        return True


def session_callable(
    session: tf.compat.v1.Session, inputs: Sequence[tf.Tensor], outputs: Sequence[tf.Tensor]
) -> Runner:
    """The fastest callable running ``outputs`` from ``inputs`` in ``session``: a :class:`SessionRunner`
    where this TensorFlow has the entry points it needs, else ``Session.make_callable``'s.

    Example:
        >>> run = session_callable(session, [x], [y])
        >>> [y_value] = run(np.ones((4, 10), np.float32))
    """
    if all(hasattr(session, name) for name in _SESSION_ENTRY_POINTS) and all(
        hasattr(tensor, "_as_tf_output") for tensor in (*inputs, *outputs)
    ):
        return SessionRunner(session, inputs, outputs)
    return session.make_callable(list(outputs), feed_list=list(inputs))


__all__ = ["SessionRunner", "session_callable"]
