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
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..core.exceptions import InstructionRestart

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
    condition: object = None  # a callable (cpu, hit) -> bool evaluated in the stub (later issue)
    log: list = field(default_factory=list)

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


class WatchpointList:
    def __init__(self, flush_page) -> None:
        self.wps: list[Watchpoint] = []
        self.by_page: dict[int, list[Watchpoint]] = {}
        self.flush_page = flush_page  # (vpage) -> None, on every CPU's TLB
        self.checks = 0
        self.replays = 0

    def _pages(self, wp: Watchpoint) -> range:
        return range(wp.vaddr & -4096, ((wp.end - 1) & -4096) + 1, 4096)

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

    def remove_owner_prefix(self, prefix: tuple) -> None:
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

    def check(self, cpu, vaddr: int, size: int, is_write: bool) -> None:
        """Slow path, before an access to a watched page: restart, or record the hit."""
        self.checks += 1
        lst = self.by_page.get(vaddr & -4096)
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
                return
