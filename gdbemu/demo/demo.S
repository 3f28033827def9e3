/*
 * The gdbemu demo kernel: a multiboot kernel that turns paging on, then
 * sieves the primes below 2000 with the sieve array reached through a
 * second virtual mapping, prints them on the debug console (port 0xE9),
 * and exits through isa-debug-exit (port 0xF4).
 *
 * Built with:  as --32 demo.S -o demo.o && ld -m elf_i386 -T demo.ld demo.o -o demo.elf
 */
        .set MB_MAGIC, 0x1BADB002
        .set MB_FLAGS, 0x00000003
        .set LIMIT, 2000

        .section .multiboot, "a"
        .align 4
        .long MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)

        .section .text
        .code32
        .globl _start
_start:
        mov     $stack_top, %esp
        mov     $banner, %esi
        call    puts

        /* Page directory: identity map 0-8 MiB with 4 KiB pages, and map
         * the sieve at virtual 0xC0000000 (4 MiB region) onto its frame. */
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
        mov     %eax, page_dir + (0xC00 >> 2) * 4 * 1
        mov     $sieve + 0x003, %eax
        mov     %eax, sieve_pt
        mov     $page_dir, %eax
        mov     %eax, %cr3
        mov     %cr0, %eax
        or      $0x80010000, %eax
        mov     %eax, %cr0
        mov     $paging_msg, %esi
        call    puts

        /* Sieve of Eratosthenes through the 0xC0000000 alias. */
        mov     $0xC0000000, %edi
        mov     $LIMIT, %ecx
        xor     %eax, %eax
        rep stosb
        mov     $2, %ebx
2:      cmpb    $0, 0xC0000000(%ebx)
        jne     4f
        mov     %ebx, %eax
        call    putnum
        mov     %ebx, %edx
        add     %ebx, %edx
3:      cmp     $LIMIT, %edx
        jae     4f
        movb    $1, 0xC0000000(%edx)
        add     %ebx, %edx
        jmp     3b
4:      inc     %ebx
        cmp     $LIMIT, %ebx
        jb      2b

        mov     $done_msg, %esi
        call    puts
        mov     $0, %al
        out     %al, $0xf4
        hlt

/* puts: print the NUL-terminated string at %esi */
puts:   lodsb
        test    %al, %al
        jz      1f
        out     %al, $0xe9
        jmp     puts
1:      ret

/* putnum: print %eax in decimal followed by a space */
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
        out     %al, $0xe9
        loop    2b
        mov     $' ', %al
        out     %al, $0xe9
        pop     %edx
        pop     %ecx
        pop     %ebx
        ret

        .section .rodata
banner:     .asciz "gdbemu demo kernel: hello from 32-bit protected mode\n"
paging_msg: .asciz "paging on; primes below 2000 through a second mapping:\n"
done_msg:   .asciz "\ndone.\n"

        .section .bss
        .align 4096
page_dir:    .skip 4096
page_table0: .skip 4096
page_table1: .skip 4096
sieve_pt:    .skip 4096
sieve:       .skip 4096
        .skip 16384
stack_top:
