"""A stand-in for ``keras.backend`` on tf1infer models: change ``from keras import backend as K`` and nothing else.

Legacy scripts pull features out of a layer with Keras's backend, on the
model's own tensors::

    from tf1infer import backend as K          # was: from keras import backend as K
    model = tf1infer.load_model("model.h5")    # was: keras.models.load_model("model.h5")
    features = K.function([model.layers[0].input, K.learning_phase()], [model.layers[-3].output])
    [fc] = features([images, 0])               # 0: test mode

What each name does here:

- :func:`function`: a callable over the model's tensors (any tensor can be fed,
  as ``Session.run`` allows), run by the model's session; nothing is added to
  its finalized graph. ``updates`` are refused (a Predictor does not train).
- :func:`learning_phase` / :func:`set_learning_phase`: the models run in
  inference mode only; the learning phase is accepted as ``0`` / ``False`` and
  refused as ``1`` (training mode: dropout on), which tf1infer never runs.
- :func:`get_session`: the session of the model loaded last (still open), as
  Keras's one global session was; :func:`clear_session`: nothing to clear (each
  model owns its graph; Flask apps that call it after every request keep
  their model), so it does nothing.
- :func:`int_shape`, :func:`shape`, :func:`get_value`, :func:`ndim`,
  :func:`dtype`, :func:`floatx`, :func:`image_data_format`,
  :func:`epsilon`: read-only facts of tensors, variables and arrays.
  :func:`shape` gives the static shape (``None`` for free sizes), not a
  tensor: the graph is final.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from tf1infer.errors import InputError, UnsupportedOperationError

# Every live Predictor by its graph, and the one loaded last (get_session); weak: nothing here keeps a model open.
_BY_GRAPH: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()
_LAST: list[weakref.ReferenceType] = []


def register(predictor: Any) -> None:
    """Make ``predictor``'s tensors usable here (called by every :class:`tf1infer.Predictor` it creates)."""
    _BY_GRAPH[id(predictor.graph)] = predictor
    _LAST[:] = [weakref.ref(predictor)]


class _LearningPhase:
    """What :func:`learning_phase` returns: a marker for the place of the learning-phase value in a function's inputs."""

    def __repr__(self) -> str:
        return "<tf1infer learning phase: 0 (inference)>"


_PHASE = _LearningPhase()


def learning_phase() -> _LearningPhase:
    """The learning phase, to list among :func:`function`'s inputs; its value must be 0 (inference)."""
    return _PHASE


def set_learning_phase(value: int | bool) -> None:
    """Accepted for 0 / False (inference, what tf1infer runs); 1 is refused: tf1infer never runs training mode."""
    _check_phase(value)


def _check_phase(value: Any) -> None:
    if np.ndim(value) != 0 or value not in (0, False):
        raise UnsupportedOperationError(
            f"learning phase {value!r}: tf1infer runs models in inference mode only (learning phase 0); training "
            "mode (dropout on, batch statistics) needs the model in Keras: tf1infer.export_keras(path, 'model.keras')"
        )


class Function:
    """What :func:`function` returns: call it with one value per input, get a list of arrays (as Keras's)."""

    def __init__(self, predictor: Any, inputs: list[Any], phase_at: list[int], outputs: list[tf.Tensor]):
        self._predictor = predictor
        self._inputs = inputs
        self._phase_at = phase_at
        self._outputs = outputs

    def __call__(self, values: Any) -> list[np.ndarray]:
        values = list(values) if isinstance(values, (list, tuple)) else [values]
        expected = len(self._inputs) + len(self._phase_at)
        if len(values) != expected:
            raise InputError(f"this function takes {expected} values (its inputs, in order); got {len(values)}")
        fed = []
        for index, value in enumerate(values):
            if index in self._phase_at:
                _check_phase(value)
            else:
                fed.append(value)
        feeds = {tensor: _array_for(tensor, value) for tensor, value in zip(self._inputs, fed)}
        return list(self._predictor.run(list(self._outputs), feeds))


def function(inputs: Sequence[Any], outputs: Sequence[Any] | Any, updates: Any = None, **kwargs: Any) -> Function:
    """Keras's ``K.function(inputs, outputs)`` on a tf1infer model's tensors.

    Args:
        inputs: tensors of one loaded model (``model.input``, ``model.layers[i].input`` or any tensor to feed), and
            :func:`learning_phase` where the script passes it.
        outputs: tensors of the same model (``model.layers[i].output``, ``model.output``), one or a list.
        updates: must be empty: a tf1infer model does not train.

    Returns:
        A :class:`Function`: ``f([x, 0])`` gives the outputs as a list of numpy arrays.

    Raises:
        UnsupportedOperationError: ``updates`` given, or tensors of no tf1infer model (a Keras model's own).
        InputError: tensors of two different models.

    Example:
        >>> from tf1infer import backend as K
        >>> model = tf1infer.load_model("legacy_models/cnn.h5")
        >>> f = K.function([model.layers[0].input, K.learning_phase()], [model.layers[-2].output])
        >>> [features] = f([np.zeros((2, 16, 16, 3), np.float32), 0])
    """
    if updates:
        raise UnsupportedOperationError("K.function(updates=...): a tf1infer model does not train or assign")
    items = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    wanted = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
    phase_at = [index for index, item in enumerate(items) if item is _PHASE]
    tensors = [_tensor(item) for item in items if item is not _PHASE]
    fetched = [_tensor(item) for item in wanted]
    owners = {id(tensor.graph) for tensor in (*tensors, *fetched)}
    if len(owners) > 1:
        raise InputError("K.function: the inputs and outputs belong to different models (each has its own graph)")
    return Function(_owner(fetched[0] if fetched else tensors[0]), tensors, phase_at, fetched)


def get_session() -> Any:
    """The session of the model loaded last, as Keras's global one (``K.get_session().run(...)`` by name works)."""
    predictor = _LAST[0]() if _LAST else None
    if predictor is None or predictor.closed:
        raise UnsupportedOperationError(
            "K.get_session(): no tf1infer model is loaded (each model has its own session: model.session)"
        )
    return predictor.session


def clear_session() -> None:
    """Nothing to clear: each tf1infer model owns its graph and session, so loaded models keep working."""


def int_shape(x: Any) -> tuple[int | None, ...] | None:
    """The static shape as a tuple (``None`` for free sizes); an array's shape; None for an unknown rank."""
    if isinstance(x, np.ndarray) or np.isscalar(x):
        return tuple(np.shape(x))
    shape = _tensor(x).shape
    return None if shape.rank is None else tuple(shape.as_list())


def shape(x: Any) -> tuple[int | None, ...] | None:
    """The static shape (the graph is final: no shape tensor is created); as :func:`int_shape`."""
    return int_shape(x)


def ndim(x: Any) -> int | None:
    found = int_shape(x)
    return None if found is None else len(found)


def dtype(x: Any) -> str:
    if isinstance(x, np.ndarray):
        return x.dtype.name
    return _tensor(x).dtype.base_dtype.name


def get_value(x: Any) -> np.ndarray:
    """A variable's value, read from its model's session (an array is returned as it is)."""
    if isinstance(x, np.ndarray) or np.isscalar(x):
        return np.asarray(x)
    graph = getattr(x, "graph", None)
    predictor = _BY_GRAPH.get(id(graph)) if graph is not None else None
    if predictor is None or predictor.closed:
        raise UnsupportedOperationError(f"K.get_value({x!r}): not a variable of a loaded tf1infer model")
    return predictor.session.run(x)


def batch_get_value(xs: Sequence[Any]) -> list[np.ndarray]:
    return [get_value(x) for x in xs]


def floatx() -> str:
    return "float32"


def epsilon() -> float:
    return 1e-7


def image_data_format() -> str:
    return "channels_last"


def _tensor(item: Any) -> Any:
    """A tensor (or variable) of a loaded model: itself, or a layer view's output."""
    tensor = getattr(item, "output", item) if not isinstance(item, (tf.Tensor, tf.Variable)) else item
    if not isinstance(tensor, (tf.Tensor, tf.Variable)) or id(tensor.graph) not in _BY_GRAPH:
        raise UnsupportedOperationError(
            f"{item!r} is not a tensor of a tf1infer model: pass model.input, model.layers[i].input or .output of a "
            "model from tf1infer.load (Keras's own models take Keras's own backend)"
        )
    return tensor


def _owner(tensor: tf.Tensor) -> Any:
    predictor = _BY_GRAPH.get(id(tensor.graph))
    if predictor is None:
        raise UnsupportedOperationError(f"{tensor.name}: its model is closed or gone")
    return predictor


def _array_for(tensor: tf.Tensor, value: Any) -> np.ndarray:
    array = np.asarray(value)
    wanted = tensor.dtype.base_dtype
    if wanted.is_floating and array.dtype.kind in "iuf" and array.dtype != wanted.as_numpy_dtype:
        array = array.astype(wanted.as_numpy_dtype)  # Keras casts float inputs: images come as float64 or uint8.
    if not tensor.shape.is_compatible_with(array.shape):
        raise InputError(f"K.function input {tensor.name}: expects shape {tensor.shape}; got {array.shape}")
    return array


__all__ = [
    "Function",
    "batch_get_value",
    "clear_session",
    "dtype",
    "epsilon",
    "floatx",
    "function",
    "get_session",
    "get_value",
    "image_data_format",
    "int_shape",
    "learning_phase",
    "ndim",
    "set_learning_phase",
    "shape",
]
