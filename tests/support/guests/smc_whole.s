/*
 * smc_whole.s -- self-modifying code that rewrites whole instructions.
 *
 * Each loop writes, before running it, a 5-byte instruction chosen by the
 * iteration number k (1..N): k%4 == 0 `add $k, %eax`, 1 `sub $k, %eax`,
 * 2 `inc %eax` + four nops (other instruction boundaries), 3 `jmp .+5`
 * (a control transfer where a plain instruction was).  A translator that
 * runs a stale translation of the slot gets a different sum.
 *   same:  the slot follows the stores in the same block
 *   other: the slot is the body of a function the loop calls
 *   cross: as other, the slot straddles a page boundary
 *   bytes: a store that rewrites a function with the bytes it already
 *          holds, then one that changes them (opcode and immediate)
 * The test builds it with N and the expected sums (EXP_SAME, EXP_BYTES)
 * as --defsym values.
 */
        .include "lib.inc"

        .text
main:
        call same_tb
        CHECK_EQ %eax, $EXP_SAME, "same-tb"
        call other_tb
        CHECK_EQ %eax, $EXP_SAME, "other-tb"
        call cross_tb
        CHECK_EQ %eax, $EXP_SAME, "page-crossing"
        call same_bytes
        CHECK_EQ %esi, $EXP_BYTES, "same-bytes-then-change"
        ret

/* in: ecx = k; out: edx = bytes 0..3 of variant k%4, bl = byte 4 */
variant:
        movl %ecx, %edx
        andl $3, %edx
        cmpl $2, %edx
        jae 1f
        movzbl optab(%edx), %edx
        movl %ecx, %ebx
        shll $8, %ebx
        orl %ebx, %edx
        movl %ecx, %ebx
        shrl $24, %ebx
        ret
1:      movl dwtab - 8(,%edx,4), %edx
        movb $0x90, %bl
        ret

same_tb:
        xorl %eax, %eax
        movl $N, %ecx
1:      call variant
        movl %edx, 2f
        movb %bl, 2f + 4
2:      .byte 0x90, 0x90, 0x90, 0x90, 0x90
        decl %ecx
        jnz 1b
        ret

other_tb:
        xorl %eax, %eax
        movl $N, %ecx
1:      call variant
        movl %edx, slot_other
        movb %bl, slot_other + 4
        call slot_other
        decl %ecx
        jnz 1b
        ret

cross_tb:
        xorl %eax, %eax
        movl $N, %ecx
1:      call variant
        movl %edx, slot_cross
        movb %bl, slot_cross + 4
        call slot_cross
        decl %ecx
        jnz 1b
        ret

/* esi += f() twice per iteration: once after rewriting f with its own
 * bytes, once after changing them (opcode add<->sub, immediate + 1). */
same_bytes:
        xorl %esi, %esi
        movl $N, %ecx
1:      call f_bytes
        addl %eax, %esi
        movl f_bytes + 2, %edx          /* the same bytes back: no change */
        movl %edx, f_bytes + 2
        movb f_bytes + 6, %dl
        movb %dl, f_bytes + 6
        call f_bytes
        addl %eax, %esi
        xorb $(0x05 ^ 0x2d), f_bytes + 2    /* add <-> sub */
        incl f_bytes + 3                /* the immediate */
        decl %ecx
        jnz 1b
        ret

        .balign 64
slot_other:
        .byte 0x90, 0x90, 0x90, 0x90, 0x90
        ret

f_bytes:
        xorl %eax, %eax                 /* 31 c0 */
        addl $0x1000, %eax              /* 05 imm32, at f_bytes + 2 */
        ret

        .balign 4096
        .skip 4096 - 2
slot_cross:                             /* bytes 0-1 on one page, 2-4 on the next */
        .byte 0x90, 0x90, 0x90, 0x90, 0x90
        ret

        .data
optab:  .byte 0x05, 0x2d
        .balign 4
dwtab:  .byte 0x40, 0x90, 0x90, 0x90    /* inc %eax; nop... */
        .byte 0xeb, 0x03, 0x90, 0x90    /* jmp .+5 */
