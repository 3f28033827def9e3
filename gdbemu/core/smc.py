"""Guarded instructions: whole-instruction rewrites on SMC-hot pages without invalidation.

A page the guest keeps rewriting (``TBCache.smc_pages``) has its rewritten
bytes recorded (``TBCache.smc_written``: what the stores that invalidated
code there covered; ``smc_rewritten``: those covered more than once).  When
a TB is built on such a page, each instruction whose bytes the guest
rewrote more than once (beyond an immediate the dyn-imm plan already
reads at run time) becomes *guarded*: its bytes are holes of the TB, so a
store into them invalidates nothing, and the tier-1 entry for it matches the
instruction's current bytes against the variants seen so far and runs the
matching variant's shape.  New bytes of the same length that make an
ordinary instruction are decoded and translated on the spot (only that
instruction), so a slot that alternates between a few instructions costs a
byte compare per run.  A variant whose immediate the dyn-imm plan can read
at run time is matched on the bytes before its immediate, so a rewritten
constant does not make a new variant.  Anything else (another length, a
control transfer, an undecodable or #UD form, too many variants) invalidates
the TB and raises ``SMCRestart`` before the instruction: the exec loop runs
it alone from its current bytes, exactly, and the next build decodes afresh.

In tier 2 the variants known when the TB is compiled are inline, an
``if``/``elif`` on the slot's bytes (``emit_guard_tier2``); bytes no branch
knows call ``_GM`` (``guard_miss``): the TB is invalidated and the
instruction restarted, and the rebuilt tier-1 TB learns the new variant.
The instruction after a guarded one is built with no static knowledge of
the flags (a variant may set other flags), and liveness treats a guarded
instruction as reading every flag.  Not used in one-instruction TBs (the
SMC replay, single steps).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..softmmu.tlb import PAGE_MASK
from .decode import IMM, DecodeError, Insn
from .emit import Emitter
from .exceptions import SMCRestart
from .tb import TB, TBCache

if TYPE_CHECKING:
    from .cpu import CPU, Namespace
    from .translate import CCStatic, DynImm, Shape, Translator

MAX_VARIANTS = 8

# (end paddr of the bytes matched, the bytes, shape function, its constants)
Variant = tuple[int, bytes, Callable[[tuple[int, ...]], int | None], tuple[int, ...]]


def plan_guards(
    tbs: TBCache, tb: TB, ends_tb: frozenset[str] | set[str], dyn_ops: frozenset[str], is_ram: Callable[[int], bool]
) -> None:
    """Mark the instructions of ``tb`` whose bytes the guest rewrote as guarded (holes; RAM only: read as ``M8``)."""
    written = tbs.smc_rewritten
    guards: list[tuple[int, int, int]] = []
    for k, (insn, paddr) in enumerate(zip(tb.insns, tb.insn_paddrs, strict=True)):
        if insn is None or paddr < 0 or insn.name in ends_tb or not is_ram(paddr):
            continue
        page = paddr & PAGE_MASK
        bits = written.get(page)
        if not bits:
            continue
        mine = (bits >> (paddr - page)) & ((1 << insn.size) - 1)
        if not mine:
            continue
        if insn.imm_size and insn.name in dyn_ops and _dyn_field(insn) is not None:
            imm_bits = ((1 << insn.imm_size) - 1) << insn.imm_off
            if not mine & ~imm_bits:
                continue  # only the immediate was rewritten: the dyn-imm plan reads it at run time
        guards.append((k, paddr, insn.size))
    if guards:
        tb.guards = tuple(guards)
        tb.holes = tb.holes + tuple((p, p + n) for _, p, n in guards)


def _dyn_field(insn: Insn) -> bool | None:
    """The immediate field's signedness when it holds the operand's value (dyn-imm readable), else None."""
    imms = [o for o in insn.ops if o.kind == IMM]
    if len(imms) != 1:
        return None
    field = insn.raw[insn.imm_off : insn.imm_off + insn.imm_size]
    imm = imms[0].imm
    if imm == int.from_bytes(field, "little", signed=True):
        return True
    if imm == int.from_bytes(field, "little"):
        return False
    return None


# A variant as both tiers use it: (bytes matched, end paddr of them, the instruction,
# its run-time immediate or None).
VariantInsn = tuple[bytes, int, Insn, "DynImm"]


def _check(
    tr: Translator, tb: TB, k: int, paddr: int, size: int, insn: Insn, cc_in: CCStatic
) -> tuple[VariantInsn, Emitter] | None:
    """``insn`` as a variant of slot ``k`` (same length, an ordinary instruction), with its tier-1 emission."""
    from .translate import DYN_IMM_OPS, ENDS_TB, OPS

    if insn.size != size or insn.name in ENDS_TB or insn.name not in OPS:
        return None
    dyn = None
    match = bytes(insn.raw[:size])
    if insn.imm_size and insn.name in DYN_IMM_OPS:
        signed = _dyn_field(insn)
        if signed is not None:
            dyn = (paddr + insn.imm_off, insn.imm_size, signed)
            match = match[: insn.imm_off]
    e = Emitter(tb.hflags, tier1=True)
    e.cc_static = cc_in
    e.index = k
    e.dyn_imm = dyn
    tr._emit_insn(e, insn)
    if e.ended or e.jump_targets:
        return None
    return (match, paddr + len(match), insn, dyn), e


def _decode(tr: Translator, tb: TB, k: int, raw: bytes) -> Insn | None:
    try:
        return tr.decoder_for(tb.hflags).decode(raw, tb.eips[k])
    except DecodeError:
        return None


def known_variants(tr: Translator, tb: TB, k: int, paddr: int, size: int) -> list[VariantInsn]:
    """The variants of slot ``k`` seen so far (the TB's own instruction first), for tier 2."""
    out: list[VariantInsn] = []
    first = tb.insns[k]
    assert first is not None  # plan_guards skips #UD slots
    for insn in [first] + [_decode(tr, tb, k, raw) for raw in tr.guard_seen.get(_seen_key(tb, k, paddr), [])]:
        if insn is None or any(bytes(insn.raw[: len(v[0])]) == v[0] for v in out):
            continue
        checked = _check(tr, tb, k, paddr, size, insn, None)
        if checked is not None:
            out.append(checked[0])
    return out


def _seen_key(tb: TB, k: int, paddr: int) -> tuple[int, int, int, int]:
    return (paddr, tb.eips[k], tb.cs_base, tb.hflags)


def emit_guard_tier2(tr: Translator, e: Emitter, tb: TB, k: int, paddr: int, size: int) -> None:
    """Tier 2: the known variants of slot ``k`` inline, chosen by the current bytes; else ``_GM()``."""
    e.emit(f"_i = {k}")
    cc_in = e.cc_static
    variants = known_variants(tr, tb, k, paddr, size)
    for n, (match, end, insn, dyn) in enumerate(variants):
        with e.block(f"{'if' if n == 0 else 'elif'} M8[{paddr}:{end}] == {match!r}:"):
            e.cc_static = cc_in
            e.dyn_imm = dyn
            tr._emit_insn(e, insn)
            e.emit("pass")
        e.dyn_imm = None
    if variants:
        with e.block("else:"):
            e.emit("_GM()")
    else:
        e.emit("_GM()")
    e.cc_static = None  # a variant may leave other flags


def guard_miss(tr: Translator, tb: TB) -> Callable[[], None]:
    """What tier-2 code calls when no known variant matches: retranslate, run the instruction alone."""
    tbs = tr.tbs

    def miss() -> None:
        tbs.stats["smc_guard_misses"] += 1
        if tb.cacheable:
            tbs.invalidate(tb)
        raise SMCRestart()

    return miss


def guard_entry(
    tr: Translator, cpu: CPU, tb: TB, k: int, paddr: int, size: int, ns: Namespace, cc_in: CCStatic
) -> Shape:
    """The tier-1 entry of guarded instruction ``k``: match the current bytes, run that variant."""
    ram = tr.mem.ram
    tbs = tr.tbs
    variants: list[Variant] = []
    seen = tr.guard_seen.setdefault(_seen_key(tb, k, paddr), [])

    def make(insn: Insn) -> Variant | None:
        checked = _check(tr, tb, k, paddr, size, insn, cc_in)
        if checked is None:
            return None
        (match, end, _, _), e = checked
        f, consts = tr._shape(e, ns)
        return (end, match, f, consts)

    def learn(raw: bytes) -> Variant | None:
        for v in variants:
            if raw[: v[0] - paddr] == v[1]:
                return v
        insn = _decode(tr, tb, k, raw)
        if insn is None:
            return None
        new = make(insn)
        if new is not None:
            variants.append(new)
        return new

    first = tb.insns[k]
    assert first is not None  # plan_guards skips #UD slots
    v0 = make(first)
    if v0 is not None:
        variants.append(v0)
    for raw in seen:
        learn(raw)
    window = min(15, 4096 - (paddr & 0xFFF))

    def miss() -> int | None:
        raw = bytes(ram[paddr : paddr + window])
        v = learn(raw) if len(variants) < MAX_VARIANTS else None
        if v is not None:
            tbs.stats["smc_guard_variants"] += 1
            if len(seen) < MAX_VARIANTS:
                seen.append(raw)
            return v[2](v[3])
        # Not an instruction this slot can hold: translate afresh, run it alone first.
        tbs.stats["smc_guard_misses"] += 1
        if tb.cacheable:
            tbs.invalidate(tb)
        raise SMCRestart()

    def guarded(_k: tuple[int, ...]) -> int | None:
        for end, match, f, consts in variants:
            if ram[paddr:end] == match:
                return f(consts)
        return miss()

    return guarded, ()
