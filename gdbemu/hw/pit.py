"""Intel 8254 programmable interval timer at ports 0x40-0x43 (channel 0 -> IRQ0).

Theory of operation (Intel 8254 datasheet, order no. 231164: "Control Word
Format", "Read Operations" incl. Counter Latch and Read-Back commands, "Mode
Definitions" and figure "Gate Pin Operations Summary"):

* Time is counted, never ticked.  A channel remembers the virtual time its
  count was loaded (``load_ns``); the number of CLK pulses since then is
  ``(now - load_ns) * 1193182 // 10**9``, and the counter value and OUT
  follow from the mode by arithmetic.  Only channel 0 (IRQ0) needs to act
  in time: after every change it arms one virtual-clock timer for its next
  OUT transition and drives ``bus.set_irq(0, out)`` there, so a mode-2
  timer at divisor N gives a rising IRQ0 edge every N / 1.193182 MHz of
  virtual time, on the same instruction in every run.
* OUT per mode, with d CLK pulses since the count N was loaded:
  mode 0 (interrupt on terminal count): low until d = N, then high.
  mode 1 (hardware one-shot): high until a gate rising edge, then low for N.
  mode 2 (rate generator): high, low for the one pulse where the counter is
  1 (d mod N = N-1); rising edges at d = N, 2N, ...  (QEMU reports this
  mode with OUT inverted; the datasheet decides).
  mode 3 (square wave): high for ceil(N/2), low for floor(N/2) pulses.
  mode 4 / 5 (software / hardware strobe): high, low for one pulse at d = N.
  After the control word and before a count: low in mode 0, high otherwise.
  The pulse that loads the count register into the counting element is not
  modelled (transitions come one CLK, 838 ns, earlier than on the chip).
* Gate (channel 2 from port 0x61; channels 0 and 1 are tied high): modes
  0/4 pause while it is low; modes 2/3 pause with OUT forced high and reload
  on the rising edge; modes 1/5 trigger on the rising edge.
* A new count written in modes 2/3 without a control word takes effect at
  the end of the current period; in modes 0/4 it restarts counting; in
  modes 1/5 it is used from the next trigger.  In mode 0, writing the first
  byte of a two-byte count stops counting until the second arrives.
* Reads: counter latch (control word with RW = 00) freezes the value until
  it has been read; the read-back command (0xC0 | ...) latches the count
  and/or a status byte (OUT, NULL COUNT, RW, mode, BCD) of any channels.
  BCD channels count 9999..0 and report the counter in BCD.
* Power-on (and reset): no channel counts until it is programmed (mode 3
  reported, OUT high, channel 2's gate low), so nothing is armed on the
  virtual clock.  The 18.2 Hz mode-2 timer a kernel finds on QEMU is
  programmed by the firmware (boot/firmware.py, through these ports).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from ..clock import NS_PER_SEC
from .bus import Bus
from .state import State, capture, restore

if TYPE_CHECKING:
    from .pc import PCConfig

PIT_FREQ = 1_193_182
PIT_IRQ = 0


def ticks_to_ns(ticks: int) -> int:
    """Virtual ns from a channel's load time to the start of CLK pulse ``ticks`` (rounded up)."""
    return -(-ticks * NS_PER_SEC // PIT_FREQ)


def _from_bcd(value: int) -> int:
    return ((value >> 12) & 0xF) * 1000 + ((value >> 8) & 0xF) * 100 + ((value >> 4) & 0xF) * 10 + (value & 0xF)


def _to_bcd(value: int) -> int:
    value %= 10000
    return ((value // 1000) << 12) | (((value // 100) % 10) << 8) | (((value // 10) % 10) << 4) | (value % 10)


class Channel:
    """One counter of the 8254 (all times are virtual ns from ``bus.clock``)."""

    # ---- snapshots (hw/state.py) -----------------------------------------------------
    STATE_EXCLUDE = frozenset[str]()  # collaborators and configuration, not state

    def save_state(self) -> State:
        """This device's state for a snapshot (its declared fields minus ``STATE_EXCLUDE``)."""
        return capture(self, self.STATE_EXCLUDE)

    def load_state(self, state: State) -> None:
        """Restore what ``save_state`` returned."""
        restore(self, state, self.STATE_EXCLUDE)

    def __init__(self, index: int, gate: bool) -> None:
        self.index = index
        self.reset(gate)

    def reset(self, gate: bool) -> None:
        self.mode_bits = 3  # as programmed (6 and 7 alias 2 and 3)
        self.mode = 3
        self.bcd = False
        self.rw = 0  # 1 LSB, 2 MSB, 3 LSB then MSB; 0 = never programmed
        self.gate = gate
        self.n = 0x10000  # count in use
        self.n_next = 0x10000  # modes 1/5: the count the next trigger loads
        self.count_reg = 0  # the count register as last written (raw)
        self.load_ns: int | None = None  # counting started here; None = no count yet
        self.out_idle = True  # OUT before a count is loaded
        self.triggered = False  # modes 1/5: a gate rising edge started the one-shot
        self.frozen: int | None = None  # elapsed pulses while the gate holds counting
        self.pending: tuple[int, int] | None = None  # modes 2/3: (n, load_ns) at the period end
        self.latch: list[int] = []  # latched count bytes still to read
        self.status_latch: int | None = None
        self.read_msb = False  # rw 3: next live read returns the MSB
        self.write_msb = False  # rw 3: next write is the MSB
        self.write_lsb = 0
        self.null_count = True

    # ---- arithmetic on pulses ------------------------------------------------------
    def _effective(self, raw: int) -> int:
        if self.bcd:
            return _from_bcd(raw) or 10000
        return raw or 0x10000

    def sync(self, now: int) -> None:
        """Commit a count that was waiting for the end of a period (modes 2/3)."""
        if self.pending is not None and self.frozen is None and now >= self.pending[1]:
            self.n, self.load_ns = self.pending
            self.pending = None

    def elapsed(self, now: int) -> int:
        if self.frozen is not None:
            return self.frozen
        assert self.load_ns is not None
        return (now - self.load_ns) * PIT_FREQ // NS_PER_SEC

    def _counting(self) -> bool:
        if self.load_ns is None:
            return False
        return not (self.mode in (1, 5) and not self.triggered)

    def out(self, now: int) -> bool:
        self.sync(now)
        if self.load_ns is None:
            return self.out_idle
        mode = self.mode
        if mode in (2, 3) and not self.gate:
            return True
        if mode in (1, 5) and not self.triggered:
            return True
        d = self.elapsed(now)
        n = self.n
        if mode in (0, 1):
            return d >= n
        if mode == 2:
            return d % n != n - 1
        if mode == 3:
            return d % n < (n + 1) // 2
        return d != n  # modes 4, 5

    def counter(self, now: int) -> int:
        """The counting element's value (what a latch captures), in binary.

        The hot path of a guest polling the timer (counter latch, two reads):
        ``sync``/``_counting``/``elapsed`` are inlined.
        """
        if self.pending is not None:
            self.sync(now)
        modulus = 10000 if self.bcd else 0x10000
        load = self.load_ns
        mode = self.mode
        if load is None or (mode == 1 or mode == 5) and not self.triggered:
            return self._effective(self.count_reg) % modulus  # not counting yet: the count register
        frozen = self.frozen
        d = frozen if frozen is not None else (now - load) * PIT_FREQ // NS_PER_SEC
        n = self.n
        if mode == 2:
            return (n - d % n) % modulus
        if mode == 3:
            p = d % n
            half = (n + 1) // 2
            if n & 1:  # odd: the high half lasts one pulse longer
                if p < half:
                    return n if p == 0 else n + 1 - 2 * p
                q = p - half
                return n if q == 0 else n - 1 - 2 * q
            return (n - 2 * (p % (n // 2))) % modulus
        return (n - d) % modulus  # modes 0, 1, 4, 5 wrap around after terminal count

    def next_transition_ns(self, now: int) -> int | None:
        """Virtual time of the next OUT change after ``now`` (None: OUT stays as it is)."""
        self.sync(now)
        if not self._counting() or self.frozen is not None:
            return None
        if self.mode in (2, 3) and not self.gate:
            return None
        assert self.load_ns is not None
        d = self.elapsed(now)
        n = self.n
        mode = self.mode
        if mode in (0, 1):
            t = n if d < n else None
        elif mode == 2:
            p = d % n
            t = d + (n - 1 - p) if p < n - 1 else d + 1
        elif mode == 3:
            p = d % n
            half = (n + 1) // 2
            t = d + (half - p) if p < half else d + (n - p)
        else:
            t = n if d < n else (n + 1 if d == n else None)
        if t is None:
            return None
        when = self.load_ns + ticks_to_ns(t)
        if self.pending is not None and when >= self.pending[1]:
            when = self.pending[1]
        return when

    # ---- programming -----------------------------------------------------------------
    def control(self, value: int) -> None:
        """A control word for this channel with RW != 0: mode, access, BCD; counting stops."""
        self.rw = (value >> 4) & 3
        self.mode_bits = (value >> 1) & 7
        self.mode = self.mode_bits & 3 if self.mode_bits >= 6 else self.mode_bits
        self.bcd = bool(value & 1)
        self.load_ns = None
        self.pending = None
        self.frozen = None
        self.triggered = False
        self.n_next = self.n
        self.out_idle = self.mode != 0
        self.latch = []
        self.status_latch = None
        self.read_msb = False
        self.write_msb = False
        self.null_count = True

    def write(self, value: int, now: int) -> None:
        rw = self.rw
        if rw == 0:
            return  # not programmed: the datasheet's counters need a control word first
        if rw == 1:
            self.load(value, now)
        elif rw == 2:
            self.load(value << 8, now)
        elif not self.write_msb:
            self.write_lsb = value
            self.write_msb = True
            if self.mode == 0:
                # Writing the first byte stops the count; OUT goes low (datasheet, mode 0).
                self.sync(now)
                self.load_ns = None
                self.pending = None
                self.out_idle = False
        else:
            self.write_msb = False
            self.load(self.write_lsb | (value << 8), now)

    def load(self, raw: int, now: int) -> None:
        """A complete count was written."""
        self.sync(now)
        self.count_reg = raw
        self.null_count = True
        n = self._effective(raw)
        if self.mode in (2, 3):
            n = max(n, 2)  # a count of 1 is illegal in modes 2 and 3 (datasheet)
        mode = self.mode
        if mode in (2, 3) and self.load_ns is not None and self.frozen is None and self.gate:
            # The current period finishes first; the new count starts at its end.
            d = self.elapsed(now)
            end = (d // self.n + 1) * self.n
            self.pending = (n, self.load_ns + ticks_to_ns(end))
            return
        if mode in (1, 5):
            self.n_next = n
            if self.load_ns is None:
                self.n = n
                self.load_ns = now
            return
        self.n = n
        self.pending = None
        self.load_ns = now
        self.frozen = None
        if not self.gate and mode in (0, 2, 3, 4):
            self.frozen = 0

    def set_gate(self, level: bool, now: int) -> None:
        self.sync(now)
        if level == self.gate:
            return
        mode = self.mode
        if self.load_ns is not None:
            if mode in (0, 4):
                if not level:
                    self.frozen = self.elapsed(now)
                elif self.frozen is not None:
                    self.load_ns = now - ticks_to_ns(self.frozen)
                    self.frozen = None
            elif mode in (2, 3):
                if not level:
                    self.frozen = self.elapsed(now)
                else:  # rising edge: reload and restart the period
                    if self.pending is not None:
                        self.n = self.pending[0]
                        self.pending = None
                    self.load_ns = now
                    self.frozen = None
            elif level:  # modes 1, 5: rising edge triggers
                self.n = self.n_next
                self.load_ns = now
                self.triggered = True
        self.gate = level

    # ---- reading -------------------------------------------------------------------
    def status(self, now: int) -> int:
        null = self.null_count
        if null and self.load_ns is not None and self.frozen is None and self.pending is None:
            null = now - self.load_ns < ticks_to_ns(1)  # loaded into the counting element after one CLK
        return (
            (0x80 if self.out(now) else 0)
            | (0x40 if null else 0)
            | (self.rw << 4)
            | (self.mode_bits << 1)
            | int(self.bcd)
        )

    def _value_bytes(self, now: int) -> list[int]:
        value = self.counter(now)
        if self.bcd:
            value = _to_bcd(value)
        value &= 0xFFFF
        if self.rw == 1:
            return [value & 0xFF]
        if self.rw == 2:
            return [value >> 8]
        return [value & 0xFF, value >> 8]

    def latch_count(self, now: int) -> None:
        if not self.latch:  # a second latch before the first is read is ignored
            self.latch = self._value_bytes(now)

    def latch_status(self, now: int) -> None:
        if self.status_latch is None:
            self.status_latch = self.status(now)

    def read(self, now: int) -> int:
        if self.status_latch is not None:
            value = self.status_latch
            self.status_latch = None
            return value
        if self.latch:
            return self.latch.pop(0)
        value_bytes = self._value_bytes(now)
        if self.rw == 3:
            value = value_bytes[1] if self.read_msb else value_bytes[0]
            self.read_msb = not self.read_msb
            return value
        return value_bytes[0]


class PIT:
    """The 8254 (``bus.devices["pit"]``)."""

    # ---- snapshots (hw/state.py) -----------------------------------------------------
    STATE_EXCLUDE = frozenset({"bus", "clock"})  # collaborators and configuration, not state

    def save_state(self) -> State:
        """This device's state for a snapshot (its declared fields minus ``STATE_EXCLUDE``)."""
        return capture(self, self.STATE_EXCLUDE)

    def load_state(self, state: State) -> None:
        """Restore what ``save_state`` returned."""
        restore(self, state, self.STATE_EXCLUDE)

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.clock = bus.clock
        self.channels = [Channel(0, True), Channel(1, True), Channel(2, False)]
        self.timer = self.clock.new_timer(self._update_irq)
        self.irq_level = 0
        self.irq_edges = 0  # rising edges driven onto IRQ0 (tests, statistics)
        self.listeners: list[Callable[[int], None]] = []  # called with the channel index after it is reprogrammed
        self.reset()

    def reset(self) -> None:
        """Power-on: every channel waits for a control word, OUT high, no timer armed.

        The datasheet leaves the power-on mode, count and OUT undefined; this
        picks the state QEMU reports for a channel nobody has programmed
        (mode 3, OUT high) but with nothing counting, so a bare board with no
        firmware has no timer running.  The firmware (boot/firmware.py)
        programs channel 0 as SeaBIOS does through the ports, like any guest.
        The IRQ0 line is taken as already high: the first edge the 8259 sees
        is the first rising OUT transition after the PIT is programmed.
        """
        for i, ch in enumerate(self.channels):
            ch.reset(i != 2)
            ch.null_count = False
        self.timer.cancel()
        self.irq_level = 1
        for fn in self.listeners:
            fn(0)

    # ---- IRQ0 ------------------------------------------------------------------------
    def _update_irq(self) -> None:
        """Drive IRQ0 from channel 0's OUT and arm the timer for its next transition."""
        now = self.clock.now()
        ch = self.channels[0]
        level = 1 if ch.out(now) else 0
        if level != self.irq_level:
            self.irq_level = level
            if level:
                self.irq_edges += 1
            self.bus.set_irq(PIT_IRQ, level)
        when = ch.next_transition_ns(now)
        if when is None:
            self.timer.cancel()
        else:
            self.timer.mod(max(when, now + 1))

    def _changed(self, index: int) -> None:
        if index == 0:
            self._update_irq()
        for fn in self.listeners:
            fn(index)

    # ---- API used by port 0x61 (speaker.py) ---------------------------------------------
    def set_gate(self, index: int, level: bool) -> None:
        self.channels[index].set_gate(level, self.clock.now())
        self._changed(index)

    def get_gate(self, index: int) -> bool:
        return self.channels[index].gate

    def get_out(self, index: int) -> bool:
        return self.channels[index].out(self.clock.now())

    # ---- ports ----------------------------------------------------------------------------
    def port_handlers(self, port: int, size: int) -> tuple[Callable[[], int], Callable[[int], None]] | None:
        """Byte handlers for translated in/out (``softmmu.memory.port_handlers``).

        A guest that polls the timer (grub-invaders: ``out 0x43`` counter
        latch, ``in 0x40`` twice, per ~18 instructions) takes these: a latched
        byte is read without asking the clock, and a counter latch command
        goes straight to the channel.  Everything else is ``io_read``/``io_write``.
        """
        if size != 1:
            return None
        now = self.clock.now
        if port == 0x43:

            def write_control(value: int) -> None:
                if not value & 0x30 and value < 0xC0:  # counter latch (RW = 00) of channel SC
                    ch = self.channels[value >> 6]
                    if not ch.latch:  # a second latch before the first is read is ignored
                        ch.latch = ch._value_bytes(now())
                    return
                self.io_write(0x43, 1, value)

            return (lambda: 0), write_control
        index = port - 0x40

        def read_counter() -> int:
            ch = self.channels[index]
            if ch.latch and ch.status_latch is None:
                return ch.latch.pop(0)
            return ch.read(now())

        return read_counter, partial(self.io_write, port, 1)

    def io_read(self, port: int, size: int) -> int:
        if size > 1:
            return self.bus.split_read(port, size)
        index = port - 0x40
        if index == 3:
            return 0  # the control word register is write-only (QEMU reads 0)
        ch = self.channels[index]
        value = ch.read(self.clock.now())
        return value

    def io_write(self, port: int, size: int, value: int) -> None:
        if size > 1:
            self.bus.split_write(port, size, value)
            return
        value &= 0xFF
        now = self.clock.now()
        index = port - 0x40
        if index < 3:
            self.channels[index].write(value, now)
            self._changed(index)
            return
        sel = value >> 6
        if sel == 3:  # read-back: bit 5 low latches counts, bit 4 low latches status
            for i in range(3):
                if value & (2 << i):
                    ch = self.channels[i]
                    if not value & 0x10:
                        ch.latch_status(now)
                    if not value & 0x20:
                        ch.latch_count(now)
            return
        ch = self.channels[sel]
        if (value >> 4) & 3 == 0:
            ch.latch_count(now)
            return
        ch.control(value)
        self._changed(sel)


def attach(bus: Bus, config: PCConfig) -> PIT:
    pit = PIT(bus)
    bus.add_port(0x40, 4, pit)
    bus.add_reset_hook(pit.reset)
    return pit
