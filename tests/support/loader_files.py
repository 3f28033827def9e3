"""Builders of kernel files for the loader tests and the loader fuzzer: ELF32/ELF64 and a.out-kludge
multiboot images, with every header field settable (so a test can make it wrong)."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

MB_MAGIC = 0x1BADB002
# A guest that writes "ok\n" to the debug console and exits through isa-debug-exit (code 0x21).
OK_CODE = bytes.fromhex("b06fe6e9b06be6e9b00ae6e9b021e6f4f4")  # mov al,'o'; out 0xe9,al; ... out 0xf4,al; hlt


def mb_header(flags: int = 0, *fields: int, checksum: int | None = None) -> bytes:
    """A multiboot v1 header; ``fields`` are the a.out-kludge addresses when flags bit 16 is set."""
    cs = (-(MB_MAGIC + flags)) & 0xFFFFFFFF if checksum is None else checksum
    return struct.pack("<III", MB_MAGIC, flags, cs) + struct.pack(f"<{len(fields)}I", *(f & 0xFFFFFFFF for f in fields))


@dataclass
class Phdr:
    """One program header; ELF32 and ELF64 share the fields (packed in each class's order)."""

    type: int = 1
    offset: int = 0x1000
    vaddr: int = 0x100000
    paddr: int = 0x100000
    filesz: int = 0
    memsz: int = 0
    flags: int = 5  # R+X
    align: int = 0x1000


@dataclass
class Elf:
    """An ELF file: header fields, program headers, and bytes at chosen file offsets."""

    bits: int = 32
    machine: int = 3
    entry: int = 0x100000
    phoff: int = 0x40
    phentsize: int | None = None  # None: the class's size
    phnum: int | None = None  # None: len(phdrs)
    phdrs: list[Phdr] = field(default_factory=list)
    blobs: list[tuple[int, bytes]] = field(default_factory=list)  # (file offset, bytes)
    encoding: int = 1
    size: int | None = None  # pad/truncate the file to this many bytes

    def build(self) -> bytes:
        e64 = self.bits == 64
        phsize = 56 if e64 else 32
        phentsize = phsize if self.phentsize is None else self.phentsize
        phnum = len(self.phdrs) if self.phnum is None else self.phnum
        ident = b"\x7fELF" + bytes([2 if e64 else 1, self.encoding, 1]) + bytes(9)
        if e64:
            head = ident + struct.pack(
                "<HHIQQQIHHHHHH", 2, self.machine, 1, self.entry, self.phoff, 0, 0, 64, phentsize, phnum, 0, 0, 0
            )
        else:
            head = ident + struct.pack(
                "<HHIIIIIHHHHHH", 2, self.machine, 1, self.entry, self.phoff, 0, 0, 52, phentsize, phnum, 0, 0, 0
            )
        out = bytearray(head)
        table = bytearray()
        for p in self.phdrs:
            if e64:
                table += struct.pack(
                    "<IIQQQQQQ", p.type, p.flags, p.offset, p.vaddr, p.paddr, p.filesz, p.memsz, p.align
                )
            else:
                table += struct.pack(
                    "<IIIIIIII", p.type, p.offset, p.vaddr, p.paddr, p.filesz, p.memsz, p.flags, p.align
                )
        blobs = [*self.blobs]
        if table and self.phoff < (1 << 24):
            blobs.insert(0, (self.phoff, bytes(table)))
        for off, data in blobs:
            if len(out) < off + len(data):
                out += bytes(off + len(data) - len(out))
            out[off : off + len(data)] = data
        if self.size is not None:
            out = out[: self.size] + bytes(max(0, self.size - len(out)))
        return bytes(out)


def multiboot_elf(code: bytes = OK_CODE, **changes: object) -> Elf:
    """A good multiboot ELF32 kernel: one PT_LOAD at 1 MiB holding the multiboot header, then ``code``.

    The entry point is the code, right after the header."""
    body = mb_header(0) + code
    elf = Elf(entry=0x10000C, phdrs=[Phdr(filesz=len(body), memsz=len(body) + 0x100)], blobs=[(0x1000, body)])
    for name, value in changes.items():
        setattr(elf, name, value)
    return elf


def aout_kernel(
    load_addr: int = 0x100000,
    load_end_addr: int = 0,
    bss_end_addr: int = 0,
    entry_addr: int | None = None,
    header_addr: int | None = None,
    code: bytes = OK_CODE,
) -> bytes:
    """A flat a.out-kludge kernel: the header (32 bytes) at file offset 0, then ``code``."""
    header_addr = load_addr if header_addr is None else header_addr
    entry_addr = load_addr + 32 if entry_addr is None else entry_addr
    return mb_header(1 << 16, header_addr, load_addr, load_end_addr, bss_end_addr, entry_addr) + code
