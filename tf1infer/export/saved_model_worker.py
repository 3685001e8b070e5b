"""Run exported SavedModels the way TF2 code will: ``python -I saved_model_worker.py --serve``.

Started by :func:`tf1infer.export.saved_model.export_saved_model` in a separate process that
imports only numpy and TensorFlow, so that the verification proves the export
stands on its own: no tf1infer, no tf_keras, no state of the exporting process.
It stays up and takes one job per line on standard input
(``["EXPORT_DIR", "INPUTS.npz", "OUTPUTS.npz"]``), answering each with a
``VERIFY-DONE {"ok": ..., "error": ...}`` line: the exporting process starts
it once and reuses it, rather than paying TensorFlow's start-up per export.
``INPUTS.npz`` holds ``<batch>/<signature>/<input>`` arrays (verification
runs several batches: sequences of two lengths, sample inputs); the outputs of
each signature are written to ``OUTPUTS.npz`` as ``<batch>/<signature>/<output>``, with a
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
        position, signature, name = key.split("/", 2)
        by_signature.setdefault((position, signature), {})[name] = stored[key]
    results = {}
    for (position, signature), feeds in by_signature.items():
        function = loaded.signatures[signature]
        rows = len(next(iter(feeds.values())))
        chunks: dict = {}
        for start in range(0, rows, CHUNK):
            batch = {name: tf.constant(array[start : start + CHUNK]) for name, array in feeds.items()}
            for name, value in function(**batch).items():
                chunks.setdefault(name, []).append(value.numpy())
        for name, parts in chunks.items():
            results[f"{position}/{signature}/{name}"] = np.concatenate(parts)
    forbidden = sorted(name for name in sys.modules if name.split(".")[0] in ("tf1infer", "tf_keras"))
    report = {"signatures": sorted(loaded.signatures.keys()), "forbidden_modules": forbidden}
    results["__report__"] = np.array(json.dumps(report))
    np.savez(outputs_path, **results)  # type: ignore[arg-type]  # numpy's stub reads ** as its own keywords


def serve() -> None:
    """Answer jobs from standard input until it closes; a failing job is reported, not fatal."""
    import traceback

    for line in sys.stdin:
        if not line.strip():
            continue
        answer: dict[str, object]
        try:
            main(*json.loads(line))
            answer = {"ok": True}
        except Exception as exc:  # noqa: BLE001 - reported to the exporting process with its traceback.
            answer = {"ok": False, "error": "".join(traceback.format_exception(exc))[-4000:]}
        sys.stdout.write("VERIFY-DONE " + json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    if sys.argv[1:] != ["--serve"]:
        sys.exit("usage: python -I saved_model_worker.py --serve (jobs on standard input, one JSON list per line)")
    serve()
