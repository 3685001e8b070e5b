"""Keras 1/2 activations whose formula Keras 3 changed, for Keras 3 files that keep the old one exactly.

Keras 2's ``hard_sigmoid`` is ``clip(0.2 x + 0.5, 0, 1)``; Keras 3's is
``clip(x / 6 + 0.5, 0, 1)``. ``export_keras(..., keras2_hard_sigmoid="exact")``
writes layers using it with this function, stored by Keras 3 by reference.
It imports Keras 3 alone (not TensorFlow, not tf1infer's runtime), so the file
loads wherever Keras 3 and tf1infer are installed, on any backend, in safe
mode. Keras 3 looks a function up by its own name, so pass it::

    import keras
    from tf1infer.keras2_activations import keras2_hard_sigmoid

    model = keras.saving.load_model("model.keras", custom_objects={"keras2_hard_sigmoid": keras2_hard_sigmoid})
"""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="tf1infer")
def keras2_hard_sigmoid(x):
    """Keras 1/2's hard sigmoid, as tf_keras computes it: ``clip(0.2 * x + 0.5, 0, 1)``."""
    return keras.ops.clip(0.2 * x + 0.5, 0.0, 1.0)


__all__ = ["keras2_hard_sigmoid"]
