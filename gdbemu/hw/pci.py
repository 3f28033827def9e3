"""PCI configuration space, mechanism #1 (0xCF8/0xCFC), with the functions of QEMU's ``pc`` board.

Theory of operation (PCI Local Bus Specification 3.0, section 3.2.2.3.2;
Intel 82371AB PIIX4 and 82441FX datasheets for the device registers):

* CONFIG_ADDRESS (0xCF8, dword accesses only; a byte access at 0xCF9 is the
  reset control register of ``kbd.py``): bit 31 enable, bus 23-16, device
  15-11, function 10-8, register 7-2.  Read back as written.
* CONFIG_DATA (0xCFC-0xCFF): the addressed function's dword, the byte
  offset within it taken from the port (``inb 0xCFE`` reads register + 2).
  With the enable bit clear, or for a function that does not exist, reads
  are all ones and writes are dropped, as on a PC: that is how a scan sees
  an empty slot (vendor 0xFFFF).
* The functions, as QEMU's ``pc`` machine puts them on bus 0:
  00.0 the i440FX host bridge (8086:1237 rev 02, class 06 00 00),
  01.0 the PIIX3 PCI-ISA bridge (8086:7000, class 06 01 00, multi-function
  header), 01.3 the PIIX4 power-management function (8086:7113 rev 03,
  class 06 80 00, PMBA at 0x40 = 0x0601 with PMIOSE set at 0x80: the ACPI
  blocks of ``acpi_pm.py`` at 0x600, as SeaBIOS programs them on QEMU; the
  SCI on IRQ 9 at 0x3C).  Neither the IDE function nor a PCI VGA is
  present (gdbemu has no IDE, and its VGA is the ISA one), and no function
  has a BAR, so nothing needs address assignment.
* Writable: the command register's I/O, memory and bus-master bits,
  the latency timer, the interrupt line, and the device-specific area
  0x40-0xFF (stored and read back; nothing there moves hardware).
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from .bus import Bus
from .state import State, capture, restore

if TYPE_CHECKING:
    from .pc import PCConfig

CONFIG_ADDRESS = 0xCF8
CONFIG_DATA = 0xCFC
ENABLE = 1 << 31


class PCIFunction:
    """One function's 256-byte configuration space."""

    # ---- snapshots (hw/state.py) -----------------------------------------------------
    STATE_EXCLUDE = frozenset({"initial"})  # collaborators and configuration, not state

    def save_state(self) -> State:
        """The configuration space as the guest left it."""
        return capture(self, self.STATE_EXCLUDE)

    def load_state(self, state: State) -> None:
        """Restore what ``save_state`` returned."""
        restore(self, state, self.STATE_EXCLUDE)

    def __init__(self, vendor: int, device: int, revision: int, class_code: int, header_type: int = 0) -> None:
        self.space = bytearray(256)
        struct.pack_into("<HH", self.space, 0, vendor, device)
        struct.pack_into("<I", self.space, 8, (class_code << 8) | revision)
        self.space[0x0E] = header_type
        self.initial = bytes(self.space)

    def reset(self) -> None:
        self.space[:] = self.initial

    def read(self, reg: int, size: int) -> int:
        return int.from_bytes(self.space[reg : reg + size], "little")

    def write(self, reg: int, size: int, value: int) -> None:
        for i in range(size):
            off, byte = reg + i, (value >> (8 * i)) & 0xFF
            if off == 0x04:
                self.space[off] = byte & 0x07  # I/O, memory, bus master
            elif off in (0x0D, 0x3C) or off >= 0x40:
                self.space[off] = byte


def pc_functions() -> dict[tuple[int, int, int], PCIFunction]:
    """(bus, device, function) -> function, QEMU pc's layout (module docstring)."""
    host = PCIFunction(0x8086, 0x1237, 0x02, 0x060000)
    isa = PCIFunction(0x8086, 0x7000, 0x00, 0x060100, header_type=0x80)
    pm = PCIFunction(0x8086, 0x7113, 0x03, 0x068000)
    struct.pack_into("<I", pm.space, 0x40, 0x0601)  # PMBA: I/O 0x600
    pm.space[0x80] = 0x01  # PMREGMISC.PMIOSE: the PM I/O space is enabled
    pm.space[0x3C] = 9  # interrupt line: the SCI
    pm.space[0x3D] = 1  # INTA#
    for fn in (host, isa, pm):
        fn.initial = bytes(fn.space)
    return {(0, 0, 0): host, (0, 1, 0): isa, (0, 1, 3): pm}


class PCIHost:
    """Configuration mechanism #1 over the functions of ``pc_functions`` (``bus.devices["pci"]``)."""

    # ---- snapshots (hw/state.py) -----------------------------------------------------
    def save_state(self) -> State:
        """CONFIG_ADDRESS and every function's space, by its bus/device/function address."""
        spaces = [[list(key), bytes(fn.space).hex()] for key, fn in self.functions.items()]
        return {"address": self.address, "spaces": spaces}

    def load_state(self, state: State) -> None:
        """Restore what ``save_state`` returned (each space into its own function)."""
        self.address = state["address"]
        for key, space in state["spaces"]:
            self.functions[(key[0], key[1], key[2])].space[:] = bytes.fromhex(space)

    def __init__(self, functions: dict[tuple[int, int, int], PCIFunction]) -> None:
        self.functions = functions
        self.address = 0

    def reset(self) -> None:
        self.address = 0
        for fn in self.functions.values():
            fn.reset()

    def _target(self, port: int) -> tuple[PCIFunction | None, int]:
        addr = self.address
        if not addr & ENABLE:
            return None, 0
        key = ((addr >> 16) & 0xFF, (addr >> 11) & 0x1F, (addr >> 8) & 7)
        return self.functions.get(key), (addr & 0xFC) + (port - CONFIG_DATA)

    def io_read(self, port: int, size: int) -> int:
        if port == CONFIG_ADDRESS:
            return self.address if size == 4 else (1 << (8 * size)) - 1
        fn, reg = self._target(port)
        if fn is None:
            return (1 << (8 * size)) - 1
        return fn.read(reg, min(size, 256 - reg))

    def io_write(self, port: int, size: int, value: int) -> None:
        if port == CONFIG_ADDRESS:
            if size == 4:
                self.address = value & 0x80FFFFFC
            return
        fn, reg = self._target(port)
        if fn is not None:
            fn.write(reg, min(size, 256 - reg), value)


def attach(bus: Bus, config: PCConfig) -> PCIHost:
    host = PCIHost(pc_functions())
    bus.add_port(CONFIG_ADDRESS, 1, host)
    bus.add_port(CONFIG_DATA, 4, host)
    bus.add_reset_hook(host.reset)
    return host
