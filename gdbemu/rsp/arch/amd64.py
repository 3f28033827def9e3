"""The amd64 register layout gdbemu presents to gdb for a CPU that can enter long mode.

One layout for the whole session (DESIGN.md, wave 2 notes): a 64-bit machine
(a CPU model with LM) reports this description from reset, while its code is
still 16- or 32-bit, so the ``g`` packet never changes length when the guest
switches mode (QEMU's users have met "Remote 'g' packet reply is too long"
for a decade).  Registers narrower in the current mode are simply their low
bits: in 32-bit code ``rax`` holds EAX zero-extended and ``r8``-``r15`` are 0.
The top-level ``gdbinit`` picks the disassembly mode from ``monitor cpumode``.

Features, in regnum order
-------------------------
=====  ===========================  ====================================================
regno  feature                      registers
=====  ===========================  ====================================================
0-39   ``org.gnu.gdb.i386.core``    rax rbx rcx rdx rsi rdi rbp rsp r8-r15, rip, eflags,
                                    cs ss ds es fs gs, st0-st7, fctrl ... fop
40-56  ``org.gnu.gdb.i386.sse``     xmm0-xmm15 (128-bit), mxcsr
57-58  ``org.gnu.gdb.i386.segments``  fs_base gs_base (64-bit)
59-78  ``org.gdbemu.i386.system``   k_gs_base, cs_base ss_base ds_base es_base,
                                    cr0 cr2 cr3 cr4 cr8, efer, gdtr_base gdtr_limit
                                    idtr_base idtr_limit, dr0-dr3 dr6 dr7
=====  ===========================  ====================================================

The ``g`` block is 708 bytes.

Why this shape:

* ``org.gnu.gdb.i386.core`` and ``.sse`` are copied register for register
  from gdb's ``gdb/features/i386/64bit-core.xml`` and ``64bit-sse.xml``
  (gdb's amd64 order: rax rbx rcx rdx rsi rdi rbp rsp, unlike i386's
  eax ecx edx ebx ...).  The SSE feature is included because gdb's amd64
  backend without it assumes a description with SSE anyway, and the CPU
  has the state (``cpu.fpu.xmm``, 16 registers, ``cpu.fpu.mxcsr``).
  The vec128 union leaves out the bfloat16/half views (types older gdbs
  do not know).
* ``org.gnu.gdb.i386.segments`` is gdb's own feature for the FS/GS bases:
  with it ``$fs_base``/``$gs_base`` are the names gdb's amd64 code uses (the
  i386 layout cannot have it: gdb 13 asserts on it without the Linux OS ABI;
  the amd64 backend takes it).  ``tests/unit/test_rsp_amd64.py`` checks that
  gdb accepts the description.
* Everything else gdb has no feature for goes in ``org.gdbemu.i386.system``,
  as in the i386 layout but 64 bits wide (QEMU's ``org.qemu.gdb.i386.sys``
  carries the same registers): KERNEL_GS_BASE, the other segment bases, CR0,
  CR2-CR4, CR8 (the TPR), EFER, GDTR/IDTR and the debug registers.
"""

from __future__ import annotations

import dataclasses

from . import RegisterInfo, RegisterLayout
from .i386 import CR0_TYPE, CR4_TYPE, EFER_TYPE, EFLAGS_TYPE, SSE_FEATURE, SSE_TYPES, SYSTEM_FEATURE

__all__ = [
    "AMD64_LAYOUT",
    "CORE_FEATURE",
    "GPR_ORDER",
    "RIP",
    "SEGMENTS_FEATURE",
    "SSE_FEATURE",
    "SYSTEM_FEATURE",
]

CORE_FEATURE = "org.gnu.gdb.i386.core"
SEGMENTS_FEATURE = "org.gnu.gdb.i386.segments"

# gdb's amd64 names of cpu.get_gpr(i), i = 0..15, in the order gdb numbers them.
GPR_ORDER = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", *[f"r{i}" for i in range(8, 16)])

# The control-register flags at 64 bits (a flags type is as wide as its register).
CR0_TYPE64 = dataclasses.replace(CR0_TYPE, size=8)
CR4_TYPE64 = dataclasses.replace(CR4_TYPE, size=8)

_Row = tuple[str, int, str, "str | None"]
_CORE: list[_Row] = [
    *[(n, 64, "int64", None) for n in ("rax", "rbx", "rcx", "rdx", "rsi", "rdi")],
    ("rbp", 64, "data_ptr", None),
    ("rsp", 64, "data_ptr", None),
    *[(f"r{i}", 64, "int64", None) for i in range(8, 16)],
    ("rip", 64, "code_ptr", None),
    ("eflags", 32, "i386_eflags", None),
    *[(n, 32, "int32", None) for n in ("cs", "ss", "ds", "es", "fs", "gs")],
    *[(f"st{i}", 80, "i387_ext", None) for i in range(8)],
    *[(name, 32, "int", "float") for name in ("fctrl", "fstat", "ftag", "fiseg", "fioff", "foseg", "fooff", "fop")],
]
_SSE: list[_Row] = [
    *[(f"xmm{i}", 128, "vec128", None) for i in range(16)],
    ("mxcsr", 32, "i386_mxcsr", "vector"),
]
_SEGMENTS: list[_Row] = [("fs_base", 64, "int", None), ("gs_base", 64, "int", None)]
_SYSTEM: list[_Row] = [
    ("k_gs_base", 64, "int", "system"),
    ("cs_base", 64, "int", "system"),
    ("ss_base", 64, "int", "system"),
    ("ds_base", 64, "int", "system"),
    ("es_base", 64, "int", "system"),
    ("cr0", 64, "i386_cr0", "system"),
    ("cr2", 64, "data_ptr", "system"),
    ("cr3", 64, "int", "system"),
    ("cr4", 64, "i386_cr4", "system"),
    ("cr8", 64, "int", "system"),
    ("efer", 64, "i386_efer", "system"),
    ("gdtr_base", 64, "data_ptr", "system"),
    ("gdtr_limit", 16, "int", "system"),
    ("idtr_base", 64, "data_ptr", "system"),
    ("idtr_limit", 16, "int", "system"),
    *[(f"dr{i}", 64, "data_ptr", "system") for i in range(4)],
    ("dr6", 64, "int", "system"),
    ("dr7", 64, "int", "system"),
]


def _build() -> RegisterLayout:
    regs: list[RegisterInfo] = []
    for feature, table in (
        (CORE_FEATURE, _CORE),
        (SSE_FEATURE, _SSE),
        (SEGMENTS_FEATURE, _SEGMENTS),
        (SYSTEM_FEATURE, _SYSTEM),
    ):
        for name, bitsize, type_, group in table:
            regs.append(RegisterInfo(len(regs), name, bitsize, type_, feature, group))
    return RegisterLayout(
        architecture="i386:x86-64",
        registers=regs,
        flags_types={
            CORE_FEATURE: [EFLAGS_TYPE],
            SSE_FEATURE: SSE_TYPES,
            SYSTEM_FEATURE: [CR0_TYPE64, CR4_TYPE64, EFER_TYPE],
        },
        pc_regnum=16,
        expedite=[6, 7, 16, 17],  # rbp rsp rip eflags
    )


AMD64_LAYOUT: RegisterLayout = _build()

RIP, EFLAGS = 16, 17

# Import-time checks (what C would check at compile time).
assert AMD64_LAYOUT.regnum("rip") == RIP and AMD64_LAYOUT.regnum("eflags") == EFLAGS
assert AMD64_LAYOUT.regnum("rsp") == 7 and AMD64_LAYOUT.regnum("rbp") == 6
assert AMD64_LAYOUT.regnum("st0") == 24 and AMD64_LAYOUT.regnum("fop") == 39
assert AMD64_LAYOUT.regnum("xmm0") == 40 and AMD64_LAYOUT.regnum("mxcsr") == 56
assert AMD64_LAYOUT.regnum("fs_base") == 57 and AMD64_LAYOUT.regnum("gs_base") == 58
assert [r.name for r in AMD64_LAYOUT.registers[:16]] == list(GPR_ORDER)
assert AMD64_LAYOUT.g_size == 708, AMD64_LAYOUT.g_size
