"""The machine: the one place that wires memory, TLBs, the TB cache, CPUs and devices.

Everything else receives what it needs as arguments or callbacks (STYLE's
layering rule): the softmmu learns about code pages and TB invalidation only
through the callbacks set up here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NoReturn

import numpy as np
import numpy.typing as npt

from .clock import VirtualClock
from .core import flags as _F
from .core import interrupts
from .core.breakpoint import Breakpoints
from .core.cpu import CPU, EAX, EBX, MSR_IA32_APICBASE
from .core.exceptions import GuestFault, InstructionRestart
from .core.exec import REQ_EXIT, REQ_HARD, REQ_NMI, cpu_exec
from .core.mmu import debug_translate, tlb_fill
from .core.tb import TBCache
from .core.trace import TraceHooks
from .core.translate import Translator
from .hw.bus import Bus
from .hw.debugport import DebugPorts
from .softmmu.access import SoftMMU
from .softmmu.dirty import DIRTY_MEMORY_CODE, DirtyMemory
from .softmmu.memory import PhysMemory
from .softmmu.tlb import CPUTLB, NB_MMU_MODES, TLB_NOTDIRTY
from .softmmu.watchpoint import WATCH_ACCESS, WATCH_WRITE, WatchHit, WatchpointList


@dataclass
class Stop:
    """Why ``Machine.run`` returned."""

    kind: str  # "exit", "halt", "idle", "limit", "triple_fault", "debug", "reset"
    detail: str = ""
    # "debug": a gdb breakpoint ("swbreak"/"hwbreak") or watchpoint hit; ``reason``,
    # ``addr`` and (watchpoints) ``hit`` say which.
    reason: str = ""
    addr: int = 0
    hit: object = None
    cpu: int = 0
    # "halt": hlt with IF=0, nothing can wake the CPU.  "idle": hlt with IF=1 and
    # no timer armed: only an outside event (console input, gdb) can wake it.


class _Helpers:
    """The ``H`` namespace generated code calls (filled by core.helpers)."""


class Machine:
    SLICE = 1 << 20  # instructions per exec slice when no timer is closer
    MAX_IDLE_SKIPS = 10_000  # timer deadlines skipped while halted with no instruction retired

    def __init__(
        self, ram_size: int = 128 << 20, ncpus: int = 1, icount_shift: int = 3, trace: TraceHooks | None = None
    ) -> None:
        self.trace = trace if trace is not None else TraceHooks()
        self.mem = PhysMemory(ram_size)
        self.dirty = DirtyMemory(self.mem.n_pages)
        self.tbs = TBCache(self._protect_code, self._unprotect_code)
        self.translator = Translator(trace=self.trace)
        self.cpus: list[CPU] = []
        self.exit_code: int | None = None
        self.stop_reason: Stop | None = None
        self.breakpoints = Breakpoints(self._invalidate_linear)
        self.watchpoints = WatchpointList(self._flush_page_all, self.peek_linear)
        self.mem.on_phys_write.append(self._phys_written)
        self.tbs.on_invalidate.append(self._tb_invalidated)
        for i in range(ncpus):
            self.cpus.append(self._make_cpu(i))
        self.cpu = self.cpus[0]
        self.clock = VirtualClock(lambda: self.cpu.icount, icount_shift)
        self.clock.kick = self._kick
        self.on_reset: list = []  # called after a system reset (the loader boots the kernel again)
        # The devices' view of the machine (hw/bus.py): IRQ lines and interrupt sources,
        # ports and MMIO, timers, dirty memory, resets and stops.
        self.bus = Bus(
            self.mem,
            self.dirty,
            self.clock,
            self.cpus,
            set_intr=self._set_intr,
            request_stop=lambda kind, detail, code: self.request_stop(Stop(kind, detail), exit_code=code),
            reset=self.reset,
            dirty_test_and_clear=self.dirty_test_and_clear,
            flush_tlbs=self._flush_tlbs,
            running_cpu=lambda: self.cpu.index,
            raise_nmi=lambda index: self.raise_nmi(self.cpus[index]),
            apic_base=lambda index: self.cpus[index].msr.get(MSR_IA32_APICBASE, 0),
            interrupts_enabled=lambda index: bool(self.cpus[index].eflags & _F.IF),
            kick=self._kick,
            tb_insns=self._tb_insns,
            restart_instruction=self._restart_instruction,
        )
        # Every machine has isa-debug-exit (0xF4) and the 0xE9 console; build_pc reconfigures them.
        self.debug_output = self.bus.debug_output
        self.bus.add_device("debugport", DebugPorts(self.bus))

    # ---- wiring ---------------------------------------------------------------
    def _make_cpu(self, index: int) -> CPU:
        from .core import flags as F
        from .core import helpers

        cpu = CPU(index)
        cpu.machine = self
        tlb = CPUTLB()
        tlb.classify = self._classify
        tlb.watch_flags = lambda vpage: self.watchpoints.page_flags(vpage)
        cpu.tlb = tlb
        cpu.jmp_cache = {}
        cpu.icount_deadline = 0
        tlb.on_flush.append(lambda vpage, c=cpu: c.jmp_cache.clear())
        cpu.softmmu = SoftMMU(
            cpu,
            tlb,
            self.mem,
            self.dirty,
            fill=self._traced_fill(cpu)
            if self.trace.tlb_fill is not None
            else (lambda vaddr, access, mmu_idx, c=cpu: tlb_fill(c, vaddr, access, mmu_idx)),
            invalidate_code=self.tbs.invalidate_phys_range_fast,
            watch_check=lambda vaddr, size, is_write, c=cpu: self.watchpoints.check(c, vaddr, size, is_write),
        )
        cpu.namespaces = []
        for mmu_idx in range(NB_MMU_MODES):
            d = tlb.d[mmu_idx]
            cpu.namespaces.append(
                {
                    "cpu": cpu,
                    "R": cpu.regs,
                    "RT": d.read,
                    "WT": d.write,
                    "AD": d.addend,
                    "M8": self.mem.ram,
                    "M16": self.mem.m16,
                    "M32": self.mem.m32,
                    "M64": self.mem.m64,
                    "LD": cpu.softmmu.loader(mmu_idx),
                    "ST": cpu.softmmu.storer(mmu_idx),
                    "SB": cpu.seg_base,
                    "Fault": GuestFault,
                    "H": helpers,
                    "FLAGS": F.compute_all,
                    "CARRY": F.compute_cf,
                    "COND": F.eval_cc,
                    "__builtins__": __builtins__,
                }
            )
        return cpu

    def _traced_fill(self, cpu: CPU):
        """The TLB fill with the ``tlb_fill`` trace hook around it (-d mmu)."""
        hook = self.trace.tlb_fill
        assert hook is not None

        def fill(vaddr: int, access: int, mmu_idx: int):
            try:
                slot = tlb_fill(cpu, vaddr, access, mmu_idx)
            except GuestFault as fault:
                hook(cpu, vaddr, access, mmu_idx, None, fault)
                raise
            hook(cpu, vaddr, access, mmu_idx, debug_translate(cpu, vaddr), None)
            return slot

        return fill

    def _classify(self, ppage: int):
        ram_offset, read_flags, write_flags = self.mem.classify(ppage)
        if ram_offset is not None and not write_flags and self.dirty.is_clean(ppage >> 12):
            write_flags |= TLB_NOTDIRTY
        return ram_offset, read_flags, write_flags

    def _protect_code(self, ppage: int) -> None:
        """First TB on a frame: make stores to it leave the fast path (tlb_protect_code)."""
        if ppage >> 12 < self.dirty.n_pages:
            self.dirty.reset_dirty_range(DIRTY_MEMORY_CODE, ppage, 4096)
        for cpu in self.cpus:
            cpu.tlb.protect_code(ppage)

    def _unprotect_code(self, ppage: int) -> None:
        """Last TB gone from a frame: stores may be fast again (tlb_unprotect_code)."""
        if ppage >> 12 < self.dirty.n_pages:
            self.dirty.set_dirty_range(ppage, 4096, clients=1 << DIRTY_MEMORY_CODE)

    def dirty_test_and_clear(self, client: int, paddr: int, length: int) -> npt.NDArray[np.uint8]:
        """Dirty pages of a range for ``client``, cleared, with TLB_NOTDIRTY put back.

        Clearing the bits alone is not enough: write entries already in the
        TLBs would keep storing on the fast path and the next writes would be
        missed (QEMU's cpu_physical_memory_test_and_clear_dirty does the same
        tlb_reset_dirty_range_all).
        """
        out = self.dirty.test_and_clear(client, paddr, length)
        first = paddr & -4096
        for i, was_dirty in enumerate(out):
            if was_dirty:
                for cpu in self.cpus:
                    cpu.tlb.protect_code(first + (i << 12))
        return out

    def _phys_written(self, paddr: int, length: int) -> None:
        """A write that bypassed the TLB (debugger, loader, DMA): invalidate code it hit."""
        self.tbs.invalidate_phys_range(paddr, paddr + length)

    def _invalidate_linear(self, linear: int) -> None:
        """A breakpoint mark appeared at ``linear``: drop the TBs that would run past it unchecked.

        That is every TB whose linear range contains it, except one that
        already starts there with a breakpoint prologue (built for an earlier
        insertion at the same address).
        """
        for tb in list(self.tbs.by_vpage.get(linear & -4096, ())):
            start = (tb.cs_base + tb.pc) & 0xFFFFFFFF
            if start <= linear < start + max(tb.size, 1) and not (start == linear and tb.bp):
                self.tbs.invalidate(tb)

    def _flush_page_all(self, vpage: int) -> None:
        for cpu in self.cpus:
            cpu.tlb.flush_page(vpage)

    def _tb_invalidated(self, tb) -> None:
        key = (tb.pc, tb.cs_base, tb.hflags)
        for cpu in self.cpus:
            if cpu.jmp_cache.get(key) is tb:
                del cpu.jmp_cache[key]

    # ---- control ----------------------------------------------------------------
    def request_stop(self, stop: Stop, exit_code: int | None = None) -> None:
        self.stop_reason = stop
        if exit_code is not None:
            self.exit_code = exit_code
        for cpu in self.cpus:
            cpu.interrupt_request |= REQ_EXIT

    def deliver_exception(self, cpu: CPU, fault: GuestFault) -> None:
        interrupts.raise_exception(cpu, fault)

    def _flush_tlbs(self) -> None:
        """The physical memory map changed (an MMIO page moved): every CPU's TLB."""
        for cpu in self.cpus:
            cpu.tlb.flush()

    def _tb_insns(self) -> int:
        """Instructions in the TB executing now, 0 between TBs (hw/bus.py: exact icount)."""
        tb = self.tbs.current
        return 0 if tb is None else tb.n_insns

    def _restart_instruction(self) -> NoReturn:
        """Abandon a device access: the exec loop re-runs its instruction alone, with an exact icount."""
        raise InstructionRestart()

    def _kick(self) -> None:
        """Leave the exec loop at the next TB boundary (a timer was armed inside this slice)."""
        for cpu in self.cpus:
            cpu.interrupt_request |= REQ_EXIT

    # ---- hardware interrupts --------------------------------------------------------
    def _set_intr(self, pending: bool) -> None:
        """The INTR line (``bus.update_interrupt``): whether a maskable interrupt is pending."""
        for cpu in self.cpus:
            if pending:
                cpu.interrupt_request |= REQ_HARD
            else:
                cpu.interrupt_request &= ~REQ_HARD

    def _take_interrupt(self, cpu: CPU) -> bool:
        """Deliver one pending hardware interrupt if EFLAGS.IF and no interrupt shadow allow it."""
        if not cpu.eflags & _F.IF or cpu.icount < cpu.inhibit_irq_until:
            return False
        vector = self.bus.acknowledge_interrupt()
        if vector is None:
            return False
        cpu.halted = False
        interrupts.deliver_external(cpu, vector)
        return True

    def raise_nmi(self, cpu: CPU) -> None:
        """An NMI for ``cpu`` (a local APIC's LINT1 or LVT entry, an NMI IPI, an I/O APIC entry).

        EFLAGS.IF does not mask it.  From the delivery of an NMI until the
        next IRET further NMIs are blocked; one of them stays latched and is
        delivered after that IRET (SDM vol. 3, 6.7.1; core/ops/system.py iret).
        """
        cpu.nmi_pending = True
        if not cpu.nmi_blocked:
            cpu.interrupt_request |= REQ_NMI

    def _take_nmi(self, cpu: CPU) -> None:
        """Deliver the latched NMI through IDT vector 2 (wakes a halted CPU whatever IF says)."""
        cpu.interrupt_request &= ~REQ_NMI
        if not cpu.nmi_pending or cpu.nmi_blocked:
            return
        cpu.nmi_pending = False
        cpu.nmi_blocked = True
        cpu.halted = False
        interrupts.deliver_external(cpu, 2)

    def run(self, max_insns: int | None = None) -> Stop:
        """Run until the guest exits, halts for good, triple-faults, or ``max_insns`` retire.

        Between slices: fire expired timers, take a pending interrupt, and
        when halted jump virtual time to the next deadline.  Each slice ends
        exactly at the next timer deadline, so interrupts land on the same
        instruction in every run.
        """
        cpu = self.cpu
        clock = self.clock
        self.stop_reason = None
        start = cpu.icount
        idle_icount, idle_skips = cpu.icount, 0
        while True:
            if self.stop_reason is not None:
                return self.stop_reason
            if max_insns is not None:
                left = max_insns - (cpu.icount - start)
                if left <= 0:
                    return Stop("limit")
            else:
                left = self.SLICE
            clock.run_timers()
            if cpu.interrupt_request & REQ_NMI:
                self._take_nmi(cpu)
                if self.stop_reason is not None:
                    continue
            if cpu.interrupt_request & REQ_HARD:
                self._take_interrupt(cpu)
                if self.stop_reason is not None:
                    continue
            if cpu.halted:
                if not cpu.eflags & _F.IF:
                    return Stop("halt", "hlt with interrupts disabled")
                deadline = clock.next_deadline()
                if deadline is None:
                    return Stop("idle", "hlt with no timer armed")
                # Timers that fire but never interrupt the CPU (masked at the
                # controller) would let this loop skip virtual time forever.
                if cpu.icount != idle_icount:
                    idle_icount, idle_skips = cpu.icount, 0
                idle_skips += 1
                if idle_skips > self.MAX_IDLE_SKIPS:
                    return Stop("idle", "halted; timers fire but no interrupt wakes the CPU")
                clock.skip_to(deadline)
                continue
            cpu_exec(cpu, clock.budget(min(left, self.SLICE)))
            if cpu.interrupt_request & REQ_EXIT:
                cpu.interrupt_request &= ~REQ_EXIT

    # ---- the debugger's view ----------------------------------------------------------
    def debug_stop(self, cpu: CPU, reason: str, addr: int) -> None:
        """A gdb breakpoint was reached (the instruction has not run)."""
        self.request_stop(Stop("debug", f"{reason} at {addr:#x}", reason=reason, addr=addr, cpu=cpu.index))

    def watch_stop(self, cpu: CPU, hit: WatchHit) -> None:
        """A watchpoint hit, reported after the instruction (trap-like), to gdb or to the guest.

        With the watch log or watch conditions active (``softmmu/watchpoint.py``)
        the hit is first completed there: logged, its condition evaluated; a hit
        that is not to be reported returns here and the guest runs on.
        """
        owner = hit.wp.owner
        report = self.watchpoints.complete(cpu, hit)
        if isinstance(owner, tuple) and owner[0] == "dr":
            # The guest's own data breakpoint: #DB trap with DR6.Bn (SDM vol. 3, 17.3.1.2).
            cpu.dr[6] = (cpu.dr[6] & ~0xF) | (1 << owner[2]) | 0xFFFF0FF0
            self.deliver_exception(cpu, GuestFault(1))
            return
        if report is None:
            return  # logged, or its condition was false: no stop
        hit = report
        from .softmmu.watchpoint import KIND_NAMES

        reason = KIND_NAMES[hit.wp.kind]
        self.request_stop(
            Stop("debug", f"{reason} at {hit.addr:#x}", reason=reason, addr=hit.addr, hit=hit, cpu=cpu.index)
        )

    def update_guest_debug(self, cpu: CPU) -> None:
        """DR0-DR3/DR7 changed: rebuild the guest's execute breakpoints and data watchpoints."""
        dr7 = cpu.dr[7]
        execs: dict[int, set[int]] = {}
        self.watchpoints.remove_owner_prefix(("dr", cpu.index))
        for n in range(4):
            if not (dr7 >> (2 * n)) & 3:
                continue
            rw = (dr7 >> (16 + 4 * n)) & 3
            length = (1, 2, 8, 4)[(dr7 >> (18 + 4 * n)) & 3]
            addr = cpu.dr[n] & 0xFFFFFFFF
            if rw == 0:
                execs.setdefault(addr, set()).add(n)
            elif rw in (1, 3):
                addr &= ~(length - 1)
                self.watchpoints.add(addr, length, WATCH_WRITE if rw == 1 else WATCH_ACCESS, ("dr", cpu.index, n))
            # rw == 2 (I/O breakpoints, CR4.DE) is not emulated
        self.breakpoints.set_guest(execs)

    def peek_linear(self, cpu: CPU, vaddr: int, size: int) -> int | None:
        """``size`` bytes at a linear address as an integer, debug view, RAM only (else None).

        For the watch log's old/new values and target-side conditions: no TLB
        fill, no fault, no A/D bits, and never an MMIO read (a device register
        read has side effects; reading it again for a log would change the guest).
        """
        vaddr &= 0xFFFFFFFF
        if (vaddr & 0xFFF) + size > 0x1000:
            lo = 0x1000 - (vaddr & 0xFFF)
            a = self.peek_linear(cpu, vaddr, lo)
            b = self.peek_linear(cpu, vaddr + lo, size - lo)
            return None if a is None or b is None else a | (b << (8 * lo))
        paddr = debug_translate(cpu, vaddr)
        mem = self.mem
        if paddr is None or not mem.is_ram(paddr) or paddr + size > mem.ram_size:
            return None
        return int.from_bytes(mem.ram[paddr : paddr + size], "little")

    def read_virtual(self, vaddr: int, length: int, cpu: CPU | None = None) -> bytes:
        """gdb's memory read: no TLB fill, no A/D bits, no watchpoints, no fault (None pages raise)."""
        cpu = cpu or self.cpu
        out = bytearray()
        while length > 0:
            chunk = min(length, 4096 - (vaddr & 0xFFF))
            paddr = debug_translate(cpu, vaddr)
            if paddr is None:
                raise ValueError(f"address {vaddr:#x} is not mapped")
            out += self.mem.read(paddr, chunk)
            vaddr = (vaddr + chunk) & 0xFFFFFFFF
            length -= chunk
        return bytes(out)

    def write_virtual(self, vaddr: int, data: bytes, cpu: CPU | None = None) -> None:
        """gdb's memory write: through physical memory, invalidating translated code it touches."""
        cpu = cpu or self.cpu
        pos = 0
        pieces = []
        while pos < len(data):
            chunk = min(len(data) - pos, 4096 - (vaddr & 0xFFF))
            paddr = debug_translate(cpu, vaddr)
            if paddr is None:
                raise ValueError(f"address {vaddr:#x} is not mapped")
            pieces.append((paddr, data[pos : pos + chunk]))
            vaddr = (vaddr + chunk) & 0xFFFFFFFF
            pos += chunk
        for paddr, piece in pieces:  # all pages mapped: write (nothing written if one is not)
            self.mem.write(paddr, piece)

    def step(self, cpu: CPU | None = None, irq: bool = False) -> Stop:
        """Execute exactly one instruction (the debugger's step).

        By default no interrupt is taken and timers do not advance during the
        step (QEMU's SSTEP_NOIRQ | SSTEP_NOTIMER); with ``irq`` a pending
        interrupt is delivered first and expired timers fire.  A step onto an
        instruction that faults ends on the handler's first instruction.
        """
        cpu = cpu or self.cpu
        self.stop_reason = None
        if irq:
            self.clock.run_timers()
            if cpu.interrupt_request & REQ_HARD and self._take_interrupt(cpu):
                return Stop("step")
        if cpu.halted:
            return Stop("halt" if not cpu.eflags & _F.IF else "idle")
        saved = cpu.interrupt_request
        cpu.interrupt_request &= ~REQ_HARD  # NOIRQ: a pending INTR must not cut the step short
        try:
            cpu_exec(cpu, 1, single=True)
        finally:
            cpu.interrupt_request = (cpu.interrupt_request & ~REQ_HARD) | (saved & REQ_HARD)
        if cpu.interrupt_request & REQ_EXIT:
            cpu.interrupt_request &= ~REQ_EXIT
        if self.stop_reason is not None:
            return self.stop_reason
        return Stop("step")

    # ---- reset ----------------------------------------------------------------------
    def reset(self) -> None:
        """A system reset (triple fault, keyboard-controller reset, port 0xCF9...).

        The CPUs return to their power-on state, translations and TLBs are
        dropped, the devices' reset hooks run (``bus.reset_devices``), and the ``on_reset``
        hooks run — the loader uses one to boot the kernel again, as a BIOS
        would (RAM is kept, as on a PC).
        """
        from .core.cpu import CPU as _CPU

        for cpu in self.cpus:
            fresh = _CPU(cpu.index)
            for attr in ("regs", "segs", "cr", "dr", "seg_base"):
                getattr(cpu, attr)[:] = getattr(fresh, attr)
            for attr, value in vars(fresh).items():
                if attr not in ("regs", "segs", "cr", "dr", "seg_base", "machine", "icount"):
                    setattr(cpu, attr, value)
            cpu.compute_hflags()
            cpu.tlb.flush()
            cpu.jmp_cache.clear()
        self.tbs.flush()
        self.bus.reset_devices()
        for hook in self.on_reset:
            hook()

    # ---- loading ------------------------------------------------------------------
    def load_elf(self, path: str) -> int:
        """Load an i386 ELF's PT_LOAD segments at their physical addresses; multiboot entry state."""
        from .boot.elf import load_elf

        entry = load_elf(self.mem, open(path, "rb").read())
        cpu = self.cpu
        cpu.setup_flat32()
        cpu.eip = entry
        cpu.regs[EAX] = 0x2BADB002
        cpu.regs[EBX] = 0
        return entry

    def load_multiboot(self, path: str, append: str = "", initrd: str | None = None, kernel_name: str | None = None):
        """Boot a multiboot kernel the way a PC (SeaBIOS + QEMU's ``-kernel``) does.

        Unlike ``load_elf`` (the bare core's loader, kept for the core tests),
        this writes the BIOS leftovers (BDA, EBDA, MP and ACPI tables; PIC and
        PIT programmed as SeaBIOS leaves them), the kernel and its ``initrd``
        modules, the multiboot information structure with ``append`` as the
        command line, sets the multiboot entry state, and registers an
        ``on_reset`` hook that boots the kernel again after a reset.  Returns
        ``boot.multiboot.BootInfo``; raises ``MultibootError`` naming what is
        wrong with the file.  See ``boot/multiboot.py`` and ``boot/firmware.py``.
        """
        from .boot.multiboot import boot_multiboot

        return boot_multiboot(self, path, append, initrd, kernel_name)

    def stats(self) -> dict[str, int]:
        out: dict[str, int] = {}
        out.update(self.cpu.tlb.stats.as_dict())
        out.update(self.tbs.stats)
        out.update(self.translator.stats)
        out["icount"] = self.cpu.icount
        return out
