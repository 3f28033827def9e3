/*
 * exc_sysenter.s -- SYSENTER/SYSEXIT, the fast system call pair: a round trip
 * from ring 3, the segments and flags each side sees, and the #GP(0) cases.
 *
 * Why: 32-bit kernels (Linux's vsyscall page, the BSDs) enter through
 * SYSENTER as soon as CPUID says SEP.  SDM vol. 2 SYSENTER/SYSEXIT: CS comes
 * from IA32_SYSENTER_CS (RPL forced to 0), SS = CS + 8, ESP/EIP from the
 * other two MSRs, VM/IF/RF cleared; SYSEXIT goes to CS + 16 and SS + 24 with
 * RPL 3, ESP = ECX, EIP = EDX, EFLAGS untouched.  Neither reads the GDT:
 * the caches are loaded flat (base 0, 4 GiB) whatever the descriptors say.
 * #GP(0) when SYSENTER_CS is null, and for SYSEXIT at CPL > 0.
 */
        .include "exc_common.inc"

        .set MSR_CS,  0x174
        .set MSR_ESP, 0x175
        .set MSR_EIP, 0x176

/* SET_MSR msr, value */
.macro SET_MSR msr:req, value:req
        movl $\msr, %ecx
        movl \value, %eax
        xorl %edx, %edx
        wrmsr
.endm

main:
        call tss_init
        call hook_all_rec
        call pic_mask_all
        movl $1, %eax
        cpuid
        andl $(1 << 11), %edx
        CHECK_EQ %edx, $(1 << 11), "cpuid-sep"

        SET_MSR MSR_CS, $SEL_KCODE
        SET_MSR MSR_ESP, $sys_stack_top
        SET_MSR MSR_EIP, $sys_entry
        movl $MSR_EIP, %ecx
        rdmsr
        CHECK_EQ %eax, $sys_entry, "msr-eip-readback"

        /* ---- the round trip: ring 3 (IF=1) -> sysenter -> ring 0 -> sysexit -> ring 3 */
        USER u_call, 0x202
        CHECK_EQ k_cs, $SEL_KCODE, "sysenter-cs"
        CHECK_EQ k_ss, $SEL_KDATA, "sysenter-ss"
        CHECK_EQ k_esp, $sys_stack_top, "sysenter-esp"
        movl k_efl, %eax
        andl $(EFL_IF | EFL_RF), %eax
        CHECK_EQ %eax, $0, "sysenter-clears-if"
        CHECK_EQ k_ds, $SEL_UDATA, "sysenter-keeps-ds"
        CHECK_EQ k_ecx, $(ustack_top - 8), "sysenter-keeps-ecx"
        CHECK_EQ u_cs, $SEL_UCODE, "sysexit-cs"
        CHECK_EQ u_ss, $SEL_UDATA, "sysexit-ss"
        CHECK_EQ u_esp, $(ustack_top - 8), "sysexit-esp-from-ecx"
        movl u_efl, %eax
        andl $EFL_IF, %eax
        CHECK_EQ %eax, $0, "sysexit-keeps-eflags"
        CHECK_EQ u_val, $0x5a5a0001, "sysexit-user-runs"

        /* ---- RPL bits of SYSENTER_CS are ignored; the GDT is not read */
        SET_MSR MSR_CS, $0x33             /* 0x30 and 0x38 are null descriptors in this GDT */
        movl $0, u_val
        movl $0, k_ssval
        USER u_call
        CHECK_EQ k_cs, $0x30, "sysenter-cs-rpl-cleared"
        CHECK_EQ k_ss, $0x38, "sysenter-ss-is-cs-plus-8"
        CHECK_EQ k_ssval, $0x600df00d, "sysenter-ss-flat-whatever-the-gdt"
        CHECK_EQ u_cs, $0x43, "sysexit-cs-is-cs-plus-16"
        CHECK_EQ u_ss, $0x4b, "sysexit-ss-is-cs-plus-24"
        CHECK_EQ u_val, $0x5a5a0001, "sysexit-flat-user-runs"
        SET_MSR MSR_CS, $SEL_KCODE

        /* ---- sysenter from ring 0 is allowed too */
        movl %esp, saved_esp
        movl $k0_back, k0_target
        sysenter                        /* to sys_entry, which sees k0_target and comes back */
k0_back:
        movl saved_esp, %esp
        CHECK_EQ k_cs, $SEL_KCODE, "sysenter-from-ring0-cs"
        CHECK_EQ k_esp, $sys_stack_top, "sysenter-from-ring0-esp"
        movl $0, k0_target

        /* ---- #GP(0) */
        SET_MSR MSR_CS, $0
        REC_RESET
        USER u_sysenter
        UCHECK "sysenter-null-cs", $13, $0, $u_sysenter_f, $ustack_top
        SET_MSR MSR_CS, $0x3              /* only the RPL bits: bits 15:2 are zero */
        REC_RESET
        USER u_sysenter
        UCHECK "sysenter-null-cs-rpl3", $13, $0, $u_sysenter_f, $ustack_top
        SET_MSR MSR_CS, $SEL_KCODE

        REC_RESET
        USER u_sysexit
        UCHECK "sysexit-at-ring3", $13, $0, $u_sysexit_f, $ustack_top

        SET_MSR MSR_CS, $0
        REC_RESET
        movl $1f, resume_eip
        movl %esp, %ebx
k_sysexit:
        sysexit
1:      KCHECK "sysexit-null-cs", $13, $0, $k_sysexit, %ebx
        ret

/* ---------------------------------------------------------------- ring 0 entry */
sys_entry:
        movl %esp, %ss:k_esp            /* SS-relative: SS is flat even with a null descriptor */
        movl %ss:sys_probe, %eax
        movl %eax, %ss:k_ssval
        movl %cs, %eax
        movl %eax, %ss:k_cs
        movl %ss, %eax
        movl %eax, %ss:k_ss
        movl %ds, %eax
        movl %eax, %ss:k_ds
        movl %ecx, %ss:k_ecx
        pushfl
        popl %ss:k_efl
        movl %ss:k0_target, %eax
        testl %eax, %eax
        jz 1f
        jmp *%eax                       /* entered from ring 0: go back there */
1:      sysexit                         /* to EDX with ESP = ECX, at ring 3 */

/* ---------------------------------------------------------------- ring 3 */
u_call: pushl $0x1111
        pushl $0x2222
        movl %esp, %ecx
        movl $u_back, %edx
        sysenter
u_back: movl %cs, %eax
        movl %eax, %ss:u_cs
        movl %ss, %eax
        movl %eax, %ss:u_ss
        movl %esp, %ss:u_esp
        pushfl
        popl %ss:u_efl
        movl $0x5a5a0001, %ss:u_val
        int $0x80
u_sysenter:
        movl $1f, resume_eip
        movl $1f, %edx                  /* should it enter: sys_entry's sysexit comes back here */
        movl %esp, %ecx
u_sysenter_f:
        sysenter
1:      int $0x80
u_sysexit:
        movl $1f, resume_eip
u_sysexit_f:
        sysexit
1:      int $0x80

        .data
saved_esp: .long 0
k0_target: .long 0
sys_probe: .long 0x600df00d
k_esp: .long 0
k_ssval: .long 0
k_cs: .long 0
k_ss: .long 0
k_ds: .long 0
k_ecx: .long 0
k_efl: .long 0
u_cs: .long 0
u_ss: .long 0
u_esp: .long 0
u_efl: .long 0
u_val: .long 0
        .bss
        .balign 16
        .skip 1024
sys_stack_top:
        .text
