"""Turning what a caller passes to ``predict`` into the arrays ``sess.run`` feeds.

All validation of inputs happens here, once per call and before TensorFlow
runs: the arrangement of several inputs (list in input order, or dict by name),
conversion to numpy, dtype casts that cannot lose information, rank and fixed
dimensions. Errors are :class:`~tf1infer.errors.InputError` naming the input,
what it expects and what it was given.

The common case (one input, a C-contiguous array of the right dtype and shape)
takes a short path with a handful of attribute checks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tensorflow as tf

from tf1infer.errors import InputError, UnsupportedOperationError

_KIND_NAMES = {
    "f": "floats",
    "i": "integers",
    "u": "unsigned integers",
    "b": "booleans",
    "U": "strings",
    "S": "bytes",
    "O": "Python objects",
    "c": "complex numbers",
    "M": "datetimes",
    "m": "timedeltas",
    "V": "raw records",
}


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape and dtype of one model input or output.

    Attributes:
        name: the graph tensor name, e.g. ``"input_1:0"``.
        shape: one entry per axis, ``None`` where the size is not fixed (the
            batch axis, unless the graph fixes it: the Predictor then runs any
            number of rows in runs of that size); ``None`` for the whole shape
            when even the rank is unknown.
        dtype: the numpy dtype (``object`` for TensorFlow strings).
        index_limit: for an input that indexes a table (an ``Embedding``, an
            ``embedding_lookup``, ``one_hot``), directly or through a cast: the
            table's size. Valid values are whole numbers in ``[0, index_limit)``.
            ``None`` where the graph shows no such use.
        example_features: for serialized ``tf.Example`` inputs: ``(key, dtype,
            shape)`` of each dense feature the model's parser reads.
        mask_value: for an input a mask is computed from (``Embedding(mask_zero=True)``:
            0; ``Masking``: its ``mask_value``): steps holding it are skipped.

    ``index_limit``, ``example_features`` and ``mask_value`` are read from the
    graph (:mod:`tf1infer.verification.synthetic`) and do not take part in comparisons.
    """

    name: str
    shape: tuple[int | None, ...] | None
    dtype: np.dtype
    index_limit: int | None = field(default=None, compare=False)
    example_features: tuple | None = field(default=None, compare=False, repr=False)
    mask_value: float | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_tensor(cls, tensor: tf.Tensor) -> TensorSpec:
        from tf1infer.verification.synthetic import input_constraints

        shape = tensor.shape
        dims = None if shape.rank is None else tuple(shape.as_list())
        found = input_constraints(tensor)
        return cls(
            tensor.name,
            dims,
            np.dtype(tensor.dtype.as_numpy_dtype),
            found.index_limit,
            found.example_features,
            found.mask_value,
        )

    def __str__(self) -> str:
        shape = "unknown shape" if self.shape is None else str(self.shape)
        return f"{self.name} {shape} {self.dtype}"


def kind_name(dtype: np.dtype) -> str:
    return _KIND_NAMES.get(dtype.kind, str(dtype))


def is_string_dtype(dtype: np.dtype) -> bool:
    return dtype.kind in "OSU"


class FeedConverter:
    """Validates and converts predict inputs for one model's input tensors.

    Args:
        specs: the model's inputs, in order.
        names: the user-facing name of each input (Keras layer name or
            signature key); dict keys may use these or the tensor names.
        unavailable: why the model cannot be fed at all (a training graph loaded for ``run()`` by name only):
            every conversion raises :class:`UnsupportedOperationError` with it.
    """

    def __init__(self, specs: Sequence[TensorSpec], names: Sequence[str], unavailable: str | None = None):
        self.unavailable = unavailable
        self.specs = tuple(specs)
        self.names = tuple(names)
        self._single = len(self.specs) == 1
        self._lookup: dict[str, int] = {}
        for index, (spec, name) in enumerate(zip(self.specs, self.names)):
            for key in (name, spec.name, spec.name.split(":")[0]):
                self._lookup.setdefault(key, index)
        self._ranks = tuple(None if spec.shape is None else len(spec.shape) for spec in self.specs)
        self._fixed = tuple(
            ()
            if spec.shape is None
            else tuple((axis, size) for axis, size in enumerate(spec.shape) if axis and size is not None)
            for spec in self.specs
        )

    def convert(self, x: Any) -> list[np.ndarray]:
        """Arrays ready to feed, one per input, cast and contiguous."""
        return [self.finish(index, array) for index, array in enumerate(self.prepare(x))]

    def prepare(self, x: Any) -> list[np.ndarray]:
        """Arrange and check ``x`` without copying its data.

        Shapes and dtype compatibility are checked for the whole input here,
        so a batched run fails before its first batch; casts wait for
        :meth:`finish`, one batch at a time, to keep memory low.
        """
        arrays = [self._as_array(index, value) for index, value in enumerate(self._arrange(x))]
        for index, array in enumerate(arrays):
            arrays[index] = self._check_shape(index, array)
            self._check_castable(index, array)
        if len(arrays) > 1:
            counts = {self.names[i]: a.shape[0] if a.ndim else None for i, a in enumerate(arrays)}
            if len(set(counts.values())) > 1:
                listed = ", ".join(f"'{name}': {count}" for name, count in counts.items())
                raise InputError(f"inputs have different numbers of samples: {listed}")
        return arrays

    def finish(self, index: int, array: np.ndarray) -> np.ndarray:
        """Cast to the input's dtype (checking values where a cast could lose them) and make contiguous."""
        spec = self.specs[index]
        if array.dtype != spec.dtype:
            array = self._cast(index, array)
        if not array.flags.c_contiguous:
            array = np.ascontiguousarray(array)
        return array

    def fast_convert(self, x: Any) -> list[np.ndarray]:
        """:meth:`convert`, with a short path for one well-formed array."""
        if self._single and type(x) is np.ndarray:
            spec = self.specs[0]
            rank = self._ranks[0]
            if x.dtype == spec.dtype and x.flags.c_contiguous and (rank is None or x.ndim == rank):
                shape = x.shape
                for axis, size in self._fixed[0]:
                    if shape[axis] != size:
                        break
                else:
                    return [x]
        return self.convert(x)

    # -- arrangement --------------------------------------------------------

    def arrange(self, x: Any) -> list[Any]:
        """``x`` as one value per input, in input order (from a list, a dict by name, or one array)."""
        return self._arrange(x)

    def _arrange(self, x: Any) -> list[Any]:
        if self.unavailable is not None:
            raise UnsupportedOperationError(self.unavailable)
        count = len(self.specs)
        if isinstance(x, Mapping):
            return self._from_mapping(x)
        if isinstance(x, (list, tuple)) and not self._single:
            if len(x) != count:
                raise InputError(
                    f"model requires {count} inputs ({self._listed_names()}); got a {type(x).__name__} of {len(x)}"
                )
            return list(x)
        if self._single:
            if isinstance(x, (list, tuple)) and x and all(_is_array_like(item) for item in x):
                if len(x) == 1:
                    return [x[0]]
                raise InputError(
                    f"model requires 1 input ({self._listed_names()}); got a {type(x).__name__} of {len(x)} arrays"
                )
            return [x]
        raise InputError(
            f"model requires {count} inputs ({self._listed_names()}): pass a list in that order or a dict "
            f"keyed by name; got {type(x).__name__}"
        )

    def _from_mapping(self, x: Mapping) -> list[Any]:
        values: list[Any] = [None] * len(self.specs)
        seen = [False] * len(self.specs)
        for key, value in x.items():
            index = self._lookup.get(key)
            if index is None:
                raise InputError(f"unknown input name {key!r}; the model's inputs are {self._listed_names()}")
            if seen[index]:
                raise InputError(f"input '{self.names[index]}' given twice (as {key!r} and under another name)")
            values[index], seen[index] = value, True
        missing = [self.names[i] for i, present in enumerate(seen) if not present]
        if missing:
            raise InputError(f"missing input(s) {', '.join(missing)}; the model's inputs are {self._listed_names()}")
        return values

    def _listed_names(self) -> str:
        return ", ".join(f"'{name}'" for name in self.names)

    # -- per-input checks ---------------------------------------------------

    def _as_array(self, index: int, value: Any) -> np.ndarray:
        if isinstance(value, np.ndarray):
            return value
        spec = self.specs[index]
        if value is None:
            raise InputError(f"input '{self.names[index]}' is None; expected an array {self._expected(index)}")
        try:
            if is_string_dtype(spec.dtype):
                return np.asarray(value, dtype=object)
            return np.asarray(value)
        except (ValueError, TypeError) as exc:
            raise InputError(
                f"input '{self.names[index]}' could not be converted to an array {self._expected(index)}: {exc}"
            ) from exc

    def _check_shape(self, index: int, array: np.ndarray) -> np.ndarray:
        rank = self._ranks[index]
        if rank is None:
            return array
        given = array.shape
        if array.ndim != rank:
            if array.ndim == 1 and rank == 2:
                # Keras expands 1-D data for a 2-D input (one feature per sample).
                array = array[:, np.newaxis]
            else:
                raise InputError(
                    f"input '{self.names[index]}' expects rank-{rank} arrays {self._expected(index)}; "
                    f"got shape {given}{self._one_sample_hint(index, given)}"
                )
        for axis, size in self._fixed[index]:
            if array.shape[axis] != size:
                raise InputError(
                    f"input '{self.names[index]}' expects size {size} on axis {axis} {self._expected(index)}; "
                    f"got shape {given}{self._one_sample_hint(index, given)}"
                )
        return array

    def _one_sample_hint(self, index: int, given: tuple) -> str:
        shape = self.specs[index].shape
        if (
            shape is not None
            and len(given) == len(shape) - 1
            and all(want is None or want == got for want, got in zip(shape[1:], given))
        ):
            return " (a single sample? add the batch axis: x[np.newaxis])"
        return ""

    def _check_castable(self, index: int, array: np.ndarray) -> None:
        source, target = array.dtype, self.specs[index].dtype
        if source == target or _cast_kinds_allowed(source, target):
            return
        raise InputError(
            f"input '{self.names[index]}' expects {target} values {self._expected(index)}; "
            f"got {source} ({kind_name(source)})"
        )

    def _cast(self, index: int, array: np.ndarray) -> np.ndarray:
        target = self.specs[index].dtype
        source = array.dtype
        if not _cast_kinds_allowed(source, target):
            self._check_castable(index, array)
        if target.kind in "iu" and source.kind in "fiu" and array.size:
            if source.kind == "f":
                finite = np.isfinite(array)
                if not finite.all() or not np.array_equal(array, np.floor(array)):
                    raise InputError(
                        f"input '{self.names[index]}' expects {target} values; got {source} values that are "
                        "not whole numbers (ids must be integers)"
                    )
            info = np.iinfo(target)
            low, high = array.min(), array.max()
            if low < info.min or high > info.max:
                raise InputError(
                    f"input '{self.names[index]}' expects {target} values; got values from {low} to {high}, "
                    f"outside {target}'s range"
                )
        if is_string_dtype(target):
            return array.astype(object) if source.kind != "O" else array
        return array.astype(target)

    def _expected(self, index: int) -> str:
        spec = self.specs[index]
        shape = "of any shape" if spec.shape is None else f"of shape {spec.shape}"
        return f"({shape}, {spec.dtype})"


def _cast_kinds_allowed(source: np.dtype, target: np.dtype) -> bool:
    """Whether values of ``source`` may be fed to a ``target`` input (after value checks)."""
    if target.kind == "f":
        return source.kind in "fiub"
    if target.kind in "iu":
        return source.kind in "fiub"
    if target.kind == "b":
        return source.kind == "b"
    if is_string_dtype(target):
        return source.kind in "OSU"
    return source == target


def _is_array_like(value: Any) -> bool:
    return isinstance(value, (np.ndarray, tf.Tensor)) or hasattr(value, "__array__")
