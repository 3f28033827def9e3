"""The GDB remote serial protocol stub (issue: the GDB stub)."""
