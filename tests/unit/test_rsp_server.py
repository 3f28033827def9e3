"""The GDB server over real loopback sockets (and pipes) with the fake target, then with the real gdb."""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from test_rsp_stub import FakeTarget, le32

from gdbemu.rsp.arch.i386 import EIP
from gdbemu.rsp.protocol import Ack, Event, Interrupt, Nack, Packet, PacketDecoder, encode_packet
from gdbemu.rsp.server import DEFAULT_ENDPOINT, Endpoint, GdbServer, ServeResult, parse_endpoint
from gdbemu.rsp.target import StopEvent, WatchKind

GDB = shutil.which("gdb")
TIMEOUT = 5.0


class Client:
    """A minimal gdb: sends packets, checks acks, returns reply payloads."""

    def __init__(self, address: Any, family: int = socket.AF_INET) -> None:
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(TIMEOUT)
        if family != socket.AF_UNIX:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as gdb does
        self.sock.connect(address)
        self.dec = PacketDecoder()
        self.events: list[Event] = []
        self.no_ack = False

    def raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def next_event(self) -> Event:
        while not self.events:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("server closed the connection")
            self.events += self.dec.feed(data)
        return self.events.pop(0)

    def expect_ack(self) -> None:
        if not self.no_ack:
            assert self.next_event() == Ack()

    def reply(self) -> bytes:
        ev = self.next_event()
        assert isinstance(ev, Packet), ev
        if not self.no_ack:
            self.raw(b"+")
        return ev.payload

    def send(self, payload: bytes) -> None:
        self.raw(encode_packet(payload))
        self.expect_ack()

    def request(self, payload: bytes) -> bytes:
        self.send(payload)
        return self.reply()

    def closed_by_server(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except OSError:
            return True

    def close(self) -> None:
        self.sock.close()


class Running:
    """A GdbServer running in a thread, with its result once it returns."""

    def __init__(self, server: GdbServer) -> None:
        self.server = server
        self.result: ServeResult | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.result = self.server.run()
        except BaseException as exc:  # surfaced by the fixture
            self.error = exc

    def wait(self, timeout: float = TIMEOUT) -> ServeResult:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "server did not return"
        assert self.error is None, self.error
        assert self.result is not None
        return self.result

    def connect(self) -> Client:
        return Client(self.server.address)


@pytest.fixture
def start() -> Iterator[Callable[..., Running]]:
    """``start(target, **GdbServer kwargs)`` on 127.0.0.1 with a free port; shut down after the test."""
    running: list[Running] = []

    def _start(target: FakeTarget, endpoint: Endpoint | None = None, **kwargs: Any) -> Running:
        server = GdbServer(target, endpoint or Endpoint("tcp", "127.0.0.1", 0), **kwargs)
        server.listen()
        r = Running(server)
        running.append(r)
        return r

    yield _start
    for r in running:
        r.server.shutdown()
        r.thread.join(TIMEOUT)
        assert r.error is None, r.error


def wait_until(cond: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.002)


# ---- endpoints -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "endpoint"),
    [
        ("tcp::1234", Endpoint("tcp", "127.0.0.1", 1234)),
        ("1234", Endpoint("tcp", "127.0.0.1", 1234)),
        (":4321", Endpoint("tcp", "127.0.0.1", 4321)),
        ("tcp:0.0.0.0:1234", Endpoint("tcp", "0.0.0.0", 1234)),
        ("tcp:localhost:99", Endpoint("tcp", "localhost", 99)),
        ("tcp:[::1]:1234", Endpoint("tcp", "::1", 1234)),
        ("tcp::1234,server=on,wait=off", Endpoint("tcp", "127.0.0.1", 1234)),
        ("unix:/tmp/gdb.sock", Endpoint("unix", path="/tmp/gdb.sock")),
        ("unix:/tmp/gdb.sock,server,nowait", Endpoint("unix", path="/tmp/gdb.sock")),
        ("stdio", Endpoint("stdio")),
    ],
)
def test_parse_endpoint(spec: str, endpoint: Endpoint) -> None:
    assert parse_endpoint(spec) == endpoint


@pytest.mark.parametrize("spec", ["", "tcp:", "tcp::", "tcp::abc", "tcp::70000", "unix:", "bogus", "tcp:host"])
def test_parse_endpoint_errors(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_endpoint(spec)


def test_default_endpoint_is_loopback_1234() -> None:
    assert DEFAULT_ENDPOINT == Endpoint("tcp", "127.0.0.1", 1234)
    assert not DEFAULT_ENDPOINT.uses_stdio and Endpoint("stdio").uses_stdio
    assert GdbServer(FakeTarget(), Endpoint("stdio")).uses_stdio


# ---- a session ----------------------------------------------------------------------------------


def test_session_qsupported_g_m_continue_ctrl_c(start: Callable[..., Running]) -> None:
    target = FakeTarget()
    r = start(target, wait_for_gdb=True)
    c = r.connect()
    assert b"qXfer:features:read+" in c.request(b"qSupported:swbreak+;hwbreak+")
    assert c.request(b"?").startswith(b"T05thread:1;")
    assert len(c.request(b"g")) == 520
    assert c.request(b"m1000,4") == b"a0a1a2a3"
    assert target.slices == 0  # -S: nothing ran before the first continue
    c.send(b"vCont;c")
    wait_until(lambda: target.slices > 3)
    c.raw(b"\x03")  # how fast the stop comes is measured by benchmarks/gdb_bench.py (interrupt latency)
    reply = c.reply()
    assert reply.startswith(b"T02thread:1;")
    assert target.insns > 0
    # the expedited EIP is where the guest is now
    eip = int.from_bytes(bytes.fromhex(re.search(rb"08:([0-9a-f]{8});", reply).group(1).decode()), "little")
    assert eip == target.regs[1]["eip"] != 0xFF0
    c.close()


def test_breakpoint_stop_over_the_wire(start: Callable[..., Running]) -> None:
    target = FakeTarget()
    r = start(target, wait_for_gdb=True)
    c = r.connect()
    c.request(b"qSupported:swbreak+")
    assert c.request(b"Z0,1000,1") == b"OK"
    c.send(b"c")
    reply = c.reply()
    assert reply.startswith(b"T05thread:1;swbreak:;")
    assert b"%02x:%s;" % (EIP, le32(0x1000)) in reply
    assert c.request(b"z0,1000,1") == b"OK"
    assert c.request(b"vCont;s:1") == b"T05thread:1;" + reply[len(b"T05thread:1;swbreak:;") :].replace(
        le32(0x1000), le32(0x1001)
    )


def test_watchpoint_and_exit_from_the_script(start: Callable[..., Running]) -> None:
    target = FakeTarget()
    r = start(target, wait_for_gdb=True)
    c = r.connect()
    target.script = [StopEvent.watch(WatchKind.WRITE, 0x3000, 2)]
    assert c.request(b"c").startswith(b"T05thread:2;watch:3000;")
    target.script = [StopEvent.exited(3)]
    assert c.request(b"c") == b"W03"
    assert c.closed_by_server()
    c.close()
    result = r.wait()
    assert result.reason == "exited" and result.exit_code == 3


def test_kill_ends_the_server(start: Callable[..., Running]) -> None:
    target = FakeTarget()
    r = start(target, wait_for_gdb=True)
    c = r.connect()
    assert c.request(b"vKill;1") == b"OK"
    assert c.closed_by_server()
    c.close()
    assert r.wait().reason == "killed" and target.killed


def test_k_without_reply_ends_the_server(start: Callable[..., Running]) -> None:
    target = FakeTarget()
    r = start(target, wait_for_gdb=True)
    c = r.connect()
    c.send(b"k")
    assert c.closed_by_server()
    c.close()
    assert r.wait().reason == "killed" and target.killed


# ---- connections come and go ------------------------------------------------------------------


def test_disconnect_and_reconnect(start: Callable[..., Running]) -> None:
    target = FakeTarget()
    r = start(target, wait_for_gdb=True)
    for round_ in range(4):
        c = r.connect()
        assert c.request(b"qSupported:swbreak+").startswith(b"PacketSize=")
        assert c.request(b"?").startswith(b"T05thread:1;")
        if round_ == 0:
            assert c.request(b"M2000,2:beef") == b"OK"
        assert c.request(b"m2000,2") == b"beef"  # the guest keeps its state
        assert c.request(b"Z0,f000,1") == b"OK"
        slices = target.slices
        c.close()  # dropped without a detach (gdb killed)
        wait_until(lambda n=round_ + 1: target.detached == n)
        assert target.sw.addrs == set()  # gdb's breakpoint went with it
        wait_until(lambda slices=slices: target.slices > slices)  # and the guest runs on
    assert r.server.connections == 4


def test_detach_closes_and_the_guest_runs_on(start: Callable[..., Running]) -> None:
    target = FakeTarget()
    r = start(target, wait_for_gdb=True)
    c = r.connect()
    c.request(b"Z0,f000,1")
    assert c.request(b"D") == b"OK"
    assert c.closed_by_server()
    c.close()
    assert target.detached == 1 and target.sw.addrs == set()
    wait_until(lambda: target.slices > 0)
    c2 = r.connect()  # and a new gdb can come
    assert c2.request(b"qC") == b"QC1"
    slices = target.slices
    time.sleep(0.02)
    assert target.slices == slices  # stopped for the new debugger


def test_free_running_without_wait_for_gdb(start: Callable[..., Running]) -> None:
    target = FakeTarget()
    r = start(target)
    wait_until(lambda: target.slices > 5)
    c = r.connect()
    assert c.request(b"?").startswith(b"T05thread:1;")
    slices = target.slices
    time.sleep(0.02)
    assert target.slices == slices


def test_stop_with_nobody_attached_is_kept_for_the_next_gdb(start: Callable[..., Running]) -> None:
    target = FakeTarget()
    target.script = [StopEvent.signalled(11, 2)]
    r = start(target)
    wait_until(lambda: target.slices >= 1)
    c = r.connect()
    assert c.request(b"?").startswith(b"T0bthread:2;")


def test_slices_are_tuned_to_a_few_milliseconds() -> None:
    """The tuner's rule on given slice times (wall time on a loaded machine would make this flaky)."""
    from gdbemu.rsp.server import _SliceTuner

    tuner = _SliceTuner(0.005)
    for _ in range(40):
        tuner.record(tuner.n, 0.0001, stopped=False)  # a fast "guest" gets long slices
    assert tuner.n == tuner.MAX
    tuner.record(tuner.n // 4, 0.0001, stopped=False)  # a short slice (it stopped early) says nothing
    tuner.record(tuner.n, 0.0001, stopped=True)
    assert tuner.n == tuner.MAX
    steps = 0
    while tuner.n >= 64:
        tuner.record(tuner.n, 0.05, stopped=False)  # slow slices halve N
        steps += 1
    assert steps == 15  # 2**20 -> 2**5, one halving per slow slice
    for _ in range(40):
        tuner.record(tuner.n, 1.0, stopped=False)
    assert tuner.n == tuner.MIN
    tuner.record(tuner.n, 0.005, stopped=False)  # within a factor of two of the aim: kept
    assert tuner.n == tuner.MIN


# ---- malformed input, errors ----------------------------------------------------------------------


def test_malformed_input_never_kills_the_session(start: Callable[..., Running], caplog) -> None:
    target = FakeTarget()
    r = start(target, wait_for_gdb=True)
    c = r.connect()
    with caplog.at_level(logging.WARNING, logger="gdbemu.rsp"):
        c.raw(b"$g#00")  # bad checksum: nack, and we resend
        assert c.next_event() == Nack()
        assert c.request(b"mzz,4") == b"E16"  # malformed: E16
        c.raw(b"garbage\r\n")  # noise between packets
        assert c.request(b"qTStatus") == b""  # unknown: empty
        c.raw(b"$m10$qC#b4")  # cut short: dropped, the next one is fine
        c.expect_ack()
        assert c.reply() == b"QC1"
        c.raw(b"\x03")  # Ctrl-C while stopped: ignored
        assert c.request(b"m1000,2") == b"a0a1"
    assert "bad packet" in caplog.text
    assert "malformed packet" in caplog.text


def test_server_retransmits_on_nack(start: Callable[..., Running]) -> None:
    target = FakeTarget()
    r = start(target, wait_for_gdb=True)
    c = r.connect()
    c.send(b"m1000,2")
    first = c.next_event()
    c.raw(b"-")
    again = c.next_event()
    assert first == again == Packet(b"a0a1")
    c.raw(b"+")


def test_target_exception_is_an_error_reply(start: Callable[..., Running], caplog) -> None:
    target = FakeTarget()
    target.explode.add("read_registers")
    r = start(target, wait_for_gdb=True)
    c = r.connect()
    with caplog.at_level(logging.ERROR, logger="gdbemu.rsp"):
        assert c.request(b"g") == b"E05"
    assert "read_registers exploded" in caplog.text
    assert c.request(b"m1000,1") == b"a0"


def test_run_slice_exception_is_a_sigabrt_stop(start: Callable[..., Running], caplog) -> None:
    target = FakeTarget()
    r = start(target, wait_for_gdb=True)
    c = r.connect()
    target.explode.add("run_slice")
    with caplog.at_level(logging.ERROR, logger="gdbemu.rsp"):
        assert c.request(b"c").startswith(b"T06")
    assert "run_slice exploded" in caplog.text
    target.explode.clear()
    assert c.request(b"m1000,1") == b"a0"


def test_no_ack_mode(start: Callable[..., Running]) -> None:
    target = FakeTarget()
    r = start(target, wait_for_gdb=True)
    c = r.connect()
    assert c.request(b"QStartNoAckMode") == b"OK"
    c.no_ack = True
    c.raw(encode_packet(b"m1000,2"))
    assert c.next_event() == Packet(b"a0a1")  # no '+' before it
    assert c.request(b"qC") == b"QC1"


def test_packets_sent_while_running_wait_for_the_stop(start: Callable[..., Running]) -> None:
    target = FakeTarget()
    target.script = [StopEvent.swbreak(1)]
    r = start(target, wait_for_gdb=True)
    c = r.connect()
    c.raw(encode_packet(b"c") + encode_packet(b"qC"))
    c.expect_ack()
    c.expect_ack()
    assert c.reply().startswith(b"T05thread:1;")
    assert c.reply() == b"QC1"


def test_interrupt_event_is_parsed_mid_stream(start: Callable[..., Running]) -> None:
    target = FakeTarget()
    r = start(target, wait_for_gdb=True)
    c = r.connect()
    c.raw(encode_packet(b"c") + b"\x03")
    c.expect_ack()
    assert c.reply().startswith(b"T02")
    assert ("interrupt",) in target.calls
    assert Interrupt() not in c.events


# ---- other transports ---------------------------------------------------------------------------


def test_unix_socket(start: Callable[..., Running], tmp_path) -> None:
    path = str(tmp_path / "gdb.sock")
    target = FakeTarget()
    r = start(target, Endpoint("unix", path=path), wait_for_gdb=True)
    assert r.server.address == path
    c = Client(path, socket.AF_UNIX)
    assert c.request(b"qC") == b"QC1"
    c.close()
    wait_until(lambda: target.detached == 1)
    c = Client(path, socket.AF_UNIX)
    assert c.request(b"m1000,1") == b"a0"
    assert c.request(b"vKill;1") == b"OK"
    c.close()
    assert r.wait().reason == "killed"
    assert not os.path.exists(path)


def test_stdio_transport_over_pipes() -> None:
    to_server_r, to_server_w = os.pipe()
    from_server_r, from_server_w = os.pipe()
    target = FakeTarget()
    server = GdbServer(target, Endpoint("stdio"), stdio_fds=(to_server_r, from_server_w))
    r = Running(server)
    dec = PacketDecoder()
    events: list[Event] = []

    def request(payload: bytes) -> bytes:
        os.write(to_server_w, encode_packet(payload))
        while not any(isinstance(e, Packet) for e in events):
            events.extend(dec.feed(os.read(from_server_r, 65536)))
        assert events.pop(0) == Ack()
        reply = events.pop(0)
        assert isinstance(reply, Packet)
        os.write(to_server_w, b"+")
        return reply.payload

    try:
        assert request(b"qC") == b"QC1"
        assert target.slices == 0  # stdio: gdb is there from the start, the guest waits for it
        assert request(b"m1000,2") == b"a0a1"
        os.close(to_server_w)  # gdb went away
        assert r.wait().reason == "disconnected"
        assert target.detached == 1
    finally:
        for fd in (to_server_r, from_server_r, from_server_w):
            os.close(fd)


def test_listen_error_is_raised_early() -> None:
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    try:
        server = GdbServer(FakeTarget(), Endpoint("tcp", "127.0.0.1", blocker.getsockname()[1]))
        with pytest.raises(OSError) as info:
            server.listen()
        assert info.value.errno == errno.EADDRINUSE
    finally:
        blocker.close()


# ---- the real gdb ---------------------------------------------------------------------------------

needs_gdb = pytest.mark.skipif(GDB is None, reason="gdb is not installed")


def run_gdb(port: int, *commands: str, timeout: float = 30) -> str:
    argv = [GDB or "gdb", "-nx", "-batch", "-ex", "set confirm off", "-ex", f"target remote 127.0.0.1:{port}"]
    for cmd in commands:
        argv += ["-ex", cmd]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    return out.stdout + out.stderr


@pytest.mark.gdb
@needs_gdb
def test_real_gdb_session(start: Callable[..., Running]) -> None:
    """gdb 13 connects, reads target.xml and registers, examines memory, stops at a breakpoint, detaches."""
    target = FakeTarget()
    r = start(target, wait_for_gdb=True)
    port = r.server.address[1]  # type: ignore[index]
    out = run_gdb(
        port,
        "show architecture",
        "info registers",
        "x/4xw 0x1000",
        "x/2xb 0x100f",
        "set {int}0x2000 = 0x11223344",
        "x/1xw 0x2000",
        "p $cr0",
        "p/x $efer",
        "monitor echo hello from the monitor",
        "info threads",
        "break *0x1000",
        "continue",
        "info registers eip",
        "stepi",
        "p/x $pc",
        "detach",
    )
    assert "i386" in out
    assert re.search(r"eax\s+0x1234\s+4660", out), out
    assert re.search(r"eip\s+0xff0\s+0xff0", out), out
    assert re.search(r"eflags\s+0x202\s+\[ IF \]", out), out
    assert re.search(r"cr0\s+0x11\s+\[ PE ET \]", out), out  # the system feature, with its flags type
    assert "0x1000:\t0xa3a2a1a0\t0xa7a6a5a4\t0xabaaa9a8\t0xafaeadac" in out, out
    assert target.mem[0x2000:0x2004] == bytes.fromhex("44332211")
    assert "0x2000:\t0x11223344" in out
    assert "hello from the monitor" in out
    assert re.search(r"Thread 1 .*CPU#0", out) and re.search(r"Thread 2 .*CPU#1", out), out
    assert "Breakpoint 1, 0x00001000 in ?? ()" in out, out
    assert re.search(r"eip\s+0x1000\s+0x1000", out), out
    assert "$3 = 0x1001" in out, out  # stepi stepped one "instruction"
    assert "detached" in out.lower(), out
    assert "Remote communication error" not in out and "Remote failure" not in out, out
    wait_until(lambda: target.detached == 1)
    assert target.sw.addrs == set()  # gdb removed its breakpoint (or the stub did)
    # The server is still there for the next gdb.
    out2 = run_gdb(port, "p/x $eip", "detach")
    assert re.search(r"\$1 = 0x[0-9a-f]+", out2), out2
    assert r.server.connections == 2


@pytest.mark.gdb
@needs_gdb
def test_real_gdb_ctrl_c_through_pygdbmi(start: Callable[..., Running]) -> None:
    """gdb's interrupt (0x03 on the wire) stops a running guest with SIGINT (gdb in async MI mode, driven
    by gdbemu.testing's session: gdb keeps reading commands while the target runs)."""
    pytest.importorskip("pygdbmi")
    from gdbemu.testing import Session

    target = FakeTarget()
    r = start(target, wait_for_gdb=True)
    port = r.server.address[1]  # type: ignore[index]
    with Session.connect(f"127.0.0.1:{port}", gdb=GDB) as s:  # the demo kernel's symbols: unused here
        s.cont_nowait()
        wait_until(lambda: target.slices > 3)
        stopped = s.interrupt(timeout=10)
        assert stopped.signal == "SIGINT", stopped.raw
        s.detach()
    wait_until(lambda: target.detached == 1)
