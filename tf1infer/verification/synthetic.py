"""Valid synthetic inputs for a model: what its graph accepts, read from the graph.

tf1infer runs a model on made-up inputs in several places: the export's
verification, the TF Lite backend's check at load, ``precision_report``,
``batch_size="auto"``'s probe, the one-row padding probe and the benchmark.
Plain random numbers are not valid for every input. An input that indexes an
embedding table (Keras ``Embedding``, ``tf.nn.embedding_lookup``, ``tf.one_hot``)
must hold whole numbers below the table's size, even where it is declared
float32 and cast, as Keras 2 text models usually are; a serialized
``tf.Example`` input must carry the features its parser requires.

:func:`input_constraints` reads both from the graph when a
:class:`~tf1infer.io.feeds.TensorSpec` is made, with the value an input is masked
at (Keras ``Embedding(mask_zero=True)``, ``Masking``), and :func:`random_array`
draws rows that satisfy them. This is the one place such inputs are made.

Random rows prove little about real data: they never hold a padding id inside a
sequence, the first or last id of a table, or a photograph's value range, which
is where conversions differ (a masked step that carries its state in one
runtime and not in another). :func:`verification_batches` adds such rows to
every check tf1infer makes of a converted model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

# Integer inputs that index nothing the graph shows are drawn from [1, MAX_RANDOM_ID).
MAX_RANDOM_ID = 8
# Ops whose output holds the same values as their first input (for this purpose).
_PASS_THROUGH = {"Identity", "Cast", "StopGradient", "Reshape", "ExpandDims", "Squeeze", "Floor", "Round", "Snapshot"}
# Ops that use input 1 as row indices into input 0 along axis 0.
_GATHERS = {"Gather", "GatherV2", "ResourceGather"}
_PARSERS = {"ParseExample", "ParseExampleV2"}
_MAX_DEPTH = 6
# Ops comparing an input with a scalar: how Keras computes a mask (Embedding(mask_zero=True): inputs != 0;
# Masking(mask_value): any(inputs != mask_value, axis=-1)).
_MASK_COMPARISONS = {"NotEqual", "Equal"}


@dataclasses.dataclass(frozen=True)
class InputConstraints:
    """What a graph input's consumers say about its valid and meaningful values.

    Attributes:
        index_limit: the input (directly or through Cast, Identity, Reshape...)
            indexes a table of that many rows: valid values are whole numbers in
            ``[0, index_limit)``. The smallest table wins where it indexes several.
        example_features: the input is parsed as serialized ``tf.Example``
            protos; a tuple of ``(key, numpy dtype, shape)`` for each dense feature.
        mask_value: the input is compared with this scalar to compute a mask
            (a padding id, a ``Masking`` layer's ``mask_value``): steps holding
            it are skipped by the layers that follow.
    """

    index_limit: int | None = None
    example_features: tuple | None = None
    mask_value: float | None = None


def input_constraints(tensor: tf.Tensor) -> InputConstraints:
    """The :class:`InputConstraints` of a graph input, read from the ops that consume it."""
    limits: list[int] = []
    features: list[tuple[str, np.dtype, tuple[int, ...]]] = []
    masks: list[float] = []
    for op, index in _consumers_through_pass_through(tensor):
        if op.type in _GATHERS and index == 1 and _gathers_rows(op):
            rows = _leading_dimension(op.inputs[0])
            if rows:
                limits.append(rows)
        elif op.type == "OneHot" and index == 0:
            depth = _constant(op.inputs[1])
            if depth is not None and np.ndim(depth) == 0 and int(depth) > 0:
                limits.append(int(depth))
        elif op.type in _PARSERS and index == 0:
            features.extend(_dense_features(op))
        elif op.type in _MASK_COMPARISONS and len(op.inputs) == 2:
            value = _constant(op.inputs[1 - index])
            if value is not None and np.size(value) == 1 and np.asarray(value).dtype.kind in "biuf":
                masks.append(float(np.asarray(value).reshape(())))
    return InputConstraints(
        index_limit=min(limits) if limits else None,
        example_features=tuple(features) if features else None,
        mask_value=masks[0] if masks else None,
    )


def random_array(spec, rows: int, rng: np.random.Generator) -> np.ndarray:
    """``rows`` random rows valid for ``spec`` (never all zeros).

    Floats are standard normal; integers are ids in ``[1, MAX_RANDOM_ID)``; an
    input with an ``index_limit`` gets whole numbers in ``[1, index_limit)`` (0
    is left out: it is the padding id of ``mask_zero`` embeddings), in its own
    dtype, float or integer; serialized ``tf.Example`` inputs get protos holding
    every dense feature their parser reads (empty protos where it reads none).
    An unknown dimension is 5; an unknown rank a vector.
    """
    shape = [rows] if spec.shape is None else [rows] + [dim if dim is not None else 5 for dim in spec.shape[1:]]
    index_limit = getattr(spec, "index_limit", None)
    if spec.dtype == object:
        return _examples(getattr(spec, "example_features", None), shape, rng)
    if spec.dtype == bool:
        return rng.integers(0, 2, shape).astype(bool)
    if index_limit is not None:
        return rng.integers(min(1, index_limit - 1), index_limit, shape).astype(spec.dtype)
    if spec.dtype.kind in "iu":
        return rng.integers(1, MAX_RANDOM_ID, shape).astype(spec.dtype)
    return rng.normal(0.0, 1.0, shape).astype(spec.dtype)


def synthetic_inputs(specs: Sequence, rows: int, rng: np.random.Generator) -> list[np.ndarray]:
    """:func:`random_array` for each input, in order."""
    return [random_array(spec, rows, rng) for spec in specs]


def _consumers_through_pass_through(tensor: tf.Tensor) -> Iterable[tuple[Any, int]]:
    """``(op, input index)`` for every op reading ``tensor``'s values, looking through pass-through ops."""
    seen: set[str] = set()
    frontier = [(tensor, 0)]
    while frontier:
        current, depth = frontier.pop()
        if current.name in seen or depth > _MAX_DEPTH:
            continue
        seen.add(current.name)
        for op in current.consumers():
            for index, operand in enumerate(op.inputs):
                if operand is not current:
                    continue
                yield op, index
                if op.type in _PASS_THROUGH and index == 0:
                    frontier.extend((output, depth + 1) for output in op.outputs)


def _gathers_rows(op) -> bool:
    if op.type != "GatherV2":
        return True
    axis = _constant(op.inputs[2])
    return axis is not None and np.ndim(axis) == 0 and int(axis) == 0


def _leading_dimension(params: tf.Tensor) -> int | None:
    """Rows of a gather's table: its static shape, or the shape its variable was created with."""
    if params.shape.rank and params.shape[0] is not None:
        return int(params.shape[0])
    source = params.op
    for _ in range(_MAX_DEPTH):
        if source.type in ("VarHandleOp", "VariableV2", "Variable"):
            shape = tf.TensorShape(source.get_attr("shape"))
            return int(shape[0]) if shape.rank and shape[0] is not None else None
        if source.type not in ("Identity", "ReadVariableOp", "Enter") or not source.inputs:
            return None
        source = source.inputs[0].op
    return None


def _constant(tensor: tf.Tensor) -> np.ndarray | None:
    op = tensor.op
    while op.type == "Identity" and op.inputs:
        op = op.inputs[0].op
    if op.type != "Const":
        return None
    return tf.make_ndarray(op.get_attr("value"))


def _dense_features(op) -> list[tuple[str, np.dtype, tuple[int, ...]]]:
    """The dense features a ParseExample / ParseExampleV2 op reads: key, dtype and shape of each."""
    try:
        types = [np.dtype(tf.as_dtype(t).as_numpy_dtype) for t in op.get_attr("Tdense")]
        shapes = [
            tuple(max(1, d) if d is not None else 1 for d in tf.TensorShape(s).as_list())
            for s in op.get_attr("dense_shapes")
        ]
        keys: list[Any]
        if op.type == "ParseExampleV2":
            dense_keys = _constant(op.inputs[3])  # serialized, names, sparse_keys, dense_keys, ...
            keys = [] if dense_keys is None else list(np.reshape(dense_keys, [-1]))
        else:
            count = op.get_attr("Nsparse")
            keys = [_constant(op.inputs[2 + count + i]) for i in range(op.get_attr("Ndense"))]
    except (ValueError, TypeError, IndexError):
        return []
    features = []
    for key, dtype, shape in zip(keys, types, shapes):
        if key is None:
            return []
        name = key.item() if isinstance(key, np.ndarray) else key
        features.append((name.decode() if isinstance(name, bytes) else str(name), dtype, shape))
    return features


def _examples(features: tuple | None, shape: list[int], rng: np.random.Generator) -> np.ndarray:
    """Serialized tf.Example protos, each holding random values for every dense feature."""
    count = int(np.prod(shape))
    protos = []
    for _ in range(count):
        example = tf.train.Example()
        for key, dtype, feature_shape in features or ():
            size = int(np.prod(feature_shape))
            feature = example.features.feature[key]
            if dtype.kind == "f":
                feature.float_list.value.extend(rng.normal(0.0, 1.0, size).astype("float32").tolist())
            elif dtype.kind in "iu":
                feature.int64_list.value.extend(rng.integers(1, MAX_RANDOM_ID, size).tolist())
            else:
                feature.bytes_list.value.extend([b"x"] * size)
        protos.append(example.SerializeToString())
    return np.array(protos, dtype=object).reshape(shape)


# -- verification rows -----------------------------------------------------------------------------------------
# Lengths a free (sequence) axis takes in verification batches: random_array's 5, which probes use, and another.
VERIFICATION_LENGTHS = (12, 5)
_RANDOM_ROWS = 8


def verification_batches(
    specs: Sequence,
    rng: np.random.Generator,
    random_rows: int = _RANDOM_ROWS,
    lengths: Sequence[int] = VERIFICATION_LENGTHS,
) -> list[list[np.ndarray]]:
    """Seeded batches that exercise what real data exercises, for checking a converted model against its source.

    Each batch holds ``random_rows`` rows of :func:`random_array`, then rows
    built on purpose:

    - for each input compared with a mask value (``Embedding(mask_zero=True)``,
      ``Masking``): trailing padding (half the steps, and all but the first),
      leading padding (all but the last step, as Keras's ``pad_sequences``
      pads by default), the mask value at one step inside the sequence, and at
      several; the rows of :func:`random_array` hold no mask value;
    - for each input indexing a table: its first and last ids (0 and
      ``index_limit - 1``), mixed through the row;
    - for float inputs shaped like images (rank 4, 1, 3 or 4 channels first or
      last): a row in ``[0, 255]`` and one in ``[0, 1]``, the ranges of
      photographs as models were fed them.

    Where an input has a free axis besides the batch (a sequence length),
    there is a batch per entry of ``lengths``; otherwise one. A fixed batch
    size cuts the rows into batches of that size (the last filled up with
    random rows).
    """
    free = any(spec.shape is not None and None in spec.shape[1:] for spec in specs)
    batches = []
    for length in lengths if free else lengths[:1]:
        sized = [_with_free_axes(spec, length) for spec in specs]
        columns = [[random_array(spec, random_rows, rng)] for spec in sized]
        for position, spec in enumerate(sized):
            for row in _special_rows(spec, rng):
                for other, column in enumerate(columns):
                    column.append(row if other == position else random_array(sized[other], 1, rng))
        arrays = [np.concatenate(column) for column in columns]
        batches.extend(_fixed_batches(arrays, sized, rng))
    return batches


def _with_free_axes(spec, length: int):
    if spec.shape is None or None not in spec.shape[1:]:
        return spec
    return dataclasses.replace(spec, shape=(spec.shape[0], *(length if dim is None else dim for dim in spec.shape[1:])))


def _special_rows(spec, rng: np.random.Generator) -> list[np.ndarray]:
    """One-row arrays for ``spec`` holding the values its consumers treat specially."""
    if spec.dtype == object or spec.dtype == bool or spec.shape is None:
        return []
    rows = []
    mask_value = getattr(spec, "mask_value", None)
    if mask_value is not None and len(spec.shape) >= 2 and spec.shape[1]:
        steps = spec.shape[1]
        patterns: list[Sequence[int]] = [range(max(1, steps // 2), steps), range(1, steps), range(0, steps - 1)]
        if steps >= 3:
            patterns.append([steps // 2])
            patterns.append(sorted({1, steps // 2, steps - 2}))
        for masked in patterns:
            row = random_array(spec, 1, rng)
            row[0, list(masked)] = np.asarray(mask_value).astype(spec.dtype)
            rows.append(row)
    limit = getattr(spec, "index_limit", None)
    if limit:
        row = random_array(spec, 1, rng)
        ends = np.where(np.arange(row.size).reshape(row.shape) % 2 == 0, 0, limit - 1).astype(spec.dtype)
        if mask_value is not None:
            ends[..., 0] = row[..., 0]  # Keep a real first step: a row of only padding is not what this row tests.
        rows.append(ends)
    if spec.dtype.kind == "f" and len(spec.shape) == 4 and (spec.shape[-1] in (1, 3, 4) or spec.shape[1] in (1, 3, 4)):
        shape = [1, *spec.shape[1:]]
        rows.append(rng.uniform(0.0, 255.0, shape).astype(spec.dtype))
        rows.append(rng.uniform(0.0, 1.0, shape).astype(spec.dtype))
    return rows


def _fixed_batches(arrays: list[np.ndarray], specs: Sequence, rng: np.random.Generator) -> list[list[np.ndarray]]:
    batch = next((spec.shape[0] for spec in specs if spec.shape and spec.shape[0] is not None), None)
    if batch is None or not arrays:
        return [arrays]
    rows = len(arrays[0])
    missing = -rows % batch
    if missing:
        arrays = [np.concatenate([array, random_array(spec, missing, rng)]) for array, spec in zip(arrays, specs)]
    return [[array[start : start + batch] for array in arrays] for start in range(0, rows + missing, batch)]


__all__ = [
    "InputConstraints",
    "MAX_RANDOM_ID",
    "VERIFICATION_LENGTHS",
    "input_constraints",
    "random_array",
    "synthetic_inputs",
    "verification_batches",
]
