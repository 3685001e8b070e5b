"""The runtimes ``load(..., backend=...)`` can choose, by name."""

from __future__ import annotations

from typing import Any

from tf1infer.errors import InvalidOptionError

SESSION, TFLITE, AUTO = "session", "tflite", "auto"
BACKENDS = (SESSION, TFLITE, AUTO)


def check_backend(backend: Any) -> str:
    if backend not in BACKENDS:
        raise InvalidOptionError(f"backend must be one of {', '.join(map(repr, BACKENDS))}; got {backend!r}")
    return backend
