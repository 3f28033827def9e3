"""Virtual time: derived from the instruction count, so every run is the same run.

Like QEMU's ``-icount shift=N``: one guest instruction is ``2**shift``
nanoseconds of virtual time.  While the CPU is halted, virtual time jumps
straight to the next timer deadline (``skip_to``) instead of spinning.  The
run loop asks ``budget()`` how many instructions may run before the next
deadline and stops exactly there, so a timer interrupt lands on the same
instruction in every run (DESIGN.md invariant 5).

Devices create timers with ``new_timer(callback)`` and arm them with
``timer.mod(deadline_ns)``; ``run_timers`` calls the expired ones.

Pacing (``-icount sleep=on``)
-----------------------------
By default a halted CPU's wait costs no real time.  ``set_pacer(pacer)``
names the one hook that changes that: while a pacer is set,
``skip_to(deadline_ns)`` first calls ``pacer(deadline_ns)``, which may sleep
in real time until the deadline is due, or wait for outside input (the
console) and then call ``advance_to(ns)`` with an earlier virtual time to
move the clock only that far (``advance_to`` never moves it backwards).
When the pacer returns, ``skip_to`` moves virtual time to ``deadline_ns``
unless the pacer returned True, meaning "I advanced the clock myself; stop
here" (the run loop then delivers what the input raised and asks again).
``set_pacer(None)`` removes it.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

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
    def __init__(self, icount: Callable[[], int], shift: int = 3, kick: Callable[[], None] | None = None) -> None:
        self.icount = icount
        self.shift = shift
        self.offset = 0  # ns added by halts (time skipped while nothing ran)
        self.heap: list[tuple[int, int, Timer, int]] = []
        self._ids = 0
        self.timers_fired = 0
        # The virtual time at which the slice now running ends (set by the run
        # loop) and how to cut it short when a timer is armed before that.
        self.slice_end = 0
        self.kick = kick
        # sleep=on: called by skip_to before virtual time jumps (module docstring).
        self.pacer: Callable[[int], bool | None] | None = None
        # Every timer made by new_timer, in creation order: a snapshot names timers by index.
        self.timers: list[Timer] = []

    def set_pacer(self, pacer: Callable[[int], bool | None] | None) -> None:
        """Pace halts in real time: ``pacer(deadline_ns)`` runs first in every ``skip_to``."""
        self.pacer = pacer

    def next_id(self) -> int:
        self._ids += 1
        return self._ids

    def now(self) -> int:
        """Virtual nanoseconds since the machine started."""
        return (self.icount() << self.shift) + self.offset

    def new_timer(self, callback: Callable[[], None]) -> Timer:
        timer = Timer(self, callback)
        self.timers.append(timer)
        return timer

    # ---- snapshots (debug/snapshot.py) ------------------------------------------------
    def save_state(self) -> dict[str, object]:
        """Virtual time and the pending timers: (deadline, heap order, timer index), in heap order.

        Timers are named by creation index, so loading re-binds each deadline to
        the same callback on a machine built the same way.
        """
        self._prune()
        index = {id(t): i for i, t in enumerate(self.timers)}
        pending = [
            [deadline, order, index[id(timer)]]
            for deadline, order, timer, seq in sorted(self.heap, key=lambda e: (e[0], e[1]))
            if timer.deadline is not None and seq == timer.seq and id(timer) in index
        ]
        return {
            "offset": self.offset,
            "ids": self._ids,
            "timers_fired": self.timers_fired,
            "slice_end": self.slice_end,
            "ntimers": len(self.timers),
            "pending": pending,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore what ``save_state`` returned: every timer disarmed, then the saved ones re-armed."""
        if state["ntimers"] != len(self.timers):
            raise ValueError(f"the snapshot has {state['ntimers']} timers, this machine {len(self.timers)}")
        for timer in self.timers:
            timer.deadline = None
            timer.seq += 1
        heap: list[tuple[int, int, Timer, int]] = []
        for deadline, order, idx in state["pending"]:
            timer = self.timers[idx]
            timer.deadline = deadline
            timer.seq += 1
            heap.append((deadline, order, timer, timer.seq))
        heapq.heapify(heap)
        self.heap = heap
        self.offset = state["offset"]
        self._ids = state["ids"]
        self.timers_fired = state["timers_fired"]
        self.slice_end = state["slice_end"]

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

    def skip_to(self, deadline_ns: int) -> None:
        """Halted: let virtual time jump to ``deadline_ns`` without executing anything.

        With a pacer set, it is asked first (module docstring); a pacer that
        returns True has moved the clock itself (``advance_to``) and the jump
        is not made.
        """
        pacer = self.pacer
        if pacer is not None and pacer(deadline_ns):
            return
        self.advance_to(deadline_ns)

    def advance_to(self, ns: int) -> None:
        """Move virtual time forward to ``ns`` (never backwards) without executing anything."""
        now = self.now()
        if ns > now:
            self.offset += ns - now

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
