"""SIMD state: the checks every MMX/SSE instruction makes, MXCSR, FXSAVE/XSAVE, CPUID and CR4 bits.

Theory of operation
-------------------
The order of the checks is the SDM's (vol. 3, tables 12-1 and 13-1; vol. 2
for each instruction):

1. CPUID feature absent: #UD.  Decided at translation time: every emitter
   names its feature (``@op(..., feature="sse2")``) and a CPU model without
   it lists the key in ``CPU.disabled_ops`` (core/cpuid.py), which the
   translator turns into #UD.  LOCK is #UD before anything (translate.py).
2. CR0.EM = 1: #UD (MMX and SSE alike; FXSAVE/FXRSTOR: #NM instead).
3. SSE only: CR4.OSFXSR = 0: #UD.  (XSAVE family: CR4.OSXSAVE = 0: #UD.)
4. CR0.TS = 1: #NM (lazy FPU switching).
5. MMX only: a pending unmasked x87 exception (FSW.ES): #MF with CR0.NE = 1;
   with NE = 0 FERR# raises IRQ 13 on a PC (hw/ferr.py) and the instruction
   goes on, as for the x87 (ops/x87.py).
6. Memory: the 16-byte alignment #GP(0) of movaps-class operands, then the
   page walk (#PF) and #AC.

CR0 and CR4 are read at run time (they are not in hflags: CLTS does not end
a TB), by one inline test on the fast path that calls ``simd_sse_fault`` /
``simd_mmx_fault`` only when some bit says an exception is due.

The x87 side of MMX (SDM vol. 1, 9.5): an MMX instruction sets TOP to 0 and
marks every register valid; MMX register i is the low 64 bits of physical
register R_i, whose exponent field an MMX write sets to all ones.  EMMS marks
every register empty.

FXSAVE/FXRSTOR use the 512-byte layout of SDM vol. 1, table 10-2 (REX.W:
the 64-bit FIP/FDP form); as QEMU, the MXCSR and XMM registers are saved and
restored only when CR4.OSFXSR is set.  XSAVE/XRSTOR/XSAVEOPT manage the x87
and SSE components (XCR0 bits 0 and 1) in the standard (non-compacted)
form; XSTATE_BV records every requested component as in use (QEMU does not
track XINUSE either).
"""

from __future__ import annotations

from ...softmmu.access import ACCESS_WRITE
from ..cpu import CPU, CR0_EM, CR0_NE, CR0_TS, CR4_OSFXSR, CR4_OSXMMEXCPT
from ..emit import Emitter
from ..exceptions import GP, MF, NM, UD, GuestFault
from ..fpu_state import FSW_B, FSW_ES, FPUState
from ..helpers import helper
from . import op

CR4_OSXSAVE = 1 << 18
CR4_SIMD = CR4_OSFXSR | CR4_OSXMMEXCPT | CR4_OSXSAVE
HF_CS64 = 1 << 12  # core/cpu.py's bit (SPEC3 interface 2): 64-bit code
MXCSR_MASK = 0xFFFF  # every MXCSR bit but the reserved 31:16 (DAZ included), as QEMU
XCR0_SUPPORTED = 0x3  # x87 and SSE
XSAVE_SIZE = 576  # legacy region (512) + header (64)

# CPUID bits of what this family executes (the ``max`` table, core/ops/system.py).
CPUID_1_EDX_SIMD = (1 << 23) | (1 << 24) | (1 << 25) | (1 << 26)  # MMX FXSR SSE SSE2
# SSE3 SSSE3 SSE4.1 SSE4.2 POPCNT XSAVE (OSXSAVE, bit 27, mirrors CR4.OSXSAVE: cpuid_dynamic)
CPUID_1_ECX_SIMD = 1 | (1 << 9) | (1 << 19) | (1 << 20) | (1 << 23) | (1 << 26)
CPUID_80000001_ECX_SIMD = 1 << 5  # ABM: LZCNT
CPUID_7_EBX_SIMD = (1 << 3) | (1 << 8)  # BMI1 BMI2 (ops/simd_bits.py)
CPUID_OSXSAVE = 1 << 27
CPUID_XSAVE = 1 << 26


def cpuid_dynamic(cpu: CPU, leaf: int, subleaf: int, regs: list[int]) -> None:
    """The CPUID bits that follow the CPU's state or the XSAVE feature (every model)."""
    if leaf == 1:
        if regs[2] & CPUID_XSAVE and cpu.cr[4] & CR4_OSXSAVE:
            regs[2] |= CPUID_OSXSAVE
        else:
            regs[2] &= ~CPUID_OSXSAVE
    elif leaf == 0xD:
        regs[:] = cpuid_xsave(cpu, subleaf)


def cpuid_xsave(cpu: CPU, subleaf: int) -> list[int]:
    """Leaf 0DH: x87 and SSE in XCR0, the standard-form sizes, XSAVEOPT (sub-leaf 1 EAX bit 0)."""
    if subleaf == 0:
        return [XCR0_SUPPORTED, XSAVE_SIZE, XSAVE_SIZE, 0]
    if subleaf == 1:
        return [1, 0, 0, 0]
    return [0, 0, 0, 0]


def cr4_reserved(cpu: CPU) -> int:
    """CR4 bits this CPU model lacks the feature for (#GP on MOV CR4): OSFXSR, OSXMMEXCPT, OSXSAVE."""
    off = cpu.disabled_ops
    bits = 0
    if "fxsave" in off:
        bits |= CR4_OSFXSR
    if "ldmxcsr" in off:
        bits |= CR4_OSXMMEXCPT
    if "xsave" in off:
        bits |= CR4_OSXSAVE
    return bits


# ---- the checks ------------------------------------------------------------------------
@helper
def simd_sse_fault(cpu: CPU) -> None:
    """Raise what the inline test found due (module docstring, steps 2-4)."""
    if cpu.cr[0] & CR0_EM or not cpu.cr[4] & CR4_OSFXSR:
        raise GuestFault(UD)
    if cpu.cr[0] & CR0_TS:
        raise GuestFault(NM)


@helper
def simd_mmx_fault(cpu: CPU) -> None:
    """MMX: EM #UD, TS #NM, then a pending x87 exception (#MF, or FERR# with CR0.NE = 0)."""
    cr0 = cpu.cr[0]
    if cr0 & CR0_EM:
        raise GuestFault(UD)
    if cr0 & CR0_TS:
        raise GuestFault(NM)
    if cpu.fpu.fsw & FSW_ES:
        if cr0 & CR0_NE:
            raise GuestFault(MF)
        cpu.events.ferr(cpu, True)  # NE = 0: FERR# to IRQ 13 (hw/ferr.py)


@helper
def mmx_enter(cpu: CPU) -> None:
    """The x87 side of an MMX instruction: TOP = 0, every tag valid."""
    fpu = cpu.fpu
    fpu.top = 0
    fpu.empty[:] = [False] * 8


def sse_check(e: Emitter) -> None:
    """Emit steps 2-4 for an SSE instruction (one inline test on the fast path)."""
    e.may_fault = True
    e.emit(f"if cpu.cr[0] & {CR0_EM | CR0_TS} or not cpu.cr[4] & {CR4_OSFXSR}: H.simd_sse_fault(cpu)")


def mmx_check(e: Emitter) -> None:
    """Emit steps 2, 4 and 5 for an MMX instruction."""
    e.may_fault = True
    e.emit(f"if cpu.cr[0] & {CR0_EM | CR0_TS} or cpu.fpu.fsw & {FSW_ES}: H.simd_mmx_fault(cpu)")


def amask(hflags: int) -> int:
    return 0xFFFFFFFFFFFFFFFF if hflags & HF_CS64 else 0xFFFFFFFF


# ---- MXCSR ----------------------------------------------------------------------------------
@helper
def ldmxcsr(cpu: CPU, value: int) -> None:
    if value & ~MXCSR_MASK:
        raise GuestFault(GP, 0)
    cpu.fpu.mxcsr = value


@op("ldmxcsr", flags="", feature="sse")
def op_ldmxcsr(e: Emitter) -> None:
    """LDMXCSR m32: #GP(0) when a reserved bit (31:16) is set."""
    sse_check(e)
    v = e.load(e.insn.ops[0], size=4)
    e.helper_call("ldmxcsr", v)


@op("stmxcsr", flags="", feature="sse")
def op_stmxcsr(e: Emitter) -> None:
    sse_check(e)
    e.store(e.insn.ops[0], "cpu.fpu.mxcsr", size=4)


# ---- FXSAVE / FXRSTOR ------------------------------------------------------------------------
def _probe_write(cpu: CPU, addr: int, n: int) -> None:
    """Fault now (#PF) if any page of [addr, addr+n) is not writable: the save is then all or nothing."""
    m = amask(cpu.hflags)
    page = addr & ~0xFFF
    end = (addr + n - 1) & m
    cpu.softmmu.lookup(cpu.mmu_idx, addr, ACCESS_WRITE)
    if end & ~0xFFF != page:
        cpu.softmmu.lookup(cpu.mmu_idx, end, ACCESS_WRITE)


def _write(cpu: CPU, addr: int, data: dict[int, tuple[int, int]]) -> None:
    """Store fields {offset: (size, value)} at ``addr``."""
    m = amask(cpu.hflags)
    store = cpu.softmmu.store
    idx = cpu.mmu_idx
    for off, (size, value) in sorted(data.items()):
        while size > 8:
            store(idx, (addr + off) & m, 8, value & 0xFFFFFFFFFFFFFFFF)
            value >>= 64
            off += 8
            size -= 8
        store(idx, (addr + off) & m, size, value)


def _read(cpu: CPU, addr: int, off: int, size: int) -> int:
    m = amask(cpu.hflags)
    load = cpu.softmmu.load
    idx = cpu.mmu_idx
    value = 0
    done = 0
    while done < size:
        k = min(8, size - done)
        value |= load(idx, (addr + off + done) & m, k) << (8 * done)
        done += k
    return value


def _nxmm(cpu: CPU) -> int:
    return 16 if cpu.hflags & HF_CS64 else 8


def _x87_fields(cpu: CPU, fpu: FPUState, wide: bool) -> dict[int, tuple[int, int]]:
    out: dict[int, tuple[int, int]] = {
        0: (2, fpu.fcw),
        2: (2, fpu.status_word()),
        4: (2, fpu.abridged_tag()),
        6: (2, fpu.fop),
    }
    if wide:
        out[8] = (8, fpu.fip)
        out[16] = (8, fpu.fdp)
    else:
        out[8] = (4, fpu.fip & 0xFFFFFFFF)
        out[12] = (4, fpu.fcs & 0xFFFF)
        out[16] = (4, fpu.fdp & 0xFFFFFFFF)
        out[20] = (4, fpu.fds & 0xFFFF)
    for i in range(8):
        out[32 + 16 * i] = (16, fpu.get(i))
    return out


def _sse_fields(cpu: CPU, fpu: FPUState, with_mxcsr: bool) -> dict[int, tuple[int, int]]:
    out: dict[int, tuple[int, int]] = {}
    if with_mxcsr:
        out[24] = (4, fpu.mxcsr)
        out[28] = (4, MXCSR_MASK)
    for i in range(_nxmm(cpu)):
        out[160 + 16 * i] = (16, fpu.xmm[i])
    return out


def _load_x87(cpu: CPU, fpu: FPUState, addr: int, wide: bool) -> None:
    fpu.fcw = _read(cpu, addr, 0, 2) | 0x40  # bit 6 reads as 1, as after FLDCW (ops/x87.py)
    fpu.set_status_word(_read(cpu, addr, 2, 2))
    # ES and B follow the unmasked exceptions, as after FLDENV/FRSTOR: a restored state with an
    # unmasked exception flag set raises #MF at the next waiting x87 instruction.
    if fpu.fsw & ~fpu.fcw & 0x3F:
        fpu.fsw |= FSW_ES | FSW_B
    else:
        fpu.fsw &= ~(FSW_ES | FSW_B)
    tag = _read(cpu, addr, 4, 1)
    fpu.fop = _read(cpu, addr, 6, 2) & 0x7FF
    if wide:
        fpu.fip = _read(cpu, addr, 8, 8)
        fpu.fdp = _read(cpu, addr, 16, 8)
    else:
        fpu.fip = _read(cpu, addr, 8, 4)
        fpu.fcs = _read(cpu, addr, 12, 2)
        fpu.fdp = _read(cpu, addr, 16, 4)
        fpu.fds = _read(cpu, addr, 20, 2)
    for i in range(8):
        fpu.st[fpu.phys(i)] = _read(cpu, addr, 32 + 16 * i, 10)
    fpu.empty[:] = [not (tag >> i) & 1 for i in range(8)]


def _check_mxcsr(cpu: CPU, addr: int) -> int:
    value = _read(cpu, addr, 24, 4)
    if value & ~MXCSR_MASK:
        raise GuestFault(GP, 0)
    return value


@helper
def fxsave(cpu: CPU, addr: int, wide: int) -> None:
    if cpu.cr[0] & (CR0_EM | CR0_TS):
        raise GuestFault(NM)
    if addr & 15:
        raise GuestFault(GP, 0)
    fpu = cpu.fpu
    _probe_write(cpu, addr, 512)
    data = _x87_fields(cpu, fpu, bool(wide))
    if cpu.cr[4] & CR4_OSFXSR:
        data.update(_sse_fields(cpu, fpu, True))
    _write(cpu, addr, data)


@helper
def fxrstor(cpu: CPU, addr: int, wide: int) -> None:
    if cpu.cr[0] & (CR0_EM | CR0_TS):
        raise GuestFault(NM)
    if addr & 15:
        raise GuestFault(GP, 0)
    fpu = cpu.fpu
    sse = bool(cpu.cr[4] & CR4_OSFXSR)
    mxcsr = _check_mxcsr(cpu, addr) if sse else fpu.mxcsr
    # Read everything before changing anything (a #PF on the second page is precise).
    xmm = [_read(cpu, addr, 160 + 16 * i, 16) for i in range(_nxmm(cpu))] if sse else []
    _read(cpu, addr, 511, 1)
    es = fpu.fsw & FSW_ES
    _load_x87(cpu, fpu, addr, bool(wide))
    if es and not fpu.fsw & FSW_ES:
        cpu.events.ferr(cpu, False)
    if sse:
        fpu.mxcsr = mxcsr
        fpu.xmm[: len(xmm)] = xmm


def _mem_form(e: Emitter, name: str, *extra: str) -> None:
    mem = e.insn.ops[0]
    a = e.ea(mem)
    e.sync_call(name, a, *extra)


@op("fxsave", "fxrstor", flags="", feature="fxsr")
def op_fxsave(e: Emitter) -> None:
    """FXSAVE/FXRSTOR m512byte (#NM for EM or TS; #GP(0) unless 16-byte aligned)."""
    _mem_form(e, e.insn.name, "1" if e.opsize == 8 else "0")


# ---- XSAVE family ------------------------------------------------------------------------------
def _xsave_checks(cpu: CPU, addr: int) -> None:
    if not cpu.cr[4] & CR4_OSXSAVE:
        raise GuestFault(UD)
    if cpu.cr[0] & CR0_TS:
        raise GuestFault(NM)
    if addr & 63:
        raise GuestFault(GP, 0)


@helper
def xsave(cpu: CPU, addr: int, wide: int, edx: int, eax: int) -> None:
    """XSAVE/XSAVEOPT: the components in XCR0 & EDX:EAX, XSTATE_BV's bits for them set."""
    _xsave_checks(cpu, addr)
    rfbm = ((edx & 0xFFFFFFFF) << 32 | eax & 0xFFFFFFFF) & cpu.fpu.xcr0
    fpu = cpu.fpu
    _probe_write(cpu, addr, XSAVE_SIZE)
    data: dict[int, tuple[int, int]] = {}
    if rfbm & 1:
        data.update(_x87_fields(cpu, fpu, bool(wide)))
    if rfbm & 2:
        data.update(_sse_fields(cpu, fpu, True))
    old_bv = _read(cpu, addr, 512, 8)
    data[512] = (8, (old_bv & ~rfbm) | rfbm)
    _write(cpu, addr, data)


@helper
def xrstor(cpu: CPU, addr: int, wide: int, edx: int, eax: int) -> None:
    """XRSTOR (standard form): each requested component from memory, or its initial state."""
    _xsave_checks(cpu, addr)
    fpu = cpu.fpu
    rfbm = ((edx & 0xFFFFFFFF) << 32 | eax & 0xFFFFFFFF) & fpu.xcr0
    bv = _read(cpu, addr, 512, 8)
    if bv >> 63 or bv & ~fpu.xcr0 or _read(cpu, addr, 520, 16):
        raise GuestFault(GP, 0)  # compacted form, a component XCR0 lacks, or a reserved header field
    mxcsr = _check_mxcsr(cpu, addr) if rfbm & 2 else fpu.mxcsr
    xmm = [_read(cpu, addr, 160 + 16 * i, 16) for i in range(_nxmm(cpu))] if rfbm & bv & 2 else []
    es = fpu.fsw & FSW_ES
    if rfbm & 1:
        if bv & 1:
            _load_x87(cpu, fpu, addr, bool(wide))
        else:
            fpu.finit()
            fpu.st[:] = [0] * 8
    if es and not fpu.fsw & FSW_ES:
        cpu.events.ferr(cpu, False)
    if rfbm & 2:
        fpu.mxcsr = mxcsr
        if bv & 2:
            fpu.xmm[: len(xmm)] = xmm
        else:
            fpu.xmm[: _nxmm(cpu)] = [0] * _nxmm(cpu)


@op("xsave", "xrstor", "xsaveopt", flags="", feature="xsave")
def op_xsave(e: Emitter) -> None:
    name = "xrstor" if e.insn.name == "xrstor" else "xsave"
    _mem_form(e, name, "1" if e.opsize == 8 else "0", "edx", "eax")


@helper
def xgetbv(cpu: CPU, ecx: int) -> int:
    if not cpu.cr[4] & CR4_OSXSAVE:
        raise GuestFault(UD)
    if ecx != 0:
        raise GuestFault(GP, 0)
    return cpu.fpu.xcr0


@helper
def xsetbv(cpu: CPU, ecx: int, value: int) -> None:
    if not cpu.cr[4] & CR4_OSXSAVE:
        raise GuestFault(UD)
    if cpu.cpl != 0 or ecx != 0 or not value & 1 or value & ~XCR0_SUPPORTED:
        raise GuestFault(GP, 0)
    cpu.fpu.xcr0 = value


@op("xgetbv", flags="", feature="xsave")
def op_xgetbv(e: Emitter) -> None:
    v = e.tmp("x")
    e.helper_call("xgetbv", "ecx & 0xFFFFFFFF", result=v)
    e.write_reg(0, 4, f"{v} & 0xFFFFFFFF")
    e.write_reg(2, 4, f"{v} >> 32")


@op("xsetbv", flags="", feature="xsave")
def op_xsetbv(e: Emitter) -> None:
    e.helper_call("xsetbv", "ecx & 0xFFFFFFFF", "(edx & 0xFFFFFFFF) << 32 | eax & 0xFFFFFFFF")


# ---- EMMS ----------------------------------------------------------------------------------
@helper
def emms(cpu: CPU) -> None:
    cpu.fpu.empty[:] = [True] * 8


@op("0f77", flags="", feature="mmx")
def op_emms(e: Emitter) -> None:
    """EMMS: every x87 register empty (tag word FFFFH)."""
    mmx_check(e)
    e.helper_call("emms")


__all__ = [
    "CPUID_1_ECX_SIMD",
    "CPUID_1_EDX_SIMD",
    "CPUID_80000001_ECX_SIMD",
    "CR4_OSXSAVE",
    "CR4_OSXMMEXCPT",
    "cpuid_dynamic",
    "cr4_reserved",
    "mmx_check",
    "sse_check",
]
