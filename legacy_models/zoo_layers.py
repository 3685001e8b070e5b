"""The custom layer used by ``custom_layer.h5``: pass it as ``custom_objects={"Scale": Scale}``."""

import tf_keras


class Scale(tf_keras.layers.Layer):
    """Multiplies each feature by a learned factor and adds a learned offset."""

    def build(self, input_shape):
        units = int(input_shape[-1])
        self.gamma = self.add_weight(name="gamma", shape=(units,), initializer="ones")
        self.beta = self.add_weight(name="beta", shape=(units,), initializer="zeros")
        super().build(input_shape)

    def call(self, inputs):
        return inputs * self.gamma + self.beta
