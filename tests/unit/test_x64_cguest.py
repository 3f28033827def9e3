"""A gcc-compiled 64-bit workload in long mode against the same C run natively on the host.

``tests/support/guests64/work.c`` is built twice at test time: for the host
(the reference: this machine is x86-64, so the same integer semantics) and
freestanding for the guest (``-mgeneral-regs-only``: no SSE), linked at
1 MiB or, with ``-mcmodel=kernel``, at 0xFFFFFFFF80100000 in the top 2 GiB as
a 64-bit kernel is.  The guest runs from ``_start`` (set RSP, call work,
hlt) on a long-mode Machine (``CPU.setup_long64`` plus an alias of the top
2 GiB onto physical 0); its ``results[]`` must equal the host's.  What gcc
emits at -O0 and -O2 covers the integer translator broadly (see work.c).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from gdbemu.machine import Machine

GUESTS = Path(__file__).resolve().parent.parent / "support" / "guests64"
PT = 0x80000
LOAD = 0x100000
HIGH = 0xFFFFFFFF80000000

pytestmark = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("gcc", "as", "ld", "objcopy", "nm")), reason="gcc/binutils not installed"
)

START = """
.intel_syntax noprefix
.code64
.globl _start
_start:
    lea rsp, [rip + stack_top]
    call work
    hlt
.bss
.balign 16
.skip 0x10000
stack_top:
"""

MAIN = r"""
#include <stdio.h>
extern unsigned long results[64];
void work(void);
int main(void) { work(); for (int i = 0; i < 64; i++) printf("%lx\n", results[i]); return 0; }
"""


def _run(cmd: list[str]) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return proc.stdout


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> list[int]:
    d = tmp_path_factory.mktemp("native")
    (d / "main.c").write_text(MAIN)
    exe = d / "native"
    _run(["gcc", "-O2", "-ffreestanding", "-fno-builtin", "-c", str(GUESTS / "work.c"), "-o", str(d / "work.o")])
    _run(["gcc", "-O2", str(d / "main.c"), str(d / "work.o"), "-o", str(exe)])
    return [int(x, 16) for x in _run([str(exe)]).split()]


def build_guest(d: Path, opt: str, high: bool) -> tuple[bytes, int, int]:
    """(flat image, its link address, the address of results[])."""
    base = HIGH + LOAD if high else LOAD
    cflags = [opt, "-m64", "-ffreestanding", "-fno-builtin", "-fno-pic", "-fno-pie", "-nostdlib"]
    cflags += ["-mgeneral-regs-only", "-mno-red-zone", "-fno-stack-protector"]
    cflags += ["-mcmodel=kernel"] if high else []
    (d / "start.s").write_text(START)
    _run(["as", "--64", "-o", str(d / "start.o"), str(d / "start.s")])
    _run(["gcc", *cflags, "-c", str(GUESTS / "work.c"), "-o", str(d / "work.o")])
    elf = d / "guest.elf"
    _run(["ld", "-m", "elf_x86_64", "-N", "-e", "_start", f"-Ttext={base:#x}", "-o", str(elf),
          str(d / "start.o"), str(d / "work.o")])  # fmt: skip
    _run(["objcopy", "-O", "binary", str(elf), str(d / "guest.bin")])
    syms = {}
    for line in _run(["nm", str(elf)]).splitlines():
        parts = line.split()
        if len(parts) == 3:
            syms[parts[2]] = int(parts[0], 16)
    return (d / "guest.bin").read_bytes(), base, syms["results"]


@pytest.mark.parametrize(
    ("opt", "high", "tier"),
    [("-O0", False, None), ("-O2", False, None), ("-O2", True, None), ("-O2", False, 1), ("-O1", True, 2)],
    ids=["O0", "O2", "O2-kernel-model-high-half", "O2-tier1-only", "O1-high-tier2-only"],
)
def test_c_workload_matches_native(
    opt: str, high: bool, tier: int | None, reference: list[int], tmp_path: Path
) -> None:
    image, base, results = build_guest(tmp_path, opt, high)
    m = Machine(ram_size=8 << 20)
    m.translator.force_tier = tier
    cpu = m.cpu
    cpu.setup_long64(PT)
    hi = PT + 0x2000
    m.mem.write(hi, bytes(4096))
    m.mem.write(hi + 8 * 510, (0x87).to_bytes(8, "little"))
    m.mem.write(PT + 8 * 511, (hi | 7).to_bytes(8, "little"))
    m.mem.write(LOAD, image)
    cpu.eip = base
    stop = m.run(max_insns=60_000_000)
    assert "halt" in str(stop.kind).lower(), stop
    assert cpu.eip == base + 13  # just after the hlt in _start (lea 7, call 5, hlt 1)
    phys = results - base + LOAD
    got = [int.from_bytes(m.mem.read(phys + 8 * i, 8), "little") for i in range(64)]
    assert got == reference
