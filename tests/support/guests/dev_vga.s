/*
 * dev_vga.s -- a kernel's VGA text console: stores to 0xB8000, the
 * hardware cursor moved through the CRTC (index/data, also with one outw).
 *
 * Why: early consoles write character/attribute pairs straight into the
 * text window and move the cursor with CRTC registers 0x0E/0x0F; the screen
 * shown (text, colours, cursor) is what the test inspects afterwards.  The
 * guest also checks what a driver reads back: misc output 0x67 (colour
 * addressing), cursor registers, and input status 1 changing between reads
 * (retrace polling must progress).
 */
        .include "lib.inc"
        .include "dev_common.inc"

        .set VGA_TEXT, 0xb8000
        .section .rodata
hello:  .asciz "Hello, VGA"
line2:  .asciz "gdbemu text mode 80x25"
        .text

/* vputs(esi = string, edi = cell address, ah = attribute) */
vputs:
        pushal
1:      lodsb
        testb %al, %al
        jz 2f
        movw %ax, (%edi)
        addl $2, %edi
        jmp 1b
2:      popal
        ret

main:
        movl $hello, %esi
        movl $(VGA_TEXT + (2 * 80 + 5) * 2), %edi
        movb $0x1e, %ah                 /* yellow on blue */
        call vputs
        movl $line2, %esi
        movl $(VGA_TEXT + (4 * 80) * 2), %edi
        movb $0x4f, %ah                 /* white on red */
        call vputs
        /* the 16 colours as full blocks on row 24 */
        movl $(VGA_TEXT + (24 * 80) * 2), %edi
        xorl %ecx, %ecx
1:      movb $0xdb, %al
        movb %cl, %ah
        movw %ax, (%edi)
        addl $2, %edi
        incl %ecx
        cmpl $16, %ecx
        jb 1b
        /* cursor to row 2, column 15: high byte by index/data, low byte by one outw */
        movw $0x3d4, %dx
        movb $0x0e, %al
        outb %al, %dx
        incw %dx
        movb $0x00, %al
        outb %al, %dx
        decw %dx
        movw $(((2 * 80 + 15) & 0xff) << 8 | 0x0f), %ax
        outw %ax, %dx
        movw $0x3cc, %dx
        call inb_dx
        CHECK_EQ %eax, $0x67, "misc-output"
        movw $0x3d4, %dx
        movb $0x0f, %al
        outb %al, %dx
        incw %dx
        call inb_dx
        CHECK_EQ %eax, $(2 * 80 + 15), "cursor-low-readback"
        movw $0x3d4, %dx
        movb $0x0a, %al
        outb %al, %dx
        incw %dx
        call inb_dx
        CHECK_EQ %eax, $0x0d, "cursor-start"
        movw $0x3da, %dx
        call inb_dx
        movl %eax, %ebx
        call inb_dx
        xorl %ebx, %eax
        andl $0x08, %eax
        CHECK_EQ %eax, $0x08, "retrace-bit-changes"
        ret
