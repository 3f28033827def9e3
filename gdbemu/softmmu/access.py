"""Load/store slow paths: everything the one-compare fast path in TB code sends here.

The steps are QEMU's (cputlb.c ``mmu_lookup`` -> ``mmu_watch_or_dirty`` ->
``notdirty_write`` -> the access):

1. ``lookup``: the fast table entry for the page, else the victim TLB, else a
   fill (``fill.py``: the CPU's page walk, which may raise #PF, then the
   page's classification).  An access that crosses a
   page looks up *both* pages before touching either, so a fault on the
   second page leaves memory unchanged (precise exceptions).
2. flags: TLB_WATCHPOINT -> the watchpoint check; TLB_NOTDIRTY (stores) ->
   ``notdirty_write`` (TB invalidation, dirty bits, drop the flag);
   TLB_DISCARD_WRITE -> drop the store; TLB_MMIO -> dispatch to the device.
3. the access itself on RAM, bytewise where it is unaligned.

``SoftMMU`` is per vCPU and bound into generated code as ``LD``/``ST`` per
mmu_idx (``loader(mmu_idx)`` / ``storer(mmu_idx)``).  It reaches the CPU, the
TB cache and the watchpoint checks only through the callables it is given at
construction (STYLE's layering rule: nothing here imports the core).
"""

from __future__ import annotations

from collections.abc import Callable

from .dirty import DIRTY_MEMORY_CODE, DirtyMemory
from .fill import FillHook, PageWalk, TLBFill
from .memory import PhysMemory
from .tlb import (
    ACCESS_EXEC,
    ACCESS_READ,
    ACCESS_WRITE,
    CPUTLB,
    INVALID_TAG,
    MMU_USER_IDX,
    PAGE_BITS,
    PAGE_MASK,
    PAGE_SIZE,
    TLB_DISCARD_WRITE,
    TLB_MASK,
    TLB_MMIO,
    TLB_NOTDIRTY,
    TLB_RECHECK,
    TLB_WATCHPOINT,
    TLBDesc,
)
from .watchpoint import WatchpointList

__all__ = ["ACCESS_EXEC", "ACCESS_READ", "ACCESS_WRITE", "SoftMMU"]


class SoftMMU:
    """One vCPU's load/store slow paths.

    Given at construction: the CPU's page walk (``fill.PageWalk``);
    ``invalidate_code(paddr, size)`` (the TB cache; may raise the core's
    SMCRestart); ``watch_check(vaddr, size, is_write)`` (the watchpoint
    check, which may raise InstructionRestart); ``alignment_fault()`` the
    #AC exception to raise for an unaligned user access, or None when
    CR0.AM/EFLAGS.AC do not enable it; ``on_fill`` the ``-d mmu`` hook;
    ``wide_address(vaddr, stack)`` for an address at or above 4 GiB: the
    address to use (long mode: canonical, 64 bits; else wrapped to 32 bits),
    or it raises the CPU's fault for a non-canonical one (#SS for a stack
    access, else #GP).  Addresses below 4 GiB never reach it.
    """

    def __init__(
        self,
        tlb: CPUTLB,
        mem: PhysMemory,
        dirty: DirtyMemory,
        watchpoints: WatchpointList,
        walk: PageWalk,
        invalidate_code: Callable[[int, int], None],
        watch_check: Callable[[int, int, bool], None],
        alignment_fault: Callable[[], BaseException | None],
        on_fill: FillHook | None = None,
        wide_address: Callable[[int, bool], int] | None = None,
    ) -> None:
        self.tlb = tlb
        self.mem = mem
        self.dirty = dirty
        self.filler = TLBFill(tlb, mem, dirty, watchpoints, walk, on_fill)
        self.invalidate_code = invalidate_code
        self.watch_check = watch_check
        self.alignment_fault = alignment_fault
        self.wide_address = wide_address if wide_address is not None else _wrap32
        self.stats = tlb.stats
        self._m16 = mem.m16
        self._m32 = mem.m32
        self._m64 = mem.m64

    def _ram_load(self, off: int, size: int) -> int:
        """An aligned read of RAM offset ``off`` (size 1, 2, 4 or 8): what a hit of the compare reads."""
        if size == 4:
            return self._m32[off >> 2]
        if size == 8:
            return self._m64[off >> 3]
        if size == 2:
            return self._m16[off >> 1]
        return self.mem.ram[off]

    def _ram_store(self, off: int, size: int, value: int) -> None:
        """An aligned write of RAM offset ``off``, ``value`` cut to ``size`` bytes."""
        if size == 4:
            self._m32[off >> 2] = value & 0xFFFFFFFF
        elif size == 2:
            self._m16[off >> 1] = value & 0xFFFF
        elif size == 8:
            self._m64[off >> 3] = value & 0xFFFFFFFFFFFFFFFF
        else:
            self.mem.ram[off] = value & 0xFF

    # ---- the fast path for helpers ----------------------------------------------
    # Descriptor-table reads, interrupt frames, TSS fields: the one compare of
    # generated code (an aligned access to an unflagged page whose entry is
    # present), then RAM; anything else goes through ``load``/``store``, which
    # fill, fault, check watchpoints and invalidate code exactly as before.
    def fast_load(self, mmu_idx: int, vaddr: int, size: int) -> int:
        """``load(mmu_idx, vaddr, size)`` with the inline TLB compare first (size 1, 2, 4 or 8)."""
        desc = self.tlb.d[mmu_idx]
        index = (vaddr >> PAGE_BITS) & TLB_MASK
        if desc.read[index] == vaddr & (PAGE_MASK | (size - 1)):
            return self._ram_load(vaddr + desc.addend[index], size)
        return self.load(mmu_idx, vaddr, size)

    def fast_store(self, mmu_idx: int, vaddr: int, size: int, value: int) -> None:
        """``store(mmu_idx, vaddr, size, value)`` with the inline TLB compare first."""
        desc = self.tlb.d[mmu_idx]
        index = (vaddr >> PAGE_BITS) & TLB_MASK
        if desc.write[index] == vaddr & (PAGE_MASK | (size - 1)):
            self._ram_store(vaddr + desc.addend[index], size, value)
            return
        self.store(mmu_idx, vaddr, size, value)

    def fast_page(self, mmu_idx: int, vaddr: int, length: int, access: int) -> int:
        """The RAM offset of ``vaddr`` when ``[vaddr, vaddr + length)`` lies in one page whose
        entry for ``access`` is present and unflagged (accesses there cannot fault, hit a
        watchpoint or touch code); -1 otherwise.  Looks up nothing and fills nothing."""
        if (vaddr & (PAGE_SIZE - 1)) + length > PAGE_SIZE:
            return -1
        desc = self.tlb.d[mmu_idx]
        index = (vaddr >> PAGE_BITS) & TLB_MASK
        tags = desc.write if access == ACCESS_WRITE else desc.read
        if tags[index] == vaddr & PAGE_MASK:
            return vaddr + desc.addend[index]
        return -1

    def fill(self, vaddr: int, access: int, mmu_idx: int) -> int:
        """Walk and install ``vaddr``'s page (``fill.TLBFill.fill``); return the slot, or raise #PF."""
        return self.filler.fill(vaddr, access, mmu_idx)

    # ---- step 1: lookup -------------------------------------------------------
    def lookup(self, mmu_idx: int, vaddr: int, access: int) -> int:
        """Return the fast-table slot holding ``vaddr``'s page for ``access``; fill if needed."""
        desc = self.tlb.d[mmu_idx]
        index = (vaddr >> PAGE_BITS) & TLB_MASK
        tags = desc.write if access == ACCESS_WRITE else desc.read if access == ACCESS_READ else desc.code
        page = vaddr & PAGE_MASK
        tag = tags[index]
        if tag != INVALID_TAG and tag & PAGE_MASK == page:
            if not tag & TLB_RECHECK or self._recheck(desc, index):
                self.stats.slow_hits += 1
                return index
        self.stats.misses += 1
        if self.tlb.victim_hit(mmu_idx, vaddr):
            tag = tags[index]
            if tag != INVALID_TAG and tag & PAGE_MASK == page:
                if not tag & TLB_RECHECK or self._recheck(desc, index):
                    return index
        return self.fill(vaddr, access, mmu_idx)

    def _recheck(self, desc: TLBDesc, index: int) -> bool:
        """An entry brought back with its address space (tlb.py, "Address spaces"): are the
        page-table words its walk read still in memory as they were?  Yes: use it.  No: drop it."""
        deps = desc.deps[index]
        if deps is not None:
            shift = deps[0]
            view = self._m32 if shift == 2 else self._m64
            if len(deps) == 5:  # the usual two levels, unrolled
                ok = view[deps[1] >> shift] == deps[2] and view[deps[3] >> shift] == deps[4]
            else:
                ok = all(view[deps[k] >> shift] == deps[k + 1] for k in range(1, len(deps), 2))
            if ok:
                # (CPUTLB.recheck_passed, inline: this runs once per entry and address-space switch)
                if desc.read[index] != INVALID_TAG:
                    desc.read[index] &= ~TLB_RECHECK
                if desc.write[index] != INVALID_TAG:
                    desc.write[index] &= ~TLB_RECHECK
                if desc.code[index] != INVALID_TAG:
                    desc.code[index] &= ~TLB_RECHECK
                if desc.size[index] > PAGE_SIZE:
                    self.tlb.recheck_passed(desc, index)  # the large-page range
                return True
        self.tlb.recheck_failed(desc, index)
        return False

    # ---- loads ----------------------------------------------------------------
    def load(self, mmu_idx: int, vaddr: int, size: int, stack: bool = False) -> int:
        desc = self.tlb.d[mmu_idx]
        index = (vaddr >> PAGE_BITS) & TLB_MASK
        if desc.read[index] == vaddr & (PAGE_MASK | (size - 1)) | TLB_RECHECK and self._recheck(desc, index):
            # The first use of an entry brought back with its address space (an aligned access
            # to an unflagged page): checked, it is what the fast path would have used.
            self.stats.slow_hits += 1
            return self._ram_load(vaddr + desc.addend[index], size)
        if vaddr >> 32:
            vaddr = self.wide_address(vaddr, stack)
        if vaddr & (size - 1) and mmu_idx == MMU_USER_IDX:
            self._alignment_check(vaddr, size, ACCESS_READ)
        off = vaddr & (PAGE_SIZE - 1)
        if off + size > PAGE_SIZE:
            self.stats.page_cross += 1
            n1 = PAGE_SIZE - off
            # Look both pages up before reading (a fault on the second is precise).
            v2 = vaddr + n1
            if v2 >> 32:
                v2 = self.wide_address(v2, stack)
            self.lookup(mmu_idx, vaddr, ACCESS_READ)
            self.lookup(mmu_idx, v2, ACCESS_READ)
            lo = self._load_one(mmu_idx, vaddr, n1)
            hi = self._load_one(mmu_idx, v2, size - n1)
            return lo | (hi << (8 * n1))
        return self._load_one(mmu_idx, vaddr, size)

    def _load_one(self, mmu_idx: int, vaddr: int, size: int) -> int:
        index = self.lookup(mmu_idx, vaddr, ACCESS_READ)
        desc = self.tlb.d[mmu_idx]
        tag = desc.read[index]
        if tag & TLB_WATCHPOINT:
            self.stats.watch_checks += 1
            self.watch_check(vaddr, size, False)
        if tag & TLB_MMIO:
            self.stats.mmio += 1
            return self.mem.read_phys(desc.paddr[index] | (vaddr & 0xFFF), size)
        if vaddr & (size - 1):
            self.stats.unaligned += 1
        ram_offset = vaddr + desc.addend[index]
        return int.from_bytes(self.mem.ram[ram_offset : ram_offset + size], "little")

    # ---- stores ---------------------------------------------------------------
    def store(self, mmu_idx: int, vaddr: int, size: int, value: int, stack: bool = False) -> None:
        desc = self.tlb.d[mmu_idx]
        index = (vaddr >> PAGE_BITS) & TLB_MASK
        if desc.write[index] == vaddr & (PAGE_MASK | (size - 1)) | TLB_RECHECK and self._recheck(desc, index):
            self.stats.slow_hits += 1  # (as in ``load``)
            self._ram_store(vaddr + desc.addend[index], size, value)
            return
        if vaddr >> 32:
            vaddr = self.wide_address(vaddr, stack)
        if vaddr & (size - 1) and mmu_idx == MMU_USER_IDX:
            self._alignment_check(vaddr, size, ACCESS_WRITE)
        off = vaddr & (PAGE_SIZE - 1)
        if off + size > PAGE_SIZE:
            self.stats.page_cross += 1
            n1 = PAGE_SIZE - off
            v2 = vaddr + n1
            if v2 >> 32:
                v2 = self.wide_address(v2, stack)
            self.lookup(mmu_idx, vaddr, ACCESS_WRITE)
            self.lookup(mmu_idx, v2, ACCESS_WRITE)
            # The first lookup may have been evicted by the second (same slot):
            # _store_one looks up again, which cannot fault any more.
            self._store_one(mmu_idx, vaddr, n1, value & ((1 << (8 * n1)) - 1))
            self._store_one(mmu_idx, v2, size - n1, value >> (8 * n1))
            return
        self._store_one(mmu_idx, vaddr, size, value)

    def _store_one(self, mmu_idx: int, vaddr: int, size: int, value: int) -> None:
        index = self.lookup(mmu_idx, vaddr, ACCESS_WRITE)
        desc = self.tlb.d[mmu_idx]
        tag = desc.write[index]
        paddr = desc.paddr[index] | (vaddr & 0xFFF)
        if tag & TLB_WATCHPOINT:
            self.stats.watch_checks += 1
            self.watch_check(vaddr, size, True)
        if tag & TLB_MMIO:
            self.stats.mmio += 1
            self.mem.write_phys(paddr, size, value)
            return
        if tag & TLB_DISCARD_WRITE:
            return
        ram_offset = vaddr + desc.addend[index]
        data = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
        if tag & TLB_NOTDIRTY:
            self.notdirty_write(paddr, size, vaddr, self.mem.ram[ram_offset : ram_offset + size] == data)
        if vaddr & (size - 1):
            self.stats.unaligned += 1
        self.mem.ram[ram_offset : ram_offset + size] = data

    def _alignment_check(self, vaddr: int, size: int, access: int) -> None:
        """#AC(0) for an unaligned user-mode access when CR0.AM and EFLAGS.AC are set.

        SDM vol. 3, 6.15 (interrupt 17): only at CPL 3 (the user mmu_idx),
        only data and stack accesses (implicit supervisor accesses use the
        kernel mmu_idx).  An access that also page-faults reports #PF, which
        has the higher priority (SDM vol. 3, table 6-2), so both pages are
        looked up first.  User-mode TBs have no inline path for unaligned
        accesses (core/emit.py: kernel TBs take one inside a page), so this
        slow-path check sees all of them.
        """
        fault = self.alignment_fault()
        if fault is None:
            return
        self.lookup(MMU_USER_IDX, vaddr, access)
        last = vaddr + size - 1
        self.lookup(MMU_USER_IDX, self.wide_address(last, False) if last >> 32 else last, access)
        raise fault

    def notdirty_write(self, paddr: int, size: int, vaddr: int, same: bool = False) -> None:
        """A store to a page that holds code or is clean for a client (QEMU's notdirty_write).

        Invalidate the TBs the store overlaps (this raises SMCRestart, before
        the store, when the running TB is one of them), mark the page dirty,
        and drop TLB_NOTDIRTY once no client needs to see the next store.
        ``same``: the store leaves the bytes it covers as they are, so no
        translation can go stale and nothing is invalidated.
        """
        self.stats.notdirty_writes += 1
        page_number = paddr >> PAGE_BITS
        dirty = self.dirty
        if not same and not dirty.get_dirty(DIRTY_MEMORY_CODE, page_number):
            self.invalidate_code(paddr, size)
        dirty.set_dirty_range(paddr, size, clients=0b101)  # VGA and MIGRATION; CODE via unprotect
        if not dirty.is_clean(page_number):
            self.tlb.set_dirty(vaddr)

    # ---- bindings for generated code ------------------------------------------
    def loader(self, mmu_idx: int, stack: bool = False) -> Callable[[int, int], int]:
        load = self.load

        def LD(vaddr: int, size: int) -> int:  # noqa: N802 - the name generated code uses
            return load(mmu_idx, vaddr, size, stack)

        return LD

    def storer(self, mmu_idx: int, stack: bool = False) -> Callable[[int, int, int], None]:
        store = self.store

        def ST(vaddr: int, size: int, value: int) -> None:  # noqa: N802
            store(mmu_idx, vaddr, size, value, stack)

        return ST

    # ---- code fetch -----------------------------------------------------------
    def code_paddr(self, mmu_idx: int, vaddr: int) -> int:
        """Physical address of an instruction byte, filling the TLB for execute (may #PF, #GP)."""
        if vaddr >> 32:
            vaddr = self.wide_address(vaddr, False)
        desc = self.tlb.d[mmu_idx]
        index = (vaddr >> PAGE_BITS) & TLB_MASK
        tag = desc.code[index]
        if tag != vaddr & PAGE_MASK:  # (an unflagged entry needs no more)
            if tag == vaddr & PAGE_MASK | TLB_RECHECK and self._recheck(desc, index):
                self.stats.slow_hits += 1  # (as in ``load``)
            else:
                index = self.lookup(mmu_idx, vaddr, ACCESS_EXEC)
        return desc.paddr[index] | (vaddr & 0xFFF)


def _wrap32(vaddr: int, stack: bool) -> int:
    """The default ``wide_address``: a 32-bit CPU's addresses wrap at 4 GiB."""
    return vaddr & 0xFFFFFFFF
