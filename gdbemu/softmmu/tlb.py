"""The software TLB (QEMU's cputlb.c, reduced to what a Python TB needs).

Theory of operation
-------------------
Each mmu_idx (user, kernel, kernel with SMAP) has a direct-mapped table of
``TLB_SIZE`` entries plus an ``VICTIM_SIZE``-entry fully associative victim TLB.
An entry is stored column-wise in parallel Python lists so generated TB code can
bind them once and index them with one subscript each:

``read[i]``, ``write[i]``, ``code[i]``
    the *tag* words: the page address of the virtual page, with flag bits in
    the low (page offset) bits.  ``-1`` means invalid (it matches nothing).
``addend[i]``
    ``ram_offset - vaddr_page``: a guest virtual address plus the addend is the
    index into guest RAM.

The fast path is one compare (DESIGN.md, invariant 1)::

    index = (vaddr >> 12) & TLB_MASK
    if read[index] == vaddr & align_mask(size):   # page bits + low alignment bits
        value = RAM[vaddr + addend[index]]

``align_mask(size)`` keeps the page number and the low ``log2(size)`` bits of
the address, so an unaligned access fails the compare (the tag's low bits are
zero), and so does any page whose tag carries a flag.  Generated code for
kernel mmu_idxs then tries ``read[index] == (vaddr + size - 1) & PAGE_MASK``:
equal only for an unflagged entry when the access ends in the same page (the
next page's entry cannot sit in this slot), read/written unaligned through
``struct`` on RAM (core/emit.py); user code keeps the slow path for #AC.
Flags are therefore *exactly* the reasons an access must leave the fast path:

``TLB_INVALID``     entry holds nothing (tag is -1, all bits set)
``TLB_NOTDIRTY``    write: the frame holds translated code (or is clean for a
                    dirty-logging client); the store must go through
                    ``dirty.notdirty_write`` to invalidate TBs and set dirty bits
``TLB_MMIO``        the frame is a device, or unassigned; dispatch through memory
``TLB_WATCHPOINT``  a watchpoint overlaps this page for this access kind
``TLB_DISCARD_WRITE`` write: ROM, the store is dropped
``TLB_RECHECK``     the entry came back with its address space (below): the
                    page-table words it was made from must be compared with
                    memory before its first use

All flags live in bits 3..11 (above the alignment bits of an 8-byte access) and
are checked disjoint at import time.  A page without flags costs nothing extra;
a watchpoint on page A never slows page B.

Large pages (4 MiB PSE) are entered as 4 KiB entries; the range they cover is
remembered in ``large_page_addr/mask`` so that flushing any page inside one
flushes the whole mmu_idx (the seed notes: QEMU does not index large pages).

Address spaces (``switch_context``)
-----------------------------------
A CR3 write flushes the TLB, and a multitasking guest switching between a few
address spaces would refill the same entries after every switch.  So each
address space (keyed by its CR3 value) keeps its own tables: a CR3 write puts
the live ones aside and installs the new space's (the CPU rebinds the names
generated code uses, ``on_switch``), every entry in them tagged
``TLB_RECHECK``.  Every entry carries the page-table words its walk read
(``deps``: their physical addresses and values, A/D bits included, as
``mmu.walk_deps`` left them).  The first lookup of a TLB_RECHECK entry (the
slow path: the flag fails the one compare) compares those words with memory:
all equal, a new walk would give the very same entry and write nothing, so
the flag is dropped (``recheck_passed``); any different, the entry is dropped
and the walk runs as after a flush.  The guest sees what a flush gives it:
nothing is used unchecked, an unchecked entry never enters the victim TLB
(which starts empty, or with the global entries under CR4.PGE, at the ring
position a flush would leave), and the large-page range is the flush's,
widened again as entries are rechecked.  Entries put aside stay in step:
``protect_code`` sets TLB_NOTDIRTY in them too, ``flush_page`` and
``flush_range`` drop theirs in the range, and any other flush (paging mode,
memory map, snapshots) forgets every address space put aside.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

PAGE_BITS = 12
PAGE_SIZE = 1 << PAGE_BITS
PAGE_MASK = -PAGE_SIZE  # addr & PAGE_MASK == page address, for any width

TLB_BITS = 8
TLB_SIZE = 1 << TLB_BITS
TLB_MASK = TLB_SIZE - 1
VICTIM_SIZE = 8

# ---- the flag bits: defined here and nowhere else ---------------------------
TLB_INVALID = 1 << 11
TLB_NOTDIRTY = 1 << 10
TLB_MMIO = 1 << 9
TLB_WATCHPOINT = 1 << 8
TLB_DISCARD_WRITE = 1 << 7
TLB_RECHECK = 1 << 6  # restored with its address space: check its page-table words before use

TLB_FLAGS_MASK = TLB_INVALID | TLB_NOTDIRTY | TLB_MMIO | TLB_WATCHPOINT | TLB_DISCARD_WRITE | TLB_RECHECK
ALIGN_BITS_MASK = 0x7  # low bits compared for alignment (accesses up to 8 bytes)

INVALID_TAG = -1

NB_MMU_MODES = 3
MMU_USER_IDX = 0
MMU_KNOSMAP_IDX = 1  # kernel, SMAP off or EFLAGS.AC set
MMU_KSMAP_IDX = 2  # kernel with SMAP enforced

# Page protection bits given to tlb_set_page.
PAGE_READ = 1
PAGE_WRITE = 2
PAGE_EXEC = 4
PAGE_GLOBAL = 8  # kept in the entry's prot so a CR3 write spares it (flush_nonglobal)

# Access kinds of a lookup or fill (QEMU's MMUAccessType), defined here only.
ACCESS_READ, ACCESS_WRITE, ACCESS_EXEC = 0, 1, 2


class TLBFlagsError(RuntimeError):
    """The flag layout breaks the one-compare rule; raised at import time."""


def _check_flags(flags: list[int] | None = None) -> None:
    """The checks C would do at compile time (QEMU's tlb-flags.h QEMU_BUILD_BUG_ON).

    Raises (not asserts), so ``python -O`` cannot switch the check off.
    """
    if flags is None:
        flags = [TLB_INVALID, TLB_NOTDIRTY, TLB_MMIO, TLB_WATCHPOINT, TLB_DISCARD_WRITE, TLB_RECHECK]
    seen = 0
    for flag in flags:
        if flag <= 0 or flag & (flag - 1):
            raise TLBFlagsError(f"TLB flag {flag:#x} must be a single bit")
        if seen & flag:
            raise TLBFlagsError(f"TLB flag {flag:#x} overlaps another flag")
        seen |= flag
    if seen & ALIGN_BITS_MASK:
        raise TLBFlagsError("TLB flags overlap the alignment bits")
    if seen >= PAGE_SIZE:
        raise TLBFlagsError("TLB flags must live in the page offset")


_check_flags()


def align_mask(size: int) -> int:
    """The mask applied to a vaddr before comparing it with a tag.

    Keeps the page number and the low bits that must be zero for an aligned
    access of ``size`` bytes, so misalignment and flags both miss the compare.
    """
    return PAGE_MASK | (size - 1)


@dataclass
class TLBStats:
    """Counters for every path that leaves the fast path (STYLE practice 10)."""

    slow_hits: int = 0  # slow path found a valid entry (flagged page or unaligned)
    misses: int = 0
    victim_hits: int = 0
    fills: int = 0
    flush_full: int = 0
    flush_page: int = 0
    flush_elided: int = 0  # a page flush that found nothing to drop
    flush_large: int = 0  # a page flush that hit a large page and flushed the mmu_idx
    notdirty_writes: int = 0
    watch_checks: int = 0
    mmio: int = 0
    page_cross: int = 0
    unaligned: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class TLBDesc:
    """One mmu_idx of one address space: the fast table, the victim TLB, and large-page bookkeeping."""

    read: list[int] = field(default_factory=lambda: [INVALID_TAG] * TLB_SIZE)
    write: list[int] = field(default_factory=lambda: [INVALID_TAG] * TLB_SIZE)
    code: list[int] = field(default_factory=lambda: [INVALID_TAG] * TLB_SIZE)
    addend: list[int] = field(default_factory=lambda: [0] * TLB_SIZE)
    # The "full" part (QEMU's CPUTLBEntryFull): guest-physical page and prot.
    paddr: list[int] = field(default_factory=lambda: [-1] * TLB_SIZE)
    prot: list[int] = field(default_factory=lambda: [0] * TLB_SIZE)
    vpage: list[int] = field(default_factory=lambda: [-1] * TLB_SIZE)
    # The page-table words the entry's walk read (module docstring), or None; the page's size.
    deps: list[tuple[int, ...] | None] = field(default_factory=lambda: [None] * TLB_SIZE)
    size: list[int] = field(default_factory=lambda: [PAGE_SIZE] * TLB_SIZE)
    # victim TLB, same columns
    v_read: list[int] = field(default_factory=lambda: [INVALID_TAG] * VICTIM_SIZE)
    v_write: list[int] = field(default_factory=lambda: [INVALID_TAG] * VICTIM_SIZE)
    v_code: list[int] = field(default_factory=lambda: [INVALID_TAG] * VICTIM_SIZE)
    v_addend: list[int] = field(default_factory=lambda: [0] * VICTIM_SIZE)
    v_paddr: list[int] = field(default_factory=lambda: [-1] * VICTIM_SIZE)
    v_prot: list[int] = field(default_factory=lambda: [0] * VICTIM_SIZE)
    v_vpage: list[int] = field(default_factory=lambda: [-1] * VICTIM_SIZE)
    v_deps: list[tuple[int, ...] | None] = field(default_factory=lambda: [None] * VICTIM_SIZE)
    v_size: list[int] = field(default_factory=lambda: [PAGE_SIZE] * VICTIM_SIZE)
    v_next: int = 0
    large_page_addr: int = -1
    large_page_mask: int = -1
    n_used: int = 0  # fills since the last full flush (for elision)
    # Fast-table slots written since the last full flush, with repeats, at most
    # SPARSE_FLUSH + 1 of them (past SPARSE_FLUSH: "any slot"): a superset of
    # the occupied slots, so a flush or an address-space switch visits only these.
    used: list[int] = field(default_factory=list)


MAX_CONTEXTS = 16  # address spaces kept aside (the least recently left goes first)
SPARSE_FLUSH = 48  # up to this many used slots, a flush invalidates them one by one

_INVALID_FAST = [INVALID_TAG] * TLB_SIZE
_INVALID_VICTIM = [INVALID_TAG] * VICTIM_SIZE
_NO_DEPS_VICTIM: list[tuple[int, ...] | None] = [None] * VICTIM_SIZE


def _victim_columns(fast: TLBDesc, victim: TLBDesc) -> tuple[tuple[list[Any], list[Any]], ...]:
    """Each column of ``fast``'s table beside the same column of ``victim``'s victim TLB."""
    return (
        (fast.read, victim.v_read),
        (fast.write, victim.v_write),
        (fast.code, victim.v_code),
        (fast.addend, victim.v_addend),
        (fast.paddr, victim.v_paddr),
        (fast.prot, victim.v_prot),
        (fast.vpage, victim.v_vpage),
        (fast.deps, victim.v_deps),
        (fast.size, victim.v_size),
    )


def _used_slots(desc: TLBDesc) -> Iterable[int]:
    """The slots that may hold an entry: the noted ones, or every slot once too many were."""
    used = desc.used
    return used if len(used) <= SPARSE_FLUSH else range(TLB_SIZE)


def _clear_victims(desc: TLBDesc) -> None:
    desc.v_read[:] = _INVALID_VICTIM
    desc.v_write[:] = _INVALID_VICTIM
    desc.v_code[:] = _INVALID_VICTIM
    desc.v_vpage[:] = _INVALID_VICTIM
    desc.v_paddr[:] = _INVALID_VICTIM
    desc.v_deps[:] = _NO_DEPS_VICTIM


def _unchecked(desc: TLBDesc, index: int) -> bool:
    """Does the slot hold an entry waiting for its recheck (TLB_RECHECK on any valid tag)?"""
    return any(t != INVALID_TAG and t & TLB_RECHECK for t in (desc.read[index], desc.write[index], desc.code[index]))


def _v_unchecked(desc: TLBDesc, v: int) -> bool:
    """``_unchecked`` for victim slot ``v``."""
    return any(t != INVALID_TAG and t & TLB_RECHECK for t in (desc.v_read[v], desc.v_write[v], desc.v_code[v]))


class CPUTLB:
    """All mmu_idx tables of one vCPU, and the address spaces put aside.

    ``d[mmu_idx]`` is the live table; its lists are mutated in place by
    fills and flushes.  Generated code reaches them through the names
    ``RT``/``WT``/``AD`` of its namespace, which the CPU rebinds when an
    address-space switch installs other tables (``on_switch``).  The page's
    flags are decided by the fill (``softmmu/fill.py``) and given to
    ``set_page``, which only writes the entry.
    """

    def __init__(self) -> None:
        self.d = [TLBDesc() for _ in range(NB_MMU_MODES)]
        self.stats = TLBStats()
        # Called after any flush with the page flushed (None: all): the CPU drops its jump cache.
        self.on_flush: list[Callable[[int | None], None]] = []
        # Called after ``switch_context`` installed other tables in ``d``: the CPU rebinds RT/WT/AD.
        self.on_switch: list[Callable[[], None]] = []
        # Address spaces put aside by ``switch_context``: key (CR3) -> their tables, one per mmu_idx.
        self.contexts: dict[int, list[TLBDesc]] = {}
        self._spare: list[list[TLBDesc]] = []  # emptied tables for new address spaces

    # ---- fill ---------------------------------------------------------------
    def set_page(
        self,
        mmu_idx: int,
        vaddr: int,
        paddr: int,
        prot: int,
        size: int = PAGE_SIZE,
        ram_offset: int | None = None,
        read_flags: int = 0,
        write_flags: int = 0,
        deps: tuple[int, ...] | None = None,
    ) -> int:
        """Write one entry, its page already classified by the fill; return the slot.

        ``ram_offset``: where the frame is in RAM (None: not RAM, no addend);
        ``read_flags``/``write_flags``: the TLB flags of the read and write
        tags (the code tag keeps only TLB_MMIO of the read flags); ``deps``:
        the page-table words the walk read (module docstring), None when
        there are none (paging off) or they are not known.
        """
        desc = self.d[mmu_idx]
        vpage = vaddr & PAGE_MASK
        ppage = paddr & PAGE_MASK
        if size > PAGE_SIZE:
            self._add_large_page(desc, vaddr, size)
        index = (vpage >> PAGE_BITS) & TLB_MASK
        # Evict the old occupant to the victim TLB (QEMU: only when it maps
        # another page; a refill of the same page just overwrites).  An entry
        # still waiting for its recheck is dropped: after a flush it would not be there.
        old = desc.vpage[index]
        if old != -1 and old != vpage and not _unchecked(desc, index):
            self._to_victim(desc, index)
        desc.read[index] = (vpage | read_flags) if prot & PAGE_READ else INVALID_TAG
        desc.write[index] = (vpage | write_flags) if prot & PAGE_WRITE else INVALID_TAG
        desc.code[index] = (vpage | (read_flags & TLB_MMIO)) if prot & PAGE_EXEC else INVALID_TAG
        desc.addend[index] = (ram_offset - vpage) if ram_offset is not None else 0
        desc.paddr[index] = ppage
        desc.prot[index] = prot
        desc.vpage[index] = vpage
        desc.deps[index] = deps
        desc.size[index] = size
        used = desc.used
        if len(used) <= SPARSE_FLUSH:
            used.append(index)
        desc.n_used += 1
        self.stats.fills += 1
        return index

    def _to_victim(self, desc: TLBDesc, index: int) -> None:
        v = desc.v_next
        desc.v_next = (v + 1) % VICTIM_SIZE
        desc.v_read[v] = desc.read[index]
        desc.v_write[v] = desc.write[index]
        desc.v_code[v] = desc.code[index]
        desc.v_addend[v] = desc.addend[index]
        desc.v_paddr[v] = desc.paddr[index]
        desc.v_prot[v] = desc.prot[index]
        desc.v_vpage[v] = desc.vpage[index]
        desc.v_deps[v] = desc.deps[index]
        desc.v_size[v] = desc.size[index]

    def victim_hit(self, mmu_idx: int, vaddr: int) -> bool:
        """Swap a victim entry for ``vaddr``'s page into the fast table (QEMU's victim_tlb_hit).

        An unchecked entry (TLB_RECHECK) stands for a fill the lookup is about
        to check: it moves in as that fill would (the occupant goes to the
        victim ring, or away if itself unchecked) and leaves its victim slot empty.
        """
        desc = self.d[mmu_idx]
        vpage = vaddr & PAGE_MASK
        if vpage not in desc.v_vpage:
            return False
        v = desc.v_vpage.index(vpage)
        index = (vpage >> PAGE_BITS) & TLB_MASK
        cols = _victim_columns(desc, desc)
        if _v_unchecked(desc, v):
            entry = [victim[v] for _, victim in cols]
            desc.v_read[v] = desc.v_write[v] = desc.v_code[v] = INVALID_TAG
            desc.v_vpage[v] = desc.v_paddr[v] = -1
            desc.v_deps[v] = None
            if desc.vpage[index] != -1:
                if _unchecked(desc, index):
                    self._invalidate_slot(desc, index)
                else:
                    self._to_victim(desc, index)
            for (fast, _), value in zip(cols, entry, strict=True):
                fast[index] = value
        else:
            if desc.vpage[index] != -1 and _unchecked(desc, index):
                self._invalidate_slot(desc, index)  # unchecked: it does not go to the victim TLB
            for fast, victim in cols:
                fast[index], victim[v] = victim[v], fast[index]
        if len(desc.used) <= SPARSE_FLUSH:
            desc.used.append(index)
        self.stats.victim_hits += 1
        return True

    def _add_large_page(self, desc: TLBDesc, vaddr: int, size: int) -> None:
        """Widen the remembered large-page range to cover this one (tlb_add_large_page)."""
        lp_mask = -size
        if desc.large_page_addr != -1:
            # Grow the mask until both the old range and the new page fit.
            lp_mask &= desc.large_page_mask
            while (desc.large_page_addr ^ vaddr) & lp_mask:
                lp_mask <<= 1
        desc.large_page_addr = vaddr & lp_mask
        desc.large_page_mask = lp_mask

    # ---- address spaces -------------------------------------------------------
    def switch_context(self, old_key: int, new_key: int, keep_global: bool) -> None:
        """A CR3 write: the TLB the guest sees afterwards is what ``flush`` (``flush_nonglobal``
        when ``keep_global``) leaves, but the tables are kept (module docstring).

        The live tables are put aside under ``old_key``; the ones put aside
        under ``new_key`` (or empty ones) become live, every entry in them
        tagged TLB_RECHECK, with the global entries of the old tables copied
        over when ``keep_global``, and the victim ring position carried on.
        """
        contexts = self.contexts
        old = self.d
        if old_key == new_key:
            new = old  # the same address space again: only the recheck tags and the flush's victims
        else:
            back = contexts.pop(new_key, None)
            new = back if back is not None else self._empty_tables()
            contexts.pop(old_key, None)
            if len(contexts) >= MAX_CONTEXTS:
                evicted = contexts.pop(next(iter(contexts)))
                for desc in evicted:
                    self._flush_one(desc)
                self._spare.append(evicted)
            contexts[old_key] = old
        for mmu_idx in range(NB_MMU_MODES):
            self._enter(new[mmu_idx], old[mmu_idx], keep_global)
        self.stats.flush_full += 1
        if new is not old:
            self.d = new
            for switched in self.on_switch:
                switched()
        for fn in self.on_flush:
            fn(None)

    def _empty_tables(self) -> list[TLBDesc]:
        if self._spare:
            return self._spare.pop()
        return [TLBDesc() for _ in range(NB_MMU_MODES)]

    def _enter(self, new: TLBDesc, old: TLBDesc, keep_global: bool) -> None:
        """Make ``new`` what a flush of ``old`` would leave, plus ``new``'s own entries unchecked."""
        if not keep_global and not new.used and new.v_vpage == _INVALID_VICTIM:
            # Nothing of its own and no global entry to bring over (an mmu_idx the space never
            # used): what the code below would leave.
            new.v_next = old.v_next
            new.large_page_addr = new.large_page_mask = -1
            return
        read, write, code, vpages, prot = new.read, new.write, new.code, new.vpage, new.prot
        same = new is old
        # The slots that may hold an entry (``used`` repeats slots and only grows between
        # flushes: compacted now and then; a slot tagged twice is tagged the same).
        used = new.used
        if len(used) > 24:
            used[:] = [i for i in (set(used) if len(used) <= SPARSE_FLUSH else range(TLB_SIZE)) if vpages[i] != -1]
        for i in used:
            if vpages[i] == -1:
                continue
            if prot[i] & PAGE_GLOBAL:
                if keep_global and same:
                    continue  # a live global entry stays as it is
                # Global entries come from the old tables (below), or go with the flush.
                self._invalidate_slot(new, i)
                continue
            if new.deps[i] is None:
                self._invalidate_slot(new, i)  # without its words it cannot be checked
                continue
            r, w, c = read[i], write[i], code[i]
            if r != INVALID_TAG:
                read[i] = r | TLB_RECHECK
            if w != INVALID_TAG:
                write[i] = w | TLB_RECHECK
            if c != INVALID_TAG:
                code[i] = c | TLB_RECHECK
        # Victims: the new space's own come back unchecked (where a flush leaves the slot empty),
        # the old space's global ones stay under CR4.PGE (a flush keeps them).
        v_read, v_write, v_code = new.v_read, new.v_write, new.v_code
        for v in range(VICTIM_SIZE) if new.v_vpage != _INVALID_VICTIM else ():
            if new.v_vpage[v] == -1:
                continue
            if new.v_prot[v] & PAGE_GLOBAL and keep_global and same:
                continue
            if new.v_prot[v] & PAGE_GLOBAL or new.v_deps[v] is None:
                v_read[v] = v_write[v] = v_code[v] = INVALID_TAG
                new.v_vpage[v] = new.v_paddr[v] = -1
                new.v_deps[v] = None
                continue
            if v_read[v] != INVALID_TAG:
                v_read[v] |= TLB_RECHECK
            if v_write[v] != INVALID_TAG:
                v_write[v] |= TLB_RECHECK
            if v_code[v] != INVALID_TAG:
                v_code[v] |= TLB_RECHECK
        kept_global = False
        if keep_global and (old.used or old.v_vpage != _INVALID_VICTIM):
            for i in list(_used_slots(old)):
                if old.vpage[i] != -1 and old.prot[i] & PAGE_GLOBAL:
                    kept_global = True
                    if not same:
                        self._copy_slot(old, i, new)
                        self._drop_unchecked_victim(new, old.vpage[i])
            for v in range(VICTIM_SIZE):
                if old.v_vpage[v] != -1 and old.v_prot[v] & PAGE_GLOBAL:
                    kept_global = True
                    if not same:
                        for (_, dst), (_, src) in zip(
                            _victim_columns(new, new), _victim_columns(old, old), strict=True
                        ):
                            dst[v] = src[v]
                        # The live global entry is the one a flush leaves: not this space's own.
                        vp = old.v_vpage[v]
                        slot = (vp >> PAGE_BITS) & TLB_MASK
                        if new.vpage[slot] == vp and _unchecked(new, slot):
                            self._invalidate_slot(new, slot)
        new.v_next = old.v_next
        # The large-page range a flush leaves: the old one while a global entry stays, else none;
        # rechecked large entries widen it again, as their fills would (``recheck_passed``).
        if kept_global:
            new.large_page_addr, new.large_page_mask = old.large_page_addr, old.large_page_mask
        else:
            new.large_page_addr = new.large_page_mask = -1

    @staticmethod
    def _drop_unchecked_victim(desc: TLBDesc, vpage: int) -> None:
        """A global entry for ``vpage`` came in: this space's own unchecked copy in the victim TLB goes."""
        if vpage in desc.v_vpage:
            v = desc.v_vpage.index(vpage)
            if _v_unchecked(desc, v):
                desc.v_read[v] = desc.v_write[v] = desc.v_code[v] = INVALID_TAG
                desc.v_vpage[v] = desc.v_paddr[v] = -1
                desc.v_deps[v] = None

    @staticmethod
    def _copy_slot(src: TLBDesc, i: int, dst: TLBDesc) -> None:
        dst.read[i] = src.read[i]
        dst.write[i] = src.write[i]
        dst.code[i] = src.code[i]
        dst.addend[i] = src.addend[i]
        dst.paddr[i] = src.paddr[i]
        dst.prot[i] = src.prot[i]
        dst.vpage[i] = src.vpage[i]
        dst.deps[i] = src.deps[i]
        dst.size[i] = src.size[i]
        if len(dst.used) <= SPARSE_FLUSH:
            dst.used.append(i)
        dst.n_used += 1

    def recheck_passed(self, desc: TLBDesc, index: int) -> None:
        """Its page-table words are unchanged: the entry is what a walk would give; use it."""
        keep = ~TLB_RECHECK
        if desc.read[index] != INVALID_TAG:
            desc.read[index] &= keep
        if desc.write[index] != INVALID_TAG:
            desc.write[index] &= keep
        if desc.code[index] != INVALID_TAG:
            desc.code[index] &= keep
        size = desc.size[index]
        if size > PAGE_SIZE:
            self._add_large_page(desc, desc.vpage[index], size)

    def recheck_failed(self, desc: TLBDesc, index: int) -> None:
        """A page-table word changed: drop the entry (the lookup walks again, as after a flush)."""
        self._invalidate_slot(desc, index)

    def drop_contexts(self) -> None:
        """Forget every address space put aside (a flush that is not a CR3 switch)."""
        if self.contexts:
            self.contexts.clear()

    def _saved_tables(self) -> Iterable[TLBDesc]:
        for tables in self.contexts.values():
            yield from tables

    # ---- flush --------------------------------------------------------------
    def flush(self, mmu_idxmap: int = (1 << NB_MMU_MODES) - 1) -> None:
        """Drop every entry of the given mmu_idx set (tlb_flush_by_mmuidx), and every address space put aside."""
        self.drop_contexts()
        for mmu_idx in range(NB_MMU_MODES):
            if mmu_idxmap & (1 << mmu_idx):
                self._flush_one(self.d[mmu_idx])
        self.stats.flush_full += 1
        for fn in self.on_flush:
            fn(None)

    def _flush_one(self, desc: TLBDesc) -> None:
        if desc.n_used == 0 and desc.large_page_addr == -1:
            self.stats.flush_elided += 1
            return
        used = desc.used
        if len(used) <= SPARSE_FLUSH:
            read, write, code, vpage, paddr, deps = desc.read, desc.write, desc.code, desc.vpage, desc.paddr, desc.deps
            for i in used:
                read[i] = write[i] = code[i] = INVALID_TAG
                vpage[i] = paddr[i] = -1
                deps[i] = None
        else:
            desc.read[:] = _INVALID_FAST
            desc.write[:] = _INVALID_FAST
            desc.code[:] = _INVALID_FAST
            desc.vpage[:] = _INVALID_FAST
            desc.paddr[:] = _INVALID_FAST
            desc.deps[:] = [None] * TLB_SIZE
        used.clear()
        _clear_victims(desc)
        desc.large_page_addr = -1
        desc.large_page_mask = -1
        desc.n_used = 0

    def flush_nonglobal(self) -> None:
        """Drop every entry but global pages (mov cr3 with CR4.PGE set), and every address space put aside."""
        self.drop_contexts()
        for desc in self.d:
            keep = False
            kept: list[int] = []
            for i in list(_used_slots(desc)):
                if desc.vpage[i] != -1:
                    if desc.prot[i] & PAGE_GLOBAL:
                        keep = True
                        kept.append(i)
                    else:
                        self._invalidate_slot(desc, i)
            for v in range(VICTIM_SIZE):
                if desc.v_vpage[v] != -1:
                    if desc.v_prot[v] & PAGE_GLOBAL:
                        keep = True
                    else:
                        desc.v_read[v] = desc.v_write[v] = desc.v_code[v] = INVALID_TAG
                        desc.v_vpage[v] = desc.v_paddr[v] = -1
                        desc.v_deps[v] = None
            if len(desc.used) <= SPARSE_FLUSH:
                desc.used[:] = kept
            if not keep:
                desc.large_page_addr = desc.large_page_mask = -1
        self.stats.flush_full += 1
        for fn in self.on_flush:
            fn(None)

    def flush_page(self, vaddr: int, mmu_idxmap: int = (1 << NB_MMU_MODES) - 1) -> None:
        """Drop the entries for one virtual page (tlb_flush_page_by_mmuidx).

        A page inside the remembered large-page range flushes that whole
        mmu_idx, because the 4 KiB entries of a large page are not indexed
        by the large page.  The address spaces put aside lose their entry
        for the page (their flags would otherwise miss what changed).
        """
        vpage = vaddr & PAGE_MASK
        index = (vpage >> PAGE_BITS) & TLB_MASK
        dropped = False
        if self.contexts:
            self._drop_saved(vpage, vpage)
        for mmu_idx in range(NB_MMU_MODES):
            if not mmu_idxmap & (1 << mmu_idx):
                continue
            desc = self.d[mmu_idx]
            if desc.large_page_addr != -1 and (vpage & desc.large_page_mask) == desc.large_page_addr:
                self._flush_one(desc)
                self.stats.flush_large += 1
                dropped = True
                continue
            if desc.vpage[index] == vpage:
                self._invalidate_slot(desc, index)
                dropped = True
            for v in range(VICTIM_SIZE):
                if desc.v_vpage[v] == vpage:
                    desc.v_read[v] = desc.v_write[v] = desc.v_code[v] = INVALID_TAG
                    desc.v_vpage[v] = desc.v_paddr[v] = -1
                    desc.v_deps[v] = None
                    dropped = True
        if dropped:
            self.stats.flush_page += 1
        else:
            self.stats.flush_elided += 1
        for fn in self.on_flush:
            fn(vpage)

    def _drop_saved(self, first: int, last: int) -> None:
        """Entries of the address spaces put aside whose page is in [first, last] go."""
        n_pages = ((last - first) >> PAGE_BITS) + 1
        for desc in self._saved_tables():
            vpages = desc.vpage
            if n_pages <= TLB_SIZE:
                slots: Iterable[int] = (((first >> PAGE_BITS) + k) & TLB_MASK for k in range(n_pages))
            else:
                slots = range(TLB_SIZE)
            for i in slots:
                if vpages[i] != -1 and first <= vpages[i] <= last:
                    self._invalidate_slot(desc, i)
            for v in range(VICTIM_SIZE):
                if desc.v_vpage[v] != -1 and first <= desc.v_vpage[v] <= last:
                    desc.v_read[v] = desc.v_write[v] = desc.v_code[v] = INVALID_TAG
                    desc.v_vpage[v] = desc.v_paddr[v] = -1
                    desc.v_deps[v] = None

    def flush_range(self, vaddr: int, length: int, mmu_idxmap: int = (1 << NB_MMU_MODES) - 1) -> None:
        """Drop the entries whose page overlaps [vaddr, vaddr + length) (tlb_flush_range_by_mmuidx).

        Costs the same for one page and for the whole address space: a short
        range looks at its pages' slots, a long one scans the table (TLB_SIZE
        slots and the victims).  A large page overlapping the range flushes
        its mmu_idx, as ``flush_page`` does.  Finding nothing to drop, it
        tells no one (the CPUs keep their jump caches).  The address spaces
        put aside lose their entries in the range too.
        """
        if length <= 0:
            return
        first = vaddr & PAGE_MASK
        last = (vaddr + length - 1) & PAGE_MASK
        if self.contexts:
            self._drop_saved(first, last)
        n_pages = ((last - first) >> PAGE_BITS) + 1
        dropped = False
        for mmu_idx in range(NB_MMU_MODES):
            if not mmu_idxmap & (1 << mmu_idx):
                continue
            desc = self.d[mmu_idx]
            if desc.large_page_addr != -1:
                lp_first = desc.large_page_addr
                lp_last = lp_first + ((~desc.large_page_mask) & ~(PAGE_SIZE - 1))
                if lp_first <= last and first <= lp_last:
                    self._flush_one(desc)
                    self.stats.flush_large += 1
                    dropped = True
                    continue
            vpages = desc.vpage
            if n_pages <= TLB_SIZE:
                slots = (((first >> PAGE_BITS) + k) & TLB_MASK for k in range(n_pages))
                hits = [i for i in slots if first <= vpages[i] <= last]
            else:
                hits = [i for i in range(TLB_SIZE) if vpages[i] != -1 and first <= vpages[i] <= last]
            for i in hits:
                self._invalidate_slot(desc, i)
                dropped = True
            for v in range(VICTIM_SIZE):
                if desc.v_vpage[v] != -1 and first <= desc.v_vpage[v] <= last:
                    desc.v_read[v] = desc.v_write[v] = desc.v_code[v] = INVALID_TAG
                    desc.v_vpage[v] = desc.v_paddr[v] = -1
                    desc.v_deps[v] = None
                    dropped = True
        if not dropped:
            self.stats.flush_elided += 1
            return
        self.stats.flush_page += 1
        for fn in self.on_flush:
            fn(None)

    @staticmethod
    def _invalidate_slot(desc: TLBDesc, index: int) -> None:
        desc.read[index] = desc.write[index] = desc.code[index] = INVALID_TAG
        desc.vpage[index] = desc.paddr[index] = -1
        desc.deps[index] = None

    # ---- flag maintenance on live entries -------------------------------------
    def protect_code(self, ppage: int) -> None:
        """Set TLB_NOTDIRTY on every write entry mapping frame ``ppage`` (tlb_reset_dirty),
        in the address spaces put aside too."""
        for desc in (*self.d, *self._saved_tables()) if self.contexts else self.d:
            if ppage in desc.paddr:
                paddr = desc.paddr
                write = desc.write
                for i in range(TLB_SIZE):
                    if paddr[i] == ppage and write[i] != INVALID_TAG:
                        write[i] |= TLB_NOTDIRTY
            if ppage in desc.v_paddr:
                for v in range(VICTIM_SIZE):
                    if desc.v_paddr[v] == ppage and desc.v_write[v] != INVALID_TAG:
                        desc.v_write[v] |= TLB_NOTDIRTY

    def set_dirty(self, vaddr: int) -> None:
        """Drop TLB_NOTDIRTY from the write entries of ``vaddr``'s page (tlb_set_dirty).

        (Entries put aside keep it: their next store takes the slow path once, which drops it.)
        """
        vpage = vaddr & PAGE_MASK
        index = (vpage >> PAGE_BITS) & TLB_MASK
        for desc in self.d:
            if desc.vpage[index] == vpage and desc.write[index] != INVALID_TAG:
                desc.write[index] &= ~TLB_NOTDIRTY
            for v in range(VICTIM_SIZE):
                if desc.v_vpage[v] == vpage and desc.v_write[v] != INVALID_TAG:
                    desc.v_write[v] &= ~TLB_NOTDIRTY

    def flush_phys_page(self, ppage: int) -> None:
        """Drop every entry mapping frame ``ppage`` (used when a watchpoint or region changes)."""
        self.drop_contexts()
        vpages: set[int] = set()
        for desc in self.d:
            for i, p in enumerate(desc.paddr):
                if p == ppage:
                    vpages.add(desc.vpage[i])
            for v, p in enumerate(desc.v_paddr):
                if p == ppage:
                    vpages.add(desc.v_vpage[v])
        for vpage in vpages:
            self.flush_page(vpage)

    def valid_entries(self, mmu_idx: int) -> list[tuple[int, int, int, int, int]]:
        """(vpage, paddr, read_tag, write_tag, code_tag) of valid entries, for `monitor info tlb`."""
        desc = self.d[mmu_idx]
        out: list[tuple[int, int, int, int, int]] = []
        for i in range(TLB_SIZE):
            if desc.vpage[i] != -1:
                out.append((desc.vpage[i], desc.paddr[i], desc.read[i], desc.write[i], desc.code[i]))
        return out
