"""The Keras 2 model surface that legacy inference code reads, on a Predictor of a Keras model.

Old scripts do more than ``model.predict``: they print ``model.summary()``, walk
``model.layers``, read ``layers[-1].output_shape``, call ``model.compile(...)``
after ``model_from_json`` + ``load_weights``, call ``model._make_predict_function()``
before serving from threads, and pull features out of an inner layer with
``K.function([model.input, K.learning_phase()], [model.layers[-2].output])``.
:class:`KerasModelFace` gives a :class:`tf1infer.Predictor` those
names, read from the tf_keras model the loader built in the Predictor's graph:

- ``layers``, ``get_layer``: read-only :class:`LayerView` objects (name,
  shapes, ``get_weights()`` from the session, ``get_config()``, ``output``);
- ``summary()``, ``count_params()``, ``get_config()``, ``to_json()``,
  ``get_weights()``, ``input``, ``output``;
- ``compile()``, ``_make_predict_function()``, ``make_predict_function()``:
  accepted and ignored (inference needs no optimizer, and the session is ready
  for threads from the start);
- ``function(outputs)``: the ``K.function`` idiom, running any layer's output
  (already in the finalized graph) through the session;
- ``predict_generator``: ``predict`` on a generator, as Keras 2 had it;
- ``save(path)``: the model written back as a Keras ``.h5``;
- ``fit``, ``train_on_batch``, ``evaluate``... raise
  :class:`~tf1infer.errors.UnsupportedOperationError` pointing to
  :func:`tf1infer.export_keras`, whose ``.keras`` file Keras 3 trains.

Graph formats (frozen GraphDef, meta graph, SavedModel) have no Keras layers:
the Keras-only names raise ``UnsupportedOperationError`` saying so.
"""

from __future__ import annotations

import copy
import os
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from tf1infer.errors import LayerNotFoundError, UnsupportedOperationError

# Keras methods that train or change the model, and what the message says instead.
_TRAINING_METHODS = (
    "fit",
    "fit_generator",
    "train_on_batch",
    "evaluate",
    "evaluate_generator",
    "test_on_batch",
    "set_weights",
    "load_weights",
    "add_loss",
    "add_metric",
    "reset_states",
)
_TRAINING_HINT = (
    "a tf1infer Predictor is a frozen inference graph: it does not train or change its weights. To fine-tune the model, "
    "export it to Keras 3 (tf1infer.export_keras(path, 'model.keras'), then keras.saving.load_model('model.keras')); "
    "to use other weights, load them: tf1infer.load(path)"
)


class LayerView:
    """One layer of a loaded Keras model, read-only: what inference code reads from ``model.layers``.

    Attributes:
        name, class_name, trainable, dtype: as the layer has them.
        input_shape, output_shape: as Keras reports them (None for a layer
            called on several inputs of different shapes).
        input, output: the layer's tensors in the Predictor's graph; pass
            ``output`` to :meth:`KerasModelFace.function` (or its name to
            ``tf1infer.load(path, outputs=[...])``).
    """

    def __init__(self, layer: Any, owner: KerasModelFace):
        self._layer = layer
        self._owner = owner
        self.name: str = layer.name
        self.class_name: str = type(layer).__name__
        self.trainable: bool = bool(layer.trainable)
        self.dtype = getattr(layer, "dtype", None)

    @property
    def input_shape(self) -> Any:
        return _shape_or_none(self._layer, "input_shape")

    @property
    def output_shape(self) -> Any:
        return _shape_or_none(self._layer, "output_shape")

    @property
    def input(self) -> Any:
        return self._layer.input

    @property
    def output(self) -> Any:
        return self._layer.output

    @property
    def weights(self) -> list[Any]:
        """The layer's variables in the Predictor's graph (``K.get_value`` of :mod:`tf1infer.backend` reads one)."""
        return list(self._layer.weights)

    @property
    def weight_names(self) -> list[str]:
        return [weight.name for weight in self._layer.weights]

    def get_weights(self) -> list[np.ndarray]:
        """The layer's weights as numpy arrays, read from the Predictor's session."""
        return self._owner._read_variables(self._layer.weights)

    def get_config(self) -> dict[str, Any]:
        return copy.deepcopy(self._layer.get_config())

    def count_params(self) -> int:
        return int(self._layer.count_params())

    def __getattr__(self, name: str) -> Any:
        if name in ("set_weights", "add_weight", "build", "call"):
            raise UnsupportedOperationError(f"layer {self.name!r}: {name}() is not available: {_TRAINING_HINT}")
        raise AttributeError(f"{type(self).__name__} of layer {self.name!r} has no attribute {name!r}")

    def __repr__(self) -> str:
        return f"<LayerView {self.name!r} ({self.class_name}) output_shape={self.output_shape}>"


class KerasFunction:
    """``K.function(inputs, outputs)`` on a loaded model: call it with input arrays, get a list of arrays.

    A trailing learning-phase value (``[x, 0]``, as ``K.function([model.input,
    K.learning_phase()], ...)`` was called) is accepted and ignored: the model
    always runs in inference mode.
    """

    def __init__(self, owner: KerasModelFace, outputs: list[Any], names: list[str]):
        from tf1infer.runtime.session_runner import session_callable

        self._owner = owner
        self.output_names = names
        self._run = session_callable(
            owner._session, [owner._graph.get_tensor_by_name(spec.name) for spec in owner._inputs], outputs
        )

    def __call__(self, inputs: Any) -> list[np.ndarray]:
        items = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        if len(items) == len(self._owner._inputs) + 1 and np.ndim(items[-1]) == 0:
            items = items[:-1]  # The learning phase.
        feeds = self._owner._feeds.convert(items if len(items) > 1 else items[0])
        return list(self._owner._run_with(self._run, feeds))


class KerasModelFace:
    """Keras 2 model attributes on a Predictor (mixed into :class:`tf1infer.Predictor`)."""

    _keras_model: Any

    # -- reading the model ------------------------------------------------------------------------

    def _keras(self, what: str) -> Any:
        model = getattr(self, "_keras_model", None)
        if model is None:
            fmt = self.metadata.get("format")
            raise UnsupportedOperationError(
                f"{self.metadata.get('path', 'model')}: {what} needs a Keras model, and this is a {fmt} without Keras "
                "layers: its tensors are in predictor.graph (graph.get_operations(), graph.get_tensor_by_name); "
                "to fetch another tensor, load it with outputs=['name:0']"
            )
        if type(model).__module__.startswith("keras."):
            raise UnsupportedOperationError(
                f"{self.metadata.get('path', 'model')}: {what} reads a Keras 2 model; this one was loaded from a "
                "Keras 3 .keras file: load it with keras.saving.load_model for its layers"
            )
        return model

    @property
    def layers(self) -> list[LayerView]:
        """The model's layers, in order, as read-only :class:`LayerView` objects (as ``model.layers``)."""
        return [LayerView(layer, self) for layer in self._keras("layers").layers]

    def get_layer(self, name: str | None = None, index: int | None = None) -> LayerView:
        """The layer called ``name``, or at ``index`` (as Keras's ``get_layer``).

        Raises:
            LayerNotFoundError: no such layer (a ``ValueError``, as in Keras); the message lists them.
        """
        layers = self._keras("get_layer").layers
        if index is not None:
            if not -len(layers) <= index < len(layers):
                raise LayerNotFoundError(f"get_layer(index={index}): the model has {len(layers)} layers")
            return LayerView(layers[index], self)
        for layer in layers:
            if layer.name == name:
                return LayerView(layer, self)
        raise LayerNotFoundError(f"no layer named {name!r}; the model's layers are {[layer.name for layer in layers]}")

    def summary(
        self, line_length: int | None = None, positions: Any = None, print_fn: Callable | None = None, **kwargs: Any
    ) -> None:
        """Print Keras's summary table of the model (layers, output shapes, parameters)."""
        self._keras("summary").summary(line_length=line_length, positions=positions, print_fn=print_fn, **kwargs)

    def count_params(self) -> int:
        return int(self._keras("count_params").count_params())

    def get_config(self) -> dict[str, Any]:
        return copy.deepcopy(self._keras("get_config").get_config())

    def to_json(self, **kwargs: Any) -> str:
        return self._keras("to_json").to_json(**kwargs)

    def get_weights(self) -> list[np.ndarray]:
        """Every weight of the model as numpy arrays, in Keras's order, read from the session."""
        return self._read_variables(self._keras("get_weights").weights)

    @property
    def input(self) -> Any:
        """The input tensor (a list for several), as ``model.input``: usable with :meth:`function`."""
        tensors = [self._graph.get_tensor_by_name(spec.name) for spec in self._inputs]
        return tensors[0] if len(tensors) == 1 else tensors

    @property
    def output(self) -> Any:
        """The output tensor (a list for several), as ``model.output``."""
        tensors = [self._graph.get_tensor_by_name(spec.name) for spec in self._outputs]
        return tensors[0] if len(tensors) == 1 else tensors

    # -- Keras calls that inference code makes --------------------------------------------------------

    def compile(self, *args: Any, **kwargs: Any) -> None:
        """Accepted and ignored: inference needs no optimizer, loss or metrics (old scripts compile anyway)."""

    def _make_predict_function(self) -> None:
        """Accepted and ignored: Keras 2 web apps call it before serving from threads; the session is ready already."""

    make_predict_function = _make_predict_function

    def predict_generator(self, generator: Any, steps: int | None = None, verbose: int = 0, **kwargs: Any):
        """Keras 2's ``predict_generator``: :meth:`predict` on a generator or ``Sequence``."""
        return self.predict(generator, steps=steps, verbose=verbose)

    def function(self, outputs: Sequence[Any] | Any) -> KerasFunction:
        """The ``K.function([model.input], [layer.output])`` idiom: a callable returning those tensors.

        Args:
            outputs: layer names, ``LayerView`` objects, their ``output``
                tensors, or tensor names (``"fc2/Relu:0"``), one or a list.

        Example:
            >>> features = model.function([model.layers[-2].output])
            >>> [fc2] = features([images])          # or features([images, 0]): the learning phase is ignored
        """
        items = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
        tensors, names = [], []
        for item in items:
            tensor = self._resolve_output(item)
            tensors.append(tensor)
            names.append(item if isinstance(item, str) else tensor.name)
        return KerasFunction(self, tensors, names)

    def _resolve_output(self, item: Any) -> Any:
        if isinstance(item, LayerView):
            return item.output
        if isinstance(item, str):
            model = getattr(self, "_keras_model", None)
            if model is not None and not type(model).__module__.startswith("keras."):
                for layer in model.layers:
                    if layer.name == item:
                        return layer.output
            from tf1infer.errors import ModelLoadError
            from tf1infer.loaders.base import resolve_tensor

            try:
                return resolve_tensor(self._graph, item, "output", self.metadata.get("path", "model"))
            except ModelLoadError as exc:
                layers = (
                    [layer.name for layer in model.layers] if model is not None and hasattr(model, "layers") else []
                )
                hint = f"; its layers: {layers}" if layers else ""
                raise LayerNotFoundError(f"{exc}: neither a layer nor a tensor of this model{hint}") from None
        if getattr(item, "graph", None) is self._graph:
            return item
        raise LayerNotFoundError(f"function() takes layer names, layers or tensors of this model's graph; got {item!r}")

    def save(
        self,
        filepath: str | os.PathLike,
        overwrite: bool = True,
        include_optimizer: bool = True,
        save_format: str | None = None,
        **kwargs: Any,
    ) -> None:
        """Write the model back as a Keras ``.h5`` file (architecture and weights, as Keras 2's ``model.save``).

        The file is written beside its target and renamed into place, so a
        failure leaves no half-written file. For a Keras 3 ``.keras`` file use
        :func:`tf1infer.export_keras`; for a TF2 SavedModel,
        :func:`tf1infer.export_saved_model`.
        """
        path = os.path.abspath(os.fspath(filepath))
        if not (save_format == "h5" or path.endswith((".h5", ".hdf5"))):
            raise UnsupportedOperationError(
                f"{path}: save() writes Keras .h5 files; for a Keras 3 .keras file use tf1infer.export_keras(model, "
                "path), for a TF2 SavedModel directory tf1infer.export_saved_model(model, path)"
            )
        if os.path.exists(path) and not overwrite:
            raise UnsupportedOperationError(f"{path}: already exists (overwrite=False)")
        model = self._keras("save")
        staging = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tf1infer-{uuid.uuid4().hex[:12]}.h5")
        try:
            with self._graph.as_default(), self._session.as_default():
                model.save(staging, save_format="h5", include_optimizer=False)
            os.replace(staging, path)
        finally:
            if os.path.exists(staging):
                os.remove(staging)

    # -- what a frozen model cannot do -----------------------------------------------------------------

    def __getattr__(self, name: str) -> Any:
        if name in _TRAINING_METHODS or name in ("optimizer", "loss", "metrics", "metrics_names"):
            raise UnsupportedOperationError(f"{name}: {_TRAINING_HINT}")
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _read_variables(self, variables: Sequence[Any]) -> list[np.ndarray]:
        return list(self._session.run(list(variables))) if variables else []


def _shape_or_none(layer: Any, attribute: str) -> Any:
    try:
        return getattr(layer, attribute)
    except (AttributeError, RuntimeError):  # Layers called on several inputs of other shapes have no single one.
        return None


__all__ = ["KerasFunction", "KerasModelFace", "LayerView"]
