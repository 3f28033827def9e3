"""Breakpoints as TB marks: the guest's memory is never patched (DESIGN.md invariant 3).

Theory of operation
-------------------
Breakpoints are linear addresses.  The translator ends every TB *before* a
marked address (``stop_at``), so a marked instruction always starts a TB,
and a TB that starts at a marked address gets a prologue that calls
``check`` before its first instruction.  No other TB pays anything.

Adding a breakpoint invalidates only the TBs whose linear range contains the
address without already starting there with a prologue (no global TB flush
on stops, unlike QEMU's gdbstub).  Removing one invalidates nothing: a
prologue whose breakpoint is gone just lets the TB run, and new translations
no longer split at the address.  gdb removes every breakpoint at each stop
and inserts them again on resume, so this keeps a stop/continue cycle free of
retranslation.  The guest
reading or checksumming its code sees its own bytes, and a breakpoint on
code the guest later rewrites still hits, since the mark belongs to the
address, not to the bytes.

Two owners share the marks: gdb (``Z0``/``Z1``: a stop reported to the
debugger) and the guest's own DR0-DR3 execute breakpoints (DR7: a #DB fault
delivered to the guest, suppressed once by EFLAGS.RF).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from .exceptions import CpuExit


class DebugRegsCPU(Protocol):
    """What ``check`` touches of the CPU (this module sits below core/cpu.py, which holds the marks)."""

    eflags: int
    dr: list[int]


class DebugStop(CpuExit):
    """Leave the exec loop for the debugger: a breakpoint at the start of the TB."""

    def __init__(self, reason: str, addr: int) -> None:
        super().__init__(reason, addr)
        self.reason = reason  # "swbreak" / "hwbreak"
        self.addr = addr


class Breakpoints:
    def __init__(self, invalidate_linear: Callable[[int], None]) -> None:
        self.gdb: dict[int, set[str]] = {}  # linear -> {"sw", "hw"}
        self.guest: dict[int, set[int]] = {}  # linear -> DR numbers with an enabled execute breakpoint
        self.marks: set[int] = set()
        self.invalidate_linear = invalidate_linear  # (linear) -> None: drop TBs covering it
        # Set by the debugger when resuming from a breakpoint it stopped at,
        # so the first instruction does not report the same hit again.
        self.skip_once: int | None = None
        # linear -> callable(cpu) -> bool (target-side conditions, given the CPU)
        self.conditions: dict[int, Callable[[Any], object]] = {}
        self.hits = 0

    def _update(self, addr: int) -> None:
        was = addr in self.marks
        now = addr in self.gdb or addr in self.guest
        if now:
            self.marks.add(addr)
            if not was:
                self.invalidate_linear(addr)
        else:
            self.marks.discard(addr)

    def add(self, addr: int, kind: str = "sw") -> None:
        addr &= 0xFFFFFFFFFFFFFFFF  # linear addresses: 32-bit outside long mode, 64-bit in it
        self.gdb.setdefault(addr, set()).add(kind)
        self._update(addr)

    def remove(self, addr: int, kind: str = "sw") -> bool:
        addr &= 0xFFFFFFFFFFFFFFFF  # linear addresses: 32-bit outside long mode, 64-bit in it
        kinds = self.gdb.get(addr)
        if not kinds or kind not in kinds:
            return False
        kinds.discard(kind)
        if not kinds:
            del self.gdb[addr]
            self.conditions.pop(addr, None)
        self._update(addr)
        return True

    def clear_gdb(self) -> None:
        for addr in list(self.gdb):
            del self.gdb[addr]
            self._update(addr)
        self.conditions.clear()

    def set_guest(self, addrs: dict[int, set[int]]) -> None:
        """The guest's DR7 changed: its enabled execute breakpoints are now ``addrs``."""
        old = set(self.guest)
        self.guest = {a & 0xFFFFFFFFFFFFFFFF: set(n) for a, n in addrs.items()}
        for addr in old | set(self.guest):
            self._update(addr)

    def stop_at(self, linear: int) -> bool:
        return linear in self.marks

    def check(self, cpu: DebugRegsCPU, linear: int) -> None:
        """The prologue of a TB at a marked address: report to gdb, or raise #DB in the guest."""
        if self.skip_once == linear:
            self.skip_once = None
        elif linear in self.gdb:
            cond = self.conditions.get(linear)
            if cond is None or cond(cpu):
                self.hits += 1
                kinds = self.gdb[linear]
                raise DebugStop("swbreak" if "sw" in kinds else "hwbreak", linear)
        if linear in self.guest:
            from . import flags as F
            from .exceptions import DB, GuestFault

            if cpu.eflags & F.RF:
                cpu.eflags &= ~F.RF  # RF suppresses one instruction breakpoint (SDM vol. 3, 17.3.1.1)
                return
            bits = 0
            for n in self.guest[linear]:
                bits |= 1 << n
            cpu.dr[6] = (cpu.dr[6] & ~0xF) | bits | 0xFFFF0FF0
            raise GuestFault(DB)  # a fault: the instruction has not run; the handler can set RF
