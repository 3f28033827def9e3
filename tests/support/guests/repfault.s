/*
 * repfault.s -- a rep string instruction that runs into a not-present page.
 *
 * Why: rep movs/stos are interruptible: a #PF in iteration k leaves ECX, ESI
 * and EDI describing exactly the iterations not yet done, the k completed
 * stores in memory, EIP at the rep instruction (prefix included), and
 * nothing of iteration k itself written -- also when its dword straddles the
 * boundary. The handler maps the page and returns; the restarted instruction
 * must then finish with the final ECX/EDI of an uninterrupted run. A bulk
 * fast path that faults "somewhere in the run" breaks demand paging.
 */
        .include "lib.inc"

        .set V_F,   0x400c0000          /* V_F present, V_F+4K not present */
        .set F_F1,  FRAMES + 0x63000
        .set F_F2,  FRAMES + 0x61000
        .set V_G,   0x400e0000          /* V_G not present, V_G+4K present */
        .set F_G1,  FRAMES + 0x66000
        .set F_G2,  FRAMES + 0x64000

        .text
main:
        call pt_reset
        movl $V_F, %eax
        movl $(F_F1 | PG_PW), %edx
        call map_page
        movl $V_G + 0x1000, %eax
        movl $(F_G2 | PG_PW), %edx
        call map_page
        call unmap_f2
        call unmap_g1
        xorl %eax, %eax
        call paging_on
        SET_HOOK VEC_PF, $hook_snapshot
        movl $PG_P, pf_or_bits

        /* ---- rep stosb forward into the not-present page */
        call clear_frames
        call reset_exc
        movl $(F_F1 + 0xffc), snap_addr
        movl $(V_F + 0xff0), %edi
        movl $0x40, %ecx
        movb $0x77, %al
stosb_np:
        rep stosb
        CHECK_EQ exc_log_n, $1, "stosb-one-fault"
        CHECK_EQ exc_log+LOG_CR2, $(V_F+0x1000), "stosb-cr2"
        CHECK_EQ exc_log+LOG_ERR, $2, "stosb-err"
        CHECK_EQ exc_log+LOG_EIP, $stosb_np, "stosb-eip-at-rep"
        CHECK_EQ exc_log+LOG_ECX, $0x30, "stosb-ecx-at-fault"
        CHECK_EQ exc_log+LOG_EDI, $(V_F+0x1000), "stosb-edi-at-fault"
        CHECK_EQ snap, $0x77777777, "stosb-done-iterations-stored-at-fault"
        CHECK_EQ %ecx, $0, "stosb-final-ecx"
        CHECK_EQ %edi, $(V_F+0x1030), "stosb-final-edi"
        CHECK_EQ F_F2+0x2c, $0x77777777, "stosb-second-page-filled"
        CHECK_EQ F_F2+0x30, $0, "stosb-stops-at-count"

        /* ---- rep stosd forward, aligned: fault at the third dword */
        call unmap_f2
        call clear_frames
        call reset_exc
        movl $(V_F + 0xff8), %edi
        movl $8, %ecx
        movl $0xabcd1234, %eax
stosd_np:
        rep stosl
        CHECK_EQ exc_log_n, $1, "stosd-one-fault"
        CHECK_EQ exc_log+LOG_CR2, $(V_F+0x1000), "stosd-cr2"
        CHECK_EQ exc_log+LOG_EIP, $stosd_np, "stosd-eip-at-rep"
        CHECK_EQ exc_log+LOG_ECX, $6, "stosd-ecx-at-fault"
        CHECK_EQ exc_log+LOG_EDI, $(V_F+0x1000), "stosd-edi-at-fault"
        CHECK_EQ %ecx, $0, "stosd-final-ecx"
        CHECK_EQ %edi, $(V_F+0x1018), "stosd-final-edi"
        CHECK_EQ F_F1+0xffc, $0xabcd1234, "stosd-first-page-filled"
        CHECK_EQ F_F2+0x14, $0xabcd1234, "stosd-second-page-filled"
        CHECK_EQ F_F2+0x18, $0, "stosd-stops-at-count"

        /* ---- rep stosd whose first dword straddles into the missing page */
        call unmap_f2
        call clear_frames
        call reset_exc
        movl $(F_F1 + 0xffc), snap_addr
        movl $(V_F + 0xffe), %edi
        movl $4, %ecx
        movl $0x55667788, %eax
stosd_split:
        rep stosl
        CHECK_EQ exc_log_n, $1, "stosd-split-one-fault"
        CHECK_EQ exc_log+LOG_CR2, $(V_F+0x1000), "stosd-split-cr2"
        CHECK_EQ exc_log+LOG_ECX, $4, "stosd-split-ecx-at-fault"
        CHECK_EQ exc_log+LOG_EDI, $(V_F+0xffe), "stosd-split-edi-at-fault"
        CHECK_EQ snap, $0, "stosd-split-nothing-stored-at-fault"
        CHECK_EQ %ecx, $0, "stosd-split-final-ecx"
        CHECK_EQ %edi, $(V_F+0x100e), "stosd-split-final-edi"
        CHECK_EQ F_F1+0xffc, $0x77880000, "stosd-split-first-page"
        CHECK_EQ F_F2+0xa, $0x55667788, "stosd-split-last-dword"
        CHECK_EQ F_F2+0xe, $0, "stosd-split-stops-at-count"

        /* ---- rep stosb backward (DF=1) down into the missing page */
        call clear_frames
        call reset_exc
        movl $(V_G + 0x1010), %edi
        movl $0x40, %ecx
        movb $0x99, %al
        std
stosb_bwd_np:
        rep stosb
        cld
        CHECK_EQ exc_log_n, $1, "stosb-bwd-one-fault"
        CHECK_EQ exc_log+LOG_CR2, $(V_G+0xfff), "stosb-bwd-cr2"
        CHECK_EQ exc_log+LOG_EIP, $stosb_bwd_np, "stosb-bwd-eip-at-rep"
        CHECK_EQ exc_log+LOG_ECX, $0x2f, "stosb-bwd-ecx-at-fault"
        CHECK_EQ exc_log+LOG_EDI, $(V_G+0xfff), "stosb-bwd-edi-at-fault"
        CHECK_EQ %ecx, $0, "stosb-bwd-final-ecx"
        CHECK_EQ %edi, $(V_G+0xfd0), "stosb-bwd-final-edi"
        CHECK_EQ F_G2+0x10, $0x99, "stosb-bwd-top-byte"
        CHECK_EQ F_G1+0xfd0, $0x99999900, "stosb-bwd-bottom"

        /* ---- rep movsb whose source runs into the missing page (read fault) */
        call unmap_f2
        call unmap_g1
        call clear_frames
        call reset_exc
        movl $F_F1, %edi
        movl $0x1000, %ecx
        movb $0x01, %al
        call fill_pattern
        movl $F_F2, %edi
        movb $0x02, %al
        call fill_pattern
        movl $(V_F + 0xfe0), %esi
        movl $(V_G + 0x1100), %edi
        movl $0x50, %ecx
movsb_src_np:
        rep movsb
        CHECK_EQ exc_log_n, $1, "movsb-src-one-fault"
        CHECK_EQ exc_log+LOG_CR2, $(V_F+0x1000), "movsb-src-cr2"
        CHECK_EQ exc_log+LOG_ERR, $0, "movsb-src-err-read"
        CHECK_EQ exc_log+LOG_EIP, $movsb_src_np, "movsb-src-eip-at-rep"
        CHECK_EQ exc_log+LOG_ECX, $0x30, "movsb-src-ecx-at-fault"
        CHECK_EQ exc_log+LOG_ESI, $(V_F+0x1000), "movsb-src-esi-at-fault"
        CHECK_EQ exc_log+LOG_EDI, $(V_G+0x1120), "movsb-src-edi-at-fault"
        CHECK_EQ %ecx, $0, "movsb-src-final-ecx"
        CHECK_EQ %esi, $(V_F+0x1030), "movsb-src-final-esi"
        CHECK_EQ %edi, $(V_G+0x1150), "movsb-src-final-edi"
        CHECK_BUF $(F_G2+0x1100-0x1000), $(F_F1+0xfe0), $0x20, "movsb-src-first-part"
        CHECK_BUF $(F_G2+0x1120-0x1000), $F_F2, $0x30, "movsb-src-second-part"
        ret

unmap_f2:
        pushl %eax
        pushl %edx
        movl $(V_F + 0x1000), %eax
        movl $(F_F2 | PG_W), %edx
        call map_page
        popl %edx
        popl %eax
        ret

unmap_g1:
        pushl %eax
        pushl %edx
        movl $V_G, %eax
        movl $(F_G1 | PG_W), %edx
        call map_page
        popl %edx
        popl %eax
        ret

clear_frames:
        pushal
        xorl %eax, %eax
        movl $0x1000, %ecx
        movl $F_F1, %edi
        call memset_slow
        movl $F_F2, %edi
        call memset_slow
        movl $F_G1, %edi
        call memset_slow
        movl $F_G2, %edi
        call memset_slow
        popal
        ret

/* Hook: snapshot the dword at snap_addr at the moment of the fault, then
 * make the page present so the rep instruction resumes. */
hook_snapshot:
        movl snap_addr, %eax
        movl (%eax), %eax
        movl %eax, snap
        jmp hook_pf_or

        .data
snap_addr:      .long F_F1
snap:           .long 0
