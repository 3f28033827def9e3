"""QEMU's firmware configuration device, legacy I/O interface: selector 0x510, data 0x511.

Theory of operation (QEMU docs/specs/fw_cfg.rst, "Selector (Control)
Register", "Data Register", "Firmware Configuration Items"; x86 keys from
hw/i386/fw_cfg.h):

* Writing a 16-bit key to the selector port selects an item and rewinds
  its data offset to 0.  Each byte read from the data port returns the
  next byte of the item; past its end, and for keys with no item, reads
  return 0.  Data-port writes are ignored (QEMU has not accepted them since
  2.4).  Wider reads of the data port return that many successive bytes,
  little-endian, as if read one by one.
* Only the traditional interface is offered: FW_CFG_ID reads 1 (QEMU
  reads 3, adding the DMA interface at 0x514, which this device lacks).
* Items, with the encodings of the spec (integers little-endian):
  0x00 SIGNATURE "QEMU"; 0x01 ID (u32 features); 0x02 UUID (16 zero
  bytes); 0x03 RAM_SIZE (u64); 0x04 NOGRAPHIC (u16); 0x05 NB_CPUS (u16);
  0x0E BOOT_MENU (u16, 0); 0x0F MAX_CPUS (u16); 0x8002 IRQ0_OVERRIDE
  (u32, 1: the ISA timer is routed to GSI 2 of the I/O APIC); 0x19
  FILE_DIR: a big-endian u32 count, then per file a big-endian
  ``{u32 size; u16 select; u16 reserved; char name[56]}``, sorted by name
  with selectors from 0x20 upwards in that order, as QEMU assigns them.
* Files: ``etc/e820``, the RAM map as QEMU builds it: packed little-endian
  ``{u64 address; u64 length; u32 type}`` entries, RAM (type 1) from 0 to
  the top of low memory and, with 3.5 GiB or more (split at 3 GiB), from
  4 GiB up (softmmu/ram_layout.py).
  ``add_file`` lets boards or tests add more.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from ..softmmu.ram_layout import ram_above_4g, ram_below_4g
from .bus import Bus
from .state import State, capture, restore

if TYPE_CHECKING:
    from .pc import PCConfig

FW_CFG_SIGNATURE = 0x00
FW_CFG_ID = 0x01
FW_CFG_UUID = 0x02
FW_CFG_RAM_SIZE = 0x03
FW_CFG_NOGRAPHIC = 0x04
FW_CFG_NB_CPUS = 0x05
FW_CFG_BOOT_MENU = 0x0E
FW_CFG_MAX_CPUS = 0x0F
FW_CFG_FILE_DIR = 0x19
FW_CFG_FILE_FIRST = 0x20
FW_CFG_IRQ0_OVERRIDE = 0x8002

FW_CFG_VERSION_TRADITIONAL = 1
FW_CFG_MAX_FILE_PATH = 56
E820_RAM = 1

PORT_SELECTOR = 0x510
PORT_DATA = 0x511


def e820_table(ram_size: int) -> bytes:
    """QEMU's etc/e820 contents for a PC with ``ram_size`` bytes of RAM."""
    entries = [(0, ram_below_4g(ram_size), E820_RAM)]
    if ram_above_4g(ram_size):
        entries.append((1 << 32, ram_above_4g(ram_size), E820_RAM))
    return b"".join(struct.pack("<QQI", addr, length, kind) for addr, length, kind in entries)


class FwCfg:
    """The fw_cfg device (``bus.devices["fw_cfg"]``)."""

    # ---- snapshots (hw/state.py) -----------------------------------------------------
    STATE_EXCLUDE = frozenset({"items", "files"})  # collaborators and configuration, not state

    def save_state(self) -> State:
        """This device's state for a snapshot (its declared fields minus ``STATE_EXCLUDE``)."""
        return capture(self, self.STATE_EXCLUDE)

    def load_state(self, state: State) -> None:
        """Restore what ``save_state`` returned."""
        restore(self, state, self.STATE_EXCLUDE)

    def __init__(self, ram_size: int, ncpus: int, nographic: bool) -> None:
        self.items: dict[int, bytes] = {
            FW_CFG_SIGNATURE: b"QEMU",
            FW_CFG_ID: struct.pack("<I", FW_CFG_VERSION_TRADITIONAL),
            FW_CFG_UUID: bytes(16),
            FW_CFG_RAM_SIZE: struct.pack("<Q", ram_size),
            FW_CFG_NOGRAPHIC: struct.pack("<H", int(nographic)),
            FW_CFG_NB_CPUS: struct.pack("<H", ncpus),
            FW_CFG_BOOT_MENU: struct.pack("<H", 0),
            FW_CFG_MAX_CPUS: struct.pack("<H", ncpus),
            FW_CFG_IRQ0_OVERRIDE: struct.pack("<I", 1),
        }
        self.files: dict[str, bytes] = {}
        self.add_file("etc/e820", e820_table(ram_size))
        self.selector = 0
        self.offset = 0

    def add_file(self, name: str, data: bytes) -> None:
        """Add (or replace) a named item; the directory and file selectors are rebuilt."""
        if len(name.encode()) >= FW_CFG_MAX_FILE_PATH:
            raise ValueError(f"fw_cfg file name too long: {name!r}")
        self.files[name] = bytes(data)
        self._build_directory()

    def _build_directory(self) -> None:
        for key in [k for k in self.items if FW_CFG_FILE_FIRST <= k < 0x4000]:
            del self.items[key]
        directory = bytearray(struct.pack(">I", len(self.files)))
        for i, name in enumerate(sorted(self.files)):
            select = FW_CFG_FILE_FIRST + i
            data = self.files[name]
            self.items[select] = data
            directory += struct.pack(">IHH56s", len(data), select, 0, name.encode())
        self.items[FW_CFG_FILE_DIR] = bytes(directory)

    def select(self, key: int) -> None:
        self.selector = key & 0xFFFF
        self.offset = 0

    def read_byte(self) -> int:
        data = self.items.get(self.selector & ~0x4000, b"")  # bit 14 (write channel) does not change the item
        if self.offset >= len(data):
            return 0
        value = data[self.offset]
        self.offset += 1
        return value

    # ---- ports ------------------------------------------------------------------------
    def io_read(self, port: int, size: int) -> int:
        if port != PORT_DATA:
            return 0
        value = 0
        for i in range(size):
            value |= self.read_byte() << (8 * i)
        return value

    def io_write(self, port: int, size: int, value: int) -> None:
        if port == PORT_SELECTOR:
            self.select(value)
        # data-port writes are ignored


def attach(bus: Bus, config: PCConfig) -> FwCfg:
    dev = FwCfg(bus.ram_size, config.ncpus, config.nographic)
    bus.add_port(PORT_SELECTOR, 2, dev)
    return dev
