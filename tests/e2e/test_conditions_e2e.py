"""Target-side conditions, agent dprintf and the watch log, end to end (guest: tests/support/guests/cond.s).

Two layers:

* in-process: a Machine behind the real stub (``MachineTarget`` + ``GdbStub``),
  driven with the packets gdb sends (the bytecode is what gdb 13 emitted for
  these conditions, see tests/unit/test_agent.py), so the mechanisms are checked
  exactly and fast; the cost of a false condition is measured and printed;
* real gdb through pygdbmi (``@pytest.mark.gdb``) against
  ``python -m gdbemu.cli -kernel cond.elf -gdb tcp::0 -S``, with gdb's
  remote log (``set remotelogfile``) as the proof of what went on the wire:
  ``;X`` conditions, ``;cmds:`` commands, and how many stops were reported.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import build

from gdbemu.debug.memview import read_virtual
from gdbemu.debug.target import MachineTarget
from gdbemu.machine import Machine
from gdbemu.rsp.stub import GdbStub

# pygdbmi's parser calls the deprecated Logger.warn on MI stream text it does not expect
pytestmark = pytest.mark.filterwarnings("ignore:The 'warn' method is deprecated:DeprecationWarning")

COUNT = 200  # cond.s: loop_top iterations, %ecx = COUNT..1
DP_COUNT = 10
BENCH_COUNT = 20000
GDB_ECX_EQ_7 = "260001162022071327"  # what gdb sends for `if $ecx == 7` (reg 1; ext 32; const8 7; equal; end)


@pytest.fixture(scope="module")
def guest(build_guest: Any) -> tuple[Path, dict[str, int]]:
    elf = build_guest("cond")
    return elf, build.symbols(elf)


def counter_gt(sym: dict[str, int], n: int) -> str:
    """gdb's bytecode for `(int)counter > n`: const32 &counter; ref32; ext 32; const8 n; swap; less_signed; end."""
    return f"24{sym['counter']:08x}19162022{n:02x}2b1427"


def xpacket(hexcode: str) -> bytes:
    return b"X%x,%s" % (len(hexcode) // 2, hexcode.encode())


class Session:
    """A Machine behind the stub, driven like the server does: packets in, slices until a stop."""

    def __init__(self, guest: tuple[Path, dict[str, int]]) -> None:
        elf, self.sym = guest
        self.machine = Machine(ram_size=32 << 20)
        self.machine.load_elf(str(elf))
        self.target = MachineTarget(self.machine)
        self.stub = GdbStub(self.target)
        self.stops: list[bytes] = []
        assert b"ConditionalBreakpoints+" in self.packet(b"qSupported:swbreak+;hwbreak+")

    def packet(self, payload: bytes) -> bytes:
        reply = self.stub.handle_packet(payload)
        return b"".join(reply.packets)

    def monitor(self, text: str) -> str:
        reply = self.stub.handle_packet(b"qRcmd," + text.encode().hex().encode())
        return b"".join(bytes.fromhex(p[1:].decode()) for p in reply.packets if p != b"OK").decode()

    def cont(self, limit: int = 5_000_000) -> bytes:
        assert self.packet(b"c") == b""
        start = self.machine.cpu.icount
        while self.machine.cpu.icount - start < limit:
            event = self.target.run_slice(100_000)
            if event is not None:
                reply = self.stub.stop_reply(event)
                self.stops.append(reply)
                return reply
        raise AssertionError("no stop")

    def u32(self, name: str) -> int:
        return int.from_bytes(read_virtual(self.machine, self.sym[name], 4), "little")

    @property
    def eip(self) -> int:
        return self.machine.cpu.eip

    @property
    def ecx(self) -> int:
        return self.machine.cpu.regs[1]


# ---- in-process: conditions -----------------------------------------------------------------------


def test_condition_on_a_register_stops_once_in_a_hot_loop(guest: Any) -> None:
    s = Session(guest)
    top = s.sym["loop_top"]
    assert s.packet(b"Z0,%x,1;" % top + xpacket(GDB_ECX_EQ_7)) == b"OK"
    stop = s.cont()
    assert stop.startswith(b"T05") and s.eip == top and s.ecx == 7
    assert s.u32("counter") == 3 * (COUNT - 7)
    # every iteration evaluated, in the TB prologue (the loop's TB got hot: tier 2 must not loop past it)
    assert s.target.agent.counters[top] == [COUNT - 6, 1, 0]
    assert s.packet(b"z0,%x,1" % top) == b"OK"
    assert s.cont().startswith(b"W")
    assert len(s.stops) == 2  # one breakpoint stop, then the exit: not COUNT stops


def test_condition_on_memory_and_several_conditions_or(guest: Any) -> None:
    s = Session(guest)
    top = s.sym["loop_top"]
    both = xpacket(counter_gt(s.sym, 40)) + xpacket(GDB_ECX_EQ_7)
    assert s.packet(b"Z0,%x,1;" % top + both) == b"OK"
    s.cont()
    assert (s.eip, s.u32("counter"), s.ecx) == (top, 42, COUNT - 14)
    # gdb removes the breakpoint at the stop and re-inserts it on resume: same behaviour again
    assert s.packet(b"z0,%x,1" % top) == b"OK"
    s.packet(b"Z0,%x,1;" % top + both)
    s.cont()  # resuming from the breakpoint executes its instruction first
    assert (s.u32("counter"), s.ecx) == (45, COUNT - 15)  # (int)counter > 40 is still true
    assert "conditions" in s.monitor("help info conditions")
    text = s.monitor("info conditions")
    assert f"{top:08x} sw (inserted)" in text and f"const32 {s.sym['counter']:#x}; ref32; ext 32; const8 40" in text


def test_condition_error_stops_and_is_reported(guest: Any, capsys: pytest.CaptureFixture[str]) -> None:
    s = Session(guest)
    top = s.sym["loop_top"]
    unreadable = "24f0000000" + "19" + "27"  # const32 0xf0000000; ref32; end  (not RAM)
    assert s.packet(b"Z0,%x,1;" % top + xpacket(unreadable)) == b"OK"
    s.cont()
    assert s.eip == top and s.ecx == COUNT  # the first evaluation failed: stop, as gdbserver does
    assert s.target.agent.counters[top] == [1, 0, 1]
    assert "cannot read 4 bytes at 0xf0000000" in s.monitor("info conditions")
    assert "could not be evaluated" in capsys.readouterr().err


def test_unsupported_bytecode_is_refused_with_an_error(guest: Any) -> None:
    s = Session(guest)
    top = s.sym["loop_top"]
    assert s.packet(b"Z0,%x,1;X3,011b27" % top) == b"E08"  # float prefix: not run, not ignored
    assert s.packet(b"Z0,%x,1;X4,261c0027" % top) == b"E08"  # reg 0x1c00: no such register
    assert top not in s.machine.breakpoints.gdb
    assert s.cont().startswith(b"W")


# ---- in-process: dprintf --------------------------------------------------------------------------


def dprintf_bytecode(fmt: str, regs: list[int]) -> str:
    """gdb's shape for `dprintf LOC,"fmt",$r0,$r1...`: args pushed last first, channel, function, printf, end."""
    out = "".join(f"2600{r:02x}1620" for r in reversed(regs)) + "22002200"
    text = fmt.encode() + b"\0"
    return out + f"34{len(regs):02x}{len(text):04x}" + text.hex() + "27"


def test_dprintf_runs_in_the_target_without_stopping(guest: Any, capsys: pytest.CaptureFixture[str]) -> None:
    s = Session(guest)
    code = dprintf_bytecode("hit %d of %s\\n", [3, 6])  # $ebx, (char *)$esi
    assert s.packet(b"Z0,%x,1;cmds:1," % s.sym["dp_site"] + xpacket(code)) == b"OK"
    assert s.cont().startswith(b"W")  # ran to the end: the dprintf never stopped
    want = "".join(f"hit {i} of hello\n" for i in range(DP_COUNT))
    assert s.target.dprintf_text() == want
    assert s.monitor("dprintf log") == want
    assert want in capsys.readouterr().err
    assert s.monitor("dprintf log clear") and s.monitor("dprintf log") == ""


# ---- in-process: watch log and watch conditions ------------------------------------------------------


def expected_wvar_log(sym: dict[str, int], reads: bool) -> list[tuple[int, str, int, int]]:
    """(pc, access, old, new) of every access to wvar in cond.s, in order."""
    out = [(sym["w1"], "w", 0x11, 5), (sym["w2"], "w", 5, 7), (sym["w3"], "w", 7, 7)]
    if reads:
        out.append((sym["w4"], "r", 7, 7))
    out.append((sym["w4"], "w", 7, 8))
    old = 8
    for v in range(100, 105):
        out.append((sym["wloop"], "w", old, v))
        old = v
    return out


def log_tuples(doc: dict[str, Any]) -> list[tuple[int, str, int, int]]:
    return [(r["pc"], r["access"], r["old"], r["new"]) for r in doc["records"]]


@pytest.mark.parametrize("ztype", [2, 4], ids=["watch", "awatch"])
def test_watch_log_records_every_access_without_stopping(guest: Any, ztype: int) -> None:
    s = Session(guest)
    wvar = s.sym["wvar"]
    assert "watch log on" in s.monitor("watch log on")
    assert s.packet(b"Z%d,%x,4" % (ztype, wvar)) == b"OK"
    assert s.cont().startswith(b"W")  # no stop at all
    doc = json.loads(s.monitor("watch log json"))
    assert log_tuples(doc) == expected_wvar_log(s.sym, reads=ztype == 4)
    assert all(r["addr"] == wvar and r["size"] == 4 and not r["stopped"] for r in doc["records"])
    icounts = [r["icount"] for r in doc["records"]]
    assert icounts == sorted(icounts) and doc["dropped"] == 0
    table = s.monitor("watch log show 2")
    assert f"{s.sym['wloop']:08x} w   {wvar:08x}  4" in table and table.count("\n") == 4
    # the mechanism is still the TLB flag and the replay (one per access)
    assert s.machine.watchpoints.replays == len(doc["records"]) - (1 if ztype == 4 else 0)


def test_watch_condition_stops_only_when_true(guest: Any) -> None:
    s = Session(guest)
    wvar = s.sym["wvar"]
    assert "watch condition" in s.monitor(f"watch cond {wvar:#x} new == 8 and pc == {s.sym['w4']:#x}")
    s.monitor("watch log on")
    assert s.packet(b"Z2,%x,4" % wvar) == b"OK"
    stop = s.cont()
    assert stop.startswith(b"T05") and b"watch:%x;" % wvar in stop
    assert s.eip == s.sym["after_w4"] and s.u32("wvar") == 8  # trap-like: after the store
    assert s.cont().startswith(b"W")
    doc = json.loads(s.monitor("watch log json"))
    assert [r["stopped"] for r in doc["records"]] == [False, False, False, True] + [False] * 5
    assert s.monitor("watch cond").count("new == 8") == 1
    assert "removed" in s.monitor(f"watch cond {wvar:#x} off")


def test_watch_condition_errors_stop(guest: Any) -> None:
    s = Session(guest)
    wvar = s.sym["wvar"]
    s.monitor(f"watch cond {wvar:#x} mem32(0xf0000000) == 1")
    s.packet(b"Z2,%x,4" % wvar)
    s.cont()
    assert s.eip == s.sym["w2"]  # the first write (w1) stopped: its condition could not be evaluated
    assert "cannot read 4 bytes at 0xf0000000" in s.monitor("watch cond")


@pytest.mark.parametrize(
    "text,why",
    [
        ("new ==", "ends too early"),
        ("__import__(1)", "unknown name"),
        ("__import__('os')", "unexpected"),
        ("new.__class__", "unexpected"),
        ("1 < 2 < 3", "chained"),
        ("mem32 0", "takes an argument"),
        ("(new", "missing"),
    ],
)
def test_watch_condition_syntax_errors(guest: Any, text: str, why: str) -> None:
    s = Session(guest)
    assert why in s.monitor(f"watch cond 0x1000 {text}")
    assert s.target.watch_log.conditions == {}


# ---- a false condition: evaluated at every pass, never a stop ------------------------------------------


def test_a_false_condition_is_evaluated_every_pass_and_never_stops(guest: Any) -> None:
    """The compiled hook and the TB-prologue check say "no stop"; the bench loop runs through with the
    condition evaluated once per iteration.  Their speed is measured by benchmarks/cond_bench.py (inproc)."""
    s = Session(guest)
    bench = s.sym["bench_top"]
    never = "2600011620" + "24deadbeef" + "1327"  # reg 1; ext 32; const32 0xdeadbeef; equal; end: never true
    assert s.packet(b"Z0,%x,1;" % bench + xpacket(never)) == b"OK"
    cpu = s.machine.cpu
    assert not s.machine.breakpoints.conditions[bench](cpu)
    # In the guest: the bench loop (decl %ecx; jnz bench_top) from the same state, with and
    # without the breakpoint.
    assert s.packet(b"z0,%x,1" % bench) == b"OK"
    assert s.packet(b"Z0,%x,1" % bench) == b"OK"
    assert s.cont().startswith(b"T05") and s.eip == bench  # arrive at the loop
    assert s.packet(b"z0,%x,1" % bench) == b"OK"
    machine = s.machine

    def run_loop(with_condition: bool) -> None:
        if with_condition:
            s.packet(b"Z0,%x,1;" % bench + xpacket(never))
        else:
            s.packet(b"z0,%x,1" % bench)
        cpu.eip, cpu.regs[1] = bench, BENCH_COUNT
        stop = machine.run(max_insns=2 * BENCH_COUNT - 2)
        assert stop.kind == "limit" and cpu.eip == bench and cpu.regs[1] == 1

    evals = s.target.agent.counters[bench][0]
    for _ in range(3):
        run_loop(True)
    assert s.target.agent.counters[bench][0] - evals == 3 * (BENCH_COUNT - 1)
    assert s.target.agent.counters[bench][1] == 0  # never true
    run_loop(False)
    assert s.target.agent.counters[bench][0] - evals == 3 * (BENCH_COUNT - 1)  # no breakpoint, no evaluation


# ---- real gdb --------------------------------------------------------------------------------------------


@pytest.fixture
def gdb_session(guest: Any, tmp_path: Path) -> Iterator[tuple[Any, Any, dict[str, int], Path]]:
    """gdbemu -S under real gdb with a remote log; yields (session, emulator, symbols, log path)."""
    pytest.importorskip("pygdbmi")
    from gdbemu.testing import Emulator, GdbNotFoundError, Session, find_gdb

    try:
        find_gdb()
    except GdbNotFoundError:
        pytest.skip("gdb is not installed")
    elf, sym = guest
    log = tmp_path / "remote.log"
    emu = Emulator.gdbemu(elf, wait_ready=False)
    try:
        with Session.connect(emulator=emu, kernel=elf, gdb_setup=[f"set remotelogfile {log}"]) as s:
            yield s, emu, sym, log
    finally:
        emu.close()


def stop_pc(stop: Any) -> int:
    assert stop.pc is not None, stop
    return int(stop.pc)


def wire(log: Path) -> str:
    return log.read_text(errors="replace")


def bp_stops(log: Path) -> int:
    """Breakpoint stop replies gdb received ($T..swbreak:)."""
    return len(re.findall(r"^r .*\$T05[^#]*swbreak:", wire(log), re.M))


@pytest.mark.gdb
def test_gdb_target_side_conditions(gdb_session: Any) -> None:
    gdb, emu, sym, log = gdb_session
    gdb.gdb_command("set breakpoint condition-evaluation target")
    gdb.gdb_command("break *store_insn if (int)counter > 40")
    stop = gdb.cont()
    assert stop_pc(stop) == sym["store_insn"]
    assert gdb.read_int(f"*(int *){sym['counter']:#x}") == 42 and gdb.read_int("(unsigned int)$ecx") == COUNT - 14
    gdb.gdb_command("delete")
    gdb.gdb_command("break *loop_top if $ecx == 7")
    stop = gdb.cont()
    assert stop_pc(stop) == sym["loop_top"] and gdb.read_int("(unsigned int)$ecx") == 7
    assert gdb.read_int(f"*(int *){sym['counter']:#x}") == 3 * (COUNT - 7)
    assert "(target evals)" in gdb.gdb_command("info breakpoints")
    info = gdb.gdb_command("monitor info conditions")
    # stopped at store_insn with %ecx = COUNT-14, so loop_top then sees COUNT-15 .. 7
    assert f"{sym['loop_top']:08x} sw" in info and f"{COUNT - 15 - 7 + 1} evaluations, 1 true, 0 errors" in info
    gdb.gdb_command("delete")
    gdb.gdb_command("break *finish")
    assert stop_pc(gdb.cont()) == sym["finish"]
    text = wire(log)
    assert "ConditionalBreakpoints+" in text
    assert f"Z0,{sym['loop_top']:x},1;X9,{GDB_ECX_EQ_7}" in text  # the condition went on the wire
    assert f"Z0,{sym['store_insn']:x},1;Xd,{counter_gt(sym, 40)}" in text
    assert bp_stops(log) == 3  # one per condition and finish: not one per loop iteration


@pytest.mark.gdb
def test_gdb_agent_dprintf(gdb_session: Any) -> None:
    gdb, emu, sym, log = gdb_session
    gdb.gdb_command("set dprintf-style agent")
    gdb.gdb_command('dprintf *dp_site,"i=%d s=%s c=%c\\n", $ebx, (char *)$esi, 65 + $ebx')
    gdb.gdb_command("break *w1")
    assert stop_pc(gdb.cont()) == sym["w1"]  # the first stop is after the dprintf loop
    want = "".join(f"i={i} s=hello c={chr(65 + i)}\n" for i in range(DP_COUNT))
    assert gdb.gdb_command("monitor dprintf log") == want
    assert bp_stops(log) == 1
    text = wire(log)
    assert "BreakpointCommands+" in text and re.search(rf"Z0,{sym['dp_site']:x},1;cmds:1,X", text)
    deadline = time.monotonic() + 5
    while want not in emu.stderr_text() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert want in emu.stderr_text()  # gdbemu's stderr, as gdbserver prints on its own output


@pytest.mark.gdb
def test_gdb_watch_log_and_watch_condition(gdb_session: Any) -> None:
    gdb, emu, sym, log = gdb_session
    wvar = sym["wvar"]
    gdb.gdb_command(f"watch *(int *){wvar:#x}")
    gdb.gdb_command("monitor watch log on")
    gdb.gdb_command(f'eval "monitor watch cond %p new == 8", (int *){wvar:#x}')
    gdb.gdb_command("break *finish")
    stop = gdb.cont()
    assert stop.raw["reason"] == "watchpoint-trigger" and stop_pc(stop) == sym["after_w4"]
    assert stop.raw["value"] == {"old": "17", "new": "8"}  # gdb's own view of the hit
    assert stop_pc(gdb.cont()) == sym["finish"]
    doc = json.loads(gdb.gdb_command("monitor watch log json"))
    assert log_tuples(doc) == expected_wvar_log(sym, reads=False)
    assert [r["stopped"] for r in doc["records"]] == [False, False, False, True] + [False] * 5
    assert len(re.findall(r"^r .*\$T05[^#]*watch:", wire(log), re.M)) == 1
