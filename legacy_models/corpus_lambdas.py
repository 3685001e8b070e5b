"""The training code's functions of the ``keras-h5-lambda`` files in ``../shared/corpus`` (see its MANIFEST.json).

Each file stores its Lambda functions as bytecode of the Python that trained it
(2.7 to 3.10), which tf1infer never runs: these are the functions as the
manifest quotes the training code, for ``tf1infer.load(path, lambdas=...)``.
Used by the tests and by ``make deviations``.
"""

import tensorflow as tf
import tf_keras.backend as K

LAMBDAS = {
    # mcfly modelgen.py:178: keeps the last time step.
    "keras206_lambda_last_timestep": {"lambda_1": lambda x: x[:, -1, :]},
    # deep_scoreMS1: two inputs; reads the global K = keras.backend.
    "keras280_lambda_siamese_absdiff": {"lambda": lambda tensor: K.abs(tensor[0] - tensor[1])},
    "keras224tf_lambda_normalize": {"lambda_2": lambda x: x / 255.0 - 0.5},
    "keras208_lambda_normalize_py27": {"lambda_1": lambda x: x / 255.0 - 0.5},
    "keras120_lambda_normalize": {"lambda_1": lambda x: x / 255.0 - 0.5},
    # The training code imports tensorflow inside the function and calls tf.space_to_depth.
    "keras122_lambda_space_to_depth": {"space_to_depth_x2": lambda x: tf.compat.v1.space_to_depth(x, block_size=2)},
}
