"""End to end: the real gdb 13, driven through pygdbmi, debugging gdbemu running as a subprocess.

These are issue 4's acceptance tests.  Everything goes the way a user's
session goes: gdbemu is started as ``python -m gdbemu.cli -kernel GUEST
-gdb tcp::0 -S -display none -serial null``, gdb loads the guest's ELF for
its symbols and attaches with ``target remote``, and the assertions read
only what gdb reports (MI stop records, register and memory values, the
text of ``info``/``monitor`` commands) or what the guest itself recorded.
The Machine-level checks of the same mechanisms are in tests/guests/test_debug.py;
here the whole chain is exercised: gdb's own logic (when it removes and
reinserts breakpoints, how it checks watchpoint values, what it reads
after a stop), the RSP server, the stub, MachineTarget, and the CLI.

Guests (built at test time from tests/support/guests/): ``gdb_target`` is a
sequence of numbered scenes, one per feature; ``gdb_spin`` counts forever
(interrupts, detach, dropped connections); ``gdb_serial`` prints through
COM1 (the debugger must not perturb it).  tests/gdbdrive.py holds the
process and gdb plumbing.
"""

from __future__ import annotations

import re
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from gdbdrive import GDB, ROOT, DriveError, Emulator, Gdb, mi_quote, port_is_free, shell_pipe, stop_addr
from support import build

pytest.importorskip("pygdbmi.gdbcontroller", reason="pygdbmi is not installed")
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


class Session:
    """Starts emulators and gdbs for one test and ends them all afterwards, whatever happened.

    A failing assertion in the middle of a session must not leave a gdbemu
    listening or a gdb waiting on it: the next tests (and CI) would inherit them.
    """

    def __init__(self) -> None:
        self.emulators: list[Emulator] = []
        self.gdbs: list[Gdb] = []

    def emulator(self, guest: Guest | None, *args: str, **kwargs) -> Emulator:
        emu = Emulator.gdbemu(guest.elf if guest else None, *args, **kwargs)
        self.emulators.append(emu)
        return emu

    def gdb(self, guest: Guest | None, **kwargs) -> Gdb:
        g = Gdb(guest.elf if guest else None, **kwargs)
        self.gdbs.append(g)
        return g

    def attach(self, guest: Guest, *args: str, **kwargs) -> tuple[Emulator, Gdb]:
        """A fresh gdbemu waiting (-S) for gdb, and a gdb attached to it, stopped at the kernel's entry.

        gdb starts while gdbemu is still importing and building its machine.
        """
        emu = self.emulator(guest, *args, wait_ready=False, **kwargs)
        g = self.gdb(guest)
        g.connect(emu.wait_ready() or "")
        return emu, g

    def close(self) -> None:
        for proc in [*self.gdbs, *self.emulators]:
            try:
                proc.close()
            except Exception as exc:  # keep closing the others; the test's own failure matters more
                print(f"closing {proc!r} failed: {exc}")


@pytest.fixture
def session() -> Iterator[Session]:
    s = Session()
    try:
        yield s
    finally:
        s.close()


def watch(g: Gdb, expr: str, kind: str = "") -> None:
    """``watch``/``rwatch``/``awatch`` (kind "", "-r", "-a") on a C expression.

    The expression is quoted: MI splits unquoted arguments at spaces.
    """
    g.cmd(f"-break-watch {kind} {mi_quote(expr)}".replace("  ", " "))


def expect_stop(stop: dict, reason: str, pc: int | None = None) -> dict:
    """Check a ``*stopped`` record's reason (and PC); a mismatch shows the whole record, which says what came."""
    payload = stop["payload"]
    assert payload.get("reason") == reason, f"expected a {reason} stop, got {payload}"
    if pc is not None:
        assert stop_addr(stop) == pc, f"{reason} at {stop_addr(stop):#x}, expected {pc:#x}: {payload}"
    return payload


def expect_exit(g: Gdb, emu: Emulator, what: str) -> None:
    """The guest runs to its end: gdb says exited (W01: isa-debug-exit with 0), and gdbemu exits with 1."""
    stop = g.cont(what)
    assert stop["payload"] == {"reason": "exited", "exit-code": "01"}, stop
    assert "exited with code 01" in g.stop_text
    assert emu.wait(10) == 1


# ---- breakpoints ---------------------------------------------------------------------------------


def test_break_continue_a_hundred_times(session: Session, target: Guest) -> None:
    """A breakpoint in a loop stops before the store every iteration; gdb sees the loop variable each time."""
    emu, g = session.attach(target)
    g.cmd("-break-insert *store_insn")
    for i in range(1, COUNT + 1):
        payload = expect_stop(g.cont(f"breakpoint hit #{i}"), "breakpoint-hit", target["store_insn"])
        assert payload["bkptno"] == "1"
        assert g.reg("eax") == i  # the loop variable
        assert g.u32(target["counter"]) == i - 1  # the store has not run yet
    table = g.cmd("-break-info 1")["payload"]["BreakpointTable"]["body"]
    assert table[0]["times"] == str(COUNT)
    g.cmd("-break-delete")
    expect_exit(g, emu, "the guest's exit once the breakpoint is gone")


def test_hbreak(session: Session, target: Guest) -> None:
    """``hbreak`` (Z1) stops like a software breakpoint, reports as a hardware one, and resumes from itself."""
    _, g = session.attach(target)
    g.cmd("-break-insert -h *store_insn")
    out = g.console("info breakpoints")
    assert re.search(r"1\s+hw breakpoint\s+keep y\s+0x0010[0-9a-f]+ <store_insn>", out), out
    g.console("set debug remote 1")  # to see the packet on the wire
    g.transcript.clear()
    for i in range(1, 4):
        expect_stop(g.cont(f"hw breakpoint hit #{i}"), "breakpoint-hit", target["store_insn"])
        assert g.reg("eax") == i
    g.console("set debug remote 0")
    assert any(f"Sending packet: $Z1,{target['store_insn']:x},1#" in line for line in g.transcript), g.tail()
    assert any("Packet received: T05thread:1;hwbreak:;" in line for line in g.transcript), g.tail()
    assert "Breakpoint 1, " in g.stop_text and "store_insn" in g.stop_text
    g.cmd("-break-delete")
    g.cmd("-break-insert -h *after_call")
    expect_stop(g.cont("hw breakpoint after the call"), "breakpoint-hit", target["after_call"])
    assert g.u32(target["leaf_count"]) == 1
    assert g.u32(target["counter"]) == COUNT


def test_stepi_through_call_int_iret_and_a_fault(session: Session, target: Guest) -> None:
    """stepi enters a called function, an interrupt handler (its first instruction), returns through iret,
    and a step onto a faulting instruction ends on the exception handler's first instruction."""
    _, g = session.attach(target)
    g.cmd("-break-insert *call_site")
    expect_stop(g.cont(), "breakpoint-hit", target["call_site"])
    g.cmd("-break-delete")
    esp = g.reg("esp")
    expect_stop(g.stepi(), "end-stepping-range", target["leaf"])
    assert g.reg("esp") == esp - 4 and g.u32(esp - 4) == target["after_call"]  # the return address
    g.stepi()  # incl leaf_count
    assert g.u32(target["leaf_count"]) == 1
    expect_stop(g.stepi(), "end-stepping-range", target["after_call"])  # ret
    assert g.reg("esp") == esp
    assert target["int_site"] == target["after_call"]
    flags = g.reg("eflags")
    expect_stop(g.stepi(), "end-stepping-range", target["int30_handler"])  # int $0x30: the handler's first insn
    assert g.reg("esp") == esp - 12
    assert [g.u32(esp - 12 + 4 * i) for i in range(3)] == [target["after_int"], 0x08, flags]  # EIP, CS, EFLAGS
    g.stepi()  # incl int30_count
    assert g.u32(target["int30_count"]) == 1
    expect_stop(g.stepi(), "end-stepping-range", target["after_int"])  # iret
    assert g.reg("esp") == esp and g.reg("eflags") == flags
    g.stepi()  # movl $after_ud2, resume_eip
    g.stepi()  # SET_HOOK 6
    assert stop_addr(g.stepi()) == target["isr6"] == g.reg("eip")  # ud2 faults: the #UD handler's first insn
    assert g.u32(target["exc_count"] + 4 * 6) == 0  # the handler has not run yet
    assert g.u32(g.reg("esp")) == target["ud2_site"]  # a fault: the pushed EIP is the ud2's


# ---- watchpoints ---------------------------------------------------------------------------------


def test_watch_a_global_written_in_a_loop(session: Session, target: Guest) -> None:
    """A write watchpoint stops after each store (PC after it) with gdb's old and new values.

    A write by gdb itself into the watched variable is not a guest access:
    it does not stop, and the next hit reports it as the old value."""
    _, g = session.attach(target)
    watch(g, f"*(int *){target['counter']:#x}")
    for i in range(1, 6):
        payload = expect_stop(g.cont(f"watchpoint hit #{i}"), "watchpoint-trigger", target["after_store"])
        assert payload["value"] == {"old": str(i - 1), "new": str(i)}
        assert f"Old value = {i - 1}\nNew value = {i}\n" in g.stop_text, g.stop_text
        assert g.reg("eax") == i
    assert "Hardware watchpoint 1" in g.stop_text
    # gdb's own write is no guest access: no stop, and it is the next hit's old value
    g.console(f"set var *(int *){target['counter']:#x} = 500")
    payload = expect_stop(g.cont("the hit after gdb's write"), "watchpoint-trigger", target["after_store"])
    assert payload["value"] == {"old": "500", "new": "6"}


def test_watch_in_rep_stosd_and_rep_movsd(session: Session, target: Guest) -> None:
    """A rep string instruction stops after the iteration that wrote the watched dword, PC still on the rep."""
    _, g = session.attach(target)
    array, array2 = target["array"], target["array2"]
    watch(g, f"*(int *){array + 40:#x}")  # array[10]
    payload = expect_stop(g.cont("the rep stosd hit"), "watchpoint-trigger", target["stos_insn"])
    assert payload["value"] == {"old": "0", "new": str(PATTERN)}
    assert g.reg("ecx") == 40 - 11 and g.reg("edi") == array + 44  # 11 iterations done
    assert g.u32(array + 44) == 0  # the 12th has not run
    g.cmd("-break-delete")
    watch(g, f"*(int *){array2 + 40:#x}")  # array2[10]
    payload = expect_stop(g.cont("the rep movsd hit"), "watchpoint-trigger", target["movs_insn"])
    assert payload["value"] == {"old": "0", "new": str(PATTERN)}
    assert (g.reg("ecx"), g.reg("esi"), g.reg("edi")) == (40 - 11, array + 44, array2 + 44)
    assert g.u32(array + 4 * 39) == PATTERN  # the stosd finished after the first stop
    assert g.u32(array2 + 44) == 0
    g.cmd("-break-delete")
    g.cmd("-break-insert *page_lo_store")
    g.cont("the end of the rep movsd")
    assert g.read(array2, 160) == PATTERN.to_bytes(4, "little") * 40


def test_watch_spanning_a_page_boundary(session: Session, target: Guest) -> None:
    """An 8-byte watchpoint across a page boundary fires for a store on either side of it; so does one in a
    4 MiB page."""
    _, g = session.attach(target)
    straddle = target["straddle"]
    assert straddle & 0xFFF == 0
    watch(g, f"*(unsigned long long *){straddle - 4:#x}")
    payload = expect_stop(g.cont("the store below the boundary"), "watchpoint-trigger", target["after_lo_store"])
    assert payload["value"] == {"old": "0", "new": str(0x55 << 8)}
    payload = expect_stop(g.cont("the store above the boundary"), "watchpoint-trigger", target["after_hi_store"])
    assert payload["value"] == {"old": str(0x55 << 8), "new": str(0x66 << 48 | 0x55 << 8)}
    g.cmd("-break-delete")
    watch(g, "*(int *)0x40001234")  # in the 4 MiB page (the TLB holds its 4 KiB pieces)
    payload = expect_stop(g.cont("the store into the 4 MiB page"), "watchpoint-trigger", target["after_big_store"])
    assert payload["value"] == {"old": "0", "new": str(0xABCD)}


def test_rwatch_and_awatch_report_their_kinds(session: Session, target: Guest) -> None:
    """rwatch stops after a read (read-watchpoint-trigger), awatch after a read-modify-write (access-...)."""
    _, g = session.attach(target)
    readme = target["readme"]
    watch(g, f"*(int *){readme:#x}", "-r")
    payload = expect_stop(g.cont("the read watchpoint"), "read-watchpoint-trigger", target["after_read"])
    assert payload["value"] == {"value": "100"}
    assert "Hardware read watchpoint 1" in g.stop_text and "Value = 100" in g.stop_text
    g.cmd("-break-delete")
    watch(g, f"*(int *){readme:#x}", "-a")
    payload = expect_stop(g.cont("the access watchpoint"), "access-watchpoint-trigger", target["after_rmw"])
    assert payload["value"] == {"old": "100", "new": "101"}
    assert "Hardware access (read/write) watchpoint 2" in g.stop_text


def test_watchpoint_on_an_untouched_variable_never_stops(session: Session, target: Guest) -> None:
    """Watching (awatch) a variable the guest never accesses: the guest runs to its exit, gdb says exited."""
    emu, g = session.attach(target)
    watch(g, f"*(int *){target['untouched']:#x}", "-a")
    expect_exit(g, emu, "the exit of a guest that never touches the watched variable")


def test_guest_dr7_watchpoint_fires_while_gdb_watches_something_else(session: Session, target: Guest) -> None:
    """The guest's own DR1 data breakpoint delivers #DB to its handler; gdb's watch on a neighbour still stops."""
    _, g = session.attach(target)
    watch(g, f"*(int *){target['counter2']:#x}")
    total = 0
    for ecx in (3, 2, 1):
        total += ecx
        payload = expect_stop(g.cont(f"gdb's watchpoint (ecx={ecx})"), "watchpoint-trigger", target["dr_after_add"])
        assert payload["value"] == {"old": str(total - ecx), "new": str(total)}
        assert g.u32(target["db_count"]) == 4 - ecx  # the guest's #DB for this iteration's store already ran
    g.cmd("-break-delete")
    g.cmd("-break-insert *dr_done")
    expect_stop(g.cont(), "breakpoint-hit", target["dr_done"])
    assert g.u32(target["db_count"]) == 3
    for i in range(3):
        assert g.u32(target["db_dr6"] + 4 * i) & 0xF == 0b0010  # B1: DR1 hit
        assert g.u32(target["db_eip"] + 4 * i) == target["dr_store_next"]  # a trap: after the store
    assert g.reg("dr7") & 0xFF == 0  # the guest turned it off again


# ---- code: rewritten by the guest, written by gdb, checksummed ---------------------------------------


def test_breakpoint_on_code_the_guest_rewrites(session: Session, target: Guest) -> None:
    """The mark belongs to the address: a breakpoint on an instruction the guest patches hits, the new code runs."""
    _, g = session.attach(target)
    at = target["patch_target"]
    assert g.read(at, 5) == bytes.fromhex("ba00000000")  # mov $0, %edx as linked
    g.cmd("-break-insert *patch_target")
    expect_stop(g.cont(), "breakpoint-hit", at)
    assert g.read(at, 5) == bytes.fromhex("ba34120000")  # the guest patched the immediate
    g.stepi()
    assert g.reg("edx") == 0x1234


def test_set_var_writes_guest_code_that_then_runs(session: Session, target: Guest) -> None:
    """``set {unsigned char}ADDR = 0x90`` over an instruction that already ran (and was translated): the nop runs."""
    emu, g = session.attach(target)
    site = target["patch_site"]
    g.cmd("-break-insert *patch_site")
    for i in range(3):
        expect_stop(g.cont(f"patch_site hit #{i + 1}"), "breakpoint-hit", site)
        assert g.reg("ebx") == i
    g.cmd("-break-delete")
    assert g.read(site, 1) == b"\x43"  # incl %ebx
    g.console(f"set var {{unsigned char}}{site:#x} = 0x90")
    assert g.read(site, 1) == b"\x90"
    g.cmd("-break-insert *patch_done")
    expect_stop(g.cont(), "breakpoint-hit", target["patch_done"])
    assert g.reg("ebx") == 2  # the 8 remaining iterations, this one included, ran the nop
    assert g.u32(target["patch_iters"]) == 10 and g.u32(target["patch_result"]) == 2
    g.cmd("-break-delete")
    expect_exit(g, emu, "the exit after the patched loop")


@pytest.mark.slow
def test_code_checksum_is_the_same_with_a_hundred_breakpoints(session: Session, target: Guest) -> None:
    """The guest sums its own code bytes: breakpoints are not in guest memory, so the sum does not change.

    Slow (two sessions, 200 continues): it runs in CI's slow pass."""
    field, done = target["bp_field"], target["checksum_done"]
    start, end = target["code_start"], target["code_end"]
    sums = []
    for n_bps in (0, 100):
        _, g = session.attach(target)
        for i in range(n_bps):
            g.cmd(f"-break-insert *{field + i:#x}")
        g.cmd("-break-insert *checksum_done")
        for i in range(n_bps):
            expect_stop(g.cont(f"breakpoint {i + 1} of {n_bps}"), "breakpoint-hit", field + i)
            assert g.reg("edi") == i
        expect_stop(g.cont("the end of the checksum"), "breakpoint-hit", done)
        assert g.u32(target["bp_field_count"]) == 100
        code = g.read(start, end - start)
        assert code[field - start : field - start + 100] == b"\x47" * 100  # incl %edi, never an int3
        checksum = g.u32(target["checksum"])
        assert checksum == sum(code) & 0xFFFFFFFF  # the guest saw what gdb sees
        sums.append(checksum)
        g.close()
    assert sums[0] == sums[1]


# ---- registers and monitor commands --------------------------------------------------------------


def test_info_registers_shows_system_registers(session: Session, target: Guest) -> None:
    """``info registers`` lists the system registers (the target description's system feature) with their values."""
    _, g = session.attach(target)
    g.cmd("-break-insert *code_start")
    g.cont()
    out = g.console("info registers")
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
    assert g.reg("cr3") == 0x200000 and g.reg("gdtr_base") == target["gdt"]


def test_monitor_commands(session: Session, target: Guest) -> None:
    """help, info tlb (WATCH and NOTDIRTY flags), info mem, stats, x/4x, sstep irq|noirq, an unknown command."""
    _, g = session.attach(target)
    helptext = g.console("monitor help")
    for name in ("help", "info tlb", "info mem", "info registers", "stats", "x/Nx PADDR", "sstep [irq|noirq]"):
        assert f"  {name}" in helptext, helptext
    # Keep gdb's points inserted while stopped, so the TLB shows them.
    g.console("set breakpoint always-inserted on")
    watch(g, f"*(int *){target['untouched']:#x}")
    g.cmd("-break-insert *patch_done")  # after the guest stored into its code page (scene 6)
    expect_stop(g.cont(), "breakpoint-hit", target["patch_done"])
    tlb = g.console("monitor info tlb")
    rows = {int(m[1], 16): m[2] for m in re.finditer(r"^\s+([0-9a-f]{8}) -> [0-9a-f]{8}\s+(.*)$", tlb, re.M)}
    assert "write:WATCH" in rows[target["untouched"] & ~0xFFF], tlb
    assert "write:NOTDIRTY" in rows[target["patch_target"] & ~0xFFF], tlb  # a page holding translated code
    mem = g.console("monitor info mem")
    spans = [
        (int(a, 16), int(b, 16), int(p, 16))
        for a, b, p in re.findall(r"^([0-9a-f]{8})-([0-9a-f]{8}) [0-9a-f]{8} -> ([0-9a-f]{8}) -rw", mem, re.M)
    ]
    low = [span for span in spans if span[0] < 0x400000]
    assert low[0][0] == 0 and low[-1][1] == 0x400000, mem  # lib.inc's identity map of 4 MiB
    assert all(v == p for v, _, p in low) and all(a[1] == b[0] for a, b in zip(low, low[1:], strict=False)), mem
    assert re.search(r"^40000000-40400000 00400000 -> 00400000 -rw.* 4M$", mem, re.M), mem
    stats = dict(re.findall(r"^(\w+)\s+(\d+)$", g.console("monitor stats"), re.M))
    assert int(stats["breakpoint_hits"]) >= 1 and int(stats["notdirty_writes"]) >= 1, stats
    assert int(stats["icount"]) > 0 and int(stats["tb_built"]) > 0, stats
    counter = target["counter"]
    words = [g.u32(counter + 4 * i) for i in range(4)]
    assert words[:3] == [COUNT, 0, 101]
    assert g.console(f"monitor x/4x {counter:#x}").strip() == f"{counter:08x}: " + " ".join(f"{w:08x}" for w in words)
    assert "single-step mode: irq" in g.console("monitor sstep irq")
    g.stepi()
    assert "single-step mode: irq" in g.console("monitor sstep")
    assert "single-step mode: noirq" in g.console("monitor sstep noirq")
    g.stepi()
    assert "usage: sstep [irq|noirq]" in g.console("monitor sstep sideways")
    assert "unknown monitor command" in g.console("monitor frobnicate")


# ---- interrupting, detaching, reconnecting --------------------------------------------------------------


def test_ctrl_c_stops_a_spinning_guest_quickly(session: Session, spin: Guest) -> None:
    """-exec-interrupt (0x03 on the wire) stops a running guest with SIGINT within milliseconds, or a halted one."""
    _, g = session.attach(spin)
    latencies = []
    count = 0
    for i in range(5):
        g.start_continue()
        time.sleep(0.15)
        t0 = time.perf_counter()
        g.interrupt()
        stop = g.wait_stopped(f"the SIGINT stop after interrupt #{i + 1}", timeout=5)
        latencies.append(time.perf_counter() - t0)
        payload = expect_stop(stop, "signal-received")
        assert payload["signal-name"] == "SIGINT"
        now = g.u32(spin["spin_count"])
        assert now > count
        count = now
    # a CPU halted for good (cli; hlt) is interrupted just the same
    g.console("set var $pc = halt_forever")
    g.start_continue()
    time.sleep(0.15)
    t0 = time.perf_counter()
    g.interrupt()
    stop = g.wait_stopped("the SIGINT stop of a halted CPU", timeout=5)
    latencies.append(time.perf_counter() - t0)
    assert expect_stop(stop, "signal-received")["signal-name"] == "SIGINT"
    assert stop_addr(stop) == spin["halt_forever"] + 2  # after the hlt
    assert '"CPU#0" (CPU#0 [halted])' in g.console("info threads")
    print(
        f"\nCtrl-C latency (-exec-interrupt -> *stopped): {', '.join(f'{t * 1000:.1f}' for t in latencies)} ms"
        " (the last one: a halted CPU)"
    )
    assert max(latencies) < 1.0, latencies


def test_detach_and_reattach_twice(session: Session, spin: Guest) -> None:
    """Detach lets the guest run on with its state; a new gdb attaches, twice; breakpoints do not survive."""
    emu = session.emulator(spin)
    counter = spin["spin_count"]
    g = session.gdb(spin)
    g.connect(emu.address or "")
    g.cmd("-break-insert *spin_bp")
    expect_stop(g.cont(), "breakpoint-hit", spin["spin_bp"])
    last = g.u32(counter)
    assert last == 1
    g.detach()
    g.close()
    for n in range(2):
        time.sleep(0.2)  # the guest runs free meanwhile
        assert emu.alive()
        g = session.gdb(spin)
        g.connect(emu.address or "")
        now = g.u32(counter)
        assert now > last, f"reattach #{n + 1}: the counter did not move while detached"
        assert g.console("monitor info watchpoints").strip() == "no watchpoints"
        g.start_continue()
        time.sleep(0.1)
        g.interrupt()
        # No breakpoint-hit: the earlier session's breakpoint is gone.
        expect_stop(g.wait_stopped("the interrupt after reattaching"), "signal-received")
        last = g.u32(counter)
        assert last > now
        g.detach()
        g.close()


def test_a_killed_gdb_then_a_new_one(session: Session, spin: Guest) -> None:
    """gdb killed with SIGKILL while the guest runs: its points are removed and a new gdb attaches."""
    emu = session.emulator(spin)
    g = session.gdb(spin)
    g.connect(emu.address or "")
    g.console("set breakpoint always-inserted on")
    g.cmd("-break-insert *never_run")
    watch(g, f"*(int *){spin['spin_unused']:#x}")
    listed = g.console("monitor info watchpoints")
    assert "1 watchpoints" in listed and f"{spin['never_run']:08x}" in listed, listed
    before = g.u32(spin["spin_count"])
    g.start_continue()
    time.sleep(0.1)
    g.kill9()
    time.sleep(0.2)
    assert emu.alive()
    g2 = session.gdb(spin)
    g2.connect(emu.address or "")
    assert g2.console("monitor info watchpoints").strip() == "no watchpoints"
    assert g2.u32(spin["spin_count"]) > before
    g2.start_continue()
    time.sleep(0.05)
    g2.interrupt()
    expect_stop(g2.wait_stopped("the interrupt in the second session"), "signal-received")


def test_points_inserted_while_the_loop_is_hot(session: Session, spin: Guest) -> None:
    """Interrupt a loop that runs as a compiled (tier 2) block, then watch and break inside it: both fire."""
    _, g = session.attach(spin)
    g.start_continue()
    time.sleep(0.3)
    g.interrupt()
    g.wait_stopped("the interrupt of the hot loop")
    tbs = g.console("monitor info tbs")
    assert int(re.search(r"\(tier 2: (\d+)\)", tbs)[1]) >= 1, tbs
    watch(g, f"*(int *){spin['spin_count']:#x}")
    for _ in range(3):
        payload = expect_stop(g.cont(), "watchpoint-trigger", spin["spin_bp"])
        assert int(payload["value"]["new"]) == int(payload["value"]["old"]) + 1
    g.cmd("-break-delete")
    g.start_continue()
    time.sleep(0.2)
    g.interrupt()
    g.wait_stopped("the second interrupt")
    g.cmd("-break-insert *main")  # the loop head, inside the compiled block
    counts = []
    for _ in range(3):
        expect_stop(g.cont(), "breakpoint-hit", spin["main"])
        counts.append(g.u32(spin["spin_count"]))
    assert counts[1] == counts[0] + 1 and counts[2] == counts[1] + 1


def test_kill_ends_gdbemu(session: Session, target: Guest) -> None:
    """gdb's ``kill`` ends the emulator (there is nothing left to debug)."""
    emu, g = session.attach(target)
    g.cmd("-break-insert *after_call")
    g.cont()
    g.console("kill")
    assert emu.wait(10) == 0


def test_every_monitor_command_is_accepted_by_the_name_help_lists(session: Session, target: Guest) -> None:
    """Each line of ``monitor help`` starts with a command's name as the user must type it; each one works."""
    _, g = session.attach(target)
    g.cmd("-break-insert *after_call")
    g.cont()
    names = re.findall(r"^  ([a-z_/ ]+?)(?: \[| [A-Z]|:)", g.console("monitor help"), re.M)
    assert "system_reset" in names and "info tlb" in names, names
    for name in names:
        line = "x/4x 0x100000" if name.startswith("x/") else name
        out = g.console(f"monitor {line}")
        assert "unknown monitor command" not in out, (name, out)
    # system_reset (run last by the loop above, or again here) boots the kernel again
    g.console("monitor system_reset")
    g.console("maintenance flush register-cache")  # gdb caches registers across monitor commands
    assert g.reg("eip") == 0x10000C and g.reg("cr0") & 0x80000000 == 0


# ---- endpoints ---------------------------------------------------------------------------------------


def _run_to_checksum_and_exit(g: Gdb, target: Guest) -> None:
    g.cmd("-break-insert *checksum_done")
    expect_stop(g.cont(), "breakpoint-hit", target["checksum_done"])
    assert g.u32(target["counter"]) == COUNT
    g.cmd("-break-delete")
    stop = g.cont("the exit")
    assert stop["payload"] == {"reason": "exited", "exit-code": "01"}, stop


def test_target_remote_pipe_stdio(session: Session, target: Guest) -> None:
    """``target remote | python -m gdbemu.cli -gdb stdio ...``: gdb starts gdbemu and talks over its stdin/stdout."""
    g = session.gdb(target)
    g.cmd(f"-environment-cd {ROOT}")
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
    stop = g.connect(shell_pipe(argv))
    assert stop_addr(stop) == g.reg("eip") == 0x10000C  # lib.inc's _start after the multiboot header
    _run_to_checksum_and_exit(g, target)


def test_target_remote_pipe_stdio_with_the_default_console(session: Session, target: Guest) -> None:
    """The same, spelled as a user would: no -serial/-debugcon, so the console defaults must move off stdio."""
    g = session.gdb(target, timeout=5)
    g.cmd(f"-environment-cd {ROOT}")
    argv = [sys.executable, "-m", "gdbemu.cli", "-gdb", "stdio", "-kernel", str(target.elf), "-display", "none"]
    g.connect(shell_pipe(argv))
    _run_to_checksum_and_exit(g, target)


def test_unix_socket(session: Session, target: Guest, tmp_path: Path) -> None:
    """``-gdb unix:PATH``; gdb connects to the socket by its path."""
    path = tmp_path / "gdb.sock"
    emu = session.emulator(target, gdb=f"unix:{path}")
    assert emu.address == f"unix:{path}"
    g = session.gdb(target)
    g.connect(str(path))
    _run_to_checksum_and_exit(g, target)
    assert emu.wait(10) == 1


def test_no_kernel_listens_on_1234_with_the_demo(session: Session) -> None:
    """``gdbemu`` with no kernel boots the demo and listens on 127.0.0.1:1234 without being asked."""
    if not port_is_free(1234):
        pytest.skip("port 1234 is in use on this machine")
    emu = session.emulator(None, gdb=None, wait=False)
    assert emu.address == "127.0.0.1:1234"
    assert "listening for gdb on 127.0.0.1:1234" in emu.stderr_text()
    g = session.gdb(None)
    g.connect("127.0.0.1:1234")
    eip = g.reg("eip")
    assert 0x100000 <= eip < 0x200000, hex(eip)  # somewhere in the demo kernel
    assert g.reg("cs") == 0x08
    g.detach()


# ---- the guest cannot tell -------------------------------------------------------------------------------


def test_serial_output_identical_with_gdb_stepping(session: Session, serial_guest: Guest, tmp_path: Path) -> None:
    """COM1's bytes are the same whether the guest runs free or under gdb stepping 200 instructions of it."""
    free_out, gdb_out = tmp_path / "free.txt", tmp_path / "gdb.txt"
    free = session.emulator(serial_guest, gdb=None, wait=False, serial=f"file:{free_out}")
    assert free.wait(30) == 1
    emu = session.emulator(serial_guest, serial=f"file:{gdb_out}")
    g = session.gdb(serial_guest)
    g.connect(emu.address or "")
    g.cmd("-break-insert *serial_loop")
    for _ in range(3):
        expect_stop(g.cont(), "breakpoint-hit", serial_guest["serial_loop"])
    g.cmd("-break-delete")
    pcs = set()
    for _ in range(200):
        pcs.add(stop_addr(g.stepi()))
    assert serial_guest["serial_putc"] in pcs  # the steps went through the output code
    stop = g.cont("the exit")
    assert stop["payload"] == {"reason": "exited", "exit-code": "01"}
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


def test_malformed_packets_get_errors_and_the_server_survives(session: Session, spin: Guest) -> None:
    """Bad checksums are nacked, unparsable commands get E16, noise is ignored; then gdb attaches as usual.

    The spinning guest never ends, so the server is still there after the
    raw client goes away (a dropped connection lets the guest run on).
    """
    emu = session.emulator(spin)
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
    assert len(regs) == 520 and int.from_bytes(bytes.fromhex(regs[64:72].decode()), "little") == 0x10000C
    assert c.request(b"m100000,4") == b"02b0ad1b"  # the multiboot magic at the start of the image
    c.sock.close()
    time.sleep(0.1)
    assert emu.alive()
    g = session.gdb(spin)
    g.connect(emu.address or "")
    assert g.reg("eip") in range(spin["main"], spin["never_run"])  # the guest ran on after the drop
    assert g.u32(spin["spin_count"]) > 0
    assert "Traceback" not in emu.stderr_text(), emu.stderr_text()


def test_driver_reports_what_it_waited_for(session: Session, spin: Guest) -> None:
    """The helper's timeouts name what was awaited (so a hang in CI says which stop never came)."""
    _, g = session.attach(spin)
    g.start_continue()
    with pytest.raises(DriveError, match="the stop that never comes"):
        g.wait_stopped("the stop that never comes", timeout=0.3)
    g.interrupt()
    g.wait_stopped("the SIGINT stop")
