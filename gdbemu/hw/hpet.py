"""The HPET at 0xFED00000: a 64-bit main counter at 100 MHz from virtual time and three comparators.

Theory of operation (IA-PC HPET Specification 1.0a, section 2.3 register
map; QEMU ``hw/timer/hpet.c`` for the values a ``pc`` machine shows):

* General Capabilities and ID (0x000): REV_ID 1, NUM_TIM_CAP 2 (three
  timers), COUNT_SIZE_CAP (64-bit counter), LEG_RT_CAP, vendor 0x8086,
  COUNTER_CLK_PERIOD 10,000,000 fs (10 ns: 100 MHz, QEMU's).
* General Configuration (0x010): ENABLE_CNF (bit 0) runs the main counter;
  LEG_RT_CNF (bit 1) routes timer 0 to ISA IRQ 0 and timer 1 to IRQ 8
  (the legacy replacement route, section 2.3.9.2.2), which is how Linux
  uses the HPET for its clock event device.
* General Interrupt Status (0x020): Tn_INT_STS for level-triggered timers,
  write 1 to clear (the line drops).
* Main Counter (0x0F0): ``(now_ns - start_ns) // 10`` plus the value it held
  when last stopped; writable while halted.  Read at an exact instruction
  count (a read inside a multi-instruction TB restarts the instruction).
* Timer N (0x100 + 0x20 N): configuration (INT_TYPE level/edge, INT_ENB,
  TYPE periodic, VAL_SET, 32MODE, INT_ROUTE; capabilities PER_INT_CAP and
  SIZE_CAP on every timer, route capability GSIs 16-23 for the non-legacy
  route -- QEMU's ``intcap``), comparator (0x108; in periodic mode a write
  with VAL_SET sets the comparator and the period, a write without it the
  period), FSB route (stored).  When the main counter reaches a comparator
  the timer interrupts (edge: a pulse; level: Tn_INT_STS set and the line
  held until cleared); a periodic timer adds its period.  32-bit timers
  compare and wrap on the low 32 bits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .bus import Bus
from .state import State, capture, restore

if TYPE_CHECKING:
    from .pc import PCConfig

HPET_BASE = 0xFED00000
HPET_SIZE = 0x400
NUM_TIMERS = 3
PERIOD_FS = 10_000_000  # 10 ns
TICK_NS = PERIOD_FS // 1_000_000
CAPABILITIES = (PERIOD_FS << 32) | (0x8086 << 16) | (1 << 15) | (1 << 13) | ((NUM_TIMERS - 1) << 8) | 1
ROUTE_CAP = 0x00FF0000  # GSIs 16-23

CFG_ENABLE = 1 << 0
CFG_LEGACY = 1 << 1
TN_INT_LEVEL = 1 << 1
TN_INT_ENB = 1 << 2
TN_PERIODIC = 1 << 3
TN_PER_CAP = 1 << 4
TN_SIZE_CAP = 1 << 5
TN_VAL_SET = 1 << 6
TN_32MODE = 1 << 8
TN_ROUTE_SHIFT = 9
TN_ROUTE_MASK = 0x1F << TN_ROUTE_SHIFT
TN_WRITABLE = TN_INT_LEVEL | TN_INT_ENB | TN_PERIODIC | TN_VAL_SET | TN_32MODE | TN_ROUTE_MASK | (1 << 14)
MASK64 = (1 << 64) - 1


class HPETTimer:
    # ---- snapshots (hw/state.py) -----------------------------------------------------
    STATE_EXCLUDE = frozenset({"hpet"})  # collaborators and configuration, not state

    def save_state(self) -> State:
        """One comparator's registers."""
        return capture(self, self.STATE_EXCLUDE)

    def load_state(self, state: State) -> None:
        """Restore what ``save_state`` returned."""
        restore(self, state, self.STATE_EXCLUDE)

    def __init__(self, hpet: HPET, index: int) -> None:
        self.hpet = hpet
        self.index = index
        self.timer = hpet.clock.new_timer(self.fire)
        self.interrupts = 0  # comparator matches so far (tests read it)
        self.reset()

    def reset(self) -> None:
        self.config = TN_PER_CAP | TN_SIZE_CAP
        self.comparator = MASK64
        self.period = 0
        self.fsb = 0
        self.timer.cancel()

    @property
    def capability(self) -> int:
        return (ROUTE_CAP << 32) | self.config

    def line(self) -> int:
        if self.hpet.config & CFG_LEGACY and self.index < 2:
            return (0, 8)[self.index]
        return (self.config & TN_ROUTE_MASK) >> TN_ROUTE_SHIFT

    def arm(self) -> None:
        """Schedule the next match of the comparator with the main counter (if enabled)."""
        hpet = self.hpet
        if not hpet.config & CFG_ENABLE:
            self.timer.cancel()
            return
        now = hpet.counter()
        if self.config & TN_32MODE:
            delta = (self.comparator - now) & 0xFFFFFFFF
        else:
            delta = (self.comparator - now) & MASK64
        if delta == 0:
            delta = 1 << (32 if self.config & TN_32MODE else 64)
        self.timer.mod(hpet.clock.now() + delta * TICK_NS)

    def fire(self) -> None:
        hpet = self.hpet
        if self.config & TN_PERIODIC and self.period:
            mask = 0xFFFFFFFF if self.config & TN_32MODE else MASK64
            now = hpet.counter()
            while ((now - self.comparator) & mask) < (1 << 31 if self.config & TN_32MODE else 1 << 63):
                self.comparator = (self.comparator + self.period) & mask
        if self.config & TN_INT_ENB:
            line = self.line()
            if self.config & TN_INT_LEVEL:
                hpet.isr |= 1 << self.index
                hpet.bus.set_irq(line, 1)
            else:
                hpet.bus.set_irq(line, 1)
                hpet.bus.set_irq(line, 0)
        self.interrupts += 1
        self.arm()


class HPET:
    """The event timer block (``bus.devices["hpet"]``)."""

    capabilities = CAPABILITIES

    # ---- snapshots (hw/state.py) -----------------------------------------------------
    STATE_EXCLUDE = frozenset({"bus", "clock"})  # collaborators and configuration, not state

    def save_state(self) -> State:
        """The general registers and each comparator's (``timers``)."""
        return capture(self, self.STATE_EXCLUDE)

    def load_state(self, state: State) -> None:
        """Restore what ``save_state`` returned."""
        restore(self, state, self.STATE_EXCLUDE)

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.clock = bus.clock
        self.timers = [HPETTimer(self, i) for i in range(NUM_TIMERS)]
        self.reset()

    def reset(self) -> None:
        self.config = 0
        self.isr = 0
        self.counter_base = 0  # the counter's value at start_ns (or while stopped)
        self.start_ns = 0
        for t in self.timers:
            t.reset()

    def counter(self) -> int:
        if not self.config & CFG_ENABLE:
            return self.counter_base
        return (self.counter_base + (self.clock.now() - self.start_ns) // TICK_NS) & MASK64

    # ---- MMIO --------------------------------------------------------------------------
    def _read64(self, reg: int) -> int:
        if reg == 0x000:
            return CAPABILITIES
        if reg == 0x010:
            return self.config
        if reg == 0x020:
            return self.isr
        if reg == 0x0F0:
            if self.bus.tb_insns() > 1:
                self.bus.restart_instruction()  # read it at an exact icount
            return self.counter()
        if 0x100 <= reg < 0x100 + 0x20 * NUM_TIMERS:
            t = self.timers[(reg - 0x100) // 0x20]
            field = (reg - 0x100) % 0x20
            if field == 0:
                return t.capability
            if field == 8:
                return t.comparator & (0xFFFFFFFF if t.config & TN_32MODE else MASK64)
            if field == 0x10:
                return t.fsb
        return 0

    def mmio_read(self, offset: int, size: int) -> int:
        reg, shift = offset & ~7, 8 * (offset & 7)
        return (self._read64(reg) >> shift) & ((1 << (8 * size)) - 1)

    def mmio_write(self, offset: int, size: int, value: int) -> None:
        reg, shift = offset & ~7, 8 * (offset & 7)
        mask = ((1 << (8 * size)) - 1) << shift
        value = (value << shift) & mask
        if reg == 0x010:
            old = self.config
            new = ((old & ~mask) | value) & (CFG_ENABLE | CFG_LEGACY)
            if (old ^ new) & CFG_ENABLE:
                if new & CFG_ENABLE:
                    self.start_ns = self.clock.now()
                else:
                    self.counter_base = self.counter()
            self.config = new
            for t in self.timers:
                t.arm()
        elif reg == 0x020:
            cleared = value & self.isr
            self.isr &= ~cleared
            for t in self.timers:
                if cleared & (1 << t.index):
                    self.bus.set_irq(t.line(), 0)
        elif reg == 0x0F0:
            if not self.config & CFG_ENABLE:
                self.counter_base = (self.counter_base & ~mask) | value
                for t in self.timers:
                    t.arm()
        elif 0x100 <= reg < 0x100 + 0x20 * NUM_TIMERS:
            t = self.timers[(reg - 0x100) // 0x20]
            field = (reg - 0x100) % 0x20
            if field == 0:
                cfg = (t.config & ~mask) | value
                t.config = (t.config & ~TN_WRITABLE) | (cfg & TN_WRITABLE)
                if not t.config & TN_INT_LEVEL and self.isr & (1 << t.index):
                    self.isr &= ~(1 << t.index)
                    self.bus.set_irq(t.line(), 0)
            elif field == 8:
                width = 0xFFFFFFFF if t.config & TN_32MODE else MASK64
                new = ((t.comparator & ~mask) | value) & width
                if t.config & TN_PERIODIC:
                    if t.config & TN_VAL_SET:
                        t.comparator = new
                    t.period = ((t.period & ~mask) | value) & width
                    t.config &= ~TN_VAL_SET
                else:
                    t.comparator = new
            elif field == 0x10:
                t.fsb = (t.fsb & ~mask) | value
            t.arm()


def attach(bus: Bus, config: PCConfig) -> HPET:
    hpet = HPET(bus)
    bus.add_mmio(HPET_BASE, HPET_SIZE, hpet, "hpet")
    bus.add_reset_hook(hpet.reset)
    return hpet
