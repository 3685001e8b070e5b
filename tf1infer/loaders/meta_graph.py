"""Meta graph + checkpoint pairs written by ``tf.train.Saver`` (``model.meta`` + ``model.index/.data`` or a V1 file).

Old meta graphs need two repairs before current TensorFlow imports them:
a recorded ``tensorflow_version`` it cannot parse (``0.12.head``) makes
``import_meta_graph`` raise ``InvalidVersion``, so an unparseable version is
kept in the metadata and cleared in the proto. Attributes that today's op
definitions no longer have are ignored by TensorFlow's importer (it logs
them); an op that no longer exists at all (``tf.contrib``, custom op
libraries) is reported by name as a ModelLoadError.

The checkpoint is, in order: ``checkpoint=``, the prefix named by the
``checkpoint`` state file (re-rooted in the model's folder when it recorded an
absolute path from another machine), or the meta file's own prefix.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Mapping, Sequence
from typing import Any

import tensorflow as tf
from google.protobuf import message, text_format
from packaging.version import InvalidVersion, Version
from tensorflow.core.protobuf import meta_graph_pb2

from tf1infer.errors import ModelLoadError, tensorflow_reason
from tf1infer.loaders.base import (
    ENDPOINTS_UNKNOWN,
    LoadedGraph,
    graph_and_session,
    require_path,
    resolve_tensor,
    short_name,
)
from tf1infer.loaders.graph_tools import (
    check_no_state_changes,
    constant_input_map,
    constants_metadata,
    count_parameters,
    default_inputs,
    default_outputs,
    needed_placeholders,
    require_outputs,
    signature_endpoints,
    training_graph_error,
    training_parts,
)

FORMAT = "meta-graph"


def find_meta_file(path: str) -> str:
    """The ``.meta`` file for ``path`` (the file itself, or the only/newest one in a directory)."""
    if os.path.isfile(path):
        return path
    candidates = sorted(glob.glob(os.path.join(path, "*.meta")), key=os.path.getmtime)
    if not candidates:
        raise ModelLoadError(f"{path}: no .meta file in this directory")
    state = _checkpoint_state(path) if len(candidates) > 1 else None
    if state is not None:
        wanted = os.path.join(path, os.path.basename(state.model_checkpoint_path)) + ".meta"
        if wanted in candidates:
            return wanted
    return candidates[-1]


def read_meta_graph(path: str) -> meta_graph_pb2.MetaGraphDef:
    proto = meta_graph_pb2.MetaGraphDef()
    with open(path, "rb") as handle:
        data = handle.read()
    try:
        proto.ParseFromString(data)
    except message.DecodeError:
        try:
            text_format.Parse(data.decode("utf-8"), proto)
        except (text_format.ParseError, UnicodeDecodeError) as exc:
            raise ModelLoadError(f"{path}: not a MetaGraphDef (neither binary nor text protobuf): {exc}") from exc
    if not proto.graph_def.node:
        raise ModelLoadError(f"{path}: the meta graph holds no graph")
    return proto


def load_meta_graph(
    path: str | os.PathLike,
    *,
    checkpoint: str | os.PathLike | None = None,
    inputs: Sequence[Any] | None = None,
    outputs: Sequence[Any] | None = None,
    signature: str | None = None,
    constants: Mapping[str, Any] | None = None,
    allow_stateful: bool = False,
    session_config: tf.compat.v1.ConfigProto | None = None,
    intra_op_threads: int | None = None,
    inter_op_threads: int | None = None,
) -> LoadedGraph:
    """Import a meta graph and restore its checkpoint into a private graph and session.

    Args:
        path: a ``.meta`` file, or a directory holding one.
        checkpoint: checkpoint prefix (``dir/model.ckpt-1000``), V1 or V2.
        inputs, outputs: tensor or op names; default: the stored signature
            (``signature=`` or ``serving_default``) if the meta graph has
            signatures, else the placeholders and the sink ops.
        signature: a signature stored in the meta graph.
        constants: placeholder names to the value they take on every call
            (``{"keep_prob": 1.0}``), folded into the graph at load.
        allow_stateful: allow outputs whose computation assigns to variables.
        session_config, intra_op_threads, inter_op_threads: as for every format.

    Raises:
        ModelLoadError: unreadable meta graph, a checkpoint that is missing or
            does not match the graph, unknown tensor names (with suggestions).
    """
    path = require_path(path)
    meta_path = find_meta_file(path)
    proto = read_meta_graph(meta_path)
    recorded_version = proto.meta_info_def.tensorflow_version
    if recorded_version and not _parseable(recorded_version):
        proto.meta_info_def.tensorflow_version = ""  # import_meta_graph would raise InvalidVersion.
    prefix = _checkpoint_prefix(meta_path, checkpoint)

    with graph_and_session(session_config, intra_op_threads, inter_op_threads) as (graph, session):
        with graph.as_default():
            try:
                input_map = constant_input_map(proto.graph_def, constants, meta_path)
                saver = tf.compat.v1.train.import_meta_graph(proto, clear_devices=True, input_map=input_map or None)
            except (ValueError, TypeError, KeyError, tf.errors.OpError, message.DecodeError) as exc:
                # DecodeError: a collection (variables, saver) holds protos that are parsed only now.
                raise ModelLoadError(f"{meta_path}: cannot import the meta graph: {tensorflow_reason(exc)}") from exc
            if saver is not None:
                _restore(session, saver, prefix, meta_path)
            elif tf.compat.v1.global_variables():
                session.run(tf.compat.v1.variables_initializer(tf.compat.v1.global_variables()))
            input_names, input_tensors, output_names, output_tensors = _endpoints(
                graph, proto, inputs, outputs, signature, meta_path
            )
        check_no_state_changes(output_tensors, allow_stateful, meta_path)
    metadata = {
        "format": FORMAT,
        "path": os.path.abspath(meta_path),
        "checkpoint": prefix,
        "tensorflow_version": recorded_version or None,
        "signatures": sorted(proto.signature_def),
        "parameters": count_parameters(graph),
    }
    if constants:
        metadata["constants"] = constants_metadata(constants)
    if not output_tensors:
        metadata[ENDPOINTS_UNKNOWN] = str(training_graph_error(graph, training_parts(graph), meta_path))
    return LoadedGraph(graph, session, input_tensors, output_tensors, input_names, output_names, metadata)


def _parseable(version: str) -> bool:
    try:
        Version(version)
        return True
    except InvalidVersion:
        return False


def _checkpoint_prefix(meta_path: str, checkpoint: Any) -> str | None:
    folder = os.path.dirname(meta_path) or "."
    if checkpoint is not None:
        prefix = os.fspath(checkpoint)
        if not _checkpoint_exists(prefix):
            raise ModelLoadError(
                f"{meta_path}: checkpoint {prefix!r} not found (expected {prefix}.index or a V1 file {prefix})"
            )
        return prefix
    state = _checkpoint_state(folder)
    if state is not None and state.model_checkpoint_path:
        recorded = state.model_checkpoint_path
        for prefix in (recorded, os.path.join(folder, recorded), os.path.join(folder, os.path.basename(recorded))):
            if _checkpoint_exists(prefix):
                return prefix
    own = meta_path[: -len(".meta")] if meta_path.endswith(".meta") else meta_path
    return own if _checkpoint_exists(own) else None


def _checkpoint_state(folder: str):
    """The folder's ``checkpoint`` state file, parsed (None where there is none)."""
    try:
        return tf.train.get_checkpoint_state(folder)
    except (
        ValueError,
        text_format.ParseError,
        OSError,
        tf.errors.OpError,
    ) as exc:  # UnicodeDecodeError is a ValueError.
        state_file = os.path.join(folder, "checkpoint")
        raise ModelLoadError(
            f"{state_file}: the checkpoint state file is unreadable ({type(exc).__name__}: {exc}); "
            "repair or delete it, or name the checkpoint with checkpoint='path/prefix'"
        ) from exc


def _checkpoint_exists(prefix: str) -> bool:
    return os.path.isfile(prefix + ".index") or (os.path.isfile(prefix) and not prefix.endswith(".meta"))


def _restore(session, saver, prefix: str | None, meta_path: str) -> None:
    if prefix is None:
        raise ModelLoadError(
            f"{meta_path}: the graph has variables but no checkpoint was found beside it "
            "(no 'checkpoint' state file, no matching .index/.data files): pass checkpoint='path/prefix'"
        )
    try:
        saver.restore(session, prefix)
    except (tf.errors.NotFoundError, tf.errors.InvalidArgumentError, ValueError, TypeError, KeyError) as exc:
        # TypeError/KeyError: the saver of a damaged graph names a tensor the graph lacks.
        raise ModelLoadError(
            f"{meta_path}: checkpoint {prefix} does not match the graph or is damaged: {tensorflow_reason(exc)}"
        ) from exc
    except tf.errors.OpError as exc:  # DataLoss, OutOfRange...: a truncated or corrupt data or index file.
        raise ModelLoadError(
            f"{meta_path}: checkpoint {prefix} cannot be read (a truncated or corrupt file): {tensorflow_reason(exc)}"
        ) from exc


def _endpoints(graph, proto, inputs, outputs, signature, source):
    if inputs is None and outputs is None and proto.signature_def:
        name = signature or "serving_default"
        if name not in proto.signature_def:
            raise ModelLoadError(
                f"{source}: no signature {name!r}; stored signatures: {', '.join(sorted(proto.signature_def))}"
            )
        return signature_endpoints(graph, proto.signature_def[name])
    return endpoints_by_name(graph, inputs, outputs, source)


def endpoints_by_name(graph, inputs, outputs, source):
    """Inputs and outputs named by the caller, or the graph's placeholders and sinks.

    Named outputs without named inputs take the placeholders they read (not
    the labels only a loss reads). Neither named, a graph saved with its
    training ops has no endpoints to guess (its sinks are gradients and
    summaries): the four lists come back empty, and the loader keeps the graph
    for ``run()`` by name, with :func:`training_graph_error`'s message for
    ``predict``.
    """
    output_tensors = [resolve_tensor(graph, ref, "output", source) for ref in outputs] if outputs is not None else None
    if inputs is not None:
        input_tensors = [resolve_tensor(graph, ref, "input", source) for ref in inputs]
    elif output_tensors is not None:
        batched = set(default_inputs(graph))
        input_tensors = [tensor for tensor in needed_placeholders(graph, output_tensors) if tensor in batched]
    else:
        if training_parts(graph):
            return [], [], [], []
        input_tensors = default_inputs(graph)
    if not input_tensors:
        raise ModelLoadError(f"{source}: the graph has no placeholders; name the inputs with inputs=[...]")
    if output_tensors is None:
        output_tensors = require_outputs(default_outputs(graph, input_tensors), source)
    return (
        [short_name(t) for t in input_tensors],
        input_tensors,
        [short_name(t) for t in output_tensors],
        output_tensors,
    )
