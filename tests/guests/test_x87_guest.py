"""x87 system behaviour seen by guest code: FNINIT in real mode, #MF (CR0.NE=1), lazy FPU
switching with CR0.TS and #NM, FSAVE/FRSTOR/FSTENV/FLDENV round trips.

The protected-mode snippets use tests/unit/test_ops_system.py's runtime (IDT stubs that record
the vector and resume at a label, REPORT name=value on port 0xE9).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from unit.test_ops_system import check

from gdbemu.core.cpu import CS, DESC_A, DESC_CS, DESC_P, DESC_R, DESC_S, SegmentCache
from gdbemu.machine import Machine

pytestmark = pytest.mark.skipif(shutil.which("as") is None, reason="GNU binutils not installed")

REAL_MODE = r"""
.code16
.globl _start
_start:
    xor     %ax, %ax
    mov     %ax, %ds
    fninit
    fnstcw  0x600
    fld1
    fldpi
    faddp                               # pi + 1
    fistp   0x602                       # 4
    fnstsw  %ax
    mov     %ax, 0x604
    out     %al, $0xf4
"""


def test_fninit_in_real_mode(tmp_path: Path) -> None:
    """Issue 10: FNINIT in real mode raised #UD at the same IP forever; now the x87 runs there."""
    src = tmp_path / "rm.s"
    src.write_text(REAL_MODE)
    obj, binfile = tmp_path / "rm.o", tmp_path / "rm.bin"
    subprocess.run(["as", "--32", str(src), "-o", str(obj)], check=True)
    subprocess.run(
        ["ld", "-m", "elf_i386", "-Ttext=0x7c00", "--oformat", "binary", str(obj), "-o", str(binfile)], check=True
    )
    m = Machine(ram_size=1 << 20)
    m.mem.write(0x7C00, binfile.read_bytes())
    cpu = m.cpu
    cpu.segs[CS] = SegmentCache(0, 0, 0xFFFF, DESC_P | DESC_S | DESC_CS | DESC_R | DESC_A)
    cpu.eip = 0x7C00
    cpu.compute_hflags()
    stop = m.run(max_insns=1000)
    assert stop.kind == "exit", stop
    assert m.mem.read(0x600, 2) == b"\x7f\x03"  # FCW after FNINIT
    assert m.mem.read(0x602, 2) == b"\x04\x00"  # round(pi + 1) = 4
    assert int.from_bytes(m.mem.read(0x604, 2), "little") & 0x3800 == 0  # stack balanced: TOP = 0


SYSTEM = r"""
.macro TRY name, insns:vararg
        EXPECT_FAULT .Ltry\@
        \insns
        movl $-1, last_vec
        movl $0, resume_eip
.Ltry\@:
        REPORT \name, last_vec
.endm
main:
        movl %cr0, %eax
        andl $~0x2e, %eax               /* MP EM TS NE clear */
        orl $0x22, %eax                 /* NE and MP */
        movl %eax, %cr0
        fninit
        /* an unmasked zero divide: the flag is pending, #MF at the next waiting instruction */
        fnstcw scratch
        andw $~4, scratch               /* unmask ZE */
        fldcw scratch
        fld1
        fldz
        fdivrp                          /* 1 / 0: ZE, unmasked: ES set, ST unchanged */
        fnstsw %ax
        movzwl %ax, %ebx
        REPORT sw_after_div, %ebx
        TRY mf_on_fwait, fwait
        TRY mf_on_fld, fld1
        fnclex
        TRY after_fnclex, fld1
        fninit
        /* FSTENV / FLDENV and FSAVE / FRSTOR round trips */
        fldpi
        fld1
        fnstenv env32
        movl env32, %ebx
        REPORT env_fcw, %ebx
        movl env32+4, %ebx
        REPORT env_fsw, %ebx
        movl env32+8, %ebx
        REPORT env_ftw, %ebx
        fnsave save32
        fnstsw %ax
        movzwl %ax, %ebx
        REPORT sw_after_fnsave, %ebx     /* FNSAVE ends with FNINIT */
        frstor save32
        fstpl scratch                   /* 1.0 */
        movl scratch+4, %ebx
        REPORT restored_st0_hi, %ebx
        fstpl scratch                   /* pi */
        movl scratch+4, %ebx
        REPORT restored_st1_hi, %ebx
        data16 fnstenv env16
        movzwl env16+2, %ebx
        REPORT env16_fsw, %ebx
        movzwl env16+4, %ebx
        REPORT env16_ftw, %ebx
        /* lazy switching: TS set, the first x87 instruction raises #NM; CLTS lets it run */
        movl %cr0, %eax
        orl $8, %eax
        movl %eax, %cr0
        TRY nm_on_fld, fld1
        TRY nm_on_fwait, fwait
        TRY nm_on_fnsave, fnsave save32
        clts
        TRY fld_after_clts, fld1
        /* stack overflow, masked: C1 = 1, SF, IE, the indefinite pushed */
        fninit
        .rept 8
        fld1
        .endr
        fld1
        fnstsw %ax
        movzwl %ax, %ebx
        REPORT sw_overflow, %ebx
        fstpl scratch
        movl scratch+4, %ebx
        REPORT overflow_value_hi, %ebx
        fninit
        ret
        .data
        .balign 16
env32:  .fill 28, 1, 0
env16:  .fill 14, 1, 0
save32: .fill 108, 1, 0
        .text
"""


def test_x87_exceptions_environment_and_lazy_switching(tmp_path: Path) -> None:
    check(
        tmp_path,
        "x87sys",
        SYSTEM,
        {
            "sw_after_div": 0x3000 | 0x80 | 0x8000 | 4,  # TOP=6, ES, B, ZE
            "mf_on_fwait": 16,
            "mf_on_fld": 16,
            "after_fnclex": 0xFFFFFFFF,
            "env_fcw": 0x037F,
            "env_fsw": 0x3000,  # TOP = 6
            "env_ftw": 0x0FFF,  # R6: valid (1.0), R7: valid (pi), others empty
            "sw_after_fnsave": 0,
            "restored_st0_hi": 0x3FF00000,
            "restored_st1_hi": 0x400921FB,
            "env16_fsw": 0x20,  # PE from storing pi as a double
            "env16_ftw": 0xFFFF,
            "nm_on_fld": 7,
            "nm_on_fwait": 7,
            "nm_on_fnsave": 7,
            "fld_after_clts": 0xFFFFFFFF,
            "sw_overflow": 0x3A41,  # TOP=7 (the indefinite was pushed), C1, SF, IE
            "overflow_value_hi": 0xFFF80000,  # the indefinite, as a double
        },
    )


LAZY = r"""
/* Two "tasks" share the x87 lazily: a switch only sets CR0.TS; the first x87 instruction of the
 * next task raises #NM, whose handler (nm_switch) saves the owner's state with FNSAVE, loads the
 * current task's with FRSTOR, clears TS and retries the instruction. */
.macro SWITCH_TO task
        movl $\task, current
        movl %cr0, %eax
        orl $8, %eax
        movl %eax, %cr0
        movl $nm_switch, resume_eip
.endm
main:
        movl %cr0, %eax
        andl $~0xc, %eax                /* EM TS clear */
        orl $0x22, %eax                 /* NE MP */
        movl %eax, %cr0
        fninit
        fnsave area_b                   /* task B starts from the FNINIT state */
        movl $0, nm_count
        movl $area_a, owner
        movl $area_a, current
        /* task A */
        fld1
        fldpi
        SWITCH_TO area_b
        /* task B */
        fldz
        fld1
        faddp                           /* B: ST(0) = 1, its stack depth 1 */
        SWITCH_TO area_a
        /* task A again: its pi and 1 are back */
        faddp
        fstpl result_a
        SWITCH_TO area_b
        fstpl result_b
        fnstsw %ax
        movzwl %ax, %ebx
        REPORT b_sw, %ebx
        movl result_a+4, %ebx
        REPORT a_hi, %ebx
        movl result_a, %ebx
        REPORT a_lo, %ebx
        movl result_b+4, %ebx
        REPORT b_hi, %ebx
        movl nm_count, %ebx
        REPORT nm_count, %ebx
        movl $0, resume_eip
        ret

nm_switch:
        cmpl $7, last_vec
        jne unexpected
        incl nm_count
        clts
        movl owner, %eax
        fnsave (%eax)
        movl current, %eax
        frstor (%eax)
        movl %eax, owner
        jmp *last_eip                   /* retry the instruction that raised #NM */

        .data
        .balign 16
area_a: .fill 108, 1, 0
area_b: .fill 108, 1, 0
owner:  .long 0
current: .long 0
nm_count: .long 0
        .balign 8
result_a: .double 0
result_b: .double 0
        .text
"""


def test_lazy_fpu_switching_with_nm(tmp_path: Path) -> None:
    check(
        tmp_path,
        "lazy",
        LAZY,
        {
            "nm_count": 3,
            "a_hi": 0x401090FD,  # pi + 1 = 4.141592653589793
            "a_lo": 0xAA22168C,
            "b_hi": 0x3FF00000,  # 1.0
            "b_sw": 0,  # B's stack empty again, no exception flags
        },
    )
