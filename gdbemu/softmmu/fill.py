"""A TLB fill: the CPU's page walk, then the page's classification, in one place.

QEMU's ``tlb_fill`` -> ``tlb_set_page_full``.  ``TLBFill.fill`` asks the
CPU's page walk (a callable given at construction: the softmmu knows no x86)
where ``vaddr`` maps; the walk may raise the CPU's page fault, which passes
through untouched.  ``set_page_full`` then decides the entry's flags once
(STYLE practice 6), from three sources and nowhere else:

* the memory map (``PhysMemory.classify``): RAM gets an addend and clean
  tags, ROM ``TLB_DISCARD_WRITE`` on the write tag, a device or an unassigned
  frame ``TLB_MMIO`` on both;
* the CODE dirty bitmap: a RAM frame that holds translated code (clean for
  the CODE client) gets ``TLB_NOTDIRTY`` on the write tag, so a store to it
  goes through ``notdirty_write`` and invalidates the TBs it touches;
* the watchpoint registry: a virtual page a watchpoint overlaps gets
  ``TLB_WATCHPOINT`` on the tags of the access kinds it watches.

After the fill (or the walk's fault) the ``on_fill`` hook, if any, sees it
(``-d mmu``).
"""

from __future__ import annotations

from collections.abc import Callable

from .dirty import DirtyMemory
from .memory import PhysMemory
from .tlb import CPUTLB, PAGE_BITS, PAGE_MASK, PAGE_SIZE, TLB_NOTDIRTY, TLB_WATCHPOINT
from .watchpoint import WatchpointList

# (vaddr, access, mmu_idx) -> (paddr, prot, page size, the page-table words read or None);
# raises the CPU's fault.  The words let the TLB keep the entry across CR3 writes (tlb.py).
PageWalk = Callable[[int, int, int], tuple[int, int, int, tuple[int, ...] | None]]
# (vaddr, access, mmu_idx, paddr or None, the walk's exception or None)
FillHook = Callable[[int, int, int, int | None, BaseException | None], None]


class TLBFill:
    """Refills one vCPU's TLB (per vCPU, as its page walk reads that CPU's CR3)."""

    def __init__(
        self,
        tlb: CPUTLB,
        mem: PhysMemory,
        dirty: DirtyMemory,
        watchpoints: WatchpointList,
        walk: PageWalk,
        on_fill: FillHook | None = None,
    ) -> None:
        self.tlb = tlb
        self.mem = mem
        self.dirty = dirty
        self.watchpoints = watchpoints
        self.walk = walk
        self.on_fill = on_fill

    def fill(self, vaddr: int, access: int, mmu_idx: int) -> int:
        """Walk and install ``vaddr``'s page for ``access``; return the TLB slot (tlb_fill)."""
        hook = self.on_fill
        if hook is None:
            paddr, prot, size, deps = self.walk(vaddr, access, mmu_idx)
            return self.set_page_full(mmu_idx, vaddr, paddr, prot, size, deps)
        try:
            paddr, prot, size, deps = self.walk(vaddr, access, mmu_idx)
        except Exception as fault:
            hook(vaddr, access, mmu_idx, None, fault)
            raise
        index = self.set_page_full(mmu_idx, vaddr, paddr, prot, size, deps)
        hook(vaddr, access, mmu_idx, paddr, None)
        return index

    def set_page_full(
        self,
        mmu_idx: int,
        vaddr: int,
        paddr: int,
        prot: int,
        size: int = PAGE_SIZE,
        deps: tuple[int, ...] | None = None,
    ) -> int:
        """Classify the page and write the entry (QEMU's tlb_set_page_full); return the slot."""
        ppage = paddr & PAGE_MASK
        ram_offset, read_flags, write_flags = self.mem.classify(ppage)
        if ram_offset is not None and not write_flags and self.dirty.is_clean(ppage >> PAGE_BITS):
            write_flags |= TLB_NOTDIRTY
        read_watch, write_watch = self.watchpoints.page_flags(vaddr & PAGE_MASK)
        if read_watch:
            read_flags |= TLB_WATCHPOINT
        if write_watch:
            write_flags |= TLB_WATCHPOINT
        return self.tlb.set_page(mmu_idx, vaddr, ppage, prot, size, ram_offset, read_flags, write_flags, deps)
