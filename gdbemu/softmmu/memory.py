"""The guest-physical address space: RAM, ROM, MMIO regions and the port-I/O bus.

RAM is one anonymous private ``mmap`` starting at physical address 0, so a
RAM frame's ``ram_offset`` equals its ``paddr``.  The host commits its pages
lazily: resident memory grows with the pages the guest (or the loader)
touches, and ``-m 3G`` costs no more to start than ``-m 32M`` (issue 12).  A
size the host cannot reserve is a ``ValueError`` with one clear line.  Generated TB code reads and writes it
through typed ``memoryview`` casts (``m16``, ``m32``, ``m64``), which is the
fastest per-access path CPython has (DESIGN.md's speed probe); numpy views of
the same buffer are used for bulk work (string instructions, hashing).

Regions registered with ``add_mmio``/``add_rom`` take precedence over RAM for
the pages they cover (the VGA window, the local APIC page, BIOS ROM).
Addresses that are neither RAM nor a region are unassigned: reads return all
ones and writes are dropped, as on a PC.
"""

from __future__ import annotations

import mmap
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

from .tlb import PAGE_BITS, PAGE_MASK, PAGE_SIZE, TLB_DISCARD_WRITE, TLB_MMIO


class MMIODevice(Protocol):
    def mmio_read(self, offset: int, size: int) -> int: ...
    def mmio_write(self, offset: int, size: int, value: int) -> None: ...


class PortDevice(Protocol):
    def io_read(self, port: int, size: int) -> int: ...
    def io_write(self, port: int, size: int, value: int) -> None: ...


PortReader = Callable[[], int]
PortWriter = Callable[[int], None]


def port_handlers(device: PortDevice | None, port: int, size: int) -> tuple[PortReader, PortWriter]:
    """The handlers of one ``(port, size)``: ``read() -> value``, ``write(value)``.

    A device may offer specialised ones through an optional method
    ``port_handlers(port, size)`` returning ``(reader, writer)`` or None (the
    hot registers of the PIT and the keyboard controller do); otherwise its
    ``io_read``/``io_write`` are bound to the port and size.  No device: reads
    are all ones and writes are dropped.  Callers mask what a reader returns.
    """
    if device is None:
        ones = (1 << (8 * size)) - 1
        return (lambda: ones), _drop
    if getattr(type(device), "port_handlers", None) is not None:
        pair: tuple[PortReader, PortWriter] | None = device.port_handlers(port, size)  # type: ignore[attr-defined]
        if pair is not None:
            return pair
    return partial(device.io_read, port, size), partial(device.io_write, port, size)


def _drop(value: int) -> None:
    del value


def port_key(port: int, size: int) -> int:
    """The key of ``(port, size)`` in ``PhysMemory.io_rd`` / ``io_wr``."""
    return port | size << 16


class PortTable(dict[int, Callable[..., object]]):
    """``port_key -> handler``, resolved from the port map on first use (``__missing__``)."""

    def __init__(self, mem: PhysMemory, which: int) -> None:
        super().__init__()
        self.mem = mem
        self.which = which  # 0: readers, 1: writers

    def __missing__(self, key: int) -> Callable[..., object]:
        port = key & 0xFFFF
        handler: Callable[..., object] = port_handlers(self.mem.ports.get(port), port, key >> 16)[self.which]
        self[key] = handler
        return handler


class Region:
    """A physical range backed by a device (MMIO) or read-only bytes (ROM)."""

    def __init__(self, start: int, size: int, device: MMIODevice | None, rom: bool, name: str):
        self.start = start
        self.size = size
        self.device = device
        self.rom = rom
        self.name = name


class _Unassigned:
    def mmio_read(self, offset: int, size: int) -> int:
        return (1 << (8 * size)) - 1

    def mmio_write(self, offset: int, size: int, value: int) -> None:
        pass


UNASSIGNED = Region(0, 0, _Unassigned(), False, "unassigned")


RAM = mmap.mmap  # the type of ``PhysMemory.ram`` (slices are bytes; items are ints)


def anonymous_ram(size: int) -> RAM:
    """``size`` bytes of zeroed guest RAM the host commits page by page, as the guest touches them."""
    flags = getattr(mmap, "MAP_PRIVATE", 0) | getattr(mmap, "MAP_ANONYMOUS", 0)
    try:
        if flags:
            return mmap.mmap(-1, max(size, PAGE_SIZE), flags=flags)
        return mmap.mmap(-1, max(size, PAGE_SIZE))
    except (OSError, OverflowError, MemoryError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise ValueError(f"cannot reserve {size >> 20} MiB of guest RAM on this host: {reason}") from None


class PhysMemory:
    """Guest-physical memory.  One per machine; shared by all vCPUs."""

    def __init__(self, ram_size: int = 128 << 20) -> None:
        if ram_size % PAGE_SIZE:
            raise ValueError("RAM size must be a multiple of 4 KiB")
        self.ram_size = ram_size
        self.ram = anonymous_ram(ram_size)
        self.m16 = memoryview(self.ram).cast("H")
        self.m32 = memoryview(self.ram).cast("I")
        self.m64 = memoryview(self.ram).cast("Q")
        self._np: npt.NDArray[np.uint8] | None = None
        self.n_pages = ram_size >> PAGE_BITS
        self.regions: dict[int, Region] = {}  # page number -> region
        self.ports: dict[int, PortDevice] = {}
        # What translated in/out call: ``io_rd[key]()`` and ``io_wr[key](value)`` with
        # ``key = port | size << 16`` (``port_key``), filled on first use and emptied
        # for the ports a change of the port map touches (add_port, remove_port):
        # generated code never holds a device, so it never calls one that has gone.
        self.io_rd = PortTable(self, 0)
        self.io_wr = PortTable(self, 1)
        self.rom_data: dict[int, bytearray] = {}
        # Called as (paddr, length) after a write that did not come from TB
        # code (debugger, DMA, loader): invalidates translated code.
        self.on_phys_write: list[Callable[[int, int], None]] = []

    @property
    def np(self) -> npt.NDArray[np.uint8]:
        """A numpy view of RAM for bulk work (made on first use: numpy is not imported before)."""
        if self._np is None:
            import numpy

            self._np = numpy.frombuffer(self.ram, dtype=numpy.uint8)
        return self._np

    # ---- regions ------------------------------------------------------------
    def add_mmio(self, start: int, size: int, device: MMIODevice, name: str) -> None:
        region = Region(start, size, device, False, name)
        for page in range(start >> PAGE_BITS, (start + size + PAGE_SIZE - 1) >> PAGE_BITS):
            self.regions[page] = region

    def remove_mmio(self, start: int, size: int) -> None:
        """Unmap a region added by ``add_mmio`` (a relocated or disabled local APIC page).

        Callers flush the TLBs: entries filled while the region was there
        still classify its pages as MMIO.
        """
        for page in range(start >> PAGE_BITS, (start + size + PAGE_SIZE - 1) >> PAGE_BITS):
            self.regions.pop(page, None)

    def add_port(self, port: int, count: int, device: PortDevice) -> None:
        for p in range(port, port + count):
            self.ports[p] = device
        self._forget_handlers(port, count)

    def remove_port(self, port: int, count: int) -> None:
        """Unmap ``count`` ports from ``port``: reads return all ones, writes are dropped."""
        for p in range(port, port + count):
            self.ports.pop(p, None)
        self._forget_handlers(port, count)

    def _forget_handlers(self, port: int, count: int) -> None:
        """The port map changed for ``[port, port + count)``: those handlers are resolved again."""
        for table in (self.io_rd, self.io_wr):
            for key in [key for key in table if port <= key & 0xFFFF < port + count]:
                del table[key]

    def classify(self, ppage: int) -> tuple[int | None, int, int]:
        """Fill-time classification: (ram_offset of the page or None, read flags, write flags)."""
        region = self.regions.get(ppage >> PAGE_BITS)
        if region is not None:
            if region.rom:
                return ppage, 0, TLB_DISCARD_WRITE
            return None, TLB_MMIO, TLB_MMIO
        if ppage < self.ram_size:
            return ppage, 0, 0
        return None, TLB_MMIO, TLB_MMIO

    def region_at(self, paddr: int) -> Region:
        return self.regions.get(paddr >> PAGE_BITS) or UNASSIGNED

    def is_ram(self, paddr: int) -> bool:
        return paddr < self.ram_size and (paddr >> PAGE_BITS) not in self.regions

    # ---- physical access (slow path, devices, debugger) -----------------------
    def read_phys(self, paddr: int, size: int) -> int:
        """Read ``size`` (1, 2, 4, 8) bytes at a physical address that stays in one page."""
        if self.is_ram(paddr):
            return int.from_bytes(self.ram[paddr : paddr + size], "little")
        region = self.region_at(paddr)
        assert region.device is not None, "ROM frames are RAM-backed: never read through a device"
        return region.device.mmio_read(paddr - region.start, size)

    def write_phys(self, paddr: int, size: int, value: int) -> None:
        """Write within one page; no TB invalidation (callers on the store path do that)."""
        if self.is_ram(paddr):
            self.ram[paddr : paddr + size] = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
            return
        region = self.region_at(paddr)
        if region.device is not None:
            region.device.mmio_write(paddr - region.start, size, value)

    def read(self, paddr: int, length: int) -> bytes:
        """Debugger/loader read of any length: RAM bytes, MMIO read bytewise, unassigned as 0xff."""
        out = bytearray()
        end = paddr + length
        while paddr < end:
            chunk = min(end, (paddr & PAGE_MASK) + PAGE_SIZE) - paddr
            if self.is_ram(paddr):
                out += self.ram[paddr : paddr + chunk]
            else:
                out += bytes(self.read_phys(paddr + i, 1) for i in range(chunk))
            paddr += chunk
        return bytes(out)

    def write(self, paddr: int, data: bytes) -> None:
        """Debugger/loader write of any length; translated code it touches is invalidated."""
        start = paddr
        end = paddr + len(data)
        pos = 0
        while paddr < end:
            chunk = min(end, (paddr & PAGE_MASK) + PAGE_SIZE) - paddr
            if self.is_ram(paddr):
                self.ram[paddr : paddr + chunk] = data[pos : pos + chunk]
            else:
                for i in range(chunk):
                    self.write_phys(paddr + i, 1, data[pos + i])
            paddr += chunk
            pos += chunk
        for fn in self.on_phys_write:
            fn(start, len(data))

    # ---- ports --------------------------------------------------------------
    def io_read(self, port: int, size: int) -> int:
        dev = self.ports.get(port)
        if dev is None:
            return (1 << (8 * size)) - 1
        return dev.io_read(port, size)

    def io_write(self, port: int, size: int, value: int) -> None:
        dev = self.ports.get(port)
        if dev is not None:
            dev.io_write(port, size, value)
