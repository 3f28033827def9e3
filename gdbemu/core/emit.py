"""The code emitter: the vocabulary op families use to write an instruction as Python.

Theory of operation
-------------------
The translator calls one op emitter per instruction (``core/ops/*``).  An op
emitter does not execute anything: it appends lines of Python source through
this class.  The source of a whole TB is compiled into one function
(tier 2), or each instruction's source is compiled on its own and cached by
its text (tier 1, see translate.py) — the same emitters serve both.

Names visible to generated code:

``eax ecx edx ebx esp ebp esi edi``
    guest GPRs, Python locals for the TB's duration: always 32-bit values in
    legacy-mode TBs; in long-mode TBs (HF_LMA: 64-bit and compatibility
    mode) the full 64-bit values, so 32-bit reads mask them (``reg``)
``r8 .. r15``    R8..R15, locals of 64-bit TBs only (from ``RX`` = ``cpu.xregs``)
``cc_op cc_dst cc_src cc_src2``
    the lazy flags (core/flags.py), also locals
``R RX``         ``cpu.regs`` and ``cpu.xregs`` (RX only in 64-bit TBs)
``cpu``          the CPU object (``cpu.eflags`` holds DF, IF, TF ..., not the
                 arithmetic flags)
``RT WT AD``     TLB read tags, write tags, addends of this TB's mmu_idx
``M8 M16 M32 M64`` guest RAM as bytearray / memoryview casts
``LD(vaddr, size)``, ``ST(vaddr, size, value)``   the softmmu slow paths
``LDS STS``      the same for stack accesses (a non-canonical address is #SS, not #GP)
``SB``           ``cpu.seg_base``, list indexed by segment number
``X``            ``cpu.fpu.xmm``, the XMM registers as 128-bit ints (core/ops/simd_*.py)
``Fault``        GuestFault(vector, error_code=None)
``FLAGS(op, dst, src, src2)``, ``CARRY(...)``, ``COND(cc, op, dst, src, src2)``
``H``            namespace of helper functions (``H.cpuid(cpu)`` ...)

Rules an op emitter must follow (they make exceptions precise, invariant 2):

1. Do every load and store first, register writes (``write_reg``,
   ``store`` to a register operand, ``set_cc``) last.  A fault raised by a
   load or store then leaves the locals as they were at the instruction's
   start, and the TB's handler writes those back.
2. Values written must already be masked to their size.
3. ``load`` returns an *expression*: for registers it is the register local,
   valid until the next register write; pass ``stable=True`` to get a
   temporary when you will write registers before using it.
4. Constants that differ between instances of the same instruction shape
   (immediates, displacements, EIPs) go through ``const()`` so tier 1 can
   share one compiled function between them; ``load``/``ea``/``next_eip``
   already do this.
5. Anything that needs the whole CPU state (system instructions) calls a
   helper through ``sync_call``, which writes the locals back first and
   reloads them after.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from ..softmmu.tlb import MMU_USER_IDX, PAGE_BITS, PAGE_MASK, TLB_MASK, align_mask
from . import flags as F
from .cpu import (
    GPR_NAMES,
    HF_ADDSEG,
    HF_CS32,
    HF_CS64,
    HF_LMA,
    HF_MMU_SHIFT,
    HF_SS32,
    REG_NAMES,
    REQ_HARD,
    XREG_NAMES,
)
from .decode import CREG, DREG, IMM, MEM, REG, SREG, Insn, Operand

MASK = {1: 0xFF, 2: 0xFFFF, 4: 0xFFFFFFFF, 8: 0xFFFFFFFFFFFFFFFF, 16: (1 << 128) - 1}
SIGN = {1: 0x80, 2: 0x8000, 4: 0x80000000, 8: 0x8000000000000000, 16: 1 << 127}
MASK64 = MASK[8]
# The GPR files as generated code loads and stores them.
REGS_LIST = ", ".join(REG_NAMES)
XREGS_LIST = ", ".join(XREG_NAMES)
_VIEW = {1: "M8", 2: "M16", 4: "M32", 8: "M64"}
_SHIFT = {1: "", 2: " >> 1", 4: " >> 2", 8: " >> 3"}
# Unaligned accesses within one page (struct unpack_from / pack_into on M8; core/cpu.py binds them)
_ULOAD = {2: "UL16", 4: "UL32", 8: "UL64"}
_USTORE = {2: "US16", 4: "US32", 8: "US64"}
# vaddr & _TAGMASK[size] keeps the page bits and the alignment bits (tlb.align_mask)
_TAGMASK = {size: align_mask(size) for size in (1, 2, 4, 8)}
# The TLB slot of a vaddr, as generated code computes it: (vaddr >> PAGE_BITS) & TLB_MASK
_SLOT = f">> {PAGE_BITS} & {TLB_MASK}"
_TEMP_RE = re.compile(r"_[a-z]+\d+")
_LITERAL_RE = re.compile(r"-?(0x[0-9a-f]+|\d+)")


def code_mask(hflags: int) -> int:
    """EIP's width in code running under ``hflags``: an instruction at the top wraps to 0 (SDM 3.5)."""
    if hflags & HF_CS64:
        return MASK[8]
    return 0xFFFFFFFF if hflags & HF_CS32 else 0xFFFF


class Exit:
    """A placeholder for a TB exit, rendered once the TB's written registers are known."""

    __slots__ = ("indent", "slot", "eip", "done")

    def __init__(self, indent: int, slot: int, eip: str, done: int) -> None:
        self.indent = indent
        self.slot = slot
        self.eip = eip
        self.done = done


class Emitter:
    """Collects the source of one instruction (or of a whole TB, instruction by instruction)."""

    def __init__(self, hflags: int, tier1: bool) -> None:
        self.hflags = hflags
        self.addseg = bool(hflags & HF_ADDSEG)
        # Long mode (64-bit or compatibility code): register locals may hold 64-bit values.
        self.wide = bool(hflags & HF_LMA)
        # 64-bit code: r8..r15 exist, linear addresses are 64-bit, only FS/GS bases count.
        self.long = bool(hflags & HF_CS64)
        self.lin_mask = MASK64 if self.long else 0xFFFFFFFF
        # Unaligned accesses inside one page take an inline path too, except at CPL 3
        # (the user mmu_idx), where #AC (CR0.AM, EFLAGS.AC) is checked on the slow path.
        self.unaligned_ok = (hflags >> HF_MMU_SHIFT) & 3 != MMU_USER_IDX
        self.tier1 = tier1
        self.lines: list[str | Exit] = []
        self.indent_level = 1
        self.consts: list[int] = []
        self.ntmp = 0
        self.written: set[int] = set()
        self.cc_written = False
        self.synced = False  # a sync_call happened
        # Static knowledge of the lazy flags: (kind, size) or None when unknown.
        self.cc_static: tuple[int, int] | None = None
        # Tier 2: (cc_static when set, dst, src, line count then) of the last set_cc, so a
        # CF read right after can use the values instead of cc_dst/cc_src (see carry()).
        self.cc_vals: tuple[object, str, str, int] | None = None
        # Set per instruction by the translator:
        self.insn: Insn = None  # type: ignore[assignment]
        self.index = 0
        self.flags_live = True  # are the flags this instruction writes read later?
        self.may_fault = False
        self.ended = False  # the instruction ended the TB (an exit was emitted on all paths)
        self.tb_start = -1  # EIP of the TB start, for loops
        self.loop_ok = False
        self.jump_targets: dict[int, int] = {}  # slot -> constant target EIP
        # (paddr, size, signed) of this instruction's immediate when it must be
        # read from RAM at run time (SMC-hot page), else None.  See translate.py.
        self.dyn_imm: tuple[int, int, bool] | None = None
        # The target of this direct jmp/call when the translator followed it (the TB goes on
        # there): its jump emits no exit.
        self.follow: int | None = None

    # ---- lines --------------------------------------------------------------
    def emit(self, line: str) -> None:
        self.lines.append("    " * self.indent_level + line)

    @contextmanager
    def block(self, header: str) -> Iterator[None]:
        """``with e.block("if x:"):`` indents what is emitted inside."""
        self.emit(header)
        self.indent_level += 1
        try:
            yield
        finally:
            self.indent_level -= 1

    def tmp(self, prefix: str = "t") -> str:
        self.ntmp += 1
        return f"_{prefix}{self.ntmp}"

    def const(self, value: int) -> str:
        """A per-instance constant: a literal in tier 2, ``K[n]`` in tier 1."""
        if self.tier1:
            self.consts.append(value)
            return f"K[{len(self.consts) - 1}]"
        return repr(value)

    # ---- instruction facts --------------------------------------------------
    @property
    def opsize(self) -> int:
        return self.insn.opsize

    @property
    def addrsize(self) -> int:
        return self.insn.addrsize

    @property
    def stack_size(self) -> int:
        if self.long:
            return 8
        return 4 if self.hflags & HF_SS32 else 2

    def next_eip(self, size: int | None = None) -> str:
        """The EIP after this instruction, wrapped as the code size wraps it (0xFFFFFFFF + 2 -> 1).

        ``size``: also truncate to an operand size (the IP ``call rel16`` pushes in 32-bit code).
        """
        value = self.insn.next & code_mask(self.hflags)
        return self.const(value if size is None else value & MASK[size])

    def this_eip(self) -> str:
        return self.const(self.insn.addr)

    # ---- registers ----------------------------------------------------------
    def reg(self, r: int, size: int = 4, high: bool = False) -> str:
        """Expression for GPR ``r`` (0..15) read at ``size`` bytes."""
        name = GPR_NAMES[r]
        if size == 8:
            return name
        if size == 4:
            return f"({name} & 0xFFFFFFFF)" if self.wide else name
        if size == 2:
            return f"({name} & 0xFFFF)"
        if high:
            return f"({name} >> 8 & 0xFF)"
        return f"({name} & 0xFF)"

    def write_reg(self, r: int, size: int, value: str, high: bool = False) -> None:
        """Assign a register (value already masked to ``size``).

        A 32-bit write replaces the whole register (zero-extends in 64-bit
        mode); 8/16-bit writes keep the rest.
        """
        name = GPR_NAMES[r]
        self.written.add(r)
        keep = MASK64 if self.wide else 0xFFFFFFFF
        if size >= 4:
            self.emit(f"{name} = {value}")
        elif size == 2:
            self.emit(f"{name} = {name} & {keep & ~0xFFFF:#x} | ({value})")
        elif high:
            self.emit(f"{name} = {name} & {keep & ~0xFF00:#x} | ({value}) << 8")
        else:
            self.emit(f"{name} = {name} & {keep & ~0xFF:#x} | ({value})")

    # ---- addresses and memory -------------------------------------------------
    def seg_base(self, seg: int, force: bool = False) -> str | None:
        """Expression for a segment base, or None when it is known to be zero.

        In 64-bit code only the FS and GS bases count (``force`` included).
        """
        if seg >= 4 or (not self.long and (self.addseg or force)):
            return f"SB[{seg}]"
        return None

    def offset(self, op: Operand) -> str:
        """The effective address (offset within the segment), masked to the address size."""
        if op.riprel:
            # RIP-relative: the decoder resolved it (next RIP + disp) to a constant.
            return self.const(op.disp & MASK[self.addrsize])
        parts = []
        if op.base >= 0:
            parts.append(GPR_NAMES[op.base])
        if op.index >= 0:
            idx = GPR_NAMES[op.index]
            parts.append(idx if op.scale == 1 else f"{idx} * {op.scale}")
        if op.disp:
            parts.append(self.const(op.disp & MASK[self.addrsize]))
        if not parts:
            return "0"
        if len(parts) == 1 and op.base >= 0 and self.addrsize == (8 if self.wide else 4):
            return parts[0]
        return f"({' + '.join(parts)}) & {MASK[self.addrsize]:#x}"

    def ea(self, op: Operand) -> str:
        """Emit the linear address of a memory operand into a temporary; return its name."""
        return self.linear(op.seg, self.offset(op))

    def linear(self, seg: int, off_expr: str) -> str:
        """Linear address of ``seg:off`` (off already masked to the address size)."""
        base = self.seg_base(seg)
        name = self.tmp("a")
        if base is None:
            self.emit(f"{name} = {off_expr}")
        else:
            self.emit(f"{name} = {base} + ({off_expr}) & {self.lin_mask:#x}")
        return name

    def load_mem(self, addr: str, size: int, stack: bool = False) -> str:
        """Load ``size`` bytes at linear address ``addr`` (a name): inline TLB fast path.

        ``stack``: an SS access (in 64-bit code a non-canonical address is #SS).
        """
        self.may_fault = True
        v = self.tmp("v")
        view = _VIEW[size]
        ld = "LDS" if stack and self.long else "LD"
        fast = f"{v} = {view}[{addr} + AD[_p]{_SHIFT[size]}] if RT[(_p := {addr} {_SLOT})] == {addr} & {_TAGMASK[size]}"
        if size > 1 and self.unaligned_ok:
            # Unaligned, last byte in the same page, entry unflagged: the tag equals the
            # page of the last byte (a page-crossing access names the next page, whose
            # entry can never sit in this slot; a flag in the tag fails as before).
            self.emit(
                f"{fast} else {_ULOAD[size]}(M8, {addr} + AD[_p])[0] "
                f"if RT[_p] == {addr} + {size - 1} & {PAGE_MASK} else {ld}({addr}, {size})"
            )
        else:
            self.emit(f"{fast} else {ld}({addr}, {size})")
        return v

    def store_mem(self, addr: str, size: int, value: str, stack: bool = False) -> None:
        """Store ``value`` (masked) at linear address ``addr`` (a name)."""
        self.may_fault = True
        view = _VIEW[size]
        st = "STS" if stack and self.long else "ST"
        self.emit(
            f"if WT[(_p := {addr} {_SLOT})] == {addr} & {_TAGMASK[size]}: "
            f"{view}[{addr} + AD[_p]{_SHIFT[size]}] = {value}"
        )
        if size > 1 and self.unaligned_ok:
            self.emit(
                f"elif WT[_p] == {addr} + {size - 1} & {PAGE_MASK}: {_USTORE[size]}(M8, {addr} + AD[_p], {value})"
            )
        self.emit(f"else: {st}({addr}, {size}, {value})")

    # ---- generic operands ---------------------------------------------------
    def load(self, op: Operand, stable: bool = False, size: int | None = None, addr: str | None = None) -> str:
        """Read an operand; for memory, ``addr`` reuses an address computed by ``ea``."""
        size = size or op.size
        if op.kind == REG:
            expr = self.reg(op.reg, size, op.high)
            if stable:
                t = self.tmp()
                self.emit(f"{t} = {expr}")
                return t
            return expr
        if op.kind == IMM:
            if self.dyn_imm is not None:
                return self._dyn_imm(size)
            return self.const(op.imm & MASK[size])
        if op.kind == MEM:
            a = addr if addr is not None else self.ea(op)
            return self.load_mem(a, size, op.seg == 2)
        if op.kind == SREG:
            return f"cpu.segs[{op.reg}].selector"
        raise NotImplementedError(f"operand kind {op.kind}")

    def _dyn_imm(self, size: int) -> str:
        """Read the immediate from guest RAM at run time (the SMC-hot-page translation)."""
        assert self.dyn_imm is not None  # only called when the translator planned one
        paddr, n, signed = self.dyn_imm
        p = self.const(paddr)
        v = self.tmp("im")
        expr = f"int.from_bytes(M8[{p}:{p} + {n}], 'little')"
        if signed:
            s = 1 << (8 * n - 1)
            expr = f"(({expr} ^ {s:#x}) - {s:#x})"
        self.emit(f"{v} = {expr} & {MASK[size]:#x}")
        return v

    def store(self, op: Operand, value: str, size: int | None = None, addr: str | None = None) -> None:
        size = size or op.size
        if op.kind == REG:
            self.write_reg(op.reg, size, value, op.high)
        elif op.kind == MEM:
            a = addr if addr is not None else self.ea(op)
            self.store_mem(a, size, value, op.seg == 2)
        else:
            raise NotImplementedError(f"store to operand kind {op.kind}")

    # ---- stack --------------------------------------------------------------
    def push(self, values: list[str], size: int) -> None:
        """Push values in order; memory first, ESP last (a fault leaves ESP unchanged)."""
        ss = self.stack_size
        sp = self.tmp("sp")
        self.emit(f"{sp} = {self.reg(4, ss)}")
        for val in values:
            self.emit(f"{sp} = {sp} - {size} & {MASK[ss]:#x}")
            a = self.linear(2, sp)
            self.store_mem(a, size, val, True)
        self.write_reg(4, ss, sp)

    def pop(self, size: int, commit: bool = True) -> tuple[str, str]:
        """Pop one value; returns (value, new_sp).  ESP is written only if ``commit``."""
        ss = self.stack_size
        sp = self.tmp("sp")
        self.emit(f"{sp} = {self.reg(4, ss)}")
        a = self.linear(2, sp)
        v = self.load_mem(a, size, True)
        self.emit(f"{sp} = {sp} + {size} & {MASK[ss]:#x}")
        if commit:
            self.write_reg(4, ss, sp)
        return v, sp

    # ---- lazy flags -----------------------------------------------------------
    def set_cc(self, kind: int, size: int, dst: str, src: str = "0", src2: str | None = None) -> None:
        """Record a flag-setting operation lazily (skipped when the flags are dead)."""
        self.cc_static = (kind, size)
        self.cc_vals = (self.cc_static, dst, src, len(self.lines))
        if not self.flags_live:
            return
        self.cc_written = True
        op = F.cc_op(kind, size)
        if src2 is None:
            self.emit(f"cc_op, cc_dst, cc_src = {op}, {dst}, {src}")
        else:
            self.emit(f"cc_op, cc_dst, cc_src, cc_src2 = {op}, {dst}, {src}, {src2}")

    def set_flags_value(self, value: str) -> None:
        """Set the six arithmetic flags from a full value (sahf, popf, helpers)."""
        self.cc_static = (F.EFLAGS, 4)
        self.cc_written = True
        self.emit(f"cc_op, cc_src = {F.CC_OP_EFLAGS}, {value} & {F.ARITH}")

    def flags_unknown(self) -> None:
        """Forget static flag knowledge (a runtime-conditional flag update happened)."""
        self.cc_static = None

    def eflags_arith(self) -> str:
        """Expression for the six arithmetic flags."""
        if self.cc_static and self.cc_static[0] == F.EFLAGS:
            return "cc_src"
        return "FLAGS(cc_op, cc_dst, cc_src, cc_src2)"

    def eflags(self) -> str:
        """Expression for the whole EFLAGS register."""
        return f"(cpu.eflags & {~F.ARITH & 0xFFFFFFFF:#x} | {self.eflags_arith()})"

    def _stable_cc_vals(self) -> tuple[str, str] | None:
        """The last set_cc's dst/src when they are literals or temporaries not assigned since.

        Then CF can be computed from them rather than from cc_dst/cc_src, and
        the set_cc itself may turn out dead (translate.py drops a cc store
        overwritten before anything can read it).
        """
        vals = self.cc_vals
        if self.tier1 or vals is None or vals[0] is not self.cc_static:
            return None
        names = []
        for x in vals[1:3]:
            assert isinstance(x, str)
            if _LITERAL_RE.fullmatch(x):
                continue
            if not _TEMP_RE.fullmatch(x):
                return None
            names.append(x)
        for line in self.lines[vals[3] :]:
            if not isinstance(line, str):
                return None
            for x in names:
                if x in line and (
                    re.search(rf"(?<![\w.]){x}\b", line.split(" = ", 1)[0] if " = " in line else "")
                    or re.search(rf"(?<![\w.]){x}\s*(:|[-+*/%&|^<>]+)=", line)
                ):
                    return None
        return str(vals[1]), str(vals[2])

    def carry(self) -> str:
        """Expression (0/1 or bool) for CF."""
        st = self.cc_static
        if st is not None:
            kind, size = st
            m = MASK[size]
            vals = self._stable_cc_vals() if kind in (F.ADD, F.SUB) else None
            if kind == F.SUB:
                if vals is not None:
                    return f"(({vals[0]} + {vals[1]} & {m:#x}) < {vals[1]})"
                return f"((cc_dst + cc_src & {m:#x}) < cc_src)"
            if kind == F.ADD:
                if vals is not None:
                    return f"({vals[0]} < {vals[1]})"
                return "(cc_dst < cc_src)"  # the sum wrapped iff it is below either addend
            if kind == F.LOGIC:
                return "0"
            if kind in (F.INC, F.DEC):
                return "(cc_src & 1)"
            if kind == F.EFLAGS:
                return "(cc_src & 1)"
            if kind == F.SAR or kind == F.BT:
                return "(cc_src & 1)"
        return "CARRY(cc_op, cc_dst, cc_src, cc_src2)"

    def cond(self, cc: int) -> str:
        """Expression true when condition ``cc`` (x86 encoding, 0..15) holds (truthy, not always a bool)."""
        st = self.cc_static
        neg = cc & 1
        base = cc >> 1
        if st is not None:
            kind, size = st
            m = MASK[size]
            s = SIGN[size]
            expr = None
            if base == 2 and kind not in (F.EFLAGS, F.BT):  # Z (conditions are only tested for truth)
                expr = "not cc_dst" if not neg else "cc_dst"
            elif base == 4 and kind not in (F.EFLAGS, F.BT):  # S
                expr = f"cc_dst & {s:#x}" if not neg else f"not cc_dst & {s:#x}"
            elif kind == F.SUB:
                a = f"(cc_dst + cc_src & {m:#x})"
                if base == 1:
                    expr = f"{a} < cc_src" if not neg else f"{a} >= cc_src"
                elif base == 3:
                    expr = f"{a} <= cc_src" if not neg else f"{a} > cc_src"
                elif base == 6:
                    expr = f"({a} ^ {s:#x}) < (cc_src ^ {s:#x})" if not neg else f"({a} ^ {s:#x}) >= (cc_src ^ {s:#x})"
                elif base == 7:
                    expr = f"({a} ^ {s:#x}) <= (cc_src ^ {s:#x})" if not neg else f"({a} ^ {s:#x}) > (cc_src ^ {s:#x})"
            elif kind == F.LOGIC:
                if base == 0 or base == 1:  # O, B: never
                    expr = "False" if not neg else "True"
                elif base == 3:  # BE == Z
                    expr = "not cc_dst" if not neg else "cc_dst"
                elif base == 6:  # L == S
                    expr = f"cc_dst & {s:#x}" if not neg else f"not cc_dst & {s:#x}"
                elif base == 7:  # LE == Z or S
                    expr = f"(cc_dst == 0 or cc_dst & {s:#x})"
                    if neg:
                        expr = f"not {expr}"
            elif kind in (F.BT, F.SAR) and base == 1:  # CF is bit 0 of cc_src
                expr = "cc_src & 1" if not neg else "not cc_src & 1"
            elif kind == F.EFLAGS:
                bit = {0: F.OF, 1: F.CF, 2: F.ZF, 3: F.CF | F.ZF, 4: F.SF, 5: F.PF}.get(base)
                if bit is not None:
                    expr = f"cc_src & {bit:#x}" if not neg else f"not cc_src & {bit:#x}"
            if expr is not None:
                return f"({expr})"
        return f"COND({cc}, cc_op, cc_dst, cc_src, cc_src2)"

    # ---- faults and helpers ---------------------------------------------------
    def fault(self, vector: int, error_code: int | None = None) -> None:
        """Emit ``raise`` of an architectural exception (precise: nothing written yet)."""
        self.may_fault = True
        if error_code is None:
            self.emit(f"raise Fault({vector})")
        else:
            self.emit(f"raise Fault({vector}, {error_code})")

    def sync_call(self, helper: str, *args: str, result: str | None = None, reload: bool = True) -> None:
        """Call ``H.<helper>(cpu, *args)`` with the whole guest state in the CPU object.

        Writes every register and the lazy flags back, sets ``cpu.eip`` to
        this instruction (so a helper that raises reports the right EIP and a
        helper that needs the next EIP gets it as an argument), and reloads
        the locals afterwards since a helper may change any of them.  The
        reload is unconditional (``reload`` is accepted for readability
        only): every exit writes the locals back, so stale locals would undo
        what the helper did (iret's ESP and EFLAGS, say).
        """
        del reload
        self.may_fault = True
        self.synced = True
        self.emit(f"R[:] = {REGS_LIST}")
        if self.long:
            self.emit(f"RX[:] = {XREGS_LIST}")
        self.emit("cpu.cc_op, cpu.cc_dst, cpu.cc_src, cpu.cc_src2 = cc_op, cc_dst, cc_src, cc_src2")
        self.emit(f"cpu.eip = {self.this_eip()}")
        self.helper_call(helper, *args, result=result)
        self.reload_regs()
        self.emit("cc_op, cc_dst, cc_src, cc_src2 = cpu.cc_op, cpu.cc_dst, cpu.cc_src, cpu.cc_src2")
        self.written.update(range(16 if self.long else 8))
        self.cc_written = True
        self.cc_static = None

    def reload_regs(self) -> None:
        """Emit the reload of the register locals from the CPU (after a helper changed them)."""
        self.emit(f"{REGS_LIST} = R")
        if self.long:
            self.emit(f"{XREGS_LIST} = RX")

    def helper_call(self, helper: str, *args: str, result: str | None = None) -> None:
        """Emit ``H.<helper>(cpu, *args)`` with ``cpu.icount`` exact for its duration.

        ``cpu.icount`` is brought up to date only at TB exits; for the call it
        counts the instructions this TB already retired, so a helper or device
        reading the virtual clock sees the exact time whatever the TB's shape
        (gdb's breakpoints split TBs: timing must not change with them).
        """
        self.may_fault = True
        call = f"H.{helper}(cpu{''.join(', ' + a for a in args)})"
        done = self.const(self.index) if self.tier1 else f"@IC@{self.index}"
        self.emit(f"cpu.icount += {done}")
        self.emit("try:")
        self.emit(f"    {result} = {call}" if result else f"    {call}")
        self.emit("finally:")
        self.emit(f"    cpu.icount -= {done}")

    # ---- exits --------------------------------------------------------------
    def exit(self, slot: int, eip: str) -> None:
        """Leave the TB after this instruction: slot 0/1 = direct jump (chainable), 2 = other."""
        self.lines.append(Exit(self.indent_level, slot, eip, self.index + 1))

    def jump(self, target: int, slot: int = 0) -> None:
        """Direct jump to a constant EIP; a jump to the TB start may loop inside the TB."""
        if self.follow is not None and target == self.follow and slot == 0:
            # Followed: the TB's next instruction is the target.  The TB still ends here when
            # something is pending (a device or helper raised it in this TB): the exec loop acts
            # on it exactly where it did when this jump ended the TB (interrupt landing points).
            # (The exec loop's test: a masked INTR alone does not stop it, nor this TB.)
            with self.block(f"if (_q := cpu.interrupt_request) and (_q != {REQ_HARD} or cpu.eflags & 0x200):"):
                self.exit(2, self.const(target))
            return
        # (Only slot 0 loops: the loop's last exit returns slot 0.  A fall-through to the start,
        # possible in a TB that followed a jump, exits and chains through slot 1.)
        if self.loop_ok and target == self.tb_start and not self.tier1 and slot == 0:
            self.lines.append(Exit(self.indent_level, -1, repr(target), self.index + 1))
            return
        self.jump_targets[slot] = target
        self.exit(slot, self.const(target))

    def jump_indirect(self, eip: str) -> None:
        self.exit(2, eip)

    def end(self) -> None:
        """End the TB after this instruction, continuing at the next one (mode changes)."""
        self.exit(2, self.next_eip())
        self.ended = True


# Flag-use metadata for dead-flag elimination: op name -> (reads, writes_all).
# Filled by the @op decorator in core/ops/__init__.py.
FLAG_USE: dict[str, tuple[bool, bool]] = {}

# Emitter of sizes used in names; exported for op families.
__all__ = ["Emitter", "Exit", "MASK", "SIGN", "FLAG_USE", "REG", "IMM", "MEM", "SREG", "CREG", "DREG"]
