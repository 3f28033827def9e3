"""Watch conditions (``monitor watch cond``): a small expression language, parsed here, compiled to Python.

The language is in ``monitor help watch cond``: integers, the names of
:data:`NAMES` (the access, the CPU's registers), the functions of
:data:`FUNCTIONS` (guest memory by the debug view, sign extension), C-like
operators with Python's precedence, and parentheses.

Rules of the compiler
---------------------
1. **User text is never evaluated.**  One regex splits the text into
   tokens; the compiled source is built only from integers the parser
   converted itself, fixed snippets for the names and functions, operators
   from a fixed table, and parentheses.  So it is Python we wrote, whatever
   the user typed.
2. **No recursion in the parser.**  Operator precedence is resolved with an
   explicit operand and operator stack (Dijkstra's shunting-yard), so a deep
   expression never meets Python's recursion limit.  ``not`` is accepted
   where the grammar has a negation (at the start, after ``(``, ``and``,
   ``or`` or ``not``); comparisons do not chain (``1 < 2 < 3`` is refused:
   Python and C read it differently).
3. **The compiled form does not depend on Python's parser limits** (nested
   parentheses, nesting of the compiler): an operand nested deeper than
   :data:`CHUNK_DEPTH` becomes a function of its own, called where the
   operand is evaluated, so evaluation order and short-circuiting are those
   of the text.  The limit is :data:`MAX_TOKENS`: a longer expression is
   refused with a clear error, and whatever is accepted compiles.
4. Errors are :class:`ConditionError` (a ValueError): the monitor answers
   ``error: watch cond: ...``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from ..core.cpu import CPU
from .memview import Peek
from .registers import GPR64, GPR_NAMES

MAX_TOKENS: Final = 4096  # longest expression accepted
CHUNK_DEPTH: Final = 24  # operand nesting (in the generated source) kept inline

WatchConditionFn = Callable[[CPU, Any], bool]  # (cpu, WatchLogEntry) -> stop?


class ConditionError(ValueError):
    """A watch condition that does not parse, or is too long."""


_TOKEN = re.compile(
    r"\s*(?:(0[xX][0-9a-fA-F]+|0[bB][01]+|\d+)|([A-Za-z_]\w*)|"
    r"(==|!=|<=|>=|<<|>>|&&|\|\||[-+*/%&|^~!<>(),]))"
)
NAMES: Final[dict[str, str]] = {
    "new": "_n(h.new)",
    "value": "_n(h.new)",
    "old": "_n(h.old)",
    "pc": "h.pc",
    "addr": "h.addr",
    "size": "h.size",
    "write": "int(h.is_write)",
    "read": "int(not h.is_write)",
    "icount": "h.icount",
    "eip": "(cpu.eip & 0xFFFFFFFF)",
    "rip": "cpu.eip",
    "eflags": "cpu.get_eflags()",
    **{name: f"(cpu.regs[{i}] & 0xFFFFFFFF)" for i, name in enumerate(GPR_NAMES)},
    **{name: (f"cpu.regs[{i}]" if i < 8 else f"cpu.xregs[{i - 8}]") for name, i in GPR64.items()},
}
FUNCTIONS: Final[dict[str, str]] = {
    "mem8": "_mem(cpu, {}, 1)",
    "mem16": "_mem(cpu, {}, 2)",
    "mem32": "_mem(cpu, {}, 4)",
    "mem64": "_mem(cpu, {}, 8)",
    "s8": "_sx({}, 8)",
    "s16": "_sx({}, 16)",
    "s32": "_sx({}, 32)",
}

# Binary operators: token -> (precedence, Python operator); higher binds tighter (Python's order).
_OR, _AND, _NOT, _CMP, _UNARY = 1, 2, 3, 4, 11
_BINARY: Final[dict[str, tuple[int, str]]] = {
    "or": (_OR, "or"),
    "||": (_OR, "or"),
    "and": (_AND, "and"),
    "&&": (_AND, "and"),
    **{op: (_CMP, op) for op in ("==", "!=", "<", "<=", ">", ">=")},
    "|": (5, "|"),
    "^": (6, "^"),
    "&": (7, "&"),
    "<<": (8, "<<"),
    ">>": (8, ">>"),
    "+": (9, "+"),
    "-": (9, "-"),
    "*": (10, "*"),
    "/": (10, "//"),
    "%": (10, "%"),
}
_NEGATION_FOLLOWS = frozenset({"(", "and", "&&", "or", "||", "not", "!"})  # where `not` may appear


@dataclass(frozen=True)
class _Operand:
    text: str  # Python source
    depth: int  # nesting of ``text``
    comparison: bool = False  # a bare comparison (chaining check); parentheses clear it


@dataclass(frozen=True)
class _Op:
    kind: str  # "binary", "prefix", "paren", "call"
    token: str  # the operator / function name; "(" for a paren
    prec: int = 0


class _Compiler:
    """Tokens -> Python source of ``_watch_cond(cpu, h)`` (rules 2 and 3 of the module docstring)."""

    def __init__(self) -> None:
        self.chunks: list[str] = []
        self.operands: list[_Operand] = []
        self.ops: list[_Op] = []

    # ---- code generation -------------------------------------------------------------------
    def _inline(self, operand: _Operand) -> _Operand:
        """``operand`` as it may appear inside another: a call to a chunk function when it is deep."""
        if operand.depth < CHUNK_DEPTH:
            return operand
        self.chunks.append(operand.text)
        return _Operand(f"_c{len(self.chunks) - 1}(cpu, h)", 1, operand.comparison)

    def _reduce(self) -> None:
        op = self.ops.pop()
        if op.kind == "prefix":
            arg = self._pop_operand()
            a = self._inline(arg)
            text = f"(not {a.text})" if op.token in ("not", "!") else f"({op.token}{a.text})"
            self.operands.append(_Operand(text, a.depth + 1))
            return
        assert op.kind == "binary"
        right = self._pop_operand()
        left = self._pop_operand()
        if op.prec == _CMP and left.comparison:
            raise ConditionError("watch cond: chained comparisons are ambiguous; use and")
        a, b = self._inline(left), self._inline(right)
        text = f"({a.text} {_BINARY[op.token][1]} {b.text})"
        self.operands.append(_Operand(text, max(a.depth, b.depth) + 1, op.prec == _CMP))

    def _pop_operand(self) -> _Operand:
        if not self.operands:
            raise ConditionError("watch cond: the expression ends too early")
        return self.operands.pop()

    def _close(self) -> None:
        """A ``)``: reduce back to its ``(`` or function call."""
        while self.ops and self.ops[-1].kind not in ("paren", "call"):
            self._reduce()
        if not self.ops:
            raise ConditionError("watch cond: unexpected ')'")
        opener = self.ops.pop()
        inner = self._inline(self.operands.pop())
        if opener.kind == "call":
            text = FUNCTIONS[opener.token].format(inner.text)
            self.operands.append(_Operand(text, inner.depth + 1))
        else:
            self.operands.append(_Operand(inner.text, inner.depth))  # comparison=False: parenthesized

    # ---- parsing -------------------------------------------------------------------------
    def compile(self, text: str) -> str:
        tokens = _tokenize(text)
        if not tokens:
            raise ConditionError("watch cond: empty expression")
        if len(tokens) > MAX_TOKENS:
            raise ConditionError(f"watch cond: the expression is too long ({len(tokens)} tokens, at most {MAX_TOKENS})")
        expect_operand = True
        prev: str | None = None  # the previous token's text
        i = 0
        while i < len(tokens):
            kind, tok = tokens[i]
            i += 1
            if expect_operand:
                if kind == "num":
                    self.operands.append(_Operand(tok, 0))
                    expect_operand = False
                elif tok in ("not", "!") and kind in ("name", "op"):
                    if prev is not None and prev not in _NEGATION_FOLLOWS:
                        raise ConditionError(f"watch cond: unexpected {tok!r}")
                    self.ops.append(_Op("prefix", tok, _NOT))
                elif kind == "op" and tok in ("-", "~", "+"):
                    self.ops.append(_Op("prefix", tok, _UNARY))
                elif kind == "op" and tok == "(":
                    self.ops.append(_Op("paren", "("))
                elif kind == "name" and tok in FUNCTIONS:
                    if i >= len(tokens) or tokens[i] != ("op", "("):
                        raise ConditionError(f"watch cond: {tok} takes an argument: {tok}(...)")
                    i += 1
                    self.ops.append(_Op("call", tok))
                    tok = "("
                elif kind == "name" and tok in NAMES:
                    self.operands.append(_Operand(NAMES[tok], 1))
                    expect_operand = False
                elif kind == "name" and tok not in _BINARY:
                    raise ConditionError(f"watch cond: unknown name {tok!r} (see 'help watch cond')")
                else:
                    raise ConditionError(f"watch cond: unexpected {tok!r}")
            else:
                if tok in _BINARY and kind in ("name", "op"):
                    prec = _BINARY[tok][0]
                    while self.ops and self.ops[-1].kind in ("binary", "prefix") and self.ops[-1].prec >= prec:
                        self._reduce()
                    self.ops.append(_Op("binary", tok, prec))
                    expect_operand = True
                elif kind == "op" and tok == ")":
                    self._close()
                else:
                    raise ConditionError(f"watch cond: unexpected {tok!r}")
            prev = tok
        if expect_operand:
            raise ConditionError("watch cond: the expression ends too early")
        while self.ops:
            if self.ops[-1].kind in ("paren", "call"):
                raise ConditionError("watch cond: missing ')'")
            self._reduce()
        assert len(self.operands) == 1
        body = self._inline(self.operands[0])
        lines = [f"def _c{k}(cpu, h):\n    return {chunk}\n" for k, chunk in enumerate(self.chunks)]
        lines.append(f"def _watch_cond(cpu, h):\n    return bool({body.text})\n")
        return "".join(lines)


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise ConditionError(f"watch cond: unexpected {text[pos:].strip()[:12]!r}")
        number, name, op = m.groups()
        if number is not None:
            tokens.append(("num", str(int(number, 0))))
        elif name is not None:
            tokens.append(("name", name))
        else:
            tokens.append(("op", op))
        pos = m.end()
    return tokens


def _known(value: int | None) -> int:
    """old/new of an access that is not RAM: a condition that uses them fails (and so stops)."""
    if value is None:
        raise ValueError("the accessed memory is not RAM: no value")
    return value


def _sx(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def condition_source(text: str) -> str:
    """The Python source :func:`compile_watch_condition` compiles for ``text`` (for tests and ``help``)."""
    return _Compiler().compile(text)


def compile_watch_condition(text: str, peek: Peek) -> WatchConditionFn:
    """``text`` (the language of ``help watch cond``) as ``fn(cpu, record) -> bool``; ConditionError if invalid.

    ``peek(cpu, vaddr, size) -> int | None`` reads guest memory for mem8..mem64.
    """
    src = condition_source(text)

    def mem(cpu: CPU, addr: int, size: int) -> int:
        value = peek(cpu, addr & 0xFFFFFFFFFFFFFFFF, size)
        if value is None:
            raise ValueError(f"cannot read {size} bytes at {addr & 0xFFFFFFFFFFFFFFFF:#x}")
        return value

    namespace: dict[str, Any] = {"_n": _known, "_mem": mem, "_sx": _sx, "int": int, "bool": bool}
    namespace["__builtins__"] = {}
    try:
        code = compile(src, "<watch cond>", "exec")
    except (SyntaxError, RecursionError, MemoryError) as exc:  # rule 3 says it cannot happen; say so if it does
        raise ConditionError(f"watch cond: too complex to compile ({type(exc).__name__})") from None
    exec(code, namespace)
    fn: WatchConditionFn = namespace["_watch_cond"]
    fn.__doc__ = src
    return fn
