"""Why a run of the machine ended: ``StopKind`` and ``RunStop`` (SPEC §1, issue 8: stop kinds are an enum).

``Machine.run`` and ``Machine.step`` return a :class:`RunStop`; devices and
the core ask for one through ``request_stop``.  ``StopKind`` is a StrEnum, so
``stop.kind == "exit"`` keeps working where a caller still compares strings.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class StopKind(enum.StrEnum):
    """The kinds of ``RunStop``."""

    EXIT = "exit"  # the guest ended the run (isa-debug-exit); machine.exit_code says how
    HALT = "halt"  # hlt with IF=0: nothing can wake the CPU
    IDLE = "idle"  # hlt with IF=1 and no timer armed: only an outside event (console, gdb) wakes it
    LIMIT = "limit"  # the instruction budget given to run() ran out
    TRIPLE_FAULT = "triple_fault"  # a fault while delivering a double fault (a board would reset)
    DEBUG = "debug"  # a gdb breakpoint or watchpoint: RunStop.reason/addr/hit say which
    RESET = "reset"  # the guest asked for a reset (keyboard controller, port 0xCF9) with no-reboot
    STEP = "step"  # Machine.step executed its one instruction
    SHUTDOWN = "shutdown"  # compared by the CLI's run loop; nothing produces it yet


@dataclass
class RunStop:
    """Why ``Machine.run`` returned."""

    kind: StopKind
    detail: str = ""
    # DEBUG: a gdb breakpoint ("swbreak"/"hwbreak") or watchpoint ("watch"/"rwatch"/"awatch")
    # hit; ``reason``, ``addr`` and (watchpoints) ``hit`` say which.
    reason: str = ""
    addr: int = 0
    hit: object = None
    cpu: int = 0
