"""Assembling one vCPU: its TLB, its softmmu (given the page walk and the core's exceptions), the CPU.

The softmmu knows no x86 and imports nothing from the core: what it needs of
the CPU reaches it here, as callables bound to this CPU — the page walk
(``mmu.walk_deps``), the #AC test, the watchpoint check, the ``-d mmu`` hook.
"""

from __future__ import annotations

from collections.abc import Callable

from ..softmmu.access import SoftMMU
from ..softmmu.dirty import DirtyMemory
from ..softmmu.memory import PhysMemory
from ..softmmu.tlb import CPUTLB
from ..softmmu.watchpoint import WatchpointList
from .breakpoint import Breakpoints
from .cpu import CPU, EFER_LMA
from .events import MachineEvents
from .exceptions import AC, GP, SS, GuestFault
from .mmu import Deps, walk_deps
from .trace import TraceHooks

ALIGNMENT_CHECK = 1 << 18  # CR0.AM and EFLAGS.AC are both bit 18: both set enables #AC at CPL 3


def make_cpu(
    index: int,
    mem: PhysMemory,
    dirty: DirtyMemory,
    watchpoints: WatchpointList,
    breakpoints: Breakpoints,
    events: MachineEvents[CPU],
    invalidate_code: Callable[[int, int], None],
    trace: TraceHooks[CPU],
) -> CPU:
    """A CPU in its power-on state, wired to the machine's memory, TB cache and registries."""
    tlb = CPUTLB()
    cpu: CPU  # bound below; the callables run only once the CPU exists

    def page_walk(vaddr: int, access: int, mmu_idx: int) -> tuple[int, int, int, Deps]:
        return walk_deps(cpu, vaddr, access, mmu_idx)

    def alignment_fault() -> GuestFault | None:
        # SDM vol. 3, 6.15: #AC(0) for an unaligned CPL-3 access when CR0.AM and EFLAGS.AC are set.
        return GuestFault(AC, 0) if cpu.cr[0] & cpu.eflags & ALIGNMENT_CHECK else None

    def watch_check(vaddr: int, size: int, is_write: bool) -> None:
        watchpoints.check(cpu, vaddr, size, is_write)

    def on_fill(vaddr: int, access: int, mmu_idx: int, paddr: int | None, fault: BaseException | None) -> None:
        hook = trace.tlb_fill
        if hook is not None:
            hook(cpu, vaddr, access, mmu_idx, paddr, fault if isinstance(fault, GuestFault) else None)

    def wide_address(vaddr: int, stack: bool) -> int:
        # SDM vol. 3, 3.3.7.1: in long mode a non-canonical address is #GP(0), #SS(0) for SS.
        if cpu.efer & EFER_LMA:
            vaddr &= 0xFFFFFFFFFFFFFFFF
            if ((vaddr + (1 << 47)) & 0xFFFFFFFFFFFFFFFF) >> 48:
                raise GuestFault(SS if stack else GP, 0)
            return vaddr
        return vaddr & 0xFFFFFFFF

    softmmu = SoftMMU(
        tlb,
        mem,
        dirty,
        watchpoints,
        page_walk,
        invalidate_code,
        watch_check,
        alignment_fault,
        on_fill,
        wide_address,
    )
    cpu = CPU(index, mem, tlb, softmmu, breakpoints, events, trace)
    return cpu
