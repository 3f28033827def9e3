"""Unit tests of the x86 page walk (gdbemu/core/mmu.py): walk, tlb_fill, debug_translate.

Page tables are written straight into guest RAM of a small Machine and the
walk is called directly, so each rule of Intel SDM vol. 3 chapter 4 is
checked on its own:

* 4.1 / 4.3   paging off is the identity; 32-bit paging: PDE by bits 31:22,
              PTE by bits 21:12; a PDE with PS=1 maps 4 MiB only with CR4.PSE
              (Table 4-4: "if CR4.PSE = 0, ignored" - the PDE then points to a
              page table);
* 4.6         access rights: U/S and R/W combined over both levels, CR0.WP;
* 4.7         #PF error code (P, W/R, U/S) and CR2;
* 4.8         accessed and dirty flags;
* 4.10.2.2    a TLB entry caches the dirty flag: a translation installed
              while D=0 must not allow writes, so the first write walks again;
* 4.10.2.4 / 4.10.4.1  global pages (CR4.PGE) survive a CR3 write.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gdbemu.core.cpu import CR0_PG, CR0_WP, CR4_PGE, CR4_PSE
from gdbemu.core.exceptions import PF, GuestFault
from gdbemu.core.mmu import (
    ACCESS_EXEC,
    ACCESS_READ,
    ACCESS_WRITE,
    PAGE_GLOBAL,
    PG_A,
    PG_D,
    PG_G,
    PG_P,
    PG_PS,
    PG_RW,
    PG_US,
    debug_translate,
    walk,
)
from gdbemu.machine import Machine
from gdbemu.softmmu.tlb import (
    INVALID_TAG,
    MMU_KNOSMAP_IDX,
    MMU_KSMAP_IDX,
    MMU_USER_IDX,
    PAGE_EXEC,
    PAGE_READ,
    PAGE_WRITE,
)

RAM = 8 << 20  # room for a 4 MiB frame at 4 MiB
PD = 0x10000
PT = 0x11000
FRAME = 0x20000
V = 0x00801ABC  # PDE index 2, PTE index 1, offset 0xABC
V_PDE = PD + (V >> 22) * 4
V_PTE = PT + ((V >> 12) & 0x3FF) * 4
LARGE_V = 0x00C12345  # PDE index 3
LARGE_FRAME = 0x400000
CR4_SMEP = 1 << 20
CR4_SMAP = 1 << 21

USER, KERNEL = MMU_USER_IDX, MMU_KNOSMAP_IDX


def rd32(m: Machine, paddr: int) -> int:
    return int.from_bytes(m.mem.ram[paddr : paddr + 4], "little")


def wr32(m: Machine, paddr: int, value: int) -> None:
    m.mem.ram[paddr : paddr + 4] = value.to_bytes(4, "little")


def machine(wp: bool = False, cr4: int = 0, paging: bool = True) -> Machine:
    m = Machine(ram_size=RAM)
    cpu = m.cpu
    cpu.setup_flat32()
    cpu.cr[3] = PD
    if paging:
        cpu.cr[0] |= CR0_PG
    if wp:
        cpu.cr[0] |= CR0_WP
    cpu.cr[4] = cr4
    cpu.compute_hflags()
    return m


def map4k(m: Machine, vaddr: int, frame: int, pde_flags: int, pte_flags: int, pt: int = PT) -> None:
    wr32(m, PD + (vaddr >> 22) * 4, pt | pde_flags)
    wr32(m, pt + ((vaddr >> 12) & 0x3FF) * 4, frame | pte_flags)


def map4m(m: Machine, vaddr: int, frame: int, flags: int) -> None:
    wr32(m, PD + (vaddr >> 22) * 4, frame | PG_PS | flags)


def pf_code(present: bool, write: bool, user: bool) -> int:
    """SDM vol. 3, 4.7 (Figure 4-12): bit 0 P, bit 1 W/R, bit 2 U/S."""
    return (1 if present else 0) | (2 if write else 0) | (4 if user else 0)


def expect_pf(m: Machine, vaddr: int, access: int, mmu_idx: int, code: int) -> None:
    with pytest.raises(GuestFault) as info:
        walk(m.cpu, vaddr, access, mmu_idx)
    assert info.value.vector == PF
    assert info.value.error_code == code, f"error code {info.value.error_code:#x} != {code:#x}"
    assert info.value.cr2 == vaddr


# ---- paging off, 4 KiB, 4 MiB ----------------------------------------------------------


@pytest.mark.parametrize("vaddr", [0, 0x1234, 0x00801ABC, 0xFFFFFFFF])
@pytest.mark.parametrize("mmu_idx", [USER, KERNEL])
@pytest.mark.parametrize("access", [ACCESS_READ, ACCESS_WRITE, ACCESS_EXEC])
def test_paging_off_is_identity_with_all_rights(vaddr, mmu_idx, access):
    """SDM 4.1.1: with CR0.PG=0 linear addresses are physical; no checks, no table reads."""
    m = machine(paging=False)
    m.cpu.cr[3] = 0xFFFFF000  # garbage: must not be used
    assert walk(m.cpu, vaddr, access, mmu_idx) == (vaddr, PAGE_READ | PAGE_WRITE | PAGE_EXEC, 4096)
    i = m.cpu.softmmu.fill(vaddr, access, mmu_idx)
    d = m.cpu.tlb.d[mmu_idx]
    assert d.paddr[i] == vaddr & ~0xFFF and d.vpage[i] == vaddr & ~0xFFF


def test_4k_page_translation():
    m = machine()
    map4k(m, V, FRAME, PG_P | PG_RW, PG_P | PG_RW)
    paddr, prot, size = walk(m.cpu, V, ACCESS_WRITE, KERNEL)
    assert (paddr, size) == (FRAME | 0xABC, 4096)
    assert prot & (PAGE_READ | PAGE_WRITE | PAGE_EXEC) == PAGE_READ | PAGE_WRITE | PAGE_EXEC
    # neighbours in the same page table are separate pages
    map4k(m, V + 0x1000, 0x33000, PG_P | PG_RW, PG_P)
    assert walk(m.cpu, V + 0x1000, ACCESS_READ, KERNEL)[0] == 0x33ABC


def test_4k_translation_through_softmmu():
    m = machine()
    map4k(m, V, FRAME, PG_P | PG_RW, PG_P | PG_RW | PG_D)
    wr32(m, FRAME | 0xABC, 0xCAFEBABE)
    assert m.cpu.softmmu.load(KERNEL, V, 4) == 0xCAFEBABE
    m.cpu.softmmu.store(KERNEL, V + 4, 2, 0x1234)
    assert rd32(m, FRAME | 0xAC0) & 0xFFFF == 0x1234


def test_4m_pse_page():
    m = machine(cr4=CR4_PSE)
    map4m(m, LARGE_V, LARGE_FRAME, PG_P | PG_RW)
    paddr, prot, size = walk(m.cpu, LARGE_V, ACCESS_READ, KERNEL)
    assert paddr == LARGE_FRAME | (LARGE_V & 0x3FFFFF)
    assert size == 4 << 20
    # every 4 KiB piece of the 4 MiB page maps to the matching piece of the frame
    for off in (0, 0x1000, 0x3FF000, 0x3FFFFF):
        v = (LARGE_V & ~0x3FFFFF) + off
        assert walk(m.cpu, v, ACCESS_READ, KERNEL)[0] == LARGE_FRAME + off


def test_4m_page_enters_the_tlb_as_a_large_page():
    m = machine(cr4=CR4_PSE)
    map4m(m, LARGE_V, LARGE_FRAME, PG_P | PG_RW)
    i = m.cpu.softmmu.fill(LARGE_V, ACCESS_READ, KERNEL)
    d = m.cpu.tlb.d[KERNEL]
    assert d.paddr[i] == LARGE_FRAME | (LARGE_V & 0x3FF000)
    assert d.large_page_addr == LARGE_V & ~0x3FFFFF
    m.cpu.tlb.flush_page((LARGE_V & ~0x3FFFFF) + 0x3FF000)  # invlpg of another 4 KiB piece
    assert m.cpu.tlb.valid_entries(KERNEL) == []


def test_ps_bit_ignored_without_cr4_pse():
    """SDM Table 4-4: PDE bit 7 (PS) is ignored if CR4.PSE=0; the PDE references a page table."""
    m = machine(cr4=0)
    map4m(m, LARGE_V, LARGE_FRAME, PG_P | PG_RW)  # PDE = 0x400000 | PS | P | RW
    # the "page table" at 0x400000: the PTE for LARGE_V
    wr32(m, LARGE_FRAME + ((LARGE_V >> 12) & 0x3FF) * 4, 0x30000 | PG_P | PG_RW)
    paddr, _, size = walk(m.cpu, LARGE_V, ACCESS_READ, KERNEL)
    assert (paddr, size) == (0x30000 | (LARGE_V & 0xFFF), 4096)
    # and with PSE the same PDE is a 4 MiB page
    m.cpu.cr[4] = CR4_PSE
    assert walk(m.cpu, LARGE_V, ACCESS_READ, KERNEL)[0] == LARGE_FRAME | (LARGE_V & 0x3FFFFF)


def test_ps_bit_ignored_without_pse_not_present_pte_faults():
    m = machine(cr4=0)
    map4m(m, LARGE_V, LARGE_FRAME, PG_P | PG_RW)  # the PTE slot at 0x400000+ is zero
    expect_pf(m, LARGE_V, ACCESS_READ, KERNEL, pf_code(False, False, False))


# ---- not present --------------------------------------------------------------------


@pytest.mark.parametrize("user", [False, True])
@pytest.mark.parametrize("write", [False, True])
@pytest.mark.parametrize("level", ["pde", "pte", "pde4m"])
def test_not_present_faults(level, user, write):
    m = machine(cr4=CR4_PSE)
    all_rights = PG_RW | PG_US
    if level == "pde":
        map4k(m, V, FRAME, all_rights, PG_P | all_rights)  # PDE P=0
    elif level == "pte":
        map4k(m, V, FRAME, PG_P | all_rights, all_rights)  # PTE P=0
    else:
        map4m(m, V, LARGE_FRAME, all_rights)  # 4 MiB PDE, P=0
    expect_pf(m, V, ACCESS_WRITE if write else ACCESS_READ, USER if user else KERNEL, pf_code(False, write, user))


# ---- access rights: the full table --------------------------------------------------


def sdm_allowed(pde_us: int, pte_us: int, pde_rw: int, pte_rw: int, user: bool, write: bool, wp: int) -> bool:
    """SDM vol. 3, 4.6.1, for 32-bit paging without SMAP/SMEP.

    A linear address is a user-mode address if U/S=1 in every paging-structure
    entry that maps it (otherwise supervisor-mode), and it is read-only if
    R/W=0 in any of them.
    * user-mode accesses: only user-mode addresses; writes only if writable;
    * supervisor-mode accesses: may read any address; may write any address
      when CR0.WP=0, only writable ones when CR0.WP=1.
    """
    user_page = bool(pde_us and pte_us)
    writable = bool(pde_rw and pte_rw)
    if user:
        return user_page and (writable or not write)
    return not write or writable or not wp


RIGHTS_TABLE = list(itertools.product([0, 1], [0, 1], [0, 1], [0, 1], [False, True], [False, True], [0, 1]))


@pytest.mark.parametrize("pde_us, pte_us, pde_rw, pte_rw, user, write, wp", RIGHTS_TABLE)
def test_access_rights(pde_us, pte_us, pde_rw, pte_rw, user, write, wp):
    m = machine(wp=bool(wp))
    pde = PG_P | (PG_US if pde_us else 0) | (PG_RW if pde_rw else 0)
    pte = PG_P | (PG_US if pte_us else 0) | (PG_RW if pte_rw else 0) | PG_A | PG_D
    map4k(m, V, FRAME, pde, pte)
    mmu_idx = USER if user else KERNEL
    access = ACCESS_WRITE if write else ACCESS_READ
    if sdm_allowed(pde_us, pte_us, pde_rw, pte_rw, user, write, wp):
        paddr, prot, _ = walk(m.cpu, V, access, mmu_idx)
        assert paddr == FRAME | 0xABC
        # The TLB caches rights: the entry may allow a write only if a write is allowed
        # (D is set, so no dirty-bit reason to withhold it).
        may_write = sdm_allowed(pde_us, pte_us, pde_rw, pte_rw, user, True, wp)
        assert bool(prot & PAGE_WRITE) == may_write
        assert prot & PAGE_READ
        i = m.cpu.softmmu.fill(V, access, mmu_idx)
        assert (m.cpu.tlb.d[mmu_idx].write[i] != INVALID_TAG) == may_write
    else:
        expect_pf(m, V, access, mmu_idx, pf_code(True, write, user))


@pytest.mark.parametrize("us, rw, user, write, wp", list(itertools.product([0, 1], [0, 1], [0, 1], [0, 1], [0, 1])))
def test_access_rights_4m(us, rw, user, write, wp):
    """For a 4 MiB page the PDE alone holds the rights."""
    m = machine(wp=bool(wp), cr4=CR4_PSE)
    map4m(m, LARGE_V, LARGE_FRAME, PG_P | (PG_US if us else 0) | (PG_RW if rw else 0) | PG_A | PG_D)
    mmu_idx = USER if user else KERNEL
    access = ACCESS_WRITE if write else ACCESS_READ
    if sdm_allowed(us, 1, rw, 1, user, write, wp):
        assert walk(m.cpu, LARGE_V, access, mmu_idx)[0] == LARGE_FRAME | (LARGE_V & 0x3FFFFF)
    else:
        expect_pf(m, LARGE_V, access, mmu_idx, pf_code(True, write, user))


@pytest.mark.parametrize("user", [False, True])
def test_fetch_fault_error_code(user):
    """A fetch is a read for U/S purposes (no NX in 32-bit paging): W/R=0."""
    m = machine()
    map4k(m, V, FRAME, PG_P | PG_RW, PG_P | PG_RW)  # supervisor page
    if user:
        expect_pf(m, V, ACCESS_EXEC, USER, pf_code(True, False, True))
    else:
        assert walk(m.cpu, V, ACCESS_EXEC, KERNEL)[0] == FRAME | 0xABC


@pytest.mark.parametrize("write", [False, True])
def test_smap_supervisor_access_to_user_page_faults(write):
    """SDM 4.6.1: with CR4.SMAP=1 and EFLAGS.AC=0, supervisor data accesses to user-mode addresses fault."""
    m = machine(cr4=CR4_SMAP)
    map4k(m, V, FRAME, PG_P | PG_RW | PG_US, PG_P | PG_RW | PG_US | PG_A | PG_D)
    expect_pf(m, V, ACCESS_WRITE if write else ACCESS_READ, MMU_KSMAP_IDX, pf_code(True, write, False))


def test_smap_idx_without_user_page_is_plain_supervisor():
    m = machine(cr4=CR4_SMAP)
    map4k(m, V, FRAME, PG_P | PG_RW, PG_P | PG_RW | PG_A | PG_D)
    assert walk(m.cpu, V, ACCESS_WRITE, MMU_KSMAP_IDX)[0] == FRAME | 0xABC


def test_smep_supervisor_fetch_from_user_page_faults():
    """SDM 4.6.1 / 4.7: with CR4.SMEP=1 supervisor fetches from user-mode addresses fault, I/D set."""
    m = machine(cr4=CR4_SMEP)
    map4k(m, V, FRAME, PG_P | PG_RW | PG_US, PG_P | PG_RW | PG_US | PG_A)
    expect_pf(m, V, ACCESS_EXEC, KERNEL, 0x10 | pf_code(True, False, False))


# ---- accessed / dirty ------------------------------------------------------------------


def test_read_sets_accessed_not_dirty_4k():
    m = machine()
    map4k(m, V, FRAME, PG_P | PG_RW, PG_P | PG_RW)
    walk(m.cpu, V, ACCESS_READ, KERNEL)
    assert rd32(m, V_PDE) & (PG_A | PG_D) == PG_A
    assert rd32(m, V_PTE) & (PG_A | PG_D) == PG_A


def test_write_sets_dirty_in_pte_only_4k():
    m = machine()
    map4k(m, V, FRAME, PG_P | PG_RW, PG_P | PG_RW)
    walk(m.cpu, V, ACCESS_WRITE, KERNEL)
    assert rd32(m, V_PTE) & (PG_A | PG_D) == PG_A | PG_D
    # D in a PDE that references a page table is ignored (Table 4-5): not set by the walker
    assert rd32(m, V_PDE) & (PG_A | PG_D) == PG_A
    # the other bits are untouched
    assert rd32(m, V_PTE) & ~(PG_A | PG_D) == FRAME | PG_P | PG_RW
    assert rd32(m, V_PDE) & ~(PG_A | PG_D) == PT | PG_P | PG_RW


def test_accessed_and_dirty_on_4m_pde():
    m = machine(cr4=CR4_PSE)
    pde_addr = PD + (LARGE_V >> 22) * 4
    map4m(m, LARGE_V, LARGE_FRAME, PG_P | PG_RW)
    walk(m.cpu, LARGE_V, ACCESS_READ, KERNEL)
    assert rd32(m, pde_addr) & (PG_A | PG_D) == PG_A
    walk(m.cpu, LARGE_V, ACCESS_WRITE, KERNEL)
    assert rd32(m, pde_addr) == LARGE_FRAME | PG_PS | PG_P | PG_RW | PG_A | PG_D


def test_fetch_sets_accessed_not_dirty():
    m = machine()
    map4k(m, V, FRAME, PG_P, PG_P)
    walk(m.cpu, V, ACCESS_EXEC, KERNEL)
    assert rd32(m, V_PTE) & (PG_A | PG_D) == PG_A


def test_read_of_clean_page_installs_no_write_permission():
    """SDM 4.8: a write must set D; an entry cached while D=0 cannot allow the write."""
    m = machine()
    map4k(m, V, FRAME, PG_P | PG_RW, PG_P | PG_RW)
    cpu = m.cpu
    wr32(m, FRAME | 0xABC, 0x11223344)
    assert cpu.softmmu.load(KERNEL, V, 4) == 0x11223344
    i = (V >> 12) & 0xFF
    d = cpu.tlb.d[KERNEL]
    assert d.read[i] == V & ~0xFFF
    assert d.write[i] == INVALID_TAG
    assert not rd32(m, V_PTE) & PG_D
    fills = cpu.tlb.stats.fills
    cpu.softmmu.store(KERNEL, V, 4, 0x55667788)
    assert cpu.tlb.stats.fills == fills + 1, "the first write must walk again"
    assert rd32(m, V_PTE) & PG_D
    assert rd32(m, FRAME | 0xABC) == 0x55667788
    assert d.write[i] == V & ~0xFFF
    # and now writes stay in the TLB
    cpu.softmmu.store(KERNEL, V, 4, 1)
    assert cpu.tlb.stats.fills == fills + 1


def test_read_of_dirty_page_installs_write_permission():
    m = machine()
    map4k(m, V, FRAME, PG_P | PG_RW, PG_P | PG_RW | PG_D)
    cpu = m.cpu
    cpu.softmmu.load(KERNEL, V, 4)
    fills = cpu.tlb.stats.fills
    cpu.softmmu.store(KERNEL, V, 4, 7)
    assert cpu.tlb.stats.fills == fills


def test_4m_read_of_clean_page_installs_no_write_permission():
    m = machine(cr4=CR4_PSE)
    map4m(m, LARGE_V, LARGE_FRAME, PG_P | PG_RW)
    _, prot, _ = walk(m.cpu, LARGE_V, ACCESS_READ, KERNEL)
    assert not prot & PAGE_WRITE
    _, prot, _ = walk(m.cpu, LARGE_V, ACCESS_WRITE, KERNEL)
    assert prot & PAGE_WRITE


def test_page_tables_are_written_without_code_invalidation():
    """A/D updates go straight to RAM (QEMU's x86_stl_phys_notdirty): no TB lookups, no dirty bits."""
    m = machine()
    map4k(m, V, FRAME, PG_P | PG_RW, PG_P | PG_RW)
    calls = []
    m.mem.on_phys_write.append(lambda p, n: calls.append((p, n)))
    walk(m.cpu, V, ACCESS_WRITE, KERNEL)
    assert calls == []


# ---- global pages ----------------------------------------------------------------------


@pytest.mark.parametrize("pge", [False, True])
def test_global_bit_only_with_cr4_pge(pge):
    m = machine(cr4=(CR4_PGE if pge else 0) | CR4_PSE)
    map4k(m, V, FRAME, PG_P | PG_RW, PG_P | PG_RW | PG_G)
    map4k(m, V + 0x1000, FRAME + 0x1000, PG_P | PG_RW, PG_P | PG_RW)
    map4m(m, LARGE_V, LARGE_FRAME, PG_P | PG_RW | PG_G)
    assert bool(walk(m.cpu, V, ACCESS_READ, KERNEL)[1] & PAGE_GLOBAL) == pge
    assert not walk(m.cpu, V + 0x1000, ACCESS_READ, KERNEL)[1] & PAGE_GLOBAL
    assert bool(walk(m.cpu, LARGE_V, ACCESS_READ, KERNEL)[1] & PAGE_GLOBAL) == pge


def test_g_bit_of_a_page_table_pde_is_ignored():
    """Table 4-5: G in a PDE that references a page table is ignored."""
    m = machine(cr4=CR4_PGE)
    map4k(m, V, FRAME, PG_P | PG_RW | PG_G, PG_P | PG_RW)
    assert not walk(m.cpu, V, ACCESS_READ, KERNEL)[1] & PAGE_GLOBAL


@pytest.mark.parametrize("pge", [False, True])
def test_cr3_write_keeps_global_entries_only_with_pge(pge):
    """SDM 4.10.4.1: mov cr3 invalidates all non-global translations (globals too without PGE)."""
    from gdbemu.core.ops.system import tlb_flush_nonglobal

    m = machine(cr4=CR4_PGE if pge else 0)
    map4k(m, V, FRAME, PG_P | PG_RW, PG_P | PG_RW | PG_G)
    map4k(m, V + 0x1000, FRAME + 0x1000, PG_P | PG_RW, PG_P | PG_RW)
    m.cpu.softmmu.fill(V, ACCESS_READ, KERNEL)
    m.cpu.softmmu.fill(V + 0x1000, ACCESS_READ, KERNEL)
    tlb_flush_nonglobal(m.cpu)
    kept = [e[0] for e in m.cpu.tlb.valid_entries(KERNEL)]
    assert kept == ([V & ~0xFFF] if pge else [])


# ---- the debug walk ----------------------------------------------------------------


def _snapshot(m: Machine) -> bytes:
    return bytes(m.mem.ram[PD : PT + 0x1000]) + bytes(m.mem.ram[LARGE_FRAME : LARGE_FRAME + 0x1000])


@pytest.mark.parametrize("access", [ACCESS_READ, ACCESS_WRITE, ACCESS_EXEC])
def test_debug_walk_has_no_side_effects(access):
    m = machine(cr4=CR4_PSE)
    map4k(m, V, FRAME, PG_P | PG_RW, PG_P | PG_RW)
    map4m(m, LARGE_V, LARGE_FRAME, PG_P | PG_RW)
    before = _snapshot(m)
    assert walk(m.cpu, V, access, KERNEL, debug=True)[0] == FRAME | 0xABC
    assert walk(m.cpu, LARGE_V, access, KERNEL, debug=True)[0] == LARGE_FRAME | (LARGE_V & 0x3FFFFF)
    assert debug_translate(m.cpu, V) == FRAME | 0xABC
    assert _snapshot(m) == before, "the debug walk must not set A/D bits"
    assert m.cpu.tlb.stats.fills == 0
    assert all(m.cpu.tlb.valid_entries(i) == [] for i in range(3))


def test_debug_walk_returns_none_instead_of_faulting():
    m = machine()
    map4k(m, V, FRAME, PG_P | PG_RW, PG_RW)  # PTE not present
    assert walk(m.cpu, V, ACCESS_READ, KERNEL, debug=True) is None
    assert debug_translate(m.cpu, V) is None
    assert debug_translate(m.cpu, 0x7FC00000) is None  # PDE not present
    m.cpu.cr[3] = 0xFFFFF000  # page directory beyond RAM
    assert debug_translate(m.cpu, V) is None


def test_debug_translate_sees_supervisor_pages_from_user_mode():
    m = machine()
    map4k(m, V, FRAME, PG_P | PG_RW, PG_P | PG_RW)  # supervisor-only page
    m.cpu.mmu_idx = USER
    assert debug_translate(m.cpu, V) == FRAME | 0xABC


def test_debug_walk_agrees_with_the_real_walk_and_never_raises():
    """On arbitrary page-table contents: the debug walk finds what the real walk finds.

    Where the real walk succeeds both give the same frame; where it faults
    because the page is absent the debug walk gives None; where it faults on
    access rights the debug walk still translates (gdb may read any mapped
    page, as with QEMU's get_phys_page_debug).
    """
    m = machine()
    cpu = m.cpu
    pde_addr = PD + (V >> 22) * 4
    pte_addr = PT + ((V >> 12) & 0x3FF) * 4
    flag_bits = st.integers(0, 0x1FF)

    @settings(
        max_examples=200, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow]
    )
    @given(
        pde_flags=flag_bits,
        pte_flags=flag_bits,
        pt_far=st.booleans(),
        access=st.sampled_from([ACCESS_READ, ACCESS_WRITE, ACCESS_EXEC]),
        mmu_idx=st.sampled_from([USER, KERNEL]),
        wp=st.booleans(),
        pse=st.booleans(),
        pge=st.booleans(),
        paging=st.booleans(),
    )
    def check(pde_flags, pte_flags, pt_far, access, mmu_idx, wp, pse, pge, paging):
        pt = 0x7FFF000 if pt_far else PT  # a page table beyond RAM reads as zeros
        wr32(m, pde_addr, pt | pde_flags)
        wr32(m, pte_addr, FRAME | pte_flags)
        cpu.cr[0] = (cpu.cr[0] & ~(CR0_PG | CR0_WP)) | (CR0_PG if paging else 0) | (CR0_WP if wp else 0)
        cpu.cr[4] = (CR4_PSE if pse else 0) | (CR4_PGE if pge else 0)
        before = _snapshot(m)
        dbg = walk(cpu, V, access, mmu_idx, debug=True)
        assert _snapshot(m) == before
        try:
            real = walk(cpu, V, access, mmu_idx)
        except GuestFault as fault:
            assert fault.vector == PF and fault.cr2 == V
            if not fault.error_code & 1:  # not present
                assert dbg is None
        else:
            assert dbg is not None and dbg[0] == real[0] and dbg[2] == real[2]

    check()
    assert cpu.tlb.stats.fills == 0
