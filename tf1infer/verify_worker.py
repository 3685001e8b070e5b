"""Run an exported SavedModel the way TF2 code will: ``python verify_worker.py EXPORT_DIR INPUTS.npz OUTPUTS.npz``.

Started by :func:`tf1infer.export.export_saved_model` in a fresh process that
imports only numpy and TensorFlow, so that the verification proves the export
stands on its own: no tf1infer, no tf_keras, no state of the exporting process.
``INPUTS.npz`` holds ``<signature>/<input>`` arrays; the outputs of each
signature are written to ``OUTPUTS.npz`` as ``<signature>/<output>``, with a
``__report__`` entry (JSON) naming the signatures found and any forbidden
module that got imported.
"""

import json
import sys

import numpy as np
import tensorflow as tf

# Rows per call, so that large sample_inputs do not need one huge batch.
CHUNK = 256


def main(export_dir: str, inputs_path: str, outputs_path: str) -> None:
    loaded = tf.saved_model.load(export_dir)
    stored = np.load(inputs_path)
    by_signature: dict = {}
    for key in stored.files:
        signature, name = key.split("/", 1)
        by_signature.setdefault(signature, {})[name] = stored[key]
    results = {}
    for signature, feeds in by_signature.items():
        function = loaded.signatures[signature]
        rows = len(next(iter(feeds.values())))
        chunks: dict = {}
        for start in range(0, rows, CHUNK):
            batch = {name: tf.constant(array[start : start + CHUNK]) for name, array in feeds.items()}
            for name, value in function(**batch).items():
                chunks.setdefault(name, []).append(value.numpy())
        for name, parts in chunks.items():
            results[f"{signature}/{name}"] = np.concatenate(parts)
    forbidden = sorted(name for name in sys.modules if name.split(".")[0] in ("tf1infer", "tf_keras"))
    report = {"signatures": sorted(loaded.signatures.keys()), "forbidden_modules": forbidden}
    results["__report__"] = np.array(json.dumps(report))
    np.savez(outputs_path, **results)


if __name__ == "__main__":
    main(*sys.argv[1:4])
