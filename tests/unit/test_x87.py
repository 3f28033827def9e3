"""The x87 (core/ops/x87.py) through the emulator's execution path, against Unicorn.

Each case runs the same instruction sequence in a gdbemu Machine (flat
32-bit or 64-bit code, translated as any guest code is, or with a tier
forced) and in Unicorn: fninit, fldcw,
two 80-bit operands loaded, the instruction under test, then ST(0)-ST(2) and
the status word stored.  Compared: the three stored values, and the status
word's TOP and condition codes C0/C2/C3 (the installed Unicorn does not
report the exception flags, see tests/support/fp_oracle.py; C1's
round-up indication is not modelled).  Operands come from every class, in
all rounding modes and precisions.  In 64-bit code the memory operands are
RIP-relative or through r12/r13 with an r9 index, and the register forms
carry REX prefixes.  The default suite runs a sample; the bulk is under
``slow``.
"""

from __future__ import annotations

import math
import random
import struct
from fractions import Fraction

import pytest
from support.fp_oracle import CW, MEMOP, A, FPOracle, RipOp, rand_bits, x87_results, x87_sequence

from gdbemu.core import softfloat as sf
from gdbemu.machine import Machine

CODE = 0x1000
TOP = 0x3800
CC = 0x4000 | 0x0400 | 0x0100  # C3, C2, C0: compared where the SDM defines them
_DEFINES_CC = {"fcom", "fcomp", "fcompp", "fucom", "fucompp", "ftst", "fxam", "fprem", "fprem1"}

# Instruction bytes (st0 = a, st1 = b before them).
OPS: dict[str, bytes] = {
    "fadd": b"\xd8\xc1",
    "fsub": b"\xd8\xe1",
    "fsubr": b"\xd8\xe9",
    "fmul": b"\xd8\xc9",
    "fdiv": b"\xd8\xf1",
    "fdivr": b"\xd8\xf9",
    "fadd_sti": b"\xdc\xc1",
    "fsub_sti": b"\xdc\xe9",
    "fsubr_sti": b"\xdc\xe1",
    "fdiv_sti": b"\xdc\xf9",
    "fdivr_sti": b"\xdc\xf1",
    "faddp": b"\xde\xc1",
    "fsubp": b"\xde\xe9",
    "fdivp": b"\xde\xf9",
    "fmulp": b"\xde\xc9",
    "fcom": b"\xd8\xd1",
    "fcomp": b"\xd8\xd9",
    "fcompp": b"\xde\xd9",
    "fucom": b"\xdd\xe1",
    "fucompp": b"\xda\xe9",
    "ftst": b"\xd9\xe4",
    "fxam": b"\xd9\xe5",
    "fchs": b"\xd9\xe0",
    "fabs": b"\xd9\xe1",
    "fsqrt": b"\xd9\xfa",
    "frndint": b"\xd9\xfc",
    "fxch": b"\xd9\xc9",
    "fld_st1": b"\xd9\xc1",
    "fst_st1": b"\xdd\xd1",
    "fstp_st1": b"\xdd\xd9",
    "fprem": b"\xd9\xf8",
    "fprem1": b"\xd9\xf5",
    "fscale": b"\xd9\xfd",
    "fxtract": b"\xd9\xf4",
    "fld1": b"\xd9\xe8",
    "fldpi": b"\xd9\xeb",
    "fldl2t": b"\xd9\xe9",
    "fldl2e": b"\xd9\xea",
    "fldlg2": b"\xd9\xec",
    "fldln2": b"\xd9\xed",
    "fldz": b"\xd9\xee",
    "fincstp": b"\xd9\xf7",
    "fcmovb": b"\xda\xc1",
    "fcmovnb": b"\xdb\xc1",
    "fcmove": b"\xda\xc9",
    "fcmovu": b"\xda\xd9",
}
# Stack slots holding a value after the op (the others are empty: the SDM stores the
# indefinite for them with IE, QEMU 5.0 stores the stale register; not compared).
_POPS_ONE = {"fcomp", "faddp", "fsubp", "fdivp", "fmulp", "fstp_st1", "fincstp"}
_POPS_TWO = {"fcompp", "fucompp"}
_PUSHES = {"fld_st1", "fld1", "fldpi", "fldl2t", "fldl2e", "fldlg2", "fldln2", "fldz", "fxtract"}


def _slots(name: str) -> int:
    if name in ("fprem", "fprem1"):
        return 0  # QEMU 5.0 computes these in double precision: checked against exact arithmetic
    return 0 if name in _POPS_TWO else 1 if name in _POPS_ONE else 3 if name in _PUSHES else 2


# QEMU 5.0 treats a NaN, infinite or denormal operand of FXTRACT as a number (the SDM:
# the NaN; the infinity and +inf as its exponent; a denormal's normalized significand).
# FSCALE likewise: it returns an SNaN unquieted and -inf for -inf scaled by -inf (the SDM: IE).
_SKIP_NAN = {"fxtract", "fscale"}


def _m(modrm_reg: int) -> bytes:
    """ModRM for [MEMOP] (mod 00, r/m 101: disp32) with ``reg``."""
    return bytes([modrm_reg << 3 | 5]) + struct.pack("<I", MEMOP)


# Memory forms: name -> (bytes, what MEMOP holds: "f32"/"f64"/"f80"/"i16"/"i32"/"i64"/"bcd"/"none").
MEM_OPS: dict[str, tuple[bytes, str]] = {}
for _r, _n in enumerate(("add", "mul", "com", "comp", "sub", "subr", "div", "divr")):
    MEM_OPS[f"f{_n}_m32"] = (b"\xd8" + _m(_r), "f32")
    MEM_OPS[f"f{_n}_m64"] = (b"\xdc" + _m(_r), "f64")
    MEM_OPS[f"fi{_n}_m32"] = (b"\xda" + _m(_r), "i32")
    MEM_OPS[f"fi{_n}_m16"] = (b"\xde" + _m(_r), "i16")
MEM_OPS.update(
    {
        "fld_m32": (b"\xd9" + _m(0), "f32"),
        "fld_m64": (b"\xdd" + _m(0), "f64"),
        "fld_m80": (b"\xdb" + _m(5), "f80"),
        "fst_m32": (b"\xd9" + _m(2), "none"),
        "fstp_m32": (b"\xd9" + _m(3), "none"),
        "fst_m64": (b"\xdd" + _m(2), "none"),
        "fstp_m64": (b"\xdd" + _m(3), "none"),
        "fstp_m80": (b"\xdb" + _m(7), "none"),
        "fild_m16": (b"\xdf" + _m(0), "i16"),
        "fild_m32": (b"\xdb" + _m(0), "i32"),
        "fild_m64": (b"\xdf" + _m(5), "i64"),
        "fist_m16": (b"\xdf" + _m(2), "none"),
        "fistp_m16": (b"\xdf" + _m(3), "none"),
        "fist_m32": (b"\xdb" + _m(2), "none"),
        "fistp_m32": (b"\xdb" + _m(3), "none"),
        "fistp_m64": (b"\xdf" + _m(7), "none"),
        "fisttp_m16": (b"\xdf" + _m(1), "none"),
        "fisttp_m32": (b"\xdb" + _m(1), "none"),
        "fisttp_m64": (b"\xdd" + _m(1), "none"),
        "fbld": (b"\xdf" + _m(4), "bcd"),
        "fbstp": (b"\xdf" + _m(6), "none"),
        "fnstcw": (b"\xd9" + _m(7), "none"),
        "fnstsw_ax_m": (b"\xdd" + _m(7), "none"),
    }
)
_MEM_POPS = {"fcomp_m32", "fcomp_m64", "ficomp_m32", "ficomp_m16", "fstp_m32", "fstp_m64", "fstp_m80"}
_MEM_POPS |= {"fistp_m16", "fistp_m32", "fistp_m64", "fisttp_m16", "fisttp_m32", "fisttp_m64", "fbstp"}
_MEM_PUSHES = {"fld_m32", "fld_m64", "fld_m80", "fild_m16", "fild_m32", "fild_m64", "fbld"}


def _memop_bytes(rng: random.Random, kind: str) -> bytes:
    if kind in ("f32", "f64", "f80"):
        fmt = {"f32": sf.F32, "f64": sf.F64, "f80": sf.F80}[kind]
        return rand_bits(rng, fmt).to_bytes(16, "little").ljust(128, b"\0")
    if kind == "bcd":
        digits = rng.randrange(10 ** rng.randrange(1, 19))
        v = 0
        for i in range(9):
            digits, lo = divmod(digits, 10)
            digits, hi = divmod(digits, 10)
            v |= (hi << 4 | lo) << (8 * i)
        return (v | rng.getrandbits(1) << 79).to_bytes(16, "little").ljust(128, b"\0")
    if kind.startswith("i"):
        n = int(kind[1:]) // 8
        v = rng.getrandbits(8 * n) if rng.random() < 0.5 else rng.randrange(-1000, 1000) % (1 << (8 * n))
        return v.to_bytes(n, "little").ljust(128, b"\0")
    return bytes(128)


def _mem_case(g: GdbemuX87, o: FPOracle, rng: random.Random, name: str) -> None:
    code, kind = MEM_OPS[name]
    a, b = rand_bits(rng, sf.F80), rand_bits(rng, sf.F80)
    if name.startswith(("fist", "fbstp")) and rng.random() < 0.6:
        a = sf.from_int(sf.F80, rng.randrange(-(10 ** rng.randrange(1, 20)), 10**18), sf.X87_ENV)[0]
        a = sf.div(sf.F80, a, sf.from_int(sf.F80, rng.choice((1, 2, 4, 10)), sf.X87_ENV)[0], sf.X87_ENV)[0]
    if name.startswith(("fst", "fist", "fbstp")) and any(_special(x) and sf.is_snan(sf.F80, x) for x in (a,)):
        return  # QEMU 5.0 stores an SNaN unquieted (fp_oracle docstring)
    if name == "fbstp" and (_special(a) or abs(sf.to_float(sf.F80, a)) >= 1e18):
        return  # QEMU 5.0 stores digits of a NaN / an out-of-range value (the SDM: the BCD indefinite)
    memop = _memop_bytes(rng, kind)
    if kind in ("f32", "f64") and sf.is_snan(
        sf.F32 if kind == "f32" else sf.F64,
        int.from_bytes(memop[:8], "little") & ((1 << (32 if kind == "f32" else 64)) - 1),
    ):
        return  # likewise on loads
    rc, pc = rng.randrange(4), rng.choice((0, 2, 3))
    cw = 0x37F & ~0xF00 | pc << 8 | rc << 10
    op, gprs, how = _op64(rng, code, True) if g.bits == 64 else (code, {}, "")
    want = o.x87_run(op, a, b, cw, 2, memop, gprs)
    got = g.run(op, a, b, cw, 2, memop, gprs)
    ctx = (name, how, hex(a), hex(b), memop[:16].hex(), hex(cw), [hex(v) for v in got], [hex(v) for v in want])
    k = 1 if name in _MEM_POPS else 3 if name in _MEM_PUSHES else 2
    if name == "fnstsw_ax_m":
        assert got[4] & 0x3800 == want[4] & 0x3800, ctx
        return
    assert got[:k] == want[:k], ctx
    assert got[4] == want[4] or _saturated(name, got[4], want[4]), ctx
    mask = TOP | (CC if name.startswith(("fcom", "ficom")) else 0)
    assert got[3] & mask == want[3] & mask, ctx


def _saturated(name: str, got: int, want: int) -> bool:
    """FISTTP out of range: the SDM stores the integer indefinite; QEMU 5.0 saturates to the maximum.

    FBSTP of a negative value that rounds to zero: the SDM stores -0, QEMU 5.0 +0.
    """
    if name == "fbstp":
        return got == 1 << 79 and want == 0
    if not name.startswith("fisttp"):
        return False
    bits = int(name[-2:])
    return got == 1 << (bits - 1) and want == (1 << (bits - 1)) - 1


def _op64(rng: random.Random, code: bytes, mem: bool) -> tuple[bytes | RipOp, dict[int, int], str]:
    """The instruction as 64-bit code, with the GPRs its address needs: a register form as is or
    behind a REX prefix (which x87 register forms ignore); a memory form RIP-relative, through
    [r13 + disp32] (REX.B, with REX.W or not: x87 ignores W) or [r12 + r9*8 + disp8] (REX.B, REX.X)."""
    k = rng.randrange(3)
    if not mem:
        return (code, {}, "") if k == 0 else (bytes([rng.choice((0x41, 0x48, 0x4F))]) + code, {}, "rex")
    opc, reg = code[:-5], code[-5] & 0x38
    if k == 0:
        return (opc + bytes([reg | 5]), MEMOP), {}, "rip"
    if k == 1:
        rex = rng.choice((0x41, 0x49))
        return bytes([rex]) + opc + bytes([0x80 | reg | 5]) + struct.pack("<i", 0x40), {13: MEMOP - 0x40}, "r13"
    idx = rng.randrange(-4, 5)
    gprs = {12: (MEMOP - 0x40 - 8 * idx) % (1 << 64), 9: idx % (1 << 64)}
    return b"\x43" + opc + bytes([0x40 | reg | 4, 0xCC, 0x40]), gprs, "sib"


def _special(x: int) -> bool:
    u = sf.unpack(sf.F80, x)
    return u.kind in (sf.QNAN, sf.SNAN, sf.BAD, sf.INF) or u.denormal


PT64 = 0x80000  # the long-mode page tables (outside CODE, DATA and MEMOP)


class GdbemuX87:
    """A Machine running ``x87_sequence``: flat 32-bit code, or 64-bit (``bits``); ``tier`` forces a
    translation tier (None: as a guest runs)."""

    def __init__(self, bits: int = 32, tier: int | None = None) -> None:
        self.m = Machine(ram_size=1 << 20)
        self.m.translator.force_tier = tier
        self.bits = bits

    def run(
        self,
        op_bytes: bytes | RipOp,
        a: int,
        b: int,
        cw: int,
        eflags: int = 2,
        memop: bytes = bytes(128),
        gprs: dict[int, int] | None = None,
    ) -> tuple[int, int, int, int, int]:
        m = self.m
        m.mem.write(MEMOP, memop)
        code, n = x87_sequence(op_bytes, self.bits)
        m.cpu.reset()
        if self.bits == 64:
            m.cpu.setup_long64(PT64)
        else:
            m.cpu.setup_flat32()
        for r, v in (gprs or {}).items():
            m.cpu.set_gpr(r, v)
        m.mem.write(CODE, code)
        m.mem.write(A, a.to_bytes(10, "little") + b"\0" * 6 + b.to_bytes(10, "little"))
        m.mem.write(CW, struct.pack("<H", cw))
        m.cpu.eip = CODE
        m.cpu.set_eflags(eflags)
        stop = m.run(max_insns=n)
        assert getattr(stop, "kind", stop) == "limit", stop
        return x87_results(lambda addr, k: bytes(m.mem.read(addr, k)))


def _case(g: GdbemuX87, o: FPOracle, rng: random.Random, name: str) -> None:
    a, b = rand_bits(rng, sf.F80), rand_bits(rng, sf.F80)
    if name in ("fprem", "fprem1") and rng.random() < 0.7:
        b = (b & ~(0x7FFF << 64)) | (((a >> 64) & 0x7FFF) - rng.randrange(0, 70)) % 0x7FFF << 64 | 1 << 63
    if name == "fscale":
        b = sf.from_int(sf.F80, rng.randrange(-70, 70), sf.X87_ENV)[0] if rng.random() < 0.7 else b
    if name in _SKIP_NAN and any(_special(x) for x in (a, b)):
        return
    rc, pc = rng.randrange(4), rng.choice((0, 2, 3))
    cw = 0x37F & ~0xF00 | pc << 8 | rc << 10
    eflags = 2 | rng.choice((0, 1, 0x40, 0x04, 0x45))
    op, _g, how = _op64(rng, OPS[name], False) if g.bits == 64 else (OPS[name], {}, "")
    want = o.x87_run(op, a, b, cw, eflags)
    got = g.run(op, a, b, cw, eflags)
    ctx = (name, how, hex(a), hex(b), hex(cw), [hex(v) for v in got], [hex(v) for v in want])
    if name in ("fprem", "fprem1"):
        _check_remainder(name, a, b, got[0], got[3], ctx)
    k = _slots(name)
    if name.startswith("fld") and name not in ("fld1", "fldz", "fld_st1") and rc != 0:
        # The SDM rounds the constants per RC (test_constants_follow_rc); QEMU 5.0 always to nearest.
        assert got[1:k] == want[1:k], ctx
    else:
        assert got[:k] == want[:k], ctx
    mask = TOP | (CC if name in _DEFINES_CC else 0)
    if name in ("fprem", "fprem1"):
        mask = TOP  # QEMU 5.0 computes in double precision: C0-C3 checked in _check_remainder
    assert got[3] & mask == want[3] & mask, ctx


def _exact(x: int) -> Fraction | None:
    u = sf.unpack(sf.F80, x)
    if u.kind not in (sf.FINITE, sf.ZERO):
        return None
    return (-1) ** u.sign * Fraction(u.m) * Fraction(2) ** u.e


def _exp_diff(a: int, b: int) -> int:
    return ((a >> 64) & 0x7FFF) - ((b >> 64) & 0x7FFF)


def _check_remainder(name: str, a: int, b: int, got: int, sw: int, ctx: object) -> None:
    """FPREM/FPREM1 results are exact: a - q*b with q = trunc(a/b) / nearest-even(a/b); C0 C3 C1 = q2 q1 q0."""
    va, vb, vr = _exact(a), _exact(b), _exact(got)
    if va is None or vb is None or vb == 0 or va == 0:
        return
    ua, ub = sf.unpack(sf.F80, a), sf.unpack(sf.F80, b)
    if (ua.e + ua.m.bit_length()) - (ub.e + ub.m.bit_length()) >= 64:
        return  # partial remainder (C2 = 1)
    q = Fraction(va / vb)
    n = math.trunc(q) if name == "fprem" else round(q)  # round(): ties to even
    assert vr == va - n * vb, ctx
    q = abs(n)
    want_cc = (0x100 if q & 4 else 0) | (0x4000 if q & 2 else 0)  # C1 (q0) is rewritten by the fstps after
    assert sw & 0x4500 == want_cc, ctx


def _run(n: int, seed: int, bits: int = 32, tier: int | None = None) -> None:
    g, o = GdbemuX87(bits, tier), FPOracle(bits)
    rng = random.Random(seed)
    for _ in range(n):
        for name in OPS:
            _case(g, o, rng, name)
        for name in MEM_OPS:
            _mem_case(g, o, rng, name)


def test_x87_against_unicorn_sample() -> None:
    _run(3, 7)


@pytest.mark.parametrize(("bits", "tier"), [(32, 1), (32, 2), (64, 1), (64, 2)])
def test_x87_against_unicorn_per_mode_and_tier(bits: int, tier: int) -> None:
    """Every form in 32- and 64-bit code (there: REX prefixes, RIP-relative and r8-r15 addressing),
    each translation tier forced."""
    _run(3 if tier == 1 else 1, 100 * bits + tier, bits, tier)  # tier 2 costs a compile() per case


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(4))
def test_x87_against_unicorn_bulk(seed: int) -> None:
    _run(150, 1000 + seed)


@pytest.mark.slow
@pytest.mark.parametrize("tier", [1, 2])
def test_x87_in_64_bit_mode_bulk(tier: int) -> None:
    _run(100 if tier == 1 else 12, 6400 + tier, 64, tier)


# ---- transcendentals: the stated error bound (ops/x87.py docstring) -------------------------------
TRANSCENDENTAL = {
    "fsin": (b"\xd9\xfe", (-10.0, 10.0)),
    "fcos": (b"\xd9\xff", (-10.0, 10.0)),
    "fptan": (b"\xd9\xf2", (-1.5, 1.5)),
    "fpatan": (b"\xd9\xf3", (-10.0, 10.0)),
    "f2xm1": (b"\xd9\xf0", (-1.0, 1.0)),
    "fyl2x": (b"\xd9\xf1", (1.0625, 100.0)),
    "fyl2xp1": (b"\xd9\xf9", (-0.29, 0.29)),
}


def test_transcendental_error_bound() -> None:
    mpmath = pytest.importorskip("mpmath")
    mp = mpmath.mp
    mp.prec = 200
    g = GdbemuX87()
    rng = random.Random(11)

    def val(x: int) -> object:
        u = sf.unpack(sf.F80, x)
        return (-1) ** u.sign * mpmath.mpf(u.m) * mpmath.mpf(2) ** u.e

    def rand80(lo: float, hi: float) -> int:
        x = sf.convert(sf.F64, sf.F80, int.from_bytes(struct.pack("<d", rng.uniform(lo, hi)), "little"), sf.X87_ENV)[0]
        return x ^ rng.getrandbits(11) if x & ((1 << 63) - 1) else x  # all 64 significand bits in use

    bound = mpmath.mpf(2) ** -51
    for name, (code, (lo, hi)) in TRANSCENDENTAL.items():
        for _ in range(25):
            a, b = rand80(lo, hi), rand80(0.5, 3.0)
            st0, st1, _st2, _sw, _m = g.run(code, a, b, 0x37F)
            x, y = val(a), val(b)
            if name == "fsin":
                got, ref = val(st0), mpmath.sin(x)
            elif name == "fcos":
                got, ref = val(st0), mpmath.cos(x)
            elif name == "fptan":
                assert st0 == 0x3FFF8000000000000000
                got, ref = val(st1), mpmath.tan(x)
            elif name == "fpatan":
                got, ref = val(st0), mpmath.atan2(y, x)
            elif name == "f2xm1":
                got, ref = val(st0), mpmath.power(2, x) - 1
            elif name == "fyl2x":
                got, ref = val(st0), y * mpmath.log(x, 2)
            else:
                got, ref = val(st0), y * mpmath.log(1 + x, 2)
            assert abs(got - ref) <= bound * abs(ref), (name, hex(a), hex(b), float(abs(got - ref) / abs(ref)))


# ---- a restored state: ES/B and FCW bit 6 as after FLDCW ----------------------------------------------
def _restore_run(bits: int, restore: str, image: bytes) -> tuple[list[int], int]:
    """Run ``restore`` (of the image at 0x2000), then fnstcw [0x2100] and a waiting fld1 with
    CR0.NE set: (the vectors raised, the stored control word)."""
    from gdbemu.core.cpu import CR0_NE, CR4_OSFXSR

    m = Machine(ram_size=1 << 20)
    cpu = m.cpu
    if bits == 64:
        cpu.setup_long64(PT64)
    else:
        cpu.setup_flat32()
    cpu.cr[0] |= CR0_NE
    cpu.cr[4] |= CR4_OSFXSR
    vectors: list[int] = []
    m.trace.interrupt = lambda _cpu, vector, _soft, _err, _next: vectors.append(vector)

    def absolute(opcode: bytes, reg: int, addr: int) -> bytes:  # [disp32], no RIP-relative in 64-bit code
        if bits == 64:
            return opcode + bytes([reg << 3 | 4, 0x25]) + struct.pack("<I", addr)
        return opcode + bytes([reg << 3 | 5]) + struct.pack("<I", addr)

    opcode, reg = (b"\x0f\xae", 1) if restore == "fxrstor" else (b"\xd9", 4)
    code = absolute(opcode, reg, 0x2000) + absolute(b"\xd9", 7, 0x2100) + b"\xd9\xe8"
    m.mem.write(CODE, code)
    m.mem.write(0x2000, image)
    cpu.eip = CODE
    m.run(max_insns=3)
    return vectors, int.from_bytes(m.mem.read(0x2100, 2), "little")


@pytest.mark.parametrize("bits", [32, 64])
@pytest.mark.parametrize("restore", ["fxrstor", "fldenv"])
def test_restored_unmasked_exception_is_pending(bits: int, restore: str) -> None:
    """FXRSTOR and FLDENV of a state whose FSW has an exception flag its FCW leaves unmasked: ES and B
    follow (as the SDM has FLDENV's next waiting instruction raise it), so the fld1 raises #MF; the
    same state masked raises nothing.  FCW bit 6 reads as 1 after either, as after FLDCW."""
    fx = restore == "fxrstor"
    for fcw, fsw, want in ((0x0300, 0x0020, [16]), (0x033F, 0x0020, []), (0x0000, 0x0000, [])):
        image = bytearray(512)
        image[0:2] = fcw.to_bytes(2, "little")
        if fx:
            image[2:4] = fsw.to_bytes(2, "little")
            image[24:28] = (0x1F80).to_bytes(4, "little")  # MXCSR
        else:
            image[4:6] = fsw.to_bytes(2, "little")
            image[8:10] = b"\xff\xff"  # all registers empty
        vectors, cw = _restore_run(bits, restore, bytes(image))
        assert vectors[:1] == want, (restore, bits, hex(fcw), hex(fsw), vectors)
        assert cw == fcw | 0x40, (restore, bits, hex(cw))
