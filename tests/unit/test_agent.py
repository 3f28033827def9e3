"""Agent expressions (gdbemu/debug/ax.py): byte-level vectors for the decoder, validator and compiler.

Layers, as the rest of the rsp tests:

* one vector per opcode: hand-assembled bytecode, the value it must leave
  (64-bit stack items, as gdbserver's ax.c);
* the bytes gdb 13 actually sends for ``break ... if ...`` with
  ``set breakpoint condition-evaluation target`` (captured from its remote
  log, ``set remotelogfile``), run against register/memory states whose
  answer is known;
* what is refused (malformed, unsupported, unsafe), with the reason;
* a differential test: random valid programs, compiled vs. a plain
  stack-machine interpreter written here from the manual;
* the breakpoint hook (OR of conditions, commands that do not stop, errors
  that stop) and the stub's side of it (qSupported, Z0 with ``;X`` and
  ``;cmds:``, persistent commands) against a fake target.
"""

from __future__ import annotations

import errno
import random
from collections.abc import Sequence
from typing import Any

import pytest

from gdbemu.debug import ax as A
from gdbemu.debug.ax import OPS, AgentEnv, AgentError, AgentEvalError
from gdbemu.rsp.arch.i386 import I386_LAYOUT
from gdbemu.rsp.stub import E_AGENT, GdbStub
from gdbemu.rsp.target import (
    ResumeAction,
    StopEvent,
    TargetBase,
    ThreadInfo,
)

M64 = (1 << 64) - 1


# ---- assembling bytecode by name -----------------------------------------------------------------


def op(name: str, arg: int | None = None) -> bytes:
    """One instruction: the opcode and its big-endian immediate (the manual's byte order)."""
    info = OPS[name]
    out = bytes([info.code])
    if info.imm > 0:
        assert arg is not None, name
        out += arg.to_bytes(info.imm, "big")
    return out


def asm(*items: str | tuple[str, int] | bytes) -> bytes:
    out = b""
    for item in items:
        if isinstance(item, bytes):
            out += item
        elif isinstance(item, tuple):
            out += op(*item)
        else:
            out += op(item)
    return out


def c(v: int) -> bytes:
    """The smallest const for ``v`` (unsigned)."""
    for name, size in (("const8", 1), ("const16", 2), ("const32", 4), ("const64", 8)):
        if v < 1 << (8 * size):
            return op(name, v)
    raise ValueError(v)


def printf(fmt: bytes, nargs: int) -> bytes:
    s = fmt + b"\0"
    return bytes([OPS["printf"].code, nargs]) + len(s).to_bytes(2, "big") + s


class State:
    """What the fake target exposes: registers by gdb number, and a sparse memory."""

    def __init__(self, regs: dict[int, int] | None = None, mem: dict[int, bytes] | None = None) -> None:
        self.regs = regs or {}
        self.mem: dict[int, int] = {}
        for base, data in (mem or {}).items():
            for i, b in enumerate(data):
                self.mem[base + i] = b


def ref(state: State, addr: int, size: int) -> int:
    try:
        return int.from_bytes(bytes(state.mem[(addr + i) & M64] for i in range(size)), "little")
    except KeyError:
        raise AgentEvalError(f"cannot read {size} bytes at {addr:#x}") from None


def make_env(output: list[str] | None = None, **kw: Any) -> AgentEnv:
    sink = output if output is not None else []
    return AgentEnv(register=lambda n: f"cpu.regs[{n}]" if n < 16 else None, ref=ref, output=sink.append, **kw)


def run(code: bytes, state: State | None = None, **kw: Any) -> int:
    return int(A.compile_expr(code, make_env(**kw))(state or State()))


def sx(v: int, bits: int = 64) -> int:
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


NEG1 = M64  # -1 as a 64-bit stack item

# ---- one vector per opcode --------------------------------------------------------------------------

OPCODE_VECTORS: list[tuple[str, bytes, int]] = [
    ("add", asm(c(5), c(7), "add", "end"), 12),
    ("add wraps at 64 bits", asm(op("const64", M64), c(2), "add", "end"), 1),
    ("sub", asm(c(7), c(5), "sub", "end"), 2),
    ("sub below zero", asm(c(5), c(7), "sub", "end"), (-2) & M64),
    ("mul", asm(c(6), c(7), "mul", "end"), 42),
    ("mul wraps", asm(op("const64", 1 << 63), c(2), "mul", "end"), 0),
    ("div_signed truncates toward zero", asm(c(7), ("ext", 8), c(0xFE), ("ext", 8), "div_signed", "end"), (-3) & M64),
    ("div_signed -7/2", asm(c(0xF9), ("ext", 8), c(2), "div_signed", "end"), (-3) & M64),
    ("div_unsigned", asm(op("const64", NEG1), c(2), "div_unsigned", "end"), M64 // 2),
    ("rem_signed takes the dividend's sign", asm(c(0xF9), ("ext", 8), c(2), "rem_signed", "end"), NEG1),
    ("rem_unsigned", asm(c(17), c(5), "rem_unsigned", "end"), 2),
    ("lsh", asm(c(1), c(40), "lsh", "end"), 1 << 40),
    ("lsh out of range", asm(c(1), c(64), "lsh", "end"), 0),
    ("rsh_signed", asm(c(0x80), ("ext", 8), c(4), "rsh_signed", "end"), (-8) & M64),
    ("rsh_unsigned", asm(c(0x80), ("ext", 8), c(60), "rsh_unsigned", "end"), 0xF),
    ("log_not 0", asm(c(0), "log_not", "end"), 1),
    ("log_not 5", asm(c(5), "log_not", "end"), 0),
    ("bit_and", asm(c(0xF0F0), c(0xFF00), "bit_and", "end"), 0xF000),
    ("bit_or", asm(c(0xF0F0), c(0x0F00), "bit_or", "end"), 0xFFF0),
    ("bit_xor", asm(c(0xFF), c(0x0F), "bit_xor", "end"), 0xF0),
    ("bit_not", asm(c(0), "bit_not", "end"), M64),
    ("equal true", asm(c(7), c(7), "equal", "end"), 1),
    ("equal false", asm(c(7), c(8), "equal", "end"), 0),
    ("less_signed: -1 < 1", asm(c(0xFF), ("ext", 8), c(1), "less_signed", "end"), 1),
    ("less_unsigned: 2**64-1 < 1 is false", asm(c(0xFF), ("ext", 8), c(1), "less_unsigned", "end"), 0),
    ("less_unsigned", asm(c(1), c(2), "less_unsigned", "end"), 1),
    ("ext 8 of 0x80", asm(c(0x80), ("ext", 8), "end"), (-128) & M64),
    ("ext 8 of 0x7f", asm(c(0x17F), ("ext", 8), "end"), 0x7F),
    ("ext 32", asm(op("const32", 0xFFFFFFF9), ("ext", 32), "end"), (-7) & M64),
    ("ext 64 is the identity", asm(op("const64", 1 << 63), ("ext", 64), "end"), 1 << 63),
    ("zero_ext 16", asm(op("const32", 0x12345678), ("zero_ext", 16), "end"), 0x5678),
    ("ref8", asm(op("const32", 0x1000), "ref8", "end"), 0x88),
    ("ref16", asm(op("const32", 0x1000), "ref16", "end"), 0x7788),
    ("ref32 is little-endian", asm(op("const32", 0x1000), "ref32", "end"), 0x55667788),
    ("ref64", asm(op("const32", 0x1000), "ref64", "end"), 0x1122334455667788),
    ("const8", asm(op("const8", 0xAB), "end"), 0xAB),
    ("const16 is big-endian", bytes([0x23, 0x12, 0x34, 0x27]), 0x1234),
    ("const32", bytes([0x24, 0x12, 0x34, 0x56, 0x78, 0x27]), 0x12345678),
    ("const64", bytes([0x25, 1, 2, 3, 4, 5, 6, 7, 8, 0x27]), 0x0102030405060708),
    ("reg", asm(("reg", 1), "end"), 0xDEADBEEF),
    ("dup", asm(c(3), "dup", "add", "end"), 6),
    ("pop", asm(c(3), c(4), "pop", "end"), 3),
    ("swap", asm(c(10), c(3), "swap", "sub", "end"), (3 - 10) & M64),
    ("pick 0 is dup", asm(c(5), ("pick", 0), "add", "end"), 10),
    ("pick 2", asm(c(1), c(2), c(3), ("pick", 2), "end"), 1),
    ("rot: a b c => c a b", asm(c(1), c(2), c(3), "rot", "end"), 2),
    ("rot: third", asm(c(1), c(2), c(3), "rot", "pop", "pop", "end"), 3),
    ("getv of an unset variable", asm(("getv", 3), "end"), 0),
    ("setv keeps the value, getv reads it", asm(c(9), ("setv", 3), "pop", ("getv", 3), "end"), 9),
    ("trace pops address and size", asm(c(7), c(0x1000), c(4), "trace", "end"), 7),
    ("trace_quick keeps the address", asm(c(0x1000), ("trace_quick", 4), "end"), 0x1000),
    ("trace16 keeps the address", asm(c(0x1000), ("trace16", 300), "end"), 0x1000),
    ("tracenz pops two", asm(c(7), c(0x1000), c(8), "tracenz", "end"), 7),
    ("tracev has no stack effect", asm(c(7), ("tracev", 1), "end"), 7),
    ("if_goto taken", asm(c(1), ("if_goto", 10), c(5), ("goto", 12), c(6), "end"), 6),
    ("if_goto not taken", asm(c(0), ("if_goto", 10), c(5), ("goto", 12), c(6), "end"), 5),
    ("goto skips", asm(("goto", 5), c(1), c(2), "end"), 2),
]


@pytest.mark.parametrize("name,code,want", OPCODE_VECTORS, ids=[v[0] for v in OPCODE_VECTORS])
def test_opcode_vectors(name: str, code: bytes, want: int) -> None:
    state = State({1: 0xDEADBEEF}, {0x1000: bytes.fromhex("8877665544332211")})
    assert run(code, state) & M64 == want


def test_every_supported_opcode_has_a_vector() -> None:
    covered = {i.name for _, code, _ in OPCODE_VECTORS for i in A.decode(code)}
    supported = {o.name for o in A.OPCODES.values() if o.supported}
    assert supported - covered == {"printf"}  # printf is a command: tested below


def test_decode_names_immediates_and_offsets() -> None:
    code = bytes.fromhex("260001162022071327")
    assert [str(i) for i in A.decode(code)] == ["reg 1", "ext 32", "const8 7", "equal", "end"]
    assert [i.offset for i in A.decode(code)] == [0, 3, 5, 7, 8]
    assert A.disassemble(bytes([0x99])).startswith("<unknown opcode 0x99")


def test_opcode_table_matches_ax_def() -> None:
    names = {o.code: o.name for o in A.OPCODES.values()}
    assert names[0x13] == "equal" and names[0x26] == "reg" and names[0x27] == "end" and names[0x34] == "printf"
    assert names[0x32] == "pick" and names[0x33] == "rot" and names[0x31] == "invalid2"
    assert {o.name for o in A.OPCODES.values() if not o.supported} == {
        "float",
        "ref_float",
        "ref_double",
        "ref_long_double",
        "l_to_d",
        "d_to_l",
        "invalid2",
    }


# ---- what gdb 13 sends (from its remote log) --------------------------------------------------------

EAX, ECX, EDX, EBX, ESP, EBP, ESI, EDI = range(8)
COUNTER = 0x100AB0

# `break *loop_top if $ecx == 7`
GDB_ECX_EQ_7 = bytes.fromhex("260001162022071327")
# `break *store_insn if (int)counter > 40`
GDB_COUNTER_GT_40 = bytes.fromhex("2400100ab019162022282b1427")
# `break *w2 if (unsigned)$ecx < 5u || $edx >= 3 || (int)counter / 4 == 7 || (int)counter % 5 == 2
#   || ($esi << 2) >> 1 == 8 || ~$eax == 1 || ($eax ^ 3 | 1) == 5 || !$ebx || -$eax == 2
#   || (short)$eax == -1 || (char)$eax == 3 || $esi > 0 ? $edi : 1`
GDB_BIG = bytes.fromhex(
    "26000116202a2022051520001e26000216202203140e20001e2200210020220120003b2400100ab0191620220405162022071320003b"
    "220021003d22012000582400100ab01916202205071620220213200058220021005a22012000772600061620220209162022010a1620"
    "2208132000772200210079220120008f260000162012162022011320008f220021009122012000aa2600001620220311220110220513"
    "2000aa22002100ac22012000bd26000316200e2000bd22002100bf22012000d7220026000016200316202202132000d722002100d922"
    "012000f02600001620161022ff1608132000f022002100f22201200107260000162016082203132001072200210109220120011d2600"
    "06162022002b1420011d220021011f22010e20012b260007162021012d220127"
)


def big_reference(r: dict[int, int], counter: int) -> int:
    """GDB_BIG's expression in Python with C's int semantics (the oracle for the captured bytecode)."""

    def i32(v: int) -> int:
        return sx(v, 32)

    def cdiv(a: int, b: int) -> int:
        q = abs(a) // abs(b)
        return -q if (a < 0) != (b < 0) else q

    def crem(a: int, b: int) -> int:
        return a - b * cdiv(a, b)

    eax, ecx, edx, ebx, esi, edi = (i32(r[n]) for n in (EAX, ECX, EDX, EBX, ESI, EDI))
    cnt = i32(counter)
    cond = (
        (ecx & 0xFFFFFFFF) < 5
        or edx >= 3
        or cdiv(cnt, 4) == 7
        or crem(cnt, 5) == 2
        or (i32(esi << 2) >> 1) == 8
        or i32(~eax) == 1
        or ((eax ^ 3) | 1) == 5
        or not ebx
        or i32(-eax) == 2
        or sx(eax, 16) == -1
        or sx(eax, 8) == 3
    )
    return edi if cond or esi > 0 else 1  # `A || ... || K || $esi > 0 ? $edi : 1`: ?: binds loosest


def test_gdb_vector_ecx_eq_7() -> None:
    assert [str(i) for i in A.decode(GDB_ECX_EQ_7)] == ["reg 1", "ext 32", "const8 7", "equal", "end"]
    for ecx in (0, 6, 7, 8, 0x100000007, 0xFFFFFFFF):
        assert bool(run(GDB_ECX_EQ_7, State({ECX: ecx & 0xFFFFFFFF}))) == ((ecx & 0xFFFFFFFF) == 7)


def test_gdb_vector_counter_gt_40() -> None:
    ops = [str(i) for i in A.decode(GDB_COUNTER_GT_40)]
    assert ops == ["const32 0x100ab0", "ref32", "ext 32", "const8 40", "swap", "less_signed", "end"]
    for counter in (0, 40, 41, 42, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF):
        state = State(mem={COUNTER: counter.to_bytes(4, "little")})
        assert bool(run(GDB_COUNTER_GT_40, state)) == (sx(counter, 32) > 40), counter


def test_gdb_vector_with_jumps_against_a_c_oracle() -> None:
    """The ||-chain gdb compiles to if_goto/goto diamonds: every branch against the C semantics."""
    prog = A.validate(GDB_BIG)
    assert {
        "if_goto",
        "goto",
        "div_signed",
        "rem_signed",
        "lsh",
        "rsh_signed",
        "bit_not",
        "bit_xor",
        "bit_or",
        "log_not",
        "sub",
        "zero_ext",
        "less_unsigned",
        "less_signed",
        "swap",
    } <= {i.name for i in prog.insns}
    rng = random.Random(5)
    interesting = [0, 1, 2, 3, 4, 5, 7, 8, 0xFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFE, 0x80000000, 0x7FFFFFFF]
    fn = A.compile_expr(GDB_BIG, make_env())
    for _ in range(3000):
        regs = {n: rng.choice(interesting) if rng.random() < 0.7 else rng.getrandbits(32) for n in range(8)}
        counter = rng.choice([28, 29, 27, 12, 0, 0xFFFFFFFF, rng.getrandbits(32)])
        state = State(regs, {COUNTER: counter.to_bytes(4, "little")})
        assert sx(fn(state), 32) == big_reference(regs, counter), (regs, counter)


def test_gdb_dprintf_vector() -> None:
    """`dprintf *dp_site,"i=%d eax=%#x s=%s c=%c\\n", $ebx, $eax, (char *)$esi, 65 + $ebx` (dprintf-style agent)."""
    code = bytes.fromhex(
        "224126000316200216202600061620260000162026000316202200220034040019693d2564206561783d25237820733d25732063"
        "3d25635c6e0027"
    )
    out: list[str] = []
    fn = A.compile_expr(code, make_env(out), condition=False)
    fn(State({EBX: 2, EAX: 0x96, ESI: 0x2000}, {0x2000: b"hello\0"}))
    assert out == ["i=2 eax=0x96 s=hello c=C\n"]  # the format's "\n" arrives as two characters


# ---- printf --------------------------------------------------------------------------------------------

PRINTF_VECTORS = [
    (b"%d|%u|%x|%X|%o|%#o|%#x", [NEG1, 0xFFFFFFFF, 255, 255, 8, 8, 255], "-1|4294967295|ff|FF|10|010|0xff"),
    (b"%5d|%-5d|%05d|%+d|% d", [42, 42, 42, 42, 42], "   42|42   |00042|+42| 42"),
    (
        b"%hhd %hd %ld %lld %lu %llx",
        [0x180, 0x18000, 0x80000000, NEG1, NEG1, NEG1],
        "-128 -32768 -2147483648 -1 4294967295 ffffffffffffffff",
    ),
    (b"%c%c|%3c", [ord("o"), ord("k"), ord("x")], "ok|  x"),
    (b"%s|%.3s|%8s|%s", [0x2000, 0x2000, 0x2000, 0], "hello|hel|   hello|(null)"),
    (b"100%% %p", [0x1234], "100% 0x1234"),
    (b'tab\\there\\\\ \\"q\\" \\101', [], 'tab\there\\ "q" A'),
]


@pytest.mark.parametrize("fmt,args,want", PRINTF_VECTORS, ids=[v[0].decode() for v in PRINTF_VECTORS])
def test_printf_vectors(fmt: bytes, args: list[int], want: str) -> None:
    code = b"".join(op("const64", a) for a in reversed(args)) + c(0) + c(0) + printf(fmt, len(args)) + op("end")
    out: list[str] = []
    A.compile_expr(code, make_env(out), condition=False)(State(mem={0x2000: b"hello\0"}))
    assert out == [want]


@pytest.mark.parametrize(
    "fmt,nargs,why",
    [
        (b"%f", 1, "floating-point"),
        (b"%e", 1, "floating-point"),
        (b"%n", 1, "not supported"),
        (b"%*d", 2, "'*'"),
        (b"%ls", 1, "wide"),
        (b"%d %d", 1, "wants 2 arguments, 1 given"),
        (b"bad \\q", 0, "unrecognized escape"),
        (b"trailing %", 0, "incomplete"),
    ],
)
def test_printf_refused(fmt: bytes, nargs: int, why: str) -> None:
    code = c(1) * nargs + c(0) + c(0) + printf(fmt, nargs) + op("end")
    with pytest.raises(AgentError, match=why.replace("*", r"\*")):
        A.validate(code, condition=False)


def test_printf_pops_its_arguments_and_leaves_the_rest() -> None:
    out: list[str] = []
    code = asm(c(7), c(5), c(0), c(0)) + printf(b"%d", 1) + op("end")
    assert A.compile_expr(code, make_env(out))(State()) == 7 and out == ["5"]


def test_printf_of_unreadable_string_is_an_evaluation_error() -> None:
    code = c(0x9000) + c(0) + c(0) + printf(b"%s", 1) + op("end")
    fn = A.compile_expr(code, make_env(), condition=False)
    with pytest.raises(AgentEvalError):
        fn(State())


# ---- refused bytecode --------------------------------------------------------------------------------

REFUSED: list[tuple[str, bytes, str]] = [
    ("empty", b"", "empty"),
    ("unknown opcode 0x00", bytes([0x00, 0x27]), "unknown opcode 0x00"),
    ("unknown opcode 0x35", bytes([0x35]), "unknown opcode 0x35"),
    ("truncated const32", bytes([0x24, 1, 2]), "truncated"),
    ("truncated reg", bytes([0x26, 0]), "truncated"),
    ("float prefix", asm("float", c(1), "end"), "float"),
    ("ref_float", asm(c(0x1000), "ref_float", "end"), "ref_float"),
    ("ref_double", asm(c(0x1000), "ref_double", "end"), "ref_double"),
    ("ref_long_double", asm(c(0x1000), "ref_long_double", "end"), "ref_long_double"),
    ("l_to_d", asm(c(1), "l_to_d", "end"), "l_to_d"),
    ("d_to_l", asm(c(1), "d_to_l", "end"), "d_to_l"),
    ("invalid2", asm("invalid2", c(1), "end"), "invalid2"),
    ("underflow", asm(c(1), "add", "end"), "underflow"),
    ("pick too deep", asm(c(1), ("pick", 1), "end"), "underflow"),
    ("runs off the end", asm(c(1)), "runs off the end"),
    ("condition with an empty stack", asm("end"), "no value"),
    ("backward jump (a loop)", asm(c(1), ("goto", 0)), "backward"),
    ("jump into an immediate", asm(c(1), ("if_goto", 4), c(2), "end"), "not an instruction boundary"),
    ("jump past the end", asm(c(1), ("goto", 40)), "not an instruction boundary"),
    ("depths disagree at a join", asm(c(1), ("if_goto", 9), c(5), c(6), "end"), "disagrees"),
    ("stack overflow", c(1) * (A.STACK_MAX + 1) + op("end"), "deeper than"),
    ("ext 0", asm(c(1), ("ext", 0), "end"), "meaningless"),
    ("unterminated printf format", c(0) + c(0) + bytes([0x34, 0, 0, 2]) + b"ab" + op("end"), "unterminated"),
    ("printf format past the end", c(0) + c(0) + bytes([0x34, 0, 0, 9]) + b"ab", "past the end"),
]


@pytest.mark.parametrize("name,code,why", REFUSED, ids=[r[0] for r in REFUSED])
def test_refused(name: str, code: bytes, why: str) -> None:
    with pytest.raises(AgentError, match=why):
        A.validate(code, condition=name != "unterminated printf format")


def test_unavailable_register_is_refused_at_compile_time() -> None:
    with pytest.raises(AgentError, match="register 16 is not available"):
        A.compile_expr(asm(("reg", 16), "end"), make_env())


def test_commands_may_end_with_an_empty_stack_but_conditions_may_not() -> None:
    A.validate(asm("end"), condition=False)
    with pytest.raises(AgentError):
        A.validate(asm("end"), condition=True)


def test_unreachable_code_is_skipped_not_compiled() -> None:
    # goto over an underflowing add: never executed, so not an error (gdb never emits it, but it is valid)
    assert run(asm(c(4), ("goto", 6), "add", "end")) == 4


# ---- runtime errors -------------------------------------------------------------------------------------


def test_division_by_zero_raises() -> None:
    for name in ("div_signed", "div_unsigned", "rem_signed", "rem_unsigned"):
        with pytest.raises(ZeroDivisionError):
            run(asm(c(1), c(0), name, "end"))


def test_unreadable_memory_raises() -> None:
    with pytest.raises(AgentEvalError):
        run(asm(op("const32", 0xDEAD0000), "ref32", "end"))


def test_a_ref_on_a_branch_not_taken_does_not_fault() -> None:
    # `p != 0 && *p == 5` with p == 0: the dereference is behind an if_goto
    code = asm(("reg", 0), "dup", "log_not", ("if_goto", 15), "ref32", c(5), "equal", ("goto", 18), "pop", c(0), "end")
    assert run(code, State({0: 0})) == 0
    assert run(code, State({0: 0x3000}, {0x3000: (5).to_bytes(4, "little")})) == 1


# ---- differential: random programs, compiled vs. interpreted ----------------------------------------------


def ctrunc(a: int, b: int) -> int:
    """C's integer division: truncation toward zero."""
    q = abs(a) // abs(b)
    return q if (a < 0) == (b < 0) else -q


def binop(n: str, a: int, b: int) -> int:
    """The binary operators on 64-bit items, written out plainly (b is the top of the stack)."""
    sa, sb = sx(a), sx(b)
    if n in ("add", "sub", "mul", "bit_and", "bit_or", "bit_xor"):
        return {"add": a + b, "sub": a - b, "mul": a * b, "bit_and": a & b, "bit_or": a | b, "bit_xor": a ^ b}[n]
    if n == "equal":
        return int(a == b)
    if n == "less_signed":
        return int(sa < sb)
    if n == "less_unsigned":
        return int(a < b)
    if n == "div_unsigned":
        return a // b
    if n == "rem_unsigned":
        return a % b
    if n == "div_signed":
        return ctrunc(sa, sb)
    if n == "rem_signed":
        return sa - sb * ctrunc(sa, sb)
    if n == "lsh":
        return a << b if b < 64 else 0
    if n == "rsh_unsigned":
        return a >> b
    assert n == "rsh_signed"
    return sa >> min(b, 63)


def interpret(code: bytes, state: State, tsv: dict[int, int]) -> int:
    """A plain stack machine from the manual's descriptions (no validation; trusted input)."""
    insns = {i.offset: i for i in A.decode(code)}
    order = sorted(insns)
    st: list[int] = []
    pc = 0
    while True:
        i = insns[pc]
        nxt = order[order.index(pc) + 1] if order.index(pc) + 1 < len(order) else None
        n = i.name
        if n == "end":
            return st[-1]
        if n in (
            "add",
            "sub",
            "mul",
            "bit_and",
            "bit_or",
            "bit_xor",
            "equal",
            "less_signed",
            "less_unsigned",
            "div_unsigned",
            "rem_unsigned",
            "lsh",
            "rsh_unsigned",
            "rsh_signed",
            "div_signed",
            "rem_signed",
        ):
            b, a = st.pop(), st.pop()
            st.append(binop(n, a, b) & M64)
        elif n == "log_not":
            st.append(int(not st.pop()))
        elif n == "bit_not":
            st.append(st.pop() ^ M64)
        elif n == "ext":
            assert i.arg is not None
            st.append(sx(st.pop(), i.arg) & M64 if i.arg < 64 else st.pop())
        elif n == "zero_ext":
            assert i.arg is not None
            st.append(st.pop() & ((1 << i.arg) - 1))
        elif n.startswith("ref"):
            st.append(ref(state, st.pop(), int(n[3:]) // 8))
        elif n.startswith("const"):
            assert i.arg is not None
            st.append(i.arg)
        elif n == "reg":
            assert i.arg is not None
            st.append(state.regs[i.arg])
        elif n == "dup":
            st.append(st[-1])
        elif n == "pop":
            st.pop()
        elif n == "swap":
            st[-1], st[-2] = st[-2], st[-1]
        elif n == "pick":
            assert i.arg is not None
            st.append(st[-1 - i.arg])
        elif n == "rot":
            st[-3], st[-2], st[-1] = st[-1], st[-3], st[-2]
        elif n == "getv":
            assert i.arg is not None
            st.append(tsv.get(i.arg, 0))
        elif n == "setv":
            assert i.arg is not None
            tsv[i.arg] = st[-1]
        elif n == "if_goto":
            if st.pop():
                assert i.arg is not None
                pc = i.arg
                continue
        elif n == "goto":
            assert i.arg is not None
            pc = i.arg
            continue
        else:
            raise AssertionError(n)
        assert nxt is not None
        pc = nxt


_LEAF = ["const", "reg", "getv", "dup", "pick"]
_UNARY = ["log_not", "bit_not", "ext", "zero_ext", "ref32", "ref8", "setv"]
_BINARY = [
    "add",
    "sub",
    "mul",
    "bit_and",
    "bit_or",
    "bit_xor",
    "equal",
    "less_signed",
    "less_unsigned",
    "lsh",
    "rsh_unsigned",
    "rsh_signed",
    "div_unsigned",
    "div_signed",
    "rem_signed",
    "rem_unsigned",
]
_SHUFFLE = ["swap", "rot", "pop"]


def random_program(rng: random.Random, length: int) -> bytes:
    """Straight-line pieces and balanced if/else diamonds; division only by non-zero constants."""
    out = bytearray()
    depth = 0

    def emit(b: bytes) -> None:
        out.extend(b)

    def straight(n: int) -> None:
        nonlocal depth
        for _ in range(n):
            choices = list(_LEAF)
            if depth >= 1:
                choices += _UNARY
            if depth >= 2:
                choices += _BINARY + ["swap", "pop"]
            if depth >= 3:
                choices += ["rot"]
            if depth > 12:
                choices = [x for x in choices if x not in _LEAF] or ["pop"]
            name = rng.choice(choices)
            if name == "const":
                emit(c(rng.choice([0, 1, 2, 7, 31, 63, 64, 0x80, 0xFFFFFFFF, rng.getrandbits(64)])))
                depth += 1
            elif name == "reg":
                emit(op("reg", rng.randrange(4)))
                depth += 1
            elif name == "getv":
                emit(op("getv", rng.randrange(2)))
                depth += 1
            elif name == "dup":
                if depth < 1:
                    emit(c(3))
                    depth += 1
                emit(op("dup"))
                depth += 1
            elif name == "pick":
                if depth < 1:
                    emit(c(9))
                    depth += 1
                emit(op("pick", rng.randrange(depth)))
                depth += 1
            elif name in ("ext", "zero_ext"):
                emit(op(name, rng.choice([1, 8, 16, 32, 63])))
            elif name in ("ref32", "ref8"):
                emit(c(0xFFF) + op("bit_and") + c(0x4000) + op("bit_or") + op(name))
            elif name == "setv":
                emit(op("setv", rng.randrange(2)))
            elif name in ("div_unsigned", "div_signed", "rem_signed", "rem_unsigned"):
                emit(op("pop") + c(rng.choice([1, 3, 7, 0xFFFFFFFF])) + op(name))
                depth -= 1
            elif name in ("lsh", "rsh_unsigned", "rsh_signed"):
                emit(c(63) + op("bit_and") + op(name))
                depth -= 1
            elif name in _BINARY:
                emit(op(name))
                depth -= 1
            elif name == "pop":
                emit(op("pop"))
                depth -= 1
            else:
                emit(op(name))

    straight(rng.randrange(1, length))
    for _ in range(rng.randrange(3)):
        if depth == 0:
            emit(c(1))
            depth += 1
        # cond if_goto THEN; <else part> goto JOIN; THEN: <then part>; JOIN:
        before = depth - 1
        emit(op("if_goto", 0))
        patch_if = len(out) - 2
        depth = before
        straight(rng.randrange(1, 4))
        else_depth = depth
        emit(op("goto", 0))
        patch_goto = len(out) - 2
        out[patch_if : patch_if + 2] = len(out).to_bytes(2, "big")
        depth = before
        straight(rng.randrange(1, 4))
        while depth > else_depth:
            emit(op("pop"))
            depth -= 1
        while depth < else_depth:
            emit(c(5))
            depth += 1
        out[patch_goto : patch_goto + 2] = len(out).to_bytes(2, "big")
        straight(rng.randrange(0, 3))
    if depth == 0:
        emit(c(0))
    emit(op("end"))
    return bytes(out)


def test_compiled_programs_agree_with_an_interpreter() -> None:
    rng = random.Random(1234)
    mem = {0x4000: bytes(rng.getrandbits(8) for _ in range(0x1004))}
    checked = 0
    for _ in range(600):
        code = random_program(rng, 14)
        try:
            A.validate(code)
        except AgentError as exc:  # the generator is not perfect about depths at joins
            assert "disagrees" in str(exc) or "deeper" in str(exc), (exc, A.disassemble(code))
            continue
        regs = {n: rng.choice([0, 1, 0xFFFFFFFF, rng.getrandbits(32)]) for n in range(4)}
        state = State(regs, mem)
        tsv_a: dict[int, int] = {0: 5}
        tsv_b: dict[int, int] = {0: 5}
        fn = A.compile_expr(code, make_env(tsv=tsv_a))
        assert (int(fn(state)) & M64, tsv_a) == (interpret(code, state, tsv_b), tsv_b), A.disassemble(code)
        checked += 1
    assert checked > 400


# ---- the breakpoint hook ------------------------------------------------------------------------------


class Errors(list[tuple[str, int, str]]):
    def __call__(self, what: str, index: int, exc: BaseException) -> None:
        self.append((what, index, type(exc).__name__))


ECX_EQ = lambda v: asm(("reg", ECX), ("ext", 32), c(v), "equal", "end")  # noqa: E731


def test_hook_single_condition() -> None:
    errors = Errors()
    bp = A.compile_breakpoint([ECX_EQ(7)], [], make_env(), errors)
    assert [bp.hook(State({ECX: v})) for v in (5, 6, 7, 8)] == [False, False, True, False]
    assert bp.counters == [4, 1, 0] and errors == []


def test_hook_conditions_are_ored() -> None:
    bp = A.compile_breakpoint([ECX_EQ(3), ECX_EQ(9)], [], make_env(), Errors())
    assert [v for v in range(12) if bp.hook(State({ECX: v}))] == [3, 9]


def test_hook_condition_error_stops_and_is_reported() -> None:
    errors = Errors()
    code = asm(op("const32", 0xDEAD0000), "ref32", "end")
    bp = A.compile_breakpoint([ECX_EQ(1), code], [], make_env(), errors)
    assert bp.hook(State({ECX: 1})) is True  # the first is true: the faulting one is not evaluated
    assert errors == []
    assert bp.hook(State({ECX: 2})) is True
    assert errors == [("condition", 1, "AgentEvalError")]
    assert bp.counters == [2, 1, 1]
    bp = A.compile_breakpoint([asm(c(1), c(0), "div_signed", "end")], [], make_env(), errors)
    assert bp.hook(State()) is True and errors[-1] == ("condition", 0, "ZeroDivisionError")


def test_hook_with_commands_runs_them_and_does_not_stop() -> None:
    out: list[str] = []
    errors = Errors()
    cmd = asm(("reg", ECX), c(0), c(0)) + printf(b"ecx=%d\\n", 1) + op("end")
    bp = A.compile_breakpoint([ECX_EQ(2)], [cmd], make_env(out), errors)
    assert [bp.hook(State({ECX: v})) for v in range(4)] == [False] * 4
    assert out == ["ecx=2\n"]  # only where the condition holds
    bp = A.compile_breakpoint([], [cmd, cmd], make_env(out), errors)
    assert bp.hook(State({ECX: 9})) is False and out[-2:] == ["ecx=9\n", "ecx=9\n"]


def test_hook_command_error_skips_the_rest_without_stopping() -> None:
    out: list[str] = []
    errors = Errors()
    bad = c(0x9999) + c(0) + c(0) + printf(b"%s", 1) + op("end")
    good = c(0) + c(0) + printf(b"ok", 0) + op("end")
    bp = A.compile_breakpoint([], [bad, good], make_env(out), errors)
    assert bp.hook(State()) is False
    assert out == [] and errors == [("command", 0, "AgentEvalError")]


def test_counters_survive_recompilation_and_programs_are_cached() -> None:
    counters = [0, 0, 0]
    cache: dict[tuple[bytes, bool], Any] = {}
    env = make_env()
    a = A.compile_breakpoint([ECX_EQ(7)], [], env, Errors(), counters, cache)
    a.hook(State({ECX: 7}))
    b = A.compile_breakpoint([ECX_EQ(7)], [], env, Errors(), counters, cache)
    b.hook(State({ECX: 1}))
    assert counters == [2, 1, 0] and len(cache) == 1


def test_generated_code_is_one_expression_for_a_simple_condition() -> None:
    fn = A.compile_expr(GDB_ECX_EQ_7, make_env())
    body = [line for line in (fn.__doc__ or "").splitlines()[1:] if line.strip()]
    assert len(body) == 1 and body[0].strip().startswith("return") and "cpu.regs[1]" in body[0]


# ---- the stub: qSupported, Z0 with ;X and ;cmds: ----------------------------------------------------------


class AgentTarget(TargetBase):
    """A minimal target with breakpoints and the agent ops: records what the stub hands it."""

    def __init__(self, conditions: bool = True, commands: bool = True) -> None:
        self.inserted: set[tuple[int, bool]] = set()
        self.conds: dict[tuple[int, bool], tuple[bytes, ...]] = {}
        self.cmds: dict[tuple[int, bool], tuple[tuple[bytes, ...], bool]] = {}
        self._conditions = conditions
        self._commands = commands
        outer = self

        class Points:
            def __init__(self, hw: bool) -> None:
                self.hw = hw

            def add(self, vaddr: int, kind: int) -> None:
                outer.inserted.add((vaddr, self.hw))

            def remove(self, vaddr: int, kind: int) -> None:
                outer.inserted.discard((vaddr, self.hw))

        self.sw, self.hw = Points(False), Points(True)

    def register_layout(self) -> Any:
        return I386_LAYOUT

    def threads(self) -> Sequence[ThreadInfo]:
        return [ThreadInfo(1)]

    def read_registers(self, tid: int) -> bytes:
        return bytes(I386_LAYOUT.g_size)

    def write_registers(self, tid: int, data: bytes) -> None:
        pass

    def read_register(self, tid: int, regnum: int) -> bytes | None:
        return bytes(I386_LAYOUT[regnum].size)

    def write_register(self, tid: int, regnum: int, data: bytes) -> bool:
        return True

    def read_memory(self, tid: int, vaddr: int, length: int) -> bytes:
        return bytes(length)

    def write_memory(self, tid: int, vaddr: int, data: bytes) -> None:
        pass

    def resume(self, actions: Sequence[ResumeAction]) -> None:
        pass

    def run_slice(self, max_insns: int) -> StopEvent | None:
        return None

    def interrupt(self) -> None:
        pass

    def kill(self) -> None:
        pass

    def detach(self) -> None:
        pass

    def supports_sw_breakpoints(self) -> Any:
        return self.sw

    def supports_hw_breakpoints(self) -> Any:
        return self.hw

    def supports_breakpoint_conditions(self) -> Any:
        return self if self._conditions else None

    def supports_breakpoint_commands(self) -> Any:
        return self if self._commands else None

    def set_conditions(self, vaddr: int, kind: int, hardware: bool, conditions: Sequence[bytes]) -> None:
        for code in conditions:
            A.validate(code)  # what a real target does (it compiles): refused bytecode raises AgentError
        if conditions:
            self.conds[(vaddr, hardware)] = tuple(conditions)
        else:
            self.conds.pop((vaddr, hardware), None)

    def set_commands(self, vaddr: int, kind: int, hardware: bool, commands: Sequence[bytes], persist: bool) -> None:
        for code in commands:
            A.validate(code, condition=False)
        if commands:
            self.cmds[(vaddr, hardware)] = (tuple(commands), persist)
        else:
            self.cmds.pop((vaddr, hardware), None)


def features(stub: GdbStub) -> list[bytes]:
    return stub.handle_packet(b"qSupported:swbreak+;hwbreak+").packets[0].split(b";")


def test_qsupported_advertises_exactly_what_the_target_opts_into() -> None:
    assert {b"ConditionalBreakpoints+", b"BreakpointCommands+"} <= set(features(GdbStub(AgentTarget())))
    only_cond = features(GdbStub(AgentTarget(commands=False)))
    assert b"ConditionalBreakpoints+" in only_cond and b"BreakpointCommands+" not in only_cond
    neither = features(GdbStub(AgentTarget(False, False)))
    assert b"ConditionalBreakpoints+" not in neither and b"BreakpointCommands+" not in neither


def test_z0_with_conditions_reaches_the_target_and_z0_without_clears_them() -> None:
    t = AgentTarget()
    stub = GdbStub(t)
    assert stub.handle_packet(b"Z0,100762,1;X9,260001162022071327").packets == [b"OK"]
    assert t.conds == {(0x100762, False): (GDB_ECX_EQ_7,)} and (0x100762, False) in t.inserted
    # two conditions back to back, as gdb sends them (OR)
    two = b"Z1,2000,1;X9,260001162022071327X9,260001162022091327"
    assert stub.handle_packet(two).packets == [b"OK"]
    assert len(t.conds[(0x2000, True)]) == 2
    # gdb re-inserts without a condition: cleared
    assert stub.handle_packet(b"Z0,100762,1").packets == [b"OK"]
    assert (0x100762, False) not in t.conds
    assert stub.handle_packet(b"z1,2000,1").packets == [b"OK"]
    assert t.conds == {} and t.inserted == {(0x100762, False)}


def test_z0_with_unsupported_bytecode_is_an_error_and_nothing_is_inserted() -> None:
    t = AgentTarget()
    stub = GdbStub(t)
    assert E_AGENT == b"E%02x" % errno.ENOEXEC
    for bad in (b"X3,011b27", b"X2,2202", b"X1,00"):  # float; no end; unknown opcode
        assert stub.handle_packet(b"Z0,3000,1;" + bad).packets == [E_AGENT]
    assert t.inserted == set() and t.conds == {} and stub.inserted_points == frozenset()


def test_commands_and_persistence_across_a_detach() -> None:
    t = AgentTarget()
    stub = GdbStub(t)
    cmd = (c(0) + c(0) + printf(b"hi", 0) + op("end")).hex().encode()
    n = b"%x" % (len(cmd) // 2)
    assert stub.handle_packet(b"Z0,4000,1;cmds:1,X" + n + b"," + cmd).packets == [b"OK"]
    assert stub.handle_packet(b"Z0,5000,1;X9,260001162022071327;cmds:0,X" + n + b"," + cmd).packets == [b"OK"]
    assert t.cmds[(0x4000, False)][1] is True and t.cmds[(0x5000, False)][1] is False
    stub.handle_packet(b"D")
    # cmds:1 (gdb's disconnected-dprintf): the breakpoint and its commands stay; the other one is gone
    assert t.inserted == {(0x4000, False)} and set(t.cmds) == {(0x4000, False)} and t.conds == {}


def test_target_without_agent_ops_ignores_the_bytecode_as_before() -> None:
    t = AgentTarget(False, False)
    stub = GdbStub(t)
    assert stub.handle_packet(b"Z0,1000,1;X2,2201cmds:1,X1,27").packets == [b"OK"]
    assert t.inserted == {(0x1000, False)}


def test_watchpoints_still_take_no_conditions() -> None:
    stub = GdbStub(AgentTarget())
    assert stub.handle_packet(b"Z2,1000,4;X9,260001162022071327").packets == [b"E16"]
