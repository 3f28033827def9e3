/*
 * gdb_bench.s -- the guest benchmarks/gdb_bench.py debugs (on gdbemu and on QEMU).
 *
 * Two parts, sized by variables gdb writes before running them:
 *
 * 1. A loop that stores its counter to `hit_var` (`hit_iters` iterations):
 *    the place for a breakpoint (`hit_insn`), a write watchpoint (`hit_var`)
 *    and single steps -- the per-hit and per-step round-trip timings.
 * 2. benchmarks/mem_loop.s's loop (loads and stores through a 16 KiB
 *    buffer at 0x40000000, four 4 KiB pages on scattered frames, paging
 *    on), run in batches of `batch_iters` outer iterations; every batch ends
 *    at `batch_done`, where the benchmark keeps a breakpoint.  Timing batches
 *    of N and 3N iterations and taking the difference cancels what a stop
 *    costs, leaving the loop's own speed, with and without watchpoints on
 *    pages the loop never touches (linear 0x220000 and up are mapped but
 *    never accessed).
 *
 * Left alone (no gdb, or gdb only continuing), it runs 1000 hit iterations
 * and `batch_limit` = 1 batch of 1 iteration, then exits with status 0, so
 * it also runs on QEMU and on gdbemu without a debugger.
 */
        .include "lib.inc"

        .set V_BUF, 0x40000000
        .set DWORDS, 4096

        .text
main:
        call pt_reset
        movl $V_BUF, %eax
        movl $(FRAMES + 0x3000 + PG_PW), %edx
        call map_page
        movl $(V_BUF + 0x1000), %eax
        movl $(FRAMES + 0x1000 + PG_PW), %edx
        call map_page
        movl $(V_BUF + 0x2000), %eax
        movl $(FRAMES + 0x7000 + PG_PW), %edx
        call map_page
        movl $(V_BUF + 0x3000), %eax
        movl $(FRAMES + 0x5000 + PG_PW), %edx
        call map_page
        xorl %eax, %eax
        call paging_on
paging_ready:

        /* --- 1. the hit loop */
        xorl %eax, %eax
        .balign 16
hit_loop:
        incl %eax
hit_insn:
        movl %eax, hit_var
        cmpl hit_iters, %eax
        jb hit_loop

        /* --- 2. memory batches */
mem_batches:
        movl batch_iters, %ebp
        .balign 16
2:      movl $V_BUF, %esi
        movl $DWORDS, %ecx
1:      movl (%esi), %eax
        addl %ecx, %eax
        movl %eax, (%esi)
        addl $4, %esi
        decl %ecx
        jnz 1b
        decl %ebp
        jnz 2b
        jmp batch_done

        /* On a page of its own: QEMU (7.x) limits TBs to one instruction on any
         * page holding a gdb breakpoint, which would slow its loop a hundredfold. */
        .balign 4096
batch_done:
        incl batches
        movl batches, %eax
        cmpl batch_limit, %eax
        jb mem_batches
        ret

        .data
        .balign 4096                    /* the loop's variables on a page of their own */
hit_var:        .long 0
hit_iters:      .long 1000
batch_iters:    .long 1
batch_limit:    .long 1
batches:        .long 0
