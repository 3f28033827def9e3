/*
 * exc_task.s -- hardware task switching: JMP to a TSS, CALL through a task
 * gate and IRET back, INT n and an exception through IDT task gates (the
 * error code pushed on the new task's stack), the classic double-fault task
 * that rescues a kernel whose stack overflowed, a 16-bit TSS, a ring-3 task,
 * and which faults are reported in the old and which in the new task.
 *
 * Why: a kernel that uses hardware tasks (at least for #DF, as Linux i386
 * and most hobby kernels do) relies on the exact bookkeeping of SDM vol. 3,
 * chapter 7: the state saved in the old TSS (EIP = the next instruction for
 * JMP/CALL/INT n/IRET, the faulting one for an exception), the busy bits
 * and NT/back link of table 7-2, CR0.TS set by every switch, LDTR and CR3
 * loaded from the new TSS, and the commit point: faults found before it
 * (table 7-1: TSS selector, type, busy, present, limit) leave the old task
 * untouched at the initiating instruction; faults after it (the new task's
 * segment descriptors) are taken in the new task, before its first
 * instruction (7.3 steps 13-14).  The TSS T flag raises #DB with DR6.BT
 * (17.3.1.5), and every switch clears DR7's local enables (17.2.4).
 *
 * Layout: its own GDT (tgdt) -- the flat segments of lib.inc at the same
 * selectors, then TSS descriptors, task gates and an LDT; paging on with
 * 0..4 MiB identity-mapped and user-accessible; every TSS's CR3 field is
 * PAGE_DIR, so CR3 is reloaded (and the TLB flushed) by every switch.
 */
        .include "exc_common.inc"

        .set SEL_MAIN,   0x28           /* the main task (DPL 3: the ring-3 task can come back) */
        .set SEL_A,      0x30
        .set SEL_B,      0x38
        .set SEL_GATE_B, 0x40           /* task gate -> SEL_B */
        .set SEL_D,      0x48           /* int $0x40 */
        .set SEL_DF,     0x50           /* #DF */
        .set SEL_E,      0x58           /* #NP with an error code */
        .set SEL_SMALL,  0x60           /* TSS with limit 0x20 */
        .set SEL_BADDS,  0x68           /* TSS whose DS is not present */
        .set SEL_T,      0x70           /* TSS with the T flag */
        .set SEL_NPDATA, 0x78           /* data, not present */
        .set SEL_TSS16,  0x80           /* 16-bit TSS */
        .set SEL_CODE1M, 0x88           /* 32-bit code with base 1 MiB (the 16-bit task's CS) */
        .set SEL_LDT,    0x90           /* task A's LDT */
        .set SEL_U,      0x98           /* a ring-3 task */
        .set SEL_GATE_NP,0xa0           /* task gate, not present */
        .set SEL_PFTSS,  0xa8           /* TSS on a page that is not present */

        .set T_LINK, 0x00
        .set T_ESP0, 0x04
        .set T_SS0,  0x08
        .set T_CR3,  0x1c
        .set T_EIP,  0x20
        .set T_EFL,  0x24
        .set T_EAX,  0x28
        .set T_ESP,  0x38
        .set T_ES,   0x48
        .set T_CS,   0x4c
        .set T_SS,   0x50
        .set T_DS,   0x54
        .set T_FS,   0x58
        .set T_GS,   0x5c
        .set T_LDT,  0x60
        .set T_TRAP, 0x64
        .set T_IOMAP,0x66

        .set GUARD,  FRAMES + 0x10000   /* unmapped: the stack that overflows */
        .set GUARD2, FRAMES + 0x11000   /* unmapped: a TSS there cannot be read */
        .set BASE1M, 0x100000

/* BUSY sel: the access byte of a descriptor in tgdt (0x89/0xe9 available, 0x8b/0xeb busy) into eax */
.macro BUSY sel:req
        movzbl tgdt + \sel + 5, %eax
.endm

main:
        lgdt tgdt_desc
        call hook_all_rec
        call pt_reset
        movl $PT_LOW, %edi
        movl $1024, %ecx
1:      orl $PG_U, (%edi)
        addl $4, %edi
        decl %ecx
        jnz 1b
        xorl %eax, %eax
        call paging_on
        call tasks_init
        movw $SEL_MAIN, %ax
        ltr %ax

        /* ============================================ 1. JMP to a TSS, and back */
        movl $0x9, %eax                 /* DR7: L0 | G1 (DR0 = DR1 = 0: nothing there) */
        movl %eax, %dr7
        movl $0x11111111, %ebx
        movl $0x22222222, %esi
        movl $0x33333333, %ebp
t1_jmp: ljmp $SEL_A, $0
t1_ret: CHECK_EQ %ebx, $0x11111111, "jmp-back-ebx"
        CHECK_EQ %esi, $0x22222222, "jmp-back-esi"
        CHECK_EQ %ebp, $0x33333333, "jmp-back-ebp"
        xorl %eax, %eax
        movl %eax, %dr7
        str %eax
        CHECK_EQ %eax, $SEL_MAIN, "jmp-back-tr"
        CHECK_EQ a_eax, $0x12340001, "jmp-loads-eax"
        CHECK_EQ a_esp, $a_stack_top, "jmp-loads-esp"
        CHECK_EQ a_tr, $SEL_A, "jmp-loads-tr"
        movl a_efl, %eax
        andl $EFL_NT, %eax
        CHECK_EQ %eax, $0, "jmp-new-nt-clear"
        movl a_cr0, %eax
        andl $CR0_TS, %eax
        CHECK_EQ %eax, $CR0_TS, "jmp-sets-cr0-ts"
        CHECK_EQ a_ldtr, $SEL_LDT, "jmp-loads-ldtr"
        CHECK_EQ a_fsval, $0x600dd00d, "jmp-ldt-segment-usable"
        CHECK_EQ a_busy_main, $0xe9, "jmp-clears-old-busy"
        CHECK_EQ a_busy_a, $0x8b, "jmp-sets-new-busy"
        CHECK_EQ a_main_eip, $t1_ret, "jmp-saves-next-eip"
        CHECK_EQ a_main_ebx, $0x11111111, "jmp-saves-ebx"
        movl a_dr7, %eax
        andl $0xff, %eax
        CHECK_EQ %eax, $0x8, "switch-clears-dr7-local-enables"
        BUSY SEL_MAIN
        CHECK_EQ %eax, $0xeb, "jmp-back-main-busy"
        BUSY SEL_A
        CHECK_EQ %eax, $0x89, "jmp-back-a-not-busy"
        CHECK_EQ tss_a+T_EIP, $a_back, "jmp-back-saves-a-eip"
        CHECK_EQ tss_a+T_EAX, $0xa0a0a0a0, "jmp-back-saves-a-eax"
        CHECK_EQ tss_a+T_LINK, $0, "jmp-no-back-link"
        sldt %eax
        CHECK_EQ %eax, $0, "jmp-back-ldtr-null"
        clts
        ljmp $SEL_A, $0                 /* A resumes after its ljmp */
        CHECK_EQ a_count, $1, "jmp-resumes-at-saved-eip"

        /* ============================================ 2. CALL through a task gate, IRET back */
        movl $0x44444444, %edi
t2_call:
        lcall $SEL_GATE_B, $0
t2_ret: CHECK_EQ %edi, $0x44444444, "call-back-edi"
        movl b_efl, %eax
        andl $EFL_NT, %eax
        CHECK_EQ %eax, $EFL_NT, "call-sets-nt"
        CHECK_EQ b_link, $SEL_MAIN, "call-sets-back-link"
        CHECK_EQ b_busy_main, $0xeb, "call-old-stays-busy"
        CHECK_EQ b_busy_b, $0x8b, "call-sets-new-busy"
        CHECK_EQ b_main_eip, $t2_ret, "call-saves-next-eip"
        pushfl
        popl %eax
        andl $EFL_NT, %eax
        CHECK_EQ %eax, $0, "iret-back-nt-of-old-task"
        BUSY SEL_MAIN
        CHECK_EQ %eax, $0xeb, "iret-back-main-busy"
        BUSY SEL_B
        CHECK_EQ %eax, $0x89, "iret-clears-new-busy"
        movl tss_b+T_EFL, %eax
        andl $EFL_NT, %eax
        CHECK_EQ %eax, $0, "iret-saves-nt-clear"
        CHECK_EQ tss_b+T_EIP, $(b_iret + 1), "iret-saves-next-eip"
        lcall $SEL_GATE_B, $0           /* B resumes after its iret */
        CHECK_EQ b_count, $1, "call-resumes-after-iret"

        /* ============================================ 3. INT n through an IDT task gate */
        movl $(SEL_D << 16), idt + 0x40*8
        movl $0x8500, idt + 0x40*8 + 4
t3_int: int $0x40
t3_ret: movl d_efl, %eax
        andl $EFL_NT, %eax
        CHECK_EQ %eax, $EFL_NT, "int-gate-sets-nt"
        CHECK_EQ d_link, $SEL_MAIN, "int-gate-back-link"
        CHECK_EQ d_main_eip, $t3_ret, "int-gate-saves-next-eip"
        CHECK_EQ d_esp, $d_stack_top, "int-gate-no-error-code"
        BUSY SEL_D
        CHECK_EQ %eax, $0x89, "int-gate-iret-clears-busy"

        /* ---- an exception with an error code through a task gate: #NP -> task E */
        movl idt + 11*8, %eax
        movl %eax, saved_gate
        movl idt + 11*8 + 4, %eax
        movl %eax, saved_gate + 4
        movl $(SEL_E << 16), idt + 11*8
        movl $0x8500, idt + 11*8 + 4
        movw $SEL_NPDATA, %ax
t3b_f:  movw %ax, %fs                   /* #NP(0x78) */
        jmp 1f                          /* not reached: E resumes us at t3b_resume */
t3b_resume:
1:      movl saved_gate, %eax
        movl %eax, idt + 11*8
        movl saved_gate + 4, %eax
        movl %eax, idt + 11*8 + 4
        CHECK_EQ e_err, $SEL_NPDATA, "exc-gate-error-code"
        CHECK_EQ e_esp, $(e_stack_top - 4), "exc-gate-error-code-on-new-stack"
        CHECK_EQ e_link, $SEL_MAIN, "exc-gate-back-link"
        CHECK_EQ e_main_eip, $t3b_f, "exc-gate-saves-faulting-eip"
        movl e_efl, %eax
        andl $EFL_NT, %eax
        CHECK_EQ %eax, $EFL_NT, "exc-gate-sets-nt"
        movl %fs, %eax
        CHECK_EQ %eax, $SEL_KDATA, "exc-gate-fs-unchanged"

        /* ============================================ 4. #DF task: the kernel stack overflows */
        movl idt + 8*8, %eax
        movl %eax, saved_gate
        movl idt + 8*8 + 4, %eax
        movl %eax, saved_gate + 4
        movl $(SEL_DF << 16), idt + 8*8
        movl $0x8500, idt + 8*8 + 4
        movl $GUARD, %eax
        xorl %edx, %edx
        call map_page                   /* PTE 0: the page below the stack is gone */
        movl %esp, saved_esp
        movl $(GUARD + 4096), %esp
t4_f:   pushl $0x5a5a5a5a               /* #PF; its frame cannot be pushed: #PF -> #DF */
        jmp 1f                          /* not reached: the #DF task resumes us at t4_resume */
t4_resume:
1:      CHECK_EQ %esp, saved_esp, "df-task-restored-stack"
        movl saved_gate, %eax
        movl %eax, idt + 8*8
        movl saved_gate + 4, %eax
        movl %eax, idt + 8*8 + 4
        movl $GUARD, %eax
        movl $(GUARD | PG_PW | PG_U), %edx
        call map_page
        CHECK_EQ df_err, $0, "df-error-code-0"
        CHECK_EQ df_esp, $(df_stack_top - 4), "df-error-code-on-df-stack"
        CHECK_EQ df_link, $SEL_MAIN, "df-back-link"
        CHECK_EQ df_main_eip, $t4_f, "df-old-eip-is-faulting-push"
        CHECK_EQ df_main_esp, $(GUARD + 4096), "df-old-esp-unchanged"
        CHECK_EQ df_cr2, $(GUARD + 4092), "df-cr2"
        BUSY SEL_DF
        CHECK_EQ %eax, $0x89, "df-task-not-busy-after-iret"

        /* ============================================ 5. faults before the commit point: old task */
        REC_RESET
        movl $1f, resume_eip
        movl %esp, %ebx
k_small:
        ljmp $SEL_SMALL, $0             /* limit 0x20 < 0x67: #TS(selector) */
1:      KCHECK "pre-small-tss", $10, $SEL_SMALL, $k_small, %ebx
        str %eax
        CHECK_EQ %eax, $SEL_MAIN, "pre-small-tss-tr-unchanged"
        BUSY SEL_MAIN
        CHECK_EQ %eax, $0xeb, "pre-small-tss-busy-unchanged"
        BUSY SEL_SMALL
        CHECK_EQ %eax, $0x89, "pre-small-tss-not-busy"

        REC_RESET
        movl $1f, resume_eip
        movl %esp, %ebx
k_busy: ljmp $SEL_MAIN, $0              /* the running task: busy, #GP(selector) */
1:      KCHECK "pre-busy-tss", $13, $SEL_MAIN, $k_busy, %ebx

        REC_RESET
        andb $0x7f, tgdt + SEL_SMALL + 5
        movl $1f, resume_eip
        movl %esp, %ebx
k_np:   ljmp $SEL_SMALL, $0             /* not present: #NP(selector), before the limit check */
1:      orb $0x80, tgdt + SEL_SMALL + 5
        KCHECK "pre-np-tss", $11, $SEL_SMALL, $k_np, %ebx

        REC_RESET
        movl $1f, resume_eip
        movl %esp, %ebx
k_npgate:
        lcall $SEL_GATE_NP, $0          /* task gate not present: #NP(gate) */
1:      KCHECK "pre-np-gate", $11, $SEL_GATE_NP, $k_npgate, %ebx

        REC_RESET
        movl $GUARD2, %eax
        xorl %edx, %edx
        call map_page
        movl $1f, resume_eip
        movl %esp, %ebx
k_pftss:
        ljmp $SEL_PFTSS, $0             /* reading the new TSS faults: #PF, still in the old task */
1:      KCHECK "pre-pf-new-tss", $14, $0, $k_pftss, %ebx
        CHECK_EQ rec_log+REC_CR2, $(GUARD2 + 0x1c), "pre-pf-new-tss-cr2"
        str %eax
        CHECK_EQ %eax, $SEL_MAIN, "pre-pf-new-tss-tr-unchanged"
        BUSY SEL_MAIN
        CHECK_EQ %eax, $0xeb, "pre-pf-new-tss-old-busy-unchanged"
        BUSY SEL_PFTSS
        CHECK_EQ %eax, $0x89, "pre-pf-new-tss-new-not-busy"
        movl $GUARD2, %eax
        movl $(GUARD2 | PG_PW | PG_U), %edx
        call map_page

        REC_RESET
        movl $(SEL_MAIN << 16), idt + 0x41*8
        movl $0x8500, idt + 0x41*8 + 4
        movl $1f, resume_eip
        movl %esp, %ebx
k_intbusy:
        int $0x41                       /* gate to the running (busy) task: #GP(TSS selector) */
1:      KCHECK "pre-int-busy-tss", $13, $SEL_MAIN, $k_intbusy, %ebx

        REC_RESET
        movw $SEL_A, tss_main + T_LINK  /* back link to an available (not busy) TSS */
        movl $1f, resume_eip
        pushfl
        pushl $SEL_KCODE
        pushl $2f
        pushfl
        orl $EFL_NT, (%esp)
        popfl
        movl %esp, %ebx
k_iret: iret                            /* task return to a TSS that is not busy: #TS(link) */
2:
1:      pushfl
        andl $~EFL_NT, (%esp)
        popfl
        addl $8, %esp
        popfl
        movw $0, tss_main + T_LINK
        KCHECK "pre-iret-not-busy", $10, $SEL_A, $k_iret, %ebx
        BUSY SEL_A
        CHECK_EQ %eax, $0x89, "pre-iret-a-untouched"

        /* ============================================ 6. a fault after the commit point: new task */
        SET_HOOK 11, $hook_newtask
t6_jmp: ljmp $SEL_BADDS, $0             /* DS of the new task is not present: #NP in the new task */
t6_ret: SET_HOOK 11, $hook_rec
        CHECK_EQ nt_vec, $11, "post-fault-vector"
        CHECK_EQ nt_err, $SEL_NPDATA, "post-fault-error-code"
        CHECK_EQ nt_tr, $SEL_BADDS, "post-fault-tr-is-new-task"
        CHECK_EQ nt_eip, $badds_entry, "post-fault-eip-is-new-task-first-insn"
        CHECK_EQ nt_cs, $SEL_KCODE, "post-fault-cs"
        CHECK_EQ nt_ds, $SEL_NPDATA, "post-fault-ds-holds-new-selector"
        CHECK_EQ nt_main_eip, $t6_ret, "post-fault-old-state-saved"
        CHECK_EQ nt_busy_main, $0xe9, "post-fault-old-not-busy"
        CHECK_EQ nt_busy_new, $0x8b, "post-fault-new-busy"
        CHECK_EQ badds_ran, $1, "post-fault-new-task-continues"

        /* ============================================ 7. the T flag: #DB trap in the new task */
        REC_RESET
        movl $t_entry, resume_eip
        ljmp $SEL_T, $0
        CHECK_EQ t_ran, $1, "tbit-task-ran"
        CHECK_EQ rec_log+REC_VEC, $1, "tbit-db-vector"
        CHECK_EQ rec_log+REC_EIP, $t_entry, "tbit-db-before-first-insn"
        movl rec_log+REC_DR6, %eax
        andl $0xe00f, %eax
        CHECK_EQ %eax, $0x8000, "tbit-dr6-bt"

        /* ============================================ 8. a 16-bit TSS */
        movl $0xabcd0000, %eax
        ljmp $SEL_TSS16, $0
        CHECK_EQ %eax, $0xabcd0000, "tss16-back-eax"
        CHECK_EQ t16_eax, $0xabcd1616, "tss16-keeps-upper-gpr-halves"
        CHECK_EQ t16_tr, $SEL_TSS16, "tss16-tr"
        CHECK_EQ t16_fs, $0, "tss16-fs-null"
        CHECK_EQ t16_cs, $SEL_CODE1M, "tss16-cs"
        movzwl tss16 + 0x0e, %eax
        CHECK_EQ %eax, $(t16_after - BASE1M), "tss16-saves-ip"
        movzwl tss16 + 0x12, %eax
        CHECK_EQ %eax, $0x7777, "tss16-saves-ax"
        movzwl tss16 + 0x24, %eax
        CHECK_EQ %eax, $SEL_CODE1M, "tss16-saves-cs"

        /* ============================================ 9. a ring-3 task */
        ljmp $SEL_U, $0
        CHECK_EQ ut_cs, $SEL_UCODE, "ring3-task-cs"
        CHECK_EQ ut_ss, $SEL_UDATA, "ring3-task-ss"
        movl %cs, %eax
        CHECK_EQ %eax, $SEL_KCODE, "ring3-task-back-cs"
        movl tss_u + T_CS, %eax
        CHECK_EQ %eax, $SEL_UCODE, "ring3-task-saved-cs"
        clts
        ret

/* --------------------------------------------------------------- task bodies */
a_entry:
        movl %eax, a_eax
        movl %esp, a_esp
        str %eax
        movl %eax, a_tr
        pushfl
        popl a_efl
        movl %cr0, %eax
        movl %eax, a_cr0
        sldt %eax
        movl %eax, a_ldtr
        movw $0x04, %ax                 /* LDT entry 0 */
        movw %ax, %fs
        movl %fs:a_probe, %eax
        movl %eax, a_fsval
        movl %dr7, %eax
        movl %eax, a_dr7
        BUSY SEL_MAIN
        movl %eax, a_busy_main
        BUSY SEL_A
        movl %eax, a_busy_a
        movl tss_main + T_EIP, %eax
        movl %eax, a_main_eip
        movl tss_main + T_EAX + 12, %eax
        movl %eax, a_main_ebx
        movl $0xa0a0a0a0, %eax
        ljmp $SEL_MAIN, $0
a_back: incl a_count
        ljmp $SEL_MAIN, $0
        jmp a_back

b_entry:
        pushfl
        popl b_efl
        movzwl tss_b + T_LINK, %eax
        movl %eax, b_link
        BUSY SEL_MAIN
        movl %eax, b_busy_main
        BUSY SEL_B
        movl %eax, b_busy_b
        movl tss_main + T_EIP, %eax
        movl %eax, b_main_eip
b_iret: iret
        incl b_count
        jmp b_entry

d_entry:
        movl %esp, d_esp
        pushfl
        popl d_efl
        movzwl tss_d + T_LINK, %eax
        movl %eax, d_link
        movl tss_main + T_EIP, %eax
        movl %eax, d_main_eip
        iret
        jmp d_entry

e_entry:
        movl %esp, e_esp
        movl (%esp), %eax
        movl %eax, e_err
        pushfl
        popl e_efl
        movzwl tss_e + T_LINK, %eax
        movl %eax, e_link
        movl tss_main + T_EIP, %eax
        movl %eax, e_main_eip
        movl $t3b_resume, tss_main + T_EIP   /* the faulting instruction is skipped */
        addl $4, %esp                   /* the error code */
        iret
        jmp e_entry

df_entry:
        movl %esp, df_esp
        movl (%esp), %eax
        movl %eax, df_err
        movl %cr2, %eax
        movl %eax, df_cr2
        movzwl tss_df + T_LINK, %eax
        movl %eax, df_link
        movl tss_main + T_EIP, %eax
        movl %eax, df_main_eip
        movl tss_main + T_ESP, %eax
        movl %eax, df_main_esp
        movl saved_esp, %eax            /* rescue the interrupted task: a good stack, */
        movl %eax, tss_main + T_ESP
        movl $t4_resume, tss_main + T_EIP  /* and somewhere to go */
        addl $4, %esp
        iret
        jmp df_entry

badds_entry:
        movl $1, badds_ran              /* reached through hook_newtask */
        movw $SEL_KDATA, %ax
        movw %ax, %ds
        ljmp $SEL_MAIN, $0

t_entry:
        movl $1, t_ran
        ljmp $SEL_MAIN, $0

u_task:
        movl %cs, %eax
        movl %eax, ut_cs
        movl %ss, %eax
        movl %eax, ut_ss
        ljmp $(SEL_MAIN | 3), $0

/* hook_newtask(frame): the #NP raised after the commit point of the switch to BADDS */
hook_newtask:
        pushl %ebx
        movl 8(%esp), %ebx
        movl F_VEC(%ebx), %eax
        movl %eax, nt_vec
        movl F_ERR(%ebx), %eax
        movl %eax, nt_err
        movl F_EIP(%ebx), %eax
        movl %eax, nt_eip
        movl F_CS(%ebx), %eax
        movl %eax, nt_cs
        movl %ds, %eax
        movl %eax, nt_ds
        str %eax
        movl %eax, nt_tr
        movl tss_main + T_EIP, %eax
        movl %eax, nt_main_eip
        BUSY SEL_MAIN
        movl %eax, nt_busy_main
        BUSY SEL_BADDS
        movl %eax, nt_busy_new
        movl $badds_entry, F_EIP(%ebx)  /* let the new task run (its handler loads a good DS) */
        popl %ebx
        ret

/* The 16-bit task: CS = SEL_CODE1M (base 1 MiB), so its IP fits in 16 bits. */
t16_entry:
        movl %eax, t16_eax
        str %eax
        movl %eax, t16_tr
        movl %fs, %eax
        movl %eax, t16_fs
        movl %cs, %eax
        movl %eax, t16_cs
        movw $0x7777, %ax
        ljmp $SEL_MAIN, $0
t16_after:
        jmp t16_after

/* ----------------------------------------------------------------- set-up */

/* tss_fill(edi = TSS, eax = EIP, edx = ESP): a ring-0 32-bit task on the flat segments */
tss_fill:
        pushal
        pushl %eax
        pushl %edi
        xorl %eax, %eax
        movl $26, %ecx
1:      movl %eax, (%edi)
        addl $4, %edi
        decl %ecx
        jnz 1b
        popl %edi
        popl %eax
        movl %eax, T_EIP(%edi)
        movl %edx, T_ESP(%edi)
        movl %edx, T_ESP0(%edi)
        movl $SEL_KDATA, T_SS0(%edi)
        movl $PAGE_DIR, T_CR3(%edi)
        movl $2, T_EFL(%edi)
        movl $SEL_KCODE, T_CS(%edi)
        movl $SEL_KDATA, T_ES(%edi)
        movl $SEL_KDATA, T_SS(%edi)
        movl $SEL_KDATA, T_DS(%edi)
        movl $SEL_KDATA, T_FS(%edi)
        movl $SEL_KDATA, T_GS(%edi)
        movw $104, T_IOMAP(%edi)
        popal
        ret

/* set_desc(ecx = selector, eax = base, edx = byte-granular limit, bl = access byte) */
set_desc:
        pushal
        andl $0xfff8, %ecx
        leal tgdt(%ecx), %edi
        movw %dx, (%edi)
        movw %ax, 2(%edi)
        shrl $16, %eax
        movb %al, 4(%edi)
        movb %bl, 5(%edi)
        shrl $16, %edx
        andb $0x0f, %dl
        movb %dl, 6(%edi)
        movb %ah, 7(%edi)
        popal
        ret

.macro TSS sel:req, tss:req, entry:req, stack:req, access=0x89
        movl $\tss, %edi
        movl $\entry, %eax
        movl $\stack, %edx
        call tss_fill
        movl $\sel, %ecx
        movl $\tss, %eax
        movl $0x67, %edx
        movb $\access, %bl
        call set_desc
.endm

tasks_init:
        movl $SEL_MAIN, %ecx            /* the main task: its state is written by the first switch */
        movl $tss_main, %eax
        movl $0x67, %edx
        movb $0xe9, %bl
        call set_desc
        movl $PAGE_DIR, tss_main + T_CR3
        movl $exc_stack_top, tss_main + T_ESP0
        movl $SEL_KDATA, tss_main + T_SS0
        movw $104, tss_main + T_IOMAP
        TSS SEL_A, tss_a, a_entry, a_stack_top
        movl $0x12340001, tss_a + T_EAX
        movl $SEL_LDT, tss_a + T_LDT
        movl $SEL_LDT, %ecx
        movl $a_ldt, %eax
        movl $15, %edx
        movb $0x82, %bl
        call set_desc
        TSS SEL_B, tss_b, b_entry, b_stack_top
        TSS SEL_D, tss_d, d_entry, d_stack_top
        TSS SEL_DF, tss_df, df_entry, df_stack_top
        TSS SEL_E, tss_e, e_entry, e_stack_top
        TSS SEL_BADDS, tss_badds, badds_entry, badds_stack_top
        movl $SEL_NPDATA, tss_badds + T_DS
        TSS SEL_T, tss_t, t_entry, t_stack_top
        movw $1, tss_t + T_TRAP
        TSS SEL_U, tss_u, u_task, u_stack_top
        movl $SEL_UCODE, tss_u + T_CS
        movl $SEL_UDATA, tss_u + T_SS
        movl $SEL_UDATA, tss_u + T_DS
        movl $SEL_UDATA, tss_u + T_ES
        movl $SEL_UDATA, tss_u + T_FS
        movl $SEL_UDATA, tss_u + T_GS
        movl $exc_stack_top, tss_u + T_ESP0
        movl $SEL_SMALL, %ecx           /* a TSS too small for a 32-bit TSS */
        movl $tss_small, %eax
        movl $0x20, %edx
        movb $0x89, %bl
        call set_desc
        movl $SEL_TSS16, %ecx           /* the 16-bit TSS (type 1) */
        movl $tss16, %eax
        movl $0x2b, %edx
        movb $0x81, %bl
        call set_desc
        movl $t16_entry, %eax
        subl $BASE1M, %eax
        movw %ax, tss16 + 0x0e          /* IP: the offset in SEL_CODE1M */
        movw $2, tss16 + 0x10
        movw $0x1616, tss16 + 0x12
        movw $SEL_KDATA, tss16 + 0x22   /* ES */
        movw $SEL_CODE1M, tss16 + 0x24  /* CS */
        movw $SEL_KDATA, tss16 + 0x26   /* SS */
        movw $SEL_KDATA, tss16 + 0x28   /* DS */
        ret

        .data
        .balign 8
tgdt:
        .quad 0
        .quad 0x00cf9a000000ffff        /* 0x08 */
        .quad 0x00cf92000000ffff        /* 0x10 */
        .quad 0x00cffa000000ffff        /* 0x18 */
        .quad 0x00cff2000000ffff        /* 0x20 */
        .quad 0                         /* 0x28 main TSS */
        .quad 0                         /* 0x30 A */
        .quad 0                         /* 0x38 B */
        .word 0, SEL_B                  /* 0x40 task gate -> B */
        .byte 0, 0x85
        .word 0
        .quad 0                         /* 0x48 D */
        .quad 0                         /* 0x50 DF */
        .quad 0                         /* 0x58 E */
        .quad 0                         /* 0x60 small */
        .quad 0                         /* 0x68 BADDS */
        .quad 0                         /* 0x70 T */
        .quad 0x00cf12000000ffff        /* 0x78 data, not present */
        .quad 0                         /* 0x80 16-bit TSS */
        .quad 0x00cf9a100000ffff        /* 0x88 code, base 1 MiB */
        .quad 0                         /* 0x90 LDT */
        .quad 0                         /* 0x98 U */
        .word 0, SEL_A                  /* 0xa0 task gate, not present */
        .byte 0, 0x05
        .word 0
        .word 0x67, GUARD2 & 0xffff     /* 0xa8 TSS at GUARD2 */
        .byte (GUARD2 >> 16) & 0xff, 0x89, 0, GUARD2 >> 24
tgdt_end:
        .balign 4
        .word 0
tgdt_desc:
        .word tgdt_end - tgdt - 1
        .long tgdt

        .balign 8
a_ldt:  .quad 0x00cf92000000ffff        /* LDT 0x04: flat data */
        .quad 0
a_probe: .long 0x600dd00d

saved_gate: .long 0, 0
saved_esp: .long 0
a_eax: .long 0
a_esp: .long 0
a_tr: .long 0
a_efl: .long 0
a_cr0: .long 0
a_ldtr: .long 0
a_fsval: .long 0
a_dr7: .long 0
a_busy_main: .long 0
a_busy_a: .long 0
a_main_eip: .long 0
a_main_ebx: .long 0
a_count: .long 0
b_efl: .long 0
b_link: .long 0
b_busy_main: .long 0
b_busy_b: .long 0
b_main_eip: .long 0
b_count: .long 0
d_esp: .long 0
d_efl: .long 0
d_link: .long 0
d_main_eip: .long 0
e_esp: .long 0
e_err: .long 0
e_efl: .long 0
e_link: .long 0
e_main_eip: .long 0
df_esp: .long 0
df_err: .long 0
df_cr2: .long 0
df_link: .long 0
df_main_eip: .long 0
df_main_esp: .long 0
nt_vec: .long 0
nt_err: .long 0
nt_eip: .long 0
nt_cs: .long 0
nt_ds: .long 0
nt_tr: .long 0
nt_main_eip: .long 0
nt_busy_main: .long 0
nt_busy_new: .long 0
badds_ran: .long 0
t_ran: .long 0
t16_eax: .long 0
t16_tr: .long 0
t16_fs: .long 0
t16_cs: .long 0
ut_cs: .long 0
ut_ss: .long 0

        .bss
        .balign 128
tss_main: .skip 128
tss_a:  .skip 128
tss_b:  .skip 128
tss_d:  .skip 128
tss_df: .skip 128
tss_e:  .skip 128
tss_badds: .skip 128
tss_t:  .skip 128
tss_u:  .skip 128
tss_small: .skip 128
tss16:  .skip 128
        .balign 16
        .skip 1024
a_stack_top:
        .skip 1024
b_stack_top:
        .skip 1024
d_stack_top:
        .skip 1024
df_stack_top:
        .skip 1024
e_stack_top:
        .skip 1024
badds_stack_top:
        .skip 1024
t_stack_top:
        .skip 1024
u_stack_top:
        .text
