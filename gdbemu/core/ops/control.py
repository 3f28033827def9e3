"""Near control transfers: jmp, jcc, call, ret, loop/loope/loopne, jcxz/jecxz/jrcxz.

In 64-bit code near branches have a 64-bit operand size (a 66 prefix makes
it 16 on AMD and in QEMU, which we follow), the targets are 64-bit RIPs.

Direct jumps exit through slot 0 (taken) / 1 (fall-through) so the exec loop
can chain TBs; a jump back to the TB's own start loops inside a tier-2 TB.
Far transfers (ljmp, lcall, lret) are in the system family: they load CS.
"""

from __future__ import annotations

from ..decode import IMM
from ..emit import MASK, Emitter
from . import far, op

JCC = {
    "jo": 0,
    "jno": 1,
    "jb": 2,
    "jae": 3,
    "je": 4,
    "jne": 5,
    "jbe": 6,
    "ja": 7,
    "js": 8,
    "jns": 9,
    "jp": 10,
    "jnp": 11,
    "jl": 12,
    "jge": 13,
    "jle": 14,
    "jg": 15,
}


def _target(e: Emitter) -> int:
    return e.insn.ops[0].imm & MASK[e.opsize]


@op(*JCC, flags="r", end=True)
def jcc(e: Emitter) -> None:
    cc = JCC[e.insn.name]
    with e.block(f"if {e.cond(cc)}:"):
        e.jump(_target(e), 0)
    e.jump(e.insn.next & MASK[e.opsize], 1)
    e.ended = True


@op("jmp", flags="", end=True)
def jmp(e: Emitter) -> None:
    (dst,) = e.insn.ops
    if far.is_far_indirect(e):  # FF /5: capstone may name jmp m16:xx "jmp"
        far.far_indirect(e)
        return
    if dst.kind == IMM:
        e.jump(_target(e), 0)
    else:
        v = e.load(dst, size=e.opsize, stable=True)
        e.jump_indirect(v)
    e.ended = True


@op("call", flags="", end=True)
def call(e: Emitter) -> None:
    (dst,) = e.insn.ops
    if far.is_far_indirect(e):  # FF /3: capstone may name call m16:xx "call"
        far.far_indirect(e)
        return
    size = e.opsize
    if dst.kind == IMM:
        e.push([e.next_eip()], size)
        e.jump(_target(e), 0)
    else:
        v = e.load(dst, size=size, stable=True)
        e.push([e.next_eip()], size)
        e.jump_indirect(v)
    e.ended = True


@op("ret", flags="", end=True)
def ret(e: Emitter) -> None:
    size = e.opsize
    v, sp = e.pop(size, commit=False)
    if e.insn.ops:
        e.emit(f"{sp} = {sp} + {e.const(e.insn.ops[0].imm & 0xFFFF)} & {MASK[e.stack_size]:#x}")
    e.write_reg(4, e.stack_size, sp)
    e.jump_indirect(v if size >= 4 else f"{v} & 0xFFFF")
    e.ended = True


def _count_reg(e: Emitter) -> tuple[int, str]:
    size = e.addrsize
    return size, e.reg(1, size)


@op("loop", "loope", "loopne", flags="r", end=True)
def loop(e: Emitter) -> None:
    size, cnt = _count_reg(e)
    c = e.tmp("c")
    e.emit(f"{c} = {cnt} - 1 & {MASK[size]:#x}")
    e.write_reg(1, size, c)
    cond = f"{c}"
    if e.insn.name == "loope":
        cond = f"{c} and {e.cond(4)}"
    elif e.insn.name == "loopne":
        cond = f"{c} and {e.cond(5)}"
    with e.block(f"if {cond}:"):
        e.jump(_target(e), 0)
    e.jump(e.insn.next & MASK[e.opsize], 1)
    e.ended = True


@op("jrcxz", "jecxz", "jcxz", flags="", end=True)
def jecxz(e: Emitter) -> None:
    size = e.addrsize  # the key says the same: jcxz/jecxz/jrcxz by address size
    with e.block(f"if not {e.reg(1, size)}:"):
        e.jump(_target(e), 0)
    e.jump(e.insn.next & MASK[e.opsize], 1)
    e.ended = True
