"""Instruction semantics by family, as code emitters (STYLE practice 9).

Each family module registers emitters with ``@op``: a function taking the
``Emitter`` (core/emit.py) whose ``insn`` is the decoded instruction, and
appending the Python source that executes it.  The decorator also records
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
"""

from __future__ import annotations

from collections.abc import Callable

from ..emit import FLAG_USE, Emitter

OPS: dict[str, Callable[[Emitter], None]] = {}
PURE: set[str] = set()
ENDS_TB: set[str] = set()


def op(
    *names: str, flags: str = "rw", pure: bool = False, end: bool = False
) -> Callable[[Callable[[Emitter], None]], Callable[[Emitter], None]]:
    """Register an emitter for one or more capstone instruction names."""
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
        return fn

    return deco


def load_all() -> None:
    """Import every family so its @op registrations run."""
    import importlib
    import pkgutil

    for mod in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{mod.name}")
