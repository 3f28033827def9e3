"""Agent expressions (gdbserver's ax.c): gdb's bytecode for target-side conditions and commands, compiled.

gdb sends breakpoint conditions (``Z0,addr,kind;X<len>,<hex>...``) and
commands (``;cmds:<persist>,X<len>,<hex>...``, the ``printf`` of an
agent-style ``dprintf``) as agent-expression bytecode when the stub
advertises ``ConditionalBreakpoints+`` / ``BreakpointCommands+``.  The
reference is the gdb manual, appendix "The GDB Agent Expression Mechanism"
("Bytecode Descriptions"), with gdbserver's ``ax.c`` for the points the
manual leaves open (stack values are 64 bits; a condition is true when the
top of the stack is non-zero; ``end`` on an empty stack is an error).

Theory of operation
-------------------
1. **Decode** (:func:`decode`): the bytes become :class:`Insn` records, with
   their immediates (big-endian, as the manual says, whatever the target's
   byte order).  An unknown opcode or a truncated immediate is an
   :class:`AgentError`.
2. **Validate** (:func:`validate`): a program must run to ``end`` on every
   path without under- or overflowing the stack (:data:`STACK_MAX`, as
   gdbserver), every jump must land on an instruction boundary *ahead* of it
   (gdb only emits forward jumps, for ``&&``, ``||`` and ``?:``; refusing
   backward ones guarantees that a condition evaluated inside guest
   execution terminates), the stack depth must agree where paths join, and
   opcodes this evaluator does not implement (floating point, ``invalid2``)
   are refused rather than ignored: the ``Z`` packet gets an error and gdb
   reports it cannot insert the breakpoint.
3. **Compile** (:func:`compile_expr`): the validated program becomes Python
   source, compiled once.  Because the depth is known at every instruction,
   stack slot *i* is the local ``s<i>``; inside a basic block the stack
   holds expression text, so ``reg 1; ext 32; const8 7; equal`` becomes one
   Python expression and a false condition costs one function call.  Basic
   blocks (split at forward jumps) run in order, each guarded by a flag its
   predecessors set.  The target supplies what is target-specific through
   :class:`AgentEnv`: a Python snippet per register number (e.g.
   ``cpu.regs[1]``), a memory reader, the printf sink, the C type sizes.
   This module knows no x86.  An expression nested deeper than
   :data:`CHUNK_DEPTH` (a long chain of operations, ``ext`` of ``ext`` of
   ...) is stored in its stack slot first, so what is compiled never meets
   Python's limits on nesting (gdb sends chains of ~100 operations for
   long conditions); the stack itself is bounded by :data:`STACK_MAX`.
4. **Hook** (:func:`compile_breakpoint`): the conditions (OR: any true
   stops, as gdbserver) and commands of one breakpoint become one callable
   ``hook(cpu) -> bool`` ("report the stop to gdb?").  An error while
   evaluating a condition (unreadable memory, division by zero) stops, as in
   gdbserver, and is passed to the target's ``on_error``.  A breakpoint with
   commands is not reported (gdbserver's rule: gdb installs target-side
   commands only for dprintf); an error in a command is reported to
   ``on_error`` and the remaining commands are skipped, without a stop.

Trace ops (``trace``, ``trace_quick``, ``trace16``, ``tracenz``,
``tracev``) have only their stack effect: there are no tracepoints, hence
no trace frame to collect into.  ``getv``/``setv`` use ``AgentEnv.tsv``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from ..rsp.target import AgentError  # the stub answers it with E_AGENT (rsp.target rule 8)

__all__ = [
    "M64",
    "OPCODES",
    "OPS",
    "STACK_MAX",
    "AgentEnv",
    "AgentError",
    "AgentEvalError",
    "CompiledBreakpoint",
    "FormatPiece",
    "Insn",
    "OpInfo",
    "Program",
    "compile_breakpoint",
    "compile_expr",
    "compile_program",
    "decode",
    "disassemble",
    "parse_format",
    "validate",
]

STACK_MAX = 100  # gdbserver's limit (ax.c STACK_MAX)
M64 = (1 << 64) - 1
_SIGN = 1 << 63


class AgentEvalError(RuntimeError):
    """A failure while evaluating (unreadable memory, a bad printf argument): the condition errs."""


# ---- the opcode table ---------------------------------------------------------------------
#
# From gdb's ax.def: (name, opcode, immediate bytes, pops, pushes).  -1 for a
# dynamic count (printf: nargs + 2 pops; its immediate is nargs, a 16-bit
# length and the string).  ``supported`` False: decoded (so the error names
# the op), refused by validate().


@dataclasses.dataclass(frozen=True)
class OpInfo:
    """One opcode of the bytecode: its name, immediate size, stack effect and whether we run it."""

    name: str
    code: int
    imm: int
    pops: int
    pushes: int
    supported: bool = True


_TABLE: list[tuple[str, int, int, int, int, bool]] = [
    ("float", 0x01, 0, 0, 0, False),
    ("add", 0x02, 0, 2, 1, True),
    ("sub", 0x03, 0, 2, 1, True),
    ("mul", 0x04, 0, 2, 1, True),
    ("div_signed", 0x05, 0, 2, 1, True),
    ("div_unsigned", 0x06, 0, 2, 1, True),
    ("rem_signed", 0x07, 0, 2, 1, True),
    ("rem_unsigned", 0x08, 0, 2, 1, True),
    ("lsh", 0x09, 0, 2, 1, True),
    ("rsh_signed", 0x0A, 0, 2, 1, True),
    ("rsh_unsigned", 0x0B, 0, 2, 1, True),
    ("trace", 0x0C, 0, 2, 0, True),
    ("trace_quick", 0x0D, 1, 1, 1, True),
    ("log_not", 0x0E, 0, 1, 1, True),
    ("bit_and", 0x0F, 0, 2, 1, True),
    ("bit_or", 0x10, 0, 2, 1, True),
    ("bit_xor", 0x11, 0, 2, 1, True),
    ("bit_not", 0x12, 0, 1, 1, True),
    ("equal", 0x13, 0, 2, 1, True),
    ("less_signed", 0x14, 0, 2, 1, True),
    ("less_unsigned", 0x15, 0, 2, 1, True),
    ("ext", 0x16, 1, 1, 1, True),
    ("ref8", 0x17, 0, 1, 1, True),
    ("ref16", 0x18, 0, 1, 1, True),
    ("ref32", 0x19, 0, 1, 1, True),
    ("ref64", 0x1A, 0, 1, 1, True),
    ("ref_float", 0x1B, 0, 1, 1, False),
    ("ref_double", 0x1C, 0, 1, 1, False),
    ("ref_long_double", 0x1D, 0, 1, 1, False),
    ("l_to_d", 0x1E, 0, 1, 1, False),
    ("d_to_l", 0x1F, 0, 1, 1, False),
    ("if_goto", 0x20, 2, 1, 0, True),
    ("goto", 0x21, 2, 0, 0, True),
    ("const8", 0x22, 1, 0, 1, True),
    ("const16", 0x23, 2, 0, 1, True),
    ("const32", 0x24, 4, 0, 1, True),
    ("const64", 0x25, 8, 0, 1, True),
    ("reg", 0x26, 2, 0, 1, True),
    ("end", 0x27, 0, 0, 0, True),
    ("dup", 0x28, 0, 1, 2, True),
    ("pop", 0x29, 0, 1, 0, True),
    ("zero_ext", 0x2A, 1, 1, 1, True),
    ("swap", 0x2B, 0, 2, 2, True),
    ("getv", 0x2C, 2, 0, 1, True),
    ("setv", 0x2D, 2, 1, 1, True),
    ("tracev", 0x2E, 2, 0, 0, True),
    ("tracenz", 0x2F, 0, 2, 0, True),
    ("trace16", 0x30, 2, 1, 1, True),
    ("invalid2", 0x31, 0, 0, 0, False),
    ("pick", 0x32, 1, 0, 1, True),  # needs depth > n; see validate()
    ("rot", 0x33, 0, 3, 3, True),
    ("printf", 0x34, -1, -1, 0, True),
]

OPCODES: dict[int, OpInfo] = {
    code: OpInfo(name, code, imm, pops, pushes, ok) for name, code, imm, pops, pushes, ok in _TABLE
}
_BY_NAME: dict[str, OpInfo] = {op.name: op for op in OPCODES.values()}

# Import-time checks (what C would check at compile time): codes are dense and unique.
assert sorted(OPCODES) == list(range(0x01, 0x35)), "ax.def opcodes are 0x01..0x34"
assert len(_BY_NAME) == len(OPCODES)


# ---- printf formats -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FormatPiece:
    """A piece of a printf format: literal text (``conv`` empty) or one conversion.

    ``spec`` is the Python ``%`` spec equivalent to the C one (length
    modifiers dropped: ``bits`` carries the argument width instead);
    ``signed`` for d/i.  ``conv`` is one of ``d i u o x X c s p``.
    """

    text: str
    conv: str = ""
    bits: int = 32
    signed: bool = False
    alt_octal: bool = False


_ESCAPES = {
    "\\": "\\",
    "a": "\a",
    "b": "\b",
    "e": "\x1b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    '"': '"',
    "'": "'",
}
_CONV_RE = re.compile(
    r"%(?P<flags>[-+ #0]*)(?P<width>\d*)(?:\.(?P<prec>\d*))?(?P<len>hh|h|ll|l|z|j|t)?"
    r"(?P<conv>.?)",
    re.S,
)


def _unescape(fmt: str) -> str:
    """gdb's format_pieces: the format arrives as typed between the quotes (``\\n`` is two characters)."""
    out: list[str] = []
    i = 0
    while i < len(fmt):
        ch = fmt[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        if i + 1 >= len(fmt):
            raise AgentError("printf: format ends with a backslash")
        nxt = fmt[i + 1]
        if nxt in _ESCAPES:
            out.append(_ESCAPES[nxt])
            i += 2
        elif nxt in "01234567":
            digits = re.match(r"[0-7]{1,3}", fmt[i + 1 :])
            assert digits is not None
            out.append(chr(int(digits.group(), 8) & 0xFF))
            i += 1 + len(digits.group())
        else:
            raise AgentError(f"printf: unrecognized escape \\{nxt} in the format")
    return "".join(out)


def parse_format(fmt: str, int_bits: int = 32, long_bits: int = 32, ptr_bits: int = 32) -> list[FormatPiece]:
    """Split a C printf format into pieces; AgentError for what the agent cannot print.

    As gdbserver's ``ax_printf``: integers, characters, strings (read from
    target memory) and ``%%``; floating point, ``%n``, ``*`` widths and
    wide characters are refused.  ``%p`` prints ``0x`` and hex digits.
    """
    text = _unescape(fmt)
    sizes = {None: int_bits, "hh": 8, "h": 16, "l": long_bits, "ll": 64, "z": ptr_bits, "j": 64, "t": ptr_bits}
    pieces: list[FormatPiece] = []
    literal: list[str] = []
    pos = 0
    while pos < len(text):
        ch = text[pos]
        if ch != "%":
            literal.append(ch)
            pos += 1
            continue
        m = _CONV_RE.match(text, pos)
        assert m is not None  # every group is optional
        conv = m.group("conv")
        if conv == "%" and m.end() - pos == 2:
            literal.append("%")
            pos = m.end()
            continue
        flags, width, prec, length = m.group("flags"), m.group("width"), m.group("prec"), m.group("len")
        if conv in ("", "*"):
            raise AgentError(f"printf: '*' widths and incomplete directives are not supported: {text[pos : pos + 8]!r}")
        if conv in "eEfFgGaA":
            raise AgentError("printf: floating-point directives are not supported by the agent")
        if conv not in "diuoxXcsp":
            raise AgentError(f"printf: directive %{conv} is not supported by the agent")
        if conv in "cs" and length:
            raise AgentError("printf: wide characters and strings are not supported by the agent")
        if literal:
            pieces.append(FormatPiece("".join(literal)))
            literal = []
        alt_octal = conv == "o" and "#" in flags
        if alt_octal:
            flags = flags.replace("#", "")
        py_conv = {"i": "d", "u": "d", "p": "x", "c": "s"}.get(conv, conv)
        spec = "%" + flags + width + ("." + prec if prec is not None else "") + py_conv
        bits = ptr_bits if conv == "p" else 8 if conv == "c" else sizes[length]
        pieces.append(FormatPiece(spec, conv, bits, conv in "di", alt_octal))
        pos = m.end()
    if literal:
        pieces.append(FormatPiece("".join(literal)))
    return pieces


# ---- decoding -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Insn:
    """One decoded instruction: ``arg`` is the immediate (jump target, constant, register, bit count);
    for printf, ``arg`` is nargs and ``text`` the format (without its NUL)."""

    offset: int
    op: OpInfo
    arg: int | None = None
    text: str | None = None

    @property
    def name(self) -> str:
        return self.op.name

    def __str__(self) -> str:
        if self.op.name == "printf":
            return f"printf {self.arg} {self.text!r}"
        if self.arg is None:
            return self.op.name
        if self.op.name in ("goto", "if_goto", "const16", "const32", "const64"):
            return f"{self.op.name} {self.arg:#x}"
        return f"{self.op.name} {self.arg}"


def decode(code: bytes) -> list[Insn]:
    """The instructions of ``code`` in order; AgentError on an unknown opcode or a truncated immediate."""
    out: list[Insn] = []
    pc = 0
    n = len(code)
    while pc < n:
        op = OPCODES.get(code[pc])
        if op is None:
            raise AgentError(f"unknown opcode {code[pc]:#04x}", pc)
        start = pc
        pc += 1
        if op.name == "printf":
            if pc + 3 > n:
                raise AgentError("printf: truncated", start)
            nargs = code[pc]
            slen = int.from_bytes(code[pc + 1 : pc + 3], "big")
            pc += 3
            if slen < 1 or pc + slen > n:
                raise AgentError("printf: format string runs past the end", start)
            raw = code[pc : pc + slen]
            pc += slen
            if raw[-1] != 0:
                raise AgentError("printf: unterminated format string", start)
            out.append(Insn(start, op, nargs, raw[:-1].decode("latin-1")))
            continue
        if op.imm:
            if pc + op.imm > n:
                raise AgentError(f"{op.name}: truncated immediate", start)
            arg: int | None = int.from_bytes(code[pc : pc + op.imm], "big")
            pc += op.imm
        else:
            arg = None
        out.append(Insn(start, op, arg))
    return out


def disassemble(code: bytes) -> str:
    """``reg 1; ext 32; const8 7; equal; end`` (for logs and ``monitor info conditions``)."""
    try:
        return "; ".join(str(i) for i in decode(code))
    except AgentError as exc:
        return f"<{exc}>"


# ---- validation ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Program:
    """A validated expression: instructions, the stack depth before each reachable one, and what it uses."""

    code: bytes
    insns: tuple[Insn, ...]
    depth: Mapping[int, int]  # offset -> depth before the instruction; unreachable ones absent
    max_depth: int
    condition: bool
    registers: frozenset[int]
    formats: tuple[tuple[FormatPiece, ...], ...]  # one per printf, in order


def _effect(insn: Insn) -> tuple[int, int]:
    """(pops, pushes) of one instruction; pick and printf depend on their immediates."""
    op = insn.op
    if op.name == "printf":
        assert insn.arg is not None
        return insn.arg + 2, 0
    if op.name == "pick":
        assert insn.arg is not None
        return insn.arg + 1, insn.arg + 2  # needs n+1 items, leaves them plus the copy
    return op.pops, op.pushes


def validate(
    code: bytes, *, condition: bool = True, int_bits: int = 32, long_bits: int = 32, ptr_bits: int = 32
) -> Program:
    """Check ``code`` as described in the module docstring; returns the :class:`Program` or raises AgentError.

    ``condition``: the result (top of stack at ``end``) is used, so the stack
    must not be empty there; commands (printf) may end with an empty stack.
    """
    if not code:
        raise AgentError("empty expression")
    insns = decode(code)
    starts = {i.offset: k for k, i in enumerate(insns)}
    incoming: dict[int, int] = {0: 0}  # offset -> depth on entry, from every edge seen so far
    depth: dict[int, int] = {}
    registers: set[int] = set()
    formats: list[tuple[FormatPiece, ...]] = []
    max_depth = 0
    for k, insn in enumerate(insns):
        op = insn.op
        if insn.offset not in incoming:
            continue  # unreachable (after a goto or end, and no jump lands here)
        d = incoming[insn.offset]
        depth[insn.offset] = d
        if not op.supported:
            raise AgentError(f"opcode {op.name} ({op.code:#04x}) is not supported by this agent", insn.offset)
        pops, pushes = _effect(insn)
        if d < pops:
            raise AgentError(f"{op.name}: stack underflow ({d} on the stack, needs {pops})", insn.offset)
        after = d - pops + pushes
        max_depth = max(max_depth, after, d)
        if max_depth > STACK_MAX:
            raise AgentError(f"stack deeper than {STACK_MAX}", insn.offset)
        name = op.name
        if name == "reg":
            assert insn.arg is not None
            registers.add(insn.arg)
        elif name == "printf":
            assert insn.text is not None and insn.arg is not None
            pieces = parse_format(insn.text, int_bits, long_bits, ptr_bits)
            wanted = sum(1 for p in pieces if p.conv)
            if wanted != insn.arg:
                raise AgentError(f"printf: the format wants {wanted} arguments, {insn.arg} given", insn.offset)
            formats.append(tuple(pieces))
        elif name in ("ext", "zero_ext"):
            if not insn.arg:
                raise AgentError(f"{name} 0 is meaningless", insn.offset)
        if name == "end":
            if condition and d < 1:
                raise AgentError("end: the condition leaves no value on the stack", insn.offset)
            continue
        if name in ("goto", "if_goto"):
            target = insn.arg
            assert target is not None
            if target not in starts:
                raise AgentError(f"{name}: target {target:#x} is not an instruction boundary", insn.offset)
            if target <= insn.offset:
                raise AgentError(
                    f"{name}: backward jump to {target:#x} (loops are refused: a condition "
                    "runs inside guest execution and must terminate)",
                    insn.offset,
                )
            _join(incoming, target, after, insn.offset)
            if name == "goto":
                continue
        nxt = insns[k + 1].offset if k + 1 < len(insns) else None
        if nxt is None:
            raise AgentError(f"{name}: execution runs off the end of the expression (no end)", insn.offset)
        _join(incoming, nxt, after, insn.offset)
    return Program(code, tuple(insns), depth, max_depth, condition, frozenset(registers), tuple(formats))


def _join(incoming: dict[int, int], target: int, d: int, at: int) -> None:
    seen = incoming.setdefault(target, d)
    if seen != d:
        raise AgentError(f"stack depth {d} disagrees with {seen} where paths join at {target:#x}", at)


# ---- compilation --------------------------------------------------------------------------


def _no_output(text: str) -> None:
    del text


@dataclasses.dataclass(frozen=True)
class AgentEnv:
    """What a target gives the compiler.

    ``register(regnum)``: a Python expression over the name ``cpu`` giving
    the register's value as an unsigned number (zero-extended, as
    gdbserver's regcache reads it), or None if the target cannot supply
    that register (the expression is then refused).  ``ref(cpu, addr,
    size)``: ``size`` bytes at ``addr`` in the target's byte order,
    unsigned; raise (AgentEvalError, ideally) when unreadable.  ``names``:
    extra globals the register snippets use.  ``output``: where printf text
    goes.  ``tsv``: trace state variables for getv/setv.  The C sizes are
    the target ABI's, used by printf's length modifiers.
    """

    register: Callable[[int], str | None]
    ref: Callable[[Any, int, int], int]
    output: Callable[[str], None] = _no_output
    names: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    tsv: dict[int, int] = dataclasses.field(default_factory=dict)
    int_bits: int = 32
    long_bits: int = 32
    ptr_bits: int = 32
    max_string: int = 4096


def _sx(v: int) -> int:
    """The signed value of a 64-bit stack item."""
    return (v ^ _SIGN) - _SIGN


def _sdiv(a: int, b: int) -> int:
    """C division (truncates toward zero) of signed 64-bit items."""
    x, y = _sx(a), _sx(b)
    q = abs(x) // abs(y)  # ZeroDivisionError for y == 0: an evaluation error, as in gdbserver
    return (-q if (x < 0) != (y < 0) else q) & M64


def _srem(a: int, b: int) -> int:
    """C remainder: the sign of the dividend."""
    x, y = _sx(a), _sx(b)
    r = abs(x) % abs(y)
    return (-r if x < 0 else r) & M64


def _lsh(a: int, b: int) -> int:
    return (a << b) & M64 if b < 64 else 0


def _sar(a: int, b: int) -> int:
    return (_sx(a) >> min(b, 63)) & M64


CHUNK_DEPTH = 24  # deepest nesting of a generated expression before it goes to its stack slot


def _nesting(expr: str) -> int:
    """How deeply ``expr`` nests parentheses and brackets (the generated code's, always balanced)."""
    depth = deepest = 0
    for ch in expr:
        if ch in "([":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in ")]":
            depth -= 1
    return deepest


_HELPERS: dict[str, Any] = {"_sx": _sx, "_sdiv": _sdiv, "_srem": _srem, "_lsh": _lsh, "_sar": _sar}
_SIMPLE = re.compile(r"^(?:s\d+|\d+)$")


class _Codegen:
    """Python source for one validated program (see the module docstring, step 3)."""

    def __init__(self, prog: Program, env: AgentEnv, fname: str) -> None:
        self.prog = prog
        self.env = env
        self.fname = fname
        self.lines: list[str] = []
        self.stack: list[str] = []
        self.indent = "    "
        self.printf_index = 0

    def emit(self, line: str) -> None:
        self.lines.append(self.indent + line)

    def flush(self) -> None:
        """Put every stack item in its slot, all at once (an item may read a slot another overwrites)."""
        dirty = [(i, e) for i, e in enumerate(self.stack) if e != f"s{i}"]
        if dirty:
            self.emit(", ".join(f"s{i}" for i, _ in dirty) + " = " + ", ".join(e for _, e in dirty))
            self.stack[:] = [f"s{i}" for i in range(len(self.stack))]  # in place: op() holds the list

    def push(self, expr: str) -> None:
        self.stack.append(expr)
        if len(expr) > CHUNK_DEPTH and _nesting(expr) > CHUNK_DEPTH:
            self.flush()  # step 3: keep every expression shallow (Python's parser nests 200 deep at most)

    def pop(self) -> str:
        return self.stack.pop()

    def copy_of(self, index: int) -> str:
        """The item at ``index`` for a second use: evaluated once (flushed to its slot unless trivial)."""
        expr = self.stack[index]
        if not _SIMPLE.match(expr):
            self.flush()
            expr = self.stack[index]
        return expr

    def source(self) -> str:
        prog = self.prog
        insns = prog.insns
        # Block starts: jump targets, and the instruction after an if_goto (its not-taken path
        # must not run when the jump is taken, so it is guarded too).
        starts: set[int] = set()
        for k, insn in enumerate(insns):
            if insn.offset in prog.depth and insn.name in ("goto", "if_goto"):
                assert insn.arg is not None
                starts.add(insn.arg)
                if insn.name == "if_goto":
                    starts.add(insns[k + 1].offset)  # validate(): an if_goto is never last
        head = [f"def {self.fname}(cpu):"]
        if starts:
            head.append("    " + " = ".join(f"b{t:x}" for t in sorted(starts)) + " = False")
        falls = True  # whether control reaches the next instruction in order
        for k, insn in enumerate(insns):
            off = insn.offset
            if off not in prog.depth:
                falls = False
                continue
            if off in starts:
                if falls:  # fall-through into a jump target: it is a block of its own
                    self.flush()
                    self.emit(f"b{off:x} = True")
                self.indent = "    "
                self.emit(f"if b{off:x}:")
                self.indent = "        "
                self.stack = [f"s{i}" for i in range(prog.depth[off])]
            falls = self.op(insn, insns[k + 1].offset if k + 1 < len(insns) else None)
        return "\n".join(head + self.lines) + "\n"

    def op(self, insn: Insn, nxt: int | None) -> bool:
        """Emit one instruction; False when control does not fall through to the next one."""
        name = insn.name
        arg = insn.arg
        st = self.stack
        if name in _BINARY:
            b, a = self.pop(), self.pop()
            self.push(_BINARY[name].format(a=a, b=b, M=hex(M64), S=hex(_SIGN)))
        elif name == "log_not":
            self.push(f"(not {self.pop()})")
        elif name == "bit_not":
            self.push(f"({self.pop()} ^ {M64:#x})")
        elif name == "ext":
            assert arg is not None
            if arg < 64:
                sign = 1 << (arg - 1)
                self.push(f"(((({self.pop()} & {(1 << arg) - 1:#x}) ^ {sign:#x}) - {sign:#x}) & {M64:#x})")
        elif name == "zero_ext":
            assert arg is not None
            if arg < 64:
                self.push(f"({self.pop()} & {(1 << arg) - 1:#x})")
        elif name in ("ref8", "ref16", "ref32", "ref64"):
            self.push(f"_ref(cpu, {self.pop()}, {int(name[3:]) // 8})")
        elif name.startswith("const"):
            self.push(str(arg))
        elif name == "reg":
            assert arg is not None
            snippet = self.env.register(arg)
            if snippet is None:
                raise AgentError(f"register {arg} is not available to target-side expressions", insn.offset)
            self.push(f"({snippet})")
        elif name == "dup":
            self.push(self.copy_of(len(st) - 1))
        elif name == "pick":
            assert arg is not None
            self.push(self.copy_of(len(st) - 1 - arg))
        elif name == "pop":
            self.pop()
        elif name == "swap":
            st[-1], st[-2] = st[-2], st[-1]
        elif name == "rot":  # a b c => c a b (gdbserver's ax.c)
            st[-3], st[-2], st[-1] = st[-1], st[-3], st[-2]
        elif name == "getv":
            self.push(f"_tsv.get({arg}, 0)")
        elif name == "setv":
            self.flush()
            self.emit(f"_tsv[{arg}] = s{len(st) - 1}")
        elif name in ("trace", "tracenz"):
            self.pop()
            self.pop()
        elif name in ("trace_quick", "trace16", "tracev"):
            pass  # no trace frame: nothing to collect, the stack is unchanged
        elif name == "printf":
            assert arg is not None
            self.flush()
            n = len(st)
            args = [f"s{n - 3 - i}" for i in range(arg)]  # args[0] is just below channel and function
            self.emit(f"_printf(cpu, {self.printf_index}, ({', '.join(args)}{',' if arg == 1 else ''}))")
            self.printf_index += 1
            del st[n - arg - 2 :]
        elif name == "if_goto":
            self.flush()  # first: the condition may read a slot the flush of another item rewrites
            cond = self.pop()
            self.emit(f"if {cond}:")
            self.emit(f"    b{arg:x} = True")
            self.emit("else:")
            assert nxt is not None
            self.emit(f"    b{nxt:x} = True")
            return False  # the not-taken path is the next block, entered through its guard
        elif name == "goto":
            self.flush()
            self.emit(f"b{arg:x} = True")
            return False
        elif name == "end":
            if self.prog.condition:
                self.emit(f"return {self.pop()}")
            else:
                self.emit("return 0")
            return False
        else:  # pragma: no cover - validate() refuses everything else
            raise AgentError(f"cannot compile {name}", insn.offset)
        return True


_BINARY = {
    "add": "(({a} + {b}) & {M})",
    "sub": "(({a} - {b}) & {M})",
    "mul": "(({a} * {b}) & {M})",
    "div_signed": "_sdiv({a}, {b})",
    "div_unsigned": "({a} // {b})",
    "rem_signed": "_srem({a}, {b})",
    "rem_unsigned": "({a} % {b})",
    "lsh": "_lsh({a}, {b})",
    "rsh_signed": "_sar({a}, {b})",
    "rsh_unsigned": "({a} >> {b})",
    "bit_and": "({a} & {b})",
    "bit_or": "({a} | {b})",
    "bit_xor": "({a} ^ {b})",
    "equal": "({a} == {b})",
    "less_signed": "((({a}) ^ {S}) - {S} < (({b}) ^ {S}) - {S})",
    "less_unsigned": "({a} < {b})",
}


def _make_printf(
    env: AgentEnv, formats: Sequence[Sequence[FormatPiece]]
) -> Callable[[Any, int, tuple[int, ...]], None]:
    """The runtime of the printf op: format with the pre-parsed pieces, send the text to ``env.output``."""
    ref = env.ref
    output = env.output
    limit = env.max_string

    def read_string(cpu: Any, addr: int) -> str:
        out = bytearray()
        while len(out) < limit:
            c = ref(cpu, addr + len(out), 1)
            if c == 0:
                break
            out.append(c)
        return out.decode("latin-1")

    def printf(cpu: Any, index: int, args: tuple[int, ...]) -> None:
        parts: list[str] = []
        it: Iterator[int] = iter(args)
        for piece in formats[index]:
            conv = piece.conv
            if not conv:
                parts.append(piece.text)
                continue
            value = int(next(it)) & M64
            if conv == "s":
                parts.append(piece.text % ("(null)" if value == 0 else read_string(cpu, value)))
                continue
            value &= (1 << piece.bits) - 1
            if conv == "c":
                parts.append(piece.text % chr(value))
            elif conv == "p":
                parts.append("0x" + piece.text % value)
            else:
                if piece.signed and value >> (piece.bits - 1):
                    value -= 1 << piece.bits
                text = piece.text % value
                if piece.alt_octal and value:
                    text = text.replace(f"{value:o}", f"0{value:o}", 1)
                parts.append(text)
        output("".join(parts))

    return printf


def compile_program(prog: Program, env: AgentEnv, fname: str = "_agent") -> Callable[[Any], int]:
    """A validated :class:`Program` as ``fn(cpu) -> int`` (the condition's value; 0 for a command)."""
    gen = _Codegen(prog, env, fname)
    src = gen.source()
    namespace: dict[str, Any] = dict(_HELPERS)
    namespace.update(env.names)
    namespace["_ref"] = env.ref
    namespace["_tsv"] = env.tsv
    namespace["_printf"] = _make_printf(env, prog.formats)
    namespace["__builtins__"] = {}
    try:
        code = compile(src, f"<agent {prog.code.hex()[:32]}>", "exec")
    except (SyntaxError, RecursionError, MemoryError) as exc:  # step 3 keeps it from happening; refuse if it does
        raise AgentError(f"expression too complex to compile ({type(exc).__name__})") from None
    exec(code, namespace)
    fn: Callable[[Any], int] = namespace[fname]
    fn.__doc__ = src  # the generated source, for debugging ("do not edit": it is generated)
    return fn


def compile_expr(code: bytes, env: AgentEnv, *, condition: bool = True) -> Callable[[Any], int]:
    """Validate and compile one expression: ``fn(cpu) -> int``; AgentError if refused."""
    prog = validate(code, condition=condition, int_bits=env.int_bits, long_bits=env.long_bits, ptr_bits=env.ptr_bits)
    return compile_program(prog, env)


# ---- breakpoint hooks -----------------------------------------------------------------------


ErrorHandler = Callable[[str, int, BaseException], None]


@dataclasses.dataclass
class CompiledBreakpoint:
    """The conditions and commands of one breakpoint as one ``hook(cpu) -> bool`` (True: report the stop).

    ``counters`` is ``[evaluations, conditions true, errors]``; pass the same
    list again to keep counting across re-insertions (gdb removes and
    re-inserts its breakpoints at every stop).
    """

    hook: Callable[[Any], bool]
    conditions: tuple[bytes, ...]
    commands: tuple[bytes, ...]
    counters: list[int]


def compile_breakpoint(
    conditions: Sequence[bytes],
    commands: Sequence[bytes],
    env: AgentEnv,
    on_error: ErrorHandler,
    counters: list[int] | None = None,
    cache: dict[tuple[bytes, bool], Callable[[Any], int]] | None = None,
) -> CompiledBreakpoint:
    """Compile a breakpoint's conditions (any true: stop) and commands (run when it triggers; no stop).

    ``on_error(what, index, exc)`` hears about evaluation errors: ``what``
    is ``"condition"`` (the hook then returns True: stop, as gdbserver) or
    ``"command"`` (the remaining commands are skipped; no stop).  ``cache``
    maps ``(bytecode, is_condition)`` to compiled functions, so bytecode gdb
    sends again at each re-insertion is compiled once.
    """

    def get(code: bytes, is_condition: bool) -> Callable[[Any], int]:
        key = (bytes(code), is_condition)
        if cache is not None and key in cache:
            return cache[key]
        fn = compile_expr(code, env, condition=is_condition)
        if cache is not None:
            cache[key] = fn
        return fn

    conds = tuple(get(c, True) for c in conditions)
    cmds = tuple(get(c, False) for c in commands)
    n = counters if counters is not None else [0, 0, 0]
    while len(n) < 3:
        n.append(0)

    def run_commands(cpu: Any) -> None:
        for i, cmd in enumerate(cmds):
            try:
                cmd(cpu)
            except Exception as exc:  # noqa: BLE001 - any failure of guest-state reading is an agent error
                n[2] += 1
                on_error("command", i, exc)
                return

    hook: Callable[[Any], bool]
    if len(conds) == 1 and not cmds:
        only = conds[0]

        def hook(cpu: Any) -> bool:  # the common case, kept to one call: `break X if COND`
            n[0] += 1
            try:
                if only(cpu):
                    n[1] += 1
                    return True
                return False
            except Exception as exc:  # noqa: BLE001
                n[2] += 1
                on_error("condition", 0, exc)
                return True

    else:

        def hook(cpu: Any) -> bool:
            n[0] += 1
            if conds:
                i = 0
                try:
                    for i, cond in enumerate(conds):  # noqa: B007 - i names the failing one
                        if cond(cpu):
                            break
                    else:
                        return False
                except Exception as exc:  # noqa: BLE001
                    n[2] += 1
                    on_error("condition", i, exc)
                    return True
            n[1] += 1
            if cmds:
                run_commands(cpu)
                return False  # gdbserver: a breakpoint with commands is not reported to gdb
            return True

    return CompiledBreakpoint(hook, tuple(bytes(c) for c in conditions), tuple(bytes(c) for c in commands), n)


# Name lookup for tests and tools: OPS["equal"].code == 0x13.
OPS: Mapping[str, OpInfo] = _BY_NAME
