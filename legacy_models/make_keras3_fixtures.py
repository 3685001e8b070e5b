"""Write Keras 3 ``.keras`` archives with the Keras 3 that TensorFlow installs, into keras3/.

Fixtures:
  two_in_two_out.keras  functional: features (4) -> Dense relu -> BatchNormalization -> Dropout ->
                        probs (softmax 3); Concatenate with extra (2) -> score (1)
  lambda.keras          Sequential: Input (3) -> Lambda "double" (x * 2 + 1) -> Dense (2)

Tests use Keras 3's own ``predict`` on the same files as the reference.

Run: python legacy_models/make_keras3_fixtures.py
"""

from __future__ import annotations

import os

import keras
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "keras3")


def two_in_two_out() -> keras.Model:
    features = keras.Input((4,), name="features")
    extra = keras.Input((2,), name="extra")
    hidden = keras.layers.Dense(8, activation="relu", name="hidden")(features)
    hidden = keras.layers.BatchNormalization(name="norm")(hidden)
    hidden = keras.layers.Dropout(0.5, name="dropout")(hidden)
    score = keras.layers.Dense(1, name="score")(keras.layers.Concatenate(name="joined")([hidden, extra]))
    probs = keras.layers.Dense(3, activation="softmax", name="probs")(hidden)
    model = keras.Model([features, extra], [score, probs], name="two_in_two_out")
    # Non-trivial BatchNormalization statistics, so that training-mode normalization would show.
    norm = model.get_layer("norm")
    rng = np.random.default_rng(3)
    norm.set_weights([1 + rng.normal(0, 0.1, 8), rng.normal(0, 0.1, 8), rng.normal(0, 0.5, 8), rng.uniform(0.5, 2, 8)])
    return model


def lambda_model() -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((3,), name="values"),
            keras.layers.Lambda(lambda x: x * 2.0 + 1.0, name="double"),
            keras.layers.Dense(2, name="out"),
        ],
        name="lambda_model",
    )


def main() -> None:
    os.makedirs(OUT, exist_ok=True)
    keras.utils.set_random_seed(7)
    two_in_two_out().save(os.path.join(OUT, "two_in_two_out.keras"))
    lambda_model().save(os.path.join(OUT, "lambda.keras"))
    print(f"wrote {sorted(os.listdir(OUT))} to {OUT}")


if __name__ == "__main__":
    main()
