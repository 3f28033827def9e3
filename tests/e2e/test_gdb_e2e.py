"""End to end: the real gdb 13, driven through pygdbmi, debugging gdbemu running as a subprocess.

These are issue 4's acceptance tests.  Everything goes the way a user's
session goes: gdbemu is started as ``python -m gdbemu.cli -kernel GUEST
-gdb tcp:127.0.0.1:0 -S -display none -serial null``, gdb loads the guest's
ELF for its symbols and attaches with ``target remote``, and the assertions
read only what gdb reports (MI stop records, register and memory values, the
text of ``info``/``monitor`` commands) or what the guest itself recorded.
The Machine-level checks of the same mechanisms are in tests/guests/test_debug.py;
here the whole chain is exercised: gdb's own logic (when it removes and
reinserts breakpoints, how it checks watchpoint values, what it reads
after a stop), the RSP server, the stub, MachineTarget, and the CLI.

Guests (built at test time from tests/support/guests/): ``gdb_target`` is a
sequence of numbered scenes, one per feature; ``gdb_spin`` counts forever
(interrupts, detach, dropped connections); ``gdb_serial`` prints through
COM1 (the debugger must not perturb it).  The process and gdb plumbing is
the public test API, :mod:`gdbemu.testing` (``Emulator`` and ``Session``).
"""

from __future__ import annotations

import re
import shlex
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from support import build

from gdbemu.rsp.arch.i386 import I386_SSE_LAYOUT
from gdbemu.testing import Emulator, GdbNotFoundError, Session, SessionTimeout, Stop, find_gdb

try:
    GDB: str | None = find_gdb()
except GdbNotFoundError:
    GDB = None

pytestmark = [pytest.mark.gdb, pytest.mark.skipif(GDB is None, reason="gdb is not installed")]

COUNT = 100  # iterations of gdb_target's first loop
PATTERN = 0x5A5A5A5A  # what gdb_target's rep stosd writes


class Guest:
    """A built guest: its ELF (gdb loads it for symbols) and its symbol table (so tests name addresses)."""

    def __init__(self, elf: Path) -> None:
        self.elf = elf
        self.sym = build.symbols(elf)

    def __getitem__(self, name: str) -> int:
        return self.sym[name]


@pytest.fixture(scope="module")
def target(build_guest: Callable[[str], Path]) -> Guest:
    """Built once: every test boots its own gdbemu on the same ELF (the guest's state is per process)."""
    return Guest(build_guest("gdb_target"))


@pytest.fixture(scope="module")
def spin(build_guest: Callable[[str], Path]) -> Guest:
    return Guest(build_guest("gdb_spin"))


@pytest.fixture(scope="module")
def serial_guest(build_guest: Callable[[str], Path]) -> Guest:
    return Guest(build_guest("gdb_serial"))


class Lab:
    """Starts emulators and gdb sessions for one test and ends them all afterwards, whatever happened.

    A failing assertion in the middle of a session must not leave a gdbemu
    listening or a gdb waiting on it: the next tests (and CI) would inherit them.
    """

    def __init__(self) -> None:
        self.emulators: list[Emulator] = []
        self.sessions: list[Session] = []

    def emulator(self, guest: Guest | None, *args: str, **kwargs: Any) -> Emulator:
        emu = Emulator.gdbemu(guest.elf if guest else None, *args, **kwargs)
        self.emulators.append(emu)
        return emu

    def connect(
        self, guest: Guest | None, emu: Emulator | None = None, address: str | None = None, **kwargs: Any
    ) -> Session:
        """gdb with the guest's symbols attached to ``emu`` (which outlives the session) or to ``address``."""
        s = Session.connect(address, guest.elf if guest else None, emulator=emu, own_emulator=False, **kwargs)
        self.sessions.append(s)
        return s

    def attach(self, guest: Guest, *args: str) -> tuple[Emulator, Session]:
        """A fresh gdbemu waiting (-S) for gdb, and a gdb attached to it, stopped at the kernel's entry.

        gdb starts while gdbemu is still importing and building its machine.
        """
        emu = self.emulator(guest, *args, wait_ready=False)
        return emu, self.connect(guest, emu)

    def close(self) -> None:
        for thing in [*self.sessions, *self.emulators]:
            try:
                thing.close()
            except Exception as exc:  # keep closing the others; the test's own failure matters more
                print(f"closing {thing!r} failed: {exc}")


@pytest.fixture
def lab() -> Iterator[Lab]:
    s = Lab()
    try:
        yield s
    finally:
        s.close()


def reg(s: Session, name: str) -> int:
    """A register as an unsigned 32-bit number (``$eip`` would otherwise print as a function pointer)."""
    return s.read_int(f"(unsigned int)${name}") & 0xFFFFFFFF


def u32(s: Session, addr: int) -> int:
    return s.read_int(f"*(unsigned int *){addr:#x}") & 0xFFFFFFFF


def mi_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def watch(s: Session, expr: str, kind: str = "") -> None:
    """``watch``/``rwatch``/``awatch`` (kind "", "-r", "-a") on a C expression, as gdb's MI spells them."""
    s.mi(f"-break-watch {kind} {mi_quote(expr)}".replace("  ", " "))


def expect_stop(stop: Stop, reason: str, pc: int | None = None) -> dict[str, Any]:
    """Check a stop's MI reason (and PC); a mismatch shows the whole record, which says what came."""
    payload = dict(stop.raw)
    assert payload.get("reason") == reason, f"expected a {reason} stop, got {payload}"
    if pc is not None:
        assert stop.pc == pc, f"{reason} at {stop.pc:#x}, expected {pc:#x}: {payload}"
    return payload


def expect_exit(s: Session, emu: Emulator) -> None:
    """The guest runs to its end: gdb says exited (W01: isa-debug-exit with 0), and gdbemu exits with 1."""
    stop = s.cont()
    assert dict(stop.raw) == {"reason": "exited", "exit-code": "01"}, stop
    assert "exited with code 01" in said(s)
    assert emu.wait(10) == 1


def said(s: Session) -> str:
    """What gdb printed about the last stop ("Old value = ...", "Breakpoint 1, ...")."""
    return s.last_stop.console if s.last_stop is not None else ""


def shell_pipe(argv: Sequence[str]) -> str:
    """``| cmd args`` for ``target remote | ...`` (gdb runs it with /bin/sh)."""
    return "| " + " ".join(shlex.quote(a) for a in argv)


# ---- breakpoints ---------------------------------------------------------------------------------


def test_break_continue_a_hundred_times(lab: Lab, target: Guest) -> None:
    """A breakpoint in a loop stops before the store every iteration; gdb sees the loop variable each time."""
    emu, s = lab.attach(target)
    s.break_at("*store_insn")
    for i in range(1, COUNT + 1):
        payload = expect_stop(s.cont(), "breakpoint-hit", target["store_insn"])
        assert payload["bkptno"] == "1"
        assert reg(s, "eax") == i  # the loop variable
        assert u32(s, target["counter"]) == i - 1  # the store has not run yet
    table = s.mi("-break-info 1")["BreakpointTable"]["body"]
    assert table[0]["times"] == str(COUNT)
    s.delete()
    expect_exit(s, emu)


def test_hbreak(lab: Lab, target: Guest) -> None:
    """``hbreak`` (Z1) stops like a software breakpoint, reports as a hardware one, and resumes from itself."""
    _, s = lab.attach(target)
    s.break_at("*store_insn", hardware=True)
    out = s.gdb_command("info breakpoints")
    assert re.search(r"1\s+hw breakpoint\s+keep y\s+0x0010[0-9a-f]+ <store_insn>", out), out
    s.gdb_command("set debug remote 1")  # to see the packet on the wire
    mark = len(s.log_output)
    for i in range(1, 4):
        expect_stop(s.cont(), "breakpoint-hit", target["store_insn"])
        assert reg(s, "eax") == i
    s.gdb_command("set debug remote 0")
    wire = s.log_output[mark:]
    assert f"Sending packet: $Z1,{target['store_insn']:x},1#" in wire, wire[-3000:]
    assert "Packet received: T05thread:1;hwbreak:;" in wire, wire[-3000:]
    assert "Breakpoint 1, " in said(s) and "store_insn" in said(s)
    s.delete()
    s.break_at("*after_call", hardware=True)
    expect_stop(s.cont(), "breakpoint-hit", target["after_call"])
    assert u32(s, target["leaf_count"]) == 1
    assert u32(s, target["counter"]) == COUNT


def test_stepi_through_call_int_iret_and_a_fault(lab: Lab, target: Guest) -> None:
    """stepi enters a called function, an interrupt handler (its first instruction), returns through iret,
    and a step onto a faulting instruction ends on the exception handler's first instruction."""
    _, s = lab.attach(target)
    s.break_at("*call_site")
    expect_stop(s.cont(), "breakpoint-hit", target["call_site"])
    s.delete()
    esp = reg(s, "esp")
    expect_stop(s.stepi(), "end-stepping-range", target["leaf"])
    assert reg(s, "esp") == esp - 4 and u32(s, esp - 4) == target["after_call"]  # the return address
    s.stepi()  # incl leaf_count
    assert u32(s, target["leaf_count"]) == 1
    expect_stop(s.stepi(), "end-stepping-range", target["after_call"])  # ret
    assert reg(s, "esp") == esp
    assert target["int_site"] == target["after_call"]
    flags = reg(s, "eflags")
    expect_stop(s.stepi(), "end-stepping-range", target["int30_handler"])  # int $0x30: the handler's first insn
    assert reg(s, "esp") == esp - 12
    assert [u32(s, esp - 12 + 4 * i) for i in range(3)] == [target["after_int"], 0x08, flags]  # EIP, CS, EFLAGS
    s.stepi()  # incl int30_count
    assert u32(s, target["int30_count"]) == 1
    expect_stop(s.stepi(), "end-stepping-range", target["after_int"])  # iret
    assert reg(s, "esp") == esp and reg(s, "eflags") == flags
    s.stepi()  # movl $after_ud2, resume_eip
    s.stepi()  # SET_HOOK 6
    assert s.stepi().pc == target["isr6"] == reg(s, "eip")  # ud2 faults: the #UD handler's first insn
    assert u32(s, target["exc_count"] + 4 * 6) == 0  # the handler has not run yet
    assert u32(s, reg(s, "esp")) == target["ud2_site"]  # a fault: the pushed EIP is the ud2's


# ---- watchpoints ---------------------------------------------------------------------------------


def test_watch_a_global_written_in_a_loop(lab: Lab, target: Guest) -> None:
    """A write watchpoint stops after each store (PC after it) with gdb's old and new values.

    A write by gdb itself into the watched variable is not a guest access:
    it does not stop, and the next hit reports it as the old value."""
    _, s = lab.attach(target)
    watch(s, f"*(int *){target['counter']:#x}")
    for i in range(1, 6):
        payload = expect_stop(s.cont(), "watchpoint-trigger", target["after_store"])
        assert payload["value"] == {"old": str(i - 1), "new": str(i)}
        assert f"Old value = {i - 1}\nNew value = {i}\n" in said(s), said(s)
        assert reg(s, "eax") == i
    assert "Hardware watchpoint 1" in said(s)
    # gdb's own write is no guest access: no stop, and it is the next hit's old value
    s.gdb_command(f"set var *(int *){target['counter']:#x} = 500")
    payload = expect_stop(s.cont(), "watchpoint-trigger", target["after_store"])
    assert payload["value"] == {"old": "500", "new": "6"}


def test_watch_in_rep_stosd_and_rep_movsd(lab: Lab, target: Guest) -> None:
    """A rep string instruction stops after the iteration that wrote the watched dword, PC still on the rep."""
    _, s = lab.attach(target)
    array, array2 = target["array"], target["array2"]
    watch(s, f"*(int *){array + 40:#x}")  # array[10]
    payload = expect_stop(s.cont(), "watchpoint-trigger", target["stos_insn"])
    assert payload["value"] == {"old": "0", "new": str(PATTERN)}
    assert reg(s, "ecx") == 40 - 11 and reg(s, "edi") == array + 44  # 11 iterations done
    assert u32(s, array + 44) == 0  # the 12th has not run
    s.delete()
    watch(s, f"*(int *){array2 + 40:#x}")  # array2[10]
    payload = expect_stop(s.cont(), "watchpoint-trigger", target["movs_insn"])
    assert payload["value"] == {"old": "0", "new": str(PATTERN)}
    assert (reg(s, "ecx"), reg(s, "esi"), reg(s, "edi")) == (40 - 11, array + 44, array2 + 44)
    assert u32(s, array + 4 * 39) == PATTERN  # the stosd finished after the first stop
    assert u32(s, array2 + 44) == 0
    s.delete()
    s.break_at("*page_lo_store")
    s.cont()
    assert s.read_memory(array2, 160) == PATTERN.to_bytes(4, "little") * 40


def test_watch_spanning_a_page_boundary(lab: Lab, target: Guest) -> None:
    """An 8-byte watchpoint across a page boundary fires for a store on either side of it; so does one in a
    4 MiB page."""
    _, s = lab.attach(target)
    straddle = target["straddle"]
    assert straddle & 0xFFF == 0
    watch(s, f"*(unsigned long long *){straddle - 4:#x}")
    payload = expect_stop(s.cont(), "watchpoint-trigger", target["after_lo_store"])
    assert payload["value"] == {"old": "0", "new": str(0x55 << 8)}
    payload = expect_stop(s.cont(), "watchpoint-trigger", target["after_hi_store"])
    assert payload["value"] == {"old": str(0x55 << 8), "new": str(0x66 << 48 | 0x55 << 8)}
    s.delete()
    watch(s, "*(int *)0x40001234")  # in the 4 MiB page (the TLB holds its 4 KiB pieces)
    payload = expect_stop(s.cont(), "watchpoint-trigger", target["after_big_store"])
    assert payload["value"] == {"old": "0", "new": str(0xABCD)}


def test_rwatch_and_awatch_report_their_kinds(lab: Lab, target: Guest) -> None:
    """rwatch stops after a read (read-watchpoint-trigger), awatch after a read-modify-write (access-...)."""
    _, s = lab.attach(target)
    readme = target["readme"]
    watch(s, f"*(int *){readme:#x}", "-r")
    payload = expect_stop(s.cont(), "read-watchpoint-trigger", target["after_read"])
    assert payload["value"] == {"value": "100"}
    assert "Hardware read watchpoint 1" in said(s) and "Value = 100" in said(s)
    s.delete()
    watch(s, f"*(int *){readme:#x}", "-a")
    payload = expect_stop(s.cont(), "access-watchpoint-trigger", target["after_rmw"])
    assert payload["value"] == {"old": "100", "new": "101"}
    assert "Hardware access (read/write) watchpoint 2" in said(s)


def test_watchpoint_on_an_untouched_variable_never_stops(lab: Lab, target: Guest) -> None:
    """Watching (awatch) a variable the guest never accesses: the guest runs to its exit, gdb says exited."""
    emu, s = lab.attach(target)
    watch(s, f"*(int *){target['untouched']:#x}", "-a")
    expect_exit(s, emu)


def test_guest_dr7_watchpoint_fires_while_gdb_watches_something_else(lab: Lab, target: Guest) -> None:
    """The guest's own DR1 data breakpoint delivers #DB to its handler; gdb's watch on a neighbour still stops."""
    _, s = lab.attach(target)
    watch(s, f"*(int *){target['counter2']:#x}")
    total = 0
    for ecx in (3, 2, 1):
        total += ecx
        payload = expect_stop(s.cont(), "watchpoint-trigger", target["dr_after_add"])
        assert payload["value"] == {"old": str(total - ecx), "new": str(total)}
        assert u32(s, target["db_count"]) == 4 - ecx  # the guest's #DB for this iteration's store already ran
    s.delete()
    s.break_at("*dr_done")
    expect_stop(s.cont(), "breakpoint-hit", target["dr_done"])
    assert u32(s, target["db_count"]) == 3
    for i in range(3):
        assert u32(s, target["db_dr6"] + 4 * i) & 0xF == 0b0010  # B1: DR1 hit
        assert u32(s, target["db_eip"] + 4 * i) == target["dr_store_next"]  # a trap: after the store
    assert reg(s, "dr7") & 0xFF == 0  # the guest turned it off again


# ---- code: rewritten by the guest, written by gdb, checksummed ---------------------------------------


def test_breakpoint_on_code_the_guest_rewrites(lab: Lab, target: Guest) -> None:
    """The mark belongs to the address: a breakpoint on an instruction the guest patches hits, the new code runs."""
    _, s = lab.attach(target)
    at = target["patch_target"]
    assert s.read_memory(at, 5) == bytes.fromhex("ba00000000")  # mov $0, %edx as linked
    s.break_at("*patch_target")
    expect_stop(s.cont(), "breakpoint-hit", at)
    assert s.read_memory(at, 5) == bytes.fromhex("ba34120000")  # the guest patched the immediate
    s.stepi()
    assert reg(s, "edx") == 0x1234


def test_set_var_writes_guest_code_that_then_runs(lab: Lab, target: Guest) -> None:
    """``set {unsigned char}ADDR = 0x90`` over an instruction that already ran (and was translated): the nop runs."""
    emu, s = lab.attach(target)
    site = target["patch_site"]
    s.break_at("*patch_site")
    for i in range(3):
        expect_stop(s.cont(), "breakpoint-hit", site)
        assert reg(s, "ebx") == i
    s.delete()
    assert s.read_memory(site, 1) == b"\x43"  # incl %ebx
    s.gdb_command(f"set var {{unsigned char}}{site:#x} = 0x90")
    assert s.read_memory(site, 1) == b"\x90"
    s.break_at("*patch_done")
    expect_stop(s.cont(), "breakpoint-hit", target["patch_done"])
    assert reg(s, "ebx") == 2  # the 8 remaining iterations, this one included, ran the nop
    assert u32(s, target["patch_iters"]) == 10 and u32(s, target["patch_result"]) == 2
    s.delete()
    expect_exit(s, emu)


@pytest.mark.slow
def test_code_checksum_is_the_same_with_a_hundred_breakpoints(lab: Lab, target: Guest) -> None:
    """The guest sums its own code bytes: breakpoints are not in guest memory, so the sum does not change.

    Slow (two sessions, 200 continues): it runs in CI's slow pass."""
    field, done = target["bp_field"], target["checksum_done"]
    start, end = target["code_start"], target["code_end"]
    sums = []
    for n_bps in (0, 100):
        _, s = lab.attach(target)
        for i in range(n_bps):
            s.break_at(f"*{field + i:#x}")
        s.break_at("*checksum_done")
        for i in range(n_bps):
            expect_stop(s.cont(), "breakpoint-hit", field + i)
            assert reg(s, "edi") == i
        expect_stop(s.cont(), "breakpoint-hit", done)
        assert u32(s, target["bp_field_count"]) == 100
        code = s.read_memory(start, end - start)
        assert code[field - start : field - start + 100] == b"\x47" * 100  # incl %edi, never an int3
        checksum = u32(s, target["checksum"])
        assert checksum == sum(code) & 0xFFFFFFFF  # the guest saw what gdb sees
        sums.append(checksum)
        s.close()
    assert sums[0] == sums[1]


# ---- registers and monitor commands --------------------------------------------------------------


def test_info_registers_shows_system_registers(lab: Lab, target: Guest) -> None:
    """``info registers`` lists the system registers (the target description's system feature) with their values."""
    _, s = lab.attach(target)
    s.break_at("*code_start")
    s.cont()
    out = s.gdb_command("info registers")
    expected = {
        "cr0": r"0x80010011\s+\[ PE ET WP PG \]",
        "cr3": r"0x200000\s+2097152",
        "cr4": r"0x10\s+\[ PSE \]",
        "gdtr_base": rf"{target['gdt']:#x}",
        "gdtr_limit": r"0x3f\s+63",
        "idtr_base": rf"{target['idt']:#x}",
        "idtr_limit": r"0x407\s+1031",  # lib.inc's IDT: 0x81 gates
        "cs": r"0x8\s+8",
        "ss": r"0x10\s+16",
        "eip": rf"{target['code_start']:#x}\s+{target['code_start']:#x} <code_start>",
        "dr7": r"0x400\s+1024",
        "efer": r"0x0\s+\[ \]",
    }
    for name, value in expected.items():
        assert re.search(rf"^{name}\s+{value}", out, re.M), f"{name}: want {value!r} in\n{out}"
    assert reg(s, "cr3") == 0x200000 and reg(s, "gdtr_base") == target["gdt"]


def test_monitor_commands(lab: Lab, target: Guest) -> None:
    """help, info tlb (WATCH and NOTDIRTY flags), info mem, stats, x/4x, sstep irq|noirq, an unknown command."""
    _, s = lab.attach(target)
    helptext = s.gdb_command("monitor help")
    for name in ("help", "info tlb", "info mem", "info registers", "stats", "x/Nx PADDR", "sstep [irq|noirq]"):
        assert f"  {name}" in helptext, helptext
    # Keep gdb's points inserted while stopped, so the TLB shows them.
    s.gdb_command("set breakpoint always-inserted on")
    watch(s, f"*(int *){target['untouched']:#x}")
    s.break_at("*patch_done")  # after the guest stored into its code page (scene 6)
    expect_stop(s.cont(), "breakpoint-hit", target["patch_done"])
    tlb = s.gdb_command("monitor info tlb")
    rows = {int(m[1], 16): m[2] for m in re.finditer(r"^\s+([0-9a-f]{8}) -> [0-9a-f]{8}\s+(.*)$", tlb, re.M)}
    assert "write:WATCH" in rows[target["untouched"] & ~0xFFF], tlb
    assert "write:NOTDIRTY" in rows[target["patch_target"] & ~0xFFF], tlb  # a page holding translated code
    mem = s.gdb_command("monitor info mem")
    spans = [
        (int(a, 16), int(b, 16), int(p, 16))
        for a, b, p in re.findall(r"^([0-9a-f]{8})-([0-9a-f]{8}) [0-9a-f]{8} -> ([0-9a-f]{8}) -rw", mem, re.M)
    ]
    low = [span for span in spans if span[0] < 0x400000]
    assert low[0][0] == 0 and low[-1][1] == 0x400000, mem  # lib.inc's identity map of 4 MiB
    assert all(v == p for v, _, p in low) and all(a[1] == b[0] for a, b in zip(low, low[1:], strict=False)), mem
    assert re.search(r"^40000000-40400000 00400000 -> 00400000 -rw.* 4M$", mem, re.M), mem
    stats = dict(re.findall(r"^(\w+)\s+(\d+)$", s.gdb_command("monitor stats"), re.M))
    assert int(stats["breakpoint_hits"]) >= 1 and int(stats["notdirty_writes"]) >= 1, stats
    assert int(stats["icount"]) > 0 and int(stats["tb_built"]) > 0, stats
    counter = target["counter"]
    words = [u32(s, counter + 4 * i) for i in range(4)]
    assert words[:3] == [COUNT, 0, 101]
    assert s.gdb_command(f"monitor x/4x {counter:#x}").strip() == f"{counter:08x}: " + " ".join(
        f"{w:08x}" for w in words
    )
    assert "single-step mode: irq" in s.gdb_command("monitor sstep irq")
    s.stepi()
    assert "single-step mode: irq" in s.gdb_command("monitor sstep")
    assert "single-step mode: noirq" in s.gdb_command("monitor sstep noirq")
    s.stepi()
    assert "usage: sstep [irq|noirq]" in s.gdb_command("monitor sstep sideways")
    assert "unknown monitor command" in s.gdb_command("monitor frobnicate")


# ---- interrupting, detaching, reconnecting --------------------------------------------------------------


def test_ctrl_c_stops_a_spinning_guest(lab: Lab, spin: Guest) -> None:
    """-exec-interrupt (0x03 on the wire) stops a running guest with SIGINT, or a halted one.

    How fast is measured by benchmarks/gdb_bench.py (interrupt latency), not asserted here."""
    _, s = lab.attach(spin)
    count = 0
    for _ in range(5):
        s.cont_nowait()
        time.sleep(0.15)
        stop = s.interrupt(timeout=5)
        expect_stop(stop, "signal-received")
        assert stop.signal == "SIGINT"
        now = u32(s, spin["spin_count"])
        assert now > count
        count = now
    # a CPU halted for good (cli; hlt) is interrupted just the same
    s.gdb_command("set var $pc = halt_forever")
    s.cont_nowait()
    time.sleep(0.15)
    stop = s.interrupt(timeout=5)
    assert expect_stop(stop, "signal-received")["signal-name"] == "SIGINT"
    assert stop.pc == spin["halt_forever"] + 2  # after the hlt
    assert '"CPU#0" (CPU#0 [halted])' in s.gdb_command("info threads")


def test_detach_and_reattach_twice(lab: Lab, spin: Guest) -> None:
    """Detach lets the guest run on with its state; a new gdb attaches, twice; breakpoints do not survive."""
    emu = lab.emulator(spin)
    counter = spin["spin_count"]
    s = lab.connect(spin, emu)
    s.break_at("*spin_bp")
    expect_stop(s.cont(), "breakpoint-hit", spin["spin_bp"])
    last = u32(s, counter)
    assert last == 1
    s.detach()
    s.close()
    for n in range(2):
        time.sleep(0.2)  # the guest runs free meanwhile
        assert emu.alive()
        s = lab.connect(spin, emu)
        now = u32(s, counter)
        assert now > last, f"reattach #{n + 1}: the counter did not move while detached"
        assert s.gdb_command("monitor info watchpoints").strip() == "no watchpoints"
        s.cont_nowait()
        time.sleep(0.1)
        # No breakpoint-hit: the earlier session's breakpoint is gone.
        expect_stop(s.interrupt(), "signal-received")
        last = u32(s, counter)
        assert last > now
        s.detach()
        s.close()


def test_a_killed_gdb_then_a_new_one(lab: Lab, spin: Guest) -> None:
    """gdb killed with SIGKILL while the guest runs: its points are removed and a new gdb attaches."""
    emu = lab.emulator(spin)
    s = lab.connect(spin, emu)
    s.gdb_command("set breakpoint always-inserted on")
    s.break_at("*never_run")
    watch(s, f"*(int *){spin['spin_unused']:#x}")
    listed = s.gdb_command("monitor info watchpoints")
    assert "1 watchpoints" in listed and f"{spin['never_run']:08x}" in listed, listed
    before = u32(s, spin["spin_count"])
    s.cont_nowait()
    time.sleep(0.1)
    s.kill_gdb()
    time.sleep(0.2)
    assert emu.alive()
    s2 = lab.connect(spin, emu)
    assert s2.gdb_command("monitor info watchpoints").strip() == "no watchpoints"
    assert u32(s2, spin["spin_count"]) > before
    s2.cont_nowait()
    time.sleep(0.05)
    expect_stop(s2.interrupt(), "signal-received")


def test_points_inserted_while_the_loop_is_hot(lab: Lab, spin: Guest) -> None:
    """Interrupt a loop that runs as a compiled (tier 2) block, then watch and break inside it: both fire."""
    _, s = lab.attach(spin)
    s.cont_nowait()
    time.sleep(0.3)
    s.interrupt()
    tbs = s.gdb_command("monitor info tbs")
    m = re.search(r"\(tier 2: (\d+)\)", tbs)
    assert m is not None and int(m[1]) >= 1, tbs
    watch(s, f"*(int *){spin['spin_count']:#x}")
    for _ in range(3):
        payload = expect_stop(s.cont(), "watchpoint-trigger", spin["spin_bp"])
        assert int(payload["value"]["new"]) == int(payload["value"]["old"]) + 1
    s.delete()
    s.cont_nowait()
    time.sleep(0.2)
    s.interrupt()
    s.break_at("*main")  # the loop head, inside the compiled block
    counts = []
    for _ in range(3):
        expect_stop(s.cont(), "breakpoint-hit", spin["main"])
        counts.append(u32(s, spin["spin_count"]))
    assert counts[1] == counts[0] + 1 and counts[2] == counts[1] + 1


def test_kill_ends_gdbemu(lab: Lab, target: Guest) -> None:
    """gdb's ``kill`` ends the emulator (there is nothing left to debug)."""
    emu, s = lab.attach(target)
    s.break_at("*after_call")
    s.cont()
    s.gdb_command("kill")
    assert emu.wait(10) == 0


def test_every_monitor_command_is_accepted_by_the_name_help_lists(lab: Lab, target: Guest) -> None:
    """Each line of ``monitor help`` starts with a command's name as the user must type it; each one works."""
    _, s = lab.attach(target)
    s.break_at("*after_call")
    s.cont()
    names = re.findall(r"^  ([a-z_/ ]+?)(?: \[| [A-Z]|:)", s.gdb_command("monitor help"), re.M)
    assert "system_reset" in names and "info tlb" in names, names
    for name in names:
        line = "x/4x 0x100000" if name.startswith("x/") else name
        out = s.gdb_command(f"monitor {line}")
        assert "unknown monitor command" not in out, (name, out)
    # system_reset (run last by the loop above, or again here) boots the kernel again
    s.gdb_command("monitor system_reset")
    s.gdb_command("maintenance flush register-cache")  # gdb caches registers across monitor commands
    assert reg(s, "eip") == 0x10000C and reg(s, "cr0") & 0x80000000 == 0


# ---- endpoints ---------------------------------------------------------------------------------------


def _run_to_checksum_and_exit(s: Session, target: Guest) -> None:
    s.break_at("*checksum_done")
    expect_stop(s.cont(), "breakpoint-hit", target["checksum_done"])
    assert u32(s, target["counter"]) == COUNT
    s.delete()
    stop = s.cont()
    assert dict(stop.raw) == {"reason": "exited", "exit-code": "01"}, stop


def test_target_remote_pipe_stdio(lab: Lab, target: Guest) -> None:
    """``target remote | python -m gdbemu.cli -gdb stdio ...``: gdb starts gdbemu and talks over its stdin/stdout."""
    argv = [
        sys.executable,
        "-m",
        "gdbemu.cli",
        "-gdb",
        "stdio",
        "-kernel",
        str(target.elf),
        "-display",
        "none",
        "-serial",
        "null",
        "-debugcon",
        "null",
    ]
    s = lab.connect(target, address=shell_pipe(argv))
    assert s.backtrace()[0].pc == reg(s, "eip") == 0x10000C  # lib.inc's _start after the multiboot header
    _run_to_checksum_and_exit(s, target)


def test_target_remote_pipe_stdio_with_the_default_console(lab: Lab, target: Guest) -> None:
    """The same, spelled as a user would: no -serial/-debugcon, so the console defaults must move off stdio."""
    argv = [sys.executable, "-m", "gdbemu.cli", "-gdb", "stdio", "-kernel", str(target.elf), "-display", "none"]
    s = lab.connect(target, address=shell_pipe(argv), timeout=5)
    _run_to_checksum_and_exit(s, target)


def test_unix_socket(lab: Lab, target: Guest, tmp_path: Path) -> None:
    """``-gdb unix:PATH``; gdb connects to the socket by its path."""
    path = tmp_path / "gdb.sock"
    emu = lab.emulator(target, gdb=f"unix:{path}")
    assert emu.address == f"unix:{path}"
    s = lab.connect(target, address=str(path))
    _run_to_checksum_and_exit(s, target)
    assert emu.wait(10) == 1


def test_no_kernel_boots_the_demo_for_gdb(lab: Lab) -> None:
    """``gdbemu`` with no kernel boots the demo kernel, and gdb debugs it.

    On a free port: without ``-gdb`` the demo listens on 127.0.0.1:1234, which
    a test must not take (tests run in parallel, and anything may hold it)."""
    emu = lab.emulator(None, gdb="tcp:127.0.0.1:0")  # -S: the demo, unpaced here, would finish before gdb attaches
    assert emu.address is not None and emu.address.startswith("127.0.0.1:")
    assert f"waiting for gdb on {emu.address}" in emu.stderr_text()
    assert "no kernel given, booting the demo kernel" in emu.stderr_text()
    s = lab.connect(None, emu)
    eip = reg(s, "eip")
    assert 0x100000 <= eip < 0x200000, hex(eip)  # somewhere in the demo kernel
    assert reg(s, "cs") == 0x08
    s.detach()


# ---- the guest cannot tell -------------------------------------------------------------------------------


def test_serial_output_identical_with_gdb_stepping(lab: Lab, serial_guest: Guest, tmp_path: Path) -> None:
    """COM1's bytes are the same whether the guest runs free or under gdb stepping 200 instructions of it."""
    free_out, gdb_out = tmp_path / "free.txt", tmp_path / "gdb.txt"
    free = lab.emulator(serial_guest, gdb=None, wait=False, serial=f"file:{free_out}")
    assert free.wait(30) == 1
    emu = lab.emulator(serial_guest, serial=f"file:{gdb_out}")
    s = lab.connect(serial_guest, emu)
    s.break_at("*serial_loop")
    for _ in range(3):
        expect_stop(s.cont(), "breakpoint-hit", serial_guest["serial_loop"])
    s.delete()
    pcs = set()
    for _ in range(200):
        pcs.add(s.stepi().pc)
    assert serial_guest["serial_putc"] in pcs  # the steps went through the output code
    stop = s.cont()
    assert dict(stop.raw) == {"reason": "exited", "exit-code": "01"}
    assert emu.wait(10) == 1
    text = free_out.read_bytes()
    assert text.count(b"\n") == 40 and text.startswith(b"line 00 value ")
    assert gdb_out.read_bytes() == text


# ---- the wire ---------------------------------------------------------------------------------------------


class RawClient:
    """Bytes on a TCP socket, and the +/-/packets that come back (no gdb)."""

    def __init__(self, address: str) -> None:
        host, port = address.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=5)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def packet(self, payload: bytes) -> None:
        self.send(b"$%s#%02x" % (payload, sum(payload) & 0xFF))

    def next(self) -> bytes:
        """The next thing the server sent: b"+", b"-", or a packet's payload (acked)."""
        while True:
            if self.buf[:1] in (b"+", b"-"):
                out, self.buf = self.buf[:1], self.buf[1:]
                return out
            m = re.match(rb"\$([^#]*)#([0-9a-f]{2})", self.buf)
            if m:
                self.buf = self.buf[m.end() :]
                assert int(m[2], 16) == sum(m[1]) & 0xFF, m[0]
                self.send(b"+")
                return self.decode(m[1])
            data = self.sock.recv(65536)
            if not data:
                raise EOFError(f"the server closed the connection (unparsed: {self.buf!r})")
            self.buf += data

    @staticmethod
    def decode(body: bytes) -> bytes:
        """Undo the server's run-length encoding (``X*n``: n - 29 more X), then its ``}`` escapes."""
        raw = bytearray()
        i = 0
        while i < len(body):
            if body[i] == ord("*"):
                raw += raw[-1:] * (body[i + 1] - 29)
                i += 2
            else:
                raw.append(body[i])
                i += 1
        return re.sub(rb"}(.)", lambda m: bytes([m[1][0] ^ 0x20]), bytes(raw), flags=re.S)

    def request(self, payload: bytes) -> bytes:
        self.packet(payload)
        assert self.next() == b"+"
        return self.next()


def test_malformed_packets_get_errors_and_the_server_survives(lab: Lab, spin: Guest) -> None:
    """Bad checksums are nacked, unparsable commands get E16, noise is ignored; then gdb attaches as usual.

    The spinning guest never ends, so the server is still there after the
    raw client goes away (a dropped connection lets the guest run on).
    """
    emu = lab.emulator(spin)
    c = RawClient(emu.address or "")
    assert c.request(b"?").startswith(b"T05")
    c.send(b"$g#00")  # wrong checksum
    assert c.next() == b"-"
    c.send(b"$g#zz")  # checksum not hex
    assert c.next() == b"-"
    c.send(b"$" + b"m" * 0x10010 + b"#00")  # longer than any packet
    assert c.next() == b"-"
    for bad in (
        b"mzz,4",
        b"m100000",
        b"M100000,4:zz",
        b"Z0,xyz,1",
        b"Z2,100000",
        b"pzz",
        b"Pzz=00",
        b"Hgzz",
        b"vCont;q",
        b"qRcmd,zz",
        b"X100000,2:a",
    ):
        assert c.request(bad) == b"E16", bad
    assert c.request(b"vMustReplyEmpty") == b""
    assert c.request(b"Qbogus") == b""  # unknown: the empty reply means "not supported"
    c.send(b"hello, line noise \x7f\xff")
    c.send(b"$m10")  # cut short by the next '$'
    regs = c.request(b"g")
    assert (
        len(regs) == 2 * I386_SSE_LAYOUT.g_size
        and int.from_bytes(bytes.fromhex(regs[64:72].decode()), "little") == 0x10000C
    )
    assert c.request(b"m100000,4") == b"02b0ad1b"  # the multiboot magic at the start of the image
    c.sock.close()
    time.sleep(0.1)
    assert emu.alive()
    s = lab.connect(spin, emu)
    assert reg(s, "eip") in range(spin["main"], spin["never_run"])  # the guest ran on after the drop
    assert u32(s, spin["spin_count"]) > 0
    assert "Traceback" not in emu.stderr_text(), emu.stderr_text()


def test_driver_reports_what_it_waited_for(lab: Lab, spin: Guest) -> None:
    """The session's timeouts name what was awaited (so a hang in CI says which stop never came)."""
    _, s = lab.attach(spin)
    s.cont_nowait()
    with pytest.raises(SessionTimeout, match="the stop that never comes"):
        s.wait_stop(what="the stop that never comes", timeout=0.3)
    assert expect_stop(s.interrupt(), "signal-received")["signal-name"] == "SIGINT"
