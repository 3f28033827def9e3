"""The 4-level (long-mode) page walk of core/mmu.py, called directly with EFER.LMA set.

Guests cannot enter long mode yet (the CPU has no 64-bit execution), so
these tests set EFER.LMA/NXE and CR4.PAE on a Machine's CPU and call the
walk the softmmu calls: 4 KiB, 2 MiB and 1 GiB pages at 48-bit addresses,
NX with I/D in the error code, the reserved bits of each level (PS in a
PML4E, address bits below a large page's size, bits 51:M, XD without NXE),
A/D bits and the debugger's side-effect-free walk.  PAE in 32-bit mode is
checked from inside a guest (tests/guests/test_pae.py).
"""

from __future__ import annotations

import pytest

from gdbemu.core.cpu import CR0_PG, CR0_WP, CR4_PAE
from gdbemu.core.exceptions import PF, GuestFault
from gdbemu.core.mmu import (
    ACCESS_EXEC,
    ACCESS_READ,
    ACCESS_WRITE,
    EFER_LMA,
    EFER_NXE,
    PG_A,
    PG_D,
    PG_NX,
    PG_P,
    PG_PS,
    PG_RW,
    PG_US,
    debug_translate,
    mappings,
    walk,
)
from gdbemu.debug.target import MachineTarget
from gdbemu.machine import Machine
from gdbemu.softmmu.tlb import MMU_KNOSMAP_IDX, MMU_USER_IDX, PAGE_EXEC, PAGE_WRITE

PML4, PDPT, PD, PT = 0x10000, 0x11000, 0x12000, 0x13000
KERNEL, USER = MMU_KNOSMAP_IDX, MMU_USER_IDX
V = 0xFFFF_8000_0040_1ABC  # PML4 256, PDPT 0, PD 2, PT 1
V1G = 0x0000_7F80_4123_4567  # PML4 255, PDPT 1: a 1 GiB page
PW = PG_P | PG_RW


def rd64(m: Machine, paddr: int) -> int:
    return int.from_bytes(m.mem.ram[paddr : paddr + 8], "little")


def wr64(m: Machine, paddr: int, value: int) -> None:
    m.mem.ram[paddr : paddr + 8] = value.to_bytes(8, "little")


def idx(v: int, shift: int) -> int:
    return (v >> shift) & 0x1FF


def machine(nxe: bool = True) -> Machine:
    m = Machine(ram_size=4 << 20)
    cpu = m.cpu
    cpu.setup_flat32()
    cpu.cr[3] = PML4
    cpu.cr[4] |= CR4_PAE
    cpu.cr[0] |= CR0_PG | CR0_WP
    cpu.efer = EFER_LMA | (EFER_NXE if nxe else 0)
    cpu.compute_hflags()
    wr64(m, PML4 + idx(V, 39) * 8, PDPT | PW | PG_US)
    wr64(m, PDPT + idx(V, 30) * 8, PD | PW | PG_US)
    wr64(m, PD + idx(V, 21) * 8, PT | PW | PG_US)
    wr64(m, PT + idx(V, 12) * 8, 0x200000 | PW)
    return m


def fault(m: Machine, v: int, access: int, mmu_idx: int = KERNEL) -> int:
    with pytest.raises(GuestFault) as info:
        walk(m.cpu, v, access, mmu_idx)
    assert info.value.vector == PF and info.value.cr2 == v
    return info.value.error_code


def test_4k_page_at_a_high_canonical_address() -> None:
    m = machine()
    paddr, prot, size = walk(m.cpu, V, ACCESS_READ, KERNEL)
    assert (paddr, size) == (0x200ABC, 4096)
    assert prot & PAGE_EXEC and not prot & PAGE_WRITE  # D clear: read-only until the first write
    assert rd64(m, PT + idx(V, 12) * 8) & (PG_A | PG_D) == PG_A
    assert all(rd64(m, t) & PG_A for t in (PML4 + idx(V, 39) * 8, PDPT, PD + idx(V, 21) * 8))
    walk(m.cpu, V, ACCESS_WRITE, KERNEL)
    assert rd64(m, PT + idx(V, 12) * 8) & PG_D


def test_2m_and_1g_pages() -> None:
    m = machine()
    wr64(m, PD + 3 * 8, 0x400000 | PW | PG_PS)
    v2 = (V & ~0x3FFFFF & ~(0x1FF << 21)) | (3 << 21) | 0x12345
    assert walk(m.cpu, v2, ACCESS_READ, KERNEL)[0::2] == (0x412345, 2 << 20)
    wr64(m, PML4 + idx(V1G, 39) * 8, 0x14000 | PW)
    wr64(m, 0x14000 + idx(V1G, 30) * 8, (1 << 30) | PW | PG_PS)
    paddr, _, size = walk(m.cpu, V1G, ACCESS_READ, KERNEL)
    assert (paddr, size) == ((1 << 30) | (V1G & ((1 << 30) - 1)), 1 << 30)


def test_nx_fetch_fault_has_id_bit() -> None:
    m = machine()
    wr64(m, PT + idx(V, 12) * 8, 0x200000 | PW | PG_NX)
    assert not walk(m.cpu, V, ACCESS_READ, KERNEL)[1] & PAGE_EXEC
    assert fault(m, V, ACCESS_EXEC) == 0x11  # P | I/D
    assert fault(m, V + 0x1000, ACCESS_EXEC) == 0x10  # not present, I/D (NXE on)


@pytest.mark.parametrize(
    ("where", "bits", "write"),
    [
        (PML4 + idx(V, 39) * 8, PG_PS, False),  # no 512 GiB pages
        (PT + idx(V, 12) * 8, 1 << 51, False),  # above MAXPHYADDR
        (PD + idx(V, 21) * 8, 1 << 40, True),
    ],
)
def test_reserved_bits(where: int, bits: int, write: bool) -> None:
    m = machine()
    wr64(m, where, rd64(m, where) | bits)
    code = fault(m, V, ACCESS_WRITE if write else ACCESS_READ)
    assert code == 0x9 | (2 if write else 0)


def test_large_page_low_address_bits_are_reserved() -> None:
    m = machine()
    wr64(m, PD + 3 * 8, 0x400000 | (1 << 13) | PW | PG_PS)
    v2 = (V & ~0x3FFFFF & ~(0x1FF << 21)) | (3 << 21)
    assert fault(m, v2, ACCESS_READ) == 0x9


def test_xd_is_reserved_without_nxe() -> None:
    m = machine(nxe=False)
    wr64(m, PT + idx(V, 12) * 8, 0x200000 | PW | PG_NX)
    assert fault(m, V, ACCESS_READ) == 0x9


def test_user_rights_over_four_levels() -> None:
    m = machine()
    assert fault(m, V, ACCESS_READ, USER) == 0x5  # the PTE is supervisor
    wr64(m, PT + idx(V, 12) * 8, 0x200000 | PW | PG_US)
    walk(m.cpu, V, ACCESS_READ, USER)
    wr64(m, PDPT + idx(V, 30) * 8, PD | PG_P | PG_US)  # read-only at the PDPT level
    assert fault(m, V, ACCESS_WRITE, USER) == 0x7


def test_debug_walk_has_no_side_effects() -> None:
    m = machine()
    before = bytes(m.mem.ram[PML4 : PT + 0x1000])
    assert debug_translate(m.cpu, V) == 0x200ABC
    assert debug_translate(m.cpu, V + 0x1000) is None
    assert bytes(m.mem.ram[PML4 : PT + 0x1000]) == before


def test_mappings_and_info_mem_show_64_bit_mappings() -> None:
    m = machine()
    wr64(m, PD + 3 * 8, 0x400000 | PW | PG_PS | PG_NX)
    wr64(m, PML4 + idx(V1G, 39) * 8, 0x14000 | PW | PG_US)
    wr64(m, 0x14000 + idx(V1G, 30) * 8, (1 << 30) | PW | PG_PS | PG_US)
    rows = mappings(m.cpu)
    base_1g = V1G & ~((1 << 30) - 1)
    v2 = (V & ~0x3FFFFF & ~(0x1FF << 21)) | (3 << 21)
    assert [(v, size, p) for v, size, p, _ in rows] == [
        (base_1g, 1 << 30, 1 << 30),
        (V & ~0xFFF, 4096, 0x200000),
        (v2, 2 << 20, 0x400000),
    ]
    assert rows[2][3] & PG_NX and not rows[1][3] & PG_US and rows[0][3] & PG_US
    text = MachineTarget(m).monitor.handle("info mem")
    assert f"{base_1g:016x}-{base_1g + (1 << 30):016x} 40000000 -> 40000000 urw 1G" in text
    assert f"{v2:016x}-{v2 + (2 << 20):016x} 00200000 -> 00400000 -rw NX 2M" in text
