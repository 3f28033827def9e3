"""The x86 page walk, handed to the softmmu's fill, and the debugger's side-effect-free walk.

Intel SDM vol. 3, 4.3 (32-bit paging) and 4.6 (access rights):

* CR0.PG=0: linear = physical, all access allowed (still through the TLB).
* CR4.PAE (4.4): three levels of 64-bit entries (PDPTE by bits 31:30, PDE,
  PTE), 2 MiB pages; EFER.LMA (4.5): four levels (PML4E by bits 47:39),
  2 MiB and 1 GiB pages.  Both: NX with EFER.NXE, reserved bits (#PF with
  RSVD), MAXPHYADDR 36 (``_walk64``).  A 4 MiB PSE page's bits 21:13 are
  reserved too (no PSE-36, MAXPHYADDR 32 in that format).
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
from .cpu import CPU, CR0_PG, CR0_WP, CR4_PAE, CR4_PGE, CR4_PSE, CR4_SMEP, EFER_LMA, EFER_NXE
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
    "EFER_LMA",
    "EFER_NXE",
    "PG_NX",
    "debug_translate",
    "mappings",
    "switch_address_space",
    "walk",
    "walk_deps",
]

PG_P = 1 << 0
PG_RW = 1 << 1
PG_US = 1 << 2
PG_A = 1 << 5
PG_D = 1 << 6
PG_PS = 1 << 7
PG_G = 1 << 8
PG_NX = 1 << 63
PHYS_BITS = 36  # MAXPHYADDR with PAE and no CPUID leaf 0x80000008 (SDM vol. 3, 4.1.4)
ADDR_MASK = ((1 << PHYS_BITS) - 1) & ~0xFFF
ADDR_RSVD = ((1 << 52) - 1) & ~((1 << PHYS_BITS) - 1)  # bits 51:M
PDPTE_PAE_RSVD = 0x1E6 | PG_NX  # a PAE PDPTE: bits 2:1, 8:5 and 63 are reserved
PSE_RSVD = 0x3FE000  # 4 MiB PDE bits 21:13 (no PSE-36, MAXPHYADDR 32)


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
    gdb view, DESIGN.md invariant 3).  The format follows CR4.PAE and
    EFER.LMA: 32-bit two-level, PAE three-level or 4-level.
    """
    res = walk_deps(cpu, vaddr, access, mmu_idx, debug)
    return None if res is None else res[:3]


Deps = tuple[int, ...] | None  # (log2 of the word size, address, value, address, value, ...)


@overload
def walk_deps(
    cpu: CPU, vaddr: int, access: int, mmu_idx: int, debug: Literal[False] = False
) -> tuple[int, int, int, Deps]: ...
@overload
def walk_deps(cpu: CPU, vaddr: int, access: int, mmu_idx: int, debug: bool) -> tuple[int, int, int, Deps] | None: ...
def walk_deps(
    cpu: CPU, vaddr: int, access: int, mmu_idx: int, debug: bool = False
) -> tuple[int, int, int, Deps] | None:
    """``walk``, plus the paging-structure words it read, as it left them (A/D set), for the TLB.

    ``deps`` is (2, addr, value, ...) for the 32-bit format's dwords, (3, ...)
    for the 64-bit formats' qwords, None with paging off.  Whenever those
    words hold the same values again, under the same CR0/CR4/EFER, the walk
    gives the same result and writes nothing: the TLB relies on it to keep
    an address space's entries across CR3 writes (softmmu/tlb.py).
    """
    cr0 = cpu.cr[0]
    if not cr0 & CR0_PG:
        return vaddr & 0xFFFFFFFF, PAGE_READ | PAGE_WRITE | PAGE_EXEC, 4096, None
    cr4 = cpu.cr[4]
    if cpu.efer & EFER_LMA or cr4 & CR4_PAE:
        return _walk64(cpu, vaddr, access, mmu_idx, debug)
    vaddr &= 0xFFFFFFFF
    mem = cpu.mem
    m32 = mem.m32
    ram_size = mem.ram_size
    pde_addr = (cpu.cr[3] & 0xFFFFF000) | ((vaddr >> 20) & 0xFFC)
    pde = m32[pde_addr >> 2] if pde_addr + 4 <= ram_size else 0
    if not pde & PG_P:
        _fault32(vaddr, access, mmu_idx, cr4, False, False, debug)
        return None
    if pde & PG_PS and cr4 & CR4_PSE:
        # Bits 20:13 would be physical-address bits 39:32 (PSE-36) and bit 21 is
        # reserved; with MAXPHYADDR 32 and no PSE-36 all of 21:13 are reserved
        # (SDM vol. 3, table 4-4).  QEMU faults on bit 21 with RSVD (bit 3).
        if pde & PSE_RSVD:
            _fault32(vaddr, access, mmu_idx, cr4, True, True, debug)
            return None
        rights = pde
        paddr_page = (pde & 0xFFC00000) | (vaddr & 0x3FF000)
        size = 4 << 20
        pte = pde
        pte_addr = pde_addr
        leaf_is_pde = True
    else:
        pte_addr = (pde & 0xFFFFF000) | ((vaddr >> 10) & 0xFFC)
        pte = m32[pte_addr >> 2] if pte_addr + 4 <= ram_size else 0
        if not pte & PG_P:
            _fault32(vaddr, access, mmu_idx, cr4, False, False, debug)
            return None
        rights = pde & pte
        paddr_page = pte & 0xFFFFF000
        size = 4096
        leaf_is_pde = False
    if debug:
        prot = PAGE_READ | PAGE_EXEC | (PAGE_WRITE if rights & PG_RW else 0)
        return paddr_page | (vaddr & 0xFFF), prot, size, None
    # access rights
    user = mmu_idx == MMU_USER_IDX
    if not user and rights & PG_US:
        if access == ACCESS_EXEC:
            if cr4 & CR4_SMEP:
                _fault32(vaddr, access, mmu_idx, cr4, True, False, debug)
                return None
        elif mmu_idx == MMU_KSMAP_IDX:
            _fault32(vaddr, access, mmu_idx, cr4, True, False, debug)
            return None
    if user:
        if not rights & PG_US:
            _fault32(vaddr, access, mmu_idx, cr4, True, False, debug)
            return None
        writable = bool(rights & PG_RW)
    else:
        writable = bool(rights & PG_RW) or not cr0 & CR0_WP
    is_write = access == ACCESS_WRITE
    if is_write and not writable:
        _fault32(vaddr, access, mmu_idx, cr4, True, False, debug)
        return None
    # accessed / dirty bits
    # (The VGA and MIGRATION clients see these stores, as QEMU's x86_stl_phys_notdirty.)
    if not leaf_is_pde and not pde & PG_A:
        pde |= PG_A
        m32[pde_addr >> 2] = pde
        cpu.softmmu.dirty.set_dirty_range(pde_addr, 4, clients=0b101)
    new = pte | PG_A
    if is_write:
        new |= PG_D
    if new != pte:
        m32[pte_addr >> 2] = new
        cpu.softmmu.dirty.set_dirty_range(pte_addr, 4, clients=0b101)
    prot = PAGE_READ | PAGE_EXEC
    # Without D set, leave the entry read-only so the first write comes back here.
    if writable and new & PG_D:
        prot |= PAGE_WRITE
    if pte & PG_G and cr4 & CR4_PGE:
        prot |= PAGE_GLOBAL
    deps = (2, pte_addr, new) if leaf_is_pde else (2, pde_addr, pde, pte_addr, new)
    return paddr_page | (vaddr & 0xFFF), prot, size, deps


def _fault32(vaddr: int, access: int, mmu_idx: int, cr4: int, present: bool, rsvd: bool, debug: bool) -> None:
    """The #PF of a failed walk (error code: P, W/R, U/S, RSVD, I/D with SMEP); None for the debugger."""
    if debug:
        return None
    code = (
        (1 if present else 0)
        | (2 if access == ACCESS_WRITE else 0)
        | (4 if mmu_idx == MMU_USER_IDX else 0)
        | (8 if rsvd else 0)
        | (0x10 if access == ACCESS_EXEC and cr4 & CR4_SMEP else 0)
    )
    raise GuestFault(PF, code, cr2=vaddr)


def _ld64(ram: RAM, paddr: int, ram_size: int) -> int:
    if paddr + 8 > ram_size:
        return 0
    return int.from_bytes(ram[paddr : paddr + 8], "little")


def _walk64(cpu: CPU, vaddr: int, access: int, mmu_idx: int, debug: bool) -> tuple[int, int, int, Deps] | None:
    """PAE (3-level, 32-bit linear addresses) and 4-level (48-bit) walks, with NX and reserved bits.

    Reserved bits (SDM vol. 3, 4.4.2 / 4.5.4): physical-address bits 51:M
    (M = ``cpu.phys_bits``, MAXPHYADDR: PHYS_BITS unless the CPU model says
    otherwise, 40 on qemu64) in every entry; XD (bit 63) unless EFER.NXE; in a PAE
    PDPTE also bits 2:1, 8:5 and 63; PS in a PML4E; bits 20:13 of a 2 MiB
    PDE and 29:13 of a 1 GiB PDPTE.  A reserved bit in a present entry is a
    #PF with P=1 and RSVD (bit 3).  I/D (bit 4) is set for a fetch when
    EFER.NXE (with PAE) or CR4.SMEP is set, as QEMU does.
    """
    cr0 = cpu.cr[0]
    cr4 = cpu.cr[4]
    efer = cpu.efer
    long_mode = bool(efer & EFER_LMA)
    nxe = bool(efer & EFER_NXE)
    mem = cpu.mem
    ram = mem.ram
    m64 = mem.m64  # entries are 8-byte aligned
    ram_size = mem.ram_size
    user = mmu_idx == MMU_USER_IDX
    is_write = access == ACCESS_WRITE
    fetch = access == ACCESS_EXEC
    fetch_bit = 0x10 if fetch and (nxe or cr4 & CR4_SMEP) else 0
    if long_mode:
        vaddr &= 0xFFFFFFFFFFFFFFFF
    else:
        vaddr &= 0xFFFFFFFF
    phys_bits = cpu.phys_bits
    if phys_bits == PHYS_BITS:
        addr_mask, addr_rsvd = ADDR_MASK, ADDR_RSVD
    else:
        addr_mask = ((1 << phys_bits) - 1) & ~0xFFF
        addr_rsvd = ((1 << 52) - 1) & ~((1 << phys_bits) - 1)
    rsvd_common = addr_rsvd | (0 if nxe else PG_NX)

    def fault(present: bool, rsvd: bool = False) -> None:
        if debug:
            return None
        code = (1 if present else 0) | (2 if is_write else 0) | (4 if user else 0) | fetch_bit | (8 if rsvd else 0)
        raise GuestFault(PF, code, cr2=vaddr)

    touched: list[tuple[int, int]] = []  # (address, entry) of the non-leaf entries walked
    deps: list[int] = [3]  # the words read (walk_deps), as the walk leaves them
    rw = us = True
    nx = False
    if long_mode:
        table = cpu.cr[3] & addr_mask
        shifts: tuple[int, ...] = (39, 30, 21, 12)
    else:
        pdpte_addr = (cpu.cr[3] & 0xFFFFFFE0) + ((vaddr >> 30) & 3) * 8
        pdpte = m64[pdpte_addr >> 3] if pdpte_addr + 8 <= ram_size else 0
        if not pdpte & PG_P:
            fault(False)
            return None
        if pdpte & (addr_rsvd | PDPTE_PAE_RSVD):
            fault(True, rsvd=True)
            return None
        table = pdpte & addr_mask
        shifts = (21, 12)
        deps += (pdpte_addr, pdpte)
    size = 4096
    entry = entry_addr = 0
    for shift in shifts:
        entry_addr = table + ((vaddr >> shift) & 0x1FF) * 8
        entry = m64[entry_addr >> 3] if entry_addr + 8 <= ram_size else 0
        if not entry & PG_P:
            fault(False)
            return None
        rsvd = rsvd_common
        last = shift == 12
        large = not last and entry & PG_PS
        if large:
            if shift == 39 or (shift == 30 and not _has_1g_pages(cpu)):
                # no 512 GiB pages; 1 GiB pages only with CPUID Page1GB (SDM vol. 3, 4.5.4: else PS
                # is reserved; QEMU 7.2 maps them anyway)
                rsvd |= PG_PS
            else:
                rsvd |= ((1 << shift) - 1) & ~0x1FFF  # address bits below the page size, above PAT
        if entry & rsvd:
            fault(True, rsvd=True)
            return None
        rw = rw and bool(entry & PG_RW)
        us = us and bool(entry & PG_US)
        nx = nx or (nxe and bool(entry & PG_NX))
        if last or large:
            size = 1 << shift
            break
        touched.append((entry_addr, entry))
        table = entry & addr_mask
    paddr_page = (entry & addr_mask & ~(size - 1)) | (vaddr & (size - 1) & ~0xFFF)
    if debug:
        prot = PAGE_READ | (0 if nx else PAGE_EXEC) | (PAGE_WRITE if rw else 0)
        return paddr_page | (vaddr & 0xFFF), prot, size, None
    if fetch and nx:
        fault(True)
        return None
    if not user and us:
        if fetch:
            if cr4 & CR4_SMEP:
                fault(True)
                return None
        elif mmu_idx == MMU_KSMAP_IDX:
            fault(True)
            return None
    if user:
        if not us:
            fault(True)
            return None
        writable = rw
    else:
        writable = rw or not cr0 & CR0_WP
    if is_write and not writable:
        fault(True)
        return None
    for addr, e in touched:
        if not e & PG_A:
            _st32(ram, addr, (e | PG_A) & 0xFFFFFFFF, ram_size)
        deps += (addr, e | PG_A)
    new = entry | PG_A | (PG_D if is_write else 0)
    if new != entry:
        _st32(ram, entry_addr, new & 0xFFFFFFFF, ram_size)
    deps += (entry_addr, new)
    prot = PAGE_READ | (0 if nx else PAGE_EXEC)
    if writable and new & PG_D:
        prot |= PAGE_WRITE
    if entry & PG_G and cr4 & CR4_PGE:
        prot |= PAGE_GLOBAL
    return paddr_page | (vaddr & 0xFFF), prot, size, tuple(deps)


def switch_address_space(cpu: CPU, old_cr3: int, new_cr3: int) -> None:
    """A CR3 load with paging on (MOV CR3, a task switch): the TLB drops every entry but
    global pages under CR4.PGE (SDM vol. 3, 4.10.4.1).

    The entries of the old address space are kept aside and those of the new
    one come back, each checked against its page-table words before its first
    use (softmmu/tlb.py, "Address spaces"): the guest sees what a flush gives
    it.  While ``-d mmu`` traces fills, a plain flush keeps the trace as it was.
    """
    keep_global = bool(cpu.cr[4] & CR4_PGE)
    if cpu.trace.tlb_fill is not None:
        if keep_global:
            cpu.tlb.flush_nonglobal()
        else:
            cpu.tlb.flush()
        return
    cpu.tlb.switch_context(old_cr3, new_cr3, keep_global)


def _has_1g_pages(cpu: CPU) -> bool:
    """CPUID 0x80000001 EDX bit 26 (Page1GB) of this CPU's model: without it a PDPTE's PS bit is reserved."""
    from .ops.system import has_feature

    return has_feature(cpu, "pdpe1gb")


def debug_translate(cpu: CPU, vaddr: int) -> int | None:
    """Physical address gdb sees for ``vaddr``: no TLB fill, no A/D bits, no fault, no rights check."""
    res = walk(cpu, vaddr, ACCESS_READ, cpu.mmu_idx, debug=True)
    return None if res is None else res[0]


def mappings(cpu: CPU) -> list[tuple[int, int, int, int]]:
    """Every present leaf mapping, in linear-address order, for ``info mem``: no side effects.

    Returns (linear address, size, physical address, flags) per page or large
    page; ``flags`` has RW and US as the AND over the levels, PG_NX (bit 63)
    as their OR when EFER.NXE is set, and A, D and G of the leaf.  Linear
    addresses of 4-level paging are canonical (bits 63:48 copy bit 47).
    Empty with paging off.
    """
    if not cpu.cr[0] & CR0_PG:
        return []
    mem = cpu.mem
    ram, ram_size = mem.ram, mem.ram_size
    leaf_bits = PG_A | PG_D | PG_G
    out: list[tuple[int, int, int, int]] = []
    if not (cpu.efer & EFER_LMA or cpu.cr[4] & CR4_PAE):
        pd = cpu.cr[3] & 0xFFFFF000
        for i in range(1024):
            pde = _ld32(ram, pd + 4 * i, ram_size)
            if not pde & PG_P:
                continue
            if pde & PG_PS and cpu.cr[4] & CR4_PSE:
                out.append((i << 22, 1 << 22, pde & 0xFFC00000, pde))
                continue
            pt = pde & 0xFFFFF000
            for j in range(1024):
                pte = _ld32(ram, pt + 4 * j, ram_size)
                if pte & PG_P:
                    out.append(((i << 22) | (j << 12), 4096, pte & 0xFFFFF000, pde & pte | (pte & leaf_bits)))
        return out
    nxe = bool(cpu.efer & EFER_NXE)
    rights = PG_RW | PG_US
    amask = ((1 << cpu.phys_bits) - 1) & ~0xFFF

    def visit(table: int, shift: int, base: int, acc: int, nx: int) -> None:
        for k in range(512):
            e = _ld64(ram, table + 8 * k, ram_size)
            if not e & PG_P:
                continue
            v = base | (k << shift)
            a = acc & (e | ~rights)
            x = nx | (e & PG_NX if nxe else 0)
            if shift == 12 or (e & PG_PS and shift in (21, 30)):
                out.append((v, 1 << shift, e & amask & ~((1 << shift) - 1), (a & rights) | (e & leaf_bits) | x))
            else:
                visit(e & amask, shift - 9, v, a, x)

    if cpu.efer & EFER_LMA:
        for k in range(512):
            e = _ld64(ram, (cpu.cr[3] & amask) + 8 * k, ram_size)
            if e & PG_P:
                base = k << 39
                if base & (1 << 47):
                    base |= 0xFFFF << 48
                visit(e & amask, 30, base, e | ~rights, e & PG_NX if nxe else 0)
    else:
        for k in range(4):
            e = _ld64(ram, (cpu.cr[3] & 0xFFFFFFE0) + 8 * k, ram_size)
            if e & PG_P:
                visit(e & amask, 21, k << 30, ~0, 0)
    return out
