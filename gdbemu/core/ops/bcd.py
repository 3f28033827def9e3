"""Decimal (BCD) adjustments: daa, das, aaa, aas, aam, aad.

Semantics follow the Intel SDM vol. 2 pseudo-code of each instruction and,
where the SDM leaves flags undefined, QEMU's helpers (target/i386/tcg/
int_helper.c), which Unicorn shares:

* daa/das compute all six flags by hand (OF comes out 0; the SDM leaves it
  undefined);
* aaa/aas change only AF and CF and keep the other (undefined) flags;
* aam/aad set SF, ZF, PF from AL as a logical result (CF, OF, AF = 0; the
  SDM leaves them undefined).  ``aam 0`` raises #DE before writing anything.

These are rare, so the generated code is plain and unoptimised; it stays
straight-line (conditional expressions) apart from the #DE test.
"""

from __future__ import annotations

from .. import flags as F  # noqa: N812 - the project-wide name for the flags module
from ..emit import Emitter
from . import op

_AF_CF = F.AF | F.CF


def _szp(al: str) -> str:
    """SF | ZF | PF of the byte ``al``, as an expression (PF: even number of set bits)."""
    parity = f"(0x9669 >> (({al} ^ {al} >> 4) & 0xF) & 1) << 2"  # 0x9669: bit i set iff i has even parity
    return f"(({al} & 0x80) | (0x40 if {al} == 0 else 0) | {parity})"


def _old_flags(e: Emitter) -> str:
    f = e.tmp("f")
    e.emit(f"{f} = {e.eflags_arith()}")
    return f


@op("daa", flags="rw", pure=True)
def daa(e: Emitter) -> None:
    """Decimal adjust AL after addition (SDM DAA)."""
    f = _old_flags(e)
    old = e.tmp("o")
    e.emit(f"{old} = eax & 0xFF")
    lo = e.tmp("l")  # adjust the low digit?
    e.emit(f"{lo} = ({old} & 0xF) > 9 or {f} & {F.AF:#x}")
    hi = e.tmp("h")  # adjust the high digit? (uses the AL and CF from before)
    e.emit(f"{hi} = {old} > 0x99 or {f} & 1")
    al = e.tmp("a")
    e.emit(f"{al} = ({old} + (6 if {lo} else 0) + (0x60 if {hi} else 0)) & 0xFF")
    e.write_reg(0, 1, al)
    e.set_flags_value(f"{_szp(al)} | ({F.AF:#x} if {lo} else 0) | (1 if {hi} else 0)")


@op("das", flags="rw", pure=True)
def das(e: Emitter) -> None:
    """Decimal adjust AL after subtraction (SDM DAS).

    CF is set by the borrow of the low-digit adjustment too (old CF or
    AL < 6), and by the high-digit adjustment.
    """
    f = _old_flags(e)
    old = e.tmp("o")
    e.emit(f"{old} = eax & 0xFF")
    lo = e.tmp("l")
    e.emit(f"{lo} = ({old} & 0xF) > 9 or {f} & {F.AF:#x}")
    hi = e.tmp("h")
    e.emit(f"{hi} = {old} > 0x99 or {f} & 1")
    cf = e.tmp("c")
    e.emit(f"{cf} = 1 if {hi} or ({lo} and {old} < 6) else 0")
    al = e.tmp("a")
    e.emit(f"{al} = ({old} - (6 if {lo} else 0) - (0x60 if {hi} else 0)) & 0xFF")
    e.write_reg(0, 1, al)
    e.set_flags_value(f"{_szp(al)} | ({F.AF:#x} if {lo} else 0) | {cf}")


def _aaa_aas(e: Emitter, sign: str) -> None:
    f = _old_flags(e)
    adj = e.tmp("j")
    e.emit(f"{adj} = (eax & 0xF) > 9 or {f} & {F.AF:#x}")
    ax = e.tmp("x")
    # AX +/- 0x106 carries (borrows) from AL into AH, as the SDM's "AX <- AX + 106H".
    e.emit(f"{ax} = ((eax & 0xFFFF) {sign} 0x106 if {adj} else eax) & 0xFF0F")
    e.write_reg(0, 2, ax)
    e.set_flags_value(f"{f} & {~_AF_CF & F.ARITH:#x} | ({_AF_CF:#x} if {adj} else 0)")


@op("aaa", flags="rw", pure=True)
def aaa(e: Emitter) -> None:
    """ASCII adjust after addition (SDM AAA): AF = CF = adjust; AL keeps its low digit."""
    _aaa_aas(e, "+")


@op("aas", flags="rw", pure=True)
def aas(e: Emitter) -> None:
    """ASCII adjust after subtraction (SDM AAS)."""
    _aaa_aas(e, "-")


@op("aam", flags="w")
def aam(e: Emitter) -> None:
    """ASCII adjust after multiply (SDM AAM): AH = AL / imm8, AL = AL mod imm8; #DE if imm8 = 0."""
    (imm,) = e.insn.ops
    b = e.tmp("b")
    e.emit(f"{b} = {e.load(imm, size=1)}")
    with e.block(f"if not {b}:"):
        e.fault(0)
    al = e.tmp("a")
    e.emit(f"{al} = (eax & 0xFF) % {b}")
    e.write_reg(0, 2, f"(eax & 0xFF) // {b} << 8 | {al}")
    e.set_cc(F.LOGIC, 1, al)


@op("aad", flags="w", pure=True)
def aad(e: Emitter) -> None:
    """ASCII adjust before division (SDM AAD): AL = (AL + AH * imm8) & 0xFF, AH = 0."""
    (imm,) = e.insn.ops
    al = e.tmp("a")
    e.emit(f"{al} = ((eax & 0xFF) + (eax >> 8 & 0xFF) * {e.load(imm, size=1)}) & 0xFF")
    e.write_reg(0, 2, al)
    e.set_cc(F.LOGIC, 1, al)
