"""The board the command line asks for: the machine, its devices and sinks, the -d log, the kernel.

``build_board(opts)`` does, in order: open the ``-d`` log (``-D FILE`` or
stderr) and build the ``Machine`` with its trace hooks; attach the PC devices
(``hw.pc.build_pc``) with a ``PCConfig`` from the options — serial ports and
the 0xE9 console on their character sinks (``hw.bus.CharSink`` specs: when
gdb talks over stdio, "stdio" sinks write to stderr instead); apply the
CPU model (:func:`cpu_model_for`: ``-cpu`` if given, else ``qemu64`` for a
64-bit machine -- the ``qemu-system-x86_64`` spelling or a 64-bit kernel --
and gdbemu's own model without long mode otherwise); boot the kernel (the demo kernel when none is given) the way
``-kernel`` does on QEMU.  Every failure is a ``BoardError`` whose message is
the one ``gdbemu:`` line to print (exit status 2).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from importlib import resources
from typing import TextIO

from ..boot.elf import ELFError
from ..boot.firmware import apply_cpu_model
from ..boot.multiboot import MultibootError
from ..core import cpuid
from ..debug.trace import QemuLog
from ..hw.pc import PCConfig, build_pc
from ..hw.uart import SerialPorts
from ..machine import Machine
from .options import Options


class BoardError(Exception):
    """The board cannot be built or the kernel not booted: one ``gdbemu: ...`` line, exit code 2."""


def demo_kernel_path() -> str:
    return str(resources.files("gdbemu") / "demo" / "demo.elf")


def gdb_uses_stdio(opts: Options) -> bool:
    if opts.gdb is None:
        return False
    from ..rsp.server import parse_endpoint  # only with gdb: the server is not imported otherwise

    return parse_endpoint(opts.gdb).uses_stdio


def kernel_is_64bit(path: str) -> bool:
    """A kernel only a 64-bit machine runs: an ELF64 (vmlinux, multiboot2/PVH ELF64), or a bzImage
    with a 64-bit entry (boot protocol 2.12+ ``xloadflags`` XLF_KERNEL_64).  Unreadable or not a
    regular file (a FIFO would block the open; the loader names the problem later): False."""
    try:
        if not os.path.isfile(path):
            return False
        with open(path, "rb") as f:
            head = f.read(0x240)
    except (OSError, ValueError):  # ValueError: a NUL in the path
        return False
    if head[:4] == b"\x7fELF":
        return len(head) > 4 and head[4] == 2  # EI_CLASS: ELFCLASS64
    if len(head) >= 0x238 and head[0x202:0x206] == b"HdrS":
        version = int.from_bytes(head[0x206:0x208], "little")
        return version >= 0x20C and bool(head[0x236] & 1)
    return False


def cpu_model_for(opts: Options, kernel: str) -> str:
    """The ``-cpu`` spec the board gets (module docstring)."""
    if opts.cpu_given:
        return opts.cpu
    if opts.system == "x86_64" or kernel_is_64bit(kernel):
        return "qemu64"
    # gdbemu's own model, minus long mode: a 32-bit PC unless asked for 64 bits.
    return opts.cpu + ",-lm" if "lm" in cpuid.implemented() else opts.cpu


@dataclass
class Board:
    machine: Machine
    config: PCConfig
    kernel: str
    demo: bool  # no kernel given: the demo kernel runs
    log_out: TextIO | None  # the -D file, closed with the board
    long_mode: bool = False  # the CPU model has LM: a 64-bit machine (gdb sees amd64)

    def close(self) -> None:
        """Flush and close the devices' sinks and the log file."""
        for dev in self.machine.bus.devices.values():
            close = getattr(dev, "close", None)
            if callable(close):
                try:
                    close()
                except (OSError, ValueError):
                    pass
        if self.log_out is not None:
            self.log_out.close()


def pc_config(opts: Options) -> PCConfig:
    """The ``PCConfig`` the options ask for."""
    serial: list[object] = [None if s == "none" else s for s in opts.serial]
    debugcon: object = "null" if opts.debugcon == "none" else opts.debugcon
    if gdb_uses_stdio(opts):
        # stdin/stdout carry gdb's packets: console devices on "stdio" write to
        # stderr instead, and nothing reads stdin for COM1.
        serial = ["stderr" if s == "stdio" else s for s in serial]
        if debugcon == "stdio":
            debugcon = "stderr"
    config = PCConfig(
        ncpus=opts.smp,
        serial=serial,
        debugcon=debugcon,
        no_reboot=opts.no_reboot,
        vga=opts.vga,
        debug_exit=opts.debug_exit,
        cpu_model=opts.cpu,
    )
    if opts.rtc_base is not None:
        config.rtc_base = opts.rtc_base
    return config


def build_board(opts: Options) -> Board:
    """The machine of the command line with its kernel loaded (module docstring); raises BoardError."""
    demo = opts.kernel is None
    kernel = demo_kernel_path() if opts.kernel is None else opts.kernel
    log_out: TextIO | None = None
    log: QemuLog | None = None
    if opts.log_items:
        if opts.log_file:
            try:
                log_out = open(opts.log_file, "w")  # noqa: SIM115 - closed by Board.close
            except OSError as exc:
                raise BoardError(f"cannot open log file {opts.log_file!r}: {exc.strerror}") from None
        log = QemuLog(opts.log_items, log_out if log_out is not None else sys.stderr)
    try:
        machine = Machine(
            ram_size=opts.memory,
            ncpus=opts.smp,
            icount_shift=opts.icount_shift,
            trace=log.hooks() if log is not None else None,
        )
    except ValueError as exc:
        raise BoardError(str(exc)) from None
    if log is not None and log.needs_tier1:
        machine.translator.force_tier = 1  # every block entry goes through the exec loop
    config = pc_config(opts)
    board = Board(machine, config, kernel, demo, log_out)
    try:
        build_pc(machine.bus, config)
    except (OSError, ValueError) as exc:
        board.close()
        raise BoardError(str(exc)) from None
    model = apply_cpu_model(machine, cpu_model_for(opts, kernel))
    board.long_mode = "lm" in model.features
    try:
        machine.load_kernel(kernel, opts.append, opts.initrd)
    except FileNotFoundError:
        board.close()
        raise BoardError(f"cannot open kernel {kernel!r}: no such file") from None
    except IsADirectoryError:
        board.close()
        raise BoardError(f"cannot open kernel {kernel!r}: it is a directory") from None
    except (MultibootError, ELFError, ValueError) as exc:
        board.close()
        raise BoardError(f"cannot boot {kernel!r}: {exc}") from None
    return board


def feed_serial(machine: Machine, data: bytes) -> bool:
    """Give ``data`` to COM1's receiver, as if typed on its line; False if there is no COM1."""
    uart = machine.bus.devices.get("uart")
    if not isinstance(uart, SerialPorts) or not len(uart) or uart[0] is None:
        return False
    uart.feed(data, 0)
    return True
