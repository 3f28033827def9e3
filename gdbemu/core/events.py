"""How the core reaches the rest of the machine (SPEC §2, §5).

``DebuggerHooks`` is the one hook point the debugger has on the machine:
``Machine.attach_debugger(hooks)`` stores it, and ``Machine.watch_stop``
asks it to complete each watchpoint hit of gdb's before reporting it (the
watch log and watch conditions of ``gdbemu/debug/watchlog.py``).  With no
debugger attached every hit of gdb's watchpoints is reported as it is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..softmmu.watchpoint import WatchHit
    from .cpu import CPU


class DebuggerHooks(Protocol):
    """What the machine asks an attached debugger."""

    def complete_watch(self, cpu: CPU, hit: WatchHit) -> WatchHit | None:
        """After the replayed instruction that hit: log it, evaluate conditions; the hit to report or None."""
        ...
