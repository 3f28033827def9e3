"""End to end: one real gdb session from a kernel's 32-bit entry through its switch into 64-bit code.

Issue 9's gdb acceptance test.  ``gdb_long`` (tests/support/guests/gdb_long.s)
is a multiboot v1 kernel that starts in 32-bit protected mode, builds 4-level
tables, enables long mode itself and runs 64-bit code, first at its identity
address, then at an alias in the kernel half (0xffffffff80000000 + ...).
gdbemu runs it as a 64-bit machine (``-cpu qemu64``): gdb gets the amd64
description from the first instruction and keeps it (no "Remote 'g' packet
reply is too long" at the switch), and the top-level ``gdbinit`` makes the
disassembly follow the CPU's mode (``monitor cpumode``).  On both sides of the
switch: breakpoints, watchpoints, stepping, registers as the guest sees them,
memory at 64-bit addresses.  The same ELF on qemu-system-x86_64 exits with the
same status (it checks its own counter), so the guest is a valid reference.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support import build

from gdbemu.core.cpu import CS, SegmentCache
from gdbemu.debug.target import MachineTarget
from gdbemu.machine import Machine
from gdbemu.rsp.server import GdbServer, parse_endpoint
from gdbemu.testing import Emulator, GdbError, GdbNotFoundError, Session, find_gdb

try:
    GDB: str | None = find_gdb()
except GdbNotFoundError:
    GDB = None

pytestmark = [pytest.mark.gdb, pytest.mark.skipif(GDB is None, reason="gdb is not installed")]

ROOT = Path(__file__).resolve().parents[2]
GDBINIT = ROOT / "gdbinit"
KERNEL_HALF = 0xFFFFFFFF80000000
MAGIC64 = 0x1122334455667788
R8_R15 = [
    0x8888888888888888,
    0x9999999999999999,
    0xAAAAAAAAAAAAAAAA,
    0xBBBBBBBBBBBBBBBB,
    0xCCCCCCCCCCCCCCCC,
    0xDDDDDDDDDDDDDDDD,
    0xEEEEEEEEEEEEEEEE,
    0xFFFFFFFFFFFFFF0F,
]


@pytest.fixture(scope="module")
def guest(build_guest: Callable[[str], Path]) -> tuple[Path, dict[str, int]]:
    elf = build_guest("gdb_long")
    return elf, build.symbols(elf)


@pytest.fixture
def session(guest: tuple[Path, dict[str, int]]) -> Iterator[Session]:
    s = Session.boot(guest[0], extra_args=["-cpu", "qemu64"], gdb_setup=[f"source {GDBINIT}"], timeout=60)
    try:
        yield s
    finally:
        s.close()


def _x_i(s: Session, where: str, n: int = 1) -> str:
    return s.gdb_command(f"x/{n}i {where}")


def test_from_32_bit_entry_into_long_mode(session: Session, guest: tuple[Path, dict[str, int]]) -> None:
    s, sym = session, guest[1]

    # ---- 32-bit side: amd64 registers from the first instruction --------------------------------------
    assert s.monitor("cpumode").strip() == "prot32"
    regs = s.registers()
    assert regs["rip"] == sym["_start"] and regs["rax"] == 0x2BADB002  # the multiboot magic
    assert regs["r8"] == 0 and regs["efer"] == 0 and regs["cs"] == 0x08
    assert "x86-64" in s.gdb_command("show architecture")

    s.break_at(f"*{sym['entry32_bp']:#x}")
    stop = s.cont()
    assert stop.reason == "breakpoint" and stop.pc == sym["entry32_bp"]
    phase_watch = s.watch(f"*(int *){sym['phase']:#x}")
    stop = s.cont()
    assert stop.reason == "watchpoint" and stop.new == "1" and stop.pc == sym["mode32_insns"]
    s.delete(phase_watch)

    # 0x40 0x48 are inc/dec in 32-bit code (REX prefixes in 64-bit code): the disassembly follows the mode
    text = _x_i(s, "$pc", 2)
    assert "inc    %eax" in text and "dec    %eax" in text, text
    assert s.stepi().pc == sym["mode32_insns"] + 1
    assert s.stepi().pc == sym["mode32_insns"] + 2
    assert s.registers()["rax"] == 0x2BADB002

    # ---- the switch: compatibility mode for one instruction, then 64-bit code -----------------------------
    s.break_at(f"*{sym['before_ljmp']:#x}")
    stop = s.cont()
    assert stop.pc == sym["before_ljmp"]
    assert s.monitor("cpumode").strip() == "compat32"
    regs = s.registers()
    assert regs["efer"] & 0x500 == 0x500 and regs["cr0"] & 0x80000001 == 0x80000001 and regs["cr4"] & 0x20
    assert "ljmp" in _x_i(s, "$pc")
    stop = s.stepi()
    assert stop.pc == sym["long_entry"]
    assert s.monitor("cpumode").strip() == "long"
    assert "mov    $0x10,%eax" in _x_i(s, "$pc")

    # ---- 64-bit side ---------------------------------------------------------------------------------------------
    s.break_at(f"*{sym['long_bp']:#x}")
    stop = s.cont()
    assert stop.reason == "breakpoint" and stop.pc == sym["long_bp"]
    regs = s.registers()
    assert regs["rax"] == MAGIC64 and regs["cs"] == 0x08
    assert [regs[f"r{i}"] for i in range(8, 16)] == R8_R15
    assert "mov    %rax,(%rbx)" in _x_i(s, "$pc")
    info = s.gdb_command("info registers r15 rip")
    assert "0xffffffffffffff0f" in info and hex(sym["long_bp"]) in info

    counter_watch = s.watch(f"*(unsigned long long *){sym['counter64']:#x}")
    stop = s.cont()
    assert stop.reason == "watchpoint" and int(stop.new or "0", 0) == MAGIC64 and stop.pc == sym["after_store"]

    high_bp = KERNEL_HALF + sym["high_bp"]
    s.break_at(f"*{high_bp:#x}")
    stop = s.cont()
    assert stop.reason == "breakpoint" and stop.pc == high_bp
    assert s.registers()["rip"] == high_bp
    assert "incq   (%rbx)" in _x_i(s, "$pc")
    # memory at a 64-bit address: the kernel-half alias reads the same bytes as the identity mapping
    alias = KERNEL_HALF + sym["counter64"]
    assert s.read_memory(alias, 8) == s.read_memory(sym["counter64"], 8) == MAGIC64.to_bytes(8, "little")
    stop = s.stepi()  # incq stores: gdb reports the watchpoint of the step
    assert stop.pc == high_bp + 3
    assert int.from_bytes(s.read_memory(alias, 8), "little") == MAGIC64 + 1
    # non-canonical memory is an error, not a wrapped read
    with pytest.raises(GdbError, match="Cannot access memory at address 0x800000000000"):
        s.gdb_command("x/gx 0x800000000000")
    mem = s.monitor("info mem")
    assert f"{KERNEL_HALF:016x}-" in mem and "0000000000000000-" in mem

    s.delete(counter_watch)
    s.gdb_command("delete")
    assert s.cont_to_exit() == []  # nothing left to stop at
    assert s.last_stop is not None and s.last_stop.reason == "exited"
    assert s.exit_code == 1  # isa-debug-exit: (status 0 << 1) | 1, the guest's own check passed


@pytest.mark.parametrize("system", ["qemu-system-x86_64", "qemu-system-i386"])
def test_the_spelling_chooses_the_machine_as_qemu_does(guest: tuple[Path, dict[str, int]], system: str) -> None:
    """``gdbemu qemu-system-x86_64 -kernel K``: a 64-bit machine (qemu64), the kernel enters long mode and
    passes its check (status 1: isa-debug-exit's (0 << 1) | 1); spelled as qemu-system-i386 the CPU has no
    long mode, the EFER.LME write faults and the machine resets (-no-reboot: status 0), as on QEMU."""
    argv = [sys.executable, "-m", "gdbemu.cli", system, "-kernel", str(guest[0]), "-display", "none"]
    argv += ["-serial", "null", "-debugcon", "null", "-no-reboot", "-device", "isa-debug-exit,iobase=0xf4,iosize=4"]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    ours = subprocess.run(argv, capture_output=True, timeout=120, env=env).returncode
    assert ours == (1 if system.endswith("x86_64") else 0)
    if shutil.which(system) is not None:
        qemu = [system, "-kernel", str(guest[0]), "-display", "none", "-m", "32", "-no-reboot"]
        qemu += ["-device", "isa-debug-exit,iobase=0xf4,iosize=4"]
        assert subprocess.run(qemu, capture_output=True, timeout=60).returncode == ours


@pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="qemu-system-x86_64 is not installed")
def test_the_guest_passes_its_own_check_on_qemu(guest: tuple[Path, dict[str, int]]) -> None:
    proc = subprocess.run(
        [
            "qemu-system-x86_64",
            "-kernel",
            str(guest[0]),
            "-display",
            "none",
            "-m",
            "32",
            "-no-reboot",
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=4",
        ],
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 1, proc.stderr


def test_gdbinit_session_with_the_32_bit_kernel_file_loaded(guest: tuple[Path, dict[str, int]]) -> None:
    """A person's session: ``gdb -x gdbinit KERNEL`` (an i386 ELF), ``gdbemu-connect PORT`` to a
    gdbemu running it as a 64-bit machine.  gdb takes the x86-64 description anyway, and the
    disassembly follows the CPU: 32-bit before the switch, 64-bit after it."""
    elf, sym = guest
    with Emulator.gdbemu(elf, "-cpu", "qemu64") as emu:
        commands = [
            f"gdbemu-connect {emu.port}",
            "show architecture",
            f"break *{sym['mode32_insns']:#x}",
            f"break *{sym['long_bp']:#x}",
            "continue",
            "gdbemu-mode",
            "x/2i $pc",
            "continue",
            "gdbemu-mode",
            "x/1i $pc",
            "info registers r8 rip",
            "kill",
        ]
        argv = [GDB or "gdb", "-nx", "-batch", "-x", str(GDBINIT), str(elf)]
        for c in commands:
            argv += ["-ex", c]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    text = out.stdout + out.stderr
    assert '(currently "i386:x86-64")' in text, text
    assert "too long" not in text and "badly formatted" not in text, text
    assert re.search(r"^prot32$", text, re.M) and re.search(r"^long$", text, re.M), text
    assert re.search(r"<mode32_insns>:\s+inc\s+%eax", text) and re.search(r"dec\s+%eax", text), text
    assert re.search(r"<long_bp>:\s+mov\s+%rax,\(%rbx\)", text), text
    assert re.search(r"^r8\s+0x8888888888888888", text, re.M), text


def test_session_connect_to_a_64_bit_emulator(guest: tuple[Path, dict[str, int]]) -> None:
    """``Session.connect(emulator=Emulator.gdbemu(...))``: the 64-bit machine's hint is followed there too."""
    elf, sym = guest
    with Session.connect(kernel=elf, emulator=Emulator.gdbemu(elf, "-cpu", "qemu64")) as s:
        assert s.registers()["rip"] == sym["_start"]
        s.break_at(f"*{sym['long_bp']:#x}")
        assert s.cont().pc == sym["long_bp"]
        assert s.registers()["r15"] == R8_R15[-1]


@pytest.mark.parametrize("long_mode", [False, True], ids=["i386", "amd64"])
def test_gdbinit_disassembles_real_mode_code_as_16_bit(long_mode: bool) -> None:
    """A CPU in real mode (reset): ``x/i`` shows 16-bit code under either description (objdump -M i8086)."""
    machine = Machine(ram_size=2 << 20)
    cpu = machine.cpu
    cs = cpu.segs[CS]
    cpu.segs[CS] = SegmentCache(0, 0, cs.limit, cs.flags)
    cpu.eip = 0x7C00
    cpu.compute_hflags()
    machine.mem.write(0x7C00, bytes.fromhex("b8341240ebfe"))  # mov $0x1234,%ax; inc %ax; jmp .
    server = GdbServer(MachineTarget(machine, long_mode=long_mode), parse_endpoint("tcp:127.0.0.1:0"), True)
    server.listen()
    assert isinstance(server.address, tuple)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        argv = [GDB or "gdb", "-nx", "-batch", "-x", str(GDBINIT)]
        for c in (f"gdbemu-connect {server.address[1]}", "gdbemu-mode", "x/3i $pc", "kill"):
            argv += ["-ex", c]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        text = out.stdout + out.stderr
    finally:
        server.shutdown()
        thread.join(timeout=30)
    assert re.search(r"^real$", text, re.M), text
    assert re.search(r"0x7c00:\s+mov\s+\$0x1234,%ax", text), text
    assert re.search(r"0x7c03:\s+inc\s+%ax", text) and re.search(r"0x7c04:\s+jmp\s+0x7c04", text), text
