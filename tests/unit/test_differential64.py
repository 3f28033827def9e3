"""Differential tests of 64-bit code: gdbemu in long mode against Unicorn in UC_MODE_64.

The 64-bit counterpart of ``test_differential.py`` (support/oracle64.py runs
the snippets).  Every integer form a 64-bit compiler or kernel emits is here
at each operand size it has (8/16/32/64), with r8-r15 and the REX-only byte
registers (spl bpl sil dil r8b..), RIP-relative operands, the address-size
override (67: 32-bit addresses, zero-extended), 64-bit stack operations,
string instructions with RCX/RSI/RDI, and the forms only 64-bit code has
(movsxd, cdqe, cqo, cmpxchg16b, jrcxz, 6-bit shift counts, 32-bit writes
that zero-extend, cmov that zero-extends on a false condition).

Each form runs from seeded random states (registers biased to edge values,
pointer registers aimed into the data window or, for the ``hi`` forms, at
the top 2 GiB of the address space) in both translation tiers of gdbemu (one
Machine forced to tier 1, one to tier 2) and in Unicorn; registers, RIP, the
status flags and DF, the data window and the stack are compared, with the
flags the SDM leaves undefined for the case masked.  Deterministic: a
failure reproduces with the same seed.  ``-m slow`` runs 8x the cases.
"""

from __future__ import annotations

import dataclasses
import random
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

pytest.importorskip("unicorn")

from support.oracle64 import (  # noqa: E402 - after the importorskip
    AF,
    CF,
    CODE_ADDR,
    DATA_HI,
    DATA_LO,
    DATA_SIZE,
    OF,
    PAGE,
    PF,
    SF,
    STACK_BASE,
    STACK_SIZE,
    STATUS,
    ZF,
    Runner,
    State,
    Undefined,
    compare,
    describe,
)

M64 = (1 << 64) - 1
SEED = 64064
SLOW_FACTOR = 8
RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI = range(8)
R8, R9, R10, R11, R12, R13, R14, R15 = range(8, 16)
MUL_UNDEF = SF | ZF | AF | PF
BT_UNDEF = OF | SF | AF | PF
BSF_UNDEF = CF | OF | SF | AF | PF

# ---- the forms -------------------------------------------------------------------


@dataclasses.dataclass
class Form:
    name: str
    asm: str
    cases: int = 24
    setup: Callable[[random.Random, list[int], int], None] | None = None  # (rng, regs, data_base)
    undef: Callable[[State], Undefined] | None = None
    branch: int = 0  # a control transfer: stop both after this many instructions
    high: bool = False  # pointer registers aim at DATA_HI
    df: bool = False  # random DF (string forms)

    @property
    def n_insns(self) -> int:
        return len([ln for ln in self.asm.split(";") if ln.strip()])


FORMS: list[Form] = []


def add(asm: str, **kw: object) -> None:
    name = asm.replace(" ", "_")
    n = sum(f.name.startswith(name) for f in FORMS)
    FORMS.append(Form(name if not n else f"{name}#{n}", asm, **kw))  # type: ignore[arg-type]


def fixed(flags: int) -> Callable[[State], Undefined]:
    return lambda st: Undefined(flags)


# Registers by size: pairs of (dst, src) that exercise r8-r15, REX byte registers and legacy ones.
PAIRS = {
    8: (("rax", "r9"), ("r11", "rcx"), ("r14", "r15"), ("rdx", "rsi")),
    4: (("eax", "r9d"), ("r11d", "ecx"), ("r14d", "r15d"), ("edx", "esi")),
    2: (("ax", "r9w"), ("r11w", "cx"), ("r14w", "r15w"), ("dx", "si")),
    1: (("al", "r9b"), ("sil", "dil"), ("r14b", "bpl"), ("ah", "cl")),
}
ACC = {1: "al", 2: "ax", 4: "eax", 8: "rax"}
PTR = {1: "byte", 2: "word", 4: "dword", 8: "qword"}
# Memory operands: rbx and r13 point into the data window, r10 is a small signed index.
MEMS = ("[rbx+0x10]", "[r13+r10*8-0x44]", "[rbx+r10*2]", "[rip+0xf000]", "[r13]", "[rbx+0x7f]")


def m(size: int, k: int) -> str:
    return f"{PTR[size]} ptr {MEMS[k % len(MEMS)]}"


ALU = ("add", "or", "adc", "sbb", "and", "sub", "xor", "cmp", "test")


def _alu_undef(op: str) -> Callable[[State], Undefined] | None:
    return fixed(AF) if op in ("and", "or", "xor", "test") else None


for op in ALU:
    und = _alu_undef(op)
    for size in (1, 2, 4, 8):
        for d, s in PAIRS[size]:
            add(f"{op} {d}, {s}", undef=und, cases=12)
        add(f"{op} {PAIRS[size][0][0]}, {m(size, size)}", undef=und)
        if op != "test":
            add(f"{op} {m(size, size + 1)}, {PAIRS[size][1][1]}", undef=und)
        add(f"{op} {PAIRS[size][2][0]}, -0x7f" if size > 1 else f"{op} {PAIRS[size][2][0]}, 0x81", undef=und)
        add(f"{op} {ACC[size]}, {0x7F if size == 1 else -0x7F3A5C70 if size == 8 else 0x3A5C}", undef=und)
        add(f"{op} {m(size, size + 2)}, {0x5A if size == 1 else -0x12345 if size > 2 else 0x1234}", undef=und)
    add(f"{op} qword ptr [rbx+0x10], 0x7fffffff", undef=und)

for op in ("inc", "dec", "neg", "not"):
    for size in (1, 2, 4, 8):
        add(f"{op} {PAIRS[size][0][1]}", cases=16)
        add(f"{op} {m(size, 3)}", cases=16)


def _div_setup(rng: random.Random, regs: list[int], base: int) -> None:
    # Make the quotient fit most of the time: a high half smaller than the divisor.
    if rng.random() < 0.7:
        regs[RDX] = rng.getrandbits(rng.choice((0, 8, 31, 63)))
        regs[R9] = regs[R9] | (1 << 63) if rng.random() < 0.5 else regs[R9] | 1
        regs[RCX] |= 1 << rng.randrange(64)


for op in ("mul", "imul", "div", "idiv"):
    und = fixed(STATUS) if op in ("div", "idiv") else fixed(MUL_UNDEF)
    for size in (1, 2, 4, 8):
        src = {1: "cl", 2: "cx", 4: "r9d", 8: "r9"}[size]
        add(f"{op} {src}", undef=und, setup=_div_setup, cases=30)
        add(f"{op} {m(size, 4)}", undef=und, setup=_div_setup, cases=16)
for size in (2, 4, 8):
    d, s = PAIRS[size][1]
    add(f"imul {d}, {s}", undef=fixed(MUL_UNDEF))
    add(f"imul {d}, {m(size, 1)}", undef=fixed(MUL_UNDEF))
    add(f"imul {d}, {s}, -0x1234" if size > 2 else f"imul {d}, {s}, 0x1234", undef=fixed(MUL_UNDEF))
    add(f"imul {d}, {m(size, 2)}, 0x7f", undef=fixed(MUL_UNDEF))

# mov and friends
for size in (1, 2, 4, 8):
    for d, s in PAIRS[size][:3]:
        add(f"mov {d}, {s}", cases=8)
    add(f"mov {PAIRS[size][0][0]}, {m(size, 0)}", cases=12)
    add(f"mov {m(size, 1)}, {PAIRS[size][1][1]}", cases=12)
    add(f"mov {m(size, 3)}, {PAIRS[size][2][1]}", cases=12)
    add(f"mov {PAIRS[size][2][0]}, {0x81 if size == 1 else -0x1234 if size > 2 else 0x1234}", cases=8)
    add(f"mov {m(size, 5)}, {0x81 if size == 1 else -0x1234 if size > 2 else 0x1234}", cases=8)
add("movabs r12, 0x8000000000000001", cases=4)
add("movabs rax, 0xfedcba9876543210", cases=4)
add("mov r12d, 0x80000001", cases=4)
add("movzx r9, byte ptr [rbx+0x10]")
add("movzx eax, r9b")
add("movzx r14, cx")
add("movzx r14d, word ptr [r13]")
add("movsx r9, byte ptr [rbx+0x10]")
add("movsx eax, r9b")
add("movsx r14, cx")
add("movsx r14w, sil")
add("movsxd r9, dword ptr [rbx+0x10]")
add("movsxd rax, r9d")
add("movsxd r15, ecx")
add("lea r9, [rbx+r10*8-0x44]")
add("lea eax, [rbx+r10*8-0x44]")
add("lea r9w, [rbx+r10*2+0x7fff]")
add("lea rax, [rip+0x1234]")
add("lea r11, [r12+r13*4]")
add("lea eax, [ebx+ecx*2+0x10]")
add("lea rax, [ecx+edx]")
add("mov eax, dword ptr [ebx+0x10]")  # 67: a 32-bit address, zero-extended
add("mov qword ptr [ebx+r10d*1], rcx")
add("mov al, byte ptr [rip+0xf010]")
add("mov qword ptr [rip+0xf020], r15")
for size in (1, 2, 4, 8):
    d, s = PAIRS[size][0]
    add(f"xchg {d}, {s}", cases=8)
    add(f"xchg {m(size, 0)}, {s}", cases=8)
add("xchg eax, r9d", cases=8)
add("xchg r8, rax", cases=8)
add("xchg eax, eax", cases=4)
add("bswap r9d", cases=8)
add("bswap r9", cases=8)
add("bswap rax", cases=8)
add("cbw; cwde; cdqe", cases=4)
add("cbw", cases=8)
add("cwde", cases=8)
add("cdqe", cases=8)
add("cwd", cases=8)
add("cdq", cases=8)
add("cqo", cases=8)


def _cmpxchg_setup(rng: random.Random, regs: list[int], base: int) -> None:
    if rng.random() < 0.5:
        regs[RAX] = regs[R9]


for size in (1, 2, 4, 8):
    add(f"cmpxchg {PAIRS[size][0][1]}, {PAIRS[size][1][0]}", setup=_cmpxchg_setup, cases=16)
    add(f"cmpxchg {m(size, 4)}, {PAIRS[size][1][0]}", cases=16)
    add(f"xadd {PAIRS[size][0][1]}, {PAIRS[size][1][0]}", cases=12)
    add(f"xadd {m(size, 1)}, {PAIRS[size][1][0]}", cases=12)
    add(f"lock xadd {m(size, 0)}, {PAIRS[size][1][0]}", cases=6)


def _cx8_setup(rng: random.Random, regs: list[int], base: int) -> None:
    if rng.random() < 0.5:  # make the compare succeed: load rdx:rax from the operand
        regs[RBX] = base + 0x1000
        regs[RAX] = regs[RDX] = -1 & M64


add("cmpxchg8b qword ptr [r13]", cases=16, setup=_cx8_setup)
add("cmpxchg16b xmmword ptr [r13]", cases=16, setup=_cx8_setup)
add("lock cmpxchg16b xmmword ptr [r13]", cases=8, setup=_cx8_setup)

# shifts and rotates (6-bit counts at 64 bits)
SHIFTS = ("rol", "ror", "rcl", "rcr", "shl", "shr", "sar")


def shift_undef(op: str, bits: int, count: int) -> Undefined:
    c = count & (0x3F if bits == 64 else 0x1F)
    if op in ("rcl", "rcr") and bits < 32:
        c %= bits + 1
    if c == 0:
        return Undefined()
    flags = 0 if c == 1 else OF
    if op in ("shl", "shr", "sar"):
        flags |= AF
        if c > bits:  # beyond the width (8/16-bit): CF and the result's flags are what QEMU makes them
            flags |= CF
    return Undefined(flags)


def _cl_setup(counts: tuple[int, ...]) -> Callable[[random.Random, list[int], int], None]:
    def setup(rng: random.Random, regs: list[int], base: int) -> None:
        regs[RCX] = regs[RCX] & ~0xFF | rng.choice(counts) if rng.random() < 0.7 else regs[RCX]

    return setup


def _cl_undef(op: str, bits: int) -> Callable[[State], Undefined]:
    return lambda st: shift_undef(op, bits, st.regs[RCX] & 0xFF)


for op in SHIFTS:
    for size in (1, 2, 4, 8):
        bits = 8 * size
        r = PAIRS[size][2][0]
        for c in (1, 7, 31, 33, 63) if size == 8 else (1, 5, 31):
            add(f"{op} {r}, {c}", undef=fixed(shift_undef(op, bits, c).flags), cases=8)
        add(f"{op} {r}, cl", undef=_cl_undef(op, bits), setup=_cl_setup((0, 1, 31, 32, 33, 63, 64, 65)), cases=24)
        add(f"{op} {m(size, 2)}, cl", undef=_cl_undef(op, bits), setup=_cl_setup((0, 1, 32, 63)), cases=12)


def shld_undef(bits: int) -> Callable[[State], Undefined]:
    def f(st: State) -> Undefined:
        c = st.regs[RCX] & (0x3F if bits == 64 else 0x1F)
        if c == 0:
            return Undefined()
        flags = AF | (OF if c > 1 else 0)
        if c > bits:
            return Undefined(STATUS, {R11: (1 << bits) - 1, RBX: 0})
        return Undefined(flags)

    return f


for op in ("shld", "shrd"):
    for size in (2, 4, 8):
        d, s = PAIRS[size][1]
        add(f"{op} {d}, {s}, cl", undef=shld_undef(8 * size), setup=_cl_setup((0, 1, 13, 31, 32, 63)), cases=24)
        add(f"{op} {m(size, 0)}, {s}, cl", undef=shld_undef(8 * size), setup=_cl_setup((1, 9, 31)), cases=12)
    add(f"{op} r11, rcx, 37", undef=fixed(AF | OF), cases=12)

for op in ("bt", "bts", "btr", "btc"):
    for size in (2, 4, 8):
        d, s = PAIRS[size][1]
        add(f"{op} {d}, {s}", undef=fixed(BT_UNDEF), cases=12)
        add(f"{op} {d}, 45", undef=fixed(BT_UNDEF), cases=8)
        add(
            f"{op} {m(size, 0)}, {PAIRS[size][0][1]}",
            undef=fixed(BT_UNDEF),
            setup=lambda rng, regs, b: regs.__setitem__(R9, rng.randrange(-300, 300) & M64),
            cases=16,
        )  # noqa: E501
        add(f"{op} {m(size, 1)}, 61", undef=fixed(BT_UNDEF), cases=8)
for op in ("bsf", "bsr"):
    for size in (2, 4, 8):
        d, s = PAIRS[size][1]
        add(
            f"{op} {d}, {s}",
            undef=fixed(BSF_UNDEF),
            setup=lambda rng, regs, b: regs.__setitem__(RCX, 0) if rng.random() < 0.3 else None,
            cases=16,
        )  # noqa: E501
        add(f"{op} {d}, {m(size, 2)}", undef=fixed(BSF_UNDEF), cases=8)

CONDS = ("o", "no", "b", "ae", "e", "ne", "be", "a", "s", "ns", "p", "np", "l", "ge", "le", "g")
for cc in CONDS:
    add(f"set{cc} r9b", cases=8)
    add(f"set{cc} byte ptr [rbx+0x10]", cases=4)
    add(f"cmov{cc} r9d, ecx", cases=8)
    add(f"cmov{cc} rax, qword ptr [r13]", cases=8)
    add(f"cmov{cc} r11w, r14w", cases=4)
    add(f"cmp rax, rcx; cmov{cc} r9, r15", cases=8)
    add(f"sub r9d, r11d; set{cc} al", cases=8)
    add(f"add r9, r11; set{cc} al", cases=8)
    add(f"cmp r9w, r11w; set{cc} al", cases=4)

add("lahf", cases=8)
add("sahf", cases=8)
add("clc; cmc; stc; cmc", cases=4)

# stack


def _stack_setup(rng: random.Random, regs: list[int], base: int) -> None:
    regs[RSP] = (
        STACK_BASE + 0x1000 + rng.randrange(-0x20, 0x21) * 8 + (rng.randrange(1, 8) if rng.random() < 0.15 else 0)
    )
    regs[RBP] = STACK_BASE + 0x1000 + rng.randrange(-0x20, 0x21) * 8


for form in (
    "push r9",
    "push rax",
    "push r15; pop rcx",
    "pop r12",
    "pop rsp",
    "push rsp",
    "push -0x12",
    "push 0x12345678",
    "push -0x12345678",
    "push qword ptr [rbx+0x10]",
    "pop qword ptr [rbx+0x10]",
    "pop qword ptr [rsp+8]",
    "push cx",
    "pop r9w",
    "pushfq",
    "pushfq; pop rax",
    "push rax; popfq",
    "pushf",
    "leave",
    "enter 0x20, 0",
    "enter 0x10, 1",
    "enter 0x8, 3",
    "push rbp; mov rbp, rsp; sub rsp, 0x40; mov qword ptr [rbp-8], rdi; leave",
    "call 1f; 1: pop rax",
):
    add(form, setup=_stack_setup, cases=16, undef=fixed(0))


def _branch_setup(rng: random.Random, regs: list[int], base: int) -> None:
    _stack_setup(rng, regs, base)
    regs[R9] = rng.randrange(0x100, 0xF000)
    regs[RCX] = rng.choice((0, 1, 2, 1 << 32, (1 << 32) + 1, rng.getrandbits(64)))
    # a return address inside the code region on the stack top (ret)


for cc in CONDS:
    add(f"j{cc} .+0x40", branch=1, setup=_branch_setup, cases=8)
add("jmp r9", branch=1, setup=_branch_setup, cases=8)
add("call r9", branch=1, setup=_branch_setup, cases=8)
add("call .+0x123", branch=1, setup=_branch_setup, cases=8)
add("push r9; ret", branch=2, setup=_branch_setup, cases=8)
add("push r9; ret 0x18", branch=2, setup=_branch_setup, cases=8)
add("loop .-0x20", branch=1, setup=_branch_setup, cases=12)
add("loope .-0x20", branch=1, setup=_branch_setup, cases=12)
add("loopne .-0x20", branch=1, setup=_branch_setup, cases=12)
add("jrcxz .+0x30", branch=1, setup=_branch_setup, cases=12)
add("jecxz .+0x30", branch=1, setup=_branch_setup, cases=12)


# strings
def _string_setup(rng: random.Random, regs: list[int], base: int) -> None:
    regs[RSI] = base + rng.randrange(0x2000, DATA_SIZE - 0x2000)
    regs[RDI] = base + rng.randrange(0x2000, DATA_SIZE - 0x2000)
    if rng.random() < 0.3:  # overlapping copies
        regs[RDI] = regs[RSI] + rng.randrange(-16, 17)
    regs[RCX] = rng.choice((0, 1, 3, 17, 64, 300))
    if rng.random() < 0.3:  # equal strings for cmps/scas
        regs[RAX] = 0


def _string32_setup(rng: random.Random, regs: list[int], base: int) -> None:
    _string_setup(rng, regs, base)
    # 67: only the low 32 bits count (and are written back zero-extended)
    for r in (RSI, RDI, RCX):
        regs[r] |= rng.getrandbits(32) << 32


for kind in ("movs", "stos", "lods", "cmps", "scas"):
    for suffix in ("b", "w", "d", "q"):
        add(f"{kind}{suffix}", setup=_string_setup, df=True, cases=10)
        pfx = "repe " if kind in ("cmps", "scas") else "rep "
        add(f"{pfx}{kind}{suffix}", setup=_string_setup, df=True, cases=12)
    add(f"repne {kind}b" if kind in ("cmps", "scas") else f"rep {kind}q", setup=_string_setup, df=True, cases=12)
add("addr32 rep movsb", setup=_string32_setup, df=True, cases=12)
add("addr32 rep stosq", setup=_string32_setup, df=True, cases=12)
add("addr32 repne scasb", setup=_string32_setup, df=True, cases=12)
add("addr32 lodsd", setup=_string32_setup, df=True, cases=12)
add("rep movsb byte ptr es:[rdi], byte ptr fs:[rsi]", setup=_string_setup, df=True, cases=8)

# flag producers and consumers across instructions, and whole small sequences
for seq in (
    "add rax, rcx; adc r9, r11; sbb r14, r15",
    "sub eax, ecx; jb .+2; inc r9",
    "shl rax, 1; rcr r9, 1; rcl r11, 3",
    "xor eax, eax; sete r9b; dec r9d",
    "mov r9d, -1; add r9, 1; adc rax, 0",
    "neg rax; sbb rcx, rcx",
    "imul rax, r9; seto cl; setc dl",
    "mov eax, 1; shl rax, 63; sar rax, 63",
    "bsf rax, r9; cmovz rax, r11",
    "inc r9; adc r11, 0; dec r14; adc r15, 0",
):
    add(seq, cases=16, undef=fixed(MUL_UNDEF if "imul" in seq else BSF_UNDEF if "bsf" in seq else 0))

# 32-bit results zero-extend; 8/16-bit ones keep the rest
for seq in (
    "mov r9d, r9d",
    "add r9d, 0",
    "and eax, -1",
    "xchg r9d, ecx",
    "movzx r9d, r9w",
    "not r11d",
    "shl r9d, 0",
    "shr r9d, cl",
    "inc ax",
    "mov ah, 1",
):  # noqa: E501
    add(seq, cases=8, undef=fixed(0))

# ModRM/SIB encodings only 64-bit code has (r12 needs a SIB, r13 a disp8), absolute
# addresses (SIB without base and index, moffs64), RSP/RBP-based operands.
for form in (
    "mov rax, qword ptr [r13]",
    "mov rax, qword ptr [r12]",
    "mov rax, qword ptr [r13+r12*2]",
    "mov rax, qword ptr [r12+r13*1+0x10]",
    "mov r9, qword ptr [rsp+8]",
    "mov r9, qword ptr [rsp+r10*8+0x100]",
    "mov qword ptr [rbp-0x10], r9",
    "mov eax, dword ptr [0x10010]",
    "mov byte ptr [0x10018], 0x5a",
    "movabs rax, qword ptr [0x10020]",
    "movabs al, byte ptr [0x10022]",
    "movabs qword ptr [0x10030], rax",
    "xlatb",
):
    add(form, setup=lambda rng, regs, b: _pointers(rng, regs, b), cases=12)


def _pointers(rng: random.Random, regs: list[int], base: int) -> None:
    regs[R12] = base + rng.randrange(0x1000, 0x8000)
    regs[R13] = rng.randrange(0, 0x1000)
    regs[RBP] = STACK_BASE + 0x1000 + rng.randrange(-0x100, 0x100)
    regs[RBX] = base + rng.randrange(0x1000, 0x8000)


# Opcodes that do not exist in 64-bit mode: #UD (as .byte: the assembler refuses them).
for raw in ("27", "2f", "37", "3f", "06", "07", "0e", "16", "17", "1e", "1f", "60", "61", "ce", "d40a", "d50a", "d6",
            "9a0000000000", "ea0000000000"):  # fmt: skip
    add(".byte " + ", ".join(f"0x{raw[i : i + 2]}" for i in range(0, len(raw), 2)), cases=4)

FORM_BY_NAME = {f.name: f for f in FORMS}
assert len(FORM_BY_NAME) == len(FORMS)


# ---- assembling ------------------------------------------------------------------


def assemble(forms: list[Form], workdir: Path) -> dict[str, bytes]:
    """One ``as --64`` run for the table; each form between two labels."""
    as_path, objcopy, nm = shutil.which("as"), shutil.which("objcopy"), shutil.which("nm")
    if not (as_path and objcopy and nm):
        pytest.skip("GNU binutils (as, objcopy, nm) not found")
    lines = [".intel_syntax noprefix", ".code64", ".text"]
    for i, f in enumerate(forms):
        lines.append(f"f{i}_s:")
        lines += [part.strip() for part in f.asm.split(";") if part.strip()]
        lines.append(f"f{i}_e:")
        lines.append(".fill 0x80, 1, 0x90")
    # Relative addresses: `.+n` and `[rip+n]` are relative to the snippet, which runs at CODE_ADDR.
    src = workdir / "forms64.s"
    src.write_text("\n".join(lines) + "\n")
    obj, binf = workdir / "forms64.o", workdir / "forms64.bin"
    proc = subprocess.run([as_path, "--64", "-o", str(obj), str(src)], capture_output=True, text=True)
    if proc.returncode:
        raise AssertionError(f"as failed:\n{proc.stderr[-4000:]}")
    subprocess.run([objcopy, "-O", "binary", "-j", ".text", str(obj), str(binf)], check=True)
    syms = {}
    for line in subprocess.run([nm, str(obj)], check=True, capture_output=True, text=True).stdout.splitlines():
        value, _, name = line.split()
        syms[name] = int(value, 16)
    blob = binf.read_bytes()
    return {f.name: blob[syms[f"f{i}_s"] : syms[f"f{i}_e"]] for i, f in enumerate(forms)}


_ASSEMBLED: list[dict[str, bytes]] = []


@pytest.fixture(scope="module")
def assembled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    if not _ASSEMBLED:
        _ASSEMBLED.append(assemble(FORMS, tmp_path_factory.mktemp("diff64")))
    return _ASSEMBLED[0]


# ---- running ---------------------------------------------------------------------


def _rand64(rng: random.Random) -> int:
    r = rng.random()
    if r < 0.35:
        return rng.getrandbits(64)
    if r < 0.55:
        return rng.choice((0, 1, 2, M64, M64 - 1, 1 << 63, (1 << 63) - 1, 0xFFFFFFFF, 0x80000000, 0x7FFFFFFF, 1 << 32))
    if r < 0.7:
        return rng.getrandbits(32)
    if r < 0.8:
        return (1 << rng.randrange(64)) | rng.getrandbits(8)
    return (-rng.getrandbits(rng.choice((8, 16, 31)))) & M64


def make_state(form: Form, rng: random.Random, data: bytes, stack: bytes) -> State:
    base = DATA_HI if form.high else DATA_LO
    regs = [_rand64(rng) for _ in range(16)]
    regs[RBX] = base + rng.randrange(0x1000, DATA_SIZE - 0x1000)
    if rng.random() < 0.25:  # an operand straddling a page
        regs[RBX] = (regs[RBX] & ~(PAGE - 1)) - rng.randrange(1, 8)
    regs[R13] = base + rng.randrange(0x1000, DATA_SIZE - 0x1000)
    regs[R10] = rng.randrange(-0x40, 0x40) & M64
    regs[RSP] = STACK_BASE + STACK_SIZE // 2 + rng.randrange(-0x20, 0x20) * 8
    if form.setup is not None:
        form.setup(rng, regs, base)
    flags = rng.getrandbits(12) & STATUS
    if form.df and rng.random() < 0.5:
        flags |= 0x400
    return State(tuple(r & M64 for r in regs), flags, data, stack)


def run_form(form: Form, code: bytes, n_cases: int, seed: int) -> list[str]:
    rng = random.Random(f"{seed}:{form.name}")
    runner = Runner(code, form.n_insns, branch=bool(form.branch), high=form.high)
    if form.branch:
        runner.n_insns = form.branch
    data = rng.randbytes(DATA_SIZE)
    stack = rng.randbytes(STACK_SIZE)
    reports = []
    # Multi-instruction straight-line forms are also stopped after k < n instructions
    # (an instruction limit inside a block gdbemu has compiled whole).
    # (Unicorn's count overshoots after a block-ending instruction: not for those.)
    ends = ("rep", "call", "j", "popf", "loop", "ret")
    partial = form.n_insns > 1 and not form.branch and not any(w in form.asm for w in ends)
    for k in range(n_cases):
        st = make_state(form, rng, data, stack)
        und = form.undef(st) if form.undef else Undefined()
        for tier in (1, 2):
            stop = rng.randrange(1, form.n_insns) if partial and k % 2 else None
            uc, gd = runner.run(st, tier, stop)
            diffs = compare(st, uc, gd, und)
            if diffs:
                reports.append(
                    f"{form.asm}  [{code.hex()}; case {k}, tier {tier}]\n{describe(st)}\n  " + "\n  ".join(diffs)
                )
                break
        if len(reports) >= 2:
            break
    return reports


@pytest.mark.parametrize("name", [f.name for f in FORMS])
def test_form64(name: str, assembled: dict[str, bytes]) -> None:
    form = FORM_BY_NAME[name]
    reports = run_form(form, assembled[name], max(2, form.cases // 4), SEED)
    assert not reports, "\n\n".join(reports)


@pytest.mark.slow
@pytest.mark.parametrize("name", [f.name for f in FORMS])
def test_form64_slow(name: str, assembled: dict[str, bytes]) -> None:
    form = FORM_BY_NAME[name]
    reports = run_form(form, assembled[name], form.cases * SLOW_FACTOR // 4, SEED + 1)
    assert not reports, "\n\n".join(reports)


def test_table_size() -> None:
    assert len(FORMS) > 700
    assert CODE_ADDR == 0x1000
