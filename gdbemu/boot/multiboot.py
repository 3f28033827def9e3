"""Multiboot v1 loading, as QEMU's ``-kernel`` does it for a multiboot image.

Theory of operation
-------------------
The Multiboot Specification 0.6.96 defines three things, and this module
implements each the way QEMU (``hw/i386/multiboot.c`` plus its
``multiboot.bin`` option ROM) does on a PC:

1. **The header** (spec section 3.1): a 32-bit aligned structure entirely in
   the first 8192 bytes of the file, starting with magic 0x1BADB002, then
   ``flags`` and a ``checksum`` such that the three add up to zero (3.1.2).
   QEMU scans every aligned offset and takes the first header whose checksum
   is right.  Flags bit 16 (3.1.3) says the address fields follow (3.1.4):
   ``header_addr``, ``load_addr``, ``load_end_addr``, ``bss_end_addr``,
   ``entry_addr`` -- the "a.out kludge", which loads the file from the offset
   that corresponds to ``load_addr`` (``header offset - (header_addr -
   load_addr)``) up to ``load_end_addr`` (0: end of file) and zeroes up to
   ``bss_end_addr`` (0: no bss).  Without bit 16 the file must be an ELF and
   its PT_LOAD segments are loaded at their physical addresses (p_paddr),
   entering at ``e_entry`` translated through the executable segment that
   holds it (``e_entry - p_vaddr + p_paddr``: a kernel linked high and
   loaded low starts with paging off), as QEMU's ``load_elf`` does.  The
   file is untrusted: ``elf.py`` checks every header field against the
   file, and :func:`plan_boot` checks the kernel's extent against RAM
   before a byte is copied; only regular files are read (``/dev/zero``
   would never end), and the kernel is mapped rather than read.  Bit 2 (video mode) is ignored, as
   QEMU ignores it.

2. **The boot information** (section 3.3): QEMU puts everything it creates
   after the kernel, in one buffer that starts at the kernel's load address:
   the kernel's page-aligned extent, then the module list (16 bytes per
   module), then the module command lines, the kernel command line
   (``"<kernel path> <append>"``, QEMU's spelling) and the boot loader name,
   page-aligned; then each module (the ``-initrd`` items, comma-separated,
   each "path args": the whole string is the module's command line), each
   page-aligned (QEMU aligns modules whether or not flags bit 0 asks for it).
   The memory map (E820 entries of 24 bytes: size 20, base, length, type)
   goes at 0x9000 and the information structure at 0x9500, below 640 KiB
   where QEMU's option ROM puts them -- unless the kernel itself occupies that
   range, in which case both follow the boot loader name instead.  Flags:
   mem_lower/mem_upper (bit 0: 639 KiB as INT 12h reports with a 1 KiB EBDA;
   upper memory up to the first hole above 1 MiB), boot_device (bit 1,
   0x8000FFFF: the first hard disk, no partition, as QEMU), cmdline (bit 2),
   mods (bit 3), mmap (bit 6) and boot_loader_name (bit 9, "gdbemu").

3. **The machine state** (section 3.2): EAX = 0x2BADB002, EBX = the
   information structure's physical address, CS a flat 32-bit code segment
   and DS/ES/FS/GS/SS flat data segments (selectors 0x08/0x10 of the GDT QEMU's
   option ROM leaves, which ``firmware.py`` writes in the reserved F segment
   so a kernel that reloads a segment register before its own ``lgdt`` does
   not fault), A20 on (gdbemu has no A20 gate: it is always on), CR0 = PE|ET
   (paging off, caches enabled, as SeaBIOS leaves it), EFLAGS with IF and VM
   clear, the real-mode IDTR (base 0, limit 0x3FF), ESP where QEMU's option
   ROM leaves it (0x6F08: low usable RAM, so a kernel that pushes before
   loading its own stack writes where it would on QEMU).

``boot_multiboot`` installs the firmware state (``firmware.install_firmware``),
loads, sets the CPU state and registers an ``on_reset`` hook that does it all
again: after a reset (triple fault without ``-no-reboot``, the keyboard
controller's reset line) the PC boots the same kernel afresh, as the BIOS and
the boot loader would.
"""

from __future__ import annotations

import mmap
import os
import stat
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import firmware
from .elf import EM_X86_64, ELFError, Image, parse_elf32

if TYPE_CHECKING:
    from ..core.cpu import CPU
    from .board import BootMachine

HEADER_MAGIC = 0x1BADB002
BOOTLOADER_MAGIC = 0x2BADB002
SEARCH_BYTES = 8192
HEADER_SIZE = 48  # the header with every optional field (QEMU's search bound)
PAGE = 4096

FLAG_PAGE_ALIGN = 1 << 0
FLAG_MEMORY_INFO = 1 << 1
FLAG_VIDEO_MODE = 1 << 2
FLAG_AOUT_KLUDGE = 1 << 16

MMAP_ADDR = 0x9000
MBI_ADDR = 0x9500
MBI_SIZE = 88
ENTRY_ESP = 0x6F08
BOOT_DEVICE = 0x8000FFFF
BOOTLOADER_NAME = "gdbemu"

MBI_FLAGS = (1 << 0) | (1 << 1) | (1 << 2) | (1 << 3) | (1 << 6) | (1 << 9)


class MultibootError(ValueError):
    """The file cannot be booted as a multiboot kernel; the message names what is missing or wrong."""


@dataclass(frozen=True)
class MultibootHeader:
    offset: int  # file offset of the magic
    flags: int
    header_addr: int = 0
    load_addr: int = 0
    load_end_addr: int = 0
    bss_end_addr: int = 0
    entry_addr: int = 0


@dataclass(frozen=True)
class Load:
    """``filesz`` bytes of the file at ``offset`` go to ``paddr``, then zeros up to ``memsz``."""

    paddr: int
    offset: int
    filesz: int
    memsz: int


@dataclass
class KernelImage:
    """What to write where, the entry point, the extent [low, high).

    Nothing is copied out of the file until :meth:`materialize`, which the
    caller uses only once the extent is known to fit in RAM (a header may
    claim gigabytes).
    """

    data: Image
    loads: list[Load]
    entry: int
    low: int
    high: int
    header: MultibootHeader

    def materialize(self) -> list[tuple[int, bytes]]:
        """The (paddr, bytes) chunks: file bytes plus the zeroed tail.  Allocates ``high - low`` at most."""
        out = []
        for load in self.loads:
            body = bytes(self.data[load.offset : load.offset + load.filesz]) if load.filesz else b""
            out.append((load.paddr, body + bytes(load.memsz - len(body))))
        return out

    @property
    def chunks(self) -> list[tuple[int, bytes]]:
        return self.materialize()


@dataclass
class BootInfo:
    """The result of a multiboot load (tests and the CLI read it)."""

    entry: int
    mbi_addr: int
    mmap_addr: int
    kernel_low: int
    kernel_high: int
    cmdline: str
    cmdline_addr: int
    modules: list[tuple[int, int, str]] = field(default_factory=list)  # (start, end, cmdline)
    mem_lower: int = 0
    mem_upper: int = 0
    e820: list[tuple[int, int, int]] = field(default_factory=list)
    firmware: firmware.FirmwareInfo | None = None


def find_header(data: Image) -> MultibootHeader:
    """The first header with a valid checksum in the first 8 KiB (spec 3.1.1, 3.1.2)."""
    limit = min(len(data), SEARCH_BYTES) - 12
    bad_checksum_at = None
    for off in range(0, limit + 1, 4):
        if struct.unpack_from("<I", data, off)[0] != HEADER_MAGIC:
            continue
        flags, checksum = struct.unpack_from("<II", data, off + 4)
        if (HEADER_MAGIC + flags + checksum) & 0xFFFFFFFF:
            if bad_checksum_at is None:
                bad_checksum_at = off
            continue
        if flags & FLAG_AOUT_KLUDGE:
            if off + 32 > len(data):
                raise MultibootError(
                    f"multiboot header at offset {off:#x} sets flag 16 but the file ends before its address fields"
                )
            fields = struct.unpack_from("<5I", data, off + 12)
            return MultibootHeader(off, flags, *fields)
        return MultibootHeader(off, flags)
    if bad_checksum_at is not None:
        raise MultibootError(
            f"multiboot header at offset {bad_checksum_at:#x} has a bad checksum "
            "(magic + flags + checksum must be 0 mod 2**32)"
        )
    raise MultibootError("no multiboot header in the first 8 KiB (magic 0x1BADB002 at a 4-byte aligned offset)")


def parse_kernel(data: Image) -> KernelImage:
    """Locate the header and compute what the kernel loads where (spec 3.1.4; ELF otherwise)."""
    try:
        header = find_header(data)
    except MultibootError as exc:
        if data[:4] == b"\x7fELF":
            raise MultibootError(
                f"{exc}; the file is an ELF, which -kernel boots only with a multiboot header"
            ) from None
        raise MultibootError(f"{exc}; the file is not an ELF either (no \\x7fELF magic)") from None
    if header.flags & FLAG_AOUT_KLUDGE:
        return _parse_aout_kludge(data, header)
    if data[:4] != b"\x7fELF":
        raise MultibootError(
            "multiboot header without the address fields (flag 16) and the file is not an "
            "ELF: the loader cannot tell where to load it"
        )
    if len(data) >= 20 and struct.unpack_from("<H", data, 18)[0] == EM_X86_64:  # QEMU checks this first
        raise MultibootError("this is an x86-64 ELF; multiboot v1 loads 32-bit kernels (give an i386 ELF)")
    try:
        elf = parse_elf32(data)
    except ELFError as exc:
        raise MultibootError(str(exc)) from None
    loads = [Load(seg.paddr, seg.offset, seg.filesz, seg.memsz) for seg in elf.segments]
    return KernelImage(data, loads, elf.entry, elf.low, elf.high, header)


def _parse_aout_kludge(data: Image, h: MultibootHeader) -> KernelImage:
    if h.header_addr < h.load_addr:
        raise MultibootError(
            f"a.out kludge load addresses inconsistent: header_addr {h.header_addr:#x} is "
            f"below load_addr {h.load_addr:#x}"
        )
    if h.header_addr - h.load_addr > h.offset:
        raise MultibootError(
            f"a.out kludge load addresses inconsistent: header_addr - load_addr = "
            f"{h.header_addr - h.load_addr:#x} but the header is at file offset {h.offset:#x}"
        )
    text_offset = h.offset - (h.header_addr - h.load_addr)
    if h.load_end_addr:
        if h.load_end_addr < h.load_addr:
            raise MultibootError(
                f"a.out kludge load addresses inconsistent: load_end_addr "
                f"{h.load_end_addr:#x} is below load_addr {h.load_addr:#x}"
            )
        load_size = h.load_end_addr - h.load_addr
        if text_offset + load_size > len(data):
            raise MultibootError(
                f"a.out kludge: load_end_addr {h.load_end_addr:#x} is past the end of the file ({len(data)} bytes)"
            )
    else:
        load_size = len(data) - text_offset
    if h.load_addr + load_size > 1 << 32:
        raise MultibootError("a.out kludge: the kernel does not fit in the 32-bit address space")
    if h.bss_end_addr:
        if h.bss_end_addr < h.load_addr + load_size:
            raise MultibootError(
                f"a.out kludge load addresses inconsistent: bss_end_addr {h.bss_end_addr:#x} "
                f"is below the end of the loaded image {h.load_addr + load_size:#x}"
            )
        kernel_size = h.bss_end_addr - h.load_addr
    else:
        kernel_size = load_size
    if h.load_addr + kernel_size > 1 << 32:
        raise MultibootError("a.out kludge: the kernel and its bss do not fit in the 32-bit address space")
    load = Load(h.load_addr, text_offset, load_size, kernel_size)
    return KernelImage(data, [load], h.entry_addr, h.load_addr, h.load_addr + kernel_size, h)


def split_initrd(spec: str) -> list[str]:
    """QEMU's -initrd list: items separated by ',' (',,' is a literal comma), each "path args"."""
    items: list[str] = []
    current = []
    i = 0
    while i < len(spec):
        ch = spec[i]
        if ch == ",":
            if spec[i + 1 : i + 2] == ",":
                current.append(",")
                i += 2
                continue
            items.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    items.append("".join(current))
    return items


def _page_align(n: int) -> int:
    return (n + PAGE - 1) & ~(PAGE - 1)


def mmap_entries(e820: list[tuple[int, int, int]]) -> bytes:
    """The multiboot ``mmap`` buffer: entries of (size=20, base_addr, length, type) (spec 3.3)."""
    return b"".join(struct.pack("<IQQI", 20, base, length, kind) for base, length, kind in e820)


def upper_memory_kib(e820: list[tuple[int, int, int]]) -> int:
    """mem_upper: KiB of RAM from 1 MiB up to the first hole (spec 3.3)."""
    end = 0x100000
    for base, length, kind in sorted(e820):
        if kind == firmware.E820_RAM and base <= end < base + length:
            end = base + length
    return (end - 0x100000) // 1024


def plan_boot(
    data: Image, kernel_name: str, append: str, modules: list[tuple[str, bytes]], ram_size: int
) -> tuple[list[tuple[int, bytes]], BootInfo]:
    """Everything a multiboot boot writes: ([(paddr, bytes)], info).  Pure: no machine needed.

    ``modules`` are (command line, contents) pairs in order.  The kernel's
    bytes are copied out of ``data`` only once its extent is known to fit
    in RAM.
    """
    kernel = parse_kernel(data)
    e820 = firmware.e820_map(ram_size)
    ram_top = firmware.usable_ram_top(ram_size)
    if kernel.high > ram_top:
        raise MultibootError(
            f"kernel does not fit in {ram_size >> 20} MiB of RAM: it spans {kernel.low:#x}-{kernel.high:#x}, "
            f"and usable RAM ends at {ram_top:#x}"
        )
    writes: list[tuple[int, bytes]] = []
    base = kernel.low
    kernel_size = kernel.high - kernel.low
    mbinfo_off = _page_align(kernel_size)
    cmdline = f"{kernel_name} {append}"
    strings = [m[0] for m in modules] + [cmdline, BOOTLOADER_NAME]
    area = bytearray(16 * len(modules))
    string_addrs = []
    for text in strings:
        string_addrs.append(base + mbinfo_off + len(area))
        area += text.encode("utf-8", "surrogateescape") + b"\0"
    # The memory map and the information structure go where QEMU's option ROM puts them,
    # unless the kernel occupies that range: then right after the boot loader name.
    mmap = mmap_entries(e820)
    if kernel.low < MBI_ADDR + MBI_SIZE and kernel.high > MMAP_ADDR:
        area += bytes(-len(area) % 4)
        mmap_addr = base + mbinfo_off + len(area)
        area += mmap
        mbi_addr = base + mbinfo_off + len(area)
        area += bytes(MBI_SIZE)
    else:
        mmap_addr = MMAP_ADDR
        mbi_addr = MBI_ADDR
    offset = _page_align(mbinfo_off + len(area))
    mods = []
    for i, ((mod_cmdline, body), str_addr) in enumerate(zip(modules, string_addrs, strict=False)):
        start = base + offset
        struct.pack_into("<IIII", area, 16 * i, start, start + len(body), str_addr, 0)
        writes.append((start, body))
        mods.append((start, start + len(body), mod_cmdline))
        offset = _page_align(offset + len(body))
    highest = max(base + offset, kernel.high)
    if highest > ram_top:
        raise MultibootError(
            f"kernel does not fit in {ram_size >> 20} MiB of RAM: with its modules and boot information it "
            f"spans {kernel.low:#x}-{highest:#x}, and usable RAM ends at {ram_top:#x}"
        )
    writes[:0] = kernel.materialize()
    # Segments below 1 MiB are loaded as QEMU loads them, over whatever the BIOS left there (a
    # linker that puts the ELF headers in a PT_LOAD at 0xff000 is common and harmless).

    mem_upper = upper_memory_kib(e820)
    mbi = struct.pack(
        "<IIIIIII16xII12xI20x",
        MBI_FLAGS,
        firmware.BASE_MEMORY_KIB,
        mem_upper,
        BOOT_DEVICE,
        string_addrs[len(modules)],
        len(modules),
        base + mbinfo_off,
        len(mmap),
        mmap_addr,
        string_addrs[-1],
    )
    assert len(mbi) == MBI_SIZE
    if mbi_addr == MBI_ADDR:
        writes.append((MMAP_ADDR, mmap))
        writes.append((MBI_ADDR, mbi))
        writes.append((base + mbinfo_off, bytes(area)))
    else:
        area[mbi_addr - base - mbinfo_off : mbi_addr - base - mbinfo_off + MBI_SIZE] = mbi
        writes.append((base + mbinfo_off, bytes(area)))
    info = BootInfo(
        entry=kernel.entry,
        mbi_addr=mbi_addr,
        mmap_addr=mmap_addr,
        kernel_low=kernel.low,
        kernel_high=kernel.high,
        cmdline=cmdline,
        cmdline_addr=string_addrs[len(modules)],
        modules=mods,
        mem_lower=firmware.BASE_MEMORY_KIB,
        mem_upper=mem_upper,
        e820=e820,
    )
    return writes, info


def _open_regular(path: str, what: str) -> tuple[int, int]:
    """Open ``path`` for reading, refusing anything but a regular file: (fd, size).

    ``/dev/zero``, a FIFO or a terminal would be read forever (or block in
    ``open``): they are refused from ``stat`` before opening, and again from
    ``fstat`` after (the path may have changed in between).
    FileNotFoundError and IsADirectoryError propagate (the CLI names them).
    """
    st = os.stat(path)
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(21, "Is a directory", path)
    if not stat.S_ISREG(st.st_mode):
        raise MultibootError(f"{what} {path!r} is not a regular file ({_file_kind(st.st_mode)})")
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise MultibootError(f"{what} {path!r} is not a regular file ({_file_kind(st.st_mode)})")
    return fd, st.st_size


def _file_kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a file"


def read_kernel(path: str) -> Image:
    """The kernel file, mapped rather than read: a loader slices only what it loads, so an ELF
    with gigabytes of debug information costs nothing.  Only regular files are accepted."""
    try:
        fd, size = _open_regular(path, "kernel")
    except (FileNotFoundError, IsADirectoryError):
        raise
    except OSError as exc:
        raise MultibootError(f"cannot read {path!r}: {exc.strerror or exc}") from None
    try:
        if size == 0:
            return b""
        return mmap.mmap(fd, size, access=mmap.ACCESS_READ)
    except (OSError, ValueError) as exc:
        raise MultibootError(f"cannot read {path!r}: {exc}") from None
    finally:
        os.close(fd)


def read_modules(initrd: str | None, ram_size: int | None = None) -> list[tuple[str, bytes]]:
    """Read the -initrd items: (the whole "path args" string, the file's bytes).

    Only regular files; with ``ram_size``, their sizes are checked against
    it before anything is read (every module is copied into RAM).
    """
    if not initrd:
        return []
    out = []
    total = 0
    for item in split_initrd(initrd):
        path = item.split(" ", 1)[0]
        if not path:
            raise MultibootError(f"empty module name in -initrd {initrd!r}")
        try:
            fd, size = _open_regular(path, "module")
        except OSError as exc:
            raise MultibootError(f"cannot read module {path!r}: {exc.strerror or exc}") from None
        try:
            total += size
            if ram_size is not None and total > ram_size:
                raise MultibootError(
                    f"module {path!r} ({size} bytes) does not fit in {ram_size >> 20} MiB of RAM "
                    f"with the modules before it"
                )
            with os.fdopen(fd, "rb", closefd=False) as f:
                body = f.read(size)
        except OSError as exc:
            raise MultibootError(f"cannot read module {path!r}: {exc.strerror or exc}") from None
        finally:
            os.close(fd)
        out.append((item, body))
    return out


def set_entry_state(cpu: CPU, entry: int, mbi_addr: int) -> None:
    """The machine state of spec 3.2, as QEMU's option ROM leaves it."""
    from ..core.cpu import CR0_ET, CR0_PE, EAX, EBX, ESP

    cpu.setup_flat32()
    cpu.cr[0] = CR0_PE | CR0_ET
    cpu.gdtr_base = firmware.GDT_ADDR
    cpu.gdtr_limit = len(firmware.BOOT_GDT) - 1
    cpu.idtr_base = 0
    cpu.idtr_limit = 0x3FF
    cpu.regs[:] = [0] * 8
    cpu.regs[EAX] = BOOTLOADER_MAGIC
    cpu.regs[EBX] = mbi_addr
    cpu.regs[ESP] = ENTRY_ESP
    cpu.eip = entry
    cpu.halted = False
    cpu.compute_hflags()


class _MultibootBoot:
    """The on_reset hook that boots the kernel again (one per machine: a new boot replaces it)."""

    def __init__(self, machine: BootMachine, writes: list[tuple[int, bytes]], info: BootInfo) -> None:
        self.machine, self.writes, self.info = machine, writes, info

    def __call__(self) -> None:
        machine, info = self.machine, self.info
        info.firmware = firmware.install_firmware(machine)
        for paddr, body in self.writes:
            machine.mem.write(paddr, body)
        set_entry_state(machine.cpus[0], info.entry, info.mbi_addr)
        for cpu in machine.cpus[1:]:
            cpu.halted = True  # application processors wait for INIT/SIPI


def boot_multiboot(
    machine: BootMachine, path: str, append: str = "", initrd: str | None = None, kernel_name: str | None = None
) -> BootInfo:
    """Boot ``path`` on ``machine`` as QEMU's ``-kernel path -append append -initrd initrd``.

    Reads the files once; the on_reset hook reuses the bytes, as QEMU keeps
    the kernel in fw_cfg and the option ROM copies it again on every boot.
    """
    data = read_kernel(path)
    try:
        modules = read_modules(initrd, machine.mem.ram_size)
        name = kernel_name if kernel_name is not None else path
        writes, info = plan_boot(data, name, append, modules, machine.mem.ram_size)
    finally:
        if isinstance(data, mmap.mmap):
            data.close()

    boot = _MultibootBoot(machine, writes, info)
    boot()
    from .linux import replace_boot_hook

    replace_boot_hook(machine, boot)
    return info


__all__ = [
    "BOOTLOADER_MAGIC",
    "BootInfo",
    "MultibootError",
    "MultibootHeader",
    "boot_multiboot",
    "find_header",
    "parse_kernel",
    "plan_boot",
    "split_initrd",
]
