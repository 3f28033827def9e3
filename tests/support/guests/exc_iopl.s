/*
 * exc_iopl.s -- I/O privilege: IOPL and the TSS I/O permission bitmap for
 * in/out at ring 3, and CLI/STI/POPF at ring 3 under IOPL 0 and 3.
 *
 * Why: user-mode drivers (X servers with ioperm(), DOS boxes) get their
 * ports through the bitmap, and a kernel's protection depends on the rest
 * being refused (SDM vol. 1, 19.5.2: when CPL > IOPL every byte of the
 * access must have its bit clear in the bitmap; a bit beyond the TSS limit
 * counts as set; #GP(0) otherwise).  IOPL itself is a CPL 0 business: POPF
 * at ring 3 leaves IOPL unchanged and IF too when CPL > IOPL (no fault), while
 * CLI/STI fault (SDM vol. 2 CLI, STI, POPF).
 *
 * Layout: a second TSS (GDT slot 0x30) with an I/O bitmap covering ports
 * 0-255 only: all denied except 0x80 and 0xe9 (the console: a ring-3 write
 * to it shows in the transcript).
 */
        .include "exc_common.inc"

        .set SEL_IOTSS, 0x30
        .set IOMAP_BYTES, 32            /* ports 0..255 */

main:
        call tss_init                   /* the plain TSS (no bitmap) at 0x28 */
        call hook_all_rec
        call pic_mask_all

        /* ---- no bitmap (I/O base beyond the TSS limit): every port is refused at ring 3 */
        REC_RESET
        USER u_in_e9
        UCHECK "nobitmap-in", $13, $0, $u_in_e9_f, $ustack_top

        /* ---- the TSS with a bitmap */
        movl $iotss, %edi
        movl $exc_stack_top, 4(%edi)
        movl $SEL_KDATA, 8(%edi)
        movw $104, 102(%edi)
        leal 104(%edi), %edi
        movb $0xff, %al
        movl $(IOMAP_BYTES + 1), %ecx
        call memset_slow                /* all denied, and the trailing 0xff byte */
        andb $~0x01, iotss + 104 + 0x80/8       /* port 0x80 */
        andb $~0x02, iotss + 104 + 0xe9/8       /* port 0xe9 */
        movl $iotss, %eax
        movw $(104 + IOMAP_BYTES), gdt + SEL_IOTSS      /* limit: the last bitmap byte */
        movw %ax, gdt + SEL_IOTSS + 2
        shrl $16, %eax
        movb %al, gdt + SEL_IOTSS + 4
        movb $0x89, gdt + SEL_IOTSS + 5
        movb $0, gdt + SEL_IOTSS + 6
        movb %ah, gdt + SEL_IOTSS + 7
        movw $SEL_IOTSS, %ax
        ltr %ax

        REC_RESET
        movl $0, u_val
        USER u_in_e9
        CHECK_EQ rec_n, $0, "bitmap-in-allowed-port"
        CHECK_EQ u_val, $0xe9, "bitmap-in-reads-port"

        REC_RESET
        USER u_out_e9                   /* writes "#u\n" to the console */
        CHECK_EQ rec_n, $0, "bitmap-out-allowed-port"

        REC_RESET
        USER u_out_80
        CHECK_EQ rec_n, $0, "bitmap-out-port-80"

        REC_RESET
        USER u_out_21
        UCHECK "bitmap-denied-port", $13, $0, $u_out_21_f, $ustack_top

        REC_RESET
        USER u_inw_e8
        UCHECK "bitmap-word-first-byte-denied", $13, $0, $u_inw_e8_f, $ustack_top

        REC_RESET
        USER u_inw_e9
        UCHECK "bitmap-word-second-byte-denied", $13, $0, $u_inw_e9_f, $ustack_top

        REC_RESET
        USER u_in_400
        UCHECK "bitmap-port-beyond-limit", $13, $0, $u_in_400_f, $ustack_top

        REC_RESET
        USER u_cli
        UCHECK "iopl0-cli", $13, $0, $u_cli_f, $ustack_top
        REC_RESET
        USER u_sti
        UCHECK "iopl0-sti", $13, $0, $u_sti_f, $ustack_top

        REC_RESET
        movl $0, u_val
        USER u_popf
        CHECK_EQ rec_n, $0, "iopl0-popf-no-fault"
        movl u_val, %eax
        andl $(EFL_IF | EFL_IOPL3), %eax
        CHECK_EQ %eax, $0, "iopl0-popf-keeps-if-and-iopl"

        /* ---- IOPL 3: every port, cli and sti at ring 3 */
        REC_RESET
        USER u_out_21, 0x3002
        CHECK_EQ rec_n, $0, "iopl3-any-port"
        REC_RESET
        movl $0, u_val
        USER u_clisti, 0x3002
        CHECK_EQ rec_n, $0, "iopl3-cli-sti-allowed"
        movl u_val, %eax
        andl $EFL_IF, %eax
        CHECK_EQ %eax, $EFL_IF, "iopl3-sti-sets-if"
        movl u_val2, %eax
        andl $EFL_IF, %eax
        CHECK_EQ %eax, $0, "iopl3-cli-clears-if"
        REC_RESET
        movl $0, u_val
        USER u_popf, 0x3002
        movl u_val, %eax
        andl $(EFL_IF | EFL_IOPL3), %eax
        CHECK_EQ %eax, $(EFL_IF | EFL_IOPL3), "iopl3-popf-sets-if-keeps-iopl"

        /* ---- ring 0 ignores the bitmap */
        REC_RESET
        inb $0x21, %al
        CHECK_EQ rec_n, $0, "ring0-any-port"
        ret

/* ---------------------------------------------------------------- ring 3 */
u_in_e9:
        movl $1f, resume_eip
u_in_e9_f:
        inb $0xe9, %al
        movzbl %al, %eax
        movl %eax, u_val
1:      int $0x80
u_out_e9:
        movl $1f, resume_eip
        movb $'#', %al
        outb %al, $0xe9
        movb $'u', %al
        outb %al, $0xe9
        movb $'\n', %al
        outb %al, $0xe9
1:      int $0x80
u_out_80:
        movl $1f, resume_eip
        outb %al, $0x80
1:      int $0x80
u_out_21:
        movl $1f, resume_eip
        movb $0xff, %al
u_out_21_f:
        outb %al, $0x21
1:      int $0x80
u_inw_e8:
        movl $1f, resume_eip
u_inw_e8_f:
        inw $0xe8, %ax
1:      int $0x80
u_inw_e9:
        movl $1f, resume_eip
u_inw_e9_f:
        inw $0xe9, %ax
1:      int $0x80
u_in_400:
        movl $1f, resume_eip
        movw $0x400, %dx
u_in_400_f:
        inb (%dx), %al
1:      int $0x80
u_cli:  movl $1f, resume_eip
u_cli_f:
        cli
1:      int $0x80
u_sti:  movl $1f, resume_eip
u_sti_f:
        sti
1:      int $0x80
u_popf: movl $1f, resume_eip
        pushl $(EFL_IF | EFL_IOPL3 | 2)
        popfl
        pushfl
        popl u_val
        pushl $2
        popfl
1:      int $0x80
u_clisti:
        movl $1f, resume_eip
        sti
        pushfl
        popl u_val
        cli
        pushfl
        popl u_val2
1:      int $0x80

        .data
u_val:  .long 0
u_val2: .long 0
        .bss
        .balign 16
iotss:  .skip 104 + IOMAP_BYTES + 1
        .text
