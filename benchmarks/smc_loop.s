/*
 * smc_loop.s -- benchmark (c): self-modifying code in a loop.
 *
 * Each iteration stores the loop counter into the imm32 of the add that
 * follows in the same block, then executes it: the worst case for a
 * translated-code cache (invalidate, restart, retranslate every time).
 * ITERS iterations (0 means 2^32) of LOOP_INSNS instructions.
 */
        .include "lib.inc"

        .set LOOP_INSNS, 4

        .text
main:
        movl $ITERS, %ecx
        xorl %eax, %eax
        .balign 16
1:      movl %ecx, 2f + 1
2:      addl $0x7fffffff, %eax          /* 05 imm32: patched every iteration */
        decl %ecx
        jnz 1b
        /* sum of 1..ITERS, mod 2^32 */
        CHECK_EQ %eax, $(((ITERS*(ITERS+1))/2)&0xffffffff), "smc-loop-sum"
        ret
