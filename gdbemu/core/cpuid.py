"""CPU models as QEMU names them (``-cpu qemu64,+umip``): what CPUID reports, and what therefore executes.

Theory of operation
-------------------
A model is QEMU's: a vendor, a family/model/stepping signature and a set of
CPUID feature names (``FEATURE_BITS``; QEMU's spelling).  ``+name`` and
``-name`` (or ``name=on|off``) after the model add and remove features.

The rule is that CPUID tells the truth.  The features gdbemu executes are
those of its own CPUID table (core/ops/system.py, the ``max`` model); a model
feature outside that set is *not* reported, and :func:`resolve` returns a
note naming it (QEMU's TCG does the same with "TCG doesn't support
requested feature" warnings).  Conversely an instruction whose feature a
model lacks raises #UD: :data:`GATED_OPS` maps features to the op keys
(core/decode.py) that need them, and the translator refuses those keys
(``CPU.disabled_ops``).

``host`` is accepted as ``max`` with a note (there is no KVM here).  ``max``
(the default) gates nothing: the core's table does not report CLFLUSH or
SSE/SSE2 yet executes CLFLUSH and the fences as no-ops, as it always has;
a named model gates them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# name -> (leaf, subleaf, register index in (eax, ebx, ecx, edx), bit)
_L1D = {
    "fpu": 0, "vme": 1, "de": 2, "pse": 3, "tsc": 4, "msr": 5, "pae": 6, "mce": 7, "cx8": 8, "apic": 9,
    "sep": 11, "mtrr": 12, "pge": 13, "mca": 14, "cmov": 15, "pat": 16, "pse36": 17, "clflush": 19,
    "mmx": 23, "fxsr": 24, "sse": 25, "sse2": 26, "ss": 27, "ht": 28,
}  # fmt: skip
_L1C = {
    "sse3": 0, "pclmulqdq": 1, "monitor": 3, "ssse3": 9, "fma": 12, "cx16": 13, "sse4.1": 19,
    "sse4.2": 20, "x2apic": 21, "movbe": 22, "popcnt": 23, "aes": 25, "xsave": 26, "avx": 28,
    "rdrand": 30, "hypervisor": 31,
}  # fmt: skip
_L7B = {"fsgsbase": 0, "bmi1": 3, "avx2": 5, "smep": 7, "bmi2": 8, "erms": 9, "rdseed": 18, "smap": 20}
_L7C = {"umip": 2}
_E1D = {"syscall": 11, "nx": 20, "pdpe1gb": 26, "rdtscp": 27, "lm": 29}
_E1C = {"lahf_lm": 0, "svm": 2, "abm": 5, "sse4a": 6}
FEATURE_BITS: dict[str, tuple[int, int, int, int]] = {}
for _table, _leaf, _reg in ((_L1D, 1, 3), (_L1C, 1, 2), (_L7B, 7, 1), (_L7C, 7, 2), (_E1D, 0x80000001, 3)):
    for _name, _bit in _table.items():
        FEATURE_BITS[_name] = (_leaf, 0, _reg, _bit)
for _name, _bit in _E1C.items():
    FEATURE_BITS[_name] = (0x80000001, 0, 2, _bit)
# QEMU's alternative spellings.
_ALIASES = {"sse4_1": "sse4.1", "sse4_2": "sse4.2", "pni": "sse3", "nx": "nx", "xd": "nx", "i64": "lm"}

# Op keys (core/decode.py) that need a feature: #UD without it.
GATED_OPS: dict[str, frozenset[str]] = {
    "cmov": frozenset("cmov" + cc for cc in ("o no b ae e ne be a s ns p np l ge le g".split())),
    "clflush": frozenset({"clflush"}),
    "sse2": frozenset({"lfence", "mfence"}),
    "sse": frozenset({"sfence"}),
    "smap": frozenset({"stac", "clac"}),
    "syscall": frozenset({"syscall", "sysret"}),
    "rdtscp": frozenset({"rdtscp"}),
}

# Not an op key: the translator reads it as "0F 18-0F 1F (hint NOP) is #UD" (pre-P6 models).
HINT_NOP = "0f18-0f1f"

_I486 = {"fpu", "vme", "pse"}
_PENTIUM = _I486 | {"de", "tsc", "msr", "mce", "cx8", "mmx", "apic"}
_PENTIUM2 = _PENTIUM | {"pae", "sep", "mtrr", "pge", "mca", "cmov", "pat", "pse36", "fxsr"}
_PENTIUM3 = _PENTIUM2 | {"sse"}
_PPRO = {"fpu", "de", "pse", "tsc", "msr", "mce", "cx8", "pge", "cmov", "pat", "fxsr", "mmx", "sse", "sse2"}
_PPRO |= {"pae", "sep", "apic"}
_QEMU64 = _PPRO | {"mtrr", "clflush", "mca", "pse36", "sse3", "cx16", "lm", "syscall", "nx", "lahf_lm", "svm"}


@dataclass(frozen=True)
class ModelDef:
    name: str
    description: str
    vendor: bytes
    family: int
    model: int
    stepping: int
    features: frozenset[str]
    max_basic: int = 4
    max_ext: int = 0x80000004
    model_id: bytes = b""


def _sig(family: int, model: int, stepping: int) -> int:
    ext_family = max(0, family - 15)
    fam = min(family, 15)
    return (ext_family << 20) | ((model >> 4) << 16) | (fam << 8) | ((model & 15) << 4) | stepping


_INTEL, _AMD = b"GenuineIntel", b"AuthenticAMD"
MODEL_DEFS: dict[str, ModelDef] = {
    m.name: m
    for m in (
        ModelDef("qemu32", "QEMU Virtual CPU version 2.5+ (32-bit)", _INTEL, 6, 6, 3, frozenset(_PPRO | {"sse3"})),
        ModelDef("qemu64", "QEMU Virtual CPU version 2.5+", _AMD, 15, 107, 1, frozenset(_QEMU64), 0xD, 0x8000000A),
        ModelDef("kvm32", "Common 32-bit KVM processor", _INTEL, 15, 6, 1, frozenset(_PPRO | {"sse3"}), 5, 0x80000008),
        ModelDef(
            "kvm64",
            "Common KVM processor",
            _INTEL,
            15,
            6,
            1,
            frozenset(_PPRO | {"mtrr", "clflush", "mca", "pse36", "sse3", "cx16", "lm", "syscall", "nx"}),
            0xD,
            0x80000008,
        ),
        ModelDef("486", "Intel 486 (family 4 model 8)", _INTEL, 4, 8, 0, frozenset(_I486), 1),
        ModelDef("pentium", "Intel Pentium (P54C, family 5 model 4)", _INTEL, 5, 4, 3, frozenset(_PENTIUM), 1),
        ModelDef("pentium2", "Intel Pentium II", _INTEL, 6, 5, 2, frozenset(_PENTIUM2), 2),
        ModelDef("pentium3", "Intel Pentium III", _INTEL, 6, 7, 3, frozenset(_PENTIUM3), 3),
        ModelDef(
            "core2duo",
            "Intel(R) Core(TM)2 Duo CPU T7700 @ 2.40GHz",
            _INTEL,
            6,
            15,
            11,
            frozenset(_PPRO | {"mtrr", "clflush", "mca", "pse36", "ss", "sse3", "monitor", "ssse3", "cx16"})
            | {"lm", "syscall", "nx", "lahf_lm"},
            10,
            0x80000008,
        ),
    )
}
MODEL_NAMES = ("max", "host", *MODEL_DEFS)


def _default_cpuid(leaf: int, subleaf: int) -> tuple[int, int, int, int]:
    """The core's own table (the ``max`` model)."""
    from .ops import system

    return system.cpuid(_Probe(), leaf, subleaf)  # type: ignore[arg-type]


class _Probe:
    """Stands in for a CPU when reading the core's own CPUID table (it reads index and cpuid_model)."""

    index = 0
    cpuid_model = None
    phys_bits = 36  # leaf 0x80000008 is completed with the real CPU's (ResolvedModel.cpuid)


def implemented() -> frozenset[str]:
    """Features the core executes: those its own CPUID table reports."""
    out = set()
    for name, (leaf, subleaf, reg, bit) in FEATURE_BITS.items():
        if _default_cpuid(leaf, subleaf)[reg] >> bit & 1:
            out.add(name)
    return frozenset(out)


@dataclass
class ResolvedModel:
    """A model after ``+feat,-feat``: what CPUID reports, the op keys it disables, notes for the user."""

    name: str
    definition: ModelDef | None  # None: the core's own table (max)
    features: frozenset[str]
    disabled_ops: frozenset[str]
    notes: list[str] = field(default_factory=list)

    def cpuid(self, cpu: Any, leaf: int, subleaf: int) -> tuple[int, int, int, int]:
        if leaf not in (4, 7, 0xB, 0xD):
            subleaf = 0  # ECX is an input of the indexed leaves only
        d = self.definition
        regs = list(_default_cpuid(leaf, subleaf)) if d is None else self._leaf(d, cpu, leaf, subleaf)
        if leaf == 0x80000008 and regs[0]:
            regs[0] = (regs[0] & ~0xFF) | cpu.phys_bits  # MAXPHYADDR: the CPU's own
        for name, (fleaf, fsub, reg, bit) in FEATURE_BITS.items():
            if fleaf == leaf and fsub == subleaf:
                if name in self.features:
                    regs[reg] |= 1 << bit
                else:
                    regs[reg] &= ~(1 << bit)
        return regs[0], regs[1], regs[2], regs[3]

    def _leaf(self, d: ModelDef, cpu: Any, leaf: int, subleaf: int) -> list[int]:
        if leaf >= 0x80000000:
            if leaf > d.max_ext:
                leaf, subleaf = d.max_basic, subleaf
            elif leaf == 0x80000000:
                return [d.max_ext, *_vendor_regs(d.vendor)]
            elif leaf == 0x80000008:
                from .ops.system import address_sizes

                return [address_sizes(cpu, "lm" in self.features), 0, 0, 0]
            elif 0x80000002 <= leaf <= 0x80000004:
                k = leaf - 0x80000002
                text = (d.model_id or d.description.encode()).ljust(48, b"\0")[:47] + b"\0"
                chunk = text[16 * k : 16 * k + 16]
                return [int.from_bytes(chunk[i : i + 4], "little") for i in range(0, 16, 4)]
            else:
                return [0, 0, 0, 0]
        if leaf > d.max_basic:
            leaf = d.max_basic
        if leaf == 0:
            return [d.max_basic, *_vendor_regs(d.vendor)]
        if leaf == 1:
            apic = "apic" in self.features
            return [_sig(d.family, d.model, d.stepping), ((cpu.index & 0xFF) << 24) if apic else 0, 0, 0]
        if leaf == 2:
            return list(_default_cpuid(2, 0))
        return [0, 0, 0, 0]


def _vendor_regs(vendor: bytes) -> list[int]:
    ebx, edx, ecx = (int.from_bytes(vendor[i : i + 4], "little") for i in (0, 4, 8))
    return [ebx, ecx, edx]


def resolve(spec: str) -> ResolvedModel:
    """``model[,+feat|-feat|feat=on|off ...]`` -> the resolved model; ValueError for an unknown name."""
    name, *items = spec.split(",")
    notes: list[str] = []
    if name == "host":
        notes.append("-cpu host: no KVM here; using -cpu max (everything gdbemu emulates)")
        name = "max"
    have = implemented()
    if name in ("max", "gdbemu"):
        definition = None
        wanted = set(have)
    elif name in MODEL_DEFS:
        definition = MODEL_DEFS[name]
        wanted = set(definition.features)
    else:
        raise ValueError(f"unknown CPU model {name!r} (available: {', '.join(MODEL_NAMES)})")
    for item in items:
        if not item:
            continue
        if item[0] in "+-":
            feat, on = item[1:], item[0] == "+"
        elif "=" in item:
            feat, _, val = item.partition("=")
            if val not in ("on", "off", "true", "false"):
                raise ValueError(f"-cpu {spec}: {item!r}: expected on or off")
            on = val in ("on", "true")
        else:
            feat, on = item, True
        feat = _ALIASES.get(feat.replace("_", "-") if feat not in FEATURE_BITS else feat, feat)
        feat = _ALIASES.get(feat, feat)
        if feat not in FEATURE_BITS:
            notes.append(f"-cpu {spec}: feature {feat!r} unknown to gdbemu, ignored")
            continue
        if on:
            wanted.add(feat)
        else:
            wanted.discard(feat)
    dropped = sorted(wanted - have)
    if dropped:
        notes.append(f"-cpu {name}: not emulated, so not reported by CPUID: {' '.join(dropped)}")
    features = frozenset(wanted & have)
    disabled: set[str] = set()
    if definition is not None:  # max keeps the core's leniency: fences and CLFLUSH run as no-ops
        for feat, ops in GATED_OPS.items():
            if feat not in features:
                disabled |= ops
        if definition.family < 6:
            disabled.add(HINT_NOP)  # 0F 18-1F: the P6 family's hint NOPs; #UD before it
    return ResolvedModel(name, definition, features, frozenset(disabled), notes)


__all__ = [
    "FEATURE_BITS",
    "GATED_OPS",
    "HINT_NOP",
    "MODEL_DEFS",
    "MODEL_NAMES",
    "ResolvedModel",
    "implemented",
    "resolve",
]
