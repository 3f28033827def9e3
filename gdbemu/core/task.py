"""Task switching: JMP/CALL to a TSS or a task gate, events through IDT task gates, IRET with NT=1.

Intel SDM vol. 3, chapter 7 (7.2 the TSS and its descriptor, 7.3 task
switching, 7.4 task linking) and vol. 2 JMP, CALL, INT n, IRET.

Theory of operation
-------------------
A switch has two halves separated by the *commit point* (SDM vol. 3, 7.3
steps 1-11 and 12-14):

* before it, every check that the SDM reports in the context of the *old*
  task: the TSS selector and descriptor (type, busy bit, present), the new
  TSS limit, reading the whole new TSS, and write access to every byte the
  switch will write (the old TSS state area, the new TSS back link, both
  descriptors' busy bits).  A fault there leaves the machine exactly as it
  was before the initiating instruction or event (precise, as the rest of
  the core), and is reported with the old task's CS:EIP;
* after it, the state is committed (busy bits, the old state saved with
  EIP = the next instruction for JMP/CALL/INT n/IRET and the faulting one
  for an exception, back link and NT for CALL and events, CR0.TS, TR, CR3,
  EFLAGS, GPRs, EIP, the segment selectors) and then the LDT and the
  segment descriptors are loaded and checked.  A fault there is an event in
  the *new* task (step 13): it is raised with ``in_new_task`` set, the new
  task's CS:EIP in the frame ("the first instruction of the new task
  appears not to have been executed", step 14) and the handler found
  through the new TSS's ring-0 stack when needed.

While the segment registers are being loaded after the commit point they
hold the new selectors with unusable caches (base 0, limit 0, not present),
as QEMU leaves them; the stack segment's cache carries the new CPL (the RPL
of the new CS, SDM 7.3: "the new task begins executing at the privilege
level specified in the CPL field of the CS register") so that a fault
raised while loading SS or a data segment is delivered from the new
task's privilege level.

The T flag of the new TSS (offset 0x64 bit 0) raises a #DB trap with
DR6.BT once the switch is complete, before the new task's first instruction
(SDM vol. 3, 17.3.1.5).  Every switch clears the local breakpoint enables
L0-L3 of DR7 (SDM vol. 3, 17.2.4).

16-bit TSSs (types 1 and 3) are supported with the 80286 layout (SDM vol. 3,
7.6): no CR3, FS, GS or T flag; the upper halves of the GPRs are kept.
"""

from __future__ import annotations

from typing import Any

from ..softmmu.tlb import ACCESS_WRITE, MMU_KNOSMAP_IDX, PAGE_MASK
from . import flags as F
from .cpu import (
    CPU,
    CR0_PG,
    CR0_TS,
    CS,
    DESC_A,
    DESC_C,
    DESC_CS,
    DESC_DPL_SHIFT,
    DESC_P,
    DESC_R,
    DESC_S,
    DESC_W,
    DS,
    ES,
    FS,
    GS,
    SS,
    SegmentCache,
)
from .exceptions import GP, NP, TS, GuestFault
from .exceptions import SS as SS_FAULT
from .mmu import switch_address_space
from .seg import (
    SYS_LDT,
    SYS_TSS16_AVAIL,
    SYS_TSS16_BUSY,
    SYS_TSS32_AVAIL,
    SYS_TSS32_BUSY,
    TSS_BUSY_BIT,
    cache_from,
    desc_base,
    desc_limit,
    descriptor_address,
    dpl_of,
    read_descriptor,
    sys_read,
    sys_type,
    sys_write,
)

# What started the switch (SDM vol. 3, table 7-2: busy bits, NT and the back link differ).
SWITCH_JMP = "jmp"
SWITCH_CALL = "call"
SWITCH_IRET = "iret"
SWITCH_INT = "int"  # an exception, an external interrupt or INT n through an IDT task gate

_NESTING = (SWITCH_CALL, SWITCH_INT)  # set NT and the back link; the old task stays busy
TSS_AVAILABLE = (SYS_TSS16_AVAIL, SYS_TSS32_AVAIL)
TSS_BUSY = (SYS_TSS16_BUSY, SYS_TSS32_BUSY)
DR6_BT = 1 << 15
DR7_LOCAL_ENABLES = 0x55  # L0-L3
_V86_FLAGS = DESC_P | DESC_S | DESC_W | DESC_A | (3 << DESC_DPL_SHIFT)

# 32-bit TSS layout (SDM vol. 3, figure 7-2) and 16-bit (figure 7-11): offsets of
# EIP, EFLAGS, the eight GPRs, the segment selectors (ES CS SS DS [FS GS]), the LDT selector.
_TSS32 = {"eip": 0x20, "eflags": 0x24, "regs": 0x28, "segs": 0x48, "ldt": 0x60, "size": 4, "nsegs": 6}
_TSS16 = {"eip": 0x0E, "eflags": 0x10, "regs": 0x12, "segs": 0x22, "ldt": 0x2A, "size": 2, "nsegs": 4}


def _mark_new_task(fault: GuestFault) -> GuestFault:
    """Tag a fault raised after the commit point: it belongs to the new task (SDM 7.3 step 13)."""
    fault.in_new_task = True
    return fault


def in_new_task(fault: GuestFault) -> bool:
    """Was ``fault`` raised after a task switch committed (the initiating event is complete)?"""
    return fault.in_new_task


def check_available_tss(selector: int, hi: int, ext: int = 0) -> None:
    """The target of JMP/CALL/INT must be an available TSS in the GDT, present (SDM vol. 2 JMP, CALL, INT n).

    A TSS selector in the LDT, a descriptor that is not a TSS or a busy TSS
    is #GP(TSS selector); a TSS not present is #NP(TSS selector).
    """
    err = (selector & 0xFFFC) | ext
    if selector & 4 or hi & DESC_S or sys_type(hi) not in TSS_AVAILABLE:
        raise GuestFault(GP, err)
    if not hi & DESC_P:
        raise GuestFault(NP, err)


def resolve_task_gate(cpu: CPU, gate_lo: int, ext: int = 0) -> tuple[int, int, int]:
    """The TSS named by a task gate, checked: (selector, low dword, high dword).

    SDM vol. 2 JMP/CALL/INT n (TASK-GATE): the TSS selector must be global
    and within the GDT limit, the descriptor an available TSS (else
    #GP(TSS selector)), present (else #NP(TSS selector)).  The TSS DPL is
    not checked: the gate's DPL was.
    """
    selector = (gate_lo >> 16) & 0xFFFF
    err = (selector & 0xFFFC) | ext
    if selector & 4 or not selector & 0xFFFC:
        raise GuestFault(GP, err)
    lo, hi = read_descriptor(cpu, selector, GP, ext)
    check_available_tss(selector, hi, ext)
    return selector, lo, hi


def _probe_write(cpu: CPU, addr: int, length: int) -> None:
    """Fault now (#PF) if any byte of [addr, addr+length) is not writable by the supervisor."""
    mmu = cpu.softmmu
    first = addr & 0xFFFFFFFF
    last = (addr + length - 1) & 0xFFFFFFFF
    mmu.lookup(MMU_KNOSMAP_IDX, first, ACCESS_WRITE)
    if last & PAGE_MASK != first & PAGE_MASK:
        mmu.lookup(MMU_KNOSMAP_IDX, last, ACCESS_WRITE)


def _tss_layout(tss_type: int) -> dict[str, int]:
    return _TSS32 if tss_type & 8 else _TSS16


def _read_tss(cpu: CPU, base: int, tss_type: int) -> dict[str, Any]:
    """Every field the switch loads from the new TSS (reads may #PF: before the commit point).

    In QEMU's order (CR3 first), so that a TSS on a page that is not present
    reports the same CR2.
    """
    lay = _tss_layout(tss_type)
    size = lay["size"]
    cr3 = sys_read(cpu, base + 0x1C, 4) if tss_type & 8 else None
    state: dict[str, Any] = {
        "eip": sys_read(cpu, base + lay["eip"], size),
        "eflags": sys_read(cpu, base + lay["eflags"], size),
        "regs": [sys_read(cpu, base + lay["regs"] + i * size, size) for i in range(8)],
        "segs": [sys_read(cpu, base + lay["segs"] + i * size, 2) for i in range(lay["nsegs"])],
        "ldt": sys_read(cpu, base + lay["ldt"], 2),
        "cr3": cr3,
        "trap": sys_read(cpu, base + 0x64, 2) & 1 if tss_type & 8 else 0,
    }
    if size == 2:
        state["segs"] += [0, 0]  # FS and GS: a 16-bit TSS has none, they become null
    return state


def switch_task(cpu: CPU, selector: int, lo: int, hi: int, source: str, next_eip: int, ext: int = 0) -> bool:
    """Switch to the task whose (checked, available or, for IRET, busy) TSS descriptor is ``lo``/``hi``.

    ``next_eip`` is the EIP saved in the old TSS.  Returns True when the new
    TSS has its debug trap (T) flag set: the caller raises the #DB trap once
    everything it still has to do (an error code push) is done.  Faults
    before the commit point are ordinary faults of the old task; those after
    it are raised with ``in_new_task`` set (see the module docstring).
    The EFLAGS image saved for a fault is the current EFLAGS: RF=1 is what
    the processor *pushes* for faults (SDM vol. 3, 17.3.1.1), and a task
    gate pushes no EFLAGS.
    """
    tss_type = sys_type(hi)
    err = (selector & 0xFFFC) | ext
    limit = desc_limit(lo, hi)
    base = desc_base(lo, hi)
    # Step 4 (SDM 7.3; table 7-1): the new TSS must hold a whole TSS of its size.
    if limit < (0x67 if tss_type & 8 else 0x2B):
        raise GuestFault(TS, err)
    new = _read_tss(cpu, base, tss_type)

    old_tr = cpu.tr
    old_lay = _tss_layout(old_tr.type)
    old_size = old_lay["size"]
    gdt = cpu.gdtr_base
    # Everything written below must be writable now, so that a #PF leaves nothing half done.
    save_start = old_lay["eip"]
    save_end = old_lay["segs"] + (old_lay["nsegs"] - 1) * old_size + 2
    _probe_write(cpu, old_tr.base + save_start, save_end - save_start)
    if source in (SWITCH_JMP, SWITCH_IRET) and old_tr.selector & 0xFFFC:
        _probe_write(cpu, gdt + (old_tr.selector & ~7) + 4, 4)
    if source in _NESTING:
        _probe_write(cpu, base, 2)
    if source != SWITCH_IRET:
        _probe_write(cpu, gdt + (selector & ~7) + 4, 4)

    # ---- the commit point: from here the switch completes ------------------------------
    # Watchpoints on the memory written from here on are recorded, not restarted: a
    # restart would replay a half-done switch.  A hit is reported once the switch is
    # complete (unless an instruction replay is recording hits already).
    replaying = cpu.watch_replay
    cpu.watch_replay = True
    try:
        trap = _commit(cpu, selector, lo, hi, tss_type, base, new, source, next_eip, ext)
    finally:
        cpu.watch_replay = replaying
        hit = None
        if not replaying:
            hit, cpu.watch_hit = cpu.watch_hit, None
    if hit is not None:
        cpu.events.watch_stop(cpu, hit)
    return trap


def _commit(
    cpu: CPU,
    selector: int,
    lo: int,
    hi: int,
    tss_type: int,
    base: int,
    new: dict[str, Any],
    source: str,
    next_eip: int,
    ext: int,
) -> bool:
    """Steps 5-13 of SDM vol. 3, 7.3: write the old task's state, load the new one, check its segments."""
    old_tr = cpu.tr
    old_lay = _tss_layout(old_tr.type)
    old_size = old_lay["size"]
    gdt = cpu.gdtr_base
    if source in (SWITCH_JMP, SWITCH_IRET) and old_tr.selector & 0xFFFC:
        addr = gdt + (old_tr.selector & ~7) + 4
        sys_write(cpu, addr, 4, sys_read(cpu, addr, 4) & ~TSS_BUSY_BIT)
    old_eflags = cpu.get_eflags()
    if source == SWITCH_IRET:
        old_eflags &= ~F.NT
    mask = (1 << (8 * old_size)) - 1
    sys_write(cpu, old_tr.base + old_lay["eip"], old_size, next_eip & mask)
    sys_write(cpu, old_tr.base + old_lay["eflags"], old_size, old_eflags & mask)
    for i, value in enumerate(cpu.regs):
        sys_write(cpu, old_tr.base + old_lay["regs"] + i * old_size, old_size, value & mask)
    for i in range(old_lay["nsegs"]):
        sys_write(cpu, old_tr.base + old_lay["segs"] + i * old_size, 2, cpu.segs[i].selector)
    new_eflags = new["eflags"]
    if source in _NESTING:
        sys_write(cpu, base, 2, old_tr.selector)
        new_eflags |= F.NT
    if source != SWITCH_IRET:
        addr = gdt + (selector & ~7) + 4
        hi = sys_read(cpu, addr, 4) | TSS_BUSY_BIT
        sys_write(cpu, addr, 4, hi)
    hi |= TSS_BUSY_BIT
    cpu.cr[0] |= CR0_TS
    cpu.tr = cache_from(selector, lo, hi)
    if tss_type & 8 and cpu.cr[0] & CR0_PG:
        old_cr3 = cpu.cr[3]
        cpu.cr[3] = new["cr3"]
        switch_address_space(cpu, old_cr3, cpu.cr[3])
    cpu.eip = new["eip"]
    eflags_mask = F.ARITH | F.TF | F.IF | F.DF | F.IOPL | F.NT | F.RF | F.AC | F.ID | F.VM
    if tss_type & 8:
        cpu.set_eflags(new_eflags, eflags_mask)
        cpu.regs[:] = new["regs"]
    else:
        cpu.set_eflags(new_eflags, eflags_mask & 0xFFFF)
        cpu.regs[:] = [(old & 0xFFFF0000) | v for old, v in zip(cpu.regs, new["regs"], strict=True)]
    segs = new["segs"]
    v86 = bool(cpu.eflags & F.VM)
    cpl = 3 if v86 else segs[CS] & 3
    for seg in range(6):
        if v86:
            flags = _V86_FLAGS | (DESC_CS if seg == CS else 0)
            cpu.segs[seg] = SegmentCache(segs[seg], segs[seg] << 4, 0xFFFF, flags)
        else:
            # The selector alone until its descriptor is checked; SS carries the new CPL.
            cpu.segs[seg] = SegmentCache(segs[seg], 0, 0, (cpl << DESC_DPL_SHIFT) if seg == SS else 0)
    cpu.ldtr = SegmentCache(new["ldt"] & ~4, 0, 0, 0)
    if cpu.dr[7] & DR7_LOCAL_ENABLES:
        cpu.dr[7] &= ~DR7_LOCAL_ENABLES
        cpu.events.update_guest_debug(cpu)
    cpu.compute_hflags()

    # ---- step 13: the LDT and the segment descriptors, in the new task's context --------
    try:
        _load_ldt(cpu, new["ldt"], ext)
        if not v86:
            for seg in (CS, SS, ES, DS, FS, GS):
                _load_task_segment(cpu, seg, segs[seg], cpl, ext)
        cpu.compute_hflags()
        if cpu.eip > cpu.segs[CS].limit:
            raise GuestFault(GP, ext)
    except GuestFault as fault:
        cpu.compute_hflags()
        raise _mark_new_task(fault) from None
    settle_rf(cpu)
    return bool(new["trap"]) and bool(tss_type & 8)


def _load_ldt(cpu: CPU, selector: int, ext: int) -> None:
    """The new task's LDTR (SDM 7.3, table 7-1): a present LDT descriptor in the GDT, or null; else #TS."""
    err = (selector & 0xFFFC) | ext
    if selector & 4:
        raise GuestFault(TS, err)
    if not selector & 0xFFFC:
        return
    lo, hi = read_descriptor(cpu, selector, TS, ext)
    if hi & DESC_S or sys_type(hi) != SYS_LDT or not hi & DESC_P:
        raise GuestFault(TS, err)
    cpu.ldtr = cache_from(selector, lo, hi)


def _load_task_segment(cpu: CPU, seg: int, selector: int, cpl: int, ext: int) -> None:
    """Check and load one segment register of the new task (SDM vol. 3, table 7-1; QEMU's tss_load_seg).

    CS: a code segment with DPL = RPL (the new CPL), or DPL <= RPL if conforming; SS: a writable data
    segment with DPL = RPL = CPL; ES/DS/FS/GS: data or readable code, with
    DPL >= max(CPL, RPL) unless conforming; a null selector is allowed for
    those.  Type and privilege errors are #TS(selector), a segment not
    present #NP(selector), or #SS(selector) for SS.
    """
    err = (selector & 0xFFFC) | ext
    if not selector & 0xFFFC:
        if seg in (CS, SS):
            raise GuestFault(TS, err)
        return
    lo, hi = read_descriptor(cpu, selector, TS, ext)
    if not hi & DESC_S:
        raise GuestFault(TS, err)
    rpl = selector & 3
    dpl = dpl_of(hi)
    if seg == CS:
        # Conforming: DPL <= RPL suffices (QEMU's tss_load_seg); non-conforming: DPL = RPL.
        if not hi & DESC_CS or (dpl > rpl if hi & DESC_C else dpl != rpl):
            raise GuestFault(TS, err)
        absent = NP
    elif seg == SS:
        if hi & DESC_CS or not hi & DESC_W or dpl != cpl or rpl != cpl:
            raise GuestFault(TS, err)
        absent = SS_FAULT
    else:
        if hi & DESC_CS and not hi & DESC_R:
            raise GuestFault(TS, err)
        conforming = hi & DESC_CS and hi & DESC_C
        if not conforming and (dpl < cpl or dpl < rpl):
            raise GuestFault(TS, err)
        absent = NP
    if not hi & DESC_P:
        raise GuestFault(absent, err)
    if not hi & DESC_A:
        sys_write(cpu, descriptor_address(cpu, selector) + 4, 4, hi | DESC_A)
    cpu.segs[seg] = cache_from(selector, lo, hi | DESC_A)


def settle_rf(cpu: CPU) -> None:
    """Drop EFLAGS.RF at once when the next instruction carries no guest instruction breakpoint.

    RF only suppresses an instruction breakpoint on the first instruction
    after IRET or a task switch and is cleared as that instruction starts
    (SDM vol. 3, 17.3.1.1).  The core consumes RF where the breakpoint is
    checked (core/breakpoint.py, which clears it); when there is no guest
    breakpoint at the new CS:EIP, clearing it now is the same thing seen
    from the guest, and it cannot linger to swallow a later breakpoint.
    """
    if cpu.eflags & F.RF:
        linear = (cpu.segs[CS].base + cpu.eip) & 0xFFFFFFFF
        if linear not in cpu.breakpoints.guest:
            cpu.eflags &= ~F.RF


__all__ = [
    "DR6_BT",
    "TSS_AVAILABLE",
    "TSS_BUSY",
    "SWITCH_JMP",
    "SWITCH_CALL",
    "SWITCH_IRET",
    "SWITCH_INT",
    "switch_task",
    "resolve_task_gate",
    "check_available_tss",
    "in_new_task",
    "settle_rf",
]
