"""A C guest built with ``gcc -O2 -msse2`` (and ``-msse4.2 -mpopcnt -mlzcnt``), run on gdbemu and on QEMU.

tests/support/simd/: start.S (multiboot v1: CR4.OSFXSR/OSXMMEXCPT set, CR0.EM
clear) and simd.c, integer code gcc 12 vectorizes at -O2 (copies, fills,
sums, min/max, compares, shifts, byte and word maps, 64-bit lanes), a struct
copy, bit counts and a string scan.  The test checks that the compiler did
emit SIMD (the disassembly holds movdqa/paddd/pxor ...), then compares the
transcripts on port 0xE9 with QEMU's, in both translation tiers.

lazyfpu.c: lazy FPU context switching between two tasks with #NM (the
switch sets CR0.TS, the #NM handler does CLTS, FXSAVE of the previous
owner, FXRSTOR of the current task), XMM and MMX values kept across
switches; compared with QEMU likewise.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from support import build

from gdbemu.machine import Machine

SIMD_DIR = Path(__file__).resolve().parents[1] / "support" / "simd"
VARIANTS = {"sse2": ["-msse2"], "sse42": ["-msse4.2", "-mpopcnt", "-mlzcnt"]}
EXPECT_IN_CODE = {"sse2": ("movdqa", "paddd", "pxor", "psrldq"), "sse42": ("pmulld", "popcnt", "lzcnt", "pminsw")}


def build_simd(out: Path, variant: str, name: str = "simd") -> Path:
    try:
        tools = build.toolchain("gcc", "ld")
    except build.ToolchainMissingError as exc:
        pytest.skip(str(exc))
    out.mkdir(parents=True, exist_ok=True)
    cflags = ["-m32", "-O2", *VARIANTS[variant], "-ffreestanding", "-nostdlib", "-fno-pic", "-fno-stack-protector"]
    build._run([tools["gcc"], *cflags, "-c", "-o", str(out / f"{name}.o"), str(SIMD_DIR / f"{name}.c")])
    build._run([tools["gcc"], "-m32", "-c", "-o", str(out / "start.o"), str(SIMD_DIR / "start.S")])
    elf = out / f"{name}.elf"
    ld = [tools["ld"], "-m", "elf_i386", "-T", str(SIMD_DIR / "link.ld"), "-o", str(elf)]
    build._run([*ld, str(out / "start.o"), str(out / f"{name}.o")])
    return elf


def run_gdbemu(elf: Path, tier: int | None = None) -> tuple[int | None, bytes]:
    m = Machine(32 << 20)
    if tier is not None:
        m.translator.force_tier = tier
    m.load_elf(str(elf))
    stop = m.run(max_insns=20_000_000)
    assert stop.kind == "exit", (stop, bytes(m.debug_output))
    return m.exit_code, bytes(m.debug_output)


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def simd_elf(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    variant = request.param
    return variant, build_simd(tmp_path_factory.mktemp(f"simd_{variant}"), variant)


def test_compiler_emitted_simd(simd_elf: tuple[str, Path]) -> None:
    variant, elf = simd_elf
    objdump = shutil.which("objdump")
    if objdump is None:
        pytest.skip("objdump not installed")
    text = subprocess.run([objdump, "-d", str(elf)], capture_output=True, text=True, check=True).stdout
    for mnemonic in EXPECT_IN_CODE[variant]:
        assert f"\t{mnemonic} " in text or f"\t{mnemonic}\n" in text, mnemonic


@pytest.mark.parametrize("tier", [1, 2])
def test_simd_guest_runs(simd_elf: tuple[str, Path], tier: int) -> None:
    _, elf = simd_elf
    code, out = run_gdbemu(elf, tier)
    assert code == 1, out  # main returned 0: isa-debug-exit status (0 << 1) | 1
    text = out.decode()
    assert text.startswith("simd guest\n") and text.endswith("done\n"), text
    assert "strlen=00000000000000fe" in text and "sum32=" in text


@pytest.mark.skipif(shutil.which("qemu-system-i386") is None, reason="qemu-system-i386 not installed")
def test_simd_guest_matches_qemu(simd_elf: tuple[str, Path]) -> None:
    _, elf = simd_elf
    status, qemu_out = build.run_qemu(elf, extra=["-cpu", "max"])
    code, out = run_gdbemu(elf)
    assert (status, qemu_out) == (code, out)


LAZY_EXPECTED = (
    b"lazyfpu\ntask0_rounds=00000014\ntask0_fails=00000000\n"
    b"task1_rounds=00000014\ntask1_fails=00000000\nnm_faults=0000002f\n"
)


@pytest.fixture(scope="module")
def lazy_elf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_simd(tmp_path_factory.mktemp("lazyfpu"), "sse2", "lazyfpu")


@pytest.mark.parametrize("tier", [1, 2])
def test_lazy_fpu_switching_with_nm(lazy_elf: Path, tier: int) -> None:
    code, out = run_gdbemu(lazy_elf, tier)
    assert (code, out) == (1, LAZY_EXPECTED)


@pytest.mark.skipif(shutil.which("qemu-system-i386") is None, reason="qemu-system-i386 not installed")
def test_lazy_fpu_matches_qemu(lazy_elf: Path) -> None:
    status, qemu_out = build.run_qemu(lazy_elf, extra=["-cpu", "max"])
    assert (status, qemu_out) == run_gdbemu(lazy_elf)
