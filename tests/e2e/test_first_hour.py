"""Issue 13, the first hour of an OS developer: each item through the ``gdbemu`` command.

The demo run that waits for gdb and names the gdb command, symbols through
``qXfer:exec-file:read`` (real gdb started with no file), serial input with
MCR = 0, the disk-image / -append / -S -gdb none / -gdb udp:: command lines,
``-display`` names gdbemu does not do, the exit line after gdb's ``kill``,
and time while gdb holds the CPU under ``-icount sleep=on``.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import build

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "gdbemu" / "demo" / "demo.elf"
GDB = shutil.which("gdb")
needs_gdb = pytest.mark.skipif(GDB is None, reason="gdb is not installed")
BANNER = re.compile(r"gdbemu: waiting for gdb on (\S+) \((gdb .*?)\)(; Ctrl-C quits)?$", re.M)


def cli(*args: str, stdin: bytes | None = None, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "gdbemu.cli", *args],
        capture_output=True,
        timeout=timeout,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        cwd=REPO,
        input=stdin,
        stdin=subprocess.DEVNULL if stdin is None else None,
    )


class Running:
    """gdbemu started in the background; ``banner()`` waits for the line naming the gdb command."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gdbemu.cli", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(os.environ, PYTHONPATH=str(REPO)),
            cwd=REPO,
        )
        self.err = b""

    def banner(self) -> tuple[str, str]:
        """(host:port, the gdb command) from the banner on stderr."""
        assert self.proc.stderr is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            self.err += line
            m = BANNER.search(line.decode())
            if m:
                return m.group(1), m.group(2)
        raise AssertionError(f"no banner: {self.err.decode()}")

    def finish(self, timeout: float = 60) -> tuple[int, bytes, bytes]:
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, self.err + err

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


@pytest.fixture
def running() -> Iterator[list[Running]]:
    started: list[Running] = []
    yield started
    for r in started:
        r.kill()


def gdb_batch(*commands: str, args: tuple[str, ...] = (), cwd: Path | None = None) -> str:
    assert GDB is not None
    argv = [GDB, "-nx", "-batch", *args]
    for c in commands:
        argv += ["-ex", c]
    proc = subprocess.run(argv, capture_output=True, timeout=120, cwd=cwd, stdin=subprocess.DEVNULL)
    return proc.stdout.decode() + proc.stderr.decode()


# ---- the demo race -----------------------------------------------------------------------------
@needs_gdb
def test_demo_waits_for_gdb_and_its_banner_gives_the_gdb_command(running, tmp_path):
    """``gdbemu`` with no arguments waits (as -S); the banner's command, typed as is, debugs the demo."""
    r = Running()
    running.append(r)
    where, command = r.banner()
    argv = shlex.split(command)
    assert argv[0] == "gdb" and Path(argv[1]) == DEMO and argv[2:] == ["-ex", f"target remote {where}"]
    time.sleep(0.5)
    assert r.proc.poll() is None  # nothing ran away before gdb came
    out = gdb_batch("break round_loop", "continue", "delete", "continue", args=(*argv[1:],), cwd=tmp_path)
    assert "Breakpoint 1, 0x" in out and "round_loop" in out
    status, stdout, _ = r.finish()
    assert "round 8:" in stdout.decode() and stdout.decode().rstrip().endswith("done.")
    assert status == 0  # the demo's normal finish


# ---- symbols without asking ---------------------------------------------------------------
@needs_gdb
def test_gdb_with_no_file_loads_the_kernel_symbols(running, tmp_path):
    r = Running("-kernel", str(DEMO), "-S", "-gdb", "tcp:127.0.0.1:0", "-display", "none", "-serial", "null")
    running.append(r)
    where, _ = r.banner()
    out = gdb_batch(f"target remote {where}", "info symbol $pc", "print &round_loop", "kill", cwd=tmp_path)
    assert f"Reading symbols from {DEMO}" in out
    assert "_start in section .text" in out
    assert "round_loop" in out and "No symbol" not in out


# ---- the exit line ------------------------------------------------------------------------------
@needs_gdb
def test_exit_line_names_gdbs_kill_with_d(running, tmp_path):
    log = tmp_path / "log"
    r = Running(
        "-kernel", str(DEMO), "-S", "-gdb", "tcp:127.0.0.1:0", "-serial", "null", "-d", "int", "-D", str(log)
    )  # fmt: skip
    running.append(r)
    where, command = r.banner()
    gdb_batch(f"target remote {where}", "break round_loop", "continue", "kill", cwd=tmp_path)
    status, _, err = r.finish()
    lines = [line for line in err.decode().splitlines() if "instructions in" in line]
    assert len(lines) == 1 and lines[0].startswith("gdbemu: killed (by gdb): "), err.decode()


def test_no_exit_line_when_stderr_is_not_a_terminal():
    proc = cli("-kernel", str(DEMO), "-gdb", "none", "-display", "none")
    assert proc.returncode == 1 and b"done." in proc.stdout
    assert b"instructions in" not in proc.stderr


# ---- serial input -------------------------------------------------------------------------------
def test_serial_input_interrupts_with_mcr_zero(tmp_path):
    """The guest writes 0 to MCR (no OUT2), enables ERBFI and halts: the typed byte still raises IRQ4 (as QEMU)."""
    elf = build.build_guest("fh_serial_mcr0", tmp_path)
    proc = cli("-kernel", str(elf), "-debugcon", "null", "-no-reboot", stdin=b"x")
    assert proc.stdout == b"ready\ngot x\n", proc.stderr.decode()
    assert proc.returncode == 1


# ---- command lines ------------------------------------------------------------------------------
@pytest.mark.parametrize("option", ["-hda", "-cdrom", "-fda", "-drive"])
def test_disk_image_without_kernel_is_one_line_and_exit_2(option, tmp_path):
    img = tmp_path / "disk.img"
    img.write_bytes(bytes(512))
    proc = cli(option, str(img) if option != "-drive" else f"file={img},format=raw")
    err = proc.stderr.decode().strip()
    assert proc.returncode == 2 and err.count("\n") == 0
    assert "boots kernels with -kernel" in err and option in err


def test_disk_image_with_kernel_is_ignored_with_a_note(tmp_path):
    proc = cli("-kernel", str(DEMO), "-hda", str(tmp_path / "x.img"), "-gdb", "none")
    assert proc.returncode == 1 and b"-hda: ignored" in proc.stderr


@pytest.mark.parametrize("option", ["-append", "-initrd"])
def test_append_and_initrd_need_a_kernel(option):
    proc = cli(option, "x")
    assert proc.returncode == 2 and proc.stderr.decode().strip() == f"gdbemu: {option} only allowed with -kernel option"


def test_S_with_gdb_none_announces_no_port():
    proc = cli("-kernel", str(DEMO), "-S", "-gdb", "none")
    err = proc.stderr.decode().strip()
    assert proc.returncode == 2 and err.count("\n") == 0 and "1234" not in err and "waiting" not in err


def test_gdb_udp_is_one_line():
    proc = cli("-kernel", str(DEMO), "-gdb", "udp::1234")
    err = proc.stderr.decode().strip()
    assert proc.returncode == 2 and err.count("\n") == 0 and "tcp::PORT" in err


def test_display_gdbemu_does_not_do_says_what_it_does_instead():
    proc = cli("-kernel", str(DEMO), "-gdb", "none", "-display", "gtk")
    notes = [line for line in proc.stderr.decode().splitlines() if "-display" in line]
    assert proc.returncode == 1 and len(notes) == 1
    assert "-display curses" in notes[0] and "screendump" in notes[0]


# ---- time while stopped -------------------------------------------------------------------------
@needs_gdb
def test_time_held_by_gdb_is_not_made_up_with_sleep_on(tmp_path):
    """-icount sleep=on: after gdb held the CPU for HOLD s, the rest of the guest's seconds still take wall seconds.

    The guest prints once per second of virtual time (PIT at 100 Hz) for 4 s.  gdb stops it after
    its first second and holds it 2 s.  Were the held time made up, the remaining ~3 virtual
    seconds would run flat out (well under a second); paced, they take about 3 wall seconds.
    """
    from gdbemu.testing import Session

    elf = build.build_guest(build.GUEST_DIR / "fh_ticks.s", tmp_path, defsyms={"TICKS_END": 4})
    log = tmp_path / "int.log"
    with Session.boot(elf, extra_args=("-icount", "shift=3,sleep=on", "-d", "int", "-D", str(log))) as s:
        s.cont_nowait()
        deadline = time.monotonic() + 60
        while "tick 1" not in s.serial_output and time.monotonic() < deadline:
            time.sleep(0.02)
        s.interrupt()
        held_at = s.read_int("*(int *)&ticks")
        time.sleep(2.0)
        assert s.read_int("*(int *)&ticks") == held_at  # no virtual time ran while held
        resumed = time.monotonic()
        s.cont_nowait()
        stop = s.wait_stop(what="the guest to exit")
        wall = time.monotonic() - resumed
        assert s.exit_code == 1  # waits for gdbemu to exit, so its exit line is written
        stderr = s.gdbemu_stderr
    assert stop.ended and "tick 4" in s.serial_output
    virtual = (400 - held_at) / 100  # seconds of guest time still to run at the resume
    print(f"held at tick {held_at}: {virtual:.2f} s of guest time took {wall:.2f} s of wall time after the hold")
    assert wall > virtual - 0.5
    # The exit line (printed with -d) counts only the time the guest ran: not the pacer's sleeps, not the hold.
    m = re.search(r"gdbemu: exit \(.*?\): (\d+) instructions in ([\d.]+) s \(([\d.]+) MIPS\)", stderr)
    assert m, stderr
    assert float(m.group(2)) < 4.0 and float(m.group(3)) > 0.0


# ---- QEMU command lines with only the binary swapped ---------------------------------------------
SLOW = pytest.mark.slow
QEMU_LINES = [
    "-kernel {demo} -nographic -no-reboot -device isa-debug-exit,iobase=0xf4,iosize=0x04 "
    "-icount shift=3,sleep=off -m 64M -M pc -accel tcg,thread=single",
    "-kernel {demo} -chardev stdio,id=c0 -serial chardev:c0 -display none -no-reboot -no-shutdown "
    "-device isa-debug-exit,iobase=0xf4,iosize=0x04 -icount shift=3,sleep=off -d int,cpu_reset -D {tmp}/log "
    "-name demo -vga std -rtc base=localtime -echr 0x14 -no-user-config",
    "-kernel {demo} -serial stdio -display none -device isa-debug-exit,iobase=0xf4,iosize=0x04 "
    "-icount shift=3,sleep=off -smp 1 -boot order=c -k en-us -usb -net none -machine q35 -global x.y=1",
]


@pytest.mark.skipif(shutil.which("qemu-system-i386") is None, reason="qemu-system-i386 not installed")
@pytest.mark.parametrize(
    "binary, line",
    [
        (binary, line) if (binary, line) == ("qemu-system-x86_64", 1) else pytest.param(binary, line, marks=SLOW)
        for binary in ("qemu-system-i386", "qemu-system-x86_64")
        for line in range(len(QEMU_LINES))
    ],
)
def test_qemu_command_lines_run_with_only_the_binary_swapped(binary, line, tmp_path):
    if shutil.which(binary) is None:
        pytest.skip(f"{binary} not installed")
    args = shlex.split(QEMU_LINES[line].format(demo=DEMO, tmp=tmp_path))
    qemu = subprocess.run([binary, *args], capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
    ours = cli(*args)
    assert b"Traceback" not in ours.stderr
    qemu_out = re.sub(rb"\x1b(c|\[[?0-9;]*[a-zA-Z])", b"", qemu.stdout)  # -nographic's terminal resets
    qemu_out = qemu_out[max(qemu_out.find(b"gdbemu demo"), 0) :]  # -nographic: SeaBIOS's banner on COM1 first
    assert ours.stdout == qemu_out and ours.returncode == qemu.returncode, ours.stderr.decode()
