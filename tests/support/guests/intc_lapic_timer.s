/*
 * intc_lapic_timer.s -- the local APIC timer against virtual time.
 *
 * Why: schedulers run off the APIC timer, and kernels calibrate it by
 * reading the current count.  One-shot fires once and stays at 0; periodic
 * fires every initial*divisor bus clocks and reloads; the divide register
 * scales the rate; a masked LVT entry counts without interrupting; an
 * initial count of 0 stops the timer; hlt sleeps until the next tick; a
 * tick while IF=0 stays pending (one IRR bit, so ticks coalesce).
 *
 * Lines "# name value" are measurements: tests/guests/test_hw_intc.py compares them
 * with QEMU run with -icount shift=3,sleep=off (one instruction = 8 ns, as
 * gdbemu's virtual clock), within the tolerances written there.
 */
        .include "lib.inc"
        .include "intc_common.inc"

/* OBS "name", value: a measurement line "# name <decimal>" (value: register or memory). */
.macro OBS name:req, value:req
        pushl %eax
        movl \value, %eax
        PRINT "# \name "
        call put_dec
        movb $'\n', %al
        call putc
        popl %eax
.endm

/* WITHIN value, low, high, "name": check low <= value <= high (unsigned). */
.macro WITHIN value:req, low:req, high:req, name:req
        pushl %eax
        pushl %ebx
        movl \value, %eax
        xorl %ebx, %ebx
        cmpl $\low, %eax
        jb 1f
        cmpl $\high, %eax
        ja 1f
        incl %ebx
1:      CHECK_EQ %ebx, $1, "\name"
        popl %ebx
        popl %eax
.endm

        .text
hook_marker:
        movl marker, %eax
        movl %eax, seen_marker
        movl $0, APIC + A_EOI
        ret

/* spin(ecx = iterations): a two-instruction loop. */
spin:
1:      decl %ecx
        jnz 1b
        ret

main:
        call intc_init
        movl $0x20, %eax
        movl $0x28, %edx
        call pic_init
        movl $0x40, %ecx
1:      movl $hook_eoi_apic, intc_hook(,%ecx,4)
        incl %ecx
        cmpl $0xff, %ecx
        jb 1b

        SET_PREFIX "oneshot"
        call intc_reset
        movl $0x0b, APIC + A_TDCR       /* divide by 1: 1 GHz */
        movl $0x50, APIC + A_LVT_TIMER
        movl $100000, APIC + A_TMICT    /* 100 us */
        movl APIC + A_TMCCT, %ebx
        OBS "oneshot-ccr-first", %ebx
        WITHIN %ebx, 99000, 100000, "ccr-just-started"
        CHECK_EQ APIC + A_TMICT, $100000, "initial-readback"
        sti
        movl $1000000, %ecx
2:      cmpl $0, intc_count+4*0x50
        jne 3f
        decl %ecx
        jnz 2b
3:      cli
        movl $1000000, %eax
        subl %ecx, %eax
        OBS "oneshot-wait-iterations", %eax
        CHECK_EQ intc_count+4*0x50, $1, "fired"
        CHECK_EQ APIC + A_TMCCT, $0, "ccr-zero-after"
        sti
        movl $20000, %ecx
        call spin
        cli
        CHECK_EQ intc_count+4*0x50, $1, "fires-once"
        movl $100000, APIC + A_TMICT
        movl $5000, %ecx
        call spin
        movl $100000, APIC + A_TMICT    /* rewriting the initial count restarts */
        movl APIC + A_TMCCT, %eax
        WITHIN %eax, 99000, 100000, "rewrite-restarts"
        movl $0, APIC + A_TMICT

        SET_PREFIX "rate"
        movl $0x10050, APIC + A_LVT_TIMER
        movl $0x0b, APIC + A_TDCR
        movl $0xffffffff, APIC + A_TMICT
        movl APIC + A_TMCCT, %esi
        movl $1000, %ecx
        call spin
        movl APIC + A_TMCCT, %edi
        subl %edi, %esi
        OBS "ccr-delta-div1", %esi
        WITHIN %esi, 15000, 18000, "div1-counts-bus-clocks"
        movl %esi, %ebp
        movl $0x00, APIC + A_TDCR       /* divide by 2 */
        movl $0xffffffff, APIC + A_TMICT
        movl APIC + A_TMCCT, %esi
        movl $1000, %ecx
        call spin
        movl APIC + A_TMCCT, %edi
        subl %edi, %esi
        OBS "ccr-delta-div2", %esi
        shll $1, %esi
        subl %ebp, %esi
        addl $8, %esi
        WITHIN %esi, 0, 16, "div2-half-rate"
        movl $0x0a, APIC + A_TDCR       /* divide by 128 */
        movl $0xffffffff, APIC + A_TMICT
        movl APIC + A_TMCCT, %esi
        movl $1000, %ecx
        call spin
        movl APIC + A_TMCCT, %edi
        subl %edi, %esi
        OBS "ccr-delta-div128", %esi
        WITHIN %esi, 100, 150, "div128"
        movl $0, APIC + A_TMICT
        CHECK_EQ APIC + A_TMCCT, $0, "zero-initial-stops"

        SET_PREFIX "periodic"
        call intc_reset
        movl $0x03, APIC + A_TDCR       /* divide by 16 */
        movl $0x20051, APIC + A_LVT_TIMER
        movl $1000, APIC + A_TMICT      /* 16 us */
        sti
        movl $50000, %ecx
        call spin
        cli
        movl APIC + A_TMCCT, %ebx
        movl $0, APIC + A_TMICT
        OBS "periodic-count", intc_count+4*0x51
        OBS "periodic-ccr-end", %ebx
        WITHIN intc_count+4*0x51, 40, 60, "count-in-range"
        WITHIN %ebx, 1, 1000, "ccr-in-range"
        call intc_reset
        movl $0x30052, APIC + A_LVT_TIMER   /* masked, periodic */
        movl $1000, APIC + A_TMICT
        movl APIC + A_TMCCT, %esi
        sti
        movl $10000, %ecx
        call spin
        cli
        movl APIC + A_TMCCT, %edi
        CHECK_NO_IRQ "masked-no-interrupt"
        xorl %eax, %eax
        cmpl %esi, %edi
        setne %al
        CHECK_EQ %eax, $1, "masked-still-counts"
        call intc_reset
        movl $0x20053, APIC + A_LVT_TIMER
        movl $20000, %ecx
        call spin                       /* 5 periods with IF=0 */
        CHECK_EQ APIC + A_IRR + 0x20, $0x80000, "tick-pending-in-irr"
        movl $0, APIC + A_TMICT
        OPEN_WINDOW
        CHECK_LOG "ticks-coalesce", 0x53

        SET_PREFIX "precise"
        movl $0x10050, APIC + A_LVT_TIMER
        movl $0x0b, APIC + A_TDCR
        movl $20000, APIC + A_TMICT
        xorl %ebx, %ebx
5:      movl APIC + A_TMCCT, %eax       /* a hot polling loop: every read is exact */
        incl %ebx
        cmpl $10000, %eax
        ja 5b
        OBS "poll-ccr-iterations", %ebx
        WITHIN %eax, 9950, 10000, "poll-ccr-stops-at-threshold"
        movl $0, APIC + A_TMICT
        HOOK 0x60, $hook_marker
        movl $0, marker
        sti
        movl $0x00040060, APIC + A_ICRLO    /* a self IPI is taken right after the write */
        movl $1, marker
        cli
        CHECK_EQ seen_marker, $0, "self-ipi-before-next-instruction"

        SET_PREFIX "hlt"
        call intc_reset
        movl $0x0b, APIC + A_TDCR
        movl $0x20054, APIC + A_LVT_TIMER
        movl $100000, APIC + A_TMICT
        movl $5, %ebx
4:      sti
        hlt
        cli
        decl %ebx
        jnz 4b
        movl $0, APIC + A_TMICT
        CHECK_LOG "wakes-on-each-tick", 0x54, 0x54, 0x54, 0x54, 0x54
        movl $0x10000, APIC + A_LVT_TIMER
        CLEAR_PREFIX
        ret

        .data
marker:         .long 0
seen_marker:    .long 1
        .text
