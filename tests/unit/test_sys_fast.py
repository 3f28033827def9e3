"""The cheap paths of system events, checked against what they stand for.

* ``CPU.load_data_seg`` (the incremental hflags update of ES/DS/FS/GS loads)
  gives the hflags and base mirror a full ``compute_hflags`` gives, in every
  mode it is used in.
* The short paths keyed by every input: ``seg.load_data_seg_fast`` (ES, DS,
  FS, GS from generated code), ``interrupts._interrupt_fast`` and
  ``_iret_fast`` give what ``load_seg``, the general delivery and IRET give
  after the guest rewrites a gate, a descriptor or a TSS field, or reloads
  IDTR/GDTR/TR (a stale memo fails these tests).
* ``seg.push_frame`` writes an interrupt frame at once only when nothing can
  fault; a frame that straddles into an unmapped page faults exactly where
  the value-by-value pushes do (CR2, error code, the values already written).
* Address spaces kept across CR3 writes (``CPUTLB.switch_context``): the
  tables come back with TLB_RECHECK, a recheck passes only while every
  page-table word is as the walk left it, a changed word drops the entry and
  walks again (A/D set again), an entry in the victim TLB likewise; global
  entries under CR4.PGE follow the live tables; TLB_NOTDIRTY reaches the
  tables put aside, ``flush_range`` drops their entries and a full flush
  forgets them; generated code's names follow the installed tables.
"""

from __future__ import annotations

import itertools

import pytest

from gdbemu.core import seg
from gdbemu.core.cpu import (
    CR0_PG,
    CR4_PGE,
    CS,
    DESC_A,
    DESC_B,
    DESC_CS,
    DESC_L,
    DESC_P,
    DESC_R,
    DESC_S,
    DESC_W,
    DS,
    EFER_LMA,
    ES,
    FS,
    GS,
    SS,
    SegmentCache,
)
from gdbemu.core.exceptions import PF, GuestFault
from gdbemu.core.interrupts import do_interrupt
from gdbemu.core.ops import system as sysops
from gdbemu.machine import Machine
from gdbemu.softmmu.tlb import (
    INVALID_TAG,
    MMU_KNOSMAP_IDX,
    PAGE_EXEC,
    PAGE_GLOBAL,
    PAGE_READ,
    PAGE_WRITE,
    TLB_MASK,
    TLB_NOTDIRTY,
    TLB_RECHECK,
)

RAM = 8 << 20
PD_A = 0x10000
PD_B = 0x12000
PT_A = 0x11000
PT_B = 0x13000
V = 0x00400000  # PDE 1, PTE 0: TLB slot 0
V_SAME_SLOT = 0x00500000  # PDE 1, PTE 0x100: TLB slot 0 too
F1, F2, F3 = 0x20000, 0x21000, 0x22000
PG_PW = 0x3
PG_A = 0x20
PG_D = 0x40
KERNEL = MMU_KNOSMAP_IDX


def rd32(m: Machine, paddr: int) -> int:
    return int.from_bytes(m.mem.ram[paddr : paddr + 4], "little")


def wr32(m: Machine, paddr: int, value: int) -> None:
    m.mem.ram[paddr : paddr + 4] = value.to_bytes(4, "little")


def pte(pt: int, vaddr: int) -> int:
    return pt + ((vaddr >> 12) & 0x3FF) * 4


def two_spaces() -> Machine:
    """Space A maps V -> F1, space B maps V -> F2 (and both identity-map nothing else)."""
    m = Machine(ram_size=RAM)
    cpu = m.cpu
    cpu.setup_flat32()
    for pd, pt in ((PD_A, PT_A), (PD_B, PT_B)):
        wr32(m, pd + (V >> 22) * 4, pt | PG_PW)
    wr32(m, pte(PT_A, V), F1 | PG_PW)
    wr32(m, pte(PT_A, V_SAME_SLOT), F3 | PG_PW)
    wr32(m, pte(PT_B, V), F2 | PG_PW)
    for frame, value in ((F1, 0x11111111), (F2, 0x22222222), (F3, 0x33333333)):
        wr32(m, frame, value)
    cpu.cr[3] = PD_A
    cpu.cr[0] |= CR0_PG
    cpu.compute_hflags()
    return m


def load(m: Machine, vaddr: int) -> int:
    return m.cpu.softmmu.load(KERNEL, vaddr, 4)


def cr3(m: Machine, value: int) -> None:
    sysops.mov_to_cr(m.cpu, 3, value)


# ---- hflags ---------------------------------------------------------------------------

_CODE32 = DESC_P | DESC_S | DESC_CS | DESC_R | DESC_A | DESC_B
_CODE16 = DESC_P | DESC_S | DESC_CS | DESC_R | DESC_A
_CODE64 = DESC_P | DESC_S | DESC_CS | DESC_R | DESC_A | DESC_L
_DATA32 = DESC_P | DESC_S | DESC_W | DESC_A | DESC_B


@pytest.mark.parametrize(
    ("code", "lma", "seg_reg", "base", "others"),
    [
        case
        for case in itertools.product(
            [_CODE32, _CODE16, _CODE64], [False, True], [ES, DS, FS, GS], [0, 0x1000], [0, 0x2000]
        )
        if case[1] or case[0] != _CODE64  # CS.L means nothing outside long mode
    ],
)
def test_load_data_seg_matches_compute_hflags(code: int, lma: bool, seg_reg: int, base: int, others: int) -> None:
    m = Machine(ram_size=1 << 20)
    cpu = m.cpu
    cpu.setup_flat32()
    if lma:
        cpu.efer |= EFER_LMA
    cpu.segs[CS] = SegmentCache(0x08, 0, 0xFFFFFFFF, code)
    for s in (ES, SS, DS, FS, GS):
        cpu.segs[s] = SegmentCache(0x10, others if s in (SS, ES) else 0, 0xFFFFFFFF, _DATA32)
    cpu.compute_hflags()
    cpu.load_data_seg(seg_reg, SegmentCache(0x18, base, 0xFFFF, _DATA32))
    got = (cpu.hflags, list(cpu.seg_base), cpu.mmu_idx)
    cpu.compute_hflags()
    assert got == (cpu.hflags, list(cpu.seg_base), cpu.mmu_idx)


# ---- interrupt frames -----------------------------------------------------------------


def test_frame_straddling_into_an_unmapped_page_faults_like_the_pushes() -> None:
    """INT 0x40 at CPL 0 with ESP 8 bytes above a page whose PTE is absent: EFLAGS and CS
    land in the mapped page (pushed first), EIP faults: #PF at the lower page, ESP kept."""
    m = two_spaces()
    cpu = m.cpu
    idt = 0x30000
    handler = 0x1234
    gdt = 0x31000
    wr32(m, gdt + 8, 0x0000FFFF)
    wr32(m, gdt + 12, 0x00CF9A00)  # ring-0 code, flat
    wr32(m, gdt + 16, 0x0000FFFF)
    wr32(m, gdt + 20, 0x00CF9200)  # ring-0 data, flat
    # identity-map the low 4 MiB in A except the page below the stack
    pt_low = 0x14000
    wr32(m, PD_A, pt_low | PG_PW)
    for page in range(0, 0x400000, 0x1000):
        wr32(m, pt_low + (page >> 12) * 4, page | PG_PW)
    stack_top = 0x40008  # frame: 0x40004 EFLAGS, 0x40000 CS, 0x3FFFC EIP
    wr32(m, pt_low + (0x3F000 >> 12) * 4, 0)
    wr32(m, idt + 0x40 * 8, (0x08 << 16) | handler)
    wr32(m, idt + 0x40 * 8 + 4, 0x8E00)
    cpu.gdtr_base, cpu.gdtr_limit = gdt, 23
    cpu.idtr_base, cpu.idtr_limit = idt, 0x41 * 8 - 1
    cpu.regs[4] = stack_top
    cpu.eip = 0x5000
    for addr in (0x40000, 0x40004):
        wr32(m, addr, 0xDEADBEEF)
    with pytest.raises(GuestFault) as info:
        do_interrupt(cpu, 0x40, True, None, 0x5002)
    assert info.value.vector == PF
    assert info.value.cr2 == 0x3FFFC
    assert info.value.error_code == 2  # not present, write, supervisor
    assert rd32(m, 0x40004) == cpu.get_eflags()
    assert rd32(m, 0x40000) == 0x08
    assert cpu.regs[4] == stack_top and cpu.eip == 0x5000


def test_frame_in_one_page_is_written_at_once_and_in_order() -> None:
    m = two_spaces()
    cpu = m.cpu
    load(m, V)  # the entry for V (frame F1), writable once a store has walked it
    cpu.softmmu.store(KERNEL, V + 0x100, 4, 0)
    sp = seg.push_frame(cpu, 0, V + 0x100, 0xFFFFFFFF, 4, [1, 2, 3], 0)
    assert sp == V + 0xF4
    assert [rd32(m, F1 + off) for off in (0xFC, 0xF8, 0xF4)] == [1, 2, 3]
    assert seg.peek_frame(cpu, V + 0xF4, 4, 3, 0) == [3, 2, 1]


# ---- address spaces -------------------------------------------------------------------


def test_switch_back_restores_entries_tagged_for_recheck() -> None:
    m = two_spaces()
    tlb = m.cpu.tlb
    assert load(m, V) == 0x11111111
    tables_a = tlb.d
    cr3(m, PD_B)
    assert tlb.d is not tables_a
    assert load(m, V) == 0x22222222
    cr3(m, PD_A)
    assert tlb.d is tables_a
    slot = (V >> 12) & TLB_MASK
    assert tlb.d[KERNEL].read[slot] == V | TLB_RECHECK
    fills = tlb.stats.fills
    assert load(m, V) == 0x11111111
    assert tlb.stats.fills == fills  # the recheck passed: no walk
    assert tlb.d[KERNEL].read[slot] == V


def test_generated_code_names_follow_the_installed_tables() -> None:
    m = two_spaces()
    cpu = m.cpu
    load(m, V)
    cr3(m, PD_B)
    for mmu_idx, ns in enumerate(cpu.namespaces):
        assert ns["RT"] is cpu.tlb.d[mmu_idx].read
        assert ns["WT"] is cpu.tlb.d[mmu_idx].write
        assert ns["AD"] is cpu.tlb.d[mmu_idx].addend


@pytest.mark.parametrize("change", ["remap", "clear-accessed", "pde"])
def test_a_word_changed_while_away_drops_the_entry(change: str) -> None:
    m = two_spaces()
    tlb = m.cpu.tlb
    assert load(m, V) == 0x11111111
    cr3(m, PD_B)
    if change == "remap":
        wr32(m, pte(PT_A, V), F3 | PG_PW | PG_A)
        want = 0x33333333
    elif change == "clear-accessed":
        wr32(m, pte(PT_A, V), F1 | PG_PW)
        want = 0x11111111
    else:
        wr32(m, PD_A + (V >> 22) * 4, PT_B | PG_PW)  # A now shares B's table
        want = 0x22222222
    cr3(m, PD_A)
    fills = tlb.stats.fills
    assert load(m, V) == want
    assert tlb.stats.fills == fills + 1  # walked again
    assert rd32(m, pte(PT_A if change != "pde" else PT_B, V)) & PG_A


def test_victim_entry_is_rechecked_and_moves_in_as_a_fill_would() -> None:
    m = two_spaces()
    tlb = m.cpu.tlb
    load(m, V)
    load(m, V_SAME_SLOT)  # V goes to the victim TLB
    v_next = tlb.d[KERNEL].v_next
    cr3(m, PD_B)
    load(m, V)
    cr3(m, PD_A)
    desc = tlb.d[KERNEL]
    assert desc.v_next == tlb.contexts[PD_B][KERNEL].v_next  # the ring position a flush leaves
    assert V in desc.v_vpage and desc.v_read[desc.v_vpage.index(V)] & TLB_RECHECK
    wr32(m, pte(PT_A, V), F2 | PG_PW | PG_A)  # changed: the victim entry must not be used
    assert load(m, V) == 0x22222222
    assert v_next == tlb.contexts[PD_B][KERNEL].v_next


def test_same_cr3_reload_rechecks_in_place() -> None:
    m = two_spaces()
    tlb = m.cpu.tlb
    load(m, V)
    tables = tlb.d
    wr32(m, pte(PT_A, V), F3 | PG_PW)
    assert load(m, V) == 0x11111111  # still cached: no invalidation yet
    cr3(m, PD_A)
    assert tlb.d is tables
    assert load(m, V) == 0x33333333


def test_notdirty_reaches_tables_put_aside() -> None:
    m = two_spaces()
    tlb = m.cpu.tlb
    m.cpu.softmmu.store(KERNEL, V, 4, 5)
    slot = (V >> 12) & TLB_MASK
    cr3(m, PD_B)
    tlb.protect_code(F1)
    saved = tlb.contexts[PD_A][KERNEL]
    assert saved.write[slot] & TLB_NOTDIRTY


def test_flush_range_and_full_flush_reach_tables_put_aside() -> None:
    m = two_spaces()
    tlb = m.cpu.tlb
    load(m, V)
    cr3(m, PD_B)
    tlb.flush_range(V, 4)
    assert tlb.contexts[PD_A][KERNEL].read[(V >> 12) & TLB_MASK] == INVALID_TAG
    cr3(m, PD_A)
    cr3(m, PD_B)
    assert PD_A in tlb.contexts
    tlb.flush()
    assert not tlb.contexts


def test_global_entries_follow_the_live_tables_under_pge() -> None:
    m = two_spaces()
    cpu = m.cpu
    tlb = cpu.tlb
    cpu.cr[4] |= CR4_PGE
    rwx = PAGE_READ | PAGE_WRITE | PAGE_EXEC
    g = 0x00801000  # TLB slot 1
    slot = (g >> 12) & TLB_MASK
    tlb.set_page(KERNEL, g, 0x30000, rwx | PAGE_GLOBAL, deps=(2, 0, 0))
    load(m, V)
    cr3(m, PD_B)
    desc = tlb.d[KERNEL]
    assert desc.vpage[slot] == g and desc.prot[slot] & PAGE_GLOBAL  # kept, as flush_nonglobal keeps it
    assert desc.vpage[(V >> 12) & TLB_MASK] == -1  # A's own entry stayed with A
    # In B the global entry is pushed to the victim TLB by a non-global page of its slot.
    tlb.set_page(KERNEL, g + 0x100000, 0x31000, rwx, deps=(2, 0, 0))
    cr3(m, PD_A)
    desc = tlb.d[KERNEL]
    assert desc.vpage[slot] == -1  # not A's stale copy of g, not B's non-global page
    assert g in desc.v_vpage  # the live global entry, where the flush leaves it
    assert desc.read[(V >> 12) & TLB_MASK] == V | TLB_RECHECK


def test_tracing_fills_keeps_plain_flushes() -> None:
    m = two_spaces()
    seen: list[int] = []
    m.cpu.trace.tlb_fill = lambda cpu, vaddr, *rest: seen.append(vaddr)
    load(m, V)
    cr3(m, PD_B)
    cr3(m, PD_A)
    assert not m.cpu.tlb.contexts
    load(m, V)
    assert seen == [V, V]


def test_a_live_global_entry_wins_over_the_spaces_own_unchecked_copy() -> None:
    """Under CR4.PGE the global entry a flush keeps is the one used, not a non-global
    entry for the same page that the space kept from before."""
    m = two_spaces()
    cpu = m.cpu
    tlb = cpu.tlb
    cpu.cr[4] |= CR4_PGE
    rwx = PAGE_READ | PAGE_WRITE | PAGE_EXEC
    p = 0x00802000
    slot = (p >> 12) & TLB_MASK
    tlb.set_page(KERNEL, p, 0x31000, rwx, deps=(2, 0, 0))  # A's own, non-global
    tlb.set_page(KERNEL, p + 0x100000, 0x32000, rwx, deps=(2, 0, 0))  # pushes it to A's victim TLB
    cr3(m, PD_B)
    tlb.set_page(KERNEL, p, 0x33000, rwx | PAGE_GLOBAL, deps=(2, 0, 0))  # B's global entry for p
    cr3(m, PD_A)
    desc = tlb.d[KERNEL]
    assert desc.vpage[slot] == p and desc.paddr[slot] == 0x33000
    assert p not in desc.v_vpage


@pytest.mark.parametrize("tier", [1, 2])
def test_a_looping_tb_reads_through_the_tables_of_the_space_it_runs_in(tier: int) -> None:
    """A compiled TB that loops inside itself takes the TLB tables as locals on entry, never at
    build time: run again after a CR3 write it must see the new space's mapping of V."""
    m = two_spaces()
    cpu = m.cpu
    code_v, code_f = V + 0x1000, 0x30000
    for pt in (PT_A, PT_B):
        wr32(m, pte(pt, code_v), code_f | PG_PW)
    # loop: mov eax, [V]; dec ecx; jnz loop
    m.mem.ram[code_f : code_f + 8] = bytes([0xA1, *V.to_bytes(4, "little"), 0x49, 0x75, 0xF8])
    m.translator.force_tier = tier
    seen = []
    for space in (PD_A, PD_B, PD_A, PD_B):
        cr3(m, space)
        cpu.eip = code_v
        cpu.regs[1] = 100
        m.run(max_insns=300)
        assert cpu.eip == code_v + 8 and cpu.regs[1] == 0
        seen.append(cpu.regs[0])
    assert seen == [0x11111111, 0x22222222, 0x11111111, 0x22222222]


# ---- data segment loads from generated code ----------------------------------------------

GDT = 0x1000
GDT2 = 0x1800


def _desc(base: int, flags: int, limit: int = 0xFFFFF) -> int:
    """An 8-byte descriptor: ``flags`` in the high dword's attribute bits (DESC_*), G=1."""
    lo = (limit & 0xFFFF) | (base & 0xFFFF) << 16
    hi = (base >> 16) & 0xFF | (limit & 0xF0000) | flags | (1 << 23) | (base & 0xFF000000)
    return lo | hi << 32


def _gdt_machine() -> Machine:
    """Flat 32-bit, no paging; GDT: null, 0x08 code, 0x10 flat data, 0x18 data at 0x5000 (DPL 3)."""
    m = Machine(ram_size=RAM)
    cpu = m.cpu
    cpu.setup_flat32()
    for i, d in enumerate([0, _desc(0, _CODE32), _desc(0, _DATA32), _desc(0x5000, _DATA32 | 3 << 13)]):
        m.mem.ram[GDT + 8 * i : GDT + 8 * i + 8] = d.to_bytes(8, "little")
    cpu.gdtr_base, cpu.gdtr_limit = GDT, 0x1F
    return m


def _set_desc(m: Machine, table: int, sel: int, value: int) -> None:
    m.mem.ram[table + (sel & ~7) : table + (sel & ~7) + 8] = value.to_bytes(8, "little")


def _fault(fn: object) -> tuple[int, int | None]:
    with pytest.raises(GuestFault) as info:
        fn()  # type: ignore[operator]
    return info.value.vector, info.value.error_code


def test_fast_data_load_sees_every_change_of_its_inputs() -> None:
    """``seg.load_data_seg_fast`` after the selector was loaded once: a rewritten descriptor
    (base, present bit, DPL), a reloaded GDTR, another CPL, a limit that no longer covers the
    selector each give what ``load_seg`` gives, faults included; nothing is served stale."""
    m = _gdt_machine()
    cpu = m.cpu
    fast = seg.load_data_seg_fast
    for _ in range(2):
        fast(cpu, DS, 0x1B)
        assert cpu.segs[DS].base == 0x5000 and cpu.seg_base[DS] == 0x5000
    _set_desc(m, GDT, 0x18, _desc(0x6000, _DATA32 | 3 << 13))
    fast(cpu, ES, 0x1B)
    assert cpu.segs[ES].base == 0x6000 and cpu.seg_base[ES] == 0x6000
    hflags = cpu.hflags
    cpu.compute_hflags()
    assert cpu.hflags == hflags  # HF_ADDSEG as a full recompute gives it
    _set_desc(m, GDT, 0x18, _desc(0x6000, (_DATA32 | 3 << 13) & ~DESC_P))
    assert _fault(lambda: fast(cpu, DS, 0x1B)) == (11, 0x18)  # #NP(selector)
    _set_desc(m, GDT, 0x18, _desc(0x6000, _DATA32))  # DPL 0 < RPL 3
    assert _fault(lambda: fast(cpu, DS, 0x1B)) == (13, 0x18)
    fast(cpu, DS, 0x18)
    assert cpu.segs[DS].base == 0x6000
    # Another table: the same selector names another descriptor.
    m.mem.ram[GDT2 : GDT2 + 0x20] = m.mem.ram[GDT : GDT + 0x20]
    _set_desc(m, GDT2, 0x18, _desc(0x7000, _DATA32))
    cpu.gdtr_base = GDT2
    fast(cpu, FS, 0x18)
    assert cpu.segs[FS].base == 0x7000
    cpu.gdtr_limit = 0x17  # the selector is beyond the limit now
    assert _fault(lambda: fast(cpu, FS, 0x18)) == (13, 0x18)
    cpu.gdtr_limit = 0x1F
    # At CPL 3 the DPL 0 descriptor that loaded at CPL 0 is #GP.
    cpu.segs[SS] = SegmentCache(0x2B, 0, 0xFFFFFFFF, _DATA32 | 3 << 13)
    cpu.compute_hflags()
    assert cpu.cpl == 3
    assert _fault(lambda: fast(cpu, GS, 0x1B)) == (13, 0x18)
    fast(cpu, GS, 0)  # a null selector is fine in a data segment register
    assert cpu.segs[GS].selector == 0 and not cpu.segs[GS].flags & DESC_P


def test_fast_data_load_sets_the_accessed_bit_first() -> None:
    """A descriptor without its accessed bit goes through ``load_seg`` (which sets it in memory)."""
    m = _gdt_machine()
    _set_desc(m, GDT, 0x18, _desc(0x5000, (_DATA32 | 3 << 13) & ~DESC_A))
    seg.load_data_seg_fast(m.cpu, DS, 0x1B)
    assert int.from_bytes(m.mem.ram[GDT + 0x1C : GDT + 0x20], "little") & DESC_A


@pytest.mark.parametrize("tier", [1, 2])
def test_generated_data_loads_see_a_rewritten_descriptor(tier: int) -> None:
    """``mov ds, ax`` / ``push``+``pop es`` in generated code read the descriptor every time:
    the same TB run after the GDT entry's base changed loads the new base."""
    m = _gdt_machine()
    cpu = m.cpu
    m.translator.force_tier = tier
    code = 0x8000
    # mov ax, 0x1b; mov ds, ax; mov ebx, [0]; push eax; pop es; mov ecx, [es:4]; hlt
    prog = bytes([0x66, 0xB8, 0x1B, 0x00, 0x8E, 0xD8, 0x8B, 0x1D, 0, 0, 0, 0, 0x50, 0x07])
    prog += bytes([0x26, 0x8B, 0x0D, 4, 0, 0, 0, 0xF4])
    m.mem.ram[code : code + len(prog)] = prog
    for base, value in ((0x5000, 0x55), (0x6000, 0x66), (0x5000, 0x55), (0x6000, 0x66)):
        m.mem.ram[base : base + 8] = bytes([value] * 8)
        _set_desc(m, GDT, 0x18, _desc(base, _DATA32 | 3 << 13))
        cpu.eip, cpu.regs[4] = code, 0x9000
        cpu.halted = False
        m.run(max_insns=7)
        assert cpu.regs[3] == value * 0x01010101 and cpu.regs[1] == value * 0x01010101
        assert cpu.regs[4] == 0x9000 and cpu.segs[ES].base == base


# ---- interrupt delivery and IRET: the short paths against the general ones ---------------

IDT = 0x2000
IDT2 = 0x2800
TSS = 0x3000
USER_ESP, KERNEL_ESP = 0x7000, 0x9000
_TSS_BUSY32 = DESC_P | (11 << 8)


def _gate(selector: int, offset: int, gtype: int, dpl: int) -> int:
    lo = (offset & 0xFFFF) | selector << 16
    hi = (offset & 0xFFFF0000) | DESC_P | gtype << 8 | dpl << 13
    return lo | hi << 32


def _ring_machine() -> Machine:
    """GDT: 0x08/0x10 ring-0 code/data, 0x18/0x20 ring-3 code/data, 0x28 a busy 32-bit TSS
    (SS0:ESP0 = 0x10:KERNEL_ESP); IDT: 0x20 an interrupt gate (DPL 0), 0x80 a trap gate (DPL 3),
    0x0D an interrupt gate, 0x21 a 16-bit interrupt gate, all to ring-0 code."""
    m = Machine(ram_size=RAM)
    cpu = m.cpu
    cpu.setup_flat32()
    descs = [
        0,
        _desc(0, _CODE32),
        _desc(0, _DATA32),
        _desc(0, _CODE32 | 3 << 13),
        _desc(0, _DATA32 | 3 << 13),
        (0x67 | (TSS & 0xFFFF) << 16) | ((TSS >> 16) & 0xFF | _TSS_BUSY32) << 32,
    ]
    for i, d in enumerate(descs):
        _set_desc(m, GDT, 8 * i, d)
    cpu.gdtr_base, cpu.gdtr_limit = GDT, 8 * len(descs) - 1
    for vec, d in ((0x20, _gate(8, 0x4000, 14, 0)), (0x80, _gate(8, 0x4100, 15, 3)), (0x0D, _gate(8, 0x4200, 14, 0))):
        _set_desc(m, IDT, vec * 8, d)
    _set_desc(m, IDT, 0x21 * 8, _gate(8, 0x4300, 6, 0))
    cpu.idtr_base, cpu.idtr_limit = IDT, 0x100 * 8 - 1
    wr32(m, TSS + 4, KERNEL_ESP)
    wr32(m, TSS + 8, 0x10)
    cpu.tr = SegmentCache(0x28, TSS, 0x67, _TSS_BUSY32)
    return m


def _enter(cpu: object, ring: int) -> None:
    """The interrupted state: ring 3 (or 0) code at 0x5000, IF set, DS/ES the ring's data."""
    from gdbemu.core.cpu import CPU

    assert isinstance(cpu, CPU)
    code, data = (0x1B, 0x23) if ring == 3 else (0x08, 0x10)
    flags = 3 << 13 if ring == 3 else 0
    cpu.segs[CS] = SegmentCache(code, 0, 0xFFFFFFFF, _CODE32 | flags | (1 << 23))
    for s in (SS, DS, ES, FS, GS):
        cpu.segs[s] = SegmentCache(data, 0, 0xFFFFFFFF, _DATA32 | flags | (1 << 23))
    cpu.regs[:] = [1, 2, 3, 4, USER_ESP if ring == 3 else KERNEL_ESP - 0x400, 6, 7, 8]
    cpu.eip = 0x5000
    cpu.set_eflags(0x202 | 0x3000 * 0)


def _outcome(m: Machine, fn: object) -> tuple[object, ...]:
    cpu = m.cpu
    try:
        fn()  # type: ignore[operator]
    except GuestFault as fault:
        return ("fault", fault.vector, fault.error_code)
    return (
        tuple(cpu.regs),
        cpu.eip,
        cpu.get_eflags(),
        tuple((s.selector, s.base, s.limit, s.flags) for s in cpu.segs),
        cpu.hflags,
        tuple(cpu.seg_base),
        bytes(m.mem.ram[USER_ESP - 0x40 : USER_ESP]),
        bytes(m.mem.ram[KERNEL_ESP - 0x440 : KERNEL_ESP]),
    )


def _events(m: Machine, ring: int, vector: int, soft: bool, error: int | None) -> list[tuple[object, ...]]:
    """Deliver ``vector`` from ``ring``, then IRET from the handler: both outcomes."""
    from gdbemu.core import interrupts

    cpu = m.cpu
    _enter(cpu, ring)
    out = [_outcome(m, lambda: do_interrupt(cpu, vector, soft, error, 0x5002))]
    if out[0][0] != "fault":
        if error is not None:
            cpu.regs[4] += 4  # the handler drops the error code
        out.append(_outcome(m, lambda: interrupts.iret(cpu, 4)))
    return out


def _set_word(m: Machine, addr: int, value: int) -> None:
    wr32(m, addr, value)


_MUTATIONS = {
    "none": lambda m: None,
    "gate offset": lambda m: _set_desc(m, IDT, 0x80 * 8, _gate(8, 0x4400, 15, 3)),
    "gate dpl": lambda m: _set_desc(m, IDT, 0x80 * 8, _gate(8, 0x4100, 15, 0)),
    "gate absent": lambda m: _set_desc(m, IDT, 0x80 * 8, _gate(8, 0x4100, 15, 3) & ~(DESC_P << 32)),
    "gate type": lambda m: _set_desc(m, IDT, 0x80 * 8, _gate(8, 0x4100, 14, 3)),
    "gate task": lambda m: _set_desc(m, IDT, 0x80 * 8, _gate(0x28, 0, 5, 3)),
    "gate selector": lambda m: _set_desc(m, IDT, 0x80 * 8, _gate(0x18, 0x4100, 15, 3)),
    "code absent": lambda m: _set_desc(m, GDT, 0x08, _desc(0, _CODE32 & ~DESC_P)),
    "code base": lambda m: _set_desc(m, GDT, 0x08, _desc(0x100, _CODE32)),
    "code limit": lambda m: _set_desc(m, GDT, 0x08, _desc(0, _CODE32, limit=0)),
    "code not accessed": lambda m: _set_desc(m, GDT, 0x08, _desc(0, _CODE32 & ~DESC_A)),
    "esp0": lambda m: _set_word(m, TSS + 4, KERNEL_ESP - 0x100),
    "ss0 ring 3": lambda m: _set_word(m, TSS + 8, 0x23),
    "ss0 null": lambda m: _set_word(m, TSS + 8, 0),
    "stack read-only": lambda m: _set_desc(m, GDT, 0x10, _desc(0, _DATA32 & ~DESC_W)),
    "stack absent": lambda m: _set_desc(m, GDT, 0x10, _desc(0, _DATA32 & ~DESC_P)),
    "stack 16-bit": lambda m: _set_desc(m, GDT, 0x10, _desc(0, _DATA32 & ~DESC_B)),
    "user code base": lambda m: _set_desc(m, GDT, 0x18, _desc(0x200, _CODE32 | 3 << 13)),
    "user code absent": lambda m: _set_desc(m, GDT, 0x18, _desc(0, (_CODE32 | 3 << 13) & ~DESC_P)),
    "user code dpl 0": lambda m: _set_desc(m, GDT, 0x18, _desc(0, _CODE32)),
    "user stack absent": lambda m: _set_desc(m, GDT, 0x20, _desc(0, (_DATA32 | 3 << 13) & ~DESC_P)),
    "user stack base": lambda m: _set_desc(m, GDT, 0x20, _desc(0x300, _DATA32 | 3 << 13)),
    "idtr moved": lambda m: (
        m.mem.ram.__setitem__(slice(IDT2, IDT2 + 0x800), m.mem.ram[IDT : IDT + 0x800]),
        _set_desc(m, IDT2, 0x80 * 8, _gate(8, 0x4500, 14, 3)),
        setattr(m.cpu, "idtr_base", IDT2),
    ),
    "idtr limit": lambda m: setattr(m.cpu, "idtr_limit", 0x80 * 8 + 6),
    "gdtr limit": lambda m: setattr(m.cpu, "gdtr_limit", 0x0F),
    "tss limit": lambda m: setattr(m.cpu, "tr", SegmentCache(0x28, TSS, 0x8, _TSS_BUSY32)),
}


@pytest.mark.parametrize("name", sorted(_MUTATIONS))
@pytest.mark.parametrize(
    ("ring", "vector", "soft", "error"), [(3, 0x80, True, None), (3, 0x0D, False, 0x18), (0, 0x20, False, None)]
)
def test_short_delivery_and_iret_give_what_the_general_paths_give(
    name: str, ring: int, vector: int, soft: bool, error: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An event and its IRET once (learning the checks), the guest rewrites an IDT gate, a
    descriptor, a TSS field or reloads IDTR/GDTR/TR, then the event and IRET again: every
    outcome (state, frame bytes, fault and error code) is the general paths' one."""
    from gdbemu.core import interrupts

    results = []
    taken: list[bool] = []
    real_int, real_iret = interrupts._interrupt_fast, interrupts._iret_fast
    for fast in (False, True):
        if fast:

            def spy_int(*args: object) -> bool:
                taken.append(real_int(*args))  # type: ignore[arg-type]
                return taken[-1]

            def spy_iret(*args: object) -> bool:
                taken.append(real_iret(*args))  # type: ignore[arg-type]
                return taken[-1]

            monkeypatch.setattr(interrupts, "_interrupt_fast", spy_int)
            monkeypatch.setattr(interrupts, "_iret_fast", spy_iret)
        else:
            monkeypatch.setattr(interrupts, "_interrupt_fast", lambda *args: False)
            monkeypatch.setattr(interrupts, "_iret_fast", lambda *args: False)
        m = _ring_machine()
        first = _events(m, ring, vector, soft, error) + _events(m, ring, vector, soft, error)
        _MUTATIONS[name](m)
        results.append(first + _events(m, ring, vector, soft, error))
        monkeypatch.undo()
    assert results[0] == results[1]
    assert taken[2:4] == [True, True]  # the second event and IRET took the short paths


@pytest.mark.parametrize("tier", [1, 2])
def test_general_data_load_from_generated_code_sees_the_exact_icount(
    tier: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The general path of a data segment load (a descriptor not seen yet) runs with
    ``cpu.icount`` counting the instructions before it (it may read MMIO: the clock)."""
    m = _gdt_machine()
    cpu = m.cpu
    m.translator.force_tier = tier
    seen: list[int] = []
    real = seg.load_seg

    def spy(c: object, s: int, selector: int) -> None:
        seen.append(cpu.icount)
        real(cpu, s, selector)

    monkeypatch.setattr(seg, "load_seg", spy)
    code = 0x8000
    # nop; nop; mov ax, 0x1b; mov ds, ax; hlt
    prog = bytes([0x90, 0x90, 0x66, 0xB8, 0x1B, 0x00, 0x8E, 0xD8, 0xF4])
    m.mem.ram[code : code + len(prog)] = prog
    seg._DATA_LOADED.clear()
    start = cpu.icount
    cpu.eip = code
    m.run(max_insns=5)
    assert seen == [start + 3]
    assert cpu.segs[DS].base == 0x5000
