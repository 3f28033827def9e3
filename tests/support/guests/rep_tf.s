/*
 * rep_tf.s -- EFLAGS.TF over `rep stosl`: a #DB trap after each iteration (SDM vol. 1, 7.3.9.3).
 *
 * TF is set by popfl, so the first trap comes after the instruction that
 * follows it: the rep's first iteration.  Iterations 1..3 of 4 leave EIP on
 * the rep (the saved EIP of their #DB); the last leaves it after.  The exit
 * status is the number of #DB traps whose saved EIP is the rep (3 on
 * hardware and QEMU); tests/guests/test_rep_tf.py compares gdbemu with QEMU.
 */
        .include "lib.inc"

        .text
main:
        SET_HOOK 1, $count_db
        movl $buf, %edi
        movl $4, %ecx
        movl $0x5a5a5a5a, %eax
        pushfl
        orl $0x100, (%esp)
        popfl
tf_rep:
        rep stosl
        pushfl
        andl $0xfffffeff, (%esp)
        popfl
        movl at_rep, %eax
        jmp guest_exit

count_db:
        movl 4(%esp), %eax
        movl F_EIP(%eax), %eax
        cmpl $tf_rep, %eax
        jne 1f
        incl at_rep
1:      xorl %eax, %eax
        movl %eax, %dr6
        ret

        .data
        .balign 4
at_rep: .long 0
buf:    .fill 4, 4, 0
