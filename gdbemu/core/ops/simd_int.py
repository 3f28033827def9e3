"""MMX/SSE2/SSSE3/SSE4.1/SSE4.2 integer forms: lane arithmetic on Python ints.

Theory of operation
-------------------
A vector is an int of 64 (MMX) or 128 (XMM) bits.  Each operation is a
function ``f(a, b, n)`` of the destination, the source and the width in
bytes, registered in ``H`` (core/helpers.py) under ``v_<name>`` and called
straight from generated code (no state sync: these cannot fault).  Lanes are
split and joined with ``struct`` in one call each.  Additions, subtractions
and logic on whole lanes use carry-free SWAR arithmetic on the whole int.

The emitter (``binary``) does the checks of ops/simd_state.py, reads the
source (16-byte alignment for a legacy-SSE m128 operand) and writes the
destination last.  Each opcode is registered twice: the MMX form (no
prefix) and the XMM form (66 prefix), each with the CPUID feature that
introduced it.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from ..cpu import CPU
from ..decode import MEM, XMM
from ..emit import Emitter
from ..helpers import helper
from . import op
from .simd_mov import M64, check, mm_write, v_probe_write, vload, vstore, xmm_write
from .simd_state import amask

Vec = Callable[[int, int, int], int]

_FMT = {(1, True): "b", (1, False): "B", (2, True): "h", (2, False): "H", (4, True): "i", (4, False): "I"}
_FMT[(8, True)] = "q"
_FMT[(8, False)] = "Q"
_STRUCTS: dict[tuple[int, int, bool], struct.Struct] = {}


def _st(n: int, w: int, signed: bool) -> struct.Struct:
    key = (n, w, signed)
    s = _STRUCTS.get(key)
    if s is None:
        s = _STRUCTS[key] = struct.Struct(f"<{n // w}{_FMT[(w, signed)]}")
    return s


def split(v: int, n: int, w: int, signed: bool = False) -> tuple[int, ...]:
    return _st(n, w, signed).unpack(v.to_bytes(n, "little"))


def join(lanes: list[int] | tuple[int, ...], w: int) -> int:
    """Lanes (any ints: masked to w bytes) back into one int."""
    m = (1 << (8 * w)) - 1
    out = 0
    for i, x in enumerate(lanes):
        out |= (x & m) << (8 * w * i)
    return out


def _hi_bits(n: int, w: int) -> int:
    return int.from_bytes((b"\0" * (w - 1) + b"\x80") * (n // w), "little")


_HI = {(n, w): _hi_bits(n, w) for n in (8, 16) for w in (1, 2, 4, 8)}


def _padd(w: int) -> Vec:
    def f(a: int, b: int, n: int) -> int:
        h = _HI[(n, w)]
        return ((a & ~h) + (b & ~h)) ^ ((a ^ b) & h)

    return f


def _psub(w: int) -> Vec:
    def f(a: int, b: int, n: int) -> int:
        h = _HI[(n, w)]
        m = (1 << 8 * n) - 1
        return (((a | h) - (b & ~h)) ^ ((a ^ ~b) & h)) & m

    return f


def _lanewise(w: int, signed: bool, fn: Callable[[int, int], int], out_w: int | None = None) -> Vec:
    ow = out_w or w

    def f(a: int, b: int, n: int) -> int:
        return join([fn(x, y) for x, y in zip(split(a, n, w, signed), split(b, n, w, signed), strict=True)], ow)

    return f


def _sat(lo: int, hi: int) -> Callable[[int], int]:
    return lambda x: lo if x < lo else hi if x > hi else x


_SB, _UB, _SW, _UW = _sat(-128, 127), _sat(0, 255), _sat(-32768, 32767), _sat(0, 65535)
_SD = _sat(-(1 << 31), (1 << 31) - 1)
_UD = _sat(0, (1 << 32) - 1)


def _cmp(w: int, signed: bool, gt: bool) -> Vec:
    ones = (1 << 8 * w) - 1
    if gt:
        return _lanewise(w, signed, lambda x, y: ones if x > y else 0)
    return _lanewise(w, signed, lambda x, y: ones if x == y else 0)


def _pack(w: int, sat: Callable[[int], int]) -> Vec:
    """PACKSS/PACKUS: lanes of w bytes from a then b, saturated to w/2 bytes."""

    def f(a: int, b: int, n: int) -> int:
        return join([sat(x) for x in split(a, n, w, True) + split(b, n, w, True)], w // 2)

    return f


def _unpack(w: int, high: bool) -> Vec:
    def f(a: int, b: int, n: int) -> int:
        la, lb = split(a, n, w), split(b, n, w)
        k = len(la) // 2
        if high:
            la, lb = la[k:], lb[k:]
        out: list[int] = []
        for x, y in zip(la[:k], lb[:k], strict=True):
            out += (x, y)
        return join(out, w)

    return f


def _mulhi(signed: bool) -> Vec:
    return _lanewise(2, signed, lambda x, y: (x * y) >> 16)


def _pmuludq(a: int, b: int, n: int) -> int:
    out = (a & 0xFFFFFFFF) * (b & 0xFFFFFFFF)
    if n == 16:
        out |= ((a >> 64) & 0xFFFFFFFF) * ((b >> 64) & 0xFFFFFFFF) << 64
    return out


def _pmuldq(a: int, b: int, n: int) -> int:
    x = split(a, n, 4, True)
    y = split(b, n, 4, True)
    return join([x[0] * y[0], x[2] * y[2]], 8)


def _pmaddwd(a: int, b: int, n: int) -> int:
    x, y = split(a, n, 2, True), split(b, n, 2, True)
    return join([x[i] * y[i] + x[i + 1] * y[i + 1] for i in range(0, len(x), 2)], 4)


def _psadbw(a: int, b: int, n: int) -> int:
    x, y = split(a, n, 1), split(b, n, 1)
    out = sum(abs(p - q) for p, q in zip(x[:8], y[:8], strict=True))
    if n == 16:
        out |= sum(abs(p - q) for p, q in zip(x[8:], y[8:], strict=True)) << 64
    return out


def _avg(w: int) -> Vec:
    return _lanewise(w, False, lambda x, y: (x + y + 1) >> 1)


def _shift(w: int, kind: str) -> Vec:
    """PSRL/PSRA/PSLL by the low 64 bits of the source (a count, all lanes)."""
    bits = 8 * w

    def f(a: int, b: int, n: int) -> int:
        c = b & M64
        if kind == "sra":
            c = min(c, bits - 1)
            return join([x >> c for x in split(a, n, w, True)], w)
        if c >= bits:
            return 0
        if kind == "srl":
            return join([x >> c for x in split(a, n, w)], w)
        return join([x << c for x in split(a, n, w)], w)

    return f


def _pshufb(a: int, b: int, n: int) -> int:
    x = a.to_bytes(n, "little")
    mask = n - 1
    return int.from_bytes(bytes(0 if c & 0x80 else x[c & mask] for c in b.to_bytes(n, "little")), "little")


def _hadd(w: int, sub: bool, sat: Callable[[int], int] | None) -> Vec:
    def f(a: int, b: int, n: int) -> int:
        out = []
        for v in (a, b):
            ls = split(v, n, w, True)
            for i in range(0, len(ls), 2):
                r = ls[i] - ls[i + 1] if sub else ls[i] + ls[i + 1]
                out.append(sat(r) if sat else r)
        return join(out, w)

    return f


def _psign(w: int) -> Vec:
    return _lanewise(w, True, lambda x, y: -x if y < 0 else 0 if y == 0 else x)


def _pabs(w: int) -> Vec:
    return lambda a, b, n: join([abs(y) for y in split(b, n, w, True)], w)


def _pmaddubsw(a: int, b: int, n: int) -> int:
    x, y = split(a, n, 1), split(b, n, 1, True)
    return join([_SW(x[i] * y[i] + x[i + 1] * y[i + 1]) for i in range(0, n, 2)], 2)


def _pmulhrsw(a: int, b: int, n: int) -> int:
    return join([((x * y >> 14) + 1) >> 1 for x, y in zip(split(a, n, 2, True), split(b, n, 2, True), strict=True)], 2)


def _minmax(w: int, signed: bool, mx: bool) -> Vec:
    if mx:
        return _lanewise(w, signed, lambda x, y: x if x >= y else y)
    return _lanewise(w, signed, lambda x, y: x if x <= y else y)


def _pmulld(a: int, b: int, n: int) -> int:
    return join([x * y for x, y in zip(split(a, n, 4), split(b, n, 4), strict=True)], 4)


def _pmullw(a: int, b: int, n: int) -> int:
    return join([x * y for x, y in zip(split(a, n, 2), split(b, n, 2), strict=True)], 2)


def _phminposuw(a: int, b: int, n: int) -> int:
    ls = split(b, n, 2)
    m = min(ls)
    return m | ls.index(m) << 16


def _punpcklqdq(a: int, b: int, n: int) -> int:
    return (a & M64) | (b & M64) << 64


def _punpckhqdq(a: int, b: int, n: int) -> int:
    return (a >> 64) | (b >> 64) << 64


# name -> (function, MMX feature or "", XMM key prefix, XMM feature); key is the opcode after 0F
_BINARY: dict[str, tuple[Vec, str, str]] = {
    "60": (_unpack(1, False), "mmx", "sse2"),
    "61": (_unpack(2, False), "mmx", "sse2"),
    "62": (_unpack(4, False), "mmx", "sse2"),
    "63": (_pack(2, _SB), "mmx", "sse2"),
    "64": (_cmp(1, True, True), "mmx", "sse2"),
    "65": (_cmp(2, True, True), "mmx", "sse2"),
    "66": (_cmp(4, True, True), "mmx", "sse2"),
    "67": (_pack(2, _UB), "mmx", "sse2"),
    "68": (_unpack(1, True), "mmx", "sse2"),
    "69": (_unpack(2, True), "mmx", "sse2"),
    "6a": (_unpack(4, True), "mmx", "sse2"),
    "6b": (_pack(4, _SW), "mmx", "sse2"),
    "6c": (_punpcklqdq, "", "sse2"),
    "6d": (_punpckhqdq, "", "sse2"),
    "74": (_cmp(1, False, False), "mmx", "sse2"),
    "75": (_cmp(2, False, False), "mmx", "sse2"),
    "76": (_cmp(4, False, False), "mmx", "sse2"),
    "d1": (_shift(2, "srl"), "mmx", "sse2"),
    "d2": (_shift(4, "srl"), "mmx", "sse2"),
    "d3": (_shift(8, "srl"), "mmx", "sse2"),
    "d4": (_padd(8), "sse2", "sse2"),
    "d5": (_pmullw, "mmx", "sse2"),
    "d8": (_lanewise(1, False, lambda x, y: _UB(x - y)), "mmx", "sse2"),
    "d9": (_lanewise(2, False, lambda x, y: _UW(x - y)), "mmx", "sse2"),
    "da": (_minmax(1, False, False), "sse", "sse2"),
    "dc": (_lanewise(1, False, lambda x, y: _UB(x + y)), "mmx", "sse2"),
    "dd": (_lanewise(2, False, lambda x, y: _UW(x + y)), "mmx", "sse2"),
    "de": (_minmax(1, False, True), "sse", "sse2"),
    "e0": (_avg(1), "sse", "sse2"),
    "e1": (_shift(2, "sra"), "mmx", "sse2"),
    "e2": (_shift(4, "sra"), "mmx", "sse2"),
    "e3": (_avg(2), "sse", "sse2"),
    "e4": (_mulhi(False), "sse", "sse2"),
    "e5": (_mulhi(True), "mmx", "sse2"),
    "e8": (_lanewise(1, True, lambda x, y: _SB(x - y)), "mmx", "sse2"),
    "e9": (_lanewise(2, True, lambda x, y: _SW(x - y)), "mmx", "sse2"),
    "ea": (_minmax(2, True, False), "sse", "sse2"),
    "ec": (_lanewise(1, True, lambda x, y: _SB(x + y)), "mmx", "sse2"),
    "ed": (_lanewise(2, True, lambda x, y: _SW(x + y)), "mmx", "sse2"),
    "ee": (_minmax(2, True, True), "sse", "sse2"),
    "f1": (_shift(2, "sll"), "mmx", "sse2"),
    "f2": (_shift(4, "sll"), "mmx", "sse2"),
    "f3": (_shift(8, "sll"), "mmx", "sse2"),
    "f4": (_pmuludq, "sse2", "sse2"),
    "f5": (_pmaddwd, "mmx", "sse2"),
    "f6": (_psadbw, "sse", "sse2"),
    "f8": (_psub(1), "mmx", "sse2"),
    "f9": (_psub(2), "mmx", "sse2"),
    "fa": (_psub(4), "mmx", "sse2"),
    "fb": (_psub(8), "sse2", "sse2"),
    "fc": (_padd(1), "mmx", "sse2"),
    "fd": (_padd(2), "mmx", "sse2"),
    "fe": (_padd(4), "mmx", "sse2"),
    # SSSE3 (0F 38 xx; MMX and XMM forms)
    "3800": (_pshufb, "ssse3", "ssse3"),
    "3801": (_hadd(2, False, None), "ssse3", "ssse3"),
    "3802": (_hadd(4, False, None), "ssse3", "ssse3"),
    "3803": (_hadd(2, False, _SW), "ssse3", "ssse3"),
    "3804": (_pmaddubsw, "ssse3", "ssse3"),
    "3805": (_hadd(2, True, None), "ssse3", "ssse3"),
    "3806": (_hadd(4, True, None), "ssse3", "ssse3"),
    "3807": (_hadd(2, True, _SW), "ssse3", "ssse3"),
    "3808": (_psign(1), "ssse3", "ssse3"),
    "3809": (_psign(2), "ssse3", "ssse3"),
    "380a": (_psign(4), "ssse3", "ssse3"),
    "380b": (_pmulhrsw, "ssse3", "ssse3"),
    "381c": (_pabs(1), "ssse3", "ssse3"),
    "381d": (_pabs(2), "ssse3", "ssse3"),
    "381e": (_pabs(4), "ssse3", "ssse3"),
    # SSE4.1 / SSE4.2 (XMM only)
    "3828": (_pmuldq, "", "sse4.1"),
    "3829": (_cmp(8, False, False), "", "sse4.1"),
    "382b": (_pack(4, _UW), "", "sse4.1"),
    "3837": (_cmp(8, True, True), "", "sse4.2"),
    "3838": (_minmax(1, True, False), "", "sse4.1"),
    "3839": (_minmax(4, True, False), "", "sse4.1"),
    "383a": (_minmax(2, False, False), "", "sse4.1"),
    "383b": (_minmax(4, False, False), "", "sse4.1"),
    "383c": (_minmax(1, True, True), "", "sse4.1"),
    "383d": (_minmax(4, True, True), "", "sse4.1"),
    "383e": (_minmax(2, False, True), "", "sse4.1"),
    "383f": (_minmax(4, False, True), "", "sse4.1"),
    "3840": (_pmulld, "", "sse4.1"),
    "3841": (_phminposuw, "", "sse4.1"),
}

_FN_NAME: dict[str, str] = {}
for _k, (_fn, _mmx, _xmm) in _BINARY.items():
    _name = f"v_{_k}"
    _fn.__name__ = _name
    helper(_fn)
    _FN_NAME[_k] = _name


def binary(e: Emitter) -> None:
    """dst = f(dst, src) for an MMX or XMM register destination."""
    name = e.insn.name
    k = name[4:] if name.startswith("660f") else name[2:]
    xmm = check(e)
    dst, src = e.insn.ops[0], e.insn.ops[1]
    fn = _FN_NAME[k]
    if xmm:
        s = vload(e, src, 16, aligned=True)
        xmm_write(e, dst.reg, f"H.{fn}(X[{dst.reg}], {s}, 16)")
    else:
        s = vload(e, src, 8)
        mm_write(e, dst.reg, f"H.{fn}(cpu.fpu.st[{dst.reg}] & {M64:#x}, {s}, 8)")


for _k, (_fn, _mmx, _xmm) in _BINARY.items():
    if _mmx:
        op("0f" + _k, flags="", feature=_mmx)(binary)
    op("660f" + _k, flags="", feature=_xmm)(binary)


# ---- shifts by an immediate (0F 71/72/73 groups) ------------------------------------------------
_SHIFT_IMM = {
    (0x71, 2): (2, "srl"), (0x71, 4): (2, "sra"), (0x71, 6): (2, "sll"),
    (0x72, 2): (4, "srl"), (0x72, 4): (4, "sra"), (0x72, 6): (4, "sll"),
    (0x73, 2): (8, "srl"), (0x73, 6): (8, "sll"), (0x73, 3): (16, "srl"), (0x73, 7): (16, "sll"),
}  # fmt: skip
_SHIFT_FN = {(w, k): _shift(w, k) for (w, k) in _SHIFT_IMM.values() if w != 16}
for (_w, _kind), _fn in _SHIFT_FN.items():
    _fn.__name__ = f"v_shift_{_kind}{_w}"
    helper(_fn)


def shift_imm(e: Emitter) -> None:
    insn = e.insn
    opc = int(insn.name[-2:], 16)
    reg = (insn.modrm >> 3) & 7
    xmm = insn.name.startswith("66")
    spec = _SHIFT_IMM.get((opc, reg))
    if spec is None or (spec[0] == 16 and not xmm) or insn.modrm >> 6 != 3:
        e.fault(6)
        e.ended = True
        return
    check(e)
    dst, imm = insn.ops[0], insn.ops[1]
    count = imm.imm & 0xFF
    w, kind = spec
    if w == 16:  # PSRLDQ / PSLLDQ: whole-register byte shifts
        if count > 15:
            xmm_write(e, dst.reg, "0")
        elif kind == "srl":
            xmm_write(e, dst.reg, f"X[{dst.reg}] >> {8 * count}")
        else:
            xmm_write(e, dst.reg, f"X[{dst.reg}] << {8 * count} & {(1 << 128) - 1:#x}")
        return
    fn = f"v_shift_{kind}{w}"
    if xmm:
        xmm_write(e, dst.reg, f"H.{fn}(X[{dst.reg}], {count}, 16)")
    else:
        mm_write(e, dst.reg, f"H.{fn}(cpu.fpu.st[{dst.reg}] & {M64:#x}, {count}, 8)")


for _o in ("71", "72", "73"):
    op("0f" + _o, flags="", feature="mmx")(shift_imm)
    op("660f" + _o, flags="", feature="sse2")(shift_imm)


# ---- shuffles, inserts, extracts -----------------------------------------------------------------
@helper
def v_pshufd(v: int, imm: int) -> int:
    d = split(v, 16, 4)
    return join([d[(imm >> 2 * i) & 3] for i in range(4)], 4)


@helper
def v_pshufw(v: int, imm: int, base: int) -> int:
    """PSHUFW (base 0, 64-bit) / PSHUFLW (base 0) / PSHUFHW (base 64) on one quadword."""
    q = (v >> base) & M64
    d = split(q, 8, 2)
    r = join([d[(imm >> 2 * i) & 3] for i in range(4)], 2)
    return (v & ~(M64 << base)) | (r << base)


@op("660f70", flags="", feature="sse2")
def op_pshufd(e: Emitter) -> None:
    check(e)
    dst, src, imm = e.insn.ops
    s = vload(e, src, 16, aligned=True)
    xmm_write(e, dst.reg, f"H.v_pshufd({s}, {imm.imm & 0xFF})")


@op("f20f70", "f30f70", flags="", feature="sse2")
def op_pshuflw(e: Emitter) -> None:
    check(e)
    dst, src, imm = e.insn.ops
    s = vload(e, src, 16, aligned=True)
    base = 64 if e.insn.name == "f30f70" else 0
    xmm_write(e, dst.reg, f"H.v_pshufw({s}, {imm.imm & 0xFF}, {base}) & {(1 << 128) - 1:#x}")


@op("0f70", flags="", feature="sse")
def op_pshufw(e: Emitter) -> None:
    check(e)
    dst, src, imm = e.insn.ops
    s = vload(e, src, 8)
    mm_write(e, dst.reg, f"H.v_pshufw({s}, {imm.imm & 0xFF}, 0)")


@op("660fd7", flags="", feature="sse2")
@op("0fd7", flags="", feature="sse")
def pmovmskb(e: Emitter) -> None:
    xmm = check(e)
    dst, src = e.insn.ops
    n = 16 if xmm else 8
    v = f"X[{src.reg}]" if xmm else f"cpu.fpu.st[{src.reg}]"
    e.write_reg(dst.reg, 4, f"H.v_movmsk({v}, 8, {n})")
    if not xmm:
        e.emit("H.mmx_enter(cpu)")


@op("660fc4", flags="", feature="sse2")
@op("0fc4", flags="", feature="sse")
def pinsrw(e: Emitter) -> None:
    xmm = check(e)
    dst, src, imm = e.insn.ops
    n = 8 if xmm else 4
    sh = 16 * (imm.imm % n)
    v = vload(e, src, 2)
    mask = 0xFFFF << sh
    if xmm:
        xmm_write(e, dst.reg, f"X[{dst.reg}] & {~mask & ((1 << 128) - 1):#x} | {v} << {sh}")
    else:
        mm_write(e, dst.reg, f"(cpu.fpu.st[{dst.reg}] & {~mask & M64:#x} | {v} << {sh})")


@op("660fc5", flags="", feature="sse2")
@op("0fc5", flags="", feature="sse")
def pextrw(e: Emitter) -> None:
    insn = e.insn
    if insn.modrm >> 6 != 3:
        e.fault(6)
        e.ended = True
        return
    xmm = check(e)
    dst, src, imm = insn.ops
    n = 8 if xmm else 4
    sh = 16 * (imm.imm % n)
    v = f"X[{src.reg}]" if xmm else f"cpu.fpu.st[{src.reg}]"
    e.write_reg(dst.reg, 4, f"({v} >> {sh} & 0xFFFF)")
    if not xmm:
        e.emit("H.mmx_enter(cpu)")


@helper
def v_palignr(a: int, b: int, imm: int, n: int) -> int:
    cat = (a << (8 * n)) | b
    return (cat >> (8 * imm)) & ((1 << 8 * n) - 1) if imm < 2 * n else 0


@op("0f3a0f", "660f3a0f", flags="", feature="ssse3")
def op_palignr(e: Emitter) -> None:
    xmm = check(e)
    dst, src, imm = e.insn.ops
    n = 16 if xmm else 8
    s = vload(e, src, n, aligned=xmm)
    if xmm:
        xmm_write(e, dst.reg, f"H.v_palignr(X[{dst.reg}], {s}, {imm.imm & 0xFF}, 16)")
    else:
        mm_write(e, dst.reg, f"H.v_palignr(cpu.fpu.st[{dst.reg}] & {M64:#x}, {s}, {imm.imm & 0xFF}, 8)")


# ---- SSE4.1: extends, blends, inserts/extracts, ptest -----------------------------------------------
_EXTEND = {
    "20": (1, 2, True), "21": (1, 4, True), "22": (1, 8, True), "23": (2, 4, True), "24": (2, 8, True),
    "25": (4, 8, True), "30": (1, 2, False), "31": (1, 4, False), "32": (1, 8, False), "33": (2, 4, False),
    "34": (2, 8, False), "35": (4, 8, False),
}  # fmt: skip


@helper
def v_pmovx(v: int, w: int, ow: int, signed: int) -> int:
    n = 16 // ow
    return join(list(split(v & ((1 << 8 * w * n) - 1), w * n, w, bool(signed))), ow)


@op(*("660f38" + k for k in _EXTEND), flags="", feature="sse4.1")
def op_pmovx(e: Emitter) -> None:
    sse_only = check(e)
    del sse_only
    dst, src = e.insn.ops
    w, ow, signed = _EXTEND[e.insn.name[-2:]]
    s = vload(e, src, w * (16 // ow))
    xmm_write(e, dst.reg, f"H.v_pmovx({s}, {w}, {ow}, {int(signed)})")


@helper
def v_blend(a: int, b: int, mask: int, w: int) -> int:
    out = a
    lane = (1 << 8 * w) - 1
    for i in range(16 // w):
        if mask >> i & 1:
            sh = 8 * w * i
            out = out & ~(lane << sh) | b & (lane << sh)
    return out


@helper
def v_blendv(a: int, b: int, sel: int, w: int) -> int:
    mask = 0
    for i in range(16 // w):
        mask |= ((sel >> (8 * w * i + 8 * w - 1)) & 1) << i
    return v_blend(a, b, mask, w)


@op("660f3a0c", "660f3a0d", "660f3a0e", flags="", feature="sse4.1")
def op_blend(e: Emitter) -> None:
    """BLENDPS / BLENDPD / PBLENDW."""
    check(e)
    dst, src, imm = e.insn.ops
    w = {"0c": 4, "0d": 8, "0e": 2}[e.insn.name[-2:]]
    s = vload(e, src, 16, aligned=True)
    xmm_write(e, dst.reg, f"H.v_blend(X[{dst.reg}], {s}, {imm.imm & 0xFF}, {w})")


@op("660f3810", "660f3814", "660f3815", flags="", feature="sse4.1")
def op_blendv(e: Emitter) -> None:
    """PBLENDVB / BLENDVPS / BLENDVPD: the selector is XMM0."""
    check(e)
    dst, src = e.insn.ops[0], e.insn.ops[1]
    w = {"10": 1, "14": 4, "15": 8}[e.insn.name[-2:]]
    s = vload(e, src, 16, aligned=True)
    xmm_write(e, dst.reg, f"H.v_blendv(X[{dst.reg}], {s}, X[0], {w})")


@op("660f3817", flags="w", feature="sse4.1")
def op_ptest(e: Emitter) -> None:
    """PTEST: ZF = (dst & src) == 0, CF = (~dst & src) == 0; the other flags cleared."""
    check(e)
    dst, src = e.insn.ops
    s = e.tmp("v")
    e.emit(f"{s} = {vload(e, src, 16, aligned=True)}")
    e.set_flags_value(f"((0x40 if not X[{dst.reg}] & {s} else 0) | (1 if not ~X[{dst.reg}] & {s} else 0))")


_EXTRACT = {"14": 1, "15": 2, "16": 4, "17": 4}
_INSERT = {"20": 1, "22": 4}


@op("660f3a14", "660f3a15", "660f3a16", "660f3a17", flags="", feature="sse4.1")
def op_pextr(e: Emitter) -> None:
    """PEXTRB / PEXTRW / PEXTRD / PEXTRQ (REX.W) / EXTRACTPS to r/m."""
    check(e)
    dst, src, imm = e.insn.ops
    w = _EXTRACT[e.insn.name[-2:]]
    if w == 4 and e.opsize == 8 and e.insn.name.endswith("16"):
        w = 8
    sh = 8 * w * (imm.imm % (16 // w))
    value = f"X[{src.reg}] >> {sh} & {(1 << 8 * w) - 1:#x}"
    if dst.kind == MEM:
        vstore(e, dst, w, value)
    else:
        size = 8 if w == 8 else 4
        e.write_reg(dst.reg, size, f"({value})")


@op("660f3a20", "660f3a22", flags="", feature="sse4.1")
def op_pinsr(e: Emitter) -> None:
    check(e)
    dst, src, imm = e.insn.ops
    w = _INSERT[e.insn.name[-2:]]
    if w == 4 and e.opsize == 8:
        w = 8
    sh = 8 * w * (imm.imm % (16 // w))
    v = vload(e, src, w)
    mask = ((1 << 8 * w) - 1) << sh
    xmm_write(e, dst.reg, f"X[{dst.reg}] & {~mask & ((1 << 128) - 1):#x} | ({v} & {(1 << 8 * w) - 1:#x}) << {sh}")


@helper
def v_insertps(d: int, s: int, imm: int, from_reg: int) -> int:
    v = (s >> (32 * (imm >> 6))) & 0xFFFFFFFF if from_reg else s & 0xFFFFFFFF
    sh = 32 * ((imm >> 4) & 3)
    d = d & ~(0xFFFFFFFF << sh) | v << sh
    for i in range(4):
        if imm >> i & 1:
            d &= ~(0xFFFFFFFF << 32 * i)
    return d


@op("660f3a21", flags="", feature="sse4.1")
def op_insertps(e: Emitter) -> None:
    check(e)
    dst, src, imm = e.insn.ops
    if src.kind == XMM:
        xmm_write(e, dst.reg, f"H.v_insertps(X[{dst.reg}], X[{src.reg}], {imm.imm & 0xFF}, 1)")
    else:
        v = vload(e, src, 4)
        xmm_write(e, dst.reg, f"H.v_insertps(X[{dst.reg}], {v}, {imm.imm & 0xFF}, 0)")


@helper
def v_mpsadbw(a: int, b: int, imm: int) -> int:
    x, y = a.to_bytes(16, "little"), b.to_bytes(16, "little")
    ao = 4 * (imm >> 2 & 1)
    bo = 4 * (imm & 3)
    out = [sum(abs(x[ao + i + j] - y[bo + j]) for j in range(4)) for i in range(8)]
    return join(out, 2)


@op("660f3a42", flags="", feature="sse4.1")
def op_mpsadbw(e: Emitter) -> None:
    check(e)
    dst, src, imm = e.insn.ops
    s = vload(e, src, 16, aligned=True)
    xmm_write(e, dst.reg, f"H.v_mpsadbw(X[{dst.reg}], {s}, {imm.imm & 0xFF})")


# ---- MASKMOVQ / MASKMOVDQU ---------------------------------------------------------------------------
@op("660ff7", flags="", feature="sse2")
@op("0ff7", flags="", feature="sse")
def maskmov(e: Emitter) -> None:
    """Store the bytes of the source selected by the mask's sign bits at DS:(E)DI (byte by byte)."""
    xmm = check(e)
    src, mask = e.insn.ops[0], e.insn.ops[1]
    if e.insn.modrm >> 6 != 3:
        e.fault(6)
        e.ended = True
        return
    n = 16 if xmm else 8
    sv = f"X[{src.reg}]" if xmm else f"cpu.fpu.st[{src.reg}]"
    mv = f"X[{mask.reg}]" if xmm else f"cpu.fpu.st[{mask.reg}]"
    seg = 3
    for o in e.insn.ops:
        if o.kind == MEM:
            seg = o.seg
    off = {2: "(edi & 0xFFFF)", 4: "(edi & 0xFFFFFFFF)", 8: "edi"}[e.addrsize]
    a = e.linear(seg, off)
    e.sync_call("v_maskmov", a, sv, mv, str(n))
    if not xmm:
        e.emit("H.mmx_enter(cpu)")


@helper
def v_maskmov(cpu: CPU, addr: int, value: int, mask: int, n: int) -> None:
    v_probe_write(cpu, addr, n)
    store = cpu.softmmu.store
    idx = cpu.mmu_idx
    m = amask(cpu.hflags)
    for i in range(n):
        if mask >> (8 * i + 7) & 1:
            store(idx, (addr + i) & m, 1, (value >> (8 * i)) & 0xFF)


__all__ = ["binary", "split", "join"]
