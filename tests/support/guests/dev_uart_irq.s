/*
 * dev_uart_irq.s -- interrupt-driven serial output through the 8259.
 *
 * Why: a kernel's serial driver sends from its IRQ4 handler: it enables
 * ETBEI, the UART raises THRE, the handler reads IIR (which clears it),
 * writes the next byte (which clears it and, the THR emptying again,
 * raises it anew) and at the end of the buffer turns ETBEI off.  The
 * transcript must equal QEMU's, every byte must have come from the handler,
 * and the handler must run once per byte plus the final one.
 */
        .include "lib.inc"
        .include "dev_common.inc"

        .section .rodata
msg:    .asciz "gdbemu serial: interrupt-driven output\r\nsecond line from the IRQ4 handler\r\n"
        .set MSG_LEN, 75
        .data
tx_ptr:     .long msg
tx_done:    .long 0
isr_count:  .long 0
thre_count: .long 0
sent:       .long 0
        .text

uart_isr:
        pushal
        incl isr_count
        movw $COM1 + 2, %dx
        inb %dx, %al
        andb $0x0f, %al
        cmpb $0x02, %al                 /* THRE */
        jne 9f
        incl thre_count
        movl tx_ptr, %esi
        movb (%esi), %al
        testb %al, %al
        jz 8f
        movw $COM1, %dx
        outb %al, %dx
        incl tx_ptr
        incl sent
        jmp 9f
8:      movw $COM1 + 1, %dx             /* done: ETBEI off */
        xorb %al, %al
        outb %al, %dx
        movl $1, tx_done
9:      EOI_MASTER
        popal
        iret

main:
        call pic_remap
        IRQ_GATE 0x24, uart_isr
        movl $4, %ecx
        call irq_unmask
        call ser_init
        movw $COM1 + 1, %dx
        movb $0x02, %al                 /* ETBEI: THR is empty, so THRE at once */
        outb %al, %dx
1:      cli
        cmpl $0, tx_done
        jne 2f
        sti
        hlt
        jmp 1b
2:      CHECK_EQ sent, $MSG_LEN, "bytes-sent-by-handler"
        CHECK_EQ thre_count, $MSG_LEN + 1, "thre-interrupts"
        CHECK_EQ isr_count, $MSG_LEN + 1, "handler-runs"
        movw $COM1 + 2, %dx
        call inb_dx
        CHECK_EQ %eax, $0xc1, "iir-idle-after"
        ret
