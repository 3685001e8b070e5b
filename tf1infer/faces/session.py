"""The TF1 session surface of legacy graph loops, on a Predictor: ``predictor.run(fetches, feed_dict)``.

After ``tf.import_graph_def``, ``import_meta_graph`` + ``restore`` or
``tf.saved_model.loader.load``, TF1 scripts look tensors up by name and call
``sess.run(fetches, feed_dict)``: names with or without ``:0``, often with the
``import/`` prefix that ``import_graph_def`` adds, several fetches, extra feeds
such as ``keep_prob: 1.0``. :meth:`SessionFace.run` takes all of that and runs
it through the Predictor's session with the direct call
(:mod:`tf1infer.runtime.session_runner`), one runner per set of feeds and fetches,
kept for the next call: the results are ``Session.run``'s, at a fraction of its
per-call cost, and nothing is added to the finalized graph.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import tensorflow as tf

from tf1infer.errors import InputError, LayerNotFoundError
from tf1infer.loaders.base import IMPORT_PREFIX

# Runners kept per (feeds, fetches); a loop uses one or two, a script a handful.
_RUNNERS_KEPT = 64


class SessionFace:
    """``run(fetches, feed_dict)`` on a Predictor (mixed into :class:`tf1infer.Predictor`)."""

    # What the Predictor this is mixed into provides.
    _graph: tf.Graph
    _session: tf.compat.v1.Session
    _source: str
    _run_with: Callable[..., list[np.ndarray]]

    def run(self, fetches: Any, feed_dict: Mapping[Any, Any] | None = None) -> Any:
        """``Session.run(fetches, feed_dict)`` on the model's graph, as a TF1 loop calls it.

        Args:
            fetches: a tensor or op of ``predictor.graph``, or its name
                (``"softmax:0"``, ``"softmax"`` meaning its first output, with
                or without the ``import/`` prefix), or a list, tuple or dict of
                them, as ``Session.run`` takes.
            feed_dict: tensors (or their names, likewise) to the values fed:
                arrays, or plain numbers for scalar placeholders such as
                ``keep_prob``.

        Returns:
            The fetched values in the structure of ``fetches`` (``None`` for an op).

        Raises:
            LayerNotFoundError: a name is not in the graph (the closest names are suggested).
            InputError: a fed value does not fit its placeholder (``Session.run``'s reason).
            PredictionError: TensorFlow failed; its reason and the failing op are kept.

        Example:
            >>> predictor = tf1infer.load("legacy_models/tf1/frozen.pb")
            >>> probs = predictor.run("import/probs:0", {"import/x:0": batch})
        """
        flat = [self._graph_element(item, "fetch") for item in tf.nest.flatten(fetches)]
        feeds = [(self._graph_element(key, "feed"), value) for key, value in (feed_dict or {}).items()]
        if any(isinstance(tensor, tf.Operation) for tensor, _ in feeds):
            raise LayerNotFoundError("feed_dict keys must be tensors (placeholders), not ops: name them with ':0'")
        names = ", ".join(tensor.name for tensor, _ in feeds)
        what = f"{len(flat)} fetch(es) fed {names or 'nothing'}"
        try:
            if any(isinstance(item, tf.Operation) for item in flat):  # Ops return None: Session.run's own path.
                values = self._run_with(lambda: self._session.run(flat, dict(feeds)), [], what)
            else:
                runner = self._runner([tensor for tensor, _ in feeds], flat)
                arrays = [_as_feed(tensor, value) for tensor, value in feeds]
                values = self._run_with(runner, arrays, what) if flat else []
        except (ValueError, TypeError) as exc:  # Session.run's refusal of a feed (shape, dtype), as it words it.
            raise InputError(f"{self._source}: feed_dict does not fit the graph: {exc}") from exc
        return tf.nest.pack_sequence_as(fetches, list(values))

    def _runner(self, feeds: list[tf.Tensor], fetches: list[tf.Tensor]):
        from tf1infer.runtime.session_runner import session_callable

        key = (tuple(tensor.name for tensor in feeds), tuple(tensor.name for tensor in fetches))
        lock = self.__dict__.setdefault("_runners_lock", threading.Lock())
        with lock:
            runners = self.__dict__.setdefault("_runners", OrderedDict())
            runner = runners.get(key)
            if runner is None:
                runner = runners[key] = session_callable(self._session, feeds, fetches)
                if len(runners) > _RUNNERS_KEPT:
                    runners.popitem(last=False)
            else:
                runners.move_to_end(key)
            return runner

    def _graph_element(self, ref: Any, role: str) -> tf.Tensor | tf.Operation:
        """The tensor or op ``ref`` names, trying the name with and without ``import/`` and ``:0``."""
        graph = self._graph
        if isinstance(ref, (tf.Tensor, tf.Operation)):
            if ref.graph is not graph:
                raise LayerNotFoundError(
                    f"{self._source}: {role} {ref.name} belongs to another graph than this model's"
                )
            return ref
        if not isinstance(ref, str):
            raise LayerNotFoundError(
                f"{self._source}: a {role} must be a tensor, an op or a name; got {type(ref).__name__}"
            )
        for name in _candidate_names(ref):
            op_name, _, index = name.partition(":")
            try:
                op = graph.get_operation_by_name(op_name)
            except KeyError:
                continue
            if index:
                if int(index) < len(op.outputs):
                    return op.outputs[int(index)]
                continue
            return op.outputs[0] if op.outputs else op
        from tf1infer.loaders.base import closest_names

        suggestions = closest_names(
            ref.split(":")[0].removeprefix(IMPORT_PREFIX), [op.name for op in graph.get_operations()]
        )
        hint = f"; closest names: {', '.join(suggestions)}" if suggestions else ""
        raise LayerNotFoundError(f"{self._source}: {role} {ref!r} is not in the graph{hint}")


def _candidate_names(name: str) -> list[str]:
    """The name, then the same with ``import/`` removed or added (what scripts wrote against import_graph_def)."""
    return [name, name[len(IMPORT_PREFIX) :] if name.startswith(IMPORT_PREFIX) else IMPORT_PREFIX + name]


def _as_feed(tensor: tf.Tensor, value: Any) -> Any:
    """A numeric value as an array of the placeholder's dtype (what Session.run converts it to); others as given."""
    dtype = tensor.dtype.base_dtype
    if dtype == tf.string or isinstance(value, np.ndarray) and value.dtype == dtype.as_numpy_dtype:
        return value
    try:
        return np.asarray(value, dtype=dtype.as_numpy_dtype)
    except (TypeError, ValueError):
        return value  # Session.run gives its own error for it.


__all__ = ["SessionFace"]
