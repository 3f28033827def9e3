/*
 * smc_op_loop.s -- benchmark (d): rewrite a whole instruction in the same block.
 *
 * Each iteration builds a 4-byte store that rewrites the opcode byte and the
 * low three bytes of the imm32 of the instruction at 2: (add or sub by the
 * parity of the counter), then falls into it: a store into the running
 * block that changes what the next instruction *is*, not only a constant.
 * ITERS iterations (0 means 2^32) of LOOP_INSNS instructions; the sum is
 * checked for ITERS < 2^24 (the immediate holds the counter's low 24 bits).
 */
        .include "lib.inc"

        .set LOOP_INSNS, 10

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
        movl %edx, 2f                   /* opcode + imm[0..2] of the next instruction */
2:      .byte 0x2d                      /* subl $imm32, %eax / addl $imm32, %eax */
        .long 0
        decl %ecx
        jnz 1b
        /* +k for odd k, -k for even k, k = 1..ITERS */
        CHECK_EQ %eax, $((((ITERS & 1) * ((ITERS + 1) / 2)) - ((1 - (ITERS & 1)) * (ITERS / 2))) & 0xffffffff), "smc-op-loop-sum"
        ret

        .data
smc_optab: .byte 0x2d, 0x05
