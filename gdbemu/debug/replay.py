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
  distance of any position; the newest checkpoints also trail a live run
  (``tick``: tails, ``tail_seconds`` of running apart, the two newest kept),
  so the first step back after a long run replays about that long.  The pages each checkpoint stores are the pages
  the previous segment dirtied: a reverse watch skips every segment whose
  dirty set does not hold a watched page.
* **Outside input** (gdb's writes to memory and registers, console bytes,
  ``monitor`` commands that change state) happens only between operations,
  so it lies on a segment boundary and is in the next checkpoint: replaying
  a segment never needs it.  ``log`` keeps each input with its instruction
  count (what, where, when).
* **Positions.**  ``pos`` is None at the present (live execution), else
  ``(segment, icount)`` and ``phase``: the state at ``icount`` inside that
  segment, made by loading the segment's checkpoint and running ``icount -
  start`` instructions with gdb's breakpoints and watchpoints suspended, then
  ``phase`` deliveries (hardware interrupts and exceptions the recorded run
  made before its next instruction: ``_event``).  Phase 0 is the state a
  budgeted run stops at; the last phase is the handler's first instruction
  before it runs.  ``present`` is a checkpoint of the present, taken when
  gdb first goes back; a state reached otherwise (the present, a breakpoint
  hit) gets its phase by replaying and comparing the CPU state.

Reverse step (``bs``): the position one step earlier -- one delivery back
when the phase is above 0, else the last phase of the previous icount (the
start of a step segment whose instruction faulted or took an interrupt: the
state before it).  Stepping forward in the past takes the same steps.
Reverse continue (``bc``): segments are replayed from the newest back, with
gdb's breakpoints and watchpoints armed, collecting hits before the current
position; the latest wins.  A breakpoint stops at the
instruction; a write watchpoint stops *before* the writing instruction (the
write undone, as rr reports it, so gdb's "Old value" is the later value and
"New value" the earlier).  Nothing found: the start of history
(``replaylog:begin``).

Going forward from a past position replays history (breakpoints and
watchpoints hit as they did) until the present, where live execution
resumes.

Every operation that replays is also a generator (``reverse_step_iter``,
``reverse_continue_iter``, ``forward_continue_iter``) that yields every
``SCAN_CHUNK`` replayed instructions: ``MachineTarget`` advances it from
``run_slice`` as it would run the guest, so gdb's Ctrl-C ends it (the
generator is closed) with the machine at the point its replay had reached,
an exact past position.  New input at a past position (gdb writes memory or a register)
discards the future: the present becomes this position, and ``notices``
says so (the target prints it to gdb's console as ``O`` output is not
possible inside a stop; it is logged and shown by ``monitor info history``).

**Lazy checkpoints.**  A checkpoint costs as much as the rest of a gdb
round trip, and gdb resumes at every ``stepi``, twice per breakpoint hit (a
step over the breakpoint, then the continue) and once per watchpoint hit.
The state where a segment ended is its checkpoint's state plus its own run
again -- exactly, by determinism: one ``Machine.step`` with the same ``irq``
setting for a step segment; for a run segment, its instructions with a
budget and then the deliveries made at its last icount until the CPU state
is the one recorded when it stopped (``Segment.end_state``: the CPU's
state alone costs a fifth of a checkpoint).  So a segment begun by a
resume right where the previous one stopped, with no outside input in
between (``record_input``/``touch``: gdb's writes, console bytes, monitor
commands), takes no checkpoint of its own (``Segment.saved`` None), at most
``LAZY_CHAIN`` in a row.  The first operation that goes into the past gives
each such segment its checkpoint (``_materialize``), after saving the
present and back to it; so everything else sees every segment with a
checkpoint.  A run replayed there is short: tail checkpoints trail a long
run.  A step segment must have stepped exactly once and stopped as a step
(``step_done``, set by ``MachineTarget``).

Memory for history is bounded by ``limit_bytes`` (the checkpoints' stored
pages); the oldest segments are dropped first (their pages merge into the
next checkpoint, which keeps it loadable).
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

from ..core.cpu import CPU, REQ_EXIT
from ..core.mmu import debug_translate
from ..core.stop import RunStop, StopKind
from ..hw.state import State
from ..machine import Machine
from ..softmmu.tlb import PAGE_BITS
from ..softmmu.watchpoint import GDB_OWNER, WatchHit, WatchKind
from .memview import pc_linear
from .snapshot import Snapshot, SnapshotStore, capture_cpu

T = TypeVar("T")

DEFAULT_INTERVAL = 2_000_000  # instructions between automatic checkpoints
DEFAULT_LIMIT = 512 << 20  # bytes of checkpoint pages kept
DEFAULT_SPLIT = 20_000  # a replay longer than this leaves a checkpoint (bounds repeated reverse steps)
SCAN_CHUNK = 200_000  # a replay that searches (bc, c in the past) yields this often: Ctrl-C ends it there
# Tail checkpoints (the first step back after a long run replays from the newest): one after at least
# DEFAULT_TAIL instructions and DEFAULT_TAIL_SECONDS of CPU time run since the newest checkpoint, looked
# at every TAIL_CHUNK instructions.  The time rule bounds their cost (a checkpoint takes about a
# millisecond: a few percent) and the replay's length (replay runs as fast as the run did).
DEFAULT_TAIL = 20_000
DEFAULT_TAIL_SECONDS = 0.04
TAIL_CHUNK = 50_000


@dataclass
class Segment:
    saved: Snapshot | None  # None: a lazy checkpoint, made from the step before (module docstring)
    start: int
    end: int | None  # None while it runs (the present's segment)
    step: bool = False
    irq: bool = False
    tail: bool = False  # a checkpoint that only trails a live run: replaced by the next one (History.tick)
    at_limit: bool = False  # starts where a budgeted run stopped (a slice, a cut): phase 0, no delivery yet
    steps: int = 0  # a step segment: Machine.step calls made live (MachineTarget.run_slice)
    end_state: State | None = None  # a run segment that stopped: the CPU's state there (lazy checkpoints)
    step_done: bool = False  # ... and the last one stopped as a plain step

    @property
    def snap(self) -> Snapshot:
        """The checkpoint (made by ``History._materialize`` for a lazy segment before anyone asks)."""
        assert self.saved is not None, "a lazy checkpoint read before History._materialize"
        return self.saved

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
        self.tail = DEFAULT_TAIL
        self.tail_seconds = DEFAULT_TAIL_SECONDS
        self._checkpoint_time = 0.0  # process CPU time of the newest checkpoint
        self.segments: list[Segment] = []
        self.pos: tuple[int, int] | None = None
        self.present: Snapshot | None = None
        self.log: list[tuple[int, str]] = []  # (icount, what): input from outside
        self.notices: list[str] = []
        self.replayed_insns = 0  # instructions replayed (for benchmarks)
        # The state is the one ``goto(pos)`` makes (False at the present and at a rebuilt hit,
        # where an interrupt or exception may have been delivered after the icount was reached).
        self.canonical = False
        # Deliveries (interrupts, exceptions) done at the position's icount: the position is
        # (segment, icount, phase); phase 0 is the state a run stopped by its budget has there.
        self.phase = 0
        self._names = 0
        # ``_bound``'s running estimate of stored_bytes(): exact after each full count, plus what
        # each new checkpoint stores (drops only lower it); counted again when it passes the limit
        # and every MEASURE_EVERY checkpoints, so a checkpoint costs no walk over all of history.
        self._bytes_estimate = 0
        self._input_seen = False  # outside input since the newest segment began: the next one needs a checkpoint
        self._lazy_chain = 0  # lazy segments in a row at the end of history

    # ---- recording ----------------------------------------------------------------------
    MEASURE_EVERY = 64  # checkpoints between two exact measures (state size, stored bytes)

    def _checkpoint(self) -> Snapshot:
        self._names += 1
        snap = self.store.take(f"#h{self._names}", measure=self._names % self.MEASURE_EVERY == 1)
        self._bytes_estimate += snap.stored_bytes
        self._checkpoint_time = time.process_time()
        return snap

    @property
    def in_past(self) -> bool:
        return self.pos is not None

    LAZY_CHAIN = 16  # lazy checkpoints in a row at most (module docstring)

    def begin(self, step: bool, irq: bool = False) -> None:
        """A live forward operation starts: close the open segment, checkpoint (or not, after a step:
        module docstring), open a new one."""
        m = self.machine
        prev = self.segments[-1] if self.segments else None
        if prev is not None and prev.end is None:
            prev.end = m.cpu.icount
        lazy = (
            prev is not None
            and (prev.steps == 1 and prev.step_done if prev.step else prev.end_state is not None)
            and not self._input_seen
            and self._lazy_chain < self.LAZY_CHAIN
        )
        self._lazy_chain = self._lazy_chain + 1 if lazy else 0
        self._input_seen = False
        seg = Segment(None if lazy else self._checkpoint(), m.cpu.icount, None, step, irq)
        self.segments.append(seg)
        self._bound()

    def stepped(self, done: bool) -> None:
        """The live step segment made a ``Machine.step`` (``done``: it stopped as a plain step)."""
        if self.segments and self.segments[-1].end is None and self.segments[-1].step:
            self.segments[-1].steps += 1
            self.segments[-1].step_done = done

    def touch(self) -> None:
        """Something may have changed the state outside the guest's run (a monitor command): the next
        segment takes a checkpoint of its own."""
        self._input_seen = True

    def _materialize(self) -> None:
        """Give every lazy segment its checkpoint: its step's checkpoint loaded, one step, a checkpoint
        (module docstring).  Moves the machine: the caller has saved the state it wants back."""
        m = self.machine
        at: int | None = None  # the segment whose start state the machine is in
        k = 0
        with self._quiet():
            while k < len(self.segments):
                seg = self.segments[k]
                if seg.saved is not None:
                    k += 1
                    continue
                prev = self.segments[k - 1]
                if at != k - 1:
                    self._load(prev.snap)
                if prev.step:
                    m.step(irq=prev.irq)
                    for cpu in m.cpus:
                        cpu.interrupt_request &= ~REQ_EXIT
                elif not self._replay_run(prev.start, seg.start, prev.end_state):
                    # Never expected (the run is deterministic): history cannot reach this segment,
                    # so it starts after it, at the next checkpoint.
                    n = k + 1
                    while n < len(self.segments) and self.segments[n].saved is None:
                        n += 1
                    for old in self.segments[:n]:
                        self._drop_snapshot(old.saved)
                    del self.segments[:n]
                    self.notices.append(f"gdbemu: history before instruction {seg.start} dropped (replay diverged)")
                    k, at = 0, None
                    continue
                seg.saved = self._checkpoint()
                at = k
                k += 1
        self._lazy_chain = 0

    def _replay_run(self, start: int, end: int, want: State | None) -> bool:
        """From a run segment's checkpoint (loaded), its run to icount ``end`` and the deliveries made
        there until the CPU state is ``want``; False if it never is."""
        m = self.machine
        while m.cpu.icount < end:
            before = m.cpu.icount
            m.run(max_insns=end - m.cpu.icount)
            self.replayed_insns += m.cpu.icount - before
            if m.cpu.icount == before:
                break
        for cpu in m.cpus:
            cpu.interrupt_request &= ~REQ_EXIT
        if m.cpu.icount != end:
            return False
        for _ in range(self.MAX_PHASES + 1):
            if capture_cpu(m.cpu) == want:
                return True
            if not self._event():
                break
        return False

    def tick(self, tails: bool = False) -> None:
        """Between slices of a live run: a checkpoint every ``interval`` instructions, and (``tails``)
        tail checkpoints.

        Tails trail the run (at least ``tail`` instructions and
        ``tail_seconds`` of CPU time apart), so the first step back after a
        long run replays about that much, not up to an interval.  They are
        taken inside a slice (``MachineTarget`` passes ``tails`` between the
        pieces of a slice), not at its end, where gdb's Ctrl-C stops a run:
        the newest tail then lies before the stop.  The two newest are kept;
        an older tail goes, its pages merging into the next checkpoint as
        when the oldest segments are dropped, so history keeps about one
        checkpoint per interval and its memory does not grow.
        """
        if not self.segments:
            return
        seg = self.segments[-1]
        if seg.end is not None or seg.step:
            return
        icount = self.machine.cpu.icount
        anchor = next(s for s in reversed(self.segments) if not s.tail or s is self.segments[0])
        if icount - anchor.start >= self.interval:
            self.begin(step=False)
        elif (
            tails
            and icount - seg.start >= self.tail
            and time.process_time() - self._checkpoint_time >= self.tail_seconds
        ):
            self.begin(step=False)
            self.segments[-1].tail = True
        else:
            return
        self.segments[-1].at_limit = True
        segs = self.segments
        i = len(segs) - 3  # segs[-1] is new, segs[-2] the previous one: kept
        while i > 0 and segs[i].tail:
            old = segs.pop(i)
            self._drop_snapshot(old.snap)
            segs[i - 1].end = segs[i].start
            i -= 1

    def stopped(self) -> None:
        """The live operation stopped: its segment ends here (a tail's checkpoint is kept from now on)."""
        if self.segments and self.segments[-1].end is None:
            last = self.segments[-1]
            last.end = self.machine.cpu.icount
            if not last.step:  # what a lazy checkpoint of the next segment is checked against
                last.end_state = capture_cpu(self.machine.cpu)
            for seg in self.segments[-3:]:  # tails are only ever the two newest segments (tick)
                seg.tail = False

    def record_input(self, what: str) -> None:
        """Outside input at this point (gdb's writes, console bytes, monitor commands)."""
        self.log.append((self.machine.cpu.icount, what))
        self._input_seen = True
        if self.pos is not None:
            self._discard_future()

    def _discard_future(self) -> None:
        assert self.pos is not None
        k, icount = self.pos
        dropped = len(self.segments) - k - 1
        seg = self.segments[k]
        for later in reversed(self.segments[k + 1 :]):
            self._drop_snapshot(later.saved)
        del self.segments[k + 1 :]
        if self.present is not None:
            self._drop_snapshot(self.present)
        self.present = None
        if icount == seg.start:
            # The state is this segment's checkpoint: the segment itself is future.
            self._drop_snapshot(seg.saved)
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
            self._drop_snapshot(seg.saved)
        if self.present is not None:
            self._drop_snapshot(self.present)
        self.segments.clear()
        self.present = None
        self.pos = None

    def _drop_snapshot(self, snap: Snapshot | None) -> None:
        if snap is not None and snap.id in self.store.snapshots:
            self.store.delete(snap.name, only=snap.id)

    def _bound(self) -> None:
        """Drop the oldest segments while the checkpoints' pages exceed ``limit_bytes``."""
        if self._bytes_estimate <= self.limit_bytes and self._names % self.MEASURE_EVERY:
            return
        self._bytes_estimate = self.stored_bytes()
        while len(self.segments) > 2 and self._bytes_estimate > self.limit_bytes:
            # The oldest goes with the lazy segments after it (they are made from it); a checkpoint stays.
            n = 1
            while n < len(self.segments) and self.segments[n].saved is None:
                n += 1
            if n > len(self.segments) - 2:
                break
            for oldest in self.segments[:n]:
                self._drop_snapshot(oldest.saved)
            del self.segments[:n]
            if self.pos is not None:
                self.pos = (self.pos[0] - n, self.pos[1])
            self._bytes_estimate = self.stored_bytes()

    def stored_bytes(self) -> int:
        return sum(s.saved.stored_bytes for s in self.segments if s.saved and s.saved.id in self.store.snapshots)

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

    def _run_exact(self, k: int, n: int) -> Generator[None, None, None]:
        """Replay n instructions of segment k, yielding every ``SCAN_CHUNK``; closed there (Ctrl-C),
        the replay's point becomes the position."""
        m = self.machine
        target = m.cpu.icount + n
        while m.cpu.icount < target:
            before = m.cpu.icount
            stop = m.run(max_insns=min(target - m.cpu.icount, SCAN_CHUNK))
            self.replayed_insns += m.cpu.icount - before
            if stop.kind != StopKind.LIMIT:
                break
            if m.cpu.icount < target:
                try:
                    yield
                except GeneratorExit:
                    self.pos = (k, m.cpu.icount)
                    self.phase = 0
                    self.canonical = True
                    raise

    def goto(self, k: int, icount: int, phase: int = 0) -> None:
        """Put the machine at position (segment k, icount, phase) (module docstring)."""
        drain(self._goto(k, icount, phase))

    def _goto(self, k: int, icount: int, phase: int = 0) -> Generator[None, None, None]:
        """``goto`` as a generator (it yields while it replays: ``_run_exact``).

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
                    yield from self._run_exact(k, mid - seg.start)
                    cut = Segment(self._checkpoint(), mid, seg.end, at_limit=True)
                    seg.end = mid
                    self.segments.insert(k + 1, cut)
                    k, seg = k + 1, cut
            if icount > seg.start:
                yield from self._run_exact(k, icount - seg.start)
        for _ in range(phase):
            self._event()
        self.pos = (k, icount)
        self.phase = phase
        self.canonical = True

    # ---- deliveries: several states at one instruction count ------------------------------
    MAX_PHASES = 16  # deliveries looked for at one instruction count

    def _event(self) -> bool:
        """One step of the recorded run: a delivery (True: the icount stays) or an instruction (False;
        also when nothing can happen: a CPU halted for good).

        The run stops right after a delivery: the ``interrupt`` trace hook
        (called as one starts) asks for a stop, which the run loop honours
        once the delivery is done.  Slicing does not change a run, so going
        on from there is the recorded run.  Software interrupts (INT n, INT3,
        INTO) and #DB traps are part of the instruction that retired (a
        budgeted run's stop includes them), not deliveries of their own.
        """
        m = self.machine
        hooks = m.trace
        previous = hooks.interrupt
        before = m.cpu.icount
        delivered = False

        def on_delivery(cpu: CPU, vector: int, soft: bool, error_code: int | None, next_eip: int) -> None:
            nonlocal delivered
            if previous is not None:
                previous(cpu, vector, soft, error_code, next_eip)
            if not soft and vector != 1:
                delivered = True
                m.request_stop(RunStop(StopKind.LIMIT, "replay: a delivery"))

        hooks.interrupt = on_delivery
        try:
            with self._quiet():
                m.run(max_insns=1)
        finally:
            hooks.interrupt = previous
            for cpu in m.cpus:
                cpu.interrupt_request &= ~REQ_EXIT
        return delivered and m.cpu.icount == before

    def _phase_of(self, k: int, icount: int, want: object) -> Generator[None, None, int | None]:
        """The phase at which segment k's run has CPU state ``want`` at ``icount`` (the machine is left
        there), or None: it has not (the machine is then at (k, icount, 0))."""
        yield from self._goto(k, icount)
        k = self.pos[0] if self.pos is not None else k  # the replay may have cut the segment
        cpu = self.machine.cpu
        for phase in range(self.MAX_PHASES + 1):
            if capture_cpu(cpu) == want:
                self.phase = phase
                return phase
            if phase == self.MAX_PHASES or not self._event():
                break
        yield from self._goto(k, icount)
        return None

    def _goto_last(self, k: int, icount: int) -> Generator[None, None, None]:
        """The last state at ``icount`` in segment k's run: after every delivery done there."""
        yield from self._goto(k, icount)
        k = self.pos[0] if self.pos is not None else k
        phases = 0
        while phases < self.MAX_PHASES and self._event():
            phases += 1
        yield from self._goto(k, icount, phases)

    def _state_after(self, k: int) -> object | None:
        """The CPU state the run of segment k reaches at its end: the next checkpoint's, or the present's."""
        snap = self.segments[k + 1].snap if k + 1 < len(self.segments) else self.present
        return None if snap is None else snap.state["cpus"][0]

    def _ensure_present_saved(self) -> None:
        if self.pos is None:
            self.stopped()
            self.present = self._checkpoint()
            if any(seg.saved is None for seg in self.segments):
                self._materialize()
                with self._quiet():
                    self._load(self.present)  # back to the present: the caller reads its state

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
        """One step back (``bs``); see ``reverse_step_iter``."""
        return drain(self.reverse_step_iter())

    def reverse_step_iter(self) -> Generator[None, None, ReverseStop]:
        """One step back (``bs``): one instruction, or one delivery (interrupt, exception) made between two.

        The states at one icount are its phases: 0 before the deliveries made
        there, then one after each (the last is the handler's first instruction,
        before it runs).  Stepping back from phase p > 0 goes to phase p - 1; from
        phase 0, to the last phase of the previous icount.
        """
        if not self.segments:
            return ReverseStop("begin")
        present = self.pos is None
        # First: giving lazy segments their checkpoints may drop the oldest (a replay that
        # diverged), which moves every index.
        self._ensure_present_saved()
        if not self.segments:
            return ReverseStop("begin")
        k, icount = self._position()
        seg = self.segments[k]
        if seg.step and present:
            yield from self._goto(k, seg.start)
            return ReverseStop("step")
        if not seg.step and not (self.canonical and not present):
            # Which phase is this state (the present, a breakpoint hit)?  Replay and compare.
            phase = (yield from self._phase_of(k, icount, capture_cpu(self.machine.cpu))) or 0
            assert self.pos is not None
            k, icount = self.pos  # goto may have cut the segment
            seg = self.segments[k]
        else:
            phase = self.phase
        if phase > 0:
            yield from self._goto(k, icount, phase - 1)
            return ReverseStop("step")
        if not seg.step and icount > seg.start:
            yield from self._goto_last(k, icount - 1)
            return ReverseStop("step")
        for j in range(k - 1, -1, -1):
            prev = self.segments[j]
            end = self._seg_end(j)
            if prev.step:
                yield from self._goto(j, prev.start)
                return ReverseStop("step")
            if end > prev.start:
                # The next segment may start after deliveries made at ``end`` in this one's run.
                want = None if self.segments[j + 1].at_limit else self._state_after(j)
                q = (yield from self._phase_of(j, end, want)) if want is not None else None
                if q:
                    yield from self._goto(j, end, q - 1)
                else:
                    yield from self._goto_last(j, end - 1)
                return ReverseStop("step")
        yield from self._goto(0, self.segments[0].start)
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

    def _scan(self, k: int, limit: int) -> Generator[None, None, list[_Hit]]:
        """Replay segment k from its start to icount ``limit`` with gdb's stops armed; every hit.

        Yields every ``SCAN_CHUNK`` instructions.  Closed there (Ctrl-C), it
        leaves the machine at that point of the replay, as the position.
        """
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
                stop = m.run(max_insns=min(limit - m.cpu.icount, SCAN_CHUNK))
                self.replayed_insns += m.cpu.icount - before
                if stop.kind == StopKind.LIMIT and m.cpu.icount < limit:
                    try:
                        yield
                    except GeneratorExit:
                        # Interrupted: the replay's point is the position (a run stopped by its budget).
                        self.pos = (k, m.cpu.icount)
                        self.canonical = True
                        m.breakpoints.skip_once = None
                        raise
                    continue
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
        return drain(self.reverse_continue_iter())

    def reverse_continue_iter(self) -> Generator[None, None, ReverseStop]:
        """``reverse_continue`` as a generator: it yields while it replays (see ``_scan``)."""
        self._ensure_present_saved()  # first: it may drop segments (see reverse_step_iter)
        k, icount = self._position()
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
            hits = [h for h in (yield from self._scan(j, limit)) if self._before(h, j, k, icount)]
            if hits:
                hit = hits[-1]
                if hit.kind == "watch":
                    # Before the writing instruction: the write undone (module docstring).
                    yield from self._goto(j, hit.icount - 1)
                    return ReverseStop("watch", hit.addr, hit.watch_kind)
                if seg.step:
                    yield from self._goto(j, seg.start)
                else:
                    self._replay_to_hit(hit)
                return ReverseStop(hit.kind, hit.addr)
            j -= 1
        if self.segments:
            yield from self._goto(0, self.segments[0].start)
        return ReverseStop("begin")

    @staticmethod
    def _before(hit: _Hit, j: int, k: int, icount: int) -> bool:
        return j != k or hit.icount < icount

    # ---- forward in the past ---------------------------------------------------------------
    def forward_step(self) -> ReverseStop:
        """One step forward in recorded history (gdb's stepi in the past): an instruction, or a
        delivery the recorded run made before the next one (``reverse_step``'s phases)."""
        assert self.pos is not None
        k, icount = self.pos
        seg = self.segments[k]
        if seg.step:
            if k + 1 < len(self.segments):
                self.goto(k + 1, self.segments[k + 1].start)
                return ReverseStop("step")
            return self.to_present()
        if not self.canonical:
            phase = drain(self._phase_of(k, icount, capture_cpu(self.machine.cpu)))
            assert self.pos is not None
            k, icount = self.pos
            if phase is None:
                self.phase = 0
        if self._event():
            self.phase += 1
        else:
            icount = self.machine.cpu.icount  # one more (the same: halted for good)
            self.phase = 0
        self.pos = (k, icount)
        self.canonical = True
        if icount >= self._seg_end(k):
            # The end of this segment's run: the next segment (or the present) once its state is reached.
            want = self._state_after(k)
            if want is None or capture_cpu(self.machine.cpu) == want or icount > self._seg_end(k):
                if k + 1 < len(self.segments):
                    self.goto(k + 1, self.segments[k + 1].start)
                    return ReverseStop("step")
                return self.to_present()
        return ReverseStop("step")

    def forward_continue(self) -> ReverseStop:
        """Forward through recorded history to the next breakpoint/watchpoint hit, else the present."""
        return drain(self.forward_continue_iter())

    def forward_continue_iter(self) -> Generator[None, None, ReverseStop]:
        """``forward_continue`` as a generator: it yields while it replays (see ``_scan``)."""
        assert self.pos is not None
        k, icount = self.pos
        for j in range(k, len(self.segments)):
            seg = self.segments[j]
            hits = yield from self._scan(j, self._seg_end(j))
            later = [h for h in hits if j > k or h.icount > icount or (h.kind == "watch" and h.icount > icount)]
            if later:
                hit = later[0]
                if hit.kind == "watch":
                    yield from self._goto(j, hit.icount)  # forward: after the write, as a live watchpoint
                    return ReverseStop("watch", hit.addr, hit.watch_kind)
                if seg.step:
                    yield from self._goto(j, seg.start)
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
        self.phase = 0
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


def drain(gen: Generator[None, None, T]) -> T:
    """Run a History generator to its end; its result."""
    while True:
        try:
            next(gen)
        except StopIteration as done:
            result: T = done.value
            return result
