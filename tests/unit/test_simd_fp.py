"""SSE floating-point arithmetic (core/ops/simd_fp.py) through the execution path, against Unicorn.

Each case runs one instruction, register form (``OP xmm0, xmm1``, with
eax/ecx and mm0/mm1 where the form takes a GPR or an MMX register) or
memory form (``OP xmm0, [MEMOP]``), in 32-bit protected mode (both
translation tiers), in real mode, and in 64-bit mode (xmm8/xmm9, r8/r9,
REX.W, RIP-relative operands), in a gdbemu Machine and in Unicorn,
from the same XMM/MMX/GPR state and MXCSR (rounding mode and DAZ random,
exceptions masked).  Compared: XMM0-XMM1, EAX, MM0, and EFLAGS' ZF/PF/CF/OF/
SF/AF for COMIS/UCOMIS.  Operands come from every class (zeros, denormals,
infinities, quiet and signalling NaNs, extremes, ties).

What the installed Unicorn (QEMU 5.0's softfloat) does differently, so not
compared here (tests/support/fp_oracle.py lists the rest) and checked by
the vectors below instead:

* the MXCSR exception flags (QEMU 5.0 does not update them), FTZ, and the
  unmasked exceptions (#XM / #UD);
* two NaN operands to one operation: QEMU 5.0 returns the one with the
  larger significand, the SDM the first source;
* SNaN operands of CVTSS2SD/CVTSD2SS/CVTPS2PD/CVTPD2PS (QEMU 5.0 does not
  quiet them);
* MIN/MAX with DAZ and a denormal operand: QEMU 5.0 returns the operand's
  original bits, the SDM the zero DAZ made of it;
* DPPS/DPPD where QEMU 5.0's order of additions (the products one by one
  into +0.0) gives another result than the SDM's (pairwise);
* RCP/RSQRT outside the rounding mode "nearest" and of denormal operands
  or with tiny results (module docstring of simd_fp: the SDM's special
  cases; the error bound is checked separately).
"""

from __future__ import annotations

import random
import struct
from fractions import Fraction

import pytest
from support.fp_oracle import rand_bits
from unicorn import UC_ARCH_X86, UC_MODE_16, UC_MODE_32, UC_MODE_64, Uc
from unicorn import x86_const as ux

from gdbemu.core import softfloat as sf
from gdbemu.core.cpu import (
    CR0_EM,
    CR0_TS,
    CR4_OSFXSR,
    CR4_OSXMMEXCPT,
    CS,
    DESC_A,
    DESC_CS,
    DESC_P,
    DESC_R,
    DESC_S,
    SegmentCache,
)
from gdbemu.core.exceptions import GP, NM, UD, XM
from gdbemu.machine import Machine

CODE = 0x1000
MEMOP = 0x8100
M128 = (1 << 128) - 1

F32, F64 = sf.F32, sf.F64

# name -> (opcode bytes before ModRM, dst type, src type, imm8 kind, src bytes in memory, what is compared)
# types: f32/f64 (lanes of XMM), i32 (four int32 lanes), gpr (eax/ecx), mm (two int32 in MM0/MM1)
FORMS: dict[str, tuple[bytes, str, str, str, int, str]] = {}


def _form(name: str, code: str, dst: str, src: str, mem: int, out: str = "xmm", imm: str = "") -> None:
    FORMS[name] = (bytes.fromhex(code), dst, src, imm, mem, out)


for _op, _opc in (("add", "58"), ("mul", "59"), ("sub", "5c"), ("min", "5d"), ("div", "5e"), ("max", "5f")):
    _form(_op + "ps", "0f" + _opc, "f32", "f32", 16)
    _form(_op + "ss", "f30f" + _opc, "f32", "f32", 4)
    _form(_op + "pd", "660f" + _opc, "f64", "f64", 16)
    _form(_op + "sd", "f20f" + _opc, "f64", "f64", 8)
_form("sqrtps", "0f51", "f32", "f32", 16)
_form("sqrtss", "f30f51", "f32", "f32", 4)
_form("sqrtpd", "660f51", "f64", "f64", 16)
_form("sqrtsd", "f20f51", "f64", "f64", 8)
_form("rsqrtps", "0f52", "f32", "f32", 16)
_form("rsqrtss", "f30f52", "f32", "f32", 4)
_form("rcpps", "0f53", "f32", "f32", 16)
_form("rcpss", "f30f53", "f32", "f32", 4)
_form("cmpps", "0fc2", "f32", "f32", 16, imm="cmp")
_form("cmpss", "f30fc2", "f32", "f32", 4, imm="cmp")
_form("cmppd", "660fc2", "f64", "f64", 16, imm="cmp")
_form("cmpsd", "f20fc2", "f64", "f64", 8, imm="cmp")
_form("ucomiss", "0f2e", "f32", "f32", 4, out="flags")
_form("comiss", "0f2f", "f32", "f32", 4, out="flags")
_form("ucomisd", "660f2e", "f64", "f64", 8, out="flags")
_form("comisd", "660f2f", "f64", "f64", 8, out="flags")
_form("cvtpi2ps", "0f2a", "f32", "mm", 8)
_form("cvtpi2pd", "660f2a", "f64", "mm", 8)
_form("cvtsi2ss", "f30f2a", "f32", "gpr", 4)
_form("cvtsi2sd", "f20f2a", "f64", "gpr", 4)
_form("cvttps2pi", "0f2c", "mm", "f32", 8, out="mm")
_form("cvtps2pi", "0f2d", "mm", "f32", 8, out="mm")
_form("cvttpd2pi", "660f2c", "mm", "f64", 16, out="mm")
_form("cvtpd2pi", "660f2d", "mm", "f64", 16, out="mm")
_form("cvttss2si", "f30f2c", "gpr", "f32", 4, out="gpr")
_form("cvtss2si", "f30f2d", "gpr", "f32", 4, out="gpr")
_form("cvttsd2si", "f20f2c", "gpr", "f64", 8, out="gpr")
_form("cvtsd2si", "f20f2d", "gpr", "f64", 8, out="gpr")
_form("cvtps2pd", "0f5a", "f64", "f32", 8)
_form("cvtpd2ps", "660f5a", "f32", "f64", 16)
_form("cvtss2sd", "f30f5a", "f64", "f32", 4)
_form("cvtsd2ss", "f20f5a", "f32", "f64", 8)
_form("cvtdq2ps", "0f5b", "f32", "i32", 16)
_form("cvtps2dq", "660f5b", "i32", "f32", 16)
_form("cvttps2dq", "f30f5b", "i32", "f32", 16)
_form("cvttpd2dq", "660fe6", "i32", "f64", 16)
_form("cvtdq2pd", "f30fe6", "f64", "i32", 8)
_form("cvtpd2dq", "f20fe6", "i32", "f64", 16)
_form("haddps", "f20f7c", "f32", "f32", 16)
_form("haddpd", "660f7c", "f64", "f64", 16)
_form("hsubps", "f20f7d", "f32", "f32", 16)
_form("hsubpd", "660f7d", "f64", "f64", 16)
_form("addsubps", "f20fd0", "f32", "f32", 16)
_form("addsubpd", "660fd0", "f64", "f64", 16)
_form("roundps", "660f3a08", "f32", "f32", 16, imm="round")
_form("roundpd", "660f3a09", "f64", "f64", 16, imm="round")
_form("roundss", "660f3a0a", "f32", "f32", 4, imm="round")
_form("roundsd", "660f3a0b", "f64", "f64", 8, imm="round")
_form("dpps", "660f3a40", "f32", "f32", 16, imm="dp")
_form("dppd", "660f3a41", "f64", "f64", 16, imm="dp")


def _fmt(t: str) -> sf.Format:
    return F64 if t == "f64" else F32


def _lanes(v: int, fmt: sf.Format) -> list[int]:
    w = fmt.bits
    return [(v >> (w * i)) & ((1 << w) - 1) for i in range(128 // w)]


def _rand_int(rng: random.Random, bits: int) -> int:
    k = rng.randrange(4)
    if k == 0:
        return rng.getrandbits(bits)
    if k == 1:
        return rng.randrange(-1000, 1000) % (1 << bits)
    if k == 2:
        return rng.choice((0, 1 << (bits - 1), (1 << (bits - 1)) - 1, (1 << bits) - 1))
    return (rng.getrandbits(rng.randrange(1, bits)) * rng.choice((1, -1))) % (1 << bits)


def _rand_xmm(rng: random.Random, t: str) -> int:
    if t in ("f32", "f64"):
        fmt = _fmt(t)
        v = 0
        for i in range(128 // fmt.bits):
            v |= rand_bits(rng, fmt) << (fmt.bits * i)
        return v
    if t == "i32":
        return sum(_rand_int(rng, 32) << (32 * i) for i in range(4))
    return rng.getrandbits(128)


def _rand_float_ints(rng: random.Random, t: str) -> int:
    """Floats near the int32 range and small ones, for the conversions to integers."""
    fmt = _fmt(t)
    v = 0
    for i in range(128 // fmt.bits):
        if rng.random() < 0.5:
            x = rand_bits(rng, fmt)
        else:
            n = rng.randrange(-(1 << rng.randrange(1, 33)), 1 << rng.randrange(1, 33))
            x = sf.from_int(fmt, n, sf.SSE_ENV)[0]
            x = sf.div(fmt, x, sf.from_int(fmt, rng.choice((1, 2, 4, 3, 10)), sf.SSE_ENV)[0], sf.SSE_ENV)[0]
        v |= x << (fmt.bits * i)
    return v


def _code64(name: str, memform: bool, imm: int, wide: bool, upper: bool = True) -> bytes:
    """64-bit code: REX.R and REX.B make the operands xmm8/xmm9 (r8/r9; MMX numbers ignore REX);
    ``upper`` False: xmm0/xmm1 (eax/ecx, rax/rcx with REX.W), no REX unless W; the memory form
    is RIP-relative."""
    code, _d, _s, immkind, _n, _o = FORMS[name]
    i = code.index(0x0F)
    rex = 0x40 | (8 if wide else 0) | ((4 | (0 if memform else 1)) if upper else 0)
    body = code[:i] + (bytes([rex]) if rex != 0x40 else b"") + code[i:]
    tail = bytes([imm]) if immkind else b""
    if memform:
        end = CODE + len(body) + 5 + len(tail)
        return body + b"\x05" + struct.pack("<i", MEMOP - end) + tail
    return body + b"\xc1" + tail


class State:
    """What one case starts from and what is compared after it."""

    def __init__(self, xmm0: int, xmm1: int, eax: int, ecx: int, mm0: int, mm1: int, mxcsr: int, mem: bytes) -> None:
        self.xmm0, self.xmm1, self.eax, self.ecx, self.mm0, self.mm1 = xmm0, xmm1, eax, ecx, mm0, mm1
        self.mxcsr, self.mem = mxcsr, mem


def _code(name: str, memform: bool, imm: int, bits: int = 32) -> bytes:
    code, _d, _s, immkind, _n, _o = FORMS[name]
    tail = bytes([imm]) if immkind else b""
    if memform:
        if bits == 16:
            return code + b"\x06" + struct.pack("<H", MEMOP) + tail  # [disp16]
        return code + b"\x05" + struct.pack("<I", MEMOP) + tail
    return code + b"\xc1" + tail


class Gdbemu:
    """A Machine running one instruction; 64-bit: long mode, xmm8/xmm9/r8/r9 in the roles of xmm0/xmm1/eax/ecx."""

    def __init__(self, tier: int | None = None, bits: int = 32, upper: bool = True) -> None:
        self.m = Machine(ram_size=1 << 20)
        self.bits = bits
        self.upper = upper and bits == 64  # xmm8/xmm9, r8/r9 (else xmm0/xmm1, eax/ecx)
        self.m.translator.force_tier = tier  # None: as a guest runs (a one-instruction block stays cold)
        self.vectors: list[int] = []
        self.m.trace.interrupt = lambda cpu, vector, soft, err, next_eip: self.vectors.append(vector)

    def run(self, code: bytes, st: State, cr0: int = 0, cr4: int = CR4_OSFXSR) -> tuple[int, ...]:
        m, c = self.m, self.m.cpu
        c.reset()
        if self.bits == 32:
            c.setup_flat32()
        elif self.bits == 64:
            c.setup_long64(PT64)
        else:  # real mode, CS = DS = 0
            c.segs[CS] = SegmentCache(0, 0, 0xFFFF, DESC_P | DESC_S | DESC_CS | DESC_R | DESC_A)
            c.compute_hflags()
        c.cr[0] |= cr0
        c.cr[4] |= cr4
        m.mem.write(MEMOP, st.mem)
        m.mem.write(CODE, code)
        x = 8 if self.upper else 0
        c.fpu.xmm[x], c.fpu.xmm[x + 1] = st.xmm0, st.xmm1
        c.fpu.st[0] = 0xFFFF << 64 | st.mm0
        c.fpu.st[1] = 0xFFFF << 64 | st.mm1
        c.fpu.mxcsr = st.mxcsr
        c.set_gpr(x, st.eax)
        c.set_gpr(x + 1, st.ecx)
        c.eip = CODE
        c.set_eflags(2)
        self.vectors.clear()
        m.run(max_insns=1)
        return (
            c.fpu.xmm[x],
            c.fpu.xmm[x + 1],
            c.get_gpr(x),
            c.fpu.st[0] & ((1 << 64) - 1),
            c.get_eflags() & 0x8D5,
            c.fpu.mxcsr,
        )


PT64 = 0x80000  # long mode's page tables (cpu.setup_long64)


class Oracle:
    def __init__(self, bits: int = 32, upper: bool = True) -> None:
        self.bits = bits
        self.upper = upper and bits == 64
        self.uc = Uc(UC_ARCH_X86, {16: UC_MODE_16, 32: UC_MODE_32, 64: UC_MODE_64}[bits])
        if bits == 16:
            self.uc.reg_write(ux.UC_X86_REG_CR4, CR4_OSFXSR)  # Unicorn's 32-bit mode has it set
        self.uc.mem_map(0, 0x10000)

    def run(self, code: bytes, st: State) -> tuple[int, ...]:
        uc = self.uc
        wide = self.upper
        xmm0, xmm1 = (ux.UC_X86_REG_XMM8, ux.UC_X86_REG_XMM9) if wide else (ux.UC_X86_REG_XMM0, ux.UC_X86_REG_XMM1)
        ax, cx = (ux.UC_X86_REG_R8, ux.UC_X86_REG_R9) if wide else (ux.UC_X86_REG_EAX, ux.UC_X86_REG_ECX)
        if self.bits == 64 and not wide:
            ax, cx = ux.UC_X86_REG_RAX, ux.UC_X86_REG_RCX
        uc.mem_write(MEMOP, st.mem)
        uc.mem_write(CODE, code)
        uc.reg_write(xmm0, st.xmm0)
        uc.reg_write(xmm1, st.xmm1)
        uc.reg_write(ux.UC_X86_REG_FP0, (st.mm0, 0xFFFF))  # TOP is 0: ST(i) is MM(i)
        uc.reg_write(ux.UC_X86_REG_FP1, (st.mm1, 0xFFFF))
        uc.reg_write(ax, st.eax)
        uc.reg_write(cx, st.ecx)
        uc.reg_write(ux.UC_X86_REG_MXCSR, st.mxcsr)
        uc.reg_write(ux.UC_X86_REG_EFLAGS, 2)
        uc.emu_start(CODE, CODE + len(code))
        return (
            uc.reg_read(xmm0),
            uc.reg_read(xmm1),
            uc.reg_read(ax),
            uc.reg_read(ux.UC_X86_REG_FP0)[0] & ((1 << 64) - 1),
            uc.reg_read(ux.UC_X86_REG_EFLAGS) & 0x8D5,
        )


# ---- where QEMU 5.0 departs from the SDM (module docstring) --------------------------------------
def _nan(fmt: sf.Format, x: int) -> bool:
    return sf.is_nan(fmt, x)


def _denormal(fmt: sf.Format, x: int) -> bool:
    u = sf.unpack(fmt, x)
    return u.denormal


def _skip(name: str, a: int, b: int, mxcsr: int, imm: int) -> bool:
    """True when the case falls in one of the module docstring's exclusions."""
    _code_, dt, stype, _i, _n, _o = FORMS[name]
    scalar = name.endswith(("ss", "sd")) and not name.startswith("cvt")
    if stype not in ("f32", "f64") and dt not in ("f32", "f64"):
        return False
    fmt = _fmt(stype if stype in ("f32", "f64") else dt)
    la, lb = _lanes(a, fmt), _lanes(b, fmt)
    if scalar:
        la, lb = la[:1], lb[:1]
    base = name[:-2]
    if base in ("add", "sub", "mul", "div", "addsub"):
        return any(_nan(fmt, x) and _nan(fmt, y) for x, y in zip(la, lb, strict=True))
    if base in ("hadd", "hsub"):
        return any(_nan(fmt, v[i]) and _nan(fmt, v[i + 1]) for v in (la, lb) for i in range(0, len(v), 2))
    if base in ("min", "max"):
        return bool(mxcsr & 0x40) and any(_denormal(fmt, x) for x in la + lb)
    if name in ("cvtss2sd", "cvtsd2ss", "cvtps2pd", "cvtpd2ps"):
        return any(sf.is_snan(fmt, x) for x in lb)
    if base in ("rcp", "rsqrt"):
        top = (1 << fmt.exp_bits) - 1
        return (mxcsr >> 13) & 3 != 0 or any(_denormal(fmt, x) or (x >> fmt.frac_bits) & top >= top - 2 for x in lb)
    if base == "dp":
        env = sf.Env(rc=(mxcsr >> 13) & 3, daz=bool(mxcsr & 0x40))
        sel = [i for i in range(len(la)) if imm >> (4 + i) & 1]
        prods = [sf.mul(fmt, la[i], lb[i], env)[0] for i in range(len(la))]
        if sum(_nan(fmt, prods[i]) for i in sel) >= 2 or any(_nan(fmt, la[i]) and _nan(fmt, lb[i]) for i in sel):
            return True
        # QEMU 5.0 sums the products in order from +0.0; the SDM adds them pairwise
        t = [prods[i] if i in sel else 0 for i in range(len(la))]
        tree = sf.add(fmt, t[0], t[1], env)[0]
        if len(t) == 4:
            tree = sf.add(fmt, tree, sf.add(fmt, t[2], t[3], env)[0], env)[0]
        seq = 0
        for i in sel:
            seq = sf.add(fmt, seq, prods[i], env)[0]
        if _nan(fmt, tree) and sum(sf.unpack(fmt, prods[i]).kind in (sf.INF, sf.QNAN, sf.SNAN) for i in sel) >= 2:
            return True  # a NaN from inf - inf meets another NaN: which one wins differs as above
        return seq != tree
    return False


def _case(g: Gdbemu, o: Oracle, rng: random.Random, name: str) -> None:
    _c, dt, stype, immkind, nbytes, out = FORMS[name]
    memform = rng.random() < 0.3
    xmm0 = _rand_xmm(rng, dt if dt in ("f32", "f64", "i32") else "x")
    if (
        name.startswith(("cvtt", "cvtp", "cvts"))
        and stype in ("f32", "f64")
        and out != "xmm"
        or name
        in (
            "cvtps2dq",
            "cvttps2dq",
            "cvtpd2dq",
            "cvttpd2dq",
        )
    ):
        src = _rand_float_ints(rng, stype)
    else:
        src = _rand_xmm(rng, stype if stype in ("f32", "f64", "i32") else "x")
    wide = g.bits == 64 and "gpr" in (stype, dt) and rng.random() < 0.5  # REX.W: r/m64
    if stype == "gpr":
        src = _rand_int(rng, 64 if wide else 32)
        nbytes = 8 if wide else 4
    if stype == "mm":
        src = _rand_int(rng, 32) | _rand_int(rng, 32) << 32
    imm = {"": 0, "cmp": rng.randrange(8), "round": rng.randrange(16), "dp": rng.getrandbits(8)}[immkind]
    if immkind == "dp" and name == "dppd":
        imm &= 0x33
    rc = rng.randrange(4)
    daz = rng.random() < 0.25
    mxcsr = 0x1F80 | rc << 13 | (0x40 if daz else 0)
    xmm1 = src if stype not in ("gpr", "mm") else _rand_xmm(rng, "x")
    mem = (src & ((1 << (8 * nbytes)) - 1)).to_bytes(16, "little")
    st = State(
        xmm0=xmm0,
        xmm1=xmm1,
        eax=rng.getrandbits(g.bits if g.bits == 64 else 32),
        ecx=src if stype == "gpr" else rng.getrandbits(32),
        mm0=rng.getrandbits(64),
        mm1=src if stype == "mm" else rng.getrandbits(64),
        mxcsr=mxcsr,
        mem=mem,
    )
    if _skip(name, xmm0, src, mxcsr, imm):
        return
    code = _code64(name, memform, imm, wide, g.upper) if g.bits == 64 else _code(name, memform, imm, g.bits)
    got = g.run(code, st)
    want = o.run(code, st)
    ctx = (
        name,
        "mem" if memform else "reg",
        "rex.w" if wide else "",
        hex(xmm0),
        hex(src),
        hex(mxcsr),
        hex(imm),
        [hex(v) for v in got],
        [hex(v) for v in want],
    )
    assert g.vectors == [], ctx
    assert got[:5] == want, ctx


def _run(n: int, seed: int, tier: int) -> None:
    g, o = Gdbemu(tier), Oracle()
    rng = random.Random(seed)
    for _ in range(n):
        for name in FORMS:
            _case(g, o, rng, name)


@pytest.mark.parametrize("tier", [1, 2])
def test_every_form_against_unicorn_sample(tier: int) -> None:
    _run(8 if tier == 1 else 3, tier, tier)  # the compiled tier costs a compile() per case


def test_every_form_in_real_mode_against_unicorn() -> None:
    """16-bit code: the same forms with 16-bit addressing ([disp16]); the GPR forms stay 32-bit.

    Not the 66-prefixed forms that the installed capstone cannot decode in 16-bit code (gdbemu takes
    operands from capstone, so they raise #UD there: a known gap of core/decode.py).
    """
    g, o = Gdbemu(1, bits=16), Oracle(16)
    rng = random.Random(16)
    for _ in range(4):
        for name in FORMS:
            if name not in CAPSTONE_16_GAP:
                _case(g, o, rng, name)


@pytest.mark.parametrize("upper", [True, False], ids=["xmm8", "xmm0"])
@pytest.mark.parametrize("tier", [1, 2])
def test_every_form_in_64_bit_mode_against_unicorn(tier: int, upper: bool) -> None:
    """Long mode: XMM8/XMM9 and R8/R9 through REX.R/REX.B (or XMM0/XMM1 and EAX/ECX without REX),
    REX.W's 64-bit integers, RIP-relative memory."""
    g, o = Gdbemu(tier, bits=64, upper=upper), Oracle(64, upper=upper)
    rng = random.Random(64 + tier + (0 if upper else 10))
    for _ in range((6 if upper else 3) if tier == 1 else (2 if upper else 1)):
        for name in FORMS:
            _case(g, o, rng, name)


@pytest.mark.slow
@pytest.mark.parametrize("upper", [True, False], ids=["xmm8", "xmm0"])
@pytest.mark.parametrize("tier", [1, 2])
def test_every_form_in_64_bit_mode_bulk(tier: int, upper: bool) -> None:
    g, o = Gdbemu(tier, bits=64, upper=upper), Oracle(64, upper=upper)
    rng = random.Random(6400 + tier + (0 if upper else 10))
    for _ in range((250 if upper else 100) if tier == 1 else (25 if upper else 10)):
        for name in FORMS:
            _case(g, o, rng, name)


CAPSTONE_16_GAP = {"cvttpd2dq", "haddpd", "hsubpd", "addsubpd", "roundps", "roundpd", "roundss", "roundsd"}
CAPSTONE_16_GAP |= {"dpps", "dppd"}


@pytest.mark.slow
@pytest.mark.parametrize("tier", [1, 2])
@pytest.mark.parametrize("seed", range(2))
def test_every_form_against_unicorn_bulk(seed: int, tier: int) -> None:
    _run(300 if tier == 1 else 50, 100 + seed, tier)  # the compiled tier costs a compile() per case


# ---- MXCSR flags, masks, FTZ and the exceptions: vectors from the SDM ---------------------------------
ONE32, TWO32, HALF32 = 0x3F800000, 0x40000000, 0x3F000000
MAX32, MINN32, DEN32 = 0x7F7FFFFF, 0x00800000, 0x00000001
QNAN32, SNAN32, INDEF32 = 0x7FC00001, 0x7F800001, 0xFFC00000
IE, DE, ZE, OE, UE, PE = 1, 2, 4, 8, 16, 32
MASKED = 0x1F80


def _one(
    name: str,
    a: int,
    b: int,
    mxcsr: int = MASKED,
    imm: int = 0,
    memform: bool = False,
    cr0: int = 0,
    cr4: int = CR4_OSFXSR | CR4_OSXMMEXCPT,
    mem_at: int = MEMOP,
    g: Gdbemu | None = None,
) -> tuple[tuple[int, ...], list[int]]:
    g = g or Gdbemu()
    code = _code(name, memform, imm)
    if mem_at != MEMOP:
        code = code.replace(struct.pack("<I", MEMOP), struct.pack("<I", mem_at))
    upper = 0x1234567890ABCDEF << 64
    mem = (b << 8 * (mem_at - MEMOP)).to_bytes(32, "little")
    st = State(upper | a, upper | b, 0x11111111, b & 0xFFFFFFFF, 0, b & ((1 << 64) - 1), mxcsr, mem)
    got = g.run(code, st, cr0, cr4)
    return got, list(g.vectors)


@pytest.mark.parametrize(
    ("name", "a", "b", "mxcsr", "imm", "result", "flags"),
    [
        ("addss", ONE32, 0x30800000, MASKED, 0, ONE32, PE),  # 1 + 2**-30: inexact
        ("divss", ONE32, 0, MASKED, 0, 0x7F800000, ZE),
        ("divss", 0, 0, MASKED, 0, INDEF32, IE),
        ("sqrtss", 0, 0xBF800000, MASKED, 0, INDEF32, IE),
        ("mulss", MAX32, TWO32, MASKED, 0, 0x7F800000, OE | PE),
        ("mulss", MAX32, TWO32, MASKED | 3 << 13, 0, MAX32, OE | PE),  # toward zero: the largest finite
        ("mulss", MINN32, HALF32, MASKED, 0, 0x00400000, 0),  # tiny but exact: no UE while masked
        ("mulss", 0x00800001, 0x3EFFFFFF, MASKED, 0, 0x00400000, UE | PE),
        ("mulss", 0x00800001, 0x3EFFFFFF, MASKED | 0x8000, 0, 0, UE | PE),  # FTZ
        ("addss", DEN32, ONE32, MASKED, 0, ONE32, DE | PE),
        ("addss", DEN32, ONE32, MASKED | 0x40, 0, ONE32, 0),  # DAZ: a zero, no DE
        ("addss", QNAN32, SNAN32, MASKED, 0, QNAN32, IE),  # two NaNs: the first source, quiet
        ("addss", SNAN32, QNAN32, MASKED, 0, 0x7FC00001, IE),
        ("minss", QNAN32, ONE32, MASKED, 0, ONE32, IE),  # MIN: the second source, IE even for a QNaN
        ("maxss", ONE32, SNAN32, MASKED, 0, SNAN32, IE),  # ... unquieted
        ("minss", 0x80000000, 0, MASKED, 0, 0, 0),  # both zeros: the second source
        ("maxss", DEN32, 0, MASKED | 0x40, 0, 0, 0),  # DAZ: the zero it reads
        ("cmpss", QNAN32, ONE32, MASKED, 0, 0, 0),  # EQ: quiet predicate
        ("cmpss", QNAN32, ONE32, MASKED, 1, 0, IE),  # LT: signalling
        ("cmpss", QNAN32, ONE32, MASKED, 4, 0xFFFFFFFF, 0),  # NEQ
        ("cmpss", DEN32, ONE32, MASKED, 1, 0xFFFFFFFF, DE),
        ("cvtss2sd", DEN32, DEN32, MASKED, 0, None, DE),
        ("cvtsd2ss", 0, 0x3FF0000000000001, MASKED, 0, ONE32, PE),
        ("roundss", 0, 0x3FC00000, MASKED, 0, TWO32, PE),  # 1.5 to nearest even
        ("roundss", 0, 0x3FC00000, MASKED, 8 | 1, ONE32, 0),  # down, precision suppressed
        ("roundss", 0, 0x3FC00000, MASKED | 2 << 13, 4, TWO32, PE),  # MXCSR.RC: up
        ("roundss", 0, SNAN32, MASKED, 0, 0x7FC00001, IE),
        ("roundss", 0, DEN32, MASKED, 0, 0, PE),  # no DE from ROUND
        ("rcpss", 0, 0, MASKED, 0, 0x7F800000, 0),  # no flags, no ZE
        ("rcpss", 0, DEN32, MASKED, 0, 0x7F800000, 0),  # a denormal reads as zero
        ("rsqrtss", 0, 0xBF800000, MASKED, 0, INDEF32, 0),
        ("rcpss", 0, 0x7F000000, MASKED, 0, 0, 0),  # tiny results flush to zero
    ],
)
def test_flags_and_results(name: str, a: int, b: int, mxcsr: int, imm: int, result: int | None, flags: int) -> None:
    got, vectors = _one(name, a, b, mxcsr, imm)
    assert vectors == []
    assert got[5] == mxcsr | flags
    if result is not None:
        w = 64 if name in ("cvtss2sd",) else 32
        assert got[0] & ((1 << w) - 1) == result
        assert got[0] >> w == (0x1234567890ABCDEF << 64 | a) >> w  # the upper lanes kept


@pytest.mark.parametrize(
    ("name", "b", "mxcsr", "eax", "flags"),
    [
        ("cvtss2si", 0x3FC00000, MASKED, 2, PE),
        ("cvttss2si", 0xBFC00000, MASKED, 0xFFFFFFFF, PE),
        ("cvtss2si", QNAN32, MASKED, 0x80000000, IE),
        ("cvtss2si", 0x4F000000, MASKED, 0x80000000, IE),  # 2**31: out of range
        ("cvtss2si", DEN32, MASKED, 0, PE),  # no DE from a conversion to an integer
        ("cvtss2si", DEN32, MASKED | 2 << 13, 1, PE),
        ("cvtss2si", DEN32, MASKED | 0x40 | 2 << 13, 0, 0),  # DAZ
        ("cvttsd2si", 0xC1E0000000000000, MASKED, 0x80000000, 0),  # -2**31 exactly
        ("cvtsi2ss", 0x7FFFFFFF, MASKED | 3 << 13, 0x11111111, PE),
    ],
)
def test_conversion_flags(name: str, b: int, mxcsr: int, eax: int, flags: int) -> None:
    got, vectors = _one(name, 0, b, mxcsr)
    assert vectors == []
    assert got[2] == eax
    assert got[5] == mxcsr | flags
    if name == "cvtsi2ss":
        assert got[0] & 0xFFFFFFFF == 0x4EFFFFFF  # 2**31 - 1 toward zero


def test_unmasked_exception_is_xm_and_leaves_the_destination() -> None:
    zm_clear = MASKED & ~(ZE << 7)
    got, vectors = _one("divss", ONE32, 0, zm_clear)
    assert vectors[:1] == [XM]
    assert got[0] & 0xFFFFFFFF == ONE32  # unchanged
    assert got[5] == zm_clear | ZE
    got, vectors = _one("divss", ONE32, 0, zm_clear, cr4=CR4_OSFXSR)  # CR4.OSXMMEXCPT = 0
    assert vectors[:1] == [UD]
    assert got[5] == zm_clear | ZE
    # an unmasked ZE in lane 0, an inexact lane 1: no PE (pre-computation first), nothing written
    got, vectors = _one("divps", ONE32 | ONE32 << 32, 0x40400000 << 32, zm_clear)
    assert vectors[:1] == [XM] and got[5] == zm_clear | ZE
    assert got[0] & ((1 << 64) - 1) == ONE32 | ONE32 << 32


def test_unmasked_precomputation_exception_hides_the_postcomputation_ones() -> None:
    dm_clear = MASKED & ~(DE << 7)
    got, vectors = _one("addss", DEN32, ONE32, dm_clear)
    assert vectors[:1] == [XM]
    assert got[5] == dm_clear | DE  # no PE


def test_unmasked_underflow_raises_on_an_exact_tiny_result_and_ignores_ftz() -> None:
    um_clear = MASKED & ~(UE << 7)
    got, vectors = _one("mulss", MINN32, HALF32, um_clear)
    assert vectors[:1] == [XM] and got[5] == um_clear | UE
    got, vectors = _one("mulss", 0x00800001, 0x3EFFFFFF, um_clear | 0x8000)
    assert vectors[:1] == [XM] and got[5] == um_clear | 0x8000 | UE | PE
    assert got[0] & 0xFFFFFFFF == 0x00800001


@pytest.mark.parametrize(
    ("name", "a", "b", "mask", "flags"),
    [
        ("mulss", MAX32, TWO32, OE, OE),  # exact with an unbounded exponent: no PE
        ("mulss", MAX32, 0x40400000, OE, OE | PE),  # MAX * 3 needs 25 bits
        ("mulss", 0x00800003, HALF32, UE, UE),  # exact unbounded, inexact as a denormal
        ("mulss", 0x00800003, HALF32, 0, UE | PE),  # ... masked: the denormal's rounding
        ("cvtsd2ss", 0, 0x47F0000000000000, OE, OE),  # 2**128
        ("cvtsd2ss", 0, 0x47F0000000000001, OE, OE | PE),
        ("cvtsd2ss", 0, 0x3800000020000000, UE, UE),  # 2**-127 * (1 + 2**-23): 24 bits, not a denormal
        ("cvtsd2ss", 0, 0x3800000020000000, 0, UE | PE),
        ("addsd", 0x7FEFFFFFFFFFFFFF, 0x7FEFFFFFFFFFFFFF, OE, OE),
    ],
)
def test_unmasked_overflow_and_underflow_report_pe_of_the_unbounded_result(
    name: str, a: int, b: int, mask: int, flags: int
) -> None:
    """SDM vol. 1, 4.9.1.4-5: unmasked, the result is re-biased, so PE is that of the unbounded rounding."""
    mxcsr = MASKED & ~(mask << 7)
    got, vectors = _one(name, a, b, mxcsr)
    assert got[5] == mxcsr | flags
    assert vectors[:1] == ([XM] if mask else [])


@pytest.mark.parametrize(
    ("cr0", "cr4", "vector"),
    [
        (CR0_EM, CR4_OSFXSR, UD),
        (0, 0, UD),  # CR4.OSFXSR = 0
        (CR0_TS, CR4_OSFXSR, NM),
        (CR0_TS | CR0_EM, CR4_OSFXSR, UD),  # EM before TS
    ],
)
def test_control_register_checks(cr0: int, cr4: int, vector: int) -> None:
    got, vectors = _one("addps", ONE32, ONE32, MASKED, cr0=cr0, cr4=cr4)
    assert vectors[:1] == [vector]
    assert got[0] & 0xFFFFFFFF == ONE32


def test_packed_memory_operands_must_be_aligned_and_scalar_ones_need_not() -> None:
    got, vectors = _one("addps", ONE32, ONE32, memform=True, mem_at=MEMOP + 4)
    assert vectors[:1] == [GP]
    got, vectors = _one("addss", ONE32, ONE32, memform=True, mem_at=MEMOP + 4)
    assert vectors == [] and got[0] & 0xFFFFFFFF == TWO32
    got, vectors = _one("cvtps2pd", ONE32, ONE32, memform=True, mem_at=MEMOP + 8)  # m64: no alignment
    assert vectors == [] and got[0] & ((1 << 64) - 1) == 0x3FF0000000000000
    got, vectors = _one("cvtps2pd", ONE32, ONE32, memform=True, mem_at=MEMOP + 4, cr0=CR0_TS)
    assert vectors[:1] == [NM]  # #NM before the memory operand


def test_mmx_forms_switch_the_x87_to_mmx_mode() -> None:
    g = Gdbemu()
    c = g.m.cpu

    def run(name: str, memform: bool) -> None:
        st = State(0, 0, 0, 0, 5, 3 | 7 << 32, MASKED, (9).to_bytes(16, "little"))
        code = _code(name, memform, 0)
        m = g.m
        c.reset()
        c.setup_flat32()
        c.cr[4] |= CR4_OSFXSR
        m.mem.write(MEMOP, st.mem)
        m.mem.write(CODE, code)
        c.fpu.st[1] = 0xFFFF << 64 | st.mm1
        c.fpu.top = 5
        c.eip = CODE
        m.run(max_insns=1)

    run("cvtpi2ps", True)
    assert c.fpu.top == 5 and all(c.fpu.empty) and c.fpu.xmm[0] & ((1 << 64) - 1) == 0x41100000
    run("cvtpi2ps", False)
    assert c.fpu.top == 0 and not any(c.fpu.empty)
    assert c.fpu.xmm[0] & ((1 << 64) - 1) == 0x40E00000 << 32 | 0x40400000
    run("cvtps2pi", True)  # writes MM0: the switch whatever the source
    assert c.fpu.top == 0 and not any(c.fpu.empty) and c.fpu.st[0] == 0xFFFF << 64


def test_models_without_the_feature_gate_the_keys() -> None:
    from gdbemu.core import cpuid
    from gdbemu.core.ops import FEATURE_OPS as BY_FEATURE
    from gdbemu.core.ops import OPS, load_all
    from gdbemu.core.ops.simd_fp import FEATURE_OPS

    load_all()
    for feat, keys in FEATURE_OPS.items():
        assert keys <= set(OPS)
        assert keys <= BY_FEATURE[feat]
    assert set().union(*FEATURE_OPS.values()) <= cpuid.resolve("pentium2").disabled_ops
    for spec in ("core2duo", "qemu32", "pentium3", "max,-sse3", "max"):
        model = cpuid.resolve(spec)
        for feat, keys in FEATURE_OPS.items():
            assert (keys <= model.disabled_ops) == (feat not in model.features), (spec, feat)
            assert not keys & model.disabled_ops or feat not in model.features, (spec, feat)


def _value(fmt: sf.Format, bits: int) -> Fraction:
    u = sf.unpack(fmt, bits)
    return (-1) ** u.sign * Fraction(u.m) * Fraction(2) ** u.e


def test_rcp_and_rsqrt_within_the_sdm_bound() -> None:
    """|relative error| <= 1.5 * 2**-12 (SDM: RCPPS, RSQRTPS) on random normal operands."""
    from gdbemu.core.ops.simd_fp import _rcp, _rsqrt

    rng = random.Random(3)
    eps = Fraction(3, 2) / 2**12
    for _ in range(3000):
        x = rng.getrandbits(1) << 31 | rng.randrange(1, 253) << 23 | rng.getrandbits(23)
        r = _rcp(F32, 0, x, None)  # type: ignore[arg-type]
        assert abs(_value(F32, r) * _value(F32, x) - 1) <= eps, hex(x)
        x &= 0x7FFFFFFF
        r = _rsqrt(F32, 0, x, None)  # type: ignore[arg-type]
        sq = _value(F32, r) ** 2 * _value(F32, x)
        assert (1 - eps) ** 2 <= sq <= (1 + eps) ** 2, hex(x)


# ---- the MXCSR flags of the arithmetic against exact rational arithmetic --------------------------------
def _ref(name: str, fmt: sf.Format, a: int, b: int, rc: int, daz: bool) -> tuple[int | None, int]:
    """(result bits or None for a NaN, flags) of ADD/SUB/MUL/DIV/SQRT computed on Fractions.

    An independent model of the SDM's rules: the value is rounded once with
    an unbounded exponent range below (denormals by a fixed quantum), then
    checked for overflow; tininess is detected before rounding; DE when an
    operand is denormal and no higher-priority exception (IE, ZE) occurs.
    """
    ua, ub = sf.unpack(fmt, a, daz), sf.unpack(fmt, b, daz)
    ops = [ub] if name == "sqrt" else [ua, ub]
    if any(u.kind in (sf.QNAN, sf.SNAN) for u in ops):
        return None, IE if any(u.kind == sf.SNAN for u in ops) else 0
    de = DE if any(u.denormal for u in ops) else 0
    inf = {u.kind == sf.INF for u in ops}
    va, vb = (
        (-1) ** u.sign * Fraction(u.m) * Fraction(2) ** u.e if u.kind in (sf.FINITE, sf.ZERO) else None
        for u in (ua, ub)
    )
    if name in ("add", "sub"):
        sb = ub.sign ^ (name == "sub")
        if ua.kind == sf.INF and ub.kind == sf.INF and ua.sign != sb:
            return None, IE
        if True in inf:
            return sf.inf(fmt, ua.sign if ua.kind == sf.INF else sb), de
        assert va is not None and vb is not None
        x = va + vb if name == "add" else va - vb
        zero_sign = (ua.sign if ua.sign == sb else int(rc == sf.RC_DOWN)) if x == 0 else 0
        if x == 0 and not (ua.kind == sf.ZERO and ub.kind == sf.ZERO):
            zero_sign = int(rc == sf.RC_DOWN)
    elif name == "mul":
        if True in inf:
            if sf.ZERO in (ua.kind, ub.kind):
                return None, IE
            return sf.inf(fmt, ua.sign ^ ub.sign), de
        assert va is not None and vb is not None
        x, zero_sign = va * vb, ua.sign ^ ub.sign
    elif name == "div":
        sign = ua.sign ^ ub.sign
        if ua.kind == sf.INF:
            return (None, IE) if ub.kind == sf.INF else (sf.inf(fmt, sign), de)
        if ub.kind == sf.INF:
            return sf.zero(fmt, sign), de
        if ub.kind == sf.ZERO:
            return (None, IE) if ua.kind == sf.ZERO else (sf.inf(fmt, sign), ZE)
        assert va is not None and vb is not None
        x, zero_sign = va / vb, sign
    else:  # sqrt
        if ub.kind == sf.ZERO:
            return sf.zero(fmt, ub.sign), 0  # a zero, or a denormal DAZ made one
        if ub.sign:
            return None, IE
        if ub.kind == sf.INF:
            return b, 0
        assert vb is not None
        return _ref_sqrt(fmt, vb, rc, de)
    if x == 0:
        return sf.zero(fmt, zero_sign), de
    return _ref_round(fmt, x, rc, de)


def _ref_round(fmt: sf.Format, x: Fraction, rc: int, flags: int) -> tuple[int, int]:
    sign = int(x < 0)
    mag = abs(x)
    p, emin, emax = fmt.W, fmt.emin, fmt.emax
    e = mag.numerator.bit_length() - mag.denominator.bit_length()
    if Fraction(2) ** e > mag:
        e -= 1
    elif Fraction(2) ** (e + 1) <= mag:
        e += 1
    q = Fraction(2) ** (max(e, emin) - (p - 1))
    n, rem = divmod(mag, q)
    n = int(n)
    if rem:
        flags |= PE
        half = q / 2
        if rc == sf.RC_NEAREST:
            n += rem > half or (rem == half and n & 1)
        elif rc == (sf.RC_DOWN if sign else sf.RC_UP):
            n += 1
        if e < emin:
            flags |= UE
    value = n * q
    if value >= Fraction(2) ** (emax + 1):
        flags |= OE | PE
        if rc == sf.RC_ZERO or rc == (sf.RC_UP if sign else sf.RC_DOWN):
            return sf.max_finite(fmt, sign, p), flags
        return sf.inf(fmt, sign), flags
    if value == 0:
        return sf.zero(fmt, sign), flags
    r, f = (
        sf.round_pack(fmt, sign, value.numerator, 0, sf.SSE_ENV)
        if value.denominator == 1
        else _exact_bits(fmt, sign, value)
    )
    assert f == 0
    return r, flags


def _exact_bits(fmt: sf.Format, sign: int, value: Fraction) -> tuple[int, int]:
    d = value.denominator.bit_length() - 1
    assert value.denominator == 1 << d
    return sf.round_pack(fmt, sign, value.numerator, -d, sf.SSE_ENV)


def _ref_sqrt(fmt: sf.Format, v: Fraction, rc: int, flags: int) -> tuple[int, int]:
    """Bracket sqrt(v) between neighbours of the format and round by comparing squares."""
    from math import isqrt

    k = 2 * (fmt.W + 4) + abs(v.numerator.bit_length() - v.denominator.bit_length())
    k += k & 1
    scaled = v * Fraction(2) ** (2 * k)
    lo = isqrt(scaled.numerator // scaled.denominator)
    exact = Fraction(lo, 2**k) ** 2 == v
    # sqrt(v) lies in [lo, lo + 1) * 2**-k; a sticky half unit keeps the rounding right
    approx = Fraction(lo, 2**k) if exact else Fraction(2 * lo + 1, 2 ** (k + 1))
    r, f = _ref_round(fmt, approx, rc, flags)
    return r, f if not exact else f & ~PE


@pytest.mark.parametrize("double", [False, True])
def test_arithmetic_flags_against_exact_arithmetic(double: bool) -> None:
    fmt = F64 if double else F32
    suffix = "sd" if double else "ss"
    g = Gdbemu()
    rng = random.Random(11)
    for _ in range(150):
        for op in ("add", "sub", "mul", "div", "sqrt"):
            a, b = rand_bits(rng, fmt), rand_bits(rng, fmt)
            rc, daz = rng.randrange(4), rng.random() < 0.2
            mxcsr = MASKED | rc << 13 | (0x40 if daz else 0)
            want, flags = _ref(op, fmt, a, b, rc, daz)
            got, vectors = _one(op + suffix, a, b, mxcsr, g=g)
            ctx = (op, hex(a), hex(b), hex(mxcsr), hex(got[0]), hex(got[5]), want and hex(want), flags)
            assert vectors == [], ctx
            assert got[5] == mxcsr | flags, ctx
            r = got[0] & ((1 << fmt.bits) - 1)
            if want is None:
                assert sf.is_nan(fmt, r), ctx
            else:
                assert r == want, ctx


def test_ftz_flushes_exactly_the_tiny_results() -> None:
    """FTZ (UE masked): the FTZ-off result unless its exact value was tiny, then a signed zero with UE|PE."""
    g = Gdbemu()
    rng = random.Random(12)
    for _ in range(400):
        op = rng.choice(("addss", "subss", "mulss", "divss", "mulsd", "divsd", "cvtsd2ss"))
        fmt = F64 if op.endswith("sd") else F32
        a = rand_bits(rng, fmt)
        b = rand_bits(rng, F64 if op == "cvtsd2ss" else fmt)
        if op in ("mulss", "mulsd") and rng.random() < 0.5:  # aim at the underflow threshold
            b = (b & ~(((1 << fmt.exp_bits) - 1) << fmt.frac_bits)) | (fmt.bias - rng.randrange(1, 4)) << fmt.frac_bits
            a = (a & ~(((1 << fmt.exp_bits) - 1) << fmt.frac_bits)) | rng.randrange(1, 4) << fmt.frac_bits
        rc = rng.randrange(4)
        plain, _ = _one(op, a, b, MASKED | rc << 13, g=g)
        ftz, vectors = _one(op, a, b, MASKED | rc << 13 | 0x8000, g=g)
        out = F32 if op == "cvtsd2ss" else fmt
        mask = (1 << out.bits) - 1
        p, f = plain[0] & mask, ftz[0] & mask
        ctx = (op, hex(a), hex(b), rc, hex(p), hex(f), hex(plain[5]), hex(ftz[5]))
        assert vectors == [], ctx
        if plain[5] & UE:  # tiny and inexact: flushed
            assert f == p & (1 << (out.bits - 1)) and ftz[5] & 0x3F == plain[5] & 0x3F | UE | PE, ctx
        elif sf.unpack(out, p).denormal:  # tiny and exact: flushed too (UE and PE)
            assert f == p & (1 << (out.bits - 1)) and ftz[5] & 0x3F == plain[5] & 0x3F | UE | PE, ctx
        else:
            assert (f, ftz[5] & 0x3F) == (p, plain[5] & 0x3F), ctx


def test_flags_are_sticky() -> None:
    """MXCSR's flags only accumulate: an exact operation leaves the earlier ones set."""
    got, vectors = _one("addss", ONE32, ONE32, MASKED | ZE | UE)
    assert vectors == [] and got[5] == MASKED | ZE | UE and got[0] & 0xFFFFFFFF == TWO32


@pytest.mark.parametrize("tier", [1, 2])
def test_xm_is_a_fault_at_the_instruction(tier: int) -> None:
    """#XM reports the EIP of the instruction (a fault), after the two before it ran; the destination is unchanged."""
    g = Gdbemu(tier)
    m, c = g.m, g.m.cpu
    faults: list[tuple[int, int]] = []

    def deliver(cpu: object, fault: object) -> None:
        faults.append((getattr(fault, "vector", -1), c.eip))
        c.eip = CODE + 0x100  # a hlt

    m.exec_ctx.deliver_exception = deliver
    c.reset()
    c.setup_flat32()
    c.cr[4] |= CR4_OSFXSR | CR4_OSXMMEXCPT
    code = bytes.fromhex("90f30f58c1f30f5ec290")  # nop; addss xmm0, xmm1; divss xmm0, xmm2 (by 0)
    m.mem.write(CODE, code)
    m.mem.write(CODE + 0x100, b"\xf4")
    c.fpu.xmm[0], c.fpu.xmm[1], c.fpu.xmm[2] = ONE32, ONE32, 0
    c.fpu.mxcsr = MASKED & ~(ZE << 7)
    c.eip = CODE
    m.run(max_insns=4)
    assert faults == [(XM, CODE + 5)]
    assert c.fpu.xmm[0] == TWO32  # the addss ran, the divss wrote nothing
    assert c.fpu.mxcsr == MASKED & ~(ZE << 7) | ZE


@pytest.mark.parametrize("fmt", [F32, F64], ids=["single", "double"])
def test_host_float_fast_path_agrees_with_softfloat(fmt: sf.Format) -> None:
    """ops/simd_fp.py's ``_fast``: the same bits and PE as softfloat wherever it answers (and it answers often)."""
    from gdbemu.core.ops.simd_fp import _ADD, _DIV, _MUL, _SQRT, _SUB, _fast

    fns = {_ADD: sf.add, _SUB: sf.sub, _MUL: sf.mul, _DIV: sf.div}
    rng = random.Random(21)
    answered = exact = 0
    for i in range(20000):
        kind = i % 5
        a, b = rand_bits(rng, fmt), rand_bits(rng, fmt)
        if rng.random() < 0.3:  # exact cases: short significands
            a &= ~((1 << (fmt.frac_bits - 4)) - 1)
            b &= ~((1 << (fmt.frac_bits - 4)) - 1)
        if kind == _SQRT and rng.random() < 0.3:  # exact square roots
            r = a & ~((1 << (fmt.frac_bits - 8)) - 1) & ~(1 << (fmt.bits - 1))
            b = sf.mul(fmt, r, r, sf.SSE_ENV)[0]
        got = _fast(kind, fmt, a, b)
        if got is None:
            continue
        answered += 1
        exact += got >> 64 == 0
        want = sf.sqrt(fmt, b, sf.SSE_ENV) if kind == _SQRT else fns[kind](fmt, a, b, sf.SSE_ENV)
        assert (got & ((1 << 64) - 1), got >> 64) == want, (kind, hex(a), hex(b), hex(got), want)
    assert answered > 5000 and exact > 500
