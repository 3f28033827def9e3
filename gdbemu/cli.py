"""The ``gdbemu`` command: QEMU's spelling for the options gdbemu honours.

Theory of operation
-------------------
A command line from an OS-dev Makefile written for ``qemu-system-i386``
should run unchanged: ``gdbemu -kernel k.elf -serial stdio -display none
-no-reboot -device isa-debug-exit,iobase=0xf4,iosize=0x04 -m 64M -accel tcg``.
So the parser is QEMU's, not argparse's: every option is a single-dash word
(``--word`` works too), options that take a value take the next argument
whatever it looks like (``-append "-v quiet"``), and an option QEMU has but
gdbemu cannot honour is accepted with a one-line note on stderr when ignoring
it changes nothing a kernel can observe (``-accel kvm``: we always emulate),
or refused with exit code 2 when it would (``-smp 4``).  Every error is one
line starting with ``gdbemu:`` and exit code 2; so is a kernel that cannot be
booted (the loader's message names what is missing).

The run: ``hw.pc.build_pc`` attaches the devices with a ``PCConfig`` built
from the options, ``Machine.load_multiboot`` writes the firmware state and
boots the kernel (the demo kernel when none is given), and the machine runs
in slices.  Between slices, and only there, console input read by a
background thread is fed to COM1, so the guest state is touched by one
thread only and a run without input is deterministic.  How a run ends:

* isa-debug-exit: the exit code is ``(value << 1) | 1``, as QEMU's;
* triple fault (or a reset request): with ``-no-reboot`` QEMU exits with 0,
  and so do we (with a note); without it the machine resets and the on_reset
  hook boots the kernel again, forever, as QEMU does;
* ``hlt`` with interrupts disabled: nothing can ever wake the CPU; QEMU would
  sit there, we say so and exit 0;
* ``-max-insns N`` reached: exit 0.

Virtual time comes from the instruction count (``-icount shift=N``, default
3).  With ``sleep=on`` (the default when stdin is a terminal, as QEMU's
default for -icount) a halted CPU waits in real time for its next timer
instead of jumping to it, so an interactive guest's clock does not race
ahead and an idle guest does not spin the host CPU; ``sleep=off`` (the
default otherwise) jumps, which changes no guest-visible order of events.

``-d`` logging (``-D FILE`` for a file, stderr otherwise) instruments the
machine from outside the hot path, installing hooks only for the items
asked: ``in_asm`` wraps the translator (each new TB disassembled with
``core.decode.disasm``); ``exec`` and ``cpu`` wrap each TB's function
(translation is pinned to tier 1 so that every block entry is seen);
``int`` sets ``machine.trace_interrupt``, which ``core.interrupts.do_interrupt``
calls for every exception and interrupt delivered; ``mmu`` wraps each vCPU's
``softmmu.fill`` (TLB fills and the page faults they raise).

``-s``/``-gdb DEV``/``-S`` are parsed into ``Options.gdb`` (an endpoint like
``tcp::1234``, or None) and ``Options.wait_for_gdb``; ``_serve_gdb`` then runs
the guest under the GDB server (gdbemu/rsp/server.py) instead of ``_run``.
With no kernel given, the demo kernel boots with the server listening on
127.0.0.1:1234 (``-gdb none`` turns that off).
"""

from __future__ import annotations

import calendar
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import TextIO

from .boot.elf import ELFError
from .boot.firmware import CPU_MODELS
from .boot.multiboot import MultibootError


class UsageError(Exception):
    """A bad command line: printed as one ``gdbemu: ...`` line, exit code 2."""


# ---- the option table ----------------------------------------------------------------------
# name -> takes a value.  Everything QEMU spells and a Makefile for a 32-bit kernel uses.
OPTIONS: dict[str, bool] = {
    "kernel": True,
    "append": True,
    "initrd": True,
    "m": True,
    "serial": True,
    "nographic": False,
    "no-reboot": False,
    "no-shutdown": False,
    "icount": True,
    "d": True,
    "D": True,
    "smp": True,
    "cpu": True,
    "accel": True,
    "enable-kvm": False,
    "machine": True,
    "M": True,
    "display": True,
    "monitor": True,
    "vga": True,
    "device": True,
    "debugcon": True,
    "s": False,
    "S": False,
    "gdb": True,
    "rtc": True,
    "nodefaults": False,
    "max-insns": True,
    "name": True,
    "boot": True,
    "k": True,
    "parallel": True,
    "net": True,
    "netdev": True,
    "nic": True,
    "drive": True,
    "hda": True,
    "hdb": True,
    "cdrom": True,
    "fda": True,
    "usb": False,
    "usbdevice": True,
    "audiodev": True,
    "soundhw": True,
    "bios": True,
    "L": True,
    "chardev": True,
    "qmp": True,
    "pidfile": True,
    "daemonize": False,
    "snapshot": False,
    "full-screen": False,
    "no-acpi": False,
    "no-hpet": False,
    "global": True,
    "object": True,
    "trace": True,
    "h": False,
    "help": False,
    "version": False,
}
# Options whose only effect is on things gdbemu does not have: accepted with a note.
IGNORED = {
    "name": "the VM name only titles windows",
    "boot": "there are no disks; the kernel is booted directly",
    "k": "there is no graphical display to map keys from",
    "parallel": "there is no parallel port",
    "net": "there is no network card",
    "netdev": "there is no network card",
    "nic": "there is no network card",
    "drive": "there are no disks",
    "hda": "there are no disks",
    "hdb": "there are no disks",
    "cdrom": "there are no disks",
    "fda": "there are no disks",
    "snapshot": "there are no disks",
    "usb": "there is no USB",
    "usbdevice": "there is no USB",
    "audiodev": "there is no sound",
    "soundhw": "there is no sound",
    "bios": "the BIOS state is built in (boot/firmware.py)",
    "L": "the BIOS state is built in",
    "qmp": "there is no QMP monitor",
    "pidfile": "no pid file is written",
    "daemonize": "gdbemu stays in the foreground",
    "full-screen": "there is no graphical display",
    "no-hpet": "there is no HPET",
    "no-shutdown": "a shutdown ends the run",
    "global": "device properties are not configurable",
    "object": "QOM objects are not configurable",
    "trace": "QEMU trace events do not exist here (use -d)",
    "no-acpi": "the ACPI tables are always built",
}
LOG_ITEMS = ("in_asm", "exec", "int", "cpu", "mmu")
QEMU_LOG_ITEMS_IGNORED = (
    "out_asm",
    "op",
    "op_opt",
    "op_ind",
    "op_plugin",
    "guest_errors",
    "unimp",
    "nochain",
    "pcall",
    "cpu_reset",
    "page",
    "strace",
    "tid",
    "plugin",
    "fpu",
    "vpu",
    "invalid_mem",
    "excp",
)

USAGE = """\
usage: gdbemu [options] [KERNEL]

  KERNEL, -kernel FILE   a multiboot kernel (ELF or a.out kludge); default: the demo kernel
  -append STR            kernel command line (multiboot cmdline is "KERNEL STR", as QEMU)
  -initrd "F [args],G"   multiboot modules, comma separated (",," is a literal comma)
  -m SIZE                RAM: 128, 128M, 1G, size=128M (default 128M; 2M..3G)
  -serial DEV            stdio | file:PATH | null | none; repeat for COM2.. (default: COM1 on stdio)
  -debugcon DEV          port 0xE9: stdio | file:PATH | null | none (default stdio)
  -device isa-debug-exit,iobase=X,iosize=Y   exit device (default: iobase=0xf4,iosize=4)
  -no-reboot             exit (status 0) on a triple fault or reset instead of rebooting
  -icount shift=N[,sleep=on|off]   one instruction = 2**N ns of virtual time (default 3)
  -d ITEMS [-D FILE]     log in_asm,exec,int,cpu,mmu (to FILE, default stderr); -d help lists them
  -cpu MODEL             CPUID model: {models}
  -smp 1                 one vCPU (more is not supported yet)
  -rtc base=utc|localtime|YYYY-MM-DD[THH:MM:SS]   RTC start (default: a fixed date, for determinism)
  -s, -gdb DEV, -S       GDB stub endpoint (tcp::1234), wait for gdb before running
  -vga std|none, -nographic, -display, -monitor, -accel, -machine, -nodefaults   as QEMU
  -max-insns N           stop after N guest instructions
"""


@dataclass
class Options:
    """The parsed command line."""

    kernel: str | None = None
    append: str = ""
    initrd: str | None = None
    memory: int = 128 << 20
    serial: list[str] = field(default_factory=list)
    debugcon: str = "stdio"
    no_reboot: bool = False
    icount_shift: int = 3
    icount_sleep: bool | None = None  # None: on when stdin is a terminal
    log_items: tuple[str, ...] = ()
    log_file: str | None = None
    smp: int = 1
    cpu: str = "gdbemu"
    vga: bool = True
    debug_exit: tuple[int, int] | None = (0xF4, 4)
    rtc_base: int | None = None
    gdb: str | None = None  # the GDB stub's endpoint ("tcp::1234", "unix:PATH", ...) or None
    wait_for_gdb: bool = False  # -S: do not run the guest until gdb says so
    no_gdb: bool = False  # -gdb none: no stub even for the demo kernel
    implicit_gdb: bool = False  # the stub was not asked for (the demo's default listener)
    max_insns: int | None = None
    nographic: bool = False
    nodefaults: bool = False
    notes: list[str] = field(default_factory=list)
    show: str | None = None  # "help", "version", "cpu-help", "log-help": print and exit 0


def parse_size(text: str) -> int:
    """QEMU's -m: a number of MiB, or with a K/M/G/T suffix (an optional trailing B), or size=..."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    spec = text.strip()
    for part in spec.split(","):
        if part.lower().startswith("size="):
            spec = part[5:]
            break
        if "=" not in part:
            spec = part
            break
    else:
        raise UsageError(f"-m {text!r}: no size given")
    s = spec.strip().upper()
    if s.endswith("B") and len(s) > 1 and s[-2] in units:
        s = s[:-1]
    try:
        if s and s[-1] in units:
            value = int(float(s[:-1]) * units[s[-1]])
        else:
            value = int(float(s) * (1 << 20))
    except ValueError:
        raise UsageError(f"invalid memory size {text!r} (examples: 128, 128M, 1G, size=64M)") from None
    if value < (2 << 20) or value > (3 << 30):
        raise UsageError(f"memory size {text!r} out of range (2M..3G)")
    return value & ~0xFFF


def _parse_kv(text: str, first_key: str | None = None) -> dict[str, str]:
    """QEMU's "a=b,c=d" option syntax; a leading bare value is ``first_key``'s."""
    out: dict[str, str] = {}
    for i, part in enumerate(p for p in text.split(",") if p):
        if "=" in part:
            key, value = part.split("=", 1)
            out[key.strip()] = value.strip()
        elif i == 0 and first_key is not None:
            out[first_key] = part.strip()
        else:
            out[part.strip()] = "on"
    return out


def _parse_int(text: str, what: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise UsageError(f"{what}: {text!r} is not a number") from None


def _parse_chardev(value: str, option: str, notes: list[str]) -> str:
    """-serial / -debugcon: stdio, file:PATH, null, none (mon:stdio and vc accepted)."""
    if value in ("stdio", "null", "none") or value.startswith("file:") and len(value) > 5:
        return value
    if value == "mon:stdio":
        notes.append(f"{option} mon:stdio: there is no monitor; the port is on stdio")
        return "stdio"
    if value == "vc" or value.startswith("vc:"):
        notes.append(f"{option} {value}: there is no graphical console; output discarded")
        return "null"
    raise UsageError(f"{option} {value!r} is not supported (use stdio, file:PATH, null or none)")


def _parse_rtc(value: str, notes: list[str]) -> int | None:
    opts = _parse_kv(value)
    base = opts.pop("base", None)
    for key in opts:
        notes.append(f"-rtc {key}=...: ignored (the RTC runs on virtual time)")
    if base is None:
        return None
    if base == "utc":
        return int(time.time())
    if base == "localtime":
        return int(time.time()) - time.timezone + (3600 if time.daylight and time.localtime().tm_isdst else 0)
    for fmt in ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"):
        try:
            return calendar.timegm(time.strptime(base, fmt))
        except ValueError:
            continue
    raise UsageError(f"-rtc base={base!r}: expected utc, localtime, YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS")


def _parse_device(value: str, opts: Options) -> None:
    kv = _parse_kv(value, first_key="driver")
    driver = kv.pop("driver", "")
    if driver == "isa-debug-exit":
        iobase = _parse_int(kv.pop("iobase", "0x501"), "isa-debug-exit iobase")
        iosize = _parse_int(kv.pop("iosize", "0x2"), "isa-debug-exit iosize")
        if not 0 < iosize <= 8 or not 0 <= iobase <= 0xFFFF - iosize + 1:
            raise UsageError(f"-device {value}: iobase/iosize out of range")
        opts.debug_exit = (iobase, iosize)
        for key in kv:
            opts.notes.append(f"-device isa-debug-exit: property {key!r} ignored")
        return
    if driver == "help":
        opts.show = "device-help"
        return
    opts.notes.append(f"warning: -device {driver or value}: not emulated by gdbemu, ignored")


def parse_args(argv: list[str]) -> Options:
    """Parse a QEMU-style command line (see the module docstring); raises UsageError."""
    opts = Options()
    serial_given = False
    vga_given = False
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if not arg.startswith("-") or arg == "-":
            if opts.kernel is not None:
                raise UsageError(f"more than one kernel given ({opts.kernel!r} and {arg!r})")
            opts.kernel = arg
            continue
        name = arg.lstrip("-")
        value = None
        if "=" in name and name.split("=", 1)[0] in OPTIONS and OPTIONS[name.split("=", 1)[0]]:
            name, value = name.split("=", 1)  # --append=STR spelling
        if name not in OPTIONS:
            raise UsageError(f"unknown option {arg!r} (gdbemu -help lists the options)")
        if OPTIONS[name] and value is None:
            if i >= len(argv):
                raise UsageError(f"option {arg!r} needs a value")
            value = argv[i]
            i += 1
        assert value is not None or not OPTIONS[name]
        v = value or ""
        if name in ("h", "help"):
            opts.show = "help"
        elif name == "version":
            opts.show = "version"
        elif name == "kernel":
            if opts.kernel is not None:
                raise UsageError(f"more than one kernel given ({opts.kernel!r} and {v!r})")
            opts.kernel = v
        elif name == "append":
            opts.append = v
        elif name == "initrd":
            opts.initrd = v
        elif name == "m":
            opts.memory = parse_size(v)
        elif name == "serial":
            if not serial_given:
                opts.serial = []
            serial_given = True
            opts.serial.append(_parse_chardev(v, "-serial", opts.notes))
        elif name == "debugcon":
            opts.debugcon = _parse_chardev(v, "-debugcon", opts.notes)
        elif name == "nographic":
            opts.nographic = True
        elif name == "no-reboot":
            opts.no_reboot = True
        elif name == "icount":
            kv = _parse_kv(v, first_key="shift")
            shift = kv.pop("shift", None)
            if shift == "auto":
                opts.notes.append("-icount shift=auto: adaptive icount is not implemented; using shift=3")
            elif shift is not None:
                opts.icount_shift = _parse_int(shift, "-icount shift")
                if not 0 <= opts.icount_shift <= 10:
                    raise UsageError(f"-icount shift={shift}: must be 0..10")
            sleep = kv.pop("sleep", None)
            if sleep is not None:
                if sleep not in ("on", "off"):
                    raise UsageError(f"-icount sleep={sleep!r}: expected on or off")
                opts.icount_sleep = sleep == "on"
            for key in kv:
                opts.notes.append(f"-icount {key}=...: ignored (virtual time always follows the instruction count)")
        elif name == "d":
            items = [x for x in v.split(",") if x]
            if "help" in items:
                opts.show = "log-help"
                continue
            chosen = []
            for item in items:
                if item in LOG_ITEMS:
                    chosen.append(item)
                elif item in QEMU_LOG_ITEMS_IGNORED or item.startswith("trace:"):
                    opts.notes.append(f"-d {item}: not logged by gdbemu")
                else:
                    raise UsageError(f"-d {item!r}: unknown log item (gdbemu logs {', '.join(LOG_ITEMS)})")
            opts.log_items = tuple(dict.fromkeys(opts.log_items + tuple(chosen)))
        elif name == "D":
            opts.log_file = v
        elif name == "smp":
            kv = _parse_kv(v, first_key="cpus")
            cpus = _parse_int(kv.get("cpus", "1"), "-smp")
            for key in ("sockets", "cores", "threads", "maxcpus", "dies", "clusters"):
                if key in kv and _parse_int(kv[key], f"-smp {key}") != 1:
                    raise UsageError("only -smp 1 is supported for now")
            if cpus != 1:
                raise UsageError("only -smp 1 is supported for now")
        elif name == "cpu":
            model = v.split(",", 1)[0]
            if model == "help":
                opts.show = "cpu-help"
            elif model not in CPU_MODELS:
                raise UsageError(f"-cpu {model!r}: unknown CPU model (available: {', '.join(CPU_MODELS)})")
            else:
                opts.cpu = model
                if "," in v:
                    opts.notes.append(f"-cpu {v}: feature flags ignored (models differ only in CPUID)")
        elif name in ("accel", "enable-kvm"):
            accel = "kvm" if name == "enable-kvm" else _parse_kv(v, first_key="accel").get("accel", "")
            if accel != "tcg":
                opts.notes.append(f"-accel {accel or v}: gdbemu always emulates (like tcg)")
        elif name in ("machine", "M"):
            kv = _parse_kv(v, first_key="type")
            mtype = kv.pop("type", "pc")
            if mtype == "help":
                opts.show = "machine-help"
            elif mtype not in ("pc", "isapc") and not mtype.startswith("pc-i440fx"):
                opts.notes.append(
                    f"-machine {mtype}: gdbemu's board is a PC with an I/O APIC and no PCI; running that instead"
                )
            accel = kv.pop("accel", "tcg")
            if accel != "tcg":
                opts.notes.append(f"-machine accel={accel}: gdbemu always emulates (like tcg)")
        elif name == "display":
            if v.split(",", 1)[0] != "none":
                opts.notes.append(f"-display {v}: there is no graphical display (VGA text is not shown)")
        elif name == "monitor":
            if v not in ("none", "null"):
                opts.notes.append(f"-monitor {v}: there is no monitor")
        elif name == "vga":
            vga_given = True
            if v == "none":
                opts.vga = False
            else:
                opts.vga = True
                if v != "std":
                    opts.notes.append(f"-vga {v}: emulated as std (VGA text mode)")
        elif name == "device":
            _parse_device(v, opts)
        elif name == "s":
            opts.gdb = "tcp::1234"
        elif name == "gdb":
            opts.gdb = None if v == "none" else v
            opts.no_gdb = v == "none"
            if opts.gdb is not None:
                from .rsp.server import parse_endpoint

                try:
                    parse_endpoint(opts.gdb)
                except ValueError as exc:
                    raise UsageError(str(exc)) from None
        elif name == "S":
            opts.wait_for_gdb = True
        elif name == "rtc":
            opts.rtc_base = _parse_rtc(v, opts.notes)
        elif name == "nodefaults":
            opts.nodefaults = True
        elif name == "max-insns":
            opts.max_insns = _parse_int(v, "-max-insns")
            if opts.max_insns <= 0:
                raise UsageError("-max-insns must be positive")
        elif name == "chardev":
            raise UsageError("-chardev is not supported (use -serial/-debugcon with stdio, file:PATH or null)")
        elif name in IGNORED:
            opts.notes.append(f"-{name}: ignored ({IGNORED[name]})")
        else:  # pragma: no cover - every table entry is handled above
            raise UsageError(f"option {arg!r} is not handled")
    if not serial_given:
        opts.serial = [] if opts.nodefaults else ["stdio"]
    if opts.nodefaults and not vga_given:
        opts.vga = False
    return opts


def demo_kernel_path() -> str:
    return str(resources.files("gdbemu") / "demo" / "demo.elf")


# ---- console --------------------------------------------------------------------------------
class ConsoleInput:
    """Bytes typed on stdin, read by a daemon thread and handed over between run slices."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.queue: queue.Queue[bytes] = queue.Queue()
        self.eof = False
        self.arrived = threading.Event()
        self.thread = threading.Thread(target=self._reader, name="gdbemu-stdin", daemon=True)
        self.thread.start()

    def _reader(self) -> None:
        while True:
            try:
                data = os.read(self.fd, 4096)
            except OSError:
                data = b""
            if not data:
                self.eof = True
                self.arrived.set()
                return
            self.queue.put(data)
            self.arrived.set()

    def take(self) -> bytes:
        """Everything typed since the last call (never blocks)."""
        self.arrived.clear()
        out = bytearray()
        while True:
            try:
                out += self.queue.get_nowait()
            except queue.Empty:
                return bytes(out)

    def wait(self, timeout: float | None) -> None:
        """Block until input arrives (or EOF), at most ``timeout`` seconds."""
        if self.queue.empty() and not self.eof:
            self.arrived.wait(timeout)


def _raw_terminal(fd: int) -> Callable[[], None] | None:
    """Characters reach the guest as typed (no line editing, no local echo), Ctrl-C still works."""
    try:
        import termios

        old = termios.tcgetattr(fd)
        new = termios.tcgetattr(fd)
        new[0] &= ~(termios.ICRNL | termios.IXON)
        new[3] &= ~(termios.ICANON | termios.ECHO)
        new[6][termios.VMIN] = 1
        new[6][termios.VTIME] = 0
        termios.tcsetattr(fd, termios.TCSANOW, new)
    except (ImportError, OSError, ValueError):
        return None

    def restore() -> None:
        termios.tcsetattr(fd, termios.TCSADRAIN, old)

    return restore


def feed_serial(machine, data: bytes) -> bool:
    """Give ``data`` to COM1's receiver, as if typed on its line; False if there is no COM1."""
    uart = machine.devices.get("uart")
    if uart is None or not len(uart) or uart[0] is None:
        return False
    uart.feed(data, 0)
    return True


class _Sink:
    """Where the CLI itself writes a character device's bytes (-debugcon without a device model)."""

    def __init__(self, spec: str) -> None:
        self.stream = None
        self.close_after = False
        if spec == "stdio":
            self.stream = sys.stdout.buffer
        elif spec == "stderr":
            self.stream = sys.stderr.buffer
        elif spec.startswith("file:"):
            self.stream = open(spec[5:], "wb")  # noqa: SIM115 - closed by close()
            self.close_after = True

    def write(self, data: bytes) -> None:
        if self.stream is not None and data:
            self.stream.write(data)
            self.stream.flush()

    def close(self) -> None:
        if self.close_after and self.stream is not None:
            self.stream.close()


# ---- -d logging ------------------------------------------------------------------------------
class QemuLog:
    """QEMU-style -d logging through hooks installed only for the items asked (module docstring)."""

    def __init__(self, machine, items: tuple[str, ...], out: TextIO) -> None:
        self.machine = machine
        self.items = set(items)
        self.out = out
        self.n_int = 0
        if not self.items:
            return
        translator = machine.translator
        if self.items & {"exec", "cpu"}:
            translator.force_tier = 1  # every block entry goes through the exec loop
        if self.items & {"in_asm", "exec", "cpu"}:
            original = translator.translate

            def translate(cpu, *args, **kwargs):
                tb = original(cpu, *args, **kwargs)
                self._tb_built(cpu, tb)
                return tb

            translator.translate = translate
        if "int" in self.items:
            machine.trace.interrupt = self._interrupt
        if "mmu" in self.items:
            for cpu in machine.cpus:
                cpu.softmmu.fill = self._wrap_fill(cpu, cpu.softmmu.fill)

    def _tb_built(self, cpu, tb) -> None:
        if "in_asm" in self.items:
            from .core.decode import disasm

            bits = 32 if tb.hflags & 4 else 16
            lines = ["----------------", "IN: "]
            for insn in tb.insns:
                if insn is not None:
                    lines.append(f"0x{tb.cs_base + insn.addr:08x}:  {disasm(insn, bits)}")
            self.out.write("\n".join(lines) + "\n\n")
        if self.items & {"exec", "cpu"}:
            fn = tb.fn
            if fn is None or getattr(fn, "_gdbemu_logged", False):
                return

            def logged(*args, _fn=fn, _tb=tb):
                if "cpu" in self.items:
                    self.out.write(self.cpu_state(cpu))
                if "exec" in self.items:
                    self.out.write(f"Trace {cpu.index}: [{_tb.cs_base:08x}/{_tb.pc:08x}/{_tb.hflags:08x}] \n")
                return _fn(*args)

            logged._gdbemu_logged = True  # type: ignore[attr-defined]
            tb.fn = logged

    @staticmethod
    def cpu_state(cpu) -> str:
        """A register dump in QEMU's layout (x86_cpu_dump_state)."""
        from .core.cpu import SEG_NAMES

        r = cpu.regs
        efl = cpu.get_eflags()
        flag_chars = "".join(
            c if efl & (1 << b) else "-"
            for c, b in (("D", 10), ("O", 11), ("S", 7), ("Z", 6), ("A", 4), ("P", 2), ("C", 0))
        )
        lines = [
            f"EAX={r[0]:08x} EBX={r[3]:08x} ECX={r[1]:08x} EDX={r[2]:08x}",
            f"ESI={r[6]:08x} EDI={r[7]:08x} EBP={r[5]:08x} ESP={r[4]:08x}",
            f"EIP={cpu.eip:08x} EFL={efl:08x} [{flag_chars}] CPL={cpu.cpl} HLT={int(cpu.halted)}",
        ]
        for name, seg in zip(SEG_NAMES, cpu.segs, strict=True):
            lines.append(f"{name.upper():3s}={seg.selector:04x} {seg.base:08x} {seg.limit:08x} {seg.flags:08x}")
        lines.append(f"LDT={cpu.ldtr.selector:04x} {cpu.ldtr.base:08x} {cpu.ldtr.limit:08x} {cpu.ldtr.flags:08x}")
        lines.append(f"TR ={cpu.tr.selector:04x} {cpu.tr.base:08x} {cpu.tr.limit:08x} {cpu.tr.flags:08x}")
        lines.append(f"GDT=     {cpu.gdtr_base:08x} {cpu.gdtr_limit:08x}")
        lines.append(f"IDT=     {cpu.idtr_base:08x} {cpu.idtr_limit:08x}")
        lines.append(f"CR0={cpu.cr[0]:08x} CR2={cpu.cr[2]:08x} CR3={cpu.cr[3]:08x} CR4={cpu.cr[4]:08x}")
        return "\n".join(lines) + "\n"

    def _interrupt(self, cpu, vector: int, soft: bool, error_code: int | None, next_eip: int) -> None:
        from .core.cpu import CS, ESP, SS

        cs = cpu.segs[CS]
        ss = cpu.segs[SS]
        line = (
            f"{self.n_int:6d}: v={vector:02x} e={(error_code or 0):04x} i={int(soft)} cpl={cpu.cpl} "
            f"IP={cs.selector:04x}:{cpu.eip:08x} pc={(cs.base + cpu.eip) & 0xFFFFFFFF:08x} "
            f"SP={ss.selector:04x}:{cpu.regs[ESP]:08x}"
        )
        if vector == 14 and not soft:
            line += f" CR2={cpu.cr[2]:08x}"
        if next_eip != cpu.eip:
            line += f" next={next_eip:08x}"
        self.n_int += 1
        self.out.write(line + "\n")

    def _wrap_fill(self, cpu, fill):
        from .core.exceptions import GuestFault
        from .core.mmu import debug_translate

        kinds = {0: "read", 1: "write", 2: "exec"}

        def logged_fill(vaddr: int, access: int, mmu_idx: int):
            try:
                slot = fill(vaddr, access, mmu_idx)
            except GuestFault as fault:
                err = fault.error_code if fault.error_code is not None else 0
                self.out.write(
                    f"mmu: page fault vaddr={vaddr:08x} {kinds.get(access, access)} mmu_idx={mmu_idx} "
                    f"v={fault.vector:02x} e={err:04x}\n"
                )
                raise
            paddr = debug_translate(cpu, vaddr)
            where = f"{paddr:08x}" if paddr is not None else "?"
            self.out.write(
                f"mmu: tlb_fill vaddr={vaddr:08x} {kinds.get(access, access)} mmu_idx={mmu_idx} -> paddr={where}\n"
            )
            return slot

        return logged_fill


# ---- running ---------------------------------------------------------------------------------
def _serve_gdb(machine, opts: Options, debugcon: _Sink | None, console: ConsoleInput | None) -> int:
    """Run the guest under the GDB server (``-s``, ``-gdb DEV``, ``-S``, or no kernel given).

    The server's loop replaces ``_run``: it runs the guest in slices through
    the target and polls gdb between them.  ``on_slice`` does what ``_run``
    does between slices (console output, console input); the target handles
    resets as ``_run`` does (``-no-reboot`` decides).
    """
    import logging

    from .debug.target import MachineTarget
    from .rsp.server import GdbServer, parse_endpoint

    endpoint = parse_endpoint(opts.gdb or "tcp::1234")
    target = MachineTarget(machine)
    target.no_reboot = opts.no_reboot
    shown = 0

    def on_slice() -> None:
        nonlocal shown
        if debugcon is not None and len(machine.debug_output) > shown:
            debugcon.write(bytes(machine.debug_output[shown:]))
            shown = len(machine.debug_output)
        if console is not None:
            data = console.take()
            if data:
                feed_serial(machine, data)

    log = logging.getLogger("gdbemu.gdb")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("gdbemu: gdb: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.WARNING)
    server = GdbServer(target, endpoint, wait_for_gdb=opts.wait_for_gdb, log=log, on_slice=on_slice)
    try:
        server.listen()
    except OSError as exc:
        if opts.implicit_gdb:
            # Only the demo's convenience listener: run the demo anyway.
            print(
                f"gdbemu: note: {endpoint} is busy ({exc.strerror or exc}); running the demo without the GDB "
                "stub (choose a port with -gdb tcp::PORT)",
                file=sys.stderr,
            )
            return _run(machine, opts, debugcon, console, slice_insns=1 << 20)
        print(f"gdbemu: cannot listen for gdb on {endpoint}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    where = server.address
    shown_where = f"{where[0]}:{where[1]}" if isinstance(where, tuple) else str(endpoint)
    if not endpoint.uses_stdio:
        verb = "waiting for gdb" if opts.wait_for_gdb else "listening for gdb"
        print(f"gdbemu: {verb} on {shown_where} (gdb -ex 'target remote {shown_where}')", file=sys.stderr)
    start = time.perf_counter()
    result = server.run()
    on_slice()
    stop = target.last_stop or _limit_stop()
    print(_summary(stop, machine, time.perf_counter() - start), file=sys.stderr)
    if result.reason == "exited":
        return machine.exit_code if machine.exit_code is not None else 0
    if result.reason == "terminated":
        return 0 if opts.no_reboot else 1
    return 0


def _install_debug_exit(machine, wanted: tuple[int, int] | None) -> None:
    """Move or remove the machine's built-in isa-debug-exit when no device model took charge of it."""
    from .machine import DebugExit

    current = machine.mem.ports.get(0xF4)
    if not isinstance(current, DebugExit) or wanted == (0xF4, 4):
        return
    for port in range(0xF4, 0xF8):
        if machine.mem.ports.get(port) is current:
            del machine.mem.ports[port]
    if wanted is not None:
        machine.mem.add_port(wanted[0], wanted[1], current)


def _summary(stop, machine, wall: float) -> str:
    icount = machine.cpu.icount
    mips = icount / wall / 1e6 if wall else 0.0
    detail = f" ({stop.detail})" if getattr(stop, "detail", "") else ""
    return f"gdbemu: {stop.kind}{detail}: {icount} instructions in {wall:.2f} s ({mips:.1f} MIPS)"


def main(argv: list[str] | None = None) -> int:
    try:
        opts = parse_args(sys.argv[1:] if argv is None else argv)
    except UsageError as exc:
        print(f"gdbemu: {exc}", file=sys.stderr)
        return 2
    if opts.show is not None:
        return _show(opts.show)
    for note in opts.notes:
        prefix = "" if note.startswith("warning:") else "note: "
        print(f"gdbemu: {prefix}{note}", file=sys.stderr)

    from .boot.firmware import apply_cpu_model
    from .hw.pc import PCConfig, build_pc
    from .machine import Machine

    kernel = opts.kernel
    demo = kernel is None
    if demo:
        kernel = demo_kernel_path()
    assert kernel is not None
    try:
        machine = Machine(ram_size=opts.memory, ncpus=opts.smp, icount_shift=opts.icount_shift)
    except ValueError as exc:
        print(f"gdbemu: {exc}", file=sys.stderr)
        return 2
    device_models = _device_modules()
    debugcon_by_device = "debugport" in device_models
    if opts.gdb is not None and _gdb_uses_stdio(opts.gdb):
        # stdin/stdout carry gdb's packets: console devices on "stdio" write to
        # stderr instead, and nothing reads stdin for COM1.
        opts.serial = [sys.stderr.buffer if s == "stdio" else s for s in opts.serial]
        if opts.debugcon == "stdio":
            opts.debugcon = sys.stderr.buffer if debugcon_by_device else "stderr"
    config = PCConfig(
        ncpus=opts.smp,
        serial=[None if s == "none" else s for s in opts.serial],
        debugcon=(None if opts.debugcon == "none" else opts.debugcon) if debugcon_by_device else None,
        no_reboot=opts.no_reboot,
        vga=opts.vga,
        debug_exit=opts.debug_exit,
        cpu_model=opts.cpu,
    )
    if opts.rtc_base is not None:
        config.rtc_base = opts.rtc_base
    build_pc(machine, config)
    _install_debug_exit(machine, opts.debug_exit)
    apply_cpu_model(machine, opts.cpu)

    log_out: TextIO = sys.stderr
    if opts.log_items:
        if opts.log_file:
            try:
                log_out = open(opts.log_file, "w")  # noqa: SIM115 - lives as long as the run
            except OSError as exc:
                print(f"gdbemu: cannot open log file {opts.log_file!r}: {exc.strerror}", file=sys.stderr)
                return 2
        QemuLog(machine, opts.log_items, log_out)

    try:
        machine.load_multiboot(kernel, opts.append, opts.initrd)
    except FileNotFoundError:
        print(f"gdbemu: cannot open kernel {kernel!r}: no such file", file=sys.stderr)
        return 2
    except IsADirectoryError:
        print(f"gdbemu: cannot open kernel {kernel!r}: it is a directory", file=sys.stderr)
        return 2
    except (MultibootError, ELFError, ValueError) as exc:
        print(f"gdbemu: cannot boot {kernel!r}: {exc}", file=sys.stderr)
        return 2
    if demo:
        print("gdbemu: no kernel given, booting the demo kernel", file=sys.stderr)
        if opts.gdb is None and not opts.no_gdb:
            opts.gdb = "tcp::1234"  # the demo is for trying gdb on: listen unless told not to
            opts.implicit_gdb = True

    debugcon = None if debugcon_by_device else _Sink(opts.debugcon)
    console = None
    restore_tty = None
    stdin_fd = _stdin_fd()
    interactive = stdin_fd is not None and os.isatty(stdin_fd)
    if stdin_fd is not None and config.serial and config.serial[0] == "stdio" and "uart" in device_models:
        if interactive:
            restore_tty = _raw_terminal(stdin_fd)
        console = ConsoleInput(stdin_fd)
    sleep = opts.icount_sleep if opts.icount_sleep is not None else interactive
    if sleep:
        _pace_halts(machine, console)
    try:
        if opts.gdb is not None or opts.wait_for_gdb:
            return _serve_gdb(machine, opts, debugcon, console)
        return _run(machine, opts, debugcon, console, slice_insns=(1 << 16) if console else (1 << 20))
    except KeyboardInterrupt:
        print("gdbemu: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of our stdout went away (``gdbemu | head``): stop quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    finally:
        for dev in machine.devices.values():
            close = getattr(dev, "close", None)
            if callable(close):
                try:
                    close()
                except (OSError, ValueError):
                    pass
        if restore_tty is not None:
            restore_tty()
        if debugcon is not None:
            debugcon.close()
        if log_out is not sys.stderr:
            log_out.close()


def _gdb_uses_stdio(spec: str) -> bool:
    from .rsp.server import parse_endpoint

    return parse_endpoint(spec).uses_stdio


def _device_modules() -> set[str]:
    """Which device models exist (hw/*.py being written in parallel: some may not yet)."""
    import importlib.util

    from .hw.pc import DEVICES

    return {name.rsplit(".", 1)[1] for name in DEVICES if importlib.util.find_spec(name) is not None}


def _stdin_fd() -> int | None:
    try:
        fd = sys.stdin.fileno()
    except (AttributeError, OSError, ValueError):
        return None
    return fd


def _pace_halts(machine, console: ConsoleInput | None) -> None:
    """sleep=on: a halted CPU waits in real time for its timer (or for console input)."""
    clock = machine.clock
    skip = clock.skip_to
    start = time.monotonic()

    def skip_to(deadline_ns: int) -> None:
        due = start + deadline_ns / 1e9
        delay = due - time.monotonic()
        if delay > 0:
            if console is not None:
                console.wait(delay)
                if not console.queue.empty():
                    now_ns = int((time.monotonic() - start) * 1e9)
                    skip(min(deadline_ns, max(now_ns, clock.now())))
                    feed_serial(machine, console.take())
                    return
            else:
                time.sleep(delay)
        skip(deadline_ns)

    clock.skip_to = skip_to


def _run(machine, opts: Options, debugcon: _Sink | None, console: ConsoleInput | None, slice_insns: int) -> int:
    start = time.perf_counter()
    shown = 0
    resets = 0
    while True:
        if opts.max_insns is not None:
            left = opts.max_insns - machine.cpu.icount
            stop = machine.run(max_insns=min(slice_insns, left)) if left > 0 else None
        else:
            stop = machine.run(max_insns=slice_insns)
        if debugcon is not None and len(machine.debug_output) > shown:
            debugcon.write(bytes(machine.debug_output[shown:]))
            shown = len(machine.debug_output)
        if console is not None:
            data = console.take()
            if data:
                feed_serial(machine, data)
        if stop is None or (
            stop.kind == "limit" and opts.max_insns is not None and machine.cpu.icount >= opts.max_insns
        ):
            stop = stop or _limit_stop()
            print(_summary(stop, machine, time.perf_counter() - start), file=sys.stderr)
            return 0
        if stop.kind == "limit":
            continue
        if stop.kind == "exit":
            print(_summary(stop, machine, time.perf_counter() - start), file=sys.stderr)
            return machine.exit_code if machine.exit_code is not None else 0
        if stop.kind in ("triple_fault", "reset"):
            if opts.no_reboot:
                print(_summary(stop, machine, time.perf_counter() - start), file=sys.stderr)
                print(
                    "gdbemu: -no-reboot: the guest reset the machine; exiting as QEMU does (status 0)", file=sys.stderr
                )
                return 0
            resets += 1
            if resets in (1, 10, 100, 1000):
                print(f"gdbemu: {stop.kind} ({stop.detail}): rebooting (reset #{resets})", file=sys.stderr)
            machine.reset()
            continue
        if stop.kind == "idle":
            # hlt with IF=1 and no timer armed: only console input can wake the guest.
            if console is not None and not console.eof:
                console.wait(None)
                feed_serial(machine, console.take())
                continue
            print(_summary(stop, machine, time.perf_counter() - start), file=sys.stderr)
            print("gdbemu: the guest waits for an interrupt that nothing can raise; stopping", file=sys.stderr)
            return 0
        if stop.kind == "halt":
            print(_summary(stop, machine, time.perf_counter() - start), file=sys.stderr)
            print("gdbemu: the guest halted with interrupts disabled (QEMU would hang here)", file=sys.stderr)
            return 0
        print(_summary(stop, machine, time.perf_counter() - start), file=sys.stderr)
        return 0 if stop.kind == "shutdown" else 1


def _limit_stop():
    from .machine import Stop

    return Stop("limit")


def _show(what: str) -> int:
    if what == "help":
        sys.stdout.write(USAGE.format(models=", ".join(CPU_MODELS)))
    elif what == "version":
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(f"gdbemu {version('gdbemu')}")
        except PackageNotFoundError:
            print("gdbemu (not installed)")
    elif what == "cpu-help":
        for name, model in CPU_MODELS.items():
            print(f"{name:10s} {model.description}")
    elif what == "log-help":
        print("Log items (comma separated):")
        for item, text in (
            ("in_asm", "disassembly of each new translation block"),
            ("exec", "each translation block executed"),
            ("int", "each interrupt and exception delivered"),
            ("cpu", "the registers before each translation block"),
            ("mmu", "TLB fills and the page faults they raise"),
        ):
            print(f"{item:8s} {text}")
    elif what == "machine-help":
        print("pc       a PC: 8259 PICs, local APIC and I/O APIC, 8254 PIT, 16550 UARTs, CMOS/RTC, i8042, VGA text")
    elif what == "device-help":
        print("isa-debug-exit  iobase=PORT,iosize=N: a write of V exits with status (V << 1) | 1")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
