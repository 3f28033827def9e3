"""Miscellaneous integer instructions: cmpxchg, xadd, cmpxchg8b, enter, leave,
pushf/popf, bound, salc.  (ud2 is registered by the system family.)

``lock`` changes nothing: one vCPU runs at a time, so each read-modify-write
below is atomic by construction.  Every emitter follows the precise-exception
order of core/emit.py: loads and stores first, register and flag writes last.
"""

from __future__ import annotations

from .. import flags as F  # noqa: N812 - the project-wide name for the flags module
from ..cpu import CPU, EAX, EBP, EBX, ECX, EDX, ESP, HF_VM
from ..decode import MEM
from ..emit import MASK, SIGN, Emitter
from ..exceptions import BR, GP, UD
from ..helpers import helper
from . import op


@op("cmpxchg", flags="w", pure=True)
def cmpxchg(e: Emitter) -> None:
    """CMPXCHG r/m, r (SDM vol. 2): compare the accumulator with the destination.

    Equal: ZF = 1 and destination <- source.  Not equal: ZF = 0 and
    accumulator <- destination.  "The destination operand is written back if
    the comparison fails", so a memory destination is always stored (a
    read-only page faults either way).  The flags are those of
    ``cmp accumulator, destination``.  Writing the accumulator with the old
    destination is a no-op on the equal path, so it is unconditional; for a
    register destination it is written first so that ``cmpxchg eax, r``
    ends with the source in EAX (as hardware and QEMU).
    """
    dst, src = e.insn.ops
    size = dst.size
    m = f"{MASK[size]:#x}"
    addr = e.ea(dst) if dst.kind == MEM else None
    v = e.load(dst, addr=addr, stable=dst.kind != MEM)
    a = e.tmp("acc")
    e.emit(f"{a} = {e.reg(EAX, size)}")
    s = e.load(src, stable=True)
    new = e.tmp("n")
    e.emit(f"{new} = {s} if {a} == {v} else {v}")
    d = e.tmp("d")
    e.emit(f"{d} = {a} - {v} & {m}")
    if dst.kind == MEM:
        e.store(dst, new, addr=addr)
        e.write_reg(EAX, size, v)
    else:
        e.write_reg(EAX, size, v)
        e.store(dst, new)
    e.set_cc(F.SUB, size, d, v)


@op("xadd", flags="w", pure=True)
def xadd(e: Emitter) -> None:
    """XADD r/m, r: temp = dst + src; src <- dst; dst <- temp (so ``xadd r, r`` doubles r); flags of add."""
    dst, src = e.insn.ops
    size = dst.size
    addr = e.ea(dst) if dst.kind == MEM else None
    v = e.load(dst, addr=addr, stable=dst.kind != MEM)
    s = e.load(src, stable=True)
    r = e.tmp("r")
    e.emit(f"{r} = {v} + {s} & {MASK[size]:#x}")
    if dst.kind == MEM:
        e.store(dst, r, addr=addr)
        e.store(src, v)
    else:
        e.store(src, v)
        e.store(dst, r)
    e.set_cc(F.ADD, size, r, s)


@op("cmpxchg8b", flags="rw")
def cmpxchg8b(e: Emitter) -> None:
    """CMPXCHG8B m64: compare EDX:EAX with m64; equal: m64 <- ECX:EBX, else EDX:EAX <- m64.

    Only ZF changes (SDM: "The CF, PF, AF, SF, and OF flags are unaffected").
    The destination is written on both paths (the old value on failure), and
    EDX:EAX <- m64 is a no-op on the equal path, so both are unconditional.
    A register operand is #UD.
    """
    (dst,) = e.insn.ops
    if dst.kind != MEM:
        e.fault(UD)
        e.ended = True
        return
    addr = e.ea(dst)
    v = e.load_mem(addr, 8)
    eq = e.tmp("eq")
    e.emit(f"{eq} = {v} == ({e.reg(EDX)} << 32 | {e.reg(EAX)})")
    e.store_mem(addr, 8, f"(({e.reg(ECX)} << 32 | {e.reg(EBX)}) if {eq} else {v})")
    if e.wide:
        # 64-bit mode: EDX:EAX are written (zero-extending) only when the compare fails.
        with e.block(f"if not {eq}:"):
            e.write_reg(EAX, 4, f"{v} & 0xFFFFFFFF")
            e.write_reg(EDX, 4, f"{v} >> 32")
    else:
        e.write_reg(EAX, 4, f"{v} & 0xFFFFFFFF")
        e.write_reg(EDX, 4, f"{v} >> 32")
    e.set_flags_value(f"{e.eflags_arith()} & {~F.ZF & F.ARITH:#x} | ({F.ZF:#x} if {eq} else 0)")


@op("cmpxchg16b", flags="rw")
def cmpxchg16b(e: Emitter) -> None:
    """CMPXCHG16B m128: as cmpxchg8b with RDX:RAX and RCX:RBX; #GP(0) unless 16-byte aligned.

    Both quadwords are read before either is written, so a fault on the
    second leaves memory and registers unchanged.
    """
    (dst,) = e.insn.ops
    if dst.kind != MEM:
        e.fault(UD)
        e.ended = True
        return
    addr = e.ea(dst)
    with e.block(f"if {addr} & 15:"):
        e.fault(GP, 0)
    hi_addr = e.tmp("a")
    e.emit(f"{hi_addr} = {addr} + 8 & 0xFFFFFFFFFFFFFFFF")
    lo = e.load_mem(addr, 8)
    hi = e.load_mem(hi_addr, 8)
    eq = e.tmp("eq")
    e.emit(f"{eq} = {lo} == {e.reg(EAX, 8)} and {hi} == {e.reg(EDX, 8)}")
    e.store_mem(addr, 8, f"({e.reg(EBX, 8)} if {eq} else {lo})")
    e.store_mem(hi_addr, 8, f"({e.reg(ECX, 8)} if {eq} else {hi})")
    with e.block(f"if not {eq}:"):
        e.write_reg(EAX, 8, lo)
        e.write_reg(EDX, 8, hi)
    e.set_flags_value(f"{e.eflags_arith()} & {~F.ZF & F.ARITH:#x} | ({F.ZF:#x} if {eq} else 0)")


@op("enter", flags="")
def enter(e: Emitter) -> None:
    """ENTER imm16, imm8 (SDM vol. 2, ENTER): push (E)BP, copy level-1 frame pointers, push FrameTemp.

    The nesting level is imm8 mod 32.  Frame pointers are read at
    (E)BP - i*size through SS with the stack's address size; FrameTemp is
    (E)SP after the first push.  (E)BP <- FrameTemp with the *operand* size
    (SDM: "BP <- FrameTemp[15:0]" for 16-bit operands; Bochs does the same)
    and (E)SP <- FrameTemp - level*size - imm16 with the stack size.  QEMU,
    hence Unicorn, writes EBP with the stack width instead, so the two
    differ in the upper half of EBP for ``enterw`` on a 32-bit stack and
    ``enterd`` on a 16-bit one (mixed sizes no compiler emits).  All memory
    accesses come before the register writes, so a #SS/#PF on any of them
    leaves the registers unchanged.
    """
    alloc_op, level_op = e.insn.ops
    size = e.opsize
    ss = e.stack_size
    sm = f"{MASK[ss]:#x}"
    level = level_op.imm & 0x1F
    sp = e.tmp("sp")
    e.emit(f"{sp} = {e.reg(ESP, ss)}")
    e.emit(f"{sp} = {sp} - {size} & {sm}")
    e.store_mem(e.linear(2, sp), size, e.reg(EBP, size), True)
    frame = e.tmp("ft")
    full = MASK[8] if e.wide else MASK[4]
    e.emit(f"{frame} = {sp}" if ss >= 4 else f"{frame} = esp & {~MASK[ss] & full:#x} | {sp}")
    # (with size == ss >= 4 the frame pointer is exactly sp: no mask needed)
    if level:
        bp = e.tmp("bp")
        e.emit(f"{bp} = ebp & {sm}")
        for _ in range(level - 1):
            e.emit(f"{bp} = {bp} - {size} & {sm}")
            val = e.load_mem(e.linear(2, bp), size, True)
            e.emit(f"{sp} = {sp} - {size} & {sm}")
            e.store_mem(e.linear(2, sp), size, val, True)
        e.emit(f"{sp} = {sp} - {size} & {sm}")
        e.store_mem(e.linear(2, sp), size, frame if size == ss >= 4 else f"{frame} & {MASK[size]:#x}", True)
    e.emit(f"{sp} = {sp} - {e.const(alloc_op.imm & 0xFFFF)} & {sm}")
    e.write_reg(EBP, size, frame if size == ss >= 4 else f"{frame} & {MASK[size]:#x}")
    e.write_reg(ESP, ss, sp)


@op("leave", flags="")
def leave(e: Emitter) -> None:
    """LEAVE: (E)SP <- (E)BP with the stack size, then pop (E)BP with the operand size (SDM vol. 2)."""
    size = e.opsize
    ss = e.stack_size
    sm = f"{MASK[ss]:#x}"
    sp = e.tmp("sp")
    e.emit(f"{sp} = {e.reg(EBP, ss)}")
    val = e.load_mem(e.linear(2, sp), size, True)
    e.emit(f"{sp} = {sp} + {size} & {sm}")
    e.write_reg(ESP, ss, sp)
    e.write_reg(EBP, size, val)


def _vm86_iopl_check(e: Emitter) -> None:
    """pushf/popf in virtual-8086 mode with IOPL < 3 are #GP(0) (SDM PUSHF/POPF; CR4.VME not modelled)."""
    if e.hflags & HF_VM:
        with e.block(f"if cpu.eflags & {F.IOPL:#x} != {F.IOPL:#x}:"):
            e.fault(GP, 0)


@op("pushfq", "pushfd", "pushf", flags="r")
def pushf(e: Emitter) -> None:
    """PUSHF/PUSHFD: push EFLAGS (its low word for 16-bit operands) with VM and RF cleared (SDM)."""
    _vm86_iopl_check(e)
    size = e.opsize
    e.push([f"{e.eflags()} & {~(F.RF | F.VM) & MASK[size]:#x}"], size)


@op("popfq", "popfd", "popf", flags="w", end=True)
def popf(e: Emitter) -> None:
    """POPF/POPFD: pop into EFLAGS under the privilege masks of ``popf_write``.

    ESP is committed only after the helper succeeded.  The TB ends: TF, IF
    and AC change how code is translated and when interrupts are taken.
    """
    _vm86_iopl_check(e)
    v, sp = e.pop(e.opsize, commit=False)
    e.sync_call("popf_write", v, str(e.opsize))
    e.write_reg(ESP, e.stack_size, sp)
    e.end()


@helper
def popf_write(cpu: CPU, value: int, opsize: int) -> None:
    """Write a popped EFLAGS image (SDM vol. 2, POPF, and QEMU's masks).

    Always: CF PF AF ZF SF OF, TF, DF, NT (and AC, ID for 32-bit operands).
    IOPL only at CPL 0 (real mode is CPL 0); IF only if CPL <= IOPL.  VM, VIF,
    VIP and the reserved bits never change; POPFD clears RF.  A 16-bit popf
    writes only the low word.  (Virtual-8086 mode arrives here only with
    IOPL = 3, at CPL 3: IF may change, IOPL may not.)
    """
    mask = F.ARITH | F.TF | F.DF | F.NT | F.AC | F.ID
    cpl = cpu.cpl
    iopl = (cpu.eflags >> 12) & 3
    if cpl == 0:
        mask |= F.IOPL | F.IF
    elif cpl <= iopl:
        mask |= F.IF
    if opsize == 2:
        mask &= 0xFFFF
    else:
        mask |= F.RF
        value &= ~F.RF
    cpu.set_eflags(value, mask)


@op("bound", flags="")
def bound(e: Emitter) -> None:
    """BOUND r, m: #BR (vector 5) unless lower <= r <= upper, all signed (SDM vol. 2, BOUND).

    The bounds are two operand-size values at m and m + size.
    """
    reg, m = e.insn.ops
    size = reg.size
    if m.kind != MEM:
        e.fault(UD)
        e.ended = True
        return
    o = e.tmp("o")
    e.emit(f"{o} = {e.offset(m)}")
    lo = e.load_mem(e.linear(m.seg, o), size)
    hi = e.load_mem(e.linear(m.seg, f"{o} + {size} & {MASK[e.addrsize]:#x}"), size)
    s = SIGN[size]
    idx = e.tmp("i")
    e.emit(f"{idx} = ({e.reg(reg.reg, size)} ^ {s:#x}) - {s:#x}")
    with e.block(f"if {idx} < ({lo} ^ {s:#x}) - {s:#x} or {idx} > ({hi} ^ {s:#x}) - {s:#x}:"):
        e.fault(BR)


@op("salc", flags="r", pure=True)
def salc(e: Emitter) -> None:
    """SALC (undocumented D6): AL <- 0xFF if CF else 0; flags unchanged."""
    e.write_reg(EAX, 1, f"(0xFF if {e.carry()} else 0)")
