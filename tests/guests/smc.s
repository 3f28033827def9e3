/*
 * smc.s -- self-modifying code, the case a translated-code cache must get
 * right or silently run stale instructions.
 *
 * Why: x86 guarantees that a store to code is seen by the next fetch of the
 * modified bytes, even inside the block being executed. An emulator that
 * caches translated blocks must (a) notice a store into the *current* block
 * that rewrites a later instruction and stop the block before it, (b) drop a
 * block that already ran when its bytes change, (c) handle a store into the
 * very next instruction, (e) keep doing so every iteration of a loop that
 * patches itself, and (f) register a block that spans two pages on both of
 * them. (d), code written through a virtual alias, is smc_alias.s, so that
 * its statistics can be checked on their own. (a)-(c) and (e) run twice:
 * with paging off and with paging on; (f) needs paging.
 */
        .include "lib.inc"

        .set V_CC,    0x40080000        /* two code pages on non-contiguous frames */
        .set F_CC1,   FRAMES + 0x43000
        .set F_CC2,   FRAMES + 0x41000
        .set V_CD,    0x40090000        /* data alias of F_CC2 only */
        .set WARM,    50                /* runs before patching, so the block is cached */

        .text
main:
        SET_PREFIX "nopg"
        call smc_suite
        call pt_reset
        movl $V_CC, %eax
        movl $(F_CC1 | PG_PW), %edx
        call map_page
        movl $(V_CC + 0x1000), %eax
        movl $(F_CC2 | PG_PW), %edx
        call map_page
        movl $V_CD, %eax
        call map_page
        xorl %eax, %eax
        call paging_on
        SET_PREFIX "pg"
        call smc_suite
        call smc_two_pages
        CLEAR_PREFIX
        ret

/* (a), (b), (c), (e) -- identical checks in both paging modes. */
smc_suite:
        /* (a) a store rewrites an instruction later in the same block */
        movl $0x11111111, a_target + 1
        movl $0xa0000001, %edx
        call smc_a
        CHECK_EQ %eax, $0xa0000001, "a-same-block-1"
        movl $0xa0000002, %edx
        call smc_a
        CHECK_EQ %eax, $0xa0000002, "a-same-block-2"
        movl $0xa0000003, %edx
        call smc_a
        CHECK_EQ %eax, $0xa0000003, "a-same-block-3"

        /* (b) rewrite a block that already ran, from another block */
        movl $b_func, %edi              /* restore the original body */
        movl $tpl_b0, %esi
        movl $(tpl_b0_end - tpl_b0), %ecx
        call memcpy_slow
        call b_func
        CHECK_EQ %eax, $0x11111111, "b-before"
        movl $0xb0000001, b_func + 1
        call b_func
        CHECK_EQ %eax, $0xb0000001, "b-after-store-1"
        movl $0xb0000002, b_func + 1
        call b_func
        CHECK_EQ %eax, $0xb0000002, "b-after-store-2"
        movl $b_func, %edi              /* a string store as the writer */
        movl $tpl_b, %esi
        movl $(tpl_b_end - tpl_b), %ecx
        rep movsb
        call b_func
        CHECK_EQ %eax, $0xb0000003, "b-after-rep-movsb"
        movl $b_func, %edi              /* two instructions replaced by one */
        movl $tpl_b2, %esi
        movl $(tpl_b2_end - tpl_b2), %ecx
        call memcpy_slow
        movl $5, %eax
        call b_func
        CHECK_EQ %eax, $6, "b-new-instruction-boundaries"

        /* (c) a store into the instruction right after the store */
        movl $0xc0000001, %edx
        call smc_c
        CHECK_EQ %eax, $0xc0000001, "c-next-insn-imm-1"
        movl $0xc0000002, %edx
        call smc_c
        CHECK_EQ %eax, $0xc0000002, "c-next-insn-imm-2"
        movb $0x40, %dl                 /* incl %eax */
        call smc_c2
        CHECK_EQ %eax, $6, "c-next-insn-opcode-inc"
        movb $0x48, %dl                 /* decl %eax */
        call smc_c2
        CHECK_EQ %eax, $4, "c-next-insn-opcode-dec"
        movb $0x90, %dl                 /* nop */
        call smc_c2
        CHECK_EQ %eax, $5, "c-next-insn-opcode-nop"

        /* (e) a loop that patches its own immediate every iteration */
        call smc_e
        CHECK_EQ %eax, $5050, "e-loop-sum"
        CHECK_EQ e_add+1, $1, "e-loop-final-imm"
        call smc_e
        CHECK_EQ %eax, $5050, "e-loop-sum-again"
        ret

smc_a:
        movl %edx, a_target + 1
        nop
        addl $0, %ebx
a_target:
        movl $0x11111111, %eax
        ret

b_func:
        movl $0x11111111, %eax
        ret
        nop
        nop
tpl_b0:
        movl $0x11111111, %eax
        ret
tpl_b0_end:
tpl_b:
        movl $0xb0000003, %eax
        ret
tpl_b_end:
tpl_b2:
        incl %eax
        ret
tpl_b2_end:

smc_c:
        movl %edx, c_next + 1
c_next:
        movl $0, %eax
        ret

smc_c2:
        movl $5, %eax
        movb %dl, c2_next
c2_next:
        nop
        ret

smc_e:
        xorl %eax, %eax
        movl $100, %ecx
1:      movl %ecx, e_add + 1
e_add:
        addl $0x7fffffff, %eax          /* 05 imm32: the imm is at +1 */
        decl %ecx
        jnz 1b
        ret

/* (f) a block spanning two pages: a write to the second page only must
 * invalidate it. Layout at V_CC+0xffa: 3 nops, mov imm32 (split 3+2),
 * add imm32 wholly in the second page, ret. */
smc_two_pages:
        movl $(F_CC1 + 0xffa), %edi
        movl $tpl_two, %esi
        movl $6, %ecx
        call memcpy_slow
        movl $F_CC2, %edi
        movl $(tpl_two + 6), %esi
        movl $(tpl_two_end - tpl_two - 6), %ecx
        call memcpy_slow
        call run_two_warm
        CHECK_EQ %eax, $((WARM*0x10000f01)&0xffffffff), "f-two-pages-initial"
        movl $0x00000f02, V_CD + 3      /* add's imm: second page only */
        movl $(V_CC + 0xffa), %eax
        call *%eax
        CHECK_EQ %eax, $0x10000f02, "f-second-page-insn-rewrite"
        call run_two_warm
        CHECK_EQ %eax, $((WARM*0x10000f02)&0xffffffff), "f-stays-new"
        movw $0x2000, V_CD              /* high half of the straddling mov's imm */
        movl $(V_CC + 0xffa), %eax
        call *%eax
        CHECK_EQ %eax, $0x20000f02, "f-straddling-insn-rewrite"
        ret

run_two_warm:
        pushl %ebx
        pushl %ecx
        xorl %ebx, %ebx
        movl $WARM, %ecx
1:      movl $(V_CC + 0xffa), %eax
        call *%eax
        addl %eax, %ebx
        decl %ecx
        jnz 1b
        movl %ebx, %eax
        popl %ecx
        popl %ebx
        ret

tpl_two:
        nop
        nop
        nop
        movl $0x10000000, %eax          /* ffd..1001 */
        addl $0x00000f01, %eax          /* 05 imm32 at 1002..1006, imm at 1003 */
        ret
tpl_two_end:
