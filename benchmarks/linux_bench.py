#!/usr/bin/env python3
"""Debian's kernels from entry to the root-fs panic: instructions and wall time on gdbemu, beside QEMU's.

Usage: python benchmarks/linux_bench.py [--budget N] [--only amd64-pvh,amd64-bz,686-bz,686-handoff] [--no-qemu]

For each kernel (tests/support/debian.py fetches and caches them): gdbemu
runs it in this process from the boot protocol's entry until the serial
log shows "Kernel panic - not syncing: VFS: Unable to mount root fs", the
run ends otherwise (a triple fault, a halt), or ``--budget`` instructions
have retired; the figures are the instruction count, the wall time and the
process's CPU time (the figure to trust on a shared machine), and where it
ended.  ``686-handoff`` is not a way to boot: it loads the 686 bzImage as
usual (boot_params, command line), then puts the vmlinux's segments where
the decompressor would put them and starts at its entry (0x1000000) as the
decompressor's last jump does (ESI = boot_params, flat 32-bit segments,
paging off; no relocation since the kernel sits at its link address), to see
how far the 686 kernel proper gets without 2.3 G instructions of xz.
QEMU (TCG) boots the same file with the same command line in the same run,
timed from process start to the end of its panic message on serial.
These are measurements, not tests.

Figures, 2026-12-07 (Debian 6.1.0-57, 256 MiB, ``console=ttyS0
cryptomgr.notests``; the 2-core machine shared with 4-8 other busy
processes, so wall times are several times an idle run's and the CPU time
is the figure to compare; instruction counts are exact to the 10 M or 50 M
slice the panic was seen in):

=================  ===============  ============  ========  =================================
run                instructions     gdbemu CPU    QEMU      ended
=================  ===============  ============  ========  =================================
amd64-pvh          420-450 M        157 s         4.0 s     the root-fs panic
amd64-pvh+initrd   734,511,996      (994 s wall)  --        ACPI S5, exit status 0
amd64-bz           4,910 M          798 s         28 s      the root-fs panic (KASLR offset
                                                            0x13600000); the kernel entered
                                                            at about 4,500 M: xz into 66 MB
686-handoff        380-400 M        135 s         --        the root-fs panic
686-bz             ~2.3 G + 380 M   --            --        not run to the end here
=================  ===============  ============  ========  =================================

The decompressor runs at about 6 M instructions per CPU second here, the
kernel proper at about 3.  The 686 bzImage would take roughly 2.3 G / 6 M +
380 M / 3 M = about 8.5 CPU minutes and its initramfs run more; with the amd64
bzImage (about 13 CPU minutes) already in CI's slow run, the two 686 boots
run only when asked for (tests/guests/test_debian_kernels.py).
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

from gdbemu.boot.elf import parse_elf  # noqa: E402
from gdbemu.hw.pc import PCConfig, build_pc  # noqa: E402
from gdbemu.machine import Machine  # noqa: E402

PANIC = "Kernel panic - not syncing: VFS: Unable to mount root fs"


def handoff(m: Machine, vmlinux: Path) -> None:
    """Enter ``vmlinux`` where the decompressor would (module docstring)."""
    data = vmlinux.read_bytes()
    elf = parse_elf(data)
    for seg in elf.segments:
        m.mem.write(seg.paddr, data[seg.offset : seg.offset + seg.filesz] + bytes(seg.memsz - seg.filesz))
    m.cpu.eip = elf.entry


def run_gdbemu(kernel: Path, budget: int, vmlinux: Path | None = None) -> tuple[int, float, float, str, str]:
    serial = io.BytesIO()
    m = Machine(ram_size=256 << 20)
    build_pc(m.bus, PCConfig(serial=[serial]))
    m.load_kernel(str(kernel), debian.APPEND)
    if vmlinux is not None:
        handoff(m, vmlinux)
    start, cpu = time.perf_counter(), time.process_time()
    ended = "budget"
    while m.cpu.icount < budget:
        stop = m.run(max_insns=min(10_000_000, budget - m.cpu.icount))  # the panic is seen within 10 M
        if stop.kind != "limit":
            ended = f"{stop.kind} ({stop.detail}) at {m.cpu.eip:#x}"
            break
        if PANIC in serial.getvalue().decode(errors="replace"):
            ended = "root-fs panic"
            break
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    lines = serial.getvalue().decode(errors="replace").strip().splitlines()
    return m.cpu.icount, wall, cpu, ended, lines[-1] if lines else "(no serial output)"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=int, default=4_000_000_000)
    ap.add_argument("--only", default="amd64-pvh,amd64-bz,686-handoff,686-bz")
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
        insns, wall, cpu, ended, last = run_gdbemu(kernel, args.budget, k.vmlinux() if "handoff" in name else None)
        qemu = "-"
        if not args.no_qemu and "handoff" not in name:
            out = Path(f"/tmp/linux_bench_{name}.log")
            try:
                qt = debian.run_qemu(kernel, debian.APPEND + " panic=-1", None, arch, out)
                qemu = f"{qt:.1f} s" + ("" if PANIC in out.read_text(errors="replace") else " (no panic)")
            except (debian.UnavailableError, OSError) as exc:
                qemu = f"n/a ({exc})"
        rows.append((name, insns, wall, cpu, ended, qemu, last))
        print(f"{name}: {insns:,} instructions, {wall:.1f} s wall, {cpu:.1f} s CPU, QEMU {qemu}: {ended}", flush=True)
    print(f"{'kernel':<12} {'instructions':>14} {'wall':>9} {'CPU':>9} {'MIPS/CPU':>8}  {'QEMU':>10}  ended")
    for name, insns, wall, cpu, ended, qemu, last in rows:
        mips = insns / cpu / 1e6 if cpu else 0.0
        print(
            f"{name:<12} {insns:>14,} {wall:>8.1f}s {cpu:>8.1f}s {mips:>8.2f}  {qemu:>10}  {ended}; "
            f"last serial line: {last}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
