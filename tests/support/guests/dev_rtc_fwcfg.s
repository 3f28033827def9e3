/*
 * dev_rtc_fwcfg.s -- what a kernel learns about the machine at boot:
 * the date from the MC146818, memory sizes from the CMOS NVRAM, and QEMU's
 * fw_cfg items (signature, RAM size, CPU count, the etc/e820 RAM map found
 * through the file directory).
 *
 * Why: kernels size memory from CMOS 0x15-0x18/0x30/0x31/0x34/0x35 or from
 * fw_cfg's etc/e820, and read the wall clock from the RTC (waiting for UIP
 * to clear first).  Every "cmos", "date" and "fwcfg" line must equal
 * QEMU's (run with -m 32 and -rtc base= at gdbemu's rtc_base); the time of
 * day is not printed, QEMU's clock runs on the host's.
 */
        .include "lib.inc"
        .include "dev_common.inc"

        .section .rodata
cmos_regs:
        .byte 0x0a, 0x0b, 0x0d, 0x10, 0x14, 0x15, 0x16, 0x17, 0x18, 0x30, 0x31, 0x32
        .byte 0x34, 0x35, 0x38, 0x3d, 0x5b, 0x5c, 0x5d, 0x5f
        .set N_CMOS, 20
e820_name: .asciz "etc/e820"
        .data
name_buf:   .fill 56, 1, 0
e820_sel:   .long 0
e820_size:  .long 0
        .text

/* cmos(al = index) -> eax */
cmos:
        outb %al, $0x70
        xorl %eax, %eax
        inb $0x71, %al
        ret

/* fw_select(eax = key) */
fw_select:
        pushl %edx
        movw $0x510, %dx
        outw %ax, %dx
        popl %edx
        ret
/* fw_byte -> eax (zero-extended) */
fw_byte:
        pushl %edx
        movw $0x511, %dx
        xorl %eax, %eax
        inb %dx, %al
        popl %edx
        ret
/* fw_be32 -> eax (big-endian u32 from the stream) */
fw_be32:
        pushl %ecx
        pushl %edx
        xorl %edx, %edx
        movl $4, %ecx
1:      shll $8, %edx
        call fw_byte
        orl %eax, %edx
        decl %ecx
        jnz 1b
        movl %edx, %eax
        popl %edx
        popl %ecx
        ret
/* fw_le32 -> eax */
fw_le32:
        pushl %ecx
        pushl %edx
        xorl %edx, %edx
        xorl %ecx, %ecx
1:      call fw_byte
        shll %cl, %eax
        orl %eax, %edx
        addl $8, %ecx
        cmpl $32, %ecx
        jb 1b
        movl %edx, %eax
        popl %edx
        popl %ecx
        ret

main:
        /* ---- RTC date: wait for UIP = 0, then read (BCD as SeaBIOS left it) */
1:      movb $0x0a, %al
        call cmos
        testb $0x80, %al
        jnz 1b
        PRINT "date "
        movb $0x32, %al
        call cmos
        call put_hex2
        movb $0x09, %al
        call cmos
        call put_hex2
        movb $'-', %al
        call putc
        movb $0x08, %al
        call cmos
        call put_hex2
        movb $'-', %al
        call putc
        movb $0x07, %al
        call cmos
        call put_hex2
        PRINT " dow "
        movb $0x06, %al
        call cmos
        call put_hex2
        movb $'\n', %al
        call putc

        /* ---- NVRAM bytes */
        xorl %ebx, %ebx
2:      PRINT "cmos "
        movb cmos_regs(%ebx), %al
        call put_hex2
        movb $'=', %al
        call putc
        movb cmos_regs(%ebx), %al
        call cmos
        cmpb $0x0a, cmos_regs(%ebx)
        jne 3f
        andb $0x7f, %al                 /* UIP is a moment, not a setting */
3:      call put_hex2
        movb $'\n', %al
        call putc
        incl %ebx
        cmpl $N_CMOS, %ebx
        jb 2b

        /* ---- fw_cfg */
        movl $0, %eax
        call fw_select
        call fw_le32
        CHECK_EQ %eax, $0x554d4551, "fwcfg-signature"
        movl $1, %eax
        call fw_select
        call fw_le32
        andl $1, %eax
        CHECK_EQ %eax, $1, "fwcfg-traditional-interface"
        movl $3, %eax
        call fw_select
        call fw_le32
        movl %eax, %ebx
        call fw_le32
        PRINT "fwcfg ram "
        call put_hex
        movl %ebx, %eax
        call put_hex
        PRINT "\nfwcfg nb_cpus "
        movl $5, %eax
        call fw_select
        call fw_byte
        call put_hex2
        call fw_byte
        call put_hex2
        PRINT "\nfwcfg max_cpus "
        movl $0x0f, %eax
        call fw_select
        call fw_byte
        call put_hex2
        call fw_byte
        call put_hex2
        PRINT "\nfwcfg nographic "
        movl $4, %eax
        call fw_select
        call fw_byte
        call put_hex2
        call fw_byte
        call put_hex2
        PRINT "\nfwcfg irq0_override "
        movl $0x8002, %eax
        call fw_select
        call fw_le32
        call put_hex
        PRINT "\nfwcfg past-end "
        movl $0, %eax
        call fw_select
        call fw_le32
        call fw_byte                    /* beyond "QEMU": zero */
        call put_hex2
        movb $'\n', %al
        call putc

        /* file directory: find etc/e820 */
        movl $0x19, %eax
        call fw_select
        call fw_be32
        movl %eax, %ebx                 /* count */
4:      testl %ebx, %ebx
        jz 7f
        call fw_be32
        movl %eax, %ebp                 /* size */
        call fw_byte
        shll $8, %eax
        movl %eax, %edx
        call fw_byte
        orl %eax, %edx                  /* select */
        call fw_byte
        call fw_byte                    /* reserved */
        movl $name_buf, %edi
        movl $56, %ecx
5:      call fw_byte
        movb %al, (%edi)
        incl %edi
        decl %ecx
        jnz 5b
        movl $name_buf, %esi
        movl $e820_name, %edi
        movl $9, %ecx
        repe cmpsb
        jne 6f
        movl %edx, e820_sel
        movl %ebp, e820_size
6:      decl %ebx
        jmp 4b
7:      cmpl $0, e820_sel
        setne %al
        movzbl %al, %eax
        CHECK_EQ %eax, $1, "fwcfg-dir-has-etc-e820"
        movl e820_size, %eax
        xorl %edx, %edx
        movl $20, %ecx
        divl %ecx
        CHECK_EQ %edx, $0, "fwcfg-e820-size-multiple-of-20"
        movl %eax, %ebx
        movl e820_sel, %eax
        call fw_select
8:      testl %ebx, %ebx
        jz 9f
        PRINT "fwcfg e820 "
        call fw_le32
        movl %eax, %ecx
        call fw_le32
        call put_hex
        movl %ecx, %eax
        call put_hex
        movb $' ', %al
        call putc
        call fw_le32
        movl %eax, %ecx
        call fw_le32
        call put_hex
        movl %ecx, %eax
        call put_hex
        movb $' ', %al
        call putc
        call fw_le32
        call put_hex
        movb $'\n', %al
        call putc
        decl %ebx
        jmp 8b
9:      ret
