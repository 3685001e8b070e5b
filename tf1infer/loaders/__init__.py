"""One loader per legacy format, each returning a :class:`LoadedGraph`.

:func:`load_graph` picks the loader from the path (or ``format=``) and checks
the options against what that loader accepts, so a misspelt option fails with
the list of valid ones instead of being ignored.
"""

from __future__ import annotations

import glob
import inspect
import os
from collections.abc import Callable
from typing import Any

from tf1infer.errors import InvalidOptionError, ModelLoadError
from tf1infer.loaders import keras_h5, keras_v3
from tf1infer.loaders.base import LoadedGraph, require_path
from tf1infer.loaders.frozen_graph import FORMAT as FROZEN_GRAPH
from tf1infer.loaders.frozen_graph import load_frozen_graph
from tf1infer.loaders.keras_h5 import FORMAT as KERAS_H5
from tf1infer.loaders.keras_h5 import load_keras_h5, load_keras_json, looks_like_hdf5
from tf1infer.loaders.keras_v3 import FORMAT as KERAS_V3
from tf1infer.loaders.keras_v3 import load_keras_v3, looks_like_keras_v3
from tf1infer.loaders.meta_graph import FORMAT as META_GRAPH
from tf1infer.loaders.meta_graph import load_meta_graph
from tf1infer.loaders.saved_model import FORMAT as SAVED_MODEL
from tf1infer.loaders.saved_model import is_saved_model_dir, load_saved_model

KERAS_JSON = "keras-json"

LOADERS: dict[str, Callable[..., LoadedGraph]] = {
    KERAS_H5: load_keras_h5,
    KERAS_JSON: load_keras_json,
    KERAS_V3: load_keras_v3,
    SAVED_MODEL: load_saved_model,
    META_GRAPH: load_meta_graph,
    FROZEN_GRAPH: load_frozen_graph,
}

_EXTENSIONS = {
    ".h5": KERAS_H5,
    ".hdf5": KERAS_H5,
    ".json": KERAS_JSON,
    ".keras": KERAS_V3,
    ".meta": META_GRAPH,
    ".pb": FROZEN_GRAPH,
    ".pbtxt": FROZEN_GRAPH,
}


def detect_format(path: str | os.PathLike) -> str:
    """The format name of the model at ``path`` (a key of ``LOADERS``), from its contents and name.

    Raises:
        ModelNotFoundError: ``path`` does not exist.
        ModelLoadError: the format is not recognised.
    """
    path = require_path(path)
    if os.path.isdir(path):
        if is_saved_model_dir(path):
            return SAVED_MODEL
        if glob.glob(os.path.join(path, "*.meta")):
            return META_GRAPH
        raise ModelLoadError(
            f"{path}: a directory that is neither a SavedModel (no saved_model.pb or saved_model.pbtxt) "
            f"nor a checkpoint folder (no .meta file); it holds: {sorted(os.listdir(path))[:10]}"
        )
    if looks_like_hdf5(path):
        return KERAS_H5
    if looks_like_keras_v3(path):
        return KERAS_V3
    if os.path.basename(path) in ("saved_model.pb", "saved_model.pbtxt"):
        return SAVED_MODEL
    extension = os.path.splitext(path)[1].lower()
    if extension in _EXTENSIONS:
        return _EXTENSIONS[extension]  # Its loader explains what is wrong with the file.
    raise ModelLoadError(
        f"{path}: cannot tell the model format of this file; supported formats: "
        f"{', '.join(sorted(LOADERS))} (force one with format=...)"
    )


def load_graph(path: str | os.PathLike, format: str | None = None, **options: Any) -> LoadedGraph:
    """Load ``path`` with the loader for its format; see each loader for ``options``."""
    if format is None:
        format = detect_format(path)
    loader = LOADERS.get(format)
    if loader is None:
        raise ModelLoadError(f"{os.fspath(path)}: unknown format {format!r}; supported: {', '.join(sorted(LOADERS))}")
    accepted = _keyword_options(loader)
    unexpected = sorted(set(options) - set(accepted))
    if unexpected:
        raise InvalidOptionError(
            f"load() got option(s) {', '.join(unexpected)} that the {format} loader does not take; "
            f"it takes: {', '.join(accepted)}"
        )
    return loader(path, **options)


def describe_without_loading(
    path: str | os.PathLike, format: str | None = None, **options: Any
) -> dict[str, Any] | None:
    """What a Keras file records, without building it (None for graph formats, which must be loaded)."""
    format = format or detect_format(path)
    if format == KERAS_H5:
        return keras_h5.describe_file(path, architecture=options.get("architecture"))
    if format == KERAS_JSON:
        return keras_h5.describe_file(options["weights"], architecture=path) if options.get("weights") else None
    if format == KERAS_V3:
        return keras_v3.describe_file(path)
    return None


def _keyword_options(loader: Callable) -> list[str]:
    return [
        name
        for name, parameter in inspect.signature(loader).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    ]


__all__ = ["LOADERS", "LoadedGraph", "describe_without_loading", "detect_format", "load_graph"]
