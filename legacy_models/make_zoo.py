"""Write the legacy Keras model zoo used by tests and ``make demo``.

Each model is saved as a Keras 2 HDF5 file (``model.save(path, save_format="h5")``,
the format of Keras 2 / tf.keras 1.x-2.x loops) with random, non-trivial weights
(biases, BatchNormalization statistics included) and a sample input file
``samples/<name>.npz`` keyed by input name. Run from anywhere:

    python legacy_models/make_zoo.py [NAME ...]    # every model, or only those named

The written files are small and committed, so tests and the demo need no
generation step; rerun this script only to change the zoo.
"""

from __future__ import annotations

import json
import os
import shutil
import sys

import h5py
import numpy as np
import tensorflow as tf
import tf_keras
from tf_keras import layers

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from zoo_layers import Scale  # noqa: E402

SAMPLE_ROWS = 16


def mlp():
    return tf_keras.Sequential(
        [
            layers.InputLayer(input_shape=(10,)),
            layers.Dense(32, activation="relu"),
            layers.Dense(16, activation="relu"),
            layers.Dense(3, activation="softmax"),
        ],
        name="mlp",
    )


def cnn():
    return tf_keras.Sequential(
        [
            layers.InputLayer(input_shape=(16, 16, 3)),
            layers.Conv2D(8, 3, padding="same"),
            layers.BatchNormalization(),
            layers.Activation("relu"),
            layers.MaxPooling2D(),
            layers.Dropout(0.5),
            layers.Conv2D(16, 3),
            layers.BatchNormalization(),
            layers.Activation("relu"),
            layers.GlobalAveragePooling2D(),
            layers.Dropout(0.3),
            layers.Dense(5, activation="softmax"),
        ],
        name="cnn",
    )


def lstm():
    return tf_keras.Sequential(
        [layers.InputLayer(input_shape=(8, 4)), layers.LSTM(16), layers.Dense(2)],
        name="lstm",
    )


def gru():
    # Variable-length sequences: the time axis is None.
    return tf_keras.Sequential(
        [
            layers.InputLayer(input_shape=(None, 4)),
            layers.GRU(12, return_sequences=True),
            layers.GRU(6),
            layers.Dense(1, activation="sigmoid"),
        ],
        name="gru",
    )


def embedding():
    ids = layers.Input(shape=(12,), dtype="int32", name="token_ids")
    hidden = layers.Embedding(100, 8)(ids)
    hidden = layers.GlobalAveragePooling1D()(hidden)
    probs = layers.Dense(4, activation="softmax", name="topic")(hidden)
    return tf_keras.Model(ids, probs, name="embedding")


def two_in_two_out():
    features = layers.Input(shape=(6,), name="features")
    extra = layers.Input(shape=(3,), name="extra")
    hidden = layers.Dense(16, activation="tanh")(layers.Concatenate()([features, extra]))
    score = layers.Dense(1, activation="sigmoid", name="score")(hidden)
    probs = layers.Dense(4, activation="softmax", name="probs")(hidden)
    return tf_keras.Model([features, extra], [score, probs], name="two_in_two_out")


def custom_layer():
    return tf_keras.Sequential(
        [layers.InputLayer(input_shape=(5,)), layers.Dense(8), Scale(name="scale"), layers.Dense(2)],
        name="custom_layer",
    )


def lambda_model():
    return tf_keras.Sequential(
        [
            layers.InputLayer(input_shape=(5,)),
            layers.Dense(8),
            layers.Lambda(lambda x: x * 2.0 + 1.0, name="affine"),
            layers.Dense(2),
        ],
        name="lambda_model",
    )


def masked_states():
    """Masked RNNs started from other layers' states: a GRU (``reset_after=False``) from an encoder GRU's state, a
    ``Bidirectional(SimpleRNN)`` from two Dense projections of it."""
    source = layers.Input(shape=(None,), name="source")
    target = layers.Input(shape=(None,), name="target")
    encoded = layers.Embedding(MASKED_STATES_VOCABULARY["source"], 8, mask_zero=True)(source)
    _, state = layers.GRU(6, return_sequences=True, return_state=True, reset_after=False, name="encoder_gru")(encoded)
    decoded = layers.Embedding(MASKED_STATES_VOCABULARY["target"], 8, mask_zero=True)(target)
    sequence = layers.GRU(6, return_sequences=True, name="decoder_gru")(decoded, initial_state=[state])
    forward, backward = layers.Dense(5, name="forward_state")(state), layers.Dense(5, name="backward_state")(state)
    both = layers.Bidirectional(layers.SimpleRNN(5, return_sequences=True), name="both_ways")(
        sequence, initial_state=[forward, backward]
    )
    return tf_keras.Model([source, target], layers.Dense(3, name="scores")(both), name="masked_states")


def lambda_resize():
    """Keras 2.0-style image model whose Lambda resizes with TensorFlow: a function reading the global ``tf``."""
    image = layers.Input(shape=(12, 12, 3), name="image")
    x = layers.Conv2D(4, 3, padding="same", activation="relu")(image)
    x = layers.Lambda(lambda t: tf.compat.v1.image.resize_images(t, (20, 20), align_corners=True), name="resize")(x)
    x = layers.Conv2D(6, 3, strides=2, activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    probs = layers.Dense(3, activation="softmax", name="probs")(x)
    return tf_keras.Model(image, probs, name="lambda_resize")


def channels_first(data_format: str = "channels_first"):
    """A CNN on Theano-ordered images, as Keras 2 saved one with ``data_format="channels_first"``.

    With ``data_format="channels_last"`` the same layers (same weights) run
    between ``Permute`` layers and take the same (channels, rows, cols) input:
    the tests' eager reference, which also runs on CPUs whose plain kernels
    refuse channels-first convolutions and pooling.
    """
    channel_axis = 1 if data_format == "channels_first" else -1
    image = layers.Input(shape=(3, 16, 16), name="image")
    x = image if data_format == "channels_first" else layers.Permute((2, 3, 1))(image)
    x = layers.Conv2D(8, 3, padding="same", data_format=data_format)(x)
    x = layers.BatchNormalization(axis=channel_axis)(x)
    x = layers.Activation("relu")(x)
    x = layers.MaxPooling2D(data_format=data_format)(x)
    x = layers.SeparableConv2D(8, 3, padding="same", data_format=data_format)(x)
    x = layers.AveragePooling2D(data_format=data_format)(x)
    x = layers.Conv2D(6, 3, data_format=data_format)(x)
    if data_format == "channels_last":
        x = layers.Permute((3, 1, 2))(x)  # Flatten (channels, rows, cols), as the channels-first model does.
    x = layers.Flatten()(x)
    probs = layers.Dense(4, activation="softmax", name="probs")(x)
    return tf_keras.Model(image, probs, name="channels_first")


def seq2seq():
    """A Keras 2 text model as Keras 2.2 wrote them: token ids in float32 Inputs (Keras 2's default dtype) feeding
    Embedding layers, an LSTM encoder whose states start an LSTM decoder, two inputs and variable lengths."""
    encoder_tokens = layers.Input(shape=(None,), name="encoder_tokens")
    decoder_tokens = layers.Input(shape=(None,), name="decoder_tokens")
    encoded = layers.Embedding(SEQ2SEQ_VOCABULARY["encoder_tokens"], 16, mask_zero=True)(encoder_tokens)
    _, state_h, state_c = layers.LSTM(24, return_state=True)(encoded)
    decoded = layers.Embedding(SEQ2SEQ_VOCABULARY["decoder_tokens"], 16, mask_zero=True)(decoder_tokens)
    sequence = layers.LSTM(24, return_sequences=True)(decoded, initial_state=[state_h, state_c])
    next_token = layers.Dense(SEQ2SEQ_VOCABULARY["decoder_tokens"], activation="softmax", name="next_token")(sequence)
    return tf_keras.Model([encoder_tokens, decoder_tokens], next_token, name="seq2seq")


def seq2seq_masked():
    """An encoder-decoder as Keras 2.2.4 wrote them: padded ids (``mask_zero``) in float32 inputs, ``hard_sigmoid``
    gates, the decoder started from the encoder's states and returning its own, ``TimeDistributed(Dense)``."""
    encoder_tokens = layers.Input(shape=(None,), name="source_ids")
    decoder_tokens = layers.Input(shape=(None,), name="target_ids")
    encoded = layers.Embedding(SEQ2SEQ_MASKED_VOCABULARY["source_ids"], 12, mask_zero=True)(encoder_tokens)
    _, state_h, state_c = layers.LSTM(16, return_state=True, recurrent_activation="hard_sigmoid", name="encoder")(
        encoded
    )
    decoded = layers.Embedding(SEQ2SEQ_MASKED_VOCABULARY["target_ids"], 12, mask_zero=True)(decoder_tokens)
    sequence, decoder_h, _ = layers.LSTM(
        16, return_sequences=True, return_state=True, recurrent_activation="hard_sigmoid", name="decoder"
    )(decoded, initial_state=[state_h, state_c])
    probs = layers.TimeDistributed(
        layers.Dense(SEQ2SEQ_MASKED_VOCABULARY["target_ids"], activation="softmax"), name="probs"
    )(sequence)
    summary = layers.Dense(4, activation="tanh", name="summary")(decoder_h)
    return tf_keras.Model([encoder_tokens, decoder_tokens], [probs, summary], name="seq2seq_masked")


def masking_bidirectional():
    """Padded feature sequences (``Masking``) through stacked masked recurrent layers: a ``Bidirectional(LSTM)`` and
    a GRU (``reset_after=False``, Keras 2.0-2.2's kind) returning sequences, then a SimpleRNN."""
    steps = layers.Input(shape=(None, 6), name="steps")
    x = layers.Masking(mask_value=0.0)(steps)
    x = layers.Bidirectional(layers.LSTM(8, return_sequences=True), name="bilstm")(x)
    x = layers.GRU(7, return_sequences=True, reset_after=False, recurrent_activation="hard_sigmoid", name="gru")(x)
    x = layers.SimpleRNN(5, name="simple_rnn")(x)
    scores = layers.Dense(3, name="scores")(x)
    return tf_keras.Model(steps, scores, name="masking_bidirectional")


def cudnn_lstm():
    """A GPU-trained text model as Keras 2.1-2.3 saved them: ``CuDNNLSTM``, whose only kernel is cuDNN's."""
    from tf_keras.src.layers.rnn.cudnn_lstm import CuDNNLSTM  # Not exported by tf_keras; built, never run, here.

    return tf_keras.Sequential(
        [layers.InputLayer(input_shape=(9, 4)), CuDNNLSTM(7, name="cudnn_lstm")], name="cudnn_lstm"
    )


def cudnn_gru():
    """``CuDNNGRU`` over variable-length sequences, returning every step (cuDNN's GRU is ``reset_after``)."""
    from tf_keras.src.layers.rnn.cudnn_gru import CuDNNGRU

    return tf_keras.Sequential(
        [layers.InputLayer(input_shape=(None, 5)), CuDNNGRU(6, return_sequences=True, name="cudnn_gru")],
        name="cudnn_gru",
    )


def thresholded_relu():
    """A layer Keras 3 removed (``ThresholdedReLU``) between Dense layers."""
    return tf_keras.Sequential(
        [
            layers.InputLayer(input_shape=(6,)),
            layers.Dense(8),
            layers.ThresholdedReLU(theta=0.3, name="thresholded"),
            layers.Dense(3),
        ],
        name="thresholded_relu",
    )


# Vocabulary sizes of inputs that hold token ids, whatever their dtype: samples are drawn from [1, size).
SEQ2SEQ_VOCABULARY = {"encoder_tokens": 40, "decoder_tokens": 30}
SEQ2SEQ_MASKED_VOCABULARY = {"source_ids": 25, "target_ids": 20}
MASKED_STATES_VOCABULARY = {"source": 30, "target": 20}
TOKEN_INPUTS = {**SEQ2SEQ_VOCABULARY, **SEQ2SEQ_MASKED_VOCABULARY, **MASKED_STATES_VOCABULARY}
# Inputs whose samples are padded as real data is: ids with 0 (mask_zero) after their end, or zero feature vectors
# (Masking) after their end; each row a different length.
PADDED_INPUTS = {"source_ids", "target_ids", "steps", "source", "target"}

ZOO = {
    "mlp": mlp,
    "cnn": cnn,
    "lstm": lstm,
    "gru": gru,
    "embedding": embedding,
    "two_in_two_out": two_in_two_out,
    "custom_layer": custom_layer,
    "lambda": lambda_model,
    "channels_first": channels_first,
    "seq2seq": seq2seq,
    "cudnn_lstm": cudnn_lstm,
    "cudnn_gru": cudnn_gru,
    "thresholded_relu": thresholded_relu,
    "seq2seq_masked": seq2seq_masked,
    "masking_bidirectional": masking_bidirectional,
    "lambda_resize": lambda_resize,
    "masked_states": masked_states,
}


def randomize(model, rng: np.random.Generator) -> None:
    """Give every weight a random value, so no part of a model is trivially zero or one."""
    for weight in model.weights:
        name = weight.name
        shape = tuple(weight.shape)
        if "moving_variance" in name:
            value = rng.uniform(0.5, 2.0, shape)
        elif "moving_mean" in name:
            value = rng.normal(0.0, 0.5, shape)
        elif "gamma" in name:
            value = rng.uniform(0.5, 1.5, shape)
        elif "bias" in name or "beta" in name:
            value = rng.normal(0.0, 0.1, shape)
        else:
            value = weight.numpy() + rng.normal(0.0, 0.05, shape)
        weight.assign(value.astype(weight.dtype.as_numpy_dtype))


def sample_inputs(model, rng: np.random.Generator) -> dict[str, np.ndarray]:
    samples = {}
    for tensor in model.inputs:
        shape = [SAMPLE_ROWS] + [dim if dim is not None else 7 for dim in tensor.shape[1:]]
        name = tensor.name.split(":")[0]
        if name in TOKEN_INPUTS:
            samples[name] = rng.integers(1, TOKEN_INPUTS[name], shape).astype(tensor.dtype.as_numpy_dtype)
        elif tensor.dtype.is_integer:
            samples[name] = rng.integers(0, 100, shape).astype(tensor.dtype.as_numpy_dtype)
        else:
            samples[name] = rng.normal(0.0, 1.0, shape).astype("float32")
        if name in PADDED_INPUTS:  # Padding after the end, and in every other row one padded step inside.
            for row, length in enumerate(rng.integers(2, shape[1] + 1, shape[0])):
                samples[name][row, length:] = 0
                if row % 2:
                    samples[name][row, rng.integers(1, length)] = 0
    return samples


def readable_by_older_keras2(path: str) -> None:
    """Drop what tf-keras 2.16+ records at its default and tf-keras 2.15 refuses (InputLayer's ``optional``).

    The zoo stands for legacy files, which never held it, and the suite's independent reference
    (tf_keras's own ``load_model``) reads the zoo on every TensorFlow of the supported range.
    """
    from tf1infer.loaders.keras_h5 import iter_layer_configs

    with h5py.File(path, "r+") as file:
        config = json.loads(file.attrs["model_config"])
        for layer in iter_layer_configs(config):
            if layer.get("class_name") == "InputLayer" and layer.get("config", {}).get("optional") is False:
                del layer["config"]["optional"]
        file.attrs["model_config"] = json.dumps(config)


DEMO_MODEL = "mlp"
DEMO_DATA = os.path.join(HERE, os.pardir, "tf1infer", "cli", "demo_data")


def main(names: list[str]) -> None:
    os.makedirs(os.path.join(HERE, "samples"), exist_ok=True)
    for index, (name, build) in enumerate(ZOO.items()):
        if names and name not in names:
            continue
        tf_keras.utils.set_random_seed(1234 + index)  # Each model the same whether written alone or with all.
        rng = np.random.default_rng(index)
        tf_keras.backend.clear_session()  # Layer names restart (input_1, dense, ...) as in a fresh script.
        model = build()
        randomize(model, rng)
        path = os.path.join(HERE, f"{name}.h5")
        model.save(path, save_format="h5")
        readable_by_older_keras2(path)
        samples = sample_inputs(model, rng)
        np.savez(os.path.join(HERE, "samples", f"{name}.npz"), **{k: samples[k] for k in model.input_names})
        print(f"wrote {os.path.relpath(path)} ({os.path.getsize(path)} bytes, {model.count_params()} parameters)")
        if name == DEMO_MODEL:  # The wheel's own copy, for `tf1infer demo` without the repository.
            os.makedirs(os.path.join(DEMO_DATA, "samples"), exist_ok=True)
            shutil.copyfile(path, os.path.join(DEMO_DATA, f"{name}.h5"))
            shutil.copyfile(
                os.path.join(HERE, "samples", f"{name}.npz"), os.path.join(DEMO_DATA, "samples", f"{name}.npz")
            )


if __name__ == "__main__":
    main(sys.argv[1:])
