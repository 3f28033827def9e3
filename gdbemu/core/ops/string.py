"""String instructions: movs stos lods cmps scas ins outs, alone or under rep/repe/repne.

Theory of operation
-------------------
Without a rep prefix a string instruction is an ordinary instruction: the
emitter writes straight-line code (loads and stores through the inline TLB
fast path, then ESI/EDI stepped by +-size according to EFLAGS.DF read at run
time), following the emitter's rules for precise exceptions.  ins/outs are
the exception: port I/O always goes through a helper.

With a rep prefix the instruction is a loop whose every iteration is,
architecturally, one step that can be interrupted: "A repeating string
operation can be suspended by an exception or interrupt. ... The source and
destination registers point to the next string elements to be operated on,
the EIP register points to the string instruction, and the ECX register has
the value it held following the last successful iteration" (Intel SDM
vol. 2B, REP/REPE/REPZ/REPNE/REPNZ).  So the emitted code calls one helper,
``H.str_op``, which runs the loop over the whole guest state and keeps its
progress (ECX, ESI, EDI, and EAX for lods or the flags for cmps/scas) in
local variables that always describe *completed* iterations.  Whatever
leaves the helper -- normal completion, a #PF from the k-th access, an
SMCRestart raised before a store into the running TB -- writes that progress
back to ``cpu.regs`` first (a ``finally`` clause).  The emitted code then has
to keep it: the TB's exception handler rewrites ``cpu.regs`` from the
generated code's locals, so the call is wrapped in ``try/except`` that
reloads the locals from ``cpu.regs`` before re-raising (``_call_helper``).
This is why the rep forms do not follow emit.py's rule 1 (which assumes an
instruction either completes or changes nothing).

Speed: the loop runs in chunks that stay inside one page of the source and
one page of the destination (and do not wrap the 16/32-bit offset).  For a
chunk the helper looks the pages up once in the TLB; when neither tag
carries a flag bit (softmmu/tlb.py: no TLB_NOTDIRTY, TLB_WATCHPOINT,
TLB_MMIO, TLB_DISCARD_WRITE) the chunk is done with one slice operation on
guest RAM -- a copy for movs, a pattern fill for stos, a numpy compare for
cmps/scas.  A flag means the page needs to see the individual accesses (a
store into translated code must invalidate TBs, a watchpoint must see its
byte, a device its register), so one element is done through the softmmu
slow paths ``cpu.softmmu.load/store`` and the chunk is re-evaluated (the
first store into a code page usually unprotects it, so the rest can go
fast again).  This is QEMU's and the SDM's "fast-string operation" (vol. 1,
7.3.9.3) without its relaxed store ordering: every result is exactly the
element-by-element one, including overlapping movs (a forward movsb with
destination = source + 1 replicates the first byte, which a memmove would
not do).

Each iteration counts as one instruction (``cpu.icount``), as QEMU counts
them under ``-icount``: a rep is bounded by the slice's instruction budget
like any loop, and a deadline can fall between two iterations; a rep with
ECX = 0 counts one.  The instruction stops early, with EIP still on it and
the registers describing the completed iterations, when the budget is spent,
when ``cpu.interrupt_request`` becomes set (a device, the debugger) or when
``cpu.watch_hit`` is set by a watchpoint; the helper then returns the EIP to
resume at and the emitted code leaves the TB (see ``_Rep.run``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...softmmu.memory import RAM
from ...softmmu.tlb import ACCESS_READ, ACCESS_WRITE, PAGE_MASK, PAGE_SIZE, TLB_FLAGS_MASK, TLB_MASK
from .. import flags as F  # noqa: N812 - the project-wide alias
from ..cpu import CPU, EAX, ECX, EDI, EDX, ES, ESI, HF_CS64, HF_TF
from ..decode import MEM, MMX, OTHER, XMM, Insn
from ..emit import MASK, Emitter
from ..exceptions import UD
from ..helpers import helper
from . import op
from .system import check_io

if TYPE_CHECKING:
    import numpy as np

# Kinds of string instruction, passed to the helper as literals.
MOVS, STOS, LODS, CMPS, SCAS, INS, OUTS = range(7)
_KIND = {"movs": MOVS, "stos": STOS, "lods": LODS, "cmps": CMPS, "scas": SCAS, "ins": INS, "outs": OUTS}
_ELEM = {"b": 1, "w": 2, "d": 4, "q": 8}
_DTYPE = {1: "u1", 2: "<u2", 4: "<u4", 8: "<u8"}  # numpy dtypes, as strings: numpy is imported on first use

# Repeat modes passed to the helper: none (single ins/outs), rep/repe (F3), repne (F2).
MODE_NONE, MODE_REPE, MODE_REPNE = 0, 1, 2

_LEGACY_PREFIXES = frozenset({0xF0, 0xF2, 0xF3, 0x2E, 0x36, 0x3E, 0x26, 0x64, 0x65, 0x66, 0x67})

# Which path the rep helper took, for tests and `monitor info` style reports.
STATS = {"rep_calls": 0, "bulk_chunks": 0, "bulk_bytes": 0, "slow_elements": 0, "interrupted": 0}


def rep_prefix(insn: Insn) -> int:
    """0, 0xF3 or 0xF2: the last F2/F3 among the legacy prefixes.

    Read from the raw bytes because capstone drops the F2 prefix of ``f2 a5``
    (it takes it for the SSE ``movsd`` opcode prefix); the last of several
    repeat prefixes is the one that counts, as capstone itself reports it.
    """
    rep = 0
    for byte in insn.raw:
        if byte not in _LEGACY_PREFIXES:
            break
        if byte in (0xF2, 0xF3):
            rep = byte
    return rep


def _src_seg(insn: Insn) -> tuple[int, bool]:
    """The source segment (DS unless overridden) and whether it was an explicit override.

    Only the DS:ESI operand honours a segment prefix; ES:EDI cannot be
    overridden (SDM vol. 1, 3.7.4), and capstone already reports it that way.
    """
    for o in insn.ops:
        if o.kind == MEM and o.base == 6:
            return o.seg, o.seg_override
    return 3, False


# ---- emitters ---------------------------------------------------------------------
def _addr(e: Emitter, seg: int, reg: int, force: bool = False) -> str:
    """Emit the linear address seg:(E)SI / seg:(E)DI into a temporary."""
    off = e.reg(reg, e.addrsize)
    base = e.seg_base(seg, force)
    a = e.tmp("a")
    e.emit(f"{a} = {off}" if base is None else f"{a} = {base} + {off} & {e.lin_mask:#x}")
    return a


def _delta(e: Emitter, size: int) -> str:
    """Emit the per-element step: -size when EFLAGS.DF is set, else +size (read at run time)."""
    d = e.tmp("d")
    e.emit(f"{d} = {-size} if cpu.eflags & {F.DF:#x} else {size}")
    return d


def _advance(e: Emitter, reg: int, delta: str) -> None:
    """Step (E)SI or (E)DI; a 16-bit address size wraps SI/DI and keeps the high half."""
    m = MASK[e.addrsize]
    e.write_reg(reg, e.addrsize, f"({e.reg(reg, 8 if e.wide else 4)} + {delta} & {m:#x})")


def _call_helper(e: Emitter, kind: int, size: int, seg: int, mode: int) -> None:
    """Run the whole (repeated) instruction in ``H.str_op`` and keep its partial progress.

    ``sync_call`` hands the helper the full state; the helper commits the
    completed iterations to ``cpu.regs``/``cpu.cc_*`` even when it raises.
    The TB's exception handler would overwrite that from the locals, so the
    locals are reloaded from the CPU before the exception propagates.  A
    non-None result is the EIP to resume at: the instruction itself when it
    stopped early, the next one when it finished but something (a
    watchpoint hit, a pending request) wants the TB left now.
    """
    r = e.tmp("r")
    with e.block("try:"):
        e.sync_call("str_op", str(kind), str(size), str(e.addrsize), str(seg), str(mode), e.next_eip(), result=r)
    with e.block("except BaseException:"):
        e.reload_regs()
        e.emit("cc_op, cc_dst, cc_src, cc_src2 = cpu.cc_op, cpu.cc_dst, cpu.cc_src, cpu.cc_src2")
        e.emit("raise")
    with e.block(f"if {r} is not None:"):
        e.exit(2, r)


def _string(e: Emitter) -> None:
    """Emitter shared by the whole family; dispatches on the capstone name."""
    insn = e.insn
    if any(o.kind in (OTHER, XMM, MMX) for o in insn.ops):
        # capstone also names SSE2 movsd/cmpsd (xmm operands) this way: no SSE here.
        e.fault(UD)
        e.ended = True
        return
    name = insn.name
    kind = _KIND[name[:-1]]
    size = _ELEM[name[-1]]
    seg, override = _src_seg(insn)
    rep = rep_prefix(insn)
    if kind in (INS, OUTS):
        _call_helper(e, kind, size, seg, MODE_REPNE if rep == 0xF2 else MODE_REPE if rep else MODE_NONE)
        if kind == OUTS:
            e.end()  # like out: a device (the exit port) may want the loop back at once
        return
    if rep:
        _call_helper(e, kind, size, seg, MODE_REPNE if rep == 0xF2 else MODE_REPE)
        return
    m = MASK[size]
    if kind == MOVS:
        v = e.load_mem(_addr(e, seg, ESI, override), size)
        e.store_mem(_addr(e, ES, EDI), size, v)
        d = _delta(e, size)
        _advance(e, ESI, d)
        _advance(e, EDI, d)
    elif kind == STOS:
        e.store_mem(_addr(e, ES, EDI), size, e.reg(EAX, size))
        _advance(e, EDI, _delta(e, size))
    elif kind == LODS:
        v = e.load_mem(_addr(e, seg, ESI, override), size)
        d = _delta(e, size)
        e.write_reg(EAX, size, v)
        _advance(e, ESI, d)
    elif kind == CMPS:
        # ES:EDI is read first, as QEMU does (the order decides which #PF wins).
        b = e.load_mem(_addr(e, ES, EDI), size)
        a = e.load_mem(_addr(e, seg, ESI, override), size)
        r = e.tmp("r")
        e.emit(f"{r} = {a} - {b} & {m:#x}")
        d = _delta(e, size)
        _advance(e, ESI, d)
        _advance(e, EDI, d)
        e.set_cc(F.SUB, size, r, b)
    else:  # SCAS
        b = e.load_mem(_addr(e, ES, EDI), size)
        r = e.tmp("r")
        e.emit(f"{r} = {e.reg(EAX, size)} - {b} & {m:#x}")
        _advance(e, EDI, _delta(e, size))
        e.set_cc(F.SUB, size, r, b)


# flags: movs/stos/lods/ins/outs leave them alone; cmps/scas write them, but a
# rep form with ECX = 0 leaves them unchanged, hence "rw" (conservative for
# dead-flag elimination).  They all have a memory operand, so none is "pure"
# in the translator's sense (every one is an exception point).
op(
    *("movsb", "movsw", "movsd", "movsq", "stosb", "stosw", "stosd", "stosq"),
    *("lodsb", "lodsw", "lodsd", "lodsq", "insb", "insw", "insd"),
    flags="",
)(_string)
op("cmpsb", "cmpsw", "cmpsd", "cmpsq", "scasb", "scasw", "scasd", "scasq", flags="rw")(_string)
op("outsb", "outsw", "outsd", flags="", end=True)(_string)


# ---- the helper ------------------------------------------------------------------
class _Rep:
    """One execution of a (repeated) string instruction.

    ``n``, ``si``, ``di`` (and ``val`` for lods, ``cc`` for cmps/scas) always
    describe the iterations completed so far; ``commit`` writes them to the
    CPU.  Every access happens before the state of its iteration is updated,
    so a fault in iteration k leaves exactly the state after k-1 iterations.
    """

    __slots__ = (
        "cpu",
        "kind",
        "size",
        "amask",
        "mode",
        "n",
        "cap",
        "si",
        "di",
        "step",
        "sbase",
        "dbase",
        "mmu",
        "desc",
        "soft",
        "ram",
        "val",
        "cc",
        "done",
        "lmask",
        "ran",
    )

    def __init__(self, cpu: CPU, kind: int, size: int, addrsize: int, seg: int, mode: int) -> None:
        regs = cpu.regs
        self.cpu = cpu
        self.kind = kind
        self.size = size
        self.amask = MASK[addrsize]
        self.mode = mode
        self.n = regs[ECX] & self.amask if mode else 1
        self.ran = self.n != 0  # with a zero count no register is written (not even zero-extended)
        self.cap = self.n  # iterations this call may still do (run() bounds it by the budget)
        self.si = regs[ESI] & self.amask
        self.di = regs[EDI] & self.amask
        self.step = -size if cpu.eflags & F.DF else size
        # The helper always adds the bases: without HF_ADDSEG those of DS/ES/SS are zero
        # (in 64-bit code compute_hflags mirrors them as zero).
        self.sbase = cpu.seg_base[seg]
        self.dbase = cpu.seg_base[ES]
        self.lmask = 0xFFFFFFFFFFFFFFFF if cpu.hflags & HF_CS64 else 0xFFFFFFFF
        self.mmu = cpu.mmu_idx
        self.desc = cpu.tlb.d[self.mmu]
        self.soft = cpu.softmmu
        self.ram = cpu.mem.ram
        self.val: int | None = None
        self.cc: tuple[int, int, int] | None = None
        self.done = False  # cmps/scas: the repe/repne condition ended the loop

    # ---- state ----------------------------------------------------------------
    def commit(self) -> None:
        """Write the completed iterations' state to the CPU (also on the way out of a fault)."""
        cpu = self.cpu
        regs = cpu.regs
        # A 16-bit address size keeps the rest of the register; 32-bit writes zero-extend
        # (64-bit mode), so only the registers the instruction steps are written.
        keep = 0xFFFFFFFFFFFF0000 if self.amask == 0xFFFF else 0
        kind = self.kind
        if self.ran:
            if self.mode:
                regs[ECX] = regs[ECX] & keep | self.n
            if kind in (MOVS, LODS, CMPS, OUTS):
                regs[ESI] = regs[ESI] & keep | self.si
            if kind in (MOVS, STOS, CMPS, SCAS, INS):
                regs[EDI] = regs[EDI] & keep | self.di
        if self.val is not None:
            regs[EAX] = self.val if self.size >= 4 else regs[EAX] & ~MASK[self.size] | self.val
        if self.cc is not None:
            cpu.cc_op, cpu.cc_dst, cpu.cc_src = self.cc
            cpu.cc_src2 = 0

    def advance(self, k: int, src: bool, dst: bool) -> None:
        self.n -= k
        self.cap -= k
        delta = k * self.step
        if src:
            self.si = (self.si + delta) & self.amask
        if dst:
            self.di = (self.di + delta) & self.amask

    def compared(self, a: int, b: int) -> None:
        """Record cmp a, b (the flags of the last compared pair) and apply repe/repne."""
        m = MASK[self.size]
        self.cc = (F.cc_op(F.SUB, self.size), (a - b) & m, b)
        if (a == b) != (self.mode == MODE_REPE):
            self.done = True

    # ---- chunking -------------------------------------------------------------
    def room(self, base: int, off: int) -> tuple[int, int]:
        """(linear address, elements from ``off`` on that stay in its page and offset range).

        0 elements when the element at ``off`` itself straddles a page or the
        offset wrap: that one goes through the slow path, which handles both.
        """
        size = self.size
        lin = (base + off) & self.lmask
        po = lin & (PAGE_SIZE - 1)
        if po + size > PAGE_SIZE or off + size - 1 > self.amask:
            return lin, 0
        if lin >> 47 and lin >> 47 != 0x1FFFF and self.lmask >> 32:
            return lin, 0  # non-canonical: the slow path raises the fault
        if self.step > 0:
            return lin, min((PAGE_SIZE - po) // size, (self.amask + 1 - off) // size)
        return lin, min(po // size + 1, off // size + 1)

    def page(self, lin: int, access: int) -> int | None:
        """RAM offset of ``lin`` when its page may be accessed in bulk, else None.

        Looks the page up (filling the TLB: this is where a #PF is raised,
        before anything of the chunk is done) and refuses any tag with a
        flag bit: such a page must see every access (SMC, watchpoints, MMIO, ROM).
        """
        desc = self.desc
        index = (lin >> 12) & TLB_MASK
        tags = desc.write if access == ACCESS_WRITE else desc.read
        tag = tags[index]
        if tag & PAGE_MASK != lin & PAGE_MASK:  # also rejects the invalid tag (-1)
            index = self.soft.lookup(self.mmu, lin, access)
            tag = tags[index]
        if tag & TLB_FLAGS_MASK:
            return None
        return lin + desc.addend[index]

    def span(self, r: int, k: int) -> int:
        """Lowest RAM offset of k elements starting at offset r in the direction of travel."""
        return r if self.step > 0 else r - (k - 1) * self.size

    def chunk(self) -> bool:
        """Do as many iterations as one slice operation can; False if none could be done so."""
        kind = self.kind
        size = self.size
        if kind == MOVS:
            ls, ks = self.room(self.sbase, self.si)
            ld, kd = self.room(self.dbase, self.di)
            k = min(self.cap, ks, kd)
            if not k:
                return False
            rs = self.page(ls, ACCESS_READ)
            rd = self.page(ld, ACCESS_WRITE)
            if rs is None or rd is None:
                return False
            _copy(self.ram, self.span(rs, k), self.span(rd, k), k * size, size, self.step > 0)
            self.advance(k, True, True)
        elif kind == STOS:
            ld, k = self.room(self.dbase, self.di)
            k = min(self.cap, k)
            if not k:
                return False
            rd = self.page(ld, ACCESS_WRITE)
            if rd is None:
                return False
            lo = self.span(rd, k)
            pattern = (self.cpu.regs[EAX] & MASK[size]).to_bytes(size, "little")
            self.ram[lo : lo + k * size] = pattern * k
            self.advance(k, False, True)
        elif kind == LODS:
            ls, k = self.room(self.sbase, self.si)
            k = min(self.cap, k)
            if not k:
                return False
            rs = self.page(ls, ACCESS_READ)
            if rs is None:
                return False
            last = rs + (k - 1) * self.step  # only the last element loaded survives
            self.val = int.from_bytes(self.ram[last : last + size], "little")
            self.advance(k, True, False)
        elif kind == SCAS:
            ld, k = self.room(self.dbase, self.di)
            k = min(self.cap, k)
            if not k:
                return False
            rd = self.page(ld, ACCESS_READ)
            if rd is None:
                return False
            acc = self.cpu.regs[EAX] & MASK[size]
            elems = self._elements(rd, k)
            k = self._scan(elems == acc, k)
            self.compared(acc, int(elems[k - 1]))
            self.advance(k, False, True)
        elif kind == CMPS:
            ld, kd = self.room(self.dbase, self.di)
            ls, ks = self.room(self.sbase, self.si)
            k = min(self.cap, kd, ks)
            if not k:
                return False
            rd = self.page(ld, ACCESS_READ)  # ES:EDI first, as the single-step path
            rs = self.page(ls, ACCESS_READ)
            if rd is None or rs is None:
                return False
            a = self._elements(rs, k)
            b = self._elements(rd, k)
            k = self._scan(a == b, k)
            self.compared(int(a[k - 1]), int(b[k - 1]))
            self.advance(k, True, True)
        else:  # ins/outs: every element is an I/O access
            return False
        STATS["bulk_chunks"] += 1
        STATS["bulk_bytes"] += k * size
        return True

    def _elements(self, r: int, k: int) -> np.ndarray:
        """The k elements at RAM offset r, in the order the instruction visits them."""
        lo = self.span(r, k)
        arr = self.cpu.mem.np[lo : lo + k * self.size].view(_DTYPE[self.size])
        return arr if self.step > 0 else arr[::-1]

    def _scan(self, equal: np.ndarray, k: int) -> int:
        """Iterations done out of k, given per element whether the compared pair is equal."""
        stop = ~equal if self.mode == MODE_REPE else equal
        i = int(stop.argmax())
        return i + 1 if stop[i] else k

    # ---- one element through the softmmu slow paths ------------------------------
    def one(self) -> None:
        """One iteration with ordinary accesses (flagged pages, straddling elements, I/O)."""
        STATS["slow_elements"] += 1
        kind = self.kind
        size = self.size
        soft = self.soft
        mmu = self.mmu
        ls = (self.sbase + self.si) & self.lmask
        ld = (self.dbase + self.di) & self.lmask
        if kind == MOVS:
            soft.store(mmu, ld, size, soft.load(mmu, ls, size))
            self.advance(1, True, True)
        elif kind == STOS:
            soft.store(mmu, ld, size, self.cpu.regs[EAX] & MASK[size])
            self.advance(1, False, True)
        elif kind == LODS:
            self.val = soft.load(mmu, ls, size)
            self.advance(1, True, False)
        elif kind == SCAS:
            b = soft.load(mmu, ld, size)
            self.compared(self.cpu.regs[EAX] & MASK[size], b)
            self.advance(1, False, True)
        elif kind == CMPS:
            b = soft.load(mmu, ld, size)
            a = soft.load(mmu, ls, size)
            self.compared(a, b)
            self.advance(1, True, True)
        elif kind == INS:
            # Make sure the store cannot fault before reading the port (a port
            # read has side effects and must not be repeated by the restart).
            soft.lookup(mmu, ld, ACCESS_WRITE)
            if (ld & (PAGE_SIZE - 1)) + size > PAGE_SIZE:
                soft.lookup(mmu, (ld + size - 1) & self.lmask, ACCESS_WRITE)
            value = self.cpu.events.io_read(self.cpu.regs[EDX] & 0xFFFF, size) & MASK[size]
            soft.store(mmu, ld, size, value)
            self.advance(1, False, True)
        else:  # OUTS
            value = soft.load(mmu, ls, size)
            self.cpu.events.io_write(self.cpu.regs[EDX] & 0xFFFF, size, value)
            self.advance(1, True, False)

    # ---- the loop ---------------------------------------------------------------
    def run(self, next_eip: int) -> int | None:
        """Run to completion or to a stop; return None, or the EIP the TB must leave to.

        Each iteration is one instruction of the budget, as under QEMU's
        ``-icount`` (a rep iteration there is one execution of the
        instruction): the call does at most what is left of the slice
        (``cpu.icount_deadline - cpu.icount``; at least one iteration) and
        counts every iteration in ``cpu.icount``, the TB counting the last
        one as it counts any instruction.  Iterations remaining past the
        budget stay for the next slice (EIP on the instruction, ECX/ESI/EDI
        describing the completed ones), so interrupts and timer deadlines
        land between iterations at the same place every run.  A call that
        counted more than one instruction leaves the TB: its remaining
        instructions (or its tier-2 loop) were sized for the budget before
        the extra count.
        """
        cpu = self.cpu
        # Single-stepping (EFLAGS.TF, or the debugger's step): one iteration, then a trap with
        # EIP still on the instruction while iterations remain (SDM vol. 1, 7.3.9.3; QEMU does so).
        single = cpu.single_step or cpu.hflags & HF_TF
        start = self.n
        self.cap = min(start, max(1, cpu.icount_deadline - cpu.icount))
        stopped = False
        raised = True  # left by an exception: the TB does not count this instruction
        try:
            while self.cap and not self.done:
                stop: object
                if not single and self.chunk():
                    stop = cpu.interrupt_request
                else:
                    self.one()
                    # A watchpoint hit by this iteration's access ends the instruction here.
                    stop = cpu.interrupt_request or cpu.watch_hit or single
                if stop:
                    stopped = True
                    break
            raised = False
        finally:
            self.commit()
            done = start - self.n
            cpu.icount += done if raised else max(done - 1, 0)
        if self.n and not self.done:
            STATS["interrupted"] += 1
            return cpu.eip  # still on this instruction (set by sync_call)
        if stopped or done > 1:
            return next_eip
        return None


def _copy(ram: RAM, slo: int, dlo: int, nb: int, size: int, forward: bool) -> None:
    """movs of nb bytes in RAM, both ranges given by their lowest offset; element-exact.

    Copying element after element in the direction of travel differs from a
    snapshot copy (memmove) only when the destination lies ahead of the
    source by d < nb bytes: later elements then read bytes earlier ones
    wrote.  For d >= size the result is the first d bytes read repeated
    with period d (anchored at the start for DF=0, at the end for DF=1);
    for d < size (movsw/movsd by 1..3 bytes) the elements are copied one by one.
    """
    d = dlo - slo if forward else slo - dlo
    if not 0 < d < nb:
        ram[dlo : dlo + nb] = ram[slo : slo + nb]
    elif d >= size:
        if forward:
            ram[dlo : dlo + nb] = (ram[slo : slo + d] * (nb // d + 1))[:nb]
        else:
            pattern = ram[slo + nb - d : slo + nb] * (nb // d + 1)
            ram[dlo : dlo + nb] = pattern[len(pattern) - nb :]
    else:
        offsets = range(0, nb, size) if forward else range(nb - size, -1, -size)
        for off in offsets:
            ram[dlo + off : dlo + off + size] = ram[slo + off : slo + off + size]


@helper
def str_op(cpu: CPU, kind: int, size: int, addrsize: int, seg: int, mode: int, next_eip: int) -> int | None:
    """Execute a string instruction whose iterations need the whole machine.

    Used for every rep form and for single ins/outs.  ``mode`` is MODE_NONE
    (one iteration, ECX untouched), MODE_REPE or MODE_REPNE (repe/repne for
    cmps/scas, plain rep for the others).  ins/outs check the I/O permission
    first, even with ECX = 0 (SDM vol. 1, 19.5; QEMU does the same).  Returns
    None to continue in the TB, or the EIP to leave the TB with.
    """
    if kind == INS or kind == OUTS:
        check_io(cpu, cpu.regs[EDX] & 0xFFFF, size)
    STATS["rep_calls"] += 1
    return _Rep(cpu, kind, size, addrsize, seg, mode).run(next_eip)
