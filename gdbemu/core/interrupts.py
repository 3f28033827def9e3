"""Exception and interrupt delivery, iret (Intel SDM vol. 3, chapter 6; vol. 2 INT n and IRET).

``raise_exception`` applies the double-fault rules of SDM vol. 3, table 6-5:
while one exception is being delivered another one is raised; if both are
contributory (#DE #TS #NP #SS #GP), or the first is #PF and the second is
#PF or contributory, the processor delivers #DF instead; any other pair is
handled serially (the second exception is delivered, the first is lost,
because the faulting instruction will raise it again when restarted).  A
fault while delivering #DF is a triple fault: the machine stops with
``Stop("triple_fault")`` (a real board would reset).  A fault during the
delivery of a software interrupt (INT n, INT3, INTO) is just a fault of that
instruction: software interrupts are not exceptions in the table.

Delivery in protected mode goes through 32- and 16-bit interrupt and trap
gates, at the same privilege level or inward to ring 0..2 on the stack named
by the TSS (SSn:ESPn), and from virtual-8086 mode to ring 0 (pushing
GS/FS/DS/ES as well).  A task gate switches tasks (core/task.py): the old
state is saved in the current TSS with the return EIP of the event, and the
error code, if any, is pushed on the new task's stack (SDM vol. 3, 6.12.2).
A fault after the switch committed belongs to the new task (``in_new_task``);
it still counts as a fault during delivery for the double-fault rules, as
in QEMU.  Real mode uses the IVT.

IA-32e mode (EFER.LMA; SDM vol. 3, 6.14) has its own path
(``_interrupt_long``): 16-byte interrupt and trap gates only (a task gate
or a 16-bit gate is #GP), a 64-bit target code segment (L=1, D=0), the
frame always SS:RSP, RFLAGS, CS:RIP (+ error code) in 8-byte slots on a
stack aligned down to 16 bytes, the stack from the 64-bit TSS (RSPn when
the privilege changes, ISTn whenever the gate names one) and, on a
privilege change, a null SS whose RPL is the new CPL.  ``iretq`` (and IRET
of any size in IA-32e mode, ``_iret_long``) always pops SS:RSP when it
leaves 64-bit code, and may return to compatibility mode; NT=1 is #GP(0)
(no task switches in IA-32e mode).

The EFLAGS image pushed for a fault-class exception has RF=1 (SDM vol. 3,
17.3.1.1: "for any fault-class exception except a debug exception
generated in response to an instruction breakpoint, the value pushed for
RF is 1"), so that the faulting instruction, restarted by IRET, does not
trigger its own instruction breakpoint again.

Everything that can fault (IDT and descriptor reads, TSS reads, the stack
frame writes) happens before any register changes, so a fault during
delivery leaves the state of the interrupted instruction intact for the
next delivery attempt (the #DF, or the serial exception).
"""

from __future__ import annotations

from collections.abc import Callable

from . import flags as F
from .cpu import (
    CPU,
    CR0_PE,
    CS,
    DESC_A,
    DESC_B,
    DESC_C,
    DESC_CS,
    DESC_L,
    DESC_P,
    DESC_S,
    DESC_W,
    DS,
    EFER_LMA,
    ES,
    ESP,
    FS,
    GS,
    HF_LMA,
    HF_PE,
    HF_VM,
    SS,
    SegmentCache,
)
from .exceptions import AC, BR, DB, DE, DF, GP, MF, NM, NP, PF, TS, UD, VECTORS_WITH_ERROR_CODE, XM, GuestFault
from .exceptions import SS as SS_FAULT
from .seg import (
    SYS_INT_GATE16,
    SYS_INT_GATE32,
    SYS_TASK_GATE,
    SYS_TRAP_GATE16,
    SYS_TRAP_GATE32,
    cache_from,
    canonical,
    check_code_descriptor,
    check_eip,
    desc_limit,
    dpl_of,
    invalidate_outer_segments,
    is_code,
    load_code_cache,
    null_stack,
    peek_desc,
    peek_desc_at,
    peek_frame,
    peek_sys,
    push_frame,
    read_desc_at,
    read_descriptor,
    set_accessed,
    stack_cache,
    stack_read,
    stack_write,
    sys_read,
    sys_type,
    sys_write,
    tss_inner_stack,
    tss_rsp,
)
from .stop import RunStop, StopKind
from .task import (
    DR6_BT,
    SWITCH_CALL,
    SWITCH_INT,
    SWITCH_IRET,
    SWITCH_JMP,
    TSS_AVAILABLE,
    TSS_BUSY,
    check_available_tss,
    in_new_task,
    resolve_task_gate,
    settle_rf,
    switch_task,
)

_CONTRIBUTORY = frozenset({0, TS, NP, SS_FAULT, GP})
_GATES = frozenset({SYS_INT_GATE16, SYS_TRAP_GATE16, SYS_INT_GATE32, SYS_TRAP_GATE32, SYS_TASK_GATE})
# Fault-class exceptions (SDM vol. 3, table 6-1): their pushed EFLAGS image has RF=1.
# #DB is absent: an instruction-breakpoint #DB pushes RF as it is, the others are traps.
_FAULTS = frozenset({DE, BR, UD, NM, TS, NP, SS_FAULT, GP, PF, MF, AC, XM})
_V86_SEG_FLAGS = DESC_P | (1 << 12) | (1 << 9) | (1 << 8) | (3 << 13)  # present, data, writable, accessed, DPL 3


class TripleFault(Exception):  # noqa: N818 - names the architectural event
    """Kept for callers that want to name the event; delivery reports it as a machine stop."""


def _is_double_fault(first: int, second: int) -> bool:
    """SDM vol. 3, table 6-5: which (first, second) pairs become #DF."""
    if first in _CONTRIBUTORY:
        return second in _CONTRIBUTORY
    if first == PF:
        return second == PF or second in _CONTRIBUTORY
    return False


def raise_exception(cpu: CPU, fault: GuestFault) -> None:
    """Deliver ``fault``; escalate to #DF / triple fault when delivery itself faults.

    A trap-like event (``next_eip`` set: INT n, INT3, INTO, INT1) has already
    been counted as retired (the exec loop counts software interrupts, the
    INT1 emitter itself).  If its delivery faults, the instruction faulted
    instead — the new exception reports its EIP — so it did not retire.
    """
    try:
        _deliver(cpu, fault)
        return
    except GuestFault as second:
        if fault.next_eip is not None and not in_new_task(second):
            cpu.icount -= 1  # (a fault in a new task: the task switch, so the instruction, completed)
        if fault.vector == DF and not fault.soft:
            _triple(cpu, f"fault {second} while delivering #DF")
            return
        if fault.soft or not _is_double_fault(fault.vector, second.vector):
            raise_exception(cpu, second)
            return
        if second.vector == PF and second.cr2 is not None:
            cpu.cr[2] = second.cr2  # the page fault that became #DF was detected: CR2 holds its address
    try:
        _deliver(cpu, GuestFault(DF, 0))
    except GuestFault as third:
        _triple(cpu, f"fault {third} while delivering #DF")


def _triple(cpu: CPU, why: str) -> None:
    cpu.events.request_stop(RunStop(StopKind.TRIPLE_FAULT, why))


def _deliver(cpu: CPU, fault: GuestFault) -> None:
    if fault.cr2 is not None:
        cpu.cr[2] = fault.cr2
    # Traps and software interrupts return to the next instruction; faults to the faulting one.
    next_eip = fault.next_eip if fault.next_eip is not None else cpu.eip
    error_code = None
    if fault.vector in VECTORS_WITH_ERROR_CODE and not fault.soft:
        error_code = fault.error_code if fault.error_code is not None else 0
    push_rf = fault.vector in _FAULTS and not fault.soft and fault.next_eip is None
    do_interrupt(cpu, fault.vector, fault.soft, error_code, next_eip, push_rf)


def do_interrupt(
    cpu: CPU, vector: int, soft: bool, error_code: int | None, next_eip: int, push_rf: bool = False
) -> None:
    """Deliver one event (exception, software or hardware interrupt) through the IDT/IVT.

    ``soft`` is INT n / INT3 / INTO: the gate DPL is checked against CPL and
    error codes carry EXT = 0.  ``next_eip`` is the EIP saved in the frame.
    ``push_rf``: a fault-class exception, whose saved EFLAGS has RF=1.
    """
    trace = cpu.trace.interrupt  # -d int; None unless logging
    if trace is not None:
        trace(cpu, vector, soft, error_code, next_eip)
    if cpu.efer & EFER_LMA:
        _interrupt_long(cpu, vector, soft, error_code, next_eip, push_rf)
    elif cpu.cr[0] & CR0_PE:
        _interrupt_protected(cpu, vector, soft, error_code, next_eip, push_rf)
    else:
        _interrupt_real(cpu, vector, next_eip)
    cpu.halted = False


def _interrupt_real(cpu: CPU, vector: int, next_eip: int) -> None:
    """Real mode: FLAGS, CS, IP on the stack; CS:IP from the IVT (SDM vol. 3, 20.1.4)."""
    if vector * 4 + 3 > cpu.idtr_limit:
        raise GuestFault(GP, vector * 8 + 2)
    entry = sys_read(cpu, cpu.idtr_base + vector * 4, 4)
    ss = cpu.segs[SS]
    sp_mask = 0xFFFFFFFF if ss.big else 0xFFFF
    sp = cpu.regs[ESP]
    for value in (cpu.get_eflags() & 0xFFFF, cpu.segs[CS].selector, next_eip & 0xFFFF):
        sp = (sp - 2) & sp_mask
        sys_write(cpu, ss.base + sp, 2, value)
    cpu.regs[ESP] = (cpu.regs[ESP] & ~sp_mask) | sp
    sel = entry >> 16
    cs = cpu.segs[CS]
    cpu.segs[CS] = SegmentCache(sel, sel << 4, cs.limit, cs.flags)
    cpu.eip = entry & 0xFFFF
    cpu.eflags &= ~(F.IF | F.TF | F.AC | F.RF)
    cpu.compute_hflags()


# Checks that passed, as pure functions of what they read (the descriptor words are read from
# memory every time; a key holds every input of its check):
# _GATE_OK: (IDT gate << 64 | code descriptor) << 3 | CPL << 1 | soft ->
#   (code selector, offset, new CPL, inward, trap, operand size, CS base, CS limit, CS flags)
_GATE_OK: dict[int, tuple[int, int, int, bool, bool, int, int, int, int]] = {}
# _STACK_OK: (descriptor << 16 | selector) << 2 | privilege level -> (SS base, limit, flags)
_STACK_OK: dict[int, tuple[int, int, int]] = {}
# _RET_CS_OK: (descriptor << 16 | selector) << 2 | CPL -> (CS base, limit, flags)
_RET_CS_OK: dict[int, tuple[int, int, int]] = {}


def _check_gate(
    gate: int, code: int, cpl: int, soft: bool
) -> tuple[int, int, int, bool, bool, int, int, int, int] | None:
    """The checks of ``_interrupt_protected`` on an IDT gate and its code descriptor (outside
    VM86): the outcome when they all pass and the code descriptor's accessed bit is set
    (nothing to write), else None (the general path raises what it raises)."""
    lo, hi = gate & 0xFFFFFFFF, gate >> 32
    gtype = (hi >> 8) & 0xF
    if hi & (1 << 12) or gtype not in (SYS_INT_GATE16, SYS_TRAP_GATE16, SYS_INT_GATE32, SYS_TRAP_GATE32):
        return None
    if soft and dpl_of(hi) < cpl or not hi & DESC_P:
        return None
    selector = lo >> 16
    if not selector & 0xFFFC:
        return None
    is32 = bool(gtype & 8)
    offset = (lo & 0xFFFF) | (hi & 0xFFFF0000) if is32 else lo & 0xFFFF
    clo, chi = code & 0xFFFFFFFF, code >> 32
    cdpl = dpl_of(chi)
    if not is_code(chi) or cdpl > cpl or not chi & DESC_P or not chi & DESC_A:
        return None
    if offset > desc_limit(clo, chi):
        return None
    inward = not chi & DESC_C and cdpl < cpl
    cache = cache_from(selector, clo, chi)
    new_cpl = cdpl if inward else cpl
    return (selector, offset, new_cpl, inward, bool(gtype & 1), 4 if is32 else 2, cache.base, cache.limit, cache.flags)


def _check_stack(raw: int, selector: int, cpl: int) -> tuple[int, int, int] | None:
    """``stack_cache``'s checks (the accessed bit set: nothing to write): the cache, or None."""
    hi = raw >> 32
    if not selector & 0xFFFC or (selector & 3) != cpl or dpl_of(hi) != cpl:
        return None
    if not hi & DESC_S or hi & DESC_CS or not hi & DESC_W or not hi & DESC_P or not hi & DESC_A:
        return None
    cache = cache_from(selector, raw & 0xFFFFFFFF, hi)
    return cache.base, cache.limit, cache.flags


def _interrupt_fast(cpu: CPU, vector: int, soft: bool, error_code: int | None, next_eip: int, push_rf: bool) -> bool:
    """Protected-mode delivery through a 16/32-bit interrupt or trap gate, outside VM86, when
    every descriptor involved reads without a side effect and passed the same checks before.

    The IDT gate, the code descriptor and (inward) the TSS's SSn:ESPn and the stack
    descriptor are read now (``seg.peek_desc``/``peek_sys``: no fill, no fault); their
    checks come from ``_GATE_OK``/``_STACK_OK``, whose keys hold every input.  The frame is
    written by ``push_frame`` as in the general path (a fault there is the same fault:
    nothing else can fault before it), then the state is committed as there.  False: the
    general path runs from the start (nothing read here had an effect).
    """
    if vector * 8 + 7 > cpu.idtr_limit or cpu.eflags & F.VM:
        return False
    gate = peek_desc_at(cpu, cpu.idtr_base + vector * 8)
    if gate < 0:
        return False
    selector = (gate >> 16) & 0xFFFF
    if not selector & 0xFFFC:
        return False
    code = peek_desc(cpu, selector)
    if code < 0:
        return False
    cpl = cpu.hflags & 3
    key = (gate << 64 | code) << 3 | cpl << 1 | soft
    ok = _GATE_OK.get(key)
    if ok is None:
        ok = _check_gate(gate, code, cpl, soft)
        if ok is None:
            return False
        if len(_GATE_OK) >= 256:
            _GATE_OK.clear()
        _GATE_OK[key] = ok
    selector, offset, new_cpl, inward, trap, size, cs_base, cs_limit, cs_flags = ok
    eflags = cpu.get_eflags()
    if push_rf:
        eflags |= F.RF
    segs = cpu.segs
    old_esp = cpu.regs[ESP]
    ss_cache = None
    if inward:
        tr = cpu.tr
        if not tr.type & 8:
            return False
        off = 4 + new_cpl * 8
        if off + 7 > tr.limit:
            return False
        new_esp = peek_sys(cpu, tr.base + off, 4)
        new_ss = peek_sys(cpu, tr.base + off + 4, 2)
        if new_esp < 0 or new_ss < 0 or not new_ss & 0xFFFC:
            return False
        raw = peek_desc(cpu, new_ss)
        if raw < 0:
            return False
        skey = (raw << 16 | new_ss) << 2 | new_cpl
        sok = _STACK_OK.get(skey)
        if sok is None:
            sok = _check_stack(raw, new_ss, new_cpl)
            if sok is None:
                return False
            if len(_STACK_OK) >= 256:
                _STACK_OK.clear()
            _STACK_OK[skey] = sok
        ss_cache = SegmentCache(new_ss, sok[0], sok[1], sok[2])
        values = [segs[SS].selector, old_esp, eflags, segs[CS].selector, next_eip]
        sp = new_esp
        stack = ss_cache
    else:
        values = [eflags, segs[CS].selector, next_eip]
        sp = old_esp
        stack = segs[SS]
    if error_code is not None:
        values.append(error_code)
    sp_mask = 0xFFFFFFFF if stack.flags & DESC_B else 0xFFFF
    mask = 0xFFFFFFFF if size == 4 else 0xFFFF
    sp = push_frame(cpu, stack.base, sp, sp_mask, size, [value & mask for value in values], new_cpl)
    if ss_cache is not None:
        segs[SS] = ss_cache
    cpu.regs[ESP] = (old_esp & ~sp_mask) | sp
    segs[CS] = SegmentCache((selector & 0xFFFC) | new_cpl, cs_base, cs_limit, cs_flags)
    cpu.eip = offset
    cpu.eflags &= ~(F.TF | F.NT | F.RF | F.VM) if trap else ~(F.TF | F.NT | F.RF | F.VM | F.IF)
    cpu.compute_hflags()
    return True


def _interrupt_protected(
    cpu: CPU, vector: int, soft: bool, error_code: int | None, next_eip: int, push_rf: bool = False
) -> None:
    """Protected and virtual-8086 mode delivery (SDM vol. 2, INT n: PROTECTED-MODE and after)."""
    if _interrupt_fast(cpu, vector, soft, error_code, next_eip, push_rf):
        return
    ext = 0 if soft else 1
    idt_err = vector * 8 + 2 + ext
    if vector * 8 + 7 > cpu.idtr_limit:
        raise GuestFault(GP, idt_err)
    lo, hi = read_desc_at(cpu, cpu.idtr_base + vector * 8)
    if hi & (1 << 12) or (hi >> 8) & 0xF not in _GATES:
        raise GuestFault(GP, idt_err)  # not an interrupt, trap or task gate
    cpl = cpu.cpl
    if soft and dpl_of(hi) < cpl:
        raise GuestFault(GP, vector * 8 + 2)
    if not hi & DESC_P:
        raise GuestFault(NP, idt_err)
    gtype = (hi >> 8) & 0xF
    if gtype == SYS_TASK_GATE:
        _interrupt_task_gate(cpu, lo, ext, error_code, next_eip)
        return
    is32 = bool(gtype & 8)
    trap = bool(gtype & 1)
    selector = lo >> 16
    offset = (lo & 0xFFFF) | (hi & 0xFFFF0000) if is32 else lo & 0xFFFF
    if not selector & 0xFFFC:
        raise GuestFault(GP, ext)
    clo, chi = read_descriptor(cpu, selector, GP, ext)
    cdpl = dpl_of(chi)
    if not is_code(chi) or cdpl > cpl:
        raise GuestFault(GP, (selector & 0xFFFC) | ext)
    check_code_descriptor(cpu, selector, clo, chi, ext)
    v86 = bool(cpu.eflags & F.VM)
    conforming = bool(chi & DESC_C)
    size = 4 if is32 else 2
    eflags = cpu.get_eflags()
    if push_rf:
        eflags |= F.RF
    old_esp = cpu.regs[ESP]
    if not conforming and cdpl < cpl:
        # Inward: the new stack comes from the TSS.
        if v86 and cdpl != 0:
            raise GuestFault(GP, (selector & 0xFFFC) | ext)
        new_ss, new_esp = tss_inner_stack(cpu, cdpl, ext)
        ss_cache = stack_cache(cpu, new_ss, cdpl, TS, ext)
        check_eip(offset, clo, chi)
        values = []
        if v86:
            values += [cpu.segs[GS].selector, cpu.segs[FS].selector, cpu.segs[DS].selector, cpu.segs[ES].selector]
        values += [cpu.segs[SS].selector, old_esp, eflags, cpu.segs[CS].selector, next_eip]
        sp = new_esp
        new_cpl = cdpl
    elif v86:
        # From virtual-8086 mode only a ring-0, non-conforming handler is allowed.
        raise GuestFault(GP, (selector & 0xFFFC) | ext)
    else:
        check_eip(offset, clo, chi)
        ss_cache = None
        values = [eflags, cpu.segs[CS].selector, next_eip]
        sp = old_esp
        new_cpl = cpl
    if error_code is not None:
        values.append(error_code)
    stack = ss_cache if ss_cache is not None else cpu.segs[SS]
    sp_mask = 0xFFFFFFFF if stack.flags & DESC_B else 0xFFFF
    # Write the frame first (it can fault), then commit the new state.
    mask = (1 << (8 * size)) - 1
    sp = push_frame(cpu, stack.base, sp, sp_mask, size, [value & mask for value in values], new_cpl)
    set_accessed(cpu, selector, chi)
    if ss_cache is not None:
        cpu.segs[SS] = ss_cache
    cpu.regs[ESP] = (old_esp & ~sp_mask) | sp
    load_code_cache(cpu, selector, clo, chi, new_cpl)
    if v86:
        for seg in (ES, DS, FS, GS):
            cpu.segs[seg] = SegmentCache(0, 0, 0, 0)
    cpu.eip = offset
    cpu.eflags &= ~(F.TF | F.NT | F.RF | F.VM)
    if not trap:
        cpu.eflags &= ~F.IF
    cpu.compute_hflags()


MASK64 = 0xFFFFFFFFFFFFFFFF


def _interrupt_long(
    cpu: CPU, vector: int, soft: bool, error_code: int | None, next_eip: int, push_rf: bool = False
) -> None:
    """IA-32e mode delivery (SDM vol. 3, 6.14; vol. 2 INT n: IA-32e-MODE).

    Checked in this order, as QEMU's do_interrupt64: the gate within the
    IDT limit (#GP(vector*8+2+EXT)), its type (64-bit interrupt or trap
    gate), the DPL of a software interrupt, the gate present (#NP), the
    target selector (non-null, a present 64-bit code segment with DPL <=
    CPL), then the stack.  Everything that can fault happens before the
    state changes (the frame is written first).
    """
    ext = 0 if soft else 1
    idt_err = vector * 8 + 2 + ext
    if vector * 16 + 15 > cpu.idtr_limit:
        raise GuestFault(GP, idt_err)
    entry = cpu.idtr_base + vector * 16
    lo = sys_read(cpu, entry, 4)
    hi = sys_read(cpu, entry + 4, 4)
    upper = sys_read(cpu, entry + 8, 4)
    gtype = (hi >> 8) & 0x1F  # S (bit 12) included: it must be 0
    if gtype not in (SYS_INT_GATE32, SYS_TRAP_GATE32):
        raise GuestFault(GP, idt_err)
    cpl = cpu.cpl
    if soft and dpl_of(hi) < cpl:
        raise GuestFault(GP, vector * 8 + 2)
    if not hi & DESC_P:
        raise GuestFault(NP, idt_err)
    selector = lo >> 16
    offset = (upper << 32) | (hi & 0xFFFF0000) | (lo & 0xFFFF)
    ist = hi & 7
    if not selector & 0xFFFC:
        raise GuestFault(GP, ext)
    clo, chi = read_descriptor(cpu, selector, GP, ext)
    err = (selector & 0xFFFC) | ext
    if not is_code(chi) or dpl_of(chi) > cpl:
        raise GuestFault(GP, err)
    if not chi & DESC_P:
        raise GuestFault(NP, err)
    if not chi & DESC_L or chi & DESC_B:
        raise GuestFault(GP, err)
    new_cpl = cpl if chi & DESC_C else dpl_of(chi)
    if not canonical(offset):
        raise GuestFault(GP, ext)
    old_rsp = cpu.regs[ESP]
    if ist:
        rsp = tss_rsp(cpu, ist + 3, ext)
    elif new_cpl < cpl:
        rsp = tss_rsp(cpu, new_cpl, ext)
    else:
        rsp = old_rsp
    rsp &= ~0xF & MASK64
    eflags = cpu.get_eflags()
    if push_rf:
        eflags |= F.RF
    values = [cpu.segs[SS].selector, old_rsp, eflags, cpu.segs[CS].selector, next_eip]
    if error_code is not None:
        values.append(error_code)
    rsp = push_frame(cpu, 0, rsp, MASK64, 8, [value & MASK64 for value in values], new_cpl)
    set_accessed(cpu, selector, chi)
    if new_cpl < cpl:
        # A privilege change loads a null SS whose RPL is the new CPL (6.14.4).  An IST
        # switch at the same level keeps SS (SDM INT n: INTRA-PRIVILEGE-LEVEL-INTERRUPT).
        cpu.segs[SS] = null_stack(new_cpl, new_cpl)
    cpu.regs[ESP] = rsp
    load_code_cache(cpu, selector, clo, chi, new_cpl)
    cpu.eip = offset
    cpu.eflags &= ~(F.TF | F.NT | F.RF | F.VM)
    if not gtype & 1:
        cpu.eflags &= ~F.IF
    cpu.compute_hflags()


def _interrupt_task_gate(cpu: CPU, gate_lo: int, ext: int, error_code: int | None, next_eip: int) -> None:
    """An event through an IDT task gate (SDM vol. 2 INT n: TASK-GATE; vol. 3, 6.12.2).

    The switch nests (NT, back link, the old task stays busy) and saves
    ``next_eip`` in the old TSS.  An error code is pushed on the new task's
    stack, a dword or a word by the new TSS's size (as QEMU); that push, like
    the segment loads, happens in the new task: its faults are tagged
    ``in_new_task``.  The new TSS's T flag traps only once all this is done.
    """
    selector, lo, hi = resolve_task_gate(cpu, gate_lo, ext)
    trap = switch_task(cpu, selector, lo, hi, SWITCH_INT, next_eip, ext)
    if error_code is not None:
        size = 4 if cpu.tr.type & 8 else 2
        ss = cpu.segs[SS]
        sp_mask = 0xFFFFFFFF if ss.big else 0xFFFF
        sp = (cpu.regs[ESP] - size) & sp_mask
        try:
            stack_write(cpu, ss.base + sp, size, error_code & ((1 << (8 * size)) - 1), cpu.cpl)
        except GuestFault as fault:
            fault.in_new_task = True
            raise
        cpu.regs[ESP] = (cpu.regs[ESP] & ~sp_mask) | sp
    if trap:
        debug_trap_after_switch(cpu)


# ---- iret -------------------------------------------------------------------------------
def iret(cpu: CPU, opsize: int, next_eip: int = 0) -> None:
    """IRET/IRETD in real, virtual-8086 and protected mode (SDM vol. 2, IRET).

    Protected mode: same privilege, outward (pops SS:ESP, nulls data segment
    registers the outer level may not use) and, from CPL 0, to
    virtual-8086 mode.  NT=1 (outside virtual-8086 mode) is a return from a
    nested task: a task switch to the TSS named by the back link, saving
    ``next_eip`` (the instruction after the IRET) in the abandoned TSS.
    An RF flag restored for an instruction that has no guest breakpoint is
    dropped at once (``task.settle_rf``).
    """
    _iret(cpu, opsize, next_eip)
    settle_rf(cpu)


def _check_return_cs(raw: int, selector: int, cpl: int) -> tuple[int, int, int] | None:
    """``_iret``'s checks on the code segment it returns to (RPL >= CPL, code, DPL by the
    conforming rule, present) with the accessed bit set: the cache, or None."""
    hi = raw >> 32
    rpl = selector & 3
    if not selector & 0xFFFC or rpl < cpl or not is_code(hi) or not hi & DESC_P or not hi & DESC_A:
        return None
    cdpl = dpl_of(hi)
    if cdpl > rpl if hi & DESC_C else cdpl != rpl:
        return None
    cache = cache_from((selector & 0xFFFC) | rpl, raw & 0xFFFFFFFF, hi)
    return cache.base, cache.limit, cache.flags


def _iret_fast(cpu: CPU, opsize: int) -> bool:
    """IRET in protected mode (not VM86, not IA-32e, NT=0), to the same level or outward, when
    the frame is on one fast-path page and the descriptors read without a side effect and
    passed the same checks before (``_RET_CS_OK``, ``_STACK_OK``: keys hold every input).
    A return to VM86, a frame or descriptor elsewhere, a check not seen yet: False, and the
    general path runs from the start (nothing here had an effect)."""
    eflags = cpu.eflags
    if eflags & F.NT:
        return False
    ss = cpu.segs[SS]
    sp_mask = 0xFFFFFFFF if ss.flags & DESC_B else 0xFFFF
    sp = cpu.regs[ESP]
    top = sp & sp_mask
    if top + 5 * opsize > sp_mask:
        return False
    cpl = cpu.hflags & 3
    frame = peek_frame(cpu, ss.base + top, opsize, 5, cpl)
    if frame is None:
        return False
    new_eip, new_cs, new_flags = frame[0], frame[1] & 0xFFFF, frame[2]
    if opsize == 2:
        new_flags = (cpu.get_eflags() & 0xFFFF0000) | new_flags
        new_eip &= 0xFFFF
    elif new_flags & F.VM and cpl == 0:
        return False
    if not new_cs & 0xFFFC:
        return False
    raw = peek_desc(cpu, new_cs)
    if raw < 0:
        return False
    key = (raw << 16 | new_cs) << 2 | cpl
    ok = _RET_CS_OK.get(key)
    if ok is None:
        ok = _check_return_cs(raw, new_cs, cpl)
        if ok is None:
            return False
        if len(_RET_CS_OK) >= 256:
            _RET_CS_OK.clear()
        _RET_CS_OK[key] = ok
    if new_eip > ok[1]:
        return False  # #GP(0): the general path raises it
    mask = F.ARITH | F.TF | F.DF | F.NT | F.RF | F.AC | F.ID
    if cpl == 0:
        mask |= F.IOPL | F.VIF | F.VIP
    if cpl <= (eflags >> 12) & 3:
        mask |= F.IF
    if opsize == 2:
        mask &= 0xFFFF
    rpl = new_cs & 3
    segs = cpu.segs
    if rpl == cpl:
        cpu.regs[ESP] = (sp & ~sp_mask) | ((top + 3 * opsize) & sp_mask)
        segs[CS] = SegmentCache((new_cs & 0xFFFC) | cpl, ok[0], ok[1], ok[2])
        cpu.eip = new_eip
        cpu.set_eflags(new_flags, mask)
        return True
    new_esp, new_ss = frame[3], frame[4] & 0xFFFF
    if not new_ss & 0xFFFC:
        return False
    sraw = peek_desc(cpu, new_ss)
    if sraw < 0:
        return False
    skey = (sraw << 16 | new_ss) << 2 | rpl
    sok = _STACK_OK.get(skey)
    if sok is None:
        sok = _check_stack(sraw, new_ss, rpl)
        if sok is None:
            return False
        if len(_STACK_OK) >= 256:
            _STACK_OK.clear()
        _STACK_OK[skey] = sok
    segs[CS] = SegmentCache((new_cs & 0xFFFC) | rpl, ok[0], ok[1], ok[2])
    segs[SS] = SegmentCache(new_ss, sok[0], sok[1], sok[2])
    if sok[2] & DESC_B:
        cpu.regs[ESP] = new_esp
    else:
        cpu.regs[ESP] = (cpu.regs[ESP] & 0xFFFF0000) | (new_esp & 0xFFFF)
    cpu.eip = new_eip
    invalidate_outer_segments(cpu, rpl)
    cpu.set_eflags(new_flags, mask)
    return True


def _iret(cpu: CPU, opsize: int, next_eip: int) -> None:
    if cpu.hflags & (HF_PE | HF_VM | HF_LMA) == HF_PE and _iret_fast(cpu, opsize):
        return
    ss = cpu.segs[SS]
    sp_mask = 0xFFFFFFFF if ss.flags & DESC_B else 0xFFFF
    sp = cpu.regs[ESP]
    base = ss.base
    cpl = cpu.hflags & 3
    # The five slots an outward IRET pops, when one fast-path TLB entry holds them (a same-level
    # IRET uses three; reading two more there has no effect); else each pop reads on its own.
    top = sp & sp_mask
    frame = peek_frame(cpu, base + top, opsize, 5, cpl) if top + 5 * opsize <= sp_mask else None
    first = top

    def pop(size: int = opsize) -> int:
        nonlocal sp
        at = sp & sp_mask
        k = (at - first) // opsize
        if frame is not None and size == opsize and 0 <= k < 5 and at == first + k * opsize:
            v = frame[k]
        else:
            v = stack_read(cpu, base + at, size, cpl)
        sp = (sp & ~sp_mask) | ((sp + size) & sp_mask)
        return v

    if not cpu.cr[0] & CR0_PE or cpu.eflags & F.VM:
        _iret_real(cpu, opsize, pop, lambda: sp)
        return
    if cpu.efer & EFER_LMA:
        _iret_long(cpu, opsize)
        return
    if cpu.eflags & F.NT:
        task_return(cpu, next_eip)
        return
    new_eip = pop()
    new_cs = pop() & 0xFFFF
    new_flags = pop()
    if opsize == 2:
        new_flags = (cpu.get_eflags() & 0xFFFF0000) | new_flags
    if opsize == 4 and new_flags & F.VM and cpl == 0:
        _iret_to_v86(cpu, new_eip, new_cs, new_flags, pop)
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
    if chi & DESC_C:
        if cdpl > rpl:
            raise GuestFault(GP, new_cs & 0xFFFC)
    elif cdpl != rpl:
        raise GuestFault(GP, new_cs & 0xFFFC)
    check_code_descriptor(cpu, new_cs, clo, chi)
    # Which EFLAGS bits may change: IOPL (and VIF/VIP) only at CPL 0, IF if CPL <= IOPL.
    mask = F.ARITH | F.TF | F.DF | F.NT | F.RF | F.AC | F.ID
    if cpl == 0:
        mask |= F.IOPL | F.VIF | F.VIP
    if cpl <= (cpu.eflags >> 12) & 3:
        mask |= F.IF
    if opsize == 2:
        mask &= 0xFFFF
        new_eip &= 0xFFFF
    if rpl == cpl:
        check_eip(new_eip, clo, chi)
        set_accessed(cpu, new_cs, chi)
        cpu.regs[ESP] = sp
        load_code_cache(cpu, new_cs, clo, chi, cpl)
        cpu.eip = new_eip
        cpu.set_eflags(new_flags, mask)
        return
    # Outward: pop the outer stack too; check everything before committing.
    new_esp = pop()
    new_ss = pop() & 0xFFFF
    ss_cache = stack_cache(cpu, new_ss, rpl, GP)
    check_eip(new_eip, clo, chi)
    set_accessed(cpu, new_cs, chi)
    load_code_cache(cpu, new_cs, clo, chi, rpl)
    cpu.segs[SS] = ss_cache
    if ss_cache.big:
        cpu.regs[ESP] = new_esp
    else:
        cpu.regs[ESP] = (cpu.regs[ESP] & 0xFFFF0000) | (new_esp & 0xFFFF)
    cpu.eip = new_eip
    invalidate_outer_segments(cpu, rpl)
    cpu.set_eflags(new_flags, mask)  # recomputes hflags with the new CS/SS


def _iret_long(cpu: CPU, opsize: int) -> None:
    """IRET/IRETD/IRETQ in IA-32e mode (SDM vol. 2 IRET: IA-32e-MODE; QEMU's helper_ret_protected).

    Pops RIP, CS, RFLAGS in ``opsize`` slots; from 64-bit code (or to an outer
    level) SS:RSP too.  The new CS may be 64-bit or compatibility code; a
    null SS is accepted when returning to CPL 0-2 in IA-32e mode.  NT=1 is
    #GP(0).  Every check and stack read happens before the state changes.
    """
    if cpu.eflags & F.NT:
        raise GuestFault(GP, 0)
    cpl = cpu.cpl
    in64 = bool(cpu.segs[CS].flags & DESC_L)
    ss = cpu.segs[SS]
    sp_mask = MASK64 if in64 else (0xFFFFFFFF if ss.big else 0xFFFF)
    sp = cpu.regs[ESP] & sp_mask
    base = 0 if in64 else ss.base

    def pop() -> int:
        nonlocal sp
        v = stack_read(cpu, base + sp, opsize, cpl)
        sp = (sp + opsize) & sp_mask
        return v

    new_rip = pop()
    new_cs = pop() & 0xFFFF
    new_flags = pop()
    if opsize == 2:
        new_flags = (cpu.get_eflags() & 0xFFFF0000) | new_flags
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
    if opsize == 2:
        new_rip &= 0xFFFF
    elif opsize == 4:
        new_rip &= 0xFFFFFFFF
    mask = F.ARITH | F.TF | F.DF | F.NT | F.RF | F.AC | F.ID
    if cpl == 0:
        mask |= F.IOPL | F.VIF | F.VIP
    if cpl <= (cpu.eflags >> 12) & 3:
        mask |= F.IF
    if opsize == 2:
        mask &= 0xFFFF
    if rpl == cpl and not in64:
        # Compatibility mode, same level: no stack switch (as the legacy IRET).
        check_eip(new_rip, clo, chi, lma=True)
        set_accessed(cpu, new_cs, chi)
        cpu.regs[ESP] = (cpu.regs[ESP] & ~sp_mask) | sp
        load_code_cache(cpu, new_cs, clo, chi, cpl)
        cpu.eip = new_rip
        cpu.set_eflags(new_flags, mask)
        return
    new_rsp = pop()
    new_ss = pop() & 0xFFFF
    if not new_ss & 0xFFFC:
        if rpl == 3:  # a null SS is only for CPL 0-2 (as QEMU: its RPL is not checked)
            raise GuestFault(GP, 0)
        ss_cache = null_stack(new_ss, rpl)
    else:
        ss_cache = stack_cache(cpu, new_ss, rpl, GP)
    check_eip(new_rip, clo, chi, lma=True)
    set_accessed(cpu, new_cs, chi)
    load_code_cache(cpu, new_cs, clo, chi, rpl)
    cpu.segs[SS] = ss_cache
    if chi & DESC_L:
        cpu.regs[ESP] = new_rsp & MASK64
    elif ss_cache.big:
        cpu.regs[ESP] = new_rsp & 0xFFFFFFFF
    else:
        cpu.regs[ESP] = (cpu.regs[ESP] & 0xFFFF0000) | (new_rsp & 0xFFFF)
    cpu.eip = new_rip
    if rpl > cpl:
        invalidate_outer_segments(cpu, rpl)
    cpu.set_eflags(new_flags, mask)  # recomputes hflags with the new CS/SS


def _iret_real(cpu: CPU, opsize: int, pop: Callable[..., int], current_sp: Callable[[], int]) -> None:
    """Real mode, and virtual-8086 mode with IOPL = 3 (else #GP(0)): no descriptor checks."""
    v86 = bool(cpu.eflags & F.VM)
    if v86 and (cpu.eflags >> 12) & 3 != 3:
        raise GuestFault(GP, 0)
    new_eip = pop()
    new_cs = pop() & 0xFFFF
    new_flags = pop()
    mask = F.ARITH | F.TF | F.DF | F.IF | F.NT | F.RF | F.AC | F.ID
    if not v86:
        mask |= F.IOPL
    if opsize == 2:
        mask &= 0xFFFF
        new_eip &= 0xFFFF
    cpu.regs[ESP] = current_sp()
    cs = cpu.segs[CS]
    if v86:
        cpu.segs[CS] = SegmentCache(new_cs, new_cs << 4, 0xFFFF, _V86_SEG_FLAGS | (1 << 11))
    else:
        cpu.segs[CS] = SegmentCache(new_cs, new_cs << 4, cs.limit, cs.flags)
    cpu.eip = new_eip
    cpu.set_eflags(new_flags, mask)


def _iret_to_v86(cpu: CPU, new_eip: int, new_cs: int, new_flags: int, pop: Callable[..., int]) -> None:
    """IRETD at CPL 0 with VM=1 in the popped EFLAGS: enter virtual-8086 mode (SDM IRET RETURN-TO-V86)."""
    new_esp = pop(4)
    new_ss = pop(4) & 0xFFFF
    new_es = pop(4) & 0xFFFF
    new_ds = pop(4) & 0xFFFF
    new_fs = pop(4) & 0xFFFF
    new_gs = pop(4) & 0xFFFF
    for seg, sel in ((ES, new_es), (DS, new_ds), (FS, new_fs), (GS, new_gs), (SS, new_ss)):
        cpu.segs[seg] = SegmentCache(sel, sel << 4, 0xFFFF, _V86_SEG_FLAGS)
    cpu.segs[CS] = SegmentCache(new_cs, new_cs << 4, 0xFFFF, _V86_SEG_FLAGS | (1 << 11))
    cpu.regs[ESP] = new_esp
    cpu.eip = new_eip & 0xFFFF
    cpu.set_eflags(new_flags, F.ARITH | F.TF | F.DF | F.IF | F.IOPL | F.NT | F.RF | F.AC | F.ID | F.VM | F.VIF | F.VIP)


# ---- task switches started by an instruction or an IRET --------------------------------------
# (here, not in task.py, because faults after the commit point are delivered in the new task)
def _raise_in_new_task(cpu: CPU, fault: GuestFault) -> None:
    """Deliver a fault of the new task (after the commit point of an instruction-initiated switch)."""
    raise_exception(cpu, fault)


def debug_trap_after_switch(cpu: CPU) -> None:
    """The TSS T flag: #DB trap with DR6.BT before the new task's first instruction (SDM 17.3.1.5)."""
    cpu.dr[6] |= DR6_BT
    raise_exception(cpu, GuestFault(DB))


def switch_by_instruction(cpu: CPU, selector: int, lo: int, hi: int, source: str, next_eip: int) -> None:
    """A switch initiated by JMP, CALL or IRET: the instruction completes, then the new task runs.

    Faults before the commit point propagate (the instruction faults in the
    old task); faults after it are delivered here, in the new task, as is
    the T-flag trap: the instruction itself has completed.
    """
    try:
        trap = switch_task(cpu, selector, lo, hi, source, next_eip)
    except GuestFault as fault:
        if not in_new_task(fault):
            raise
        _raise_in_new_task(cpu, fault)
        return
    if trap:
        debug_trap_after_switch(cpu)


def far_task_switch(cpu: CPU, selector: int, lo: int, hi: int, call: bool, next_eip: int) -> None:
    """JMP/CALL far to a TSS descriptor or a task gate (SDM vol. 2 JMP, CALL: TASK-GATE, TASK-STATE-SEGMENT).

    The descriptor's DPL must be >= CPL and >= the selector's RPL (#GP with
    the selector).  A task gate must be present (#NP(gate selector)); the
    TSS it names is checked by ``resolve_task_gate``.  A TSS descriptor is
    checked directly (available, in the GDT, present).
    """
    err = selector & 0xFFFC
    dpl = dpl_of(hi)
    if dpl < cpu.cpl or dpl < selector & 3:
        raise GuestFault(GP, err)
    if sys_type(hi) in TSS_AVAILABLE or sys_type(hi) in TSS_BUSY:
        check_available_tss(selector, hi)
    else:  # a task gate
        if not hi & DESC_P:
            raise GuestFault(NP, err)
        selector, lo, hi = resolve_task_gate(cpu, lo)
    switch_by_instruction(cpu, selector, lo, hi, SWITCH_CALL if call else SWITCH_JMP, next_eip)


def task_return(cpu: CPU, next_eip: int) -> None:
    """IRET with EFLAGS.NT=1: back to the task named by the current TSS's back link (SDM vol. 2 IRET TASK-RETURN).

    The link must be a GDT selector within the limit (#TS(link)), of a busy
    TSS (#TS(link)), present (#NP(link)).  The abandoned task is marked not
    busy, the old EFLAGS image is saved with NT=0.
    """
    link = sys_read(cpu, cpu.tr.base, 2)
    err = link & 0xFFFC
    if link & 4 or not err:
        raise GuestFault(TS, err)
    lo, hi = read_descriptor(cpu, link, TS)
    if hi & DESC_S or sys_type(hi) not in TSS_BUSY:
        raise GuestFault(TS, err)
    if not hi & DESC_P:
        raise GuestFault(NP, err)
    switch_by_instruction(cpu, link, lo, hi, SWITCH_IRET, next_eip)


__all__ = [
    "raise_exception",
    "do_interrupt",
    "iret",
    "TripleFault",
    "deliver_external",
    "far_task_switch",
    "switch_by_instruction",
    "task_return",
    "debug_trap_after_switch",
]


def deliver_external(cpu: CPU, vector: int) -> None:
    """A hardware interrupt (INTR from the PIC or local APIC), taken at an instruction boundary.

    No error code is pushed whatever the vector (SDM vol. 3, 6.13), the saved
    EIP is the next instruction to run, and a fault during delivery is an
    ordinary exception (the interrupt is the benign first event).
    """
    try:
        do_interrupt(cpu, vector, False, None, cpu.eip)
    except GuestFault as fault:
        raise_exception(cpu, fault)
