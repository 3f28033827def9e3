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
 * patches itself, (f) register a block that spans two pages on both of
 * them, and (g) still see every other kind of rewrite on a page that
 * constant patching has made "SMC-hot" (where a translator may stop baking
 * immediates into its code), including (h) bytes that are an immediate
 * of one instruction and opcodes of another. (d), code written through a virtual alias, is smc_alias.s, so that
 * its statistics can be checked on their own. (a)-(c) and (e) run twice:
 * with paging off and with paging on; (f) needs paging.
 */
        .include "lib.inc"

        .set V_CC,    0x40080000        /* two code pages on non-contiguous frames */
        .set F_CC1,   FRAMES + 0x43000
        .set F_CC2,   FRAMES + 0x41000
        .set V_CD,    0x40090000        /* data alias of F_CC2 only */
        .set WARM,    50                /* runs before patching, so the block is cached */
        .set HOT,     100               /* calls per check in (g) */

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

        call smc_c3                     /* a string store over the next insn */
        CHECK_EQ %eax, $0x90, "c-rep-stosb-over-next-insn"
        CHECK_EQ %ecx, $0, "c-rep-stosb-over-next-insn-ecx"

        /* (e) a loop that patches its own immediate every iteration */
        call smc_e
        CHECK_EQ %eax, $5050, "e-loop-sum"
        CHECK_EQ e_add+1, $1, "e-loop-final-imm"
        call smc_e
        CHECK_EQ %eax, $5050, "e-loop-sum-again"

        /* (g) a page made SMC-hot by many patches of one immediate, in a block
         * hot enough for any tiered translator: afterwards every other kind
         * of rewrite on it (an imm byte, an imm8, the opcode, a displacement,
         * a jump offset) must still take effect; each is checked over HOT
         * calls so blocks rebuilt after the rewrite get hot again too */
        call g_reset
        xorl %ebx, %ebx
        movl $300, %ecx
1:      movl %ecx, g_imm + 1
        xorl %eax, %eax
        call g_func
        subl %ecx, %eax
        cmpl $0x1101, %eax              /* var1 0x1000 + imm8 1 + j1 0x100 */
        je 2f
        incl %ebx
2:      decl %ecx
        jnz 1b
        CHECK_EQ %ebx, $0, "g-hot-warm-imm-patches"
        movl $5, g_imm + 1
        movl $(5+0x1101), %esi
        call g_check
        CHECK_EQ %eax, $0, "g-hot-imm32-patch"
        movb $0x07, g_imm + 2           /* one byte inside the imm32 */
        movl $(0x705+0x1101), %esi
        call g_check
        CHECK_EQ %eax, $0, "g-hot-imm32-byte-patch"
        movb $0x03, g_imm8 + 2
        movl $(0x705+0x1103), %esi
        call g_check
        CHECK_EQ %eax, $0, "g-hot-imm8-patch"
        movb $0x2d, g_imm               /* add -> sub eax, imm32 */
        movl $((0x1103-0x705)&0xffffffff), %esi
        call g_check
        CHECK_EQ %eax, $0, "g-hot-opcode-rewrite"
        movb $0x05, g_imm
        movl $g_var2, g_mov + 2         /* the load's disp32 */
        movl $(0x705+0x2103), %esi
        call g_check
        CHECK_EQ %eax, $0, "g-hot-disp32-rewrite"
        movl $(g_j2 - (g_jmp + 5)), g_jmp + 1
        movl $(0x705+0x2203), %esi
        call g_check
        CHECK_EQ %eax, $0, "g-hot-jump-rewrite"

        /* (h) overlapping instructions on the hot page: h2 starts inside
         * h1's imm32, so the same bytes are an immediate to one block and
         * opcodes to another; a patch must reach both */
        movl $0x90909090, h1 + 1
        movl $h1, %edi
        movl $0x90909090, %esi
        call h_check
        CHECK_EQ %eax, $0, "h-overlap-imm-before"
        movl $h2, %edi
        movl $7, %esi
        call h_check
        CHECK_EQ %eax, $0, "h-overlap-nops-before"
        movb $0x40, h1 + 1              /* nop -> incl %eax inside the imm */
        movl $h1, %edi
        movl $0x90909040, %esi
        call h_check
        CHECK_EQ %eax, $0, "h-overlap-imm-after"
        movl $h2, %edi
        movl $8, %esi
        call h_check
        CHECK_EQ %eax, $0, "h-overlap-opcode-after"

        /* (i) more immediate forms on the hot page -- sign-extended imm8,
         * push imm8, a 16-bit imm, a mov imm32 to memory -- and stores that
         * span an immediate and the bytes around it (ModRM, next opcode) */
        call i_reset
        movl $0x1117, %esi
        call i_check
        CHECK_EQ %eax, $0, "i-hot-baseline"
        movb $0xfe, i_add8 + 2          /* +1 -> -2 */
        movl $0x1114, %esi
        call i_check
        CHECK_EQ %eax, $0, "i-hot-imm8-sign-extended"
        movb $0xf0, i_push + 1          /* push 5 -> push -16 */
        movl $0x10ff, %esi
        call i_check
        CHECK_EQ %eax, $0, "i-hot-push-imm8-sign-extended"
        movw $0x8000, i_w16 + 2
        movl $0x8fff, %esi
        call i_check
        CHECK_EQ %eax, $0, "i-hot-imm16"
        movl $0x3000, i_mi + 6
        movl $0xafff, %esi
        call i_check
        CHECK_EQ %eax, $0, "i-hot-mov-imm32-to-mem"
        movw $0x03e8, i_add8 + 1        /* ModRM c0 -> e8 (add -> sub), imm 3 */
        movl $0xaffe, %esi
        call i_check
        CHECK_EQ %eax, $0, "i-hot-store-spans-modrm-and-imm"
        movl $0x052b0001, i_mi + 8      /* imm 0x13000; next add -> sub */
        movl $0xffff4ffe, %esi
        call i_check
        CHECK_EQ %eax, $0, "i-hot-store-spans-imm-and-next-opcode"
        ret

/* i_reset: i_func as assembled (the suite runs twice) */
i_reset:
        movl $i_tpl, %esi
        movl $i_func, %edi
        movl $(i_tpl_end - i_tpl), %ecx
        call memcpy_slow
        movl $i_var, i_mi + 2
        movl $i_var, i_add + 2
        ret

/* i_check(esi = expected) -> eax = how many of HOT calls of i_func (eax=0 in) differ */
i_check:
        pushl %ebx
        pushl %ecx
        xorl %ebx, %ebx
        movl $HOT, %ecx
1:      xorl %eax, %eax
        call i_func
        cmpl %esi, %eax
        je 2f
        incl %ebx
2:      decl %ecx
        jnz 1b
        movl %ebx, %eax
        popl %ecx
        popl %ebx
        ret

/* h_check(edi = function, esi = expected, eax = 7 on entry of each call)
 * -> eax = how many of HOT calls differ */
h_check:
        pushl %ebx
        pushl %ecx
        xorl %ebx, %ebx
        movl $HOT, %ecx
1:      movl $7, %eax
        call *%edi
        cmpl %esi, %eax
        je 2f
        incl %ebx
2:      decl %ecx
        jnz 1b
        movl %ebx, %eax
        popl %ecx
        popl %ebx
        ret

/* g_reset: g_func as assembled (the suite runs twice) */
g_reset:
        movl $0x7fffffff, g_imm + 1
        movb $0x05, g_imm
        movb $0x01, g_imm8 + 2
        movl $g_var1, g_mov + 2
        movl $(g_j1 - (g_jmp + 5)), g_jmp + 1
        ret

/* g_check(esi = expected) -> eax = how many of HOT calls of g_func differ */
g_check:
        pushl %ebx
        pushl %ecx
        xorl %ebx, %ebx
        movl $HOT, %ecx
1:      xorl %eax, %eax
        call g_func
        cmpl %esi, %eax
        je 2f
        incl %ebx
2:      decl %ecx
        jnz 1b
        movl %ebx, %eax
        popl %ecx
        popl %ebx
        ret

        .balign 4096                    /* g_func and h1 share a page of their own */
g_func:
g_imm:  addl $0x7fffffff, %eax          /* 05 imm32 */
g_imm8: .byte 0x83, 0xc0, 0x01          /* addl $1, %eax (83 /0 ib) */
g_mov:  movl g_var1, %edx               /* 8b 15 disp32 */
        addl %edx, %eax
g_jmp:  .byte 0xe9                      /* jmp rel32 */
        .long g_j1 - (g_jmp + 5)
g_j1:   addl $0x100, %eax
        ret
g_j2:   addl $0x200, %eax
        ret

h1:     .byte 0xb8                      /* movl $imm32, %eax */
h2:     .byte 0x90, 0x90, 0x90, 0x90    /* imm32 of h1 = four nops from h2 */
        ret

/* i_func: eax = 0x11 + 1 + 5 + 0x100 + 0x1000 as assembled (offsets fixed by
 * the explicit encodings: the checks patch fields by offset) */
i_func:
        movb $0x11, %al
i_add8: .byte 0x83, 0xc0, 0x01          /* addl $1, %eax (imm8, sign-extended) */
i_push: .byte 0x6a, 0x05                /* pushl $5 (imm8, sign-extended) */
        popl %edx
        addl %edx, %eax
        xorl %edx, %edx
i_w16:  .byte 0x66, 0xba                /* movw $0x100, %dx */
        .word 0x0100
        addl %edx, %eax
i_mi:   .byte 0xc7, 0x05                /* movl $0x1000, i_var */
        .long i_var
        .long 0x1000
i_add:  .byte 0x03, 0x05                /* addl i_var, %eax */
        .long i_var
        ret
i_end:
        .balign 4096

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

/* smc_c3 -> eax: rep stosb writes five nops over the mov that follows it,
 * in the same block (the mov is restored first: the suite runs twice).
 * eax = 0x90 (the stos byte) if the nops ran, 0x33 if the stale mov did. */
smc_c3:
        movb $0xb8, c3_next
        movl $0x33, c3_next + 1
        movl $c3_next, %edi
        movl $5, %ecx
        xorl %eax, %eax
        movb $0x90, %al
        rep stosb
c3_next:
        movl $0x33, %eax
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

/* pristine copy of i_func (same bytes; disp32 fields are re-set by i_reset) */
i_tpl:
        movb $0x11, %al
        .byte 0x83, 0xc0, 0x01
        .byte 0x6a, 0x05
        popl %edx
        addl %edx, %eax
        xorl %edx, %edx
        .byte 0x66, 0xba
        .word 0x0100
        addl %edx, %eax
        .byte 0xc7, 0x05
        .long 0
        .long 0x1000
        .byte 0x03, 0x05
        .long 0
        ret
i_tpl_end:

        .data
i_var:  .long 0
g_var1: .long 0x1000
g_var2: .long 0x2000
        .text
tpl_two:
        nop
        nop
        nop
        movl $0x10000000, %eax          /* ffd..1001 */
        addl $0x00000f01, %eax          /* 05 imm32 at 1002..1006, imm at 1003 */
        ret
tpl_two_end:
