"""The x87 FPU and SSE register state of one vCPU (a field of ``CPU``, given at construction).

Layout, as the SDM describes the hardware (vol. 1, chapter 8):

* ``st``: the eight physical data registers R0-R7, 80-bit values as ints;
  ST(i) is ``st[(top + i) & 7]``.  MMX registers alias their low 64 bits.
* ``empty``: one flag per *physical* register (the abridged tag of FXSAVE);
  the full 2-bit tag word (valid / zero / special / empty) is computed from
  the contents when it is read (``tag_word``), as a real x87 does for FSTENV.
* ``fcw``; ``fsw`` without its TOP field, which lives in ``top``.
* the last instruction and data pointers ``fip``/``fcs``/``fdp``/``fds``
  and the last opcode ``fop`` (11 bits).
* ``mxcsr`` and ``xmm`` (16 128-bit ints; 8 are visible outside 64-bit mode).
* ``xcr0``: XCR0 (XSETBV/XGETBV), the state components XSAVE manages.
"""

from __future__ import annotations

from . import softfloat as sf

# Status word bits.
FSW_IE, FSW_DE, FSW_ZE, FSW_OE, FSW_UE, FSW_PE = 1, 2, 4, 8, 16, 32
FSW_SF = 1 << 6
FSW_ES = 1 << 7
FSW_C0, FSW_C1, FSW_C2, FSW_C3 = 1 << 8, 1 << 9, 1 << 10, 1 << 14
FSW_B = 1 << 15
FSW_TOP_SHIFT = 11
FSW_CC = FSW_C0 | FSW_C1 | FSW_C2 | FSW_C3

FCW_INIT = 0x037F  # FNINIT: all exceptions masked, 64-bit precision, round to nearest
# The FCW after RESET.  The SDM (vol. 3, table 9-1) gives 0040H (all exceptions unmasked,
# 24-bit precision); QEMU resets to 037FH, the FNINIT state a BIOS leaves, and a guest
# started by a loader (multiboot, -kernel) expects that: gdbemu follows QEMU.
FCW_RESET = 0x037F
MXCSR_RESET = 0x1F80
XCR0_RESET = 1  # XCR0.X87 is always set (SDM vol. 1, 13.3)

TAG_VALID, TAG_ZERO, TAG_SPECIAL, TAG_EMPTY = 0, 1, 2, 3


def tag_of(value: int) -> int:
    """The 2-bit tag an x87 computes for a non-empty register holding ``value``."""
    exp = (value >> 64) & 0x7FFF
    sig = value & ((1 << 64) - 1)
    if exp == 0x7FFF:
        return TAG_SPECIAL
    if exp == 0:
        return TAG_ZERO if sig == 0 else TAG_SPECIAL
    return TAG_VALID if sig >> 63 else TAG_SPECIAL


class FPUState:
    __slots__ = ("st", "empty", "top", "fcw", "fsw", "fip", "fcs", "fdp", "fds", "fop", "mxcsr", "xmm", "xcr0")

    def __init__(self) -> None:
        self.st: list[int] = [0] * 8
        self.empty: list[bool] = [True] * 8
        self.top = 0
        self.fcw = FCW_RESET
        self.fsw = 0
        self.fip = 0
        self.fcs = 0
        self.fdp = 0
        self.fds = 0
        self.fop = 0
        self.mxcsr = MXCSR_RESET
        # Generated code binds this list (the ``X`` of core/emit.py): it is only ever updated in place.
        self.xmm: list[int] = [0] * 16
        self.xcr0 = XCR0_RESET
        self.reset()

    def save_state(self) -> dict[str, object]:
        """The whole x87/SSE state as JSON-able values (snapshots: debug/snapshot.py, hw/state.py)."""
        return {name: list(v) if isinstance(v := getattr(self, name), list) else v for name in self.__slots__}

    def load_state(self, state: dict[str, object]) -> None:
        for name in self.__slots__:
            value = state.get(name, XCR0_RESET) if name == "xcr0" else state[name]
            if name == "xmm":
                self.xmm[:] = list(value)  # type: ignore[call-overload]
            else:
                setattr(self, name, list(value) if isinstance(value, list) else value)

    def reset(self) -> None:
        """RESET: FCW as FCW_RESET says, registers +0 and empty, MXCSR 1F80H."""
        self.finit()
        self.fcw = FCW_RESET
        self.st = [0] * 8
        self.mxcsr = MXCSR_RESET
        self.xmm[:] = [0] * 16
        self.xcr0 = XCR0_RESET

    def finit(self) -> None:
        """FNINIT: control word 037FH, status 0, every register empty, pointers cleared."""
        self.fcw = FCW_INIT
        self.fsw = 0
        self.top = 0
        self.empty = [True] * 8
        self.fip = self.fcs = self.fdp = self.fds = self.fop = 0

    # ---- words ------------------------------------------------------------------------
    def status_word(self) -> int:
        return (self.fsw & ~(7 << FSW_TOP_SHIFT) & 0xFFFF) | (self.top << FSW_TOP_SHIFT)

    def set_status_word(self, value: int) -> None:
        self.top = (value >> FSW_TOP_SHIFT) & 7
        self.fsw = value & 0xFFFF & ~(7 << FSW_TOP_SHIFT)

    def tag_word(self) -> int:
        tw = 0
        for i in range(8):
            tw |= (TAG_EMPTY if self.empty[i] else tag_of(self.st[i])) << (2 * i)
        return tw

    def set_tag_word(self, tw: int) -> None:
        self.empty = [(tw >> (2 * i)) & 3 == TAG_EMPTY for i in range(8)]

    def abridged_tag(self) -> int:
        """FXSAVE's 8-bit tag: bit i set when physical register i is not empty."""
        return sum(1 << i for i in range(8) if not self.empty[i])

    # ---- the stack ----------------------------------------------------------------------
    def phys(self, i: int) -> int:
        return (self.top + i) & 7

    def get(self, i: int) -> int:
        return self.st[(self.top + i) & 7]

    def is_empty(self, i: int) -> bool:
        return self.empty[(self.top + i) & 7]

    def set(self, i: int, value: int) -> None:
        p = (self.top + i) & 7
        self.st[p] = value
        self.empty[p] = False

    def push(self, value: int) -> None:
        self.top = (self.top - 1) & 7
        self.st[self.top] = value
        self.empty[self.top] = False

    def pop(self) -> None:
        self.empty[self.top] = True
        self.top = (self.top + 1) & 7

    # ---- the control word -----------------------------------------------------------------
    def env(self) -> sf.Env:
        """Rounding and precision control of the FCW (PC 01 is reserved: 64 bits, as QEMU)."""
        pc = (self.fcw >> 8) & 3
        return sf.Env(rc=(self.fcw >> 10) & 3, prec={0: 24, 2: 53}.get(pc, 64), x87=True)

    def sse_env(self) -> sf.Env:
        m = self.mxcsr
        return sf.Env(rc=(m >> 13) & 3, daz=bool(m & 0x40), ftz=bool(m & 0x8000))


__all__ = [
    "FPUState",
    "tag_of",
    "FCW_INIT",
    "FCW_RESET",
    "MXCSR_RESET",
    "XCR0_RESET",
    "FSW_IE",
    "FSW_SF",
    "FSW_ES",
    "FSW_B",
    "FSW_C0",
    "FSW_C1",
    "FSW_C2",
    "FSW_C3",
    "FSW_CC",
    "TAG_EMPTY",
]
