"""The ``H`` namespace of generated code: Python helpers for complex instructions.

Op families register functions here with ``@helper``; generated code calls
them as ``H.<name>(cpu, ...)`` through ``Emitter.sync_call``, with the whole
guest state written back to the CPU object first.  A helper must be precise
itself: check everything that can fault before changing any state.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

_module = sys.modules[__name__]


def helper(fn: Callable) -> Callable:
    if hasattr(_module, fn.__name__):
        raise ValueError(f"helper {fn.__name__} registered twice")
    setattr(_module, fn.__name__, fn)
    return fn


@helper
def bp_check(cpu, linear: int) -> None:
    """The prologue of a TB that starts at a breakpoint mark (core/breakpoint.py)."""
    cpu.machine.breakpoints.check(cpu, linear)
