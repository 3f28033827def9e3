/*
 * exc_shadow.s -- the one-instruction shadow after MOV SS / POP SS, seen
 * through EFLAGS.TF single-step traps, and the absence of one after STI.
 *
 * Why: a kernel switches stacks with "mov ss, ...; mov esp, ..." and relies
 * on nothing (interrupt, NMI, debug trap) being delivered between the two
 * instructions, on the half-switched stack (SDM vol. 3, 6.8.3: "the
 * processor inhibits interrupts, debug exceptions, and single-step trap
 * exceptions after either a MOV to SS instruction or a POP to SS
 * instruction, until the instruction boundary following the next
 * instruction is reached").  STI's shadow delays maskable interrupts only
 * (SDM vol. 2 STI): a single-step trap after STI is not delayed.  This guest
 * has no interrupt controller to test the interrupt half of the shadows with
 * (tests/guests/test_exceptions.py does that on the core with a fake interrupt
 * source); single-step traps show the debug half.
 */
        .include "exc_common.inc"

main:
        call hook_all_rec
        call pic_mask_all
        movl $(REC_KEEP_EIP | REC_KEEP_TF), rec_mode

        /* ---- mov ss: no trap after it; the next instruction traps */
        REC_RESET
        movw %ss, %cx
        pushfl
        orl $EFL_TF, (%esp)
        popfl
a0:     nop
a1:     movw %cx, %ss
a2:     nop
a3:     nop
a4:     pushfl
        andl $~EFL_TF, (%esp)
        popfl
a5:     CHECK_EQ rec_n, $6, "movss-trap-count"
        CHECK_EQ rec_log+0*REC_SIZE+REC_EIP, $a1, "movss-trap-before"
        CHECK_EQ rec_log+1*REC_SIZE+REC_EIP, $a3, "movss-no-trap-after-movss"
        CHECK_EQ rec_log+2*REC_SIZE+REC_EIP, $a4, "movss-traps-resume"
        movl rec_log+1*REC_SIZE+REC_DR6, %eax
        CHECK_EQ %eax, $0xffff4ff0, "movss-delayed-trap-dr6-bs"

        /* ---- pop ss: the same */
        REC_RESET
        pushl %ss
        pushfl
        orl $EFL_TF, (%esp)
        popfl
b0:     nop
b1:     popl %ss
b2:     nop
b3:     nop
        pushfl
        andl $~EFL_TF, (%esp)
        popfl
        CHECK_EQ rec_n, $6, "popss-trap-count"
        CHECK_EQ rec_log+0*REC_SIZE+REC_EIP, $b1, "popss-trap-before"
        CHECK_EQ rec_log+1*REC_SIZE+REC_EIP, $b3, "popss-no-trap-after-popss"

        /* ---- sti: the single-step trap right after it (IF=1 only briefly; the PIC is masked) */
        REC_RESET
        pushfl
        orl $EFL_TF, (%esp)
        popfl
d0:     nop
d1:     sti
d2:     cli
d3:     pushfl
        andl $~EFL_TF, (%esp)
        popfl
        CHECK_EQ rec_log+0*REC_SIZE+REC_EIP, $d1, "sti-trap-before"
        CHECK_EQ rec_log+1*REC_SIZE+REC_EIP, $d2, "sti-traps-right-after"
        movl rec_log+1*REC_SIZE+REC_EFL, %eax
        andl $EFL_IF, %eax
        CHECK_EQ %eax, $EFL_IF, "sti-trap-frame-if-set"
        CHECK_EQ rec_log+2*REC_SIZE+REC_EIP, $d3, "sti-then-cli-traps"
        movl $0, rec_mode
        ret
