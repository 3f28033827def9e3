"""16-bit code: real mode after reset, with operand- and address-size prefixes.

Multiboot kernels start in 32-bit protected mode, but the decoder, the
translator and the interrupt path must handle 16-bit code (SMP trampolines,
boot sectors): here a real-mode program runs from 0x7C00 as a BIOS would
start a boot sector.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from gdbemu.core.cpu import CS, DESC_A, DESC_CS, DESC_P, DESC_R, DESC_S, SegmentCache
from gdbemu.machine import Machine

pytestmark = pytest.mark.skipif(shutil.which("as") is None, reason="GNU binutils not installed")

SOURCE = r"""
.code16
.globl _start
_start:
    xor     %ax, %ax
    mov     %ax, %ds
    mov     %ax, %ss
    mov     $0x7000, %sp
    mov     $0x1234, %bx
    mov     $0x10, %si
    movw    $0xbeef, 0x500(%bx,%si)     # [bx+si+0x500] = 0x1744
    mov     0x500(%bx,%si), %cx
    mov     $0x100, %ax
    mov     %ax, %es                    # ES base 0x1000
    movw    $0x4242, %es:0x20           # physical 0x1020
    mov     $0x12345678, %edx           # 66 prefix: a 32-bit operand
    add     $1, %edx
    addr32 mov (%ebx), %ax              # 67 prefix: a 32-bit address
    mov     %ax, %bp
    call    sub
    movw    $handler, 0x100             # IVT entry for int 0x40
    movw    $0, 0x102
    int     $0x40
    push    $0x55aa
    pop     %di
    mov     $0xfffe, %si
    lodsw                               # SI wraps to 0 within the segment
    mov     %si, %ax
    mov     $0, %dx
    out     %al, $0xf4
sub:
    mov     $0x77, %bl
    ret
handler:
    mov     $0x99, %ah
    iret
"""


def build(tmp_path) -> bytes:
    src = tmp_path / "rm.s"
    src.write_text(SOURCE)
    obj = tmp_path / "rm.o"
    binfile = tmp_path / "rm.bin"
    subprocess.run(["as", "--32", str(src), "-o", str(obj)], check=True)
    subprocess.run(
        ["ld", "-m", "elf_i386", "-Ttext=0x7c00", "--oformat", "binary", str(obj), "-o", str(binfile)], check=True
    )
    return binfile.read_bytes()


@pytest.mark.parametrize("tier", [1, 2])
def test_real_mode_program(tmp_path, tier):
    code = build(tmp_path)
    m = Machine(ram_size=1 << 20)
    m.translator.force_tier = tier
    m.mem.write(0x7C00, code)
    m.mem.write(0x1234, b"\x34\x12")  # read by the addr32 load through EBX
    cpu = m.cpu
    cpu.segs[CS] = SegmentCache(0, 0, 0xFFFF, DESC_P | DESC_S | DESC_CS | DESC_R | DESC_A)
    cpu.eip = 0x7C00
    cpu.compute_hflags()
    stop = m.run(max_insns=10_000)
    assert stop.kind == "exit", stop
    regs = cpu.regs
    assert regs[1] & 0xFFFF == 0xBEEF  # cx
    assert m.mem.read(0x1744, 2) == b"\xef\xbe"
    assert m.mem.read(0x1020, 2) == b"\x42\x42"
    assert regs[2] == 0x12340000  # edx was 0x12345679 (66-prefixed add); `mov $0, %dx` cleared dx only
    assert regs[5] & 0xFFFF == 0x1234  # bp from the addr32 load
    assert regs[3] & 0xFF == 0x77  # bl set in the called subroutine
    assert (regs[0] >> 8) & 0xFF == 0  # the handler's ah = 0x99 was overwritten by `mov %si, %ax` (si = 0)
    assert regs[7] & 0xFFFF == 0x55AA  # di from push imm / pop
    assert regs[0] & 0xFFFF == 0  # si after lodsw at 0xfffe wrapped to 0
    assert cpu.regs[4] & 0xFFFF == 0x7000  # the stack is balanced after call/int/iret


def test_real_mode_interrupt_frame(tmp_path):
    """int 0x40 pushes FLAGS, CS, IP (16-bit) and iret pops them: checked by stopping in the handler."""
    code = build(tmp_path)
    m = Machine(ram_size=1 << 20)
    m.mem.write(0x7C00, code)
    cpu = m.cpu
    cpu.segs[CS] = SegmentCache(0, 0, 0xFFFF, DESC_P | DESC_S | DESC_CS | DESC_R | DESC_A)
    cpu.eip = 0x7C00
    cpu.compute_hflags()
    # run until the handler's first instruction
    for _ in range(200):
        m.run(max_insns=1)
        if m.mem.read(0x100, 2) != b"\x00\x00" and cpu.eip == int.from_bytes(m.mem.read(0x100, 2), "little"):
            break
    sp = cpu.regs[4] & 0xFFFF
    ip, cs, flags = (int.from_bytes(m.mem.read(sp + 2 * i, 2), "little") for i in range(3))
    assert cs == 0
    assert code[ip - 0x7C00 - 2 : ip - 0x7C00] == b"\xcd\x40"  # the return address follows `int 0x40`
    assert flags & 2  # reserved bit 1 is always set in the pushed image
    # on to the instruction after `int 0x40` (push $0x55aa): iret is back, with the handler's ah = 0x99
    after_int = 0x7C00 + code.index(b"\x68\xaa\x55")
    for _ in range(20):
        if cpu.eip == after_int:
            break
        m.run(max_insns=1)
    assert cpu.eip == after_int
    assert (cpu.regs[0] >> 8) & 0xFF == 0x99
    assert cpu.regs[4] & 0xFFFF == sp + 6  # iret popped IP, CS, FLAGS
