"""Target-side breakpoint conditions and commands: agent points and agent-style dprintf.

``ConditionalBreakpoints+`` and ``BreakpointCommands+`` for a Machine
(rsp.target rule 8).  gdb's agent bytecode is compiled once (``debug/ax.py``;
registers read straight from ``cpu.regs``/``cpu.eip``, memory through the
debug walk, RAM only) into a hook installed in ``machine.breakpoints.conditions``.
The hook runs in the prologue of the TB that starts at the breakpoint, inside
generated code: a false condition costs a few microseconds and never returns
to the exec loop, let alone to gdb.  A condition that cannot be evaluated
(unmapped memory, division by zero) stops, as gdbserver does; the error is
printed on stderr and kept for ``monitor info conditions``.  dprintf output
(``set dprintf-style agent``) goes to gdbemu's stderr and to a buffer
(``monitor dprintf log``, ``MachineTarget.dprintf_text()``); the breakpoint
does not stop.

Conditions and commands are kept per (linear address, hardware) -- the stub
sets them before it inserts the breakpoint -- and :meth:`BreakpointAgent.install`
puts the compiled hook of the address into ``machine.breakpoints.conditions``
while a gdb breakpoint is there.  Where a Z0 and a Z1 share an address the
stop is reported if either hook says so; if either has neither conditions nor
commands the address stops unconditionally (no hook).
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from ..core.cpu import CPU
from ..machine import Machine
from ..rsp.arch import RegisterLayout
from . import ax
from .memview import peek_linear
from .registers import register_source, register_value


class AgentPoint:
    """The conditions and commands gdb gave one Z0/Z1 breakpoint, compiled."""

    __slots__ = ("conditions", "commands", "persist", "compiled")

    def __init__(self) -> None:
        self.conditions: tuple[bytes, ...] = ()
        self.commands: tuple[bytes, ...] = ()
        self.persist = False
        self.compiled: ax.CompiledBreakpoint | None = None


class BreakpointAgent:
    """The ops object of ``supports_breakpoint_conditions``/``supports_breakpoint_commands``."""

    DPRINTF_LOG_MAX = 1 << 20  # characters of dprintf output kept for `monitor dprintf log`

    def __init__(self, machine: Machine, layout: RegisterLayout) -> None:
        self.machine = machine
        self.layout = layout
        self.points: dict[tuple[int, bool], AgentPoint] = {}
        # The last non-empty conditions/commands per breakpoint, kept after gdb removes it (it does
        # at every stop), so `monitor info conditions` has something to show while stopped.
        self.history: dict[tuple[int, bool], AgentPoint] = {}
        self.counters: dict[int, list[int]] = {}  # linear -> [evaluations, true, errors], across re-insertions
        # (bytecode, is_condition) -> compiled program: gdb re-sends it at every resume
        self.cache: dict[tuple[bytes, bool], Callable[[Any], int]] = {}
        self.errors: deque[str] = deque(maxlen=32)
        self.dprintf_chunks: deque[str] = deque()
        self.dprintf_size = 0
        self.dprintf_count = 0
        self.dprintf_stderr = True
        self.tsv: dict[int, int] = {}
        mem = machine.mem

        def ref(cpu: CPU, addr: int, size: int) -> int:
            """``size`` bytes at a linear address by the debug walk (no fill, no fault), RAM only."""
            value = peek_linear(mem, cpu, addr, size)
            if value is None:
                raise ax.AgentEvalError(f"cannot read {size} bytes at {addr & 0xFFFFFFFFFFFFFFFF:#x}")
            return value

        self.env = ax.AgentEnv(
            register=self._register_source,
            ref=ref,
            output=self._output,
            names={"_value": self._register_value},
            tsv=self.tsv,
        )

    # ---- the agent environment: i386 registers as Python snippets ------------------------
    def _register_source(self, regnum: int) -> str | None:
        return register_source(self.layout, regnum)

    def _register_value(self, cpu: CPU, regnum: int) -> int:
        return register_value(cpu, self.layout[regnum].name)

    def _output(self, text: str) -> None:
        """printf from a dprintf: gdbemu's stderr (gdbserver prints on its stdout) and the log buffer."""
        self.dprintf_count += 1
        if self.dprintf_stderr:
            sys.stderr.write(text)
            sys.stderr.flush()
        self.dprintf_chunks.append(text)
        self.dprintf_size += len(text)
        while self.dprintf_size > self.DPRINTF_LOG_MAX and len(self.dprintf_chunks) > 1:
            self.dprintf_size -= len(self.dprintf_chunks.popleft())

    def dprintf_text(self) -> str:
        return "".join(self.dprintf_chunks)

    def clear_dprintf(self) -> None:
        self.dprintf_chunks.clear()
        self.dprintf_size = 0

    # ---- the ops the stub calls -----------------------------------------------------------
    def set_conditions(self, vaddr: int, kind: int, hardware: bool, conditions: Sequence[bytes]) -> None:
        self._set(vaddr, hardware, conditions=tuple(conditions))

    def set_commands(self, vaddr: int, kind: int, hardware: bool, commands: Sequence[bytes], persist: bool) -> None:
        self._set(vaddr, hardware, commands=tuple(commands), persist=persist)

    def _set(
        self,
        vaddr: int,
        hardware: bool,
        conditions: tuple[bytes, ...] | None = None,
        commands: tuple[bytes, ...] | None = None,
        persist: bool | None = None,
    ) -> None:
        linear = vaddr & 0xFFFFFFFFFFFFFFFF
        key = (linear, hardware)
        old = self.points.get(key)
        new = AgentPoint()
        new.conditions = old.conditions if conditions is None and old else conditions or ()
        new.commands = old.commands if commands is None and old else commands or ()
        new.persist = old.persist if persist is None and old else bool(persist)
        if not new.conditions and not new.commands:
            self.points.pop(key, None)
        else:
            counters = self.counters.setdefault(linear, [0, 0, 0])
            # Compiles (or finds in the cache) every program; AgentError leaves the old state untouched.
            new.compiled = ax.compile_breakpoint(
                new.conditions, new.commands, self.env, self._error_handler(linear), counters, self.cache
            )
            self.points[key] = new
            self.history[key] = new
        self.install(linear)

    def _error_handler(self, linear: int) -> ax.ErrorHandler:
        def on_error(what: str, index: int, exc: BaseException) -> None:
            if what == "condition":
                msg = f"breakpoint at {linear:#x}: condition {index + 1} could not be evaluated ({exc}); stopping"
            else:
                msg = f"breakpoint at {linear:#x}: command {index + 1} failed ({exc})"
                self._output(f"<dprintf error: {exc}>\n")
            self.errors.append(msg)
            print(f"gdbemu: {msg}", file=sys.stderr)

        return on_error

    def install(self, vaddr: int) -> None:
        """Put the hook of ``vaddr`` in ``machine.breakpoints.conditions`` (or take it out)."""
        linear = vaddr & 0xFFFFFFFFFFFFFFFF
        bps = self.machine.breakpoints
        kinds = bps.gdb.get(linear)
        hooks: list[Callable[[Any], bool]] = []
        for kind in sorted(kinds or ()):
            point = self.points.get((linear, kind == "hw"))
            if point is None or point.compiled is None:
                hooks = []  # an unconditional breakpoint shares the address: it always stops
                break
            hooks.append(point.compiled.hook)
        if not hooks:
            bps.conditions.pop(linear, None)
        elif len(hooks) == 1:
            bps.conditions[linear] = hooks[0]
        else:
            first, second = hooks
            bps.conditions[linear] = lambda cpu: first(cpu) | second(cpu)  # both run (commands), either stops
