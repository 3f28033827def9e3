"""The two cascaded 8259A programmable interrupt controllers of a PC, and the ELCR.

Ports: master 0x20/0x21, slave 0xA0/0xA1, edge/level control registers
(PIIX/ICH "ELCR") 0x4D0 (IRQ 0-7) and 0x4D1 (IRQ 8-15).  The slave's INT
output drives the master's IR2, as on every AT-compatible board; ICW3 is
accepted but the wiring is fixed by the board.

Theory of operation (Intel 8259A datasheet, 231468-003):

* **Requests.**  Each chip has an IRR (requests), an IMR (masks, OCW1) and
  an ISR (in service).  An input is edge-triggered unless the ELCR bit for
  it, or ICW1.LTIM for the whole chip, selects level mode.  Edge mode: a
  low-to-high transition sets the IRR bit, which then stays set until the
  interrupt is acknowledged (QEMU's model: the datasheet asks the device to
  hold IR high until the first INTA; device models that pulse their line
  in one call rely on the latch, and a pulsed line must not be lost).
  Level mode: the IRR bit follows the input, and an acknowledge does not
  clear it, so a line still high after the EOI interrupts again.
* **Priority.**  Eight levels, IR0 highest unless rotated: ``priority_add``
  is the level with the highest priority (the one after the "bottom"
  level).  A request is forwarded (INT high) when it is unmasked and of
  higher priority than every level in service.  Special mask mode (OCW3
  SMM): an in-service level no longer blocks the others, only the IMR and
  the level's own ISR bit do ("enables interrupts from all other levels,
  lower as well as higher, that are not masked").  Special fully nested
  mode (ICW4.SFNM, master): IR2 in service does not block a new IR2
  request, so the slave's higher-priority levels can nest.
* **Acknowledge (INTA).**  The CPU (or the local APIC's ExtINT path) calls
  ``acknowledge()``: the master's highest request gets its ISR bit (unless
  AEOI), its edge request is cleared, and the vector is ``ICW2 base + IR``.
  IR2 asks the slave for its own acknowledge.  If the request vanished
  between INT and INTA the chip answers IR7 without setting an ISR bit
  (the spurious IRQ7); a vanished slave request gives the slave's IR7 (IRQ15)
  while the master still marks IR2 in service, which is why an OS must EOI
  the master, and only the master, on a spurious IRQ15.
* **EOI and rotation (OCW2)**: non-specific EOI clears the highest-priority
  ISR bit; specific EOI clears level L; the rotate variants make the cleared
  level the lowest priority; "set priority" names the bottom level; the
  automatic-rotation flag applies to AEOI mode.
* **OCW3**: RR/RIS select IRR or ISR for reads of the command port; P makes
  the next read a poll (an acknowledge that returns ``0x80 | level`` or 0
  without driving the CPU); ESMM/SMM set or clear special mask mode.
* **ICW1** starts initialization: IMR, ISR, rotation, AEOI, SMM and the
  read selection are cleared, the edge detectors are re-armed (a line that
  is already high must go low and high again), ICW2 (vector base, bits
  7-3), ICW3 if cascaded, ICW4 if IC4 follow on the data port.  ICW4.uPM=0
  (8080 mode) is accepted but vectors are formed as in 8086 mode: an x86
  CPU has no other INTA protocol.

gdbemu has no BIOS, so ``attach`` and ``reset`` leave the pair as SeaBIOS
leaves it when it jumps to a ``-kernel`` (measured on QEMU 7.2): master
vector base 0x08, slave 0x70, 8086 mode, normal EOI, IMR 0xB8 / 0x8E, ELCR
0.  ``power_on_reset`` gives the raw chip state for tests.

The INT output is exported as ``output()`` and through ``on_intr``
(level-change callback): the local APIC's LINT0 takes it (lapic.py); with
no local APIC on the board the pair is itself the CPU's interrupt source.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .bus import Bus
from .state import State, capture, restore

if TYPE_CHECKING:
    from .pc import PCConfig

MASTER_PORTS = (0x20, 0x21)
SLAVE_PORTS = (0xA0, 0xA1)
ELCR_PORTS = (0x4D0, 0x4D1)
CASCADE_IRQ = 2

# ELCR bits that may be set (PIIX3: IRQ 0, 1, 2, 8 and 13 are always edge)
ELCR_MASK_MASTER = 0xF8
ELCR_MASK_SLAVE = 0xDE

# What SeaBIOS leaves before booting a -kernel (measured on QEMU 7.2 + SeaBIOS)
FIRMWARE_BASE_MASTER = 0x08
FIRMWARE_BASE_SLAVE = 0x70
FIRMWARE_IMR_MASTER = 0xB8  # IRQ 0, 1, 2 (cascade), 6 enabled
FIRMWARE_IMR_SLAVE = 0x8E  # IRQ 8, 12, 13, 14 enabled


class I8259:
    """One 8259A chip: registers, priority resolver and command decoding."""

    # ---- snapshots (hw/state.py) -----------------------------------------------------
    STATE_EXCLUDE = frozenset[str]()  # collaborators and configuration, not state

    def save_state(self) -> State:
        """This device's state for a snapshot (its declared fields minus ``STATE_EXCLUDE``)."""
        return capture(self, self.STATE_EXCLUDE)

    def load_state(self, state: State) -> None:
        """Restore what ``save_state`` returned."""
        restore(self, state, self.STATE_EXCLUDE)

    def __init__(self, master: bool, elcr_mask: int) -> None:
        self.master = master
        self.elcr_mask = elcr_mask
        self.elcr = 0
        self.levels = 0  # the input pins as they are now (never reset: they are wires)
        self.power_on_reset()

    # ---- state ------------------------------------------------------------------
    def power_on_reset(self) -> None:
        """The chip as after power-up: uninitialized, nothing masked, ELCR cleared."""
        self.elcr = 0
        self.init_reset()

    def init_reset(self) -> None:
        """What ICW1 clears (datasheet, "Initialization Command Words")."""
        self.ltim = False
        self.irr = self.levels & self.elcr
        self.imr = 0
        self.isr = 0
        self.priority_add = 0
        self.irq_base = 0
        self.read_isr = False
        self.poll = False
        self.special_mask = False
        self.init_state = 0  # 0: operational; 1/2/3: expecting ICW2/ICW3/ICW4
        self.auto_eoi = False
        self.rotate_on_auto_eoi = False
        self.special_fully_nested = False
        self.init4 = False
        self.single = False
        self.icw3 = 0

    def level_mask(self) -> int:
        """Inputs in level-triggered mode: ICW1.LTIM makes all of them level, else the ELCR decides."""
        return 0xFF if self.ltim else self.elcr

    # ---- inputs -------------------------------------------------------------------
    def set_input(self, irq: int, level: int) -> None:
        """Drive input IR``irq``: edge mode latches a rising edge, level mode follows the pin."""
        bit = 1 << irq
        old = self.levels & bit
        if level:
            self.levels |= bit
            if self.level_mask() & bit or not old:
                self.irr |= bit
        else:
            self.levels &= ~bit
            if self.level_mask() & bit:
                self.irr &= ~bit

    # ---- priority resolver -------------------------------------------------------
    def _priority(self, mask: int) -> int:
        """Priority (0 = highest) of the best level in ``mask``, 8 if empty."""
        if not mask:
            return 8
        p = 0
        while not mask & (1 << ((p + self.priority_add) & 7)):
            p += 1
        return p

    def pending_irq(self) -> int:
        """The level the chip would present at INTA now, or -1 (this is the INT output)."""
        requests = self.irr & ~self.imr
        if not requests:
            return -1
        if self.special_mask:
            # SMM: any unmasked request not itself in service (datasheet, "Special Mask Mode").
            requests &= ~self.isr
            if not requests:
                return -1
            return (self._priority(requests) + self.priority_add) & 7
        prio = self._priority(requests)
        in_service = self.isr
        if self.special_fully_nested and self.master:
            in_service &= ~(1 << CASCADE_IRQ)
        if prio < self._priority(in_service):
            return (prio + self.priority_add) & 7
        return -1

    def intack(self, irq: int) -> None:
        """The INTA cycle for ``irq``: ISR bit (unless AEOI), edge request consumed."""
        bit = 1 << irq
        if self.auto_eoi:
            if self.rotate_on_auto_eoi:
                self.priority_add = (irq + 1) & 7
        else:
            self.isr |= bit
        if not self.level_mask() & bit:
            self.irr &= ~bit

    # ---- command decoding --------------------------------------------------------
    def write_command(self, value: int) -> None:
        """Port 0x20/0xA0: ICW1, OCW2 or OCW3 (told apart by bits 4 and 3)."""
        if value & 0x10:  # ICW1
            self.init_reset()
            self.init_state = 1
            self.init4 = bool(value & 0x01)
            self.single = bool(value & 0x02)
            self.ltim = bool(value & 0x08)
            self.irr = self.levels & self.level_mask()
        elif value & 0x08:  # OCW3
            if value & 0x04:
                self.poll = True
            if value & 0x02:
                self.read_isr = bool(value & 0x01)
            if value & 0x40:
                self.special_mask = bool(value & 0x20)
        else:  # OCW2: R SL EOI L2 L1 L0
            cmd = value >> 5
            level = value & 7
            if cmd in (0, 4):  # clear / set rotate in automatic EOI mode
                self.rotate_on_auto_eoi = cmd == 4
            elif cmd in (1, 5):  # non-specific EOI, rotate on non-specific EOI
                prio = self._priority(self.isr)
                if prio != 8:
                    irq = (prio + self.priority_add) & 7
                    self.isr &= ~(1 << irq)
                    if cmd == 5:
                        self.priority_add = (irq + 1) & 7
            elif cmd == 3:  # specific EOI
                self.isr &= ~(1 << level)
            elif cmd == 7:  # rotate on specific EOI
                self.isr &= ~(1 << level)
                self.priority_add = (level + 1) & 7
            elif cmd == 6:  # set priority: L is the bottom level
                self.priority_add = (level + 1) & 7
            # cmd == 2: no operation

    def write_data(self, value: int) -> None:
        """Port 0x21/0xA1: the next ICW while initializing, else OCW1 (the IMR)."""
        state = self.init_state
        if state == 0:
            self.imr = value
        elif state == 1:
            self.irq_base = value & 0xF8
            self.init_state = (3 if self.init4 else 0) if self.single else 2
        elif state == 2:
            self.icw3 = value
            self.init_state = 3 if self.init4 else 0
        else:
            self.special_fully_nested = bool(value & 0x10)
            self.auto_eoi = bool(value & 0x02)
            self.init_state = 0

    def read(self, port_index: int) -> int:
        """A read of the command (0) or data (1) port; a pending poll turns either into an INTA."""
        if self.poll:
            self.poll = False
            irq = self.pending_irq()
            if irq < 0:
                return 0
            self.intack(irq)
            return 0x80 | irq
        if port_index == 0:
            return self.isr if self.read_isr else self.irr
        return self.imr


class PICPair:
    """Master and slave 8259A wired as on a PC: the ISA IRQ sink and the INTR source."""

    # ---- snapshots (hw/state.py) -----------------------------------------------------
    STATE_EXCLUDE = frozenset({"bus"})  # collaborators and configuration, not state

    def save_state(self) -> State:
        """This device's state for a snapshot (its declared fields minus ``STATE_EXCLUDE``)."""
        return capture(self, self.STATE_EXCLUDE)

    def load_state(self, state: State) -> None:
        """Restore what ``save_state`` returned."""
        restore(self, state, self.STATE_EXCLUDE)

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.master = I8259(True, ELCR_MASK_MASTER)
        self.slave = I8259(False, ELCR_MASK_SLAVE)
        self.external_irq2 = 0  # an ISA device on line 2 (none on a PC) ORs with the slave's INT
        self.intr = False
        # Level-change callbacks for the INT pin (the local APIC's LINT0).
        self.on_intr: list[Callable[[bool], None]] = []
        self.spurious = [0, 0]  # spurious acknowledges answered by master / slave (statistics)
        self.firmware_setup()

    # ---- resets -----------------------------------------------------------------------
    def power_on_reset(self) -> None:
        """Both chips as after power-up (uninitialized, nothing masked, base 0)."""
        self.master.power_on_reset()
        self.slave.power_on_reset()
        self._update()

    def firmware_setup(self) -> None:
        """The state SeaBIOS leaves when it boots a ``-kernel``: what a kernel finds at entry."""
        self.master.power_on_reset()
        self.slave.power_on_reset()
        for chip, base, imr in (
            (self.master, FIRMWARE_BASE_MASTER, FIRMWARE_IMR_MASTER),
            (self.slave, FIRMWARE_BASE_SLAVE, FIRMWARE_IMR_SLAVE),
        ):
            chip.write_command(0x11)  # ICW1: edge, cascade, ICW4 follows
            chip.write_data(base)  # ICW2
            chip.write_data(0x04 if chip.master else 0x02)  # ICW3
            chip.write_data(0x01)  # ICW4: 8086 mode, normal EOI
            chip.write_data(imr)  # OCW1
        self._update()

    def reset(self) -> None:
        """System reset: the board comes back in the post-firmware state (see the module doc)."""
        self.firmware_setup()

    # ---- the ISA side -------------------------------------------------------------
    def set_irq(self, line: int, level: int) -> None:
        """ISA IRQ ``line`` (0-15) changes level; other lines are not wired to the 8259s."""
        if line < 8:
            if line == CASCADE_IRQ:
                self.external_irq2 = 1 if level else 0
                self._drive_cascade()
            else:
                self.master.set_input(line, level)
        elif line < 16:
            self.slave.set_input(line - 8, level)
            self._drive_cascade()
        else:
            return
        self._update()

    def _drive_cascade(self) -> None:
        """The slave's INT output (or an ISA device on IRQ2) is the master's IR2 input."""
        level = self.slave.pending_irq() >= 0 or self.external_irq2
        if bool(self.master.levels & (1 << CASCADE_IRQ)) != bool(level):
            self.master.set_input(CASCADE_IRQ, 1 if level else 0)

    def _update(self) -> None:
        """Recompute INT after any state change; tell LINT0 listeners when the pin moves."""
        self._drive_cascade()
        intr = self.master.pending_irq() >= 0
        if intr != self.intr:
            self.intr = intr
            for fn in self.on_intr:
                fn(intr)

    # ---- the CPU side -------------------------------------------------------------
    def output(self) -> bool:
        """The INT pin of the master (the CPU's INTR in PIC mode)."""
        return self.intr

    def acknowledge(self) -> int:
        """The INTA cycle: returns the vector and updates ISR/IRR (spurious IR7 if nothing is left)."""
        master = self.master
        irq = master.pending_irq()
        if irq < 0:
            self.spurious[0] += 1
            vector = master.irq_base + 7
        elif irq == CASCADE_IRQ:
            slave_irq = self.slave.pending_irq()
            if slave_irq >= 0:
                self.slave.intack(slave_irq)
            else:
                self.spurious[1] += 1
                slave_irq = 7
            vector = self.slave.irq_base + slave_irq
            master.intack(irq)
        else:
            vector = master.irq_base + irq
            master.intack(irq)
        self._update()
        return vector

    # interrupt-source protocol, used when the board has no local APIC
    def has_interrupt(self) -> bool:
        return self.intr

    # ---- ports ------------------------------------------------------------------------
    def io_read(self, port: int, size: int) -> int:
        if port in ELCR_PORTS:
            return (self.master if port == ELCR_PORTS[0] else self.slave).elcr
        chip = self.master if port < 0x80 else self.slave
        value = chip.read(port & 1)
        self._update()  # a poll read is an acknowledge
        self.bus.update_interrupt()
        return value

    def io_write(self, port: int, size: int, value: int) -> None:
        value &= 0xFF
        if port in ELCR_PORTS:
            chip = self.master if port == ELCR_PORTS[0] else self.slave
            chip.elcr = value & chip.elcr_mask
            level_mask = chip.level_mask()
            chip.irr = (chip.irr & ~level_mask) | (chip.levels & level_mask)
        else:
            chip = self.master if port < 0x80 else self.slave
            if port & 1:
                chip.write_data(value)
            else:
                chip.write_command(value)
        self._update()
        self.bus.update_interrupt()

    def describe(self) -> str:
        """One line per chip, like QEMU's ``info pic``."""
        out = []
        for i, c in enumerate((self.master, self.slave)):
            out.append(
                f"pic{i}: irr={c.irr:02x} imr={c.imr:02x} isr={c.isr:02x} hprio={c.priority_add} "
                f"irq_base={c.irq_base:02x} rr_sel={int(c.read_isr)} elcr={c.elcr:02x} "
                f"fnm={int(c.special_fully_nested)}"
            )
        return "\n".join(out)


def attach(bus: Bus, config: PCConfig) -> PICPair:
    """Put the pair on the ISA ports, register it as an IRQ sink and (until a local APIC
    takes LINT0 over) as the CPU's interrupt source."""
    pic = PICPair(bus)
    for port in MASTER_PORTS + SLAVE_PORTS + ELCR_PORTS:
        bus.add_port(port, 1, pic)
    bus.add_irq_sink(pic)
    bus.add_interrupt_source(pic)
    bus.add_reset_hook(pic.reset)
    return pic
