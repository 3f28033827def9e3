"""64-bit execution beyond what the Unicorn differential can check.

Unicorn maps memory without paging, so neither high canonical addresses
(the top 2 GiB a kernel runs in) nor canonical-address faults can be
compared with it; these are checked here against the SDM (vol. 3, 3.3.7.1:
a non-canonical data access is #GP(0), #SS(0) through SS; vol. 2, "64-bit
mode exceptions" of each instruction).  Also: R8-R15 kept across helper
calls (``sync_call``) and restored on exceptions, FS/GS bases in 64-bit
addressing (the others ignored), both translation tiers for each.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gdbemu.core.cpu import CS, DESC_B, DESC_L, DS, ES, FS, GS, HF_CS64, HF_LMA, SS
from gdbemu.core.exceptions import GP, GuestFault
from gdbemu.core.exceptions import SS as SS_FAULT
from gdbemu.machine import Machine

pytestmark = pytest.mark.skipif(shutil.which("as") is None, reason="GNU binutils not installed")

CODE = 0x1000
PT = 0x80000
HLT = 0xFF00
HIGH = 0xFFFFFFFF80000000  # aliases physical 0 (PML4[511] -> PDPT[510] -> 1 GiB page)


def assemble(src: str, tmp: Path) -> bytes:
    s = tmp / "t.s"
    s.write_text(".intel_syntax noprefix\n.code64\n" + src + "\n")
    o = tmp / "t.o"
    b = tmp / "t.bin"
    subprocess.run(["as", "--64", "-o", str(o), str(s)], check=True, capture_output=True)
    subprocess.run(["objcopy", "-O", "binary", "-j", ".text", str(o), str(b)], check=True)
    return b.read_bytes()


class Run:
    """A long-mode machine with the code at CODE; faults are recorded, not delivered."""

    def __init__(self, code: bytes, tier: int) -> None:
        m = Machine(ram_size=1 << 20)
        m.translator.force_tier = tier
        cpu = m.cpu
        cpu.setup_long64(PT)
        hi = PT + 0x2000
        m.mem.write(hi, bytes(4096))
        m.mem.write(hi + 8 * 510, (0x87).to_bytes(8, "little"))
        m.mem.write(PT + 8 * 511, (hi | 7).to_bytes(8, "little"))
        m.mem.write(CODE, code)
        m.mem.write(HLT, b"\xf4")
        cpu.eip = CODE
        cpu.regs[4] = 0x40000
        self.m = m
        self.cpu = cpu
        self.faults: list[tuple[int, int | None, int, list[int]]] = []
        m.exec_ctx.deliver_exception = self._deliver

    def _deliver(self, cpu: Any, fault: GuestFault) -> None:
        self.faults.append((fault.vector, fault.error_code, cpu.eip, list(cpu.regs) + list(cpu.xregs)))
        cpu.eip = HLT

    def run(self, n: int = 10_000) -> Any:
        return self.m.run(max_insns=n)


@pytest.fixture(params=[1, 2], ids=["tier1", "tier2"])
def tier(request: pytest.FixtureRequest) -> int:
    return int(request.param)


def test_high_half_addresses_and_rip(tier: int, tmp_path: Path) -> None:
    """Code and data in the top 2 GiB: 64-bit RIPs, RIP-relative data, pushes, calls."""
    code = assemble(
        f"""
        movabs rax, {HIGH + 0x2000:#x}
        jmp rax
        """,
        tmp_path,
    )
    high = assemble(
        """
        lea rsp, [rip + stack_top]
        mov rbx, 0x1122334455667788
        mov qword ptr [rip + cell], rbx
        call f
        mov r15, qword ptr [rip + cell]
        lea r14, [rip + cell]
        hlt
    f:  push rbx
        pop r13
        ret
        .balign 8
    cell: .quad 0
        .fill 256, 1, 0
    stack_top:
        """,
        tmp_path,
    )
    r = Run(code, tier)
    r.m.mem.write(0x2000, high)
    r.run()
    cpu = r.cpu
    assert not r.faults
    assert cpu.xregs[15 - 8] == 0x1122334455667788
    assert cpu.xregs[13 - 8] == 0x1122334455667788
    assert cpu.xregs[14 - 8] >> 32 == 0xFFFFFFFF  # the high-half address of `cell`
    assert int.from_bytes(r.m.mem.read(cpu.xregs[14 - 8] - HIGH, 8), "little") == 0x1122334455667788
    assert cpu.eip >> 32 == 0xFFFFFFFF  # stopped on the hlt in the high half
    assert cpu.regs[4] >> 32 == 0xFFFFFFFF  # rsp in the high half


@pytest.mark.parametrize(
    ("insn", "vector"),
    [
        ("mov rax, qword ptr [rbx]", GP),
        ("mov qword ptr [rbx], rax", GP),
        ("add dword ptr [rbx+8], 1", GP),
        ("push qword ptr [rbx]", GP),
        ("mov rax, qword ptr [rbp]", SS_FAULT),  # rbp-based: SS
        ("mov rsp, rbx; push rax", SS_FAULT),
        ("mov rsp, rbx; pop rax", SS_FAULT),
        ("mov rsi, rbx; lodsq", GP),
        ("mov rdi, rbx; mov ecx, 3; rep stosb", GP),
    ],
)
def test_non_canonical_data_access_faults(insn: str, vector: int, tier: int, tmp_path: Path) -> None:
    code = assemble(
        f"""
        mov r9, 0x99
        movabs rbx, 0x0000800000000008
        mov rbp, rbx
        {insn.replace(";", chr(10))}
        mov r9, 1
        hlt
        """,
        tmp_path,
    )
    r = Run(code, tier)
    r.run()
    assert len(r.faults) == 1
    vec, err, eip, regs = r.faults[0]
    assert (vec, err) == (vector, 0)
    assert regs[9] == 0x99  # precise: r9 (a local of the TB) as before the fault
    assert CODE < eip < CODE + len(code)


def test_canonical_boundary_crossing(tier: int, tmp_path: Path) -> None:
    """An 8-byte access at 0x00007FFFFFFFFFFC runs off the canonical half: #GP."""
    code = assemble(
        """
        movabs rbx, 0x00007ffffffffffc
        mov rax, qword ptr [rbx]
        hlt
        """,
        tmp_path,
    )
    r = Run(code, tier)
    r.run()
    # The lower half maps only its first GiB here: the walk would #PF, but the
    # canonical check of the part past 0x00007FFFFFFFFFFF comes first.
    assert [f[:2] for f in r.faults] == [(GP, 0)]


def test_non_canonical_rip_faults_at_fetch(tier: int, tmp_path: Path) -> None:
    code = assemble(
        """
        movabs rax, 0x0000800000000000
        mov r8, 5
        jmp rax
        """,
        tmp_path,
    )
    r = Run(code, tier)
    r.run()
    assert len(r.faults) == 1
    vec, err, eip, regs = r.faults[0]
    assert (vec, err, eip) == (GP, 0, 0x0000800000000000)
    assert regs[8] == 5


def test_r8_r15_across_helpers_and_exceptions(tier: int, tmp_path: Path) -> None:
    """A helper call (popfq, rep movsb) in the middle of a 64-bit TB keeps R8-R15 in both
    directions, and an exception restores the instruction-start values."""
    code = assemble(
        """
        mov r8, 8
        mov r9, 9
        mov r10, 10
        mov r11, 11
        mov r12, 12
        mov r13, 13
        mov r14, 14
        mov r15, 15
        pushfq
        popfq
        add r8, r15
        lea rsi, [rip + 0x100]
        lea rdi, [rip + 0x400]
        mov ecx, 40
        rep movsb
        add r9, r14
        mov r10, 0x1234
        xor r11d, r11d
        div r11
        hlt
        """,
        tmp_path,
    )
    r = Run(code, tier)
    r.run()
    assert len(r.faults) == 1
    vec, _err, _eip, regs = r.faults[0]
    assert vec == 0  # #DE
    assert regs[8:] == [23, 23, 0x1234, 0, 12, 13, 14, 15]
    assert r.cpu.xregs == [23, 23, 0x1234, 0, 12, 13, 14, 15]


def test_fs_gs_bases_count_and_others_do_not(tier: int, tmp_path: Path) -> None:
    code = assemble(
        """
        mov rax, qword ptr fs:[0x10]
        mov rbx, qword ptr gs:[0x10]
        mov rcx, qword ptr ds:[0x10]
        mov rdx, qword ptr es:[0x10]
        mov r8, qword ptr ss:[0x10]
        hlt
        """,
        tmp_path,
    )
    r = Run(code, tier)
    cpu = r.cpu
    for seg, base in ((FS, 0x20000), (GS, HIGH + 0x30000), (DS, 0x5000), (ES, 0x6000), (SS, 0x7000)):
        cpu.segs[seg].base = base
    cpu.compute_hflags()
    assert cpu.hflags & HF_LMA
    for addr, value in ((0x20010, 1), (0x30010, 2), (0x10, 3), (0x5010, 4), (0x6010, 5), (0x7010, 6)):
        r.m.mem.write(addr, value.to_bytes(8, "little"))
    r.run()
    assert not r.faults
    assert cpu.regs[:4] == [1, 3, 3, 2]  # rax rcx rdx rbx
    assert cpu.xregs[0] == 3


def test_leaving_long_mode_truncates_registers() -> None:
    """Legacy-mode code keeps 32-bit register locals: compute_hflags clears the upper halves
    when long mode is left (the SDM leaves them undefined)."""
    m = Machine(ram_size=1 << 20)
    cpu = m.cpu
    cpu.setup_long64(PT)
    cpu.regs[0] = 0x1234567887654321
    cpu.efer = 0
    cpu.setup_flat32()
    assert cpu.regs[0] == 0x87654321


def test_x87_operands_in_the_high_half(tier: int, tmp_path: Path) -> None:
    """x87 memory operands go through the softmmu with their 64-bit addresses."""
    code = assemble(
        f"""
        movabs rbx, {HIGH + 0x20000:#x}
        fld qword ptr [rbx]
        fadd st(0), st(0)
        fstp qword ptr [rbx+8]
        hlt
        """,
        tmp_path,
    )
    r = Run(code, tier)
    r.m.mem.write(0x20000, (0x3FF8000000000000).to_bytes(8, "little"))  # 1.5
    r.run()
    assert not r.faults
    assert int.from_bytes(r.m.mem.read(0x20008, 8), "little") == 0x4008000000000000  # 3.0


@pytest.mark.parametrize(("phys_bits", "faults"), [(36, True), (40, False)])
def test_phys_bits_and_unassigned_memory(phys_bits: int, faults: bool, tmp_path: Path) -> None:
    """A page at physical 0xF0_0000_0000 (bit 39): a reserved-bit #PF with MAXPHYADDR 36,
    unassigned memory with 40 as on qemu64 (reads all ones, writes dropped)."""
    code = assemble(
        """
        movabs rbx, 0x40000000
        mov qword ptr [rbx], 0
        mov rax, qword ptr [rbx]
        hlt
        """,
        tmp_path,
    )
    r = Run(code, 2)
    r.cpu.phys_bits = phys_bits
    r.m.mem.write(PT + 0x1000 + 8, (0xF000000000 | 0x83).to_bytes(8, "little"))  # PDPT[1]: 1 GiB page
    r.cpu.tlb.flush()
    r.run()
    if faults:
        assert [(f[0], f[1]) for f in r.faults] == [(14, 0b1011)]  # #PF: P, W, RSVD
    else:
        assert not r.faults
        assert r.cpu.regs[0] == 0xFFFFFFFFFFFFFFFF


def test_compatibility_mode_32bit_code(tier: int, tmp_path: Path) -> None:
    """32-bit code under long mode (CS.L = 0, CS.D = 1): the register locals hold 64-bit
    values, so 32-bit reads see the low halves and 32-bit writes zero-extend; addresses
    are 32-bit; R8-R15 are left alone."""
    s = tmp_path / "c.s"
    s.write_text(
        ".intel_syntax noprefix\n.code32\n"
        "mov eax, ebx\nadd ecx, 1\npush eax\npop edx\nlea esi, [ebx+ecx+4]\nmov edi, dword ptr [esi]\n"
        "mov bx, 0x1234\nhlt\n"
    )
    subprocess.run(["as", "--32", "-o", str(tmp_path / "c.o"), str(s)], check=True)
    subprocess.run(
        ["objcopy", "-O", "binary", "-j", ".text", str(tmp_path / "c.o"), str(tmp_path / "c.bin")], check=True
    )
    r = Run((tmp_path / "c.bin").read_bytes(), tier)
    cpu = r.cpu
    cpu.segs[CS].flags = cpu.segs[CS].flags & ~DESC_L | DESC_B
    cpu.compute_hflags()
    assert cpu.hflags & HF_LMA and not cpu.hflags & HF_CS64
    cpu.regs[:] = [0x5555, 0xFFFFFFFFFFFFFFFF, 7, 0xAAAABBBB00010000, 0x40000, 0, 0, 0]
    cpu.xregs[:] = [0x8888888888888888] * 8
    r.m.mem.write(0x10004, (0xCAFEF00D).to_bytes(4, "little"))
    r.run()
    assert not r.faults
    assert cpu.regs[0] == 0x10000  # mov eax, ebx: zero-extended
    assert cpu.regs[1] == 0  # add ecx, 1 (0xFFFFFFFF + 1): the upper half is gone too
    assert cpu.regs[2] == 0x10000
    assert cpu.regs[3] == 0xAAAABBBB00011234  # a 16-bit write keeps the rest
    assert cpu.regs[6] == 0x10004 and cpu.regs[7] == 0xCAFEF00D
    assert cpu.regs[4] == 0x40000
    assert cpu.xregs == [0x8888888888888888] * 8
