"""Differential tests of integer instruction semantics: gdbemu against Unicorn.

Every instruction form below is assembled once (one ``as --32`` run for the
whole table, in a session fixture), then run from many seeded random initial
states in both emulators through :mod:`oracle`; registers, EIP, the status
flags and DF, and the data window and stack are compared.  Bits the Intel SDM
leaves undefined for a given case are masked (the comment or helper next to
each mask quotes the SDM's rule), so a mismatch is a real semantic difference.

Why a table of forms rather than random instruction bytes: each form names
what it exercises (operand size, register/memory, encoding variant), a
failure points at exactly one, and the state generator of a family can aim
at its edge cases (shift counts 0/1/size/31/32, divide overflow, equal
compare operands, page-crossing operands, overlapping string copies).

Besides one-instruction forms the table has short sequences: flags produced
by one instruction and consumed by a later one, stores followed by
overlapping loads, faults after other instructions, and snippets placed
across a page boundary.  Each form's cases run first while gdbemu's block is
cold, then (after a warm-up) while it is compiled, since the two tiers are
separate code paths; some sequences also run stopped mid-block by the
instruction limit.

Where Unicorn is wrong, the case is masked and checked against the SDM
instead (see ``_lock_neg_gen``); the harness also works around Unicorn's
behaviour for REP counting, reused-instance exceptions and #UD reporting
(see :mod:`oracle`).  Known gdbemu bugs are listed in ``CORE_BUGS`` and
marked xfail(strict=True).

The default run executes ``sum(form.cases)`` cases plus the stopped-early
ones (over 45,000; ``test_table_size`` keeps it above 20,000); the ``slow``
variant (``-m slow``) runs every form with ten times as many states from
another seed.  Everything is deterministic: a failure reproduces with the
same seed.

16-bit code (``test_form16``): the same table assembled with ``.code16``, minus
the forms ``_NOT_16`` leaves out (each kind with its reason), plus forms only
16-bit code has (16-bit addressing, SP stacks, the size-dependent one-byte
opcodes, string and rep string forms with DS = ES = 0x1000), run by Unicorn in
real mode and by gdbemu in a 16-bit code segment (support/oracle.py).  The
default run takes an eighth of each form's cases (about 5,400 in all, both
tiers); ``slow`` each form's full count (about 40,000, 8x the default run).
"""

from __future__ import annotations

import dataclasses
import random
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from support.oracle import (
    AF,
    ARITH_DF,
    CF,
    CODE_ADDR,
    DATA_BASE,
    DATA_SIZE,
    DF,
    EAX,
    EBP,
    EBX,
    ECX,
    EDI,
    EDX,
    ESI,
    ESP,
    OF,
    PAGE,
    PF,
    REG_NAMES,
    REGIONS,
    SF,
    STACK_BASE,
    STACK_SIZE,
    STATUS_FLAGS,
    ZF,
    DiffRunner,
    Outcome,
    State,
    Undefined,
    compare,
    describe_state,
)

M32 = 0xFFFFFFFF
DATA_END = DATA_BASE + DATA_SIZE
STACK_TOP = STACK_BASE + STACK_SIZE
STACK_MID = STACK_BASE + STACK_SIZE // 2  # a page boundary: pushes straddle it
# Status flags that are undefined for the families noted (Intel SDM vol. 2).
MUL_UNDEF = SF | ZF | AF | PF  # MUL, IMUL: "SF, ZF, AF, and PF flags are undefined"
BT_UNDEF = OF | SF | AF | PF  # BT/BTS/BTR/BTC: "OF, SF, AF, and PF flags are undefined"
BSF_UNDEF = CF | OF | SF | AF | PF  # BSF/BSR: only ZF is defined
RESERVED_FLAGS = 0x802A  # bit 1 (always 1) and bits 3, 5, 15 (always 0)
# EFLAGS image bits pushed by PUSHF that the suite does not control or compare:
# TF IF IOPL NT RF VM AC VIF VIP ID (system state; both emulators run at CPL 0).
PUSHF_SYSTEM_BITS = 0x3F7300

DEFAULT_SEED = 20240601
SLOW_SEED = 7777
SLOW_FACTOR = 10

# --------------------------------------------------------------------------
# Operands and registers
# --------------------------------------------------------------------------

_REG8 = {"al": (0, 0), "cl": (1, 0), "dl": (2, 0), "bl": (3, 0), "ah": (0, 8), "ch": (1, 8), "dh": (2, 8), "bh": (3, 8)}
_REG16 = {n: i for i, n in enumerate(("ax", "cx", "dx", "bx", "sp", "bp", "si", "di"))}
_REG32 = {n: i for i, n in enumerate(REG_NAMES)}


def reg_info(name: str) -> tuple[int, int, int]:
    """(register index, bit shift, width in bits) of a register name."""
    if name in _REG32:
        return _REG32[name], 0, 32
    if name in _REG16:
        return _REG16[name], 0, 16
    idx, shift = _REG8[name]
    return idx, shift, 8


@dataclasses.dataclass(frozen=True)
class R:
    """A register operand."""

    name: str

    @property
    def size(self) -> int:
        return reg_info(self.name)[2] // 8

    @property
    def index(self) -> int:
        return reg_info(self.name)[0]

    def asm(self) -> str:
        return self.name


_PTR = {1: "byte", 2: "word", 4: "dword", 8: "qword"}


@dataclasses.dataclass(frozen=True)
class M:
    """A memory operand ``[base + index*scale + disp]`` placed in the data window."""

    size: int
    disp: int = 0
    base: str | None = "ebx"
    index: str | None = None
    scale: int = 1

    def asm(self) -> str:
        parts = []
        if self.base:
            parts.append(self.base)
        if self.index:
            parts.append(f"{self.index}*{self.scale}")
        inner = "+".join(parts)
        if not inner:
            inner = f"{self.disp:#x}"
        elif self.disp:
            inner += f"{self.disp:+#x}"
        return f"{_PTR[self.size]} ptr [{inner}]"

    def regs(self) -> set[int]:
        return {_REG32[r] for r in (self.base, self.index) if r}


@dataclasses.dataclass(frozen=True)
class Imm:
    """An immediate operand (its value is fixed when the table is assembled)."""

    value: int

    def asm(self) -> str:
        return f"{self.value:#x}" if self.value >= 0 else f"-{-self.value:#x}"


Operand = R | M | Imm

# Addressing modes cycled through by the memory forms, so decoding of
# ModRM/SIB/displacement variants is exercised along with the semantics.
AMODES: tuple[dict, ...] = (
    {"base": "ebx", "disp": 0x10},
    {"base": "esi", "index": "edi", "scale": 4, "disp": -0x44},
    {"base": "ebx", "disp": 0x12345},
    {"base": None, "index": "ebp", "scale": 8, "disp": 0x7FF3},
    {"base": "ebp", "disp": -3},
    {"base": "ebx", "disp": 0},
    {"base": "eax", "index": "ecx", "scale": 2, "disp": 0x7F},
    {"base": "edi", "disp": -0x1000},
)


def mem(size: int, k: int, avoid: Sequence[str] = ()) -> M:
    """The k-th memory operand of ``size`` whose address registers avoid ``avoid``."""
    avoid_idx = {reg_info(r)[0] for r in avoid}
    for j in range(len(AMODES)):
        m = M(size, **AMODES[(k + j) % len(AMODES)])
        if not (m.regs() & avoid_idx):
            return m
    raise AssertionError(f"no addressing mode avoids {avoid}")


_POOL = {
    1: ("dh", "cl", "al", "bh", "ah", "dl", "ch", "bl"),
    2: ("si", "dx", "di", "ax", "cx", "bp", "bx"),
    4: ("esi", "edx", "edi", "eax", "ecx", "ebp", "ebx"),
}


def regs_for(size: int, m: M | None, k: int, n: int) -> list[R]:
    """n distinct data registers of ``size`` not used by ``m``'s address, rotated by k."""
    used = m.regs() if m else set()
    pool = [r for r in _POOL[size] if reg_info(r)[0] not in used]
    pool = pool[k % len(pool) :] + pool[: k % len(pool)]
    out: list[R] = []
    for r in pool:
        if all(reg_info(r)[0] != o.index or size == 1 and r != o.name for o in out):
            out.append(R(r))
        if len(out) == n:
            return out
    raise AssertionError("not enough registers")


# --------------------------------------------------------------------------
# Random values and the state builder
# --------------------------------------------------------------------------

_EDGE_BYTES = (0x00, 0x01, 0x7F, 0x80, 0xFF, 0xFE, 0x40, 0x0F, 0x99)


def rand_val(rng: random.Random, bits: int) -> int:
    """A random value of ``bits`` bits, biased towards sign/carry edge cases."""
    mask = (1 << bits) - 1
    r = rng.random()
    if r < 0.4:
        return rng.getrandbits(bits)
    if r < 0.6:
        top = 1 << (bits - 1)
        return rng.choice((0, 1, 2, mask, mask - 1, top, top - 1, top + 1)) & mask
    if r < 0.7:
        return (1 << rng.randrange(bits)) & mask
    n = (bits + 7) // 8
    data = bytes(rng.choice(_EDGE_BYTES) if rng.random() < 0.7 else rng.getrandbits(8) for _ in range(n))
    return int.from_bytes(data, "little") & mask


def rand_signed(rng: random.Random, bits: int) -> int:
    v = rand_val(rng, bits)
    return v - (1 << bits) if v >> (bits - 1) else v


def choose_ea(rng: random.Random, size: int, margin: int = 0x200) -> int:
    """An address for a ``size``-byte operand in the data window.

    A quarter of them straddle a page boundary, a quarter are aligned, the
    rest are arbitrary (mostly unaligned).
    """
    lo, hi = DATA_BASE + margin, DATA_END - margin - size
    r = rng.random()
    if r < 0.25 and size > 1:
        boundary = rng.randrange(lo // PAGE + 1, hi // PAGE) * PAGE
        return boundary - rng.randrange(1, size)
    if r < 0.5:
        return rng.randrange(lo, hi) & ~(size - 1)
    return rng.randrange(lo, hi)


def stack_pointer(rng: random.Random) -> int:
    """ESP near the middle of the stack (a page boundary), usually dword-aligned."""
    if rng.random() < 0.1:  # a dword push or pop straddles the page boundary
        return STACK_MID + rng.randrange(1, 4)
    esp = STACK_MID + rng.randrange(-0x40, 0x41) * 4
    if rng.random() < 0.15:
        esp += rng.randrange(1, 4)
    return esp


def code_target(rng: random.Random) -> int:
    """A branch target inside the code region (mapped in Unicorn)."""
    return rng.randrange(0x100, 0xF000)


class SB:
    """Builds one random initial state; families then adjust it."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.regs = [rand_val(rng, 32) for _ in range(8)]
        self.regs[ESP] = stack_pointer(rng)
        self.eflags = rng.getrandbits(32) & ARITH_DF
        self.mem: dict[int, int] = {}
        self.ea: dict[M, int] = {}

    # registers -----------------------------------------------------------
    def reg(self, name: str) -> int:
        idx, shift, bits = reg_info(name)
        return (self.regs[idx] >> shift) & ((1 << bits) - 1)

    def set_reg(self, name: str, value: int) -> None:
        idx, shift, bits = reg_info(name)
        mask = ((1 << bits) - 1) << shift
        self.regs[idx] = (self.regs[idx] & ~mask) | ((value << shift) & mask)

    # memory ---------------------------------------------------------------
    def write(self, addr: int, data: bytes) -> None:
        for i, b in enumerate(data):
            self.mem[addr + i] = b

    def write_int(self, addr: int, size: int, value: int) -> None:
        self.write(addr, (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little"))

    def read_int(self, addr: int, size: int) -> int:
        return int.from_bytes(bytes(self.mem[addr + i] for i in range(size)), "little")

    def place(self, m: M, ea: int | None = None, margin: int = 0x200) -> int:
        """Choose the operand's address, set its address registers, fill it."""
        rng = self.rng
        if ea is None:
            ea = choose_ea(rng, m.size, margin)
        if m.base is None:
            assert m.index
            ea -= (ea - m.disp) % m.scale
            self.regs[_REG32[m.index]] = ((ea - m.disp) // m.scale) & M32
        else:
            idx_part = 0
            if m.index:
                iv = rng.getrandbits(32) if rng.random() < 0.3 else rng.randrange(-0x40, 0x40) & M32
                self.regs[_REG32[m.index]] = iv
                idx_part = iv * m.scale
            self.regs[_REG32[m.base]] = (ea - m.disp - idx_part) & M32
        self.ea[m] = ea
        self.write_int(ea, m.size, rand_val(rng, 8 * m.size))
        return ea

    # operands ---------------------------------------------------------------
    def get(self, op: Operand) -> int:
        if isinstance(op, R):
            return self.reg(op.name)
        if isinstance(op, M):
            return self.read_int(self.ea[op], op.size)
        return op.value

    def set(self, op: Operand, value: int) -> None:
        if isinstance(op, R):
            self.set_reg(op.name, value)
        elif isinstance(op, M):
            self.write_int(self.ea[op], op.size, value)
        else:
            raise TypeError("cannot set an immediate")

    def fill(self, ops: Sequence[Operand]) -> None:
        """Place memory operands and give register operands size-biased values."""
        for op in ops:
            if isinstance(op, M):
                self.place(op)
        for op in ops:
            if isinstance(op, R):
                self.set_reg(op.name, rand_val(self.rng, 8 * op.size))
        vals = [op for op in ops if not isinstance(op, Imm)]
        if len(vals) >= 2 and self.rng.random() < 0.12:
            a, b = vals[0], vals[1]
            self.set(b, self.get(a) & ((1 << (8 * b.size)) - 1))

    def state(self) -> State:
        runs: list[tuple[int, bytearray]] = []
        for addr in sorted(self.mem):
            if runs and runs[-1][0] + len(runs[-1][1]) == addr:
                runs[-1][1].append(self.mem[addr])
            else:
                runs.append((addr, bytearray([self.mem[addr]])))
        mem = tuple((a, bytes(d)) for a, d in runs)
        return State(tuple(r & M32 for r in self.regs), self.eflags, mem)


@dataclasses.dataclass
class Case:
    """One initial state, what is undefined for it, and an optional SDM self-check.

    ``sdm_check`` stands in for Unicorn where Unicorn is known to be wrong:
    the bits it cannot be trusted on are masked in ``undefined`` and checked
    against the SDM's definition on gdbemu's outcome instead.
    """

    state: State
    undefined: Undefined
    sdm_check: Callable[[Outcome], list[str]] | None = None


Gen = Callable[[random.Random], Case]


@dataclasses.dataclass
class Form:
    """One instruction form: its assembly, how to make states, how many."""

    asm: str  # one instruction per line; {L} is the snippet's own address
    gen: Gen
    cases: int
    branch: bool = False
    flags_mask: int = ARITH_DF
    name: str = ""
    code_addr: int = CODE_ADDR  # where the snippet runs (some straddle a page boundary)
    # (k, undefined flags): also run cases stopped after the first k instructions.
    partial: tuple[int, int] | None = None
    data_seg: int = 0  # 16-bit mode: DS/ES/FS/GS (0, or 0x1000 for 16-bit addressing)

    @property
    def n_insns(self) -> int:
        return len([ln for ln in self.asm.splitlines() if ln.strip()])


FORMS: list[Form] = []


def _slug(text: str) -> str:
    """A pytest id for a form: 'add dword ptr [ebx+0x10], esi' -> 'add_m32_ebx+0x10,esi'."""
    # Raw encodings are named by their comment: ".byte 0xf3, 0xc3  # rep ret" -> "raw rep ret".
    lines = [
        "raw " + ln.split("#", 1)[1].split("(")[0].split(":")[0] if ln.strip().startswith(".byte") and "#" in ln else ln
        for ln in text.strip().splitlines()
    ]
    s = "\n".join(lines)
    s = s.replace("{L}", "L")
    s = re.sub(r"\b(byte|word|dword|qword) ptr ", lambda m: _MSLUG[m.group(1)], s)
    s = re.sub(r"\s*,\s*", ",", s.strip())
    s = re.sub(r"\s*\n\s*", ";", s)
    s = re.sub(r"[^0-9A-Za-z+\-*;,.]+", "_", s).strip("_")
    return re.sub(r"_*([,;])_*", r"\1", s)


_MSLUG = {"byte": "m8", "word": "m16", "dword": "m32", "qword": "m64"}


def add(asm: str, gen: Gen, cases: int, **kw: object) -> None:
    name = _slug(asm)
    if kw.get("code_addr", CODE_ADDR) != CODE_ADDR:
        name += f"_at_{kw['code_addr']:#x}"
    base, n = name, 2
    while any(f.name == name for f in FORMS):
        name, n = f"{base}#{n}", n + 1
    FORMS.append(Form(asm=asm, gen=gen, cases=cases, name=name, **kw))  # type: ignore[arg-type]


def simple(
    ops: Sequence[Operand], undef: Callable[[SB], Undefined] | None = None, tweak: Callable[[SB], None] | None = None
) -> Gen:
    """A generator: random state, operands filled, optional tweak, undefined mask."""

    def gen(rng: random.Random) -> Case:
        sb = SB(rng)
        sb.fill(ops)
        if tweak:
            tweak(sb)
        return Case(sb.state(), undef(sb) if undef else Undefined())

    return gen


def fixed_undef(flags: int) -> Callable[[SB], Undefined]:
    return lambda sb: Undefined(flags=flags)


def ops_asm(mnemonic: str, ops: Sequence[Operand]) -> str:
    return f"{mnemonic} " + ", ".join(o.asm() for o in ops) if ops else mnemonic


# --------------------------------------------------------------------------
# The instruction table
# --------------------------------------------------------------------------

SIZES = (1, 2, 4)
CONDS = ("o", "no", "b", "ae", "e", "ne", "be", "a", "s", "ns", "p", "np", "l", "ge", "le", "g")
_ACC = {1: "al", 2: "ax", 4: "eax"}
# Full-width immediates chosen to avoid the sign-extended imm8 encodings.
_IMM_FULL = {1: 0x9C, 2: 0x8421, 4: 0x80F3A5C7}
_IMM_SX8 = {2: -0x7F, 4: -0x80}


def _alu_forms() -> None:
    # AND/OR/XOR/TEST: "OF and CF flags are cleared; ... The state of the AF flag is undefined."
    logic = {"and", "or", "xor", "test"}
    for k, op in enumerate(("add", "adc", "sub", "sbb", "cmp", "and", "or", "xor")):
        und = fixed_undef(AF) if op in logic else None
        for s in SIZES:
            m = mem(s, k + s)
            d, r = regs_for(s, None, k + s, 2)
            md, mr = regs_for(s, m, k, 2)
            shapes: list[list[Operand]] = [
                [d, r],
                [md, m],
                [m, mr],
                [d, Imm(_IMM_FULL[s])],
                [m, Imm(_IMM_FULL[s] ^ 0x41)],
                [R(_ACC[s]), Imm(_IMM_FULL[s] - 3)],
            ]
            if s > 1:
                shapes += [[d, Imm(_IMM_SX8[s])], [m, Imm(5)]]
            for ops in shapes:
                add(ops_asm(op, ops), simple(ops, und), 50)
            if op != "cmp":
                add("lock " + ops_asm(op, [m, mr]), simple([m, mr], und), 30)
            if s == 4:
                add("{load} " + ops_asm(op, [d, r]), simple([d, r], und), 30)
    # 0x82 is an alias of 0x80 in 32-bit mode.
    add(".byte 0x82, 0xc1, 0x05  # add cl, 5 (opcode 82)", simple([R("cl")]), 30)
    for k, s in enumerate(SIZES):
        m = mem(s, k)
        d, r = regs_for(s, None, k, 2)
        (mr,) = regs_for(s, m, k, 1)
        for ops in (
            [d, r],
            [m, mr],
            [d, Imm(_IMM_FULL[s])],
            [m, Imm(_IMM_FULL[s] >> 1)],
            [R(_ACC[s]), Imm(_IMM_FULL[s])],
        ):
            add(ops_asm("test", ops), simple(ops, fixed_undef(AF)), 50)


def _unary_forms() -> None:
    # INC/DEC: CF unaffected, the rest as ADD/SUB.  NEG: all defined.  NOT: no flags.
    for k, op in enumerate(("inc", "dec", "neg", "not")):
        for s in SIZES:
            m = mem(s, k + s)
            (d,) = regs_for(s, None, k + 2 * s, 1)
            add(ops_asm(op, [d]), simple([d]), 60)
            add(ops_asm(op, [m]), simple([m]), 40)
        for s in (1, 4):
            m = mem(s, k + s)
            add("lock " + ops_asm(op, [m]), _lock_neg_gen(m) if op == "neg" else simple([m]), 30)
    add("inc eax\ninc eax\ndec ecx", simple([]), 40)


def szp(value: int, bits: int) -> int:
    """SF, ZF and PF of a result as the SDM defines them (PF: parity of the low byte)."""
    value &= (1 << bits) - 1
    f = SF if value >> (bits - 1) else 0
    f |= ZF if value == 0 else 0
    f |= PF if bin(value & 0xFF).count("1") % 2 == 0 else 0
    return f


def _lock_neg_gen(m: M) -> Gen:
    """LOCK NEG on memory, with Unicorn's wrong SF/ZF/PF replaced by an SDM check.

    Unicorn 2.1.4 sets SF, ZF and PF of LOCK NEG from the *source* operand
    (e.g. lock neg dword [mem]=0x8a1de789 gives SF=1 PF=0; the result
    0x75e21877 has SF=0 PF=1).  The SDM (NEG, "Flags Affected": "The OF, SF,
    ZF, AF, and PF flags are set according to the result") defines them from
    the result, so those three are masked against Unicorn and checked against
    the result gdbemu stored (which itself is compared with Unicorn's).
    """

    def gen(rng: random.Random) -> Case:
        sb = SB(rng)
        sb.fill([m])
        ea = sb.ea[m]

        def check(gd: Outcome) -> list[str]:
            off = ea - DATA_BASE
            result = int.from_bytes(gd.mem[DATA_BASE][off : off + m.size], "little")
            want = szp(result, 8 * m.size)
            got = gd.eflags & (SF | ZF | PF)
            return [] if got == want else [f"SF/ZF/PF of result {result:#x}: want {want:#x} (SDM), gdbemu {got:#x}"]

        return Case(sb.state(), Undefined(flags=SF | ZF | PF), check)

    return gen


def _mul_forms() -> None:
    # MUL/IMUL: "OF and CF ... SF, ZF, AF, and PF flags are undefined."
    und = fixed_undef(MUL_UNDEF)
    for k, op in enumerate(("mul", "imul")):
        for s in SIZES:
            avoid = ("eax", "edx")
            (d,) = regs_for(s, None, k + s, 1)
            while d.index in (EAX, EDX):
                d = R(_POOL[s][(_POOL[s].index(d.name) + 1) % len(_POOL[s])])
            m = mem(s, k + s, avoid)
            add(ops_asm(op, [d]), simple([R(_ACC[s]), d], und), 80)
            add(ops_asm(op, [m]), simple([R(_ACC[s]), m], und), 60)
    for k, s in enumerate((2, 4)):
        d, r = regs_for(s, None, k, 2)
        m = mem(s, k + 3)
        (md,) = regs_for(s, m, k, 1)
        for ops in (
            [d, r],
            [md, m],
            [d, r, Imm(0x12345 & ((1 << (8 * s - 1)) - 1))],
            [d, r, Imm(-5)],
            [md, m, Imm(-0x80)],
            [md, m, Imm(0x3039)],
            [d, d, Imm(0x7F)],
        ):
            add(ops_asm("imul", ops), simple(ops, und), 80)


def _div_gen(op: str, src: Operand) -> Gen:
    """Divide states: mostly in range (q fits), sometimes overflowing or dividing by 0."""
    s = src.size
    n = 8 * s

    def gen(rng: random.Random) -> Case:
        sb = SB(rng)
        sb.fill([src])
        r = rng.random()
        if r < 0.05:
            d = 0
        else:
            d = rand_val(rng, n) or 1
        if op == "div":
            if r < 0.85:
                q = rand_val(rng, n)
                dividend = q * d + rng.randrange(d) if d else rng.getrandbits(2 * n)
            else:
                dividend = rng.getrandbits(2 * n)
        else:
            sd = d - (1 << n) if d >> (n - 1) else d
            if r < 0.85 and d:
                for _ in range(20):
                    q = rand_signed(rng, n)
                    rem = rng.randrange(abs(sd))
                    if q * sd < 0 or (q * sd == 0 and rng.random() < 0.5):
                        rem = -rem
                    dividend = q * sd + rem
                    if -(1 << (2 * n - 1)) <= dividend < (1 << (2 * n - 1)):
                        break
            else:
                dividend = rand_signed(rng, 2 * n)
            dividend &= (1 << (2 * n)) - 1
        sb.set(src, d)
        if s == 1:
            sb.set_reg("ax", dividend)
        else:
            lo, hi = {2: ("ax", "dx"), 4: ("eax", "edx")}[s]
            sb.set_reg(lo, dividend & ((1 << n) - 1))
            sb.set_reg(hi, dividend >> n)
        # DIV/IDIV: "The CF, OF, SF, ZF, AF, and PF flags are undefined."
        return Case(sb.state(), Undefined(flags=STATUS_FLAGS))

    return gen


def _div_forms() -> None:
    for k, op in enumerate(("div", "idiv")):
        for s in SIZES:
            (d,) = regs_for(s, None, k + s + 1, 1)
            while d.index in (EAX, EDX):
                d = R(_POOL[s][(_POOL[s].index(d.name) + 1) % len(_POOL[s])])
            m = mem(s, k + s, ("eax", "edx"))
            add(ops_asm(op, [d]), _div_gen(op, d), 100)
            add(ops_asm(op, [m]), _div_gen(op, m), 60)
        add(f"{op} ah", _div_gen(op, R("ah")), 60)  # the divisor is part of the dividend


def _mov_forms() -> None:
    for k, s in enumerate(SIZES):
        m = mem(s, k + 4)
        d, r = regs_for(s, None, k + 1, 2)
        (mr,) = regs_for(s, m, k + 2, 1)
        for ops in ([d, r], [mr, m], [m, mr], [d, Imm(_IMM_FULL[s])], [m, Imm(_IMM_FULL[s] ^ 0x5A)]):
            add(ops_asm("mov", ops), simple(ops), 25)
    add("{load} mov ecx, eax", simple([R("ecx"), R("eax")]), 25)
    # moffs forms (A0-A3): absolute addresses, two of them straddling a page.
    for text, addr, size in (
        ("mov eax, dword ptr ds:0x1fffe", 0x1FFFE, 4),
        ("mov al, byte ptr ds:0x12345", 0x12345, 1),
        ("mov word ptr ds:0x2abcd, ax", 0x2ABCD, 2),
        ("mov dword ptr ds:0x11ffd, eax", 0x11FFD, 4),
    ):

        def tweak(sb: SB, addr: int = addr, size: int = size) -> None:
            sb.write_int(addr, size, rand_val(sb.rng, 8 * size))

        add(text, simple([], tweak=tweak), 25)
    # MOVZX/MOVSX: r16<-r/m8, r32<-r/m8, r32<-r/m16.
    for k, op in enumerate(("movzx", "movsx")):
        for ds, ss in ((2, 1), (4, 1), (4, 2)):
            (d,) = regs_for(ds, None, k + ds, 1)
            (r,) = regs_for(ss, None, k + ss + 3, 1)
            m = mem(ss, k + ds)
            (md,) = regs_for(ds, m, k, 1)
            add(ops_asm(op, [d, r]), simple([d, r]), 30)
            add(ops_asm(op, [md, m]), simple([md, m]), 30)
    # LEA computes an address without accessing memory: all registers random.
    for text in (
        "lea eax, [ebx+ecx*4+0x12345678]",
        "lea si, [edi+ebp*2-0x7]",
        "lea ecx, [esp+0x8]",
        "lea edx, [ebp+esi]",
        "lea edi, [0x1234]",
        "lea eax, [ecx*8+0x10]",
        "lea ebp, [ebx+ebx*2]",
        "lea ax, [bx+si+0x5]",
        "lea ecx, [bp+di-0x3]",
        "lea esi, [esi-0x80000000]",
    ):
        add(text, simple([]), 25)


def _xchg_forms() -> None:
    for k, s in enumerate(SIZES):
        d, r = regs_for(s, None, k, 2)
        m = mem(s, k + 1)
        (mr,) = regs_for(s, m, k + 3, 1)
        add(ops_asm("xchg", [d, r]), simple([d, r]), 30)
        add(ops_asm("xchg", [m, mr]), simple([m, mr]), 30)
    add("xchg eax, esi", simple([]), 30)
    add("xchg ax, si", simple([]), 30)
    add("lock xchg dword ptr [ebx+0x3], ecx", simple([M(4, 3)]), 30)


def _cmpxchg_gen(dst: Operand, src: Operand) -> Gen:
    acc = R(_ACC[dst.size])

    def tweak(sb: SB) -> None:
        # Half the cases take the "equal" path (ZF=1, destination <- source).
        if sb.rng.random() < 0.5:
            sb.set(acc, sb.get(dst))

    return simple([dst, src], tweak=tweak)


def _cmpxchg_xadd_forms() -> None:
    for k, s in enumerate(SIZES):
        d, r = regs_for(s, None, k + 1, 2)
        while d.index == EAX or r.index == EAX:
            k += 1
            d, r = regs_for(s, None, k, 2)
        m = mem(s, k + 2, ("eax",))
        (mr,) = [x for x in regs_for(s, m, k, 3) if x.index != EAX][:1]
        add(ops_asm("cmpxchg", [d, r]), _cmpxchg_gen(d, r), 50)
        add(ops_asm("cmpxchg", [m, mr]), _cmpxchg_gen(m, mr), 50)
        add("lock " + ops_asm("cmpxchg", [m, mr]), _cmpxchg_gen(m, mr), 30)
        add(ops_asm("xadd", [d, r]), simple([d, r]), 50)
        add(ops_asm("xadd", [m, mr]), simple([m, mr]), 40)
        add("lock " + ops_asm("xadd", [m, mr]), simple([m, mr]), 30)
    add("cmpxchg eax, ecx", _cmpxchg_gen(R("eax"), R("ecx")), 30)
    add("xadd ecx, ecx", simple([R("ecx")]), 30)

    def c8b_tweak(sb: SB) -> None:
        if sb.rng.random() < 0.5:
            ea = next(iter(sb.ea.values()))
            sb.set_reg("eax", sb.read_int(ea, 4))
            sb.set_reg("edx", sb.read_int(ea + 4, 4))

    for prefix, m in (("", M(8, 8)), ("lock ", M(8, -0x44, "esi", "edi", 4))):
        add(f"{prefix}cmpxchg8b {m.asm()}", simple([m], tweak=c8b_tweak), 60)


def shift_undef(op: str, bits: int, count: int) -> Undefined:
    """Undefined flags of a shift/rotate by ``count`` (before masking) on ``bits``."""
    c = count & 0x1F
    if c == 0:  # "If the count is 0, the flags are not affected."
        return Undefined()
    u = 0
    if c != 1:  # OF "is defined only for the 1-bit shifts/rotates"
        u |= OF
    if op in ("shl", "shr", "sar"):
        u |= AF  # "AF flag is undefined" for a non-zero count
        if op != "sar" and c >= bits:
            # SHL/SHR: "CF ... is undefined for SHL and SHR instructions where the
            # count is greater than or equal to the size ... of the destination".
            u |= CF
    return Undefined(flags=u)


_SHIFT_COUNTS = {1: (0, 5, 8, 9, 31, 32), 2: (0, 7, 16, 17, 31, 32), 4: (0, 13, 31, 32, 33)}


def _rand_count(rng: random.Random, bits: int) -> int:
    return rng.choice((0, 1, 2, bits - 1, bits, bits + 1, 31, 32, 33, 63, 0xFF, rng.getrandbits(8), rng.getrandbits(5)))


def _shift_gen(op: str, dst: Operand, count: Operand | str) -> Gen:
    bits = 8 * dst.size

    def gen(rng: random.Random) -> Case:
        sb = SB(rng)
        sb.fill([dst])
        if count == "cl":
            sb.set_reg("cl", _rand_count(rng, bits))
            c = sb.reg("cl")
        else:
            assert isinstance(count, Imm)
            c = count.value
        return Case(sb.state(), shift_undef(op, bits, c))

    return gen


def _shift_forms() -> None:
    for k, op in enumerate(("shl", "shr", "sar", "rol", "ror", "rcl", "rcr")):
        for s in SIZES:
            (d,) = [r for r in regs_for(s, None, k + s, 3) if r.index != ECX][:1]
            m = mem(s, k + s, ("ecx",))
            add(f"{op} {d.asm()}, 1", _shift_gen(op, d, Imm(1)), 60)
            add(f"{op} {d.asm()}, cl", _shift_gen(op, d, "cl"), 150)
            for c in _SHIFT_COUNTS[s]:
                add(f"{op} {d.asm()}, {c:#x}", _shift_gen(op, d, Imm(c)), 30)
            add(f"{op} {m.asm()}, 1", _shift_gen(op, m, Imm(1)), 30)
            add(f"{op} {m.asm()}, cl", _shift_gen(op, m, "cl"), 60)
            add(f"{op} {m.asm()}, 0x3", _shift_gen(op, m, Imm(3)), 30)
    # C1 /4 ib with count 1 (the assembler would pick D1).
    add(".byte 0xc1, 0xe7, 0x01  # shl edi, 1 (opcode C1 ib)", _shift_gen("shl", R("edi"), Imm(1)), 30)
    add(".byte 0xd0, 0xf1  # sal cl, 1 (D0 /6 alias of /4)", _shift_gen("shl", R("cl"), Imm(1)), 30)


def _shld_gen(op: str, dst: Operand, src: R, count: Imm | str) -> Gen:
    bits = 8 * dst.size

    def gen(rng: random.Random) -> Case:
        sb = SB(rng)
        sb.fill([dst, src])
        if count == "cl":
            sb.set_reg("cl", _rand_count(rng, bits))
            c = sb.reg("cl") & 0x1F
        else:
            assert isinstance(count, Imm)
            c = count.value & 0x1F
        u = Undefined()
        if c:
            u.flags = AF | (OF if c != 1 else 0)  # "If a shift occurs, the AF flag is undefined"
        if c > bits:
            # SHLD/SHRD: "If the count is greater than the operand size, the result
            # is undefined" and "the flags are undefined".
            u.flags = STATUS_FLAGS
            if isinstance(dst, R):
                idx, _, _ = reg_info(dst.name)
                u.regs[idx] = (1 << bits) - 1
            else:
                for i in range(dst.size):
                    u.mem[sb.ea[dst] + i] = 0xFF
        return Case(sb.state(), u)

    return gen


def _shld_forms() -> None:
    for k, op in enumerate(("shld", "shrd")):
        for s, counts in ((2, (0, 1, 9, 16, 17, 31)), (4, (0, 1, 7, 31, 32))):
            d, r = [x for x in regs_for(s, None, k + s, 4) if x.index != ECX][:2]
            m = mem(s, k + s, ("ecx",))
            (mr,) = [x for x in regs_for(s, m, k, 4) if x.index != ECX][:1]
            for c in counts:
                add(f"{op} {d.asm()}, {r.asm()}, {c:#x}", _shld_gen(op, d, r, Imm(c)), 40)
            add(f"{op} {d.asm()}, {r.asm()}, cl", _shld_gen(op, d, r, "cl"), 150)
            add(f"{op} {m.asm()}, {mr.asm()}, cl", _shld_gen(op, m, mr, "cl"), 60)
            add(f"{op} {m.asm()}, {mr.asm()}, 0x5", _shld_gen(op, m, mr, Imm(5)), 40)


def _bt_gen(dst: Operand, off: Operand) -> Gen:
    """Bit-test states; a register bit offset on a memory operand may reach ±4 KiB away."""
    s = dst.size

    def gen(rng: random.Random) -> Case:
        sb = SB(rng)
        if isinstance(dst, M):
            sb.place(dst, margin=0x1200)
        if isinstance(off, R):
            if isinstance(dst, M):
                if s == 2:
                    v = rng.getrandbits(16)
                else:
                    v = rng.choice((rng.randrange(-0x8000, 0x8000), rng.randrange(0, 64), rng.randrange(-64, 0))) & M32
                sb.set_reg(off.name, v)
                # Fill the word actually addressed: EA + (signed offset >> log2(bits)) * size.
                sv = v - (1 << (8 * s)) if v >> (8 * s - 1) else v
                addr = sb.ea[dst] + (sv >> (3 + s.bit_length() - 1)) * s
                sb.write_int(addr, s, rand_val(rng, 8 * s))
            else:
                sb.set_reg(off.name, rng.choice((rng.getrandbits(32), rng.randrange(0, 8 * s))))
        if isinstance(dst, R):
            sb.set_reg(dst.name, rand_val(rng, 8 * s))
        return Case(sb.state(), Undefined(flags=BT_UNDEF))

    return gen


def _bt_forms() -> None:
    for k, op in enumerate(("bt", "bts", "btr", "btc")):
        for s, imm in ((2, 0x13), (4, 0x25)):
            d, r = regs_for(s, None, k + s, 2)
            m = mem(s, k + s)
            (mr,) = regs_for(s, m, k, 1)
            add(f"{op} {d.asm()}, {r.asm()}", _bt_gen(d, r), 50)
            add(f"{op} {d.asm()}, {imm:#x}", _bt_gen(d, Imm(imm)), 30)
            add(f"{op} {m.asm()}, {mr.asm()}", _bt_gen(m, mr), 60)
            add(f"{op} {m.asm()}, {imm - 8:#x}", _bt_gen(m, Imm(imm - 8)), 30)
        if op != "bt":
            m = mem(4, k)
            (mr,) = regs_for(4, m, k, 1)
            add(f"lock {op} {m.asm()}, {mr.asm()}", _bt_gen(m, mr), 30)


def _bsf_gen(dst: R, src: Operand) -> Gen:
    def tweak(sb: SB) -> None:
        if sb.rng.random() < 0.2:
            sb.set(src, 0)

    def undef(sb: SB) -> Undefined:
        u = Undefined(flags=BSF_UNDEF)  # BSF/BSR: "CF, OF, SF, AF, and PF flags are undefined"
        if sb.get(src) == 0:
            # "If the content of the source operand is 0, the content of the
            # destination operand is undefined."
            u.regs[dst.index] = (1 << (8 * dst.size)) - 1
        return u

    return simple([dst, src], undef, tweak)


def _bsf_forms() -> None:
    for k, op in enumerate(("bsf", "bsr")):
        for s in (2, 4):
            d, r = regs_for(s, None, k + s, 2)
            m = mem(s, k + s)
            (md,) = regs_for(s, m, k, 1)
            add(f"{op} {d.asm()}, {r.asm()}", _bsf_gen(d, r), 60)
            add(f"{op} {md.asm()}, {m.asm()}", _bsf_gen(md, m), 40)


def _cc_forms() -> None:
    for k, cc in enumerate(CONDS):
        (d8,) = regs_for(1, None, k, 1)
        add(f"set{cc} {d8.asm()}", simple([d8]), 25)
        d, r = regs_for(4, None, k, 2)
        add(f"cmov{cc} {d.asm()}, {r.asm()}", simple([d, r]), 25)
        if k % 4 == 0:
            m8 = mem(1, k)
            add(f"set{cc} {m8.asm()}", simple([m8]), 25)
            m = mem(2 + 2 * (k % 8 == 0), k)
            (md,) = regs_for(m.size, m, k, 1)
            add(f"cmov{cc} {md.asm()}, {m.asm()}", simple([md, m]), 25)
            d16, r16 = regs_for(2, None, k, 2)
            add(f"cmov{cc} {d16.asm()}, {r16.asm()}", simple([d16, r16]), 25)


def _misc_forms() -> None:
    for text in (
        "cbw",
        "cwde",
        "cwd",
        "cdq",
        "lahf",
        "clc",
        "stc",
        "cmc",
        "cld",
        "std",
        "bswap ecx",
        "bswap eax",
        "bswap ebp",
    ):
        add(text, simple([]), 25)
    # SAHF loads SF ZF AF PF CF from AH; bits 1, 3, 5 of AH must not reach EFLAGS.
    add("sahf", simple([]), 40, flags_mask=ARITH_DF | RESERVED_FLAGS)

    def xlat_tweak(sb: SB) -> None:
        table = choose_ea(sb.rng, 1, 0x200)
        sb.regs[EBX] = table
        al = sb.reg("al")
        sb.write_int(table + al, 1, rand_val(sb.rng, 8))

    add("xlatb", simple([], tweak=xlat_tweak), 40)


def _bcd_forms() -> None:
    def bcd_tweak(sb: SB) -> None:
        # Bias AL towards values around the decimal-adjust thresholds (0x99, 0xf9, nibble 9).
        if sb.rng.random() < 0.5:
            sb.set_reg(
                "al",
                sb.rng.choice((0x99, 0x9A, 0x9F, 0xA0, 0xF9, 0xFA, 0xFF, 0x00, 0x09, 0x0A, 0x0F, 0x10, 0x05, 0x06)),
            )

    # DAA/DAS: "The OF flag is undefined."  AAA/AAS: "OF, SF, ZF, and PF flags are
    # undefined."  AAM/AAD: "The OF, AF, and CF flags are undefined."
    for text, und in (
        ("daa", OF),
        ("das", OF),
        ("aaa", OF | SF | ZF | PF),
        ("aas", OF | SF | ZF | PF),
        ("aam", OF | AF | CF),
        ("aam 0x10", OF | AF | CF),
        ("aam 0x0", OF | AF | CF),  # #DE
        ("aad", OF | AF | CF),
        ("aad 0x7", OF | AF | CF),
        ("aad 0x0", OF | AF | CF),
    ):
        add(text, simple([], fixed_undef(und), bcd_tweak), 150 if text in ("daa", "das", "aaa", "aas") else 60)


def _fill_stack(sb: SB, lo: int = -0x40, hi: int = 0x40) -> None:
    """Give the stack around ESP explicit random contents (values a pop will read)."""
    esp = sb.regs[ESP]
    for a in range(max(STACK_BASE, esp + lo), min(STACK_TOP, esp + hi)):
        sb.mem[a] = sb.rng.getrandbits(8)


def _stack_forms() -> None:
    def st(sb: SB) -> None:
        _fill_stack(sb)

    for text in (
        "push esi",
        "push si",
        "push -0x5",
        "push 0x12345678",
        "pushw 0x1234",
        "push esp",
        "pop edi",
        "pop di",
        "pop esp",
        "pop dword ptr [esp+0x4]",
        "push dword ptr [esp+0x8]",
        "pushad",
        "popad",
        "pushaw",
        "popaw",
        "push ecx\npop edx",
    ):
        add(text, simple([], tweak=st), 40)
    for ops_text, m in (("push", M(4, 4)), ("push", M(2, 2)), ("pop", M(4, 8)), ("pop", M(2, -0x44, "esi", "edi", 4))):
        add(f"{ops_text} {m.asm()}", simple([m], tweak=st), 40)

    # PUSHF: compare the status flags, DF and reserved bits of the image; the
    # system bits (IF, TF, IOPL, ...) are not under test.
    def pushf_undef(size: int) -> Callable[[SB], Undefined]:
        def undef(sb: SB) -> Undefined:
            addr = sb.regs[ESP] - size
            sysbits = PUSHF_SYSTEM_BITS & ((1 << (8 * size)) - 1)
            return Undefined(mem={addr + i: (sysbits >> (8 * i)) & 0xFF for i in range(size)})

        return undef

    add("pushfd", simple([], pushf_undef(4), st), 40)
    add("pushfw", simple([], pushf_undef(2), st), 40)

    # POPF: the popped image has random status flags, DF and reserved bits (which
    # must not stick); system bits are 0 (TF=1 would single-step, IF is not under test).
    def popf_tweak(size: int) -> Callable[[SB], None]:
        def tweak(sb: SB) -> None:
            _fill_stack(sb)
            sb.write_int(sb.regs[ESP], size, sb.rng.getrandbits(32) & (ARITH_DF | RESERVED_FLAGS))

        return tweak

    add("popfd", simple([], tweak=popf_tweak(4)), 60, flags_mask=ARITH_DF | RESERVED_FLAGS)
    add("popfw", simple([], tweak=popf_tweak(2)), 60, flags_mask=ARITH_DF | RESERVED_FLAGS)

    def frame_tweak(sb: SB) -> None:
        # EBP points into the stack (LEAVE reloads ESP from it; ENTER with a
        # nesting level copies frame pointers from below it).
        sb.regs[EBP] = sb.regs[ESP] + sb.rng.randrange(0, 0x40) * 4 + (sb.rng.random() < 0.1) * 2
        _fill_stack(sb, -0x140, 0x140)

    for text in (
        "enter 0x10, 0x0",
        "enter 0x8, 0x1",
        "enter 0x20, 0x2",
        "enter 0x0, 0x5",
        "enter 0x104, 0x1f",
        "enter 0x4, 0x21",
        "leave",
        "leavew",
    ):
        add(text, simple([], tweak=frame_tweak), 40)


def _string_gen(text: str, size: int) -> Gen:
    rep = text.startswith("rep")
    cmp_like = "cmps" in text or "scas" in text

    def gen(rng: random.Random) -> Case:
        sb = SB(rng)
        ecx = rng.choice((0, 1, 2, 3, 5, 8, rng.randrange(16))) if rep else rand_val(rng, 32)
        sb.regs[ECX] = ecx
        if rng.random() < 0.5:
            sb.eflags |= DF
        else:
            sb.eflags &= ~DF
        span = 0x60
        esi = choose_ea(rng, size, 0x200)
        if rng.random() < 0.25:  # overlapping source and destination
            edi = esi + rng.randrange(-3, 4) * rng.choice((1, size))
        else:
            edi = choose_ea(rng, size, 0x200)
        sb.regs[ESI], sb.regs[EDI] = esi, edi
        # A small alphabet makes equal elements (REPE runs, REPNE hits) likely.
        alphabet = (0x00, 0xFF, 0x41, rng.getrandbits(8))
        for a in range(esi - span, esi + span):
            sb.mem[a] = rng.choice(alphabet)
        for a in range(edi - span, edi + span):
            if cmp_like and esi - span <= a - edi + esi < esi + span and rng.random() < 0.9:
                sb.mem[a] = sb.mem[a - edi + esi]
            else:
                sb.mem[a] = rng.choice(alphabet)
        if "scas" in text and rng.random() < 0.6:
            step = -size if sb.eflags & DF else size
            k = rng.randrange(0, 6)
            sb.set_reg(_ACC[size], sb.read_int(edi + k * step, size))
        return Case(sb.state(), Undefined())

    return gen


def _string_forms() -> None:
    for size, sfx in ((1, "b"), (2, "w"), (4, "d")):
        for text in (
            f"movs{sfx}",
            f"rep movs{sfx}",
            f"stos{sfx}",
            f"rep stos{sfx}",
            f"lods{sfx}",
            f"rep lods{sfx}",
            f"cmps{sfx}",
            f"repe cmps{sfx}",
            f"repne cmps{sfx}",
            f"scas{sfx}",
            f"repe scas{sfx}",
            f"repne scas{sfx}",
        ):
            add(text, _string_gen(text, size), 60 if text.startswith("rep") else 30)


def _branch_forms() -> None:
    for k, cc in enumerate(CONDS):
        add(f"j{cc} {{L}}+0x40", simple([]), 20, branch=True)
        target = "{L}-0x30" if k % 2 else "{L}+0x400"
        add(f"{{disp32}} j{cc} {target}", simple([]), 20, branch=True)

    def ecx_tweak(sb: SB) -> None:
        sb.regs[ECX] = sb.rng.choice((0, 1, 2, 0x10000, 0x10001, M32, sb.rng.getrandbits(32)))

    for text in (
        "loop {L}-0x10",
        "loope {L}+0x20",
        "loopne {L}-0x7e",
        "jecxz {L}+0x7f",
        "loopw {L}+0x10",
        "jcxz {L}-0x20",
    ):
        add(text, simple([], tweak=ecx_tweak), 40, branch=True)

    def reg_target(name: str) -> Callable[[SB], None]:
        def tweak(sb: SB) -> None:
            _fill_stack(sb)
            sb.set_reg(name, code_target(sb.rng))

        return tweak

    def mem_target(m: M) -> Callable[[SB], None]:
        def tweak(sb: SB) -> None:
            _fill_stack(sb)
            sb.write_int(sb.ea[m], 4, code_target(sb.rng))

        return tweak

    def st(sb: SB) -> None:
        _fill_stack(sb)

    def ret_tweak(sb: SB) -> None:
        _fill_stack(sb)
        sb.write_int(sb.regs[ESP], 4, code_target(sb.rng))

    add("jmp {L}-0x10", simple([]), 20, branch=True)
    add("{disp32} jmp {L}+0x1234", simple([]), 20, branch=True)
    add("jmp ecx", simple([], tweak=reg_target("ecx")), 20, branch=True)
    add("call {L}+0x300", simple([], tweak=st), 30, branch=True)
    add("call esi", simple([], tweak=reg_target("esi")), 30, branch=True)
    for op, m in (("jmp", M(4, 4)), ("call", M(4, -0x44, "esi", "edi", 4))):
        add(f"{op} {m.asm()}", simple([m], tweak=mem_target(m)), 30, branch=True)
    add("ret", simple([], tweak=ret_tweak), 30, branch=True)
    add("ret 0x10", simple([], tweak=ret_tweak), 30, branch=True)


def _idiom_forms() -> None:
    """Same-register and partial-register forms: the shapes translators special-case.

    ``xor eax, eax`` / ``sub eax, eax`` / ``sbb eax, eax`` are zeroing and
    carry idioms a translator may shortcut; the shortcut must still produce
    every defined flag.  Overlapping partial registers (AH with AL) catch
    emitters that read a source after writing the destination.
    """
    for text, und in (
        ("xor eax, eax", AF),
        ("xor ax, ax", AF),
        ("xor al, al", AF),
        ("sub ecx, ecx", 0),
        ("sub ah, ah", 0),
        ("sbb edx, edx", 0),
        ("sbb si, si", 0),
        ("adc esi, esi", 0),
        ("add eax, eax", 0),
        ("and edi, edi", AF),
        ("or ebx, ebx", AF),
        ("test eax, eax", AF),
        ("test cl, cl", AF),
        ("cmp eax, eax", 0),
        ("cmp dh, dh", 0),
        ("neg ecx\nneg ecx", 0),
        ("add ah, al", 0),
        ("sub al, ah", 0),
        ("cmp al, ah", 0),
        ("imul eax, eax", MUL_UNDEF),
        ("imul eax, eax, 0x3", MUL_UNDEF),
    ):
        add(text, simple([], fixed_undef(und)), 48)
    for text in (
        "mov ah, al",
        "mov al, ah",
        "xchg ah, al",
        "xchg ecx, ecx",
        "movzx eax, ah",
        "movzx eax, al",
        "movsx ax, ah",
        "movsx ecx, cx",
        "movzx cx, cl",
        "xadd al, ah",
        "lea eax, [eax+eax*4]",
        "bswap esp\nbswap esp",
    ):
        add(text, simple([]), 48)
    add("cmpxchg ah, bl", _cmpxchg_gen(R("ah"), R("bl")), 48)
    add("cmpxchg al, ah", _cmpxchg_gen(R("al"), R("ah")), 48)


def _small_rep(tweak: Callable[[SB], None]) -> Callable[[SB], None]:
    """``tweak``, then a small REP count in ECX."""

    def t(sb: SB) -> None:
        tweak(sb)
        sb.regs[ECX] = sb.rng.randrange(0, 9)

    return t


# Flow forms also run stopped after their first k instructions: (k, undefined flags then).
_PARTIAL = {
    "add ecx, edx\ninc esi\nadc edi, eax": (2, 0),
    "sub ecx, edx\ndec esi\nsbb edi, eax": (2, 0),
    "adc eax, ecx\nadc edx, esi\nadc edi, 0x0": (2, 0),
    "test eax, eax\ninc ecx\ncmovz edx, esi": (2, 0),
    "bt eax, ecx\nadc edx, 0x0": (1, BT_UNDEF),
    "neg eax\nsbb ecx, ecx": (1, 0),
    "dec ecx\nsetnz al\nsetle ah": (2, 0),
    "clc\ninc eax\nsetc dl": (2, 0),
    "cmc\ninc eax\nsbb ecx, ecx": (2, 0),
    "imul ecx, edx\nseto al\nsetc ah": (2, MUL_UNDEF),
    "inc eax\ncmovc ecx, edx\ncmovo esi, edi": (2, 0),
    "cmp dword ptr [ebx+0x4], ecx\nmov eax, dword ptr [ebx+0x8]\nsetb dl": (1, 0),
}


def _flow_forms() -> None:
    """Short sequences where one instruction's flags are consumed by a later one.

    In the compiled tier gdbemu drops flag computations that a later
    instruction overwrites; these sequences check that what is consumed
    (ADC after INC keeps CF, SETcc after a count-0 shift keeps the old flags,
    a Jcc after CMP) survives, in both tiers.  The final flags are those of
    the last flag-writing instruction, masked as that instruction requires.
    """
    for text, und in (
        ("add ecx, edx\ninc esi\nadc edi, eax", 0),
        ("sub ecx, edx\ndec esi\nsbb edi, eax", 0),
        ("add eax, ecx\nadc edx, esi", 0),
        ("sub eax, ecx\nsbb edx, esi", 0),
        ("adc eax, ecx\nadc edx, esi\nadc edi, 0x0", 0),
        ("cmp eax, ecx\nshl edx, cl\nadc esi, 0x0", 0),
        ("cmp eax, ecx\nrol edx, cl\nsetz bl\nadc esi, 0x0", 0),
        ("cmp eax, ecx\nshr edx, 0x0\nsetb bl\nsetl bh", 0),
        ("test eax, eax\ninc ecx\ncmovz edx, esi", 0),
        ("add eax, ecx\nnot edx\nsetc bl", 0),
        ("sub eax, ecx\nlea esi, [esi+0x1]\nsbb edi, edi", 0),
        ("bt eax, ecx\nadc edx, 0x0", 0),
        ("bts eax, ecx\nsbb edx, edx", 0),
        ("xor eax, eax\nmov ecx, 0x1\nsetz dl", AF),
        ("neg eax\nsbb ecx, ecx", 0),
        ("dec ecx\nsetnz al\nsetle ah", 0),
        ("imul ecx, edx\nseto al\nsetc ah", MUL_UNDEF),
        ("mul ecx\nsetc bl", MUL_UNDEF),
        ("sahf\nsetl al\nsetbe ah", 0),
        ("clc\ninc eax\nsetc dl", 0),
        ("stc\ndec ecx\nadc edx, 0x0", 0),
        ("cmc\ninc eax\nsbb ecx, ecx", 0),
        ("shld eax, edx, 0x0\nsetc bl\nseto bh", 0),
        ("sar eax, 0x1f\nadc ecx, 0x0", AF),
        ("rol eax, 0x8\nadc ecx, 0x0", 0),
        ("sub eax, ecx\nlahf", 0),
        ("cmp dword ptr [ebx+0x4], ecx\nmov eax, dword ptr [ebx+0x8]\nsetb dl", 0),
        ("add byte ptr [ebx+0x4], cl\nmov ecx, 0x0\nadc ecx, ecx", 0),
        ("inc eax\ncmovc ecx, edx\ncmovo esi, edi", 0),
        ("cld\nstd\ncmc\nsetc al", 0),
    ):
        ops: list[Operand] = [M(4, 4)] if "[ebx+0x4]" in text else []
        add(text, simple(ops, fixed_undef(und)), 48, partial=_PARTIAL.get(text))

    # Register and stack data flow across instructions (partial registers, LEA chains).
    for text in (
        "mov ah, cl\nadd al, ah\nmovzx ecx, ax",
        "xchg al, ah\nxchg ax, cx\nbswap ecx",
        "lea eax, [eax+ecx]\nlea ecx, [eax+ecx*2]\nlea eax, [ecx+eax*4]",
        "push eax\npush ecx\npop eax\npop ecx",
        "sub esp, 0x8\nmov dword ptr [esp+0x4], eax\nmov ecx, dword ptr [esp+0x4]\nadd esp, 0x8",
        "movzx eax, byte ptr [ebx]\nshl eax, 0x8\nor al, byte ptr [ebx+0x1]",
        "mov ecx, eax\nadd eax, eax\nmov edx, eax\nsub edx, ecx",
    ):
        und = AF if ("shl" in text or "sub esp" in text) else 0
        ops = [M(2, 0)] if "[ebx]" in text else []
        add(text, simple(ops, fixed_undef(und), lambda sb: _fill_stack(sb)), 48)

    # DF changed inside a block: string instructions must see the new direction.
    def str_ptrs(sb: SB) -> None:
        sb.regs[ESI] = choose_ea(sb.rng, 4, 0x200)
        sb.regs[EDI] = choose_ea(sb.rng, 4, 0x200)
        _fill_stack(sb)

    for text in (
        "std\nmovsb\ncld\nmovsb",
        "cld\nlodsd\nstd\nlodsd",
        "pushfd\nstd\nstosw\npopfd\nstosw",
        "std\nrep movsb\ncld\nmov ecx, 0x5\nrep stosb",
    ):
        add(text, simple([], tweak=str_ptrs if "rep" not in text else _small_rep(str_ptrs)), 48)

    def nonzero_ecx(sb: SB) -> None:
        sb.regs[ECX] = sb.regs[ECX] or 1

    add("cdq\nidiv ecx", simple([], fixed_undef(STATUS_FLAGS), nonzero_ecx), 48)

    def bsf_undef(sb: SB) -> Undefined:
        return Undefined(flags=BSF_UNDEF, regs={ECX: M32} if sb.regs[EDX] == 0 else {})

    def zero_edx(sb: SB) -> None:
        if sb.rng.random() < 0.2:
            sb.regs[EDX] = 0

    add("bsf ecx, edx\nsetz al", simple([], bsf_undef, zero_edx), 48)
    add("cmpxchg ecx, edx\nsetz bl", _cmpxchg_gen(R("ecx"), R("edx")), 48)

    def shr_lahf_undef(sb: SB) -> Undefined:
        # SHR by a non-zero count leaves AF undefined, and LAHF copies it to AH bit 4.
        return Undefined(flags=AF, regs={EAX: 0x1000}) if sb.reg("cl") & 0x1F else Undefined()

    add("shr eax, cl\nlahf", simple([], shr_lahf_undef), 48)

    def popf_flow(sb: SB) -> None:
        _fill_stack(sb)
        sb.write_int(sb.regs[ESP], 4, sb.rng.getrandbits(32) & ARITH_DF)

    add("popfd\nsetc al\nsetp ah", simple([], tweak=popf_flow), 48)

    def pushf_pop_undef(sb: SB) -> Undefined:
        addr = sb.regs[ESP] - 4
        return Undefined(
            regs={EDX: PUSHF_SYSTEM_BITS},
            mem={addr + i: (PUSHF_SYSTEM_BITS >> (8 * i)) & 0xFF for i in range(4)},
        )

    add("add eax, ecx\npushfd\npop edx", simple([], pushf_pop_undef, lambda sb: _fill_stack(sb)), 48)
    for text in (
        "add eax, ecx\njc {L}+0x40",
        "cmp eax, ecx\njl {L}+0x40",
        "cmp eax, ecx\njbe {L}+0x40",
        "test eax, eax\njs {L}+0x40",
        "sub eax, ecx\njo {L}+0x40",
        "and eax, ecx\njp {L}+0x40",
        "inc eax\njc {L}+0x40",
        "shl edx, cl\njc {L}+0x40",
        "dec ecx\njnz {L}-0x10",
        "bt eax, ecx\njc {L}+0x40",
        "sahf\njg {L}+0x40",
        "neg eax\njc {L}+0x40",
        "xadd eax, ecx\njz {L}+0x40",
        "cmp eax, ecx\nsetg dl\njge {L}+0x40",
    ):
        add(text, simple([]), 48, branch=True)


def _oddity_forms() -> None:
    """16-bit control transfers, redundant or odd prefixes, multi-byte NOPs."""

    def low_target(sb: SB) -> None:
        # An operand-size-16 transfer truncates EIP to 16 bits: keep targets in code.
        _fill_stack(sb)
        sb.set_reg("ax", code_target(sb.rng))
        sb.set_reg("si", code_target(sb.rng))
        sb.write_int(sb.regs[ESP], 4, code_target(sb.rng))  # a 16-bit ret reads the low word

    for text in (
        "retw",
        "retw 0x6",
        "call ax",
        "jmp si",
        ".byte 0x66, 0xe9, 0x30, 0x00  # jmp rel16 +0x30",
        ".byte 0x66, 0xe8, 0xf0, 0xff  # call rel16 -0x10",
        ".byte 0x66, 0x0f, 0x84, 0x20, 0x01  # jz rel16 +0x120",
        ".byte 0xf3, 0xc3  # rep ret",
    ):
        add(text, simple([], tweak=low_target), 40, branch=True)

    def mem_low_target(m: M) -> Callable[[SB], None]:
        def tweak(sb: SB) -> None:
            _fill_stack(sb)
            sb.write_int(sb.ea[m], 2, code_target(sb.rng))

        return tweak

    for op in ("jmp", "call"):
        m = M(2, 6)
        add(f"{op} {m.asm()}", simple([m], tweak=mem_low_target(m)), 40, branch=True)

    def st(sb: SB) -> None:
        _fill_stack(sb)

    for text, ops in (
        ("mov eax, dword ptr es:[ebx+0x10]", [M(4, 0x10)]),
        ("add dword ptr ss:[ebx+0x4], ecx", [M(4, 4)]),
        ("mov cl, byte ptr cs:[ebx+0x1]", [M(1, 1)]),
        ("pushw -0x5", []),
        ("pause", []),
        (".byte 0x0f, 0x1f, 0x44, 0x00, 0x00  # nop dword ptr [eax+eax*1+0x0]", []),
        (".byte 0x66, 0x90  # xchg ax, ax", []),
        (".byte 0x66, 0x66, 0x01, 0xc8  # add ax, cx (doubled 66 prefix)", []),
        (".byte 0xf0, 0x01, 0xc8  # lock add eax, ecx (#UD)", []),
        (".byte 0x0f, 0x0b  # ud2 (#UD)", []),
    ):
        add(text, simple(ops, tweak=st), 40)


def _alias_forms() -> None:
    """A store followed by loads of the same bytes, through the same or another base.

    A compiled block may keep memory values in locals; these check that a
    load after a store (full, partial, overlapping, or through a second
    pointer that sometimes equals the first) sees the stored bytes.
    """

    def alias(sb: SB) -> None:
        # ESI points near EBX: equal a third of the time, else a few bytes off.
        delta = 0 if sb.rng.random() < 0.33 else sb.rng.randrange(-6, 7)
        sb.regs[ESI] = (sb.regs[EBX] + delta) & M32
        for a in range(sb.regs[EBX] - 8, sb.regs[EBX] + 16):
            sb.mem.setdefault(a, sb.rng.getrandbits(8))

    for text in (
        "mov dword ptr [ebx+0x4], ecx\nadd eax, dword ptr [ebx+0x4]",
        "mov dword ptr [ebx+0x4], ecx\nmov al, byte ptr [ebx+0x6]",
        "mov word ptr [ebx+0x5], cx\nmov edx, dword ptr [ebx+0x4]",
        "add dword ptr [ebx+0x4], ecx\nadc edx, dword ptr [ebx+0x4]",
        "mov dword ptr [ebx], ecx\nmov edx, dword ptr [esi]",
        "mov byte ptr [esi+0x1], cl\nmov edx, dword ptr [ebx]\nmov dword ptr [esi], eax\nmov edi, dword ptr [ebx]",
        "inc dword ptr [ebx]\ninc dword ptr [esi]\nmov eax, dword ptr [ebx]",
        "xchg dword ptr [ebx], ecx\nxchg dword ptr [esi], ecx",
        "push dword ptr [ebx]\npop dword ptr [esi]\nmov eax, dword ptr [ebx]",
    ):
        add(text, simple([M(4, 0)], tweak=alias), 48)


def _fault_flow_forms() -> None:
    """Faults after other instructions: the earlier effects stay, the faulting one has none."""

    def div_tweak(sb: SB) -> None:
        # Half fault (#DE, divisor 0); half divide cleanly (EDX < divisor).
        if sb.rng.random() < 0.5:
            sb.regs[EBX] = 0
        else:
            sb.regs[EBX] = sb.regs[EBX] or 1
            sb.regs[EDX] = sb.rng.randrange(sb.regs[EBX])
        _fill_stack(sb)

    for text, und in (
        ("add eax, ecx\ndiv ebx\ninc edx", STATUS_FLAGS),
        ("push ecx\nmov dword ptr [esp], esi\ndiv ebx", STATUS_FLAGS),
        ("sub esi, edi\nsetc cl\ndiv ebx", STATUS_FLAGS),
        ("imul ecx, esi\nidiv ebx", STATUS_FLAGS),
    ):
        add(text, simple([], fixed_undef(und), div_tweak), 48)

    def st(sb: SB) -> None:
        _fill_stack(sb)

    for text, ops in (
        ("mov dword ptr [ebx+0x4], ecx\naam 0x0", [M(4, 4)]),
        ("inc eax\npush eax\nud2", []),
        ("cmp eax, ecx\n.byte 0xf0, 0x40  # lock inc eax: #UD", []),
    ):
        add(text, simple(ops, tweak=st), 48)
    # A decode-time #UD (invalid opcode, LOCK on a register form) after another instruction.
    add("inc eax\n.byte 0xff, 0xff  # ff /7: #UD", simple([]), 40)
    for text in ("push dword ptr [esp]", "pop dword ptr [esp]", "pop word ptr [esp-0x2]", "push word ptr [esp+0x1]"):
        add(text, simple([], tweak=st), 40)


def _code_crossing_forms() -> None:
    """Snippets placed so an instruction straddles a page boundary (0x2000/0x3000).

    gdbemu's blocks then span two physical pages, and the instruction bytes
    (prefix, opcode, ModRM, displacement or immediate) are fetched from both.
    """
    m = M(4, 0x12345)
    for text, addr, ops, und, kw in (
        (f"add {m.asm()}, 0x80f3a5c7", 0x1FFA, [m], 0, {}),
        ("mov eax, 0x12345678", 0x1FFE, [], 0, {}),
        ("add ecx, edx\nadc edi, eax\nsbb esi, ecx", 0x1FFD, [], 0, {}),
        ("imul ecx, edx, 0x12345", 0x2FFB, [], MUL_UNDEF, {}),
        ("lock cmpxchg dword ptr [esi+edi*4-0x44], ebp", 0x1FFC, [M(4, -0x44, "esi", "edi", 4)], 0, {}),
        (".byte 0x66, 0x0f, 0xa4, 0xc7, 0x05  # shld di, ax, 5", 0x1FFE, [], AF | OF, {}),
        ("{disp32} jz {L}+0x100", 0x1FFD, [], 0, {"branch": True}),
        ("cmp eax, ecx\njl {L}-0x40", 0x2FFF, [], 0, {"branch": True}),
    ):
        add(text, simple(ops, fixed_undef(und)), 48, code_addr=addr, **kw)

    def rep_tweak(sb: SB) -> None:
        sb.regs[ECX] = sb.rng.randrange(0, 9)
        sb.regs[ESI] = choose_ea(sb.rng, 1, 0x200)
        sb.regs[EDI] = choose_ea(sb.rng, 1, 0x200)

    # The REP prefix on one page, the opcode on the next.
    add("rep movsb", simple([], tweak=rep_tweak), 48, code_addr=0x1FFF)


def _big_string_gen(text: str, size: int) -> Gen:
    """Long REP string runs (up to 4 KiB elements): page crossings, overlap, both directions."""
    op = text.split()[-1][:4]

    def gen(rng: random.Random) -> Case:
        sb = SB(rng)
        n = rng.choice((rng.randrange(0x40, 0x200), rng.randrange(0x200, 0x1001)))
        sb.regs[ECX] = n
        down = rng.random() < 0.5
        sb.eflags = (sb.eflags | DF) if down else (sb.eflags & ~DF)
        span = n * size + 16
        lo, hi = DATA_BASE + span + 0x40, DATA_END - span - 0x40

        def pick() -> int:
            return rng.randrange(lo, hi) & ~(size - 1) if rng.random() < 0.5 else rng.randrange(lo, hi)

        esi = pick()
        r = rng.random()
        if op == "movs" and r < 0.4:  # overlapping copy, either way round
            edi = esi + rng.choice((1, 2, 3, 4, 8, size * 5, 0x100)) * rng.choice((1, -1))
        else:
            edi = pick()
        sb.regs[ESI], sb.regs[EDI] = esi, edi
        step = -1 if down else 1
        if op == "cmps":
            # The destination equals the source except (maybe) one element far in.
            k = rng.randrange(n + 8) if rng.random() < 0.7 else None
            for j in range(n + 4):
                for b in range(size):
                    src = esi + step * j * size + b
                    v = rng.getrandbits(8)
                    sb.mem[src] = v
                    sb.mem[edi + step * j * size + b] = v ^ (0x10 if j == k else 0)
        elif op == "scas":
            v = rand_val(rng, 8 * size)
            sb.set_reg(_ACC[size], v)
            k = rng.randrange(n + 8)
            repe = text.startswith("repe")
            for j in range(n + 4):
                elem = v if (j != k) == repe else (v ^ 0x5A)
                sb.write_int(edi + step * j * size, size, elem)
        return Case(sb.state(), Undefined())

    return gen


def _big_string_forms() -> None:
    for size, sfx in ((1, "b"), (2, "w"), (4, "d")):
        for text in (
            f"rep movs{sfx}",
            f"rep stos{sfx}",
            f"repe cmps{sfx}",
            f"repne cmps{sfx}",
            f"repe scas{sfx}",
            f"repne scas{sfx}",
        ):
            # The same snippet as the small-count forms; the '#' comment keeps the name distinct.
            add(f"{text}  # long", _big_string_gen(text, size), 24)


_alu_forms()
_unary_forms()
_mul_forms()
_div_forms()
_mov_forms()
_xchg_forms()
_cmpxchg_xadd_forms()
_shift_forms()
_shld_forms()
_bt_forms()
_bsf_forms()
_cc_forms()
_misc_forms()
_bcd_forms()
_stack_forms()
_string_forms()
_branch_forms()
_idiom_forms()
_flow_forms()
_oddity_forms()
_alias_forms()
_fault_flow_forms()
_code_crossing_forms()
_big_string_forms()

FORM_BY_NAME = {f.name: f for f in FORMS}

# --------------------------------------------------------------------------
# Known mismatches
# --------------------------------------------------------------------------

# Forms where gdbemu is known to disagree with the SDM (and Unicorn): form name
# -> short description.  These are xfail(strict=True), so fixing the core
# turns them into failures until the entry is removed.
CORE_BUGS: dict[str, str] = {
    # Empty: each entry is a known gdbemu bug, marked xfail(strict=True) so a fix
    # shows up as XPASS and the entry is removed.  Fixed so far: #UD found while
    # decoding reported the TB start EIP; LOCK on a register form.
}

# --------------------------------------------------------------------------
# Assembly (one `as` run for the whole table)
# --------------------------------------------------------------------------


def assemble(forms: Sequence[Form], workdir: Path, bits: int = 32) -> dict[str, bytes]:
    """Assemble every form in one ``as --32`` run; returns form name -> bytes.

    Each form sits between two labels; a form's ``{L}`` is its start label,
    so relative branch targets come out relative to the snippet and land at
    the same offset from CODE_ADDR when the snippet runs there.
    """
    as_path = shutil.which("as")
    objcopy = shutil.which("objcopy")
    nm = shutil.which("nm")
    if not (as_path and objcopy and nm):
        pytest.skip("GNU binutils (as, objcopy, nm) not found; install binutils")
    lines = [".intel_syntax noprefix", f".code{bits}", ".text", ".fill 0x1000, 1, 0x90"]
    for i, f in enumerate(forms):
        lines.append(f"f{i}_s:")
        lines += [ln.strip().replace("{L}", f"f{i}_s") for ln in f.asm.splitlines() if ln.strip()]
        lines.append(f"f{i}_e:")
        lines.append(".fill 0x100, 1, 0x90")  # room for short backward branches
    src = workdir / "forms.s"
    src.write_text("\n".join(lines) + "\n")
    obj, binf = workdir / "forms.o", workdir / "forms.bin"
    proc = subprocess.run([as_path, "--32", "-o", str(obj), str(src)], capture_output=True, text=True)
    if proc.returncode:
        raise AssertionError(f"as failed on {src}:\n{proc.stderr[-4000:]}")
    subprocess.run([objcopy, "-O", "binary", "-j", ".text", str(obj), str(binf)], check=True)
    syms = {}
    for line in subprocess.run([nm, str(obj)], check=True, capture_output=True, text=True).stdout.splitlines():
        value, _, name = line.split()
        syms[name] = int(value, 16)
    blob = binf.read_bytes()
    return {f.name: blob[syms[f"f{i}_s"] : syms[f"f{i}_e"]] for i, f in enumerate(forms)}


_ASSEMBLED: list[dict[str, bytes] | Exception] = []


@pytest.fixture(scope="session")
def assembled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """All forms' bytes, assembled once; a failure is remembered, not retried per test."""
    if not _ASSEMBLED:
        try:
            _ASSEMBLED.append(assemble(FORMS, tmp_path_factory.mktemp("differential")))
        except Exception as exc:
            _ASSEMBLED.append(exc)
    if isinstance(_ASSEMBLED[0], Exception):
        raise _ASSEMBLED[0]
    return _ASSEMBLED[0]


@pytest.fixture(scope="session")
def core() -> None:
    pytest.importorskip("gdbemu.machine", reason="the gdbemu core (gdbemu/machine.py) is not there yet")


# --------------------------------------------------------------------------
# Running a form
# --------------------------------------------------------------------------


def background(rng: random.Random) -> dict[int, bytes]:
    return {base: rng.randbytes(size) for base, size in REGIONS}


def failure_report(form: Form, runner: DiffRunner, state: State, diffs: list[str], where: str) -> str:
    text = form.asm.replace("{L}", f"{runner.code_addr:#x}")
    return (
        f"instruction: {text}   [bytes {runner.code.hex()} at {runner.code_addr:#x}; {where}]\n"
        f"initial state:\n{describe_state(state)}\n"
        "differences (unicorn = reference):\n  " + "\n  ".join(diffs)
    )


def run_form(form: Form, code: bytes, n_cases: int, seed: int, bits: int = 32) -> tuple[int, int, list[str]]:
    """Run ``n_cases`` random states of a form; returns (failing, run, first reports).

    The first half of the cases runs while gdbemu's block for the snippet is
    cold (first translation tier); then the runner warms the block up until
    gdbemu compiles it, and the second half runs hot, so both tiers are
    compared on every form.  Forms with ``partial`` then run a quarter more
    cases stopped by the instruction limit inside the (hot) block.
    """
    rng = random.Random(f"{seed}:{form.name}")
    runner = DiffRunner(
        code,
        form.n_insns,
        background(rng),
        branch=form.branch,
        code_addr=form.code_addr,
        bits=bits,
        data_seg=form.data_seg,
    )
    failed = 0
    reports: list[str] = []
    last_ok: State | None = None
    n_partial = n_cases // 4 if form.partial else 0
    for i in range(n_cases + n_partial):
        if i == n_cases // 2 and last_ok is not None:
            runner.warm_up(last_ok)
        case = form.gen(rng)
        tier = runner.block_tier()
        if i < n_cases:
            uc, gd = runner.run(case.state)
            where = f"case {i}, {tier} block"
        else:
            assert form.partial
            k, und = form.partial
            uc, gd = runner.run(case.state, n_insns=k)
            case = Case(case.state, Undefined(flags=und))
            where = f"case {i}, stopped after {k} instructions, {tier} block"
        diffs = compare(case.state, runner.images(case.state), uc, gd, case.undefined, form.flags_mask)
        if not diffs and case.sdm_check and not gd.faulted:
            diffs = case.sdm_check(gd)
        if diffs:
            failed += 1
            if len(reports) < 3:
                reports.append(failure_report(form, runner, case.state, diffs, where))
        elif not gd.faulted:
            last_ok = case.state
    return failed, n_cases + n_partial, reports


def _params(slow: bool) -> list:
    out = []
    for f in FORMS:
        marks = []
        if f.name in CORE_BUGS:
            marks.append(pytest.mark.xfail(strict=True, reason=f"core bug: {CORE_BUGS[f.name]}"))
        if slow:
            marks.append(pytest.mark.slow)
        out.append(pytest.param(f.name, marks=marks, id=f.name))
    return out


def _check(name: str, assembled: dict[str, bytes], factor: int, seed: int) -> None:
    form = FORM_BY_NAME[name]
    failed, total, reports = run_form(form, assembled[name], form.cases * factor, seed)
    if failed:
        pytest.fail(
            f"{failed} of {total} cases differ for {form.asm!r}\n\n" + "\n\n".join(reports),
            pytrace=False,
        )


@pytest.mark.parametrize("name", _params(slow=False))
def test_form(name: str, assembled: dict[str, bytes], core: None) -> None:
    _check(name, assembled, 1, DEFAULT_SEED)


@pytest.mark.parametrize("name", _params(slow=True))
def test_form_slow(name: str, assembled: dict[str, bytes], core: None) -> None:
    _check(name, assembled, SLOW_FACTOR, SLOW_SEED)


def test_table_size() -> None:
    """The default run must stay above 20,000 cases (the suite's coverage floor)."""
    assert sum(f.cases for f in FORMS) >= 20_000
    assert len({f.name for f in FORMS}) == len(FORMS)


# --------------------------------------------------------------------------
# Property-based checks with shrinking
# --------------------------------------------------------------------------

# A few two-register ALU forms; hypothesis shrinks a failing (a, b, flags)
# to a minimal one, which the random table above cannot do.
HYPO_FORMS = ("add ecx, edx", "sub ecx, edx", "adc cx, dx", "sbb cl, dl", "imul ecx, edx", "sar edx, cl", "rcl dx, cl")
_hypo_runners: dict[str, DiffRunner] = {}


def _hypo_undef(text: str, a: int) -> Undefined:
    """Undefined flags for the hypothesis forms (a is ECX: CL is the shift count)."""
    if text.startswith("imul"):
        return Undefined(flags=MUL_UNDEF)
    op, dst = text.split()[0], text.split()[1].rstrip(",")
    if op in ("sar", "rcl"):
        return shift_undef(op, 8 * R(dst).size, a & 0xFF)
    return Undefined()


@pytest.mark.parametrize("text", HYPO_FORMS)
@settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    database=None,
    phases=(Phase.explicit, Phase.generate, Phase.shrink),  # no slow 'explain' phase
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    a=st.integers(0, M32),
    b=st.integers(0, M32),
    flags=st.sets(st.sampled_from((CF, PF, AF, ZF, SF, OF, DF))),
)
def test_alu_hypothesis(
    text: str, a: int, b: int, flags: set[int], tmp_path_factory: pytest.TempPathFactory, core: None
) -> None:
    if text not in _hypo_runners:
        code = assemble([Form(text, simple([]), 1, name="h")], tmp_path_factory.mktemp("hypo"))["h"]
        _hypo_runners[text] = DiffRunner(code, 1, {base: bytes(size) for base, size in REGIONS})
    runner = _hypo_runners[text]
    regs = [0x11111111 * i for i in range(8)]
    regs[ECX], regs[EDX], regs[ESP] = a, b, STACK_MID
    state = State(tuple(regs), sum(flags))
    uc, gd = runner.run(state)
    diffs = compare(state, runner.images(state), uc, gd, _hypo_undef(text, a))
    assert not diffs, f"{text}\n{describe_state(state)}\n" + "\n".join(diffs)


# --------------------------------------------------------------------------
# 16-bit code
# --------------------------------------------------------------------------
# The same table assembled with .code16 (so the 32-bit forms carry 66/67
# prefixes and the 16-bit ones none), run by Unicorn in real mode and by
# gdbemu in a 16-bit code segment (see support/oracle.py), plus forms that
# only exist in 16-bit code: 16-bit addressing ([bx+si], [bp+di] on SS),
# SP-relative stack operations, and the size-dependent one-byte opcodes.
# Left out of the 16-bit run, each for its reason:
#  - memory operands based on EBP/ESP: they default to SS, whose base is
#    0x40000 here (the stack), so a 32-bit data-window address lands outside
#    the mapped regions;
#  - forms that load segment registers, far transfers, interrupts: real mode
#    (Unicorn) and 16-bit protected mode (gdbemu) define those differently;
#  - indirect branches through 32-bit registers: beyond CS's 64 KiB limit
#    gdbemu raises #GP as protected mode requires, real-mode QEMU does not;
#    `jmp/call dword ptr [m]` is a far transfer (m16:16) in 16-bit code;
#  - raw .byte forms and {disp32} branches: their encodings mean other
#    instructions (or nothing) in 16-bit code;
#  - the string instructions of the main table: in 16-bit code they address
#    DS:SI / ES:DI, which with DS = 0 is the code region (a rep store would
#    overwrite the snippet); FORMS16_EXTRA has them with DS = ES = 0x1000.
_NOT_16 = re.compile(
    r"\.byte|(jmp|call) dword|\{disp32\}|\[e[bs]p|\b[c-gs]s\b"
    r"|ljmp|lcall|retf|iret|\bint\b|into|\bl[defgs]s\b|bound|jmp e|call e|\b(movs|stos|lods|cmps|scas|ins|outs)[bwd]?\b"
)

FORMS16_EXTRA: list[Form] = []


def _add16(asm: str, gen: Gen, cases: int, **kw: object) -> None:
    FORMS16_EXTRA.append(Form(asm, gen, cases, name="16:" + _slug(asm), **kw))  # type: ignore[arg-type]


def _seg_addr(rng: random.Random, size: int) -> int:
    """An offset in DS (base 0x10000) for a 16-bit address: 0x0200..0xFE00."""
    return rng.randrange(0x200, 0xFE00 - size)


def _gen16(
    base: str | None, index: str | None, disp: int, size: int, stack: bool = False, regs: Sequence[str] = ()
) -> Gen:
    """Random state with [base+index+disp] (16-bit addressing) pointing at a random operand."""

    def gen(rng: random.Random) -> Case:
        sb = SB(rng)
        seg_base = STACK_BASE if stack else DATA_BASE
        off = rng.randrange(0x100, 0x1E00 - size) if stack else _seg_addr(rng, size)
        rest = (off - disp) & 0xFFFF
        if base and index:
            b = rng.randrange(0, rest + 1)
            sb.set_reg(base, b)
            sb.set_reg(index, rest - b)
        elif base or index:
            sb.set_reg(base or index or "", rest)
        sb.write_int(seg_base + off, size, rand_val(rng, 8 * size))
        for r in regs:
            sb.set_reg(r, rand_val(rng, 8 * R(r).size))
        return Case(sb.state(), Undefined())

    return gen


def _rep16() -> Gen:
    """A rep string state in 16-bit code: random SI/DI (DS = ES = 0x1000 keeps every offset in the
    data window, wrap-around included), CX 0..40, DF random; compare data so repe/repne stop early."""

    def gen(rng: random.Random) -> Case:
        sb = SB(rng)
        sb.set_reg("cx", rng.randrange(0, 41))
        sb.set_reg("si", rng.randrange(0, 0x10000))
        sb.set_reg("di", rng.randrange(0, 0x10000))
        return Case(sb.state(), Undefined())

    return gen


def _forms16() -> None:
    modes = (("bx", "si", 0x10), ("bx", "di", -0x20), ("si", None, 0x7F), ("di", None, 0x123), ("bx", None, 0))
    for base, index, disp in modes:
        inner = "+".join(x for x in (base, index) if x) + (f"{disp:+#x}" if disp else "")
        for size, reg in ((1, "dl"), (2, "cx"), (4, "edx")):
            ptr = _PTR[size]
            for op in ("add", "sub", "xor", "cmp", "adc", "mov"):
                _add16(
                    f"{op} {ptr} ptr [{inner}], {reg}",
                    _gen16(base, index, disp, size, regs=(reg,)),
                    12,
                    data_seg=0x1000,
                )
            _add16(f"mov {reg}, {ptr} ptr [{inner}]", _gen16(base, index, disp, size, regs=(reg,)), 12, data_seg=0x1000)
        _add16(f"lea ax, [{inner}]", _gen16(base, index, disp, 2), 12, data_seg=0x1000)
        _add16(f"inc word ptr [{inner}]", _gen16(base, index, disp, 2), 12, data_seg=0x1000)
    # bp-based: SS (base 0x40000)
    for index, disp in ((None, 0x10), ("si", 4), ("di", -2)):
        inner = "+".join(x for x in ("bp", index) if x) + f"{disp:+#x}"
        _add16(
            f"add word ptr [{inner}], cx", _gen16("bp", index, disp, 2, stack=True, regs=("cx",)), 16, data_seg=0x1000
        )
        _add16(f"mov eax, dword ptr [{inner}]", _gen16("bp", index, disp, 4, stack=True), 16, data_seg=0x1000)
    # size-dependent one-byte opcodes
    for asm in ("cbw", "cwde", "cwd", "cdq", "pushf\npop ax", "pushfd\npop eax", "pusha\npopa", "pushad\npopad"):
        _add16(asm, simple([]), 40)
    _add16("push ax\npop ebx\npop cx", simple([]), 40)
    _add16("push 0x1234\npush -3\npop eax", simple([]), 40)
    _add16("xlat", _gen16("bx", None, 0, 1, regs=("al",)), 40, data_seg=0x1000)
    for s in ("b", "w", "d"):
        _add16(f"lods{s}", _gen16("si", None, 0, 4), 30, data_seg=0x1000)
        _add16(f"stos{s}", _gen16("di", None, 0, 4), 30, data_seg=0x1000)
        _add16(f"scas{s}", _gen16("di", None, 0, 4), 30, data_seg=0x1000)
        _add16(f"movs{s}", _gen16("si", None, 0, 4, regs=("di",)), 30, data_seg=0x1000)
        _add16(f"cmps{s}", _gen16("si", None, 0, 4, regs=("di",)), 30, data_seg=0x1000)
        for rep, op in (("rep", "movs"), ("rep", "stos"), ("rep", "lods"), ("repe", "cmps"), ("repne", "scas")):
            _add16(f"{rep} {op}{s}", _rep16(), 30, data_seg=0x1000)


_forms16()

FORMS16: list[Form] = [f for f in FORMS if not _NOT_16.search(f.asm)] + FORMS16_EXTRA
FORM16_BY_NAME = {f.name: f for f in FORMS16}
# Forms whose 16-bit run differs: form name -> reason (xfail, strict).
CORE_BUGS16: dict[str, str] = {}
FACTOR16 = 8  # the default run takes every 8th of a form's cases (at least 4); `slow` takes the 32-bit count

_ASSEMBLED16: list[dict[str, bytes] | Exception] = []


@pytest.fixture(scope="session")
def assembled16(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    if not _ASSEMBLED16:
        try:
            _ASSEMBLED16.append(assemble(FORMS16, tmp_path_factory.mktemp("differential16"), bits=16))
        except Exception as exc:
            _ASSEMBLED16.append(exc)
    if isinstance(_ASSEMBLED16[0], Exception):
        raise _ASSEMBLED16[0]
    return _ASSEMBLED16[0]


def _params16(slow: bool) -> list:
    out = []
    for f in FORMS16:
        marks = []
        if f.name in CORE_BUGS16:
            marks.append(pytest.mark.xfail(strict=True, reason=f"core bug: {CORE_BUGS16[f.name]}"))
        if slow:
            marks.append(pytest.mark.slow)
        out.append(pytest.param(f.name, marks=marks, id=f.name))
    return out


def _check16(name: str, assembled16: dict[str, bytes], n_cases: int, seed: int) -> None:
    form = FORM16_BY_NAME[name]
    failed, total, reports = run_form(form, assembled16[name], n_cases, seed, bits=16)
    if failed:
        pytest.fail(
            f"16-bit code: {failed} of {total} cases differ for {form.asm!r}\n\n" + "\n\n".join(reports),
            pytrace=False,
        )


@pytest.mark.parametrize("name", _params16(slow=False))
def test_form16(name: str, assembled16: dict[str, bytes], core: None) -> None:
    form = FORM16_BY_NAME[name]
    _check16(name, assembled16, max(4, form.cases // FACTOR16), DEFAULT_SEED)


@pytest.mark.parametrize("name", _params16(slow=True))
def test_form16_slow(name: str, assembled16: dict[str, bytes], core: None) -> None:
    _check16(name, assembled16, FORM16_BY_NAME[name].cases, SLOW_SEED)
