"""The GDB server: the only RSP module that touches sockets, pipes and the clock.

Use from the ``gdbemu`` command::

    from gdbemu.rsp.server import GdbServer, parse_endpoint, DEFAULT_ENDPOINT

    endpoint = DEFAULT_ENDPOINT if args.s else parse_endpoint(args.gdb)   # -s / -gdb SPEC
    if endpoint.uses_stdio:
        ...  # stdout carries packets: send the guest console to stderr (or a file)
    server = GdbServer(target, endpoint, wait_for_gdb=args.S, log=logging.getLogger("gdbemu.gdb"))
    server.listen()                          # bind now, so errors (port in use) come early
    result = server.run()                    # returns when the guest exits or gdb kills it
    # result.reason: "exited" (result.event.exit_code), "terminated", "killed", "disconnected", "shutdown"

Endpoints (QEMU's ``-gdb`` spellings): ``tcp::PORT`` and ``PORT`` listen on
127.0.0.1 (QEMU would listen on every interface; gdbemu exposes a debugger
port only where asked: ``tcp:0.0.0.0:PORT``), ``tcp:HOST:PORT``,
``unix:PATH``, ``stdio`` (``target remote | gdbemu -gdb stdio ...``).  QEMU
chardev options after a comma (``,server=on,wait=off``) are accepted and
ignored.

Theory of operation
-------------------
One thread, one loop.  The guest advances only in
``target.run_slice(N)``; between slices the loop polls its sockets with a
zero timeout, so a Ctrl-C (``0x03``) is seen at most one slice late.  N is
retuned after every slice so that a slice lasts about ``slice_seconds``
(2 ms by default): a fast guest gets long slices, a slow one short slices.
When the target is stopped the loop blocks in ``select`` instead.

States::

                     connect               c / s / C / S / vCont
      free-running ───────────▶ stopped ─────────────────────────▶ running
           ▲                     ▲   ▲                                │
           │                     │   └─────────── stop reply ─────────┘
           │                     └── start with wait_for_gdb (-S), or stdio
           └── start (default); detach or dropped connection, from any state

* Free-running: no gdb; the guest runs.  A connection stops it (the ``?``
  reply is then a plain SIGTRAP stop, as QEMU does).
* A stop while nobody is connected (a guest fault the target reports as a
  signal) is kept and reported to the next gdb's ``?``.
* Detach, a dropped socket or a killed gdb: the stub removes gdb's
  breakpoints, calls ``target.detach()``, and the guest runs on; the guest
  keeps its state and the server accepts the next connection, any number of
  times (one at a time; others wait in the listen backlog).
* The guest exiting (``W``/``X``, with or without gdb attached) or
  ``kill`` ends ``run()``: there is nothing left to debug.  With ``stdio``,
  the end of stdin (or a detach) ends it too.
* ``on_slice`` (optional) runs after every slice, free-running or not: the
  place for the CLI to copy guest console output to the terminal.

Errors never reach gdb as tracebacks: malformed packets are nacked or
answered ``E16`` by the layers below; an exception escaping
``target.run_slice`` is logged and reported as a SIGABRT stop so gdb regains
control of a consistent (stopped) guest.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import select
import socket
import stat
import time
from collections.abc import Callable
from typing import Literal, Protocol

from .protocol import BadPacket, Connection, Interrupt, Nack, Packet
from .stub import PACKET_SIZE, Action, GdbStub
from .target import Signal, StopEvent, StopReplyKind, Target

__all__ = [
    "DEFAULT_ENDPOINT",
    "DEFAULT_PORT",
    "Endpoint",
    "GdbServer",
    "ServeResult",
    "parse_endpoint",
    "serve",
]

DEFAULT_PORT = 1234
LOOPBACK = "127.0.0.1"


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """Where the server listens: ``tcp`` (host, port), ``unix`` (path) or ``stdio``."""

    kind: Literal["tcp", "unix", "stdio"]
    host: str = LOOPBACK
    port: int = DEFAULT_PORT
    path: str = ""

    @property
    def uses_stdio(self) -> bool:
        """True when gdb's packets travel on stdin/stdout: nothing else may write to stdout."""
        return self.kind == "stdio"

    def __str__(self) -> str:
        if self.kind == "tcp":
            return f"tcp:{self.host}:{self.port}"
        if self.kind == "unix":
            return f"unix:{self.path}"
        return "stdio"


DEFAULT_ENDPOINT = Endpoint("tcp", LOOPBACK, DEFAULT_PORT)  # -s


# QEMU chardev backends a gdb stub cannot listen on (udp::1234 would otherwise parse as host "udp:").
_OTHER_CHARDEVS = frozenset(
    ("udp", "telnet", "websocket", "pty", "file", "pipe", "serial", "tty", "parport", "vc", "null", "mon", "chardev")
)


def parse_endpoint(spec: str) -> Endpoint:
    """A ``-gdb`` argument to an Endpoint; ValueError with a one-line reason if it is not one."""
    text = spec.strip().split(",", 1)[0]  # QEMU chardev options (",server=on,wait=off") do not matter here
    if text == "stdio":
        return Endpoint("stdio")
    if text.startswith("unix:"):
        path = text[5:]
        if not path:
            raise ValueError(f"-gdb {spec!r}: unix socket path missing")
        return Endpoint("unix", path=path)
    if text.startswith("tcp:"):
        text = text[4:]
    else:
        backend = text.split(":", 1)[0]
        if backend in _OTHER_CHARDEVS:
            # QEMU's other character backends: a gdb connection needs a stream socket or stdio.
            raise ValueError(f"-gdb {spec!r}: the GDB stub listens on tcp::PORT, tcp:HOST:PORT, unix:PATH or stdio")
    if text.isdigit():  # "1234"
        host, port_text = "", text
    else:
        if text.startswith("["):  # [::1]:1234
            host, _, rest = text[1:].partition("]")
            port_text = rest[1:] if rest.startswith(":") else ""
        else:
            host, colon, port_text = text.rpartition(":")
            if not colon:
                raise ValueError(f"-gdb {spec!r}: expected tcp::PORT, tcp:HOST:PORT, unix:PATH or stdio")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"-gdb {spec!r}: bad port {port_text!r}")
    return Endpoint("tcp", host or LOOPBACK, int(port_text))


@dataclasses.dataclass(frozen=True)
class ServeResult:
    """Why ``run()`` returned.  ``event`` is the final stop for "exited"/"terminated"."""

    reason: Literal["exited", "terminated", "killed", "disconnected", "shutdown"]
    event: StopEvent | None = None

    @property
    def exit_code(self) -> int | None:
        return self.event.exit_code if self.event is not None else None


# ---- transports ---------------------------------------------------------------------


_LINGER = 0.25  # seconds a closing connection waits for gdb's last ack


class _Transport(Protocol):
    def fileno(self) -> int: ...

    def recv(self) -> bytes: ...

    def send(self, data: bytes) -> None: ...

    def close(self, graceful: bool = False) -> None: ...


class _SocketTransport:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        sock.setblocking(True)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # packets are tiny and latency-bound

    def fileno(self) -> int:
        return self.sock.fileno()

    def recv(self) -> bytes:
        return self.sock.recv(65536)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self, graceful: bool = False) -> None:
        """Close; ``graceful`` first lets gdb read our last reply and send its ack.

        Closing a socket with unread input makes Linux send a reset, which can
        destroy the reply gdb has not read yet (the ``OK`` to ``D``/``vKill``).
        So: send our FIN, read until gdb closes too (its ack arrives meanwhile),
        at most ``_LINGER`` seconds.
        """
        if graceful:
            try:
                self.sock.shutdown(socket.SHUT_WR)
                self.sock.settimeout(_LINGER)
                deadline = time.monotonic() + _LINGER
                while time.monotonic() < deadline and self.sock.recv(4096):
                    pass
            except OSError:
                pass
        self.sock.close()


class _PipeTransport:
    """gdb on the other end of a pair of file descriptors (stdin/stdout for ``-gdb stdio``)."""

    def __init__(self, in_fd: int, out_fd: int) -> None:
        self.in_fd, self.out_fd = in_fd, out_fd

    def fileno(self) -> int:
        return self.in_fd

    def recv(self) -> bytes:
        return os.read(self.in_fd, 65536)

    def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self.out_fd, view)
            view = view[n:]

    def close(self, graceful: bool = False) -> None:  # the descriptors belong to the process, not to us
        pass


# ---- slice tuning ---------------------------------------------------------------------


class _SliceTuner:
    """Chooses N for ``run_slice(N)`` so that one slice takes about ``seconds``."""

    MIN, MAX = 16, 1 << 20

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.n = 1024

    def record(self, n: int, elapsed: float, stopped: bool) -> None:
        if elapsed > 2 * self.seconds:
            self.n = max(self.MIN, self.n // 2)
        elif elapsed < self.seconds / 2 and not stopped and n >= self.n:
            self.n = min(self.MAX, self.n * 2)


# ---- the server -----------------------------------------------------------------------


def _unix_socket_alive(path: str) -> bool:
    """Whether a process listens on the unix socket at ``path`` (a stale one refuses the connection).

    Only a refusal (or the path gone) says stale: a timeout or a full backlog is someone's live socket.
    """
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except OSError:
        return True
    finally:
        probe.close()
    return True


class GdbServer:
    """Serves one target to gdb, one connection at a time, until the guest ends (see the module docstring).

    ``on_slice`` is called after every ``run_slice`` (e.g. to copy the guest
    console to the terminal).  ``on_resume(seconds)`` is called when the
    target starts running again after a stop, with the wall-clock seconds it
    was held (by gdb, or waiting for gdb): a paced clock must not make them up;
    ``on_stop()`` when it stops (a display shows the final state).
    ``stdio_fds`` replaces stdin/stdout for the ``stdio`` endpoint (tests use a pair of pipes).
    """

    def __init__(
        self,
        target: Target,
        endpoint: Endpoint = DEFAULT_ENDPOINT,
        wait_for_gdb: bool = False,
        log: logging.Logger | None = None,
        *,
        slice_seconds: float = 0.002,
        rle: bool = True,
        on_slice: Callable[[], None] | None = None,
        on_resume: Callable[[float], None] | None = None,
        on_stop: Callable[[], None] | None = None,
        stdio_fds: tuple[int, int] = (0, 1),
    ) -> None:
        self.target = target
        self.endpoint = endpoint
        self.wait_for_gdb = wait_for_gdb
        self.log = log or logging.getLogger("gdbemu.rsp")
        self.stub = GdbStub(target, self.log, PACKET_SIZE)
        self.rle = rle
        self.on_slice = on_slice
        self.on_resume = on_resume
        self.on_stop = on_stop
        self.stopped_seconds = 0.0  # wall time the target spent held (not running), in total
        self._stopped_since: float | None = time.monotonic()
        self.stdio_fds = stdio_fds
        self.tuner = _SliceTuner(slice_seconds)
        self.connections = 0  # accepted so far (tests and stats)
        self._listener: socket.socket | None = None
        self._unix_inode = -1  # the inode of the unix socket we bound (unlinked on close only if still ours)
        self._client: _Transport | None = None
        self._conn: Connection | None = None
        self._is_running = False  # the target executes (free-running or for gdb); see _running
        self._pending: list[bytes] = []  # packets that arrived while running (all-stop: handled after the stop)
        self._result: ServeResult | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._shutdown = False

    @property
    def _running(self) -> bool:
        return self._is_running

    @_running.setter
    def _running(self, value: bool) -> None:
        """Every start and stop of the target goes through here: the held time is counted."""
        if value == self._is_running:
            return
        self._is_running = value
        now = time.monotonic()
        if not value:
            self._stopped_since = now
            if self.on_stop is not None:
                self.on_stop()
            return
        held = now - self._stopped_since if self._stopped_since is not None else 0.0
        self._stopped_since = None
        self.stopped_seconds += held
        if self.on_resume is not None:
            self.on_resume(held)

    # ---- public ------------------------------------------------------------------------
    @property
    def uses_stdio(self) -> bool:
        """True when stdout carries packets (the CLI must send the guest console elsewhere)."""
        return self.endpoint.uses_stdio

    @property
    def address(self) -> tuple[str, int] | str | None:
        """The bound address: (host, port) for TCP (the real port when 0 was asked), the path for unix."""
        if self._listener is None:
            return None
        addr = self._listener.getsockname()
        return (addr[0], addr[1]) if isinstance(addr, tuple) else str(addr)

    def listen(self) -> None:
        """Bind and listen (idempotent); OSError if the address is taken."""
        if self._listener is not None or self.endpoint.kind == "stdio":
            return
        ep = self.endpoint
        if ep.kind == "unix":
            try:
                if stat.S_ISSOCK(os.stat(ep.path).st_mode):
                    if _unix_socket_alive(ep.path):
                        raise OSError(errno.EADDRINUSE, "a live socket of another process is there")
                    os.unlink(ep.path)  # a stale socket from a previous run: nobody accepts on it
            except FileNotFoundError:
                pass
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(ep.path)
            self._unix_inode = os.stat(ep.path).st_ino
        else:
            family = socket.AF_INET6 if ":" in ep.host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((ep.host, ep.port))
        sock.listen(4)
        sock.setblocking(False)
        self._listener = sock
        self.log.info("gdb server listening on %s", self._describe_address())

    def shutdown(self) -> None:
        """Make ``run()`` return ("shutdown") at its next poll; safe from another thread or a signal handler."""
        self._shutdown = True
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def run(self) -> ServeResult:
        """Serve until the guest exits, gdb kills it, stdin ends (stdio) or ``shutdown()``."""
        self.listen()
        if self.endpoint.kind == "stdio":
            self._attach(_PipeTransport(*self.stdio_fds))
        else:
            self._running = not self.wait_for_gdb
        try:
            while self._result is None:
                if self._shutdown:
                    self._result = ServeResult("shutdown")
                    break
                self._poll(block=not self._running)
                if self._running and self._result is None and not self._shutdown:
                    self._run_slice()
            assert self._result is not None
            return self._result
        finally:
            self._close()

    # ---- the loop --------------------------------------------------------------------
    def _poll(self, block: bool) -> None:
        rlist: list[socket.socket | _Transport] = [self._wake_r]
        if self._client is not None:
            rlist.append(self._client)
        elif self._listener is not None:
            rlist.append(self._listener)
        ready, _, _ = select.select(rlist, [], [], None if block else 0)
        for r in ready:
            if r is self._wake_r:
                self._wake_r.recv(64)
            elif r is self._listener:
                self._accept()
            elif r is self._client:
                self._read_client()

    def _run_slice(self) -> None:
        n = self.tuner.n
        t0 = time.perf_counter()
        try:
            event = self.target.run_slice(n)
        except Exception:
            self.log.exception("the target failed while running; reporting SIGABRT")
            event = StopEvent.signalled(Signal.SIGABRT)
        self.tuner.record(n, time.perf_counter() - t0, event is not None)
        if self.on_slice is not None:
            self.on_slice()
        if event is not None:
            self._on_stop(event)

    def _on_stop(self, event: StopEvent) -> None:
        self._running = False
        payload = self.stub.stop_reply(event)
        if self._conn is not None:
            self.log.debug("stop: %r", event)
            self._send(payload)
        else:
            self.log.info("guest stopped with nobody attached: %r (kept for the next gdb)", event)
        if event.is_final:
            self._result = ServeResult("exited" if event.reason is StopReplyKind.EXITED else "terminated", event)
            return
        pending, self._pending = self._pending, []
        for i, packet in enumerate(pending):
            self._dispatch(packet)
            if self._client is None:
                break
            if self._running:  # resumed again: the rest waits for the next stop
                self._pending = pending[i + 1 :] + self._pending
                break

    # ---- connections --------------------------------------------------------------------
    def _accept(self) -> None:
        assert self._listener is not None
        try:
            sock, peer = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        self.log.info("gdb connected from %s", peer or "a unix socket")
        self._attach(_SocketTransport(sock))

    def _attach(self, transport: _Transport) -> None:
        self._client = transport
        self._conn = Connection(rle=self.rle)
        self._pending = []
        self.connections += 1
        self.stub.new_session()
        if self._running:  # a running guest stops for the new debugger (QEMU does the same)
            self._running = False
            self.stub.last_stop = StopEvent.step_done(None)

    def _drop_client(self, why: str) -> None:
        """The connection is gone without a detach: clean up gdb's leftovers and let the guest run."""
        self.log.info("gdb connection closed (%s)", why)
        self._close_client()
        self.stub.connection_lost()
        if self.endpoint.kind == "stdio":
            self._result = ServeResult("disconnected")
        elif self.stub.last_stop is None or not self.stub.last_stop.is_final:
            self._running = True

    def _close_client(self, graceful: bool = False) -> None:
        if self._client is not None:
            try:
                self._client.close(graceful)
            except OSError:
                pass
        self._client = None
        self._conn = None
        self._pending = []

    def _read_client(self) -> None:
        assert self._client is not None and self._conn is not None
        try:
            data = self._client.recv()
        except OSError as exc:
            self._drop_client(f"read error: {exc}")
            return
        if not data:
            self._drop_client("end of stream")
            return
        conn = self._conn
        for event in conn.receive_data(data):
            if isinstance(event, Packet):
                self.log.debug("<- %r", event.payload[:200])
                if self._running:
                    self._pending.append(event.payload)
                else:
                    self._dispatch(event.payload)
                if self._conn is not conn:  # detached or killed by that packet
                    return
            elif isinstance(event, Interrupt):
                if self._running:
                    self.log.debug("<- Ctrl-C")
                    self.stub.interrupt()
                else:
                    self.log.debug("<- Ctrl-C while stopped (ignored)")
            elif isinstance(event, BadPacket):
                self.log.warning("bad packet from gdb: %s (%r)", event.reason, event.raw[:64])
            elif isinstance(event, Nack):
                self.log.debug("<- nack: retransmitting")
        self._flush()

    def _dispatch(self, payload: bytes) -> None:
        reply = self.stub.handle_packet(payload)
        for packet in reply.packets:
            self._send(packet, flush=False)
        action = reply.action
        if action is Action.NO_ACK and self._conn is not None:
            self._conn.enter_no_ack_mode()
        self._flush()
        if action is Action.RESUME:
            self._running = True
        elif action is Action.DETACH:
            self.log.info("gdb detached; the guest runs on")
            self._close_client(graceful=True)
            if self.endpoint.kind == "stdio":
                self._result = ServeResult("disconnected")
            else:
                self._running = True
        elif action is Action.KILL:
            self.log.info("gdb killed the guest")
            self._close_client(graceful=True)
            self._result = ServeResult("killed")

    # ---- output -------------------------------------------------------------------------
    def _send(self, payload: bytes, flush: bool = True) -> None:
        if self._conn is None:
            return
        self.log.debug("-> %r", payload[:200])
        self._conn.send_packet(payload)
        if flush:
            self._flush()

    def _flush(self) -> None:
        if self._conn is None or self._client is None:
            return
        data = self._conn.data_to_send()
        if not data:
            return
        try:
            self._client.send(data)
        except OSError as exc:
            self._drop_client(f"write error: {exc}")

    def _close(self) -> None:
        if self._client is not None:
            self._flush()
            # After W/X let gdb read the reply; on shutdown() do not make the caller wait.
            self._close_client(graceful=self._result is not None and self._result.reason != "shutdown")
        if self._listener is not None:
            self._listener.close()
            self._listener = None
            if self.endpoint.kind == "unix":
                try:  # only our own socket: the path may have been taken over since
                    if os.stat(self.endpoint.path).st_ino == self._unix_inode:
                        os.unlink(self.endpoint.path)
                except OSError:
                    pass
        self._wake_r.close()
        self._wake_w.close()

    def _describe_address(self) -> str:
        addr = self.address
        if isinstance(addr, tuple):
            return f"tcp:{addr[0]}:{addr[1]}"
        return f"unix:{addr}"


def serve(
    target: Target,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    wait_for_gdb: bool = False,
    log: logging.Logger | None = None,
) -> ServeResult:
    """``GdbServer(target, endpoint, wait_for_gdb, log).run()``."""
    return GdbServer(target, endpoint, wait_for_gdb, log).run()
