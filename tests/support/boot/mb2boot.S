/* The multiboot2 header and the entry of mb2check (see mb2check.c). */
        .set MB2_MAGIC, 0xe85250d6
        .section .mb2hdr, "a"
        .balign 8
mb2_header:
        .long MB2_MAGIC, 0, mb2_end - mb2_header, -(MB2_MAGIC + (mb2_end - mb2_header))
        .balign 8
        /* information request: everything mb2check checks */
        .word 1, 0
        .long 8 + 4 * 10
        .long 1, 2, 3, 4, 6, 8, 9, 14, 15, 21
        .balign 8
#ifdef AOUT
        .word 2, 0              /* address tag: load the flat file at __kernel_start */
        .long 24
        .long mb2_header, __kernel_start, _edata, _end
        .balign 8
#endif
        .word 3, 0              /* entry address */
        .long 12
        .long _start
        .balign 8
        .word 6, 1              /* module alignment (optional) */
        .long 8
        .balign 8
        .word 0, 0
        .long 8
mb2_end:

        .text
        .code32
        .globl _start
_start:
        movl %eax, entry_regs
        movl %ebx, entry_regs + 4
        movl %cr0, %eax
        movl %eax, entry_regs + 8
        pushfl
        popl entry_regs + 12
        movl $stack_top, %esp
        call cmain
1:      cli
        hlt
        jmp 1b

        .bss
        .balign 16
        .space 8192
stack_top:
