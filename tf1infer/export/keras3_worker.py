"""Load exported ``.keras`` files the way Keras 3 users will: ``python keras3_worker.py JOBS.json``.

Started by :func:`tf1infer.export.keras3.export_keras` in a fresh process (``python -I``,
``KERAS_BACKEND`` set by the caller) that imports Keras 3, its backend and numpy, plus
the modules of the custom classes or functions the model refers to: no tf1infer, no
tf_keras, no state of the exporting process. ``JOBS.json`` is a list of jobs::

    {"model": "out.keras", "inputs": "inputs.npz", "outputs": "outputs.npz",
     "safe_mode": true, "references": [{"key", "module", "qualname", "search_path"}],
     "train": true, "training": "training.json", "train_only": false}

``inputs.npz`` holds batches of the model's inputs, in order, as ``<batch>/0``,
``<batch>/1``...; each job's outputs are written to its ``outputs.npz`` as
``<batch>/0``, ``<batch>/1``... in the model's output order, with
a ``__report__`` entry (JSON): the backend, Keras's version, the output names and any
forbidden module that got imported. With ``train``, what one training step on the
first batch did is then written to ``training.json`` (``train_only``: only that).
"""

import importlib
import json
import sys

import numpy as np

# tf1infer's modules a Keras 3 file may refer to: they import Keras 3 alone (tf1infer/__init__.py imports nothing).
_KERAS3_ONLY_MODULES = {"tf1infer", "tf1infer.keras2_activations"}

# Rows per call, so that large sample inputs do not need one huge batch.
CHUNK = 256


def _custom_objects(references):
    objects = {}
    for reference in references:
        if reference.get("search_path") and reference["search_path"] not in sys.path:
            sys.path.insert(0, reference["search_path"])
        target = importlib.import_module(reference["module"])
        for part in reference["qualname"].split("."):
            target = getattr(target, part)
        objects[reference["key"]] = target
    return objects


def _predict(model, arrays):
    rows = len(arrays[0]) if arrays else 0
    chunks = []
    for start in range(0, rows, CHUNK):
        batch = [array[start : start + CHUNK] for array in arrays]
        outputs = model.predict_on_batch(batch if len(batch) > 1 else batch[0])
        chunks.append([np.asarray(output) for output in (outputs if isinstance(outputs, (list, tuple)) else [outputs])])
    return [np.concatenate(parts) for parts in zip(*chunks)]


def _training_step(model, arrays, outputs):
    """One optimizer step on targets near the model's own outputs: do trainable weights move, stay finite?"""
    import keras

    trainable = model.trainable_weights
    if not trainable:
        return {"ran": False, "reason": "the model has no trainable weights"}
    before = [np.array(keras.ops.convert_to_numpy(weight)) for weight in trainable]
    rng = np.random.default_rng(7)
    targets = [output + rng.normal(0.0, 0.1, output.shape).astype(output.dtype) for output in outputs]
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.01), loss=["mse"] * len(targets))
    loss = model.train_on_batch(arrays if len(arrays) > 1 else arrays[0], targets if len(targets) > 1 else targets[0])
    after = [np.array(keras.ops.convert_to_numpy(weight)) for weight in trainable]
    changed = sum(1 for old, new in zip(before, after) if not np.array_equal(old, new))
    finite_outputs = all(np.isfinite(output).all() for output in _predict(model, arrays))
    loss = float(np.asarray(loss).ravel()[0])
    return {
        "ran": True,
        "trainable_weights": len(trainable),
        "changed": changed,
        "loss": loss,
        "finite": bool(finite_outputs and np.isfinite(loss) and all(np.isfinite(w).all() for w in after)),
    }


def run_job(job):
    import keras

    objects = _custom_objects(job.get("references", []))
    model = keras.saving.load_model(
        job["model"], custom_objects=objects or None, compile=False, safe_mode=job["safe_mode"]
    )
    stored = np.load(job["inputs"])
    keys = [key.split("/") for key in stored.files]
    batches = [
        [stored[f"{batch}/{index}"] for index in range(1 + max(int(i) for b, i in keys if b == str(batch)))]
        for batch in range(1 + max(int(b) for b, _ in keys))
    ]
    arrays = batches[0]
    outputs = _predict(model, arrays)
    if not job.get("train_only"):
        results = {f"0/{index}": output for index, output in enumerate(outputs)}
        for batch, inputs in enumerate(batches[1:], start=1):
            results.update({f"{batch}/{index}": output for index, output in enumerate(_predict(model, inputs))})
        functional = getattr(model, "_functional", None) or model
        report = {
            "backend": keras.backend.backend(),
            "keras_version": keras.__version__,
            "output_names": list(getattr(functional, "output_names", None) or []),
            "forbidden_modules": sorted(
                name
                for name in sys.modules
                if name.split(".")[0] in ("tf1infer", "tf_keras") and name not in _KERAS3_ONLY_MODULES
            ),
        }
        results["__report__"] = np.array(json.dumps(report))
        np.savez(job["outputs"], **results)
    if job.get("train"):
        # Written after the outputs, and apart: a backend that dies in the step leaves the outputs readable.
        step = _training_step(model, arrays, outputs)
        with open(job["training"], "w", encoding="utf-8") as handle:
            json.dump(step, handle)


def main(jobs_path):
    with open(jobs_path, encoding="utf-8") as handle:
        jobs = json.load(handle)
    failures = 0
    for job in jobs:
        try:
            run_job(job)
        except Exception as exc:  # Reported per job, so that one bad export does not hide the others' results.
            failures += 1
            print(f"{job['model']}: {type(exc).__name__}: {exc}", file=sys.stderr)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main(sys.argv[1])
