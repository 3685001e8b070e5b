"""Helpers shared by the TF1 graph loaders (SavedModel, meta graph, frozen GraphDef).

Picking default inputs and outputs of a bare graph, refusing fetches that
would change variables, and the GraphDef surgery shared by export and reduced
precision (cutting at fed tensors, reading and freezing variables).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from tf1infer.errors import ModelLoadError
from tf1infer.loaders.base import CHANNELS_LAST_ON_CPU, quiet_deprecation, short_name

# Ops that write state: running one from a predict call would change the model.
STATEFUL_WRITE_OPS = {
    "Assign",
    "AssignAdd",
    "AssignSub",
    "AssignVariableOp",
    "AssignAddVariableOp",
    "AssignSubVariableOp",
    "ScatterAdd",
    "ScatterSub",
    "ScatterUpdate",
    "ScatterNdUpdate",
    "ResourceScatterAdd",
    "ResourceScatterUpdate",
    "ApplyGradientDescent",
    "ResourceApplyGradientDescent",
    "ApplyAdam",
    "ResourceApplyAdam",
}
# Ops that are never model outputs, even when nothing consumes them.
_NOT_OUTPUTS = {
    "NoOp",
    "Const",
    "Placeholder",
    "PlaceholderWithDefault",
    "VarHandleOp",
    "VariableV2",
    "Variable",
    "VarIsInitializedOp",
    "SaveV2",
    "Save",
    "SaveSlices",
    "RestoreV2",
    "Restore",
    "RestoreSlice",
    "MergeV2Checkpoints",
    "ShardedFilename",
    "StringJoin",
    "Assert",
    "Print",
    "PrintV2",
    "IsVariableInitialized",
} | STATEFUL_WRITE_OPS


VARIABLE_OPS = {"VariableV2", "Variable", "VarHandleOp"}


def count_parameters(graph: tf.Graph) -> int:
    """Number of weights in a graph: elements of its floating-point variables.

    A frozen graph has no variables, its weights having become constants, so
    there the floating-point constants of rank 1 or more are counted instead.
    """
    variables = [op for op in graph.get_operations() if op.type in VARIABLE_OPS]
    if variables:
        return sum(
            tf.TensorShape(op.get_attr("shape")).num_elements() or 0
            for op in variables
            if tf.as_dtype(op.get_attr("dtype")).is_floating
        )
    return sum(
        op.outputs[0].shape.num_elements() or 0
        for op in graph.get_operations()
        if op.type == "Const" and op.outputs[0].dtype.is_floating and op.outputs[0].shape.rank
    )


def signature_endpoints(graph: tf.Graph, signature) -> tuple[list[str], list[tf.Tensor], list[str], list[tf.Tensor]]:
    """Input names, input tensors, output names, output tensors of a SignatureDef, ordered by key."""
    input_names, output_names = sorted(signature.inputs), sorted(signature.outputs)
    return (
        input_names,
        [graph.get_tensor_by_name(signature.inputs[key].name) for key in input_names],
        output_names,
        [graph.get_tensor_by_name(signature.outputs[key].name) for key in output_names],
    )


def default_inputs(graph: tf.Graph) -> list[tf.Tensor]:
    """Every placeholder of the graph that takes batches, in graph order (the usual inputs of a frozen graph).

    Scalar placeholders (a dropout ``keep_prob``, a ``phase_train`` flag) are
    not batched inputs: they hold one value for every row, given at load with
    ``constants=`` (see :func:`constant_input_map`) or per call through ``run``.
    """
    return [
        op.outputs[0] for op in graph.get_operations() if op.type == "Placeholder" and op.outputs[0].shape.rank != 0
    ]


# Ops only a training graph has: optimizer updates and summaries (gradients are recognised by their scope).
_TRAINING_OP_TYPES = {
    f"{prefix}{name}"
    for prefix in ("Apply", "ResourceApply", "SparseApply", "ResourceSparseApply")
    for name in (
        "Adam",
        "GradientDescent",
        "Momentum",
        "RMSProp",
        "CenteredRMSProp",
        "Adagrad",
        "AdagradV2",
        "Adadelta",
        "Ftrl",
        "FtrlV2",
        "AdaMax",
        "PowerSign",
        "AddSign",
        "ProximalAdagrad",
        "ProximalGradientDescent",
    )
}
_SUMMARY_OP_TYPES = {
    "ScalarSummary",
    "HistogramSummary",
    "ImageSummary",
    "AudioSummary",
    "AudioSummaryV2",
    "MergeSummary",
    "TensorSummary",
    "TensorSummaryV2",
    "WriteScalarSummary",
    "WriteHistogramSummary",
    "WriteSummary",
}
# Op types that usually end an inference graph: what a message suggests as outputs.
_OUTPUT_LIKE_TYPES = ("Softmax", "Sigmoid", "ArgMax", "TopKV2", "Identity", "Tanh", "BiasAdd", "Add", "AddV2", "MatMul")


def training_parts(graph: tf.Graph) -> list[str]:
    """Names of a few ops that only training uses (gradients, optimizer updates, summaries), or [] for an inference graph."""
    found = [
        op.name
        for op in graph.get_operations()
        if _in_gradient_scope(op.name) or op.type in _TRAINING_OP_TYPES or op.type in _SUMMARY_OP_TYPES
    ]
    return found[:3]


def _in_gradient_scope(name: str) -> bool:
    return any(part == "gradients" or part.startswith("gradients_") for part in name.split("/"))


def needed_placeholders(graph: tf.Graph, outputs: Iterable[tf.Tensor]) -> list[tf.Tensor]:
    """The placeholders that computing ``outputs`` reads, in graph order: not the labels a loss alone reads."""
    seen: set[tf.Operation] = set()
    stack = [tensor.op for tensor in outputs]
    while stack:
        op = stack.pop()
        if op in seen:
            continue
        seen.add(op)
        stack.extend(tensor.op for tensor in op.inputs)
        stack.extend(op.control_inputs)
    return [op.outputs[0] for op in graph.get_operations() if op in seen and op.type == "Placeholder"]


def training_graph_error(graph: tf.Graph, training: list[str], source: str) -> ModelLoadError:
    """Why ``predict`` cannot run a graph saved with its training ops, and what to pass to ``load`` instead.

    The likely outputs come first (probabilities, then what is read off them); the inputs suggested are the
    placeholders the first of them reads that take batches of rank 2 or more (data), before any other; scalar
    placeholders it reads (a dropout keep probability, an ``is_training`` flag) are suggested for ``constants=``
    with their inference value; the rest (labels) are listed, never suggested.
    """
    placeholders = [op.outputs[0] for op in graph.get_operations() if op.type == "Placeholder"]
    described = ", ".join(f"{short_name(p)} ({p.dtype.name} {p.shape})" for p in placeholders) or "none"
    candidates = [
        op
        for op in graph.get_operations()
        if op.type in _OUTPUT_LIKE_TYPES
        and op.outputs
        and not _in_gradient_scope(op.name)
        and not op.name.startswith(("save/", "init"))
        and any(placeholder in needed_placeholders(graph, op.outputs) for placeholder in placeholders)
    ]
    ranks = {"Softmax": 0, "Sigmoid": 0, "TopKV2": 1, "ArgMax": 2}  # Probabilities first, then what is read off them.
    preferred = sorted((op for op in candidates if op.type in ranks), key=lambda op: ranks[op.type]) or candidates[-8:]
    likely = ", ".join(f"{op.name} ({op.type})" for op in preferred[:8]) or "none found"
    read = needed_placeholders(graph, preferred[0].outputs) if preferred else placeholders
    data = sorted(
        (p for p in read if p.shape.rank != 0),
        key=lambda p: 0 if p.shape.rank is not None and p.shape.rank >= 2 and p.shape[0] is None else 1,
    )
    settings = [p for p in read if p.shape.rank == 0 and p.dtype in (tf.bool, tf.float16, tf.float32, tf.float64)]
    example_inputs = [short_name(p) for p in data] or ["x"]
    example_output = preferred[0].name if preferred else "probs"
    constants = ", ".join(f"{short_name(p)!r}: {False if p.dtype == tf.bool else 1.0}" for p in settings)
    call = f"tf1infer.load(path, inputs={example_inputs!r}, outputs=[{example_output!r}]"
    call += f", constants={{{constants}}})" if constants else ")"
    constants_note = (
        f" (constants= fixes the scalar placeholders {', '.join(short_name(p) for p in settings)} at their "
        "inference values, e.g. a dropout keep probability of 1.0: check them against the training code)"
        if settings
        else ""
    )
    return ModelLoadError(
        f"{source}: the graph was saved with its training ops ({', '.join(training)}...), so the tensors nothing "
        f"consumes are gradients, updates and summaries, not the model's outputs, and some placeholders are labels: "
        f"predict() needs them named. Load it with {call}{constants_note}; "
        f"run(fetches, feed_dict) works by name without them. Placeholders: {described}. Likely outputs: {likely}"
    )


def constant_input_map(graph_def, constants: Mapping[str, Any] | None, source: str) -> dict[str, tf.Tensor]:
    """``import_graph_def``'s ``input_map`` replacing each named placeholder by a constant of its dtype.

    Called inside the graph being built. Names may carry ``:0`` and the
    ``import/`` prefix old scripts wrote.

    Raises:
        ModelLoadError: a name is not a placeholder of ``graph_def``, or its value does not fit the dtype.
    """
    if not constants:
        return {}
    placeholders = {node.name: node for node in graph_def.node if node.op in ("Placeholder", "PlaceholderWithDefault")}
    input_map = {}
    for name, value in constants.items():
        op_name = str(name).split(":")[0].removeprefix("import/")
        node = placeholders.get(op_name)
        if node is None:
            raise ModelLoadError(
                f"{source}: constants= names {name!r}, which is not a placeholder of the graph; "
                f"its placeholders: {sorted(placeholders)[:20]}"
            )
        dtype = tf.as_dtype(node.attr["dtype"].type)
        try:
            input_map[f"{op_name}:0"] = tf.constant(
                np.asarray(value, dtype=dtype.as_numpy_dtype), name=f"tf1infer_constant/{op_name}"
            )
        except (TypeError, ValueError) as exc:
            raise ModelLoadError(
                f"{source}: constants={{{name!r}: {value!r}}} is not a {dtype.name} value: {exc}"
            ) from exc
    return input_map


def constants_metadata(constants: Mapping[str, Any]) -> dict[str, Any]:
    """The ``constants=`` of a load as plain values, for the metadata ``inspect`` prints."""
    values = {str(name): np.asarray(value) for name, value in constants.items()}
    return {name: value.item() if value.ndim == 0 else value.tolist() for name, value in values.items()}


def default_outputs(graph: tf.Graph, inputs: Iterable[tf.Tensor]) -> list[tf.Tensor]:
    """Outputs of the ops that depend on an input and whose results nothing consumes.

    Saver, initializer and assignment ops are left out: they are sinks too,
    but not model outputs.
    """
    input_ops = {tensor.op for tensor in inputs}
    depends: set[tf.Operation] = set(input_ops)
    for op in graph.get_operations():  # Graph order is topological for imported graphs.
        if any(tensor.op in depends for tensor in op.inputs):
            depends.add(op)
    consumed = {tensor.op for op in graph.get_operations() for tensor in op.inputs}
    consumed |= {control for op in graph.get_operations() for control in op.control_inputs}
    sinks = [
        op
        for op in graph.get_operations()
        if op in depends
        and op not in consumed
        and op not in input_ops
        and op.type not in _NOT_OUTPUTS
        and op.outputs
        and not state_writers([op])  # Counters and the like: not what a caller means by "the outputs".
    ]
    return [tensor for op in sinks for tensor in op.outputs]


def state_writers(ops: Iterable[tf.Operation]) -> list[str]:
    """Ops that write variables among ``ops`` and everything they depend on (data and control)."""
    seen: set[tf.Operation] = set()
    stack = list(ops)
    writers = []
    while stack:
        op = stack.pop()
        if op in seen:
            continue
        seen.add(op)
        if op.type in STATEFUL_WRITE_OPS:
            writers.append(f"{op.name} ({op.type})")
        stack.extend(tensor.op for tensor in op.inputs)
        stack.extend(op.control_inputs)
    return writers


def check_no_state_changes(outputs: Iterable[tf.Tensor], allow_stateful: bool, source: str) -> None:
    """Refuse outputs whose computation assigns to variables, unless ``allow_stateful``."""
    if allow_stateful:
        return
    writers = state_writers(tensor.op for tensor in outputs)
    if writers:
        raise ModelLoadError(
            f"{source}: computing the outputs would change variables through {', '.join(sorted(writers)[:5])}"
            f"{' and more' if len(writers) > 5 else ''}; inference must not change the model. "
            "Pass allow_stateful=True if that is intended."
        )


def require_outputs(outputs: list[tf.Tensor], source: str) -> list[tf.Tensor]:
    if not outputs:
        raise ModelLoadError(f"{source}: found no output tensors; name them with outputs=[...]")
    return outputs


# Lookup tables are initialized by separate ops that a pruned graph would not run.
TABLE_OPS = {
    "HashTable",
    "HashTableV2",
    "MutableHashTable",
    "MutableHashTableV2",
    "MutableDenseHashTable",
    "MutableDenseHashTableV2",
    "MutableHashTableOfTensors",
    "MutableHashTableOfTensorsV2",
}


def cut_at_inputs(graph_def, inputs: list[tf.Tensor]) -> dict[str, str]:
    """Make every fed tensor a placeholder of its own, so that pruning drops what computes it.

    A signature may feed an intermediate tensor (TF Serving models often feed
    ``x``, the Identity of a parsed tf.Example); the ops upstream of it must not
    be kept, or they would wait for inputs nobody gives. Returns, per fed
    tensor name, the name of the tensor to map in the rewritten graph.
    """
    nodes = {node.name: node for node in graph_def.node}
    feeds = {}
    for tensor in inputs:
        if tensor.name in feeds:
            continue
        if tensor.op.type == "Placeholder":
            feeds[tensor.name] = tensor.name
            continue
        placeholder = graph_def.node.add(name=f"{tensor.op.name}/tf1infer_input_{tensor.value_index}", op="Placeholder")
        placeholder.attr["dtype"].type = tensor.dtype.as_datatype_enum
        placeholder.attr["shape"].shape.CopyFrom(tensor.shape.as_proto())
        references = {f"{tensor.op.name}:{tensor.value_index}"} | (
            {tensor.op.name} if tensor.value_index == 0 else set()
        )
        for node in nodes.values():
            for index, name in enumerate(node.input):
                if name in references:
                    node.input[index] = placeholder.name
        feeds[tensor.name] = f"{placeholder.name}:0"
    return feeds


def variable_values(graph: tf.Graph, session, graph_def, source: str, error: type[Exception]) -> dict[str, Any]:
    """The session's current value of each variable ``graph_def`` uses, read through existing ops.

    The graph is finalized, so no read op can be added: a classic variable is
    fetched directly, a resource variable through a ReadVariableOp already in
    the graph (TensorFlow creates one with every resource variable). Raises
    ``error`` when a variable cannot be read that way.
    """
    fetches = {}
    for node in graph_def.node:
        if node.op not in VARIABLE_OPS:
            continue
        op = graph.get_operation_by_name(node.name)
        if node.op == "VarHandleOp":
            # A read that follows an assignment (control input) would need that assignment's feed.
            reads = [c for c in op.outputs[0].consumers() if c.type == "ReadVariableOp" and not c.control_inputs]
            if not reads:
                raise error(f"{source}: resource variable {node.name} has no read op to take its value from")
            fetches[node.name] = reads[0].outputs[0]
        else:
            fetches[node.name] = op.outputs[0]
    return session.run(fetches) if fetches else {}


def freeze_variables(graph_def, values: dict[str, Any], output_ops: list[str]):
    """A copy of ``graph_def`` with each variable a constant holding its value in ``values``.

    TensorFlow's own converter does the rewriting: besides plain reads it
    handles ops that take a resource handle directly (``ResourceGather`` of an
    embedding) and variables passed into functional control flow (the ``While``
    of a recurrent layer). Its session-based entry point reads values by a
    naming convention (``<var>/Read/ReadVariableOp``) that not every graph
    follows, so the values read by :func:`variable_values` are handed to it
    instead of a session.
    """
    from tensorflow.python.framework import convert_to_constants

    class _KnownValues:
        def run(self, names: list[str]) -> list[Any]:
            return [values[name.rsplit(":", 1)[0].removesuffix("/Read/ReadVariableOp")] for name in names]

    if any(node.op == "Variable" for node in graph_def.node):
        # TF 1.0's "Variable" op (the corpus's TF Serving meta graph has it) is the converter's VariableV2 in
        # all but name; the converter only knows the new name and would leave the variable in place.
        graph_def = copy.deepcopy(graph_def)
        for node in graph_def.node:
            if node.op == "Variable":
                node.op = "VariableV2"
    with quiet_deprecation():
        return convert_to_constants.convert_variables_to_constants_from_session_graph(
            _KnownValues(), graph_def, output_ops
        )


def has_channels_first_ops(graph_def) -> bool:
    """True if any op of ``graph_def`` computes in a channels-first layout (``NCHW``, ``NCDHW``...)."""
    return any(node.attr["data_format"].s.startswith(b"NC") for node in graph_def.node if "data_format" in node.attr)


def channels_last(graph_def, output_ops: list[str], source: str = "model"):
    """``graph_def`` with its channels-first ops rewritten as channels-last ones between transposes.

    TensorFlow's plain CPU kernels, and with them the TF2 runtime that runs an
    exported SavedModel and the TF Lite converter, refuse channels-first
    convolutions and pooling. The rewrite is grappler's own layout optimizer,
    the pass a session runs with :data:`~tf1infer.loaders.base.CHANNELS_LAST_ON_CPU`,
    run once here on the GraphDef. It only converts ops placed on a CPU, so
    every node is placed there for the pass and given its own device back
    afterwards. A graph without channels-first ops is returned as it is.

    Raises:
        ModelLoadError: grappler cannot take the graph; its reason is in the message.
    """
    if not has_channels_first_ops(graph_def):
        return graph_def
    from tensorflow.core.protobuf import config_pb2, meta_graph_pb2, rewriter_config_pb2
    from tensorflow.python.grappler import tf_optimizer

    meta_graph = meta_graph_pb2.MetaGraphDef()
    meta_graph.graph_def.CopyFrom(graph_def)
    devices = {node.name: node.device for node in graph_def.node}
    for node in meta_graph.graph_def.node:
        node.device = "/device:CPU:0"
        if node.op == "Placeholder" and "shape" not in node.attr:
            node.attr["shape"].shape.unknown_rank = True  # Grappler refuses placeholders without a shape.
    # Grappler keeps the nodes named in the "train_op" collection (its fetches) and what they need.
    meta_graph.collection_def["train_op"].node_list.value.extend(output_ops)
    config = config_pb2.ConfigProto()
    rewrites = config.graph_options.rewrite_options
    rewrites.optimizers.append("layout")
    rewrites.cpu_layout_conversion = CHANNELS_LAST_ON_CPU
    rewrites.meta_optimizer_iterations = rewriter_config_pb2.RewriterConfig.ONE
    rewrites.min_graph_nodes = -1  # Small graphs too.
    try:
        rewritten = tf_optimizer.OptimizeGraph(config, meta_graph)
    except (ValueError, tf.errors.OpError) as exc:
        raise ModelLoadError(f"{source}: cannot rewrite the channels-first ops as channels-last ones: {exc}") from exc
    for node in rewritten.node:
        node.device = devices.get(node.name, "")
    return rewritten


# Where each TensorList op takes its element shape: (op type, input position).
_ELEMENT_SHAPE_INPUT = {
    "TensorListReserve": 0,
    "EmptyTensorList": 0,
    "TensorListFromTensor": 1,
    "TensorListStack": 1,
    "TensorListGetItem": 2,
    "TensorListGather": 2,
    "TensorListSplit": 1,
    "TensorListPopBack": 1,
    "TensorListConcatV2": 1,
}


def has_tensor_lists(graph_def) -> bool:
    """Whether the graph or its functions use TensorList ops (the loops of recurrent layers built by TF 2)."""
    nodes = [*graph_def.node, *(node for function in graph_def.library.function for node in function.node_def)]
    return any(node.op in _ELEMENT_SHAPE_INPUT for node in nodes)


def fix_batch_dimension(graph_def, feeds: Iterable[str], rows: int):
    """A copy of ``graph_def`` that computes exactly ``rows`` rows: the batch axis made static everywhere it is known.

    The fed placeholders get ``rows`` as their first dimension, and every
    TensorList element shape that leaves its first dimension open (the batch
    axis of the time-major loops Keras recurrent layers build: an element is
    one time step of every row) gets ``rows`` there, in the graph and inside
    its loop functions. TF Lite's converter lowers TensorLists to plain
    tensors only where element shapes are static. Each fixed element shape is
    a new constant beside the old one, which other ops may still read.
    Callers verify the result: a loop whose element's first axis is not the
    batch (rare outside Keras) computes wrong shapes, and is caught there.
    """
    graph_def = copy.deepcopy(graph_def)
    fed = {name.split(":")[0] for name in feeds}
    for node in graph_def.node:
        if node.op == "Placeholder" and node.name in fed:
            dims = node.attr["shape"].shape.dim
            if dims and dims[0].size == -1:
                dims[0].size = rows
    graph_def.node.extend(_fix_element_shapes(graph_def.node, rows, ("", ":0"), ""))
    for function in graph_def.library.function:
        # Inside a function an input reads "node:output_arg:index"; a Const's one output arg is "output".
        function.node_def.extend(_fix_element_shapes(function.node_def, rows, (":output:0",), ":output:0"))
    return graph_def


def _fix_element_shapes(nodes, rows: int, const_suffixes: tuple[str, ...], new_suffix: str) -> list:
    """New element-shape constants with ``rows`` for a leading -1, and the TensorList ops among ``nodes`` pointed at them."""
    constants = {node.name + suffix: node for node in nodes if node.op == "Const" for suffix in const_suffixes}
    added: list[Any] = []
    for node in nodes:
        position = _ELEMENT_SHAPE_INPUT.get(node.op)
        const = constants.get(node.input[position]) if position is not None and position < len(node.input) else None
        if const is None:
            continue
        shape = tf.make_ndarray(const.attr["value"].tensor)
        if shape.ndim != 1 or not shape.size or shape[0] != -1:
            continue
        shape = shape.copy()
        shape[0] = rows
        fixed = copy.deepcopy(const)
        fixed.name = f"{const.name}/rows_{rows}_{len(added)}"
        fixed.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(shape))
        added.append(fixed)
        node.input[position] = fixed.name + new_suffix
    return added


def frozen_inference_graph(
    graph: tf.Graph,
    session: tf.compat.v1.Session,
    inputs: Sequence[tf.Tensor],
    outputs: Sequence[tf.Tensor],
    source: str,
    purpose: str = "reduced precision",
    instead: str = "precision='float32'",
):
    """The GraphDef computing ``outputs`` from ``inputs`` with every variable a constant, channels last.

    Returns the GraphDef and, per input tensor name, the tensor to feed in it.
    ``purpose`` and ``instead`` word the error for graphs that cannot be frozen.
    """
    graph_def = graph.as_graph_def()
    feeds = cut_at_inputs(graph_def, list(inputs))
    output_ops = sorted({tensor.op.name for tensor in outputs})
    with quiet_deprecation():
        graph_def = tf.compat.v1.graph_util.extract_sub_graph(graph_def, output_ops)
    ops = {node.op for node in graph_def.node}
    refused = sorted(ops & (TABLE_OPS | STATEFUL_WRITE_OPS))
    if refused:
        raise ModelLoadError(
            f"{source}: {purpose} runs a frozen copy of the graph, and the outputs use ops that a frozen "
            f"copy cannot keep ({', '.join(refused)}); load it with {instead}"
        )
    values = variable_values(graph, session, graph_def, source, ModelLoadError)
    return channels_last(freeze_variables(graph_def, values, output_ops), output_ops, source), feeds
