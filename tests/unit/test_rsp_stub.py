"""The stub core against an in-memory fake target: replies, the Target calls they make, error paths.

:class:`FakeTarget` is also used by ``test_rsp_server.py`` (sockets and the
real gdb).  It is a toy CPU per thread: every "instruction" advances EIP by
one, a software or hardware breakpoint at EIP stops it before executing,
and a scripted list of stops lets tests produce watchpoints, exits and
faults.  Memory is 64 KiB at address 0; anything above is unmapped.
"""

from __future__ import annotations

import errno
import logging
import re
import shutil
import subprocess
import time
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gdbemu.rsp import commands as cmds
from gdbemu.rsp.arch import RegisterLayout
from gdbemu.rsp.arch.i386 import EBP, EFLAGS, EIP, ESP, I386_LAYOUT, I386_SSE_LAYOUT
from gdbemu.rsp.stub import PACKET_SIZE, Action, DefaultThreadsXfer, GdbStub, threads_xml
from gdbemu.rsp.target import (
    ResumeAction,
    Signal,
    StopEvent,
    StopReplyKind,
    Target,
    TargetBase,
    TargetError,
    ThreadInfo,
    WatchKind,
)

MEM_SIZE = 0x10000
GDB = shutil.which("gdb")


class _Points:
    """Breakpoint ops recording what gdb inserted."""

    def __init__(self, owner: FakeTarget, name: str) -> None:
        self.owner, self.name = owner, name
        self.addrs: set[int] = set()

    def add(self, vaddr: int, kind: int) -> None:
        if vaddr >= MEM_SIZE:
            raise TargetError(errno.EFAULT)
        self.owner.calls.append((f"{self.name}.add", vaddr, kind))
        self.addrs.add(vaddr)

    def remove(self, vaddr: int, kind: int) -> None:
        self.owner.calls.append((f"{self.name}.remove", vaddr, kind))
        self.addrs.discard(vaddr)


class _Watch:
    def __init__(self, owner: FakeTarget) -> None:
        self.owner = owner
        self.points: set[tuple[WatchKind, int, int]] = set()

    def add(self, kind: WatchKind, vaddr: int, length: int) -> None:
        self.owner.calls.append(("watch.add", kind, vaddr, length))
        self.points.add((kind, vaddr, length))

    def remove(self, kind: WatchKind, vaddr: int, length: int) -> None:
        self.owner.calls.append(("watch.remove", kind, vaddr, length))
        self.points.discard((kind, vaddr, length))


class _Monitor:
    def handle(self, cmd: str) -> str:
        if cmd.startswith("echo "):
            return cmd[5:] + "\n"
        if cmd == "fail":
            raise RuntimeError("monitor exploded")
        if cmd == "big":
            return "x" * 20000
        return f"unknown command: {cmd}\n"


class FakeTarget(TargetBase):
    """An in-memory Target: registers, memory, breakpoints, a scripted stop list."""

    def __init__(self, ncpus: int = 2, features: Sequence[str] = ("sw", "hw", "watch", "monitor", "xml", "threads")):
        self.layout: RegisterLayout = I386_LAYOUT
        self.features = set(features)
        self.regs: dict[int, dict[str, int | bytes]] = {}
        for i in range(ncpus):
            self.regs[i + 1] = {
                "eip": 0xFF0 + 0x100 * i,
                "esp": 0x8000 - 0x100 * i,
                "ebp": 0x8000,
                "eflags": 0x202,
                "eax": 0x1234 + i,
                "cs": 0x08,
                "ss": 0x10,
                "ds": 0x10,
                "es": 0x10,
                "fctrl": 0x37F,
                "cr0": 0x11,
                "st0": bytes(range(10)),
            }
        self.mem = bytearray(MEM_SIZE)
        self.mem[0x1000:0x1010] = bytes(range(0xA0, 0xB0))
        self.sw = _Points(self, "sw")
        self.hw = _Points(self, "hw")
        self.watch = _Watch(self)
        self.script: list[StopEvent] = []  # returned first, one per run_slice
        self.resumed: list[ResumeAction] = []
        self.calls: list[tuple[object, ...]] = []
        self.slices = 0
        self.insns = 0
        self.interrupted = False
        self.killed = False
        self.detached = 0
        self.explode: set[str] = set()  # method names that raise RuntimeError (a target bug)
        self.slice_delay = 0.0002  # seconds per run_slice: a real guest takes time too

    def _check(self, name: str) -> None:
        if name in self.explode:
            raise RuntimeError(f"{name} exploded")

    # ---- required ----
    def register_layout(self) -> RegisterLayout:
        return self.layout

    def threads(self) -> Sequence[ThreadInfo]:
        return [ThreadInfo(tid, f"CPU#{tid - 1}", f"CPU#{tid - 1} [running]", tid - 1) for tid in self.regs]

    def read_registers(self, tid: int) -> bytes:
        self._check("read_registers")
        return self.layout.encode_registers(self.regs[tid])

    def write_registers(self, tid: int, data: bytes) -> None:
        self.calls.append(("write_registers", tid))
        self.regs[tid] = dict(self.layout.decode_registers(data))

    def read_register(self, tid: int, regnum: int) -> bytes | None:
        self._check("read_register")
        name = self.layout[regnum].name
        if name == "dr7":
            return None  # "unavailable"
        return self.layout.encode_register(regnum, self.regs[tid].get(name, 0))

    def write_register(self, tid: int, regnum: int, data: bytes) -> bool:
        name = self.layout[regnum].name
        if name == "cs":
            return False  # refused
        self.regs[tid][name] = self.layout.decode_register(regnum, data)
        return True

    def read_memory(self, tid: int, vaddr: int, length: int) -> bytes:
        self._check("read_memory")
        if vaddr >= MEM_SIZE:
            raise TargetError(errno.EFAULT)
        return bytes(self.mem[vaddr : vaddr + length])  # short at the end of memory

    def write_memory(self, tid: int, vaddr: int, data: bytes) -> None:
        if vaddr + len(data) > MEM_SIZE:
            raise TargetError(errno.EFAULT)
        self.mem[vaddr : vaddr + len(data)] = data

    def resume(self, actions: Sequence[ResumeAction]) -> None:
        self.calls.append(("resume", tuple(actions)))
        self.resumed = list(actions)

    def run_slice(self, max_insns: int) -> StopEvent | None:
        self._check("run_slice")
        self.slices += 1
        if self.slice_delay:
            time.sleep(self.slice_delay)
        if self.interrupted:
            self.interrupted = False
            return StopEvent.interrupted(self.resumed[0].tid if self.resumed else 1)
        if self.script:
            return self.script.pop(0)
        if not self.resumed:  # free-running with nothing scheduled: every thread continues
            self.resumed = [ResumeAction(tid) for tid in self.regs]
        for action in self.resumed:
            regs = self.regs[action.tid]
            eip = int(regs["eip"])  # type: ignore[arg-type]
            if action.step:
                regs["eip"] = eip + 1
                self.insns += 1
                return StopEvent.step_done(action.tid)
            points = [a for a in self.sw.addrs | self.hw.addrs if eip <= a < eip + max_insns]
            if points:
                hit = min(points)
                self.insns += hit - eip
                regs["eip"] = hit
                return StopEvent.swbreak(action.tid) if hit in self.sw.addrs else StopEvent.hwbreak(action.tid)
            regs["eip"] = eip + max_insns
            self.insns += max_insns
        return None

    def interrupt(self) -> None:
        self.calls.append(("interrupt",))
        self.interrupted = True

    def kill(self) -> None:
        self.killed = True

    def detach(self) -> None:
        self.detached += 1
        self.resumed = []

    # ---- optional ----
    def supports_sw_breakpoints(self) -> _Points | None:
        return self.sw if "sw" in self.features else None

    def supports_hw_breakpoints(self) -> _Points | None:
        return self.hw if "hw" in self.features else None

    def supports_watchpoints(self) -> _Watch | None:
        return self.watch if "watch" in self.features else None

    def supports_monitor(self) -> _Monitor | None:
        return _Monitor() if "monitor" in self.features else None

    def supports_target_xml(self) -> RegisterLayout | None:
        return self.layout if "xml" in self.features else None

    def supports_threads_xfer(self) -> DefaultThreadsXfer | None:
        return DefaultThreadsXfer(self) if "threads" in self.features else None


@pytest.fixture
def target() -> FakeTarget:
    return FakeTarget()


@pytest.fixture
def stub(target: FakeTarget) -> GdbStub:
    s = GdbStub(target)
    s.handle_packet(b"qSupported:multiprocess+;swbreak+;hwbreak+;xmlRegisters=i386")
    return s


def one(stub: GdbStub, payload: bytes) -> bytes:
    """The single reply packet to ``payload``."""
    reply = stub.handle_packet(payload)
    assert len(reply.packets) == 1, reply
    return reply.packets[0]


def le32(value: int) -> bytes:
    return value.to_bytes(4, "little").hex().encode()


# ---- the fake itself --------------------------------------------------------------------


def test_fake_target_satisfies_the_protocol() -> None:
    assert isinstance(FakeTarget(), Target)


# ---- qSupported ----------------------------------------------------------------------------


def test_qsupported_advertises_what_the_target_has(target: FakeTarget) -> None:
    reply = one(GdbStub(target), b"qSupported:swbreak+;hwbreak+").split(b";")
    assert reply[0] == b"PacketSize=%x" % PACKET_SIZE
    assert set(reply[1:]) == {
        b"QStartNoAckMode+",
        b"vContSupported+",
        b"qXfer:features:read+",
        b"qXfer:threads:read+",
        b"swbreak+",
        b"hwbreak+",
    }


def test_qsupported_minimal_target_advertises_nothing_optional() -> None:
    reply = one(GdbStub(FakeTarget(features=())), b"qSupported").split(b";")
    assert set(reply[1:]) == {b"QStartNoAckMode+", b"vContSupported+"}


@pytest.mark.parametrize(
    ("feature", "advert"),
    [
        ("sw", b"swbreak+"),
        ("hw", b"hwbreak+"),
        ("xml", b"qXfer:features:read+"),
        ("threads", b"qXfer:threads:read+"),
    ],
)
def test_each_optional_feature_adds_exactly_its_advert(feature: str, advert: bytes) -> None:
    reply = one(GdbStub(FakeTarget(features=(feature,))), b"qSupported").split(b";")
    assert set(reply[1:]) == {b"QStartNoAckMode+", b"vContSupported+", advert}


# ---- stop replies ---------------------------------------------------------------------------


def test_halt_reason_before_any_run_is_sigtrap_with_expedited_registers(stub: GdbStub) -> None:
    reply = one(stub, b"?")
    assert reply == (
        b"T05thread:1;"
        + b"%02x:%s;" % (ESP, le32(0x8000))
        + b"%02x:%s;" % (EBP, le32(0x8000))
        + b"%02x:%s;" % (EIP, le32(0xFF0))
        + b"%02x:%s;" % (EFLAGS, le32(0x202))
    )


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (StopEvent.swbreak(2), b"T05thread:2;swbreak:;"),
        (StopEvent.hwbreak(1), b"T05thread:1;hwbreak:;"),
        (StopEvent.watch(WatchKind.WRITE, 0x1234, 1), b"T05thread:1;watch:1234;"),
        (StopEvent.watch(WatchKind.READ, 0x10, 1), b"T05thread:1;rwatch:10;"),
        (StopEvent.watch(WatchKind.ACCESS, 0xABC, 2), b"T05thread:2;awatch:abc;"),
        (StopEvent.interrupted(1), b"T02thread:1;"),
        (StopEvent.step_done(2), b"T05thread:2;"),
        (StopEvent.signalled(Signal.SIGSEGV, 1), b"T0bthread:1;"),
    ],
)
def test_stop_reply_reasons(stub: GdbStub, event: StopEvent, expected: bytes) -> None:
    reply = stub.stop_reply(event)
    assert reply.startswith(expected)
    assert reply.endswith(b"%02x:%s;" % (EFLAGS, le32(0x202)))


def test_stop_reply_final(stub: GdbStub) -> None:
    assert stub.stop_reply(StopEvent.exited(3)) == b"W03"
    assert one(stub, b"?") == b"W03"
    assert stub.stop_reply(StopEvent.terminated(Signal.SIGSEGV)) == b"X0b"
    # Nothing can be resumed after the end: c answers with the final stop again.
    assert stub.handle_packet(b"c").packets == [b"X0b"]


def test_swbreak_reason_only_when_gdb_announced_it(target: FakeTarget) -> None:
    stub = GdbStub(target)
    stub.handle_packet(b"qSupported:multiprocess+")
    assert stub.stop_reply(StopEvent.swbreak(1)).startswith(b"T05thread:1;04:")


def test_stop_reply_expedites_from_the_stopped_thread(stub: GdbStub) -> None:
    reply = stub.stop_reply(StopEvent.step_done(2))
    assert b"%02x:%s;" % (EIP, le32(0x10F0)) in reply
    # and "any thread" now means thread 2
    assert one(stub, b"qC") == b"QC2"


def test_stop_reply_survives_a_failing_register_read(stub: GdbStub, target: FakeTarget, caplog) -> None:
    target.explode.add("read_register")
    with caplog.at_level(logging.ERROR):
        assert stub.stop_reply(StopEvent.swbreak(1)) == b"T05thread:1;swbreak:;"
    assert "expedited" in caplog.text


def test_stop_event_validation() -> None:
    with pytest.raises(ValueError):
        StopEvent(StopReplyKind.WATCH)
    with pytest.raises(ValueError):
        StopEvent(StopReplyKind.EXITED)
    assert StopEvent.exited(0).is_final and not StopEvent.swbreak().is_final


# ---- registers -----------------------------------------------------------------------------


def test_g_returns_the_whole_block(stub: GdbStub, target: FakeTarget) -> None:
    reply = one(stub, b"g")
    assert len(reply) == 2 * I386_LAYOUT.g_size == 520
    values = I386_LAYOUT.decode_registers(bytes.fromhex(reply.decode()))
    assert values["eip"] == 0xFF0 and values["eax"] == 0x1234 and values["fctrl"] == 0x37F
    assert values["st0"] == int.from_bytes(bytes(range(10)), "little")


def test_G_round_trip(stub: GdbStub, target: FakeTarget) -> None:
    block = I386_LAYOUT.encode_registers({"eax": 0xDEADBEEF, "eip": 0x2000, "efer": 0x800})
    assert one(stub, b"G" + block.hex().encode()) == b"OK"
    assert target.regs[1]["eax"] == 0xDEADBEEF and target.regs[1]["efer"] == 0x800
    assert one(stub, b"g") == block.hex().encode()


def test_G_wrong_size_is_an_error(stub: GdbStub) -> None:
    assert one(stub, b"G0011") == b"E16"


def test_p_and_P(stub: GdbStub, target: FakeTarget) -> None:
    assert one(stub, b"p8") == le32(0xFF0)
    assert one(stub, b"P0=78563412") == b"OK"
    assert target.regs[1]["eax"] == 0x12345678
    efer = I386_LAYOUT.regnum("efer")
    assert one(stub, b"P%x=0008000000000000" % efer) == b"OK"
    assert one(stub, b"p%x" % efer) == b"0008000000000000"
    assert one(stub, b"p%x" % I386_LAYOUT.regnum("gdtr_limit")) == b"0000"


def test_p_unavailable_register_is_xx(stub: GdbStub) -> None:
    assert one(stub, b"p%x" % I386_LAYOUT.regnum("dr7")) == b"xxxxxxxx"


@pytest.mark.parametrize(
    ("packet", "reply"),
    [
        (b"p35", b"E01"),  # no register 0x35
        (b"P35=00000000", b"E01"),
        (b"P0=0011", b"E16"),  # eax is 4 bytes
        (b"Pa=08000000", b"E01"),  # the target refuses cs
    ],
)
def test_register_errors(stub: GdbStub, packet: bytes, reply: bytes) -> None:
    assert one(stub, packet) == reply


def test_Hg_selects_the_thread_for_registers(stub: GdbStub) -> None:
    assert one(stub, b"Hg2") == b"OK"
    assert one(stub, b"p8") == le32(0x10F0)
    assert one(stub, b"Hg0") == b"OK"
    assert one(stub, b"p8") == le32(0xFF0)
    assert one(stub, b"Hg7") == b"E01"


# ---- memory ---------------------------------------------------------------------------------


def test_m_reads(stub: GdbStub) -> None:
    assert one(stub, b"m1000,4") == b"a0a1a2a3"
    assert one(stub, b"mfffe,4") == b"0000"  # short read at the end of memory
    assert one(stub, b"m20000,4") == b"E0e"  # unmapped: EFAULT


def test_m_is_capped_to_the_packet_size(stub: GdbStub) -> None:
    assert len(one(stub, b"m0,ffff")) <= PACKET_SIZE


def test_M_and_X_write(stub: GdbStub, target: FakeTarget) -> None:
    assert one(stub, b"M2000,3:010203") == b"OK"
    assert target.mem[0x2000:0x2003] == b"\x01\x02\x03"
    assert one(stub, b"X2004,4:\x00#$}") == b"OK"  # the framer has unescaped it already
    assert target.mem[0x2004:0x2008] == b"\x00#$}"
    assert one(stub, b"X2000,0:") == b"OK"  # gdb's probe for X
    assert one(stub, b"M20000,1:00") == b"E0e"


# ---- breakpoints ---------------------------------------------------------------------------


def test_breakpoints_are_recorded_and_removed(stub: GdbStub, target: FakeTarget) -> None:
    assert one(stub, b"Z0,1000,1") == b"OK"
    assert one(stub, b"Z1,1004,1") == b"OK"
    assert one(stub, b"Z2,3000,4") == b"OK"
    assert target.sw.addrs == {0x1000} and target.hw.addrs == {0x1004}
    assert target.watch.points == {(WatchKind.WRITE, 0x3000, 4)}
    assert stub.inserted_points == {(0, 0x1000, 1), (1, 0x1004, 1), (2, 0x3000, 4)}
    assert one(stub, b"z0,1000,1") == b"OK"
    assert one(stub, b"z2,3000,4") == b"OK"
    assert target.sw.addrs == set() and target.watch.points == set()
    assert stub.inserted_points == {(1, 0x1004, 1)}


def test_breakpoint_with_conditions_is_inserted(stub: GdbStub, target: FakeTarget) -> None:
    assert one(stub, b"Z0,1000,1;X2,2201cmds:1,X1,27") == b"OK"
    assert target.sw.addrs == {0x1000}


def test_breakpoint_target_error(stub: GdbStub) -> None:
    assert one(stub, b"Z0,20000,1") == b"E0e"
    assert stub.inserted_points == frozenset()


def test_unsupported_breakpoints_get_the_empty_reply() -> None:
    stub = GdbStub(FakeTarget(features=()))
    for packet in (b"Z0,1000,1", b"Z1,1000,1", b"Z2,1000,4", b"z3,1000,4"):
        assert one(stub, packet) == b""


def test_detach_removes_every_point_and_releases_the_target(stub: GdbStub, target: FakeTarget) -> None:
    for packet in (b"Z0,1000,1", b"Z1,1004,1", b"Z4,3000,2"):
        one(stub, packet)
    reply = stub.handle_packet(b"D")
    assert reply.packets == [b"OK"] and reply.action is Action.DETACH
    assert not target.sw.addrs and not target.hw.addrs and not target.watch.points
    assert target.detached == 1 and stub.inserted_points == frozenset()


def test_connection_lost_removes_every_point(stub: GdbStub, target: FakeTarget) -> None:
    one(stub, b"Z0,1000,1")
    stub.connection_lost()
    assert not target.sw.addrs and target.detached == 1


# ---- resume ---------------------------------------------------------------------------------


def test_c_resumes_every_thread(stub: GdbStub, target: FakeTarget) -> None:
    reply = stub.handle_packet(b"c")
    assert reply.packets == [] and reply.action is Action.RESUME
    assert target.resumed == [ResumeAction(1), ResumeAction(2)]


def test_c_with_address_sets_the_pc(stub: GdbStub, target: FakeTarget) -> None:
    stub.handle_packet(b"c1234")
    assert target.regs[1]["eip"] == 0x1234


def test_C_passes_the_signal(stub: GdbStub, target: FakeTarget) -> None:
    stub.handle_packet(b"C0b")
    assert target.resumed[0] == ResumeAction(1, False, 11)


def test_s_steps_only_the_current_thread(stub: GdbStub, target: FakeTarget) -> None:
    stub.handle_packet(b"Hc2")
    reply = stub.handle_packet(b"s")
    assert reply.action is Action.RESUME
    assert target.resumed == [ResumeAction(2, True)]


@pytest.mark.parametrize(
    ("packet", "resumed"),
    [
        (b"vCont;c", [ResumeAction(1), ResumeAction(2)]),
        (b"vCont;s:2;c", [ResumeAction(1), ResumeAction(2, True)]),
        (b"vCont;s:1", [ResumeAction(1, True)]),
        (b"vCont;c:1;s:1", [ResumeAction(1)]),  # the leftmost matching action wins
        (b"vCont;C05:2;t", [ResumeAction(2, False, 5)]),
        (b"vCont;S0b:1;c:2", [ResumeAction(1, True, 11), ResumeAction(2)]),
        (b"vCont;c:-1", [ResumeAction(1), ResumeAction(2)]),
        (b"vCont;r1000,1010:1", [ResumeAction(1, True)]),
    ],
)
def test_vcont_expansion(stub: GdbStub, target: FakeTarget, packet: bytes, resumed: list[ResumeAction]) -> None:
    reply = stub.handle_packet(packet)
    assert reply.action is Action.RESUME
    assert target.resumed == resumed


def test_vcont_that_resumes_nothing_is_an_error(stub: GdbStub, target: FakeTarget) -> None:
    assert one(stub, b"vCont;c:7") == b"E16"
    assert target.resumed == []


def test_vcont_query(stub: GdbStub) -> None:
    assert one(stub, b"vCont?") == b"vCont;c;C;s;S"


# ---- threads --------------------------------------------------------------------------------


def test_thread_queries(stub: GdbStub) -> None:
    assert one(stub, b"qC") == b"QC1"
    assert one(stub, b"qfThreadInfo") == b"m1,2"
    assert one(stub, b"qsThreadInfo") == b"l"
    assert one(stub, b"T2") == b"OK"
    assert one(stub, b"T3") == b"E01"
    assert one(stub, b"qThreadExtraInfo,2") == b"CPU#1 [running]".hex().encode()
    assert one(stub, b"qThreadExtraInfo,9") == b"E01"
    assert one(stub, b"qAttached") == b"1"
    assert one(stub, b"qOffsets") == b"Text=0;Data=0;Bss=0"


def test_thread_list_is_chunked() -> None:
    stub = GdbStub(FakeTarget(ncpus=3000), packet_size=256)
    ids: list[int] = []
    reply = one(stub, b"qfThreadInfo")
    while reply != b"l":
        assert reply.startswith(b"m") and len(reply) <= 256
        ids += [int(x, 16) for x in reply[1:].split(b",")]
        reply = one(stub, b"qsThreadInfo")
    assert ids == list(range(1, 3001))


# ---- qXfer ----------------------------------------------------------------------------------


def xfer_all(stub: GdbStub, obj: bytes, annex: bytes, chunk: int) -> bytes:
    data, offset = b"", 0
    while True:
        reply = one(stub, b"qXfer:%s:read:%s:%x,%x" % (obj, annex, offset, chunk))
        assert reply[:1] in (b"m", b"l") and len(reply) - 1 <= chunk
        data += reply[1:]
        offset += len(reply) - 1
        if reply[:1] == b"l":
            return data


@pytest.mark.parametrize("chunk", [0x10, 0x3FB, 0xFFFFF])
def test_qxfer_features_in_chunks(stub: GdbStub, chunk: int) -> None:
    assert xfer_all(stub, b"features", b"target.xml", chunk) == I386_LAYOUT.xml


def test_qxfer_errors(stub: GdbStub) -> None:
    assert one(stub, b"qXfer:features:read:nosuch.xml:0,100") == b"E00"
    assert one(stub, b"qXfer:threads:read:annex:0,100") == b"E00"
    assert one(stub, b"qXfer:features:read:target.xml:100000,100") == b"l"
    assert one(GdbStub(FakeTarget(features=())), b"qXfer:features:read:target.xml:0,100") == b""


def test_qxfer_threads(stub: GdbStub, target: FakeTarget) -> None:
    doc = xfer_all(stub, b"threads", b"", 0x40)
    assert doc == threads_xml(target.threads())
    assert b'<thread id="2" core="1" name="CPU#1">CPU#1 [running]</thread>' in doc


# ---- monitor --------------------------------------------------------------------------------


def test_qrcmd_output_as_O_packets(stub: GdbStub) -> None:
    reply = stub.handle_packet(b"qRcmd," + b"echo hi".hex().encode())
    assert reply.packets == [b"O" + b"hi\n".hex().encode(), b"OK"]


def test_qrcmd_long_output_is_split(stub: GdbStub) -> None:
    reply = stub.handle_packet(b"qRcmd," + b"big".hex().encode())
    assert reply.packets[-1] == b"OK" and len(reply.packets) > 2
    assert all(len(p) <= PACKET_SIZE for p in reply.packets)
    text = b"".join(bytes.fromhex(p[1:].decode()) for p in reply.packets[:-1])
    assert text == b"x" * 20000


def test_qrcmd_unsupported_and_failing(stub: GdbStub, caplog) -> None:
    assert one(GdbStub(FakeTarget(features=())), b"qRcmd,6869") == b""
    with caplog.at_level(logging.ERROR):
        assert one(stub, b"qRcmd," + b"fail".hex().encode()) == b"E05"
    assert "monitor exploded" in caplog.text


# ---- errors, misc ---------------------------------------------------------------------------


@pytest.mark.parametrize("packet", [b"mzz,4", b"m1000", b"Z9,0,1", b"vCont;x", b"qRcmd,6", b"H", b"g1", b"P8"])
def test_malformed_packets_get_E16(stub: GdbStub, packet: bytes) -> None:
    assert one(stub, packet) == b"E16"


@pytest.mark.parametrize("packet", [b"qTStatus", b"vFile:setfs:0", b"qSymbol::", b"!", b"vMustReplyEmpty", b""])
def test_unknown_packets_get_the_empty_reply(stub: GdbStub, packet: bytes) -> None:
    assert one(stub, packet) == b""


def test_target_exception_is_E05_and_logged(stub: GdbStub, target: FakeTarget, caplog) -> None:
    target.explode.add("read_registers")
    target.explode.add("read_memory")
    with caplog.at_level(logging.ERROR):
        assert one(stub, b"g") == b"E05"
        assert one(stub, b"m0,4") == b"E05"
    assert "read_registers exploded" in caplog.text


def test_no_ack_mode_and_kill(stub: GdbStub, target: FakeTarget) -> None:
    reply = stub.handle_packet(b"QStartNoAckMode")
    assert reply.packets == [b"OK"] and reply.action is Action.NO_ACK
    reply = stub.handle_packet(b"k")
    assert reply.packets == [] and reply.action is Action.KILL and target.killed
    t2 = FakeTarget()
    reply = GdbStub(t2).handle_packet(b"vKill;1")
    assert reply.packets == [b"OK"] and reply.action is Action.KILL and t2.killed


_FUZZ_TARGET = FakeTarget()
_FUZZ_STUB = GdbStub(_FUZZ_TARGET, logging.getLogger("fuzz"))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([n for n, _ in cmds.PACKETS] + [b""]), st.binary(max_size=48))
def test_stub_never_raises(name: bytes, rest: bytes) -> None:
    """Whatever arrives, the stub answers with a list of byte payloads (and never a traceback)."""
    logging.getLogger("fuzz").disabled = True
    if name in (b"k", b"vKill", b"D"):
        _FUZZ_TARGET.killed = False
    reply = _FUZZ_STUB.handle_packet(name + rest)
    assert isinstance(reply.packets, list) and all(isinstance(p, bytes) for p in reply.packets)
    assert isinstance(reply.action, Action)


def test_every_command_type_has_a_handler(stub: GdbStub) -> None:
    command_types = set(cmds.Command.__args__)  # type: ignore[attr-defined]
    assert command_types <= set(stub._handlers)


# ---- the i386 layout, checked against gdb itself ----------------------------------------------

# gdb/features/i386/32bit-core.xml (gdb 13): name, bitsize, type, in order.
GDB_32BIT_CORE = (
    [(n, 32, "int32") for n in ("eax", "ecx", "edx", "ebx")]
    + [("esp", 32, "data_ptr"), ("ebp", 32, "data_ptr"), ("esi", 32, "int32"), ("edi", 32, "int32")]
    + [("eip", 32, "code_ptr"), ("eflags", 32, "i386_eflags")]
    + [(n, 32, "int32") for n in ("cs", "ss", "ds", "es", "fs", "gs")]
    + [(f"st{i}", 80, "i387_ext") for i in range(8)]
    + [(n, 32, "int") for n in ("fctrl", "fstat", "ftag", "fiseg", "fioff", "foseg", "fooff", "fop")]
)


def test_core_feature_matches_gdbs_file() -> None:
    core = I386_LAYOUT.feature_registers("org.gnu.gdb.i386.core")
    assert [(r.name, r.bitsize, r.type) for r in core] == GDB_32BIT_CORE
    assert [r.regnum for r in core] == list(range(32))
    assert all(r.group == "float" for r in core[24:])


def test_layout_encode_decode_round_trip() -> None:
    values = {r.name: (r.regnum * 0x01010101) & ((1 << r.bitsize) - 1) for r in I386_LAYOUT.registers}
    block = I386_LAYOUT.encode_registers(values)
    assert I386_LAYOUT.decode_registers(block) == values
    assert [I386_LAYOUT.decode_register(i, b) for i, b in enumerate(I386_LAYOUT.split_registers(block))] == list(
        values.values()
    )
    with pytest.raises(KeyError):
        I386_LAYOUT.encode_registers({"rax": 1})
    with pytest.raises(ValueError):
        I386_LAYOUT.encode_register(0, b"\x00")


def test_sse_layout_is_the_core_then_gdbs_32bit_sse_feature() -> None:
    assert [r.name for r in I386_SSE_LAYOUT.registers[:32]] == [r.name for r in I386_LAYOUT.registers[:32]]
    sse = I386_SSE_LAYOUT.feature_registers("org.gnu.gdb.i386.sse")
    # gdb/features/i386/32bit-sse.xml
    assert [(r.name, r.bitsize, r.type) for r in sse] == [(f"xmm{i}", 128, "vec128") for i in range(8)] + [
        ("mxcsr", 32, "i386_mxcsr")
    ]
    assert [r.regnum for r in sse] == list(range(32, 41))
    assert [r.name for r in I386_SSE_LAYOUT.registers[41:]] == [r.name for r in I386_LAYOUT.registers[32:]]
    assert I386_SSE_LAYOUT.g_size == I386_LAYOUT.g_size + 8 * 16 + 4
    assert b"org.gnu.gdb.i386.sse" in I386_SSE_LAYOUT.xml and b"org.gnu.gdb.i386.sse" not in I386_LAYOUT.xml


@pytest.mark.gdb
@pytest.mark.skipif(GDB is None, reason="gdb is not installed")
@pytest.mark.parametrize("layout", [I386_LAYOUT, I386_SSE_LAYOUT], ids=["x87", "sse"])
def test_gdb_accepts_the_target_description(tmp_path, layout: RegisterLayout) -> None:
    """gdb parses target.xml, accepts it for i386, and numbers/places the registers as the layout says."""
    xml = tmp_path / "target.xml"
    xml.write_bytes(layout.xml)
    out = subprocess.run(
        [GDB, "-nx", "-batch", "-ex", f"set tdesc filename {xml}", "-ex", "maint print remote-registers"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "rejected" not in out.stderr and "internal-error" not in out.stderr, out.stderr
    rows = {}
    for line in out.stdout.splitlines():
        # Name Nr Rel Offset Size Type Rmt-Nr g/G-Offset
        m = re.match(r"\s*(\S+)\s+\d+\s+\d+\s+\d+\s+(\d+)\s+\S+\s+(\d+)\s+(\d+)\s*$", line)
        if m:
            rows[m.group(1)] = (int(m.group(2)), int(m.group(3)), int(m.group(4)))
    expected = {r.name: (r.size, r.regnum, off) for r, off in zip(layout.registers, layout.offsets, strict=True)}
    assert rows == expected
    # the flags types arrived too
    more = ["-ex", "ptype $xmm0", "-ex", "ptype $mxcsr"] if layout is I386_SSE_LAYOUT else []
    types = subprocess.run(
        [GDB, "-nx", "-batch", "-ex", f"set tdesc filename {xml}", "-ex", "ptype $eflags", "-ex", "ptype $cr0", *more],
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    assert "ZF" in types and "PG" in types
    if more:
        assert "v4_float" in types and "uint128" in types and "DAZ" in types, types
