"""The guest's own debug registers: DR0-DR3 and DR7 as breakpoint marks and watchpoints, DR6 on a hit.

Why this is in core and not in ``gdbemu/debug``: it is guest-visible
behaviour, not something the debugger adds.  A kernel that programs DR7 gets
its #DB whether or not gdb is attached (DESIGN.md invariant 3: "the guest's own
DR0-DR7 keep working beside gdb's breakpoints and watchpoints"), so the
machine needs it (``Machine.update_guest_debug`` and ``Machine.watch_stop``
are called by the exec loop on DR writes and watchpoint hits), and
``machine.py`` imports nothing from ``gdbemu.debug`` (SPEC §7).  It uses only
the registries beside the CPU -- ``core/breakpoint.py`` (TB marks) and
``softmmu/watchpoint.py`` (TLB_WATCHPOINT ranges) -- which gdb's own points
share, each point tagged with its owner.

SDM vol. 3, 17.2: DR7 bits L/G n (2n, 2n+1) enable DRn; R/Wn (16+4n) is 00
execute, 01 write, 11 read/write, 10 I/O (CR4.DE; not emulated); LENn
(18+4n) is 1, 2, 8 or 4 bytes (00, 01, 10, 11), the address aligned down to
it.  An execute breakpoint is a fault (the instruction has not run;
``Breakpoints.check`` raises #DB, EFLAGS.RF suppresses it once); a data
breakpoint is a trap after the instruction with DR6.Bn set (17.3.1.2).
"""

from __future__ import annotations

from typing import Final

from ..softmmu.watchpoint import WatchKind, Watchpoint, WatchpointList
from .breakpoint import Breakpoints
from .cpu import CPU

DR_OWNER: Final = "dr"  # Watchpoint.owner of the guest's points: ("dr", cpu_index, n)
DR6_RESERVED_ONES: Final = 0xFFFF0FF0
_LENGTHS: Final = (1, 2, 8, 4)


def is_guest_watchpoint(wp: Watchpoint) -> bool:
    """True for a watchpoint made from the guest's DR0-DR3 (not gdb's)."""
    return isinstance(wp.owner, tuple) and wp.owner[0] == DR_OWNER


def update_guest_debug(cpu: CPU, watchpoints: WatchpointList, breakpoints: Breakpoints) -> None:
    """DR0-DR3/DR7 of ``cpu`` changed: rebuild its execute breakpoints and data watchpoints."""
    dr7 = cpu.dr[7]
    execs: dict[int, set[int]] = {}
    watchpoints.remove_owner_prefix((DR_OWNER, cpu.index))
    for n in range(4):
        if not (dr7 >> (2 * n)) & 3:
            continue
        rw = (dr7 >> (16 + 4 * n)) & 3
        length = _LENGTHS[(dr7 >> (18 + 4 * n)) & 3]
        addr = cpu.dr[n] & 0xFFFFFFFF
        if rw == 0:
            execs.setdefault(addr, set()).add(n)
        elif rw in (1, 3):
            addr &= ~(length - 1)
            kind = WatchKind.WRITE if rw == 1 else WatchKind.ACCESS
            watchpoints.add(addr, length, kind, (DR_OWNER, cpu.index, n))
        # rw == 2 (I/O breakpoints, CR4.DE) is not emulated
    breakpoints.set_guest(execs)


def data_breakpoint_hit(cpu: CPU, wp: Watchpoint) -> None:
    """Set DR6.Bn for the guest's data breakpoint ``wp``; the caller delivers the #DB trap."""
    assert isinstance(wp.owner, tuple)
    n = wp.owner[2]
    assert isinstance(n, int)
    cpu.dr[6] = (cpu.dr[6] & ~0xF) | (1 << n) | DR6_RESERVED_ONES
