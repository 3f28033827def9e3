"""Unit tests of the software TLB (gdbemu/softmmu/tlb.py).

The TLB's one-compare fast path is only correct if three things hold, and
every test here pins one of them down:

* the tag of an entry equals ``vaddr & align_mask(size)`` exactly when an
  access may go straight to RAM (no flag, aligned, same page);
* every reason to leave the fast path is a flag bit assigned at fill time
  (MMIO, code in the frame, watchpoints, ROM);
* the flushes drop everything the guest invalidated (invlpg, mov cr3,
  large pages) and the flag maintenance (protect_code / set_dirty) reaches
  every entry that maps a frame, including aliases and the victim TLB.

CPUTLB is exercised on its own with a small fake physical map (so each
test states exactly what the frame is), and through Machine's wiring where
the real classification (PhysMemory.classify + dirty bitmaps) matters.
"""

from __future__ import annotations

import pytest

from gdbemu.core import emit
from gdbemu.machine import Machine
from gdbemu.softmmu import tlb as tlbmod
from gdbemu.softmmu.tlb import (
    ALIGN_BITS_MASK,
    CPUTLB,
    INVALID_TAG,
    MMU_KNOSMAP_IDX,
    MMU_KSMAP_IDX,
    MMU_USER_IDX,
    NB_MMU_MODES,
    PAGE_EXEC,
    PAGE_GLOBAL,
    PAGE_MASK,
    PAGE_READ,
    PAGE_SIZE,
    PAGE_WRITE,
    TLB_DISCARD_WRITE,
    TLB_FLAGS_MASK,
    TLB_INVALID,
    TLB_MMIO,
    TLB_NOTDIRTY,
    TLB_RECHECK,
    TLB_SIZE,
    TLB_WATCHPOINT,
    VICTIM_SIZE,
    align_mask,
)

FLAGS = {
    "TLB_INVALID": TLB_INVALID,
    "TLB_NOTDIRTY": TLB_NOTDIRTY,
    "TLB_MMIO": TLB_MMIO,
    "TLB_WATCHPOINT": TLB_WATCHPOINT,
    "TLB_DISCARD_WRITE": TLB_DISCARD_WRITE,
    "TLB_RECHECK": TLB_RECHECK,
}
SIZES = (1, 2, 4, 8)
RWX = PAGE_READ | PAGE_WRITE | PAGE_EXEC
LARGE = 4 << 20


class FakeMapTLB(CPUTLB):
    """A CPUTLB whose ``set_page`` classifies pages from a fake physical map, as the fill does."""

    def __init__(self, code=(), mmio=(), rom=(), watch=None) -> None:
        super().__init__()
        self.code, self.mmio, self.rom = set(code), set(mmio), set(rom)
        self.watch = watch or {}

    def set_page(self, mmu_idx, vaddr, paddr, prot, size=PAGE_SIZE):  # type: ignore[override]  # test stand-in for the fill
        ppage = paddr & PAGE_MASK
        if ppage in self.mmio:
            ram_offset, read_flags, write_flags = None, TLB_MMIO, TLB_MMIO
        elif ppage in self.rom:
            ram_offset, read_flags, write_flags = ppage, 0, TLB_DISCARD_WRITE
        else:
            ram_offset, read_flags, write_flags = ppage, 0, TLB_NOTDIRTY if ppage in self.code else 0
        read_watch, write_watch = self.watch.get(vaddr & PAGE_MASK, (False, False))
        if read_watch:
            read_flags |= TLB_WATCHPOINT
        if write_watch:
            write_flags |= TLB_WATCHPOINT
        return super().set_page(mmu_idx, vaddr, paddr, prot, size, ram_offset, read_flags, write_flags)


def make_tlb(code=(), mmio=(), rom=(), watch=None) -> CPUTLB:
    """A CPUTLB over a fake physical map: frames are RAM unless listed.

    ``code`` frames hold translated code (clean for the CODE client), so
    their write tag gets TLB_NOTDIRTY, as the fill (softmmu/fill.py) does it.
    ``watch`` maps a virtual page to (read_watch, write_watch).
    """
    return FakeMapTLB(code, mmio, rom, watch)


def slot(vaddr: int) -> int:
    return (vaddr >> 12) & (TLB_SIZE - 1)


def fast_hit(tag: int, vaddr: int, size: int) -> bool:
    """The compare generated code does (emit.load_mem / store_mem)."""
    return tag == vaddr & align_mask(size)


# ---- the flag bits ------------------------------------------------------------


def test_flags_are_single_disjoint_bits_in_the_page_offset():
    seen = 0
    for name, flag in FLAGS.items():
        assert flag > 0 and flag & (flag - 1) == 0, f"{name} is not a single bit"
        assert not seen & flag, f"{name} overlaps another flag"
        seen |= flag
    assert seen == TLB_FLAGS_MASK, "TLB_FLAGS_MASK must be exactly the union of the flags"
    # Above the alignment bits of the widest (8-byte) access, below the page number.
    assert not TLB_FLAGS_MASK & ALIGN_BITS_MASK
    assert not TLB_FLAGS_MASK & (max(SIZES) - 1)
    assert TLB_FLAGS_MASK < PAGE_SIZE
    assert not TLB_FLAGS_MASK & PAGE_MASK


def _patch_flag(monkeypatch, name: str, value: int) -> None:
    """Change one flag and keep TLB_FLAGS_MASK the union, as a real edit of tlb.py would."""
    monkeypatch.setattr(tlbmod, name, value)
    mask = 0
    for n in FLAGS:
        mask |= getattr(tlbmod, n)
    monkeypatch.setattr(tlbmod, "TLB_FLAGS_MASK", mask)


def test_import_time_check_passes_on_the_real_flags():
    tlbmod._check_flags()


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("TLB_MMIO", TLB_NOTDIRTY, "overlap"),  # two flags on one bit
        ("TLB_DISCARD_WRITE", 1 << 2, "alignment"),  # inside the 8-byte alignment bits
        ("TLB_WATCHPOINT", 1 << 0, "alignment"),
        ("TLB_INVALID", 1 << 12, "page offset"),  # in the page number
        ("TLB_NOTDIRTY", 0x600, "single bit"),
    ],
)
def test_import_time_check_catches_bad_flags(monkeypatch, name, value, message):
    """_check_flags is what stands in for QEMU's compile-time QEMU_BUILD_BUG_ON."""
    _patch_flag(monkeypatch, name, value)
    with pytest.raises(tlbmod.TLBFlagsError, match=message):
        tlbmod._check_flags()


def test_emitter_tag_masks_are_align_mask():
    """Generated code hard-codes the masks; they must be tlb.align_mask exactly."""
    for size in SIZES:
        assert emit._TAGMASK[size] == align_mask(size)


@pytest.mark.parametrize("flag_name", sorted(FLAGS))
def test_fast_path_misses_on_any_flag(flag_name):
    """A tag carrying any flag never equals vaddr & align_mask(size): every access goes slow."""
    flag = FLAGS[flag_name]
    for vpage in (0, 0x1000, 0x7FFFF000, 0xFFFFF000):
        tag = vpage | flag
        for size in SIZES:
            for off in range(0, PAGE_SIZE, 1):
                assert not fast_hit(tag, vpage + off, size), (hex(tag), hex(vpage + off), size)


def test_invalid_tag_matches_no_address():
    assert INVALID_TAG == -1
    for size in SIZES:
        for vaddr in (0, 0xFFF, 0x1000, 0xFFFFFFFF, 0xFFFFFFF8):
            assert not fast_hit(INVALID_TAG, vaddr, size)


def test_clean_tag_hits_aligned_and_misses_unaligned():
    vpage = 0x12345000
    for size in SIZES:
        for off in range(PAGE_SIZE - size + 1):
            assert fast_hit(vpage, vpage + off, size) == (off % size == 0), (size, off)
    # another page never hits, whatever its offset
    for size in SIZES:
        assert not fast_hit(vpage, vpage + PAGE_SIZE, size)
        assert not fast_hit(vpage, vpage - PAGE_SIZE, size)


# ---- flags assigned at fill ---------------------------------------------------


def test_fill_ram_clean_tags_equal_the_page():
    tlb = make_tlb()
    i = tlb.set_page(MMU_KNOSMAP_IDX, 0x00403ABC, 0x00007DEF, RWX)
    d = tlb.d[MMU_KNOSMAP_IDX]
    assert i == slot(0x00403000)
    assert d.read[i] == d.write[i] == d.code[i] == 0x00403000
    assert d.paddr[i] == 0x7000 and d.vpage[i] == 0x00403000
    # addend: vaddr + addend is the RAM index of the frame
    assert 0x00403ABC + d.addend[i] == 0x7ABC
    assert tlb.stats.fills == 1


def test_fill_prot_bits_select_the_tags():
    tlb = make_tlb()
    for prot in range(8):
        i = tlb.set_page(MMU_USER_IDX, 0x5000, 0x5000, prot)
        d = tlb.d[MMU_USER_IDX]
        assert (d.read[i] != INVALID_TAG) == bool(prot & PAGE_READ)
        assert (d.write[i] != INVALID_TAG) == bool(prot & PAGE_WRITE)
        assert (d.code[i] != INVALID_TAG) == bool(prot & PAGE_EXEC)


def test_fill_code_frame_sets_notdirty_on_the_write_tag_only():
    tlb = make_tlb(code={0x9000})
    i = tlb.set_page(MMU_KNOSMAP_IDX, 0x1000, 0x9000, RWX)
    d = tlb.d[MMU_KNOSMAP_IDX]
    assert d.write[i] == 0x1000 | TLB_NOTDIRTY
    assert d.read[i] == 0x1000 and d.code[i] == 0x1000


def test_fill_mmio_sets_mmio_on_every_tag():
    tlb = make_tlb(mmio={0xFEE00000})
    i = tlb.set_page(MMU_KNOSMAP_IDX, 0xFEE00000, 0xFEE00000, RWX)
    d = tlb.d[MMU_KNOSMAP_IDX]
    assert d.read[i] == d.write[i] == d.code[i] == 0xFEE00000 | TLB_MMIO


def test_fill_rom_discards_writes_only():
    tlb = make_tlb(rom={0xF0000})
    i = tlb.set_page(MMU_KNOSMAP_IDX, 0xF0000, 0xF0000, RWX)
    d = tlb.d[MMU_KNOSMAP_IDX]
    assert d.write[i] == 0xF0000 | TLB_DISCARD_WRITE
    assert d.read[i] == d.code[i] == 0xF0000


@pytest.mark.parametrize("rw, wr", [(True, False), (False, True), (True, True), (False, False)])
def test_fill_watchpoint_on_the_watched_access_kinds(rw, wr):
    """Read watch -> read tag, write watch -> write tag; never the code tag, never another page."""
    tlb = make_tlb(watch={0x3000: (rw, wr)})
    i = tlb.set_page(MMU_KNOSMAP_IDX, 0x3000, 0x3000, RWX)
    j = tlb.set_page(MMU_KNOSMAP_IDX, 0x4000, 0x4000, RWX)
    d = tlb.d[MMU_KNOSMAP_IDX]
    assert d.read[i] == 0x3000 | (TLB_WATCHPOINT if rw else 0)
    assert d.write[i] == 0x3000 | (TLB_WATCHPOINT if wr else 0)
    assert d.code[i] == 0x3000
    # a watchpoint on page A never slows page B
    assert d.read[j] == d.write[j] == d.code[j] == 0x4000


def test_fill_watchpoint_combines_with_notdirty():
    tlb = make_tlb(code={0x3000}, watch={0x3000: (False, True)})
    i = tlb.set_page(MMU_KNOSMAP_IDX, 0x3000, 0x3000, RWX)
    assert tlb.d[MMU_KNOSMAP_IDX].write[i] == 0x3000 | TLB_NOTDIRTY | TLB_WATCHPOINT


class _Dev:
    def mmio_read(self, offset, size):
        return 0

    def mmio_write(self, offset, size, value):
        pass


def test_machine_classification_at_fill():
    """The real wiring: PhysMemory.classify plus the CODE dirty bitmap (softmmu/fill.py)."""
    m = Machine(ram_size=1 << 20)
    m.mem.add_mmio(0x80000, 0x1000, _Dev(), "dev")
    tlb = m.cpu.tlb
    fill = m.cpu.softmmu.filler
    d = tlb.d[MMU_KNOSMAP_IDX]
    m._protect_code(0x5000)  # what TBCache.link does for the first TB on a frame
    ram = fill.set_page_full(MMU_KNOSMAP_IDX, 0x4000, 0x4000, RWX)
    code = fill.set_page_full(MMU_KNOSMAP_IDX, 0x5000, 0x5000, RWX)
    dev = fill.set_page_full(MMU_KNOSMAP_IDX, 0x80000, 0x80000, RWX)
    unassigned = fill.set_page_full(MMU_KNOSMAP_IDX, 0x200000, 0x200000, RWX)  # past the end of RAM
    assert d.read[ram] == d.write[ram] == d.code[ram] == 0x4000
    assert (d.read[code], d.write[code], d.code[code]) == (0x5000, 0x5000 | TLB_NOTDIRTY, 0x5000)
    assert d.read[dev] == d.write[dev] == d.code[dev] == 0x80000 | TLB_MMIO
    assert d.read[unassigned] == d.write[unassigned] == 0x200000 | TLB_MMIO


# ---- the victim TLB -------------------------------------------------------------


def test_victim_tlb_keeps_the_evicted_entry_and_swaps_it_back():
    tlb = make_tlb()
    a, b = 0x1000, 0x1000 + TLB_SIZE * PAGE_SIZE  # same direct-mapped slot
    assert slot(a) == slot(b)
    idx = MMU_KNOSMAP_IDX
    tlb.set_page(idx, a, 0x7000, RWX)
    tlb.set_page(idx, b, 0x8000, PAGE_READ)
    d = tlb.d[idx]
    i = slot(a)
    assert d.vpage[i] == b
    assert tlb.victim_hit(idx, a + 0x123)
    assert tlb.stats.victim_hits == 1
    # every column moved together: tags, addend, paddr, prot
    assert d.vpage[i] == a and d.read[i] == a and d.write[i] == a and d.paddr[i] == 0x7000
    assert a + 0x10 + d.addend[i] == 0x7010
    assert d.prot[i] == RWX
    # and b is now the victim: found again
    assert tlb.victim_hit(idx, b)
    assert tlb.stats.victim_hits == 2
    assert d.vpage[i] == b and d.write[i] == INVALID_TAG and d.paddr[i] == 0x8000


def test_victim_miss_and_other_mmu_idx():
    tlb = make_tlb()
    a, b = 0x2000, 0x2000 + TLB_SIZE * PAGE_SIZE
    tlb.set_page(MMU_USER_IDX, a, a, RWX)
    tlb.set_page(MMU_USER_IDX, b, b, RWX)
    assert not tlb.victim_hit(MMU_KNOSMAP_IDX, a)  # per mmu_idx
    assert not tlb.victim_hit(MMU_USER_IDX, 0x3000)
    assert tlb.stats.victim_hits == 0


def test_refill_of_the_same_page_does_not_evict():
    tlb = make_tlb()
    tlb.set_page(MMU_USER_IDX, 0x2000, 0x2000, PAGE_READ)
    tlb.set_page(MMU_USER_IDX, 0x2000, 0x2000, RWX)
    assert tlb.d[MMU_USER_IDX].v_vpage == [-1] * VICTIM_SIZE


def test_victim_tlb_is_round_robin_of_size_victim_size():
    tlb = make_tlb()
    pages = [0x5000 + k * TLB_SIZE * PAGE_SIZE for k in range(VICTIM_SIZE + 2)]
    for p in pages:
        tlb.set_page(MMU_USER_IDX, p, p & 0xFFFFF, RWX)
    # VICTIM_SIZE + 1 evictions: the oldest one was overwritten
    assert not tlb.victim_hit(MMU_USER_IDX, pages[0])
    assert tlb.victim_hit(MMU_USER_IDX, pages[1])


def test_softmmu_lookup_uses_the_victim_before_walking():
    """SoftMMU.lookup: fast table, then the victim TLB, and only then a page walk (a fill)."""
    m = Machine(ram_size=1 << 20)
    cpu = m.cpu
    cpu.setup_flat32()  # paging off: identity
    a = 0x3000
    b = a + TLB_SIZE * PAGE_SIZE  # same slot; past the end of RAM (unassigned, reads all ones)
    m.mem.ram[a : a + 4] = (0xDEADBEEF).to_bytes(4, "little")
    assert cpu.softmmu.load(MMU_KNOSMAP_IDX, a, 4) == 0xDEADBEEF
    assert cpu.softmmu.load(MMU_KNOSMAP_IDX, b, 4) == 0xFFFFFFFF
    assert cpu.tlb.stats.fills == 2
    assert cpu.softmmu.load(MMU_KNOSMAP_IDX, a, 4) == 0xDEADBEEF
    assert cpu.tlb.stats.victim_hits == 1
    assert cpu.tlb.stats.fills == 2  # a came back from the victim, no walk


# ---- large pages ------------------------------------------------------------------


@pytest.mark.parametrize("inside", [0x400000, 0x400000 + 0x1FF000, 0x7FF000, 0x7FFFFF])
def test_flush_page_inside_a_large_page_flushes_that_mmu_idx(inside):
    """A 4 MiB page is entered as 4 KiB entries; invlpg of any part must drop all of them."""
    tlb = make_tlb()
    for off in (0, 0x1000, 0x3FF000):  # three 4 KiB pieces of one 4 MiB page
        tlb.set_page(MMU_KNOSMAP_IDX, 0x400000 + off, 0x800000 + off, RWX, size=LARGE)
    tlb.set_page(MMU_KNOSMAP_IDX, 0x10000, 0x10000, RWX)  # unrelated 4 KiB page, same mmu_idx
    tlb.set_page(MMU_USER_IDX, 0x10000, 0x10000, RWX)  # other mmu_idx
    tlb.set_page(MMU_KSMAP_IDX, 0x20000, 0x20000, RWX)
    tlb.flush_page(inside)
    assert tlb.valid_entries(MMU_KNOSMAP_IDX) == []
    assert tlb.d[MMU_KNOSMAP_IDX].large_page_addr == -1
    assert [e[0] for e in tlb.valid_entries(MMU_USER_IDX)] == [0x10000]
    assert [e[0] for e in tlb.valid_entries(MMU_KSMAP_IDX)] == [0x20000]
    assert tlb.stats.flush_large == 1


def test_flush_page_outside_the_large_page_is_not_large():
    tlb = make_tlb()
    tlb.set_page(MMU_KNOSMAP_IDX, 0x400000, 0x400000, RWX, size=LARGE)
    tlb.set_page(MMU_KNOSMAP_IDX, 0x10000, 0x10000, RWX)
    tlb.flush_page(0x10000)
    assert tlb.stats.flush_large == 0
    assert [e[0] for e in tlb.valid_entries(MMU_KNOSMAP_IDX)] == [0x400000]
    tlb.flush_page(0x3FF000)  # just below the large page: unrelated
    tlb.flush_page(0x800000)  # just above
    assert tlb.stats.flush_large == 0


def test_large_page_range_grows_to_cover_two_large_pages():
    """QEMU's tlb_add_large_page: one range per mmu_idx, widened to cover both."""
    tlb = make_tlb()
    tlb.set_page(MMU_KNOSMAP_IDX, 0x400000, 0x400000, RWX, size=LARGE)
    tlb.set_page(MMU_KNOSMAP_IDX, 0xC00000, 0xC00000, RWX, size=LARGE)
    d = tlb.d[MMU_KNOSMAP_IDX]
    for page in (0x400000, 0xC00000):
        assert page & d.large_page_mask == d.large_page_addr
    tlb.flush_page(0xC01000)
    assert tlb.valid_entries(MMU_KNOSMAP_IDX) == []
    assert tlb.stats.flush_large == 1


def test_large_page_entries_in_the_victim_are_flushed_too():
    tlb = make_tlb()
    tlb.set_page(MMU_KNOSMAP_IDX, 0x400000, 0x400000, RWX, size=LARGE)
    tlb.set_page(MMU_KNOSMAP_IDX, 0x400000 + TLB_SIZE * PAGE_SIZE, 0x9000, RWX)  # evicts it
    tlb.flush_page(0x402000)
    assert not tlb.victim_hit(MMU_KNOSMAP_IDX, 0x400000)


# ---- flush elision and flushes ------------------------------------------------------


def test_flush_page_of_an_unmapped_page_is_elided():
    tlb = make_tlb()
    tlb.set_page(MMU_KNOSMAP_IDX, 0x1000, 0x1000, RWX)
    tlb.flush_page(0x2000)
    assert tlb.stats.flush_elided == 1 and tlb.stats.flush_page == 0
    assert [e[0] for e in tlb.valid_entries(MMU_KNOSMAP_IDX)] == [0x1000]
    tlb.flush_page(0x1FFF)
    assert tlb.stats.flush_page == 1
    assert tlb.valid_entries(MMU_KNOSMAP_IDX) == []


def test_flush_page_drops_the_victim_copy():
    tlb = make_tlb()
    a = 0x6000
    tlb.set_page(MMU_USER_IDX, a, a, RWX)
    tlb.set_page(MMU_USER_IDX, a + TLB_SIZE * PAGE_SIZE, 0x7000, RWX)
    tlb.flush_page(a)
    assert tlb.stats.flush_page == 1
    assert not tlb.victim_hit(MMU_USER_IDX, a)


def test_flush_page_respects_the_mmu_idx_map():
    tlb = make_tlb()
    for idx in range(NB_MMU_MODES):
        tlb.set_page(idx, 0x1000, 0x1000, RWX)
    tlb.flush_page(0x1000, mmu_idxmap=1 << MMU_USER_IDX)
    assert tlb.valid_entries(MMU_USER_IDX) == []
    assert tlb.valid_entries(MMU_KNOSMAP_IDX) and tlb.valid_entries(MMU_KSMAP_IDX)


def test_flush_of_an_empty_tlb_is_elided():
    tlb = make_tlb()
    tlb.flush()
    assert tlb.stats.flush_elided == NB_MMU_MODES
    tlb.set_page(MMU_KNOSMAP_IDX, 0x1000, 0x1000, RWX)
    tlb.flush()
    # the used mmu_idx really flushes, the two empty ones are elided
    assert tlb.stats.flush_elided == NB_MMU_MODES + NB_MMU_MODES - 1
    assert tlb.valid_entries(MMU_KNOSMAP_IDX) == []
    tlb.flush()
    assert tlb.stats.flush_elided == 3 * NB_MMU_MODES - 1


def test_full_flush_drops_fast_victim_and_large_page_state():
    tlb = make_tlb()
    tlb.set_page(MMU_KNOSMAP_IDX, 0x400000, 0x400000, RWX, size=LARGE)
    tlb.set_page(MMU_KNOSMAP_IDX, 0x400000 + TLB_SIZE * PAGE_SIZE, 0x1000, RWX)
    tlb.flush()
    d = tlb.d[MMU_KNOSMAP_IDX]
    assert d.read == [INVALID_TAG] * TLB_SIZE and d.write == [INVALID_TAG] * TLB_SIZE
    assert d.code == [INVALID_TAG] * TLB_SIZE
    assert not tlb.victim_hit(MMU_KNOSMAP_IDX, 0x400000)
    assert d.large_page_addr == -1


def test_flush_mutates_lists_in_place():
    """Compiled TBs bind the tag lists once (RT/WT/AD): a flush must not replace them."""
    tlb = make_tlb()
    d = tlb.d[MMU_USER_IDX]
    lists = [d.read, d.write, d.code, d.addend, d.v_read, d.v_write]
    tlb.set_page(MMU_USER_IDX, 0x1000, 0x1000, RWX)
    tlb.flush()
    tlb.flush_nonglobal()
    tlb.flush_page(0x1000)
    assert [d.read, d.write, d.code, d.addend, d.v_read, d.v_write] == lists
    assert all(a is b for a, b in zip([d.read, d.write, d.code, d.addend, d.v_read, d.v_write], lists, strict=True))


def test_flush_callbacks():
    tlb = make_tlb()
    seen = []
    tlb.on_flush.append(seen.append)
    tlb.flush()
    tlb.flush_page(0x1234)
    tlb.flush_nonglobal()
    assert seen == [None, 0x1000, None]


def test_flush_nonglobal_keeps_global_entries():
    """mov cr3 with CR4.PGE drops all but global translations (SDM vol. 3, 4.10.4.1)."""
    tlb = make_tlb()
    idx = MMU_KNOSMAP_IDX
    tlb.set_page(idx, 0x1000, 0x1000, RWX | PAGE_GLOBAL)
    tlb.set_page(idx, 0x2000, 0x2000, RWX)
    tlb.set_page(MMU_USER_IDX, 0x3000, 0x3000, RWX | PAGE_GLOBAL)
    # victim entries: one global, one not
    tlb.set_page(idx, 0x5000, 0x5000, RWX | PAGE_GLOBAL)
    tlb.set_page(idx, 0x5000 + TLB_SIZE * PAGE_SIZE, 0x6000, RWX)
    tlb.set_page(idx, 0x7000, 0x7000, RWX)
    tlb.set_page(idx, 0x7000 + TLB_SIZE * PAGE_SIZE, 0x8000, RWX | PAGE_GLOBAL)
    tlb.flush_nonglobal()
    assert sorted(e[0] for e in tlb.valid_entries(idx)) == [0x1000, 0x7000 + TLB_SIZE * PAGE_SIZE]
    assert [e[0] for e in tlb.valid_entries(MMU_USER_IDX)] == [0x3000]
    assert tlb.victim_hit(idx, 0x5000)  # global, kept in the victim TLB
    assert not tlb.victim_hit(idx, 0x7000)  # not global, dropped from the victim TLB


def test_flush_nonglobal_keeps_large_page_tracking_for_kept_large_pages():
    tlb = make_tlb()
    tlb.set_page(MMU_KNOSMAP_IDX, 0x400000, 0x400000, RWX | PAGE_GLOBAL, size=LARGE)
    tlb.flush_nonglobal()
    tlb.flush_page(0x5FF000)  # invlpg of another part of the same 4 MiB page
    assert tlb.valid_entries(MMU_KNOSMAP_IDX) == []


def test_flush_nonglobal_keeps_large_page_tracking_for_victim_entries():
    tlb = make_tlb()
    idx = MMU_KNOSMAP_IDX
    tlb.set_page(idx, 0x400000, 0x400000, RWX | PAGE_GLOBAL, size=LARGE)
    tlb.set_page(idx, 0x800000, 0x10000, RWX)  # same slot: the global large-page entry goes to the victim
    tlb.flush_nonglobal()
    tlb.flush_page(0x401000)  # invlpg inside the 4 MiB page invalidates the whole page
    assert not tlb.victim_hit(idx, 0x400000)


# ---- protect_code / set_dirty ---------------------------------------------------


def test_protect_code_reaches_aliases_victims_and_every_mmu_idx():
    tlb = make_tlb()
    frame = 0x9000
    tlb.set_page(MMU_KNOSMAP_IDX, 0x1000, frame, RWX)  # alias 1
    tlb.set_page(MMU_KNOSMAP_IDX, 0x2000, frame, RWX)  # alias 2, other slot
    tlb.set_page(MMU_USER_IDX, 0x1000, frame, RWX)  # other mmu_idx
    tlb.set_page(MMU_KNOSMAP_IDX, 0x3000, frame, RWX)  # alias 3 ...
    tlb.set_page(MMU_KNOSMAP_IDX, 0x3000 + TLB_SIZE * PAGE_SIZE, 0xA000, RWX)  # ... evicted to the victim
    tlb.set_page(MMU_KNOSMAP_IDX, 0x4000, frame, PAGE_READ)  # read-only alias: no write tag to flag
    tlb.set_page(MMU_KNOSMAP_IDX, 0x5000, 0xB000, RWX)  # another frame
    tlb.protect_code(frame)
    d = tlb.d[MMU_KNOSMAP_IDX]
    for v in (0x1000, 0x2000):
        assert d.write[slot(v)] == v | TLB_NOTDIRTY
        assert d.read[slot(v)] == v and d.code[slot(v)] == v
    assert tlb.d[MMU_USER_IDX].write[slot(0x1000)] == 0x1000 | TLB_NOTDIRTY
    assert d.write[slot(0x4000)] == INVALID_TAG
    assert d.write[slot(0x5000)] == 0x5000
    assert d.write[slot(0x3000)] == 0x3000 + TLB_SIZE * PAGE_SIZE  # maps 0xA000: untouched
    assert tlb.victim_hit(MMU_KNOSMAP_IDX, 0x3000)
    assert d.write[slot(0x3000)] == 0x3000 | TLB_NOTDIRTY


def test_set_dirty_clears_notdirty_for_that_page_in_every_mmu_idx_and_the_victim():
    tlb = make_tlb(code={0x9000})
    tlb.set_page(MMU_KNOSMAP_IDX, 0x1000, 0x9000, RWX)
    tlb.set_page(MMU_USER_IDX, 0x1000, 0x9000, RWX)
    tlb.set_page(MMU_KNOSMAP_IDX, 0x2000, 0x9000, RWX)  # an alias
    tlb.set_page(MMU_KSMAP_IDX, 0x1000, 0x9000, RWX)
    tlb.set_page(MMU_KSMAP_IDX, 0x1000 + TLB_SIZE * PAGE_SIZE, 0x8000, RWX)  # 0x1000 to the victim
    tlb.set_dirty(0x1ABC)
    assert tlb.d[MMU_KNOSMAP_IDX].write[slot(0x1000)] == 0x1000
    assert tlb.d[MMU_USER_IDX].write[slot(0x1000)] == 0x1000
    assert tlb.victim_hit(MMU_KSMAP_IDX, 0x1000)
    assert tlb.d[MMU_KSMAP_IDX].write[slot(0x1000)] == 0x1000
    # set_dirty is per virtual page (QEMU's tlb_set_dirty): the alias goes slow once more
    assert tlb.d[MMU_KNOSMAP_IDX].write[slot(0x2000)] == 0x2000 | TLB_NOTDIRTY


def test_set_dirty_leaves_other_flags_and_invalid_tags():
    tlb = make_tlb(code={0x9000}, watch={0x1000: (False, True)})
    tlb.set_page(MMU_KNOSMAP_IDX, 0x1000, 0x9000, RWX)
    tlb.set_page(MMU_USER_IDX, 0x1000, 0x9000, PAGE_READ)
    tlb.set_dirty(0x1000)
    assert tlb.d[MMU_KNOSMAP_IDX].write[slot(0x1000)] == 0x1000 | TLB_WATCHPOINT
    assert tlb.d[MMU_USER_IDX].write[slot(0x1000)] == INVALID_TAG


def test_flush_phys_page_drops_every_mapping_of_the_frame():
    tlb = make_tlb()
    tlb.set_page(MMU_KNOSMAP_IDX, 0x1000, 0x9000, RWX)
    tlb.set_page(MMU_USER_IDX, 0x2000, 0x9000, RWX)
    tlb.set_page(MMU_KNOSMAP_IDX, 0x3000, 0xA000, RWX)
    tlb.flush_phys_page(0x9000)
    assert [e[0] for e in tlb.valid_entries(MMU_KNOSMAP_IDX)] == [0x3000]
    assert tlb.valid_entries(MMU_USER_IDX) == []


# ---- stats ------------------------------------------------------------------------


def test_stats_counters():
    tlb = make_tlb()
    tlb.set_page(MMU_USER_IDX, 0x1000, 0x1000, RWX)
    tlb.set_page(MMU_USER_IDX, 0x1000 + TLB_SIZE * PAGE_SIZE, 0x2000, RWX)
    tlb.victim_hit(MMU_USER_IDX, 0x1000)
    tlb.flush_page(0x1000)
    tlb.flush_page(0x9000)
    tlb.flush()
    s = tlb.stats.as_dict()
    assert s["fills"] == 2 and s["victim_hits"] == 1
    assert s["flush_page"] == 1 and s["flush_full"] == 1
    # one elided page flush, plus the two never-used mmu_idx of the full flush
    assert s["flush_elided"] == 1 + (NB_MMU_MODES - 1)
    assert set(s) >= {"slow_hits", "misses", "notdirty_writes", "watch_checks", "mmio", "page_cross", "unaligned"}
