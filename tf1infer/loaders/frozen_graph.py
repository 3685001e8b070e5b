"""Frozen GraphDefs (``.pb``/``.pbtxt`` with weights as constants, e.g. from ``convert_variables_to_constants``)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import tensorflow as tf
from google.protobuf import message, text_format

from tf1infer.errors import ModelLoadError
from tf1infer.loaders.base import ENDPOINTS_UNKNOWN, LoadedGraph, graph_and_session, require_path
from tf1infer.loaders.graph_tools import (
    check_no_state_changes,
    constant_input_map,
    constants_metadata,
    count_parameters,
    training_graph_error,
    training_parts,
)
from tf1infer.loaders.meta_graph import endpoints_by_name

FORMAT = "frozen-graph"


def read_graph_def(path: str) -> tf.compat.v1.GraphDef:
    """Parse a binary or text GraphDef; ModelLoadError if it is neither."""
    graph_def = tf.compat.v1.GraphDef()
    with open(path, "rb") as handle:
        data = handle.read()
    try:
        graph_def.ParseFromString(data)
        if graph_def.node:
            return graph_def
    except message.DecodeError:
        pass
    try:
        graph_def = tf.compat.v1.GraphDef()
        text_format.Parse(data.decode("utf-8"), graph_def)
    except (text_format.ParseError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{path}: not a GraphDef (neither binary nor text protobuf): {exc}") from exc
    if not graph_def.node:
        raise ModelLoadError(f"{path}: parses as a GraphDef but holds no nodes")
    return graph_def


def load_frozen_graph(
    path: str | os.PathLike,
    *,
    inputs: Sequence[Any] | None = None,
    outputs: Sequence[Any] | None = None,
    constants: Mapping[str, Any] | None = None,
    allow_stateful: bool = False,
    session_config: tf.compat.v1.ConfigProto | None = None,
    intra_op_threads: int | None = None,
    inter_op_threads: int | None = None,
) -> LoadedGraph:
    """Import a frozen GraphDef into a private graph and session.

    Args:
        path: the ``.pb`` (binary) or ``.pbtxt`` (text) file.
        inputs: tensor or op names; default: every placeholder that takes
            batches (scalar placeholders are not).
        outputs: tensor or op names; default: the ops that depend on the
            inputs and whose results nothing consumes.
        constants: placeholder names to the value they take on every call
            (``{"keep_prob": 1.0}``), folded into the graph at load.
        allow_stateful: allow outputs whose computation assigns to variables.
        session_config, intra_op_threads, inter_op_threads: as for every format.
    """
    path = require_path(path)
    graph_def = read_graph_def(path)
    with graph_and_session(session_config, intra_op_threads, inter_op_threads) as (graph, session):
        with graph.as_default():
            try:
                input_map = constant_input_map(graph_def, constants, path)
                tf.graph_util.import_graph_def(graph_def, input_map=input_map or None, name="")
            except (ValueError, TypeError, tf.errors.OpError) as exc:
                raise ModelLoadError(f"{path}: cannot import the GraphDef: {type(exc).__name__}: {exc}") from exc
            input_names, input_tensors, output_names, output_tensors = endpoints_by_name(graph, inputs, outputs, path)
        if any(op.type in ("VariableV2", "VarHandleOp", "Variable") for op in graph.get_operations()):
            raise ModelLoadError(
                f"{path}: the GraphDef still has variables, whose values a GraphDef does not hold: "
                "freeze it (convert_variables_to_constants) or load the .meta file with its checkpoint"
            )
        check_no_state_changes(output_tensors, allow_stateful, path)
    metadata = {
        "format": FORMAT,
        "path": os.path.abspath(path),
        # A GraphDef records no TensorFlow release, only the GraphDef version of its producer.
        "graph_def_producer_version": graph_def.versions.producer,
        "nodes": len(graph_def.node),
        "parameters": count_parameters(graph),  # Its weights are constants: those are counted.
    }
    if constants:
        metadata["constants"] = constants_metadata(constants)
    if not output_tensors:
        metadata[ENDPOINTS_UNKNOWN] = str(training_graph_error(graph, training_parts(graph), path))
    return LoadedGraph(graph, session, input_tensors, output_tensors, input_names, output_names, metadata)
