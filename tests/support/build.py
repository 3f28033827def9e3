"""Assemble and link the guest programs under tests/guests/ (and benchmarks/).

Guests are GNU as sources built at test time so that no binary is committed
and the sources stay the single truth.  Each source `.include`s lib.inc and is
linked as one RWX segment at 1 MiB (``ld -N``): the guests rewrite their own
code, and paging is what protects memory in them, not the ELF flags.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

GUEST_DIR = Path(__file__).resolve().parent / "guests"
LOAD_ADDR = 0x100000


class ToolchainMissingError(RuntimeError):
    """`as` or `ld` is not on PATH; callers turn this into a pytest skip."""


def toolchain() -> tuple[str, str]:
    """Return the paths of `as` and `ld`, or raise ToolchainMissingError with a reason."""
    as_path = shutil.which("as")
    ld_path = shutil.which("ld")
    if not as_path or not ld_path:
        missing = [n for n, p in (("as", as_path), ("ld", ld_path)) if not p]
        raise ToolchainMissingError(
            f"GNU binutils not found ({', '.join(missing)} missing); install binutils to build the guest programs"
        )
    return as_path, ld_path


def _ld_accepts(ld_path: str, flag: str) -> bool:
    """Probe an ld option, because --no-warn-rwx-segments only exists in binutils >= 2.39."""
    proc = subprocess.run([ld_path, flag, "--version"], capture_output=True, text=True)
    return proc.returncode == 0


def build(
    source: Path | str,
    out_dir: Path,
    defsyms: dict[str, int] | None = None,
    name: str | None = None,
) -> Path:
    """Assemble `source` (a path, or a guest name under tests/guests/) into out_dir/NAME.elf.

    defsyms become ``as --defsym`` values (the benchmarks size their loops this
    way).  Errors from as/ld are raised with their full output so a broken
    guest is diagnosable from the test log.
    """
    as_path, ld_path = toolchain()
    src = Path(source)
    if not src.suffix:
        src = GUEST_DIR / f"{src}.s"
    stem = name or src.stem
    out_dir.mkdir(parents=True, exist_ok=True)
    obj = out_dir / f"{stem}.o"
    elf = out_dir / f"{stem}.elf"
    as_cmd = [as_path, "--32", "-I", str(GUEST_DIR), "-I", str(src.parent)]
    for key, value in (defsyms or {}).items():
        as_cmd += ["--defsym", f"{key}={value}"]
    as_cmd += ["-o", str(obj), str(src)]
    ld_cmd = [ld_path, "-m", "elf_i386", "-N", f"-Ttext=0x{LOAD_ADDR:x}", "-e", "_start"]
    if _ld_accepts(ld_path, "--no-warn-rwx-segments"):
        ld_cmd.append("--no-warn-rwx-segments")
    ld_cmd += ["-o", str(elf), str(obj)]
    for cmd in (as_cmd, ld_cmd):
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return elf


def symbols(elf: Path) -> dict[str, int]:
    """Symbol table of a built guest (via nm), so tests can name guest addresses."""
    nm = shutil.which("nm")
    if not nm:
        return {}
    proc = subprocess.run([nm, str(elf)], capture_output=True, text=True, check=True)
    table: dict[str, int] = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3:
            table[parts[2]] = int(parts[0], 16)
    return table


def run_qemu(elf: Path, timeout: float = 60.0, extra: list[str] | None = None, accel: str = "tcg") -> tuple[int, bytes]:
    """Boot a guest on qemu-system-i386 (the behavioural reference) and return
    (exit status, debugcon bytes).  Used to validate guests, not the core.

    TCG is asked for explicitly: it is the design gdbemu follows (softmmu TLB,
    translated blocks), it behaves the same on every host, and QEMU must not
    pick KVM where /dev/kvm happens to exist (the benchmark compares
    emulators, and a nested KVM may not even run the guests)."""
    import tempfile

    qemu = shutil.which("qemu-system-i386")
    if not qemu:
        raise FileNotFoundError("qemu-system-i386 not on PATH")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "debugcon.txt"
        cmd = [
            qemu,
            "-nodefaults",
            "-display",
            "none",
            "-no-reboot",
            "-m",
            "32",
            "-accel",
            accel,
            "-kernel",
            str(elf),
            "-debugcon",
            f"file:{out}",
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=0x04",
        ] + (extra or [])
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout)
        data = out.read_bytes() if out.exists() else b""
    return proc.returncode, data


def main(argv: list[str] | None = None) -> int:
    """Build one guest and run it on the core (default) or on QEMU, printing its
    transcript: the quickest way to reproduce a failing guest test by hand."""
    import argparse
    import sys
    import tempfile

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("guest", help="a name under tests/guests/ (paging, smc, ...) or a path to a .s file")
    ap.add_argument("--qemu", action="store_true", help="run on qemu-system-i386 instead of gdbemu")
    ap.add_argument("--max-insns", type=int, default=50_000_000)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        elf = build(args.guest, Path(tmp))
        if args.qemu:
            status, out = run_qemu(elf)
            sys.stdout.write(out.decode("latin-1"))
            print(f"[qemu exit status {status}]")
            return 0 if status == 1 else 1
        sys.path.insert(0, str(GUEST_DIR.parent.parent))
        from gdbemu.machine import Machine

        m = Machine(ram_size=32 << 20)
        m.load_elf(str(elf))
        stop = m.run(max_insns=args.max_insns)
        sys.stdout.write(bytes(m.debug_output).decode("latin-1"))
        print(f"[gdbemu {stop}; exit_code={m.exit_code}; icount={m.cpu.icount}; eip={m.cpu.eip:#x}]")
        print(f"[stats {m.stats()}]")
        return 0 if m.exit_code == 1 else 1


if __name__ == "__main__":
    raise SystemExit(main())
