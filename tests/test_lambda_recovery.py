"""Lambda functions recovered from their stored bytecode, without running any of it.

The bytecode reader (tf1infer.loaders.lambda_bytecode) is checked against an independent one (xdis: its opcode
tables and its marshal reader) on the real files of ../shared/corpus (Python 2.7, 3.4-3.5, 3.6-3.7, 3.8-3.10) and on
code marshalled by this Python (3.11). Recovered functions are checked against tf_keras running the same Python
functions (the reference), against the corpus's training functions (legacy_models/corpus_lambdas.py), and through
the exports. Functions outside the whitelist are refused with what was read of them, and nothing of theirs runs.
"""

from __future__ import annotations

import base64
import json
import marshal
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest
import tensorflow as tf
import tf_keras
import tf_keras.backend as K
from conftest import CORPUS_DIR, KERAS3_MISSING, corpus_entries, corpus_entry

import tf1infer
from tf1infer.errors import UnsafeModelError
from tf1infer.loaders import lambda_bytecode as lb
from tf1infer.loaders import lambda_recovery as lr
from tf1infer.loaders.keras_configs import iter_layer_configs

xdis = pytest.importorskip("xdis", reason="xdis (the test extra) checks the reader independently")


def _corpus_lambda_configs():
    """(file name, Lambda layer config) of every keras-h5-lambda file of ../shared/corpus."""
    found = []
    for entry in corpus_entries("keras-h5-lambda"):
        entry = entry.values[0] if hasattr(entry, "values") else entry
        if not hasattr(entry, "get"):
            continue
        with h5py.File(CORPUS_DIR / entry["path"], "r") as handle:
            config = json.loads(handle.attrs["model_config"])
        for layer in iter_layer_configs(config):
            if layer.get("class_name") == "Lambda":
                found.append((entry["name"], layer["config"]))
    return found


# ---------------------------------------------------------------- the reader, against xdis
_XDIS_TABLES = {
    "2.7": ["27"],
    "3.4": ["34", "35"],
    "3.6": ["36", "37"],
    "3.8": ["38"],
    "3.9": ["39", "310"],
    "3.11": ["311"],
}


@pytest.mark.parametrize("family", sorted(lb.OPCODES))
def test_opcode_tables_match_xdis(family):
    import importlib

    for version in _XDIS_TABLES[family]:
        module = importlib.import_module(f"xdis.opcodes.opcode_{version[0]}x.opcode_{version}")
        for name, number in lb.OPCODES[family].items():
            if name.startswith("SLICE+"):
                assert module.opmap.get(name, module.opmap.get(name.replace("+", "_"))) == number, (version, name)
                continue
            if name not in module.opmap:
                # An opcode a later version of the family added (LOAD_METHOD in 3.7, IS_OP in 3.9, @ in 3.5): its
                # number means nothing else in this version, so one table reads both.
                assert number not in module.opmap.values(), (version, name)
                continue
            assert module.opmap[name] == number, (version, name)
        if family == "3.11":
            assert [symbol for _, symbol in module._nb_ops[:13]] == list(lb.BINARY_OPS_311)


@pytest.mark.parametrize("index", range(6))
def test_reader_reads_the_corpus_as_xdis_does(index):
    configs = _corpus_lambda_configs()
    if not configs:
        pytest.skip("../shared/corpus is absent")
    import io

    from xdis.unmarshal import load_code

    name, config = configs[index]
    data = lb.code_bytes(config["function"])
    ours = lb.read_code(data)
    magic = {"2.7": "2.7", "3.4": "3.5", "3.8": "3.8", "3.6": "3.6"}[ours.python]
    if name == "keras224tf_lambda_normalize" or name == "keras122_lambda_space_to_depth":
        magic = "3.6"  # 3.4-3.5 and 3.6-3.7 share the layout; the bytecode says which.
    theirs = load_code(io.BytesIO(data), xdis.magics.magic2int(xdis.magics.by_version[magic]))
    assert bytes(theirs.co_code) == ours.code
    assert tuple(_plain(c) for c in theirs.co_consts) == tuple(_plain(c) for c in ours.consts)
    assert tuple(_plain(n) for n in theirs.co_names) == ours.names
    assert tuple(_plain(n) for n in theirs.co_varnames) == ours.varnames[: len(theirs.co_varnames)]
    assert theirs.co_argcount == ours.argcount


def _plain(value):
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return value if isinstance(value, (type(None), int, float, str, tuple)) else type(value).__name__


@pytest.mark.parametrize("name", ["normalize", "upsample", "l2"])
def test_the_assembled_python35_fixture_code_is_what_xdis_reads(name):
    """legacy_models/keras1/lambda_py35.h5's functions are assembled by hand (no Python 3.5 here): xdis reads each
    as a 3.5 code object whose instructions are those our reader decodes."""
    import io

    from make_keras1_fixtures import LAMBDAS_35
    from xdis.unmarshal import load_code

    data = LAMBDAS_35[name]
    theirs = load_code(io.BytesIO(data), xdis.magics.magic2int(xdis.magics.by_version["3.5"]))
    ours = lb.read_code(data)
    assert bytes(theirs.co_code) == ours.code and tuple(theirs.co_consts) == ours.consts
    from xdis.opcodes import opcode_35

    names = {number: op for op, number in opcode_35.opmap.items()}
    raw, position, theirs_ops = ours.code, 0, []
    while position < len(raw):
        theirs_ops.append(names[raw[position]])
        position += 3 if raw[position] >= opcode_35.HAVE_ARGUMENT else 1
    assert theirs_ops == [instruction.opname for instruction in lb.instructions(ours, "3.4")]


@pytest.mark.skipif(KERAS3_MISSING, reason="Keras 3 is not installed")
def test_keras1_lambda_fixture_exports_to_native_keras3_on_every_backend(tmp_path):
    """Python 3.5 bytecode of Keras 1 (with its 'tf' dim_ordering) recovered and written as keras.ops: the .keras
    file loads in safe mode and matches on TensorFlow and JAX, verified against float64."""
    from conftest import ZOO_DIR, assert_held_to_float64

    report = tf1infer.export_keras(ZOO_DIR / "keras1" / "lambda_py35.h5", tmp_path / "m.keras", training_step=False)
    assert report.load_with["safe_mode"] is True
    import importlib.util

    assert "tensorflow" in report.backends
    assert ("jax" in report.backends) == (importlib.util.find_spec("jax") is not None)
    for errors in report.backends.values():
        assert_held_to_float64(errors, report)
    for layer in ("normalize", "upsample", "l2"):
        assert any("written as keras.ops" in change for change in report.translations[layer]), layer


def test_reader_reads_this_pythons_marshal_as_the_code_object():
    scale = 2.0

    def sample(x, y=3):
        import tensorflow as tf

        return tf.reshape(x[:, 1:-1:2], (-1,)) * scale + y**2 - K.mean(x, axis=[1, 2], keepdims=True)

    code = sample.__code__
    ours = lb.read_code(marshal.dumps(code))
    assert ours.python == "3.11" and sys.version_info[:2] == (3, 11)
    assert ours.code == code.co_code
    assert ours.consts == code.co_consts
    assert ours.names == code.co_names
    assert ours.varnames[: len(code.co_varnames)] == code.co_varnames
    assert ours.freevars == code.co_freevars and ours.argcount == code.co_argcount


@pytest.mark.parametrize("cut", [0, 1, 7, 20, 40, -9, -1])
def test_truncated_bytecode_is_a_typed_refusal(cut):
    data = marshal.dumps((lambda x: x / 255.0 - 0.5).__code__)
    with pytest.raises(lb.BytecodeError):
        lb.read_code(data[:cut])


def test_damaged_bytecode_never_hangs_or_escapes_the_typed_errors():
    """300 bit flips and byte rewrites of each corpus function: recovered, or refused with NotRecovered."""
    configs = _corpus_lambda_configs()
    if not configs:
        pytest.skip("../shared/corpus is absent")
    rng = np.random.default_rng(11)
    outcomes = {"recovered": 0, "refused": 0}
    for _, config in configs:
        data = bytearray(lb.code_bytes(config["function"]))
        for _ in range(50):
            damaged = bytearray(data)
            for _ in range(int(rng.integers(1, 4))):
                position = int(rng.integers(0, len(damaged)))
                damaged[position] = int(rng.integers(0, 256))
            stored = [base64.b64encode(bytes(damaged)).decode("ascii"), None, None]
            try:
                lr.recover("damaged", stored)
                outcomes["recovered"] += 1
            except lr.NotRecovered:
                outcomes["refused"] += 1
    assert outcomes["refused"] > 0 and sum(outcomes.values()) == 50 * len(configs)


# ---------------------------------------------------------------- recovered functions against tf_keras
SCALE_HELPER = 3.0


def _helper(x):
    return x * SCALE_HELPER


def _imports_inside(x):
    import tensorflow as tf

    return tf.nn.relu(x - 0.25)


# (name, function, arguments, expression tf1infer shows) over an input of shape (None, 4, 6, 3).
RECOVERED = [
    ("normalize", lambda x: x / 127.5 - 1.0, None, "x / 127.5 - 1.0"),
    ("crop", lambda x: x[:, 1:-1, ::2, :], None, "x[:, 1:-1, ::2, :]"),
    ("resize", lambda x: K.resize_images(x, 2, 3, "channels_last"), None, "K.resize_images(x, 2, 3, 'channels_last')"),
    ("l2", lambda x: K.l2_normalize(x, axis=-1), None, "K.l2_normalize(x, axis=-1)"),
    ("mean", lambda x: K.mean(x, axis=[1, 2], keepdims=True), None, "K.mean(x, axis=[1, 2], keepdims=True)"),
    ("concat", lambda x: K.concatenate([x, -x * 2.0], axis=-1), None, "K.concatenate([x, -x * 2.0], axis=-1)"),
    ("power", lambda x: (1.0 - x) ** 2, None, "(1.0 - x) ** 2"),
    ("permute", lambda x: K.permute_dimensions(x, (0, 2, 1, 3)), None, "K.permute_dimensions(x, (0, 2, 1, 3))"),
    ("clip", lambda x: K.clip(x, 0.0, 0.5), None, "K.clip(x, 0.0, 0.5)"),
    ("scaled", lambda x, scale: x * scale, {"scale": 3.0}, "x * 3.0"),
    ("relu_inside", _imports_inside, None, "tf.nn.relu(x - 0.25)"),
    ("gray", lambda t: K.expand_dims(K.sum(t * tf.constant([0.299, 0.587, 0.114]), axis=-1), -1), None,
     "K.expand_dims(K.sum(t * tf.constant([0.299, 0.587, 0.114]), axis=-1), -1)"),
    ("swap", lambda x: x[..., ::-1], None, "x[..., ::-1]"),
    ("bilinear", lambda x: tf.compat.v1.image.resize_images(x, (8, 12), align_corners=True), None,
     "tf.compat.v1.image.resize_images(x, (8, 12), align_corners=True)"),
]  # fmt: skip


@pytest.fixture(scope="module")
def recovered_model(tmp_path_factory):
    """A tf_keras model with one Lambda branch per RECOVERED entry, saved as .h5, and its tf_keras outputs."""
    inputs = tf_keras.Input((4, 6, 3))
    outputs = []
    for name, function, arguments, _ in RECOVERED:
        branch = tf_keras.layers.Lambda(function, arguments=arguments or {}, name=name)(inputs)
        outputs.append(tf_keras.layers.Flatten(name=f"{name}_flat")(branch))
    model = tf_keras.Model(inputs, outputs)
    path = tmp_path_factory.mktemp("recovered") / "lambdas.h5"
    model.save(str(path))
    rng = np.random.default_rng(5)
    # Real image values (0..255 and their ends), negatives, and zeros (where l2_normalize divides by its floor).
    x = np.concatenate(
        [
            rng.uniform(0, 255, (3, 4, 6, 3)),
            rng.normal(size=(3, 4, 6, 3)),
            np.zeros((1, 4, 6, 3)),
            np.full((1, 4, 6, 3), 255.0),
        ]
    ).astype("float32")
    expected = model.predict(x, verbose=0)
    return path, x, expected


def _marshal_for_imports_only(real):
    """marshal.loads that serves Python's own imports (.pyc files) and fails for anyone else."""

    def guarded(data, *args, **kwargs):
        if sys._getframe(1).f_code.co_filename.startswith("<frozen importlib"):
            return real(data, *args, **kwargs)
        raise AssertionError("CPython's marshal was asked to build a stored code object")

    return guarded


def test_recovered_functions_compute_what_tf_keras_computes(recovered_model, monkeypatch):
    path, x, expected = recovered_model

    monkeypatch.setattr(marshal, "loads", _marshal_for_imports_only(marshal.loads))
    with tf1infer.load(path) as predictor:
        got = predictor.predict(x)
        shown = predictor.metadata["recovered_lambdas"]
    for (name, _, _, expression), want, have in zip(RECOVERED, expected, got):
        # Resizing with interpolation gets 1e-4 (the bound); everything else 1e-5 on values up to 255.
        atol = 1e-4 if name == "bilinear" else 1e-5
        np.testing.assert_allclose(have, want, rtol=1e-6, atol=atol, err_msg=name)
        assert f"{name}: computes {expression} (read from its Python 3.11 bytecode)" in shown


def test_inspect_prints_each_recovered_expression(recovered_model, capsys):
    from tf1infer.cli import main

    path, _, _ = recovered_model
    assert main(["inspect", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [line.split(":")[0] for line in report["recovered_lambdas"]] == [name for name, *_ in RECOVERED]
    assert "resize: computes K.resize_images(x, 2, 3, 'channels_last')" in report["recovered_lambdas"][2]


@pytest.mark.skipif(KERAS3_MISSING, reason="Keras 3 is not installed")
def test_recovered_functions_export_to_keras3_natively_where_keras_ops_has_them(recovered_model, tmp_path):
    """Every branch but the bilinear resize (no align_corners in keras.ops) is written as keras.ops; that one keeps
    its function as bytecode, so this file loads with safe_mode=False; the export is verified against float64."""
    path, x, expected = recovered_model
    report = tf1infer.export_keras(path, tmp_path / "lambdas.keras", backends=["tensorflow"], training_step=False)
    assert report.load_with["bytecode_lambda_layers"] == ["bilinear"]
    native = [
        name for name, changes in report.translations.items() if any("written as keras.ops" in c for c in changes)
    ]
    assert sorted(native) == sorted(name for name, *_ in RECOVERED if name != "bilinear")


# ---------------------------------------------------------------- refusals: shown, never run
def _refused_model(marker):
    """Lambdas outside the whitelist, each of which would write ``marker`` if it ran."""
    path_text = str(marker)
    return [
        ("helper", lambda x: _helper(x) + 1.0, "_helper(x) + 1.0", "reads the global '_helper'"),
        ("opens", lambda x, m=path_text: (open(m, "w").write("ran"), x)[1], "open", "reads the global 'open'"),
        ("imports_os", lambda x: __import__("os").system("touch " + path_text) + x, "__import__", "'__import__'"),
        ("branches", lambda x: x if x.shape[0] else -x, None, "branches or loops"),
        ("dunder", lambda x: x.__class__(x), "x.__class__(x)", "attribute .__class__"),
        ("py_func", lambda x: tf.compat.v1.py_func(lambda v: v, [x], tf.float32), None, "nested function"),
        ("numpy_io", lambda x: x + np.load(path_text), "np.load(path_text)", "np.load is not on the whitelist"),
        (
            "closure",
            lambda x: x * SCALE_HELPER + len(path_text),
            "len(path_text)",
            "variable 'path_text' of an enclosing",
        ),
    ]


def test_lambdas_outside_the_whitelist_are_refused_with_what_was_read(tmp_path):
    marker = tmp_path / "marker"
    for name, function, shown, reason in _refused_model(marker):
        code = marshal.dumps(function.__code__)
        stored = [base64.b64encode(code).decode("ascii"), list(function.__defaults__ or ()) or None, None]
        with pytest.raises(lr.NotRecovered) as info:
            lr.recover(name, stored)
        assert reason in str(info.value), (name, str(info.value))
        if shown:
            assert shown in (info.value.expression or ""), (name, info.value.expression)
    assert not marker.exists()


def test_a_refused_lambda_names_the_layer_and_its_expression_in_the_load_error(tmp_path):
    path = tmp_path / "helper.h5"
    model = tf_keras.Sequential(
        [
            tf_keras.Input((5,)),
            tf_keras.layers.Lambda(lambda x: _helper(x) + 1.0, name="scale"),
            tf_keras.layers.Dense(2),
        ]
    )
    model.save(str(path))
    with pytest.raises(UnsafeModelError) as info:
        tf1infer.load(path)
    message = str(info.value)
    assert "'scale' (layer 2 of 3, input from the previous layer, input shape (None, 5)" in message
    assert (
        "reads as _helper(x) + 1.0, not recovered: it reads the global '_helper', which the file does not hold"
        in message
    )
    assert 'lambdas={"scale": lambda x: ...}' in message
    # With the function supplied, the file loads and runs it.
    with tf1infer.load(path, lambdas={"scale": lambda x: x * SCALE_HELPER + 1.0}) as predictor:
        x = np.ones((2, 5), "float32")
        np.testing.assert_allclose(predictor.predict(x), model.predict(x, verbose=0), rtol=1e-5)


def _hostile_35(marker):
    """Python 3.5 functions (assembled) that would touch ``marker`` if they ran: (code, what the refusal says)."""
    from make_keras1_fixtures import marshal_code_35

    command = f"touch {marker}"
    return {
        # lambda x: __import__('os').system('touch MARKER')
        "import_os": (
            marshal_code_35(
                [("LOAD_GLOBAL", 0), ("LOAD_CONST", 1), ("CALL_FUNCTION", 1), ("LOAD_ATTR", 1), ("LOAD_CONST", 2),
                 ("CALL_FUNCTION", 1), ("RETURN_VALUE", None)],
                consts=(None, "os", command), names=("__import__", "system"), varnames=("x",),
            ),
            f"reads as __import__('os').system('{command}'), not recovered: it reads the attribute .system, which is "
            "not on the whitelist; it reads the global '__import__', which the file does not hold",
        ),
        # def f(x): open(MARKER, 'w'); return x
        "statement": (
            marshal_code_35(
                [("LOAD_GLOBAL", 0), ("LOAD_CONST", 1), ("LOAD_CONST", 2), ("CALL_FUNCTION", 2), ("POP_TOP", None),
                 ("LOAD_FAST", 0), ("RETURN_VALUE", None)],
                consts=(None, str(marker), "w"), names=("open",), varnames=("x",), name="f",
            ),
            f"reads as open('{marker}', 'w'), not recovered: it calls something as a statement",
        ),
        # lambda x: K.abs(x) if x else x: a jump
        "branch": (
            marshal_code_35(
                [("LOAD_FAST", 0), ("POP_JUMP_IF_FALSE", 18), ("LOAD_GLOBAL", 0), ("LOAD_ATTR", 1), ("LOAD_FAST", 0),
                 ("CALL_FUNCTION", 1), ("RETURN_VALUE", None), ("LOAD_FAST", 0), ("RETURN_VALUE", None)],
                consts=(None,), names=("K", "abs"), varnames=("x",),
            ),
            "not recovered: it branches or loops",
        ),
    }  # fmt: skip


@pytest.mark.parametrize("case", ["import_os", "statement", "branch"])
def test_hostile_python35_lambdas_are_refused_in_a_keras1_file_and_never_run(case, tmp_path):
    """Bytecode of another Python (3.5, which this one cannot even read) written into the Keras 1 fixture: refused at
    load and described by inspect, with what was read; nothing runs, with or without safe_mode."""
    import shutil

    from conftest import ZOO_DIR
    from make_keras1_fixtures import keras1_function

    from tf1infer.cli import main

    marker = tmp_path / "marker"
    code, words = _hostile_35(marker)[case]
    path = tmp_path / "hostile.h5"
    shutil.copy(ZOO_DIR / "keras1" / "lambda_py35.h5", path)
    with h5py.File(path, "r+") as handle:
        config = json.loads(handle.attrs["model_config"])
        config["config"][1]["config"]["function"] = keras1_function(code)  # the "upsample" Lambda
        handle.attrs["model_config"] = json.dumps(config)
    with pytest.raises(UnsafeModelError) as info:
        tf1infer.load(path)
    assert words in str(info.value) and "'upsample' (layer 3 of 6" in str(info.value)
    with pytest.raises(UnsafeModelError):
        tf1infer.load(path, safe_mode=False)  # This Python cannot read 3.5's bytecode: reported, not run.
    assert main(["inspect", str(path)]) == 0
    assert not marker.exists()


# ---------------------------------------------------------------- the real files
@pytest.mark.parametrize("entry", corpus_entries("keras-h5-lambda"))
def test_corpus_lambda_files_load_by_themselves_equal_to_their_training_functions(entry):
    """Each real Lambda file (Keras 1.2 to tf.keras 2.8, Python 2.7 to 3.10) loads with no lambdas= and no
    safe_mode=False, and computes what the training code's function computes (legacy_models/corpus_lambdas.py),
    within 1e-5, on image-range values with their ends."""
    from corpus_lambdas import LAMBDAS

    path = CORPUS_DIR / entry["path"]
    with tf1infer.load(path) as recovered, tf1infer.load(path, lambdas=LAMBDAS[entry["name"]]) as reference:
        assert len(recovered.metadata["recovered_lambdas"]) == len(entry["lambdas"])
        rng = np.random.default_rng(2)
        batch = []
        for spec in recovered.inputs:
            shape = [5, *(d or 3 for d in spec.shape[1:])]
            rows = rng.uniform(0, 255, shape)
            rows[0], rows[1] = 0.0, 255.0
            batch.append(rows.astype("float32"))
        feed = batch if len(batch) > 1 else batch[0]
        got, want = recovered.predict(feed), reference.predict(feed)
        for have, expected in zip(got if isinstance(got, list) else [got], want if isinstance(want, list) else [want]):
            np.testing.assert_allclose(have, expected, rtol=0, atol=1e-5)


def test_the_corpus_expressions_read_as_the_training_code_wrote_them():
    if corpus_entry("keras206_lambda_last_timestep") is None:
        pytest.skip("../shared/corpus is absent")
    expected = {
        "keras206_lambda_last_timestep": ("x[:, -1, :]", "3.4-3.5"),
        "keras280_lambda_siamese_absdiff": ("K.abs(tensor[0] - tensor[1])", "3.8-3.10"),
        "keras224tf_lambda_normalize": ("x / 255.0 - 0.5", "3.6-3.7"),
        "keras208_lambda_normalize_py27": ("x / 255.0 - 0.5", "2.7"),
        "keras120_lambda_normalize": ("x / 255.0 - 0.5", "3.4-3.5"),
        "keras122_lambda_space_to_depth": ("tf.space_to_depth(x, block_size=2)", "3.6-3.7"),
    }
    seen = {}
    for name, config in _corpus_lambda_configs():
        recovered = lr.recover(config["name"], config["function"], config.get("arguments"))
        seen[name] = (recovered.expression, recovered.python)
    assert seen == expected


def test_a_fresh_process_loads_the_corpus_without_marshal_or_bytecode():
    """No stored code object is built by CPython: marshal.loads and the code/function constructors are poisoned in
    a fresh process that loads every Lambda file of the corpus and predicts."""
    if corpus_entry("keras206_lambda_last_timestep") is None:
        pytest.skip("../shared/corpus is absent")
    child = textwrap.dedent(
        """
        import marshal, sys
        import numpy as np
        import tf1infer

        real = marshal.loads

        def poisoned(data, *args, **kwargs):
            # Python's own imports read .pyc files with it; nothing else may.
            if sys._getframe(1).f_code.co_filename.startswith("<frozen importlib"):
                return real(data, *args, **kwargs)
            raise SystemExit("marshal.loads was called")

        marshal.loads = poisoned
        for path in sys.argv[1:]:
            with tf1infer.load(path) as model:
                feeds = [np.ones([2, *(d or 3 for d in spec.shape[1:])], "float32") for spec in model.inputs]
                model.predict(feeds if len(feeds) > 1 else feeds[0])
        print("LOADED-ALL")
        """
    )
    paths = [str(CORPUS_DIR / entry.values[0]["path"]) for entry in corpus_entries("keras-h5-lambda")]
    done = subprocess.run([sys.executable, "-c", child, *paths], capture_output=True, text=True, timeout=300)
    assert "LOADED-ALL" in done.stdout, done.stdout + done.stderr[-3000:]
