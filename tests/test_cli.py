"""The `gdbemu` command end to end: the demo kernel, exit codes, bad arguments."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "gdbemu" / "demo"


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "gdbemu.cli", *args], capture_output=True, timeout=timeout, env=env, cwd=REPO
    )


def test_demo_kernel_runs_with_no_arguments():
    proc = run_cli()
    out = proc.stdout.decode()
    assert "gdbemu demo kernel" in out
    assert "2 3 5 7 11 13" in out and "1993 1997 1999" in out
    assert out.rstrip().endswith("done.")
    assert proc.returncode == 1  # isa-debug-exit with value 0 -> (0 << 1) | 1


def test_bad_argument_is_one_line_and_exit_2():
    proc = run_cli("-m", "lots")
    assert proc.returncode == 2
    err = proc.stderr.decode().strip()
    assert err.count("\n") == 0 and err.startswith("gdbemu:")
    assert "Traceback" not in err


def test_missing_kernel_file(tmp_path):
    proc = run_cli(str(tmp_path / "nope.elf"))
    assert proc.returncode == 2
    assert "no such file" in proc.stderr.decode()


def test_not_an_elf_names_what_is_missing(tmp_path):
    bogus = tmp_path / "kernel.bin"
    bogus.write_bytes(b"MZ" + bytes(100))
    proc = run_cli(str(bogus))
    assert proc.returncode == 2
    assert "not an ELF" in proc.stderr.decode()
    assert "Traceback" not in proc.stderr.decode()


def test_qemu_style_options_are_accepted():
    proc = run_cli(
        "-kernel",
        str(DEMO / "demo.elf"),
        "-accel",
        "tcg",
        "-display",
        "none",
        "-nographic",
        "-device",
        "isa-debug-exit,iobase=0xf4,iosize=0x04",
        "-m",
        "64M",
    )
    assert proc.returncode == 1
    assert b"done." in proc.stdout


@pytest.mark.skipif(shutil.which("as") is None or shutil.which("ld") is None, reason="GNU binutils not installed")
def test_demo_binary_rebuilds_to_the_same_bytes(tmp_path):
    """The committed demo.elf is exactly what its source builds to (no stale binary ships)."""
    obj = tmp_path / "demo.o"
    elf = tmp_path / "demo.elf"
    subprocess.run(["as", "--32", str(DEMO / "demo.S"), "-o", str(obj)], check=True)
    subprocess.run(
        ["ld", "-m", "elf_i386", "-T", str(DEMO / "demo.ld"), "--build-id=none", str(obj), "-o", str(elf)], check=True
    )
    assert elf.read_bytes() == (DEMO / "demo.elf").read_bytes()


@pytest.mark.skipif(shutil.which("qemu-system-i386") is None, reason="qemu-system-i386 not installed")
def test_demo_output_and_exit_code_match_qemu():
    """QEMU is the behavioural reference: same console bytes, same exit status."""
    qemu = subprocess.run(
        ["qemu-system-i386", "-kernel", str(DEMO / "demo.elf"), "-display", "none", "-debugcon", "stdio",
         "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-no-reboot"],
        capture_output=True, timeout=60,
    )
    ours = run_cli("-kernel", str(DEMO / "demo.elf"))
    assert ours.stdout == qemu.stdout
    assert ours.returncode == qemu.returncode
