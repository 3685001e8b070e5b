"""Lambda functions written so that a fresh Keras 3 process can run them, whatever globals they read.

Keras 3 stores a Python lambda as the marshalled bytecode of its code object,
with its defaults and closure but without the globals it reads: the training
script's ``tf``, ``K``, ``np`` or a helper function are missing where the file is
loaded, and the first call fails with ``NameError: name 'tf' is not defined``.
Passing ``custom_objects={"tf": tf}`` at load does not help: Keras 3 runs the
bytecode with the globals of its own ``python_utils`` module.

:func:`portable_function` makes a function that carries what it reads:

- modules by name, imported where the function runs (Keras 2's backend,
  ``tf_keras.backend``, as ``keras._tf_keras.keras.backend``: the legacy
  backend functions Keras 3 keeps for TensorFlow);
- helper functions, each carried the same way (recursively);
- numbers, strings, tuples, lists, dicts and numpy arrays, as values.

What it returns is a lambda (so that Keras 3 stores its bytecode and it loads
with ``safe_mode=False``, as any Lambda's bytecode does) whose body rebuilds the
original function from a marshalled description with those globals and calls
it. Anything else a function reads (an object, a class, a module that cannot
be imported by name) is refused with the global named. Bytecode is specific to
the Python minor version that wrote it, like every Keras 3 Lambda file.
"""

from __future__ import annotations

import base64
import dataclasses
import dis
import marshal
import types
from collections.abc import Callable
from typing import Any

import numpy as np

# Modules whose name differs where the exported file is loaded: tf_keras (Keras 2) is not there; Keras 3 keeps
# Keras 2's backend functions (resize_images, l2_normalize, ...) for its TensorFlow backend under this name.
_MODULE_RENAMES = {
    "tf_keras.backend": "keras._tf_keras.keras.backend",
    "tf_keras.src.backend": "keras._tf_keras.keras.backend",
}
_GLOBAL_READS = {"LOAD_GLOBAL", "LOAD_NAME"}
_LITERALS = (type(None), bool, int, float, complex, str, bytes)


class NotPortable(Exception):
    """A global a function reads that cannot be carried into another process; the message names it."""


@dataclasses.dataclass(frozen=True)
class Portable:
    """A supplied function rewritten to carry its globals.

    Attributes:
        function: the lambda to hand to Keras 3's ``Lambda`` layer.
        globals_read: the global (and closure) names read, by the function and its helpers.
    """

    function: Callable[..., Any]
    globals_read: tuple[str, ...]


def globals_read(function: Callable[..., Any]) -> dict[str, Any]:
    """The globals ``function`` reads (its nested code included), by name, with their values; builtins left out."""
    names: list[str] = []
    codes = [function.__code__]
    while codes:
        code = codes.pop()
        for instruction in dis.get_instructions(code):
            if instruction.opname in _GLOBAL_READS and isinstance(instruction.argval, str):
                names.append(instruction.argval)
        codes.extend(const for const in code.co_consts if isinstance(const, types.CodeType))
    scope = getattr(function, "__globals__", {})
    return {name: scope[name] for name in dict.fromkeys(names) if name in scope}


def reads_tensorflow(function: Callable[..., Any]) -> bool:
    """Whether ``function`` (or a helper it calls) reads TensorFlow or Keras 2's backend: its ops run on TensorFlow only."""
    seen: set[int] = set()
    pending = [function]
    while pending:
        current = pending.pop()
        if id(current) in seen or not isinstance(current, types.FunctionType):
            continue
        seen.add(id(current))
        values = [*globals_read(current).values(), *(cell.cell_contents for cell in current.__closure__ or ())]
        for value in values:
            name = (
                getattr(value, "__name__", "")
                if isinstance(value, types.ModuleType)
                else getattr(value, "__module__", "") or ""
            )
            if isinstance(value, types.FunctionType):
                pending.append(value)
            elif name.split(".")[0] in ("tensorflow", "tf_keras") or name.startswith("keras._tf_keras"):
                return True
    return False


def needs_carrying(function: Callable[..., Any]) -> bool:
    """Whether ``function`` reads globals or closes over variables (so its bytecode alone does not run elsewhere)."""
    return bool(getattr(function, "__closure__", None)) or bool(globals_read(function))


def portable_function(function: Callable[..., Any], layer: str) -> Portable:
    """``function`` as a lambda that rebuilds it, with what it reads, wherever it is called.

    Raises:
        NotPortable: a global it reads cannot be carried (the message names the layer and the global).
    """
    names: list[str] = []
    description = _describe_function(function, layer, names, depth=0)
    payload = base64.b64encode(marshal.dumps((_BUILDER.__code__, description))).decode("ascii")
    source = (
        "lambda *args, **kwargs: (lambda build, description: build(description, build))"
        "(*(lambda builder, description: (__import__('types').FunctionType(builder, {'__builtins__': __builtins__}), "
        f"description))(*__import__('marshal').loads(__import__('base64').b64decode('{payload}'))))(*args, **kwargs)"
    )
    carried = eval(compile(source, f"<tf1infer Lambda {layer}>", "eval"), {"__builtins__": __builtins__})  # noqa: S307 - our own source.
    return Portable(carried, tuple(dict.fromkeys(names)))


def _describe_function(function: Any, layer: str, names: list[str], depth: int) -> tuple:
    if depth > 8:
        raise NotPortable(f"Lambda layer {layer!r}: its function's helpers call each other more than 8 deep")
    code = function.__code__
    read = globals_read(function)
    names.extend(read)
    described_globals = {name: _describe(value, layer, name, names, depth) for name, value in read.items()}
    defaults = tuple(
        _describe(v, layer, f"a default of {function.__name__}", names, depth) for v in function.__defaults__ or ()
    )
    names.extend(code.co_freevars)
    closure = tuple(
        _describe(cell.cell_contents, layer, f"{function.__name__}'s closure variable {free!r}", names, depth)
        for free, cell in zip(code.co_freevars, function.__closure__ or ())
    )
    return ("function", code, function.__name__, described_globals, defaults, closure)


def _describe(value: Any, layer: str, name: str, names: list[str], depth: int) -> tuple:
    if isinstance(value, types.ModuleType):
        module = _MODULE_RENAMES.get(value.__name__, value.__name__)
        if module == "__main__" or module.split(".")[0] in ("tf_keras", "tf1infer"):
            raise NotPortable(
                f"Lambda layer {layer!r}: its function reads the global {name!r}, the module {value.__name__}, which "
                "a Keras 3 process does not have; use tensorflow, numpy or keras.ops there instead"
            )
        return ("module", module)
    if isinstance(value, types.FunctionType):
        return _describe_function(value, layer, names, depth + 1)
    if isinstance(value, types.BuiltinFunctionType) and getattr(value, "__module__", None):
        module = _MODULE_RENAMES.get(value.__module__, value.__module__)
        return ("attribute", module, value.__name__)
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        return ("array", value.dtype.str, value.shape, value.tobytes())
    if isinstance(value, np.generic) and value.dtype.kind in "biuf":
        return ("array", value.dtype.str, (), value.tobytes())
    if isinstance(value, _LITERALS):
        return ("value", value)
    if isinstance(value, (tuple, list)):
        return (type(value).__name__, tuple(_describe(item, layer, name, names, depth) for item in value))
    if isinstance(value, dict) and all(isinstance(key, _LITERALS) for key in value):
        return ("dict", tuple((key, _describe(item, layer, name, names, depth)) for key, item in value.items()))
    raise NotPortable(
        f"Lambda layer {layer!r}: its function reads the global {name!r} ({type(value).__module__}.{type(value).__qualname__}), "
        "which cannot be written into the exported file; pass a function that reads only modules, functions, numbers, "
        "strings and arrays, a named function in an importable module (stored by reference), or a Keras 3 layer that "
        "replaces the Lambda (lambdas={...: keras.layers....})"
    )


def _BUILDER(description, build):  # noqa: N802 - a code object carried into the file; runs where it is loaded.
    """Rebuild a described value in the loading process, where it runs with builtins only (it imports what it
    needs; ``build`` is itself, for the nested values)."""
    kind = description[0]
    if kind == "function":
        import types

        _, code, name, described_globals, defaults, closure = description
        scope = {"__builtins__": __builtins__}
        function = types.FunctionType(
            code,
            scope,
            name,
            tuple(build(item, build) for item in defaults) or None,
            tuple(types.CellType(build(item, build)) for item in closure) or None,
        )
        scope.update({key: build(item, build) for key, item in described_globals.items()})
        return function
    if kind == "module":
        import importlib

        return importlib.import_module(description[1])
    if kind == "attribute":
        import importlib

        return getattr(importlib.import_module(description[1]), description[2])
    if kind == "array":
        import numpy

        return numpy.frombuffer(description[3], dtype=description[1]).reshape(description[2]).copy()
    if kind == "value":
        return description[1]
    if kind in ("tuple", "list"):
        items = [build(item, build) for item in description[1]]
        return tuple(items) if kind == "tuple" else items
    if kind == "dict":
        return {key: build(item, build) for key, item in description[1]}
    raise ValueError(f"unknown description {kind!r}")


__all__ = ["NotPortable", "Portable", "globals_read", "needs_carrying", "portable_function", "reads_tensorflow"]
