"""QEMU's isa-debug-exit device and the 0xE9 debug console.

Theory of operation (QEMU hw/misc/debugexit.c and hw/char/debugcon.c, the
devices the tests and kernels' Makefiles use):

* isa-debug-exit occupies ``iosize`` ports from ``iobase``
  (``PCConfig.debug_exit``; None: no device, the ports are unassigned and
  read all ones).  A write of any width to any of them ends the run with
  exit status ``(value << 1) | 1``, so a guest can never report 0 (success
  through it is conventionally 1).  Reads return 0.
* The debug console (Bochs' "port 0xE9 hack"): each byte written appears on
  the console; reads return 0xE9 so a guest can detect it.  With no sink
  spec the bytes are kept in ``bus.debug_output`` (``machine.debug_output``);
  otherwise a ``CharSink`` spec as for serial ports ("stdio", "null",
  "file:PATH", a stream) receives them.

Every machine has both (``Machine`` installs them with the defaults: exit at
0xF4, four ports; console into ``debug_output``), kept as
``bus.devices["debugport"]``; ``build_pc`` reconfigures that one instance
from the ``PCConfig``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .bus import Bus, CharSink
from .state import State, capture, restore

if TYPE_CHECKING:
    from .pc import PCConfig

DEBUGCON_PORT = 0xE9
DEFAULT_DEBUG_EXIT = (0xF4, 4)


class DebugExit:
    """isa-debug-exit at ``iobase .. iobase + iosize - 1``."""

    def __init__(self, bus: Bus, iobase: int, iosize: int) -> None:
        self.bus = bus
        self.iobase = iobase
        self.iosize = iosize

    def io_read(self, port: int, size: int) -> int:
        return 0

    def io_write(self, port: int, size: int, value: int) -> None:
        self.bus.request_stop("exit", f"isa-debug-exit {value:#x}", (value << 1) | 1)


class DebugCon:
    """Port 0xE9: each byte written goes to ``sink``."""

    def __init__(self, sink: CharSink) -> None:
        self.sink = sink

    def io_read(self, port: int, size: int) -> int:
        return DEBUGCON_PORT

    def io_write(self, port: int, size: int, value: int) -> None:
        self.sink.write(bytes((value & 0xFF,)))


class DebugPorts:
    """Both devices (``bus.devices["debugport"]``)."""

    # ---- snapshots (hw/state.py) -----------------------------------------------------
    STATE_EXCLUDE = frozenset({"bus", "exit", "con"})  # collaborators and configuration, not state

    def save_state(self) -> State:
        """This device's state for a snapshot (its declared fields minus ``STATE_EXCLUDE``)."""
        return capture(self, self.STATE_EXCLUDE)

    def load_state(self, state: State) -> None:
        """Restore what ``save_state`` returned."""
        restore(self, state, self.STATE_EXCLUDE)

    def __init__(
        self, bus: Bus, debug_exit: tuple[int, int] | None = DEFAULT_DEBUG_EXIT, debugcon: object = None
    ) -> None:
        self.bus = bus
        self.exit: DebugExit | None = None
        self.con = DebugCon(CharSink(bus.debug_output))
        bus.add_port(DEBUGCON_PORT, 1, self.con)
        self.configure(debug_exit, debugcon)

    def configure(self, debug_exit: tuple[int, int] | None, debugcon: object) -> None:
        """Move (or remove) the exit device; point the console at ``debugcon`` (None: ``debug_output``)."""
        if self.exit is not None:
            self.bus.remove_port(self.exit.iobase, self.exit.iosize)
            self.exit = None
        if debug_exit is not None:
            iobase, iosize = debug_exit
            self.exit = DebugExit(self.bus, iobase, iosize)
            self.bus.add_port(iobase, iosize, self.exit)
        self.con.sink.close()
        self.con.sink = CharSink(self.bus.debug_output if debugcon is None else debugcon)

    def flush(self) -> None:
        self.con.sink.flush()

    def close(self) -> None:
        self.con.sink.close()


def attach(bus: Bus, config: PCConfig) -> DebugPorts:
    ports = bus.devices.get("debugport")
    if not isinstance(ports, DebugPorts):
        ports = DebugPorts(bus, None)
    ports.configure(config.debug_exit, config.debugcon)
    return ports
