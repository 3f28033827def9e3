"""Op keys come from the encoding (opcode, prefixes, effective size), never from capstone's mnemonic.

core/decode.py's ``op_name`` is the one place that maps an encoding to the
key its emitter is registered under.  These tests pin the size-dependent
opcodes (98/99, the string instructions, pushf/popf, iret, pusha/popa,
jcxz by address size, REX.W in 64-bit code), the hex keys of the x87 and
SIMD space, and cross-check every integer opcode against capstone where the
two must agree; and they run ``cbw``/``cwd`` in real mode through the
Machine, in both translation tiers (EAX once stayed 0xFE after
``mov $0xfe,%eax; cbw`` because capstone names 16-bit 98 ``cwde``).
"""

from __future__ import annotations

import capstone
import pytest

from gdbemu.core.cpu import CS, DESC_A, DESC_CS, DESC_P, DESC_R, DESC_S, SegmentCache
from gdbemu.core.decode import op_name
from gdbemu.core.ops import OPS
from gdbemu.machine import Machine


@pytest.mark.parametrize(
    ("raw", "bits", "key", "opsize", "addrsize"),
    [
        ("98", 16, "cbw", 2, 2),
        ("6698", 16, "cwde", 4, 2),
        ("98", 32, "cwde", 4, 4),
        ("6698", 32, "cbw", 2, 4),
        ("98", 64, "cwde", 4, 8),
        ("4898", 64, "cdqe", 8, 8),
        ("99", 16, "cwd", 2, 2),
        ("99", 32, "cdq", 4, 4),
        ("4899", 64, "cqo", 8, 8),
        ("a5", 16, "movsw", 2, 2),
        ("66a5", 16, "movsd", 4, 2),
        ("48a5", 64, "movsq", 8, 8),
        ("f3ab", 16, "stosw", 2, 2),
        ("9c", 16, "pushf", 2, 2),
        ("9c", 32, "pushfd", 4, 4),
        ("9c", 64, "pushfq", 8, 8),
        ("cf", 16, "iret", 2, 2),
        ("48cf", 64, "iretq", 8, 8),
        ("60", 16, "pushaw", 2, 2),
        ("60", 32, "pushal", 4, 4),
        ("e300", 16, "jcxz", 2, 2),
        ("67e300", 16, "jecxz", 2, 4),
        ("e300", 64, "jrcxz", 8, 8),
        ("50", 64, "push", 8, 8),
        ("6650", 64, "push", 2, 8),
        ("4863c1", 64, "movsxd", 8, 8),
        ("4190", 64, "xchg", 4, 8),
        ("90", 64, "nop", 4, 8),
        ("f390", 32, "pause", 4, 4),
        ("480fc70e", 64, "cmpxchg16b", 8, 8),
        ("0fc70e", 32, "cmpxchg8b", 4, 4),
        ("0f01f8", 64, "swapgs", 4, 8),
        ("0f01f9", 32, "rdtscp", 4, 4),
        ("0f05", 64, "syscall", 4, 8),
        ("06", 64, "", 4, 8),  # push es: #UD in 64-bit mode
        ("ffd8", 32, "", 4, 4),  # far call through a register: #UD
        ("d9e8", 32, "d9", 4, 4),
        ("0f58c1", 32, "0f58", 4, 4),
        ("f30f58c1", 32, "f30f58", 4, 4),
        ("660f58c1", 32, "660f58", 4, 4),
        ("f20f10c1", 32, "f20f10", 4, 4),
        ("660f3800c1", 32, "660f3800", 4, 4),
    ],
)
def test_op_key(raw: str, bits: int, key: str, opsize: int, addrsize: int) -> None:
    assert op_name(bytes.fromhex(raw), bits) == (key, opsize, addrsize)


# capstone's name differs from ours only where the size decides (or the form is invalid).
_EXPECTED_DIFFERENT = {("98", "cwde", "cbw"), ("99", "cdq", "cwd"), ("ff", "call", "lcall"), ("ff", "jmp", "ljmp")}


@pytest.mark.parametrize("bits", [16, 32])
def test_integer_keys_agree_with_capstone(bits: int) -> None:
    """Every one- and two-byte integer opcode: our key is capstone's name except where size decides."""
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_16 if bits == 16 else capstone.CS_MODE_32)
    bad = []
    for pfx in (b"", b"\x66", b"\x67"):
        for esc in (b"", b"\x0f"):
            for opc in range(256):
                for modrm in (0x00, 0x18, 0x38, 0xC0, 0xD8, 0xF8, 0xCA):
                    raw = pfx + esc + bytes([opc, modrm]) + bytes(8)
                    ci = next(md.disasm(raw, 0x1000, 1), None)
                    if ci is None or ci.mnemonic.startswith("f") and 0xD8 <= opc <= 0xDF:
                        continue
                    key = op_name(bytes(ci.bytes), bits)[0]
                    name = ci.mnemonic.split()[-1]
                    if name in OPS and key != name:
                        diff = ((esc + bytes([opc])).hex(), name, key)
                        if not (bits == 16 and diff in _EXPECTED_DIFFERENT) and diff[0] != "ff":
                            bad.append((pfx.hex(), *diff))
    assert not bad, bad[:20]


def _real_mode(code: bytes, tier: int) -> Machine:
    m = Machine(ram_size=1 << 20)
    m.translator.force_tier = tier
    m.mem.write(0x7C00, code + b"\xf4")
    cpu = m.cpu
    cpu.segs[CS] = SegmentCache(0, 0, 0xFFFF, DESC_P | DESC_S | DESC_CS | DESC_R | DESC_A)
    cpu.eip = 0x7C00
    cpu.compute_hflags()
    return m


@pytest.mark.parametrize("tier", [1, 2])
def test_cbw_cwd_in_16_bit_code(tier: int) -> None:
    # mov $0xfe,%eax; cbw; mov %ax,%bx; mov $0x8000,%ax; cwd; mov $0x80,%ecx; xchg %ax,%cx; cwde (66 98)
    code = bytes.fromhex("66b8fe0000009889c3b800809966b980000000916698")
    m = _real_mode(code, tier)
    m.run(max_insns=8)
    regs = m.cpu.regs
    assert regs[3] & 0xFFFF == 0xFFFE  # cbw: AL 0xFE -> AX 0xFFFE
    assert regs[2] & 0xFFFF == 0xFFFF  # cwd: AX 0x8000 -> DX 0xFFFF
    assert regs[0] == 0x00000080  # 66 98 in 16-bit code is cwde
