"""The watch log and watch conditions: evaluated in gdbemu at each hit, never by gdb.

gdb never sends conditions for watchpoints (it evaluates them itself, after
a stop), so gdbemu offers its own through ``monitor watch cond`` and
``monitor watch log``; the mechanism is unchanged -- the TLB flag, the
restart, the replay (``softmmu/watchpoint.py``).  A :class:`WatchLog` is the
debugger's side of it, on two hook points:

* ``WatchpointList.set_tracer`` -> :meth:`WatchLog.replay_hit`: while any
  of it is active ("tracing"), during the replay and *before* each access,
  every matching watchpoint is noted with the old value of the accessed
  bytes (``peek``: the debug view, RAM only, so an MMIO register is never
  read twice);
* ``Machine.attach_debugger`` -> :meth:`WatchLog.complete_watch`: after the
  replayed instruction it reads the new values, appends
  :class:`WatchLogEntry` s to the log and evaluates the conditions; it
  returns the hit to report, or None and the guest simply runs on (a rep
  string instruction resumes at the next iteration).

Rules
-----
* The log is **global**: one ordered sequence of records across
  watchpoints (interleavings are what one wants to see), each naming its
  watchpoint by kind, address and length -- not by object, because gdb
  removes and re-inserts its watchpoints at every stop.  It is bounded
  (:data:`LOG_MAX` records, the oldest dropped and counted).  With the log
  on, hits of gdb's watchpoints are recorded and do **not** stop, unless the
  watchpoint has a condition, which then decides.
* Conditions are keyed by a **linear address**, for the same reason: one
  applies to the gdb watchpoints whose range contains it.  A condition is
  ``fn(cpu, entry) -> bool``; true stops, false runs on, an exception stops
  and is recorded in ``errors``.  For Python users, :meth:`WatchLog.set_condition`
  gives one watchpoint object its own condition (it takes precedence over
  the table) and :meth:`WatchLog.log_watchpoint` logs one watchpoint's hits
  even while the global log is off.
* The guest's own DR0-DR3 watchpoints are neither logged nor conditioned
  (their #DB is the guest's business: core/guest_debug.py).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from ..core.cpu import CPU
from ..softmmu.watchpoint import GDB_OWNER, WatchHit, WatchKind, Watchpoint
from .conditions import WatchConditionFn
from .memview import Peek

LOG_MAX: Final = 100_000  # watch-log records kept (the oldest are dropped and counted)


@dataclass(frozen=True)
class WatchLogEntry:
    """One logged access to a watched range (what ``monitor watch log`` shows).

    ``pc`` is the EIP of the accessing instruction and ``icount`` the number of
    instructions retired before it; ``addr``/``size`` are the access (or its
    part on this page); ``old``/``new`` its bytes before and after (equal for
    a read; None if not RAM); ``wp_*`` name the watchpoint; ``stopped``: this
    hit was reported; ``error``: the condition failed (and the hit stopped).
    (``gdbemu.testing.WatchRecord`` is this record as a client reads it from
    ``monitor watch log json``.)
    """

    seq: int
    icount: int
    pc: int
    is_write: bool
    addr: int
    size: int
    old: int | None
    new: int | None
    wp_kind: WatchKind
    wp_vaddr: int
    wp_length: int
    stopped: bool = False
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "icount": self.icount,
            "pc": self.pc,
            "access": "w" if self.is_write else "r",
            "addr": self.addr,
            "size": self.size,
            "old": self.old,
            "new": self.new,
            "watchpoint": {"kind": self.wp_kind.stop_name, "addr": self.wp_vaddr, "length": self.wp_length},
            "stopped": self.stopped,
            "error": self.error,
        }


@dataclass(frozen=True)
class WatchCondition:
    """A condition from ``monitor watch cond``: its text (for display) and its compiled form."""

    text: str
    fn: WatchConditionFn


@dataclass(frozen=True)
class _Pending:
    """A hit noted during the replay, before its access: completed after the instruction."""

    wp: Watchpoint
    hit: WatchHit
    icount: int
    pc: int
    old: int | None


class WatchLog:
    """The watch log and watch conditions of one machine (the module docstring)."""

    def __init__(self, peek: Peek) -> None:
        self.peek = peek  # (cpu, vaddr, size) -> int | None: the debug view, RAM only
        self.enabled = False  # the global log (`monitor watch log on`)
        self.entries: deque[WatchLogEntry] = deque(maxlen=LOG_MAX)
        self.seq = 0  # records ever appended; seq - len(entries) were dropped
        self.conditions: dict[int, WatchCondition] = {}  # linear address -> condition
        self.errors: deque[str] = deque(maxlen=32)
        self.cond_evals = 0
        self.suppressed = 0  # hits that did not stop (logged, or condition false)
        self.wp_conditions: dict[Watchpoint, WatchConditionFn] = {}  # Python users: one watchpoint's own
        self.wp_logged: set[Watchpoint] = set()  # Python users: log this watchpoint's hits
        self._pending: list[_Pending] = []

    # ---- Python users ----------------------------------------------------------------------
    def set_condition(self, wp: Watchpoint, fn: WatchConditionFn | None) -> None:
        """``wp``'s own condition (before the address table), or None to remove it."""
        if fn is None:
            self.wp_conditions.pop(wp, None)
        else:
            self.wp_conditions[wp] = fn

    def log_watchpoint(self, wp: Watchpoint, on: bool = True) -> None:
        """Log ``wp``'s hits (without stopping) even while the global log is off."""
        if on:
            self.wp_logged.add(wp)
        else:
            self.wp_logged.discard(wp)

    def _logs(self, wp: Watchpoint) -> bool:
        return self.enabled or wp in self.wp_logged

    # ---- the tracer hook (softmmu/watchpoint.py) ---------------------------------------------
    def tracing(self, hits: Sequence[Watchpoint]) -> bool:
        """Whether hits on a page with these watchpoints must be noted."""
        return bool(
            self.enabled
            or self.conditions
            or (self.wp_conditions or self.wp_logged)
            and any(w in self.wp_conditions or w in self.wp_logged for w in hits)
        )

    def replay_hit(
        self, cpu: Any, hits: Sequence[Watchpoint], first: WatchHit, fresh: bool, vaddr: int, size: int, is_write: bool
    ) -> None:
        """During the replay, before the access: note every watchpoint it hits, with the old value."""
        if fresh:
            self._pending.clear()  # the first hit of this replay: notes left by a replay that faulted are stale
        if not self.tracing(hits):
            return
        want = WatchKind.WRITE if is_write else WatchKind.READ
        old = self.peek(cpu, vaddr, size)
        end = vaddr + size
        for wp in hits:
            if wp.kind & want and vaddr < wp.end and wp.vaddr < end:
                hit = first
                if hit.wp is not wp or hit.vaddr != vaddr or hit.is_write != is_write:
                    hit = WatchHit(wp, max(vaddr, wp.vaddr), size, is_write, vaddr)
                self._pending.append(_Pending(wp, hit, cpu.icount, cpu.eip, old))

    # ---- the debugger hook (Machine.watch_stop) -----------------------------------------------
    def condition_for(self, wp: Watchpoint) -> WatchConditionFn | None:
        """The condition deciding ``wp``'s hits: its own, else the first table entry inside its range."""
        own = self.wp_conditions.get(wp)
        if own is not None:
            return own
        for addr, cond in self.conditions.items():
            if wp.vaddr <= addr < wp.end:
                return cond.fn
        return None

    def complete_watch(self, cpu: CPU, hit: WatchHit) -> WatchHit | None:
        """After the replayed instruction: log, evaluate conditions; the hit to report, or None to run on.

        Without tracing (nothing was noted) ``hit`` is reported as it is.
        """
        if not self._pending:
            return hit
        pending, self._pending = self._pending, []
        report: WatchHit | None = None
        for p in pending:
            wp = p.wp
            if wp.owner != GDB_OWNER:
                if report is None and p.hit is hit:
                    report = hit  # the guest's DR breakpoint: the machine raises #DB as before
                continue
            h = p.hit
            new = p.old
            if h.is_write:
                new = self.peek(cpu, h.vaddr, h.size)
            entry = WatchLogEntry(
                0, p.icount, p.pc, h.is_write, h.vaddr, h.size, p.old, new, wp.kind, wp.vaddr, wp.length
            )
            cond = self.condition_for(wp)
            error = ""
            if cond is not None:
                self.cond_evals += 1
                try:
                    stop = bool(cond(cpu, entry))
                except Exception as exc:  # noqa: BLE001 - a failing condition stops, as a breakpoint's does
                    stop = True
                    error = f"{type(exc).__name__}: {exc}"
                    self.errors.append(f"watchpoint {wp.vaddr:#x} at pc {p.pc:#x}: condition failed: {error}")
            else:
                stop = not self._logs(wp)
            if self._logs(wp):
                self.seq += 1
                self.entries.append(
                    WatchLogEntry(
                        self.seq - 1,
                        entry.icount,
                        entry.pc,
                        entry.is_write,
                        entry.addr,
                        entry.size,
                        entry.old,
                        entry.new,
                        entry.wp_kind,
                        entry.wp_vaddr,
                        entry.wp_length,
                        stop and report is None,
                        error,
                    )
                )
            if stop and report is None:
                report = h
        if report is None:
            self.suppressed += 1
        return report

    # ---- the log ----------------------------------------------------------------------------
    def clear(self) -> None:
        self.entries.clear()
        self.seq = 0

    @property
    def dropped(self) -> int:
        return self.seq - len(self.entries)
