"""A Keras 3 twin of ``zoo_layers.Scale`` that kills its process when trained on the wrong kernel family.

It stands in for TensorFlow crashing in a training step (TF 2.21's oneDNN kernels abort training the corpus
mini-Xception on AVX-512 CPUs), so that the export's retry on the other kernel family is tested on every machine:
training aborts the process unless ``TF_ENABLE_ONEDNN_OPTS`` equals ``TF1INFER_TEST_TRAIN_ONLY_WITH``.
"""

import os

import keras


class AbortingScale(keras.layers.Layer):
    def build(self, input_shape):
        units = int(input_shape[-1])
        self.gamma = self.add_weight(name="gamma", shape=(units,), initializer="ones")
        self.beta = self.add_weight(name="beta", shape=(units,), initializer="zeros")

    def call(self, inputs, training=False):
        if training and os.environ.get("TF_ENABLE_ONEDNN_OPTS") != os.environ.get("TF1INFER_TEST_TRAIN_ONLY_WITH"):
            os.abort()
        return inputs * self.gamma + self.beta
