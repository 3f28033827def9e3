/*
 * tlbctx.s -- address spaces across CR3 writes; descriptor tables rewritten in place.
 *
 * Why: a TLB that keeps each address space's entries across CR3 writes
 * (instead of refilling them after every switch) must still give the guest
 * exactly what a flush gives: any page-table word changed while the space
 * was not current -- a PTE remapped, cleared, write-protected, its A bit
 * cleared, a PDE pointing at another table, an entry that sat in the victim
 * TLB -- takes effect when the space comes back, and so does a change to
 * the current space followed by a reload of the same CR3.  Descriptor and
 * gate reads must follow the tables in memory: a GDT descriptor rewritten
 * in place and reloaded gives its new base (or #NP once not present), the
 * accessed bit is set in memory, an IDT gate rewritten in place sends the
 * next INT to the new handler, and a GDT at an alias reads the frame the
 * current CR3 maps.
 */
        .include "lib.inc"

        .set V_DATA,  0x40000000        /* TLB slot 0 */
        .set V_CONF,  0x40100000        /* the same slot as V_DATA */
        .set V_CODE,  0x40801000        /* another page table */
        .set V_GDT,   0x48000000        /* GDT alias: A -> gdt's frame, B -> F_GDT2 */
        .set F_A1,    FRAMES + 0x1000
        .set F_A2,    FRAMES + 0x2000
        .set F_A3,    FRAMES + 0x3000
        .set F_B1,    FRAMES + 0x4000
        .set F_CONF,  FRAMES + 0x5000
        .set F_CODE1, FRAMES + 0x6000
        .set F_CODE2, FRAMES + 0x7000
        .set F_SEG1,  FRAMES + 0x8000   /* bases of SEL_X1 */
        .set F_SEG2,  FRAMES + 0x9000
        .set F_GDT2,  FRAMES + 0xa000   /* B's copy of the GDT page */
        .set VEC_NP,  11
        .set VEC_T,   0x40              /* the gate rewritten in place */

        .text
tpl_ret1:
        movl $1, %eax
        ret
tpl_ret1_end:
tpl_ret2:
        movl $2, %eax
        ret
tpl_ret2_end:

gate_h1:
        movl $0x11, gate_seen
        iret
gate_h2:
        movl $0x22, gate_seen
        iret

/* to_a / to_b: load the directory of space A / B into CR3. */
to_a:
        pushl %eax
        movl dir_a, %eax
        movl %eax, %cr3
        popl %eax
        ret
to_b:
        pushl %eax
        movl dir_b, %eax
        movl %eax, %cr3
        popl %eax
        ret

main:
        /* ---- frames and code, paging off */
        movl $0xa1a1a1a1, F_A1
        movl $0xa2a2a2a2, F_A2
        movl $0xa3a3a3a3, F_A3
        movl $0xb1b1b1b1, F_B1
        movl $0xc0c0c0c0, F_CONF
        movl $0x5e610001, F_SEG1 + 0x10
        movl $0x5e620002, F_SEG2 + 0x10
        movl $F_CODE1, %edi
        movl $tpl_ret1, %esi
        movl $(tpl_ret1_end - tpl_ret1), %ecx
        call memcpy_slow
        movl $F_CODE2, %edi
        movl $tpl_ret2, %esi
        movl $(tpl_ret2_end - tpl_ret2), %ecx
        call memcpy_slow

        /* ---- space A */
        call pt_reset
        movl pd_cur, %eax
        movl %eax, dir_a
        movl $V_DATA, %eax
        movl $(F_A1 | PG_PW), %edx
        call map_page
        call pte_ptr
        movl %eax, pte_a_data
        movl $V_CONF, %eax
        movl $(F_CONF | PG_PW), %edx
        call map_page
        movl $V_CODE, %eax
        movl $(F_CODE1 | PG_PW), %edx
        call map_page
        call pte_ptr
        movl %eax, pte_a_code
        movl $V_GDT, %eax
        movl $gdt, %edx
        andl $0xfffff000, %edx
        orl $PG_PW, %edx
        call map_page
        xorl %eax, %eax
        call paging_on

        /* ---- space B: V_DATA -> F_B1, the GDT alias -> a copy with another X1 base */
        call pd_new
        movl %eax, dir_b
        movl $V_DATA, %eax
        movl $(F_B1 | PG_PW), %edx
        call map_page
        movl $V_CODE, %eax
        movl $(F_CODE1 | PG_PW), %edx
        call map_page
        movl $V_GDT, %eax
        movl $(F_GDT2 | PG_PW), %edx
        call map_page

        /* ---- both spaces seen, their entries cached */
        call to_a
        CHECK_EQ V_DATA, $0xa1a1a1a1, "a-data"
        movl $V_CODE, %eax
        call *%eax
        CHECK_EQ %eax, $1, "a-code"
        call to_b
        CHECK_EQ V_DATA, $0xb1b1b1b1, "b-data"
        movl $V_CODE, %eax
        call *%eax
        CHECK_EQ %eax, $1, "b-code"

        /* ---- A's PTEs rewritten while B is current: A sees them when it comes back */
        movl pte_a_data, %eax
        movl $(F_A2 | PG_PW), (%eax)
        movl pte_a_code, %eax
        movl $(F_CODE2 | PG_PW), (%eax)
        call to_a
        CHECK_EQ V_DATA, $0xa2a2a2a2, "a-remapped-away-data"
        movl $V_CODE, %eax
        call *%eax
        CHECK_EQ %eax, $2, "a-remapped-away-code"
        call to_b
        CHECK_EQ V_DATA, $0xb1b1b1b1, "b-data-again"

        /* ---- A's PTE cleared while away: #PF when A comes back */
        call reset_exc
        SET_HOOK VEC_PF, $hook_resume
        movl pte_a_data, %eax
        andl $~PG_P, (%eax)
        call to_a
        movl $1f, resume_eip
        movl V_DATA, %eax
1:      CHECK_EQ exc_count+4*VEC_PF, $1, "a-unmapped-away-faults"
        CHECK_EQ exc_last_cr2, $V_DATA, "a-unmapped-away-cr2"
        CHECK_EQ exc_last_err, $0, "a-unmapped-away-error"
        movl pte_a_data, %eax
        orl $PG_P, (%eax)
        invlpg V_DATA
        CHECK_EQ V_DATA, $0xa2a2a2a2, "a-present-again"

        /* ---- write-protected while away: the cached writable entry must not survive */
        movl $0xa2a2a2a2, V_DATA        /* a writable entry, D set */
        call to_b
        movl pte_a_data, %eax
        andl $~PG_W, (%eax)
        call to_a
        call reset_exc
        movl $1f, resume_eip
        movl $0x12345678, V_DATA
1:      CHECK_EQ exc_count+4*VEC_PF, $1, "a-readonly-away-faults"
        CHECK_EQ exc_last_err, $3, "a-readonly-away-error"
        CHECK_EQ F_A2, $0xa2a2a2a2, "a-readonly-away-unwritten"
        movl pte_a_data, %eax
        orl $PG_W, (%eax)
        invlpg V_DATA
        SET_HOOK VEC_PF, $0

        /* ---- A and D cleared while away: the walk sets them again */
        movl V_DATA, %eax
        call to_b
        movl pte_a_data, %eax
        andl $~(PG_A | PG_D), (%eax)
        call to_a
        movl V_DATA, %eax
        movl pte_a_data, %eax
        movl (%eax), %eax
        andl $(PG_A | PG_D), %eax
        CHECK_EQ %eax, $PG_A, "a-accessed-set-again-by-read"
        movl $0xa2a2a2a2, V_DATA
        movl pte_a_data, %eax
        movl (%eax), %eax
        andl $(PG_A | PG_D), %eax
        CHECK_EQ %eax, $(PG_A | PG_D), "a-dirty-set-by-write"

        /* ---- the PDE changed while away: another page table */
        call pool_alloc
        movl %eax, %ebx                 /* ebx = new table */
        movl $(F_A3 | PG_PW), (%ebx)    /* index 0: V_DATA */
        movl $(F_CONF | PG_PW), 0x100*4(%ebx) /* V_CONF */
        call to_b
        movl dir_a, %eax
        movl %ebx, %edx
        orl $(PG_PW | PG_U), %edx
        movl %edx, (V_DATA >> 22) * 4(%eax)
        call to_a
        CHECK_EQ V_DATA, $0xa3a3a3a3, "a-pde-changed-away"

        /* ---- an entry in the victim TLB: V_DATA evicted by V_CONF (same slot), remapped away */
        movl V_DATA, %eax
        movl V_CONF, %eax
        call to_b
        movl $(F_A1 | PG_PW), (%ebx)
        call to_a
        CHECK_EQ V_DATA, $0xa1a1a1a1, "a-victim-remapped-away"
        CHECK_EQ V_CONF, $0xc0c0c0c0, "a-conflicting-page"

        /* ---- the current space's PTE rewritten, then the same CR3 loaded again */
        movl V_DATA, %eax
        movl $(F_A2 | PG_PW), (%ebx)
        call reload_cr3
        CHECK_EQ V_DATA, $0xa2a2a2a2, "a-same-cr3-reload"

        /* ---- many switches: each space keeps reading its own frames */
        xorl %esi, %esi                 /* esi = mismatches */
        movl $64, %ecx
2:      call to_b
        cmpl $0xb1b1b1b1, V_DATA
        je 3f
        incl %esi
3:      call to_a
        cmpl $0xa2a2a2a2, V_DATA
        je 4f
        incl %esi
4:      decl %ecx
        jnz 2b
        CHECK_EQ %esi, $0, "switches-keep-spaces-apart"

        /* ---- a GDT descriptor rewritten in place, then reloaded */
        movl $SEL_X1, %ecx
        movl $F_SEG1, %eax
        call gdt_set_data
        movw $SEL_X1, %ax
        movw %ax, %fs
        CHECK_EQ %fs:0x10, $0x5e610001, "gdt-first-base"
        movl gdt + SEL_X1 + 4, %eax
        andl $0x100, %eax
        CHECK_EQ %eax, $0x100, "gdt-accessed-bit-set"
        movl $F_SEG2, %eax
        call gdt_set_data
        movw $SEL_X1, %ax
        movw %ax, %fs
        CHECK_EQ %fs:0x10, $0x5e620002, "gdt-rewritten-in-place"
        call reset_exc
        SET_HOOK VEC_NP, $hook_resume
        andl $~0x8000, gdt + SEL_X1 + 4  /* not present */
        movl $1f, resume_eip
        movw $SEL_X1, %ax
        movw %ax, %gs
1:      CHECK_EQ exc_count+4*VEC_NP, $1, "gdt-not-present-faults"
        CHECK_EQ exc_last_err, $SEL_X1, "gdt-not-present-error"
        SET_HOOK VEC_NP, $0
        movw $SEL_KDATA, %ax
        movw %ax, %fs
        movw %ax, %gs

        /* ---- an IDT gate rewritten in place */
        movl $VEC_T, %ecx
        movl $gate_h1, %eax
        movl $0x8e00, %edx
        call idt_set_gate
        int $VEC_T
        CHECK_EQ gate_seen, $0x11, "idt-first-gate"
        movl $gate_h2, %eax
        call idt_set_gate
        int $VEC_T
        CHECK_EQ gate_seen, $0x22, "idt-rewritten-in-place"

        /* ---- the GDT through an alias whose frame depends on CR3 */
        movl $gdt, %edi
        andl $0xfff, %edi
        addl $F_GDT2, %edi              /* edi = where the alias shows gdt in B */
        movl $gdt, %esi
        movl $(gdt_end - gdt), %ecx
        call memcpy_slow                /* B's copy: X1 based at F_SEG1 */
        movl $SEL_X1, %ecx
        movl $F_SEG1, %eax
        call gdt_set_data
        movl gdt + SEL_X1, %eax
        movl %eax, SEL_X1(%edi)
        movl gdt + SEL_X1 + 4, %eax
        movl %eax, SEL_X1 + 4(%edi)
        movl $F_SEG2, %eax
        call gdt_set_data               /* A's GDT: X1 based at F_SEG2 */
        movl $gdt, %eax
        andl $0xfff, %eax
        addl $V_GDT, %eax
        movl %eax, gdt_alias_desc + 2
        lgdt gdt_alias_desc
        movw $SEL_X1, %ax
        movw %ax, %fs
        CHECK_EQ %fs:0x10, $0x5e620002, "gdt-alias-in-a"
        call to_b
        movw $SEL_X1, %ax
        movw %ax, %fs
        CHECK_EQ %fs:0x10, $0x5e610001, "gdt-alias-in-b"
        call to_a
        movw $SEL_X1, %ax
        movw %ax, %fs
        CHECK_EQ %fs:0x10, $0x5e620002, "gdt-alias-in-a-again"
        lgdt gdt_desc
        movw $SEL_KDATA, %ax
        movw %ax, %fs
        ret

        .data
        .balign 4
dir_a:          .long 0
dir_b:          .long 0
pte_a_data:     .long 0
pte_a_code:     .long 0
gate_seen:      .long 0
        .balign 4
        .word 0
gdt_alias_desc:
        .word gdt_end - gdt - 1
        .long 0
