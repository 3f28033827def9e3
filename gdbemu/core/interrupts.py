"""Exception and interrupt delivery, iret (Intel SDM vol. 3, chapter 6; vol. 2 IRET).

``raise_exception`` applies the double-fault rules (SDM table 6-5): a
contributory exception (#DE #TS #NP #SS #GP) or #PF raised while delivering
one of the same class becomes #DF; a fault while delivering #DF is a triple
fault, which stops (or resets) the machine.

Protected mode: 32- and 16-bit interrupt and trap gates, same privilege and
inward to ring 0..2 through the TSS stack (SS0:ESP0 ...); task gates are
reported as #GP here until task switching exists.  Real mode: the IVT.
"""

from __future__ import annotations

from . import flags as F
from .cpu import CR0_PE, CS, ESP, SS, SegmentCache
from .exceptions import DF, GP, NP, PF, SS as SS_FAULT, TS, VECTORS_WITH_ERROR_CODE, GuestFault
from .seg import check_code_descriptor, load_code_cache, read_descriptor, sys_read, sys_write, cache_from

_CONTRIBUTORY = frozenset({0, TS, NP, SS_FAULT, GP})


class TripleFault(Exception):
    pass


def raise_exception(cpu, fault: GuestFault) -> None:
    """Deliver ``fault``; escalate to #DF / triple fault when delivery itself faults."""
    first = fault
    try:
        _deliver(cpu, first)
        return
    except GuestFault as second:
        if first.vector == DF:
            return _triple(cpu, f"fault {second} while delivering #DF")
        benign = not (
            (first.vector in _CONTRIBUTORY and second.vector in _CONTRIBUTORY)
            or (first.vector == PF and (second.vector in _CONTRIBUTORY or second.vector == PF))
        )
        if benign:
            return raise_exception(cpu, second)
    try:
        _deliver(cpu, GuestFault(DF, 0))
    except GuestFault as third:
        _triple(cpu, f"fault {third} while delivering #DF")


def _triple(cpu, why: str) -> None:
    from ..machine import Stop

    cpu.machine.request_stop(Stop("triple_fault", why))


def _deliver(cpu, fault: GuestFault) -> None:
    if fault.cr2 is not None:
        cpu.cr[2] = fault.cr2
    next_eip = fault.next_eip if fault.soft else cpu.eip
    error_code = fault.error_code if (fault.vector in VECTORS_WITH_ERROR_CODE and not fault.soft) else None
    if fault.vector in VECTORS_WITH_ERROR_CODE and error_code is None and not fault.soft:
        error_code = 0
    do_interrupt(cpu, fault.vector, fault.soft, error_code, next_eip)


def do_interrupt(cpu, vector: int, soft: bool, error_code: int | None, next_eip: int) -> None:
    cpu.halted = False
    if cpu.cr[0] & CR0_PE:
        _interrupt_protected(cpu, vector, soft, error_code, next_eip)
    else:
        _interrupt_real(cpu, vector, next_eip)


def _interrupt_real(cpu, vector: int, next_eip: int) -> None:
    if vector * 4 + 3 > cpu.idtr_limit:
        raise GuestFault(GP, vector * 8 + 2)
    entry = sys_read(cpu, cpu.idtr_base + vector * 4, 4)
    sp = cpu.regs[ESP] & 0xFFFF
    ss_base = cpu.segs[SS].base
    for value in (cpu.get_eflags() & 0xFFFF, cpu.segs[CS].selector, next_eip & 0xFFFF):
        sp = (sp - 2) & 0xFFFF
        sys_write(cpu, ss_base + sp, 2, value)
    cpu.regs[ESP] = (cpu.regs[ESP] & 0xFFFF0000) | sp
    sel = entry >> 16
    cs = cpu.segs[CS]
    cpu.segs[CS] = SegmentCache(sel, sel << 4, cs.limit, cs.flags)
    cpu.eip = entry & 0xFFFF
    cpu.eflags &= ~(F.IF | F.TF | F.AC | F.RF)
    cpu.compute_hflags()


def _interrupt_protected(cpu, vector: int, soft: bool, error_code: int | None, next_eip: int) -> None:
    ext = 0 if soft else 1
    if vector * 8 + 7 > cpu.idtr_limit:
        raise GuestFault(GP, vector * 8 + 2 + ext)
    lo = sys_read(cpu, cpu.idtr_base + vector * 8, 4)
    hi = sys_read(cpu, cpu.idtr_base + vector * 8 + 4, 4)
    gtype = (hi >> 8) & 0x1F
    dpl = (hi >> 13) & 3
    if gtype not in (0x06, 0x07, 0x0E, 0x0F):
        # 0x05 (task gate) needs task switching; anything else is not a gate.
        raise GuestFault(GP, vector * 8 + 2 + ext)
    cpl = cpu.cpl
    if soft and dpl < cpl:
        raise GuestFault(GP, vector * 8 + 2)
    if not hi & (1 << 15):
        raise GuestFault(NP, vector * 8 + 2 + ext)
    is32 = bool(gtype & 8)
    trap = bool(gtype & 1)
    selector = lo >> 16
    offset = (lo & 0xFFFF) | (hi & 0xFFFF0000) if is32 else lo & 0xFFFF
    if selector & 0xFFFC == 0:
        raise GuestFault(GP, ext)
    clo, chi = read_descriptor(cpu, selector)
    check_code_descriptor(cpu, selector, clo, chi)
    cdpl = (chi >> 13) & 3
    if cdpl > cpl:
        raise GuestFault(GP, (selector & 0xFFFC) + ext)
    conforming = bool(chi & (1 << 10))
    eflags = cpu.get_eflags()
    old_cs = cpu.segs[CS].selector
    old_ss = cpu.segs[SS].selector
    old_esp = cpu.regs[ESP]
    size = 4 if is32 else 2
    if not conforming and cdpl < cpl:
        # Inward: the new stack comes from the TSS.
        new_ss, new_esp = _tss_stack(cpu, cdpl)
        if new_ss & 0xFFFC == 0:
            raise GuestFault(TS, ext)
        slo, shi = read_descriptor(cpu, new_ss, TS)
        if (new_ss & 3) != cdpl or ((shi >> 13) & 3) != cdpl or shi & (1 << 11) or not shi & (1 << 9):
            raise GuestFault(TS, (new_ss & 0xFFFC) + ext)
        if not shi & (1 << 15):
            raise GuestFault(SS_FAULT, (new_ss & 0xFFFC) + ext)
        ss_cache = cache_from(new_ss, slo, shi)
        values = [old_ss, old_esp, eflags, old_cs, next_eip]
        sp = new_esp
        sp_mask = 0xFFFFFFFF if ss_cache.big else 0xFFFF
        base = ss_cache.base
        new_cpl = cdpl
    else:
        ss_cache = None
        values = [eflags, old_cs, next_eip]
        sp = old_esp
        sp_mask = 0xFFFFFFFF if cpu.segs[SS].big else 0xFFFF
        base = cpu.segs[SS].base
        new_cpl = cpl
    if error_code is not None:
        values.append(error_code)
    # Write the frame first (it can fault), then commit the new state.
    for value in values:
        sp = (sp - size) & sp_mask
        sys_write(cpu, base + sp, size, value & ((1 << (8 * size)) - 1))
    if ss_cache is not None:
        cpu.segs[SS] = ss_cache
        cpu.regs[ESP] = sp if sp_mask == 0xFFFFFFFF else (cpu.regs[ESP] & 0xFFFF0000) | sp
    else:
        cpu.regs[ESP] = (old_esp & ~sp_mask) | sp
    load_code_cache(cpu, selector, clo, chi, new_cpl)
    cpu.eip = offset
    cpu.eflags &= ~(F.TF | F.NT | F.RF | F.VM)
    if not trap:
        cpu.eflags &= ~F.IF
    cpu.compute_hflags()


def _tss_stack(cpu, dpl: int) -> tuple[int, int]:
    tr = cpu.tr
    if tr.type & 8:  # 32-bit TSS
        off = 4 + dpl * 8
        if off + 5 > tr.limit:
            raise GuestFault(TS, tr.selector & 0xFFFC)
        esp = sys_read(cpu, tr.base + off, 4)
        ss = sys_read(cpu, tr.base + off + 4, 2)
    else:
        off = 2 + dpl * 4
        if off + 3 > tr.limit:
            raise GuestFault(TS, tr.selector & 0xFFFC)
        esp = sys_read(cpu, tr.base + off, 2)
        ss = sys_read(cpu, tr.base + off + 2, 2)
    return ss, esp


def iret(cpu, opsize: int) -> None:
    """iret in real or protected mode, same privilege or outward (SDM vol. 2, IRET)."""
    sp_mask = 0xFFFFFFFF if cpu.segs[SS].big else 0xFFFF
    sp = cpu.regs[ESP]
    base = cpu.segs[SS].base

    def pop() -> int:
        nonlocal sp
        v = sys_read(cpu, base + (sp & sp_mask), opsize)
        sp = (sp & ~sp_mask) | ((sp + opsize) & sp_mask)
        return v

    new_eip = pop()
    new_cs = pop() & 0xFFFF
    new_flags = pop()
    if opsize == 2:
        new_flags = (cpu.get_eflags() & 0xFFFF0000) | new_flags
    if not cpu.cr[0] & CR0_PE:
        cpu.regs[ESP] = sp
        cs = cpu.segs[CS]
        cpu.segs[CS] = SegmentCache(new_cs, new_cs << 4, cs.limit, cs.flags)
        cpu.eip = new_eip & (0xFFFF if opsize == 2 else 0xFFFFFFFF)
        cpu.set_eflags(new_flags, 0x257FD5 if opsize == 4 else 0xFFFF)
        return
    if cpu.eflags & F.NT:
        raise GuestFault(GP, 0)  # task return: needs task switching
    cpl = cpu.cpl
    if new_cs & 0xFFFC == 0:
        raise GuestFault(GP, 0)
    rpl = new_cs & 3
    if rpl < cpl:
        raise GuestFault(GP, new_cs & 0xFFFC)
    clo, chi = read_descriptor(cpu, new_cs)
    check_code_descriptor(cpu, new_cs, clo, chi)
    cdpl = (chi >> 13) & 3
    if chi & (1 << 10):
        if cdpl > rpl:
            raise GuestFault(GP, new_cs & 0xFFFC)
    elif cdpl != rpl:
        raise GuestFault(GP, new_cs & 0xFFFC)
    # Which EFLAGS bits may change (SDM: IOPL only at CPL 0, IF if CPL <= IOPL).
    mask = F.ARITH | F.TF | F.DF | F.NT | F.RF | F.AC | F.ID | F.VIF | F.VIP
    iopl = (cpu.eflags >> 12) & 3
    if cpl == 0:
        mask |= F.IOPL
    if cpl <= iopl:
        mask |= F.IF
    if opsize == 2:
        mask &= 0xFFFF
    if rpl == cpl:
        cpu.regs[ESP] = sp
        load_code_cache(cpu, new_cs, clo, chi, cpl)
        cpu.eip = new_eip
        cpu.set_eflags(new_flags, mask)
        return
    # Outward: pop the outer stack too.
    new_esp = pop()
    new_ss = pop() & 0xFFFF
    if new_ss & 0xFFFC == 0 or (new_ss & 3) != rpl:
        raise GuestFault(GP, new_ss & 0xFFFC)
    slo, shi = read_descriptor(cpu, new_ss)
    if ((shi >> 13) & 3) != rpl or shi & (1 << 11) or not shi & (1 << 9):
        raise GuestFault(GP, new_ss & 0xFFFC)
    if not shi & (1 << 15):
        raise GuestFault(SS_FAULT, new_ss & 0xFFFC)
    load_code_cache(cpu, new_cs, clo, chi, rpl)
    cpu.segs[SS] = cache_from(new_ss, slo, shi)
    cpu.regs[ESP] = new_esp if shi & (1 << 22) else (cpu.regs[ESP] & 0xFFFF0000) | (new_esp & 0xFFFF)
    cpu.eip = new_eip
    cpu.set_eflags(new_flags, mask)
    # Data segments not accessible at the new CPL become null (SDM IRET, RETURN-TO-OUTER).
    for seg in (0, 3, 4, 5):
        cache = cpu.segs[seg]
        dpl = cache.dpl
        is_code_conf = cache.flags & (1 << 11) and cache.flags & (1 << 10)
        if cache.selector & 0xFFFC and dpl < rpl and not is_code_conf:
            cpu.segs[seg] = SegmentCache(0, 0, 0, 0)
    cpu.compute_hflags()


__all__ = ["raise_exception", "do_interrupt", "iret", "TripleFault"]
