/*
 * hostpatch.s -- code rewritten from outside the guest, by m.mem.write.
 *
 * Why: the debugger (GDB stub memory writes, software breakpoints) and
 * device DMA change guest RAM without a guest store. Translated code built
 * from those bytes must be dropped just the same. The guest calls a function
 * through a virtual alias (paging on, so the host's physical write and the
 * guest's virtual fetch share nothing but the frame) until its return value
 * changes; the test (test_guests.py) lets the block get hot, then patches
 * the function's immediate from the host, twice.
 */
        .include "lib.inc"

        .set V_HP, 0x40100000           /* code alias of hp_page */

        .text
main:
        call pt_reset
        movl $V_HP, %eax
        movl $hp_page, %edx
        orl $PG_PW, %edx
        call map_page
        xorl %eax, %eax
        call paging_on
        movl $0x600d0001, %esi
        call wait_for
        CHECK_EQ %eax, $0x600d0001, "host-write-1-seen"
        movl $0x600d0002, %esi
        call wait_for
        CHECK_EQ %eax, $0x600d0002, "host-write-2-seen"
        ret

/* wait_for(esi): call the alias of hp_func until it returns esi */
wait_for:
1:      movl $(V_HP + (hp_func - hp_page)), %eax
        call *%eax
        cmpl %esi, %eax
        jne 1b
        ret

        .balign 4096
        .globl hp_page, hp_func, hp_imm
hp_page:
hp_func:
        .byte 0xb8                      /* movl $imm32, %eax */
hp_imm: .long 0x0bad0bad
        ret
        .balign 4096
