"""Translation: guest instructions -> Python source -> a callable TB, in two tiers.

Theory of operation
-------------------
A TB is decoded once (``decode.py``) and runs until a control transfer, an
instruction that changes the translation state (``ENDS_TB``), the end of a
second physical page, or ``MAX_INSNS``.  Then:

**Tier 1** (new and cold code, pages the guest keeps rewriting): each
instruction's source is rendered as a small function ``_f(K)`` whose
per-instance constants (immediates, displacements, EIPs) are read from the
tuple ``K``.  The compiled code object is cached by its *text*, so every
``add eax, [ebp+disp]`` in the guest shares one ``compile()``; a TB is a list
of (function, K) pairs run by a small loop.  Building a TB costs a dict
lookup per instruction once the shapes are warm.

**Tier 2** (hot code: ``TIER2_THRESHOLD`` executions): the whole TB becomes
one function.  GPRs and lazy flags live in locals, the TLB compare is inline,
flag computations that a later instruction overwrites are dropped (only
across instructions that cannot fault, so the flags are exact at every
exception point), and a TB that jumps back to its own start loops inside the
function while the instruction budget lasts.

Both tiers leave the same state behind: registers and flags written back at
every exit, ``cpu.eip`` and ``cpu.icount`` exact; on an exception the state as
at the start of the faulting instruction (the handler rewrites the locals,
which hold exactly that because op emitters write registers last).
"""

from __future__ import annotations

import functools
import re
import types
from collections.abc import Callable
from typing import Any

from ..softmmu.memory import PhysMemory
from ..softmmu.tlb import PAGE_MASK
from . import flags as F
from . import ops as ops_pkg
from .breakpoint import Breakpoints
from .cpu import CPU, GPR_NAMES, HF_CS32, HF_CS64, HF_MMU_SHIFT, HF_TF, Namespace
from .decode import IMM, MEM, DecodeError, Decoder, Insn
from .emit import FLAG_USE, MASK, Emitter, Exit, code_mask
from .exceptions import PF, UD, GuestFault
from .smc import emit_guard_tier2, guard_entry, guard_miss, plan_guards
from .tb import TB, TBCache

# Per instruction of a tier-1 TB: its shape function and the constants K it reads.
Shape = tuple[Callable[[tuple[int, ...]], int | None], tuple[int, ...]]
CCStatic = tuple[int, int] | None  # what the translator knows of cc_op at an instruction
DynImm = tuple[int, int, bool] | None  # a run-time immediate: (paddr, size, signed)

MAX_INSNS = 64
TIER2_THRESHOLD = 64
# A page whose TBs were invalidated this often stays in tier 1 (SMC hot page).
SMC_HOT_PAGE = 4
# Instructions whose emitters read their immediate only through Emitter.load,
# so it can be read from RAM at run time on SMC-hot pages.
DYN_IMM_OPS = frozenset({"mov", "add", "sub", "and", "or", "xor", "cmp", "test", "adc", "sbb", "push"})

_REGS = "eax, ecx, edx, ebx, esp, ebp, esi, edi"
_XREGS = "r8, r9, r10, r11, r12, r13, r14, r15"
_XREG_RE = re.compile(r"\br(8|9|1[0-5])\b")


def _xregs_used(lines: list[Any]) -> list[int]:
    """R8..R15 (as 8..15) named in a 64-bit TB's code: only those are loaded from RX."""
    text = "\n".join(line.eip if isinstance(line, Exit) else line for line in lines)
    return sorted({int(n) for n in _XREG_RE.findall(text)})


def _xload(used: list[int], indent: str) -> str:
    if len(used) == 8:
        return f"{indent}{_XREGS} = RX"
    return f"{indent}{', '.join(f'r{r}' for r in used)}, = {', '.join(f'RX[{r - 8}]' for r in used)},"


def _xstore(used: list[int], indent: str) -> str:
    if len(used) == 8:
        return f"{indent}RX[:] = {_XREGS}"
    return f"{indent}{', '.join(f'RX[{r - 8}]' for r in used)}, = {', '.join(f'r{r}' for r in used)},"


ops_pkg.load_all()
OPS = ops_pkg.OPS
PURE = ops_pkg.PURE
ENDS_TB = ops_pkg.ENDS_TB


LOCKABLE = frozenset(
    {
        "add",
        "adc",
        "and",
        "btc",
        "btr",
        "bts",
        "cmpxchg",
        "cmpxchg8b",
        "cmpxchg16b",
        "dec",
        "inc",
        "neg",
        "not",
        "or",
        "sbb",
        "sub",
        "xor",
        "xadd",
        "xchg",
    }
)


# Direct near jmp/call (E9, EB, E8): decoding may follow them inside the TB's page (decode_block).
_DIRECT = frozenset({0xE8, 0xE9, 0xEB})


def direct_target(insn: Insn | None) -> int | None:
    """The target EIP of a direct near ``jmp``/``call`` (as control.py computes it), else None."""
    if (
        insn is None
        or insn.opcode[0] not in _DIRECT
        or insn.name not in ("jmp", "call")
        or insn.lock
        or len(insn.ops) != 1
        or insn.ops[0].kind != IMM
    ):
        return None
    return insn.ops[0].imm & MASK[insn.opsize]


def followed(insns: list[Insn | None], k: int) -> int | None:
    """The EIP instruction k jumps to when decoding followed it (the next instruction is its target)."""
    if k + 1 >= len(insns):
        return None
    nxt = insns[k + 1]
    target = direct_target(insns[k])
    return target if target is not None and nxt is not None and nxt.addr == target else None


def _ud(e: Emitter) -> None:
    e.fault(UD)
    e.ended = True


class Translator:
    """Builds TBs for one machine; owns the decoders and the tier-1 shape cache.

    Given the physical memory code is read from, the TB cache (its SMC-hot
    pages and counters) and the breakpoint marks.
    """

    def __init__(self, mem: PhysMemory, tbs: TBCache, breakpoints: Breakpoints) -> None:
        self.mem = mem
        self.tbs = tbs
        self.breakpoints = breakpoints
        self.decoders = {16: Decoder(16), 32: Decoder(32), 64: Decoder(64)}
        self.shape_code: dict[str, types.CodeType] = {}  # source text -> code object
        self.shape_fn: dict[tuple[int, str], types.FunctionType] = {}  # (id(ns), text) -> function
        # (id(insn), id(ns), hflags, cc_static in) -> (insn, (fn, K), cc_static out, jump targets):
        # retranslating a block whose instructions did not change re-emits nothing.
        self.insn_fn: dict[tuple[object, ...], tuple[Insn | None, Shape, CCStatic, dict[int, int]]] = {}
        self._dyn_plan: dict[int, list[DynImm]] = {}
        # (paddr, eip, cs_base, hflags) -> raw bytes a guarded slot was seen to hold (core/smc.py).
        self.guard_seen: dict[tuple[int, int, int, int], list[bytes]] = {}
        # Tests set this to 1 or 2 to build every TB in that tier from the
        # start (the differential suite checks both code generators).
        self.force_tier: int | None = None
        # Follow direct jmp/call inside the TB's page (decode_block); tests of the TB cache's
        # own mechanics switch it off to get one TB per straight run.
        self.follow_jumps = True
        # Set by build() from the CPU: op keys its model lacks the feature for (#UD).
        self.disabled_ops: frozenset[str] = frozenset()
        self.stats = {"decoded": 0, "shapes": 0, "tier1_built": 0, "tier2_built": 0}

    def decoder_for(self, hflags: int) -> Decoder:
        return self.decoders[64 if hflags & HF_CS64 else 32 if hflags & HF_CS32 else 16]

    # ---- decoding a block -----------------------------------------------------
    def decode_block(
        self, cpu: CPU, eip: int, cs_base: int, hflags: int, max_insns: int
    ) -> tuple[list[Insn | None], tuple[int, ...], tuple[tuple[int, int], ...], list[int]]:
        """Decode instructions from cs_base+eip; return (insns, phys pages, ranges).

        Raises GuestFault(#PF) when the first instruction cannot be fetched;
        later unfetchable instructions just end the block before them.
        """
        mmu_idx = (hflags >> HF_MMU_SHIFT) & 3
        long = bool(hflags & HF_CS64)
        decoder = self.decoders[64 if long else 32 if hflags & HF_CS32 else 16]
        mmu = cpu.softmmu
        ram = self.mem
        insns: list[Insn | None] = []
        pages: list[int] = []
        ranges: dict[int, list[tuple[int, int]]] = {}
        vpages: list[int] = []
        addr_mask = 0xFFFFFFFFFFFFFFFF if long else 0xFFFFFFFF if hflags & HF_CS32 else 0xFFFF
        lin_mask = 0xFFFFFFFFFFFFFFFF if long else 0xFFFFFFFF
        if hflags & HF_TF:
            max_insns = 1
        marks = self.breakpoints.marks
        cur_vpage = -1
        cur_ppage = 0
        insn_paddrs: list[int] = []
        ud_eips: list[int] = []
        # A direct jmp/call whose target is on the TB's (one) page is followed: decoding goes on at
        # the target, and the jump costs no TB exit.  Such a TB then stays inside that page, so its
        # pages, the breakpoint check and the TB-cache bookkeeping see one page as before.
        follow_ok = self.follow_jumps and not hflags & HF_TF
        first_vpage = -1
        did_follow = False
        seen: set[int] = set()
        phys_pc = 0
        while len(insns) < max_insns:
            linear = (cs_base + eip) & lin_mask
            vpage = linear & PAGE_MASK
            if did_follow and vpage != first_vpage:
                break
            if vpage != cur_vpage:
                try:
                    cur_ppage = mmu.code_paddr(mmu_idx, linear) & PAGE_MASK
                except GuestFault:
                    if not insns:
                        raise
                    break
                cur_vpage = vpage
            paddr = cur_ppage | (linear & 0xFFF)
            ppage = cur_ppage
            if not insns:
                first_vpage = vpage
                phys_pc = paddr
            if ppage not in pages:
                if len(pages) == 2:
                    break
                pages.append(ppage)
                vpages.append(vpage)
            avail = 4096 - (linear & 0xFFF)
            window = ram.read(paddr, min(15, avail))
            second: int | GuestFault | None = None
            if avail < 15:
                try:
                    p2 = mmu.code_paddr(mmu_idx, (linear + avail) & lin_mask)
                    second = p2
                    window += ram.read(p2, 15 - avail)
                except GuestFault as fault:
                    second = fault
            try:
                insn = decoder.decode(window, eip)
            except DecodeError:
                if isinstance(second, GuestFault) and len(window) < 15:
                    # Truncated by an unmapped page: the fetch faults, not #UD.
                    if not insns:
                        raise second from None
                    break
                insns.append(None)  # marks #UD here
                insn_paddrs.append(-1)
                ud_eips.append(eip)
                ranges.setdefault(ppage, []).append((paddr, paddr + 1))
                break
            if insn.size > avail:
                if did_follow:
                    break  # a TB that followed a jump stays in its page
                if isinstance(second, GuestFault):
                    if not insns:
                        raise second
                    break
                assert second is not None  # avail < 15 here, so the next page was looked up
                p2page = second & PAGE_MASK
                if p2page not in pages:
                    if len(pages) == 2:
                        break
                    pages.append(p2page)
                    vpages.append((linear + avail) & PAGE_MASK)
                ranges.setdefault(ppage, []).append((paddr, ppage + 4096))
                ranges.setdefault(p2page, []).append((p2page, p2page + insn.size - avail))
                insn_paddrs.append(-1)
            else:
                ranges.setdefault(ppage, []).append((paddr, paddr + insn.size))
                insn_paddrs.append(paddr)
            insns.append(insn)
            seen.add(eip)
            if insn.name not in OPS:
                break
            if insn.name in ENDS_TB:
                target = direct_target(insn) if follow_ok and len(pages) == 1 and insn_paddrs[-1] >= 0 else None
                if (
                    target is None
                    or target in seen
                    or len(insns) >= max_insns
                    or ((cs_base + target) & lin_mask) & PAGE_MASK != first_vpage
                    or (marks and ((cs_base + target) & lin_mask) in marks)
                    # A page the guest has rewritten code on keeps one TB per straight run:
                    # its guarded and dyn-imm plans (core/smc.py) work per run.
                    or self.tbs.smc_pages.get(cur_ppage)
                ):
                    break
                did_follow = True
                eip = target
                continue
            eip = (eip + insn.size) & addr_mask
            if marks and ((cs_base + eip) & lin_mask) in marks:
                break  # a breakpoint starts its own TB
        self.stats["decoded"] += len(insns)
        merged: list[tuple[int, int]] = []
        for page in pages:
            # The runs of code on the page (one for straight-line code; a followed jump may
            # leave a gap, which is not the TB's: a store there invalidates nothing).
            runs: list[tuple[int, int]] = []
            for r in sorted(ranges.get(page, [])):
                if runs and r[0] <= runs[-1][1]:
                    runs[-1] = (runs[-1][0], max(runs[-1][1], r[1]))
                else:
                    runs.append(r)
            merged.extend(runs)
        self._phys_pc = phys_pc
        self._insn_paddrs = insn_paddrs
        self._ud_eip = ud_eips[0] if ud_eips else None
        return insns, tuple(pages), tuple(merged), vpages

    # ---- building -------------------------------------------------------------
    def translate(
        self,
        cpu: CPU,
        eip: int,
        cs_base: int,
        hflags: int,
        max_insns: int = MAX_INSNS,
        tier: int = 1,
        check_bp: bool = True,
    ) -> TB:
        insns, pages, ranges, vpages = self.decode_block(cpu, eip, cs_base, hflags, max_insns)
        tb = TB(eip, cs_base, hflags, self._phys_pc if ranges else 0)
        # A replay of an instruction already past its breakpoint check does not check again.
        tb.bp = check_bp and ((cs_base + eip) & _lin_mask(hflags)) in self.breakpoints.marks
        tb.pages = pages
        tb.ranges = ranges
        tb.insns = insns
        tb.n_insns = len(insns)
        # An undecodable instruction (None, always last) raises #UD at its own EIP.
        ud_eip = self._ud_eip if self._ud_eip is not None else eip
        tb.eips = tuple(i.addr if i is not None else ud_eip for i in insns)
        last = insns[-1]
        tb.next_eip = last.next & code_mask(hflags) if last is not None else ud_eip
        tb.size = sum(i.size for i in insns if i is not None)
        tb.vpages = tuple(vpages)
        tb.insn_paddrs = tuple(self._insn_paddrs)
        smc = self.tbs.smc_pages
        if any(smc.get(p, 0) >= SMC_HOT_PAGE for p in pages):
            self._plan_dyn_imm(cpu, tb)
            if max_insns > 1 and not hflags & HF_TF:  # not a one-instruction replay or single step
                plan_guards(self.tbs, tb, ENDS_TB, DYN_IMM_OPS, self.mem.is_ram)
        self.build(cpu, tb, self.force_tier or tier)
        return tb

    def _plan_dyn_imm(self, cpu: CPU, tb: TB) -> None:
        """On an SMC-hot page, read immediates from RAM at run time instead of baking them in.

        Guests that rewrite code mostly rewrite constants.  An instruction
        whose emitter takes its immediate through ``Emitter.load`` (the
        names in DYN_IMM_OPS) gets a run-time read of the immediate field,
        and that field becomes a *hole* of the TB: a store inside it changes
        no translation, so it invalidates nothing and needs no
        retranslation, and the result is still exact because the code reads
        the current bytes.  A store to any other byte invalidates as usual.
        """
        ram_size = self.mem.ram_size
        holes = []
        plan = []
        for insn, paddr in zip(tb.insns, tb.insn_paddrs, strict=True):
            entry = None
            if (
                insn is not None
                and paddr >= 0
                and insn.imm_size
                and insn.name in DYN_IMM_OPS
                and paddr + insn.size <= ram_size
                and self.mem.is_ram(paddr)
            ):
                imms = [o for o in insn.ops if o.kind == IMM]
                if len(imms) == 1:
                    field = insn.raw[insn.imm_off : insn.imm_off + insn.imm_size]
                    imm = imms[0].imm
                    if imm == int.from_bytes(field, "little", signed=True):
                        entry = (paddr + insn.imm_off, insn.imm_size, True)
                    elif imm == int.from_bytes(field, "little"):
                        entry = (paddr + insn.imm_off, insn.imm_size, False)
            plan.append(entry)
            if entry is not None:
                holes.append((entry[0], entry[0] + entry[1]))
        if holes:
            tb.holes = tuple(holes)
            tb.dyn = True
            self._dyn_plan[id(tb)] = plan

    def _dyn(self, tb: TB, k: int) -> DynImm:
        plan = self._dyn_plan.get(id(tb)) if tb.dyn else None
        return plan[k] if plan is not None else None

    def build(self, cpu: CPU, tb: TB, tier: int) -> None:
        ns = cpu.namespaces[(tb.hflags >> HF_MMU_SHIFT) & 3]
        self.disabled_ops = cpu.disabled_ops  # the CPU model's missing features (core/cpuid.py)
        if tier == 2:
            tb.fn = self._build_tier2(cpu, tb, ns)
            tb.tier = 2
            tb.fast = not tb.hflags & HF_TF
            self.stats["tier2_built"] += 1
        else:
            tb.fn = self._build_tier1(cpu, tb, ns)
            tb.tier = 1
            tb.fast = False
            self.stats["tier1_built"] += 1

    def _chainable(self, tb: TB, targets: dict[int, int]) -> None:
        vpages = {(tb.cs_base + e) & PAGE_MASK for e in tb.eips}
        for slot, target in targets.items():
            if slot < 2 and ((tb.cs_base + target) & PAGE_MASK) in vpages:
                tb.chain[slot] = True

    @staticmethod
    def _liveness(insns: list[Insn | None]) -> list[bool]:
        """flags_live[k]: are the flags written by insn k read later (or at an exception/exit)?"""
        n = len(insns)
        live_after = [True] * n
        live = True
        for k in range(n - 1, -1, -1):
            live_after[k] = live
            insn = insns[k]
            if insn is None:
                live = True
                continue
            reads, writes_all = FLAG_USE.get(insn.name, (True, False))
            pure = insn.name in PURE and not any(o.kind == MEM for o in insn.ops)
            if not pure:
                live = True  # an exception point: the flags must be exact here
            elif reads:
                live = True
            elif writes_all:
                live = False
        return live_after

    def _emit_insn(self, e: Emitter, insn: Insn | None) -> None:
        e.insn = insn  # type: ignore[assignment]  # None only for #UD, whose emitter reads no insn
        e.may_fault = False
        e.ended = False
        if insn is None:
            _ud(e)
            return
        emitter = OPS.get(insn.name)
        if insn.name in self.disabled_ops:
            emitter = None
        elif insn.name == "nop" and insn.opcode[0] == 0x0F and "0f18-0f1f" in self.disabled_ops:
            emitter = None  # a hint NOP on a pre-P6 CPU model (core/cpuid.py HINT_NOP)
        elif insn.name in ("lahf", "sahf") and e.hflags & HF_CS64 and "lahf64" in self.disabled_ops:
            emitter = None  # 64-bit mode without CPUID LAHF-SAHF (core/cpuid.py LAHF64)
        if emitter is None or (insn.lock and (insn.name not in LOCKABLE or not any(o.kind == MEM for o in insn.ops))):
            # LOCK is #UD unless the instruction is a read-modify-write of memory (SDM vol. 2, LOCK).
            _ud(e)
            return
        emitter(e)
        if insn.name in ENDS_TB and not e.ended:
            e.ended = True

    # ---- tier 2 ----------------------------------------------------------------
    def _build_tier2(self, cpu: CPU, tb: TB, ns: Namespace) -> Callable[[], int]:
        insns = tb.insns
        n = len(insns)
        e = Emitter(tb.hflags, tier1=False)
        e.tb_start = tb.pc
        last = insns[-1]
        # Only a block that ends in a direct branch back to its start loops -- and not one
        # that starts at a breakpoint mark: its prologue (the breakpoint check, a target-side
        # condition) must run on every iteration, so each iteration re-enters the TB.
        e.loop_ok = not tb.bp
        guards = {g[0]: g for g in tb.guards}
        # A guarded slot (core/smc.py) may hold any variant: it reads every flag.
        live = self._liveness([None if k in guards else i for k, i in enumerate(insns)])
        body_start = len(e.lines)
        targets: dict[int, int] = {}
        e.jump_targets = targets
        for k, insn in enumerate(insns):
            e.index = k
            e.flags_live = live[k]
            if k in guards:
                emit_guard_tier2(self, e, tb, k, guards[k][1], guards[k][2])
                continue
            e.dyn_imm = self._dyn(tb, k)
            e.follow = followed(insns, k)
            e.lines.append(f"{_INSN_MARK}{k}")  # where instruction k starts (the fault table)
            self._emit_insn(e, insn)
            if e.follow is not None:
                e.ended = False  # a followed jmp/call: the next instruction is its target
            elif e.ended:
                break
        if not e.ended:
            e.index = n - 1
            e.exit(0, repr(tb.next_eip))
            targets[0] = tb.next_eip
        loops = any(isinstance(x, Exit) and x.slot == -1 for x in e.lines)
        self._chainable(tb, targets)
        body = e.lines[body_start:]
        if loops:
            # Worth their cost (~0.1 ms a TB) where the body runs many times per call.
            body = _drop_dead_cc(_reuse_slot(_propagate(body)))
        src = self._render_tier2(tb, e, body, loops)
        code = compile(src, f"<tb {tb.cs_base:#x}:{tb.pc:#x}>", "exec")
        loc: dict[str, Any] = {}
        exec(code, dict(ns, _GM=guard_miss(self, tb)) if guards else ns, loc)
        fn: Callable[[], int] = loc["_tb"]
        fn.source = src  # type: ignore[attr-defined]
        self.tbs.stats["tb_compiled"] += 1
        del last
        return fn

    def _writeback(self, e: Emitter, indent: str) -> list[str]:
        out = []
        written = sorted(r for r in e.written if r < 8)
        if len(written) > 3:
            out.append(f"{indent}R[:] = {_REGS}")
        else:
            for r in written:
                out.append(f"{indent}R[{r}] = {GPR_NAMES[r]}")
        xwritten = sorted(r for r in e.written if r >= 8)
        if len(xwritten) > 3:
            out.append(_xstore(xwritten, indent))  # only the loaded ones are locals
        else:
            for r in xwritten:
                out.append(f"{indent}RX[{r - 8}] = {GPR_NAMES[r]}")
        if e.cc_written:
            out.append(f"{indent}cpu.cc_op, cpu.cc_dst, cpu.cc_src, cpu.cc_src2 = cc_op, cc_dst, cc_src, cc_src2")
        return out

    def _render_tier2(self, tb: TB, e: Emitter, body: list[str | Exit], loops: bool) -> str:
        """The TB's function.  Which instruction faulted comes from the line that raised.

        No per-instruction bookkeeping runs on the fast path: the handler
        maps the traceback's line number in this function to the instruction
        that line belongs to (``_LN``, one entry per source line).
        """
        n = tb.n_insns
        extra = 1 if loops else 0  # body is nested one level deeper inside `while True:`
        # Only a looping TB gains: binding costs a little on every call.
        used = _globals_used(body) if loops else set()
        binds = ", ".join(f"{g}={g}" for g in _BINDABLE if g in used)
        out = [
            f"def _tb({binds}):",
            f"    {_REGS} = R",
            "    cc_op, cc_dst, cc_src, cc_src2 = cpu.cc_op, cpu.cc_dst, cpu.cc_src, cpu.cc_src2",
        ]
        # The TLB tables are rebound when a CR3 write switches address spaces (softmmu/tlb.py
        # switch_context): a default argument would keep the old space's tables, so a looping
        # TB takes them as locals on entry (a CR3 write never happens inside a TB).
        rebound = [g for g in _REBOUND if g in used]
        if rebound:
            out.append(f"    {', '.join('_' + g for g in rebound)}, = {', '.join(rebound)},")
            pattern = re.compile(r"\b(" + "|".join(rebound) + r")\b")
            body = [pattern.sub(r"_\1", line) if isinstance(line, str) else line for line in body]
        xused = _xregs_used(body) if e.long else []
        if xused:
            out.insert(2, _xload(xused, "    "))
        if tb.bp:
            # A breakpoint mark: checked before anything runs (state is exactly the TB entry's).
            out.append(f"    H.bp_check(cpu, {(tb.cs_base + tb.pc) & _lin_mask(tb.hflags)})")
        if loops:
            # Iterations the budget allows (at least one: the exec loop admitted the TB);
            # _k counts them down, so (_k0 - _k) * n instructions are done at an iteration's start.
            out.append(f"    _k0 = _k = (cpu.icount_deadline - cpu.icount) // {n} or 1")
        out.append("    try:")
        if loops:
            out.append("        while True:")
        owner = [0] * len(out)  # instruction of each line so far (the prologue: the first)
        pad = "    " * (1 + extra)
        ic = f"(_k0 - _k) * {n} + " if loops else ""
        k = 0
        for line in body:
            if isinstance(line, str) and line.startswith(_INSN_MARK):
                k = int(line[len(_INSN_MARK) :])
                continue
            if isinstance(line, str) and "@IC@" in line:
                line = line.replace("@IC@", ic)
            if isinstance(line, Exit):
                ind = "    " * (line.indent + 1 + extra)
                if line.slot == -1:
                    out.append(f"{ind}_k -= 1")
                    out.append(f"{ind}if _k: continue")
                    out.extend(self._writeback(e, ind))
                    out.append(f"{ind}cpu.eip = {line.eip}")
                    out.append(f"{ind}cpu.icount += _k0 * {n}")
                    out.append(f"{ind}return 0")
                else:
                    out.extend(self._writeback(e, ind))
                    out.append(f"{ind}cpu.eip = {line.eip}")
                    out.append(f"{ind}cpu.icount += {ic}{line.done}")
                    out.append(f"{ind}return {max(line.slot, 0)}")
            else:
                out.append(pad + line)
            owner.extend([k] * (len(out) - len(owner)))
        out.append("    except BaseException as _e:")
        out.append(f"        _i = {(0, *owner)!r}[_e.__traceback__.tb_lineno]")
        out.append(f"        R[:] = {_REGS}")
        if xused:
            out.append(_xstore(xused, "        "))
        out.append("        cpu.cc_op, cpu.cc_dst, cpu.cc_src, cpu.cc_src2 = cc_op, cc_dst, cc_src, cc_src2")
        out.append(f"        cpu.eip = {tb.eips!r}[_i]")
        out.append(f"        cpu.icount += {ic}_i")
        out.append("        raise")
        return "\n".join(out) + "\n"

    # ---- tier 1 ----------------------------------------------------------------
    def _build_tier1(self, cpu: CPU, tb: TB, ns: Namespace) -> Callable[[], int]:
        insns = tb.insns
        fns: list[Shape] = []
        targets: dict[int, int] = {}
        cc_static: CCStatic = None
        cache = self.insn_fn
        guards = {g[0]: g for g in tb.guards}
        for k, insn in enumerate(insns):
            if k in guards:
                fns.append(guard_entry(self, cpu, tb, k, guards[k][1], guards[k][2], ns, cc_static))
                cc_static = None  # a variant may leave other flags
                continue
            dyn = self._dyn(tb, k)
            # k is part of the key: exits and helper calls bake the instruction's
            # position in its TB into the code (icount bookkeeping).
            follow = followed(insns, k)
            key = (id(insn), id(ns), tb.hflags, cc_static, dyn, k, follow)
            hit = cache.get(key)
            if hit is not None and hit[0] is insn:
                fns.append(hit[1])
                cc_static = hit[2]
                targets.update(hit[3])
                continue
            e = Emitter(tb.hflags, tier1=True)
            e.cc_static = cc_static
            e.index = k
            e.dyn_imm = dyn
            e.follow = follow
            self._emit_insn(e, insn)
            fns.append(self._shape(e, ns))
            if len(cache) > 500_000:
                cache.clear()
            cache[key] = (insn, fns[-1], e.cc_static, dict(e.jump_targets))
            targets.update(e.jump_targets)
            cc_static = e.cc_static
        self._chainable(tb, targets)
        if tb.insns and tb.insns[-1] is not None and tb.insns[-1].name not in ENDS_TB:
            tb.chain[0] = ((tb.cs_base + tb.next_eip) & PAGE_MASK) in {(tb.cs_base + x) & PAGE_MASK for x in tb.eips}
        return _tier1_runner(cpu, tb, fns, ((tb.cs_base + tb.pc) & _lin_mask(tb.hflags)) if tb.bp else None)

    def _shape(self, e: Emitter, ns: Namespace) -> Shape:
        lines = [
            "def _f(K):",
            f"    {_REGS} = R",
            "    cc_op, cc_dst, cc_src, cc_src2 = cpu.cc_op, cpu.cc_dst, cpu.cc_src, cpu.cc_src2",
        ]
        xused = _xregs_used(e.lines) if e.long else []
        if xused:
            lines.insert(2, _xload(xused, "    "))
        for line in e.lines:
            if isinstance(line, Exit):
                ind = "    " * line.indent
                lines.extend(self._writeback(e, ind))
                lines.append(f"{ind}cpu.eip = {line.eip}")
                lines.append(f"{ind}return {max(line.slot, 0)}")
            else:
                lines.append(line)
        lines.extend(self._writeback(e, "    "))
        src = "\n".join(lines) + "\n"
        key = (id(ns), src)
        fn = self.shape_fn.get(key)
        if fn is None:
            code = self.shape_code.get(src)
            if code is None:
                loc: dict[str, Any] = {}
                exec(compile(src, "<shape>", "exec"), {}, loc)
                code = loc["_f"].__code__
                self.shape_code[src] = code
                self.stats["shapes"] += 1
            fn = types.FunctionType(code, ns, "_f")
            fn.source = src  # type: ignore[attr-defined]
            self.shape_fn[key] = fn
        return fn, tuple(e.consts)


# ---- tier 2: copy propagation over a TB's source lines ---------------------------------------

_TEMP = r"_[a-z]+\d+"
# Marks the start of instruction k in a tier-2 body (a comment: the optimiser passes ignore it).
_INSN_MARK = "#@I"
# Namespace names a tier-2 function binds as default arguments (fast locals): objects that
# stay the same for the CPU's life (core/cpu.CPU._namespace builds the dict once).
_BINDABLE = (
    "R",
    "RX",
    "M8",
    "M16",
    "M32",
    "M64",
    "LD",
    "ST",
    "LDS",
    "STS",
    "SB",
    "UL16",
    "UL32",
    "UL64",
    "US16",
    "US32",
    "US64",
)
# Namespace names a looping tier-2 function reads into locals on entry: the CPU rebinds them
# when it switches TLB tables (core/cpu.CPU._tlb_switched), so they cannot be defaults.
_REBOUND = ("RT", "WT", "AD")
_NAME_RE = re.compile(r"\b[A-Z][A-Z0-9]*\b")


def _globals_used(body: list[str | Exit]) -> set[str]:
    found: set[str] = set()
    for line in body:
        found.update(_NAME_RE.findall(line.eip if isinstance(line, Exit) else line))
    found.update(("R",))
    return found


_COPY_RE = re.compile(rf"^(\s*)({_TEMP}) = ([A-Za-z_]\w*)$")
_ASSIGN_TO_TEMP_RE = re.compile(rf"^(\s*)({_TEMP}) = (.+)$")
_TUPLE_TARGET_RE = re.compile(r"^\s*([\w ]+,[\w, ]*?)\s*=(?!=)")
_REG_NAMES = frozenset(GPR_NAMES)
_TEMP_FULL_RE = re.compile(_TEMP)
_TEMP_ASSIGN_RE = re.compile(rf"(?<![\w.])({_TEMP})\b\s*(?:[-+*/%&|^]|<<|>>)?:?=(?!=)")


_IDENT_RE = re.compile(r"(?<![\w.])[A-Za-z_]\w*")
_TEMP_TOKEN_RE = re.compile(rf"(?<![\w.]){_TEMP}\b")
_LONE_EQ_RE = re.compile(r"(?<![=!<>:])=(?!=)")
_WALRUS_RE = re.compile(r"([A-Za-z_]\w*)\s*:=")
_AUGMENTED_RE = re.compile(r"(?<![\w.])([A-Za-z_]\w*)\s*(?:[-+*/%&|^@]|<<|>>|//|\*\*)=(?!=)")
_ANY_TARGET_RE = re.compile(r"\b(for|while|del|global|nonlocal|lambda|with|import|as)\b|;")
_SUBSCRIPT_RE = re.compile(r"\[[^\[\]]*\]")


@functools.lru_cache(maxsize=1 << 16)
def _line_info(line: str) -> tuple[frozenset[str], frozenset[str] | None]:
    """(names a line reads or writes, names it may assign; None: it may assign anything).

    Conservative: a name wrongly counted as assigned only forgoes an optimisation.
    """
    ids = frozenset(_IDENT_RE.findall(line))
    if _ANY_TARGET_RE.search(line):
        return ids, None
    assigned = set(_WALRUS_RE.findall(line))
    assigned.update(_AUGMENTED_RE.findall(line))
    m = _LONE_EQ_RE.search(line)
    if m is not None:
        lhs = line[: m.start()]
        if lhs.lstrip().startswith(("if ", "elif ", "else")) and ":" in lhs:
            lhs = lhs.rsplit(":", 1)[1]  # the statement after a one-line if / else
        while True:
            stripped = _SUBSCRIPT_RE.sub("", lhs)
            if stripped == lhs:
                break
            lhs = stripped
        assigned.update(_IDENT_RE.findall(lhs))
    return ids, frozenset(assigned)


def _assigns(name: str, line: str) -> bool:
    """Could ``line`` assign ``name``?"""
    if name not in line:
        return False
    assigned = _line_info(line)[1]
    return assigned is None or name in assigned


def _uses(name: str, text: str) -> bool:
    return name in text and name in _line_info(text)[0]


def _text(line: str | Exit) -> str:
    return line if isinstance(line, str) else line.eip


def _substitute(lines: list[str | Exit], start: int, temp: str, repl: str, kill: str, stop: int) -> bool:
    """Replace ``temp`` by ``repl`` in lines[start:], in place; False (nothing changed)
    if a use comes after ``kill`` is reassigned."""
    changes: list[tuple[int, str | Exit]] = []

    def sub(m: re.Match[str]) -> str:
        return repl if m.group(0) == temp else m.group(0)

    killed = False
    for j in range(start, min(stop + 1, len(lines))):  # stop: at or after the last use
        line = lines[j]
        text = _text(line)
        if _uses(temp, text):
            if killed:
                return False
            if isinstance(line, Exit):
                changes.append((j, Exit(line.indent, line.slot, _TEMP_TOKEN_RE.sub(sub, line.eip), line.done)))
            else:
                changes.append((j, _TEMP_TOKEN_RE.sub(sub, line)))
        if isinstance(line, str) and _assigns(kill, line):
            killed = True
    for j, new in changes:
        lines[j] = new
    return True


def _propagate(body: list[str | Exit]) -> list[str | Exit]:
    """Drop the copies op emitters make for safety where nothing can tell.

    Two rewrites, each applied only when the temporary is assigned once and
    the name it stands for is not reassigned before the temporary's last use
    (checked on the text, conservatively):

    * ``_a1 = esi`` ... ``f(_a1)``  ->  ``f(esi)`` (the copy line goes);
    * ``_v2 = <expr>`` directly followed by ``eax = _v2``  ->  ``eax = <expr>``,
      later uses of ``_v2`` reading ``eax``.  The register is written by the
      same statement as before, so a fault in ``<expr>`` leaves it as it was.
    """
    counts: dict[str, int] = {}  # assignments of each temporary (2: leave it alone)
    # Index of each temporary's last use; lines only ever go, so indices only move down.
    last: dict[str, int] = {}
    for j, line in enumerate(body):
        ids, assigned = _line_info(_text(line))
        for name in ids:
            if name[0] == "_" and name[-1].isdigit():
                last[name] = j
                if assigned is None:
                    counts[name] = 2
        if assigned and isinstance(line, str):
            tuple_target = _TUPLE_TARGET_RE.match(line) is not None
            for name in assigned:
                if name[0] == "_" and name[-1].isdigit():
                    counts[name] = counts.get(name, 0) + (2 if tuple_target else 1)
    body = list(body)
    i = 0
    while i < len(body):
        line = body[i]
        if isinstance(line, str):
            m = _COPY_RE.match(line)
            if m and counts.get(m.group(2)) == 1 and (m.group(3) in _REG_NAMES or _TEMP_FULL_RE.fullmatch(m.group(3))):
                temp, src = m.group(2), m.group(3)
                if _substitute(body, i + 1, temp, src, src, last.get(temp, len(body))):
                    if src in last:
                        last[src] = max(last[src], last.get(temp, 0))
                    del body[i]
                    i = max(i - 1, 0)  # the line before may now pair with the next one
                    continue
            ma = _ASSIGN_TO_TEMP_RE.match(line)
            nxt = body[i + 1] if i + 1 < len(body) else None
            if ma and counts.get(ma.group(2)) == 1 and isinstance(nxt, str):
                indent, temp, expr = ma.groups()
                reg, eq, rhs = nxt[len(indent) :].partition(" = ")
                if nxt.startswith(indent) and eq and rhs == temp and reg in _REG_NAMES:
                    if _substitute(body, i + 2, temp, reg, reg, last.get(temp, len(body))):
                        body[i : i + 2] = [f"{indent}{reg} = {expr}"]
                        continue
        i += 1
    return body


_SLOT_RE = re.compile(r"\(_p := ([A-Za-z_]\w*) >> 12 & 255\)")


def _reuse_slot(body: list[str | Exit]) -> list[str | Exit]:
    """A second access to the same address in a straight run of lines reuses its TLB slot ``_p``.

    ``(_p := esi >> 12 & 255)`` runs whether the first access took the fast
    path or not, so ``_p`` is that address's slot until ``_p`` or the
    address is assigned again; any change of indentation (a block, an exit)
    ends the run.  The tag compare itself is never skipped.
    """
    out: list[str | Exit] = []
    last: tuple[str, int] | None = None  # (address name, indentation) that _p is the slot of
    for line in body:
        if not isinstance(line, str):
            out.append(line)
            last = None
            continue
        if line.startswith(_INSN_MARK):
            out.append(line)
            continue
        indent = len(line) - len(line.lstrip())
        if last is not None and last[1] != indent:
            last = None
        if last is not None:
            line = line.replace(f"(_p := {last[0]} >> 12 & 255)", "_p")
        if "_p :=" in line:
            found = _SLOT_RE.findall(line)
            last = (found[-1], indent) if len(found) == 1 and line.count("_p :=") == 1 else None
        elif last is not None and ("_p" in line.replace("_p]", "")):
            last = None  # anything else touching _p
        if last is not None and _assigns(last[0], line):
            last = None
        out.append(line)
    return out


_CC_STORE_RE = re.compile(r"^(\s*)(cc_op, cc_dst, cc_src(?:, cc_src2)?) = ")
_CC_NAME_RE = re.compile(r"\bcc_(op|dst|src|src2)\b")
# A statement that can neither raise nor read the flags: an assignment of arithmetic on
# locals and literals (no subscripts, attributes, calls, division; shifts by literals only).
_SAFE_RE = re.compile(
    r"^\s*[a-z_]\w* = (?:[a-z_]\w*|0x[0-9a-f]+|\d+|[-+*&|^~<>=!() ]|<< ?\d+|>> ?\d+|\bif\b|\belse\b|\bnot\b)*$"
)


def _drop_dead_cc(body: list[str | Exit]) -> list[str | Exit]:
    """Drop a lazy-flags store that a later one overwrites before anything can observe it.

    Between the two only statements that cannot raise (an exception point
    must see exact flags) and do not name the flags may run, all in the
    same block; the later store must assign every variable the first did.
    """
    out = list(body)
    i = 0
    while i < len(out):
        line = out[i]
        m = _CC_STORE_RE.match(line) if isinstance(line, str) else None
        if m is None:
            i += 1
            continue
        indent, names = m.group(1), m.group(2).split(", ")
        dead = False
        for j in range(i + 1, len(out)):
            nxt = out[j]
            if not isinstance(nxt, str):
                break
            if nxt.startswith(_INSN_MARK):
                continue
            if len(nxt) - len(nxt.lstrip()) != len(indent):
                break
            m2 = _CC_STORE_RE.match(nxt)
            if m2 is not None:
                rhs = nxt[m2.end() :]
                dead = set(names) <= set(m2.group(2).split(", ")) and not _CC_NAME_RE.search(rhs)
                break
            if _CC_NAME_RE.search(nxt) or not _SAFE_RE.match(nxt):
                break
        if dead:
            del out[i]
        else:
            i += 1
    return out


def _lin_mask(hflags: int) -> int:
    """The linear-address mask of code with these hflags (64-bit code: 64 bits)."""
    return 0xFFFFFFFFFFFFFFFF if hflags & HF_CS64 else 0xFFFFFFFF


def _tier1_runner(cpu: CPU, tb: TB, fns: list[Shape], bp_linear: int | None = None) -> Callable[[], int]:
    """The tier-1 TB: run each instruction function; exact eip/icount on every way out."""
    eips = tb.eips
    n = len(fns)
    next_eip = tb.next_eip
    if bp_linear is not None:
        inner = _tier1_runner(cpu, tb, fns)
        check = cpu.breakpoints.check

        def run_marked() -> int:
            check(cpu, bp_linear)  # raises before anything runs: cpu.eip is still the TB's
            return inner()

        return run_marked

    def run() -> int:
        k = 0
        try:
            for f, K in fns:
                s = f(K)
                if s is not None:
                    cpu.icount += k + 1
                    return s
                k += 1
        except BaseException:
            cpu.eip = eips[k]
            cpu.icount += k
            raise
        cpu.eip = next_eip
        cpu.icount += n
        return 0

    return run


__all__ = ["Translator", "TIER2_THRESHOLD", "MAX_INSNS", "PF", "F"]
