/*
 * exc_irq.s -- hardware interrupts against the interrupt shadows, and through
 * an IDT task gate.  Run on gdbemu only (tests/guests/test_exceptions.py), with a
 * test interrupt source on port 0x510: writing a vector there raises an
 * edge-triggered interrupt with that vector (acknowledged once).  There is no
 * such device on QEMU; the shadow checks that can be made without an
 * interrupt controller run on both in exc_shadow.s.
 *
 * Why: "sti; hlt" and "sti; ret" idioms and the "mov ss; mov esp" stack
 * switch depend on the shadow: an interrupt pending while IF=0 is taken
 * after the instruction that follows STI, not after STI itself (SDM vol. 2
 * STI), and not between MOV SS and the next instruction (SDM vol. 3,
 * 6.8.3); POPF and IRET that set IF have no shadow.  An interrupt through
 * a task gate switches tasks like INT n, without an error code.
 */
        .include "exc_common.inc"

        .set PORT_IRQ, 0x510
        .set VEC_IRQ, 0x30
        .set VEC_IRQTASK, 0x31
        .set SEL_TI, 0x30               /* TSS of the interrupt task */
        .set T_EIP, 0x20
        .set T_EFL, 0x24
        .set T_ESP, 0x38
        .set T_ES,  0x48
        .set T_CS,  0x4c
        .set T_SS,  0x50
        .set T_DS,  0x54
        .set T_FS,  0x58
        .set T_GS,  0x5c

/* RAISE vec: make the test source request vector `vec` */
.macro RAISE vec:req
        movb $\vec, %al
        movw $PORT_IRQ, %dx
        outb %al, (%dx)
.endm

main:
        call tss_init
        call hook_all_rec
        movl $VEC_IRQ, %ecx
        movl $irq_handler, %eax
        movl $0x8e00, %edx
        call idt_set_gate

        /* ---- sti: taken after the next instruction, even mid-block */
        movl $0, irq_n
        RAISE VEC_IRQ
        movl $1, %eax
        movl $2, %ebx
        sti
a1:     nop
a2:     nop
        cli
        CHECK_EQ irq_n, $1, "sti-irq-taken-once"
        CHECK_EQ irq_eip, $a2, "sti-irq-after-next-insn"

        /* ---- sti; hlt: the interrupt wakes the hlt (taken after it) */
        movl $0, irq_n
        RAISE VEC_IRQ
        sti
h1:     hlt
h2:     cli
        CHECK_EQ irq_eip, $h2, "sti-hlt-irq-after-hlt"

        /* ---- popf setting IF: no shadow */
        movl $0, irq_n
        RAISE VEC_IRQ
        pushl $0x202
        popfl
b1:     nop
        cli
        CHECK_EQ irq_eip, $b1, "popf-no-shadow"

        /* ---- iret setting IF: no shadow, taken before the target's first instruction */
        movl $0, irq_n
        RAISE VEC_IRQ
        pushl $0x202
        pushl %cs
        pushl $c1
        iret
c1:     nop
        cli
        CHECK_EQ irq_eip, $c1, "iret-no-shadow"

        /* ---- mov ss with IF=1: tests/guests/test_exceptions.py stops at d_movss, executes it,
         * raises the interrupt, and lets the guest go on: taken after d1 */
        movl $0, irq_n
        movw %ss, %cx
        sti
        nop
d_movss:
        movw %cx, %ss
d1:     nop
d2:     nop
        cli
        movl irq_n, %eax
        movl %eax, movss_irq_n
        movl irq_eip, %eax
        movl %eax, movss_irq_eip

        /* ---- an interrupt through a task gate */
        movl $tss_i, %edi
        movl $irq_task, T_EIP(%edi)
        movl $2, T_EFL(%edi)
        movl $ti_stack_top, T_ESP(%edi)
        movl $SEL_KCODE, T_CS(%edi)
        movl $SEL_KDATA, T_SS(%edi)
        movl $SEL_KDATA, T_DS(%edi)
        movl $SEL_KDATA, T_ES(%edi)
        movl $SEL_KDATA, T_FS(%edi)
        movl $SEL_KDATA, T_GS(%edi)
        movl $tss_i, %eax
        movw $0x67, gdt + SEL_TI
        movw %ax, gdt + SEL_TI + 2
        shrl $16, %eax
        movb %al, gdt + SEL_TI + 4
        movb $0x89, gdt + SEL_TI + 5
        movb $0, gdt + SEL_TI + 6
        movb %ah, gdt + SEL_TI + 7
        movl $(SEL_TI << 16), idt + VEC_IRQTASK*8
        movl $0x8500, idt + VEC_IRQTASK*8 + 4
        RAISE VEC_IRQTASK
        sti
        nop
e1:     cli
        CHECK_EQ ti_runs, $1, "irq-task-gate-runs"
        CHECK_EQ ti_link, $SEL_TSS, "irq-task-gate-back-link"
        CHECK_EQ ti_old_eip, $e1, "irq-task-gate-saves-interrupted-eip"
        CHECK_EQ ti_esp, $ti_stack_top, "irq-task-gate-no-error-code"
        movl ti_efl, %eax
        andl $EFL_NT, %eax
        CHECK_EQ %eax, $EFL_NT, "irq-task-gate-sets-nt"
        ret

irq_handler:
        pushl %eax
        incl irq_n
        movl 4(%esp), %eax
        movl %eax, irq_eip
        popl %eax
        iret

irq_task:
        incl ti_runs
        movl %esp, ti_esp
        pushfl
        popl ti_efl
        movzwl tss_i, %eax
        movl %eax, ti_link
        movl tss + 0x20, %eax           /* the interrupted task's saved EIP (lib.inc's TSS) */
        movl %eax, ti_old_eip
        iret
        jmp irq_task

        .data
irq_n:  .long 0
irq_eip: .long 0
        .globl movss_irq_n, movss_irq_eip
movss_irq_n: .long 0
movss_irq_eip: .long 0
ti_runs: .long 0
ti_esp: .long 0
ti_efl: .long 0
ti_link: .long 0
ti_old_eip: .long 0
        .bss
        .balign 16
tss_i:  .skip 104
        .balign 16
        .skip 1024
ti_stack_top:
        .text
