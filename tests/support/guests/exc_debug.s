/*
 * exc_debug.s -- the guest's own debug registers: DR7 instruction breakpoints
 * (faults, resumed with EFLAGS.RF), data breakpoints (traps, by access kind
 * and length), EFLAGS.TF single-step (DR6.BS), and how RF behaves.
 *
 * Why: kernel debuggers (kgdb, the BSDs' ddb) and ptrace hardware
 * watchpoints are built on these, and they depend on details of SDM vol. 3,
 * 17.2-17.3: an instruction breakpoint is a fault (EIP at the instruction,
 * nothing executed) reported in DR6.B0-B3 and resumed by setting RF in the
 * frame; RF covers exactly one instruction (it is cleared "at the start of
 * the instruction after the check for code breakpoint", 17.3.1.1) and a
 * fault-class exception pushes RF=1 so that the faulting instruction's own
 * breakpoint does not fire again when the handler restarts it; a data
 * breakpoint is a trap (EIP after the access, the access done) that matches
 * the access kind (RW=01 writes, RW=11 reads and writes) and any byte of its
 * 1/2/4-byte range; single-step traps after each instruction with DR6.BS.
 */
        .include "exc_common.inc"

        .set SEL_NPD, 0x30              /* a data segment, not present until #NP fixes it */

/* SET_DR7 value */
.macro SET_DR7 value:req
        movl \value, %eax
        movl %eax, %dr7
.endm

main:
        call hook_all_rec

        movl %dr6, %eax
        CHECK_EQ %eax, $0xffff0ff0, "dr6-initial"
        movl %dr7, %eax
        CHECK_EQ %eax, $0x400, "dr7-initial"

        /* ---- an instruction breakpoint: a fault, resumed with RF, every pass of a loop */
        REC_RESET
        movl $(REC_KEEP_EIP | REC_DB_RF), rec_mode
        movl $bp1, %eax
        movl %eax, %dr0
        SET_DR7 $0x1                    /* L0, execute */
        movl $0, bp_runs
        movl $3, %ecx
1:
bp1:    incl bp_runs
        decl %ecx
        jnz 1b
        SET_DR7 $0
        CHECK_EQ bp_runs, $3, "exec-bp-insn-runs-once-per-pass"
        CHECK_EQ rec_n, $3, "exec-bp-hits-every-pass"
        CHECK_EQ rec_log+REC_VEC, $1, "exec-bp-vector"
        CHECK_EQ rec_log+REC_EIP, $bp1, "exec-bp-fault-eip"
        movl rec_log+REC_DR6, %eax
        CHECK_EQ %eax, $0xffff0ff1, "exec-bp-dr6-b0"
        movl rec_log+REC_EFL, %eax
        andl $EFL_RF, %eax
        CHECK_EQ %eax, $0, "exec-bp-pushed-rf-clear"
        CHECK_EQ rec_log+2*REC_SIZE+REC_EIP, $bp1, "exec-bp-third-pass-eip"

        /* ---- a global enable (G1) on DR1 works the same */
        REC_RESET
        movl $bp1g, %eax
        movl %eax, %dr1
        SET_DR7 $0x8                    /* G1, execute */
bp1g:   nop
        SET_DR7 $0
        CHECK_EQ rec_n, $1, "exec-bp-g1-hits"
        movl rec_log+REC_DR6, %eax
        CHECK_EQ %eax, $0xffff0ff2, "exec-bp-g1-dr6-b1"

        /* ---- RF covers one instruction: iret with RF=1 to an instruction without a
         * breakpoint, the breakpoint on the next one still fires */
        REC_RESET
        movl $bp2, %eax
        movl %eax, %dr0
        SET_DR7 $0x1
        pushfl
        orl $EFL_RF, (%esp)
        pushl %cs
        pushl $x2
        iret
x2:     nop
bp2:    nop
        SET_DR7 $0
        CHECK_EQ rec_n, $1, "rf-covers-one-insn-only"
        CHECK_EQ rec_log+REC_EIP, $bp2, "rf-then-next-bp-eip"

        /* ---- RF=1 restored on the breakpoint instruction itself: suppressed once */
        REC_RESET
        movl $bp3, %eax
        movl %eax, %dr0
        SET_DR7 $0x1
        pushfl
        orl $EFL_RF, (%esp)
        pushl %cs
        pushl $bp3
        iret
bp3:    nop
        SET_DR7 $0
        CHECK_EQ rec_n, $0, "rf-suppresses-bp-after-iret"

        /* ---- a data breakpoint on writes (RW=01, 4 bytes): a trap after the store */
        REC_RESET
        movl $dvar, %eax
        movl %eax, %dr1
        SET_DR7 $0x00d00004             /* L1, RW1=01, LEN1=11 */
        movl dvar, %eax                 /* a read: no trap */
        CHECK_EQ rec_n, $0, "data-write-bp-ignores-read"
dw:     movl $5, dvar
dw_next:
        SET_DR7 $0
        CHECK_EQ rec_n, $1, "data-write-bp-hits"
        CHECK_EQ rec_log+REC_EIP, $dw_next, "data-write-bp-trap-eip"
        movl rec_log+REC_DR6, %eax
        CHECK_EQ %eax, $0xffff0ff2, "data-write-bp-dr6-b1"
        CHECK_EQ dvar, $5, "data-write-bp-store-done"

        /* ---- reads and writes (RW=11) on DR3: a read traps */
        REC_RESET
        movl $dvar2, %eax
        movl %eax, %dr3
        SET_DR7 $0xf0000040             /* L3, RW3=11, LEN3=11 */
dr:     movl dvar2, %eax
dr_next:
        SET_DR7 $0
        CHECK_EQ rec_n, $1, "data-rw-bp-read-hits"
        CHECK_EQ rec_log+REC_EIP, $dr_next, "data-rw-bp-trap-eip"
        movl rec_log+REC_DR6, %eax
        CHECK_EQ %eax, $0xffff0ff8, "data-rw-bp-dr6-b3"

        /* ---- a 2-byte breakpoint (LEN=01) on dvar+2..3: byte stores to dvar+0 and +1 miss
         * it, a dword store to dvar overlaps it, a byte store to dvar+3 hits its second byte */
        REC_RESET
        movl $(dvar + 2), %eax
        movl %eax, %dr2
        SET_DR7 $0x05000010             /* L2, RW2=01, LEN2=01 */
        movb $1, dvar
        movb $1, dvar + 1
        CHECK_EQ rec_n, $0, "data-len2-outside-bytes-no-trap"
        movl $7, dvar
        CHECK_EQ rec_n, $1, "data-len2-dword-overlap-traps"
        movb $1, dvar + 3
        CHECK_EQ rec_n, $2, "data-len2-second-byte-traps"
        SET_DR7 $0
        movl rec_log+REC_DR6, %eax
        CHECK_EQ %eax, $0xffff0ff4, "data-len2-dr6-b2"

        /* ---- single-step: a trap after each instruction, DR6.BS, through a jump */
        REC_RESET
        movl $(REC_KEEP_EIP | REC_KEEP_TF), rec_mode
        pushfl
        orl $EFL_TF, (%esp)
        popfl
s0:     movl $1, %eax
s1:     jmp s3
s2:     nop
s3:     nop
s4:     pushfl
        andl $~EFL_TF, (%esp)
        popfl
s5:     movl $(REC_KEEP_EIP | REC_DB_RF), rec_mode
        CHECK_EQ rec_n, $6, "step-trap-count"
        CHECK_EQ rec_log+0*REC_SIZE+REC_EIP, $s1, "step-1-eip"
        CHECK_EQ rec_log+1*REC_SIZE+REC_EIP, $s3, "step-2-eip-jump-target"
        CHECK_EQ rec_log+2*REC_SIZE+REC_EIP, $s4, "step-3-eip"
        CHECK_EQ rec_log+5*REC_SIZE+REC_EIP, $s5, "step-after-popf-clearing-tf"
        movl rec_log+REC_DR6, %eax
        CHECK_EQ %eax, $0xffff4ff0, "step-dr6-bs"
        movl rec_log+REC_EFL, %eax
        andl $EFL_TF, %eax
        CHECK_EQ %eax, $EFL_TF, "step-pushed-tf"

        /* ---- an instruction breakpoint on an instruction that then faults (#NP, fixed
         * by the handler and restarted): the fault's frame has RF=1, so the restart
         * does not hit the breakpoint again (one #DB, one #NP) */
        movl $0x0000ffff, gdt + SEL_NPD
        movl $0x00cf1200, gdt + SEL_NPD + 4
        SET_HOOK 11, $hook_fix_np
        REC_RESET
        movl $bpf, %eax
        movl %eax, %dr0
        SET_DR7 $0x1
        movw $SEL_NPD, %ax
bpf:    movw %ax, %fs
        SET_DR7 $0
        SET_HOOK 11, $hook_rec
        movl %fs, %eax
        CHECK_EQ %eax, $SEL_NPD, "bp-on-faulting-insn-completes"
        CHECK_EQ rec_log+0*REC_SIZE+REC_VEC, $1, "bp-on-faulting-insn-first-db"
        CHECK_EQ rec_log+1*REC_SIZE+REC_VEC, $11, "bp-on-faulting-insn-then-np"
        movl rec_log+1*REC_SIZE+REC_EFL, %eax
        andl $EFL_RF, %eax
        CHECK_EQ %eax, $EFL_RF, "bp-on-faulting-insn-np-pushed-rf"
        CHECK_EQ rec_n, $2, "bp-on-faulting-insn-no-second-db"
        movw $SEL_KDATA, %ax
        movw %ax, %fs
        movl $0, rec_mode
        ret

/* hook_fix_np: make the not-present segment present, then record and restart */
hook_fix_np:
        orb $0x80, gdt + SEL_NPD + 5
        jmp hook_rec

        .data
bp_runs: .long 0
        .balign 4
dvar:   .long 0
dvar2:  .long 0x1234
