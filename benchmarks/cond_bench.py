#!/usr/bin/env python3
"""A conditional breakpoint on a hot loop: false N times (20,000 by default), then true.

Usage: python benchmarks/cond_bench.py [--quick] [--iterations N] [--only target,host,qemu,inproc] [--no-qemu]

Every configuration is driven the same way, through gdbemu.testing's
session API (gdb 13 over MI through pygdbmi): ``break *loop_body if
*(int *)COUNTER == N+1`` (COUNTER: the variable's address) on the loop of a tiny guest, then one ``continue``,
timed from the ``-exec-continue`` until gdb reports the stop:

  (a) gdbemu, target-side evaluation (``set breakpoint condition-evaluation
      target``): gdb sends the condition as agent bytecode in the Z packet
      and gdbemu evaluates it at each hit, so the guest stops once;
  (b) gdbemu, host-side evaluation (``... host``): every hit is a stop that
      gdb evaluates and resumes -- N round trips of g/m/z/Z/vCont packets;
  (c) qemu-system-i386 -accel tcg -S (when installed), host-side: QEMU's
      stub has no target-side conditions.

  (inproc) no gdb at all: the stub and the Machine in this process, on the
      guest tests/support/guests/cond.s: the compiled condition alone, the
      TB-prologue check (``H.bp_check``) alone, and one iteration of the
      guest's bench loop with and without the conditional breakpoint
      (these figures were asserted by tests/e2e/test_conditions_e2e.py once;
      the test now checks only what the condition does).

The per-evaluation figure is the total divided by the N+1 hits.  The target
of the target-side work: (a) at least 100x faster than (c).  These are
measurements, not tests: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from gdbemu.testing import BuildError, Session, SessionError, build_kernel, find_gdb  # noqa: E402

GUEST = r"""
/* The hot loop: counter counts the visits of loop_body, forever. */
        .section .multiboot, "a"
        .align 4
        .long 0x1BADB002, 0x00000003, -(0x1BADB002 + 0x00000003)

        .text
        .globl _start, hot_loop, loop_body
_start:
        mov     $stack_top, %esp
        movl    $0, counter
hot_loop:
        incl    counter
loop_body:                              # break *loop_body if *(int *)COUNTER == N + 1
        mov     counter, %eax
        add     %eax, checksum
        jmp     hot_loop

        .data
        .globl counter, checksum
counter:    .long 0
checksum:   .long 0

        .bss
        .align 16
        .skip 4096
stack_top:
"""


@dataclasses.dataclass
class Result:
    """One configuration's run, or why there is no figure.

    ``seconds``: from ``continue`` to the stop, N false evaluations and the
    true one; ``fixed``: the same for a condition true at the first hit (one
    stop and its round trips, no false evaluation), measured just before in
    the same session.  The per-evaluation figure is their difference over N.
    """

    name: str
    seconds: float | None
    iterations: int
    fixed: float | None = None
    note: str = ""

    @property
    def per_eval(self) -> float | None:
        if self.seconds is None:
            return None
        return max(self.seconds - (self.fixed or 0.0), 0.0) / self.iterations


# .data on a page of its own, as in a real kernel: a store to a page holding code takes the
# self-modifying-code slow path on every emulator, and that is not what is measured here.
LDSCRIPT = """
ENTRY(_start)
SECTIONS
{
    . = 0x100000;
    .text : { *(.multiboot) *(.text) }
    . = ALIGN(4096);
    .data : { *(.data) }
    .bss : { *(.bss) }
}
"""


def build_guest(directory: Path) -> Path:
    src = directory / "cond_loop.s"
    src.write_text(GUEST)
    (directory / "cond_loop.ld").write_text(LDSCRIPT)
    return build_kernel([src], directory / "cond_loop.elf", ldscript=directory / "cond_loop.ld")


def timed_hot_loop(session: Session, iterations: int, evaluation: str, timeout: float) -> tuple[float, float]:
    """Break on the loop with a condition that is false ``iterations`` times.

    Returns (seconds with a condition true at the first hit, seconds for the
    real one), both from ``continue`` to the stop.
    """
    session.gdb_command(f"set breakpoint condition-evaluation {evaluation}")
    # A literal address: gdb compiles `*(int *)0x... == N` to agent bytecode, while `&counter` of a symbol
    # without debug info ("unknown type") would leave the condition to gdb -- host-side, silently.
    counter = session.read_int("&counter")
    times = []
    for false_hits in (0, iterations):
        start = session.read_int(f"*(int *){counter:#x}")
        number = session.break_at("*loop_body", condition=f"*(int *){counter:#x} == {start + false_hits + 1}")
        t0 = time.perf_counter()
        stop = session.cont(timeout=timeout)
        times.append(time.perf_counter() - t0)
        where = session.gdb_command("info breakpoints")  # says who evaluated, once the breakpoint was inserted
        if evaluation == "target" and "(target evals)" not in where:
            raise SessionError(f"gdb kept the condition host-side:\n{where}")
        if stop.reason != "breakpoint" or session.read_int(f"*(int *){counter:#x}") != start + false_hits + 1:
            raise SessionError(f"wrong stop: {stop.describe()}, counter={session.read(f'*(int *){counter:#x}')}")
        session.delete(number)
    return times[0], times[1]


def target_conditions_enabled(session: Session) -> bool:
    """True when gdb found ``ConditionalBreakpoints+`` in the stub's qSupported."""
    return "currently enabled" in session.gdb_command("show remote conditional-breakpoints-packet")


def run_gdbemu(guest: Path, iterations: int, evaluation: str, timeout: float) -> Result:
    name = f"gdbemu, {evaluation}-side evaluation"
    with Session.boot(guest, timeout=timeout) as s:
        if evaluation == "target" and not target_conditions_enabled(s):
            return Result(name, None, iterations, note="n/a: this gdbemu does not advertise ConditionalBreakpoints")
        fixed, seconds = timed_hot_loop(s, iterations, evaluation, timeout)
        note = ""
        if evaluation == "target" and s.has_monitor("info conditions"):
            counts = [line for line in s.monitor("info conditions").splitlines() if "evaluations" in line]
            note = "gdbemu counted " + counts[0].split(": ", 1)[-1] if counts else ""
        return Result(name, seconds, iterations, fixed, note)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_qemu(guest: Path, iterations: int, timeout: float) -> Result:
    name = "qemu-system-i386 -accel tcg (host-side)"
    qemu = shutil.which("qemu-system-i386")
    if qemu is None:
        return Result(name, None, iterations, note="n/a: qemu-system-i386 is not installed")
    port = free_port()
    proc = subprocess.Popen(
        [
            qemu,
            "-kernel",
            str(guest),
            "-gdb",
            f"tcp:127.0.0.1:{port}",
            "-S",
            "-accel",
            "tcg",
            "-m",
            "32",
            "-display",
            "none",
            "-nodefaults",
            "-serial",
            "null",
            "-monitor",
            "none",
            "-no-reboot",
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=0x04",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    # gdb retries a refused connection (tcp auto-retry) while QEMU starts up
    with Session.connect(f"127.0.0.1:{port}", guest, process=proc, timeout=timeout) as s:
        fixed, seconds = timed_hot_loop(s, iterations, "host", timeout)
        return Result(name, seconds, iterations, fixed)


def in_process_costs(out_dir: Path, n: int = 100_000, bench_count: int = 20_000) -> str:
    """The cost of a false condition inside gdbemu (no gdb): one report line."""
    from support import build as builder

    from gdbemu.core import helpers
    from gdbemu.debug.target import MachineTarget
    from gdbemu.machine import Machine
    from gdbemu.rsp.stub import GdbStub

    elf = builder.build_guest("cond", out_dir)
    bench = builder.symbols(elf)["bench_top"]
    machine = Machine(ram_size=32 << 20)
    machine.load_elf(str(elf))
    target = MachineTarget(machine)
    stub = GdbStub(target)

    def packet(payload: bytes) -> bytes:
        return b"".join(stub.handle_packet(payload).packets)

    never = "2600011620" + "24deadbeef" + "1327"  # reg 1; ext 32; const32 0xdeadbeef; equal; end: never true
    xnever = b"X%x,%s" % (len(never) // 2, never.encode())
    packet(b"qSupported:swbreak+;hwbreak+")
    packet(b"Z0,%x,1;" % bench + xnever)
    cpu = machine.cpu
    hook = machine.breakpoints.conditions[bench]
    t0 = time.perf_counter()
    for _ in range(n):
        hook(cpu)
    hook_us = (time.perf_counter() - t0) / n * 1e6
    check = helpers.bp_check  # what the TB prologue calls: H.bp_check(cpu, linear)
    t0 = time.perf_counter()
    for _ in range(n):
        check(cpu, bench)
    check_us = (time.perf_counter() - t0) / n * 1e6
    # arrive at the loop with an unconditional breakpoint, then time the loop with and without the condition
    packet(b"z0,%x,1" % bench)
    packet(b"Z0,%x,1" % bench)
    packet(b"c")
    while target.run_slice(100_000) is None:
        pass
    packet(b"z0,%x,1" % bench)

    def timed(with_condition: bool) -> float:
        packet(b"Z0,%x,1;" % bench + xnever if with_condition else b"z0,%x,1" % bench)
        cpu.eip, cpu.regs[1] = bench, bench_count
        t = time.perf_counter()
        machine.run(max_insns=2 * bench_count - 2)
        return time.perf_counter() - t

    iters = bench_count - 1
    with_us = min(timed(True) for _ in range(3)) / iters * 1e6
    without_us = min(timed(False) for _ in range(3)) / iters * 1e6
    return (
        f"false condition `$ecx == 0xdeadbeef`, in process: compiled hook {hook_us:.2f} us, "
        f"TB-prologue check (H.bp_check) {check_us:.2f} us; a guest loop iteration {with_us:.2f} us with the "
        f"breakpoint vs {without_us:.2f} us without"
    )


def fmt_seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 1e-3:
        return f"{value * 1e3:.3f} ms" if value < 1 else f"{value:.2f} s"
    return f"{value * 1e6:.1f} us"


def fmt_ratio(value: float) -> str:
    return f"{value:.1f}x" if value < 10 else f"{value:.0f}x"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 false evaluations instead of 20,000")
    parser.add_argument("--iterations", type=int, default=None, help="false evaluations before the true one")
    parser.add_argument("--only", default="target,host,qemu,inproc", help="comma-separated: target, host, qemu, inproc")
    parser.add_argument("--no-qemu", action="store_true", help="skip QEMU")
    parser.add_argument("--timeout", type=float, default=1800.0, help="bound of each run, seconds")
    parser.add_argument(
        "--qemu-reference-ms",
        type=float,
        default=0.77,
        help="QEMU's per-evaluation cost to compare with when QEMU is not run here (default 0.77)",
    )
    args = parser.parse_args(argv)
    iterations = args.iterations or (2_000 if args.quick else 20_000)
    wanted = {w.strip() for w in args.only.split(",") if w.strip()}
    if args.no_qemu:
        wanted.discard("qemu")
    try:
        gdb = find_gdb()
    except SessionError as exc:
        print(f"cond_bench: {exc}", file=sys.stderr)
        return 2
    version = subprocess.run([gdb, "--version"], capture_output=True, text=True).stdout.splitlines()[0]

    results: list[Result] = []
    inproc = None
    with tempfile.TemporaryDirectory(prefix="cond-bench-") as tmp:
        if "inproc" in wanted:
            print("running: inproc ...", file=sys.stderr, flush=True)
            inproc = in_process_costs(Path(tmp) / "inproc")
        try:
            guest = build_guest(Path(tmp))
        except BuildError as exc:
            print(f"cond_bench: cannot build the guest: {exc}", file=sys.stderr)
            return 2
        for key in ("target", "host", "qemu"):
            if key not in wanted:
                continue
            print(f"running: {key} ...", file=sys.stderr, flush=True)
            try:
                if key == "qemu":
                    results.append(run_qemu(guest, iterations, args.timeout))
                else:
                    results.append(run_gdbemu(guest, iterations, key, args.timeout))
            except SessionError as exc:
                print(f"cond_bench: {key}: {exc}", file=sys.stderr)
                results.append(Result(key, None, iterations, note=f"failed: {str(exc).splitlines()[0]}"))

    print(f"conditional breakpoint on a hot loop: false {iterations:,} times, then true ({version}, pygdbmi)")
    qemu_per = next((r.per_eval for r in results if r.name.startswith("qemu") and r.per_eval), None)
    ref = args.qemu_reference_ms / 1e3
    header = (
        f"{'configuration':40s} {'total':>10s} {'1st-hit stop':>12s} {'per false eval':>14s} "
        f"{'vs QEMU':>8s} {'vs ref':>8s}  note"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        ratio = fmt_ratio(qemu_per / r.per_eval) if qemu_per and r.per_eval else "-"
        vs_ref = fmt_ratio(ref / r.per_eval) if r.per_eval else "-"
        print(
            f"{r.name:40s} {fmt_seconds(r.seconds):>10s} {fmt_seconds(r.fixed):>12s} "
            f"{fmt_seconds(r.per_eval):>14s} {ratio:>8s} {vs_ref:>8s}  {r.note}"
        )
    print(
        f"per false eval = (total - 1st-hit stop) / {iterations:,}; 'vs QEMU': this run's QEMU figure; "
        f"'vs ref': QEMU at {args.qemu_reference_ms} ms per false evaluation (measured earlier, quiet machine)"
    )
    if inproc:
        print(inproc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
