"""The curses display through a real terminal: gdbemu runs in a tmux pane, the test reads the pane and types.

``fh_vga_keys`` writes "Hello from VGA" (white on blue) and "type:" to the
text buffer and echoes the letters it reads from the 8042; 'q' writes "bye"
to COM1 and exits with status 3.  ``fh_serial_mcr0``-style serial-only guests never write to VGA, so
the default rule keeps the plain terminal for them.  Each test runs its own
tmux server (``-L``), so parallel workers never share one.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support import build

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


class Pane:
    """One tmux server with one 100x30 pane running a shell command."""

    def __init__(self, command: str, status_file: Path) -> None:
        self.socket = f"gdbemu-{uuid.uuid4().hex[:12]}"
        self.status_file = status_file
        shell = f"cd {shlex.quote(str(REPO))} && {command}; echo $? > {shlex.quote(str(status_file))}; sleep 60"
        env = dict(os.environ, PYTHONPATH=str(REPO), TERM="xterm-256color")
        subprocess.run(
            ["tmux", "-L", self.socket, "new-session", "-d", "-x", "100", "-y", "30", shell], check=True, env=env
        )

    def tmux(self, *args: str) -> str:
        proc = subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, check=True)
        return proc.stdout.decode(errors="replace")

    def text(self) -> str:
        return self.tmux("capture-pane", "-p")

    def wait_for(self, predicate: Callable[[str], bool], what: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while True:
            text = self.text()
            if predicate(text):
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; the pane shows:\n{text}")
            time.sleep(0.1)

    def status(self, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        while not self.status_file.exists() or not self.status_file.read_text().strip():
            if time.monotonic() > deadline:
                raise AssertionError(f"gdbemu did not exit; the pane shows:\n{self.text()}")
            time.sleep(0.1)
        return int(self.status_file.read_text())

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)


@pytest.fixture
def panes() -> Iterator[list[Pane]]:
    made: list[Pane] = []
    yield made
    for p in made:
        p.kill()


def gdbemu_cmd(*args: str) -> str:
    return shlex.join([sys.executable, "-m", "gdbemu.cli", *args])


def test_vga_text_is_drawn_in_the_terminal_and_keys_reach_the_guest(tmp_path, panes):
    """No -display: stdout is a terminal and the guest writes to VGA, so the display opens (as QEMU's window)."""
    elf = build.build_guest(build.GUEST_DIR / "fh_vga_keys.s", tmp_path)
    pane = Pane(gdbemu_cmd("-kernel", str(elf)), tmp_path / "status")
    panes.append(pane)
    screen = pane.wait_for(lambda t: "Hello from VGA" in t, "the guest's VGA text")
    lines = screen.splitlines()
    assert lines[0].rstrip() == "Hello from VGA" and lines[2].rstrip() == "type:"
    coloured = pane.tmux("capture-pane", "-e", "-p").splitlines()[0]
    assert "\x1b[44m" in coloured or "\x1b[48;5;4m" in coloured or "4;" in coloured  # blue background
    pane.tmux("send-keys", "abc")
    pane.wait_for(lambda t: "type: abc" in t, "the typed keys echoed by the guest")
    cursor = pane.tmux("display-message", "-p", "#{cursor_x},#{cursor_y}").strip()
    assert cursor == "9,2"  # the hardware cursor after "type: abc"
    assert "bye" not in pane.text()
    pane.tmux("send-keys", "q")
    assert pane.status() == 3
    pane.wait_for(lambda t: "bye" in t, "COM1's output, held while the display was open")


def test_a_serial_only_guest_keeps_the_plain_terminal(tmp_path, panes):
    elf = build.build_guest(build.GUEST_DIR / "fh_serial_mcr0.s", tmp_path)
    pane = Pane(gdbemu_cmd("-kernel", str(elf), "-debugcon", "null", "-no-reboot"), tmp_path / "status")
    panes.append(pane)
    pane.wait_for(lambda t: "ready" in t, "the guest's serial output")
    pane.tmux("send-keys", "z")
    pane.wait_for(lambda t: "got z" in t, "the typed byte echoed over COM1")
    assert pane.status() == 1


def test_display_curses_with_serial_stdio_holds_the_serial_output_until_the_end(tmp_path, panes):
    """-display curses opens at once (the prompt is drawn), even with -serial stdio; COM1 shows after it closes."""
    elf = build.build_guest(build.GUEST_DIR / "fh_vga_keys.s", tmp_path)
    pane = Pane(gdbemu_cmd("-kernel", str(elf), "-display", "curses", "-serial", "stdio"), tmp_path / "status")
    panes.append(pane)
    pane.wait_for(lambda t: "Hello from VGA" in t, "the guest's VGA text")
    pane.tmux("send-keys", "q")
    assert pane.status() == 3
    pane.wait_for(lambda t: "bye" in t, "COM1's output after the display closed")
