/* Multiboot entry for the SSE floating-point guest: CR0.EM off, MP on, CR4.OSFXSR and
 * OSXMMEXCPT on (as an OS that uses SSE sets them), a stack, main(), isa-debug-exit. */
        .section .text
        .balign 4
        .long 0x1BADB002, 0, -0x1BADB002
        .globl _start
_start:
        movl $stack_top, %esp
        movl %cr0, %eax
        andl $~0x4, %eax                /* EM */
        orl $0x2, %eax                  /* MP */
        movl %eax, %cr0
        movl %cr4, %eax
        orl $0x600, %eax                /* OSFXSR | OSXMMEXCPT */
        movl %eax, %cr4
        call main
        movb $0, %al
        outb %al, $0xf4
1:      hlt
        jmp 1b
        .bss
        .balign 16
        .skip 16384
stack_top:
