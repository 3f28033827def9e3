"""System instructions: flags control, port I/O, hlt, interrupts, descriptor tables,
control/debug registers, CPUID, TSC and MSRs, segment probes (LAR/LSL/VERR/VERW/ARPL).

Most run a helper: through ``Emitter.sync_call`` when it reads or changes
state generated code keeps in locals (GPRs, lazy flags), or called directly
(``_call``) when it only needs the CPU object and its arguments.  A helper
checks everything that can fault before it changes anything (precise
exceptions).  Privilege checks on CPL are done at translation time where the
CPL is part of the TB key (``hflags``); checks on state outside hflags
(IOPL, CR4.TSD) are done at run time.

Instructions that change what a TB's translation depends on end the TB:
CR0/CR3/CR4 writes and LMSW (paging, PE), segment loads, CLI/STI (the
interrupt window), INVLPG (a code page may be remapped).  The instructions
that read the time-stamp counter end it too, so that the counter is exact:
see ``icount_now``.
"""

from __future__ import annotations

from ...softmmu.memory import port_key
from .. import flags as F
from ..cpu import (
    CPU,
    CR0_CD,
    CR0_ET,
    CR0_NW,
    CR0_PE,
    CR0_PG,
    CR0_TS,
    CR0_WP,
    CR4_DE,
    CR4_PAE,
    CR4_PCE,
    CR4_PGE,
    CR4_PSE,
    CR4_SMAP,
    CR4_SMEP,
    CR4_TSD,
    CS,
    DESC_A,
    DESC_B,
    DESC_CS,
    DESC_DPL_SHIFT,
    DESC_G,
    DESC_L,
    DESC_P,
    DESC_R,
    DESC_S,
    DESC_W,
    ECX,
    EDX,
    EFER_LMA,
    EFER_LME,
    EFER_NXE,
    EFER_SCE,
    ESP,
    FS,
    GS,
    HF_CPL_MASK,
    HF_CS64,
    HF_PE,
    HF_VM,
    MSR_CSTAR,
    MSR_EFER,
    MSR_FMASK,
    MSR_FS_BASE,
    MSR_GS_BASE,
    MSR_IA32_APICBASE,
    MSR_IA32_MISC_ENABLE,
    MSR_IA32_PAT,
    MSR_IA32_SYSENTER_CS,
    MSR_IA32_SYSENTER_EIP,
    MSR_IA32_SYSENTER_ESP,
    MSR_IA32_TSC,
    MSR_KERNEL_GS_BASE,
    MSR_LSTAR,
    MSR_STAR,
    MSR_TSC_AUX,
    REQ_EXIT,
    REQ_NMI,
    SS,
    MSR_MTRRcap,
    MSR_MTRRdefType,
    SegmentCache,
)
from ..cpuid import FEATURE_BITS
from ..decode import CREG, DREG, IMM, MEM, Operand
from ..emit import MASK, Emitter
from ..exceptions import GP, UD, GuestFault
from ..helpers import helper
from ..interrupts import iret as _iret
from ..mmu import switch_address_space
from ..seg import canonical, code64, sys_read
from ..seg import lldt as _lldt
from ..seg import load_seg as _load_seg
from ..seg import ltr as _ltr
from ..seg import probe_lar as _probe_lar
from ..seg import probe_lsl as _probe_lsl
from ..seg import probe_verify as _probe_verify
from . import op, simd_state


def _call(e: Emitter, name: str, *args: str, result: str | None = None) -> None:
    """Call ``H.<name>(cpu, *args)`` without syncing the locals.

    For helpers that neither read nor write GPRs or the lazy flags; they may
    still raise (descriptor-table reads can #PF), so the instruction is an
    exception point.
    """
    e.helper_call(name, *args, result=result)


def _cpl0(e: Emitter) -> bool:
    """Emit #GP(0) if CPL > 0 (known at translation: part of hflags); True if it did."""
    if e.hflags & 3:
        e.fault(GP, 0)
        e.ended = True
        return True
    return False


def _pmode_only(e: Emitter) -> bool:
    """Emit #UD in real and virtual-8086 mode (SLDT, LAR, ARPL ...: SDM 'not recognized'); True if it did."""
    if not e.hflags & HF_PE or e.hflags & HF_VM:
        e.fault(UD)
        e.ended = True
        return True
    return False


def _mem_only(e: Emitter) -> bool:
    """Emit #UD for a register operand where the instruction needs memory (LGDT, INVLPG ...)."""
    if e.insn.ops[0].kind != MEM:
        e.fault(UD)
        e.ended = True
        return True
    return False


# ---- flag bits ------------------------------------------------------------------
@op("clc", "stc", "cmc", flags="rw", pure=True)
def carry_ops(e: Emitter) -> None:
    name = e.insn.name
    if name == "clc":
        new = f"{e.eflags_arith()} & ~1"
    elif name == "stc":
        new = f"{e.eflags_arith()} | 1"
    else:
        new = f"{e.eflags_arith()} ^ 1"
    e.set_flags_value(new)


@op("cld", "std", flags="", pure=True)
def direction(e: Emitter) -> None:
    if e.insn.name == "cld":
        e.emit(f"cpu.eflags &= ~{F.DF}")
    else:
        e.emit(f"cpu.eflags |= {F.DF}")


@op("cli", flags="", end=True)
def op_cli(e: Emitter) -> None:
    # IF is not part of hflags, but ending the TB lets the exec loop see a
    # pending interrupt right after sti (and keeps cli/sti symmetric).
    e.sync_call("cli", reload=False)
    e.end()


@op("sti", flags="", end=True)
def op_sti(e: Emitter) -> None:
    # STI reads and writes no GPR or lazy flag: a plain call, given its own EIP to find
    # its place in the TB (the interrupt shadow is counted in retired instructions).
    _call(e, "sti", e.this_eip())
    e.end()


@helper
def cli(cpu: CPU) -> None:
    """CLI: #GP(0) when CPL > IOPL (SDM vol. 2 CLI; no VME/PVI: the CPU does not advertise them)."""
    if cpu.cpl > (cpu.eflags >> 12) & 3:
        raise GuestFault(GP, 0)
    cpu.eflags &= ~F.IF


@helper
def sti(cpu: CPU, eip: int) -> None:
    """STI: #GP(0) when CPL > IOPL; opens the interrupt window one instruction later.

    The shadow covers maskable interrupts only: a single-step trap after STI
    is not delayed (SDM vol. 2 STI, vol. 3, 6.8.3).  It ends once the
    instruction after STI has retired: when the retired count reaches STI's
    own index + 2.
    """
    if cpu.cpl > (cpu.eflags >> 12) & 3:
        raise GuestFault(GP, 0)
    if not cpu.eflags & F.IF:
        cpu.eflags |= F.IF
        cpu.inhibit_irq_until = _retired_before(cpu, eip) + 2


def _retired_before(cpu: CPU, eip: int) -> int:
    """Instructions retired before the one at ``eip``: exact, because every helper call
    (``Emitter.helper_call``, used by ``sync_call`` and ``_call``) brings ``cpu.icount``
    up to date for its duration."""
    del eip
    return cpu.icount


@helper
def inhibit_irq(cpu: CPU) -> None:
    """The shadow after MOV SS / POP SS (SDM vol. 3, 6.8.3).

    Interrupts, debug exceptions and single-step traps are inhibited "until
    the instruction boundary following the next instruction": the next
    instruction runs before any of them.  ``cpu.eip`` is the MOV/POP (set
    by ``sync_call``); the shadow ends once the instruction after it has
    retired, i.e. when the retired count reaches its index + 2 (the count
    is exact within a TB through ``icount_now``).
    """
    until = icount_now(cpu, cpu.eip) + 2
    cpu.inhibit_irq_until = until
    cpu.inhibit_debug_until = until


# ---- hlt and port I/O ---------------------------------------------------------
@op("hlt", flags="", end=True)
def op_hlt(e: Emitter) -> None:
    if _cpl0(e):
        return
    e.sync_call("hlt", e.next_eip(), reload=False)
    e.exit(2, e.next_eip())
    e.ended = True


@helper
def hlt(cpu: CPU, next_eip: int) -> None:
    """HLT: stop until an interrupt; the exec loop leaves and the machine decides (halt or wait)."""
    if cpu.cpl != 0:
        raise GuestFault(GP, 0)
    cpu.halted = True
    cpu.interrupt_request |= REQ_EXIT


def _io_access(e: Emitter, port_op: Operand, size: int, call: str) -> str:
    """Emit the permission check and the key of a port access; returns the key expression.

    No ``sync_call``: a device never sees the guest registers (it is given the
    bus, not the CPU), so they stay in the TB's locals; a fault (#GP from the
    check) or a restart leaves through the TB's exception handler, which
    writes them back with this instruction's EIP.  The handler is looked up
    by key in ``PhysMemory.io_rd``/``io_wr`` (``IOR``/``IOW``) at run time, so
    a change of the port map is seen by TBs already built.  ``cpu.icount``
    is exact for the duration of the call (``Emitter.helper_call``'s rule:
    device time comes from it).

    The permission check (SDM vol. 1, 19.5) is decided from the TB's hflags
    where it can be: none in real mode or at CPL 0 outside VM86; at CPL > 0
    an inline IOPL compare, and the TSS bitmap (``io_check``) only when it
    fails; in VM86 the bitmap always.
    """
    e.may_fault = True
    if port_op.kind == IMM:
        port = port_op.imm & 0xFF
        key = e.const(port_key(port, size))
        pexpr = e.const(port)
    else:
        pexpr = e.reg(2, 2)
        key = f"({pexpr} | {size << 16:#x})"
    hf = e.hflags
    cpl = hf & HF_CPL_MASK
    if hf & HF_VM:
        e.emit(f"H.io_check(cpu, {pexpr}, {size})")
    elif hf & HF_PE and cpl:
        e.emit(f"if cpu.eflags >> 12 & 3 < {cpl}: H.io_check(cpu, {pexpr}, {size})")
    done = e.const(e.index) if e.tier1 else f"@IC@{e.index}"
    e.emit(f"cpu.icount += {done}")
    e.emit("try:")
    e.emit(f"    {call.format(key=key)}")
    e.emit("finally:")
    e.emit(f"    cpu.icount -= {done}")
    return key


@op("out", flags="")
def out(e: Emitter) -> None:
    """OUT: the TB is left right after it when the write asked anything of the exec loop.

    A device reaches the exec loop only through ``cpu.interrupt_request`` (an
    IRQ line, a stop, a reset, a timer armed inside the slice: ``kick``), and
    the exec loop looks at it only between TBs.  So when it is set after the
    write, the TB exits here, at the instruction boundary where the exec loop
    would have seen it had ``out`` ended the TB; when it is clear, the exec
    loop would have run on with the next instruction, which is what the TB
    does.  Interrupts raised by an ``out`` land where they did when ``out``
    always ended its TB.
    """
    port_op, src = e.insn.ops
    size = src.size
    _io_access(e, port_op, size, "IOW[{key}](" + e.reg(0, size) + ")")
    with e.block("if cpu.interrupt_request:"):
        e.exit(2, e.next_eip())


@op("in", flags="")
def in_(e: Emitter) -> None:
    dst, port_op = e.insn.ops
    size = dst.size
    v = e.tmp("v")
    _io_access(e, port_op, size, v + " = IOR[{key}]() & " + f"{MASK[size]:#x}")
    e.write_reg(0, size, v)


def check_io(cpu: CPU, port: int, size: int) -> None:
    """IOPL, then the TSS I/O permission bitmap (SDM vol. 1, 19.5; always the bitmap in VM86)."""
    if not cpu.cr[0] & CR0_PE or (cpu.cpl <= (cpu.eflags >> 12) & 3 and not cpu.eflags & F.VM):
        return
    tr = cpu.tr
    if not tr.type & 8 or tr.limit < 0x67:
        raise GuestFault(GP, 0)
    io_base = sys_read(cpu, tr.base + 0x66, 2)
    off = io_base + (port >> 3)
    if off + 1 > tr.limit:
        raise GuestFault(GP, 0)
    bits = sys_read(cpu, tr.base + off, 2)
    if (bits >> (port & 7)) & ((1 << size) - 1):
        raise GuestFault(GP, 0)


@helper
def io_check(cpu: CPU, port: int, size: int) -> None:
    """The permission check of in/out when the TB's inline IOPL compare failed (or in VM86)."""
    check_io(cpu, port, size)


# ---- segments ------------------------------------------------------------------
@helper
def load_seg(cpu: CPU, seg: int, selector: int) -> None:
    """mov/pop/lds to a segment register (seg.load_seg has the checks)."""
    _load_seg(cpu, seg, selector)


# ---- interrupts ------------------------------------------------------------------
@op("int", "int3", "into", "int1", flags="r", end=True)
def int_(e: Emitter) -> None:
    """INT n / INT3 / INTO are software interrupts (gate DPL checked, EXT=0); INT1 is not.

    SDM vol. 2 INT n: in virtual-8086 mode with IOPL < 3, INT n (only the
    CD opcode) is #GP(0) — IOPL is not in hflags, so that check runs here.
    """
    name = e.insn.name
    e.may_fault = True
    nxt = e.next_eip()
    if name == "int1":
        # ICEBP: a trap-like #DB, delivered like a hardware exception (no DPL check, EXT=1).
        # It retires before the delivery; the exec loop counts only soft interrupts so.
        e.emit("cpu.icount += 1")
        e.emit(f"raise Fault(1, next_eip={nxt})")
        e.ended = True
        return
    if name == "into":
        with e.block(f"if {e.cond(0)}:"):
            e.emit(f"raise Fault(4, soft=True, next_eip={nxt})")
        e.jump(e.insn.next, 0)
        e.ended = True
        return
    if name == "int3":
        vec = "3"
    else:
        vec = e.const(e.insn.ops[0].imm & 0xFF)
        if e.hflags & HF_VM:
            with e.block(f"if cpu.eflags & {F.IOPL:#x} != {F.IOPL:#x}:"):
                e.fault(GP, 0)
    e.emit(f"raise Fault({vec}, soft=True, next_eip={nxt})")
    e.ended = True


@op("iretq", "iretd", "iret", flags="", end=True)
def op_iret(e: Emitter) -> None:
    # reload: the helper changes ESP and the flags, which the exit writes back from the locals.
    # The next EIP is what a task return (NT=1) saves in the abandoned TSS.
    e.sync_call("iret", str(e.opsize), e.next_eip())
    e.exit(2, "cpu.eip")
    e.ended = True


@helper
def iret(cpu: CPU, opsize: int, next_eip: int) -> None:
    _iret(cpu, opsize, next_eip)
    if cpu.nmi_blocked:
        # An IRET that completes ends NMI blocking (SDM vol. 3, 6.7.1); a latched NMI is taken next.
        cpu.nmi_blocked = False
        if cpu.nmi_pending:
            cpu.interrupt_request |= REQ_NMI


# ---- sysenter / sysexit ------------------------------------------------------------------
# The flat segments SYSENTER/SYSEXIT load without reading the GDT (SDM vol. 2 SYSENTER,
# SYSEXIT): base 0, limit 0xFFFFF pages, 32-bit; code execute/read accessed, data
# read/write accessed.
_SYS_CODE = DESC_P | DESC_S | DESC_CS | DESC_R | DESC_A | DESC_B | DESC_G
_SYS_DATA = DESC_P | DESC_S | DESC_W | DESC_A | DESC_B | DESC_G
_SYS_CODE64 = DESC_P | DESC_S | DESC_CS | DESC_R | DESC_A | DESC_L | DESC_G  # IA-32e mode: L=1, D=0


@op("sysenter", "sysexit", flags="", end=True)
def op_sysenter(e: Emitter) -> None:
    """SYSENTER / SYSEXIT: the fast system call pair; the helpers load CS, SS, ESP and EIP."""
    if e.insn.name == "sysexit":
        e.sync_call("sysexit", str(e.opsize))
    else:
        e.sync_call("sysenter")
    e.exit(2, "cpu.eip")
    e.ended = True


@helper
def sysenter(cpu: CPU) -> None:
    """SYSENTER (SDM vol. 2): to CPL 0 at SYSENTER_CS:SYSENTER_EIP with SYSENTER_CS+8:SYSENTER_ESP.

    #GP(0) in real mode or when SYSENTER_CS[15:2] is 0.  Clears VM, IF and
    RF; the new CS and SS caches are flat ring-0 segments whatever the GDT
    holds.  Allowed at any CPL and from virtual-8086 mode.  In IA-32e mode
    CS is a 64-bit segment and RSP/RIP take all 64 bits of the MSRs; from
    64-bit code only on an Intel CPU (#UD on AMD's, as QEMU checks the vendor).
    """
    cs = cpu.msr.get(MSR_IA32_SYSENTER_CS, 0) & 0xFFFF
    lma = bool(cpu.efer & EFER_LMA)
    if lma and code64(cpu) and not _intel(cpu):
        raise GuestFault(UD)
    if not cpu.cr[0] & CR0_PE or not cs & 0xFFFC:
        raise GuestFault(GP, 0)
    cpu.eflags &= ~(F.VM | F.IF | F.RF)
    cpu.segs[CS] = SegmentCache(cs & 0xFFFC, 0, 0xFFFFFFFF, _SYS_CODE64 if lma else _SYS_CODE)
    cpu.segs[SS] = SegmentCache((cs & 0xFFFC) + 8, 0, 0xFFFFFFFF, _SYS_DATA)
    width = 0xFFFFFFFFFFFFFFFF if lma else 0xFFFFFFFF
    cpu.regs[ESP] = cpu.msr.get(MSR_IA32_SYSENTER_ESP, 0) & width
    cpu.eip = cpu.msr.get(MSR_IA32_SYSENTER_EIP, 0) & width
    cpu.compute_hflags()


def _intel(cpu: CPU) -> bool:
    """Is the CPUID vendor GenuineIntel (leaf 0 EBX = "Genu")?"""
    return cpuid(cpu, 0, 0)[1] == 0x756E6547


@helper
def sysexit(cpu: CPU, opsize: int = 4) -> None:  # noqa: F811
    """SYSEXIT (SDM vol. 2): to CPL 3 at SYSENTER_CS+16:EDX with SYSENTER_CS+24:ECX (RPL 3).

    #GP(0) in real mode, at CPL > 0, or when SYSENTER_CS[15:2] is 0.  EFLAGS
    is not changed; CS and SS become flat ring-3 segments.  With REX.W (64-bit
    mode): a 64-bit CS at SYSENTER_CS+32, SS at +40, RIP = RDX, RSP = RCX.
    """
    cs = cpu.msr.get(MSR_IA32_SYSENTER_CS, 0) & 0xFFFF
    if not cpu.cr[0] & CR0_PE or cpu.cpl != 0 or not cs & 0xFFFC or cpu.eflags & F.VM:
        raise GuestFault(GP, 0)
    dpl3 = 3 << DESC_DPL_SHIFT
    if opsize == 8:
        cpu.segs[CS] = SegmentCache(((cs + 32) & 0xFFFC) | 3, 0, 0xFFFFFFFF, _SYS_CODE64 | dpl3)
        cpu.segs[SS] = SegmentCache(((cs + 40) & 0xFFFC) | 3, 0, 0xFFFFFFFF, _SYS_DATA | dpl3)
        cpu.regs[ESP] = cpu.regs[ECX]
        cpu.eip = cpu.regs[EDX]
    else:
        cpu.segs[CS] = SegmentCache(((cs + 16) & 0xFFFC) | 3, 0, 0xFFFFFFFF, _SYS_CODE | dpl3)
        cpu.segs[SS] = SegmentCache(((cs + 24) & 0xFFFC) | 3, 0, 0xFFFFFFFF, _SYS_DATA | dpl3)
        cpu.regs[ESP] = cpu.regs[ECX] & 0xFFFFFFFF
        cpu.eip = cpu.regs[EDX] & 0xFFFFFFFF
    cpu.compute_hflags()


# ---- syscall / sysret / swapgs (AMD64 APM vol. 3; SDM vol. 2 SYSCALL, SYSRET, SWAPGS) ----------------
# SYSCALL/SYSRET load flat segments without reading the GDT, as SYSENTER/SYSEXIT do.
_DPL3 = 3 << DESC_DPL_SHIFT
# SYSRET's RFLAGS <- R11 & 3C7FD7H | 2 (SDM vol. 2 SYSRET): RF and VM are cleared.
_SYSRET_FLAGS = 0x3C7FD7


@op("syscall", "sysret", flags="", end=True)
def op_syscall(e: Emitter) -> None:
    """SYSCALL / SYSRET: helpers load CS, SS, RIP (and RCX, R11, RFLAGS); every check is at run time."""
    if e.insn.name == "syscall":
        e.sync_call("syscall", e.next_eip())
    else:
        e.sync_call("sysret", str(e.opsize))
    e.exit(2, "cpu.eip")
    e.ended = True


@helper
def syscall(cpu: CPU, next_eip: int) -> None:
    """SYSCALL (as QEMU's helper_syscall, which follows AMD: also allowed outside 64-bit mode).

    #UD without EFER.SCE.  In IA-32e mode: RCX = the next RIP, R11 = RFLAGS
    (RF clear), RFLAGS &= ~(SFMASK | RF), CS = STAR[47:32] (64-bit, DPL 0),
    SS = STAR[47:32] + 8, RIP = LSTAR from 64-bit code, CSTAR from
    compatibility mode.  Legacy mode: ECX = the next EIP, IF/RF/VM cleared,
    32-bit flat CS/SS, EIP = STAR[31:0].
    """
    if not cpu.efer & EFER_SCE:
        raise GuestFault(UD)
    star = cpu.msr.get(MSR_STAR, 0)
    selector = (star >> 32) & 0xFFFF
    if cpu.efer & EFER_LMA:
        in64 = code64(cpu)
        cpu.set_gpr(ECX, next_eip)
        rflags = cpu.get_eflags() & ~F.RF
        cpu.set_gpr(11, rflags)
        cpu.set_eflags(rflags & ~(cpu.msr.get(MSR_FMASK, 0) | F.RF))
        cpu.segs[CS] = SegmentCache(selector & 0xFFFC, 0, 0xFFFFFFFF, _SYS_CODE64)
        cpu.segs[SS] = SegmentCache((selector + 8) & 0xFFFC, 0, 0xFFFFFFFF, _SYS_DATA)
        cpu.eip = cpu.msr.get(MSR_LSTAR if in64 else MSR_CSTAR, 0)
    else:
        cpu.regs[ECX] = next_eip & 0xFFFFFFFF
        cpu.eflags &= ~(F.IF | F.RF | F.VM)
        cpu.segs[CS] = SegmentCache(selector & 0xFFFC, 0, 0xFFFFFFFF, _SYS_CODE)
        cpu.segs[SS] = SegmentCache((selector + 8) & 0xFFFC, 0, 0xFFFFFFFF, _SYS_DATA)
        cpu.eip = star & 0xFFFFFFFF
    cpu.compute_hflags()


@helper
def sysret(cpu: CPU, opsize: int) -> None:
    """SYSRET: back to CPL 3.  #UD without EFER.SCE; #GP(0) outside protected mode or at CPL > 0.

    In IA-32e mode with REX.W: CS = STAR[63:48] + 16 (64-bit), RIP = RCX, which
    must be canonical (#GP(0), the Intel behaviour that keeps the fault in
    ring 0); without REX.W: CS = STAR[63:48] (32-bit), EIP = ECX.  SS =
    STAR[63:48] + 8, RPL 3; RFLAGS from R11.  Legacy mode (AMD): IF is set.
    """
    if not cpu.efer & EFER_SCE:
        raise GuestFault(UD)
    if not cpu.cr[0] & CR0_PE or cpu.cpl != 0:
        raise GuestFault(GP, 0)
    selector = (cpu.msr.get(MSR_STAR, 0) >> 48) & 0xFFFF
    rcx = cpu.get_gpr(ECX)
    if cpu.efer & EFER_LMA:
        if opsize == 8:
            if not canonical(rcx):
                raise GuestFault(GP, 0)
            cs = SegmentCache(((selector + 16) & 0xFFFF) | 3, 0, 0xFFFFFFFF, _SYS_CODE64 | _DPL3)
            rip = rcx
        else:
            cs = SegmentCache(selector | 3, 0, 0xFFFFFFFF, _SYS_CODE | _DPL3)
            rip = rcx & 0xFFFFFFFF
        cpu.segs[CS] = cs
        cpu.segs[SS] = SegmentCache(((selector + 8) & 0xFFFF) | 3, 0, 0xFFFFFFFF, _SYS_DATA | _DPL3)
        cpu.eip = rip
        cpu.set_eflags((cpu.get_gpr(11) & _SYSRET_FLAGS) | 2)
        return
    cpu.eflags |= F.IF
    cpu.segs[CS] = SegmentCache(selector | 3, 0, 0xFFFFFFFF, _SYS_CODE | _DPL3)
    cpu.segs[SS] = SegmentCache(((selector + 8) & 0xFFFF) | 3, 0, 0xFFFFFFFF, _SYS_DATA | _DPL3)
    cpu.eip = rcx & 0xFFFFFFFF
    cpu.compute_hflags()


@op("swapgs", flags="")
def op_swapgs(e: Emitter) -> None:
    """SWAPGS: exchange GS.base and IA32_KERNEL_GS_BASE.  GS-relative accesses read the base
    at run time (``SB[5]``), so the TB goes on."""
    _call(e, "swapgs")


@helper
def swapgs(cpu: CPU) -> None:
    """SWAPGS: #UD outside 64-bit mode, #GP(0) at CPL > 0 (SDM vol. 2 SWAPGS)."""
    if not code64(cpu):
        raise GuestFault(UD)
    if cpu.cpl != 0:
        raise GuestFault(GP, 0)
    base = cpu.segs[GS].base
    set_seg_base(cpu, GS, cpu.kernel_gs_base)
    cpu.kernel_gs_base = base


@op("ud2", flags="", end=True)
def ud2(e: Emitter) -> None:
    e.fault(UD)
    e.ended = True


# ---- descriptor-table registers ----------------------------------------------------
def _amask(e: Emitter) -> int:
    """The address width of the code being translated: 64 bits in 64-bit mode."""
    return 0xFFFFFFFFFFFFFFFF if e.hflags & HF_CS64 else 0xFFFFFFFF


@op("lgdt", "lidt", flags="")
def lgdt(e: Emitter) -> None:
    """LGDT/LIDT m16&32 (m16&64 in 64-bit mode, whatever the operand size): 16-bit limit, then
    the base (24 bits with a 16-bit operand size outside 64-bit mode)."""
    if _mem_only(e) or _cpl0(e):
        return
    a = e.ea(e.insn.ops[0])
    limit = e.load_mem(a, 2)
    a2 = e.tmp("a")
    e.emit(f"{a2} = {a} + 2 & {_amask(e):#x}")
    table = "gdtr" if e.insn.name == "lgdt" else "idtr"
    if e.hflags & HF_CS64:
        base = e.load_mem(a2, 8)
        e.emit(f"cpu.{table}_limit, cpu.{table}_base = {limit}, {base}")
        return
    base = e.load_mem(a2, 4)
    mask = 0xFFFFFF if e.opsize == 2 else 0xFFFFFFFF
    e.emit(f"cpu.{table}_limit, cpu.{table}_base = {limit}, {base} & {mask:#x}")


@op("sgdt", "sidt", flags="")
def sgdt(e: Emitter) -> None:
    """SGDT/SIDT m: limit and base (8 bytes in 64-bit mode); a 16-bit operand size stores the
    base's top byte as 0 (QEMU)."""
    if _mem_only(e):
        return
    table = "gdtr" if e.insn.name == "sgdt" else "idtr"
    a = e.ea(e.insn.ops[0])
    e.store_mem(a, 2, f"cpu.{table}_limit & 0xFFFF")
    a2 = e.tmp("a")
    e.emit(f"{a2} = {a} + 2 & {_amask(e):#x}")
    if e.hflags & HF_CS64:
        e.store_mem(a2, 8, f"cpu.{table}_base")
        return
    mask = 0xFFFFFF if e.opsize == 2 else 0xFFFFFFFF
    e.store_mem(a2, 4, f"cpu.{table}_base & {mask:#x}")


@op("sldt", "str", flags="")
def sldt(e: Emitter) -> None:
    """SLDT/STR: the selector; a register destination is zero-extended to its size."""
    if _pmode_only(e):
        return
    (dst,) = e.insn.ops
    src = "cpu.ldtr.selector" if e.insn.name == "sldt" else "cpu.tr.selector"
    if dst.kind == MEM:
        e.store(dst, src, size=2)
    else:
        e.write_reg(dst.reg, dst.size, src)


@op("lldt", "ltr", flags="")
def lldt(e: Emitter) -> None:
    """LLDT/LTR r/m16 (CPL 0, protected mode): the checks are in seg.lldt / seg.ltr."""
    if _pmode_only(e) or _cpl0(e):
        return
    sel = e.load(e.insn.ops[0], size=2)
    _call(e, "load_" + e.insn.name, sel)


@helper
def load_lldt(cpu: CPU, selector: int) -> None:
    _lldt(cpu, selector)


@helper
def load_ltr(cpu: CPU, selector: int) -> None:
    _ltr(cpu, selector)


# ---- segment probes ----------------------------------------------------------------
def _set_zf(e: Emitter, cond: str) -> None:
    e.set_flags_value(f"({e.eflags_arith()}) & {~F.ZF & F.ARITH:#x} | ({F.ZF} if {cond} else 0)")


@op("lar", "lsl", flags="rw")
def lar(e: Emitter) -> None:
    """LAR/LSL r, r/m16: ZF=1 and the access rights / limit if the selector is visible, else ZF=0.

    No fault for a null, out-of-table or invisible selector (SDM vol. 2 LAR, LSL);
    a page fault reading the descriptor table still faults.
    """
    if _pmode_only(e):
        return
    dst, src = e.insn.ops
    sel = e.load(src, size=2)
    r = e.tmp("r")
    _call(e, "probe_" + e.insn.name, sel, result=r)
    _set_zf(e, f"{r} is not None")
    mask = MASK[dst.size]
    if e.insn.name == "lar" and dst.size == 2:
        mask = 0xFF00
    with e.block(f"if {r} is not None:"):
        e.write_reg(dst.reg, dst.size, f"{r} & {mask:#x}")


@helper
def probe_lar(cpu: CPU, selector: int) -> int | None:
    return _probe_lar(cpu, selector)


@helper
def probe_lsl(cpu: CPU, selector: int) -> int | None:
    return _probe_lsl(cpu, selector)


@op("verr", "verw", flags="rw")
def verr(e: Emitter) -> None:
    """VERR/VERW r/m16: ZF=1 if the segment is readable / writable at CPL (no fault on bad selectors)."""
    if _pmode_only(e):
        return
    sel = e.load(e.insn.ops[0], size=2)
    r = e.tmp("r")
    _call(e, "probe_verify", sel, "True" if e.insn.name == "verw" else "False", result=r)
    _set_zf(e, r)


@helper
def probe_verify(cpu: CPU, selector: int, write: bool) -> bool:
    return _probe_verify(cpu, selector, write)


@op("arpl", flags="rw")
def arpl(e: Emitter) -> None:
    """ARPL r/m16, r16: raise the destination's RPL to the source's; ZF tells whether it changed."""
    if _pmode_only(e):
        return
    dst, src = e.insn.ops
    addr = e.ea(dst) if dst.kind == MEM else None
    d = e.load(dst, stable=True, size=2, addr=addr)
    s = e.load(src, stable=True, size=2)
    c = e.tmp("c")
    e.emit(f"{c} = ({d} & 3) < ({s} & 3)")
    with e.block(f"if {c}:"):
        e.store(dst, f"{d} & 0xFFFC | {s} & 3", size=2, addr=addr)
    _set_zf(e, c)


# ---- caches and TLB ----------------------------------------------------------------
@op("invlpg", flags="", end=True)
def invlpg(e: Emitter) -> None:
    """INVLPG m: drop the TLB entries of the page holding the linear address (SDM vol. 2 INVLPG).

    Ends the TB: the following instructions may sit on a page whose mapping
    just changed.
    """
    if _mem_only(e) or _cpl0(e):
        return
    a = e.ea(e.insn.ops[0])
    e.may_fault = True
    e.emit(f"cpu.tlb.flush_page({a})")
    e.end()


@op("wbinvd", "invd", flags="")
def wbinvd(e: Emitter) -> None:
    """WBINVD/INVD: no caches to write back or drop; only the CPL 0 check remains."""
    _cpl0(e)


# ---- control registers -------------------------------------------------------------
@op("clts", flags="")
def clts(e: Emitter) -> None:
    """CLTS: clear CR0.TS.  TS is checked at run time by the x87/SSE ops, so the TB goes on."""
    if _cpl0(e):
        return
    e.emit(f"cpu.cr[0] &= ~{CR0_TS}")


@op("lmsw", flags="", end=True)
def op_lmsw(e: Emitter) -> None:
    """LMSW r/m16: load CR0 bits 0-3 (PE MP EM TS); it can set PE but not clear it (SDM vol. 2)."""
    if _cpl0(e):
        return
    v = e.load(e.insn.ops[0], size=2)
    _call(e, "lmsw", v)
    e.end()


@helper
def lmsw(cpu: CPU, value: int) -> None:
    write_cr0(cpu, (cpu.cr[0] & ~0xE) | (value & 0xF))
    cpu.compute_hflags()


@op("smsw", flags="")
def smsw(e: Emitter) -> None:
    """SMSW r/m: CR0 (a register gets as many bits as its size, memory 16 bits); any CPL (no UMIP)."""
    (dst,) = e.insn.ops
    if dst.kind == MEM:
        e.store(dst, "cpu.cr[0] & 0xFFFF", size=2)
    else:
        e.write_reg(dst.reg, dst.size, f"cpu.cr[0] & {MASK[dst.size]:#x}")


def mov_system(e: Emitter) -> None:
    """mov to/from CRn / DRn (called from the data family's mov)."""
    dst, src = e.insn.ops
    # The GPR is 64-bit in 64-bit mode, 32-bit elsewhere (the operand size prefixes are ignored).
    if dst.kind in (CREG, DREG):
        kind = "cr" if dst.kind == CREG else "dr"
        size = 8 if src.size == 8 else 4
        e.sync_call(f"mov_to_{kind}", str(dst.reg), e.reg(src.reg, size), reload=False)
        e.end()
        return
    kind = "cr" if src.kind == CREG else "dr"
    size = 8 if dst.size == 8 else 4
    v = e.tmp("v")
    e.sync_call(f"mov_from_{kind}", str(src.reg), result=v)
    e.write_reg(dst.reg, size, v if size == 8 else f"{v} & 0xFFFFFFFF")


CR0_DEFINED = 0xE005003F  # PE MP EM TS ET NE WP AM NW CD PG; writes to other bits are ignored (SDM 2.5)
# CR4 bits this CPU supports, matching CPUID (leaf 1 EDX, leaf 7 EBX): VME/PVI,
# MCE, OSFXSR, OSXMMEXCPT are not advertised, so setting them is #GP like any
# reserved bit (SDM vol. 2 MOV CR).  PAE selects the 3-level walk (core/mmu.py).
CR4_SUPPORTED = CR4_TSD | CR4_DE | CR4_PSE | CR4_PAE | CR4_PGE | CR4_PCE | CR4_SMEP | CR4_SMAP
CR4_SUPPORTED |= simd_state.CR4_SIMD  # OSFXSR OSXMMEXCPT OSXSAVE, unless the model lacks the feature


@helper
def mov_from_cr(cpu: CPU, n: int) -> int:
    """MOV r, CRn: 64-bit values in 64-bit mode; CR8 is the local APIC's TPR[7:4] (0 without an APIC)."""
    if cpu.cpl != 0:
        raise GuestFault(GP, 0)
    if n == 8:
        if not code64(cpu):
            raise GuestFault(UD)
        return (cpu.apic.tpr >> 4) & 0xF if cpu.apic is not None else 0
    if n not in (0, 2, 3, 4):
        raise GuestFault(UD)
    return cpu.cr[n] if code64(cpu) else cpu.cr[n] & 0xFFFFFFFF


def write_cr0(cpu: CPU, value: int) -> None:
    """MOV CR0 / LMSW: #GP(0) for PG without PE or NW without CD; flush the TLB on PE/PG/WP changes.

    Long mode (SDM vol. 3, 10.8.5, and vol. 2 MOV CR): setting PG with
    EFER.LME activates IA-32e mode (EFER.LMA), which needs CR4.PAE (#GP(0)
    otherwise); clearing PG deactivates it, which 64-bit code may not do
    (#GP(0): only compatibility mode can leave long mode).
    """
    value = (value & CR0_DEFINED) | CR0_ET  # ET is hardwired to 1
    if value & CR0_PG and not value & CR0_PE:
        raise GuestFault(GP, 0)
    if value & CR0_NW and not value & CR0_CD:
        raise GuestFault(GP, 0)
    old = cpu.cr[0]
    efer = cpu.efer
    if value & CR0_PG and not old & CR0_PG and efer & EFER_LME:
        if not cpu.cr[4] & CR4_PAE:
            raise GuestFault(GP, 0)
        cpu.efer = efer | EFER_LMA
    elif old & CR0_PG and not value & CR0_PG and efer & EFER_LMA:
        if code64(cpu):
            raise GuestFault(GP, 0)
        cpu.efer = efer & ~EFER_LMA
        cpu.eip &= 0xFFFFFFFF
    cpu.cr[0] = value
    if (old ^ value) & (CR0_PG | CR0_WP | CR0_PE):
        cpu.tlb.flush()


@helper
def mov_to_cr(cpu: CPU, n: int, value: int) -> None:
    """MOV CRn, r.  In 64-bit mode the upper 32 bits of CR0/CR4 and CR3 bits above MAXPHYADDR are
    reserved (#GP(0)); CR4.PAE may not be cleared while IA-32e mode is active; CR8 writes TPR[7:4]."""
    if cpu.cpl != 0:
        raise GuestFault(GP, 0)
    if n in (0, 4) and value >> 32:
        raise GuestFault(GP, 0)
    if n == 0:
        write_cr0(cpu, value)
    elif n == 2:
        cpu.cr[2] = value
        return
    elif n == 3:
        if cpu.efer & EFER_LMA and value >> cpu.phys_bits:
            raise GuestFault(GP, 0)
        old3 = cpu.cr[3]
        cpu.cr[3] = value
        if cpu.cr[0] & CR0_PG:
            switch_address_space(cpu, old3, value)
        return  # hflags do not depend on CR2/CR3
    elif n == 4:
        if value & ~CR4_SUPPORTED or value & simd_state.cr4_reserved(cpu):
            raise GuestFault(GP, 0)
        if cpu.efer & EFER_LMA and not value & CR4_PAE:
            raise GuestFault(GP, 0)
        old = cpu.cr[4]
        cpu.cr[4] = value
        # Cached translations depend on PSE/PAE, global pages on PGE, rights on SMEP/SMAP.
        if (old ^ value) & (CR4_PGE | CR4_PSE | CR4_PAE | CR4_SMEP | CR4_SMAP):
            cpu.tlb.flush()
    elif n == 8:
        if not code64(cpu):
            raise GuestFault(UD)
        if value & ~0xF:
            raise GuestFault(GP, 0)
        if cpu.apic is not None:
            # Only TPR[7:4] (SDM vol. 3, 10.8.6.1); the TB ends, so a now-unmasked interrupt is taken next.
            cpu.apic.tpr = value << 4
    else:
        raise GuestFault(UD)
    cpu.compute_hflags()


def tlb_flush_nonglobal(cpu: CPU) -> None:
    """mov cr3: drop every entry except global pages (CR4.PGE) — SDM vol. 3, 4.10.4.1."""
    if cpu.cr[4] & CR4_PGE:
        cpu.tlb.flush_nonglobal()
    else:
        cpu.tlb.flush()


def _dr_index(cpu: CPU, n: int) -> int:
    """DR4/DR5 alias DR6/DR7 unless CR4.DE is set, when they are #UD (SDM vol. 3, 17.2.2)."""
    if n in (4, 5):
        if cpu.cr[4] & CR4_DE:
            raise GuestFault(UD)
        return n + 2
    return n


@helper
def mov_from_dr(cpu: CPU, n: int) -> int:
    if cpu.cpl != 0:
        raise GuestFault(GP, 0)
    return cpu.dr[_dr_index(cpu, n)]


@helper
def mov_to_dr(cpu: CPU, n: int, value: int) -> None:
    if cpu.cpl != 0:
        raise GuestFault(GP, 0)
    n = _dr_index(cpu, n)
    if n in (6, 7) and value >> 32:
        raise GuestFault(GP, 0)  # 64-bit mode: bits 63:32 of DR6/DR7 must be 0 (SDM vol. 2 MOV DR)
    if n == 6:
        value = (value & 0x1E00F) | 0xFFFF0FF0
    elif n == 7:
        value = (value & 0xFFFF2BFF) | 0x400
    cpu.dr[n] = value
    if n != 6:
        # DR0-3 addresses or DR7 enables changed: the guest's own breakpoints and
        # data watchpoints are marks and TLB flags like gdb's (machine.update_guest_debug).
        cpu.events.update_guest_debug(cpu)


# ---- CPUID -----------------------------------------------------------------------------
CPUID_MAX_BASIC = 0xD  # leaf 0DH: XSAVE (ops/simd_state.py)
CPUID_MAX_EXT = 0x80000008
CPUID_SIGNATURE = (6 << 8) | (3 << 4) | 3  # family 6, model 3, stepping 3 (a Pentium II)
# Leaf 1 EDX: FPU DE PSE TSC MSR PAE CX8 APIC SEP MTRR PGE CMOV.  FPU: the x87 (ops/x87.py).
# MMX FXSR SSE SSE2 and leaf 1 ECX: ops/simd_state.py (ORed in by cpuid()).  No VME, MCE/MCA, PAT,
# PSE-36, CLFSH.  SEP: SYSENTER/SYSEXIT and their MSRs exist (signature 0x633
# is not the Pentium Pro whose SEP bit lied, SDM vol. 2 SYSENTER).  MTRR: the
# MTRR MSRs exist (storage; an emulator has no caches to steer), and OSes read
# them only when this bit says they exist.
CPUID_1_EDX = (
    1
    | (1 << 2)
    | (1 << 3)
    | (1 << 4)
    | (1 << 5)
    | (1 << 6)
    | (1 << 8)
    | (1 << 9)
    | (1 << 11)
    | (1 << 12)
    | (1 << 13)
    | (1 << 15)
    | (1 << 16)
)
# PAT (bit 16): IA32_PAT exists and the walks take bit 7 of a PTE and bit 12 of a large page as
# the PAT index (memory types have no effect here), so reporting it is consistent with them.
# Leaf 1 ECX bit 31: running under a hypervisor, as QEMU's TCG reports on every model (Linux then
# leaves the PMU alone); leaf 0x40000000 names it ("GDBEMUGDBEMU", max leaf 0x40000001, as TCG).
CPUID_1_ECX = 1 << 31
HYPERVISOR_SIGNATURE = b"GDBEMUGDBEMU"
# Leaf 0x80000001 EDX: SYSCALL (11: SYSCALL/SYSRET, EFER.SCE, STAR/LSTAR/CSTAR/SFMASK),
# NX (20: the PAE/4-level walks honour it with EFER.NXE), Page1GB (26: 1 GiB pages in
# 4-level paging), RDTSCP (27: RDTSCP and IA32_TSC_AUX), LM (29: long mode, EFER.LME,
# FS/GS_BASE, KERNEL_GS_BASE, SWAPGS).  ECX: LAHF-SAHF (0: LAHF/SAHF in 64-bit mode).
CPUID_80000001_EDX = (1 << 11) | (1 << 20) | (1 << 26) | (1 << 27) | (1 << 29)
CPUID_80000001_ECX = 1
# Leaf 2 cache/TLB descriptors of a Pentium II: AL=1 (one call), ITLB 4K/4M, DTLB 4K/4M,
# 16 KiB L1 I and D, 512 KiB L2.
CPUID_2 = (0x03020101, 0, 0, 0x0C040843)
# Leaf 7 sub-leaf 0 EBX: SMEP (bit 7) and SMAP (bit 20), which the page walk
# enforces (core/mmu.py); SMAP brings STAC/CLAC.  Leaves 3-6 are all zero: no
# processor serial number, no deterministic cache leaf (leaf 2 describes the
# caches), no MONITOR/MWAIT, no thermal/power features.
CPUID_7_EBX = (1 << 7) | (1 << 20)
BRAND = b"gdbemu virtual CPU".ljust(48, b"\0")


def address_sizes(cpu: CPU, long_mode: bool) -> int:
    """Leaf 0x80000008 EAX: linear-address bits (15:8) and MAXPHYADDR (7:0), as QEMU reports them.

    48-bit linear addresses with long mode, else 32; MAXPHYADDR is the page
    walk's, ``cpu.phys_bits`` (a model with long mode has 40, as QEMU's; see
    boot/firmware.apply_cpu_model).
    """
    return ((48 if long_mode else 32) << 8) | cpu.phys_bits


def hypervisor_leaf(leaf: int) -> tuple[int, int, int, int]:
    """Leaves 0x40000000-0x400000FF of a CPU that reports the hypervisor bit (as QEMU's TCG)."""
    if leaf == 0x40000000:
        sig = HYPERVISOR_SIGNATURE
        ebx, ecx, edx = (int.from_bytes(sig[i : i + 4], "little") for i in (0, 4, 8))
        return 0x40000001, ebx, ecx, edx
    return 0, 0, 0, 0


def _dwords(data: bytes) -> tuple[int, int, int, int]:
    a, b, c, d = (int.from_bytes(data[i : i + 4], "little") for i in range(0, 16, 4))
    return a, b, c, d


@helper
def cpuid(cpu: CPU, leaf: int, subleaf: int) -> tuple[int, int, int, int]:
    """CPUID: (EAX, EBX, ECX, EDX).  Leaves beyond the maximum return the highest basic leaf (Intel)."""
    model = cpu.cpuid_model  # a named -cpu model (boot/firmware.py), None: this table
    if model is not None:
        return model(cpu, leaf, subleaf)
    if leaf == 0:
        ebx, edx, ecx = _dwords(b"GenuineIntel" + b"\0" * 4)[:3]
        return CPUID_MAX_BASIC, ebx, ecx, edx
    if leaf == 1:
        ecx = CPUID_1_ECX | simd_state.CPUID_1_ECX_SIMD
        regs = [CPUID_SIGNATURE, (cpu.index & 0xFF) << 24, ecx, CPUID_1_EDX]
        simd_state.cpuid_dynamic(cpu, 1, 0, regs)
        return regs[0], regs[1], regs[2], regs[3] | simd_state.CPUID_1_EDX_SIMD
    if leaf == 0xD:
        a, b, c, d = simd_state.cpuid_xsave(cpu, subleaf)
        return a, b, c, d
    if leaf == 2:
        return CPUID_2
    if leaf == 7:
        return (0, CPUID_7_EBX | simd_state.CPUID_7_EBX_SIMD, 0, 0) if subleaf == 0 else (0, 0, 0, 0)
    if 3 <= leaf <= CPUID_MAX_BASIC:
        return 0, 0, 0, 0
    if 0x40000000 <= leaf <= 0x400000FF:
        return hypervisor_leaf(leaf)
    if leaf == 0x80000000:
        return CPUID_MAX_EXT, 0, 0, 0
    if leaf == 0x80000001:
        return 0, 0, CPUID_80000001_ECX | simd_state.CPUID_80000001_ECX_SIMD, CPUID_80000001_EDX
    if 0x80000002 <= leaf <= 0x80000004:
        k = leaf - 0x80000002
        return _dwords(BRAND[16 * k : 16 * k + 16])
    if 0x80000005 <= leaf <= 0x80000007:
        return 0, 0, 0, 0
    if leaf == 0x80000008:
        return address_sizes(cpu, True), 0, 0, 0
    return cpuid(cpu, CPUID_MAX_BASIC, subleaf)


_core_features: frozenset[str] | None = None


def has_feature(cpu: CPU, name: str) -> bool:
    """Does this CPU's CPUID (its model's, or the core table) report feature ``name`` (core/cpuid.py names)?

    Cheap enough for the page walk (1 GiB pages): a set lookup in the model's
    resolved features, or in the core table's (computed once).
    """
    global _core_features
    model = cpu.cpuid_model
    if model is None:
        if _core_features is None:
            from ..cpuid import implemented

            _core_features = implemented()
        return name in _core_features
    features = getattr(getattr(model, "__self__", None), "features", None)
    if isinstance(features, frozenset):
        return name in features
    leaf, subleaf, reg, bit = FEATURE_BITS[name]
    return bool(cpuid(cpu, leaf, subleaf)[reg] >> bit & 1)


@op("cpuid", flags="", pure=True)
def cpuid_op(e: Emitter) -> None:
    t = e.tmp("c")
    e.emit(f"{t} = H.cpuid(cpu, {e.reg(0)}, {e.reg(1)})")
    for i, r in enumerate((0, 3, 1, 2)):  # EAX EBX ECX EDX
        e.write_reg(r, 4, f"{t}[{i}]")


@op("stac", "clac", flags="", end=True)
def stac(e: Emitter) -> None:
    """STAC/CLAC: set/clear EFLAGS.AC, which lifts/restores SMAP for supervisor accesses.

    #UD at CPL > 0 and in virtual-8086 mode (SDM vol. 2 STAC).  AC selects the
    mmu_idx (part of hflags), so the TB ends.
    """
    if e.hflags & 3:
        e.fault(UD)
        e.ended = True
        return
    if e.insn.name == "stac":
        e.emit(f"cpu.eflags |= {F.AC:#x}")
    else:
        e.emit(f"cpu.eflags &= ~{F.AC:#x}")
    e.emit("cpu.compute_hflags()")
    e.end()


# ---- time-stamp counter and MSRs ------------------------------------------------------
def icount_now(cpu: CPU, eip: int) -> int:
    """Instructions retired before the one at ``eip`` (the helper's instruction).

    Exact: ``Emitter.sync_call`` brings ``cpu.icount`` up to date for the
    duration of every helper call, whatever the TB's shape.  ``eip`` is kept
    for the callers' readability.
    """
    del eip
    return cpu.icount


def read_tsc(cpu: CPU, eip: int) -> int:
    return (icount_now(cpu, eip) + cpu.tsc_offset) & 0xFFFFFFFFFFFFFFFF


@op("rdtsc", flags="", end=True)
def op_rdtsc(e: Emitter) -> None:
    """RDTSC: EDX:EAX = TSC; #GP(0) when CR4.TSD is set and CPL > 0 (a run-time check: CR4 is not in hflags)."""
    t = e.tmp("t")
    _call(e, "rdtsc", e.this_eip(), result=t)
    e.write_reg(0, 4, f"{t} & 0xFFFFFFFF")
    e.write_reg(2, 4, f"{t} >> 32")
    e.end()


@helper
def rdtsc(cpu: CPU, eip: int) -> int:
    if cpu.cr[4] & CR4_TSD and cpu.cpl > 0:
        raise GuestFault(GP, 0)
    return read_tsc(cpu, eip)


@op("rdtscp", flags="", end=True)
def op_rdtscp(e: Emitter) -> None:
    """RDTSCP: EDX:EAX = TSC and ECX = IA32_TSC_AUX[31:0]; CR4.TSD as RDTSC."""
    t = e.tmp("t")
    _call(e, "rdtscp", e.this_eip(), result=t)
    e.write_reg(0, 4, f"{t}[0] & 0xFFFFFFFF")
    e.write_reg(2, 4, f"{t}[0] >> 32")
    e.write_reg(1, 4, f"{t}[1]")
    e.end()


@helper
def rdtscp(cpu: CPU, eip: int) -> tuple[int, int]:
    if cpu.cr[4] & CR4_TSD and cpu.cpl > 0:
        raise GuestFault(GP, 0)
    return read_tsc(cpu, eip), cpu.msr.get(MSR_TSC_AUX, 0) & 0xFFFFFFFF


MSR_IA32_UCODE_REV = 0x8B
MTRR_CAP_VALUE = 0x508  # 8 variable ranges, fixed ranges (bit 8), write-combining (bit 10)
MTRR_FIXED = frozenset({0x250, 0x258, 0x259, *range(0x268, 0x270)})
MTRR_VAR = range(0x200, 0x210)  # PhysBase0, PhysMask0, ... PhysBase7, PhysMask7
MEM_TYPES = frozenset({0, 1, 4, 5, 6})  # UC WC WT WP WB
PAT_TYPES = MEM_TYPES | {7}  # and UC-
# The MSRs of long mode and SYSCALL exist when CPUID reports their feature
# (AMD64 APM vol. 2, appendix A.2; SDM vol. 4, table 2-2): else #GP(0) as any unknown MSR.
_LONG_MSRS = frozenset({MSR_LSTAR, MSR_CSTAR, MSR_FS_BASE, MSR_GS_BASE, MSR_KERNEL_GS_BASE})
_SYSCALL_MSRS = frozenset({MSR_STAR, MSR_FMASK})
_PLAIN_MSRS = frozenset(
    {
        MSR_IA32_APICBASE,
        MSR_IA32_PAT,
        MSR_IA32_MISC_ENABLE,
        MSR_IA32_SYSENTER_CS,
        MSR_IA32_SYSENTER_ESP,
        MSR_IA32_SYSENTER_EIP,
        MSR_MTRRdefType,
        MSR_IA32_UCODE_REV,
        *MTRR_FIXED,
        *MTRR_VAR,
    }
)


# AMD family 0Fh MSRs an OS reads without rdmsr_safe on an AuthenticAMD CPU (Linux: SYSCFG in its
# MTRR code, INT_PENDING_MSG in its idle setup): SYSCFG, HWCR, TOP_MEM, TOP_MEM2, INT_PENDING_MSG,
# DE_CFG.  QEMU's TCG reads them as 0 and drops writes (its default for MSRs it does not model);
# so do AMD models here.  Intel models #GP.
_AMD_ZERO_MSRS = frozenset({0xC0010010, 0xC0010015, 0xC001001A, 0xC001001D, 0xC0010055, 0xC0011029})
_AUTHENTIC_AMD_EBX = 0x68747541  # "Auth"


def _amd(cpu: CPU) -> bool:
    return cpuid(cpu, 0, 0)[1] == _AUTHENTIC_AMD_EBX


def _bytes_ok(value: int, types: frozenset[int]) -> bool:
    return all((value >> (8 * i)) & 0xFF in types for i in range(8))


def _check_msr_exists(cpu: CPU, index: int) -> None:
    """#GP(0) for the MSRs of a feature this CPU model does not report."""
    if index in _LONG_MSRS and not has_feature(cpu, "lm"):
        raise GuestFault(GP, 0)
    if index in _SYSCALL_MSRS and not has_feature(cpu, "syscall"):
        raise GuestFault(GP, 0)
    if index == MSR_TSC_AUX and not has_feature(cpu, "rdtscp"):
        raise GuestFault(GP, 0)


def efer_writable(cpu: CPU) -> int:
    """The EFER bits this CPU has, by its CPUID (SCE: SYSCALL, LME/LMA: LM, NXE: NX)."""
    bits = 0
    if has_feature(cpu, "syscall"):
        bits |= EFER_SCE
    if has_feature(cpu, "lm"):
        bits |= EFER_LME | EFER_LMA
    if has_feature(cpu, "nx"):
        bits |= EFER_NXE
    return bits


def write_efer(cpu: CPU, value: int) -> None:
    """WRMSR to EFER (SDM vol. 4, table 2-2; vol. 3, 10.8.5).

    A bit the CPU lacks is reserved (#GP(0)); LME may not change while paging
    is on (#GP(0)); LMA is read-only (the value written is ignored: CR0.PG
    sets it).  NXE changes the execute rights of cached translations.
    """
    if value & ~efer_writable(cpu):
        raise GuestFault(GP, 0)
    old = cpu.efer
    if (old ^ value) & EFER_LME and cpu.cr[0] & CR0_PG:
        raise GuestFault(GP, 0)
    new = (value & ~EFER_LMA) | (old & EFER_LMA)
    if (old ^ new) & EFER_NXE:
        cpu.tlb.flush()
    cpu.efer = new


def set_seg_base(cpu: CPU, seg: int, base: int) -> None:
    """FS.base / GS.base written directly (WRMSR, SWAPGS): the cache and generated code's mirror."""
    old = cpu.segs[seg]
    cpu.segs[seg] = SegmentCache(old.selector, base, old.limit, old.flags)
    cpu.seg_base[seg] = base


@helper
def rdmsr(cpu: CPU, index: int, eip: int) -> int:
    """RDMSR: the 64-bit value of MSR ``index``; an MSR this CPU does not have is #GP(0)."""
    _check_msr_exists(cpu, index)
    if index == MSR_IA32_TSC:
        return read_tsc(cpu, eip)
    if index == MSR_EFER:
        return cpu.efer
    if index == MSR_MTRRcap:
        return MTRR_CAP_VALUE
    if index == MSR_FS_BASE:
        return cpu.segs[FS].base
    if index == MSR_GS_BASE:
        return cpu.segs[GS].base
    if index == MSR_KERNEL_GS_BASE:
        return cpu.kernel_gs_base
    if index in _PLAIN_MSRS or index in _LONG_MSRS or index in _SYSCALL_MSRS or index == MSR_TSC_AUX:
        return cpu.msr.get(index, 0)
    if index in _AMD_ZERO_MSRS and _amd(cpu):
        return 0
    raise GuestFault(GP, 0)


@helper
def wrmsr(cpu: CPU, index: int, value: int, eip: int) -> None:
    """WRMSR: validate like the hardware (reserved bits, memory types) before storing; else #GP(0)."""
    _check_msr_exists(cpu, index)
    msr = cpu.msr
    if index == MSR_IA32_TSC:
        cpu.tsc_offset = value - icount_now(cpu, eip)
    elif index == MSR_EFER:
        write_efer(cpu, value)
    elif index == MSR_IA32_UCODE_REV:
        pass  # writing 0 before CPUID is how software asks for the revision; the value is fixed
    elif index == MSR_IA32_APICBASE:
        # bits 0-7, 9, 10 (x2APIC: not supported) and those above MAXPHYADDR are reserved;
        # BSP (bit 8) is read-only.
        phys_mask = (1 << cpu.phys_bits) - 1  # MAXPHYADDR (CPUID leaf 0x80000008)
        if value & ~(phys_mask & ~0x7FF | (1 << 11) | (1 << 8)):
            raise GuestFault(GP, 0)
        old = msr.get(index, 0)
        msr[index] = (value & ~(1 << 8)) | (old & (1 << 8))
        if cpu.apic is not None:
            cpu.apic.apicbase_written(old)  # the APIC page moves, or the APIC is switched off/on
    elif index == MSR_IA32_PAT:
        if not _bytes_ok(value, PAT_TYPES):
            raise GuestFault(GP, 0)
        msr[index] = value
    elif index == MSR_IA32_MISC_ENABLE:
        msr[index] = value
    elif index == MSR_IA32_SYSENTER_CS:
        msr[index] = value & 0xFFFF
    elif index in (MSR_IA32_SYSENTER_ESP, MSR_IA32_SYSENTER_EIP):
        # Canonical addresses with long mode (SDM vol. 4), 32 bits without.
        if has_feature(cpu, "lm"):
            if not canonical(value):
                raise GuestFault(GP, 0)
            msr[index] = value
        else:
            msr[index] = value & 0xFFFFFFFF
    elif index == MSR_MTRRdefType:
        if value & ~0xCFF or value & 0xFF not in MEM_TYPES:
            raise GuestFault(GP, 0)
        msr[index] = value
    elif index in MTRR_FIXED:
        if not _bytes_ok(value, MEM_TYPES):
            raise GuestFault(GP, 0)
        msr[index] = value
    elif index in MTRR_VAR:
        if index & 1:  # PhysMask: bits 0-10 and above MAXPHYADDR reserved, bit 11 valid
            if value & ~(((1 << cpu.phys_bits) - 1) & ~0x7FF):
                raise GuestFault(GP, 0)
        elif value & ~(((1 << cpu.phys_bits) - 1) & ~0xF00) or value & 0xFF not in MEM_TYPES:  # PhysBase
            raise GuestFault(GP, 0)
        msr[index] = value
    elif index in (MSR_STAR, MSR_FMASK):
        msr[index] = value  # any value (QEMU keeps all 64 bits of both)
    elif index in _LONG_MSRS:
        if not canonical(value):  # LSTAR, CSTAR and the bases hold linear addresses
            raise GuestFault(GP, 0)
        if index == MSR_FS_BASE:
            set_seg_base(cpu, FS, value)
        elif index == MSR_GS_BASE:
            set_seg_base(cpu, GS, value)
        elif index == MSR_KERNEL_GS_BASE:
            cpu.kernel_gs_base = value
        else:
            msr[index] = value
    elif index == MSR_TSC_AUX:
        if value >> 32:  # bits 63:32 reserved (SDM vol. 4)
            raise GuestFault(GP, 0)
        msr[index] = value
    elif index in _AMD_ZERO_MSRS and _amd(cpu):
        pass
    else:
        raise GuestFault(GP, 0)


@op("rdmsr", flags="", end=True)
def rdmsr_op(e: Emitter) -> None:
    if _cpl0(e):
        return
    t = e.tmp("m")
    _call(e, "rdmsr", e.reg(1), e.this_eip(), result=t)
    e.write_reg(0, 4, f"{t} & 0xFFFFFFFF")
    e.write_reg(2, 4, f"{t} >> 32 & 0xFFFFFFFF")
    e.end()


@op("wrmsr", flags="", end=True)
def wrmsr_op(e: Emitter) -> None:
    if _cpl0(e):
        return
    _call(e, "wrmsr", e.reg(1), f"{e.reg(2)} << 32 | {e.reg(0)}", e.this_eip())
    e.end()


__all__ = ["mov_system", "check_io", "write_cr0", "tlb_flush_nonglobal", "icount_now"]
