"""What a Keras ``Lambda`` layer's stored bytecode computes, recovered without running it.

The instructions :mod:`lambda_bytecode` reads are evaluated symbolically: a
stack of expression nodes instead of values, one straight-line pass, no
jumps, no loops. The result is an expression over the function's parameters,
its constants and the modules Keras code used (``K``/``keras.backend``, ``tf``,
``np``, ``math``): for example ``x / 255.0 - 0.5`` or
``K.resize_images(x, 2, 2, 'channels_last')``.

An expression is accepted only if every function it calls, every attribute it
reads and every global it names is on the whitelist below: arithmetic and
comparisons, subscripts and slices, and pure tensor functions of TensorFlow
and Keras's backend (:data:`KERAS_BACKEND`, :data:`TENSORFLOW`, ...). It is
then written out again as Python source from the whitelist's own names
(:attr:`Recovered.source`) and compiled into a function over TensorFlow
(``tf.compat.v1``, as the file's TF1 code called it) and Keras 2's backend.
Nothing read from the file becomes code: names from the file are only
compared against the whitelist, constants are written with ``repr`` of
numbers, strings and tuples, and parameter names are replaced by our own.

Anything else (a helper function the training script defined, a global
constant, ``open``, control flow, a nested function) is a :class:`NotRecovered`
with the expression as far as it was read, so that the user knows what to
pass with ``lambdas=``.
"""

from __future__ import annotations

import dataclasses
import keyword
import math
from collections.abc import Mapping, Sequence
from typing import Any

from tf1infer.loaders.lambda_bytecode import (
    BINARY_OPS_311,
    COMPARISONS,
    FAMILIES,
    BytecodeError,
    StoredCode,
    candidate_families,
    code_bytes,
    instructions,
    read_code,
)

# ---------------------------------------------------------------- the whitelist
# Keras's backend (tf_keras.backend; Keras 1 and 2 wrote these names). Pure tensor functions only: no variables,
# no updates, no learning phase, no Python callbacks.
KERAS_BACKEND = frozenset(
    """abs all any arange argmax argmin batch_dot batch_flatten bias_add cast clip concatenate constant cos cumprod
    cumsum dot dtype elu epsilon equal exp expand_dims flatten floatx gather greater greater_equal hard_sigmoid
    int_shape l2_normalize less less_equal log logsumexp max maximum mean min minimum ndim not_equal one_hot ones_like
    permute_dimensions pow prod relu repeat repeat_elements reshape resize_images resize_volumes reverse round shape
    sigmoid sign sin softmax softplus softsign spatial_2d_padding spatial_3d_padding sqrt square squeeze stack std sum
    switch tanh temporal_padding tile transpose var zeros_like""".split()
)
# TensorFlow 1.x, looked up in tf.compat.v1 (the API the training code called).
TENSORFLOW = frozenset(
    """abs add add_n argmax argmin cast ceil clip_by_value concat constant cos cumsum depth_to_space div divide equal
    exp expand_dims floor floordiv gather greater greater_equal identity less less_equal log log1p matmul maximum
    minimum multiply negative not_equal one_hot ones_like pad pow realdiv reciprocal reduce_all reduce_any reduce_max
    reduce_mean reduce_min reduce_prod reduce_sum reshape reverse round rsqrt shape sigmoid sign sin slice
    space_to_depth split sqrt square squared_difference squeeze stack strided_slice subtract tanh tile transpose
    truediv unstack where zeros_like
    image.central_crop image.crop_to_bounding_box image.flip_left_right image.flip_up_down image.grayscale_to_rgb
    image.hsv_to_rgb image.per_image_standardization image.resize image.resize_area image.resize_bicubic
    image.resize_bilinear image.resize_image_with_crop_or_pad image.resize_images image.resize_nearest_neighbor
    image.rgb_to_grayscale image.rgb_to_hsv
    math.abs math.add math.ceil math.cos math.cumsum math.divide math.exp math.floor math.l2_normalize math.log
    math.log1p math.maximum math.minimum math.multiply math.negative math.pow math.reciprocal math.reduce_max
    math.reduce_mean math.reduce_min math.reduce_prod math.reduce_sum math.round math.rsqrt math.sigmoid math.sign
    math.sin math.sqrt math.square math.subtract math.tanh math.truediv
    nn.depth_to_space nn.elu nn.l2_normalize nn.local_response_normalization nn.lrn nn.relu nn.relu6 nn.selu
    nn.sigmoid nn.softmax nn.softplus nn.softsign nn.space_to_depth nn.tanh""".split()
)
_DTYPES = frozenset("bool float16 float32 float64 int8 int16 int32 int64 uint8".split())
NUMPY = frozenset("pi e sqrt log exp abs square".split()) | _DTYPES
MATH = frozenset("pi e sqrt log exp pow floor ceil".split())
BUILTINS = frozenset("abs float int len max min round slice tuple list".split())
# Attributes of tensors (and of what they return) that only describe them.
TENSOR_ATTRIBUTES = frozenset("shape get_shape as_list ndim dtype value".split())

# The modules Keras code reached through a conventional global name (the file does not record what a global was).
_GLOBAL_MODULES = {
    "K": "keras.backend",
    "backend": "keras.backend",
    "keras": "keras",
    "tf": "tensorflow",
    "tensorflow": "tensorflow",
    "np": "numpy",
    "numpy": "numpy",
    "math": "math",
}
# Aliases of Keras's backend and TensorFlow as modules or attributes (Keras 2 exposed TensorFlow as K.tf).
_MODULE_ALIASES = {
    "tensorflow.keras.backend": "keras.backend",
    "tensorflow.python.keras.backend": "keras.backend",
    "keras.backend.tensorflow_backend": "keras.backend",
    "keras.backend.tf": "tensorflow",
    "tensorflow.compat.v1": "tf1",
}
# Keras 1's backend took dim_ordering 'tf'/'th' where Keras 2 takes data_format.
_KERAS1_ORDERING = {"tf": "channels_last", "th": "channels_first"}
# Names the executable source binds (our own, never the file's). A file's plain ``tf.X`` is TensorFlow 1's API
# (tf1) or, for a file written under TensorFlow 2 (see recover's tf2), TensorFlow 2's (tf2).
SOURCE_MODULES = {
    "K": "tf_keras.backend",
    "tf1": "tensorflow.compat.v1",
    "tf2": "tensorflow",
    "np": "numpy",
    "math": "math",
}


class NotRecovered(Exception):
    """A Lambda function that is not recovered; ``expression`` is what was read of it (or None)."""

    def __init__(self, reason: str, expression: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.expression = expression


# ---------------------------------------------------------------- expression nodes
@dataclasses.dataclass(frozen=True)
class Node:
    pass


@dataclasses.dataclass(frozen=True)
class Param(Node):
    index: int
    name: str


@dataclasses.dataclass(frozen=True)
class Const(Node):
    value: Any


@dataclasses.dataclass(frozen=True)
class Ref(Node):
    """A module or one of its members: ``path`` canonical (``keras.backend.abs``), ``shown`` as the code wrote it."""

    path: str
    shown: str


@dataclasses.dataclass(frozen=True)
class Unknown(Node):
    """A global the file does not hold (a helper function, a constant of the training script), or a variable of an
    enclosing function whose value it does not hold (``enclosing``)."""

    name: str
    enclosing: bool = False


@dataclasses.dataclass(frozen=True)
class Attr(Node):
    obj: Node
    name: str


@dataclasses.dataclass(frozen=True)
class Call(Node):
    func: Node
    args: tuple[Node, ...]
    kwargs: tuple[tuple[str, Node], ...]


@dataclasses.dataclass(frozen=True)
class BinOp(Node):
    op: str
    left: Node
    right: Node


@dataclasses.dataclass(frozen=True)
class Unary(Node):
    op: str
    operand: Node


@dataclasses.dataclass(frozen=True)
class Subscript(Node):
    obj: Node
    index: Node


@dataclasses.dataclass(frozen=True)
class SliceNode(Node):
    start: Node
    stop: Node
    step: Node


@dataclasses.dataclass(frozen=True)
class Sequence_(Node):
    kind: str  # "tuple" or "list"
    items: tuple[Node, ...]


_BINARY = {
    "BINARY_POWER": "**", "BINARY_MULTIPLY": "*", "BINARY_MATRIX_MULTIPLY": "@", "BINARY_DIVIDE": "/",
    "BINARY_TRUE_DIVIDE": "/", "BINARY_FLOOR_DIVIDE": "//", "BINARY_MODULO": "%", "BINARY_ADD": "+",
    "BINARY_SUBTRACT": "-", "BINARY_LSHIFT": "<<", "BINARY_RSHIFT": ">>", "BINARY_AND": "&", "BINARY_XOR": "^",
    "BINARY_OR": "|",
}  # fmt: skip
_UNARY = {"UNARY_NEGATIVE": "-", "UNARY_POSITIVE": "+", "UNARY_INVERT": "~", "UNARY_NOT": "not "}
_PRECEDENCE = {
    "**": 14, "u": 13, "*": 12, "@": 12, "/": 12, "//": 12, "%": 12, "+": 11, "-": 11, "<<": 10, ">>": 10, "&": 9,
    "^": 8, "|": 7, "<": 6, "<=": 6, "==": 6, "!=": 6, ">": 6, ">=": 6, "not ": 5,
}  # fmt: skip
_PY2_DIVIDE = "py2/"


@dataclasses.dataclass(frozen=True)
class Recovered:
    """A Lambda function recovered from its bytecode.

    Attributes:
        layer: the Lambda layer's name.
        expression: what it computes, as the training code wrote it (``K.abs(tensor[0] - tensor[1])``).
        python: the bytecode's Python version family (``"3.4-3.5"``, ``"2.7"``...).
        source: the same computation as Python source over :data:`SOURCE_MODULES` (``K``, ``tf``, ``np``,
            ``math``), the function :meth:`function` compiles.
    """

    layer: str
    expression: str
    python: str
    source: str
    # The expression itself (nodes of this module), for writing it in other terms (tf1infer.export.keras3_lambdas).
    tree: Any = dataclasses.field(default=None, compare=False, repr=False)

    def function(self):
        """The recovered computation as a Python function of the layer's inputs (TensorFlow ops when called)."""
        import builtins
        import importlib

        scope: dict[str, Any] = {"__builtins__": {name: getattr(builtins, name) for name in BUILTINS}}
        scope.update({name: importlib.import_module(module) for name, module in SOURCE_MODULES.items()})
        # Our own source, written from whitelisted names and repr() of constants (see module docstring).
        function = eval(compile(self.source, f"<tf1infer Lambda {self.layer}>", "eval"), scope)  # noqa: S307
        function.__name__ = f"recovered_{_identifier(self.layer)}"
        function._tf1infer_recovered = self
        return function


def recover(
    layer: str, stored: Any, arguments: Mapping[str, Any] | None = None, *, tf2: bool | None = None
) -> Recovered:
    """Recover the function of Lambda layer ``layer`` from its config's ``function`` entry.

    Args:
        layer: the layer's name, for messages.
        stored: the ``function`` entry (``[code, defaults, closure]`` or the code text).
        arguments: the layer's ``arguments`` config (keyword arguments Keras passes to the function).
        tf2: whether the file was written under TensorFlow 2, so that ``tf.X`` means TensorFlow 2's API
            (``tf.image.resize``...). None decides by the bytecode: Python 3.8 or later ran TensorFlow 2 only.

    Raises:
        NotRecovered: the bytecode cannot be read, or computes something outside the whitelist (the message
            shows the expression as far as it was read).
    """
    try:
        code = read_code(code_bytes(stored))
    except BytecodeError as exc:
        raise NotRecovered(f"its bytecode cannot be read: {exc}") from None
    defaults, closure = _defaults_and_closure(stored)
    failures: list[str] = []
    refusals: list[NotRecovered] = []
    # Where the layout fits two bytecode families, the one whose instructions decode and evaluate is the one.
    for family in candidate_families(code):
        try:
            decoded = instructions(code, family)
            if len(decoded) > _MAX_INSTRUCTIONS:
                raise NotRecovered(f"{len(decoded)} instructions; a Lambda's function this long is not evaluated")
            node, params = _evaluate(code, family, decoded, defaults, closure, dict(arguments or {}))
            shown = _render(node, params, display=True)
        except BytecodeError as exc:
            failures.append(f"as Python {FAMILIES[family]}: {exc}")
            continue
        except NotRecovered as exc:
            refusals.append(exc)
            continue
        except (TypeError, ValueError, IndexError, KeyError, AttributeError, RecursionError) as exc:
            # Bytecode no compiler wrote (damage or hostility) can put anything anywhere on the stack.
            refusals.append(NotRecovered(f"the bytecode does not evaluate ({type(exc).__name__}: damaged?)"))
            continue
        problems = _outside_whitelist(node)
        if problems:
            raise NotRecovered("; ".join(dict.fromkeys(problems)), shown)
        era = "tf2" if (tf2 if tf2 is not None else family in ("3.8", "3.9", "3.11")) else "tf1"
        missing = _missing_in(node, era)
        if missing:
            raise NotRecovered(f"{missing} is not in the TensorFlow API the file was written with", shown)
        body = _render(node, params, display=False).replace(_TF_SOURCE, era + ".")
        return Recovered(layer, shown, FAMILIES[family], f"lambda {_SOURCE_PARAM}, **arguments: {body}", node)
    if refusals:
        raise refusals[0]
    raise NotRecovered("its bytecode cannot be read: " + "; ".join(failures))


_SOURCE_PARAM = "inputs"
# Bounds on what a stored function may cost to read: real Lambdas are a few dozen instructions.
_MAX_INSTRUCTIONS = 4096
_MAX_TEXT = 20_000


def _defaults_and_closure(stored: Any) -> tuple[tuple, tuple]:
    if isinstance(stored, (list, tuple)) and len(stored) == 3:
        defaults, closure = stored[1], stored[2]
        return tuple(defaults or ()), tuple(closure or ())
    return (), ()


def _literal(value: Any) -> Node:
    """A constant of the code object (or of the layer config) as a node; code objects are refused."""
    if isinstance(value, StoredCode):
        raise NotRecovered("it defines a nested function or comprehension, which is not evaluated")
    if isinstance(value, (tuple, list)):
        return Sequence_("tuple" if isinstance(value, tuple) else "list", tuple(_literal(item) for item in value))
    if isinstance(value, frozenset):
        raise NotRecovered("it uses a set constant, which is not evaluated")
    if value is None or value is Ellipsis or isinstance(value, (bool, int, float, complex, str, bytes)):
        return Const(value)
    raise NotRecovered(f"a constant of type {type(value).__name__} is not evaluated")


# What CPython pushes below a callable that is not a bound method (3.7+'s LOAD_METHOD, 3.11's PUSH_NULL).
_NULL = object()


def _evaluate(
    code: StoredCode,
    family: str,
    decoded: Sequence[Any],
    defaults: tuple,
    closure: tuple,
    arguments: dict[str, Any],
) -> tuple[Node, tuple[str, ...]]:
    """The expression ``code`` returns, evaluated over nodes. Raises NotRecovered for what is not evaluated."""
    params = code.parameters
    if not params:
        raise NotRecovered("the function takes no argument")
    if code.has_varargs:
        raise NotRecovered("the function takes *args or **kwargs, which is not evaluated")
    local: dict[str, Node] = {params[0]: Param(0, params[0])}
    positional = code.varnames[: code.argcount]
    bound_defaults = dict(zip(positional[len(positional) - len(defaults) :], defaults)) if defaults else {}
    for name in params[1:]:
        if name in arguments:
            local[name] = _literal(arguments.pop(name))
        elif name in bound_defaults:
            local[name] = _literal(bound_defaults[name])
        else:
            raise NotRecovered(f"its parameter {name!r} has no value in the layer's arguments or defaults")
    if arguments:
        raise NotRecovered(f"the layer's arguments {sorted(arguments)} are not parameters of the function")
    cells = code.cellvars + code.freevars
    stack: list[Any] = []
    keyword_names: Any = None  # 3.11's KW_NAMES, for the next CALL.

    def pop(count: int = 1) -> list[Any]:
        if count > len(stack):
            raise NotRecovered("the bytecode pops more values than it pushed (damaged)")
        taken = stack[len(stack) - count :]
        del stack[len(stack) - count :]
        return taken

    def text() -> str | None:
        return _render(stack[-1], params, display=True) if stack and isinstance(stack[-1], Node) else None

    def index(table: tuple, arg: int | None, what: str) -> Any:
        if arg is None or not 0 <= arg < len(table):
            raise NotRecovered(f"the bytecode indexes {what} {arg} of {len(table)} (damaged)")
        return table[arg]

    for instruction in decoded:
        name, arg = instruction.opname, instruction.arg
        if name == "LOAD_FAST":
            variable = index(code.varnames, arg, "variable")
            if variable not in local:
                raise NotRecovered(f"it reads the variable {variable!r} before assigning it")
            stack.append(local[variable])
        elif name == "STORE_FAST":
            variable, value = index(code.varnames, arg, "variable"), pop()[0]
            if isinstance(value, Ref):  # `import tensorflow as tf` inside the function: shown as tf from here on.
                value = Ref(value.path, variable)
            local[variable] = value
        elif name == "LOAD_CONST":
            stack.append(_literal(index(code.consts, arg, "constant")))
        elif name in ("LOAD_GLOBAL", "LOAD_NAME"):
            if family == "3.11" and name == "LOAD_GLOBAL":
                if (arg or 0) & 1:
                    stack.append(_NULL)
                arg = (arg or 0) >> 1
            stack.append(_global(index(code.names, arg, "name")))
        elif name == "LOAD_DEREF":
            # 3.11 indexes its one table of locals, cells and free variables; before, cells then free variables.
            cell = index(code.varnames if family == "3.11" else cells, arg, "cell")
            position = code.freevars.index(cell) if cell in code.freevars else -1
            stack.append(_literal(closure[position]) if 0 <= position < len(closure) else Unknown(cell, enclosing=True))
        elif name in ("LOAD_ATTR", "IMPORT_FROM"):
            obj = stack[-1] if name == "IMPORT_FROM" else pop()[0]
            stack.append(_attribute(obj, index(code.names, arg, "name")))
        elif name == "LOAD_METHOD":
            obj = pop()[0]
            stack.extend([_NULL, _attribute(obj, index(code.names, arg, "name"))])
        elif name == "PUSH_NULL":
            stack.append(_NULL)
        elif name == "KW_NAMES":
            keyword_names = index(code.consts, arg, "constant")
        elif name in ("RESUME", "PRECALL", "MAKE_CELL", "COPY_FREE_VARS"):
            pass
        elif name == "BINARY_OP":
            left, right = pop(2)
            stack.append(BinOp(index(BINARY_OPS_311, arg, "operator"), left, right))
        elif name == "COPY":
            stack.append(index(tuple(reversed(stack)), (arg or 1) - 1, "stack entry"))
        elif name == "SWAP":
            other = -(arg or 1)
            if len(stack) < (arg or 1):
                raise NotRecovered("the bytecode swaps past the stack (damaged)")
            stack[-1], stack[other] = stack[other], stack[-1]
        elif name == "IMPORT_NAME":
            _level, fromlist = pop(2)
            module = index(code.names, arg, "name")
            wanted = fromlist.value if isinstance(fromlist, Const) else getattr(fromlist, "items", None)
            path = module if wanted else module.split(".")[0]
            stack.append(Ref(_MODULE_ALIASES.get(path, path), path))
        elif name in ("CALL_FUNCTION", "CALL_METHOD", "CALL_FUNCTION_KW", "CALL"):
            stack.append(_call(name, arg or 0, family, pop, keyword_names))
            keyword_names = None
        elif name in _BINARY:
            left, right = pop(2)
            op = _PY2_DIVIDE if name == "BINARY_DIVIDE" else _BINARY[name]
            stack.append(BinOp(op, left, right))
        elif name in _UNARY:
            stack.append(Unary(_UNARY[name], pop()[0]))
        elif name == "COMPARE_OP":
            left, right = pop(2)
            op = index(COMPARISONS, arg, "comparison")
            if op not in ("<", "<=", "==", "!=", ">", ">="):
                raise NotRecovered(f"it compares with {op!r}, which is not evaluated")
            stack.append(BinOp(op, left, right))
        elif name == "BINARY_SUBSCR":
            obj, item = pop(2)
            stack.append(Subscript(obj, item))
        elif name.startswith("SLICE+"):  # Python 2's obj[a:b].
            kind = int(name[-1])
            bounds = pop((kind & 1) + (kind >> 1))
            start = bounds[0] if kind & 1 else Const(None)
            stop = bounds[-1] if kind & 2 else Const(None)
            obj = pop()[0]
            stack.append(Subscript(obj, SliceNode(start, stop, Const(None))))
        elif name == "BUILD_SLICE":
            parts = pop(arg or 0)
            if len(parts) not in (2, 3):
                raise NotRecovered("a slice of the wrong size (damaged)")
            stack.append(SliceNode(parts[0], parts[1], parts[2] if len(parts) == 3 else Const(None)))
        elif name in ("BUILD_TUPLE", "BUILD_LIST"):
            stack.append(Sequence_("tuple" if name == "BUILD_TUPLE" else "list", tuple(pop(arg or 0))))
        elif name == "LIST_EXTEND":
            (extra,) = pop()
            target = stack[-(arg or 1)] if len(stack) >= (arg or 1) else None
            if not isinstance(target, Sequence_) or not isinstance(extra, Sequence_):
                raise NotRecovered("a list built from something other than a literal, which is not evaluated")
            stack[-(arg or 1)] = Sequence_("list", target.items + extra.items)
        elif name == "LIST_TO_TUPLE":
            (items,) = pop()
            if not isinstance(items, Sequence_):
                raise NotRecovered("a tuple built from something other than a literal (damaged)")
            stack.append(Sequence_("tuple", items.items))
        elif name == "POP_TOP":
            (dropped,) = pop()
            if isinstance(dropped, Node) and _calls(dropped):
                # A call whose result is thrown away runs for its effect (writing a file, printing...): never
                # recovered as if it were not there.
                raise NotRecovered(
                    "it calls something as a statement, for its effect rather than its value, which is not evaluated",
                    _render(dropped, params, display=True),
                )
        elif name == "ROT_TWO":
            a, b = pop(2)
            stack.extend([b, a])
        elif name == "ROT_THREE":
            a, b, c = pop(3)
            stack.extend([c, a, b])
        elif name == "DUP_TOP":
            stack.append(pop()[0])
            stack.append(stack[-1])
        elif name == "NOP":
            pass
        elif name == "RETURN_VALUE":
            result = pop()[0]
            if not isinstance(result, Node):
                raise NotRecovered("it returns a method without calling it (damaged)")
            return result, params
        elif "JUMP" in name:
            raise NotRecovered("it branches or loops (if/else, and/or, for), which is not evaluated", text())
        elif name == "MAKE_FUNCTION":
            raise NotRecovered("it defines a nested function or comprehension, which is not evaluated")
        else:
            raise NotRecovered(f"the instruction {name} is not evaluated", text())
    raise NotRecovered("the bytecode ends without returning (damaged)")


def _calls(node: Node) -> bool:
    return any(isinstance(item, Call) for item in _walk(node))


def _walk(node: Any, seen: set[int] | None = None):
    """``node`` and every node below it, each once."""
    seen = set() if seen is None else seen
    if id(node) in seen or not isinstance(node, Node):
        return
    seen.add(id(node))
    yield node
    for field in dataclasses.fields(node):
        value = getattr(node, field.name)
        for item in value if isinstance(value, tuple) else (value,):
            if isinstance(item, tuple):  # keyword (name, node) pairs
                item = item[1]
            yield from _walk(item, seen)


def _global(name: str) -> Node:
    if name in _GLOBAL_MODULES:
        return Ref(_GLOBAL_MODULES[name], name)
    if name in BUILTINS:
        return Ref(f"builtins.{name}", name)
    return Unknown(name)


def _attribute(obj: Any, name: str) -> Node:
    if not isinstance(obj, Node):
        raise NotRecovered("an attribute of a method (damaged)")
    if isinstance(obj, Ref) and not obj.path.startswith("builtins."):
        path = f"{obj.path}.{name}"
        return Ref(_MODULE_ALIASES.get(path, path), f"{obj.shown}.{name}")
    return Attr(obj, name)


def _call(opname: str, arg: int, family: str, pop, keyword_names: Any) -> Node:
    """A call of the callable below ``arg`` arguments (and, from 3.7, below it a NULL or a method's self)."""
    kwargs: list[tuple[str, Node]] = []
    if opname == "CALL_FUNCTION_KW" or (opname == "CALL" and keyword_names is not None):
        if family in ("2.7", "3.4"):
            raise NotRecovered("a call with **kwargs, which is not evaluated")
        names = _literal(keyword_names) if opname == "CALL" else pop()[0]
        keys = tuple(getattr(item, "value", None) for item in names.items) if isinstance(names, Sequence_) else None
        if keys is None or len(keys) > arg or not all(isinstance(key, str) for key in keys):
            raise NotRecovered("keyword names that are not a tuple of strings (damaged)")
        values = pop(arg)
        positional = values[: len(values) - len(keys)]
        kwargs = list(zip((str(key) for key in keys), values[len(positional) :]))
    elif family in ("2.7", "3.4") and opname == "CALL_FUNCTION":
        npositional, nkeywords = arg & 0xFF, (arg >> 8) & 0xFF
        pairs = pop(2 * nkeywords)
        for key, value in zip(pairs[::2], pairs[1::2]):
            if not (isinstance(key, Const) and isinstance(key.value, str)):
                raise NotRecovered("a keyword name that is not a string (damaged)")
            kwargs.append((key.value, value))
        positional = pop(npositional)
    else:
        positional = pop(arg)
    if opname in ("CALL_METHOD", "CALL"):
        below, func = pop(2)
        if below is not _NULL:  # A bound method: CPython passes its object as the first argument.
            func, positional = below, [func, *positional]
    else:
        (func,) = pop()
    if not isinstance(func, Node) or not all(isinstance(item, Node) for item in positional):
        raise NotRecovered("a call of a method's parts (damaged)")
    return Call(func, tuple(positional), tuple(kwargs))


# ---------------------------------------------------------------- the whitelist check
_MODULES = ("keras.backend", "tensorflow", "tf1", "numpy", "math", "keras")


def _callable_ok(path: str) -> bool:
    module, _, name = path.rpartition(".")
    if module == "keras.backend":
        return name in KERAS_BACKEND
    if module.startswith(("tensorflow", "tf1")):
        member = path.partition(".")[2]
        return member in TENSORFLOW or member in _DTYPES
    if module == "numpy":
        return name in NUMPY
    if module == "math":
        return name in MATH
    if module == "builtins":
        return name in BUILTINS
    return False


def _outside_whitelist(node: Node) -> list[str]:
    """What ``node`` uses that is not whitelisted, in words (empty when all is)."""
    problems: list[str] = []
    seen: set[int] = set()

    def visit(item: Node, called: bool) -> None:
        if id(item) in seen:  # A value used twice (the expression is a graph) is checked once.
            return
        seen.add(id(item))
        if isinstance(item, Unknown) and item.enclosing:
            problems.append(
                f"it reads the variable {item.name!r} of an enclosing function, which the file does not hold"
            )
        elif isinstance(item, Unknown):
            problems.append(f"it reads the global {item.name!r}, which the file does not hold")
        elif isinstance(item, Ref):
            if item.path in _MODULES:
                problems.append(f"it uses the module {item.shown} as a value")
            elif item.path not in _MODULES and not _callable_ok(item.path):
                problems.append(f"{item.shown} is not on the whitelist of pure tensor functions")
        elif isinstance(item, Attr):
            if item.name not in TENSOR_ATTRIBUTES:
                problems.append(f"it reads the attribute .{item.name}, which is not on the whitelist")
            visit(item.obj, False)
        elif isinstance(item, Call):
            if not isinstance(item.func, (Ref, Attr, Unknown)):
                problems.append("it calls the result of an expression")
            for key, _ in item.kwargs:
                if not key.isidentifier() or keyword.iskeyword(key):
                    problems.append(f"a keyword argument named {key!r}, which is no Python name")
            visit(item.func, True)
            for child in (*item.args, *(value for _, value in item.kwargs)):
                visit(child, False)
        elif isinstance(item, BinOp):
            visit(item.left, False)
            visit(item.right, False)
        elif isinstance(item, Unary):
            visit(item.operand, False)
        elif isinstance(item, Subscript):
            visit(item.obj, False)
            visit(item.index, False)
        elif isinstance(item, SliceNode):
            for child in (item.start, item.stop, item.step):
                visit(child, False)
        elif isinstance(item, Sequence_):
            for child in item.items:
                visit(child, False)
        elif isinstance(item, Const) and isinstance(item.value, (bytes, complex)):
            problems.append(f"it uses the constant {item.value!r}, which is not evaluated")

    visit(node, False)
    return problems


# ---------------------------------------------------------------- writing it out
def _render(node: Any, params: tuple[str, ...], display: bool) -> str:
    """``node`` as Python source: as the file wrote it (``display``) or over :data:`SOURCE_MODULES`."""
    text, _ = _render_prec(node, params, display)
    return text


def _render_prec(node: Any, params: tuple[str, ...], display: bool) -> tuple[str, int]:
    text, prec = _render_node(node, params, display)
    # A value used twice is written twice: bytecode that reuses values (DUP_TOP, COPY) could double the text at
    # every step.
    if len(text) > _MAX_TEXT:
        raise NotRecovered(f"the expression is longer than {_MAX_TEXT} characters")
    return text, prec


def _render_node(node: Any, params: tuple[str, ...], display: bool) -> tuple[str, int]:
    atom = 20
    if not isinstance(node, Node):
        return "<null>", atom
    if isinstance(node, Param):
        return (node.name if display else _SOURCE_PARAM), atom
    if isinstance(node, Const):
        return _constant(node.value, display), (atom if not _negative(node.value) else _PRECEDENCE["u"])
    if isinstance(node, Ref):
        return (node.shown if display else _source_ref(node.path)), atom
    if isinstance(node, Unknown):
        return node.name, atom
    if isinstance(node, Attr):
        obj, prec = _render_prec(node.obj, params, display)
        return f"{_wrap(obj, prec, atom)}.{node.name}", atom
    if isinstance(node, Call):
        func, prec = _render_prec(node.func, params, display)
        kwargs = node.kwargs
        args = list(node.args)
        if not display and isinstance(node.func, Ref):
            args, kwargs = _keras1_arguments(node.func.path, args, kwargs)
        parts = [_render(arg, params, display) for arg in args]
        parts += [f"{key}={_render(value, params, display)}" for key, value in kwargs]
        return f"{_wrap(func, prec, atom)}({', '.join(parts)})", atom
    if isinstance(node, BinOp):
        op = node.op
        if op == _PY2_DIVIDE:
            if not display and not _float_constant(node.left) and not _float_constant(node.right):
                # Python 2's a / b: TF1's div keeps it (floor division of integers, true division of floats).
                left, right = _render(node.left, params, display), _render(node.right, params, display)
                return f"tf1.div({left}, {right})", atom
            op = "/"
        prec = _PRECEDENCE[op]
        left, left_prec = _render_prec(node.left, params, display)
        right, right_prec = _render_prec(node.right, params, display)
        right_assoc = op == "**"
        left = _wrap(left, left_prec, prec + (1 if right_assoc else 0))
        right = _wrap(right, right_prec, prec + (0 if right_assoc else 1))
        return f"{left} {op} {right}", prec
    if isinstance(node, Unary):
        operand, prec = _render_prec(node.operand, params, display)
        mine = _PRECEDENCE["not "] if node.op == "not " else _PRECEDENCE["u"]
        return f"{node.op}{_wrap(operand, prec, mine)}", mine
    if isinstance(node, Subscript):
        obj, prec = _render_prec(node.obj, params, display)
        index = node.index
        if isinstance(index, Sequence_) and index.kind == "tuple" and index.items:
            inner = ", ".join(_index_text(item, params, display) for item in index.items)
            if len(index.items) == 1:
                inner += ","
        else:
            inner = _index_text(index, params, display)
        return f"{_wrap(obj, prec, atom)}[{inner}]", atom
    if isinstance(node, SliceNode):
        bounds = ", ".join(_render(part, params, display) for part in (node.start, node.stop, node.step))
        return f"slice({bounds})", atom
    if isinstance(node, Sequence_):
        items = [_render(item, params, display) for item in node.items]
        if node.kind == "list":
            return f"[{', '.join(items)}]", atom
        return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})", atom
    raise NotRecovered(f"an expression of {type(node).__name__}")


def _index_text(node: Node, params: tuple[str, ...], display: bool) -> str:
    if isinstance(node, SliceNode):
        parts = [
            "" if isinstance(part, Const) and part.value is None else _render(part, params, display)
            for part in (node.start, node.stop, node.step)
        ]
        return f"{parts[0]}:{parts[1]}" + (f":{parts[2]}" if parts[2] else "")
    if isinstance(node, Const) and node.value is Ellipsis:
        return "..."
    return _render(node, params, display)


def _wrap(text: str, prec: int, needed: int) -> str:
    return f"({text})" if prec < needed else text


def _negative(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0


def _float_constant(node: Node) -> bool:
    return isinstance(node, Const) and isinstance(node.value, float)


def _constant(value: Any, display: bool) -> str:
    if value is Ellipsis:
        return "..." if display else "Ellipsis"
    if isinstance(value, float) and not math.isfinite(value):
        return f"float({str(value)!r})"
    if isinstance(value, (bool, int, float, str)) or value is None:
        return repr(value)
    if display:
        return repr(value)
    raise NotRecovered(f"the constant {value!r} is not evaluated")


# A plain tf.X path in source, before it is pointed at TensorFlow 1's or 2's API.
_TF_SOURCE = "\x00tf."


def _missing_in(node: Node, era: str) -> str | None:
    """The first TensorFlow function ``node`` calls that the API of ``era`` lacks (TF2 dropped tf.space_to_depth...)."""
    import importlib

    for ref in (item for item in _walk(node) if isinstance(item, Ref)):
        module = {"tensorflow": SOURCE_MODULES[era], "tf1": SOURCE_MODULES["tf1"], "keras.backend": "tf_keras.backend"}
        root, _, member = ref.path.partition(".")
        root = "keras.backend" if ref.path.startswith("keras.backend.") else root
        if root == "keras.backend":
            member = ref.path[len("keras.backend.") :]
        if root not in module:
            continue
        value: Any = importlib.import_module(module[root])
        for part in member.split("."):
            value = getattr(value, part, None)
        if value is None:
            return ref.shown
    return None


def _source_ref(path: str) -> str:
    """A whitelisted path written over the source's own module names."""
    prefixes = (
        ("keras.backend.", "K."),
        ("tensorflow.", _TF_SOURCE),
        ("tf1.", "tf1."),
        ("numpy.", "np."),
        ("math.", "math."),
    )
    for prefix, name in prefixes:
        if path.startswith(prefix):
            return name + path[len(prefix) :]
    if path.startswith("builtins."):
        return path[len("builtins.") :]
    raise NotRecovered(f"{path} cannot be written out")


def _keras1_arguments(path: str, args: list[Node], kwargs: tuple) -> tuple[list[Node], tuple]:
    """Keras 1's backend took ``dim_ordering='tf'|'th'``; Keras 2's takes ``data_format='channels_...'``."""
    if not path.startswith("keras.backend."):
        return args, kwargs

    def translate(node: Node) -> Node:
        if isinstance(node, Const) and node.value in _KERAS1_ORDERING:
            return Const(_KERAS1_ORDERING[node.value])
        return node

    args = [translate(arg) for arg in args]
    kwargs = tuple(
        (
            "data_format" if key == "dim_ordering" else key,
            translate(value) if key in ("dim_ordering", "data_format") else value,
        )
        for key, value in kwargs
    )
    return args, kwargs


def _identifier(name: str) -> str:
    text = "".join(char if char.isalnum() or char == "_" else "_" for char in name)
    return text if text.isidentifier() and not keyword.iskeyword(text) else f"layer_{text}"


__all__ = ["BUILTINS", "KERAS_BACKEND", "MATH", "NUMPY", "NotRecovered", "Recovered", "TENSORFLOW", "recover"]
