"""Checks on an HDF5 file from a stranger, made before h5py (libhdf5) trusts it.

libhdf5 assumes its files are well formed. Two kinds of damage make it misbehave
instead of failing:

* **A global heap that never ends.** Variable-length strings (Keras's
  ``model_config``, ``keras_version``...) live in "global heap collections"
  (signature ``GCOL``). libhdf5 walks a collection object by object, advancing
  by each object's recorded size; object 0 (the free space) advances by its
  size alone, so a zeroed or forged object 0 of size 0 makes the walk stand
  still forever (``H5HG__cache_heap_deserialize``, holding the GIL). A 4 KiB
  block of zeros over a collection is enough. :func:`check_global_heaps` walks
  every collection in the file the way libhdf5 does, in Python, and refuses
  one that would loop, before h5py reads any attribute.
* **Types and sizes no Keras file has.** A flipped bit can turn a
  variable-length string into a variable-length sequence, which h5py reads out
  of bounds (a segmentation fault); a dataset's header can declare any shape,
  and reading it allocates that much first. :func:`check_structure` refuses
  both from the declared types and shapes alone, before any value is read.

Every failure is a :class:`~tf1infer.errors.ModelLoadError` naming the file.
"""

from __future__ import annotations

import mmap
import os
import struct

import h5py
import numpy as np

from tf1infer.errors import ModelLoadError

_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_COLLECTION = b"GCOL"
_ALIGNMENT = 8  # H5HG_ALIGNMENT
# gzip's and shuffle+gzip's best case is about 1032:1; no filter HDF5 ships expands further.
_MAX_COMPRESSION_RATIO = 1100
# Errors h5py raises for a damaged file: OSError (most), KeyError and RuntimeError ("bad symbol table node
# signature", "bad heap free list"), ValueError and TypeError (a damaged datatype or dataspace).
H5PY_ERRORS = (OSError, KeyError, RuntimeError, ValueError, TypeError)


def check_global_heaps(path: str, contents: bytes | None = None) -> None:
    """Refuse a file with a global heap collection that libhdf5 would walk forever.

    Looks at every ``GCOL`` signature in the file (a collection libhdf5 can be
    sent to must carry one) and repeats libhdf5's walk over its objects.
    ``contents``: the file's bytes, where it is not on disk (a member of a
    ``.keras`` archive); ``path`` then only names it in the message.
    """
    if contents is not None:
        _check_collections(path, contents)
        return
    if os.path.getsize(path) == 0:
        return
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        _check_collections(path, data)


def _check_collections(path: str, data) -> None:
    size_of_lengths = _size_of_lengths(data)
    # Real files hold a few collections with a few objects each; a forged one full of overlapping
    # collections would make this walk quadratic, so the steps are bounded by the file's size.
    budget = [len(data) // 8 + 4096]
    start = data.find(_COLLECTION)
    while start >= 0:
        objects: dict[int, int] = {}
        problem = _walk_collection(data, start, size_of_lengths, budget, objects)
        if problem:
            raise ModelLoadError(
                f"{path}: the HDF5 file is corrupt: the global heap at byte {start} {problem} "
                "(libhdf5 would loop forever reading it); the file is damaged or was forged"
            )
        problem = _oversized_reference(data, start, objects)
        if problem:
            raise ModelLoadError(
                f"{path}: the HDF5 file is corrupt: {problem} (libhdf5 would allocate that before failing); "
                "the file is damaged or was forged"
            )
        start = data.find(_COLLECTION, start + 1)


def _oversized_reference(data, collection: int, objects: dict[int, int]) -> str | None:
    """A variable-length value that claims more elements than its heap object holds bytes, or None.

    A variable-length value is stored as (element count: 4 bytes, collection
    address: 8, object index: 4); libhdf5 allocates the count's worth of memory
    before it compares it with the object, so a damaged count (up to 2**32)
    becomes a huge allocation. A genuine count is never larger than the
    object's size in bytes. Only this collection's address followed by one of
    its object indices is taken as a reference: nothing else in an HDF5 file
    points at a global heap collection.
    """
    if not objects:
        return None
    address = collection.to_bytes(8, "little")
    at = data.find(address)
    while at >= 0:
        if at >= 4 and at + 12 <= len(data):
            index = int.from_bytes(data[at + 8 : at + 12], "little")
            if index in objects:
                count = int.from_bytes(data[at - 4 : at], "little")
                if count > objects[index]:
                    return (
                        f"the variable-length value at byte {at - 4} claims {count:,} elements of a "
                        f"{objects[index]}-byte heap object"
                    )
        at = data.find(address, at + 1)
    return None


def _size_of_lengths(data) -> int:
    """The superblock's "size of lengths" (8 in every file h5py and Keras write)."""
    offset = data.find(_SIGNATURE, 0, 1 << 16)
    if offset < 0:
        return 8
    version_at = offset + len(_SIGNATURE)
    version = data[version_at] if version_at < len(data) else 0
    # Superblock 0/1: version, free-space, root-group, reserved, shared-header versions, size of offsets, lengths.
    # Superblock 2/3: version, size of offsets, size of lengths.
    at = version_at + (6 if version in (0, 1) else 2)
    value = data[at] if at < len(data) else 8
    return value if value in (2, 4, 8, 16) else 8


def _walk_collection(data, start: int, size_of_lengths: int, budget: list[int], objects: dict[int, int]) -> str | None:
    """Why libhdf5's walk of the collection at ``start`` would not end, or None; fills ``objects`` {index: size}."""
    header = 8 + size_of_lengths  # "GCOL", version, 3 reserved bytes, collection size.
    if start + header > len(data) or data[start + 4] != 1:
        return None  # Not a collection libhdf5 would accept (it checks the version first).
    collection_size = int.from_bytes(data[start + 8 : start + header], "little")
    end = start + collection_size
    if collection_size < header or end > len(data):
        return None  # libhdf5 refuses it with an error (or reads past the end and fails).
    object_header = 8 + size_of_lengths  # index (2), reference count (2), reserved (4), size.
    position = start + header
    while position < end:
        if position + object_header > end:
            return None  # The tail is free space too small for a header: the walk ends.
        index = struct.unpack_from("<H", data, position)[0]
        object_size = int.from_bytes(data[position + 8 : position + object_header], "little")
        if index > 0:
            objects[index] = object_size
            step = object_header + (object_size + _ALIGNMENT - 1) // _ALIGNMENT * _ALIGNMENT
        else:
            step = object_size
        if step == 0:
            return f"has a free-space object of size 0 at byte {position}"
        budget[0] -= 1
        if budget[0] < 0:
            return "is one of more heap objects than a file of this size can hold"
        position += step
    return None


def check_structure(handle: h5py.File, path: str) -> None:
    """Refuse attributes and datasets whose declared type or size no Keras file has, before any value is read.

    * An attribute or dataset of a variable-length *sequence* or reference type:
      Keras writes text, numbers and arrays of them, never these, and reading a
      damaged one crashes h5py (a flipped bit turns a variable-length string
      into a sequence of bytes that h5py reads out of bounds).
    * A dataset declaring more bytes than the file holds (uncompressed) or than
      any compression could expand to: reading it would allocate that first.
    """
    file_size = os.path.getsize(path)
    problems: list[str] = []

    def check(name: str, item) -> None:
        if problems:
            return
        for key in item.attrs.keys():
            kind = _pointer_type(item.attrs.get_id(key).get_type())
            if kind:
                problems.append(f"attribute {key!r} of '{item.name}' has a {kind} type")
                return
        if not isinstance(item, h5py.Dataset):
            return
        kind = _pointer_type(item.id.get_type())
        if kind:
            problems.append(f"dataset '{item.name}' has a {kind} type")
            return
        declared = (
            int(np.prod(item.shape, dtype=np.float64) * item.dtype.itemsize) if item.shape else item.dtype.itemsize
        )
        limit = file_size * (_MAX_COMPRESSION_RATIO if item.compression else 1)
        if declared > max(limit, 1 << 16):
            problems.append(
                f"dataset '{item.name}' declares shape {item.shape} of {item.dtype} ({declared:,} bytes) "
                f"in a file of {file_size:,} bytes"
            )

    try:
        check("/", handle)
        handle.visititems(check)
    except H5PY_ERRORS as exc:
        raise ModelLoadError(
            f"{path}: cannot read the HDF5 structure (the file is truncated or corrupt): {type(exc).__name__}: {exc}"
        ) from exc
    if problems:
        raise ModelLoadError(f"{path}: the HDF5 file is corrupt or forged: {problems[0]}; refusing to read it")


def _pointer_type(type_id) -> str | None:
    """'variable-length sequence' or 'reference' for those types (not variable-length strings), else None."""
    if isinstance(type_id, h5py.h5t.TypeVlenID):
        return "variable-length sequence"
    if isinstance(type_id, h5py.h5t.TypeReferenceID):
        return "reference"
    if isinstance(type_id, (h5py.h5t.TypeArrayID, h5py.h5t.TypeCompoundID)):
        members = (
            [type_id.get_super()]
            if isinstance(type_id, h5py.h5t.TypeArrayID)
            else [type_id.get_member_type(i) for i in range(type_id.get_nmembers())]
        )
        return next((kind for kind in map(_pointer_type, members) if kind), None)
    return None


__all__ = ["H5PY_ERRORS", "check_global_heaps", "check_structure"]
