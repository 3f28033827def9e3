"""Lazy condition codes (gdbemu/core/flags.py) and the translator's inline conditions (core/emit.py).

The reference here is written from the Intel SDM instruction pages (vol. 2)
and the EFLAGS definitions (vol. 1, 3.4.3.1), not from QEMU's cc_helper: the
true result of each operation is computed on unbounded Python integers,
signed and unsigned, and each flag is derived from its definition:

CF  unsigned result does not fit (carry out of / borrow into the top bit)
PF  the low byte of the result has an even number of 1 bits
AF  carry out of / borrow into bit 3
ZF  result is zero;  SF  top bit of the result
OF  signed result does not fit

Flags the SDM leaves *undefined* for an instruction (AF after logic ops and
shifts, OF after multi-bit shifts, SF/ZF/AF/PF after mul) are not compared:
``Case.defined`` says which flags are.  The lazy state (cc_op, cc_dst,
cc_src, cc_src2) of each case is what flags.py's table says an instruction
records, so these tests are also the contract the op families must follow.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gdbemu.core import flags as F  # noqa: N812 - the name the core uses
from gdbemu.core.emit import Emitter
from gdbemu.core.flags import AF, ARITH, CF, OF, PF, SF, ZF, cc_op, compute_all, compute_cf, eval_cc
from gdbemu.core.flags import test_cc as cc_holds  # not named test_*: pytest would collect it

SIZES = (1, 2, 4)
SETTINGS = settings(max_examples=100, deadline=None, derandomize=True, database=None)


def mask_of(size: int) -> int:
    return (1 << (8 * size)) - 1


def sign_of(size: int) -> int:
    return 1 << (8 * size - 1)


def signed(v: int, size: int) -> int:
    return v - (1 << (8 * size)) if v & sign_of(size) else v


def fits_signed(v: int, size: int) -> bool:
    return -sign_of(size) <= v < sign_of(size)


def szp(r: int, size: int) -> int:
    """SF, ZF, PF of a (masked) result."""
    f = 0
    if r == 0:
        f |= ZF
    if r & sign_of(size):
        f |= SF
    if bin(r & 0xFF).count("1") % 2 == 0:
        f |= PF
    return f


@dataclass(frozen=True)
class Case:
    state: tuple[int, int, int, int]  # cc_op, cc_dst, cc_src, cc_src2
    flags: int  # reference flags (undefined ones are 0)
    defined: int  # which of the six the SDM defines for this instruction


def ref_add(size, a, b, cin=0, adc=False, stale=0) -> Case:
    m = mask_of(size)
    full = a + b + cin
    r = full & m
    f = szp(r, size)
    if full > m:
        f |= CF
    if not fits_signed(signed(a, size) + signed(b, size) + cin, size):
        f |= OF
    if (a & 0xF) + (b & 0xF) + cin > 0xF:
        f |= AF
    kind = F.ADC if adc else F.ADD
    return Case((cc_op(kind, size), r, b, cin if adc else stale), f, ARITH)


def ref_sub(size, a, b, cin=0, sbb=False, stale=0) -> Case:
    m = mask_of(size)
    full = a - b - cin
    r = full & m
    f = szp(r, size)
    if full < 0:
        f |= CF
    if not fits_signed(signed(a, size) - signed(b, size) - cin, size):
        f |= OF
    if (a & 0xF) - (b & 0xF) - cin < 0:
        f |= AF
    kind = F.SBB if sbb else F.SUB
    return Case((cc_op(kind, size), r, b, cin if sbb else stale), f, ARITH)


def ref_logic(size, a, b, which=0, stale=0) -> Case:
    """AND/OR/XOR/TEST: CF=OF=0, SF ZF PF from the result, AF undefined."""
    r = (a & b, a | b, a ^ b)[which]
    return Case((cc_op(F.LOGIC, size), r, 0, stale), szp(r, size), ARITH & ~AF)


def ref_incdec(size, a, old_cf, dec=False, stale=0) -> Case:
    """INC/DEC: CF is not affected (it stays old_cf), the rest as add/sub of 1."""
    m = mask_of(size)
    full = a - 1 if dec else a + 1
    r = full & m
    f = szp(r, size) | (CF if old_cf else 0)
    if not fits_signed(signed(a, size) + (-1 if dec else 1), size):
        f |= OF
    if ((a & 0xF) - 1 < 0) if dec else ((a & 0xF) + 1 > 0xF):
        f |= AF
    kind = F.DEC if dec else F.INC
    return Case((cc_op(kind, size), r, old_cf, stale), f, ARITH)


def ref_shl(size, a, count, src_masked=False, stale=0) -> Case:
    """SHL/SAL, 1 <= count < bits: CF = last bit out; OF defined for count 1 (MSB(r) xor CF)."""
    bits = 8 * size
    m = mask_of(size)
    full = a << count
    r = full & m
    f = szp(r, size)
    cf = (full >> bits) & 1
    if cf:
        f |= CF
    defined = CF | SF | ZF | PF
    if count == 1:
        defined |= OF
        if cf ^ (1 if r & sign_of(size) else 0):
            f |= OF
    src = a << (count - 1)
    if src_masked:
        src &= m
    return Case((cc_op(F.SHL, size), r, src, stale), f, defined)


def ref_shr(size, a, count, arith=False, stale=0) -> Case:
    """SHR/SAR (both recorded as the SAR kind): CF = last bit out; OF for count 1.

    SHR: OF = MSB of the original operand; SAR: OF = 0 (SDM, SAL/SAR/SHL/SHR).
    SAR's CF is defined for any count (the sign), SHR's only for count < bits.
    """
    m = mask_of(size)
    v = signed(a, size) if arith else a
    r = (v >> count) & m
    f = szp(r, size)
    last = (v >> (count - 1)) & 1
    if last:
        f |= CF
    defined = CF | SF | ZF | PF
    if count == 1:
        defined |= OF
        if not arith and a & sign_of(size):
            f |= OF
    return Case((cc_op(F.SAR, size), r, (v >> (count - 1)) & m, stale), f, defined)


def ref_mul(size, a, b, signed_mul=False, stale=0) -> Case:
    """MUL/IMUL: CF = OF = the product does not fit the low half; SF ZF AF PF undefined."""
    m = mask_of(size)
    if signed_mul:
        p = signed(a, size) * signed(b, size)
        low = p & m
        overflow = signed(low, size) != p
        src = 1 if overflow else 0
    else:
        p = a * b
        low = p & m
        overflow = p > m
        src = p >> (8 * size)  # the high half: nonzero exactly on overflow
    f = (CF | OF) if overflow else 0
    return Case((cc_op(F.MUL, size), low, src, stale), f, CF | OF)


def ref_bt(size, value, bit, other_flags) -> Case:
    """BT/BTS/BTR/BTC: CF = the bit; ZF unaffected (SDM); OF SF AF PF undefined."""
    b = (value >> bit) & 1
    f = (other_flags & ZF) | (CF if b else 0)
    return Case((cc_op(F.BT, size), 0, value >> bit, other_flags), f, CF | ZF)


def ref_eflags(flags, stale_dst=0, stale_src2=0) -> Case:
    """sahf/popf: the six flags are given; cc_dst and cc_src2 keep whatever they held."""
    return Case((F.CC_OP_EFLAGS, stale_dst, flags & ARITH, stale_src2), flags & ARITH, ARITH)


# ---- the condition-code reference -----------------------------------------------------

# SDM vol. 2, Jcc: the condition each encoding (low nibble) tests.
SDM_CC = {
    0: ("O", lambda f: f & OF),
    1: ("NO", lambda f: not f & OF),
    2: ("B", lambda f: f & CF),
    3: ("AE", lambda f: not f & CF),
    4: ("E", lambda f: f & ZF),
    5: ("NE", lambda f: not f & ZF),
    6: ("BE", lambda f: f & CF or f & ZF),
    7: ("A", lambda f: not f & CF and not f & ZF),
    8: ("S", lambda f: f & SF),
    9: ("NS", lambda f: not f & SF),
    10: ("P", lambda f: f & PF),
    11: ("NP", lambda f: not f & PF),
    12: ("L", lambda f: bool(f & SF) != bool(f & OF)),
    13: ("GE", lambda f: bool(f & SF) == bool(f & OF)),
    14: ("LE", lambda f: f & ZF or bool(f & SF) != bool(f & OF)),
    15: ("G", lambda f: not f & ZF and bool(f & SF) == bool(f & OF)),
}
CC_USES = {0: OF, 1: CF, 2: ZF, 3: CF | ZF, 4: SF, 5: PF, 6: SF | OF, 7: ZF | SF | OF}


def sdm_cond(cc: int, flags: int) -> bool:
    return bool(SDM_CC[cc][1](flags))


def test_cc_holds_matches_the_sdm_jcc_table():
    """All 64 combinations of the six flags, every condition."""
    bits = [CF, PF, AF, ZF, SF, OF]
    for n in range(64):
        flags = sum(b for i, b in enumerate(bits) if n >> i & 1)
        for cc in range(16):
            assert cc_holds(cc, flags) == sdm_cond(cc, flags), (SDM_CC[cc][0], hex(flags))


def check_case(case: Case) -> None:
    """compute_all / compute_cf / eval_cc on the lazy state agree with the reference."""
    op, dst, src, src2 = case.state
    got = compute_all(op, dst, src, src2)
    d = case.defined
    assert got & d == case.flags & d, (
        f"{F.KIND_NAMES[op >> 2]}/{8 << (op & 3)} state={case.state}: "
        f"got {got:#x} want {case.flags:#x} (defined {d:#x})"
    )
    assert not got & ~ARITH, "only the six arithmetic flags"
    if d & CF:
        assert compute_cf(op, dst, src, src2) == (1 if case.flags & CF else 0), case.state
    for cc in range(16):
        if CC_USES[cc >> 1] & ~d:
            continue  # the condition reads an undefined flag
        assert eval_cc(cc, op, dst, src, src2) == sdm_cond(cc, case.flags), (SDM_CC[cc][0], case.state)


# ---- hand-checked anchors: keep the reference itself honest -------------------------------------


@pytest.mark.parametrize(
    "case, want",
    [
        (ref_add(1, 0x7F, 0x01), OF | SF | AF),
        (ref_add(1, 0xFF, 0x01), CF | PF | AF | ZF),
        (ref_add(4, 0xFFFFFFFF, 0xFFFFFFFF), CF | AF | SF),
        (ref_add(2, 0xFFFF, 0, cin=1, adc=True), CF | PF | AF | ZF),
        (ref_sub(1, 0x00, 0x01), CF | PF | AF | SF),
        (ref_sub(1, 0x80, 0x01), OF | AF),
        (ref_sub(1, 0, 0, cin=1, sbb=True), CF | PF | AF | SF),
        (ref_sub(4, 5, 5), ZF | PF),
        (ref_incdec(1, 0x7F, 1), OF | SF | AF | CF),
        (ref_incdec(1, 0x80, 0, dec=True), OF | AF),
        (ref_incdec(2, 0, 0, dec=True), SF | AF | PF),
        (ref_shl(1, 0xC0, 1), CF | SF),
        (ref_shl(1, 0x40, 1), OF | SF),
        (ref_shr(1, 0x81, 1), CF | OF),
        (ref_shr(1, 0x81, 1, arith=True), CF | SF | PF),
        (ref_mul(1, 0x10, 0x10), CF | OF),
        (ref_mul(1, 0xFF, 0x80, signed_mul=True), CF | OF),  # -1 * -128 = 128
        (ref_mul(1, 0xFF, 0x7F, signed_mul=True), 0),  # -1 * 127 = -127 fits
    ],
)
def test_reference_anchors(case, want):
    assert case.flags & case.defined == want & case.defined
    check_case(case)


# ---- edge tables -----------------------------------------------------------------------------


def edges(size: int) -> list[int]:
    m, s = mask_of(size), sign_of(size)
    return sorted({0, 1, 2, 0xF, 0x10, s - 1, s, s + 1, m - 1, m})


@pytest.mark.parametrize("size", SIZES)
def test_edge_table_add_sub_adc_sbb(size):
    for a in edges(size):
        for b in edges(size):
            check_case(ref_add(size, a, b))
            check_case(ref_sub(size, a, b))
            for cin in (0, 1):
                check_case(ref_add(size, a, b, cin, adc=True))
                check_case(ref_sub(size, a, b, cin, sbb=True))


@pytest.mark.parametrize("size", SIZES)
def test_edge_table_logic_incdec_mul(size):
    for a in edges(size):
        for cf in (0, 1):
            check_case(ref_incdec(size, a, cf))
            check_case(ref_incdec(size, a, cf, dec=True))
        for b in edges(size):
            for which in range(3):
                check_case(ref_logic(size, a, b, which))
            check_case(ref_mul(size, a, b))
            check_case(ref_mul(size, a, b, signed_mul=True))


@pytest.mark.parametrize("size", SIZES)
def test_edge_table_shifts(size):
    bits = 8 * size
    for a in edges(size):
        for count in range(1, bits):
            check_case(ref_shl(size, a, count))
            check_case(ref_shl(size, a, count, src_masked=True))
            check_case(ref_shr(size, a, count))
        for count in range(1, 32):
            check_case(ref_shr(size, a, count, arith=True))


def test_eflags_and_bt_kinds():
    for n in range(64):
        flags = sum(b for i, b in enumerate([CF, PF, AF, ZF, SF, OF]) if n >> i & 1)
        check_case(ref_eflags(flags, stale_dst=0x1234, stale_src2=1))
        for size in SIZES:
            for value, bit in ((0, 0), (1, 0), (0x80, 7), (0x7F, 7), (sign_of(size), 8 * size - 1)):
                check_case(ref_bt(size, value, bit, flags))


# ---- random operands (hypothesis; the test itself follows the Emitter helpers) --------------------


def operand(size: int):
    return st.one_of(st.sampled_from(edges(size)), st.integers(0, mask_of(size)))


def stale():
    """cc_src2 (or cc_dst for EFLAGS) left over from an earlier instruction: must be ignored."""
    return st.integers(0, 0xFFFFFFFF)


@st.composite
def cases(draw, kind: int, size: int) -> Case:
    a, b = draw(operand(size)), draw(operand(size))
    s = draw(stale())
    if kind == F.ADD:
        return ref_add(size, a, b, stale=s)
    if kind == F.ADC:
        return ref_add(size, a, b, draw(st.integers(0, 1)), adc=True)
    if kind == F.SUB:
        return ref_sub(size, a, b, stale=s)
    if kind == F.SBB:
        return ref_sub(size, a, b, draw(st.integers(0, 1)), sbb=True)
    if kind == F.LOGIC:
        return ref_logic(size, a, b, draw(st.integers(0, 2)), stale=s)
    if kind in (F.INC, F.DEC):
        return ref_incdec(size, a, draw(st.integers(0, 1)), dec=kind == F.DEC, stale=s)
    if kind == F.SHL:
        return ref_shl(size, a, draw(st.integers(1, 8 * size - 1)), draw(st.booleans()), stale=s)
    if kind == F.SAR:
        arith = draw(st.booleans())
        count = draw(st.integers(1, 31 if arith else 8 * size - 1))
        return ref_shr(size, a, count, arith, stale=s)
    if kind == F.MUL:
        return ref_mul(size, a, b, draw(st.booleans()), stale=s)
    if kind == F.BT:
        return ref_bt(size, a, draw(st.integers(0, 8 * size - 1)), draw(st.integers(0, 0xFFF)) & ARITH)
    if kind == F.EFLAGS:
        return ref_eflags(draw(st.integers(0, 0xFFF)), stale_dst=a, stale_src2=s)
    raise AssertionError(kind)


KINDS = [F.ADD, F.ADC, F.SUB, F.SBB, F.LOGIC, F.INC, F.DEC, F.SHL, F.SAR, F.MUL, F.BT, F.EFLAGS]
KIND_IDS = [F.KIND_NAMES[k] for k in KINDS]


# ---- the Emitter's static conditions ---------------------------------------------------------


@cache
def static_exprs(kind: int, size: int):
    """Compile Emitter.cond(cc) for cc 0..15 and Emitter.carry() with cc_static = (kind, size)."""
    e = Emitter(0, tier1=False)
    e.cc_static = (kind, size)
    conds = [(e.cond(cc), compile(e.cond(cc), f"<cond {cc}>", "eval")) for cc in range(16)]
    carry = (e.carry(), compile(e.carry(), "<carry>", "eval"))
    return conds, carry


def namespace(state):
    op, dst, src, src2 = state
    return {
        "cc_op": op,
        "cc_dst": dst,
        "cc_src": src,
        "cc_src2": src2,
        "COND": eval_cc,
        "CARRY": compute_cf,
        "FLAGS": compute_all,
    }


def check_static(kind: int, size: int, case: Case) -> None:
    conds, (carry_src, carry_code) = static_exprs(kind, size)
    ns = namespace(case.state)
    for cc, (src, code) in enumerate(conds):
        want = eval_cc(cc, *case.state)
        assert bool(eval(code, ns)) == want, f"cond {SDM_CC[cc][0]} {src!r} on {case.state}"
    want_cf = bool(compute_cf(*case.state))
    assert bool(eval(carry_code, ns)) == want_cf, f"carry {carry_src!r} on {case.state}"


def test_static_expressions_are_inline_where_expected():
    """The fast forms are really used (else this test would only check the fallback)."""
    conds, carry = static_exprs(F.SUB, 4)
    assert all("COND" not in src for cc, (src, _) in enumerate(conds) if cc >> 1 in (1, 2, 3, 4, 6, 7))
    assert "CARRY" not in carry[0]
    conds, carry = static_exprs(F.LOGIC, 1)
    assert all("COND" not in src for cc, (src, _) in enumerate(conds) if cc >> 1 != 5)
    assert carry[0] == "0"
    conds, _ = static_exprs(F.EFLAGS, 4)
    assert all("COND" not in src for cc, (src, _) in enumerate(conds) if cc >> 1 <= 5)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_static_conditions_edges(kind, size):
    for a in edges(size):
        for b in (0, 1, sign_of(size), mask_of(size)):
            for case in _edge_cases(kind, size, a, b):
                check_static(kind, size, case)


def _edge_cases(kind, size, a, b):
    if kind == F.ADD:
        return [ref_add(size, a, b, stale=0xFFFF)]
    if kind == F.ADC:
        return [ref_add(size, a, b, c, adc=True) for c in (0, 1)]
    if kind == F.SUB:
        return [ref_sub(size, a, b, stale=1)]
    if kind == F.SBB:
        return [ref_sub(size, a, b, c, sbb=True) for c in (0, 1)]
    if kind == F.LOGIC:
        return [ref_logic(size, a, b, w, stale=1) for w in range(3)]
    if kind in (F.INC, F.DEC):
        return [ref_incdec(size, a, c, dec=kind == F.DEC, stale=7) for c in (0, 1)]
    if kind == F.SHL:
        return [ref_shl(size, a, c) for c in (1, 2, 8 * size - 1)]
    if kind == F.SAR:
        return [ref_shr(size, a, c, ar) for c in (1, 2, 8 * size - 1) for ar in (False, True)]
    if kind == F.MUL:
        return [ref_mul(size, a, b, sm) for sm in (False, True)]
    if kind == F.BT:
        return [ref_bt(size, a, bit, b & ARITH) for bit in (0, 8 * size - 1)]
    return [ref_eflags(a & 0xFFF, stale_dst=b, stale_src2=a), ref_eflags(b & 0xFFF, stale_dst=a)]


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_random_operands(kind):
    """compute_all / compute_cf / eval_cc against the reference, and the Emitter's static
    cond / carry against COND / CARRY, on random states of each kind (all three sizes)."""

    @SETTINGS
    @given(st.data())
    def check(data):
        size = data.draw(st.sampled_from(SIZES))
        case = data.draw(cases(kind, size))
        check_case(case)
        check_static(kind, size, case)

    check()


def test_unknown_static_state_falls_back_to_the_helpers():
    e = Emitter(0, tier1=False)
    assert e.cc_static is None
    for cc in range(16):
        assert e.cond(cc) == f"COND({cc}, cc_op, cc_dst, cc_src, cc_src2)"
    assert e.carry() == "CARRY(cc_op, cc_dst, cc_src, cc_src2)"
