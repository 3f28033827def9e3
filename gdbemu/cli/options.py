"""The command line: QEMU's spelling for the options gdbemu honours (see ``gdbemu.cli``).

A command line from an OS-dev Makefile written for ``qemu-system-i386``
should run unchanged.  So the parser is QEMU's, not argparse's: every option
is a single-dash word (``--word`` works too), options that take a value take
the next argument whatever it looks like (``-append "-v quiet"``), and an
option QEMU has but gdbemu cannot honour is accepted with a one-line note on
stderr when ignoring it changes nothing a kernel can observe (``-accel kvm``:
we always emulate), or refused with ``UsageError`` (exit code 2) when it
would (``-smp 4``).  ``parse_args`` has no side effects: the notes are
collected in ``Options.notes`` for the caller to print.
"""

from __future__ import annotations

import calendar
import re
import sys
import time
from dataclasses import dataclass, field

from ..boot.firmware import CPU_MODELS
from ..core import cpuid
from ..debug.trace import LOG_ITEMS
from ..softmmu.ram_layout import check_pc_ram_size


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
    "loadvm": True,
    "snapshot-file": True,
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
    "curses": False,
    "vnc": True,
    "sdl": False,
    "echr": True,
    "msg": True,
    "no-user-config": False,
    "nodefconfig": False,
    "overcommit": True,
    "sandbox": True,
    "uuid": True,
    "smbios": True,
    "action": True,
    "watchdog-action": True,
    "g": True,
    "fw_cfg": True,
    "blockdev": True,
    "mem-prealloc": False,
    "numa": True,
    "mon": True,
    "h": False,
    "help": False,
    "version": False,
}
# Disk images: with -kernel they are ignored with a note; without it, the run stops (exit 2) with DISK_BOOT.
DISK_OPTIONS = ("drive", "hda", "hdb", "cdrom", "fda", "blockdev")
DISK_BOOT = "{option} needs -kernel FILE: gdbemu boots kernels with -kernel (there is no BIOS disk boot)"
# What gdbemu does for -display names it does not have.
DISPLAY_INSTEAD = (
    "gdbemu has no graphical window; it draws the VGA text screen in the terminal "
    "(-display curses) and writes PNG screendumps (gdb: monitor screendump FILE)"
)

# Options whose only effect is on things gdbemu does not have: accepted with a note.
IGNORED = {
    "name": "the VM name only titles windows",
    "boot": "there are no disks; the kernel is booted directly",
    "k": "there is no graphical display to map keys from",
    "parallel": "there is no parallel port",
    "net": "there is no network card",
    "netdev": "there is no network card",
    "nic": "there is no network card",
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
    "echr": "there is no monitor to escape to",
    "msg": "messages are gdbemu's own",
    "no-user-config": "there is no configuration file",
    "nodefconfig": "there is no configuration file",
    "overcommit": "memory is committed as the guest touches it",
    "sandbox": "there is no sandbox",
    "uuid": "the SMBIOS tables are not built",
    "smbios": "the SMBIOS tables are not built",
    "action": "a reset, shutdown or panic ends or reboots the run as -no-reboot says",
    "watchdog-action": "there is no watchdog",
    "g": "there is no graphical display to size",
    "fw_cfg": "fw_cfg files are not configurable",
    "mem-prealloc": "memory is committed as the guest touches it",
    "numa": "there is one NUMA node",
    "mon": "there is no monitor",
}
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
usage: gdbemu [qemu-system-x86_64|qemu-system-i386] [options] [KERNEL]

  qemu-system-x86_64     (or the command gdbemu-x86_64) a 64-bit machine: -cpu qemu64 by default,
                         gdb sees amd64 registers; a 64-bit kernel (ELF64) chooses it too

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
  -s, -gdb DEV, -S       GDB stub endpoint (tcp::1234), wait for gdb before running (-S needs -s or -gdb)
  -vga std|none, -nographic, -display, -monitor, -accel, -machine, -nodefaults   as QEMU
  -max-insns N           stop after N guest instructions
  -loadvm NAME           start from snapshot NAME (made by `monitor savevm NAME`)
  -snapshot-file PATH    where savevm/loadvm keep snapshots (default: KERNEL.snapshots)
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
    cpu_given: bool = False  # -cpu was on the command line (else the kernel and the spelling choose)
    # The QEMU binary the command line is spelled for: "x86_64" (qemu-system-x86_64: a 64-bit
    # machine, qemu64 by default) or "i386".  See parse_args and cli.run.main.
    system: str = "i386"
    vga: bool = True
    debug_exit: tuple[int, int] | None = (0xF4, 4)
    rtc_base: int | None = None
    gdb: str | None = None  # the GDB stub's endpoint ("tcp::1234", "unix:PATH", ...) or None
    wait_for_gdb: bool = False  # -S: do not run the guest until gdb says so
    no_gdb: bool = False  # -gdb none: no stub even for the demo kernel
    implicit_gdb: bool = False  # the stub was not asked for (the demo's default listener)
    max_insns: int | None = None
    loadvm: str | None = None  # -loadvm NAME: start from that snapshot
    snapshot_file: str | None = None  # -snapshot-file PATH (default: KERNEL.snapshots)
    nographic: bool = False
    nodefaults: bool = False
    display: str | None = None  # "curses", "none", or None: curses when the terminal and guest allow (cli/display.py)
    serial_given: bool = False  # -serial was on the command line (the curses display's default rule)
    disks: list[str] = field(default_factory=list)  # -hda/-cdrom/...: the option names given
    notes: list[str] = field(default_factory=list)
    show: str | None = None  # "help", "version", "cpu-help", "log-help": print and exit 0


_SIZE_NUMBER = re.compile(r"([0-9]+)(?:\.([0-9]*))?")


def parse_size(text: str) -> int:
    """QEMU's -m: a number of MiB, or with a K/M/G/T suffix (an optional trailing B), or size=..."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    shown = text if len(text) <= 40 else text[:37] + "..."  # errors are one short line
    spec = text.strip()
    for part in spec.split(","):
        if part.lower().startswith("size="):
            spec = part[5:]
            break
        if "=" not in part:
            spec = part
            break
    else:
        raise UsageError(f"-m {shown!r}: no size given")
    s = spec.strip().upper()
    if s.endswith("B") and len(s) > 1 and s[-2] in units:
        s = s[:-1]
    unit = 1 << 20
    if s and s[-1] in units:
        s, unit = s[:-1], units[s[-1]]
    # A plain decimal number, exactly (no float: inf, nan, 1e400 and 5000 digits are not sizes).
    number = _SIZE_NUMBER.fullmatch(s.strip()) if len(s) <= 40 else None
    if number is None:
        raise UsageError(f"invalid memory size {shown!r} (examples: 128, 128M, 1G, size=64M)")
    whole, frac = number.group(1), number.group(2) or ""
    value: int = (int(whole + frac) * unit) // 10 ** len(frac)
    value &= ~0xFFF
    try:
        check_pc_ram_size(value)
    except ValueError:
        raise UsageError(f"memory size {shown!r} out of range (2M..3G)") from None
    return value


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


def _parse_chardev_backend(value: str) -> tuple[str, str]:
    """``-chardev BACKEND,id=ID[,path=P]...`` -> (ID, the -serial spelling of the backend)."""
    kv = _parse_kv(value, first_key="backend")
    backend, ident = kv.get("backend", ""), kv.get("id", "")
    if not ident:
        raise UsageError(f"-chardev {value!r}: id=... missing")
    if backend in ("stdio", "null"):
        return ident, backend
    if backend == "file" and kv.get("path"):
        return ident, "file:" + kv["path"]
    raise UsageError(f"-chardev {value!r}: gdbemu has the stdio, file (path=...) and null backends")


def _parse_chardev(value: str, option: str, notes: list[str]) -> str:
    """-serial / -debugcon: stdio, file:PATH, null, none (mon:stdio and vc accepted; chardev:ID resolved later)."""
    if value.startswith("chardev:") and len(value) > 8:
        return value
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


SYSTEMS = {"qemu-system-x86_64": "x86_64", "qemu-system-i386": "i386"}


def system_of(program: str) -> str | None:
    """The system a program name spells: ``qemu-system-x86_64``, ``gdbemu-x86_64`` -> "x86_64"."""
    base = program.replace("\\", "/").rsplit("/", 1)[-1]
    if base.endswith("x86_64") or base.endswith("x86-64"):
        return "x86_64"
    if base.endswith("i386"):
        return "i386"
    return None


def parse_args(argv: list[str], system: str = "i386") -> Options:
    """Parse a QEMU-style command line (see the module docstring); raises UsageError.

    ``system`` is what the program name said (``gdbemu-x86_64``); a first word
    ``qemu-system-x86_64`` or ``qemu-system-i386`` (a QEMU command pasted
    after ``gdbemu``) says it too.
    """
    opts = Options()
    opts.system = system
    if argv and argv[0].replace("\\", "/").rsplit("/", 1)[-1] in SYSTEMS:
        opts.system = SYSTEMS[argv[0].replace("\\", "/").rsplit("/", 1)[-1]]
        argv = argv[1:]
    chardevs: dict[str, str] = {}  # -chardev id -> the -serial spelling of its backend
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
            if v.split(",", 1)[0] == "help":
                opts.show = "cpu-help"
            else:
                try:
                    resolved = cpuid.resolve(v)  # QEMU's model names and +feat,-feat (core/cpuid.py)
                except ValueError as exc:
                    raise UsageError(f"-cpu {v!r}: {exc}") from None
                opts.cpu = v
                opts.cpu_given = True
                opts.notes.extend(resolved.notes)
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
            kind = v.split(",", 1)[0]
            if kind in ("none", "curses"):
                opts.display = kind
            else:
                opts.display = "none"
                opts.notes.append(f"-display {v}: {DISPLAY_INSTEAD}")
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
                from ..rsp.server import parse_endpoint  # only with gdb: the server is not imported otherwise

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
        elif name == "loadvm":
            opts.loadvm = v
        elif name == "snapshot-file":
            opts.snapshot_file = v
        elif name == "max-insns":
            opts.max_insns = _parse_int(v, "-max-insns")
            if opts.max_insns <= 0:
                raise UsageError("-max-insns must be positive")
        elif name == "curses":  # QEMU's old spelling of -display curses
            opts.display = "curses"
        elif name in ("vnc", "sdl"):
            opts.display = "none"
            opts.notes.append(f"-{name}: {DISPLAY_INSTEAD}")
        elif name in DISK_OPTIONS:
            opts.disks.append(name)
        elif name == "chardev":
            ident, backend = _parse_chardev_backend(v)
            chardevs[ident] = backend
        elif name in IGNORED:
            opts.notes.append(f"-{name}: ignored ({IGNORED[name]})")
        else:  # pragma: no cover - every table entry is handled above
            raise UsageError(f"option {arg!r} is not handled")

    def resolve(spec: str, option: str) -> str:
        if not spec.startswith("chardev:"):
            return spec
        if spec[8:] not in chardevs:
            raise UsageError(f"{option} {spec}: no -chardev with id={spec[8:]}")
        return chardevs[spec[8:]]

    opts.serial = [resolve(x, "-serial") for x in opts.serial]
    opts.debugcon = resolve(opts.debugcon, "-debugcon")
    if opts.kernel is None:
        # As QEMU: -append and -initrd only make sense with -kernel.
        for name, given in (("append", bool(opts.append)), ("initrd", opts.initrd is not None)):
            if given:
                raise UsageError(f"-{name} only allowed with -kernel option")
        if opts.disks and opts.show is None:
            raise UsageError(DISK_BOOT.format(option="-" + opts.disks[0]))
    for disk in dict.fromkeys(opts.disks):
        opts.notes.append(f"-{disk}: ignored (there are no disks; the kernel is booted with -kernel)")
    if opts.wait_for_gdb and opts.no_gdb:
        raise UsageError("-S with -gdb none: nothing could start the CPU (there is no monitor); drop one of them")
    opts.serial_given = serial_given
    if not serial_given:
        opts.serial = [] if opts.nodefaults else ["stdio"]
    if opts.wait_for_gdb and opts.gdb is None:
        # QEMU opens nothing without -s/-gdb and waits for its monitor's "cont"; gdbemu has no
        # monitor, so a -S that nothing could ever end is refused rather than hung.
        raise UsageError("-S waits for gdb, but no GDB stub was asked for: add -s (tcp::1234) or -gdb DEV")
    if opts.nodefaults and not vga_given:
        opts.vga = False
    return opts


def show(what: str) -> int:
    """Print what ``-help``, ``-version``, ``-cpu help``, ``-d help``, ... ask for; exit status 0."""
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
            print(f"{name:10s} {model}")
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
