/* entrydump: report the registers a kernel is entered with, on port 0xE9 as
 * "reg NAME HEX" lines, then exit through isa-debug-exit (0xF4) with 0.
 * Built as the protected-mode part of a test bzImage (bzsetup.S in front)
 * and, with PVH=1, as an ELF32 carrying the Xen PVH entry note. */
        .code32
        .text
        .globl _start
_start:
        movl %eax, saved + 0
        movl %ecx, saved + 4
        movl %edx, saved + 8
        movl %ebx, saved + 12
        movl %esp, saved + 16
        movl %ebp, saved + 20
        movl %esi, saved + 24
        movl %edi, saved + 28
        xorl %eax, %eax
        movw %cs, %ax
        movl %eax, saved + 32
        movw %ds, %ax
        movl %eax, saved + 36
        movw %es, %ax
        movl %eax, saved + 40
        movw %ss, %ax
        movl %eax, saved + 44
        pushfl
        popl saved + 48
        movl %cr0, %eax
        movl %eax, saved + 52
        movl %cr4, %eax
        movl %eax, saved + 56
        movl $stack_top, %esp
        /* a far data access through DS at a high address proves the flat 4 GiB limit */
        movl 0xfffffff0, %eax
        movl $names, %esi
        movl $saved, %edi
        movl $15, %ecx
1:      pushl %ecx
        movl $reg_prefix, %ebx
        call puts_ebx
        movl %esi, %ebx
        call puts_ebx
        movl %ebx, %esi
        incl %esi               /* past the name's NUL */
        movb $' ', %al
        outb %al, $0xe9
        movl (%edi), %edx
        call hex_edx
        movb $'\n', %al
        outb %al, $0xe9
        addl $4, %edi
        popl %ecx
        loop 1b
        xorl %eax, %eax
        outl %eax, $0xf4
2:      cli
        hlt
        jmp 2b

/* write the NUL-terminated string at %ebx; leaves %ebx at the NUL */
puts_ebx:
        movb (%ebx), %al
        testb %al, %al
        jz 3f
        outb %al, $0xe9
        incl %ebx
        jmp puts_ebx
3:      ret

hex_edx:
        movl $8, %ecx
4:      roll $4, %edx
        movl %edx, %eax
        andl $15, %eax
        movb hexdigits(%eax), %al
        outb %al, $0xe9
        loop 4b
        ret

        .data
reg_prefix: .asciz "reg "
hexdigits:  .ascii "0123456789abcdef"
names:
        .asciz "eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi"
        .asciz "cs", "ds", "es", "ss", "eflags", "cr0", "cr4"
        .balign 4
saved:  .space 64
        .space 4096
stack_top:

.ifdef PVH
        .section .note.Xen, "a", @note
        .balign 4
        .long 4                 /* namesz */
        .long 4                 /* descsz */
        .long 18                /* XEN_ELFNOTE_PHYS32_ENTRY */
        .asciz "Xen"
        .long _start
.endif
