/*
 * smc_call_loop.s -- benchmark (e): rewrite a whole instruction in another block, then call it.
 *
 * As smc_op_loop.s, but the rewritten instruction is the body of a small
 * function the loop calls (hot patching, a JIT's stub): the store hits a
 * block that is not running, and the call runs the new instruction.
 * ITERS iterations (0 means 2^32) of LOOP_INSNS instructions; the sum is
 * checked for ITERS < 2^24.
 */
        .include "lib.inc"

        .set LOOP_INSNS, 12

        .text
main:
        movl $ITERS, %ecx
        xorl %eax, %eax
        .balign 16
1:      movl %ecx, %edx
        andl $1, %edx
        movzbl smc_optab(%edx), %edx    /* 0x2d sub (even), 0x05 add (odd) */
        movl %ecx, %ebx
        shll $8, %ebx
        orl %ebx, %edx
        movl %edx, patched              /* opcode + imm[0..2] of the callee's instruction */
        call patched
        decl %ecx
        jnz 1b
        CHECK_EQ %eax, $((((ITERS & 1) * ((ITERS + 1) / 2)) - ((1 - (ITERS & 1)) * (ITERS / 2))) & 0xffffffff), "smc-call-loop-sum"
        ret

        .balign 64
patched:
        .byte 0x2d                      /* subl $imm32, %eax / addl $imm32, %eax */
        .long 0
        ret

        .data
smc_optab: .byte 0x2d, 0x05
