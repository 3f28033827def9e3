#!/usr/bin/env python3
"""Debian's kernels from entry to the root-fs panic: instructions and wall time on gdbemu, beside QEMU's.

Usage: python benchmarks/linux_bench.py [--budget N] [--only amd64-bz,amd64-pvh,686-bz] [--no-qemu]

For each kernel (tests/support/debian.py fetches and caches them): gdbemu
runs it in this process from the boot protocol's entry until the serial
log shows "Kernel panic - not syncing: VFS: Unable to mount root fs", the
run ends otherwise (a triple fault, a halt), or ``--budget`` instructions
have retired; the figures are the instruction count and the wall time, and
where it ended.  QEMU (TCG) boots the same file with the same command line
in the same run, timed from process start to its exit on the panic
(``-no-reboot`` with ``panic=-1`` appended so the panic ends QEMU).
These are measurements, not tests.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from support import debian  # noqa: E402

from gdbemu.hw.pc import PCConfig, build_pc  # noqa: E402
from gdbemu.machine import Machine  # noqa: E402

PANIC = "Kernel panic - not syncing: VFS: Unable to mount root fs"


def run_gdbemu(kernel: Path, budget: int) -> tuple[int, float, str, str]:
    serial = io.BytesIO()
    m = Machine(ram_size=256 << 20)
    build_pc(m.bus, PCConfig(serial=[serial]))
    m.load_kernel(str(kernel), debian.APPEND)
    start = time.perf_counter()
    ended = "budget"
    while m.cpu.icount < budget:
        stop = m.run(max_insns=min(50_000_000, budget - m.cpu.icount))
        if stop.kind != "limit":
            ended = f"{stop.kind} ({stop.detail}) at {m.cpu.eip:#x}"
            break
        if PANIC in serial.getvalue().decode(errors="replace"):
            ended = "root-fs panic"
            break
    wall = time.perf_counter() - start
    lines = serial.getvalue().decode(errors="replace").strip().splitlines()
    return m.cpu.icount, wall, ended, lines[-1] if lines else "(no serial output)"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=int, default=4_000_000_000)
    ap.add_argument("--only", default="amd64-bz,amd64-pvh,686-bz")
    ap.add_argument("--no-qemu", action="store_true")
    args = ap.parse_args()
    rows = []
    for name in args.only.split(","):
        arch = "amd64" if name.startswith("amd64") else "i386"
        try:
            k = debian.fetch(arch)
        except debian.UnavailableError as exc:
            print(f"{name}: skipped ({exc})")
            continue
        kernel = k.vmlinux() if name.endswith("pvh") else k.bzimage
        insns, wall, ended, last = run_gdbemu(kernel, args.budget)
        qemu = "-"
        if not args.no_qemu:
            out = Path(f"/tmp/linux_bench_{name}.log")
            try:
                qt = debian.run_qemu(kernel, debian.APPEND + " panic=-1", None, arch, out)
                qemu = f"{qt:.1f} s" + ("" if PANIC in out.read_text(errors="replace") else " (no panic)")
            except (debian.UnavailableError, OSError) as exc:
                qemu = f"n/a ({exc})"
        rows.append((name, insns, wall, ended, qemu, last))
    print(f"{'kernel':<10} {'instructions':>14} {'wall':>9} {'MIPS':>6}  {'QEMU':>10}  ended")
    for name, insns, wall, ended, qemu, last in rows:
        mips = insns / wall / 1e6 if wall else 0.0
        print(f"{name:<10} {insns:>14,} {wall:>8.2f}s {mips:>6.2f}  {qemu:>10}  {ended}; last serial line: {last}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
