# Guest for tests/guests/test_debug.py: loops, stores, rep strings, self-modifying code,
# and the guest's own debug registers (DR7 breakpoints, data breakpoints, TF).
# No lib.inc: the test reads symbols and registers directly.
        .code32
        .globl _start
        .set COUNT, 50
_start:
        mov     $stack_top, %esp
        lgdt    gdt_desc
        ljmp    $0x08, $1f
1:      mov     $0x10, %ax
        mov     %ax, %ds
        mov     %ax, %es
        mov     %ax, %ss
        lidt    idt_desc
        # IDT entries 1 (#DB), 3 (#BP), 6 (#UD), 0x30 (int $0x30)
        mov     $db_handler, %eax
        mov     $1, %ecx
        call    set_gate
        mov     $int30_handler, %eax
        mov     $0x30, %ecx
        call    set_gate

        # --- a loop writing a global
        xor     %eax, %eax
        mov     $COUNT, %ecx
loop_top:
        add     $3, %eax
store_insn:
        mov     %eax, counter
after_store:
        dec     %ecx
        jnz     loop_top
        # --- a variable read and written
        mov     readme, %ebx
after_read:
        incl    readme
after_rmw:
        # --- rep stosd over an array (40 dwords)
        mov     $array, %edi
        mov     $40, %ecx
        mov     $0x5a5a5a5a, %eax
        cld
rep_insn:
        rep stosl
        # --- a store straddling the page boundary, and stores on each side
        movl    $0x11223344, straddle - 2
        movb    $0x55, straddle - 8
        movb    $0x66, straddle + 8
        # --- self-modifying code: patch_target's immediate is rewritten, then it runs
        movl    $0x1234, patch_target + 1
patch_target:
        mov     $0, %edx
        # --- checksum of our own code (must not see breakpoints)
        mov     $_start, %esi
        xor     %ebx, %ebx
2:      movzbl  (%esi), %eax
        add     %eax, %ebx
        inc     %esi
        cmp     $code_end, %esi
        jb      2b
        mov     %ebx, checksum
        int     $0x30
after_int:
        # --- the guest's own DR7 execute breakpoint on dr_target, and a data breakpoint on dr_data
        mov     $dr_target, %eax
        mov     %eax, %dr0
        mov     $dr_data, %eax
        mov     %eax, %dr1
        mov     $0x00d0000b, %eax       # L0|L1, DR0: exec len 1, DR1: write len 4 (RW=01, LEN=11)
        mov     %eax, %dr7
dr_target:
        nop
        movl    $7, dr_data
after_dr_store:
        xor     %eax, %eax
        mov     %eax, %dr7
        # --- EFLAGS.TF single-step over three instructions
        pushf
        orl     $0x100, (%esp)
        popf
        nop
        nop
        pushf
        andl    $~0x100, (%esp)
        popf
        mov     $0, %al
        out     %al, $0xf4
        hlt

set_gate:                               # eax = handler, ecx = vector
        lea     idt(,%ecx,8), %edx
        mov     %ax, (%edx)
        movw    $0x08, 2(%edx)
        movw    $0x8e00, 4(%edx)
        shr     $16, %eax
        mov     %ax, 6(%edx)
        ret

db_handler:                             # record DR6 and the return EIP; set RF so an execute bp resumes
        push    %edx
        push    %eax
        mov     %dr6, %eax
        mov     db_count, %edx
        mov     %eax, db_dr6(,%edx,4)
        mov     8(%esp), %eax
        mov     %eax, db_eip(,%edx,4)
        incl    db_count
        xor     %eax, %eax
        mov     %eax, %dr6
        orl     $0x10000, 16(%esp)      # RF in the pushed EFLAGS
        pop     %eax
        pop     %edx
        iret
int30_handler:
        incl    int30_count
        iret
code_end:

        .data
        .align 8
gdt:    .quad 0
        .quad 0x00cf9a000000ffff
        .quad 0x00cf92000000ffff
gdt_desc: .word 23
        .long gdt
idt_desc: .word 256*8-1
        .long idt
counter: .long 0
readme: .long 100
checksum: .long 0
int30_count: .long 0
db_count: .long 0
db_dr6: .fill 16, 4, 0
db_eip: .fill 16, 4, 0
        .align 4
dr_data: .long 0
array:  .fill 40, 4, 0
        .align 4096
        .fill 4096 - 16, 1, 0
straddle_base:
        .fill 16, 1, 0
straddle:
        .fill 16, 1, 0
        .bss
        .align 8
idt:    .fill 256, 8, 0
        .fill 4096, 1, 0
stack_top:
