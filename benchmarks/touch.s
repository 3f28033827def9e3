/*
 * touch.s -- start-up and resident-memory benchmark guest (benchmarks/startup_bench.py).
 *
 * A multiboot kernel whose first instruction can end the run: with PAGES=0
 * it writes isa-debug-exit at once (time to the first instruction); else it
 * writes one byte in each of PAGES 4 KiB pages from 4 MiB up (paging off),
 * so the host commits exactly those guest pages, then exits.
 */
        .text
        .balign 4
multiboot_header:
        .long 0x1BADB002
        .long 0
        .long -0x1BADB002
        .globl _start
_start:
        movl $PAGES, %ecx
        movl $0x400000, %edi
1:      testl %ecx, %ecx
        jz 2f
        movb $1, (%edi)
        addl $4096, %edi
        decl %ecx
        jmp 1b
2:      xorl %eax, %eax
        outb %al, $0xf4
3:      hlt
        jmp 3b
