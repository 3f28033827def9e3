"""The ``H`` namespace of generated code: Python helpers for complex instructions.

Op families register functions here with ``@helper``; generated code calls
them as ``H.<name>(cpu, ...)`` through ``Emitter.sync_call``, with the whole
guest state written back to the CPU object first.  A helper must be precise
itself: check everything that can fault before changing any state.

This module imports nothing from the core (the CPU binds it into every
namespace), so helpers it defines itself take the CPU untyped.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

_module = sys.modules[__name__]

_F = TypeVar("_F", bound=Callable[..., Any])


def helper(fn: _F) -> _F:
    if hasattr(_module, fn.__name__):
        raise ValueError(f"helper {fn.__name__} registered twice")
    setattr(_module, fn.__name__, fn)
    return fn


@helper
def bp_check(cpu: Any, linear: int) -> None:
    """The prologue of a TB that starts at a breakpoint mark (core/breakpoint.py)."""
    cpu.breakpoints.check(cpu, linear)
