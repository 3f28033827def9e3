"""Exceptions, interrupts and privilege, checked from inside guest kernels (tests/support/guests/exc_*.s).

Each guest prints one "ok N name" line per check and exits through
isa-debug-exit; the same ELF runs on gdbemu and on qemu-system-i386 (TCG)
and the transcripts must be identical except for the checks in
``QEMU_DIFFERENCES``, where QEMU departs from the Intel SDM and gdbemu
follows the SDM (the entry cites the passage).  Guests:

* ``exc_vectors``: every exception a kernel can provoke (#DE #DB #BP #OF #BR
  #UD #NM #DF #TS #NP #SS #GP #PF #AC), error code and frame, at ring 0 and
  from ring 3 (SS:ESP pushed, frame at TSS.ESP0);
* ``exc_shadow``: the MOV SS / POP SS shadow seen through single-step traps,
  and STI, which has none for them;
* ``exc_iopl``: IOPL and the TSS I/O permission bitmap, CLI/STI/POPF at ring 3;
* ``exc_debug``: DR7 instruction and data breakpoints, single-step, RF;
* ``exc_apic``: the STI shadow with a real interrupt (a local APIC self-IPI),
  on the PC board;
* ``exc_irq`` (gdbemu only: it needs a test interrupt source): hardware
  interrupts against the STI and MOV SS shadows, and through a task gate.

NMI is covered with the local APIC in tests/guests/test_hw_intc.py; #MC cannot be
raised on this machine (no machine-check architecture).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from support import build
from support.exc_compare import assert_matches_qemu, assert_passes_on_gdbemu, compare, failures
from support.fixtures import GUEST_RAM, GuestRun

from gdbemu.debug.memview import read_virtual

# Checks per guest (the plan line "1..N"): a guest that silently loses checks fails.
CHECKS = {"exc_vectors": 193, "exc_shadow": 12, "exc_iopl": 61, "exc_debug": 38}
# Instruction bounds, about ten times what each guest retires.
MAX_INSNS = {"exc_vectors": 1_500_000, "exc_shadow": 200_000, "exc_iopl": 500_000, "exc_debug": 400_000}

_AC = (
    "QEMU's TCG does not implement alignment checking.  SDM vol. 3, 6.15 (interrupt 17): with CR0.AM=1 and "
    "EFLAGS.AC=1, an unaligned data access at CPL 3 raises #AC(0), a fault"
)
_STI = (
    "QEMU delays the single-step trap after STI by one instruction, as if STI shadowed debug traps.  SDM vol. 2 "
    "STI: 'The IF flag and the STI and CLI instructions do not prohibit the generation of exceptions and NMI "
    "interrupts'; only MOV SS / POP SS inhibit debug exceptions and single-step traps (vol. 3, 6.8.3)"
)
QEMU_DIFFERENCES: dict[str, dict[str, str]] = {
    "exc_vectors": {
        "k-de-pushed-rf": (
            "QEMU pushes EFLAGS.RF as it is.  SDM vol. 3, 17.3.1.1: 'For any fault-class exception except a debug "
            "exception generated in response to an instruction breakpoint, the value pushed for RF is 1'"
        ),
        **{f"u-ac-{field}": _AC for field in ("vec", "eip", "cs", "ss", "esp", "frame-at-esp0", "pushed-ac")},
    },
    "exc_shadow": {name: _STI for name in ("sti-traps-right-after", "sti-trap-frame-if-set", "sti-then-cli-traps")},
    "exc_iopl": {},
    "exc_debug": {},
}
GUESTS = tuple(CHECKS)


def _run(run_guest: Callable[[str, int], GuestRun], name: str) -> GuestRun:
    return run_guest(name, MAX_INSNS[name])


@pytest.mark.parametrize("name", GUESTS)
def test_guest_passes_on_gdbemu(run_guest: Callable[[str, int], GuestRun], name: str) -> None:
    """Every check passes and the guest exits with status 0 (exit code 1)."""
    run = _run(run_guest, name)
    assert_passes_on_gdbemu(run)
    assert run.output.splitlines()[-1:] == [f"1..{CHECKS[name]}"], run.describe()


@pytest.mark.skipif(shutil.which("qemu-system-i386") is None, reason="qemu-system-i386 not installed")
@pytest.mark.parametrize("name", GUESTS)
def test_guest_matches_qemu(
    build_guest: Callable[[str], Path], run_guest: Callable[[str, int], GuestRun], name: str
) -> None:
    """The transcript on QEMU is gdbemu's, line for line, but for the recorded SDM-vs-QEMU differences."""
    assert_matches_qemu(_run(run_guest, name), build_guest(name), QEMU_DIFFERENCES[name])


# ---- hardware interrupts, with a test interrupt source -----------------------------------------
class TestIRQSource:
    """Port 0x510: a byte written there raises an edge-triggered interrupt with that vector.

    An interrupt source as the machine's controllers are (``has_interrupt`` /
    ``acknowledge``, the INTA cycle), reduced to one request that the
    acknowledge consumes, so that the guest decides exactly when an
    interrupt becomes pending.
    """

    __test__ = False  # not a pytest class
    PORT = 0x510

    def __init__(self, machine) -> None:
        self.machine = machine
        self.vector: int | None = None
        machine.mem.add_port(self.PORT, 1, self)
        machine.bus.add_interrupt_source(self)

    def io_read(self, port: int, size: int) -> int:
        return (1 << (8 * size)) - 1

    def io_write(self, port: int, size: int, value: int) -> None:
        self.raise_vector(value & 0xFF)

    def raise_vector(self, vector: int) -> None:
        self.vector = vector
        self.machine.bus.update_interrupt()

    def has_interrupt(self) -> bool:
        return self.vector is not None

    def acknowledge(self) -> int | None:
        vector, self.vector = self.vector, None
        return vector


def test_hardware_interrupts_and_shadows(build_guest: Callable[[str], Path]) -> None:
    """exc_irq: an interrupt pending at STI is taken after the next instruction (also mid-block and
    with hlt), POPF and IRET that set IF have no shadow, and an interrupt through a task gate nests
    (SDM vol. 2 STI; vol. 3, 6.8.3, 7.3).  The MOV SS case is driven from here: the run stops at
    the MOV SS (IF=1), steps over it, raises the interrupt, and lets the guest go on: the
    interrupt must wait for the instruction after MOV SS."""
    from gdbemu.machine import Machine

    elf = build_guest("exc_irq")
    sym = build.symbols(elf)
    m = Machine(ram_size=GUEST_RAM)
    source = TestIRQSource(m)
    m.load_elf(str(elf))
    m.breakpoints.add(sym["d_movss"])
    stop = m.run(max_insns=200_000)
    assert (stop.kind, m.cpu.eip) == ("debug", sym["d_movss"]), (stop, m.debug_output)
    m.breakpoints.remove(sym["d_movss"])
    assert m.step().kind == "step" and m.cpu.eip == sym["d1"]
    source.raise_vector(0x30)
    stop = m.run(max_insns=200_000)
    out = m.debug_output.decode("latin-1")
    assert (stop.kind, m.exit_code) == ("exit", 1), out
    assert failures(out) == [] and out.splitlines()[-1] == "1..10", out

    def rd(name: str) -> int:
        return int.from_bytes(read_virtual(m, sym[name], 4), "little")

    assert rd("movss_irq_n") == 1
    assert rd("movss_irq_eip") == sym["d2"], "taken between MOV SS and the next instruction"


def test_sti_shadow_with_a_local_apic_interrupt(build_guest: Callable[[str], Path]) -> None:
    """exc_apic on the PC board: a self-IPI pending at STI is taken after the next instruction, POPF and
    IRET that set IF have none (SDM vol. 2 STI).  Compared with QEMU, whose board has the same APIC."""
    from gdbemu.hw.pc import PCConfig, build_pc
    from gdbemu.machine import Machine

    elf = build_guest("exc_apic")
    m = Machine(ram_size=GUEST_RAM)
    build_pc(m.bus, PCConfig(serial=["null"]))
    m.load_elf(str(elf))
    stop = m.run(max_insns=200_000)
    out = m.debug_output.decode("latin-1")
    assert (stop.kind, m.exit_code) == ("exit", 1), out
    assert failures(out) == [] and out.splitlines()[-1] == "1..12", out
    if shutil.which("qemu-system-i386"):
        status, qemu_out = build.run_qemu(elf)
        assert compare(out, qemu_out.decode("latin-1"), {}) == []
        assert status == 1
