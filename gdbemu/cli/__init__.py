"""The ``gdbemu`` command: QEMU's spelling for the options gdbemu honours.

Theory of operation
-------------------
A command line from an OS-dev Makefile written for ``qemu-system-i386``
should run unchanged: ``gdbemu -kernel k.elf -serial stdio -display none
-no-reboot -device isa-debug-exit,iobase=0xf4,iosize=0x04 -m 64M -accel tcg``.
Every error is one line starting with ``gdbemu:`` and exit code 2; so is a
kernel that cannot be booted (the loader's message names what is missing).

The package, in the order a run goes through it:

* ``options.py``: the parser (QEMU's, not argparse's), the option table, the
  notes for options accepted but ignored, ``UsageError``, the help listings.
* ``board.py``: the board the options describe — the ``Machine`` (with the
  ``-d`` trace hooks of ``debug/trace.py``), the PC devices from a
  ``PCConfig`` (serial and debug-console sinks), the ``-cpu`` model, the
  kernel booted as ``-kernel`` does (the demo kernel when none is given).
* ``console.py``: console input for COM1, read by a background thread.
* ``display.py``: ``-display curses``, the VGA text screen in the terminal
  (also the default when the terminal and the guest's first VGA write
  allow), keys typed there going to the 8042.
* ``run.py``: the one run loop (``Session.run``), the GDB server around it
  (``-s``/``-gdb DEV``/``-S``, and the demo's listener on 127.0.0.1:1234,
  which waits for gdb as ``-S`` does and prints the gdb command to type;
  ``-gdb none`` turns it off), sleep=on pacing, and ``main``.

Virtual time comes from the instruction count (``-icount shift=N``, default
3).  ``-d`` logging (``-D FILE`` for a file, stderr otherwise) uses the
machine's named trace hooks, set only for the items asked.
"""

from __future__ import annotations

from .board import demo_kernel_path
from .options import Options, UsageError, parse_args, parse_size
from .run import main, main_x86_64

__all__ = ["Options", "UsageError", "demo_kernel_path", "main", "main_x86_64", "parse_args", "parse_size"]
