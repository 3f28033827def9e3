# gdbemu's gdb setup:  gdb -x gdbinit kernel.elf   (then: gdbemu-connect [PORT])
#
# Connects to a running gdbemu and gives gdbemu's monitor commands short
# names.  Everything here is plain gdb CLI (no Python needed); each command
# has help text:  help user-defined  lists them,  help tlb  explains one.

# The architecture comes from gdbemu's target description: i386 for a 32-bit
# PC, i386:x86-64 for a CPU that can enter long mode (-cpu qemu64, gdbemu-x86_64,
# a 64-bit kernel).  That description, and so the register layout, stays the
# same for the whole session, even while a 64-bit kernel still runs its 16- or
# 32-bit start-up code; gdb itself cannot switch an x86-64 description to
# i386 (`set architecture i386` is refused as "not compatible").  So the
# disassembly mode follows the CPU instead: the Python below asks gdbemu
# `monitor cpumode` (once per stop) and, when the CPU runs code of another
# width than gdb's architecture (16-bit code, or 32-bit code under the x86-64
# description), disassembles with objdump in that mode (i8086, i386, x86-64),
# the same opcodes library and syntax as gdb's own.  gdbemu-mode shows the mode.
# The stub is in Python: give slow replies (a large memory read) time.
set remotetimeout 10

python
import gdb


class _GdbemuConnect(gdb.Command):
    """Connect to a gdbemu listening on this machine: gdbemu-connect [PORT | HOST:PORT].
PORT defaults to 1234, the port of `gdbemu -s` (and of gdbemu with no kernel,
which boots its demo kernel).  Start gdbemu with -S to have it wait at the
kernel's first instruction.  gdbemu prints the port it listens on:
  gdbemu: waiting for gdb on 127.0.0.1:1234 (gdb -ex 'target remote 127.0.0.1:1234')
The architecture is the one gdbemu's description names (i386, or i386:x86-64
for a 64-bit machine), even when the kernel file gdb loaded is a 32-bit ELF."""

    def __init__(self):
        super().__init__("gdbemu-connect", gdb.COMMAND_USER)

    def invoke(self, arg, from_tty):
        where = arg.strip() or "1234"
        if ":" not in where:
            where = "localhost:" + where
        # gdb picks the architecture from a loaded kernel file before it reads gdbemu's target
        # description, and refuses an x86-64 description after an i386 file (a multiboot kernel
        # that enters long mode itself).  So connect with no file, the description deciding
        # (i386 or i386:x86-64), and load the file's symbols again afterwards.
        path = gdb.current_progspace().filename
        confirm = gdb.parameter("confirm")
        if path:
            gdb.execute("set confirm off")
            try:
                gdb.execute("file", to_string=True)
            finally:
                gdb.execute("set confirm " + ("on" if confirm else "off"))
        try:
            gdb.execute("target remote " + where, from_tty)
        finally:
            if path:
                try:
                    gdb.execute("file " + path, to_string=True)
                except gdb.error:
                    pass  # "Architecture of file not recognized": an i386 file under x86-64; symbols load


_GdbemuConnect()
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

python
import re as _re
import shutil as _shutil
import subprocess as _subprocess
import tempfile as _tempfile

import gdb
import gdb.disassembler


class _GdbemuMode:
    """gdbemu's `monitor cpumode` answer, asked once per stop (None: ask again)."""

    MODES = {"real": "i8086", "vm86": "i8086", "prot16": "i8086", "compat16": "i8086",
             "prot32": "i386", "compat32": "i386", "long": "x86-64"}
    mode = None

    @classmethod
    def forget(cls, *_args):
        cls.mode = None

    @classmethod
    def get(cls):
        if cls.mode is None:
            try:
                answer = gdb.execute("monitor cpumode", to_string=True).strip()
            except gdb.error:
                answer = ""  # not connected, or not a gdbemu: leave gdb's disassembler alone
            cls.mode = answer if answer in cls.MODES else ""
        return cls.mode


for _event in (gdb.events.stop, gdb.events.cont, gdb.events.register_changed, gdb.events.exited):
    _event.connect(_GdbemuMode.forget)
if hasattr(gdb.events, "new_objfile"):
    gdb.events.new_objfile.connect(_GdbemuMode.forget)

_OBJDUMP = _shutil.which("objdump")
_LINE = _re.compile(r"^\s*[0-9a-f]+:\t((?:[0-9a-f]{2} )+)\s*(?:\t(.*))?$")


class _GdbemuDisassembler(gdb.disassembler.Disassembler):
    """gdb's disassembler, in the CPU's current mode when that differs from gdb's architecture."""

    def __init__(self):
        super().__init__("gdbemu-cpumode")

    def __call__(self, info):
        wanted = _GdbemuMode.MODES.get(_GdbemuMode.get())
        native = "x86-64" if info.architecture.name().endswith("x86-64") else "i386"
        if wanted is None or wanted == native or _OBJDUMP is None:
            return None  # gdb's own disassembler is right
        code = b""
        try:
            code = bytes(info.read_memory(15, 0))
        except gdb.MemoryError:
            for offset in range(15):  # near the end of mapped memory: as many bytes as there are
                try:
                    code += bytes(info.read_memory(1, offset))
                except gdb.MemoryError:
                    break
        if not code:
            return None  # gdb reports the unreadable address itself
        options = wanted + (",intel" if gdb.parameter("disassembly-flavor") == "intel" else "")
        with _tempfile.NamedTemporaryFile(suffix=".bin") as f:
            f.write(code)
            f.flush()
            out = _subprocess.run(
                [_OBJDUMP, "-D", "-b", "binary", "-m", "i386", "-M", options, "--insn-width=15",
                 "--adjust-vma=%#x" % info.address, "--stop-address=%#x" % (info.address + len(code)), f.name],
                capture_output=True, text=True, check=False,
            ).stdout
        for line in out.splitlines():
            m = _LINE.match(line)
            if m:
                length = len(m.group(1).split())
                text = " ".join((m.group(2) or "(bad)").split("#", 1)[0].split())
                text = _re.sub(r"^(\S+) ", lambda w: w.group(1).ljust(6) + " ", text)
                target = _re.search(r"^(?:call|j\w+|loop\w*)\w* +(0x[0-9a-f]+)$", text)
                if target and hasattr(gdb, "format_address"):  # a branch: name its target as gdb does
                    try:
                        text = text[: target.start(1)] + gdb.format_address(int(target.group(1), 16))
                    except (gdb.error, ValueError):
                        pass
                return gdb.disassembler.DisassemblerResult(length, text)
        return None


gdb.disassembler.register_disassembler(_GdbemuDisassembler(), None)
end

define gdbemu-mode
  monitor cpumode
end
document gdbemu-mode
Show the CPU's mode (monitor cpumode): real, vm86, prot16, prot32, compat16,
compat32 or long.  gdbinit disassembles in this mode (x/i, disassemble,
display/i $pc) whatever gdb's architecture is: a 64-bit machine keeps the
x86-64 register layout for the whole session, its 32-bit start-up code is
still shown as 32-bit code.
end
