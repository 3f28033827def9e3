"""Watchpoints: any number, any length and alignment, as TLB_WATCHPOINT flags (QEMU's watchpoint.c).

Theory of operation
-------------------
A watchpoint is a linear range and the access kinds it watches (write,
read, or both).  The registry keeps *ranges*, never pages: an interval index
(the watchpoints sorted by start, with the running maximum of their ends, so
``bisect`` finds the ones overlapping any range) is rebuilt lazily after an
insertion or removal, so inserting costs the same for one byte and for the
whole address space (gdb's ``Z2,0,ffffffffffffffff`` answers at once).  When
the TLB fills an entry it asks ``page_flags(vpage)`` (does a watched range
overlap this page?) and sets TLB_WATCHPOINT on the read and/or write tag, so
accesses to those pages (and only those) leave the fast path (DESIGN.md
invariant 1: a watchpoint on page A never slows page B).  Adding or removing
a watchpoint drops, from every TLB, the entries inside its range and nothing
else (``flush_range``, given at construction: ``CPUTLB.flush_range``, which
costs nothing where no entry is cached); translated code is never
invalidated for a watchpoint.

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

The watch kind is :class:`WatchKind`, defined once: its values are the flag
bits the registry tests (``kind & WatchKind.WRITE``), and the debugger side
(machine.py, core/guest_debug.py, gdbemu/debug) uses the same enum.  Only the
edges convert: the RSP layer has its own protocol enum (``rsp.target.WatchKind``,
the Z packet types 2/3/4; rsp imports nothing outside rsp), and
:attr:`WatchKind.stop_name` is gdb's stop-reply word (``watch``, ``rwatch``,
``awatch``).

The tracer hook
---------------
The watch log and watch conditions (``gdbemu/debug/watchlog.py``) are the
debugger's, not the registry's.  They need one thing from here: during the
replay, *before* the access, a look at every watchpoint the access hits (to
read the old value of the bytes).  :meth:`WatchpointList.set_tracer` names
that hook point; without a tracer (no debugger attached) nothing is called.
"""

from __future__ import annotations

import enum
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Any, Final, Protocol

from .exits import InstructionRestart
from .tlb import PAGE_SIZE


class WatchKind(enum.IntFlag):
    """What a watchpoint watches; the values are the bits ``check`` tests."""

    WRITE = 1
    READ = 2
    ACCESS = 3  # WRITE | READ

    @property
    def stop_name(self) -> str:
        """gdb's word for it in a stop reply (``T05watch:ADDR;``): watch, rwatch, awatch."""
        return _STOP_NAMES[self]


_STOP_NAMES: Final = {WatchKind.WRITE: "watch", WatchKind.READ: "rwatch", WatchKind.ACCESS: "awatch"}

# The flag-bit names (the same objects as the enum members).
WATCH_WRITE: Final = WatchKind.WRITE
WATCH_READ: Final = WatchKind.READ
WATCH_ACCESS: Final = WatchKind.ACCESS

GDB_OWNER: Final = "gdb"


@dataclass(eq=False)
class Watchpoint:
    vaddr: int
    length: int
    kind: WatchKind
    owner: object = GDB_OWNER  # "gdb", or ("dr", cpu_index, n) for the guest's DR0-3 (core/guest_debug.py)
    hits: int = 0

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


class WatchTracer(Protocol):
    """Told about every watchpoint a replayed access hits, before the access (the module docstring)."""

    def replay_hit(
        self, cpu: Any, hits: Sequence[Watchpoint], first: WatchHit, fresh: bool, vaddr: int, size: int, is_write: bool
    ) -> None:
        """``hits``: the watchpoints the access overlaps (match them against its kind); ``first``: the hit
        ``cpu.watch_hit`` holds; ``fresh``: this access made it (the first hit of this replay)."""
        ...


class WatchedCPU(Protocol):
    """What the registry's check reads and writes of the CPU (softmmu knows no core type)."""

    watch_replay: bool
    watch_hit: WatchHit | None
    icount: int
    eip: int


def _hashable(owner: object) -> object:
    """The owner as a dict key part (owners are strings or tuples; anything else by identity)."""
    try:
        hash(owner)
    except TypeError:
        return id(owner)
    return owner


class WatchpointList:
    def __init__(self, flush_range: Callable[[int, int], None]) -> None:
        self.wps: list[Watchpoint] = []  # insertion order (the order hits are matched in)
        self.flush_range = flush_range  # (vaddr, length) -> None: every CPU's TLB entries inside the range
        self.tracer: WatchTracer | None = None
        # (vaddr, length, kind, owner) -> the watchpoints with that identity, for ``find``
        # (gdb's Z/z packets: a thousand insertions must not cost a thousand scans).
        self._by_key: dict[tuple[int, int, int, object], list[Watchpoint]] = {}
        self.checks = 0
        self.replays = 0
        # The interval index, rebuilt on the first query after a change (module docstring).
        self._stale = False
        self._sorted: list[Watchpoint] = []
        self._starts: list[int] = []
        self._max_end: list[int] = []  # _max_end[i]: the largest end among _sorted[: i + 1]

    def set_tracer(self, tracer: WatchTracer | None) -> None:
        """The debugger's watch log and conditions (gdbemu/debug/watchlog.py), or None."""
        self.tracer = tracer

    def add(self, vaddr: int, length: int, kind: WatchKind, owner: object = GDB_OWNER) -> Watchpoint:
        if length < 1:
            raise ValueError("a watchpoint covers at least one byte")
        wp = Watchpoint(vaddr & 0xFFFFFFFFFFFFFFFF, length, WatchKind(kind), owner)
        self.wps.append(wp)
        self._by_key.setdefault((wp.vaddr, length, wp.kind, _hashable(owner)), []).append(wp)
        self._stale = True
        self.flush_range(wp.vaddr, wp.length)
        return wp

    def remove(self, wp: Watchpoint) -> None:
        self.wps.remove(wp)
        key = (wp.vaddr, wp.length, wp.kind, _hashable(wp.owner))
        same = self._by_key.get(key)
        if same is not None:
            same.remove(wp)
            if not same:
                del self._by_key[key]
        self._stale = True
        self.flush_range(wp.vaddr, wp.length)

    def _index(self) -> None:
        order = {id(wp): n for n, wp in enumerate(self.wps)}
        self._sorted = sorted(self.wps, key=lambda wp: (wp.vaddr, order[id(wp)]))
        self._starts = [wp.vaddr for wp in self._sorted]
        self._max_end = list(accumulate((wp.end for wp in self._sorted), max))
        self._stale = False

    def overlapping(self, start: int, end: int) -> list[Watchpoint]:
        """The watchpoints overlapping [start, end), in insertion order."""
        if not self.wps:
            return []
        if self._stale:
            self._index()
        j = bisect_left(self._starts, end) - 1
        max_end, srt = self._max_end, self._sorted
        out: list[Watchpoint] = []
        while j >= 0 and max_end[j] > start:
            wp = srt[j]
            if wp.end > start:
                out.append(wp)
            j -= 1
        if len(out) > 1:
            position = {id(wp): n for n, wp in enumerate(self.wps)}
            out.sort(key=lambda wp: position[id(wp)])
        return out

    def find(self, vaddr: int, length: int, kind: WatchKind, owner: object = GDB_OWNER) -> Watchpoint | None:
        same = self._by_key.get((vaddr & 0xFFFFFFFFFFFFFFFF, length, kind, _hashable(owner)))
        if same is None:
            return None
        for wp in same:  # in insertion order, as a scan of ``wps`` finds them
            if wp.owner == owner:
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
        if not self.wps:
            return False, False
        kinds = 0
        for wp in self.overlapping(vpage, vpage + PAGE_SIZE):
            kinds |= wp.kind
        return bool(kinds & WATCH_READ), bool(kinds & WATCH_WRITE)

    def check(self, cpu: WatchedCPU, vaddr: int, size: int, is_write: bool) -> None:
        """Slow path, before an access to a watched page: restart, or record the hit."""
        self.checks += 1
        lst = self.overlapping(vaddr, vaddr + size)
        if not lst:
            return
        want = WATCH_WRITE if is_write else WATCH_READ
        end = vaddr + size
        for wp in lst:
            if wp.kind & want and vaddr < wp.end and wp.vaddr < end:
                if not cpu.watch_replay:
                    self.replays += 1
                    raise InstructionRestart()
                first = cpu.watch_hit
                fresh = first is None
                if first is None:
                    first = cpu.watch_hit = WatchHit(wp, max(vaddr, wp.vaddr), size, is_write, vaddr)
                    wp.hits += 1
                if self.tracer is not None:
                    self.tracer.replay_hit(cpu, lst, first, fresh, vaddr, size, is_write)
                return
