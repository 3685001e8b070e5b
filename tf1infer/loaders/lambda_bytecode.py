"""The marshalled code object of a Keras ``Lambda`` layer, read as data: no Python of the file's ever runs.

Keras 1.x and 2.x store a Lambda's function as ``marshal.dumps(function.__code__)``
of the Python that trained the model (2.7, 3.4-3.11), base64-encoded or, before
Keras 2.1, as the bytes decoded with ``raw_unicode_escape``. CPython's own
``marshal.loads`` reads only its own version's format and builds a real code
object, one call away from running; this module reads the format of every
version as plain values (:class:`StoredCode`: numbers, strings, tuples and the
instruction bytes) and decodes the instructions with the opcode table of the
Python that wrote them. :mod:`lambda_recovery` evaluates those instructions
symbolically.

The writer's Python version is not recorded in the file, so it is found from
the bytes: the code object's field layout tells 2.7, 3.4-3.7, 3.8-3.10 and 3.11
apart; 3.4/3.5 bytecode (1 or 3 bytes per instruction) and 3.6/3.7 wordcode
(2 bytes) are told apart by which one decodes into valid instructions
(:func:`instructions` is tried with each). Anything malformed, too large or
from Python 3.12 or later is a :class:`BytecodeError` with the reason.

Why not a library: the ``xdis`` package reads every version too, but it is
GPL-licensed (tf1infer is Apache-2.0) and converts code of the running
version into a native code object; the tests check these tables against it.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import struct
from typing import Any

# A Lambda's code object is small; anything beyond these is damage or hostility, not a Keras function.
_MAX_BYTES = 1 << 20
_MAX_DEPTH = 32
_MAX_ITEMS = 100_000

_FLAG_REF = 0x80


class BytecodeError(ValueError):
    """Stored bytecode that cannot be read: malformed, too large, or written by a Python this reader does not know."""


@dataclasses.dataclass(frozen=True)
class StoredCode:
    """A code object as stored, read as plain values.

    Attributes:
        python: the bytecode family of the Python that wrote it: ``"2.7"``, ``"3.4"`` (3.0-3.5: bytes of 1 or 3),
            ``"3.6"`` (3.6-3.7, wordcode), ``"3.8"`` (3.8-3.10) or ``"3.11"``; see :data:`FAMILIES`. The layout alone cannot
            tell 3.4-3.5 from 3.6-3.7: this is ``"3.4"`` for both (see :func:`candidate_families`).
        argcount, posonlyargcount, kwonlyargcount, flags: the signature, as CPython stores it.
        code: the instruction bytes.
        consts: constants (None, bool, int, float, complex, str, bytes, tuples, frozensets, nested StoredCode).
        names, varnames, freevars, cellvars: the names the instructions index.
        name, filename, firstlineno: where the function was written.
    """

    python: str
    argcount: int
    posonlyargcount: int
    kwonlyargcount: int
    flags: int
    code: bytes
    consts: tuple
    names: tuple[str, ...]
    varnames: tuple[str, ...]
    freevars: tuple[str, ...]
    cellvars: tuple[str, ...]
    filename: str
    name: str
    firstlineno: int

    @property
    def parameters(self) -> tuple[str, ...]:
        """Positional parameter names, then keyword-only ones."""
        return self.varnames[: self.argcount + self.kwonlyargcount]

    @property
    def has_varargs(self) -> bool:
        return bool(self.flags & 0x04) or bool(self.flags & 0x08)


@dataclasses.dataclass(frozen=True)
class Instruction:
    offset: int
    opname: str
    arg: int | None


# ---------------------------------------------------------------- opcode tables
# Only the opcodes whose meaning the symbolic evaluator knows: any other byte is "an instruction this reader does not
# evaluate" (refused with its number), never guessed. Numbers from each version's Lib/opcode.py; checked against
# xdis's tables in tests/test_lambda_recovery.py.
_COMMON = {
    "POP_TOP": 1, "ROT_TWO": 2, "ROT_THREE": 3, "DUP_TOP": 4, "NOP": 9,
    "UNARY_POSITIVE": 10, "UNARY_NEGATIVE": 11, "UNARY_NOT": 12, "UNARY_INVERT": 15,
    "BINARY_POWER": 19, "BINARY_MULTIPLY": 20, "BINARY_MODULO": 22, "BINARY_ADD": 23, "BINARY_SUBTRACT": 24,
    "BINARY_SUBSCR": 25, "BINARY_FLOOR_DIVIDE": 26, "BINARY_TRUE_DIVIDE": 27,
    "BINARY_LSHIFT": 62, "BINARY_RSHIFT": 63, "BINARY_AND": 64, "BINARY_XOR": 65, "BINARY_OR": 66,
    "RETURN_VALUE": 83,
    "LOAD_CONST": 100, "LOAD_NAME": 101, "BUILD_TUPLE": 102, "BUILD_LIST": 103, "BUILD_MAP": 105,
    "LOAD_ATTR": 106, "COMPARE_OP": 107, "IMPORT_NAME": 108, "IMPORT_FROM": 109,
    "JUMP_FORWARD": 110, "JUMP_IF_FALSE_OR_POP": 111, "JUMP_IF_TRUE_OR_POP": 112, "JUMP_ABSOLUTE": 113,
    "POP_JUMP_IF_FALSE": 114, "POP_JUMP_IF_TRUE": 115,
    "LOAD_GLOBAL": 116, "LOAD_FAST": 124, "STORE_FAST": 125,
    "CALL_FUNCTION": 131, "MAKE_FUNCTION": 132, "BUILD_SLICE": 133, "LOAD_DEREF": 136, "CALL_FUNCTION_KW": 141,
}  # fmt: skip
_PY27 = {
    **_COMMON,
    "BINARY_DIVIDE": 21,
    "SLICE+0": 30,
    "SLICE+1": 31,
    "SLICE+2": 32,
    "SLICE+3": 33,
    "EXTENDED_ARG": 145,
}
_PY34 = {**_COMMON, "DUP_TOP_TWO": 5, "BINARY_MATRIX_MULTIPLY": 16, "EXTENDED_ARG": 144}
# 3.6 and 3.7 share one table: 3.7 only added LOAD_METHOD/CALL_METHOD, numbers 3.6 never used.
_PY36 = {**_PY34, "BUILD_CONST_KEY_MAP": 156, "LOAD_METHOD": 160, "CALL_METHOD": 161}
_PY38 = {**_PY36, "ROT_FOUR": 6}
# 3.9 gave 82 (3.8's WITH_CLEANUP_FINISH) to LIST_TO_TUPLE; a function using it is 3.9 or 3.10.
_PY39 = {**_PY38, "LIST_TO_TUPLE": 82, "IS_OP": 117, "LIST_EXTEND": 162}
# 3.11 renumbered the calls and arithmetic (BINARY_OP, PRECALL/CALL, KW_NAMES) and puts inline CACHE entries after
# some instructions: their counts are checked exactly, which also keeps 3.12 bytecode (other counts) from being read
# as 3.11.
_PY311 = {
    "POP_TOP": 1, "PUSH_NULL": 2, "NOP": 9, "UNARY_POSITIVE": 10, "UNARY_NEGATIVE": 11, "UNARY_NOT": 12,
    "UNARY_INVERT": 15, "BINARY_SUBSCR": 25, "RETURN_VALUE": 83, "SWAP": 99, "LOAD_CONST": 100, "LOAD_NAME": 101,
    "BUILD_TUPLE": 102, "BUILD_LIST": 103, "BUILD_MAP": 105, "LOAD_ATTR": 106, "COMPARE_OP": 107,
    "IMPORT_NAME": 108, "IMPORT_FROM": 109, "JUMP_FORWARD": 110, "JUMP_IF_FALSE_OR_POP": 111,
    "JUMP_IF_TRUE_OR_POP": 112, "POP_JUMP_FORWARD_IF_FALSE": 114, "POP_JUMP_FORWARD_IF_TRUE": 115,
    "LOAD_GLOBAL": 116, "IS_OP": 117, "COPY": 120, "BINARY_OP": 122, "LOAD_FAST": 124, "STORE_FAST": 125,
    "MAKE_FUNCTION": 132, "BUILD_SLICE": 133, "MAKE_CELL": 135, "LOAD_CLOSURE": 136, "LOAD_DEREF": 137,
    "EXTENDED_ARG": 144, "COPY_FREE_VARS": 149, "RESUME": 151, "LOAD_METHOD": 160, "LIST_EXTEND": 162,
    "PRECALL": 166, "CALL": 171, "KW_NAMES": 172, "LIST_TO_TUPLE": 82,
}  # fmt: skip
_CACHES_311 = {"BINARY_SUBSCR": 4, "LOAD_ATTR": 4, "COMPARE_OP": 2, "LOAD_GLOBAL": 5, "BINARY_OP": 1,
               "LOAD_METHOD": 10, "PRECALL": 1, "CALL": 4}  # fmt: skip
# BINARY_OP's argument (3.11's NB_* order).
BINARY_OPS_311 = ("+", "&", "//", "<<", "@", "*", "%", "|", "**", ">>", "-", "/", "^")
# The jump opcodes are in every table so that control flow is named in the refusal (it is not evaluated).
OPCODES: dict[str, dict[str, int]] = {
    "2.7": _PY27, "3.4": _PY34, "3.6": _PY36, "3.8": _PY38, "3.9": _PY39, "3.11": _PY311
}  # fmt: skip
# What each family is called in messages: the layout and the instructions a Lambda uses cannot tell more apart.
FAMILIES = {"2.7": "2.7", "3.4": "3.4-3.5", "3.6": "3.6-3.7", "3.8": "3.8-3.10", "3.9": "3.8-3.10", "3.11": "3.11"}
_WORDCODE = {"3.6", "3.8", "3.9", "3.11"}
HAVE_ARGUMENT = 90
# COMPARE_OP's argument indexes this (3.9+ compiles is/in to their own opcodes; the first six are unchanged).
COMPARISONS = ("<", "<=", "==", "!=", ">", ">=", "in", "not in", "is", "is not")


def code_bytes(stored: Any) -> bytes:
    """The marshalled bytes of a Lambda's ``function`` (or ``output_shape``) config entry, as Keras wrote them.

    Keras >= 2.1 writes base64 text; Keras 1.x and 2.0 the bytes decoded with ``raw_unicode_escape``; both inside a
    ``[code, defaults, closure]`` list (or the code string alone).
    """
    if isinstance(stored, (list, tuple)):
        if not stored:
            raise BytecodeError("the function entry is empty")
        stored = stored[0]
    if not isinstance(stored, str):
        raise BytecodeError(f"the function entry is {type(stored).__name__}, not the text Keras writes")
    if len(stored) > 4 * _MAX_BYTES:
        raise BytecodeError(f"the function entry holds {len(stored)} characters; a Lambda's code is far smaller")
    try:
        # Keras's base64 breaks lines; strict decoding, so raw bytes that happen to be ASCII are never misread.
        return base64.b64decode(stored.replace("\n", "").encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        pass
    try:
        return stored.encode("raw_unicode_escape")
    except UnicodeEncodeError as exc:
        raise BytecodeError(f"the function entry is neither base64 nor raw bytes: {exc}") from None


def read_code(data: bytes) -> StoredCode:
    """The code object in ``data`` (the whole of it), for the first layout it fits.

    Raises:
        BytecodeError: the bytes are no code object of Python 2.7 or 3.0-3.11.
    """
    if len(data) > _MAX_BYTES:
        raise BytecodeError(f"{len(data)} bytes of bytecode; a Lambda's code is far smaller")
    if not data or data[0] & ~_FLAG_REF != ord("c"):
        raise BytecodeError(f"not a marshalled code object (it starts with {data[:1]!r})")
    layouts = ("3.8", "3.4", "3.11") if data[0] & _FLAG_REF else ("2.7", "3.0")
    reasons = []
    for layout in layouts:
        try:
            reader = _Reader(data, layout)
            code = reader.read_object(0)
            if reader.position != len(data):
                raise BytecodeError(f"{len(data) - reader.position} bytes follow the code object")
            if not isinstance(code, StoredCode):
                raise BytecodeError("not a code object")
            return code
        except BytecodeError as exc:
            reasons.append(f"as Python {FAMILIES.get(layout, layout)}: {exc}")
    raise BytecodeError("; ".join(reasons))


def candidate_families(code: StoredCode) -> list[str]:
    """Bytecode families ``code`` may be, most likely first (the layout alone cannot tell 3.4 from 3.7)."""
    if code.python == "3.4":
        return ["3.6", "3.4"]
    if code.python == "3.8":
        return ["3.8", "3.9"]
    return [code.python]


def instructions(code: StoredCode, family: str) -> list[Instruction]:
    """``code``'s instructions decoded as ``family`` bytecode.

    Raises:
        BytecodeError: a byte that is no opcode of that family's table, or an argument past the end.
    """
    table = {number: name for name, number in OPCODES[family].items()}
    extended = OPCODES[family]["EXTENDED_ARG"]
    raw = code.code
    decoded: list[Instruction] = []
    position, extension, start = 0, 0, 0
    caches = 0
    while position < len(raw):
        opcode = raw[position]
        if family == "3.11":
            if caches:
                if opcode != 0:
                    raise BytecodeError(f"byte {position}: opcode {opcode} where 3.11 keeps an inline cache")
                caches -= 1
                position += 2
                start = position
                continue
            if opcode == 0:
                raise BytecodeError(f"byte {position}: an inline cache where 3.11 has none")
        if family in _WORDCODE:
            if position + 1 >= len(raw):
                raise BytecodeError(f"the last instruction at byte {position} is cut short")
            arg: int | None = raw[position + 1] | extension
            step = 2
            if opcode < HAVE_ARGUMENT:
                arg = None
        elif opcode >= HAVE_ARGUMENT:
            if position + 2 >= len(raw):
                raise BytecodeError(f"the last instruction at byte {position} is cut short")
            arg = raw[position + 1] | raw[position + 2] << 8 | extension
            step = 3
        else:
            arg, step = None, 1
        if opcode == extended:
            extension = (arg or 0) << (8 if family in _WORDCODE else 16)
            position += step
            continue
        if opcode not in table:
            raise BytecodeError(f"byte {start}: opcode {opcode} is not an instruction this reader evaluates")
        decoded.append(Instruction(start, table[opcode], arg))
        if family == "3.11":
            caches = _CACHES_311.get(table[opcode], 0)
        extension = 0
        position += step
        start = position
    return decoded


class _Reader:
    """CPython's marshal format (``Python/marshal.c``), versions 2 to 4, for values a code object holds."""

    def __init__(self, data: bytes, layout: str):
        self.data = data
        self.layout = layout
        self.position = 0
        self.refs: list[Any] = []
        self.interned: list[str] = []  # Python 2's string references ('R').
        self.items = 0

    def take(self, count: int) -> bytes:
        if count < 0 or self.position + count > len(self.data):
            raise BytecodeError(f"truncated: {count} bytes wanted at byte {self.position} of {len(self.data)}")
        chunk = self.data[self.position : self.position + count]
        self.position += count
        return chunk

    def int32(self) -> int:
        return struct.unpack("<i", self.take(4))[0]

    def size(self) -> int:
        count = self.int32()
        if count < 0 or count > len(self.data) - self.position:
            raise BytecodeError(f"a length of {count} at byte {self.position - 4} runs past the end")
        return count

    def read_object(self, depth: int) -> Any:
        if depth > _MAX_DEPTH:
            raise BytecodeError("objects nested too deep")
        self.items += 1
        if self.items > _MAX_ITEMS:
            raise BytecodeError("too many objects")
        start = self.position
        code = self.take(1)[0]
        flag, kind = code & _FLAG_REF, chr(code & ~_FLAG_REF)
        if flag and self.layout in ("2.7", "3.0"):
            raise BytecodeError(f"byte {start}: a reference flag, which Python {self.layout} does not write")
        slot = None
        if flag:
            slot = len(self.refs)
            self.refs.append(None)
        value = self._value(kind, depth, start)
        if slot is not None:
            self.refs[slot] = value
        return value

    def _value(self, kind: str, depth: int, start: int) -> Any:
        simple = {"N": None, "T": True, "F": False, ".": Ellipsis}
        if kind in simple:
            return simple[kind]
        if kind == "i":
            return self.int32()
        if kind == "I" and self.layout == "2.7":
            return struct.unpack("<q", self.take(8))[0]
        if kind == "l":
            digits = self.int32()
            if abs(digits) > 1000:
                raise BytecodeError(f"byte {start}: an integer of {abs(digits)} digits")
            value = 0
            for shift in range(abs(digits)):
                value |= struct.unpack("<H", self.take(2))[0] << (15 * shift)
            return -value if digits < 0 else value
        if kind == "g":
            return struct.unpack("<d", self.take(8))[0]
        if kind == "y":
            return complex(*struct.unpack("<dd", self.take(16)))
        if kind in "fx":
            parts = [self._float_text() for _ in range(1 if kind == "f" else 2)]
            return parts[0] if kind == "f" else complex(*parts)
        if kind == "s":
            return self.take(self.size())
        if kind in "tu" or (kind in "aA" and self.layout != "2.7"):
            raw = self.take(self.size())
            if self.layout == "2.7" and kind == "t":
                text = raw.decode("latin-1")
                self.interned.append(text)
                return text
            try:
                return raw.decode("utf-8" if kind in "tu" else "ascii")
            except UnicodeDecodeError as exc:
                raise BytecodeError(f"byte {start}: text that does not decode: {exc}") from None
        if kind in "zZ" and self.layout != "2.7":
            raw = self.take(self.take(1)[0])
            if not raw.isascii():
                raise BytecodeError(f"byte {start}: ASCII text that is not ASCII")
            return raw.decode("ascii")
        if kind == "R" and self.layout == "2.7":
            index = self.int32()
            if not 0 <= index < len(self.interned):
                raise BytecodeError(f"byte {start}: string reference {index} of {len(self.interned)}")
            return self.interned[index]
        if kind == "r" and self.layout not in ("2.7", "3.0"):
            index = self.int32()
            if not 0 <= index < len(self.refs) or self.refs[index] is None:
                raise BytecodeError(f"byte {start}: reference {index} to no object read before it")
            return self.refs[index]
        if kind in "[<>" or kind == "(" or (kind == ")" and self.layout not in ("2.7", "3.0")):
            count = self.take(1)[0] if kind == ")" else self.size()
            items = tuple(self.read_object(depth + 1) for _ in range(count))
            if kind == "<" or kind == ">":
                try:
                    return frozenset(items)
                except TypeError:
                    raise BytecodeError(f"byte {start}: a set of unhashable items") from None
            return list(items) if kind == "[" else items
        if kind == "{":
            entries = {}
            while self.data[self.position : self.position + 1] not in (b"0", b""):
                key = self.read_object(depth + 1)
                try:
                    entries[key] = self.read_object(depth + 1)
                except TypeError:
                    raise BytecodeError(f"byte {start}: a dict with an unhashable key") from None
            self.take(1)
            return entries
        if kind == "c":
            return self._code(depth)
        raise BytecodeError(f"byte {start}: type code {kind!r}, which no code object of this layout holds")

    def _float_text(self) -> float:
        text = self.take(self.take(1)[0])
        try:
            return float(text.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            raise BytecodeError(f"a float written as {text!r}") from None

    def _code(self, depth: int) -> StoredCode:
        if self.layout == "3.11":
            return self._code_311(depth)
        posonly = kwonly = 0
        argcount = self.int32()
        if self.layout == "3.8":
            posonly = self.int32()
        if self.layout != "2.7":
            kwonly = self.int32()
        self.int32()  # nlocals
        self.int32()  # stacksize
        flags = self.int32()
        fields = [self.read_object(depth + 1) for _ in range(8)]
        fields = [_names_if_py2(field, self.layout) for field in fields]
        code, consts, names, varnames, freevars, cellvars, filename, name = fields
        firstlineno = self.int32()
        self.read_object(depth + 1)  # lnotab / linetable
        return self._checked(argcount, posonly, kwonly, flags, code, consts, names, varnames, freevars, cellvars,
                             filename, name, firstlineno)  # fmt: skip

    def _code_311(self, depth: int) -> StoredCode:
        argcount, posonly, kwonly = self.int32(), self.int32(), self.int32()
        self.int32()  # stacksize
        flags = self.int32()
        code, consts, names, localsplus, kinds, filename, name, _qualname = (
            self.read_object(depth + 1) for _ in range(8)
        )
        firstlineno = self.int32()
        self.read_object(depth + 1)  # linetable
        self.read_object(depth + 1)  # exception table
        if not isinstance(localsplus, tuple) or not isinstance(kinds, bytes) or len(kinds) != len(localsplus):
            raise BytecodeError("the local names and their kinds do not match")
        # 3.11 indexes locals, cells and free variables in one table (locals first); varnames holds it whole.
        freevars = tuple(n for n, kind in zip(localsplus, kinds) if kind & 0x80)
        cellvars = tuple(n for n, kind in zip(localsplus, kinds) if kind & 0x40)
        return self._checked(argcount, posonly, kwonly, flags, code, consts, names, localsplus, freevars, cellvars,
                             filename, name, firstlineno)  # fmt: skip

    def _checked(self, argcount, posonly, kwonly, flags, code, consts, names, varnames, freevars, cellvars,
                 filename, name, firstlineno) -> StoredCode:  # fmt: skip
        if not isinstance(code, bytes):
            raise BytecodeError("the instructions are not bytes")
        texts = [names, varnames, freevars, cellvars]
        if not isinstance(consts, tuple) or not all(
            isinstance(group, tuple) and all(isinstance(item, str) for item in group) for group in texts
        ):
            raise BytecodeError("the constants and names are not the tuples a code object holds")
        if min(argcount, posonly, kwonly) < 0 or argcount + kwonly > len(varnames):
            raise BytecodeError("the argument counts do not fit the variable names")
        return StoredCode(
            python=self.layout if self.layout != "3.0" else "3.4",  # 3.0-3.3: 3.4's bytecode, without references.
            argcount=argcount,
            posonlyargcount=posonly,
            kwonlyargcount=kwonly,
            flags=flags,
            code=code,
            consts=tuple(_text_if_py2(c, self.layout) for c in consts),
            names=names,
            varnames=varnames,
            freevars=freevars,
            cellvars=cellvars,
            filename=str(_text_if_py2(filename, self.layout)),
            name=str(_text_if_py2(name, self.layout)),
            firstlineno=firstlineno,
        )


def _names_if_py2(value: Any, layout: str) -> Any:
    if layout == "2.7" and isinstance(value, tuple) and all(isinstance(item, bytes) for item in value):
        return tuple(item.decode("latin-1") for item in value)
    return value


def _text_if_py2(value: Any, layout: str) -> Any:
    # Python 2's str is bytes in marshal ('s'); Keras code's strings ('channels_last', 'bilinear') are text.
    if layout == "2.7" and isinstance(value, bytes):
        return value.decode("latin-1")
    return value


__all__ = [
    "BytecodeError",
    "COMPARISONS",
    "FAMILIES",
    "Instruction",
    "OPCODES",
    "StoredCode",
    "candidate_families",
    "code_bytes",
    "instructions",
    "read_code",
]
