"""Multiboot2 loading: ``-kernel`` of an ELF32/ELF64 (or an image with an address tag) with a multiboot2 header.

Theory of operation
-------------------
The Multiboot2 Specification (version 2.0, GRUB's ``multiboot2.h`` for the
field widths) defines:

1. **The header** (section 3.1): 8-byte aligned, wholly inside the first
   32768 bytes: ``magic`` 0xE85250D6, ``architecture`` (0: 32-bit protected
   mode i386), ``header_length``, ``checksum`` (the four add up to 0 mod
   2**32), then tags, each 8-byte aligned (u16 type, u16 flags, u32 size),
   ending with type 0 / size 8.  Flags bit 0 of a tag is "optional": a
   boot loader that does not understand a tag without it must refuse the
   image.  Understood here: 1 information request (each requested type
   must be one we give, unless the tag is optional), 2 address (the a.out
   style load: ``header_addr``, ``load_addr``, ``load_end_addr`` (0: to the
   end of the file), ``bss_end_addr`` (0: none)), 3 entry address, 4
   console flags, 5 framebuffer (we give EGA text whatever it asks: there
   is no graphics mode without a BIOS), 6 module alignment (modules are
   page-aligned anyway), 7/8/9 EFI (ignored: this is a BIOS boot), 10
   relocatable (we load at the linked address, which the spec allows).
   Without an address tag the file must be an ELF (ELF32 or ELF64): its
   PT_LOAD segments go at ``p_paddr``; the entry is the entry tag's address,
   else ``e_entry`` translated as for multiboot v1 (``elf.py``).  The entry
   is 32-bit code even in an ELF64 file, so it must be below 4 GiB.

2. **The information structure** (section 3.6): ``total_size``, reserved,
   then tags, 8-byte aligned, ending with type 0: 1 command line (the
   ``-append`` text alone, as GRUB passes it: no kernel path), 2 boot
   loader name ("gdbemu"), 3 one per module (start, end, the whole
   "path args" string of the ``-initrd`` item), 4 basic memory information
   (639 KiB lower, upper up to the first hole), 5 BIOS boot device
   (0x80, no partition), 6 memory map (entry_size 24, version 0, the E820
   map of ``firmware.py``), 8 framebuffer info (EGA text 80x25 at 0xB8000,
   pitch 160, 16 bpp, type 2), 9 ELF sections (GRUB's layout: u32 num,
   entsize, shndx, then the section headers; sections that are not loaded
   -- symbol and string tables -- are copied after the modules and their
   ``sh_addr`` set to the copy, as GRUB does), 14 the ACPI 1.0 RSDP copy,
   15 an ACPI 2.0 RSDP copy (revision 2, with an XSDT listing the RSDT's
   tables, built in the information area), 21 the load base address.
   Where: after the kernel's page-aligned end come the modules (each
   page-aligned), the loaded ELF sections, the XSDT, then the information
   structure.

3. **The machine state** (section 3.3): EAX = 0x36D76289, EBX = the
   structure's physical address, flat 32-bit CS (0x08) and data segments
   (0x10) of ``firmware.BOOT_GDT``, CR0 = PE|ET (paging off), EFLAGS IF/VM
   clear, ESP as the v1 loader leaves it.

A file with a multiboot v1 header is booted as v1 (QEMU's choice); this
loader is asked only when there is none.  The file is untrusted: every
field is checked against the file or RAM before anything is copied.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import firmware
from .elf import EM_X86_64, ELFError, Image, parse_elf
from .multiboot import BOOTLOADER_NAME, MultibootError, read_kernel, read_modules, set_entry_state

if TYPE_CHECKING:
    from .board import BootMachine

HEADER_MAGIC = 0xE85250D6
BOOTLOADER_MAGIC = 0x36D76289
SEARCH_BYTES = 32768
PAGE = 4096

TAG_END = 0
TAG_INFO_REQUEST = 1
TAG_ADDRESS = 2
TAG_ENTRY = 3
TAG_CONSOLE = 4
TAG_FRAMEBUFFER = 5
TAG_MODULE_ALIGN = 6
TAG_EFI_BS = 7
TAG_ENTRY_EFI32 = 8
TAG_ENTRY_EFI64 = 9
TAG_RELOCATABLE = 10
KNOWN_HEADER_TAGS = frozenset(range(0, 11))
OPTIONAL = 1

MBI_CMDLINE = 1
MBI_LOADER_NAME = 2
MBI_MODULE = 3
MBI_BASIC_MEMINFO = 4
MBI_BOOTDEV = 5
MBI_MMAP = 6
MBI_FRAMEBUFFER = 8
MBI_ELF_SECTIONS = 9
MBI_ACPI_OLD = 14
MBI_ACPI_NEW = 15
MBI_LOAD_BASE = 21
PROVIDED = frozenset(
    {
        MBI_CMDLINE,
        MBI_LOADER_NAME,
        MBI_MODULE,
        MBI_BASIC_MEMINFO,
        MBI_BOOTDEV,
        MBI_MMAP,
        MBI_FRAMEBUFFER,
        MBI_ELF_SECTIONS,
        MBI_ACPI_OLD,
        MBI_ACPI_NEW,
        MBI_LOAD_BASE,
    }
)

EGA_TEXT = (0xB8000, 160, 80, 25, 16, 2)  # addr, pitch, width, height, bpp, type (EGA text)
SHT_NOBITS = 8
SHF_ALLOC = 2


@dataclass(frozen=True)
class Header2:
    offset: int
    length: int
    requests: tuple[tuple[int, bool], ...] = ()  # (type, optional)
    address: tuple[int, int, int, int] | None = None  # header_addr, load_addr, load_end_addr, bss_end_addr
    entry: int | None = None


@dataclass
class BootInfo2:
    entry: int
    mbi_addr: int
    kernel_low: int
    kernel_high: int
    cmdline: str
    modules: list[tuple[int, int, str]] = field(default_factory=list)
    e820: list[tuple[int, int, int]] = field(default_factory=list)
    tags: dict[int, int] = field(default_factory=dict)  # info tag type -> address of its first instance


def find_header2(data: Image) -> Header2 | None:
    """The multiboot2 header in the first 32 KiB, parsed and checked; None when there is no magic."""
    limit = min(len(data), SEARCH_BYTES) - 16
    for off in range(0, limit + 1, 8):
        if struct.unpack_from("<I", data, off)[0] != HEADER_MAGIC:
            continue
        arch, length, checksum = struct.unpack_from("<III", data, off + 4)
        if (HEADER_MAGIC + arch + length + checksum) & 0xFFFFFFFF:
            raise MultibootError(
                f"multiboot2 header at offset {off:#x} has a bad checksum "
                "(magic + architecture + header_length + checksum must be 0 mod 2**32)"
            )
        if arch != 0:
            raise MultibootError(f"multiboot2 header at offset {off:#x}: architecture {arch} is not 0 (i386)")
        if length < 24 or off + length > len(data) or length > SEARCH_BYTES:
            raise MultibootError(f"multiboot2 header at offset {off:#x}: header_length {length} is out of range")
        return _parse_tags(data, off, length)
    return None


def _parse_tags(data: Image, off: int, length: int) -> Header2:
    pos, end = off + 16, off + length
    requests: list[tuple[int, bool]] = []
    address = None
    entry = None
    while True:
        if pos + 8 > end:
            raise MultibootError(f"multiboot2 header at offset {off:#x}: the tags run past header_length (no end tag)")
        ttype, flags, size = struct.unpack_from("<HHI", data, pos)
        if ttype == TAG_END:
            break
        if size < 8 or pos + size > end:
            raise MultibootError(f"multiboot2 header tag {ttype} at offset {pos:#x}: size {size} is out of range")
        optional = bool(flags & OPTIONAL)
        if ttype == TAG_INFO_REQUEST:
            for i in range((size - 8) // 4):
                requests.append((struct.unpack_from("<I", data, pos + 8 + 4 * i)[0], optional))
        elif ttype == TAG_ADDRESS:
            if size < 24:
                raise MultibootError("multiboot2 address tag is shorter than 24 bytes")
            address = struct.unpack_from("<IIII", data, pos + 8)
        elif ttype == TAG_ENTRY:
            if size < 12:
                raise MultibootError("multiboot2 entry address tag is shorter than 12 bytes")
            entry = struct.unpack_from("<I", data, pos + 8)[0]
        elif ttype not in KNOWN_HEADER_TAGS and not optional:
            raise MultibootError(f"multiboot2 header tag type {ttype} is unknown and not marked optional")
        pos += (size + 7) & ~7
    for req, optional in requests:
        if req not in PROVIDED and not optional:
            raise MultibootError(
                f"the multiboot2 header requires information tag type {req}, which gdbemu does not provide "
                f"(it gives {', '.join(str(t) for t in sorted(PROVIDED))})"
            )
    return Header2(off, length, tuple(requests), address, entry)


def _page_align(n: int) -> int:
    return (n + PAGE - 1) & ~(PAGE - 1)


def _tag(ttype: int, body: bytes) -> bytes:
    out = struct.pack("<II", ttype, 8 + len(body)) + body
    return out + bytes(-len(out) % 8)


@dataclass
class _Kernel:
    writes: list[tuple[int, bytes]]
    entry: int
    low: int
    high: int
    sections: tuple[int, int, int, bytes] | None  # (num, entsize, shndx, raw section headers)


def _load_address_tag(data: Image, h: Header2, ram_top: int) -> _Kernel:
    assert h.address is not None
    header_addr, load_addr, load_end_addr, bss_end_addr = h.address
    if header_addr < load_addr or header_addr - load_addr > h.offset:
        raise MultibootError(
            f"multiboot2 address tag inconsistent: header_addr {header_addr:#x}, load_addr {load_addr:#x}, "
            f"header at file offset {h.offset:#x}"
        )
    text_offset = h.offset - (header_addr - load_addr)
    if load_end_addr:
        if load_end_addr < load_addr or text_offset + load_end_addr - load_addr > len(data):
            raise MultibootError(f"multiboot2 address tag: load_end_addr {load_end_addr:#x} is out of range")
        size = load_end_addr - load_addr
    else:
        size = len(data) - text_offset
    high = load_addr + size
    if bss_end_addr:
        if bss_end_addr < high:
            raise MultibootError(f"multiboot2 address tag: bss_end_addr {bss_end_addr:#x} is below the image's end")
        high = bss_end_addr
    if high > 1 << 32:
        raise MultibootError("multiboot2 address tag: the image does not fit in the 32-bit address space")
    if high > ram_top:  # checked before anything is allocated: a header may claim gigabytes
        raise MultibootError(
            f"kernel does not fit in RAM: it spans {load_addr:#x}-{high:#x}, usable RAM ends at {ram_top:#x}"
        )
    if h.entry is None:
        raise MultibootError("multiboot2 header has an address tag but no entry address tag")
    body = bytes(data[text_offset : text_offset + size])
    return _Kernel([(load_addr, body + bytes(high - load_addr - len(body)))], h.entry, load_addr, high, None)


def _load_elf(data: Image, h: Header2, ram_top: int) -> _Kernel:
    if bytes(data[:4]) != b"\x7fELF":
        raise MultibootError(
            "multiboot2 header without an address tag and the file is not an ELF: the loader cannot tell "
            "where to load it"
        )
    try:
        elf = parse_elf(data)
    except ELFError as exc:
        raise MultibootError(str(exc)) from None
    if elf.high > ram_top:
        raise MultibootError(
            f"kernel does not fit in RAM: it spans {elf.low:#x}-{elf.high:#x}, and usable RAM ends at {ram_top:#x}"
        )
    entry = h.entry if h.entry is not None else elf.entry
    if entry >= 1 << 32:
        what = "an x86-64 ELF" if elf.machine == EM_X86_64 else "an ELF"
        raise MultibootError(
            f"entry point {entry:#x} is above 4 GiB: multiboot2 enters 32-bit code with paging off, even in {what} "
            "(give an entry address tag or a low entry)"
        )
    writes = [(seg.paddr, elf.segment_bytes(data, seg)) for seg in elf.segments]
    return _Kernel(writes, entry, elf.low, elf.high, _section_headers(data, elf.bits))


def _section_headers(data: Image, bits: int) -> tuple[int, int, int, bytes] | None:
    """(num, entsize, shndx, raw headers) of the ELF's section header table, or None when it has none/is bad."""
    if bits == 32:
        shoff = struct.unpack_from("<I", data, 32)[0]
        entsize, num, shndx = struct.unpack_from("<HHH", data, 46)
        want = 40
    else:
        shoff = struct.unpack_from("<Q", data, 40)[0]
        entsize, num, shndx = struct.unpack_from("<HHH", data, 58)
        want = 64
    if not num or entsize != want or shoff + num * entsize > len(data):
        return None
    return num, entsize, shndx, bytes(data[shoff : shoff + num * entsize])


def _unloaded_sections(
    data: Image, sections: tuple[int, int, int, bytes], at: int, ram_top: int
) -> tuple[bytes, bytes]:
    """GRUB's treatment of sections with no address: copy them from ``at`` on, patch sh_addr.

    Returns (new section headers, the bytes to write at ``at``).  Refused as soon as the copies
    would pass ``ram_top`` (before they are made: 65535 headers could ask for gigabytes).
    """
    num, entsize, _shndx, raw = sections
    headers = bytearray(raw)
    blob = bytearray()
    is64 = entsize == 64
    for i in range(num):
        base = i * entsize
        if is64:
            sh_type, sh_flags, sh_addr, sh_offset, sh_size = struct.unpack_from("<IQQQQ", headers, base + 4)
        else:
            sh_type, sh_flags, sh_addr, sh_offset, sh_size = struct.unpack_from("<IIIII", headers, base + 4)
        if i == 0 or sh_addr or sh_flags & SHF_ALLOC or sh_type == SHT_NOBITS or not sh_size:
            continue
        if sh_offset + sh_size > len(data):
            continue
        if at + len(blob) + PAGE + sh_size > ram_top:
            raise MultibootError(
                f"the ELF's unloaded sections (symbol and string tables) do not fit in RAM below {ram_top:#x}"
            )
        blob += bytes(-len(blob) % PAGE)
        where = at + len(blob)
        blob += bytes(data[sh_offset : sh_offset + sh_size])
        if is64:
            struct.pack_into("<Q", headers, base + 16, where)
        else:
            struct.pack_into("<I", headers, base + 12, where)
    return bytes(headers), bytes(blob)


def plan_boot2(
    data: Image,
    header: Header2,
    append: str,
    modules: list[tuple[str, bytes]],
    ram_size: int,
    rsdp: tuple[bytes, tuple[int, ...]],
) -> tuple[list[tuple[int, bytes]], BootInfo2]:
    """Everything a multiboot2 boot writes: ([(paddr, bytes)], info).

    ``rsdp`` is (the firmware's ACPI 1.0 RSDP, the addresses of the tables its RSDT lists).
    """
    ram_top = firmware.usable_ram_top(ram_size)
    kernel = _load_address_tag(data, header, ram_top) if header.address else _load_elf(data, header, ram_top)
    if kernel.high > ram_top:
        raise MultibootError(
            f"kernel does not fit in RAM: it spans {kernel.low:#x}-{kernel.high:#x}, usable RAM ends at {ram_top:#x}"
        )
    writes = list(kernel.writes)
    cursor = _page_align(kernel.high)
    mods = []
    for mod_cmdline, body in modules:
        mods.append((cursor, cursor + len(body), mod_cmdline))
        writes.append((cursor, body))
        cursor = _page_align(cursor + len(body))
    e820 = firmware.e820_map(ram_size)
    tags = bytearray()
    offsets: dict[int, int] = {}

    def add(ttype: int, body: bytes) -> None:
        offsets.setdefault(ttype, 8 + len(tags))
        tags.extend(_tag(ttype, body))

    add(MBI_CMDLINE, append.encode("utf-8", "surrogateescape") + b"\0")
    add(MBI_LOADER_NAME, BOOTLOADER_NAME.encode() + b"\0")
    for start, end, text in mods:
        add(MBI_MODULE, struct.pack("<II", start, end) + text.encode("utf-8", "surrogateescape") + b"\0")
    from .multiboot import upper_memory_kib

    add(MBI_BASIC_MEMINFO, struct.pack("<II", firmware.BASE_MEMORY_KIB, upper_memory_kib(e820)))
    add(MBI_BOOTDEV, struct.pack("<III", 0x80, 0xFFFFFFFF, 0xFFFFFFFF))
    add(MBI_MMAP, struct.pack("<II", 24, 0) + b"".join(struct.pack("<QQII", b, n, t, 0) for b, n, t in e820))
    addr, pitch, width, height, bpp, fbtype = EGA_TEXT
    add(MBI_FRAMEBUFFER, struct.pack("<QIIIBBH", addr, pitch, width, height, bpp, fbtype, 0))
    if kernel.sections is not None:
        headers, blob = _unloaded_sections(data, kernel.sections, cursor, ram_top)
        if blob:
            writes.append((cursor, blob))
            cursor = _page_align(cursor + len(blob))
        num, entsize, shndx, _raw = kernel.sections
        add(MBI_ELF_SECTIONS, struct.pack("<III", num, entsize, shndx) + headers)
    rsdp_v1, acpi_tables = rsdp
    add(MBI_ACPI_OLD, rsdp_v1)
    # ACPI 2.0 RSDP: the v1 fields with revision 2, then length, XSDT address, extended checksum.
    xsdt_addr = cursor
    xsdt = firmware.acpi_table(b"XSDT", 1, b"".join(struct.pack("<Q", t) for t in acpi_tables))
    writes.append((xsdt_addr, xsdt))
    cursor = (cursor + len(xsdt) + 7) & ~7
    v2 = bytearray(rsdp_v1[:15] + b"\x02" + rsdp_v1[16:20] + struct.pack("<IQ4x", 36, xsdt_addr))
    v2[8] = 0
    v2[8] = firmware.checksum8(bytes(v2[:20]))
    v2[32] = firmware.checksum8(bytes(v2))
    add(MBI_ACPI_NEW, bytes(v2))
    add(MBI_LOAD_BASE, struct.pack("<I", kernel.low))
    tags += struct.pack("<II", TAG_END, 8)
    mbi = struct.pack("<II", 8 + len(tags), 0) + bytes(tags)
    mbi_addr = cursor
    if mbi_addr + len(mbi) > ram_top:
        raise MultibootError(
            f"kernel does not fit in {ram_size >> 20} MiB of RAM with its modules and boot information "
            f"(they end at {mbi_addr + len(mbi):#x}, usable RAM at {ram_top:#x})"
        )
    writes.append((mbi_addr, mbi))
    info = BootInfo2(
        entry=kernel.entry,
        mbi_addr=mbi_addr,
        kernel_low=kernel.low,
        kernel_high=kernel.high,
        cmdline=append,
        modules=mods,
        e820=e820,
        tags={t: mbi_addr + o for t, o in offsets.items()},
    )
    return writes, info


class _Multiboot2Boot:
    """The on_reset hook that boots the kernel again."""

    def __init__(self, machine: BootMachine, writes: list[tuple[int, bytes]], info: BootInfo2) -> None:
        self.machine, self.writes, self.info = machine, writes, info

    def __call__(self) -> None:
        machine = self.machine
        firmware.install_firmware(machine)
        for paddr, body in self.writes:
            machine.mem.write(paddr, body)
        cpu = machine.cpus[0]
        set_entry_state(cpu, self.info.entry, self.info.mbi_addr)
        from ..core.cpu import EAX

        cpu.regs[EAX] = BOOTLOADER_MAGIC
        for other in machine.cpus[1:]:
            other.halted = True


def boot_multiboot2(machine: BootMachine, path: str, append: str = "", initrd: str | None = None) -> BootInfo2:
    """Boot ``path`` (which has a multiboot2 header) as ``-kernel path -append append -initrd initrd``."""
    data = read_kernel(path)
    try:
        header = find_header2(data)
        if header is None:
            raise MultibootError("no multiboot2 header in the first 32 KiB (magic 0xE85250D6 at an 8-byte offset)")
        modules = read_modules(initrd, machine.mem.ram_size)
        fw = firmware.install_firmware(machine)  # to learn where the RSDP and RSDT are
        rsdp_v1 = machine.mem.read(fw.tables["rsdp"], 20)
        tables = rsdt_entries(machine, fw.tables["rsdt"])
        writes, info = plan_boot2(data, header, append, modules, machine.mem.ram_size, (rsdp_v1, tables))
    finally:
        if isinstance(data, mmap.mmap):
            data.close()
    boot = _Multiboot2Boot(machine, writes, info)
    boot()
    from .linux import replace_boot_hook

    replace_boot_hook(machine, boot)
    return info


def rsdt_entries(machine: BootMachine, rsdt_addr: int) -> tuple[int, ...]:
    """The table addresses the firmware's RSDT lists, read back from RAM."""
    length = struct.unpack("<I", machine.mem.read(rsdt_addr + 4, 4))[0]
    count = (length - 36) // 4
    entries = struct.unpack(f"<{count}I", machine.mem.read(rsdt_addr + 36, 4 * count))
    return tuple(entries)


__all__ = ["BOOTLOADER_MAGIC", "BootInfo2", "Header2", "boot_multiboot2", "find_header2", "plan_boot2"]
