/*
 * dev_platform -- what Linux probes on a PC, as QEMU's pc machine shows it:
 * the PCI functions of bus 0 (configuration mechanism #1), the PIIX4 PM
 * function's PMBA, the ACPI PM timer against PIT channel 2 (the way Linux
 * calibrates), the HPET's capabilities, main counter and a legacy-route
 * timer 0 interrupt on IRQ0, then ACPI S5 power-off through PM1a_CNT
 * (SLP_TYP 0, SLP_EN): the run must end there with status 0.  Lines starting
 * "pci " list the functions found; the rest are checks.
 */
        .include "lib.inc"
        .include "dev_common.inc"

        .set PM_TMR, 0x608
        .set PM1A_CNT, 0x604
        .set HPET, 0xfed00000
        .set PIT2_COUNT, 11932          /* 10 ms at 1.193182 MHz */

hpet_isr:
        incl hpet_irqs
        EOI_MASTER
        iret

/* pci_read(eax = address without the enable bit) -> eax */
pci_read:
        pushl %edx
        orl $0x80000000, %eax
        movw $0xcf8, %dx
        outl %eax, %dx
        movw $0xcfc, %dx
        inl %dx, %eax
        popl %edx
        ret

/* pit2_wait: PIT channel 2 one-shot of PIT2_COUNT, polled through port 0x61 bit 5 */
pit2_wait:
        pushl %eax
        inb $0x61, %al
        andb $0xfc, %al
        orb $0x01, %al
        outb %al, $0x61
        movb $0xb0, %al
        outb %al, $0x43
        movb $(PIT2_COUNT & 0xff), %al
        outb %al, $0x42
        movb $(PIT2_COUNT >> 8), %al
        outb %al, $0x42
1:      inb $0x61, %al
        testb $0x20, %al
        jz 1b
        popl %eax
        ret

/* in_range(eax, ebx = low, ecx = high) -> eax = 1 if low <= eax <= high */
in_range:
        cmpl %ebx, %eax
        jb 1f
        cmpl %ecx, %eax
        ja 1f
        movl $1, %eax
        ret
1:      xorl %eax, %eax
        ret

main:
        /* ---- PCI: every function of bus 0 that answers */
        xorl %edi, %edi                 /* device << 11 | function << 8 */
1:      movl %edi, %eax
        call pci_read
        cmpw $0xffff, %ax
        je 2f
        pushl %eax
        PRINT "pci "
        movl %edi, %eax
        call put_hex
        movb $' ', %al
        call putc
        popl %eax
        call put_hex
        movb $' ', %al
        call putc
        movl %edi, %eax
        orl $8, %eax
        call pci_read
        call put_hex
        movb $'\n', %al
        call putc
2:      addl $0x100, %edi
        cmpl $0x10000, %edi
        jb 1b
        movl $(31 << 11), %eax          /* an empty slot */
        call pci_read
        CHECK_EQ %eax, $0xffffffff, "pci-empty-slot"
        movl $0x80000000 | (1 << 11) | (3 << 8) | 0x40, %eax
        movw $0xcf8, %dx
        outl %eax, %dx
        inl %dx, %eax
        CHECK_EQ %eax, $0x80000000 | (1 << 11) | (3 << 8) | 0x40, "pci-address-readback"
        movl $(1 << 11) | (3 << 8) | 0x40, %eax
        call pci_read
        andl $0xffc1, %eax
        CHECK_EQ %eax, $0x0601, "piix4-pmba"

        /* ---- ACPI PM timer against PIT channel 2 (10 ms): ~35795 ticks */
        movw $PM_TMR, %dx
        inl %dx, %eax
        movl %eax, %esi
        call pit2_wait
        inl %dx, %eax
        subl %esi, %eax
        andl $0xffffff, %eax
        PRINT "info pm-ticks "
        call put_hex
        PRINT "\n"
        movl $34000, %ebx
        movl $37600, %ecx
        call in_range
        CHECK_EQ %eax, $1, "pm-timer-3.58MHz"
        /* the TSC over the same 10 ms, as Linux's PIT calibration measures it (reported only:
         * QEMU's TSC follows the host) */
        rdtsc
        movl %eax, %esi
        call pit2_wait
        rdtsc
        subl %esi, %eax
        PRINT "info tsc-ticks-10ms "
        call put_hex
        PRINT "\n"
        movw $PM_TMR, %dx
        inl %dx, %eax
        shrl $24, %eax
        CHECK_EQ %eax, $0, "pm-timer-24-bit"

        /* ---- HPET */
        movl HPET, %eax
        CHECK_EQ %eax, $0x8086a201, "hpet-capabilities"
        movl HPET + 4, %eax
        CHECK_EQ %eax, $10000000, "hpet-period-fs"
        movl $0, HPET + 0x10            /* halt the counter, zero it */
        movl $0, HPET + 0xf0
        movl $0, HPET + 0xf4
        movl $1, HPET + 0x10            /* ENABLE_CNF */
        call pit2_wait
        movl HPET + 0xf0, %eax          /* ~1,000,000 ticks in 10 ms */
        PRINT "info hpet-ticks "
        call put_hex
        PRINT "\n"
        movl $950000, %ebx
        movl $1050000, %ecx
        call in_range
        CHECK_EQ %eax, $1, "hpet-counter-100MHz"

        /* timer 0, legacy replacement route: IRQ0 once, 1 ms from now */
        call pic_remap
        IRQ_GATE 0x20, hpet_isr
        movb $0x30, %al                 /* PIT channel 0 to mode 0 with no count: silent */
        outb %al, $0x43
        movl HPET + 0x100, %eax
        andl $0x30, %eax
        CHECK_EQ %eax, $0x30, "hpet-timer0-periodic-and-64bit-capable"
        movl HPET + 0xf0, %eax
        addl $100000, %eax
        movl %eax, HPET + 0x108
        movl $0, HPET + 0x10c
        movl $0x04, HPET + 0x100        /* edge, INT_ENB, one-shot */
        movl $3, HPET + 0x10            /* ENABLE_CNF | LEG_RT_CNF */
        xorl %ecx, %ecx
        call irq_unmask
        movl $100, %ebx
3:      cli
        cmpl $0, hpet_irqs
        jne 4f
        decl %ebx
        jz 4f
        sti
        hlt
        jmp 3b
4:      sti
        call pit2_wait                  /* a one-shot fires once */
        cli
        CHECK_EQ hpet_irqs, $1, "hpet-legacy-timer0-irq0"
        movl $0, HPET + 0x10

        /* ---- ACPI S5: SLP_TYP 0 | SLP_EN; nothing after this may run */
        PRINT "1..poweroff\n"
        movw $PM1A_CNT, %dx
        movw $0x2000, %ax
        outw %ax, %dx
        cli                             /* QEMU acts on the request at its next exit: wait for it */
        hlt
        PRINT "still running after S5\n"
        movb $0x7f, %al
        jmp guest_exit

        .data
        .balign 4
hpet_irqs: .long 0
