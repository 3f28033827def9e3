"""Scripted debugging: gdbemu and the real gdb driven from Python, with typed results.

Use::

    from gdbemu.testing import Session

    with Session.boot("kernel.elf") as s:          # gdbemu -S on a free port, gdb with the symbols
        s.watch("*(int *)&prime_count")
        stop = s.cont()                             # -> Stop(reason="watchpoint", function="sieve", ...)
        print(stop.function, stop.old, stop.new, hex(stop.pc))
        print(s.serial_output)                      # what the guest wrote on COM1 so far

Why a session API on top of gdb instead of poking the ``Machine`` directly:
a watchpoint regression test ("only the timer interrupt ever writes
``ticks``") should exercise exactly what a person at the gdb prompt gets --
gdb's expression evaluator, its symbol tables, the remote protocol, gdbemu's
stub and monitor -- so that what the test proves is what the person sees.

Theory of operation
-------------------
``Session.boot`` starts two processes, each in a process group of its own:

* gdbemu: ``python -m gdbemu.cli KERNEL -gdb tcp:127.0.0.1:0 -S -serial
  file:... -debugcon file:... -icount sleep=off -no-reboot``.  Port 0 lets
  the kernel pick a free port; gdbemu names it on stderr ("waiting for gdb on
  HOST:PORT"), which goes to a file we poll, so no port is ever guessed and
  no pipe can fill up.  ``-S`` holds the guest at its first instruction until
  gdb says go.  With ``transport="stdio"`` gdb starts gdbemu itself
  (``target remote | gdbemu -gdb stdio ...``); gdb puts that child in a
  session of its own, so a one-line shell prologue writes its pid to a file
  for teardown to find.
* gdb: ``gdb -nx --interpreter=mi3 KERNEL``, spoken to through pygdbmi's
  ``IoManager`` (MI records parsed by ``pygdbmi.gdbmiparser``).  MI runs in
  async mode, so gdb keeps reading commands while the guest runs and a
  ``cont`` that takes too long is interrupted (``-exec-interrupt``) and
  reported, leaving a stopped, usable session.

Every MI command carries a token; the reader keeps results by token, stops
(``*stopped``) in a queue and console/target output in buffers, so nothing
gdb says is lost between commands.  Every wait has a deadline, and a missed
deadline raises :class:`SessionTimeout` naming what was awaited (plus the
tail of the guest's serial output and of gdbemu's stderr).

Determinism: virtual time is the instruction count (``-icount``, never
``sleep=on``, never ``-rtc base=utc``), gdbemu freezes timers during single
steps, and nothing the session sends depends on wall-clock time; so a test
sees the same stops, in the same order, with the same values, on every run.

Teardown (``close()``, the context manager, and a ``weakref.finalize`` for
sessions nobody closed) is gentle first -- ``kill`` in gdb, so gdbemu flushes
the serial file and exits, then ``-gdb-exit`` -- and then SIGKILLs both
process groups whatever state they are in, and reaps them.  gdbemu also asks
the kernel (``PR_SET_PDEATHSIG``) to kill it if the test process dies, and gdb
exits when its stdin (our pipe) closes, so not even a killed pytest leaves
processes behind.

Stubs started by the test itself: :class:`Emulator` runs a gdbemu with a
command line of the test's own (``Emulator.gdbemu(kernel, "-gdb",
"unix:PATH")``), or QEMU (``Emulator.qemu``: the reference stub, for
comparisons), and :meth:`Session.connect` attaches gdb to it -- owning it, or
not (``own_emulator=False``: the stub outlives the session, to test detach
and re-attach).  For what the typed methods do not cover, :meth:`Session.mi`
sends any MI command, :meth:`Session.cont_nowait` / :meth:`Session.interrupt`
/ :meth:`Session.wait_stop` drive a running guest, and :attr:`Session.log_output`
holds gdb's log stream (``set debug remote 1``).  tests/ and benchmarks/ use
this module as their only gdb driver.

Target-side features are used when this gdbemu has them: gdb evaluates
breakpoint conditions in the stub by itself when the stub advertises
``ConditionalBreakpoints`` (gdb's default ``condition-evaluation auto``);
``watch(..., target_condition=...)`` uses ``monitor watch cond`` and
:meth:`Session.watch_log` ``monitor watch log``, each checked for in
``monitor help`` first.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import itertools
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pygdbmi.IoManager import IoManager

__all__ = [
    "BuildError",
    "Emulator",
    "Frame",
    "GdbError",
    "GdbNotFoundError",
    "GuestExitedError",
    "Session",
    "SessionError",
    "SessionTimeout",
    "Stop",
    "StopReason",
    "UnsupportedError",
    "WatchRecord",
    "build_kernel",
    "find_gdb",
    "pid_alive",
    "stops_summary",
]

DEFAULT_TIMEOUT = 30.0
WatchKindName = Literal["write", "read", "access"]
Transport = Literal["tcp", "stdio"]


# ---- errors ---------------------------------------------------------------------------------
class SessionError(RuntimeError):
    """Something went wrong in a session; the message says what and where."""


class SessionTimeout(SessionError):  # noqa: N818 - it is a timeout, and reads best as one
    """A deadline passed; the message names what was awaited."""


class GdbError(SessionError):
    """gdb refused a command (an MI ``^error``): ``command`` and gdb's ``message``."""

    def __init__(self, command: str, message: str) -> None:
        super().__init__(f"gdb refused {command!r}: {message}")
        self.command = command
        self.message = message


class GuestExitedError(SessionError):
    """The guest has exited (or was killed): there is nothing left to run or inspect."""


class GdbNotFoundError(SessionError):
    """No gdb executable: the pytest plugin turns this into a skip."""


class UnsupportedError(SessionError):
    """This gdbemu lacks a monitor feature the call needs (``monitor help`` does not list it)."""


class BuildError(SessionError):
    """A test kernel could not be built; ``missing_tool`` is set when the toolchain is absent."""

    def __init__(self, message: str, missing_tool: str | None = None) -> None:
        super().__init__(message)
        self.missing_tool = missing_tool


# ---- results ---------------------------------------------------------------------------------
class StopReason(enum.StrEnum):
    """Why the guest stopped; compares equal to its string value (``stop.reason == "watchpoint"``)."""

    BREAKPOINT = "breakpoint"
    WATCHPOINT = "watchpoint"
    WATCH_SCOPE = "watchpoint-scope"  # the watched expression went out of scope
    STEP = "step"  # step, next, stepi
    FINISH = "finish"
    LOCATION = "location"  # until / advance reached its location
    SIGNAL = "signal"  # a signal: SIGINT for an interrupt, SIGTRAP for an unexplained trap
    EXITED = "exited"  # the guest exited (isa-debug-exit): exit_code
    KILLED = "killed"  # the guest ended by a signal (a triple fault with -no-reboot: SIGSEGV)
    NO_HISTORY = "no-history"  # reverse execution reached the start of the recorded history
    STOPPED = "stopped"  # a stop gdb gave no reason for


_MI_REASONS = {
    "breakpoint-hit": StopReason.BREAKPOINT,
    "watchpoint-trigger": StopReason.WATCHPOINT,
    "read-watchpoint-trigger": StopReason.WATCHPOINT,
    "access-watchpoint-trigger": StopReason.WATCHPOINT,
    "watchpoint-scope": StopReason.WATCH_SCOPE,
    "no-history": StopReason.NO_HISTORY,
    "end-stepping-range": StopReason.STEP,
    "function-finished": StopReason.FINISH,
    "location-reached": StopReason.LOCATION,
    "signal-received": StopReason.SIGNAL,
    "exited": StopReason.EXITED,
    "exited-normally": StopReason.EXITED,
    "exited-signalled": StopReason.KILLED,
}
_WATCH_KIND_OF_REASON = {
    "watchpoint-trigger": "write",
    "read-watchpoint-trigger": "read",
    "access-watchpoint-trigger": "access",
}


@dataclasses.dataclass(frozen=True)
class Stop:
    """One stop of the guest, as gdb reported it (``*stopped``), with the fields parsed.

    Values (``old``, ``new``, ``value``, ``return_value``) are gdb's text, as
    ``print`` shows them ("303", "0x0", "{a = 1}"): a test compares what a
    person would read.  ``address`` is the watched location (``&expr``, as
    gdb inserted the watchpoint), for watchpoint stops.  ``console`` is what
    gdb printed between the resume and the stop ("Hardware watchpoint 2: ...
    Old value = 1 New value = 2"), as a person at the prompt reads it.
    ``raw`` is gdb's MI payload for anything not parsed here.
    """

    reason: StopReason
    thread: int | None = None
    pc: int | None = None
    function: str | None = None
    file: str | None = None
    line: int | None = None
    breakpoint: int | None = None  # the breakpoint's or watchpoint's number
    expression: str | None = None  # a watchpoint's expression
    watch_kind: str | None = None  # "write", "read" or "access"
    old: str | None = None
    new: str | None = None
    value: str | None = None  # a read watchpoint's value
    address: int | None = None
    signal: str | None = None
    exit_code: int | None = None
    return_value: str | None = None  # finish: the value returned
    console: str = dataclasses.field(default="", compare=False, repr=False)  # what gdb printed about the stop
    raw: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False, repr=False)

    @property
    def ended(self) -> bool:
        """True when the guest is gone (exited or killed): nothing more will run."""
        return self.reason in (StopReason.EXITED, StopReason.KILLED)

    @property
    def where(self) -> str:
        """``0x001000d4 in record_sample (kernel.c:42)``, as much of it as is known."""
        text = f"{self.pc:#010x}" if self.pc is not None else "?"
        text += f" in {self.function or '??'}"
        if self.file and self.line is not None:
            text += f" ({self.file}:{self.line})"
        return text

    def describe(self) -> str:
        """One readable line, for failure messages and reports."""
        r = self.reason
        if r == StopReason.WATCHPOINT:
            what = f"{self.watch_kind or 'write'} watchpoint {self.breakpoint} ({self.expression})"
            if self.old is not None or self.new is not None:
                what += f": {self.old} -> {self.new}"
            elif self.value is not None:
                what += f": value {self.value}"
            if self.address is not None:
                what += f" [{self.address:#x}]"
            return f"{what} at {self.where}"
        if r == StopReason.BREAKPOINT:
            return f"breakpoint {self.breakpoint} at {self.where}"
        if r == StopReason.EXITED:
            return f"guest exited with code {self.exit_code}"
        if r == StopReason.KILLED:
            return f"guest killed by {self.signal}"
        if r == StopReason.SIGNAL:
            return f"{self.signal} at {self.where}"
        if r == StopReason.FINISH and self.return_value is not None:
            return f"finish at {self.where}, returned {self.return_value}"
        return f"{r.value} at {self.where}"

    def trace_line(self) -> str:
        """The line a golden trace records: what and where, nothing run-dependent beyond that."""
        if self.reason == StopReason.WATCHPOINT:
            change = f"{self.old} -> {self.new}" if self.old is not None or self.new is not None else f"= {self.value}"
            pc = f"{self.pc:#010x}" if self.pc is not None else "?"
            return f"{self.watch_kind or 'write'} {self.expression}: {change} in {self.function or '??'} at {pc}"
        return self.describe()


@dataclasses.dataclass(frozen=True)
class Frame:
    """One frame of a backtrace (innermost first)."""

    level: int
    pc: int | None
    function: str | None
    file: str | None = None
    line: int | None = None


@dataclasses.dataclass(frozen=True)
class WatchRecord:
    """One access recorded by gdbemu's watch log (``monitor watch log``): every hit, stopping or not.

    Unlike a gdb stop, a record exists for every access, even one that
    writes the value already there; ``pc`` is the accessing instruction
    itself (a gdb watchpoint stop reports the instruction after it), and
    ``old``/``new`` are the raw bytes of the access as integers.
    """

    seq: int
    icount: int
    pc: int
    access: str  # "r" or "w"
    address: int
    size: int
    old: int | None
    new: int | None
    stopped: bool
    function: str | None = None
    watchpoint: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False, repr=False)


@dataclasses.dataclass
class _Watch:
    number: int
    expression: str
    kind: str
    address: int | None
    size: int | None


# ---- building test kernels ------------------------------------------------------------------------
_CFLAGS = (
    "-m32",
    "-ffreestanding",
    "-fno-pic",
    "-fno-pie",
    "-fno-stack-protector",
    "-fno-asynchronous-unwind-tables",
    "-fno-builtin",
    "-nostdlib",
    "-mgeneral-regs-only",
    "-g",
    "-O0",
    "-Wall",
)


def build_kernel(
    sources: Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    *,
    defines: Mapping[str, str | int | None] | None = None,
    ldscript: str | os.PathLike[str] | None = None,
    cflags: Sequence[str] = (),
) -> Path:
    """Build a 32-bit multiboot test kernel with the host toolchain; returns ``output``.

    ``.c`` and ``.S`` files go through ``gcc -m32 -ffreestanding -g -O0``
    (``-O0``: every function stays a function and every variable lives in
    memory, so watchpoints and ``finish`` see what the source says), ``.s``
    through ``as --32`` (``defines`` become ``--defsym``), and the objects are
    linked by ``ld -m elf_i386``.  Raises :class:`BuildError` with
    ``missing_tool`` set when a tool is absent, so tests can skip.
    """
    out = Path(output).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    defs = dict(defines or {})
    objects = []
    for src in map(Path, sources):
        obj = out.parent / f"{out.stem}-{src.stem}.o"
        obj = obj.resolve()
        # Compiled from its own directory under its bare name, so the debug info (and so every
        # Stop.file and golden trace) says "kernel.c", whatever directory the build ran in.
        if src.suffix in (".c", ".S"):
            cmd = [
                "gcc",
                *_CFLAGS,
                *cflags,
                *(f"-D{k}" if v is None else f"-D{k}={v}" for k, v in defs.items()),
                "-c",
                src.name,
                "-o",
                str(obj),
            ]
        elif src.suffix == ".s":
            cmd = [
                "as",
                "--32",
                "-g",
                *itertools.chain.from_iterable(("--defsym", f"{k}={1 if v is None else v}") for k, v in defs.items()),
                src.name,
                "-o",
                str(obj),
            ]
        else:
            raise BuildError(f"{src}: not a .c, .S or .s file")
        _run_tool(cmd, cwd=src.resolve().parent)
        objects.append(str(obj))
    link = ["ld", "-m", "elf_i386", "--build-id=none", "-nostdlib"]
    link += ["-T", str(Path(ldscript).resolve())] if ldscript is not None else ["-Ttext=0x100000", "-e", "_start"]
    _run_tool([*link, *objects, "-o", str(out)])
    return out


def _run_tool(cmd: list[str], cwd: Path | None = None) -> None:
    if shutil.which(cmd[0]) is None:
        raise BuildError(f"{cmd[0]} is not installed (needed to build test kernels)", missing_tool=cmd[0])
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=cwd)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()
        # gcc without 32-bit support says so in a way worth skipping on, not failing on
        missing = cmd[0] if "-m32" in cmd and ("unrecognized" in detail or "not supported" in detail) else None
        raise BuildError(f"{' '.join(cmd)} failed:\n{detail}", missing_tool=missing)


def find_gdb(gdb: str | os.PathLike[str] | None = None) -> str:
    """The gdb to use: ``gdb`` if given, else $GDBEMU_GDB, else ``gdb`` on PATH; GdbNotFoundError otherwise."""
    wanted = str(gdb) if gdb is not None else os.environ.get("GDBEMU_GDB") or "gdb"
    path = shutil.which(wanted)
    if path is None:
        raise GdbNotFoundError(f"gdb not found ({wanted!r}); install gdb or pass gdb=PATH / --gdbemu-gdb PATH")
    return path


# ---- processes ---------------------------------------------------------------------------------------
# gdbemu, started by us: ask the kernel to SIGKILL it when its parent (the test process) dies,
# then run the CLI as `python -m gdbemu.cli` would.  argv[1] is our pid (the race with our death).
_LAUNCHER = """\
import os, runpy, signal, sys
if sys.platform.startswith("linux"):
    try:
        import ctypes
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass
if os.getppid() != int(sys.argv[1]):
    sys.exit("gdbemu: the test process is gone")
sys.argv = ["gdbemu"] + sys.argv[2:]
runpy.run_module("gdbemu.cli", run_name="__main__", alter_sys=True)
"""


def pid_alive(pid: int) -> bool:
    """True if process ``pid`` exists and is not a zombie (an exited process nobody reaped yet)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
        return state not in (b"Z", b"X")
    except (OSError, IndexError):
        return True


class _Reaper:
    """Kills and reaps a session's processes; shared by close() and the finalizer (so it holds no Session)."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.foreign_pids: list[int] = []  # processes that are not our children (gdb's pipe child)

    def kill(self) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)  # each was started as a process-group leader
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    proc.kill()
        for pid in self.foreign_pids:
            if pid_alive(pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)  # a setsid() leader: its group is its own
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
        deadline = time.monotonic() + 5
        while any(pid_alive(p) for p in self.foreign_pids) and time.monotonic() < deadline:
            time.sleep(0.01)


def _c_string(text: str) -> str:
    """An MI C-string argument: gdb splits MI arguments at blanks unless quoted."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _int_or_none(text: Any, base: int = 0) -> int | None:
    if not isinstance(text, str):
        return None
    try:
        return int(text, base)
    except ValueError:
        return None


_HEX = re.compile(r"0x[0-9a-fA-F]+")


def _first_hex(text: str) -> int | None:
    m = _HEX.search(text)
    return int(m.group(0), 16) if m else None


# ---- a stub process the test starts itself ---------------------------------------------------------
_READY = re.compile(r"(?:waiting|listening) for gdb on (?P<addr>\S+) \(")


class Emulator:
    """An emulator process with a GDB stub listening (gdbemu or QEMU), for :meth:`Session.connect`.

    :meth:`Session.boot` starts and owns its gdbemu; an ``Emulator`` is for
    what that does not cover: a stub that outlives several gdb sessions
    (detach and re-attach), a command line of the test's own (``-gdb
    unix:PATH``, no ``-gdb`` at all), QEMU as the reference stub
    (``Session.connect(emulator=Emulator.qemu(elf))``), or a profiler around
    gdbemu.  Start one with :meth:`gdbemu` or :meth:`qemu`; end it with
    :meth:`close` (or a ``with`` block, or the finalizer): its process group
    is killed and reaped.  Its stdout and stderr go to files in a temporary
    directory (no pipe can fill up), readable while it runs.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        ready: bool,
        timeout: float = DEFAULT_TIMEOUT,
        what: str = "the emulator",
        env: Mapping[str, str] | None = None,
        address: str | None = None,
    ) -> None:
        """Start ``argv`` now.  ``ready``: it prints gdbemu's "waiting for gdb on ADDR (" line
        (:meth:`wait_ready` waits for it); else ``address`` is where it will listen."""
        self.argv = list(argv)
        self.what = what
        self.timeout = float(timeout)
        self.address: str | None = None if ready else address
        self._ready = ready
        self._dir = Path(tempfile.mkdtemp(prefix="gdbemu-emulator-"))
        self._stdout_path = self._dir / "stdout"
        self._stderr_path = self._dir / "stderr"
        self._reaper = _Reaper()
        self._finalizer = weakref.finalize(self, _finalize, self._reaper, self._dir, False)
        with open(self._stdout_path, "wb") as out, open(self._stderr_path, "wb") as err:
            self.process: subprocess.Popen[bytes] = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=dict(env) if env is not None else None,
                start_new_session=True,  # a Ctrl-C meant for gdb or pytest does not reach it
            )
        self._reaper.procs.append(self.process)

    @classmethod
    def gdbemu(
        cls,
        kernel: str | os.PathLike[str] | None,
        *args: str,
        gdb: str | None = "tcp:127.0.0.1:0",
        wait: bool = True,
        serial: str = "null",
        debugcon: str = "null",
        timeout: float = DEFAULT_TIMEOUT,
        python_args: Sequence[str] = (),
        wait_ready: bool = True,
    ) -> Emulator:
        """``gdbemu -kernel KERNEL -gdb GDB -S -display none -serial SERIAL -debugcon DEBUGCON ARGS...``.

        ``gdb``: the ``-gdb`` endpoint (port 0: a free port, read back from
        gdbemu's stderr, so none is ever guessed; ``unix:PATH``); None: no
        ``-gdb`` option (with a kernel: nothing listens; :attr:`address` stays
        None).  ``wait``: ``-S``.  ``python_args`` go before ``-m gdbemu.cli``
        (``-m cProfile -o FILE`` profiles the run).  ``wait_ready=False``
        returns at once; call :meth:`wait_ready` (or let
        :meth:`Session.connect` do it while gdb starts).
        """
        cli: list[str] = []
        if kernel is not None:
            cli += ["-kernel", str(Path(kernel).resolve())]
        if gdb:
            cli += ["-gdb", gdb]
        if wait:
            cli.append("-S")
        cli += ["-display", "none", "-serial", serial, "-debugcon", debugcon, *args]
        if python_args:
            argv = [sys.executable, *python_args, "-m", "gdbemu.cli", *cli]
        else:  # the launcher: gdbemu dies with the test process
            argv = [sys.executable, "-c", _LAUNCHER, str(os.getpid()), *cli]
        emu = cls(argv, ready=gdb is not None or kernel is None, timeout=timeout, what="gdbemu", env=_child_env())
        if wait_ready:
            try:
                emu.wait_ready()
            except BaseException:
                emu.close()
                raise
        return emu

    @classmethod
    def qemu(
        cls,
        kernel: str | os.PathLike[str],
        *args: str,
        board: Literal["minimal", "pc"] = "minimal",
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Emulator:
        """``qemu-system-i386 -accel tcg -m 32 -S -gdb tcp:127.0.0.1:PORT -kernel KERNEL ARGS...``, the
        reference stub for comparisons.

        ``board="minimal"``: ``-nodefaults`` with isa-debug-exit at 0xF4 (as
        the test guests expect); ``board="pc"``: QEMU's default PC (VGA,
        serial, no NIC), as a plain ``qemu-system-i386 -kernel`` boots it.

        QEMU cannot report a port it chose, so a free one is picked just
        before it starts; ready once the port accepts a connection (QEMU drops
        that probe and accepts gdb next).  GdbNotFoundError's sibling
        :class:`SessionError` if qemu-system-i386 is not installed.
        """
        qemu = shutil.which("qemu-system-i386")
        if qemu is None:
            raise SessionError("qemu-system-i386 is not installed")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if board == "minimal":
            devices = ["-nodefaults", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]
        else:
            devices = ["-net", "none"]
        argv = [
            qemu,
            "-accel",
            "tcg",
            *devices,
            "-display",
            "none",
            "-no-reboot",
            "-m",
            "32",
            "-S",
            "-gdb",
            f"tcp:127.0.0.1:{port}",
            "-kernel",
            str(Path(kernel).resolve()),
            *args,
        ]
        emu = cls(argv, ready=False, timeout=timeout, what="qemu", address=f"127.0.0.1:{port}")
        deadline = time.monotonic() + timeout
        while True:  # QEMU prints nothing when it listens: poll the port
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return emu
            except OSError:
                if emu.process.poll() is not None or time.monotonic() > deadline:
                    emu.close()
                    raise SessionError(f"qemu did not listen on port {port}; stderr:\n{emu.stderr_text()}") from None
                time.sleep(0.02)

    def wait_ready(self) -> str | None:
        """Wait for gdbemu's "waiting for gdb on ADDR" line and return ADDR ("127.0.0.1:PORT", "unix:PATH").

        SessionError if the process exits first, SessionTimeout after the
        emulator's ``timeout``.  None for an emulator that listens nowhere.
        """
        if not self._ready or self.address is not None:
            return self.address
        deadline = time.monotonic() + self.timeout
        while True:
            text = self.stderr_text()
            m = _READY.search(text)
            if m:
                self.address = m.group("addr")
                return self.address
            if self.process.poll() is not None:
                text = self.stderr_text()
                m = _READY.search(text)
                if m:
                    self.address = m.group("addr")
                    return self.address
                raise SessionError(
                    f"{self.what} exited with status {self.process.returncode} before listening for gdb:\n"
                    f"{text.strip()}"
                )
            if time.monotonic() > deadline:
                raise SessionTimeout(
                    f"timed out after {self.timeout:g} s waiting for {self.what} to listen for gdb "
                    f"(its stderr so far: {text.strip()!r})"
                )
            time.sleep(0.01)

    @property
    def port(self) -> int:
        """The TCP port of :attr:`address`."""
        if self.address is None or ":" not in self.address or self.address.startswith("unix:"):
            raise SessionError(f"{self.what} does not listen on a TCP port ({self.address})")
        return int(self.address.rsplit(":", 1)[1])

    @property
    def pid(self) -> int:
        return self.process.pid

    def stderr_text(self) -> str:
        """What the emulator wrote on stderr so far (gdbemu's notes, agent dprintf output, its summary)."""
        return _read_file(self._stderr_path)

    def stdout_bytes(self) -> bytes:
        try:
            return self._stdout_path.read_bytes()
        except OSError:
            return b""

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the process to end by itself (the guest exited, gdb killed it); its exit status."""
        try:
            return self.process.wait(self.timeout if timeout is None else timeout)
        except subprocess.TimeoutExpired:
            raise SessionTimeout(
                f"{self.what} did not exit within {self.timeout if timeout is None else timeout:g} s; "
                f"stderr:\n{self.stderr_text()}"
            ) from None

    def alive(self) -> bool:
        """True while the process runs."""
        return self.process.poll() is None

    def close(self) -> None:
        """Kill the process group (if still running) and reap it; the output files stay readable until then."""
        self._reaper.kill()
        self._finalizer()

    def __enter__(self) -> Emulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<gdbemu.testing.Emulator {self.what} pid={self.process.pid} at {self.address}>"


def _read_file(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8", errors="replace")
    except OSError:
        return ""


def _child_env() -> dict[str, str]:
    """The environment of the processes we start: they must import the same gdbemu package as this process."""
    env = dict(os.environ)
    here = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = here + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("PYTHONSTARTUP", None)
    return env


# ---- the session ---------------------------------------------------------------------------------------
class Session:
    """gdbemu running a kernel, and gdb attached to it with the kernel's symbols.

    Create with :meth:`boot`; use as a context manager (or call
    :meth:`close`).  All methods block until gdb has answered (and, for the
    ``cont``/``step`` family, until the guest has stopped again), each wait
    bounded by ``timeout`` seconds.
    """

    def __init__(
        self,
        kernel: str | os.PathLike[str] | None = None,
        *,
        append: str | None = None,
        memory: str | int | None = None,
        serial: str | os.PathLike[str] | None = None,
        gdb: str | os.PathLike[str] | None = None,
        extra_args: Sequence[str] = (),
        timeout: float = DEFAULT_TIMEOUT,
        transport: Transport = "tcp",
        no_reboot: bool = True,
        keep_files: bool = False,
        gdb_setup: Sequence[str] = (),
    ) -> None:
        """Configure a session without starting anything; :meth:`boot` is the usual entry point."""
        if kernel is None:
            from .cli import demo_kernel_path

            kernel = demo_kernel_path()
        self.kernel = Path(kernel).resolve()
        if not self.kernel.is_file():
            raise SessionError(f"no kernel file {str(kernel)!r}")
        self.append = append
        self.memory = memory
        self.timeout = float(timeout)
        self.transport: Transport = transport
        self.no_reboot = no_reboot
        self.extra_args = list(extra_args)
        self.gdb_setup = list(gdb_setup)
        self.keep_files = keep_files
        self.gdb_path = find_gdb(gdb)
        if transport not in ("tcp", "stdio"):
            raise ValueError(f"transport must be 'tcp' or 'stdio', not {transport!r}")
        self.stops: list[Stop] = []
        self.symbols_error: str | None = None  # why gdb could not read the kernel's symbols, if it could not
        self.console_output = ""  # gdb's console stream (CLI output, dprintf-style gdb output)
        self.gdb_pid: int | None = None
        self.gdbemu_pid: int | None = None
        self.port: int | None = None
        self.address: str | None = None  # where gdb connected ("127.0.0.1:PORT", a socket path, "| command")
        self.log_output = ""  # gdb's log stream (``set debug remote 1`` packets, warnings)
        self._dir = Path(tempfile.mkdtemp(prefix="gdbemu-session-"))
        self.directory = self._dir  # serial, debugcon and stderr files; removed at close unless keep_files
        self.serial_path = Path(serial).resolve() if serial is not None else self._dir / "com1.txt"
        self.debugcon_path = self._dir / "debugcon.txt"
        self._stderr_path = self._dir / "gdbemu.stderr"
        self._gdb_stderr_path = self._dir / "gdb.stderr"
        self._reaper = _Reaper()
        self._finalizer = weakref.finalize(self, _finalize, self._reaper, self._dir, keep_files)
        self._emu: subprocess.Popen[bytes] | None = None
        self._gdb: subprocess.Popen[bytes] | None = None
        self._io: IoManager | None = None
        self._tokens = itertools.count(1)
        self._results: dict[int, dict[str, Any]] = {}
        self._stop_records: list[dict[str, Any]] = []
        self._capture: list[str] | None = None
        self._log: list[str] = []
        self._watches: dict[int, _Watch] = {}
        self._running = False
        self._ended: Stop | None = None
        self._closed = False
        self._connected = False
        self._gdb_stuck = False
        self._exit_code: int | None = None
        self._final_serial: str | None = None
        self._final_stderr: str | None = None
        self._monitor_commands: str | None = None
        self._register_names: list[str] | None = None
        self._emulator: Emulator | None = None  # the stub connect() attached to, if an Emulator
        self._owned_emulator: Emulator | None = None
        self._stop_console: list[str] | None = None
        self._detached = False

    # ---- starting ----------------------------------------------------------------------------
    @classmethod
    def boot(
        cls,
        kernel: str | os.PathLike[str] | None = None,
        *,
        append: str | None = None,
        memory: str | int | None = None,
        serial: str | os.PathLike[str] | None = None,
        gdb: str | os.PathLike[str] | None = None,
        extra_args: Sequence[str] = (),
        timeout: float = DEFAULT_TIMEOUT,
        transport: Transport = "tcp",
        no_reboot: bool = True,
        keep_files: bool = False,
        gdb_setup: Sequence[str] = (),
    ) -> Session:
        """Start gdbemu on ``kernel`` (the demo kernel if None) held at its entry (-S), and gdb attached to it.

        ``append``: the kernel command line; ``memory``: gdbemu's ``-m`` (an
        int is MiB, as QEMU's); ``serial``: the file COM1 writes to (default:
        one in the session's temporary directory; read it as
        :attr:`serial_output`); ``gdb``: the gdb executable;
        ``extra_args``: more gdbemu options; ``timeout``: the default bound,
        in seconds, of every wait; ``transport``: ``"tcp"`` (a free loopback
        port) or ``"stdio"`` (``target remote | gdbemu -gdb stdio``);
        ``no_reboot``: a triple fault ends the guest (reported as a KILLED
        stop) instead of rebooting it; ``keep_files``: keep the session's
        temporary directory (serial, stderr logs) after close; ``gdb_setup``:
        gdb CLI commands run before gdb connects (``set remotelogfile FILE``
        records the packets, ``set debug remote 1`` shows them in
        :attr:`log_output`).
        """
        session = cls(
            kernel,
            append=append,
            memory=memory,
            serial=serial,
            gdb=gdb,
            extra_args=extra_args,
            timeout=timeout,
            transport=transport,
            no_reboot=no_reboot,
            keep_files=keep_files,
            gdb_setup=gdb_setup,
        )
        try:
            session._start()
        except BaseException:
            session.close()
            raise
        return session

    def _gdbemu_args(self, endpoint: str) -> list[str]:
        args = [
            str(self.kernel),
            "-gdb",
            endpoint,
            "-S",
            "-serial",
            f"file:{self.serial_path}",
            "-debugcon",
            f"file:{self.debugcon_path}",
            "-display",
            "none",
            "-icount",
            "sleep=off",
        ]
        if self.no_reboot:
            args.append("-no-reboot")
        if self.append is not None:
            args += ["-append", self.append]
        if self.memory is not None:
            args += ["-m", str(self.memory)]
        return args + self.extra_args

    def _env(self) -> dict[str, str]:
        """The environment of both processes: gdbemu must import the same gdbemu package as this process."""
        return _child_env()

    def _start(self) -> None:
        if self.transport == "tcp":
            with open(self._stderr_path, "wb") as err:
                self._emu = subprocess.Popen(
                    [sys.executable, "-c", _LAUNCHER, str(os.getpid()), *self._gdbemu_args("tcp:127.0.0.1:0")],
                    stdin=subprocess.DEVNULL,
                    stdout=err,
                    stderr=err,
                    env=self._env(),
                    start_new_session=True,
                )
            self._reaper.procs.append(self._emu)
            self.gdbemu_pid = self._emu.pid
        self._start_gdb()  # while gdbemu boots: both take a moment to start
        if self.transport == "tcp":
            self.port = self._await_listening()
            self.address = f"127.0.0.1:{self.port}"
            if "set architecture i386:x86-64" in self._read_text(self._stderr_path):
                # gdbemu runs a 64-bit machine (its hint line says so): gdb must expect x86-64 before
                # connecting, or a 32-bit kernel file makes it refuse the amd64 description.
                self._mi("-gdb-set architecture i386:x86-64")
            self._mi(f"-target-select remote 127.0.0.1:{self.port}", what="gdb to connect to gdbemu")
        else:
            pidfile = self._dir / "gdbemu.pid"
            argv = [sys.executable, "-m", "gdbemu.cli", *self._gdbemu_args("stdio")]
            command = (
                f"echo $$ > {shlex.quote(str(pidfile))}; exec {' '.join(map(shlex.quote, argv))} "
                f"2>>{shlex.quote(str(self._stderr_path))}"
            )
            try:
                self._mi(
                    f"-interpreter-exec console {_c_string('target remote | ' + command)}",
                    what="gdb to start gdbemu -gdb stdio and connect",
                )
            finally:
                with contextlib.suppress(OSError, ValueError):
                    self.gdbemu_pid = int(pidfile.read_text().strip())
                    self._reaper.foreign_pids.append(self.gdbemu_pid)
        self._stop_records.clear()  # the stop gdb reports on connecting is not the test's
        self._connected = True

    def _start_gdb(self) -> None:
        with open(self._gdb_stderr_path, "wb") as gdb_err:
            self._gdb = subprocess.Popen(
                [self.gdb_path, "-nx", "-q", "--interpreter=mi3"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=gdb_err,
                env=self._env(),
                start_new_session=True,
                bufsize=0,
            )
        self._reaper.procs.append(self._gdb)
        self.gdb_pid = self._gdb.pid
        assert self._gdb.stdin is not None and self._gdb.stdout is not None
        self._io = IoManager(self._gdb.stdin, self._gdb.stdout, None, time_to_check_for_additional_output_sec=0.001)
        self._mi("-gdb-set mi-async on", what="gdb to start")
        for setting in (
            "confirm off",
            "pagination off",
            "width 0",
            "height 0",
            "print pretty off",
            f"remotetimeout {max(2, int(self.timeout))}",
        ):
            self._mi(f"-gdb-set {setting}")
        try:
            self._mi(f"-file-exec-and-symbols {_c_string(str(self.kernel))}", what="gdb to read the kernel's symbols")
        except GdbError as exc:
            # Not a file gdb reads (an a.out-kludge image, or not a kernel at all: then gdbemu says so
            # next).  Debugging by address still works.
            self.symbols_error = exc.message
            self._mi("-gdb-set architecture i386")
        for command in self.gdb_setup:
            self._cli(command)

    @classmethod
    def connect(
        cls,
        address: str | None = None,
        kernel: str | os.PathLike[str] | None = None,
        *,
        process: subprocess.Popen[bytes] | None = None,
        emulator: Emulator | None = None,
        own_emulator: bool = True,
        serial: str | os.PathLike[str] | None = None,
        gdb: str | os.PathLike[str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        keep_files: bool = False,
        gdb_setup: Sequence[str] = (),
    ) -> Session:
        """gdb attached to a stub that already listens: a gdbemu, QEMU's ``-s``, an :class:`Emulator`.

        ``address``: "HOST:PORT", a unix socket's path, or ``| COMMAND`` (gdb
        starts COMMAND and speaks RSP over its stdin/stdout, as ``target
        remote | ...``).  ``emulator``: an :class:`Emulator` (its address is
        used when ``address`` is None; gdb starts while the emulator finishes
        starting); the session owns it (closes it at close, takes the guest's
        exit status from it) unless ``own_emulator=False`` -- for a stub that
        outlives this session (detach, then another session).  ``process``:
        a stub process started by the caller (with ``start_new_session=True``),
        owned the same way.  ``serial`` names the file the stub writes COM1 to,
        if any.  ``gdb_setup``: gdb CLI commands run before connecting (see
        :meth:`boot`).  For comparisons (benchmarks/cond_bench.py times QEMU this way).
        """
        session = cls(kernel, serial=serial, gdb=gdb, timeout=timeout, keep_files=keep_files, gdb_setup=gdb_setup)
        if emulator is not None:
            session._emulator = emulator
            session.gdbemu_pid = emulator.pid
            if own_emulator:
                process = emulator.process
                session._owned_emulator = emulator
        if process is not None:
            session._emu = process
            session._reaper.procs.append(process)
            session.gdbemu_pid = process.pid
        try:
            session._start_gdb()
            if address is None:
                if emulator is None:
                    raise ValueError("connect needs an address or an emulator")
                address = emulator.wait_ready()
                if address is None:
                    raise SessionError(f"{emulator.what} does not listen for gdb")
            if address.startswith("|"):  # a pipe to a program: only the CLI spelling takes the whole line
                session._mi(
                    f"-interpreter-exec console {_c_string('target remote ' + address)}",
                    what=f"gdb to start {address[1:].strip()!r} and connect",
                )
            else:
                if emulator is not None and "set architecture i386:x86-64" in emulator.stderr_text():
                    session._mi("-gdb-set architecture i386:x86-64")  # a 64-bit gdbemu (see _start)
                session._mi(f"-target-select remote {address}", what=f"gdb to connect to {address}")
            session.address = address
            session._stop_records.clear()
            session._connected = True
        except BaseException:
            session.close()
            raise
        return session

    @classmethod
    def qemu(
        cls,
        kernel: str | os.PathLike[str],
        *,
        extra_args: Sequence[str] = (),
        board: Literal["minimal", "pc"] = "minimal",
        gdb: str | os.PathLike[str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Session:
        """QEMU (``qemu-system-i386 -accel tcg -S``, see :meth:`Emulator.qemu` for ``board``) running
        ``kernel``, with gdb attached: the reference stub, driven through the same API as gdbemu for
        comparisons.  SessionError if QEMU is not installed."""
        emulator = Emulator.qemu(kernel, *extra_args, board=board, timeout=timeout)
        return cls.connect(emulator=emulator, kernel=kernel, gdb=gdb, timeout=timeout)

    def _await_listening(self) -> int:
        """gdbemu's stderr names the port it listens on: 'gdbemu: waiting for gdb on HOST:PORT'."""
        deadline = time.monotonic() + self.timeout
        pattern = re.compile(r"(?:waiting|listening) for gdb on [^\s:]+:(\d+)")
        assert self._emu is not None
        while True:
            text = self._read_text(self._stderr_path)
            m = pattern.search(text)
            if m:
                return int(m.group(1))
            if self._emu.poll() is not None:
                raise SessionError(
                    f"gdbemu exited with status {self._emu.returncode} before listening for gdb:\n{text.strip()}"
                )
            if time.monotonic() > deadline:
                raise SessionTimeout(
                    f"timed out after {self.timeout:g} s waiting for gdbemu to listen for gdb "
                    f"(its stderr so far: {text.strip()!r})"
                )
            time.sleep(0.01)

    # ---- MI plumbing ----------------------------------------------------------------------------
    def _write(self, line: str) -> None:
        if self._io is None or self._gdb is None:
            raise SessionError("the session is not started")
        if self._closed:
            raise SessionError("the session is closed")
        try:
            self._io.write(line, timeout_sec=self.timeout, read_response=False)
        except (BrokenPipeError, OSError) as exc:
            raise SessionError(f"cannot talk to gdb ({exc}); {self._gdb_state()}") from None

    def _pump(self, timeout: float) -> None:
        assert self._io is not None
        with warnings.catch_warnings():
            # pygdbmi's parser calls the deprecated Logger.warn on MI it does not know (a dprintf's
            # script={"printf ..."} tuple); the record is still usable, the warning is only noise.
            warnings.simplefilter("ignore", DeprecationWarning)
            records = self._io.get_gdb_response(timeout_sec=max(0.0, timeout), raise_error_on_timeout=False)
        for rec in records:
            self._handle(rec)

    def _handle(self, rec: dict[str, Any]) -> None:
        kind = rec.get("type")
        if kind == "result":
            token = rec.get("token")
            if token is not None:
                self._results[token] = rec
            if rec.get("message") == "running":
                self._running = True
        elif kind == "notify":
            if rec.get("message") == "stopped":
                self._running = False
                self._stop_records.append(rec)
            elif rec.get("message") == "running":
                self._running = True
        elif kind in ("console", "target"):
            text = rec.get("payload") or ""
            self.console_output += text
            if self._capture is not None:
                self._capture.append(text)
            if self._stop_console is not None and kind == "console":
                self._stop_console.append(text)
        elif kind in ("log", "output"):
            text = str(rec.get("payload") or "")
            self.log_output += text
            self._log.append(text)
            del self._log[:-200]

    def _await(self, what: str, done: Callable[[], bool], timeout: float | None = None) -> None:
        """Read gdb's records until ``done()``; SessionTimeout naming ``what`` after ``timeout`` seconds."""
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        emu_gone_at: float | None = None
        while not done():
            now = time.monotonic()
            if now > deadline:
                raise SessionTimeout(f"timed out after {limit:g} s waiting for {what}{self._context()}")
            assert self._gdb is not None
            if self._gdb.poll() is not None:
                self._pump(0)  # what it said last
                if done():
                    return
                raise SessionError(
                    f"gdb exited (status {self._gdb.returncode}) while waiting for {what}{self._context()}"
                )
            if self._emu is not None and self._emu.poll() is not None:
                emu_gone_at = emu_gone_at or now
                if now - emu_gone_at > 2.0 and self._ended is None and not self._stop_records:
                    raise SessionError(
                        f"gdbemu exited (status {self._emu.returncode}) while waiting for {what}{self._context()}"
                    )
            self._pump(min(deadline - now, 0.1))

    def _mi(self, command: str, *, what: str | None = None, timeout: float | None = None) -> dict[str, Any]:
        """Send one MI command and return its result record's payload; GdbError on ``^error``."""
        token = next(self._tokens)
        self._write(f"{token}{command}")
        try:
            self._await(what or f"gdb's answer to {command}", lambda: token in self._results, timeout)
        except SessionError:
            self._gdb_stuck = True  # gdb owes us an answer: teardown goes straight to SIGKILL
            raise
        rec = self._results.pop(token)
        if rec.get("message") == "error":
            msg = (rec.get("payload") or {}).get("msg", "")
            raise GdbError(command, msg)
        payload = rec.get("payload")
        return payload if isinstance(payload, dict) else {}

    def _cli(self, command: str, *, timeout: float | None = None) -> str:
        """Run a CLI command (``-interpreter-exec console``) and return what it printed."""
        self._capture = []
        try:
            self._mi(
                f"-interpreter-exec console {_c_string(command)}", what=f"gdb's answer to {command!r}", timeout=timeout
            )
            return "".join(self._capture)
        finally:
            self._capture = None

    def _read_text(self, path: Path) -> str:
        try:
            return path.read_bytes().decode("utf-8", errors="replace")
        except OSError:
            return ""

    def _gdb_state(self) -> str:
        if self._gdb is None:
            return "gdb not started"
        rc = self._gdb.poll()
        return "gdb is running" if rc is None else f"gdb exited with status {rc}"

    def _context(self) -> str:
        """The tails worth seeing when something went wrong: last stop, serial, gdbemu's stderr."""
        parts = []
        if self.stops:
            parts.append(f"last stop: {self.stops[-1].describe()}")
        serial = self.serial_output.splitlines()[-5:]
        if serial:
            parts.append("serial output (tail):\n  " + "\n  ".join(serial))
        stderr = self.gdbemu_stderr.strip().splitlines()[-5:]
        if stderr:
            parts.append("gdbemu stderr (tail):\n  " + "\n  ".join(stderr))
        if self._log:
            parts.append("gdb said (tail):\n  " + "\n  ".join(s.rstrip() for s in self._log[-5:]))
        return ("\n" + "\n".join(parts)) if parts else ""

    # ---- outputs ---------------------------------------------------------------------------------
    @property
    def serial_output(self) -> str:
        """What the guest wrote on COM1 so far (gdbemu flushes the file at each newline)."""
        if self._final_serial is not None:
            return self._final_serial
        return self._read_text(self.serial_path)

    @property
    def debugcon_output(self) -> str:
        """What the guest wrote to port 0xE9 so far."""
        return self._read_text(self.debugcon_path)

    @property
    def gdbemu_stderr(self) -> str:
        """gdbemu's stderr so far (its notes, the listening line, the summary at the end)."""
        if self._final_stderr is not None:
            return self._final_stderr
        if self._emulator is not None:
            return self._emulator.stderr_text()
        return self._read_text(self._stderr_path)

    @property
    def exit_code(self) -> int | None:
        """The guest's exit status as the ``gdbemu`` command returns it ((value << 1) | 1 for isa-debug-exit).

        None while the guest has not exited.  With ``transport="stdio"`` it is
        the status gdb reported (the low 8 bits, as the protocol carries it).
        """
        if self._exit_code is not None:
            return self._exit_code
        if self._ended is not None and self._ended.reason == StopReason.EXITED:
            if self._emu is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    status = self._emu.wait(timeout=self.timeout)
                    if status >= 0:  # not killed by us before it could exit by itself
                        self._exit_code = status
                        return status
            return self._ended.exit_code
        return None

    @property
    def last_stop(self) -> Stop | None:
        """The most recent stop (None before the first resume)."""
        return self.stops[-1] if self.stops else None

    @property
    def alive(self) -> bool:
        """True while the guest can still run (it has not exited, and the session is open)."""
        return not self._closed and self._ended is None

    # ---- breakpoints and watchpoints ---------------------------------------------------------------
    def break_at(
        self, location: str, condition: str | None = None, *, temporary: bool = False, hardware: bool = False
    ) -> int:
        """Set a breakpoint at ``location`` (``func``, ``file.c:12``, ``*0x100080``); returns its number.

        ``condition`` is a gdb expression.  gdb evaluates it in gdbemu when
        the stub supports target-side conditions (``ConditionalBreakpoints``;
        gdb's default ``condition-evaluation auto`` picks that) and at each
        hit itself otherwise -- the same stops either way, at very different
        speeds (see benchmarks/cond_bench.py).
        """
        args = ["-break-insert"]
        if temporary:
            args.append("-t")
        if hardware:
            args.append("-h")
        if condition is not None:
            args += ["-c", _c_string(condition)]
        args.append(_c_string(location))
        payload = self._mi(" ".join(args))
        return int(payload["bkpt"]["number"])

    def watch(
        self,
        expr: str,
        kind: WatchKindName = "write",
        condition: str | None = None,
        *,
        target_condition: str | None = None,
    ) -> int:
        """Set a hardware watchpoint on the lvalue ``expr``; returns its number.

        ``kind``: "write" (gdb's ``watch``: stops when a store changes the
        value), "read" (``rwatch``) or "access" (``awatch``).  ``condition``
        is a gdb expression, evaluated by gdb at each hit.
        ``target_condition`` is evaluated by gdbemu itself (``monitor watch
        cond``; see ``monitor help watch cond`` for its language: new, old,
        pc, mem32(A) ...), so false hits never reach gdb; UnsupportedError if
        this gdbemu has no such command.  A software watchpoint (gdb would
        single-step the whole guest) is refused.
        """
        flag = {"write": "", "read": "-r ", "access": "-a "}.get(kind)
        if flag is None:
            raise ValueError(f"kind must be 'write', 'read' or 'access', not {kind!r}")
        if target_condition is not None:
            self._require_monitor("watch cond")
        payload = self._mi(f"-break-watch {flag}{_c_string(expr)}")
        info = payload.get("wpt") or payload.get("hw-rwpt") or payload.get("hw-awpt") or {}
        number = int(info["number"])
        table = self._mi(f"-break-info {number}").get("BreakpointTable", {})
        body = table.get("body") or []
        btype = body[0].get("type", "") if body else ""
        if btype and not btype.startswith(("hw ", "read ", "acc ")):
            self._mi(f"-break-delete {number}")
            raise SessionError(
                f"gdb could only make a software watchpoint for {expr!r} ({btype}): it would "
                "single-step the whole guest; watch an lvalue (a variable, *(int *)ADDR)"
            )
        address = size = None
        with contextlib.suppress(GdbError):
            address = _first_hex(self.read(f"&({expr})"))
            size = _int_or_none(self.read(f"sizeof({expr})"))
        self._watches[number] = _Watch(number, expr, kind, address, size)
        if condition is not None:
            self._mi(f"-break-condition {number} {_c_string(condition)}")
        if target_condition is not None:
            if address is None:
                raise SessionError(f"target_condition needs the address of {expr!r}, which gdb cannot take")
            reply = self.monitor(f"watch cond {address:#x} {target_condition}")
            if reply.startswith("error"):
                raise SessionError(f"monitor watch cond refused {target_condition!r}: {reply.strip()}")
        return number

    def dprintf(self, location: str, fmt: str, *args: str) -> int:
        """A dprintf at ``location`` (printf without stopping); returns its number.

        With gdb's default ``dprintf-style gdb`` the text appears in
        :attr:`console_output`; ``set dprintf-style agent`` (through
        :meth:`gdb_command`) lets gdbemu print it (``monitor dprintf log``).
        """
        parts = [_c_string(location), _c_string(fmt), *(_c_string(a) for a in args)]
        payload = self._mi("-dprintf-insert " + " ".join(parts))
        return int(payload["bkpt"]["number"])

    def delete(self, *numbers: int) -> None:
        """Delete breakpoints/watchpoints by number (all of them when none are given)."""
        self._mi("-break-delete" + "".join(f" {n}" for n in numbers))
        for n in numbers or list(self._watches):
            self._watches.pop(n, None)

    # ---- running -------------------------------------------------------------------------------------
    def _require_alive(self) -> None:
        if self._closed:
            raise SessionError("the session is closed")
        if self._ended is not None:
            raise GuestExitedError(f"the guest has ended ({self._ended.describe()})")

    def _resume(self, command: str, what: str, timeout: float | None) -> Stop:
        self._require_alive()
        self._stop_records.clear()
        self._stop_console = []
        self._mi(command, what=f"gdb to accept {command}")
        try:
            self._await(what, lambda: bool(self._stop_records), timeout)
        except SessionTimeout as exc:
            if not self._interrupt():
                raise
            stop = self.stops[-1]
            raise SessionTimeout(
                f"{exc.args[0].splitlines()[0]}; interrupted the guest: {stop.describe()}{self._context()}"
            ) from None
        return self._take_stop()

    def _interrupt(self) -> bool:
        """Stop a guest that runs too long; True if it stopped (the stop is recorded)."""
        try:
            self._stop_records.clear()
            self._write(f"{next(self._tokens)}-exec-interrupt")
            self._await("the guest to stop after an interrupt", lambda: bool(self._stop_records), 5.0)
        except SessionError:
            return False
        self._take_stop()
        return True

    def _take_stop(self) -> Stop:
        rec = self._stop_records.pop(0)
        console = "".join(self._stop_console or [])
        self._stop_console = None
        stop = dataclasses.replace(self._parse_stop(rec.get("payload") or {}), console=console)
        if stop.reason == StopReason.STOPPED and "No more reverse-execution history" in console:
            stop = dataclasses.replace(stop, reason=StopReason.NO_HISTORY)  # gdb's MI gives no reason for it
        self.stops.append(stop)
        if stop.ended:
            self._ended = stop
        return stop

    def _parse_stop(self, p: Mapping[str, Any]) -> Stop:
        mi_reason = p.get("reason")
        if isinstance(mi_reason, list):  # several reasons at once (rare): the first is gdb's headline
            mi_reason = mi_reason[0] if mi_reason else None
        reason = _MI_REASONS.get(mi_reason or "", StopReason.STOPPED)
        frame_rec = p.get("frame")
        frame: Mapping[str, Any] = frame_rec if isinstance(frame_rec, dict) else {}
        number = expression = None
        wpt = p.get("wpt") or p.get("hw-rwpt") or p.get("hw-awpt")
        if isinstance(wpt, dict):
            number = _int_or_none(wpt.get("number"), 10)
            expression = wpt.get("exp")
        elif p.get("bkptno") is not None:
            number = _int_or_none(p.get("bkptno"), 10)
        elif mi_reason == "watchpoint-scope":
            number = _int_or_none(p.get("wpnum"), 10)
        value_rec = p.get("value")
        value: Mapping[str, Any] = value_rec if isinstance(value_rec, dict) else {}
        watch = self._watches.get(number) if number is not None and reason == StopReason.WATCHPOINT else None
        exit_code = None
        if reason == StopReason.EXITED:
            exit_code = _int_or_none(p.get("exit-code", "0"), 8)  # MI prints the exit code in octal
        return Stop(
            reason=reason,
            thread=_int_or_none(p.get("thread-id"), 10),
            pc=_int_or_none(frame.get("addr"), 16),
            function=frame.get("func") if frame.get("func") not in (None, "??") else None,
            file=frame.get("file"),
            line=_int_or_none(frame.get("line"), 10),
            breakpoint=number,
            expression=expression,
            watch_kind=_WATCH_KIND_OF_REASON.get(mi_reason or ""),
            old=value.get("old"),
            new=value.get("new"),
            value=value.get("value"),
            address=watch.address if watch else None,
            signal=p.get("signal-name"),
            exit_code=exit_code,
            return_value=p.get("return-value"),
            raw=dict(p),
        )

    def cont(self, *, timeout: float | None = None) -> Stop:
        """Continue until the guest stops (breakpoint, watchpoint, exit ...); returns the stop.

        After ``timeout`` seconds (the session's by default) the guest is
        interrupted and SessionTimeout says where it was; the session stays
        usable.
        """
        return self._resume("-exec-continue", "the guest to stop after continue", timeout)

    def cont_until(
        self, predicate: Callable[[Stop], bool], *, max_stops: int = 1000, timeout: float | None = None
    ) -> Stop:
        """Continue until ``predicate(stop)`` holds; returns that stop.

        GuestExitedError if the guest ends first (unless the predicate accepts
        the final stop), SessionError after ``max_stops`` stops without a match.
        """
        seen: list[Stop] = []
        for _ in range(max_stops):
            stop = self.cont(timeout=timeout)
            if predicate(stop):
                return stop
            seen.append(stop)
            if stop.ended:
                raise GuestExitedError(
                    f"the guest ended ({stop.describe()}) before the predicate held; "
                    f"{len(seen)} stops: " + "; ".join(s.describe() for s in seen[-5:])
                )
        raise SessionError(
            f"cont_until: no stop matched in {max_stops} stops; the last were:\n  "
            + "\n  ".join(s.describe() for s in seen[-5:])
        )

    def cont_to_exit(self, *, max_stops: int = 10000, timeout: float | None = None) -> list[Stop]:
        """Continue through every stop until the guest ends; returns the stops before the end.

        The final stop (exit or kill) is :attr:`last_stop`, the status
        :attr:`exit_code`.  SessionError after ``max_stops`` stops.
        """
        out: list[Stop] = []
        for _ in range(max_stops):
            stop = self.cont(timeout=timeout)
            if stop.ended:
                return out
            out.append(stop)
        raise SessionError(
            f"cont_to_exit: the guest was still running after {max_stops} stops; the last:\n  "
            + "\n  ".join(s.describe() for s in out[-5:])
        )

    def run_to(self, location: str, *, timeout: float | None = None) -> Stop:
        """Continue to ``location`` (a temporary breakpoint); other breakpoints may stop the guest first."""
        self.break_at(location, temporary=True)
        return self.cont(timeout=timeout)

    def step(self, *, timeout: float | None = None) -> Stop:
        """One source line, into calls (gdb's ``step``; without line info gdb runs to the caller)."""
        return self._resume("-exec-step", "the guest to stop after step", timeout)

    def next(self, *, timeout: float | None = None) -> Stop:
        """One source line, over calls (gdb's ``next``)."""
        return self._resume("-exec-next", "the guest to stop after next", timeout)

    def stepi(self, *, timeout: float | None = None) -> Stop:
        """Exactly one instruction (gdbemu takes no interrupt and advances no timer during it)."""
        return self._resume("-exec-step-instruction", "the guest to stop after stepi", timeout)

    def finish(self, *, timeout: float | None = None) -> Stop:
        """Run until the current function returns; ``stop.return_value`` when gdb knows the type."""
        return self._resume("-exec-finish", "the guest to stop after finish", timeout)

    # ---- reverse execution (gdbemu records history: debug/replay.py) ---------------------------------
    def reverse_continue(self, *, timeout: float | None = None) -> Stop:
        """Run backwards to the previous breakpoint or watchpoint hit (a write watchpoint stops before
        the write: ``stop.old`` is the later value, ``stop.new`` the earlier); ``StopReason.NO_HISTORY``
        at the start of the recorded history."""
        return self._resume("-exec-continue --reverse", "the guest to stop after reverse-continue", timeout)

    def reverse_stepi(self, *, timeout: float | None = None) -> Stop:
        """Exactly one instruction back (across interrupts and faults: the state before it ran)."""
        return self._resume("-exec-step-instruction --reverse", "the guest to stop after reverse-stepi", timeout)

    def reverse_step(self, *, timeout: float | None = None) -> Stop:
        """One source line back, into calls (gdb's ``reverse-step``)."""
        return self._resume("-exec-step --reverse", "the guest to stop after reverse-step", timeout)

    def reverse_next(self, *, timeout: float | None = None) -> Stop:
        """One source line back, over calls (gdb's ``reverse-next``)."""
        return self._resume("-exec-next --reverse", "the guest to stop after reverse-next", timeout)

    def reverse_finish(self, *, timeout: float | None = None) -> Stop:
        """Back to where the current function was called (gdb's ``reverse-finish``)."""
        return self._resume("-exec-finish --reverse", "the guest to stop after reverse-finish", timeout)

    # ---- running in the background -------------------------------------------------------------------
    def cont_nowait(self) -> None:
        """Resume the guest (``-exec-continue``) and return while it runs; then :meth:`interrupt` it or
        :meth:`wait_stop` for it (MI async mode: gdb keeps taking commands meanwhile)."""
        self._require_alive()
        self._stop_records.clear()
        self._stop_console = []
        self._mi("-exec-continue", what="gdb to accept -exec-continue")

    def wait_stop(self, *, what: str = "the guest to stop", timeout: float | None = None) -> Stop:
        """The running guest's next stop.  SessionTimeout naming ``what`` after ``timeout`` seconds (the
        session's by default); unlike :meth:`cont`'s, this timeout leaves the guest running."""
        self._await(what, lambda: bool(self._stop_records), timeout)
        return self._take_stop()

    def interrupt(self, *, timeout: float | None = None) -> Stop:
        """Stop the running guest as Ctrl-C in gdb does (``-exec-interrupt``: 0x03 on the wire); the stop
        (``reason == "signal"``, ``signal == "SIGINT"``)."""
        self._mi("-exec-interrupt", what="gdb to accept -exec-interrupt")
        return self.wait_stop(what="the guest to stop after an interrupt", timeout=timeout)

    # ---- inspecting ------------------------------------------------------------------------------------
    def read(self, expr: str) -> str:
        """``print expr`` as gdb formats it (``"303"``, ``"0x100380 <samples>"``, ``"{a = 1, b = 2}"``)."""
        return str(self._mi(f"-data-evaluate-expression {_c_string(expr)}").get("value", ""))

    def read_int(self, expr: str) -> int:
        """The integer value of ``expr`` (pointers too); GdbError if gdb cannot evaluate it."""
        text = self.read(f"(long long)({expr})")
        try:
            return int(text, 0)
        except ValueError:
            raise SessionError(f"{expr!r} is not an integer: gdb says {text!r}") from None

    def write(self, lvalue: str, value: str | int) -> None:
        """Assign ``lvalue = value`` in the guest (a variable, a register like ``$eax``, ``*(int *)ADDR``)."""
        self.read(f"{lvalue} = {value}")

    def read_memory(self, addr: int | str, n: int) -> bytes:
        """``n`` bytes of guest memory at the linear address (or address expression) ``addr``."""
        where = f"{addr:#x}" if isinstance(addr, int) else _c_string(addr)
        payload = self._mi(f"-data-read-memory-bytes {where} {n}")
        out = bytearray()
        for block in payload.get("memory") or []:
            if int(block.get("offset", "0"), 16) != len(out):
                break
            out += bytes.fromhex(block.get("contents", ""))
        if len(out) < n:
            raise SessionError(f"only {len(out)} of {n} bytes at {where} are readable")
        return bytes(out[:n])

    def write_memory(self, addr: int | str, data: bytes) -> None:
        """Write ``data`` to guest memory at ``addr`` (translated code there is invalidated, as by a store)."""
        where = f"{addr:#x}" if isinstance(addr, int) else _c_string(addr)
        if data:
            self._mi(f"-data-write-memory-bytes {where} {bytes(data).hex()}")

    def registers(self) -> dict[str, int]:
        """Every register gdb knows for the target (eax ... eip, eflags, segments, cr0 ...), by name."""
        if self._register_names is None:
            self._register_names = list(self._mi("-data-list-register-names").get("register-names") or [])
        values = self._mi("-data-list-register-values --skip-unavailable x").get("register-values") or []
        out: dict[str, int] = {}
        for item in values:
            num = _int_or_none(item.get("number"), 10)
            if num is None or num >= len(self._register_names) or not self._register_names[num]:
                continue
            value = _int_or_none(item.get("value"), 0)
            if value is not None:
                out[self._register_names[num]] = value
        return out

    def backtrace(self) -> list[Frame]:
        """The call stack, innermost frame first."""
        frames = self._mi("-stack-list-frames").get("stack") or []
        out: list[Frame] = []
        for item in frames:
            f = item.get("frame", item) if isinstance(item, dict) else {}
            out.append(
                Frame(
                    level=int(f.get("level", len(out))),
                    pc=_int_or_none(f.get("addr"), 16),
                    function=f.get("func") if f.get("func") not in (None, "??") else None,
                    file=f.get("file"),
                    line=_int_or_none(f.get("line"), 10),
                )
            )
        return out

    def monitor(self, command: str) -> str:
        """A gdbemu monitor command (``info tlb``, ``info mem``, ``stats`` ...); returns its text."""
        return self._cli(f"monitor {command}")

    def gdb_command(self, command: str) -> str:
        """Any gdb CLI command; returns what it printed (for what has no method here)."""
        return self._cli(command)

    def mi(self, command: str, *, timeout: float | None = None) -> dict[str, Any]:
        """Any gdb/MI command (``-break-info 1``, ``-data-list-register-values x``); returns the result
        record's fields (what follows ``^done,``), GdbError on ``^error``.  For what has no method here;
        a resume sent this way is not awaited (use :meth:`cont_nowait` and :meth:`wait_stop`)."""
        return self._mi(command, timeout=timeout)

    def symbol(self, pc: int) -> str | None:
        """The function containing ``pc`` (gdb's ``info symbol``), or None."""
        text = self._cli(f"info symbol {pc:#x}").strip()
        m = re.match(r"([\w.$@]+)(?: \+ \d+)? in section", text)
        return m.group(1) if m else None

    # ---- gdbemu's own watch features ------------------------------------------------------------------
    def has_monitor(self, command: str) -> bool:
        """True if this gdbemu's ``monitor help`` lists ``command`` (e.g. "watch log", "watch cond")."""
        if self._monitor_commands is None:
            self._monitor_commands = self.monitor("help")
        return re.search(rf"^\s*{re.escape(command)}\b", self._monitor_commands, re.M) is not None

    def _require_monitor(self, command: str) -> None:
        if not self.has_monitor(command):
            raise UnsupportedError(f"this gdbemu has no 'monitor {command}' (see 'monitor help')")

    def watch_log(self, enable: bool = True) -> None:
        """Turn gdbemu's watch log on (hits of gdb's watchpoints are recorded and do not stop) or off.

        With the log on, ``cont`` runs through every watchpoint hit (a hit
        whose ``target_condition`` is true still stops) and
        :meth:`watch_records` returns them all afterwards: one round trip for
        a run, instead of one per hit.
        """
        self._require_monitor("watch log")
        self.monitor(f"watch log {'on' if enable else 'off'}")

    def watch_records(self, *, resolve: bool = True, clear: bool = False) -> list[WatchRecord]:
        """Everything gdbemu's watch log holds, oldest first; ``resolve`` names each record's function."""
        self._require_monitor("watch log")
        text = self.monitor("watch log json")
        start = text.find("{")
        if start < 0:
            raise SessionError(f"monitor watch log json: unexpected answer {text[:200]!r}")
        doc = json.loads(text[start:])
        names: dict[int, str | None] = {}
        out: list[WatchRecord] = []
        for r in doc.get("records", []):
            pc = int(r["pc"])
            if resolve and pc not in names:
                names[pc] = self.symbol(pc)
            out.append(
                WatchRecord(
                    seq=int(r["seq"]),
                    icount=int(r["icount"]),
                    pc=pc,
                    access=str(r["access"]),
                    address=int(r["addr"]),
                    size=int(r["size"]),
                    old=r.get("old"),
                    new=r.get("new"),
                    stopped=bool(r.get("stopped")),
                    function=names.get(pc),
                    watchpoint=r.get("watchpoint") or {},
                )
            )
        if clear:
            self.monitor("watch log clear")
        return out

    # ---- leaving -------------------------------------------------------------------------------------------
    def detach(self) -> None:
        """Detach gdb from the stub (``-target-detach``): the guest runs on, without breakpoints.

        Close the session next.  An emulator given to :meth:`connect` with
        ``own_emulator=False`` runs on and takes the next session.
        """
        self._require_alive()
        self._mi("-target-detach", what="gdb to detach")
        self._detached = True

    def kill_gdb(self) -> None:
        """SIGKILL gdb, as a debugger that dies without a word: the stub sees the connection drop.

        The session is unusable afterwards; close it (an owned emulator is
        killed then, one given with ``own_emulator=False`` runs on).
        """
        if self._gdb is not None and self._gdb.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._gdb.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._gdb.wait(timeout=10)
        self._gdb_stuck = True

    # ---- teardown ------------------------------------------------------------------------------------------
    def close(self) -> None:
        """End both processes (gently if they listen, by SIGKILL to their process groups if not), reap them.

        Idempotent; the serial output and gdbemu's stderr stay readable afterwards.
        """
        if self._closed:
            return
        try:
            self._shutdown_gently()
        except Exception:  # noqa: BLE001 - whatever happened, the kill below must run
            pass
        finally:
            self._closed = True
            self._reaper.kill()
            if self._emu is not None and self._ended is not None and self._ended.reason == StopReason.EXITED:
                if self._exit_code is None and self._emu.returncode is not None and self._emu.returncode >= 0:
                    self._exit_code = self._emu.returncode
            self._final_serial = self._read_text(self.serial_path)
            self._final_stderr = self.gdbemu_stderr
            if self._owned_emulator is not None:
                self._owned_emulator.close()
            self._finalizer()

    def _shutdown_gently(self) -> None:
        """``kill`` through gdb (gdbemu flushes its files and exits), then ``-gdb-exit``; a few seconds at most."""
        if not self._connected or self._gdb_stuck or self._gdb is None or self._gdb.poll() is not None:
            return
        if self._running and not self._interrupt():
            return
        if self._ended is None and not self._detached:
            with contextlib.suppress(GdbError):
                self._mi("-interpreter-exec console kill", what="gdb to kill the guest", timeout=3)
        token = next(self._tokens)
        self._write(f"{token}-gdb-exit")
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._gdb.wait(timeout=3)
        if self._emu is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._emu.wait(timeout=3)
        deadline = time.monotonic() + 3
        while self.gdbemu_pid is not None and self._emu is None and pid_alive(self.gdbemu_pid):
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("ended" if self._ended else "live")
        return f"<gdbemu.testing.Session {self.kernel.name} {state} gdb={self.gdb_pid} gdbemu={self.gdbemu_pid}>"


def _finalize(reaper: _Reaper, directory: Path, keep: bool) -> None:
    reaper.kill()
    if not keep:
        shutil.rmtree(directory, ignore_errors=True)


def stops_summary(stops: Iterable[Stop], limit: int = 10) -> str:
    """The last ``limit`` stops, one per line (for reports)."""
    items = list(stops)
    lines = [s.describe() for s in items[-limit:]]
    if len(items) > limit:
        lines.insert(0, f"... {len(items) - limit} earlier stops")
    return "\n".join(lines) if lines else "(no stops)"
