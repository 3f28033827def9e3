"""SSE, SSE2, SSE3 and SSE4.1 floating-point arithmetic, on core/softfloat.py.

Theory of operation
-------------------
Floating-point SIMD is cold next to the moves and integer forms (which are
core/ops/simd_*.py's, on the fast path), so every instruction here is one
``sync_call`` into the helper ``ssefp``: the emitter resolves the operands
once at translation (the XMM/MMX/GPR numbers from ModRM and REX, the linear
address of a memory operand, the imm8) and the helper dispatches on the op
key to a runner in ``_RUN``.  XMM registers are the 128-bit ints of
``cpu.fpu.xmm``; MMX registers are the low 64 bits of the physical x87
registers ``cpu.fpu.st[i]``.

Order of checks (SDM vol. 3, table 13-1 and vol. 2, "exceptions type 2-5"):

1. CPUID: every key is registered with its feature (``@op(feature=...)``);
   a model without it has the key in ``cpu.disabled_ops`` (core/cpuid.py):
   the translator raises #UD before anything else.
2. CR0.EM = 1 or CR4.OSFXSR = 0: #UD.
3. CR0.TS = 1: #NM.
4. The forms that read or write an MMX register (CVTPI2PS/PD mm,
   CVT(T)PS2PI, CVT(T)PD2PI): a pending x87 exception is #MF (CR0.NE = 1),
   and they switch the x87 to MMX mode (TOP = 0, every tag valid).
5. The memory operand: a 16-byte operand of a packed instruction
   ("exception type 2/4": everything but the scalar forms, CVTPS2PD,
   CVTDQ2PD and the 64-bit MMX sources) must be 16-byte aligned, else
   #GP(0); then the loads (#PF).
6. The operation, element by element, in the MXCSR environment: rounding
   control, DAZ (denormal operands read as signed zero, no DE), FTZ (a tiny
   result is a signed zero with UE and PE; only while UE is masked, SDM vol.
   1, 10.2.3.3).  The flags of all elements are ORed.  When an unmasked
   *pre-computation* exception (IE, ZE, DE) occurs no post-computation flag
   (OE, UE, PE) is reported (SDM vol. 1, 11.5.2.2).  The flags go to MXCSR;
   if one of them is unmasked the destination is left unchanged and the
   instruction raises #XM (CR4.OSXMMEXCPT = 1) or #UD (= 0).  With UE
   unmasked, a tiny result raises UE even when exact (SDM vol. 1, 4.9.1.5);
   with OE or UE unmasked and raised, PE is that of the result rounded with
   an unbounded exponent (the re-biased value a handler would see).

Speed: in round-to-nearest, ADD/SUB/MUL/DIV/SQRT of normal operands with a
normal result take a host-float fast path (``_fast``: the host's binary64
arithmetic, PE from an exactness test); everything else is softfloat's.

Which flags each instruction may raise is the SDM's list for it: the
conversions to integers and ROUND* never report DE, ROUND* with imm8 bit 3
set never reports PE, MIN/MAX and comparisons report no post-computation
flag, RCP/RSQRT report nothing.

NaNs (SDM vol. 1, table 4-7): a binary operation with two NaN operands
returns the first source (the destination) quieted; MIN/MAX return the
second source, unquieted, whenever either operand is a NaN (with IE, QNaN
included), and the second source also when both are zeros.  Conversions
between widths keep the payload's top bits and quiet it.

RCPPS/RCPSS/RSQRTPS/RSQRTSS: the SDM specifies a relative error of at most
1.5 * 2**-12.  Here RCP is 1/x correctly rounded to nearest and RSQRT is
1/sqrt(x) with two roundings to nearest (sqrt, then the division), which is
what QEMU computes and well within the bound (tests/unit/test_simd_fp.py
checks the bound on random operands and compares with Unicorn on normal
ones).  The special cases are the SDM's, not QEMU's: a denormal operand is
read as a zero (the result is an infinity of its sign) and a tiny result is
flushed to a zero, whatever DAZ and FTZ say; no flag is ever raised.

In 64-bit code REX.R/REX.B extend the register numbers (XMM8-15, R8-R15;
MMX numbers ignore them) and REX.W selects the 64-bit integer of
CVTSI2SS/SD and CVT(T)SS2SI/SD2SI.  Known gaps: segment limits of the memory
operand are not checked (as for the x87), and in 64-bit code a
non-canonical memory operand through SS raises #GP rather than #SS.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable

from .. import softfloat as sf
from ..cpu import CPU, CR0_EM, CR0_TS, CR4_OSFXSR, CR4_OSXMMEXCPT
from ..decode import MEM, Insn
from ..emit import Emitter
from ..exceptions import GP, UD, XM, GuestFault
from ..exceptions import NM as NM_
from ..helpers import helper
from . import op
from .x87 import check_pending

F32, F64 = sf.F32, sf.F64
IE, DE, ZE, OE, UE, PE = sf.IE, sf.DE, sf.ZE, sf.OE, sf.UE, sf.PE
_PRE = IE | ZE | DE
_M32, _M64, _M128 = (1 << 32) - 1, (1 << 64) - 1, (1 << 128) - 1
_NONE = -1  # "no memory operand" in the helper's address argument

# ---- op keys by the CPUID feature each needs (``@op(feature=...)``) ----------------------------
SSE_OPS = (
    "0f51 f30f51 0f52 f30f52 0f53 f30f53 0f58 f30f58 0f59 f30f59 0f5c f30f5c 0f5d f30f5d 0f5e f30f5e "
    "0f5f f30f5f 0fc2 f30fc2 0f2e 0f2f 0f2a f30f2a 0f2c f30f2c 0f2d f30f2d"
).split()
SSE2_OPS = (
    "660f51 f20f51 660f58 f20f58 660f59 f20f59 660f5c f20f5c 660f5d f20f5d 660f5e f20f5e 660f5f f20f5f "
    "660fc2 f20fc2 660f2e 660f2f 660f2a f20f2a 660f2c f20f2c 660f2d f20f2d 0f5a 660f5a f30f5a f20f5a "
    "0f5b 660f5b f30f5b 660fe6 f30fe6 f20fe6"
).split()
SSE3_OPS = "f20f7c 660f7c f20f7d 660f7d f20fd0 660fd0".split()
SSE41_OPS = "660f3a08 660f3a09 660f3a0a 660f3a0b 660f3a40 660f3a41".split()
FEATURE_OPS: dict[str, frozenset[str]] = {
    "sse": frozenset(SSE_OPS),
    "sse2": frozenset(SSE2_OPS),
    "sse3": frozenset(SSE3_OPS),
    "sse4.1": frozenset(SSE41_OPS),
}

# A runner: (cpu, dst number, src number, src address or _NONE, imm8, REX.W) -> None.
Runner = Callable[[CPU, int, int, int, int, bool], None]
_RUN: dict[str, Runner] = {}
_MMX_FORMS: set[str] = set()  # keys whose register operand is an MMX register (step 4)


# ---- lanes ----------------------------------------------------------------------------------
def _lanes(v: int, width: int, n: int) -> list[int]:
    mask = (1 << width) - 1
    return [(v >> (width * i)) & mask for i in range(n)]


def _join(lanes: list[int], width: int) -> int:
    v = 0
    for i, x in enumerate(lanes):
        v |= x << (width * i)
    return v


def _fmt(double: bool) -> sf.Format:
    return F64 if double else F32


# ---- checks, operands, flags ------------------------------------------------------------------
def _check(cpu: CPU, mmx: bool) -> None:
    """Steps 2-4 of the module docstring."""
    if cpu.cr[0] & CR0_EM or not cpu.cr[4] & CR4_OSFXSR:
        raise GuestFault(UD)
    if cpu.cr[0] & CR0_TS:
        raise GuestFault(NM_)
    if mmx:
        check_pending(cpu)


def _load(cpu: CPU, addr: int, n: int, align: bool = False) -> int:
    if align and addr & 15:
        raise GuestFault(GP, 0)
    if n == 16:
        lo = cpu.softmmu.load(cpu.mmu_idx, addr, 8)
        return lo | cpu.softmmu.load(cpu.mmu_idx, addr + 8, 8) << 64
    return int(cpu.softmmu.load(cpu.mmu_idx, addr, n))


def _src(cpu: CPU, s: int, addr: int, n: int) -> int:
    """The source operand's low ``n`` bytes: XMM register ``s`` or memory (16 bytes: aligned)."""
    if addr == _NONE:
        return cpu.fpu.xmm[s] & ((1 << (8 * n)) - 1)
    return _load(cpu, addr, n, align=n == 16)


def _mm_read(cpu: CPU, s: int, addr: int) -> int:
    """An MMX register or m64 source (a register read is an MMX instruction: the x87 -> MMX switch)."""
    if addr != _NONE:
        return _load(cpu, addr, 8)
    _mmx_mode(cpu)
    return cpu.fpu.st[s & 7] & _M64


def _mmx_mode(cpu: CPU) -> None:
    fpu = cpu.fpu
    fpu.top = 0
    fpu.empty = [False] * 8


def _mm_write(cpu: CPU, d: int, value: int) -> None:
    _mmx_mode(cpu)
    cpu.fpu.st[d & 7] = 0xFFFF << 64 | value


class _Ctx:
    """The MXCSR environment of one instruction and the flags it collects."""

    __slots__ = ("mxcsr", "env", "ue_exact", "unmasked", "flags", "nearest")

    def __init__(self, cpu: CPU) -> None:
        m = cpu.fpu.mxcsr
        self.mxcsr = m
        ue_masked = bool(m & (UE << 7))
        self.env = sf.Env(rc=(m >> 13) & 3, daz=bool(m & 0x40), ftz=bool(m & 0x8000) and ue_masked)
        self.ue_exact = not ue_masked  # unmasked UE: a tiny exact result underflows too
        self.unmasked = ~m >> 7 & 0x3F
        self.flags = 0
        self.nearest = self.env.rc == sf.RC_NEAREST  # the host-float fast path (_fast) applies

    def arith(self, fmt: sf.Format, r_f: tuple[int, int], redo: Callable[[sf.Env], int]) -> int:
        """Record an arithmetic result's flags; return the result.

        With UE unmasked a tiny result underflows even when exact.  With OE or
        UE unmasked and raised, PE says whether the result rounded to the
        format's precision with an *unbounded* exponent is inexact (the value
        a handler would see re-biased): ``redo`` computes the flags in
        ``_WIDE`` formats.
        """
        r, f = r_f
        if self.ue_exact and _is_denormal(fmt, r):
            f |= UE
        if f & (OE | UE) & self.unmasked:
            f = f & ~PE | redo(self.env._replace(ftz=False)) & PE
        self.flags |= f
        return r


# The formats' precisions with a 15-bit exponent: no overflow or underflow for any result of
# two binary32/binary64 operands (``_Ctx.arith``).
_WIDE = {F32: sf.Format("single, wide exponent", 15, 24, False), F64: sf.Format("double, wide exponent", 15, 53, False)}


def _widen(fmt: sf.Format, x: int, env: sf.Env) -> int:
    return sf.convert(fmt, _WIDE[fmt], x, env)[0]


def _is_denormal(fmt: sf.Format, bits: int) -> bool:
    return (bits >> fmt.frac_bits) & ((1 << fmt.exp_bits) - 1) == 0 and bits & ((1 << fmt.frac_bits) - 1) != 0


def _finish(cpu: CPU, ctx: _Ctx) -> None:
    """Step 6: flags to MXCSR, and #XM/#UD (before the destination is written) when one is unmasked."""
    flags = ctx.flags
    if not flags:
        return
    masks = (ctx.mxcsr >> 7) & 0x3F
    if flags & _PRE & ~masks:
        flags &= _PRE
    cpu.fpu.mxcsr = ctx.mxcsr | flags
    if flags & ~masks:
        raise GuestFault(XM if cpu.cr[4] & CR4_OSXMMEXCPT else UD)


def _set_xmm(cpu: CPU, d: int, value: int, keep_mask: int = 0) -> None:
    """Write XMM ``d``: ``value`` in the bits outside ``keep_mask``, the old bits inside it."""
    xmm = cpu.fpu.xmm
    xmm[d] = (xmm[d] & keep_mask) | (value & ~keep_mask & _M128)


def _get_gpr(cpu: CPU, r: int, wide: bool) -> int:
    return cpu.get_gpr(r) & (_M64 if wide else _M32)


def _set_gpr(cpu: CPU, r: int, value: int, wide: bool) -> None:
    """A 32-bit result zero-extends into the 64-bit register (in legacy modes the upper half is 0 anyway)."""
    cpu.set_gpr(r, value & (_M64 if wide else _M32))


# ---- element operations ----------------------------------------------------------------------
ElemOp = Callable[[sf.Format, int, int, _Ctx], int]


Binary = Callable[[sf.Format, int, int, sf.Env], tuple[int, int]]


def _binary(fn: Binary, kind: int) -> ElemOp:
    def run(fmt: sf.Format, a: int, b: int, ctx: _Ctx) -> int:
        if ctx.nearest:
            r = _fast(kind, fmt, a, b)
            if r is not None:
                ctx.flags |= r >> 64
                return r & _M64
        w = _WIDE[fmt]
        return ctx.arith(
            fmt, fn(fmt, a, b, ctx.env), lambda env: fn(w, _widen(fmt, a, env), _widen(fmt, b, env), env)[1]
        )

    return run


_ADD, _SUB, _MUL, _DIV, _SQRT = range(5)
_add, _sub = _binary(sf.add, _ADD), _binary(sf.sub, _SUB)
_mul, _div = _binary(sf.mul, _MUL), _binary(sf.div, _DIV)


def _sqrt(fmt: sf.Format, a: int, b: int, ctx: _Ctx) -> int:
    del a  # SQRT* takes only the source
    if ctx.nearest:
        r = _fast(_SQRT, fmt, b, b)
        if r is not None:
            ctx.flags |= r >> 64
            return r & _M64
    return ctx.arith(fmt, sf.sqrt(fmt, b, ctx.env), lambda env: 0)  # a square root neither overflows nor underflows


# ---- the host-float fast path --------------------------------------------------------------------
# In round-to-nearest, with normal operands and a result that is normal and above the smallest normal,
# the host's binary64 arithmetic gives the IEEE result (binary32 through binary64: double rounding is
# harmless for + - * / sqrt since 53 >= 2 * 24 + 2), and no flag but PE can arise: DAZ and FTZ change
# nothing, there is no DE, OE, UE, ZE or IE.  PE comes from an exactness test (TwoSum for sums, the
# odd parts of the integer significands for products, quotients and square roots).  Anything else
# (zeros, denormals, infinities, NaNs, results near the thresholds, a negative square root) returns
# None and takes softfloat's path; tests/unit/test_simd_fp.py compares the two on random operands.
_D, _Q, _F, _I = struct.Struct("<d"), struct.Struct("<Q"), struct.Struct("<f"), struct.Struct("<I")
_MIN_NORMAL = {F32: 2.0**-126, F64: 2.0**-1022}


def _host(fmt: sf.Format, bits: int) -> float:
    if fmt is F64:
        return float(_D.unpack(_Q.pack(bits))[0])
    return float(_F.unpack(_I.pack(bits))[0])


def _sig(fmt: sf.Format, bits: int) -> tuple[int, int]:
    """(odd part of the significand, exponent of its lowest bit) of a normal number."""
    fb = fmt.frac_bits
    m = bits & ((1 << fb) - 1) | 1 << fb
    tz = (m & -m).bit_length() - 1
    return m >> tz, (bits >> fb & ((1 << fmt.exp_bits) - 1)) + tz


def _fast(kind: int, fmt: sf.Format, a: int, b: int) -> int | None:
    """The result bits with the flags above bit 64 (only PE), or None (see above)."""
    fb, top = fmt.frac_bits, (1 << fmt.exp_bits) - 1
    ea, eb = a >> fb & top, b >> fb & top
    if not (0 < ea < top and 0 < eb < top):
        return None
    x, y = _host(fmt, a), _host(fmt, b)
    inexact = False
    if kind == _ADD or kind == _SUB:
        if kind == _SUB:
            y = -y
        r = x + y
        yy = r - x
        inexact = (x - (r - yy)) + (y - yy) != 0.0  # TwoSum's error term
    elif kind == _MUL:
        r = x * y
    elif kind == _DIV:
        r = x / y
    else:
        if y < 0.0:
            return None
        r = math.sqrt(y)
    if fmt is F64:
        if not (_MIN_NORMAL[fmt] < abs(r) < math.inf):
            return None
        bits = int(_Q.unpack(_D.pack(r))[0])
    else:
        try:
            packed = _F.pack(r)
        except OverflowError:
            return None
        r32 = float(_F.unpack(packed)[0])
        if not (_MIN_NORMAL[fmt] < abs(r32) < math.inf):
            return None
        if kind != _DIV and kind != _SQRT:
            inexact = inexact or r32 != r  # sums and products of binary32 values: r is the exact value or TwoSum's
        bits = int(_I.unpack(packed)[0])
    if kind == _MUL and fmt is F64:
        oa, _ = _sig(fmt, a)
        ob, _ = _sig(fmt, b)
        inexact = (oa * ob).bit_length() > fmt.W
    elif kind == _DIV:
        oa, _ = _sig(fmt, a)
        ob, _ = _sig(fmt, b)
        q, rem = divmod(oa, ob)
        inexact = rem != 0 or q.bit_length() > fmt.W
    elif kind == _SQRT:
        orr, er = _sig(fmt, bits)
        ob, e = _sig(fmt, b)
        # x = odd(x) * 2**(e(x) - bias - frac_bits): r * r == b iff the odd parts and the exponents agree
        inexact = orr * orr != ob or 2 * er - fmt.bias - fmt.frac_bits != e
    return bits | (PE << 64 if inexact else 0)


def _daz(fmt: sf.Format, bits: int, ctx: _Ctx) -> int:
    if ctx.env.daz and _is_denormal(fmt, bits):
        return bits & (1 << (fmt.bits - 1))
    return bits


def _minmax(is_max: bool) -> ElemOp:
    def run(fmt: sf.Format, a: int, b: int, ctx: _Ctx) -> int:
        rel, f = sf.compare(fmt, a, b, ctx.env, signaling=True)
        ctx.flags |= f
        if rel == sf.UN:
            return b
        pick_a = rel == (sf.GT if is_max else sf.LT)
        return _daz(fmt, a if pick_a else b, ctx)

    return run


_MIN, _MAX = _minmax(False), _minmax(True)

# CMPPS/CMPSS predicates (imm8 bits 2:0): relations for which the result is true, and
# whether a QNaN operand raises IE (the signalling predicates LT, LE, NLT, NLE).
_PREDICATES: tuple[tuple[frozenset[int], bool], ...] = (
    (frozenset({sf.EQ}), False),
    (frozenset({sf.LT}), True),
    (frozenset({sf.LT, sf.EQ}), True),
    (frozenset({sf.UN}), False),
    (frozenset({sf.LT, sf.GT, sf.UN}), False),
    (frozenset({sf.GT, sf.EQ, sf.UN}), True),
    (frozenset({sf.GT, sf.UN}), True),
    (frozenset({sf.LT, sf.GT, sf.EQ}), False),
)


def _cmp_elem(fmt: sf.Format, a: int, b: int, ctx: _Ctx, pred: int) -> int:
    true_set, signaling = _PREDICATES[pred & 7]
    rel, f = sf.compare(fmt, a, b, ctx.env, signaling)
    ctx.flags |= f
    return (1 << fmt.bits) - 1 if rel in true_set else 0


def _rcp(fmt: sf.Format, a: int, b: int, ctx: _Ctx) -> int:
    """RCP: see the module docstring (no flags; denormal in -> infinity, tiny out -> zero)."""
    del a, ctx
    u = sf.unpack(fmt, b)
    if u.kind in (sf.QNAN, sf.SNAN):
        return sf.quiet(fmt, b)
    if u.kind == sf.ZERO or u.denormal:
        return sf.inf(fmt, u.sign)
    if u.kind == sf.INF:
        return sf.zero(fmt, u.sign)
    r = sf.div(fmt, _one(fmt), b, sf.SSE_ENV)[0]
    return sf.zero(fmt, u.sign) if _is_denormal(fmt, r) else r


def _rsqrt(fmt: sf.Format, a: int, b: int, ctx: _Ctx) -> int:
    del a, ctx
    u = sf.unpack(fmt, b)
    if u.kind in (sf.QNAN, sf.SNAN):
        return sf.quiet(fmt, b)
    if u.kind == sf.ZERO or u.denormal:
        return sf.inf(fmt, u.sign)
    if u.sign:
        return sf.indefinite(fmt)
    if u.kind == sf.INF:
        return sf.zero(fmt, 0)
    s = sf.sqrt(fmt, b, sf.SSE_ENV)[0]
    return sf.div(fmt, _one(fmt), s, sf.SSE_ENV)[0]


def _one(fmt: sf.Format) -> int:
    return fmt.bias << fmt.frac_bits


# ---- runners ----------------------------------------------------------------------------------
def _packed(elem: ElemOp, double: bool, keep_dst: bool = True) -> Runner:
    """dst[i] = elem(dst[i], src[i]) for every lane of a 128-bit operand."""
    fmt = _fmt(double)
    w, n = fmt.bits, 128 // fmt.bits

    def run(cpu: CPU, d: int, s: int, addr: int, imm: int, wide: bool) -> None:
        src = _lanes(_src(cpu, s, addr, 16), w, n)
        dst = _lanes(cpu.fpu.xmm[d], w, n)
        ctx = _Ctx(cpu)
        out = [elem(fmt, x, y, ctx) for x, y in zip(dst, src, strict=True)]
        _finish(cpu, ctx)
        _set_xmm(cpu, d, _join(out, w))

    return run


def _scalar(elem: ElemOp, double: bool) -> Runner:
    """dst[0] = elem(dst[0], src[0]); the other lanes of dst unchanged."""
    fmt = _fmt(double)
    w = fmt.bits
    mask = (1 << w) - 1

    def run(cpu: CPU, d: int, s: int, addr: int, imm: int, wide: bool) -> None:
        b = _src(cpu, s, addr, w // 8)
        a = cpu.fpu.xmm[d] & mask
        ctx = _Ctx(cpu)
        r = elem(fmt, a, b, ctx)
        _finish(cpu, ctx)
        _set_xmm(cpu, d, r, _M128 & ~mask)

    return run


def _cmp(double: bool, scalar: bool) -> Runner:
    fmt = _fmt(double)
    w = fmt.bits

    def elem_for(imm: int) -> ElemOp:
        return lambda f, a, b, ctx: _cmp_elem(f, a, b, ctx, imm)

    def run(cpu: CPU, d: int, s: int, addr: int, imm: int, wide: bool) -> None:
        inner = (_scalar if scalar else _packed)(elem_for(imm), double)
        inner(cpu, d, s, addr, imm, wide)

    del w
    return run


def _comis(double: bool, signaling: bool) -> Runner:
    fmt = _fmt(double)

    def run(cpu: CPU, d: int, s: int, addr: int, imm: int, wide: bool) -> None:
        b = _src(cpu, s, addr, fmt.bits // 8)
        a = cpu.fpu.xmm[d] & ((1 << fmt.bits) - 1)
        ctx = _Ctx(cpu)
        rel, ctx.flags = sf.compare(fmt, a, b, ctx.env, signaling)
        _finish(cpu, ctx)
        bits = {sf.LT: 0x01, sf.EQ: 0x40, sf.GT: 0, sf.UN: 0x45}[rel]
        cpu.set_eflags(bits, 0x8D5)  # ZF PF CF from the relation; OF SF AF cleared

    return run


def _horizontal(elem: ElemOp, double: bool) -> Runner:
    """HADDPS/HSUBPS/HADDPD/HSUBPD: pairs of the destination, then pairs of the source."""
    fmt = _fmt(double)
    w, n = fmt.bits, 128 // fmt.bits

    def run(cpu: CPU, d: int, s: int, addr: int, imm: int, wide: bool) -> None:
        src = _lanes(_src(cpu, s, addr, 16), w, n)
        dst = _lanes(cpu.fpu.xmm[d], w, n)
        ctx = _Ctx(cpu)
        out = [elem(fmt, v[i], v[i + 1], ctx) for v in (dst, src) for i in range(0, n, 2)]
        _finish(cpu, ctx)
        _set_xmm(cpu, d, _join(out, w))

    return run


def _addsub(double: bool) -> Runner:
    """ADDSUBPS/PD: even lanes subtract, odd lanes add."""
    fmt = _fmt(double)
    w, n = fmt.bits, 128 // fmt.bits

    def run(cpu: CPU, d: int, s: int, addr: int, imm: int, wide: bool) -> None:
        src = _lanes(_src(cpu, s, addr, 16), w, n)
        dst = _lanes(cpu.fpu.xmm[d], w, n)
        ctx = _Ctx(cpu)
        out = [(_add if i & 1 else _sub)(fmt, dst[i], src[i], ctx) for i in range(n)]
        _finish(cpu, ctx)
        _set_xmm(cpu, d, _join(out, w))

    return run


def _round(double: bool, scalar: bool) -> Runner:
    """ROUNDPS/PD/SS/SD: imm8 bits 1:0 the mode, bit 2 MXCSR.RC instead, bit 3 no precision exception."""
    fmt = _fmt(double)

    def elem_for(imm: int) -> ElemOp:
        def elem(f: sf.Format, a: int, b: int, ctx: _Ctx) -> int:
            rc = ctx.env.rc if imm & 4 else imm & 3
            r, fl = sf.round_to_int(f, b, ctx.env, rc)
            fl &= ~DE
            if imm & 8:
                fl &= ~PE
            ctx.flags |= fl
            return r

        return elem

    def run(cpu: CPU, d: int, s: int, addr: int, imm: int, wide: bool) -> None:
        (_scalar if scalar else _packed)(elem_for(imm), double)(cpu, d, s, addr, imm, wide)

    del fmt
    return run


def _dp(double: bool) -> Runner:
    """DPPS/DPPD: products of the lanes imm8[7:4] selects, summed pairwise, into the lanes imm8[3:0] selects."""
    fmt = _fmt(double)
    w, n = fmt.bits, 128 // fmt.bits

    def run(cpu: CPU, d: int, s: int, addr: int, imm: int, wide: bool) -> None:
        src = _lanes(_src(cpu, s, addr, 16), w, n)
        dst = _lanes(cpu.fpu.xmm[d], w, n)
        ctx = _Ctx(cpu)
        t = [_mul(fmt, dst[i], src[i], ctx) if imm >> (4 + i) & 1 else 0 for i in range(n)]
        if n == 4:
            total = _add(fmt, _add(fmt, t[0], t[1], ctx), _add(fmt, t[2], t[3], ctx), ctx)
        else:
            total = _add(fmt, t[0], t[1], ctx)
        _finish(cpu, ctx)
        _set_xmm(cpu, d, _join([total if imm >> i & 1 else 0 for i in range(n)], w))

    return run


# -- conversions --
def _f2f(src_fmt: sf.Format, dst_fmt: sf.Format, a: int, ctx: _Ctx) -> int:
    return ctx.arith(
        dst_fmt, sf.convert(src_fmt, dst_fmt, a, ctx.env), lambda env: sf.convert(src_fmt, _WIDE[dst_fmt], a, env)[1]
    )


def _f2i(fmt: sf.Format, a: int, bits: int, truncate: bool, ctx: _Ctx) -> int:
    r, f = sf.to_int(fmt, a, bits, ctx.env, truncate)
    ctx.flags |= f & ~DE
    return r


def _i2f(fmt: sf.Format, value: int, bits: int, ctx: _Ctx) -> int:
    if value >> (bits - 1):
        value -= 1 << bits
    r, f = sf.from_int(fmt, value, ctx.env)
    ctx.flags |= f
    return r


def _cvt_ps2pd(cpu: CPU, d: int, s: int, addr: int, imm: int, wide: bool) -> None:
    src = _lanes(cpu.fpu.xmm[s] & _M64 if addr == _NONE else _load(cpu, addr, 8), 32, 2)
    ctx = _Ctx(cpu)
    out = [_f2f(F32, F64, x, ctx) for x in src]
    _finish(cpu, ctx)
    _set_xmm(cpu, d, _join(out, 64))


def _cvt_pd2ps(cpu: CPU, d: int, s: int, addr: int, imm: int, wide: bool) -> None:
    src = _lanes(_src(cpu, s, addr, 16), 64, 2)
    ctx = _Ctx(cpu)
    out = [_f2f(F64, F32, x, ctx) for x in src]
    _finish(cpu, ctx)
    _set_xmm(cpu, d, _join(out, 32))


def _cvt_ss2sd(cpu: CPU, d: int, s: int, addr: int, imm: int, wide: bool) -> None:
    a = _src(cpu, s, addr, 4)
    ctx = _Ctx(cpu)
    r = _f2f(F32, F64, a, ctx)
    _finish(cpu, ctx)
    _set_xmm(cpu, d, r, _M128 & ~_M64)


def _cvt_sd2ss(cpu: CPU, d: int, s: int, addr: int, imm: int, wide: bool) -> None:
    a = _src(cpu, s, addr, 8)
    ctx = _Ctx(cpu)
    r = _f2f(F64, F32, a, ctx)
    _finish(cpu, ctx)
    _set_xmm(cpu, d, r, _M128 & ~_M32)


def _cvt_dq2ps(cpu: CPU, d: int, s: int, addr: int, imm: int, wide: bool) -> None:
    src = _lanes(_src(cpu, s, addr, 16), 32, 4)
    ctx = _Ctx(cpu)
    out = [_i2f(F32, x, 32, ctx) for x in src]
    _finish(cpu, ctx)
    _set_xmm(cpu, d, _join(out, 32))


def _cvt_ps2dq(truncate: bool) -> Runner:
    def run(cpu: CPU, d: int, s: int, addr: int, imm: int, wide: bool) -> None:
        src = _lanes(_src(cpu, s, addr, 16), 32, 4)
        ctx = _Ctx(cpu)
        out = [_f2i(F32, x, 32, truncate, ctx) for x in src]
        _finish(cpu, ctx)
        _set_xmm(cpu, d, _join(out, 32))

    return run


def _cvt_dq2pd(cpu: CPU, d: int, s: int, addr: int, imm: int, wide: bool) -> None:
    src = _lanes(cpu.fpu.xmm[s] & _M64 if addr == _NONE else _load(cpu, addr, 8), 32, 2)
    ctx = _Ctx(cpu)
    out = [_i2f(F64, x, 32, ctx) for x in src]
    _finish(cpu, ctx)
    _set_xmm(cpu, d, _join(out, 64))


def _cvt_pd2dq(truncate: bool) -> Runner:
    def run(cpu: CPU, d: int, s: int, addr: int, imm: int, wide: bool) -> None:
        src = _lanes(_src(cpu, s, addr, 16), 64, 2)
        ctx = _Ctx(cpu)
        out = [_f2i(F64, x, 32, truncate, ctx) for x in src]
        _finish(cpu, ctx)
        _set_xmm(cpu, d, _join(out, 32))

    return run


def _cvt_si2s(double: bool) -> Runner:
    """CVTSI2SS/SD xmm, r/m32 (r/m64 with REX.W)."""
    fmt = _fmt(double)
    mask = (1 << fmt.bits) - 1

    def run(cpu: CPU, d: int, s: int, addr: int, imm: int, wide: bool) -> None:
        bits = 64 if wide else 32
        v = _get_gpr(cpu, s, wide) if addr == _NONE else _load(cpu, addr, bits // 8)
        ctx = _Ctx(cpu)
        r = _i2f(fmt, v, bits, ctx)
        _finish(cpu, ctx)
        _set_xmm(cpu, d, r, _M128 & ~mask)

    return run


def _cvt_s2si(double: bool, truncate: bool) -> Runner:
    """CVT(T)SS2SI/CVT(T)SD2SI r32 (r64 with REX.W), xmm/m32|m64."""
    fmt = _fmt(double)

    def run(cpu: CPU, d: int, s: int, addr: int, imm: int, wide: bool) -> None:
        a = _src(cpu, s, addr, fmt.bits // 8)
        ctx = _Ctx(cpu)
        r = _f2i(fmt, a, 64 if wide else 32, truncate, ctx)
        _finish(cpu, ctx)
        _set_gpr(cpu, d, r, wide)

    return run


def _cvt_pi2ps(cpu: CPU, d: int, s: int, addr: int, imm: int, wide: bool) -> None:
    src = _lanes(_mm_read(cpu, s, addr), 32, 2)
    ctx = _Ctx(cpu)
    out = [_i2f(F32, x, 32, ctx) for x in src]
    _finish(cpu, ctx)
    _set_xmm(cpu, d, _join(out, 32), _M128 & ~_M64)


def _cvt_pi2pd(cpu: CPU, d: int, s: int, addr: int, imm: int, wide: bool) -> None:
    src = _lanes(_mm_read(cpu, s, addr), 32, 2)
    ctx = _Ctx(cpu)
    out = [_i2f(F64, x, 32, ctx) for x in src]
    _finish(cpu, ctx)
    _set_xmm(cpu, d, _join(out, 64))


def _cvt_ps2pi(truncate: bool) -> Runner:
    def run(cpu: CPU, d: int, s: int, addr: int, imm: int, wide: bool) -> None:
        a = cpu.fpu.xmm[s] & _M64 if addr == _NONE else _load(cpu, addr, 8)
        ctx = _Ctx(cpu)
        out = [_f2i(F32, x, 32, truncate, ctx) for x in _lanes(a, 32, 2)]
        _finish(cpu, ctx)
        _mm_write(cpu, d, _join(out, 32))

    return run


def _cvt_pd2pi(truncate: bool) -> Runner:
    def run(cpu: CPU, d: int, s: int, addr: int, imm: int, wide: bool) -> None:
        a = _src(cpu, s, addr, 16)
        ctx = _Ctx(cpu)
        out = [_f2i(F64, x, 32, truncate, ctx) for x in _lanes(a, 64, 2)]
        _finish(cpu, ctx)
        _mm_write(cpu, d, _join(out, 32))

    return run


def _build() -> None:
    arith: dict[int, ElemOp] = {0x51: _sqrt, 0x58: _add, 0x59: _mul, 0x5C: _sub, 0x5D: _MIN, 0x5E: _div, 0x5F: _MAX}
    for opc, elem in arith.items():
        _RUN[f"0f{opc:02x}"] = _packed(elem, False)
        _RUN[f"f30f{opc:02x}"] = _scalar(elem, False)
        _RUN[f"660f{opc:02x}"] = _packed(elem, True)
        _RUN[f"f20f{opc:02x}"] = _scalar(elem, True)
    _RUN["0f52"] = _packed(_rsqrt, False)
    _RUN["f30f52"] = _scalar(_rsqrt, False)
    _RUN["0f53"] = _packed(_rcp, False)
    _RUN["f30f53"] = _scalar(_rcp, False)
    _RUN["0fc2"] = _cmp(False, False)
    _RUN["f30fc2"] = _cmp(False, True)
    _RUN["660fc2"] = _cmp(True, False)
    _RUN["f20fc2"] = _cmp(True, True)
    _RUN["0f2e"] = _comis(False, False)
    _RUN["0f2f"] = _comis(False, True)
    _RUN["660f2e"] = _comis(True, False)
    _RUN["660f2f"] = _comis(True, True)
    _RUN["0f2a"] = _cvt_pi2ps
    _RUN["660f2a"] = _cvt_pi2pd
    _RUN["f30f2a"] = _cvt_si2s(False)
    _RUN["f20f2a"] = _cvt_si2s(True)
    _RUN["0f2c"] = _cvt_ps2pi(True)
    _RUN["0f2d"] = _cvt_ps2pi(False)
    _RUN["660f2c"] = _cvt_pd2pi(True)
    _RUN["660f2d"] = _cvt_pd2pi(False)
    _RUN["f30f2c"] = _cvt_s2si(False, True)
    _RUN["f30f2d"] = _cvt_s2si(False, False)
    _RUN["f20f2c"] = _cvt_s2si(True, True)
    _RUN["f20f2d"] = _cvt_s2si(True, False)
    _RUN["0f5a"] = _cvt_ps2pd
    _RUN["660f5a"] = _cvt_pd2ps
    _RUN["f30f5a"] = _cvt_ss2sd
    _RUN["f20f5a"] = _cvt_sd2ss
    _RUN["0f5b"] = _cvt_dq2ps
    _RUN["660f5b"] = _cvt_ps2dq(False)
    _RUN["f30f5b"] = _cvt_ps2dq(True)
    _RUN["660fe6"] = _cvt_pd2dq(True)
    _RUN["f20fe6"] = _cvt_pd2dq(False)
    _RUN["f30fe6"] = _cvt_dq2pd
    _RUN["f20f7c"] = _horizontal(_add, False)
    _RUN["660f7c"] = _horizontal(_add, True)
    _RUN["f20f7d"] = _horizontal(_sub, False)
    _RUN["660f7d"] = _horizontal(_sub, True)
    _RUN["f20fd0"] = _addsub(False)
    _RUN["660fd0"] = _addsub(True)
    _RUN["660f3a08"] = _round(False, False)
    _RUN["660f3a09"] = _round(True, False)
    _RUN["660f3a0a"] = _round(False, True)
    _RUN["660f3a0b"] = _round(True, True)
    _RUN["660f3a40"] = _dp(False)
    _RUN["660f3a41"] = _dp(True)
    # MMX register operands: the source of CVTPI2PS/PD, the destination of CVT(T)PS2PI/PD2PI.
    _MMX_FORMS.update({"0f2a", "660f2a", "0f2c", "0f2d", "660f2c", "660f2d"})


_build()
_KEYS = tuple(_RUN)
_KEY_INDEX = {k: i for i, k in enumerate(_KEYS)}
assert set(_KEYS) == set().union(*FEATURE_OPS.values()), "every op key has a feature and a runner"


# ---- the helper and the emitter ------------------------------------------------------------------
@helper
def ssefp(cpu: CPU, index: int, d: int, s: int, addr: int, imm: int, wide: int) -> None:
    key = _KEYS[index]
    # The register forms of the CVT*PI conversions touch MMX: the #MF check (module docstring, step 4);
    # CVT(T)PS2PI/PD2PI write an MMX register whatever the source.
    mmx = key in _MMX_FORMS and (addr == _NONE or key not in ("0f2a", "660f2a"))
    _check(cpu, mmx)
    _RUN[key](cpu, d, s, addr, imm, bool(wide))


def _rex(insn: Insn) -> int:
    """The REX byte of a 64-bit instruction (0 if none): it sits right before the 0F escape."""
    raw = insn.raw
    i = raw.find(0x0F)
    if i > 0 and 0x40 <= raw[i - 1] <= 0x4F:
        return raw[i - 1]
    return 0


def sse_fp(e: Emitter) -> None:
    _emit(e)


def sse_comis(e: Emitter) -> None:
    _emit(e)


# Registration by feature: a CPU model without it has the keys in ``disabled_ops`` (#UD).
for _feat, _keys in FEATURE_OPS.items():
    op(*sorted(k for k in _keys if k[-4:] not in ("0f2e", "0f2f")), flags="", feature=_feat)(sse_fp)
    _comis_keys = sorted(k for k in _keys if k[-4:] in ("0f2e", "0f2f"))
    if _comis_keys:
        op(*_comis_keys, flags="w", feature=_feat)(sse_comis)  # ZF PF CF, OF SF AF cleared


def _emit(e: Emitter) -> None:
    insn = e.insn
    rex = _rex(insn)
    modrm = insn.modrm
    d = (modrm >> 3) & 7 | (rex & 4) << 1
    mem = next((o for o in insn.ops if o.kind == MEM), None)
    has_imm = insn.name in ("0fc2", "f30fc2", "660fc2", "f20fc2") or insn.name.startswith("660f3a")
    imm = insn.raw[-1] if has_imm else 0
    if mem is not None:
        off = e.tmp("o")
        e.emit(f"{off} = {e.offset(mem)}")
        addr = e.linear(mem.seg, off)
        s = 0
    else:
        addr = str(_NONE)
        s = modrm & 7 | (rex & 1) << 3
    e.sync_call(
        "ssefp", e.const(_KEY_INDEX[insn.name]), e.const(d), e.const(s), addr, e.const(imm), e.const(rex >> 3 & 1)
    )


__all__ = ["ssefp", "FEATURE_OPS", "SSE_OPS", "SSE2_OPS", "SSE3_OPS", "SSE41_OPS"]
