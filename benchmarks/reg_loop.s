/*
 * reg_loop.s -- benchmark (a): a register-only loop.
 *
 * Measures the translated-code fast path with no memory access at all: the
 * cost of dispatching blocks and of the arithmetic and flag work inside
 * them. ITERS (as --defsym; 0 means 2^32, i.e. "until the instruction
 * budget runs out") iterations of LOOP_INSNS instructions.
 */
        .include "lib.inc"

        .set LOOP_INSNS, 5

        .text
main:
        movl $ITERS, %ecx
        xorl %eax, %eax
        xorl %edx, %edx
        xorl %ebx, %ebx
        .balign 16
1:      addl %ecx, %eax
        xorl %eax, %edx
        incl %ebx
        decl %ecx
        jnz 1b
        CHECK_EQ %ebx, $ITERS, "reg-loop-iterations"
        ret
