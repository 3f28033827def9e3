"""The debugger's view of guest memory: linear addresses through the guest's page tables, invisibly.

DESIGN.md invariant 3: gdb's memory reads walk the page tables without
filling the TLB, setting accessed/dirty bits or raising faults
(``core.mmu.debug_translate``, the debug walk), and see no watchpoint; gdb's
memory writes go through physical memory (``PhysMemory.write``), so they
invalidate translated code they touch like any store.

* :func:`read_virtual` / :func:`write_virtual`: gdb's ``m``/``M`` (and the
  monitor, the tests).  Device memory is read as ``PhysMemory.read`` reads it.
* :func:`peek_linear`: a value for the watch log's old/new bytes, watch
  conditions' ``memN()`` and agent expressions' ``refN``: RAM only, never an
  MMIO register (reading a device register has side effects; reading it again
  for a log would change the guest); None where the bytes are not RAM.

Linear addresses are what the CPU can form in its current mode, and nothing
wraps: outside long mode they are 32-bit (an access running past 4 GiB
stops there); in long mode (EFER.LMA) they are 64-bit and canonical (bits
63:47 all equal), and an access reaching the non-canonical hole stops at its
edge.  :func:`linear_ok` says whether an address can be formed; a range that
cannot is unmapped to gdb (``E0e``), never folded onto another address.
"""

from __future__ import annotations

from collections.abc import Callable

from ..core.cpu import CPU, CS, HF_CS64
from ..core.mmu import EFER_LMA, debug_translate
from ..machine import Machine
from ..softmmu.memory import PhysMemory

PAGE_SIZE = 4096
_LEGACY_TOP = 0xFFFFFFFF
_CANON_LOW_END = 1 << 47  # the lower canonical half is [0, 2**47)
_CANON_HIGH = (1 << 64) - (1 << 47)  # the upper half is [2**64 - 2**47, 2**64)

Peek = Callable[[CPU, int, int], "int | None"]  # peek_linear with its memory bound: (cpu, vaddr, size)


class UnmappedError(ValueError):
    """A linear address the guest's page tables do not map (gdb: ``E0e``, EFAULT)."""


def linear_ok(cpu: CPU, vaddr: int) -> bool:
    """Whether ``cpu`` can form the linear address ``vaddr`` in its current mode (module docstring)."""
    if vaddr < 0:
        return False
    if cpu.efer & EFER_LMA:
        return vaddr < _CANON_LOW_END or _CANON_HIGH <= vaddr < 1 << 64
    return vaddr <= _LEGACY_TOP


def canonical(vaddr: int) -> bool:
    """A 64-bit canonical address (bits 63:47 all equal): one that 64-bit code can form."""
    return 0 <= vaddr < _CANON_LOW_END or _CANON_HIGH <= vaddr < 1 << 64


def pc_linear(cpu: CPU) -> int:
    """The linear address of the next instruction: CS.base + EIP mod 4 GiB, or RIP in 64-bit code
    (what the TB marks of gdb's breakpoints are keyed by)."""
    if cpu.hflags & HF_CS64:
        return int(cpu.eip) & 0xFFFFFFFFFFFFFFFF
    return (cpu.seg_base[CS] + cpu.eip) & _LEGACY_TOP


def _translate(cpu: CPU, vaddr: int) -> int | None:
    return debug_translate(cpu, vaddr) if linear_ok(cpu, vaddr) else None


def peek_linear(mem: PhysMemory, cpu: CPU, vaddr: int, size: int) -> int | None:
    """``size`` bytes at a linear address as a little-endian integer, RAM only (else None)."""
    if (vaddr & 0xFFF) + size > PAGE_SIZE:
        lo = PAGE_SIZE - (vaddr & 0xFFF)
        a = peek_linear(mem, cpu, vaddr, lo)
        b = peek_linear(mem, cpu, vaddr + lo, size - lo)
        return None if a is None or b is None else a | (b << (8 * lo))
    paddr = _translate(cpu, vaddr)
    if paddr is None or not mem.is_ram(paddr) or paddr + size > mem.ram_size:
        return None
    return int.from_bytes(mem.ram[paddr : paddr + size], "little")


def read_virtual(machine: Machine, vaddr: int, length: int, cpu: CPU | None = None) -> bytes:
    """gdb's memory read of ``length`` bytes at ``vaddr`` (``cpu``'s page tables; the first CPU's by default).

    Raises :class:`UnmappedError` (a ValueError) at the first unmapped page.
    """
    cpu = cpu or machine.cpu
    out = bytearray()
    while length > 0:
        chunk = min(length, PAGE_SIZE - (vaddr & 0xFFF))
        paddr = _translate(cpu, vaddr)
        if paddr is None:
            raise UnmappedError(f"address {vaddr:#x} is not mapped")
        out += machine.mem.read(paddr, chunk)
        vaddr += chunk
        length -= chunk
    return bytes(out)


def read_virtual_partial(machine: Machine, vaddr: int, length: int, cpu: CPU | None = None) -> bytes:
    """As :func:`read_virtual`, but the bytes up to the first unmapped page (gdb's ``m`` reads what it can)."""
    out = bytearray()
    while length > 0:
        chunk = min(length, PAGE_SIZE - (vaddr & 0xFFF))
        try:
            out += read_virtual(machine, vaddr, chunk, cpu)
        except UnmappedError:
            break
        vaddr += chunk
        length -= chunk
    return bytes(out)


def write_virtual(machine: Machine, vaddr: int, data: bytes, cpu: CPU | None = None) -> None:
    """gdb's memory write: through physical memory, invalidating translated code it touches.

    All or nothing: every page is translated first, and :class:`UnmappedError`
    is raised (nothing written) if one is not mapped.
    """
    cpu = cpu or machine.cpu
    pos = 0
    pieces: list[tuple[int, bytes]] = []
    while pos < len(data):
        chunk = min(len(data) - pos, PAGE_SIZE - (vaddr & 0xFFF))
        paddr = _translate(cpu, vaddr)
        if paddr is None:
            raise UnmappedError(f"address {vaddr:#x} is not mapped")
        pieces.append((paddr, data[pos : pos + chunk]))
        vaddr += chunk
        pos += chunk
    for paddr, piece in pieces:
        machine.mem.write(paddr, piece)
