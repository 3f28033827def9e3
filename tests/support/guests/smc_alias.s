/*
 * smc_alias.s -- self-modifying code through a virtual alias: two virtual
 * pages map one physical frame; the code is written through the data alias
 * (and through the identity map) and executed through the code alias.
 *
 * Why: translated code must be tracked by physical frame. A store through
 * V_DATA never touches V_CODE's TLB entry or virtual page, so a cache keyed
 * or protected by virtual address keeps running the stale block. The code
 * runs WARM times before each patch so a block is certainly cached, and
 * nothing between the warm runs and the patch flushes TLB or code cache
 * (no invlpg, no CR3/CR0/CR4 write): only write tracking can make it pass.
 * It is a program of its own so the test can check its statistics.
 */
        .include "lib.inc"

        .set V_CODE,  0x40060000        /* code alias of F_CODE */
        .set V_DATA,  0x40070000        /* data alias of F_CODE */
        .set F_CODE,  FRAMES + 0x40000
        .set WARM,    50                /* runs before patching, so the block is cached */

        .text
main:
        call pt_reset
        movl $V_CODE, %eax
        movl $(F_CODE | PG_PW), %edx
        call map_page
        movl $V_DATA, %eax
        call map_page
        xorl %eax, %eax
        call paging_on
        call smc_alias
        ret

/* (d) one frame, two virtual pages: write through V_DATA, run through V_CODE. */
smc_alias:
        movl $V_DATA, %edi
        movl $tpl_alias, %esi
        movl $(tpl_alias_end - tpl_alias), %ecx
        call memcpy_slow
        call run_alias_warm
        CHECK_EQ %eax, $(WARM*0xd0), "d-alias-initial"
        movl $0xd1, V_DATA + 1
        movl $V_CODE, %eax
        call *%eax
        CHECK_EQ %eax, $0xd1, "d-alias-after-data-write"
        call run_alias_warm
        CHECK_EQ %eax, $(WARM*0xd1), "d-alias-stays-new"
        movl $0xd2, V_DATA + 1
        call run_alias_warm
        CHECK_EQ %eax, $(WARM*0xd2), "d-alias-second-write"
        movl $0xd3, F_CODE + 1          /* third alias: the identity map */
        movl $V_CODE, %eax
        call *%eax
        CHECK_EQ %eax, $0xd3, "d-alias-identity-write"
        movb $0x40, V_DATA + 5          /* ret -> incl %eax, the ret moves on */
        movb $0xc3, V_DATA + 6
        movl $V_CODE, %eax
        call *%eax
        CHECK_EQ %eax, $0xd4, "d-alias-opcode-rewrite"
        ret

/* run_alias_warm -> eax = sum of WARM calls of V_CODE */
run_alias_warm:
        pushl %ebx
        pushl %ecx
        xorl %ebx, %ebx
        movl $WARM, %ecx
1:      movl $V_CODE, %eax
        call *%eax
        addl %eax, %ebx
        decl %ecx
        jnz 1b
        movl %ebx, %eax
        popl %ecx
        popl %ebx
        ret

tpl_alias:
        movl $0xd0, %eax                /* b8 imm32: the imm is at +1 */
        ret
tpl_alias_end:

