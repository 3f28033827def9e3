/*
 * crossing.s -- unaligned and page-crossing loads, stores, read-modify-writes,
 * pushes and instruction fetches, with the two pages on non-contiguous frames.
 *
 * Why: a softmmu fast path translates the first byte's page and then touches
 * n contiguous host bytes; across a 4 KiB boundary that reads or writes the
 * physically next frame instead of the frame the second page maps to. The
 * slow path must split the access, and when the second page faults the whole
 * instruction must fault before *any* byte is written (precise exceptions:
 * the handler maps the page and the restarted store must be the only write).
 * The same holds for instruction bytes that straddle two pages.
 */
        .include "lib.inc"

        .set V_X,   0x40020000          /* V_X -> F_X1, V_X+4K -> F_X2 */
        .set F_X1,  FRAMES + 0x31000
        .set F_X2,  FRAMES + 0x2f000    /* below F_X1: not the next frame */
        .set F_NEXT, F_X1 + 0x1000      /* sentinel: what a naive access would hit */
        .set V_P,   0x40030000          /* V_P -> F_P1, V_P+4K not present -> F_P2 */
        .set F_P1,  FRAMES + 0x35000
        .set F_P2,  FRAMES + 0x33000
        .set V_R,   0x40040000          /* V_R -> F_R1, V_R+4K read-only -> F_R2 */
        .set F_R1,  FRAMES + 0x38000
        .set F_R2,  FRAMES + 0x36000
        .set V_C,   0x40050000          /* code: V_C -> F_C1, V_C+4K not present -> F_C2 */
        .set F_C1,  FRAMES + 0x3b000
        .set F_C2,  FRAMES + 0x39000

        .text
main:
        movl $F_NEXT, %edi
        movb $0xee, %al
        movl $4096, %ecx
        call memset_slow
        call pt_reset
        movl $V_X, %eax
        movl $(F_X1 | PG_PW), %edx
        call map_page
        movl $(V_X + 0x1000), %eax
        movl $(F_X2 | PG_PW), %edx
        call map_page
        movl $V_P, %eax
        movl $(F_P1 | PG_PW), %edx
        call map_page
        movl $(V_P + 0x1000), %eax
        movl $(F_P2 | PG_W), %edx       /* not present */
        call map_page
        movl $V_R, %eax
        movl $(F_R1 | PG_PW), %edx
        call map_page
        movl $(V_R + 0x1000), %eax
        movl $(F_R2 | PG_P), %edx       /* read-only */
        call map_page
        movl $V_C, %eax
        movl $(F_C1 | PG_PW), %edx
        call map_page
        movl $(V_C + 0x1000), %eax
        movl $(F_C2 | PG_W), %edx       /* not present */
        call map_page
        xorl %eax, %eax
        call paging_on

        /* ---- unaligned inside one page */
        movl $0x87654321, V_X + 0x101
        CHECK_EQ F_X1+0x100, $0x65432100, "unaligned-in-page-store-low"
        CHECK_EQ F_X1+0x104, $0x00000087, "unaligned-in-page-store-high"
        CHECK_EQ V_X+0x101, $0x87654321, "unaligned-in-page-load"
        movw $0xbeef, V_X + 0x203
        movzwl V_X + 0x203, %eax
        CHECK_EQ %eax, $0xbeef, "unaligned-in-page-word"

        /* ---- 16-bit across the boundary (1 + 1 bytes) */
        movw $0xbbaa, V_X + 0xfff
        movzbl F_X1 + 0xfff, %eax
        CHECK_EQ %eax, $0xaa, "w16-store-first-page"
        movzbl F_X2, %eax
        CHECK_EQ %eax, $0xbb, "w16-store-second-page"
        movzwl V_X + 0xfff, %eax
        CHECK_EQ %eax, $0xbbaa, "w16-load"

        /* ---- 32-bit across the boundary, each split */
        movl $0x44332211, V_X + 0xffd   /* 3 + 1 */
        CHECK_EQ F_X1+0xffc, $0x33221100, "w32-3+1-store-first-page"
        movzbl F_X2, %eax
        CHECK_EQ %eax, $0x44, "w32-3+1-store-second-page"
        movl $0x88776655, V_X + 0xffe   /* 2 + 2 */
        movzwl F_X1 + 0xffe, %eax
        CHECK_EQ %eax, $0x6655, "w32-2+2-store-first-page"
        movzwl F_X2, %eax
        CHECK_EQ %eax, $0x8877, "w32-2+2-store-second-page"
        movl $0xccbbaa99, V_X + 0xfff   /* 1 + 3 */
        movzbl F_X1 + 0xfff, %eax
        CHECK_EQ %eax, $0x99, "w32-1+3-store-first-page"
        movl F_X2, %eax
        andl $0x00ffffff, %eax
        CHECK_EQ %eax, $0xccbbaa, "w32-1+3-store-second-page"
        movl $0x04030201, F_X1 + 0xffc
        movl $0x08070605, F_X2
        CHECK_EQ V_X+0xffd, $0x05040302, "w32-3+1-load"
        CHECK_EQ V_X+0xffe, $0x06050403, "w32-2+2-load"
        CHECK_EQ V_X+0xfff, $0x07060504, "w32-1+3-load"
        CHECK_EQ F_NEXT, $0xeeeeeeee, "next-frame-untouched"

        /* ---- read-modify-write across the boundary */
        addl $0x01010101, V_X + 0xffe
        CHECK_EQ V_X+0xffe, $0x07060504, "rmw-add-across"
        CHECK_EQ F_X2, $0x08070706, "rmw-add-second-page"
        movl $0xa5a5a5a5, %eax
        xchgl %eax, V_X + 0xffd
        CHECK_EQ %eax, $0x06050402, "xchg-across-old"
        CHECK_EQ V_X+0xffd, $0xa5a5a5a5, "xchg-across-new"
        incw V_X + 0xfff
        movzwl V_X + 0xfff, %eax
        CHECK_EQ %eax, $0xa5a6, "inc16-across"
        CHECK_EQ F_NEXT, $0xeeeeeeee, "next-frame-still-untouched"

        /* ---- a segment base makes an aligned offset straddle the boundary */
        movl $SEL_X1, %ecx
        movl $(V_X + 0xffe), %eax
        call gdt_set_data
        movw $SEL_X1, %ax
        movw %ax, %gs
        movl $0xfedcba98, %gs:0
        movzwl F_X1 + 0xffe, %eax
        CHECK_EQ %eax, $0xba98, "gs-base-straddle-first-page"
        movzwl F_X2, %eax
        CHECK_EQ %eax, $0xfedc, "gs-base-straddle-second-page"
        movl %gs:0, %eax
        CHECK_EQ %eax, $0xfedcba98, "gs-base-straddle-load"
        movw $SEL_KDATA, %ax
        movw %ax, %gs

        /* ---- push/pop with ESP straddling the boundary */
        movl %esp, %ebp
        movl $(V_X + 0x1002), %esp
        pushl $0x11223344
        movl %esp, %ebx
        popl %ecx
        movl %ebp, %esp
        CHECK_EQ %ebx, $(V_X+0xffe), "push-across-esp"
        CHECK_EQ %ecx, $0x11223344, "pop-across-value"
        movzwl F_X1 + 0xffe, %eax
        CHECK_EQ %eax, $0x3344, "push-across-first-page"
        movzwl F_X2, %eax
        CHECK_EQ %eax, $0x1122, "push-across-second-page"

        /* ---- store straddling into a not-present page: precise #PF */
        call reset_exc
        SET_HOOK VEC_PF, $hook_snapshot
        movl $(PG_P), pf_or_bits
        movl $0xcccccccc, F_P1 + 0xffc
        movl $0xdddddddd, F_P2
store_np:
        movl $0x44332211, V_P + 0xffe
        CHECK_EQ exc_count+4*VEC_PF, $1, "store-np-one-fault"
        CHECK_EQ exc_last_cr2, $(V_P+0x1000), "store-np-cr2"
        CHECK_EQ exc_last_err, $2, "store-np-err"
        CHECK_EQ exc_last_eip, $store_np, "store-np-eip"
        CHECK_EQ snap1, $0xcccccccc, "store-np-first-page-untouched-at-fault"
        CHECK_EQ snap2, $0xdddddddd, "store-np-second-page-untouched-at-fault"
        CHECK_EQ F_P1+0xffc, $0x2211cccc, "store-np-restart-first-page"
        CHECK_EQ F_P2, $0xdddd4433, "store-np-restart-second-page"

        /* ---- load straddling into a not-present page: destination unchanged */
        call reset_exc
        movl $(V_P + 0x1000), %eax
        call pte_ptr
        andl $~PG_P, (%eax)
        invlpg V_P + 0x1000
        movl $0xdeadbeef, %eax
load_np:
        movl V_P + 0xffe, %eax
        CHECK_EQ exc_count+4*VEC_PF, $1, "load-np-one-fault"
        CHECK_EQ exc_last_cr2, $(V_P+0x1000), "load-np-cr2"
        CHECK_EQ exc_last_err, $0, "load-np-err"
        CHECK_EQ snap_eax, $0xdeadbeef, "load-np-dest-unchanged-at-fault"
        CHECK_EQ %eax, $0x44332211, "load-np-restart-value"

        /* ---- read-modify-write straddling into a read-only page */
        call reset_exc
        movl $(PG_W), pf_or_bits
        movl $0x01010101, F_R1 + 0xffc
        movl $0x02020202, F_R2
        movl $(F_R1 + 0xffc), snap_addr1
        movl $F_R2, snap_addr2
rmw_ro:
        addl $0x10101010, V_R + 0xffe
        CHECK_EQ exc_count+4*VEC_PF, $1, "rmw-ro-one-fault"
        CHECK_EQ exc_last_cr2, $(V_R+0x1000), "rmw-ro-cr2"
        CHECK_EQ exc_last_err, $3, "rmw-ro-err"
        CHECK_EQ exc_last_eip, $rmw_ro, "rmw-ro-eip"
        CHECK_EQ snap1, $0x01010101, "rmw-ro-first-page-untouched-at-fault"
        CHECK_EQ snap2, $0x02020202, "rmw-ro-second-page-untouched-at-fault"
        CHECK_EQ F_R1+0xffc, $0x11110101, "rmw-ro-restart-first-page"
        CHECK_EQ F_R2, $0x02021212, "rmw-ro-restart-second-page"

        /* ---- an instruction straddling into a not-present page */
        call reset_exc
        movl $(PG_P), pf_or_bits
        movl $(F_C1 + 0xffd), %edi
        movl $tpl_straddle, %esi
        movl $3, %ecx
        call memcpy_slow
        movl $F_C2, %edi
        movl $(tpl_straddle + 3), %esi
        movl $(tpl_straddle_end - tpl_straddle - 3), %ecx
        call memcpy_slow
        movl $(V_C + 0xffd), %eax
        call *%eax
        CHECK_EQ %eax, $0x9abcdef0, "fetch-straddle-result"
        CHECK_EQ exc_count+4*VEC_PF, $1, "fetch-straddle-one-fault"
        CHECK_EQ exc_last_cr2, $(V_C+0x1000), "fetch-straddle-cr2"
        CHECK_EQ exc_last_err, $0, "fetch-straddle-err"
        CHECK_EQ exc_last_eip, $(V_C+0xffd), "fetch-straddle-eip"
        ret

/* 5-byte mov split 3 + 2 across the pages, then ret in the second page. */
tpl_straddle:
        movl $0x9abcdef0, %eax
        ret
tpl_straddle_end:

/* Hook: snapshot memory and EAX at the moment of the fault, then add
 * pf_or_bits to the PTE so the access restarts. */
hook_snapshot:
        movl snap_addr1, %eax
        movl (%eax), %eax
        movl %eax, snap1
        movl snap_addr2, %eax
        movl (%eax), %eax
        movl %eax, snap2
        movl exc_last_eax, %eax
        movl %eax, snap_eax
        jmp hook_pf_or

        .data
snap_addr1:     .long F_P1 + 0xffc
snap_addr2:     .long F_P2
snap1:          .long 0
snap2:          .long 0
snap_eax:       .long 0
