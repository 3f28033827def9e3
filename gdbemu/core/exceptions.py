"""Exceptions that leave a TB.

Generated code and helpers raise these; the TB's handler writes the guest
registers back as they were at the start of the faulting instruction (DESIGN.md
invariant 2) and re-raises; the exec loop then acts on them.  They are Python
exceptions because CPython 3.11's try/except costs nothing until raised.
"""

from __future__ import annotations

from ..softmmu.exits import CpuExit, InstructionRestart

# Exception vectors (Intel SDM vol. 3, 6.3.1)
DE, DB, NMI, BP, OF, BR, UD, NM, DF, TS, NP, SS, GP, PF, MF, AC, MC, XM = (
    0,
    1,
    2,
    3,
    4,
    5,
    6,
    7,
    8,
    10,
    11,
    12,
    13,
    14,
    16,
    17,
    18,
    19,
)
VECTORS_WITH_ERROR_CODE = frozenset({DF, TS, NP, SS, GP, PF, AC})
VECTOR_NAMES = {
    DE: "#DE",
    DB: "#DB",
    NMI: "NMI",
    BP: "#BP",
    OF: "#OF",
    BR: "#BR",
    UD: "#UD",
    NM: "#NM",
    DF: "#DF",
    TS: "#TS",
    NP: "#NP",
    SS: "#SS",
    GP: "#GP",
    PF: "#PF",
    MF: "#MF",
    AC: "#AC",
    MC: "#MC",
    XM: "#XM",
}


class GuestFault(CpuExit):
    """An architectural exception, delivered through the IDT by the exec loop.

    ``soft`` marks int n / int3 / into, whose return address is the next
    instruction and which check the gate DPL; ``next_eip`` is that address.
    """

    def __init__(
        self,
        vector: int,
        error_code: int | None = None,
        cr2: int | None = None,
        soft: bool = False,
        next_eip: int | None = None,
    ) -> None:
        super().__init__(vector, error_code)
        self.vector = vector
        self.error_code = error_code
        self.cr2 = cr2
        self.soft = soft
        self.next_eip = next_eip
        # Raised after a task switch's commit point: delivered in the new task (core/task.py).
        self.in_new_task = False

    def __str__(self) -> str:
        name = VECTOR_NAMES.get(self.vector, f"vector {self.vector}")
        return name if self.error_code is None else f"{name}({self.error_code:#x})"


class SMCRestart(CpuExit):
    """A store is about to modify the TB that is running (QEMU's current_tb_modified).

    Raised before the store happens; the exec loop re-executes the current
    instruction alone in an uncached TB, then goes on with fresh translations.
    """


class CpuHalt(CpuExit):
    """Request to leave the exec loop after the current instruction (exit ports, hlt)."""


__all__ = [
    "CpuExit",
    "CpuHalt",
    "GuestFault",
    "InstructionRestart",
    "SMCRestart",
    "VECTORS_WITH_ERROR_CODE",
    "VECTOR_NAMES",
]
