"""The Linux x86 boot protocol (``-kernel bzImage -append ... -initrd ...``), and the ``-kernel`` dispatch.

Theory of operation
-------------------
``boot_kernel`` decides what ``-kernel FILE`` is, in QEMU's order
(``hw/i386/x86-common.c: x86_load_linux``): "HdrS" at 0x202 is a Linux
bzImage; otherwise a multiboot v1 header makes it a multiboot kernel;
otherwise (gdbemu only: QEMU needs GRUB for it) a multiboot2 header; otherwise
an ELF must carry the PVH entry note (``pvh.py``), and an ELF without one is
refused with QEMU's line, "Error loading uncompressed kernel without PVH ELF
Note".

A bzImage is booted through the **32-bit boot protocol**
(Documentation/arch/x86/boot.rst, "32-bit Boot Protocol"), as Firecracker and
cloud-hypervisor do: no BIOS runs, so gdbemu fills what the real-mode setup
code would have found or probed:

* the setup header (boot.rst, "The Real-Mode Kernel Header"): offset 0x1F1
  up to ``0x202 + byte[0x201]``, copied into a zeroed ``boot_params`` (the
  "zero page"); protocol 2.06 or later is required (the first with
  ``cmdline_size`` and the 32-bit protocol's documented state);
* the fields a loader writes, with QEMU's values: ``type_of_loader`` 0xB0
  (QEMU's id), ``loadflags`` |= CAN_USE_HEAP, ``heap_end_ptr`` =
  cmdline - real-mode base - 0x200 = 0xFE00, ``cmd_line_ptr`` 0x20000 (QEMU's
  ``cmdline_addr`` for protocol >= 2.02), ``ramdisk_image``/``ramdisk_size``
  (the initrd at the top of low RAM below ``initrd_addr_max``, page-aligned
  down: ``(initrd_max - size) & ~4095``, QEMU's formula, with the reserved
  ACPI zone at the top of RAM excluded), ``vid_mode`` 0xFFFF (NORMAL_VGA);
* what setup would have probed: the E820 table (``e820_table``/
  ``e820_entries``, the map of ``firmware.py``), ``alt_mem_k`` and
  ``ext_mem_k``, the ``screen_info`` of 80x25 colour text with a VGA (mode 3,
  isVGA, 16-line font, EGA BX 0x0003) as Linux's setup code records it on
  QEMU, even with -nographic, where the VGA card still exists;
  ``acpi_rsdp_addr`` for protocol 2.14+ (the firmware's RSDP).

boot_params goes at 0x10000 (QEMU's real-mode base), the command line at
0x20000, the protected-mode kernel at 0x100000 (``code32_start``).  Entry
(boot.rst): CS = __BOOT_CS 0x10 and DS/ES/SS = __BOOT_DS 0x18, flat 4 GiB,
from a GDT written in the BIOS area (0xFF800), CR0 = PE|ET (paging off),
interrupts off, ESI = boot_params, EBX = EBP = EDI = 0, EIP = code32_start.
"""

from __future__ import annotations

import dataclasses
import mmap
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import firmware
from .elf import Image
from .multiboot import MultibootError, read_kernel, read_modules

if TYPE_CHECKING:
    from .board import BootMachine

HDRS = 0x53726448  # "HdrS"
MIN_PROTOCOL = 0x206
BOOT_PARAMS_ADDR = 0x10000
CMDLINE_ADDR = 0x20000
PROT_ADDR = 0x100000
LINUX_GDT_ADDR = 0xFF800
BOOT_CS = 0x10
BOOT_DS = 0x18
ENTRY_ESP = 0x7000
TYPE_OF_LOADER = 0xB0  # QEMU's loader id
LOADED_HIGH = 0x01
CAN_USE_HEAP = 0x80
E820_MAX = 128

# boot_params offsets (arch/x86/include/uapi/asm/bootparam.h)
BP_SCREEN_INFO = 0x000
BP_ACPI_RSDP = 0x070
BP_ALT_MEM_K = 0x1E0
BP_E820_ENTRIES = 0x1E8
BP_HDR = 0x1F1
BP_E820_TABLE = 0x2D0
# setup header offsets (from the start of the zero page / the file)
HDR_SETUP_SECTS = 0x1F1
HDR_VID_MODE = 0x1FA
HDR_BOOT_FLAG = 0x1FE
HDR_HEADER = 0x202
HDR_VERSION = 0x206
HDR_TYPE_OF_LOADER = 0x210
HDR_LOADFLAGS = 0x211
HDR_CODE32_START = 0x214
HDR_RAMDISK_IMAGE = 0x218
HDR_RAMDISK_SIZE = 0x21C
HDR_HEAP_END_PTR = 0x224
HDR_CMD_LINE_PTR = 0x228
HDR_INITRD_ADDR_MAX = 0x22C
HDR_CMDLINE_SIZE = 0x238

# The Linux boot GDT: null, null, __BOOT_CS (0x10), __BOOT_DS (0x18), flat 4 GiB.
LINUX_GDT = bytes.fromhex("00000000000000000000000000000000ffff0000009bcf00ffff00000093cf00")


class LinuxBootError(MultibootError):
    """The bzImage cannot be booted; the message is the one line to print."""


@dataclass
class LinuxBootInfo:
    protocol: int
    entry: int
    boot_params: int
    cmdline_addr: int
    kernel_size: int
    initrd_addr: int = 0
    initrd_size: int = 0


def is_bzimage(data: Image) -> bool:
    return len(data) >= 0x210 and struct.unpack_from("<I", data, HDR_HEADER)[0] == HDRS


def screen_info(vga: bool) -> bytes:
    """The 64-byte screen_info Linux's setup code leaves on QEMU's VGA (80x25 colour text)."""
    si = bytearray(64)
    if vga:
        si[0x06] = 3  # orig_video_mode
        si[0x07] = 80  # orig_video_cols
        struct.pack_into("<H", si, 0x0A, 0x0003)  # orig_video_ega_bx: colour, 256 KiB
        si[0x0E] = 25  # orig_video_lines
        si[0x0F] = 0x22  # orig_video_isVGA: VIDEO_TYPE_VGAC
        struct.pack_into("<H", si, 0x10, 16)  # orig_video_points
    return bytes(si)


def plan_linux(
    data: Image, append: str, initrd: bytes | None, ram_size: int, rsdp_addr: int, vga: bool
) -> tuple[list[tuple[int, bytes]], LinuxBootInfo]:
    """Everything a bzImage boot writes: ([(paddr, bytes)], info).  Pure."""
    if not is_bzimage(data):
        raise LinuxBootError("not a Linux bzImage (no HdrS signature at offset 0x202)")
    protocol = struct.unpack_from("<H", data, HDR_VERSION)[0]
    if protocol < MIN_PROTOCOL:
        raise LinuxBootError(
            f"Linux boot protocol {protocol >> 8}.{protocol & 0xFF:02d} is older than 2.06, which gdbemu needs"
        )
    loadflags = data[HDR_LOADFLAGS]
    if not loadflags & LOADED_HIGH:
        raise LinuxBootError("this is a zImage (loadflags LOADED_HIGH clear): only bzImages are supported")
    setup_sects = data[HDR_SETUP_SECTS] or 4
    setup_size = (setup_sects + 1) * 512
    if setup_size >= len(data):
        raise LinuxBootError(f"setup_sects {setup_sects} puts the kernel past the end of the file")
    hdr_end = 0x202 + data[0x201]
    if hdr_end > setup_size:
        raise LinuxBootError("the setup header runs past the setup code")
    kernel = bytes(data[setup_size:])
    ram_top = firmware.usable_ram_top(ram_size)
    if PROT_ADDR + len(kernel) > ram_top:
        raise LinuxBootError(f"the kernel ({len(kernel)} bytes) does not fit in {ram_size >> 20} MiB of RAM")
    cmdline_size = struct.unpack_from("<I", data, HDR_CMDLINE_SIZE)[0]
    cmd = append.encode("utf-8", "surrogateescape")
    if len(cmd) > cmdline_size:
        raise LinuxBootError(f"the command line is {len(cmd)} bytes; this kernel takes at most {cmdline_size}")

    bp = bytearray(4096)
    bp[BP_HDR:hdr_end] = bytes(data[BP_HDR:hdr_end])
    bp[BP_SCREEN_INFO : BP_SCREEN_INFO + 64] = screen_info(vga)
    ext_kib = (ram_top - 0x100000) // 1024
    struct.pack_into("<H", bp, 0x02, min(ext_kib, 0xFC00))  # screen_info.ext_mem_k (INT 15h AH=88h)
    struct.pack_into("<I", bp, BP_ALT_MEM_K, ext_kib)
    e820 = firmware.e820_map(ram_size)
    bp[BP_E820_ENTRIES] = len(e820)
    for i, (base, length, kind) in enumerate(e820[:E820_MAX]):
        struct.pack_into("<QQI", bp, BP_E820_TABLE + 20 * i, base, length, kind)
    if protocol >= 0x20E:
        struct.pack_into("<Q", bp, BP_ACPI_RSDP, rsdp_addr)
    struct.pack_into("<H", bp, HDR_VID_MODE, 0xFFFF)
    bp[HDR_TYPE_OF_LOADER] = TYPE_OF_LOADER
    bp[HDR_LOADFLAGS] = loadflags | CAN_USE_HEAP
    struct.pack_into("<I", bp, HDR_CODE32_START, PROT_ADDR)
    struct.pack_into("<H", bp, HDR_HEAP_END_PTR, CMDLINE_ADDR - BOOT_PARAMS_ADDR - 0x200)
    struct.pack_into("<I", bp, HDR_CMD_LINE_PTR, CMDLINE_ADDR)
    info = LinuxBootInfo(protocol, PROT_ADDR, BOOT_PARAMS_ADDR, CMDLINE_ADDR, len(kernel))
    writes: list[tuple[int, bytes]] = [(PROT_ADDR, kernel), (CMDLINE_ADDR, cmd + b"\0")]
    if initrd is not None:
        initrd_max = struct.unpack_from("<I", data, HDR_INITRD_ADDR_MAX)[0]
        initrd_max = min(initrd_max, ram_top - 1)
        addr = (initrd_max - len(initrd)) & ~4095
        if addr < PROT_ADDR + len(kernel):
            raise LinuxBootError(f"the initrd ({len(initrd)} bytes) does not fit in RAM above the kernel")
        struct.pack_into("<II", bp, HDR_RAMDISK_IMAGE, addr, len(initrd))
        writes.append((addr, initrd))
        info.initrd_addr, info.initrd_size = addr, len(initrd)
    writes.append((BOOT_PARAMS_ADDR, bytes(bp)))
    return writes, info


def set_linux_entry_state(machine: BootMachine, info: LinuxBootInfo) -> None:
    """boot.rst's 32-bit entry state."""
    from ..core.cpu import CR0_ET, CR0_PE, CS, DS, ES, ESI, ESP, FS, GS, SS

    cpu = machine.cpus[0]
    machine.mem.write(LINUX_GDT_ADDR, LINUX_GDT)
    cpu.setup_flat32()
    cpu.segs[CS] = dataclasses.replace(cpu.segs[CS], selector=BOOT_CS)
    for seg in (DS, ES, FS, GS, SS):
        cpu.segs[seg] = dataclasses.replace(cpu.segs[seg], selector=BOOT_DS)
    cpu.cr[0] = CR0_PE | CR0_ET
    cpu.gdtr_base = LINUX_GDT_ADDR
    cpu.gdtr_limit = len(LINUX_GDT) - 1
    cpu.idtr_base = 0
    cpu.idtr_limit = 0x3FF
    cpu.regs[:] = [0] * 8
    cpu.regs[ESI] = info.boot_params
    cpu.regs[ESP] = ENTRY_ESP
    cpu.eip = info.entry
    cpu.halted = False
    cpu.compute_hflags()
    for other in machine.cpus[1:]:
        other.halted = True


class _LinuxBoot:
    """The on_reset hook that boots the bzImage again."""

    def __init__(self, machine: BootMachine, writes: list[tuple[int, bytes]], info: LinuxBootInfo) -> None:
        self.machine, self.writes, self.info = machine, writes, info

    def __call__(self) -> None:
        firmware.install_firmware(self.machine)
        for paddr, body in self.writes:
            self.machine.mem.write(paddr, body)
        set_linux_entry_state(self.machine, self.info)


def _read_initrd(initrd: str | None, ram_size: int) -> bytes | None:
    if not initrd:
        return None
    mods = read_modules(initrd, ram_size)
    return b"".join(body for _name, body in mods)


def replace_boot_hook(machine: BootMachine, hook: object) -> None:
    """Make ``hook`` the one kernel-booting on_reset hook (the loaders' hooks are replaced, not stacked)."""
    from .multiboot import _MultibootBoot
    from .multiboot2 import _Multiboot2Boot
    from .pvh import _PVHBoot

    kinds = (_MultibootBoot, _Multiboot2Boot, _LinuxBoot, _PVHBoot)
    machine.on_reset[:] = [h for h in machine.on_reset if not isinstance(h, kinds)]
    machine.on_reset.append(hook)  # type: ignore[arg-type]


def boot_linux(machine: BootMachine, path: str, append: str = "", initrd: str | None = None) -> LinuxBootInfo:
    """Boot the bzImage at ``path`` (module docstring)."""
    data = read_kernel(path)
    try:
        ramdisk = _read_initrd(initrd, machine.mem.ram_size)
        vga = bool(getattr(machine.bus.config, "vga", True))
        writes, info = plan_linux(data, append, ramdisk, machine.mem.ram_size, firmware.RSDP_ADDR, vga)
    finally:
        if isinstance(data, mmap.mmap):
            data.close()
    boot = _LinuxBoot(machine, writes, info)
    boot()
    replace_boot_hook(machine, boot)
    return info


def kernel_kind(path: str) -> str:
    """What ``-kernel path`` is: "linux", "multiboot", "multiboot2", "pvh" (QEMU's order; module docstring).

    Raises MultibootError with QEMU's line for an ELF that is none of these.
    """
    from .multiboot import HEADER_MAGIC, SEARCH_BYTES
    from .multiboot2 import find_header2
    from .pvh import find_pvh_entry

    data = read_kernel(path)
    try:
        if is_bzimage(data):
            return "linux"
        head = bytes(data[:SEARCH_BYTES])
        for off in range(0, max(len(head) - 11, 0), 4):
            magic, flags, checksum = struct.unpack_from("<III", head, off)
            if magic == HEADER_MAGIC and not (magic + flags + checksum) & 0xFFFFFFFF:
                return "multiboot"  # QEMU's test: the magic with a valid checksum
        if find_header2(data) is not None:
            return "multiboot2"
        if bytes(data[:4]) == b"\x7fELF" and find_pvh_entry(data) is not None:
            return "pvh"
        if bytes(data[:4]) == b"\x7fELF" and HEADER_MAGIC.to_bytes(4, "little") not in head:
            return "pvh"  # pvh.py says the note is missing, with QEMU's line
        return "multiboot"  # the multiboot loader names what is missing (a bad header, no header)
    finally:
        if isinstance(data, mmap.mmap):
            data.close()


def boot_kernel(
    machine: BootMachine, path: str, append: str = "", initrd: str | None = None, kernel_name: str | None = None
) -> object:
    """``-kernel path``: dispatch on the file's kind (module docstring); returns the loader's info."""
    kind = kernel_kind(path)
    if kind == "linux":
        return boot_linux(machine, path, append, initrd)
    if kind == "multiboot2":
        from .multiboot2 import boot_multiboot2

        return boot_multiboot2(machine, path, append, initrd)
    if kind == "pvh":
        from .pvh import boot_pvh

        return boot_pvh(machine, path, append, initrd)
    from .multiboot import boot_multiboot

    return boot_multiboot(machine, path, append, initrd, kernel_name)


__all__ = ["LinuxBootError", "LinuxBootInfo", "boot_kernel", "boot_linux", "is_bzimage", "kernel_kind", "plan_linux"]
