"""pytest plugin for gdbemu: the ``gdbemu`` fixture, failure reports, golden stop traces.

Registered through the ``pytest11`` entry point (``gdbemu =
"gdbemu.pytest_plugin"``), so installing gdbemu is enough; from a source
checkout that is not installed, add ``pytest_plugins =
["gdbemu.pytest_plugin"]`` to the top-level ``conftest.py``.

A watchpoint regression test::

    @pytest.mark.gdb
    def test_only_the_timer_writes_ticks(gdbemu):
        s = gdbemu("kernel.elf")                 # a gdbemu.testing.Session, closed after the test
        s.watch("ticks")
        for stop in s.cont_to_exit():
            assert stop.function == "timer_irq", stop.describe()

When such a test fails, the report has a section per session the test used:
the guest's serial output, the last stops, and the registers and backtrace
at the moment of the failure (read before the session is closed: the report
hook runs before fixture teardown).  Why: a watchpoint test fails far from
its cause, and the first question is always "what did the kernel print, and
where was it?".

Golden stop traces (``gdbemu_golden`` fixture): the sequence of watchpoint
hits (expression, old -> new, function, pc) of a run, written to
``golden/<test name>.trace`` next to the test file the first time (or with
``--gdbemu-update-golden``) and compared on later runs, with a unified diff
on mismatch.  Sessions are deterministic (see gdbemu.testing), so a diff is
a change in the kernel's behaviour, not noise.

Options: ``--gdbemu-gdb PATH`` (the gdb to run), ``--gdbemu-timeout SECONDS``
(the bound of every wait in a session), ``--gdbemu-update-golden``.
Without gdb, tests using the fixture are skipped, not failed.
"""

from __future__ import annotations

import difflib
import re
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest

from .testing import DEFAULT_TIMEOUT, GdbNotFoundError, Session, Stop, stops_summary

__all__ = ["BootedKernels", "GoldenTrace", "GoldenTraceRecorded", "SessionFactory"]

_SESSIONS = pytest.StashKey[list[Session]]()
SERIAL_TAIL_LINES = 200
STOPS_SHOWN = 10
REPORT_TIMEOUT = 5.0  # reading registers for a report must not hang the run


class SessionFactory(Protocol):
    """What the ``gdbemu`` fixture yields: ``gdbemu(kernel=None, **Session.boot options) -> Session``."""

    def __call__(self, kernel: Any = None, **kwargs: Any) -> Session: ...


class GoldenTraceRecorded(UserWarning):
    """A golden trace did not exist and was written: check it in."""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gdbemu", "gdbemu sessions (gdbemu.testing)")
    group.addoption(
        "--gdbemu-gdb",
        metavar="PATH",
        default=None,
        help="the gdb executable for gdbemu sessions (default: $GDBEMU_GDB, else gdb on PATH)",
    )
    group.addoption(
        "--gdbemu-timeout",
        metavar="SECONDS",
        type=float,
        default=None,
        help=f"bound of every wait in a gdbemu session (default {DEFAULT_TIMEOUT:g})",
    )
    group.addoption(
        "--gdbemu-update-golden",
        action="store_true",
        default=False,
        help="rewrite golden stop traces with this run's instead of comparing",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "gdb: tests that drive the real gdb (gdbemu sessions)")


@pytest.fixture
def gdbemu(request: pytest.FixtureRequest) -> Iterator[SessionFactory]:
    """A factory of gdbemu sessions: ``gdbemu(kernel=None, **Session.boot options) -> Session``.

    Every session it made is closed when the test ends (both processes
    killed and reaped, whatever the outcome); a test without gdb installed
    is skipped.  The command-line options supply ``gdb`` and ``timeout``
    unless the call gives them.
    """
    sessions = request.node.stash.setdefault(_SESSIONS, [])
    config = request.config

    def factory(kernel: Any = None, **kwargs: Any) -> Session:
        if config.getoption("gdbemu_gdb") is not None:
            kwargs.setdefault("gdb", config.getoption("gdbemu_gdb"))
        if config.getoption("gdbemu_timeout") is not None:
            kwargs.setdefault("timeout", config.getoption("gdbemu_timeout"))
        try:
            session = Session.boot(kernel, **kwargs)
        except GdbNotFoundError as exc:
            pytest.skip(str(exc))
        sessions.append(session)
        return session

    try:
        yield factory
    finally:
        for session in sessions:
            session.close()


class BootedKernels:
    """Kernels booted once per test session and snapshotted (``monitor savevm``); see ``gdbemu_booted``.

    ``get(kernel, until=None, **boot options)``: the first call for a
    (kernel, until, options) boots a session, runs it to ``until`` (a
    location, as ``run_to``; None: the entry point) and saves the snapshot
    ``pytest-booted`` into a file of the test session's temporary directory.
    Every call after that puts the same session back in that state
    (``monitor loadvm``: milliseconds) with no breakpoints, watchpoints or
    displays left by the test before; a session whose guest ended (gdb
    disconnects when a guest exits) is replaced by a new process started
    from the snapshot file (``-loadvm``), which skips the boot.
    """

    SNAPSHOT = "pytest-booted"

    def __init__(self, tmp_dir: Path, defaults: dict[str, Any]) -> None:
        self.tmp_dir = tmp_dir
        self.defaults = defaults
        self.sessions: dict[str, Session] = {}
        self.files: dict[str, Path] = {}

    def get(self, kernel: Any, until: str | None = None, **kwargs: Any) -> Session:
        for key, value in self.defaults.items():
            kwargs.setdefault(key, value)
        key = repr((str(kernel), until, sorted(kwargs.items())))
        session = self.sessions.get(key)
        if session is not None and session.alive:
            session.gdb_command("delete")
            session.gdb_command("delete display")
            session.monitor(f"loadvm {self.SNAPSHOT}")
            session.gdb_command("maintenance flush register-cache")
            return session
        snapfile = self.files.get(key)
        if session is not None:
            session.close()
        extra = list(kwargs.pop("extra_args", ()))
        if snapfile is not None:
            session = Session.boot(
                kernel, extra_args=[*extra, "-snapshot-file", str(snapfile), "-loadvm", self.SNAPSHOT], **kwargs
            )
        else:
            snapfile = self.tmp_dir / f"booted-{len(self.files)}.snapshots"
            session = Session.boot(kernel, extra_args=[*extra, "-snapshot-file", str(snapfile)], **kwargs)
            if until is not None:
                session.run_to(until)
                session.gdb_command("delete")
            session.monitor(f"savevm {self.SNAPSHOT}")
            self.files[key] = snapfile
        self.sessions[key] = session
        return session

    def close(self) -> None:
        for session in self.sessions.values():
            session.close()


@pytest.fixture(scope="session")
def _gdbemu_booted_kernels(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BootedKernels]:
    config = request.config
    defaults: dict[str, Any] = {}
    if config.getoption("gdbemu_gdb") is not None:
        defaults["gdb"] = config.getoption("gdbemu_gdb")
    if config.getoption("gdbemu_timeout") is not None:
        defaults["timeout"] = config.getoption("gdbemu_timeout")
    kernels = BootedKernels(tmp_path_factory.mktemp("gdbemu-booted"), defaults)
    try:
        yield kernels
    finally:
        kernels.close()


@pytest.fixture
def gdbemu_booted(request: pytest.FixtureRequest, _gdbemu_booted_kernels: BootedKernels) -> SessionFactory:
    """``gdbemu_booted(kernel, until=None, **Session.boot options) -> Session``: a kernel booted once
    per test session (to ``until``), snapshotted, and restored for each test (``BootedKernels``).

    The session is shared between tests, so a test must not close it; its
    failure report has the session's sections like ``gdbemu``'s.
    """
    sessions = request.node.stash.setdefault(_SESSIONS, [])

    def factory(kernel: Any = None, **kwargs: Any) -> Session:
        try:
            session = _gdbemu_booted_kernels.get(kernel, **kwargs)
        except GdbNotFoundError as exc:
            pytest.skip(str(exc))
        sessions.append(session)
        return session

    return factory


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    """Attach each session's serial output, last stops and registers to a failed test's report."""
    outcome: Any = yield
    report: pytest.TestReport = outcome.get_result()
    if not report.failed or report.when not in ("setup", "call"):
        return
    sessions: list[Session] = item.stash.get(_SESSIONS, [])
    for i, session in enumerate(sessions, 1):
        for title, text in session_report(session):
            report.sections.append((f"gdbemu session {i} ({session.kernel.name}): {title}", text))


def session_report(session: Session) -> list[tuple[str, str]]:
    """The (title, text) sections describing a session: serial output, last stops, registers."""
    serial = session.serial_output
    lines = serial.splitlines()
    if len(lines) > SERIAL_TAIL_LINES:
        serial = f"... {len(lines) - SERIAL_TAIL_LINES} lines before\n" + "\n".join(lines[-SERIAL_TAIL_LINES:])
    state = stops_summary(session.stops, STOPS_SHOWN)
    if session.exit_code is not None:
        state += f"\nexit code: {session.exit_code}"
    return [
        ("serial output", serial or "(nothing on COM1)"),
        ("last stops", state),
        ("registers", _registers_text(session)),
    ]


def _registers_text(session: Session) -> str:
    if not session.alive:
        return f"(none: {'the guest has ended' if session.stops and session.stops[-1].ended else 'session closed'})"
    saved = session.timeout
    session.timeout = min(saved, REPORT_TIMEOUT)
    try:
        regs = session.registers()
        frames = session.backtrace()
    except Exception as exc:  # noqa: BLE001 - a report must not fail the run a second time
        return f"(could not read them: {exc})"
    finally:
        session.timeout = saved
    names = [
        "eax",
        "ecx",
        "edx",
        "ebx",
        "esp",
        "ebp",
        "esi",
        "edi",
        "eip",
        "eflags",
        "cs",
        "ss",
        "ds",
        "es",
        "fs",
        "gs",
        "cr0",
        "cr2",
        "cr3",
        "cr4",
    ]
    shown = [(n, regs[n]) for n in names if n in regs]
    rows = [" ".join(f"{n:>6}={v:08x}" for n, v in shown[i : i + 5]) for i in range(0, len(shown), 5)]
    rows.append("backtrace:")
    for f in frames:
        where = f" ({f.file}:{f.line})" if f.file and f.line is not None else ""
        pc = f"{f.pc:#010x}" if f.pc is not None else "?"
        rows.append(f"  #{f.level} {pc} in {f.function or '??'}{where}")
    return "\n".join(rows)


# ---- golden stop traces --------------------------------------------------------------------------
class GoldenTrace:
    """Compares a run's stops with a golden trace file, or writes it (first run, --gdbemu-update-golden)."""

    def __init__(self, directory: Path, default_name: str, update: bool) -> None:
        self.directory = directory
        self.default_name = default_name
        self.update = update

    def path(self, name: str | None = None) -> Path:
        """Where the trace named ``name`` (default: the test's name) lives."""
        stem = re.sub(r"[^\w.-]+", "_", name or self.default_name).strip("_")
        return self.directory / f"{stem}.trace"

    @staticmethod
    def lines(stops: Iterable[Stop | str], watch_only: bool = True) -> list[str]:
        """The trace lines of ``stops``: watchpoint hits only unless ``watch_only`` is False; strings kept."""
        out = []
        for s in stops:
            if isinstance(s, str):
                out.append(s)
            elif not watch_only or s.reason == "watchpoint":
                out.append(s.trace_line())
        return out

    def check(self, stops: Iterable[Stop | str], name: str | None = None, *, watch_only: bool = True) -> None:
        """Fail with a unified diff if the trace of ``stops`` differs from the golden file.

        A missing file is written (with a GoldenTraceRecorded warning) and the
        check passes: the first run records, later runs compare.
        """
        path = self.path(name)
        actual = self.lines(stops, watch_only)
        header = [f"# golden stop trace ({len(actual)} lines); rewrite with pytest --gdbemu-update-golden"]
        if self.update or not path.exists():
            recorded = not path.exists()
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join(header + actual) + "\n")
            if recorded and not self.update:
                warnings.warn(GoldenTraceRecorded(f"recorded golden stop trace {path}"), stacklevel=2)
            return
        expected = [line for line in path.read_text().splitlines() if not line.startswith("#")]
        if expected != actual:
            diff = "\n".join(
                difflib.unified_diff(expected, actual, fromfile=f"{path} (golden)", tofile="this run", lineterm="")
            )
            pytest.fail(
                f"the stop trace differs from {path}\n(rerun with --gdbemu-update-golden to accept it)\n{diff}",
                pytrace=False,
            )


@pytest.fixture
def gdbemu_golden(request: pytest.FixtureRequest) -> GoldenTrace:
    """``gdbemu_golden.check(stops, name=None)``: compare with (or record) ``golden/<name>.trace``."""
    directory = Path(str(request.node.path)).parent / "golden"
    return GoldenTrace(directory, request.node.name, bool(request.config.getoption("gdbemu_update_golden")))
