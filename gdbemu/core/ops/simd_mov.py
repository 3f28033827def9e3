"""SSE/SSE2/SSE3 data movement and bitwise logic, and their MMX forms: the hot SIMD path.

Theory of operation
-------------------
The XMM registers are Python ints in ``cpu.fpu.xmm``, bound in generated
code as ``X`` (a list only ever updated in place); a register move is one
list assignment, a 128-bit load is two inline 64-bit TLB-compare loads.
MMX register i is the low 64 bits of ``cpu.fpu.st[i]`` (ops/simd_state.py).

Every emitter starts with the exception checks of ops/simd_state.py
(``sse_check`` / ``mmx_check``); movaps-class memory operands (a legacy-SSE
m128 operand, except the unaligned moves) then check 16-byte alignment
(#GP(0)) before any access; a 16-byte store that crosses a page probes both
pages first so a #PF leaves memory unchanged (precise exceptions).
Registers (XMM, MMX, GPR) are written last.

Also the operand helpers the other SIMD modules use: ``vload``,
``vstore``, ``mm_write``.
"""

from __future__ import annotations

from ...softmmu.access import ACCESS_WRITE
from ..cpu import CPU
from ..decode import MEM, MMX, REG, XMM, Operand
from ..emit import MASK, Emitter
from ..helpers import helper
from . import op
from .simd_state import amask, mmx_check, sse_check

M64 = 0xFFFFFFFFFFFFFFFF
M128 = (1 << 128) - 1
MMX_TAG = 0xFFFF << 64  # an MMX write sets the exponent field of R_i to all ones


@helper
def v_probe_write(cpu: CPU, addr: int, size: int) -> None:
    """Both pages of a store that crosses a page, looked up for write before anything is stored."""
    m = amask(cpu.hflags)
    cpu.softmmu.lookup(cpu.mmu_idx, addr, ACCESS_WRITE)
    cpu.softmmu.lookup(cpu.mmu_idx, (addr + size - 1) & m, ACCESS_WRITE)


def _next(e: Emitter, a: str, k: int) -> str:
    t = e.tmp("a")
    e.emit(f"{t} = {a} + {k} & {amask(e.hflags):#x}")
    return t


def align_check(e: Emitter, a: str, n: int = 16) -> None:
    e.emit(f"if {a} & {n - 1}: raise Fault(13, 0)")


def vload(e: Emitter, op: Operand, size: int, aligned: bool = False, addr: str | None = None) -> str:
    """An expression for ``size`` bytes of a vector operand (XMM, MMX, GPR or memory), zero-extended."""
    if op.kind == XMM:
        return f"X[{op.reg}]" if size == 16 else f"(X[{op.reg}] & {MASK.get(size, (1 << 8 * size) - 1):#x})"
    if op.kind == MMX:
        return f"(cpu.fpu.st[{op.reg}] & {MASK.get(size, M64):#x})"
    if op.kind == REG:
        return e.load(op, size=size)
    assert op.kind == MEM
    a = addr if addr is not None else e.ea(op)
    if aligned and size == 16:
        align_check(e, a)
    if size <= 8:
        return e.load_mem(a, size)
    lo = e.load_mem(a, 8)
    hi = e.load_mem(_next(e, a, 8), 8)
    v = e.tmp("v")
    e.emit(f"{v} = {lo} | {hi} << 64")
    return v


def vstore(e: Emitter, op: Operand, size: int, value: str, aligned: bool = False) -> None:
    """Store ``value`` (masked to ``size``) into memory; a register destination is the caller's."""
    assert op.kind == MEM
    a = e.ea(op)
    if size <= 8:
        e.store_mem(a, size, value)
        return
    v = e.tmp("s")
    e.emit(f"{v} = {value}")
    if aligned:
        align_check(e, a)
    else:
        e.emit(f"if {a} & 0xFFF > 0xFF0: H.v_probe_write(cpu, {a}, 16)")
    e.store_mem(a, 8, f"{v} & {M64:#x}")
    e.store_mem(_next(e, a, 8), 8, f"{v} >> 64")


def mm_write(e: Emitter, reg: int, value: str) -> None:
    """Write MMX register ``reg`` (value masked to 64 bits) and enter MMX state."""
    e.emit(f"cpu.fpu.st[{reg}] = {value} | {MMX_TAG:#x}")
    e.emit("H.mmx_enter(cpu)")


def mm_enter(e: Emitter) -> None:
    e.emit("H.mmx_enter(cpu)")


def xmm_write(e: Emitter, reg: int, value: str) -> None:
    e.emit(f"X[{reg}] = {value}")


def check(e: Emitter) -> bool:
    """The checks for this instruction's register file; True for XMM (SSE), False for MMX."""
    ops = e.insn.ops
    if any(o.kind == XMM for o in ops):
        sse_check(e)
        return True
    mmx_check(e)
    return False


# ---- full-width moves ----------------------------------------------------------------------
def _move128(e: Emitter, aligned: bool) -> None:
    sse_check(e)
    dst, src = e.insn.ops[0], e.insn.ops[1]
    if dst.kind == XMM:
        v = vload(e, src, 16, aligned)
        xmm_write(e, dst.reg, v)
    else:
        vstore(e, dst, 16, f"X[{src.reg}]", aligned)


@op("0f28", "0f29", "0f2b", flags="", feature="sse")
def movaps(e: Emitter) -> None:
    """MOVAPS / MOVNTPS (m128 aligned)."""
    _move128(e, True)


@op("660f28", "660f29", "660f2b", "660f6f", "660f7f", "660fe7", flags="", feature="sse2")
def movapd(e: Emitter) -> None:
    """MOVAPD / MOVNTPD / MOVDQA / MOVNTDQ (m128 aligned)."""
    _move128(e, True)


@op("660f382a", flags="", feature="sse4.1")
def movntdqa(e: Emitter) -> None:
    _move128(e, True)


@op("0f10", "0f11", flags="", feature="sse")
def movups(e: Emitter) -> None:
    _move128(e, False)


@op("660f10", "660f11", "f30f6f", "f30f7f", flags="", feature="sse2")
def movupd(e: Emitter) -> None:
    """MOVUPD / MOVDQU."""
    _move128(e, False)


@op("f20ff0", flags="", feature="sse3")
def lddqu(e: Emitter) -> None:
    sse_check(e)
    dst, src = e.insn.ops
    if src.kind != MEM:
        e.fault(6)
        e.ended = True
        return
    xmm_write(e, dst.reg, vload(e, src, 16))


# ---- scalar moves --------------------------------------------------------------------------
def _move_scalar(e: Emitter, size: int) -> None:
    sse_check(e)
    dst, src = e.insn.ops[0], e.insn.ops[1]
    m = (1 << (8 * size)) - 1
    if dst.kind == XMM and src.kind == XMM:
        xmm_write(e, dst.reg, f"X[{dst.reg}] & {M128 ^ m:#x} | X[{src.reg}] & {m:#x}")
    elif dst.kind == XMM:
        xmm_write(e, dst.reg, vload(e, src, size))  # from memory: zero-extended
    else:
        vstore(e, dst, size, f"X[{src.reg}] & {m:#x}")


@op("f30f10", "f30f11", flags="", feature="sse")
def movss(e: Emitter) -> None:
    _move_scalar(e, 4)


@op("f20f10", "f20f11", flags="", feature="sse2")
def movsd(e: Emitter) -> None:
    _move_scalar(e, 8)


def _half(e: Emitter, high: bool) -> None:
    """MOVLPS/MOVLPD/MOVHPS/MOVHPD and, register forms of 0F 12/16, MOVHLPS/MOVLHPS."""
    sse_check(e)
    dst, src = e.insn.ops[0], e.insn.ops[1]
    name = e.insn.name
    if dst.kind == XMM:
        if src.kind == XMM:
            if name == "0f12":  # movhlps: low half <- source's high half
                xmm_write(e, dst.reg, f"X[{dst.reg}] & {M64 << 64:#x} | X[{src.reg}] >> 64")
                return
            if name == "0f16":  # movlhps: high half <- source's low half
                xmm_write(e, dst.reg, f"X[{dst.reg}] & {M64:#x} | (X[{src.reg}] & {M64:#x}) << 64")
                return
            e.fault(6)
            e.ended = True
            return
        v = vload(e, src, 8)
        if high:
            xmm_write(e, dst.reg, f"X[{dst.reg}] & {M64:#x} | {v} << 64")
        else:
            xmm_write(e, dst.reg, f"X[{dst.reg}] & {M64 << 64:#x} | {v}")
    else:
        if dst.kind != MEM:
            e.fault(6)
            e.ended = True
            return
        vstore(e, dst, 8, f"X[{src.reg}] >> 64" if high else f"X[{src.reg}] & {M64:#x}")


@op("0f12", "0f13", flags="", feature="sse")
def movlps(e: Emitter) -> None:
    _half(e, False)


@op("0f16", "0f17", flags="", feature="sse")
def movhps(e: Emitter) -> None:
    _half(e, True)


@op("660f12", "660f13", flags="", feature="sse2")
def movlpd(e: Emitter) -> None:
    _half(e, False)


@op("660f16", "660f17", flags="", feature="sse2")
def movhpd(e: Emitter) -> None:
    _half(e, True)


@op("f20f12", flags="", feature="sse3")
def movddup(e: Emitter) -> None:
    sse_check(e)
    dst, src = e.insn.ops
    v = e.tmp("v")
    e.emit(f"{v} = {vload(e, src, 8)}")
    xmm_write(e, dst.reg, f"{v} | {v} << 64")


@op("f30f12", "f30f16", flags="", feature="sse3")
def movsldup(e: Emitter) -> None:
    """MOVSLDUP (even dwords duplicated) / MOVSHDUP (odd dwords)."""
    sse_check(e)
    dst, src = e.insn.ops
    v = e.tmp("v")
    e.emit(f"{v} = {vload(e, src, 16, aligned=True)}")
    sh = 32 if e.insn.name == "f30f16" else 0
    lanes = " | ".join(f"(({v} >> {64 * k + sh} & 0xFFFFFFFF) * 0x100000001) << {64 * k}" for k in (0, 1))
    xmm_write(e, dst.reg, lanes)


# ---- MOVD / MOVQ ------------------------------------------------------------------------------
@op("0f6e", flags="", feature="mmx")
def movd_to_mm(e: Emitter) -> None:
    mmx_check(e)
    dst, src = e.insn.ops
    size = 8 if e.opsize == 8 else 4
    mm_write(e, dst.reg, vload(e, src, size))


@op("660f6e", flags="", feature="sse2")
def movd_to_xmm(e: Emitter) -> None:
    sse_check(e)
    dst, src = e.insn.ops
    size = 8 if e.opsize == 8 else 4
    xmm_write(e, dst.reg, vload(e, src, size))


def _movd_out(e: Emitter, src_expr: str) -> None:
    dst = e.insn.ops[0]
    size = 8 if e.opsize == 8 else 4
    value = f"{src_expr} & {MASK[size]:#x}"
    if dst.kind == MEM:
        vstore(e, dst, size, value)
    else:
        e.write_reg(dst.reg, size, value)


@op("0f7e", flags="", feature="mmx")
def movd_from_mm(e: Emitter) -> None:
    mmx_check(e)
    src = e.insn.ops[1]
    t = e.tmp("v")
    e.emit(f"{t} = cpu.fpu.st[{src.reg}]")
    _movd_out(e, t)
    mm_enter(e)


@op("660f7e", flags="", feature="sse2")
def movd_from_xmm(e: Emitter) -> None:
    sse_check(e)
    _movd_out(e, f"X[{e.insn.ops[1].reg}]")


@op("0f6f", "0f7f", flags="", feature="mmx")
def movq_mm(e: Emitter) -> None:
    mmx_check(e)
    dst, src = e.insn.ops
    if dst.kind == MMX:
        mm_write(e, dst.reg, vload(e, src, 8))
    else:
        vstore(e, dst, 8, f"cpu.fpu.st[{src.reg}] & {M64:#x}")
        mm_enter(e)


@op("0fe7", flags="", feature="sse")
def movntq(e: Emitter) -> None:
    mmx_check(e)
    dst, src = e.insn.ops
    vstore(e, dst, 8, f"cpu.fpu.st[{src.reg}] & {M64:#x}")
    mm_enter(e)


@op("f30f7e", flags="", feature="sse2")
def movq_load(e: Emitter) -> None:
    """MOVQ xmm1, xmm2/m64: the high quadword cleared."""
    sse_check(e)
    dst, src = e.insn.ops
    xmm_write(e, dst.reg, vload(e, src, 8))


@op("660fd6", flags="", feature="sse2")
def movq_store(e: Emitter) -> None:
    sse_check(e)
    dst, src = e.insn.ops
    if dst.kind == XMM:
        xmm_write(e, dst.reg, f"X[{src.reg}] & {M64:#x}")
    else:
        vstore(e, dst, 8, f"X[{src.reg}] & {M64:#x}")


@op("f20fd6", flags="", feature="sse2")
def movdq2q(e: Emitter) -> None:
    sse_check(e)
    mmx_check(e)
    dst, src = e.insn.ops
    mm_write(e, dst.reg, f"(X[{src.reg}] & {M64:#x})")


@op("f30fd6", flags="", feature="sse2")
def movq2dq(e: Emitter) -> None:
    sse_check(e)
    mmx_check(e)
    dst, src = e.insn.ops
    xmm_write(e, dst.reg, f"cpu.fpu.st[{src.reg}] & {M64:#x}")
    mm_enter(e)


@op("0fc3", flags="", feature="sse2")
def movnti(e: Emitter) -> None:
    dst, src = e.insn.ops
    if dst.kind != MEM:
        e.fault(6)
        e.ended = True
        return
    size = 8 if e.opsize == 8 else 4
    e.store(dst, e.load(src, size=size), size=size)


# ---- bitwise logic -------------------------------------------------------------------------------
_LOGIC = {"54": "&", "55": "andn", "56": "|", "57": "^", "db": "&", "df": "andn", "eb": "|", "ef": "^"}


def _logic(e: Emitter) -> None:
    xmm = check(e)
    dst, src = e.insn.ops
    kind = _LOGIC[e.insn.name[-2:]]
    size = 16 if xmm else 8
    s = vload(e, src, size, aligned=True)
    d = f"X[{dst.reg}]" if xmm else f"(cpu.fpu.st[{dst.reg}] & {M64:#x})"
    if kind == "andn":
        expr = f"~{d} & {s}" if xmm else f"~{d} & {s} & {M64:#x}"
    elif xmm and src.kind == XMM and src.reg == dst.reg and kind == "^":
        expr = "0"  # the zeroing idiom
    else:
        expr = f"{d} {kind} {s}"
    if xmm:
        xmm_write(e, dst.reg, expr if kind != "andn" else f"{expr} & {M128:#x}")
    else:
        mm_write(e, dst.reg, f"({expr})")


for _k in ("54", "55", "56", "57"):
    op("0f" + _k, flags="", feature="sse")(_logic)
    op("660f" + _k, flags="", feature="sse2")(_logic)
for _k in ("db", "df", "eb", "ef"):
    op("0f" + _k, flags="", feature="mmx")(_logic)
    op("660f" + _k, flags="", feature="sse2")(_logic)


# ---- shuffles and unpacks of floating-point lanes (data movement) ------------------------------
@helper
def v_shufps(a: int, b: int, imm: int) -> int:
    d = [(a >> 32 * (imm >> 2 * i & 3)) & 0xFFFFFFFF if i < 2 else (b >> 32 * (imm >> 2 * i & 3)) & 0xFFFFFFFF
         for i in range(4)]  # fmt: skip
    return d[0] | d[1] << 32 | d[2] << 64 | d[3] << 96


@op("0fc6", flags="", feature="sse")
def op_shufps(e: Emitter) -> None:
    sse_check(e)
    dst, src, imm = e.insn.ops
    s = vload(e, src, 16, aligned=True)
    xmm_write(e, dst.reg, f"H.v_shufps(X[{dst.reg}], {s}, {imm.imm & 0xFF})")


@op("660fc6", flags="", feature="sse2")
def op_shufpd(e: Emitter) -> None:
    sse_check(e)
    dst, src, imm = e.insn.ops
    s = vload(e, src, 16, aligned=True)
    i = imm.imm
    lo = f"(X[{dst.reg}] >> 64)" if i & 1 else f"(X[{dst.reg}] & {M64:#x})"
    hi = f"({s} >> 64)" if i & 2 else f"({s} & {M64:#x})"
    xmm_write(e, dst.reg, f"{lo} | {hi} << 64")


@helper
def v_unpck32(a: int, b: int, high: int) -> int:
    sh = 64 if high else 0
    a0, a1 = (a >> sh) & 0xFFFFFFFF, (a >> sh + 32) & 0xFFFFFFFF
    b0, b1 = (b >> sh) & 0xFFFFFFFF, (b >> sh + 32) & 0xFFFFFFFF
    return a0 | b0 << 32 | a1 << 64 | b1 << 96


@op("0f14", "0f15", flags="", feature="sse")
def unpcklps(e: Emitter) -> None:
    sse_check(e)
    dst, src = e.insn.ops
    s = vload(e, src, 16, aligned=True)
    xmm_write(e, dst.reg, f"H.v_unpck32(X[{dst.reg}], {s}, {int(e.insn.name == '0f15')})")


@op("660f14", "660f15", flags="", feature="sse2")
def unpcklpd(e: Emitter) -> None:
    sse_check(e)
    dst, src = e.insn.ops
    s = vload(e, src, 16, aligned=True)
    if e.insn.name == "660f14":
        xmm_write(e, dst.reg, f"X[{dst.reg}] & {M64:#x} | ({s} & {M64:#x}) << 64")
    else:
        xmm_write(e, dst.reg, f"X[{dst.reg}] >> 64 | ({s} >> 64) << 64")


@helper
def v_movmsk(v: int, lane: int, n: int) -> int:
    """The sign bits of ``n`` lanes of ``lane`` bits."""
    out = 0
    for i in range(n):
        out |= ((v >> (lane * i + lane - 1)) & 1) << i
    return out


@op("0f50", flags="", feature="sse")
def movmskps(e: Emitter) -> None:
    sse_check(e)
    dst, src = e.insn.ops
    e.write_reg(dst.reg, 4, f"H.v_movmsk(X[{src.reg}], 32, 4)")


@op("660f50", flags="", feature="sse2")
def movmskpd(e: Emitter) -> None:
    sse_check(e)
    dst, src = e.insn.ops
    e.write_reg(dst.reg, 4, f"(X[{src.reg}] >> 63 & 1 | X[{src.reg}] >> 126 & 2)")


__all__ = ["vload", "vstore", "mm_write", "mm_enter", "xmm_write", "check", "align_check", "M64", "M128"]
