"""The PC board: which devices a ``Machine`` gets, wired in one place.

Each device module exposes ``attach(bus, config) -> device`` that registers
its ports/MMIO, its IRQ sink or interrupt source, its reset hook and its
timers with the ``hw.bus.Bus`` (never the Machine).  ``build_pc`` calls them
in dependency order and keeps the devices by name in ``bus.devices``.

Interrupt routing (as on a PC with an APIC): devices call
``bus.set_irq(line, level)``, which reaches the 8259 pair and the I/O APIC;
the CPU asks ``bus.interrupt_sources`` in order — the local APIC (which also
models LINT0 in virtual-wire / ExtINT mode, through which the 8259's INTR
arrives) — for a vector.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO

from . import acpi_pm, cmos, debugport, ferr, fw_cfg, hpet, ioapic, kbd, lapic, pci, pic, pit, speaker, uart, vga
from .bus import Bus


@dataclass
class PCConfig:
    """What the command line (or a test) asks of the board."""

    ncpus: int = 1
    # serial ports: "stdio", "null", "file:PATH", or a writable binary stream object
    serial: list[object] = field(default_factory=lambda: ["stdio"])
    serial_input: BinaryIO | None = None  # bytes typed on the console (stdin when interactive)
    debugcon: object = None  # port 0xE9 sink: None = keep in bus.debug_output, else a CharSink spec
    no_reboot: bool = False  # triple fault / reset request stops instead of resetting
    vga: bool = True
    debug_exit: tuple[int, int] | None = (0xF4, 4)  # isa-debug-exit iobase, iosize (None: absent)
    cpu_model: str = "gdbemu"
    keyboard_input: BinaryIO | None = None
    rtc_base: int = 1_700_000_000  # RTC epoch seconds at virtual time 0 (deterministic)
    nographic: bool = False  # QEMU's -nographic: fw_cfg FW_CFG_NOGRAPHIC reads 1


# (name, attach function) in attach order: interrupt controllers first, then what raises IRQs.
DEVICES: list[tuple[str, Callable[[Bus, PCConfig], object]]] = [
    ("pic", pic.attach),
    ("lapic", lapic.attach),
    ("ioapic", ioapic.attach),
    ("pit", pit.attach),
    ("uart", uart.attach),
    ("cmos", cmos.attach),
    ("kbd", kbd.attach),
    ("speaker", speaker.attach),
    ("fw_cfg", fw_cfg.attach),
    ("vga", vga.attach),
    ("debugport", debugport.attach),
    ("ferr", ferr.attach),
    ("acpi_pm", acpi_pm.attach),
    ("hpet", hpet.attach),
    ("pci", pci.attach),
]


def build_pc(bus: Bus, config: PCConfig | None = None) -> Bus:
    """Attach every PC device to ``bus`` (``machine.bus``); returns the bus."""
    config = config or PCConfig()
    bus.config = config
    bus.no_reboot = config.no_reboot
    for name, attach in DEVICES:
        dev = attach(bus, config)
        if dev is not None:
            bus.add_device(name, dev)
    return bus
