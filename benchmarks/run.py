#!/usr/bin/env python3
"""Guest-level benchmarks: gdbemu's speed in guest MIPS, and QEMU's for scale.

Usage: python benchmarks/run.py [--quick] [--only NAME ...] [--no-qemu]

Five workloads (sources beside this file, built here with as/ld and
tests/support/guests/lib.inc): a register-only loop, a memory loop with paging on,
and three self-modifying loops: an imm32 patched before it runs, and a whole
instruction (opcode and immediate) rewritten before it runs, in the same
block (smc-op) and in a function the loop calls (smc-call). Each runs on gdbemu for a fixed instruction count
(after a warm-up run that covers the guest's setup and the first
translations, so the figure is the steady state), and guest MIPS is
m.cpu.icount / CPU seconds (the machine is shared: wall time
measures the other processes).

If qemu-system-i386 is on PATH, the same ELF boots on it through multiboot.
QEMU cannot stop after N instructions and its boot costs a good fraction of a
second, so its figure is a difference of two runs: one with a large
iteration count and a baseline with one iteration; the extra instructions
are known exactly from the loop (instructions per iteration x extra
iterations), and the extra CPU time (QEMU's, all threads) is theirs alone. The large count is
doubled until the difference is long enough to measure.

These are measurements, not tests: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from support import build as builder  # noqa: E402  (tests/support, imported from tests/ as set up above)

WARMUP_INSNS = 300_000  # more than any workload's setup (page tables, GDT, IDT)


@dataclasses.dataclass(frozen=True)
class Workload:
    """A benchmark guest: its source, instructions per iteration, and run sizes."""

    name: str
    source: str
    insns_per_iter: int  # instructions one ITERS step retires (the loop body)
    gdbemu_insns: int  # timed instruction count on gdbemu (full run)
    qemu_iters: int  # first guess for QEMU's large run (doubled as needed)
    description: str


WORKLOADS = (
    Workload("reg-loop", "reg_loop.s", 5, 30_000_000, 50_000_000, "register-only loop"),
    Workload("mem-loop", "mem_loop.s", 2 + 6 * 4096 + 2, 20_000_000, 20_000, "loads/stores, paging on, 4 KiB pages"),
    Workload("smc-loop", "smc_loop.s", 4, 3_000_000, 200_000, "patch an imm32 then execute it, every iteration"),
    Workload("smc-op", "smc_op_loop.s", 10, 2_000_000, 200_000, "rewrite opcode+imm of the next insn, same TB"),
    Workload("smc-call", "smc_call_loop.s", 12, 2_000_000, 200_000, "rewrite opcode+imm of a callee, other TB"),
)


@dataclasses.dataclass
class Result:
    workload: Workload
    gdbemu_mips: float | None = None
    gdbemu_insns: int = 0
    gdbemu_seconds: float = 0.0
    gdbemu_stats: dict[str, int] = dataclasses.field(default_factory=dict)
    gdbemu_error: str | None = None
    qemu_mips: float | None = None
    qemu_insns: int = 0
    qemu_seconds: float = 0.0
    qemu_error: str | None = None


def build(w: Workload, out_dir: Path, iters: int) -> Path:
    """Build a workload with ITERS=iters (0 = 2^32, i.e. run until stopped)."""
    return builder.build_guest(HERE / w.source, out_dir, defsyms={"ITERS": iters}, name=f"{w.source[:-2]}_{iters}")


def run_gdbemu(w: Workload, out_dir: Path, insns: int) -> Result:
    """Warm up, then time a run of exactly `insns` instructions on gdbemu."""
    res = Result(w)
    try:
        from gdbemu.machine import Machine
    except ImportError as exc:
        res.gdbemu_error = f"gdbemu core not importable ({exc})"
        return res
    elf = build(w, out_dir, 0)
    try:
        m = Machine(ram_size=32 << 20)
        m.load_elf(str(elf))
        stop = m.run(max_insns=WARMUP_INSNS)
        if stop.kind != "limit":
            res.gdbemu_error = f"warm-up stopped early: {stop.kind} {getattr(stop, 'detail', '')}"
            return res
        start = m.cpu.icount
        t0 = time.process_time()
        stop = m.run(max_insns=insns)
        seconds = time.process_time() - t0
    except Exception as exc:  # report and carry on with the other workloads
        res.gdbemu_error = f"{type(exc).__name__}: {exc}"
        return res
    if stop.kind != "limit":
        res.gdbemu_error = f"stopped early: {stop.kind} {getattr(stop, 'detail', '')}"
        return res
    res.gdbemu_insns = m.cpu.icount - start
    res.gdbemu_seconds = seconds
    res.gdbemu_mips = res.gdbemu_insns / seconds / 1e6
    res.gdbemu_stats = dict(m.stats())
    return res


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _qemu_wall(elf: Path) -> float:
    """CPU seconds (all threads) of one QEMU boot-run-exit of a guest; raises if the guest's checks failed."""
    t0 = _children_cpu()
    status, out = builder.run_qemu(elf, timeout=600)
    seconds = _children_cpu() - t0
    if status != 1:
        raise RuntimeError(f"guest exited with status {status}: {out.decode('latin-1')[-200:]!r}")
    return seconds


def run_qemu(w: Workload, out_dir: Path, res: Result, quick: bool) -> None:
    """QEMU MIPS from (large run - baseline run): extra instructions / extra seconds."""
    target = 0.4 if quick else 2.0
    repeats = 1 if quick else 3
    try:
        base_elf = build(w, out_dir, 1)
        baseline = min(_qemu_wall(base_elf) for _ in range(repeats))
        iters = max(1, w.qemu_iters // (8 if quick else 1))
        while True:
            elf = build(w, out_dir, iters)
            wall = min(_qemu_wall(elf) for _ in range(repeats))
            extra = wall - baseline
            if extra >= target or iters >= 1 << 31:
                break
            # aim straight for the target when the difference is measurable, else double
            grow = target * 1.2 / extra if extra > 0.05 else 2.0
            iters = min(int(iters * max(2.0, min(grow, 64.0))), (1 << 32) - 1)
    except Exception as exc:
        res.qemu_error = f"{type(exc).__name__}: {exc}"
        return
    res.qemu_insns = (iters - 1) * w.insns_per_iter
    res.qemu_seconds = extra
    res.qemu_mips = res.qemu_insns / extra / 1e6


def _fmt(x: float | None, spec: str = "10.3f") -> str:
    return format(x, spec) if x is not None else format("-", ">" + spec.split(".")[0])


def print_table(results: list[Result], qemu: bool) -> None:
    head = f"{'workload':<10} {'gdbemu MIPS':>12} {'insns':>10} {'seconds':>8}"
    if qemu:
        head += f" {'qemu MIPS':>10} {'qemu/gdbemu':>12}"
    print(head)
    print("-" * len(head))
    for r in results:
        line = f"{r.workload.name:<10} {_fmt(r.gdbemu_mips, '12.3f')} {r.gdbemu_insns:>10} {r.gdbemu_seconds:>8.2f}"
        if qemu:
            ratio = r.qemu_mips / r.gdbemu_mips if r.qemu_mips and r.gdbemu_mips else None
            line += f" {_fmt(r.qemu_mips, '10.1f')} {_fmt(ratio, '12.1f')}"
        print(line)
    for r in results:
        if r.gdbemu_error:
            print(f"  {r.workload.name}: gdbemu: {r.gdbemu_error}")
        if r.qemu_error:
            print(f"  {r.workload.name}: qemu: {r.qemu_error}")
    for r in results:
        s = r.gdbemu_stats
        if s:
            keys = ("tb_built", "tb_invalidated", "smc_restarts", "misses", "fills", "page_cross")
            shown = ", ".join(f"{k}={s[k]}" for k in keys if k in s)
            print(f"  {r.workload.name}: {r.workload.description}; {shown}")
        if r.qemu_mips:
            print(f"  {r.workload.name}: qemu {r.qemu_insns} extra insns in {r.qemu_seconds:.2f} s over its baseline")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="short runs (a tenth of the instructions)")
    ap.add_argument("--only", action="append", choices=[w.name for w in WORKLOADS], help="run only these workloads")
    ap.add_argument("--no-qemu", action="store_true", help="skip QEMU even if it is installed")
    args = ap.parse_args(argv)
    try:
        builder.toolchain()
    except builder.ToolchainMissingError as exc:
        print(f"cannot build the benchmark guests: {exc}", file=sys.stderr)
        return 2
    qemu = not args.no_qemu and shutil.which("qemu-system-i386") is not None
    results = []
    with tempfile.TemporaryDirectory(prefix="gdbemu-bench-") as tmp:
        out_dir = Path(tmp)
        for w in WORKLOADS:
            if args.only and w.name not in args.only:
                continue
            insns = w.gdbemu_insns // (10 if args.quick else 1)
            print(f"running {w.name} ...", file=sys.stderr, flush=True)
            res = run_gdbemu(w, out_dir, insns)
            if qemu:
                run_qemu(w, out_dir, res, args.quick)
            results.append(res)
    if not qemu:
        why = "--no-qemu" if args.no_qemu else "qemu-system-i386 not on PATH"
        print(f"(QEMU comparison skipped: {why})")
    print_table(results, qemu)
    return 0


if __name__ == "__main__":
    sys.exit(main())
