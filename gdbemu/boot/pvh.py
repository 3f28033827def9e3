"""``-kernel vmlinux``: an uncompressed ELF entered through its PVH entry note, as QEMU does.

Theory of operation
-------------------
Xen's PVH direct boot ABI (xen/include/public/arch-x86/hvm/start_info.h, and
QEMU's ``load_elfboot`` + ``pvh.bin``): the ELF carries a note named "Xen" of
type 18 (``XEN_ELFNOTE_PHYS32_ENTRY``) whose descriptor is the *physical*
32-bit entry point (4 bytes in an ELF32; Linux writes it with ``_ASM_PTR``,
so 8 in an ELF64).  Notes are read from the PT_NOTE program headers.  The
PT_LOAD segments go at ``p_paddr`` (``elf.py``'s checks).  An ELF without
the note gets QEMU's one line: "Error loading uncompressed kernel without
PVH ELF Note".

The loader builds ``struct hvm_start_info`` (version 1, 56 bytes: magic
0x336ec578, version, flags, nr_modules, modlist_paddr, cmdline_paddr,
rsdp_paddr, memmap_paddr, memmap_entries) at 0x10000, the module list (one
``hvm_modlist_entry`` of 32 bytes for the initrd: paddr, size, cmdline 0),
the memory map (``hvm_memmap_table_entry``: addr, size, type, reserved: the
E820 map of ``firmware.py``), the command line at 0x20000, and places the
initrd at the top of usable RAM, page-aligned, as for a bzImage.

Entry state (start_info.h, "Machine state at entry"): EBX = the start_info
address, CR0 = PE|ET (paging off), CR4 = 0, CS a flat 32-bit execute/read
segment and DS/ES/SS flat read/write (selectors 0x08/0x10 of the firmware
GDT), EFLAGS with IF, VM and TF clear, the other registers 0.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import firmware
from .elf import ELFError, Image, parse_elf
from .multiboot import MultibootError, read_kernel, read_modules

if TYPE_CHECKING:
    from .board import BootMachine

XEN_ELFNOTE_PHYS32_ENTRY = 18
PT_NOTE = 4
START_INFO_MAGIC = 0x336EC578
START_INFO_ADDR = 0x10000
MODLIST_ADDR = 0x10040
MEMMAP_ADDR = 0x10080
CMDLINE_ADDR = 0x20000
MISSING_NOTE = "Error loading uncompressed kernel without PVH ELF Note"


class PVHError(MultibootError):
    """The ELF cannot be booted through PVH; the message is the one line to print."""


@dataclass
class PVHBootInfo:
    entry: int
    start_info: int
    kernel_low: int
    kernel_high: int
    initrd_addr: int = 0
    initrd_size: int = 0
    e820: list[tuple[int, int, int]] = field(default_factory=list)


def find_pvh_entry(data: Image) -> int | None:
    """The XEN_ELFNOTE_PHYS32_ENTRY descriptor of the ELF's PT_NOTE segments, or None."""
    if len(data) < 52 or bytes(data[:4]) != b"\x7fELF":
        return None
    is64 = data[4] == 2
    if is64:
        if len(data) < 64:
            return None
        phoff = struct.unpack_from("<Q", data, 32)[0]
        phentsize, phnum = struct.unpack_from("<HH", data, 54)
    else:
        phoff = struct.unpack_from("<I", data, 28)[0]
        phentsize, phnum = struct.unpack_from("<HH", data, 42)
    for i in range(phnum):
        base = phoff + i * phentsize
        if base + phentsize > len(data) or phentsize < (56 if is64 else 32):
            return None
        if is64:
            p_type, _flags, p_offset, _v, _p, p_filesz = struct.unpack_from("<IIQQQQ", data, base)
        else:
            p_type, p_offset, _v, _p, p_filesz = struct.unpack_from("<IIIII", data, base)
        if p_type != PT_NOTE or p_offset + p_filesz > len(data):
            continue
        pos, end = p_offset, p_offset + p_filesz
        while pos + 12 <= end:
            namesz, descsz, ntype = struct.unpack_from("<III", data, pos)
            name_at = pos + 12
            desc_at = name_at + ((namesz + 3) & ~3)
            nxt = desc_at + ((descsz + 3) & ~3)
            if nxt > end:
                break
            name = bytes(data[name_at : name_at + namesz]).rstrip(b"\0")
            if name == b"Xen" and ntype == XEN_ELFNOTE_PHYS32_ENTRY and descsz in (4, 8):
                value: int = struct.unpack_from("<I" if descsz == 4 else "<Q", data, desc_at)[0]
                return value & 0xFFFFFFFF
            pos = nxt
    return None


def plan_pvh(
    data: Image, append: str, initrd: bytes | None, ram_size: int, rsdp_addr: int
) -> tuple[list[tuple[int, bytes]], PVHBootInfo]:
    """Everything a PVH boot writes: ([(paddr, bytes)], info).  Pure."""
    entry = find_pvh_entry(data)
    if entry is None:
        raise PVHError(MISSING_NOTE)
    try:
        elf = parse_elf(data)
    except ELFError as exc:
        raise PVHError(str(exc)) from None
    ram_top = firmware.usable_ram_top(ram_size)
    if elf.high > ram_top:
        raise PVHError(
            f"kernel does not fit in {ram_size >> 20} MiB of RAM: it spans {elf.low:#x}-{elf.high:#x}, "
            f"usable RAM ends at {ram_top:#x}"
        )
    writes = [(seg.paddr, elf.segment_bytes(data, seg)) for seg in elf.segments]
    e820 = firmware.e820_map(ram_size)
    info = PVHBootInfo(entry, START_INFO_ADDR, elf.low, elf.high, e820=e820)
    nr_modules = 0
    if initrd is not None:
        addr = (ram_top - len(initrd)) & ~4095
        if addr < elf.high:
            raise PVHError(f"the initrd ({len(initrd)} bytes) does not fit in RAM above the kernel")
        writes.append((addr, initrd))
        writes.append((MODLIST_ADDR, struct.pack("<QQQQ", addr, len(initrd), 0, 0)))
        info.initrd_addr, info.initrd_size = addr, len(initrd)
        nr_modules = 1
    memmap = b"".join(struct.pack("<QQII", base, length, kind, 0) for base, length, kind in e820)
    writes.append((MEMMAP_ADDR, memmap))
    writes.append((CMDLINE_ADDR, append.encode("utf-8", "surrogateescape") + b"\0"))
    start_info = struct.pack(
        "<IIIIQQQQII",
        START_INFO_MAGIC,
        1,
        0,
        nr_modules,
        MODLIST_ADDR if nr_modules else 0,
        CMDLINE_ADDR,
        rsdp_addr,
        MEMMAP_ADDR,
        len(e820),
        0,
    )
    writes.append((START_INFO_ADDR, start_info))
    return writes, info


class _PVHBoot:
    """The on_reset hook that boots the vmlinux again."""

    def __init__(self, machine: BootMachine, writes: list[tuple[int, bytes]], info: PVHBootInfo) -> None:
        self.machine, self.writes, self.info = machine, writes, info

    def __call__(self) -> None:
        from ..core.cpu import EBX, ESP
        from .multiboot import ENTRY_ESP, set_entry_state

        machine = self.machine
        firmware.install_firmware(machine)
        for paddr, body in self.writes:
            machine.mem.write(paddr, body)
        cpu = machine.cpus[0]
        set_entry_state(cpu, self.info.entry, 0)
        cpu.regs[:] = [0] * 8
        cpu.regs[EBX] = self.info.start_info
        cpu.regs[ESP] = ENTRY_ESP  # undefined by the ABI; low RAM as for multiboot
        cpu.cr[4] = 0
        cpu.compute_hflags()
        for other in machine.cpus[1:]:
            other.halted = True


def boot_pvh(machine: BootMachine, path: str, append: str = "", initrd: str | None = None) -> PVHBootInfo:
    """Boot the ELF at ``path`` through its PVH note (module docstring)."""
    from .linux import replace_boot_hook

    data = read_kernel(path)
    try:
        mods = read_modules(initrd, machine.mem.ram_size) if initrd else []
        ramdisk = b"".join(body for _n, body in mods) if mods else None
        writes, info = plan_pvh(data, append, ramdisk, machine.mem.ram_size, firmware.RSDP_ADDR)
    finally:
        if isinstance(data, mmap.mmap):
            data.close()
    boot = _PVHBoot(machine, writes, info)
    boot()
    replace_boot_hook(machine, boot)
    return info


__all__ = ["MISSING_NOTE", "PVHBootInfo", "PVHError", "boot_pvh", "find_pvh_entry", "plan_pvh"]
