"""Builders for the boot-protocol test kernels (tests/support/boot/): multiboot2, bzImage, PVH.

Each is built at test time with GNU as/ld and gcc -m32 -ffreestanding; no
binary is committed.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from support.build import CFLAGS, ToolchainMissingError, _ld_accepts, _run, toolchain

BOOT_DIR = Path(__file__).resolve().parent / "boot"

__all__ = ["BOOT_DIR", "ToolchainMissingError", "build_mb2check", "build_entrydump"]


def _ld(tools: dict[str, str], *args: str) -> None:
    cmd = [tools["ld"], "-m", "elf_i386"]
    if _ld_accepts(tools["ld"], "--no-warn-rwx-segments"):
        cmd.append("--no-warn-rwx-segments")
    _run([*cmd, *args])


def build_mb2check(out_dir: Path, elf64: bool = False, flat: bool = False) -> Path:
    """mb2check as an ELF32 (with ``elf64``, the same 32-bit code in an ELF64 file; with ``flat``,
    a raw binary that the header's address tag says how to load)."""
    tools = toolchain("gcc", "as", "ld", "objcopy")
    out_dir.mkdir(parents=True, exist_ok=True)
    c_obj, s_obj = out_dir / "mb2check.o", out_dir / "mb2boot.o"
    _run([tools["gcc"], *CFLAGS, "-c", "-o", str(c_obj), str(BOOT_DIR / "mb2check.c")])
    defs = ["-DAOUT"] if flat else []
    _run([tools["gcc"], "-m32", *defs, "-c", "-o", str(s_obj), str(BOOT_DIR / "mb2boot.S")])
    elf = out_dir / "mb2check.elf"
    _ld(tools, "-T", str(BOOT_DIR / "mb2check.ld"), "-o", str(elf), str(s_obj), str(c_obj))
    if flat:
        out = out_dir / "mb2check.bin"
        _run([tools["objcopy"], "-O", "binary", "-j", ".text", "-j", ".rodata", "-j", ".data", str(elf), str(out)])
        return out
    if not elf64:
        return elf
    out = out_dir / "mb2check64.elf"
    _run([tools["objcopy"], "-O", "elf64-x86-64", str(elf), str(out)])
    return out


def build_entrydump(out_dir: Path, kind: str) -> Path:
    """The entry-state reporter (entrydump.S) as ``kind``: "bzimage" (a protocol-2.15 bzImage whose
    protected-mode part is the reporter) or "pvh" (an ELF32 with the Xen PVH entry note)."""
    tools = toolchain("as", "ld", "objcopy")
    out_dir.mkdir(parents=True, exist_ok=True)
    obj = out_dir / f"entrydump_{kind}.o"
    defs = ["--defsym", "PVH=1"] if kind == "pvh" else []
    _run([tools["as"], "--32", *defs, "-o", str(obj), str(BOOT_DIR / "entrydump.S")])
    elf = out_dir / f"entrydump_{kind}.elf"
    _ld(tools, "-T", str(BOOT_DIR / "entrydump.ld"), "-o", str(elf), str(obj))
    if kind == "pvh":
        return elf
    pm = out_dir / "entrydump_pm.bin"
    _run([tools["objcopy"], "-O", "binary", "-j", ".text", "-j", ".data", str(elf), str(pm)])
    setup = out_dir / "setup.o"
    _run([tools["as"], "--32", "-o", str(setup), str(BOOT_DIR / "bzsetup.S")])
    setup_bin = out_dir / "setup.bin"
    _run([tools["objcopy"], "-O", "binary", "-j", ".text", str(setup), str(setup_bin)])
    image = out_dir / "bzImage"
    body = setup_bin.read_bytes()
    payload = pm.read_bytes()
    raw = bytearray(body)
    # syssize: the protected-mode part in 16-byte units (boot.rst)
    raw[0x1F4:0x1F8] = ((len(payload) + 15) // 16).to_bytes(4, "little")
    image.write_bytes(bytes(raw) + payload)
    subprocess.run(["true"], check=True)
    return image
