"""A multiboot v1 kernel that enters long mode itself (tests/support/guests/long64.s), on gdbemu and QEMU.

The guest starts in 32-bit protected mode as the multiboot loader leaves it,
builds 4-level page tables (2 MiB pages, 1 GiB pages, a higher-half alias,
4 KiB pages with NX), sets CR4.PAE, EFER.LME/NXE/SCE and CR0.PG, jumps into
64-bit code and checks the system side of x86-64 from inside: the 10-byte
lgdt/sgdt forms, 16-byte IDT gates with IST, the 64-bit TSS, NX and
non-canonical faults, CR8, the FS/GS/KERNEL_GS bases and swapgs, rdtscp,
a far return into compatibility mode, ring 3 by iretq and sysret (64-bit and
compatibility code), syscall through LSTAR and CSTAR, int 0x80 and a 64-bit
call gate from ring 3, ring-3 faults on the RSP0 stack; then it leaves long
mode again.  Its transcript goes to COM1.

Both machines run the same CPU model, ``qemu64`` with 1 GiB pages and RDTSCP
added (QEMU's default x86-64 model lacks them).  The transcripts must be
identical but for ``QEMU_DIFFERENCES``, where QEMU (7.2, TCG) departs from the
Intel SDM and gdbemu follows the SDM.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from support import build
from support.exc_compare import compare, failures

from gdbemu.boot.firmware import apply_cpu_model
from gdbemu.hw.pc import PCConfig, build_pc
from gdbemu.machine import Machine

CHECKS = 92
MODEL = "qemu64,+pdpe1gb,+rdtscp"
QEMU_DIFFERENCES = {
    "wrmsr-non-canonical-gp": (
        "QEMU's TCG stores a non-canonical FS_BASE.  SDM vol. 2 WRMSR: #GP(0) 'if the source register "
        "contains a non-canonical address and ECX specifies one of the following MSRs: ... IA32_FS_BASE, "
        "IA32_GS_BASE, IA32_KERNEL_GS_BASE, IA32_LSTAR, IA32_SYSENTER_EIP, IA32_SYSENTER_ESP'"
    ),
    "rdmsr-unknown-gp": (
        "QEMU's TCG reads an unknown MSR as 0.  SDM vol. 2 RDMSR: #GP(0) 'if the value in ECX specifies "
        "a reserved or unimplemented MSR address'"
    ),
    "syscall-fmask-applied": (
        "QEMU 7.2's SYSCALL clears every arithmetic flag (cpu_load_eflags with the lazy flags not folded "
        "in).  SDM vol. 2 SYSCALL: 'RFLAGS <- RFLAGS AND NOT(IA32_FMASK)': CF, not in SFMASK, stays set"
    ),
}


def run_on_gdbemu(elf: Path, model: str = MODEL, tier: int | None = None) -> tuple[str, Machine, str]:
    """Boot ``elf`` with QEMU's -kernel dispatch on a PC; (COM1 transcript, machine, stop kind)."""
    serial = io.BytesIO()
    m = Machine(32 << 20)
    build_pc(m.bus, PCConfig(serial=[serial], no_reboot=True))
    apply_cpu_model(m, model)
    if tier is not None:
        m.translator.force_tier = tier
    m.load_kernel(str(elf))
    stop = m.run(max_insns=2_000_000)
    uart = m.bus.devices.get("uart")
    if uart is not None and hasattr(uart, "flush"):
        uart.flush()
    return serial.getvalue().decode("latin-1"), m, str(stop.kind)


@pytest.mark.parametrize("tier", [1, 2])
def test_long_mode_guest_passes_on_gdbemu(build_guest: Callable[[str], Path], tier: int) -> None:
    out, m, kind = run_on_gdbemu(build_guest("long64"), tier=tier)
    assert failures(out) == [], out
    assert out.splitlines()[-1:] == [f"1..{CHECKS}"], out
    assert (kind, m.exit_code) == ("exit", 1), out
    # it left long mode at the end: legacy protected mode, paging off
    assert not m.cpu.efer & (1 << 10) and not m.cpu.cr[0] & (1 << 31)


def test_long_mode_guest_on_the_default_cpu(build_guest: Callable[[str], Path]) -> None:
    """The default CPU (``max``: everything gdbemu emulates) has everything the guest needs."""
    out, m, kind = run_on_gdbemu(build_guest("long64"), model="max")
    assert failures(out) == [] and (kind, m.exit_code) == ("exit", 1), out


def test_long_mode_guest_without_long_mode_stops_at_the_cpuid_check(build_guest: Callable[[str], Path]) -> None:
    """qemu32 has no LM: the CPUID check fails, EFER.LME is #GP (no IDT yet: a triple fault)."""
    out, m, kind = run_on_gdbemu(build_guest("long64"), model="qemu32")
    assert out.splitlines()[1].startswith("not ok 2 cpuid-lm"), out
    assert kind == "triple_fault"


@pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="qemu-system-x86_64 not installed")
def test_long_mode_guest_matches_qemu(build_guest: Callable[[str], Path]) -> None:
    elf = build_guest("long64")
    out, _, _ = run_on_gdbemu(elf)
    status, qemu_out = build.run_qemu(elf, output="com1", extra=["-cpu", MODEL], binary="qemu-system-x86_64")
    problems = compare(out, qemu_out.decode("latin-1"), QEMU_DIFFERENCES)
    assert problems == [], "\n".join(problems)
    assert status == 3  # guest status 1 on QEMU: the recorded differences fail there
