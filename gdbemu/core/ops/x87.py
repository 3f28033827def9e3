"""The x87 FPU: every D8-DF instruction and FWAIT, on core/softfloat.py.

Theory of operation
-------------------
One emitter serves the eight escape opcodes: it computes the memory
operand's linear address and offset (for memory forms) and calls the helper
``x87`` through ``sync_call``, which dispatches on (opcode, ModRM) to the
functions below.  x87 code is not the hot path of a guest (SSE is), so the
semantics stay in ordinary Python where they can be read and tested.

Order of checks in every instruction (SDM vol. 1, 8.6 and vol. 3, 2.5):

1. CR0.EM or CR0.TS set: #NM (FWAIT: only when MP and TS are both set).
2. A *waiting* instruction (all but FNINIT, FNCLEX, FNSTSW, FNSTCW, FNSTENV,
   FNSAVE) first checks for a pending unmasked exception (FSW.ES): with
   CR0.NE = 1 it raises #MF; with NE = 0 a PC asserts FERR#, routed to
   IRQ 13 (``MachineEvents.ferr``, hw/ferr.py) and the instruction proceeds,
   as on QEMU; ES stays set until FNCLEX, whose clearing drops FERR# (and
   the chipset's IGNNE#).
3. Stack faults: reading an empty register is invalid (IE|SF, C1 = 0);
   pushing onto a non-empty one is invalid (IE|SF, C1 = 1).  Masked, the
   result is the indefinite QNaN.
4. The operation, its flags from softfloat.  A flag whose mask bit is clear
   sets ES and B; for IE, ZE and DE (pre-computation exceptions) the
   destination is then left unchanged.  For unmasked OE/UE the hardware
   stores the result with its exponent re-biased by 24576; this module stores
   the masked result instead (not re-biased) -- a known gap.

FIP/FCS/FOP record every non-control instruction, FDP/FDS its memory operand.
The environment layouts of FSTENV/FNSAVE are the protected-mode ones (14 and
28 bytes for 16- and 32-bit operand size) in every mode, as QEMU writes them.

Transcendentals (FSIN, FCOS, FSINCOS, FPTAN, FPATAN, F2XM1, FYL2X, FYL2XP1)
use the host's double-precision libm: FSIN/FCOS/FSINCOS/FPTAN on the
double nearest the operand plus the first-order term of the remainder
(``_sin_cos``), the others on the operands rounded to double.  The stated
bound, checked by tests/unit/test_x87.py against 200-bit values on random
64-bit operands: relative error at most 2**-51 (FYL2X: for x not within 1/16
of 1, where log2(x) cancels; there the error is absolute, 2**-52 |y|).  The
hardware's own bound is about 2**-63; this is a known gap.  Everything else is exact: FPREM,
FPREM1, FSCALE, FXTRACT, FRNDINT and FSQRT are correctly rounded by
softfloat.  C1 is not set to report rounding up (it is 0 after an inexact
result), another known gap.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable

from .. import softfloat as sf
from ..cpu import CPU, CR0_EM, CR0_MP, CR0_NE, CR0_TS
from ..emit import Emitter
from ..exceptions import MF, NM, UD, GuestFault
from ..fpu_state import FSW_B, FSW_C0, FSW_C1, FSW_C2, FSW_C3, FSW_CC, FSW_ES, FSW_SF, FPUState
from ..helpers import helper
from . import op

F80 = sf.F80
ONE = 0x3FFF8000000000000000
INDEF = sf.indefinite(F80)
_MEM = -1

# EFLAGS bits FCOMI writes.
_ZF, _PF, _CF = 0x40, 0x04, 0x01


# ---- memory (through the softmmu slow path: x87 operands are not the fast path) -----------------
# Addresses past 4 GiB wrap there in legacy modes and are 64-bit (canonical-checked) in long mode.
def _read(cpu: CPU, addr: int, n: int) -> int:
    value = 0
    done = 0
    while done < n:
        k = 8 if n - done >= 8 else 4 if n - done >= 4 else 2 if n - done >= 2 else 1
        value |= cpu.softmmu.load(cpu.mmu_idx, addr + done, k) << (8 * done)
        done += k
    return value


def _write(cpu: CPU, addr: int, n: int, value: int) -> None:
    # Probe the last byte first so a fault on the second page comes before any write.
    cpu.softmmu.load(cpu.mmu_idx, addr + n - 1, 1)
    done = 0
    while done < n:
        k = 8 if n - done >= 8 else 4 if n - done >= 4 else 2 if n - done >= 2 else 1
        cpu.softmmu.store(cpu.mmu_idx, addr + done, k, (value >> (8 * done)) & ((1 << (8 * k)) - 1))
        done += k


# ---- exceptions ---------------------------------------------------------------------------------
def _flag(fpu: FPUState, flags: int) -> bool:
    """Record ``flags``; True when an unmasked IE/ZE/DE forbids writing the destination."""
    if not flags:
        return False
    fpu.fsw |= flags & 0x3F
    unmasked = flags & ~fpu.fcw & 0x3F
    if unmasked:
        fpu.fsw |= FSW_ES | FSW_B
    return bool(unmasked & (sf.IE | sf.ZE | sf.DE))


def _stack_underflow(fpu: FPUState) -> bool:
    fpu.fsw &= ~FSW_C1
    fpu.fsw |= FSW_SF
    return _flag(fpu, sf.IE)


def _stack_overflow(fpu: FPUState) -> bool:
    fpu.fsw |= FSW_SF | FSW_C1
    return _flag(fpu, sf.IE)


def _push(fpu: FPUState, value: int) -> None:
    """Push with the overflow check (the destination is ST(7) before the push)."""
    if not fpu.is_empty(7):
        if _stack_overflow(fpu):
            return
        value = INDEF
    else:
        fpu.fsw &= ~FSW_C1
    fpu.push(value)


def _operands(fpu: FPUState, *regs: int) -> list[int] | None:
    """ST(i) values, or None after a stack underflow (the masked response already applied by the caller)."""
    if any(fpu.is_empty(i) for i in regs):
        return None
    return [fpu.get(i) for i in regs]


# ---- the dispatcher ---------------------------------------------------------------------------
# Instructions that do not check for pending exceptions and do not update FIP/FOP (control).
_NO_WAIT_MEM = {(0xD9, 6), (0xD9, 7), (0xDD, 6), (0xDD, 7)}  # fnstenv fnstcw fnsave fnstsw
_NO_WAIT_REG = {(0xDB, 0xE2), (0xDB, 0xE3), (0xDF, 0xE0), (0xDB, 0xE0), (0xDB, 0xE1), (0xDB, 0xE4)}
_CONTROL_MEM = _NO_WAIT_MEM | {(0xD9, 4), (0xD9, 5), (0xDD, 4)}


def check_pending(cpu: CPU) -> None:
    """The pending-exception check of a waiting instruction (module docstring, step 2)."""
    if cpu.fpu.fsw & FSW_ES:
        if cpu.cr[0] & CR0_NE:
            raise GuestFault(MF)
        cpu.events.ferr(cpu, True)  # NE = 0: FERR# to IRQ 13 (hw/ferr.py); the instruction goes on


@helper
def x87(cpu: CPU, opcode: int, modrm: int, addr: int, offset: int, seg: int, opsize: int) -> None:
    cr0 = cpu.cr[0]
    if cr0 & (CR0_EM | CR0_TS):
        raise GuestFault(NM)
    fpu = cpu.fpu
    reg = (modrm >> 3) & 7
    if addr != _MEM:
        key = (opcode, reg)
        if key not in _NO_WAIT_MEM:
            check_pending(cpu)
        fn = _MEM_OPS[key]
        if key not in _CONTROL_MEM:
            _note(cpu, fpu, opcode, modrm)
            fpu.fdp = offset
            fpu.fds = cpu.segs[seg].selector
        es = fpu.fsw & FSW_ES
        fn(cpu, fpu, addr, opsize)
        if es and not fpu.fsw & FSW_ES:
            cpu.events.ferr(cpu, False)  # FLDENV/FRSTOR/FNSAVE cleared ES: FERR# drops
        return
    rkey = (opcode, modrm)
    if (opcode, modrm & 0xF8) in _NEEDS_CMOV and "cmovb" in cpu.disabled_ops:
        raise GuestFault(UD)  # FCMOVcc, FCOMI, FUCOMI: P6 instructions, CPUID.CMOV (core/cpuid.py)
    if rkey not in _NO_WAIT_REG:
        check_pending(cpu)
        _note(cpu, fpu, opcode, modrm)
    es = fpu.fsw & FSW_ES
    _REG_OPS[(opcode, modrm & 0xF8)](cpu, fpu, modrm & 7, modrm)
    if es and not fpu.fsw & FSW_ES:
        cpu.events.ferr(cpu, False)  # FNCLEX/FNINIT: FERR# drops


_NEEDS_CMOV = {(0xDA, r) for r in (0xC0, 0xC8, 0xD0, 0xD8)} | {(0xDB, r) for r in (0xC0, 0xC8, 0xD0, 0xD8)}
_NEEDS_CMOV |= {(0xDB, 0xE8), (0xDB, 0xF0), (0xDF, 0xE8), (0xDF, 0xF0)}


def _note(cpu: CPU, fpu: FPUState, opcode: int, modrm: int) -> None:
    fpu.fip = cpu.eip
    fpu.fcs = cpu.segs[1].selector
    fpu.fop = ((opcode & 7) << 8) | modrm


@helper
def fwait(cpu: CPU) -> None:
    if cpu.cr[0] & (CR0_MP | CR0_TS) == CR0_MP | CR0_TS:
        raise GuestFault(NM)
    check_pending(cpu)


# ---- arithmetic -----------------------------------------------------------------------------------
def _arith(fpu: FPUState, kind: int, a: int, b: int) -> tuple[int, int]:
    """kind: ModRM.reg of D8 (0 add, 1 mul, 4 sub, 5 subr, 6 div, 7 divr)."""
    env = fpu.env()
    if kind == 0:
        return sf.add(F80, a, b, env)
    if kind == 1:
        return sf.mul(F80, a, b, env)
    if kind == 4:
        return sf.sub(F80, a, b, env)
    if kind == 5:
        return sf.sub(F80, b, a, env)
    if kind == 6:
        return sf.div(F80, a, b, env)
    return sf.div(F80, b, a, env)


def _set_compare(fpu: FPUState, rel: int) -> None:
    fpu.fsw &= ~FSW_CC
    fpu.fsw |= {sf.LT: FSW_C0, sf.EQ: FSW_C3, sf.GT: 0, sf.UN: FSW_C0 | FSW_C2 | FSW_C3}[rel]


def _compare(fpu: FPUState, a: int, b: int, signaling: bool) -> int:
    rel, flags = sf.compare(F80, a, b, fpu.env(), signaling)
    if _flag(fpu, flags):
        return -1
    return rel


def _st0_op_value(fpu: FPUState, kind: int, b: int | None, pops: int = 0) -> None:
    """ST(0) = ST(0) op b (b already converted); compares set C3/C2/C0."""
    if fpu.is_empty(0) or b is None:
        if _stack_underflow(fpu):
            return
        if kind in (2, 3):
            _set_compare(fpu, sf.UN)
        else:
            fpu.set(0, INDEF)
        for _ in range(pops + (kind == 3)):
            fpu.pop()
        return
    a = fpu.get(0)
    if kind in (2, 3):  # fcom / fcomp
        rel = _compare(fpu, a, b, True)
        if rel >= 0:
            _set_compare(fpu, rel)
        for _ in range(pops + (kind == 3)):
            fpu.pop()
        return
    fpu.fsw &= ~FSW_C1
    r, flags = _arith(fpu, kind, a, b)
    if not _flag(fpu, flags):
        fpu.set(0, r)


def _load_fp(fpu: FPUState, src: sf.Format, bits: int) -> int | None:
    r, flags = sf.convert(src, F80, bits, fpu.env()._replace(prec=None))
    return None if _flag(fpu, flags) else r


def _mem_arith(size: int, is_int: bool) -> Callable[[CPU, FPUState, int, int], None]:
    def run(cpu: CPU, fpu: FPUState, addr: int, opsize: int) -> None:
        kind = (cpu_modrm_reg(fpu)) & 7
        raw = _read(cpu, addr, size)
        if is_int:
            v = raw - (1 << (8 * size)) if raw >> (8 * size - 1) else raw
            b: int | None = sf.from_int(F80, v, fpu.env()._replace(prec=None))[0]
        else:
            if fpu.is_empty(0):
                _st0_op_value(fpu, kind, None)
                return
            b = _load_fp(fpu, sf.F32 if size == 4 else sf.F64, raw)
            if b is None:
                return
        _st0_op_value(fpu, kind, b)

    return run


def cpu_modrm_reg(fpu: FPUState) -> int:
    return (fpu.fop >> 3) & 7


# ---- loads and stores ---------------------------------------------------------------------
def _fld_mem(fmt: sf.Format, size: int) -> Callable[[CPU, FPUState, int, int], None]:
    def run(cpu: CPU, fpu: FPUState, addr: int, opsize: int) -> None:
        raw = _read(cpu, addr, size)
        if fmt is F80:
            _push(fpu, raw)
            return
        if not fpu.is_empty(7):
            if _stack_overflow(fpu):
                return
            fpu.push(INDEF)
            return
        v = _load_fp(fpu, fmt, raw)
        if v is not None:
            fpu.fsw &= ~FSW_C1
            fpu.push(v)

    return run


def _fild(size: int) -> Callable[[CPU, FPUState, int, int], None]:
    def run(cpu: CPU, fpu: FPUState, addr: int, opsize: int) -> None:
        raw = _read(cpu, addr, size)
        v = raw - (1 << (8 * size)) if raw >> (8 * size - 1) else raw
        _push(fpu, sf.from_int(F80, v, fpu.env()._replace(prec=None))[0])

    return run


def _fst_mem(fmt: sf.Format, size: int, pop: bool) -> Callable[[CPU, FPUState, int, int], None]:
    def run(cpu: CPU, fpu: FPUState, addr: int, opsize: int) -> None:
        if fpu.is_empty(0):
            if _stack_underflow(fpu):
                return
            value = sf.indefinite(fmt) if fmt is not F80 else INDEF
        elif fmt is F80:
            value = fpu.get(0)
        else:
            value, flags = sf.convert(F80, fmt, fpu.get(0), fpu.env()._replace(prec=None))
            fpu.fsw &= ~FSW_C1
            if _flag(fpu, flags):
                return
        _write(cpu, addr, size, value)
        if pop:
            fpu.pop()

    return run


def _fist(size: int, pop: bool, truncate: bool = False) -> Callable[[CPU, FPUState, int, int], None]:
    def run(cpu: CPU, fpu: FPUState, addr: int, opsize: int) -> None:
        if fpu.is_empty(0):
            if _stack_underflow(fpu):
                return
            value = 1 << (8 * size - 1)
        else:
            value, flags = sf.to_int(F80, fpu.get(0), 8 * size, fpu.env(), truncate=truncate)
            fpu.fsw &= ~FSW_C1
            if _flag(fpu, flags):
                return
        _write(cpu, addr, size, value)
        if pop:
            fpu.pop()

    return run


def _fbld(cpu: CPU, fpu: FPUState, addr: int, opsize: int) -> None:
    raw = _read(cpu, addr, 10)
    n = 0
    for i in range(8, -1, -1):
        byte = (raw >> (8 * i)) & 0xFF
        n = n * 100 + (byte >> 4) * 10 + (byte & 0xF)
    if raw >> 79:
        n = -n
    v = sf.from_int(F80, n, fpu.env()._replace(prec=None))[0]
    if n == 0 and raw >> 79:
        v = 1 << 79
    _push(fpu, v)


def _fbstp(cpu: CPU, fpu: FPUState, addr: int, opsize: int) -> None:
    if fpu.is_empty(0):
        if _stack_underflow(fpu):
            return
        value = INDEF
    else:
        x = fpu.get(0)
        u = sf.unpack(F80, x)
        n, flags = 0, 0
        if u.kind in (sf.FINITE, sf.ZERO):
            r, flags = sf.round_to_int(F80, x, fpu.env())
            ur = sf.unpack(F80, r)
            n = 0 if ur.kind == sf.ZERO else ur.m << ur.e if ur.e >= 0 else ur.m >> -ur.e
            if n >= 10**18:
                flags = sf.IE
        else:
            flags = sf.IE
        if flags & sf.IE:
            if _flag(fpu, sf.IE):
                return
            value = INDEF  # the packed-BCD indefinite: FFFF C000 0000 0000 0000
        else:
            if _flag(fpu, flags):
                return
            value = (u.sign << 79) if n or u.sign else 0
            for i in range(9):
                n, lo = divmod(n, 10)
                n, hi = divmod(n, 10)
                value |= ((hi << 4) | lo) << (8 * i)
    _write(cpu, addr, 10, value)
    fpu.pop()


def _fldcw(cpu: CPU, fpu: FPUState, addr: int, opsize: int) -> None:
    fpu.fcw = _read(cpu, addr, 2) | 0x40
    _update_es(fpu)


def _update_es(fpu: FPUState) -> None:
    """ES/B follow the unmasked exceptions after FLDCW/FLDENV/FRSTOR."""
    if fpu.fsw & ~fpu.fcw & 0x3F:
        fpu.fsw |= FSW_ES | FSW_B
    else:
        fpu.fsw &= ~(FSW_ES | FSW_B)


def _fnstcw(cpu: CPU, fpu: FPUState, addr: int, opsize: int) -> None:
    _write(cpu, addr, 2, fpu.fcw)


def _fnstsw(cpu: CPU, fpu: FPUState, addr: int, opsize: int) -> None:
    _write(cpu, addr, 2, fpu.status_word())


def _env_bytes(fpu: FPUState, opsize: int) -> tuple[int, int]:
    if opsize == 2:
        fields = (fpu.fcw, fpu.status_word(), fpu.tag_word(), fpu.fip, fpu.fcs, fpu.fdp, fpu.fds)
        return sum((f & 0xFFFF) << (16 * i) for i, f in enumerate(fields)), 14
    fields = (
        fpu.fcw,
        fpu.status_word(),
        fpu.tag_word(),
        fpu.fip,
        fpu.fcs | (fpu.fop << 16),
        fpu.fdp,
        fpu.fds,
    )
    return sum((f & 0xFFFFFFFF) << (32 * i) for i, f in enumerate(fields)), 28


def _load_env(fpu: FPUState, raw: int, opsize: int) -> None:
    w = 16 if opsize == 2 else 32
    f = [(raw >> (w * i)) & ((1 << w) - 1) for i in range(7)]
    fpu.fcw = f[0] & 0xFFFF | 0x40  # bit 6 reads as 1, as after FLDCW
    fpu.set_status_word(f[1] & 0xFFFF)
    fpu.set_tag_word(f[2] & 0xFFFF)
    fpu.fip = f[3]
    fpu.fcs = f[4] & 0xFFFF
    if w == 32:
        fpu.fop = (f[4] >> 16) & 0x7FF
    fpu.fdp = f[5]
    fpu.fds = f[6] & 0xFFFF
    _update_es(fpu)


def _fnstenv(cpu: CPU, fpu: FPUState, addr: int, opsize: int) -> None:
    raw, n = _env_bytes(fpu, opsize)
    _write(cpu, addr, n, raw)
    fpu.fcw |= 0x3F  # FNSTENV masks all exceptions after saving


def _fldenv(cpu: CPU, fpu: FPUState, addr: int, opsize: int) -> None:
    _load_env(fpu, _read(cpu, addr, 14 if opsize == 2 else 28), opsize)


def _fnsave(cpu: CPU, fpu: FPUState, addr: int, opsize: int) -> None:
    raw, n = _env_bytes(fpu, opsize)
    for i in range(8):
        raw |= fpu.get(i) << (8 * n + 80 * i)
    _write(cpu, addr, n + 80, raw)
    fpu.finit()


def _frstor(cpu: CPU, fpu: FPUState, addr: int, opsize: int) -> None:
    n = 14 if opsize == 2 else 28
    raw = _read(cpu, addr, n + 80)
    _load_env(fpu, raw & ((1 << (8 * n)) - 1), opsize)
    for i in range(8):
        fpu.st[fpu.phys(i)] = (raw >> (8 * n + 80 * i)) & ((1 << 80) - 1)


_MEM_OPS: dict[tuple[int, int], Callable[[CPU, FPUState, int, int], None]] = {}
for _r in range(8):
    _MEM_OPS[(0xD8, _r)] = _mem_arith(4, False)
    _MEM_OPS[(0xDC, _r)] = _mem_arith(8, False)
    _MEM_OPS[(0xDA, _r)] = _mem_arith(4, True)
    _MEM_OPS[(0xDE, _r)] = _mem_arith(2, True)
_MEM_OPS.update(
    {
        (0xD9, 0): _fld_mem(sf.F32, 4),
        (0xD9, 2): _fst_mem(sf.F32, 4, False),
        (0xD9, 3): _fst_mem(sf.F32, 4, True),
        (0xD9, 4): _fldenv,
        (0xD9, 5): _fldcw,
        (0xD9, 6): _fnstenv,
        (0xD9, 7): _fnstcw,
        (0xDB, 0): _fild(4),
        (0xDB, 1): _fist(4, True, truncate=True),
        (0xDB, 2): _fist(4, False),
        (0xDB, 3): _fist(4, True),
        (0xDB, 5): _fld_mem(F80, 10),
        (0xDB, 7): _fst_mem(F80, 10, True),
        (0xDD, 0): _fld_mem(sf.F64, 8),
        (0xDD, 1): _fist(8, True, truncate=True),
        (0xDD, 2): _fst_mem(sf.F64, 8, False),
        (0xDD, 3): _fst_mem(sf.F64, 8, True),
        (0xDD, 4): _frstor,
        (0xDD, 6): _fnsave,
        (0xDD, 7): _fnstsw,
        (0xDF, 0): _fild(2),
        (0xDF, 1): _fist(2, True, truncate=True),
        (0xDF, 2): _fist(2, False),
        (0xDF, 3): _fist(2, True),
        (0xDF, 4): _fbld,
        (0xDF, 5): _fild(8),
        (0xDF, 6): _fbstp,
        (0xDF, 7): _fist(8, True),
    }
)


# ---- register forms ---------------------------------------------------------------------------
RegOp = Callable[[CPU, FPUState, int, int], None]


def _st0_sti(cpu: CPU, fpu: FPUState, i: int, modrm: int) -> None:
    """D8 /r register forms: ST(0) = ST(0) op ST(i); fcom/fcomp compare."""
    kind = (modrm >> 3) & 7
    vals = _operands(fpu, 0, i)
    _st0_op_value(fpu, kind, None if vals is None else vals[1])


def _sti_st0(pop: bool) -> RegOp:
    """DC/DE register forms: ST(i) = ST(i) op ST(0) (fsub/fsubr, fdiv/fdivr swapped as in the SDM)."""

    def run(cpu: CPU, fpu: FPUState, i: int, modrm: int) -> None:
        kind = (modrm >> 3) & 7
        # DC E0 is FSUBR ST(i),ST(0): ST(i) = ST(0) - ST(i); DC E8 FSUB: ST(i) = ST(i) - ST(0).
        kind = {0: 0, 1: 1, 4: 5, 5: 4, 6: 7, 7: 6}[kind]
        vals = _operands(fpu, 0, i)
        if vals is None:
            if not _stack_underflow(fpu):
                fpu.set(i, INDEF)
                if pop:
                    fpu.pop()
            return
        fpu.fsw &= ~FSW_C1
        r, flags = _arith(fpu, kind, vals[1], vals[0])
        if _flag(fpu, flags):
            return
        fpu.set(i, r)
        if pop:
            fpu.pop()

    return run


def _fcom_reg(pops: int, signaling: bool) -> RegOp:
    def run(cpu: CPU, fpu: FPUState, i: int, modrm: int) -> None:
        vals = _operands(fpu, 0, i)
        if vals is None:
            if _stack_underflow(fpu):
                return
            _set_compare(fpu, sf.UN)
        else:
            rel = _compare(fpu, vals[0], vals[1], signaling)
            if rel < 0:
                return
            _set_compare(fpu, rel)
        for _ in range(pops):
            fpu.pop()

    return run


def _fcomi(pop: bool, signaling: bool) -> RegOp:
    def run(cpu: CPU, fpu: FPUState, i: int, modrm: int) -> None:
        vals = _operands(fpu, 0, i)
        if vals is None:
            if _stack_underflow(fpu):
                return
            rel = sf.UN
        else:
            rel = _compare(fpu, vals[0], vals[1], signaling)
            if rel < 0:
                return
        fpu.fsw &= ~FSW_C1
        bits = {sf.LT: _CF, sf.EQ: _ZF, sf.GT: 0, sf.UN: _ZF | _PF | _CF}[rel]
        cpu.set_eflags(bits, 0x8D5)
        if pop:
            fpu.pop()

    return run


_FCMOV_CC = {
    (0xDA, 0xC0): lambda f: bool(f & _CF),
    (0xDA, 0xC8): lambda f: bool(f & _ZF),
    (0xDA, 0xD0): lambda f: bool(f & (_CF | _ZF)),
    (0xDA, 0xD8): lambda f: bool(f & _PF),
    (0xDB, 0xC0): lambda f: not f & _CF,
    (0xDB, 0xC8): lambda f: not f & _ZF,
    (0xDB, 0xD0): lambda f: not f & (_CF | _ZF),
    (0xDB, 0xD8): lambda f: not f & _PF,
}


def _fcmov(cpu: CPU, fpu: FPUState, i: int, modrm: int) -> None:
    vals = _operands(fpu, 0, i)
    if vals is None:
        if not _stack_underflow(fpu):
            fpu.set(0, INDEF)
        return
    fpu.fsw &= ~FSW_C1
    op = fpu.fop >> 8 | 0xD8
    if _FCMOV_CC[(op, modrm & 0xF8)](cpu.get_eflags()):
        fpu.set(0, vals[1])


def _fld_sti(cpu: CPU, fpu: FPUState, i: int, modrm: int) -> None:
    if fpu.is_empty(i):
        if _stack_underflow(fpu):
            return
        _push(fpu, INDEF)
        return
    _push(fpu, fpu.get(i))


def _fxch(cpu: CPU, fpu: FPUState, i: int, modrm: int) -> None:
    if fpu.is_empty(0) or fpu.is_empty(i):
        if _stack_underflow(fpu):
            return
        for j in (0, i):
            if fpu.is_empty(j):
                fpu.set(j, INDEF)
    a, b = fpu.get(0), fpu.get(i)
    fpu.set(0, b)
    fpu.set(i, a)
    fpu.fsw &= ~FSW_C1


def _fst_sti(pop: bool) -> RegOp:
    def run(cpu: CPU, fpu: FPUState, i: int, modrm: int) -> None:
        if fpu.is_empty(0):
            if _stack_underflow(fpu):
                return
            fpu.set(i, INDEF)
        else:
            fpu.set(i, fpu.get(0))
        fpu.fsw &= ~FSW_C1
        if pop:
            fpu.pop()

    return run


def _ffree(pop: bool) -> RegOp:
    def run(cpu: CPU, fpu: FPUState, i: int, modrm: int) -> None:
        fpu.empty[fpu.phys(i)] = True
        if pop:
            fpu.pop()

    return run


def _nop(cpu: CPU, fpu: FPUState, i: int, modrm: int) -> None:
    pass


def _fnclex(cpu: CPU, fpu: FPUState, i: int, modrm: int) -> None:
    fpu.fsw &= ~(0x3F | FSW_SF | FSW_ES | FSW_B)


def _fninit(cpu: CPU, fpu: FPUState, i: int, modrm: int) -> None:
    fpu.finit()


def _fnstsw_ax(cpu: CPU, fpu: FPUState, i: int, modrm: int) -> None:
    cpu.regs[0] = (cpu.regs[0] & ~0xFFFF) | fpu.status_word()


def _unary(fn: Callable[[FPUState, int], int | None]) -> RegOp:
    """ST(0) = fn(ST(0)); fn returns None when it wrote nothing."""

    def run(cpu: CPU, fpu: FPUState, i: int, modrm: int) -> None:
        if fpu.is_empty(0):
            if not _stack_underflow(fpu):
                fpu.set(0, INDEF)
            return
        fpu.fsw &= ~FSW_C1
        r = fn(fpu, fpu.get(0))
        if r is not None:
            fpu.set(0, r)

    return run


def _op_result(fpu: FPUState, rf: tuple[int, int]) -> int | None:
    return None if _flag(fpu, rf[1]) else rf[0]


def _fchs(fpu: FPUState, x: int) -> int:
    return x ^ (1 << 79)


def _fabs(fpu: FPUState, x: int) -> int:
    return x & ~(1 << 79)


def _ftst(cpu: CPU, fpu: FPUState, i: int, modrm: int) -> None:
    vals = _operands(fpu, 0)
    if vals is None:
        if not _stack_underflow(fpu):
            _set_compare(fpu, sf.UN)
        return
    rel = _compare(fpu, vals[0], 0, True)
    if rel >= 0:
        _set_compare(fpu, rel)


def _fxam(cpu: CPU, fpu: FPUState, i: int, modrm: int) -> None:
    x = fpu.get(0)
    fpu.fsw &= ~FSW_CC
    if x >> 79:
        fpu.fsw |= FSW_C1
    if fpu.is_empty(0):
        fpu.fsw |= FSW_C3 | FSW_C0
        return
    u = sf.unpack(F80, x)
    cls = {
        sf.BAD: 0,
        sf.QNAN: FSW_C0,
        sf.SNAN: FSW_C0,
        sf.FINITE: FSW_C2,
        sf.INF: FSW_C2 | FSW_C0,
        sf.ZERO: FSW_C3,
    }[u.kind]
    if u.kind == sf.FINITE and u.denormal:
        cls = FSW_C3 | FSW_C2
    fpu.fsw |= cls


# Constants: (128-bit significand, exponent of its lowest bit); rounded per RC, no PE.
_CONSTS = {
    0xE8: (1, 0),
    0xE9: (0xD49A784BCD1B8AFE492BF6FF4DAFDB4C, -126),  # log2(10)
    0xEA: (0xB8AA3B295C17F0BBBE87FED0691D3E88, -127),  # log2(e)
    0xEB: (0xC90FDAA22168C234C4C6628B80DC1CD1, -126),  # pi
    0xEC: (0x9A209A84FBCFF7988F8959AC0B7C9178, -129),  # log10(2)
    0xED: (0xB17217F7D1CF79ABC9E3B39803F2F6AF, -128),  # ln(2)
}


def _fldconst(cpu: CPU, fpu: FPUState, i: int, modrm: int) -> None:
    if modrm == 0xEE:
        _push(fpu, 0)
        return
    m, e = _CONSTS[modrm]
    if m != 1:
        m = (m << 1) | 1  # irrational: a sticky bit below the 128 given
        e -= 1
    _push(fpu, sf.round_pack(F80, 0, m, e, fpu.env()._replace(prec=None))[0])


def _fdecstp(cpu: CPU, fpu: FPUState, i: int, modrm: int) -> None:
    fpu.top = (fpu.top - 1) & 7
    fpu.fsw &= ~FSW_C1


def _fincstp(cpu: CPU, fpu: FPUState, i: int, modrm: int) -> None:
    fpu.top = (fpu.top + 1) & 7
    fpu.fsw &= ~FSW_C1


def _fsqrt(fpu: FPUState, x: int) -> int | None:
    return _op_result(fpu, sf.sqrt(F80, x, fpu.env()))


def _frndint(fpu: FPUState, x: int) -> int | None:
    return _op_result(fpu, sf.round_to_int(F80, x, fpu.env()))


# ---- transcendentals (host libm in double precision; see the module docstring) -----------
_TWO63 = float(2**63)


def _from_float(fpu: FPUState, v: float) -> int:
    if math.isnan(v):
        return INDEF
    if math.isinf(v):
        return sf.inf(F80, int(v < 0))
    bits = _float_bits(v)
    return sf.convert(sf.F64, F80, bits, fpu.env()._replace(prec=None))[0]


def _nan_or_bad(fpu: FPUState, *xs: int) -> int | None:
    """For operands with a NaN/unsupported member: the result (after flags), else None."""
    us = [sf.unpack(F80, x) for x in xs]
    if not any(u.kind in (sf.QNAN, sf.SNAN, sf.BAD) for u in us):
        return None
    if len(xs) == 1:
        r, f = sf.sqrt(F80, xs[0], fpu.env())  # NaN propagation of a unary op
    else:
        r, f = sf.add(F80, xs[0], xs[1], fpu.env())
    _flag(fpu, f)
    return r


def _denormal(fpu: FPUState, *xs: int) -> bool:
    if any(sf.unpack(F80, x).denormal for x in xs):
        return _flag(fpu, sf.DE)
    return False


def _trig(kind: str) -> RegOp:
    def run(cpu: CPU, fpu: FPUState, i: int, modrm: int) -> None:
        if fpu.is_empty(0):
            if not _stack_underflow(fpu):
                fpu.set(0, INDEF)
                if kind in ("sincos", "tan"):
                    _push(fpu, INDEF)
            return
        x = fpu.get(0)
        fpu.fsw &= ~(FSW_C1 | FSW_C2)
        nan = _nan_or_bad(fpu, x)
        if nan is not None:
            if not fpu.fsw & FSW_ES:
                fpu.set(0, nan)
                if kind in ("sincos", "tan"):
                    _push(fpu, nan)
            return
        v = sf.to_float(F80, x)
        if math.isinf(v):
            if not _flag(fpu, sf.IE):
                fpu.set(0, INDEF)
                if kind in ("sincos", "tan"):
                    _push(fpu, INDEF)
            return
        if abs(v) >= _TWO63:
            fpu.fsw |= FSW_C2  # out of range: operand unchanged
            return
        if _denormal(fpu, x):
            return
        if kind in ("sincos", "tan") and not fpu.is_empty(7):
            if not _stack_overflow(fpu):
                fpu.set(0, INDEF)
                fpu.push(INDEF)
            return
        exact_zero = v == 0.0
        if exact_zero:
            if kind == "cos":
                fpu.set(0, ONE)
            elif kind == "sincos":
                fpu.push(ONE)
            elif kind == "tan":
                fpu.push(ONE)
            return
        s, c = _sin_cos(fpu, x)
        if kind == "sin":
            fpu.set(0, s)
        elif kind == "cos":
            fpu.set(0, c)
        elif kind == "sincos":
            fpu.set(0, s)
            fpu.push(c)
        else:
            fpu.set(0, sf.div(F80, s, c, fpu.env()._replace(prec=None))[0])
            fpu.push(ONE)
        _flag(fpu, sf.PE)

    return run


def _to_double_parts(x: int) -> tuple[float, float]:
    """x = hi + lo exactly (hi the double nearest x, lo the rest, also a double)."""
    hi = sf.to_float(F80, x)
    hi_bits = sf.convert(sf.F64, F80, _float_bits(hi), X87_EXACT)[0]
    lo_bits = sf.sub(F80, x, hi_bits, X87_EXACT)[0]
    return hi, sf.to_float(F80, lo_bits)


def _float_bits(v: float) -> int:
    return int.from_bytes(struct.pack("<d", v), "little")


X87_EXACT = sf.Env(x87=True)


def _sin_cos(fpu: FPUState, x: int) -> tuple[int, int]:
    """sin(x), cos(x) in 80 bits: libm on the double part, the first-order term of the rest added in 80 bits.

    sin(hi + lo) = sin(hi) + cos(hi) * lo + O(lo**2), with |lo| <= 2**-53 |x|: the error is libm's
    (<= 1 ulp of a double) plus the widening, a relative error below 2**-51.
    """
    hi, lo = _to_double_parts(x)
    sh, ch = math.sin(hi), math.cos(hi)
    env = fpu.env()._replace(prec=None)
    s = sf.add(F80, _from_float(fpu, sh), _from_float(fpu, ch * lo), env)[0]
    c = sf.sub(F80, _from_float(fpu, ch), _from_float(fpu, sh * lo), env)[0]
    return s, c


def _f2xm1(fpu: FPUState, x: int) -> int | None:
    nan = _nan_or_bad(fpu, x)
    if nan is not None:
        return None if fpu.fsw & FSW_ES else nan
    if _denormal(fpu, x):
        return None
    v = sf.to_float(F80, x)
    if v == 0.0:
        return x
    if math.isinf(v):
        return x if v > 0 else sf.convert(sf.F64, F80, 0xBFF0000000000000, fpu.env())[0]
    _flag(fpu, sf.PE)
    return _from_float(fpu, math.expm1(v * math.log(2)) if abs(v) > 1e-5 else math.expm1(v * math.log(2)))


def _binary_pop(fn: Callable[[FPUState, int, int], int | None]) -> RegOp:
    """ST(1) = fn(ST(0), ST(1)); pop."""

    def run(cpu: CPU, fpu: FPUState, i: int, modrm: int) -> None:
        vals = _operands(fpu, 0, 1)
        if vals is None:
            if not _stack_underflow(fpu):
                fpu.set(1, INDEF)
                fpu.pop()
            return
        fpu.fsw &= ~FSW_C1
        nan = _nan_or_bad(fpu, vals[0], vals[1])
        if nan is not None:
            if not fpu.fsw & FSW_ES:
                fpu.set(1, nan)
                fpu.pop()
            return
        if _denormal(fpu, vals[0], vals[1]):
            return
        r = fn(fpu, vals[0], vals[1])
        if r is None:
            return
        fpu.set(1, r)
        fpu.pop()

    return run


def _fyl2x(fpu: FPUState, x: int, y: int) -> int | None:
    xv, yv = sf.to_float(F80, x), sf.to_float(F80, y)
    if xv < 0 or (xv == 0 and yv == 0) or (xv == 1 and math.isinf(yv)) or (math.isinf(xv) and yv == 0):
        return None if _flag(fpu, sf.IE) else INDEF
    if xv == 0:
        if _flag(fpu, sf.ZE):
            return None
        return sf.inf(F80, int(yv > 0))
    if math.isinf(xv):
        return sf.inf(F80, int(yv < 0))
    if math.isinf(yv):
        return sf.inf(F80, int((yv < 0) != (xv < 1)))
    _flag(fpu, sf.PE)
    hi, lo = _to_double_parts(x)
    env = fpu.env()._replace(prec=None)
    log2x = sf.add(F80, _from_float(fpu, math.log2(hi)), _from_float(fpu, lo / (hi * math.log(2))), env)[0]
    return sf.mul(F80, y, log2x, env)[0]


def _fyl2xp1(fpu: FPUState, x: int, y: int) -> int | None:
    xv, yv = sf.to_float(F80, x), sf.to_float(F80, y)
    if xv == 0 and math.isinf(yv):
        return None if _flag(fpu, sf.IE) else INDEF
    if xv == 0 or yv == 0:
        return sf.zero(F80, int((xv < 0 or (xv == 0 and x >> 79)) != (yv < 0 or (yv == 0 and y >> 79))))
    _flag(fpu, sf.PE)
    return _from_float(fpu, yv * math.log1p(xv) / math.log(2))


def _fpatan(fpu: FPUState, x: int, y: int) -> int | None:
    xv, yv = sf.to_float(F80, x), sf.to_float(F80, y)
    if yv == 0.0 and not xv < 0 and not (xv == 0 and x >> 79):
        return y  # atan2(+-0, +x) = +-0 exactly
    _flag(fpu, sf.PE)
    return _from_float(fpu, math.atan2(yv, xv))


def _fscale(cpu: CPU, fpu: FPUState, i: int, modrm: int) -> None:
    vals = _operands(fpu, 0, 1)
    if vals is None:
        if not _stack_underflow(fpu):
            fpu.set(0, INDEF)
        return
    x, s = vals
    fpu.fsw &= ~FSW_C1
    nan = _nan_or_bad(fpu, x, s)
    if nan is not None:
        if not fpu.fsw & FSW_ES:
            fpu.set(0, nan)
        return
    ux, us = sf.unpack(F80, x), sf.unpack(F80, s)
    if _denormal(fpu, x, s):
        return
    if us.kind == sf.INF:
        if ux.kind == sf.ZERO and not us.sign or ux.kind == sf.INF and us.sign:
            if not _flag(fpu, sf.IE):
                fpu.set(0, INDEF)
            return
        if ux.kind in (sf.ZERO, sf.INF):
            return
        fpu.set(0, sf.zero(F80, ux.sign) if us.sign else sf.inf(F80, ux.sign))
        return
    if ux.kind in (sf.ZERO, sf.INF):
        return
    n = 0 if us.kind == sf.ZERO else (us.m << us.e if us.e >= 0 else us.m >> -us.e)
    n = max(-70000, min(70000, n)) * (-1 if us.sign else 1)
    r, flags = sf.round_pack(F80, ux.sign, ux.m, ux.e + n, fpu.env())
    if not _flag(fpu, flags):
        fpu.set(0, r)


def _fxtract(cpu: CPU, fpu: FPUState, i: int, modrm: int) -> None:
    if fpu.is_empty(0):
        if not _stack_underflow(fpu):
            fpu.set(0, INDEF)
            _push(fpu, INDEF)
        return
    x = fpu.get(0)
    u = sf.unpack(F80, x)
    if u.kind in (sf.QNAN, sf.SNAN, sf.BAD):
        r = _nan_or_bad(fpu, x)
        if r is not None and not fpu.fsw & FSW_ES:
            fpu.set(0, r)
            _push(fpu, r)
        return
    if not fpu.is_empty(7):
        if not _stack_overflow(fpu):
            fpu.set(0, INDEF)
            fpu.push(INDEF)
        return
    if u.kind == sf.ZERO:
        if _flag(fpu, sf.ZE):
            return
        fpu.set(0, sf.inf(F80, 1))
        fpu.push(x)
        return
    if u.kind == sf.INF:
        fpu.set(0, sf.inf(F80, 0))
        fpu.push(x)
        return
    if _denormal(fpu, x):
        return
    big_e = u.e + u.m.bit_length() - 1
    fpu.set(0, sf.from_int(F80, big_e, fpu.env())[0])
    fpu.push(sf.round_pack(F80, u.sign, u.m, u.e - big_e, fpu.env()._replace(prec=None))[0])


def _fprem(ieee: bool) -> RegOp:
    def run(cpu: CPU, fpu: FPUState, i: int, modrm: int) -> None:
        vals = _operands(fpu, 0, 1)
        if vals is None:
            if not _stack_underflow(fpu):
                fpu.set(0, INDEF)
            return
        a, b = vals
        fpu.fsw &= ~(FSW_C0 | FSW_C1 | FSW_C2 | FSW_C3)
        nan = _nan_or_bad(fpu, a, b)
        if nan is not None:
            if not fpu.fsw & FSW_ES:
                fpu.set(0, nan)
            return
        ua, ub = sf.unpack(F80, a), sf.unpack(F80, b)
        if ua.kind == sf.INF or ub.kind == sf.ZERO:
            if not _flag(fpu, sf.IE):
                fpu.set(0, INDEF)
            return
        if _denormal(fpu, a, b):
            return
        if ua.kind == sf.ZERO or ub.kind == sf.INF:
            return  # ST(0) unchanged, quotient 0
        ea = ua.e + ua.m.bit_length() - 1
        eb = ub.e + ub.m.bit_length() - 1
        d = ea - eb
        if d >= 64:
            # Partial remainder: reduce by a quotient whose weight is 2**(d - 32 - d % 32)... here
            # 2**(d - 63): the exponent drops by at least 32 and C2 says "incomplete" (SDM FPREM).
            shift = d - 63
            e = min(ua.e, ub.e + shift)
            big_a = ua.m << (ua.e - e)
            big_b = ub.m << (ub.e + shift - e)
            q = big_a // big_b
            r = big_a - q * big_b
            fpu.fsw |= FSW_C2
            rsign = ua.sign
            if r == 0:
                fpu.set(0, sf.zero(F80, rsign))
            else:
                fpu.set(0, sf.round_pack(F80, rsign, r, e, fpu.env()._replace(prec=None))[0])
            return
        e = min(ua.e, ub.e)
        big_a = ua.m << (ua.e - e)
        big_b = ub.m << (ub.e - e)
        q, r = divmod(big_a, big_b)
        neg = False
        if ieee and (2 * r > big_b or (2 * r == big_b and q & 1)):
            q += 1
            r = big_b - r
            neg = True
        rsign = ua.sign ^ neg
        if r == 0:
            fpu.set(0, sf.zero(F80, ua.sign))
        else:
            fpu.set(0, sf.round_pack(F80, rsign, r, e, fpu.env()._replace(prec=None))[0])
        fpu.fsw |= (FSW_C0 if q & 4 else 0) | (FSW_C3 if q & 2 else 0) | (FSW_C1 if q & 1 else 0)

    return run


def _fucompp(cpu: CPU, fpu: FPUState, i: int, modrm: int) -> None:
    _fcom_reg(2, False)(cpu, fpu, 1, modrm)


def _fcompp(cpu: CPU, fpu: FPUState, i: int, modrm: int) -> None:
    _fcom_reg(2, True)(cpu, fpu, 1, modrm)


_REG_OPS: dict[tuple[int, int], RegOp] = {}
for _row in range(0xC0, 0x100, 8):
    _REG_OPS[(0xD8, _row)] = _st0_sti
    _REG_OPS[(0xDC, _row)] = _sti_st0(False)
    _REG_OPS[(0xDE, _row)] = _sti_st0(True)
for _k, _v in _FCMOV_CC.items():
    _REG_OPS[_k] = _fcmov
_REG_OPS.update(
    {
        (0xD9, 0xC0): _fld_sti,
        (0xD9, 0xC8): _fxch,
        (0xDD, 0xC0): _ffree(False),
        (0xDF, 0xC0): _ffree(True),
        (0xDD, 0xD0): _fst_sti(False),
        (0xDD, 0xD8): _fst_sti(True),
        (0xDD, 0xE0): _fcom_reg(0, False),
        (0xDD, 0xE8): _fcom_reg(1, False),
        (0xDB, 0xE8): _fcomi(False, False),
        (0xDB, 0xF0): _fcomi(False, True),
        (0xDF, 0xE8): _fcomi(True, False),
        (0xDF, 0xF0): _fcomi(True, True),
        (0xD9, 0xD8): _fst_sti(True),  # FSTP1 (undocumented alias)
        (0xDF, 0xD0): _fst_sti(True),  # FSTP8
        (0xDF, 0xD8): _fst_sti(True),  # FSTP9
        (0xDD, 0xC8): _fxch,  # FXCH4
        (0xDF, 0xC8): _fxch,  # FXCH7
        (0xDE, 0xD0): _fcom_reg(1, True),  # FCOMP5
    }
)
# Rows of single instructions: D9 D0-FF, DA E8-EF, DB E0-E7, DE D8-DF, DF E0-E7.
_D9: dict[int, RegOp] = {
    0xD0: _nop,
    0xE0: _unary(_fchs),
    0xE1: _unary(_fabs),
    0xE4: _ftst,
    0xE5: _fxam,
    0xE8: _fldconst,
    0xE9: _fldconst,
    0xEA: _fldconst,
    0xEB: _fldconst,
    0xEC: _fldconst,
    0xED: _fldconst,
    0xEE: _fldconst,
    0xF0: _unary(_f2xm1),
    0xF1: _binary_pop(_fyl2x),
    0xF2: _trig("tan"),
    0xF3: _binary_pop(_fpatan),
    0xF4: _fxtract,
    0xF5: _fprem(True),
    0xF6: _fdecstp,
    0xF7: _fincstp,
    0xF8: _fprem(False),
    0xF9: _binary_pop(_fyl2xp1),
    0xFA: _unary(_fsqrt),
    0xFB: _trig("sincos"),
    0xFC: _unary(_frndint),
    0xFD: _fscale,
    0xFE: _trig("sin"),
    0xFF: _trig("cos"),
}
_SINGLES: dict[tuple[int, int], RegOp] = {(0xD9, k): v for k, v in _D9.items()}
_SINGLES.update(
    {
        (0xDA, 0xE9): _fucompp,
        (0xDB, 0xE0): _nop,  # FNENI (8087), a no-op since the 287
        (0xDB, 0xE1): _nop,  # FNDISI
        (0xDB, 0xE2): _fnclex,
        (0xDB, 0xE3): _fninit,
        (0xDB, 0xE4): _nop,  # FNSETPM
        (0xDE, 0xD9): _fcompp,
        (0xDF, 0xE0): _fnstsw_ax,
    }
)


def _single_row(opcode: int, row: int) -> RegOp:
    def run(cpu: CPU, fpu: FPUState, i: int, modrm: int) -> None:
        fn = _SINGLES.get((opcode, modrm))
        if fn is None:
            raise GuestFault(UD)  # #UD: an undefined x87 encoding
        fn(cpu, fpu, i, modrm)

    return run


for _op, _row in {(k[0], k[1] & 0xF8) for k in _SINGLES}:
    _REG_OPS[(_op, _row)] = _single_row(_op, _row)


# ---- the emitters ---------------------------------------------------------------------------
def _defined(opcode: int, modrm: int) -> bool:
    if modrm >> 6 != 3:
        return (opcode, (modrm >> 3) & 7) in _MEM_OPS
    return (opcode, modrm & 0xF8) in _REG_OPS


@op("d8", "d9", "da", "db", "dc", "dd", "de", "df", flags="rw")
def x87_op(e: Emitter) -> None:
    insn = e.insn
    opcode = int(insn.name, 16)
    modrm = insn.modrm
    e.may_fault = True
    if not _defined(opcode, modrm):
        with e.block(f"if cpu.cr[0] & {CR0_EM | CR0_TS:#x}:"):
            e.fault(NM)
        e.fault(UD)
        e.ended = True
        return
    if modrm >> 6 != 3:
        mem = insn.ops[0] if insn.ops else None
        assert mem is not None
        off = e.tmp("o")
        e.emit(f"{off} = {e.offset(mem)}")
        addr = e.linear(mem.seg, off)
        e.sync_call("x87", e.const(opcode), e.const(modrm), addr, off, e.const(mem.seg), e.const(insn.opsize))
    else:
        e.sync_call("x87", e.const(opcode), e.const(modrm), str(_MEM), "0", "0", e.const(insn.opsize))


@op("wait", flags="")
def wait(e: Emitter) -> None:
    """WAIT/FWAIT: #NM when MP and TS are both set; then the pending-exception check."""
    e.sync_call("fwait")


__all__ = ["x87", "fwait", "check_pending"]
