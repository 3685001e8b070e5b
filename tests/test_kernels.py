"""Kernel families: channels-first models on every CPU, and what tf1infer reports of the kernels it runs.

TensorFlow's plain CPU kernels (the default where oneDNN is off) refuse
channels-first convolutions and pooling; the suite runs with oneDNN off and on
(``make test-both``), and these tests hold on both.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import tensorflow as tf
from conftest import ZOO_DIR, random_inputs, zoo_path
from tensorflow.core.protobuf import rewriter_config_pb2

import tf1infer
from tf1infer.backends.precision import frozen_graph_of
from tf1infer.loaders.graph_tools import channels_last, has_channels_first_ops
from tf1infer.runtime import kernels

ATOL = 1e-5
Rewriter = rewriter_config_pb2.RewriterConfig


def test_sessions_run_channels_first_ops_as_channels_last_unless_told_otherwise():
    with tf1infer.load(zoo_path("channels_first")) as predictor:
        assert has_channels_first_ops(predictor.graph.as_graph_def())
        assert predictor.session._config.graph_options.rewrite_options.cpu_layout_conversion == Rewriter.NCHW_TO_NHWC
    config = tf.compat.v1.ConfigProto()
    config.graph_options.rewrite_options.cpu_layout_conversion = Rewriter.NHWC_TO_NCHW
    with tf1infer.load(zoo_path("mlp"), session_config=config) as predictor:
        assert predictor.session._config.graph_options.rewrite_options.cpu_layout_conversion == Rewriter.NHWC_TO_NCHW
    assert config.graph_options.rewrite_options.cpu_layout_conversion == Rewriter.NHWC_TO_NCHW  # Not modified.


@pytest.mark.parametrize("path", [zoo_path("channels_first"), str(ZOO_DIR / "keras1" / "conv_theano.h5")])
def test_frozen_graph_is_channels_last_and_computes_the_same(path):
    """The graph that TF Lite, precision and export receive has no channels-first op left, and the same outputs."""
    with tf1infer.load(path) as predictor:
        graph_def, feeds = frozen_graph_of(predictor)
        assert not has_channels_first_ops(graph_def)
        x = random_inputs(predictor.inputs, 9, seed=4)
        want = predictor.predict(x if len(x) > 1 else x[0])
        want = want if isinstance(want, list) else [want]
    graph = tf.Graph()
    with graph.as_default():
        tf.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=graph) as session:
        have = session.run(
            [spec.name for spec in predictor.outputs],
            {feeds[spec.name]: array for spec, array in zip(predictor.inputs, x)},
        )
    for h, w in zip(have, want):
        np.testing.assert_allclose(h, w, rtol=0, atol=ATOL)


def test_channels_last_leaves_other_graphs_alone():
    with tf1infer.load(zoo_path("cnn")) as predictor:
        graph_def = predictor.graph.as_graph_def()
        outputs = [spec.name.split(":")[0] for spec in predictor.outputs]
    assert not has_channels_first_ops(graph_def)
    assert channels_last(graph_def, outputs) is graph_def


def test_kernel_family_names_onednn_and_the_cpu(tmp_path, monkeypatch):
    family = kernels.kernel_family()
    assert family["onednn"] == kernels.onednn_enabled()
    assert set(family) == {"onednn", "onednn_setting", "cpu", "machine", "vector_extensions"}
    assert kernels.describe(family).startswith(f"oneDNN {'on' if family['onednn'] else 'off'} (")
    x86 = tmp_path / "x86"
    x86.write_text(
        "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512_vnni\n"
    )
    assert kernels.cpu_vector_extensions(str(x86)) == ["sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni"]
    assert kernels.cpu_model(str(x86)) == "AMD EPYC 7B13"
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd evtstrm aes sve bf16 i8mm\n")
    assert kernels.cpu_vector_extensions(str(arm)) == ["asimd", "sve", "bf16", "i8mm"]
    # Where the system does not say (macOS, Windows, a hidden /proc): no extensions, the machine type as the CPU.
    assert kernels.cpu_vector_extensions(str(tmp_path / "missing")) == []
    assert kernels.cpu_model(str(tmp_path / "missing"))
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
    assert kernels.kernel_family()["onednn_setting"] == "TF_ENABLE_ONEDNN_OPTS=0"


def test_kernels_command(capsys):
    from tf1infer.cli import main

    assert main(["kernels", "--other"]) == 0
    assert capsys.readouterr().out == ("0\n" if kernels.onednn_enabled() else "1\n")
    assert main(["kernels", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == kernels.kernel_family()
    assert main(["kernels"]) == 0
    assert capsys.readouterr().out == kernels.describe() + "\n"


def _runner(single_row_seconds: float):
    """A stand-in session runner: doubles its input, one-row calls taking ``single_row_seconds``.

    With 0, every call takes 1 ms per row: no trap, and a margin timing noise cannot cross (a call that
    costs nothing would leave the decision to the noise).
    """
    calls = []

    def run(x):
        calls.append(len(x))
        time.sleep(single_row_seconds if len(x) == 1 and single_row_seconds else 0.001 * len(x))
        return [x * 2.0]

    return run, calls


@pytest.mark.parametrize("onednn", [True, False])
def test_single_rows_run_as_two_where_that_is_measured_faster(monkeypatch, onednn):
    """oneDNN's batch-1 trap (AVX2 CPUs): one-row calls are padded to two rows only where load measures a gain."""
    from tf1infer.backends import session as backends
    from tf1infer.io.feeds import TensorSpec

    monkeypatch.setattr(kernels, "onednn_enabled", lambda: onednn)
    specs_in = (TensorSpec("x:0", (None, 3), np.dtype("float32")),)
    specs_out = (TensorSpec("y:0", (None, 3), np.dtype("float32")),)
    slow, calls = _runner(0.01)
    run, report = backends.pad_single_rows(slow, specs_in, specs_out)
    if not onednn:  # Plain kernels have no such trap: nothing measured, the runner unchanged.
        assert run is slow and report is None and not calls
        return
    assert report["padded"] and report["one_row_ms"] > report["two_rows_ms"] * backends.SINGLE_ROW_PADDING_GAIN
    calls.clear()
    x = np.arange(3, dtype=np.float32).reshape(1, 3)
    (y,) = run(x)
    assert calls == [2] and y.shape == (1, 3)
    np.testing.assert_array_equal(y, x * 2.0)
    (y,) = run(np.ones((5, 3), np.float32))
    assert calls == [2, 5] and y.shape == (5, 3)
    fast, _ = _runner(0.0)
    run, report = backends.pad_single_rows(fast, specs_in, specs_out)
    assert run is fast and report["padded"] is False
    fixed = (TensorSpec("x:0", (1, 3), np.dtype("float32")),)  # A fixed batch of one cannot be padded.
    assert backends.pad_single_rows(slow, fixed, specs_out) == (slow, None)


def test_single_row_outputs_match_the_reference_on_this_kernel_family(eager_model):
    """Whatever load decided here (padding under oneDNN, none elsewhere), one-row outputs are the model's."""
    path = zoo_path("channels_first")
    with tf1infer.load(path) as predictor:
        report = predictor.backend_report.get("single_row_padding")
        assert (report is not None) == kernels.onednn_enabled()
        x = random_inputs(predictor.inputs, 1, seed=8)[0]
        np.testing.assert_allclose(
            predictor.predict_on_batch(x), eager_model(path).predict(x, verbose=0), rtol=0, atol=ATOL
        )


def test_padding_probe_never_runs_a_callers_session(monkeypatch):
    """Load's timing probe runs the model: not on a session the caller built, whose graph may keep state."""
    monkeypatch.setattr(kernels, "onednn_enabled", lambda: True)
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, (None, 3), name="x")
        counter = tf.compat.v1.Variable(0.0, name="counter", use_resource=False)
        with tf.control_dependencies([tf.compat.v1.assign_add(counter, 1.0)]):
            y = tf.identity(x * 2.0, name="y")
    session = tf.compat.v1.Session(graph=graph)
    session.run(counter.initializer)
    predictor = tf1infer.Predictor.from_session(session, [x], [y])
    assert "single_row_padding" not in predictor.backend_report
    assert session.run(counter) == 0.0
    np.testing.assert_array_equal(predictor.predict_on_batch(np.ones((1, 3), np.float32)), [[2.0, 2.0, 2.0]])
    assert session.run(counter) == 1.0
    session.close()
    with tf1infer.load(zoo_path("mlp")) as loaded:  # A model tf1infer loaded is probed.
        assert set(loaded.backend_report["single_row_padding"]) == {"one_row_ms", "two_rows_ms", "padded"}
