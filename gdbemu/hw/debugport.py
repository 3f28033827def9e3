"""QEMU's isa-debug-exit device and the 0xE9 debug console, as the PC board configures them.

Theory of operation (QEMU hw/misc/debugexit.c and hw/char/debugcon.c, the
devices the tests and kernels' Makefiles use):

* isa-debug-exit occupies ``iosize`` ports from ``iobase``
  (``PCConfig.debug_exit``; None: no device, the ports are unassigned and
  read all ones).  A write of any width to any of them ends the run with
  exit status ``(value << 1) | 1``, so a guest can never report 0 (success
  through it is conventionally 1).  Reads return 0.
* The debug console (Bochs' "port 0xE9 hack"): each byte written appears on
  the console; reads return 0xE9 so a guest can detect it.
  ``PCConfig.debugcon`` None keeps the bytes in ``machine.debug_output`` (the
  bare machine's behaviour); otherwise a ``CharSink`` spec as for serial
  ports ("stdio", "null", "file:PATH", a stream) receives them instead.

Both replace the bare machine's built-in ports when ``build_pc`` runs.
"""

from __future__ import annotations

from .uart import CharSink

DEBUGCON_PORT = 0xE9


class DebugExit:
    """isa-debug-exit at ``iobase .. iobase + iosize - 1``."""

    def __init__(self, machine, iobase: int, iosize: int) -> None:
        self.machine = machine
        self.iobase = iobase
        self.iosize = iosize

    def io_read(self, port: int, size: int) -> int:
        return 0

    def io_write(self, port: int, size: int, value: int) -> None:
        from ..machine import Stop

        self.machine.request_stop(Stop("exit", f"isa-debug-exit {value:#x}"), exit_code=(value << 1) | 1)


class DebugCon:
    """Port 0xE9: bytes to ``machine.debug_output`` or to a sink."""

    def __init__(self, machine, sink: CharSink | None) -> None:
        self.machine = machine
        self.sink = sink

    def io_read(self, port: int, size: int) -> int:
        return DEBUGCON_PORT

    def io_write(self, port: int, size: int, value: int) -> None:
        byte = value & 0xFF
        if self.sink is None:
            self.machine.debug_output.append(byte)
        else:
            self.sink.write(bytes((byte,)))


class DebugPorts:
    """Both devices (``machine.devices["debugport"]``)."""

    def __init__(self, machine, config) -> None:
        from .. import machine as bare

        mem = machine.mem
        # Drop the bare machine's versions of these ports first (debug_exit=None means absent).
        for port, dev in list(mem.ports.items()):
            if isinstance(dev, (bare.DebugExit, bare.DebugCon)):
                del mem.ports[port]
        self.exit: DebugExit | None = None
        if config.debug_exit is not None:
            iobase, iosize = config.debug_exit
            self.exit = DebugExit(machine, iobase, iosize)
            mem.add_port(iobase, iosize, self.exit)
        sink = None if config.debugcon is None else CharSink(config.debugcon)
        self.con = DebugCon(machine, sink)
        mem.add_port(DEBUGCON_PORT, 1, self.con)

    def flush(self) -> None:
        if self.con.sink is not None:
            self.con.sink.flush()

    def close(self) -> None:
        if self.con.sink is not None:
            self.con.sink.close()


def attach(machine, config) -> DebugPorts:
    return DebugPorts(machine, config)
