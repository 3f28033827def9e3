"""The Target protocol: everything the stub needs from the thing being debugged.

The stub (:mod:`gdbemu.rsp.stub`) and the server (:mod:`gdbemu.rsp.server`)
talk to the emulator only through this interface, so the RSP layers import
nothing from the emulator and are tested against an in-memory fake.

Rules of the interface
----------------------
1. **Stopped between calls.**  The target executes guest code only inside
   :meth:`Target.run_slice`.  Whenever the stub calls anything else
   (registers, memory, breakpoints) no vCPU is running, so every read is
   consistent.  "Running" is the server's notion: it calls ``run_slice``
   repeatedly, polling the socket between slices.
2. **resume() only records.**  ``resume(actions)`` says what the following
   ``run_slice`` calls should do; it executes nothing.  The stub has already
   expanded gdb's wildcards: ``actions`` names every thread that should run,
   each explicitly, and a thread not listed stays stopped (gdb's vCont rule).
   A thread told to *step* executes one instruction, after which
   ``run_slice`` returns ``StopEvent(SIGNAL, SIGTRAP)`` for it (or a
   breakpoint/watchpoint/exception stop if that comes first).  Before the
   first ``resume()`` and after ``detach()`` every vCPU runs: that is the
   free-running guest the server drives while no debugger is attached.
3. **run_slice(max_insns) returns promptly.**  It executes at most
   ``max_insns`` instructions (summed over vCPUs; the server tunes the number
   so a slice lasts about a millisecond) and returns the first stop, or None
   if the budget ran out with nothing to report.  When a stop is returned,
   every vCPU is stopped (all-stop mode).
4. **Thread ids are vCPUs.**  ``threads()`` lists one :class:`ThreadInfo` per
   vCPU, id = cpu index + 1 (0 and -1 mean "any" and "all" in the protocol,
   so ids start at 1).
5. **Addresses are what gdb sends**: for x86, linear addresses (segment bases
   are the guest's business; in flat protected mode they equal the offsets
   gdb shows), translated through the page tables of the thread passed as
   ``tid`` -- each vCPU may have its own CR3.  Breakpoint and watchpoint
   addresses are linear addresses too.
6. **Errors** are :class:`TargetError` with an errno; the stub answers
   ``Exx``.  Any other exception is a bug in the target: the stub logs it and
   answers ``E05`` (gdb sees an error, never a traceback).
7. **Optional abilities are opt-in.**  ``supports_*()`` returns an ops object
   or None; the stub advertises in ``qSupported`` exactly what is there, so
   gdb never uses an ability the target lacks (and falls back where it can:
   without ``Z0`` gdb writes ``int3`` bytes itself).  Abilities added after
   the first version of this protocol (``supports_breakpoint_conditions``,
   ``supports_breakpoint_commands``) are not members of :class:`Target`:
   the stub looks them up with ``getattr``, so a target written against the
   first version still satisfies the protocol and simply lacks them.
8. **Target-side conditions and commands** (``ConditionalBreakpoints+``,
   ``BreakpointCommands+``) arrive as agent-expression bytecode
   (the target decodes, validates and compiles it; gdbemu's does so in
   :mod:`gdbemu.debug.ax`).  The stub
   calls ``set_conditions``/``set_commands`` *before* inserting the
   breakpoint, on every ``Z0``/``Z1`` (an empty list clears what a previous
   insertion set: gdb re-inserts with new conditions), and clears both when
   it removes the breakpoint.  Bytecode the target will not run raises
   :class:`AgentError` (or TargetError): the ``Z`` packet
   is answered with an error and the breakpoint is not inserted.
9. **Address width.**  ``address_bits()`` (optional, looked up like the
   abilities of rule 7) is the width of the addresses gdb may name; when a
   target lacks it or returns None, the stub takes the width of the layout's
   PC register (32 for i386, 64 for amd64).  The stub refuses any address or
   range beyond ``2**bits - 1`` before calling the target (memory: ``E0e``;
   breakpoints, watchpoints, resume addresses: ``E16``), so a target never
   sees an address it would have to truncate or wrap.

Register data is raw bytes in the layout's order and byte order (see
:mod:`gdbemu.rsp.arch`): the target encodes with its
:class:`~gdbemu.rsp.arch.RegisterLayout`, which the stub also uses for sizes,
the PC and the registers expedited in stop replies.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from .arch import RegisterLayout

__all__ = [
    "ALL_THREADS",
    "AgentError",
    "ANY_THREAD",
    "BreakpointCommandOps",
    "BreakpointConditionOps",
    "BreakpointOps",
    "MonitorOps",
    "ResumeAction",
    "Signal",
    "StopEvent",
    "StopReplyKind",
    "Target",
    "TargetBase",
    "TargetError",
    "TargetXmlOps",
    "ThreadInfo",
    "ThreadsXferOps",
    "WatchKind",
    "WatchpointOps",
]

ANY_THREAD = 0  # protocol thread id "0": an arbitrary thread
ALL_THREADS = -1  # protocol thread id "-1": all threads


class Signal(enum.IntEnum):
    """gdb's own signal numbers (include/gdb/signals.def), which are what the protocol carries.

    They match Linux's for the low numbers used here; a guest exception the
    target wants to report as a signal should map onto one of these.
    """

    SIGHUP = 1
    SIGINT = 2  # Ctrl-C from gdb
    SIGQUIT = 3
    SIGILL = 4  # #UD
    SIGTRAP = 5  # breakpoint, watchpoint, single step
    SIGABRT = 6
    SIGEMT = 7
    SIGFPE = 8  # #DE, #MF
    SIGKILL = 9
    SIGBUS = 10
    SIGSEGV = 11  # #PF, #GP, triple fault
    SIGSYS = 12
    SIGPIPE = 13
    SIGALRM = 14
    SIGTERM = 15


class TargetError(Exception):
    """A failure gdb should see as ``Exx``, e.g. ``TargetError(errno.EFAULT)`` for unmapped memory."""

    def __init__(self, errno: int, message: str = "") -> None:
        super().__init__(message or f"target error {errno}")
        self.errno = errno


class AgentError(ValueError):
    """Bytecode the target will not run (malformed, unsupported, or unsafe); ``offset`` locates it.

    Raised by ``set_conditions``/``set_commands`` (rule 8): the stub answers the ``Z`` packet
    with ``E_AGENT`` and does not insert the breakpoint.
    """

    def __init__(self, message: str, offset: int | None = None) -> None:
        super().__init__(message if offset is None else f"{message} (at byte {offset})")
        self.offset = offset


class StopReplyKind(enum.Enum):
    """Why the target stopped; selects the shape of the stop reply."""

    SIGNAL = "signal"  # T<sig>: step done, Ctrl-C, a guest fault reported as a signal
    SWBREAK = "swbreak"  # T05 swbreak: a software breakpoint (Z0); PC at the breakpoint
    HWBREAK = "hwbreak"  # T05 hwbreak: a hardware breakpoint (Z1)
    WATCH = "watch"  # T05 watch:<addr>: a write watchpoint (Z2)
    RWATCH = "rwatch"  # T05 rwatch:<addr>: a read watchpoint (Z3)
    AWATCH = "awatch"  # T05 awatch:<addr>: an access watchpoint (Z4)
    EXITED = "exited"  # W<code>: the guest is gone (isa-debug-exit, poweroff)
    TERMINATED = "terminated"  # X<sig>: the guest was killed by a "signal" (e.g. triple fault)
    HISTORY_BEGIN = "replaylog"  # T05 replaylog:begin: reverse execution reached the start of history


_WATCH_REASONS = (StopReplyKind.WATCH, StopReplyKind.RWATCH, StopReplyKind.AWATCH)


@dataclasses.dataclass(frozen=True)
class StopEvent:
    """A stop reported by ``run_slice``.

    ``thread`` is the vCPU that stopped (the stub makes it gdb's current
    thread); None means "the current one".  ``addr`` is the data address a
    watchpoint touched (required for the watch reasons: gdb uses it to find
    which watchpoint triggered).  ``exit_code`` is for EXITED.  For
    breakpoints and watchpoints ``signal`` is SIGTRAP; for TERMINATED it is the
    terminating signal.

    Breakpoint stops leave the PC *at* the breakpoint address (the instruction
    has not executed); watchpoint stops leave it after the accessing
    instruction, as on hardware.
    """

    reason: StopReplyKind
    signal: int = Signal.SIGTRAP
    thread: int | None = None
    addr: int | None = None
    exit_code: int | None = None

    def __post_init__(self) -> None:
        if self.reason in _WATCH_REASONS and self.addr is None:
            raise ValueError(f"{self.reason.value} stop needs the data address")
        if self.reason is StopReplyKind.EXITED and self.exit_code is None:
            raise ValueError("exited stop needs an exit code")

    # Constructors that read well at the call site: ``StopEvent.swbreak(tid)``.
    @classmethod
    def signalled(cls, signal: int, thread: int | None = None) -> StopEvent:
        return cls(StopReplyKind.SIGNAL, signal, thread)

    @classmethod
    def step_done(cls, thread: int | None = None) -> StopEvent:
        return cls(StopReplyKind.SIGNAL, Signal.SIGTRAP, thread)

    @classmethod
    def interrupted(cls, thread: int | None = None) -> StopEvent:
        return cls(StopReplyKind.SIGNAL, Signal.SIGINT, thread)

    @classmethod
    def swbreak(cls, thread: int | None = None) -> StopEvent:
        return cls(StopReplyKind.SWBREAK, Signal.SIGTRAP, thread)

    @classmethod
    def hwbreak(cls, thread: int | None = None) -> StopEvent:
        return cls(StopReplyKind.HWBREAK, Signal.SIGTRAP, thread)

    @classmethod
    def watch(cls, kind: WatchKind, addr: int, thread: int | None = None) -> StopEvent:
        reason = {WatchKind.WRITE: StopReplyKind.WATCH, WatchKind.READ: StopReplyKind.RWATCH}.get(
            kind, StopReplyKind.AWATCH
        )
        return cls(reason, Signal.SIGTRAP, thread, addr)

    @classmethod
    def exited(cls, exit_code: int) -> StopEvent:
        return cls(StopReplyKind.EXITED, 0, None, None, exit_code)

    @classmethod
    def terminated(cls, signal: int) -> StopEvent:
        return cls(StopReplyKind.TERMINATED, signal)

    @classmethod
    def history_begin(cls, thread: int | None = None) -> StopEvent:
        """Reverse execution reached the start of the recorded history (``replaylog:begin``)."""
        return cls(StopReplyKind.HISTORY_BEGIN, Signal.SIGTRAP, thread)

    @property
    def is_final(self) -> bool:
        """True when the guest is gone (W/X replies): nothing can be resumed afterwards."""
        return self.reason in (StopReplyKind.EXITED, StopReplyKind.TERMINATED)


@dataclasses.dataclass(frozen=True)
class ThreadInfo:
    """One thread as gdb sees it: a vCPU.

    ``name`` appears in ``info threads`` (via qXfer:threads:read), ``extra``
    is the qThreadExtraInfo text (e.g. ``"CPU#0 [halted]"``), ``core`` the
    processor number for the threads XML.
    """

    tid: int
    name: str = ""
    extra: str = ""
    core: int | None = None


@dataclasses.dataclass(frozen=True)
class ResumeAction:
    """What one thread does when the server next runs the target.

    ``signal`` is a signal gdb asks to deliver (``C``/``S``/``vCont;C``); a
    target with no such notion may ignore it.
    """

    tid: int
    step: bool = False
    signal: int | None = None


class WatchKind(enum.Enum):
    """Watchpoint kinds, from the Z packet type (Z2 write, Z3 read, Z4 access)."""

    WRITE = 2
    READ = 3
    ACCESS = 4


# ---- optional ops -------------------------------------------------------------


class BreakpointOps(Protocol):
    """Software (Z0) or hardware (Z1) breakpoints.

    ``kind`` is gdb's breakpoint kind; for x86 it is 1 (the length of int3).
    ``add`` of an address that already has one, or ``remove`` of one that is
    not there, must not fail (gdb may repeat itself after a reconnect).  Raise
    :class:`TargetError` when impossible (e.g. out of hardware slots: gdb then
    reports "Could not insert hardware breakpoint").
    """

    def add(self, vaddr: int, kind: int) -> None: ...

    def remove(self, vaddr: int, kind: int) -> None: ...


class BreakpointConditionOps(Protocol):
    """``ConditionalBreakpoints+``: conditions evaluated by the target (gdb's ``condition-evaluation target``).

    ``conditions`` are agent-expression bytecode blobs; the breakpoint
    reports a stop when any of them is non-zero (gdbserver's rule); an
    evaluation error (unreadable memory, division by zero) also stops.  An
    empty sequence removes the conditions.  ``hardware``: the Z1 breakpoint
    at ``vaddr`` rather than the Z0 one.
    """

    def set_conditions(self, vaddr: int, kind: int, hardware: bool, conditions: Sequence[bytes]) -> None: ...


class BreakpointCommandOps(Protocol):
    """``BreakpointCommands+``: bytecode the target runs when the breakpoint triggers (agent-style dprintf).

    A breakpoint with commands runs them (after its conditions, if any, are
    true) and does *not* report a stop (gdb installs target-side commands
    only where every breakpoint at the address is a dprintf).  ``persist``:
    keep the breakpoint and its commands when gdb disconnects (gdb's
    ``disconnected-dprintf``).  An empty sequence removes the commands.
    """

    def set_commands(self, vaddr: int, kind: int, hardware: bool, commands: Sequence[bytes], persist: bool) -> None: ...


class WatchpointOps(Protocol):
    """Watchpoints (Z2/Z3/Z4) over ``[vaddr, vaddr + length)``."""

    def add(self, kind: WatchKind, vaddr: int, length: int) -> None: ...

    def remove(self, kind: WatchKind, vaddr: int, length: int) -> None: ...


class MonitorOps(Protocol):
    """``monitor CMD`` in gdb (qRcmd): ``handle`` returns the text to print (may be empty)."""

    def handle(self, cmd: str) -> str: ...


class TargetXmlOps(Protocol):
    """``qXfer:features:read``: the document for ``annex`` (``"target.xml"`` first), None if unknown.

    :class:`~gdbemu.rsp.arch.RegisterLayout` implements it: a target usually
    returns its layout.
    """

    def target_xml(self, annex: str) -> bytes | None: ...


class ThreadsXferOps(Protocol):
    """``qXfer:threads:read``: the ``<threads>`` document.

    :func:`gdbemu.rsp.stub.threads_xml` builds it from ``threads()``; a target
    with nothing to add returns ``stub.DefaultThreadsXfer(self)``.
    """

    def threads_xml(self) -> bytes: ...


class ExecFileOps(Protocol):
    """``qXfer:exec-file:read``: the path of the program being debugged (the kernel), or None.

    gdb asks for it when it was started without a file, and loads that
    file's symbols itself (gdb manual, "qXfer:exec-file:read:annex").
    ``annex`` is the process id in hex, or empty for the current one.
    """

    def exec_file(self, annex: str) -> str | None: ...


# ---- the target ---------------------------------------------------------------


@runtime_checkable
class Target(Protocol):
    """The debugged machine, seen from the stub.  See the module docstring for the rules.

    Required methods are below; the ``supports_*`` methods are optional
    abilities (return None when absent).  A target may subclass
    :class:`TargetBase` to get "absent" defaults for all of them.
    """

    def register_layout(self) -> RegisterLayout:
        """The layout of ``g`` packets for the whole session (e.g. ``arch.i386.I386_LAYOUT``)."""
        ...

    def threads(self) -> Sequence[ThreadInfo]:
        """Every thread (vCPU), in order; never empty."""
        ...

    def read_registers(self, tid: int) -> bytes:
        """All registers of ``tid``, ``layout.g_size`` bytes."""
        ...

    def write_registers(self, tid: int, data: bytes) -> None:
        """Set all registers of ``tid`` from a ``layout.g_size`` block."""
        ...

    def read_register(self, tid: int, regnum: int) -> bytes | None:
        """One register, ``layout[regnum].size`` bytes; None when unavailable (gdb shows ``<unavailable>``)."""
        ...

    def write_register(self, tid: int, regnum: int, data: bytes) -> bool:
        """Set one register; False when it cannot be written (gdb reports an error)."""
        ...

    def read_memory(self, tid: int, vaddr: int, length: int) -> bytes:
        """Guest memory as ``tid`` sees it.

        May return fewer bytes than asked when the range runs into unmapped
        memory (gdb accepts short reads); raise ``TargetError(errno.EFAULT)``
        when not even the first byte is readable.  Reads have no side effects
        (MMIO is read as the debugger view or refused) and see memory as the
        guest does: breakpoints are never patched into memory.
        """
        ...

    def write_memory(self, tid: int, vaddr: int, data: bytes) -> None:
        """Write guest memory (invalidating translated code like any store); TargetError when unmapped."""
        ...

    def resume(self, actions: Sequence[ResumeAction]) -> None:
        """Record what the next ``run_slice`` calls do; threads not listed stay stopped."""
        ...

    def run_slice(self, max_insns: int) -> StopEvent | None:
        """Execute up to ``max_insns`` instructions; return the first stop, or None if there was none."""
        ...

    def interrupt(self) -> None:
        """Ctrl-C: the next ``run_slice`` returns ``StopEvent.interrupted()`` within a few ms."""
        ...

    def kill(self) -> None:
        """gdb's ``kill``: the guest is to be destroyed; the server returns from ``run()`` afterwards."""
        ...

    def detach(self) -> None:
        """The debugger is gone (``detach``, dropped connection).

        The stub has already removed the breakpoints and watchpoints it had
        inserted; clear any stepping state.  The server then lets the guest
        run freely until the next connection.
        """
        ...

    def supports_sw_breakpoints(self) -> BreakpointOps | None: ...

    def supports_hw_breakpoints(self) -> BreakpointOps | None: ...

    def supports_watchpoints(self) -> WatchpointOps | None: ...

    def supports_monitor(self) -> MonitorOps | None: ...

    def supports_target_xml(self) -> TargetXmlOps | None: ...

    def supports_threads_xfer(self) -> ThreadsXferOps | None: ...

    def supports_reverse(self) -> ReverseOps | None: ...


class ReverseOps(Protocol):
    """``supports_reverse``: reverse execution (``bs``/``bc``; qSupported ReverseStep+/ReverseContinue+).

    Each returns the stop: a step done, a breakpoint or watchpoint hit, or
    :attr:`StopReplyKind.HISTORY_BEGIN` at the start of the recorded history
    -- or None: the operation has started and runs like a resume, through
    :meth:`Target.run_slice`, which returns its stop (and :meth:`Target.interrupt`,
    gdb's Ctrl-C, ends it with a SIGINT stop where it has got to).
    """

    def reverse_step(self, tid: int) -> StopEvent | None: ...

    def reverse_continue(self, tid: int) -> StopEvent | None: ...


class TargetBase:
    """Defaults for the optional part of :class:`Target`: every ability absent.

    Subclass it and override the ``supports_*`` methods the target has.
    """

    def supports_sw_breakpoints(self) -> BreakpointOps | None:
        return None

    def supports_hw_breakpoints(self) -> BreakpointOps | None:
        return None

    def supports_watchpoints(self) -> WatchpointOps | None:
        return None

    def supports_monitor(self) -> MonitorOps | None:
        return None

    def supports_target_xml(self) -> TargetXmlOps | None:
        return None

    def supports_threads_xfer(self) -> ThreadsXferOps | None:
        return None

    def supports_reverse(self) -> ReverseOps | None:
        return None

    def supports_exec_file(self) -> ExecFileOps | None:
        return None

    def supports_breakpoint_conditions(self) -> BreakpointConditionOps | None:
        return None

    def supports_breakpoint_commands(self) -> BreakpointCommandOps | None:
        return None

    def address_bits(self) -> int | None:
        """Rule 9: None means "the width of the PC register"."""
        return None
