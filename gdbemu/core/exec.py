"""The exec loop: find the TB for the current state, run it, act on how it left.

Per TB: follow the chained successor when the last exit was a direct jump
(slot 0/1) and the successor is still valid, else look the TB up through the
per-CPU jump cache (keyed by EIP, CS base, hflags; dropped on any TLB flush),
then the physical TB cache, else translate.  A TB that would run past the
instruction budget is replaced by an uncached, shorter one, so the budget is
met exactly: interrupts and stops land on the same instruction every run
(DESIGN.md invariant 5).

How a TB can leave:
* returns a slot: 0/1 direct jump (chainable), 2 anything else;
* raises GuestFault: deliver it through the IDT (interrupts.py);
* raises SMCRestart: a store was about to rewrite the running TB; run the
  current instruction alone in an uncached TB, then carry on;
* returns after setting ``cpu.interrupt_request``: leave the loop (device
  exit port, hlt, hardware interrupt pending) — checked between TBs.

The loop reaches the rest of the machine only through its ``ExecContext``
(memory, TB cache, translator, breakpoints, events sink, trace hooks, and
how to deliver an exception); there is no back-pointer to the Machine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from ..softmmu.memory import PhysMemory
from ..softmmu.tlb import PAGE_MASK
from . import interrupts
from .breakpoint import Breakpoints, DebugStop
from .cpu import CPU, HF_MMU_SHIFT, HF_TF, REQ_EXIT, REQ_HARD, REQ_NMI
from .events import MachineEvents
from .exceptions import DB, GuestFault, InstructionRestart, SMCRestart
from .tb import TB, TBCache
from .trace import TraceHooks
from .translate import MAX_INSNS, SMC_HOT_PAGE, TIER2_THRESHOLD, Translator

__all__ = ["REQ_EXIT", "REQ_HARD", "REQ_NMI", "ExecContext", "cpu_exec", "run_one_uncached", "tb_lookup", "watched"]


@dataclass
class ExecContext:
    """Everything the exec loop uses besides the CPU (one per machine)."""

    mem: PhysMemory
    tbs: TBCache
    translator: Translator
    breakpoints: Breakpoints
    events: MachineEvents[CPU]
    trace: TraceHooks[CPU]
    # How an architectural exception is delivered (through the IDT); tests may
    # give their own to observe faults without a guest handler.
    deliver_exception: Callable[[CPU, GuestFault], None] = interrupts.raise_exception
    # Chain direct jumps across pages (unlinked at every TLB flush of the CPU that
    # made the link): sound with one CPU only, since the links are shared.
    cross_page_chain: bool = True


# Cross-page links kept at most (they are dropped at a TLB flush, or all at once past this).
XLINKS_MAX = 65536


def tb_gen_code(
    ctx: ExecContext,
    cpu: CPU,
    eip: int,
    cs_base: int,
    hflags: int,
    max_insns: int = MAX_INSNS,
    check_bp: bool = True,
) -> TB:
    """Translate a TB (the ``tb_built`` trace hook sees it)."""
    tb = ctx.translator.translate(cpu, eip, cs_base, hflags, max_insns=max_insns, check_bp=check_bp)
    hook = ctx.trace.tb_built
    if hook is not None:
        hook(cpu, tb)
    return tb


def tb_lookup(ctx: ExecContext, cpu: CPU) -> TB:
    """Find or build the TB for the CPU's current state (tb_lookup + tb_gen_code).

    The jump cache is keyed by EIP alone (an int hashes far faster than a
    tuple of three); a hit counts only when the TB's CS base and hflags are
    the CPU's, so a TB for the same EIP in another mode just replaces it.
    """
    eip = cpu.eip
    cs_base = cpu.seg_base[1]
    hflags = cpu.hflags
    tb = cpu.jmp_cache.get(eip)
    if tb is not None and tb.valid and tb.hflags == hflags and tb.cs_base == cs_base:
        return tb
    mmu_idx = (hflags >> HF_MMU_SHIFT) & 3
    phys_pc = cpu.softmmu.code_paddr(mmu_idx, cs_base + eip)
    tbs = ctx.tbs
    tb = tbs.lookup(phys_pc, eip, cs_base, hflags)
    if tb is not None and len(tb.pages) == 2:
        # The second page must still map the frame it did when the TB was built.
        try:
            second = cpu.softmmu.code_paddr(mmu_idx, tb.vpages[1]) & PAGE_MASK
        except GuestFault:
            second = None
        if second != tb.pages[1]:
            tbs.invalidate(tb)
            tb = None
    if tb is None:
        tb = tb_gen_code(ctx, cpu, eip, cs_base, hflags)
        tbs.stats["tb_built"] += 1
        tbs.link(tb)
    cpu.jmp_cache[eip] = tb
    return tb


def _hot_smc(tbs: TBCache, tb: TB) -> bool:
    """Delay compiling a TB on a page the guest keeps rewriting: it may be invalidated soon.

    A TB with run-time immediates is stable against constant rewrites; any
    other TB there is compiled only once it has survived 8x the threshold.
    """
    if tb.dyn or tb.guards:  # guarded slots (core/smc.py) are stable too
        return False
    smc = tbs.smc_pages
    return tb.execs < 8 * TIER2_THRESHOLD and any(smc.get(page, 0) >= SMC_HOT_PAGE for page in tb.pages)


def run_one_uncached(ctx: ExecContext, cpu: CPU, max_insns: int = 1) -> None:
    """Execute ``max_insns`` instructions from the current state in a throwaway TB."""
    tb = tb_gen_code(ctx, cpu, cpu.eip, cpu.seg_base[1], cpu.hflags, max_insns=max_insns, check_bp=False)
    tb.cacheable = False
    tbs = ctx.tbs
    prev = tbs.current
    tbs.current = tb
    try:
        tb.fn()
    finally:
        tbs.current = prev


def cpu_exec(ctx: ExecContext, cpu: CPU, max_insns: int, single: bool = False) -> bool:
    """Run up to ``max_insns`` instructions, or until ``cpu.interrupt_request`` is set.

    ``single``: the debugger's step — return after the first instruction, or
    right after delivering an exception it raised (the step lands on the
    handler's entry, as on hardware).

    Returns True when the slice ended in an exception storm: ``max_insns``
    deliveries in a row with no instruction retired (a handler that faults
    at once, forever, as the hardware would loop).  The budget of a slice
    bounds its events as well as its instructions, so the caller keeps
    control (polls gdb, ends the run) whatever the guest does.

    Two loops: the outer one does every check (pending requests and the
    interrupt shadow, the budget and its truncated TBs, the exception storm,
    tier counting, the trace hook, single-step traps, lookups and chaining);
    after a TB returns normally the inner one runs the common case alone —
    nothing pending, the successor chained (slot 0/1) or in the jump cache
    (slot 2), compiled (``tb.fast``), within the budget — and hands anything
    else back to the outer loop with the same ``tb`` and ``slot``, which then
    does exactly what it would have done.
    """
    tbs = ctx.tbs
    translator = ctx.translator
    tb_exec = ctx.trace.tb_exec  # -d exec,cpu: None unless tracing
    inner = tb_exec is None  # the inner loop has no trace hook
    xpage = ctx.cross_page_chain
    jc = cpu.jmp_cache
    seg_base = cpu.seg_base
    xlinks = cpu.xlinks

    def deliver(cpu: CPU, fault: GuestFault) -> None:
        watched(ctx, cpu, lambda: ctx.deliver_exception(cpu, fault))

    end = cpu.icount + max_insns
    cpu.icount_deadline = end
    tb: TB | None = None
    slot = 2
    storm = 0  # deliveries since an instruction last retired
    storm_icount = cpu.icount
    try:
        while True:
            req = cpu.interrupt_request
            if req and (req != REQ_HARD or (cpu.eflags & 0x200 and cpu.icount >= cpu.inhibit_irq_until)):
                return False  # something to act on; a masked or shadowed INTR alone is not
            left = end - cpu.icount
            if left <= 0:
                return False
            if cpu.icount != storm_icount:
                storm, storm_icount = 0, cpu.icount
            elif storm >= max_insns:
                return True
            if req and cpu.eflags & 0x200:
                # An interrupt waits for the sti / mov ss shadow to end: run the one
                # shadowed instruction alone, then take it (QEMU's HF_INHIBIT_IRQ TB).
                left = min(left, cpu.inhibit_irq_until - cpu.icount)
            nxt = None
            if slot < 2 and tb is not None:
                nxt = tb.jmp[slot]
                if nxt is not None and not nxt.valid:
                    nxt = tb.jmp[slot] = None
            if nxt is None:
                try:
                    nxt = tb_lookup(ctx, cpu)
                except GuestFault as fault:
                    deliver(cpu, fault)
                    storm += 1
                    if single:
                        return False
                    tb = None
                    slot = 2
                    continue
                if slot < 2 and tb is not None and tb.valid and tb.cacheable:
                    if tb.chain[slot]:
                        tb.jmp[slot] = nxt
                    elif xpage:
                        # A direct jump to another page: chained until the next TLB
                        # flush, which unlinks it (the jump cache's lifetime).
                        if len(xlinks) >= XLINKS_MAX:  # a guest that never flushes its TLB
                            cpu.unlink_cross_page()
                        tb.jmp[slot] = nxt
                        xlinks.append((tb, slot))
            tb = nxt
            if tb.n_insns > left:
                tb = tb_gen_code(ctx, cpu, cpu.eip, cpu.seg_base[1], cpu.hflags, max_insns=left)
                tb.cacheable = False
            elif tb.tier == 1 and translator.force_tier is None:
                tb.execs += 1
                if tb.execs >= TIER2_THRESHOLD and not _hot_smc(tbs, tb):
                    translator.build(cpu, tb, 2)
            if tb_exec is not None:
                tb_exec(cpu, tb)
            tbs.current = tb
            try:
                slot = tb.fn()
                if tb.hflags & HF_TF:
                    _single_step_trap(ctx, cpu)
                    tb = None
                    slot = 2
                elif inner:
                    while True:
                        req = cpu.interrupt_request
                        if req and (req != REQ_HARD or cpu.eflags & 0x200):
                            break
                        if slot < 2:
                            nxt = tb.jmp[slot]
                            if nxt is None or not nxt.valid:
                                break
                        else:
                            nxt = jc.get(cpu.eip)
                            if nxt is None or not nxt.valid or nxt.hflags != cpu.hflags or nxt.cs_base != seg_base[1]:
                                break
                        if not nxt.fast or nxt.n_insns > end - cpu.icount:
                            break
                        tb = nxt
                        tbs.current = tb
                        slot = tb.fn()
            except GuestFault as fault:
                tbs.current = None
                if fault.soft:
                    cpu.icount += 1  # int n / int3 / into retire before delivery (traps)
                deliver(cpu, fault)
                storm += 1
                if single:
                    return False
                tb = None
                slot = 2
            except (SMCRestart, InstructionRestart):
                tbs.current = None
                _replay_one(ctx, cpu)
                if single or cpu.interrupt_request & REQ_EXIT:
                    return False
                tb = None
                slot = 2
            except DebugStop as stop:
                tbs.current = None
                ctx.events.debug_stop(cpu, stop.reason, stop.addr)
                return False
    finally:
        tbs.current = None


def _single_step_trap(ctx: ExecContext, cpu: CPU) -> None:
    """EFLAGS.TF was set when the instruction started: #DB trap after it, DR6.BS (SDM vol. 3, 17.3.1.4).

    Not after MOV SS / POP SS: the trap is held until the next instruction
    has run (SDM vol. 3, 6.8.3), which single-steps and traps itself.
    """
    if cpu.icount < cpu.inhibit_debug_until:
        return
    cpu.dr[6] |= 0x4000
    watched(ctx, cpu, lambda: ctx.deliver_exception(cpu, GuestFault(DB)))


def watched(ctx: ExecContext, cpu: CPU, event: Callable[[], None]) -> None:
    """Run an event that is not an instruction (an exception or interrupt delivery) under the watch replay.

    Its frame pushes go through the softmmu like any store, so a watchpoint
    can stop them; the check raises ``InstructionRestart`` before the
    access.  Delivery writes the frame before committing any register (and
    restarting it rewrites the same bytes), so it is run again from the top
    with ``watch_replay`` set: the hit is recorded, the delivery completes,
    and the stop is reported after it, trap-like, with the CPU on the
    handler's first instruction (the watch replay of ``_replay_one``, for
    the delivery).
    """
    try:
        event()
        return
    except InstructionRestart:
        pass
    cpu.watch_replay = True
    cpu.watch_hit = None
    try:
        event()
    finally:
        cpu.watch_replay = False
    hit = cpu.watch_hit
    cpu.watch_hit = None
    if hit is not None:
        ctx.events.watch_stop(cpu, hit)


def _replay_one(ctx: ExecContext, cpu: CPU) -> None:
    """Re-execute the current instruction alone (SMC, or a watchpoint hit before its access).

    With ``watch_replay`` set, watchpoint checks record the hit and let the
    access complete; the hit is then reported after the instruction
    (trap-like, as x86 data breakpoints are).
    """
    cpu.watch_replay = True
    cpu.watch_hit = None
    try:
        run_one_uncached(ctx, cpu)
    except GuestFault as fault:
        if fault.soft:
            cpu.icount += 1
        cpu.watch_replay = False
        cpu.watch_hit = None
        watched(ctx, cpu, partial(ctx.deliver_exception, cpu, fault))
        return
    finally:
        cpu.watch_replay = False
    hit = cpu.watch_hit
    cpu.watch_hit = None
    if hit is not None:
        ctx.events.watch_stop(cpu, hit)
