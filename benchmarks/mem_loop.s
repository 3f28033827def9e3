/*
 * mem_loop.s -- benchmark (b): loads and stores with paging on.
 *
 * Every access goes through the software TLB: a 16 KiB buffer at virtual
 * V_BUF is four 4 KiB pages on scattered frames; each outer iteration reads,
 * modifies and writes back every dword of it. ITERS outer iterations (0
 * means 2^32) of OUTER_INSNS instructions each.
 */
        .include "lib.inc"

        .set V_BUF, 0x40000000
        .set DWORDS, 4096
        .set OUTER_INSNS, 2 + 6 * DWORDS + 2

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
        movl $ITERS, %ebp
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
        /* dword i (counting ecx down from DWORDS) gained ITERS * (DWORDS - i) */
        CHECK_EQ V_BUF, $((ITERS*DWORDS)&0xffffffff), "mem-loop-first-dword"
        ret
