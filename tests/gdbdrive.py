"""Drive the real gdb against gdbemu (or QEMU) running as a subprocess.

Used by tests/e2e/test_gdb_e2e.py and benchmarks/gdb_bench.py.  Three pieces:

* :class:`Emulator` starts ``python -m gdbemu.cli ... -gdb tcp::0 -S`` (or
  any command line) and learns the port the server bound from the line it
  prints on stderr (``waiting for gdb on 127.0.0.1:PORT``): asking for port
  0 means no race for a free port, and parallel runs never collide.  Its
  stdout and stderr are drained by threads, so a chatty guest cannot block
  the emulator on a full pipe, and kept for failure messages.
* :class:`Gdb` runs gdb 13 under pygdbmi in MI async mode (so that gdb
  accepts ``-exec-interrupt`` while the guest runs).  Commands carry a token
  and wait for their own result record; stops are awaited with a timeout
  whose error names what was awaited and shows gdb's recent output.
  pygdbmi's own read loop lingers 0.2 s after any output, which would
  swamp every timing here, so this module selects on gdb's pipes itself and
  lets pygdbmi only parse what is already there.
* Teardown never leaves processes behind: ``close()`` asks nicely, then
  kills; every process started here is also registered and killed at
  interpreter exit if a test or benchmark forgot it (or crashed first).
  Only processes this module started are ever signalled, by their pid.
"""

from __future__ import annotations

import atexit
import os
import re
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
GDB = shutil.which("gdb")
QEMU = shutil.which("qemu-system-i386")

_LIVE: set[subprocess.Popen] = set()  # every child started here and not yet reaped


def _reap(proc: subprocess.Popen, grace: float = 3.0) -> None:
    """End one child we started: SIGTERM, then SIGKILL after ``grace`` seconds; always wait for it."""
    try:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(grace)
    except ProcessLookupError:
        pass
    finally:
        _LIVE.discard(proc)


@atexit.register
def _reap_all() -> None:
    """Last line of defence against orphans: whatever is still registered dies with the test run."""
    for proc in list(_LIVE):
        _reap(proc, grace=1.0)


class DriveError(AssertionError):
    """Something awaited did not happen (a timeout, a dead process, a gdb error): says what and shows context."""


def free_port() -> int:
    """A TCP port free right now on 127.0.0.1 (for QEMU, which cannot report a port it chose itself)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


# ---- the emulator -------------------------------------------------------------------------------


class _Drain(threading.Thread):
    """Copies a pipe into a bytearray until EOF, and signals when a line matches ``pattern``."""

    def __init__(self, pipe, pattern: re.Pattern[bytes] | None = None) -> None:
        super().__init__(daemon=True)
        self.pipe = pipe
        self.data = bytearray()
        self.pattern = pattern
        self.match: re.Match[bytes] | None = None
        self.matched = threading.Event()
        self.start()

    def run(self) -> None:
        line = b""
        while True:
            chunk = os.read(self.pipe.fileno(), 65536)
            if not chunk:
                break
            self.data += chunk
            if self.pattern is not None and self.match is None:
                line += chunk
                m = self.pattern.search(line)
                if m:
                    self.match = m
                    self.matched.set()
        self.matched.set()  # EOF: whoever waits for the line learns it will not come


class Emulator:
    """An emulator process with a GDB server, started now and ended by ``close()`` (or a ``with`` block).

    ``argv`` is the whole command; for gdbemu use :meth:`gdbemu`.  When
    ``ready`` is a regex (bytes) the constructor waits for it on stderr and
    ``address`` becomes its ``addr`` group: gdbemu's "waiting for gdb on
    HOST:PORT" line.
    """

    def __init__(
        self,
        argv: Sequence[str],
        ready: re.Pattern[bytes] | None,
        *,
        timeout: float = 30.0,
        env: dict[str, str] | None = None,
        what: str = "the emulator",
        wait_ready: bool = True,
    ) -> None:
        self.argv = list(argv)
        self.what = what
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=ROOT,
            env=env,
            start_new_session=True,  # a Ctrl-C meant for gdb or pytest does not reach it
        )
        _LIVE.add(self.proc)
        self.out = _Drain(self.proc.stdout)
        self.err = _Drain(self.proc.stderr, ready)
        self.address: str | None = None
        self._ready, self._timeout = ready, timeout
        if wait_ready:
            self.wait_ready()

    def wait_ready(self) -> str | None:
        """Wait for the "waiting for gdb on ADDR" line (if one is expected) and return ADDR.

        Separate from the constructor so a caller can start gdb meanwhile:
        gdbemu's start-up (imports, building the machine) is most of a test.
        """
        if self._ready is not None and self.address is None:
            if not self.err.matched.wait(self._timeout) or self.err.match is None:
                self.close()
                raise DriveError(
                    f"{self.what} did not report its gdb address within {self._timeout:.0f} s "
                    f"(exit status {self.proc.returncode}); stderr:\n{self.stderr_text()}"
                )
            self.address = self.err.match.group("addr").decode()
        return self.address

    @classmethod
    def gdbemu(
        cls,
        kernel: Path | str | None,
        *args: str,
        gdb: str | None = "tcp::0",
        wait: bool = True,
        serial: str = "null",
        debugcon: str = "null",
        timeout: float = 30.0,
        python_args: Sequence[str] = (),
        wait_ready: bool = True,
    ) -> Emulator:
        """``python -m gdbemu.cli -kernel KERNEL -gdb GDB -S -display none -serial SERIAL ...``.

        ``gdb=None``: no ``-gdb`` option, and nothing to wait for unless the CLI
        listens anyway (no kernel: the demo listens on 1234), in which case
        ``wait=False`` still finds the "listening" line.  ``python_args`` go
        before ``-m gdbemu.cli`` (``-m cProfile -o FILE`` profiles the run).
        """
        argv = [sys.executable, *python_args, "-m", "gdbemu.cli"]
        if kernel is not None:
            argv += ["-kernel", str(kernel)]
        if gdb:
            argv += ["-gdb", gdb]
        if wait:
            argv.append("-S")
        argv += ["-display", "none", "-serial", serial, "-debugcon", debugcon, *args]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        listens = gdb is not None or kernel is None
        ready = re.compile(rb"(?:waiting|listening) for gdb on (?P<addr>\S+) \(") if listens else None
        return cls(argv, ready, timeout=timeout, env=env, what="gdbemu", wait_ready=wait_ready)

    @classmethod
    def qemu(cls, kernel: Path | str, *args: str, port: int | None = None, timeout: float = 30.0) -> Emulator:
        """``qemu-system-i386 -accel tcg -S -gdb tcp:127.0.0.1:PORT -kernel KERNEL``; ready once the port accepts."""
        if QEMU is None:
            raise DriveError("qemu-system-i386 is not installed")
        port = port or free_port()
        argv = [
            QEMU,
            "-accel",
            "tcg",
            "-nodefaults",
            "-display",
            "none",
            "-no-reboot",
            "-m",
            "32",
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=0x04",
            "-S",
            "-gdb",
            f"tcp:127.0.0.1:{port}",
            "-kernel",
            str(kernel),
            *args,
        ]
        emu = cls(argv, None, timeout=timeout, what="qemu")
        deadline = time.monotonic() + timeout
        while True:  # QEMU prints nothing when it listens: poll the port
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if emu.proc.poll() is not None or time.monotonic() > deadline:
                    emu.close()
                    raise DriveError(f"qemu did not listen on port {port}; stderr:\n{emu.stderr_text()}") from None
                time.sleep(0.02)
        # The probe connection above was a "gdb" too; QEMU drops it and accepts the next.
        emu.address = f"127.0.0.1:{port}"
        return emu

    @property
    def port(self) -> int:
        assert self.address is not None and ":" in self.address, self.address
        return int(self.address.rsplit(":", 1)[1])

    def stderr_text(self) -> str:
        return bytes(self.err.data).decode("utf-8", "replace")

    def stdout_bytes(self) -> bytes:
        return bytes(self.out.data)

    def wait(self, timeout: float = 30.0) -> int:
        """Wait for the process to end on its own (the guest exited); its exit status."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise DriveError(
                f"{self.what} did not exit within {timeout:.0f} s; stderr:\n{self.stderr_text()}"
            ) from None
        self.out.join(5)
        self.err.join(5)
        _LIVE.discard(self.proc)
        return rc

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        _reap(self.proc)
        self.out.join(2)
        self.err.join(2)

    def __enter__(self) -> Emulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---- gdb ------------------------------------------------------------------------------------------


def mi_quote(text: str) -> str:
    """A C string for an MI argument (``-interpreter-exec console "..."``)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Gdb:
    """gdb under pygdbmi, MI async, with tokens and named timeouts (module docstring).

    ``records`` keeps everything gdb said that no one has consumed yet;
    ``transcript`` keeps the last lines for error messages.
    """

    def __init__(self, elf: Path | str | None = None, *, timeout: float = 15.0, gdb: str | None = None) -> None:
        from pygdbmi.gdbcontroller import GdbController

        exe = gdb or GDB
        if exe is None:
            raise DriveError("gdb is not installed")
        self.timeout = timeout
        self.ctl = GdbController(command=[exe, "-nx", "-q", "--interpreter=mi3"])
        self.proc: subprocess.Popen = self.ctl.gdb_process  # type: ignore[assignment]
        _LIVE.add(self.proc)
        io = self.ctl.io_manager
        if io.stderr_fileno not in io.read_list:
            io.read_list.append(io.stderr_fileno)  # pygdbmi would never drain gdb's stderr
        self.records: list[dict[str, Any]] = []
        self.stop_text = ""
        self.transcript: list[str] = []
        self._token = 0
        self.cmd("-gdb-set mi-async on")
        self.cmd("-gdb-set confirm off")
        self.cmd("-gdb-set pagination off")
        self.cmd("-gdb-set width 0")
        if elf is not None:
            self.cmd(f"-file-exec-and-symbols {elf}")

    # ---- reading ------------------------------------------------------------------------------
    def _pump(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for gdb output and parse it into ``records``; False if none came."""
        io = self.ctl.io_manager
        ready, _, _ = select.select(io.read_list, [], [], max(timeout, 0.0))
        if not ready:
            if self.proc.poll() is not None:
                raise DriveError(f"gdb exited (status {self.proc.returncode})\n{self.tail()}")
            return False
        got = self.ctl.get_gdb_response(timeout_sec=0, raise_error_on_timeout=False)
        for rec in got:
            self.transcript.append(self._show(rec))
        del self.transcript[:-500]
        self.records += got
        if not got and self.proc.poll() is not None:
            raise DriveError(f"gdb exited (status {self.proc.returncode})\n{self.tail()}")
        return True

    @staticmethod
    def _show(rec: dict[str, Any]) -> str:
        kind = rec.get("type")
        if kind in ("console", "target", "log", "output"):
            return f"{kind}: {str(rec.get('payload', '')).rstrip()}"
        return f"{kind} {rec.get('token') or ''}{rec.get('message')}: {rec.get('payload')}"

    def tail(self) -> str:
        return "--- gdb's last output ---\n" + "\n".join(self.transcript[-25:])

    def until(self, pred: Callable[[dict[str, Any]], bool], what: str, timeout: float | None = None) -> dict[str, Any]:
        """Consume records up to and including the first one matching ``pred``; DriveError naming ``what``."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        i = 0
        while True:
            while i < len(self.records):
                if pred(self.records[i]):
                    rec = self.records[i]
                    del self.records[: i + 1]
                    return rec
                i += 1
            left = deadline - time.monotonic()
            if left <= 0:
                raise DriveError(f"timed out after {timeout or self.timeout:.1f} s waiting for {what}\n{self.tail()}")
            self._pump(left)

    def drain(self) -> None:
        """Read whatever gdb has already written (no waiting)."""
        while self._pump(0):
            pass

    # ---- commands -----------------------------------------------------------------------------
    def send(self, mi: str) -> int:
        """Write one MI command with a fresh token; returns the token (no waiting)."""
        self._token += 1
        self.transcript.append(f">>> {self._token}{mi}")
        self.ctl.write(f"{self._token}{mi}", read_response=False, timeout_sec=self.timeout)
        return self._token

    def result(
        self,
        token: int,
        what: str,
        timeout: float | None = None,
        check: bool = True,
        seen: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Wait for the result record of ``token``; with ``check``, ^error raises (with gdb's message).

        ``seen`` is shown every record consumed on the way (stream output, a ``*stopped``).
        """

        def pred(rec: dict[str, Any]) -> bool:
            if seen is not None:
                seen(rec)
            return rec.get("type") == "result" and rec.get("token") == token

        rec = self.until(pred, what, timeout)
        if check and rec.get("message") == "error":
            msg = (rec.get("payload") or {}).get("msg", "")
            raise DriveError(f"gdb refused {what}: {msg}\n{self.tail()}")
        return rec

    def cmd(
        self,
        mi: str,
        timeout: float | None = None,
        check: bool = True,
        seen: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Run one MI command and return its result record."""
        return self.result(self.send(mi), repr(mi), timeout, check, seen)

    def console(
        self,
        text: str,
        timeout: float | None = None,
        check: bool = True,
        seen: Callable[[dict[str, Any]], None] | None = None,
    ) -> str:
        """Run a CLI command; returns what it printed (console, target and log streams, in order)."""
        out: list[str] = []

        def collect(rec: dict[str, Any]) -> None:
            if rec.get("type") in ("console", "target", "log"):
                out.append(str(rec.get("payload") or ""))
            if seen is not None:
                seen(rec)

        self.drain()
        self.records = [r for r in self.records if r.get("type") not in ("console", "target", "log")]
        token = self.send(f"-interpreter-exec console {mi_quote(text)}")
        self.result(token, f"the console command {text!r}", timeout, check, collect)
        return "".join(out)

    # ---- sessions -----------------------------------------------------------------------------
    def connect(self, address: str, timeout: float | None = None) -> dict[str, Any]:
        """``target remote ADDRESS``; returns the ``*stopped`` gdb reports on connecting."""
        stops: list[dict[str, Any]] = []

        def keep(rec: dict[str, Any]) -> None:
            if _is_stopped(rec):
                stops.append(rec)

        self.drain()
        self.records.clear()
        if address.startswith("|"):  # a pipe to a program: only the CLI spelling takes the whole line
            self.console(f"target remote {address}", timeout, seen=keep)
        else:
            self.cmd(f"-target-select remote {address}", timeout, seen=keep)
        if not stops:
            stops.append(self.until(_is_stopped, f"the stop gdb reports after connecting to {address}", 5.0))
        return stops[-1]

    def resume(self, mi: str, what: str, timeout: float | None = None) -> dict[str, Any]:
        """Send a resume command (``-exec-continue``, ``-exec-step-instruction``) and wait for its stop.

        What gdb printed about the stop ("Old value = ...") is left in ``stop_text``.
        """
        self.drain()
        self.records = [r for r in self.records if not _is_stopped(r)]  # stale stops belong to earlier commands
        self.cmd(mi, timeout)
        text: list[str] = []

        def pred(rec: dict[str, Any]) -> bool:
            if rec.get("type") == "console":
                text.append(str(rec.get("payload") or ""))
            return _is_stopped(rec)

        stop = self.until(pred, what, timeout)
        self.stop_text = "".join(text)
        return stop

    def cont(self, what: str = "the stop after -exec-continue", timeout: float | None = None) -> dict[str, Any]:
        return self.resume("-exec-continue", what, timeout)

    def stepi(self, timeout: float | None = None) -> dict[str, Any]:
        return self.resume("-exec-step-instruction", "the stop after -exec-step-instruction", timeout)

    def start_continue(self) -> None:
        """``-exec-continue`` without waiting for the stop (the guest runs; interrupt or wait later)."""
        self.drain()
        self.records = [r for r in self.records if not _is_stopped(r)]
        self.cmd("-exec-continue")

    def wait_stopped(self, what: str, timeout: float | None = None) -> dict[str, Any]:
        return self.until(_is_stopped, what, timeout)

    def interrupt(self) -> None:
        """``-exec-interrupt`` (gdb sends 0x03); wait for the stop with :meth:`wait_stopped`."""
        self.cmd("-exec-interrupt")

    # ---- values -------------------------------------------------------------------------------
    def eval(self, expr: str) -> str:
        return self.cmd(f"-data-evaluate-expression {mi_quote(expr)}")["payload"]["value"]

    def reg(self, name: str) -> int:
        """A register as an unsigned 32-bit number (``$eip`` would otherwise print as a function pointer)."""
        return int(self.eval(f"(unsigned int)${name}"), 0) & 0xFFFFFFFF

    def u32(self, addr: int) -> int:
        return int(self.eval(f"*(unsigned int *){addr:#x}"), 0) & 0xFFFFFFFF

    def read(self, addr: int, length: int) -> bytes:
        rec = self.cmd(f"-data-read-memory-bytes {addr:#x} {length}")
        return bytes.fromhex(rec["payload"]["memory"][0]["contents"])

    # ---- ending -------------------------------------------------------------------------------
    def detach(self) -> None:
        self.cmd("-target-detach")

    def kill9(self) -> None:
        """SIGKILL gdb (a debugger that dies without a word): the server sees the connection drop."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(5)
        _LIVE.discard(self.proc)

    def close(self) -> None:
        """Leave gdb (``-gdb-exit``; gdb detaches if attached), then make sure the process is gone."""
        if self.proc.poll() is None:
            try:
                self.ctl.write("-gdb-exit", read_response=False, timeout_sec=1)
                self.proc.wait(1.5)
            except (OSError, ValueError, subprocess.TimeoutExpired):
                pass
        _reap(self.proc)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                if f is not None:
                    f.close()
            except OSError:
                pass

    def __enter__(self) -> Gdb:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _is_stopped(rec: dict[str, Any]) -> bool:
    """A ``*stopped`` record; raises if gdb lost the target instead (no stop will ever come)."""
    if rec.get("type") == "log" and re.match(
        r"Remote (connection closed|communication error)", str(rec.get("payload"))
    ):
        raise DriveError(f"gdb lost the connection while waiting for a stop: {str(rec.get('payload')).strip()}")
    return rec.get("type") == "notify" and rec.get("message") == "stopped"


def stop_addr(stop: dict[str, Any]) -> int:
    """The PC of a ``*stopped`` record's frame."""
    return int(stop["payload"]["frame"]["addr"], 16)


def shell_pipe(argv: Sequence[str]) -> str:
    """``| cmd args`` for ``target remote | ...`` (gdb runs it with /bin/sh)."""
    return "| " + " ".join(shlex.quote(a) for a in argv)
