"""Translation blocks, their cache, and invalidation by physical page (QEMU's tb-maint.c).

A TB is keyed by (physical PC, EIP, CS base, hflags): two linear aliases of
one frame share the physical PC but not the EIPs baked into the code.  It covers at most two
physical pages; each page it touches has a ``PageDesc`` listing its TBs.
Linking the first TB to a page *protects* the page: its CODE dirty bit is
cleared and every TLB write entry mapping it gets TLB_NOTDIRTY, so the next
store to it leaves the fast path (DESIGN.md invariant 4).  A store there calls
``invalidate_phys_range_fast``: after ``SMC_BITMAP_USE_THRESHOLD`` such writes
a page builds a bitmap of the bytes its TBs cover, and only stores that touch
those bytes invalidate anything.  When the last TB of a page goes, the page is
unprotected (CODE dirty set) and stores become fast again.

If the running TB is among those invalidated by a store, the store has not
happened yet: ``SMCRestart`` is raised so the exec loop re-runs the current
instruction alone and retranslates what follows (precise SMC).
"""

from __future__ import annotations

from collections.abc import Callable

from ..softmmu.tlb import PAGE_MASK
from .decode import Insn
from .exceptions import SMCRestart

_HF_CS64 = 1 << 12  # core.cpu.HF_CS64 (64-bit code: 64-bit linear addresses); cpu.py imports this module

SMC_BITMAP_USE_THRESHOLD = 10


def _untranslated() -> int:
    raise RuntimeError("TB run before it was built")


def _restarts_uncached(tb: TB, start: int, end: int) -> bool:
    """Does a store into [start, end) rewrite a later instruction of an uncached TB?

    An uncached TB (one cut short by the instruction budget) is in no page
    list, but its bytes are those of the cached TB it shortens, so a store
    into them finds that one.  A one-instruction TB (the SMC replay) cannot
    run a stale instruction after its store.
    """
    if tb.n_insns < 2:
        return False
    for rs, re_ in tb.ranges:
        if rs < end and start < re_:
            return not any(hs <= start and end <= he for hs, he in tb.holes)
    return False


class TB:
    """One translation block."""

    __slots__ = (
        "pc",
        "cs_base",
        "hflags",
        "phys_pc",
        "pages",
        "ranges",
        "size",
        "n_insns",
        "fn",
        "jmp",
        "chain",
        "valid",
        "execs",
        "insns",
        "tier",
        "eips",
        "next_eip",
        "cacheable",
        "vpages",
        "holes",
        "dyn",
        "insn_paddrs",
        "bp",
        "fast",
        "guards",
    )

    def __init__(self, pc: int, cs_base: int, hflags: int, phys_pc: int) -> None:
        self.pc = pc
        self.cs_base = cs_base
        self.hflags = hflags
        self.phys_pc = phys_pc
        self.pages: tuple[int, ...] = ()
        self.ranges: tuple[tuple[int, int], ...] = ()  # (paddr start, paddr end) per page
        self.size = 0
        self.n_insns = 0
        self.fn: Callable[[], int] = _untranslated  # the built code: returns the exit slot
        self.jmp: list[TB | None] = [None, None]
        self.chain = [False, False]
        self.valid = True
        self.execs = 0
        self.insns: list[Insn | None] = []  # None: an undecodable instruction (#UD), always last
        self.tier = 1
        self.eips: tuple[int, ...] = ()
        self.next_eip = 0
        self.cacheable = True
        self.vpages: tuple[int, ...] = ()  # linear page of each entry in pages
        # Immediate fields the TB reads from RAM at run time (SMC-hot pages):
        # stores inside them change no translation, so they invalidate nothing.
        self.holes: tuple[tuple[int, int], ...] = ()
        self.dyn = False
        self.insn_paddrs: tuple[int, ...] = ()
        self.bp = False  # starts at a breakpoint mark: the prologue checks it
        # Compiled (tier 2) and not single-stepping (HF_TF): the exec loop's inner loop may run it.
        self.fast = False
        # Guarded instructions (index, paddr, size) of a TB on an SMC-hot page:
        # their bytes are holes, read and matched against the known variants
        # when the instruction runs (core/smc.py).
        self.guards: tuple[tuple[int, int, int], ...] = ()

    def __repr__(self) -> str:
        return f"<TB {self.cs_base:#x}:{self.pc:#x} phys={self.phys_pc:#x} n={self.n_insns} tier={self.tier}>"


class PageDesc:
    """The TBs on one physical page, and the SMC code bitmap."""

    __slots__ = ("tbs", "bitmap", "writes", "invalidations")

    def __init__(self) -> None:
        self.tbs: list[TB] = []
        self.bitmap: int | None = None  # bit n set: byte n of the page is translated code
        self.writes = 0
        self.invalidations = 0  # how often TBs here were invalidated (hot SMC page)


class TBCache:
    """All TBs of a machine, by key and by physical page."""

    def __init__(self, protect_code: Callable[[int], None], unprotect_code: Callable[[int], None]) -> None:
        self.tbs: dict[tuple[int, int, int, int], TB] = {}
        self.pages: dict[int, PageDesc] = {}
        self.protect_code = protect_code  # (ppage) -> None
        self.unprotect_code = unprotect_code  # (ppage) -> None
        self.on_invalidate: list[Callable[[TB], None]] = []  # CPUs drop it from their jump caches
        self.current: TB | None = None  # the TB executing now (set by the exec loop)
        # Physical page -> how often a store invalidated TBs on it; kept when
        # the page's last TB goes, so a page the guest keeps rewriting is known.
        self.smc_pages: dict[int, int] = {}
        # Physical page -> bitmap of the bytes stores rewrote when they
        # invalidated code there, and of those rewritten more than once: the
        # instructions the guest keeps rewriting (guarded: core/smc.py), not
        # the ones patched once at boot (alternatives, relocations).
        self.smc_written: dict[int, int] = {}
        self.smc_rewritten: dict[int, int] = {}
        # Linear page -> TBs whose linear range touches it (breakpoint marks are linear).
        self.by_vpage: dict[int, set[TB]] = {}
        self.stats = {
            "tb_built": 0,
            "tb_invalidated": 0,
            "smc_restarts": 0,
            "bitmap_builds": 0,
            "bitmap_skips": 0,
            "tb_compiled": 0,
            "tb_flushes": 0,
            "smc_guard_variants": 0,
            "smc_guard_misses": 0,
        }

    def lookup(self, phys_pc: int, pc: int, cs_base: int, hflags: int) -> TB | None:
        return self.tbs.get((phys_pc, pc, cs_base, hflags))

    @staticmethod
    def _vpages(tb: TB) -> tuple[int, ...]:
        start = (tb.cs_base + tb.pc) & (0xFFFFFFFFFFFFFFFF if tb.hflags & _HF_CS64 else 0xFFFFFFFF)
        first = start & PAGE_MASK
        last = (start + max(tb.size, 1) - 1) & PAGE_MASK
        return (first,) if first == last else (first, last)

    def link(self, tb: TB) -> None:
        """Add a TB to the cache and protect its pages (tb_link_page)."""
        self.tbs[(tb.phys_pc, tb.pc, tb.cs_base, tb.hflags)] = tb
        for vpage in self._vpages(tb):
            self.by_vpage.setdefault(vpage, set()).add(tb)
        for page in tb.pages:
            desc = self.pages.get(page)
            if desc is None:
                desc = self.pages[page] = PageDesc()
            desc.tbs.append(tb)
            desc.bitmap = None  # rebuilt lazily, as QEMU's invalidate_page_bitmap
            if len(desc.tbs) == 1:
                self.protect_code(page)

    def invalidate(self, tb: TB) -> None:
        """Remove one TB everywhere (tb_phys_invalidate)."""
        if not tb.valid:
            return
        tb.valid = False
        self.stats["tb_invalidated"] += 1
        key = (tb.phys_pc, tb.pc, tb.cs_base, tb.hflags)
        if self.tbs.get(key) is tb:
            del self.tbs[key]
        for vpage in self._vpages(tb):
            group = self.by_vpage.get(vpage)
            if group is not None:
                group.discard(tb)
                if not group:
                    del self.by_vpage[vpage]
        for page in tb.pages:
            desc = self.pages.get(page)
            if desc is None:
                continue
            try:
                desc.tbs.remove(tb)
            except ValueError:
                pass
            desc.bitmap = None
            desc.invalidations += 1
            if not desc.tbs:
                del self.pages[page]
                self.unprotect_code(page)
        for fn in self.on_invalidate:
            fn(tb)

    def invalidate_phys_range(self, start: int, end: int, from_store: bool = False) -> int:
        """Invalidate every TB overlapping physical [start, end) (tb_invalidate_phys_range).

        With ``from_store``, a store that hits the running TB invalidates the
        TBs and raises SMCRestart *before the store happens*, so the exec loop
        replays the instruction alone.
        """
        hits: list[TB] = []
        page = start & PAGE_MASK
        while page < end:
            desc = self.pages.get(page)
            if desc is not None:
                for tb in desc.tbs:
                    for rs, re_ in tb.ranges:
                        if rs < end and start < re_:
                            if tb.holes and any(hs <= start and end <= he for hs, he in tb.holes):
                                continue
                            if tb not in hits:  # a TB on two pages is listed on both
                                hits.append(tb)
                            break
            page += 4096
        cur = self.current
        if not hits:
            if from_store and cur is not None and not cur.cacheable and _restarts_uncached(cur, start, end):
                # A guarded slot of the cached TB, plain bytes in the shortened one.
                self.stats["smc_restarts"] += 1
                raise SMCRestart()
            return 0
        if from_store:
            for tb in hits:
                for page in tb.pages:
                    self.smc_pages[page] = self.smc_pages.get(page, 0) + 1
            written = self.smc_written
            page = start & PAGE_MASK
            while page < end:
                lo, hi = max(start, page), min(end, page + 4096)
                bits = ((1 << (hi - lo)) - 1) << (lo - page)
                old = written.get(page, 0)
                if old & bits:
                    self.smc_rewritten[page] = self.smc_rewritten.get(page, 0) | (old & bits)
                written[page] = old | bits
                page += 4096
        if from_store and cur is not None and (cur in hits if cur.cacheable else _restarts_uncached(cur, start, end)):
            self.stats["smc_restarts"] += 1
            for tb in hits:
                self.invalidate(tb)
            raise SMCRestart()
        for tb in hits:
            self.invalidate(tb)
        return len(hits)

    def invalidate_phys_range_fast(self, paddr: int, size: int) -> None:
        """The store path (tb_invalidate_phys_page_fast): use the code bitmap once a page is hot."""
        page = paddr & PAGE_MASK
        desc = self.pages.get(page)
        if desc is None:
            return
        desc.writes += 1
        if desc.writes >= SMC_BITMAP_USE_THRESHOLD:
            if desc.bitmap is None:
                self.stats["bitmap_builds"] += 1
                bitmap = 0
                for tb in desc.tbs:
                    # Each TB's bytes minus its *own* holes: another TB may
                    # have baked the same immediate in.
                    bits = 0
                    for rs, re_ in tb.ranges:
                        if rs & PAGE_MASK == page:
                            bits |= ((1 << (re_ - rs)) - 1) << (rs - page)
                    for hs, he in tb.holes:
                        if hs & PAGE_MASK == page:
                            bits &= ~(((1 << (he - hs)) - 1) << (hs - page))
                    bitmap |= bits
                desc.bitmap = bitmap
            off = paddr - page
            if not (desc.bitmap >> off) & ((1 << size) - 1):
                cur = self.current
                if cur is None or cur.cacheable or not _restarts_uncached(cur, paddr, paddr + size):
                    self.stats["bitmap_skips"] += 1
                    return

        self.invalidate_phys_range(paddr, paddr + size, from_store=True)

    def flush(self) -> None:
        """Drop every TB (tb_flush): the memory they were built from changed wholesale."""
        self.stats["tb_flushes"] += 1
        for tb in list(self.tbs.values()):
            self.invalidate(tb)
        for page in list(self.pages):
            for tb in list(self.pages.get(page, PageDesc()).tbs):
                self.invalidate(tb)
