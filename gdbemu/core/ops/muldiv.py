"""Multiply and divide: mul, imul (one, two and three operands), div, idiv.

One-operand forms use the accumulator pair of their size (Intel SDM vol. 2,
MUL/IMUL/DIV/IDIV): AL -> AX for bytes, DX:AX for words, EDX:EAX for
doublewords.  Python integers make the double-width product and dividend
exact, so every size is one expression parameterised by the operand size.

Flags: multiplies record the F.MUL lazy kind — ``cc_dst`` the low half of the
result, ``cc_src`` nonzero exactly when CF = OF = 1 (the product does not fit
the destination: a nonzero high half for MUL, a high half that is not the sign
extension of the low half for IMUL).  SF, ZF, AF and PF are undefined by the
SDM; F.MUL derives them from the low half, as QEMU does.  DIV and IDIV leave
every flag undefined; like QEMU they leave them unchanged.

Divide errors (#DE, vector 0) are raised for a zero divisor and for a quotient
that does not fit the destination — before any register is written, so the
fault is precise (SDM: "If an exception occurs, the destination operands are
unmodified").
"""

from __future__ import annotations

from .. import flags as F  # noqa: N812 - the project-wide name for the flags module
from ..decode import MEM
from ..emit import MASK, SIGN, Emitter
from . import op

# The accumulator pair of each operand size: (low register, high register).
EAX, EDX = 0, 2


def sext(expr: str, size: int) -> str:
    """Expression for ``expr`` (already masked to ``size`` bytes) sign-extended to a Python int."""
    s = SIGN[size]
    return f"(({expr}) ^ {s:#x}) - {s:#x}"


def _overflow(product: str, size: int) -> str:
    """Nonzero (and non-negative) iff the signed ``product`` does not fit ``size`` bytes.

    For a product p of two signed ``size``-byte values, p + 2**(n-1) lies in
    [0, 2**n) exactly when p fits; otherwise bits n..2n-1 of p + 2**(n-1)
    (two's complement for a negative sum) are not all zero.
    """
    n = 8 * size
    return f"({product} + {SIGN[size]:#x} & {MASK[size] << n:#x})"


def _acc_pair(size: int) -> str:
    """The double-width accumulator operand (dividend) of a one-operand divide."""
    if size == 1:
        return "(eax & 0xFFFF)"
    lo, hi = MASK[size], 8 * size
    return f"((edx & {lo:#x}) << {hi} | eax & {lo:#x})"


def _write_pair(e: Emitter, size: int, low: str, high: str) -> None:
    """Write a double-width result: AH:AL for bytes, else (E)DX:(E)AX."""
    if size == 1:
        e.write_reg(EAX, 2, f"{high} << 8 | {low}")
    else:
        e.write_reg(EAX, size, low)
        e.write_reg(EDX, size, high)


@op("mul", flags="w", pure=True)
def mul(e: Emitter) -> None:
    """MUL r/m: unsigned accumulator * r/m into the accumulator pair; CF=OF = (high half != 0)."""
    (src,) = e.insn.ops
    size = src.size
    n = 8 * size
    m = f"{MASK[size]:#x}"
    b = e.load(src)
    p = e.tmp("p")
    e.emit(f"{p} = {e.reg(EAX, size)} * {b}")
    lo, hi = e.tmp("lo"), e.tmp("hi")
    e.emit(f"{lo} = {p} & {m}")
    e.emit(f"{hi} = {p} >> {n}")
    _write_pair(e, size, lo, hi)
    e.set_cc(F.MUL, size, lo, hi)


@op("imul", flags="w", pure=True)
def imul(e: Emitter) -> None:
    """IMUL in its three forms (SDM vol. 2, IMUL).

    * ``imul r/m``: signed accumulator * r/m into the accumulator pair;
    * ``imul r, r/m``: r = r * r/m, truncated;
    * ``imul r, r/m, imm``: r = r/m * imm (imm sign-extended by the decoder), truncated.

    CF = OF = 1 when the signed product is not the sign extension of its
    truncated low half.
    """
    ops = e.insn.ops
    if len(ops) == 1:
        (src,) = ops
        size = src.size
        n = 8 * size
        m = f"{MASK[size]:#x}"
        b = e.load(src)
        p = e.tmp("p")
        e.emit(f"{p} = ({sext(e.reg(EAX, size), size)}) * ({sext(b, size)})")
        lo, hi = e.tmp("lo"), e.tmp("hi")
        e.emit(f"{lo} = {p} & {m}")
        e.emit(f"{hi} = {p} >> {n} & {m}")
        _write_pair(e, size, lo, hi)
        e.set_cc(F.MUL, size, lo, _overflow(p, size))
        return
    if len(ops) == 2:
        dst, src = ops
        a, b = e.load(dst), e.load(src, size=dst.size)
    else:
        dst, src, imm = ops
        a, b = e.load(src, size=dst.size), e.load(imm, size=dst.size)
    size = dst.size
    p = e.tmp("p")
    e.emit(f"{p} = ({sext(a, size)}) * ({sext(b, size)})")
    r = e.tmp("r")
    e.emit(f"{r} = {p} & {MASK[size]:#x}")
    o = e.tmp("o")
    e.emit(f"{o} = {_overflow(p, size)}")
    e.store(dst, r)
    e.set_cc(F.MUL, size, r, o)


def _divisor(e: Emitter) -> tuple[int, str]:
    (src,) = e.insn.ops
    size = src.size
    d = e.load(src, stable=src.kind != MEM)  # a memory load is a temporary already
    with e.block(f"if not {d}:"):
        e.fault(0)  # #DE: divide by zero
    return size, d


@op("div", flags="")
def div(e: Emitter) -> None:
    """DIV r/m: unsigned (E)DX:(E)AX (AX for bytes) / r/m -> quotient, remainder.

    #DE when the divisor is 0 or the quotient exceeds the operand size
    (SDM vol. 2, DIV: "IF temp > FFH/FFFFH/FFFFFFFFH THEN #DE").
    """
    size, d = _divisor(e)
    num = e.tmp("n")
    e.emit(f"{num} = {_acc_pair(size)}")
    q = e.tmp("q")
    e.emit(f"{q} = {num} // {d}")
    with e.block(f"if {q} > {MASK[size]:#x}:"):
        e.fault(0)  # #DE: quotient overflow
    r = e.tmp("r")
    e.emit(f"{r} = {num} - {q} * {d}")
    _write_pair(e, size, q, r)


@op("idiv", flags="")
def idiv(e: Emitter) -> None:
    """IDIV r/m: signed divide, quotient truncated toward zero, remainder with the dividend's sign.

    #DE when the divisor is 0 or the quotient is outside the signed range of
    the operand size (SDM vol. 2, IDIV: "IF (temp > 7FH) or (temp < 80H)" ...).
    """
    size, d = _divisor(e)
    s = SIGN[size]
    sd = e.tmp("sd")
    e.emit(f"{sd} = {sext(d, size)}")
    sn = e.tmp("sn")
    e.emit(f"{sn} = {sext(_acc_pair(size), 2 * size)}")
    q = e.tmp("q")
    # Python's // floors; x86 truncates toward zero: divide magnitudes, then sign.
    e.emit(f"{q} = abs({sn}) // abs({sd})")
    e.emit(f"if ({sn} ^ {sd}) < 0: {q} = -{q}")
    with e.block(f"if not {-s} <= {q} < {s}:"):
        e.fault(0)  # #DE: quotient overflow
    r = e.tmp("r")
    e.emit(f"{r} = {sn} - {q} * {sd}")
    m = f"{MASK[size]:#x}"
    _write_pair(e, size, f"({q} & {m})", f"({r} & {m})")
