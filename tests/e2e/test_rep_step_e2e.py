"""A step of a rep string instruction is one iteration (issue 14 item 8), through the real gdb.

gdb's software watchpoints (``set can-use-hw-watchpoints 0``) single-step
the guest and compare the value after each step, so the stop lands where the
value changed: on the ``rep stosl`` itself (EIP stays on it while ECX != 0),
after the iteration that wrote the watched word, as on hardware and QEMU.
"""

from __future__ import annotations

import shutil

import pytest
from support import build

from gdbemu.testing import Session

N = 8
WATCHED = 5  # buf[5]: written by the sixth iteration


@pytest.fixture(scope="module")
def guest(build_guest):
    elf = build_guest("rep_watch")
    return elf, build.symbols(elf)


def _software_watch(s: Session, sym: dict[str, int]) -> tuple[int, int, int]:
    s.run_to("*rep_insn")
    s.gdb_command("set can-use-hw-watchpoints 0")
    # Session.watch refuses software watchpoints (they single-step the guest): here that is the point.
    s.mi(f"-break-watch *(int*){sym['buf'] + 4 * WATCHED:#x}")
    stop = s.cont(timeout=120)
    assert stop.reason == "watchpoint" and stop.new == str(0x11111111), stop
    regs = s.registers()
    return stop.pc, regs["ecx"], s.read_int(f"*(int *){sym['buf'] + 4 * (WATCHED + 1):#x}")


def test_software_watchpoint_stops_on_the_rep_after_the_iteration(guest):
    elf, sym = guest
    with Session.boot(elf) as s:
        pc, ecx, next_word = _software_watch(s, sym)
    assert pc == sym["rep_insn"]  # still on the rep: iterations remain
    assert ecx == N - (WATCHED + 1)
    assert next_word == 0  # the next iteration has not run


def test_stepi_over_rep_is_one_iteration_each(guest):
    elf, sym = guest
    with Session.boot(elf) as s:
        s.run_to("*rep_insn")
        seen = []
        for _ in range(N):
            s.stepi()
            regs = s.registers()
            seen.append((regs["eip"], regs["ecx"]))
    assert seen == [(sym["rep_insn"], N - k) for k in range(1, N)] + [(sym["after_rep"], 0)]


@pytest.mark.skipif(shutil.which("qemu-system-i386") is None, reason="QEMU not installed")
def test_qemu_agrees(guest):
    elf, sym = guest
    with Session.qemu(elf) as s:
        pc, ecx, next_word = _software_watch(s, sym)
    assert (pc, ecx, next_word) == (sym["rep_insn"], N - (WATCHED + 1), 0)
