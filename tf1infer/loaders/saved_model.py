"""SavedModel directories (``saved_model.pb`` or ``.pbtxt``), TF1 and TF2 alike.

The SavedModel protobuf is read first, so a wrong tag set or a missing
signature is reported with the available choices before anything is loaded.
The meta graph is then loaded with ``tf.compat.v1.saved_model.loader.load``
into the model's own graph and session: variables restored, assets and
table initializers run as the SavedModel defines. A TF2 SavedModel loads the
same way, its signature functions becoming call ops in that graph.

Inputs and outputs are the chosen signature's, keyed and ordered by the
signature's names, so ``predict({"x": ...})`` works.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import tensorflow as tf
from google.protobuf import message, text_format
from tensorflow.core.protobuf import saved_model_pb2

from tf1infer.errors import ModelLoadError, tensorflow_reason
from tf1infer.loaders.base import LoadedGraph, graph_and_session, quiet_deprecation, require_path
from tf1infer.loaders.graph_tools import VARIABLE_OPS, check_no_state_changes, count_parameters, signature_endpoints

FORMAT = "saved-model"
DEFAULT_SIGNATURE = "serving_default"
_PROTO_FILES = ("saved_model.pb", "saved_model.pbtxt")


def is_saved_model_dir(path: str) -> bool:
    return os.path.isdir(path) and any(os.path.isfile(os.path.join(path, name)) for name in _PROTO_FILES)


def read_saved_model(path: str) -> saved_model_pb2.SavedModel:
    """Parse the SavedModel protobuf of directory ``path``."""
    proto = saved_model_pb2.SavedModel()
    binary = os.path.join(path, "saved_model.pb")
    try:
        if os.path.isfile(binary):
            with open(binary, "rb") as handle:
                proto.ParseFromString(handle.read())
        else:
            with open(os.path.join(path, "saved_model.pbtxt"), encoding="utf-8") as handle:
                text_format.Parse(handle.read(), proto)
    except (message.DecodeError, text_format.ParseError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{path}: saved_model.pb is not a readable SavedModel protobuf: {exc}") from exc
    if not proto.meta_graphs:
        raise ModelLoadError(f"{path}: the SavedModel holds no meta graph")
    return proto


def describe_signature(name: str, signature: Any) -> str:
    inputs = ", ".join(f"{key}: {_dtype_name(info.dtype)}" for key, info in sorted(signature.inputs.items()))
    outputs = ", ".join(f"{key}: {_dtype_name(info.dtype)}" for key, info in sorted(signature.outputs.items()))
    return f"{name} ({signature.method_name or 'no method'}): ({inputs}) -> ({outputs})"


def load_saved_model(
    path: str | os.PathLike,
    *,
    tags: Sequence[str] | str | None = None,
    signature: str | None = None,
    allow_stateful: bool = False,
    session_config: tf.compat.v1.ConfigProto | None = None,
    intra_op_threads: int | None = None,
    inter_op_threads: int | None = None,
) -> LoadedGraph:
    """Load a SavedModel signature into a private graph and session.

    Args:
        path: the SavedModel directory (or its ``saved_model.pb``).
        tags: the meta graph's tag set; default ``["serve"]``.
        signature: the signature to run; default ``serving_default``.
        allow_stateful: allow a signature whose outputs assign to variables.
        session_config, intra_op_threads, inter_op_threads: as for every format.

    Raises:
        ModelLoadError: not a SavedModel, unknown tags or signature (the
            message lists the available ones), missing ``variables/``, a
            signature that changes variables.
    """
    path = require_path(path)
    if os.path.isfile(path) and os.path.basename(path) in _PROTO_FILES:
        path = os.path.dirname(path) or "."
    if not is_saved_model_dir(path):
        found = sorted(os.listdir(path))[:10] if os.path.isdir(path) else "a file"
        raise ModelLoadError(
            f"{path}: not a SavedModel directory: no saved_model.pb or saved_model.pbtxt (found {found})"
        )
    proto = read_saved_model(path)
    tags = [tags] if isinstance(tags, str) else list(tags or ["serve"])
    meta_graph = _meta_graph_for(path, proto, tags)
    signature_name = signature or DEFAULT_SIGNATURE
    signatures = meta_graph.signature_def
    if signature_name not in signatures:
        listed = "\n".join(f"  - {describe_signature(name, sig)}" for name, sig in sorted(signatures.items()))
        how = "choose one with signature=..." if signatures else "this SavedModel has no signatures"
        raise ModelLoadError(
            f"{path}: no signature {signature_name!r} in tag set {tags}; {how}. Signatures:\n{listed or '  (none)'}"
        )
    _check_variables_present(path, meta_graph)

    with graph_and_session(session_config, intra_op_threads, inter_op_threads) as (graph, session):
        with graph.as_default():
            try:
                with quiet_deprecation():
                    tf.compat.v1.saved_model.loader.load(session, tags, path)
            except (
                tf.errors.OpError,
                ValueError,
                TypeError,
                KeyError,
                RuntimeError,
                OSError,
                message.DecodeError,
            ) as exc:
                # TensorFlow's loader reading the (possibly damaged) proto: DecodeError for collections parsed only
                # now, TypeError/KeyError for a saver or asset naming a tensor the graph lacks.
                raise ModelLoadError(f"{path}: cannot load the SavedModel: {tensorflow_reason(exc)}") from exc
        chosen = signatures[signature_name]
        input_names, inputs, output_names, outputs = signature_endpoints(graph, chosen)
        check_no_state_changes(outputs, allow_stateful, f"{path}: signature {signature_name!r}")
    is_tf2 = len(meta_graph.object_graph_def.nodes) > 0
    metadata = {
        "format": FORMAT,
        "path": os.path.abspath(path),
        "saved_model_kind": "TF2 SavedModel" if is_tf2 else "TF1 SavedModel",
        "tensorflow_version": meta_graph.meta_info_def.tensorflow_version or None,
        "tags": tags,
        "signature": signature_name,
        "method_name": chosen.method_name,
        "signatures": [describe_signature(name, sig) for name, sig in sorted(signatures.items())],
        "parameters": count_parameters(graph),
        "assets": sorted(os.listdir(os.path.join(path, "assets")))
        if os.path.isdir(os.path.join(path, "assets"))
        else [],
    }
    return LoadedGraph(graph, session, inputs, outputs, input_names, output_names, metadata)


def _meta_graph_for(path: str, proto: saved_model_pb2.SavedModel, tags: list[str]):
    for meta_graph in proto.meta_graphs:
        if set(meta_graph.meta_info_def.tags) == set(tags):
            return meta_graph
    available = [sorted(meta_graph.meta_info_def.tags) for meta_graph in proto.meta_graphs]
    raise ModelLoadError(f"{path}: no meta graph with tags {sorted(tags)}; available tag sets: {available}")


def _check_variables_present(path: str, meta_graph) -> None:
    has_variables = any(node.op in VARIABLE_OPS for node in meta_graph.graph_def.node) or any(
        node.op in VARIABLE_OPS for function in meta_graph.graph_def.library.function for node in function.node_def
    )
    index = os.path.join(path, "variables", "variables.index")
    if has_variables and not os.path.isfile(index):
        raise ModelLoadError(
            f"{path}: the graph has variables but {os.path.join('variables', 'variables.index')} is missing: "
            "copy the whole SavedModel directory, variables/ included"
        )


def _dtype_name(enum: int) -> str:
    try:
        return tf.dtypes.as_dtype(enum).name
    except TypeError:
        return str(enum)
