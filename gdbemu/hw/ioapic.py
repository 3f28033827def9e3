"""The 82093AA I/O APIC at 0xFEC00000: 24 interrupt pins turned into APIC bus messages.

Registers (Intel 82093AA datasheet, 290566-001, section 3) are reached
indirectly: software writes a register index to IOREGSEL (offset 0x00) and
reads or writes the dword at IOWIN (offset 0x10).  The page decodes only
the low 8 address bits, so it repeats every 256 bytes, as QEMU's does.

=========  ======================================================
index      register
=========  ======================================================
0x00       IOAPICID: bits 27-24 (writing it loads the arbitration ID too)
0x01       IOAPICVER (read-only): version 0x11, max redirection entry 23
0x02       IOAPICARB (read-only): arbitration ID, bits 27-24
0x10+2n    redirection entry n, bits 31-0
0x11+2n    redirection entry n, bits 63-32 (destination, bits 63-56)
=========  ======================================================

A redirection entry: vector (7-0), delivery mode (10-8: fixed, lowest
priority, SMI, NMI, INIT, ExtINT), destination mode (11: physical /
logical), delivery status (12, read-only: always idle here, delivery is
instantaneous), polarity (13), Remote IRR (14, read-only), trigger mode
(15: edge / level), mask (16), destination (63-56).  Reserved bits read 0;
other indexes read 0 and ignore writes.

Theory of operation:

* **Edge-triggered pins** send one message on each rising edge while the
  entry is unmasked; an edge on a masked pin is lost (datasheet 3.2.4:
  "edge-sensitive interrupts signaled on a masked interrupt pin are
  ignored").
* **Level-triggered pins** send a message while the pin is asserted, the
  entry is unmasked and Remote IRR is clear, and set Remote IRR: the local
  APIC has accepted it.  The local APIC's EOI for a level-triggered vector
  is broadcast back (``eoi``): every level entry with that vector clears
  Remote IRR and, if its pin is still asserted, sends again.  Unmasking an
  entry whose pin is asserted sends at once.  Changing an entry to edge
  clears its Remote IRR (as QEMU does).
* **Wiring (the PC board, as QEMU's):** ISA IRQ 0 (the PIT) arrives on pin
  2 and every other ISA IRQ n on pin n — the firmware tables describe IRQ0
  with an interrupt source override.  ISA IRQ 2 (the 8259 cascade) and pin
  0 are not connected to anything; lines 16-23 are pins 16-23 (PCI).
  Levels are logical ("asserted"), as QEMU's GSIs: the polarity bit is
  kept and read back, and the board's wiring already matches it.
* Messages go out on the APIC bus (``lapic.APICBus.deliver``): physical or
  logical destination, lowest priority arbitrated by APR, NMI to the CPU,
  INIT, and ExtINT (the receiving local APIC then runs an INTA cycle on
  the 8259).

``version`` 0x11 is the 82093AA (what the datasheet and this board
declare).  QEMU 7.2 reports 0x20, the later I/O APICs with an EOI register
at offset 0x40 (used for directed EOI); ``IOAPIC(version=0x20)`` gives that
register too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .bus import Bus
from .lapic import APICBus
from .state import State, capture, restore

if TYPE_CHECKING:
    from .pc import PCConfig

IOAPIC_BASE = 0xFEC00000
IOAPIC_PAGE = 0x1000
NUM_PINS = 24
VERSION_82093AA = 0x11

R_ID, R_VERSION, R_ARB, R_REDIR = 0x00, 0x01, 0x02, 0x10
OFF_IOREGSEL, OFF_IOWIN, OFF_EOI = 0x00, 0x10, 0x40

RTE_DELIVERY_STATUS = 1 << 12
RTE_POLARITY = 1 << 13
RTE_REMOTE_IRR = 1 << 14
RTE_LEVEL = 1 << 15
RTE_MASKED = 1 << 16
RTE_LOW_WRITABLE = 0x0001AFFF  # everything but delivery status and Remote IRR
RESERVED_MODES = frozenset({3, 6})  # delivery modes 011 and 110: nothing is sent
RTE_HIGH_WRITABLE = 0xFF000000

# ISA IRQ -> pin (the PC board); IRQ 2 is the 8259 cascade and reaches no pin.
ISA_IRQ_PIN = {0: 2, 2: None}


def irq_to_pin(line: int) -> int | None:
    """The I/O APIC pin an ISA IRQ / GSI line arrives on, or None."""
    if line in ISA_IRQ_PIN:
        return ISA_IRQ_PIN[line]
    return line if 0 <= line < NUM_PINS else None


class IOAPIC:
    """One 82093AA: an IRQ sink (``set_irq``) and an EOI listener of the APIC bus."""

    # ---- snapshots (hw/state.py) -----------------------------------------------------
    STATE_EXCLUDE = frozenset({"bus", "apic_bus"})  # collaborators and configuration, not state

    def save_state(self) -> State:
        """This device's state for a snapshot (its declared fields minus ``STATE_EXCLUDE``)."""
        return capture(self, self.STATE_EXCLUDE)

    def load_state(self, state: State) -> None:
        """Restore what ``save_state`` returned."""
        restore(self, state, self.STATE_EXCLUDE)

    def __init__(self, bus: Bus, apic_bus: APICBus | None, version: int = VERSION_82093AA) -> None:
        self.bus = bus
        self.apic_bus = apic_bus  # the local APICs, or None on a board without them
        self.version = version
        self.levels = 0  # pin levels: wires, kept across resets
        self.sent = [0] * NUM_PINS  # messages sent per pin (statistics)
        self.reset()

    def reset(self) -> None:
        """Power-up: ID 0, every entry masked (datasheet 3.2.4; what QEMU shows a kernel)."""
        self.ioregsel = 0
        self.id = 0
        self.arb_id = 0
        self.redir = [RTE_MASKED] * NUM_PINS

    # ---- the pins -------------------------------------------------------------------
    def set_irq(self, line: int, level: int) -> None:
        """An ISA IRQ or GSI changes level (bus.set_irq)."""
        pin = irq_to_pin(line)
        if pin is not None:
            self.set_pin(pin, level)

    def set_pin(self, pin: int, level: int) -> None:
        bit = 1 << pin
        old = self.levels & bit
        if level:
            self.levels |= bit
        else:
            self.levels &= ~bit
        entry = self.redir[pin]
        if entry & RTE_LEVEL:
            self._service_level(pin)
        elif level and not old and not entry & RTE_MASKED:
            self._send(pin)

    def _service_level(self, pin: int) -> None:
        """A level entry sends while asserted, unmasked and not waiting for its EOI."""
        entry = self.redir[pin]
        if self.levels >> pin & 1 and not entry & (RTE_MASKED | RTE_REMOTE_IRR):
            self.redir[pin] = entry | RTE_REMOTE_IRR
            self._send(pin)

    def _send(self, pin: int) -> None:
        entry = self.redir[pin]
        mode = (entry >> 8) & 7
        if mode in RESERVED_MODES or self.apic_bus is None:
            return
        self.sent[pin] += 1
        self.apic_bus.deliver(
            dest=(entry >> 56) & 0xFF,
            logical=bool(entry & (1 << 11)),
            mode=mode,
            vector=entry & 0xFF,
            level=bool(entry & RTE_LEVEL),
        )

    def eoi(self, vector: int) -> None:
        """The local APICs' EOI broadcast for a level-triggered ``vector``."""
        for pin, entry in enumerate(self.redir):
            if entry & RTE_LEVEL and entry & RTE_REMOTE_IRR and entry & 0xFF == vector:
                self.redir[pin] = entry & ~RTE_REMOTE_IRR
                self._service_level(pin)

    # ---- registers --------------------------------------------------------------------
    def read_register(self, index: int) -> int:
        if index == R_ID:
            return self.id << 24
        if index == R_VERSION:
            return ((NUM_PINS - 1) << 16) | self.version
        if index == R_ARB:
            return self.arb_id << 24
        if R_REDIR <= index < R_REDIR + 2 * NUM_PINS:
            entry = self.redir[(index - R_REDIR) >> 1]
            return (entry >> 32) & 0xFFFFFFFF if index & 1 else entry & 0xFFFFFFFF
        return 0

    def write_register(self, index: int, value: int) -> None:
        if index == R_ID:
            self.id = (value >> 24) & 0xF
            self.arb_id = self.id  # "loaded whenever the APIC ID register is loaded"
            return
        if not R_REDIR <= index < R_REDIR + 2 * NUM_PINS:
            return  # read-only or reserved
        pin = (index - R_REDIR) >> 1
        entry = self.redir[pin]
        if index & 1:
            entry = (entry & 0xFFFFFFFF) | ((value & RTE_HIGH_WRITABLE) << 32)
        else:
            entry = (entry & ~0xFFFFFFFF) | (entry & RTE_REMOTE_IRR) | (value & RTE_LOW_WRITABLE)
            if not entry & RTE_LEVEL:
                entry &= ~RTE_REMOTE_IRR
        self.redir[pin] = entry
        if entry & RTE_LEVEL:
            self._service_level(pin)
        self.bus.update_interrupt()

    def mmio_read(self, offset: int, size: int) -> int:
        offset &= 0xFF
        if offset == OFF_IOREGSEL:
            return self.ioregsel
        if offset == OFF_IOWIN and size == 4:
            return self.read_register(self.ioregsel)
        return 0

    def mmio_write(self, offset: int, size: int, value: int) -> None:
        offset &= 0xFF
        if offset == OFF_IOREGSEL:
            self.ioregsel = value & 0xFF
        elif offset == OFF_IOWIN and size == 4:
            self.write_register(self.ioregsel, value & 0xFFFFFFFF)
        elif offset == OFF_EOI and self.version >= 0x20:
            self.eoi(value & 0xFF)
            self.bus.update_interrupt()

    def describe(self) -> str:
        """The redirection table, like QEMU's ``info ioapic``."""
        modes = ("fixed", "lowpri", "smi", "res3", "nmi", "init", "res6", "extint")
        lines = [f"ioapic id={self.id:#x} sel={self.ioregsel:#04x} levels={self.levels:#08x}"]
        for pin, e in enumerate(self.redir):
            lines.append(
                f"  pin {pin:2d} {e:#018x} vec={e & 0xFF:3d} {modes[(e >> 8) & 7]:6s} "
                f"{'logical' if e & (1 << 11) else 'physical'} {'level' if e & RTE_LEVEL else 'edge'}"
                f"{' masked' if e & RTE_MASKED else ''}{' irr' if e & RTE_REMOTE_IRR else ''} dest={e >> 56:#x}"
            )
        return "\n".join(lines)


def attach(bus: Bus, config: PCConfig) -> IOAPIC:
    """The I/O APIC: an IRQ sink next to the 8259s, talking to the local APICs' bus."""
    apic_bus = bus.devices.get("lapic")
    if not isinstance(apic_bus, APICBus):
        apic_bus = None
    ioapic = IOAPIC(bus, apic_bus)
    if apic_bus is not None:
        apic_bus.ioapics.append(ioapic)
    bus.add_mmio(IOAPIC_BASE, IOAPIC_PAGE, ioapic, "ioapic")
    bus.add_irq_sink(ioapic)
    bus.add_reset_hook(ioapic.reset)
    return ioapic
