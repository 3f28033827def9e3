/*
 * gdb_serial.s -- prints through COM1 (polled 16550 at 0x3F8), no debugcon.
 *
 * tests/e2e/test_gdb_e2e.py runs it once without gdb and once under gdb,
 * single-stepping through part of the printing loop: the serial files must
 * be byte-identical (a debugger that perturbs the guest shows up here).
 * LINES lines of "line NN value XXXXXXXX" where the value is a running
 * hash, so a dropped or repeated instruction anywhere changes the text.
 */
        .include "lib.inc"

        .set COM1, 0x3f8
        .set LINES, 40

        .text
main:
        movl $0x12345678, %ebx          /* the running hash */
        xorl %edi, %edi                 /* line number */
serial_loop:
        movl $line_text, %esi
        call serial_puts
        movl %edi, %eax
        call serial_dec2
        movl $value_text, %esi
        call serial_puts
        imull $1103515245, %ebx, %ebx   /* hash = hash * 1103515245 + 12345 + line */
        addl $12345, %ebx
        addl %edi, %ebx
        movl %ebx, %eax
        call serial_hex
        movb $'\n', %al
        call serial_putc
        incl %edi
        cmpl $LINES, %edi
        jb serial_loop
serial_done:
        ret

/* serial_putc(al): wait for THRE (LSR bit 5), then write THR */
serial_putc:
        pushl %edx
        pushl %eax
        movw $COM1 + 5, %dx
1:      inb %dx, %al
        testb $0x20, %al
        jz 1b
        popl %eax
        movw $COM1, %dx
        outb %al, %dx
        popl %edx
        ret

/* serial_puts(esi = NUL-terminated string) */
serial_puts:
        pushl %eax
        pushl %esi
1:      lodsb
        testb %al, %al
        jz 2f
        call serial_putc
        jmp 1b
2:      popl %esi
        popl %eax
        ret

/* serial_dec2(eax < 100): two decimal digits */
serial_dec2:
        pushal
        movl $10, %ecx
        xorl %edx, %edx
        divl %ecx
        addb $'0', %al
        call serial_putc
        movb %dl, %al
        addb $'0', %al
        call serial_putc
        popal
        ret

/* serial_hex(eax): 8 hex digits */
serial_hex:
        pushal
        movl %eax, %edx
        movl $8, %ecx
1:      roll $4, %edx
        movl %edx, %eax
        andl $0xf, %eax
        movb hex_digits(%eax), %al
        call serial_putc
        decl %ecx
        jnz 1b
        popal
        ret

        .section .rodata
line_text:      .asciz "line "
value_text:     .asciz " value "
