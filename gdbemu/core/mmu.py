"""The x86 page walk, handed to the softmmu's fill, and the debugger's side-effect-free walk.

Intel SDM vol. 3, 4.3 (32-bit paging) and 4.6 (access rights):

* CR0.PG=0: linear = physical, all access allowed (still through the TLB).
* Two levels: the PDE selected by bits 31..22 of the address, then the PTE
  by bits 21..12; with CR4.PSE a PDE with PS=1 maps a 4 MiB page.
* A user-mode access (CPL 3, mmu_idx USER) needs U/S=1 at both levels;
  a write needs R/W=1 at both levels for user, and for supervisor when CR0.WP=1.
* The walker sets Accessed in the PDE and PTE, and Dirty in the PTE (or the
  4 MiB PDE) on a write.  Those writes go straight to RAM, without TB
  invalidation (page tables hold no code: QEMU's x86_stl_phys_notdirty).
* A TLB entry for a read of a page whose Dirty bit is clear is installed
  without write permission, so the first write walks again and sets Dirty.
* Global pages (CR4.PGE, G=1) are marked so a CR3 write keeps them.
* SMAP (CR4.SMAP, mmu_idx KSMAP): a supervisor data access to a user page
  faults; SMEP (CR4.SMEP): a supervisor fetch from a user page faults (4.6.1).
* #PF error code: bit 0 P (protection violation, not a missing page),
  bit 1 W/R, bit 2 U/S, bit 4 I/D (fetch, reported with SMEP);
  CR2 gets the faulting linear address.
* The debugger's walk (``debug=True``) checks no access rights at all, like
  QEMU's get_phys_page_debug: gdb sees supervisor pages while the guest is
  stopped in user mode.
"""

from __future__ import annotations

from typing import Literal, overload

from ..softmmu.memory import RAM
from ..softmmu.tlb import (
    ACCESS_EXEC,
    ACCESS_READ,
    ACCESS_WRITE,
    MMU_KSMAP_IDX,
    MMU_USER_IDX,
    PAGE_EXEC,
    PAGE_GLOBAL,
    PAGE_READ,
    PAGE_WRITE,
)
from .cpu import CPU, CR0_PG, CR0_WP, CR4_PGE, CR4_PSE, CR4_SMEP
from .exceptions import PF, GuestFault

__all__ = [
    "ACCESS_EXEC",
    "ACCESS_READ",
    "ACCESS_WRITE",
    "PAGE_GLOBAL",
    "PG_A",
    "PG_D",
    "PG_G",
    "PG_P",
    "PG_PS",
    "PG_RW",
    "PG_US",
    "debug_translate",
    "walk",
]

PG_P = 1 << 0
PG_RW = 1 << 1
PG_US = 1 << 2
PG_A = 1 << 5
PG_D = 1 << 6
PG_PS = 1 << 7
PG_G = 1 << 8


def _ld32(ram: RAM, paddr: int, ram_size: int) -> int:
    if paddr + 4 > ram_size:
        return 0
    return int.from_bytes(ram[paddr : paddr + 4], "little")


def _st32(ram: RAM, paddr: int, value: int, ram_size: int) -> None:
    if paddr + 4 <= ram_size:
        ram[paddr : paddr + 4] = value.to_bytes(4, "little")


@overload
def walk(cpu: CPU, vaddr: int, access: int, mmu_idx: int, debug: Literal[False] = False) -> tuple[int, int, int]: ...
@overload
def walk(cpu: CPU, vaddr: int, access: int, mmu_idx: int, debug: bool) -> tuple[int, int, int] | None: ...
def walk(cpu: CPU, vaddr: int, access: int, mmu_idx: int, debug: bool = False) -> tuple[int, int, int] | None:
    """Translate ``vaddr``; return (paddr, prot, page_size) or raise #PF.

    ``prot`` carries PAGE_GLOBAL for a global page.  With ``debug`` nothing is
    written and no fault is raised: returns None for an unmapped address (the
    gdb view, DESIGN.md invariant 3).
    """
    vaddr &= 0xFFFFFFFF
    cr0 = cpu.cr[0]
    if not cr0 & CR0_PG:
        return vaddr, PAGE_READ | PAGE_WRITE | PAGE_EXEC, 4096
    mem = cpu.mem
    ram = mem.ram
    ram_size = mem.ram_size
    user = mmu_idx == MMU_USER_IDX
    is_write = access == ACCESS_WRITE
    cr4 = cpu.cr[4]
    pde_addr = (cpu.cr[3] & 0xFFFFF000) + ((vaddr >> 20) & 0xFFC)
    pde = _ld32(ram, pde_addr, ram_size)

    def fault(present: bool, fetch: bool = False) -> None:
        if debug:
            return None
        code = (1 if present else 0) | (2 if is_write else 0) | (4 if user else 0) | (0x10 if fetch else 0)
        raise GuestFault(PF, code, cr2=vaddr)

    if not pde & PG_P:
        fault(False)
        return None
    if pde & PG_PS and cr4 & CR4_PSE:
        rights = pde
        paddr_page = (pde & 0xFFC00000) | (vaddr & 0x3FF000)
        size = 4 << 20
        pte = pde
        pte_addr = pde_addr
        leaf_is_pde = True
    else:
        pte_addr = (pde & 0xFFFFF000) + ((vaddr >> 10) & 0xFFC)
        pte = _ld32(ram, pte_addr, ram_size)
        if not pte & PG_P:
            fault(False)
            return None
        rights = pde & pte
        paddr_page = pte & 0xFFFFF000
        size = 4096
        leaf_is_pde = False
    if debug:
        prot = PAGE_READ | PAGE_EXEC | (PAGE_WRITE if rights & PG_RW else 0)
        return paddr_page | (vaddr & 0xFFF), prot, size
    # access rights
    if not user and rights & PG_US:
        if access == ACCESS_EXEC:
            if cr4 & CR4_SMEP:
                fault(True, fetch=True)
                return None
        elif mmu_idx == MMU_KSMAP_IDX:
            fault(True)
            return None
    if user:
        if not rights & PG_US:
            fault(True)
            return None
        writable = bool(rights & PG_RW)
    else:
        writable = bool(rights & PG_RW) or not cr0 & CR0_WP
    if is_write and not writable:
        fault(True)
        return None
    # accessed / dirty bits
    if not leaf_is_pde and not pde & PG_A:
        _st32(ram, pde_addr, pde | PG_A, ram_size)
    new = pte | PG_A
    if is_write:
        new |= PG_D
    if new != pte:
        _st32(ram, pte_addr, new, ram_size)
    prot = PAGE_READ | PAGE_EXEC
    # Without D set, leave the entry read-only so the first write comes back here.
    if writable and new & PG_D:
        prot |= PAGE_WRITE
    if pte & PG_G and cr4 & CR4_PGE:
        prot |= PAGE_GLOBAL
    return paddr_page | (vaddr & 0xFFF), prot, size


def debug_translate(cpu: CPU, vaddr: int) -> int | None:
    """Physical address gdb sees for ``vaddr``: no TLB fill, no A/D bits, no fault, no rights check."""
    res = walk(cpu, vaddr, ACCESS_READ, cpu.mmu_idx, debug=True)
    return None if res is None else res[0]
