"""The ways out of a TB that the softmmu itself raises (the core re-exports them).

``softmmu/`` imports nothing from ``core/``; the core's exceptions module
builds on these, so ``except CpuExit`` in the core also catches them.
"""

from __future__ import annotations


class CpuExit(Exception):  # noqa: N818 - these are control flow, not errors
    """Base of every way out of a TB other than its normal return."""


class InstructionRestart(CpuExit):
    """Re-execute the current instruction alone (watchpoint hit before the access)."""
