/*
 * exc_vectors.s -- every exception vector a kernel can provoke, with its
 * error code and the frame the CPU pushes, at ring 0 (same privilege: EFLAGS,
 * CS, EIP [, error code] on the current stack) and from ring 3 (to ring 0 on
 * TSS.SS0:ESP0, with the ring-3 SS:ESP pushed first).
 *
 * Why: an OS's exception entry code depends on exactly which vectors push an
 * error code, what it holds (a selector, 0, the page-fault bits), whether the
 * saved EIP is the faulting instruction (faults: #DE #BR #UD #NM #TS #NP #SS
 * #GP #PF #AC; #DF is an abort with EIP at the instruction whose fault could
 * not be delivered) or the next one (traps: #BP #OF, the single-step #DB),
 * and the frame layout for each privilege change (SDM vol. 3, 6.12.1, table
 * 6-1, 6.15).  #MC and NMI cannot be raised by this machine (no machine-check
 * architecture, no NMI source) and are not tested.
 *
 * Layout: paging on, 0..4 MiB identity-mapped and user-accessible, V_S a
 * supervisor-only page, V_NP not mapped.  GDT spares: 0x30 a not-present
 * ring-0 data segment (then a TSS descriptor whose limit is too small), 0x38 a
 * not-present ring-3 data segment.  IDT vectors 3 and 4 are DPL 3 (int3 and
 * into from ring 3).
 */
        .include "exc_common.inc"

        .set V_S,  0x40010000           /* supervisor-only page */
        .set V_NP, 0x40011000           /* not present */
        .set F_S,  FRAMES

        .set SEL_NP0, 0x30              /* not-present data, DPL 0 */
        .set SEL_NP3, 0x3b              /* not-present data, DPL 3 (0x38 | RPL 3) */
        .set SEL_SMALLTSS, 0x30         /* later: a TSS descriptor with limit 0x20, DPL 3 */

main:
        call tss_init
        call hook_all_rec
        movb $0xee, idt + 3*8 + 5       /* int3: DPL 3 */
        movb $0xee, idt + 4*8 + 5       /* into: DPL 3 */
        movl $0x0000ffff, gdt + 0x30
        movl $0x00cf1200, gdt + 0x34    /* 0x30: data, P=0, DPL 0 */
        movl $0x0000ffff, gdt + 0x38
        movl $0x00cf7200, gdt + 0x3c    /* 0x38: data, P=0, DPL 3 */
        call pt_reset
        movl $PT_LOW, %edi              /* the identity map is user-accessible */
        movl $1024, %ecx
1:      orl $PG_U, (%edi)
        addl $4, %edi
        decl %ecx
        jnz 1b
        movl $V_S, %eax
        movl $(F_S | PG_PW), %edx
        call map_page
        xorl %eax, %eax
        call paging_on

        /* ================================================== ring 0 */
        /* #DE: div by zero, a fault */
        REC_RESET
        movl $1f, resume_eip
        xorl %ecx, %ecx
        movl %esp, %ebx
k_de:   divl %ecx
1:      KCHECK "k-de", $0, $0, $k_de, %ebx
        movl rec_log+REC_EFL, %eax
        andl $EFL_RF, %eax
        CHECK_EQ %eax, $EFL_RF, "k-de-pushed-rf"

        /* #DB: single-step trap after the instruction, DR6.BS */
        REC_RESET
        movl $1f, resume_eip
        movl %esp, %ebx
        pushfl
        orl $EFL_TF, (%esp)
        popfl
k_db:   nop
1:      KCHECK "k-db", $1, $0, $(k_db + 1), %ebx
        movl rec_log+REC_DR6, %eax
        andl $0x400f, %eax
        CHECK_EQ %eax, $0x4000, "k-db-dr6-bs"
        movl rec_log+REC_EFL, %eax
        andl $(EFL_TF | EFL_RF), %eax
        CHECK_EQ %eax, $EFL_TF, "k-db-pushed-tf"

        /* #BP: int3, a trap */
        REC_RESET
        movl $1f, resume_eip
        movl %esp, %ebx
k_bp:   int3
1:      KCHECK "k-bp", $3, $0, $(k_bp + 1), %ebx

        /* #OF: into with OF=1, a trap */
        REC_RESET
        movl $1f, resume_eip
        movl %esp, %ebx
        movl $0x7fffffff, %eax
        addl $1, %eax
k_of:   into
1:      KCHECK "k-of", $4, $0, $(k_of + 1), %ebx
        /* into with OF=0: nothing */
        REC_RESET
        movl $1f, resume_eip
        xorl %eax, %eax
        into
1:      CHECK_EQ rec_n, $0, "k-into-of0-no-trap"

        /* #BR: bound out of range */
        REC_RESET
        movl $1f, resume_eip
        movl %esp, %ebx
        movl $20, %eax
k_br:   boundl %eax, bounds
1:      KCHECK "k-br", $5, $0, $k_br, %ebx

        /* #UD */
        REC_RESET
        movl $1f, resume_eip
        movl %esp, %ebx
k_ud:   ud2
1:      KCHECK "k-ud", $6, $0, $k_ud, %ebx

        /* #NM: x87 instruction with CR0.TS=1 */
        REC_RESET
        movl $1f, resume_eip
        movl %cr0, %eax
        orl $CR0_TS, %eax
        movl %eax, %cr0
        movl %esp, %ebx
k_nm:   fninit
1:      clts
        KCHECK "k-nm", $7, $0, $k_nm, %ebx

        /* #DF: #GP whose IDT entry is not present -> #NP during delivery -> #DF(0) */
        REC_RESET
        movl $1f, resume_eip
        andb $0x7f, idt + 13*8 + 5
        movw $0x80, %ax
        movl %esp, %ebx
k_df:   movw %ax, %fs                   /* #GP(0x80): beyond the GDT limit */
1:      orb $0x80, idt + 13*8 + 5
        KCHECK "k-df", $8, $0, $k_df, %ebx

        /* #NP: a not-present data segment into FS */
        REC_RESET
        movl $1f, resume_eip
        movw $SEL_NP0, %ax
        movl %esp, %ebx
k_np:   movw %ax, %fs
1:      KCHECK "k-np", $11, $SEL_NP0, $k_np, %ebx

        /* #SS: a not-present stack segment */
        REC_RESET
        movl $1f, resume_eip
        movw $SEL_NP0, %ax
        movl %esp, %ebx
k_ss:   movw %ax, %ss
1:      KCHECK "k-ss", $12, $SEL_NP0, $k_ss, %ebx
        movl %ss, %eax
        CHECK_EQ %eax, $SEL_KDATA, "k-ss-unchanged"

        /* #GP: a selector beyond the GDT limit */
        REC_RESET
        movl $1f, resume_eip
        movw $0x80, %ax
        movl %esp, %ebx
k_gp:   movw %ax, %fs
1:      KCHECK "k-gp", $13, $0x80, $k_gp, %ebx

        /* #PF: read of a not-present page */
        REC_RESET
        movl $1f, resume_eip
        movl %esp, %ebx
k_pf:   movl V_NP + 0x24, %eax
1:      KCHECK "k-pf", $14, $0, $k_pf, %ebx
        CHECK_EQ rec_log+REC_CR2, $(V_NP + 0x24), "k-pf-cr2"
        /* #PF: write to a not-present page */
        REC_RESET
        movl $1f, resume_eip
k_pfw:  movl %eax, V_NP + 0x124
1:      CHECK_EQ rec_log+REC_ERR, $2, "k-pf-write-err"
        CHECK_EQ rec_log+REC_EIP, $k_pfw, "k-pf-write-eip"

        /* #AC is never raised at ring 0, even with CR0.AM and EFLAGS.AC */
        movl %cr0, %eax
        orl $CR0_AM, %eax
        movl %eax, %cr0
        REC_RESET
        movl $1f, resume_eip
        pushfl
        orl $EFL_AC, (%esp)
        popfl
        movl misaligned, %eax
        pushfl
        andl $~EFL_AC, (%esp)
        popfl
1:      CHECK_EQ rec_n, $0, "k-ac-not-at-ring0"

        /* #TS: far jmp to a TSS whose limit is below 0x67 */
        movl $0x00000020, gdt + 0x30    /* limit 0x20, base 0 */
        movl $0x0000e900, gdt + 0x34    /* 32-bit TSS, available, DPL 3, present */
        REC_RESET
        movl $1f, resume_eip
        movl %esp, %ebx
k_ts:   ljmp $SEL_SMALLTSS, $0
1:      KCHECK "k-ts", $10, $SEL_SMALLTSS, $k_ts, %ebx
        str %eax
        CHECK_EQ %eax, $SEL_TSS, "k-ts-tr-unchanged"

        /* ================================================== ring 3 -> ring 0 */
        REC_RESET
        USER u_de
        UCHECK "u-de", $0, $0, $u_de_f, $ustack_top
        movl rec_log+REC_EFL, %eax
        andl $(EFL_IF | EFL_IOPL3), %eax
        CHECK_EQ %eax, $0, "u-de-pushed-if-iopl"

        REC_RESET
        USER u_db
        UCHECK "u-db", $1, $0, $(u_db_f + 1), $ustack_top
        movl rec_log+REC_DR6, %eax
        andl $0x400f, %eax
        CHECK_EQ %eax, $0x4000, "u-db-dr6-bs"

        REC_RESET
        USER u_bp
        UCHECK "u-bp", $3, $0, $(u_bp_f + 1), $ustack_top

        REC_RESET
        USER u_of
        UCHECK "u-of", $4, $0, $(u_of_f + 1), $ustack_top

        REC_RESET
        USER u_br
        UCHECK "u-br", $5, $0, $u_br_f, $ustack_top

        REC_RESET
        USER u_ud
        UCHECK "u-ud", $6, $0, $u_ud_f, $ustack_top

        movl %cr0, %eax
        orl $CR0_TS, %eax
        movl %eax, %cr0
        REC_RESET
        USER u_nm
        clts
        UCHECK "u-nm", $7, $0, $u_nm_f, $ustack_top

        andb $0x7f, idt + 13*8 + 5
        REC_RESET
        USER u_df
        orb $0x80, idt + 13*8 + 5
        UCHECK "u-df", $8, $0, $u_df_f, $ustack_top

        REC_RESET
        USER u_ts
        UCHECK "u-ts", $10, $SEL_SMALLTSS, $u_ts_f, $ustack_top

        REC_RESET
        USER u_np
        UCHECK "u-np", $11, $(SEL_NP3 & 0xfffc), $u_np_f, $ustack_top

        REC_RESET
        USER u_ss
        UCHECK "u-ss", $12, $(SEL_NP3 & 0xfffc), $u_ss_f, $ustack_top

        REC_RESET
        USER u_gp
        UCHECK "u-gp", $13, $0, $u_gp_f, $ustack_top
        REC_RESET
        USER u_gp_sel
        UCHECK "u-gp-sel", $13, $SEL_KDATA, $u_gp_sel_f, $ustack_top

        REC_RESET
        USER u_pf
        UCHECK "u-pf", $14, $5, $u_pf_f, $ustack_top
        CHECK_EQ rec_log+REC_CR2, $(V_S + 8), "u-pf-cr2"
        REC_RESET
        USER u_pfw
        UCHECK "u-pf-write", $14, $6, $u_pfw_f, $ustack_top
        CHECK_EQ rec_log+REC_CR2, $(V_NP + 0x10), "u-pf-write-cr2"

        REC_RESET
        USER u_ac
        UCHECK "u-ac", $17, $0, $u_ac_f, $ustack_top
        movl rec_log+REC_EFL, %eax
        andl $EFL_AC, %eax
        CHECK_EQ %eax, $EFL_AC, "u-ac-pushed-ac"
        /* CR0.AM=0: EFLAGS.AC alone does not check alignment */
        movl %cr0, %eax
        andl $~CR0_AM, %eax
        movl %eax, %cr0
        REC_RESET
        USER u_ac
        CHECK_EQ rec_n, $0, "u-ac-needs-cr0-am"
        ret

/* ---------------------------------------------------------------- ring 3 code */
u_de:   movl $1f, resume_eip
        xorl %ecx, %ecx
u_de_f: divl %ecx
1:      int $0x80
u_db:   movl $1f, resume_eip
        pushfl
        orl $EFL_TF, (%esp)
        popfl
u_db_f: nop
1:      int $0x80
u_bp:   movl $1f, resume_eip
u_bp_f: int3
1:      int $0x80
u_of:   movl $1f, resume_eip
        movl $0x7fffffff, %eax
        incl %eax
u_of_f: into
1:      int $0x80
u_br:   movl $1f, resume_eip
        movl $-1, %eax
u_br_f: boundl %eax, bounds
1:      int $0x80
u_ud:   movl $1f, resume_eip
u_ud_f: ud2
1:      int $0x80
u_nm:   movl $1f, resume_eip
u_nm_f: fninit
1:      int $0x80
u_df:   movl $1f, resume_eip
u_df_f: cli                             /* #GP(0) at IOPL 0, whose gate is not present */
1:      int $0x80
u_ts:   movl $1f, resume_eip
u_ts_f: ljmp $(SEL_SMALLTSS | 3), $0
1:      int $0x80
u_np:   movl $1f, resume_eip
        movw $SEL_NP3, %ax
u_np_f: movw %ax, %fs
1:      int $0x80
u_ss:   movl $1f, resume_eip
        movw $SEL_NP3, %ax
u_ss_f: movw %ax, %ss
1:      int $0x80
u_gp:   movl $1f, resume_eip
u_gp_f: cli
1:      int $0x80
u_gp_sel:
        movl $1f, resume_eip
        movw $SEL_KDATA, %ax
u_gp_sel_f:
        movw %ax, %fs                   /* a ring-0 data segment at CPL 3 */
1:      int $0x80
u_pf:   movl $1f, resume_eip
u_pf_f: movl V_S + 8, %eax              /* supervisor page: P|U */
1:      int $0x80
u_pfw:  movl $1f, resume_eip
u_pfw_f:
        movl %eax, V_NP + 0x10          /* not present: W|U */
1:      int $0x80
u_ac:   movl $1f, resume_eip
        pushfl
        orl $EFL_AC, (%esp)
        popfl
u_ac_f: movl misaligned, %eax
1:      pushfl
        andl $~EFL_AC, (%esp)
        popfl
        int $0x80

        .data
        .balign 8
bounds: .long 0, 10
        .balign 4
aligned: .long 0x11223344, 0x55667788
        .set misaligned, aligned + 1
