"""The console: bytes typed on stdin for COM1, and the terminal mode that lets them through as typed."""

from __future__ import annotations

import os
import queue
import sys
import threading
from collections.abc import Callable


class ConsoleInput:
    """Bytes typed on stdin, read by a daemon thread and handed over between run slices.

    The guest state is touched by one thread only: the run loop takes the
    bytes (``take``) between slices, or while the guest is idle (``wait``).
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.queue: queue.Queue[bytes] = queue.Queue()
        self.eof = False
        self.arrived = threading.Event()
        self.thread = threading.Thread(target=self._reader, name="gdbemu-stdin", daemon=True)
        self.thread.start()

    def _reader(self) -> None:
        while True:
            try:
                data = os.read(self.fd, 4096)
            except OSError:
                data = b""
            if not data:
                self.eof = True
                self.arrived.set()
                return
            self.queue.put(data)
            self.arrived.set()

    def take(self) -> bytes:
        """Everything typed since the last call (never blocks)."""
        self.arrived.clear()
        out = bytearray()
        while True:
            try:
                out += self.queue.get_nowait()
            except queue.Empty:
                return bytes(out)

    def wait(self, timeout: float | None) -> None:
        """Block until input arrives (or EOF), at most ``timeout`` seconds."""
        if self.queue.empty() and not self.eof:
            self.arrived.wait(timeout)


def stdin_fd() -> int | None:
    try:
        return sys.stdin.fileno()
    except (AttributeError, OSError, ValueError):
        return None


def raw_terminal(fd: int) -> Callable[[], None] | None:
    """Characters reach the guest as typed (no line editing, no local echo), Ctrl-C still works.

    Returns the function that restores the terminal, or None when ``fd`` is not a terminal.
    """
    try:
        import termios

        old = termios.tcgetattr(fd)
        new = termios.tcgetattr(fd)
        new[0] &= ~(termios.ICRNL | termios.IXON)
        new[3] &= ~(termios.ICANON | termios.ECHO)
        new[6][termios.VMIN] = 1
        new[6][termios.VTIME] = 0
        termios.tcsetattr(fd, termios.TCSANOW, new)
    except (ImportError, OSError, ValueError):
        return None

    def restore() -> None:
        termios.tcsetattr(fd, termios.TCSADRAIN, old)

    return restore
