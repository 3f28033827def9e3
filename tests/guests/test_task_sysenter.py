"""Hardware task switching and SYSENTER/SYSEXIT, checked from inside guest kernels.

``exc_task`` (tests/support/guests/exc_task.s): JMP to a TSS and back, CALL through a
task gate and IRET back (NT, back link and busy bits read from the GDT),
INT n and an exception with an error code through IDT task gates, the
double-fault task that rescues an overflowed kernel stack, a 16-bit TSS, a
ring-3 task, the T flag, DR7's local enables, and the commit point: faults
before it in the old task, faults after it in the new one (SDM vol. 3,
chapter 7).  ``exc_sysenter``: the SYSENTER/SYSEXIT round trip from ring 3,
the flat segments they load without the GDT, and their #GP(0) cases (SDM
vol. 2).

As in tests/guests/test_exceptions.py, the same ELF runs on qemu-system-i386 and the
transcripts must match except for ``QEMU_DIFFERENCES``, where gdbemu follows
the SDM.  The unit tests below look at what the guests cannot see: that a
fault before the commit point leaves memory untouched, and the 16-bit TSS
and the CPUID bit at the Python level.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from support.exc_compare import assert_matches_qemu, assert_passes_on_gdbemu
from support.fixtures import GuestRun

from gdbemu.core import helpers as H
from gdbemu.core import interrupts
from gdbemu.core.cpu import CR0_PE, CR0_PG, CR0_TS, CR0_WP, DESC_P, DESC_TYPE_SHIFT, SegmentCache
from gdbemu.core.exceptions import GP, PF, GuestFault
from gdbemu.machine import Machine

CHECKS = {"exc_task": 123, "exc_sysenter": 47}
MAX_INSNS = {"exc_task": 800_000, "exc_sysenter": 300_000}

_TBIT = (
    "QEMU ignores the T flag of the new TSS.  SDM vol. 3, 17.3.1.5: 'The processor generates a debug exception "
    "after a task switch if the T flag of the new task's TSS is set ... prior to the execution of the first "
    "instruction of that task' (DR6.BT)"
)
_SYSENTER_CS = (
    "QEMU faults only when the whole MSR is 0.  SDM vol. 2 SYSENTER: "
    "'#GP(0) If IA32_SYSENTER_CS[15:2] = 0' (a selector with only RPL bits is null)"
)
QEMU_DIFFERENCES: dict[str, dict[str, str]] = {
    "exc_task": {
        "post-fault-eip-is-new-task-first-insn": (
            "QEMU pushes the EIP of the JMP that switched (it restores the guest EIP from the translated code's "
            "return address) with the new task's CS and TR.  SDM vol. 3, 7.3 steps 13-14: errors after the commit "
            "point 'occur in the context of the new task' and 'to an exception handler, the first instruction of "
            "the new task appears not to have been executed'"
        ),
        "tbit-db-vector": _TBIT,
        "tbit-db-before-first-insn": _TBIT,
        "tbit-dr6-bt": _TBIT,
    },
    "exc_sysenter": {
        f"sysenter-null-cs-rpl3-{field}": _SYSENTER_CS for field in ("vec", "eip", "cs", "ss", "esp", "frame-at-esp0")
    },
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


# ---- unit level: a hand-built machine state ----------------------------------------------------
GDT, IDT, OLD_TSS, NEW_TSS, PD, PT = 0x1000, 0x2000, 0x3000, 0x4000, 0x10000, 0x11000
SEL_OLD, SEL_NEW, SEL_NPDATA = 0x18, 0x20, 0x28


def _desc(base: int, limit: int, access: int, flags: int = 0) -> bytes:
    """An 8-byte segment or system descriptor (SDM vol. 3, figure 3-8)."""
    lo = (limit & 0xFFFF) | (base & 0xFFFF) << 16
    hi = (base >> 16 & 0xFF) | access << 8 | (limit & 0xF0000) | flags << 20 | (base & 0xFF000000)
    return lo.to_bytes(4, "little") + hi.to_bytes(4, "little")


def _gate(selector: int, offset: int, access: int) -> bytes:
    lo = (offset & 0xFFFF) | selector << 16
    hi = (offset & 0xFFFF0000) | access << 8
    return lo.to_bytes(4, "little") + hi.to_bytes(4, "little")


def _board(paging: bool = False, new_ds: int = 0x10) -> Machine:
    """Flat ring 0, a GDT with a busy current TSS (SEL_OLD) and an available one (SEL_NEW), an IDT."""
    m = Machine(ram_size=4 << 20)
    cpu = m.cpu
    cpu.setup_flat32()
    gdt = (
        bytes(8)
        + _desc(0, 0xFFFFF, 0x9A, 0xC)
        + _desc(0, 0xFFFFF, 0x92, 0xC)
        + _desc(OLD_TSS, 0x67, 0x8B)
        + _desc(NEW_TSS, 0x67, 0x89)
        + _desc(0, 0xFFFFF, 0x12, 0xC)
    )
    m.mem.write(GDT, gdt)
    cpu.gdtr_base, cpu.gdtr_limit = GDT, len(gdt) - 1
    cpu.idtr_base, cpu.idtr_limit = IDT, 256 * 8 - 1
    cpu.tr = SegmentCache(SEL_OLD, OLD_TSS, 0x67, DESC_P | 11 << DESC_TYPE_SHIFT)
    tss = bytearray(104)
    for off, value in (
        (0x1C, PD),
        (0x20, 0x5000),
        (0x24, 2),
        (0x38, 0x6000),
        (0x48, 0x10),
        (0x4C, 0x08),
        (0x50, 0x10),
        (0x54, new_ds),
        (0x58, 0x10),
        (0x5C, 0x10),
    ):
        tss[off : off + 4] = value.to_bytes(4, "little")
    m.mem.write(NEW_TSS, bytes(tss))
    cpu.regs[:] = [0x11, 0x22, 0x33, 0x44, 0x8000, 0x66, 0x77, 0x88]
    cpu.eip = 0x9000
    if paging:
        m.mem.write(PD, (PT | 3).to_bytes(4, "little"))
        m.mem.write(PT, b"".join(((i << 12) | 3).to_bytes(4, "little") for i in range(1024)))
        m.mem.write(PT + (OLD_TSS >> 12) * 4, (OLD_TSS | 1).to_bytes(4, "little"))  # old TSS read-only
        cpu.cr[3] = PD
        cpu.cr[0] |= CR0_PG | CR0_WP | CR0_PE
        cpu.tlb.flush()
        cpu.compute_hflags()
    return m


def test_fault_before_the_commit_point_changes_nothing() -> None:
    """A #PF writing the old TSS (read-only page, CR0.WP) is found before anything is written: the
    GDT busy bits, both TSSs, TR, CR0.TS and the registers are as they were (SDM vol. 3, 7.3: an
    error in steps 1-11 returns the processor to its state before the initiating instruction)."""
    m = _board(paging=True)
    cpu = m.cpu
    before = m.mem.read(0, 0x8000)
    regs, tr, cr0 = list(cpu.regs), cpu.tr, cpu.cr[0]
    with pytest.raises(GuestFault) as exc:
        H.far_jmp(cpu, SEL_NEW, 0, 4, 0x9007)
    assert (exc.value.vector, exc.value.error_code) == (PF, 3), "a supervisor write to a present read-only page"
    assert OLD_TSS <= exc.value.cr2 < OLD_TSS + 0x68
    assert m.mem.read(0, 0x8000) == before
    assert (cpu.regs, cpu.tr, cpu.cr[0], cpu.eip) == (regs, tr, cr0, 0x9000)
    assert cr0 & CR0_TS == 0


def test_fault_after_the_commit_point_of_an_exception_task_gate_is_a_double_fault() -> None:
    """#GP through a task gate whose new task has a DS that is not present: the #NP is raised in the
    new task (TR, CS:EIP of the new task, its stack) and, being a contributory fault during the
    delivery of a contributory one, becomes #DF (SDM vol. 3, table 6-5; QEMU does the same)."""
    m = _board(new_ds=SEL_NPDATA)
    cpu = m.cpu
    m.mem.write(IDT + 13 * 8, _gate(SEL_NEW, 0, 0x85))
    m.mem.write(IDT + 8 * 8, _gate(0x08, 0x7000, 0x8E))
    interrupts.raise_exception(cpu, GuestFault(GP, 0x50))
    assert cpu.tr.selector == SEL_NEW
    assert cpu.eip == 0x7000, "the #DF handler"
    frame = [int.from_bytes(m.mem.read(0x6000 - 16 + 4 * i, 4), "little") for i in range(4)]
    assert frame[:3] == [0, 0x5000, 0x08], "#DF(0) pushed on the new task's stack, EIP of its first instruction"
    assert int.from_bytes(m.mem.read(OLD_TSS + 0x20, 4), "little") == 0x9000, "the old task saved at the fault"
    assert m.mem.read(NEW_TSS, 2) == SEL_OLD.to_bytes(2, "little"), "back link"


def test_sysenter_from_real_mode_faults_and_from_vm86_clears_vm() -> None:
    """SYSENTER (SDM vol. 2): #GP(0) in real mode; from virtual-8086 mode it enters ring 0 with
    VM, IF and RF cleared and flat 32-bit CS/SS whatever the GDT holds."""
    m = Machine(ram_size=1 << 20)
    cpu = m.cpu
    cpu.msr[0x174], cpu.msr[0x175], cpu.msr[0x176] = 0x08, 0x7000, 0x5000
    with pytest.raises(GuestFault) as exc:
        H.sysenter(cpu)
    assert (exc.value.vector, exc.value.error_code) == (GP, 0)
    cpu.setup_flat32()
    cpu.set_eflags(0x2 | 0x20000 | 0x10000 | 0x200 | 0x3000)
    assert cpu.cpl == 3
    H.sysenter(cpu)
    assert cpu.get_eflags() & (0x20000 | 0x10000 | 0x200) == 0
    assert (cpu.cpl, cpu.segs[1].selector, cpu.segs[2].selector) == (0, 0x08, 0x10)
    assert (cpu.eip, cpu.regs[4]) == (0x5000, 0x7000)
    assert (cpu.segs[1].base, cpu.segs[1].limit, cpu.segs[2].big) == (0, 0xFFFFFFFF, True)


def test_watchpoint_on_the_old_tss_reports_after_the_switch() -> None:
    """A debugger watchpoint on the old TSS's EIP field: the switch is not restarted half-done (its
    writes are recorded like a replay's), it completes, and the hit is reported afterwards."""
    from gdbemu.softmmu.watchpoint import WATCH_WRITE

    m = _board()
    cpu = m.cpu
    m.watchpoints.add(OLD_TSS + 0x20, 4, WATCH_WRITE, "gdb")
    H.far_jmp(cpu, SEL_NEW, 0, 4, 0x9007)
    assert (cpu.tr.selector, cpu.eip) == (SEL_NEW, 0x5000)
    assert int.from_bytes(m.mem.read(OLD_TSS + 0x20, 4), "little") == 0x9007
    assert m.stop_reason is not None and m.stop_reason.kind == "debug"
    assert m.stop_reason.addr == OLD_TSS + 0x20
