/*
 * intc_pic.s -- the 8259A pair as a kernel programs it, with IRQs from a test device.
 *
 * Why: a kernel's interrupt entry depends on the exact 8259 rules: a
 * masked request waits in IRR, the ISR bit of the level being serviced
 * blocks that level and every lower one until the EOI, a higher level
 * nests, non-specific EOI retires the highest in-service level and
 * specific EOI a named one, rotation changes the order, AEOI leaves no
 * ISR bit, a level-triggered line (ELCR) interrupts again until it is
 * lowered, the poll command acknowledges without the CPU, special mask
 * mode lets lower levels in while the masked one is in service, a slave
 * request arrives as base+n with IR2 in service on the master, and a
 * slave request that vanished before the acknowledge is the spurious
 * IRQ15 (slave base + 7, no slave ISR bit, master IR2 in service).
 *
 * Vectors: master 0x20-0x27, slave 0x28-0x2f.  IRQ lines: pc-testdev ports
 * 0x2000+n (see intc_common.inc).  IRQ0 is the PIT on both QEMU and gdbemu,
 * so its IRR bit (latched edges while masked) is ignored in IRR reads.
 */
        .include "lib.inc"
        .include "intc_common.inc"

        .text
read_irr_m:
        PORT_OUT 0x20, 0x0a
        PORT_IN 0x20
        andl $0xfe, %eax
        ret
read_isr_m:
        PORT_OUT 0x20, 0x0b
        PORT_IN 0x20
        ret
read_irr_s:
        PORT_OUT 0xa0, 0x0a
        PORT_IN 0xa0
        ret
read_isr_s:
        PORT_OUT 0xa0, 0x0b
        PORT_IN 0xa0
        ret

/* master_init(eax = ICW4): re-initialize the master only (base 0x20, everything masked). */
master_init:
        pushl %eax
        PORT_OUT 0x20, 0x11
        PORT_OUT 0x21, 0x20
        PORT_OUT 0x21, 0x04
        popl %eax
        outb %al, $0x21
        PORT_OUT 0x21, 0xff
        ret

/* Hooks */
hook_rotate_eoi:                        /* rotate on non-specific EOI */
        PORT_OUT 0x20, 0xa0
        ret
hook_level5:                            /* first time EOI only (line still high), then lower + EOI */
        incl level5_calls
        cmpl $2, level5_calls
        jb 1f
        LOWER 5
1:      PORT_OUT 0x20, 0x20
        ret
hook_smm3:                              /* in IRQ3's handler: mask 3, SMM on, let IRQ5 in */
        PORT_OUT 0x21, 0xdf                 /* IMR: only 5 unmasked (3 masked now) */
        movb smm_ocw3, %al
        outb %al, $0x20
        RAISE 5
        sti
        nop
        nop
        cli
        PORT_OUT 0x20, 0x48                 /* special mask mode off */
        PORT_OUT 0x21, 0xff                 /* a request still pending stays pending */
        PORT_OUT 0x20, 0x63                 /* specific EOI 3 */
        ret
hook_seoi5:
        PORT_OUT 0x20, 0x65                 /* specific EOI 5 */
        LOWER 5
        ret
hook_cascade:
        call read_isr_m
        movl %eax, seen_isr_m
        call read_isr_s
        movl %eax, seen_isr_s
        PORT_OUT 0xa0, 0x20
        PORT_OUT 0x20, 0x20
        ret
hook_spurious15:                        /* Linux's rule: EOI the master only */
        call read_isr_m
        movl %eax, seen_isr_m
        call read_isr_s
        movl %eax, seen_isr_s
        PORT_OUT 0x20, 0x20
        ret

main:
        call intc_init
        movl $0x20, %eax
        movl $0x28, %edx
        call pic_init

        SET_PREFIX "masks"
        PORT_IN 0x21
        CHECK_EQ %eax, $0xff, "imr-master-after-init"
        PORT_IN 0xa1
        CHECK_EQ %eax, $0xff, "imr-slave-after-init"
        PORT_OUT 0x21, 0x5a
        PORT_IN 0x21
        CHECK_EQ %eax, $0x5a, "imr-readback"
        PORT_OUT 0x21, 0xff

        SET_PREFIX "nesting"
        call intc_reset
        RAISE 3
        call read_irr_m
        CHECK_EQ %eax, $0x08, "masked-request-in-irr"
        OPEN_WINDOW
        CHECK_NO_IRQ "masked-not-taken"
        PORT_OUT 0x21, 0xf7
        OPEN_WINDOW
        CHECK_LOG "unmasked-taken", 0x23
        call read_isr_m
        CHECK_EQ %eax, $0x08, "isr-set-by-inta"
        call read_irr_m
        CHECK_EQ %eax, $0, "edge-request-consumed"
        LOWER 3
        RAISE 3
        call read_irr_m
        CHECK_EQ %eax, $0x08, "new-edge-latched"
        OPEN_WINDOW
        CHECK_LOG "isr-blocks-same-level", 0x23
        PORT_OUT 0x21, 0xd5                 /* unmask 1, 3, 5 */
        RAISE 5
        OPEN_WINDOW
        CHECK_LOG "lower-level-blocked", 0x23
        RAISE 1
        OPEN_WINDOW
        CHECK_LOG "higher-level-nests", 0x23, 0x21
        call read_isr_m
        CHECK_EQ %eax, $0x0a, "nested-isr"
        PORT_OUT 0x20, 0x20
        call read_isr_m
        CHECK_EQ %eax, $0x08, "nonspecific-eoi-clears-highest"
        OPEN_WINDOW
        CHECK_LOG "still-blocked", 0x23, 0x21
        PORT_OUT 0x20, 0x63
        call read_isr_m
        CHECK_EQ %eax, $0, "specific-eoi"
        OPEN_WINDOW
        CHECK_LOG "pending-same-level-first", 0x23, 0x21, 0x23
        PORT_OUT 0x20, 0x20
        OPEN_WINDOW
        CHECK_LOG "eoi-lets-lower-level-in", 0x23, 0x21, 0x23, 0x25
        PORT_OUT 0x20, 0x20
        call read_isr_m
        CHECK_EQ %eax, $0, "all-retired"
        LOWER 1
        LOWER 3
        LOWER 5

        SET_PREFIX "priority"
        movl $0x21, %ecx
1:      movl $hook_eoi_master, intc_hook(,%ecx,4)
        incl %ecx
        cmpl $0x28, %ecx
        jb 1b
        call intc_reset
        PORT_OUT 0x21, 0x87                 /* unmask 3, 4, 5, 6 */
        RAISE 6
        RAISE 4
        RAISE 5
        OPEN_WINDOW
        CHECK_LOG "fixed-order", 0x24, 0x25, 0x26
        LOWER 4
        LOWER 5
        LOWER 6
        PORT_OUT 0x20, 0xc4                 /* set priority: 4 is the bottom level */
        call intc_reset
        RAISE 4
        RAISE 5
        RAISE 6
        RAISE 3
        OPEN_WINDOW
        CHECK_LOG "set-priority-rotates", 0x25, 0x26, 0x23, 0x24
        LOWER 3
        LOWER 4
        LOWER 5
        LOWER 6
        PORT_OUT 0x20, 0xc7                 /* back to IR0 highest */
        movl $0x21, %ecx
1:      movl $hook_rotate_eoi, intc_hook(,%ecx,4)
        incl %ecx
        cmpl $0x28, %ecx
        jb 1b
        PORT_OUT 0x21, 0x07                 /* unmask 3-7 */
        call intc_reset
        RAISE 4
        RAISE 6
        OPEN_WINDOW                     /* 4, rotate (bottom 4); 6, rotate (bottom 6) */
        LOWER 4
        LOWER 6
        RAISE 5
        RAISE 7
        OPEN_WINDOW                     /* now 7 is the highest level */
        CHECK_LOG "rotate-on-nonspecific-eoi", 0x24, 0x26, 0x27, 0x25
        LOWER 5
        LOWER 7
        PORT_OUT 0x20, 0xc7
        call intc_clear_hooks
        call intc_reset
        RAISE 4
        OPEN_WINDOW                     /* 4 in service (no EOI hook) */
        PORT_OUT 0x20, 0xe4                 /* rotate on specific EOI 4: 4 becomes the bottom level */
        call read_isr_m
        CHECK_EQ %eax, $0, "rotate-specific-eoi-clears"
        LOWER 4
        movl $0x21, %ecx
1:      movl $hook_eoi_master, intc_hook(,%ecx,4)
        incl %ecx
        cmpl $0x28, %ecx
        jb 1b
        RAISE 3
        RAISE 5
        OPEN_WINDOW
        CHECK_LOG "rotate-on-specific-eoi", 0x24, 0x25, 0x23
        LOWER 3
        LOWER 5
        PORT_OUT 0x20, 0xc7
        PORT_OUT 0x21, 0xff

        SET_PREFIX "aeoi"
        call intc_clear_hooks
        movl $0x03, %eax                /* ICW4: 8086, automatic EOI */
        call master_init
        PORT_OUT 0x21, 0xc7                 /* unmask 3, 4, 5 */
        call intc_reset
        RAISE 4
        OPEN_WINDOW
        call read_isr_m
        CHECK_EQ %eax, $0, "no-isr-bit"
        LOWER 4
        RAISE 4
        OPEN_WINDOW
        CHECK_LOG "taken-again-without-eoi", 0x24, 0x24
        LOWER 4
        PORT_OUT 0x20, 0x80                 /* rotate in automatic EOI mode: set */
        call intc_reset
        RAISE 4
        OPEN_WINDOW                     /* 4 becomes the bottom level */
        RAISE 3
        RAISE 5
        OPEN_WINDOW
        CHECK_LOG "rotate-in-aeoi", 0x24, 0x25, 0x23
        LOWER 3
        LOWER 4
        LOWER 5
        PORT_OUT 0x20, 0x00                 /* rotate in automatic EOI mode: clear */
        movl $0x01, %eax
        call master_init

        SET_PREFIX "level"
        PORT_OUT 0x4d0, 0xff
        PORT_IN 0x4d0
        CHECK_EQ %eax, $0xf8, "elcr-master-writable-bits"
        PORT_OUT 0x4d1, 0xff
        PORT_IN 0x4d1
        CHECK_EQ %eax, $0xde, "elcr-slave-writable-bits"
        PORT_OUT 0x4d1, 0x00
        PORT_OUT 0x4d0, 0x20                /* IRQ5 level-triggered */
        HOOK 0x25, $hook_level5
        call intc_reset
        RAISE 5
        call read_irr_m
        CHECK_EQ %eax, $0x20, "irr-follows-line-high"
        LOWER 5
        call read_irr_m
        CHECK_EQ %eax, $0, "irr-follows-line-low"
        RAISE 5
        PORT_OUT 0x21, 0xdf
        OPEN_WINDOW
        CHECK_LOG "retriggers-until-lowered", 0x25, 0x25
        call read_irr_m
        CHECK_EQ %eax, $0, "lowered-no-request"
        PORT_OUT 0x21, 0xff
        PORT_OUT 0x4d0, 0x00

        SET_PREFIX "edge"
        HOOK 0x24, $hook_eoi_master
        HOOK 0x26, $hook_eoi_master
        call intc_reset
        RAISE 4
        LOWER 4
        call read_irr_m
        CHECK_EQ %eax, $0x10, "pulse-latched"
        PORT_OUT 0x21, 0xef
        OPEN_WINDOW
        CHECK_LOG "pulse-delivered", 0x24
        PORT_OUT 0x21, 0xff
        call intc_reset
        RAISE 4
        PORT_OUT 0x21, 0xef                 /* latched while masked, then unmasked */
        OPEN_WINDOW
        CHECK_LOG "latched-while-masked", 0x24
        LOWER 4
        PORT_OUT 0x21, 0xff
        RAISE 6
        movl $0x01, %eax
        call master_init                /* ICW1 re-arms the edge detectors */
        call read_irr_m
        CHECK_EQ %eax, $0, "icw1-drops-edge-request"
        LOWER 6
        RAISE 6
        call read_irr_m
        CHECK_EQ %eax, $0x40, "edge-after-icw1"
        LOWER 6
        movl $0x01, %eax
        call master_init                /* drop the latched request */

        SET_PREFIX "poll"
        call intc_clear_hooks
        call intc_reset
        PORT_OUT 0x21, 0xef
        RAISE 4
        PORT_OUT 0x20, 0x0c
        PORT_IN 0x20
        CHECK_EQ %eax, $0x84, "poll-word"
        call read_isr_m
        CHECK_EQ %eax, $0x10, "poll-acknowledges"
        PORT_OUT 0x20, 0x20
        OPEN_WINDOW
        CHECK_NO_IRQ "poll-consumed-request"
        PORT_OUT 0x20, 0x0c
        PORT_IN 0x20
        CHECK_EQ %eax, $0, "poll-nothing-pending"
        LOWER 4
        PORT_OUT 0x21, 0xff

        SET_PREFIX "smm"
        HOOK 0x23, $hook_smm3
        HOOK 0x25, $hook_seoi5
        movb $0x68, smm_ocw3            /* special mask mode on */
        call intc_reset
        PORT_OUT 0x21, 0xf7
        RAISE 3
        OPEN_WINDOW
        CHECK_LOG "lower-level-in-while-masked-level-in-service", 0x23, 0x25
        call read_isr_m
        CHECK_EQ %eax, $0, "isr-clear-after"
        LOWER 3
        movb $0x48, smm_ocw3            /* control: special mask mode stays off */
        call intc_reset
        PORT_OUT 0x21, 0xf7
        RAISE 3
        OPEN_WINDOW
        CHECK_LOG "without-smm-lower-level-waits", 0x23
        call read_irr_m
        CHECK_EQ %eax, $0x20, "without-smm-request-pending"
        PORT_OUT 0x21, 0xdf
        OPEN_WINDOW
        CHECK_LOG "without-smm-after-eoi", 0x23, 0x25
        LOWER 3
        PORT_OUT 0x21, 0xff

        SET_PREFIX "cascade"
        call intc_clear_hooks
        HOOK 0x2a, $hook_cascade
        call intc_reset
        PORT_OUT 0x21, 0xfb                 /* master: IR2 */
        PORT_OUT 0xa1, 0xfb                 /* slave: IRQ10 */
        RAISE 10
        OPEN_WINDOW
        CHECK_LOG "slave-vector", 0x2a
        CHECK_EQ seen_isr_m, $0x04, "master-ir2-in-service"
        CHECK_EQ seen_isr_s, $0x04, "slave-ir2-in-service"
        LOWER 10
        HOOK 0x2f, $hook_spurious15
        call intc_reset
        RAISE 10                        /* slave INT -> master IR2 edge latched */
        PORT_OUT 0xa1, 0xff                 /* the request vanishes before the INTA */
        OPEN_WINDOW
        CHECK_LOG "spurious-irq15", 0x2f
        CHECK_EQ seen_isr_m, $0x04, "spurious-master-ir2-in-service"
        CHECK_EQ seen_isr_s, $0x00, "spurious-no-slave-isr"
        call read_isr_m
        CHECK_EQ %eax, $0, "master-eoi-enough"
        LOWER 10

        SET_PREFIX "sfnm"
        call intc_clear_hooks
        movl $0x11, %eax                /* ICW4: special fully nested mode */
        call master_init
        PORT_OUT 0x21, 0xfb
        PORT_OUT 0xa1, 0xf9                 /* slave: IRQ9, IRQ10 */
        call intc_reset
        RAISE 10
        OPEN_WINDOW
        RAISE 9
        OPEN_WINDOW
        CHECK_LOG "slave-nests-through-ir2", 0x2a, 0x29
        PORT_OUT 0xa0, 0x20
        PORT_OUT 0xa0, 0x20
        PORT_OUT 0x20, 0x20
        PORT_OUT 0x20, 0x20
        LOWER 9
        LOWER 10
        movl $0x01, %eax                /* control: fully nested mode */
        call master_init
        PORT_OUT 0x21, 0xfb
        call intc_reset
        RAISE 10
        OPEN_WINDOW
        RAISE 9
        OPEN_WINDOW
        CHECK_LOG "fnm-ir2-blocks-slave", 0x2a
        PORT_OUT 0xa0, 0x20
        PORT_OUT 0x20, 0x20
        OPEN_WINDOW                     /* IRQ9's request is still on the slave */
        CHECK_LOG "fnm-after-eoi", 0x2a, 0x29
        PORT_OUT 0xa0, 0x20
        PORT_OUT 0x20, 0x20
        LOWER 9
        LOWER 10
        PORT_OUT 0x21, 0xff
        PORT_OUT 0xa1, 0xff
        CLEAR_PREFIX
        ret

        .data
level5_calls:   .long 0
seen_isr_m:     .long 0
seen_isr_s:     .long 0
smm_ocw3:       .byte 0x68
        .text
