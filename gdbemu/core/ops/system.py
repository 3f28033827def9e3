"""System instructions: flags control, port I/O, hlt, interrupts, control registers.

Most are helpers run with the whole state synced (``Emitter.sync_call``)
because they read or change state that generated code keeps no copy of.
Instructions that change what a TB's translation depends on (CR0, CR3, CR4,
segment loads, popf, sti) end the TB.
"""

from __future__ import annotations

from .. import flags as F
from ..decode import CREG, DREG, IMM
from ..emit import MASK, Emitter
from ..exceptions import GP, UD, GuestFault
from ..helpers import helper
from . import op

REQ_EXIT = 1


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


def _iopl_check(e: Emitter) -> None:
    """cli/sti/in/out at CPL > IOPL #GP (in/out then consult the TSS bitmap in the helper)."""


@op("cli", flags="", end=True)
def cli(e: Emitter) -> None:
    e.sync_call("cli", reload=False)
    e.end()


@op("sti", flags="", end=True)
def sti(e: Emitter) -> None:
    e.sync_call("sti", reload=False)
    e.end()


@helper
def cli(cpu) -> None:  # noqa: F811 - the helper of the same name
    if cpu.cpl > (cpu.eflags >> 12) & 3:
        raise GuestFault(GP, 0)
    cpu.eflags &= ~F.IF


@helper
def sti(cpu) -> None:  # noqa: F811
    if cpu.cpl > (cpu.eflags >> 12) & 3:
        raise GuestFault(GP, 0)
    if not cpu.eflags & F.IF:
        cpu.eflags |= F.IF
        inhibit_irq(cpu)


@helper
def inhibit_irq(cpu) -> None:
    """The one-instruction interrupt shadow after sti / mov ss (SDM vol. 3, 6.8.3)."""
    cpu.inhibit_irq_until = cpu.icount + 2


# ---- hlt and port I/O ---------------------------------------------------------
@op("hlt", flags="", end=True)
def hlt(e: Emitter) -> None:
    e.sync_call("hlt", e.next_eip(), reload=False)
    e.exit(2, e.next_eip())
    e.ended = True


@helper
def hlt(cpu, next_eip: int) -> None:  # noqa: F811
    if cpu.cpl != 0:
        raise GuestFault(GP, 0)
    cpu.halted = True
    cpu.interrupt_request |= REQ_EXIT


def _port(e: Emitter, op_) -> str:
    return e.const(op_.imm & 0xFF) if op_.kind == IMM else "(edx & 0xFFFF)"


@op("out", flags="", end=True)
def out(e: Emitter) -> None:
    port_op, src = e.insn.ops
    size = src.size
    e.sync_call("io_out", _port(e, port_op), str(size), e.reg(0, size), reload=False)
    e.end()


@op("in", flags="")
def in_(e: Emitter) -> None:
    dst, port_op = e.insn.ops
    size = dst.size
    v = e.tmp("v")
    e.sync_call("io_in", _port(e, port_op), str(size), result=v)
    e.write_reg(0, size, v)


def check_io(cpu, port: int, size: int) -> None:
    """IOPL, then the TSS I/O permission bitmap (SDM vol. 1, 19.5)."""
    if not cpu.cr[0] & 1 or (cpu.cpl <= (cpu.eflags >> 12) & 3 and not cpu.eflags & F.VM):
        return
    from ..seg import sys_read

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
def io_out(cpu, port: int, size: int, value: int) -> None:
    check_io(cpu, port, size)
    cpu.machine.mem.io_write(port, size, value & MASK[size])


@helper
def io_in(cpu, port: int, size: int) -> int:
    check_io(cpu, port, size)
    return cpu.machine.mem.io_read(port, size) & MASK[size]


# ---- segments ------------------------------------------------------------------
@helper
def load_seg(cpu, seg: int, selector: int) -> None:
    from ..seg import load_seg as _load

    _load(cpu, seg, selector)


# ---- interrupts ------------------------------------------------------------------
@op("int", "int3", "into", "int1", flags="r", end=True)
def int_(e: Emitter) -> None:
    name = e.insn.name
    if name == "int3":
        vec = "3"
    elif name == "int1":
        vec = "1"
    elif name == "into":
        with e.block(f"if {e.cond(0)}:"):
            e.emit(f"raise Fault(4, soft=True, next_eip={e.next_eip()})")
        e.may_fault = True
        e.jump(e.insn.next, 0)
        e.ended = True
        return
    else:
        vec = e.const(e.insn.ops[0].imm & 0xFF)
    e.may_fault = True
    e.emit(f"raise Fault({vec}, soft=True, next_eip={e.next_eip()})")
    e.ended = True


@op("iretd", "iret", flags="", end=True)
def iret(e: Emitter) -> None:
    e.sync_call("iret", str(e.opsize), reload=False)
    e.exit(2, "cpu.eip")
    e.ended = True


@helper
def iret(cpu, opsize: int) -> None:  # noqa: F811
    from ..interrupts import iret as _iret

    _iret(cpu, opsize)


# ---- control and debug registers -------------------------------------------------
def mov_system(e: Emitter) -> None:
    """mov to/from CRn / DRn (called from the data family's mov)."""
    dst, src = e.insn.ops
    if dst.kind in (CREG, DREG):
        kind = "cr" if dst.kind == CREG else "dr"
        e.sync_call(f"mov_to_{kind}", str(dst.reg), e.reg(src.reg, 4), reload=False)
        e.end()
        return
    kind = "cr" if src.kind == CREG else "dr"
    v = e.tmp("v")
    e.sync_call(f"mov_from_{kind}", str(src.reg), result=v)
    e.write_reg(dst.reg, 4, v)


@helper
def mov_from_cr(cpu, n: int) -> int:
    if cpu.cpl != 0:
        raise GuestFault(GP, 0)
    if n not in (0, 2, 3, 4):
        raise GuestFault(UD)
    return cpu.cr[n] & 0xFFFFFFFF


@helper
def mov_to_cr(cpu, n: int, value: int) -> None:
    from ...softmmu.tlb import PAGE_MASK  # noqa: F401
    from ..cpu import CR0_PE, CR0_PG, CR0_WP, CR4_PGE, CR4_PSE, CR4_SMAP

    if cpu.cpl != 0:
        raise GuestFault(GP, 0)
    if n == 0:
        old = cpu.cr[0]
        if value & CR0_PG and not value & CR0_PE:
            raise GuestFault(GP, 0)
        cpu.cr[0] = value | 0x10  # ET is hardwired to 1
        if (old ^ value) & (CR0_PG | CR0_WP | CR0_PE):
            cpu.tlb.flush()
    elif n == 2:
        cpu.cr[2] = value
    elif n == 3:
        cpu.cr[3] = value
        if cpu.cr[0] & CR0_PG:
            tlb_flush_nonglobal(cpu)
    elif n == 4:
        old = cpu.cr[4]
        if value & ~0x3007FF & ~(CR4_SMAP | (1 << 20)):
            raise GuestFault(GP, 0)
        cpu.cr[4] = value
        if (old ^ value) & (CR4_PGE | CR4_PSE | CR4_SMAP | (1 << 5) | (1 << 20)):
            cpu.tlb.flush()
    else:
        raise GuestFault(UD)
    cpu.compute_hflags()


def tlb_flush_nonglobal(cpu) -> None:
    """mov cr3: drop every entry except global pages (CR4.PGE) — SDM vol. 3, 4.10.4.1."""
    from ..cpu import CR4_PGE

    if cpu.cr[4] & CR4_PGE:
        cpu.tlb.flush_nonglobal()
    else:
        cpu.tlb.flush()


@helper
def mov_from_dr(cpu, n: int) -> int:
    if cpu.cpl != 0:
        raise GuestFault(GP, 0)
    if n in (4, 5):
        n += 2
    return cpu.dr[n]


@helper
def mov_to_dr(cpu, n: int, value: int) -> None:
    if cpu.cpl != 0:
        raise GuestFault(GP, 0)
    if n in (4, 5):
        n += 2
    if n == 6:
        value = (value & 0x1E00F) | 0xFFFF0FF0
    elif n == 7:
        value = (value & 0xFFFF2BFF) | 0x400
    cpu.dr[n] = value
