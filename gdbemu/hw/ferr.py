"""The PC's x87 error latch: FERR# to IRQ 13, cleared by a write to port 0xF0 (IGNNE#).

Theory of operation (the PC/AT's MS-DOS compatibility wiring, SDM vol. 1
appendix D; QEMU's ferr_irq and ioportF0 in hw/i386/pc.c):

* With CR0.NE = 0 an x87 (or MMX) instruction that finds an unmasked
  exception pending (FSW.ES) asserts FERR# instead of raising #MF
  (``core/ops/x87.py check_pending``); the core reports it through
  ``MachineEvents.ferr(cpu, True)`` and the Machine hands it to this latch,
  which raises IRQ 13 unless IGNNE# is asserted.  The instruction completes
  (as on QEMU); the interrupt is taken at the next instruction boundary.
* A write to port 0xF0 (the handler's acknowledgement) lowers IRQ 13 and
  asserts IGNNE#, so the pending exception stops raising the interrupt.
* When the x87 clears FSW.ES (FNCLEX, FNINIT, or a state load with ES clear)
  FERR# drops and the chipset deasserts IGNNE# (``ferr(cpu, False)``).
  Reads of port 0xF0 return 0xFF.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .bus import Bus
from .state import State, capture, restore

if TYPE_CHECKING:
    from .pc import PCConfig

FERR_PORT = 0xF0
FERR_IRQ = 13


class FerrLatch:
    """IRQ 13 from FERR#, IGNNE# from port 0xF0 (``bus.devices["ferr"]``)."""

    STATE_EXCLUDE = frozenset({"bus"})

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.ignne = False
        self.irq = False
        bus.add_port(FERR_PORT, 1, self)
        bus.add_reset_hook(self.reset)

    def reset(self) -> None:
        self.ignne = False
        if self.irq:
            self.irq = False
            self.bus.set_irq(FERR_IRQ, 0)

    def ferr(self, asserted: bool) -> None:
        """FERR# asserted by a waiting instruction, or dropped because FSW.ES was cleared."""
        if asserted:
            if not self.ignne and not self.irq:
                self.irq = True
                self.bus.set_irq(FERR_IRQ, 1)
        else:
            self.ignne = False

    def io_read(self, port: int, size: int) -> int:
        return (1 << (8 * size)) - 1

    def io_write(self, port: int, size: int, value: int) -> None:
        self.ignne = True
        if self.irq:
            self.irq = False
            self.bus.set_irq(FERR_IRQ, 0)

    # ---- snapshots (hw/state.py) -----------------------------------------------------
    def save_state(self) -> State:
        return capture(self, self.STATE_EXCLUDE)

    def load_state(self, state: State) -> None:
        restore(self, state, self.STATE_EXCLUDE)


def attach(bus: Bus, config: PCConfig) -> FerrLatch:
    del config
    return FerrLatch(bus)
