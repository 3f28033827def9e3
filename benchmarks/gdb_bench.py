#!/usr/bin/env python3
"""The debugger's costs: gdbemu against QEMU, both driven by the real gdb through pygdbmi.

Usage: python benchmarks/gdb_bench.py [--quick] [--no-qemu] [--only trips|watchpoints|latency] [--profile]

Three measurements, on the guest tests/support/guests/gdb_bench.s (the
third on gdb_spin.s), for gdbemu (``python -m gdbemu.cli -gdb tcp::0 -S``)
and, when installed, for
``qemu-system-i386 -accel tcg -S -gdb tcp:...`` in the same run:

1. Round trips, the time a user waits: a ``continue`` to a breakpoint hit
   (break/continue), a ``continue`` to a write-watchpoint hit
   (watch/continue) and a ``stepi``, timed from the MI command to gdb's
   ``*stopped``, with gdb's default settings (so each continue carries gdb's
   own traffic: stepping over the breakpoint, inserting and removing
   points, reading registers).  Both emulators are attached side by side
   and take turns, one round trip each, so both see the same machine load;
   the table gives the median (the typical wait), the mean and the minimum
   (an idle machine), and the CPU time the emulator and gdb spent per round
   trip (schedstat), which says whose work the time is.
2. What watchpoints the guest never hits cost: the mem-loop of
   benchmarks/mem_loop.s (paging on) runs with 1, 64 and 1,000 gdb
   watchpoints (``watch *(int *)ADDR``, ``set can-use-hw-watchpoints 1``,
   ``set breakpoint always-inserted on`` so gdb inserts them once, not at
   every resume) on pages the loop never touches, each measurement paired
   with one with the watchpoints disabled.  The loop runs in batches that
   end at a breakpoint on a page of its own (QEMU limits TBs to one
   instruction on pages with a breakpoint); the time per iteration is
   (T(3N) - T(N)) / 2N, which cancels what a stop and a resume cost, in
   emulator CPU time (wall time on a shared machine mostly measures the
   other processes).  The slowdown is the median over the pairs, and the
   spread of the pairs is shown: it is the noise floor.  For gdbemu the
   slow-path counters of one batch (``monitor stats``: TLB fills, watchpoint
   checks ...) are shown for each k too; they do not depend on load.
3. Ctrl-C latency: from gdb's ``-exec-interrupt`` to its ``*stopped``, for a
   guest spinning in a hot loop and for a halted CPU (the tests check that
   an interrupt stops the guest; this is how fast).

Everything is driven through :mod:`gdbemu.testing` (``Emulator`` starts
the stubs, ``Session.connect`` attaches gdb).

Targets (issue 4): gdbemu's per-hit and per-step times no worse than
QEMU's, and at most 2% slowdown even with 1,000 unrelated watchpoints.
``--profile`` reruns the round trips with gdbemu under cProfile (only the
server's work is shown) and replays gdb's packets in-process to give the
emulator's own cost per packet, with the TB translations and breakpoint
invalidations behind them.  These are measurements, not tests: nothing
asserts.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pstats
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from support import build as builder  # noqa: E402  (tests/support, imported from tests/ as set up above)

from gdbemu.testing import Emulator, GdbNotFoundError, Session, find_gdb  # noqa: E402

try:
    GDB: str | None = find_gdb()
except GdbNotFoundError:
    GDB = None
QEMU = shutil.which("qemu-system-i386")

WATCH_BASE = 0x220000  # linear, identity-mapped by lib.inc, never accessed by the loop
WATCH_STRIDE = 0x400  # four watchpoints per page: 1,000 of them on 250 pages
WATCH_COUNTS = (0, 1, 64, 1000)
QEMU_REFERENCE = {"break": 2.3, "watch": 2.1, "stepi": 1.4, "1000 wp": 19.0}  # measured earlier, for the notes


@dataclasses.dataclass
class Settings:
    hits: int
    steps: int
    warmup: int
    batch_seconds: float  # a batch of N iterations should take about this long
    repeats: int


FULL = Settings(hits=200, steps=500, warmup=20, batch_seconds=0.4, repeats=7)
QUICK = Settings(hits=60, steps=150, warmup=5, batch_seconds=0.2, repeats=3)


@dataclasses.dataclass
class RoundTrip:
    median_ms: float  # wall ms of one round trip: median, mean, minimum
    mean_ms: float
    min_ms: float
    emu_cpu_ms: float  # emulator CPU ms per round trip (mean)
    gdb_cpu_ms: float
    n: int


@dataclasses.dataclass
class Results:
    name: str
    trips: dict[str, RoundTrip] = dataclasses.field(default_factory=dict)
    per_iter: dict[int, float] = dataclasses.field(default_factory=dict)  # k -> CPU s per iteration
    base_iter: dict[int, float] = dataclasses.field(default_factory=dict)  # k -> the paired k=0 figure
    wall_iter: dict[int, float] = dataclasses.field(default_factory=dict)  # the same from wall time
    wall_base_iter: dict[int, float] = dataclasses.field(default_factory=dict)
    samples: dict[int, list[float]] = dataclasses.field(default_factory=dict)  # k -> slowdown % of each pair
    counters: dict[int, dict[str, int]] = dataclasses.field(default_factory=dict)  # gdbemu: k -> slow-path events
    insert_seconds: dict[int, float] = dataclasses.field(default_factory=dict)  # gdb inserting k watchpoints
    batch: int = 0
    errors: list[str] = dataclasses.field(default_factory=list)

    def slowdown(self, k: int, wall: bool = False) -> float | None:
        """Percent slower with k watchpoints than without, from CPU time (or wall time)."""
        value = (self.wall_iter if wall else self.per_iter).get(k)
        base = (self.wall_base_iter if wall else self.base_iter).get(k)
        return (value / base - 1) * 100 if base and value else None


# ---- plumbing ----------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float | None:
    """CPU time of all a process's threads, in ns resolution (/proc/PID/task/*/schedstat).

    QEMU runs its vCPU in a thread of its own, hence the sum.  CPU time,
    unlike wall time, does not count the time the emulator waited for a
    core, which on a loaded 2-core machine is most of the noise.  Falls back
    to utime + stime (clock ticks), then None.
    """
    total = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                total += int((task / "schedstat").read_text().split()[0])
            except (OSError, IndexError, ValueError):
                pass
        if total:
            return total / 1e9
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def mi_quote(text: str) -> str:
    """A C string for an MI argument."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def run_to(g: Session, where: str) -> None:
    """Continue to a temporary breakpoint at symbol ``where``.

    Both emulators attach at -S before the guest runs, but QEMU's multiboot
    option ROM copies the kernel into RAM only then: a variable written by
    gdb at attach time would be overwritten.  So the benchmark first runs to
    a point after loading (``paging_ready``) and writes its variables there.
    """
    g.break_at(f"*{where}", temporary=True)
    stop = g.cont()
    if stop.raw.get("reason") != "breakpoint-hit":
        raise RuntimeError(f"expected to stop at {where}: {dict(stop.raw)}")


def start(which: str, elf: Path, python_args: tuple[str, ...] = ()) -> Emulator:
    if which == "gdbemu":
        return Emulator.gdbemu(elf, python_args=python_args)
    return Emulator.qemu(elf)


def attach(emu: Emulator, elf: Path, timeout: float = 30.0) -> Session:
    """gdb attached to ``emu`` (which the caller closes)."""
    return Session.connect(emulator=emu, kernel=elf, own_emulator=False, timeout=timeout)


def set_u32(g: Session, addr: int, value: int) -> None:
    g.gdb_command(f"set var *(unsigned int *){addr:#x} = {value}")


# ---- 1. round trips ----------------------------------------------------------------------------------------


class Trips:
    """One emulator's session for the round trips: every operation's wall time, and CPU totals."""

    def __init__(self, which: str, elf: Path, python_args: tuple[str, ...] = ()) -> None:
        self.which = which
        self.emu = start(which, elf, python_args)
        self.g = attach(self.emu, elf)
        self.times: dict[str, list[float]] = {}  # op -> wall seconds of each round trip
        self.cpu: dict[str, list[float]] = {}  # op -> [emulator CPU, gdb CPU] seconds, summed

    def op(self, name: str) -> Callable[[], object]:
        g = self.g
        if name == "stepi":
            return g.stepi
        reason = {"break": "breakpoint-hit", "watch": "watchpoint-trigger"}[name]

        def cont() -> object:
            stop = g.cont()
            if stop.raw.get("reason") != reason:
                raise RuntimeError(f"{self.which}: expected a {reason} stop, got {dict(stop.raw)}")
            return stop

        return cont

    def once(self, name: str, op: Callable[[], object]) -> None:
        e0, g0 = cpu_seconds(self.emu.pid), cpu_seconds(self.g.gdb_pid or 0)
        t0 = time.perf_counter()
        op()
        wall = time.perf_counter() - t0
        e1, g1 = cpu_seconds(self.emu.pid), cpu_seconds(self.g.gdb_pid or 0)
        self.times.setdefault(name, []).append(wall)
        cpu = self.cpu.setdefault(name, [0.0, 0.0])
        cpu[0] += (e1 - e0) if e0 is not None and e1 is not None else float("nan")
        cpu[1] += (g1 - g0) if g0 is not None and g1 is not None else float("nan")

    def result(self, name: str) -> RoundTrip:
        ms = sorted(t * 1e3 for t in self.times[name])
        n = len(ms)
        emu_cpu, gdb_cpu = self.cpu[name]
        return RoundTrip(statistics.median(ms), sum(ms) / n, ms[0], emu_cpu / n * 1e3, gdb_cpu / n * 1e3, n)

    def close(self) -> None:
        self.g.close()
        self.emu.close()


def round_trips(
    which: list[str],
    elf: Path,
    sym: dict[str, int],
    s: Settings,
    results: dict[str, Results],
    python_args: tuple[str, ...] = (),
) -> None:
    """break/continue, watch/continue and stepi on every emulator at once, taking turns one operation at a time.

    The emulators are attached side by side (a stopped one sleeps) and
    alternate round trip by round trip: on a shared machine whose load comes
    and goes, both see the same conditions.  The median is the typical wait;
    the minimum is what an idle machine gives.
    """
    sessions: list[Trips] = []
    try:
        for name in which:
            sessions.append(Trips(name, elf, python_args))
        for t in sessions:
            run_to(t.g, "paging_ready")
            set_u32(t.g, sym["hit_iters"], 0x7FFFFFFF)
        hit_var = f"*(int *){sym['hit_var']:#x}"
        for name, n, setup in (
            ("break", s.hits, "-break-insert *hit_insn"),
            ("watch", s.hits, f"-break-watch {mi_quote(hit_var)}"),
            ("stepi", s.steps, None),
        ):
            ops = []
            for t in sessions:
                if setup:
                    t.g.mi(setup)
                op = t.op(name)
                for _ in range(s.warmup):
                    op()
                ops.append((t, op))
            for i in range(n):
                for t, op in ops if i % 2 == 0 else ops[::-1]:
                    t.once(name, op)
            for t in sessions:
                results[t.which].trips[name] = t.result(name)
                t.g.delete()
        if python_args:  # profiling: end gdbemu through gdb so cProfile writes its file
            for t in sessions:
                t.g.gdb_command("kill")
                t.emu.wait(30)
    finally:
        for t in sessions:
            t.close()


# ---- 2. unrelated watchpoints -----------------------------------------------------------------------------


SLOW_PATH = ("slow_hits", "misses", "fills", "watch_checks", "flush_page", "tb_built")


def _stats(g: Session) -> dict[str, int]:
    return {k: int(v) for k, v in re.findall(r"^(\w+)\s+(\d+)$", g.gdb_command("monitor stats"), re.M)}


def unrelated_watchpoints(which: str, elf: Path, sym: dict[str, int], s: Settings, res: Results) -> None:
    """The mem-loop's time per iteration with k watchpoints enabled, interleaved with k=0 (module docstring).

    All 1,000 watchpoints are created once; each measurement enables the
    first k (``always-inserted on``: gdb inserts and removes them right
    away) and then disables them again for the paired k=0 measurement, so
    slow drifts of the machine hit both sides alike.  Time is the
    emulator's CPU time (schedstat): on a loaded machine wall time mostly
    measures the other processes.  For gdbemu the slow-path counters of a
    batch (``monitor stats``) are compared too: they do not depend on load.
    """
    with start(which, elf) as emu, attach(emu, elf, timeout=300) as g:
        g.gdb_command("set breakpoint always-inserted on")
        g.gdb_command("set can-use-hw-watchpoints 1")
        run_to(g, "paging_ready")
        set_u32(g, sym["hit_iters"], 1)
        set_u32(g, sym["batch_limit"], 0x7FFFFFFF)
        bp = g.break_at("*batch_done")
        pid = emu.pid

        def batch(n: int) -> tuple[float, float]:
            """(emulator CPU seconds, wall seconds) of one batch of n iterations, resume to stop."""
            set_u32(g, sym["batch_iters"], n)
            c0, t0 = cpu_seconds(pid), time.perf_counter()
            stop = g.cont(timeout=600)
            wall, c1 = time.perf_counter() - t0, cpu_seconds(pid)
            if stop.raw.get("reason") != "breakpoint-hit":
                raise RuntimeError(f"{which}: a batch ended with {dict(stop.raw)}")
            return (c1 - c0 if c0 is not None and c1 is not None else wall), wall

        batch(1)  # translation and TLB warm-up
        n = 1 if which == "gdbemu" else 500
        while True:  # calibrate N so that a batch of N takes about batch_seconds of emulator CPU
            cpu, _ = batch(n)
            if cpu > s.batch_seconds / 4:
                n = max(1, round(n * s.batch_seconds / cpu))
                break
            n *= 4
        res.batch = n

        def per_iteration() -> tuple[float, float]:
            """(CPU, wall) seconds per iteration: (T(3N) - T(N)) / 2N, which cancels the cost of the stop."""
            small, large = batch(n), batch(3 * n)
            return (large[0] - small[0]) / (2 * n), (large[1] - small[1]) / (2 * n)

        def counters(k: int) -> None:
            """gdbemu: slow-path events in one batch of N, with the first k enabled (k=0: none)."""
            if k:
                g.gdb_command(f"enable {bp + 1}-{bp + k}")
            before = _stats(g)
            batch(n)
            after = _stats(g)
            if k:
                g.gdb_command(f"disable {bp + 1}-{bp + k}")
            res.counters[k] = {key: after.get(key, 0) - before.get(key, 0) for key in SLOW_PATH}

        t0 = time.perf_counter()
        for i in range(WATCH_COUNTS[-1]):
            expr = f"*(int *){WATCH_BASE + WATCH_STRIDE * i:#x}"
            g.mi(f"-break-watch {mi_quote(expr)}")
            if i + 1 in WATCH_COUNTS:
                res.insert_seconds[i + 1] = time.perf_counter() - t0
        last = bp + WATCH_COUNTS[-1]
        g.gdb_command(f"disable {bp + 1}-{last}")
        if which == "gdbemu":
            listed = g.gdb_command("monitor info watchpoints")
            if "no watchpoints" not in listed:
                res.errors.append(f"disabled watchpoints still inserted: {listed.splitlines()[0]}")
            counters(0)
        for k in WATCH_COUNTS[1:]:
            with_k: list[tuple[float, float]] = []
            without: list[tuple[float, float]] = []
            for _ in range(s.repeats):
                g.gdb_command(f"enable {bp + 1}-{bp + k}")
                with_k.append(per_iteration())
                g.gdb_command(f"disable {bp + 1}-{bp + k}")
                without.append(per_iteration())
            res.samples[k] = [(a[0] / b[0] - 1) * 100 for a, b in zip(with_k, without, strict=True)]
            res.per_iter[k] = statistics.median(c for c, _ in with_k)
            res.base_iter[k] = statistics.median(c for c, _ in without)
            res.wall_iter[k] = statistics.median(w for _, w in with_k)
            res.wall_base_iter[k] = statistics.median(w for _, w in without)
            if which == "gdbemu":
                counters(k)
            print(
                f"  {which}: {k} watchpoints: {res.per_iter[k] * 1e6:.1f} us per iteration "
                f"(without: {res.base_iter[k] * 1e6:.1f}); pairs: " + " ".join(f"{x:+.1f}%" for x in res.samples[k]),
                file=sys.stderr,
            )
        if which == "gdbemu":
            g.gdb_command(f"enable {bp + 1}-{last}")
            listed = g.gdb_command("monitor info watchpoints")
            if not listed.startswith(f"{WATCH_COUNTS[-1]} watchpoints"):
                res.errors.append(f"expected {WATCH_COUNTS[-1]} watchpoints inserted: {listed.splitlines()[0]}")


# ---- 3. interrupt latency ------------------------------------------------------------------------------------


def interrupt_latency(which: str, elf: Path, n: int) -> list[float]:
    """Seconds from gdb's ``-exec-interrupt`` (0x03 on the wire) to its ``*stopped``, for a guest spinning
    in a hot loop (gdb_spin.s), n times; the last one with the CPU halted (``cli; hlt``).

    tests/e2e/test_gdb_e2e.py and tests/unit/test_rsp_server.py check that Ctrl-C stops the guest;
    how fast it does is this figure.
    """
    out = []
    with start(which, elf) as emu, attach(emu, elf) as g:
        for i in range(n):
            if i == n - 1:
                g.gdb_command("set var $pc = halt_forever")
            g.cont_nowait()
            time.sleep(0.15)
            t0 = time.perf_counter()
            stop = g.interrupt(timeout=30)
            out.append(time.perf_counter() - t0)
            if stop.signal != "SIGINT":
                raise RuntimeError(f"{which}: expected a SIGINT stop, got {dict(stop.raw)}")
    return out


# ---- 4. profile ----------------------------------------------------------------------------------------------


def profile(elf: Path, sym: dict[str, int], s: Settings, out: Path) -> None:
    """The round trips again with gdbemu under cProfile: where the emulator's time goes.

    Only the work the server does for gdb is shown (the packet handlers and
    the slices it runs), not the start-up imports or the time it sleeps in
    select() waiting for gdb.  The whole profile stays in ``out``.
    """
    results = {"gdbemu": Results("gdbemu")}
    round_trips(["gdbemu"], elf, sym, s, results, python_args=("-m", "cProfile", "-o", str(out)))
    res = results["gdbemu"]
    ops = sum(t.n for t in res.trips.values()) + 3 * s.warmup
    print(
        f"\n== gdbemu under cProfile: {ops} round trips ("
        + ", ".join(f"{k} {v.median_ms:.2f} ms" for k, v in res.trips.items())
        + f"); profile kept in {out} =="
    )
    stats = pstats.Stats(str(out))
    for name in ("_read_client", "_run_slice"):
        for func, (_, _, _, cum, _) in stats.stats.items():  # type: ignore[attr-defined]
            if func[2] == name and func[0].endswith("server.py"):
                print(f"  server.{name}: {cum:.3f} s in all, {cum / ops * 1e3:.3f} ms per round trip")
    stats.sort_stats("cumulative").print_callees(r"server.py:\d+\((_dispatch|_run_slice)\)")
    stats.sort_stats("tottime").print_stats(r"gdbemu/(?!cli)", 30)
    breakdown(elf, sym, 300)


def breakdown(elf: Path, sym: dict[str, int], n: int) -> None:
    """gdb's packets for one break hit, one watch hit and one step, replayed in-process on the stub.

    No sockets, no gdb: what the emulator itself spends per packet (median
    microseconds), plus the TB translations and invalidations behind them,
    from the machine's own counters (``m.stats()``, as ``monitor stats``).  The sequences are the ones gdb 13
    sends (``set debug remote 1``): a continue from a breakpoint steps over
    it with the breakpoint removed, reinserts it, continues, and removes it
    again at the stop; a watchpoint is re-read and reinserted at each resume.
    """
    from gdbemu.debug.target import MachineTarget
    from gdbemu.hw.pc import PCConfig, build_pc
    from gdbemu.machine import Machine
    from gdbemu.rsp.stub import Action, GdbStub

    m = Machine(ram_size=128 << 20)
    build_pc(m.bus, PCConfig(serial=["null"], debugcon="null"))
    m.load_multiboot(str(elf))
    target = MachineTarget(m)
    stub = GdbStub(target)
    stub.handle_packet(b"qSupported:multiprocess+;swbreak+;hwbreak+;vContSupported+;xmlRegisters=i386")
    times: dict[str, list[float]] = {}
    counted = ("tb_built", "tb_invalidated")  # m.stats() counters behind the packets (monitor stats)

    def packet(payload: bytes, label: str | None = None) -> None:
        t0 = time.perf_counter()
        if stub.handle_packet(payload).action is Action.RESUME:
            while (event := target.run_slice(1 << 14)) is None:
                pass
            stub.stop_reply(event)
        if label:
            times.setdefault(label, []).append(time.perf_counter() - t0)

    ready, hit, var = sym["paging_ready"], sym["hit_insn"], sym["hit_var"]
    for p in (
        b"Z0,%x,1" % ready,
        b"vCont;c",
        b"z0,%x,1" % ready,
        b"M%x,4:ffffff7f" % sym["hit_iters"],
        b"Z0,%x,1" % hit,
        b"vCont;c",
        b"z0,%x,1" % hit,
    ):
        packet(p)
    cycles = {
        "break hit": [
            (b"vCont;s:1", "vCont;s (step over)"),
            (b"Z0,%x,1" % hit, "Z0"),
            (b"vCont;c", "vCont;c"),
            (b"qXfer:threads:read::0,1000", "qXfer:threads"),
            (b"z0,%x,1" % hit, "z0"),
            (b"m%x,1" % hit, "m (1 byte)"),
        ],
        "watch hit": [
            (b"m%x,4" % var, "m (4 bytes)"),
            (b"Z2,%x,4" % var, "Z2"),
            (b"vCont;c", "vCont;c"),
            (b"m%x,4" % var, "m (4 bytes)"),
            (b"qXfer:threads:read::0,1000", "qXfer:threads"),
            (b"z2,%x,4" % var, "z2"),
            (b"m%x,1" % hit, "m (1 byte)"),
        ],
        "stepi": [
            (b"vCont;s:1", "vCont;s"),
            (b"qXfer:threads:read::0,1000", "qXfer:threads"),
            (b"m%x,1" % hit, "m (1 byte)"),
        ],
    }
    print(f"\n== gdbemu in-process, per packet (stub + MachineTarget, no sockets): median us over {n} cycles ==")
    for name, seq in cycles.items():
        times.clear()
        before = m.stats()
        for _ in range(n):
            for payload, label in seq:
                packet(payload, f"{name}: {label}")
        total = 0.0
        for label, ts in times.items():
            med = statistics.median(ts) * 1e6
            total += med * sum(1 for _, lab in seq if f"{name}: {lab}" == label)
            print(f"  {label:34}{med:8.1f}")
        after = m.stats()
        extra = "; ".join(f"{key}: {(after[key] - before[key]) / n:.1f} per {name}" for key in counted)
        print(f"  {name + ' in all':34}{total:8.1f}   ({extra})")


# ---- report ---------------------------------------------------------------------------------------------------


def _f(x: float | None, spec: str) -> str:
    return format(x, spec) if x is not None else "-"


def report(results: list[Results], s: Settings) -> None:
    by = {r.name: r for r in results}
    emu = by.get("gdbemu")
    qemu = by.get("qemu")
    print(
        f"\n== round trips through gdb/pygdbmi, ms: {s.hits} of each ({s.steps} stepi) after {s.warmup}, "
        "emulators taking turns =="
    )
    sub = f"{'median':>8}{'mean':>7}{'min':>6}{'emu cpu':>8}{'gdb cpu':>8}"
    head = f"{'':16}{'gdbemu':^37}"
    if qemu:
        head += f"  {'qemu':^37}{'target (median)':>17}"
    print(head)
    print(f"{'':16}{sub}" + (f"  {sub}" if qemu else ""))
    labels = {"break": "break/continue", "watch": "watch/continue", "stepi": "stepi"}

    def cells(t: RoundTrip | None) -> str:
        if t is None:
            return f"{'-':>37}"
        return f"{t.median_ms:8.2f}{t.mean_ms:7.2f}{t.min_ms:6.2f}{t.emu_cpu_ms:8.2f}{t.gdb_cpu_ms:8.2f}"

    for key, label in labels.items():
        a = emu.trips.get(key) if emu else None
        line = f"{label:16}{cells(a)}"
        if qemu:
            b = qemu.trips.get(key)
            if a and b:
                ok = "met" if a.median_ms <= b.median_ms else f"MISSED x{a.median_ms / b.median_ms:.2f}"
            else:
                ok = "-"
            line += f"  {cells(b)}{ok:>17}"
        print(line)
    print(
        "(emu/gdb cpu: CPU ms the emulator / gdb spent per round trip; the rest of the wall time is waiting "
        "for pipes, sockets and the scheduler)"
    )

    print("\n== mem-loop with k gdb watchpoints on pages it never touches: slowdown against k=0 ==")
    head = f"{'k':>6}{'gdbemu us/it':>14}{'k=0 us/it':>11}{'slowdown':>10}{'pairs min..max':>17}{'(wall)':>8}"
    if qemu:
        head += f"{'qemu us/it':>12}{'k=0 us/it':>11}{'slowdown':>10}{'pairs min..max':>17}{'(wall)':>8}"
    head += f"{'target <=2%':>13}"
    print(head)
    for k in WATCH_COUNTS[1:]:
        line = f"{k:>6}"
        for r, width, digits in ((emu, 14, 1), (qemu, 12, 2)):
            if r is None:
                continue
            per, base, pairs = r.per_iter.get(k), r.base_iter.get(k), r.samples.get(k)
            line += f"{_f(per and per * 1e6, f'{width}.{digits}f')}{_f(base and base * 1e6, f'11.{digits}f')}"
            line += f"{_f(r.slowdown(k), '+9.1f')}%"
            line += f"{(f'{min(pairs):+.1f}..{max(pairs):+.1f}%' if pairs else '-'):>17}"
            line += f"{_f(r.slowdown(k, wall=True), '+7.1f')}%"
        slow = emu.slowdown(k) if emu else None
        line += f"{'-' if slow is None else ('met' if slow <= 2.0 else 'MISSED'):>13}"
        print(line)
    if emu and emu.counters:
        print(f"  gdbemu slow-path events in one batch of N (monitor stats; load-independent): {', '.join(SLOW_PATH)}")
        for k, c in sorted(emu.counters.items()):
            print(f"    k={k:<5} " + ", ".join(f"{key}={c[key]}" for key in SLOW_PATH))
    for r in results:
        if r.batch:
            print(
                f"  {r.name}: batches of N={r.batch} and {3 * r.batch} iterations (24,580 instructions each); "
                f"us/it = (T(3N) - T(N)) / 2N in emulator CPU time; median of {s.repeats} pairs (k, then k=0)"
            )
        if r.insert_seconds:
            print(
                f"  {r.name}: gdb took "
                + ", ".join(f"{v:.1f} s" for v in r.insert_seconds.values())
                + f" to create the first {', '.join(map(str, r.insert_seconds))} watchpoints"
            )
        for err in r.errors:
            print(f"  {r.name}: {err}")
    print("  (wall: the same from wall-clock time, which on a loaded machine mostly measures the other processes)")
    ref = ", ".join(f"{k} {v}" for k, v in QEMU_REFERENCE.items())
    print(f"  QEMU measured earlier on this machine: {ref} (ms per hit/step; % for 1,024 watchpoints)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer round trips, shorter batches, fewer repeats")
    ap.add_argument("--no-qemu", action="store_true", help="skip QEMU even if it is installed")
    ap.add_argument("--profile", action="store_true", help="also profile gdbemu's round trips with cProfile")
    ap.add_argument("--profile-out", default="gdbemu-gdb-bench.prof", help="where --profile keeps the profile")
    ap.add_argument("--only", choices=("trips", "watchpoints", "latency"), help="run one of the measurements")
    args = ap.parse_args(argv)
    if GDB is None:
        print("gdb is not installed", file=sys.stderr)
        return 2
    try:
        builder.toolchain()
    except builder.ToolchainMissingError as exc:
        print(f"cannot build the benchmark guest: {exc}", file=sys.stderr)
        return 2
    s = QUICK if args.quick else FULL
    which = ["gdbemu"] + ([] if args.no_qemu or QEMU is None else ["qemu"])
    with tempfile.TemporaryDirectory(prefix="gdbemu-gdb-bench-") as tmp:
        elf = builder.build_guest("gdb_bench", Path(tmp))
        sym = builder.symbols(elf)
        results = {name: Results(name) for name in which}
        if args.only in (None, "trips"):
            print(f"round trips on {' and '.join(which)} ...", file=sys.stderr, flush=True)
            try:
                round_trips(which, elf, sym, s, results)
            except Exception as exc:  # report and carry on with the rest
                results[which[0]].errors.append(f"round trips: {type(exc).__name__}: {str(exc)[:2000]}")
        if args.only in (None, "watchpoints"):
            for name in which:
                print(f"{name}: unrelated watchpoints ...", file=sys.stderr, flush=True)
                try:
                    unrelated_watchpoints(name, elf, sym, s, results[name])
                except Exception as exc:
                    results[name].errors.append(f"watchpoints: {type(exc).__name__}: {str(exc)[:2000]}")
        if args.only in (None, "latency"):
            spin = builder.build_guest("gdb_spin", Path(tmp))
            for name in which:
                print(f"{name}: interrupt latency ...", file=sys.stderr, flush=True)
                try:
                    lat = [x * 1e3 for x in interrupt_latency(name, spin, 5 if args.quick else 20)]
                    print(
                        f"\n== {name}: Ctrl-C latency (-exec-interrupt -> *stopped), ms: median "
                        f"{statistics.median(lat[:-1]):.1f}, max {max(lat[:-1]):.1f} over {len(lat) - 1} "
                        f"interrupts of a running guest; a halted CPU: {lat[-1]:.1f} =="
                    )
                except Exception as exc:
                    results[name].errors.append(f"latency: {type(exc).__name__}: {str(exc)[:2000]}")
        if "qemu" not in which:
            why = "--no-qemu" if args.no_qemu else "qemu-system-i386 not on PATH"
            print(f"(QEMU comparison skipped: {why})")
        report(list(results.values()), s)
        if args.profile:
            profile(elf, sym, s, Path(args.profile_out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
