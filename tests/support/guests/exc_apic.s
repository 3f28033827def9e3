/*
 * exc_apic.s -- the STI shadow with a real interrupt: a local APIC self-IPI
 * made pending while IF=0, then STI.  Runs on the PC board (gdbemu's
 * hw/lapic.py) and on QEMU, which both have a local APIC at 0xfee00000.
 *
 * Why: "sti; hlt" (idle loops) and "sti; nop; cli" (interrupt windows) rely on
 * the STI shadow: an interrupt pending when STI sets IF is recognized only
 * after the next instruction (SDM vol. 2 STI).  POPF and IRET that set IF
 * have no shadow: the interrupt comes at once.  Last, an NMI's frame: the
 * local APIC is the only NMI source these guests have (SDM vol. 3, 6.7).
 */
        .include "exc_common.inc"

        .set APIC, 0xfee00000
        .set APIC_TPR, 0x80
        .set APIC_EOI, 0xb0
        .set APIC_SVR, 0xf0
        .set APIC_ICR_LO, 0x300
        .set APIC_ICR_HI, 0x310
        .set VEC_IPI, 0x40

/* SELF_IPI: a fixed interrupt VEC_IPI to this CPU (destination shorthand "self") */
.macro SELF_IPI
        movl $0, APIC + APIC_ICR_HI
        movl $(0x40000 | VEC_IPI), APIC + APIC_ICR_LO
.endm

main:
        call hook_all_rec
        call pic_mask_all
        movl $VEC_IPI, %ecx
        movl $ipi_handler, %eax
        movl $0x8e00, %edx
        call idt_set_gate
        movl $0, APIC + APIC_TPR
        movl $0x1ff, APIC + APIC_SVR    /* software-enabled, spurious vector 0xff */

        /* ---- pending at sti: taken after the next instruction, even mid-block */
        movl $0, ipi_n
        SELF_IPI
        movl $1, %eax
        movl $2, %ebx
        CHECK_EQ ipi_n, $0, "ipi-held-while-if-0"
        sti
a1:     nop
a2:     nop
        cli
        CHECK_EQ ipi_n, $1, "sti-ipi-taken-once"
        CHECK_EQ ipi_eip, $a2, "sti-ipi-after-next-insn"

        /* ---- sti; hlt: the halt is entered, the interrupt ends it */
        movl $0, ipi_n
        SELF_IPI
        sti
h1:     hlt
h2:     cli
        CHECK_EQ ipi_eip, $h2, "sti-hlt-ipi-after-hlt"

        /* ---- popf setting IF: no shadow */
        movl $0, ipi_n
        SELF_IPI
        pushl $0x202
        popfl
b1:     nop
        cli
        CHECK_EQ ipi_eip, $b1, "popf-no-shadow"

        /* ---- iret setting IF: no shadow */
        movl $0, ipi_n
        SELF_IPI
        pushl $0x202
        pushl %cs
        pushl $c1
        iret
c1:     nop
        cli
        CHECK_EQ ipi_eip, $c1, "iret-no-shadow"

        /* ---- NMI (a self-NMI through the ICR): not masked by IF=0, no error code, the
         * return EIP is the instruction boundary it was taken at: right after the ICR
         * write or, as QEMU takes interrupts between blocks, after the jmp */
        REC_RESET
        movl $-1, resume_eip
        movl $REC_KEEP_EIP, rec_mode
        movl %esp, %ebx
        movl $0, APIC + APIC_ICR_HI
        movl $0x40400, APIC + APIC_ICR_LO       /* delivery mode NMI, shorthand self */
n0:     jmp n1
n1:     nop
        movl $0, rec_mode
        movl rec_log+REC_EIP, %eax
        cmpl $n0, %eax
        jne 1f
        movl $n1, rec_log+REC_EIP       /* either boundary is right: report one */
1:      KCHECK "nmi", $2, $0, $n1, %ebx
        movl rec_log+REC_EFL, %eax
        andl $EFL_IF, %eax
        CHECK_EQ %eax, $0, "nmi-taken-with-if-0"
        ret

ipi_handler:
        pushl %eax
        incl ipi_n
        movl 4(%esp), %eax
        movl %eax, ipi_eip
        movl $0, APIC + APIC_EOI
        popl %eax
        iret

        .data
ipi_n:  .long 0
ipi_eip: .long 0
