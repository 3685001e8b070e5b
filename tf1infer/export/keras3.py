"""Export a legacy Keras model to a native Keras 3 ``.keras`` file, and prove it computes what the original did.

Keras 3 (``tf.keras`` since TensorFlow 2.16) cannot open most legacy Keras files:
Keras 1 configs, Lambda layers written by Keras 1/2, LSTMs written by tf_keras
(``time_major``), ``CuDNNLSTM``, channels-first separable convolutions... tf1infer
loads them all, so it can write them again as Keras 3 models:

1. The model is loaded by tf1infer (Keras 1 converted, CuDNN layers as LSTM/GRU,
   Lambda functions from ``lambdas=``), giving a built tf_keras model and its
   weights in the Predictor's session.
2. Its config is translated layer by layer (:mod:`tf1infer.export.keras3_translate`),
   rebuilt as Keras 3 layers with ``keras.Model.from_config``, and given the
   legacy weights, layer by layer, each shape checked.
3. ``model.save`` writes it to a temporary sibling of the target.

Verification (on by default) then loads that file in a separate Python process
per Keras backend that imports only Keras 3, the backend and numpy (plus the
modules of custom classes the caller supplied; :mod:`tf1infer.export.keras3_worker`),
feeds it the batches the original model gets (valid random rows, rows with
padding inside sequences, the ends of embedding tables, image ranges, two
sequence lengths: :func:`tf1infer.verification.synthetic.verification_batches`; plus
``sample_inputs``), compares every output with the same frozen graph run in
float64 (within a small factor of the float32 session's own deviation:
:mod:`tf1infer.verification.reference`), and takes one training step (the trainable weights
must move and stay finite). TensorFlow is always a backend;
JAX is one too where it is installed. Only a verified file is renamed into
place, its report written beside it (``<path>.report.json``); any failure or
interruption removes the temporary file and leaves an existing one untouched.

A ``.keras`` source is re-saved by Keras 3 and verified the same way. Graph
formats (frozen GraphDef, meta graph, TF1 SavedModel) have no layers to rebuild
and are refused: their migration target is :func:`tf1infer.export_saved_model`,
which Keras 3 code loads with ``keras.layers.TFSMLayer``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from tf1infer.errors import ExportError, ExportVerificationError, MissingDependencyError, tensorflow_reason
from tf1infer.export.keras3_translate import (
    CodeReference,
    build_keras3_model,
    code_reference,
    copy_weights,
    plan_keras3_model,
)
from tf1infer.export.saved_model import (
    as_predictor,
    judge_outputs,
    main_endpoint,
    original_outputs,
    storable,
    verification_inputs,
)
from tf1infer.loaders.keras_versions import keras3_missing, keras3_version
from tf1infer.predictor import Predictor
from tf1infer.verification.reference import Tolerance, deviation_text

logger = logging.getLogger(__name__)

REPORT_SUFFIX = ".report.json"
TENSORFLOW, JAX = "tensorflow", "jax"
_GRAPH_FORMATS = {"saved-model", "meta-graph", "frozen-graph", "session"}


@dataclasses.dataclass
class KerasExportReport:
    """What :func:`export_keras` wrote and how well it matched the original.

    Attributes:
        path: the ``.keras`` file.
        report_path: this report as JSON, beside it.
        source, source_format: the model it came from.
        model_class, layers, parameters: the Keras 3 model written.
        translations: per layer, what was changed on the way to Keras 3.
        load_with: the arguments ``keras.saving.load_model`` needs for this
            file: ``safe_mode=False`` where a Lambda layer holds bytecode, and
            the custom classes or functions it refers to (module and name).
        verified: whether the outputs were compared.
        backends: per Keras backend that loaded the file, per output:
            ``max_abs_error`` / ``max_rel_error`` against the reference,
            ``float32_session_error`` (the legacy session's own deviation from
            float64) and ``allowed``.
        backends_skipped: Keras backends not checked, with the reason.
        training_step: what one SGD step on the TensorFlow backend did.
        samples: rows compared (over every verification batch).
        atol, rtol: fixed tolerances the caller gave, or None: the file is
            held to the model's own float32 error (:class:`tf1infer.verification.reference.Tolerance`).
        tolerance: the rule applied, in words.
        reference: ``"float64"`` or ``"float32 session"``; ``float64_unavailable`` says why not float64.
        export_seconds, verify_seconds: wall time of writing and of verifying.
        keras_version, tensorflow_version, tf1infer_version: the versions that wrote it.
    """

    path: str
    report_path: str
    source: str
    source_format: str | None
    model_class: str
    layers: int
    parameters: int
    translations: dict[str, list[str]]
    load_with: dict[str, Any]
    verified: bool
    backends: dict[str, dict[str, dict[str, Any]]]
    backends_skipped: dict[str, str]
    training_step: dict[str, Any] | None
    samples: int
    atol: float | None
    rtol: float | None
    export_seconds: float
    verify_seconds: float
    tolerance: str = ""
    reference: str = ""
    float64_unavailable: str | None = None
    keras_version: str = ""
    tensorflow_version: str = tf.__version__
    tf1infer_version: str = ""

    @property
    def max_abs_error(self) -> float:
        return max((e["max_abs_error"] for errors in self.backends.values() for e in errors.values()), default=0.0)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        lines = [
            f"exported {self.source} ({self.source_format}) to {self.path} in {self.export_seconds:.2f} s: "
            f"Keras {self.keras_version} {self.model_class}, {self.layers} layers, {self.parameters:,} parameters"
        ]
        for layer, changes in self.translations.items():
            for change in changes:
                lines.append(f"  {layer}: {change}")
        lines.append(f"load it with: {self.load_with['snippet']}")
        for backend, reason in self.load_with.get("inexact_backends", {}).items():
            lines.append(f"  not on Keras 3's {backend} backend: {reason}")
        if self.verified:
            lines.append(
                f"verified on {self.samples} samples in fresh Keras 3 processes ({self.verify_seconds:.2f} s), "
                f"{self.tolerance}:"
            )
            if self.float64_unavailable:
                lines.append(f"  (no float64 reference: {self.float64_unavailable})")
            for backend, errors in self.backends.items():
                for name, error in errors.items():
                    lines.append(f"  {backend} backend, {deviation_text(name, error)}")
            for backend, reason in self.backends_skipped.items():
                lines.append(f"  {backend} backend not checked: {reason}")
            if self.training_step:
                step = self.training_step
                if step.get("ran"):
                    lines.append(
                        f"  training step: {step['changed']} of {step['trainable_weights']} trainable weights changed, finite"
                    )
                    if step.get("first_attempt"):
                        lines.append(f"    on {step['kernels']}; first on the default kernels: {step['first_attempt']}")
                else:
                    lines.append(f"  training step: not run ({step.get('reason')})")
        else:
            lines.append("not verified (verify=False)")
        lines.append(f"report: {self.report_path}")
        return "\n".join(lines)


def keras3_available() -> str | None:
    """Keras 3's version where it is installed, else None (TensorFlow up to 2.15 ships Keras 2)."""
    return keras3_version()


def available_backends() -> list[str]:
    """The Keras 3 backends the export is verified on here: TensorFlow, and JAX where it is installed."""
    return [TENSORFLOW] + ([JAX] if importlib.util.find_spec("jax") is not None else [])


def export_keras(
    model_or_path: Predictor | str | os.PathLike,
    path: str | os.PathLike,
    *,
    keras3_custom_objects: Mapping[str, Any] | None = None,
    verify: bool = True,
    atol: float | None = None,
    rtol: float | None = None,
    sample_inputs: Any = None,
    overwrite: bool = False,
    random_samples: int = 8,
    backends: Sequence[str] | None = None,
    training_step: bool = True,
    keras2_hard_sigmoid: str = "scale_weights",
    **load_options: Any,
) -> KerasExportReport:
    """Export a legacy Keras model to a verified, trainable Keras 3 ``.keras`` file.

    Args:
        model_or_path: a Keras model path (``.h5`` from Keras 1, Keras 2 or
            tf.keras; an architecture ``.json`` with ``weights=``; a ``.keras``
            file), loaded with ``tf1infer.load(path, **load_options)``; or a
            :class:`Predictor` loaded from one.
        path: the ``.keras`` file to write.
        keras3_custom_objects: Keras 3 implementations of the model's custom
            layers (or of layers Keras 3 removed), by class name: subclasses of
            ``keras.layers.Layer`` taking the legacy config and holding the same
            weights in the same order. They must be importable from a module:
            whoever loads the file passes them as ``custom_objects``.
        verify: load the file in fresh Keras 3 processes and compare before keeping it.
        atol, rtol: fixed tolerances for that comparison, against the float32
            session. By default (None) the file is held to the model's own
            numerics instead: within a small factor of the float32 session's
            deviation from the same graph run in float64.
        sample_inputs: real inputs to verify with besides the built ones (the
            best check there is): what ``predict`` takes, or a ``.npy`` /
            ``.npz`` path.
        overwrite: replace an existing file (only once the new one is verified).
        random_samples: random rows to verify with.
        backends: Keras backends to verify on (default: ``"tensorflow"``, and
            ``"jax"`` where installed).
        training_step: with ``verify``, also compile the loaded file and take
            one SGD step on the TensorFlow backend.
        keras2_hard_sigmoid: how layers using Keras 1/2's ``hard_sigmoid``
            (``clip(0.2 x + 0.5, 0, 1)``; Keras 3's is ``x / 6 + 0.5``) keep it:
            ``"scale_weights"`` (default) scales the weights before it by 1.2
            for Keras 3's own function (a native file; the scaled weights are
            rounded in float32, which a long recurrence can amplify);
            ``"exact"`` keeps the weights and refers to Keras 2's formula in
            :mod:`tf1infer.keras2_activations` (Keras 3 alone), which whoever
            loads the file imports (the report's snippet says how).
        **load_options: options for ``tf1infer.load`` when a path is given
            (``custom_objects``, ``lambdas``, ``safe_mode``, ``weights``...).

    Returns:
        A :class:`KerasExportReport`, also written to ``<path>.report.json``.

    Raises:
        MissingDependencyError: Keras 3 is not installed (TensorFlow <= 2.15).
        ExportError: the target exists, the source has no Keras layers, or a
            layer has no Keras 3 translation (the message names it).
        ExportVerificationError: an output of the file differs from the original.

    Example:
        >>> import tf1infer
        >>> report = tf1infer.export_keras("legacy_models/lstm.h5", "/tmp/lstm.keras", overwrite=True)
        >>> report.max_abs_error < 1e-5
        True
        >>> import keras
        >>> model = keras.saving.load_model("/tmp/lstm.keras")   # a native Keras 3 model, trainable
    """
    import tf1infer

    keras_version = keras3_available()
    if keras_version is None:
        raise MissingDependencyError(
            keras3_missing(os.fspath(path), "the Keras 3 export runs only")
            + "; export_saved_model writes a TF2 SavedModel on every TensorFlow"
        )
    path = os.path.abspath(os.fspath(path))
    if not path.endswith(".keras"):
        raise ExportError(f"{path}: Keras 3 writes models as .keras files; give a path ending in .keras")
    if os.path.exists(path) and not overwrite:
        raise ExportError(
            f"{path}: already exists; pass overwrite=True (--overwrite) to replace it "
            "(it is replaced only after the new file is verified)"
        )
    requested = backends is not None
    backends = list(backends) if backends is not None else available_backends()
    unknown = sorted(set(backends) - {TENSORFLOW, JAX})
    if unknown:
        raise ExportError(f"{path}: backends= takes {TENSORFLOW!r} and {JAX!r}, got {unknown}")
    predictor, owned = as_predictor(model_or_path, load_options)
    try:
        source = str(predictor.metadata.get("path") or "model")
        started = time.perf_counter()
        model, translations, load_with = _keras3_model(
            predictor, source, keras3_custom_objects, load_options, keras2_hard_sigmoid
        )
        inexact = {backend: reason for backend, reason in load_with["inexact_backends"].items() if backend in backends}
        if inexact and requested:
            backend, reason = next(iter(inexact.items()))
            raise ExportError(
                f"{source}: cannot export to Keras 3 for its {backend} backend: {reason}; export for "
                f"backends={[b for b in backends if b not in inexact] or [TENSORFLOW]}"
            )
        for reason in inexact.values():
            logger.warning(
                "%s: the .keras file is exact on Keras 3's %s backend only: %s",
                source,
                " and ".join(b for b in backends if b not in inexact),
                reason,
            )
        backends = [backend for backend in backends if backend not in inexact]
        parent = os.path.dirname(path)
        os.makedirs(parent, exist_ok=True)
        staging = _sibling(path, "tf1infer-export", ".keras")
        try:
            _save(model, staging, source)
            export_seconds = time.perf_counter() - started
            errors: dict[str, dict[str, dict[str, Any]]] = {}
            skipped: dict[str, str] = {backend: f"left out: {reason}" for backend, reason in inexact.items()}
            step, samples, verify_seconds, float64_unavailable = None, 0, 0.0, None
            tolerance = Tolerance(atol, rtol)
            if verify:
                started = time.perf_counter()
                errors, checked, step, samples, float64_unavailable = _verify(
                    predictor,
                    staging,
                    load_with,
                    backends,
                    training_step,
                    tolerance,
                    sample_inputs,
                    random_samples,
                    source,
                    _suspects(translations, load_with),
                )
                verify_seconds = time.perf_counter() - started
                skipped.update(checked)
            report = KerasExportReport(
                path=path,
                report_path=path + REPORT_SUFFIX,
                source=source,
                source_format=predictor.metadata.get("format"),
                model_class=type(model).__name__,
                layers=len(model.layers),
                parameters=int(model.count_params()),
                translations=translations,
                load_with=load_with,
                verified=verify,
                backends=errors,
                backends_skipped=skipped,
                training_step=step,
                samples=samples,
                atol=atol,
                rtol=rtol,
                export_seconds=round(export_seconds, 3),
                verify_seconds=round(verify_seconds, 3),
                tolerance=tolerance.describe(float64_unavailable is None) if verify else "",
                reference=("float64" if float64_unavailable is None else "float32 session") if verify else "",
                float64_unavailable=float64_unavailable,
                keras_version=keras_version,
                tf1infer_version=tf1infer.__version__,
            )
            os.replace(staging, path)
        except BaseException:
            if os.path.exists(staging):
                os.remove(staging)
            raise
        _write_report(report)
    finally:
        if owned:
            predictor.close()
    return report


def keras3_export_summary(predictor: Predictor, keras3_custom_objects: Mapping[str, Any] | None = None) -> list[str]:
    """Whether :func:`export_keras` can export ``predictor``'s model, and what it would translate, as report lines.

    Nothing is built or written: the translation is planned from the loaded
    model's config (for ``tf1infer inspect``).
    """
    source = str(predictor.metadata.get("path") or "model")
    if keras3_available() is None:
        return ["no: needs Keras 3 (TensorFlow 2.16 or later)"]
    model = getattr(predictor, "_keras_model", None)
    if model is None:
        return [
            "no: a TensorFlow graph without Keras layers; export a TF2 SavedModel (Keras 3: keras.layers.TFSMLayer)"
        ]
    if type(model).__module__.startswith("keras."):
        return ["yes: already a Keras 3 model (re-saved as it is)"]
    try:
        plan = plan_keras3_model(source, model, keras3_custom_objects)
    except ExportError as exc:
        return [f"no: {str(exc).split(': cannot export to Keras 3: ', 1)[-1]}"]
    except Exception as exc:  # A line of inspect's report: an unforeseen config must not take the report down.
        return [f"unknown: planning the translation failed: {type(exc).__name__}: {exc}"]
    lines = [
        "yes"
        + (
            f", loaded with {_load_with(plan.bytecode_lambdas, plan.code_references, {})['snippet']}"
            if plan.bytecode_lambdas
            else ""
        )
    ]
    lines.extend(str(translation) for translation in plan.translations)
    return lines


# -- building the Keras 3 model ---------------------------------------------------------------------------------


def _keras3_model(
    predictor: Predictor, source: str, keras3_custom_objects, load_options, keras2_hard_sigmoid: str
) -> tuple[Any, dict, dict]:
    """The Keras 3 model to save, what was translated per layer, and how the file must be loaded."""
    if predictor.closed:
        raise ExportError(f"{source}: the Predictor is closed")
    fmt = predictor.metadata.get("format")
    model = getattr(predictor, "_keras_model", None)
    if fmt in _GRAPH_FORMATS or model is None:
        if predictor.metadata.get("precision", "float32") != "float32":
            raise ExportError(
                f"{source}: loaded at precision={predictor.metadata['precision']!r}; the Keras 3 export rebuilds the "
                "float32 model: pass the path (or a Predictor loaded at float32)"
            )
        raise ExportError(
            f"{source}: a {fmt} is a TensorFlow graph with no Keras layers to rebuild, so it cannot become a Keras 3 "
            "model; export it as a TF2 SavedModel instead (tf1infer.export_saved_model(model, 'out_dir'), or "
            "tf1infer export MODEL OUT_DIR) and call it from Keras 3 with "
            "keras.layers.TFSMLayer('out_dir', call_endpoint='serving_default')"
        )
    if predictor.metadata.get("chosen_outputs"):
        raise ExportError(
            f"{source}: loaded with outputs={predictor.metadata['chosen_outputs']}; the Keras 3 export rebuilds the whole "
            "model with its own outputs: pass the path, or a Predictor loaded without outputs="
        )
    if type(model).__module__.startswith("keras."):  # A .keras source: already a Keras 3 model.
        import keras

        objects = dict(load_options.get("custom_objects") or {})
        references = [
            code_reference(source, keras.saving.get_registered_name(value), value)
            for _, value in sorted(objects.items())
        ]
        bytecode = list(predictor.metadata.get("lambda_layers") or [])
        return model, {}, _load_with(bytecode, references, {})
    plan = plan_keras3_model(source, model, keras3_custom_objects, keras2_hard_sigmoid)
    keras3_model = build_keras3_model(source, plan)
    try:
        copy_weights(source, plan, model, predictor.session, keras3_model)
    except tf.errors.OpError as exc:
        raise ExportError(
            f"{source}: cannot read the legacy weights from the session: {tensorflow_reason(exc)}"
        ) from exc
    translations: dict[str, list[str]] = {}
    for translation in plan.translations:
        translations.setdefault(translation.layer, []).append(translation.change)
    return keras3_model, translations, _load_with(plan.bytecode_lambdas, plan.code_references, plan.inexact_backends)


# Changes of a translation that compute differently from the original (the rest only rename or reshape), as the
# report words them, and what each is in a refusal's likely cause.
_SUSPECT_CHANGES = (
    ("weights scaled by 1.2", "Keras 2's hard_sigmoid kept by scaling weights by 1.2 (their float32 rounding, which "
                              "recurrent layers amplify): keras2_hard_sigmoid='exact' keeps the weights"),
    ("supplied Keras 3 layer", "the Keras 3 layer supplied for a Lambda"),
    ("Lambda recovered", "a Lambda recovered from its bytecode, written as keras.ops"),
    ("Lambda:", "a Lambda's function"),
)  # fmt: skip


def _suspects(translations: Mapping[str, list[str]], load_with: Mapping[str, Any]) -> list[str]:
    """The parts of the export that compute differently from the original, most likely first: custom layers' Keras 3
    classes, then the changes of :data:`_SUSPECT_CHANGES`, each naming its layer."""
    found = [
        f"the Keras 3 class {reference['module']}.{reference['qualname']} supplied for a custom layer"
        for reference in load_with.get("custom_objects", [])
    ]
    for marker, words in _SUSPECT_CHANGES:
        for layer, changes in translations.items():
            if any(marker in change for change in changes):
                found.append(f"layer {layer!r}: {words}")
    return found


def _load_with(
    bytecode_lambdas: list[str], references: list[CodeReference], inexact_backends: Mapping[str, str]
) -> dict[str, Any]:
    arguments = []
    if references:
        objects = ", ".join(f"{ref.key!r}: {ref.module}.{ref.qualname}" for ref in references)
        arguments.append(f"custom_objects={{{objects}}}")
    if bytecode_lambdas:
        arguments.append("safe_mode=False")
    snippet = f"keras.saving.load_model(path{''.join(', ' + argument for argument in arguments)})"
    return {
        "safe_mode": not bytecode_lambdas,
        "bytecode_lambda_layers": list(bytecode_lambdas),
        "custom_objects": [dataclasses.asdict(reference) for reference in references],
        "snippet": snippet,
        "inexact_backends": dict(inexact_backends),
    }


def _save(model: Any, staging: str, source: str) -> None:
    try:
        model.save(staging)
    except (ValueError, TypeError, NotImplementedError, OSError) as exc:
        raise ExportError(f"{source}: Keras 3 cannot save the rebuilt model: {type(exc).__name__}: {exc}") from exc


def _sibling(path: str, purpose: str, suffix: str) -> str:
    """A hidden, unused name beside ``path``, created by whoever writes it (so with the user's usual permissions)."""
    return os.path.join(
        os.path.dirname(path), f".{os.path.basename(path)}.{purpose}-{os.getpid()}-{uuid.uuid4().hex[:12]}{suffix}"
    )


def _write_report(report: KerasExportReport) -> None:
    temporary = _sibling(report.report_path, "tf1infer-report", ".json")
    try:
        with open(temporary, "w", encoding="utf-8") as stream:
            json.dump(report.to_dict(), stream, indent=2)
        os.replace(temporary, report.report_path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


# -- verification ---------------------------------------------------------------------------------------------------


def _verify(
    predictor,
    staging,
    load_with,
    backends,
    training_step,
    tolerance: Tolerance,
    sample_inputs,
    random_samples,
    source,
    suspects=(),
):
    endpoint = main_endpoint(predictor, "")
    references = original_outputs(
        predictor, [endpoint], {"": verification_inputs(endpoint, sample_inputs, random_samples, source)}, source
    )
    errors, skipped, step = {}, {}, None
    jobs = {}
    for backend in backends:
        if backend == JAX and importlib.util.find_spec("jax") is None:
            skipped[backend] = "jax is not installed"
            continue
        jobs[backend] = [
            KerasVerificationJob(
                staging, references.batches[""], load_with, train=training_step and backend == TENSORFLOW
            )
        ]
    for backend, ((got, report),) in run_verification_jobs(jobs, source).items():
        named = [
            {name: outputs[index] for index, name in enumerate(endpoint.output_names) if index < len(outputs)}
            for outputs in got
        ]
        verdict = judge_outputs(
            references, named, tolerance, source, f"the .keras file on Keras 3's {backend} backend", suspects
        )
        errors[backend] = verdict.errors
        if report.get("training") is not None:
            step = report["training"]
            if not step.get("ran") and "died" in step.get("reason", ""):
                logger.warning("%s: the Keras 3 training step was not checked: %s", source, step["reason"])
            if step.get("ran") and not (step["finite"] and step["changed"] > 0):
                raise ExportVerificationError(
                    f"{source}: the exported model does not train in Keras 3: one SGD step changed {step['changed']} of "
                    f"{step['trainable_weights']} trainable weights, finite: {step['finite']}; nothing was written"
                )
    rows = sum(len(batch[0]) for batch in references.batches[""] if batch)
    return errors, skipped, step, rows, references.float64_unavailable


@dataclasses.dataclass
class KerasVerificationJob:
    """One ``.keras`` file for the verification worker: its input batches and how to load it."""

    model_path: str
    batches: list[list[np.ndarray]]
    load_with: dict[str, Any]
    train: bool = False


def run_verification_jobs(
    jobs_by_backend: Mapping[str, Sequence[KerasVerificationJob]], source: str
) -> dict[str, list[tuple[list[np.ndarray], dict[str, Any]]]]:
    """Load and run each job's file in a fresh Keras 3 process per backend, the processes side by side.

    Returns:
        Per backend, per job: (per batch, its outputs in the model's order; the worker's report).

    Raises:
        ExportVerificationError: a process failed (the message holds the end of its error output), or a
            forbidden module (tf1infer, tf_keras) was imported there.
    """
    with tempfile.TemporaryDirectory(prefix="tf1infer-keras3-verify-") as scratch:
        specs: dict[str, list[dict[str, Any]]] = {}
        running = {}
        for backend, jobs in jobs_by_backend.items():
            specs[backend] = []
            for index, job in enumerate(jobs):
                inputs_path = os.path.join(scratch, f"{backend}-inputs{index}.npz")
                np.savez(
                    inputs_path,
                    **{  # type: ignore[arg-type]  # numpy's stub reads ** as its own keywords
                        f"{batch}/{position}": storable(array)
                        for batch, arrays in enumerate(job.batches)
                        for position, array in enumerate(arrays)
                    },
                )
                specs[backend].append(
                    {
                        "model": job.model_path,
                        "inputs": inputs_path,
                        "outputs": os.path.join(scratch, f"{backend}-outputs{index}.npz"),
                        "safe_mode": job.load_with["safe_mode"],
                        "references": job.load_with["custom_objects"],
                        "train": job.train,
                        "training": os.path.join(scratch, f"{backend}-training{index}.json"),
                    }
                )
            jobs_path = os.path.join(scratch, f"{backend}-jobs.json")
            with open(jobs_path, "w", encoding="utf-8") as handle:
                json.dump(specs[backend], handle)
            running[backend] = _start_worker(backend, jobs_path)
        failures = {}
        for backend, process in running.items():
            _, stderr = process.communicate()
            if process.returncode == 0:
                continue
            tail = "\n".join(stderr.strip().splitlines()[-8:])
            if backend == TENSORFLOW and _only_training_died(specs[backend]):
                _retry_training_on_other_kernels(specs[backend], scratch, process.returncode, tail)
            else:
                failures[backend] = (process.returncode, tail)
        if failures:
            backend, (status, tail) = next(iter(failures.items()))
            raise ExportVerificationError(
                f"{source}: the .keras file does not load or run in a fresh Keras 3 process on the {backend} backend "
                f"(exit status {status}):\n{tail}"
            )
        results: dict[str, list[tuple[list[np.ndarray], dict[str, Any]]]] = {}
        for backend, backend_specs in specs.items():
            results[backend] = []
            for spec in backend_specs:
                with np.load(spec["outputs"], allow_pickle=False) as stored:
                    report = json.loads(str(stored["__report__"]))
                    keys = [key.split("/") for key in stored.files if key != "__report__"]
                    outputs: list = [
                        [
                            stored[f"{batch}/{index}"]
                            for index in range(1 + max(int(i) for b, i in keys if b == str(batch)))
                        ]
                        for batch in range(1 + max(int(b) for b, _ in keys))
                    ]
                if report["forbidden_modules"]:
                    raise ExportVerificationError(
                        f"{source}: loading the .keras file imported {report['forbidden_modules']}"
                    )
                report["training"] = _training_result(spec)
                results[backend].append((outputs, report))
    return results


def _only_training_died(specs: list[dict[str, Any]]) -> bool:
    """Whether every job's outputs were written and the process died in a training step."""
    return all(os.path.exists(spec["outputs"]) for spec in specs) and any(
        spec["train"] and not os.path.exists(spec["training"]) for spec in specs
    )


def _retry_training_on_other_kernels(specs: list[dict[str, Any]], scratch: str, status: int, tail: str) -> None:
    """Take the training steps that killed TensorFlow's process again on its other CPU kernel family.

    The outputs were verified before the step; what died is TensorFlow itself
    (on this machine's AVX-512 CPU, TF 2.21's oneDNN kernels abort with "free():
    invalid pointer" training the corpus mini-Xception, under tf_keras on the
    original file as under Keras 3 on the export). The result, or the reason it
    still failed, goes in the job's training record.
    """
    from tf1infer.runtime.kernels import onednn_enabled

    flipped = "0" if onednn_enabled() else "1"
    pending = [spec for spec in specs if spec["train"] and not os.path.exists(spec["training"])]
    first = f"TensorFlow's process died in the step (exit status {status}: {tail.splitlines()[-1] if tail else 'no message'})"
    retry = [{**spec, "train_only": True} for spec in pending]
    jobs_path = os.path.join(scratch, "tensorflow-training-retry.json")
    with open(jobs_path, "w", encoding="utf-8") as handle:
        json.dump(retry, handle)
    process = _start_worker(TENSORFLOW, jobs_path, {"TF_ENABLE_ONEDNN_OPTS": flipped})
    _, stderr = process.communicate()
    family = "oneDNN" if flipped == "1" else "TensorFlow's plain (Eigen)"
    for spec in pending:
        note = {"first_attempt": first, "kernels": f"{family} kernels (TF_ENABLE_ONEDNN_OPTS={flipped})"}
        if os.path.exists(spec["training"]):
            with open(spec["training"], encoding="utf-8") as handle:
                record = {**json.load(handle), **note}
        else:
            last = stderr.strip().splitlines()[-1] if stderr.strip() else f"exit status {process.returncode}"
            record = {"ran": False, "reason": f"{first}; again on {family} kernels: {last}"}
        with open(spec["training"], "w", encoding="utf-8") as handle:
            json.dump(record, handle)


def _training_result(spec: dict[str, Any]) -> dict[str, Any] | None:
    if not spec["train"]:
        return None
    with open(spec["training"], encoding="utf-8") as handle:
        return json.load(handle)


def _start_worker(backend: str, jobs_path: str, extra_env: Mapping[str, str] | None = None) -> subprocess.Popen:
    worker = os.path.join(os.path.dirname(os.path.abspath(__file__)), "keras3_worker.py")
    env = {
        **os.environ,
        "KERAS_BACKEND": backend,
        "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
        **(extra_env or {}),
    }
    if backend == JAX:
        env.setdefault("JAX_PLATFORMS", "cpu")
    # -I: the worker's folder is not put on sys.path, so tf1infer cannot be imported by accident.
    return subprocess.Popen(
        [sys.executable, "-I", worker, jobs_path], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
    )


__all__ = [
    "KerasExportReport",
    "available_backends",
    "export_keras",
    "keras3_available",
    "keras3_export_summary",
    "run_verification_jobs",
]
