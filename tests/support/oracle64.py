"""Differential-testing oracle for 64-bit code: an x86-64 snippet in Unicorn and in gdbemu.

A helper module of ``test_differential64.py`` (not collected by pytest), the
64-bit counterpart of :mod:`oracle`: the same idea (same snippet, same
registers, flags and memory in both; compare the final states), with sixteen
64-bit registers and RIP.

Memory layout (virtual)::

    0x00000-0x10000   code region; the snippet at CODE_ADDR (0x1000)
    DATA window       0x10000-0x30000, or at DATA_HI (0xFFFFFFFF80010000, the
                      top 2 GiB of the address space where kernels live) for
                      forms that use high canonical addresses
    0x40000-0x42000   stack (two pages: pushes straddle a page boundary)

Unicorn (UC_MODE_64) maps these regions directly.  gdbemu runs in long mode
with 4-level page tables (``CPU.setup_long64``) that identity-map the first
GiB and alias the top 2 GiB onto physical 0, so DATA_HI is physical 0x10000.
Exceptions: gdbemu's exception delivery is replaced by a hook that records
the vector and the state at the fault and stops the run; Unicorn's are seen
through its interrupt hook (and UC_ERR_INSN_INVALID for #UD).  Neither
checks anything about privilege here (CPL 0).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from unicorn import UC_ARCH_X86, UC_ERR_EXCEPTION, UC_ERR_INSN_INVALID, UC_HOOK_INTR, UC_MODE_64, Uc, UcError
from unicorn import x86_const as ux

CODE_REGION = (0x0, 0x10000)
CODE_ADDR = 0x1000
DATA_LO = 0x10000
DATA_HI = 0xFFFFFFFF80010000
DATA_SIZE = 0x20000
STACK_BASE = 0x40000
STACK_SIZE = 0x2000
PAGE = 0x1000
RAM_SIZE = 1 << 20
PT_ADDR = 0x80000  # gdbemu's page tables (physical; outside every compared region)
HLT_ADDR = 0xFF00  # where gdbemu's fault hook parks the CPU (a hlt)
M64 = 0xFFFFFFFFFFFFFFFF

REG_NAMES = ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi") + tuple(f"r{i}" for i in range(8, 16))
CF, PF, AF, ZF, SF, DF, OF = 0x1, 0x4, 0x10, 0x40, 0x80, 0x400, 0x800
STATUS = CF | PF | AF | ZF | SF | OF
FLAG_NAMES = ((CF, "CF"), (PF, "PF"), (AF, "AF"), (ZF, "ZF"), (SF, "SF"), (DF, "DF"), (OF, "OF"))

_UC_GPRS = tuple(getattr(ux, f"UC_X86_REG_{n.upper()}") for n in REG_NAMES)
_UC_ALL = (*_UC_GPRS, ux.UC_X86_REG_RIP, ux.UC_X86_REG_RFLAGS)
_NEVER = 0x0FFF_FFF0


@dataclasses.dataclass(frozen=True)
class State:
    """Sixteen registers, RFLAGS and the initial contents of the data window and stack."""

    regs: tuple[int, ...]
    rflags: int
    data: bytes
    stack: bytes


@dataclasses.dataclass
class Outcome:
    faulted: bool
    regs: tuple[int, ...]
    rip: int
    rflags: int
    data: bytes
    stack: bytes
    error: str | None = None
    vector: int | None = None


class _Unicorn:
    def __init__(self, code: bytes, data_base: int) -> None:
        self.uc = Uc(UC_ARCH_X86, UC_MODE_64)
        self.data_base = data_base
        self.uc.mem_map(CODE_REGION[0], CODE_REGION[1] - CODE_REGION[0])
        self.uc.mem_map(data_base, DATA_SIZE)
        self.uc.mem_map(STACK_BASE, STACK_SIZE)
        self.uc.mem_write(CODE_ADDR, code)
        self.vector: int | None = None
        self.uc.hook_add(UC_HOOK_INTR, self._on_interrupt)
        # As in oracle.py: every case starts from a pristine context (Unicorn keeps
        # exception bookkeeping across runs otherwise).
        self.pristine = self.uc.context_save()

    def _on_interrupt(self, uc: Uc, intno: int, _user: object) -> None:
        self.vector = intno
        uc.emu_stop()

    def run(self, st: State, end: int, count: int) -> Outcome:
        uc = self.uc
        uc.mem_write(self.data_base, st.data)
        uc.mem_write(STACK_BASE, st.stack)
        uc.context_restore(self.pristine)
        uc.reg_write_batch(list(zip(_UC_ALL, (*st.regs, CODE_ADDR, st.rflags | 2), strict=True)))
        self.vector = None
        faulted = False
        error = None
        try:
            if count:
                uc.emu_start(CODE_ADDR, _NEVER, count=count)
            else:
                uc.emu_start(CODE_ADDR, end)
        except UcError as exc:
            if exc.errno == UC_ERR_INSN_INVALID:
                faulted, self.vector = True, 6
            elif exc.errno == UC_ERR_EXCEPTION:
                faulted = True
            else:
                error = f"unicorn: {exc}"
        faulted = faulted or self.vector is not None
        vals = uc.reg_read_batch(list(_UC_ALL))
        data = bytes(uc.mem_read(self.data_base, DATA_SIZE))
        stack = bytes(uc.mem_read(STACK_BASE, STACK_SIZE))
        return Outcome(faulted, tuple(vals[:16]), vals[16], vals[17], data, stack, error, self.vector)


class _Gdbemu:
    def __init__(self, code: bytes, tier: int) -> None:
        from gdbemu.machine import Machine

        m = Machine(ram_size=RAM_SIZE)
        m.translator.force_tier = tier
        cpu = m.cpu
        cpu.setup_long64(PT_ADDR)
        # PML4[511] -> a PDPT whose entry 510 maps 1 GiB at physical 0: the top 2 GiB alias
        # the first GiB (DATA_HI is physical DATA_LO).
        hi = PT_ADDR + 0x2000
        m.mem.write(hi, bytes(4096))
        m.mem.write(hi + 8 * 510, (0x87).to_bytes(8, "little"))
        m.mem.write(PT_ADDR + 8 * 511, (hi | 7).to_bytes(8, "little"))
        cpu.idtr_limit = 0
        m.mem.write(CODE_ADDR, code)
        m.mem.write(HLT_ADDR, b"\xf4")
        self.m = m
        self.fault: tuple[int, tuple[int, ...], int, int] | None = None
        m.exec_ctx.deliver_exception = self._deliver

    def _deliver(self, cpu: Any, fault: Any) -> None:
        if self.fault is None:
            regs = tuple(cpu.regs) + tuple(cpu.xregs)
            self.fault = (fault.vector, regs, cpu.eip, cpu.get_eflags())
        cpu.eip = HLT_ADDR

    def run(self, st: State, n_insns: int) -> Outcome:
        m = self.m
        cpu = m.cpu
        m.mem.write(DATA_LO, st.data)
        m.mem.write(STACK_BASE, st.stack)
        cpu.regs[:] = st.regs[:8]
        cpu.xregs[:] = st.regs[8:]
        cpu.eip = CODE_ADDR
        cpu.set_eflags(st.rflags | 2)
        self.fault = None
        cpu.halted = False  # parked on the hlt by the last fault
        error = None
        try:
            stop = m.run(max_insns=n_insns)
            kind = str(getattr(stop, "kind", stop))
            if self.fault is None and "limit" not in kind.lower():
                error = f"gdbemu: run() stopped with {stop!r}"
        except Exception as exc:  # a crash of the core is a finding
            error = f"gdbemu raised {type(exc).__name__}: {exc}"
        data = bytes(m.mem.read(DATA_LO, DATA_SIZE))
        stack = bytes(m.mem.read(STACK_BASE, STACK_SIZE))
        if self.fault is not None:
            vector, regs, rip, rflags = self.fault
            return Outcome(True, regs, rip, rflags, data, stack, error, vector)
        regs = tuple(cpu.regs) + tuple(cpu.xregs)
        return Outcome(False, regs, cpu.eip, cpu.get_eflags(), data, stack, error)


class Runner:
    """One snippet, run in Unicorn and in gdbemu's two translation tiers."""

    TERMINATOR = b"\xeb\x00"  # jmp $+2, so gdbemu's block is exactly the snippet

    def __init__(self, code: bytes, n_insns: int, branch: bool = False, high: bool = False) -> None:
        if not branch:
            code += self.TERMINATOR
            n_insns += 1
        self.code = code
        self.n_insns = n_insns
        self.branch = branch
        self.data_base = DATA_HI if high else DATA_LO
        self.uc = _Unicorn(code, self.data_base)
        self.gd = {1: _Gdbemu(code, 1), 2: _Gdbemu(code, 2)}

    def run(self, st: State, tier: int, stop_after: int | None = None) -> tuple[Outcome, Outcome]:
        """Run ``st`` in Unicorn and in gdbemu's ``tier``; ``stop_after`` (fewer instructions
        than the snippet has, no rep forms) stops both early by count, inside gdbemu's block."""
        if stop_after is not None:
            return self.uc.run(st, 0, stop_after), self.gd[tier].run(st, stop_after)
        uc = self.uc.run(st, CODE_ADDR + len(self.code), self.n_insns if self.branch else 0)
        gd = self.gd[tier].run(st, self.n_insns)
        return uc, gd


@dataclasses.dataclass
class Undefined:
    flags: int = 0
    regs: Mapping[int, int] = dataclasses.field(default_factory=dict)


def compare(st: State, uc: Outcome, gd: Outcome, und: Undefined, flags_mask: int = STATUS | DF) -> list[str]:
    """Differences between the outcomes (Unicorn is the reference), as lines."""
    if uc.error or gd.error:
        return [x for x in (uc.error and f"oracle error: {uc.error}", gd.error) if x]
    if uc.faulted != gd.faulted:
        if gd.faulted:
            return [f"gdbemu raised vector {gd.vector} but unicorn completed"]
        return [f"unicorn raised vector {uc.vector} but gdbemu completed"]
    diffs = []
    at = f"at the fault (unicorn vector {uc.vector}, gdbemu {gd.vector}): " if uc.faulted else ""
    if uc.faulted and uc.vector != gd.vector and uc.vector is not None:
        diffs.append(f"vector: unicorn={uc.vector} gdbemu={gd.vector}")
    for i, (a, b) in enumerate(zip(uc.regs, gd.regs, strict=True)):
        if (a ^ b) & ~und.regs.get(i, 0) & M64:
            diffs.append(f"{at}{REG_NAMES[i]}: unicorn={a:#018x} gdbemu={b:#018x}")
    if uc.rip != gd.rip:
        diffs.append(f"{at}rip: unicorn={uc.rip:#x} gdbemu={gd.rip:#x}")
    fm = flags_mask & ~und.flags
    if (uc.rflags ^ gd.rflags) & fm:
        diffs.append(f"{at}rflags (bits {fm:#x}): unicorn={flag_str(uc.rflags)} gdbemu={flag_str(gd.rflags)}")
    for name, a, b, init in (("data", uc.data, gd.data, st.data), ("stack", uc.stack, gd.stack, st.stack)):
        if a != b:
            offs = [i for i in range(len(a)) if a[i] != b[i]]
            lo, hi = offs[0], offs[-1] + 1
            diffs.append(
                f"{at}{name}[{lo:#x}..{hi:#x}) initial={init[lo:hi][:32].hex()} "
                f"unicorn={a[lo:hi][:32].hex()} gdbemu={b[lo:hi][:32].hex()}"
            )
    return diffs


def flag_str(f: int) -> str:
    return " ".join(n for bit, n in FLAG_NAMES if f & bit) or "-"


def describe(st: State) -> str:
    regs = " ".join(f"{n}={v:#x}" for n, v in zip(REG_NAMES, st.regs, strict=True))
    return f"{regs}\nrflags={st.rflags:#x} [{flag_str(st.rflags)}]"
