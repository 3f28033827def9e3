"""Differential-testing oracle: run an x86 snippet in Unicorn and in gdbemu.

This is a helper module for ``test_differential.py`` (it is not collected by
pytest).  Unicorn (QEMU's TCG front end packaged as a library) serves as the
reference implementation of 32-bit integer instruction semantics; gdbemu is
the system under test.  Both are given the same snippet, the same registers,
flags and memory, run for exactly the snippet, and their final states are
returned so the caller can compare them, masking what the Intel SDM leaves
undefined (see :class:`Undefined`).

Memory layout (physical == linear: flat segments, paging off in both)::

    0x00000-0x10000  code region; the snippet lives at CODE_ADDR (0x1000), and
                     branch targets are kept inside this region
    0x10000-0x30000  data window (DATA_BASE/DATA_SIZE), crosses pages every 4 KiB
    0x40000-0x42000  stack (STACK_BASE/STACK_SIZE), two pages so pushes can
                     straddle a page boundary

Both emulators are reused across cases (building a Machine or a Unicorn
instance costs far more than one instruction), so :class:`DiffRunner` keeps
track of what each emulator's memory currently holds and only rewrites the
pages that differ from the next case's initial image.

16-bit code (``bits=16``): Unicorn runs in real mode (UC_MODE_16) with CS = 0,
SS = 0x4000 (base 0x40000, so SP near 0x1000 is in the stack region) and
DS = ES = FS = GS = ``data_seg`` (0: base 0, so the 32-bit-address forms of the
main table reach the data window; 0x1000: base 0x10000, for 16-bit
addressing such as ``[bx+si]``).  gdbemu runs the same code in a 16-bit
protected-mode code segment (CS.D = 0, SS.B = 0) with the same segment bases
and no IDT, so an exception stops it as a triple fault, as in 32-bit mode.
Neither checks segment limits here (Unicorn, like QEMU, ignores them in real
mode; gdbemu's data segments have 4 GiB limits), and both run at CPL 0, so
the integer semantics compared are those of 16-bit code.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from unicorn import (
    UC_ARCH_X86,
    UC_ERR_EXCEPTION,
    UC_ERR_INSN_INVALID,
    UC_HOOK_INTR,
    UC_MODE_16,
    UC_MODE_32,
    Uc,
    UcError,
)
from unicorn import x86_const as ux

CODE_REGION = (0x0, 0x10000)
CODE_ADDR = 0x1000
DATA_BASE = 0x10000
DATA_SIZE = 0x20000
STACK_BASE = 0x40000
STACK_SIZE = 0x2000
PAGE = 0x1000
RAM_SIZE = 1 << 20
SS16 = 0x40000  # SS base in 16-bit mode (SS = 0x4000)
# Regions whose final contents are compared (the code region is not: no
# snippet writes to it, and leaving it out keeps per-case work small).
REGIONS: tuple[tuple[int, int], ...] = ((DATA_BASE, DATA_SIZE), (STACK_BASE, STACK_SIZE))

REG_NAMES = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi")
EAX, ECX, EDX, EBX, ESP, EBP, ESI, EDI = range(8)

CF, PF, AF, ZF, SF, TF, IF, DF, OF = 0x1, 0x4, 0x10, 0x40, 0x80, 0x100, 0x200, 0x400, 0x800
STATUS_FLAGS = CF | PF | AF | ZF | SF | OF
# The EFLAGS bits the suite controls and compares by default: the six status
# flags and DF.  System flags (IF, TF, IOPL, ...) stay 0 and are not compared.
ARITH_DF = STATUS_FLAGS | DF
EFLAGS_FIXED1 = 0x2  # bit 1 reads as 1
FLAG_NAMES = ((CF, "CF"), (PF, "PF"), (AF, "AF"), (ZF, "ZF"), (SF, "SF"), (DF, "DF"), (OF, "OF"))

_UC_GPRS = (
    ux.UC_X86_REG_EAX,
    ux.UC_X86_REG_ECX,
    ux.UC_X86_REG_EDX,
    ux.UC_X86_REG_EBX,
    ux.UC_X86_REG_ESP,
    ux.UC_X86_REG_EBP,
    ux.UC_X86_REG_ESI,
    ux.UC_X86_REG_EDI,
)
_UC_ALL = (*_UC_GPRS, ux.UC_X86_REG_EIP, ux.UC_X86_REG_EFLAGS)
# Where Unicorn should stop a control-transfer snippet if the instruction
# count did not stop it first: an address no test ever jumps to.
_NEVER = 0x0FFF_FFF0


@dataclasses.dataclass(frozen=True)
class State:
    """An initial machine state.

    ``mem`` holds byte patches (address -> bytes) applied on top of the
    runner's background image of the data window and stack; patches carry the
    values the test deliberately chose (operands), the background supplies
    deterministic random filler everywhere else.
    """

    regs: tuple[int, ...]
    eflags: int
    mem: tuple[tuple[int, bytes], ...] = ()

    def read(self, addr: int, size: int) -> bytes | None:
        """The patched bytes at ``addr`` (None if not all of them were patched)."""
        out = bytearray(size)
        have = [False] * size
        for base, data in self.mem:
            for i in range(size):
                off = addr + i - base
                if 0 <= off < len(data):
                    out[i] = data[off]
                    have[i] = True
        return bytes(out) if all(have) else None


@dataclasses.dataclass
class Undefined:
    """What the Intel SDM leaves undefined for one case; those bits are not compared.

    ``flags``: EFLAGS bits; ``regs``: register index -> undefined bit mask;
    ``mem``: byte address -> undefined bit mask.
    """

    flags: int = 0
    regs: dict[int, int] = dataclasses.field(default_factory=dict)
    mem: dict[int, int] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Outcome:
    """The final state of one emulator after one case.

    If ``faulted`` is true the snippet raised an exception (Unicorn: an
    unhandled CPU exception; gdbemu: a triple fault, since no IDT is set up);
    ``regs`` is then the register file at the fault and the rest is not
    meaningful.  ``error`` is set when the emulator itself failed (a Python
    exception inside gdbemu, or an unexpected Unicorn error).
    """

    faulted: bool
    regs: tuple[int, ...]
    eip: int
    eflags: int
    mem: dict[int, bytes]
    error: str | None = None
    detail: str = ""  # why it faulted (Unicorn: the vector; gdbemu: the stop detail)


def _apply(background: Mapping[int, bytes], patches: Iterable[tuple[int, bytes]]) -> dict[int, bytes]:
    """Build each region's initial image: background with the case's patches."""
    images = {base: bytearray(background[base]) for base, _ in REGIONS}
    for addr, data in patches:
        for base, size in REGIONS:
            if base <= addr and addr + len(data) <= base + size:
                images[base][addr - base : addr - base + len(data)] = data
                break
        else:
            raise ValueError(f"memory patch at {addr:#x}+{len(data)} is outside the data window and stack")
    return {base: bytes(img) for base, img in images.items()}


def _changed_pages(current: bytes | None, wanted: bytes) -> Iterable[tuple[int, int]]:
    """(offset, length) runs of pages where ``current`` differs from ``wanted``."""
    if current is None:
        yield 0, len(wanted)
        return
    if current == wanted:
        return
    run_start = -1
    for off in range(0, len(wanted), PAGE):
        differs = current[off : off + PAGE] != wanted[off : off + PAGE]
        if differs and run_start < 0:
            run_start = off
        elif not differs and run_start >= 0:
            yield run_start, off - run_start
            run_start = -1
    if run_start >= 0:
        yield run_start, len(wanted) - run_start


class _UnicornSide:
    """One Unicorn instance holding the snippet, reused across cases."""

    def __init__(self, code: bytes, code_addr: int, bits: int = 32, data_seg: int = 0) -> None:
        self.code_addr = code_addr
        self.uc = Uc(UC_ARCH_X86, UC_MODE_16 if bits == 16 else UC_MODE_32)
        self.uc.mem_map(CODE_REGION[0], CODE_REGION[1] - CODE_REGION[0])
        for base, size in REGIONS:
            self.uc.mem_map(base, size)
        self.uc.mem_write(code_addr, code)
        if bits == 16:
            self.uc.reg_write(ux.UC_X86_REG_CS, 0)
            self.uc.reg_write(ux.UC_X86_REG_SS, SS16 >> 4)
            for r in (ux.UC_X86_REG_DS, ux.UC_X86_REG_ES, ux.UC_X86_REG_FS, ux.UC_X86_REG_GS):
                self.uc.reg_write(r, data_seg)
        self.mem: dict[int, bytes | None] = {base: None for base, _ in REGIONS}
        # A reused Unicorn instance keeps QEMU's exception bookkeeping across
        # runs (Unicorn 2.1.4): after one #DE the next fault is escalated to
        # #DF, and after that faults are not reported at all, the run just
        # stops at the faulting instruction.  So every case starts from a
        # context saved while the CPU was pristine, and exceptions are seen
        # through an interrupt hook that records the vector.
        self.vector: int | None = None
        self.uc.hook_add(UC_HOOK_INTR, self._on_interrupt)
        self.pristine = self.uc.context_save()

    def _on_interrupt(self, uc: Uc, intno: int, _user_data: object) -> None:
        self.vector = intno
        uc.emu_stop()

    def run(self, state: State, images: Mapping[int, bytes], end: int, count: int) -> Outcome:
        uc = self.uc
        for base, _ in REGIONS:
            for off, length in _changed_pages(self.mem[base], images[base]):
                uc.mem_write(base + off, images[base][off : off + length])
            self.mem[base] = images[base]
        uc.context_restore(self.pristine)
        uc.reg_write_batch(list(zip(_UC_ALL, (*state.regs, self.code_addr, state.eflags | EFLAGS_FIXED1), strict=True)))
        self.vector = None
        faulted = False
        error = None
        try:
            # Straight-line snippets run until EIP reaches the end: Unicorn's
            # ``count`` counts every iteration of a REP string instruction as
            # an instruction, so it cannot be used for them.  Control
            # transfers leave the snippet, so they are stopped by count.
            if count:
                uc.emu_start(self.code_addr, _NEVER, count=count)
            else:
                uc.emu_start(self.code_addr, end)
        except UcError as exc:
            if exc.errno == UC_ERR_INSN_INVALID:  # Unicorn reports #UD this way, not as an interrupt
                faulted, self.vector = True, 6
            elif exc.errno == UC_ERR_EXCEPTION:
                faulted = True
            else:
                error = f"unicorn: {exc}"
        faulted = faulted or self.vector is not None
        vals = uc.reg_read_batch(list(_UC_ALL))
        mem = {base: bytes(uc.mem_read(base, size)) for base, size in REGIONS}
        self.mem.update(mem)
        detail = f"vector {self.vector}" if self.vector is not None else ""
        return Outcome(faulted, tuple(vals[:8]), vals[8], vals[9], mem, error, detail)


class _GdbemuSide:
    """One gdbemu Machine holding the snippet, rebuilt only after a fault or crash."""

    # A rep string instruction counts one instruction per iteration (as Unicorn counts them):
    # such a snippet runs to a breakpoint at its end, within this many extra instructions.
    REP_ALLOWANCE = 1 << 16

    def __init__(
        self, code: bytes, code_addr: int, bits: int = 32, data_seg: int = 0, stop_at: int | None = None
    ) -> None:
        self.code = code
        self.code_addr = code_addr
        self.bits = bits
        self.data_seg = data_seg
        self.stop_at = stop_at
        self.m: Any = None
        self.mem: dict[int, bytes | None] = {}

    def _fresh(self) -> Any:
        from gdbemu.machine import Machine  # imported late: the core may not exist yet

        m = Machine(ram_size=RAM_SIZE)
        m.cpu.setup_flat32()
        if self.bits == 16:
            from gdbemu.core.cpu import CS, DESC_B, SS, SegmentCache

            cpu = m.cpu
            for i, sc in enumerate(cpu.segs):
                if i == CS:
                    cpu.segs[i] = SegmentCache(0, 0, 0xFFFF, sc.flags & ~DESC_B)
                elif i == SS:
                    cpu.segs[i] = SegmentCache(SS16 >> 4, SS16, 0xFFFFFFFF, sc.flags & ~DESC_B)
                else:
                    cpu.segs[i] = SegmentCache(self.data_seg, self.data_seg << 4, 0xFFFFFFFF, sc.flags)
            cpu.compute_hflags()
        m.mem.write(self.code_addr, self.code)
        if self.stop_at is not None:
            m.breakpoints.add(self.stop_at)
        self.mem = {base: None for base, _ in REGIONS}
        return m

    def run(self, state: State, images: Mapping[int, bytes], n_insns: int, to_end: bool = False) -> Outcome:
        """``to_end``: the whole snippet, its rep iterations included (see REP_ALLOWANCE)."""
        if self.m is None:
            self.m = self._fresh()
        m = self.m
        for base, _ in REGIONS:
            for off, length in _changed_pages(self.mem[base], images[base]):
                m.mem.write(base + off, images[base][off : off + length])
            self.mem[base] = images[base]
        cpu = m.cpu
        for i, v in enumerate(state.regs):
            cpu.regs[i] = v
        cpu.eip = self.code_addr
        cpu.set_eflags(state.eflags | EFLAGS_FIXED1)
        faulted = False
        error = None
        detail = ""
        try:
            stop = m.run(max_insns=n_insns + self.REP_ALLOWANCE if to_end and self.stop_at is not None else n_insns)
            kind = getattr(stop, "kind", stop)
            if kind == "debug" and cpu.eip == self.stop_at:
                kind = "limit"  # the snippet's end
            if kind == "triple_fault":
                faulted = True
                detail = str(getattr(stop, "detail", ""))
            elif kind != "limit":
                error = f"gdbemu: run() stopped with {stop!r} instead of 'limit'"
        except Exception as exc:  # the core crashing is a finding, not a harness error
            error = f"gdbemu raised {type(exc).__name__}: {exc}"
        regs = tuple(int(r) & 0xFFFFFFFF for r in cpu.regs)
        try:
            eip = int(cpu.eip)
            eflags = int(cpu.get_eflags())
            mem = {base: bytes(m.mem.read(base, size)) for base, size in REGIONS}
        except Exception as exc:
            eip, eflags, mem = 0, 0, {}
            error = error or f"gdbemu state read raised {type(exc).__name__}: {exc}"
        if faulted or error:
            self.m = None  # a triple-faulted or crashed machine is not reused
        else:
            self.mem.update(mem)
        return Outcome(faulted, regs, eip, eflags, mem, error, detail)


class DiffRunner:
    """Runs one snippet in both emulators for many initial states.

    ``code``: the snippet's bytes; ``n_insns``: how many instructions it has;
    ``branch``: the snippet transfers control, so both are stopped by
    instruction count rather than by reaching the snippet's end;
    ``background``: region base -> initial contents of the data window and
    stack before a case's patches are applied; ``code_addr``: where the
    snippet is placed (CODE_ADDR unless a test wants it to straddle a page).

    A straight-line snippet is run with ``jmp $+2`` (TERMINATOR) appended, in
    both emulators, so it ends at ``code_addr + len(code) + 2``.  Why: gdbemu
    ends a translation block at a jump, so the block is then exactly the
    instructions that run.  Without it, the block at the snippet would run on
    into the zero bytes after the snippet, gdbemu would have to cut it short
    for the instruction limit with a one-off uncached translation on every
    case, and the hot-code tier (a block compiled after many executions,
    with dead flag computations dropped) would never be exercised.  With it,
    the first cases of a form run the block in the cold tier and later ones
    in the hot tier, the same as guest code.
    """

    TERMINATOR = b"\xeb\x00"  # jmp $+2: no effect on registers, flags or memory

    def __init__(
        self,
        code: bytes,
        n_insns: int,
        background: Mapping[int, bytes],
        *,
        branch: bool = False,
        code_addr: int = CODE_ADDR,
        bits: int = 32,
        data_seg: int = 0,
    ) -> None:
        for base, size in REGIONS:
            if len(background[base]) != size:
                raise ValueError(f"background for {base:#x} must be {size:#x} bytes")
        if not branch:
            code += self.TERMINATOR
            n_insns += 1
        if not (CODE_REGION[0] <= code_addr and code_addr + len(code) <= CODE_REGION[1]):
            raise ValueError("the snippet must lie in the code region")
        self.code = code
        self.code_addr = code_addr
        self.n_insns = n_insns
        self.branch = branch
        self.background = dict(background)
        self._uc = _UnicornSide(code, code_addr, bits, data_seg)
        has_rep = not branch and any(b in (0xF2, 0xF3) for b in code)  # (a superset of the rep forms)
        self._gd = _GdbemuSide(code, code_addr, bits, data_seg, code_addr + len(code) if has_rep else None)
        self._last_images: tuple[State | None, dict[int, bytes]] = (None, {})

    def images(self, state: State) -> dict[int, bytes]:
        """The initial contents of every compared region for ``state`` (cached for the last state)."""
        if self._last_images[0] is not state:
            self._last_images = (state, _apply(self.background, state.mem))
        return self._last_images[1]

    def run(self, state: State, n_insns: int | None = None) -> tuple[Outcome, Outcome]:
        """Run ``state`` in Unicorn and gdbemu; returns (unicorn, gdbemu) outcomes.

        ``n_insns`` (fewer than the snippet has) stops both early, by count:
        that checks that gdbemu honours an instruction limit that falls inside
        a block it has already compiled.  It must not be used on snippets with
        REP string instructions (Unicorn counts their iterations).
        """
        images = self.images(state)
        if n_insns is not None:
            uc = self._uc.run(state, images, 0, n_insns)
            gd = self._gd.run(state, images, n_insns)
            return uc, gd
        uc = self._uc.run(state, images, self.code_addr + len(self.code), self.n_insns if self.branch else 0)
        gd = self._gd.run(state, images, self.n_insns, to_end=True)
        return uc, gd

    def block_tier(self) -> str:
        """ "hot" if gdbemu has compiled the snippet's block (its hot tier), else "cold".

        Read from ``Machine.stats()["tier2_built"]``: a runner's Machine only
        ever runs its one snippet, so any compiled block is the snippet's.
        "unknown" if the counter is missing.
        """
        m = self._gd.m
        if m is None:
            return "cold"
        built = m.stats().get("tier2_built")
        if built is None:
            return "unknown"
        return "hot" if built else "cold"

    def warm_up(self, state: State, max_runs: int = 1024) -> bool:
        """Run ``state`` in gdbemu alone until it has compiled the snippet's block.

        gdbemu translates new code into a cold tier and compiles a block into
        its hot tier only after many executions; a form's cases alone may be
        too few to get there, so the differential loop calls this between its
        cold and hot halves.  Returns whether the block is hot; False (after
        at most ``max_runs`` runs) if ``stats()`` has no ``tier2_built``
        counter, the counter never moves, or the state faults.
        """
        images = self.images(state)
        gd = self._gd
        if gd.m is None:
            gd.run(state, images, self.n_insns, to_end=True)
        for _ in range(max_runs):
            if gd.m is None or self.block_tier() != "cold":
                break
            if gd.run(state, images, self.n_insns, to_end=True).faulted:
                return False
        return self.block_tier() == "hot"


def compare(
    state: State,
    images: Mapping[int, bytes],
    uc: Outcome,
    gd: Outcome,
    undefined: Undefined | None = None,
    flags_mask: int = ARITH_DF,
) -> list[str]:
    """Differences between the Unicorn and gdbemu outcomes, as readable lines.

    ``flags_mask`` selects the EFLAGS bits compared at all; ``undefined``
    removes the bits the SDM leaves undefined for this case.  If only one
    side faulted, that is the one difference reported.  If both faulted, the
    states at the fault are compared the same way: exceptions are precise, so
    gdbemu must hold the state from just before the faulting instruction,
    which for a one-instruction snippet means its registers are unchanged.
    """
    und = undefined or Undefined()
    diffs: list[str] = []
    if uc.error:
        diffs.append(f"oracle error: {uc.error}")
    if gd.error:
        diffs.append(gd.error)
    if diffs:
        return diffs
    if uc.faulted != gd.faulted:
        if gd.faulted:
            diffs.append(f"gdbemu faulted (triple fault: {gd.detail}) but unicorn completed")
        else:
            diffs.append(f"unicorn raised a CPU exception ({uc.detail}) but gdbemu completed")
        return diffs
    # When both faulted, the state at the fault must match: for a one-instruction
    # snippet that is the initial state (registers unchanged, a precise fault);
    # in a longer snippet, the effects of the instructions before the faulting one.
    at = f"at the fault ({uc.detail}): " if uc.faulted else ""
    if uc.faulted:
        for i, (a, b) in enumerate(zip(state.regs, gd.regs, strict=True)):
            if a != b and uc.regs[i] == a:
                diffs.append(f"imprecise fault: gdbemu changed {REG_NAMES[i]} {a:#010x} -> {b:#010x}")
    for i, (a, b) in enumerate(zip(uc.regs, gd.regs, strict=True)):
        if (a ^ b) & ~und.regs.get(i, 0) & 0xFFFFFFFF and not (uc.faulted and state.regs[i] == a):
            diffs.append(f"{at}{REG_NAMES[i]}: unicorn={a:#010x} gdbemu={b:#010x}")
    if uc.eip != gd.eip:
        diffs.append(f"{at}eip: unicorn={uc.eip:#010x} gdbemu={gd.eip:#010x}")
    fm = flags_mask & ~und.flags
    if (uc.eflags ^ gd.eflags) & fm:
        diffs.append(
            f"{at}eflags (compared bits {fm:#x}): unicorn={uc.eflags:#x} [{flag_str(uc.eflags)}] "
            f"gdbemu={gd.eflags:#x} [{flag_str(gd.eflags)}]"
        )
    for base, size in REGIONS:
        a, b = uc.mem[base], gd.mem[base]
        if a == b:
            continue
        bad = [
            off
            for page in range(0, size, PAGE)
            if a[page : page + PAGE] != b[page : page + PAGE]
            for off in range(page, page + PAGE)
            if (a[off] ^ b[off]) & ~und.mem.get(base + off, 0) & 0xFF
        ]
        for start, end in _runs(bad):
            init = images[base][start:end].hex()
            diffs.append(
                f"{at}mem[{base + start:#x}..{base + end:#x}): initial={init} "
                f"unicorn={a[start:end].hex()} gdbemu={b[start:end].hex()}"
            )
    return diffs


def _runs(offsets: list[int]) -> Iterable[tuple[int, int]]:
    """Coalesce sorted byte offsets into [start, end) runs (gaps < 4 merged)."""
    if not offsets:
        return
    start = prev = offsets[0]
    for off in offsets[1:]:
        if off - prev > 4:
            yield start, prev + 1
            start = off
        prev = off
    yield start, prev + 1


def flag_str(eflags: int) -> str:
    """EFLAGS as a list of set flag names (for failure messages)."""
    return " ".join(name for bit, name in FLAG_NAMES if eflags & bit) or "-"


def describe_state(state: State) -> str:
    """The initial state as text: registers, flags and the memory the test chose."""
    regs = " ".join(f"{n}={v:#010x}" for n, v in zip(REG_NAMES, state.regs, strict=True))
    lines = [regs, f"eflags={state.eflags:#x} [{flag_str(state.eflags)}]"]
    lines += [f"mem[{addr:#x}]={data.hex()}" for addr, data in state.mem]
    return "\n".join(lines)
