"""ELF program headers, read the way QEMU's ``load_elf`` reads them, with every bound checked first.

Theory of operation
-------------------
A kernel file is untrusted input: every field that says where something is
(``e_phoff``, ``p_offset``) or how big it is (``e_phnum``, ``p_filesz``,
``p_memsz``) is checked against the file's length or the address space
before anything is sliced or allocated, so a bad file ends in an
:class:`ELFError` naming the field, never in ``struct.error``,
``MemoryError`` or a read that does not end.  Nothing here allocates more
than the file's own program headers; the bytes of a segment are copied only
by :meth:`ElfFile.segment_bytes`, which the caller uses once the segment is
known to fit in RAM.

What QEMU (``include/hw/elf_ops.h``, ``hw/core/loader.c``) rejects, we reject:

1. program headers that run past the end of the file (QEMU's short read);
2. a PT_LOAD with ``p_filesz > p_memsz`` (``ELF_LOAD_TOO_BIG``);
3. a PT_LOAD whose file data runs past the end of the file (checked only
   when ``p_filesz > 0``, as QEMU does);
4. PT_LOAD segments that overlap in physical memory once loaded (QEMU's
   "rom: requested regions overlap").  Before that check, a segment whose
   zero-filled tail (``p_filesz..p_memsz``) overlaps another segment is cut
   to its file size, as QEMU does for images that pack initialised data
   into ROM.

Also refused, where QEMU reads garbage: an ``e_phentsize`` other than the
size of a program header of the file's class (QEMU assumes it), and a
segment that runs past the top of the 32-bit physical address space of an
ELF32 (QEMU wraps it).

The entry point is QEMU's: ``e_entry`` is a virtual address; when it lies
inside the file part of an executable PT_LOAD whose ``p_vaddr`` differs from
its ``p_paddr`` (a higher-half kernel linked with ``AT()``), it is translated
to ``e_entry - p_vaddr + p_paddr`` (the last such segment wins, as in QEMU's
loop), because the CPU starts with paging off.
"""

from __future__ import annotations

import bisect
import mmap
import struct
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "EM_386",
    "EM_X86_64",
    "ELFError",
    "ElfFile",
    "Image",
    "Segment",
    "load_elf",
    "parse_elf",
    "parse_elf32",
]

# The bytes of a file: what ``open().read()`` or ``mmap`` give.
Image = bytes | bytearray | memoryview | mmap.mmap

PT_LOAD = 1
PF_X = 1
EM_386 = 3
EM_X86_64 = 62
ELFCLASS32 = 1
ELFCLASS64 = 2

# class -> (ELF header size, header layout after e_ident, program header size, program header layout)
_LAYOUTS = {
    ELFCLASS32: (52, "<HHIIIIIHHH", 32, "<IIIIIIII"),
    ELFCLASS64: (64, "<HHIQQQIHHH", 56, "<IIQQQQQQ"),
}


class ELFError(ValueError):
    """The file is not an ELF this loader can load; the message names the field that is wrong."""


@dataclass(frozen=True)
class Segment:
    """One PT_LOAD program header (``memsz`` possibly cut to ``filesz``, see rule 4)."""

    index: int  # position in the program header table
    offset: int
    vaddr: int
    paddr: int
    filesz: int
    memsz: int
    flags: int

    @property
    def end(self) -> int:
        """One past the last physical byte."""
        return self.paddr + self.memsz


@dataclass(frozen=True)
class ElfFile:
    """What a loader needs from an ELF: its class, machine, entry and PT_LOAD segments."""

    bits: int  # 32 or 64
    machine: int
    e_entry: int  # as in the header (a virtual address)
    segments: tuple[Segment, ...]  # PT_LOAD, in program header order, checked (rules 1-4)

    @property
    def entry(self) -> int:
        """The physical entry point QEMU jumps to (see the module docstring)."""
        entry = self.e_entry
        for seg in self.segments:
            if seg.vaddr != seg.paddr and seg.flags & PF_X and seg.vaddr <= self.e_entry < seg.vaddr + seg.filesz:
                entry = self.e_entry - seg.vaddr + seg.paddr
        return entry & ((1 << self.bits) - 1)

    @property
    def low(self) -> int:
        return min(seg.paddr for seg in self.segments)

    @property
    def high(self) -> int:
        return max(seg.end for seg in self.segments)

    @staticmethod
    def segment_bytes(data: Image, seg: Segment) -> bytes:
        """The segment as loaded: its file bytes, then zeros up to ``memsz``.  Allocates ``memsz``."""
        body = bytes(data[seg.offset : seg.offset + seg.filesz]) if seg.filesz else b""
        return body + bytes(seg.memsz - len(body))


def _cut_zero_tails(segs: list[Segment]) -> list[Segment]:
    """Rule 4, first half: a zero tail overlapping another segment is not loaded (QEMU's elf_ops.h).

    QEMU compares every pair; with up to 65535 headers that is too slow here,
    so: sort the segments by start, and for a tail [zs, ze) ask whether any
    *other* segment starting before ze ends after zs -- the largest end among
    the segments that start before ze, skipping the segment itself.
    """
    order = sorted(range(len(segs)), key=lambda i: segs[i].paddr)
    starts = [segs[i].paddr for i in order]
    # Prefix maxima of the end, keeping the best two (with their indices) to skip "self".
    best: list[tuple[tuple[int, int], tuple[int, int]]] = []
    top1, top2 = (-1, -1), (-1, -1)
    for i in order:
        cand = (segs[i].end, i)
        if cand > top1:
            top1, top2 = cand, top1
        elif cand > top2:
            top2 = cand
        best.append((top1, top2))
    out = []
    for i, seg in enumerate(segs):
        if seg.memsz > seg.filesz:
            zs, ze = seg.paddr + seg.filesz, seg.end
            k = bisect.bisect_left(starts, ze)  # segments [0, k) start before ze
            if k:
                top1, top2 = best[k - 1]
                other_end = top1[0] if top1[1] != i else top2[0]
                # A zero-length segment at s counts when zs < s < ze (QEMU's test); the
                # generic test "start < ze and end > zs" is the same for it.
                if other_end > zs:
                    seg = Segment(seg.index, seg.offset, seg.vaddr, seg.paddr, seg.filesz, seg.filesz, seg.flags)
        out.append(seg)
    return out


def parse_elf(data: Image) -> ElfFile:
    """Parse and check an ELF's header and PT_LOAD segments (rules 1-4); little-endian ELF32/ELF64."""
    size = len(data)
    if size < 16 or bytes(data[:4]) != b"\x7fELF":
        raise ELFError("not an ELF file (no \\x7fELF magic)")
    elf_class, encoding = data[4], data[5]
    if elf_class not in _LAYOUTS:
        raise ELFError(f"bad ELF class (EI_CLASS is {elf_class}, neither ELFCLASS32 nor ELFCLASS64)")
    if encoding != 1:
        raise ELFError("not a little-endian ELF (EI_DATA is not ELFDATA2LSB)")
    ehsize, ehfmt, phsize, phfmt = _LAYOUTS[elf_class]
    bits = 32 if elf_class == ELFCLASS32 else 64
    if size < ehsize:
        raise ELFError(f"the ELF header is cut short: the file has {size} bytes, an ELF{bits} header {ehsize}")
    (_type, machine, _version, e_entry, e_phoff, _shoff, _flags, _ehsize, e_phentsize, e_phnum) = struct.unpack_from(
        ehfmt, data, 16
    )
    if e_phnum == 0:
        raise ELFError("ELF has no program headers (e_phnum is 0)")
    if e_phentsize != phsize:
        raise ELFError(f"e_phentsize is {e_phentsize}, but an ELF{bits} program header is {phsize} bytes")
    if e_phoff > size or e_phnum * phsize > size - e_phoff:
        raise ELFError(
            f"the program headers ({e_phnum} at offset {e_phoff:#x}) run past the end of the file ({size} bytes)"
        )
    segs: list[Segment] = []
    for i in range(e_phnum):
        fields = struct.unpack_from(phfmt, data, e_phoff + i * phsize)
        if elf_class == ELFCLASS32:
            p_type, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, p_flags, _align = fields
        else:
            p_type, p_flags, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, _align = fields
        if p_type != PT_LOAD:
            continue
        if p_filesz > p_memsz:
            raise ELFError(f"segment {i}: p_filesz {p_filesz:#x} is larger than p_memsz {p_memsz:#x}")
        if p_filesz and (p_offset > size or p_filesz > size - p_offset):
            raise ELFError(
                f"segment {i}: its data ({p_filesz:#x} bytes at offset {p_offset:#x}) runs past the end "
                f"of the file ({size} bytes)"
            )
        segs.append(Segment(i, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, p_flags))
    if not segs:
        raise ELFError("ELF has no PT_LOAD segment")
    segs = _cut_zero_tails(segs)
    if bits == 32:
        for seg in segs:
            if seg.end > 1 << 32:
                raise ELFError(
                    f"segment {seg.index} at {seg.paddr:#x} (+{seg.memsz:#x}) runs past the top of the "
                    "32-bit address space"
                )
    loaded = sorted((s for s in segs if s.memsz), key=lambda s: (s.paddr, s.index))
    for prev, seg in zip(loaded, loaded[1:], strict=False):
        if seg.paddr < prev.end:
            first, second = sorted((prev, seg), key=lambda s: s.index)
            raise ELFError(
                f"segments {first.index} ({first.paddr:#x}-{first.end:#x}) and {second.index} "
                f"({second.paddr:#x}-{second.end:#x}) overlap in physical memory"
            )
    return ElfFile(bits, machine, e_entry, tuple(segs))


def parse_elf32(data: Image) -> ElfFile:
    """An i386 ELF32 executable (what the bare-core loader and multiboot v1 load)."""
    elf = parse_elf(data)
    if elf.bits != 32:
        raise ELFError("not a 32-bit ELF (EI_CLASS is not ELFCLASS32)")
    if elf.machine != EM_386:
        raise ELFError(f"not an i386 ELF (e_machine={elf.machine})")
    return elf


class _PhysWriter(Protocol):
    """What :func:`load_elf` needs of physical memory (``softmmu.memory.PhysMemory``)."""

    ram_size: int

    def write(self, paddr: int, data: bytes) -> None: ...


def load_elf(mem: _PhysWriter, data: Image) -> int:
    """The bare core's loader: PT_LOAD segments at their physical addresses; returns the entry point."""
    elf = parse_elf32(data)
    for seg in elf.segments:
        if seg.end > mem.ram_size:
            raise ELFError(
                f"segment at {seg.paddr:#x} (+{seg.memsz:#x}) does not fit in {mem.ram_size >> 20} MiB of RAM"
            )
    for seg in elf.segments:
        if seg.memsz:
            mem.write(seg.paddr, ElfFile.segment_bytes(data, seg))
    return elf.entry
