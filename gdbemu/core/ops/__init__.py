"""Instruction semantics by family, as code emitters (STYLE practice 9).

Each family module registers emitters with ``@op``: a function taking the
``Emitter`` (core/emit.py) whose ``insn`` is the decoded instruction, and
appending the Python source that executes it.

What the names in ``@op(...)`` are: *op keys*, which core/decode.py's
``op_name`` computes from the encoding alone (prefixes, REX, opcode bytes,
ModRM.reg, effective operand and address size) with its own opcode tables —
never a disassembler's mnemonic.  For the integer instructions a key is a
readable name chosen by opcode *and effective size* where the architecture
defines different instructions per size: ``cbw``/``cwde``/``cdqe`` (98),
``cwd``/``cdq``/``cqo`` (99), ``movsb``/``movsw``/``movsd``/``movsq``,
``pushf``/``pushfd``/``pushfq``, ``iret``/``iretd``/``iretq``,
``jcxz``/``jecxz``/``jrcxz`` (by address size), ``cmpxchg8b``/``cmpxchg16b``
(REX.W), ``movsxd`` (63 in 64-bit code).  An emitter whose semantics depend
on the size in any other way reads ``insn.opsize`` / ``insn.addrsize`` (or
the Emitter's ``opsize``), never the key's spelling.  Everything outside the
integer tables is keyed by opcode hex with its mandatory prefix: the x87
escapes ``"d8"``..``"df"`` (the emitter decodes ``insn.modrm``) and SIMD
opcodes such as ``"0f58"`` (addps), ``"f30f58"`` (addss), ``"660f58"``
(addpd), ``"f20f58"`` (addsd), ``"660f3800"`` (pshufb xmm).  An unregistered
key is #UD.  A key registered twice is an error at import.  The decorator also records
what the instruction does to the arithmetic flags, which drives dead-flag
elimination in the translator:

``flags="w"``   writes all six flags, reads none (add, sub, cmp, and, test ...)
``flags="r"``   reads flags, writes none (jcc, setcc, cmovcc, pushf ...)
``flags="rw"``  reads and (partly or conditionally) writes (adc, inc, shifts by cl ...)
``flags=""``    does not touch them (mov, lea, push, jmp ...)
``pure=True``   cannot fault when it has no memory operand: flag stores before it may
                be dropped if a later instruction overwrites them (a faulting
                instruction is an exception point where the flags must be exact)
``end=True``    always ends the TB (control transfers, mode changes)
``feature="sse2"`` the CPUID feature (core/cpuid.py's name) the instruction needs: a
                CPU model without it raises #UD for the key (``FEATURE_OPS``)
"""

from __future__ import annotations

from collections.abc import Callable

from ..emit import FLAG_USE, Emitter

OPS: dict[str, Callable[[Emitter], None]] = {}
PURE: set[str] = set()
ENDS_TB: set[str] = set()
# CPUID feature name -> op keys that need it (read by core/cpuid.py's resolve).
FEATURE_OPS: dict[str, set[str]] = {}


def op(
    *names: str, flags: str = "rw", pure: bool = False, end: bool = False, feature: str = ""
) -> Callable[[Callable[[Emitter], None]], Callable[[Emitter], None]]:
    """Register an emitter for one or more op keys (core/decode.py ``op_name``)."""
    reads = "r" in flags
    writes_all = flags == "w"

    def deco(fn: Callable[[Emitter], None]) -> Callable[[Emitter], None]:
        for name in names:
            if name in OPS:
                raise ValueError(f"instruction {name} registered twice")
            OPS[name] = fn
            FLAG_USE[name] = (reads, writes_all)
            if pure:
                PURE.add(name)
            if end:
                ENDS_TB.add(name)
            if feature:
                FEATURE_OPS.setdefault(feature, set()).add(name)
        return fn

    return deco


def load_all() -> None:
    """Import every family so its @op registrations run."""
    import importlib
    import pkgutil

    for mod in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{mod.name}")
