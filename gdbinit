# gdbemu's gdb setup:  gdb -x gdbinit kernel.elf   (then: gdbemu-connect [PORT])
#
# Connects to a running gdbemu and gives gdbemu's monitor commands short
# names.  Everything here is plain gdb CLI (no Python needed); each command
# has help text:  help user-defined  lists them,  help tlb  explains one.

# gdbemu emulates a 32-bit PC; say so before gdb sees a target (a kernel
# file given on the command line says the same).
set architecture i386
# The stub is in Python: give slow replies (a large memory read) time.
set remotetimeout 10

define gdbemu-connect
  if $argc == 0
    target remote localhost:1234
  else
    target remote localhost:$arg0
  end
end
document gdbemu-connect
Connect to a gdbemu listening on this machine: gdbemu-connect [PORT].
PORT defaults to 1234, the port of `gdbemu -s` (and of gdbemu with no kernel,
which boots its demo kernel).  Start gdbemu with -S to have it wait at the
kernel's first instruction.  gdbemu prints the port it listens on:
  gdbemu: waiting for gdb on 127.0.0.1:1234 (gdb -ex 'target remote 127.0.0.1:1234')
end

define tlb
  monitor info tlb
end
document tlb
Show gdbemu's software TLB (monitor info tlb).
Each valid entry per MMU mode (user, kernel, kernel-smap): virtual page,
physical page, and the flags of its read, write and code tags -- WATCH on a
page with a watchpoint, NOTDIRTY on a page holding translated code, MMIO,
ROM -- or "fast" when accesses take the inline fast path.
end

define pagemap
  monitor info mem
end
document pagemap
Show the guest's page-table mappings (monitor info mem).
Linear ranges, the physical address they map to, and their rights
(u = user, r, w; G global, A accessed, D dirty; 4M for large pages),
contiguous runs merged.  Read with the debugger's walk: no A/D bit is set.
end

define dirty
  monitor info dirty
end
document dirty
Show gdbemu's dirty-memory bitmaps (monitor info dirty).
Dirty page counts per client: vga (the text framebuffer), code (pages whose
translated code a store must invalidate), migration.
end

define tbs
  monitor info tbs
end
document tbs
Show gdbemu's translation blocks (monitor info tbs).
The TB count, tier-2 (compiled per block) count, and per physical page the
TBs on it, the stores to it, and its self-modifying-code invalidations.
end

define watchlog
  if $argc == 0
    monitor watch log show
  end
  if $argc == 1
    monitor watch log $arg0
  end
  if $argc == 2
    monitor watch log $arg0 $arg1
  end
end
document watchlog
gdbemu's watch log: every hit of gdb's watchpoints, recorded without stopping.
  watchlog             show the log (monitor watch log show)
  watchlog on | off    start / stop recording (while on, watchpoints do not stop
                       the guest unless a `monitor watch cond` says so)
  watchlog show N      the last N records;  watchlog clear  empties the log
  watchlog json        the log as JSON (what gdbemu.testing reads)
Each record: sequence, instruction count, pc of the accessing instruction,
access, address and size, old and new value, the watchpoint.
Needs a gdbemu with `monitor watch log` (see: monitor help).
end

define gdbemu-help
  monitor help
end
document gdbemu-help
List gdbemu's monitor commands (monitor help); `monitor help COMMAND` explains one.
end
