/*
 * gdb_sse.s -- a multiboot v1 kernel that loads known values into the x87,
 * SSE and MXCSR registers, for the gdb sessions of tests/e2e/test_sse_gdb.py.
 *
 * Standalone (no lib.inc): GNU as --32 with .code64 for the 64-bit part,
 * linked at 0x100000 like the other guests.  With a label for gdb at each stage:
 *
 *   loaded32     32-bit code: CR0.EM clear, CR0.MP|NE, CR4.OSFXSR|OSXMMEXCPT;
 *                xmm0-xmm7 = xmm_init[0..7], MXCSR = 0x9F80 (masks, FZ),
 *                x87: ST(0) = pi, ST(1) = 1.  gdb reads them, and writes some.
 *   checked32    the guest has stored what it sees after gdb's writes:
 *                out_xmm2, out_xmm3 (movdqu), out_mxcsr (stmxcsr, after a
 *                cvtss2si of xmm4's 2.75 into out_cvt under MXCSR's rounding),
 *                out_st0/out_st1 (fstpt).  Then, on a CPU without long mode
 *                (CPUID), it stops at done32.
 *   loaded64     with long mode: 4-level tables (identity, 2 MiB pages), EFER.LME,
 *                CR0.PG, a far jump to 64-bit code; xmm8-xmm15 = xmm_init[8..15],
 *                ST(0) = log2(10).  gdb reads and writes again.
 *   done64       out64: xmm15, xmm9, xmm1 (16 bytes each), MXCSR (+48), ST(0)
 *                as 80 bits (+64), cvtss2si of xmm4 (+80).
 */
        .set MB_MAGIC, 0x1BADB002
        .set MB_FLAGS, 0

        .text
        .code32
        .globl _start
        .balign 4
mb_header:
        .long MB_MAGIC
        .long MB_FLAGS
        .long -(MB_MAGIC + MB_FLAGS)

_start:
        cli
        mov $stack_top, %esp
        mov %cr0, %eax
        and $~0x0C, %eax                /* EM and TS clear */
        or $0x22, %eax                  /* MP | NE */
        mov %eax, %cr0
        mov %cr4, %eax
        or $0x600, %eax                 /* OSFXSR | OSXMMEXCPT */
        mov %eax, %cr4
        fninit
        mov $xmm_init, %ebx
        movdqu 0(%ebx), %xmm0
        movdqu 16(%ebx), %xmm1
        movdqu 32(%ebx), %xmm2
        movdqu 48(%ebx), %xmm3
        movdqu 64(%ebx), %xmm4
        movdqu 80(%ebx), %xmm5
        movdqu 96(%ebx), %xmm6
        movdqu 112(%ebx), %xmm7
        ldmxcsr mxcsr_init
        fld1
        fldpi                           /* ST(0) = pi, ST(1) = 1 */
        .globl loaded32
loaded32:
        nop
        cvtss2si %xmm4, %eax            /* 2.75: 3 to nearest, 2 toward zero */
        mov %eax, out_cvt
        movdqu %xmm2, out_xmm2
        movdqu %xmm3, out_xmm3
        stmxcsr out_mxcsr
        fstpt out_st0
        fstpt out_st1
        .globl checked32
checked32:
        nop
        mov $0x80000000, %eax
        cpuid
        cmp $0x80000001, %eax
        jb done32
        mov $0x80000001, %eax
        cpuid
        bt $29, %edx                    /* LM */
        jnc done32

        mov $pdpt, %eax
        or $3, %eax
        mov %eax, pml4
        mov $pd, %eax
        or $3, %eax
        mov %eax, pdpt
        movl $0x000083, pd              /* 0..2 MiB, P|W|PS */
        movl $0x200083, pd + 8          /* 2..4 MiB */
        mov $pml4, %eax
        mov %eax, %cr3
        mov %cr4, %eax
        or $0x20, %eax                  /* PAE */
        mov %eax, %cr4
        mov $0xC0000080, %ecx           /* EFER */
        rdmsr
        or $0x100, %eax                 /* LME */
        wrmsr
        lgdt gdt_ptr
        mov %cr0, %eax
        or $0x80000001, %eax            /* PG | PE */
        mov %eax, %cr0
        ljmp $0x08, $long_entry

        .globl done32
done32:
        hlt
        jmp done32

        .code64
long_entry:
        mov $0x10, %eax
        mov %eax, %ds
        mov %eax, %es
        mov %eax, %ss
        mov $stack_top, %esp
        mov $xmm_init, %ebx             /* (absolute disp32 needs a 64-bit relocation ELF32 lacks) */
        movdqu 128(%rbx), %xmm8
        movdqu 144(%rbx), %xmm9
        movdqu 160(%rbx), %xmm10
        movdqu 176(%rbx), %xmm11
        movdqu 192(%rbx), %xmm12
        movdqu 208(%rbx), %xmm13
        movdqu 224(%rbx), %xmm14
        movdqu 240(%rbx), %xmm15
        fldl2t                          /* ST(0) = log2(10) */
        .globl loaded64
loaded64:
        nop
        mov $out64, %ebx
        movdqu %xmm15, 0(%rbx)
        movdqu %xmm9, 16(%rbx)
        movdqu %xmm1, 32(%rbx)
        stmxcsr 48(%rbx)
        fstpt 64(%rbx)
        cvtss2si %xmm4, %eax
        mov %eax, 80(%rbx)
        .globl done64
done64:
        hlt
        jmp done64

        .data
        .balign 16
        .globl xmm_init
xmm_init:
        .long 0x03020100, 0x07060504, 0x0b0a0908, 0x0f0e0d0c          /* xmm0: bytes 0..15 */
        .long 1, -2, 3, 0x7fffffff                                      /* xmm1: v4_int32 */
        .long 0x3fc00000, 0xc0000000, 0x3e800000, 0x44800000            /* xmm2: {1.5, -2, 0.25, 1024} */
        .quad 0x400a000000000000, 0xbfe0000000000000                    /* xmm3: {3.25, -0.5} */
        .long 0x40300000, 0, 0, 0                                       /* xmm4: 2.75 */
        .quad 0x5555555555555555, 0x5555555555555555                    /* xmm5 */
        .quad 0x6666666666666666, 0x6666666666666666                    /* xmm6 */
        .quad 0x7777777777777777, 0xfedcba9876543210                    /* xmm7 */
        .quad 0x8888888888888888, 0x0000000000000008                    /* xmm8 */
        .quad 0x9999999999999999, 0x0000000000000009                    /* xmm9 */
        .quad 0xaaaaaaaaaaaaaaaa, 0x000000000000000a                    /* xmm10 */
        .quad 0xbbbbbbbbbbbbbbbb, 0x000000000000000b                    /* xmm11 */
        .quad 0xcccccccccccccccc, 0x000000000000000c                    /* xmm12 */
        .quad 0xdddddddddddddddd, 0x000000000000000d                    /* xmm13 */
        .quad 0xeeeeeeeeeeeeeeee, 0x000000000000000e                    /* xmm14 */
        .quad 0x0123456789abcdef, 0xfedcba9876543210                    /* xmm15 */
mxcsr_init:     .long 0x9f80                                            /* all masked, FZ */
        .balign 16
        .globl out_xmm2, out_xmm3, out_mxcsr, out_cvt, out_st0, out_st1, out64
out_xmm2:       .quad 0, 0
out_xmm3:       .quad 0, 0
out_st0:        .quad 0, 0
out_st1:        .quad 0, 0
out_mxcsr:      .long 0
out_cvt:        .long 0
        .balign 16
out64:          .skip 96
gdt:
        .quad 0
        .quad 0x00209A0000000000        /* 0x08: 64-bit code (L=1, P, DPL 0) */
        .quad 0x00CF92000000FFFF        /* 0x10: flat data */
gdt_end:
gdt_ptr:
        .word gdt_end - gdt - 1
        .long gdt

        .bss
        .balign 4096
pml4:   .skip 4096
pdpt:   .skip 4096
pd:     .skip 4096
        .skip 8192
stack_top:
