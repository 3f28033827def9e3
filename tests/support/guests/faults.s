/*
 * faults.s -- page faults delivered the way a kernel sees them, and the
 * accessed/dirty bits the CPU writes back into the page tables.
 *
 * Why: demand paging and copy-on-write depend on exact #PF state: CR2 is the
 * faulting linear address (not the page), the error code says present (P),
 * write (W/R) and user (U/S), the saved EIP is the faulting instruction so
 * the handler can fix the PTE and return to restart it, and the state the
 * handler sees is exact even mid-block (registers, flags, ESP of a faulting
 * push/pop). CR0.WP decides
 * whether ring 0 may write a read-only page, and it must take effect at once
 * even if a translation was cached while it was clear. A is set on any access
 * and D on a write, including a write to a page first cached by a read.
 * #GP carries the offending selector as its error code.
 */
        .include "lib.inc"

        .set V_NP,   0x40010000         /* not present until the handler maps it */
        .set V_NPW,  0x40011000
        .set V_RO,   0x40012000         /* read-only, supervisor */
        .set V_RO2,  0x40013000
        .set V_X,    0x40014000         /* code page, not present at first */
        .set V_AD,   0x40015000         /* accessed/dirty probes */
        .set V_AD2,  0x40016000
        .set V_U,    0x40017000         /* user, read-only */
        .set V_S,    0x40018000         /* supervisor-only */
        .set V_UNP,  0x40019000         /* user, not present */
        .set V_NP3,  0x4001a000         /* more not-present pages */
        .set V_NP4,  0x4001b000
        .set V_NP5,  0x4001c000
        .set F_NP3,  FRAMES + 0x2a000
        .set F_NP4,  FRAMES + 0x2b000
        .set F_NP5,  FRAMES + 0x2c000
        .set F_NP,   FRAMES + 0x20000
        .set F_NPW,  FRAMES + 0x21000
        .set F_RO,   FRAMES + 0x22000
        .set F_RO2,  FRAMES + 0x23000
        .set F_X,    FRAMES + 0x24000
        .set F_AD,   FRAMES + 0x25000
        .set F_AD2,  FRAMES + 0x26000
        .set F_U,    FRAMES + 0x27000
        .set F_S,    FRAMES + 0x28000
        .set F_UNP,  FRAMES + 0x29000

        .text
tpl_code:
        movl $0x77, %eax
        ret
tpl_code_end:

main:
        /* frame contents, written physically before paging */
        movl $0x12345678, F_NP + 0x120
        movl $0x0badf00d, F_RO
        movl $0x0000beef, F_U
        movl $0x5555aaaa, F_S
        movl $0x0000cccc, F_UNP + 0x10
        movl $F_X, %edi
        movl $tpl_code, %esi
        movl $(tpl_code_end - tpl_code), %ecx
        call memcpy_slow

        call tss_init
        call pt_reset
        movl $V_RO, %eax
        movl $(F_RO | PG_P), %edx
        call map_page
        movl $V_RO2, %eax
        movl $(F_RO2 | PG_P), %edx
        call map_page
        call map_user_pages
        xorl %eax, %eax
        call paging_on
        SET_HOOK VEC_PF, $hook_pf_fix

        /* ---- read of a not-present page; the handler maps it; restart */
        call reset_exc
        movl $(F_NP | PG_PW), pf_fix_pte
np_read:
        movl V_NP + 0x120, %eax
        CHECK_EQ %eax, $0x12345678, "np-read-restarted-value"
        CHECK_EQ exc_count+4*VEC_PF, $1, "np-read-one-fault"
        CHECK_EQ exc_last_cr2, $(V_NP+0x120), "np-read-cr2"
        CHECK_EQ exc_last_err, $0, "np-read-err-0"
        CHECK_EQ exc_last_eip, $np_read, "np-read-eip"

        /* ---- write to a not-present page */
        call reset_exc
        movl $(F_NPW | PG_PW), pf_fix_pte
np_write:
        movl $0x600df00d, V_NPW + 0x44
        CHECK_EQ F_NPW+0x44, $0x600df00d, "np-write-restarted-value"
        CHECK_EQ exc_count+4*VEC_PF, $1, "np-write-one-fault"
        CHECK_EQ exc_last_cr2, $(V_NPW+0x44), "np-write-cr2"
        CHECK_EQ exc_last_err, $2, "np-write-err-w"
        CHECK_EQ exc_last_eip, $np_write, "np-write-eip"

        /* ---- read-only page, CPL 0, CR0.WP=1 */
        call reset_exc
        CHECK_EQ V_RO, $0x0badf00d, "ro-read-ok"
        CHECK_EQ exc_total, $0, "ro-read-no-fault"
        movl $(F_RO | PG_PW), pf_fix_pte
ro_write:
        movl $0x5a5a5a5a, V_RO + 8
        CHECK_EQ F_RO+8, $0x5a5a5a5a, "ro-write-restarted-value"
        CHECK_EQ exc_count+4*VEC_PF, $1, "ro-write-one-fault"
        CHECK_EQ exc_last_cr2, $(V_RO+8), "ro-write-cr2"
        CHECK_EQ exc_last_err, $3, "ro-write-err-p-w"
        CHECK_EQ exc_last_eip, $ro_write, "ro-write-eip"

        /* ---- CR0.WP=0 lets ring 0 write; setting WP again applies at once */
        call reset_exc
        movl %cr0, %eax
        andl $~CR0_WP, %eax
        movl %eax, %cr0
        movl $0x01010101, V_RO2         /* cached as a ring-0 write to a RO page */
        CHECK_EQ exc_total, $0, "wp0-write-ro-no-fault"
        CHECK_EQ F_RO2, $0x01010101, "wp0-write-ro-lands"
        movl %cr0, %eax
        orl $CR0_WP, %eax
        movl %eax, %cr0
        movl $(F_RO2 | PG_PW), pf_fix_pte
wp1_write:
        movl $0x02020202, V_RO2
        CHECK_EQ exc_count+4*VEC_PF, $1, "wp1-write-ro-faults"
        CHECK_EQ exc_last_err, $3, "wp1-write-ro-err"
        CHECK_EQ exc_last_eip, $wp1_write, "wp1-write-ro-eip"
        CHECK_EQ F_RO2, $0x02020202, "wp1-write-restarted-value"

        /* ---- instruction fetch from a not-present page */
        call reset_exc
        movl $(F_X | PG_PW), pf_fix_pte
        movl $V_X, %eax
        xorl %ecx, %ecx
        call *%eax
        CHECK_EQ %eax, $0x77, "fetch-np-runs-after-fix"
        CHECK_EQ exc_count+4*VEC_PF, $1, "fetch-np-one-fault"
        CHECK_EQ exc_last_cr2, $V_X, "fetch-np-cr2"
        CHECK_EQ exc_last_err, $0, "fetch-np-err-0"
        CHECK_EQ exc_last_eip, $V_X, "fetch-np-eip"

        /* ---- precise state at a fault in the middle of a block: registers
         * and flags computed earlier in the block are in the exception frame,
         * and the flags survive the restart */
        call reset_exc
        movl $(F_NP3 | PG_PW), pf_fix_pte
        movl $0x1234, %ebx
        addl $0x1111, %ebx
        movl $7, %esi
        cmpl $7, %esi                   /* ZF=1, CF=0 */
mid_fault:
        movl V_NP3, %eax
        setz %cl
        setc %ch
        CHECK_EQ exc_last_eip, $mid_fault, "mid-block-fault-eip"
        CHECK_EQ exc_last_ebx, $0x2345, "mid-block-ebx-at-fault"
        movl exc_last_efl, %eax
        andl $0x41, %eax
        CHECK_EQ %eax, $0x40, "mid-block-zf-cf-at-fault"
        movzwl %cx, %eax
        CHECK_EQ %eax, $0x0001, "mid-block-flags-after-restart"

        /* ---- faulting stack instructions leave ESP untouched */
        call reset_exc
        movl $(F_NP4 | PG_PW), pf_fix_pte
        movl $0x4444, F_NP4
        movl %esp, %ebx
push_np:
        pushl V_NP4                     /* reads a not-present page */
        CHECK_EQ exc_last_esp, %ebx, "push-mem-np-esp-at-fault"
        popl %eax
        CHECK_EQ %eax, $0x4444, "push-mem-np-restarted-value"
        call reset_exc
        movl $(F_NP5 | PG_PW), pf_fix_pte
        pushl $0x5555
        movl %esp, %ebx
pop_np:
        popl V_NP5                      /* writes a not-present page */
        CHECK_EQ exc_last_esp, %ebx, "pop-mem-np-esp-at-fault"
        CHECK_EQ exc_last_eip, $pop_np, "pop-mem-np-eip"
        leal 4(%ebx), %eax
        CHECK_EQ %esp, %eax, "pop-mem-np-esp-after"
        CHECK_EQ F_NP5, $0x5555, "pop-mem-np-restarted-value"

        /* ---- accessed and dirty bits */
        call reset_exc
        movl $V_AD, %eax
        movl $(F_AD | PG_PW), %edx
        call map_page
        movl $V_AD2, %eax
        movl $(F_AD2 | PG_PW), %edx
        call map_page
        movl $V_AD, %eax
        call pde_ptr
        movl %eax, %esi                 /* esi = &PDE */
        andl $~PG_A, (%esi)
        movl $V_AD, %eax
        call pte_ptr
        movl %eax, %edi                 /* edi = &PTE(V_AD) */
        movl $V_AD2, %eax
        call pte_ptr
        movl %eax, %ebp                 /* ebp = &PTE(V_AD2) */
        call reload_cr3
        movl V_AD, %eax
        movl (%edi), %eax
        andl $(PG_A | PG_D), %eax
        CHECK_EQ %eax, $PG_A, "read-sets-accessed-only"
        movl (%esi), %eax
        andl $PG_A, %eax
        CHECK_EQ %eax, $PG_A, "read-sets-pde-accessed"
        movl $1, V_AD + 4               /* write after a read-filled entry */
        movl (%edi), %eax
        andl $(PG_A | PG_D), %eax
        CHECK_EQ %eax, $(PG_A|PG_D), "write-after-read-sets-dirty"
        movl $2, V_AD2 + 8              /* first touch is a write */
        movl (%ebp), %eax
        andl $(PG_A | PG_D), %eax
        CHECK_EQ %eax, $(PG_A|PG_D), "first-write-sets-accessed-dirty"
        CHECK_EQ exc_total, $0, "ad-no-faults"

        /* ---- ring 3: the U/S bit of the error code */
        call reset_exc
        SET_HOOK VEC_PF, $hook_pf_or
        movl $(PG_P | PG_W | PG_U), pf_or_bits
        movl $user_entry, %eax
        movl $(user_page + 4096), %edx
        call run_user
        CHECK_EQ user_res+0, $0x0000beef, "user-read-user-page"
        CHECK_EQ user_res+4, $0x5555aaaa, "user-read-supervisor-restarted"
        CHECK_EQ user_res+8, $0x1234, "user-write-ro-restarted"
        CHECK_EQ user_res+12, $0x0000cccc, "user-read-np-restarted"
        CHECK_EQ exc_log_n, $3, "user-three-faults"
        CHECK_EQ exc_log+0*32+LOG_ERR, $5, "user-read-supervisor-err-p-u"
        CHECK_EQ exc_log+0*32+LOG_CR2, $V_S, "user-read-supervisor-cr2"
        CHECK_EQ exc_log+0*32+LOG_CS, $SEL_UCODE, "user-fault-frame-cs"
        CHECK_EQ exc_log+1*32+LOG_ERR, $7, "user-write-ro-err-p-w-u"
        CHECK_EQ exc_log+1*32+LOG_CR2, $(V_U+4), "user-write-ro-cr2"
        CHECK_EQ exc_log+1*32+LOG_EIP, $user_write, "user-write-ro-eip"
        CHECK_EQ exc_log+2*32+LOG_ERR, $4, "user-read-np-err-u"
        CHECK_EQ exc_log+2*32+LOG_CR2, $(V_UNP+0x10), "user-read-np-cr2"

        /* ---- #GP: loading a selector beyond the GDT limit */
        call reset_exc
        SET_HOOK VEC_GP, $hook_resume
        movl $gp_after, resume_eip
        movw $0x50, %ax
gp_insn:
        movw %ax, %fs
gp_after:
        CHECK_EQ exc_count+4*VEC_GP, $1, "gp-bad-selector-one-fault"
        CHECK_EQ exc_last_err, $0x50, "gp-bad-selector-err"
        CHECK_EQ exc_last_eip, $gp_insn, "gp-bad-selector-eip"
        ret

/* map_user_pages: the ring-3 code and stack pages, and the U/S test pages. */
map_user_pages:
        movl $user_code, %eax
1:      movl %eax, %edx
        orl $(PG_P | PG_U), %edx
        call map_page
        addl $4096, %eax
        cmpl $user_code_end, %eax
        jb 1b
        movl $user_page, %eax
        movl $(user_page + PG_PW + PG_U), %edx
        call map_page
        movl $V_U, %eax
        movl $(F_U | PG_P | PG_U), %edx
        call map_page
        movl $V_S, %eax
        movl $(F_S | PG_PW), %edx
        call map_page
        movl $V_UNP, %eax
        movl $(F_UNP | PG_W | PG_U), %edx  /* P clear: the handler adds it */
        call map_page
        ret

        .balign 4096
user_code:
user_entry:
        movl V_U, %eax
        movl %eax, user_res + 0
        movl V_S, %eax                  /* #PF P|U; handler adds U */
        movl %eax, user_res + 4
user_write:
        movl $0x1234, V_U + 4           /* #PF P|W|U; handler adds W */
        movl V_U + 4, %eax
        movl %eax, user_res + 8
        movl V_UNP + 0x10, %eax         /* #PF U; handler adds P */
        movl %eax, user_res + 12
        int $0x80
        .balign 4096
user_code_end:

        .bss
        .balign 4096
user_page:
user_res:       .skip 4096
