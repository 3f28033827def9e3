/*
 * The gdbemu demo kernel: something to try gdb on, with a bug to find.
 *
 * A multiboot kernel that turns paging on, programs the 8259 PIC and the
 * 8254 PIT (100 Hz), and then runs ROUNDS rounds, one per second of virtual
 * time (the CLI paces halts in real time at a terminal, so there is time to
 * attach gdb).  Each round sieves the primes below 2000 through a second
 * virtual mapping of the sieve, counts them, records a sample, and prints a
 * line on COM1.  At the end it exits
 * through isa-debug-exit (port 0xF4).
 *
 * THE BUG (deliberate): record_sample() appends to `samples` through the
 * pointer `sample_cursor`, which nothing ever wraps.  From round 5 on it
 * writes past the 4-slot buffer, into `prime_count` and then `largest`:
 * round 5 reports "5 primes".  In gdb:  watch prime_count  /  continue  ->
 * the stop shows the stray store in record_sample.
 *
 * Built with:  as --32 demo.S -o demo.o && ld -m elf_i386 -T demo.ld --build-id=none demo.o -o demo.elf
 */
        .set MB_MAGIC, 0x1BADB002
        .set MB_FLAGS, 0x00000003
        .set LIMIT, 2000
        .set ROUNDS, 8
        .set TICKS_PER_ROUND, 100
        .set COM1, 0x3F8

        .section .multiboot, "a"
        .align 4
        .long MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)

        .section .text
        .code32
        .globl _start
_start:
        mov     $stack_top, %esp
        call    serial_init
        mov     $banner, %esi
        call    puts
        call    setup_gdt
        call    setup_idt
        call    setup_paging
        call    setup_timer
        sti
        movl    $1, round
round_loop:
        call    sieve                   # fills the sieve, sets prime_count and largest
        mov     round, %eax
        call    record_sample           # <- writes past `samples` from round 5 on
        call    report
        call    wait_a_second
        incl    round
        cmpl    $ROUNDS, round
        jbe     round_loop
        mov     $done_msg, %esi
        call    puts
        mov     $0, %al
        out     %al, $0xf4              # isa-debug-exit: status (0 << 1) | 1
        cli
        hlt

/* sieve: primes below LIMIT, through the 0xC0000000 alias of `sieve_page` */
        .globl sieve
sieve:
        push    %ebx
        push    %esi
        push    %ebp
        mov     $0xC0000000, %edi
        mov     $LIMIT, %ecx
        xor     %eax, %eax
        rep stosb
        xor     %esi, %esi              # the count, kept in a register ...
        xor     %ebp, %ebp              # ... and the largest prime
        mov     $2, %ebx
1:      cmpb    $0, 0xC0000000(%ebx)
        jne     3f
        inc     %esi
        mov     %ebx, %ebp
        lea     (%ebx,%ebx), %edx
2:      cmp     $LIMIT, %edx
        jae     3f
        movb    $1, 0xC0000000(%edx)
        add     %ebx, %edx
        jmp     2b
3:      inc     %ebx
        cmp     $LIMIT, %ebx
        jb      1b
        mov     %esi, prime_count       # ... stored once per round
        mov     %ebp, largest
        pop     %ebp
        pop     %esi
        pop     %ebx
        ret

/* record_sample(eax): append a sample.  BUG: the cursor is never wrapped. */
        .globl record_sample
record_sample:
        mov     sample_cursor, %edx
        mov     %eax, (%edx)            # the stray store, once the cursor is past the buffer
        add     $4, %edx
        mov     %edx, sample_cursor
        ret

/* report: "round R: N primes below 2000, largest L" */
report:
        mov     $round_msg, %esi
        call    puts
        mov     round, %eax
        call    putnum
        mov     $colon_msg, %esi
        call    puts
        mov     prime_count, %eax
        call    putnum
        mov     $primes_msg, %esi
        call    puts
        mov     largest, %eax
        call    putnum
        mov     $'\n', %al
        call    putc
        ret

/* wait_a_second: hlt until TICKS_PER_ROUND timer interrupts have passed */
wait_a_second:
        mov     ticks, %eax
        add     $TICKS_PER_ROUND, %eax
1:      hlt
        cmp     %eax, ticks
        jb      1b
        ret

/* ---- console: COM1 (a 16550 UART, polled) --------------------------------------- */
serial_init:
        mov     $COM1 + 1, %dx
        xor     %al, %al
        out     %al, %dx                # no UART interrupts
        mov     $COM1 + 3, %dx
        mov     $0x80, %al
        out     %al, %dx                # DLAB
        mov     $COM1, %dx
        mov     $1, %al
        out     %al, %dx                # 115200 baud
        inc     %dx
        xor     %al, %al
        out     %al, %dx
        mov     $COM1 + 3, %dx
        mov     $0x03, %al
        out     %al, %dx                # 8N1
        ret

putc:   push    %edx
        push    %eax
        mov     $COM1 + 5, %dx
1:      in      %dx, %al
        test    $0x20, %al              # THR empty
        jz      1b
        pop     %eax
        mov     $COM1, %dx
        out     %al, %dx
        pop     %edx
        ret

puts:   lodsb
        test    %al, %al
        jz      1f
        call    putc
        jmp     puts
1:      ret

putnum: push    %ebx
        push    %ecx
        push    %edx
        mov     $10, %ebx
        xor     %ecx, %ecx
1:      xor     %edx, %edx
        div     %ebx
        push    %edx
        inc     %ecx
        test    %eax, %eax
        jnz     1b
2:      pop     %eax
        add     $'0', %al
        call    putc
        loop    2b
        pop     %edx
        pop     %ecx
        pop     %ebx
        ret

/* ---- processor setup ---------------------------------------------------------- */
setup_gdt:
        lgdt    gdt_desc
        ljmp    $0x08, $1f
1:      mov     $0x10, %ax
        mov     %ax, %ds
        mov     %ax, %es
        mov     %ax, %ss
        mov     %ax, %fs
        mov     %ax, %gs
        ret

setup_idt:
        xor     %ecx, %ecx
1:      mov     $exception, %eax        # every vector: "unexpected exception"
        call    set_gate
        inc     %ecx
        cmp     $256, %ecx
        jb      1b
        mov     $timer_irq, %eax
        mov     $0x20, %ecx
        call    set_gate
        lidt    idt_desc
        ret

set_gate:                               # eax = handler, ecx = vector
        lea     idt(,%ecx,8), %edx
        mov     %ax, (%edx)
        movw    $0x08, 2(%edx)
        movw    $0x8e00, 4(%edx)
        push    %eax
        shr     $16, %eax
        mov     %ax, 6(%edx)
        pop     %eax
        ret

setup_paging:
        /* identity map 0-8 MiB with 4 KiB pages, and the sieve page at 0xC0000000 */
        mov     $page_table0, %edi
        mov     $0x003, %eax
        mov     $2048, %ecx
1:      mov     %eax, (%edi)
        add     $0x1000, %eax
        add     $4, %edi
        loop    1b
        mov     $page_table0 + 0x003, %eax
        mov     %eax, page_dir
        mov     $page_table1 + 0x003, %eax
        mov     %eax, page_dir + 4
        mov     $sieve_pt + 0x003, %eax
        mov     %eax, page_dir + 0xC00
        mov     $sieve_page + 0x003, %eax
        mov     %eax, sieve_pt
        mov     $page_dir, %eax
        mov     %eax, %cr3
        mov     %cr0, %eax
        or      $0x80010000, %eax       # PG | WP
        mov     %eax, %cr0
        ret

setup_timer:
        /* 8259 pair: vectors 0x20-0x2F, only IRQ0 unmasked */
        mov     $0x11, %al
        out     %al, $0x20
        out     %al, $0xA0
        mov     $0x20, %al
        out     %al, $0x21
        mov     $0x28, %al
        out     %al, $0xA1
        mov     $0x04, %al
        out     %al, $0x21
        mov     $0x02, %al
        out     %al, $0xA1
        mov     $0x01, %al
        out     %al, $0x21
        out     %al, $0xA1
        mov     $0xFE, %al
        out     %al, $0x21
        mov     $0xFF, %al
        out     %al, $0xA1
        /* 8254 channel 0, mode 3, 100 Hz (1193182 / 11932) */
        mov     $0x36, %al
        out     %al, $0x43
        mov     $11932 & 0xFF, %al
        out     %al, $0x40
        mov     $11932 >> 8, %al
        out     %al, $0x40
        ret

timer_irq:
        incl    ticks
        push    %eax
        mov     $0x20, %al
        out     %al, $0x20              # EOI
        pop     %eax
        iret

exception:
        mov     $exc_msg, %esi
        call    puts
        cli
1:      hlt
        jmp     1b

        .section .rodata
banner:     .asciz "gdbemu demo kernel: sieving primes below 2000, one round per second\n"
round_msg:  .asciz "round "
colon_msg:  .asciz ": "
primes_msg: .asciz " primes below 2000, largest "
done_msg:   .asciz "done.\n"
exc_msg:    .asciz "demo kernel: unexpected exception\n"

        .section .data
        .align 8
gdt:        .quad 0
            .quad 0x00cf9a000000ffff    # flat code
            .quad 0x00cf92000000ffff    # flat data
gdt_desc:   .word 23
            .long gdt
idt_desc:   .word 256 * 8 - 1
            .long idt
ticks:      .long 0
round:      .long 0
sample_cursor: .long samples
        .globl samples, prime_count, largest
samples:    .long 0, 0, 0, 0            # room for 4 samples
prime_count: .long 0                    # <- overwritten by round 5's sample
largest:    .long 0                     # <- and this by round 6's

        .section .bss
        .align 4096
page_dir:    .skip 4096
page_table0: .skip 4096
page_table1: .skip 4096
sieve_pt:    .skip 4096
sieve_page:  .skip 4096
idt:         .skip 256 * 8
        .align 16
        .skip 16384
stack_top:
