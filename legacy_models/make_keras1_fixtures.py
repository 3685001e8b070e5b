"""Write Keras 1.x HDF5 models with h5py, laid out as Keras 1.2.2's ``model.save`` wrote them, into keras1/.

Keras 1 cannot be installed next to today's TensorFlow, so each file is
written directly: the Keras 1 layer configs (``output_dim``, ``nb_filter``,
``border_mode``, ``dim_ordering``, ``Merge``, per-gate LSTM/GRU weights...) as
``model_config``, and the weights in Keras 1's layouts. The expected outputs are
computed here with numpy from the Keras 1 formulas and saved next to each model
(``<name>.npz``: ``inputs/<input name>`` and ``outputs/<output name>``), so the
tests compare tf1infer with a reference that shares no code with it.

Fixtures:
  conv_merge.h5      functional model, dim_ordering "th": Convolution2D (same, relu) ->
                     BatchNormalization (mode 0, axis 1) -> MaxPooling2D -> Flatten -> Dense ->
                     Dropout(p) on one input, Dense on a second input, Merge(mode="concat") ->
                     Dense(softmax)
  rnn_sequential.h5  Sequential: Embedding(input_length=7) -> LSTM(return_sequences, 12 per-gate
                     weights) -> GRU(9 per-gate weights) -> Dense(softmax)
  conv_theano.h5     Sequential Convolution2D written by the Theano backend (a true convolution,
                     so its kernel must be flipped for TensorFlow) -> Flatten -> Dense
  lambda_py35.h5     Sequential with three Lambda layers whose functions are bytecode of Python 3.5,
                     as Keras 1.2 stored it (marshal bytes decoded with raw_unicode_escape):
                     x / 127.5 - 1.0 -> K.resize_images(x, 2, 2, 'tf') (Keras 1's dim_ordering) ->
                     Flatten -> Dense -> a def calling K.l2_normalize(x, axis=1), with a docstring.
                     Python 3.5 is not here to compile them: marshal_code_35 assembles the code
                     objects byte by byte (tests/test_lambda_recovery.py checks them with xdis).

Run: python legacy_models/make_keras1_fixtures.py
"""

from __future__ import annotations

import json
import os
import struct

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "keras1")
KERAS_VERSION = "1.2.2"
SAMPLES = 5


# ---------------------------------------------------------------- numpy reference (Keras 1 semantics)


def hard_sigmoid(x):
    return np.clip(0.2 * x + 0.5, 0.0, 1.0)


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def correlate_th(x, kernel, bias, padding):
    """Keras 1 Convolution2D on the TensorFlow backend, th ordering: x (b, c, h, w), kernel (f, c, r, s)."""
    filters, _, rows, cols = kernel.shape
    if padding == "same":
        x = np.pad(x, ((0, 0), (0, 0), (rows // 2, rows // 2), (cols // 2, cols // 2)))
    out_h, out_w = x.shape[2] - rows + 1, x.shape[3] - cols + 1
    out = np.zeros((x.shape[0], filters, out_h, out_w), np.float64)
    for i in range(out_h):
        for j in range(out_w):
            patch = x[:, :, i : i + rows, j : j + cols]
            out[:, :, i, j] = np.einsum("bcrs,fcrs->bf", patch, kernel)
    return out + bias[None, :, None, None]


def max_pool_th(x, size=2):
    b, c, h, w = x.shape
    return (
        x[:, :, : h // size * size, : w // size * size].reshape(b, c, h // size, size, w // size, size).max(axis=(3, 5))
    )


def lstm_keras1(x, weights, units):
    w_i, u_i, b_i, w_c, u_c, b_c, w_f, u_f, b_f, w_o, u_o, b_o = weights
    h = np.zeros((x.shape[0], units))
    c = np.zeros((x.shape[0], units))
    outputs = []
    for t in range(x.shape[1]):
        xt = x[:, t]
        i = hard_sigmoid(xt @ w_i + h @ u_i + b_i)
        f = hard_sigmoid(xt @ w_f + h @ u_f + b_f)
        c = f * c + i * np.tanh(xt @ w_c + h @ u_c + b_c)
        o = hard_sigmoid(xt @ w_o + h @ u_o + b_o)
        h = o * np.tanh(c)
        outputs.append(h)
    return np.stack(outputs, axis=1)


def gru_keras1(x, weights, units):
    w_z, u_z, b_z, w_r, u_r, b_r, w_h, u_h, b_h = weights
    h = np.zeros((x.shape[0], units))
    for t in range(x.shape[1]):
        xt = x[:, t]
        z = hard_sigmoid(xt @ w_z + h @ u_z + b_z)
        r = hard_sigmoid(xt @ w_r + h @ u_r + b_r)
        candidate = np.tanh(xt @ w_h + (r * h) @ u_h + b_h)
        h = z * h + (1 - z) * candidate
    return h


# ---------------------------------------------------------------- Keras 1 file layout


def layer(class_name, name, inbound=None, **config):
    entry = {"class_name": class_name, "name": name, "config": {"name": name, "trainable": True, **config}}
    if inbound is not None:
        entry["inbound_nodes"] = [[[source, 0, 0] for source in inbound]] if inbound else []
    return entry


# Keras 1 wrote every regularizer and constraint argument, None where unused.
NO_REGULARIZERS = dict(
    W_regularizer=None, b_regularizer=None, activity_regularizer=None, W_constraint=None, b_constraint=None
)


def dense_keras1(name, output_dim, activation="linear", **extra):
    """A Keras 1.2.2 Dense layer's config, every argument as Keras 1 wrote it."""
    return layer(
        "Dense",
        name,
        output_dim=output_dim,
        init="glorot_uniform",
        activation=activation,
        **NO_REGULARIZERS,
        bias=True,
        input_dim=None,
        **extra,
    )


def regularizer(l2):
    return {"name": "WeightRegularizer", "l1": 0.0, "l2": l2}


def write_keras1(path, model_config, weights_by_layer, backend="tensorflow"):
    """``weights_by_layer``: [(layer name, [(weight name, array), ...]), ...] for every layer, in order."""
    with h5py.File(path, "w") as handle:
        handle.attrs["keras_version"] = KERAS_VERSION.encode("utf8")
        handle.attrs["model_config"] = json.dumps(model_config).encode("utf8")
        group = handle.create_group("model_weights")
        group.attrs["keras_version"] = KERAS_VERSION.encode("utf8")
        group.attrs["backend"] = backend.encode("utf8")
        group.attrs["layer_names"] = [name.encode("utf8") for name, _ in weights_by_layer]
        for name, arrays in weights_by_layer:
            layer_group = group.create_group(name)
            layer_group.attrs["weight_names"] = [weight_name.encode("utf8") for weight_name, _ in arrays]
            for weight_name, array in arrays:
                layer_group.create_dataset(weight_name, data=array)


def save_reference(name, inputs, outputs):
    arrays = {f"inputs/{key}": value for key, value in inputs.items()}
    arrays.update({f"outputs/{key}": value.astype("float32") for key, value in outputs.items()})
    np.savez(os.path.join(OUT, f"{name}.npz"), **arrays)


def normal(rng, shape, scale=0.5):
    return rng.normal(0, scale, shape).astype("float32")


# ---------------------------------------------------------------- Python 3.5 bytecode, assembled
# Opcodes of Python 3.5 (Lib/opcode.py) the fixtures use; from 90 on an instruction takes a 2-byte argument.
OPCODES_35 = {
    "BINARY_SUBTRACT": 24, "BINARY_TRUE_DIVIDE": 27, "POP_TOP": 1, "RETURN_VALUE": 83, "LOAD_CONST": 100,
    "LOAD_ATTR": 106, "LOAD_GLOBAL": 116, "LOAD_FAST": 124, "CALL_FUNCTION": 131, "POP_JUMP_IF_FALSE": 114,
}  # fmt: skip


def _marshal(value) -> bytes:
    """CPython 3.4-3.7's marshal format (version 4) for the values a code object holds."""
    if value is None:
        return b"N"
    if isinstance(value, bool):
        return b"T" if value else b"F"
    if isinstance(value, int):
        return b"i" + struct.pack("<i", value)
    if isinstance(value, float):
        return b"g" + struct.pack("<d", value)
    if isinstance(value, str):
        raw = value.encode("ascii")
        return (b"z" + bytes([len(raw)]) + raw) if len(raw) < 256 else b"a" + struct.pack("<i", len(raw)) + raw
    if isinstance(value, bytes):
        return b"s" + struct.pack("<i", len(value)) + value
    if isinstance(value, tuple):
        return b")" + bytes([len(value)]) + b"".join(_marshal(item) for item in value)
    raise TypeError(type(value))


def marshal_code_35(instructions, consts, names, varnames, name="<lambda>", argcount=1) -> bytes:
    """``marshal.dumps`` of a Python 3.5 code object: ``instructions`` as (opname, arg or None) pairs."""
    code = b""
    for opname, arg in instructions:
        opcode = OPCODES_35[opname]
        code += bytes([opcode]) + (struct.pack("<H", arg) if opcode >= 90 else b"")
    header = struct.pack("<5i", argcount, 0, len(varnames), 8, 0x43)  # argcount, kwonly, nlocals, stacksize, flags
    fields = [code, tuple(consts), tuple(names), tuple(varnames), (), (), "<keras1 fixture>", name]
    # 0xE3: a code object ('c') with the reference flag, as 3.4+ writes it; lnotab empty.
    return b"\xe3" + header + b"".join(_marshal(f) for f in fields) + struct.pack("<i", 1) + _marshal(b"")


def keras1_function(code: bytes) -> list:
    """A Lambda's ``function`` config as Keras 1.2 wrote it: the bytes as raw_unicode_escape text, no defaults."""
    return [code.decode("raw_unicode_escape"), None, None]


LAMBDAS_35 = {
    # lambda x: x / 127.5 - 1.0
    "normalize": marshal_code_35(
        [("LOAD_FAST", 0), ("LOAD_CONST", 1), ("BINARY_TRUE_DIVIDE", None), ("LOAD_CONST", 2),
         ("BINARY_SUBTRACT", None), ("RETURN_VALUE", None)],
        consts=(None, 127.5, 1.0), names=(), varnames=("x",),
    ),
    # lambda x: K.resize_images(x, 2, 2, 'tf')
    "upsample": marshal_code_35(
        [("LOAD_GLOBAL", 0), ("LOAD_ATTR", 1), ("LOAD_FAST", 0), ("LOAD_CONST", 1), ("LOAD_CONST", 1),
         ("LOAD_CONST", 2), ("CALL_FUNCTION", 4), ("RETURN_VALUE", None)],
        consts=(None, 2, "tf"), names=("K", "resize_images"), varnames=("x",),
    ),
    # def l2_normalize(x): """L2-normalize the embedding."""; return K.l2_normalize(x, axis=1)
    # (3.5's CALL_FUNCTION: 1 positional, 1 keyword -> argument 0x0101).
    "l2": marshal_code_35(
        [("LOAD_GLOBAL", 0), ("LOAD_ATTR", 1), ("LOAD_FAST", 0), ("LOAD_CONST", 1), ("LOAD_CONST", 2),
         ("CALL_FUNCTION", 0x0101), ("RETURN_VALUE", None)],
        consts=("L2-normalize the embedding.", "axis", 1), names=("K", "l2_normalize"), varnames=("x",),
        name="l2_normalize",
    ),
}  # fmt: skip


# ---------------------------------------------------------------- fixtures


def conv_merge(rng):
    kernel, conv_bias = normal(rng, (4, 3, 3, 3)), normal(rng, (4,), 0.1)
    gamma, beta = (1 + normal(rng, (4,), 0.1)), normal(rng, (4,), 0.1)
    running_mean, running_var = normal(rng, (4,), 0.2), rng.uniform(0.5, 1.5, 4).astype("float32")
    dense_1_w, dense_1_b = normal(rng, (4 * 5 * 5, 5), 0.2), normal(rng, (5,), 0.1)
    dense_2_w, dense_2_b = normal(rng, (3, 4)), normal(rng, (4,), 0.1)
    dense_3_w, dense_3_b = normal(rng, (9, 2)), normal(rng, (2,), 0.1)
    layers = [
        layer("InputLayer", "image", [], batch_input_shape=[None, 3, 10, 10], input_dtype="float32", sparse=False),
        layer(
            "Convolution2D",
            "convolution2d_1",
            ["image"],
            nb_filter=4,
            nb_row=3,
            nb_col=3,
            init="glorot_uniform",
            activation="relu",
            border_mode="same",
            subsample=[1, 1],
            dim_ordering="th",
            W_regularizer=regularizer(0.01),
            b_regularizer=None,
            activity_regularizer=None,
            W_constraint=None,
            b_constraint=None,
            bias=True,
        ),
        layer(
            "BatchNormalization",
            "batchnormalization_1",
            ["convolution2d_1"],
            epsilon=0.001,
            mode=0,
            axis=1,
            momentum=0.99,
            gamma_regularizer=None,
            beta_regularizer=None,
        ),
        layer(
            "MaxPooling2D",
            "maxpooling2d_1",
            ["batchnormalization_1"],
            pool_size=[2, 2],
            strides=[2, 2],
            border_mode="valid",
            dim_ordering="th",
        ),
        layer("Flatten", "flatten_1", ["maxpooling2d_1"]),
        layer(
            "Dense",
            "dense_1",
            ["flatten_1"],
            output_dim=5,
            init="glorot_uniform",
            activation="tanh",
            **NO_REGULARIZERS,
            bias=True,
            input_dim=None,
        ),
        layer("Dropout", "dropout_1", ["dense_1"], p=0.5),
        layer("InputLayer", "meta", [], batch_input_shape=[None, 3], input_dtype="float32", sparse=False),
        layer(
            "Dense",
            "dense_2",
            ["meta"],
            output_dim=4,
            init="glorot_uniform",
            activation="relu",
            **NO_REGULARIZERS,
            bias=True,
            input_dim=None,
        ),
        layer(
            "Merge",
            "merge_1",
            ["dropout_1", "dense_2"],
            mode="concat",
            concat_axis=-1,
            dot_axes=-1,
            mode_type="raw",
            output_shape=None,
            output_shape_type="raw",
            output_mask=None,
            output_mask_type="raw",
            arguments={},
            node_indices=[0, 0],
            tensor_indices=[0, 0],
        ),
        layer(
            "Dense",
            "dense_3",
            ["merge_1"],
            output_dim=2,
            init="glorot_uniform",
            activation="softmax",
            **NO_REGULARIZERS,
            bias=True,
            input_dim=None,
        ),
    ]
    config = {
        "class_name": "Model",
        "config": {
            "name": "model_1",
            "layers": layers,
            "input_layers": [["image", 0, 0], ["meta", 0, 0]],
            "output_layers": [["dense_3", 0, 0]],
        },
    }
    weights = [
        ("image", []),
        ("convolution2d_1", [("convolution2d_1_W:0", kernel), ("convolution2d_1_b:0", conv_bias)]),
        (
            "batchnormalization_1",
            [
                ("batchnormalization_1_gamma:0", gamma),
                ("batchnormalization_1_beta:0", beta),
                ("batchnormalization_1_running_mean:0", running_mean),
                ("batchnormalization_1_running_std:0", running_var),
            ],
        ),
        ("maxpooling2d_1", []),
        ("flatten_1", []),
        ("dense_1", [("dense_1_W:0", dense_1_w), ("dense_1_b:0", dense_1_b)]),
        ("dropout_1", []),
        ("meta", []),
        ("dense_2", [("dense_2_W:0", dense_2_w), ("dense_2_b:0", dense_2_b)]),
        ("merge_1", []),
        ("dense_3", [("dense_3_W:0", dense_3_w), ("dense_3_b:0", dense_3_b)]),
    ]
    write_keras1(os.path.join(OUT, "conv_merge.h5"), config, weights)

    image = rng.normal(0, 1, (SAMPLES, 3, 10, 10)).astype("float32")
    meta = rng.normal(0, 1, (SAMPLES, 3)).astype("float32")
    conv = np.maximum(correlate_th(image, kernel, conv_bias, "same"), 0)
    # Keras 1.2's "running_std" holds the variance (it is passed to batch_normalization as such).
    shape = (1, 4, 1, 1)
    normed = (conv - running_mean.reshape(shape)) / np.sqrt(running_var.reshape(shape) + 0.001)
    normed = normed * gamma.reshape(shape) + beta.reshape(shape)
    flat = max_pool_th(normed).reshape(SAMPLES, -1)
    branch_a = np.tanh(flat @ dense_1_w + dense_1_b)
    branch_b = np.maximum(meta @ dense_2_w + dense_2_b, 0)
    probs = softmax(np.concatenate([branch_a, branch_b], axis=-1) @ dense_3_w + dense_3_b)
    save_reference("conv_merge", {"image": image, "meta": meta}, {"dense_3": probs})


def rnn_sequential(rng):
    vocabulary, steps, embed, lstm_units, gru_units = 20, 7, 6, 5, 4
    embeddings = normal(rng, (vocabulary, embed))
    lstm = []
    for _gate in "icfo":  # Keras 1.2 stores W, U, b per gate in the order i, c, f, o.
        lstm += [
            normal(rng, (embed, lstm_units)),
            normal(rng, (lstm_units, lstm_units)),
            normal(rng, (lstm_units,), 0.2),
        ]
    gru = []
    for _gate in "zrh":
        gru += [
            normal(rng, (lstm_units, gru_units)),
            normal(rng, (gru_units, gru_units)),
            normal(rng, (gru_units,), 0.2),
        ]
    dense_w, dense_b = normal(rng, (gru_units, 3)), normal(rng, (3,), 0.1)
    recurrent = dict(
        init="glorot_uniform",
        inner_init="orthogonal",
        inner_activation="hard_sigmoid",
        activation="tanh",
        W_regularizer=None,
        U_regularizer=None,
        b_regularizer=None,
        dropout_W=0.0,
        dropout_U=0.0,
        consume_less="cpu",
        go_backwards=False,
        stateful=False,
        unroll=False,
        input_dim=None,
        input_length=None,
    )
    layers = [
        layer(
            "Embedding",
            "embedding_1",
            input_dim=vocabulary,
            output_dim=embed,
            init="uniform",
            input_length=steps,
            W_regularizer=None,
            activity_regularizer=None,
            W_constraint=None,
            mask_zero=False,
            dropout=0.0,
            batch_input_shape=[None, steps],
            input_dtype="int32",
        ),
        layer("LSTM", "lstm_1", output_dim=lstm_units, return_sequences=True, forget_bias_init="one", **recurrent),
        layer("GRU", "gru_1", output_dim=gru_units, return_sequences=False, **recurrent),
        dense_keras1("dense_1", 3, activation="softmax"),
    ]
    config = {"class_name": "Sequential", "config": layers}
    lstm_names = [f"lstm_1_{kind}_{gate}:0" for gate in "icfo" for kind in "WUb"]
    gru_names = [f"gru_1_{kind}_{gate}:0" for gate in "zrh" for kind in "WUb"]
    weights = [
        ("embedding_1", [("embedding_1_W:0", embeddings)]),
        ("lstm_1", list(zip(lstm_names, lstm))),
        ("gru_1", list(zip(gru_names, gru))),
        ("dense_1", [("dense_1_W:0", dense_w), ("dense_1_b:0", dense_b)]),
    ]
    write_keras1(os.path.join(OUT, "rnn_sequential.h5"), config, weights)

    tokens = rng.integers(0, vocabulary, (SAMPLES, steps)).astype("int32")
    sequence = lstm_keras1(embeddings[tokens].astype(np.float64), lstm, lstm_units)
    last = gru_keras1(sequence, gru, gru_units)
    save_reference("rnn_sequential", {"embedding_1_input": tokens}, {"dense_1": softmax(last @ dense_w + dense_b)})


def conv_theano(rng):
    kernel, bias = normal(rng, (2, 1, 3, 3)), normal(rng, (2,), 0.1)
    dense_w, dense_b = normal(rng, (2 * 4 * 4, 3), 0.3), normal(rng, (3,), 0.1)
    layers = [
        layer(
            "Convolution2D",
            "convolution2d_1",
            nb_filter=2,
            nb_row=3,
            nb_col=3,
            init="glorot_uniform",
            activation="linear",
            border_mode="valid",
            subsample=[1, 1],
            dim_ordering="th",
            **NO_REGULARIZERS,
            bias=True,
            batch_input_shape=[None, 1, 6, 6],
            input_dtype="float32",
        ),
        layer("Flatten", "flatten_1"),
        dense_keras1("dense_1", 3),
    ]
    config = {"class_name": "Sequential", "config": layers}
    weights = [
        ("convolution2d_1", [("convolution2d_1_W", kernel), ("convolution2d_1_b", bias)]),
        ("flatten_1", []),
        ("dense_1", [("dense_1_W", dense_w), ("dense_1_b", dense_b)]),
    ]
    write_keras1(os.path.join(OUT, "conv_theano.h5"), config, weights, backend="theano")

    image = rng.normal(0, 1, (SAMPLES, 1, 6, 6)).astype("float32")
    # Theano's conv2d is a true convolution: correlation with the kernel flipped in both spatial axes.
    conv = correlate_th(image, kernel[:, :, ::-1, ::-1], bias, "valid")
    save_reference(
        "conv_theano", {"convolution2d_1_input": image}, {"dense_1": conv.reshape(SAMPLES, -1) @ dense_w + dense_b}
    )


def lambda_py35(rng):
    dense_w, dense_b = normal(rng, (8 * 10 * 2, 6), 0.1), normal(rng, (6,), 0.1)

    def lambda_layer(name, function, **extra):
        return layer("Lambda", name, function=keras1_function(function), function_type="lambda",
                     output_shape=None, output_shape_type="raw", arguments={}, **extra)  # fmt: skip

    layers = [
        lambda_layer("normalize", LAMBDAS_35["normalize"], batch_input_shape=[None, 4, 5, 2], input_dtype="float32"),
        lambda_layer("upsample", LAMBDAS_35["upsample"]),
        layer("Flatten", "flatten_1"),
        dense_keras1("dense_1", 6),
        lambda_layer("l2", LAMBDAS_35["l2"]),
    ]
    config = {"class_name": "Sequential", "config": layers}
    weights = [
        ("normalize", []),
        ("upsample", []),
        ("flatten_1", []),
        ("dense_1", [("dense_1_W", dense_w), ("dense_1_b", dense_b)]),
        ("l2", []),
    ]
    write_keras1(os.path.join(OUT, "lambda_py35.h5"), config, weights)

    # Image-range values with both ends, as the normalizing Lambda expects.
    image = rng.uniform(0, 255, (SAMPLES, 4, 5, 2)).astype("float32")
    image[0, 0, 0], image[1, -1, -1] = 0.0, 255.0
    x = image.astype(np.float64) / 127.5 - 1.0
    x = x.repeat(2, axis=1).repeat(2, axis=2)  # resize_images by (2, 2), nearest neighbour, 'tf' ordering
    y = x.reshape(SAMPLES, -1) @ dense_w + dense_b
    y = y / np.sqrt(np.maximum((y**2).sum(axis=1, keepdims=True), 1e-12))
    save_reference("lambda_py35", {"normalize_input": image}, {"l2": y})


def main() -> None:
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(1)
    conv_merge(rng)
    rnn_sequential(rng)
    conv_theano(rng)
    lambda_py35(rng)
    print(f"wrote {sorted(os.listdir(OUT))} to {OUT}")


if __name__ == "__main__":
    main()
