"""Unaligned accesses inside one page take the inline path of generated code (core/emit.py).

The inline TLB compare accepts an unaligned access whose last byte is in the
same page and whose entry carries no flag; everything else keeps the slow
path: a page-crossing access, a watched page, a page holding code (NOTDIRTY:
the store must invalidate), and every CPL 3 access (#AC is checked there).
Each check runs in both tiers and would fail if the inline path were wrong or
missing (``unaligned`` counts the slow path's unaligned accesses).
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from gdbemu.core.cpu import HF_CS32, HF_MMU_SHIFT
from gdbemu.core.emit import Emitter
from gdbemu.machine import Machine
from gdbemu.softmmu.tlb import MMU_KNOSMAP_IDX, MMU_USER_IDX
from gdbemu.softmmu.watchpoint import WATCH_WRITE

pytestmark = pytest.mark.skipif(shutil.which("as") is None, reason="GNU binutils not installed")

N = 500
BUF = 0x200000

PROGRAM = rf"""
.code32
.globl _start
_start:
    mov     $0x90000, %esp
    mov     ${N}, %ecx
    mov     ${BUF:#x}, %edi
    xor     %eax, %eax
    xor     %ebx, %ebx
1:  imul    $0x9e3779b1, %ecx, %edx
    mov     %edx, 1(%edi)           # unaligned stores inside the page
    movw    %dx, 7(%edi)
    add     3(%edi), %eax           # unaligned loads inside the page
    movzwl  5(%edi), %esi
    add     %esi, %ebx
    dec     %ecx
    jnz     1b
    mov     %eax, 0xffe(%edi)       # crosses into the next page
    mov     0xffd(%edi), %esi
    mov     $0, %al
    out     %al, $0xf4
"""

SMC = r"""
.code32
.globl _start
_start:
    mov     $0x90000, %esp
    mov     $20, %ecx
    xor     %ebx, %ebx
1:  mov     %ecx, patch + 1         # an unaligned store into the immediate below
    call    f
    add     %eax, %ebx
    loop    1b
    mov     $0, %al
    out     %al, $0xf4
.p2align 12
f:  nop
patch:
    mov     $0, %eax
    ret
"""


def _build(tmp_path, name: str, text: str) -> str:
    (tmp_path / f"{name}.s").write_text(text)
    subprocess.run(["as", "--32", str(tmp_path / f"{name}.s"), "-o", str(tmp_path / f"{name}.o")], check=True)
    elf = str(tmp_path / f"{name}.elf")
    subprocess.run(["ld", "-m", "elf_i386", "-Ttext=0x100000", str(tmp_path / f"{name}.o"), "-o", elf], check=True)
    return elf


def _expected() -> tuple[int, int, int]:
    buf = bytearray(16)
    eax = ebx = 0
    for ecx in range(N, 0, -1):
        edx = ecx * 0x9E3779B1 & 0xFFFFFFFF
        buf[1:5] = edx.to_bytes(4, "little")
        buf[7:9] = (edx & 0xFFFF).to_bytes(2, "little")
        eax = eax + int.from_bytes(buf[3:7], "little") & 0xFFFFFFFF
        ebx = ebx + int.from_bytes(buf[5:7], "little") & 0xFFFFFFFF
    return eax, ebx, (eax & 0xFFFFFF) << 8  # the load at BUF + 0xFFD: a zero byte, then eax's low three


@pytest.mark.parametrize("tier", [None, 1, 2])
def test_unaligned_accesses_inside_a_page_stay_inline_and_exact(tmp_path, tier):
    m = Machine(ram_size=8 << 20)
    m.translator.force_tier = tier
    m.load_elf(_build(tmp_path, "p", PROGRAM))
    assert m.run(max_insns=10**6).kind == "exit"
    eax, ebx, esi = _expected()
    assert m.cpu.regs[3] == ebx and m.mem.read(BUF + 0xFFE, 4) == eax.to_bytes(4, "little")
    assert m.cpu.regs[6] == esi  # the page-crossing load read what the crossing store wrote
    stats = m.stats()
    assert stats["unaligned"] <= 4  # the first touches (the entries filled) and the crossing load: not 4 * N
    assert stats["page_cross"] == 2  # the crossing store and load did


@pytest.mark.parametrize("tier", [None, 1, 2])
def test_an_unaligned_store_into_a_watched_page_stops(tmp_path, tier):
    m = Machine(ram_size=8 << 20)
    m.translator.force_tier = tier
    m.load_elf(_build(tmp_path, "p", PROGRAM))
    assert m.run(max_insns=2000).kind == "limit"  # hot, the page's entry filled
    m.watchpoints.add(BUF + 4, 1, WATCH_WRITE)  # the last byte of the 4-byte store at BUF + 1
    stop = m.run(max_insns=10**6)
    assert stop.kind == "debug" and stop.reason == "watch" and stop.addr == BUF + 4, stop
    insn = m.cpu.eip - 3  # stopped after `mov %edx, 1(%edi)` (3 bytes)
    assert m.mem.read(insn, 3) == bytes.fromhex("895701")


@pytest.mark.parametrize("tier", [None, 1, 2])
def test_an_unaligned_store_into_code_invalidates_it(tmp_path, tier):
    m = Machine(ram_size=8 << 20)
    m.translator.force_tier = tier
    m.load_elf(_build(tmp_path, "s", SMC))
    assert m.run(max_insns=10**5).kind == "exit"
    assert m.cpu.regs[3] == sum(range(1, 21))  # each call ran the immediate just stored


def test_user_mode_code_keeps_the_slow_path_for_alignment_checks():
    """At CPL 3 an unaligned access must reach the slow path, which raises #AC under CR0.AM + EFLAGS.AC."""
    for mmu_idx, inline in ((MMU_USER_IDX, False), (MMU_KNOSMAP_IDX, True)):
        e = Emitter(HF_CS32 | mmu_idx << HF_MMU_SHIFT, tier1=False)
        e.load_mem("_a1", 4)
        e.store_mem("_a1", 4, "eax")
        text = "\n".join(str(x) for x in e.lines)
        assert ("UL32" in text and "US32" in text) == inline, text
