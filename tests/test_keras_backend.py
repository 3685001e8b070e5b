"""tf1infer.backend, the stand-in for ``from keras import backend as K``: Keras's backend idioms on a tf1infer model,
checked against tf_keras running the same file (its own model cut at the same layer, its own backend's answers)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import CORPUS_DIR, ZOO_DIR

import tf1infer
from tf1infer import backend as K
from tf1infer.errors import InputError, UnsupportedOperationError

tf_keras = pytest.importorskip("tf_keras", reason="tf_keras (the keras2 extra) is the reference")

XCEPTION = CORPUS_DIR / "keras205_gender_mini_xception.hdf5"
MODELS = [
    ZOO_DIR / "cnn.h5",
    pytest.param(XCEPTION, marks=pytest.mark.skipif(not XCEPTION.is_file(), reason="no corpus")),
]


@pytest.mark.parametrize("path", MODELS, ids=lambda path: path.stem)
def test_feature_extraction_idiom_equals_tf_keras_cut_at_the_same_layer(path):
    """The legacy idiom, unchanged but for the import: ``K.function([model.layers[0].input, K.learning_phase()],
    [model.layers[-3].output])`` called with ``[x, 0]``."""
    reference = tf_keras.models.load_model(path, compile=False)
    shape = reference.input_shape[1:]
    rng = np.random.default_rng(0)
    x = np.concatenate(  # An image's range, and its two ends.
        [rng.uniform(0, 255, (4, *shape)), np.zeros((1, *shape)), np.full((1, *shape), 255.0)]
    ).astype(np.float32)
    cut = tf_keras.Model(reference.inputs, reference.layers[-3].output)
    want = cut.predict(x, verbose=0)
    with tf1infer.load_model(path) as model:
        features = K.function([model.layers[0].input, K.learning_phase()], [model.layers[-3].output])
        [got] = features([x, 0])
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * max(1.0, float(np.abs(want).max())))
        # The model's own output through the same function form equals predict.
        [out] = K.function([model.input], [model.output])([x])
        np.testing.assert_allclose(out, model.predict(x), rtol=0, atol=1e-6)
        # Shapes, ranks, dtypes and weights as Keras's backend gives them for the same layers.
        assert K.int_shape(model.layers[-3].output) == tf_keras.backend.int_shape(reference.layers[-3].output)
        assert K.int_shape(model.input) == tf_keras.backend.int_shape(reference.input)
        assert K.ndim(model.output) == tf_keras.backend.ndim(reference.output)
        assert K.dtype(model.input) == tf_keras.backend.dtype(reference.input)
        assert K.shape(x) == x.shape and K.int_shape(x) == x.shape
        index = next(i for i, layer in enumerate(reference.layers) if layer.weights)
        for mine, theirs in zip(model.layers[index].weights, reference.layers[index].weights):
            np.testing.assert_array_equal(K.get_value(mine), tf_keras.backend.get_value(theirs))
        assert K.floatx() == tf_keras.backend.floatx() and K.epsilon() == tf_keras.backend.epsilon()
        assert K.image_data_format() == tf_keras.backend.image_data_format()


def test_session_learning_phase_and_clear_session_as_scripts_call_them():
    with tf1infer.load_model(ZOO_DIR / "mlp.h5") as model:
        x = np.random.default_rng(1).random((3, 10), np.float32)
        # The model loaded last: K.get_session().run by tensor or by name, as with Keras's global session.
        session = K.get_session()
        np.testing.assert_allclose(session.run(model.output, {model.input: x}), model.predict(x), atol=1e-6)
        K.set_learning_phase(0)
        K.clear_session()  # Flask apps call it after each request: the model keeps working.
        np.testing.assert_allclose(K.function([model.input], [model.output])([x])[0], model.predict(x), atol=1e-6)
        with pytest.raises(UnsupportedOperationError, match="inference mode only"):
            K.set_learning_phase(1)
        with pytest.raises(UnsupportedOperationError, match="inference mode only"):
            K.function([model.input, K.learning_phase()], [model.output])([x, 1])
        with pytest.raises(UnsupportedOperationError, match="does not train"):
            K.function([model.input], [model.output], updates=[model.layers[0].weights[0]])
        with pytest.raises(InputError, match="takes 2 values"):
            K.function([model.input, K.learning_phase()], [model.output])([x])
        with pytest.raises(InputError, match=r"expects shape \(None, 10\); got \(3, 9\)"):
            K.function([model.input], [model.output])([x[:, :9]])
        with tf1infer.load_model(ZOO_DIR / "cnn.h5") as other:
            with pytest.raises(InputError, match="different models"):
                K.function([model.input], [other.output])
        keras_model = tf_keras.models.load_model(ZOO_DIR / "mlp.h5", compile=False)
        with pytest.raises(UnsupportedOperationError, match="not a tensor of a tf1infer model"):
            K.function([keras_model.input], [keras_model.output])
