"""The PC board: which devices a ``Machine`` gets, wired in one place.

Each device module exposes ``attach(machine, config) -> device`` that
registers its ports/MMIO with ``machine.mem``, its IRQ sink or interrupt
source with the machine, and its timers with ``machine.clock``.  ``build_pc``
calls them in dependency order and keeps the devices by name in
``machine.devices``.

Interrupt routing (as on a PC with an APIC): devices call
``machine.set_irq(line, level)``, which reaches the 8259 pair and the I/O
APIC; the CPU asks ``machine.interrupt_sources`` in order — the local APIC
(which also models LINT0 in virtual-wire / ExtINT mode, through which the
8259's INTR arrives) — for a vector.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import BinaryIO


@dataclass
class PCConfig:
    """What the command line (or a test) asks of the board."""

    ncpus: int = 1
    # serial ports: "stdio", "null", "file:PATH", or a writable binary stream object
    serial: list = field(default_factory=lambda: ["stdio"])
    serial_input: BinaryIO | None = None  # bytes typed on the console (stdin when interactive)
    debugcon: object = None  # port 0xE9 sink: None = keep in machine.debug_output, else like serial
    no_reboot: bool = False  # triple fault / reset request stops instead of resetting
    vga: bool = True
    debug_exit: tuple[int, int] | None = (0xF4, 4)  # isa-debug-exit iobase, iosize (None: absent)
    cpu_model: str = "gdbemu"
    keyboard_input: BinaryIO | None = None
    rtc_base: int = 1_700_000_000  # RTC epoch seconds at virtual time 0 (deterministic)
    nographic: bool = False  # QEMU's -nographic: fw_cfg FW_CFG_NOGRAPHIC reads 1


# (module, attach order): interrupt controllers first, then what raises IRQs.
DEVICES = [
    "gdbemu.hw.pic",
    "gdbemu.hw.lapic",
    "gdbemu.hw.ioapic",
    "gdbemu.hw.pit",
    "gdbemu.hw.uart",
    "gdbemu.hw.cmos",
    "gdbemu.hw.kbd",
    "gdbemu.hw.speaker",
    "gdbemu.hw.fw_cfg",
    "gdbemu.hw.vga",
    "gdbemu.hw.debugport",
]


def build_pc(machine, config: PCConfig | None = None):
    """Attach every PC device to ``machine``; returns the machine."""
    config = config or PCConfig()
    machine.config = config
    machine.devices = getattr(machine, "devices", {})
    for name in DEVICES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue  # a device not written yet
            raise
        dev = mod.attach(machine, config)
        if dev is not None:
            machine.devices[name.rsplit(".", 1)[1]] = dev
    return machine
