#!/usr/bin/env python3
"""64-bit code against its 32-bit form: a compute loop and a memory loop, in guest MIPS.

Usage: python benchmarks/x64_bench.py [--quick]

Each loop is written twice with the same instruction shapes, once as 32-bit
protected-mode code (EAX..EDI, dword elements) and once as 64-bit long-mode
code (RAX..R15, qword elements), assembled here with ``as`` and run on a
bare Machine set up directly (``CPU.setup_flat32`` / ``CPU.setup_long64``)
with 4 KiB pages built by this script: a 2-level table for the 32-bit form,
4 levels for the 64-bit one.  So the only difference between the two rows
of a pair is the code size the translator sees.

* ``compute``: add, xor, inc, dec, jnz on registers (the 64-bit form also
  a variant on R8-R15, which live in their own register file); both count
  down from 2^32 - 1, so the values have the same magnitudes (CPython's
  arithmetic costs more on ints of more 30-bit digits: a loop counting from
  2^64 - 1 runs ~15% slower, as would a 32-bit one on such values);
* ``memory``: a 16 KiB buffer on four scattered 4 KiB frames, read, modified
  and written back element by element (every access through the inline
  TLB compare).

Figures: warm-up (translation, first compile), then a timed run of a fixed
instruction count; MIPS = instructions / wall seconds (``--repeat N``: the
best of N, for a loaded machine).  A measurement, not a test: nothing here
asserts a speed.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from gdbemu.machine import Machine  # noqa: E402

CODE = 0x1000
V_BUF = 0x40000000
FRAMES = (0x203000, 0x201000, 0x207000, 0x205000)  # the buffer's four 4 KiB frames
PT_BASE = 0x100000  # page tables (physical)
RAM = 4 << 20

LOOPS = {
    "compute32": (
        32,
        """
        mov ecx, 0xffffffff
        xor eax, eax
        xor edx, edx
        xor ebx, ebx
        .balign 16
    1:  add eax, ecx
        xor edx, eax
        inc ebx
        dec ecx
        jnz 1b
        hlt
        """,
    ),
    "compute64": (
        64,
        """
        mov ecx, 0xffffffff
        xor eax, eax
        xor edx, edx
        xor ebx, ebx
        .balign 16
    1:  add rax, rcx
        xor rdx, rax
        inc rbx
        dec rcx
        jnz 1b
        hlt
        """,
    ),
    "compute64-r8": (
        64,
        """
        mov r9d, 0xffffffff
        xor r8d, r8d
        xor r10d, r10d
        xor r11d, r11d
        .balign 16
    1:  add r8, r9
        xor r10, r8
        inc r11
        dec r9
        jnz 1b
        hlt
        """,
    ),
    "memory32": (
        32,
        f"""
        mov ebp, 0xffffffff
        .balign 16
    2:  mov esi, {V_BUF:#x}
        mov ecx, 4096
    1:  mov eax, dword ptr [esi]
        add eax, ecx
        mov dword ptr [esi], eax
        add esi, 4
        dec ecx
        jnz 1b
        dec ebp
        jnz 2b
        hlt
        """,
    ),
    "memory64": (
        64,
        f"""
        mov ebp, 0xffffffff
        .balign 16
    2:  mov esi, {V_BUF:#x}
        mov ecx, 2048
    1:  mov rax, qword ptr [rsi]
        add rax, rcx
        mov qword ptr [rsi], rax
        add rsi, 8
        dec rcx
        jnz 1b
        dec rbp
        jnz 2b
        hlt
        """,
    ),
}


def assemble(bits: int, src: str, tmp: Path) -> bytes:
    as_path = shutil.which("as")
    if not as_path:
        raise SystemExit("GNU as not found")
    s = tmp / "loop.s"
    s.write_text(f".intel_syntax noprefix\n.code{bits}\n.text\n{src}\n")
    subprocess.run([as_path, "--64" if bits == 64 else "--32", "-o", str(tmp / "loop.o"), str(s)], check=True)
    subprocess.run(["objcopy", "-O", "binary", "-j", ".text", str(tmp / "loop.o"), str(tmp / "loop.bin")], check=True)
    return (tmp / "loop.bin").read_bytes()


def _q(m: Machine, addr: int, value: int, size: int) -> None:
    m.mem.write(addr, value.to_bytes(size, "little"))


def machine(bits: int, code: bytes) -> Machine:
    """A Machine with the code at CODE, paging on: the first 2 MiB identity-mapped and
    V_BUF on FRAMES, all with 4 KiB pages."""
    m = Machine(ram_size=RAM)
    cpu = m.cpu
    m.mem.write(CODE, code)
    if bits == 32:
        pd, pt_lo, pt_buf = PT_BASE, PT_BASE + 0x1000, PT_BASE + 0x2000
        _q(m, pd, pt_lo | 3, 4)
        _q(m, pd + 4 * (V_BUF >> 22), pt_buf | 3, 4)
        for i in range(512):
            _q(m, pt_lo + 4 * i, (i << 12) | 3, 4)
        for i, frame in enumerate(FRAMES):
            _q(m, pt_buf + 4 * i, frame | 3, 4)
        cpu.setup_flat32()
        cpu.cr[3] = pd
        cpu.cr[0] |= 1 << 31
        cpu.compute_hflags()
    else:
        cpu.setup_long64(PT_BASE)  # PML4 at PT_BASE, PDPT at PT_BASE + 0x1000 (1 GiB pages) ...
        pdpt = PT_BASE + 0x1000
        pd_lo, pt_lo, pd_buf, pt_buf = (PT_BASE + 0x2000 + 0x1000 * k for k in range(4))
        m.mem.write(pdpt, bytes(4096))  # ... replaced by 4 KiB pages
        _q(m, pdpt, pd_lo | 3, 8)
        _q(m, pdpt + 8 * (V_BUF >> 30), pd_buf | 3, 8)
        _q(m, pd_lo, pt_lo | 3, 8)
        _q(m, pd_buf, pt_buf | 3, 8)
        for i in range(512):
            _q(m, pt_lo + 8 * i, (i << 12) | 3, 8)
        for i, frame in enumerate(FRAMES):
            _q(m, pt_buf + 8 * i, frame | 3, 8)
        m.cpu.tlb.flush()
    cpu.eip = CODE
    cpu.regs[4] = 0x90000
    return m


def measure(name: str, insns: int, tmp: Path) -> float:
    bits, src = LOOPS[name]
    m = machine(bits, assemble(bits, src, tmp))
    m.run(max_insns=300_000)  # warm-up: translation and the first compile
    start = m.cpu.icount
    t0 = time.perf_counter()
    m.run(max_insns=insns)
    dt = time.perf_counter() - t0
    return (m.cpu.icount - start) / dt / 1e6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a tenth of the instructions")
    ap.add_argument("--repeat", type=int, default=1, help="runs per loop (the best is shown)")
    args = ap.parse_args(argv)
    insns = 3_000_000 if args.quick else 30_000_000
    print(f"{'loop':<14} {'bits':>4} {'MIPS':>8}")
    with tempfile.TemporaryDirectory() as d:
        for name, (bits, _src) in LOOPS.items():
            best = max(measure(name, insns, Path(d)) for _ in range(args.repeat))
            print(f"{name:<14} {bits:>4} {best:8.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
