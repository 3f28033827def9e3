"""The ``gdbemu`` command: QEMU's spelling for the options gdbemu honours.

Bad arguments get one line on stderr and exit code 2; a kernel that cannot be
loaded gets a message naming what is wrong.  The exit code follows
isa-debug-exit, as QEMU's does: ``(value << 1) | 1``.
"""

from __future__ import annotations

import argparse
import sys
import time
from importlib import resources

from .boot.elf import ELFError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (not argparse's usage dump)
        print(f"gdbemu: {message}", file=sys.stderr)
        raise SystemExit(2)


def parse_size(text: str) -> int:
    """QEMU's -m: a number of MiB, or with a K/M/G suffix."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper()
    if text.startswith("SIZE="):
        text = text[5:]
    try:
        if text and text[-1] in units:
            value = int(float(text[:-1]) * units[text[-1]])
        else:
            value = int(text) << 20
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid memory size {text!r}") from None
    if value < (1 << 20) or value > (3 << 30):
        raise argparse.ArgumentTypeError(f"memory size {text!r} out of range (1M..3G)")
    return value & ~0xFFF


def demo_kernel_path() -> str:
    return str(resources.files("gdbemu") / "demo" / "demo.elf")


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="gdbemu", description="x86 system emulator with a built-in GDB stub")
    parser.add_argument("kernel_pos", nargs="?", metavar="KERNEL", help="multiboot/ELF kernel (default: the demo)")
    parser.add_argument("-kernel", dest="kernel", help="the kernel to boot")
    parser.add_argument("-m", dest="memory", type=parse_size, default=128 << 20, help="RAM size (MiB or K/M/G)")
    parser.add_argument("-max-insns", dest="max_insns", type=int, default=None,
                        help="stop after this many instructions")
    for flag in ("-nographic", "-no-reboot"):
        parser.add_argument(flag, action="store_true")
    for opt in ("-accel", "-display", "-monitor", "-vga", "-device", "-serial", "-cpu", "-smp", "-icount", "-d",
                "-D", "-append", "-initrd"):
        parser.add_argument(opt, action="append", default=[])
    args = parser.parse_args(argv)

    from .machine import Machine

    kernel = args.kernel or args.kernel_pos
    demo = kernel is None
    if demo:
        kernel = demo_kernel_path()
    machine = Machine(ram_size=args.memory)
    try:
        machine.load_elf(kernel)
    except FileNotFoundError:
        print(f"gdbemu: cannot open kernel {kernel!r}: no such file", file=sys.stderr)
        return 2
    except ELFError as exc:
        print(f"gdbemu: cannot load {kernel!r}: {exc}", file=sys.stderr)
        return 2
    if demo:
        print("gdbemu: no kernel given, booting the demo kernel", file=sys.stderr)
    start = time.perf_counter()
    out = sys.stdout.buffer
    shown = 0
    stop = None
    # Run in slices so the guest's console output appears as it is produced.
    while True:
        stop = machine.run(max_insns=min(1 << 20, args.max_insns - machine.cpu.icount)
                           if args.max_insns else 1 << 20)
        if len(machine.debug_output) > shown:
            out.write(machine.debug_output[shown:])
            out.flush()
            shown = len(machine.debug_output)
        if stop.kind != "limit" or (args.max_insns and machine.cpu.icount >= args.max_insns):
            break
    wall = time.perf_counter() - start
    icount = machine.cpu.icount
    print(f"gdbemu: {stop.kind}{' (' + stop.detail + ')' if stop.detail else ''}: "
          f"{icount} instructions in {wall:.2f} s ({icount / wall / 1e6 if wall else 0:.1f} MIPS)", file=sys.stderr)
    if stop.kind == "exit" and machine.exit_code is not None:
        return machine.exit_code
    return 0 if stop.kind in ("halt", "limit") else 1


if __name__ == "__main__":
    raise SystemExit(main())
