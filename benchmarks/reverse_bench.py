#!/usr/bin/env python3
"""Snapshots and reverse execution: what they cost.

Usage: python benchmarks/reverse_bench.py [--quick] [--history N] [--interval N]

In-process, on ``debug.target.MachineTarget`` (the object the GDB stub
drives; gdb's own round trip adds its few milliseconds on top):

1. Recording overhead: the multitask kernel (tests/support/kernels) run to
   its exit through ``run_slice`` with recording on, against recording off.
2. ``reverse-stepi`` after N instructions of history (``--history``,
   default 100 M; benchmarks/reverse_loop.s): the first step back (it
   replays from the newest tail checkpoint, which trails a live run by
   about ``History.tail_seconds`` of running) and the next ones (at most
   ``History.split`` instructions each).
3. ``reverse-continue`` with a write watchpoint to the write made at the
   start of that history (the whole history back): the
   per-interval dirty page sets skip every interval that did not write the
   watched page.
4. ``loadvm`` of a booted kernel on a 128 MiB machine with 10 MiB touched
   since the snapshot, and a cold ``-loadvm`` (every page restored).
5. History memory per million instructions, for both guests.

Times are CPU seconds of this process (``time.process_time``): on an idle
machine they equal wall time, and on a shared one they stay comparable.
These are measurements, not tests: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from support import build  # noqa: E402

from gdbemu.debug.snapshot import SnapshotStore  # noqa: E402
from gdbemu.debug.target import MachineTarget  # noqa: E402
from gdbemu.hw.pc import PCConfig, build_pc  # noqa: E402
from gdbemu.machine import Machine  # noqa: E402
from gdbemu.rsp.target import ResumeAction, StopEvent, WatchKind  # noqa: E402

SLICE = 1 << 18


def machine(kernel: Path, ram: int = 128 << 20) -> Machine:
    m = Machine(ram)
    build_pc(m.bus, PCConfig(serial=[io.BytesIO()], debugcon="null", no_reboot=True))
    m.load_multiboot(str(kernel))
    return m


def run_target(t: MachineTarget, until: int | None = None) -> float:
    """Continue until the guest ends (or reaches ``until`` instructions); CPU seconds of this process."""
    m = t.machine
    t.resume([ResumeAction(1, False, None)])
    t0 = time.process_time()
    while True:
        n = SLICE if until is None else min(SLICE, until - m.cpu.icount)
        if n <= 0:
            t.interrupt()
            t.run_slice(1)
            break
        ev = t.run_slice(n)
        if ev is not None:
            break
    return time.process_time() - t0


def drive(t: MachineTarget, ev: StopEvent | None) -> StopEvent:
    """A reverse operation as the server drives it: started, then run_slice until its stop."""
    while ev is None:
        ev = t.run_slice(SLICE)
    return ev


def recording_overhead(kernel: Path, repeat: int) -> None:
    best = {True: 1e9, False: 1e9}
    icount = 0
    mem = 0
    for _ in range(repeat):
        for record in (False, True):
            t = MachineTarget(machine(kernel))
            t.record = record
            best[record] = min(best[record], run_target(t))
            icount = t.machine.cpu.icount
            if record and t.history is not None:
                mem = t.history.stored_bytes()
    over = (best[True] / best[False] - 1) * 100
    print(f"1. recording overhead, multitask kernel ({icount / 1e6:.2f} M instructions to its exit, best of {repeat}):")
    print(f"   off {best[False]:.2f} s, on {best[True]:.2f} s: {over:+.1f}%  (target <= 10%)")
    print(f"   history memory: {mem / 1e6:.2f} MB, {mem / (icount / 1e6) / 1e3:.1f} kB per million instructions")


def long_history(history: int, interval: int) -> None:
    iters = history // 4
    with tempfile.TemporaryDirectory() as tmp:
        elf = build.build_guest(HERE / "reverse_loop.s", Path(tmp), defsyms={"ITERS": iters})
        t = MachineTarget(machine(elf, 32 << 20))
        h = t._history()
        assert h is not None
        h.interval = interval
        secs = run_target(t, until=history)
        m = t.machine
        print(
            f"2. reverse-stepi after {m.cpu.icount / 1e6:.1f} M instructions of history "
            f"(reverse_loop.s, {secs:.1f} s to record, checkpoint interval {interval / 1e6:g} M):"
        )
        times = []
        for _ in range(5):
            t0 = time.process_time()
            drive(t, t.reverse_step(1))
            times.append((time.process_time() - t0) * 1000)
        print(
            f"   first step back {times[0]:.1f} ms (replays from the newest tail checkpoint), "
            f"then {', '.join(f'{x:.1f}' for x in times[1:])} ms  (target < 50 ms)"
        )
        print(
            f"   history memory: {h.stored_bytes() / 1e6:.2f} MB, "
            f"{h.stored_bytes() / (m.cpu.icount / 1e6) / 1e3:.1f} kB per million instructions, "
            f"{len(h.segments)} segments"
        )
        # 3. reverse-continue to the marker write, `back` instructions before the present.
        h.to_present()
        t.supports_watchpoints().add(WatchKind.WRITE, 0x300000, 4)
        replayed = h.replayed_insns
        t0 = time.process_time()
        ev = drive(t, t.reverse_continue(1))
        secs = time.process_time() - t0
        back_m = (h.segments[-1].end or m.cpu.icount) / 1e6
        print(
            f"3. reverse-continue, write watchpoint, to a write {back_m:.1f} M instructions back: "
            f"{secs * 1000:.0f} ms (target < 2 s); stop {ev.reason.value} at eip {m.cpu.eip:#x}, "
            f"icount {m.cpu.icount}; {(h.replayed_insns - replayed) / 1e6:.2f} M instructions replayed"
        )


def loadvm(kernel: Path) -> None:
    m = machine(kernel)
    store = SnapshotStore(m)
    m.run(max_insns=2_500_000)
    t0 = time.process_time()
    snap = store.take("booted")
    take = time.process_time() - t0
    # 10 MiB touched since (as a guest's stores would: dirty pages), and the machine run on.
    m.mem.write(16 << 20, b"\x5a" * (10 << 20))
    m.run(max_insns=200_000)
    t0 = time.process_time()
    store.load("booted")
    warm = time.process_time() - t0
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "vm.snapshots")
        store.save(path)
        m2 = machine(kernel)
        store2 = SnapshotStore(m2, path)
        t0 = time.process_time()
        store2.load("booted")
        cold = time.process_time() - t0
    print(f"4. loadvm of the booted multitask kernel, 128 MiB RAM ({snap.stored_bytes / 1e6:.1f} MB stored):")
    print(
        f"   savevm {take * 1000:.0f} ms; loadvm with 10 MiB touched since: {warm * 1000:.1f} ms (target < 50 ms); "
        f"cold -loadvm (every page): {cold * 1000:.1f} ms"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="10 M instructions of history, one repetition")
    ap.add_argument("--history", type=int, default=100_000_000)
    ap.add_argument("--interval", type=int, default=2_000_000)
    args = ap.parse_args()
    history = 10_000_000 if args.quick else args.history
    kernel = build.build_multitask(Path(tempfile.mkdtemp()) / "k")
    recording_overhead(kernel, 1 if args.quick else 3)
    long_history(history, args.interval)
    loadvm(kernel)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
