"""Long mode as a system, driven through the helpers: EFER and CR transitions, the MSRs,
64-bit IDT delivery (IST, RSPn, null SS), iretq, syscall/sysret, swapgs, rdtscp, 16-byte
TSS/LDT descriptors, far transfers and 64-bit call gates, CPUID per model.

The guests in tests/guests/test_long_mode.py check the same behaviour from inside,
compared with QEMU; these tests pin the exact state after each helper (frames on the
stack, the segment caches, RFLAGS) and the #GP/#UD cases a guest cannot survive.
"""

from __future__ import annotations

import pytest

from gdbemu.core import flags as F
from gdbemu.core.cpu import (
    CPU,
    CR0_PG,
    CR4_PAE,
    CS,
    DESC_L,
    DS,
    EFER_LMA,
    EFER_LME,
    EFER_NXE,
    EFER_SCE,
    FS,
    GS,
    HF_CS64,
    HF_LMA,
    MSR_CSTAR,
    MSR_EFER,
    MSR_FMASK,
    MSR_FS_BASE,
    MSR_GS_BASE,
    MSR_KERNEL_GS_BASE,
    MSR_LSTAR,
    MSR_STAR,
    MSR_TSC_AUX,
    SS,
    SegmentCache,
)
from gdbemu.core.cpuid import resolve
from gdbemu.core.exceptions import GP, NP, UD, GuestFault
from gdbemu.core.interrupts import do_interrupt, iret, raise_exception
from gdbemu.core.ops import far, system
from gdbemu.core.seg import lldt, load_seg, ltr
from gdbemu.machine import Machine

GDT = 0x10000
IDT = 0x11000
TSS = 0x12000
KSTACK = 0x20000  # RSP0
ISTSTACK = 0x21008  # IST1 (not 16-byte aligned: delivery aligns it down)
USTACK = 0x30000
LDT = 0x13000

# Selectors of the GDT built by ``_long_cpu``
K64, KDATA, U32, UDATA, U64, TSS_SEL, K32, GATE, LDT_SEL = 0x08, 0x10, 0x18, 0x20, 0x28, 0x30, 0x40, 0x48, 0x58


def _seg(base: int, limit: int, access: int, flags: int) -> int:
    """An 8-byte code/data descriptor: access byte (P DPL S type), flags nibble (G D/B L AVL)."""
    return (
        (limit & 0xFFFF)
        | (base & 0xFFFFFF) << 16
        | access << 40
        | ((limit >> 16) & 0xF) << 48
        | flags << 52
        | (base >> 24 & 0xFF) << 56
    )


def _sys16(base: int, limit: int, access: int) -> tuple[int, int]:
    """A 16-byte system descriptor (TSS, LDT) of IA-32e mode: (low qword, high qword)."""
    return _seg(base & 0xFFFFFFFF, limit, access, 0), base >> 32


def _gate16(selector: int, offset: int, access: int, ist: int = 0) -> bytes:
    """A 16-byte IDT gate or call gate."""
    lo = (offset & 0xFFFF) | selector << 16 | (ist | access << 8) << 32 | (offset >> 16 & 0xFFFF) << 48
    return lo.to_bytes(8, "little") + (offset >> 32).to_bytes(8, "little")


def _q(m: Machine, addr: int) -> int:
    return int.from_bytes(m.mem.read(addr, 8), "little")


def _long_cpu(tss_base: int = TSS) -> tuple[Machine, CPU]:
    """A CPU in 64-bit mode at CPL 0 with a GDT, an IDT of 16-byte gates and a 64-bit TSS."""
    m = Machine(ram_size=4 << 20)
    cpu = m.cpu
    cpu.setup_long64()
    gdt = [
        0,
        _seg(0, 0xFFFFF, 0x9A, 0xA),  # 0x08 64-bit code, DPL 0
        _seg(0, 0xFFFFF, 0x92, 0xC),  # 0x10 data, DPL 0
        _seg(0, 0xFFFFF, 0xFA, 0xC),  # 0x18 32-bit code, DPL 3 (compatibility mode)
        _seg(0, 0xFFFFF, 0xF2, 0xC),  # 0x20 data, DPL 3
        _seg(0, 0xFFFFF, 0xFA, 0xA),  # 0x28 64-bit code, DPL 3
        *_sys16(tss_base, 0x67, 0x89),  # 0x30 64-bit TSS (available)
        _seg(0, 0xFFFFF, 0x9A, 0xC),  # 0x40 32-bit code, DPL 0
        0,
        0,  # 0x48 call gate (16 bytes), written by the tests that use it
        *_sys16(LDT, 0xF, 0x82),  # 0x58 LDT
    ]
    m.mem.write(GDT, b"".join(d.to_bytes(8, "little") for d in gdt))
    cpu.gdtr_base, cpu.gdtr_limit = GDT, 8 * len(gdt) - 1
    cpu.idtr_base, cpu.idtr_limit = IDT, 256 * 16 - 1
    cpu.segs[CS].selector = K64
    for seg in (SS, DS):
        cpu.segs[seg].selector = KDATA
    m.mem.write(TSS + 4, KSTACK.to_bytes(8, "little"))  # RSP0
    m.mem.write(TSS + 0x24, ISTSTACK.to_bytes(8, "little"))  # IST1
    cpu.compute_hflags()
    return m, cpu


def _to_ring3(cpu: CPU, code: int = U64) -> None:
    """Ring 3 as after an iretq: user code and data, user stack."""
    flags64 = 0x00A0FB00 if code == U64 else 0x00C0FB00
    cpu.segs[CS] = SegmentCache(code | 3, 0, 0xFFFFFFFF, flags64)
    cpu.segs[SS] = SegmentCache(UDATA | 3, 0, 0xFFFFFFFF, 0x00C0F300)
    cpu.regs[4] = USTACK
    cpu.compute_hflags()
    assert cpu.cpl == 3


# ---- EFER and the control registers ----------------------------------------------------------
def test_cr0_pg_with_lme_and_pae_activates_long_mode() -> None:
    m = Machine(ram_size=1 << 20)
    cpu = m.cpu
    cpu.setup_flat32()
    system.wrmsr(cpu, MSR_EFER, EFER_LME | EFER_SCE | EFER_NXE, 0)
    assert cpu.efer == EFER_LME | EFER_SCE | EFER_NXE
    with pytest.raises(GuestFault) as exc:  # PG with LME needs PAE
        system.mov_to_cr(cpu, 0, cpu.cr[0] | CR0_PG)
    assert (exc.value.vector, exc.value.error_code) == (GP, 0)
    assert not cpu.cr[0] & CR0_PG and not cpu.efer & EFER_LMA
    system.mov_to_cr(cpu, 4, CR4_PAE)
    system.mov_to_cr(cpu, 0, cpu.cr[0] | CR0_PG)
    assert cpu.efer & EFER_LMA and cpu.hflags & HF_LMA and not cpu.hflags & HF_CS64
    with pytest.raises(GuestFault):  # PAE cannot be cleared in IA-32e mode
        system.mov_to_cr(cpu, 4, 0)
    with pytest.raises(GuestFault):  # LME cannot change while paging is on
        system.wrmsr(cpu, MSR_EFER, EFER_SCE, 0)
    # LMA is read-only: writing it 0 keeps it
    system.wrmsr(cpu, MSR_EFER, EFER_LME | EFER_SCE, 0)
    assert system.rdmsr(cpu, MSR_EFER, 0) == EFER_LME | EFER_LMA | EFER_SCE
    # compatibility mode may leave long mode; 64-bit code may not
    cpu.segs[CS].flags |= DESC_L
    cpu.segs[CS].flags &= ~(1 << 22)
    cpu.compute_hflags()
    assert cpu.hflags & HF_CS64
    with pytest.raises(GuestFault):
        system.mov_to_cr(cpu, 0, cpu.cr[0] & ~CR0_PG)
    cpu.segs[CS].flags = (cpu.segs[CS].flags & ~DESC_L) | (1 << 22)
    cpu.compute_hflags()
    system.mov_to_cr(cpu, 0, cpu.cr[0] & ~CR0_PG)
    assert not cpu.efer & EFER_LMA and not cpu.hflags & HF_LMA and cpu.efer & EFER_LME


def test_efer_reserved_bits_and_models_without_long_mode() -> None:
    cpu = Machine(ram_size=1 << 20).cpu
    cpu.setup_flat32()
    with pytest.raises(GuestFault):
        system.wrmsr(cpu, MSR_EFER, 1 << 1, 0)
    cpu.cpuid_model = resolve("qemu32").cpuid
    for value in (EFER_LME, EFER_SCE):  # qemu32 has neither LM nor SYSCALL
        with pytest.raises(GuestFault):
            system.wrmsr(cpu, MSR_EFER, value, 0)
    for index in (MSR_LSTAR, MSR_STAR, MSR_FS_BASE, MSR_KERNEL_GS_BASE, MSR_TSC_AUX):
        with pytest.raises(GuestFault) as exc:
            system.rdmsr(cpu, index, 0)
        assert (exc.value.vector, exc.value.error_code) == (GP, 0)
    cpu.cpuid_model = resolve("qemu64").cpuid
    system.wrmsr(cpu, MSR_EFER, EFER_LME | EFER_SCE | EFER_NXE, 0)
    with pytest.raises(GuestFault):  # qemu64 has no RDTSCP, so no TSC_AUX
        system.wrmsr(cpu, MSR_TSC_AUX, 1, 0)


def test_cr8_is_the_tpr_and_64_bit_only() -> None:
    m = Machine(ram_size=1 << 20)
    cpu = m.cpu
    cpu.setup_long64()
    assert system.mov_from_cr(cpu, 8) == 0  # no local APIC on the bare machine: reads 0
    with pytest.raises(GuestFault):
        system.mov_to_cr(cpu, 8, 0x10)  # bits 63:4 reserved
    with pytest.raises(GuestFault) as exc:
        system.mov_to_cr(cpu, 0, cpu.cr[0] | 1 << 32)
    assert exc.value.vector == GP
    cpu.setup_flat32()
    cpu.efer = 0
    cpu.compute_hflags()
    with pytest.raises(GuestFault) as exc:
        system.mov_from_cr(cpu, 8)
    assert exc.value.vector == UD


# ---- MSRs ------------------------------------------------------------------------------------
def test_fs_gs_bases_kernel_gs_base_and_swapgs() -> None:
    m, cpu = _long_cpu()
    system.wrmsr(cpu, MSR_FS_BASE, 0xFFFF800000001000, 0)
    system.wrmsr(cpu, MSR_GS_BASE, 0x1234, 0)
    system.wrmsr(cpu, MSR_KERNEL_GS_BASE, 0x00007FFFFFFFF000, 0)
    assert cpu.segs[FS].base == cpu.seg_base[FS] == 0xFFFF800000001000
    assert system.rdmsr(cpu, MSR_GS_BASE, 0) == cpu.seg_base[GS] == 0x1234
    for index in (MSR_FS_BASE, MSR_GS_BASE, MSR_KERNEL_GS_BASE, MSR_LSTAR, MSR_CSTAR):
        with pytest.raises(GuestFault):  # non-canonical
            system.wrmsr(cpu, index, 0x0000800000000000, 0)
    system.swapgs(cpu)
    assert cpu.seg_base[GS] == cpu.segs[GS].base == 0x00007FFFFFFFF000
    assert system.rdmsr(cpu, MSR_KERNEL_GS_BASE, 0) == 0x1234
    # a segment load in 64-bit mode replaces the base with the descriptor's
    load_seg(cpu, FS, KDATA)
    assert cpu.seg_base[FS] == 0
    _to_ring3(cpu)
    with pytest.raises(GuestFault) as exc:
        system.swapgs(cpu)
    assert (exc.value.vector, exc.value.error_code) == (GP, 0)
    cpu.setup_flat32()
    cpu.efer = 0
    cpu.compute_hflags()
    with pytest.raises(GuestFault) as exc:
        system.swapgs(cpu)
    assert exc.value.vector == UD


def test_tsc_aux_and_rdtscp() -> None:
    m, cpu = _long_cpu()
    system.wrmsr(cpu, MSR_TSC_AUX, 0x2A, 0)
    with pytest.raises(GuestFault):
        system.wrmsr(cpu, MSR_TSC_AUX, 1 << 32, 0)
    cpu.icount = 1000
    tsc, aux = system.rdtscp(cpu, 0)
    assert (tsc, aux) == (1000, 0x2A)


# ---- CPUID ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("model", "edx_bits", "lahf"),
    [
        ("max", {11, 20, 26, 27, 29}, True),
        ("qemu64", {11, 20, 29}, True),
        ("kvm64", {11, 20, 29}, False),
        ("core2duo", {11, 20, 29}, True),
        ("qemu32", set(), False),
    ],
)
def test_cpuid_long_mode_bits_per_model(model: str, edx_bits: set[int], lahf: bool) -> None:
    cpu = Machine(ram_size=1 << 20).cpu
    cpu.cpuid_model = resolve(model).cpuid
    max_ext = system.cpuid(cpu, 0x80000000, 0)[0]
    assert max_ext >= 0x80000004
    _, _, ecx, edx = system.cpuid(cpu, 0x80000001, 0)
    assert {b for b in (11, 20, 26, 27, 29) if edx >> b & 1} == edx_bits
    assert bool(ecx & 1) == lahf
    if max_ext >= 0x80000008:
        sizes = system.cpuid(cpu, 0x80000008, 0)[0]
        assert sizes >> 8 & 0xFF == (48 if 29 in edx_bits else 32)


# ---- interrupt delivery and iretq ------------------------------------------------------------
def test_interrupt_from_ring3_uses_rsp0_and_loads_a_null_ss() -> None:
    m, cpu = _long_cpu()
    handler = 0xFFFFFFFF80001234  # canonical, upper half
    m.mem.write(IDT + 13 * 16, _gate16(K64, handler, 0x8E))  # #GP: interrupt gate
    ltr(cpu, TSS_SEL)
    _to_ring3(cpu)
    cpu.eip = 0x401000
    cpu.set_eflags(0x202 | F.CF)
    raise_exception(cpu, GuestFault(GP, 0x28))
    assert cpu.eip == handler and cpu.segs[CS].selector == K64 and cpu.cpl == 0
    assert cpu.segs[SS].selector == 0 and cpu.segs[SS].dpl == 0
    rsp = cpu.regs[4]
    assert rsp == KSTACK - 6 * 8
    frame = [_q(m, rsp + 8 * i) for i in range(6)]
    assert frame == [0x28, 0x401000, U64 | 3, 0x10203, USTACK, UDATA | 3]  # error, RIP, CS, RFLAGS(RF), RSP, SS
    assert not cpu.eflags & F.IF
    # iretq back to ring 3 (the error code popped by the handler)
    cpu.regs[4] = rsp + 8
    iret(cpu, 8)
    assert cpu.cpl == 3 and cpu.eip == 0x401000 and cpu.regs[4] == USTACK
    assert cpu.segs[SS].selector == UDATA | 3 and cpu.segs[CS].selector == U64 | 3
    assert cpu.hflags & HF_CS64 and cpu.get_eflags() & F.IF and cpu.get_eflags() & F.CF


def test_ist_stack_at_the_same_level_is_aligned_and_keeps_ss() -> None:
    m, cpu = _long_cpu()
    m.mem.write(IDT + 2 * 16, _gate16(K64, 0x5000, 0x8E, ist=1))  # NMI on IST1
    ltr(cpu, TSS_SEL)
    cpu.regs[4] = 0x40008
    cpu.eip = 0x1234
    do_interrupt(cpu, 2, False, None, cpu.eip)
    rsp = cpu.regs[4]
    assert rsp == (ISTSTACK & ~0xF) - 5 * 8
    assert [_q(m, rsp + 8 * i) for i in range(5)] == [0x1234, K64, 0x2, 0x40008, KDATA]
    assert cpu.segs[SS].selector == KDATA  # same privilege: SS kept
    iret(cpu, 8)  # iretq at CPL 0 pops SS:RSP too
    assert cpu.regs[4] == 0x40008 and cpu.eip == 0x1234


def test_long_mode_idt_rejects_32_bit_and_task_gates() -> None:
    m, cpu = _long_cpu()
    gate32 = (0x5000 & 0xFFFF) | K64 << 16 | 0x8E << 40  # an 8-byte gate: the upper qword is 0
    m.mem.write(IDT + 0x40 * 16, gate32.to_bytes(8, "little") + bytes(8))
    m.mem.write(IDT + 0x41 * 16, _gate16(K64, 0x5000, 0x85))  # task gate
    m.mem.write(IDT + 0x42 * 16, _gate16(K32, 0x5000, 0x8E))  # target not 64-bit code
    m.mem.write(IDT + 0x43 * 16, _gate16(K64, 0x5000, 0x0E))  # not present
    m.mem.write(IDT + 0x44 * 16, _gate16(K64, 0x0000800000000000, 0x8E))  # non-canonical target
    cases = [(0x41, GP, 0x41 * 8 + 2), (0x42, GP, K32), (0x43, NP, 0x43 * 8 + 2), (0x44, GP, 0)]
    for vector, exc_vec, err in cases:
        with pytest.raises(GuestFault) as exc:
            do_interrupt(cpu, vector, True, None, 0)
        assert (exc.value.vector, exc.value.error_code) == (exc_vec, err), hex(vector)
    cpu.idtr_limit = 0x40 * 16 + 7  # a gate half beyond the limit
    with pytest.raises(GuestFault) as exc:
        do_interrupt(cpu, 0x40, True, None, 0)
    assert (exc.value.vector, exc.value.error_code) == (GP, 0x40 * 8 + 2)


def test_iret_with_nt_is_gp_in_long_mode_and_iretd_returns_to_compat() -> None:
    m, cpu = _long_cpu()
    cpu.regs[4] = 0x40000
    # iretd (32-bit slots) from 64-bit code to compatibility code at ring 3: pops SS:ESP too
    for i, v in enumerate((0x2000, U32 | 3, 0x202, 0x8000, UDATA | 3)):
        m.mem.write(0x40000 + 4 * i, v.to_bytes(4, "little"))
    cpu.set_eflags(0x2 | F.NT)
    with pytest.raises(GuestFault) as exc:
        iret(cpu, 4)
    assert (exc.value.vector, exc.value.error_code) == (GP, 0)
    cpu.set_eflags(0x2)
    iret(cpu, 4)
    assert cpu.cpl == 3 and cpu.eip == 0x2000 and cpu.regs[4] == 0x8000
    assert cpu.hflags & HF_LMA and not cpu.hflags & HF_CS64


# ---- syscall / sysret -----------------------------------------------------------------------------
def test_syscall_and_sysret_round_trip() -> None:
    m, cpu = _long_cpu()
    system.wrmsr(cpu, MSR_EFER, cpu.efer | EFER_SCE, 0)
    # STAR: SYSCALL CS = 0x08 (SS 0x10); SYSRET base 0x18|3: CS64 = 0x2B, SS = 0x23, CS32 = 0x1B
    system.wrmsr(cpu, MSR_STAR, (0x1B << 48) | (K64 << 32), 0)
    system.wrmsr(cpu, MSR_LSTAR, 0xFFFFFFFF81000000, 0)
    system.wrmsr(cpu, MSR_CSTAR, 0xFFFFFFFF82000000, 0)
    system.wrmsr(cpu, MSR_FMASK, F.IF | F.DF | F.TF, 0)
    _to_ring3(cpu)
    cpu.set_eflags(0x202 | F.DF | F.ZF)
    cpu.set_gpr(11, 0x55)
    system.syscall(cpu, 0x400123)
    assert cpu.eip == 0xFFFFFFFF81000000 and cpu.cpl == 0
    assert cpu.segs[CS].selector == K64 and cpu.segs[SS].selector == KDATA
    assert cpu.get_gpr(1) == 0x400123 and cpu.get_gpr(11) == 0x202 | F.DF | F.ZF
    assert cpu.get_eflags() == 0x2 | F.ZF and cpu.hflags & HF_CS64
    # sysret with REX.W: 64-bit ring 3 at RCX, RFLAGS from R11
    cpu.set_gpr(1, 0x400200)
    cpu.set_gpr(11, 0x246 | F.RF)
    system.sysret(cpu, 8)
    assert cpu.eip == 0x400200 and cpu.cpl == 3 and cpu.hflags & HF_CS64
    assert cpu.segs[CS].selector == 0x2B and cpu.segs[SS].selector == 0x23
    assert cpu.get_eflags() == 0x246  # RF cleared
    # from compatibility mode: CSTAR; sysret without REX.W goes back to 32-bit code
    _to_ring3(cpu, U32)
    system.syscall(cpu, 0x1000)
    assert cpu.eip == 0xFFFFFFFF82000000
    cpu.set_gpr(1, 0xFFFFFFFF00005000)
    system.sysret(cpu, 4)
    assert cpu.eip == 0x5000 and cpu.segs[CS].selector == 0x1B and not cpu.hflags & HF_CS64
    # sysret: #GP(0) at CPL 3, and to a non-canonical RIP; #UD without EFER.SCE
    with pytest.raises(GuestFault) as exc:
        system.sysret(cpu, 8)
    assert (exc.value.vector, exc.value.error_code) == (GP, 0)
    system.syscall(cpu, 0x1000)
    cpu.set_gpr(1, 0x0000800000000000)
    with pytest.raises(GuestFault) as exc:
        system.sysret(cpu, 8)
    assert (exc.value.vector, exc.value.error_code) == (GP, 0) and cpu.cpl == 0
    cpu.efer &= ~EFER_SCE
    with pytest.raises(GuestFault) as exc:
        system.syscall(cpu, 0)
    assert exc.value.vector == UD


# ---- descriptors: TSS, LDT, far transfers, call gates ---------------------------------------------
def test_ltr_and_lldt_read_16_byte_descriptors() -> None:
    m, cpu = _long_cpu(tss_base=0xFFFF800000012000)
    ltr(cpu, TSS_SEL)
    assert cpu.tr.base == 0xFFFF800000012000 and cpu.tr.type == 11
    assert int.from_bytes(m.mem.read(GDT + TSS_SEL + 5, 1), "little") == 0x8B  # busy
    lldt(cpu, LDT_SEL)
    assert cpu.ldtr.base == LDT and cpu.ldtr.limit == 0xF
    # the upper half's type field must be 0
    m.mem.write(GDT + LDT_SEL + 12, (1 << 8).to_bytes(4, "little"))
    with pytest.raises(GuestFault) as exc:
        lldt(cpu, LDT_SEL)
    assert (exc.value.vector, exc.value.error_code) == (GP, LDT_SEL)
    # a 16-bit TSS does not exist in long mode
    m.mem.write(GDT + TSS_SEL + 5, bytes([0x81]))
    with pytest.raises(GuestFault) as exc:
        ltr(cpu, TSS_SEL)
    assert (exc.value.vector, exc.value.error_code) == (GP, TSS_SEL)


def test_far_jump_and_return_between_64_bit_and_compatibility_code() -> None:
    m, cpu = _long_cpu()
    cpu.regs[4] = 0x40000
    far.far_jmp(cpu, K32, 0x3000, 4, 0)
    assert cpu.eip == 0x3000 and cpu.hflags & HF_LMA and not cpu.hflags & HF_CS64
    with pytest.raises(GuestFault) as exc:  # a task switch in IA-32e mode
        far.far_jmp(cpu, TSS_SEL, 0, 4, 0)
    assert (exc.value.vector, exc.value.error_code) == (GP, TSS_SEL)
    far.far_call(cpu, K64, 0xFFFFFFFF80000000 & 0xFFFFFFFF, 4, 0x3007)  # lcall from compat code
    assert cpu.hflags & HF_CS64 and cpu.regs[4] == 0x40000 - 8
    # retfq from 64-bit code: 8-byte slots
    cpu.regs[4] = 0x50000
    m.mem.write(0x50000, (0x3100).to_bytes(8, "little") + K32.to_bytes(8, "little"))
    far.far_ret(cpu, 8, 0)
    assert cpu.eip == 0x3100 and cpu.regs[4] == 0x50010 and not cpu.hflags & HF_CS64


def test_64_bit_call_gate_inward_from_ring3() -> None:
    m, cpu = _long_cpu()
    ltr(cpu, TSS_SEL)
    m.mem.write(GDT + GATE, _gate16(K64, 0xFFFFFFFF80004000, 0xEC))  # call gate, DPL 3
    _to_ring3(cpu)
    far.far_call(cpu, GATE | 3, 0, 8, 0x401010)
    assert cpu.eip == 0xFFFFFFFF80004000 and cpu.cpl == 0 and cpu.segs[SS].selector == 0
    rsp = cpu.regs[4]
    assert rsp == KSTACK - 32
    assert [_q(m, rsp + 8 * i) for i in range(4)] == [0x401010, U64 | 3, USTACK, UDATA | 3]
    # retfq outward pops RSP and SS
    far.far_ret(cpu, 8, 0)
    assert cpu.cpl == 3 and cpu.eip == 0x401010 and cpu.regs[4] == USTACK
    # a 32-bit call gate (8 bytes, upper type not 0) is refused
    m.mem.write(GDT + GATE + 12, (0xC << 8).to_bytes(4, "little"))
    with pytest.raises(GuestFault) as exc:
        far.far_call(cpu, GATE | 3, 0, 8, 0)
    assert (exc.value.vector, exc.value.error_code) == (GP, GATE)


def test_sysenter_and_sysexit_in_long_mode() -> None:
    m, cpu = _long_cpu()
    system.wrmsr(cpu, 0x174, K64, 0)  # SYSENTER_CS: 0x08 (+8 SS, +32/+40 the 64-bit ring-3 pair)
    system.wrmsr(cpu, 0x175, 0xFFFF800000002000, 0)
    system.wrmsr(cpu, 0x176, 0xFFFFFFFF81000000, 0)
    _to_ring3(cpu)
    system.sysenter(cpu)  # the default CPU is an Intel: allowed in 64-bit code
    assert cpu.cpl == 0 and cpu.hflags & HF_CS64 and cpu.eip == 0xFFFFFFFF81000000
    assert cpu.regs[4] == 0xFFFF800000002000 and cpu.segs[SS].selector == KDATA
    cpu.set_gpr(1, 0x7FFF0000)
    cpu.set_gpr(2, 0x401000)
    system.sysexit(cpu, 8)
    assert cpu.cpl == 3 and cpu.hflags & HF_CS64 and cpu.segs[CS].selector == K64 + 32 | 3
    assert (cpu.eip, cpu.regs[4]) == (0x401000, 0x7FFF0000)
    cpu.cpuid_model = resolve("qemu64").cpuid  # an AMD: SYSENTER is #UD in 64-bit mode
    with pytest.raises(GuestFault) as exc:
        system.sysenter(cpu)
    assert exc.value.vector == UD


# ---- the emitters in 64-bit code -------------------------------------------------------------------
def _run64(code: str, max_insns: int = 100) -> tuple[Machine, CPU, object]:
    """Assemble-free: run raw 64-bit code bytes (hex) at 0x1000 on a long-mode CPU; hlt ends it."""
    m, cpu = _long_cpu()
    m.mem.write(0x1000, bytes.fromhex(code) + b"\xf4")
    cpu.eip = 0x1000
    cpu.regs[4] = 0x9000
    stop = m.run(max_insns=max_insns)
    return m, cpu, stop


def test_wrmsr_rdmsr_cpuid_use_the_low_halves_of_64_bit_registers() -> None:
    # mov rax, -1 ; mov edx, 0 ; mov ecx, TSC_AUX | 1 << 32 via rcx ; wrmsr ; xor eax,eax ; rdmsr ; cpuid probe
    code = (
        "48c7c0ffffffff"  # mov rax, -1
        "48c7c2ffffffff"  # mov rdx, -1 (EDX reserved bits set: only EDX:EAX counts)
        "48b9030100c001000000"  # mov rcx, 0x1_c0000103 (TSC_AUX with garbage above)
        "31d2"  # xor edx, edx
        "0f30"  # wrmsr
        "31c0"  # xor eax, eax
        "0f32"  # rdmsr
        "4889c3"  # mov rbx, rax
    )
    m, cpu, stop = _run64(code)
    assert str(getattr(stop, "kind", "")) == "halt", stop
    assert cpu.regs[3] == 0xFFFFFFFF and cpu.msr[MSR_TSC_AUX] == 0xFFFFFFFF


def test_lgdt_sgdt_10_byte_forms_and_mov_cr_at_64_bits() -> None:
    code = (
        "0f011425"
        + (0x5000).to_bytes(4, "little").hex()  # lgdt [0x5000]
        + "0f010425"
        + (0x5010).to_bytes(4, "little").hex()  # sgdt [0x5010]
        + "0f20d8"  # mov rax, cr3
        + "4989c0"  # mov r8, rax
        + "0f20e1"  # mov rcx, cr4
    )
    m, cpu = _long_cpu()
    m.mem.write(0x5000, (0x1FF).to_bytes(2, "little") + (0xFFFF800012345000).to_bytes(8, "little"))
    m.mem.write(0x1000, bytes.fromhex(code) + b"\xf4")
    cpu.eip = 0x1000
    cpu.regs[4] = 0x9000
    stop = m.run(max_insns=20)
    assert str(stop.kind) == "halt", stop
    assert (cpu.gdtr_base, cpu.gdtr_limit) == (0xFFFF800012345000, 0x1FF)
    assert m.mem.read(0x5010, 10) == m.mem.read(0x5000, 10)
    assert cpu.xregs[0] == cpu.cr[3] and cpu.regs[1] == cpu.cr[4]


def test_1g_pages_need_cpuid_page1gb() -> None:
    """setup_long64 maps with 1 GiB pages: on qemu64 (no Page1GB) their PS bit is reserved (#PF, RSVD)."""
    from gdbemu.core.mmu import walk
    from gdbemu.softmmu.tlb import ACCESS_READ, MMU_KNOSMAP_IDX

    m, cpu = _long_cpu()
    assert walk(cpu, 0x1234, ACCESS_READ, MMU_KNOSMAP_IDX)[0] == 0x1234
    cpu.cpuid_model = resolve("qemu64").cpuid
    with pytest.raises(GuestFault) as exc:
        walk(cpu, 0x1234, ACCESS_READ, MMU_KNOSMAP_IDX)
    assert (exc.value.vector, exc.value.error_code) == (14, 0x9)
    cpu.cpuid_model = resolve("qemu64,+pdpe1gb").cpuid
    assert walk(cpu, 0x1234, ACCESS_READ, MMU_KNOSMAP_IDX)[2] == 1 << 30


# QEMU 7.2 (qemu-system-x86_64 -m 32, SeaBIOS) after a multiboot -kernel boot: MTRRdefType, the fixed
# ranges 0x250/0x258/0x259/0x268-0x26F and PhysBase0; PhysMask0 is 0xFF80000800 there (40 physical
# address bits) and follows CPUID 0x80000008 here.
QEMU_MTRRS = [0xC06, 0x0606060606060606, 0x0606060606060606, 0] + [0x0505050505050505] * 8 + [0x80000000]


def test_firmware_programs_the_mtrrs_as_seabios() -> None:
    from gdbemu.boot.firmware import apply_cpu_model, install_firmware
    from gdbemu.hw.pc import PCConfig, build_pc

    m = Machine(ram_size=32 << 20)
    build_pc(m.bus, PCConfig(serial=["null"]))
    install_firmware(m)
    msr = m.cpu.msr
    got = [msr.get(i, 0) for i in (0x2FF, 0x250, 0x258, 0x259, *range(0x268, 0x270), 0x200)]
    assert got == QEMU_MTRRS
    assert msr[0x201] == ((1 << m.cpu.phys_bits) - 0x80000000) | 0x800
    assert system.rdmsr(m.cpu, 0x2FF, 0) == 0xC06
    m2 = Machine(ram_size=32 << 20)
    build_pc(m2.bus, PCConfig(serial=["null"]))
    apply_cpu_model(m2, "qemu32")  # no MTRR in CPUID: SeaBIOS leaves them alone
    install_firmware(m2)
    assert m2.cpu.msr.get(0x2FF, 0) == 0


def test_lar_lsl_system_types_in_long_mode() -> None:
    from gdbemu.core.seg import probe_lar, probe_lsl

    m, cpu = _long_cpu()
    assert probe_lar(cpu, TSS_SEL) == 0x00008900 and probe_lsl(cpu, TSS_SEL) == 0x67
    m.mem.write(GDT + GATE, _gate16(K64, 0x1000, 0xEC))
    assert probe_lar(cpu, GATE) == 0x0000EC00 and probe_lsl(cpu, GATE) is None
    m.mem.write(GDT + TSS_SEL + 5, bytes([0x81]))  # a 16-bit TSS type: invalid in IA-32e mode
    assert probe_lar(cpu, TSS_SEL) is None and probe_lsl(cpu, TSS_SEL) is None


@pytest.mark.parametrize(("model", "bits"), [("qemu64", 40), ("max", 40), ("qemu32", 36), ("kvm32", 36)])
def test_models_set_maxphyaddr_and_report_it(model: str, bits: int) -> None:
    from gdbemu.boot.firmware import apply_cpu_model

    m = Machine(ram_size=1 << 20)
    apply_cpu_model(m, model)
    assert m.cpu.phys_bits == bits
    if system.cpuid(m.cpu, 0x80000000, 0)[0] >= 0x80000008:
        assert system.cpuid(m.cpu, 0x80000008, 0)[0] & 0xFF == bits
    # an MTRR PhysMask with a bit at MAXPHYADDR is #GP(0)
    with pytest.raises(GuestFault):
        system.wrmsr(m.cpu, 0x201, 1 << bits, 0)
    system.wrmsr(m.cpu, 0x201, (1 << bits) - 0x1000, 0)
