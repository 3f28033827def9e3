/*
 * dev_pit.s -- timer-driven kernel ticks: the 8254 in mode 2 through IRQ0.
 *
 * Why: scheduling rests on IRQ0 arriving every divisor / 1.193182 MHz.  The
 * guest reprograms the PIC (vectors 0x20+), sets channel 0 to mode 2 at
 * divisor 1193 (~1 kHz) and sleeps with hlt until 50 ticks have come; it
 * also checks the read-back status byte (mode 2, LSB/MSB, binary), that a
 * latched count lies in 1..1193, and that channel 2 in mode 0 with its gate
 * opened through port 0x61 raises OUT2 (bit 5) after its count, the way
 * Linux calibrates its TSC.
 */
        .include "lib.inc"
        .include "dev_common.inc"

        .set DIVISOR, 1193
        .set TICKS, 50
        .data
ticks:  .long 0
        .text

timer_isr:
        incl ticks
        EOI_MASTER
        iret

main:
        call pic_remap
        IRQ_GATE 0x20, timer_isr
        movb $0x34, %al                 /* ch0, LSB then MSB, mode 2, binary */
        outb %al, $0x43
        movb $(DIVISOR & 0xff), %al
        outb %al, $0x40
        movb $(DIVISOR >> 8), %al
        outb %al, $0x40
        movb $0xe2, %al                 /* read-back: status of ch0 */
        outb %al, $0x43
        xorl %eax, %eax
        inb $0x40, %al
        andl $0x3f, %eax                /* OUT and NULL COUNT depend on the moment */
        CHECK_EQ %eax, $0x34, "readback-status"
        movb $0x00, %al                 /* latch ch0 */
        outb %al, $0x43
        xorl %eax, %eax
        inb $0x40, %al
        movb %al, %bl
        inb $0x40, %al
        movb %al, %ah
        movb %bl, %al
        movl %eax, %ebx
        decl %ebx
        cmpl $DIVISOR, %ebx
        setb %al
        movzbl %al, %eax
        CHECK_EQ %eax, $1, "latched-count-in-range"
        xorl %ecx, %ecx
        call irq_unmask
1:      cli
        cmpl $TICKS, ticks
        jae 2f
        sti
        hlt
        jmp 1b
2:      CHECK_EQ ticks, $TICKS, "ticks"
        /* channel 2, mode 0, gate on through port 0x61: OUT2 rises after the count */
        inb $0x61, %al
        andb $0xfc, %al
        orb $0x01, %al
        outb %al, $0x61
        movb $0xb0, %al                 /* ch2, LSB/MSB, mode 0 */
        outb %al, $0x43
        movb $0x00, %al
        outb %al, $0x42
        movb $0x04, %al                 /* 1024 pulses: ~858 us */
        outb %al, $0x42
        inb $0x61, %al
        andl $0x20, %eax
        CHECK_EQ %eax, $0, "out2-low-while-counting"
        xorl %ecx, %ecx
3:      incl %ecx
        inb $0x61, %al
        testb $0x20, %al
        jz 3b
        movl $1, %eax
        CHECK_EQ %eax, $1, "out2-high-after-count"
        ret
