"""gdbemu: an x86 system emulator in Python with a GDB stub built in."""

__version__ = "0.1.0"
