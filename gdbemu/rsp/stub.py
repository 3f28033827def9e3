"""The stub core: commands in, reply payloads out, the Target in between.  No I/O, no x86.

Theory of operation
-------------------
The server hands every decoded packet payload to :meth:`GdbStub.handle_packet`
and gets back a :class:`Reply`: the payloads to send, in order, and an
:class:`Action` telling the server what to do next (nothing; start running
the target; drop the connection after a detach; stop serving after a kill;
switch to no-ack mode).  When the running target stops, the server asks
:meth:`GdbStub.stop_reply` for the ``T``/``W``/``X`` packet.

All-stop model: gdb sends a resume packet (``c``/``s``/``C``/``S``/``vCont``)
and gets no reply until the target stops; meanwhile only ``0x03`` arrives,
which the server turns into :meth:`GdbStub.interrupt`.

State kept here, per session:

* gdb's qSupported features (``swbreak+``/``hwbreak+`` decide whether stop
  replies may name those reasons);
* the ``Hg`` thread (registers and memory) and ``Hc`` thread (c/s), which
  stay what gdb set them to: gdb caches them and re-sends ``H`` only when it
  wants a different thread, so the stub must never change them behind gdb's
  back (not even on a stop in another thread).  "Any thread" (0) resolves
  to the thread of the last stop;
* the breakpoints and watchpoints inserted through ``Z``, so that a detach or
  a dropped connection removes them all (gdb that is killed cannot) -- except
  breakpoints whose commands gdb asked to persist (``cmds:1``, gdb's
  ``disconnected-dprintf``), which stay in the target as gdbserver keeps them;
* the last stop, for ``?``.

Every error is a reply, never an exception out of the stub: a malformed
packet gets ``E16`` (EINVAL), a :class:`~gdbemu.rsp.target.TargetError` gets
``E<errno>``, any other exception from the target is logged with its
traceback and gets ``E05`` (EIO).

Addresses are checked against the target's width before the target sees
them (:attr:`GdbStub.max_address`: ``target.address_bits()`` when the target
has it, else the width of the layout's PC).  Nothing wraps or is truncated:
a memory access any byte of which lies beyond the top gets ``E0e`` (EFAULT,
the reply unmapped memory gets; QEMU answers ``E14`` where its range wraps),
and a breakpoint, watchpoint or resume address beyond it gets ``E16``.  A
watchpoint's *length* is accepted as QEMU accepts it (gdb's
``Z2,0,ffffffffffffffff``, "watch everything", answers OK on qemu-system-i386
and -x86_64 alike): any length up to 2**64, the range clipped to the top of
the address space, whose bytes past the top no access can reach
(:meth:`GdbStub._watch_range`).
"""

from __future__ import annotations

import dataclasses
import enum
import errno
import logging
from collections.abc import Callable, Sequence
from typing import Any

from . import commands as cmds
from .target import (
    ALL_THREADS,
    ANY_THREAD,
    AgentError,
    ResumeAction,
    StopEvent,
    StopReplyKind,
    Target,
    TargetError,
    ThreadInfo,
    WatchKind,
)
from .xmltext import escape as _xml_escape
from .xmltext import quoteattr as _xml_attr

__all__ = [
    "PACKET_SIZE",
    "Action",
    "DefaultThreadsXfer",
    "GdbStub",
    "Reply",
    "threads_xml",
]

# Advertised PacketSize: the largest packet gdb may send us, and the bound we
# keep our replies under (an ``m`` reply of N bytes is 2N hex digits).
PACKET_SIZE = 0x4000

E_PARSE = b"E%02x" % errno.EINVAL  # malformed packet
E_EIO = b"E%02x" % errno.EIO  # the target raised something unexpected
E_FAULT = b"E%02x" % errno.EFAULT  # memory that cannot be accessed (unmapped, or beyond the address width)
E_NOENT = b"E01"  # no such thread / register / annex (gdb's "E01 unknown object")
E_XFER_ANNEX = b"E00"  # qXfer: unknown annex (gdb: "E00 malformed request")
E_AGENT = b"E%02x" % errno.ENOEXEC  # Z with bytecode the target will not run (gdb: "Cannot insert breakpoint")


class Action(enum.Enum):
    """What the server does after sending a reply."""

    NONE = "none"
    RESUME = "resume"  # run the target (target.resume() has been called); the stop reply comes later
    DETACH = "detach"  # close this connection; the guest runs on
    KILL = "kill"  # the target was killed: stop serving
    NO_ACK = "no-ack"  # switch the connection to no-ack mode (after sending the OK)


@dataclasses.dataclass
class Reply:
    """Payloads to send, in order, then ``action``."""

    packets: list[bytes]
    action: Action = Action.NONE


def threads_xml(threads: Sequence[ThreadInfo]) -> bytes:
    """The ``qXfer:threads:read`` document (gdb manual, "Thread List Format")."""
    out = ['<?xml version="1.0"?>', "<threads>"]
    for t in threads:
        attrs = f'id="{t.tid:x}"'
        if t.core is not None:
            attrs += f' core="{t.core:x}"'
        if t.name:
            attrs += f" name={_xml_attr(t.name)}"
        out.append(f"  <thread {attrs}>{_xml_escape(t.extra)}</thread>")
    out.append("</threads>")
    return ("\n".join(out) + "\n").encode()


class DefaultThreadsXfer:
    """Threads-xfer ops built from ``target.threads()``: what most targets return."""

    def __init__(self, target: Target) -> None:
        self._target = target

    def threads_xml(self) -> bytes:
        return threads_xml(self._target.threads())


def _to_hex(data: bytes) -> bytes:
    return data.hex().encode()


@dataclasses.dataclass(frozen=True)
class _Point:
    """An inserted breakpoint or watchpoint, remembered for cleanup."""

    ztype: int  # 0..4 as in the Z packet
    addr: int
    kind: int  # breakpoint kind or watchpoint length


class GdbStub:
    """The protocol engine for one target; sessions come and go (see :meth:`new_session`)."""

    def __init__(self, target: Target, log: logging.Logger | None = None, packet_size: int = PACKET_SIZE) -> None:
        self.target = target
        self.log = log or logging.getLogger("gdbemu.rsp")
        self.packet_size = packet_size
        self.layout = target.register_layout()
        self.max_address = (1 << self._address_bits()) - 1  # the highest address gdb may name
        self.last_stop: StopEvent | None = None  # for `?`; None: never ran (reported as SIGTRAP)
        self.last_stop_thread: int | None = None
        self._handlers: dict[type[Any], Callable[[Any], Reply]] = {
            cmds.QuerySupported: self.handle_qSupported,
            cmds.QueryHaltReason: self.handle_halt_reason,
            cmds.ReadRegisters: self.handle_g,
            cmds.WriteRegisters: self.handle_G,
            cmds.ReadRegister: self.handle_p,
            cmds.WriteRegister: self.handle_P,
            cmds.ReadMemory: self.handle_m,
            cmds.WriteMemory: self.handle_M,
            cmds.Continue: self.handle_c,
            cmds.ReverseStep: self.handle_bs,
            cmds.ReverseContinue: self.handle_bc,
            cmds.Step: self.handle_s,
            cmds.VContQuery: self.handle_vCont_query,
            cmds.VCont: self.handle_vCont,
            cmds.SetThread: self.handle_H,
            cmds.ThreadAlive: self.handle_T,
            cmds.CurrentThread: self.handle_qC,
            cmds.ThreadListFirst: self.handle_qfThreadInfo,
            cmds.ThreadListNext: self.handle_qsThreadInfo,
            cmds.ThreadExtraInfo: self.handle_qThreadExtraInfo,
            cmds.QueryAttached: self.handle_qAttached,
            cmds.QueryOffsets: self.handle_qOffsets,
            cmds.XferRead: self.handle_qXfer_read,
            cmds.QRcmd: self.handle_qRcmd,
            cmds.Detach: self.handle_D,
            cmds.Kill: self.handle_k,
            cmds.VKill: self.handle_vKill,
            cmds.MustReplyEmpty: self.handle_empty,
            cmds.StartNoAckMode: self.handle_QStartNoAckMode,
            cmds.InsertBreakpoint: self.handle_Z_breakpoint,
            cmds.RemoveBreakpoint: self.handle_z_breakpoint,
            cmds.InsertWatchpoint: self.handle_Z_watchpoint,
            cmds.RemoveWatchpoint: self.handle_z_watchpoint,
            cmds.Unknown: self.handle_empty,
        }
        self._points: set[_Point] = set()
        self._persistent: set[_Point] = set()  # breakpoints with cmds:1: kept in the target on disconnect
        self.new_session()

    # ---- session ------------------------------------------------------------------
    def new_session(self) -> None:
        """Forget what the previous gdb told us (features, H threads, list cursors); keep the target state."""
        self.gdb_features: cmds.QuerySupported = cmds.QuerySupported()
        self.thread_g = ANY_THREAD
        self.thread_c = ALL_THREADS
        self._thread_list: list[int] = []
        self._xfer_cache: dict[tuple[str, str], bytes] = {}

    def connection_lost(self) -> None:
        """gdb went away without detaching: undo its breakpoints and let the target go."""
        self._release_target()

    def _release_target(self) -> None:
        self._remove_all_points()
        try:
            self.target.detach()
        except Exception:
            self.log.exception("target.detach() failed")

    # ---- entry points -------------------------------------------------------------
    def handle_packet(self, payload: bytes) -> Reply:
        """Parse and handle one packet; never raises."""
        try:
            command = cmds.parse(payload)
        except cmds.ParseError as exc:
            self.log.warning("malformed packet %r: %s", payload[:64], exc)
            return Reply([E_PARSE])
        return self.handle(command)

    def handle(self, command: cmds.Command) -> Reply:
        """Handle one parsed command; never raises."""
        handler = self._handlers[type(command)]
        try:
            return handler(command)
        except TargetError as exc:
            self.log.info("%s: target error %d (%s)", type(command).__name__, exc.errno, exc)
            return Reply([b"E%02x" % (exc.errno & 0xFF)])
        except Exception:
            self.log.exception("target failed while handling %r", command)
            return Reply([E_EIO])

    def stop_reply(self, event: StopEvent) -> bytes:
        """Record ``event`` as the last stop and format its stop reply (``T``, ``W`` or ``X``)."""
        self.last_stop = event
        if event.thread is not None:
            self.last_stop_thread = event.thread
        return self._format_stop(event)

    def interrupt(self) -> None:
        """gdb sent Ctrl-C while the target runs."""
        self.target.interrupt()

    # ---- helpers --------------------------------------------------------------------
    def _address_bits(self) -> int:
        """The target's address width (target.py rule 9), else the width of the PC register."""
        getter = getattr(self.target, "address_bits", None)
        bits = None if getter is None else self._ops_or_none(getter)
        if not isinstance(bits, int) or bits <= 0:
            bits = self.layout[self.layout.pc_regnum].bitsize
        return bits

    def _range_ok(self, addr: int, length: int) -> bool:
        """``[addr, addr + length)`` lies within the address space (a length of 0 checks ``addr`` only)."""
        return addr <= self.max_address and addr + max(length, 1) - 1 <= self.max_address

    def _watch_range(self, addr: int, length: int) -> tuple[int, int] | None:
        """A Z2/Z3/Z4 range as the target gets it (module docstring), or None: refused."""
        if addr > self.max_address or length > 1 << 64:
            return None
        return addr, min(length, self.max_address + 1 - addr)

    def _thread_ids(self) -> list[int]:
        return [t.tid for t in self.target.threads()]

    def _resolve(self, tid: int) -> int:
        """A concrete thread for a register/memory access: 0 and -1 mean the last stopped thread."""
        if tid in (ANY_THREAD, ALL_THREADS):
            ids = self._thread_ids()
            if self.last_stop_thread in ids:
                return self.last_stop_thread
            return ids[0]
        return tid

    def _format_stop(self, event: StopEvent) -> bytes:
        if event.reason is StopReplyKind.EXITED:
            return b"W%02x" % ((event.exit_code or 0) & 0xFF)
        if event.reason is StopReplyKind.TERMINATED:
            return b"X%02x" % (event.signal & 0xFF)
        tid = self._resolve(event.thread if event.thread is not None else ANY_THREAD)
        out = [b"T%02x" % (event.signal & 0xFF), b"thread:%x;" % tid]
        reason = event.reason
        if reason is StopReplyKind.SWBREAK and self.gdb_features.has("swbreak"):
            out.append(b"swbreak:;")
        elif reason is StopReplyKind.HWBREAK and self.gdb_features.has("hwbreak"):
            out.append(b"hwbreak:;")
        elif reason in (StopReplyKind.WATCH, StopReplyKind.RWATCH, StopReplyKind.AWATCH):
            out.append(b"%s:%x;" % (reason.value.encode(), event.addr or 0))
        elif reason is StopReplyKind.HISTORY_BEGIN:
            out.append(b"replaylog:begin;")
        try:
            for regnum in self.layout.expedite:
                data = self.target.read_register(tid, regnum)
                if data is not None:
                    out.append(b"%02x:%s;" % (regnum, _to_hex(data)))
        except Exception:  # the stop itself must still be reported; gdb will ask with `g`
            self.log.exception("reading expedited registers failed")
        return b"".join(out)

    def _exec_file_ops(self) -> Any:
        """``supports_exec_file`` is optional in the Target protocol (TargetBase has it)."""
        getter = getattr(self.target, "supports_exec_file", None)
        return None if getter is None else self._ops_or_none(getter)

    def _ops_or_none(self, getter: Callable[[], Any]) -> Any:
        try:
            return getter()
        except Exception:
            self.log.exception("%s failed", getattr(getter, "__name__", "supports_*"))
            return None

    # ---- handlers: queries --------------------------------------------------------------
    def handle_qSupported(self, cmd: cmds.QuerySupported) -> Reply:
        """Advertise exactly what the target's optional ops provide (rule 7 of target.py)."""
        self.gdb_features = cmd
        t = self.target
        features = [b"PacketSize=%x" % self.packet_size, b"QStartNoAckMode+", b"vContSupported+"]
        if self._ops_or_none(t.supports_target_xml) is not None:
            features.append(b"qXfer:features:read+")
        if self._ops_or_none(t.supports_threads_xfer) is not None:
            features.append(b"qXfer:threads:read+")
        if self._exec_file_ops() is not None:
            features.append(b"qXfer:exec-file:read+")
        if self._ops_or_none(t.supports_sw_breakpoints) is not None:
            features.append(b"swbreak+")
        if self._ops_or_none(t.supports_hw_breakpoints) is not None:
            features.append(b"hwbreak+")
        breakpoints = b"swbreak+" in features or b"hwbreak+" in features
        if breakpoints and self._condition_ops() is not None:
            features.append(b"ConditionalBreakpoints+")
        if breakpoints and self._command_ops() is not None:
            features.append(b"BreakpointCommands+")
        if self._ops_or_none(t.supports_reverse) is not None:
            features += [b"ReverseStep+", b"ReverseContinue+"]
        return Reply([b";".join(features)])

    def handle_halt_reason(self, cmd: cmds.QueryHaltReason) -> Reply:
        event = self.last_stop or StopEvent.step_done(None)
        return Reply([self._format_stop(event)])

    def handle_empty(self, cmd: cmds.Command) -> Reply:
        """Unknown packets and vMustReplyEmpty: the empty reply means "not supported"."""
        if isinstance(cmd, cmds.Unknown):
            self.log.debug("unsupported packet %r", cmd.payload[:64])
        return Reply([b""])

    def handle_QStartNoAckMode(self, cmd: cmds.StartNoAckMode) -> Reply:
        return Reply([b"OK"], Action.NO_ACK)

    def handle_qAttached(self, cmd: cmds.QueryAttached) -> Reply:
        # "1": attached to an existing process, so gdb's quit detaches instead of killing the guest.
        return Reply([b"1"])

    def handle_qOffsets(self, cmd: cmds.QueryOffsets) -> Reply:
        return Reply([b"Text=0;Data=0;Bss=0"])  # a kernel runs where it was linked

    # ---- handlers: threads --------------------------------------------------------------
    def handle_H(self, cmd: cmds.SetThread) -> Reply:
        if cmd.thread not in (ANY_THREAD, ALL_THREADS) and cmd.thread not in self._thread_ids():
            return Reply([E_NOENT])
        if cmd.op == "c":
            self.thread_c = cmd.thread
        else:
            self.thread_g = cmd.thread
        return Reply([b"OK"])

    def handle_T(self, cmd: cmds.ThreadAlive) -> Reply:
        return Reply([b"OK" if cmd.thread in self._thread_ids() else E_NOENT])

    def handle_qC(self, cmd: cmds.CurrentThread) -> Reply:
        return Reply([b"QC%x" % self._resolve(ANY_THREAD)])

    def handle_qfThreadInfo(self, cmd: cmds.ThreadListFirst) -> Reply:
        self._thread_list = self._thread_ids()
        return self.handle_qsThreadInfo(cmds.ThreadListNext())

    def handle_qsThreadInfo(self, cmd: cmds.ThreadListNext) -> Reply:
        if not self._thread_list:
            return Reply([b"l"])
        chunk: list[bytes] = []
        size = 1
        while self._thread_list and size + 17 < self.packet_size:
            text = b"%x" % self._thread_list.pop(0)
            chunk.append(text)
            size += len(text) + 1
        return Reply([b"m" + b",".join(chunk)])

    def handle_qThreadExtraInfo(self, cmd: cmds.ThreadExtraInfo) -> Reply:
        for t in self.target.threads():
            if t.tid == cmd.thread:
                return Reply([_to_hex((t.extra or t.name).encode())])
        return Reply([E_NOENT])

    # ---- handlers: registers --------------------------------------------------------------
    def handle_g(self, cmd: cmds.ReadRegisters) -> Reply:
        data = self.target.read_registers(self._resolve(self.thread_g))
        if len(data) != self.layout.g_size:
            self.log.error("read_registers returned %d bytes, the layout has %d", len(data), self.layout.g_size)
            return Reply([E_EIO])
        return Reply([_to_hex(data)])

    def handle_G(self, cmd: cmds.WriteRegisters) -> Reply:
        if len(cmd.data) != self.layout.g_size:
            return Reply([E_PARSE])
        self.target.write_registers(self._resolve(self.thread_g), cmd.data)
        return Reply([b"OK"])

    def handle_p(self, cmd: cmds.ReadRegister) -> Reply:
        if cmd.regnum >= len(self.layout):
            return Reply([E_NOENT])
        data = self.target.read_register(self._resolve(self.thread_g), cmd.regnum)
        if data is None:
            return Reply([b"xx" * self.layout[cmd.regnum].size])
        return Reply([_to_hex(data)])

    def handle_P(self, cmd: cmds.WriteRegister) -> Reply:
        if cmd.regnum >= len(self.layout):
            return Reply([E_NOENT])
        if len(cmd.data) != self.layout[cmd.regnum].size:
            return Reply([E_PARSE])
        ok = self.target.write_register(self._resolve(self.thread_g), cmd.regnum, cmd.data)
        return Reply([b"OK" if ok else b"E%02x" % errno.EPERM])

    # ---- handlers: memory -------------------------------------------------------------------
    def handle_m(self, cmd: cmds.ReadMemory) -> Reply:
        length = min(cmd.length, (self.packet_size - 4) // 2)  # a short read is fine for gdb
        if not self._range_ok(cmd.addr, length):
            return Reply([E_FAULT])
        if length == 0:
            return Reply([b""])
        data = self.target.read_memory(self._resolve(self.thread_g), cmd.addr, length)
        if not data:
            return Reply([E_FAULT])
        return Reply([_to_hex(data[:length])])

    def handle_M(self, cmd: cmds.WriteMemory) -> Reply:
        if not self._range_ok(cmd.addr, len(cmd.data)):
            return Reply([E_FAULT])
        if cmd.data:  # `X addr,0:` is gdb probing for X support
            self.target.write_memory(self._resolve(self.thread_g), cmd.addr, cmd.data)
        return Reply([b"OK"])

    # ---- handlers: resume -------------------------------------------------------------------
    def _resume(self, actions: list[ResumeAction], addr: int | None) -> Reply:
        if self.last_stop is not None and self.last_stop.is_final:
            return Reply([self._format_stop(self.last_stop)])  # nothing left to run
        if not actions:
            return Reply([E_PARSE])
        if addr is not None and addr > self.max_address:
            return Reply([E_PARSE])
        if addr is not None:  # "c addr": resume at addr (old gdbs); the PC is a register like any other
            pc = self.layout.encode_register(self.layout.pc_regnum, addr)
            if not self.target.write_register(actions[0].tid, self.layout.pc_regnum, pc):
                return Reply([b"E%02x" % errno.EPERM])
        self.target.resume(actions)
        return Reply([], Action.RESUME)

    def handle_c(self, cmd: cmds.Continue) -> Reply:
        """Continue the Hc thread, or every thread when Hc is "all"/"any" (what gdb means by c)."""
        if self.thread_c in (ANY_THREAD, ALL_THREADS):
            first = self._resolve(ANY_THREAD)
            tids = [first] + [t for t in self._thread_ids() if t != first]
        else:
            tids = [self.thread_c]
        return self._resume([ResumeAction(t, False, cmd.signal) for t in tids], cmd.addr)

    def handle_s(self, cmd: cmds.Step) -> Reply:
        """Step the Hc thread (the last stopped one for "all"/"any"); the others stay stopped."""
        tid = self._resolve(self.thread_c)
        return self._resume([ResumeAction(tid, True, cmd.signal)], cmd.addr)

    def _reverse(self, step: bool) -> Reply:
        """``bs``/``bc``: the stop now, or (the target started it) later, as after a resume (empty: not supported)."""
        ops = self._ops_or_none(self.target.supports_reverse)
        if ops is None:
            return Reply([b""])
        if self.last_stop is not None and self.last_stop.is_final:
            return Reply([self._format_stop(self.last_stop)])
        tid = self._resolve(self.thread_c)
        event = ops.reverse_step(tid) if step else ops.reverse_continue(tid)
        if event is None:
            return Reply([], Action.RESUME)
        return Reply([self.stop_reply(event)])

    def handle_bs(self, cmd: cmds.ReverseStep) -> Reply:
        return self._reverse(step=True)

    def handle_bc(self, cmd: cmds.ReverseContinue) -> Reply:
        return self._reverse(step=False)

    def handle_vCont_query(self, cmd: cmds.VContQuery) -> Reply:
        return Reply([b"vCont;c;C;s;S"])

    def handle_vCont(self, cmd: cmds.VCont) -> Reply:
        """Expand vCont into one action per thread: the leftmost matching action applies;
        threads with none, or with ``t``, stay stopped.  ``r`` (range step, not advertised)
        is a plain step, which the range-stepping rules allow."""
        actions: list[ResumeAction] = []
        for tid in self._thread_ids():
            for act in cmd.actions:
                if act.thread is None or act.thread in (ALL_THREADS, tid):
                    if act.action != "t":
                        actions.append(ResumeAction(tid, act.step, act.signal))
                    break
        return self._resume(actions, None)

    # ---- handlers: breakpoints ----------------------------------------------------------
    def _point_ops(self, ztype: int) -> Any:
        t = self.target
        getter = {
            0: t.supports_sw_breakpoints,
            1: t.supports_hw_breakpoints,
        }.get(ztype, t.supports_watchpoints)
        return self._ops_or_none(getter)

    def _condition_ops(self) -> Any:
        """The target's ConditionalBreakpoints ops; a later ability, so looked up with getattr (target.py rule 7)."""
        getter = getattr(self.target, "supports_breakpoint_conditions", None)
        return None if getter is None else self._ops_or_none(getter)

    def _command_ops(self) -> Any:
        getter = getattr(self.target, "supports_breakpoint_commands", None)
        return None if getter is None else self._ops_or_none(getter)

    def handle_Z_breakpoint(self, cmd: cmds.InsertBreakpoint) -> Reply:
        """Insert, with conditions and commands set first (target.py rule 8).

        Without condition/command ops the bytecode is ignored: gdb sends it
        only after ``ConditionalBreakpoints+``/``BreakpointCommands+``, which
        such a target does not advertise.
        """
        ops = self._point_ops(cmd.type.value)
        if ops is None:
            return Reply([b""])  # gdb falls back (Z0: it writes int3 itself)
        if cmd.addr > self.max_address:
            return Reply([E_PARSE])
        hardware = cmd.type is cmds.BreakpointKind.HARDWARE
        cond_ops, command_ops = self._condition_ops(), self._command_ops()
        try:
            if cond_ops is not None:
                cond_ops.set_conditions(cmd.addr, cmd.kind, hardware, cmd.conditions)
            if command_ops is not None:
                command_ops.set_commands(cmd.addr, cmd.kind, hardware, cmd.commands, cmd.persist)
        except AgentError as exc:
            self.log.warning("Z%d at %#x: bytecode refused: %s", cmd.type.value, cmd.addr, exc)
            self._clear_agent(cmd.addr, cmd.kind, hardware)
            return Reply([E_AGENT])
        try:
            ops.add(cmd.addr, cmd.kind)
        except Exception:
            self._clear_agent(cmd.addr, cmd.kind, hardware)
            raise
        point = _Point(cmd.type.value, cmd.addr, cmd.kind)
        self._points.add(point)
        if cmd.persist and cmd.commands and command_ops is not None:
            self._persistent.add(point)
        else:
            self._persistent.discard(point)
        return Reply([b"OK"])

    def _clear_agent(self, addr: int, kind: int, hardware: bool) -> None:
        """Drop the conditions and commands of a breakpoint (removed, or refused)."""
        try:
            cond_ops, command_ops = self._condition_ops(), self._command_ops()
            if cond_ops is not None:
                cond_ops.set_conditions(addr, kind, hardware, ())
            if command_ops is not None:
                command_ops.set_commands(addr, kind, hardware, (), False)
        except Exception:
            self.log.exception("clearing the conditions of %#x failed", addr)

    def handle_z_breakpoint(self, cmd: cmds.RemoveBreakpoint) -> Reply:
        ops = self._point_ops(cmd.type.value)
        if ops is None:
            return Reply([b""])
        if cmd.addr > self.max_address:
            return Reply([E_PARSE])
        ops.remove(cmd.addr, cmd.kind)
        self._clear_agent(cmd.addr, cmd.kind, cmd.type is cmds.BreakpointKind.HARDWARE)
        point = _Point(cmd.type.value, cmd.addr, cmd.kind)
        self._points.discard(point)
        self._persistent.discard(point)
        return Reply([b"OK"])

    def handle_Z_watchpoint(self, cmd: cmds.InsertWatchpoint) -> Reply:
        ops = self._point_ops(cmd.kind.value)
        if ops is None:
            return Reply([b""])
        wrange = self._watch_range(cmd.addr, cmd.length)
        if wrange is None:
            return Reply([E_PARSE])
        addr, length = wrange
        ops.add(cmd.kind, addr, length)
        self._points.add(_Point(cmd.kind.value, addr, length))
        return Reply([b"OK"])

    def handle_z_watchpoint(self, cmd: cmds.RemoveWatchpoint) -> Reply:
        ops = self._point_ops(cmd.kind.value)
        if ops is None:
            return Reply([b""])
        wrange = self._watch_range(cmd.addr, cmd.length)
        if wrange is None:
            return Reply([E_PARSE])
        addr, length = wrange
        ops.remove(cmd.kind, addr, length)
        self._points.discard(_Point(cmd.kind.value, addr, length))
        return Reply([b"OK"])

    def _remove_all_points(self, keep_persistent: bool = True) -> None:
        """Remove every point gdb inserted (detach, lost connection); persistent dprintfs stay unless told."""
        for point in sorted(self._points, key=lambda p: (p.ztype, p.addr, p.kind)):
            if keep_persistent and point in self._persistent:
                continue
            try:
                ops = self._point_ops(point.ztype)
                if ops is None:
                    continue
                if point.ztype < 2:
                    ops.remove(point.addr, point.kind)
                    self._clear_agent(point.addr, point.kind, point.ztype == 1)
                else:
                    ops.remove(WatchKind(point.ztype), point.addr, point.kind)
            except Exception:
                self.log.exception("removing %r failed", point)
        self._points.clear()
        self._persistent.clear()

    @property
    def inserted_points(self) -> frozenset[tuple[int, int, int]]:
        """``(ztype, addr, kind)`` of every breakpoint/watchpoint gdb has inserted (for tests and stats)."""
        return frozenset((p.ztype, p.addr, p.kind) for p in self._points)

    # ---- handlers: qXfer, monitor -----------------------------------------------------
    def handle_qXfer_read(self, cmd: cmds.XferRead) -> Reply:
        key = (cmd.object, cmd.annex)
        if cmd.offset == 0 or key not in self._xfer_cache:  # a read from 0 starts a new snapshot
            doc: bytes | None
            if cmd.object == "features":
                ops = self._ops_or_none(self.target.supports_target_xml)
                if ops is None:
                    return Reply([b""])
                doc = ops.target_xml(cmd.annex)
            elif cmd.object == "exec-file":
                exec_ops = self._exec_file_ops()
                if exec_ops is None:
                    return Reply([b""])
                path = exec_ops.exec_file(cmd.annex)
                doc = path.encode("utf-8", "surrogateescape") if path is not None else None
            else:
                ops = self._ops_or_none(self.target.supports_threads_xfer)
                if ops is None:
                    return Reply([b""])
                doc = ops.threads_xml() if cmd.annex == "" else None
            if doc is None:
                return Reply([E_XFER_ANNEX])
            self._xfer_cache[key] = doc
        doc = self._xfer_cache[key]
        # Escaping may double binary data; half a packet always fits.
        length = min(cmd.length, self.packet_size // 2 - 8)
        chunk = doc[cmd.offset : cmd.offset + length]
        more = cmd.offset + len(chunk) < len(doc)
        return Reply([(b"m" if more else b"l") + chunk])

    def handle_qRcmd(self, cmd: cmds.QRcmd) -> Reply:
        ops = self._ops_or_none(self.target.supports_monitor)
        if ops is None:
            return Reply([b""])  # gdb: "Target does not support this command."
        text = cmd.command.decode("utf-8", "replace")
        output: str = ops.handle(text)
        data = output.encode("utf-8", "replace")
        step = (self.packet_size - 8) // 2
        packets = [b"O" + _to_hex(data[i : i + step]) for i in range(0, len(data), step)]
        return Reply(packets + [b"OK"])

    # ---- handlers: detach, kill ---------------------------------------------------------
    def handle_D(self, cmd: cmds.Detach) -> Reply:
        self._release_target()
        return Reply([b"OK"], Action.DETACH)

    def handle_k(self, cmd: cmds.Kill) -> Reply:
        self._points.clear()
        self._persistent.clear()
        self.target.kill()
        return Reply([], Action.KILL)

    def handle_vKill(self, cmd: cmds.VKill) -> Reply:
        self._points.clear()
        self._persistent.clear()
        self.target.kill()
        return Reply([b"OK"], Action.KILL)
