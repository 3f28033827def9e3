"""Segment descriptors: reading them from the GDT/LDT, privilege checks, loading segment caches.

Intel SDM vol. 3, 3.4-3.5 (descriptors), 5.5-5.8 (privilege checks), 7.2
(the TSS) and vol. 2 (MOV, LLDT, LTR, LAR, LSL, VERR/VERW).  Selector errors
raise the architectural exception with the selector's index as the error
code (``sel & 0xFFFC``) plus the EXT bit when the check happens while an
event external to the program is delivered (SDM vol. 3, 6.13).

Descriptor-table reads and writes are supervisor accesses through the paging
unit, as on hardware (and as QEMU's ``cpu_ldl_kernel``).  Every function here
that changes state checks everything that can fault first.

The CPL is not stored: ``cpu.cpl`` is derived from SS.DPL by
``CPU.compute_hflags`` (as QEMU does), so every transition that changes the
privilege level installs a stack segment whose DPL is the new CPL.  In long
mode that includes the null SS an inward transfer loads (SDM vol. 3,
6.14.4: "the new SS is set to NULL"): its cache carries DPL = the new CPL.

Long mode (EFER.LMA, SDM vol. 3, 3.5.2 and 5.8.3.1): system descriptors in
the GDT/LDT (LDT, TSS, call gates) are 16 bytes; the third dword holds bits
63:32 of the base or offset and the fourth dword's type field must be 0
(``read_system_descriptor``).  The 64-bit TSS holds RSP0-2 and IST1-7
(``tss_rsp``).  Linear addresses of descriptor-table and stack accesses are
64 bits wide (``linear_mask``).
"""

from __future__ import annotations

from ..softmmu.tlb import ACCESS_READ, ACCESS_WRITE, MMU_KNOSMAP_IDX, MMU_USER_IDX, PAGE_MASK, TLB_MASK
from . import flags as F
from .cpu import (
    CPU,
    CR0_PE,
    CS,
    DESC_A,
    DESC_B,
    DESC_C,
    DESC_CS,
    DESC_DPL_SHIFT,
    DESC_G,
    DESC_L,
    DESC_P,
    DESC_R,
    DESC_S,
    DESC_TYPE_SHIFT,
    DESC_W,
    DS,
    EFER_LMA,
    ES,
    FS,
    GS,
    HF_PE,
    HF_VM,
    SS,
    SegmentCache,
)
from .exceptions import GP, NP, TS, GuestFault
from .exceptions import SS as SS_FAULT

# System descriptor types (S=0), SDM vol. 3, table 3-2.
SYS_TSS16_AVAIL = 1
SYS_LDT = 2
SYS_TSS16_BUSY = 3
SYS_CALL_GATE16 = 4
SYS_TASK_GATE = 5
SYS_INT_GATE16 = 6
SYS_TRAP_GATE16 = 7
SYS_TSS32_AVAIL = 9
SYS_TSS32_BUSY = 11
SYS_CALL_GATE32 = 12
SYS_INT_GATE32 = 14
SYS_TRAP_GATE32 = 15
TSS_BUSY_BIT = 1 << 9  # type bit 1 of an available TSS, in the high dword


MASK64 = 0xFFFFFFFFFFFFFFFF
TAG8_MASK = PAGE_MASK | 7  # the inline TLB compare of an aligned 8-byte read


def long_mode(cpu: CPU) -> bool:
    """EFER.LMA: IA-32e mode (64-bit or compatibility code)."""
    return bool(cpu.efer & EFER_LMA)


def code64(cpu: CPU) -> bool:
    """64-bit mode: EFER.LMA and CS.L (SDM vol. 3, 5.2.1)."""
    return bool(cpu.efer & EFER_LMA and cpu.segs[CS].flags & DESC_L)


def linear_mask(cpu: CPU) -> int:
    """Linear addresses are 64 bits wide in IA-32e mode, 32 bits otherwise."""
    return MASK64 if cpu.efer & EFER_LMA else 0xFFFFFFFF


def canonical(vaddr: int) -> bool:
    """Bits 63:47 all equal (48-bit linear addresses, SDM vol. 1, 3.3.7.1)."""
    top = (vaddr & MASK64) >> 47
    return top == 0 or top == 0x1FFFF


def sys_read(cpu: CPU, vaddr: int, size: int) -> int:
    """A supervisor read (descriptor tables, TSS, interrupt frames): may raise #PF."""
    return cpu.softmmu.fast_load(MMU_KNOSMAP_IDX, vaddr & (MASK64 if cpu.efer & EFER_LMA else 0xFFFFFFFF), size)


def sys_write(cpu: CPU, vaddr: int, size: int, value: int) -> None:
    """A supervisor write; may raise #PF (and SMCRestart, which only restarts the instruction)."""
    cpu.softmmu.fast_store(MMU_KNOSMAP_IDX, vaddr & (MASK64 if cpu.efer & EFER_LMA else 0xFFFFFFFF), size, value)


def stack_read(cpu: CPU, vaddr: int, size: int, cpl: int) -> int:
    """A stack access of the privilege level that owns the stack: a user access at CPL 3.

    Far CALL/RET and IRET touch the stack with the privilege of the level
    the stack belongs to (SDM vol. 3, 4.6: accesses at CPL 3 are user-mode
    accesses; the inner stack of an inward transfer is supervisor).
    """
    return cpu.softmmu.fast_load(
        MMU_USER_IDX if cpl == 3 else MMU_KNOSMAP_IDX, vaddr & (MASK64 if cpu.efer & EFER_LMA else 0xFFFFFFFF), size
    )


def stack_write(cpu: CPU, vaddr: int, size: int, value: int, cpl: int) -> None:
    cpu.softmmu.fast_store(
        MMU_USER_IDX if cpl == 3 else MMU_KNOSMAP_IDX,
        vaddr & (MASK64 if cpu.efer & EFER_LMA else 0xFFFFFFFF),
        size,
        value,
    )


def push_frame(cpu: CPU, base: int, sp: int, sp_mask: int, size: int, values: list[int], cpl: int) -> int:
    """Push ``values`` (first pushed first) below ``sp`` on the stack at ``base``; return the new SP.

    The stack accesses of an interrupt or exception frame, with the privilege
    of the level that owns the stack (``stack_write``).  When the whole frame
    lies in one page whose TLB entry takes stores on the fast path (present,
    writable, no flag: such stores cannot fault, hit a watchpoint or touch
    code) and is aligned, it is written at once; otherwise value by value, in
    order, so a fault in the middle behaves as it always did.  Values are
    already masked to ``size`` bytes.
    """
    n = len(values)
    total = n * size
    top = sp & sp_mask
    low = top - total
    lin = base + low
    if low >= 0 and not lin & (size - 1) and lin + total <= (MASK64 if cpu.efer & EFER_LMA else 0xFFFFFFFF):
        mmu_idx = MMU_USER_IDX if cpl == 3 else MMU_KNOSMAP_IDX
        off = cpu.softmmu.fast_page(mmu_idx, lin, total, ACCESS_WRITE)
        if off >= 0:
            mem = cpu.mem
            if size == 4:
                view, shift = mem.m32, 2
            elif size == 8:
                view, shift = mem.m64, 3
            else:
                view, shift = mem.m16, 1
            slot = (off + total) >> shift
            for value in values:
                slot -= 1
                view[slot] = value
            return low
    for value in values:
        sp = (sp - size) & sp_mask
        stack_write(cpu, base + sp, size, value, cpl)
    return sp


def peek_frame(cpu: CPU, lin: int, size: int, n: int, cpl: int) -> list[int] | None:
    """The ``n`` values of ``size`` bytes at linear ``lin`` when one fast-path TLB entry covers
    them all (reads there have no side effect and cannot fault), else None: the caller pops
    them one by one.  For IRET, which may pop fewer than it peeked."""
    total = n * size
    if lin & (size - 1) or lin + total > (MASK64 if cpu.efer & EFER_LMA else 0xFFFFFFFF):
        return None
    off = cpu.softmmu.fast_page(MMU_USER_IDX if cpl == 3 else MMU_KNOSMAP_IDX, lin, total, ACCESS_READ)
    if off < 0:
        return None
    mem = cpu.mem
    if size == 4:
        return mem.m32[off >> 2 : (off + total) >> 2].tolist()
    if size == 8:
        return mem.m64[off >> 3 : (off + total) >> 3].tolist()
    return mem.m16[off >> 1 : (off + total) >> 1].tolist()


def dpl_of(hi: int) -> int:
    return (hi >> DESC_DPL_SHIFT) & 3


def sys_type(hi: int) -> int:
    """The 4-bit type of a descriptor's high dword."""
    return (hi >> DESC_TYPE_SHIFT) & 0xF


def is_code(hi: int) -> bool:
    return bool(hi & DESC_S and hi & DESC_CS)


def is_conforming_code(hi: int) -> bool:
    return is_code(hi) and bool(hi & DESC_C)


def read_descriptor(cpu: CPU, selector: int, exc: int = GP, ext: int = 0) -> tuple[int, int]:
    """The 8-byte descriptor for ``selector`` as (low dword, high dword).

    An index beyond the GDT/LDT limit raises ``exc`` (#GP, or #TS for the
    stack selector of a TSS) with the selector as error code.
    """
    if selector & 4:
        base, limit = cpu.ldtr.base, cpu.ldtr.limit  # lldt 0 leaves limit 0: every index is beyond
    else:
        base, limit = cpu.gdtr_base, cpu.gdtr_limit
    index = selector & ~7 & 0xFFFF
    if index + 7 > limit:
        raise GuestFault(exc, (selector & 0xFFFC) | ext)
    return read_desc_at(cpu, base + index)


def read_desc_at(cpu: CPU, addr: int) -> tuple[int, int]:
    """The 8 bytes at linear ``addr`` of a descriptor table (GDT, LDT, IDT) as (low, high) dwords.

    One aligned 8-byte read when the inline TLB compare hits; two dword
    loads otherwise, so a miss, a flagged page (watchpoint, MMIO) or an
    entry that crosses a page behave as they always did.
    """
    addr &= MASK64 if cpu.efer & EFER_LMA else 0xFFFFFFFF
    if not addr & 7:
        softmmu = cpu.softmmu
        desc = softmmu.tlb.d[MMU_KNOSMAP_IDX]
        slot = (addr >> 12) & TLB_MASK
        if desc.read[slot] == addr & TAG8_MASK:
            raw: int = softmmu.mem.m64[(addr + desc.addend[slot]) >> 3]
            return raw & 0xFFFFFFFF, raw >> 32
    lo = sys_read(cpu, addr, 4)
    hi = sys_read(cpu, addr + 4, 4)
    return lo, hi


def peek_desc(cpu: CPU, selector: int) -> int:
    """The descriptor of a non-null ``selector`` as one 64-bit int when reading it cannot fault
    or do anything else: within its table's limit, aligned, on a page the inline TLB compare
    hits.  -1 otherwise (the caller takes its general path, which reads it as ``read_descriptor``)."""
    if selector & 4:
        ldtr = cpu.ldtr
        base, limit = ldtr.base, ldtr.limit
    else:
        base, limit = cpu.gdtr_base, cpu.gdtr_limit
    index = selector & 0xFFF8
    if index + 7 > limit:
        return -1
    addr = (base + index) & (MASK64 if cpu.efer & EFER_LMA else 0xFFFFFFFF)
    softmmu = cpu.softmmu
    desc = softmmu.tlb.d[MMU_KNOSMAP_IDX]
    slot = (addr >> 12) & TLB_MASK
    if desc.read[slot] != addr & TAG8_MASK:
        return -1
    raw: int = softmmu.mem.m64[(addr + desc.addend[slot]) >> 3]
    return raw


def peek_desc_at(cpu: CPU, addr: int) -> int:
    """The 8 bytes at linear ``addr`` of a descriptor table when the inline TLB compare hits, else -1."""
    addr &= MASK64 if cpu.efer & EFER_LMA else 0xFFFFFFFF
    softmmu = cpu.softmmu
    desc = softmmu.tlb.d[MMU_KNOSMAP_IDX]
    slot = (addr >> 12) & TLB_MASK
    if desc.read[slot] != addr & TAG8_MASK:
        return -1
    raw: int = softmmu.mem.m64[(addr + desc.addend[slot]) >> 3]
    return raw


def peek_sys(cpu: CPU, addr: int, size: int) -> int:
    """``sys_read`` when the inline TLB compare hits (aligned, unflagged page): the value; else -1."""
    addr &= MASK64 if cpu.efer & EFER_LMA else 0xFFFFFFFF
    softmmu = cpu.softmmu
    desc = softmmu.tlb.d[MMU_KNOSMAP_IDX]
    slot = (addr >> 12) & TLB_MASK
    if desc.read[slot] != addr & (PAGE_MASK | (size - 1)):
        return -1
    off = addr + desc.addend[slot]
    mem = softmmu.mem
    if size == 4:
        v: int = mem.m32[off >> 2]
        return v
    if size == 2:
        v = mem.m16[off >> 1]
        return v
    return -1


def try_read_descriptor(cpu: CPU, selector: int) -> tuple[int, int] | None:
    """The descriptor, or None for a null selector or one beyond its table (LAR/LSL/VERR/VERW).

    A page fault reading the table still faults: only the selector checks are silent.
    """
    if not selector & 0xFFFC:
        return None
    try:
        return read_descriptor(cpu, selector)
    except GuestFault as fault:
        if fault.vector == GP:
            return None
        raise


def read_system_descriptor(cpu: CPU, selector: int, exc: int = GP, ext: int = 0) -> tuple[int, int, int]:
    """A system descriptor: (low dword, high dword, bits 63:32 of its base/offset).

    Outside long mode the third value is 0 and the descriptor is 8 bytes.
    In long mode it is 16 bytes (SDM vol. 3, figure 7-4, figure 5-9): the
    whole 16 bytes must be within the table limit (else ``exc``) and the
    type field of the fourth dword must be 0 (else #GP with the selector).
    """
    lo, hi = read_descriptor(cpu, selector, exc, ext)
    if not cpu.efer & EFER_LMA:
        return lo, hi, 0
    if selector & 4:
        limit = cpu.ldtr.limit
    else:
        limit = cpu.gdtr_limit
    if (selector & ~7 & 0xFFFF) + 15 > limit:
        raise GuestFault(exc, (selector & 0xFFFC) | ext)
    addr = descriptor_address(cpu, selector)
    upper = sys_read(cpu, addr + 8, 4)
    if (sys_read(cpu, addr + 12, 4) >> DESC_TYPE_SHIFT) & 0x1F:
        raise GuestFault(GP, (selector & 0xFFFC) | ext)
    return lo, hi, upper


def descriptor_address(cpu: CPU, selector: int) -> int:
    base = cpu.ldtr.base if selector & 4 else cpu.gdtr_base
    return base + (selector & ~7 & 0xFFFF)


def set_accessed(cpu: CPU, selector: int, hi: int) -> None:
    """Set the descriptor's accessed bit in memory (SDM vol. 3, 3.4.5.1) if it is clear."""
    if not hi & DESC_A:
        sys_write(cpu, descriptor_address(cpu, selector) + 4, 4, hi | DESC_A)


def desc_base(lo: int, hi: int) -> int:
    return (lo >> 16) | ((hi & 0xFF) << 16) | (hi & 0xFF000000)


def desc_limit(lo: int, hi: int) -> int:
    limit = (lo & 0xFFFF) | (hi & 0x000F0000)
    if hi & DESC_G:
        limit = (limit << 12) | 0xFFF
    return limit


def cache_from(selector: int, lo: int, hi: int) -> SegmentCache:
    limit = (lo & 0xFFFF) | (hi & 0x000F0000)
    if hi & DESC_G:
        limit = (limit << 12) | 0xFFF
    return SegmentCache(selector, (lo >> 16) | ((hi & 0xFF) << 16) | (hi & 0xFF000000), limit, hi & 0x00F0FF00)


def load_cache(cpu: CPU, seg: int, cache: SegmentCache) -> None:
    """Install a segment cache and recompute what depends on it (hflags, the base mirror)."""
    if seg == SS or seg == CS:
        cpu.segs[seg] = cache
        cpu.compute_hflags()
    else:
        cpu.load_data_seg(seg, cache)


def real_mode_cache(selector: int, old: SegmentCache) -> SegmentCache:
    """A real-mode segment load: selector and base change; limit and attributes stay (QEMU)."""
    return SegmentCache(selector, selector << 4, old.limit if old.limit else 0xFFFF, old.flags | DESC_P)


def load_seg(cpu: CPU, seg: int, selector: int) -> None:
    """mov/pop/lds to a data or stack segment register, with the protected-mode checks.

    SDM vol. 2, MOV (segment register): SS needs a writable data segment with
    RPL = DPL = CPL (#GP, #SS when not present); DS/ES/FS/GS need a data or
    readable code segment with DPL >= max(CPL, RPL) unless conforming code
    (#GP, #NP when not present); a null selector is allowed except in SS.
    """
    selector &= 0xFFFF
    if not cpu.cr[0] & CR0_PE or cpu.eflags & F.VM:
        dpl = 3 << DESC_DPL_SHIFT if cpu.eflags & F.VM else 0
        load_cache(cpu, seg, SegmentCache(selector, selector << 4, 0xFFFF, DESC_P | DESC_S | DESC_W | DESC_A | dpl))
        return
    cpl = cpu.hflags & 3
    rpl = selector & 3
    if selector & 0xFFFC == 0:
        if seg == SS:
            # 64-bit mode allows a null SS at CPL 0-2 with RPL = CPL (SDM vol. 2 MOV, POP).
            if not code64(cpu) or cpl == 3 or rpl != cpl:
                raise GuestFault(GP, 0)
            load_cache(cpu, SS, null_stack(selector, cpl))
            return
        # A null selector loads an unusable segment (a later access #GPs on hardware).
        cpu.load_data_seg(seg, SegmentCache(selector, 0, 0, 0))
        return
    lo, hi = read_descriptor(cpu, selector)
    key = (lo, hi, selector, cpl, seg == SS)
    known = _LOADED.get(key)
    if known is not None:
        # The same descriptor words, selector and CPL passed these checks before (and its
        # accessed bit is set): the outcome is the same, only the cache is new.
        if seg == SS:
            cpu.segs[SS] = SegmentCache(selector, known[0], known[1], known[2])
            cpu.compute_hflags()
        else:
            cpu.load_data_seg(seg, SegmentCache(selector, known[0], known[1], known[2]))
        return
    err = selector & 0xFFFC
    if not hi & DESC_S:
        raise GuestFault(GP, err)
    dpl = (hi >> DESC_DPL_SHIFT) & 3
    if seg == SS:
        if rpl != cpl or dpl != cpl or hi & DESC_CS or not hi & DESC_W:
            raise GuestFault(GP, err)
        if not hi & DESC_P:
            raise GuestFault(SS_FAULT, err)
    else:
        if hi & DESC_CS and not hi & DESC_R:
            raise GuestFault(GP, err)
        # data or non-conforming code: DPL >= max(CPL, RPL)
        if not (hi & DESC_CS and hi & DESC_C) and (dpl < cpl or dpl < rpl):
            raise GuestFault(GP, err)
        if not hi & DESC_P:
            raise GuestFault(NP, err)
    if not hi & DESC_A:
        set_accessed(cpu, selector, hi)
    cache = cache_from(selector, lo, hi | DESC_A)
    if hi & DESC_A:
        if len(_LOADED) >= 1024:
            _LOADED.clear()
            _DATA_LOADED.clear()
        _LOADED[key] = (cache.base, cache.limit, cache.flags)
        if seg != SS:
            _DATA_LOADED[(lo | hi << 32) << 18 | selector << 2 | cpl] = (cache.base, cache.limit, cache.flags)
    if seg == SS:
        cpu.segs[SS] = cache
        cpu.compute_hflags()
    else:
        cpu.load_data_seg(seg, cache)


# Loads that passed load_seg's checks: (descriptor low, high, selector, CPL, is SS) -> the cache's
# (base, limit, flags).  A pure function of its key (the descriptor's words are read every time).
_LOADED: dict[tuple[int, int, int, int, bool], tuple[int, int, int]] = {}


# The same for ES/DS/FS/GS, keyed by one int: descriptor (low | high << 32) << 18 | selector << 2 | CPL.
_DATA_LOADED: dict[int, tuple[int, int, int]] = {}


def load_data_seg_fast(cpu: CPU, seg: int, selector: int, done: int = 0) -> None:
    """A load of ES, DS, FS or GS from generated code (mov, pop): ``load_seg`` with a short path.

    In protected mode (not VM86), a null selector, or a selector whose
    descriptor words (read from memory now, through the inline TLB compare,
    as ``read_desc_at`` does) passed ``load_seg``'s checks before with the
    same selector and CPL and its accessed bit set: the outcome is a pure
    function of those, so only the cache, the base mirror and HF_ADDSEG
    change.  Anything else (a limit overrun, a TLB miss, an unaligned table,
    a descriptor not seen yet) is ``load_seg`` itself, faults included, with
    ``cpu.icount`` exact for its duration (it may read MMIO): ``done`` is the
    number of instructions the calling TB retired before this one.
    """
    hf = cpu.hflags
    if hf & (HF_PE | HF_VM) == HF_PE:
        if not selector & 0xFFFC:
            cpu.load_data_seg(seg, SegmentCache(selector, 0, 0, 0))
            return
        if selector & 4:
            ldtr = cpu.ldtr
            base, limit = ldtr.base, ldtr.limit
        else:
            base, limit = cpu.gdtr_base, cpu.gdtr_limit
        index = selector & 0xFFF8
        if index + 7 <= limit:
            addr = (base + index) & (MASK64 if cpu.efer & EFER_LMA else 0xFFFFFFFF)
            softmmu = cpu.softmmu
            desc = softmmu.tlb.d[MMU_KNOSMAP_IDX]
            slot = (addr >> 12) & TLB_MASK
            if desc.read[slot] == addr & TAG8_MASK:
                known = _DATA_LOADED.get(
                    softmmu.mem.m64[(addr + desc.addend[slot]) >> 3] << 18 | selector << 2 | (hf & 3)
                )
                if known is not None:
                    cpu.load_data_seg(seg, SegmentCache(selector, known[0], known[1], known[2]))
                    return
    cpu.icount += done
    try:
        load_seg(cpu, seg, selector)
    finally:
        cpu.icount -= done


def null_stack(selector: int, cpl: int) -> SegmentCache:
    """The null SS of IA-32e mode (inward interrupts and call gates, SYSRET-less returns at CPL < 3).

    Its cache keeps the DPL of the level it belongs to, which is how the CPL
    is derived (module docstring); a 64-bit stack ignores base and limit.
    """
    return SegmentCache(selector & 0xFFFF, 0, 0xFFFFFFFF, DESC_B | (cpl << DESC_DPL_SHIFT))


# ---- code and stack segments of control transfers ---------------------------------
def load_code_cache(cpu: CPU, selector: int, lo: int, hi: int, cpl: int) -> None:
    """Install CS with RPL = the new CPL (far transfers, interrupts, iret).

    Writes no memory: the caller sets the descriptor's accessed bit
    (``set_accessed``, which can fault) before it commits anything, and
    recomputes hflags once the whole transfer is committed.
    """
    cpu.segs[CS] = cache_from((selector & 0xFFFC) | cpl, lo, hi | DESC_A)


def check_code_descriptor(cpu: CPU, selector: int, lo: int, hi: int, ext: int = 0) -> None:
    """The target of a transfer must be a present code segment (#GP / #NP with its selector)."""
    if not is_code(hi):
        raise GuestFault(GP, (selector & 0xFFFC) | ext)
    if not hi & DESC_P:
        raise GuestFault(NP, (selector & 0xFFFC) | ext)


def check_eip(offset: int, lo: int, hi: int, lma: bool = False) -> None:
    """A new EIP beyond the new code segment's limit is #GP(0) (SDM JMP/CALL/RET/IRET).

    With ``lma`` (IA-32e mode) a 64-bit target (L=1) has no limit but its RIP
    must be canonical.
    """
    if lma and hi & DESC_L:
        if not canonical(offset):
            raise GuestFault(GP, 0)
    elif offset > desc_limit(lo, hi):
        raise GuestFault(GP, 0)


def stack_cache(cpu: CPU, selector: int, cpl: int, exc: int, ext: int = 0) -> SegmentCache:
    """Check and build the SS for privilege level ``cpl`` (inner stack from the TSS, or outer on return).

    Sets the descriptor's accessed bit (the only memory write) before returning.

    SDM vol. 3, 6.12.1 and vol. 2 CALL/RET/IRET: the selector is not null,
    RPL = DPL = ``cpl``, a writable data segment (else ``exc``: #TS for a
    TSS stack, #GP for a return), present (else #SS).
    """
    if not selector & 0xFFFC:
        raise GuestFault(exc, ext if exc == TS else 0)
    lo, hi = read_descriptor(cpu, selector, exc, ext)
    err = (selector & 0xFFFC) | ext
    if (selector & 3) != cpl or dpl_of(hi) != cpl or not hi & DESC_S or hi & DESC_CS or not hi & DESC_W:
        raise GuestFault(exc, err)
    if not hi & DESC_P:
        raise GuestFault(SS_FAULT, err)
    set_accessed(cpu, selector, hi)
    return cache_from(selector, lo, hi | DESC_A)


def tss_inner_stack(cpu: CPU, dpl: int, ext: int = 0) -> tuple[int, int]:
    """SSn:ESPn of the current TSS for privilege level ``dpl`` (SDM vol. 3, 7.2.1, 6.12.1).

    A 32-bit TSS holds ESPn at 4 + 8n and SSn at 8 + 8n; a 16-bit TSS SPn at
    2 + 4n and SSn at 4 + 4n.  Past the TSS limit: #TS(TSS selector).
    """
    tr = cpu.tr
    if tr.type & 8:
        off, size = 4 + dpl * 8, 4
    else:
        off, size = 2 + dpl * 4, 2
    if off + 2 * size - 1 > tr.limit:
        raise GuestFault(TS, (tr.selector & 0xFFFC) | ext)
    esp = sys_read(cpu, tr.base + off, size)
    ss = sys_read(cpu, tr.base + off + size, 2)
    return ss, esp


def tss_rsp(cpu: CPU, index: int, ext: int = 0) -> int:
    """The 64-bit TSS's stack pointer ``index``: RSP0-2 for 0-2, IST1-7 for 4-10 (SDM vol. 3, figure 7-11).

    The 8 bytes at 4 + 8 * index; beyond the TSS limit: #TS(TSS selector).
    """
    off = 4 + 8 * index
    tr = cpu.tr
    if off + 7 > tr.limit:
        raise GuestFault(TS, (tr.selector & 0xFFFC) | ext)
    return sys_read(cpu, tr.base + off, 8)


def invalidate_outer_segments(cpu: CPU, cpl: int) -> None:
    """After a return to an outer level: null ES/DS/FS/GS the new CPL may not use.

    SDM vol. 2 RET and IRET (RETURN-TO-OUTER-PRIVILEGE-LEVEL): a segment
    register holding a data or non-conforming code segment whose DPL is below
    the new CPL becomes null (QEMU's validate_seg keeps base and limit and
    clears P, which is what we do: the selector reads back as 0).
    """
    for seg in (ES, DS, FS, GS):
        cache = cpu.segs[seg]
        flags = cache.flags
        conforming = flags & DESC_S and flags & DESC_CS and flags & DESC_C
        if not conforming and cache.dpl < cpl:
            cpu.segs[seg] = SegmentCache(0, cache.base, cache.limit, flags & ~DESC_P)


# ---- LDTR and TR ------------------------------------------------------------------------
def lldt(cpu: CPU, selector: int) -> None:
    """LLDT (SDM vol. 2): a GDT selector of a present LDT descriptor, or null (no LDT)."""
    selector &= 0xFFFF
    if not selector & 0xFFFC:
        cpu.ldtr = SegmentCache(selector, 0, 0, 0)
        return
    if selector & 4:
        raise GuestFault(GP, selector & 0xFFFC)
    lo, hi, upper = read_system_descriptor(cpu, selector)
    if hi & DESC_S or sys_type(hi) != SYS_LDT:
        raise GuestFault(GP, selector & 0xFFFC)
    if not hi & DESC_P:
        raise GuestFault(NP, selector & 0xFFFC)
    cache = cache_from(selector, lo, hi)
    cache.base |= upper << 32
    if not canonical(cache.base):
        raise GuestFault(GP, selector & 0xFFFC)
    cpu.ldtr = cache


def ltr(cpu: CPU, selector: int) -> None:
    """LTR (SDM vol. 2): load TR from an available TSS descriptor in the GDT and mark it busy.

    In long mode only the 64-bit TSS (type 9, 16 bytes, 64-bit base) is valid.
    """
    selector &= 0xFFFF
    if not selector & 0xFFFC:
        raise GuestFault(GP, 0)
    if selector & 4:
        raise GuestFault(GP, selector & 0xFFFC)
    lo, hi, upper = read_system_descriptor(cpu, selector)
    valid = (SYS_TSS32_AVAIL,) if long_mode(cpu) else (SYS_TSS16_AVAIL, SYS_TSS32_AVAIL)
    if hi & DESC_S or sys_type(hi) not in valid:
        raise GuestFault(GP, selector & 0xFFFC)
    if not hi & DESC_P:
        raise GuestFault(NP, selector & 0xFFFC)
    cache = cache_from(selector, lo, hi | TSS_BUSY_BIT)
    cache.base |= upper << 32
    if not canonical(cache.base):
        raise GuestFault(GP, selector & 0xFFFC)
    sys_write(cpu, descriptor_address(cpu, selector) + 4, 4, hi | TSS_BUSY_BIT)
    cpu.tr = cache


# ---- LAR, LSL, VERR, VERW: probes that never fault on a bad selector ---------------------
_LAR_SYS_TYPES = frozenset(
    {
        SYS_TSS16_AVAIL,
        SYS_LDT,
        SYS_TSS16_BUSY,
        SYS_CALL_GATE16,
        SYS_TASK_GATE,
        SYS_TSS32_AVAIL,
        SYS_TSS32_BUSY,
        SYS_CALL_GATE32,
    }
)
_LSL_SYS_TYPES = frozenset({SYS_TSS16_AVAIL, SYS_LDT, SYS_TSS16_BUSY, SYS_TSS32_AVAIL, SYS_TSS32_BUSY})
# IA-32e mode (SDM vol. 2 LAR, LSL): the 16-bit TSS, 16-bit call gate and task gate types are invalid.
_LAR_SYS_TYPES_LONG = frozenset({SYS_LDT, SYS_TSS32_AVAIL, SYS_TSS32_BUSY, SYS_CALL_GATE32})
_LSL_SYS_TYPES_LONG = frozenset({SYS_LDT, SYS_TSS32_AVAIL, SYS_TSS32_BUSY})


def _visible(cpu: CPU, selector: int, hi: int) -> bool:
    """DPL >= max(CPL, RPL), except conforming code segments, which are visible at any level."""
    if is_conforming_code(hi):
        return True
    dpl = dpl_of(hi)
    return dpl >= cpu.cpl and dpl >= selector & 3


def probe_lar(cpu: CPU, selector: int) -> int | None:
    """LAR: the access-rights dword (``hi & 0x00F0FF00``), or None (ZF=0)."""
    desc = try_read_descriptor(cpu, selector)
    if desc is None:
        return None
    hi = desc[1]
    valid = _LAR_SYS_TYPES_LONG if long_mode(cpu) else _LAR_SYS_TYPES
    if not hi & DESC_S and sys_type(hi) not in valid:
        return None
    if not _visible(cpu, selector, hi):
        return None
    return hi & 0x00F0FF00


def probe_lsl(cpu: CPU, selector: int) -> int | None:
    """LSL: the byte-granular segment limit, or None (ZF=0)."""
    desc = try_read_descriptor(cpu, selector)
    if desc is None:
        return None
    lo, hi = desc
    valid = _LSL_SYS_TYPES_LONG if long_mode(cpu) else _LSL_SYS_TYPES
    if not hi & DESC_S and sys_type(hi) not in valid:
        return None
    if not _visible(cpu, selector, hi):
        return None
    return desc_limit(lo, hi)


def probe_verify(cpu: CPU, selector: int, write: bool) -> bool:
    """VERR / VERW: is the segment readable / writable at the current CPL?"""
    desc = try_read_descriptor(cpu, selector)
    if desc is None:
        return False
    hi = desc[1]
    if not hi & DESC_S:
        return False
    if write:
        if hi & DESC_CS or not hi & DESC_W:
            return False
    elif hi & DESC_CS and not hi & DESC_R:
        return False
    return _visible(cpu, selector, hi)


__all__ = [
    "MASK64",
    "canonical",
    "code64",
    "linear_mask",
    "long_mode",
    "null_stack",
    "read_system_descriptor",
    "tss_rsp",
    "read_descriptor",
    "read_desc_at",
    "try_read_descriptor",
    "peek_desc",
    "peek_sys",
    "peek_desc_at",
    "desc_base",
    "desc_limit",
    "cache_from",
    "load_cache",
    "load_seg",
    "load_data_seg_fast",
    "real_mode_cache",
    "load_code_cache",
    "set_accessed",
    "check_code_descriptor",
    "check_eip",
    "stack_cache",
    "tss_inner_stack",
    "invalidate_outer_segments",
    "lldt",
    "ltr",
    "probe_lar",
    "probe_lsl",
    "probe_verify",
    "sys_read",
    "sys_write",
    "stack_read",
    "stack_write",
    "push_frame",
    "peek_frame",
    "DESC_B",
    "DESC_TYPE_SHIFT",
]
