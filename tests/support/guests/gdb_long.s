/*
 * gdb_long.s -- a multiboot v1 kernel that starts in 32-bit protected mode and
 * switches to long mode itself, for the gdb session of tests/e2e/test_x64_gdb_e2e.py.
 *
 * Standalone (no lib.inc): GNU as --32 with .code64 for the 64-bit part, linked
 * at 0x100000 like the other guests.  What it does, with a label for gdb at
 * each stage:
 *
 *   entry32_bp   32-bit code: EAX = 0x2BADB002 from the loader; writes `phase` = 1
 *                (a watchpoint in 32-bit code) and runs `inc %eax; dec %eax`
 *                (0x40 0x48: REX prefixes in 64-bit code, so the disassembly
 *                mode shows);
 *   builds 4-level tables: PML4[0] and PML4[511] -> one PDPT whose entries 0
 *                and 510 -> one PD of two 2 MiB pages, so 0..4 MiB is mapped
 *                twice: identity and at 0xffffffff80000000 (a "kernel half");
 *                CR4.PAE, EFER.LME, CR0.PG|PE, a far jump to a 64-bit CS;
 *   long_bp      64-bit code: RAX and R8-R15 hold 64-bit values; stores
 *                `counter64` (a watchpoint in 64-bit code; 8 bytes);
 *   high_bp      the same code run at its alias in the kernel half
 *                (RIP = 0xffffffff80000000 + high_loop): three 64-bit
 *                increments of `counter64`, then `phase` = 2;
 *   the end      status 0 through isa-debug-exit (port 0xF4) if counter64 holds
 *                0x1122334455667788 + 3, else 1.
 */
        .set MB_MAGIC, 0x1BADB002
        .set MB_FLAGS, 0
        .set KERNEL_HALF, -0x80000000   /* 0xffffffff80000000 as a sign-extended imm32 */

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
entry32_bp:
        movl $1, phase
mode32_insns:
        inc %eax                        /* 0x40 */
        dec %eax                        /* 0x48 */
        mov %eax, saved_magic

        /* 4-level tables (page-aligned in .bss, zeroed by the loader) */
        mov $pdpt, %eax
        or $3, %eax
        mov %eax, pml4
        mov %eax, pml4 + 511 * 8
        mov $pd, %eax
        or $3, %eax
        mov %eax, pdpt
        mov %eax, pdpt + 510 * 8
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
        or $0x80000001, %eax            /* PG | PE: long mode is active (compatibility mode) */
        mov %eax, %cr0
before_ljmp:
        ljmp $0x08, $long_entry

        .code64
long_entry:
        mov $0x10, %eax
        mov %eax, %ds
        mov %eax, %es
        mov %eax, %ss
        mov $stack_top, %esp            /* zero-extends into RSP */
        movabs $0x1122334455667788, %rax
        movabs $0x8888888888888888, %r8
        movabs $0x9999999999999999, %r9
        movabs $0xaaaaaaaaaaaaaaaa, %r10
        movabs $0xbbbbbbbbbbbbbbbb, %r11
        movabs $0xcccccccccccccccc, %r12
        movabs $0xdddddddddddddddd, %r13
        movabs $0xeeeeeeeeeeeeeeee, %r14
        movabs $0xffffffffffffff0f, %r15
        mov $counter64, %ebx            /* (absolute disp32 needs a 64-bit relocation ELF32 lacks) */
        mov $phase, %esi
long_bp:
        mov %rax, (%rbx)
after_store:
        mov $high_loop, %eax
        mov $KERNEL_HALF, %rdx
        add %rdx, %rax
        jmp *%rax

high_loop:                              /* run at 0xffffffff80000000 + high_loop */
        mov $3, %ecx
1:
high_bp:
        incq (%rbx)
        dec %ecx
        jnz 1b
        movl $2, (%rsi)
        movabs $0x112233445566778b, %rdx /* status 0 if counter64 got its three increments, else 1 */
        xor %eax, %eax
        cmp %rdx, (%rbx)
        setne %al
        mov $0xf4, %dx
        out %eax, %dx                   /* isa-debug-exit */
        hlt
        jmp .

        .data
        .balign 8
gdt:
        .quad 0
        .quad 0x00209A0000000000        /* 0x08: 64-bit code (L=1, P, DPL 0) */
        .quad 0x00CF92000000FFFF        /* 0x10: flat data */
gdt_end:
gdt_ptr:
        .word gdt_end - gdt - 1
        .long gdt
        .balign 8
counter64:      .quad 0
phase:          .long 0
saved_magic:    .long 0

        .bss
        .balign 4096
pml4:   .skip 4096
pdpt:   .skip 4096
pd:     .skip 4096
        .skip 8192
stack_top:
