"""POPCNT, LZCNT/TZCNT, CRC32 and the SSE4.2 string compares (PCMPESTRI/ESTRM/ISTRI/ISTRM).

Theory of operation
-------------------
``F3 0F BC`` / ``F3 0F BD`` decode as ``tzcnt`` / ``lzcnt`` (core/decode.py).
A CPU without BMI1 (TZCNT) or ABM (LZCNT) ignores the F3 prefix and runs
BSF / BSR: gcc -m32 -O2 emits ``rep bsf`` for __builtin_ctz because of that.
So these two keys are not gated by ``@op(feature=...)`` (that would be #UD);
the CPU model puts the markers ``tzcnt=bsf`` / ``lzcnt=bsr`` in
``CPU.disabled_ops`` (through ``FEATURE_OPS``), and the emitted code picks
the semantics at run time by that set.

The string compares follow the pseudocode of SDM vol. 2, 4.1 ("Imm8 control
byte operation for PCMPESTRI / PCMPESTRM / PCMPISTRI / PCMPISTRM"): element
format (imm8[1:0]), aggregation (imm8[3:2]), polarity (imm8[5:4]) and
output selection (imm8[6]); CF = IntRes2 != 0, ZF/SF = the source/first
operand is shorter than a full register, OF = IntRes2[0], AF = PF = 0.
Memory operands need no alignment.
"""

from __future__ import annotations

from .. import flags as F
from ..decode import MEM
from ..emit import MASK, Emitter
from ..helpers import helper
from . import FEATURE_OPS, op
from .simd_int import split
from .simd_mov import vload, xmm_write
from .simd_state import sse_check

FEATURE_OPS.setdefault("bmi1", set()).add("tzcnt=bsf")
FEATURE_OPS.setdefault("abm", set()).add("lzcnt=bsr")


@op("f30fb8", flags="w", pure=True, feature="popcnt")
def popcnt(e: Emitter) -> None:
    """POPCNT: ZF = (source == 0); CF OF SF AF PF cleared."""
    dst, src = e.insn.ops
    size = e.opsize
    v = e.load(src, stable=src.kind != MEM, size=size)
    e.write_reg(dst.reg, size, f"{v}.bit_count()")
    e.set_flags_value(f"(0 if {v} else {F.ZF})")


def _count(e: Emitter, lz: bool) -> None:
    dst, src = e.insn.ops
    size = e.opsize
    bits = 8 * size
    v = e.load(src, stable=True, size=size)
    marker = "lzcnt=bsr" if lz else "tzcnt=bsf"
    with e.block(f"if {marker!r} in cpu.disabled_ops:"):  # BSR / BSF (module docstring)
        idx = f"{v}.bit_length() - 1" if lz else f"({v} & -{v}).bit_length() - 1"
        e.write_reg(dst.reg, size, f"({idx} if {v} else {e.reg(dst.reg, size)})")
        e.set_cc(F.LOGIC, size, v)
    with e.block("else:"):
        r = e.tmp("r")
        e.emit(f"{r} = {bits} - {v}.bit_length()" if lz else f"{r} = ({v} & -{v}).bit_length() - 1 if {v} else {bits}")
        e.write_reg(dst.reg, size, r)
        e.set_flags_value(f"(({F.CF} if not {v} else 0) | ({F.ZF} if not {r} else 0))")
    e.flags_unknown()


@op("lzcnt", flags="w", pure=True)
def lzcnt(e: Emitter) -> None:
    """LZCNT: CF = (source == 0), ZF = (result == 0)."""
    _count(e, True)


@op("tzcnt", flags="w", pure=True)
def tzcnt(e: Emitter) -> None:
    """TZCNT: CF = (source == 0), ZF = (result == 0)."""
    _count(e, False)


# ---- CRC32 (Castagnoli, reflected: the polynomial 11EDC6F41H) -------------------------------------
def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC = _crc_table()


@helper
def v_crc32(crc: int, data: int, n: int) -> int:
    t = _CRC
    for _ in range(n):
        crc = t[(crc ^ data) & 0xFF] ^ (crc >> 8)
        data >>= 8
    return crc


@op("f20f38f0", "f20f38f1", flags="", feature="sse4.2")
def crc32(e: Emitter) -> None:
    """CRC32 r32/r64, r/m8/16/32/64: CRC-32C of the source bytes (no flags)."""
    dst, src = e.insn.ops
    n = 1 if e.insn.name.endswith("f0") else e.opsize
    dsize = 8 if e.opsize == 8 else 4
    v = e.load(src, size=n)
    e.write_reg(dst.reg, dsize, f"H.v_crc32({e.reg(dst.reg, 4)}, {v}, {n})")


# ---- PCMPxSTRx ---------------------------------------------------------------------------------------
@helper
def v_pcmpstr(a: int, b: int, la: int, lb: int, imm: int) -> int:
    """IntRes2 of the SDM pseudocode; la/lb < 0 ask for implicit lengths (first zero element)."""
    w = 2 if imm & 1 else 1
    n = 16 // w
    signed = bool(imm & 2)
    xa = split(a, 16, w, signed)
    xb = split(b, 16, w, signed)
    if la < 0:
        la = xa.index(0) if 0 in xa else n
    if lb < 0:
        lb = xb.index(0) if 0 in xb else n
    agg = (imm >> 2) & 3
    res = 0
    if agg == 0:  # equal any
        needles = set(xa[:la])
        for j in range(lb):
            if xb[j] in needles:
                res |= 1 << j
    elif agg == 1:  # ranges
        for j in range(lb):
            for i in range(0, la - 1, 2):
                if xa[i] <= xb[j] <= xa[i + 1]:
                    res |= 1 << j
                    break
    elif agg == 2:  # equal each
        for i in range(n):
            va, vb = i < la, i < lb
            if (va and vb and xa[i] == xb[i]) or (not va and not vb):
                res |= 1 << i
    else:  # equal ordered
        for j in range(n):
            ok = True
            for k in range(n - j):
                if k >= la:
                    break
                if j + k >= lb or xb[j + k] != xa[k]:
                    ok = False
                    break
            if ok:
                res |= 1 << j
    pol = (imm >> 4) & 3
    full = (1 << n) - 1
    if pol == 1:
        res ^= full
    elif pol == 3:
        res ^= (1 << lb) - 1
    return res | la << 32 | lb << 40


@helper
def v_pcmpstr_mask(res: int, imm: int) -> int:
    w = 2 if imm & 1 else 1
    n = 16 // w
    if not imm & 0x40:
        return res
    ones = (1 << 8 * w) - 1
    return sum(ones << (8 * w * i) for i in range(n) if res >> i & 1)


def _pcmpstr_flags(res: str, imm: int) -> str:
    n = 8 if imm & 1 else 16
    return (
        f"(({F.CF} if {res} & 0xFFFF else 0) | ({F.ZF} if ({res} >> 40 & 0xFF) < {n} else 0)"
        f" | ({F.SF} if ({res} >> 32 & 0xFF) < {n} else 0) | ({F.OF} if {res} & 1 else 0))"
    )


@op("660f3a60", "660f3a61", "660f3a62", "660f3a63", flags="w", feature="sse4.2")
def pcmpstr(e: Emitter) -> None:
    """PCMPESTRM (60) / PCMPESTRI (61) / PCMPISTRM (62) / PCMPISTRI (63)."""
    sse_check(e)
    dst, src, immop = e.insn.ops
    imm = immop.imm & 0xFF
    kind = int(e.insn.name[-2:], 16)
    s = e.tmp("v")
    e.emit(f"{s} = {vload(e, src, 16)}")
    n = 8 if imm & 1 else 16
    if kind < 0x62:  # explicit lengths in EAX/EDX (RAX/RDX with REX.W): |value| saturated to n
        size = 8 if e.opsize == 8 else 4
        sign = 1 << (8 * size - 1)
        la, lb = e.tmp("l"), e.tmp("l")
        for name, reg in ((la, "eax"), (lb, "edx")):
            e.emit(f"{name} = min(abs(({reg} & {MASK[size]:#x} ^ {sign:#x}) - {sign:#x}), {n})")
    else:
        la = lb = "-1"
    r = e.tmp("r")
    e.emit(f"{r} = H.v_pcmpstr(X[{dst.reg}], {s}, {la}, {lb}, {imm})")
    e.set_flags_value(_pcmpstr_flags(r, imm))
    if kind & 1:  # index in ECX
        res = f"({r} & 0xFFFF)"
        idx = f"{res}.bit_length() - 1" if imm & 0x40 else f"({res} & -{res}).bit_length() - 1"
        e.write_reg(1, 4, f"({idx} if {res} else {n})")
    else:  # mask in XMM0
        xmm_write(e, 0, f"H.v_pcmpstr_mask({r} & 0xFFFF, {imm})")


__all__ = ["v_crc32", "v_pcmpstr"]


# ---- BMI1 / BMI2 (VEX-encoded general-purpose instructions) -------------------------------------------
def _vex_bits(raw: bytes) -> tuple[int, int]:
    """(VEX.L, VEX.vvvv as a register number) of an instruction's VEX prefix."""
    i = 0
    while raw[i] not in (0xC4, 0xC5):
        i += 1
    b = raw[i + 1] if raw[i] == 0xC5 else raw[i + 2]
    return (b >> 2) & 1, (~b >> 3) & 0xF


def _bmi_prologue(e: Emitter) -> bool:
    """#UD outside protected mode (VEX is not recognized in real and virtual-8086 mode) or with VEX.L = 1."""
    from ..cpu import HF_PE, HF_VM

    if not e.hflags & HF_PE or e.hflags & HF_VM or _vex_bits(e.insn.raw)[0]:
        e.fault(6)
        e.ended = True
        return False
    return True


def _szf(size: int, r: str) -> str:
    return f"(({F.ZF} if not {r} else 0) | ({F.SF} if {r} >> {8 * size - 1} else 0))"


@op("v0f38f2", flags="w", pure=True, feature="bmi1")
def andn(e: Emitter) -> None:
    """ANDN: dst = ~src1 & src2; SF ZF from the result, CF OF cleared."""
    if not _bmi_prologue(e):
        return
    dst, s1, s2 = e.insn.ops
    size = e.opsize
    b = e.load(s2, stable=True, size=size)
    r = e.tmp("r")
    e.emit(f"{r} = ~{e.load(s1, size=size)} & {b} & {MASK[size]:#x}")
    e.write_reg(dst.reg, size, r)
    e.set_flags_value(_szf(size, r))


@op("v0f38f7", flags="w", pure=True, feature="bmi1")
def bextr(e: Emitter) -> None:
    """BEXTR: dst = src[start + len - 1 : start] (control in vvvv); ZF from the result, CF OF cleared."""
    if not _bmi_prologue(e):
        return
    dst, src, ctl = e.insn.ops
    size = e.opsize
    v = e.load(src, stable=True, size=size)
    c = e.tmp("c")
    e.emit(f"{c} = {e.load(ctl, size=size)}")
    r = e.tmp("r")
    e.emit(f"{r} = {v} >> ({c} & 0xFF) & ((1 << ({c} >> 8 & 0xFF)) - 1)")
    e.write_reg(dst.reg, size, r)
    e.set_flags_value(f"({F.ZF} if not {r} else 0)")


_BLS = {1: "blsr", 2: "blsmsk", 3: "blsi"}


@op("v0f38f3", flags="w", pure=True, feature="bmi1")
def bls(e: Emitter) -> None:
    """BLSR (/1) / BLSMSK (/2) / BLSI (/3) into the vvvv register."""
    kind = _BLS.get((e.insn.modrm >> 3) & 7)
    if kind is None or not _bmi_prologue(e):
        if kind is None:
            e.fault(6)
            e.ended = True
        return
    dst, src = e.insn.ops
    size = e.opsize
    m = MASK[size]
    v = e.load(src, stable=True, size=size)
    r = e.tmp("r")
    if kind == "blsr":
        e.emit(f"{r} = {v} & ({v} - 1) & {m:#x}")
        cf = f"(1 if not {v} else 0)"
    elif kind == "blsmsk":
        e.emit(f"{r} = ({v} ^ ({v} - 1)) & {m:#x}")
        cf = f"(1 if not {v} else 0)"
    else:
        e.emit(f"{r} = {v} & -{v} & {m:#x}")
        cf = f"(1 if {v} else 0)"
    e.write_reg(dst.reg, size, r)
    e.set_flags_value(f"({_szf(size, r)} | {cf})")


@op("v0f38f5", flags="w", pure=True, feature="bmi2")
def bzhi(e: Emitter) -> None:
    """BZHI: clear the bits from index vvvv[7:0] up; CF = index beyond the operand; ZF SF from the result."""
    if not _bmi_prologue(e):
        return
    dst, src, idx = e.insn.ops
    size = e.opsize
    v = e.load(src, stable=True, size=size)
    n = e.tmp("n")
    e.emit(f"{n} = {e.load(idx, size=size)} & 0xFF")
    r = e.tmp("r")
    e.emit(f"{r} = {v} & ((1 << {n}) - 1) if {n} < {8 * size} else {v}")
    e.write_reg(dst.reg, size, r)
    e.set_flags_value(f"({_szf(size, r)} | (1 if {n} > {8 * size - 1} else 0))")


@helper
def v_pdep(src: int, mask: int) -> int:
    out = 0
    k = 0
    while mask:
        low = mask & -mask
        if src >> k & 1:
            out |= low
        k += 1
        mask ^= low
    return out


@helper
def v_pext(src: int, mask: int) -> int:
    out = 0
    k = 0
    while mask:
        low = mask & -mask
        if src & low:
            out |= 1 << k
        k += 1
        mask ^= low
    return out


@op("vf20f38f5", "vf30f38f5", flags="", feature="bmi2")
def pdep(e: Emitter) -> None:
    """PDEP (F2) / PEXT (F3): dst, src (vvvv), mask (r/m)."""
    if not _bmi_prologue(e):
        return
    dst, s1, s2 = e.insn.ops
    size = e.opsize
    mask = e.load(s2, stable=True, size=size)
    fn = "v_pdep" if e.insn.name.startswith("vf2") else "v_pext"
    e.write_reg(dst.reg, size, f"H.{fn}({e.load(s1, size=size)}, {mask})")


@op("vf20f38f6", flags="", feature="bmi2")
def mulx(e: Emitter) -> None:
    """MULX: hi:lo = EDX * r/m (unsigned, flags untouched); lo to vvvv, then hi to ModRM.reg."""
    if not _bmi_prologue(e):
        return
    hi, lo, src = e.insn.ops
    size = e.opsize
    v = e.load(src, stable=True, size=size)
    p = e.tmp("p")
    e.emit(f"{p} = {e.reg(2, size)} * {v}")
    e.write_reg(lo.reg, size, f"{p} & {MASK[size]:#x}")
    e.write_reg(hi.reg, size, f"{p} >> {8 * size}")


@op("vf20f3af0", flags="", feature="bmi2")
def rorx(e: Emitter) -> None:
    if not _bmi_prologue(e):
        return
    dst, src, imm = e.insn.ops
    size = e.opsize
    bits = 8 * size
    c = imm.imm & (bits - 1)
    v = e.load(src, stable=True, size=size)
    e.write_reg(dst.reg, size, f"({v} >> {c} | {v} << {bits - c}) & {MASK[size]:#x}" if c else v)


@op("vf30f38f7", "v660f38f7", "vf20f38f7", flags="", feature="bmi2")
def shiftx(e: Emitter) -> None:
    """SARX (F3) / SHLX (66) / SHRX (F2): count = vvvv mod the operand size, flags untouched."""
    if not _bmi_prologue(e):
        return
    dst, src, cnt = e.insn.ops
    size = e.opsize
    bits = 8 * size
    v = e.load(src, stable=True, size=size)
    c = e.tmp("c")
    e.emit(f"{c} = {e.load(cnt, size=size)} & {bits - 1}")
    kind = e.insn.name[1:3]
    if kind == "f3":
        sign = 1 << (bits - 1)
        value = f"((({v} ^ {sign:#x}) - {sign:#x}) >> {c}) & {MASK[size]:#x}"
    elif kind == "66":
        value = f"{v} << {c} & {MASK[size]:#x}"
    else:
        value = f"{v} >> {c}"
    e.write_reg(dst.reg, size, value)
