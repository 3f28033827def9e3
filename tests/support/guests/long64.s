/*
 * long64.s -- a multiboot v1 kernel that enters long mode itself, as hobby
 * kernels and Linux's 32-bit entry do, and checks the system side of x86-64
 * from inside: 4-level paging with 2 MiB and 1 GiB pages and a higher-half
 * alias, NX, 64-bit GDT/IDT/TSS (lgdt/sgdt 10-byte forms, 16-byte gates,
 * IST, RSP0), non-canonical #GP, CR8 and the APIC TPR, FS/GS_BASE,
 * KERNEL_GS_BASE and swapgs, rdtscp, far returns into compatibility mode,
 * ring 3 by iretq and by sysret (64-bit and compatibility), syscall through
 * LSTAR and CSTAR, int 0x80 and a 64-bit call gate from ring 3, faults in
 * ring 3 delivered on the RSP0 stack, and finally leaving long mode again.
 *
 * Output: "ok N name" / "not ok N name # got X want Y" lines and a final
 * "1..N" on COM1 (0x3F8, polled); exit through isa-debug-exit (0xF4) with
 * status 0 if every check passed, 1 if one failed, 2 on an unexpected
 * exception.  Built with `as --32` (the 64-bit code is in .code64 parts of
 * an ELF32 image: QEMU's multiboot loader takes ELF32 only) and run on
 * gdbemu and on qemu-system-x86_64 -cpu qemu64,+pdpe1gb,+rdtscp.
 *
 * Physical layout (32 MiB of RAM):
 *   0x100000  image (text, data, bss and stacks)
 *   0x400000  PML4, PDPT0, PD0, PT_NX, PDPT_HI (one page each)
 *   0x500000  data frame for the alias checks (in a 2 MiB page)
 *   0x600000  NX_PAGE (4 KiB pages of PT_NX: NX, then executable), 0x601000 not present
 *
 * Linear layout (4-level paging):
 *   0 .. 1 GiB              identity, 2 MiB pages (PD0), user-accessible;
 *                           0x600000 .. 0x7fffff through PT_NX (4 KiB pages)
 *   1 GiB .. 2 GiB          a 1 GiB page onto physical 0 (an alias)
 *   3 GiB .. 4 GiB          a 1 GiB identity page (the local APIC at 0xfee00000)
 *   0xffffffff80000000 ..   PD0 again through PML4[511]/PDPT_HI[510] (the higher half)
 */
        .set COM1,       0x3f8
        .set PORT_EXIT,  0xf4

        .set PML4,       0x400000
        .set PDPT0,      0x401000
        .set PD0,        0x402000
        .set PT_NX,      0x403000
        .set PDPT_HI,    0x404000
        .set DATA_FRAME, 0x500000
        .set NX_PAGE,    0x600000
        .set ALIAS_1G,   0x40000000
        .set HIGH,       0xffffffff80000000

        .set SEL_KCODE64, 0x08
        .set SEL_KDATA,   0x10
        .set SEL_UCODE32, 0x1b          /* STAR[63:48] = 0x1b: sysretl CS, +8 SS, +16 sysretq CS */
        .set SEL_UDATA,   0x23
        .set SEL_UCODE64, 0x2b
        .set SEL_KCODE32, 0x30
        .set SEL_TSS,     0x38          /* 16 bytes */
        .set SEL_GATE,    0x4b          /* 64-bit call gate, 16 bytes, DPL 3 */

        .set MSR_EFER,    0xc0000080
        .set MSR_STAR,    0xc0000081
        .set MSR_LSTAR,   0xc0000082
        .set MSR_CSTAR,   0xc0000083
        .set MSR_FMASK,   0xc0000084
        .set MSR_FS_BASE, 0xc0000100
        .set MSR_GS_BASE, 0xc0000101
        .set MSR_KGS_BASE, 0xc0000102
        .set MSR_TSC_AUX, 0xc0000103

/* ------------------------------------------------------------------ macros */
/* CHECK64 actual, expected, "name": anything pushq takes (register, $imm32, mem). */
.macro CHECK64 actual:req, expected:req, name:req
        .section .rodata
.Lck\@: .asciz "\name"
        .previous
        pushq \actual
        pushq \expected
        pushq %rsi
        leaq .Lck\@(%rip), %rsi
        call check64
        popq %rsi
        addq $16, %rsp
.endm

.macro CHECK32 actual:req, expected:req, name:req
        .section .rodata
.Lck\@: .asciz "\name"
        .previous
        pushl \actual
        pushl \expected
        pushl $.Lck\@
        call check32
.endm

/* EXPECT label: the next exception resumes at label (64-bit handler). */
.macro EXPECT label:req
        leaq \label(%rip), %rax
        movq %rax, resume_rip(%rip)
        movq $-1, exc_vec(%rip)
.endm

/* ------------------------------------------------------------------ 32-bit entry */
        .code32
        .text
        .balign 4
multiboot_header:
        .long 0x1BADB002, 0, -0x1BADB002

        .globl _start
_start:
        cli
        movl $stack_top, %esp
        movl %eax, mb_magic
        lgdt gdt_desc
        ljmp $SEL_KCODE32, $1f
1:      movw $SEL_KDATA, %ax
        movw %ax, %ds
        movw %ax, %es
        movw %ax, %fs
        movw %ax, %gs
        movw %ax, %ss
        cld
        movb $0xff, %al                 /* mask the PICs: ring 3 runs with IF=1 for a moment */
        outb %al, $0x21
        outb %al, $0xa1
        CHECK32 mb_magic, $0x2BADB002, "multiboot-magic"
        /* CPUID: long mode, NX, 1 GiB pages, RDTSCP, SYSCALL */
        movl $0x80000001, %eax
        cpuid
        andl $((1 << 29) | (1 << 27) | (1 << 26) | (1 << 20) | (1 << 11)), %edx
        CHECK32 %edx, $((1 << 29) | (1 << 27) | (1 << 26) | (1 << 20) | (1 << 11)), "cpuid-lm-rdtscp-1g-nx-syscall"

        /* ---- the 4-level tables */
        movl $PML4, %edi
        movl $(5 * 1024), %ecx
        xorl %eax, %eax
        rep stosl
        movl $(PDPT0 | 7), PML4
        movl $(PDPT_HI | 3), PML4 + 511 * 8
        movl $(PD0 | 7), PDPT0
        movl $(0x00000000 | 0x87), PDPT0 + 8            /* 1 GiB page: 1 GiB -> 0 */
        movl $(0xc0000000 | 0x83), PDPT0 + 24           /* 1 GiB page: 3 GiB identity */
        movl $(PD0 | 3), PDPT_HI + 510 * 8
        movl $PD0, %edi                                  /* 512 2 MiB pages: 0 .. 1 GiB */
        movl $0x87, %eax
        movl $512, %ecx
2:      movl %eax, (%edi)
        addl $0x200000, %eax
        addl $8, %edi
        decl %ecx
        jnz 2b
        movl $(PT_NX | 7), PD0 + 3 * 8                   /* 6 .. 8 MiB in 4 KiB pages */
        movl $PT_NX, %edi
        movl $(NX_PAGE | 7), %eax
        movl $512, %ecx
3:      movl %eax, (%edi)
        addl $0x1000, %eax
        addl $8, %edi
        decl %ecx
        jnz 3b
        movl $0x80000000, PT_NX + 4                      /* NX_PAGE: XD */
        movl $0, PT_NX + 8                               /* NX_PAGE + 0x1000: not present */
        movb $0xc3, NX_PAGE                              /* ret */

        /* ---- into long mode: PAE, CR3, EFER.LME (+NXE, SCE), then CR0.PG */
        movl %cr4, %eax
        orl $0x20, %eax
        movl %eax, %cr4
        movl $PML4, %eax
        movl %eax, %cr3
        movl $MSR_EFER, %ecx
        rdmsr
        orl $0x901, %eax
        wrmsr
        movl %cr0, %eax
        orl $0x80000000, %eax
        movl %eax, %cr0
        /* compatibility mode now: still 32-bit code, EFER.LMA set */
        movl $MSR_EFER, %ecx
        rdmsr
        CHECK32 %eax, $0xd01, "efer-lma-after-cr0-pg"
        ljmp $SEL_KCODE64, $long64

/* ------------------------------------------------------------------ 32-bit console */
putc32:
        pushl %edx
        pushl %eax
        movw $(COM1 + 5), %dx
1:      inb %dx, %al
        testb $0x20, %al
        jz 1b
        popl %eax
        movw $COM1, %dx
        outb %al, %dx
        popl %edx
        ret

puts32:
        pushl %eax
        pushl %esi
1:      lodsb
        testb %al, %al
        jz 2f
        call putc32
        jmp 1b
2:      popl %esi
        popl %eax
        ret

/* put_hex32(eax) */
put_hex32:
        pushal
        movl %eax, %edx
        movl $8, %ecx
1:      roll $4, %edx
        movl %edx, %eax
        andl $0xf, %eax
        movb hex_digits(%eax), %al
        call putc32
        decl %ecx
        jnz 1b
        popal
        ret

/* put_dec32(eax) */
put_dec32:
        pushal
        movl $10, %ebx
        xorl %ecx, %ecx
1:      xorl %edx, %edx
        divl %ebx
        pushl %edx
        incl %ecx
        testl %eax, %eax
        jnz 1b
2:      popl %eax
        addb $'0', %al
        call putc32
        decl %ecx
        jnz 2b
        popal
        ret

/* check32(name, expected, actual): stdcall, preserves registers and flags */
check32:
        pushfl
        pushal
        movl 40(%esp), %esi
        movl 48(%esp), %ebx
        movl 44(%esp), %ecx
        incl test_num
        cmpl %ecx, %ebx
        je 1f
        incl test_fail
        pushl %esi
        movl $s_not, %esi
        call puts32
        popl %esi
1:      pushl %esi
        movl $s_ok, %esi
        call puts32
        popl %esi
        movl test_num, %eax
        call put_dec32
        movb $' ', %al
        call putc32
        call puts32
        cmpl %ecx, %ebx
        je 2f
        pushl %esi
        movl $s_got, %esi
        call puts32
        movl %ebx, %eax
        call put_hex32
        movl $s_want, %esi
        call puts32
        movl %ecx, %eax
        call put_hex32
        popl %esi
2:      movb $'\n', %al
        call putc32
        popal
        popfl
        ret $12

/* finish32: the plan line, then exit 0 if every check passed, else 1 */
finish32:
        movl $s_plan, %esi
        call puts32
        movl test_num, %eax
        call put_dec32
        movb $'\n', %al
        call putc32
        xorl %eax, %eax
        cmpl $0, test_fail
        je exit32
        movl $1, %eax
exit32:
        outb %al, $PORT_EXIT
1:      cli
        hlt
        jmp 1b

/* ------------------------------------------------------------------ compatibility-mode pieces */
/* reached by lretq from 64-bit code: store CS and a 32-bit stack probe, ljmp back */
compat_probe:
        movw %cs, %ax
        movzwl %ax, %eax
        movl %eax, compat_cs
        pushl $0x12345678
        popl %eax
        movl %eax, compat_pop
        ljmp $SEL_KCODE64, $compat_back

/* ring-3 compatibility code, entered by sysretl: syscall from here goes through CSTAR */
user32_entry:
        movw %cs, %ax
        movzwl %ax, %eax
        movl %eax, user32_cs
        int $0x80                       /* a 64-bit handler; iretq back into compatibility mode */
        movw %cs, %ax
        movzwl %ax, %eax
        movl %eax, user32_cs_after_int
        movl $0x32, %edi
user32_syscall:
        syscall
        ud2

/* leaving long mode: 64-bit code jumps here (CS 0x30, compatibility mode) */
leave_long:
        movw $SEL_KDATA, %ax
        movw %ax, %ds
        movw %ax, %es
        movl %cr0, %eax
        andl $0x7fffffff, %eax
        movl %eax, %cr0                 /* paging off: EFER.LMA clears, legacy protected mode */
        movl $MSR_EFER, %ecx
        rdmsr
        CHECK32 %eax, $0x901, "efer-lma-clear-after-leaving"
        movl %cr4, %eax
        andl $~0x20, %eax
        movl %eax, %cr4
        movl $0x7f7f7f7f, %eax
        movl %eax, legacy_probe
        CHECK32 legacy_probe, $0x7f7f7f7f, "legacy-protected-mode-runs"
        jmp finish32

/* ------------------------------------------------------------------ 64-bit kernel */
        .code64
long64:
        movw $SEL_KDATA, %ax
        movw %ax, %ds
        movw %ax, %es
        movw %ax, %ss
        xorl %eax, %eax
        movw %ax, %fs
        movw %ax, %gs
        movl $stack_top, %esp
        movw %cs, %ax
        movzwl %ax, %eax
        CHECK64 %rax, $SEL_KCODE64, "cs-64-bit"
        leaq long64(%rip), %rax
        movl $long64, %edx
        CHECK64 %rax, %rdx, "rip-relative-lea"
        movabsq $0x1122334455667788, %r15
        movq %r15, %r8
        shrq $32, %r8
        CHECK64 %r8, $0x11223344, "r8-r15-64-bit"

        /* ---- GDT through the higher half: lgdt/sgdt 10-byte forms */
        lgdt gdt_desc64(%rip)
        sgdt sgdt_buf(%rip)
        movq sgdt_buf + 2(%rip), %rax
        movl $gdt, %edx
        orq $-0x80000000, %rdx          /* HIGH + gdt */
        CHECK64 %rax, %rdx, "sgdt-64-bit-base"
        movzwq sgdt_buf(%rip), %rax
        CHECK64 %rax, $(gdt_end - gdt - 1), "sgdt-limit"

        /* ---- IDT: 16-byte gates */
        call idt_init
        lidt idt_desc64(%rip)
        sidt sgdt_buf(%rip)
        movq sgdt_buf + 2(%rip), %rax
        leaq idt(%rip), %rdx
        CHECK64 %rax, %rdx, "sidt-64-bit-base"

        /* ---- 64-bit TSS: RSP0, IST1 */
        leaq tss(%rip), %rax
        movw %ax, gdt_tss + 2(%rip)
        shrq $16, %rax
        movb %al, gdt_tss + 4(%rip)
        movb %ah, gdt_tss + 7(%rip)
        shrq $16, %rax
        movl %eax, gdt_tss + 8(%rip)
        leaq rsp0_top(%rip), %rax
        movq %rax, tss + 4(%rip)
        leaq ist1_top(%rip), %rax
        movq %rax, tss + 0x24(%rip)
        leaq ist2_top(%rip), %rax
        movq %rax, tss + 0x2c(%rip)
        movw $SEL_TSS, %ax
        ltr %ax
        str %ax
        movzwl %ax, %eax
        CHECK64 %rax, $SEL_TSS, "ltr-16-byte-tss"
        movzbl gdt_tss + 5(%rip), %eax
        CHECK64 %rax, $0x8b, "tss-busy"

        call paging_checks
        call system_checks
        call compat_checks
        call user_checks

        /* ---- leave long mode through compatibility code */
        ljmp *leave_ptr(%rip)

/* ------------------------------------------------------------------ paging */
paging_checks:
        /* the higher half reads the same bytes as the identity map */
        movabsq $0x0123456789abcdef, %rax
        movq %rax, probe(%rip)
        movl $probe, %ebx
        orq $-0x80000000, %rbx          /* HIGH + probe */
        movq (%rbx), %rdx
        CHECK64 %rdx, probe(%rip), "higher-half-alias-read"
        /* 1 GiB page: write through the identity 2 MiB page, read through the alias and back */
        movq $0x5a5a5a5a, %rax
        movq %rax, DATA_FRAME
        movq ALIAS_1G + DATA_FRAME, %rdx
        CHECK64 %rdx, $0x5a5a5a5a, "1g-page-read"
        movq $0x3c3c3c3c, ALIAS_1G + DATA_FRAME + 8
        movq DATA_FRAME + 8, %rdx
        CHECK64 %rdx, $0x3c3c3c3c, "1g-page-write"
        /* code runs through the 1 GiB page and through the higher half (same frames, other pages) */
        leaq rip_probe(%rip), %rbx
        leaq ALIAS_1G(%rbx), %rax
        call *%rax
        leaq ALIAS_1G + 7(%rbx), %rdx
        CHECK64 %rax, %rdx, "1g-page-code"
        movq %rbx, %rax
        orq $-0x80000000, %rax
        call *%rax
        leaq 7(%rbx), %rdx
        orq $-0x80000000, %rdx
        CHECK64 %rax, %rdx, "higher-half-code"
        /* accessed and dirty in the 2 MiB and the 1 GiB leaves */
        movq PD0 + 2 * 8, %rax
        andq $0x60, %rax
        CHECK64 %rax, $0x60, "2m-leaf-accessed-dirty"
        movq PDPT0 + 8, %rax
        andq $0x60, %rax
        CHECK64 %rax, $0x60, "1g-leaf-accessed-dirty"
        movq PDPT0, %rax
        andq $0x60, %rax
        CHECK64 %rax, $0x20, "pdpte-accessed-not-dirty"
        /* NX: a call into an XD page faults with P and I/D, the page stays readable */
        EXPECT 1f
        movq %rsp, %r12
        movq $NX_PAGE, %rax
        call *%rax                      /* the call completes, the fetch at NX_PAGE faults */
1:      movq %r12, %rsp
        CHECK64 exc_vec(%rip), $14, "nx-fetch-faults"
        CHECK64 exc_err(%rip), $0x11, "nx-fetch-error-code"
        CHECK64 exc_cr2(%rip), $NX_PAGE, "nx-fetch-cr2"
        CHECK64 exc_rip(%rip), $NX_PAGE, "nx-fetch-rip"
        movzbl NX_PAGE, %eax
        CHECK64 %rax, $0xc3, "nx-page-readable"
        movl $0, PT_NX + 4
        movq $NX_PAGE, %rax
        invlpg (%rax)
        call *%rax
        CHECK64 $1, $1, "nx-cleared-runs"
        /* not present */
        EXPECT 2f
        movq NX_PAGE + 0x1000, %rax
2:      CHECK64 exc_vec(%rip), $14, "not-present-faults"
        CHECK64 exc_err(%rip), $0, "not-present-error-code"
        CHECK64 exc_cr2(%rip), $(NX_PAGE + 0x1000), "not-present-cr2"
        /* a write through a read-only 4 KiB page with CR0.WP */
        andl $~2, PT_NX + 2 * 8
        movq $(NX_PAGE + 0x2000), %rax
        invlpg (%rax)
        movq %cr0, %rax
        orq $0x10000, %rax
        movq %rax, %cr0
        EXPECT 3f
        movl $1, NX_PAGE + 0x2000
3:      CHECK64 exc_err(%rip), $3, "wp-write-error-code"
        /* non-canonical addresses: #GP(0) */
        EXPECT 4f
        movabsq $0x0000800000000000, %rax
        movq (%rax), %rbx
4:      CHECK64 exc_vec(%rip), $13, "non-canonical-gp"
        CHECK64 exc_err(%rip), $0, "non-canonical-gp-error-code"
        ret

/* rdmsr64(ecx): rax = the whole MSR */
rdmsr64:
        pushq %rdx
        rdmsr
        shlq $32, %rdx
        orq %rdx, %rax
        popq %rdx
        ret

/* rip_probe: rax = the address of the instruction after the lea (where this code runs) */
rip_probe:
        leaq 0(%rip), %rax
        ret

/* ------------------------------------------------------------------ system registers */
system_checks:
        /* CR8 is the TPR's priority class */
        movq $5, %rax
        movq %rax, %cr8
        movq %cr8, %rbx
        CHECK64 %rbx, $5, "cr8-read-back"
        movl $0xfee00080, %ebx          /* the local APIC's TPR, through the 3 GiB page */
        movl (%rbx), %eax
        CHECK64 %rax, $0x50, "cr8-is-apic-tpr"
        xorl %eax, %eax
        movq %rax, %cr8
        /* FS/GS bases by WRMSR, the segment-relative accesses use them */
        movabsq $0x1122334455667788, %rax
        movq %rax, fs_area + 8(%rip)
        leaq fs_area(%rip), %rax
        movq %rax, %rdx
        shrq $32, %rdx
        movl $MSR_FS_BASE, %ecx
        wrmsr
        movq %fs:8, %rbx
        movabsq $0x1122334455667788, %rax
        CHECK64 %rbx, %rax, "fs-base-access"
        movl $MSR_FS_BASE, %ecx
        rdmsr
        shlq $32, %rdx
        orq %rdx, %rax
        leaq fs_area(%rip), %rdx
        CHECK64 %rax, %rdx, "fs-base-rdmsr"
        /* swapgs exchanges GS_BASE and KERNEL_GS_BASE */
        movl $MSR_GS_BASE, %ecx
        movl $0x1000, %eax
        xorl %edx, %edx
        wrmsr
        movl $MSR_KGS_BASE, %ecx
        movl $0x2000, %eax
        wrmsr
        swapgs
        movl $MSR_GS_BASE, %ecx
        rdmsr
        CHECK64 %rax, $0x2000, "swapgs-gs-base"
        movl $MSR_KGS_BASE, %ecx
        rdmsr
        CHECK64 %rax, $0x1000, "swapgs-kernel-gs-base"
        /* a non-canonical base is #GP(0); an unknown MSR too */
        EXPECT 1f
        movl $MSR_FS_BASE, %ecx
        xorl %eax, %eax
        movl $0x8000, %edx
        wrmsr
1:      CHECK64 exc_vec(%rip), $13, "wrmsr-non-canonical-gp"
        EXPECT 2f
        movl $0xc0001234, %ecx
        rdmsr
2:      CHECK64 exc_vec(%rip), $13, "rdmsr-unknown-gp"
        /* the MSRs a 64-bit kernel reads at boot, as QEMU's qemu64 has them after its firmware */
        movl $0x277, %ecx
        call rdmsr64
        movabsq $0x0007040600070406, %rdx
        CHECK64 %rax, %rdx, "msr-pat"
        movl $0xfe, %ecx
        call rdmsr64
        CHECK64 %rax, $0x508, "msr-mtrrcap"
        movl $0x2ff, %ecx
        call rdmsr64
        CHECK64 %rax, $0xc06, "msr-mtrr-def-type"
        movl $0x201, %ecx
        call rdmsr64
        movabsq $0xff80000800, %rdx     /* UC from 2 GiB to 4 GiB, MAXPHYADDR 40 */
        CHECK64 %rax, %rdx, "msr-mtrr-physmask0"
        movl $0x1a0, %ecx
        call rdmsr64
        CHECK64 %rax, $1, "msr-misc-enable"
        movl $0x1b, %ecx
        call rdmsr64
        movl $0xfee00900, %edx
        CHECK64 %rax, %rdx, "msr-apic-base"
        /* rdtscp: ECX = TSC_AUX, the counter moves forward */
        movl $MSR_TSC_AUX, %ecx
        movl $0x1234, %eax
        xorl %edx, %edx
        wrmsr
        rdtscp
        shlq $32, %rdx
        orq %rdx, %rax
        movq %rax, %r9
        CHECK64 %rcx, $0x1234, "rdtscp-aux"
        rdtscp
        shlq $32, %rdx
        orq %rdx, %rax
        cmpq %r9, %rax
        seta %al
        movzbl %al, %eax
        CHECK64 %rax, $1, "rdtscp-monotonic"
        /* IST1: int $0x81 at CPL 0 runs on the IST stack, aligned to 16 bytes */
        movq %rsp, %r12
        int $0x81
        CHECK64 %rsp, %r12, "ist-iretq-restores-rsp"
        leaq ist1_top - 40(%rip), %rax
        CHECK64 ist_rsp(%rip), %rax, "ist-stack-used"
        /* #DF on IST2: a #PF whose gate is not present raises #NP, contributory after a #PF: #DF */
        leaq idt + 14 * 16 + 5(%rip), %rbx
        andb $0x7f, (%rbx)
        EXPECT 5f
        movq %rsp, %r12
6:      movq NX_PAGE + 0x1000, %rax
5:      movq %r12, %rsp
        orb $0x80, (%rbx)
        CHECK64 exc_vec(%rip), $8, "df-vector"
        CHECK64 exc_err(%rip), $0, "df-error-code"
        leaq 6b(%rip), %rax
        CHECK64 exc_rip(%rip), %rax, "df-rip-is-the-faulting-instruction"
        CHECK64 df_on_ist2(%rip), $1, "df-on-ist2"
        /* a hardware interrupt in long mode: the PIT through the 8259 at vector 0x20 */
        movb $0x11, %al
        outb %al, $0x20
        outb %al, $0xa0
        movb $0x20, %al
        outb %al, $0x21
        movb $0x28, %al
        outb %al, $0xa1
        movb $0x04, %al
        outb %al, $0x21
        movb $0x02, %al
        outb %al, $0xa1
        movb $0x01, %al
        outb %al, $0x21
        outb %al, $0xa1
        movb $0xfe, %al                 /* only IRQ0 */
        outb %al, $0x21
        movb $0xff, %al
        outb %al, $0xa1
        sti
        hlt
7:      cli
        movb $0xff, %al
        outb %al, $0x21
        CHECK64 irq_count(%rip), $1, "irq0-delivered-in-long-mode"
        leaq 7b(%rip), %rax
        CHECK64 irq_rip(%rip), %rax, "irq0-frame-rip-after-hlt"
        /* int $0x80 at CPL 0: a same-level frame, SS:RSP pushed too */
        int $0x80
        CHECK64 int80_cs(%rip), $SEL_KCODE64, "int80-ring0-cs"
        CHECK64 int80_ss(%rip), $SEL_KDATA, "int80-ring0-ss"
        ret

/* ------------------------------------------------------------------ compatibility mode */
compat_checks:
        pushq $SEL_KCODE32
        leaq compat_probe(%rip), %rax
        pushq %rax
        lretq
compat_back:
        movw $SEL_KDATA, %ax            /* (SS was kept; reload it as 64-bit code does) */
        movw %ax, %ss
        CHECK64 compat_cs(%rip), $SEL_KCODE32, "lretq-to-compat-cs"
        CHECK64 compat_pop(%rip), $0x12345678, "compat-stack"
        ret

/* ------------------------------------------------------------------ ring 3 */
user_checks:
        /* syscall/sysret MSRs; the per-CPU area is found through swapgs */
        movl $MSR_STAR, %ecx
        xorl %eax, %eax
        movl $((SEL_UCODE32 << 16) | SEL_KCODE64), %edx
        wrmsr
        movl $MSR_LSTAR, %ecx
        leaq syscall64(%rip), %rax
        movq %rax, %rdx
        shrq $32, %rdx
        wrmsr
        movl $MSR_CSTAR, %ecx
        leaq syscall32(%rip), %rax
        movq %rax, %rdx
        shrq $32, %rdx
        wrmsr
        movl $MSR_FMASK, %ecx
        movl $0x47700, %eax             /* TF IF DF IOPL NT AC */
        xorl %edx, %edx
        wrmsr
        movl $MSR_GS_BASE, %ecx         /* kernel GS: the per-CPU area */
        leaq percpu(%rip), %rax
        movq %rax, %rdx
        shrq $32, %rdx
        wrmsr
        movl $MSR_KGS_BASE, %ecx        /* user GS: user_area */
        leaq user_area(%rip), %rax
        movq %rax, %rdx
        shrq $32, %rdx
        wrmsr
        /* the 64-bit call gate: 0x08:gate_target, DPL 3 */
        leaq gate_target(%rip), %rax
        movw %ax, gdt_gate(%rip)
        shrq $16, %rax
        movw %ax, gdt_gate + 6(%rip)
        shrq $16, %rax
        movl %eax, gdt_gate + 8(%rip)

        /* ---- ring 3 by iretq */
        movq %rsp, kernel_rsp(%rip)
        leaq user64_entry(%rip), %rax
        leaq user_stack_top(%rip), %rbx
        pushq $SEL_UDATA
        pushq %rbx
        pushq $0x2
        pushq $SEL_UCODE64
        pushq %rax
        swapgs                          /* GS = user_area while in ring 3 */
        iretq
user_done:                              /* syscall 0 lands here, at CPL 0, on the kernel stack */
        CHECK64 user_cs(%rip), $SEL_UCODE64, "user-cs-ring3"
        CHECK64 user_ss(%rip), $SEL_UDATA, "user-ss-ring3"
        CHECK64 user_gs_read(%rip), $0x7777, "user-gs-base"
        CHECK64 sys_arg(%rip), $0x64, "syscall-argument"
        CHECK64 sys_rcx_ok(%rip), $1, "syscall-rcx-is-return-rip"
        CHECK64 sys_r11(%rip), $0x40003, "syscall-r11-is-rflags"
        CHECK64 sys_flags(%rip), $0x3, "syscall-fmask-applied"
        CHECK64 sys_cs(%rip), $SEL_KCODE64, "syscall-cs"
        CHECK64 sys_ss(%rip), $SEL_KDATA, "syscall-ss"
        CHECK64 after_sysret(%rip), $0x64, "sysret-back-in-ring3"
        CHECK64 user_flags(%rip), $0x40003, "sysret-rflags-from-r11"
        CHECK64 gp3_vec(%rip), $13, "cli-ring3-gp"
        CHECK64 gp3_err(%rip), $0, "cli-ring3-gp-error-code"
        CHECK64 gp3_cs(%rip), $SEL_UCODE64, "cli-ring3-frame-cs"
        CHECK64 gp3_ss(%rip), $SEL_UDATA, "cli-ring3-frame-ss"
        CHECK64 gp3_on_rsp0(%rip), $1, "cli-ring3-on-rsp0-stack"
        CHECK64 int80_cs(%rip), $SEL_UCODE64, "int80-ring3-frame-cs"
        CHECK64 int80_ss(%rip), $SEL_UDATA, "int80-ring3-frame-ss"
        CHECK64 int80_handler_ss(%rip), $0, "int80-ring3-null-ss"
        CHECK64 gate_cs(%rip), $SEL_KCODE64, "call-gate-cs"
        CHECK64 gate_ss(%rip), $0, "call-gate-null-ss"
        CHECK64 gate_frame_cs(%rip), $SEL_UCODE64, "call-gate-frame-cs"
        CHECK64 gate_frame_ss(%rip), $SEL_UDATA, "call-gate-frame-ss"
        CHECK64 gate_back(%rip), $1, "call-gate-lretq-to-ring3"
        CHECK64 swapgs3_vec(%rip), $13, "swapgs-ring3-gp"

        /* ---- ring 3 compatibility code by sysretl; it comes back through CSTAR */
        movw $SEL_UDATA, %ax            /* compatibility code uses DS (iretq nulled it) */
        movw %ax, %ds
        movw %ax, %es
        movq %rsp, kernel_rsp(%rip)
        leaq user32_entry(%rip), %rcx
        movq $0x2, %r11
        leaq user_stack_top(%rip), %rsp
        swapgs
        sysretl
user32_done:
        CHECK64 user32_cs(%rip), $SEL_UCODE32, "sysretl-compat-cs"
        CHECK64 int80_cs(%rip), $SEL_UCODE32, "int80-from-compat-frame-cs"
        CHECK64 int80_ss(%rip), $SEL_UDATA, "int80-from-compat-frame-ss"
        CHECK64 user32_cs_after_int(%rip), $SEL_UCODE32, "iretq-to-compat-ring3"
        leaq user32_syscall + 2(%rip), %rax
        CHECK64 sys32_rcx(%rip), %rax, "cstar-syscall-rcx"
        CHECK64 sys32_arg(%rip), $0x32, "cstar-syscall-argument"
        ret

/* ring-3 64-bit code */
user64_entry:
        movw %cs, %ax
        movzwl %ax, %eax
        movq %rax, user_cs(%rip)
        movw %ss, %ax
        movzwl %ax, %eax
        movq %rax, user_ss(%rip)
        movq %gs:0, %rax
        movq %rax, user_gs_read(%rip)
        movl $1, %eax                   /* syscall 1: record rdi */
        movl $0x64, %edi
        pushq $0x40003                  /* AC and CF (IF is not ring 3's to set): R11 at the syscall */
        popfq
user_syscall1:
        syscall
user_after_syscall:
        movq %rdi, after_sysret(%rip)
        pushfq
        popq %rax
        movq %rax, user_flags(%rip)
        pushq $0x2
        popfq
        /* a privileged instruction in ring 3: #GP(0) on the RSP0 stack */
        leaq 1f(%rip), %rax
        movq %rax, resume_rip(%rip)
        cli
1:      int $0x80
        rex.W lcall *gate_ptr(%rip)
        movq $1, gate_back(%rip)
        leaq 2f(%rip), %rax
        movq %rax, resume_rip(%rip)
        swapgs
2:      movq exc_vec(%rip), %rax
        movq %rax, swapgs3_vec(%rip)
        xorl %eax, %eax                 /* syscall 0: back to the kernel for good */
        syscall
        ud2

/* LSTAR: the 64-bit syscall entry (swapgs, per-CPU stack, as a kernel does) */
syscall64:
        swapgs
        movq %rsp, %gs:8
        movq %gs:0, %rsp
        pushfq                          /* RFLAGS after SFMASK, before anything here changes it */
        popq %r8
        pushq %rcx
        pushq %r11
        movw %cs, %dx
        movzwl %dx, %edx
        movq %rdx, sys_cs(%rip)
        movw %ss, %dx
        movzwl %dx, %edx
        movq %rdx, sys_ss(%rip)
        testq %rax, %rax
        jz syscall_exit
        movq %r8, sys_flags(%rip)
        movq %rdi, sys_arg(%rip)
        movq %r11, sys_r11(%rip)
        leaq user_after_syscall(%rip), %rdx
        xorl %eax, %eax
        cmpq %rdx, %rcx
        sete %al
        movq %rax, sys_rcx_ok(%rip)
        popq %r11
        popq %rcx
        movq %gs:8, %rsp
        swapgs
        sysretq
syscall_exit:                           /* stay in ring 0 with the kernel GS */
        movq kernel_rsp(%rip), %rsp
        jmp user_done

/* CSTAR: syscall from compatibility mode */
syscall32:
        swapgs
        movq kernel_rsp(%rip), %rsp
        movl %ecx, %eax
        movq %rax, sys32_rcx(%rip)
        movl %edi, %eax
        movq %rax, sys32_arg(%rip)
        jmp user32_done

/* the 64-bit call gate's target: CPL 0, null SS, the caller's SS:RSP on the frame */
gate_target:
        movw %cs, %ax
        movzwl %ax, %eax
        movq %rax, gate_cs(%rip)
        movw %ss, %ax
        movzwl %ax, %eax
        movq %rax, gate_ss(%rip)
        movq 8(%rsp), %rax
        movq %rax, gate_frame_cs(%rip)
        movq 24(%rsp), %rax
        movq %rax, gate_frame_ss(%rip)
        lretq

/* ------------------------------------------------------------------ 64-bit console */
putc:
        pushq %rdx
        pushq %rax
        movw $(COM1 + 5), %dx
1:      inb %dx, %al
        testb $0x20, %al
        jz 1b
        popq %rax
        movw $COM1, %dx
        outb %al, %dx
        popq %rdx
        ret

puts:
        pushq %rax
        pushq %rsi
1:      lodsb
        testb %al, %al
        jz 2f
        call putc
        jmp 1b
2:      popq %rsi
        popq %rax
        ret

/* put_hex(rax): 16 hex digits */
put_hex:
        pushq %rax
        pushq %rcx
        pushq %rdx
        pushq %rbx
        movq %rax, %rdx
        movl $16, %ecx
        leaq hex_digits(%rip), %rbx
1:      rolq $4, %rdx
        movl %edx, %eax
        andl $0xf, %eax
        movb (%rbx,%rax), %al
        call putc
        decl %ecx
        jnz 1b
        popq %rbx
        popq %rdx
        popq %rcx
        popq %rax
        ret

/* put_dec(rax) */
put_dec:
        pushq %rax
        pushq %rbx
        pushq %rcx
        pushq %rdx
        movl $10, %ebx
        xorl %ecx, %ecx
1:      xorl %edx, %edx
        divq %rbx
        pushq %rdx
        incl %ecx
        testq %rax, %rax
        jnz 1b
2:      popq %rax
        addb $'0', %al
        call putc
        decl %ecx
        jnz 2b
        popq %rdx
        popq %rcx
        popq %rbx
        popq %rax
        ret

/* check64: rsi = name, 16(%rsp) = expected, 24(%rsp) = actual (see CHECK64) */
check64:
        pushfq
        pushq %rax
        pushq %rbx
        pushq %rcx
        movq 48(%rsp), %rcx             /* expected */
        movq 56(%rsp), %rbx             /* actual */
        incq test_num(%rip)
        cmpq %rcx, %rbx
        je 1f
        incq test_fail(%rip)
        pushq %rsi
        leaq s_not(%rip), %rsi
        call puts
        popq %rsi
1:      pushq %rsi
        leaq s_ok(%rip), %rsi
        call puts
        popq %rsi
        movq test_num(%rip), %rax
        call put_dec
        movb $' ', %al
        call putc
        call puts
        cmpq %rcx, %rbx
        je 2f
        pushq %rsi
        leaq s_got(%rip), %rsi
        call puts
        movq %rbx, %rax
        call put_hex
        leaq s_want(%rip), %rsi
        call puts
        movq %rcx, %rax
        call put_hex
        popq %rsi
2:      movb $'\n', %al
        call putc
        popq %rcx
        popq %rbx
        popq %rax
        popfq
        ret

/* ------------------------------------------------------------------ 64-bit IDT */
idt_init:
        leaq idt(%rip), %rdi
        leaq isr_table(%rip), %rsi
        xorl %ecx, %ecx
1:      movq (%rsi,%rcx,8), %rax
        movl $0x8e00, %edx              /* interrupt gate, DPL 0, IST 0 */
        cmpl $0x20, %ecx
        jne 2f
        movl $0xee00, %edx              /* slot 32 is vector 0x80: DPL 3 */
2:      cmpl $0x21, %ecx
        jne 3f
        movl $0x8e01, %edx              /* slot 33 is vector 0x81: IST1 */
3:      cmpl $8, %ecx
        jne 5f
        movl $0x8e02, %edx              /* #DF: IST2 */
5:      movl %ecx, %ebx
        cmpl $0x20, %ebx
        jb 4f
        addl $(0x80 - 0x20), %ebx
        cmpl $0x22, %ecx                /* slot 34 is vector 0x20 */
        jne 4f
        movl $0x20, %ebx
4:      shlq $4, %rbx
        addq %rdi, %rbx
        movw %ax, (%rbx)
        movw $SEL_KCODE64, 2(%rbx)
        movw %dx, 4(%rbx)
        shrq $16, %rax
        movw %ax, 6(%rbx)
        shrq $16, %rax
        movl %eax, 8(%rbx)
        movl $0, 12(%rbx)
        incl %ecx
        cmpl $35, %ecx
        jb 1b
        ret

.macro ISR_NOERR n
isr\n:  pushq $0
        pushq $\n
        jmp isr_common
.endm
.macro ISR_ERR n
isr\n:  pushq $\n
        jmp isr_common
.endm
        ISR_NOERR 0
        ISR_NOERR 1
        ISR_NOERR 2
        ISR_NOERR 3
        ISR_NOERR 4
        ISR_NOERR 5
        ISR_NOERR 6
        ISR_NOERR 7
        ISR_ERR 8
        ISR_NOERR 9
        ISR_ERR 10
        ISR_ERR 11
        ISR_ERR 12
        ISR_ERR 13
        ISR_ERR 14
        ISR_NOERR 15
        ISR_NOERR 16
        ISR_ERR 17
        ISR_NOERR 18
        ISR_NOERR 19
        ISR_NOERR 20
        ISR_NOERR 21
        ISR_NOERR 22
        ISR_NOERR 23
        ISR_NOERR 24
        ISR_NOERR 25
        ISR_NOERR 26
        ISR_NOERR 27
        ISR_NOERR 28
        ISR_NOERR 29
        ISR_NOERR 30
        ISR_NOERR 31

/* int $0x80: record the frame's CS/SS and the handler's SS, iretq */
isr_int80:
        pushq %rax
        movq 16(%rsp), %rax
        movq %rax, int80_cs(%rip)
        movq 40(%rsp), %rax
        movq %rax, int80_ss(%rip)
        movw %ss, %ax
        movzwl %ax, %eax
        movq %rax, int80_handler_ss(%rip)
        popq %rax
        iretq

/* IRQ0 (vector 0x20, slot 34): count it, note where it interrupted, EOI */
isr_irq0:
        pushq %rax
        incq irq_count(%rip)
        movq 8(%rsp), %rax
        movq %rax, irq_rip(%rip)
        movb $0x20, %al
        outb %al, $0x20
        popq %rax
        iretq

/* int $0x81 (IST1): record the stack pointer at entry */
isr_int81:
        movq %rsp, ist_rsp(%rip)
        iretq

/* Frame after the pushes below: 9 registers (72 bytes), vector, error code, RIP, CS, RFLAGS, RSP, SS */
        .set FR_VEC, 72
        .set FR_ERR, 80
        .set FR_RIP, 88
        .set FR_CS, 96
        .set FR_RSP, 112
        .set FR_SS, 120
isr_common:
        pushq %rax
        pushq %rcx
        pushq %rdx
        pushq %rsi
        pushq %rdi
        pushq %r8
        pushq %r9
        pushq %r10
        pushq %r11
        movq FR_VEC(%rsp), %rax
        movq %rax, exc_vec(%rip)
        movq FR_ERR(%rsp), %rax
        movq %rax, exc_err(%rip)
        movq FR_RIP(%rsp), %rax
        movq %rax, exc_rip(%rip)
        movq %cr2, %rax
        movq %rax, exc_cr2(%rip)
        cmpq $8, FR_VEC(%rsp)           /* #DF: is it on the IST2 stack? */
        jne 3f
        leaq ist2_top - 0x1000(%rip), %rax
        xorl %ecx, %ecx
        cmpq %rax, %rsp
        jb 4f
        leaq ist2_top(%rip), %rax
        cmpq %rax, %rsp
        jae 4f
        incl %ecx
4:      movq %rcx, df_on_ist2(%rip)
3:
        testb $3, FR_CS(%rsp)
        jz 1f
        /* from ring 3: record the frame for the user checks */
        movq FR_VEC(%rsp), %rax
        movq %rax, gp3_vec(%rip)
        movq FR_ERR(%rsp), %rax
        movq %rax, gp3_err(%rip)
        movq FR_CS(%rsp), %rax
        movq %rax, gp3_cs(%rip)
        movq FR_SS(%rsp), %rax
        movq %rax, gp3_ss(%rip)
        leaq rsp0_top - 0x1000(%rip), %rax
        xorl %ecx, %ecx
        cmpq %rax, %rsp
        jb 2f
        leaq rsp0_top(%rip), %rax
        cmpq %rax, %rsp
        jae 2f
        incl %ecx
2:      movq %rcx, gp3_on_rsp0(%rip)
1:      movq resume_rip(%rip), %rax
        testq %rax, %rax
        jz exc_unexpected
        movq %rax, FR_RIP(%rsp)
        movq $0, resume_rip(%rip)
        popq %r11
        popq %r10
        popq %r9
        popq %r8
        popq %rdi
        popq %rsi
        popq %rdx
        popq %rcx
        popq %rax
        addq $16, %rsp
        iretq

exc_unexpected:
        leaq s_unexpected(%rip), %rsi
        call puts
        movq FR_VEC(%rsp), %rax
        call put_hex
        movb $' ', %al
        call putc
        movq FR_ERR(%rsp), %rax
        call put_hex
        movb $' ', %al
        call putc
        movq FR_RIP(%rsp), %rax
        call put_hex
        movb $' ', %al
        call putc
        movq exc_cr2(%rip), %rax
        call put_hex
        movb $'\n', %al
        call putc
        movb $2, %al
        outb %al, $PORT_EXIT
1:      cli
        hlt
        jmp 1b

/* ------------------------------------------------------------------ data */
        .data
        .balign 16
gdt:
        .quad 0
        .quad 0x00af9a000000ffff        /* 0x08 64-bit code, DPL 0 */
        .quad 0x00cf92000000ffff        /* 0x10 data, DPL 0 */
        .quad 0x00cffa000000ffff        /* 0x18 32-bit code, DPL 3 */
        .quad 0x00cff2000000ffff        /* 0x20 data, DPL 3 */
        .quad 0x00affa000000ffff        /* 0x28 64-bit code, DPL 3 */
        .quad 0x00cf9a000000ffff        /* 0x30 32-bit code, DPL 0 */
gdt_tss:
        .quad 0x0000890000000067        /* 0x38 64-bit TSS (base filled in) */
        .quad 0
gdt_gate:
        .quad 0x0000ec0000080000        /* 0x48 64-bit call gate -> 0x08:gate_target, DPL 3 */
        .quad 0
gdt_end:

        .balign 4
        .word 0
gdt_desc:
        .word gdt_end - gdt - 1
        .long gdt
        .word 0
gdt_desc64:
        .word gdt_end - gdt - 1
        .long gdt + 0x80000000, 0xffffffff   /* HIGH + gdt */
        .word 0
idt_desc64:
        .word 256 * 16 - 1
        .long idt, 0
leave_ptr:
        .long leave_long
        .word SEL_KCODE32
gate_ptr:
        .quad 0
        .word SEL_GATE

        .balign 8
isr_table:
        .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
        .long isr\n, 0
        .endr
        .long isr_int80, 0, isr_int81, 0, isr_irq0, 0

percpu:                                 /* GS:0 kernel stack top, GS:8 the user RSP */
        .long syscall_stack_top, 0
        .quad 0
user_area:
        .quad 0x7777
fs_area:
        .quad 0, 0

hex_digits: .ascii "0123456789abcdef"
s_ok:       .asciz "ok "
s_not:      .asciz "not "
s_got:      .asciz " # got 0x"
s_want:     .asciz " want 0x"
s_plan:     .asciz "1.."
s_unexpected: .asciz "unexpected exception "

        .balign 8
mb_magic:   .quad 0
test_num:   .quad 0
test_fail:  .quad 0
resume_rip: .quad 0
exc_vec:    .quad 0
exc_err:    .quad 0
exc_rip:    .quad 0
exc_cr2:    .quad 0
probe:      .quad 0
sgdt_buf:   .quad 0, 0
compat_cs:  .quad 0
compat_pop: .quad 0
legacy_probe: .quad 0
ist_rsp:    .quad 0
df_on_ist2: .quad 0
int80_cs:   .quad 0
int80_ss:   .quad 0
int80_handler_ss: .quad 0
kernel_rsp: .quad 0
user_cs:    .quad 0
user_ss:    .quad 0
user_gs_read: .quad 0
user_flags: .quad 0
after_sysret: .quad 0
sys_arg:    .quad 0
sys_rcx_ok: .quad 0
sys_r11:    .quad 0
sys_flags:  .quad 0
sys_cs:     .quad 0
sys_ss:     .quad 0
gp3_vec:    .quad 0
gp3_err:    .quad 0
gp3_cs:     .quad 0
gp3_ss:     .quad 0
gp3_on_rsp0: .quad 0
gate_cs:    .quad 0
gate_ss:    .quad 0
gate_frame_cs: .quad 0
gate_frame_ss: .quad 0
gate_back:  .quad 0
swapgs3_vec: .quad 0
user32_cs:  .quad 0
user32_cs_after_int: .quad 0
irq_count:  .quad 0
irq_rip:    .quad 0
sys32_rcx:  .quad 0
sys32_arg:  .quad 0

        .bss
        .balign 4096
tss:        .skip 0x68
        .balign 4096
idt:        .skip 256 * 16
        .balign 16
            .skip 0x4000
stack_top:
            .skip 0x1000
rsp0_top:
            .skip 0x1000
ist1_top:
            .skip 0x1000
ist2_top:
            .skip 0x1000
syscall_stack_top:
            .skip 0x1000
user_stack_top:
