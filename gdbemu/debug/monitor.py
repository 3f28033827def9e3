"""``monitor`` commands (gdb's qRcmd): an allow-list, each with help text.

They show what only an emulator can show — the software TLB with its flag
bits, the dirty bitmaps, the TBs per page, the slow-path counters — and set
the stepping mode.  Each command is a method named ``cmd_<words>``; ``help``
lists them from their docstrings' first lines, so the list cannot drift, and
``help WORDS`` prints a command's whole docstring.

The debugging extensions gdb's protocol has no packet for live here too:
the watch log and watch conditions (``watch log``, ``watch cond``:
evaluated in gdbemu at each hit, see ``debug/watchlog.py``), the output
of agent-style dprintfs (``dprintf log``) and the target-side breakpoint
conditions gdb installed (``info conditions``).  Watch conditions are a
small expression language compiled by ``debug/conditions.py`` -- user text
is never evaluated.

``x/Nx PADDR`` has its count glued to the command word: :meth:`Monitor.handle`
routes any first word starting with ``x/`` to :meth:`Monitor.cmd_x`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from functools import partial
from typing import Protocol

from ..core import flags as F
from ..core.cpu import CPU, CS, DESC_B, DESC_L
from ..core.mmu import EFER_LMA, PG_A, PG_D, PG_G, PG_NX, PG_RW, PG_US, mappings
from ..hw.vga import VGA
from ..machine import Machine
from ..softmmu.dirty import CLIENT_NAMES
from ..softmmu.tlb import (
    INVALID_TAG,
    NB_MMU_MODES,
    TLB_DISCARD_WRITE,
    TLB_MMIO,
    TLB_NOTDIRTY,
    TLB_WATCHPOINT,
)
from ..softmmu.watchpoint import GDB_OWNER
from . import ax
from .agent import BreakpointAgent
from .conditions import compile_watch_condition
from .memview import peek_linear
from .replay import History
from .snapshot import SnapshotStore
from .watchlog import WatchCondition, WatchLog, WatchLogEntry

MMU_NAMES = ("user", "kernel", "kernel-smap")
_FLAG_NAMES = ((TLB_NOTDIRTY, "NOTDIRTY"), (TLB_MMIO, "MMIO"), (TLB_WATCHPOINT, "WATCH"), (TLB_DISCARD_WRITE, "ROM"))


def _flags(tag: int) -> str:
    if tag == INVALID_TAG:
        return "-"
    names = [n for bit, n in _FLAG_NAMES if tag & bit]
    return "|".join(names) if names else "fast"


Command = Callable[[list[str]], str]

CPU_MODES = ("real", "vm86", "prot16", "prot32", "compat16", "compat32", "long")


def cpu_mode(cpu: CPU) -> str:
    """The CPU's operating mode, one of :data:`CPU_MODES` (what ``monitor cpumode`` answers).

    Real mode (CR0.PE clear), virtual-8086 (EFLAGS.VM), 16/32-bit protected
    mode by CS.D, and under EFER.LMA: 64-bit code (CS.L) or compatibility
    mode by CS.D.
    """
    if not cpu.cr[0] & 1:
        return "real"
    if cpu.eflags & F.VM:
        return "vm86"
    cs = cpu.segs[CS].flags
    if cpu.efer & EFER_LMA:
        if cs & DESC_L:
            return "long"
        return "compat32" if cs & DESC_B else "compat16"
    return "prot32" if cs & DESC_B else "prot16"


class MonitorTarget(Protocol):
    """What the commands use of a ``MachineTarget`` (debug/target.py)."""

    machine: Machine
    agent: BreakpointAgent
    watch_log: WatchLog
    sstep_irq: bool
    last_run_mips: float
    wide: bool  # an amd64 session: addresses are shown with 16 digits

    @property
    def actions(self) -> Mapping[int, object]: ...

    def snapshot_store(self) -> SnapshotStore: ...

    def state_replaced(self) -> None: ...

    @property
    def history(self) -> History | None: ...


class Monitor:
    """The ``monitor`` command set of a ``MachineTarget``."""

    def __init__(self, target: MonitorTarget) -> None:
        self.target = target
        self.machine = target.machine

    # ---- dispatch --------------------------------------------------------------------
    def commands(self) -> dict[str, Command]:
        """Command name -> method; the name is what the docstring's first line shows.

        ``cmd_info_tlb`` documents itself as "info tlb: ...", ``cmd_system_reset``
        as "system_reset: ...": taking the name from there keeps ``help`` and the
        dispatcher in agreement (QEMU spells it system_reset).
        """
        out: dict[str, Command] = {}
        for attr in sorted(dir(self)):
            if not attr.startswith("cmd_"):
                continue
            fn = getattr(self, attr)
            head = (fn.__doc__ or "").strip().split(":", 1)[0]
            words = []
            for w in head.split():  # the leading plain words; arguments start at the first other one
                if not re.fullmatch(r"[a-z_]+", w):
                    break
                words.append(w)
            out[" ".join(words) if words else attr[4:].replace("_", " ")] = fn
        return out

    def handle(self, cmd: str) -> str:
        history = self.target.history
        if history is not None:
            history.touch()  # a command may change the state: the next resume takes a full checkpoint
        words = cmd.split()
        if not words:
            return self.cmd_help([])
        if words[0].startswith("x/"):
            try:
                return self.cmd_x(words)
            except ValueError as exc:
                return f"error: {exc}\n"
        table = self.commands()
        # longest command prefix first ("info tlb" before "info")
        for n in range(min(3, len(words)), 0, -1):
            key = " ".join(words[:n])
            if key in table:
                try:
                    return table[key](words[n:])
                except ValueError as exc:
                    return f"error: {exc}\n"
        return f"unknown monitor command {cmd!r}; try 'monitor help'\n"

    # ---- commands ---------------------------------------------------------------------
    def cmd_help(self, args: list[str]) -> str:
        """help [COMMAND]: list the monitor commands, or show one command's full help."""
        table = self.commands()
        if args:
            for n in range(min(3, len(args)), 0, -1):
                fn = table.get(" ".join(args[:n]))
                if fn is not None:
                    return _dedent(fn.__doc__ or "") + "\n"
            return f"no monitor command {' '.join(args)!r}; try 'monitor help'\n"
        lines = ["gdbemu monitor commands ('help COMMAND' for details):"]
        for fn in table.values():
            doc = (fn.__doc__ or "").strip().splitlines()[0]
            lines.append(f"  {doc}")
        return "\n".join(lines) + "\n"

    # ---- snapshots (debug/snapshot.py) --------------------------------------------------
    def _snapshot_name(self, args: list[str], command: str) -> str:
        if len(args) != 1:
            raise ValueError(f"usage: {command} NAME")
        return args[0]

    def cmd_savevm(self, args: list[str]) -> str:
        """savevm NAME: snapshot the whole machine (CPU, RAM, devices, clock) as NAME.

        RAM is stored incrementally: the pages written since the previous
        snapshot (the MIGRATION dirty bitmap).  With a snapshot file
        (``-snapshot-file``, default KERNEL.snapshots) the snapshot is also
        written there, so ``-loadvm NAME`` can start from it later.
        """
        store = self.target.snapshot_store()
        snap = store.take(self._snapshot_name(args, "savevm"))
        store.save()
        return f"snapshot {snap.name!r} saved at instruction {snap.icount} ({len(snap.pages)} pages stored)\n"

    def cmd_loadvm(self, args: list[str]) -> str:
        """loadvm NAME: put the machine back in the state of snapshot NAME.

        gdb caches registers and memory: after ``monitor loadvm`` run
        ``maintenance flush register-cache`` (or ``flushregs``) so it reads
        them again.
        """
        snap = self.target.snapshot_store().load(self._snapshot_name(args, "loadvm"))
        self.target.state_replaced()
        return f"snapshot {snap.name!r} loaded: instruction {snap.icount}\n"

    def cmd_delvm(self, args: list[str]) -> str:
        """delvm NAME: delete snapshot NAME (its pages move into the snapshots built on it)."""
        store = self.target.snapshot_store()
        store.delete(self._snapshot_name(args, "delvm"))
        store.save()
        return ""

    def cmd_info_snapshots(self, args: list[str]) -> str:
        """info snapshots: the snapshots: id, name, stored size, date, virtual clock, instruction count."""
        return self.target.snapshot_store().info()

    def cmd_info_history(self, args: list[str]) -> str:
        """info history: reverse-execution history: segments, position, checkpoint memory, notices."""
        h = self.target.history
        return "no history recorded yet\n" if h is None else h.info()

    def cmd_history_limit(self, args: list[str]) -> str:
        """history limit MIB [INTERVAL]: bound checkpoint memory (oldest dropped first); checkpoint interval."""
        h = self.target.history
        if h is None or not 1 <= len(args) <= 2:
            raise ValueError("usage: history limit MIB [INTERVAL] (after the guest has run)")
        h.limit_bytes = int(args[0], 0) << 20
        if len(args) == 2:
            h.interval = max(1, int(args[1], 0))
        return h.info()

    def cmd_info_status(self, args: list[str]) -> str:
        """info status: running/stopped, instructions executed, guest MIPS since the last stop."""
        cpu = self.machine.cpu
        t = self.target
        state = "stopped" if not t.actions else "running"
        if cpu.halted:
            state += " (halted)"
        return (
            f"VM status: {state}\ninstructions executed: {cpu.icount}\n"
            f"guest MIPS over the last run: {t.last_run_mips:.2f}\n"
            f"virtual time: {self.machine.clock.now() / 1e9:.6f} s\n"
        )

    def _a(self, value: int) -> str:
        """An address as this session shows them: 16 hex digits for amd64, 8 for i386."""
        return f"{value:016x}" if self.target.wide else f"{value:08x}"

    def cmd_cpumode(self, args: list[str]) -> str:
        """cpumode: the CPU's mode: real, vm86, prot16, prot32, compat16, compat32 or long.

        The top-level gdbinit asks this at every stop to pick the disassembly
        mode (i8086, i386 or x86-64), since the register layout of a session
        never changes.
        """
        return cpu_mode(self.machine.cpu) + "\n"

    def cmd_info_registers(self, args: list[str]) -> str:
        """info registers: all system state (segments with caches, control, debug, descriptor tables)."""
        cpu = self.machine.cpu
        if cpu.efer & EFER_LMA:
            return self._registers64(cpu)
        r = cpu.regs
        names = ("EAX", "ECX", "EDX", "EBX", "ESP", "EBP", "ESI", "EDI")
        out = [" ".join(f"{n}={v:08x}" for n, v in zip(names, r, strict=True))]
        out.append(f"EIP={cpu.eip:08x} EFL={cpu.get_eflags():08x} CPL={cpu.cpl} HLT={int(cpu.halted)}")
        for name, seg in zip(("ES", "CS", "SS", "DS", "FS", "GS"), cpu.segs, strict=True):
            out.append(f"{name} ={seg.selector:04x} {seg.base:08x} {seg.limit:08x} {seg.flags:08x}")
        out.append(f"LDT={cpu.ldtr.selector:04x} {cpu.ldtr.base:08x} {cpu.ldtr.limit:08x} {cpu.ldtr.flags:08x}")
        out.append(f"TR ={cpu.tr.selector:04x} {cpu.tr.base:08x} {cpu.tr.limit:08x} {cpu.tr.flags:08x}")
        out.append(f"GDT=     {cpu.gdtr_base:08x} {cpu.gdtr_limit:08x}")
        out.append(f"IDT=     {cpu.idtr_base:08x} {cpu.idtr_limit:08x}")
        out.append(f"CR0={cpu.cr[0]:08x} CR2={cpu.cr[2]:08x} CR3={cpu.cr[3]:08x} CR4={cpu.cr[4]:08x}")
        out.append(" ".join(f"DR{i}={cpu.dr[i]:08x}" for i in range(4)) + f" DR6={cpu.dr[6]:08x} DR7={cpu.dr[7]:08x}")
        out.append(f"EFER={cpu.efer:016x} TSC={cpu.tsc()} icount={cpu.icount}")
        return "\n".join(out) + "\n"

    def _registers64(self, cpu: CPU) -> str:
        """``info registers`` in long mode, laid out as QEMU's x86-64 dump."""
        names = ("RAX", "RBX", "RCX", "RDX", "RSI", "RDI", "RBP", "RSP", *[f"R{i}" for i in range(8, 16)])
        order = (0, 3, 1, 2, 6, 7, 5, 4, *range(8, 16))
        vals = [cpu.get_gpr(i) for i in order]
        out = [
            " ".join(f"{n:3s}={v:016x}" for n, v in zip(names[k : k + 4], vals[k : k + 4], strict=True))
            for k in range(0, 16, 4)
        ]
        out.append(f"RIP={cpu.eip:016x} RFL={cpu.get_eflags():08x} CPL={cpu.cpl} HLT={int(cpu.halted)}")
        for name, seg in zip(("ES", "CS", "SS", "DS", "FS", "GS"), cpu.segs, strict=True):
            out.append(f"{name} ={seg.selector:04x} {seg.base:016x} {seg.limit:08x} {seg.flags:08x}")
        out.append(f"LDT={cpu.ldtr.selector:04x} {cpu.ldtr.base:016x} {cpu.ldtr.limit:08x} {cpu.ldtr.flags:08x}")
        out.append(f"TR ={cpu.tr.selector:04x} {cpu.tr.base:016x} {cpu.tr.limit:08x} {cpu.tr.flags:08x}")
        out.append(f"GDT=     {cpu.gdtr_base:016x} {cpu.gdtr_limit:08x}")
        out.append(f"IDT=     {cpu.idtr_base:016x} {cpu.idtr_limit:08x}")
        out.append(f"CR0={cpu.cr[0]:08x} CR2={cpu.cr[2]:016x} CR3={cpu.cr[3]:016x} CR4={cpu.cr[4]:08x}")
        out.append(" ".join(f"DR{i}={cpu.dr[i]:016x}" for i in range(4)))
        out.append(f"DR6={cpu.dr[6]:016x} DR7={cpu.dr[7]:016x}")
        kgs = cpu.kernel_gs_base
        out.append(f"EFER={cpu.efer:016x} KERNEL_GS_BASE={kgs:016x} TSC={cpu.tsc()} icount={cpu.icount}")
        return "\n".join(out) + "\n"

    def cmd_info_tlb(self, args: list[str]) -> str:
        """info tlb: valid TLB entries per mmu_idx with their flags (read/write/code tags)."""
        tlb = self.machine.cpu.tlb
        out = []
        for mmu_idx in range(NB_MMU_MODES):
            entries = tlb.valid_entries(mmu_idx)
            out.append(f"mmu_idx {mmu_idx} ({MMU_NAMES[mmu_idx]}): {len(entries)} entries")
            for vpage, paddr, rt, wt, ct in entries:
                out.append(
                    f"  {self._a(vpage)} -> {paddr:010x}  read:{_flags(rt)} write:{_flags(wt)} code:{_flags(ct)}"
                    if self.target.wide
                    else f"  {vpage:08x} -> {paddr:08x}  read:{_flags(rt)} write:{_flags(wt)} code:{_flags(ct)}"
                )
        return "\n".join(out) + "\n"

    def cmd_info_mem(self, args: list[str]) -> str:
        """info mem: the guest's page-table mappings (linear ranges, physical, rights)."""
        cpu = self.machine.cpu
        if not cpu.cr[0] & (1 << 31):
            return "paging is disabled: linear addresses are physical\n"

        def rights(e: int) -> str:
            return (
                ("u" if e & PG_US else "-")
                + "r"
                + ("w" if e & PG_RW else "-")
                + (" NX" if e & PG_NX else "")
                + (" G" if e & PG_G else "")
                + (" A" if e & PG_A else "")
                + (" D" if e & PG_D else "")
            )

        sizes = {1 << 22: " 4M", 1 << 21: " 2M", 1 << 30: " 1G"}
        rows = [(v, size, p, rights(f) + sizes.get(size, "")) for v, size, p, f in mappings(cpu)]
        # merge contiguous runs with the same rights
        merged: list[tuple[int, int, int, str]] = []
        for vaddr, size, paddr, r in rows:
            if merged:
                v, s, p, last_r = merged[-1]
                if v + s == vaddr and p + s == paddr and last_r == r:
                    merged[-1] = (v, s + size, p, r)
                    continue
            merged.append((vaddr, size, paddr, r))
        w = 16 if cpu.efer & EFER_LMA else 8
        out = [f"{v:0{w}x}-{v + s:0{w}x} {s:08x} -> {p:08x} {r}" for v, s, p, r in merged]
        return "\n".join(out) + ("\n" if out else "no mappings\n")

    def cmd_info_tbs(self, args: list[str]) -> str:
        """info tbs: translation block count, per physical page, by tier."""
        tbs = self.machine.tbs
        out = [
            f"{len(tbs.tbs)} TBs on {len(tbs.pages)} pages (tier 2: {sum(1 for t in tbs.tbs.values() if t.tier == 2)})"
        ]
        for page in sorted(tbs.pages)[:64]:
            desc = tbs.pages[page]
            hot = tbs.smc_pages.get(page, 0)
            out.append(
                f"  {page:08x}: {len(desc.tbs)} TBs, {desc.writes} code-page stores, "
                f"{hot} SMC invalidations{' (bitmap)' if desc.bitmap is not None else ''}"
            )
        if len(tbs.pages) > 64:
            out.append(f"  ... {len(tbs.pages) - 64} more pages")
        return "\n".join(out) + "\n"

    def cmd_info_dirty(self, args: list[str]) -> str:
        """info dirty: dirty page counts per client (vga, code, migration)."""
        d = self.machine.dirty
        out = [f"{d.n_pages} RAM pages"]
        for c, name in enumerate(CLIENT_NAMES):
            logged = sum(1 for b in d.logging if b & (1 << c))
            out.append(f"  {name:9s}: {d.count_dirty(c)} dirty, {logged} pages logged")
        return "\n".join(out) + "\n"

    def cmd_info_watchpoints(self, args: list[str]) -> str:
        """info watchpoints: every watchpoint (gdb's and the guest's DR7 ones) with hit counts."""
        wl = self.machine.watchpoints
        if not wl.wps:
            return "no watchpoints\n"
        out = [f"{len(wl.wps)} watchpoints"]
        for wp in wl.wps:
            owner = "gdb" if wp.owner == GDB_OWNER else f"guest DR{wp.owner[2]}"  # type: ignore[index]
            out.append(f"  {wp.kind.stop_name:6s} {self._a(wp.vaddr)} len {wp.length:<6d} {owner:10s} hits {wp.hits}")
        bps = self.machine.breakpoints
        if bps.gdb:
            out.append(f"{len(bps.gdb)} breakpoints: " + " ".join(self._a(a) for a in sorted(bps.gdb)))
        return "\n".join(out) + "\n"

    def cmd_stats(self, args: list[str]) -> str:
        """stats: TLB, slow-path, TB and SMC counters."""
        stats = self.machine.stats()
        stats["watch_replays"] = self.machine.watchpoints.replays
        stats["breakpoint_hits"] = self.machine.breakpoints.hits
        return "\n".join(f"{k:18s} {v}" for k, v in stats.items()) + "\n"

    # ---- watch log and watch conditions ------------------------------------------------
    def cmd_watch_log(self, args: list[str]) -> str:
        """watch log on|off|clear|show [N]|json [N]: record every watchpoint hit without stopping.

        The log is global: one sequence across all of gdb's watchpoints, in
        the order of the accesses, each record naming its watchpoint (gdb
        removes and re-inserts watchpoints at every stop, so they are named by
        kind, address and length).  While the log is on, a hit of gdb's
        watchpoints is recorded and the guest runs on -- unless the watchpoint
        has a condition (``watch cond``), which then decides whether it stops.
        The mechanism is the one of a stopping watchpoint (TLB_WATCHPOINT
        flag, restart, replay of the instruction): the record is made in the
        slow path of the replay, then execution continues.

        A record: sequence number, icount (instructions retired before the
        access), pc (the accessing instruction), access (r/w), address and
        size of the access, old and new value of the accessed bytes (equal
        for a read; '-' when not RAM), the watchpoint, and whether it stopped.
        The last 100000 records are kept.  'show' prints the last N (default
        all) as a table, 'json' as a JSON document {"enabled", "dropped",
        "records": [{"seq", "icount", "pc", "access", "addr", "size", "old",
        "new", "watchpoint": {"kind", "addr", "length"}, "stopped", "error"}]}.
        """
        wl = self.target.watch_log
        verb = args[0] if args else "status"
        if verb in ("on", "off"):
            wl.enabled = verb == "on"
            if verb == "on":
                return (
                    "watch log on: hits of gdb's watchpoints are recorded and do not stop "
                    "(a watchpoint with a condition stops when it is true)\n"
                )
            return "watch log off: gdb's watchpoints stop again (the records are kept)\n"
        if verb == "clear":
            n = len(wl.entries)
            wl.clear()
            return f"watch log cleared ({n} records)\n"
        if verb in ("show", "json"):
            records = list(wl.entries)
            if len(args) > 1:
                count = int(args[1], 0)
                if count < 0:
                    raise ValueError("N must be >= 0")
                records = records[len(records) - count :] if count else []
            if verb == "json":
                doc = {"enabled": wl.enabled, "dropped": wl.dropped, "records": [r.as_dict() for r in records]}
                return json.dumps(doc) + "\n"
            return _log_table(wl, records, self.target.wide)
        if verb == "status":
            return (
                f"watch log {'on' if wl.enabled else 'off'}: {len(wl.entries)} records "
                f"({wl.dropped} dropped), {wl.suppressed} hits did not stop\n"
            )
        raise ValueError("usage: watch log on|off|clear|show [N]|json [N]")

    def cmd_watch_cond(self, args: list[str]) -> str:
        """watch cond [ADDR [EXPR | off]] | watch cond clear: a condition on gdb's watchpoints at ADDR.

        The condition applies to every gdb watchpoint whose range contains
        the linear address ADDR (so it survives gdb's removal and re-insertion
        of watchpoints at each stop); it is evaluated in gdbemu after the
        accessing instruction, and the hit stops only when it is true (an
        error in it stops too, and is shown by 'watch cond').  Without the
        watch log, false hits are not recorded anywhere but 'info watchpoints'.

        EXPR: integers (123, 0x7b, 0b1111011), the names
          new, value  the accessed bytes after the access (= old for a read)
          old         the accessed bytes before the access
          pc          the linear address of the accessing instruction
          addr, size  the access;  write, read  1 if it is one
          icount      instructions retired before the access
          eax ecx edx ebx esp ebp esi edi eip eflags  (read after the access)
          rax ... rdi r8 ... r15 rip  (the same at 64 bits)
        the functions mem8(A) mem16(A) mem32(A) mem64(A) (guest memory, linear,
        debug view) and s8(X) s16(X) s32(X) (sign-extend), the operators
          or || and && not !   == != < <= > >=   | ^ &   << >>   + -   * / %   unary - ~
        (precedence from lowest to highest, as in Python), and parentheses.
        Examples:  watch cond 0x101024 new != 0 and pc != 0x1000a0
                   watch cond 0x101024 new - old > 10 || mem32(0x2000) == 1
        From gdb, with a symbol: eval "monitor watch cond %p new > 40", &counter
        'watch cond' lists the conditions, 'watch cond ADDR' shows one,
        'watch cond ADDR off' removes it, 'watch cond clear' removes all.
        """
        wl = self.target.watch_log
        if not args:
            if not wl.conditions:
                return "no watch conditions\n"
            out = [f"{len(wl.conditions)} watch conditions ({wl.cond_evals} evaluations):"]
            out += [f"  {addr:08x}: {cond.text}" for addr, cond in sorted(wl.conditions.items())]
            out += [f"  error: {e}" for e in wl.errors]
            return "\n".join(out) + "\n"
        if args == ["clear"]:
            n = len(wl.conditions)
            wl.conditions.clear()
            return f"{n} watch conditions removed\n"
        addr = _parse_addr(args[0])
        if len(args) == 1:
            cond = wl.conditions.get(addr)
            return f"{addr:08x}: {cond.text}\n" if cond else f"no watch condition at {addr:#x}\n"
        if args[1:] == ["off"]:
            return (
                f"watch condition at {addr:#x} removed\n"
                if wl.conditions.pop(addr, None)
                else f"no watch condition at {addr:#x}\n"
            )
        text = " ".join(args[1:])
        fn = compile_watch_condition(text, partial(peek_linear, self.machine.mem))
        wl.conditions[addr] = WatchCondition(text, fn)
        wps = self.machine.watchpoints.wps
        covered = [wp for wp in wps if wp.owner == GDB_OWNER and wp.vaddr <= addr < wp.end]
        note = "" if covered else " (no gdb watchpoint covers it yet: it applies once one does)"
        return f"watch condition at {addr:#x}: {text}{note}\n"

    # ---- target-side breakpoint conditions and dprintf -----------------------------------------
    def cmd_info_conditions(self, args: list[str]) -> str:
        """info conditions: target-side breakpoint conditions and commands from gdb, with counters and errors.

        gdb removes its breakpoints whenever the guest stops and inserts them
        again (with their bytecode) when it resumes, so an entry is shown as
        'inserted' only while gdb has it in (e.g. with 'set breakpoint
        always-inserted on'); the counters add up across insertions.
        """
        ag = self.target.agent
        out = []
        for (linear, hw), point in sorted(ag.history.items()):
            n = ag.counters.get(linear, [0, 0, 0])
            inserted = ag.points.get((linear, hw)) is point
            out.append(
                f"{linear:08x} {'hw' if hw else 'sw'} ({'inserted' if inserted else 'not inserted'}): "
                f"{n[0]} evaluations, {n[1]} true, {n[2]} errors"
            )
            for i, code in enumerate(point.conditions):
                out.append(f"  condition {i + 1}: {ax.disassemble(code)}")
            for i, code in enumerate(point.commands):
                out.append(f"  command {i + 1}{' (persistent)' if point.persist else ''}: {ax.disassemble(code)}")
        if not out:
            out.append("no target-side conditions or commands (gdb: set breakpoint condition-evaluation target)")
        if ag.errors:
            out.append("recent errors:")
            out += [f"  {e}" for e in ag.errors]
        return "\n".join(out) + "\n"

    def cmd_dprintf_log(self, args: list[str]) -> str:
        """dprintf log [clear]: what agent-style dprintfs printed (they also print on gdbemu's stderr)."""
        ag = self.target.agent
        if args == ["clear"]:
            ag.clear_dprintf()
            return "dprintf log cleared\n"
        if args:
            raise ValueError("usage: dprintf log [clear]")
        return ag.dprintf_text()

    def cmd_dprintf_stderr(self, args: list[str]) -> str:
        """dprintf stderr [on|off]: whether agent-style dprintf output is also written to gdbemu's stderr."""
        ag = self.target.agent
        if args:
            if args[0] not in ("on", "off"):
                raise ValueError("usage: dprintf stderr [on|off]")
            ag.dprintf_stderr = args[0] == "on"
        return f"dprintf output to stderr: {'on' if ag.dprintf_stderr else 'off'}\n"

    def cmd_x(self, args: list[str]) -> str:
        """x/Nx PADDR: N 32-bit words of physical memory (also x/Nb, x/Nh, x/Ng)."""
        # handle() passes the whole command: args[0] is the x/... word (typed as plain `x`,
        # the dispatcher passes only the arguments, and this answers with the usage).
        if not args or not args[0].startswith("x/"):
            raise ValueError("usage: x/Nx PADDR")
        spec, args = args[0], args[1:]
        size = {"b": 1, "h": 2, "w": 4, "x": 4, "g": 8}
        count = 1
        unit = 4
        fmt = spec[2:] if spec.startswith("x/") else ""
        digits = "".join(ch for ch in fmt if ch.isdigit())
        letters = [ch for ch in fmt if ch.isalpha()]
        if digits:
            count = int(digits)
        for ch in letters:
            if ch in size and ch != "x":
                unit = size[ch]
        if not args:
            raise ValueError("usage: x/Nx PADDR")
        paddr = int(args[0], 0)
        count = min(count, 4096)
        bits = self.machine.cpu.phys_bits  # MAXPHYADDR (36, 40 with long mode): nothing at or above it
        top = 1 << bits
        if not 0 <= paddr or paddr + count * unit > top:
            raise ValueError(f"physical address {args[0]} out of range (physical addresses are {bits}-bit)")
        data = self.machine.mem.read(paddr, count * unit)
        out = []
        aw = 10 if paddr + count * unit > 1 << 32 else 8
        per_line = 16 // unit
        for i in range(0, count, per_line):
            words = [
                int.from_bytes(data[(i + k) * unit : (i + k + 1) * unit], "little")
                for k in range(min(per_line, count - i))
            ]
            out.append(f"{paddr + i * unit:0{aw}x}: " + " ".join(f"{w:0{2 * unit}x}" for w in words))
        return "\n".join(out) + "\n"

    def cmd_screendump(self, args: list[str]) -> str:
        """screendump FILE [-f png|ppm]: write the screen (VGA text, mode 13h or the VBE framebuffer) as an image.

        QEMU's spelling.  The format is PNG unless ``-f ppm`` is given (QEMU's
        default is PPM; gdbemu's is PNG, which every viewer opens).  FILE is
        relative to gdbemu's working directory.
        """
        fmt = "png"
        rest: list[str] = []
        i = 0
        while i < len(args):
            if args[i] == "-f" and i + 1 < len(args):
                fmt = args[i + 1]
                i += 2
            elif args[i] == "-d" and i + 1 < len(args):
                i += 2  # the device: there is one display
            else:
                rest.append(args[i])
                i += 1
        if len(rest) != 1 or fmt not in ("png", "ppm"):
            raise ValueError("usage: screendump FILE [-f png|ppm]")
        vga = self.machine.bus.devices.get("vga")
        if not isinstance(vga, VGA):
            raise ValueError("there is no display (-vga none)")
        try:
            width, height = vga.screenshot(rest[0], fmt=fmt)
        except OSError as exc:
            raise ValueError(f"cannot write {rest[0]!r}: {exc.strerror or exc}") from None
        return f"screendump: {rest[0]}: {width}x{height} {fmt.upper()} ({vga.mode()})\n"

    def cmd_system_reset(self, args: list[str]) -> str:
        """system_reset: reset the machine (the kernel boots again, as after a reset button)."""
        self.machine.reset()
        return "system reset\n"

    def cmd_sstep(self, args: list[str]) -> str:
        """sstep [irq|noirq]: whether a single step may take interrupts and advance timers (default noirq)."""
        if args:
            if args[0] not in ("irq", "noirq"):
                raise ValueError("usage: sstep [irq|noirq]")
            self.target.sstep_irq = args[0] == "irq"
        return (
            f"single-step mode: {'irq' if self.target.sstep_irq else 'noirq'} (timers "
            f"{'advance' if self.target.sstep_irq else 'frozen'} during a step)\n"
        )


def _dedent(doc: str) -> str:
    lines = doc.strip("\n").splitlines()
    indents = [len(line) - len(line.lstrip()) for line in lines[1:] if line.strip()]
    cut = min(indents) if indents else 0
    return "\n".join([lines[0].strip()] + [line[cut:] for line in lines[1:]])


def _parse_addr(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise ValueError(f"bad address {text!r} (use 0x... or decimal)") from None
    if not 0 <= value <= 0xFFFFFFFFFFFFFFFF:
        raise ValueError(f"address {text} out of range")
    return value


def _value_text(v: int | None) -> str:
    return "-" if v is None else f"{v:#x}"


def _log_table(wl: WatchLog, records: list[WatchLogEntry], wide: bool = False) -> str:
    out = [f"watch log {'on' if wl.enabled else 'off'}: {len(wl.entries)} records ({wl.dropped} dropped)"]
    w = 16 if wide else 8
    wpw = w + 14
    if records:
        out.append(
            f"{'seq':>6} {'icount':>10} {'pc':{w}} acc {'addr':{w}} sz "
            f"{'old':>18} {'new':>18} {'watchpoint':{wpw}} stop"
        )
    for r in records:
        wp = f"{r.wp_kind.stop_name} {r.wp_vaddr:0{w}x}/{r.wp_length}"
        stop = "yes" if r.stopped else "-"
        if r.error:
            stop += f" ({r.error})"
        out.append(
            f"{r.seq:>6} {r.icount:>10} {r.pc:0{w}x} {'w' if r.is_write else 'r':3} {r.addr:0{w}x} {r.size:2} "
            f"{_value_text(r.old):>18} {_value_text(r.new):>18} {wp:{wpw}} {stop}"
        )
    return "\n".join(out) + "\n"
