"""Exact IEEE 754 binary floating point on Python integers: the x87 80-bit format, double and single.

Theory of operation
-------------------
Every finite operand is unpacked to an exact value ``(-1)**sign * m * 2**e``
(``m`` a non-negative int).  The operation is done exactly on those integers
(sum, product), or to enough bits plus a sticky bit (quotient, square root):
the low bit of ``m`` is forced to 1 when the discarded remainder is non-zero,
with two or more bits below the rounding point, which is all rounding needs.
``_round_pack`` then rounds once to the format, honouring:

* the rounding mode (``RC_*``: the x87 control word's RC and MXCSR.RC share
  the encoding: 0 nearest-even, 1 down, 2 up, 3 toward zero);
* the precision (x87 precision control: 24, 53 or 64 significand bits with
  the 80-bit format's exponent range, which is what the x87 does);
* tininess detected *before* rounding (SDM vol. 1, 4.9.1.5: x86 detects it on
  the exact result), underflow flagged when tiny and inexact (the masked
  response), FTZ (MXCSR bit 15) flushing a tiny result to signed zero with UE
  and PE, DAZ (MXCSR bit 6) reading denormal operands as signed zero.

Flags are the x87/MXCSR exception bits (``IE DE ZE OE UE PE``, bits 0-5).
Each function returns ``(result, flags)`` and leaves raising to the caller,
which knows the masks.  Only the masked responses are computed here: an
unmasked SSE exception leaves the destination unchanged (the caller discards
the result), and an unmasked x87 overflow/underflow's re-biased result is the
caller's business (``rebias``).

NaNs follow the SDM (vol. 1, table 4-7 and 4.8.3.5): a signalling NaN operand
raises IE and is quieted; with two NaN operands the x87 returns the one with
the larger significand (a QNaN over an SNaN), SSE returns the first source
operand.  An invalid operation without NaN operands gives the "indefinite"
default NaN (sign 1, quiet bit only).  For the 80-bit format the encodings the
8087/287 had and the 387 dropped (pseudo-NaN, pseudo-infinity, unnormal) are
invalid operands: IE and the indefinite.  A pseudo-denormal (exponent 0, J
bit set) is read as the denormal it denotes, with exponent 1.

Exception precedence (SDM vol. 1, 4.9.2 and 8.5): an SNaN or unsupported
operand's IE, then QNaN operands (no exception), then other IE and ZE, then
DE, then OE/UE, then PE.  DE is reported only when the operation gets past
the earlier rows.
"""

from __future__ import annotations

import math
from math import isqrt
from typing import NamedTuple

IE, DE, ZE, OE, UE, PE = 1, 2, 4, 8, 16, 32
RC_NEAREST, RC_DOWN, RC_UP, RC_ZERO = 0, 1, 2, 3

# Relations returned by ``compare`` (the encoding FCOM/UCOMISS map to flags).
LT, EQ, GT, UN = 0, 1, 2, 3


class Format(NamedTuple):
    """A binary interchange format: ``W`` significand bits including the integer bit."""

    name: str
    exp_bits: int
    W: int  # significand bits, integer bit included (24, 53, 64)
    explicit: bool  # the integer bit is stored (80-bit format)

    @property
    def bias(self) -> int:
        return (1 << (self.exp_bits - 1)) - 1

    @property
    def emin(self) -> int:
        return 1 - self.bias

    @property
    def emax(self) -> int:
        return self.bias

    @property
    def frac_bits(self) -> int:
        return self.W if self.explicit else self.W - 1

    @property
    def bits(self) -> int:
        return 1 + self.exp_bits + self.frac_bits


F32 = Format("single", 8, 24, False)
F64 = Format("double", 11, 53, False)
F80 = Format("extended", 15, 64, True)


class Env(NamedTuple):
    """What the control word / MXCSR says: rounding, precision (None: the format's), DAZ, FTZ, x87 NaN rule."""

    rc: int = RC_NEAREST
    prec: int | None = None
    daz: bool = False
    ftz: bool = False
    x87: bool = False


X87_ENV = Env(x87=True)
SSE_ENV = Env()

# Operand classes.
ZERO, FINITE, INF, QNAN, SNAN, BAD = range(6)


class Unpacked(NamedTuple):
    kind: int
    sign: int
    m: int  # exact value (-1)**sign * m * 2**e for FINITE; the fraction field for NaNs
    e: int
    denormal: bool


def unpack(fmt: Format, bits: int, daz: bool = False) -> Unpacked:
    """Classify ``bits`` and give its exact value."""
    fb = fmt.frac_bits
    sign = (bits >> (fb + fmt.exp_bits)) & 1
    exp = (bits >> fb) & ((1 << fmt.exp_bits) - 1)
    frac = bits & ((1 << fb) - 1)
    top = (1 << fmt.exp_bits) - 1
    if fmt.explicit:
        j = frac >> (fb - 1)
        low = frac & ((1 << (fb - 1)) - 1)
        if exp == top:
            if not j:
                return Unpacked(BAD, sign, frac, 0, False)  # pseudo-infinity / pseudo-NaN
            if low == 0:
                return Unpacked(INF, sign, 0, 0, False)
            return Unpacked(QNAN if low >> (fb - 2) else SNAN, sign, frac, 0, False)
        if exp == 0:
            if frac == 0:
                return Unpacked(ZERO, sign, 0, 0, False)
            if daz:
                return Unpacked(ZERO, sign, 0, 0, False)
            return Unpacked(FINITE, sign, frac, fmt.emin - (fmt.W - 1), True)
        if not j:
            return Unpacked(BAD, sign, frac, 0, False)  # unnormal
        return Unpacked(FINITE, sign, frac, exp - fmt.bias - (fmt.W - 1), False)
    if exp == top:
        if frac == 0:
            return Unpacked(INF, sign, 0, 0, False)
        return Unpacked(QNAN if frac >> (fb - 1) else SNAN, sign, frac, 0, False)
    if exp == 0:
        if frac == 0 or daz:
            return Unpacked(ZERO, sign, 0, 0, False)
        return Unpacked(FINITE, sign, frac, fmt.emin - (fmt.W - 1), True)
    return Unpacked(FINITE, sign, frac | (1 << fb), exp - fmt.bias - (fmt.W - 1), False)


# ---- packing --------------------------------------------------------------------------------
def _pack_fields(fmt: Format, sign: int, biased: int, sig: int) -> int:
    """``sig`` is the full W-bit significand (integer bit included)."""
    if not fmt.explicit:
        sig &= (1 << (fmt.W - 1)) - 1
    return (sign << (fmt.bits - 1)) | (biased << fmt.frac_bits) | sig


def zero(fmt: Format, sign: int) -> int:
    return sign << (fmt.bits - 1)


def inf(fmt: Format, sign: int) -> int:
    return _pack_fields(fmt, sign, (1 << fmt.exp_bits) - 1, 1 << (fmt.W - 1) if fmt.explicit else 0)


def indefinite(fmt: Format) -> int:
    """The default QNaN: sign 1, quiet bit (and J for the 80-bit format)."""
    q = 1 << (fmt.frac_bits - 1)
    if fmt.explicit:
        q |= 1 << (fmt.frac_bits - 2)
    return (1 << (fmt.bits - 1)) | (((1 << fmt.exp_bits) - 1) << fmt.frac_bits) | q


def quiet(fmt: Format, bits: int) -> int:
    """The NaN ``bits`` with its quiet bit set."""
    return bits | (1 << (fmt.frac_bits - (2 if fmt.explicit else 1)))


def max_finite(fmt: Format, sign: int, prec: int) -> int:
    sig = ((1 << prec) - 1) << (fmt.W - prec)
    return _pack_fields(fmt, sign, (1 << fmt.exp_bits) - 2, sig)


def round_pack(fmt: Format, sign: int, m: int, e: int, env: Env) -> tuple[int, int]:
    """Round ``(-1)**sign * m * 2**e`` (``m`` > 0, low bit a sticky bit if inexact) to ``fmt``."""
    p = env.prec or fmt.W
    emin = fmt.emin
    big_e = e + m.bit_length() - 1
    tiny = big_e < emin
    if tiny and env.ftz:
        return zero(fmt, sign), UE | PE
    q = max(big_e, emin) - (p - 1)
    shift = q - e
    flags = 0
    if shift > 0:
        rem = m & ((1 << shift) - 1)
        m >>= shift
        if rem:
            flags = PE
            rc = env.rc
            if rc == RC_NEAREST:
                half = 1 << (shift - 1)
                up = rem > half or (rem == half and m & 1)
            elif rc == RC_UP:
                up = not sign
            elif rc == RC_DOWN:
                up = bool(sign)
            else:
                up = False
            if up:
                m += 1
                if m >> p:
                    m >>= 1
                    q += 1
    else:
        m <<= -shift
    if tiny and flags:
        flags |= UE
    if m == 0:
        return zero(fmt, sign), flags
    if q + p - 1 > fmt.emax and m >> (p - 1):
        rc = env.rc
        flags |= OE | PE
        if rc == RC_ZERO or (rc == RC_UP and sign) or (rc == RC_DOWN and not sign):
            return max_finite(fmt, sign, p), flags
        return inf(fmt, sign), flags
    sig = m << (fmt.W - p)
    biased = q + p - 1 + fmt.bias if sig >> (fmt.W - 1) else 0
    return _pack_fields(fmt, sign, biased, sig), flags


# ---- NaN propagation ------------------------------------------------------------------------
def _nan_result(fmt: Format, a: Unpacked, abits: int, b: Unpacked | None, bbits: int, env: Env) -> tuple[int, int]:
    """The result of an operation with at least one NaN (or unsupported) operand, and its IE."""
    flags = IE if a.kind in (SNAN, BAD) or (b is not None and b.kind in (SNAN, BAD)) else 0
    if a.kind == BAD or (b is not None and b.kind == BAD):
        return indefinite(fmt), IE
    a_nan = a.kind in (QNAN, SNAN)
    b_nan = b is not None and b.kind in (QNAN, SNAN)
    if a_nan and b_nan and b is not None:
        if not env.x87:
            return quiet(fmt, abits), flags
        if a.kind != b.kind:
            return quiet(fmt, abits if a.kind == QNAN else bbits), flags
        fa = abits & ((1 << fmt.frac_bits) - 1)
        fb = bbits & ((1 << fmt.frac_bits) - 1)
        if fa != fb:
            return quiet(fmt, abits if fa > fb else bbits), flags
        return quiet(fmt, abits if a.sign < b.sign else bbits), flags
    return quiet(fmt, abits if a_nan else bbits), flags


def _is_nan(u: Unpacked) -> bool:
    return u.kind in (QNAN, SNAN, BAD)


def _denormal_flag(*us: Unpacked) -> int:
    return DE if any(u.denormal for u in us) else 0


# ---- arithmetic -----------------------------------------------------------------------------
def add(fmt: Format, a: int, b: int, env: Env, negate_b: bool = False) -> tuple[int, int]:
    """a + b (a - b with ``negate_b``)."""
    ua, ub = unpack(fmt, a, env.daz), unpack(fmt, b, env.daz)
    if _is_nan(ua) or _is_nan(ub):
        return _nan_result(fmt, ua, a, ub, b, env)
    bsign = ub.sign ^ negate_b
    if ua.kind == INF or ub.kind == INF:
        if ua.kind == INF and ub.kind == INF:
            if ua.sign != bsign:
                return indefinite(fmt), IE
            return inf(fmt, ua.sign), 0
        return inf(fmt, ua.sign if ua.kind == INF else bsign), _denormal_flag(ua, ub)
    flags = _denormal_flag(ua, ub)
    if ua.kind == ZERO and ub.kind == ZERO:
        s = ua.sign if ua.sign == bsign else int(env.rc == RC_DOWN)
        return zero(fmt, s), flags
    if ua.kind == ZERO:
        return _exact(fmt, bsign, ub.m, ub.e, env, flags)
    if ub.kind == ZERO:
        return _exact(fmt, ua.sign, ua.m, ua.e, env, flags)
    e = min(ua.e, ub.e)
    va = ua.m << (ua.e - e)
    vb = ub.m << (ub.e - e)
    total = (-va if ua.sign else va) + (-vb if bsign else vb)
    if total == 0:
        return zero(fmt, int(env.rc == RC_DOWN)), flags
    r, f = round_pack(fmt, int(total < 0), abs(total), e, env)
    return r, f | flags


def sub(fmt: Format, a: int, b: int, env: Env) -> tuple[int, int]:
    return add(fmt, a, b, env, negate_b=True)


def _exact(fmt: Format, sign: int, m: int, e: int, env: Env, flags: int) -> tuple[int, int]:
    r, f = round_pack(fmt, sign, m, e, env)
    return r, f | flags


def mul(fmt: Format, a: int, b: int, env: Env) -> tuple[int, int]:
    ua, ub = unpack(fmt, a, env.daz), unpack(fmt, b, env.daz)
    if _is_nan(ua) or _is_nan(ub):
        return _nan_result(fmt, ua, a, ub, b, env)
    sign = ua.sign ^ ub.sign
    if ua.kind == INF or ub.kind == INF:
        if ua.kind == ZERO or ub.kind == ZERO:
            return indefinite(fmt), IE
        return inf(fmt, sign), _denormal_flag(ua, ub)
    flags = _denormal_flag(ua, ub)
    if ua.kind == ZERO or ub.kind == ZERO:
        return zero(fmt, sign), flags
    return _exact(fmt, sign, ua.m * ub.m, ua.e + ub.e, env, flags)


def div(fmt: Format, a: int, b: int, env: Env) -> tuple[int, int]:
    ua, ub = unpack(fmt, a, env.daz), unpack(fmt, b, env.daz)
    if _is_nan(ua) or _is_nan(ub):
        return _nan_result(fmt, ua, a, ub, b, env)
    sign = ua.sign ^ ub.sign
    if ua.kind == INF:
        if ub.kind == INF:
            return indefinite(fmt), IE
        return inf(fmt, sign), _denormal_flag(ub)
    if ub.kind == INF:
        return zero(fmt, sign), _denormal_flag(ua)
    if ub.kind == ZERO:
        if ua.kind == ZERO:
            return indefinite(fmt), IE
        return inf(fmt, sign), ZE
    flags = _denormal_flag(ua, ub)
    if ua.kind == ZERO:
        return zero(fmt, sign), flags
    k = max(0, fmt.W + 3 + ub.m.bit_length() - ua.m.bit_length())
    quo, rem = divmod(ua.m << k, ub.m)
    quo = (quo << 1) | (1 if rem else 0)
    return _exact(fmt, sign, quo, ua.e - ub.e - k - 1, env, flags)


def sqrt(fmt: Format, a: int, env: Env) -> tuple[int, int]:
    ua = unpack(fmt, a, env.daz)
    if _is_nan(ua):
        return _nan_result(fmt, ua, a, None, 0, env)
    if ua.kind == ZERO:
        return zero(fmt, ua.sign), 0
    if ua.sign:
        return indefinite(fmt), IE
    if ua.kind == INF:
        return a, 0
    m, e = ua.m, ua.e
    s = max(0, 2 * (fmt.W + 3) - m.bit_length())
    if (e - s) & 1:
        s += 1
    big = m << s
    r = isqrt(big)
    r = (r << 1) | (1 if r * r != big else 0)
    return _exact(fmt, 0, r, (e - s) // 2 - 1, env, _denormal_flag(ua))


def round_to_int(fmt: Format, a: int, env: Env, rc: int | None = None) -> tuple[int, int]:
    """Round to an integral value in the same format (FRNDINT, ROUNDSS/SD); ``rc`` overrides the mode.

    The precision-control setting does not apply (SDM: FRNDINT rounds to an integer).
    """
    ua = unpack(fmt, a, env.daz)
    if _is_nan(ua):
        return _nan_result(fmt, ua, a, None, 0, env)
    if ua.kind in (ZERO, INF):
        return (zero(fmt, ua.sign) if ua.kind == ZERO else a), 0
    flags = _denormal_flag(ua)
    n, inexact = _to_integer(ua, env.rc if rc is None else rc)
    if inexact:
        flags |= PE
    if n == 0:
        return zero(fmt, ua.sign), flags
    r, f = round_pack(fmt, ua.sign, n, 0, env._replace(prec=None, ftz=False))
    return r, flags | f


def _to_integer(u: Unpacked, rc: int) -> tuple[int, bool]:
    """|value| rounded to an integer by ``rc`` (sign-aware), and whether it was inexact."""
    if u.kind == ZERO:
        return 0, False
    if u.e >= 0:
        return u.m << u.e, False
    shift = -u.e
    if shift > u.m.bit_length() + 1:
        n, rem, half_cmp = 0, 1, -1  # below one half
    else:
        n = u.m >> shift
        rem = u.m & ((1 << shift) - 1)
        half = 1 << (shift - 1)
        half_cmp = (rem > half) - (rem < half)
    if not rem:
        return n, False
    if rc == RC_NEAREST:
        up = half_cmp > 0 or (half_cmp == 0 and n & 1)
    elif rc == RC_UP:
        up = not u.sign
    elif rc == RC_DOWN:
        up = bool(u.sign)
    else:
        up = False
    return n + up, True


def to_int(fmt: Format, a: int, bits: int, env: Env, truncate: bool = False) -> tuple[int, int]:
    """Convert to a signed ``bits``-wide integer (two's complement in the result); out of range: IE, indefinite."""
    ua = unpack(fmt, a, env.daz)
    indef = 1 << (bits - 1)
    if ua.kind in (QNAN, SNAN, BAD, INF):
        return indef, IE
    n, inexact = _to_integer(ua, RC_ZERO if truncate else env.rc)
    v = -n if ua.sign else n
    if not -(1 << (bits - 1)) <= v < (1 << (bits - 1)):
        return indef, IE
    flags = _denormal_flag(ua) | (PE if inexact else 0)
    return v & ((1 << bits) - 1), flags


def from_int(fmt: Format, value: int, env: Env) -> tuple[int, int]:
    """Convert a (signed Python) integer."""
    if value == 0:
        return zero(fmt, 0), 0
    return round_pack(fmt, int(value < 0), abs(value), 0, env._replace(ftz=False))


def convert(src: Format, dst: Format, a: int, env: Env) -> tuple[int, int]:
    """Format conversion (FLD/FST of single and double, CVTSS2SD/CVTSD2SS)."""
    ua = unpack(src, a, env.daz)
    if ua.kind == BAD:
        return indefinite(dst), IE
    if ua.kind in (QNAN, SNAN):
        frac = ua.m & ((1 << (src.frac_bits - (1 if src.explicit else 0))) - 1)
        sb = src.frac_bits - (1 if src.explicit else 0)
        db = dst.frac_bits - (1 if dst.explicit else 0)
        frac = frac << (db - sb) if db >= sb else frac >> (sb - db)
        top = (1 << dst.exp_bits) - 1
        j = (1 << (dst.frac_bits - 1)) if dst.explicit else 0
        r = (ua.sign << (dst.bits - 1)) | (top << dst.frac_bits) | j | frac
        return quiet(dst, r), IE if ua.kind == SNAN else 0
    if ua.kind == INF:
        return inf(dst, ua.sign), 0
    if ua.kind == ZERO:
        return zero(dst, ua.sign), 0
    return _exact(dst, ua.sign, ua.m, ua.e, env, _denormal_flag(ua))


def compare(fmt: Format, a: int, b: int, env: Env, signaling: bool) -> tuple[int, int]:
    """Relation of a to b (LT, EQ, GT, UN); IE for an SNaN, and for any NaN when ``signaling``."""
    ua, ub = unpack(fmt, a, env.daz), unpack(fmt, b, env.daz)
    if _is_nan(ua) or _is_nan(ub):
        snan = any(u.kind in (SNAN, BAD) for u in (ua, ub))
        return UN, IE if signaling or snan else 0
    flags = _denormal_flag(ua, ub)
    va = _order_key(ua)
    vb = _order_key(ub)
    return (LT if va < vb else GT if va > vb else EQ), flags


def _order_key(u: Unpacked) -> tuple[int, int, int]:
    """A key ordering finite/zero/inf values: (class, magnitude-ish) with sign folded in."""
    if u.kind == ZERO:
        return (0, 0, 0)
    if u.kind == INF:
        return (-2, 0, 0) if u.sign else (2, 0, 0)
    # Compare exact values: bring to a common exponent lazily via (E, scaled m).
    big_e = u.e + u.m.bit_length() - 1
    norm = u.m << (16400 - u.m.bit_length())  # same bit length for every finite of these formats
    if u.sign:
        return (-1, -big_e, -norm)
    return (1, big_e, norm)


def is_nan(fmt: Format, bits: int) -> bool:
    return unpack(fmt, bits).kind in (QNAN, SNAN, BAD)


def is_snan(fmt: Format, bits: int) -> bool:
    return unpack(fmt, bits).kind == SNAN


def to_float(fmt: Format, bits: int) -> float:
    """Python float of ``bits`` (for transcendental seeds and display; rounds to double)."""
    u = unpack(fmt, bits)
    if u.kind == ZERO:
        return -0.0 if u.sign else 0.0
    if u.kind == INF:
        return float("-inf") if u.sign else float("inf")
    if u.kind != FINITE:
        return float("nan")
    mag = _ldexp_int(u.m, u.e)
    return -mag if u.sign else mag


def _ldexp_int(m: int, e: int) -> float:
    extra = max(0, m.bit_length() - 60)
    try:
        return math.ldexp(float(m >> extra), e + extra)
    except OverflowError:
        return math.inf


__all__ = [
    "IE",
    "DE",
    "ZE",
    "OE",
    "UE",
    "PE",
    "RC_NEAREST",
    "RC_DOWN",
    "RC_UP",
    "RC_ZERO",
    "LT",
    "EQ",
    "GT",
    "UN",
    "Format",
    "F32",
    "F64",
    "F80",
    "Env",
    "X87_ENV",
    "SSE_ENV",
    "unpack",
    "round_pack",
    "add",
    "sub",
    "mul",
    "div",
    "sqrt",
    "round_to_int",
    "to_int",
    "from_int",
    "convert",
    "compare",
    "indefinite",
    "quiet",
    "inf",
    "zero",
    "is_nan",
    "is_snan",
    "to_float",
]
