/*
 * gdb_target.s -- the guest tests/e2e/test_gdb_e2e.py debugs with the real gdb.
 *
 * One straight-line program, paging on (identity map of 0..4 MiB with 4 KiB
 * pages, and one 4 MiB page at 0x40000000), made of
 * numbered scenes; every address a test needs has a label, which gdb finds
 * in the ELF's symbol table (`break *store_insn`, `watch *(int *)&counter`).
 * A test breaks where its scene starts and lets the rest run; the guest
 * needs no input and ends through isa-debug-exit (status 0, W01 for gdb).
 * lib.inc supplies the multiboot header (the CLI boots it with -kernel),
 * the GDT, the IDT with per-vector hooks, and the page-table helpers.
 */
        .include "lib.inc"

        .set COUNT, 100

        .text
        .set BIG_PAGE, 0x40000000       /* a 4 MiB page (PSE) on physical 4 MiB */

main:
        call pt_reset                   /* 0..4 MiB identity-mapped: `info mem`, `info tlb` */
        movl $BIG_PAGE, %eax
        movl $(0x400000 | PG_PW | PG_PS), %edx
        call map_large
        movl $CR4_PSE, %eax
        call paging_on
        movl $0x30, %ecx                /* int $0x30 for the int/iret steps */
        movl $int30_handler, %eax
        movl $0x8e00, %edx
        call idt_set_gate
        SET_HOOK 1, $db_hook            /* the guest's own #DB (scene 8) */

code_start:
        /* --- 1. a loop writing its loop variable i = 1..COUNT to a global */
        xorl %eax, %eax
        movl $COUNT, %ecx
loop_top:
        incl %eax
store_insn:
        movl %eax, counter
after_store:
        decl %ecx
        jnz loop_top

        /* --- 2. a call, an int and an iret to step through, then a fault (#UD) */
call_site:
        call leaf
after_call:
int_site:
        int $0x30
after_int:
        movl $after_ud2, resume_eip     /* lib.inc's #UD hook resumes after the ud2 */
        SET_HOOK 6, $hook_resume
ud2_site:
        ud2
after_ud2:

        /* --- 3. a read, then a read-modify-write */
read_insn:
        movl readme, %ebx
after_read:
        incl readme
after_rmw:

        /* --- 4. rep stosd over `array`, then rep movsd from it to `array2` */
        movl $array, %edi
        movl $40, %ecx
        movl $0x5a5a5a5a, %eax
        cld
stos_insn:
        rep stosl
        movl $array, %esi
        movl $array2, %edi
        movl $40, %ecx
movs_insn:
        rep movsl

        /* --- 5. byte stores on each side of the page boundary at `straddle`, then one in a 4 MiB page */
page_lo_store:
        movb $0x55, straddle - 3
after_lo_store:
page_hi_store:
        movb $0x66, straddle + 2
after_hi_store:
big_store:
        movl $0xabcd, BIG_PAGE + 0x1234 /* a store into the 4 MiB page */
after_big_store:

        /* --- 6. self-modifying code: patch_target's immediate becomes 0x1234, then it runs */
        movl $0x1234, patch_target + 1
patch_target:
        movl $0, %edx

        /* --- 7. code gdb rewrites: patch_site (incl %ebx, one byte) runs 10 times */
        xorl %ebx, %ebx
        movl $10, %ecx
1:
patch_site:
        incl %ebx
        incl patch_iters
        decl %ecx
        jnz 1b
        movl %ebx, patch_result
patch_done:

        /* --- 8. the guest's own data breakpoint (DR1, write, 4 bytes on dr_data): three #DB traps */
        movl $dr_data, %eax
        movl %eax, %dr1
        movl $0x00d00004, %eax          /* L1, RW1=01 (write), LEN1=11 (4 bytes) */
        movl %eax, %dr7
        movl $3, %ecx
2:      movl %ecx, dr_data              /* the guest's #DB trap comes after this store */
dr_store_next:
        addl %ecx, counter2             /* gdb watches this one */
dr_after_add:
        decl %ecx
        jnz 2b
        xorl %eax, %eax
        movl %eax, %dr7
dr_done:

        /* --- 9. a hundred one-byte instructions to break on, then a checksum of our code */
        xorl %edi, %edi
bp_field:
        .rept 100
        incl %edi
        .endr
bp_field_end:
        movl %edi, bp_field_count
        movl $code_start, %esi
        xorl %ebx, %ebx
3:      movzbl (%esi), %eax
        addl %eax, %ebx
        incl %esi
        cmpl $code_end, %esi
        jb 3b
        movl %ebx, checksum
checksum_done:
        ret                             /* lib.inc: finish, exit status 0 */

leaf:
        incl leaf_count
        ret

int30_handler:
        incl int30_count
        iret

/* #DB hook (lib.inc frame): log DR6 and the return EIP, clear DR6 */
db_hook:
        movl %dr6, %eax
        movl db_count, %edx
        cmpl $16, %edx
        jae 1f
        movl %eax, db_dr6(,%edx,4)
        movl 4(%esp), %eax
        movl F_EIP(%eax), %eax
        movl %eax, db_eip(,%edx,4)
1:      incl db_count
        xorl %eax, %eax
        movl %eax, %dr6
        ret
code_end:

        .data
        .balign 4
counter:        .long 0
counter2:       .long 0
readme:         .long 100
leaf_count:     .long 0
int30_count:    .long 0
patch_iters:    .long 0
patch_result:   .long 0
bp_field_count: .long 0
checksum:       .long 0
db_count:       .long 0
db_dr6:         .fill 16, 4, 0
db_eip:         .fill 16, 4, 0
dr_data:        .long 0
untouched:      .long 0x600dbeef
array:          .fill 40, 4, 0
array2:         .fill 40, 4, 0
        .balign 4096
        .fill 4096 - 16, 1, 0
straddle_base:
        .fill 16, 1, 0
straddle:
        .fill 16, 1, 0
