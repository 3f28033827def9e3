"""gdb's registers (``rsp/arch/i386.py`` and ``amd64.py`` names) on a CPU: read, write, and as Python snippets.

One table for the whole debugger: the MachineTarget reads and writes them
(``g``/``G``/``p``/``P``), agent expressions compile ``reg N`` into the
snippet :func:`register_source` gives, watch conditions name the GPRs.

Writes act as the instruction that would write the register does
(:func:`set_register`): a segment selector reloads its descriptor cache from
the GDT/LDT (real and V86 mode: base = selector << 4), a CR0/CR3/CR4 write
flushes the TLB as ``mov crN`` does, a DR0-3/DR7 write rebuilds the guest's
own debug breakpoints.  The x87 registers are the FPU's (``cpu.fpu``,
core/fpu_state.py): ``st0``-``st7`` are ST(0)-ST(7), stack-relative as in
the FSAVE image gdb's i387 code expects; ``fstat`` includes TOP and
``ftag`` is the full 2-bit-per-register tag word, computed from the
contents (written: each register's empty/non-empty state).  ``xmm0``-``xmm7``
and ``mxcsr`` (the i386 layout of a CPU with SSE; xmm0-xmm15 in amd64) are
``cpu.fpu.xmm[n]`` and ``cpu.fpu.mxcsr``.

The amd64 names (``rax``..``r15``, ``rip``, ``k_gs_base``, ``cr8``) are the
same CPU fields at full width.  A write
outside long mode (EFER.LMA clear) keeps a GPR or RIP to 32 bits, as the
architecture keeps them there (the upper halves are 0 in legacy modes).
"""

from __future__ import annotations

from typing import Final

from ..core import flags as F
from ..core.cpu import CPU, CS, EFER_LMA, SS, SegmentCache
from ..core.exceptions import GuestFault
from ..core.ops import system as sysops
from ..core.seg import cache_from, read_descriptor
from ..hw.lapic import R_TPR
from ..machine import Machine
from ..rsp.arch import RegisterLayout

GPR_NAMES: Final = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi")  # cpu.regs order
# amd64 names -> cpu.get_gpr index (gdb's order rax rbx rcx rdx rsi rdi rbp rsp differs from the CPU's).
GPR64: Final = {
    **{name: i for i, name in enumerate(("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi"))},
    **{f"r{i}": i for i in range(8, 16)},
}
_M32: Final = 0xFFFFFFFF
_M64: Final = 0xFFFFFFFFFFFFFFFF
SEG_REGS: Final = {"cs": 1, "ss": 2, "ds": 3, "es": 0, "fs": 4, "gs": 5}  # name -> cpu.segs index
SEG_BASES: Final = {"cs_base": 1, "ss_base": 2, "ds_base": 3, "es_base": 0, "fs_base": 4, "gs_base": 5}
_CONTROL: Final = ("cr0", "cr2", "cr3", "cr4")
_TABLES: Final = ("gdtr_base", "gdtr_limit", "idtr_base", "idtr_limit")
_X87_FIELDS: Final = {"fiseg": "fcs", "fioff": "fip", "foseg": "fds", "fooff": "fdp", "fop": "fop"}


def register_value(cpu: CPU, name: str) -> int:
    """The value of gdb's register ``name`` for ``cpu``."""
    if name in GPR_NAMES:
        return int(cpu.regs[GPR_NAMES.index(name)]) & _M32
    if name in GPR64:
        return int(cpu.get_gpr(GPR64[name]))
    if name in ("eip", "rip"):
        return int(cpu.eip)
    if name == "eflags":
        return int(cpu.get_eflags())
    if name in SEG_REGS:
        return int(cpu.segs[SEG_REGS[name]].selector)
    if name in SEG_BASES:
        return int(cpu.segs[SEG_BASES[name]].base)
    if name in _CONTROL:
        return int(cpu.cr[int(name[2])])
    if name == "efer":
        return int(cpu.efer)
    if name == "k_gs_base":
        return int(cpu.kernel_gs_base)
    if name == "cr8":
        return cr8_value(cpu)
    if name in _TABLES:
        return int(getattr(cpu, name))
    if name.startswith("dr"):
        return int(cpu.dr[int(name[2])])
    return _x87_value(cpu, name)


def cr8_value(cpu: CPU) -> int:
    """CR8: the local APIC's TPR bits 7:4 (0 without an APIC)."""
    return 0 if cpu.apic is None else (int(cpu.apic.read_register(R_TPR)) >> 4) & 0xF


def _x87_value(cpu: CPU, name: str) -> int:
    fpu = cpu.fpu
    if name.startswith("xmm"):
        return int(fpu.xmm[int(name[3:])])
    if name == "mxcsr":
        return int(fpu.mxcsr)
    if name.startswith("st") and name[2:].isdigit():
        return fpu.get(int(name[2:]))
    if name == "fctrl":
        return fpu.fcw
    if name == "fstat":
        return fpu.status_word()
    if name == "ftag":
        return fpu.tag_word()
    if name in _X87_FIELDS:
        return int(getattr(fpu, _X87_FIELDS[name]))
    return 0


def _set_x87(cpu: CPU, name: str, value: int) -> bool:
    fpu = cpu.fpu
    if name.startswith("xmm"):
        fpu.xmm[int(name[3:])] = value & ((1 << 128) - 1)
    elif name == "mxcsr":
        fpu.mxcsr = value & 0xFFFF
    elif name.startswith("st") and name[2:].isdigit():
        fpu.st[fpu.phys(int(name[2:]))] = value & ((1 << 80) - 1)
    elif name == "fctrl":
        fpu.fcw = value & 0xFFFF
    elif name == "fstat":
        fpu.set_status_word(value)
    elif name == "ftag":
        fpu.set_tag_word(value)
    elif name in _X87_FIELDS:
        setattr(fpu, _X87_FIELDS[name], value & (0x7FF if name == "fop" else 0xFFFFFFFF))
    return True  # a register this table does not know: accepted and dropped, as before


def set_register(machine: Machine, cpu: CPU, name: str, value: int) -> bool:
    """Write one register with the effect of the instruction that would write it; False if refused."""
    wide = _M64 if cpu.efer & EFER_LMA else _M32  # what a GPR or RIP holds in this mode
    if name in GPR_NAMES:
        cpu.regs[GPR_NAMES.index(name)] = value & _M32
    elif name in GPR64:
        cpu.set_gpr(GPR64[name], value & wide)
    elif name in ("eip", "rip"):
        if wide == _M64 and not (value < 1 << 47 or value >= _M64 + 1 - (1 << 47)):
            return False  # RIP never holds a non-canonical address (a jump there faults first)
        cpu.eip = value & wide
    elif name == "eflags":
        cpu.set_eflags(value | 2)
    elif name in SEG_REGS:
        seg = SEG_REGS[name]
        try:
            if not cpu.cr[0] & 1 or cpu.eflags & F.VM:
                old = cpu.segs[seg]
                cpu.segs[seg] = SegmentCache(value & 0xFFFF, (value & 0xFFFF) << 4, old.limit, old.flags)
            elif seg in (CS, SS):
                if value & 0xFFFC == 0:
                    return False
                lo, hi = read_descriptor(cpu, value & 0xFFFF)
                cpu.segs[seg] = cache_from(value & 0xFFFF, lo, hi)
            else:
                sysops.load_seg(cpu, seg, value & 0xFFFF)
        except GuestFault:
            return False
        cpu.compute_hflags()
    elif name in SEG_BASES:
        cpu.segs[SEG_BASES[name]].base = value & _M64
        cpu.compute_hflags()
        cpu.jmp_cache.clear()
    elif name in _CONTROL:
        n = int(name[2])
        cpu.cr[n] = value & _M64
        if n != 2:
            cpu.tlb.flush()  # as mov crN would (a CR3 write drops non-global pages; all is safe)
        cpu.compute_hflags()
    elif name == "efer":
        cpu.efer = value & _M64
        cpu.compute_hflags()
        cpu.tlb.flush()  # NXE and LMA change what the page walk gives
    elif name == "k_gs_base":
        cpu.kernel_gs_base = value & _M64
    elif name == "cr8":
        if cpu.apic is not None:
            cpu.apic.write_register(R_TPR, (value & 0xF) << 4)  # as mov cr8 (TPR bits 3:0 cleared)
    elif name in _TABLES:
        setattr(cpu, name, value)
    elif name.startswith("dr"):
        n = int(name[2])
        cpu.dr[n] = value & _M64
        if n != 6:
            machine.update_guest_debug(cpu)
    else:
        return _set_x87(cpu, name, value)
    return True


def register_source(layout: RegisterLayout, regnum: int) -> str | None:
    """gdb register ``regnum`` as a Python expression over ``cpu`` (unsigned), for compiled agent code.

    The common registers read the CPU's fields directly; the others call
    ``_value(cpu, regnum)`` (the compiler's environment supplies it); None for
    the 80-bit x87 registers, which a 64-bit agent stack cannot hold.
    """
    if not 0 <= regnum < len(layout):
        return None
    name = layout[regnum].name
    if name in GPR_NAMES:
        return f"(cpu.regs[{GPR_NAMES.index(name)}] & {_M32:#x})"
    if name in GPR64:
        i = GPR64[name]
        return f"cpu.regs[{i}]" if i < 8 else f"cpu.xregs[{i - 8}]"
    if name in ("eip", "rip"):
        return "cpu.eip"
    if name == "eflags":
        return "cpu.get_eflags()"
    if name in SEG_REGS:
        return f"cpu.segs[{SEG_REGS[name]}].selector"
    if layout[regnum].size > 8:
        return None
    return f"_value(cpu, {regnum})"
