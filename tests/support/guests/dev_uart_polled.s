/*
 * dev_uart_polled.s -- a kernel's first console: COM1 driven by polling.
 *
 * Why: most kernels print through the 16550 before they have interrupts.
 * The transcript sent to COM1 must be byte-for-byte what QEMU's -serial
 * file: captures, and the register behaviour a driver's probe relies on
 * must hold: scratch register, divisor latch behind DLAB, IIR FIFO bits,
 * LSR THRE/TEMT after a byte, loopback echo (a common UART-present test).
 */
        .include "lib.inc"
        .include "dev_common.inc"

        .section .rodata
banner: .asciz "gdbemu serial: polled output\r\nline two, 0123456789 !@#$%^&*()\r\n"
tail:   .asciz "bye\r\n"
        .text

main:
        call ser_init
        movw $COM1 + 7, %dx             /* scratch register holds a byte */
        movb $0x5a, %al
        outb %al, %dx
        call inb_dx
        CHECK_EQ %eax, $0x5a, "scratch"
        movw $COM1 + 3, %dx             /* DLAB: offsets 0/1 are the divisor */
        movb $0x83, %al
        outb %al, %dx
        movw $COM1, %dx
        call inb_dx
        CHECK_EQ %eax, $1, "divisor-low"
        movw $COM1 + 1, %dx
        call inb_dx
        CHECK_EQ %eax, $0, "divisor-high"
        movw $COM1 + 3, %dx
        movb $0x03, %al
        outb %al, %dx
        movw $COM1 + 1, %dx
        call inb_dx
        CHECK_EQ %eax, $0, "ier-after-dlab"
        movw $COM1 + 2, %dx
        call inb_dx
        CHECK_EQ %eax, $0xc1, "iir-fifo-no-interrupt"
        movw $COM1 + 5, %dx
        call inb_dx
        CHECK_EQ %eax, $0x60, "lsr-idle"

        movl $banner, %esi
        call ser_puts
        movw $COM1 + 5, %dx
        call inb_dx
        andl $0x60, %eax
        CHECK_EQ %eax, $0x60, "lsr-thre-temt-after-tx"

        /* loopback: bytes written come back through RBR, nothing on the wire */
        movw $COM1 + 4, %dx
        movb $0x1b, %al                 /* LOOP | OUT2 | RTS | DTR */
        outb %al, %dx
        movw $COM1, %dx
        movb $0xa5, %al
        outb %al, %dx
        movw $COM1 + 5, %dx
        call inb_dx
        andl $1, %eax
        CHECK_EQ %eax, $1, "loopback-data-ready"
        movw $COM1, %dx
        call inb_dx
        CHECK_EQ %eax, $0xa5, "loopback-echo"
        movw $COM1 + 6, %dx             /* MSR mirrors MCR in loopback */
        call inb_dx
        andl $0xf0, %eax
        CHECK_EQ %eax, $0xb0, "loopback-msr"
        movw $COM1 + 4, %dx
        movb $0x0b, %al
        outb %al, %dx

        movl $tail, %esi
        call ser_puts
        ret
