/*
 * fh_gfx.s -- known pixels in VGA mode 13h, then in the Bochs VBE linear framebuffer.
 *
 * Why: hobby kernels draw in these two modes; `monitor screendump` must show
 * them.  The guest programs mode 13h by its registers (no BIOS), sets DAC
 * entries 1-3 to red, green and blue and plots three pixels; at
 * `mode13h_done` the screen is 320x200.  Then it sets VBE 64x48x32, enables
 * the linear framebuffer at 0xFD000000 and plots two pixels; at `vbe_done`
 * the screen is 64x48.
 */
        .include "lib.inc"

        .section .rodata
seq_regs:  .byte 0x03, 0x01, 0x0f, 0x00, 0x0e
crtc_regs: .byte 0x5f, 0x4f, 0x50, 0x82, 0x54, 0x80, 0xbf, 0x1f, 0x00, 0x41, 0x00, 0x00
           .byte 0x00, 0x00, 0x00, 0x00, 0x9c, 0x0e, 0x8f, 0x28, 0x40, 0x96, 0xb9, 0xa3, 0xff
gc_regs:   .byte 0x00, 0x00, 0x00, 0x00, 0x00, 0x40, 0x05, 0x0f, 0xff
attr_regs: .byte 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0x41, 0x00, 0x0f, 0x00, 0x00
dac:       .byte 63, 0, 0,  0, 63, 0,  0, 0, 63
        .text

/* out_indexed(dx = index port, esi = values, ecx = count): index i, value at dx+1 */
out_indexed:
        xorl %ebx, %ebx
1:      movb %bl, %al
        outb %al, %dx
        incw %dx
        movb (%esi,%ebx), %al
        outb %al, %dx
        decw %dx
        incl %ebx
        cmpl %ecx, %ebx
        jb 1b
        ret

/* vbe_set(ax = index, bx = value) */
vbe_set:
        movw $0x1ce, %dx
        outw %ax, %dx
        movw $0x1cf, %dx
        movw %bx, %ax
        outw %ax, %dx
        ret

main:
        movw $0x3c2, %dx
        movb $0x63, %al
        outb %al, %dx
        movw $0x3c4, %dx
        movl $seq_regs, %esi
        movl $5, %ecx
        call out_indexed
        movw $0x3d4, %dx                /* unlock CR0-7 (CR11 bit 7) */
        movb $0x11, %al
        outb %al, %dx
        incw %dx
        xorb %al, %al
        outb %al, %dx
        movw $0x3d4, %dx
        movl $crtc_regs, %esi
        movl $25, %ecx
        call out_indexed
        movw $0x3ce, %dx
        movl $gc_regs, %esi
        movl $9, %ecx
        call out_indexed
        movw $0x3da, %dx                /* reset the attribute flip-flop */
        inb %dx, %al
        movw $0x3c0, %dx
        xorl %ebx, %ebx
1:      movb %bl, %al
        outb %al, %dx
        movb attr_regs(%ebx), %al
        outb %al, %dx
        incl %ebx
        cmpl $21, %ebx
        jb 1b
        movb $0x20, %al                 /* palette address source: display on */
        outb %al, %dx
        movw $0x3c8, %dx                /* DAC entries 1..3 */
        movb $1, %al
        outb %al, %dx
        movw $0x3c9, %dx
        xorl %ebx, %ebx
2:      movb dac(%ebx), %al
        outb %al, %dx
        incl %ebx
        cmpl $9, %ebx
        jb 2b
        movl $0xa0000, %edi             /* clear, then three pixels */
        movl $320 * 200 / 4, %ecx
        xorl %eax, %eax
        rep stosl
        movb $3, 0xa0000                /* (0, 0) blue */
        movb $1, 0xa0000 + 20 * 320 + 10 /* (10, 20) red */
        movb $2, 0xa0000 + 199 * 320 + 319 /* (319, 199) green */
        .globl mode13h_done
mode13h_done:
        nop
        movw $4, %ax                    /* VBE: disable, 64x48x32, enable with the LFB */
        xorw %bx, %bx
        call vbe_set
        movw $1, %ax
        movw $64, %bx
        call vbe_set
        movw $2, %ax
        movw $48, %bx
        call vbe_set
        movw $3, %ax
        movw $32, %bx
        call vbe_set
        movw $4, %ax
        movw $0x41, %bx
        call vbe_set
        movl $0x00ff8000, 0xfd000000 + (7 * 64 + 5) * 4   /* (5, 7) orange */
        movl $0x000000ff, 0xfd000000 + (47 * 64 + 63) * 4 /* (63, 47) blue */
        .globl vbe_done
vbe_done:
        nop
        ret
