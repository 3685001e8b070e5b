"""Legacy Keras models as Keras 3 ones: configs translated layer by layer, weights carried over.

The starting point is the tf_keras model tf1infer built when it loaded the file:
Keras 1 files are already converted to Keras 2 there (:mod:`loaders.keras1`),
``CuDNNLSTM`` / ``CuDNNGRU`` already run as ``LSTM`` / ``GRU``
(:mod:`loaders.cudnn`), and Lambda layers already hold the functions the caller
supplied. What is left is what Keras 3 changed since tf_keras 2.x:

- arguments it renamed or removed (``time_major``, ``enable_caching_device``,
  BatchNormalization's ``fused``, ``groups`` of separable convolutions,
  Embedding's ``input_length``, ``batch_input_shape`` outside an InputLayer...):
  each is translated, dropped where it changes nothing at inference or in
  training, or refused where dropping it would change the model
  (``time_major=True``);
- layers it removed: ``ThresholdedReLU`` is ``ReLU(threshold=theta)``;
  ``LocallyConnected1D/2D`` and others without an equivalent are refused with
  the layer named;
- functions it redefined: Keras 2's ``hard_sigmoid`` (``0.2 x + 0.5``) is
  Keras 3's (``x / 6 + 0.5``) of 1.2 times its argument, so the weights of the
  gates or layer before it are scaled by 1.2;
- how it connects layers: tf_keras's inbound nodes as Keras 3's current form
  (an RNN's extra inputs as ``initial_state``, nested models' node indices
  counted from 0); a call with several tensor arguments (an RNN started from
  ``initial_state``) gets its first argument's mask passed explicitly, as
  Keras 2 passed it and Keras 3 does not (it fills in ``mask`` only for calls
  with one tensor argument, so a decoder fed padded ids would run every padding
  step); ``TimeDistributed`` over a free time axis, which Keras 3 loops over
  the batch size instead of the time steps, as the layer it wraps where that
  layer acts on the last axis alone (``Dense``, activations, dropout), refused
  otherwise; and channels-first convolutions that Keras 3's TensorFlow
  backend would run as NCHW ops (refused by TensorFlow's plain CPU kernels) or
  give their bias along the wrong axis run channels-last between two
  ``Permute`` layers;
- Lambda layers: the function the tf_keras model runs is handed to Keras 3: a
  named function in an importable module as a reference to it; a Python lambda
  as Keras 3 stores it, as bytecode (which only loads with ``safe_mode=False``);
  a function that reads globals (``tf``, ``K``, ``np``, helpers) or is defined in
  a script, as a lambda carrying what it reads (:mod:`tf1infer.export.portable_lambdas`),
  since Keras 3 stores bytecode without its globals;
- custom layers: built from the Keras 3 classes the caller passes
  (``keras3_custom_objects``), or refused naming the layer.

Everything else in a tf_keras 2.x config is what Keras 3's own legacy
deserializer reads (``keras.Model.from_config`` on a config without
``module`` keys), so the model is rebuilt as native Keras 3 layers, not
wrapped. Weights are then copied layer by layer, matched by name, each array's
shape checked against the Keras 3 layer's.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from tf1infer.errors import ExportError, InvalidOptionError
from tf1infer.export.keras3_lambdas import keras3_layer
from tf1infer.export.portable_lambdas import NotPortable, needs_carrying, portable_function, reads_tensorflow
from tf1infer.loaders.keras_h5 import skips_first_node

# Keras 3's model classes, and what tf_keras calls them in configs.
_MODEL_CLASSES = {"Sequential", "Functional", "Model"}
# Wrappers whose config holds other layers' configs.
_WRAPPER_KEYS = ("layer", "backward_layer")
# Names under which Lambda functions are handed to Keras 3's deserializer.
_LAMBDA_PREFIX = "tf1infer_lambda:"


@dataclasses.dataclass(frozen=True)
class Translation:
    """One change made to a layer on its way to Keras 3."""

    layer: str
    change: str

    def __str__(self) -> str:
        return f"{self.layer}: {self.change}"


@dataclasses.dataclass(frozen=True)
class CodeReference:
    """Python code the exported file refers to but does not hold: a custom class or a named function."""

    key: str  # The name Keras 3 looks it up by in custom_objects.
    module: str
    qualname: str
    search_path: str | None  # The folder to put on sys.path to import ``module``; None for installed modules.


@dataclasses.dataclass
class Keras3Plan:
    """What it takes to build the Keras 3 model: its config, the objects it needs, and what was changed."""

    model_class: str
    config: dict
    custom_objects: dict[str, Any]
    translations: list[Translation]
    bytecode_lambdas: list[str]  # Lambda layers Keras 3 stores as bytecode: loading needs safe_mode=False.
    code_references: list[CodeReference]
    weight_transforms: dict[str, WeightTransform] = dataclasses.field(default_factory=dict)  # By layer name.
    renamed: dict[str, str] = dataclasses.field(default_factory=dict)  # Legacy layer name -> Keras 3 layer name.
    # Keras backends on which the file computes something else than the legacy model, with the reason.
    inexact_backends: dict[str, str] = dataclasses.field(default_factory=dict)


class _Refusal(Exception):
    """A layer that cannot be translated; turned into an ExportError naming the source."""


# -- argument rules --------------------------------------------------------------------------------------------
# Each rule: argument -> (whether a value can be dropped without changing what the model computes or how it
# trains, the change as the report words it, why other values are refused).


def _always(value: Any) -> bool:
    return True


def _is_false(value: Any) -> bool:
    return not value


def _is_one(value: Any) -> bool:
    return value in (1, None)


_DROPPED_ARGUMENTS: dict[str, tuple[Callable[[Any], bool], str, str | None]] = {
    "time_major": (
        _is_false,
        "dropped time_major=False (Keras 3 RNNs are batch-major)",
        "time_major=True: Keras 3 RNN layers only take batch-major inputs",
    ),
    "enable_caching_device": (_always, "dropped enable_caching_device (a tf_keras device-placement hint)", None),
    "fused": (_always, "dropped fused (a tf_keras kernel choice; the same normalization)", None),
    "virtual_batch_size": (_always, "dropped virtual_batch_size (training-time batch statistics only)", None),
    "adjustment": (_always, "dropped adjustment (training-time batch statistics only)", None),
    "input_length": (_always, "dropped input_length (Keras 3 Embedding infers it)", None),
    "input_dtype": (_always, "dropped input_dtype (the InputLayer carries the dtype)", None),
    "rng_type": (_always, "dropped rng_type (tf_keras's random generator for training-time augmentation)", None),
}
# Arguments dropped only from the layers named, with the value that makes them meaningless.
_DROPPED_FOR: dict[tuple[str, str], tuple[Callable[[Any], bool], str, str | None]] = {
    ("SeparableConv1D", "groups"): (
        _is_one,
        "dropped groups=1 (Keras 3 separable convolutions have none)",
        "groups > 1: Keras 3 separable convolutions have no groups",
    ),
    ("SeparableConv2D", "groups"): (
        _is_one,
        "dropped groups=1 (Keras 3 separable convolutions have none)",
        "groups > 1: Keras 3 separable convolutions have no groups",
    ),
    **{
        (class_name, argument): (
            _always,
            f"dropped {argument} (tf_keras records it; separable convolutions have no such kernel)",
            None,
        )
        for class_name in ("SeparableConv1D", "SeparableConv2D")
        for argument in ("kernel_initializer", "kernel_regularizer", "kernel_constraint")
    },
}

# Layers Keras 3 removed that have no equivalent, with what to do instead.
_REMOVED_WITHOUT_EQUIVALENT = {
    "LocallyConnected1D": "Keras 3 removed LocallyConnected1D (unshared weights per position) and has no layer that computes it",
    "LocallyConnected2D": "Keras 3 removed LocallyConnected2D (unshared weights per position) and has no layer that computes it",
    "DenseFeatures": "Keras 3 removed DenseFeatures (feature columns)",
    "CuDNNLSTM": "CuDNNLSTM reached the export unconverted",
    "CuDNNGRU": "CuDNNGRU reached the export unconverted",
}


def _thresholded_relu(config: dict) -> tuple[str, dict, str]:
    theta = float(config.get("theta", 1.0))
    new = {key: config[key] for key in ("name", "trainable", "dtype") if key in config}
    new.update({"threshold": theta, "negative_slope": 0.0, "max_value": None})
    return "ReLU", new, f"ThresholdedReLU(theta={theta:g}) as ReLU(threshold={theta:g}): x where x > theta, else 0"


def _leaky_relu(config: dict) -> tuple[str, dict, str | None]:
    if "alpha" not in config:
        return "LeakyReLU", config, None
    config = dict(config)
    config["negative_slope"] = config.pop("alpha")
    return "LeakyReLU", config, "alpha renamed negative_slope"


def _batch_normalization(config: dict) -> tuple[str, dict, str | None]:
    axis = config.get("axis")
    if isinstance(axis, (list, tuple)):
        if len(axis) != 1:
            raise _Refusal(f"normalizes over axes {list(axis)}; Keras 3 BatchNormalization takes one axis")
        config = dict(config, axis=axis[0])
        return "BatchNormalization", config, f"axis [{axis[0]}] as {axis[0]}"
    return "BatchNormalization", config, None


# Keras 1/2's hard_sigmoid is clip(0.2 x + 0.5, 0, 1); Keras 3's is clip(x / 6 + 0.5, 0, 1), that is Keras 2's of
# x / 1.2. Where the activation follows a linear map (a gate's kernels and biases, a Dense or convolution kernel),
# scaling that map's weights by 1.2 makes Keras 3's function compute Keras 2's exactly (up to float rounding).
_HARD_SIGMOID_SCALE = np.float32(1.2)
# Gates on which recurrent_activation acts, in each layer's kernel column order.
_GATES = {
    "LSTM": ("i", "f", "c", "o"),
    "ConvLSTM1D": ("i", "f", "c", "o"),
    "ConvLSTM2D": ("i", "f", "c", "o"),
    "ConvLSTM3D": ("i", "f", "c", "o"),
    "GRU": ("z", "r", "h"),
}
_RECURRENT_GATES = {"i", "f", "o", "z", "r"}
# Convolutions a channels-first model may hold (see _channels_last_convolution); those Keras 3's TensorFlow backend
# runs as NCHW ops on a CPU (it transposes separable and depthwise ones itself).
_CONVOLUTIONS = {
    "Conv1D",
    "Conv2D",
    "Conv3D",
    "SeparableConv1D",
    "SeparableConv2D",
    "DepthwiseConv1D",
    "DepthwiseConv2D",
    "Conv1DTranspose",
    "Conv2DTranspose",
    "Conv3DTranspose",
}
_CHANNELS_LAST_ON_CPU = {"Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose"}
# Layers tf_keras called on [sequence, *initial states] when started from other tensors.
_RECURRENT_LAYERS = {"LSTM", "GRU", "SimpleRNN", "RNN", "Bidirectional", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D"}
_LINEAR_MAPS = ("Dense", "Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose")
# Layers that compute each position from its last-axis features alone: TimeDistributed of one is the layer itself.
_LAST_AXIS_LAYERS = {
    "Dense",
    "Activation",
    "Dropout",
    "AlphaDropout",
    "GaussianDropout",
    "GaussianNoise",
    "ReLU",
    "LeakyReLU",
    "ELU",
}

WeightTransform = Callable[[list], list]


def _scale_gates(gates: tuple[str, ...]) -> WeightTransform:
    def transform(arrays: list) -> list:
        scaled = []
        for array in arrays:
            parts = np.split(np.asarray(array), len(gates), axis=-1)
            parts = [
                part * _HARD_SIGMOID_SCALE if gate in _RECURRENT_GATES else part for gate, part in zip(gates, parts)
            ]
            scaled.append(np.concatenate(parts, axis=-1).astype(np.asarray(array).dtype))
        return scaled

    return transform


def _scale_all(arrays: list) -> list:
    return [(np.asarray(array) * _HARD_SIGMOID_SCALE).astype(np.asarray(array).dtype) for array in arrays]


def _hard_sigmoid_transform(name: str, class_name: str, config: dict) -> tuple[WeightTransform | None, str | None]:
    """How to keep Keras 2's hard_sigmoid in this layer under Keras 3's, or None where it does not use it."""
    transform, change = None, None
    if config.get("recurrent_activation") == "hard_sigmoid" and class_name in _GATES:
        transform = _scale_gates(_GATES[class_name])
        change = "recurrent_activation hard_sigmoid: gate weights scaled by 1.2 for Keras 3's hard_sigmoid (x/6 + 0.5, Keras 2's was 0.2 x + 0.5)"
    if config.get("activation") == "hard_sigmoid":
        if class_name not in _LINEAR_MAPS or transform is not None:
            raise _Refusal(
                f"layer {name!r} ({class_name}) uses activation='hard_sigmoid', which Keras 3 defines differently "
                "(x/6 + 0.5 instead of 0.2 x + 0.5) where no weights can absorb the difference; "
                "keras2_hard_sigmoid='exact' keeps Keras 2's function"
            )
        transform = _scale_all
        change = "activation hard_sigmoid: weights scaled by 1.2 for Keras 3's hard_sigmoid (x/6 + 0.5, Keras 2's was 0.2 x + 0.5)"
    return transform, change


# keras2_hard_sigmoid= values: "scale_weights" keeps Keras 3's own hard_sigmoid and a file of Keras 3 alone (weights
# scaled by 1.2, rounded in float32); "exact" refers to tf1infer.keras2_activations.keras2_hard_sigmoid, Keras 2's formula
# (Keras 3 cannot store a lambda as an RNN's activation and load it back: it writes its bytecode without the marker
# its loader looks for).
HARD_SIGMOID_MODES = ("scale_weights", "exact")


def _halves(transform: WeightTransform) -> WeightTransform:
    """A Bidirectional wrapper's weights: the forward layer's, then the backward one's."""

    def apply(arrays: list) -> list:
        half = len(arrays) // 2
        return transform(arrays[:half]) + transform(arrays[half:])

    return apply


# Class-level rewrites: class name -> function(config) -> (Keras 3 class name, config, change or None).
_CLASS_RULES: dict[str, Callable[[dict], tuple[str, dict, str | None]]] = {
    "ThresholdedReLU": _thresholded_relu,
    "LeakyReLU": _leaky_relu,
    "BatchNormalization": _batch_normalization,
}


# -- the plan --------------------------------------------------------------------------------------------------


def plan_keras3_model(
    source: str,
    model: Any,
    keras3_custom_objects: Mapping[str, Any] | None = None,
    keras2_hard_sigmoid: str = "scale_weights",
) -> Keras3Plan:
    """Translate a built tf_keras ``model`` into what Keras 3 builds the same model from.

    ``keras2_hard_sigmoid``: how Keras 2's ``hard_sigmoid`` is kept (see :func:`_hard_sigmoid_transform`):
    ``"scale_weights"`` or ``"exact"``.

    Raises:
        ExportError: a layer has no Keras 3 translation; the message names it and why.
    """
    import keras

    if keras2_hard_sigmoid not in HARD_SIGMOID_MODES:
        raise InvalidOptionError(
            f"keras2_hard_sigmoid must be one of {list(HARD_SIGMOID_MODES)}, got {keras2_hard_sigmoid!r}"
        )
    objects = dict(keras3_custom_objects or {})
    state = _State(objects, _live_layers(model), keras2_hard_sigmoid)
    config = {"class_name": _model_class_name(model), "config": copy.deepcopy(model.get_config())}
    try:
        translated = state.translate(config, top_level=True)
    except _Refusal as exc:
        raise ExportError(f"{source}: cannot export to Keras 3: {exc}") from None
    _fit_arguments(source, translated, state, keras)
    references = [code_reference(source, key, value) for key, value in sorted(state.references.items())]
    inexact = {}
    if state.tensorflow_lambdas:
        inexact["jax"] = (
            f"Lambda layer(s) {', '.join(map(repr, state.tensorflow_lambdas))} call TensorFlow (tf, or Keras 2's "
            "backend K), which Keras 3's JAX backend cannot run; pass functions written with keras.ops to run there"
        )
    return Keras3Plan(
        model_class=translated["class_name"],
        config=translated["config"],
        custom_objects=state.custom_objects,
        translations=state.translations,
        bytecode_lambdas=state.bytecode_lambdas,
        code_references=references,
        weight_transforms=state.weight_transforms,
        renamed=state.renamed,
        inexact_backends=inexact,
    )


def translate_layer_config(
    source: str, layer: dict, keras3_custom_objects: Mapping[str, Any] | None = None
) -> tuple[dict, list[Translation]]:
    """One tf_keras layer config (``{"class_name", "config"}``) as Keras 3 builds it, and what was changed.

    Raises:
        ExportError: the layer has no Keras 3 translation; the message names it and why.
    """
    import keras

    state = _State(dict(keras3_custom_objects or {}), {})
    try:
        translated = state.translate(copy.deepcopy(layer))
    except _Refusal as exc:
        raise ExportError(f"{source}: cannot export to Keras 3: {exc}") from None
    _fit_arguments(source, translated, state, keras)
    return translated, state.translations


def build_keras3_model(source: str, plan: Keras3Plan):
    """The Keras 3 model of ``plan``, with fresh weights."""
    import keras

    cls = keras.Sequential if plan.model_class == "Sequential" else keras.Model
    try:
        model = cls.from_config(copy.deepcopy(plan.config), custom_objects=plan.custom_objects)
    except Exception as exc:  # Keras 3 raises ValueError, TypeError, KeyError... for configs it cannot build.
        raise ExportError(f"{source}: Keras 3 cannot build the translated model: {type(exc).__name__}: {exc}") from exc
    return _masks_as_keras2(source, model, plan)


def _masks_as_keras2(source: str, model: Any, plan: Keras3Plan) -> Any:
    """``model`` with the first argument's mask passed explicitly to calls with several tensor arguments.

    Keras 2 handed a layer the mask of its first argument whatever else the
    call took; Keras 3 fills in ``mask`` only for calls with one tensor
    argument. An RNN started from ``initial_state`` (a seq2seq decoder) thus
    ran every padding step in Keras 3. The model is called again layer by
    layer (``keras.models.clone_model`` keeping the same layers) with those
    masks given, so that the file records them.
    """
    import keras
    from keras import tree

    if plan.model_class == "Sequential":
        return model  # One tensor per call.
    changed: list[str] = []

    def call(layer, *args, **kwargs):
        if kwargs.get("mask") is None and _takes_mask(layer) and _tensor_count(args, kwargs) > 1 and args:
            mask = tree.map_structure(lambda tensor: getattr(tensor, "_keras_mask", None), args[0])
            if any(item is not None for item in tree.flatten(mask)):
                kwargs["mask"] = mask
                changed.append(layer.name)
        return layer(*args, **kwargs)

    try:
        rebuilt = keras.models.clone_model(model, clone_function=lambda layer: layer, call_function=call)
    except Exception as exc:  # Whatever Keras 3 raises re-calling a layer; the layer is named where known.
        raise ExportError(
            f"{source}: cannot export to Keras 3: passing masks as Keras 2 did failed: {type(exc).__name__}: {exc}"
        ) from exc
    if not changed:
        return model
    for name in changed:
        plan.translations.append(
            Translation(
                name,
                "called with its input's mask (Keras 2 passed it; Keras 3 leaves it out of calls with several tensor arguments)",
            )
        )
    started = [name for name in changed if type(rebuilt.get_layer(name)).__name__ in _RECURRENT_LAYERS]
    if started:
        earlier = plan.inexact_backends.get("jax")
        plan.inexact_backends["jax"] = (f"{earlier}; " if earlier else "") + (
            f"{', '.join(map(repr, started))} {'starts' if len(started) == 1 else 'start'} from initial_state on masked "
            "sequences, and Keras 3's JAX backend gives a masked step before the first real one the initial state as "
            "output where Keras 2 (and Keras 3's TensorFlow backend) give zeros: sequences padded at the front differ"
        )
    return rebuilt


def _takes_mask(layer: Any) -> bool:
    import inspect

    try:
        return "mask" in inspect.signature(layer.call).parameters
    except (TypeError, ValueError):
        return False


def _tensor_count(args: tuple, kwargs: dict) -> int:
    import keras
    from keras import tree

    return sum(
        1
        for value in (*args, *kwargs.values())
        if any(isinstance(leaf, keras.KerasTensor) for leaf in tree.flatten(value))
    )


def copy_weights(source: str, plan: Keras3Plan, tf_keras_model: Any, session: Any, keras3_model: Any) -> int:
    """Set each Keras 3 layer's weights to its tf_keras twin's (matched by name, translated where ``plan`` says).

    Returns the number of arrays copied.

    Raises:
        ExportError: a layer is missing on one side, or its arrays differ in number or shape.
    """
    pairs = list(_layer_pairs(source, tf_keras_model, keras3_model, "", plan.renamed))
    variables = [variable for old, _, _ in pairs for variable in old.weights]
    values = iter(session.run(variables)) if variables else iter(())
    copied, transforms = 0, plan.weight_transforms
    for old, new, path in pairs:
        arrays = [next(values) for _ in old.weights]
        if len(arrays) != len(new.weights):
            raise ExportError(
                f"{source}: layer {path!r} has {len(arrays)} weight arrays in the legacy model and "
                f"{len(new.weights)} in Keras 3 ({[w.path for w in new.weights]}); no export was written"
            )
        for array, weight in zip(arrays, new.weights):
            if tuple(array.shape) != tuple(weight.shape):
                raise ExportError(
                    f"{source}: layer {path!r} weight {weight.path!r} is {tuple(weight.shape)} in Keras 3, "
                    f"the legacy model holds {tuple(array.shape)}; no export was written"
                )
        transform = transforms.get(old.name)
        if transform is not None:
            arrays = transform(arrays)
        if arrays:
            new.set_weights([np.asarray(array) for array in arrays])
            copied += len(arrays)
    return copied


# -- translation ----------------------------------------------------------------------------------------------


class _State:
    def __init__(
        self, custom_objects: dict[str, Any], live_layers: dict[str, Any], hard_sigmoid: str = "scale_weights"
    ):
        self.hard_sigmoid = hard_sigmoid
        self.custom_objects = dict(custom_objects)
        self.caller_objects = dict(custom_objects)
        self.live_layers = live_layers
        self.translations: list[Translation] = []
        self.bytecode_lambdas: list[str] = []
        self.references: dict[str, Any] = {}
        self.weight_transforms: dict[str, WeightTransform] = {}
        self.renamed: dict[str, str] = {}  # Legacy layer name -> the Keras 3 layer holding its weights.
        self.tensorflow_lambdas: list[str] = []  # Lambda layers calling TensorFlow: Keras 3's TensorFlow backend only.

    def note(self, layer: str, change: str | None) -> None:
        if change:
            self.translations.append(Translation(layer, change))

    def translate(self, layer: dict, top_level: bool = False) -> dict:
        class_name = layer.get("class_name")
        config = layer.get("config")
        if class_name in _MODEL_CLASSES or (top_level and isinstance(config, dict) and "layers" in config):
            return self._model(layer)
        if not isinstance(config, dict):
            raise _Refusal(f"layer config of {class_name!r} is not an object")
        name = str(config.get("name", "?"))
        if class_name in _REMOVED_WITHOUT_EQUIVALENT and class_name not in self.caller_objects:
            raise _Refusal(
                f"layer {name!r} ({class_name}): {_REMOVED_WITHOUT_EQUIVALENT[class_name]}; pass a Keras 3 "
                f"implementation with keras3_custom_objects={{{class_name!r}: YourLayer}}, or export a TF2 "
                "SavedModel with export_saved_model instead"
            )
        config = dict(config)
        class_name = _canonical_class_name(class_name)
        if class_name in _CLASS_RULES:
            class_name, config, change = _CLASS_RULES[class_name](config)
            self.note(name, change)
        config = self._arguments(name, class_name, config)
        if self.hard_sigmoid == "exact":
            config = self._exact_hard_sigmoid(name, config)
            transform, change = None, None
        else:
            transform, change = _hard_sigmoid_transform(name, class_name, config)
        if transform is not None:
            self.weight_transforms[name] = transform
            self.note(name, change)
        replacement = self._keras3_replacement(name) if class_name == "Lambda" else None
        if replacement is not None:
            class_name, config = replacement
        elif class_name == "Lambda":
            config = self._lambda(name, config)
        elif class_name == "InputLayer":
            config = self._input_layer(name, config)
        inner_transforms = []
        for key in _WRAPPER_KEYS:
            if isinstance(config.get(key), dict):
                inner = self.translate(config[key])
                inner["config"].pop("_tf1infer_batch_input_shape", None)  # A wrapped layer's input is the wrapper's.
                inner_transforms.append(self.weight_transforms.pop(inner["config"].get("name"), None))
                # Keras 3 wrappers deserialize what they wrap with the current (module-keyed) format.
                config[key] = _module_keyed(inner, self.caller_objects)
        if any(inner_transforms):
            if class_name == "Bidirectional":
                if not all(inner_transforms) and len(inner_transforms) == 2:
                    raise _Refusal(f"layer {name!r}: only one direction uses hard_sigmoid")
            transform = inner_transforms[0]
            assert transform is not None  # Set whenever any is: one wrapped layer, or both directions.
            self.weight_transforms[name] = _halves(transform) if class_name == "Bidirectional" else transform
        self._require_class(name, class_name)
        translated = {key: value for key, value in layer.items() if key not in ("module", "registered_name")}
        translated["class_name"] = class_name
        translated["config"] = config
        if class_name == "TimeDistributed":
            translated = self._time_distributed(name, translated)
        if class_name == "Lambda":
            # Keras 3's legacy reader cannot hand a Lambda its function; the current format can.
            translated = _module_keyed(translated, {})
            if "inbound_nodes" in layer:
                translated["inbound_nodes"] = layer["inbound_nodes"]
        return translated

    def _model(self, layer: dict) -> dict:
        config = dict(layer["config"])
        layers = [self.translate(item) for item in config.get("layers", [])]
        class_name = layer.get("class_name")
        if class_name == "Sequential":
            layers = _sequential_input_first(layers, self)
        else:
            class_name = "Functional"
            names = {str(item.get("config", {}).get("name", item.get("name"))) for item in layers} | {
                str(item.get("name")) for item in layers
            }
            # tf_keras counts a nested model's call on its own InputLayer as its node 0; Keras 3 does not.
            first_nodes = {
                str(item.get("name", item.get("config", {}).get("name"))): 1
                for item in layers
                if skips_first_node(item)
            }
            for item in layers:
                if item.get("inbound_nodes"):
                    recurrent = item["class_name"] in _RECURRENT_LAYERS
                    item["inbound_nodes"] = [
                        _current_node(node, names, recurrent, first_nodes) for node in item["inbound_nodes"]
                    ]
            for key in ("input_layers", "output_layers"):
                config[key] = _renumbered(config.get(key), first_nodes)
        config["layers"] = [part for item in layers for part in self._channels_last_convolution(item, class_name)]
        translated = {
            key: value for key, value in layer.items() if key not in ("module", "registered_name", "build_config")
        }
        translated["class_name"] = class_name
        translated["config"] = config
        return translated

    def _channels_last_convolution(self, layer: dict, model_class: str) -> list[dict]:
        """``layer``, or a channels-first convolution as a channels-last one between two Permute layers.

        Keras 3's TensorFlow backend gets two kinds of channels-first
        convolution wrong on a CPU:

        - it runs ``Conv*D`` and ``Conv*DTranspose`` as NCHW ops, which
          TensorFlow's plain CPU kernels (oneDNN off: AVX2-only x86, arm64)
          refuse ("The Conv2D op currently only supports the NHWC tensor
          format on the CPU");
        - it adds a bias shaped (1, C, 1, 1) with ``tf.nn.bias_add`` and picks
          NHWC whenever the last axis has C entries, so a convolution whose
          last spatial size equals its channel count (or is unknown until it
          runs) gets its bias along the wrong axis, silently.

        The same kernels (Keras keeps one kernel layout for both data formats)
        run channels-last between Permute layers; the last Permute keeps the
        layer's name, so what follows is wired as before.
        """
        config = layer.get("config", {})
        if layer.get("class_name") not in _CONVOLUTIONS or config.get("data_format") != "channels_first":
            return [layer]
        live = self.live_layers.get(config.get("name"))
        shape = tuple(getattr(live, "output_shape", None) or ())
        if len(shape) < 3:
            return [layer]
        if layer["class_name"] in _CHANNELS_LAST_ON_CPU:
            reason = "Keras 3's TensorFlow backend runs it as an NCHW op, which TensorFlow's plain CPU kernels refuse"
        elif config.get("use_bias", True) and (shape[-1] is None or shape[-1] == shape[1]):
            reason = (
                "Keras 3's TensorFlow backend adds a channels-first bias along the last axis when it has as many entries "
                f"as channels (output shape {shape})"
            )
        else:
            return [layer]
        name, rank = str(config["name"]), len(shape) - 2
        if len(layer.get("inbound_nodes") or []) > 1:
            raise _Refusal(
                f"layer {name!r} ({layer['class_name']}) is a channels-first convolution called more than once: {reason}"
            )
        inner = f"{name}_channels_last"
        self.renamed[name] = inner
        self.note(
            name,
            f"channels_first as channels_last between Permute layers ({name}_to_channels_last, {inner}, {name}): {reason}",
        )
        dtype = config.get("dtype", "float32")
        to_last: dict[str, Any] = {
            "class_name": "Permute",
            "config": {"name": f"{name}_to_channels_last", "dims": [*range(2, rank + 2), 1], "dtype": dtype},
        }
        convolution: dict[str, Any] = {**layer, "config": {**config, "name": inner, "data_format": "channels_last"}}
        to_first: dict[str, Any] = {
            "class_name": "Permute",
            "config": {"name": name, "dims": [rank + 1, *range(1, rank + 1)], "dtype": dtype},
        }
        marker = convolution["config"].pop("_tf1infer_batch_input_shape", None)
        if marker is not None:
            to_last["config"]["_tf1infer_batch_input_shape"] = marker
        if model_class != "Sequential":
            for part in (to_last, to_first):
                part["name"] = part["config"]["name"]
            to_last["inbound_nodes"] = layer.get("inbound_nodes", [])
            convolution["name"] = inner
            convolution["inbound_nodes"] = [{"args": [_tensor_reference([to_last["name"], 0, 0])], "kwargs": {}}]
            to_first["inbound_nodes"] = [{"args": [_tensor_reference([inner, 0, 0])], "kwargs": {}}]
        return [to_last, convolution, to_first]

    def _time_distributed(self, name: str, layer: dict) -> dict:
        """A TimeDistributed layer as Keras 3 computes it right: over a free time axis, the layer it wraps.

        Keras 3's TimeDistributed loops over ``ops.shape(inputs)[0]`` (the
        batch size) where the time axis is unknown when it is traced, so it
        fails or drops steps once the batch size and the length differ (seen in
        Keras 3.15's ``time_distributed.py``). A layer acting on the last axis
        alone computes the same on the whole sequence; anything else is refused.
        """
        live = self.live_layers.get(name)
        shape = getattr(live, "input_shape", None)
        if not isinstance(shape, tuple) or len(shape) < 3 or shape[1] is not None:
            return layer
        inner = layer["config"]["layer"]
        inner_class = inner.get("class_name")
        if inner_class not in _LAST_AXIS_LAYERS:
            raise _Refusal(
                f"layer {name!r} (TimeDistributed of {inner_class}) runs over a free time axis, which Keras 3's "
                "TimeDistributed loops over the batch size instead of the time steps (wrong outputs or a failure "
                "whenever they differ); only layers acting on the last axis alone can be unwrapped; export a TF2 "
                "SavedModel (export_saved_model) or give the input a fixed length"
            )
        unwrapped = {key: value for key, value in layer.items() if key not in ("config", "module", "registered_name")}
        unwrapped["class_name"] = inner_class
        unwrapped["config"] = {**inner["config"], "name": name}
        for key in ("trainable", "dtype"):
            if key in layer["config"]:
                unwrapped["config"].setdefault(key, layer["config"][key])
        inner_name = inner["config"].get("name")
        if inner_name in self.weight_transforms:
            self.weight_transforms[name] = self.weight_transforms.pop(inner_name)
        self.note(
            name,
            f"TimeDistributed({inner_class}) over a free time axis as {inner_class} on the whole sequence (the same "
            "computation; Keras 3's TimeDistributed loops over the batch size when the length is unknown)",
        )
        return unwrapped

    def _arguments(self, name: str, class_name: str, config: dict) -> dict:
        for key in list(config):
            rule = _DROPPED_FOR.get((class_name, key)) or _DROPPED_ARGUMENTS.get(key)
            if rule is None:
                continue
            droppable, change, refusal = rule
            value = config[key]
            if not droppable(value):
                raise _Refusal(f"layer {name!r} ({class_name}) has {refusal}")
            del config[key]
            self.note(name, change)
        if class_name != "InputLayer":
            # The InputLayer holds the input shape; Sequential models get one made from it (_sequential_input_first).
            config.pop("batch_size", None)
            if "batch_input_shape" in config:
                config["_tf1infer_batch_input_shape"] = config.pop("batch_input_shape")
        return config

    def _input_layer(self, name: str, config: dict) -> dict:
        config = dict(config)
        if "batch_input_shape" in config:
            config["batch_shape"] = config.pop("batch_input_shape")
        if config.get("ragged"):
            raise _Refusal(f"input {name!r} is ragged; Keras 3 models take dense inputs")
        config.pop("ragged", None)
        return config

    def _exact_hard_sigmoid(self, name: str, config: dict) -> dict:
        """Keras 2's hard_sigmoid as a function of its own, its weights untouched (``keras2_hard_sigmoid="exact"``)."""
        import keras

        keys = [key for key in ("activation", "recurrent_activation") if config.get(key) == "hard_sigmoid"]
        if not keys:
            return config
        from tf1infer import keras2_activations

        function = keras2_activations.keras2_hard_sigmoid
        registered = keras.saving.get_registered_name(function)
        # Keras 3 looks a stored function up by its own name in custom_objects (not by its registered name).
        config = dict(config)
        for key in keys:
            # As Keras 3 serializes a registered function (a plain name would be looked up among its built-ins only).
            config[key] = {
                "module": function.__module__,
                "class_name": "function",
                "config": function.__name__,
                "registered_name": registered,
            }
        self.custom_objects[function.__name__] = function
        self.references[function.__name__] = function
        self.note(
            name,
            f"{' and '.join(keys)} hard_sigmoid: Keras 2's clip(0.2 x + 0.5, 0, 1) exactly, weights untouched, by "
            "reference to tf1infer.keras2_activations.keras2_hard_sigmoid (Keras 3 alone; custom_objects to load)",
        )
        return config

    def _keras3_replacement(self, name: str) -> tuple[str, dict] | None:
        """A Keras 3 layer supplied with ``lambdas=`` for this Lambda: its class name and config, under the Lambda's name."""
        import keras

        live = self.live_layers.get(name)
        function = getattr(live, "function", None)
        replacement = getattr(function, "_tf1infer_replacement", None)
        recovered = getattr(function, "_tf1infer_recovered", None)
        if replacement is None and recovered is not None and live is not None:
            # Read from the file's bytecode: written as keras.ops where every part has a counterpart.
            replacement = keras3_layer(recovered, live.input_shape, name)
            if replacement is None:
                return None
            self.note(
                name,
                f"Lambda recovered from its bytecode as {recovered.expression}, written as keras.ops "
                "(a nested Functional model: no bytecode, every backend)",
            )
            return type(replacement).__name__, {**replacement.get_config(), "name": name}
        if not isinstance(replacement, keras.layers.Layer):
            return None
        # One with weights never gets here: tf_keras refuses variables made inside a Lambda when the file loads.
        self.note(
            name,
            f"Lambda replaced by the supplied Keras 3 layer {type(replacement).__name__} (a native layer: no bytecode)",
        )
        return type(replacement).__name__, {**replacement.get_config(), "name": name}

    def _lambda(self, name: str, config: dict) -> dict:
        live = self.live_layers.get(name)
        function = getattr(live, "function", None)
        if live is None or not callable(function):
            raise _Refusal(f"Lambda layer {name!r}: its function is not available to hand to Keras 3")
        if live.mask is not None and not isinstance(live.mask, bool):
            raise _Refusal(
                f"Lambda layer {name!r} computes its mask with Python code, which Keras 3's Lambda cannot "
                "load back; replace it with a custom Keras 3 layer (keras3_custom_objects=)"
            )
        key = _LAMBDA_PREFIX + name
        described = "the supplied Python lambda"
        if not _importable(function) and (needs_carrying(function) or getattr(function, "__name__", "") != "<lambda>"):
            try:
                portable = portable_function(function, name)
            except NotPortable as exc:
                raise _Refusal(str(exc)) from None
            function, described = (
                portable.function,
                (
                    f"the supplied function {_qualified(live.function)} with the globals it reads "
                    f"({', '.join(portable.globals_read)}) carried in its bytecode"
                ),
            )
        if reads_tensorflow(live.function):
            self.tensorflow_lambdas.append(name)
        self.custom_objects[key] = function
        new = {k: config[k] for k in ("name", "trainable", "dtype") if k in config}
        new["function"] = key
        output_shape = config.get("output_shape")
        if config.get("output_shape_type", "raw") == "raw" and isinstance(output_shape, (list, tuple)):
            new["output_shape"] = list(output_shape)
        if config.get("arguments"):
            new["arguments"] = config["arguments"]
        if getattr(function, "__name__", "") == "<lambda>" or not _importable(function):
            self.bytecode_lambdas.append(name)
            self.note(name, f"Lambda: {described}, stored by Keras 3 as bytecode (load with safe_mode=False)")
        else:
            self.references[_lookup_name(function)] = function
            self.note(name, f"Lambda: the supplied function {_qualified(function)}, stored by reference to its module")
        return new

    def _require_class(self, name: str, class_name: str) -> None:
        import keras

        if class_name in self.caller_objects or hasattr(keras.layers, class_name) or class_name in _MODEL_CLASSES:
            if class_name in self.caller_objects:
                self.references[_lookup_name(self.caller_objects[class_name])] = self.caller_objects[class_name]
            return
        raise _Refusal(
            f"layer {name!r} is a {class_name}, which Keras 3 does not have: pass its Keras 3 implementation with "
            f"keras3_custom_objects={{{class_name!r}: {class_name}}} (a keras.layers.Layer subclass with the same "
            "weights in the same order)"
        )


def _sequential_input_first(layers: list[dict], state: _State) -> list[dict]:
    """A Sequential model's layers with an InputLayer first where the first layer carried the input shape."""
    for layer in layers:
        config = layer.get("config", {})
        shape = config.pop("_tf1infer_batch_input_shape", None) if isinstance(config, dict) else None
        if shape is not None and layer is layers[0]:
            input_layer = {
                "class_name": "InputLayer",
                "config": {
                    "batch_shape": shape,
                    "dtype": config.get("dtype", "float32"),
                    "name": f"{config.get('name', 'input')}_input",
                },
            }
            state.note(str(config.get("name")), "batch_input_shape as a leading InputLayer")
            layers = [input_layer, *layers]
    return layers


def _renumbered(references: Any, first_nodes: Mapping[str, int]) -> Any:
    """``[[layer, node, tensor], ...]`` (or one such entry) with nested models' node indices counted from 0."""
    if (
        isinstance(references, list)
        and len(references) >= 3
        and isinstance(references[0], str)
        and isinstance(references[1], int)
    ):
        return [references[0], references[1] - first_nodes.get(references[0], 0), *references[2:]]
    if isinstance(references, list):
        return [_renumbered(item, first_nodes) for item in references]
    return references


def _current_node(node: Any, layer_names: set[str], recurrent: bool, first_nodes: Mapping[str, int]) -> Any:
    """A tf_keras ``[[layer, node, tensor, kwargs], ...]`` inbound node in Keras 3's ``{"args", "kwargs"}`` form.

    Keras 3 reads the old form too, but hands its call kwargs over as written
    (lists where tensors belong), and tf_keras recorded an RNN started from
    other tensors (``initial_state=``) as one call on [sequence, *states],
    which Keras 3's RNN layers refuse. In the current form every tensor
    reference is resolved, and an RNN's extra inputs are its initial_state.
    """
    if not isinstance(node, list) or not node:
        return node
    tensors, kwargs = [], {}
    for entry in node:
        tensors.append(_tensor_reference(_renumbered(list(entry[:3]), first_nodes)))
        if len(entry) > 3 and isinstance(entry[3], dict):
            kwargs.update(entry[3])
    if recurrent and len(tensors) > 1:
        tensors, kwargs["initial_state"] = tensors[:1], tensors[1:]
    if recurrent and kwargs.get("constants") is None:
        kwargs.pop("constants", None)  # tf_keras's Bidirectional records constants=None; Keras 3 RNNs take none.
    return {
        "args": [tensors[0] if len(tensors) == 1 else tensors],
        "kwargs": _references_in(kwargs, layer_names, first_nodes),
    }


def _tensor_reference(history: list) -> dict:
    # Shape and dtype are placeholders: Keras 3 replaces the tensor by the one its keras_history names.
    return {
        "class_name": "__keras_tensor__",
        "config": {"shape": [], "dtype": "float32", "keras_history": list(history)},
    }


def _references_in(value: Any, layer_names: set[str], first_nodes: Mapping[str, int]) -> Any:
    if isinstance(value, list):
        if (
            len(value) in (3, 4)
            and isinstance(value[0], str)
            and value[0] in layer_names
            and all(isinstance(item, int) for item in value[1:3])
        ):
            return _tensor_reference(_renumbered(list(value[:3]), first_nodes))
        if len(value) == 3 and value[0] == "_CONSTANT_VALUE":
            return value[2]
        return [_references_in(item, layer_names, first_nodes) for item in value]
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":  # tf_keras 2.13+ writes kwargs tensors this way already.
            history = value.get("config", {}).get("keras_history")
            if isinstance(history, list):
                value = {**value, "config": {**value["config"], "keras_history": _renumbered(history, first_nodes)}}
            return value
        return {key: _references_in(item, layer_names, first_nodes) for key, item in value.items()}
    return value


def _canonical_class_name(class_name: Any) -> Any:
    """Keras 3's own name for a layer class an alias names (``Convolution2D``: ``Conv2D``)."""
    import keras

    cls = getattr(keras.layers, class_name, None) if isinstance(class_name, str) else None
    return (
        cls.__name__
        if isinstance(cls, type) and cls.__name__ != class_name and hasattr(keras.layers, cls.__name__)
        else class_name
    )


def _importable(function: Any) -> bool:
    """Whether another process can import ``function`` by its module and name (so Keras 3 can store a reference)."""
    module = getattr(function, "__module__", None) or ""
    qualname = getattr(function, "__qualname__", "")
    return module not in ("__main__", "") and "<" not in qualname and module in sys.modules


def _module_keyed(layer: dict, caller_objects: Mapping[str, Any]) -> dict:
    layer = dict(layer)
    layer.pop("inbound_nodes", None)
    if layer["class_name"] not in caller_objects:
        layer["module"] = "keras.layers"
        layer["registered_name"] = None
    return layer


def _fit_arguments(source: str, config: dict, state: _State, keras) -> None:
    """Build each translated layer alone; drop the arguments Keras 3 refuses that hold tf_keras's default.

    Keras 3 layer classes take fewer arguments than tf_keras's (``groups`` of
    ``Conv2DTranspose``, ``trainable`` of ``SpatialDropout1D``...). Each layer
    is built from its config by its Keras 3 class; an argument it refuses is
    dropped where the legacy config holds the tf_keras class's own default for
    it (so it changed nothing), and refused otherwise, named. Other failures
    are reported with the layer's name.
    """
    for layer in _leaf_layers(config):
        class_name = layer["class_name"]
        if class_name in ("InputLayer", "Lambda") or class_name in state.custom_objects:
            continue
        cls = getattr(keras.layers, class_name, None)
        name = layer["config"].get("name")
        if cls is None:
            raise ExportError(
                f"{source}: cannot export to Keras 3: layer {name!r}: Keras 3 has no layer {class_name!r}"
            )
        while True:
            layer_config = copy.deepcopy(layer["config"])
            layer_config.pop("_tf1infer_batch_input_shape", None)
            try:
                with keras.saving.CustomObjectScope(state.custom_objects):  # Functions the config names by key.
                    cls.from_config(layer_config)
                break
            except Exception as exc:  # Whatever Keras 3 raises for arguments it does not take.
                argument = _refused_argument(exc)
                if argument is None or argument not in layer["config"]:
                    raise ExportError(
                        f"{source}: cannot export to Keras 3: layer {name!r} ({class_name}): Keras 3 "
                        f"refuses its configuration: {type(exc).__name__}: {exc}"
                    ) from exc
                value = layer["config"][argument]
                if not _is_legacy_default(class_name, argument, value):
                    raise ExportError(
                        f"{source}: cannot export to Keras 3: layer {name!r} ({class_name}) has {argument}={value!r}, "
                        f"which Keras 3's {class_name} does not take (only tf_keras's default could be dropped); "
                        "export a TF2 SavedModel with export_saved_model instead"
                    ) from exc
                del layer["config"][argument]
                state.note(
                    str(name),
                    f"dropped {argument}={value!r} (tf_keras's default; Keras 3's {class_name} takes no {argument})",
                )
    _strip_markers(config)


def _refused_argument(exc: Exception) -> str | None:
    """The argument a Keras 3 layer refused, from its error: Keras 3's own check, or Python's."""
    import re

    found = re.search(r"Unrecognized keyword arguments? passed to \w+: \{'(\w+)'", str(exc)) or re.search(
        r"unexpected keyword argument '(\w+)'", str(exc)
    )
    return found.group(1) if found else None


# Arguments every tf_keras layer takes (tf_keras's base Layer), with their defaults.
_BASE_DEFAULTS = {"trainable": True, "dynamic": False, "autocast": True}


def _is_legacy_default(class_name: str, argument: str, value: Any) -> bool:
    """Whether ``value`` is tf_keras's default for ``argument`` of its ``class_name`` (so dropping it changes nothing)."""
    import inspect

    import tf_keras

    cls = getattr(tf_keras.layers, class_name, None)
    # The class's own __init__, or a base class's that its **kwargs reach (Conv2DTranspose's groups is Conv's).
    parameters = [
        inspect.signature(base.__init__).parameters.get(argument)
        for base in (cls.__mro__ if cls else ())
        if "__init__" in vars(base)
    ]
    parameter = next((p for p in parameters if p is not None), None)
    if parameter is not None and parameter.default is not inspect.Parameter.empty:
        default = parameter.default
    elif argument in _BASE_DEFAULTS:
        default = _BASE_DEFAULTS[argument]
    else:
        return False
    normalize = lambda v: tuple(v) if isinstance(v, (list, tuple)) else v  # noqa: E731 - JSON turns tuples into lists.
    return normalize(value) == normalize(default)


def _leaf_layers(layer: dict) -> Iterator[dict]:
    config = layer.get("config")
    if not isinstance(config, dict):
        return
    if isinstance(config.get("layers"), list):
        for inner in config["layers"]:
            yield from _leaf_layers(inner)
        return
    if any(isinstance(config.get(key), dict) for key in _WRAPPER_KEYS):
        for key in _WRAPPER_KEYS:
            if isinstance(config.get(key), dict):
                yield from _leaf_layers(config[key])
        return
    if str(layer.get("module") or "").startswith("keras.src.ops."):
        return  # An operation of a recovered Lambda's keras.ops model (keras3_lambdas), saved by Keras 3 itself.
    yield layer


def _strip_markers(layer: dict) -> None:
    config = layer.get("config")
    if isinstance(config, dict):
        config.pop("_tf1infer_batch_input_shape", None)
        for inner in config.get("layers", []) if isinstance(config.get("layers"), list) else []:
            _strip_markers(inner)


def _model_class_name(model: Any) -> str:
    name = type(model).__name__
    return "Sequential" if name == "Sequential" else "Functional"


def _live_layers(model: Any) -> dict[str, Any]:
    found = {}
    for layer in getattr(model, "layers", []):
        found[layer.name] = layer
        for key in ("layer", "forward_layer", "backward_layer"):
            inner = getattr(layer, key, None)
            if inner is not None and hasattr(inner, "name"):
                found.setdefault(inner.name, inner)
        if hasattr(layer, "layers"):
            found.update({name: inner for name, inner in _live_layers(layer).items() if name not in found})
    return found


def _layer_pairs(
    source: str, old_model: Any, new_model: Any, prefix: str, renamed: Mapping[str, str]
) -> Iterator[tuple[Any, Any, str]]:
    new_by_name = {layer.name: layer for layer in new_model.layers}
    for old in old_model.layers:
        path = f"{prefix}{old.name}"
        new = new_by_name.get(renamed.get(old.name, old.name))
        if new is None:
            if not old.weights:
                continue  # An InputLayer Keras 3 keeps out of .layers, say.
            raise ExportError(f"{source}: layer {path!r} of the legacy model has no counterpart in the Keras 3 model")
        if hasattr(old, "layers") and hasattr(new, "layers") and type(old).__name__ in _MODEL_CLASSES:
            yield from _layer_pairs(source, old, new, path + "/", renamed)
        else:
            yield old, new, path


def _lookup_name(value: Any) -> str:
    """The name Keras 3 records for a class or function it saves, and looks up in custom_objects when loading."""
    import keras

    return keras.saving.get_registered_name(value)


def _qualified(function: Any) -> str:
    return f"{getattr(function, '__module__', '?')}.{getattr(function, '__qualname__', getattr(function, '__name__', '?'))}"


def code_reference(source: str, key: str, value: Any) -> CodeReference:
    """Where a custom class or named function lives, for the process that loads the exported file to import it."""
    module_name = getattr(value, "__module__", None) or ""
    qualname = getattr(value, "__qualname__", getattr(value, "__name__", key))
    if module_name in ("__main__", "") or "<locals>" in qualname:
        raise ExportError(
            f"{source}: cannot export to Keras 3: {key!r} ({module_name or '?'}.{qualname}) is defined in a script "
            "or inside a function, so no other process can import it to load the exported file; move it to a module"
        )
    module = sys.modules.get(module_name)
    search_path = None
    file = getattr(module, "__file__", None)
    if file and module_name.split(".")[0] not in ("builtins", "keras", "tensorflow", "numpy"):
        folder = os.path.dirname(os.path.abspath(file))
        if os.path.basename(file) == "__init__.py":
            folder = os.path.dirname(folder)
        for _ in range(module_name.count(".")):
            folder = os.path.dirname(folder)
        search_path = folder
    return CodeReference(key=key, module=module_name, qualname=qualname, search_path=search_path)


__all__ = [
    "CodeReference",
    "code_reference",
    "Keras3Plan",
    "Translation",
    "build_keras3_model",
    "copy_weights",
    "plan_keras3_model",
    "translate_layer_config",
]
