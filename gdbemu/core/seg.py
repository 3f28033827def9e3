"""Segment descriptors: reading them from the GDT/LDT and loading segment caches.

Intel SDM vol. 3, 3.4 (descriptors) and 5.5-5.8 (privilege checks).  Selector
errors raise the architectural exception with the selector's index as the
error code (``sel & 0xFFFC``).  Descriptor-table reads are supervisor accesses
through the paging unit, as on hardware.
"""

from __future__ import annotations

from ..softmmu.tlb import MMU_KNOSMAP_IDX
from .cpu import (
    CR0_PE,
    CS,
    DESC_A,
    DESC_B,
    DESC_CS,
    DESC_DPL_SHIFT,
    DESC_G,
    DESC_P,
    DESC_R,
    DESC_S,
    DESC_TYPE_SHIFT,
    DESC_W,
    SS,
    SegmentCache,
)
from .exceptions import GP, NP, SS as SS_FAULT, GuestFault
from . import flags as F


def sys_read(cpu, vaddr: int, size: int) -> int:
    return cpu.softmmu.load(MMU_KNOSMAP_IDX, vaddr & 0xFFFFFFFF, size)


def sys_write(cpu, vaddr: int, size: int, value: int) -> None:
    cpu.softmmu.store(MMU_KNOSMAP_IDX, vaddr & 0xFFFFFFFF, size, value)


def read_descriptor(cpu, selector: int, exc: int = GP) -> tuple[int, int]:
    """The 8-byte descriptor for ``selector`` as (low dword, high dword)."""
    if selector & 4:
        base, limit = cpu.ldtr.base, cpu.ldtr.limit
    else:
        base, limit = cpu.gdtr_base, cpu.gdtr_limit
    index = selector & ~7
    if index + 7 > limit:
        raise GuestFault(exc, selector & 0xFFFC)
    lo = sys_read(cpu, base + index, 4)
    hi = sys_read(cpu, base + index + 4, 4)
    return lo, hi


def set_accessed(cpu, selector: int, hi: int) -> None:
    if not hi & DESC_A:
        base = cpu.ldtr.base if selector & 4 else cpu.gdtr_base
        sys_write(cpu, base + (selector & ~7) + 4, 4, hi | DESC_A)


def desc_base(lo: int, hi: int) -> int:
    return (lo >> 16) | ((hi & 0xFF) << 16) | (hi & 0xFF000000)


def desc_limit(lo: int, hi: int) -> int:
    limit = (lo & 0xFFFF) | (hi & 0x000F0000)
    if hi & DESC_G:
        limit = (limit << 12) | 0xFFF
    return limit


def cache_from(selector: int, lo: int, hi: int) -> SegmentCache:
    return SegmentCache(selector, desc_base(lo, hi), desc_limit(lo, hi), hi & 0x00F0FF00)


def load_cache(cpu, seg: int, cache: SegmentCache) -> None:
    """Install a segment cache and recompute what depends on it (hflags, the base mirror)."""
    cpu.segs[seg] = cache
    cpu.compute_hflags()


def real_mode_cache(selector: int, old: SegmentCache) -> SegmentCache:
    return SegmentCache(selector, selector << 4, old.limit if old.limit else 0xFFFF, old.flags | DESC_P)


def load_seg(cpu, seg: int, selector: int) -> None:
    """mov/pop/lds to a data or stack segment register, with the protected-mode checks."""
    selector &= 0xFFFF
    if not cpu.cr[0] & CR0_PE or cpu.eflags & F.VM:
        load_cache(cpu, seg, SegmentCache(selector, selector << 4, 0xFFFF,
                                          DESC_P | DESC_S | DESC_W | DESC_A | (3 << DESC_DPL_SHIFT if cpu.eflags & F.VM else 0)))
        return
    cpl = cpu.cpl
    rpl = selector & 3
    if selector & 0xFFFC == 0:
        if seg == SS:
            raise GuestFault(GP, 0)
        # A null selector loads an unusable segment (a later access #GPs on hardware).
        load_cache(cpu, seg, SegmentCache(selector, 0, 0, 0))
        return
    lo, hi = read_descriptor(cpu, selector)
    if not hi & DESC_S:
        raise GuestFault(GP, selector & 0xFFFC)
    dpl = (hi >> DESC_DPL_SHIFT) & 3
    if seg == SS:
        if rpl != cpl or dpl != cpl or hi & DESC_CS or not hi & DESC_W:
            raise GuestFault(GP, selector & 0xFFFC)
        if not hi & DESC_P:
            raise GuestFault(SS_FAULT, selector & 0xFFFC)
    else:
        if hi & DESC_CS and not hi & DESC_R:
            raise GuestFault(GP, selector & 0xFFFC)
        # data or non-conforming code: DPL >= max(CPL, RPL)
        if not (hi & DESC_CS and hi & (1 << 10)) and (dpl < cpl or dpl < rpl):
            raise GuestFault(GP, selector & 0xFFFC)
        if not hi & DESC_P:
            raise GuestFault(NP, selector & 0xFFFC)
    set_accessed(cpu, selector, hi)
    load_cache(cpu, seg, cache_from(selector, lo, hi | DESC_A))


def load_code_cache(cpu, selector: int, lo: int, hi: int, cpl: int) -> None:
    """Install CS with RPL = the new CPL (far transfers, interrupts, iret)."""
    selector = (selector & 0xFFFC) | cpl
    set_accessed(cpu, selector, hi)
    cpu.segs[CS] = cache_from(selector, lo, hi | DESC_A)


def check_code_descriptor(cpu, selector: int, lo: int, hi: int) -> None:
    if not hi & DESC_S or not hi & DESC_CS:
        raise GuestFault(GP, selector & 0xFFFC)
    if not hi & DESC_P:
        raise GuestFault(NP, selector & 0xFFFC)


__all__ = [
    "read_descriptor", "desc_base", "desc_limit", "cache_from", "load_cache", "load_seg",
    "load_code_cache", "check_code_descriptor", "sys_read", "sys_write", "DESC_B", "DESC_TYPE_SHIFT",
]
