"""Bad kernel files end in the loader's error, never a traceback, a huge allocation or an endless read.

Each case of issue 14 (items 3-5) is reproduced here: program headers past the
end of the file, sizes that claim gigabytes, non-regular files, and the
malformed ELFs QEMU rejects; each must raise MultibootError/ELFError with a
one-line message, allocate little, and on the command line print one line
and exit 2.  Then issue 11's entry point: a higher-half kernel (linked at a
virtual address, loaded at a physical one) is entered at its physical entry,
as QEMU computes it, checked against qemu-system-i386.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest
from support.loader_files import Elf, Phdr, aout_kernel, mb_header, multiboot_elf

from gdbemu.boot.elf import ELFError, load_elf, parse_elf, parse_elf32
from gdbemu.boot.multiboot import MultibootError, boot_multiboot, parse_kernel, plan_boot, read_modules
from gdbemu.hw.pc import PCConfig, build_pc
from gdbemu.machine import Machine

REPO = Path(__file__).resolve().parent.parent
RAM = 32 << 20
HAVE_BINUTILS = shutil.which("as") is not None and shutil.which("ld") is not None
HAVE_QEMU = shutil.which("qemu-system-i386") is not None

# The bound on what refusing a file may allocate: the file itself is small, so a few MiB.
ALLOC_BOUND = 8 << 20


def plan(data: bytes, ram: int = RAM) -> object:
    """plan_boot under tracemalloc; returns the result and asserts the peak stayed small."""
    tracemalloc.start()
    try:
        return plan_boot(data, "k", "", [], ram)
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert peak < ALLOC_BOUND, f"the loader allocated {peak >> 20} MiB"


def refused(data: bytes, match: str, ram: int = RAM) -> str:
    with pytest.raises(MultibootError, match=match) as info:
        plan(data, ram)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_good_kernel_plans():
    writes, info = plan(multiboot_elf().build())
    assert info.entry == 0x10000C and info.kernel_low == 0x100000


# ---- issue 14 item 3: program headers past the end of the file --------------------------------
def test_phnum_0xffff_past_the_end_of_the_file():
    refused(multiboot_elf(phnum=0xFFFF).build(), "program headers .* run past the end of the file")


def test_huge_phoff():
    refused(multiboot_elf(phoff=0xFFFFFF00).build(), "program headers .* run past the end of the file")
    refused(multiboot_elf(bits=64, machine=3, phoff=1 << 60).build(), "not a 32-bit ELF|run past the end")


def test_elf_header_cut_short():
    data = b"\x7fELF\x01\x01\x01" + bytes(9) + mb_header(0)  # 28 bytes: the ELF header needs 52
    refused(data, "ELF header is cut short")
    with pytest.raises(ELFError):
        parse_elf(b"\x7fELF\x01")


# ---- issue 14 item 4: sizes checked against RAM before allocating ------------------------------
@pytest.mark.parametrize("memsz", [0xFFFFFFFF, 0x40000000, 0xFFF00000])
def test_huge_p_memsz_is_refused_before_allocating(memsz):
    elf = multiboot_elf()
    elf.phdrs[0].memsz = memsz
    refused(elf.build(), "does not fit|32-bit address space")


def test_huge_bss_end_addr_is_refused_before_allocating():
    refused(aout_kernel(bss_end_addr=0xFFFFFFFF), "does not fit")
    refused(aout_kernel(load_addr=0x100000, bss_end_addr=0x40000000), "does not fit")


def test_load_end_addr_past_4g():
    refused(aout_kernel(load_addr=0xFFFFFF00, load_end_addr=0xFFFFFFF0), "past the end of the file|fit")


def _machine(ram: int = RAM) -> Machine:
    m = Machine(ram_size=ram)
    build_pc(m.bus, PCConfig(serial=["null"]))
    return m


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
def test_dev_zero_kernel_is_refused_up_front(tmp_path):
    with pytest.raises(MultibootError, match="not a regular file"):
        boot_multiboot(_machine(), "/dev/zero")


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
def test_dev_zero_initrd_is_refused_up_front(tmp_path):
    kernel = tmp_path / "k.elf"
    kernel.write_bytes(multiboot_elf().build())
    with pytest.raises(MultibootError, match="not a regular file"):
        boot_multiboot(_machine(), str(kernel), initrd="/dev/zero")


def test_fifo_kernel_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(MultibootError, match="not a regular file .a FIFO"):
        boot_multiboot(_machine(), str(fifo))  # open() of a FIFO blocks until a writer comes: never reached


def test_modules_larger_than_ram_are_refused_before_reading(tmp_path):
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        f.truncate(RAM + 4096)  # sparse: costs no disk
    with pytest.raises(MultibootError, match="does not fit in 32 MiB"):
        read_modules(f"{big}", RAM)


def test_big_sparse_kernel_file_is_mapped_not_read(tmp_path):
    """A kernel file far larger than RAM (an ELF with debug information) is fine: only its segments load."""
    kernel = tmp_path / "k.elf"
    kernel.write_bytes(multiboot_elf().build())
    with open(kernel, "r+b") as f:
        f.truncate(1 << 32)  # 4 GiB, sparse
    m = _machine()
    tracemalloc.start()
    try:
        info = boot_multiboot(m, str(kernel))
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert info.entry == 0x10000C
    assert peak < ALLOC_BOUND


# ---- issue 14 item 5: the malformed ELFs QEMU rejects -------------------------------------------
def test_segment_data_past_eof():
    elf = multiboot_elf()
    elf.phdrs[0].filesz = elf.phdrs[0].memsz = 0x10000  # the file ends long before
    refused(elf.build(), "segment 0: its data .* runs past the end of the file")


def test_p_offset_past_eof():
    elf = multiboot_elf()
    elf.phdrs.append(Phdr(offset=0x7FFFFFF0, paddr=0x200000, vaddr=0x200000, filesz=16, memsz=16))
    refused(elf.build(), "segment 1: its data .* runs past the end of the file")


def test_p_offset_past_eof_with_nothing_to_read_is_fine():
    """QEMU checks the data only when p_filesz > 0: a bss-only segment may say anything."""
    elf = multiboot_elf()
    elf.phdrs.append(Phdr(offset=0x7FFFFFF0, paddr=0x200000, vaddr=0x200000, filesz=0, memsz=0x1000))
    plan(elf.build())


def test_e_phentsize_zero():
    refused(multiboot_elf(phentsize=0).build(), "e_phentsize is 0")


def test_p_filesz_larger_than_p_memsz():
    elf = multiboot_elf()
    elf.phdrs[0].memsz = elf.phdrs[0].filesz - 1
    refused(elf.build(), "p_filesz .* is larger than p_memsz")


def test_overlapping_pt_load_segments():
    elf = multiboot_elf()
    body_len = elf.phdrs[0].filesz
    elf.phdrs.append(Phdr(offset=0x1000, paddr=0x100004, vaddr=0x100004, filesz=body_len, memsz=body_len))
    refused(elf.build(), "segments 0 .* and 1 .* overlap in physical memory")


def test_zero_tail_overlapping_the_next_segment_is_cut_as_qemu_does():
    """Segment 0's bss would cover segment 1's data: QEMU loads segment 0 up to its file size only."""
    elf = multiboot_elf()
    elf.phdrs[0].memsz = 0x2000
    elf.blobs.append((0x2000, b"DATA"))
    elf.phdrs.append(Phdr(offset=0x2000, paddr=0x101000, vaddr=0x101000, filesz=4, memsz=4, flags=6))
    writes, info = plan(elf.build())
    assert (0x101000, b"DATA") in writes
    first = next(body for paddr, body in writes if paddr == 0x100000)
    assert len(first) == elf.phdrs[0].filesz
    assert info.kernel_high == 0x101004


def test_many_program_headers_are_linear():
    """65535 PT_LOAD headers of nothing (a 2 MiB file): refused or loaded quickly, not in O(n^2)."""
    elf = multiboot_elf()
    elf.phdrs += [Phdr(offset=0, paddr=0x200000 + i, vaddr=0, filesz=0, memsz=0) for i in range(0xFFFE)]
    writes, info = plan_boot(elf.build(), "k", "", [], RAM)  # objects per header: more than ALLOC_BOUND
    assert info.kernel_high == 0x200000 + 0xFFFD


# ---- the bare core loader ---------------------------------------------------------------------------
def test_bare_loader_checks_too():
    m = Machine(ram_size=1 << 20)
    with pytest.raises(ELFError, match="does not fit"):
        load_elf(m.mem, multiboot_elf().build())  # at 1 MiB: past the end of 1 MiB of RAM
    with pytest.raises(ELFError, match="run past the end"):
        load_elf(m.mem, multiboot_elf(phnum=0xFFFF).build())
    with pytest.raises(ELFError, match="not an i386 ELF"):
        parse_elf32(multiboot_elf(machine=40).build())


# ---- one line and exit 2 on the command line ---------------------------------------------------------
CLI_CASES = {
    "phnum": lambda: multiboot_elf(phnum=0xFFFF).build(),
    "phoff": lambda: multiboot_elf(phoff=0xFFFFFF00).build(),
    "memsz": lambda: _with(multiboot_elf(), memsz=0xFFFFFFFF).build(),
    "bss": lambda: aout_kernel(bss_end_addr=0xFFFFFFFF),
    "phentsize": lambda: multiboot_elf(phentsize=0).build(),
    "filesz": lambda: _with(multiboot_elf(), memsz=1).build(),
    "short": lambda: b"\x7fELF" + mb_header(0),
}


def _with(elf: Elf, **fields: int) -> Elf:
    for name, value in fields.items():
        setattr(elf.phdrs[0], name, value)
    return elf


def run_cli(*args: str) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "gdbemu.cli", *args],
        capture_output=True,
        timeout=120,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def assert_one_line_exit_2(proc: subprocess.CompletedProcess[bytes]) -> None:
    err = proc.stderr.decode(errors="replace")
    assert proc.returncode == 2, err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("gdbemu: cannot "), err


def test_cli_one_line_and_exit_2(tmp_path):
    """All the bad files through one command line each (a few interpreter starts, not one per case)."""
    for name, make in CLI_CASES.items():
        path = tmp_path / f"{name}.elf"
        path.write_bytes(make())
        proc = run_cli("-kernel", str(path), "-display", "none", "-m", "32")
        assert_one_line_exit_2(proc)
    if os.path.exists("/dev/zero"):
        assert_one_line_exit_2(run_cli("-kernel", "/dev/zero", "-display", "none"))
        good = tmp_path / "good.elf"
        good.write_bytes(multiboot_elf().build())
        assert_one_line_exit_2(run_cli("-kernel", str(good), "-initrd", "/dev/zero", "-display", "none"))


def test_cli_boots_the_good_kernel(tmp_path):
    path = tmp_path / "good.elf"
    path.write_bytes(multiboot_elf().build())
    proc = run_cli("-kernel", str(path), "-display", "none", "-debugcon", "stdio", "-m", "32")
    assert proc.stdout == b"ok\n" and proc.returncode == 0x43, proc.stderr


# ---- issue 11: the entry point of a kernel linked high and loaded low --------------------------------
def test_entry_is_translated_through_its_segment():
    """e_entry 0xC010000C in a PT_LOAD at p_vaddr 0xC0100000 / p_paddr 0x100000: entered at 0x10000C."""
    elf = multiboot_elf(entry=0xC010000C)
    elf.phdrs[0].vaddr = 0xC0100000
    assert parse_kernel(elf.build()).entry == 0x10000C


def test_entry_not_translated_outside_an_executable_segment():
    elf = multiboot_elf(entry=0xC010000C)
    elf.phdrs[0].vaddr = 0xC0100000
    elf.phdrs[0].flags = 6  # RW, no X: QEMU leaves e_entry alone
    assert parse_kernel(elf.build()).entry == 0xC010000C
    elf = multiboot_elf(entry=0xC0200000)  # beyond the segment's file size
    elf.phdrs[0].vaddr = 0xC0100000
    assert parse_kernel(elf.build()).entry == 0xC0200000


HIGHER_HALF_S = r"""
        .set    KERNEL_VMA, 0xC1000000
        .section .multiboot, "ax"
        .align  4
        .long   0x1BADB002, 0, -0x1BADB002
        .text
        .globl  _start
_start:                               /* runs at its physical address, paging off */
        mov     $(msg - KERNEL_VMA + 0x01000000), %esi
1:      lodsb
        test    %al, %al
        jz      2f
        outb    %al, $0xe9
        jmp     1b
2:      mov     $0x21, %al
        outb    %al, $0xf4
        hlt
msg:    .asciz  "higher half\n"
"""

HIGHER_HALF_LD = """
ENTRY(_start)
SECTIONS {
    . = 0xC1000000;
    .text : AT(0x01000000) { *(.multiboot) *(.text) }
}
"""


@pytest.fixture(scope="module")
def higher_half(tmp_path_factory) -> Path:
    if not HAVE_BINUTILS:
        pytest.skip("GNU binutils (as/ld) not installed")
    tmp = tmp_path_factory.mktemp("hh")
    (tmp / "k.s").write_text(HIGHER_HALF_S)
    (tmp / "k.ld").write_text(HIGHER_HALF_LD)
    subprocess.run(["as", "--32", str(tmp / "k.s"), "-o", str(tmp / "k.o")], check=True, capture_output=True)
    subprocess.run(
        ["ld", "-m", "elf_i386", "-T", str(tmp / "k.ld"), str(tmp / "k.o"), "-o", str(tmp / "k.elf")],
        check=True,
        capture_output=True,
    )
    return tmp / "k.elf"


def test_higher_half_kernel_boots(higher_half):
    elf = parse_elf32(higher_half.read_bytes())
    assert elf.e_entry == 0xC100000C and elf.entry == 0x0100000C  # _start follows the header
    m = _machine(64 << 20)
    info = m.load_multiboot(str(higher_half))
    assert info.entry == 0x0100000C
    m.run(max_insns=100_000)
    assert bytes(m.debug_output) == b"higher half\n" and m.exit_code == 0x43


@pytest.mark.skipif(not HAVE_QEMU, reason="qemu-system-i386 not installed")
def test_higher_half_kernel_as_on_qemu(higher_half):
    proc = subprocess.run(
        [
            "qemu-system-i386",
            "-accel",
            "tcg",
            "-m",
            "64",
            "-kernel",
            str(higher_half),
            "-display",
            "none",
            "-debugcon",
            "stdio",
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=0x04",
            "-no-reboot",
        ],
        capture_output=True,
        timeout=60,
    )
    assert proc.stdout == b"higher half\n" and proc.returncode == 0x43
    m = _machine(64 << 20)
    m.load_multiboot(str(higher_half))
    m.run(max_insns=100_000)
    assert (bytes(m.debug_output), m.exit_code) == (proc.stdout, proc.returncode)
