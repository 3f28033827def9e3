/*
 * fh_vga_keys.s -- VGA text output and 8042 keyboard input, the first hour of a hobby kernel.
 *
 * Writes "Hello from VGA" in white on blue on row 0 and "type:" on row 2,
 * then polls the 8042: every letter key typed is echoed after "type:" (the
 * hardware cursor follows it); 'q' writes "bye" to COM1 and exits through
 * isa-debug-exit (status 3).
 */
        .include "lib.inc"

        .set VGA, 0xb8000

        .data
col:    .long 6
        .text

/* map set-1 make codes 0x10-0x32 to letters (0: not a letter) */
        .section .rodata
keymap: .ascii "qwertyuiop\0\0\0\0asdfghjkl\0\0\0\0\0zxcvbnm"
hello:  .asciz "Hello from VGA"
prompt: .asciz "type:"
        .text

/* puts_at(esi = string, edi = cell address, ah = attribute) */
puts_at:
1:      lodsb
        testb %al, %al
        jz 2f
        movw %ax, (%edi)
        addl $2, %edi
        jmp 1b
2:      ret

/* set_cursor(eax = cell index) */
set_cursor:
        pushl %eax
        movl %eax, %ecx
        movw $0x3d4, %dx
        movb $0x0f, %al
        outb %al, %dx
        movw $0x3d5, %dx
        movb %cl, %al
        outb %al, %dx
        movw $0x3d4, %dx
        movb $0x0e, %al
        outb %al, %dx
        movw $0x3d5, %dx
        movb %ch, %al
        outb %al, %dx
        popl %eax
        ret

main:
        movl $hello, %esi
        movl $VGA, %edi
        movb $0x1f, %ah                 /* bright white on blue */
        call puts_at
        movl $prompt, %esi
        movl $VGA + 2 * 160, %edi
        movb $0x0e, %ah                 /* yellow on black */
        call puts_at
        movl $160 + 6, %eax
        call set_cursor
poll:   inb $0x64, %al
        testb $1, %al
        jz poll
        inb $0x60, %al
        testb $0x80, %al                /* a break code */
        jnz poll
        cmpb $0x10, %al
        jb poll
        cmpb $0x32, %al
        ja poll
        movzbl %al, %ebx
        movb keymap - 0x10(%ebx), %al
        testb %al, %al
        jz poll
        cmpb $'q', %al
        je quit
        movl col, %ebx
        movb $0x07, %ah
        movw %ax, VGA + 2 * 160(,%ebx,2)
        incl col
        leal 161(%ebx), %eax
        call set_cursor
        jmp poll
quit:   movw $0x3f8, %dx                /* "bye" on COM1: held while the display is open */
        movb $'b', %al
        outb %al, %dx
        movb $'y', %al
        outb %al, %dx
        movb $'e', %al
        outb %al, %dx
        movb $'\n', %al
        outb %al, %dx
        movb $1, %al
        jmp guest_exit
