"""The exec loop: exact instruction counts, budgets inside looping TBs, determinism, tiers.

Virtual time will be derived from the instruction count, so a run stopped
after N instructions must be in exactly the state N single steps reach,
whatever the TB shapes (tier 1, tier 2 looping inside the function, TBs
truncated at the budget).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess

import pytest

from gdbemu.machine import Machine

pytestmark = pytest.mark.skipif(shutil.which("as") is None, reason="GNU binutils not installed")

PROGRAM = r"""
.code32
.globl _start
_start:
    mov     $0x90000, %esp
    mov     $3000, %ecx
    xor     %eax, %eax
    mov     $data, %edi
1:  add     %ecx, %eax              # a loop the hot tier runs inside one function
    mov     %eax, (%edi)
    add     (%edi), %eax
    rol     $3, %eax
    dec     %ecx
    jnz     1b
    mov     $200, %ecx
2:  push    %ecx                    # calls, the stack and flags across TBs
    call    f
    pop     %ecx
    loop    2b
    mov     %eax, %ebx
    mov     $0, %al
    out     %al, $0xf4
f:  imul    $7, %eax, %edx
    xor     %edx, %eax
    cmp     $0x1000, %eax
    jb      3f
    sub     $0x800, %eax
3:  ret
.data
data: .long 0
"""


@pytest.fixture(scope="module")
def program(tmp_path_factory) -> str:
    d = tmp_path_factory.mktemp("exec")
    (d / "p.s").write_text(PROGRAM)
    subprocess.run(["as", "--32", str(d / "p.s"), "-o", str(d / "p.o")], check=True)
    subprocess.run(["ld", "-m", "elf_i386", "-Ttext=0x100000", str(d / "p.o"), "-o", str(d / "p.elf")], check=True)
    return str(d / "p.elf")


def state(m: Machine) -> tuple:
    cpu = m.cpu
    return (tuple(cpu.regs), cpu.eip, cpu.get_eflags(), cpu.icount)


def ram_hash(m: Machine) -> str:
    return hashlib.sha256(m.mem.ram).hexdigest()


def test_runs_to_completion_identically_in_both_tiers(program):
    results = []
    for tier in (None, 1, 2):
        m = Machine(ram_size=8 << 20)
        m.translator.force_tier = tier
        m.load_elf(program)
        stop = m.run(max_insns=10**6)
        assert stop.kind == "exit"
        results.append((state(m), ram_hash(m)))
    assert results[0] == results[1] == results[2]


@pytest.mark.parametrize("budget", [1, 7, 64, 1000, 5003, 12345, 18001])
def test_stopping_after_n_instructions_is_exact(program, budget):
    """A run of N instructions lands where N single steps land (in-TB loops honour the budget)."""
    m = Machine(ram_size=8 << 20)
    m.load_elf(program)
    # warm the hot tier up first so looping TBs are compiled, then stop mid-loop
    m.run(max_insns=budget)
    assert m.cpu.icount == budget
    ref = Machine(ram_size=8 << 20)
    ref.load_elf(program)
    for _ in range(budget):
        ref.run(max_insns=1)
    assert state(m) == state(ref)
    assert ram_hash(m) == ram_hash(ref)


def test_deterministic_across_runs(program):
    """The same guest twice: the same instruction count and the same RAM, byte for byte."""
    outs = []
    for _ in range(2):
        m = Machine(ram_size=8 << 20)
        m.load_elf(program)
        m.run(max_insns=10**6)
        outs.append((m.cpu.icount, ram_hash(m), m.exit_code))
    assert outs[0] == outs[1]


def test_hot_code_is_compiled(program):
    m = Machine(ram_size=8 << 20)
    m.load_elf(program)
    m.run(max_insns=10**6)
    stats = m.stats()
    assert stats["tier2_built"] >= 1  # the loop got hot
    assert stats["tier1_built"] >= stats["tier2_built"]
