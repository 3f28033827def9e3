"""Shifts and rotates: shl/sal, shr, sar, rol, ror, rcl, rcr, shld, shrd.

The count (an immediate, or CL) is masked to 5 bits, 6 for 64-bit operands
(Intel SDM vol. 2, SAL/SAR/SHL/SHR: "The count is masked to 5 bits (or 6
bits if in 64-bit mode and REX.W is used)"); a masked count of 0 changes
neither the destination nor any flag.  With an immediate count that is known
when the instruction is translated; with CL it is a run-time test, so the
destination write and the flag update sit inside ``if count:`` and the
emitter's static flag knowledge is dropped afterwards (``flags_unknown``).
A memory destination is still read when the count is 0 (as QEMU does), so a
read fault is raised either way; it is written only when the count is not 0.

Flags:

* shl/sal: lazy F.SHL, ``cc_src`` = value << (count-1): CF is its top bit
  (the last bit shifted out), OF = CF ^ MSB(result).
* shr, sar: lazy F.SAR, ``cc_src`` = value >> (count-1): CF is its bit 0,
  OF = MSB(cc_src ^ result) — MSB(original) for shr by 1, 0 for sar by 1.
* rotates change only CF and OF (SDM RCL/RCR/ROL/ROR: "The SF, ZF, AF, and PF
  flags are not affected"), so the new value of the six flags is computed
  from the old one and recorded as F.EFLAGS.
* shld/shrd: as shl/shr on the double-width value.

OF is defined by the SDM only for 1-bit shifts and AF is undefined; the
formulas above give the values QEMU (and Unicorn) produce for other counts.
"""

from __future__ import annotations

from .. import flags as F  # noqa: N812 - the project-wide name for the flags module
from ..decode import IMM, MEM, REG, Operand
from ..emit import MASK, SIGN, Emitter
from . import op

# Flag bits rotates replace.
_CF_OF = F.CF | F.OF


def _count_mask(size: int) -> int:
    return 0x3F if size == 8 else 0x1F


def _static_count(e: Emitter, count_op: Operand, size: int) -> int | None:
    """The masked count when it is an immediate fixed at translation time, else None.

    An immediate the translator reads from guest RAM at run time (SMC-hot
    pages, ``Emitter.dyn_imm``) is not static: it goes through the CL path.
    """
    if count_op.kind == IMM and e.dyn_imm is None:
        return int(count_op.imm) & _count_mask(size)
    return None


def _runtime_count(e: Emitter, count_op: Operand, size: int, modulo: int = 0) -> str:
    """Emit the run-time masked count (of CL or a run-time immediate) into a temporary."""
    c = e.tmp("c")
    if count_op.kind == REG and not count_op.high:
        src = e.reg(count_op.reg, 8 if e.wide else 4)  # CL: the low 5 bits of ECX are the low 5 bits of CL
    else:
        src = e.load(count_op, size=1)
    expr = f"{src} & {_count_mask(size):#x}"
    if modulo:
        expr = f"({expr}) % {modulo}"
    e.emit(f"{c} = {expr}")
    return c


def _rot_modulo(name: str, size: int) -> int:
    """rcl/rcr on bytes and words rotate through CF over 9 / 17 bits: count mod 9 / 17 (SDM RCL)."""
    if name in ("rcl", "rcr") and size < 4:
        return 8 * size + 1
    return 0


@op("shl", "sal", "shr", "sar", "rol", "ror", "rcl", "rcr", flags="rw", pure=True)
def shift(e: Emitter) -> None:
    """One emitter for the eight shift/rotate forms; ``_body`` emits the nonzero-count part."""
    name = e.insn.name
    dst, count_op = e.insn.ops
    size = dst.size
    addr = e.ea(dst) if dst.kind == MEM else None
    modulo = _rot_modulo(name, size)
    c = _static_count(e, count_op, size)
    if c is not None:
        if modulo:
            c %= modulo
        v = e.load(dst, addr=addr)
        if c == 0:
            _zero_count(e, dst)
            return  # nothing else changes (the memory operand was still read)
        cnt = e.const(c)
        cnt1 = e.const(c - 1)
        _body(e, name, dst, addr, v, cnt, cnt1)
        return
    cnt = _runtime_count(e, count_op, size, modulo)
    v = e.load(dst, addr=addr)
    with e.block(f"if {cnt}:"):
        _body(e, name, dst, addr, v, cnt, f"{cnt} - 1")
    if e.wide and dst.kind == REG and dst.size == 4:
        with e.block("else:"):
            _zero_count(e, dst)
    e.flags_unknown()


def _zero_count(e: Emitter, dst: Operand) -> None:
    """A count of 0 changes nothing, but in 64-bit mode a 32-bit register is still
    written, so its upper half is cleared (as QEMU does, hence Unicorn)."""
    if e.wide and dst.kind == REG and dst.size == 4:
        e.write_reg(dst.reg, 4, e.reg(dst.reg, 4))


def _body(e: Emitter, name: str, dst: Operand, addr: str | None, v: str, cnt: str, cnt1: str) -> None:
    """Compute, store and set the flags for a count known to be nonzero (masked to 5 bits)."""
    size = dst.size
    bits = 8 * size
    m = f"{MASK[size]:#x}"
    r = e.tmp("r")
    if name in ("shl", "sal", "shr", "sar"):
        # cc_src, the value shifted by count-1, is computed only when the flags are live.
        s = e.tmp("s") if e.flags_live else "0"
        if name in ("shl", "sal"):
            e.emit(f"{r} = {v} << {cnt} & {m}")
            if e.flags_live:
                e.emit(f"{s} = {v} << ({cnt1}) & {m}")
            kind = F.SHL
        elif name == "shr":
            e.emit(f"{r} = {v} >> {cnt}")
            if e.flags_live:
                e.emit(f"{s} = {v} >> ({cnt1})")
            kind = F.SAR
        else:
            sign = SIGN[size]
            sv = e.tmp("sv")
            e.emit(f"{sv} = ({v} ^ {sign:#x}) - {sign:#x}")
            e.emit(f"{r} = {sv} >> {cnt} & {m}")
            if e.flags_live:
                e.emit(f"{s} = {sv} >> ({cnt1}) & {m}")
            kind = F.SAR
        e.store(dst, r, addr=addr)
        e.set_cc(kind, size, r, s)
        return
    top = bits - 1
    f = e.tmp("f")  # the new CF | OF << 11
    if name in ("rol", "ror"):
        # Rotating by a multiple of the width leaves the value but still sets the flags.
        k = e.tmp("k")
        e.emit(f"{k} = {cnt} & {bits - 1}")
        if name == "rol":
            e.emit(f"{r} = ({v} << {k} | {v} >> ({bits} - {k})) & {m}")
            # CF = LSB(result); OF = MSB(result) ^ CF
            e.emit(f"{f} = {r} & 1 | (({r} >> {top} ^ {r}) & 1) << 11")
        else:
            e.emit(f"{r} = ({v} >> {k} | {v} << ({bits} - {k})) & {m}")
            # CF = MSB(result); OF = MSB(result) ^ bit (n-2) of the result
            e.emit(f"{f} = {r} >> {top} | (({r} >> {top} ^ {r} >> {top - 1}) & 1) << 11")
    else:
        # Rotate the (n+1)-bit value CF:dest.
        w = bits + 1
        wm = f"{(1 << w) - 1:#x}"
        x = e.tmp("x")
        e.emit(f"{x} = {v} | (1 if {e.carry()} else 0) << {bits}")
        if name == "rcl":
            e.emit(f"{x} = ({x} << {cnt} | {x} >> ({w} - {cnt})) & {wm}")
        else:
            e.emit(f"{x} = ({x} >> {cnt} | {x} << ({w} - {cnt})) & {wm}")
        e.emit(f"{r} = {x} & {m}")
        # CF = the bit rotated into position n; OF = MSB(original ^ result) (QEMU's
        # formula; the SDM defines OF for count 1 only, where they agree).
        e.emit(f"{f} = {x} >> {bits} | (({v} ^ {r}) >> {top} & 1) << 11")
    e.store(dst, r, addr=addr)
    e.set_flags_value(f"{e.eflags_arith()} & {~_CF_OF & F.ARITH:#x} | {f}")


@op("shld", "shrd", flags="rw", pure=True)
def shld_shrd(e: Emitter) -> None:
    """SHLD/SHRD dst, src, count: shift dst, filling from src (SDM vol. 2, SHLD/SHRD).

    The shift is done on a double-width value so one expression covers every
    count.  For 32-bit operands that value is dst:src (shld) or src:dst
    (shrd).  For 16-bit operands a count of 17..31 is larger than the operand,
    where the SDM leaves result and flags undefined; hardware (and QEMU, hence
    Unicorn) shift the 48-bit value dst:src:dst, and so does this code.
    """
    name = e.insn.name
    dst, src, count_op = e.insn.ops
    addr = e.ea(dst) if dst.kind == MEM else None
    c = _static_count(e, count_op, dst.size)
    if c is not None:
        v = e.load(dst, addr=addr)
        if c == 0:
            _zero_count(e, dst)
            return
        _shld_body(e, name, dst, addr, v, e.load(src), e.const(c), e.const(c - 1))
        return
    cnt = _runtime_count(e, count_op, dst.size)
    v = e.load(dst, addr=addr)
    with e.block(f"if {cnt}:"):
        _shld_body(e, name, dst, addr, v, e.load(src), cnt, f"{cnt} - 1")
    if e.wide and dst.kind == REG and dst.size == 4:
        with e.block("else:"):
            _zero_count(e, dst)
    e.flags_unknown()


def _shld_body(e: Emitter, name: str, dst: Operand, addr: str | None, v: str, s: str, cnt: str, cnt1: str) -> None:
    size = dst.size
    bits = 8 * size
    width = max(32, bits)  # the count can reach 31: the double value needs >= 32 bits per half
    m = f"{MASK[size]:#x}"
    x = e.tmp("x")
    if bits == width:
        low = s if name == "shld" else v
        high = v if name == "shld" else s
        e.emit(f"{x} = {high} << {width} | {low}")
    else:
        e.emit(f"{x} = {v} << {width} | {s} << {bits} | {v}")
    r = e.tmp("r")
    live = e.flags_live
    cs = e.tmp("s") if live else "0"
    if name == "shld":
        e.emit(f"{r} = {x} << {cnt} >> {width} & {m}")
        if live:
            e.emit(f"{cs} = {x} << ({cnt1}) >> {width} & {m}")
        kind = F.SHL
    else:
        e.emit(f"{r} = {x} >> {cnt} & {m}")
        if live:
            e.emit(f"{cs} = {x} >> ({cnt1}) & {m}")
        kind = F.SAR
    e.store(dst, r, addr=addr)
    e.set_cc(kind, size, r, cs)
