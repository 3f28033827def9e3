"""The one builder of the test programs: assembly guests and the C kernel, and runners for both.

Everything here is built at test time so that no binary is committed and the
sources stay the single truth:

* **guests** -- GNU as sources under ``tests/support/guests/`` (and
  ``benchmarks/``).  Each ``.include``s lib.inc and is linked as one RWX
  segment at 1 MiB (``ld -N``): the guests rewrite their own code, and paging
  is what protects memory in them, not the ELF flags.  :func:`build_guest`.
* **the multitasking C kernel** under ``tests/support/kernels/``, compiled with
  ``gcc -m32 -ffreestanding -nostdlib -fno-pic -fno-stack-protector
  -fno-builtin -O2`` and linked by ``kernels/kernel.ld`` into one multiboot
  ELF.  Objects whose names start with ``u_`` are the ring-3 image (the linker
  script places them at 0x40000000); ``lib.c`` is compiled twice, once for
  each side.  :func:`build_multitask`.

Kernels written by users of the public API are built by
:func:`gdbemu.testing.build_kernel` (``-O0 -g``, for source-level debugging);
the tests of that API call it directly.

Run by hand to reproduce a test (prints the transcript and how the run ended)::

    python tests/support/build.py guest paging          # a guest on gdbemu
    python tests/support/build.py guest paging --qemu   # ... on qemu-system-i386
    python tests/support/build.py kernel [--qemu]       # the multitasking kernel
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

SUPPORT_DIR = Path(__file__).resolve().parent
GUEST_DIR = SUPPORT_DIR / "guests"
KERNEL_DIR = SUPPORT_DIR / "kernels"
REPO = SUPPORT_DIR.parent.parent
LOAD_ADDR = 0x100000


class ToolchainMissingError(RuntimeError):
    """A build tool is not on PATH; callers turn this into a pytest skip with the reason."""


# ---- tools ---------------------------------------------------------------------------------------
def toolchain(*names: str) -> dict[str, str]:
    """Paths of the named tools (default: ``as`` and ``ld``), or ToolchainMissingError naming what is missing."""
    wanted = names or ("as", "ld")
    found = {name: shutil.which(name) for name in wanted}
    missing = [name for name, path in found.items() if not path]
    if missing:
        raise ToolchainMissingError(
            f"{', '.join(missing)} not found: the test programs are built with GNU binutils"
            + (" and gcc -m32" if "gcc" in wanted else "")
            + " (Debian: apt-get install binutils gcc)"
        )
    return {name: str(path) for name, path in found.items()}


def _run(cmd: list[str]) -> None:
    """Run one build step; its full output is raised so a broken program is diagnosable from the test log."""
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")


def _ld_accepts(ld_path: str, flag: str) -> bool:
    """Probe an ld option: --no-warn-rwx-segments only exists in binutils >= 2.39."""
    return subprocess.run([ld_path, flag, "--version"], capture_output=True).returncode == 0


# ---- assembly guests -----------------------------------------------------------------------------
def build_guest(
    source: Path | str,
    out_dir: Path,
    defsyms: dict[str, int] | None = None,
    name: str | None = None,
) -> Path:
    """Assemble ``source`` (a path, or a guest name under tests/support/guests/) into out_dir/NAME.elf.

    defsyms become ``as --defsym`` values (the benchmarks size their loops this way).
    """
    tools = toolchain("as", "ld")
    src = Path(source)
    if not src.suffix:
        src = GUEST_DIR / f"{src}.s"
    stem = name or src.stem
    out_dir.mkdir(parents=True, exist_ok=True)
    obj = out_dir / f"{stem}.o"
    elf = out_dir / f"{stem}.elf"
    as_cmd = [tools["as"], "--32", "-I", str(GUEST_DIR), "-I", str(src.parent)]
    for key, value in (defsyms or {}).items():
        as_cmd += ["--defsym", f"{key}={value}"]
    as_cmd += ["-o", str(obj), str(src)]
    ld_cmd = [tools["ld"], "-m", "elf_i386", "-N", f"-Ttext=0x{LOAD_ADDR:x}", "-e", "_start"]
    if _ld_accepts(tools["ld"], "--no-warn-rwx-segments"):
        ld_cmd.append("--no-warn-rwx-segments")
    ld_cmd += ["-o", str(elf), str(obj)]
    _run(as_cmd)
    _run(ld_cmd)
    return elf


def symbols(elf: Path) -> dict[str, int]:
    """Symbol table of a built program (via nm), so tests can name guest addresses."""
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


# ---- the C kernel --------------------------------------------------------------------------------
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


def build_multitask(out_dir: Path, defines: dict[str, int] | None = None) -> Path:
    """Compile and link the multitasking kernel into out_dir/multitask.elf; compiler errors are raised in full.

    ``defines`` become ``-D`` options (``{"PIT_MODE": 3}`` builds the square-wave variant); give each
    variant its own out_dir.
    """
    tools = toolchain("gcc", "as", "ld", "objcopy")
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


# ---- running -------------------------------------------------------------------------------------
def run_qemu(
    elf: Path,
    timeout: float = 60.0,
    extra: list[str] | None = None,
    accel: str = "tcg",
    output: Literal["debugcon", "com1"] = "debugcon",
    ram_mb: int = 32,
    binary: str = "qemu-system-i386",
) -> tuple[int, bytes]:
    """Boot ``elf`` on qemu-system-i386 (the behavioural reference); returns (exit status, output bytes).

    ``binary`` names another QEMU system emulator (``qemu-system-x86_64`` for
    the long-mode guests: the same multiboot loader, a CPU that has long mode).

    ``output="debugcon"`` (the guests): a machine with no default devices,
    port 0xE9 captured.  ``output="com1"`` (the C kernel): the default PC
    without a NIC, COM1 captured.  Both have isa-debug-exit at 0xF4.

    TCG is asked for explicitly: it is the design gdbemu follows (softmmu TLB,
    translated blocks), it behaves the same on every host, and QEMU must not
    pick KVM where /dev/kvm happens to exist (the benchmark compares
    emulators, and a nested KVM may not even run the guests).
    """
    qemu = shutil.which(binary)
    if not qemu:
        raise FileNotFoundError(f"{binary} not on PATH")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / f"{output}.txt"
        if output == "debugcon":
            board = ["-nodefaults", "-debugcon", f"file:{out}"]
        else:
            board = ["-serial", f"file:{out}", "-net", "none"]
        cmd = [
            qemu,
            *board,
            "-display",
            "none",
            "-no-reboot",
            "-m",
            str(ram_mb),
            "-accel",
            accel,
            "-kernel",
            str(elf),
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=0x04",
            *(extra or []),
        ]
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout)
        data = out.read_bytes() if out.exists() else b""
    return proc.returncode, data


@dataclasses.dataclass
class KernelRun:
    """One run of a kernel on a gdbemu PC: what the tests compare and what the report prints."""

    serial: bytes
    stop_kind: str
    stop_detail: str
    exit_code: int | None
    icount: int
    seconds: float
    ram_sha256: str
    stats: dict[str, Any]

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
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from gdbemu.hw.pc import PCConfig, build_pc
    from gdbemu.machine import Machine

    buf = io.BytesIO()
    m = Machine(ram_size) if icount_shift is None else Machine(ram_size, icount_shift=icount_shift)
    build_pc(m.bus, PCConfig(serial=[buf], no_reboot=True))
    if force_tier is not None:
        m.translator.force_tier = force_tier
    if hasattr(m, "load_multiboot"):
        m.load_multiboot(str(elf))
    else:
        m.load_elf(str(elf))
    t0 = time.perf_counter()
    stop = m.run(max_insns=max_insns)
    seconds = time.perf_counter() - t0
    uart = m.bus.devices.get("uart")
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


def main(argv: list[str] | None = None) -> int:
    """Build a guest or the multitasking kernel and run it on gdbemu (default) or QEMU, printing its transcript."""
    import argparse

    ap = argparse.ArgumentParser(description=main.__doc__)
    sub = ap.add_subparsers(dest="what", required=True)
    g = sub.add_parser("guest", help="an assembly guest (debugcon transcript)")
    g.add_argument("guest", help="a name under tests/support/guests/ (paging, smc, ...) or a path to a .s file")
    g.add_argument("--max-insns", type=int, default=50_000_000)
    k = sub.add_parser("kernel", help="the multitasking C kernel (COM1 transcript)")
    k.add_argument("--max-insns", type=int, default=200_000_000)
    k.add_argument("--icount-shift", type=int, default=None, help="gdbemu: virtual ns per instruction = 2**N")
    k.add_argument("--keep", type=Path, help="build into this directory and keep the ELF")
    k.add_argument("--pit-mode", type=int, choices=(2, 3), default=2, help="PIT channel 0 mode")
    for p in (g, k):
        p.add_argument("--qemu", action="store_true", help="run on qemu-system-i386 instead of gdbemu")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        if args.what == "guest":
            elf = build_guest(args.guest, Path(tmp))
            output: Literal["debugcon", "com1"] = "debugcon"
        else:
            elf = build_multitask(args.keep or Path(tmp), {"PIT_MODE": args.pit_mode})
            output = "com1"
        if args.qemu:
            status, out = run_qemu(elf, output=output)
            sys.stdout.write(out.decode("latin-1"))
            print(f"[qemu exit status {status}]")
            return 0 if status == 1 else 1
        if args.what == "kernel":
            run = run_gdbemu(elf, args.max_insns, icount_shift=args.icount_shift)
            sys.stdout.write(run.serial.decode("latin-1"))
            print(
                f"[gdbemu stop={run.stop_kind} {run.stop_detail} exit_code={run.exit_code} icount={run.icount} "
                f"wall={run.seconds:.2f}s]"
            )
            return 0 if run.exit_code == 1 else 1
        if str(REPO) not in sys.path:
            sys.path.insert(0, str(REPO))
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
