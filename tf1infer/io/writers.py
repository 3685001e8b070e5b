"""Writing predictions to a file as they are computed (:meth:`Predictor.predict_to`).

Two formats, picked by the file's extension:

- ``.npy``: the one output of a single-output model. When the source's length
  is known (arrays, HDF5 datasets) the file is a preallocated memory map
  filled batch by batch; otherwise rows are appended to the file and the
  header, which reserves room for any row count, is rewritten at the end.
- ``.h5`` / ``.hdf5``: one chunked, resizable dataset per output, named after
  the output, plus ``keys`` (an image's path per row) and ``labels`` (class
  index per row, with ``class_names`` in the attributes) when the source has
  them, and ``skipped`` (``[key, reason]`` rows) for inputs that could not be
  read.

Either way the file is written under a temporary name (``<path>.partial``) and
renamed to ``path`` only when every row is in, so a file at ``path`` is always
complete. An ``.h5`` run that stops early (an exception, Ctrl-C, a killed
process) keeps its ``.partial`` file: its attributes record the rows written and
the source position they reach, updated after each batch is flushed, and
``resume=True`` truncates any rows past that record, skips the inputs already
done and carries on, so the finished file is the one an uninterrupted run
writes.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from tf1infer.errors import InvalidOptionError, OutputFileError
from tf1infer.io.streaming import Chunk, Reader

if TYPE_CHECKING:  # The summary records the runtime's choice; writing a file needs nothing from the runtime.
    from tf1infer.runtime.memory import BatchSizeChoice

logger = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".partial"
RESERVED_NAMES = ("keys", "labels", "skipped")
_H5_EXTENSIONS = (".h5", ".hdf5")
_LISTED_SKIPS = 20
_NPY_HEADER_BYTES = 256  # Room for any shape: the header is rewritten in place at the end.


@dataclass
class PredictionSummary:
    """What :meth:`Predictor.predict_to` wrote.

    Attributes:
        path: the finished file.
        rows: rows written (one per input sample read).
        batch_size: rows per run (``None`` when the source's own batches ran).
        batch_size_choice: how ``batch_size="auto"`` chose, else ``None``.
        skipped: ``(key, reason)`` of inputs that could not be read.
        resumed_at: rows that were already in the partial file, for a resumed run.
        seconds: wall time of the run.
    """

    path: str
    rows: int
    batch_size: int | None
    batch_size_choice: BatchSizeChoice | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)
    resumed_at: int = 0
    seconds: float = 0.0

    def __str__(self) -> str:
        size = (
            str(self.batch_size_choice)
            if self.batch_size_choice
            else (f"batch size {self.batch_size}" if self.batch_size else "the source's batches")
        )
        lines = [f"wrote {self.rows} rows to {self.path} in {self.seconds:.2f} s ({size})"]
        if self.resumed_at:
            lines[0] += f", resuming after row {self.resumed_at}"
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)} unreadable input(s):")
            lines.extend(f"  {key}: {reason}" for key, reason in self.skipped[:_LISTED_SKIPS])
            if len(self.skipped) > _LISTED_SKIPS:
                lines.append(f"  ... and {len(self.skipped) - _LISTED_SKIPS} more (all in the .h5 output's 'skipped')")
        return "\n".join(lines)


def output_format(path: str) -> str:
    extension = os.path.splitext(path)[1].lower()
    if extension == ".npy":
        return "npy"
    if extension in _H5_EXTENSIONS:
        return "h5"
    raise InvalidOptionError(f"{path}: cannot tell the output format; use a .npy or .h5 file name")


def open_writer(path: str | os.PathLike, output_names: Sequence[str], reader: Reader, model: str, resume: bool):
    path = os.fspath(path)
    kind = output_format(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise OutputFileError(f"{path}: the folder {folder} does not exist")
    if kind == "npy":
        if resume:
            raise InvalidOptionError(f"{path}: resume=True needs an .h5 output, which records how far it got")
        if len(output_names) != 1:
            raise InvalidOptionError(
                f"{path}: a .npy file holds one array and the model has {len(output_names)} outputs "
                f"({', '.join(output_names)}); write an .h5 file instead"
            )
        return NpyWriter(path, reader)
    return H5Writer(path, output_names, reader, model, resume)


class NpyWriter:
    """One output to ``.npy``: a preallocated memory map when the length is known, appended otherwise."""

    def __init__(self, path: str, reader: Reader):
        self.path = path
        self.partial = path + PARTIAL_SUFFIX
        self._length = None if reader.yields_batches else reader.length
        self._rows = 0
        self._memmap: np.memmap | None = None
        self._file: Any = None  # Open while appending rows of unknown count.
        self._row_shape: Any = None  # A tuple and a dtype from the first batch on; None until it came.
        self._dtype: Any = None

    def start(self) -> int:
        return 0

    def write(self, chunk: Chunk, outputs: list[np.ndarray]) -> None:
        output = outputs[0]
        if self._row_shape is None:
            self._create(output)
        _check_rows(self.path, "output", output, self._row_shape, self._dtype)
        rows = output.shape[0]
        if self._memmap is not None:
            if self._rows + rows > self._length:
                raise OutputFileError(f"{self.path}: the source gave more than the {self._length} rows it announced")
            self._memmap[self._rows : self._rows + rows] = output
        else:
            self._file.write(np.ascontiguousarray(output, dtype=self._dtype).tobytes())
        self._rows += rows

    def finish(self) -> int:
        if self._row_shape is None:
            raise OutputFileError(f"{self.path}: the source gave no rows; nothing written")
        if self._memmap is not None:
            if self._rows != self._length:
                raise OutputFileError(f"{self.path}: expected {self._length} rows, the source gave {self._rows}")
            self._memmap.flush()
            self._memmap = None
        else:
            self._file.seek(0)
            self._file.write(_npy_header(self._dtype, (self._rows,) + self._row_shape))
            self._file.close()
            self._file = None
        os.replace(self.partial, self.path)
        return self._rows

    def abort(self) -> None:
        """A .npy run cannot be resumed: its partial file is removed."""
        self._memmap = None
        if self._file is not None:
            self._file.close()
            self._file = None
        if os.path.exists(self.partial):
            os.remove(self.partial)

    def _create(self, output: np.ndarray) -> None:
        if output.dtype == object:
            raise OutputFileError(f"{self.path}: the model outputs strings, which .npy cannot hold; write an .h5 file")
        self._row_shape, self._dtype = tuple(output.shape[1:]), output.dtype
        if self._length is not None:
            self._memmap = np.lib.format.open_memmap(
                self.partial, mode="w+", dtype=self._dtype, shape=(self._length,) + self._row_shape
            )
        else:
            self._file = open(self.partial, "wb")
            self._file.write(_npy_header(self._dtype, (0,) + self._row_shape))


def _npy_header(dtype: np.dtype, shape: tuple) -> bytes:
    """A version 1.0 .npy header padded to a fixed size, so that it can be rewritten in place."""
    header = repr({"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape})
    text = header.encode("latin1")
    padding = _NPY_HEADER_BYTES - 10 - len(text) - 1
    if padding < 0:
        raise OutputFileError(f"an output of shape {shape} needs a longer .npy header than tf1infer reserves")
    return b"\x93NUMPY\x01\x00" + (_NPY_HEADER_BYTES - 10).to_bytes(2, "little") + text + b" " * padding + b"\n"


class H5Writer:
    """Outputs, keys, labels and skipped inputs to ``.h5``, resumable after an interruption."""

    def __init__(self, path: str, output_names: Sequence[str], reader: Reader, model: str, resume: bool):
        self.path = path
        self.partial = path + PARTIAL_SUFFIX
        self._names = list(output_names)
        clashes = sorted(set(self._names) & set(RESERVED_NAMES))
        if clashes:
            raise OutputFileError(
                f"{path}: the model has output(s) named {', '.join(clashes)}, which .h5 output reserves for "
                "input keys, labels and skipped inputs"
            )
        self._reader = reader
        self._identity = {
            "model": model,
            "outputs": json.dumps(self._names),
            "source": reader.describe(),
            "source_length": -1 if reader.length is None else int(reader.length),
        }
        self._resume = resume
        self._file: Any = None  # h5py.File, open from start() to finish() or abort().
        self.rows = 0
        self.position = 0
        self.skipped_count = 0

    def start(self) -> int:
        """Open the partial file; returns the source position to start reading at."""
        if self._resume and os.path.exists(self.partial):
            self._reopen()
        else:
            if self._resume:
                if os.path.exists(self.path):
                    raise OutputFileError(f"{self.path}: nothing to resume, the file is complete; run without resume")
                logger.info("%s: no partial file to resume from; starting from the beginning", self.partial)
            self._file = h5py.File(self.partial, "w")
            for key, value in self._identity.items():
                self._file.attrs[key] = value
            self._file.attrs["complete"] = False
            self._commit()
        return self.position

    def write(self, chunk: Chunk, outputs: list[np.ndarray]) -> None:
        file, rows, count = self._file, self.rows, chunk.rows
        for name, output in zip(self._names, outputs):
            dataset = file.get(name)
            if dataset is None:
                dataset = file.create_dataset(
                    name,
                    shape=(0,) + output.shape[1:],
                    maxshape=(None,) + output.shape[1:],
                    dtype=h5py.string_dtype("ascii") if output.dtype == object else output.dtype,
                    chunks=True,
                )
            _check_rows(
                self.path,
                f"output '{name}'",
                output,
                dataset.shape[1:],
                None if output.dtype == object else dataset.dtype,
            )
            _append(dataset, rows, output)
        if self._reader.has_keys:
            _append(self._column("keys", h5py.string_dtype("utf-8")), rows, np.asarray(chunk.keys, dtype=object))
        if self._reader.has_labels:
            labels = self._column("labels", np.int64)
            if "class_names" not in file.attrs:
                file.attrs["class_names"] = json.dumps(self._reader.class_names or [])
            _append(labels, rows, np.asarray(chunk.labels, dtype=np.int64))
        if chunk.skipped:
            if "skipped" not in file:
                file.create_dataset(
                    "skipped", shape=(0, 2), maxshape=(None, 2), dtype=h5py.string_dtype("utf-8"), chunks=True
                )
            _append(file["skipped"], self.skipped_count, np.asarray(chunk.skipped, dtype=object))
            self.skipped_count += len(chunk.skipped)
        self.rows += count
        self.position = chunk.position
        self._commit()

    @property
    def skipped(self) -> list[tuple[str, str]]:
        """Inputs skipped so far, those of an interrupted run included."""
        if self._file is None or "skipped" not in self._file:
            return []
        return [(key.decode(), reason.decode()) for key, reason in self._file["skipped"][:]]

    def finish(self) -> int:
        if self.rows == 0:
            self.abort(keep=False)
            raise OutputFileError(f"{self.path}: the source gave no rows; nothing written")
        self._file.attrs["complete"] = True
        self._file.close()
        self._file = None
        os.replace(self.partial, self.path)
        return self.rows

    def abort(self, keep: bool = True) -> None:
        """Close after a failure; the partial file stays for ``resume=True`` unless ``keep`` is False."""
        if self._file is not None:
            try:
                self._file.close()
            finally:
                self._file = None
        if keep and os.path.exists(self.partial):
            logger.warning(
                "%s: %d rows kept in %s; run again with resume=True to continue", self.path, self.rows, self.partial
            )
        elif os.path.exists(self.partial):
            os.remove(self.partial)

    # -- internals --------------------------------------------------------

    def _commit(self) -> None:
        """Record progress after the rows are written, then flush: a crash before this redoes the batch."""
        self._file.flush()
        self._file.attrs["rows"] = self.rows
        self._file.attrs["position"] = self.position
        self._file.attrs["skipped_count"] = self.skipped_count
        self._file.flush()

    def _column(self, name: str, dtype: Any) -> h5py.Dataset:
        if name in self._file:
            return self._file[name]
        return self._file.create_dataset(name, shape=(0,), maxshape=(None,), dtype=dtype, chunks=True)

    def _reopen(self) -> None:
        try:
            self._file = h5py.File(self.partial, "r+")
        except OSError as exc:
            raise OutputFileError(
                f"{self.partial}: cannot resume, the partial file is damaged ({exc}); delete it and run again"
            ) from exc
        attrs = self._file.attrs
        for key, want in self._identity.items():
            have = attrs.get(key)
            have = have.item() if isinstance(have, np.generic) else have
            if have != want:
                self._file.close()
                self._file = None
                raise OutputFileError(
                    f"{self.partial}: cannot resume: it was written with {key} {have!r}, this run has {want!r}; "
                    "delete it or run without resume"
                )
        self.rows, self.position = int(attrs["rows"]), int(attrs["position"])
        self.skipped_count = int(attrs["skipped_count"])
        # Rows past the last commit belong to a batch that did not finish: it runs again.
        for name in list(self._names) + ["keys", "labels"]:
            if name in self._file and self._file[name].shape[0] != self.rows:
                self._file[name].resize(self.rows, axis=0)
        if "skipped" in self._file and self._file["skipped"].shape[0] != self.skipped_count:
            self._file["skipped"].resize(self.skipped_count, axis=0)
        logger.info("%s: resuming after %d rows (source position %d)", self.path, self.rows, self.position)


def _append(dataset: h5py.Dataset, rows: int, values: np.ndarray) -> None:
    dataset.resize(rows + len(values), axis=0)
    dataset[rows:] = values


def _check_rows(path: str, what: str, output: np.ndarray, row_shape: tuple, dtype: np.dtype | None) -> None:
    if tuple(output.shape[1:]) != tuple(row_shape):
        raise OutputFileError(
            f"{path}: {what} has rows of shape {tuple(output.shape[1:])} in this batch and {tuple(row_shape)} before; "
            "a file needs one row shape (give inputs of one shape)"
        )
    if dtype is not None and output.dtype != dtype:
        raise OutputFileError(f"{path}: {what} changed dtype from {dtype} to {output.dtype} between batches")


def run_to_file(writer, batches, total: int | None, verbose: int, summary: PredictionSummary) -> PredictionSummary:
    """Write every ``(chunk, outputs)`` of ``batches`` with ``writer``; the partial file is kept or removed on failure."""
    from tf1infer.io.batching import progress

    started = time.perf_counter()
    summary.skipped.extend(getattr(writer, "skipped", []))
    try:
        with progress(total, verbose, unit="sample") as bar:
            if summary.resumed_at:
                bar.update(summary.resumed_at)
            for chunk, outputs in batches:
                for key, reason in chunk.skipped:
                    logger.warning("skipped %s: %s", key, reason)
                    summary.skipped.append((key, reason))
                writer.write(chunk, outputs)
                bar.update(chunk.rows)
        summary.rows = writer.finish()
    except BaseException:
        writer.abort()
        raise
    summary.seconds = time.perf_counter() - started
    return summary
