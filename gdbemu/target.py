"""The emulator seen from the GDB stub: ``MachineTarget`` implements ``rsp.target.Target``.

Theory of operation
-------------------
The stub calls this between slices, with every vCPU stopped; the server runs
the guest only through ``run_slice``.  gdb's breakpoints become TB marks
(``core/breakpoint.py``) and its watchpoints TLB flags
(``softmmu/watchpoint.py``): the guest's memory is never patched and the
guest cannot tell a debugger is attached (DESIGN.md invariant 3).

* Registers: the i386 layout of ``rsp/arch/i386.py``.  Writes act as the
  corresponding instruction would: a segment selector reloads its descriptor
  cache from the GDT/LDT, a CR0/CR3/CR4 write flushes the TLB as ``mov crN``
  does, a DR write updates the guest's own debug breakpoints.  The x87
  registers are present (gdb's i386 core feature requires them) and read as
  the FPU's reset state: the core does not emulate x87 yet.
* Memory: linear addresses through the page tables of the thread's vCPU, by
  the debug walk (no TLB fill, no A/D bits, no fault, no watchpoint); writes
  go through physical memory and invalidate translated code they touch.
* Stepping: ``Machine.step`` executes exactly one instruction; by default no
  interrupt is taken and timers do not advance (``monitor sstep irq`` changes
  that).  Resuming from an address where a breakpoint stopped executes that
  instruction instead of reporting it again.
* Target-side conditions and commands (``ConditionalBreakpoints+``,
  ``BreakpointCommands+``): gdb's agent bytecode is compiled once
  (``rsp/agent.py``; registers read straight from ``cpu.regs``/``cpu.eip``,
  memory through the debug walk, RAM only) into a hook installed in
  ``machine.breakpoints.conditions``.  The hook runs in the prologue of the TB
  that starts at the breakpoint, inside generated code: a false condition
  costs a few microseconds and never returns to the exec loop, let alone to
  gdb.  A condition that cannot be evaluated (unmapped memory, division by
  zero) stops, as gdbserver does; the error is printed on stderr and kept for
  ``monitor info conditions``.  dprintf output (``set dprintf-style agent``)
  goes to gdbemu's stderr and to a buffer (``monitor dprintf log``,
  ``MachineTarget.dprintf_text()``); the breakpoint does not stop.
"""

from __future__ import annotations

import errno
import sys
import time
from collections import deque
from collections.abc import Sequence

from .core import flags as F
from .core.cpu import CS, SS, SegmentCache
from .core.exceptions import GuestFault
from .core.mmu import debug_translate
from .machine import Machine, Stop
from .rsp import agent
from .rsp.arch.i386 import I386_LAYOUT
from .rsp.stub import DefaultThreadsXfer
from .rsp.target import (
    ResumeAction,
    Signal,
    StopEvent,
    StopReason,
    TargetBase,
    TargetError,
    ThreadInfo,
    WatchKind,
)
from .softmmu.watchpoint import WATCH_ACCESS, WATCH_READ, WATCH_WRITE

_GPRS = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi")
_SEG_REGS = {"cs": 1, "ss": 2, "ds": 3, "es": 0, "fs": 4, "gs": 5}
_SEG_BASES = {"cs_base": 1, "ss_base": 2, "ds_base": 3, "es_base": 0, "fs_base": 4, "gs_base": 5}
_WATCH_KINDS = {WatchKind.WRITE: WATCH_WRITE, WatchKind.READ: WATCH_READ, WatchKind.ACCESS: WATCH_ACCESS}
_X87_RESET = {"fctrl": 0x37F, "ftag": 0xFFFF}


class _Breakpoints:
    def __init__(self, machine: Machine, kind: str, agent_ops: _BreakpointAgent | None = None) -> None:
        self.machine = machine
        self.kind = kind
        self.agent = agent_ops

    def add(self, vaddr: int, kind: int) -> None:
        self.machine.breakpoints.add(vaddr, self.kind)
        if self.agent is not None:
            self.agent.install(vaddr)

    def remove(self, vaddr: int, kind: int) -> None:
        self.machine.breakpoints.remove(vaddr, self.kind)
        if self.agent is not None:
            self.agent.install(vaddr)


class _AgentPoint:
    """The conditions and commands gdb gave one Z0/Z1 breakpoint, compiled."""

    __slots__ = ("conditions", "commands", "persist", "compiled")

    def __init__(self) -> None:
        self.conditions: tuple[bytes, ...] = ()
        self.commands: tuple[bytes, ...] = ()
        self.persist = False
        self.compiled: agent.CompiledBreakpoint | None = None


class _BreakpointAgent:
    """``ConditionalBreakpoints+`` and ``BreakpointCommands+`` for a Machine (rsp.target rule 8).

    Conditions and commands are kept per (linear address, hardware) -- the stub
    sets them before it inserts the breakpoint -- and :meth:`install` puts the
    compiled hook of the address into ``machine.breakpoints.conditions`` while a
    gdb breakpoint is there.  Where a Z0 and a Z1 share an address the stop is
    reported if either hook says so; if either has neither conditions nor
    commands the address stops unconditionally (no hook).
    """

    DPRINTF_LOG_MAX = 1 << 20  # characters of dprintf output kept for `monitor dprintf log`

    def __init__(self, target: MachineTarget) -> None:
        self.target = target
        self.machine = target.machine
        self.points: dict[tuple[int, bool], _AgentPoint] = {}
        # The last non-empty conditions/commands per breakpoint, kept after gdb removes it (it does
        # at every stop), so `monitor info conditions` has something to show while stopped.
        self.history: dict[tuple[int, bool], _AgentPoint] = {}
        self.counters: dict[int, list[int]] = {}  # linear -> [evaluations, true, errors], across re-insertions
        self.cache: dict = {}  # (bytecode, is_condition) -> compiled program: gdb re-sends it at every resume
        self.errors: deque[str] = deque(maxlen=32)
        self.dprintf_chunks: deque[str] = deque()
        self.dprintf_size = 0
        self.dprintf_count = 0
        self.dprintf_stderr = True
        self.tsv: dict[int, int] = {}
        mem = self.machine.mem
        ram = mem.ram
        is_ram = mem.is_ram
        ram_size = mem.ram_size

        def ref(cpu, addr: int, size: int) -> int:
            """``size`` bytes at a linear address by the debug walk (no fill, no fault), RAM only."""
            addr &= 0xFFFFFFFF
            if (addr & 0xFFF) + size > 0x1000:  # crosses a page: each byte through its own page
                return int.from_bytes(bytes(ref(cpu, addr + i, 1) for i in range(size)), "little")
            paddr = debug_translate(cpu, addr)
            if paddr is None or not is_ram(paddr) or paddr + size > ram_size:
                raise agent.AgentEvalError(f"cannot read {size} bytes at {addr:#x}")
            return int.from_bytes(ram[paddr : paddr + size], "little")

        self.env = agent.AgentEnv(
            register=self._register_source,
            ref=ref,
            output=self._output,
            names={"_value": self._register_value},
            tsv=self.tsv,
        )

    # ---- the agent environment: i386 registers as Python snippets ------------------------
    def _register_source(self, regnum: int) -> str | None:
        """gdb register ``regnum`` as an expression over ``cpu`` (unsigned); None for the 80-bit x87 ones."""
        layout = self.target.layout
        if not 0 <= regnum < len(layout):
            return None
        name = layout[regnum].name
        if name in _GPRS:
            return f"cpu.regs[{_GPRS.index(name)}]"
        if name == "eip":
            return "cpu.eip"
        if name == "eflags":
            return "cpu.get_eflags()"
        if name in _SEG_REGS:
            return f"cpu.segs[{_SEG_REGS[name]}].selector"
        if layout[regnum].size > 8:
            return None
        return f"_value(cpu, {regnum})"

    def _register_value(self, cpu, regnum: int) -> int:
        return self.target._value(cpu, self.target.layout[regnum].name) or 0

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
        linear = vaddr & 0xFFFFFFFF
        key = (linear, hardware)
        old = self.points.get(key)
        new = _AgentPoint()
        new.conditions = old.conditions if conditions is None and old else conditions or ()
        new.commands = old.commands if commands is None and old else commands or ()
        new.persist = old.persist if persist is None and old else bool(persist)
        if not new.conditions and not new.commands:
            self.points.pop(key, None)
        else:
            counters = self.counters.setdefault(linear, [0, 0, 0])
            # Compiles (or finds in the cache) every program; AgentError leaves the old state untouched.
            new.compiled = agent.compile_breakpoint(
                new.conditions, new.commands, self.env, self._error_handler(linear), counters, self.cache
            )
            self.points[key] = new
            self.history[key] = new
        self.install(linear)

    def _error_handler(self, linear: int):
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
        linear = vaddr & 0xFFFFFFFF
        bps = self.machine.breakpoints
        kinds = bps.gdb.get(linear)
        hooks = []
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


class _Watchpoints:
    def __init__(self, machine: Machine) -> None:
        self.machine = machine

    def add(self, kind: WatchKind, vaddr: int, length: int) -> None:
        if length < 1:
            raise TargetError(errno.EINVAL, "a watchpoint covers at least one byte")
        wl = self.machine.watchpoints
        if wl.find(vaddr & 0xFFFFFFFF, length, _WATCH_KINDS[kind]) is None:
            wl.add(vaddr, length, _WATCH_KINDS[kind])

    def remove(self, kind: WatchKind, vaddr: int, length: int) -> None:
        wl = self.machine.watchpoints
        wp = wl.find(vaddr & 0xFFFFFFFF, length, _WATCH_KINDS[kind])
        if wp is not None:
            wl.remove(wp)


class MachineTarget(TargetBase):
    """A ``Machine`` behind the GDB stub."""

    # Sleep this long in a slice where the guest is idle (hlt, nothing armed),
    # so the server's loop does not spin a core while it waits for gdb or input.
    IDLE_SLEEP = 0.002

    def __init__(self, machine: Machine) -> None:
        self.machine = machine
        self.layout = I386_LAYOUT
        self.actions: dict[int, ResumeAction] = {}
        self._interrupted = False
        self.sstep_irq = False  # `monitor sstep irq`: let a step take interrupts and timers
        self.killed = False
        self.final: StopEvent | None = None
        self.last_stop: Stop | None = None
        self.stop_time = time.perf_counter()
        self.stop_icount = machine.cpu.icount
        self.last_run_mips = 0.0
        self._monitor = None
        self.agent = _BreakpointAgent(self)
        self.no_reboot = True  # a triple fault ends the session; the CLI sets False unless -no-reboot

    # ---- threads and registers ---------------------------------------------------
    def register_layout(self):
        return self.layout

    def _cpu(self, tid: int):
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

    def _value(self, cpu, name: str) -> int | None:
        if name in ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi"):
            return cpu.regs[("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi").index(name)]
        if name == "eip":
            return cpu.eip
        if name == "eflags":
            return cpu.get_eflags()
        if name in _SEG_REGS:
            return cpu.segs[_SEG_REGS[name]].selector
        if name in _SEG_BASES:
            return cpu.segs[_SEG_BASES[name]].base
        if name in ("cr0", "cr2", "cr3", "cr4"):
            return cpu.cr[int(name[2])]
        if name == "efer":
            return cpu.efer
        if name == "gdtr_base":
            return cpu.gdtr_base
        if name == "gdtr_limit":
            return cpu.gdtr_limit
        if name == "idtr_base":
            return cpu.idtr_base
        if name == "idtr_limit":
            return cpu.idtr_limit
        if name.startswith("dr"):
            return cpu.dr[int(name[2])]
        # x87: the FPU's reset state (not emulated yet)
        return _X87_RESET.get(name, 0)

    def read_registers(self, tid: int) -> bytes:
        cpu = self._cpu(tid)
        return b"".join(
            self.layout.encode_register(r.regnum, self._value(cpu, r.name) or 0) for r in self.layout.registers
        )

    def read_register(self, tid: int, regnum: int) -> bytes | None:
        if not 0 <= regnum < len(self.layout):
            return None
        cpu = self._cpu(tid)
        r = self.layout[regnum]
        return self.layout.encode_register(regnum, self._value(cpu, r.name) or 0)

    def write_registers(self, tid: int, data: bytes) -> None:
        if len(data) != self.layout.g_size:
            raise TargetError(errno.EINVAL, "wrong register block size")
        cpu = self._cpu(tid)
        # Only registers whose value changes are written: a `G` that carries the
        # unchanged selectors must not reload (and possibly fault on) descriptors.
        for r in self.layout.registers:
            off = self.layout.offsets[r.regnum]
            value = self.layout.decode_register(r.regnum, data[off : off + r.size])
            if value != (self._value(cpu, r.name) or 0):
                if not self._set(cpu, r.name, value):
                    raise TargetError(errno.EINVAL, f"cannot write {r.name}")

    def write_register(self, tid: int, regnum: int, data: bytes) -> bool:
        if not 0 <= regnum < len(self.layout):
            return False
        cpu = self._cpu(tid)
        r = self.layout[regnum]
        return self._set(cpu, r.name, self.layout.decode_register(regnum, data))

    def _set(self, cpu, name: str, value: int) -> bool:
        """Write one register with the effect of the instruction that would write it."""
        from .core.ops import system as sysops
        from .core.seg import cache_from, read_descriptor

        if name in ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi"):
            cpu.regs[("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi").index(name)] = value & 0xFFFFFFFF
        elif name == "eip":
            cpu.eip = value & 0xFFFFFFFF
        elif name == "eflags":
            cpu.set_eflags(value | 2)
        elif name in _SEG_REGS:
            seg = _SEG_REGS[name]
            try:
                if not cpu.cr[0] & 1 or cpu.eflags & F.VM:
                    old = cpu.segs[seg]
                    cpu.segs[seg] = SegmentCache(value & 0xFFFF, (value & 0xFFFF) << 4, old.limit, old.flags)
                elif seg in (CS, SS):
                    if value & 0xFFFC == 0:
                        return False
                    lo, hi = read_descriptor(cpu, value & 0xFFFF)
                    cpu.segs[seg] = cache_from(value & 0xFFFF, lo, hi)
                else:
                    sysops.load_seg(cpu, seg, value & 0xFFFF)
            except GuestFault:
                return False
            cpu.compute_hflags()
        elif name in _SEG_BASES:
            cpu.segs[_SEG_BASES[name]].base = value & 0xFFFFFFFF
            cpu.compute_hflags()
            cpu.jmp_cache.clear()
        elif name in ("cr0", "cr2", "cr3", "cr4"):
            n = int(name[2])
            old_cpl = cpu.hflags
            cpu.cr[n] = value & 0xFFFFFFFF
            if n != 2:
                cpu.tlb.flush()  # as mov crN would (a CR3 write drops non-global pages; all is safe)
            cpu.compute_hflags()
            del old_cpl
        elif name == "efer":
            cpu.efer = value
        elif name in ("gdtr_base", "gdtr_limit", "idtr_base", "idtr_limit"):
            setattr(cpu, name, value)
        elif name.startswith("dr"):
            n = int(name[2])
            cpu.dr[n] = value & 0xFFFFFFFF
            if n != 6:
                self.machine.update_guest_debug(cpu)
        else:
            return True  # x87: accepted, not emulated
        return True

    # ---- memory ---------------------------------------------------------------------
    def read_memory(self, tid: int, vaddr: int, length: int) -> bytes:
        cpu = self._cpu(tid)
        out = bytearray()
        while length > 0:
            chunk = min(length, 4096 - (vaddr & 0xFFF))
            try:
                out += self.machine.read_virtual(vaddr, chunk, cpu)
            except ValueError:
                break
            vaddr = (vaddr + chunk) & 0xFFFFFFFF
            length -= chunk
        if not out and length:
            raise TargetError(errno.EFAULT, "unmapped")
        return bytes(out)

    def write_memory(self, tid: int, vaddr: int, data: bytes) -> None:
        try:
            self.machine.write_virtual(vaddr, data, self._cpu(tid))
        except ValueError as exc:
            raise TargetError(errno.EFAULT, str(exc)) from None

    # ---- execution --------------------------------------------------------------------
    def resume(self, actions: Sequence[ResumeAction]) -> None:
        self.actions = {a.tid: a for a in actions}
        self._interrupted = False
        cpu = self.machine.cpu
        linear = (cpu.seg_base[CS] + cpu.eip) & 0xFFFFFFFF
        if linear in self.machine.breakpoints.gdb:
            self.machine.breakpoints.skip_once = linear  # resuming from a breakpoint runs it
        self.stop_time = time.perf_counter()
        self.stop_icount = cpu.icount

    def _tid(self, stop: Stop) -> int:
        return stop.cpu + 1

    def run_slice(self, max_insns: int) -> StopEvent | None:
        if self.final is not None:
            return self.final
        if self._interrupted:
            self._interrupted = False
            return self._stopped(StopEvent.interrupted(1))
        machine = self.machine
        if self.actions and any(a.step for a in self.actions.values()):
            stop = machine.step(irq=self.sstep_irq)
            if stop.kind == "step":
                return self._stopped(StopEvent.step_done(1))
        else:
            stop = machine.run(max_insns=max_insns)
        self.last_stop = stop
        kind = stop.kind
        if kind == "limit" or kind == "step":
            return None
        if kind == "debug":
            tid = self._tid(stop)
            if stop.reason == "swbreak":
                return self._stopped(StopEvent.swbreak(tid))
            if stop.reason == "hwbreak":
                return self._stopped(StopEvent.hwbreak(tid))
            kind_of = {"watch": WatchKind.WRITE, "rwatch": WatchKind.READ, "awatch": WatchKind.ACCESS}
            return self._stopped(StopEvent.watch(kind_of[stop.reason], stop.addr, tid))
        if kind == "exit":
            self.final = StopEvent.exited((machine.exit_code or 0) & 0xFF)
            return self.final
        if kind in ("triple_fault", "reset"):
            if not self.no_reboot:
                machine.reset()  # as a PC would: the loader's reset hook boots the kernel again
                return None
            self.final = StopEvent(StopReason.TERMINATED, Signal.SIGSEGV)
            return self.final
        if kind in ("halt", "idle"):
            # Nothing to run until an outside event (console input, gdb): don't spin.
            time.sleep(self.IDLE_SLEEP)
            return None
        return None

    def _stopped(self, event: StopEvent) -> StopEvent:
        cpu = self.machine.cpu
        wall = time.perf_counter() - self.stop_time
        if wall > 0:
            self.last_run_mips = (cpu.icount - self.stop_icount) / wall / 1e6
        self.actions = {}
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
    def supports_sw_breakpoints(self):
        return _Breakpoints(self.machine, "sw", self.agent)

    def supports_hw_breakpoints(self):
        return _Breakpoints(self.machine, "hw", self.agent)

    def supports_breakpoint_conditions(self):
        return self.agent

    def supports_breakpoint_commands(self):
        return self.agent

    def dprintf_text(self) -> str:
        """Everything agent-style dprintfs printed (also on stderr); ``monitor dprintf log`` shows it."""
        return self.agent.dprintf_text()

    def supports_watchpoints(self):
        return _Watchpoints(self.machine)

    def supports_monitor(self):
        if self._monitor is None:
            from .monitor import Monitor

            self._monitor = Monitor(self)
        return self._monitor

    def supports_target_xml(self):
        return self.layout

    def supports_threads_xfer(self):
        return DefaultThreadsXfer(self)
