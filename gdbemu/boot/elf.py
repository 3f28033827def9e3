"""A minimal ELF32 loader: PT_LOAD segments at their physical addresses.

Errors name what is wrong with the file, so the command line can print them
as one line instead of a traceback.
"""

from __future__ import annotations

import struct


class ELFError(ValueError):
    pass


def parse_elf32(data: bytes):
    """Return (entry, [(paddr, vaddr, file_bytes, memsz)]) of an i386 ELF executable."""
    if data[:4] != b"\x7fELF":
        raise ELFError("not an ELF file (no \\x7fELF magic)")
    if data[4] != 1:
        raise ELFError("not a 32-bit ELF (EI_CLASS is not ELFCLASS32)")
    if data[5] != 1:
        raise ELFError("not a little-endian ELF")
    (e_type, e_machine, _v, e_entry, e_phoff, _sh, _fl, _eh, e_phentsize, e_phnum) = struct.unpack_from(
        "<HHIIIIIHHH", data, 16
    )
    if e_machine != 3:
        raise ELFError(f"not an i386 ELF (e_machine={e_machine})")
    segs = []
    for i in range(e_phnum):
        off = e_phoff + i * e_phentsize
        p_type, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, _f, _a = struct.unpack_from("<IIIIIIII", data, off)
        if p_type != 1:  # PT_LOAD
            continue
        segs.append((p_paddr, p_vaddr, data[p_offset : p_offset + p_filesz], p_memsz))
    if not segs:
        raise ELFError("ELF has no PT_LOAD segment")
    return e_entry, segs


def load_elf(mem, data: bytes) -> int:
    entry, segs = parse_elf32(data)
    for paddr, _vaddr, body, memsz in segs:
        if paddr + memsz > mem.ram_size:
            raise ELFError(f"segment at {paddr:#x} (+{memsz:#x}) does not fit in {mem.ram_size >> 20} MiB of RAM")
        mem.write(paddr, body + bytes(memsz - len(body)))
    return entry
