"""System control port B (0x61): PIT channel 2's gate and output, and the PC speaker.

Theory of operation (IBM PC/AT Technical Reference, "System Board":
port 0x61 bit assignments; Intel 8254 datasheet for channel 2):

* Write: bit 0 drives the gate of 8254 channel 2, bit 1 enables the speaker
  data (the speaker sees OUT2 AND bit 1), bits 2-3 enable the RAM parity
  and I/O channel checks (stored, read back; no such errors exist here).
* Read: bits 0-3 as written, bit 4 the refresh-request toggle, bit 5 OUT2,
  bits 6-7 the channel-check / parity-error flags (always 0).
* Bit 4 toggles with every DRAM refresh request (channel 1 of the 8254
  every 15.085 us on the AT).  It is derived from virtual time, so BIOS-
  style delay loops that count toggles progress at the same virtual rate
  in every run.  (QEMU flips it on every read instead.)
* The speaker makes no sound; its state is kept: ``frequency()`` is the
  tone in Hz while the speaker is driven by a counting square wave (gate
  and data on, channel 2 in mode 3), and ``tones`` records each change as
  (virtual ns, Hz or None) so tests and a console can see beeps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .bus import Bus
from .pit import PIT, PIT_FREQ
from .state import State, capture, restore

if TYPE_CHECKING:
    from .pc import PCConfig

REFRESH_NS = 15_085  # one refresh request period (ns)
MAX_TONES = 1024


class Speaker:
    """Port 0x61 (``bus.devices["speaker"]``); needs the 8254 (``bus.devices["pit"]``)."""

    # ---- snapshots (hw/state.py) -----------------------------------------------------
    STATE_EXCLUDE = frozenset({"bus", "clock", "pit"})  # collaborators and configuration, not state

    def save_state(self) -> State:
        """This device's state for a snapshot (its declared fields minus ``STATE_EXCLUDE``)."""
        return capture(self, self.STATE_EXCLUDE)

    def load_state(self, state: State) -> None:
        """Restore what ``save_state`` returned."""
        restore(self, state, self.STATE_EXCLUDE)

    def __init__(self, bus: Bus, pit: PIT) -> None:
        self.bus = bus
        self.clock = bus.clock
        self.pit = pit
        self.tones: list[tuple[int, float | None]] = []
        self._last: float | None = None
        pit.listeners.append(self._pit_changed)
        self.reset()

    def reset(self) -> None:
        self.data_on = False
        self.checks = 0  # bits 2-3
        self.pit.set_gate(2, False)
        self._note()

    # ---- the speaker ----------------------------------------------------------------
    def frequency(self) -> float | None:
        """The tone the speaker plays now, in Hz, or None when it is silent."""
        ch = self.pit.channels[2]
        if not (self.data_on and ch.gate and ch.mode == 3 and ch.load_ns is not None):
            return None
        ch.sync(self.clock.now())
        return PIT_FREQ / ch.n

    def is_on(self) -> bool:
        return self.frequency() is not None

    def _note(self) -> None:
        freq = self.frequency()
        if freq != self._last:
            self._last = freq
            self.tones.append((self.clock.now(), freq))
            if len(self.tones) > MAX_TONES:
                del self.tones[: len(self.tones) - MAX_TONES]

    def _pit_changed(self, index: int) -> None:
        if index == 2:
            self._note()

    # ---- port 0x61 --------------------------------------------------------------------
    def io_read(self, port: int, size: int) -> int:
        if size > 1:
            return self.bus.split_read(port, size)
        now = self.clock.now()
        refresh = (now // REFRESH_NS) & 1
        return (
            int(self.pit.get_gate(2))
            | (0x02 if self.data_on else 0)
            | self.checks
            | (refresh << 4)
            | (0x20 if self.pit.get_out(2) else 0)
        )

    def io_write(self, port: int, size: int, value: int) -> None:
        if size > 1:
            self.bus.split_write(port, size, value)
            return
        self.checks = value & 0x0C
        self.data_on = bool(value & 2)
        self.pit.set_gate(2, bool(value & 1))  # notifies _pit_changed -> _note
        self._note()


def attach(bus: Bus, config: PCConfig) -> Speaker:
    pit = bus.devices.get("pit")
    if not isinstance(pit, PIT):
        raise RuntimeError("the speaker port needs the 8254 (gdbemu.hw.pit) attached first")
    speaker = Speaker(bus, pit)
    bus.add_port(0x61, 1, speaker)
    bus.add_reset_hook(speaker.reset)
    return speaker
