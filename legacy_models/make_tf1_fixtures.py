"""Write one fixture per TensorFlow 1.x format, with TensorFlow's own v1 APIs, into legacy_models/tf1/.

Every fixture computes the same small network, whose weights are saved in
``tf1/weights.npz`` so tests can check each format against a numpy formula:

    logits = tanh(x @ w1 + b1) @ w2 + b2        x: (batch, 4) float32
    probs  = softmax(logits)

Fixtures:
  saved_model/        tf.compat.v1.saved_model.Builder, tags [serve]; signatures
                      serving_default (x -> logits, probs), logits_only (x -> logits) and
                      count_calls (x -> logits, but also increments a counter: stateful)
  meta_v2/            tf.compat.v1.train.Saver, V2 checkpoint (model.ckpt-7 + checkpoint state file)
  meta_v1/            the same with a V1 checkpoint and classic (non-resource) variables
  meta_old_version/   a meta graph whose meta_info_def.tensorflow_version is "0.12.head"
  frozen.pb           convert_variables_to_constants, binary GraphDef
  frozen.pbtxt        the same, text GraphDef
  tf2_saved_model/    tf.saved_model.save of a tf.Module (TF2 format)
  keras_arch.json + keras_weights.h5   model.to_json() + model.save_weights() of the zoo MLP

Run: python legacy_models/make_tf1_fixtures.py
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import tensorflow as tf

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "tf1")


def weights() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(42)
    return {
        "w1": rng.normal(0, 0.6, (4, 6)).astype("float32"),
        "b1": rng.normal(0, 0.2, (6,)).astype("float32"),
        "w2": rng.normal(0, 0.6, (6, 3)).astype("float32"),
        "b2": rng.normal(0, 0.2, (3,)).astype("float32"),
    }


def build(params: dict[str, np.ndarray], use_resource: bool = True):
    """The network in the current graph; returns (x, logits, probs, counter_update)."""
    x = tf.compat.v1.placeholder(tf.float32, shape=[None, 4], name="x")
    variables = {
        name: tf.compat.v1.Variable(value, name=name, use_resource=use_resource) for name, value in params.items()
    }
    hidden = tf.tanh(tf.matmul(x, variables["w1"]) + variables["b1"], name="hidden")
    logits = tf.add(tf.matmul(hidden, variables["w2"]), variables["b2"], name="logits")
    probs = tf.nn.softmax(logits, name="probs")
    counter = tf.compat.v1.Variable(0, name="calls", use_resource=use_resource)
    with tf.control_dependencies([tf.compat.v1.assign_add(counter, 1)]):
        counted = tf.identity(logits, name="counted_logits")
    return x, logits, probs, counted


def fresh(path: str) -> str:
    if os.path.isdir(path):
        shutil.rmtree(path)
    elif os.path.exists(path):
        os.remove(path)
    return path


def write_saved_model(params) -> None:
    path = fresh(os.path.join(OUT, "saved_model"))
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        x, logits, probs, counted = build(params)
        session.run(tf.compat.v1.global_variables_initializer())
        info = tf.compat.v1.saved_model.utils.build_tensor_info
        predict = "tensorflow/serving/predict"
        signatures = {
            "serving_default": tf.compat.v1.saved_model.signature_def_utils.build_signature_def(
                {"x": info(x)}, {"logits": info(logits), "probs": info(probs)}, predict
            ),
            "logits_only": tf.compat.v1.saved_model.signature_def_utils.build_signature_def(
                {"x": info(x)}, {"logits": info(logits)}, predict
            ),
            "count_calls": tf.compat.v1.saved_model.signature_def_utils.build_signature_def(
                {"x": info(x)}, {"logits": info(counted)}, predict
            ),
        }
        builder = tf.compat.v1.saved_model.Builder(path)
        builder.add_meta_graph_and_variables(session, ["serve"], signature_def_map=signatures)
        builder.save()


def write_meta(params, folder: str, version: int, use_resource: bool, tensorflow_version: str | None = None) -> None:
    path = fresh(os.path.join(OUT, folder))
    os.makedirs(path)
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        build(params, use_resource=use_resource)
        session.run(tf.compat.v1.global_variables_initializer())
        saver = tf.compat.v1.train.Saver(write_version=version)
        prefix = saver.save(session, os.path.join(path, "model.ckpt"), global_step=7)
    if tensorflow_version is not None:
        meta = tf.compat.v1.MetaGraphDef()
        with open(prefix + ".meta", "rb") as handle:
            meta.ParseFromString(handle.read())
        meta.meta_info_def.tensorflow_version = tensorflow_version
        with open(prefix + ".meta", "wb") as handle:
            handle.write(meta.SerializeToString())
    # The state file records a relative path, so the folder can move.
    with open(os.path.join(path, "checkpoint"), "w") as handle:
        handle.write('model_checkpoint_path: "model.ckpt-7"\nall_model_checkpoint_paths: "model.ckpt-7"\n')


def write_frozen(params) -> None:
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        build(params)
        session.run(tf.compat.v1.global_variables_initializer())
        frozen = tf.compat.v1.graph_util.convert_variables_to_constants(
            session, session.graph.as_graph_def(), ["logits", "probs"]
        )
    with open(fresh(os.path.join(OUT, "frozen.pb")), "wb") as handle:
        handle.write(frozen.SerializeToString())
    tf.io.write_graph(frozen, OUT, "frozen.pbtxt", as_text=True)


class Network(tf.Module):
    def __init__(self, params):
        super().__init__()
        self.params = {name: tf.Variable(value, name=name) for name, value in params.items()}

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
    def __call__(self, x):
        p = self.params
        logits = tf.matmul(tf.tanh(tf.matmul(x, p["w1"]) + p["b1"]), p["w2"]) + p["b2"]
        return {"logits": logits, "probs": tf.nn.softmax(logits)}


def write_tf2_saved_model(params) -> None:
    path = fresh(os.path.join(OUT, "tf2_saved_model"))
    module = Network(params)
    tf.saved_model.save(module, path, signatures={"serving_default": module.__call__})


def write_keras_json() -> None:
    import tf_keras

    model = tf_keras.models.load_model(os.path.join(HERE, "mlp.h5"), compile=False)
    with open(fresh(os.path.join(OUT, "keras_arch.json")), "w") as handle:
        handle.write(model.to_json())
    model.save_weights(fresh(os.path.join(OUT, "keras_weights.h5")))


def main() -> None:
    os.makedirs(OUT, exist_ok=True)
    params = weights()
    np.savez(os.path.join(OUT, "weights.npz"), **params)
    write_saved_model(params)
    write_meta(params, "meta_v2", tf.compat.v1.train.SaverDef.V2, use_resource=True)
    write_meta(params, "meta_v1", tf.compat.v1.train.SaverDef.V1, use_resource=False)
    write_meta(
        params, "meta_old_version", tf.compat.v1.train.SaverDef.V2, use_resource=False, tensorflow_version="0.12.head"
    )
    write_frozen(params)
    write_tf2_saved_model(params)
    write_keras_json()
    for root, _, files in sorted(os.walk(OUT)):
        for name in sorted(files):
            print(os.path.relpath(os.path.join(root, name), HERE), os.path.getsize(os.path.join(root, name)))


if __name__ == "__main__":
    main()
