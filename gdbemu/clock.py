"""Virtual time: derived from the instruction count, so every run is the same run.

Like QEMU's ``-icount shift=N``: one guest instruction is ``2**shift``
nanoseconds of virtual time.  While the CPU is halted, virtual time jumps
straight to the next timer deadline (``skip_to``) instead of spinning.  The
run loop asks ``budget()`` how many instructions may run before the next
deadline and stops exactly there, so a timer interrupt lands on the same
instruction in every run (DESIGN.md invariant 5).

Devices create timers with ``new_timer(callback)`` and arm them with
``timer.mod(deadline_ns)``; ``run_timers`` calls the expired ones.

Pacing (``-icount sleep=on``): ``set_pacer(pacer)`` names the one hook point.
With a pacer set, ``skip_to(deadline_ns)`` does not jump: it calls
``pacer(deadline_ns)``, which waits in real time and moves virtual time
itself with ``advance_to(ns)``, ``ns <= deadline_ns`` — to the deadline when
the wait ran out, or to an earlier time when something from outside (console
input) arrived first, so the run loop looks at the new state before the
deadline.  ``advance_to`` is the plain jump ``skip_to`` makes with no pacer.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

NS_PER_SEC = 1_000_000_000


class Timer:
    __slots__ = ("clock", "callback", "deadline", "seq")

    def __init__(self, clock: VirtualClock, callback: Callable[[], None]) -> None:
        self.clock = clock
        self.callback = callback
        self.deadline: int | None = None
        self.seq = 0

    def mod(self, deadline_ns: int) -> None:
        """(Re)arm to fire at virtual time ``deadline_ns``.

        A deadline before the end of the slice now running kicks the CPU out
        at the next TB boundary, so the run loop recomputes its budget and the
        timer fires on time (deterministically: the kick comes from an
        instruction, at the same point every run).
        """
        self.deadline = deadline_ns
        self.seq += 1
        clock = self.clock
        heapq.heappush(clock.heap, (deadline_ns, clock.next_id(), self, self.seq))
        if deadline_ns < clock.slice_end and clock.kick is not None:
            clock.kick()

    def cancel(self) -> None:
        self.deadline = None
        self.seq += 1

    @property
    def pending(self) -> bool:
        return self.deadline is not None


class VirtualClock:
    def __init__(self, icount: Callable[[], int], shift: int = 3) -> None:
        self.icount = icount
        self.shift = shift
        self.offset = 0  # ns added by halts (time skipped while nothing ran)
        self.heap: list = []
        self._ids = 0
        self.timers_fired = 0
        # The virtual time at which the slice now running ends (set by the run
        # loop) and how to cut it short when a timer is armed before that.
        self.slice_end = 0
        self.kick: Callable[[], None] | None = None
        self.pacer: Callable[[int], None] | None = None

    def next_id(self) -> int:
        self._ids += 1
        return self._ids

    def now(self) -> int:
        """Virtual nanoseconds since the machine started."""
        return (self.icount() << self.shift) + self.offset

    def new_timer(self, callback: Callable[[], None]) -> Timer:
        return Timer(self, callback)

    def _prune(self) -> None:
        heap = self.heap
        while heap and (heap[0][2].deadline is None or heap[0][3] != heap[0][2].seq):
            heapq.heappop(heap)

    def next_deadline(self) -> int | None:
        self._prune()
        return self.heap[0][0] if self.heap else None

    def budget(self, limit: int) -> int:
        """Instructions that may run before the next deadline (at least 1), at most ``limit``.

        Also records where the slice ends in virtual time (``slice_end``).
        """
        deadline = self.next_deadline()
        insns = limit
        if deadline is not None:
            ns = deadline - self.now()
            insns = 1 if ns <= 0 else max(1, min(limit, (ns + (1 << self.shift) - 1) >> self.shift))
        self.slice_end = self.now() + (insns << self.shift)
        return insns

    def set_pacer(self, pacer: Callable[[int], None] | None) -> None:
        """Install (or with None remove) the sleep=on pacer (module docstring)."""
        self.pacer = pacer

    def skip_to(self, deadline_ns: int) -> None:
        """Halted: let virtual time jump to ``deadline_ns`` without executing anything (or pace it)."""
        if self.pacer is not None:
            self.pacer(deadline_ns)
            return
        self.advance_to(deadline_ns)

    def advance_to(self, deadline_ns: int) -> None:
        """Move virtual time forward to ``deadline_ns`` now (no pacing; never backwards)."""
        now = self.now()
        if deadline_ns > now:
            self.offset += deadline_ns - now

    def run_timers(self) -> int:
        """Fire every timer whose deadline has passed; returns how many fired."""
        fired = 0
        now = self.now()
        heap = self.heap
        while True:
            self._prune()
            if not heap or heap[0][0] > now:
                break
            _, _, timer, _ = heapq.heappop(heap)
            timer.deadline = None
            timer.seq += 1
            timer.callback()
            fired += 1
            now = self.now()
        self.timers_fired += fired
        return fired
