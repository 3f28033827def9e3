"""``monitor`` commands (gdb's qRcmd): an allow-list, each with help text.

They show what only an emulator can show — the software TLB with its flag
bits, the dirty bitmaps, the TBs per page, the slow-path counters — and set
the stepping mode.  Each command is a method named ``cmd_<words>``; ``help``
lists them from their docstrings' first lines, so the list cannot drift.
"""

from __future__ import annotations

import time

from .core.mmu import PG_A, PG_D, PG_G, PG_P, PG_PS, PG_RW, PG_US
from .softmmu.dirty import CLIENT_NAMES
from .softmmu.tlb import (
    INVALID_TAG,
    NB_MMU_MODES,
    TLB_DISCARD_WRITE,
    TLB_MMIO,
    TLB_NOTDIRTY,
    TLB_WATCHPOINT,
)
from .softmmu.watchpoint import KIND_NAMES

MMU_NAMES = ("user", "kernel", "kernel-smap")
_FLAG_NAMES = ((TLB_NOTDIRTY, "NOTDIRTY"), (TLB_MMIO, "MMIO"), (TLB_WATCHPOINT, "WATCH"),
               (TLB_DISCARD_WRITE, "ROM"))


def _flags(tag: int) -> str:
    if tag == INVALID_TAG:
        return "-"
    names = [n for bit, n in _FLAG_NAMES if tag & bit]
    return "|".join(names) if names else "fast"


class Monitor:
    """The ``monitor`` command set of a ``MachineTarget``."""

    def __init__(self, target) -> None:
        self.target = target
        self.machine = target.machine

    # ---- dispatch --------------------------------------------------------------------
    def commands(self) -> dict[str, object]:
        out = {}
        for name in sorted(dir(self)):
            if name.startswith("cmd_"):
                out[name[4:].replace("_", " ")] = getattr(self, name)
        return out

    def handle(self, cmd: str) -> str:
        words = cmd.split()
        if not words:
            return self.cmd_help([])
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
    def cmd_help(self, args) -> str:
        """help: list the monitor commands."""
        lines = ["gdbemu monitor commands:"]
        for name, fn in self.commands().items():
            doc = (fn.__doc__ or "").strip().splitlines()[0]
            lines.append(f"  {doc}")
            del name
        return "\n".join(lines) + "\n"

    def cmd_info_status(self, args) -> str:
        """info status: running/stopped, instructions executed, guest MIPS since the last stop."""
        cpu = self.machine.cpu
        t = self.target
        state = "stopped" if not t.actions else "running"
        if cpu.halted:
            state += " (halted)"
        return (f"VM status: {state}\ninstructions executed: {cpu.icount}\n"
                f"guest MIPS over the last run: {t.last_run_mips:.2f}\n"
                f"virtual time: {self.machine.clock.now() / 1e9:.6f} s\n")

    def cmd_info_registers(self, args) -> str:
        """info registers: all system state (segments with caches, control, debug, descriptor tables)."""
        cpu = self.machine.cpu
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

    def cmd_info_tlb(self, args) -> str:
        """info tlb: valid TLB entries per mmu_idx with their flags (read/write/code tags)."""
        tlb = self.machine.cpu.tlb
        out = []
        for mmu_idx in range(NB_MMU_MODES):
            entries = tlb.valid_entries(mmu_idx)
            out.append(f"mmu_idx {mmu_idx} ({MMU_NAMES[mmu_idx]}): {len(entries)} entries")
            for vpage, paddr, rt, wt, ct in entries:
                out.append(f"  {vpage:08x} -> {paddr:08x}  read:{_flags(rt)} write:{_flags(wt)} code:{_flags(ct)}")
        return "\n".join(out) + "\n"

    def cmd_info_mem(self, args) -> str:
        """info mem: the guest's page-table mappings (linear ranges, physical, rights)."""
        cpu = self.machine.cpu
        if not cpu.cr[0] & (1 << 31):
            return "paging is disabled: linear addresses are physical\n"
        mem = self.machine.mem
        pd = cpu.cr[3] & 0xFFFFF000
        rows = []

        def rights(e: int) -> str:
            return ("u" if e & PG_US else "-") + "r" + ("w" if e & PG_RW else "-") + \
                (" G" if e & PG_G else "") + (" A" if e & PG_A else "") + (" D" if e & PG_D else "")

        for i in range(1024):
            pde = int.from_bytes(mem.read(pd + 4 * i, 4), "little")
            if not pde & PG_P:
                continue
            if pde & PG_PS and cpu.cr[4] & (1 << 4):
                rows.append((i << 22, 1 << 22, pde & 0xFFC00000, rights(pde) + " 4M"))
                continue
            pt = pde & 0xFFFFF000
            for j in range(1024):
                pte = int.from_bytes(mem.read(pt + 4 * j, 4), "little")
                if pte & PG_P:
                    effective = pde & pte | (pte & (PG_A | PG_D | PG_G))
                    rows.append(((i << 22) | (j << 12), 4096, pte & 0xFFFFF000, rights(effective)))
        # merge contiguous runs with the same rights
        merged: list[list] = []
        for vaddr, size, paddr, r in rows:
            last = merged[-1] if merged else None
            if last and last[0] + last[1] == vaddr and last[2] + last[1] == paddr and last[3] == r:
                last[1] += size
            else:
                merged.append([vaddr, size, paddr, r])
        out = [f"{v:08x}-{v + s:08x} {s:08x} -> {p:08x} {r}" for v, s, p, r in merged]
        return "\n".join(out) + ("\n" if out else "no mappings\n")

    def cmd_info_tbs(self, args) -> str:
        """info tbs: translation block count, per physical page, by tier."""
        tbs = self.machine.tbs
        out = [f"{len(tbs.tbs)} TBs on {len(tbs.pages)} pages "
               f"(tier 2: {sum(1 for t in tbs.tbs.values() if t.tier == 2)})"]
        for page in sorted(tbs.pages)[:64]:
            desc = tbs.pages[page]
            hot = tbs.smc_pages.get(page, 0)
            out.append(f"  {page:08x}: {len(desc.tbs)} TBs, {desc.writes} code-page stores, "
                       f"{hot} SMC invalidations{' (bitmap)' if desc.bitmap is not None else ''}")
        if len(tbs.pages) > 64:
            out.append(f"  ... {len(tbs.pages) - 64} more pages")
        return "\n".join(out) + "\n"

    def cmd_info_dirty(self, args) -> str:
        """info dirty: dirty page counts per client (vga, code, migration)."""
        d = self.machine.dirty
        out = [f"{d.n_pages} RAM pages"]
        for c, name in enumerate(CLIENT_NAMES):
            logged = sum(1 for b in d.logging if b & (1 << c))
            out.append(f"  {name:9s}: {d.count_dirty(c)} dirty, {logged} pages logged")
        return "\n".join(out) + "\n"

    def cmd_info_watchpoints(self, args) -> str:
        """info watchpoints: every watchpoint (gdb's and the guest's DR7 ones) with hit counts."""
        wl = self.machine.watchpoints
        if not wl.wps:
            return "no watchpoints\n"
        out = [f"{len(wl.wps)} watchpoints on {len(wl.by_page)} pages"]
        for wp in wl.wps:
            owner = "gdb" if wp.owner == "gdb" else f"guest DR{wp.owner[2]}"
            out.append(f"  {KIND_NAMES[wp.kind]:6s} {wp.vaddr:08x} len {wp.length:<6d} {owner:10s} hits {wp.hits}")
        bps = self.machine.breakpoints
        if bps.gdb:
            out.append(f"{len(bps.gdb)} breakpoints: " + " ".join(f"{a:08x}" for a in sorted(bps.gdb)))
        return "\n".join(out) + "\n"

    def cmd_stats(self, args) -> str:
        """stats: TLB, slow-path, TB and SMC counters."""
        stats = self.machine.stats()
        stats["watch_replays"] = self.machine.watchpoints.replays
        stats["breakpoint_hits"] = self.machine.breakpoints.hits
        return "\n".join(f"{k:18s} {v}" for k, v in stats.items()) + "\n"

    def cmd_x(self, args) -> str:
        """x/Nx PADDR: N 32-bit words of physical memory (also x/Nb, x/Nh)."""
        raise ValueError("usage: x/Nx PADDR")

    def handle_x(self, spec: str, args) -> str:
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
        data = self.machine.mem.read(paddr, count * unit)
        out = []
        per_line = 16 // unit
        for i in range(0, count, per_line):
            words = [int.from_bytes(data[(i + k) * unit : (i + k + 1) * unit], "little")
                     for k in range(min(per_line, count - i))]
            out.append(f"{paddr + i * unit:08x}: " + " ".join(f"{w:0{2 * unit}x}" for w in words))
        return "\n".join(out) + "\n"

    def cmd_system_reset(self, args) -> str:
        """system_reset: reset the machine (the kernel boots again, as after a reset button)."""
        self.machine.reset()
        return "system reset\n"

    def cmd_sstep(self, args) -> str:
        """sstep [irq|noirq]: whether a single step may take interrupts and advance timers (default noirq)."""
        if args:
            if args[0] not in ("irq", "noirq"):
                raise ValueError("usage: sstep [irq|noirq]")
            self.target.sstep_irq = args[0] == "irq"
        return f"single-step mode: {'irq' if self.target.sstep_irq else 'noirq'} (timers " \
               f"{'advance' if self.target.sstep_irq else 'frozen'} during a step)\n"


def _install_x(monitor_cls) -> None:
    """`x/16x 0x1000` has the count glued to the command: route any word starting with x/ to handle_x."""
    original = monitor_cls.handle

    def handle(self, cmd: str) -> str:
        words = cmd.split()
        if words and words[0].startswith("x/"):
            try:
                return self.handle_x(words[0], words[1:])
            except ValueError as exc:
                return f"error: {exc}\n"
        return original(self, cmd)

    monitor_cls.handle = handle


_install_x(Monitor)
del time
