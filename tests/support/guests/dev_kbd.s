/*
 * dev_kbd.s -- keyboard input through the 8042 and IRQ1.
 *
 * Why: a kernel's keyboard driver takes IRQ1, reads one byte from port 0x60
 * per interrupt and sees set-1 scancodes (the controller translates).  The
 * test types keys on the host side (feed_keys) before the run; the guest
 * collects scancodes until it has KEYS_WANTED of them and prints them,
 * then checks the controller's command byte and self test by polling.
 */
        .include "lib.inc"
        .include "dev_common.inc"

        .set KEYS_WANTED, 12
        .data
nkeys:  .long 0
keys:   .fill 64, 1, 0
        .text

kbd_isr:
        pushal
        inb $0x60, %al
        movl nkeys, %ecx
        cmpl $64, %ecx
        jae 1f
        movb %al, keys(%ecx)
        incl nkeys
1:      EOI_MASTER
        popal
        iret

/* kbc_wait_obf -> al = output buffer byte */
kbc_read:
1:      inb $0x64, %al
        testb $1, %al
        jz 1b
        inb $0x60, %al
        ret

main:
        call pic_remap
        IRQ_GATE 0x21, kbd_isr
        movl $1, %ecx
        call irq_unmask
        /* A byte already waiting raised IRQ1 before the PIC was re-initialized,
         * and ICW1 re-armed the edge detector: take it by polling, the next
         * byte's edge then interrupts. */
        cli
        inb $0x64, %al
        testb $1, %al
        jz 1f
        inb $0x60, %al
        movb %al, keys
        movl $1, nkeys
1:      cli
        cmpl $KEYS_WANTED, nkeys
        jae 2f
        sti
        hlt
        jmp 1b
2:      PRINT "keys"
        xorl %ebx, %ebx
3:      movb $' ', %al
        call putc
        movb keys(%ebx), %al
        call put_hex2
        incl %ebx
        cmpl nkeys, %ebx
        jb 3b
        movb $'\n', %al
        call putc
        /* interrupts off now: talk to the controller by polling */
        movb $0xad, %al                 /* keyboard off while we talk to the controller */
        outb %al, $0x64
        movb $0x20, %al                 /* command byte */
        outb %al, $0x64
        call kbc_read
        movzbl %al, %eax
        andl $0x40, %eax
        CHECK_EQ %eax, $0x40, "translation-on"
        movb $0xaa, %al
        outb %al, $0x64
        call kbc_read
        movzbl %al, %eax
        CHECK_EQ %eax, $0x55, "self-test"
        movb $0xae, %al
        outb %al, $0x64
        ret
