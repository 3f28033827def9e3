"""Reverse execution: history as checkpointed segments, positions reached again by replay.

Theory of operation
-------------------
gdbemu is deterministic: from a given machine state, running N instructions
gives the same state whatever the slicing (virtual time is the instruction
count; timers cut slices exactly).  So history needs only:

* **Segments.**  Every forward operation gdb asks for starts a segment with a
  checkpoint (a ``debug/snapshot.py`` snapshot, memory incremental from the
  MIGRATION dirty bitmap): a *step* segment is one ``Machine.step`` (with its
  ``irq`` setting), a *run* segment is ``Machine.run`` from its checkpoint to
  its end icount.  A long run is cut into segments of at most ``interval``
  instructions (checkpoints between slices), which bounds the replay
  distance of any position.  The pages each checkpoint stores are the pages
  the previous segment dirtied: a reverse watch skips every segment whose
  dirty set does not hold a watched page.
* **Outside input** (gdb's writes to memory and registers, console bytes,
  ``monitor`` commands that change state) happens only between operations,
  so it lies on a segment boundary and is in the next checkpoint: replaying
  a segment never needs it.  ``log`` keeps each input with its instruction
  count (what, where, when).
* **Positions.**  ``pos`` is None at the present (live execution), else
  ``(segment, icount)``: the state at ``icount`` inside that segment, made by
  loading the segment's checkpoint and running ``icount - start``
  instructions with gdb's breakpoints and watchpoints suspended.  ``present``
  is a checkpoint of the present, taken when gdb first goes back.

Reverse step (``bs``): the position one instruction earlier (the start of a
step segment whose instruction faulted or took an interrupt: the state
before it).  Reverse continue (``bc``): segments are replayed from the
newest back, with gdb's breakpoints and watchpoints armed, collecting hits
before the current position; the latest wins.  A breakpoint stops at the
instruction; a write watchpoint stops *before* the writing instruction (the
write undone, as rr reports it, so gdb's "Old value" is the later value and
"New value" the earlier).  Nothing found: the start of history
(``replaylog:begin``).

Going forward from a past position replays history (breakpoints and
watchpoints hit as they did) until the present, where live execution
resumes.  New input at a past position (gdb writes memory or a register)
discards the future: the present becomes this position, and ``notices``
says so (the target prints it to gdb's console as ``O`` output is not
possible inside a stop; it is logged and shown by ``monitor info history``).

Memory for history is bounded by ``limit_bytes`` (the checkpoints' stored
pages); the oldest segments are dropped first (their pages merge into the
next checkpoint, which keeps it loadable).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ..core.mmu import debug_translate
from ..core.stop import RunStop, StopKind
from ..machine import Machine
from ..softmmu.tlb import PAGE_BITS
from ..softmmu.watchpoint import GDB_OWNER, WatchHit, WatchKind
from .memview import pc_linear
from .snapshot import Snapshot, SnapshotStore, capture_cpu

DEFAULT_INTERVAL = 2_000_000  # instructions between automatic checkpoints
DEFAULT_LIMIT = 512 << 20  # bytes of checkpoint pages kept
DEFAULT_SPLIT = 20_000  # a replay longer than this leaves a checkpoint (bounds repeated reverse steps)


@dataclass
class Segment:
    snap: Snapshot
    start: int
    end: int | None  # None while it runs (the present's segment)
    step: bool = False
    irq: bool = False

    @property
    def empty(self) -> bool:
        return self.end is not None and self.end == self.start


@dataclass(frozen=True)
class ReverseStop:
    """Where a reverse operation (or forward replay) stopped.

    ``kind``: "step", "swbreak", "hwbreak", "watch", "begin" (start of
    history), or "present" (forward replay reached the present).
    """

    kind: str
    addr: int = 0
    watch_kind: WatchKind | None = None


@dataclass(frozen=True)
class _Hit:
    seg: int
    icount: int
    ordinal: int  # the n-th stop of the segment's replay (breakpoints: to rebuild the exact state)
    kind: str
    addr: int
    watch_kind: WatchKind | None


class History:
    """Recorded segments of one machine, and reverse/forward travel among them (module docstring)."""

    def __init__(
        self,
        machine: Machine,
        store: SnapshotStore,
        interval: int = DEFAULT_INTERVAL,
        limit_bytes: int = DEFAULT_LIMIT,
    ) -> None:
        self.machine = machine
        self.store = store
        self.interval = interval
        self.limit_bytes = limit_bytes
        self.split = DEFAULT_SPLIT
        self.segments: list[Segment] = []
        self.pos: tuple[int, int] | None = None
        self.present: Snapshot | None = None
        self.log: list[tuple[int, str]] = []  # (icount, what): input from outside
        self.notices: list[str] = []
        self.replayed_insns = 0  # instructions replayed (for benchmarks)
        # The state is the one ``goto(pos)`` makes (False at the present and at a rebuilt hit,
        # where an interrupt or exception may have been delivered after the icount was reached).
        self.canonical = False
        self._names = 0

    # ---- recording ----------------------------------------------------------------------
    def _checkpoint(self) -> Snapshot:
        self._names += 1
        return self.store.take(f"#h{self._names}")

    @property
    def in_past(self) -> bool:
        return self.pos is not None

    def begin(self, step: bool, irq: bool = False) -> None:
        """A live forward operation starts: close the open segment, checkpoint, open a new one."""
        m = self.machine
        if self.segments and self.segments[-1].end is None:
            self.segments[-1].end = m.cpu.icount
        seg = Segment(self._checkpoint(), m.cpu.icount, None, step, irq)
        self.segments.append(seg)
        self._bound()

    def tick(self) -> None:
        """Between slices of a live run: start a new segment past ``interval`` instructions."""
        if self.segments:
            seg = self.segments[-1]
            if seg.end is None and not seg.step and self.machine.cpu.icount - seg.start >= self.interval:
                self.begin(step=False)

    def stopped(self) -> None:
        """The live operation stopped: its segment ends here."""
        if self.segments and self.segments[-1].end is None:
            self.segments[-1].end = self.machine.cpu.icount

    def record_input(self, what: str) -> None:
        """Outside input at this point (gdb's writes, console bytes, monitor commands)."""
        self.log.append((self.machine.cpu.icount, what))
        if self.pos is not None:
            self._discard_future()

    def _discard_future(self) -> None:
        assert self.pos is not None
        k, icount = self.pos
        dropped = len(self.segments) - k - 1
        seg = self.segments[k]
        for later in reversed(self.segments[k + 1 :]):
            self._drop_snapshot(later.snap)
        del self.segments[k + 1 :]
        if self.present is not None:
            self._drop_snapshot(self.present)
        self.present = None
        if icount == seg.start:
            # The state is this segment's checkpoint: the segment itself is future.
            self._drop_snapshot(seg.snap)
            self.segments.pop()
            dropped += 1
        else:
            seg.end = icount
        self.pos = None
        self.notices.append(
            f"gdbemu: new input at instruction {icount} in the past: the recorded future "
            f"({dropped} segment(s) and the present) is discarded; execution goes on live from here"
        )

    def reset(self) -> None:
        """Forget the history (the machine's state was replaced: loadvm)."""
        for seg in reversed(self.segments):
            self._drop_snapshot(seg.snap)
        if self.present is not None:
            self._drop_snapshot(self.present)
        self.segments.clear()
        self.present = None
        self.pos = None

    def _drop_snapshot(self, snap: Snapshot) -> None:
        if snap.id in self.store.snapshots:
            self.store.delete(snap.name, only=snap.id)

    def _bound(self) -> None:
        """Drop the oldest segments while the checkpoints' pages exceed ``limit_bytes``."""
        while len(self.segments) > 2 and self.stored_bytes() > self.limit_bytes:
            oldest = self.segments.pop(0)
            self._drop_snapshot(oldest.snap)
            if self.pos is not None:
                self.pos = (self.pos[0] - 1, self.pos[1])

    def stored_bytes(self) -> int:
        return sum(s.snap.stored_bytes for s in self.segments if s.snap.id in self.store.snapshots)

    # ---- going to a position ----------------------------------------------------------------
    @contextmanager
    def _quiet(self) -> Iterator[None]:
        """gdb's breakpoints and watchpoints and the debugger hooks suspended (a plain replay)."""
        m = self.machine
        bps = {addr: set(kinds) for addr, kinds in m.breakpoints.gdb.items()}
        wps = [(wp.vaddr, wp.length, wp.kind) for wp in list(m.watchpoints.wps) if wp.owner == GDB_OWNER]
        debugger = m.debugger
        for addr, kinds in bps.items():
            for kind in kinds:
                m.breakpoints.remove(addr, kind)
        m.watchpoints.remove_owner(GDB_OWNER)
        m.attach_debugger(None)
        try:
            yield
        finally:
            for addr, kinds in bps.items():
                for kind in kinds:
                    m.breakpoints.add(addr, kind)
            for vaddr, length, wkind in wps:
                m.watchpoints.add(vaddr, length, wkind)
            m.attach_debugger(debugger)

    def _load(self, snap: Snapshot) -> None:
        self.store.load_snapshot(snap)
        self.machine.breakpoints.skip_once = None

    def _run_exact(self, n: int) -> None:
        m = self.machine
        target = m.cpu.icount + n
        while m.cpu.icount < target:
            stop = m.run(max_insns=target - m.cpu.icount)
            if stop.kind != StopKind.LIMIT:
                break
        self.replayed_insns += n

    def goto(self, k: int, icount: int) -> None:
        """Put the machine at position (segment k, icount) (module docstring).

        A replay longer than ``split`` instructions leaves a checkpoint behind
        (the segment is cut there: slicing does not change a run), so stepping
        back again replays at most ``split`` instructions.
        """
        seg = self.segments[k]
        with self._quiet():
            self._load(seg.snap)
            if not seg.step and icount - seg.start > self.split:
                mid = icount - (icount - seg.start) % self.split
                if mid == icount:
                    mid -= self.split
                if mid > seg.start:
                    self._run_exact(mid - seg.start)
                    cut = Segment(self._checkpoint(), mid, seg.end)
                    seg.end = mid
                    self.segments.insert(k + 1, cut)
                    k, seg = k + 1, cut
            if icount > seg.start:
                self._run_exact(icount - seg.start)
        self.pos = (k, icount)
        self.canonical = True

    def _ensure_present_saved(self) -> None:
        if self.pos is None:
            self.stopped()
            self.present = self._checkpoint()

    def _position(self) -> tuple[int, int]:
        """The current position; the present is in the last segment, at the machine's icount."""
        if self.pos is None:
            return len(self.segments) - 1, self.machine.cpu.icount
        return self.pos

    def _seg_end(self, k: int) -> int:
        end = self.segments[k].end
        return end if end is not None else self.machine.cpu.icount

    # ---- reverse step -------------------------------------------------------------------
    def reverse_step(self) -> ReverseStop:
        """One instruction back (``bs``)."""
        if not self.segments:
            return ReverseStop("begin")
        present = self.pos is None
        k, icount = self._position()
        seg = self.segments[k]
        self._ensure_present_saved()
        if seg.step and present:
            self.goto(k, seg.start)
            return ReverseStop("step")
        if not seg.step and not (self.canonical and not present):
            # An interrupt or exception delivered at this icount (the handler's first instruction):
            # the state before the delivery is at the same icount.
            before = capture_cpu(self.machine.cpu)
            self.goto(k, icount)
            if capture_cpu(self.machine.cpu) != before:
                return ReverseStop("step")
            assert self.pos is not None
            k, icount = self.pos  # goto may have cut the segment
            seg = self.segments[k]
        if not seg.step and icount > seg.start:
            self.goto(k, icount - 1)
            return ReverseStop("step")
        for j in range(k - 1, -1, -1):
            prev = self.segments[j]
            end = self._seg_end(j)
            if prev.step:
                self.goto(j, prev.start)
                return ReverseStop("step")
            if end > prev.start:
                self.goto(j, end - 1)
                return ReverseStop("step")
        self.goto(0, self.segments[0].start)
        return ReverseStop("begin")

    # ---- reverse continue ----------------------------------------------------------------
    def _watched_pages(self) -> set[int] | None:
        """Physical pages of gdb's watchpoints (through the current page tables); None: unknown."""
        m = self.machine
        pages: set[int] = set()
        for wp in m.watchpoints.wps:
            if wp.owner != GDB_OWNER:
                continue
            for addr in range(wp.vaddr & ~0xFFF, wp.vaddr + wp.length, 0x1000):
                paddr = debug_translate(m.cpu, addr)
                if paddr is None:
                    return None
                pages.add(paddr >> PAGE_BITS)
        return pages

    def _segment_dirty(self, k: int) -> set[int] | None:
        """Pages segment k wrote: the ones its successor checkpoint stores (None: not known)."""
        nxt = self.segments[k + 1].snap if k + 1 < len(self.segments) else self.present
        if nxt is None or nxt.parent != self.segments[k].snap.id:
            return None
        return set(nxt.all_pages().tolist())

    def _scan(self, k: int, limit: int) -> list[_Hit]:
        """Replay segment k from its start to icount ``limit`` with gdb's stops armed; every hit."""
        m = self.machine
        seg = self.segments[k]
        hits: list[_Hit] = []
        self._load(seg.snap)
        ordinal = 0
        debugger = m.debugger
        m.attach_debugger(None)
        try:
            if seg.step:
                if limit <= seg.start and self._seg_end(k) > seg.start:
                    return hits
                pc = pc_linear(m.cpu)
                if pc in m.breakpoints.gdb and seg.start < limit:
                    hits.append(_Hit(k, seg.start, 0, "swbreak", pc, None))
                stop = m.step(irq=seg.irq)
                if stop.kind == StopKind.DEBUG and isinstance(stop.hit, WatchHit):
                    hits.append(_Hit(k, m.cpu.icount, 1, "watch", stop.addr, stop.hit.wp.kind))
                return hits
            while m.cpu.icount < limit:
                before = m.cpu.icount
                stop = m.run(max_insns=limit - m.cpu.icount)
                self.replayed_insns += m.cpu.icount - before
                if stop.kind != StopKind.DEBUG:
                    break
                ordinal += 1
                if isinstance(stop.hit, WatchHit):
                    hits.append(_Hit(k, m.cpu.icount, ordinal, "watch", stop.addr, stop.hit.wp.kind))
                else:
                    hits.append(_Hit(k, m.cpu.icount, ordinal, stop.reason or "swbreak", stop.addr, None))
                    m.breakpoints.skip_once = pc_linear(m.cpu)
        finally:
            m.attach_debugger(debugger)
        return hits

    def _replay_to_hit(self, hit: _Hit) -> None:
        """Rebuild the state of a breakpoint hit (the n-th stop of its segment's replay)."""
        m = self.machine
        seg = self.segments[hit.seg]
        self._load(seg.snap)
        debugger = m.debugger
        m.attach_debugger(None)
        try:
            if seg.step:
                return
            n = 0
            while True:
                before = m.cpu.icount
                stop: RunStop = m.run(max_insns=max(1, hit.icount + 1 - m.cpu.icount))
                self.replayed_insns += m.cpu.icount - before
                if stop.kind != StopKind.DEBUG:
                    break
                n += 1
                if n == hit.ordinal:
                    break
                m.breakpoints.skip_once = pc_linear(m.cpu)
        finally:
            m.attach_debugger(debugger)
        self.pos = (hit.seg, m.cpu.icount)
        self.canonical = False

    def reverse_continue(self) -> ReverseStop:
        """Back to the latest breakpoint or watchpoint hit before the current position (``bc``)."""
        k, icount = self._position()
        self._ensure_present_saved()
        m = self.machine
        watching = any(wp.owner == GDB_OWNER for wp in m.watchpoints.wps)
        only_watch = watching and not m.breakpoints.gdb
        wpages = self._watched_pages() if only_watch else None
        cr3 = m.cpu.cr[3]
        if not self.segments:
            return ReverseStop("begin")
        j = k
        while j >= 0:
            seg = self.segments[j]
            limit = icount if j == k else self._seg_end(j)
            # Skip an interval that wrote no watched page (translated with today's page tables:
            # only for intervals that start under the same CR3).
            if wpages is not None and seg.snap.state["cpus"][0]["cr"][3] == cr3:
                dirty = self._segment_dirty(j)
                if dirty is not None and not dirty & wpages:
                    j -= 1
                    continue
            hits = [h for h in self._scan(j, limit) if self._before(h, j, k, icount)]
            if hits:
                hit = hits[-1]
                if hit.kind == "watch":
                    # Before the writing instruction: the write undone (module docstring).
                    self.goto(j, hit.icount - 1)
                    return ReverseStop("watch", hit.addr, hit.watch_kind)
                if seg.step:
                    self.goto(j, seg.start)
                else:
                    self._replay_to_hit(hit)
                return ReverseStop(hit.kind, hit.addr)
            j -= 1
        if self.segments:
            self.goto(0, self.segments[0].start)
        return ReverseStop("begin")

    @staticmethod
    def _before(hit: _Hit, j: int, k: int, icount: int) -> bool:
        return j != k or hit.icount < icount

    # ---- forward in the past ---------------------------------------------------------------
    def forward_step(self) -> ReverseStop:
        """One instruction forward in recorded history (gdb's stepi in the past)."""
        assert self.pos is not None
        k, icount = self.pos
        seg = self.segments[k]
        end = self._seg_end(k)
        if not seg.step and icount + 1 < end:
            self.goto(k, icount + 1)
            return ReverseStop("step")
        if k + 1 < len(self.segments):
            self.goto(k + 1, self.segments[k + 1].start)
            return ReverseStop("step")
        return self.to_present()

    def forward_continue(self) -> ReverseStop:
        """Forward through recorded history to the next breakpoint/watchpoint hit, else the present."""
        assert self.pos is not None
        k, icount = self.pos
        for j in range(k, len(self.segments)):
            seg = self.segments[j]
            hits = self._scan(j, self._seg_end(j))
            later = [h for h in hits if j > k or h.icount > icount or (h.kind == "watch" and h.icount > icount)]
            if later:
                hit = later[0]
                if hit.kind == "watch":
                    self.goto(j, hit.icount)  # forward: after the write, as a live watchpoint
                    return ReverseStop("watch", hit.addr, hit.watch_kind)
                if seg.step:
                    self.goto(j, seg.start)
                else:
                    self._replay_to_hit(hit)
                return ReverseStop(hit.kind, hit.addr)
        return self.to_present()

    def to_present(self) -> ReverseStop:
        """Back to the present (the end of history): live execution goes on from here."""
        if self.present is not None:
            with self._quiet():
                self._load(self.present)
            self._drop_snapshot(self.present)
            self.present = None
        self.pos = None
        self.canonical = False
        return ReverseStop("present")

    def info(self) -> str:
        where = "the present" if self.pos is None else f"instruction {self.pos[1]} (segment {self.pos[0]})"
        first = self.segments[0].start if self.segments else self.machine.cpu.icount
        lines = [
            f"history: {len(self.segments)} segments from instruction {first}; at {where}",
            f"checkpoint memory: {self.stored_bytes() / (1 << 20):.1f} MiB of {self.limit_bytes >> 20} MiB",
            f"checkpoint interval: {self.interval} instructions",
            f"outside inputs logged: {len(self.log)}",
        ]
        lines += self.notices[-5:]
        return "\n".join(lines) + "\n"
