"""Lazy condition codes (QEMU's cc_op scheme, target/i386/tcg/cc_helper.c).

An instruction that sets the arithmetic flags does not compute them.  It
records *how* they can be computed: ``cc_op`` names the operation and operand
size, ``cc_dst`` is usually the result, ``cc_src`` an operand, ``cc_src2`` the
carry-in for adc/sbb.  The six flags (CF PF AF ZF SF OF) are computed only when
something reads them, and the translator can often test a condition straight
from cc_dst/cc_src (``cmp a, b; jb`` becomes ``a < b``).

``cc_op = kind << 2 | size_index`` where size_index 0..3 is 8/16/32/64 bits.

kinds, and what cc_dst / cc_src / cc_src2 hold:

=========  ===================  =====================  ===========
kind       cc_dst               cc_src                 cc_src2
=========  ===================  =====================  ===========
EFLAGS     -                    the six flags          -
ADD        result               second operand         -
ADC        result               second operand         carry in
SUB        result               second operand         -
SBB        result               second operand         borrow in
LOGIC      result               -                      -
INC, DEC   result               CF before (0/1)        -
SHL        result               value << (count-1)     -
SAR        result               value >> (count-1)     -   (also SHR)
MUL        low half of result   nonzero on overflow    -   (mul, imul)
BT         -                    value >> bit (CF=bit0) - other flags preserved in cc_src2
=========  ===================  =====================  ===========
"""

from __future__ import annotations

CF = 0x0001
PF = 0x0004
AF = 0x0010
ZF = 0x0040
SF = 0x0080
TF = 0x0100
IF = 0x0200
DF = 0x0400
OF = 0x0800
IOPL = 0x3000
NT = 0x4000
RF = 0x10000
VM = 0x20000
AC = 0x40000
VIF = 0x80000
VIP = 0x100000
ID = 0x200000

ARITH = CF | PF | AF | ZF | SF | OF

EFLAGS, ADD, ADC, SUB, SBB, LOGIC, INC, DEC, SHL, SAR, MUL, BT = range(12)
KIND_NAMES = ["EFLAGS", "ADD", "ADC", "SUB", "SBB", "LOGIC", "INC", "DEC", "SHL", "SAR", "MUL", "BT"]

SIZE_INDEX = {1: 0, 2: 1, 4: 2, 8: 3}
MASKS = (0xFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF)
SIGNS = (0x80, 0x8000, 0x80000000, 0x8000000000000000)
BITS = (8, 16, 32, 64)

CC_OP_EFLAGS = EFLAGS << 2


def cc_op(kind: int, size: int) -> int:
    return (kind << 2) | SIZE_INDEX[size]


PARITY = tuple(PF if bin(i).count("1") % 2 == 0 else 0 for i in range(256))


def compute_all(op: int, dst: int, src: int, src2: int) -> int:
    """The six arithmetic flags for a lazy state."""
    kind = op >> 2
    if kind == EFLAGS:
        return src
    si = op & 3
    mask = MASKS[si]
    sign = SIGNS[si]
    dst &= mask
    if kind == BT:
        return (src2 & ~CF) | (src & 1)
    flags = PARITY[dst & 0xFF]
    if dst == 0:
        flags |= ZF
    if dst & sign:
        flags |= SF
    if kind == ADD or kind == ADC:
        cin = src2 if kind == ADC else 0
        src1 = (dst - src - cin) & mask
        if (dst <= src1) if cin else (dst < src1):
            flags |= CF
        if (src1 ^ src ^ mask) & (src1 ^ dst) & sign:
            flags |= OF
        flags |= (dst ^ src ^ src1) & AF
    elif kind == SUB or kind == SBB:
        cin = src2 if kind == SBB else 0
        src1 = (dst + src + cin) & mask
        if (src1 <= src) if cin else (src1 < src):
            flags |= CF
        if (src1 ^ src) & (src1 ^ dst) & sign:
            flags |= OF
        flags |= (dst ^ src ^ src1) & AF
    elif kind == LOGIC:
        pass
    elif kind == INC:
        flags |= src & CF
        if dst == sign:
            flags |= OF
        if dst & 0xF == 0:
            flags |= AF
    elif kind == DEC:
        flags |= src & CF
        if dst == sign - 1:
            flags |= OF
        if dst & 0xF == 0xF:
            flags |= AF
    elif kind == SHL:
        cf = (src >> (BITS[si] - 1)) & 1
        flags |= cf
        if cf ^ (1 if dst & sign else 0):
            flags |= OF
    elif kind == SAR:
        flags |= src & 1
        if (src ^ dst) & sign:
            flags |= OF
    elif kind == MUL:
        if src:
            flags |= CF | OF
    return flags


def compute_cf(op: int, dst: int, src: int, src2: int) -> int:
    """CF alone (adc, sbb, rcl, rcr, inc/dec bookkeeping): cheaper than all six."""
    kind = op >> 2
    if kind == EFLAGS:
        return src & 1
    si = op & 3
    mask = MASKS[si]
    if kind == ADD:
        return 1 if dst < ((dst - src) & mask) else 0
    if kind == SUB:
        return 1 if ((dst + src) & mask) < src else 0
    if kind == LOGIC:
        return 0
    if kind == INC or kind == DEC:
        return src & 1
    return compute_all(op, dst, src, src2) & CF


# Condition codes in x86 encoding order (the low nibble of jcc/setcc/cmovcc).
CC_O, CC_NO, CC_B, CC_AE, CC_E, CC_NE, CC_BE, CC_A, CC_S, CC_NS, CC_P, CC_NP, CC_L, CC_GE, CC_LE, CC_G = range(16)
CC_NAMES = ["o", "no", "b", "ae", "e", "ne", "be", "a", "s", "ns", "p", "np", "l", "ge", "le", "g"]


def test_cc(cc: int, flags: int) -> bool:
    """Evaluate condition ``cc`` on a full set of arithmetic flags."""
    base = cc >> 1
    if base == 0:
        r = flags & OF
    elif base == 1:
        r = flags & CF
    elif base == 2:
        r = flags & ZF
    elif base == 3:
        r = flags & (CF | ZF)
    elif base == 4:
        r = flags & SF
    elif base == 5:
        r = flags & PF
    elif base == 6:
        r = bool(flags & SF) != bool(flags & OF)
    else:
        r = (flags & ZF) or (bool(flags & SF) != bool(flags & OF))
    r = bool(r)
    return (not r) if cc & 1 else r


def eval_cc(cc: int, op: int, dst: int, src: int, src2: int) -> bool:
    """Condition from a lazy state, when the translator could not resolve it statically."""
    return test_cc(cc, compute_all(op, dst, src, src2))
