/*
 * reverse_loop.s -- the guest of benchmarks/reverse_bench.py.
 *
 * One store to `marker` (0x300000), then ITERS iterations of a loop of
 * LOOP_INSNS instructions that stores to another page (0x301000): the
 * history a reverse watch on `marker` must search back through.
 */
        .include "lib.inc"

        .set LOOP_INSNS, 4
        .set MARKER, 0x300000
        .set SCRATCH, 0x301000

        .text
main:
        movl $0x1234, MARKER
        .globl marker_written
marker_written:
        movl $ITERS, %ecx
        .balign 16
1:      movl %ecx, SCRATCH
        addl $1, %eax
        decl %ecx
        jnz 1b
        ret
