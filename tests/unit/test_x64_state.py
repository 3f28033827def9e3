"""The 64-bit register file, hflags in long mode, setup_long64 and the 64-bit decoder."""

from __future__ import annotations

from gdbemu.core.cpu import CS, DESC_L, HF_ADDSEG, HF_CS32, HF_CS64, HF_LMA, HF_SS32
from gdbemu.core.decode import MEM, MMX, REG, XMM, Decoder
from gdbemu.machine import Machine


def test_get_set_gpr_cover_sixteen_registers() -> None:
    cpu = Machine(ram_size=1 << 20).cpu
    for i in range(16):
        cpu.set_gpr(i, (0x1111111111111111 * (i + 1)) | (1 << 70))
    assert cpu.regs[0] == 0x1111111111111111
    assert cpu.xregs[7] == (0x1111111111111111 * 16) & (2**64 - 1)
    assert [cpu.get_gpr(i) for i in range(8)] == cpu.regs
    assert [cpu.get_gpr(i) for i in range(8, 16)] == cpu.xregs
    cpu.reset()
    assert cpu.xregs == [0] * 8


def test_hflags_long_mode_and_compatibility_mode() -> None:
    cpu = Machine(ram_size=1 << 20).cpu
    cpu.setup_flat32()
    assert not cpu.hflags & (HF_LMA | HF_CS64)
    cpu.setup_long64()
    hf = cpu.hflags
    assert hf & HF_LMA and hf & HF_CS64 and hf & HF_CS32 and hf & HF_SS32
    assert not hf & HF_ADDSEG
    # compatibility mode: CS.L clear, LMA still set
    cpu.segs[CS].flags &= ~DESC_L
    cpu.segs[CS].flags |= 1 << 22
    cpu.compute_hflags()
    assert cpu.hflags & HF_LMA and not cpu.hflags & HF_CS64 and cpu.hflags & HF_CS32


def _dec(hexbytes: str, addr: int = 0x1000):
    return Decoder(64).decode(bytes.fromhex(hexbytes).ljust(15, b"\0"), addr)


def test_decoder64_registers_riprel_and_vector_kinds() -> None:
    i = _dec("4c8b4c24f8")  # mov r9, [rsp-8]
    assert i.name == "mov" and i.opsize == 8 and i.ops[0].kind == REG and i.ops[0].reg == 9
    assert i.ops[1].kind == MEM and i.ops[1].base == 4 and i.ops[1].disp == -8
    i = _dec("488b0510000000", 0xFFFFFFFF80001000)  # mov rax, [rip+0x10]
    m = i.ops[1]
    assert m.riprel and m.base == -1 and m.index == -1 and m.disp == 0xFFFFFFFF80001017
    i = _dec("4088f0")  # mov al, sil: register 6's low byte, never dh
    assert i.ops[1].reg == 6 and not i.ops[1].high
    i = _dec("66410f6fc1")  # movdqa xmm0, xmm9
    assert i.ops[0].kind == XMM and i.ops[1].kind == XMM and i.ops[1].reg == 9
    i = _dec("0f6fc1")  # movq mm0, mm1
    assert i.ops[0].kind == MMX and i.ops[1].reg == 1
    assert _dec("4898").name == "cdqe" and _dec("98").name == "cwde" and _dec("6698").name == "cbw"
    assert _dec("4863c1").name == "movsxd"
