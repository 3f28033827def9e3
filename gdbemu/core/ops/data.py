"""Data movement: mov, movzx/movsx, lea, xchg, push/pop, sign extensions, bswap, xlat."""

from __future__ import annotations

from ..decode import IMM, MEM, REG, SREG
from ..emit import MASK, Emitter
from ..exceptions import UD
from ..helpers import helper
from ..seg import load_data_seg_fast
from . import op

helper(load_data_seg_fast)  # H.load_data_seg_fast: mov/pop to ES, DS, FS, GS


def _load_data_seg(e: Emitter, seg: int, selector: str) -> None:
    """A load of ES, DS, FS or GS: a plain helper call, not a sync_call.

    The load reads and writes no general register, flag or EIP (a fault
    leaves through the TB's handler, which writes the locals back and sets
    EIP, as for a memory operand), so nothing is written back before it or
    reloaded after it.  ``cpu.icount`` is made exact only on the general path
    (``seg.load_data_seg_fast``), as ``Emitter.helper_call`` would for the whole call.
    """
    e.may_fault = True
    done = e.const(e.index) if e.tier1 else f"@IC@{e.index}"
    e.emit(f"H.load_data_seg_fast(cpu, {seg}, {selector}, {done})")


def _end_if_hflags_changed(e: Emitter) -> None:
    """After a load of ES, DS, FS or GS: leave the TB only if hflags changed (HF_ADDSEG, as
    QEMU ends the TB when "the addseg value may change"); generated code reads the
    bases it needs from ``SB`` at run time, so with the same hflags the TB stays valid."""
    with e.block(f"if cpu.hflags != {e.const(e.hflags)}:"):
        e.exit(2, e.next_eip())


@op("mov", flags="", pure=True)
def mov(e: Emitter) -> None:
    dst, src = e.insn.ops
    if dst.kind == SREG:
        if dst.reg == 1:  # mov to CS: #UD (SDM vol. 2 MOV; QEMU), not a segment load
            e.fault(UD)
            e.ended = True
            return
        if dst.reg != 2:
            _load_data_seg(e, dst.reg, e.load(src, size=2))
            _end_if_hflags_changed(e)
            return
        e.sync_call("load_seg", str(dst.reg), e.load(src, size=2))
        if dst.reg == 2:  # mov ss: interrupt shadow; end the TB so hflags are fresh
            e.sync_call("inhibit_irq", reload=False)
            e.end()
            return
        _end_if_hflags_changed(e)
        return
    if src.kind == SREG:
        size = 2 if dst.kind == MEM else dst.size
        e.store(dst, f"cpu.segs[{src.reg}].selector", size=size)
        return
    if dst.kind not in (REG, MEM) or src.kind not in (REG, MEM, IMM):
        # mov to/from CRn/DRn lives in the system family
        from .system import mov_system

        mov_system(e)
        return
    e.store(dst, e.load(src))


@op("movzx", flags="", pure=True)
def movzx(e: Emitter) -> None:
    dst, src = e.insn.ops
    e.store(dst, e.load(src))


@op("movsx", "movsxd", flags="", pure=True)
def movsx(e: Emitter) -> None:
    """movsx, and movsxd (63 in 64-bit code; without REX.W a plain 32-bit move)."""
    dst, src = e.insn.ops
    s = min(src.size, dst.size)
    v = e.load(src, size=s)
    if s == dst.size:
        e.store(dst, v)
        return
    sign = 1 << (8 * s - 1)
    e.store(dst, f"(({v} ^ {sign:#x}) - {sign:#x}) & {MASK[dst.size]:#x}")


@op("lea", flags="", pure=True)
def lea(e: Emitter) -> None:
    dst, src = e.insn.ops
    off = e.offset(src)
    e.store(dst, f"({off}) & {MASK[dst.size]:#x}" if dst.size < e.addrsize else off)


@op("xchg", flags="")
def xchg(e: Emitter) -> None:
    a, b = e.insn.ops
    if a.kind == MEM or b.kind == MEM:
        m, r = (a, b) if a.kind == MEM else (b, a)
        addr = e.ea(m)
        old = e.load(m, addr=addr)
        e.store(m, e.load(r), addr=addr)
        e.store(r, old)
        return
    va = e.load(a, stable=True)
    e.store(a, e.load(b))
    e.store(b, va)


@op(
    "nop",
    "pause",
    "lfence",
    "mfence",
    "sfence",
    "clflush",
    "prefetch",
    flags="",
    pure=True,
)
def nop(e: Emitter) -> None:
    # clflush/prefetch take a memory operand but never fault on it here (no
    # caches to flush); the fences order nothing in a single-threaded core.
    pass


@op("push", flags="")
def push(e: Emitter) -> None:
    (src,) = e.insn.ops
    size = e.opsize
    if src.kind == SREG:
        e.push([f"cpu.segs[{src.reg}].selector"], size)
        return
    e.push([e.load(src, size=size)], size)


@op("pop", flags="")
def pop(e: Emitter) -> None:
    (dst,) = e.insn.ops
    size = e.opsize
    if dst.kind == SREG:
        v, sp = e.pop(size, commit=False)
        if dst.reg != 2:
            _load_data_seg(e, dst.reg, f"{v} & 0xFFFF")
            # ESP is updated after the segment load succeeded (precise).
            e.write_reg(4, e.stack_size, sp)
            _end_if_hflags_changed(e)
            return
        e.sync_call("load_seg", str(dst.reg), f"{v} & 0xFFFF", reload=True)
        # ESP is updated after the segment load succeeded (precise).
        e.write_reg(4, e.stack_size, sp)
        if dst.reg == 2:
            e.sync_call("inhibit_irq", reload=True)
            e.end()
            return
        _end_if_hflags_changed(e)
        return
    if dst.kind == REG:
        v, sp = e.pop(size, commit=False)
        e.write_reg(4, e.stack_size, sp)
        e.store(dst, v)  # pop esp: the popped value wins
        return
    # pop to memory: ESP is incremented before the address is computed (SDM POP).
    v, sp = e.pop(size, commit=False)
    t = e.tmp("sv")
    e.emit(f"{t} = esp")
    ss = e.stack_size
    e.emit(f"esp = {sp}" if ss >= 4 else f"esp = esp & {(MASK[8] if e.wide else MASK[4]) & ~0xFFFF:#x} | {sp}")
    e.emit("try:")
    e.indent_level += 1
    addr = e.ea(dst)
    e.store_mem(addr, size, v)
    e.indent_level -= 1
    e.emit("except BaseException:")
    e.emit(f"    esp = {t}")
    e.emit("    raise")
    e.written.add(4)


@op("pushal", "pushaw", flags="")
def pusha(e: Emitter) -> None:
    size = e.opsize
    regs = [e.reg(r, size) for r in range(8)]
    e.push(regs, size)


@op("popal", "popaw", flags="")
def popa(e: Emitter) -> None:
    size = e.opsize
    vals = []
    sp: str | None = None
    for _ in range(8):
        if sp is None:
            v, sp = e.pop(size, commit=False)
        else:
            a = e.linear(2, sp)
            v = e.load_mem(a, size)
            e.emit(f"{sp} = {sp} + {size} & {MASK[e.stack_size]:#x}")
        vals.append(v)
    # popa order: edi esi ebp (skip esp) ebx edx ecx eax
    for r, v in zip((7, 6, 5, 4, 3, 2, 1, 0), vals, strict=True):
        if r != 4:
            e.write_reg(r, size, v)
    assert sp is not None  # the first pop set it
    e.write_reg(4, e.stack_size, sp)


@op("cbw", flags="", pure=True)
def cbw(e: Emitter) -> None:
    e.write_reg(0, 2, "((eax & 0xFF ^ 0x80) - 0x80) & 0xFFFF")


@op("cwde", flags="", pure=True)
def cwde(e: Emitter) -> None:
    e.write_reg(0, 4, "((eax & 0xFFFF ^ 0x8000) - 0x8000) & 0xFFFFFFFF")


@op("cwd", flags="", pure=True)
def cwd(e: Emitter) -> None:
    e.write_reg(2, 2, "0xFFFF if eax & 0x8000 else 0")


@op("cdq", flags="", pure=True)
def cdq(e: Emitter) -> None:
    e.write_reg(2, 4, "0xFFFFFFFF if eax & 0x80000000 else 0")


@op("cdqe", flags="", pure=True)
def cdqe(e: Emitter) -> None:
    e.write_reg(0, 8, "((eax & 0xFFFFFFFF ^ 0x80000000) - 0x80000000) & 0xFFFFFFFFFFFFFFFF")


@op("cqo", flags="", pure=True)
def cqo(e: Emitter) -> None:
    e.write_reg(2, 8, "0xFFFFFFFFFFFFFFFF if eax >> 63 else 0")


@op("bswap", flags="", pure=True)
def bswap(e: Emitter) -> None:
    (dst,) = e.insn.ops
    v = e.load(dst)
    if dst.size >= 4:
        e.store(dst, f"int.from_bytes({v}.to_bytes({dst.size}, 'little'), 'big')")
    else:  # bswap r16 is undefined; hardware (and QEMU) give 0
        e.store(dst, "0", size=2)


@op("xlatb", flags="")
def xlat(e: Emitter) -> None:
    seg = e.insn.ops[0].seg if e.insn.ops else 3
    off = "(ebx + (eax & 0xFF)) & " + (hex(MASK[e.addrsize]))
    a = e.linear(seg, off)
    v = e.load_mem(a, 1)
    e.write_reg(0, 1, v)


@op("lahf", flags="r")
def lahf(e: Emitter) -> None:
    e.write_reg(0, 1, f"({e.eflags_arith()} | 2) & 0xD7", high=True)


@op("sahf", flags="rw")
def sahf(e: Emitter) -> None:
    # SF ZF AF PF CF from AH; OF unchanged.
    e.set_flags_value(f"({e.eflags_arith()} & 0x800) | ((eax >> 8) & 0xD5)")
