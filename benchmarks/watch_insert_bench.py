#!/usr/bin/env python3
"""1,000 untouched watchpoints on a 2-second compute run, insertion included: gdbemu and QEMU.

Usage: python benchmarks/watch_insert_bench.py [--seconds S] [--pairs N] [--no-qemu]

Issue 12's figure: a user sets 1,000 watchpoints through gdb on pages the
guest never touches, then runs a compute loop of about S seconds (the
mem-loop of tests/support/guests/gdb_bench.s, calibrated per emulator to S
seconds of its own CPU time).  Each pair is two runs of the same batch on
one emulator, taking turns: without watchpoints, and with gdb inserting the
1,000 watchpoints first (``set breakpoint always-inserted on``: inserted
when created) -- the second one's time counts from the first Z packet to the
stop, so it includes everything insertion costs the emulator (the packets,
the registry, TLB flushes) and what the watchpoints cost the run.  Times are
the emulator's CPU time (schedstat, all threads), not wall time, which on a
loaded machine measures the other processes.  The overhead is the median
over the pairs of (with / without - 1); the spread is shown as the noise
floor.  Target: at most 2%.  These are measurements, not tests.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from gdb_bench import (  # noqa: E402  (beside this file)
    GDB,
    QEMU,
    WATCH_BASE,
    WATCH_STRIDE,
    attach,
    builder,
    cpu_seconds,
    mi_quote,
    run_to,
    set_u32,
    start,
)

COUNT = 1000


def bench(which: str, elf: Path, sym: dict[str, int], seconds: float, pairs: int) -> tuple[list[float], float, float]:
    """(overhead % of each pair, median CPU s without, median CPU s with)."""
    with start(which, elf) as emu, attach(emu, elf, timeout=600) as g:
        g.gdb_command("set breakpoint always-inserted on")
        g.gdb_command("set can-use-hw-watchpoints 1")
        run_to(g, "paging_ready")
        set_u32(g, sym["hit_iters"], 1)
        set_u32(g, sym["batch_limit"], 0x7FFFFFFF)
        g.break_at("*batch_done")
        pid = emu.pid

        inserting: list[float] = []

        def batch(n: int, watch: bool) -> float:
            set_u32(g, sym["batch_iters"], n)
            c0 = cpu_seconds(pid)
            t0 = time.perf_counter()
            numbers = []
            if watch:
                for i in range(COUNT):
                    payload = g.mi(f"-break-watch {mi_quote(f'*(int *){WATCH_BASE + WATCH_STRIDE * i:#x}')}")
                    numbers.append(int((payload.get("hw-wpt") or payload.get("wpt"))["number"]))
                mid = cpu_seconds(pid)
                if mid is not None and c0 is not None:
                    inserting.append(mid - c0)
            stop = g.cont(timeout=900)
            c1 = cpu_seconds(pid)
            if stop.raw.get("reason") != "breakpoint-hit":
                raise RuntimeError(f"{which}: the batch ended with {dict(stop.raw)}")
            if numbers:
                g.gdb_command(f"delete {numbers[0]}-{numbers[-1]}")
            return c1 - c0 if c0 is not None and c1 is not None else time.perf_counter() - t0

        batch(1, False)  # translation warm-up
        n = 1
        while True:  # calibrate: a batch of about `seconds` of emulator CPU time
            cpu = batch(n, False)
            if cpu > seconds / 8:
                n = max(1, round(n * seconds / cpu))
                break
            n *= 4
        without, with_wp, overhead = [], [], []
        for _ in range(pairs):
            a = batch(n, False)
            b = batch(n, True)
            without.append(a)
            with_wp.append(b)
            overhead.append((b / a - 1) * 100)
        print(f"  {which}: batch of {n} iterations; without {[round(x, 3) for x in without]} s, "
              f"with {COUNT} watchpoints {[round(x, 3) for x in with_wp]} s, "
              f"of which inserting them {[round(x, 3) for x in inserting]} s")  # fmt: skip
        runs = [(b - i) / a - 1 for a, b, i in zip(without, with_wp, inserting, strict=False)]
        if runs:
            print(f"  {which}: the run alone (insertion's CPU taken out): {statistics.median(runs) * 100:+.1f}% "
                  f"(pairs {min(runs) * 100:+.1f}..{max(runs) * 100:+.1f}%)")  # fmt: skip
        return overhead, statistics.median(without), statistics.median(with_wp)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--no-qemu", action="store_true")
    args = ap.parse_args()
    if GDB is None:
        print("gdb not found", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="gdbemu-watchins-") as tmp:
        elf = builder.build_guest("gdb_bench", Path(tmp))
        sym = builder.symbols(elf)
        rows = []
        for which in ["gdbemu"] + (["qemu"] if QEMU and not args.no_qemu else []):
            overhead, base, withw = bench(which, elf, sym, args.seconds, args.pairs)
            rows.append((which, overhead, base, withw))
    print(f"\n== {COUNT} untouched watchpoints, inserted through gdb, on a ~{args.seconds:g} s compute run ==")
    print(f"{'':8s} {'without s':>9s} {'with s':>9s} {'overhead':>9s}   pairs               target <=2%")
    for which, overhead, base, withw in rows:
        med = statistics.median(overhead)
        spread = f"{min(overhead):+.1f}..{max(overhead):+.1f}%"
        print(f"{which:8s} {base:9.3f} {withw:9.3f} {med:+8.1f}%   {spread:18s}  {'met' if med <= 2 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
