"""Far control transfers (ljmp, lcall, retf) and far-pointer loads (lds les lfs lgs lss).

SDM vol. 2 JMP, CALL, RET and vol. 3, 5.8 (privilege level checking when
transferring program control between code segments).  The emitters fetch
the far pointer (immediate ptr16:16/32 or memory m16:16/32: the offset,
then the selector) in generated code, so a #PF on the pointer is precise
like any load; the helpers then do the descriptor work with the whole state
synced.  Each helper checks everything that can fault — descriptors, the
TSS, the new EIP against the new CS limit, every stack read and write —
before it changes a register, so a fault leaves the instruction undone.

Protected mode:

* a code segment directly: conforming (DPL <= CPL) or non-conforming
  (RPL <= CPL, DPL = CPL); the CPL never changes;
* a call gate: gate DPL >= max(CPL, RPL); JMP may only reach a segment at
  the same level (conforming, or non-conforming with DPL = CPL); CALL to a
  more privileged non-conforming segment switches to the stack SSn:ESPn of
  the TSS and copies the gate's parameter count of parameters (words or
  dwords, by the gate's size) from the caller's stack;
* RETF to the same level, or to an outer level: pops SS:ESP too, releases
  ``imm16`` bytes on both stacks, and nulls the data segment registers the
  outer level may not use;
* a TSS descriptor or a task gate (in the GDT or the LDT): a task switch
  (core/task.py), without nesting for JMP, nested (NT, back link) for
  CALL; the old task's EIP is the instruction after the JMP/CALL;
* any other system descriptor is #GP(selector).

Real mode and virtual-8086 mode: CS is loaded as in real mode (selector,
base = selector << 4), no checks.

IA-32e mode (EFER.LMA; SDM vol. 3, 5.8.3.1, 5.8.6): a target code segment
may be 64-bit (L=1: no limit, a canonical RIP) or compatibility code; the
only call gate is the 16-byte 64-bit one (type 12), whose target must be
64-bit code (L=1, D=0) and which copies no parameters: an inward CALL
takes RSPn from the 64-bit TSS, loads a null SS with RPL = the new CPL and
pushes SS, RSP, CS, RIP in 8-byte slots; TSS descriptors and task gates
are #GP(selector).  From 64-bit code the stack is 64 bits wide; RETF with
REX.W pops 8-byte slots and, returning outward to CPL 0-2, accepts a null SS.

``jmp``/``call`` with an m16:16/32 operand (FF /5, FF /3) are named
"jmp"/"call" by capstone in some modes: the control family hands them to
``far_indirect``.
"""

from __future__ import annotations

from .. import flags as F
from ..cpu import CPU, CR0_PE, CS, DESC_B, DESC_C, DESC_L, DESC_P, EFER_LMA, ESP, HF_CS64, SS, SegmentCache
from ..decode import IMM, MEM, REG
from ..emit import MASK, Emitter
from ..exceptions import GP, NP, TS, UD, GuestFault
from ..helpers import helper
from ..interrupts import far_task_switch
from ..seg import (
    SYS_CALL_GATE16,
    SYS_CALL_GATE32,
    SYS_TASK_GATE,
    SYS_TSS16_AVAIL,
    SYS_TSS16_BUSY,
    SYS_TSS32_AVAIL,
    SYS_TSS32_BUSY,
    check_eip,
    code64,
    dpl_of,
    invalidate_outer_segments,
    is_code,
    load_code_cache,
    null_stack,
    read_descriptor,
    read_system_descriptor,
    set_accessed,
    stack_cache,
    stack_read,
    stack_write,
    sys_type,
    tss_inner_stack,
    tss_rsp,
)
from . import op

MASK64 = 0xFFFFFFFFFFFFFFFF

# Descriptors a far JMP/CALL switches tasks through (a busy TSS is refused by the switch: #GP).
_TASK_TYPES = frozenset({SYS_TSS16_AVAIL, SYS_TSS16_BUSY, SYS_TSS32_AVAIL, SYS_TSS32_BUSY, SYS_TASK_GATE})

_SEGS = {"les": 0, "lss": 2, "lds": 3, "lfs": 4, "lgs": 5}


# ---- emitters --------------------------------------------------------------------------
def _far_pointer(e: Emitter) -> tuple[str, str] | None:
    """(selector, offset) expressions of the far pointer; None (after emitting #UD) if there is none."""
    ops = e.insn.ops
    size = e.opsize
    if len(ops) == 2 and ops[0].kind == IMM and ops[1].kind == IMM:
        return e.const(ops[0].imm & 0xFFFF), e.const(ops[1].imm & MASK[size])
    if not ops or ops[0].kind != MEM:
        e.fault(UD)
        return None
    a = e.ea(ops[0])
    off = e.load_mem(a, size)
    a2 = e.tmp("a")
    e.emit(f"{a2} = {a} + {size} & {_amask(e):#x}")
    sel = e.load_mem(a2, 2)
    return sel, off


def _amask(e: Emitter) -> int:
    """The address width of the code being translated: 64 bits in 64-bit mode."""
    return MASK64 if e.hflags & HF_CS64 else 0xFFFFFFFF


def _far_transfer(e: Emitter, kind: str) -> None:
    ptr = _far_pointer(e)
    if ptr is not None:
        sel, off = ptr
        # reload: a far call changes ESP, which the TB exit writes back from the locals.
        e.sync_call(f"far_{kind}", sel, off, str(e.opsize), e.next_eip())
        e.exit(2, "cpu.eip")
    e.ended = True


@op("ljmp", flags="", end=True)
def ljmp(e: Emitter) -> None:
    _far_transfer(e, "jmp")


@op("lcall", flags="", end=True)
def lcall(e: Emitter) -> None:
    _far_transfer(e, "call")


def far_indirect(e: Emitter) -> None:
    """FF /5 (jmp m16:xx) and FF /3 (call m16:xx) that capstone names "jmp"/"call"."""
    _far_transfer(e, "jmp" if (e.insn.modrm >> 3) & 7 == 5 else "call")


def is_far_indirect(e: Emitter) -> bool:
    """Is this "jmp"/"call" the far form (FF with ModRM.reg 3 or 5)?"""
    insn = e.insn
    return bool(insn.opcode) and insn.opcode[0] == 0xFF and (insn.modrm >> 3) & 7 in (3, 5)


@op("retf", flags="", end=True)
def retf(e: Emitter) -> None:
    imm = e.const(e.insn.ops[0].imm & 0xFFFF) if e.insn.ops else "0"
    e.sync_call("far_ret", str(e.opsize), imm)
    e.exit(2, "cpu.eip")
    e.ended = True


def _load_pointer(e: Emitter) -> None:
    """LDS/LES/LFS/LGS/LSS r, m16:16/32: offset and selector loaded, then the segment (checked), then r."""
    ops = e.insn.ops
    # The register form (mod=11) is #UD; so is any operand shape other than r, m (in 32-bit code
    # C4/C5 with mod=11 are VEX prefixes, which capstone decodes as other instructions).
    if len(ops) != 2 or ops[1].kind != MEM or ops[0].kind != REG:
        e.fault(UD)
        e.ended = True
        return
    dst, src = ops
    size = dst.size
    a = e.ea(src)
    off = e.load_mem(a, size)
    a2 = e.tmp("a")
    e.emit(f"{a2} = {a} + {size} & {_amask(e):#x}")
    sel = e.load_mem(a2, 2)
    seg = _SEGS[e.insn.name]
    e.sync_call("load_seg", str(seg), sel)
    e.write_reg(dst.reg, size, off)


@op("lds", "les", "lss", flags="", end=True)
def lds(e: Emitter) -> None:
    # DS/ES/SS feed hflags (ADDSEG, the stack size, CPL): the TB ends.
    _load_pointer(e)
    if not e.ended:
        e.end()


@op("lfs", "lgs", flags="")
def lfs(e: Emitter) -> None:
    # FS/GS bases are always read at run time (SB[4], SB[5]): no TB end needed.
    _load_pointer(e)


# ---- helpers: common pieces ----------------------------------------------------------------
def _real_mode(cpu: CPU) -> bool:
    return not cpu.cr[0] & CR0_PE or bool(cpu.eflags & F.VM)


def _load_real_cs(cpu: CPU, selector: int) -> None:
    """Real and virtual-8086 mode: selector and base change, limit and attributes stay."""
    cs = cpu.segs[CS]
    cpu.segs[CS] = SegmentCache(selector, selector << 4, cs.limit, cs.flags)


class _Stack:
    """Pushes/pops on a stack segment, written to memory now, committed to ESP later."""

    def __init__(self, cpu: CPU, cache: SegmentCache, sp: int, cpl: int, wide: bool = False) -> None:
        """``wide``: a 64-bit stack (64-bit code, or the inner stack of a 64-bit call gate)."""
        self.cpu = cpu
        self.base = 0 if wide else cache.base
        self.mask = MASK64 if wide else 0xFFFFFFFF if cache.flags & DESC_B else 0xFFFF
        self.sp = sp & self.mask
        self.cpl = cpl

    def push(self, value: int, size: int) -> None:
        self.sp = (self.sp - size) & self.mask
        stack_write(self.cpu, self.base + self.sp, size, value & MASK[size], self.cpl)

    def read(self, offset: int, size: int) -> int:
        return stack_read(self.cpu, self.base + ((self.sp + offset) & self.mask), size, self.cpl)

    def pop(self, size: int) -> int:
        v = self.read(0, size)
        self.sp = (self.sp + size) & self.mask
        return v

    def commit(self, old_esp: int) -> None:
        self.cpu.regs[ESP] = (old_esp & ~self.mask) | self.sp


def _check_code_target(cpu: CPU, selector: int, hi: int, cpl: int) -> None:
    """JMP/CALL straight to a code segment (SDM vol. 3, 5.8.1): the CPL does not change."""
    err = selector & 0xFFFC
    if not is_code(hi):
        raise GuestFault(GP, err)
    if hi & DESC_C:
        if dpl_of(hi) > cpl:
            raise GuestFault(GP, err)
    elif (selector & 3) > cpl or dpl_of(hi) != cpl:
        raise GuestFault(GP, err)
    if not hi & DESC_P:
        raise GuestFault(NP, err)


def _gate_target(cpu: CPU, selector: int, lo: int, hi: int, cpl: int) -> tuple[int, int, int, int, int]:
    """Check a call gate and its target code segment: (target selector, offset, lo, hi, target DPL).

    In IA-32e mode the gate is 16 bytes (offset bits 63:32 in its third
    dword, the fourth dword's type 0) and the target 64-bit code.
    """
    err = selector & 0xFFFC
    gdpl = dpl_of(hi)
    if gdpl < cpl or gdpl < selector & 3:
        raise GuestFault(GP, err)
    if not hi & DESC_P:
        raise GuestFault(NP, err)
    target = lo >> 16
    offset = lo & 0xFFFF
    if sys_type(hi) == SYS_CALL_GATE32:
        offset |= hi & 0xFFFF0000
    lma = bool(cpu.efer & EFER_LMA)
    if lma:
        offset |= read_system_descriptor(cpu, selector)[2] << 32
    if not target & 0xFFFC:
        raise GuestFault(GP, 0)
    clo, chi = read_descriptor(cpu, target)
    cdpl = dpl_of(chi)
    if not is_code(chi) or cdpl > cpl:
        raise GuestFault(GP, target & 0xFFFC)
    if lma and (not chi & DESC_L or chi & DESC_B):
        raise GuestFault(GP, target & 0xFFFC)
    if not chi & DESC_P:
        raise GuestFault(NP, target & 0xFFFC)
    return target, offset, clo, chi, cdpl


def _gate_types(cpu: CPU) -> tuple[int, ...]:
    """The call gates of the mode: only the 64-bit one (type 12) in IA-32e mode."""
    return (SYS_CALL_GATE32,) if cpu.efer & EFER_LMA else (SYS_CALL_GATE16, SYS_CALL_GATE32)


def _refuse_task(cpu: CPU, selector: int) -> None:
    """No task switches in IA-32e mode (SDM vol. 3, 7.7): a TSS or task gate target is #GP(selector)."""
    if cpu.efer & EFER_LMA:
        raise GuestFault(GP, selector & 0xFFFC)


def _refuse_system(selector: int) -> None:
    """Any system descriptor other than a call gate, a task gate or a TSS: not a transfer target."""
    raise GuestFault(GP, selector & 0xFFFC)


# ---- helpers: the transfers ------------------------------------------------------------------
@helper
def far_jmp(cpu: CPU, selector: int, offset: int, opsize: int, next_eip: int) -> None:
    """JMP ptr16:xx / m16:xx (SDM vol. 2 JMP, far jumps); ``next_eip`` is saved by a task switch."""
    selector &= 0xFFFF
    if _real_mode(cpu):
        _load_real_cs(cpu, selector)
        cpu.eip = offset & MASK[opsize]
        cpu.compute_hflags()
        return
    if not selector & 0xFFFC:
        raise GuestFault(GP, 0)
    lo, hi = read_descriptor(cpu, selector)
    cpl = cpu.cpl
    lma = bool(cpu.efer & EFER_LMA)
    if hi & (1 << 12):
        _check_code_target(cpu, selector, hi, cpl)
        check_eip(offset, lo, hi, lma)
        set_accessed(cpu, selector, hi)
        load_code_cache(cpu, selector, lo, hi, cpl)
        cpu.eip = offset
    elif sys_type(hi) in _gate_types(cpu):
        target, offset, clo, chi, cdpl = _gate_target(cpu, selector, lo, hi, cpl)
        # A jump never changes privilege: non-conforming targets must be at CPL.
        if not chi & DESC_C and cdpl != cpl:
            raise GuestFault(GP, target & 0xFFFC)
        check_eip(offset, clo, chi, lma)
        set_accessed(cpu, target, chi)
        load_code_cache(cpu, target, clo, chi, cpl)
        cpu.eip = offset
    elif sys_type(hi) in _TASK_TYPES:
        _refuse_task(cpu, selector)
        far_task_switch(cpu, selector, lo, hi, False, next_eip)
        return
    else:
        _refuse_system(selector)
    cpu.compute_hflags()


@helper
def far_call(cpu: CPU, selector: int, offset: int, opsize: int, next_eip: int) -> None:
    """CALL ptr16:xx / m16:xx (SDM vol. 2 CALL, far calls; vol. 3, 5.8.5 call gates)."""
    selector &= 0xFFFF
    old_esp = cpu.regs[ESP]
    old_cs = cpu.segs[CS].selector
    if _real_mode(cpu):
        st = _Stack(cpu, cpu.segs[SS], old_esp, cpu.cpl)
        st.push(old_cs, opsize)
        st.push(next_eip, opsize)
        st.commit(old_esp)
        _load_real_cs(cpu, selector)
        cpu.eip = offset & MASK[opsize]
        cpu.compute_hflags()
        return
    if not selector & 0xFFFC:
        raise GuestFault(GP, 0)
    lo, hi = read_descriptor(cpu, selector)
    cpl = cpu.cpl
    lma = bool(cpu.efer & EFER_LMA)
    wide = code64(cpu)
    if hi & (1 << 12):
        _check_code_target(cpu, selector, hi, cpl)
        check_eip(offset, lo, hi, lma)
        set_accessed(cpu, selector, hi)
        st = _Stack(cpu, cpu.segs[SS], old_esp, cpl, wide)
        st.push(old_cs, opsize)
        st.push(next_eip, opsize)
        st.commit(old_esp)
        load_code_cache(cpu, selector, lo, hi, cpl)
        cpu.eip = offset
        cpu.compute_hflags()
        return
    if sys_type(hi) in _TASK_TYPES:
        _refuse_task(cpu, selector)
        far_task_switch(cpu, selector, lo, hi, True, next_eip)
        return
    if sys_type(hi) not in _gate_types(cpu):
        _refuse_system(selector)
    target, offset, clo, chi, cdpl = _gate_target(cpu, selector, lo, hi, cpl)
    set_accessed(cpu, target, chi)
    if lma:
        _call_gate_long(cpu, target, offset, clo, chi, cdpl, next_eip, wide)
        return
    size = 4 if sys_type(hi) == SYS_CALL_GATE32 else 2
    if not chi & DESC_C and cdpl < cpl:
        # More privileged: the stack of level cdpl from the TSS, then the caller's
        # SS:ESP, the parameters, CS:EIP.
        new_ss, new_esp = tss_inner_stack(cpu, cdpl)
        ss_cache = stack_cache(cpu, new_ss, cdpl, TS)
        check_eip(offset, clo, chi)
        caller = _Stack(cpu, cpu.segs[SS], old_esp, cpl)
        count = hi & 0x1F
        params = [caller.read(i * size, size) for i in range(count - 1, -1, -1)]
        st = _Stack(cpu, ss_cache, new_esp, cdpl)
        st.push(cpu.segs[SS].selector, size)
        st.push(old_esp, size)
        for value in params:
            st.push(value, size)
        st.push(old_cs, size)
        st.push(next_eip, size)
        cpu.segs[SS] = ss_cache
        st.commit(old_esp)
        load_code_cache(cpu, target, clo, chi, cdpl)
    else:
        if not chi & DESC_C and cdpl != cpl:
            raise GuestFault(GP, target & 0xFFFC)
        check_eip(offset, clo, chi)
        st = _Stack(cpu, cpu.segs[SS], old_esp, cpl)
        st.push(old_cs, size)
        st.push(next_eip, size)
        st.commit(old_esp)
        load_code_cache(cpu, target, clo, chi, cpl)
    cpu.eip = offset
    cpu.compute_hflags()


def _call_gate_long(
    cpu: CPU, target: int, offset: int, clo: int, chi: int, cdpl: int, next_eip: int, wide: bool
) -> None:
    """CALL through a 64-bit call gate (SDM vol. 3, 5.8.6): 8-byte slots, no parameters copied.

    Inward (non-conforming, DPL < CPL): RSP from the TSS's RSPn, a null SS
    with RPL = the new CPL, and the caller's SS and RSP pushed first.
    """
    cpl = cpu.cpl
    old_esp = cpu.regs[ESP]
    old_cs = cpu.segs[CS].selector
    check_eip(offset, clo, chi, True)
    if not chi & DESC_C and cdpl < cpl:
        rsp = tss_rsp(cpu, cdpl)
        st = _Stack(cpu, cpu.segs[SS], rsp, cdpl, wide=True)
        st.push(cpu.segs[SS].selector, 8)
        st.push(old_esp, 8)
        st.push(old_cs, 8)
        st.push(next_eip, 8)
        cpu.segs[SS] = null_stack(cdpl, cdpl)
        cpu.regs[ESP] = st.sp
        load_code_cache(cpu, target, clo, chi, cdpl)
    else:
        if not chi & DESC_C and cdpl != cpl:
            raise GuestFault(GP, target & 0xFFFC)
        st = _Stack(cpu, cpu.segs[SS], old_esp, cpl, wide)
        st.push(old_cs, 8)
        st.push(next_eip, 8)
        st.commit(old_esp)
        load_code_cache(cpu, target, clo, chi, cpl)
    cpu.eip = offset
    cpu.compute_hflags()


@helper
def far_ret(cpu: CPU, opsize: int, imm: int) -> None:
    """RETF [imm16] (SDM vol. 2 RET: far returns, same and outer privilege level)."""
    old_esp = cpu.regs[ESP]
    cpl = cpu.cpl
    lma = bool(cpu.efer & EFER_LMA)
    st = _Stack(cpu, cpu.segs[SS], old_esp, cpl, code64(cpu))
    new_eip = st.pop(opsize)
    new_cs = st.pop(opsize) & 0xFFFF
    if _real_mode(cpu):
        st.sp = (st.sp + imm) & st.mask
        st.commit(old_esp)
        _load_real_cs(cpu, new_cs)
        cpu.eip = new_eip
        cpu.compute_hflags()
        return
    if not new_cs & 0xFFFC:
        raise GuestFault(GP, 0)
    rpl = new_cs & 3
    if rpl < cpl:
        raise GuestFault(GP, new_cs & 0xFFFC)
    clo, chi = read_descriptor(cpu, new_cs)
    if not is_code(chi):
        raise GuestFault(GP, new_cs & 0xFFFC)
    cdpl = dpl_of(chi)
    if (chi & DESC_C and cdpl > rpl) or (not chi & DESC_C and cdpl != rpl):
        raise GuestFault(GP, new_cs & 0xFFFC)
    if not chi & DESC_P:
        raise GuestFault(NP, new_cs & 0xFFFC)
    st.sp = (st.sp + imm) & st.mask
    set_accessed(cpu, new_cs, chi)
    if rpl == cpl:
        check_eip(new_eip, clo, chi, lma)
        st.commit(old_esp)
        load_code_cache(cpu, new_cs, clo, chi, cpl)
        cpu.eip = new_eip
        cpu.compute_hflags()
        return
    # Outer level: the caller's SS:ESP follow, then imm16 more bytes of its stack are released.
    new_esp = st.pop(opsize)
    new_ss = st.pop(opsize) & 0xFFFF
    if lma and not new_ss & 0xFFFC and rpl != 3:
        ss_cache = null_stack(new_ss, rpl)  # IA-32e mode: a null SS for CPL 0-2 (as QEMU)
    else:
        ss_cache = stack_cache(cpu, new_ss, rpl, GP)
    check_eip(new_eip, clo, chi, lma)
    load_code_cache(cpu, new_cs, clo, chi, rpl)
    cpu.segs[SS] = ss_cache
    outer = _Stack(cpu, ss_cache, new_esp, rpl, lma and bool(chi & DESC_L))
    outer.sp = (outer.sp + imm) & outer.mask
    outer.commit(old_esp)
    cpu.eip = new_eip
    invalidate_outer_segments(cpu, rpl)
    cpu.compute_hflags()


__all__ = ["far_indirect", "is_far_indirect"]
