"""Keras 1.x HDF5 files: layer configs and weight layouts, converted as Keras 2 converted them.

Keras 2.0 read Keras 1 files through argument converters (``output_dim`` became
``units``, ``nb_filter`` / ``nb_row`` / ``nb_col`` became ``filters`` and
``kernel_size``, ``border_mode`` became ``padding``, ``dim_ordering`` became
``data_format``...) and a weight converter (Theano-ordered kernels transposed,
LSTM/GRU per-gate matrices concatenated in the Keras 2 gate order). tf_keras
keeps the weight converter (``preprocess_weights_for_loading`` with version
"1") but no longer the argument converters, so this module rewrites the stored
config into its Keras 2 form before tf_keras builds it, and loads the weights
layer by layer through that converter.

Only what changes the computed outputs is kept. Initializers, regularizers and
constraints act during training only, so their Keras 1 forms are dropped rather
than translated. Anything else tf_keras does not accept is left in place, so
that tf_keras names it and nothing is silently ignored.
"""

from __future__ import annotations

import copy
from typing import Any

import h5py
import numpy as np

from tf1infer.errors import ModelLoadError
from tf1infer.loaders.hdf5_safety import H5PY_ERRORS
from tf1infer.loaders.keras_configs import iter_layer_configs

_DIM_ORDERING = {"tf": "channels_last", "th": "channels_first", "default": None}

# Keras 1 arguments that only matter while training.
_TRAINING_ONLY = {
    "init",
    "inner_init",
    "forget_bias_init",
    "beta_init",
    "gamma_init",
    "W_regularizer",
    "b_regularizer",
    "U_regularizer",
    "activity_regularizer",
    "gamma_regularizer",
    "beta_regularizer",
    "W_constraint",
    "b_constraint",
    "U_constraint",
    "depthwise_regularizer",
    "pointwise_regularizer",
    "depthwise_constraint",
    "pointwise_constraint",
}

_CONV_RENAMES = {
    "nb_filter": "filters",
    "subsample": "strides",
    "border_mode": "padding",
    "dim_ordering": "data_format",
    "bias": "use_bias",
}
_RECURRENT_RENAMES = {
    "output_dim": "units",
    "inner_activation": "recurrent_activation",
    "dropout_W": "dropout",
    "dropout_U": "recurrent_dropout",
}
# Keras 1 class name -> (Keras 2 class name, argument renames).
_LAYERS: dict[str, tuple[str, dict[str, str]]] = {
    "Dense": ("Dense", {"output_dim": "units", "bias": "use_bias"}),
    "Dropout": ("Dropout", {"p": "rate"}),
    "SpatialDropout1D": ("SpatialDropout1D", {"p": "rate"}),
    "SpatialDropout2D": ("SpatialDropout2D", {"p": "rate", "dim_ordering": "data_format"}),
    "GaussianDropout": ("GaussianDropout", {"p": "rate"}),
    "GaussianNoise": ("GaussianNoise", {"sigma": "stddev"}),
    "Convolution1D": ("Conv1D", {**_CONV_RENAMES, "filter_length": "kernel_size", "subsample_length": "strides"}),
    "AtrousConvolution1D": (
        "Conv1D",
        {
            **_CONV_RENAMES,
            "filter_length": "kernel_size",
            "subsample_length": "strides",
            "atrous_rate": "dilation_rate",
        },
    ),
    "Convolution2D": ("Conv2D", _CONV_RENAMES),
    "AtrousConvolution2D": ("Conv2D", {**_CONV_RENAMES, "atrous_rate": "dilation_rate"}),
    "SeparableConvolution2D": ("SeparableConv2D", _CONV_RENAMES),
    "Deconvolution2D": ("Conv2DTranspose", _CONV_RENAMES),
    "Convolution3D": ("Conv3D", _CONV_RENAMES),
    "MaxPooling1D": ("MaxPooling1D", {"pool_length": "pool_size", "stride": "strides", "border_mode": "padding"}),
    "AveragePooling1D": (
        "AveragePooling1D",
        {"pool_length": "pool_size", "stride": "strides", "border_mode": "padding"},
    ),
    "MaxPooling2D": ("MaxPooling2D", {"border_mode": "padding", "dim_ordering": "data_format"}),
    "AveragePooling2D": ("AveragePooling2D", {"border_mode": "padding", "dim_ordering": "data_format"}),
    "MaxPooling3D": ("MaxPooling3D", {"border_mode": "padding", "dim_ordering": "data_format"}),
    "AveragePooling3D": ("AveragePooling3D", {"border_mode": "padding", "dim_ordering": "data_format"}),
    "GlobalMaxPooling2D": ("GlobalMaxPooling2D", {"dim_ordering": "data_format"}),
    "GlobalAveragePooling2D": ("GlobalAveragePooling2D", {"dim_ordering": "data_format"}),
    "ZeroPadding2D": ("ZeroPadding2D", {"dim_ordering": "data_format"}),
    "Cropping2D": ("Cropping2D", {"dim_ordering": "data_format"}),
    "UpSampling1D": ("UpSampling1D", {"length": "size"}),
    "UpSampling2D": ("UpSampling2D", {"dim_ordering": "data_format"}),
    "Embedding": ("Embedding", {}),
    "SimpleRNN": ("SimpleRNN", _RECURRENT_RENAMES),
    "GRU": ("GRU", _RECURRENT_RENAMES),
    "LSTM": ("LSTM", _RECURRENT_RENAMES),
    "BatchNormalization": ("BatchNormalization", {}),
    "PReLU": ("PReLU", {}),
}
_RECURRENT = {"SimpleRNN", "GRU", "LSTM"}
_MERGE_MODES = {
    "sum": "Add",
    "mul": "Multiply",
    "ave": "Average",
    "max": "Maximum",
    "concat": "Concatenate",
    "dot": "Dot",
}
_CONV_KERNELS = {"Conv1D", "Conv2D", "Conv3D", "Conv2DTranspose", "SeparableConv2D"}


def is_keras1(attrs: dict[str, Any], config: Any) -> bool:
    """True for a file written by Keras 1.x: by its recorded version, else by Keras 1-only arguments.

    Keras 1.0 did not record its version, so a file without one is judged by
    its config: ``output_dim`` on a Dense layer or ``nb_filter`` on a
    convolution exist in Keras 1 only.
    """
    version = str(attrs.get("keras_version") or "")
    if version:
        return version.split(".")[0] == "1"
    for layer in iter_layer_configs(config):
        arguments = layer.get("config")
        if isinstance(arguments, dict) and (
            {"nb_filter", "border_mode"} & arguments.keys()
            or (layer.get("class_name") == "Dense" and "output_dim" in arguments)
        ):
            return True
    return False


def convert_config(path: str, config: dict) -> dict:
    """The Keras 2 form of a Keras 1 model config (a converted deep copy)."""
    config = copy.deepcopy(config)
    _convert_model(path, config)
    return config


def _convert_model(path: str, model: dict) -> None:
    inner = model.get("config")
    layers = inner if isinstance(inner, list) else (inner or {}).get("layers", [])
    sequential = model.get("class_name") == "Sequential"
    if sequential and layers:
        _declare_sequential_input(layers)
    for layer in layers:
        _convert_layer(path, layer, in_sequential=sequential)


def _declare_sequential_input(layers: list) -> None:
    """Give a Keras 1 Sequential an explicit InputLayer with the input dtype Keras 1 recorded.

    Keras 1 kept the input placeholder's dtype in the first layer's
    ``input_dtype``; in Keras 2 a layer's ``dtype`` is its weights' dtype, so an
    int32 Embedding input must become an InputLayer of its own (named as Keras 1
    named the Sequential input) rather than an int32 Embedding.
    """
    first = layers[0].get("config")
    if not isinstance(first, dict) or "batch_input_shape" not in first or layers[0].get("class_name") == "InputLayer":
        return
    input_layer = {
        "class_name": "InputLayer",
        "config": {
            "name": f"{first.get('name')}_input",
            "batch_input_shape": first.pop("batch_input_shape"),
            "dtype": first.pop("input_dtype", None) or "float32",
            "sparse": False,
        },
    }
    layers.insert(0, input_layer)


def _convert_layer(path: str, layer: dict, *, in_sequential: bool = False) -> None:
    class_name = layer.get("class_name")
    arguments = layer.get("config")
    if class_name in ("Model", "Sequential"):
        _convert_model(path, layer)
        return
    if not isinstance(arguments, dict):
        return
    if "input_dtype" in arguments:
        input_dtype = arguments.pop("input_dtype")
        if class_name == "InputLayer":
            arguments.setdefault("dtype", input_dtype)
    for key in _TRAINING_ONLY & arguments.keys():
        del arguments[key]
    if class_name == "InputLayer":
        arguments.pop("trainable", None)  # Keras 1 wrote it; Keras 2 inputs take no such argument.
    if class_name in ("TimeDistributed", "Bidirectional"):
        _convert_layer(path, arguments["layer"])
        return
    if class_name == "Merge":
        _convert_merge(path, layer, in_sequential)
        return
    if class_name == "BatchNormalization":
        _convert_batch_normalization(path, arguments)
    if class_name not in _LAYERS:
        return
    new_class, renames = _LAYERS[class_name]
    layer["class_name"] = new_class
    _rename(arguments, renames)
    if "data_format" in arguments:
        arguments["data_format"] = _DIM_ORDERING.get(arguments["data_format"], arguments["data_format"])
    if "nb_row" in arguments and "nb_col" in arguments:
        arguments["kernel_size"] = (arguments.pop("nb_row"), arguments.pop("nb_col"))
    if new_class in ("Conv3D",) and {"kernel_dim1", "kernel_dim2", "kernel_dim3"} <= arguments.keys():
        arguments["kernel_size"] = tuple(arguments.pop(f"kernel_dim{i}") for i in (1, 2, 3))
    if new_class == "Conv2DTranspose":
        arguments.pop("output_shape", None)  # Keras 2 computes it.
    if new_class == "Embedding":
        arguments.pop("dropout", None)  # A training-time option of Keras 1 Embedding.
    if new_class in _RECURRENT:
        # Keras 1 "cpu"/"mem"/"gpu" picked kernels with the same results; Keras 2 picks its own.
        arguments.pop("consume_less", None)
    if new_class == "GRU":
        # Keras 1 applied the reset gate before the recurrent matmul, which is reset_after=False.
        arguments["reset_after"] = False
    if new_class != "Embedding" and ("input_dim" in arguments or "input_length" in arguments):
        _input_dim_to_shape(arguments, new_class)


def _rename(arguments: dict, renames: dict[str, str]) -> None:
    for old, new in renames.items():
        if old in arguments:
            value = arguments.pop(old)
            arguments.setdefault(new, value)


def _input_dim_to_shape(arguments: dict, class_name: str) -> None:
    """Keras 1 ``input_dim`` / ``input_length`` become a batch input shape (only where given)."""
    input_dim = arguments.pop("input_dim", None)
    input_length = arguments.pop("input_length", None)
    if input_dim is None or "batch_input_shape" in arguments:
        return
    if class_name in _RECURRENT or class_name == "Conv1D":
        arguments["batch_input_shape"] = [None, input_length, input_dim]
    else:
        arguments["batch_input_shape"] = [None, input_dim]


def _convert_batch_normalization(path: str, arguments: dict) -> None:
    mode = arguments.pop("mode", 0)
    if mode != 0:
        raise ModelLoadError(
            f"{path}: BatchNormalization layer '{arguments.get('name')}' uses Keras 1 mode={mode}, which "
            "normalizes with the statistics of each batch even at inference; Keras 2 has no such mode "
            "(only mode=0, feature-wise with moving statistics, is converted)"
        )


def _convert_merge(path: str, layer: dict, in_sequential: bool) -> None:
    arguments = layer["config"]
    name = arguments.get("name")
    if in_sequential or arguments.get("layers"):
        raise ModelLoadError(
            f"{path}: Merge layer '{name}' merges whole Sequential models (the Keras 1 "
            "Sequential([Merge([branch_a, branch_b])]) pattern), which Keras 2 dropped; "
            "rebuild it as a functional model with the same layer names and load the weights with "
            "tf1infer.load(path, architecture=build_model)"
        )
    mode = arguments.get("mode")
    if arguments.get("mode_type", "raw") != "raw" or mode not in _MERGE_MODES:
        raise ModelLoadError(
            f"{path}: Merge layer '{name}' uses mode {mode!r}; the Keras 1 modes converted are "
            f"{', '.join(sorted(_MERGE_MODES))} (a Python function mode is bytecode, "
            "and 'cos' has no Keras 2 equivalent with the same output shape)"
        )
    new_arguments = {"name": name, "trainable": arguments.get("trainable", True)}
    if mode == "concat":
        new_arguments["axis"] = arguments.get("concat_axis", -1)
    elif mode == "dot":
        new_arguments["axes"] = arguments.get("dot_axes", -1)
    layer["class_name"] = _MERGE_MODES[mode]
    layer["config"] = new_arguments


def load_weights(path: str, model, backend: str | None = None) -> None:
    """Load Keras 1 weights into the converted ``model``, layer by layer, converting their layouts.

    Layers (a nested model counting as one) are matched by position among the
    layers that have weights, as Keras does for ``load_model``; each layer's arrays go through tf_keras's
    Keras 1 -> 2 converter (kernel transposes, LSTM/GRU gate reordering).
    Kernels of a Theano-backend file (``backend`` recorded with the weights,
    else the ``backend`` argument) are also flipped spatially, because Theano
    convolves where TensorFlow correlates.
    """
    import tf_keras
    from tf_keras.src.saving.legacy.hdf5_format import preprocess_weights_for_loading

    stored, backend = _read_weights(path, backend)
    layers = [layer for layer in model.layers if layer.weights]
    if len(stored) != len(layers):
        raise ModelLoadError(
            f"{path}: the file stores weights for {len(stored)} layer(s) "
            f"({', '.join(stored) or 'none'}), the converted architecture has {len(layers)} "
            f"layer(s) with weights ({', '.join(layer.name for layer in layers) or 'none'})"
        )
    assignments: list[Any] = []
    for (name, arrays), layer in zip(stored.items(), layers):
        try:
            arrays = preprocess_weights_for_loading(layer, arrays, "1", backend)
        except (ValueError, IndexError) as exc:  # tf_keras's converter on arrays of the wrong number or shape.
            raise ModelLoadError(
                f"{path}: weights stored for layer '{name}' cannot be converted for layer '{layer.name}' "
                f"({type(layer).__name__}): {type(exc).__name__}: {exc}"
            ) from exc
        if backend == "theano" and type(layer).__name__ in _CONV_KERNELS:
            arrays[0] = _flip_spatial(arrays[0])
        expected = [tuple(weight.shape) for weight in layer.weights]
        found = [tuple(array.shape) for array in arrays]
        if expected != found:
            raise ModelLoadError(
                f"{path}: weights stored for layer '{name}' have shapes {found}, "
                f"layer '{layer.name}' ({type(layer).__name__}) expects {expected}"
            )
        assignments.extend(zip(layer.weights, arrays))
    tf_keras.backend.batch_set_value(assignments)


def _read_weights(path: str, backend: str | None) -> tuple[dict[str, list[np.ndarray]], str | None]:
    """The stored arrays of every layer that has weights, in file order, and the recorded backend.

    Only numeric arrays are accepted; h5py's errors on a damaged file become a
    ModelLoadError naming the file.
    """
    try:
        with h5py.File(path, "r") as handle:
            group = handle["model_weights"] if "model_weights" in handle else handle
            backend = _text(group.attrs.get("backend", backend or "")) or None
            stored: dict[str, list[np.ndarray]] = {}
            for name in (_text(name) for name in group.attrs.get("layer_names", [])):
                weight_names = [_text(w) for w in group[name].attrs.get("weight_names", [])]
                if weight_names:
                    stored[name] = [np.asarray(group[name][w]) for w in weight_names]
    except (*H5PY_ERRORS, UnicodeDecodeError) as exc:
        raise ModelLoadError(
            f"{path}: cannot read the weights (the file is truncated or corrupt): {type(exc).__name__}: {exc}"
        ) from exc
    for name, arrays in stored.items():
        for array in arrays:
            if array.dtype.kind not in "fiub":
                raise ModelLoadError(f"{path}: a weight of layer '{name}' holds {array.dtype} values, not numbers")
    return stored, backend


def _flip_spatial(kernel: np.ndarray) -> np.ndarray:
    """Turn a convolution kernel into the matching correlation kernel (last two axes are channels)."""
    spatial = (slice(None, None, -1),) * (kernel.ndim - 2)
    return np.ascontiguousarray(kernel[spatial + (slice(None), slice(None))])


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
