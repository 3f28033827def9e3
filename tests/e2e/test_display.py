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
            ["tmux", "-L", self.socket, "-f", "/dev/null", "new-session", "-d", "-x", "100", "-y", "30", shell],
            check=True,
            env=env,
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


# ---- screendump -----------------------------------------------------------------------------------
def read_png(path: Path) -> tuple[int, int, bytes]:
    """(width, height, RGB bytes) of an 8-bit RGB PNG with filter-0 rows (what gdbemu writes)."""
    import struct
    import zlib

    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height = 8, b"", 0, 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        tag, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        assert zlib.crc32(tag + body) & 0xFFFFFFFF == struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])[0]
        if tag == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            assert (depth, colour) == (8, 2)
        elif tag == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = 1 + 3 * width
    assert len(raw) == stride * height and all(raw[y * stride] == 0 for y in range(height))
    return width, height, b"".join(raw[y * stride + 1 : (y + 1) * stride] for y in range(height))


def pixel(image: tuple[int, int, bytes], x: int, y: int) -> tuple[int, int, int]:
    width, _, rgb = image
    i = 3 * (y * width + x)
    return rgb[i], rgb[i + 1], rgb[i + 2]


def test_screendump_of_text_mode_13h_and_the_vbe_framebuffer(tmp_path):
    """gdb's `monitor screendump FILE` (QEMU's spelling) at three points of a guest that draws known pixels."""
    from gdbemu.testing import Session, find_gdb

    try:
        find_gdb()
    except Exception:
        pytest.skip("gdb is not installed")
    elf = build.build_guest(build.GUEST_DIR / "fh_gfx.s", tmp_path)
    text_png, m13_png, vbe_png = tmp_path / "text.png", tmp_path / "m13.png", tmp_path / "vbe.png"
    with Session.boot(elf) as s:
        assert "PNG (text)" in s.monitor(f"screendump {text_png}")
        s.break_at("mode13h_done")
        s.cont()
        assert "320x200 PNG (mode13h)" in s.monitor(f"screendump {m13_png}")
        s.break_at("vbe_done")
        s.cont()
        assert "64x48 PNG (vbe)" in s.monitor(f"screendump {vbe_png}")
        assert "usage" in s.monitor("screendump")
    text = read_png(text_png)
    assert text[0] == 720 or text[0] == 640  # 80 columns of 9- or 8-pixel glyphs
    m13 = read_png(m13_png)
    assert m13[:2] == (320, 200)
    assert pixel(m13, 0, 0) == (0, 0, 255)
    assert pixel(m13, 10, 20) == (255, 0, 0)
    assert pixel(m13, 319, 199) == (0, 255, 0)
    assert pixel(m13, 11, 20) == (0, 0, 0)
    vbe = read_png(vbe_png)
    assert vbe[:2] == (64, 48)
    assert pixel(vbe, 5, 7) == (255, 128, 0)
    assert pixel(vbe, 63, 47) == (0, 0, 255)
    assert pixel(vbe, 0, 0) == (0, 0, 0)


def test_graphics_mode_is_named_on_the_terminal_when_gdb_stops_the_guest(tmp_path, panes):
    """-display curses -S under gdb: at a breakpoint after the guest enabled VBE, the pane names the mode.

    Also checks that a stop redraws the terminal at once (redraws are otherwise at most 30 a second).
    """
    gdb = shutil.which("gdb")
    if gdb is None:
        pytest.skip("gdb is not installed")
    elf = build.build_guest(build.GUEST_DIR / "fh_gfx.s", tmp_path)
    err = tmp_path / "stderr"
    cmd = gdbemu_cmd("-kernel", str(elf), "-display", "curses", "-S", "-gdb", "tcp:127.0.0.1:0") + f" 2>{err}"
    pane = Pane(cmd, tmp_path / "status")
    panes.append(pane)
    deadline = time.monotonic() + 60
    while "waiting for gdb on" not in (err.read_text() if err.exists() else ""):
        assert time.monotonic() < deadline, "gdbemu did not listen"
        time.sleep(0.1)
    where = err.read_text().split("waiting for gdb on ", 1)[1].split()[0]
    argv = [gdb, "-nx", "-batch", str(elf), "-ex", f"target remote {where}", "-ex", "break vbe_done", "-ex", "c"]
    argv += ["-ex", "shell sleep 60", "-ex", "kill"]
    debugger = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        pane.wait_for(lambda t: "VBE framebuffer graphics; gdb: monitor screendump" in t, "the graphics-mode line")
    finally:
        debugger.kill()
        debugger.wait()
