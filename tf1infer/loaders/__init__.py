"""One loader per legacy format, each returning a :class:`LoadedGraph`.

:func:`load_graph` picks the loader from the path (or ``format=``) and checks
the options against what that loader accepts, so a misspelt option fails with
the list of valid ones instead of being ignored.
"""

from __future__ import annotations

import inspect
import os
from typing import Any, Callable

from tf1infer.errors import ModelLoadError
from tf1infer.loaders.base import LoadedGraph, require_path
from tf1infer.loaders.keras_h5 import FORMAT as KERAS_H5, load_keras_h5, looks_like_hdf5

LOADERS: dict[str, Callable[..., LoadedGraph]] = {
    KERAS_H5: load_keras_h5,
}

_EXTENSIONS = {".h5": KERAS_H5, ".hdf5": KERAS_H5, ".keras_h5": KERAS_H5}


def detect_format(path: str | os.PathLike) -> str:
    """The format name of the model at ``path`` (a key of ``LOADERS``).

    Raises:
        ModelNotFoundError: ``path`` does not exist.
        ModelLoadError: the format is not recognised.
    """
    path = require_path(path)
    if looks_like_hdf5(path):
        return KERAS_H5
    extension = os.path.splitext(path)[1].lower()
    if extension in _EXTENSIONS:
        return _EXTENSIONS[extension]  # Its loader explains what is wrong with the file.
    kind = "directory" if os.path.isdir(path) else "file"
    raise ModelLoadError(
        f"{path}: cannot tell the model format of this {kind}; supported formats: "
        f"{', '.join(sorted(LOADERS))} (force one with format=...)"
    )


def load_graph(path: str | os.PathLike, format: str | None = None, **options: Any) -> LoadedGraph:
    """Load ``path`` with the loader for its format; see each loader for ``options``."""
    if format is None:
        format = detect_format(path)
    loader = LOADERS.get(format)
    if loader is None:
        raise ModelLoadError(f"{os.fspath(path)}: unknown format {format!r}; supported: {', '.join(sorted(LOADERS))}")
    accepted = [
        name
        for name, parameter in inspect.signature(loader).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    unexpected = sorted(set(options) - set(accepted))
    if unexpected:
        raise TypeError(
            f"load() got option(s) {', '.join(unexpected)} that the {format} loader does not take; "
            f"it takes: {', '.join(accepted)}"
        )
    return loader(path, **options)


__all__ = ["LOADERS", "LoadedGraph", "detect_format", "load_graph"]
