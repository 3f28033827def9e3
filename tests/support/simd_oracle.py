"""Differential oracle for MMX/SSE forms: one instruction (or a short snippet) in Unicorn and gdbemu.

Forms are written in AT&T syntax and assembled at test time with GNU as in
one batch (``assemble``): each form is placed in ``.text`` and its length is
recorded in a ``.lens`` section (``.byte 1f - 0f``), both extracted with
objcopy.  MMX forms are wrapped by loads and stores of mm0-mm2 through
memory (Unicorn has no MMX register access), XMM registers are set and read
directly.

State: xmm0-7 (random 128-bit values, some lanes drawn from edge values),
the GPRs (EBP points at the 16-byte aligned data window, ESP at a stack),
the six status flags, and 512 bytes of data.  Compared: xmm0-7, GPRs, EIP,
the status flags the caller says are defined, the data window, and whether
the run faulted (with the vector when Unicorn reports one).  Both run flat
32-bit code at CPL 0 with CR4.OSFXSR and CR4.OSXMMEXCPT set, or 64-bit code
(``Runner(64)``: sixteen GPRs and XMMs, FS/GS bases); ``form64*`` rewrite a
32-bit form into its 64-bit variants.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from unicorn import (
    UC_ARCH_X86,
    UC_ERR_EXCEPTION,
    UC_ERR_INSN_INVALID,
    UC_HOOK_INTR,
    UC_MODE_32,
    UC_MODE_64,
    Uc,
    UcError,
)
from unicorn import x86_const as ux

CODE = 0x1000
DATA = 0x10000
DATA_SIZE = 0x1000
STACK = 0x20000
RAM = 1 << 20
_GPRS = (
    ux.UC_X86_REG_EAX,
    ux.UC_X86_REG_ECX,
    ux.UC_X86_REG_EDX,
    ux.UC_X86_REG_EBX,
    ux.UC_X86_REG_ESP,
    ux.UC_X86_REG_EBP,
    ux.UC_X86_REG_ESI,
    ux.UC_X86_REG_EDI,
)
_XMMS = tuple(getattr(ux, f"UC_X86_REG_XMM{i}") for i in range(8))
_GPRS64 = tuple(
    getattr(ux, f"UC_X86_REG_{n}")
    for n in ("RAX", "RCX", "RDX", "RBX", "RSP", "RBP", "RSI", "RDI", *(f"R{i}" for i in range(8, 16)))
)
_XMMS64 = tuple(getattr(ux, f"UC_X86_REG_XMM{i}") for i in range(16))
STATUS = 0x8D5  # CF PF AF ZF SF OF

MMX_PRE = "movq 0x100(%ebp), %mm0; movq 0x108(%ebp), %mm1; movq 0x110(%ebp), %mm2;"
MMX_POST = "; movq %mm0, 0x180(%ebp); movq %mm1, 0x188(%ebp); movq %mm2, 0x190(%ebp)"


def assemble(forms: list[str], bits: int = 32) -> list[bytes]:
    """Machine code of each form (AT&T, ';'-separated instructions allowed)."""
    if not shutil.which("as") or not shutil.which("objcopy"):
        raise RuntimeError("GNU as and objcopy are needed")
    lines = [".text"]
    for i, f in enumerate(forms):
        lines += [f"s{i}:", f"  {f}", f"e{i}:", '.section .lens,"a"', f"  .short e{i} - s{i}", ".text"]
    with tempfile.TemporaryDirectory() as d:
        src, obj = Path(d) / "f.s", Path(d) / "f.o"
        src.write_text("\n".join(lines) + "\n")
        subprocess.run(["as", f"--{bits}", "-o", str(obj), str(src)], check=True, capture_output=True)
        out = {}
        for sec in (".text", ".lens"):
            dst = Path(d) / (sec[1:] + ".bin")
            subprocess.run(["objcopy", "-O", "binary", f"--only-section={sec}", str(obj), str(dst)], check=True)
            out[sec] = dst.read_bytes()
    text, lens = out[".text"], out[".lens"]
    codes = []
    pos = 0
    for i in range(len(forms)):
        n = int.from_bytes(lens[2 * i : 2 * i + 2], "little")
        codes.append(text[pos : pos + n])
        pos += n
    return codes


EDGE32 = (0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0x7F7F7F7F, 0x80808080, 0x00FF00FF, 0xFFFF0000, 0x8000)


def random_vec(rng: random.Random) -> int:
    if rng.random() < 0.3:
        return sum(rng.choice(EDGE32) << (32 * i) for i in range(4))
    if rng.random() < 0.1:  # short strings for the SSE4.2 compares
        return int.from_bytes(bytes(rng.choice(b"ab\0c") for _ in range(16)), "little")
    return rng.getrandbits(128)


@dataclass
class State:
    xmm: list[int]
    regs: list[int]
    eflags: int
    data: bytes


def random_state(rng: random.Random, bits: int = 32) -> State:
    nregs = 16 if bits == 64 else 8
    regs = [rng.getrandbits(bits) if rng.random() < 0.7 else rng.choice(EDGE32) for _ in range(nregs)]
    regs[0] = rng.choice((regs[0], rng.randrange(-20, 20) & 0xFFFFFFFF))  # explicit string lengths
    regs[2] = rng.choice((regs[2], rng.randrange(-20, 20) & 0xFFFFFFFF))
    regs[4] = STACK
    regs[5] = DATA
    regs[7] = DATA + 0x200 + rng.randrange(16)  # maskmov target
    data = bytes(rng.getrandbits(8) for _ in range(0x200)) + bytes(DATA_SIZE - 0x200)
    return State([random_vec(rng) for _ in range(nregs)], regs, rng.getrandbits(32) & STATUS, data)


@dataclass
class Result:
    fault: int | None  # vector, -1: faulted (vector unknown), None: ran
    xmm: tuple[int, ...]
    regs: tuple[int, ...]
    eip: int
    eflags: int
    data: bytes


class Runner:
    """Unicorn and gdbemu side by side; ``bits=64``: long mode (gdbemu: ``CPU.setup_long64``), 16 GPRs/XMMs."""

    def __init__(self, bits: int = 32) -> None:
        from gdbemu.core.cpu import CR4_OSFXSR, CR4_OSXMMEXCPT
        from gdbemu.machine import Machine

        self.bits = bits
        self.gprs = _GPRS64 if bits == 64 else _GPRS
        self.xmms = _XMMS64 if bits == 64 else _XMMS
        self.uc = Uc(UC_ARCH_X86, UC_MODE_64 if bits == 64 else UC_MODE_32)
        self.uc.mem_map(0, RAM)
        self.vector: int | None = None
        self.uc.hook_add(UC_HOOK_INTR, self._intr)
        self.pristine = self.uc.context_save()
        self.machine_factory = lambda: Machine(ram_size=RAM)
        self.cr4 = CR4_OSFXSR | CR4_OSXMMEXCPT
        self.seg_bases = (0, 0)  # FS and GS bases for the next runs (64-bit mode)
        self.m = self._fresh()

    def _fresh(self):  # type: ignore[no-untyped-def]
        m = self.machine_factory()
        if self.bits == 64:
            m.cpu.setup_long64(pt_addr=0x70000)
        else:
            m.cpu.setup_flat32()
        m.cpu.cr[4] |= self.cr4
        return m

    def _intr(self, uc: Uc, intno: int, _data: object) -> None:
        self.vector = intno
        uc.emu_stop()

    def run_unicorn(self, code: bytes, s: State) -> Result:
        uc = self.uc
        uc.context_restore(self.pristine)
        uc.mem_write(CODE, code + b"\xf4")
        uc.mem_write(DATA, s.data)
        for r, v in zip(self.gprs, s.regs, strict=True):
            uc.reg_write(r, v)
        for r, v in zip(self.xmms, s.xmm, strict=True):
            uc.reg_write(r, v)
        uc.reg_write(ux.UC_X86_REG_EFLAGS, s.eflags | 2)
        uc.reg_write(ux.UC_X86_REG_MXCSR, 0x1F80)
        if self.bits == 64:
            uc.reg_write(ux.UC_X86_REG_FS_BASE, self.seg_bases[0])
            uc.reg_write(ux.UC_X86_REG_GS_BASE, self.seg_bases[1])
        self.vector = None
        fault: int | None = None
        try:
            uc.emu_start(CODE, CODE + len(code))
        except UcError as exc:
            if exc.errno == UC_ERR_INSN_INVALID:
                fault = 6
            elif exc.errno == UC_ERR_EXCEPTION:
                fault = -1
            else:
                raise
        if self.vector is not None:
            fault = self.vector
        return Result(
            fault,
            tuple(uc.reg_read(r) for r in self.xmms),
            tuple(uc.reg_read(r) for r in self.gprs),
            uc.reg_read(ux.UC_X86_REG_RIP if self.bits == 64 else ux.UC_X86_REG_EIP),
            uc.reg_read(ux.UC_X86_REG_EFLAGS),
            bytes(uc.mem_read(DATA, DATA_SIZE)),
        )

    def run_gdbemu(self, code: bytes, s: State, n_insns: int) -> Result:
        m = self.m
        cpu = m.cpu
        m.mem.write(CODE, code + b"\xf4")
        m.mem.write(DATA, s.data)
        cpu.regs[:] = s.regs[:8]
        if self.bits == 64:
            from gdbemu.core.cpu import FS, GS
            from gdbemu.core.ops.system import set_seg_base

            cpu.xregs[:] = s.regs[8:]
            set_seg_base(cpu, FS, self.seg_bases[0])
            set_seg_base(cpu, GS, self.seg_bases[1])
        cpu.fpu.xmm[: len(s.xmm)] = s.xmm
        cpu.fpu.mxcsr = 0x1F80
        cpu.eip = CODE
        cpu.set_eflags(s.eflags | 2)
        stop = m.run(max_insns=n_insns)
        fault = None
        if stop.kind == "triple_fault":
            fault = -1
            self.m = self._fresh()
        elif stop.kind != "limit":
            raise AssertionError(f"gdbemu stopped with {stop}")
        return Result(
            fault,
            tuple(cpu.fpu.xmm[: len(s.xmm)]),
            tuple(cpu.regs) + (tuple(cpu.xregs) if self.bits == 64 else ()),
            cpu.eip,
            cpu.get_eflags(),
            bytes(m.mem.read(DATA, DATA_SIZE)),
        )


def compare(a: Result, b: Result, flags_mask: int) -> list[str]:
    """Differences between Unicorn (a) and gdbemu (b); a fault compares only as a fault."""
    if (a.fault is not None) != (b.fault is not None):
        return [f"fault: unicorn {a.fault} gdbemu {b.fault}"]
    if a.fault is not None:
        return []
    out = []
    for i, (x, y) in enumerate(zip(a.xmm, b.xmm, strict=True)):
        if x != y:
            out.append(f"xmm{i}: unicorn {x:#034x} gdbemu {y:#034x}")
    for i, (x, y) in enumerate(zip(a.regs, b.regs, strict=True)):
        if x != y:
            out.append(f"reg{i}: unicorn {x:#x} gdbemu {y:#x}")
    if a.eip != b.eip:
        out.append(f"eip: unicorn {a.eip:#x} gdbemu {b.eip:#x}")
    if (a.eflags ^ b.eflags) & flags_mask:
        out.append(f"eflags: unicorn {a.eflags:#x} gdbemu {b.eflags:#x} (mask {flags_mask:#x})")
    if a.data != b.data:
        k = next(i for i in range(len(a.data)) if a.data[i] != b.data[i])
        out.append(f"data differs from +{k:#x}: unicorn {a.data[k : k + 16].hex()} gdbemu {b.data[k : k + 16].hex()}")
    return out


# ---- 64-bit variants of the 32-bit forms ----------------------------------------------------------
# Every 32-bit form also runs in long mode three ways: as written (memory operands through RBP
# instead of EBP), with REX reaching the upper registers (xmm1-7 -> xmm9-15, the explicit GPRs ->
# r8-r11, the memory base -> r13), and with every memory operand RIP-relative (same addresses).
REX_BASE = 13  # the memory base register of the REX variant (set to DATA by the caller)
_RIP_MARK = 0x5EA00  # a RIP-relative form's displacement before patching: _RIP_MARK << 12 | offset
_GPR_REX = {
    "eax": "r8d", "ecx": "r9d", "edx": "r10d", "ebx": "r11d",
    "ax": "r8w", "cx": "r9w", "dx": "r10w", "bx": "r11w",
    "al": "r8b", "cl": "r9b", "dl": "r10b", "bl": "r11b",
}  # fmt: skip


def form64(form: str) -> str:
    """The form in 64-bit code: memory operands through RBP."""
    return form.replace("(%ebp)", "(%rbp)")


def form64_rex(form: str) -> str:
    """REX everywhere the form allows: xmm1-7 -> xmm9-15 (xmm0 too unless it is the implicit mask
    operand of BLENDV), explicit GPRs -> r8-r11, the memory base -> r13."""
    import re

    keep0 = "blendv" in form

    def xmm(m: re.Match[str]) -> str:
        n = int(m.group(1))
        return m.group(0) if n == 0 and keep0 else f"%xmm{n + 8}"

    out = re.sub(r"%xmm([0-7])\b", xmm, form)
    out = re.sub(r"%(e?[abcd]x|[abcd]l)\b", lambda m: "%" + _GPR_REX[m.group(1)], out)
    return out.replace("(%ebp)", f"(%r{REX_BASE})")


def form64_mix(form: str) -> str:
    """REX on some operands only: xmm1/3/5/7 -> xmm9/11/13/15 (REX.R or REX.B alone with the
    other operand below 8), eax/ecx -> r8d/r9d, the base stays rbp."""
    import re

    out = re.sub(r"%xmm([1357])\b", lambda m: f"%xmm{int(m.group(1)) + 8}", form)
    out = re.sub(r"%(e?[ac]x|[ac]l)\b", lambda m: "%" + _GPR_REX[m.group(1)], out)
    return form64(out)


# The segment bases of ``form64_seg``'s variants: FS high (the effective address, base + RBP,
# wraps to DATA), GS low.
SEG_BASES = {"fs": 0xFFFF800000000000, "gs": 0x3000}


def form64_seg(form: str, seg: str) -> str | None:
    """Every memory operand through ``seg`` ("fs"/"gs"; the caller sets RBP to DATA - its base);
    None when the form has no memory operand."""
    if "(%ebp)" not in form:
        return None
    import re

    return re.sub(r"((0x[0-9a-f]+)?\(%ebp\))", f"%{seg}:\\1", form).replace("(%ebp)", "(%rbp)")


def form64_rip(form: str) -> str | None:
    """Every ``off(%ebp)`` operand RIP-relative to DATA+off (a marked displacement that
    ``patch_riprel`` resolves after assembly); None when the form has no memory operand."""
    import re

    if "(%ebp)" not in form:
        return None
    return re.sub(r"(0x[0-9a-f]+)?\(%ebp\)", lambda m: f"{_RIP_MARK << 12 | int(m.group(1) or '0', 16):#x}(%rip)", form)


def patch_riprel(code: bytes, expect: int) -> bytes:
    """Resolve ``form64_rip``'s ``expect`` marked displacements for the code placed at CODE."""
    from capstone import CS_ARCH_X86, CS_MODE_64, Cs

    out = bytearray(code)
    done = 0
    for insn in Cs(CS_ARCH_X86, CS_MODE_64).disasm(code, CODE):
        start = insn.address - CODE
        for k in range(start, start + insn.size - 3):
            disp = int.from_bytes(out[k : k + 4], "little")
            if disp >> 12 == _RIP_MARK:
                target = DATA + (disp & 0xFFF)
                out[k : k + 4] = (target - (insn.address + insn.size)).to_bytes(4, "little", signed=True)
                done += 1
                break
    assert done == expect, f"{done} of {expect} RIP-relative operands found"
    return bytes(out)
