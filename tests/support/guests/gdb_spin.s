/*
 * gdb_spin.s -- a guest that never ends: it counts in memory forever.
 *
 * For tests/e2e/test_gdb_e2e.py's Ctrl-C, detach/reattach and dropped-connection
 * tests: `spin_count` only grows, so a test reading it across gdb sessions
 * sees whether the guest kept its state and kept running while nobody was
 * attached.  `never_run` is code the guest never reaches and `spin_unused`
 * a variable it never touches (places for a breakpoint and a watchpoint
 * that must not fire); `halt_forever` is a halted CPU for gdb to jump to.
 */
        .include "lib.inc"

        .text
main:
1:      incl spin_count
spin_bp:
        jmp 1b

never_run:
        movl $1, spin_unused
        ret

/* where gdb may send the CPU to wait for good (hlt with IF=0) */
halt_forever:
        cli
        hlt
        jmp halt_forever

        .data
        .balign 4
spin_count:     .long 0
spin_unused:    .long 0
