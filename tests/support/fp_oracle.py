"""Unicorn as the oracle for floating-point semantics (its x87 and SSE are QEMU's softfloat).

One instruction sequence per case, hand-encoded with absolute disp32 operands:
load the control word / MXCSR, load the operands, run the operation, store
the result and the status word / MXCSR.  Used by tests/unit/test_softfloat.py.

What the Unicorn release installed here (QEMU 5.0's softfloat) does not
model, and the tests therefore do not compare:

* SSE exception flags: QEMU 5.0 never copies softfloat's flags into MXCSR
  (``stmxcsr`` returns what ``ldmxcsr`` stored), so SSE flags are checked
  against known vectors instead;
* SSE NaN selection with two NaN operands: QEMU 5.0 applies the x87 rule
  (larger significand) where the SDM (vol. 1, table 4-7) says SSE returns the
  first source operand;
* the x87 exception flags (QEMU 5.0's x87 helpers leave them clear for
  these operations);
* SNaN conversions (FLD m32/m64, FST m32/m64 of an 80-bit SNaN, CVTSD2SS,
  CVTSS2SD): QEMU 5.0 converts the payload without setting the quiet bit;
* MXCSR.FTZ, which QEMU 5.0 applies to the x87 status instead of the SSE one.
"""

from __future__ import annotations

import random
import struct

from unicorn import UC_ARCH_X86, UC_MODE_32, UC_MODE_64, Uc
from unicorn import x86_const as ux

from gdbemu.core import softfloat as sf

CODE = 0x1000
DATA = 0x8000
A, B, R, CW, SW = DATA, DATA + 0x10, DATA + 0x20, DATA + 0x30, DATA + 0x34
OUT = DATA + 0x40  # x87_sequence: ST(0)-ST(2) at OUT, OUT+16, OUT+32
MEMOP = DATA + 0x100  # the memory operand of the instruction under test (128 bytes)


def _d(addr: int) -> bytes:
    return struct.pack("<I", addr)


# x87: st0 = A, st1 = B, then OP st0, st1; result in st0.
X87_OPS = {
    "add": b"\xd8\xc1",
    "sub": b"\xd8\xe1",
    "mul": b"\xd8\xc9",
    "div": b"\xd8\xf1",
    "sqrt": b"\xd9\xfa",
    "rndint": b"\xd9\xfc",
}

# SSE scalar: xmm0 = A, xmm1 = B, OP xmm0, xmm1 (sqrt: xmm0 = sqrt(xmm1)).
SSE_OPS = {"add": 0x58, "mul": 0x59, "sub": 0x5C, "div": 0x5E, "sqrt": 0x51}


# A RIP-relative operand of 64-bit code: (the bytes up to and including a ModRM with mod 00,
# r/m 101, the target address); the disp32 is computed where the bytes land.
RipOp = tuple[bytes, int]


def x87_sequence(op_bytes: bytes | RipOp, bits: int = 32) -> tuple[bytes, int]:
    """fninit; fldcw CW; fld B; fld A; <op>; fstp OUT; fstp OUT+16; fstp OUT+32; fnstsw SW (bytes, count).

    ``bits`` 64: the same sequence as 64-bit code, its memory operands RIP-relative (``op_bytes``
    may be a ``RipOp``).
    """
    if bits == 64:
        parts: list[bytes | RipOp] = [b"\xdb\xe3", (b"\xd9\x2d", CW), (b"\xdb\x2d", B), (b"\xdb\x2d", A), op_bytes]
        parts += [(b"\xdb\x3d", OUT), (b"\xdb\x3d", OUT + 16), (b"\xdb\x3d", OUT + 32), (b"\xdd\x3d", SW)]
        out = b""
        for p in parts:
            if isinstance(p, tuple):
                head, target = p
                end = CODE + len(out) + len(head) + 4
                out += head + struct.pack("<i", target - end)
            else:
                out += p
        return out, 9
    assert isinstance(op_bytes, bytes)
    code = (
        b"\xdb\xe3"
        + b"\xd9\x2d" + _d(CW)
        + b"\xdb\x2d" + _d(B)
        + b"\xdb\x2d" + _d(A)
        + op_bytes
        + b"\xdb\x3d" + _d(OUT)
        + b"\xdb\x3d" + _d(OUT + 16)
        + b"\xdb\x3d" + _d(OUT + 32)
        + b"\xdd\x3d" + _d(SW)
    )  # fmt: skip
    return code, 9


def x87_results(read: object) -> tuple[int, int, int, int, int]:
    """(st0, st1, st2, status word, the 128 bytes at MEMOP) from a ``read(addr, n) -> bytes`` callable."""
    rd = read  # type: ignore[assignment]
    vals = [int.from_bytes(rd(OUT + 16 * k, 10), "little") for k in range(3)]
    return vals[0], vals[1], vals[2], int.from_bytes(rd(SW, 2), "little"), int.from_bytes(rd(MEMOP, 128), "little")


def rand_bits(rng: random.Random, fmt: sf.Format) -> int:
    """Random ``fmt`` bits from every class: zeros, denormals, infinities, NaNs, extremes, ties."""
    fb, eb = fmt.frac_bits, fmt.exp_bits
    top = (1 << eb) - 1
    sign = rng.getrandbits(1)
    kind = rng.randrange(10)
    if kind == 0:
        exp, frac = 0, 0
    elif kind == 1:
        exp, frac = 0, rng.getrandbits(fb - (1 if fmt.explicit else 0)) or 1
    elif kind == 2:
        exp, frac = top, (1 << (fb - 1)) if fmt.explicit else 0
    elif kind == 3:  # NaNs (quiet or signalling)
        q = rng.getrandbits(1)
        payload = rng.getrandbits(fb - 2) | (0 if q else 1)
        qbit = 1 << (fb - 2 if fmt.explicit else fb - 1)
        frac = payload | (qbit if q else 0) | ((1 << (fb - 1)) if fmt.explicit else 0)
        exp = top
    elif kind == 4:  # near the overflow threshold
        exp = top - 1 - rng.randrange(3)
        frac = rng.getrandbits(fb)
    elif kind == 5:  # near the underflow threshold
        exp = 1 + rng.randrange(3)
        frac = rng.getrandbits(fb)
    elif kind == 6:  # short significands: exact cases and ties
        exp = fmt.bias + rng.randrange(-8, 8)
        frac = rng.getrandbits(6) << (fb - 6)
    else:
        exp = fmt.bias + rng.randrange(-40, 40)
        frac = rng.getrandbits(fb)
    if fmt.explicit and 0 < exp < top:
        frac |= 1 << (fb - 1)  # normal: J set (unsupported encodings tested as vectors)
    return (sign << (fb + eb)) | (exp << fb) | frac


_UC_GPRS = tuple(
    getattr(ux, f"UC_X86_REG_{n}")
    for n in ("RAX", "RCX", "RDX", "RBX", "RSP", "RBP", "RSI", "RDI", *(f"R{i}" for i in range(8, 16)))
)


class FPOracle:
    """``bits`` 64: Unicorn in 64-bit mode (``x87_run`` only: the other methods' code is 32-bit)."""

    def __init__(self, bits: int = 32) -> None:
        self.bits = bits
        self.uc = Uc(UC_ARCH_X86, UC_MODE_64 if bits == 64 else UC_MODE_32)
        self.uc.mem_map(0, 0x10000)

    def _run(self, code: bytes) -> None:
        self.uc.mem_write(CODE, code)
        self.uc.emu_start(CODE, CODE + len(code))

    def x87_run(
        self,
        op_bytes: bytes | RipOp,
        a: int,
        b: int,
        cw: int,
        eflags: int = 2,
        memop: bytes = bytes(128),
        gprs: dict[int, int] | None = None,
    ) -> tuple[int, int, int, int, int]:
        """Run ``x87_sequence(op_bytes)`` on st0=a, st1=b, MEMOP's bytes (and ``gprs``: register
        number 0-15 -> value): x87_results after it."""
        for n, v in (gprs or {}).items():
            self.uc.reg_write(_UC_GPRS[n], v)
        self.uc.mem_write(MEMOP, memop)
        self.uc.mem_write(A, a.to_bytes(10, "little") + b"\0" * 6 + b.to_bytes(10, "little"))
        self.uc.mem_write(CW, struct.pack("<H", cw))
        self.uc.reg_write(ux.UC_X86_REG_EFLAGS, eflags)
        self._run(x87_sequence(op_bytes, self.bits)[0])
        return x87_results(lambda addr, n: bytes(self.uc.mem_read(addr, n)))

    def x87(self, op: str, a: int, b: int, cw: int) -> tuple[int, int]:
        """(80-bit result, status word) of ``op`` on st0=a, st1=b under control word ``cw``."""
        self.uc.mem_write(A, a.to_bytes(10, "little") + b"\0" * 6 + b.to_bytes(10, "little"))
        self.uc.mem_write(CW, struct.pack("<H", cw))
        code = (
            b"\xdb\xe3"  # fninit
            + b"\xd9\x2d"
            + _d(CW)  # fldcw
            + b"\xdb\x2d"
            + _d(B)  # fld tbyte B
            + b"\xdb\x2d"
            + _d(A)  # fld tbyte A
            + X87_OPS[op]
            + b"\xdb\x3d"
            + _d(R)  # fstp tbyte R
            + b"\xdd\x3d"
            + _d(SW)  # fnstsw SW
        )
        self._run(code)
        res = int.from_bytes(self.uc.mem_read(R, 10), "little")
        sw = struct.unpack("<H", self.uc.mem_read(SW, 2))[0]
        return res, sw

    def sse(self, op: str, double: bool, a: int, b: int, mxcsr: int) -> int:
        """Result bits of scalar ``op`` (addss/addsd ...) with MXCSR ``mxcsr``."""
        width = 8 if double else 4
        prefix = b"\xf2" if double else b"\xf3"
        self.uc.mem_write(A, a.to_bytes(width, "little").ljust(16, b"\0") + b.to_bytes(width, "little"))
        self.uc.mem_write(CW, struct.pack("<I", mxcsr))
        code = (
            b"\x0f\xae\x15"
            + _d(CW)  # ldmxcsr
            + prefix
            + b"\x0f\x10\x05"
            + _d(A)  # movs? xmm0, [A]
            + prefix
            + b"\x0f\x10\x0d"
            + _d(B)  # movs? xmm1, [B]
            + prefix
            + bytes([0x0F, SSE_OPS[op], 0xC1])
            + prefix
            + b"\x0f\x11\x05"
            + _d(R)  # movs? [R], xmm0
        )
        self._run(code)
        return int.from_bytes(self.uc.mem_read(R, width), "little")

    def sse_convert(self, kind: str, a: int, mxcsr: int) -> int:
        """cvtsd2ss / cvtss2sd / cvtsd2si / cvttsd2si / cvtss2si / cvttss2si / cvtsi2sd / cvtsi2ss on ``a``."""
        self.uc.mem_write(A, a.to_bytes(8, "little"))
        self.uc.mem_write(CW, struct.pack("<I", mxcsr))
        load_x1 = {
            "cvtsd2ss": b"\xf2\x0f\x10\x0d",
            "cvtss2sd": b"\xf3\x0f\x10\x0d",
            "cvtsd2si": b"\xf2\x0f\x10\x0d",
            "cvttsd2si": b"\xf2\x0f\x10\x0d",
            "cvtss2si": b"\xf3\x0f\x10\x0d",
            "cvttss2si": b"\xf3\x0f\x10\x0d",
        }
        body = {
            "cvtsd2ss": b"\xf2\x0f\x5a\xc1" + b"\xf3\x0f\x11\x05" + _d(R),
            "cvtss2sd": b"\xf3\x0f\x5a\xc1" + b"\xf2\x0f\x11\x05" + _d(R),
            "cvtsd2si": b"\xf2\x0f\x2d\xc1" + b"\xa3" + _d(R),
            "cvttsd2si": b"\xf2\x0f\x2c\xc1" + b"\xa3" + _d(R),
            "cvtss2si": b"\xf3\x0f\x2d\xc1" + b"\xa3" + _d(R),
            "cvttss2si": b"\xf3\x0f\x2c\xc1" + b"\xa3" + _d(R),
            "cvtsi2sd": b"\xa1" + _d(A) + b"\xf2\x0f\x2a\xc0" + b"\xf2\x0f\x11\x05" + _d(R),
            "cvtsi2ss": b"\xa1" + _d(A) + b"\xf3\x0f\x2a\xc0" + b"\xf3\x0f\x11\x05" + _d(R),
        }
        code = b"\x0f\xae\x15" + _d(CW) + load_x1.get(kind, b"") + (_d(A) if kind in load_x1 else b"") + body[kind]
        self.uc.mem_write(R, bytes(8))
        self._run(code)
        width = 4 if kind in ("cvtsd2ss", "cvtsd2si", "cvttsd2si", "cvtss2si", "cvttss2si", "cvtsi2ss") else 8
        return int.from_bytes(self.uc.mem_read(R, width), "little")

    def x87_load_store(self, src_bytes: int, a: int, cw: int) -> tuple[int, int]:
        """fld m32/m64 then fstp m80: (80-bit result, status word)."""
        self.uc.mem_write(A, a.to_bytes(8, "little"))
        self.uc.mem_write(CW, struct.pack("<H", cw))
        fld = b"\xd9\x05" if src_bytes == 4 else b"\xdd\x05"
        code = b"\xdb\xe3" + b"\xd9\x2d" + _d(CW) + fld + _d(A) + b"\xdb\x3d" + _d(R) + b"\xdd\x3d" + _d(SW)
        self._run(code)
        return int.from_bytes(self.uc.mem_read(R, 10), "little"), struct.unpack("<H", self.uc.mem_read(SW, 2))[0]

    def x87_store(self, dst_bytes: int, a: int, cw: int) -> tuple[int, int]:
        """fld m80 then fstp m32/m64 (dst_bytes 4/8) or fistp m16/m32/m64 (dst_bytes -2/-4/-8)."""
        self.uc.mem_write(A, a.to_bytes(10, "little"))
        self.uc.mem_write(CW, struct.pack("<H", cw))
        self.uc.mem_write(R, bytes(16))
        st = {4: b"\xd9\x1d", 8: b"\xdd\x1d", -2: b"\xdf\x1d", -4: b"\xdb\x1d", -8: b"\xdf\x3d"}[dst_bytes]
        code = b"\xdb\xe3" + b"\xd9\x2d" + _d(CW) + b"\xdb\x2d" + _d(A) + st + _d(R) + b"\xdd\x3d" + _d(SW)
        self._run(code)
        n = abs(dst_bytes)
        return int.from_bytes(self.uc.mem_read(R, n), "little"), struct.unpack("<H", self.uc.mem_read(SW, 2))[0]


__all__ = [
    "FPOracle",
    "RipOp",
    "rand_bits",
    "X87_OPS",
    "SSE_OPS",
    "x87_sequence",
    "x87_results",
    "MEMOP",
    "A",
    "B",
    "R",
    "CW",
    "SW",
]
