"""Helpers shared by the TF1 graph loaders (SavedModel, meta graph, frozen GraphDef).

Picking default inputs and outputs of a bare graph, and refusing fetches that
would change variables.
"""

from __future__ import annotations

from typing import Iterable

import tensorflow as tf

from tf1infer.errors import ModelLoadError

# Ops that write state: running one from a predict call would change the model.
STATEFUL_WRITE_OPS = {
    "Assign", "AssignAdd", "AssignSub", "AssignVariableOp", "AssignAddVariableOp", "AssignSubVariableOp",
    "ScatterAdd", "ScatterSub", "ScatterUpdate", "ScatterNdUpdate", "ResourceScatterAdd", "ResourceScatterUpdate",
    "ApplyGradientDescent", "ResourceApplyGradientDescent", "ApplyAdam", "ResourceApplyAdam",
}
# Ops that are never model outputs, even when nothing consumes them.
_NOT_OUTPUTS = {
    "NoOp", "Const", "Placeholder", "PlaceholderWithDefault", "VarHandleOp", "VariableV2", "Variable",
    "VarIsInitializedOp", "SaveV2", "Save", "SaveSlices", "RestoreV2", "Restore", "RestoreSlice", "MergeV2Checkpoints",
    "ShardedFilename", "StringJoin", "Assert", "Print", "PrintV2", "IsVariableInitialized",
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
    """Every placeholder of the graph, in graph order (the usual inputs of a frozen graph)."""
    return [op.outputs[0] for op in graph.get_operations() if op.type == "Placeholder"]


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
        op for op in graph.get_operations()
        if op in depends and op not in consumed and op not in input_ops and op.type not in _NOT_OUTPUTS and op.outputs
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
