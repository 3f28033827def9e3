"""What the core may ask of the machine around it: the only way out of ``core/``.

The CPU and the exec loop never see the Machine (no back-pointer): they are
given an object implementing :class:`MachineEvents` at construction (the
Machine does), and the Machine asks an attached debugger through
:class:`DebuggerHooks`.

Both protocols are generic in the CPU type so this module need not import
``core/cpu.py`` (which holds a ``MachineEvents[CPU]``): use them as
``MachineEvents[CPU]`` / ``DebuggerHooks[CPU]``.
"""

from __future__ import annotations

from typing import Protocol, TypeVar

from ..softmmu.watchpoint import WatchHit
from .stop import RunStop

CPU_contra = TypeVar("CPU_contra", contravariant=True)


class MachineEvents(Protocol[CPU_contra]):
    """Events the core reports to the machine (implemented by ``Machine``)."""

    def request_stop(self, stop: RunStop, exit_code: int | None = None) -> None:
        """Leave the run loop at the next TB boundary and report ``stop``."""

    def debug_stop(self, cpu: CPU_contra, reason: str, addr: int) -> None:
        """A gdb breakpoint was reached (the instruction has not run)."""

    def watch_stop(self, cpu: CPU_contra, hit: WatchHit) -> None:
        """A watchpoint hit, after the instruction (trap-like): to gdb or the guest's #DB."""

    def update_guest_debug(self, cpu: CPU_contra) -> None:
        """The guest changed DR0-DR3/DR7: rebuild its execute breakpoints and data watchpoints."""

    def io_read(self, port: int, size: int) -> int:
        """Port input (in, ins)."""
        ...

    def io_write(self, port: int, size: int, value: int) -> None:
        """Port output (out, outs)."""

    def ferr(self, cpu: CPU_contra, asserted: bool) -> None:
        """FERR# (CR0.NE = 0): an x87 error pending (True) or FSW.ES cleared (False); hw/ferr.py."""


class DebuggerHooks(Protocol[CPU_contra]):
    """What the Machine asks an attached debugger (``Machine.attach_debugger``)."""

    def complete_watch(self, cpu: CPU_contra, hit: WatchHit) -> WatchHit | None:
        """A gdb watchpoint hit after its instruction: log it, evaluate its condition.

        Returns the hit to report, or None and the guest runs on.
        """
        ...
