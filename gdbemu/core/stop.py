"""Why a run of the machine ended: the stop kinds (one encoding) and the stop record.

``StopKind`` is a ``StrEnum``, so ``stop.kind == "exit"`` keeps working for
code that compares with the bare strings.  ``RunStop`` is what
``Machine.run`` and ``Machine.step`` return and what ``request_stop`` is given.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class StopKind(enum.StrEnum):
    EXIT = "exit"  # the guest ended the run (isa-debug-exit, a device)
    HALT = "halt"  # hlt with IF=0: nothing can wake the CPU
    IDLE = "idle"  # hlt with IF=1 and no timer armed: only an outside event wakes it
    LIMIT = "limit"  # the instruction budget given to run() retired
    TRIPLE_FAULT = "triple_fault"  # a fault while delivering #DF
    DEBUG = "debug"  # a gdb breakpoint or watchpoint (reason, addr, hit say which)
    RESET = "reset"  # the guest asked for a system reset (keyboard controller, 0xCF9)
    STEP = "step"  # one instruction stepped (Machine.step)


@dataclass
class RunStop:
    """Why ``Machine.run`` (or ``step``) returned."""

    kind: StopKind | str
    detail: str = ""
    # DEBUG: a gdb breakpoint ("swbreak"/"hwbreak") or watchpoint hit; ``reason``,
    # ``addr`` and (watchpoints) ``hit`` say which.
    reason: str = ""
    addr: int = 0
    hit: object = None
    cpu: int = 0

    def __post_init__(self) -> None:
        # A bare string naming a kind becomes the member (a test's own kind stays a string).
        if not isinstance(self.kind, StopKind) and self.kind in _KINDS:
            self.kind = StopKind(self.kind)


_KINDS = frozenset(k.value for k in StopKind)
