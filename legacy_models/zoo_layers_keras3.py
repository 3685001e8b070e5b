"""Keras 3 twin of ``zoo_layers.Scale``, for exporting ``custom_layer.h5`` to a ``.keras`` file.

    tf1infer.export_keras("legacy_models/custom_layer.h5", "custom_layer.keras",
                          custom_objects={"Scale": zoo_layers.Scale},             # to load the legacy file
                          keras3_custom_objects={"Scale": zoo_layers_keras3.Scale})  # to build the Keras 3 model

Same weights (gamma, then beta) and the same computation. Kept apart from
``zoo_layers`` so that loading the exported file imports Keras 3 alone, not tf_keras.
"""

import keras


@keras.saving.register_keras_serializable(package="tf1infer_zoo")
class Scale(keras.layers.Layer):
    """Multiplies each feature by a learned factor and adds a learned offset."""

    def build(self, input_shape):
        units = int(input_shape[-1])
        self.gamma = self.add_weight(name="gamma", shape=(units,), initializer="ones")
        self.beta = self.add_weight(name="beta", shape=(units,), initializer="zeros")

    def call(self, inputs):
        return inputs * self.gamma + self.beta


def affine(x):
    """What ``lambda.h5``'s Lambda layer computes, as a named function (exported by reference, not bytecode)."""
    return x * 2.0 + 1.0


@keras.saving.register_keras_serializable(package="tf1infer_zoo")
class ScaleWithoutOffset(Scale):
    """A port of ``Scale`` with a mistake users make (the offset forgotten): the export must refuse it, naming it."""

    def call(self, inputs):
        return inputs * self.gamma
