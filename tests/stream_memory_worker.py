"""Run by test_stream_memory.py in a fresh process: streams N samples through a small CNN into .h5
and prints the rise of peak RSS during the run (VmHWM after, less VmRSS before), as JSON."""

import json
import os
import sys

import numpy as np


def status(field):
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def main():
    import tf_keras

    import tf1infer

    folder, count = sys.argv[1], int(sys.argv[2])
    model_path = os.path.join(folder, "cnn64.h5")
    inputs = tf_keras.Input((64, 64, 1))
    hidden = tf_keras.layers.Conv2D(8, 3, strides=2, activation="relu")(inputs)
    hidden = tf_keras.layers.MaxPooling2D(4)(hidden)
    outputs = tf_keras.layers.Dense(10, activation="softmax")(tf_keras.layers.Flatten()(hidden))
    tf_keras.Model(inputs, outputs).save(model_path)

    def samples(n, seed):
        rng = np.random.default_rng(seed)
        for _ in range(n):
            yield rng.random((64, 64, 1), dtype=np.float32)

    with tf1infer.load(model_path) as predictor:
        predictor.predict_to(os.path.join(folder, "warmup.h5"), samples(256, 1), batch_size=64)  # First-run caches.
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        before = status("VmRSS")
        predictor.predict_to(os.path.join(folder, "out.h5"), samples(count, 2), batch_size=64)
        peak = status("VmHWM")
        import h5py

        with h5py.File(os.path.join(folder, "out.h5"), "r") as file:
            rows = file[predictor.output_names[0]].shape[0]
            checked = [0, count // 2, count - 1]
            written = file[predictor.output_names[0]][checked]
        rng = np.random.default_rng(2)
        expected = []
        for index in range(count):
            sample = rng.random((64, 64, 1), dtype=np.float32)
            if index in checked:
                expected.append(predictor.predict(sample[np.newaxis])[0])
        max_error = float(np.abs(np.stack(expected) - written).max())
    print(json.dumps({"rise": peak - before, "rows": rows, "max_error": max_error}))


if __name__ == "__main__":
    main()
