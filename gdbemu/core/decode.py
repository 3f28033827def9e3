"""Instruction decoding: capstone -> compact, cached instruction records.

capstone with operand details costs ~10-17 us per instruction, far more than
executing one, so a decoded record is cached by the exact bytes that produced
it (and the code size), and the translator asks this module only when it
builds a TB.  Records are immutable and carry everything the op emitters
need, resolved once: GPR numbers instead of register names, the effective
segment of each memory operand, the operand- and address-size attributes.
"""

from __future__ import annotations

from dataclasses import dataclass

import capstone
from capstone import x86 as cx

# Operand kinds
REG, IMM, MEM, SREG, CREG, DREG, OTHER = range(7)

_GPR = {}
for _i, _names in enumerate(
    [
        ("eax", "ax", "al", "rax"),
        ("ecx", "cx", "cl", "rcx"),
        ("edx", "dx", "dl", "rdx"),
        ("ebx", "bx", "bl", "rbx"),
        ("esp", "sp", "spl", "rsp"),
        ("ebp", "bp", "bpl", "rbp"),
        ("esi", "si", "sil", "rsi"),
        ("edi", "di", "dil", "rdi"),
    ]
):
    for _n in _names:
        _GPR[_n] = (_i, False)
for _i, _n in enumerate(("ah", "ch", "dh", "bh")):
    _GPR[_n] = (_i, True)
_SREG = {"es": 0, "cs": 1, "ss": 2, "ds": 3, "fs": 4, "gs": 5}


class DecodeError(Exception):
    """The bytes are not an instruction capstone knows: the CPU raises #UD."""


@dataclass(frozen=True, slots=True)
class Operand:
    kind: int
    size: int = 0
    reg: int = -1  # GPR / segment / CR / DR number
    high: bool = False  # ah, ch, dh, bh
    imm: int = 0
    seg: int = 3  # effective segment of a memory operand (DS default)
    seg_override: bool = False
    base: int = -1
    index: int = -1
    scale: int = 1
    disp: int = 0


@dataclass(frozen=True, slots=True)
class Insn:
    addr: int  # EIP of the instruction (offset in CS)
    size: int
    name: str  # capstone instruction name: "mov", "stosd", "jne", ...
    ops: tuple[Operand, ...]
    rep: int  # 0, 0xF3 (rep/repe) or 0xF2 (repne)
    lock: bool
    opsize: int  # operand-size attribute: 2 or 4
    addrsize: int  # address-size attribute: 2 or 4
    raw: bytes
    opcode: tuple[int, ...]
    modrm: int
    imm_off: int = 0  # where the immediate sits in raw (0: none), for immediate-only re-decodes
    imm_size: int = 0

    @property
    def next(self) -> int:
        return self.addr + self.size


class Decoder:
    """Decodes and caches; one per code size (16/32-bit)."""

    def __init__(self, bits: int) -> None:
        mode = {16: capstone.CS_MODE_16, 32: capstone.CS_MODE_32}[bits]
        self.md = capstone.Cs(capstone.CS_ARCH_X86, mode)
        self.md.detail = True
        self.bits = bits
        self.default_size = bits // 8
        # The last instruction decoded at each EIP.  A hit is validated
        # against the instruction's own bytes only, so rewriting a neighbour
        # (whose bytes merely share the 15-byte window) costs nothing.
        self.by_addr: dict[int, Insn] = {}
        self.decoded = 0  # capstone calls, for stats
        self.patched = 0  # immediate-only re-decodes (SMC that rewrites constants)

    def decode(self, window: bytes, addr: int) -> Insn:
        """Decode the instruction at the start of ``window`` (up to 15 bytes)."""
        insn = self.by_addr.get(addr)
        if insn is not None:
            n = insn.size
            raw = window[:n]
            if raw == insn.raw:
                return insn
            if insn.imm_size and len(raw) == n:
                patched = self._patch_imm(insn, raw)
                if patched is not None:
                    self.by_addr[addr] = patched
                    return patched
        insn = self._decode(window, addr)
        if len(self.by_addr) > 200_000:
            self.by_addr.clear()
        self.by_addr[addr] = insn
        return insn

    def _patch_imm(self, insn: Insn, raw: bytes) -> Insn | None:
        """The same instruction with another immediate: no capstone call.

        Self-modifying code most often rewrites a constant; when every byte
        outside the immediate field is unchanged the decoding is the same
        but for the immediate's value (interpreted as capstone did: signed
        or unsigned).
        """
        lo, hi = insn.imm_off, insn.imm_off + insn.imm_size
        if raw[:lo] != insn.raw[:lo] or raw[hi:] != insn.raw[hi:]:
            return None
        old_field = insn.raw[lo:hi]
        new_field = raw[lo:hi]
        ops = list(insn.ops)
        imms = [k for k, o in enumerate(ops) if o.kind == IMM]
        if len(imms) != 1:
            return None
        k = imms[0]
        old = ops[k].imm
        if old == int.from_bytes(old_field, "little", signed=True):
            new = int.from_bytes(new_field, "little", signed=True)
        elif old == int.from_bytes(old_field, "little"):
            new = int.from_bytes(new_field, "little")
        else:
            return None  # a relative branch target or a folded value: decode again
        o = ops[k]
        ops[k] = Operand(IMM, o.size, imm=new)
        self.patched += 1
        return Insn(
            insn.addr,
            insn.size,
            insn.name,
            tuple(ops),
            insn.rep,
            insn.lock,
            insn.opsize,
            insn.addrsize,
            bytes(raw),
            insn.opcode,
            insn.modrm,
            insn.imm_off,
            insn.imm_size,
        )

    def _decode(self, window: bytes, addr: int) -> Insn:
        self.decoded += 1
        try:
            ci = next(self.md.disasm(window, addr, 1))
        except StopIteration:
            raise DecodeError(window[:15].hex()) from None
        prefix = ci.prefix
        opsize = self.default_size
        if prefix[2] == 0x66:
            opsize = 6 - opsize
        addrsize = ci.addr_size
        ops = []
        for o in ci.operands:
            t = o.type
            if t == cx.X86_OP_REG:
                name = ci.reg_name(o.reg)
                if name in _GPR:
                    r, high = _GPR[name]
                    ops.append(Operand(REG, o.size, r, high))
                elif name in _SREG:
                    ops.append(Operand(SREG, 2, _SREG[name]))
                elif name.startswith("cr"):
                    ops.append(Operand(CREG, 4, int(name[2:])))
                elif name.startswith("dr"):
                    ops.append(Operand(DREG, 4, int(name[2:])))
                else:
                    ops.append(Operand(OTHER, o.size, o.reg))
            elif t == cx.X86_OP_IMM:
                ops.append(Operand(IMM, o.size, imm=o.imm))
            elif t == cx.X86_OP_MEM:
                m = o.mem
                base = index = -1
                bname = ci.reg_name(m.base) if m.base else None
                iname = ci.reg_name(m.index) if m.index else None
                if bname is not None:
                    if bname not in _GPR:
                        raise DecodeError(f"unsupported base {bname}")
                    base = _GPR[bname][0]
                if iname is not None:
                    if iname not in _GPR:
                        raise DecodeError(f"unsupported index {iname}")
                    index = _GPR[iname][0]
                if m.segment:
                    seg = _SREG[ci.reg_name(m.segment)]
                    override = True
                else:
                    seg = 2 if base in (4, 5) else 3
                    override = False
                ops.append(
                    Operand(
                        MEM,
                        o.size,
                        imm=0,
                        seg=seg,
                        seg_override=override,
                        base=base,
                        index=index,
                        scale=m.scale,
                        disp=m.disp,
                    )
                )
            else:
                ops.append(Operand(OTHER, o.size))
        raw = bytes(ci.bytes)
        return Insn(
            addr=addr,
            size=ci.size,
            name=ci.insn_name(),
            ops=tuple(ops),
            rep=prefix[0] if prefix[0] in (0xF3, 0xF2) else 0,
            lock=prefix[0] == 0xF0,
            opsize=opsize,
            addrsize=addrsize,
            raw=raw,
            opcode=tuple(ci.opcode),
            modrm=ci.modrm,
            imm_off=ci.imm_offset,
            imm_size=ci.imm_size,
        )


_TEXT_MD: dict[int, capstone.Cs] = {}


def disasm(insn: Insn, bits: int = 32) -> str:
    """Disassembly text of a decoded instruction, for logs and error messages."""
    md = _TEXT_MD.get(bits)
    if md is None:
        mode = {16: capstone.CS_MODE_16, 32: capstone.CS_MODE_32}[bits]
        md = _TEXT_MD[bits] = capstone.Cs(capstone.CS_ARCH_X86, mode)
    for ci in md.disasm(insn.raw, insn.addr, 1):
        return f"{ci.mnemonic} {ci.op_str}".strip()
    return f"(bad) {insn.raw.hex()}"
