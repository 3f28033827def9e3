"""Bit instructions: bt, bts, btr, btc, bsf, bsr, setcc, cmovcc.

bt/bts/btr/btc (Intel SDM vol. 2, BT): CF receives the selected bit; the
other three write it back set, cleared or complemented.  The lazy kind F.BT
keeps ``cc_src`` = value >> bit (CF is its bit 0) and ``cc_src2`` = the six
flags before the instruction, so ZF — which the SDM says is unaffected — and
the undefined OF SF AF PF keep their values.  Bit offsets:

* an immediate offset, or any offset into a register, is taken modulo the
  operand width;
* a register offset into a memory operand is a signed bit index into a bit
  string that starts at the operand: the word accessed is at
  EA + (offset >> log2(width)) * size (forward or backward) and the bit is
  offset mod width (SDM vol. 2, BT, "Bit(BitBase, BitOffset)"; the address
  wraps at the address size, as QEMU computes it).

bsf/bsr: a zero source sets ZF and leaves the destination unchanged (what
Intel and AMD processors do; the SDM calls the destination undefined).

setcc/cmovcc read the condition through the emitter, which resolves it
statically from the lazy flags when it can.  cmov with a memory source always
performs the load, so it faults even when the condition is false (SDM vol. 2,
CMOVcc).
"""

from __future__ import annotations

from .. import flags as F  # noqa: N812 - the project-wide name for the flags module
from ..decode import IMM, MEM
from ..emit import MASK, SIGN, Emitter
from . import op

_BT = {"bt": None, "bts": "{v} | 1 << {b}", "btr": "{v} & ~(1 << {b})", "btc": "{v} ^ 1 << {b}"}


@op(*_BT, flags="rw", pure=True)
def bt(e: Emitter) -> None:
    """bt/bts/btr/btc with a register or memory bit base and a register or immediate offset."""
    template = _BT[e.insn.name]
    dst, off = e.insn.ops
    size = dst.size
    bits = 8 * size
    m = MASK[size]
    b = e.tmp("b")
    addr = None
    if off.kind == IMM:
        e.emit(f"{b} = {e.load(off, size=1)} & {bits - 1}")
        if dst.kind == MEM:
            addr = e.ea(dst)
    else:
        ov = e.load(off, size=size, stable=True)
        e.emit(f"{b} = {ov} & {bits - 1}")
        if dst.kind == MEM:
            # Signed offset: move EA by whole operands, forward or backward.
            s = SIGN[size]
            shift = 3 + size.bit_length() - 1  # log2(bits)
            scale = size.bit_length() - 1  # log2(size)
            o = e.tmp("o")
            e.emit(
                f"{o} = ({e.offset(dst)}) + ((({ov} ^ {s:#x}) - {s:#x}) >> {shift} << {scale}) & {MASK[e.addrsize]:#x}"
            )
            addr = e.linear(dst.seg, o)
    v = e.load(dst, addr=addr, stable=dst.kind != MEM)
    if template is not None:
        e.store(dst, f"({template.format(v=v, b=b)}) & {m:#x}", addr=addr)
    e.set_cc(F.BT, size, "0", f"{v} >> {b}", e.eflags_arith())


@op("bsf", "bsr", flags="w", pure=True)
def bsf_bsr(e: Emitter) -> None:
    """Index of the lowest (bsf) / highest (bsr) set bit; ZF = (source == 0).

    Flags are recorded as F.LOGIC of the source: ZF is the defined one; CF and
    OF come out 0 and SF/PF follow the source, as QEMU computes them (the SDM
    leaves CF, OF, SF, AF, PF undefined).
    """
    dst, src = e.insn.ops
    size = dst.size
    v = e.load(src, stable=src.kind != MEM)
    if e.insn.name == "bsf":
        idx = f"({v} & -{v}).bit_length() - 1"
    else:
        idx = f"{v}.bit_length() - 1"
    e.write_reg(dst.reg, size, f"({idx} if {v} else {e.reg(dst.reg, size)})")
    e.set_cc(F.LOGIC, size, v)


_CC = {name: i for i, name in enumerate(F.CC_NAMES)}


def _cond(e: Emitter, cc: int) -> str:
    """The condition as an expression; B/AE (CF alone) through ``carry()``, which has
    static fast paths for more lazy kinds (SAR, BT, INC/DEC) than ``cond()`` and
    otherwise costs a CF-only computation instead of all six flags."""
    if cc == F.CC_B:
        return e.carry()
    if cc == F.CC_AE:
        return f"not {e.carry()}"
    return e.cond(cc)


def _setcc(e: Emitter) -> None:
    """SETcc r/m8: 1 if the condition holds, else 0."""
    (dst,) = e.insn.ops
    cc = _CC[e.insn.name[3:]]
    e.store(dst, f"(1 if {_cond(e, cc)} else 0)")


def _cmovcc(e: Emitter) -> None:
    """CMOVcc r, r/m: the source is always read; the destination written only if cc holds.

    In 32-bit code a false condition leaves a 32-bit destination unchanged;
    in 64-bit code a 32-bit destination is zero-extended either way.
    """
    dst, src = e.insn.ops
    cc = _CC[e.insn.name[4:]]
    v = e.load(src)
    if e.wide and dst.size == 4:
        e.write_reg(dst.reg, 4, f"{v} if {_cond(e, cc)} else {e.reg(dst.reg, 4)}")
        return
    with e.block(f"if {_cond(e, cc)}:"):
        e.write_reg(dst.reg, dst.size, v)


for _name in F.CC_NAMES:
    op("set" + _name, flags="r", pure=True)(_setcc)
    op("cmov" + _name, flags="r", pure=True)(_cmovcc)
