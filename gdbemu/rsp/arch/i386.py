"""The i386 register layout gdbemu presents to gdb (one target description per session).

Features, in regnum order
-------------------------
Two layouts, one per session, chosen at start as the amd64/i386 choice is
(``debug/target.py``): :data:`I386_SSE_LAYOUT` when the CPU model reports SSE
(qemu32, kvm32, pentium3, the core's own table), :data:`I386_LAYOUT` when it
does not (486, pentium, pentium2).

=====  ==========================  =====================================================
regno  feature                     registers
=====  ==========================  =====================================================
0-31   ``org.gnu.gdb.i386.core``   eax ecx edx ebx esp ebp esi edi, eip, eflags,
                                   cs ss ds es fs gs, st0-st7 (80-bit), fctrl fstat ftag
                                   fiseg fioff foseg fooff fop
32-40  ``org.gnu.gdb.i386.sse``    xmm0-xmm7 (128-bit), mxcsr -- SSE layout only
32-52  ``org.gdbemu.i386.system``  cs_base ss_base ds_base es_base fs_base gs_base,
(41-61 with SSE)                   cr0 cr2 cr3 cr4, efer (64-bit), gdtr_base gdtr_limit
                                   idtr_base idtr_limit (limits 16-bit), dr0-dr3 dr6 dr7
=====  ==========================  =====================================================

The ``g`` block is 260 bytes (392 with SSE).

Why this shape:

* ``org.gnu.gdb.i386.core`` is copied register for register (names, order,
  bit sizes, types, groups, the ``i386_eflags`` flags type) from gdb's
  ``gdb/features/i386/32bit-core.xml``.  gdb's i386 backend
  (``i386_validate_tdesc_p`` in ``i386-tdep.c``) rejects a description whose
  core feature lacks any of these, the x87 registers included, so a CPU with
  no FPU state still reports them (a target may answer zeros, or ``xx`` for
  "unavailable").
* ``org.gnu.gdb.i386.sse`` is gdb's ``32bit-sse.xml`` (the vec128 union
  without the bfloat16/half views older gdbs do not know, as in the amd64
  layout), right after the core as gdbserver and QEMU place it; with it gdb
  13 shows ``info vector``, ``p $xmm1`` and the mxcsr flags, and ``info
  float``/``info registers`` keep working.  A CPU without SSE gets the
  description without it: gdb 13 accepts that (xcr0 then means "x87
  only"), and then shows no xmm registers the CPU does not have.
  ``tests/unit/test_rsp_stub.py`` checks that gdb accepts both descriptions.
* gdb's own ``org.gnu.gdb.i386.segments`` feature (``fs_base``/``gs_base``)
  is *not* used although it exists: gdb 13 dies with an internal error
  (``tdesc_use_registers: Assertion `data->arch_regs.size () <= num_regs'``)
  when a plain i386 description (no Linux OS ABI) has it.  All six segment
  bases, the control, descriptor-table and debug registers therefore go in
  gdbemu's ``org.gdbemu.i386.system`` feature.  gdb treats registers of a
  feature it does not know as plain numbered registers: ``p $cr0``,
  ``set $cr3 = ...`` and ``info registers cr0`` work with no gdb-side support.
  They carry ``group="system"`` for front ends that honour groups; gdb's i386
  backend ignores the attribute (``i386_register_reggroup_p`` puts every
  integer register in "general"), so ``info registers`` lists them too, as
  it does with QEMU's descriptions.
* CR0, CR4 and EFER have flags types (as QEMU's descriptions do) so gdb
  prints ``[ PE PG ]``; field positions are from the SDM vol. 3A 2.5 and 2.2.1.

The target fills the ``g`` block with :data:`I386_LAYOUT`'s
``encode_registers({"eax": ..., ...})`` and parses ``G`` with
``decode_registers``; ``p``/``P`` use ``encode_register``/``decode_register``.
"""

from __future__ import annotations

from collections.abc import Sequence

from . import FlagsType, RegisterInfo, RegisterLayout, TdescType, UnionType, VectorType

__all__ = [
    "CORE_FEATURE",
    "EBP",
    "EFLAGS",
    "EIP",
    "ESP",
    "I386_LAYOUT",
    "I386_SSE_LAYOUT",
    "SSE_FEATURE",
    "SSE_TYPES",
    "SYSTEM_FEATURE",
    "i386_layout",
]

CORE_FEATURE = "org.gnu.gdb.i386.core"
SSE_FEATURE = "org.gnu.gdb.i386.sse"
SYSTEM_FEATURE = "org.gdbemu.i386.system"

# gdb's i386_eflags, as in gdb/features/i386/32bit-core.xml (bit 1 is the
# always-one reserved bit, listed unnamed so gdb does not print it).
EFLAGS_TYPE = FlagsType(
    "i386_eflags",
    4,
    (
        ("CF", 0, 0),
        ("", 1, 1),
        ("PF", 2, 2),
        ("AF", 4, 4),
        ("ZF", 6, 6),
        ("SF", 7, 7),
        ("TF", 8, 8),
        ("IF", 9, 9),
        ("DF", 10, 10),
        ("OF", 11, 11),
        ("NT", 14, 14),
        ("RF", 16, 16),
        ("VM", 17, 17),
        ("AC", 18, 18),
        ("VIF", 19, 19),
        ("VIP", 20, 20),
        ("ID", 21, 21),
    ),
)

# SDM vol. 3A 2.5 "Control registers".
CR0_TYPE = FlagsType(
    "i386_cr0",
    4,
    (
        ("PE", 0, 0),
        ("MP", 1, 1),
        ("EM", 2, 2),
        ("TS", 3, 3),
        ("ET", 4, 4),
        ("NE", 5, 5),
        ("WP", 16, 16),
        ("AM", 18, 18),
        ("NW", 29, 29),
        ("CD", 30, 30),
        ("PG", 31, 31),
    ),
)
CR4_TYPE = FlagsType(
    "i386_cr4",
    4,
    (
        ("VME", 0, 0),
        ("PVI", 1, 1),
        ("TSD", 2, 2),
        ("DE", 3, 3),
        ("PSE", 4, 4),
        ("PAE", 5, 5),
        ("MCE", 6, 6),
        ("PGE", 7, 7),
        ("PCE", 8, 8),
        ("OSFXSR", 9, 9),
        ("OSXMMEXCPT", 10, 10),
        ("UMIP", 11, 11),
        ("VMXE", 13, 13),
        ("SMXE", 14, 14),
        ("FSGSBASE", 16, 16),
        ("PCIDE", 17, 17),
        ("OSXSAVE", 18, 18),
        ("SMEP", 20, 20),
        ("SMAP", 21, 21),
        ("PKE", 22, 22),
    ),
)
# SDM vol. 3A 2.2.1 "Extended Feature Enable Register".
EFER_TYPE = FlagsType(
    "i386_efer",
    8,
    (
        ("SCE", 0, 0),
        ("LME", 8, 8),
        ("LMA", 10, 10),
        ("NXE", 11, 11),
        ("SVME", 12, 12),
        ("LMSLE", 13, 13),
        ("FFXSR", 14, 14),
        ("TCE", 15, 15),
    ),
)

# The types of gdb's 32bit-sse.xml and 64bit-sse.xml (the same in both), without the
# bfloat16/half views (types older gdbs do not know).
SSE_TYPES: tuple[TdescType, ...] = (
    VectorType("v4f", "ieee_single", 4),
    VectorType("v2d", "ieee_double", 2),
    VectorType("v16i8", "int8", 16),
    VectorType("v8i16", "int16", 8),
    VectorType("v4i32", "int32", 4),
    VectorType("v2i64", "int64", 2),
    UnionType(
        "vec128",
        (
            ("v4_float", "v4f"),
            ("v2_double", "v2d"),
            ("v16_int8", "v16i8"),
            ("v8_int16", "v8i16"),
            ("v4_int32", "v4i32"),
            ("v2_int64", "v2i64"),
            ("uint128", "uint128"),
        ),
    ),
    FlagsType(
        "i386_mxcsr",
        4,
        (
            ("IE", 0, 0),
            ("DE", 1, 1),
            ("ZE", 2, 2),
            ("OE", 3, 3),
            ("UE", 4, 4),
            ("PE", 5, 5),
            ("DAZ", 6, 6),
            ("IM", 7, 7),
            ("DM", 8, 8),
            ("ZM", 9, 9),
            ("OM", 10, 10),
            ("UM", 11, 11),
            ("PM", 12, 12),
            ("FZ", 15, 15),
        ),
    ),
)

# (name, bitsize, type, group) per feature, in regnum order.
_CORE: list[tuple[str, int, str, str | None]] = [
    ("eax", 32, "int32", None),
    ("ecx", 32, "int32", None),
    ("edx", 32, "int32", None),
    ("ebx", 32, "int32", None),
    ("esp", 32, "data_ptr", None),
    ("ebp", 32, "data_ptr", None),
    ("esi", 32, "int32", None),
    ("edi", 32, "int32", None),
    ("eip", 32, "code_ptr", None),
    ("eflags", 32, "i386_eflags", None),
    ("cs", 32, "int32", None),
    ("ss", 32, "int32", None),
    ("ds", 32, "int32", None),
    ("es", 32, "int32", None),
    ("fs", 32, "int32", None),
    ("gs", 32, "int32", None),
    *[(f"st{i}", 80, "i387_ext", None) for i in range(8)],
    *[(name, 32, "int", "float") for name in ("fctrl", "fstat", "ftag", "fiseg", "fioff", "foseg", "fooff", "fop")],
]
# gdb's 32bit-sse.xml: xmm0-xmm7, mxcsr.
_SSE: list[tuple[str, int, str, str | None]] = [
    *[(f"xmm{i}", 128, "vec128", None) for i in range(8)],
    ("mxcsr", 32, "i386_mxcsr", "vector"),
]
_SYSTEM: list[tuple[str, int, str, str | None]] = [
    ("cs_base", 32, "int", "system"),
    ("ss_base", 32, "int", "system"),
    ("ds_base", 32, "int", "system"),
    ("es_base", 32, "int", "system"),
    ("fs_base", 32, "int", "system"),
    ("gs_base", 32, "int", "system"),
    ("cr0", 32, "i386_cr0", "system"),
    ("cr2", 32, "data_ptr", "system"),
    ("cr3", 32, "int", "system"),
    ("cr4", 32, "i386_cr4", "system"),
    ("efer", 64, "i386_efer", "system"),
    ("gdtr_base", 32, "data_ptr", "system"),
    ("gdtr_limit", 16, "int", "system"),
    ("idtr_base", 32, "data_ptr", "system"),
    ("idtr_limit", 16, "int", "system"),
    ("dr0", 32, "data_ptr", "system"),
    ("dr1", 32, "data_ptr", "system"),
    ("dr2", 32, "data_ptr", "system"),
    ("dr3", 32, "data_ptr", "system"),
    ("dr6", 32, "int", "system"),
    ("dr7", 32, "int", "system"),
]


def _build(sse: bool) -> RegisterLayout:
    regs: list[RegisterInfo] = []
    features = ((CORE_FEATURE, _CORE), (SSE_FEATURE, _SSE), (SYSTEM_FEATURE, _SYSTEM))
    for feature, table in features if sse else (features[0], features[2]):
        for name, bitsize, type_, group in table:
            regs.append(RegisterInfo(len(regs), name, bitsize, type_, feature, group))
    types: dict[str, Sequence[TdescType]] = {
        CORE_FEATURE: [EFLAGS_TYPE],
        SYSTEM_FEATURE: [CR0_TYPE, CR4_TYPE, EFER_TYPE],
    }
    if sse:
        types[SSE_FEATURE] = SSE_TYPES
    return RegisterLayout(
        architecture="i386",
        registers=regs,
        flags_types=types,
        pc_regnum=8,
        expedite=[4, 5, 8, 9],  # esp ebp eip eflags: enough for gdb to show the frame without a `g`
    )


I386_LAYOUT: RegisterLayout = _build(sse=False)
I386_SSE_LAYOUT: RegisterLayout = _build(sse=True)


def i386_layout(sse: bool) -> RegisterLayout:
    """The i386 layout for a CPU with (``org.gnu.gdb.i386.sse`` included) or without SSE."""
    return I386_SSE_LAYOUT if sse else I386_LAYOUT


# Register numbers the stub and the target name often (checked against the table below).
# EAX..FCTRL are the same in both layouts; CS_BASE..GS_BASE, CR0 and DR7 are I386_LAYOUT's
# (the SSE layout's system registers come 9 later: look them up with ``regnum``).
EAX, ECX, EDX, EBX, ESP, EBP, ESI, EDI = range(8)
EIP, EFLAGS = 8, 9
CS, SS, DS, ES, FS, GS = range(10, 16)
ST0 = 16
FCTRL = 24
CS_BASE, SS_BASE, DS_BASE, ES_BASE, FS_BASE, GS_BASE = range(32, 38)
CR0 = I386_LAYOUT.regnum("cr0")
DR7 = I386_LAYOUT.regnum("dr7")

# Import-time checks (what C would check at compile time).
assert I386_LAYOUT.regnum("eip") == EIP and I386_LAYOUT.regnum("eflags") == EFLAGS
assert I386_LAYOUT.regnum("esp") == ESP and I386_LAYOUT.regnum("ebp") == EBP
assert I386_LAYOUT.regnum("gs") == GS and I386_LAYOUT.regnum("st0") == ST0
assert I386_LAYOUT.regnum("fctrl") == FCTRL and I386_LAYOUT.regnum("fs_base") == FS_BASE
assert I386_LAYOUT.regnum("cs_base") == CS_BASE and I386_LAYOUT.regnum("gs_base") == GS_BASE
assert I386_LAYOUT.g_size == 260
assert len(I386_LAYOUT.feature_registers(CORE_FEATURE)) == 32  # gdb's 32bit-core.xml has 32 registers
assert I386_LAYOUT.pc_regnum == EIP
assert I386_SSE_LAYOUT.regnum("xmm0") == 32 and I386_SSE_LAYOUT.regnum("mxcsr") == 40
assert I386_SSE_LAYOUT.regnum("cs_base") == CS_BASE + 9 and I386_SSE_LAYOUT.pc_regnum == EIP
assert I386_SSE_LAYOUT.g_size == 260 + 8 * 16 + 4
for _flags in (EFLAGS_TYPE, CR0_TYPE, CR4_TYPE, EFER_TYPE):
    assert all(0 <= s <= e < _flags.size * 8 for _, s, e in _flags.fields), _flags.id
