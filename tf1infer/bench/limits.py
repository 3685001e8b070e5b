"""The physical limit a model's time per sample is held against: its FLOPs over the machine's matmul peak."""

from __future__ import annotations

import time

import numpy as np


def model_flops(path: str) -> dict:
    """Float operations per sample of the frozen inference graph, counted by TensorFlow's profiler.

    The profiler needs fully known shapes, so the graph is imported with each
    input a placeholder of batch size 1. It does not look inside functional
    loops (the While of a recurrent layer), so such graphs get ``None`` and the
    reason.
    """
    import tensorflow as tf

    import tf1infer
    from tf1infer.backends.precision import frozen_graph_of
    from tf1infer.loaders.base import quiet_deprecation

    with tf1infer.load(path) as predictor:
        graph_def, feeds = frozen_graph_of(predictor)
        specs = predictor.inputs
    loops = sorted({node.op for node in graph_def.node} & {"While", "StatelessWhile"})
    if loops:
        return {"flops_per_sample": None, "why": f"the profiler does not count inside {'/'.join(loops)} loops"}
    counted = tf.Graph()
    with counted.as_default():
        placeholders = {
            feeds[spec.name]: tf.compat.v1.placeholder(spec.dtype, (1, *(spec.shape or ())[1:])) for spec in specs
        }
        tf.import_graph_def(graph_def, input_map=placeholders, name="")
        options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
        options["output"] = "none"
        with quiet_deprecation():
            profile = tf.compat.v1.profiler.profile(counted, options=options)
    return {"flops_per_sample": int(profile.total_float_ops)}


def matmul_peak(size: int = 2048, seconds: float = 1.0) -> dict:
    """The best float32 GFLOP/s of a square matrix multiply, through TensorFlow and through numpy.

    TensorFlow's operands are variables, so that grappler cannot fold the product
    into a constant; only a scalar sum of it is fetched.
    """
    import tensorflow as tf

    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    flops = 2.0 * size**3
    results = {}
    graph = tf.Graph()
    with graph.as_default():
        left = tf.compat.v1.Variable(a)
        right = tf.compat.v1.Variable(a.T.copy())
        total = tf.reduce_sum(tf.linalg.matmul(left, right))
        init = tf.compat.v1.global_variables_initializer()
    with tf.compat.v1.Session(graph=graph) as session:
        session.run(init)
        results["tensorflow"] = _best_rate(lambda: session.run(total), flops, seconds)
    results["numpy"] = _best_rate(lambda: a @ a, flops, seconds)
    best = max(results, key=lambda name: results[name])
    return {"peak_gflops": results[best], "peak_by": best, "matmul_size": size, "gflops": results}


def _best_rate(function, flops: float, seconds: float) -> float:
    function()
    best = float("inf")
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        begin = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - begin)
    return round(flops / best / 1e9, 1)
