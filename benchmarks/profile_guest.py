#!/usr/bin/env python3
"""Where a named guest spends gdbemu's time: MIPS, the top functions, the slow-path counters.

Usage: python benchmarks/profile_guest.py NAME [--insns N] [--top K] [--no-profile]

NAME is ``demo`` (the shipped demo kernel), ``multitask`` (the C kernel of
tests/support/kernels, built here), ``invaders`` (Debian's grub-invaders,
/boot/invaders.exec, when installed) or the path of any multiboot kernel.
The guest boots on a PC board (as ``gdbemu -kernel``), runs N instructions
(or until it exits) under cProfile, and the report gives:

* guest MIPS per CPU second (the figure that holds on a shared machine)
  with the profiler on (slower than a plain run: ``--no-profile`` gives the
  plain figure);
* the top K functions by own time, generated TB code summed as ``<TB code>``;
* every counter of ``monitor stats`` (TLB fills, victim hits, NOTDIRTY
  writes, watch checks, MMIO, page crossings, TBs built/invalidated, SMC
  restarts, tiers), so the next round of speed work starts from the
  mechanism that dominates rather than from a guess.

A measurement, never a test: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

INVADERS = Path("/boot/invaders.exec")


def kernel_path(name: str, work: Path) -> Path:
    """The ELF for ``name``: built, shipped or given."""
    if name == "demo":
        from gdbemu.cli import demo_kernel_path

        return Path(demo_kernel_path())
    if name == "multitask":
        from support import build as builder  # tests/support, on the path set up above

        return builder.build_multitask(work)
    if name == "invaders":
        if not INVADERS.exists():
            raise SystemExit(f"profile_guest: {INVADERS} is missing (apt-get install grub-invaders)")
        return INVADERS
    path = Path(name)
    if not path.is_file():
        raise SystemExit(f"profile_guest: {name!r} is neither a known guest (demo, multitask, invaders) nor a file")
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name")
    ap.add_argument("--insns", type=int, default=3_000_000, help="instructions to run (default 3,000,000)")
    ap.add_argument("--top", type=int, default=25, help="functions to list (default 25)")
    ap.add_argument("--no-profile", action="store_true", help="time a plain run instead")
    args = ap.parse_args(argv)

    from gdbemu.hw.pc import PCConfig, build_pc
    from gdbemu.machine import Machine

    with tempfile.TemporaryDirectory() as tmp:
        elf = kernel_path(args.name, Path(tmp))
        m = Machine(ram_size=128 << 20)
        build_pc(m.bus, PCConfig(serial=["null"], debugcon="null"))
        m.load_multiboot(str(elf))
        prof = None if args.no_profile else cProfile.Profile()
        t0 = time.perf_counter()
        c0 = time.process_time()
        if prof is not None:
            prof.enable()
        stop = m.run(max_insns=args.insns)
        if prof is not None:
            prof.disable()
        wall = time.perf_counter() - t0
        cpu_s = time.process_time() - c0
    icount = m.cpu.icount
    mode = "plain run" if prof is None else "under cProfile"
    mips = icount / max(cpu_s, 1e-9) / 1e6
    print(
        f"{args.name}: {icount:,} instructions in {cpu_s:.2f} s CPU ({wall:.2f} s wall)"
        f" = {mips:.2f} MIPS per CPU second ({mode}); stop: {stop.kind}"
    )
    if prof is not None:
        stats = pstats.Stats(prof)
        raw = stats.stats  # type: ignore[attr-defined]
        tb_time = sum(tt for (file, _, _), (_, _, tt, _, _) in raw.items() if file.startswith("<tb"))
        total = sum(tt for (_, _, _), (_, _, tt, _, _) in raw.items())
        print(f"\n<TB code> (generated functions): {tb_time:.2f} s of {total:.2f} s profiled")
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(args.top)
        print(out.getvalue())
    print("slow-path and cache counters (monitor stats):")
    for key, value in m.stats().items():
        print(f"  {key:16} {value:>12,}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
