/*
 * intc_lapic.s -- the local APIC as a kernel drives it: registers, IPIs,
 * priorities, NMI, the 8259 through LINT0, errors, and the enable bits.
 *
 * Why: SMP and APIC kernels depend on the APIC's priority rules (the
 * highest IRR vector is dispensed only above the PPR class, a vector of
 * the class in service waits for the EOI, TPR holds lower classes back),
 * on IPIs reaching exactly the addressed APICs (physical ID, logical
 * flat/cluster, shorthands), on NMIs that ignore IF and are held while an
 * NMI handler runs, on the 8259 arriving through LINT0 in ExtINT mode
 * whatever the TPR, and on what the ESR reports.
 *
 * The checks that end in "sdm-..." follow the SDM where QEMU does not
 * (see tests/guests/test_hw_intc.py, QEMU_DIFFERENCES).  The IA32_APIC_BASE
 * global disable comes last: QEMU cannot enable the APIC again after it.
 */
        .include "lib.inc"
        .include "intc_common.inc"

        .text
/* send_ipi(eax = ICR low, edx = ICR high) */
send_ipi:
        movl %edx, APIC + A_ICRHI
        movl %eax, APIC + A_ICRLO
        ret

.macro IPI lo:req, hi=0
        pushl %eax
        pushl %edx
        movl $\lo, %eax
        movl $\hi, %edx
        call send_ipi
        popl %edx
        popl %eax
.endm

hook_isr42:
        movl APIC + A_ISR + 0x20, %eax
        movl %eax, seen_isr
        movl APIC + A_PPR, %eax
        movl %eax, seen_ppr
        movl APIC + A_TMR + 0x20, %eax
        movl %eax, seen_tmr
        movl $0, APIC + A_EOI
        ret
hook_nest62:
        IPI 0x00040065                  /* same class as the one in service: waits */
        IPI 0x00040072                  /* a higher class: nests */
        sti
        nop
        nop
        cli
        movl $0, APIC + A_EOI
        ret
hook_nmi:
        incl nmi_count
        incl nmi_depth
        movl nmi_depth, %eax
        cmpl nmi_max_depth, %eax
        jbe 1f
        movl %eax, nmi_max_depth
1:      cmpl $1, nmi_count
        jne 2f
        cmpl $0, nmi_again
        je 2f
        IPI 0x00000400                  /* another NMI while this one is handled: held until iret */
        nop
        nop
2:      decl nmi_depth
        ret
hook_count15:
        incl count15
        ret

main:
        call intc_init
        movl $0x20, %eax
        movl $0x28, %edx
        call pic_init                   /* the 8259s quiet: all masked */
        movl $0x40, %ecx
1:      movl $hook_eoi_apic, intc_hook(,%ecx,4)
        incl %ecx
        cmpl $0xff, %ecx
        jb 1b

        SET_PREFIX "regs"
        CHECK_EQ APIC + A_VER, $0x00050014, "version"
        CHECK_EQ APIC + A_ID, $0, "id"
        CHECK_EQ APIC + A_SVR, $0x1ff, "svr-as-firmware-left-it"
        CHECK_EQ APIC + A_LVT_LINT0, $0x8700, "lint0-extint"
        CHECK_EQ APIC + A_LVT_LINT1, $0x8400, "lint1-nmi"
        CHECK_EQ APIC + A_LVT_TIMER, $0x10000, "timer-masked"
        CHECK_EQ APIC + A_DFR, $0xffffffff, "dfr-flat"
        movl $0x5a, APIC + A_TPR
        CHECK_EQ APIC + A_TPR, $0x5a, "tpr-readback"
        CHECK_EQ APIC + A_PPR, $0x5a, "ppr-is-tpr-when-idle"
        movl $0, APIC + A_TPR
        movl $0x0b, APIC + A_TDCR
        CHECK_EQ APIC + A_TDCR, $0x0b, "tdcr-readback"
        movl $0x03000000, APIC + A_LDR
        CHECK_EQ APIC + A_LDR, $0x03000000, "ldr-readback"
        movl $0, APIC + A_LDR
        movl $0x0fffffff, APIC + A_DFR
        CHECK_EQ APIC + A_DFR, $0x0fffffff, "dfr-cluster"
        movl $0xffffffff, APIC + A_DFR

        SET_PREFIX "ipi"
        call intc_reset
        IPI 0x00040041
        CHECK_EQ APIC + A_IRR + 0x20, $0x2, "self-ipi-in-irr"
        OPEN_WINDOW
        CHECK_LOG "self-ipi-taken", 0x41
        CHECK_EQ APIC + A_IRR + 0x20, $0, "irr-cleared"
        CHECK_EQ APIC + A_ISR + 0x20, $0, "isr-cleared-by-eoi"
        HOOK 0x42, $hook_isr42
        IPI 0x00040042
        OPEN_WINDOW
        CHECK_EQ seen_isr, $0x4, "isr-while-in-service"
        CHECK_EQ seen_ppr, $0x40, "ppr-is-isr-class"
        CHECK_EQ seen_tmr, $0, "ipi-is-edge"
        call intc_reset
        IPI 0x00040051
        IPI 0x00040091
        IPI 0x00040071
        OPEN_WINDOW
        CHECK_LOG "highest-vector-first", 0x91, 0x71, 0x51

        SET_PREFIX "priority"
        call intc_reset
        movl $0x60, APIC + A_TPR
        IPI 0x00040055
        IPI 0x00040065
        IPI 0x00040075
        OPEN_WINDOW
        CHECK_LOG "tpr-holds-classes-up-to-its-own", 0x75
        CHECK_EQ APIC + A_PPR, $0x60, "ppr-is-tpr"
        movl $0, APIC + A_TPR
        OPEN_WINDOW
        CHECK_LOG "tpr-lowered", 0x75, 0x65, 0x55
        call intc_reset
        HOOK 0x62, $hook_nest62
        IPI 0x00040062
        OPEN_WINDOW
        CHECK_LOG "same-class-waits-higher-nests", 0x62, 0x72, 0x65

        SET_PREFIX "dest"
        call intc_reset
        IPI 0x00000044, 0x00000000
        OPEN_WINDOW
        CHECK_LOG "physical-own-id", 0x44
        call intc_reset
        IPI 0x00000045, 0x05000000
        IPI 0x000c0046
        OPEN_WINDOW
        CHECK_NO_IRQ "other-ids-dropped"
        IPI 0x00080047
        OPEN_WINDOW
        CHECK_LOG "all-including-self", 0x47
        call intc_reset
        movl $0x01000000, APIC + A_LDR
        IPI 0x00000848, 0x01000000
        IPI 0x00000849, 0x02000000
        OPEN_WINDOW
        CHECK_LOG "logical-flat", 0x48
        call intc_reset
        IPI 0x0000094d, 0x01000000      /* lowest priority, logical */
        OPEN_WINDOW
        CHECK_LOG "lowest-priority", 0x4d
        call intc_reset
        movl $0x0fffffff, APIC + A_DFR
        movl $0x21000000, APIC + A_LDR
        IPI 0x0000084a, 0x21000000
        IPI 0x0000084b, 0x11000000
        IPI 0x0000084c, 0x22000000
        OPEN_WINDOW
        CHECK_LOG "logical-cluster", 0x4a
        movl $0xffffffff, APIC + A_DFR
        movl $0, APIC + A_LDR

        SET_PREFIX "nmi"
        SET_HOOK 2, $hook_nmi
        IPI 0x00000400                  /* NMI to APIC 0, IF=0 */
        nop
        CHECK_EQ nmi_count, $1, "ignores-if"
        movl $0, nmi_count
        movl $1, nmi_again
        IPI 0x00000400
        nop
        nop
        CHECK_EQ nmi_count, $2, "second-nmi-after-iret"
        CHECK_EQ nmi_max_depth, $1, "blocked-while-handled"
        movl $0, nmi_again

        SET_PREFIX "svr"
        call intc_reset
        movl $0xff, APIC + A_SVR
        IPI 0x0004004e
        OPEN_WINDOW
        CHECK_NO_IRQ "disabled-holds-fixed"
        CHECK_EQ APIC + A_IRR + 0x20, $0x4000, "held-in-irr"
        movl $0x1ff, APIC + A_SVR
        OPEN_WINDOW
        CHECK_LOG "enable-dispenses-held", 0x4e

        SET_PREFIX "lint0"
        HOOK 0x23, $hook_eoi_master
        PORT_OUT 0x21, 0xf7
        movl $0x700, APIC + A_LVT_LINT0
        call intc_reset
        RAISE 3
        OPEN_WINDOW
        LOWER 3
        CHECK_LOG "extint-from-8259", 0x23
        call intc_reset
        movl $0xf0, APIC + A_TPR
        RAISE 3
        OPEN_WINDOW
        LOWER 3
        movl $0, APIC + A_TPR
        CHECK_LOG "extint-ignores-tpr", 0x23
        call intc_reset
        movl $0x10700, APIC + A_LVT_LINT0
        RAISE 3
        OPEN_WINDOW
        CHECK_NO_IRQ "masked-lint0-blocks-8259"
        movl $0x700, APIC + A_LVT_LINT0
        OPEN_WINDOW
        LOWER 3
        CHECK_LOG "unmasked-lint0-delivers", 0x23
        call intc_reset
        movl $0xff, APIC + A_SVR
        CHECK_EQ APIC + A_LVT_LINT0, $0x10700, "sdm-software-disable-masks-lvt"
        movl $0x700, APIC + A_LVT_LINT0
        CHECK_EQ APIC + A_LVT_LINT0, $0x10700, "sdm-mask-sticks-while-disabled"
        RAISE 3
        OPEN_WINDOW
        LOWER 3
        CHECK_LOG "software-disabled-8259-passes", 0x23
        movl $0x1ff, APIC + A_SVR
        movl $0x700, APIC + A_LVT_LINT0
        PORT_OUT 0x21, 0xff

        SET_PREFIX "esr"
        call intc_reset
        movl $0, APIC + A_ESR
        CHECK_EQ APIC + 0x040, $0, "reserved-reads-zero"
        movl $0, APIC + A_ESR
        CHECK_EQ APIC + A_ESR, $0x80, "illegal-register-address"
        movl $0, APIC + A_ESR
        CHECK_EQ APIC + A_ESR, $0, "sdm-write-clears"
        movl $0x4f, APIC + A_LVT_ERR
        CHECK_EQ APIC + 0x050, $0, "reserved-reads-zero-again"
        OPEN_WINDOW
        CHECK_LOG "sdm-error-interrupt", 0x4f
        movl $0x10000, APIC + A_LVT_ERR
        movl $0, APIC + A_ESR
        SET_HOOK 15, $hook_count15
        IPI 0x0004000f
        OPEN_WINDOW
        CHECK_EQ count15, $0, "sdm-illegal-vector-not-accepted"
        movl $0, APIC + A_ESR
        movl APIC + A_ESR, %eax
        andl $0x60, %eax
        CHECK_EQ %eax, $0x60, "sdm-illegal-vector-send-and-receive"
        movl $0, APIC + A_ESR

        SET_PREFIX "apicbase"
        movl $0x1b, %ecx
        rdmsr
        CHECK_EQ %eax, $0xfee00900, "msr"
        HOOK 0x23, $hook_eoi_master
        PORT_OUT 0x21, 0xf7
        movl $0x1b, %ecx
        movl $0xfee00100, %eax          /* the APIC off: the 8259 is wired to INTR */
        xorl %edx, %edx
        wrmsr
        call intc_reset
        RAISE 3
        OPEN_WINDOW
        LOWER 3
        CHECK_LOG "disabled-8259-direct", 0x23
        CHECK_EQ APIC + A_VER, $0xffffffff, "sdm-disabled-page-gone"
        movl $0x1b, %ecx
        movl $0xfee00900, %eax
        xorl %edx, %edx
        wrmsr
        rdmsr
        CHECK_EQ %eax, $0xfee00900, "sdm-enabled-again"
        CHECK_EQ APIC + A_SVR, $0xff, "svr-after-enable"
        PORT_OUT 0x21, 0xff
        CLEAR_PREFIX
        ret

        .data
seen_isr:       .long 0
seen_ppr:       .long 0
seen_tmr:       .long 0
nmi_count:      .long 0
nmi_depth:      .long 0
nmi_max_depth:  .long 0
nmi_again:      .long 0
count15:        .long 0
        .text
