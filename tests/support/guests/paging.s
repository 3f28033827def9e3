/*
 * paging.s -- paging off vs on, aliases, and address-space switches.
 *
 * Why: the TLB and the translated-code cache must both follow the *current*
 * translation. A second virtual mapping of a data frame must see the same
 * bytes as the identity mapping; a low page remapped to another frame must
 * read the other frame with paging on and its own frame again once CR0.PG is
 * cleared; code at one virtual address must run whatever frame that address
 * maps to now (a code cache keyed by virtual EIP alone runs the wrong code);
 * pages that share a TLB index must each reach their own frame; segment
 * bases apply before paging; descriptor tables are read through paging
 * (a GDT/IDT at a virtual alias, as in a kernel mapped high); and
 * switching CR3 between two directories must switch both data and code.
 */
        .include "lib.inc"

        .set V_ALIAS,  0x40000000       /* second mapping of F_DATA */
        .set F_FIRST,  FRAMES + 0x0000  /* written with paging off */
        .set F_DATA,   FRAMES + 0x5000
        .set LOW_REMAP, FRAMES + 0x6000 /* identity page remapped to F_REMAP */
        .set F_REMAP,  FRAMES + 0x7000
        .set CODE_V,   FRAMES + 0x8000  /* a code page, identity at first */
        .set F_CODE2,  FRAMES + 0x9000  /* the frame CODE_V is remapped to */
        .set F_DATA_B, FRAMES + 0xa000  /* V_ALIAS in the second directory */
        .set V_CONF,   0x60000000       /* N_CONF pages 1 MiB apart ... */
        .set F_CONF,   FRAMES + 0x80000 /* ... on consecutive frames */
        .set N_CONF,   24
        .set V_IMG,    0x50000000       /* alias of the image (IMG_PAGES pages) */
        .set IMG_BASE, 0x100000
        .set IMG_PAGES, 16

        .text
tpl_ret1:
        movl $1, %eax
        ret
tpl_ret1_end:
tpl_ret2:
        movl $2, %eax
        ret
tpl_ret2_end:

main:
        /* ---- paging off: plain physical accesses, code at CODE_V */
        movl $0xa1b2c3d4, F_FIRST
        CHECK_EQ F_FIRST, $0xa1b2c3d4, "nopg-write-read"
        movl $0x66666666, LOW_REMAP
        movl $0x77777777, F_REMAP
        movl $0xbbbb0000, F_DATA_B + 0x10

        movl $CODE_V, %edi
        movl $tpl_ret1, %esi
        movl $(tpl_ret1_end - tpl_ret1), %ecx
        call memcpy_slow
        movl $F_CODE2, %edi
        movl $tpl_ret2, %esi
        movl $(tpl_ret2_end - tpl_ret2), %ecx
        call memcpy_slow
        movl $CODE_V, %eax
        call *%eax
        CHECK_EQ %eax, $1, "nopg-code-runs-frame"

        /* ---- address space A: identity + V_ALIAS -> F_DATA + CODE_V -> F_CODE2 */
        call pt_reset
        movl $V_ALIAS, %eax
        movl $(F_DATA | PG_PW), %edx
        call map_page
        movl $CODE_V, %eax
        movl $(F_CODE2 | PG_PW), %edx
        call map_page
        xorl %eax, %eax
        call paging_on
        movl %cr0, %eax
        andl $(CR0_PG | CR0_WP), %eax
        CHECK_EQ %eax, $(CR0_PG|CR0_WP), "cr0-pg-wp-set"
        CHECK_EQ F_FIRST, $0xa1b2c3d4, "identity-sees-nopg-write"

        movl $0x11111111, V_ALIAS + 0x10
        CHECK_EQ F_DATA+0x10, $0x11111111, "alias-write-identity-read"
        movl $0x22222222, F_DATA + 0x20
        CHECK_EQ V_ALIAS+0x20, $0x22222222, "identity-write-alias-read"
        movb $0x44, V_ALIAS + 0x30
        movb $0x33, V_ALIAS + 0x31
        movw $0x1122, V_ALIAS + 0x32
        CHECK_EQ F_DATA+0x30, $0x11223344, "alias-bytes-identity-dword"
        movl $0xcafef00d, V_ALIAS + 0xffc
        CHECK_EQ F_DATA+0xffc, $0xcafef00d, "alias-last-dword"

        movl $CODE_V, %eax
        call *%eax
        CHECK_EQ %eax, $2, "pg-code-runs-mapped-frame"

        /* ---- remap an identity page to another frame, then paging off */
        CHECK_EQ LOW_REMAP, $0x66666666, "low-page-identity"
        movl $LOW_REMAP, %eax
        movl $(F_REMAP | PG_PW), %edx
        call map_page
        CHECK_EQ LOW_REMAP, $0x77777777, "low-page-remapped"

        /* ---- many pages that collide in a direct-mapped TLB (1 MiB apart:
         * the same index for any TLB of up to 256 entries), each on its own
         * frame: every read and write must use the right entry */
        xorl %ecx, %ecx
1:      movl %ecx, %eax
        shll $20, %eax
        addl $V_CONF, %eax
        movl %ecx, %edx
        shll $12, %edx
        addl $(F_CONF | PG_PW), %edx
        call map_page
        leal 0xc0f10000(%ecx), %edx
        movl %edx, (%eax)
        incl %ecx
        cmpl $N_CONF, %ecx
        jb 1b
        xorl %ebx, %ebx                 /* ebx = mismatches, edi = round */
        xorl %edi, %edi
2:      xorl %ecx, %ecx
3:      movl %ecx, %eax
        shll $20, %eax
        addl $V_CONF, %eax
        leal 0xc0f10000(%ecx,%edi), %edx
        cmpl %edx, (%eax)
        je 4f
        incl %ebx
4:      incl %edx
        movl %edx, (%eax)
        incl %ecx
        cmpl $N_CONF, %ecx
        jb 3b
        incl %edi
        cmpl $3, %edi
        jb 2b
        CHECK_EQ %ebx, $0, "tlb-conflict-reads"
        xorl %ebx, %ebx
        xorl %ecx, %ecx
5:      movl %ecx, %eax
        shll $12, %eax
        leal 0xc0f10003(%ecx), %edx
        cmpl %edx, F_CONF(%eax)
        je 6f
        incl %ebx
6:      incl %ecx
        cmpl $N_CONF, %ecx
        jb 5b
        CHECK_EQ %ebx, $0, "tlb-conflict-writes-land"

        /* ---- segment bases: linear = base + offset, and paging after that */
        movl $SEL_X1, %ecx
        movl $(V_ALIAS - 0x1000), %eax
        call gdt_set_data
        movw $SEL_X1, %ax
        movw %ax, %fs
        movl %fs:0x1010, %eax           /* V_ALIAS + 0x10 */
        CHECK_EQ %eax, $0x11111111, "fs-base-read-through-alias"
        movl $0x12121212, %fs:0x1040
        CHECK_EQ F_DATA+0x40, $0x12121212, "fs-base-write-through-alias"
        movl $SEL_X2, %ecx
        movl $0x10000, %eax
        call gdt_set_data
        movw $SEL_X2, %ax
        movw %ax, %gs
        movl $0x13131313, F_DATA + 0x60
        movl $0x14141414, F_DATA + 0x10060
        movl F_DATA + 0x60, %eax        /* same offset, DS then GS then DS */
        movl %gs:F_DATA + 0x60, %edx
        movl F_DATA + 0x60, %ecx
        CHECK_EQ %eax, $0x13131313, "ds-offset-read"
        CHECK_EQ %edx, $0x14141414, "gs-same-offset-other-linear"
        CHECK_EQ %ecx, $0x13131313, "ds-offset-read-again"

        /* ---- descriptor tables read through paging: GDT and IDT loaded at
         * a virtual alias of the image, as a kernel mapped high does */
        xorl %ecx, %ecx
1:      movl %ecx, %eax
        shll $12, %eax
        leal IMG_BASE + PG_PW(%eax), %edx
        addl $V_IMG, %eax
        call map_page
        incl %ecx
        cmpl $IMG_PAGES, %ecx
        jb 1b
        lgdt gdt_alias_desc
        ljmp $SEL_KCODE, $2f            /* descriptors now come through V_IMG */
2:      movw $SEL_KDATA, %ax
        movw %ax, %ds
        movw %ax, %es
        movw %ax, %ss
        movw $SEL_X1, %ax
        movw %ax, %fs
        movl %fs:0x1010, %eax
        CHECK_EQ %eax, $0x11111111, "gdt-via-alias-segment-load"
        lidt idt_alias_desc
        call reset_exc
        SET_HOOK VEC_GP, $hook_resume
        movl $3f, resume_eip
        movw $0x50, %ax
        movw %ax, %fs                   /* beyond the GDT limit: #GP(0x50) */
3:      CHECK_EQ exc_count+4*VEC_GP, $1, "idt-via-alias-delivers"
        CHECK_EQ exc_last_err, $0x50, "idt-via-alias-error-code"
        lgdt gdt_desc                   /* back to the physical addresses */
        lidt idt_desc
        movw $SEL_KDATA, %ax
        movw %ax, %fs
        movw %ax, %gs

        /* ---- address space B: own identity table, V_ALIAS -> F_DATA_B */
        movl pd_cur, %ebx               /* ebx = directory A */
        call pd_new
        movl %eax, %ebp                 /* ebp = directory B */
        movl $V_ALIAS, %eax
        movl $(F_DATA_B | PG_PW), %edx
        call map_page
        movl $2, %esi                   /* two round trips A -> B -> A */
1:      movl %ebp, %cr3
        CHECK_EQ V_ALIAS+0x10, $0xbbbb0000, "cr3-b-data"
        movl $CODE_V, %eax
        call *%eax
        CHECK_EQ %eax, $1, "cr3-b-code"
        CHECK_EQ LOW_REMAP, $0x66666666, "cr3-b-low-page"
        movl %ebx, %cr3
        CHECK_EQ V_ALIAS+0x10, $0x11111111, "cr3-a-data"
        movl $CODE_V, %eax
        call *%eax
        CHECK_EQ %eax, $2, "cr3-a-code"
        CHECK_EQ LOW_REMAP, $0x77777777, "cr3-a-low-page"
        decl %esi
        jnz 1b

        /* ---- paging off again: everything is physical once more */
        call paging_off
        CHECK_EQ LOW_REMAP, $0x66666666, "nopg-again-low-page-physical"
        movl $CODE_V, %eax
        call *%eax
        CHECK_EQ %eax, $1, "nopg-again-code-physical"
        CHECK_EQ F_DATA+0x10, $0x11111111, "nopg-again-data"
        ret

        .data
        .balign 4
        .word 0
gdt_alias_desc:
        .word gdt_end - gdt - 1
        .long gdt - IMG_BASE + V_IMG
        .balign 4
        .word 0
idt_alias_desc:
        .word 0x81 * 8 - 1
        .long idt - IMG_BASE + V_IMG
