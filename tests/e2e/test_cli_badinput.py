"""Bad command lines: one line and exit 2, or a run; never a traceback (issue 14 items 6 and 9).

The fuzzer draws command lines from the option grammar (the option table of
gdbemu/cli/options.py, each option with values that are valid, almost valid
or hostile) and runs ``cli.main`` in-process with a short instruction budget;
a small sample runs as the real command (a subprocess).  Either the run
starts (exit status from the guest) or the command prints exactly one line
starting ``gdbemu:`` on stderr and exits 2 — an exception escaping ``main``
fails the test.
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gdbemu.cli import main
from gdbemu.cli.options import OPTIONS
from gdbemu.debug.target import MachineTarget
from gdbemu.machine import Machine
from gdbemu.rsp.server import GdbServer, parse_endpoint

REPO = Path(__file__).resolve().parents[2]
QUICK = ("-display", "none", "-max-insns", "2000", "-gdb", "none", "-serial", "none", "-debugcon", "none")
EXAMPLES = int(os.environ.get("GDBEMU_FUZZ_EXAMPLES", "300"))  # command lines in process (a few hundred)


def run_main(argv: list[str]) -> tuple[int, str]:
    """``cli.main`` in-process: (exit status, stderr)."""
    err = io.StringIO()
    out = io.TextIOWrapper(io.BytesIO())  # devices on stdio write to sys.stdout.buffer
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        status = main(argv)
    return status, err.getvalue()


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "gdbemu.cli", *args],
        capture_output=True,
        timeout=timeout,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def assert_one_line_usage_error(status: int, err: str) -> None:
    lines = [line for line in err.splitlines() if line.strip() and "booting the demo kernel" not in line]
    assert status == 2, err
    assert len(lines) == 1 and lines[0].startswith("gdbemu: "), err
    assert "Traceback" not in err
    assert len(lines[0]) < 300, lines[0]


# ---- the reported inputs ------------------------------------------------------------------------
HUGE = "1" + "0" * 5000


@pytest.mark.parametrize("size", ["inf", "1e400", "-infM", HUGE, "nan", "-1", "0", "1e3", "0x10", "5T", "3.01G"])
def test_bad_memory_sizes_are_one_line_and_exit_2(size):
    assert_one_line_usage_error(*run_main(["-m", size, *QUICK]))


@pytest.mark.parametrize("size", ["2", "32M", "1.5G", "3G", "size=64M", "64MB", "3072"])
def test_memory_sizes_up_to_3g_run(size):
    status, err = run_main(["-m", size, *QUICK])
    assert status == 0, err


def test_bad_sizes_from_the_real_command():
    for size in ("inf", HUGE):
        proc = run_cli("-m", size, *QUICK)
        assert_one_line_usage_error(proc.returncode, proc.stderr.decode())


@pytest.mark.parametrize("option", ["-serial", "-debugcon"])
def test_unopenable_console_files_are_one_line_and_exit_2(option, tmp_path):
    quick = [a for a in QUICK if a not in ("-serial", "-debugcon", "none")]
    for spec in (f"file:{tmp_path}/missing/x", f"file:{tmp_path}"):
        assert_one_line_usage_error(*run_main([option, spec, *quick]))


def test_S_alone_opens_nothing_and_says_so():
    """QEMU's -S without -s/-gdb opens nothing and waits for its monitor; gdbemu has none: exit 2."""
    assert_one_line_usage_error(*run_main(["-S", "-display", "none"]))
    assert_one_line_usage_error(*run_main(["-S", "-gdb", "none"]))
    proc = run_cli("-S", "-display", "none")
    assert_one_line_usage_error(proc.returncode, proc.stderr.decode())
    assert "-s" in proc.stderr.decode() and "-gdb" in proc.stderr.decode()


def test_gdb_unix_socket_of_a_live_process_is_not_unlinked(tmp_path):
    path = tmp_path / "live.sock"
    live = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    live.bind(str(path))
    live.listen(1)
    try:
        status, err = run_main(["-gdb", f"unix:{path}", "-display", "none", "-serial", "none", "-debugcon", "none"])
        assert_one_line_usage_error(status, err)
        assert "live socket of another process" in err
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.connect(str(path))  # still the other process's
        probe.close()
    finally:
        live.close()


def test_gdb_unix_socket_left_stale_is_replaced(tmp_path):
    path = tmp_path / "stale.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()  # the file stays; nobody listens
    server = GdbServer(MachineTarget(Machine(ram_size=2 << 20)), parse_endpoint(f"unix:{path}"))
    server.listen()
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.connect(str(path))
    probe.close()
    server._close()
    assert not path.exists()


# ---- the fuzzer -------------------------------------------------------------------------------
_VALUES = {
    "m": ["32", "64M", "size=16M", "1G", "inf", "-5", "1e9", "0", "9" * 60, "3G", "4G", "12k", "1.25G", "M", ""],
    "serial": ["none", "null", "stdio", "mon:stdio", "vc", "file:/nonexistent/x", "file:/", "file:", "tcp::1", ""],
    "debugcon": ["none", "null", "file:/nonexistent/y", "file:/", "pty"],
    "gdb": ["none", "tcp::0", "tcp:127.0.0.1:0", "tcp::99999", "tcp::-1", "unix:", "bogus", "tcp:::::", ""],
    "icount": ["shift=3", "shift=11", "shift=x", "sleep=maybe", "auto", "shift=auto,sleep=off", "shift=-1"],
    "d": ["int", "help", "nonsense", "in_asm,exec", ",", "trace:x"],
    "smp": ["1", "2", "cpus=1,cores=2", "x", "0"],
    "cpu": ["qemu32", "nope", "max,+sse", "help"],
    "max-insns": ["1", "0", "-1", "x", "1" * 30 + "x"],
    "rtc": ["base=utc", "base=2000-01-01T00:00:00", "base=2000-13-40", "clock=vm", "base="],
    "machine": ["pc", "q35", "help", "pc,accel=kvm", "type="],
    "device": ["isa-debug-exit,iobase=0xf4,iosize=0x04", "isa-debug-exit,iobase=zz", "nonexistent", "help"],
    "kernel": ["/nonexistent", "/", "/dev/null", "/etc/hostname"],
    "append": ["console=ttyS0", ""],
    "initrd": ["/nonexistent", "/dev/zero"],
    "vga": ["std", "none", "cirrus"],
}
# Options that print a listing and exit 0, or need a terminal or gdb to end: left out.
_LEFT_OUT = {"S", "s", "h", "help", "version", "nographic", "D"}


@st.composite
def command_lines(draw: st.DrawFn) -> list[str]:
    argv: list[str] = []
    names = sorted(n for n in OPTIONS if n not in _LEFT_OUT)
    for _ in range(draw(st.integers(0, 4))):
        name = draw(st.sampled_from([*names, "bogus-option"]))
        argv.append(draw(st.sampled_from(["-", "--"])) + name)
        if OPTIONS.get(name, False):
            if draw(st.booleans()):
                values = _VALUES.get(name, ["", "x", "on", "1"])
                argv.append(draw(st.sampled_from(values)))
            else:
                argv.append(draw(st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)))
    if draw(st.integers(0, 9)) == 0:
        argv.append(draw(st.sampled_from(["stray.elf", "-", "--", "-m"])))
    return argv


def check_run(status: int, err: str) -> None:
    assert "Traceback" not in err, err
    if status == 2:
        lines = [line for line in err.splitlines() if line.strip() and not line.startswith("gdbemu: note:")]
        assert lines and lines[-1].startswith("gdbemu: "), err


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(command_lines())
def test_fuzz_command_lines_in_process(argv):
    full = [*QUICK, *argv]  # what the fuzzer drew wins over the quick defaults
    try:
        status, err = run_main(full)
    except SystemExit as exc:  # main returns its status; nothing may exit under it
        raise AssertionError(f"SystemExit({exc.code}) from main({full!r})") from None
    check_run(status, err)


def test_fuzz_command_lines_subprocess_sample():
    """A few drawn command lines through the real command: the same rule from outside."""
    samples = [
        ["-m", "size=9999999999999999999999999T"],
        ["-serial", "file:/nonexistent/dir/x"],
        ["-debugcon", "file:/"],
        ["-kernel", "/"],
    ]
    for argv in samples:
        proc = run_cli(*QUICK, *argv)
        err = proc.stderr.decode()
        assert "Traceback" not in err, (argv, err)
        assert proc.returncode == 2, (argv, err)
        lines = [
            line for line in err.splitlines() if line.strip() and "note:" not in line and "demo kernel" not in line
        ]
        assert len(lines) == 1 and lines[0].startswith("gdbemu: "), (argv, err)


@pytest.mark.slow
@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(command_lines())
def test_fuzz_command_lines_in_process_slow(argv):
    full = [*QUICK, *argv]
    status, err = run_main(full)
    check_run(status, err)


def test_kernel_path_with_a_nul_is_one_line_and_2():
    """The slow command-line fuzzer's finding: the 64-bit-kernel probe opened '\\x00' (ValueError)."""
    status, err = run_main([*QUICK, "-kernel", "\x00"])
    assert status == 2
    check_run(status, err)
