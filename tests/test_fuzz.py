"""Corrupt and hostile model files: every one loads and predicts, or fails with a typed error; none hangs or crashes.

A seeded campaign of damaged copies of every fixture (see ``fuzz_variants``),
each loaded in a long-lived child process (``fuzz_worker``) with a time limit:
a child that overruns it is killed and counted as a hang, one that dies by a
signal as a crash. Every third variant goes through ``tf1infer inspect``
instead of the API, which must exit 2 with a ``tf1infer: error:`` line.

``TF1INFER_FUZZ=N`` runs N variants instead of the default 600 (``make fuzz``
runs 2,000); ``TF1INFER_FUZZ_SEED`` picks another campaign.
"""

from __future__ import annotations

import collections
import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tf_keras
from fuzz_variants import describe, make_variant, sources

import tf1infer
from tf1infer.errors import UnsafeModelError

VARIANTS = int(os.environ.get("TF1INFER_FUZZ", "600"))
SEED = int(os.environ.get("TF1INFER_FUZZ_SEED", "20261122"))
# A load of the largest fixture takes about 2 s here; a hang is anything 20x that.
TIME_LIMIT_SECONDS = 45.0
# Peak memory one variant may add to the child: what building and running a graph of these models costs
# (at most 40 MiB measured over 3,000 variants) with room, plus a small multiple of the model file. A damaged
# length field once made libhdf5 allocate 528 MiB for a 20 KB file; hdf5_safety refuses those now.
MEMORY_ALLOWANCE_MB = 256
MEMORY_PER_FILE_BYTE = 20
WORKERS = 2
WORKER = Path(__file__).with_name("fuzz_worker.py")


class Worker:
    """One child process answering load requests; restarted after a hang or a crash."""

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [sys.executable, str(WORKER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )

    def send(self, request: dict) -> None:
        if self.process is None or self.process.poll() is not None:
            self.start()
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        self.started = time.monotonic()

    def poll(self) -> dict | None:
        """The answer if it has come, a hang or crash record if the child failed, None while it works."""
        process = self.process
        while select.select([process.stdout], [], [], 0)[0]:
            line = process.stdout.readline()
            if line.startswith("FUZZ-RESULT "):
                return json.loads(line[len("FUZZ-RESULT ") :])
            if not line:  # End of output: the child died.
                process.wait()
                self.process = None
                return {"outcome": "crash", "type": f"exit status {process.returncode}"}
        if time.monotonic() - self.started > TIME_LIMIT_SECONDS:
            process.kill()
            process.wait()
            self.process = None
            return {"outcome": "hang", "type": f"no answer in {TIME_LIMIT_SECONDS:.0f} s"}
        return None

    def stop(self) -> None:
        if self.process is not None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()


def run_campaign(workdir: Path, count: int, seed: int) -> list[tuple[object, dict]]:
    """Load ``count`` variants across WORKERS children; returns (variant, result) pairs."""
    workers = [Worker() for _ in range(WORKERS)]
    busy: dict[int, object] = {}
    results = []
    pending = iter(range(count))
    try:
        while True:
            for slot, worker in enumerate(workers):
                if slot not in busy:
                    index = next(pending, None)
                    if index is None:
                        continue
                    variant = make_variant(index, seed, workdir)
                    worker.send({"path": variant.path, "options": variant.options, "cli": index % 3 == 2})
                    busy[slot] = variant
            if not busy:
                break
            for slot in list(busy):
                result = workers[slot].poll()
                if result is not None:
                    results.append((busy.pop(slot), result))
            time.sleep(0.005)
    finally:
        for worker in workers:
            worker.stop()
    return results


def test_every_corrupt_model_loads_or_fails_typed(tmp_path):
    started = time.monotonic()
    results = run_campaign(tmp_path, VARIANTS, SEED)
    elapsed = time.monotonic() - started
    assert len(results) == VARIANTS
    counts = collections.Counter(result["outcome"] for _, result in results)
    by_family: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for variant, result in results:
        by_family[variant.family][result["outcome"]] += 1
    summary = {
        "variants": VARIANTS,
        "seed": SEED,
        "seconds": round(elapsed),
        "outcomes": dict(counts),
        "families": {family: dict(counter) for family, counter in sorted(by_family.items())},
        "sources": len(sources()),
    }
    print("fuzz summary:", json.dumps(summary))
    failures = [
        f"{describe(variant)}: {result['outcome']} {result.get('type', '')}: {result.get('message', '')[:500]}\n"
        f"{result.get('traceback', '')[-1500:]}"
        for variant, result in results
        if result["outcome"] not in ("works", "typed")
    ]
    assert not failures, f"{len(failures)} of {VARIANTS} variants were not typed-or-working:\n" + "\n".join(
        failures[:15]
    )
    too_much = [
        f"{describe(variant)}: {result['peak_mb']} MiB"
        for variant, result in results
        if result["peak_mb"] > MEMORY_ALLOWANCE_MB + MEMORY_PER_FILE_BYTE * _size(Path(variant.path)) / 2**20
    ]
    assert not too_much, "variants that needed more memory than the allowance:\n" + "\n".join(too_much)
    # Every family was exercised and most variants fail: the campaign damages what it claims to.
    assert {"truncate", "flip1", "flip100", "zero4k", "garbage", "empty", "h5-edit", "zip-edit", "dir-edit"} <= set(
        by_family
    )
    assert counts["typed"] > VARIANTS // 2


def test_typed_errors_name_the_file(tmp_path):
    results = run_campaign(tmp_path, 24, SEED + 1)
    for variant, result in results:
        if result["outcome"] == "typed" and result["type"] != "cli":
            named = {Path(variant.path).name, Path(variant.path).parent.name}
            assert any(name in result["message"] for name in named), f"{describe(variant)}: {result['message'][:300]}"


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size if path.exists() else 0


# ---------------------------------------------------------------- hostile Lambda layers


def _hostile_model(marker: Path, where: str):
    """A model whose Lambda bytecode writes ``marker`` when it is deserialized and called."""

    def payload(x, _marker=str(marker)):
        open(_marker, "w").write("the stored bytecode ran")
        return x

    if where == "top":
        return tf_keras.Sequential([tf_keras.Input((4,)), tf_keras.layers.Lambda(payload, name="payload")])
    if where == "time_distributed":
        x = tf_keras.Input((3, 4))
        return tf_keras.Model(x, tf_keras.layers.TimeDistributed(tf_keras.layers.Lambda(payload, name="payload"))(x))
    if where == "nested_model":
        inner = tf_keras.Sequential(
            [tf_keras.Input((4,)), tf_keras.layers.Lambda(payload, name="payload")], name="inner"
        )
        x = tf_keras.Input((4,))
        return tf_keras.Model(x, tf_keras.layers.Dense(2)(inner(x)))
    if where == "mask":
        return tf_keras.Sequential(
            [
                tf_keras.Input((4,)),
                tf_keras.layers.Lambda(
                    lambda t: t,
                    mask=lambda t, m, _marker=str(marker): (open(_marker, "w").write("ran"), m)[1],
                    name="payload",
                ),
            ]
        )
    raise ValueError(where)


HOSTILE_PLACES = ["top", "time_distributed", "nested_model", "mask"]

# Loads each file through the API, then describes it through the command's own entry point, in one fresh process
# (what runs there is what `tf1infer inspect FILE` runs; one process instead of two per file saves TensorFlow's start-up).
_HOSTILE_CHILD = """
import contextlib, io, json, sys
import tf1infer
from tf1infer.cli import main
from tf1infer.errors import UnsafeModelError
results = {}
for path in sys.argv[1:]:
    try:
        tf1infer.load(path)
        loaded = "LOADED"
    except UnsafeModelError as exc:
        loaded = "REFUSED " + str(exc).splitlines()[0]
    shown = io.StringIO()
    with contextlib.redirect_stdout(shown):
        status = main(["inspect", path])
    results[path] = {"load": loaded, "inspect_status": status, "inspect": shown.getvalue()}
print("HOSTILE-RESULTS " + json.dumps(results))
"""


@pytest.fixture(scope="module")
def hostile_runs(tmp_path_factory):
    """Each hostile file and its marker, with what loading and inspecting it in a fresh process did."""
    root = tmp_path_factory.mktemp("hostile")
    files = {}
    for where in HOSTILE_PLACES:
        marker, path = root / f"marker_{where}", root / f"hostile_{where}.h5"
        _hostile_model(marker, where).save(str(path))
        marker.unlink(missing_ok=True)  # Building the model above may have called the payload.
        files[where] = (path, marker)
    done = subprocess.run(
        [sys.executable, "-c", _HOSTILE_CHILD, *(str(path) for path, _ in files.values())],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("HOSTILE-RESULTS ")]
    assert done.returncode == 0 and lines, done.stdout + done.stderr[-2000:]
    results = json.loads(lines[-1][len("HOSTILE-RESULTS ") :])
    return {where: (results[str(path)], marker) for where, (path, marker) in files.items()}


@pytest.mark.parametrize("where", HOSTILE_PLACES)
def test_hostile_lambda_bytecode_never_runs(hostile_runs, where):
    result, marker = hostile_runs[where]
    assert result["load"].startswith("REFUSED"), result
    assert "refusing to load" in result["load"]
    # inspect describes the file without running it either.
    assert result["inspect_status"] == 0 and "why_not_loaded" in result["inspect"], result
    # inspect shows what was read of the function and why it is not recovered (the mask case: its function, the
    # identity, is recovered; the mask function is refused).
    assert ("not recovered" if where != "mask" else "mask function") in result["inspect"], result
    assert not marker.exists(), "the Lambda's stored bytecode ran (on load or inspect)"


def test_hostile_lambda_with_replacement_runs_the_replacement_only(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "hostile.h5"
    _hostile_model(marker, "time_distributed").save(str(path))
    marker.unlink(missing_ok=True)
    x = np.random.default_rng(3).normal(size=(2, 3, 4)).astype("float32")
    with tf1infer.load(path, lambdas={"payload": lambda t: t * 3.0}) as predictor:
        np.testing.assert_allclose(predictor.predict(x), x * 3.0, rtol=1e-6)
    assert not marker.exists()
    with pytest.raises(UnsafeModelError, match="payload"):
        tf1infer.load(path)
