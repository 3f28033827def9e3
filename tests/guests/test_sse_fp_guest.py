"""C compiled by gcc -m32 -O2 -msse4.1 -mfpmath=sse into SSE code, run on gdbemu (both tiers) and on QEMU.

tests/support/fpu/sse_float.c prints the bits of every result and the MXCSR
each operation leaves on port 0xE9: scalar double/float arithmetic in every
rounding mode, conversions, comparisons, the packed forms of SSE to SSE4.1,
the six flags one by one, DAZ and FTZ.  The transcripts must be identical,
but for MXCSR.DE: QEMU (7.2) leaves the denormal-operand flag clear where
the SDM (and gdbemu) set it, for a denormal operand that DAZ does not
flush; DE is checked against the SDM by tests/unit/test_simd_fp.py.

The guest needs the SSE moves and LDMXCSR/STMXCSR (core/ops/simd_mov.py and
simd_state.py, another branch of this work): without them the test skips.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from support.build import run_qemu

from gdbemu.core.ops import OPS, load_all
from gdbemu.machine import Machine

FPU_DIR = Path(__file__).resolve().parents[1] / "support" / "fpu"
CFLAGS = ["-m32", "-ffreestanding", "-nostdlib", "-fno-pic", "-fno-stack-protector", "-fno-builtin", "-O2"]
# main() stays in .text (not .text.startup), so the multiboot header of sse_start.s comes first
SSE_FLAGS = ["-msse4.1", "-mfpmath=sse", "-fno-math-errno", "-fno-reorder-functions"]

pytestmark = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("gcc", "as", "ld")), reason="gcc and binutils are needed"
)


def build(tmp: Path) -> Path:
    objs = []
    for src in (FPU_DIR / "sse_start.s", FPU_DIR / "sse_float.c"):
        obj = tmp / (src.stem + ".o")
        cmd = ["as", "--32"] if src.suffix == ".s" else ["gcc", *CFLAGS, *SSE_FLAGS, "-c"]
        proc = subprocess.run([*cmd, str(src), "-o", str(obj)], capture_output=True, text=True)
        if proc.returncode:
            pytest.skip(f"cannot build {src.name}: {proc.stderr[-400:]}")
        objs.append(str(obj))
    elf = tmp / "sse_float.elf"
    subprocess.run(
        ["ld", "-m", "elf_i386", "-Ttext=0x100000", "-e", "_start", "-o", str(elf), *objs],
        check=True,
        capture_output=True,
    )
    return elf


def _without_de(text: str) -> str:
    """MXCSR lines with bit 1 (DE) cleared (module docstring)."""
    return re.sub(r"(mxcsr=)([0-9a-f]{8})", lambda m: m[1] + f"{int(m[2], 16) & ~2:08x}", text)


@pytest.mark.parametrize("tier", [1, 2])
def test_sse_c_guest_matches_qemu(tmp_path: Path, tier: int) -> None:
    load_all()
    if not {"0f28", "0f29", "f20f10", "ldmxcsr", "stmxcsr"} <= set(OPS):
        pytest.skip("the SSE moves and LDMXCSR/STMXCSR are not in this build")
    elf = build(tmp_path)
    m = Machine(32 << 20)
    m.translator.force_tier = tier
    m.load_elf(str(elf))
    stop = m.run(max_insns=5_000_000)
    assert stop.kind == "exit" and m.exit_code == 1, (stop, m.debug_output)
    got = bytes(m.debug_output).decode()
    assert "div=3fd5555555555555" in got and "f_ze_mxcsr=00001f84" in got, got
    assert "f_de_mxcsr=00001fa2" in got  # DE and PE: a denormal operand, an inexact sum
    if shutil.which("qemu-system-i386") is None:
        pytest.skip("qemu-system-i386 not installed (gdbemu's transcript checked above)")
    _rc, want = run_qemu(elf, extra=["-cpu", "max"])
    assert _without_de(got) == _without_de(want.decode())
