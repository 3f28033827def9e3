"""What the boot code needs of a machine: a Protocol, so ``boot`` imports no ``machine`` (layer rule).

``gdbemu.machine.Machine`` satisfies it; so does any test double with the
same attributes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from ..core.cpu import CPU
from ..softmmu.memory import PhysMemory

if TYPE_CHECKING:
    from ..hw.bus import Bus

__all__ = ["BootMachine"]


class BootMachine(Protocol):
    mem: PhysMemory
    cpus: list[CPU]
    bus: Bus  # the board's devices and their configuration (hw/bus.py)
    # Called after a system reset: the loader registers one hook that boots the kernel again.
    on_reset: list[Callable[[], Any]]
