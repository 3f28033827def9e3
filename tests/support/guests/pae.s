/*
 * pae.s -- reserved bits in a 4 MiB PSE page, then PAE paging (3 levels,
 * 64-bit entries) with 2 MiB and 4 KiB pages, NX (EFER.NXE), reserved bits
 * and accessed/dirty in a 2 MiB PDE.
 *
 * Why: a 4 MiB PDE with reserved bit 21 set must fault with error code
 * bit 3 (RSVD), as QEMU does; PAE is what 32-bit Linux and every kernel on
 * its way to long mode use, and NX faults carry I/D (bit 4) in the error
 * code.  Run on gdbemu and on QEMU (-cpu with NX), transcripts compared.
 */
        .include "lib.inc"

        .set V_BIG,    0x80000000       /* 4 MiB PSE page, later a 2 MiB PAE page */
        .set PDPT,     0x380000         /* PAE structures (identity-mapped frames) */
        .set PD0,      0x381000         /* 0 .. 1 GiB: identity 2 MiB pages 0 .. 6 MiB */
        .set PD2,      0x382000         /* 2 .. 3 GiB */
        .set PT2,      0x383000         /* 4 KiB pages at V_SMALL */
        .set V_SMALL,  0x80200000
        .set F_CODE,   FRAMES + 0x1000
        .set F_NX,     FRAMES + 0x2000
        .set F_DATA,   FRAMES + 0x3000
        .set BIG_PHYS, 0x400000         /* the 2 MiB frame behind V_BIG */
        .set CR4_PAE,  0x20
        .set MSR_EFER, 0xc0000080
        .set EFER_NXE, 0x800
        .set PF_P, 1
        .set PF_RSVD, 8
        .set PF_ID, 0x10

        .text
main:
        SET_HOOK VEC_PF, $hook_resume

        /* ---- 32-bit paging: a 4 MiB PDE with reserved bit 21 */
        call pt_reset
        movl $V_BIG, %eax
        movl $(0x00800000 | PG_PW | PG_PS | 0x200000), %edx
        call map_large
        movl $CR4_PSE, %eax
        call paging_on
        call reset_exc
        movl $1f, resume_eip
        movl V_BIG + 0x10, %eax
1:      CHECK_EQ exc_count+4*VEC_PF, $1, "pse-bit21-faults"
        CHECK_EQ exc_last_err, $(PF_P|PF_RSVD), "pse-bit21-error-code"
        CHECK_EQ exc_last_cr2, $(V_BIG+0x10), "pse-bit21-cr2"
        call paging_off

        /* ---- PAE tables */
        movl $PDPT, %edi
        call zero_page
        movl $PD0, %edi
        call zero_page
        movl $PD2, %edi
        call zero_page
        movl $PT2, %edi
        call zero_page
        movl $(PD0 | PG_P), PDPT
        movl $(PD2 | PG_P), PDPT + 16
        movl $(0x000000 | PG_PW | PG_PS), PD0      /* 0 .. 6 MiB identity, 2 MiB pages */
        movl $(0x200000 | PG_PW | PG_PS), PD0 + 8
        movl $(0x400000 | PG_PW | PG_PS), PD0 + 16
        movl $(BIG_PHYS | PG_PW | PG_PS), PD2      /* V_BIG: 2 MiB page, A and D clear */
        movl $(PT2 | PG_PW), PD2 + 8                /* V_SMALL: 4 KiB pages */
        movl $(F_CODE | PG_PW), PT2                 /* V_SMALL + 0: code, executable */
        movl $(F_NX | PG_PW), PT2 + 8               /* V_SMALL + 0x1000: NX (bit 63 set below) */
        movl $0x80000000, PT2 + 12
        movl $(F_DATA | PG_PW), PT2 + 16            /* V_SMALL + 0x2000: reserved bit 51 */
        movl $0x00080000, PT2 + 20
        movl $(F_DATA | PG_PW), PT2 + 24            /* V_SMALL + 0x3000: plain data */
        movb $0xb8, F_CODE                          /* mov $0x1234, %eax; ret */
        movl $0x1234, F_CODE + 1
        movb $0xc3, F_CODE + 5
        movb $0xc3, F_NX
        movl $0x600dda7a, F_DATA
        movl $0x5a5a5a5a, BIG_PHYS + 0x1234

        movl $PDPT, %eax
        movl %eax, %cr3
        movl %cr4, %eax
        orl $CR4_PAE, %eax
        movl %eax, %cr4
        movl %cr0, %eax
        orl $(CR0_PG | CR0_WP), %eax
        movl %eax, %cr0
        jmp 2f
2:      movl %cr4, %eax
        andl $CR4_PAE, %eax
        CHECK_EQ %eax, $CR4_PAE, "cr4-pae-set"

        /* 2 MiB page: translation, accessed and dirty in the PDE (the leaf) */
        movl V_BIG + 0x1234, %eax
        CHECK_EQ %eax, $0x5a5a5a5a, "pae-2m-read"
        movl PD2, %eax
        andl $(PG_A | PG_D), %eax
        CHECK_EQ %eax, $PG_A, "pae-2m-read-sets-accessed"
        movl $0x77665544, V_BIG + 0x1ffffc
        CHECK_EQ BIG_PHYS+0x1ffffc, $0x77665544, "pae-2m-write-top"
        movl PD2, %eax
        andl $(PG_A | PG_D), %eax
        CHECK_EQ %eax, $(PG_A|PG_D), "pae-2m-write-sets-dirty"
        movl PDPT + 16, %eax
        CHECK_EQ %eax, $(PD2|PG_P), "pae-pdpte-unchanged"

        /* 4 KiB pages through a PAE page table */
        CHECK_EQ V_SMALL+0x3000, $0x600dda7a, "pae-4k-read"
        movl PT2 + 24, %eax
        andl $(PG_A | PG_D), %eax
        CHECK_EQ %eax, $PG_A, "pae-4k-accessed"
        movl PD2 + 8, %eax
        andl $PG_A, %eax
        CHECK_EQ %eax, $PG_A, "pae-pde-accessed"

        /* XD (bit 63) without EFER.NXE is a reserved bit */
        call reset_exc
        movl $3f, resume_eip
        movl V_SMALL + 0x1000, %eax
3:      CHECK_EQ exc_count+4*VEC_PF, $1, "xd-without-nxe-faults"
        CHECK_EQ exc_last_err, $(PF_P|PF_RSVD), "xd-without-nxe-error-code"

        /* bit 51 (above MAXPHYADDR) is reserved */
        call reset_exc
        movl $4f, resume_eip
        movl V_SMALL + 0x2008, %eax
4:      CHECK_EQ exc_count+4*VEC_PF, $1, "bit51-faults"
        CHECK_EQ exc_last_err, $(PF_P|PF_RSVD), "bit51-error-code"
        CHECK_EQ exc_last_cr2, $(V_SMALL+0x2008), "bit51-cr2"
        call reset_exc
        movl $5f, resume_eip
        movl $1, V_SMALL + 0x2000
5:      CHECK_EQ exc_last_err, $(PF_P|PF_RSVD|2), "bit51-write-error-code"

        /* EFER.NXE: XD pages are readable, not executable */
        movl $MSR_EFER, %ecx
        rdmsr
        orl $EFER_NXE, %eax
        wrmsr
        rdmsr
        andl $EFER_NXE, %eax
        CHECK_EQ %eax, $EFER_NXE, "efer-nxe-set"
        call reset_exc
        movzbl V_SMALL + 0x1000, %eax
        CHECK_EQ %eax, $0xc3, "nx-page-readable"
        CHECK_EQ exc_count+4*VEC_PF, $0, "nx-read-no-fault"
        xorl %eax, %eax
        call V_SMALL
        CHECK_EQ %eax, $0x1234, "exec-page-runs"
        call reset_exc
        movl $6f, resume_eip
        movl $(V_SMALL + 0x1000), %eax
        jmp *%eax
6:      CHECK_EQ exc_count+4*VEC_PF, $1, "nx-fetch-faults"
        CHECK_EQ exc_last_err, $(PF_P|PF_ID), "nx-fetch-error-code"
        CHECK_EQ exc_last_cr2, $(V_SMALL+0x1000), "nx-fetch-cr2"
        CHECK_EQ exc_last_eip, $(V_SMALL+0x1000), "nx-fetch-eip"
        /* a not-present fetch with NXE on also has I/D */
        call reset_exc
        movl $7f, resume_eip
        movl $(V_SMALL + 0x5000), %eax
        jmp *%eax
7:      CHECK_EQ exc_last_err, $PF_ID, "not-present-fetch-error-code"

        call paging_off
        ret
