"""Build the C test kernels under tests/kernels/ and run them on gdbemu or QEMU.

The kernels are built at test time (no binary is committed, the sources are
the single truth) with the host's gcc, as and ld:
``gcc -m32 -ffreestanding -nostdlib -fno-pic -fno-stack-protector
-fno-builtin -O2``, linked by ``kernels/kernel.ld`` into one multiboot ELF.
Objects whose names start with ``u_`` are the ring-3 image (the linker script
places them at 0x40000000); ``lib.c`` is compiled twice, once for each side.

Run by hand to reproduce a test (prints the COM1 transcript and how the run
ended):

    python tests/kernel_build.py              # on gdbemu
    python tests/kernel_build.py --qemu       # on qemu-system-i386
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

KERNEL_DIR = Path(__file__).resolve().parent / "kernels"
REPO = KERNEL_DIR.parent.parent

CFLAGS = [
    "-m32",
    "-ffreestanding",
    "-nostdlib",
    "-fno-pic",
    "-fno-pie",
    "-fno-stack-protector",
    "-fno-builtin",
    "-O2",
    "-Wall",
    "-Wextra",
    "-std=gnu11",
    # No SSE/x87 in the kernel (it saves only the integer state on a task switch),
    # no unwind tables, no CET end-branch instructions.
    "-mgeneral-regs-only",
    "-fno-asynchronous-unwind-tables",
    "-fcf-protection=none",
]

# (source, object): the kernel side, then the ring-3 side ("u_" prefix: see kernel.ld).
MULTITASK_OBJECTS = [
    ("boot.S", "boot.o"),
    ("kernel.c", "kernel.o"),
    ("lib.c", "lib.o"),
    ("user.c", "u_user.o"),
    ("user_asm.S", "u_asm.o"),
    ("lib.c", "u_lib.o"),
]

# Symbols of the ring-3 image the kernel refers to (everything else in it is made local).
USER_EXPORTS = ["task_a", "task_b", "task_c", "user_div_insn", "user_cli_insn"]

# The COM1 transcript of a run that passed, committed next to the sources.
EXPECTED_TRANSCRIPT = KERNEL_DIR / "multitask.expected"


class ToolchainMissingError(RuntimeError):
    """gcc or a binutils tool is not on PATH; tests turn this into a skip with the reason."""


def toolchain() -> dict[str, str]:
    """Paths of gcc, as, ld and objcopy, or ToolchainMissingError naming what is missing and what provides it."""
    found = {name: shutil.which(name) for name in ("gcc", "as", "ld", "objcopy")}
    missing = [name for name, path in found.items() if not path]
    if missing:
        raise ToolchainMissingError(
            f"{', '.join(missing)} not found: the test kernels are built with gcc -m32 and GNU binutils "
            "(Debian: apt-get install gcc binutils)"
        )
    return {name: str(path) for name, path in found.items()}


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")


def build_multitask(out_dir: Path, defines: dict[str, int] | None = None) -> Path:
    """Compile and link the multitasking kernel into out_dir/multitask.elf; compiler errors are raised in full.

    ``defines`` become ``-D`` options (``{"PIT_MODE": 3}`` builds the square-wave variant); give each
    variant its own out_dir.
    """
    tools = toolchain()
    out_dir.mkdir(parents=True, exist_ok=True)
    dflags = [f"-D{key}={value}" for key, value in (defines or {}).items()]
    objs = []
    for src, obj in MULTITASK_OBJECTS:
        path = out_dir / obj
        _run([tools["gcc"], *CFLAGS, *dflags, "-I", str(KERNEL_DIR), "-c", "-o", str(path), str(KERNEL_DIR / src)])
        objs.append(str(path))
    # The ring-3 objects become one relocatable whose only global symbols are the
    # ones the kernel names, so the user copy of lib.c does not clash with the kernel's.
    kernel_objs = [o for o in objs if not Path(o).name.startswith("u_")]
    user_objs = [o for o in objs if Path(o).name.startswith("u_")]
    user_image = out_dir / "u_image.o"
    _run([tools["ld"], "-m", "elf_i386", "-r", "-o", str(user_image), *user_objs])
    _run([tools["objcopy"], *[f"--keep-global-symbol={s}" for s in USER_EXPORTS], str(user_image)])
    elf = out_dir / "multitask.elf"
    ld_cmd = [tools["ld"], "-m", "elf_i386", "-T", str(KERNEL_DIR / "kernel.ld")]
    if _ld_accepts(tools["ld"], "--no-warn-rwx-segments"):
        ld_cmd.append("--no-warn-rwx-segments")  # one segment for the kernel is fine here
    _run([*ld_cmd, "-o", str(elf), *kernel_objs, str(user_image)])
    return elf


def _ld_accepts(ld_path: str, flag: str) -> bool:
    """Probe an ld option: --no-warn-rwx-segments only exists in binutils >= 2.39."""
    return subprocess.run([ld_path, flag, "--version"], capture_output=True).returncode == 0


@dataclasses.dataclass
class KernelRun:
    """One run of a kernel on gdbemu: what the tests compare and what the report prints."""

    serial: bytes
    stop_kind: str
    stop_detail: str
    exit_code: int | None
    icount: int
    seconds: float
    ram_sha256: str
    stats: dict

    def describe(self) -> str:
        """A failure footer: how the run ended and the transcript's tail."""
        tail = "\n".join(self.serial.decode("latin-1").splitlines()[-10:])
        return (
            f"[gdbemu stop={self.stop_kind} {self.stop_detail} exit_code={self.exit_code} "
            f"icount={self.icount}]\n--- COM1 tail ---\n{tail}"
        )


def run_gdbemu(
    elf: Path, max_insns: int, ram_size: int = 32 << 20, icount_shift: int | None = None, force_tier: int | None = None
) -> KernelRun:
    """Boot ``elf`` on a gdbemu PC (multiboot, COM1 into a buffer) until it exits or max_insns retire.

    ``icount_shift`` (virtual ns per instruction = 2**shift) moves where the
    timer interrupts land relative to the guest's instructions; None keeps
    the machine's default.  ``force_tier`` (1 or 2) makes the translator
    build every block at that tier (``Translator.force_tier``).
    """
    import sys

    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from gdbemu.hw.pc import PCConfig, build_pc
    from gdbemu.machine import Machine

    buf = io.BytesIO()
    m = Machine(ram_size) if icount_shift is None else Machine(ram_size, icount_shift=icount_shift)
    build_pc(m, PCConfig(serial=[buf], no_reboot=True))
    if force_tier is not None:
        m.translator.force_tier = force_tier
    if hasattr(m, "load_multiboot"):
        m.load_multiboot(str(elf))
    else:
        m.load_elf(str(elf))
    t0 = time.perf_counter()
    stop = m.run(max_insns=max_insns)
    seconds = time.perf_counter() - t0
    uart = m.devices.get("uart")
    if uart is not None and hasattr(uart, "flush"):
        uart.flush()
    return KernelRun(
        serial=buf.getvalue(),
        stop_kind=stop.kind,
        stop_detail=getattr(stop, "detail", ""),
        exit_code=m.exit_code,
        icount=m.cpu.icount,
        seconds=seconds,
        ram_sha256=hashlib.sha256(bytes(m.mem.ram)).hexdigest(),
        stats=dict(m.stats()),
    )


def run_qemu(elf: Path, timeout: float = 60.0, ram_mb: int = 32) -> tuple[int, bytes]:
    """Boot ``elf`` on qemu-system-i386 -accel tcg (the reference) and return (exit status, COM1 bytes)."""
    qemu = shutil.which("qemu-system-i386")
    if not qemu:
        raise FileNotFoundError("qemu-system-i386 not on PATH")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "com1.txt"
        cmd = [
            qemu,
            "-kernel",
            str(elf),
            "-m",
            str(ram_mb),
            "-serial",
            f"file:{out}",
            "-display",
            "none",
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=0x04",
            "-no-reboot",
            "-accel",
            "tcg",
            "-net",
            "none",
        ]
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout)
        data = out.read_bytes() if out.exists() else b""
    return proc.returncode, data


def main(argv: list[str] | None = None) -> int:
    """Build the multitasking kernel and run it on gdbemu (default) or QEMU, printing its COM1 transcript."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--qemu", action="store_true", help="run on qemu-system-i386 instead of gdbemu")
    ap.add_argument("--max-insns", type=int, default=200_000_000)
    ap.add_argument("--icount-shift", type=int, default=None, help="gdbemu: virtual ns per instruction = 2**N")
    ap.add_argument("--keep", type=Path, help="build into this directory and keep the ELF")
    ap.add_argument("--pit-mode", type=int, choices=(2, 3), default=2, help="PIT channel 0 mode")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        elf = build_multitask(args.keep or Path(tmp), {"PIT_MODE": args.pit_mode})
        if args.qemu:
            status, out = run_qemu(elf)
            sys.stdout.write(out.decode("latin-1"))
            print(f"[qemu exit status {status}]")
            return 0 if status == 1 else 1
        run = run_gdbemu(elf, args.max_insns, icount_shift=args.icount_shift)
        sys.stdout.write(run.serial.decode("latin-1"))
        print(
            f"[gdbemu stop={run.stop_kind} {run.stop_detail} exit_code={run.exit_code} icount={run.icount} "
            f"wall={run.seconds:.2f}s]"
        )
        return 0 if run.exit_code == 1 else 1


if __name__ == "__main__":
    raise SystemExit(main())
