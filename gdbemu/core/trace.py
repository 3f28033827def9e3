"""Named hook points for tracing (QEMU's ``-d in_asm,exec,cpu,int,mmu``).

Nothing is swapped at run time: the Machine is given one ``TraceHooks`` at
construction and the core calls the hooks that are set (a field left None
costs one local test per TB at most, and nothing on the TB fast path).  The
hooks may be set or cleared at any time; they are read where they are called.

* ``tb_built(cpu, tb)``: after a TB was translated (``-d in_asm``).
* ``tb_exec(cpu, tb)``: before a TB runs (``-d exec,cpu``); chained TBs run
  through the exec loop too, so every block entry is seen -- except the
  iterations a tier-2 TB loops inside itself (set ``translator.force_tier``
  to 1 to see each one, as ``-d exec`` does).
* ``interrupt(cpu, vector, soft, error_code, next_eip)``: before an event is
  delivered through the IDT/IVT (``-d int``).
* ``tlb_fill(cpu, vaddr, access, mmu_idx, paddr, fault)``: after a TLB fill
  (``paddr`` the physical address, ``fault`` None) or a page walk that faulted
  (``paddr`` None, ``fault`` the #PF) (``-d mmu``).

Generic in the CPU type so this module need not import ``core/cpu.py`` (the
CPU holds its machine's hooks): the Machine's are ``TraceHooks[CPU]``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from .exceptions import GuestFault
from .tb import TB

C = TypeVar("C")


@dataclass
class TraceHooks(Generic[C]):
    tb_built: Callable[[C, TB], None] | None = None  # -d in_asm
    tb_exec: Callable[[C, TB], None] | None = None  # -d exec,cpu (called before a TB runs)
    interrupt: Callable[[C, int, bool, int | None, int], None] | None = None  # -d int
    # -d mmu: cpu, vaddr, access, mmu_idx, paddr (None on fault), fault
    tlb_fill: Callable[[C, int, int, int, int | None, GuestFault | None], None] | None = None
