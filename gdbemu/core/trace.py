"""Named hook points for tracing (``-d`` logging): set once at construction, never swapped.

``Machine(..., trace=TraceHooks(...))``; a hook left None costs one test.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .cpu import CPU
    from .exceptions import GuestFault
    from .tb import TB


@dataclass
class TraceHooks:
    tb_built: Callable[[CPU, TB], None] | None = None  # -d in_asm
    tb_exec: Callable[[CPU, TB], None] | None = None  # -d exec,cpu (called before a TB runs)
    interrupt: Callable[[CPU, int, bool, int | None, int], None] | None = (
        None  # -d int: cpu, vector, soft, error_code, next_eip
    )
    tlb_fill: Callable[[CPU, int, int, int, int | None, GuestFault | None], None] | None = None
    # -d mmu: cpu, vaddr, access, mmu_idx, paddr (None on fault), fault
