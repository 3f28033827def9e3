/*
 * cond.s -- the guest tests/e2e/test_conditions_e2e.py debugs with target-side
 * conditions, agent-style dprintf and the watch log.  Every value the tests
 * compare is known exactly from this source:
 *
 *  1. loop_top runs COUNT times with %ecx = COUNT..1; after the store of
 *     iteration i (1-based) counter = 3*i: `break *loop_top if $ecx == 7`
 *     stops once, with counter = 3*(COUNT-7); `if (int)counter > 40` stops
 *     first with counter = 42 (i = 15 at loop_top).  COUNT is above the
 *     translator's tier-2 threshold, so the loop's TB is compiled hot (and
 *     must still check its breakpoint on every iteration).
 *  2. dp_site runs DP_COUNT times with %ebx = 0..DP_COUNT-1 and %esi -> message
 *     (for a dprintf with %d and %s).
 *  3. wvar (initially 0x11) is written by known instructions: w1 stores 5,
 *     w2 stores 7, w3 stores 7 again, w4 adds 1 (read, then write 8), then
 *     the loop at wloop stores 100..104.
 *  4. bench_top loops BENCH_COUNT times (a breakpoint with a false condition
 *     there measures what one evaluation costs).
 *  5. lib.inc's finish exits with status 0 (isa-debug-exit: W01 for gdb).
 */
        .include "lib.inc"

        .set COUNT, 200                 /* > TIER2_THRESHOLD: the loop's TB gets hot */
        .set DP_COUNT, 10
        .set BENCH_COUNT, 20000

        .text
main:
        /* --- 1. a loop counting %ecx down, writing 3*i to counter */
        xorl %eax, %eax
        movl $COUNT, %ecx
loop_top:
        addl $3, %eax
store_insn:
        movl %eax, counter
after_store:
        decl %ecx
        jnz loop_top

        /* --- 2. the dprintf site */
        xorl %ebx, %ebx
        movl $message, %esi
dp_site:
        incl dp_hits
        incl %ebx
        cmpl $DP_COUNT, %ebx
        jb dp_site

        /* --- 3. known writes to wvar */
w1:     movl $5, wvar
w2:     movl $7, wvar
w3:     movl $7, wvar
w4:     addl $1, wvar
after_w4:
        movl $100, %eax
wloop:  movl %eax, wvar
        incl %eax
        cmpl $105, %eax
        jb wloop

        /* --- 4. a long loop for measuring the cost of a false condition at bench_top */
        movl $BENCH_COUNT, %ecx
bench_top:
        decl %ecx
        jnz bench_top
        ret

        .data
        .balign 4
counter:  .long 0
dp_hits:  .long 0
wvar:     .long 0x11
message:  .asciz "hello"
