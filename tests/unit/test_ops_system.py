"""System instructions, far transfers, interrupt delivery: small guests that check them from inside.

Each test assembles a snippet (GNU as, at test time, in a temporary
directory) on top of a small runtime, ``PRELUDE``: a multiboot header (so
the same ELF boots on qemu-system-i386 -kernel, the behavioural reference
the expectations were checked against), a GDT with ring-0/ring-3 segments,
a TSS and a call gate, an IDT whose stubs record the exception frame, and a
reporter that prints ``name=XXXXXXXX`` lines to port 0xE9.  A fault a check
provokes on purpose is resumed at ``resume_eip``; any other one is reported
as ``unexpected`` and ends the run with status 2.

Why guests and not helper calls: privilege transitions, precise faults and
the double-fault rules are about the state the *guest* observes (frames on
its stacks, error codes, registers after a fault), which is what these
programs look at.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from gdbemu.machine import Machine

EXC_VECTORS = list(range(32)) + [0x80, 0x81]
ERR_VECTORS = {8, 10, 11, 12, 13, 14, 17}

# Runtime shared by the snippets.  Selectors:
#   0x08 ring-0 code    0x10 ring-0 data   0x18 ring-3 code   0x20 ring-3 data
#   0x28 TSS            0x30 call gate (DPL 3, 2 dword parameters) -> 0x08:gate_target
#   0x38 data, not present                 0x40 ring-0 code (second flat selector)
#   0x48 conforming code, DPL 0            0x50 execute-only code, DPL 0
#   0x58 ring-0 data, limit 0xfff (byte granular)
#   0x60 an LDT (base patched by ldt_init) holding 0x04: data, limit 0x1234
PRELUDE = r"""
        .code32
        .set SEL_KCODE, 0x08
        .set SEL_KDATA, 0x10
        .set SEL_UCODE, 0x1b
        .set SEL_UDATA, 0x23
        .set SEL_TSS,   0x28
        .set SEL_GATE,  0x33

.macro REPORT name:req, val:req
        .section .rodata
.Lrn\@: .asciz "\name"
        .previous
        pushl \val
        pushl $.Lrn\@
        call report
.endm

/* EXPECT_FAULT label: the next fault resumes at label */
.macro EXPECT_FAULT label:req
        movl $\label, resume_eip
        movl $-1, last_vec
        movl $-1, last_err
.endm

        .text
        .balign 4
mb_header:
        .long 0x1BADB002, 0, -0x1BADB002

        .globl _start
_start:
        cli
        lgdt gdt_desc
        ljmp $SEL_KCODE, $1f
1:      movw $SEL_KDATA, %ax
        movw %ax, %ds
        movw %ax, %es
        movw %ax, %fs
        movw %ax, %gs
        movw %ax, %ss
        movl $stack_top, %esp
        call tss_init
        call gate_init
        call ldt_init
        call idt_init
        call main
        movb $0, %al
exit:   outb %al, $0xf4
        cli
        hlt
        jmp exit

/* report(name, value), stdcall: prints name=XXXXXXXX\n; keeps registers and flags */
report:
        pushfl
        pushal
        movl 40(%esp), %esi
1:      lodsb
        testb %al, %al
        jz 2f
        outb %al, $0xe9
        jmp 1b
2:      movb $'=', %al
        outb %al, $0xe9
        movl 44(%esp), %edx
        movl $8, %ecx
3:      roll $4, %edx
        movl %edx, %eax
        andl $0xf, %eax
        movb hexdig(%eax), %al
        outb %al, $0xe9
        decl %ecx
        jnz 3b
        movb $'\n', %al
        outb %al, $0xe9
        popal
        popfl
        ret $8

tss_init:
        movl $tss, %eax
        movw %ax, gdt_tss + 2
        shrl $16, %eax
        movb %al, gdt_tss + 4
        movb %ah, gdt_tss + 7
        movl $kstack_top, tss + 4
        movl $SEL_KDATA, tss + 8
        movw $104, tss + 102
        movw $SEL_TSS, %ax
        ltr %ax
        ret

idt_init:
        xorl %ecx, %ecx
1:      movl isr_vecs(,%ecx,4), %ebx
        movl isr_addrs(,%ecx,4), %eax
        movw %ax, idt(,%ebx,8)
        movw $SEL_KCODE, idt+2(,%ebx,8)
        movw $0x8e00, idt+4(,%ebx,8)
        shrl $16, %eax
        movw %ax, idt+6(,%ebx,8)
        incl %ecx
        cmpl $isr_count, %ecx
        jb 1b
        movw $0xee00, idt+4+0x80*8       /* int $0x80: DPL 3 */
        lidt idt_desc
        ret

isr_common:
        pushal
        pushl %ds
        pushl %es
        movw $SEL_KDATA, %ax
        movw %ax, %ds
        movw %ax, %es
        movl %esp, %ebp
        movl 40(%ebp), %eax
        movl %eax, last_vec
        movl 44(%ebp), %eax
        movl %eax, last_err
        movl 48(%ebp), %eax
        movl %eax, last_eip
        movl 52(%ebp), %eax
        movl %eax, last_cs
        movl 56(%ebp), %eax
        movl %eax, last_efl
        movl 60(%ebp), %eax
        movl %eax, last_uesp
        movl 64(%ebp), %eax
        movl %eax, last_uss
        leal 48(%ebp), %eax
        movl %eax, last_frame
        movl %ss, %eax
        movl %eax, last_ss
        incl exc_count
        cmpl $0x80, 40(%ebp)
        je user_return
        cmpl $0, fault_returns_to_kernel  /* a fault in ring 3 / VM86 ends run_user */
        jne user_return
        movl resume_eip, %eax
        testl %eax, %eax
        jz unexpected
        movl %eax, 48(%ebp)
        movl $0, resume_eip
        popl %es
        popl %ds
        popal
        addl $8, %esp
        iret

unexpected:
        REPORT unexpected, last_vec
        REPORT unexpected_err, last_err
        REPORT unexpected_eip, last_eip
        movb $2, %al
        jmp exit

/* int $0x80 from ring 3: back to the kernel context run_user saved */
user_return:
        movl user_ret_esp, %esp
        popal
        ret

/* run_user(eax = ring-3 entry, edx = ring-3 stack top) via iret; returns on int $0x80 */
run_user:
        pushal
        movl %esp, user_ret_esp
        movw $SEL_UDATA, %cx
        movw %cx, %ds
        movw %cx, %es
        pushl $SEL_UDATA
        pushl %edx
        pushl $0x2
        pushl $SEL_UCODE
        pushl %eax
        iret
"""

DATA = r"""
        .text
ldt_init:
        movl $ldt, %eax
        movw %ax, gdt_ldt + 2
        shrl $16, %eax
        movb %al, gdt_ldt + 4
        movb %ah, gdt_ldt + 7
        ret

/* gate_init: point the call gate at the snippet's gate_target (if it has one) */
gate_init:
.ifdef gate_target
        movl $gate_target, %eax
.else
        movl $unexpected, %eax
.endif
        movw %ax, gdt_gate
        shrl $16, %eax
        movw %ax, gdt_gate + 6
        ret

        .section .rodata
hexdig: .ascii "0123456789abcdef"

        .data
        .balign 8
gdt:
        .quad 0
        .quad 0x00cf9a000000ffff        /* 0x08 */
        .quad 0x00cf92000000ffff        /* 0x10 */
        .quad 0x00cffa000000ffff        /* 0x18 */
        .quad 0x00cff2000000ffff        /* 0x20 */
gdt_tss:
        .quad 0x0000890000000067        /* 0x28 */
gdt_gate:
        .word 0, SEL_KCODE              /* 0x30 call gate, offset patched */
        .byte 2, 0xec
        .word 0
        .quad 0x00cf12000000ffff        /* 0x38 data, P=0 */
        .quad 0x00cf9a000000ffff        /* 0x40 */
        .quad 0x00cf9e000000ffff        /* 0x48 conforming */
        .quad 0x00cf98000000ffff        /* 0x50 execute-only */
        .quad 0x0040920000000fff        /* 0x58 limit 0xfff */
gdt_ldt:
        .quad 0x000082000000000f        /* 0x60 LDT (two entries), base patched */
gdt_end:
        .balign 4
        .word 0
gdt_desc:
        .word gdt_end - gdt - 1
        .long gdt
        .balign 4
        .word 0
idt_desc:
        .word 0x82 * 8 - 1
        .long idt

resume_eip:     .long 0
fault_returns_to_kernel: .long 0
user_ret_esp:   .long 0
exc_count:      .long 0
last_vec:       .long -1
last_err:       .long -1
last_eip:       .long 0
last_cs:        .long 0
last_efl:       .long 0
last_uesp:      .long 0
last_uss:       .long 0
last_frame:     .long 0
last_ss:        .long 0
scratch:        .fill 16, 4, 0

        .balign 8
ldt:    .quad 0x0000920000001234        /* LDT 0x04: data, limit 0x1234 */
        .quad 0

        .bss
        .balign 4096
idt:            .skip 0x82 * 8
        .balign 16
tss:            .skip 104
        .balign 16
kstack:         .skip 4096
kstack_top:
stack:          .skip 8192
stack_top:
ustack:         .skip 4096
ustack_top:
"""


def _isr_stubs() -> str:
    out = ["        .text"]
    for v in EXC_VECTORS:
        out.append(f"isr{v}:")
        if v not in ERR_VECTORS:
            out.append("        pushl $0")
        out.append(f"        pushl ${v}")
        out.append("        jmp isr_common")
    out.append("        .data")
    out.append("isr_addrs: .long " + ", ".join(f"isr{v}" for v in EXC_VECTORS))
    out.append("isr_vecs:  .long " + ", ".join(str(v) for v in EXC_VECTORS))
    out.append(f"        .set isr_count, {len(EXC_VECTORS)}")
    return "\n".join(out) + "\n"


def source(snippet: str) -> str:
    """The complete guest: runtime + the snippet (which defines main and ends in ret)."""
    return PRELUDE + _isr_stubs() + "        .text\n" + snippet + DATA


def _tools() -> tuple[str, str]:
    as_path, ld_path = shutil.which("as"), shutil.which("ld")
    if not as_path or not ld_path:
        pytest.skip("GNU binutils (as, ld) are needed to build the guest snippets")
    return as_path, ld_path


def build(tmp: Path, name: str, text: str, ttext: int = 0x100000) -> Path:
    """Assemble and link one guest; as/ld errors fail the test with their output."""
    as_path, ld_path = _tools()
    src, obj, elf = tmp / f"{name}.s", tmp / f"{name}.o", tmp / f"{name}.elf"
    src.write_text(text)
    for cmd in (
        [as_path, "--32", "-o", str(obj), str(src)],
        [ld_path, "-m", "elf_i386", "-N", f"-Ttext={ttext:#x}", "-e", "_start", "-o", str(elf), str(obj)],
    ):
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            pytest.fail(f"{' '.join(cmd)}:\n{proc.stdout}{proc.stderr}")
    return elf


def run(tmp: Path, name: str, snippet: str, max_insns: int = 200_000) -> tuple[object, dict[str, int], Machine]:
    """Run a snippet; returns (stop, reported values, machine)."""
    elf = build(tmp, name, source(snippet))
    m = Machine(32 << 20)
    m.load_elf(str(elf))
    stop = m.run(max_insns=max_insns)
    values: dict[str, int] = {}
    for line in m.debug_output.decode(errors="replace").splitlines():
        key, _, val = line.partition("=")
        if _:
            values[key] = int(val, 16)
    return stop, values, m


def check(tmp: Path, name: str, snippet: str, expected: dict[str, int]) -> dict[str, int]:
    stop, got, m = run(tmp, name, snippet)
    assert stop.kind == "exit" and m.exit_code == 1, (stop, m.debug_output.decode(errors="replace"))
    assert {k: got.get(k) for k in expected} == expected
    return got


# ---- descriptor tables and segment loads ----------------------------------------------
LGDT_FARJMP = r"""
main:
        sgdt scratch
        movzwl scratch, %eax
        REPORT gdt_limit, %eax
        movl scratch+2, %eax
        subl $gdt, %eax
        REPORT gdt_base_ok, %eax
        ljmp $0x40, $1f                 /* another flat code selector */
1:      movl %cs, %eax
        REPORT cs_after_ljmp, %eax
        ljmp *farptr                    /* m16:32 back to 0x08 */
2:      movl %cs, %eax
        REPORT cs_after_ljmp_mem, %eax
        lcall $0x40, $far_func          /* far call, same level */
        REPORT lcall_ret_cs, %eax
        movl %cs, %eax
        REPORT cs_after_lret, %eax
        lcall *farptr2
        REPORT lcall_mem_ret_cs, %eax
        ljmp $0x48, $3f                 /* conforming code: CPL stays 0, RPL becomes 0 */
3:      movl %cs, %eax
        REPORT cs_conforming, %eax
        ljmp $SEL_KCODE, $4f
4:      ret
far_func:
        movl %cs, %eax
        lret
        .data
farptr:  .long 2b
         .word SEL_KCODE
farptr2: .long far_func
         .word 0x40
        .text
"""


def test_lgdt_and_far_jumps_reload_cs(tmp_path: Path) -> None:
    check(
        tmp_path,
        "lgdt",
        LGDT_FARJMP,
        {
            "gdt_limit": 0x67,
            "gdt_base_ok": 0,
            "cs_after_ljmp": 0x40,
            "cs_after_ljmp_mem": 0x08,
            "lcall_ret_cs": 0x40,
            "cs_after_lret": 0x08,
            "lcall_mem_ret_cs": 0x40,
            "cs_conforming": 0x48,
        },
    )


SEG_FAULTS = r"""
main:
        EXPECT_FAULT 1f
        movw $0x1000, %ax               /* beyond the GDT limit */
        movw %ax, %ds
1:      REPORT beyond_vec, last_vec
        REPORT beyond_err, last_err
        EXPECT_FAULT 2f
        movw $SEL_TSS, %ax              /* a system descriptor */
        movw %ax, %es
2:      REPORT tss_in_es_err, last_err
        EXPECT_FAULT 3f
        movw $0x38, %ax                 /* not present: #NP */
        movw %ax, %fs
3:      REPORT np_vec, last_vec
        REPORT np_err, last_err
        EXPECT_FAULT 4f
        movw $0x50, %ax                 /* execute-only code into a data register */
        movw %ax, %gs
4:      REPORT xonly_err, last_err
        EXPECT_FAULT 5f
        movw $SEL_UDATA, %ax            /* SS needs DPL = RPL = CPL */
        movw %ax, %ss
5:      REPORT ss_dpl3_err, last_err
        EXPECT_FAULT 6f
        xorl %eax, %eax
        movw %ax, %ss                   /* null SS: #GP(0) */
6:      REPORT ss_null_vec, last_vec
        REPORT ss_null_err, last_err
        xorl %eax, %eax
        movw %ax, %fs                   /* null into FS is fine */
        movl %fs, %eax
        REPORT fs_null, %eax
        movw $0x48, %ax                 /* readable conforming code into GS is fine */
        movw %ax, %gs
        movl %gs, %eax
        REPORT gs_conforming, %eax
        /* lds with a bad selector: #GP and the destination register unchanged */
        movl $0x11111111, %esi
        EXPECT_FAULT 7f
        ldsl bad_ptr, %esi
7:      REPORT lds_err, last_err
        REPORT lds_esi_kept, %esi
        movl %ds, %eax
        REPORT lds_ds_kept, %eax
        lfsl good_ptr, %edi
        REPORT lfs_off, %edi
        movl %fs, %eax
        REPORT lfs_sel, %eax
        movl %esp, %ebx
        lssl ss_ptr, %esp               /* switch stacks with lss, then back */
        movl %esp, %ecx
        movl %ss, %edx
        movw $SEL_KDATA, %ax
        movw %ax, %ss
        movl %ebx, %esp
        REPORT lss_esp, %ecx
        REPORT lss_ss, %edx
        ret
        .data
bad_ptr:  .long 0x22222222
          .word 0x1234
good_ptr: .long 0x33333333
          .word SEL_KDATA
ss_ptr:   .long kstack_top - 64
          .word SEL_KDATA
        .text
"""


def test_segment_loads_fault_with_the_selector(tmp_path: Path) -> None:
    got = check(
        tmp_path,
        "segfaults",
        SEG_FAULTS,
        {
            "beyond_vec": 13,
            "beyond_err": 0x1000,
            "tss_in_es_err": 0x28,
            "np_vec": 11,
            "np_err": 0x38,
            "xonly_err": 0x50,
            "ss_dpl3_err": 0x20,
            "ss_null_vec": 13,
            "ss_null_err": 0,
            "fs_null": 0,
            "gs_conforming": 0x48,
            "lds_err": 0x1234,
            "lds_esi_kept": 0x11111111,
            "lds_ds_kept": 0x10,
            "lfs_off": 0x33333333,
            "lfs_sel": 0x10,
            "lss_ss": 0x10,
        },
    )
    assert got["lss_esp"] % 16 == 0  # kstack_top - 64


LDT_TR = r"""
main:
        str %eax
        REPORT tr, %eax
        sldt %eax
        REPORT ldtr_initial, %eax
        movw $0x60, %ax
        lldt %ax
        sldt %ebx
        REPORT ldtr, %ebx
        movw $0x04, %ax                 /* LDT index 0, TI=1 */
        movw %ax, %fs
        movl %fs, %eax
        REPORT fs_ldt, %eax
        movl $0x04, %ecx
        lsl %ecx, %eax
        REPORT lsl_ldt, %eax
        EXPECT_FAULT 1f
        movw $0x0c, %ax                 /* LDT index 1: an all-zero (system) descriptor */
        movw %ax, %gs
1:      REPORT ldt_zero_desc_err, last_err
        EXPECT_FAULT 2f
        movw $0x14, %ax                 /* beyond the LDT limit */
        movw %ax, %gs
2:      REPORT ldt_beyond_err, last_err
        xorl %eax, %eax
        movw %ax, %fs
        lldt %ax                        /* no LDT */
        EXPECT_FAULT 3f
        movw $0x04, %ax
        movw %ax, %gs
3:      REPORT no_ldt_err, last_err
        EXPECT_FAULT 4f
        movw $0x10, %ax                 /* not an LDT descriptor */
        lldt %ax
4:      REPORT lldt_data_err, last_err
        EXPECT_FAULT 5f
        movw $SEL_TSS, %ax              /* already busy */
        ltr %ax
5:      REPORT ltr_busy_err, last_err
        movzbl gdt_tss + 5, %eax
        REPORT tss_type_byte, %eax
        ret
"""


def test_lldt_sldt_ltr_str(tmp_path: Path) -> None:
    check(
        tmp_path,
        "ldt",
        LDT_TR,
        {
            "tr": 0x28,
            "ldtr_initial": 0,
            "ldtr": 0x60,
            "fs_ldt": 0x04,
            "lsl_ldt": 0x1234,
            "ldt_zero_desc_err": 0x0C,
            "ldt_beyond_err": 0x14,
            "no_ldt_err": 0x04,
            "lldt_data_err": 0x10,
            "ltr_busy_err": 0x28,
            "tss_type_byte": 0x8B,
        },
    )


REFUSED = r"""
main:
        EXPECT_FAULT 1f
        ljmp $SEL_TSS, $0               /* the current task's TSS is busy: #GP(selector) */
1:      REPORT ljmp_tss_err, last_err
        EXPECT_FAULT 2f
        lcall $SEL_TSS, $0
2:      REPORT lcall_tss_err, last_err
        movb $0x85, idt + 0x81*8 + 5    /* vector 0x81 -> a task gate naming 0x08, not a TSS */
        EXPECT_FAULT 3f
        int $0x81
3:      REPORT int_task_gate_err, last_err
        EXPECT_FAULT 4f
        ljmp $SEL_KDATA, $0             /* a data segment is no jump target */
4:      REPORT ljmp_data_err, last_err
        EXPECT_FAULT 5f
        ljmp $0x1b, $0                  /* ring-3 code from ring 0 without a gate */
5:      REPORT ljmp_ring3_err, last_err
        EXPECT_FAULT 6f
        lcall $0, $0                    /* null selector */
6:      REPORT lcall_null_vec, last_vec
        REPORT lcall_null_err, last_err
        ljmp $0x50, $7f                 /* execute-only code is a fine target */
7:      movl %cs, %eax
        REPORT cs_xonly, %eax
        ljmp $SEL_KCODE, $8f
8:      pushfl                          /* iret with NT=1: back link 0 is no busy TSS: #TS(0) */
        pushl $SEL_KCODE
        pushl $9f
        pushfl
        orl $0x4000, (%esp)
        popfl
        EXPECT_FAULT 9f
        iret
9:      REPORT iret_nt_vec, last_vec
        addl $8, %esp                   /* the unpopped frame: EIP, CS; then the saved EFLAGS */
        popfl
        ret
"""


def test_task_switches_and_bad_targets_are_refused(tmp_path: Path) -> None:
    """Bad task-switch targets fault before the switch (SDM vol. 3, table 7-1); tests/guests/test_task_sysenter.py
    has the switches themselves."""
    check(
        tmp_path,
        "refused",
        REFUSED,
        {
            "ljmp_tss_err": 0x28,
            "lcall_tss_err": 0x28,
            "int_task_gate_err": 0x08,
            "ljmp_data_err": 0x10,
            "ljmp_ring3_err": 0x18,
            "lcall_null_vec": 13,
            "lcall_null_err": 0,
            "cs_xonly": 0x50,
            "iret_nt_vec": 10,
        },
    )


RING3_PRIV = r"""
.macro UTRY name, insns:vararg
        movl $-1, last_vec
        movl $.Lu\@, resume_eip
        \insns
        movl $0, resume_eip
.Lu\@:  movl last_vec, %eax
        movl %eax, r_\name
        .data
r_\name: .long 0
        .text
.endm
main:
        movl $user, %eax
        movl $ustack_top, %edx
        call run_user
        REPORT cli, r_cli
        REPORT sti, r_sti
        REPORT hlt, r_hlt
        REPORT mov_from_cr0, r_mov_from_cr0
        REPORT mov_to_cr3, r_mov_to_cr3
        REPORT mov_dr7, r_mov_dr7
        REPORT lgdt, r_lgdt
        REPORT lidt, r_lidt
        REPORT lldt, r_lldt
        REPORT ltr, r_ltr
        REPORT invlpg, r_invlpg
        REPORT wbinvd, r_wbinvd
        REPORT invd, r_invd
        REPORT clts, r_clts
        REPORT lmsw, r_lmsw
        REPORT rdmsr, r_rdmsr
        REPORT wrmsr, r_wrmsr
        REPORT in, r_in
        REPORT out, r_out
        REPORT sgdt, r_sgdt
        REPORT smsw, r_smsw
        REPORT str, r_str
        REPORT rdtsc, r_rdtsc
        REPORT cpuid, r_cpuid
        REPORT lar, r_lar
        REPORT ud2, r_ud2
        REPORT clac, r_clac
        movl %cr4, %eax                 /* CR4.TSD: rdtsc is for ring 0 only */
        orl $4, %eax
        movl %eax, %cr4
        movl $user_tsd, %eax
        movl $ustack_top, %edx
        call run_user
        REPORT rdtsc_tsd, r_rdtsc_tsd
        movl %cr4, %eax
        andl $~4, %eax
        movl %eax, %cr4
        ret
user:
        UTRY cli, cli
        UTRY sti, sti
        UTRY hlt, hlt
        UTRY mov_from_cr0, movl %cr0, %eax
        UTRY mov_to_cr3, movl %eax, %cr3
        UTRY mov_dr7, movl %dr7, %eax
        UTRY lgdt, lgdt gdt_desc
        UTRY lidt, lidt idt_desc
        UTRY lldt, lldt %ax
        UTRY ltr, ltr %ax
        UTRY invlpg, invlpg (%eax)
        UTRY wbinvd, wbinvd
        UTRY invd, invd
        UTRY clts, clts
        UTRY lmsw, lmsw %ax
        UTRY rdmsr, rdmsr
        UTRY wrmsr, wrmsr
        UTRY in, inb $0x80, %al
        UTRY out, outb %al, $0x80
        UTRY sgdt, sgdt scratch
        UTRY smsw, smsw %eax
        UTRY str, str %eax
        UTRY rdtsc, rdtsc
        UTRY cpuid, xorl %eax, %eax; cpuid
        UTRY lar, lar %eax, %eax
        UTRY ud2, ud2
        UTRY clac, clac
        int $0x80
user_tsd:
        UTRY rdtsc_tsd, rdtsc
        int $0x80
"""


def test_privileged_instructions_fault_in_ring3(tmp_path: Path) -> None:
    gp, none = 13, 0xFFFFFFFF
    check(
        tmp_path,
        "ring3priv",
        RING3_PRIV,
        {
            "cli": gp,
            "sti": gp,
            "hlt": gp,
            "mov_from_cr0": gp,
            "mov_to_cr3": gp,
            "mov_dr7": gp,
            "lgdt": gp,
            "lidt": gp,
            "lldt": gp,
            "ltr": gp,
            "invlpg": gp,
            "wbinvd": gp,
            "invd": gp,
            "clts": gp,
            "lmsw": gp,
            "rdmsr": gp,
            "wrmsr": gp,
            "in": gp,
            "out": gp,
            "sgdt": none,
            "smsw": none,
            "str": none,
            "rdtsc": none,
            "cpuid": none,
            "lar": none,
            "ud2": 6,
            "clac": 6,
            "rdtsc_tsd": gp,
        },
    )


VM86 = r"""
        .set V86_CS, 0xffff             /* linear 0xffff0 + ip reaches the image at 1 MiB */
main:
        movl $0, 0x9010
        movl $0x3202, %eax              /* IOPL 3: int $0x80 goes through the IDT */
        call run_v86
        movl last_frame, %esi
        REPORT v86_cs, last_cs
        movl last_efl, %eax
        andl $0x23000, %eax
        REPORT v86_eflags_vm_iopl, %eax
        REPORT v86_ss, last_uss
        REPORT v86_esp, last_uesp
        REPORT v86_es, 20(%esi)
        REPORT v86_ds, 24(%esi)
        REPORT v86_fs, 28(%esi)
        REPORT v86_gs, 32(%esi)
        movzwl 0x9010, %eax
        REPORT v86_ax, %eax
        movl $1, fault_returns_to_kernel
        movl $0x0202, %eax              /* IOPL 0: int $0x80 is #GP(0) */
        call run_v86
        movl $0, fault_returns_to_kernel
        REPORT v86_iopl0_vec, last_vec
        REPORT v86_iopl0_err, last_err
        ret
/* run_v86(eax = EFLAGS without VM): iretd into virtual-8086 mode at v86_code */
run_v86:
        pushal
        movl %esp, user_ret_esp
        pushl $0x0                      /* GS */
        pushl $0x40                     /* FS */
        pushl $0x50                     /* DS */
        pushl $0x60                     /* ES */
        pushl $0x0900                   /* SS: stack at 0x9000.. */
        pushl $0x0ff0                   /* ESP */
        orl $0x20000, %eax              /* VM */
        pushl %eax
        pushl $V86_CS
        pushl $(v86_code - 0xffff0)
        iret
        .code16
v86_code:
        movw $0x1234, %ax
        movw %ax, %ss:0x10              /* linear 0x9010 */
        int $0x80
        .code32
"""


def test_vm86_entry_by_iret_and_interrupt_out_of_it(tmp_path: Path) -> None:
    check(
        tmp_path,
        "vm86",
        VM86,
        {
            "v86_cs": 0xFFFF,
            "v86_eflags_vm_iopl": 0x23000,
            "v86_ss": 0x0900,
            "v86_esp": 0x0FF0,
            "v86_es": 0x60,
            "v86_ds": 0x50,
            "v86_fs": 0x40,
            "v86_gs": 0,
            "v86_ax": 0x1234,
            "v86_iopl0_vec": 13,
            "v86_iopl0_err": 0,
        },
    )


# ---- privilege transitions ------------------------------------------------------------------
RING3 = r"""
main:
        movl $user1, %eax
        movl $ustack_top, %edx
        call run_user
        REPORT r3_cs, last_cs
        REPORT r3_ss, last_uss
        movl $ustack_top, %eax
        subl last_uesp, %eax
        REPORT r3_esp_delta, %eax
        movl last_efl, %eax
        andl $0x3000, %eax
        REPORT r3_iopl, %eax
        movl $kstack_top - 20, %eax     /* the 5-dword frame at the top of the TSS stack */
        subl last_frame, %eax
        REPORT frame_at_esp0, %eax
        REPORT handler_ss, last_ss
        REPORT user_cpl, user_cpl
        REPORT user_eip_next, last_eip
        call lret_to_user               /* lret to ring 3 with DS = ring-0 data: DS is nulled */
        REPORT lret_ds, user_ds
        REPORT lret_es, user_es
        REPORT lret_cs, user_cs
        REPORT lret_ss, user_ss
        movl $ustack_top, %eax
        subl user_esp, %eax
        REPORT lret_esp_delta, %eax
        ret
lret_to_user:
        pushal
        movl %esp, user_ret_esp
        pushl $SEL_UDATA
        pushl $ustack_top - 8
        pushl $SEL_UCODE
        pushl $user2
        lret
        .data
user_cpl: .long 0
user_ds:  .long 0
user_es:  .long 0
user_cs:  .long 0
user_ss:  .long 0
user_esp: .long 0
        .text
user1:
        movl %cs, %eax
        andl $3, %eax
        movl %eax, user_cpl
        pushl $0
        pushl $0
        popl %eax
        popl %eax                       /* esp back at ustack_top */
        subl $12, %esp                  /* int $0x80 with esp = ustack_top - 12 */
user1_int:
        int $0x80
user2:
        movl %ds, %eax                  /* DS was 0x10 (DPL 0): nulled by lret */
        movl %eax, %ss:user_ds
        movl %es, %eax                  /* ES was 0x10 as well */
        movl %eax, %ss:user_es
        movl %cs, %eax
        movl %eax, %ss:user_cs
        movl %ss, %eax
        movl %eax, %ss:user_ss
        movl %esp, %ss:user_esp
        int $0x80
"""


def test_ring3_by_iret_and_back_by_int80_and_lret(tmp_path: Path) -> None:
    got = check(
        tmp_path,
        "ring3",
        RING3,
        {
            "r3_cs": 0x1B,
            "r3_ss": 0x23,
            "r3_esp_delta": 12,
            "r3_iopl": 0,
            "frame_at_esp0": 0,
            "handler_ss": 0x10,
            "user_cpl": 3,
            "lret_ds": 0,
            "lret_es": 0,
            "lret_cs": 0x1B,
            "lret_ss": 0x23,
            "lret_esp_delta": 8,
        },
    )
    assert got["user_eip_next"] != 0


CALL_GATE = r"""
main:
        movl $user, %eax
        movl $ustack_top, %edx
        call run_user
        REPORT gate_cs, g_cs
        REPORT gate_ss, g_ss
        REPORT gate_ret_cs, g_fcs
        REPORT gate_p0, g_p0
        REPORT gate_p1, g_p1
        REPORT gate_old_ss, g_oss
        movl $ustack_top - 8, %eax
        subl g_oesp, %eax
        REPORT gate_old_esp_delta, %eax
        movl $kstack_top - 24, %eax     /* SS ESP p1 p0 CS EIP */
        subl g_esp, %eax
        REPORT gate_frame_at_esp0, %eax
        REPORT after_ret_cs, u_cs
        movl $ustack_top, %eax
        subl u_esp, %eax
        REPORT after_ret_esp_delta, %eax
        REPORT after_ret_eax, u_eax
        REPORT int81_vec, u_vec
        REPORT int81_err, u_err
        REPORT int13_vec, u_vec13
        REPORT int13_err, u_err13
        ret

gate_target:                            /* ring 0 through the gate */
        movl %cs, %eax
        movl %eax, %ss:g_cs
        movl %ss, %eax
        movl %eax, %ss:g_ss
        movl %esp, %ss:g_esp
        movl 4(%esp), %eax
        movl %eax, %ss:g_fcs
        movl 8(%esp), %eax
        movl %eax, %ss:g_p0
        movl 12(%esp), %eax
        movl %eax, %ss:g_p1
        movl 16(%esp), %eax
        movl %eax, %ss:g_oesp
        movl 20(%esp), %eax
        movl %eax, %ss:g_oss
        movl $0x600d, %eax
        lret $8
        .data
g_cs: .long 0
g_ss: .long 0
g_esp: .long 0
g_fcs: .long 0
g_p0: .long 0
g_p1: .long 0
g_oesp: .long 0
g_oss: .long 0
u_cs: .long 0
u_esp: .long 0
u_eax: .long 0
u_vec: .long 0
u_err: .long 0
u_vec13: .long 0
u_err13: .long 0
        .text
user:
        pushl $0x1111                   /* parameter 1 (copied second) */
        pushl $0x2222                   /* parameter 0 */
        lcall $SEL_GATE, $0             /* the offset is ignored for a gate */
        movl %eax, u_eax
        movl %cs, %eax
        movl %eax, u_cs
        movl %esp, u_esp
        /* int $0x81 (gate DPL 0) from ring 3: #GP(0x81*8+2) */
        movl $1f, resume_eip
        int $0x81
1:      movl last_vec, %eax
        movl %eax, u_vec
        movl last_err, %eax
        movl %eax, u_err
        /* int $13 from ring 3: the same #GP, not a double fault (software interrupts never are) */
        movl $2f, resume_eip
        int $13
2:      movl last_vec, %eax
        movl %eax, u_vec13
        movl last_err, %eax
        movl %eax, u_err13
        int $0x80
"""


def test_call_gate_from_ring3_and_int_dpl(tmp_path: Path) -> None:
    check(
        tmp_path,
        "callgate",
        CALL_GATE,
        {
            "gate_cs": 0x08,
            "gate_ss": 0x10,
            "gate_ret_cs": 0x1B,
            "gate_p0": 0x2222,
            "gate_p1": 0x1111,
            "gate_old_ss": 0x23,
            "gate_old_esp_delta": 0,
            "gate_frame_at_esp0": 0,
            "after_ret_cs": 0x1B,
            "after_ret_esp_delta": 0,
            "after_ret_eax": 0x600D,
            "int81_vec": 13,
            "int81_err": 0x81 * 8 + 2,
            "int13_vec": 13,
            "int13_err": 13 * 8 + 2,
        },
    )


# ---- CPUID, MSRs, TSC ---------------------------------------------------------------------------
CPUID = r"""
main:
        xorl %eax, %eax
        cpuid
        REPORT max_leaf, %eax
        REPORT vendor0, %ebx
        REPORT vendor1, %edx
        REPORT vendor2, %ecx
        movl $1, %eax
        cpuid
        REPORT sig, %eax
        REPORT ebx1, %ebx
        REPORT ecx1, %ecx
        REPORT edx1, %edx
        movl $7, %eax
        xorl %ecx, %ecx
        cpuid
        REPORT ebx7, %ebx
        movl $0x80000000, %eax
        cpuid
        REPORT max_ext, %eax
        movl $0x80000002, %eax
        cpuid
        REPORT brand0, %eax
        REPORT brand1, %ebx
        ret
"""


def test_cpuid(tmp_path: Path) -> None:
    got = check(
        tmp_path,
        "cpuid",
        CPUID,
        {
            "max_leaf": 7,
            "vendor0": 0x756E6547,
            "vendor1": 0x49656E69,
            "vendor2": 0x6C65746E,
            "sig": 0x633,
            "ebx1": 0,
            "ecx1": 0,
            "ebx7": (1 << 7) | (1 << 20),
            "max_ext": 0x80000008,  # leaf 0x80000008: address sizes (long mode)
            "brand0": int.from_bytes(b"gdbe", "little"),
            "brand1": int.from_bytes(b"mu v", "little"),
        },
    )
    edx = got["edx1"]
    for bit in (0, 2, 3, 4, 5, 8, 9, 11, 13, 15):  # FPU DE PSE TSC MSR CX8 APIC SEP PGE CMOV
        assert edx >> bit & 1, bit
    for bit in (1, 23, 24, 25, 26):  # VME MMX FXSR SSE SSE2: not emulated
        assert not edx >> bit & 1, bit


MSRS = r"""
main:
        movl $0x174, %ecx               /* SYSENTER_CS keeps 16 bits */
        movl $0x12340008, %eax
        xorl %edx, %edx
        wrmsr
        xorl %eax, %eax
        rdmsr
        REPORT sysenter_cs, %eax
        movl $0x176, %ecx
        movl $0xc0101234, %eax
        wrmsr
        xorl %eax, %eax
        rdmsr
        REPORT sysenter_eip, %eax
        movl $0x277, %ecx               /* PAT round trip */
        movl $0x00070406, %eax
        movl $0x00070106, %edx
        wrmsr
        xorl %eax, %eax
        xorl %edx, %edx
        rdmsr
        REPORT pat_lo, %eax
        REPORT pat_hi, %edx
        EXPECT_FAULT 1f
        movl $0x277, %ecx               /* PAT type 2 is reserved: #GP(0) */
        movl $0x02, %eax
        xorl %edx, %edx
        wrmsr
1:      REPORT pat_bad_vec, last_vec
        REPORT pat_bad_err, last_err
        EXPECT_FAULT 2f
        movl $0x12345, %ecx             /* no such MSR */
        rdmsr
2:      REPORT unknown_rd_vec, last_vec
        REPORT unknown_rd_err, last_err
        EXPECT_FAULT 3f
        wrmsr
3:      REPORT unknown_wr_vec, last_vec
        movl $0x10, %ecx                /* TSC write: rdtsc continues from the value */
        movl $5, %edx
        xorl %eax, %eax
        wrmsr
        rdtsc
        REPORT tsc_hi, %edx
        movl %eax, %ebx
        rdtsc
        subl %ebx, %eax
        REPORT tsc_delta_positive, %eax
        ret
"""


def test_rdmsr_wrmsr_round_trip_and_unknown_msr(tmp_path: Path) -> None:
    got = check(
        tmp_path,
        "msrs",
        MSRS,
        {
            "sysenter_cs": 0x0008,
            "sysenter_eip": 0xC0101234,
            "pat_lo": 0x00070406,
            "pat_hi": 0x00070106,
            "pat_bad_vec": 13,
            "pat_bad_err": 0,
            "unknown_rd_vec": 13,
            "unknown_rd_err": 0,
            "unknown_wr_vec": 13,
            "tsc_hi": 5,
        },
    )
    assert 0 < got["tsc_delta_positive"] < 1000


def test_tsc_counts_retired_instructions(tmp_path: Path) -> None:
    """rdtsc is exact (the instruction count) even in the middle of a hot TB."""
    snippet = r"""
main:
        movl $200, %ecx
1:      rdtsc
        movl %eax, %ebx
        nop
        nop
        rdtsc
        subl %ebx, %eax
        cmpl $4, %eax                   /* rdtsc, movl, nop, nop retired in between */
        jne 2f
        decl %ecx
        jnz 1b
2:      REPORT left, %ecx
        REPORT delta, %eax
        ret
"""
    check(tmp_path, "tsc", snippet, {"left": 0, "delta": 4})


# ---- paging: invlpg ----------------------------------------------------------------------------
INVLPG = r"""
        .set PD, 0x300000               /* below 4 MiB: identity-mapped */
        .set PT0, 0x301000
        .set PT1, 0x302000
        .set FA, 0x310000
        .set FB, 0x311000
        .set V, 0x40000000
main:
        movl $0xaaaa0001, FA
        movl $0xbbbb0002, FB
        movl $PD, %edi                  /* clear the directory */
        xorl %eax, %eax
        movl $1024, %ecx
        rep stosl
        movl $PT0, %edi                 /* identity map 0..4 MiB */
        movl $3, %eax
        movl $1024, %ecx
1:      movl %eax, (%edi)
        addl $4096, %eax
        addl $4, %edi
        decl %ecx
        jnz 1b
        movl $(PT0 + 3), PD
        movl $PT1, %edi
        xorl %eax, %eax
        movl $1024, %ecx
        rep stosl
        movl $(PT1 + 3), PD + (V >> 22) * 4
        movl $(FA + 3), PT1
        movl $PD, %eax
        movl %eax, %cr3
        movl %cr0, %eax
        orl $0x80000000, %eax
        movl %eax, %cr0
        movl V, %eax
        REPORT before, %eax
        movl $(FB + 3), PT1             /* remap; the old entry may linger until invlpg */
        invlpg V
        movl V, %eax
        REPORT after_invlpg, %eax
        movl $(FA + 3), PT1
        xorl %ebx, %ebx
        invlpg (%ebx)                   /* another page: V keeps FB (gdbemu's TLB, and QEMU's) */
        movl V, %eax
        REPORT other_page, %eax
        movl $V, %ebx
        invlpg (%ebx)
        movl V, %eax
        REPORT after_invlpg_reg, %eax
        movl %cr0, %eax
        andl $0x7fffffff, %eax
        movl %eax, %cr0
        ret
"""


def test_invlpg_makes_a_changed_pte_visible(tmp_path: Path) -> None:
    check(
        tmp_path,
        "invlpg",
        INVLPG,
        {
            "before": 0xAAAA0001,
            "after_invlpg": 0xBBBB0002,
            "other_page": 0xBBBB0002,
            "after_invlpg_reg": 0xAAAA0001,
        },
    )


SMAP = (
    INVLPG.split("main:")[0]
    + r"""
main:
        movl $0xaaaa0001, FA
        movl $PD, %edi
        xorl %eax, %eax
        movl $1024, %ecx
        rep stosl
        movl $PT0, %edi
        movl $3, %eax
        movl $1024, %ecx
1:      movl %eax, (%edi)
        addl $4096, %eax
        addl $4, %edi
        decl %ecx
        jnz 1b
        movl $(PT0 + 7), PD
        movl $PT1, %edi
        xorl %eax, %eax
        movl $1024, %ecx
        rep stosl
        movl $(PT1 + 7), PD + (V >> 22) * 4
        movl $(FA + 7), PT1             /* a user page */
        movl $PD, %eax
        movl %eax, %cr3
        movl %cr4, %eax
        orl $0x200000, %eax             /* CR4.SMAP */
        movl %eax, %cr4
        movl %cr0, %eax
        orl $0x80000000, %eax
        movl %eax, %cr0
        EXPECT_FAULT 2f
        movl V, %eax                    /* supervisor read of a user page: #PF */
2:      REPORT smap_vec, last_vec
        REPORT smap_err, last_err
        stac                            /* AC=1: allowed */
        movl V, %eax
        REPORT stac_read, %eax
        clac
        EXPECT_FAULT 3f
        movl V, %eax
3:      REPORT clac_vec, last_vec
        movl %cr0, %eax
        andl $0x7fffffff, %eax
        movl %eax, %cr0
        movl %cr4, %eax
        andl $~0x200000, %eax
        movl %eax, %cr4
        ret
"""
)


def test_smap_with_stac_clac(tmp_path: Path) -> None:
    check(tmp_path, "smap", SMAP, {"smap_vec": 14, "smap_err": 1, "stac_read": 0xAAAA0001, "clac_vec": 14})


# ---- LAR, LSL, VERR, VERW, ARPL ---------------------------------------------------------------
PROBES = r"""
.macro PROBE insn, sel, name
        movl $0xdeadbeef, %eax
        movl $\sel, %ecx
        \insn %ecx, %eax
        setz %bl
        movzbl %bl, %ebx
        REPORT \name\()_zf, %ebx
        REPORT \name, %eax
.endm
.macro VERIFY insn, sel, name
        movl $\sel, %ecx
        \insn %cx
        setz %bl
        movzbl %bl, %ebx
        REPORT \name, %ebx
.endm
main:
        PROBE lar, 0x08, lar_kcode
        PROBE lar, 0x20, lar_udata
        PROBE lar, 0x28, lar_tss
        PROBE lar, 0x33, lar_gate
        PROBE lar, 0x00, lar_null
        PROBE lar, 0x1000, lar_beyond
        PROBE lar, 0x13, lar_rpl3_dpl0
        PROBE lar, 0x4b, lar_conf_rpl3
        PROBE lsl, 0x10, lsl_kdata
        PROBE lsl, 0x58, lsl_small
        PROBE lsl, 0x28, lsl_tss
        PROBE lsl, 0x30, lsl_gate
        movl $0xffff0000, %eax
        movw $0x08, %cx
        larw %cx, %ax
        REPORT lar16, %eax
        VERIFY verr, 0x08, verr_code
        VERIFY verr, 0x50, verr_xonly
        VERIFY verw, 0x08, verw_code
        VERIFY verw, 0x10, verw_data
        VERIFY verw, 0x13, verw_rpl3
        VERIFY verr, 0x28, verr_tss
        VERIFY verr, 0x1000, verr_beyond
        movl $0x10, %eax
        movl $0x23, %ecx
        arpl %cx, %ax
        setz %bl
        movzbl %bl, %ebx
        REPORT arpl_val, %eax
        REPORT arpl_zf, %ebx
        movw $0x13, scratch
        arpl %cx, scratch
        setz %bl
        movzbl %bl, %ebx
        movzwl scratch, %eax
        REPORT arpl_mem_val, %eax
        REPORT arpl_mem_zf, %ebx
        ret
"""


def test_lar_lsl_verr_verw_arpl(tmp_path: Path) -> None:
    check(
        tmp_path,
        "probes",
        PROBES,
        {
            "lar_kcode_zf": 1,
            "lar_kcode": 0x00C09B00,
            "lar_udata_zf": 1,
            "lar_udata": 0x00C0F200,
            "lar_tss_zf": 1,
            "lar_tss": 0x00008B00,
            "lar_gate_zf": 1,
            "lar_gate": 0x0010EC00,
            "lar_null_zf": 0,
            "lar_null": 0xDEADBEEF,
            "lar_beyond_zf": 0,
            "lar_beyond": 0xDEADBEEF,
            "lar_rpl3_dpl0_zf": 0,
            "lar_conf_rpl3_zf": 1,
            "lar_conf_rpl3": 0x00C09E00,
            "lsl_kdata_zf": 1,
            "lsl_kdata": 0xFFFFFFFF,
            "lsl_small_zf": 1,
            "lsl_small": 0xFFF,
            "lsl_tss_zf": 1,
            "lsl_tss": 0x67,
            "lsl_gate_zf": 0,
            "lsl_gate": 0xDEADBEEF,
            "lar16": 0xFFFF9B00,
            "verr_code": 1,
            "verr_xonly": 0,
            "verw_code": 0,
            "verw_data": 1,
            "verw_rpl3": 0,
            "verr_tss": 0,
            "verr_beyond": 0,
            "arpl_val": 0x13,
            "arpl_zf": 1,
            "arpl_mem_val": 0x13,
            "arpl_mem_zf": 0,
        },
    )


# ---- x87 executes; SSE: #UD; both #NM by CR0 -------------------------------------------------------------------
FPU = r"""
.macro TRY name, insns:vararg
        EXPECT_FAULT .Ltry\@
        \insns
        movl $-1, last_vec              /* no fault */
        movl $0, resume_eip
.Ltry\@:
        REPORT \name, last_vec
.endm
main:
        movl %cr0, %eax
        andl $~0xe, %eax                /* MP EM TS clear */
        movl %eax, %cr0
        TRY fninit_plain, fninit
        TRY fld_plain, fldl scratch
        TRY movaps_plain, movaps %xmm0, %xmm1
        TRY wait_plain, wait
        orl $8, %eax                    /* TS */
        movl %eax, %cr0
        TRY fninit_ts, fninit
        TRY fadd_ts, fadd %st(1), %st
        TRY movaps_ts, movaps %xmm0, %xmm1
        TRY pxor_ts, pxor %mm0, %mm1
        TRY fxsave_ts, fxsave scratch
        TRY wait_ts, wait
        orl $2, %eax                    /* MP and TS */
        movl %eax, %cr0
        TRY wait_mp_ts, wait
        clts
        TRY wait_after_clts, wait
        andl $~0xa, %eax
        orl $4, %eax                    /* EM */
        movl %eax, %cr0
        TRY fnstsw_em, fnstsw %ax
        TRY movaps_em, movaps %xmm0, %xmm1
        TRY emms_em, emms
        andl $~4, %eax
        movl %eax, %cr0
        TRY ud2, ud2
        ret
"""


def test_x87_and_sse_raise_ud_or_nm(tmp_path: Path) -> None:
    check(
        tmp_path,
        "fpu",
        FPU,
        {
            "fninit_plain": 0xFFFFFFFF,  # the x87 executes (ops/x87.py)
            "fld_plain": 0xFFFFFFFF,
            "movaps_plain": 6,
            "wait_plain": 0xFFFFFFFF,
            "fninit_ts": 7,
            "fadd_ts": 7,
            "movaps_ts": 6,
            "pxor_ts": 6,
            "fxsave_ts": 6,
            "wait_ts": 0xFFFFFFFF,
            "wait_mp_ts": 7,
            "wait_after_clts": 0xFFFFFFFF,
            "fnstsw_em": 7,
            "movaps_em": 6,
            "emms_em": 6,
            "ud2": 6,
        },
    )


# ---- double and triple faults -------------------------------------------------------------------
DOUBLE_FAULT = r"""
main:
        andb $0x7f, idt + 13*8 + 5      /* #GP gate not present */
        movl $df_handler, %eax          /* #DF: its own gate, straight to df_handler */
        movw %ax, idt + 8*8
        shrl $16, %eax
        movw %ax, idt + 8*8 + 6
        movw $0x1000, %ax
gp_here:
        movw %ax, %ds                   /* #GP -> #NP on its gate -> #DF */
        REPORT not_reached, $1
        ret
df_handler:
        REPORT df_err, (%esp)
        movl 4(%esp), %eax
        subl $gp_here, %eax
        REPORT df_eip_is_faulting_insn, %eax
        movb $0, %al
        jmp exit
"""


def test_double_fault_when_the_gp_gate_is_not_present(tmp_path: Path) -> None:
    got = check(tmp_path, "df", DOUBLE_FAULT, {"df_err": 0, "df_eip_is_faulting_insn": 0})
    assert "not_reached" not in got


def test_triple_fault_when_the_df_gate_is_missing_too(tmp_path: Path) -> None:
    snippet = r"""
main:
        andb $0x7f, idt + 13*8 + 5
        andb $0x7f, idt + 8*8 + 5
        movw $0x1000, %ax
        movw %ax, %ds
        REPORT not_reached, $1
        ret
"""
    stop, got, m = run(tmp_path, "triple", snippet)
    assert stop.kind == "triple_fault", stop
    assert "not_reached" not in got


def test_fault_delivering_a_page_fault_is_a_double_fault(tmp_path: Path) -> None:
    """#PF whose gate names a data segment: #GP while delivering #PF is #DF (SDM table 6-5); CR2 stays."""
    snippet = r"""
main:
        movl $df_handler, %eax
        movw %ax, idt + 8*8
        shrl $16, %eax
        movw %ax, idt + 8*8 + 6
        movw $SEL_KDATA, idt + 14*8 + 2 /* #PF gate -> a data segment */
        movl $0x801003, 0x800000        /* PDE 0 -> identity table at 0x801000 */
        movl $0x801000, %edi
        movl $3, %eax
        movl $1024, %ecx
1:      movl %eax, (%edi)
        addl $4096, %eax
        addl $4, %edi
        decl %ecx
        jnz 1b
        movl $0x800000, %eax
        movl %eax, %cr3
        movl %cr0, %eax
        orl $0x80000000, %eax
        movl %eax, %cr0
        movl 0x40001000, %eax           /* #PF -> #GP(0x11) on its gate -> #DF */
        REPORT not_reached, $1
        ret
df_handler:
        movl %cr2, %eax
        REPORT df_cr2, %eax
        REPORT df_err, (%esp)
        movb $0, %al
        jmp exit
"""
    got = check(tmp_path, "pfdf", snippet, {"df_cr2": 0x40001000, "df_err": 0})
    assert "not_reached" not in got


# ---- real mode: IVT, far call/ret, iret ----------------------------------------------------------
REAL_MODE = r"""
        .code16
        .globl _start
_start:
        xorw %ax, %ax
        movw %ax, %ds
        movw %ax, %ss
        movw $0x7000, %sp
        movw $handler, 0x21*4           /* IVT entry 0x21 -> 0000:handler */
        movw $0, 0x21*4 + 2
        movw $0x1234, %bx
        int $0x21
        movw %bx, 0x600                 /* handler doubled it */
        lcall $0x0000, $far_func
        movw %cx, 0x602
        ljmp $0x07c0, $(rebased - 0x7c00)
rebased:
        movw %cs, %ax
        movw %ax, 0x604
        ljmp $0x0000, $done
done:   movw %sp, 0x606
        movb $0, %al
        outb %al, $0xf4
        hlt
handler:
        addw %bx, %bx
        pushf
        popw %ax
        movw %ax, 0x608                 /* IF and TF clear inside */
        iret
far_func:
        movw $0x5678, %cx
        lret
"""


def test_real_mode_ivt_far_transfers(tmp_path: Path) -> None:
    elf = build(tmp_path, "real", REAL_MODE, ttext=0x7C00)
    m = Machine(32 << 20)
    entry = m.load_elf(str(elf))
    cpu = m.cpu
    from gdbemu.core.cpu import DESC_A, DESC_CS, DESC_P, DESC_R, DESC_S, DESC_W, SegmentCache

    cpu.cr[0] &= ~1
    cpu.segs[1] = SegmentCache(0, 0, 0xFFFF, DESC_P | DESC_S | DESC_CS | DESC_R | DESC_A)
    for seg in (0, 2, 3, 4, 5):
        cpu.segs[seg] = SegmentCache(0, 0, 0xFFFF, DESC_P | DESC_S | DESC_W | DESC_A)
    cpu.idtr_base, cpu.idtr_limit = 0, 0x3FF
    cpu.set_eflags(0x202)
    cpu.eip = entry
    stop = m.run(max_insns=10_000)
    assert stop.kind == "exit", stop
    mem = m.mem.read(0x600, 10)
    words = [int.from_bytes(mem[i : i + 2], "little") for i in range(0, 10, 2)]
    assert words[0] == 0x2468  # int 0x21 ran the handler
    assert words[1] == 0x5678  # lcall/lret
    assert words[2] == 0x07C0  # CS after the far jump
    assert words[3] == 0x7000  # stack balanced after int/iret and lcall/lret
    assert words[4] & 0x300 == 0  # IF, TF cleared by the interrupt
    assert cpu.get_eflags() & 0x200  # iret restored IF


# ---- exact instruction counts around traps ---------------------------------------------------------
TRAPS = r"""
        .globl _start
_start:
        movl $0x90000, %esp
        lgdt gdtd
        lidt idtd
        int3                            /* a trap: retires, then the handler runs */
        int $0x21                       /* gate not present: #NP, the int does not retire */
        .byte 0xf1                      /* icebp: #DB as a trap */
        movb $0, %al
        outb %al, $0xf4
h_iret: iret
h_np:   addl $4, %esp                   /* error code */
        addl $2, (%esp)                 /* skip the int $0x21 */
        iret
        .data
        .balign 8
gdt:    .quad 0, 0x00cf9a000000ffff, 0x00cf92000000ffff
gdtd:   .word 23
        .long gdt
        .balign 8
idt:    .fill 0x22, 8, 0
idtd:   .word 0x22 * 8 - 1
        .long idt
"""


@pytest.mark.parametrize("tier", [1, 2])
def test_traps_retire_and_faulting_int_does_not(tmp_path: Path, tier: int) -> None:
    """icount: int3 and icebp retire before their handler runs; an int whose delivery faults does not."""
    elf = build(tmp_path, "traps", TRAPS)
    nm = subprocess.run(["nm", str(elf)], capture_output=True, text=True, check=True).stdout
    syms = {p[2]: int(p[0], 16) for p in (line.split() for line in nm.splitlines()) if len(p) == 3}
    m = Machine(32 << 20)
    m.load_elf(str(elf))
    m.translator.force_tier = tier

    def gate(vector: int, handler: str, present: bool = True) -> None:
        off = syms[handler]
        lo = (off & 0xFFFF) | (0x08 << 16)
        hi = (off & 0xFFFF0000) | (0x8E00 if present else 0x0E00)
        m.mem.write(syms["idt"] + vector * 8, lo.to_bytes(4, "little") + hi.to_bytes(4, "little"))

    gate(3, "h_iret")
    gate(1, "h_iret")
    gate(0x21, "h_iret", present=False)
    gate(11, "h_np")
    stop = m.run(max_insns=1000)
    assert stop.kind == "exit", stop
    # movl lgdt lidt int3 iret | addl addl iret | icebp iret | movb outb
    assert m.cpu.icount == 12
