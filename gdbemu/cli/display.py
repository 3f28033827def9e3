"""``-display curses``: the VGA text screen drawn in the terminal, keys typed there sent to the 8042.

Theory of operation
-------------------
* **When.**  ``-display curses`` opens the display at start (stdout must be
  a terminal).  Without ``-display``, the display is *armed* — QEMU opens
  its window by default, and so do we — when stdin and stdout are
  terminals, ``-serial stdio`` and ``-nographic`` were not given, the board
  has a VGA (not ``-vga none``/``-nodefaults``) and gdb does not talk over
  stdio.  An armed display opens at the guest's first write to the VGA
  window (0xA0000-0xBFFFF) after the kernel is loaded: that is what "the
  guest uses VGA" means here.  A kernel that only prints to the serial port
  never writes there and keeps the plain terminal.  ``-display none``
  disarms it.
* **Drawing.**  Between run slices (and while the sleep=on pacer waits) at
  most 30 times a second, ``VGA.refresh`` says which rows changed, from the
  VGA dirty bitmap (``bus.dirty_test_and_clear``): only those rows are
  read and redrawn.  Cells are code page 437 (control codes as their VGA
  glyphs); the attribute's foreground and background go to curses colour
  pairs (16 x 16 on a 256-colour terminal; on an 8-colour one the bright
  foregrounds are bold); blink is ignored.  The hardware cursor (CRTC
  0x0A-0x0F) is the terminal's cursor.  In a graphics mode (mode 13h, VBE)
  the terminal shows one line naming the mode and ``monitor screendump``.
* **Keys.**  The console thread (``console.ConsoleInput``) reads the
  terminal's bytes; while the display is open they become set-1 scancodes
  for the 8042 (``KeyboardController.feed_scancodes``): printable ASCII and
  control characters by the US layout, Enter, Backspace, Tab, Escape, the
  arrow, Home/End, Insert/Delete, PgUp/PgDn keys and F1-F12 from their
  xterm sequences.  Ctrl-C still interrupts gdbemu (the terminal keeps ISIG).
* **Serial output.**  While the display is open, COM1 and the 0xE9 console
  output that would go to the terminal is held and printed when the
  display closes (QEMU shows it on a separate virtual console).
"""

from __future__ import annotations

import locale
import os
import sys
import time
from typing import Any

from ..hw.bus import CharSink
from ..hw.kbd import KeyboardController, keys_to_scancodes
from ..hw.vga import VGA

# Code page 437 glyphs of the control codes (0x00 shows as a space, as on the screen).
_CP437_LOW = " ☺☻♥♦♣♠•◘○◙♂♀♪♫☼►◄↕‼¶§▬↨↑↓→←∟↔▲▼"
CP437 = [_CP437_LOW[i] if i < 0x20 else bytes((i,)).decode("cp437") for i in range(256)]
CP437[0x7F] = "⌂"
# VGA colour index (IRGB, blue in bit 0) -> curses colour number (red in bit 0).
_VGA_TO_CURSES = (0, 4, 2, 6, 1, 5, 3, 7)

# xterm key sequences -> set-1 scancodes (E0-prefixed where the key is an extended one).
_E0 = 0xE0
ESCAPES: dict[bytes, bytes] = {
    b"\x1b[A": bytes((_E0, 0x48)),
    b"\x1b[B": bytes((_E0, 0x50)),
    b"\x1b[C": bytes((_E0, 0x4D)),
    b"\x1b[D": bytes((_E0, 0x4B)),
    b"\x1b[H": bytes((_E0, 0x47)),
    b"\x1b[F": bytes((_E0, 0x4F)),
    b"\x1b[1~": bytes((_E0, 0x47)),
    b"\x1b[4~": bytes((_E0, 0x4F)),
    b"\x1b[2~": bytes((_E0, 0x52)),
    b"\x1b[3~": bytes((_E0, 0x53)),
    b"\x1b[5~": bytes((_E0, 0x49)),
    b"\x1b[6~": bytes((_E0, 0x51)),
    b"\x1bOP": b"\x3b",
    b"\x1bOQ": b"\x3c",
    b"\x1bOR": b"\x3d",
    b"\x1bOS": b"\x3e",
    b"\x1b[15~": b"\x3f",
    b"\x1b[17~": b"\x40",
    b"\x1b[18~": b"\x41",
    b"\x1b[19~": b"\x42",
    b"\x1b[20~": b"\x43",
    b"\x1b[21~": b"\x44",
    b"\x1b[23~": b"\x57",
    b"\x1b[24~": b"\x58",
}


def bytes_to_scancodes(data: bytes) -> bytes:
    """Terminal input to set-1 make/break codes (module docstring, "Keys")."""
    out = bytearray()
    i = 0
    while i < len(data):
        if data[i] == 0x1B:
            for seq, codes in ESCAPES.items():
                if data.startswith(seq, i):
                    out += codes
                    if codes[0] == _E0:
                        out += bytes((_E0, codes[1] | 0x80))
                    else:
                        out.append(codes[0] | 0x80)
                    i += len(seq)
                    break
            else:
                out += b"\x01\x81"  # Escape
                i += 1
            continue
        ch = chr(data[i])
        i += 1
        if ch == "\x7f":
            ch = "\b"
        out += keys_to_scancodes(ch, strict=False)
    return bytes(out)


class CursesDisplay:
    """The terminal display of the VGA text screen (module docstring)."""

    INTERVAL = 1 / 30  # seconds between two redraws at most

    def __init__(self, vga: VGA, kbd: KeyboardController | None, held_sinks: list[CharSink]) -> None:
        self.vga = vga
        self.kbd = kbd
        self.held_sinks = held_sinks  # terminal sinks whose output waits while the display is open
        self.held = bytearray()
        self.armed = False
        self.active = False
        self.screen: Any = None
        self.last = 0.0
        self.first = True
        self.pairs: dict[tuple[int, int], int] = {}
        self.shown_mode = "text"
        self.colors16 = False

    def arm(self) -> None:
        """Open at the guest's first write to the VGA window from now on (earlier writes do not count)."""
        self.vga.test_and_clear_written()
        self.armed = True

    def open(self) -> None:
        import curses

        locale.setlocale(locale.LC_ALL, "")
        sys.stdout.flush()
        self.screen = curses.initscr()
        curses.noecho()
        curses.cbreak()
        self.screen.keypad(False)
        try:
            curses.start_color()
            curses.use_default_colors()
        except curses.error:
            pass
        self.colors16 = curses.has_colors() and curses.COLORS >= 16 and curses.COLOR_PAIRS > 256
        self.active = True
        self.armed = False
        for sink in self.held_sinks:
            sink.stream = None
            sink.buffer = self.held
        self.first = True
        self.poll(force=True)

    def close(self) -> None:
        if not self.active:
            return
        import curses

        self.poll(force=True)
        self.active = False
        try:
            curses.endwin()
        except curses.error:
            pass
        for sink in self.held_sinks:
            sink.buffer = None
            sink.stream = sys.stdout.buffer
        if self.held:
            os.write(sys.stdout.fileno(), bytes(self.held))
            self.held.clear()

    def feed(self, data: bytes) -> bool:
        """Terminal input: scancodes for the 8042 while the display is open; False when it is not."""
        if not self.active:
            return False
        if self.kbd is not None:
            self.kbd.feed_scancodes(bytes_to_scancodes(data))
        return True

    def poll(self, force: bool = False) -> None:
        """Between slices: open an armed display if the guest wrote to VGA; redraw changed rows."""
        if self.armed and self.vga.test_and_clear_written():
            self.open()
            return
        if not self.active:
            return
        now = time.monotonic()
        if not force and now - self.last < self.INTERVAL:
            return
        self.last = now
        mode = self.vga.mode()
        if mode != "text":
            if mode != self.shown_mode:
                self.shown_mode = mode
                self._graphics_notice(mode)
            return
        if self.shown_mode != "text":
            self.shown_mode = "text"
            self.screen.clear()
            self.first = True
        rows = self.vga.refresh()
        if self.first:
            rows = list(range(self.vga.geometry()[1]))
            self.first = False
        self._draw(rows)

    def _graphics_notice(self, mode: str) -> None:
        import curses

        scr = self.screen
        scr.clear()
        what = "VBE framebuffer" if mode == "vbe" else f"VGA {mode}"
        try:
            curses.curs_set(0)
            scr.addstr(0, 0, f"[gdbemu: {what} graphics; gdb: monitor screendump FILE]")  # fits 80 columns
        except curses.error:
            pass
        scr.refresh()

    def _pair(self, fg: int, bg: int) -> int:
        import curses

        key = (fg, bg)
        pair = self.pairs.get(key)
        if pair is None:
            pair = len(self.pairs) + 1
            if pair >= curses.COLOR_PAIRS:
                return 0
            if self.colors16:
                cfg = _VGA_TO_CURSES[fg & 7] + (8 if fg & 8 else 0)
                cbg = _VGA_TO_CURSES[bg & 7] + (8 if bg & 8 else 0)
            else:
                cfg, cbg = _VGA_TO_CURSES[fg & 7], _VGA_TO_CURSES[bg & 7]
            curses.init_pair(pair, cfg, cbg)
            self.pairs[key] = pair
        return pair

    def _draw(self, rows: list[int]) -> None:
        import curses

        scr = self.screen
        height, width = scr.getmaxyx()
        blink_mode = bool(self.vga.attr[0x10] & 0x08)
        cells = self.vga.cells() if rows else []
        color = curses.has_colors()
        for r in rows:
            if r >= height or r >= len(cells):
                continue
            for c, (ch, at) in enumerate(cells[r][:width]):
                if r == height - 1 and c == width - 1:
                    continue  # curses cannot write the bottom-right cell without scrolling
                fg, bg = at & 0x0F, (at >> 4) & (0x07 if blink_mode else 0x0F)
                attr = 0
                if color:
                    attr = curses.color_pair(self._pair(fg, bg))
                    if fg & 8 and not self.colors16:
                        attr |= curses.A_BOLD
                try:
                    scr.addstr(r, c, CP437[ch], attr)
                except curses.error:
                    pass
        row, col = self.vga.cursor()
        start, end, visible = self.vga.cursor_shape()
        cols, nrows, _ = self.vga.geometry()
        on_screen = visible and start <= end and 0 <= row < min(nrows, height) and 0 <= col < min(cols, width)
        try:
            curses.curs_set(1 if on_screen else 0)
        except curses.error:
            pass
        if on_screen:
            scr.move(row, col)
        scr.refresh()


def curses_wanted(display: str | None, serial_given_stdio: bool, nographic: bool, vga: bool, gdb_stdio: bool) -> str:
    """ "open" (``-display curses``), "armed" (the default rule of the module docstring) or "no"."""
    if display == "curses":
        return "open"
    if display == "none" or serial_given_stdio or nographic or not vga or gdb_stdio:
        return "no"
    try:
        if not (os.isatty(sys.stdin.fileno()) and os.isatty(sys.stdout.fileno())):
            return "no"
    except (AttributeError, OSError, ValueError):
        return "no"
    return "armed"
