"""The PC's RAM: which sizes a PC board takes, and where its RAM sits in the physical address space.

Defined once here, the lowest layer that needs it: the command line checks
``-m`` with ``check_pc_ram_size`` before any RAM is allocated, the firmware
(boot/firmware.py) builds its E820 map from a size that passed it, and the
devices that report the RAM (fw_cfg's ``etc/e820``, the CMOS memory bytes)
split it with ``ram_below_4g`` / ``ram_above_4g``.

The split is QEMU's pc-i440fx rule: all RAM below 4 GiB while there is less
than 3.5 GiB (``LOW_MEM_LIMIT``), otherwise 3 GiB below and the rest from
4 GiB up.  gdbemu's PC takes 2 MiB (what SeaBIOS needs) to 3 GiB (a 32-bit
guest with the PCI hole and the APIC pages above it), so only the first case
happens on a board built by the CLI; the rule is kept whole for the devices.
"""

from __future__ import annotations

KIB = 1 << 10
MIB = 1 << 20
PC_RAM_MIN = 2 * MIB
PC_RAM_MAX = 3 << 30
LOW_MEM_LIMIT = 0xE0000000  # 3.5 GiB: from here on, QEMU puts only 3 GiB below 4 GiB
LOW_MEM_SPLIT = 0xC0000000


def check_pc_ram_size(ram_size: int) -> None:
    """Raise ValueError unless a PC can have ``ram_size`` bytes of RAM (2 MiB..3 GiB, whole 4 KiB pages)."""
    if not PC_RAM_MIN <= ram_size <= PC_RAM_MAX:
        raise ValueError(f"RAM size {ram_size // KIB} KiB out of range (2M..3G)")
    if ram_size % (4 * KIB):
        raise ValueError(f"RAM size {ram_size} is not a whole number of 4 KiB pages")


def ram_below_4g(ram_size: int) -> int:
    """Bytes of RAM mapped from physical address 0 (QEMU pc-i440fx's low-memory split)."""
    return ram_size if ram_size < LOW_MEM_LIMIT else LOW_MEM_SPLIT


def ram_above_4g(ram_size: int) -> int:
    """Bytes of RAM mapped from 4 GiB up."""
    return ram_size - ram_below_4g(ram_size)
