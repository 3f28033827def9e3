"""The debugger's machinery at the Machine level: breakpoints as TB marks, watchpoints as TLB flags, steps.

The same mechanisms back gdb's Z packets (tests/e2e/test_gdb_e2e.py drive them through
gdb); here they are checked directly against the guest tests/support/guests/debug.s,
including the guest's own DR7 breakpoints and EFLAGS.TF, which share them.
"""

from __future__ import annotations

from functools import partial

import pytest
from support import build

from gdbemu.debug.memview import peek_linear, read_virtual, write_virtual
from gdbemu.debug.watchlog import WatchLog
from gdbemu.machine import Machine
from gdbemu.softmmu.watchpoint import WATCH_ACCESS, WATCH_READ, WATCH_WRITE

COUNT = 50


@pytest.fixture(scope="module")
def guest(build_guest):
    elf = build_guest("debug")
    return elf, build.symbols(elf)


def boot(guest) -> tuple[Machine, dict]:
    elf, sym = guest
    m = Machine(ram_size=8 << 20)
    m.load_elf(str(elf))
    return m, sym


def rd32(m: Machine, addr: int) -> int:
    return int.from_bytes(read_virtual(m, addr, 4), "little")


def run_free(m: Machine):
    stop = m.run(max_insns=5_000_000)
    assert stop.kind == "exit", stop
    return stop


def test_runs_clean_without_debugging(guest):
    m, sym = boot(guest)
    run_free(m)
    assert rd32(m, sym["counter"]) == 3 * COUNT
    assert rd32(m, sym["int30_count"]) == 1
    assert m.cpu.regs[2] == 0x1234  # the patched immediate ran
    assert rd32(m, sym["db_count"]) >= 2 + 3  # DR0 exec, DR1 write, TF steps


def test_breakpoint_stops_before_the_instruction_every_iteration(guest):
    m, sym = boot(guest)
    addr = sym["store_insn"]
    m.breakpoints.add(addr)
    seen = []
    for i in range(COUNT):
        stop = m.run(max_insns=1_000_000)
        assert stop.kind == "debug" and stop.reason == "swbreak" and stop.addr == addr
        assert m.cpu.eip == addr
        assert rd32(m, sym["counter"]) == 3 * i  # the store has not run yet
        seen.append(m.cpu.regs[0])
        m.breakpoints.skip_once = addr  # resume from the breakpoint: run the instruction
    assert seen == [3 * (i + 1) for i in range(COUNT)]
    m.breakpoints.remove(addr)
    run_free(m)
    assert m.breakpoints.hits == COUNT


def test_breakpoints_are_invisible_to_the_guest_checksum(guest):
    m0, sym = boot(guest)
    run_free(m0)
    clean = rd32(m0, sym["checksum"])
    m, _ = boot(guest)
    code = range(sym["_start"], sym["code_end"], 3)
    for addr in list(code)[:100]:
        m.breakpoints.add(addr)
    while True:
        stop = m.run(max_insns=2_000_000)
        if stop.kind != "debug":
            break
        m.breakpoints.skip_once = stop.addr
    assert stop.kind == "exit"
    assert rd32(m, sym["checksum"]) == clean


def test_adding_a_breakpoint_invalidates_only_tbs_containing_it(guest):
    m, sym = boot(guest)
    m.run(max_insns=2000)
    before = m.stats()["tb_invalidated"]
    n_tbs = len(m.tbs.tbs)
    m.breakpoints.add(sym["store_insn"])
    dropped = m.stats()["tb_invalidated"] - before
    assert 1 <= dropped < n_tbs
    assert m.stats().get("tb_flushes", 0) == 0


def test_write_watchpoint_reports_after_the_store(guest):
    m, sym = boot(guest)
    wp = m.watchpoints.add(sym["counter"], 4, WATCH_WRITE)
    for i in range(3):
        stop = m.run(max_insns=1_000_000)
        assert stop.kind == "debug" and stop.reason == "watch", stop
        assert stop.addr == sym["counter"]
        assert m.cpu.eip == sym["after_store"]  # trap-like: PC after the store
        assert rd32(m, sym["counter"]) == 3 * (i + 1)  # the access completed
    m.watchpoints.remove(wp)
    run_free(m)
    assert wp.hits == 3


def test_watch_log_and_a_python_condition_on_the_debugger_hook_points(guest):
    """debug/watchlog.py attached by hand (MachineTarget does the same): hits logged, the condition decides."""
    m, sym = boot(guest)
    log = WatchLog(partial(peek_linear, m.mem))
    m.watchpoints.set_tracer(log)
    m.attach_debugger(log)
    wp = m.watchpoints.add(sym["counter"], 4, WATCH_WRITE)
    log.log_watchpoint(wp)
    log.set_condition(wp, lambda cpu, entry: entry.new == 9)
    stop = m.run(max_insns=1_000_000)
    assert stop.kind == "debug" and stop.reason == "watch" and m.cpu.eip == sym["after_store"]
    assert rd32(m, sym["counter"]) == 9
    assert [(e.old, e.new, e.stopped) for e in log.entries] == [(0, 3, False), (3, 6, False), (6, 9, True)]
    assert log.suppressed == 2 and log.cond_evals == 3
    m.attach_debugger(None)  # detached: every hit reports again, nothing is logged
    m.watchpoints.set_tracer(None)
    assert m.run(max_insns=1_000_000).kind == "debug" and rd32(m, sym["counter"]) == 12
    assert len(log.entries) == 3


def test_read_and_access_watchpoints_report_their_kinds(guest):
    m, sym = boot(guest)
    m.watchpoints.add(sym["readme"], 4, WATCH_READ)
    stop = m.run(max_insns=1_000_000)
    assert (stop.reason, m.cpu.eip) == ("rwatch", sym["after_read"])
    m.watchpoints.remove(m.watchpoints.find(sym["readme"], 4, WATCH_READ))
    m.watchpoints.add(sym["readme"], 4, WATCH_ACCESS)
    stop = m.run(max_insns=1_000_000)
    assert (stop.reason, m.cpu.eip) == ("awatch", sym["after_rmw"])
    assert stop.hit.is_write is False  # the read of the read-modify-write came first
    assert rd32(m, sym["readme"]) == 101


def test_watchpoint_in_rep_stos_stops_after_the_iteration(guest):
    m, sym = boot(guest)
    target = sym["array"] + 4 * 10  # the 11th dword
    m.watchpoints.add(target + 1, 2, WATCH_WRITE)  # unaligned, inside the dword
    stop = m.run(max_insns=1_000_000)
    assert stop.reason == "watch"
    assert stop.addr == target + 1
    assert m.cpu.eip == sym["rep_insn"]  # still on the rep
    assert m.cpu.regs[1] == 40 - 11  # ECX after 11 iterations
    assert m.cpu.regs[7] == target + 4  # EDI past the iteration that hit
    assert rd32(m, target) == 0x5A5A5A5A and rd32(m, target + 4) == 0
    run_free(m)
    assert rd32(m, sym["array"] + 4 * 39) == 0x5A5A5A5A


@pytest.mark.parametrize("offset, expect_hits", [(-2, 1), (-8, 1), (8, 1)])
def test_watchpoint_spanning_a_page_boundary(guest, offset, expect_hits):
    m, sym = boot(guest)
    base = sym["straddle"]
    assert base & 0xFFF == 0
    m.watchpoints.add(base + offset, 2 if offset != -2 else 4, WATCH_WRITE)
    stop = m.run(max_insns=1_000_000)
    assert stop.reason == "watch"
    assert base + min(offset, 0) - 8 <= stop.addr < base + 16


def test_big_watchpoint_across_pages_sees_both_sides(guest):
    m, sym = boot(guest)
    base = sym["straddle"]
    m.watchpoints.add(base - 16, 32, WATCH_WRITE)
    addrs = []
    while True:
        stop = m.run(max_insns=1_000_000)
        if stop.kind != "debug":
            break
        addrs.append(stop.addr)
    assert addrs == [base - 2, base - 8, base + 8]


def test_watchpoint_on_untouched_variable_never_stops(guest):
    m, sym = boot(guest)
    m.watchpoints.add(sym["stack_top"] - 4096, 4, WATCH_ACCESS)  # bottom of an unused stack area
    run_free(m)


def test_breakpoint_on_rewritten_code_hits_and_new_code_runs(guest):
    m, sym = boot(guest)
    m.breakpoints.add(sym["patch_target"])
    stop = m.run(max_insns=1_000_000)
    assert stop.reason == "swbreak" and m.cpu.eip == sym["patch_target"]
    assert read_virtual(m, sym["patch_target"], 5)[1:] == (0x1234).to_bytes(4, "little")
    m.breakpoints.skip_once = sym["patch_target"]
    assert m.step().kind == "step"
    assert m.cpu.regs[2] == 0x1234


def test_gdb_writes_into_code_invalidate_translations(guest):
    m, sym = boot(guest)
    m.breakpoints.add(sym["patch_target"])
    m.run(max_insns=1_000_000)
    m.breakpoints.remove(sym["patch_target"])
    m.step()  # run the already translated mov
    # rewrite the next instruction (a `movl $imm, ...` is not there: write a mov edx, imm ourselves)
    m.breakpoints.add(sym["after_int"])
    m.run(max_insns=1_000_000)
    write_virtual(m, sym["after_int"], b"\xba\x78\x56\x34\x12")  # mov edx, 0x12345678
    m.breakpoints.remove(sym["after_int"])
    m.step()
    assert m.cpu.regs[2] == 0x12345678


def test_step_executes_exactly_one_instruction_and_enters_handlers(guest):
    m, sym = boot(guest)
    m.breakpoints.add(sym["after_store"])
    m.run(max_insns=1_000_000)
    m.breakpoints.remove(sym["after_store"])
    icount = m.cpu.icount
    assert m.step().kind == "step"
    assert m.cpu.icount == icount + 1
    # step to the int $0x30 and through it: lands on the handler's first instruction
    m.breakpoints.add(sym["after_int"] - 2)
    m.run(max_insns=1_000_000)
    m.breakpoints.remove(sym["after_int"] - 2)
    m.step()
    assert m.cpu.eip == sym["int30_handler"]
    m.step()
    m.step()  # iret
    assert m.cpu.eip == sym["after_int"]


def test_guest_dr7_breakpoints_and_tf_deliver_db(guest):
    m, sym = boot(guest)
    run_free(m)
    n = rd32(m, sym["db_count"])
    dr6 = [rd32(m, sym["db_dr6"] + 4 * i) for i in range(n)]
    eip = [rd32(m, sym["db_eip"] + 4 * i) for i in range(n)]
    # 1: execute breakpoint DR0 (a fault: EIP of the instruction, B0)
    assert eip[0] == sym["dr_target"] and dr6[0] & 1
    # 2: data breakpoint DR1 (a trap: EIP after the store, B1)
    assert eip[1] == sym["after_dr_store"] and dr6[1] & 2
    # then single steps (BS) after each instruction with TF set at its start
    assert all(d & 0x4000 for d in dr6[2:])
    # nop, nop, pushf, andl, popf: TF was set when the popf that clears it started,
    # so the last trap comes after that popf (SDM vol. 3, 17.3.1.4)
    assert n - 2 == 5


def test_gdb_watchpoint_and_guest_data_breakpoint_coexist(guest):
    m, sym = boot(guest)
    m.watchpoints.add(sym["counter"], 4, WATCH_WRITE)
    for _ in range(COUNT):
        assert m.run(max_insns=1_000_000).reason == "watch"
    run_free(m)
    assert rd32(m, sym["db_count"]) >= 2
