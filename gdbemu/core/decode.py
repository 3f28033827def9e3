"""Instruction decoding: bytes -> compact, cached instruction records.

What an instruction *does* is decided here from its encoding alone, never
from a disassembler's mnemonic text: :func:`op_name` reads the legacy
prefixes, REX (64-bit code), the opcode bytes and ModRM.reg, computes the
effective operand size (16/32/64) and address size, and looks the opcode up
in this module's own tables (``_ONE_BYTE``, ``_TWO_BYTE``, ``_GROUPS``).  The
result is ``Insn.name``, the key under which the op emitters are registered
(``@op(...)`` in core/ops/).  Where the architecture gives one opcode
different instructions at different operand sizes, the table entry is a
triple indexed by the effective operand size, so the name already says
which: ``98`` is ``cbw`` / ``cwde`` / ``cdqe`` for 16 / 32 / 64-bit operands
(capstone calls the 16-bit one ``cwde``, which is how gdbemu once ran the
32-bit form in 16-bit code); the string instructions likewise
(``movsw``/``movsd``/``movsq``), ``pushf``/``pushfd``/``pushfq``,
``iret``/``iretd``/``iretq``, ``pusha``/``popa``; ``e3`` is
``jcxz``/``jecxz``/``jrcxz`` by *address* size.

Op keys for opcodes outside the integer tables (the x87 escapes ``d8``-``df``
and the MMX/SSE space of ``0f``) are the opcode's hex bytes with the
mandatory prefix in front, lower case, no separators:

* x87: ``"d8"`` .. ``"df"`` — the emitter looks at ``insn.modrm`` (mod and
  reg fields; for mod=3 the whole byte) to choose the operation;
* two-byte and three-byte SIMD opcodes: ``"0f58"``, ``"660f58"``,
  ``"f30f58"``, ``"f20f58"``, ``"660f3800"``, ``"0f3a0f"``: the mandatory
  prefix is F3 or F2 if present (the last of them), else 66 if present
  (which then does not change the operand size).

So an emitter for ``addps`` is registered as ``@op("0f58")`` and one for
``addsd`` as ``@op("f20f58")``; :func:`op_name` is the single place that
maps encodings to keys, and ``tests/unit/test_decode_keys.py`` checks it.

Operands (registers, immediates, memory operands with their effective
segment) still come from capstone, which also remains the disassembler for
logs and ``x/i`` (:func:`disasm`).  capstone with operand details costs
~10-17 us per instruction through its Python classes (about half that when
``Decoder._decode`` reads the C record with ctypes, as it does), far more
than executing one, so a decoded record
is cached by the exact bytes that produced it (and the code size), and the
translator asks this module only when it builds a TB.  Records are immutable
and carry everything the op emitters need, resolved once: GPR numbers
instead of register names, the effective segment of each memory operand,
the operand- and address-size attributes.

64-bit code (``Decoder(64)``): GPR numbers run 0..15 (r8..r15 and their
r8d/r8w/r8b forms are 8..15; spl/bpl/sil/dil are the low bytes of 4..7,
never ah..bh); a RIP-relative memory operand has ``riprel`` set, no base or
index, and ``disp`` already the absolute address (next RIP + displacement,
masked to 64 bits, or to 32 with a 67 prefix), so the emitter treats it as
a constant.  Vector registers are operands of kind XMM / MMX.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any

import capstone
from capstone import _cs, _cs_insn
from capstone import x86 as cx

# Operand kinds
REG, IMM, MEM, SREG, CREG, DREG, OTHER = range(7)
XMM, MMX = 7, 8  # vector registers: ``reg`` is the number (xmm0..xmm15, mm0..mm7)

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
for _i in range(8, 16):
    for _n in (f"r{_i}", f"r{_i}d", f"r{_i}w", f"r{_i}b"):
        _GPR[_n] = (_i, False)
for _i, _n in enumerate(("ah", "ch", "dh", "bh")):
    _GPR[_n] = (_i, True)
_XMM = {f"xmm{_i}": _i for _i in range(16)}
_MMX = {f"mm{_i}": _i for _i in range(8)}
_SREG = {"es": 0, "cs": 1, "ss": 2, "ds": 3, "fs": 4, "gs": 5}


class DecodeError(Exception):
    """The bytes are not an instruction capstone knows: the CPU raises #UD."""


@dataclass(frozen=True, slots=True)
class Operand:
    kind: int
    size: int = 0
    reg: int = -1  # GPR (0..15) / segment / CR / DR / XMM / MMX number
    high: bool = False  # ah, ch, dh, bh
    imm: int = 0
    seg: int = 3  # effective segment of a memory operand (DS default)
    seg_override: bool = False
    base: int = -1
    index: int = -1
    scale: int = 1
    disp: int = 0
    # RIP-relative memory operand: base = index = -1 and ``disp`` is already the
    # absolute address (next RIP + displacement), masked to 64 bits.
    riprel: bool = False


@dataclass(frozen=True, slots=True)
class Insn:
    addr: int  # EIP/RIP of the instruction (offset in CS)
    size: int
    name: str  # op key from op_name(): "mov", "stosd" (by opcode and operand size), "f20f58"
    ops: tuple[Operand, ...]
    rep: int  # 0, 0xF3 (rep/repe) or 0xF2 (repne)
    lock: bool
    opsize: int  # effective operand size in bytes: 2, 4 or 8
    addrsize: int  # effective address size in bytes: 2, 4 or 8
    raw: bytes
    opcode: tuple[int, ...]
    modrm: int
    imm_off: int = 0  # where the immediate sits in raw (0: none), for immediate-only re-decodes
    imm_size: int = 0

    @property
    def next(self) -> int:
        return self.addr + self.size


def _mem_operand(
    osize: int, sname: str | None, bname: str | None, iname: str | None, scale: int, disp: int, next_ip: int
) -> Operand:
    """A memory operand from capstone's register names (both decoding paths of ``Decoder``).

    RIP-relative (EIP with a 67 prefix: a 32-bit address) is resolved here
    to ``next_ip + disp``; without a segment prefix the segment is SS for an
    ESP/EBP base, else DS.
    """
    base = index = -1
    riprel = False
    if bname in ("rip", "eip"):
        riprel = True
        disp = (next_ip + disp) & (0xFFFFFFFF if bname == "eip" else 0xFFFFFFFFFFFFFFFF)
        bname = None
    if bname is not None:
        if bname not in _GPR:
            raise DecodeError(f"unsupported base {bname}")
        base = _GPR[bname][0]
    if iname is not None:
        if iname not in _GPR:
            raise DecodeError(f"unsupported index {iname}")
        index = _GPR[iname][0]
    override = sname is not None
    seg = _SREG[sname] if sname is not None else 2 if base in (4, 5) else 3
    return Operand(
        MEM,
        osize,
        imm=0,
        seg=seg,
        seg_override=override,
        base=base,
        index=index,
        scale=scale,
        disp=disp,
        riprel=riprel,
    )


class Decoder:
    """Decodes and caches; one per code size (16/32/64-bit)."""

    def __init__(self, bits: int) -> None:
        mode = {16: capstone.CS_MODE_16, 32: capstone.CS_MODE_32, 64: capstone.CS_MODE_64}[bits]
        self.md = capstone.Cs(capstone.CS_ARCH_X86, mode)
        self.md.detail = True
        self.bits = bits
        self.default_size = bits // 8
        # The last instruction decoded at each EIP.  A hit is validated
        # against the instruction's own bytes only, so rewriting a neighbour
        # (whose bytes merely share the 15-byte window) costs nothing.
        self.by_addr: dict[int, Insn] = {}
        self.decoded = 0  # capstone calls, for stats
        self._reg_names: dict[int, str] = {}  # capstone register id -> name
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
        """Decode through capstone's C API directly (the Python wrapper's objects cost ~3/4 of it).

        Reads the same fields of the same ``cs_insn`` record as
        ``_decode_wrapped`` does through capstone's Python classes, and gives
        equal records (tests/unit/test_decode_direct.py checks that on a
        kernel's code and on every test form).
        """
        self.decoded += 1
        data = bytes(window)
        all_insn = ctypes.POINTER(_cs_insn)()
        count = _cs.cs_disasm(self.md.csh, data, len(data), addr, 1, ctypes.byref(all_insn))
        if count <= 0:
            raise DecodeError(data[:15].hex())
        try:
            ci = all_insn[0]
            size = ci.size
            x = ci.detail.contents.arch.x86
            prefix0 = x.prefix[0]
            opcode = tuple(x.opcode)
            modrm = x.modrm
            enc = x.encoding
            imm_off, imm_size = enc.imm_offset, enc.imm_size
            operands = x.operands
            raw_ops = []
            for k in range(x.op_count):
                o = operands[k]
                t = o.type
                if t == cx.X86_OP_MEM:
                    m = o.value.mem
                    raw_ops.append((t, o.size, (m.segment, m.base, m.index, m.scale, m.disp)))
                elif t == cx.X86_OP_IMM:
                    raw_ops.append((t, o.size, o.value.imm))
                else:
                    raw_ops.append((t, o.size, o.value.reg))
        finally:
            _cs.cs_free(all_insn, count)
        raw = data[:size]
        return self._record(addr, size, prefix0, opcode, modrm, imm_off, imm_size, raw, raw_ops)

    def _reg_name(self, reg: int) -> str:
        name = self._reg_names.get(reg)
        if name is None:
            name = self._reg_names[reg] = self.md.reg_name(reg)
        return name

    def _record(
        self,
        addr: int,
        size: int,
        prefix0: int,
        opcode: tuple[int, ...],
        modrm: int,
        imm_off: int,
        imm_size: int,
        raw: bytes,
        raw_ops: list[tuple[int, int, Any]],
    ) -> Insn:
        """Build the Insn from capstone's fields (shared by both ways of calling capstone)."""
        key, opsize, addrsize = op_name(raw, self.bits)
        ops = []
        for t, osize, value in raw_ops:
            if t == cx.X86_OP_REG:
                name = self._reg_name(value)
                if name in _GPR:
                    r, high = _GPR[name]
                    ops.append(Operand(REG, osize, r, high))
                elif name in _SREG:
                    ops.append(Operand(SREG, 2, _SREG[name]))
                elif name in _XMM:
                    ops.append(Operand(XMM, osize, _XMM[name]))
                elif name in _MMX:
                    ops.append(Operand(MMX, osize, _MMX[name]))
                elif name.startswith("cr"):
                    ops.append(Operand(CREG, 4, int(name[2:])))
                elif name.startswith("dr"):
                    ops.append(Operand(DREG, 4, int(name[2:])))
                else:
                    ops.append(Operand(OTHER, osize, value))
            elif t == cx.X86_OP_IMM:
                ops.append(Operand(IMM, osize, imm=value))
            elif t == cx.X86_OP_MEM:
                segment, mbase, mindex, scale, disp = value
                ops.append(
                    _mem_operand(
                        osize,
                        self._reg_name(segment) if segment else None,
                        self._reg_name(mbase) if mbase else None,
                        self._reg_name(mindex) if mindex else None,
                        scale,
                        disp,
                        addr + size,
                    )
                )
            else:
                ops.append(Operand(OTHER, osize))
        return Insn(
            addr=addr,
            size=size,
            name=key,
            ops=tuple(ops),
            rep=prefix0 if prefix0 in (0xF3, 0xF2) else 0,
            lock=prefix0 == 0xF0,
            opsize=opsize,
            addrsize=addrsize,
            raw=raw,
            opcode=opcode,
            modrm=modrm,
            imm_off=imm_off,
            imm_size=imm_size,
        )

    def _decode_wrapped(self, window: bytes, addr: int) -> Insn:
        """The reference: the same decoding through capstone's Python classes (tests compare the two)."""
        try:
            ci = next(self.md.disasm(window, addr, 1))
        except StopIteration:
            raise DecodeError(window[:15].hex()) from None
        prefix = ci.prefix
        raw = bytes(ci.bytes)
        key, opsize, addrsize = op_name(raw, self.bits)
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
                elif name in _XMM:
                    ops.append(Operand(XMM, o.size, _XMM[name]))
                elif name in _MMX:
                    ops.append(Operand(MMX, o.size, _MMX[name]))
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
                ops.append(
                    _mem_operand(
                        o.size,
                        ci.reg_name(m.segment) if m.segment else None,
                        ci.reg_name(m.base) if m.base else None,
                        ci.reg_name(m.index) if m.index else None,
                        m.scale,
                        m.disp,
                        addr + ci.size,
                    )
                )
            else:
                ops.append(Operand(OTHER, o.size))
        return Insn(
            addr=addr,
            size=ci.size,
            name=key,
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
        mode = {16: capstone.CS_MODE_16, 32: capstone.CS_MODE_32, 64: capstone.CS_MODE_64}[bits]
        md = _TEXT_MD[bits] = capstone.Cs(capstone.CS_ARCH_X86, mode)
    for ci in md.disasm(insn.raw, insn.addr, 1):
        return f"{ci.mnemonic} {ci.op_str}".strip()
    return f"(bad) {insn.raw.hex()}"


# ---- the opcode tables: encoding -> op key ------------------------------------
# An entry is a name, or a triple (16-bit, 32-bit, 64-bit operand size).  A
# group opcode's entry is in _GROUPS, indexed by ModRM.reg (and, for some,
# by mod = 3 separately).  Opcodes in neither table get the hex key of the
# module docstring.

_LEGACY = frozenset({0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65, 0x66, 0x67, 0xF0, 0xF2, 0xF3})
_ALU = ("add", "or", "adc", "sbb", "and", "sub", "xor", "cmp")
_CC = ("o", "no", "b", "ae", "e", "ne", "be", "a", "s", "ns", "p", "np", "l", "ge", "le", "g")

Entry = str | tuple[str, str, str]

_ONE_BYTE: dict[int, Entry] = {}
for _k, _n in enumerate(_ALU):
    for _j in range(6):
        _ONE_BYTE[_k * 8 + _j] = _n
_ONE_BYTE.update(
    {
        0x06: "push", 0x07: "pop", 0x0E: "push", 0x16: "push", 0x17: "pop", 0x1E: "push", 0x1F: "pop",
        0x27: "daa", 0x2F: "das", 0x37: "aaa", 0x3F: "aas",
        0x60: ("pushaw", "pushal", "pushal"), 0x61: ("popaw", "popal", "popal"), 0x62: "bound", 0x63: "arpl",
        0x68: "push", 0x69: "imul", 0x6A: "push", 0x6B: "imul",
        0x6C: "insb", 0x6D: ("insw", "insd", "insd"), 0x6E: "outsb", 0x6F: ("outsw", "outsd", "outsd"),
        0x84: "test", 0x85: "test", 0x86: "xchg", 0x87: "xchg",
        0x88: "mov", 0x89: "mov", 0x8A: "mov", 0x8B: "mov", 0x8C: "mov", 0x8D: "lea", 0x8E: "mov",
        0x90: "nop", 0x98: ("cbw", "cwde", "cdqe"), 0x99: ("cwd", "cdq", "cqo"),
        0x9A: "lcall", 0x9B: "wait", 0x9C: ("pushf", "pushfd", "pushfq"), 0x9D: ("popf", "popfd", "popfq"),
        0x9E: "sahf", 0x9F: "lahf",
        0xA0: "mov", 0xA1: "mov", 0xA2: "mov", 0xA3: "mov",
        0xA4: "movsb", 0xA5: ("movsw", "movsd", "movsq"), 0xA6: "cmpsb", 0xA7: ("cmpsw", "cmpsd", "cmpsq"),
        0xA8: "test", 0xA9: "test",
        0xAA: "stosb", 0xAB: ("stosw", "stosd", "stosq"), 0xAC: "lodsb", 0xAD: ("lodsw", "lodsd", "lodsq"),
        0xAE: "scasb", 0xAF: ("scasw", "scasd", "scasq"),
        0xC2: "ret", 0xC3: "ret", 0xC4: "les", 0xC5: "lds", 0xC8: "enter", 0xC9: "leave",
        0xCA: "retf", 0xCB: "retf", 0xCC: "int3", 0xCD: "int", 0xCE: "into", 0xCF: ("iret", "iretd", "iretq"),
        0xD4: "aam", 0xD5: "aad", 0xD6: "salc", 0xD7: "xlatb",
        0xE0: "loopne", 0xE1: "loope", 0xE2: "loop",
        0xE4: "in", 0xE5: "in", 0xE6: "out", 0xE7: "out", 0xE8: "call", 0xE9: "jmp", 0xEA: "ljmp", 0xEB: "jmp",
        0xEC: "in", 0xED: "in", 0xEE: "out", 0xEF: "out",
        0xF1: "int1", 0xF4: "hlt", 0xF5: "cmc",
        0xF8: "clc", 0xF9: "stc", 0xFA: "cli", 0xFB: "sti", 0xFC: "cld", 0xFD: "std",
    }
)  # fmt: skip
for _j in range(8):
    _ONE_BYTE[0x40 + _j] = "inc"
    _ONE_BYTE[0x48 + _j] = "dec"
    _ONE_BYTE[0x50 + _j] = "push"
    _ONE_BYTE[0x58 + _j] = "pop"
    _ONE_BYTE[0xB0 + _j] = "mov"
    _ONE_BYTE[0xB8 + _j] = "mov"
for _j in range(16):
    _ONE_BYTE[0x70 + _j] = "j" + _CC[_j]
for _j in range(1, 8):
    _ONE_BYTE[0x90 + _j] = "xchg"

_TWO_BYTE: dict[int, Entry] = {
    0x02: "lar", 0x03: "lsl", 0x05: "syscall", 0x06: "clts", 0x07: "sysret", 0x08: "invd", 0x09: "wbinvd",
    0x0B: "ud2", 0x0D: "prefetch", 0x18: "nop",
    0x19: "nop", 0x1A: "nop", 0x1B: "nop", 0x1C: "nop", 0x1D: "nop", 0x1E: "nop", 0x1F: "nop",
    0x20: "mov", 0x21: "mov", 0x22: "mov", 0x23: "mov",
    0x30: "wrmsr", 0x31: "rdtsc", 0x32: "rdmsr", 0x34: "sysenter", 0x35: "sysexit",
    0xA0: "push", 0xA1: "pop", 0xA2: "cpuid", 0xA3: "bt", 0xA4: "shld", 0xA5: "shld",
    0xA8: "push", 0xA9: "pop", 0xAB: "bts", 0xAC: "shrd", 0xAD: "shrd", 0xAF: "imul",
    0xB0: "cmpxchg", 0xB1: "cmpxchg", 0xB2: "lss", 0xB3: "btr", 0xB4: "lfs", 0xB5: "lgs",
    0xB6: "movzx", 0xB7: "movzx", 0xBB: "btc", 0xBC: "bsf", 0xBD: "bsr", 0xBE: "movsx", 0xBF: "movsx",
    0xC0: "xadd", 0xC1: "xadd",
}  # fmt: skip
for _j in range(16):
    _TWO_BYTE[0x40 + _j] = "cmov" + _CC[_j]
    _TWO_BYTE[0x80 + _j] = "j" + _CC[_j]
    _TWO_BYTE[0x90 + _j] = "set" + _CC[_j]
for _j in range(8):
    _TWO_BYTE[0xC8 + _j] = "bswap"

_SHIFTS = ("rol", "ror", "rcl", "rcr", "shl", "shr", "sal", "sar")
# Group opcodes: (one-byte opcode or 0x100 + two-byte opcode) -> names by ModRM.reg
# ("" = undefined: #UD).
_GROUPS: dict[int, tuple[str, ...]] = {
    0x80: _ALU, 0x81: _ALU, 0x82: _ALU, 0x83: _ALU,
    0x8F: ("pop", "", "", "", "", "", "", ""),
    0xC0: _SHIFTS, 0xC1: _SHIFTS, 0xD0: _SHIFTS, 0xD1: _SHIFTS, 0xD2: _SHIFTS, 0xD3: _SHIFTS,
    0xC6: ("mov", "", "", "", "", "", "", ""), 0xC7: ("mov", "", "", "", "", "", "", ""),
    0xF6: ("test", "test", "not", "neg", "mul", "imul", "div", "idiv"),
    0xF7: ("test", "test", "not", "neg", "mul", "imul", "div", "idiv"),
    0xFE: ("inc", "dec", "", "", "", "", "", ""),
    0xFF: ("inc", "dec", "call", "lcall", "jmp", "ljmp", "push", ""),
    0x100: ("sldt", "str", "lldt", "ltr", "verr", "verw", "", ""),
    0x101: ("sgdt", "sidt", "lgdt", "lidt", "smsw", "", "lmsw", "invlpg"),
    0x1AE: ("fxsave", "fxrstor", "ldmxcsr", "stmxcsr", "xsave", "xrstor", "xsaveopt", "clflush"),
    0x1BA: ("", "", "", "", "bt", "bts", "btr", "btc"),
    0x1C7: ("", "cmpxchg8b", "", "", "", "", "rdrand", "rdseed"),
}  # fmt: skip
# Register forms (mod = 3) of 0f 01 and 0f ae, by the whole ModRM byte.
_MOD3: dict[int, dict[int, str]] = {
    0x101: {0xC8: "monitor", 0xC9: "mwait", 0xCA: "clac", 0xCB: "stac", 0xD0: "xgetbv", 0xD1: "xsetbv",
            0xF8: "swapgs", 0xF9: "rdtscp"},
    0x1AE: {0xE8: "lfence", 0xF0: "mfence", 0xF8: "sfence"},
}  # fmt: skip
for _j in range(8):
    _MOD3[0x101][0xE0 + _j] = "smsw"
    _MOD3[0x101][0xF0 + _j] = "lmsw"
    for _r in (0xE8, 0xF0, 0xF8):
        _MOD3[0x1AE].setdefault(_r + _j, {0xE8: "lfence", 0xF0: "mfence", 0xF8: "sfence"}[_r])
# Valid in 16/32-bit code only (#UD in 64-bit mode).
_NOT_64 = frozenset({0x06, 0x07, 0x0E, 0x16, 0x17, 0x1E, 0x1F, 0x27, 0x2F, 0x37, 0x3F, 0x60, 0x61, 0x62, 0x82,
                     0x9A, 0xC4, 0xC5, 0xCE, 0xD4, 0xD5, 0xD6, 0xEA})  # fmt: skip
# Opcodes whose operand size is 64 bits by default in 64-bit mode (66 makes it 16).
_DEFAULT_64 = frozenset(
    {0x50 + j for j in range(8)} | {0x58 + j for j in range(8)}
    | {0x68, 0x6A, 0x8F, 0x9C, 0x9D, 0xC2, 0xC3, 0xC8, 0xC9, 0xE8, 0xE9, 0xEB, 0xE0, 0xE1, 0xE2, 0xE3}
    | {0x70 + j for j in range(16)}
)  # fmt: skip
_DEFAULT_64_0F = frozenset({0xA0, 0xA1, 0xA8, 0xA9} | {0x80 + j for j in range(16)})
_SIZE_INDEX = {2: 0, 4: 1, 8: 2}


_VEX_PP = ("", "66", "f3", "f2")
_VEX_MAP = {1: "0f", 2: "0f38", 3: "0f3a"}


def _vex_name(raw: bytes, i: int, bits: int) -> str:
    """The key of a VEX-encoded instruction: "v" + the implied prefix (pp) + map + opcode.

    ``c4 e2 70 f2 c3`` (ANDN) is ``v0f38f2``; ``c4 e2 73 f5 c3`` (PDEP) ``vf20f38f5``.
    C4/C5 are VEX in 64-bit code, elsewhere when the next byte's top bits are 11
    (LES/LDS need a memory operand).  VEX.L and VEX.W are the emitter's to read.
    """
    if raw[i] == 0xC5:
        pp, vmap, op = raw[i + 1] & 3, 1, raw[i + 2] if i + 2 < len(raw) else 0
    else:
        if i + 3 >= len(raw):
            return ""
        pp, vmap, op = raw[i + 2] & 3, raw[i + 1] & 0x1F, raw[i + 3]
    if vmap not in _VEX_MAP:
        return ""
    return f"v{_VEX_PP[pp]}{_VEX_MAP[vmap]}{op:02x}"


def op_name(raw: bytes, bits: int) -> tuple[str, int, int]:
    """The op key, effective operand size and address size (bytes) of an encoding.

    ``raw`` is the whole instruction (as decoded), ``bits`` the code size
    (16, 32 or 64).  This is the only place that maps opcodes to semantics.
    """
    i = 0
    n = len(raw)
    opsize_pfx = addr_pfx = False
    mandatory = 0
    rex = 0
    while i < n:
        b = raw[i]
        if bits == 64 and 0x40 <= b <= 0x4F:
            rex = b
        elif b in _LEGACY:
            rex = 0  # a REX prefix counts only right before the opcode: one before a legacy prefix is ignored
            if b == 0x66:
                opsize_pfx = True
            elif b == 0x67:
                addr_pfx = True
            elif b in (0xF2, 0xF3):
                mandatory = b
        else:
            break
        i += 1
    if bits == 64:
        addrsize = 4 if addr_pfx else 8
    else:
        addrsize = (2 if bits == 16 else 4) if not addr_pfx else (4 if bits == 16 else 2)
    if i >= n:
        return "", 4, addrsize
    b0 = raw[i]
    if b0 in (0xC4, 0xC5) and i + 2 < n and (bits == 64 or raw[i + 1] >> 6 == 3):
        return _vex_name(raw, i, bits), 8 if bits == 64 and b0 == 0xC4 and raw[i + 2] & 0x80 else 4, addrsize
    two = b0 == 0x0F
    if two:
        i += 1
        if i >= n:
            return "0f", 4, addrsize
        b0 = raw[i]
    modrm = raw[i + 1] if i + 1 < n else 0
    if bits == 64:
        if rex & 8:
            opsize = 8
        elif opsize_pfx:
            opsize = 2
        elif (b0 in _DEFAULT_64_0F) if two else (b0 in _DEFAULT_64 or (b0 == 0xFF and (modrm >> 3) & 7 in (2, 4, 6))):
            opsize = 8
        else:
            opsize = 4
    else:
        opsize = (2 if bits == 16 else 4) ^ (6 if opsize_pfx else 0)
    key = 0x100 + b0 if two else b0
    entry: Entry | None = None
    if key in _GROUPS:
        if key in _MOD3 and modrm >> 6 == 3:
            entry = _MOD3[key].get(modrm, "")
        else:
            entry = _GROUPS[key][(modrm >> 3) & 7]
        if key == 0xFF and modrm >> 6 == 3 and (modrm >> 3) & 7 in (3, 5):
            entry = ""  # far call/jmp need a memory operand
        if not entry:
            entry = None
    elif two:
        entry = _TWO_BYTE.get(b0)
    elif bits == 64 and b0 in _NOT_64:
        return "", opsize, addrsize
    else:
        entry = _ONE_BYTE.get(b0)
    if bits == 64:
        if not two and b0 == 0x63:
            entry = "movsxd"
        elif not two and b0 == 0x90 and rex & 1:
            entry = "xchg"
        elif two and b0 == 0xC7 and entry == "cmpxchg8b" and rex & 8:
            entry = "cmpxchg16b"
    if not two and b0 == 0x90 and entry == "nop" and mandatory == 0xF3:
        entry = "pause"
    if two and b0 in (0xBC, 0xBD) and mandatory == 0xF3:
        entry = "tzcnt" if b0 == 0xBC else "lzcnt"  # BSF/BSR on a CPU without BMI1/ABM (ops/simd_bits.py)
    if not two and b0 == 0xE3:
        return ("jcxz", "jecxz", "jrcxz")[_SIZE_INDEX[addrsize]], opsize, addrsize
    if entry is None:
        if two and (key in _GROUPS or b0 in _TWO_BYTE):
            return "", opsize, addrsize  # an undefined slot of a known opcode: #UD
        if not two and (key in _GROUPS or b0 in _ONE_BYTE):
            return "", opsize, addrsize
        hexkey = raw[i - 1 : i + 1].hex() if two else raw[i : i + 1].hex()
        if two and b0 in (0x38, 0x3A) and i + 1 < n:
            hexkey = raw[i - 1 : i + 2].hex()
        if two:
            if mandatory:
                hexkey = f"{mandatory:02x}{hexkey}"
            elif opsize_pfx:
                hexkey = "66" + hexkey
                opsize = 8 if rex & 8 else (4 if bits != 16 else 2)
        return hexkey, opsize, addrsize
    if isinstance(entry, tuple):
        return entry[_SIZE_INDEX[opsize]], opsize, addrsize
    return entry, opsize, addrsize
