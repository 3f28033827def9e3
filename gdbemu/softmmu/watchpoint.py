"""Watchpoints: any number, any length and alignment, as TLB_WATCHPOINT flags (QEMU's watchpoint.c).

Theory of operation
-------------------
A watchpoint is a linear range and the access kinds it watches (write,
read, or both).  Pages it overlaps are kept in ``by_page``; when the TLB
fills an entry it asks ``page_flags(vpage)`` and sets TLB_WATCHPOINT on the
read and/or write tag, so accesses to those pages (and only those) leave the
fast path (DESIGN.md invariant 1: a watchpoint on page A never slows page B).
Adding or removing a watchpoint flushes the pages it covers from every TLB.

x86 data breakpoints are trap-like: the access completes and the stop is
reported after the instruction.  The slow path calls ``check`` *before* the
access.  The first time an instruction hits, ``check`` raises
``InstructionRestart``: the exec loop restores the state to the start of the
instruction and replays it alone with ``cpu.watch_replay`` set.  During the
replay ``check`` records the first hit in ``cpu.watch_hit`` and lets the
access proceed; after the replayed instruction the exec loop reports the
stop (to gdb, or as #DB for the guest's own DR7 breakpoints).  A ``rep``
string instruction stops after the iteration that hit, with ECX/ESI/EDI
updated and EIP still on it (the string helper checks ``cpu.watch_hit``).

Hits are matched by overlap, so an access that only partly covers a watched
range hits, and one crossing a page is checked in both halves (the slow path
splits it).  The reported address is the first watched byte the access
touched.

Conditions and the watch log (evaluated here, never by gdb)
-----------------------------------------------------------
gdb never sends conditions for watchpoints (it evaluates them itself, after
a stop), so gdbemu offers its own through ``monitor watch cond`` and
``monitor watch log``; the mechanism is unchanged -- the TLB flag, the
restart, the replay.  While any of them is active ("tracing"), ``check``
also notes, during the replay and *before* each access, every matching
watchpoint with the old value of the accessed bytes (``peek``: the debug
view, RAM only, so an MMIO register is never read twice).  After the
replayed instruction ``complete`` reads the new values, appends
:class:`WatchRecord` s to the log and evaluates the conditions; it returns
the hit to report, or None and the guest simply runs on (a rep string
instruction resumes at the next iteration).

* The log is **global**: one ordered sequence of records across
  watchpoints (interleavings are what one wants to see), each naming its
  watchpoint by kind, address and length -- not by object, because gdb
  removes and re-inserts its watchpoints at every stop.  It is bounded
  (``LOG_MAX`` records, the oldest dropped and counted).  With the log on,
  hits of gdb's watchpoints are recorded and do **not** stop, unless the
  watchpoint has a condition, which then decides.
* Conditions are keyed by a **linear address**, for the same reason: one
  applies to the gdb watchpoints whose range contains it.  A condition is
  ``fn(cpu, record) -> bool``; true stops, false runs on, an exception
  stops and is recorded in ``errors``.  ``Watchpoint.condition`` (for
  Python users) takes precedence over the table; ``Watchpoint.log`` logs
  that watchpoint's hits even while the global log is off.
* The guest's own DR0-DR3 watchpoints are neither logged nor conditioned.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from .exits import InstructionRestart
from .tlb import PAGE_MASK, PAGE_SIZE

LOG_MAX = 100_000  # watch-log records kept (the oldest are dropped and counted)

WATCH_WRITE = 1
WATCH_READ = 2
WATCH_ACCESS = WATCH_WRITE | WATCH_READ
KIND_NAMES = {WATCH_WRITE: "watch", WATCH_READ: "rwatch", WATCH_ACCESS: "awatch"}


@dataclass(eq=False)
class Watchpoint:
    vaddr: int
    length: int
    kind: int  # WATCH_WRITE / WATCH_READ / WATCH_ACCESS
    owner: object = "gdb"  # "gdb", or ("dr", cpu_index, n) for the guest's DR0-3
    hits: int = 0
    condition: Callable[[Any, WatchRecord], object] | None = None  # (cpu, record) -> bool: false runs on
    log: bool = False  # log this watchpoint's hits (without stopping) even while the global log is off

    @property
    def end(self) -> int:
        return self.vaddr + self.length


@dataclass(frozen=True)
class WatchHit:
    wp: Watchpoint
    addr: int  # first watched byte the access touched
    size: int
    is_write: bool
    vaddr: int  # the whole access


@dataclass(frozen=True)
class WatchRecord:
    """One logged access to a watched range (what ``monitor watch log`` shows).

    ``pc`` is the EIP of the accessing instruction and ``icount`` the number of
    instructions retired before it; ``addr``/``size`` are the access (or its
    part on this page); ``old``/``new`` its bytes before and after (equal for
    a read; None if not RAM); ``wp_*`` name the watchpoint; ``stopped``: this
    hit was reported; ``error``: the condition failed (and the hit stopped).
    """

    seq: int
    icount: int
    pc: int
    is_write: bool
    addr: int
    size: int
    old: int | None
    new: int | None
    wp_kind: int
    wp_vaddr: int
    wp_length: int
    stopped: bool = False
    error: str = ""

    def as_dict(self) -> dict[str, object]:
        return {
            "seq": self.seq,
            "icount": self.icount,
            "pc": self.pc,
            "access": "w" if self.is_write else "r",
            "addr": self.addr,
            "size": self.size,
            "old": self.old,
            "new": self.new,
            "watchpoint": {"kind": KIND_NAMES[self.wp_kind], "addr": self.wp_vaddr, "length": self.wp_length},
            "stopped": self.stopped,
            "error": self.error,
        }


@dataclass(frozen=True)
class WatchCondition:
    """A condition from ``monitor watch cond``: its text (for display) and its compiled form."""

    text: str
    fn: Callable[[Any, WatchRecord], object]


@dataclass(frozen=True)
class _Pending:
    """A hit noted during the replay, before its access: completed after the instruction."""

    wp: Watchpoint
    hit: WatchHit
    icount: int
    pc: int
    old: int | None


class WatchedCPU(Protocol):
    """What the registry's check reads and writes of the CPU (softmmu knows no core type)."""

    watch_replay: bool
    watch_hit: WatchHit | None
    icount: int
    eip: int


class WatchpointList:
    def __init__(
        self,
        flush_page: Callable[[int], None],
        peek: Callable[[Any, int, int], int | None] | None = None,
    ) -> None:
        self.wps: list[Watchpoint] = []
        self.by_page: dict[int, list[Watchpoint]] = {}
        self.flush_page = flush_page  # (vpage) -> None, on every CPU's TLB
        # (cpu, vaddr, size) -> int | None: the debug view of guest memory, RAM only (old/new values)
        self.peek = peek
        self.checks = 0
        self.replays = 0
        # ---- conditions and the log (module docstring) ----
        self.log_enabled = False
        self.log: deque[WatchRecord] = deque(maxlen=LOG_MAX)
        self.log_seq = 0  # records ever appended; seq - len(log) were dropped
        self.conditions: dict[int, WatchCondition] = {}  # linear address -> condition
        self.errors: deque[str] = deque(maxlen=32)
        self.cond_evals = 0
        self.suppressed = 0  # hits that did not stop (logged, or condition false)
        self._pending: list[_Pending] = []

    def _pages(self, wp: Watchpoint) -> range:
        return range(wp.vaddr & PAGE_MASK, ((wp.end - 1) & PAGE_MASK) + 1, PAGE_SIZE)

    def add(self, vaddr: int, length: int, kind: int, owner: object = "gdb") -> Watchpoint:
        if length < 1:
            raise ValueError("a watchpoint covers at least one byte")
        wp = Watchpoint(vaddr & 0xFFFFFFFF, length, kind, owner)
        self.wps.append(wp)
        for page in self._pages(wp):
            self.by_page.setdefault(page, []).append(wp)
            self.flush_page(page)
        return wp

    def remove(self, wp: Watchpoint) -> None:
        self.wps.remove(wp)
        for page in self._pages(wp):
            lst = self.by_page.get(page)
            if lst is not None:
                lst.remove(wp)
                if not lst:
                    del self.by_page[page]
            self.flush_page(page)

    def find(self, vaddr: int, length: int, kind: int, owner: object = "gdb") -> Watchpoint | None:
        for wp in self.wps:
            if wp.vaddr == vaddr and wp.length == length and wp.kind == kind and wp.owner == owner:
                return wp
        return None

    def remove_owner(self, owner: object) -> None:
        for wp in [w for w in self.wps if w.owner == owner]:
            self.remove(wp)

    def remove_owner_prefix(self, prefix: tuple[object, ...]) -> None:
        """Remove watchpoints whose owner tuple starts with ``prefix`` (a CPU's DR0-DR3)."""
        n = len(prefix)
        for wp in [w for w in self.wps if isinstance(w.owner, tuple) and w.owner[:n] == prefix]:
            self.remove(wp)

    def page_flags(self, vpage: int) -> tuple[bool, bool]:
        """Fill-time classification: (watch reads, watch writes) for this page."""
        lst = self.by_page.get(vpage)
        if not lst:
            return False, False
        kinds = 0
        for wp in lst:
            kinds |= wp.kind
        return bool(kinds & WATCH_READ), bool(kinds & WATCH_WRITE)

    def check(self, cpu: WatchedCPU, vaddr: int, size: int, is_write: bool) -> None:
        """Slow path, before an access to a watched page: restart, or record the hit."""
        self.checks += 1
        lst = self.by_page.get(vaddr & PAGE_MASK)
        if not lst:
            return
        want = WATCH_WRITE if is_write else WATCH_READ
        end = vaddr + size
        for wp in lst:
            if wp.kind & want and vaddr < wp.end and wp.vaddr < end:
                if not cpu.watch_replay:
                    self.replays += 1
                    raise InstructionRestart()
                if cpu.watch_hit is None:
                    cpu.watch_hit = WatchHit(wp, max(vaddr, wp.vaddr), size, is_write, vaddr)
                    wp.hits += 1
                    # The first hit of this replay: notes left by a replay that faulted are stale.
                    self._pending.clear()
                if self.log_enabled or self.conditions or any(w.log or w.condition is not None for w in lst):
                    self._note(cpu, lst, want, vaddr, size, is_write)
                return

    # ---- conditions and the log ------------------------------------------------------
    def _note(self, cpu: WatchedCPU, lst: list[Watchpoint], want: int, vaddr: int, size: int, is_write: bool) -> None:
        """During the replay, before the access: note every watchpoint it hits, with the old value."""
        old = self.peek(cpu, vaddr, size) if self.peek is not None else None
        end = vaddr + size
        for wp in lst:
            if wp.kind & want and vaddr < wp.end and wp.vaddr < end:
                first = cpu.watch_hit
                if first is None or first.wp is not wp or first.vaddr != vaddr or first.is_write != is_write:
                    first = WatchHit(wp, max(vaddr, wp.vaddr), size, is_write, vaddr)
                self._pending.append(_Pending(wp, first, cpu.icount, cpu.eip, old))

    def condition_for(self, wp: Watchpoint) -> Callable[[Any, WatchRecord], object] | None:
        """The condition deciding ``wp``'s hits: its own, else the first table entry inside its range."""
        if wp.condition is not None:
            return wp.condition
        for addr, cond in self.conditions.items():
            if wp.vaddr <= addr < wp.end:
                return cond.fn
        return None

    def complete(self, cpu: WatchedCPU, hit: WatchHit) -> WatchHit | None:
        """After the replayed instruction: log, evaluate conditions; the hit to report, or None to run on.

        Without tracing (nothing was noted) ``hit`` is reported as before.
        """
        if not self._pending:
            return hit
        pending, self._pending = self._pending, []
        report: WatchHit | None = None
        for p in pending:
            wp = p.wp
            if wp.owner != "gdb":
                if report is None and p.hit is hit:
                    report = hit  # the guest's DR breakpoint: the caller raises #DB as before
                continue
            h = p.hit
            new = p.old
            if h.is_write and self.peek is not None:
                new = self.peek(cpu, h.vaddr, h.size)
            rec = WatchRecord(0, p.icount, p.pc, h.is_write, h.vaddr, h.size, p.old, new, wp.kind, wp.vaddr, wp.length)
            cond = self.condition_for(wp)
            error = ""
            if cond is not None:
                self.cond_evals += 1
                try:
                    stop = bool(cond(cpu, rec))
                except Exception as exc:  # noqa: BLE001 - a failing condition stops, as a breakpoint's does
                    stop = True
                    error = f"{type(exc).__name__}: {exc}"
                    self.errors.append(f"watchpoint {wp.vaddr:#x} at pc {p.pc:#x}: condition failed: {error}")
            else:
                stop = not (self.log_enabled or wp.log)
            if self.log_enabled or wp.log:
                self.log_seq += 1
                self.log.append(
                    WatchRecord(
                        self.log_seq - 1,
                        rec.icount,
                        rec.pc,
                        rec.is_write,
                        rec.addr,
                        rec.size,
                        rec.old,
                        rec.new,
                        rec.wp_kind,
                        rec.wp_vaddr,
                        rec.wp_length,
                        stop and report is None,
                        error,
                    )
                )
            if stop and report is None:
                report = h
        if report is None:
            self.suppressed += 1
        return report

    def clear_log(self) -> None:
        self.log.clear()
        self.log_seq = 0

    @property
    def log_dropped(self) -> int:
        return self.log_seq - len(self.log)
