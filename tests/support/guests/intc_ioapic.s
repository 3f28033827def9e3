/*
 * intc_ioapic.s -- ISA IRQs routed through the I/O APIC redirection table.
 *
 * Why: an APIC kernel masks the 8259s and programs one redirection entry
 * per IRQ.  Edge entries send one message per rising edge; level entries
 * set Remote IRR and send nothing more until the local APIC's EOI for that
 * vector comes back, then send again if the line is still asserted (a
 * shared PCI line, a UART with more to say); unmasking an asserted level
 * entry sends at once; the destination (physical ID, logical flat, lowest
 * priority, broadcast) decides who gets it; NMI entries ignore IF.
 *
 * Edges on a masked pin are lost (82093AA datasheet 3.2.4, and QEMU).
 * IRQ0 (the PIT on both machines) is left alone; its routing to pin 2 is
 * a unit test.
 */
        .include "lib.inc"
        .include "intc_common.inc"

        .set RTE_LEVEL, 0x8000
        .set RTE_MASK,  0x10000

/* RTE pin, low[, high]: program redirection entry `pin` (high first, as Linux does). */
.macro RTE pin:req, low:req, high=0
        pushl %eax
        pushl %ecx
        movl $(0x11 + 2 * \pin), %ecx
        movl $\high, %eax
        call ioapic_write
        movl $(0x10 + 2 * \pin), %ecx
        movl $\low, %eax
        call ioapic_write
        popl %ecx
        popl %eax
.endm

        .text
hook_level55:                           /* EOI with the line still high, then lower it */
        incl level_calls
        movl $(0x10 + 2 * 5), %ecx
        call ioapic_read
        movl %eax, seen_rte
        movl APIC + A_TMR + 0x20, %eax
        movl %eax, seen_tmr
        cmpl $2, level_calls
        jb 1f
        LOWER 5
1:      movl $0, APIC + A_EOI
        ret
hook_lower7:
        LOWER 7
        movl $0, APIC + A_EOI
        ret
hook_nmi:
        incl nmi_count
        ret
/* settle: a few branches, so that an emulator that takes interrupts at block ends has had one */
settle:
        pushl %ecx
        movl $4, %ecx
1:      decl %ecx
        jnz 1b
        popl %ecx
        ret

main:
        call intc_init
        movl $0x20, %eax
        movl $0x28, %edx
        call pic_init                   /* the 8259s masked */
        movl $0x10700, APIC + A_LVT_LINT0
        movl $0x40, %ecx
1:      movl $hook_eoi_apic, intc_hook(,%ecx,4)
        incl %ecx
        cmpl $0xff, %ecx
        jb 1b

        SET_PREFIX "regs"
        movl $1, %ecx
        call ioapic_read
        movl %eax, %ebx
        andl $0x00ff0000, %eax
        CHECK_EQ %eax, $0x00170000, "24-entries"
        andl $0xff, %ebx
        PRINT "# ioapic-version "
        movl %ebx, %eax
        call put_hex
        movb $'\n', %al
        call putc
        xorl %ecx, %ecx
        call ioapic_read
        CHECK_EQ %eax, $0, "id-after-reset"
        movl $0x05000000, %eax
        call ioapic_write
        call ioapic_read
        CHECK_EQ %eax, $0x05000000, "id-writable"
        xorl %eax, %eax
        call ioapic_write
        xorl %ebx, %ebx                 /* OR of (entry ^ masked) over all 24 entries */
        movl $0x10, %ecx
2:      call ioapic_read
        xorl $RTE_MASK, %eax
        orl %eax, %ebx
        incl %ecx
        call ioapic_read
        orl %eax, %ebx
        incl %ecx
        cmpl $0x40, %ecx
        jb 2b
        CHECK_EQ %ebx, $0, "entries-masked-after-reset"
        RTE 3, 0x00018955, 0xab000000
        movl $0x16, %ecx
        call ioapic_read
        CHECK_EQ %eax, $0x00018955, "rte-low-readback"
        movl $0x17, %ecx
        call ioapic_read
        CHECK_EQ %eax, $0xab000000, "rte-high-readback"
        CHECK_EQ IOAPIC, $0x17, "ioregsel-readback"
        RTE 3, RTE_MASK

        SET_PREFIX "edge"
        call intc_reset
        RTE 3, 0x43
        RAISE 3
        OPEN_WINDOW
        LOWER 3
        CHECK_LOG "delivered", 0x43
        call intc_reset
        RAISE 3
        CHECK_EQ APIC + A_IRR + 0x20, $0x8, "in-local-apic-irr"
        RAISE 3                         /* no new edge: no new message */
        OPEN_WINDOW
        CHECK_LOG "one-message-per-edge", 0x43
        LOWER 3
        call intc_reset
        RTE 3, 0x43|RTE_MASK
        RAISE 3
        LOWER 3
        RTE 3, 0x43
        OPEN_WINDOW
        CHECK_NO_IRQ "masked-edge-lost"
        call intc_reset
        RTE 10, 0x4a
        RAISE 10
        OPEN_WINDOW
        LOWER 10
        CHECK_LOG "irq10-on-pin10", 0x4a
        RTE 3, RTE_MASK
        RTE 10, RTE_MASK

        SET_PREFIX "level"
        call intc_reset
        HOOK 0x55, $hook_level55
        RTE 5, 0x55|RTE_LEVEL
        RAISE 5
        OPEN_WINDOW
        CHECK_LOG "redelivered-until-lowered", 0x55, 0x55
        movl seen_rte, %eax
        andl $0x4000, %eax
        CHECK_EQ %eax, $0x4000, "remote-irr-while-in-service"
        CHECK_EQ seen_tmr, $0x200000, "tmr-marks-level"
        movl $0x1a, %ecx
        call ioapic_read
        CHECK_EQ %eax, $0x8055, "remote-irr-cleared-by-eoi"
        call intc_reset
        HOOK 0x56, $0                   /* no EOI from the handler */
        RTE 6, 0x56|RTE_LEVEL
        RAISE 6
        OPEN_WINDOW
        LOWER 6
        RAISE 6
        OPEN_WINDOW
        CHECK_LOG "remote-irr-blocks", 0x56
        movl $0, APIC + A_EOI
        OPEN_WINDOW
        CHECK_LOG "eoi-resends-held-line", 0x56, 0x56
        LOWER 6
        movl $0, APIC + A_EOI
        OPEN_WINDOW
        CHECK_LOG "lowered-line-quiet", 0x56, 0x56
        movl $0x1c, %ecx
        call ioapic_read
        CHECK_EQ %eax, $0x8056, "remote-irr-clear-at-end"
        call intc_reset
        HOOK 0x57, $hook_lower7
        RTE 7, 0x57|RTE_LEVEL|RTE_MASK
        RAISE 7
        OPEN_WINDOW
        CHECK_NO_IRQ "masked-level-held"
        RTE 7, 0x57|RTE_LEVEL
        OPEN_WINDOW
        CHECK_LOG "unmask-sends-asserted-level", 0x57
        RTE 5, RTE_MASK
        RTE 6, RTE_MASK
        RTE 7, RTE_MASK

        SET_PREFIX "dest"
        movl $0x01000000, APIC + A_LDR
        call intc_reset
        RTE 9, 0x849, 0x01000000        /* logical, flat: APIC bit 0 */
        RAISE 9
        OPEN_WINDOW
        LOWER 9
        RTE 9, 0x849, 0x02000000
        RAISE 9
        OPEN_WINDOW
        LOWER 9
        CHECK_LOG "logical-flat", 0x49
        call intc_reset
        RTE 9, 0x94a, 0x01000000        /* lowest priority, logical */
        RAISE 9
        OPEN_WINDOW
        LOWER 9
        CHECK_LOG "lowest-priority", 0x4a
        call intc_reset
        RTE 9, 0x4b, 0x01000000         /* physical ID 1: nobody */
        RAISE 9
        OPEN_WINDOW
        LOWER 9
        RTE 9, 0x4c, 0xff000000         /* physical broadcast */
        RAISE 9
        OPEN_WINDOW
        LOWER 9
        CHECK_LOG "physical", 0x4c
        RTE 9, RTE_MASK
        movl $0, APIC + A_LDR

        SET_PREFIX "nmi"
        SET_HOOK 2, $hook_nmi
        RTE 11, 0x400                   /* NMI, edge */
        RAISE 11
        call settle
        LOWER 11
        CHECK_EQ nmi_count, $1, "nmi-entry-ignores-if"
        RTE 11, RTE_MASK
        CLEAR_PREFIX
        ret

        .data
level_calls:    .long 0
seen_rte:       .long 0
seen_tmr:       .long 0
nmi_count:      .long 0
        .text
