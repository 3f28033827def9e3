"""Reverse execution in process (debug/replay.py through MachineTarget, as the stub drives it).

Ground truth is the same kernel on a second machine run to the same
instruction count: gdbemu is deterministic, so the states must be equal.
The same paths through real gdb are in tests/e2e/test_reverse.py.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from support import build

from gdbemu.debug.snapshot import capture_cpu
from gdbemu.debug.target import MachineTarget
from gdbemu.hw.pc import PCConfig, build_pc
from gdbemu.machine import Machine
from gdbemu.rsp.target import ResumeAction, StopEvent, StopReplyKind, WatchKind


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        build.toolchain()
    except build.ToolchainMissingError as exc:
        pytest.skip(str(exc))
    return build.build_multitask(tmp_path_factory.mktemp("replaykernel"))


def boot(kernel: Path) -> Machine:
    m = Machine(32 << 20)
    build_pc(m.bus, PCConfig(serial=[io.BytesIO()], no_reboot=True))
    m.load_multiboot(str(kernel))
    return m


def run_to(t: MachineTarget, n: int) -> None:
    m = t.machine
    t.resume([ResumeAction(1, False, None)])
    while m.cpu.icount < n:
        assert t.run_slice(min(100_000, n - m.cpu.icount)) is None
    t.interrupt()
    assert t.run_slice(1) is not None


def reverse_continue(t: MachineTarget) -> StopEvent:
    """``bc`` as the server drives it: started, then run_slice until the stop."""
    ev = t.reverse_continue(1)
    while ev is None:
        ev = t.run_slice(100_000)
    return ev


def reverse_step(t: MachineTarget) -> StopEvent:
    """``bs`` as the server drives it."""
    ev = t.reverse_step(1)
    while ev is None:
        ev = t.run_slice(100_000)
    return ev


def test_reverse_stepi_states_are_exact(kernel: Path) -> None:
    end, window = 1_300_000, 40
    truth = boot(kernel)
    truth.run(max_insns=end - window)
    want = {}
    for _ in range(window):
        want[truth.cpu.icount] = capture_cpu(truth.cpu)
        truth.run(max_insns=1)
    t = MachineTarget(boot(kernel))
    run_to(t, end)
    assert t.supports_reverse() is t
    for n in range(1, window + 1):
        ev = reverse_step(t)
        assert ev.reason is StopReplyKind.SIGNAL
        assert t.machine.cpu.icount == end - n
        assert capture_cpu(t.machine.cpu) == want[end - n], f"state {n} steps back differs"
    # Forward through history, then live again at the present.
    for _ in range(window):
        t.resume([ResumeAction(1, True, None)])
        assert t.run_slice(1000) is not None
    assert t.history is not None and not t.history.in_past
    assert t.machine.cpu.icount == end


def test_reverse_continue_watch_and_the_history_bound(kernel: Path) -> None:
    t = MachineTarget(boot(kernel))
    h = t._history()
    assert h is not None
    h.interval = 200_000
    run_to(t, 1_000_000)
    assert len(h.segments) >= 5
    # A write watchpoint on the kernel's stack page: the latest write before now, stopped before it.
    esp = t.machine.cpu.regs[4]
    t.supports_watchpoints().add(WatchKind.WRITE, esp & ~3, 4)
    ev = reverse_continue(t)
    assert ev.reason is StopReplyKind.WATCH
    assert h.in_past
    # The bound: the oldest segments go first; reverse-continue then ends at the (new) start.
    t.supports_watchpoints().remove(WatchKind.WRITE, esp & ~3, 4)
    h.to_present()
    h.limit_bytes = 1
    h._bound()
    assert len(h.segments) == 2
    ev = reverse_continue(t)
    assert ev.reason is StopReplyKind.HISTORY_BEGIN
    assert t.machine.cpu.icount == h.segments[0].start > 0


def test_new_input_in_the_past_discards_the_future(kernel: Path) -> None:
    t = MachineTarget(boot(kernel))
    run_to(t, 300_000)
    for _ in range(3):
        reverse_step(t)
    h = t.history
    assert h is not None and h.in_past
    t.write_memory(1, 0x200000, b"\x01\x02")
    assert not h.in_past
    assert "discarded" in h.notices[-1]
    assert t.machine.cpu.icount == 300_000 - 3
    t.resume([ResumeAction(1, True, None)])
    assert t.run_slice(1000) is not None
    assert t.machine.cpu.icount == 300_000 - 2


def test_the_newest_checkpoint_trails_a_live_run(kernel: Path) -> None:
    """A tail checkpoint at most ``tail`` behind the run, replaced as it goes: the first step back is short."""
    t = MachineTarget(boot(kernel))
    h = t._history()
    assert h is not None
    h.interval, h.tail, h.tail_seconds = 400_000, 50_000, 0.0
    run_to(t, 1_000_000)
    starts = [seg.start for seg in h.segments]
    assert 1_000_000 - starts[-1] <= h.tail  # taken inside a slice, not where the run stopped
    # One checkpoint per interval and two tails: the older tails are gone, their snapshots too.
    assert sum(1 for seg in h.segments if 1_000_000 - seg.start < h.interval) <= 3, starts
    assert len(h.segments) <= 1_000_000 // h.interval + 3, starts
    assert len([s for s in h.store.snapshots.values() if s.name.startswith("#h")]) == len(h.segments)
    assert all(a.end == b.start for a, b in zip(h.segments, h.segments[1:], strict=False))
    replayed = h.replayed_insns
    reverse_step(t)
    assert h.replayed_insns - replayed <= h.tail + 3 * h.split
    assert t.machine.cpu.icount == 1_000_000 - 1


def test_ctrl_c_ends_a_reverse_continue_where_its_replay_is(kernel: Path) -> None:
    """``bc`` runs through run_slice; an interrupt there stops it cleanly at an exact past state."""
    t = MachineTarget(boot(kernel))
    h = t._history()
    assert h is not None
    h.interval = 600_000
    run_to(t, 1_200_000)
    t.supports_sw_breakpoints().add(0x7FFF0, 1)  # never executed: every interval is searched
    assert t.reverse_continue(1) is None  # started
    assert t.run_slice(1000) is None  # a piece of the search
    t.interrupt()
    ev = t.run_slice(1000)
    assert ev is not None and ev.reason is StopReplyKind.SIGNAL and ev.signal == 2  # SIGINT
    assert h.in_past
    at = t.machine.cpu.icount
    assert 0 < at < 1_200_000
    truth = boot(kernel)
    truth.run(max_insns=at)
    assert capture_cpu(t.machine.cpu) == capture_cpu(truth.cpu)
    # From there, forward to the present again (the breakpoint is never hit).
    t.supports_sw_breakpoints().remove(0x7FFF0, 1)
    t.resume([ResumeAction(1, False, None)])
    for _ in range(20):  # the search forward through the past, in pieces, then live
        assert t.run_slice(1000) is None
        if not h.in_past:
            break
    assert not h.in_past
    assert t.machine.cpu.icount == 1_200_000
    assert t.run_slice(1000) is None  # live
    assert t.machine.cpu.icount == 1_200_000 + 1000


def test_stepping_across_an_interrupt_delivery_both_ways(kernel: Path) -> None:
    """A hardware interrupt taken between two instructions is a step of its own, backwards and forwards.

    Ground truth, on a second machine: the state a run stops at (``run``), then
    the delivery alone (``Machine.step(irq=True)`` takes the pending interrupt
    and runs nothing), then instruction after instruction.
    """
    probe = boot(kernel)
    taken: list[int] = []
    probe.trace.interrupt = lambda cpu, vector, soft, code, eip: (
        taken.append(cpu.icount) if vector >= 32 and not soft else None
    )
    probe.run(max_insns=1_200_000)
    at = next(n for n in reversed(taken) if 300_000 < n < 1_150_000)  # an IRQ (the timer's, the UART's)
    after = 5
    truth = boot(kernel)
    truth.run(max_insns=at - 2)
    states = [capture_cpu(truth.cpu)]  # (at-2, 0)
    truth.run(max_insns=1)
    states.append(capture_cpu(truth.cpu))  # (at-1, 0)
    truth.run(max_insns=1)
    states.append(capture_cpu(truth.cpu))  # (at, 0): the interrupted instruction, before the delivery
    assert truth.step(irq=True).kind == "step" and truth.cpu.icount == at
    states.append(capture_cpu(truth.cpu))  # (at, 1): the handler's first instruction, before it runs
    assert states[-1]["eip"] != states[-2]["eip"]
    for _ in range(after):
        truth.run(max_insns=1)
        states.append(capture_cpu(truth.cpu))  # (at+1, 0) ...
    t = MachineTarget(boot(kernel))
    run_to(t, at + after)
    assert capture_cpu(t.machine.cpu) == states[-1]
    for want in reversed(states[:-1]):
        assert reverse_step(t).reason is StopReplyKind.SIGNAL
        assert capture_cpu(t.machine.cpu) == want, (t.machine.cpu.icount, at)
    for want in states[1:]:
        t.resume([ResumeAction(1, True, None)])
        assert t.run_slice(1000) is not None
        assert capture_cpu(t.machine.cpu) == want, (t.machine.cpu.icount, at)
    assert t.history is not None and not t.history.in_past


def test_ctrl_c_ends_a_long_reverse_step(kernel: Path) -> None:
    """``bs`` whose replay is long (no checkpoint near) stops cleanly on an interrupt, at an exact state."""
    t = MachineTarget(boot(kernel))
    h = t._history()
    assert h is not None
    h.interval = h.tail = 10**9  # one checkpoint, at the start
    run_to(t, 900_000)
    assert t.reverse_step(1) is None  # started
    assert t.run_slice(1000) is None
    t.interrupt()
    ev = t.run_slice(1000)
    assert ev is not None and ev.reason is StopReplyKind.SIGNAL and ev.signal == 2
    at = t.machine.cpu.icount
    assert h.in_past and 0 < at < 900_000
    truth = boot(kernel)
    truth.run(max_insns=at)
    assert capture_cpu(t.machine.cpu) == capture_cpu(truth.cpu)
    # And stepping back from there is exact too.
    reverse_step(t)
    truth = boot(kernel)
    truth.run(max_insns=at - 1)
    assert t.machine.cpu.icount == at - 1
    assert capture_cpu(t.machine.cpu) == capture_cpu(truth.cpu)


def step(t: MachineTarget) -> None:
    t.resume([ResumeAction(1, True, None)])
    assert t.run_slice(1000) is not None


def test_checkpoints_after_steps_are_lazy_and_exact(kernel: Path) -> None:
    """After a stop, the next segment takes no checkpoint until history is visited (replay.py's
    "lazy checkpoints"): stepping back and forth through them gives the live states exactly, a
    continue that follows a step too; gdb's writes and monitor commands still take a checkpoint."""
    start, steps, run = 300_000, 30, 5_000
    t = MachineTarget(boot(kernel))
    run_to(t, start)
    h = t.history
    assert h is not None
    live = [capture_cpu(t.machine.cpu)]
    for i in range(steps):
        if i == 10:
            assert "monitor commands" in t.supports_monitor().handle("help")
        if i == 20:
            t.write_memory(1, 0x3FF000, t.read_memory(1, 0x3FF000, 4))  # outside input, same bytes
        step(t)
        live.append(capture_cpu(t.machine.cpu))
    # Every segment is lazy (the first follows a run stopped by Ctrl-C), but for the ones after the
    # monitor command and the write.
    first = len(h.segments) - steps
    lazy = [seg.saved is None for seg in h.segments[first:]]
    assert lazy == [i not in (10, 20) for i in range(steps)], lazy
    # A continue right after a step: lazy as well; its run is replayed from the step's checkpoint.
    n = t.machine.cpu.icount + run
    run_to(t, n)
    assert h.segments[-1].saved is None and not h.segments[-1].step
    truth = boot(kernel)
    truth.run(max_insns=start)
    for _ in range(steps):
        truth.step(irq=False)
    assert capture_cpu(truth.cpu) == live[-1]
    truth.run(max_insns=run - 1)
    ev = reverse_step(t)
    assert ev.reason is StopReplyKind.SIGNAL and t.machine.cpu.icount == n - 1
    assert capture_cpu(t.machine.cpu) == capture_cpu(truth.cpu)
    assert all(seg.saved is not None for seg in h.segments)  # made on the way into the past
    # Back through the steps, exact, then forward to the present again.
    ev = reverse_continue(t)  # no breakpoints: to the start of history
    assert ev.reason is StopReplyKind.HISTORY_BEGIN
    h.goto(first, h.segments[first].start)
    assert capture_cpu(t.machine.cpu) == live[0]
    for i in range(1, steps + 1):
        step(t)
        assert capture_cpu(t.machine.cpu) == live[i], f"state after step {i} differs"


def test_lazy_checkpoints_after_watchpoint_stops_are_the_live_states(kernel: Path) -> None:
    """Continues that stop at a watchpoint: each next segment is lazy; made on the way into the past,
    each checkpoint holds the state (CPU, the watched page) the live stop had."""
    t = MachineTarget(boot(kernel))
    run_to(t, 300_000)
    h = t.history
    assert h is not None
    page = t.machine.cpu.regs[4] & ~0xFFF
    t.supports_watchpoints().add(WatchKind.WRITE, page, 0x1000)  # the stack: every push stops
    live = []
    for _ in range(40):
        t.resume([ResumeAction(1, False, None)])
        ev = None
        while ev is None:
            ev = t.run_slice(10_000)
        assert ev.reason is StopReplyKind.WATCH
        live.append((t.machine.cpu.icount, capture_cpu(t.machine.cpu), t.read_memory(1, page, 0x1000)))
    t.supports_watchpoints().remove(WatchKind.WRITE, page, 0x1000)
    segs = h.segments[-40:]
    assert sum(seg.saved is None for seg in segs) >= 40 - 40 // (h.LAZY_CHAIN + 1) - 1
    reverse_step(t)  # into the past: every lazy segment gets its checkpoint
    for seg, (icount, cpu, stack) in zip(segs[1:], live, strict=False):
        assert seg.saved is not None and seg.start == icount
        assert seg.saved.state["cpus"][0] == cpu
        h.goto(h.segments.index(seg), seg.start)
        assert t.read_memory(1, page, 0x1000) == stack


def test_reverse_after_lazy_segments_that_cannot_be_rebuilt_stops_at_the_history_left() -> None:
    """Giving lazy segments their checkpoints may drop the oldest (a replay that diverged: here a
    bare machine from reset, whose run does not replay from its first checkpoint); the reverse
    operation then works on the history left (an IndexError once, found by the slow RSP fuzzer)."""
    machine = Machine(ram_size=2 << 20)
    machine.mem.write(0, b"\xeb\xfe" * (1 << 20))  # RAM all `jmp $`, no firmware: as the RSP fuzzer's target
    tgt = MachineTarget(machine)

    def go(step: bool) -> None:
        tgt.resume([ResumeAction(1, step, None)])
        for i in range(50):
            if i == 1:
                tgt.interrupt()  # gdb's Ctrl-C
            if tgt.run_slice(500) is not None:
                return
        raise AssertionError("no stop")

    for _ in range(3):
        go(False)
    assert tgt.write_register(1, 8, (0x12).to_bytes(4, "little"))  # outside input: the step gets a checkpoint
    go(True)
    h = tgt.history
    assert h is not None and [s.saved is None for s in h.segments] == [False, True, True, False]
    stop = h.reverse_continue()
    assert stop.kind == "begin"
    assert all(s.saved is not None for s in h.segments)
    stop = h.reverse_step() if h.segments else stop
    assert stop.kind in ("begin", "step")
