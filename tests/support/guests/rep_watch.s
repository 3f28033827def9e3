/*
 * rep_watch.s -- gdb's software watchpoints over `rep stosl` (issue 14 item 8).
 *
 * gdb with `set can-use-hw-watchpoints 0` single-steps and compares the
 * watched value after every step; on hardware (TF traps after each
 * iteration) and on QEMU a step of a rep string instruction is one
 * iteration, so the change is seen at the rep itself, with ECX counting the
 * iterations left.  tests/e2e/test_rep_step_e2e.py watches buf[5].
 */
        .include "lib.inc"

        .set N, 8

        .text
main:
        movl $buf, %edi
        movl $N, %ecx
        movl $0x11111111, %eax
rep_insn:
        rep stosl
after_rep:
        movl $0x22222222, after_value
after_store:
        ret

        .data
        .balign 4
buf:            .fill N, 4, 0
after_value:    .long 0
