"""Watchpoints are ranges, not pages (issue 14 item 1, issue 12's watchpoint cost).

The registry (softmmu/watchpoint.py) keeps an interval index; inserting a
watchpoint over the whole address space costs what one byte costs, a TLB fill
asks whether a range overlaps its page, and insertion or removal drops only
the TLB entries inside the range (nothing, and no jump cache, elsewhere).
"""

from __future__ import annotations

import random
import tracemalloc

from test_fuzz_rsp import _machine_stub, one

from gdbemu.machine import Machine
from gdbemu.softmmu.tlb import CPUTLB, PAGE_SIZE
from gdbemu.softmmu.watchpoint import WATCH_ACCESS, WATCH_READ, WATCH_WRITE, WatchKind, WatchpointList


class _Recorder:
    def __init__(self) -> None:
        self.ranges: list[tuple[int, int]] = []

    def __call__(self, vaddr: int, length: int) -> None:
        self.ranges.append((vaddr, length))


def test_insertion_does_not_depend_on_the_length():
    flushes = _Recorder()
    wl = WatchpointList(flushes)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    wl.add(0, 1 << 32, WATCH_WRITE)
    wl.add(0x1000, 0xFFFFFFFF, WATCH_READ)
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert grown < 4096  # two small objects, not a dict entry per page
    assert flushes.ranges == [(0, 1 << 32), (0x1000, 0xFFFFFFFF)]  # one range flush each
    assert wl.page_flags(0xFFFFF000) == (True, True)
    assert wl.page_flags(0) == (False, True)


def test_overlap_queries_match_brute_force():
    rng = random.Random(14)
    wl = WatchpointList(lambda vaddr, length: None)
    for _ in range(300):
        if wl.wps and rng.random() < 0.3:
            wl.remove(rng.choice(wl.wps))
        else:
            length = rng.choice([1, 2, 4, 8, rng.randrange(1, 1 << 16), rng.randrange(1, 1 << 32)])
            wl.add(rng.randrange(1 << 32), length, WatchKind(rng.choice([1, 2, 3])))
        for _ in range(5):
            start = rng.randrange(1 << 32)
            end = start + rng.choice([1, 4, PAGE_SIZE, 1 << 20])
            want = [wp for wp in wl.wps if wp.vaddr < end and start < wp.end]
            assert wl.overlapping(start, end) == want  # insertion order kept
            page = start & -PAGE_SIZE
            kinds = 0
            for wp in wl.wps:
                if wp.vaddr < page + PAGE_SIZE and page < wp.end:
                    kinds |= wp.kind
            assert wl.page_flags(page) == (bool(kinds & WATCH_READ), bool(kinds & WATCH_WRITE))


def test_range_flush_drops_only_the_entries_inside():
    tlb = CPUTLB()
    told: list[int | None] = []
    tlb.on_flush.append(told.append)
    for page in (0x1000, 0x5000, 0x40000000):
        tlb.set_page(0, page, page, 7, PAGE_SIZE, page, 0, 0)
    tlb.flush_range(0x2000, 0x3000)  # no entry in [0x2000, 0x5000)
    assert told == [] and tlb.stats.flush_elided == 1
    tlb.flush_range(0x3000, 0x3000)  # covers 0x5000
    assert told == [None]
    assert tlb.d[0].vpage.count(-1) == len(tlb.d[0].vpage) - 2
    tlb.flush_range(0, 1 << 32)  # the whole space: a scan, not a walk over a million pages
    assert all(v == -1 for v in tlb.d[0].vpage)


def test_untouched_watchpoints_flush_nothing_and_invalidate_no_code():
    """1,000 watchpoints on pages with no TLB entry and no code: no flush, no jump-cache loss, no TB lost."""
    m = Machine(ram_size=4 << 20)
    program = bytes.fromhex("b8000000004040ebfd")  # mov eax,0; inc eax; inc eax; jmp $-1
    m.mem.write(0x100000, program)
    m.cpu.setup_flat32()
    m.cpu.eip = 0x100000
    assert m.run(max_insns=1000).kind == "limit"
    tbs = len(m.tbs.tbs)
    jmp = dict(m.cpu.jmp_cache)
    stats = m.cpu.tlb.stats
    flushes = stats.flush_page + stats.flush_full + stats.flush_large
    wps = [m.watchpoints.add(0x200000 + 0x1000 * i, 4, WATCH_ACCESS) for i in range(1000)]
    for wp in wps:
        m.watchpoints.remove(wp)
    assert stats.flush_page + stats.flush_full + stats.flush_large == flushes
    assert m.cpu.jmp_cache == jmp and len(m.tbs.tbs) == tbs
    assert m.stats()["tb_invalidated"] == 0


def test_whole_space_watchpoint_through_the_stub_answers_at_once():
    stub, machine = _machine_stub()
    assert one(stub, b"Z2,0,100000000") == b"OK"  # all of a 32-bit address space
    assert one(stub, b"Z3,0,ffffffff") == b"OK"
    assert one(stub, b"z3,0,ffffffff") == b"OK"
    assert len(machine.watchpoints.wps) == 1
    assert one(stub, b"z2,0,100000000") == b"OK"
    assert not machine.watchpoints.wps


def test_whole_space_watchpoint_hits_the_first_store():
    m = Machine(ram_size=4 << 20)
    m.mem.write(0x100000, bytes.fromhex("b8aa000000a300300000c705003000000100000040ebfd"))
    # mov eax,0xaa; mov [0x3000],eax; mov dword [0x3000],1; inc eax; jmp $-1
    m.cpu.setup_flat32()
    m.cpu.eip = 0x100000
    m.watchpoints.add(0, 1 << 32, WATCH_WRITE)
    stop = m.run(max_insns=1000)
    assert stop.kind == "debug" and stop.reason == "watch" and stop.addr == 0x3000, stop
    assert m.cpu.eip == 0x10000A
    stop = m.run(max_insns=1000)
    assert stop.kind == "debug" and stop.addr == 0x3000 and m.cpu.eip == 0x100014, stop
