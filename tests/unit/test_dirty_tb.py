"""Dirty-memory tracking (gdbemu/softmmu/dirty.py) and the TB cache's SMC machinery (gdbemu/core/tb.py).

Self-modifying code is detected, as in QEMU, by three cooperating pieces:
the CODE dirty bitmap (0 = "this frame holds translated code"), TLB_NOTDIRTY
on every write entry of such a frame, and TBCache's per-page lists.  The
tests check each piece alone (DirtyMemory, TBCache with fake TBs) and then
the chain through the real translator, store path and exec loop, using tiny
guests written as raw bytes into RAM:

    90        nop
    b0 ib     mov al, imm8
    e6 f4     out 0xf4, al      (isa-debug-exit: ends the run, exit_code = al << 1 | 1)
    eb rel8   jmp short
    c6 05 disp32 ib   mov byte [disp32], imm8
    f4        hlt
"""

from __future__ import annotations

import numpy as np
import pytest

from gdbemu.core.exceptions import SMCRestart
from gdbemu.core.tb import SMC_BITMAP_USE_THRESHOLD, TB, TBCache
from gdbemu.machine import Machine
from gdbemu.softmmu.dirty import (
    DIRTY_MEMORY_CODE,
    DIRTY_MEMORY_MIGRATION,
    DIRTY_MEMORY_NUM,
    DIRTY_MEMORY_VGA,
    DirtyMemory,
)
from gdbemu.softmmu.tlb import MMU_KNOSMAP_IDX, TLB_NOTDIRTY

KERNEL = MMU_KNOSMAP_IDX
NOP = b"\x90"
EXIT7 = b"\xb0\x07\xe6\xf4\xf4"  # mov al, 7; out 0xf4, al; hlt


# ---- DirtyMemory --------------------------------------------------------------------------


def test_new_memory_is_dirty_for_every_client_and_clean_for_none():
    d = DirtyMemory(16)
    for c in range(DIRTY_MEMORY_NUM):
        assert d.count_dirty(c) == 16
    assert not any(d.is_clean(p) for p in range(16))


def test_reset_and_set_dirty_range():
    d = DirtyMemory(16)
    d.reset_dirty_range(DIRTY_MEMORY_CODE, 0x2000, 0x2000)  # pages 2, 3
    assert [p for p in range(16) if not d.get_dirty(DIRTY_MEMORY_CODE, p)] == [2, 3]
    assert d.count_dirty(DIRTY_MEMORY_VGA) == 16  # other clients untouched
    # CODE is logged everywhere: a page clean for CODE is clean
    assert [p for p in range(16) if d.is_clean(p)] == [2, 3]
    d.set_dirty_range(0x3FFF, 1, clients=1 << DIRTY_MEMORY_CODE)
    assert [p for p in range(16) if d.is_clean(p)] == [2]
    # an unaligned range covers every page it touches
    d.reset_dirty_range(DIRTY_MEMORY_CODE, 0x4FFF, 2)
    assert not d.get_dirty(DIRTY_MEMORY_CODE, 4) and not d.get_dirty(DIRTY_MEMORY_CODE, 5)
    d.set_dirty_range(0x4FFF, 2)
    assert d.get_dirty(DIRTY_MEMORY_CODE, 4) and d.get_dirty(DIRTY_MEMORY_CODE, 5)


def test_set_dirty_range_selects_clients():
    d = DirtyMemory(4)
    for c in range(DIRTY_MEMORY_NUM):
        d.reset_dirty_range(c, 0, 0x4000)
    d.set_dirty_range(0x1000, 0x1000, clients=(1 << DIRTY_MEMORY_VGA) | (1 << DIRTY_MEMORY_MIGRATION))
    assert d.get_dirty(DIRTY_MEMORY_VGA, 1) and d.get_dirty(DIRTY_MEMORY_MIGRATION, 1)
    assert not d.get_dirty(DIRTY_MEMORY_CODE, 1)
    assert d.count_dirty(DIRTY_MEMORY_VGA) == 1


def test_ranges_past_the_end_are_clipped():
    d = DirtyMemory(4)
    d.reset_dirty_range(DIRTY_MEMORY_CODE, 0x3000, 0x10000)
    assert not d.get_dirty(DIRTY_MEMORY_CODE, 3) and d.get_dirty(DIRTY_MEMORY_CODE, 2)
    d.set_dirty_range(0x3000, 0x10000)
    d.set_dirty_range(0x100000, 0x1000)  # wholly outside: nothing, no error
    d.reset_dirty_range(DIRTY_MEMORY_VGA, 0x100000, 0x1000)
    assert d.count_dirty(DIRTY_MEMORY_VGA) == 4
    assert len(d.test_and_clear(DIRTY_MEMORY_VGA, 0x100000, 0x1000)) == 0
    assert not d.is_clean(100), "pages beyond RAM are never clean"


def test_test_and_clear_returns_a_copy_and_clears():
    d = DirtyMemory(8)
    d.reset_dirty_range(DIRTY_MEMORY_VGA, 0, 0x8000)
    d.set_dirty_range(0x2000, 1, clients=1 << DIRTY_MEMORY_VGA)
    d.set_dirty_range(0x4000, 1, clients=1 << DIRTY_MEMORY_VGA)
    got = d.test_and_clear(DIRTY_MEMORY_VGA, 0x1000, 0x5000)  # pages 1..5
    assert got.tolist() == [0, 1, 0, 1, 0]
    assert d.count_dirty(DIRTY_MEMORY_VGA) == 0
    got[:] = 1  # the result is a copy, not a view of the bitmap
    assert d.count_dirty(DIRTY_MEMORY_VGA) == 0
    assert isinstance(got, np.ndarray)


def test_logging_makes_a_client_count():
    """A page clean for VGA is clean (stores go slow) only while VGA logging covers it."""
    d = DirtyMemory(8)
    d.reset_dirty_range(DIRTY_MEMORY_VGA, 0, 0x8000)
    assert not any(d.is_clean(p) for p in range(8))
    d.enable_logging(DIRTY_MEMORY_VGA, 0x2000, 0x2000)
    assert [p for p in range(8) if d.is_clean(p)] == [2, 3]
    d.reset_dirty_range(DIRTY_MEMORY_MIGRATION, 0, 0x8000)
    d.enable_logging(DIRTY_MEMORY_MIGRATION, 0x7000, 0x1000)
    assert [p for p in range(8) if d.is_clean(p)] == [2, 3, 7]
    d.set_dirty_range(0x2000, 0x1000, clients=1 << DIRTY_MEMORY_VGA)
    assert [p for p in range(8) if d.is_clean(p)] == [3, 7]


def test_empty_ranges_touch_nothing():
    d = DirtyMemory(4)
    d.reset_dirty_range(DIRTY_MEMORY_VGA, 0x1800, 0)
    assert d.count_dirty(DIRTY_MEMORY_VGA) == 4
    assert len(d.test_and_clear(DIRTY_MEMORY_VGA, 0x2800, 0)) == 0
    assert d.count_dirty(DIRTY_MEMORY_VGA) == 4


def _clean_vga_page(m: Machine, paddr: int) -> None:
    m.dirty.enable_logging(DIRTY_MEMORY_VGA, paddr, 0x1000)
    m.dirty.reset_dirty_range(DIRTY_MEMORY_VGA, paddr, 0x1000)


def test_store_to_a_logged_clean_page_sets_its_dirty_bit_once():
    """Machine._classify flags the write tag; the first store sets the bit and drops the flag."""
    m = Machine(ram_size=1 << 20)
    m.cpu.setup_flat32()
    _clean_vga_page(m, 0xA0000)
    mmu = m.cpu.softmmu
    mmu.load(KERNEL, 0xA0000, 1)  # fill
    i = (0xA0000 >> 12) & 0xFF
    wt = m.cpu.tlb.d[KERNEL].write
    assert wt[i] == 0xA0000 | TLB_NOTDIRTY
    mmu.store(KERNEL, 0xA0010, 4, 0x11223344)
    assert m.dirty.get_dirty(DIRTY_MEMORY_VGA, 0xA0)
    assert m.dirty.get_dirty(DIRTY_MEMORY_CODE, 0xA0), "no code there: CODE stays dirty"
    assert wt[i] == 0xA0000, "once dirty for every client the store path is fast again"
    assert m.mem.read(0xA0010, 4) == bytes.fromhex("44332211")
    assert m.stats()["notdirty_writes"] == 1
    mmu.store(KERNEL, 0xA0020, 4, 1)
    assert m.stats()["notdirty_writes"] == 1


def test_test_and_clear_rearms_store_tracking():
    m = Machine(ram_size=1 << 20)
    m.cpu.setup_flat32()
    _clean_vga_page(m, 0xA0000)
    mmu = m.cpu.softmmu
    mmu.store(KERNEL, 0xA0000, 1, 1)
    assert m.dirty_test_and_clear(DIRTY_MEMORY_VGA, 0xA0000, 0x1000).tolist() == [1]
    # the TLB entry is still live: the next store must be seen by the VGA client again
    assert m.cpu.tlb.d[KERNEL].write[0xA0] & TLB_NOTDIRTY
    mmu.store(KERNEL, 0xA0000, 1, 2)
    assert m.dirty_test_and_clear(DIRTY_MEMORY_VGA, 0xA0000, 0x1000).tolist() == [1]


# ---- TBCache with fabricated TBs ----------------------------------------------------------


class Recorder:
    def __init__(self):
        self.protected: list[int] = []
        self.unprotected: list[int] = []

    def cache(self) -> TBCache:
        return TBCache(self.protected.append, self.unprotected.append)


def make_tb(start: int, end: int, pc: int | None = None) -> TB:
    """A TB covering physical [start, end), split per page like the translator does."""
    tb = TB(pc if pc is not None else start, 0, 0, start)
    pages, ranges = [], []
    a = start
    while a < end:
        page = a & -4096
        stop = min(end, page + 4096)
        pages.append(page)
        ranges.append((a, stop))
        a = stop
    tb.pages, tb.ranges = tuple(pages), tuple(ranges)
    tb.size = end - start
    return tb


def test_link_protects_a_page_once_and_lookup_finds_the_tb():
    r = Recorder()
    c = r.cache()
    a, b = make_tb(0x1000, 0x1010), make_tb(0x1100, 0x1120)
    c.link(a)
    c.link(b)
    assert r.protected == [0x1000]
    assert c.lookup(0x1000, 0x1000, 0, 0) is a and c.lookup(0x1100, 0x1100, 0, 0) is b
    assert c.lookup(0x1000, 0x1000, 0, 1) is None  # hflags are part of the key
    assert c.lookup(0x1000, 0x5000, 0, 0) is None  # so is the EIP: an alias at another address
    assert c.pages[0x1000].tbs == [a, b]


def test_invalidate_phys_range_removes_only_overlapping_tbs():
    r = Recorder()
    c = r.cache()
    a, b = make_tb(0x1000, 0x1010), make_tb(0x1100, 0x1120)
    c.link(a)
    c.link(b)
    assert c.invalidate_phys_range(0x1010, 0x1100) == 0  # touches neither: ends are exclusive
    assert c.invalidate_phys_range(0x0F00, 0x1000) == 0
    assert a.valid and b.valid
    assert c.invalidate_phys_range(0x110F, 0x1110) == 1
    assert not b.valid and a.valid
    assert c.lookup(0x1100, 0x1100, 0, 0) is None and c.lookup(0x1000, 0x1000, 0, 0) is a
    assert r.unprotected == [], "a TB is left on the page: still protected"
    assert c.invalidate_phys_range(0x100F, 0x1010) == 1
    assert r.unprotected == [0x1000]
    assert c.pages == {}
    assert c.stats["tb_invalidated"] == 2


def test_tb_spanning_two_pages_is_invalidated_from_either_page():
    for hit in (0x1FFF, 0x2003):
        r = Recorder()
        c = r.cache()
        tb = make_tb(0x1FF0, 0x2008)
        other = make_tb(0x2100, 0x2110)
        c.link(tb)
        c.link(other)
        assert r.protected == [0x1000, 0x2000]
        c.invalidate_phys_range(hit, hit + 1)
        assert not tb.valid and other.valid
        assert r.unprotected == [0x1000], "page 0x2000 still holds a TB"
        assert list(c.pages) == [0x2000]


def test_invalidate_phys_range_counts_each_tb_once():
    c = Recorder().cache()
    c.link(make_tb(0x1FF0, 0x2008))
    assert c.invalidate_phys_range(0x1FFE, 0x2002) == 1


def test_bitmap_skips_writes_that_miss_translated_bytes():
    c = Recorder().cache()
    tb = make_tb(0x1100, 0x1110)
    c.link(tb)
    for k in range(SMC_BITMAP_USE_THRESHOLD + 5):
        c.invalidate_phys_range_fast(0x1800 + k, 1)
    assert tb.valid
    assert c.stats["bitmap_builds"] == 1
    assert c.stats["bitmap_skips"] == 6  # from the threshold-th write on
    # edges of the code: just outside is skipped, one byte inside invalidates
    c.invalidate_phys_range_fast(0x10FE, 2)
    c.invalidate_phys_range_fast(0x1110, 4)
    assert tb.valid and c.stats["bitmap_skips"] == 8
    c.invalidate_phys_range_fast(0x10FF, 2)  # first byte outside, second byte is code
    assert not tb.valid


def test_bitmap_is_rebuilt_after_link():
    c = Recorder().cache()
    c.link(make_tb(0x1100, 0x1110))
    for _ in range(SMC_BITMAP_USE_THRESHOLD):
        c.invalidate_phys_range_fast(0x1800, 1)
    late = make_tb(0x1800, 0x1808, pc=0x1800)  # new code where the bitmap said "data"
    c.link(late)
    c.invalidate_phys_range_fast(0x1804, 1)
    assert not late.valid, "a stale bitmap would have skipped this store"


def test_bitmap_of_a_page_holding_the_second_half_of_a_tb():
    c = Recorder().cache()
    tb = make_tb(0x1FF8, 0x2004)
    c.link(tb)
    for _ in range(SMC_BITMAP_USE_THRESHOLD):
        c.invalidate_phys_range_fast(0x2800, 1)
    c.invalidate_phys_range_fast(0x2004, 1)
    assert tb.valid
    c.invalidate_phys_range_fast(0x2003, 1)
    assert not tb.valid


def test_smc_restart_when_the_running_tb_is_hit_from_a_store():
    c = Recorder().cache()
    tb, other = make_tb(0x1000, 0x1010), make_tb(0x1008, 0x1020, pc=0x1008)
    c.link(tb)
    c.link(other)
    c.current = tb
    with pytest.raises(SMCRestart):
        c.invalidate_phys_range(0x100A, 0x100B, from_store=True)
    # QEMU's current_tb_modified: every hit TB is gone, then the insn is replayed alone
    assert not tb.valid and not other.valid
    assert c.stats["smc_restarts"] == 1


def test_no_smc_restart_for_other_tbs_debugger_writes_or_uncached_tbs():
    c = Recorder().cache()
    running, victim = make_tb(0x1000, 0x1010), make_tb(0x1100, 0x1110)
    c.link(running)
    c.link(victim)
    c.current = running
    assert c.invalidate_phys_range(0x1100, 0x1101, from_store=True) == 1  # another TB
    assert c.invalidate_phys_range(0x1000, 0x1001) == 1  # not from a store (debugger, DMA)
    replay = make_tb(0x1000, 0x1010)
    replay.cacheable = False  # run_one_uncached's TB: storing into itself is the replayed store
    c.link(make_tb(0x1000, 0x1010))
    c.current = replay
    c.invalidate_phys_range(0x1000, 0x1001, from_store=True)
    assert c.stats["smc_restarts"] == 0


def _with_holes(tb: TB, *holes: tuple[int, int]) -> TB:
    """Immediate fields the TB reads from RAM at run time (translate._plan_dyn_imm on SMC-hot pages)."""
    tb.holes = tuple(holes)
    tb.dyn = True
    return tb


def test_store_inside_a_hole_invalidates_nothing():
    c = Recorder().cache()
    tb = _with_holes(make_tb(0x1000, 0x1010), (0x1008, 0x100C))
    c.link(tb)
    c.current = tb  # even the running TB: it reads the field when it gets there
    assert c.invalidate_phys_range(0x1008, 0x100C, from_store=True) == 0
    assert c.invalidate_phys_range(0x1009, 0x100A, from_store=True) == 0
    assert tb.valid and c.stats["smc_restarts"] == 0
    assert c.smc_pages == {}, "a store that invalidated nothing does not make the page hot"
    c.current = None
    assert c.invalidate_phys_range(0x1007, 0x1009, from_store=True) == 1  # opcode byte + hole byte
    assert not tb.valid


def test_smc_pages_count_store_invalidations_only():
    c = Recorder().cache()
    for _ in range(3):
        c.link(make_tb(0x1000, 0x1010))
        c.invalidate_phys_range(0x1000, 0x1001, from_store=True)
    c.link(make_tb(0x1000, 0x1010))
    c.invalidate_phys_range(0x1000, 0x1001)  # debugger/DMA: not guest SMC
    assert c.smc_pages == {0x1000: 3}, "kept after the page's last TB went"


def test_bitmap_leaves_holes_out():
    c = Recorder().cache()
    tb = _with_holes(make_tb(0x1000, 0x1010), (0x1008, 0x100C))
    c.link(tb)
    for _ in range(SMC_BITMAP_USE_THRESHOLD):
        c.invalidate_phys_range_fast(0x1800, 1)
    skips = c.stats["bitmap_skips"]
    c.invalidate_phys_range_fast(0x1008, 4)
    assert tb.valid and c.stats["bitmap_skips"] == skips + 1
    c.invalidate_phys_range_fast(0x100C, 1)
    assert not tb.valid


def test_bitmap_hole_of_one_tb_does_not_hide_another_tbs_bytes():
    c = Recorder().cache()
    static = make_tb(0x1000, 0x1010)  # built before the page got hot: immediate baked in
    dyn = _with_holes(make_tb(0x1004, 0x1010, pc=0x1004), (0x1008, 0x100C))  # a jump into the middle
    c.link(static)
    c.link(dyn)
    # without the bitmap the per-TB hole check is right:
    assert c.invalidate_phys_range(0x1008, 0x1009) == 1 and not static.valid and dyn.valid
    static = make_tb(0x1000, 0x1010)
    c.link(static)
    for _ in range(SMC_BITMAP_USE_THRESHOLD):
        c.invalidate_phys_range_fast(0x1800, 1)
    c.invalidate_phys_range_fast(0x1008, 1)
    assert not static.valid


def test_flush_drops_everything_and_unprotects():
    r = Recorder()
    c = r.cache()
    for start in (0x1000, 0x1100, 0x3FF0):
        c.link(make_tb(start, start + 0x20))
    c.flush()
    assert c.tbs == {} and c.pages == {}
    assert sorted(r.unprotected) == [0x1000, 0x3000, 0x4000]


def test_on_invalidate_callbacks():
    c = Recorder().cache()
    seen = []
    c.on_invalidate.append(seen.append)
    tb = make_tb(0x1000, 0x1010)
    c.link(tb)
    c.invalidate(tb)
    c.invalidate(tb)  # idempotent
    assert seen == [tb]


# ---- through the real translator -----------------------------------------------------------


def boot(code: bytes, at: int = 0x1000, max_insns: int = 10_000, follow: bool = False) -> Machine:
    m = Machine(ram_size=1 << 20)
    m.translator.follow_jumps = follow  # one TB per straight run (TWO_TBS: two TBs)
    m.mem.write(at, code)
    m.cpu.setup_flat32()
    m.cpu.eip = at
    m.stop = m.run(max_insns=max_insns)
    return m


def tbs_by_pc(m: Machine) -> dict[int, TB]:
    return {tb.pc: tb for tb in m.tbs.tbs.values()}


def code_bit(m: Machine, paddr: int) -> bool:
    return m.dirty.get_dirty(DIRTY_MEMORY_CODE, paddr >> 12)


# 0x1000: nop; nop; jmp 0x1020  |  0x1020: nop; mov al, 7; out; hlt
TWO_TBS = (NOP * 2 + b"\xeb\x1c").ljust(0x20, b"\xcc") + NOP + EXIT7


def test_guest_runs_and_links_tbs():
    m = boot(TWO_TBS)
    assert m.stop.kind == "exit" and m.exit_code == 15
    tbs = tbs_by_pc(m)
    assert set(tbs) == {0x1000, 0x1020}
    assert tbs[0x1000].ranges == ((0x1000, 0x1004),)
    ((start, end),) = tbs[0x1020].ranges
    assert start == 0x1020 and end in (0x1025, 0x1026)  # the out ends the TB (or the hlt after it)


def test_link_protects_the_page():
    m = boot(TWO_TBS)
    assert list(m.tbs.pages) == [0x1000]
    assert not code_bit(m, 0x1000), "Machine._protect_code clears the CODE dirty bit"
    assert code_bit(m, 0x2000)
    # the write tag of the code page carries TLB_NOTDIRTY (protect_code on the live entry)
    assert m.cpu.tlb.d[KERNEL].write[1] == 0x1000 | TLB_NOTDIRTY
    assert m.cpu.tlb.d[KERNEL].read[1] == 0x1000


def test_debugger_write_invalidates_only_the_overlapping_tb():
    m = boot(TWO_TBS)
    tbs = tbs_by_pc(m)
    m.mem.write(0x1010, b"\xcc")  # between the two TBs
    assert tbs[0x1000].valid and tbs[0x1020].valid
    m.mem.write(0x1024, b"\xf4")
    assert tbs[0x1000].valid and not tbs[0x1020].valid
    assert not code_bit(m, 0x1000)
    m.mem.write(0x1003, b"\x1c")
    assert not tbs[0x1000].valid
    assert code_bit(m, 0x1000), "unprotected when the last TB goes"
    assert m.tbs.pages == {}


def test_store_through_the_softmmu_invalidates_and_unprotects():
    m = boot(TWO_TBS)
    tbs = tbs_by_pc(m)
    mmu = m.cpu.softmmu
    mmu.store(KERNEL, 0x1021, 1, 0x90)  # the b0 of mov al, 7 becomes a nop
    assert not tbs[0x1020].valid and tbs[0x1000].valid
    mmu.store(KERNEL, 0x1000, 2, 0x9090)  # the same bytes: nothing goes stale
    assert tbs[0x1000].valid
    mmu.store(KERNEL, 0x1000, 2, 0x4040)
    assert not tbs[0x1000].valid
    assert code_bit(m, 0x1000)
    assert m.cpu.tlb.d[KERNEL].write[1] == 0x1000, "the store that emptied the page drops TLB_NOTDIRTY"
    n = m.stats()["notdirty_writes"]
    mmu.store(KERNEL, 0x1004, 4, 0)
    assert m.stats()["notdirty_writes"] == n


def test_rerun_after_invalidation_sees_new_code():
    m = boot(TWO_TBS)
    m.mem.write(0x1022, b"\x2a")  # mov al, 0x2a
    m.cpu.eip = 0x1000
    assert m.run(max_insns=100).kind == "exit"
    assert m.exit_code == 0x55
    assert m.stats()["tb_built"] == 3


# code crossing the 0x1000/0x2000 boundary: 0x1FF0..0x2008
SPAN_AT = 0x1FF0
SPAN = NOP * 20 + EXIT7


@pytest.mark.parametrize("hit", [0x1FF0, 0x1FFF, 0x2000, 0x2005])
@pytest.mark.parametrize("how", ["store", "debugger"])
def test_tb_spanning_two_pages_invalidated_by_a_write_to_either(hit, how):
    m = boot(SPAN, at=SPAN_AT)
    assert m.exit_code == 15
    (tb,) = m.tbs.tbs.values()
    assert tb.pages == (0x1000, 0x2000)
    assert not code_bit(m, 0x1000) and not code_bit(m, 0x2000)
    if how == "store":
        m.cpu.softmmu.store(KERNEL, hit, 1, 0x40 if m.mem.read(hit, 1) == NOP else 0x90)
    else:
        m.mem.write(hit, NOP)
    assert not tb.valid
    assert m.tbs.pages == {}
    assert code_bit(m, 0x1000) and code_bit(m, 0x2000), "both pages unprotected"


def test_write_next_to_a_spanning_tb_leaves_it():
    m = boot(SPAN, at=SPAN_AT)
    (tb,) = m.tbs.tbs.values()
    assert tb.ranges[0] == (0x1FF0, 0x2000)
    m.cpu.softmmu.store(KERNEL, 0x1FEF, 1, 0)
    m.cpu.softmmu.store(KERNEL, tb.ranges[1][1], 4, 0)
    assert tb.valid


def test_code_bitmap_on_a_real_page():
    m = boot(NOP * 3 + EXIT7)  # one TB: [0x1000, 0x1007) (0x1008 if it takes the hlt too)
    (tb,) = m.tbs.tbs.values()
    ((start, end),) = tb.ranges
    assert start == 0x1000 and end in (0x1007, 0x1008)
    mmu = m.cpu.softmmu
    n = SMC_BITMAP_USE_THRESHOLD + 4
    for k in range(n):
        mmu.store(KERNEL, 0x1800 + 4 * k, 4, k + 1)  # data next to code, same page
    s = m.stats()
    assert tb.valid
    assert s["notdirty_writes"] == n, "the page is still protected: every store goes slow"
    assert s["bitmap_builds"] == 1
    assert s["bitmap_skips"] == n - SMC_BITMAP_USE_THRESHOLD + 1
    assert m.mem.read(0x1800 + 4 * (n - 1), 4) == n.to_bytes(4, "little"), "skipped stores still happen"
    mmu.store(KERNEL, end, 2, 0x5555)  # right after the code: skipped
    assert tb.valid
    mmu.store(KERNEL, 0x1004, 1, 0x2A)  # the mov's immediate
    assert not tb.valid
    assert m.tbs.stats["bitmap_skips"] == s["bitmap_skips"] + 1


def test_smc_restart_from_a_store_into_the_running_tb():
    m = boot(NOP * 3 + EXIT7)
    (tb,) = m.tbs.tbs.values()
    m.tbs.current = tb
    try:
        with pytest.raises(SMCRestart):
            m.cpu.softmmu.store(KERNEL, 0x1004, 1, 0x2A)
    finally:
        m.tbs.current = None
    assert m.mem.read(0x1004, 1) == b"\x07", "SMCRestart is raised before the store happens"
    assert not tb.valid
    assert m.tbs.stats["smc_restarts"] == 1
    m.cpu.softmmu.store(KERNEL, 0x1004, 1, 0x2A)  # the replay: nothing running is hit any more
    assert m.mem.read(0x1004, 1) == b"\x2a"


def test_precise_smc_end_to_end():
    """A store that patches a later instruction of the same TB: the patched code must run."""
    code = (
        b"\xc6\x05\x08\x10\x00\x00\x2a"  # 0x1000: mov byte [0x1008], 0x2a
        b"\xb0\x01"  # 0x1007: mov al, 1   (its immediate is at 0x1008)
        b"\xe6\xf4"  # 0x1009: out 0xf4, al
        b"\xf4"  # hlt
    )
    m = boot(code)
    assert m.stop.kind == "exit"
    assert m.exit_code == (0x2A << 1) | 1
    assert m.stats()["smc_restarts"] == 1
