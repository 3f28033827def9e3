#!/usr/bin/env python3
"""Start-up time and resident memory: gdbemu against QEMU, the same kernels, the same run.

Usage: python benchmarks/startup_bench.py [--runs N] [--no-qemu]

The guest (benchmarks/touch.s) exits through isa-debug-exit either at its
first instruction (PAGES=0: the whole command's time is start-up, imports,
board and kernel load, the first instruction, exit) or after writing one
byte in each of PAGES 4 KiB pages, so the host commits exactly those.  For
each ``-m`` size and page count the command is run N times (after one
warm-up, so Python's bytecode cache is written as an installed package has
it: PYTHONDONTWRITEBYTECODE is dropped and the cache goes to a temporary
PYTHONPYCACHEPREFIX) and reports, from ``os.wait4`` of the child:

* wall seconds (median and minimum): on a shared machine the minimum is the
  better estimate of an idle one;
* CPU seconds (user + system, median): what the process itself spent;
* peak resident memory (ru_maxrss), MB.

Targets (issue 12): first instruction within 0.25 s; ``-m 3G`` as fast as
``-m 32M``; resident memory at most 60 MB plus the guest pages touched.
QEMU (qemu-system-i386 -accel tcg) runs the same kernel with the same ``-m``.
These are measurements, not tests: nothing asserts.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))

from support import build as builder  # noqa: E402

CASES = [("32M", 0), ("128M", 0), ("3G", 0), ("3G", 16384)]  # (-m, pages touched: 16384 = 64 MiB)


def measure(cmd: list[str], env: dict[str, str]) -> tuple[float, float, float, int]:
    """(wall s, cpu s, peak RSS MB, exit status) of one run of ``cmd``."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    assert proc.stderr is not None
    proc.stderr.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, proc.returncode


def gdbemu_cmd(kernel: Path, mem: str) -> list[str]:
    return [
        sys.executable, "-m", "gdbemu.cli", "-kernel", str(kernel), "-m", mem, "-display", "none",
        "-serial", "none", "-debugcon", "none", "-gdb", "none", "-no-reboot",
        "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
    ]  # fmt: skip


def qemu_cmd(kernel: Path, mem: str) -> list[str]:
    return [
        "qemu-system-i386", "-accel", "tcg", "-kernel", str(kernel), "-m", mem, "-display", "none",
        "-serial", "none", "-no-reboot", "-nodefaults",
        "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
    ]  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--no-qemu", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="gdbemu-startup-") as tmp:
        out = Path(tmp)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env.update(PYTHONPATH=str(ROOT), PYTHONPYCACHEPREFIX=str(out / "pycache"))
        kernels = {
            pages: builder.build_guest(HERE / "touch.s", out, {"PAGES": pages}, f"touch{pages}") for _, pages in CASES
        }
        emulators = [("gdbemu", gdbemu_cmd)]
        if not args.no_qemu and shutil.which("qemu-system-i386"):
            emulators.append(("qemu", qemu_cmd))
        measure(gdbemu_cmd(kernels[0], "32M"), env)  # warm-up: writes the bytecode cache
        print(f"{'emulator':8s} {'-m':>5s} {'touched':>8s}  {'wall med':>8s} {'wall min':>8s} {'cpu med':>8s} "
              f"{'RSS MB':>7s} {'RSS - touched':>13s}  status")  # fmt: skip
        for mem, pages in CASES:
            for name, make in emulators:
                runs = [measure(make(kernels[pages], mem), env) for _ in range(args.runs)]
                walls = [r[0] for r in runs]
                cpus = [r[1] for r in runs]
                rss = max(r[2] for r in runs)
                touched = pages * 4096 / 2**20
                print(
                    f"{name:8s} {mem:>5s} {touched:6.0f}MB  {statistics.median(walls):8.3f} {min(walls):8.3f} "
                    f"{statistics.median(cpus):8.3f} {rss:7.1f} {rss - touched:13.1f}  {sorted({r[3] for r in runs})}"
                )
    print("wall/cpu in seconds for the whole command (interpreter start, imports, board, kernel load, the run, exit);")
    print("the PAGES=0 rows are the time to the first instruction, plus exit.  Load average:", os.getloadavg()[0])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
