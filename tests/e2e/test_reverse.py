"""Reverse debugging with real gdb (gdbemu.testing): reverse-stepi, reverse-continue, savevm/loadvm.

Ground truth for register states is the same kernel on a machine built from
the same command line (``cli.board.build_board``) and run with
``Machine.run(max_insns=N)``: gdbemu is deterministic, so the state at
instruction N is known exactly.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from support import build

from gdbemu.cli.board import build_board
from gdbemu.cli.options import parse_args
from gdbemu.core.cpu import REG_NAMES
from gdbemu.machine import Machine
from gdbemu.testing import BuildError, Session, SessionTimeout, build_kernel

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
pytestmark = pytest.mark.gdb


@pytest.fixture(scope="module")
def multitask(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        build.toolchain()
    except build.ToolchainMissingError as exc:
        pytest.skip(str(exc))
    return build.build_multitask(tmp_path_factory.mktemp("revkernel"))


@pytest.fixture(scope="module")
def stray(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        return build_kernel(
            [EXAMPLES / "stray_write.c"],
            tmp_path_factory.mktemp("stray") / "stray.elf",
            ldscript=EXAMPLES / "stray_write.ld",
        )
    except BuildError as exc:
        if exc.missing_tool:
            pytest.skip(str(exc))
        raise


def icount(s: Session) -> int:
    m = re.search(r"icount=(\d+)", s.monitor("info registers"))
    assert m, "monitor info registers shows no icount"
    return int(m.group(1))


def truth(kernel: Path, n: int) -> Machine:
    """The machine of the session's command line, run to instruction ``n`` from power-on."""
    board = build_board(parse_args([str(kernel), "-serial", "null", "-debugcon", "null", "-no-reboot"]))
    machine = board.machine
    while machine.cpu.icount < n:
        machine.run(max_insns=n - machine.cpu.icount)
    return machine


def same_registers(s: Session, m: Machine) -> None:
    regs = s.registers()
    cpu = m.cpu
    want = {name: cpu.regs[i] for i, name in enumerate(REG_NAMES)}
    want["eip"] = cpu.eip
    want["eflags"] = cpu.get_eflags()
    want["cs"] = cpu.segs[1].selector
    want["ss"] = cpu.segs[2].selector
    got = {k: regs[k] for k in want}
    assert got == want


@pytest.mark.slow
@pytest.mark.parametrize("handler", ["isr14", "isr32"], ids=["page-fault", "timer-irq"])
def test_reverse_stepi_exact_across_faults_and_interrupts(gdbemu, multitask: Path, handler: str) -> None:
    """Stopped at a handler's first instruction, reverse-stepi gives the states before the delivery, exactly."""
    s = gdbemu(multitask)
    s.break_at(handler)
    stop = s.cont()
    assert stop.function == handler
    s.gdb_command("delete")
    at = icount(s)
    # First step back: the instruction that faulted / was interrupted, at the same icount.
    back = s.reverse_stepi()
    assert back.reason == "step"
    assert icount(s) == at
    ring3_or_kernel = s.registers()
    assert ring3_or_kernel["eip"] != stop.pc
    m = truth(multitask, at)
    same_registers(s, m)
    for n in range(1, 6):
        s.reverse_stepi()
        assert icount(s) == at - n
        same_registers(s, truth(multitask, at - n))
    # And forward again through the recorded history: the instruction, then the delivery, a step of
    # its own as going back (the handler's first instruction, at the same icount).
    for _ in range(5):
        s.stepi()
    assert icount(s) == at
    same_registers(s, m)
    s.stepi()
    assert icount(s) == at and s.registers()["eip"] == stop.pc


LOOP_GUEST = """
        .include "lib.inc"
        .text
main:
        movl $ITERS, %ecx
1:      addl $1, %eax
        decl %ecx
        jnz 1b
        .globl done
done:   nop
        ret
        .globl never
never:  nop
        ret
"""


@pytest.mark.slow
def test_ctrl_c_stops_a_reverse_continue(gdbemu, tmp_path: Path) -> None:
    """gdb's Ctrl-C during a long reverse-continue: a clean SIGINT stop at an exact past state."""
    src = tmp_path / "loop.s"
    src.write_text(LOOP_GUEST)
    try:
        elf = build.build_guest(src, tmp_path, defsyms={"ITERS": 8_000_000})
    except build.ToolchainMissingError as exc:
        pytest.skip(str(exc))
    s = gdbemu(elf)
    s.break_at("done")
    s.cont(timeout=120)
    end = icount(s)
    s.gdb_command("delete")
    s.break_at("never")  # never reached: the search goes through the whole history
    with pytest.raises(SessionTimeout, match="interrupted"):
        s.reverse_continue(timeout=0.5)
    assert s.stops[-1].signal == "SIGINT", s.stops[-1].describe()
    at = icount(s)
    assert 0 < at < end
    same_registers(s, truth(elf, at))
    assert s.reverse_stepi().reason == "step"  # and the session goes on from there
    assert icount(s) == at - 1


def test_watch_reverse_continue_finds_the_stray_write(gdbemu, stray: Path) -> None:
    """After the damage is done, watch every obj->count and reverse-continue: flush_stats's store."""
    s = gdbemu(stray)
    s.break_at("flush_stats")
    s.cont()
    s.gdb_command("delete")
    s.finish()  # the stray write has happened now
    nobj = s.read_int("sizeof(pool) / sizeof(pool[0])")
    for i in range(nobj):
        s.watch(f"pool[{i}].count")
    stop = s.reverse_continue()
    assert stop.reason == "watchpoint", stop.describe()
    assert stop.function == "flush_stats", stop.describe()
    # Going back, gdb's "old" value is the later one (the stray 0), "new" the earlier one.
    assert stop.old == "0" and stop.new not in (None, "0"), stop.describe()
    assert s.read_int(stop.expression or "") == int(stop.new or "-1")
    # Before it, the previous write was made by owner_update.
    prev = s.reverse_continue()
    assert prev.reason == "watchpoint" and prev.function == "owner_update", prev.describe()


def test_breakpoints_hit_in_reverse(gdbemu, stray: Path) -> None:
    """reverse-continue stops at the previous hit of a breakpoint, with that hit's arguments."""
    s = gdbemu(stray)
    s.break_at("owner_update")
    counts = []
    for _ in range(4):
        stop = s.cont()
        assert stop.function == "owner_update"
        counts.append(s.read_int("count"))
    back = s.reverse_continue()
    assert back.reason == "breakpoint" and back.function == "owner_update"
    assert s.read_int("count") == counts[-2]
    back = s.reverse_continue()
    assert s.read_int("count") == counts[-3]
    # reverse-finish goes back to the call; continue replays forward to the next recorded hit.
    assert s.reverse_finish().function != "owner_update"
    fwd = s.cont()
    assert fwd.function == "owner_update" and s.read_int("count") == counts[-3]


def test_start_of_history_and_writes_in_the_past(gdbemu, stray: Path) -> None:
    """reverse-continue with nothing earlier stops at the start (no-history); a write there discards the future."""
    s = gdbemu(stray)
    s.break_at("owner_update")
    s.cont()
    s.gdb_command("delete")
    start = s.reverse_continue()
    assert start.reason == "no-history", start.describe()
    assert icount(s) == 0
    s.stepi()
    s.write("$eax", 0x1234)  # new input in the past
    assert "discarded" in s.monitor("info history")
    stop = s.stepi()
    assert stop.reason == "step"


@pytest.mark.slow
def test_savevm_loadvm_over_gdb(gdbemu, multitask: Path, tmp_path: Path) -> None:
    """monitor savevm / loadvm / info snapshots / delvm, as QEMU spells them, and -loadvm at start."""
    snapfile = tmp_path / "mt.snapshots"
    s = gdbemu(multitask, extra_args=["-snapshot-file", str(snapfile)])
    s.break_at("schedule")
    s.cont()
    at = icount(s)
    regs = s.registers()
    assert "saved" in s.monitor("savevm booted")
    assert "booted" in s.monitor("info snapshots")
    s.cont()
    assert icount(s) > at
    s.monitor("loadvm booted")
    s.gdb_command("maintenance flush register-cache")
    assert icount(s) == at and s.registers() == regs
    s.close()
    # A new process starts from the snapshot.
    s2 = gdbemu(multitask, extra_args=["-snapshot-file", str(snapfile), "-loadvm", "booted"])
    assert icount(s2) == at and s2.registers()["eip"] == regs["eip"]
    s2.monitor("delvm booted")
    assert "no snapshot" in s2.monitor("info snapshots")


@pytest.mark.slow
def test_booted_fixture_restores_the_snapshot(gdbemu_booted, multitask: Path) -> None:
    """gdbemu_booted: boot once, snapshot, restore per use -- also after the guest ran to its end."""
    s = gdbemu_booted(multitask, until="schedule")
    at, regs = icount(s), s.registers()
    spare = regs["esp"] - 512  # below the stack pointer: written by nothing before the restore checks it
    word = s.read_memory(spare, 4)
    s.write_memory(spare, b"\xde\xad\xbe\xef")
    s.break_at("isr32")
    s.cont()
    assert icount(s) > at
    again = gdbemu_booted(multitask, until="schedule")
    assert again is s
    assert icount(s) == at and s.registers() == regs
    assert s.read_memory(spare, 4) == word
    assert s.cont().reason == "exited"  # no breakpoint left from before the restore
    fresh = gdbemu_booted(multitask, until="schedule")  # the guest ended: a new process, from the file
    assert fresh is not s
    assert icount(fresh) == at and fresh.registers() == regs
