"""Export any model tf1infer loads to a TF2 SavedModel, and prove it computes what the original did.

The export is written from the loaded inference graph, whatever its source format:

1. The graph is pruned to what the exported outputs need.
2. Each variable in it becomes a ``tf.Variable`` holding the value the
   persistent session holds (weights stay variables, so models over 2 GB
   export; nothing is folded into the GraphDef).
3. Each signature is a ``tf.function`` that imports the pruned graph with its
   input placeholders mapped to the function's arguments (named after the
   original inputs, batch dimension dynamic) and its variables mapped to the
   ``tf.Variable`` objects; it returns the outputs by their original names.
4. ``tf.saved_model.save`` writes it to a temporary sibling of ``out_dir``.

Verification (on by default) then loads that directory in a separate Python
process that imports only numpy and TensorFlow (:mod:`tf1infer.export.saved_model_worker`;
started by the first export and reused by the process's later ones, each
export loaded anew, so that exporting many models pays TensorFlow's start-up
once), feeds it the same inputs as the original session
(:func:`tf1infer.verification.synthetic.verification_batches`: seeded random rows plus rows
holding padding inside sequences, the first and last ids of embedding tables,
image value ranges, at two sequence lengths; then ``sample_inputs``), and
compares every output with the same frozen graph run in float64: the export
passes where it is within a small factor of the float32 session's own
deviation from float64 (:mod:`tf1infer.verification.reference`). Only a verified export is
renamed to ``out_dir``, with its report in ``assets.extra/tf1infer_export.json``;
any failure or interruption removes the temporary directory and leaves an
existing ``out_dir`` untouched.
"""

from __future__ import annotations

import atexit
import dataclasses
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import tensorflow as tf

from tf1infer.errors import ExportError, ExportVerificationError, InvalidOptionError, tensorflow_reason
from tf1infer.loaders.base import ENDPOINTS_UNKNOWN, quiet_deprecation
from tf1infer.loaders.graph_tools import (
    STATEFUL_WRITE_OPS,
    TABLE_OPS,
    VARIABLE_OPS,
    channels_last,
    cut_at_inputs,
    variable_values,
)
from tf1infer.loading import load
from tf1infer.predictor import Predictor
from tf1infer.verification.reference import Float64Unavailable, Tolerance, deviation_text, frozen_float64_runner
from tf1infer.verification.synthetic import verification_batches

REPORT_FILE = os.path.join("assets.extra", "tf1infer_export.json")
_PREDICT_METHOD = "tensorflow/serving/predict"
_EXPORT_COUNTER = itertools.count(1)


@dataclasses.dataclass
class Endpoint:
    """One exported signature: names and tensors of the loaded graph."""

    name: str
    input_names: list[str]
    inputs: list[tf.Tensor]
    output_names: list[str]
    outputs: list[tf.Tensor]

    def describe(self) -> dict[str, Any]:
        return {
            "inputs": {n: _tensor_info(t) for n, t in zip(self.input_names, self.inputs)},
            "outputs": {n: _tensor_info(t) for n, t in zip(self.output_names, self.outputs)},
        }


@dataclasses.dataclass
class ExportReport:
    """What :func:`export_saved_model` wrote and how well it matched the original.

    Attributes:
        out_dir: the SavedModel directory.
        source: the model's path (or ``"model"`` for a Predictor from a session).
        source_format: the format it was loaded from.
        signatures: per exported signature, its inputs and outputs (shape, dtype).
        skipped_signatures: source signatures not exported, with the reason.
        verified: whether the outputs were compared.
        samples: rows compared per signature (over every verification batch).
        atol, rtol: fixed tolerances the caller gave (``|exported - original|
            <= atol + rtol * |original|``), or None: the export is then held to
            the model's own float32 error (:class:`tf1infer.verification.reference.Tolerance`).
        tolerance: the rule applied, in words.
        reference: ``"float64"`` where the frozen graph ran in float64, else
            ``"float32 session"``; ``float64_unavailable`` says why not.
        errors: per ``"signature/output"``: ``max_abs_error`` and
            ``max_rel_error`` against the reference, ``float32_session_error``
            (the session's own deviation from float64) and ``allowed``.
        export_seconds, verify_seconds: wall time of writing and of verifying.
        tensorflow_version, tf1infer_version: the versions that wrote it.
    """

    out_dir: str
    source: str
    source_format: str | None
    signatures: dict[str, dict[str, Any]]
    skipped_signatures: dict[str, str]
    verified: bool
    samples: int
    atol: float | None
    rtol: float | None
    errors: dict[str, dict[str, Any]]
    export_seconds: float
    verify_seconds: float
    tolerance: str = ""
    reference: str = ""
    float64_unavailable: str | None = None
    tensorflow_version: str = tf.__version__
    tf1infer_version: str = ""

    @property
    def max_abs_error(self) -> float:
        return max((e["max_abs_error"] for e in self.errors.values()), default=0.0)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        lines = [f"exported {self.source} ({self.source_format}) to {self.out_dir} in {self.export_seconds:.2f} s"]
        for name, signature in self.signatures.items():
            inputs = ", ".join(f"{k}: {_spec_text(v)}" for k, v in signature["inputs"].items())
            outputs = ", ".join(f"{k}: {_spec_text(v)}" for k, v in signature["outputs"].items())
            lines.append(f"  signature {name}: ({inputs}) -> ({outputs})")
        for name, reason in self.skipped_signatures.items():
            lines.append(f"  skipped signature {name}: {reason}")
        if self.verified:
            lines.append(
                f"verified on {self.samples} samples in a separate TensorFlow-only process ({self.verify_seconds:.2f} s), "
                f"{self.tolerance}:"
            )
            if self.float64_unavailable:
                lines.append(f"  (no float64 reference: {self.float64_unavailable})")
            for key, error in self.errors.items():
                lines.append(f"  {deviation_text(key, error)}")
        else:
            lines.append("not verified (verify=False)")
        return "\n".join(lines)


def _spec_text(info: dict[str, Any]) -> str:
    return f"{info['dtype']}{info['shape'] if info['shape'] is not None else '[unknown shape]'}"


def export_saved_model(
    model_or_path: Predictor | str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    signature_name: str = "serving_default",
    verify: bool = True,
    atol: float | None = None,
    rtol: float | None = None,
    sample_inputs: Any = None,
    overwrite: bool = False,
    all_signatures: bool = False,
    random_samples: int = 8,
    **load_options: Any,
) -> ExportReport:
    """Export a loaded model (or a model path) to a verified TF2 SavedModel.

    Args:
        model_or_path: a :class:`Predictor`, or a path loaded with
            ``tf1infer.load(path, **load_options)`` (and closed afterwards).
        out_dir: the SavedModel directory to create.
        signature_name: the name of the exported signature.
        verify: compare the export with the original model before keeping it.
        atol, rtol: fixed tolerances for that comparison, against the float32
            session. By default (None) the export is held to the model's own
            numerics instead: within a small factor of the float32 session's
            deviation from the same graph run in float64.
        sample_inputs: real inputs to verify with besides the built ones (the
            best check there is): what ``predict`` takes (an array, a list, a
            dict by input name), or a ``.npy`` / ``.npz`` path (an ``.npz`` holds
            one array per input name).
        overwrite: replace an existing ``out_dir`` (only once the new export is verified).
        all_signatures: for a SavedModel source, also export its other
            predict-style signatures under their own names: every signature
            except classify/regress ones fed serialized tf.Example strings, and
            those whose outputs change variables (the report lists the skipped).
        random_samples: random rows to verify with.
        **load_options: options for ``tf1infer.load`` when a path is given.

    Returns:
        An :class:`ExportReport`, also written to ``assets.extra/tf1infer_export.json``.

    Raises:
        ExportError: ``out_dir`` exists, or the graph cannot be exported.
        ExportVerificationError: an output of the export differs from the original.

    Example:
        >>> import tf1infer
        >>> report = tf1infer.export_saved_model("legacy_models/mlp.h5", "/tmp/mlp_tf2", overwrite=True)
        >>> report.max_abs_error < 1e-5
        True
    """
    import tf1infer

    out_dir = os.path.abspath(os.fspath(out_dir))
    if os.path.exists(out_dir) and not overwrite:
        raise ExportError(
            f"{out_dir}: already exists; pass overwrite=True (--overwrite) to replace it "
            "(it is replaced only after the new export is verified)"
        )
    predictor, owned = as_predictor(model_or_path, load_options)
    try:
        if predictor.closed:
            raise ExportError(f"{predictor.metadata.get('path', 'model')}: the Predictor is closed")
        source = str(predictor.metadata.get("path") or "model")
        unknown = predictor.metadata.get(ENDPOINTS_UNKNOWN)
        if unknown is not None:
            raise ExportError(f"nothing to export without the model's inputs and outputs: {unknown}")
        endpoints, skipped = _endpoints(predictor, signature_name, all_signatures)
        parent = os.path.dirname(out_dir)
        os.makedirs(parent, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.tf1infer-export-", dir=parent)
        try:
            started = time.perf_counter()
            _write_saved_model(predictor, endpoints, staging, source)
            export_seconds = time.perf_counter() - started
            tolerance = Tolerance(atol, rtol)
            verdict = Verdict()
            verify_seconds = 0.0
            if verify:
                started = time.perf_counter()
                verdict = _verify(predictor, endpoints, staging, tolerance, sample_inputs, random_samples, source)
                verify_seconds = time.perf_counter() - started
            report = ExportReport(
                out_dir=out_dir,
                source=source,
                source_format=predictor.metadata.get("format"),
                signatures={endpoint.name: endpoint.describe() for endpoint in endpoints},
                skipped_signatures=skipped,
                verified=verify,
                samples=verdict.samples,
                atol=atol,
                rtol=rtol,
                errors=verdict.errors,
                export_seconds=round(export_seconds, 3),
                verify_seconds=round(verify_seconds, 3),
                tolerance=tolerance.describe(verdict.float64_unavailable is None) if verify else "",
                reference="float64" if verify and verdict.float64_unavailable is None else "float32 session",
                float64_unavailable=verdict.float64_unavailable,
                tf1infer_version=tf1infer.__version__,
            )
            _write_report(staging, report)
            _move_into_place(staging, out_dir)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    finally:
        if owned:
            predictor.close()
    return report


def as_predictor(model_or_path: Any, load_options: Mapping[str, Any]) -> tuple[Predictor, bool]:
    """The Predictor to export and whether the export owns it (loaded it from a path, so closes it)."""
    if isinstance(model_or_path, Predictor):
        if load_options:
            raise InvalidOptionError(
                f"load options ({', '.join(sorted(load_options))}) apply to a path, not to a loaded Predictor"
            )
        return model_or_path, False
    return load(model_or_path, **load_options), True


# -- which signatures -------------------------------------------------------------------------------


def main_endpoint(predictor: Predictor, name: str = "serving_default") -> Endpoint:
    """The Predictor's own inputs and outputs, as an endpoint of the loaded graph."""
    graph = predictor.graph
    return Endpoint(
        name,
        list(predictor.input_names),
        [graph.get_tensor_by_name(spec.name) for spec in predictor.inputs],
        list(predictor.output_names),
        [graph.get_tensor_by_name(spec.name) for spec in predictor.outputs],
    )


def _endpoints(
    predictor: Predictor, signature_name: str, all_signatures: bool
) -> tuple[list[Endpoint], dict[str, str]]:
    main = main_endpoint(predictor, signature_name)
    graph = predictor.graph
    endpoints = [main]
    skipped: dict[str, str] = {}
    if not all_signatures:
        return endpoints, skipped
    metadata = predictor.metadata
    if metadata.get("format") != "saved-model":
        raise ExportError(f"{metadata.get('path', 'model')}: all_signatures=True applies to SavedModel sources only")
    from tf1infer.loaders.graph_tools import signature_endpoints, state_writers
    from tf1infer.loaders.saved_model import _meta_graph_for, read_saved_model

    meta_graph = _meta_graph_for(metadata["path"], read_saved_model(metadata["path"]), metadata["tags"])
    for name, signature in sorted(meta_graph.signature_def.items()):
        if name == metadata.get("signature"):
            continue
        input_names, inputs, output_names, outputs = signature_endpoints(graph, signature)
        if signature.method_name != _PREDICT_METHOD and any(tensor.dtype == tf.string for tensor in inputs):
            skipped[name] = f"a {signature.method_name} signature on serialized tf.Example strings, not predict-style"
            continue
        if state_writers(tensor.op for tensor in outputs):
            skipped[name] = "its outputs change variables (stateful)"
            continue
        if name == signature_name:
            skipped[name] = f"its name is taken by the exported {metadata.get('signature')!r}"
            continue
        endpoints.append(Endpoint(name, input_names, inputs, output_names, outputs))
    return endpoints, skipped


# -- writing ----------------------------------------------------------------------------------------


def _write_saved_model(predictor: Predictor, endpoints: list[Endpoint], staging: str, source: str) -> None:
    if not tf.executing_eagerly():
        raise ExportError(f"{source}: export needs eager execution, which was disabled in this process")
    graph = predictor.graph
    output_ops = sorted({tensor.op.name for endpoint in endpoints for tensor in endpoint.outputs})
    graph_def = graph.as_graph_def()
    feeds = cut_at_inputs(graph_def, [tensor for endpoint in endpoints for tensor in endpoint.inputs])
    with quiet_deprecation():
        graph_def = tf.compat.v1.graph_util.extract_sub_graph(graph_def, output_ops)
    _refuse_unexportable(graph_def, source)
    values = variable_values(graph, predictor.session, graph_def, source, ExportError)
    trainable = {v.op.name for v in graph.get_collection(tf.compat.v1.GraphKeys.TRAINABLE_VARIABLES)}
    module = tf.Module()
    with tf.init_scope():
        module.weights = {
            name: tf.Variable(value, name=name, trainable=not trainable or name in trainable)
            for name, value in values.items()
        }
    kinds = {node.name: node.op for node in graph_def.node if node.op in VARIABLE_OPS}
    _variables_as_placeholders(graph_def)
    # The TF2 runtime that serves the export has no session option to convert channels-first ops on a CPU.
    graph_def = channels_last(graph_def, output_ops, source)
    _rename_library_functions(graph_def, f"_tf1infer{next(_EXPORT_COUNTER)}")
    signatures: dict[str, Any] = {}
    for endpoint in endpoints:
        function = _serving_function(graph_def, endpoint, feeds, module.weights, kinds)
        setattr(module, f"signature_{len(signatures)}", function)
        signatures[endpoint.name] = function.get_concrete_function()
    module.assets = [tf.saved_model.Asset(path) for path in _source_assets(predictor)]
    try:
        tf.saved_model.save(module, staging, signatures=signatures)
    except (ValueError, TypeError, tf.errors.OpError) as exc:
        raise ExportError(f"{source}: TensorFlow cannot save the exported graph: {type(exc).__name__}: {exc}") from exc
    _copy_assets_extra(predictor, staging)


def _refuse_unexportable(graph_def, source: str) -> None:
    ops = {node.op for node in graph_def.node}
    tables = sorted(ops & TABLE_OPS)
    if tables:
        raise ExportError(
            f"{source}: the outputs use lookup tables ({', '.join(tables)}), whose initialization a pruned "
            "graph would not run; tables are not exported yet"
        )
    writers = sorted(ops & STATEFUL_WRITE_OPS)
    if writers:
        raise ExportError(
            f"{source}: the outputs change variables ({', '.join(writers)}); only inference graphs export"
        )


def _variables_as_placeholders(graph_def) -> None:
    """Turn variable nodes into placeholders that the serving function maps to its tf.Variables."""
    for node in graph_def.node:
        if node.op in VARIABLE_OPS:
            dtype = tf.resource if node.op == "VarHandleOp" else tf.as_dtype(node.attr["dtype"].type).base_dtype
            node.op = "Placeholder"
            for key in list(node.attr):
                del node.attr[key]
            node.attr["dtype"].type = dtype.as_datatype_enum
        # Colocation with variables is a placement hint of the old graph, meaningless in the new one.
        if "_class" in node.attr:
            del node.attr["_class"]


def _rename_library_functions(graph_def, suffix: str) -> None:
    """Give the graph's library functions names of their own.

    The functions of a TF2 SavedModel source (``__inference_serve_1973``...) are
    imported into the eager context when the export is traced; one of the same
    name already registered there (from another model, or from the Keras 3
    export that loaded this one) with another body makes saving fail.
    """
    names = {function.signature.name for function in graph_def.library.function}
    if not names:
        return
    renamed = {name: name + suffix for name in names}

    def fix_attr(attr) -> None:
        if attr.HasField("func") and attr.func.name in renamed:
            attr.func.name = renamed[attr.func.name]
        if attr.HasField("list"):
            for function in attr.list.func:
                if function.name in renamed:
                    function.name = renamed[function.name]

    def fix_node(node) -> None:
        if node.op in renamed:
            node.op = renamed[node.op]
        for attr in node.attr.values():
            fix_attr(attr)

    for node in graph_def.node:
        fix_node(node)
    for function in graph_def.library.function:
        function.signature.name = renamed[function.signature.name]
        for node in function.node_def:
            fix_node(node)
        for attr in function.attr.values():
            fix_attr(attr)
    for gradient in graph_def.library.gradient:
        gradient.function_name = renamed.get(gradient.function_name, gradient.function_name)
        gradient.gradient_func = renamed.get(gradient.gradient_func, gradient.gradient_func)


def _serving_function(
    graph_def, endpoint: Endpoint, feeds: dict[str, str], weights: dict[str, tf.Variable], kinds: dict[str, str]
):
    specs = [
        tf.TensorSpec(_dynamic_batch(tensor.shape), tensor.dtype, name=name)
        for name, tensor in zip(endpoint.input_names, endpoint.inputs)
    ]
    input_tensor_names = [feeds[tensor.name] for tensor in endpoint.inputs]
    output_tensor_names = [tensor.name for tensor in endpoint.outputs]
    output_names = list(endpoint.output_names)

    def serve(*args):
        input_map = dict(zip(input_tensor_names, args))
        for name, variable in weights.items():
            # identity() turns the captured eager handle into a tensor of this function's graph.
            input_map[f"{name}:0"] = (
                tf.identity(variable.handle) if kinds[name] == "VarHandleOp" else variable.read_value()
            )
        results = tf.graph_util.import_graph_def(
            graph_def, input_map=input_map, return_elements=output_tensor_names, name="tf1infer"
        )
        return {name: tf.identity(tensor, name=_op_name(name)) for name, tensor in zip(output_names, results)}

    return tf.function(serve, input_signature=specs, autograph=False)


def _dynamic_batch(shape: tf.TensorShape) -> tf.TensorShape:
    if shape.rank is None or shape.rank == 0:
        return shape
    return tf.TensorShape([None] + shape.as_list()[1:])


def _op_name(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "_.-" else "_" for c in name)
    return cleaned if cleaned[:1].isalnum() else "output_" + cleaned


def _source_dir(predictor: Predictor) -> str | None:
    path = predictor.metadata.get("path")
    return path if predictor.metadata.get("format") == "saved-model" and path and os.path.isdir(path) else None


def _source_assets(predictor: Predictor) -> list[str]:
    folder = _source_dir(predictor)
    assets = os.path.join(folder, "assets") if folder else None
    if not assets or not os.path.isdir(assets):
        return []
    return sorted(os.path.join(root, name) for root, _, names in os.walk(assets) for name in names)


def _copy_assets_extra(predictor: Predictor, staging: str) -> None:
    folder = _source_dir(predictor)
    extra = os.path.join(folder, "assets.extra") if folder else None
    if extra and os.path.isdir(extra):
        shutil.copytree(extra, os.path.join(staging, "assets.extra"), dirs_exist_ok=True)


def _write_report(staging: str, report: ExportReport) -> None:
    path = os.path.join(staging, REPORT_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(report.to_dict(), handle, indent=2)


def _move_into_place(staging: str, out_dir: str) -> None:
    """Rename the verified export to ``out_dir``; an existing one is swapped out first, then removed."""
    if not os.path.exists(out_dir):
        os.rename(staging, out_dir)
        return
    retired = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.tf1infer-old-", dir=os.path.dirname(out_dir))
    os.rmdir(retired)
    os.rename(out_dir, retired)
    try:
        os.rename(staging, out_dir)
    except BaseException:
        os.rename(retired, out_dir)
        raise
    shutil.rmtree(retired, ignore_errors=True)


# -- verification -----------------------------------------------------------------------------------


@dataclasses.dataclass
class Verdict:
    """What a verification found: per-output figures, rows compared, and why float64 did not run (if it did not)."""

    errors: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    samples: int = 0
    float64_unavailable: str | None = None


@dataclasses.dataclass
class References:
    """The original model's outputs on the verification batches: the float32 session's, and float64's where it ran.

    ``session`` and ``float64`` hold, per batch, ``{key: array}`` (keys
    ``"<signature>/<output>"`` for SavedModel exports, output names for Keras).
    """

    batches: dict[str, list[list[np.ndarray]]]
    session: list[dict[str, np.ndarray]]
    float64: list[dict[str, np.ndarray]] | None
    float64_unavailable: str | None


def original_outputs(
    predictor, endpoints: list[Endpoint], batches: dict[str, tuple[list[list[np.ndarray]], set[int]]], source: str
) -> References:
    """Run the verification batches through the original session and, where it runs, its float64 twin.

    ``batches``: per endpoint, the batches and the indices of the optional
    ones (:func:`verification_inputs`). An optional batch that the original
    model itself refuses (a sequence length its layers cannot take) is left
    out: it is not a valid input. The others must run.
    """
    kept: dict[str, list[list[np.ndarray]]] = {}
    session: list[dict[str, np.ndarray]] = []
    for endpoint in endpoints:
        kept[endpoint.name] = []
        arrays, optional = batches[endpoint.name]
        for index, batch in enumerate(arrays):
            try:
                values = predictor.session.run(endpoint.outputs, dict(zip(endpoint.inputs, batch)))
            except tf.errors.OpError as exc:
                if index in optional:
                    continue
                raise ExportVerificationError(
                    f"{source}: the original model fails on the verification inputs of signature {endpoint.name!r} "
                    f"({tensorflow_reason(exc)}); pass real inputs with sample_inputs="
                ) from exc
            position = len(kept[endpoint.name])
            kept[endpoint.name].append(batch)
            if len(session) <= position:
                session.append({})
            session[position].update(
                {_key(endpoint, name): value for name, value in zip(endpoint.output_names, values)}
            )
    float64: Any = [{} for _ in session]  # None once float64 turns out unavailable.
    reason = None
    try:
        for endpoint in endpoints:
            run = frozen_float64_runner(predictor.graph, predictor.session, endpoint.inputs, endpoint.outputs, source)
            try:
                for position, batch in enumerate(kept[endpoint.name]):
                    float64[position].update(
                        {_key(endpoint, name): value for name, value in zip(endpoint.output_names, run(*batch))}
                    )
            finally:
                run.close()
    except Float64Unavailable as exc:
        float64, reason = None, str(exc)
    return References(kept, session, float64, reason)


def _key(endpoint: Endpoint, name: str) -> str:
    return name if endpoint.name == "" else f"{endpoint.name}/{name}"


# Above this deviation from float64, relative to the output's size, the float32 session is itself far from the
# exact result on these rows: the model amplifies rounding (a long recurrence, a near-singular normalization).
_ILL_CONDITIONED = 1e-4
# Below this, relative to the output's size, a deviation is rounding (a reordered sum), not another computation.
_ROUNDING = 1e-3


def likely_cause(
    figures: Mapping[str, Any], scale: float, float64: bool, suspects: list[str], tolerance: Tolerance
) -> str:
    """In words, why an output fell outside the tolerance, and the option that gets past it.

    Args:
        figures: :meth:`Tolerance.judge`'s figures for the output.
        scale: the output's largest magnitude (of the float64 reference where it ran).
        float64: whether the float64 reference ran.
        suspects: the export's changes that compute differently from the original, each as the report names it
            (a translated activation, a supplied Keras 3 class, a Lambda function), most likely first.
        tolerance: the tolerance that was applied.
    """
    session_error = figures.get("float32_session_error")
    relative = float(figures.get("max_abs_error") or 0.0) / scale if scale > 0 else float("inf")
    if float64 and session_error is not None and scale > 0 and session_error / scale > _ILL_CONDITIONED:
        return (
            "likely cause: the model is ill-conditioned on these rows (the original float32 session is itself "
            f"{session_error:.2g} from float64), so any other order of float32 arithmetic moves the output; check the "
            "export on your own data (sample_inputs=...), then pass atol=/rtol= for a fixed tolerance"
        )
    if relative <= _ROUNDING and not tolerance.fixed:
        return (
            "likely cause: float32 rounding beyond this model's own (a reordered sum); check the export on your own "
            "data (sample_inputs=...), then pass atol=/rtol= for a fixed tolerance"
        )
    if suspects:
        return (
            f"likely cause: a part that computes differently from the original: {suspects[0]}"
            + (f" (also: {'; '.join(suspects[1:])})" if len(suspects) > 1 else "")
            + "; replace it (keras3_custom_objects= for a custom layer's class, lambdas= for a Lambda's function)"
        )
    return "likely cause: the translation computes something else here; please report it with the file"


def judge_outputs(
    references: References,
    got: list[dict[str, np.ndarray]],
    tolerance: Tolerance,
    source: str,
    what: str,
    suspects: list[str] | None = None,
) -> Verdict:
    """Hold ``got`` (per batch, outputs by key) to ``tolerance`` against ``references``.

    ``suspects``: the export's parts that compute differently from the original (see :func:`likely_cause`).

    Raises:
        ExportVerificationError: an output is missing, of another shape or dtype, or outside the tolerance;
            the message gives both deviations, the likely cause and the option that gets past it.
    """
    errors: dict[str, dict[str, Any]] = {}
    for key in references.session[0]:
        have_parts, session_parts, float64_parts = [], [], []
        for position, expected in enumerate(references.session):
            if key not in expected:
                continue
            want = expected[key]
            if key not in got[position]:
                raise ExportVerificationError(f"{source}: {what} does not return output {key!r}")
            have = got[position][key]
            if have.shape != want.shape or have.dtype != want.dtype:
                raise ExportVerificationError(
                    f"{source}: output {key!r} of {what} is {have.dtype}{list(have.shape)}, "
                    f"the original gives {want.dtype}{list(want.shape)}"
                )
            have_parts.append(have.ravel())
            session_parts.append(want.ravel())
            if references.float64 is not None:
                float64_parts.append(references.float64[position][key].ravel())
        figures = tolerance.judge(
            np.concatenate(have_parts),
            np.concatenate(session_parts),
            np.concatenate(float64_parts) if float64_parts else None,
        )
        ok = figures.pop("ok")
        errors[key] = figures
        if not ok:
            scale = float(np.abs(np.concatenate(float64_parts or session_parts)).max(initial=0.0))
            cause = likely_cause(figures, scale, references.float64 is not None, list(suspects or []), tolerance)
            raise ExportVerificationError(
                f"{source}: output {key!r} of {what} differs from the original: {deviation_text('', figures).lstrip(': ')}; "
                f"tolerance: {tolerance.describe(references.float64 is not None)}; nothing was written; {cause}"
            )
    rows = sum(len(batch[0]) for batch in next(iter(references.batches.values())) if batch)
    return Verdict(errors, rows, references.float64_unavailable)


def _verify(predictor, endpoints, staging, tolerance: Tolerance, sample_inputs, random_samples, source) -> Verdict:
    batches = {
        endpoint.name: verification_inputs(endpoint, sample_inputs, random_samples, source) for endpoint in endpoints
    }
    references = original_outputs(predictor, endpoints, batches, source)
    got = _run_in_verification_process(staging, endpoints, references.batches, source)
    return judge_outputs(references, got, tolerance, source, "the export")


def verification_inputs(
    endpoint: Endpoint, sample_inputs, random_samples: int, source: str
) -> tuple[list[list[np.ndarray]], set[int]]:
    """The batches every check of ``endpoint`` runs, and the indices of those that may be left out.

    :func:`~tf1infer.verification.synthetic.verification_batches` (those at a second
    sequence length are optional: a model may not take it), then
    ``sample_inputs`` converted as ``predict`` would, as a batch of their own.
    """
    from tf1infer.io.feeds import FeedConverter, TensorSpec

    specs = [TensorSpec.from_tensor(tensor) for tensor in endpoint.inputs]
    batches = verification_batches(specs, np.random.default_rng(20261122), random_samples)
    lengths = {tuple(array.shape[1:]) for array in batches[0]}
    optional = {index for index, batch in enumerate(batches) if {tuple(array.shape[1:]) for array in batch} != lengths}
    if sample_inputs is not None:
        samples = _read_sample_inputs(sample_inputs, source)
        batches.append(FeedConverter(tuple(specs), tuple(endpoint.input_names)).convert(samples))
    return batches, optional


def _read_sample_inputs(sample_inputs: Any, source: str) -> Any:
    if not isinstance(sample_inputs, (str, os.PathLike)):
        return sample_inputs
    path = os.fspath(sample_inputs)
    try:
        if path.endswith(".npz"):
            with np.load(path, allow_pickle=False) as stored:
                return {key: stored[key] for key in stored.files}
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ExportError(f"{source}: cannot read sample inputs {path}: {exc}") from exc


def _run_in_verification_process(staging: str, endpoints, batches, source: str) -> list[dict[str, np.ndarray]]:
    """Outputs of the export in the verification worker: per batch, ``{"<signature>/<output>": array}``."""
    with tempfile.TemporaryDirectory(prefix="tf1infer-verify-") as scratch:
        inputs_path, outputs_path = os.path.join(scratch, "inputs.npz"), os.path.join(scratch, "outputs.npz")
        arrays = {
            f"{position}/{endpoint.name}/{name}": storable(array)
            for endpoint in endpoints
            for position, batch in enumerate(batches[endpoint.name])
            for name, array in zip(endpoint.input_names, batch)
        }
        np.savez(inputs_path, **arrays)  # type: ignore[arg-type]  # numpy's stub reads ** as its own keywords
        failure = VerificationWorker.run_job([staging, inputs_path, outputs_path])
        if failure is not None:
            raise ExportVerificationError(
                f"{source}: the exported SavedModel does not load or run with plain tf.saved_model.load ({failure})"
            )
        with np.load(outputs_path, allow_pickle=False) as stored:
            got = {key: stored[key] for key in stored.files}
    report = json.loads(str(got.pop("__report__")))
    if report["forbidden_modules"]:
        raise ExportVerificationError(f"{source}: loading the export imported {report['forbidden_modules']}")
    per_batch: list[dict[str, np.ndarray]] = [{} for _ in range(max(len(b) for b in batches.values()))]
    for key, value in got.items():
        position, rest = key.split("/", 1)
        per_batch[int(position)][rest] = value.astype(object) if value.dtype.kind == "S" else value
    return per_batch


# Environment variables that change how TensorFlow or Python runs a model: a worker started under other values is
# replaced (TF_ENABLE_ONEDNN_OPTS picks the kernels). Others (PYTEST_CURRENT_TEST changes per test) do not matter.
_SETTINGS_PREFIXES = ("TF_", "OMP_", "KMP_", "MKL", "ONEDNN", "DNNL", "CUDA", "XLA", "PYTHON", "LD_")


class VerificationWorker:
    """The :mod:`tf1infer.export.saved_model_worker` process that verifies this process's exports, one job at a time.

    Started with ``python -I`` (so tf1infer cannot be imported there by
    accident) on the first export, and reused while it lives and this
    process's pid and TensorFlow settings are those it was started with (a
    forked child or a changed ``TF_ENABLE_ONEDNN_OPTS`` gets its own). A worker that dies is
    replaced at the next export; the worker exits when its standard input
    closes, with this process at the latest.
    """

    _lock = threading.Lock()
    _current: VerificationWorker | None = None

    def __init__(self, env: dict[str, str], settings: dict[str, str]) -> None:
        self.settings = settings
        self.owner = os.getpid()
        self.log = tempfile.TemporaryFile()  # Its standard error, read back when it fails.
        worker = os.path.join(os.path.dirname(os.path.abspath(__file__)), "saved_model_worker.py")
        self.process = subprocess.Popen(
            [sys.executable, "-I", worker, "--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env=env,
        )

    @classmethod
    def run_job(cls, job: list[str]) -> str | None:
        """Run one job; None when it succeeded, else why it failed (the worker's traceback or exit status)."""
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
        settings = {key: value for key, value in env.items() if key.startswith(_SETTINGS_PREFIXES)}
        with cls._lock:
            worker = cls._current
            if (
                worker is None
                or worker.owner != os.getpid()
                or worker.settings != settings
                or worker.process.poll() is not None
            ):
                if worker is not None and worker.owner == os.getpid():
                    worker.close()
                worker = cls._current = cls(env, settings)
            answer = worker._ask(job)
            if answer is None:  # It died on this job: the next export starts another.
                cls._current = None
                return worker._death()
        return None if answer["ok"] else "\n".join(answer["error"].strip().splitlines()[-5:])

    def _ask(self, job: list[str]) -> dict | None:
        assert self.process.stdin is not None and self.process.stdout is not None  # Opened as pipes.
        try:
            self.process.stdin.write(json.dumps(job) + "\n")
            self.process.stdin.flush()
            for line in self.process.stdout:
                if line.startswith("VERIFY-DONE "):
                    return json.loads(line[len("VERIFY-DONE ") :])
        except (BrokenPipeError, OSError):
            pass
        return None

    def _death(self) -> str:
        status = self.process.wait()
        self.log.seek(0)
        tail = "\n".join(self.log.read().decode(errors="replace").strip().splitlines()[-5:])
        self.log.close()
        return f"exit status {status}:\n{tail}"

    def close(self) -> None:
        try:
            if self.process.stdin is not None:
                self.process.stdin.close()
            self.process.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()
        self.log.close()

    @classmethod
    def shutdown(cls) -> None:
        """Stop this process's worker (at exit; a later export starts another)."""
        with cls._lock:
            worker, cls._current = cls._current, None
        if worker is not None and worker.owner == os.getpid():
            worker.close()


atexit.register(VerificationWorker.shutdown)


def storable(array: np.ndarray) -> np.ndarray:
    """Strings as fixed-width bytes, so the .npz needs no pickle."""
    return array.astype(bytes) if array.dtype == object else array


def _tensor_info(tensor: tf.Tensor) -> dict[str, Any]:
    shape = _dynamic_batch(tensor.shape)
    return {"shape": None if shape.rank is None else shape.as_list(), "dtype": tensor.dtype.name}


__all__ = ["ExportReport", "export_saved_model", "likely_cause"]
