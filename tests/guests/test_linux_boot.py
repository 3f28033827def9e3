"""``-kernel`` beyond multiboot v1: multiboot2, the Linux 32-bit boot protocol (bzImage), PVH (vmlinux).

* multiboot2: ``mb2check`` (tests/support/boot/) checks every information
  tag against the command line the test gives it (the expectations are
  computed here from the RAM size, independently of the loader) and the
  entry state of the spec's section 3.3; as an ELF32 and as the same 32-bit
  code in an ELF64; through the Python API and the ``gdbemu`` command.
* bzImage: a protocol-2.15 image whose protected-mode part reports its entry
  registers; the zero page is read back and checked field by field against
  Documentation/arch/x86/boot.rst and QEMU's loader values.
* PVH: the same reporter in an ELF32 with the Xen PHYS32_ENTRY note; the
  hvm_start_info is checked; an ELF with neither a multiboot header nor the
  note is refused with QEMU's line.

QEMU cannot boot multiboot2 or these test images the same way (it enters
bzImages in real mode through its option ROM), so the references are the
specifications, cited per check.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from support.boot_build import ToolchainMissingError, build_entrydump, build_mb2check

from gdbemu.boot import firmware
from gdbemu.boot.linux import LinuxBootError, plan_linux
from gdbemu.boot.multiboot import MultibootError
from gdbemu.boot.pvh import MISSING_NOTE
from gdbemu.hw.pc import PCConfig, build_pc
from gdbemu.machine import Machine

REPO = Path(__file__).resolve().parents[2]
RAM = 128 << 20


def _build(fn, *args):  # type: ignore[no-untyped-def]
    try:
        return fn(*args)
    except ToolchainMissingError as exc:
        pytest.skip(str(exc))


def _machine(ram: int = RAM) -> Machine:
    m = Machine(ram_size=ram)
    build_pc(m.bus, PCConfig(serial=["null"]))
    return m


def _mb2_append(ram: int, mods: int, elf64: bool) -> str:
    upper_kib = (ram - (128 << 10) - (1 << 20)) // 1024  # 1 MiB up to the reserved ACPI zone
    return f"loader=gdbemu mods={mods} lower=639 upper={upper_kib} mmap=6 entsize={64 if elf64 else 40}"


@pytest.mark.parametrize("elf64", [False, True], ids=["elf32", "elf64"])
def test_multiboot2_tags_checked_by_the_kernel(tmp_path, elf64):
    elf = _build(build_mb2check, tmp_path, elf64)
    mods = []
    for i in range(2):
        path = tmp_path / f"mod{i}"
        text = f"module {i} body"
        path.write_bytes(text.encode())
        mods.append(f"{path} {text}")
    m = _machine()
    info = m.load_kernel(str(elf), _mb2_append(RAM, 2, elf64), ",".join(mods))
    stop = m.run(max_insns=10_000_000)
    out = bytes(m.debug_output).decode()
    assert stop.kind == "exit", (stop, out)
    assert "FAIL" not in out, out
    assert "done fails=0x00000000" in out
    assert m.exit_code == 1  # (0 << 1) | 1
    assert out.count("\nok ") > 60
    assert m.cpu.icount > 0 and info is not None


def test_multiboot2_address_tag_loads_a_flat_image(tmp_path):
    image = _build(build_mb2check, tmp_path, False, True)
    assert image.read_bytes()[:4] != b"\x7fELF"
    m = _machine()
    m.load_kernel(str(image), _mb2_append(RAM, 0, False) + " elf=0")
    stop = m.run(max_insns=10_000_000)
    out = bytes(m.debug_output).decode()
    assert stop.kind == "exit" and "done fails=0x00000000" in out, out


def test_multiboot2_via_the_command_line(tmp_path):
    elf = _build(build_mb2check, tmp_path, False)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-m", "gdbemu.cli", "-m", "64M", "-nographic", "-debugcon", "stdio", str(elf),
         "-append", _mb2_append(64 << 20, 0, False)],
        capture_output=True, timeout=120, env=env, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    out = proc.stdout.decode()
    assert "done fails=0x00000000" in out, (out, proc.stderr.decode())
    assert proc.returncode == 1


def test_multiboot2_refuses_a_required_tag_it_cannot_give(tmp_path):
    elf = _build(build_mb2check, tmp_path, False)
    data = bytearray(elf.read_bytes())
    at = data.find(struct.pack("<I", 0xE85250D6))
    req = at + 16  # the information request tag: type 1, flags 0, size, then the types
    assert struct.unpack_from("<HH", data, req) == (1, 0)
    struct.pack_into("<I", data, req + 8, 13)  # SMBIOS tables: not provided
    bad = tmp_path / "bad.elf"
    bad.write_bytes(bytes(data))
    with pytest.raises(MultibootError, match="requires information tag type 13"):
        _machine().load_kernel(str(bad))


def _regs(out: str) -> dict[str, int]:
    return {p[1]: int(p[2], 16) for line in out.splitlines() if (p := line.split())[:1] == ["reg"]}


def test_bzimage_32bit_boot_protocol(tmp_path):
    image = _build(build_entrydump, tmp_path, "bzimage")
    initrd = tmp_path / "initrd.img"
    initrd.write_bytes(bytes(range(256)) * 41)
    m = _machine()
    append = "console=ttyS0 nokaslr root=/dev/ram0"
    m.load_kernel(str(image), append, str(initrd))
    stop = m.run(max_insns=1_000_000)
    assert stop.kind == "exit", stop
    regs = _regs(bytes(m.debug_output).decode())
    # boot.rst, "32-bit Boot Protocol": __BOOT_CS/__BOOT_DS, %esi = boot_params, %ebp/%edi/%ebx 0,
    # interrupts off, paging off.
    assert regs["cs"] == 0x10 and regs["ds"] == regs["es"] == regs["ss"] == 0x18
    bp = regs["esi"]
    assert bp == 0x10000
    assert regs["ebx"] == regs["ebp"] == regs["edi"] == 0
    assert regs["cr0"] & 0x80000001 == 1
    zp = m.mem.read(bp, 4096)
    u8 = lambda off: zp[off]  # noqa: E731
    u16 = lambda off: struct.unpack_from("<H", zp, off)[0]  # noqa: E731
    u32 = lambda off: struct.unpack_from("<I", zp, off)[0]  # noqa: E731
    assert zp[0x202:0x206] == b"HdrS" and u16(0x206) == 0x020F
    assert u16(0x1FE) == 0xAA55
    assert u8(0x210) == 0xB0  # type_of_loader: QEMU's
    assert u8(0x211) == 0x81  # LOADED_HIGH | CAN_USE_HEAP
    assert u16(0x224) == 0xFE00  # heap_end_ptr: cmdline - real-mode base - 0x200
    assert u32(0x228) == 0x20000
    assert m.mem.read(0x20000, len(append) + 1) == append.encode() + b"\0"
    size = initrd.stat().st_size
    ram_top = RAM - (128 << 10)
    assert u32(0x21C) == size
    assert u32(0x218) == ((ram_top - 1 - size) & ~4095)  # QEMU: (initrd_max - size) & ~4095
    assert m.mem.read(u32(0x218), size) == initrd.read_bytes()
    e820 = [struct.unpack_from("<QQI", zp, 0x2D0 + 20 * i) for i in range(u8(0x1E8))]
    assert e820 == firmware.e820_map(RAM)
    assert struct.unpack_from("<Q", zp, 0x70)[0] == firmware.RSDP_ADDR  # acpi_rsdp_addr (2.14+)
    assert m.mem.read(firmware.RSDP_ADDR, 8) == b"RSD PTR "
    # screen_info as Linux's setup code records QEMU's VGA: mode 3, 80x25, VGA colour
    assert (u8(0x06), u8(0x07), u8(0x0E), u8(0x0F), u16(0x10)) == (3, 80, 25, 0x22, 16)
    assert u32(0x1E0) == (ram_top - (1 << 20)) // 1024  # alt_mem_k


def test_bzimage_refuses_old_protocols_with_one_line(tmp_path):
    image = _build(build_entrydump, tmp_path, "bzimage")
    data = bytearray(image.read_bytes())
    struct.pack_into("<H", data, 0x206, 0x0205)
    with pytest.raises(LinuxBootError, match=r"^Linux boot protocol 2\.05 is older than 2\.06, which gdbemu needs$"):
        plan_linux(bytes(data), "", None, RAM, firmware.RSDP_ADDR, True)
    old = tmp_path / "old.bzImage"
    old.write_bytes(bytes(data))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-m", "gdbemu.cli", "-nographic", str(old)],
        capture_output=True, timeout=60, env=env, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.returncode == 2
    err = proc.stderr.decode().strip()
    assert err.count("\n") == 0 and "older than 2.06" in err


def test_pvh_entry_and_start_info(tmp_path):
    elf = _build(build_entrydump, tmp_path, "pvh")
    initrd = tmp_path / "initrd.img"
    initrd.write_bytes(b"pvh-initrd" * 100)
    m = _machine()
    m.load_kernel(str(elf), "console=ttyS0", str(initrd))
    stop = m.run(max_insns=1_000_000)
    assert stop.kind == "exit", stop
    regs = _regs(bytes(m.debug_output).decode())
    # start_info.h: EBX = start_info, CR0.PE set and PG clear, CR4 0, flat segments
    si_addr = regs["ebx"]
    assert regs["cr0"] & 0x80000001 == 1 and regs["cr4"] == 0
    assert regs["cs"] == 0x08 and regs["ds"] == 0x10
    magic, version, _flags, nr_modules, modlist, cmdline, rsdp, memmap, entries = struct.unpack(
        "<IIIIQQQQI", m.mem.read(si_addr, 52)
    )
    assert (magic, version, nr_modules) == (0x336EC578, 1, 1)
    assert m.mem.read(cmdline, 14) == b"console=ttyS0\0"
    assert rsdp == firmware.RSDP_ADDR
    mod_addr, mod_size, _mod_cmd, _res = struct.unpack("<QQQQ", m.mem.read(modlist, 32))
    assert m.mem.read(mod_addr, mod_size) == initrd.read_bytes() and mod_addr % 4096 == 0
    mmap = [struct.unpack_from("<QQI", m.mem.read(memmap + 24 * i, 24)) for i in range(entries)]
    assert mmap == firmware.e820_map(RAM)


def test_elf_without_pvh_note_or_multiboot_header(tmp_path):
    elf = _build(build_entrydump, tmp_path, "bzimage").parent / "entrydump_bzimage.elf"
    with pytest.raises(MultibootError, match=f"^{MISSING_NOTE}$"):
        _machine().load_kernel(str(elf))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-m", "gdbemu.cli", "-nographic", str(elf)],
        capture_output=True, timeout=60, env=env, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.returncode == 2
    assert MISSING_NOTE in proc.stderr.decode()


def test_loaders_refuse_mutated_images_with_one_message(tmp_path):
    """Byte-mutated bzImage, PVH and multiboot2 files: each is booted or refused with a
    MultibootError (the CLI's one line), never another exception or a runaway allocation."""
    import random

    from gdbemu.boot.linux import plan_linux
    from gdbemu.boot.multiboot2 import find_header2, plan_boot2
    from gdbemu.boot.pvh import plan_pvh

    rng = random.Random(11)
    bz = _build(build_entrydump, tmp_path / "bz", "bzimage").read_bytes()
    pvh = _build(build_entrydump, tmp_path / "pvh", "pvh").read_bytes()
    mb2 = _build(build_mb2check, tmp_path / "mb2", False).read_bytes()
    rsdp = (b"RSD PTR " + bytes(12), (0xFFF0000,))
    hot = {  # where the fields live: mutate there most
        "bz": list(range(0x1F1, 0x270)),
        "pvh": list(range(0, 0x100)),
        "mb2": [mb2.find(struct.pack("<I", 0xE85250D6)) + i for i in range(96)] + list(range(0, 0x40)),
    }
    outcomes = {"ok": 0, "refused": 0}
    for kind, image in (("bz", bz), ("pvh", pvh), ("mb2", mb2)):
        for _ in range(150):
            data = bytearray(image)
            for _ in range(rng.randint(1, 6)):
                at = rng.choice(hot[kind]) if rng.random() < 0.8 else rng.randrange(len(data))
                data[at] = rng.randrange(256) if rng.random() < 0.7 else rng.choice((0, 0xFF))
            try:
                if kind == "bz":
                    plan_linux(bytes(data), "x", b"initrd", RAM, firmware.RSDP_ADDR, True)
                elif kind == "pvh":
                    plan_pvh(bytes(data), "x", b"initrd", RAM, firmware.RSDP_ADDR)
                else:
                    header = find_header2(bytes(data))
                    if header is not None:
                        plan_boot2(bytes(data), header, "x", [], RAM, rsdp)
                outcomes["ok"] += 1
            except MultibootError as exc:
                assert str(exc) and "\n" not in str(exc)
                outcomes["refused"] += 1
    assert outcomes["ok"] and outcomes["refused"]


@pytest.mark.gdb
def test_real_gdb_on_the_pvh_path(tmp_path):
    """The ``gdb vmlinux`` workflow on a PVH ELF: gdbemu -S holds the guest at the note's entry,
    ``break`` on a symbol of the file hits, and gdb reads the PVH entry registers."""
    from gdbemu.testing import Session, find_gdb

    if find_gdb() is None:
        pytest.skip("gdb is not installed")
    elf = _build(build_entrydump, tmp_path, "pvh")
    with Session.boot(elf, append="console=ttyS0", memory=64, extra_args=["-nographic"]) as s:
        regs = s.registers()
        assert regs["eip"] == 0x100000 and regs["ebx"] == 0x10000  # the note's entry, start_info
        s.break_at("puts_ebx")
        stop = s.cont()
        assert stop.function == "puts_ebx", stop
        assert s.registers()["esp"] != 0
