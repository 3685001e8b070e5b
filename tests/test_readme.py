"""The README's Python snippets, run as written: each in a scratch folder holding what it names.

A snippet names things a reader has (``data``, ``camera_frames()``, ``rows.parquet``, a ``photos/``
folder); each gets them here, made from the zoo, before it runs, and a check after it that what it
produced is right. A snippet the README gains without an entry here fails, so that none goes
untested. Imports come from where the README imports them (``tf1infer.load``, ``tf1infer.images``,
``tf1infer.spark``...): the layout may move modules, never these names.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, ZOO_DIR

README = ROOT / "README.md"
JAVA_MISSING = shutil.which("java") is None and not os.environ.get("JAVA_HOME")


def _snippets() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


# First line of a snippet -> (what it needs, made before it runs; what must hold after).
PREPARED = {
    "from tf1infer import load_model": (
        "data = [np.random.default_rng(0).random((5, 10), np.float32) for _ in range(3)]",
        "assert y.shape == (5, 3) and np.allclose(y.sum(axis=1), 1, atol=1e-5)",
    ),
    "import numpy as np": (
        "",
        "assert score.shape[0] == probs.shape[0] == 1000 and predictor.closed\n"
        "assert predictor.input_names == ['features', 'extra']",
    ),
    'tf1infer.export_keras("model.h5"': (
        "shutil.copyfile(ZOO_DIR / 'mlp.h5', 'model.h5')\n"
        "np.savez('held_out.npz', input_1=np.random.default_rng(1).random((16, 10), np.float32))",
        "assert os.path.isfile('model.keras')",
    ),
    "report = tf1infer.export_saved_model(": (
        "",
        "assert os.path.isdir('exported/mlp') and report.max_abs_error < 1e-5",
    ),
    "report = tf1infer.export_keras(": ("", "assert model.count_params() > 0 and report.backends"),
    'predictor = tf1infer.load("legacy_models/cnn.h5")': (
        "rng = np.random.default_rng(2)\n"
        "shape = (16, 16, 3)\n"
        "seen = []\n"
        "camera_frames = lambda: (rng.random(shape, np.float32) for _ in range(5))\n"
        "act_on = seen.append\n"
        "with h5py.File('inputs.h5', 'w') as f: f['x'] = rng.random((40,) + shape, np.float32)\n"
        "for label in ('cats', 'dogs'):\n"
        "    os.makedirs(f'photos/{label}')\n"
        "    for i in range(3):\n"
        "        image = tf.cast(rng.integers(0, 255, (16, 16, 3)), tf.uint8)\n"
        "        tf.io.write_file(f'photos/{label}/{i}.png', tf.io.encode_png(image))",
        "assert sum(map(len, seen)) == 5 and seen[0].shape[1:] == tuple(predictor.output_shape[1:])\n"
        "with h5py.File('scores.h5', 'r') as f:\n"
        "    assert f.attrs['complete'] and f[predictor.output_names[0]].shape[0] == 6, dict(f)",
    ),
    "predictor = tf1infer.load(": (
        "",
        "from concurrent.futures import ThreadPoolExecutor\n"
        "images = np.random.default_rng(3).random((8, 16, 16, 3), np.float32)\n"
        "with ThreadPoolExecutor(4) as pool: rows = list(pool.map(handle, images))\n"
        "np.testing.assert_allclose(np.concatenate(rows), predictor.predict(images), rtol=1e-6, atol=1e-6)\n"
        "assert asyncio.run(handle_async(images[0])).shape == rows[0].shape\n"
        "predictor.close()",
    ),
    "from tf1infer.spark import predict_udf": (
        "import pandas as pd\n"
        "rng = np.random.default_rng(4)\n"
        "pd.DataFrame({'id': range(10), 'features': list(rng.random((10, 6))), 'extra': list(rng.random((10, 3)))})"
        ".to_parquet('rows.parquet')",
        "assert spark.read.parquet('scored.parquet').count() == 10",
    ),
    "import grpc, requests": (
        "import io\n"
        "from tf1infer.serving import Server\n"
        "_server = Server(['cnn=legacy_models/cnn.h5'], out=io.StringIO()).start_in_thread()  # TF Serving's ports",
        "_server.stop()\n"
        "with tf1infer.load('legacy_models/cnn.h5') as p: want = p.predict(image)\n"
        "np.testing.assert_allclose(np.array(rest['predictions']), want, atol=1e-6)\n"
        "np.testing.assert_allclose(scores, want, atol=1e-6)",
    ),
    "from tf1infer.serving import ModelConfig, Server": (
        "shutil.copyfile(ZOO_DIR / 'lambda.h5', 'lambda.h5')",
        "with tf1infer.load('lambda.h5', lambdas={'affine': lambda x: x * 2.0 + 1.0}) as p:\n"
        "    want = p.predict(np.array([[1.0, 2.0, 3.0, 4.0, 5.0]], np.float32))\n"
        "np.testing.assert_allclose(np.array(answer['predictions']), want, atol=1e-6)\n"
        "assert server.rest_port > 0",
    ),
    "import tritonclient.http as httpclient": (
        "pytest.importorskip('tritonclient.grpc', reason='tritonclient is not installed')\n"
        "import io\n"
        "from tf1infer.serving import Server\n"
        "_server = Server(['cnn=legacy_models/cnn.h5'], out=io.StringIO()).start_in_thread()  # TF Serving's ports",
        "_server.stop()\n"
        "with tf1infer.load('legacy_models/cnn.h5') as p: want = p.predict(image)\n"
        "np.testing.assert_allclose(scores, want, atol=1e-6)\n"
        "np.testing.assert_allclose(same, want, atol=1e-6)\n"
        "assert ready",
    ),
    'tf1infer.load("lambda.h5"': (
        "shutil.copyfile(ZOO_DIR / 'lambda.h5', 'lambda.h5')",
        "",
    ),
}


_PRELUDE = """import asyncio, os, shutil
from pathlib import Path

import h5py
import numpy as np
import tensorflow as tf

import tf1infer

ZOO_DIR = Path({zoo!r})
"""


def _key(snippet: str) -> str:
    first = snippet.splitlines()[0]
    return next((key for key in PREPARED if first.startswith(key)), first)


@pytest.mark.parametrize("snippet", _snippets(), ids=lambda snippet: snippet.splitlines()[0][:50])
def test_readme_snippet_runs(snippet, tmp_path, monkeypatch):
    key = _key(snippet)
    assert key in PREPARED, f"a README snippet with no entry in PREPARED (what it needs, what to check): {key!r}"
    spark = "tf1infer.spark" in snippet
    if spark:
        pytest.importorskip("pyspark", reason="pyspark is not installed (pip install 'tf1infer[spark]')")
        if JAVA_MISSING:
            pytest.skip("no Java runtime (java on PATH or JAVA_HOME): Spark cannot start")
    if "import keras " in snippet or "import keras\n" in snippet:
        pytest.importorskip("keras", minversion="3", reason="the Keras 3 export needs Keras 3 (TensorFlow 2.16+)")
    if "export_keras" in snippet:
        from tf1infer.loaders.keras_versions import keras3_version

        if keras3_version() is None:
            pytest.skip("the Keras 3 export needs Keras 3 (TensorFlow 2.16+)")
    (tmp_path / "legacy_models").symlink_to(ZOO_DIR)
    monkeypatch.chdir(tmp_path)
    setup, check = PREPARED[key]
    if spark:
        # Spark resolves relative paths against its JVM's working directory, and a JVM this worker started for
        # another test sits in another folder: the snippet runs in a fresh Python here, as a reader would run it.
        script = "\n".join([_PRELUDE.format(zoo=str(ZOO_DIR)), setup, snippet, check])
        (tmp_path / "snippet.py").write_text(script, encoding="utf-8")
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        done = subprocess.run(
            [sys.executable, "snippet.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return
    import asyncio

    import h5py
    import tensorflow as tf

    import tf1infer

    namespace = {
        "np": np, "os": os, "shutil": shutil, "h5py": h5py, "tf": tf, "asyncio": asyncio, "ZOO_DIR": ZOO_DIR,
        "tf1infer": tf1infer, "pytest": pytest,
    }  # fmt: skip
    exec(compile(setup, "setup", "exec"), namespace)
    exec(compile(snippet, f"README.md: {key}", "exec"), namespace)
    exec(compile(check, "check", "exec"), namespace)
    if key == 'tf1infer.load("lambda.h5"':
        # The expression's value is the Predictor; the snippet keeps no name for it, so run it again, named.
        with eval(snippet.strip(), namespace) as predictor:
            x = np.random.default_rng(5).random((4,) + tuple(predictor.input_shape[1:]), np.float32)
            assert predictor.predict(x).shape[0] == 4
