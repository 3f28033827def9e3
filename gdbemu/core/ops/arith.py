"""Integer arithmetic and logic: add adc sub sbb cmp and or xor test inc dec neg not.

Two-operand ALU instructions share one emitter: load both operands (the
destination's address computed once), compute, store the result (unless the
instruction only compares), then record the lazy flags.  ``lock`` changes
nothing here: one vCPU runs at a time, so every read-modify-write is atomic.
"""

from __future__ import annotations

from .. import flags as F
from ..decode import MEM, Operand
from ..emit import MASK, Emitter
from . import op

# name -> (lazy kind, expression template over a, b, m (mask); writes result?)
_ALU = {
    "add": (F.ADD, "{a} + {b} & {m}", True),
    "sub": (F.SUB, "{a} - {b} & {m}", True),
    "cmp": (F.SUB, "{a} - {b} & {m}", False),
    "and": (F.LOGIC, "{a} & {b}", True),
    "or": (F.LOGIC, "{a} | {b}", True),
    "xor": (F.LOGIC, "{a} ^ {b}", True),
    "test": (F.LOGIC, "{a} & {b}", False),
}


def _operands(e: Emitter) -> tuple[Operand, int, str | None, str, str]:
    dst, src = e.insn.ops
    size = dst.size
    addr = e.ea(dst) if dst.kind == MEM else None
    a = e.load(dst, addr=addr)
    b = e.load(src, size=size)
    return dst, size, addr, a, b


def _alu(e: Emitter) -> None:
    kind, template, writes = _ALU[e.insn.name]
    dst, size, addr, a, b = _operands(e)
    m = f"{MASK[size]:#x}"
    r = e.tmp("r")
    if (
        e.insn.name in ("xor", "sub")
        and dst.kind != MEM
        and e.insn.ops[1].kind == dst.kind
        and e.insn.ops[1].reg == dst.reg
        and e.insn.ops[1].high == dst.high
    ):
        e.emit(f"{r} = 0")  # xor r, r / sub r, r: the zeroing idiom
    else:
        e.emit(f"{r} = {template.format(a=a, b=b, m=m)}")
    if writes:
        if kind != F.LOGIC and e.insn.ops[1].kind == 0:
            # keep b: it may be the destination register itself
            bt = e.tmp("b")
            e.emit(f"{bt} = {b}")
            b = bt
        e.store(dst, r, addr=addr)
    if kind == F.LOGIC:
        e.set_cc(kind, size, r)
    else:
        e.set_cc(kind, size, r, b)


for _name in _ALU:
    op(_name, flags="w", pure=True)(_alu)


def _adc_sbb(e: Emitter) -> None:
    sub = e.insn.name == "sbb"
    dst, size, addr, a, b = _operands(e)
    m = f"{MASK[size]:#x}"
    c = e.tmp("c")
    e.emit(f"{c} = 1 if {e.carry()} else 0")
    bt = e.tmp("b")
    e.emit(f"{bt} = {b}")
    r = e.tmp("r")
    e.emit(f"{r} = {a} {'-' if sub else '+'} {bt} {'-' if sub else '+'} {c} & {m}")
    e.store(dst, r, addr=addr)
    e.set_cc(F.SBB if sub else F.ADC, size, r, bt, c)


op("adc", "sbb", flags="rw", pure=True)(_adc_sbb)


@op("inc", "dec", flags="rw", pure=True)
def inc_dec(e: Emitter) -> None:
    (dst,) = e.insn.ops
    size = dst.size
    addr = e.ea(dst) if dst.kind == MEM else None
    a = e.load(dst, addr=addr)
    c = e.tmp("c")
    e.emit(f"{c} = 1 if {e.carry()} else 0")
    r = e.tmp("r")
    sign = "+" if e.insn.name == "inc" else "-"
    e.emit(f"{r} = {a} {sign} 1 & {MASK[size]:#x}")
    e.store(dst, r, addr=addr)
    e.set_cc(F.INC if e.insn.name == "inc" else F.DEC, size, r, c)


@op("neg", flags="w", pure=True)
def neg(e: Emitter) -> None:
    (dst,) = e.insn.ops
    size = dst.size
    addr = e.ea(dst) if dst.kind == MEM else None
    a = e.load(dst, addr=addr, stable=True)
    r = e.tmp("r")
    e.emit(f"{r} = -{a} & {MASK[size]:#x}")
    e.store(dst, r, addr=addr)
    # neg is 0 - a: SUB flags with src = a (CF = a != 0)
    e.set_cc(F.SUB, size, r, a)


@op("not", flags="", pure=True)
def not_(e: Emitter) -> None:
    (dst,) = e.insn.ops
    size = dst.size
    addr = e.ea(dst) if dst.kind == MEM else None
    a = e.load(dst, addr=addr)
    e.store(dst, f"{a} ^ {MASK[size]:#x}", addr=addr)
