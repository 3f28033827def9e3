/* Multiboot v1 entry of the SIMD C guest: CR0.EM off, MP and NE on, CR4.OSFXSR|OSXMMEXCPT on,
   a stack, main(), then isa-debug-exit with main's return value. */
        .section .multiboot, "a"
        .align 4
        .long 0x1BADB002, 0, -0x1BADB002
        .text
        .globl _start
_start:
        movl $stack_top, %esp
        movl %cr0, %eax
        andl $~0x0c, %eax               /* EM TS */
        orl $0x22, %eax                 /* MP NE */
        movl %eax, %cr0
        movl %cr4, %eax
        orl $0x600, %eax                /* OSFXSR OSXMMEXCPT */
        movl %eax, %cr4
        fninit
        call main
        outl %eax, $0xf4
1:      hlt
        jmp 1b
        .bss
        .align 16
        .space 65536
stack_top:
