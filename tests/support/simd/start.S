/* Multiboot v1 entry of the SIMD C guests: a flat GDT, CR0.EM off, MP and NE on, CR4.OSFXSR|OSXMMEXCPT on,
   a stack, main(), then isa-debug-exit with main's return value. */
        .section .multiboot, "a"
        .align 4
        .long 0x1BADB002, 0, -0x1BADB002
        .text
        .globl _start
_start:
        lgdt gdt_desc                   /* multiboot leaves GDTR undefined: our own flat GDT */
        ljmp $0x08, $1f
1:      movw $0x10, %ax
        movw %ax, %ds
        movw %ax, %es
        movw %ax, %fs
        movw %ax, %gs
        movw %ax, %ss
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
        .data
        .align 8
gdt:    .quad 0
        .quad 0x00cf9a000000ffff        /* 0x08: flat 32-bit code */
        .quad 0x00cf92000000ffff        /* 0x10: flat data */
gdt_desc:
        .word gdt_desc - gdt - 1
        .long gdt
        .bss
        .align 16
        .space 65536
stack_top:
