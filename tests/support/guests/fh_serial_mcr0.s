/*
 * fh_serial_mcr0.s -- serial input by interrupt with MCR = 0 (no OUT2), as xv6 does.
 *
 * Why: kernels written against QEMU write 0 to MCR and still expect IRQ4 for
 * received bytes; QEMU does not gate the line on OUT2.  The guest enables
 * ERBFI, halts until its IRQ4 handler has read a byte, echoes it to COM1 as
 * "got X" and exits through isa-debug-exit.
 */
        .include "lib.inc"
        .include "dev_common.inc"

        .data
got:    .long 0
        .text

uart_isr:
        pushal
        movw $COM1 + 5, %dx
        inb %dx, %al
        testb $1, %al                   /* data ready */
        jz 9f
        movw $COM1, %dx
        inb %dx, %al
        movzbl %al, %eax
        orl $0x100, %eax
        movl %eax, got
9:      EOI_MASTER
        popal
        iret

main:
        call pic_remap
        IRQ_GATE 0x24, uart_isr
        movl $4, %ecx
        call irq_unmask
        call ser_init
        movw $COM1 + 2, %dx
        xorb %al, %al                   /* FIFOs off: one byte raises RDA */
        outb %al, %dx
        movw $COM1 + 4, %dx
        xorb %al, %al                   /* MCR = 0: no DTR, RTS or OUT2 */
        outb %al, %dx
        movw $COM1 + 1, %dx
        movb $0x01, %al                 /* ERBFI */
        outb %al, %dx
        movl $ready, %esi
        call ser_puts
1:      cli
        cmpl $0, got
        jne 2f
        sti
        hlt
        jmp 1b
2:      movl $gotmsg, %esi
        call ser_puts
        movl got, %eax
        call ser_putc
        movb $'\n', %al
        call ser_putc
        ret

        .section .rodata
ready:  .asciz "ready\n"
gotmsg: .asciz "got "
