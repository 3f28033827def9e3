"""The emulator seen from the GDB stub: ``MachineTarget`` implements ``rsp.target.Target``.

Theory of operation
-------------------
The stub calls this between slices, with every vCPU stopped; the server runs
the guest only through ``run_slice``.  gdb's breakpoints become TB marks
(``core/breakpoint.py``) and its watchpoints TLB flags
(``softmmu/watchpoint.py``): the guest's memory is never patched and the
guest cannot tell a debugger is attached (DESIGN.md invariant 3).

* Registers: one layout for the whole session (a mode switch never changes
  the ``g`` packet): amd64 (``rsp/arch/amd64.py``) when the CPU model can
  enter long mode (CPUID LM: qemu64, max, ...), else i386
  (``rsp/arch/i386.py``), with gdb's SSE feature (xmm0-xmm7, mxcsr) when
  the model has SSE (qemu32, pentium3, ...; not 486 or pentium); read and written by ``debug/registers.py`` (a write
  acts as the instruction that would write the register does).
* Addresses: 64-bit in an amd64 session, and only those the CPU can form
  (``memview.linear_ok``): a non-canonical breakpoint is refused (E16), a
  read or write gdb names beyond what the current mode can form is unmapped
  (E0e); nothing wraps.
* Memory: ``debug/memview.py`` -- linear addresses through the page tables of
  the thread's vCPU, by the debug walk (no TLB fill, no A/D bits, no fault, no
  watchpoint); writes go through physical memory and invalidate translated
  code they touch.
* Stepping: ``Machine.step`` executes exactly one instruction; by default no
  interrupt is taken and timers do not advance (``monitor sstep irq`` changes
  that).  Resuming from an address where a breakpoint stopped executes that
  instruction instead of reporting it again.
* Target-side conditions and commands: ``debug/agent.py``.
* The watch log and watch conditions (``debug/watchlog.py``): the target
  attaches them to the machine, on the machine's debugger hook point
  (``Machine.attach_debugger``) and the watchpoint registry's tracer hook.
* The watch kind: ``softmmu.watchpoint.WatchKind`` inside gdbemu, the RSP's
  ``rsp.target.WatchKind`` (Z packet types) at the stub; this module is the
  edge where they convert (:data:`_FROM_RSP`, :data:`_TO_RSP`).
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable, Generator, Sequence
from functools import partial
from typing import Final

from ..core.cpu import CPU
from ..core.ops.system import cpuid
from ..core.stop import RunStop, StopKind
from ..machine import Machine
from ..rsp import target as rsp
from ..rsp.arch import RegisterLayout
from ..rsp.arch.amd64 import AMD64_LAYOUT
from ..rsp.arch.i386 import i386_layout
from ..rsp.stub import DefaultThreadsXfer
from ..rsp.target import (
    ResumeAction,
    Signal,
    StopEvent,
    StopReplyKind,
    TargetBase,
    TargetError,
    ThreadInfo,
)
from ..softmmu.watchpoint import WatchHit, WatchKind
from .agent import BreakpointAgent
from .memview import UnmappedError, canonical, pc_linear, peek_linear, read_virtual_partial, write_virtual
from .monitor import Monitor
from .registers import register_value, set_register
from .replay import TAIL_CHUNK, History, ReverseStop
from .snapshot import SnapshotStore
from .watchlog import WatchLog

_FROM_RSP: Final = {
    rsp.WatchKind.WRITE: WatchKind.WRITE,
    rsp.WatchKind.READ: WatchKind.READ,
    rsp.WatchKind.ACCESS: WatchKind.ACCESS,
}
_TO_RSP: Final = {kind: wire for wire, kind in _FROM_RSP.items()}

CPUID_LM: Final = 1 << 29  # CPUID 0x80000001 EDX: long mode
CPUID_SSE: Final = 1 << 25  # CPUID 1 EDX: SSE


def has_long_mode(cpu: CPU) -> bool:
    """Whether ``cpu``'s CPU model reports long mode (CPUID LM): a 64-bit machine, shown to gdb as amd64.

    A CPU with no model applied (a bare ``Machine``, ``cpu.cpuid_model`` None)
    is the historical i386 core: False.  The CLI, which knows the model even
    when it is the core's own table (``-cpu max``), says so to MachineTarget.
    """
    if cpu.cpuid_model is None or cpuid(cpu, 0x80000000, 0)[0] < 0x80000001:
        return False
    return bool(cpuid(cpu, 0x80000001, 0)[3] & CPUID_LM)


def has_sse(cpu: CPU) -> bool:
    """Whether ``cpu``'s CPUID reports SSE: an i386 session then shows gdb xmm0-xmm7 and mxcsr.

    Unlike :func:`has_long_mode`, a CPU with no model applied counts as the
    core's own table says (it reports and executes SSE).
    """
    return bool(cpuid(cpu, 1, 0)[3] & CPUID_SSE)


class _Breakpoints:
    """``supports_sw_breakpoints``/``supports_hw_breakpoints``: TB marks owned by gdb."""

    def __init__(self, machine: Machine, kind: str, agent_ops: BreakpointAgent | None = None) -> None:
        self.machine = machine
        self.kind = kind
        self.agent = agent_ops

    def add(self, vaddr: int, kind: int) -> None:
        if not canonical(vaddr):
            raise TargetError(errno.EINVAL, f"{vaddr:#x} is not a canonical address")
        self.machine.breakpoints.add(vaddr, self.kind)
        if self.agent is not None:
            self.agent.install(vaddr)

    def remove(self, vaddr: int, kind: int) -> None:
        self.machine.breakpoints.remove(vaddr, self.kind)
        if self.agent is not None:
            self.agent.install(vaddr)


class _Watchpoints:
    """``supports_watchpoints``: gdb's Z2/Z3/Z4 in the machine's registry."""

    def __init__(self, machine: Machine) -> None:
        self.machine = machine

    def add(self, kind: rsp.WatchKind, vaddr: int, length: int) -> None:
        if length < 1:
            raise TargetError(errno.EINVAL, "a watchpoint covers at least one byte")
        wl = self.machine.watchpoints
        if wl.find(vaddr, length, _FROM_RSP[kind]) is None:
            wl.add(vaddr, length, _FROM_RSP[kind])

    def remove(self, kind: rsp.WatchKind, vaddr: int, length: int) -> None:
        wl = self.machine.watchpoints
        wp = wl.find(vaddr, length, _FROM_RSP[kind])
        if wp is not None:
            wl.remove(wp)


class MachineTarget(TargetBase):
    """A ``Machine`` behind the GDB stub."""

    # Sleep this long in a slice where the guest is idle (hlt, nothing armed),
    # so the server's loop does not spin a core while it waits for gdb or input.
    IDLE_SLEEP = 0.002

    def __init__(
        self,
        machine: Machine,
        snapshots: SnapshotStore | None = None,
        exec_file: str | None = None,
        long_mode: bool | None = None,
        sse: bool | None = None,
    ) -> None:
        self.machine = machine
        # savevm/loadvm (debug/snapshot.py): made on first use unless the CLI gave one (-loadvm, -snapshot-file).
        self.snapshots = snapshots
        self.exec_file_path = exec_file  # the kernel, for gdb started without a file (qXfer:exec-file:read)
        # amd64 or i386, for the whole session: the caller's word (the CLI knows the -cpu model),
        # else what the first CPU's CPUID says; the same for the i386 layout's SSE feature
        # (the amd64 layout always has it: every CPU with LM has SSE2).
        self.wide = has_long_mode(machine.cpu) if long_mode is None else long_mode
        self.sse = has_sse(machine.cpu) if sse is None else sse
        self.layout = AMD64_LAYOUT if self.wide else i386_layout(self.sse)
        self.actions: dict[int, ResumeAction] = {}
        self._interrupted = False
        self.sstep_irq = False  # `monitor sstep irq`: let a step take interrupts and timers
        self.killed = False
        self.final: StopEvent | None = None
        self.last_stop: RunStop | None = None
        self.stop_time = time.perf_counter()
        self.stop_icount = machine.cpu.icount
        self.last_run_mips = 0.0
        self.agent = BreakpointAgent(machine, self.layout)
        self.watch_log = WatchLog(partial(peek_linear, machine.mem))
        machine.watchpoints.set_tracer(self.watch_log)
        machine.attach_debugger(self.watch_log)
        self.monitor = Monitor(self)
        # Reverse execution (debug/replay.py): the history, made at the first resume while recording.
        self.record = True
        self.history: History | None = None
        self._replay: str | None = None  # "step"/"cont": a forward operation in the past (run_slice)
        # A reverse or past-forward search under way, advanced by run_slice so Ctrl-C can end it.
        self._job: Generator[None, None, ReverseStop] | None = None
        self.no_reboot = True  # a triple fault ends the session; the CLI sets False unless -no-reboot

    def snapshot_store(self) -> SnapshotStore:
        """The machine's snapshots (in memory only unless the CLI named a file)."""
        if self.snapshots is None:
            self.snapshots = SnapshotStore(self.machine)
        return self.snapshots

    # ---- history (debug/replay.py) ------------------------------------------------------
    def _history(self) -> History | None:
        if self.history is None and self.record:
            self.history = History(self.machine, self.snapshot_store())
        return self.history

    def outside_input(self, what: str, apply: Callable[[], object]) -> None:
        """Input from outside the machine (console bytes) arriving now: logged, applied, and
        the running segment cut so replay starts from a checkpoint that holds it."""
        h = self.history
        if h is None:
            apply()
            return
        h.record_input(what)
        apply()
        if not h.in_past and h.segments and h.segments[-1].end is None:
            h.begin(step=False)

    def _gdb_input(self, what: str) -> None:
        """gdb changes the state (memory, registers): logged; in the past it discards the future."""
        if self.history is not None:
            self.history.record_input(what)

    def state_replaced(self) -> None:
        """The whole state changed (loadvm): the recorded history no longer leads here."""
        if self.history is not None:
            self.history.reset()
        self._replay = None
        self._job = None

    def _reverse_event(self, rs: ReverseStop) -> StopEvent:
        if rs.kind == "begin":
            return StopEvent.history_begin(1)
        if rs.kind == "swbreak":
            return StopEvent.swbreak(1)
        if rs.kind == "hwbreak":
            return StopEvent.hwbreak(1)
        if rs.kind == "watch" and rs.watch_kind is not None:
            return StopEvent.watch(_TO_RSP[rs.watch_kind], rs.addr, 1)
        return StopEvent.step_done(1)

    def reverse_step(self, tid: int) -> StopEvent | None:
        """``bs``: started, the stop comes from ``run_slice`` (a replay Ctrl-C can interrupt)."""
        h = self._history()
        if h is None:
            return StopEvent.history_begin(1)
        self._start_job(h.reverse_step_iter())
        return None

    def reverse_continue(self, tid: int) -> StopEvent | None:
        """``bc``: started, the stop comes from ``run_slice`` (a search Ctrl-C can interrupt)."""
        h = self._history()
        if h is None:
            return StopEvent.history_begin(1)
        self._start_job(h.reverse_continue_iter())
        return None

    def _start_job(self, job: Generator[None, None, ReverseStop]) -> None:
        self._interrupted = False
        self._job = job
        self.stop_time = time.perf_counter()
        self.stop_icount = self.machine.cpu.icount

    def _run_job(self) -> StopEvent | None:
        """Advance the search under way by one piece: None while it goes on, else its stop."""
        job = self._job
        assert job is not None
        try:
            next(job)
            return None
        except StopIteration as done:
            rs: ReverseStop = done.value
        self._job = None
        if rs.kind != "present":
            return self._stopped(self._reverse_event(rs))
        assert self.history is not None
        self.history.begin(step=False)  # forward through the past reached the present: run on live
        return None

    def supports_reverse(self) -> MachineTarget | None:
        return self if self.record else None

    # ---- threads and registers ---------------------------------------------------
    def register_layout(self) -> RegisterLayout:
        return self.layout

    def address_bits(self) -> int:
        """64 in an amd64 session (the CPU may form any canonical address later), else 32."""
        return 64 if self.wide else 32

    def _cpu(self, tid: int) -> CPU:
        cpus = self.machine.cpus
        if tid <= 0:
            return cpus[0]
        if tid > len(cpus):
            raise TargetError(errno.ESRCH, f"no thread {tid}")
        return cpus[tid - 1]

    def threads(self) -> Sequence[ThreadInfo]:
        out = []
        for cpu in self.machine.cpus:
            state = "halted" if cpu.halted else "running"
            out.append(ThreadInfo(cpu.index + 1, f"CPU#{cpu.index}", f"CPU#{cpu.index} [{state}]", cpu.index))
        return out

    def read_registers(self, tid: int) -> bytes:
        cpu = self._cpu(tid)
        return b"".join(
            self.layout.encode_register(r.regnum, register_value(cpu, r.name)) for r in self.layout.registers
        )

    def read_register(self, tid: int, regnum: int) -> bytes | None:
        if not 0 <= regnum < len(self.layout):
            return None
        cpu = self._cpu(tid)
        r = self.layout[regnum]
        return self.layout.encode_register(regnum, register_value(cpu, r.name))

    def write_registers(self, tid: int, data: bytes) -> None:
        if len(data) != self.layout.g_size:
            raise TargetError(errno.EINVAL, "wrong register block size")
        cpu = self._cpu(tid)
        self._gdb_input("registers written (G)")
        # Only registers whose value changes are written: a `G` that carries the
        # unchanged selectors must not reload (and possibly fault on) descriptors.
        for r in self.layout.registers:
            off = self.layout.offsets[r.regnum]
            value = self.layout.decode_register(r.regnum, data[off : off + r.size])
            if value != register_value(cpu, r.name):
                if not set_register(self.machine, cpu, r.name, value):
                    raise TargetError(errno.EINVAL, f"cannot write {r.name}")

    def write_register(self, tid: int, regnum: int, data: bytes) -> bool:
        if not 0 <= regnum < len(self.layout):
            return False
        cpu = self._cpu(tid)
        r = self.layout[regnum]
        self._gdb_input(f"register {r.name} written")
        return set_register(self.machine, cpu, r.name, self.layout.decode_register(regnum, data))

    # ---- memory ---------------------------------------------------------------------
    def read_memory(self, tid: int, vaddr: int, length: int) -> bytes:
        data = read_virtual_partial(self.machine, vaddr, length, self._cpu(tid))
        if not data and length:
            raise TargetError(errno.EFAULT, "unmapped")
        return data

    def write_memory(self, tid: int, vaddr: int, data: bytes) -> None:
        self._gdb_input(f"memory written at {vaddr:#x} ({len(data)} bytes)")
        try:
            write_virtual(self.machine, vaddr, data, self._cpu(tid))
        except UnmappedError as exc:
            raise TargetError(errno.EFAULT, str(exc)) from None

    # ---- execution --------------------------------------------------------------------
    def resume(self, actions: Sequence[ResumeAction]) -> None:
        self.actions = {a.tid: a for a in actions}
        self._interrupted = False
        self._job = None
        h = self._history()
        if h is not None:
            step = any(a.step for a in actions)
            if h.in_past:
                self._replay = "step" if step else "cont"
            else:
                h.begin(step, self.sstep_irq)
        cpu = self.machine.cpu
        linear = pc_linear(cpu)
        if linear in self.machine.breakpoints.gdb:
            self.machine.breakpoints.skip_once = linear  # resuming from a breakpoint runs it
        self.stop_time = time.perf_counter()
        self.stop_icount = cpu.icount

    def run_slice(self, max_insns: int) -> StopEvent | None:
        if self.final is not None:
            return self.final
        if self._interrupted:
            self._interrupted = False
            if self._job is not None:
                self._job.close()  # the search stops where its replay is (History._scan)
                self._job = None
            return self._stopped(StopEvent.interrupted(1))
        machine = self.machine
        if self._replay is not None and self.history is not None:
            kind, self._replay = self._replay, None
            h = self.history
            if kind == "step":
                rs = h.forward_step()
                if rs.kind != "present":
                    return self._stopped(self._reverse_event(rs))
                return self._stopped(StopEvent.step_done(1))
            self._job = h.forward_continue_iter()
        if self._job is not None:
            return self._run_job()
        if self.actions and any(a.step for a in self.actions.values()):
            stop = machine.step(irq=self.sstep_irq)
            if self.history is not None and not self.history.in_past:
                self.history.stepped(stop.kind == StopKind.STEP)  # a lazy checkpoint may follow (replay.py)
            if stop.kind == StopKind.STEP:
                return self._stopped(StopEvent.step_done(1))
        else:
            stop = self._run_recorded(max_insns)
        self.last_stop = stop
        kind = stop.kind
        if kind in (StopKind.LIMIT, StopKind.STEP):
            if self.history is not None:
                self.history.tick()
            return None
        if kind == StopKind.DEBUG:
            tid = stop.cpu + 1
            if stop.reason == "swbreak":
                return self._stopped(StopEvent.swbreak(tid))
            if stop.reason == "hwbreak":
                return self._stopped(StopEvent.hwbreak(tid))
            hit = stop.hit
            assert isinstance(hit, WatchHit)
            return self._stopped(StopEvent.watch(_TO_RSP[hit.wp.kind], stop.addr, tid))
        if kind == StopKind.EXIT:
            self.final = StopEvent.exited((machine.exit_code or 0) & 0xFF)
            return self.final
        if kind in (StopKind.TRIPLE_FAULT, StopKind.RESET):
            if not self.no_reboot:
                machine.reset()  # as a PC would: the loader's reset hook boots the kernel again
                return None
            self.final = StopEvent(StopReplyKind.TERMINATED, Signal.SIGSEGV)
            return self.final
        if kind in (StopKind.HALT, StopKind.IDLE):
            # Nothing to run until an outside event (console input, gdb): don't spin.
            time.sleep(self.IDLE_SLEEP)
            return None
        return None

    def _run_recorded(self, max_insns: int) -> RunStop:
        """``machine.run``, in pieces of ``replay.TAIL_CHUNK`` while recording (a tail checkpoint may
        follow each: ``History.tick``)."""
        machine = self.machine
        h = self.history
        if h is None or h.in_past:
            return machine.run(max_insns=max_insns)
        end = machine.cpu.icount + max_insns
        while True:
            stop = machine.run(max_insns=min(end - machine.cpu.icount, TAIL_CHUNK))
            if stop.kind != StopKind.LIMIT or machine.cpu.icount >= end:
                return stop
            h.tick(tails=True)

    def _stopped(self, event: StopEvent) -> StopEvent:
        cpu = self.machine.cpu
        wall = time.perf_counter() - self.stop_time
        if wall > 0:
            self.last_run_mips = (cpu.icount - self.stop_icount) / wall / 1e6
        self.actions = {}
        if self.history is not None and not self.history.in_past:
            self.history.stopped()
        return event

    def interrupt(self) -> None:
        self._interrupted = True

    def kill(self) -> None:
        self.killed = True

    def detach(self) -> None:
        self.actions = {}
        self._interrupted = False
        self.machine.breakpoints.skip_once = None

    # ---- optional abilities ---------------------------------------------------------------
    def supports_sw_breakpoints(self) -> _Breakpoints:
        return _Breakpoints(self.machine, "sw", self.agent)

    def supports_hw_breakpoints(self) -> _Breakpoints:
        return _Breakpoints(self.machine, "hw", self.agent)

    def supports_breakpoint_conditions(self) -> BreakpointAgent:
        return self.agent

    def supports_breakpoint_commands(self) -> BreakpointAgent:
        return self.agent

    def dprintf_text(self) -> str:
        """Everything agent-style dprintfs printed (also on stderr); ``monitor dprintf log`` shows it."""
        return self.agent.dprintf_text()

    def supports_watchpoints(self) -> _Watchpoints:
        return _Watchpoints(self.machine)

    def supports_monitor(self) -> Monitor:
        return self.monitor

    def supports_target_xml(self) -> RegisterLayout:
        return self.layout

    def supports_threads_xfer(self) -> DefaultThreadsXfer:
        return DefaultThreadsXfer(self)

    def supports_exec_file(self) -> MachineTarget | None:
        return self if self.exec_file_path is not None else None

    def exec_file(self, annex: str) -> str | None:
        return self.exec_file_path
