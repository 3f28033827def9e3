"""The machine: wires memory, TLBs, the TB cache, CPUs and devices; runs the loop; resets.

Everything else receives what it needs at construction, as objects or
callables (STYLE's layering rule), and nothing is attached or swapped
afterwards:

* each CPU is assembled by ``core/vcpu.make_cpu`` (its TLB, its softmmu given
  the page walk, the registries), with this Machine as its events sink
  (``core/events.MachineEvents``: stops, watchpoint hits, guest debug
  registers, port I/O);
* the exec loop gets an explicit ``core/exec.ExecContext``;
* the TB cache learns of code pages through ``_protect_code`` /
  ``_unprotect_code``; the breakpoint and watchpoint registries flush through
  the callables given here;
* hook points: ``trace`` (``core/trace.TraceHooks``, the ``-d`` items) and
  ``attach_debugger`` (``core/events.DebuggerHooks``: the watch log and
  conditions); without them nothing is called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:  # numpy is imported when bulk work first needs it (start-up time)
    import numpy as np
    import numpy.typing as npt

from .boot.multiboot import BootInfo
from .clock import VirtualClock
from .core import flags as _F
from .core import interrupts
from .core.breakpoint import Breakpoints
from .core.cpu import CPU, EAX, EBX, MSR_IA32_APICBASE, REQ_EXIT, REQ_HARD, REQ_NMI
from .core.events import DebuggerHooks
from .core.exceptions import DB, GuestFault, InstructionRestart
from .core.exec import ExecContext, cpu_exec, watched
from .core.guest_debug import data_breakpoint_hit, is_guest_watchpoint
from .core.guest_debug import update_guest_debug as _update_guest_debug
from .core.stop import RunStop, StopKind
from .core.tb import TB, TBCache
from .core.trace import TraceHooks
from .core.translate import Translator
from .core.vcpu import make_cpu
from .hw.bus import Bus
from .hw.debugport import DebugPorts
from .hw.ferr import FerrLatch
from .softmmu.dirty import DIRTY_MEMORY_CODE, DirtyMemory
from .softmmu.memory import PhysMemory
from .softmmu.tlb import PAGE_BITS, PAGE_MASK, PAGE_SIZE
from .softmmu.watchpoint import WatchHit, WatchpointList

Stop = RunStop  # the old name, for a transition: new code uses core.stop.RunStop / StopKind


class Machine:
    """Wires memory, TLBs, the TB cache, CPUs and devices; runs the loop; resets.

    Implements ``core.events.MachineEvents`` for its CPUs (the core's only way
    out).  ``trace``: the ``-d`` hook points (``core/trace.py``), read where
    they are called, so they may be set after construction.
    """

    SLICE = 1 << 20  # instructions per exec slice when no timer is closer
    MAX_IDLE_SKIPS = 10_000  # timer deadlines skipped while halted with no instruction retired

    def __init__(
        self,
        ram_size: int = 128 << 20,
        ncpus: int = 1,
        icount_shift: int = 3,
        trace: TraceHooks[CPU] | None = None,
    ) -> None:
        self.mem = PhysMemory(ram_size)
        self.dirty = DirtyMemory(self.mem.n_pages)
        self.tbs = TBCache(self._protect_code, self._unprotect_code)
        self.breakpoints = Breakpoints(self._invalidate_linear)
        self.watchpoints = WatchpointList(self._flush_range_all)
        self.translator = Translator(self.mem, self.tbs, self.breakpoints)
        self.trace: TraceHooks[CPU] = trace if trace is not None else TraceHooks()
        # The attached debugger's hooks (debug/): watch log and conditions.  None: no debugger.
        self.debugger: DebuggerHooks[CPU] | None = None
        self.exec_ctx = ExecContext(
            self.mem, self.tbs, self.translator, self.breakpoints, self, self.trace, cross_page_chain=ncpus == 1
        )
        self.exit_code: int | None = None
        self.stop_reason: RunStop | None = None
        self.mem.on_phys_write.append(self._phys_written)
        self.tbs.on_invalidate.append(self._tb_invalidated)
        self.cpus: list[CPU] = [
            make_cpu(
                i,
                self.mem,
                self.dirty,
                self.watchpoints,
                self.breakpoints,
                self,
                self.tbs.invalidate_phys_range_fast,
                self.trace,
            )
            for i in range(ncpus)
        ]
        self.cpu = self.cpus[0]
        cpu0 = self.cpu  # the clock's instruction count (a closure: devices read it on every timed access)
        self.clock = VirtualClock(lambda: cpu0.icount, icount_shift, kick=self._kick)
        self.on_reset: list[Any] = []  # called after a system reset (the loader boots the kernel again)
        # The devices' view of the machine (hw/bus.py): IRQ lines and interrupt sources,
        # ports and MMIO, timers, dirty memory, resets and stops.
        self.bus = Bus(
            self.mem,
            self.dirty,
            self.clock,
            self.cpus,
            set_intr=self._set_intr,
            request_stop=lambda kind, detail, code: self.request_stop(RunStop(kind, detail), exit_code=code),
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
    def attach_debugger(self, hooks: DebuggerHooks[CPU] | None) -> None:
        """Attach (or with None detach) the debugger whose hooks complete watchpoint hits."""
        self.debugger = hooks

    def _protect_code(self, ppage: int) -> None:
        """First TB on a frame: make stores to it leave the fast path (tlb_protect_code)."""
        if ppage >> PAGE_BITS < self.dirty.n_pages:
            self.dirty.reset_dirty_range(DIRTY_MEMORY_CODE, ppage, PAGE_SIZE)
        for cpu in self.cpus:
            cpu.tlb.protect_code(ppage)

    def _unprotect_code(self, ppage: int) -> None:
        """Last TB gone from a frame: stores may be fast again (tlb_unprotect_code)."""
        if ppage >> PAGE_BITS < self.dirty.n_pages:
            self.dirty.set_dirty_range(ppage, PAGE_SIZE, clients=1 << DIRTY_MEMORY_CODE)

    def dirty_test_and_clear(self, client: int, paddr: int, length: int) -> npt.NDArray[np.uint8]:
        """Dirty pages of a range for ``client``, cleared, with TLB_NOTDIRTY put back.

        Clearing the bits alone is not enough: write entries already in the
        TLBs would keep storing on the fast path and the next writes would be
        missed (QEMU's cpu_physical_memory_test_and_clear_dirty does the same
        tlb_reset_dirty_range_all).
        """
        out = self.dirty.test_and_clear(client, paddr, length)
        first = paddr & PAGE_MASK
        for i, was_dirty in enumerate(out):
            if was_dirty:
                for cpu in self.cpus:
                    cpu.tlb.protect_code(first + (i << PAGE_BITS))
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
        for tb in list(self.tbs.by_vpage.get(linear & PAGE_MASK, ())):
            start = (tb.cs_base + tb.pc) & 0xFFFFFFFF
            if start == linear and tb.bp:
                continue
            # A TB that followed a jump (core/translate.py) is not one run from its start.
            if start <= linear < start + max(tb.size, 1) or any(
                0 <= linear - ((tb.cs_base + eip) & 0xFFFFFFFF) < (insn.size if insn is not None else 1)
                for eip, insn in zip(tb.eips, tb.insns, strict=True)
            ):
                self.tbs.invalidate(tb)

    def _flush_range_all(self, vaddr: int, length: int) -> None:
        for cpu in self.cpus:
            cpu.tlb.flush_range(vaddr, length)

    def _tb_invalidated(self, tb: TB) -> None:
        for cpu in self.cpus:
            if cpu.jmp_cache.get(tb.pc) is tb:
                del cpu.jmp_cache[tb.pc]

    # ---- control (core.events.MachineEvents) ----------------------------------------
    def request_stop(self, stop: RunStop, exit_code: int | None = None) -> None:
        self.stop_reason = stop
        if exit_code is not None:
            self.exit_code = exit_code
        for cpu in self.cpus:
            cpu.interrupt_request |= REQ_EXIT

    def io_read(self, port: int, size: int) -> int:
        return self.mem.io_read(port, size)

    def io_write(self, port: int, size: int, value: int) -> None:
        self.mem.io_write(port, size, value)

    def ferr(self, cpu: CPU, asserted: bool) -> None:
        latch = self.bus.devices.get("ferr")
        if isinstance(latch, FerrLatch):  # a PC board (hw/ferr.py); a bare machine has no IRQ 13
            latch.ferr(asserted)

    def deliver_exception(self, cpu: CPU, fault: GuestFault) -> None:
        """Deliver an exception through the IDT, as the exec loop does (``exec_ctx.deliver_exception``)."""
        watched(self.exec_ctx, cpu, lambda: self.exec_ctx.deliver_exception(cpu, fault))

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
        watched(self.exec_ctx, cpu, lambda: interrupts.deliver_external(cpu, vector))
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
        watched(self.exec_ctx, cpu, lambda: interrupts.deliver_external(cpu, 2))

    def run(self, max_insns: int | None = None) -> RunStop:
        """Run until the guest exits, halts for good, triple-faults, or ``max_insns`` retire.

        Between slices: fire expired timers, take a pending interrupt, and
        when halted jump virtual time to the next deadline.  Each slice ends
        exactly at the next timer deadline, so interrupts land on the same
        instruction in every run.  A slice that only delivers exceptions (a
        handler faulting at once, forever) ends after its budget's worth of
        deliveries: with ``max_insns`` the run returns a "limit" stop naming
        the exception storm; without, it loops as the hardware would.
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
                    return RunStop(StopKind.LIMIT)
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
                    return RunStop(StopKind.HALT, "hlt with interrupts disabled")
                deadline = clock.next_deadline()
                if deadline is None:
                    return RunStop(StopKind.IDLE, "hlt with no timer armed")
                # Timers that fire but never interrupt the CPU (masked at the
                # controller) would let this loop skip virtual time forever.
                if cpu.icount != idle_icount:
                    idle_icount, idle_skips = cpu.icount, 0
                idle_skips += 1
                if idle_skips > self.MAX_IDLE_SKIPS:
                    return RunStop(StopKind.IDLE, "halted; timers fire but no interrupt wakes the CPU")
                clock.skip_to(deadline)
                continue
            storm = cpu_exec(self.exec_ctx, cpu, clock.budget(min(left, self.SLICE)))
            if cpu.interrupt_request & REQ_EXIT:
                cpu.interrupt_request &= ~REQ_EXIT
            if storm and max_insns is not None:
                # Exceptions delivered in a loop, nothing retiring: the hardware would loop forever
                # too.  A budgeted run ends here (run again to go on); without a budget it loops.
                return RunStop(StopKind.LIMIT, "exception storm: deliveries with no instruction retired")

    # ---- the debugger's view ----------------------------------------------------------
    # The debugger's policy lives in gdbemu/debug (memory view, watch log, conditions,
    # MachineTarget); the guest's DR0-DR7 in core/guest_debug.py.  What stays here is the
    # machine side of the core's events and the one hook point, ``debugger``.
    def debug_stop(self, cpu: CPU, reason: str, addr: int) -> None:
        """A gdb breakpoint was reached (the instruction has not run)."""
        self.request_stop(RunStop(StopKind.DEBUG, f"{reason} at {addr:#x}", reason=reason, addr=addr, cpu=cpu.index))

    def watch_stop(self, cpu: CPU, hit: WatchHit) -> None:
        """A watchpoint hit, reported after the instruction (trap-like), to gdb or to the guest.

        An attached debugger completes the hit first (``debugger.complete_watch``:
        the watch log and watch conditions); a hit it does not want reported
        returns here and the guest runs on.  A hit of the guest's own DR0-DR3
        is a #DB trap with DR6.Bn (core/guest_debug.py).
        """
        report: WatchHit | None = hit
        if self.debugger is not None:
            report = self.debugger.complete_watch(cpu, hit)
        if is_guest_watchpoint(hit.wp):
            data_breakpoint_hit(cpu, hit.wp)
            self.deliver_exception(cpu, GuestFault(DB))
            return
        if report is None:
            return  # logged, or its condition was false: no stop
        reason = report.wp.kind.stop_name
        self.request_stop(
            RunStop(
                StopKind.DEBUG,
                f"{reason} at {report.addr:#x}",
                reason=reason,
                addr=report.addr,
                hit=report,
                cpu=cpu.index,
            )
        )

    def update_guest_debug(self, cpu: CPU) -> None:
        """DR0-DR3/DR7 changed: rebuild the guest's execute breakpoints and data watchpoints."""
        _update_guest_debug(cpu, self.watchpoints, self.breakpoints)

    def step(self, cpu: CPU | None = None, irq: bool = False) -> RunStop:
        """Execute exactly one instruction (the debugger's step).

        It stays on the machine: it is the run loop cut to one instruction
        (interrupt delivery, timers, the exec loop's exits), not a debugger view.

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
                return RunStop(StopKind.STEP)
        if cpu.halted:
            return RunStop(StopKind.HALT if not cpu.eflags & _F.IF else StopKind.IDLE)
        saved = cpu.interrupt_request
        cpu.interrupt_request &= ~REQ_HARD  # NOIRQ: a pending INTR must not cut the step short
        cpu.single_step = True  # a rep string instruction: one iteration (core/ops/string.py)
        try:
            cpu_exec(self.exec_ctx, cpu, 1, single=True)
        finally:
            cpu.single_step = False
            cpu.interrupt_request = (cpu.interrupt_request & ~REQ_HARD) | (saved & REQ_HARD)
        if cpu.interrupt_request & REQ_EXIT:
            cpu.interrupt_request &= ~REQ_EXIT
        if self.stop_reason is not None:
            return self.stop_reason
        return RunStop(StopKind.STEP)

    # ---- reset ----------------------------------------------------------------------
    def reset(self) -> None:
        """A system reset (triple fault, keyboard-controller reset, port 0xCF9...).

        The CPUs return to their power-on state, translations and TLBs are
        dropped, the devices' reset hooks run (``bus.reset_devices``), and the ``on_reset``
        hooks run — the loader uses one to boot the kernel again, as a BIOS
        would (RAM is kept, as on a PC).
        """
        for cpu in self.cpus:
            cpu.reset()
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

    def load_multiboot(
        self, path: str, append: str = "", initrd: str | None = None, kernel_name: str | None = None
    ) -> BootInfo:
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

    def load_kernel(
        self, path: str, append: str = "", initrd: str | None = None, kernel_name: str | None = None
    ) -> object:
        """QEMU's ``-kernel path -append append -initrd initrd``: a Linux bzImage, a multiboot v1 or
        v2 kernel, or an ELF with a PVH entry note (``boot/linux.py``'s ``boot_kernel`` decides, in
        QEMU's order).  Returns the loader's info; raises ``MultibootError`` (or a subclass) with the
        one line that says why the file cannot be booted."""
        from .boot.linux import boot_kernel

        return boot_kernel(self, path, append, initrd, kernel_name)

    def stats(self) -> dict[str, int]:
        out: dict[str, int] = {}
        out.update(self.cpu.tlb.stats.as_dict())
        out.update(self.tbs.stats)
        out.update(self.translator.stats)
        out["icount"] = self.cpu.icount
        return out
