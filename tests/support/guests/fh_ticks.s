/*
 * fh_ticks.s -- a guest that prints "tick N" on COM1 once per second of its own time.
 *
 * Why: with -icount sleep=on virtual time follows the wall clock while the
 * guest idles; time gdb holds the CPU must not be run or made up.  The PIT
 * runs at 100 Hz (divisor 11932); IRQ0 counts `ticks`; the main loop halts
 * and prints at every 100th tick, for TICKS_END seconds, then exits.
 */
        .include "lib.inc"
        .include "dev_common.inc"

        .ifndef TICKS_END
        .set TICKS_END, 8
        .endif

        .data
        .globl ticks, seconds
ticks:   .long 0
seconds: .long 0
        .text

pit_isr:
        incl ticks
        pushl %eax
        EOI_MASTER
        popl %eax
        iret

main:
        call pic_remap
        IRQ_GATE 0x20, pit_isr
        movl $0, %ecx
        call irq_unmask
        call ser_init
        movb $0x34, %al                 /* channel 0, lobyte/hibyte, mode 2 */
        outb %al, $0x43
        movw $11932, %ax                /* 1193182 / 11932 = 100 Hz */
        outb %al, $0x40
        movb %ah, %al
        outb %al, $0x40
        sti
1:      hlt
        movl ticks, %eax
        xorl %edx, %edx
        movl $100, %ecx
        divl %ecx
        cmpl seconds, %eax
        je 1b
        movl %eax, seconds
        movl $tickmsg, %esi
        call ser_puts
        movl seconds, %eax
        addb $'0', %al
        call ser_putc
        movb $'\n', %al
        call ser_putc
        cmpl $TICKS_END, seconds
        jb 1b
        cli
        ret

        .section .rodata
tickmsg: .asciz "tick "
