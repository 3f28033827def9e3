/* Multiboot entry for the floating-point guests: a stack, main(), isa-debug-exit. */
        .section .text
        .balign 4
        .long 0x1BADB002, 0, -0x1BADB002
        .globl _start
_start:
        movl $stack_top, %esp
        call main
        movb $0, %al
        outb %al, $0xf4
1:      hlt
        jmp 1b
        .bss
        .balign 16
        .skip 16384
stack_top:
