"""C compiled by gcc -m32 -O2 -ffreestanding into x87 code, run on gdbemu (both tiers) and on QEMU.

tests/support/fpu/float.c prints the bits of every result on port 0xE9:
divisions, square roots, polynomial evaluation, denormal and overflowing
products, float/double/long double conversions, integer conversions through
FNSTCW/FLDCW, comparisons, and two accumulating loops.  The transcripts must be
identical.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from support.build import run_qemu

from gdbemu.machine import Machine

FPU_DIR = Path(__file__).resolve().parents[1] / "support" / "fpu"
CFLAGS = ["-m32", "-ffreestanding", "-nostdlib", "-fno-pic", "-fno-stack-protector", "-fno-builtin", "-O2"]

pytestmark = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("gcc", "as", "ld")), reason="gcc and binutils are needed"
)


def build(tmp: Path, source: str, extra: list[str]) -> Path:
    objs = []
    for src in (FPU_DIR / "start.s", FPU_DIR / source):
        obj = tmp / (src.stem + ".o")
        cmd = ["as", "--32"] if src.suffix == ".s" else ["gcc", *CFLAGS, *extra, "-c"]
        proc = subprocess.run([*cmd, str(src), "-o", str(obj)], capture_output=True, text=True)
        if proc.returncode:
            pytest.skip(f"cannot build {src.name}: {proc.stderr[-400:]}")
        objs.append(str(obj))
    elf = tmp / (Path(source).stem + ".elf")
    subprocess.run(
        ["ld", "-m", "elf_i386", "-Ttext=0x100000", "-e", "_start", "-o", str(elf), *objs],
        check=True,
        capture_output=True,
    )
    return elf


def run_gdbemu(elf: Path, tier: int) -> str:
    m = Machine(32 << 20)
    m.translator.force_tier = tier
    m.load_elf(str(elf))
    stop = m.run(max_insns=5_000_000)
    assert stop.kind == "exit" and m.exit_code == 1, (stop, m.debug_output)
    return bytes(m.debug_output).decode()


@pytest.mark.parametrize("tier", [1, 2])
def test_x87_c_guest_matches_qemu(tmp_path: Path, tier: int) -> None:
    elf = build(tmp_path, "float.c", ["-fno-math-errno", "-mno-sse"])
    got = run_gdbemu(elf, tier)
    assert "div=3fd5555555555555" in got and "lbasel50=" in got, got
    if shutil.which("qemu-system-i386") is None:
        pytest.skip("qemu-system-i386 not installed (gdbemu's transcript checked above)")
    _rc, want = run_qemu(elf)
    assert got == want.decode()
