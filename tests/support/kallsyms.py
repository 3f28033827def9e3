"""Symbol addresses of a stripped x86-64 Linux vmlinux, read from its own kallsyms tables.

Debian's image package ships a stub ``System.map`` (one line: "The real
System.map is in the linux-image-<version>-dbg package", an 819 MiB
download) and its vmlinux has no symbol table, but the kernel carries every
symbol for ``/proc/kallsyms``.  ``kallsyms(vmlinux)`` decodes those tables
as scripts/kallsyms.c (Linux 6.1) lays them out in .rodata, each label
8-byte aligned::

    kallsyms_offsets        int32[N]  (base relative; absolute per-cpu: >= 0 absolute, else base - 1 - off)
    kallsyms_relative_base  u64       (_text)
    kallsyms_num_syms       u32       N
    kallsyms_names          per symbol: a length byte (two when >= 0x80) and token indices
    kallsyms_markers        u32[ceil(N / 256)]
    kallsyms_seqs_of_names  3 bytes a symbol (6.2+, and Debian's 6.1 stable updates)
    kallsyms_token_table    256 NUL-terminated tokens (the digits are the single-character tokens 48..57)
    kallsyms_token_index    u16[256]

and returns ``{name: address}`` with the type letter in ``types``.  The
result is written as a System.map (``write_system_map``) for the gdb tests.
Everything is checked while decoding (markers, the token index, the table
boundaries); a layout that does not fit raises ``ValueError``.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

from gdbemu.boot.elf import parse_elf

DIGITS = b"".join(bytes([c]) + b"\0" for c in b"0123456789")


@dataclass
class KallSyms:
    addresses: dict[str, int] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)


def _align8(n: int) -> int:
    return (n + 7) & ~7


def _tokens(data: bytes) -> tuple[int, list[bytes]]:
    """(file offset of kallsyms_token_table, the 256 tokens)."""
    for m in re.finditer(re.escape(DIGITS), data):
        digits = m.start()
        for pos in range(_align8(digits), min(len(data) - 512, digits + 0x2000), 8):
            index = struct.unpack_from("<256H", data, pos)
            if index[0] != 0 or any(b <= a for a, b in zip(index, index[1:], strict=False)):
                continue
            table = digits - index[48]
            if table < 0 or table % 8:
                continue
            toks = [data[table + off : data.index(b"\0", table + off)] for off in index]
            if [toks[c] for c in range(48, 58)] != [bytes([c]) for c in range(48, 58)]:
                continue
            if _align8(table + index[255] + len(toks[255]) + 1) != pos:
                continue
            return table, toks
    raise ValueError("no kallsyms_token_table/kallsyms_token_index found")


def kallsyms(vmlinux: bytes) -> KallSyms:
    """The symbols of ``vmlinux`` (module docstring)."""
    elf = parse_elf(vmlinux)
    text = min(s.vaddr for s in elf.segments if s.flags & 1)  # _text: the first executable segment
    table, toks = _tokens(vmlinux)
    base_bytes = struct.pack("<Q", text)
    for m in re.finditer(re.escape(base_bytes), vmlinux[:table]):
        pos = m.start()
        if pos % 8:
            continue
        (n,) = struct.unpack_from("<I", vmlinux, pos + 8)
        if not 1000 <= n <= 10_000_000:
            continue
        names = pos + 16
        nmarkers = (n + 255) // 256
        offsets_at = pos - _align8(4 * n)
        if offsets_at < 0:
            continue
        out = KallSyms()
        offsets = struct.unpack_from(f"<{n}i", vmlinux, offsets_at)
        starts = []
        at = names
        for i in range(n):
            if i % 256 == 0:
                starts.append(at - names)
            length = vmlinux[at]
            at += 1
            if length & 0x80:
                length = (length & 0x7F) | (vmlinux[at] << 7)
                at += 1
            name = b"".join(toks[b] for b in vmlinux[at : at + length]).decode("ascii", errors="replace")
            at += length
            off = offsets[i]
            addr = off if off >= 0 else text - 1 - off
            out.types.setdefault(name[1:], name[0])
            out.addresses.setdefault(name[1:], addr)
            if at >= table:
                break
        markers_at = _align8(at)
        if markers_at + 4 * nmarkers > table:
            continue
        markers = list(struct.unpack_from(f"<{nmarkers}I", vmlinux, markers_at))
        after = _align8(markers_at + 4 * nmarkers)
        # 6.1 as released: the token table follows the markers; later layouts (and Debian's 6.1
        # stable) put kallsyms_seqs_of_names (3 bytes a symbol) between them.
        if markers == starts and table in (after, _align8(after + 3 * n)):
            return out
    raise ValueError("no kallsyms_relative_base/kallsyms_num_syms block fits the token table")


def write_system_map(syms: KallSyms, path: Path) -> None:
    """``address type name`` lines sorted by address, as System.map."""
    rows = sorted((a, syms.types[n], n) for n, a in syms.addresses.items())
    path.write_text("".join(f"{a:016x} {t} {n}\n" for a, t, n in rows))
