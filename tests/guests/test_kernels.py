"""Acceptance tests for the PC board (issue 3): a multitasking kernel in C.

The kernel (tests/support/kernels/, see kernel.c and user.c) uses every piece a
small OS needs from the board and the CPU together: GDT/TSS/IDT, the 8259
remapped, the PIT at 100 Hz preempting ring-3 tasks, interrupt-driven COM1
output, a page directory per task with demand paging, int 0x80 system calls,
and #DE/#GP in ring 3 turned into task kills.  It prints a transcript on COM1
that does not depend on where the timer interrupts land, so it must be byte
for byte the committed ``multitask.expected`` on gdbemu and on QEMU alike —
while one of its steps (task A spinning in ring 3 with no system call until
task B has run) can only complete if timer preemption works.

Reproduce by hand with ``python tests/support/build.py kernel [--qemu]``.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest
from support import build

# The whole run is ~3 million instructions at the default icount shift; the
# bound only turns a hang (a lost interrupt, a stuck UART) into a failure.
MAX_INSNS = 60_000_000

PC_DEVICES = ("gdbemu.hw.pic", "gdbemu.hw.pit", "gdbemu.hw.uart")


def _require_pc() -> None:
    """Skip (with the reason) while the board's devices the kernel needs are not there."""
    pytest.importorskip("gdbemu.machine", reason="the gdbemu core is not there")
    for mod in PC_DEVICES:
        if importlib.util.find_spec(mod) is None:
            pytest.skip(f"{mod} is not written yet: the kernel needs the PIC, the PIT and the UART")


@pytest.fixture(scope="module")
def kernel_elf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The kernel built from source into a tmp dir (skip, with the reason, without gcc/as/ld)."""
    try:
        build.toolchain()
    except build.ToolchainMissingError as exc:
        pytest.skip(str(exc))
    return build.build_multitask(tmp_path_factory.mktemp("kernels"))


@pytest.fixture(scope="module")
def gdbemu_run(kernel_elf: Path) -> build.KernelRun:
    """One run on gdbemu, shared by the tests that look at it (a run costs seconds)."""
    _require_pc()
    return build.run_gdbemu(kernel_elf, MAX_INSNS)


def expected() -> str:
    return build.EXPECTED_TRANSCRIPT.read_text()


def test_gdbemu_transcript_is_the_expected_one(gdbemu_run: build.KernelRun, capsys) -> None:
    """The kernel runs to its end on gdbemu, says PASS, and its COM1 output is the committed transcript."""
    with capsys.disabled():
        print(
            f"\n[multitask kernel on gdbemu: {gdbemu_run.icount} instructions, {gdbemu_run.seconds:.2f} s wall, "
            f"{gdbemu_run.icount / max(gdbemu_run.seconds, 1e-9) / 1e6:.2f} MIPS]"
        )
    assert gdbemu_run.stop_kind == "exit", gdbemu_run.describe()
    assert gdbemu_run.serial.decode("latin-1") == expected(), gdbemu_run.describe()
    assert gdbemu_run.exit_code == 1, gdbemu_run.describe()  # isa-debug-exit 0: every check passed


def test_qemu_transcript_is_the_same(kernel_elf: Path, gdbemu_run: build.KernelRun) -> None:
    """QEMU (the reference) prints the same bytes and exits with the same status as gdbemu."""
    if not shutil.which("qemu-system-i386"):
        pytest.skip("qemu-system-i386 not installed (Debian: qemu-system-x86)")
    status, serial = build.run_qemu(kernel_elf, output="com1")
    assert serial.decode("latin-1") == expected()
    assert status == 1
    assert serial == gdbemu_run.serial
    assert gdbemu_run.exit_code == status


def test_gdbemu_runs_are_identical(kernel_elf: Path, gdbemu_run: build.KernelRun) -> None:
    """Virtual time comes from the instruction count, so a second run retires exactly as many
    instructions and leaves exactly the same RAM (timer interrupts at the same instructions)."""
    again = build.run_gdbemu(kernel_elf, MAX_INSNS)
    assert again.serial == gdbemu_run.serial
    assert again.icount == gdbemu_run.icount
    assert again.ram_sha256 == gdbemu_run.ram_sha256


@pytest.mark.parametrize("shift", [5, 7, 10])
def test_transcript_does_not_depend_on_timer_phase(kernel_elf: Path, shift: int) -> None:
    """With another icount shift the ticks land elsewhere (10 ms = 2**(23-shift)-ish instructions,
    so from ~40k down to ~10k instructions per slice): the schedule changes, the transcript must not.
    This is what makes the comparison with QEMU, whose timer runs on host time, meaningful."""
    _require_pc()
    run = build.run_gdbemu(kernel_elf, MAX_INSNS, icount_shift=shift)
    assert run.stop_kind == "exit", run.describe()
    assert run.serial.decode("latin-1") == expected(), run.describe()
    assert run.exit_code == 1


def test_pit_square_wave_mode(tmp_path: Path) -> None:
    """The same kernel with PIT channel 0 in mode 3 (square wave, as many kernels program it):
    one IRQ 0 per period all the same, so the same transcript but for the line naming the mode."""
    _require_pc()
    try:
        elf = build.build_multitask(tmp_path, {"PIT_MODE": 3})
    except build.ToolchainMissingError as exc:
        pytest.skip(str(exc))
    want = expected().replace("PIT channel 0: mode 2,", "PIT channel 0: mode 3,")
    run = build.run_gdbemu(elf, MAX_INSNS)
    assert run.serial.decode("latin-1") == want, run.describe()
    assert run.exit_code == 1
    if shutil.which("qemu-system-i386"):
        status, serial = build.run_qemu(elf, output="com1")
        assert (status, serial) == (1, run.serial)


@pytest.mark.parametrize("tier", [1, 2])
def test_translator_tiers_agree(kernel_elf: Path, gdbemu_run: build.KernelRun, tier: int) -> None:
    """A whole OS run with every block at tier 1 (one function per instruction) or at tier 2 (one
    compiled function per block from the start) ends in exactly the state of the default mixed run:
    same instruction count, same RAM, same transcript.  Interrupts land at block boundaries, so this
    also checks that both tiers end blocks and count instructions alike."""
    run = build.run_gdbemu(kernel_elf, MAX_INSNS, force_tier=tier)
    assert run.serial == gdbemu_run.serial, run.describe()
    assert (run.icount, run.ram_sha256) == (gdbemu_run.icount, gdbemu_run.ram_sha256)
