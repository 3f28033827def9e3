"""Debian's own kernels, fetched at test time (tests/support/debian.py), on gdbemu and on QEMU.

All slow.  They skip only when the packages cannot be downloaded (the reason
is given); everything after the download must work.

* The amd64 kernel boots to ``Kernel panic - not syncing: VFS: Unable to
  mount root fs`` both ways people boot it: the bzImage (through the 32-bit
  boot protocol: its decompressor runs first) and the vmlinux (the xz
  payload of the bzImage, through its PVH note), the banner lines compared
  with QEMU's (the version line, the BIOS-e820 lines); with an initramfs
  (busybox-static, ``/init`` prints a line and runs ``poweroff -f``) the
  kernel enters ACPI S5 and gdbemu exits with status 0, as QEMU does.
* The 686 kernel has no PVH note (gdbemu refuses its vmlinux with QEMU's own
  line) and its bzImage decompresses itself for 2.3 billion instructions
  before the kernel's first one (about 13 minutes on one worker here).  Its
  boot to the root-fs panic runs in the slow suite; the same boot with the
  initramfs, as long again, runs only when asked for
  (``GDBEMU_DEBIAN_686=1``) to keep CI within its time; see
  benchmarks/linux_bench.py for how fast each part runs.
* Every run is bounded by an instruction budget (below; ``GDBEMU_DEBIAN_BUDGET``
  replaces it); a failure message says where the kernel stopped: the stop,
  RIP, the instruction count and the last serial lines.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from support import debian

from gdbemu.boot.elf import parse_elf
from gdbemu.boot.pvh import MISSING_NOTE, find_pvh_entry
from gdbemu.hw.pc import PCConfig, build_pc
from gdbemu.machine import Machine

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
RAM = 256 << 20
PANIC = "Kernel panic - not syncing: VFS: Unable to mount root fs"
S5 = "ACPI: PM: Preparing to enter system sleep state S5"


# Instructions to the end of each run (measured: benchmarks/linux_bench.py): the amd64 vmlinux about
# 420 M to the panic and 735 M to the power-off with the initramfs; the bzImage adds its decompressor
# (xz with the x86 BCJ filter into 66 MB: about 4.5 G, the kernel entered at a KASLR address); the
# 686 kernel proper about 380 M after 2.3 G of decompression.  Each budget is about 1.4-1.7 times
# that: it bounds a broken run, not a working one.  GDBEMU_DEBIAN_BUDGET, when set, replaces them all.
def budget(default: int) -> int:
    return int(os.environ.get("GDBEMU_DEBIAN_BUDGET", default))


PVH_BUDGET, BZ_BUDGET, INITRAMFS_BUDGET, I386_BUDGET = 700_000_000, 7_000_000_000, 1_200_000_000, 4_500_000_000
RUN_686 = pytest.mark.skipif(
    os.environ.get("GDBEMU_DEBIAN_686") != "1",
    reason="a second 686 bzImage boot (2.3 G instructions of decompression first) would make CI too long: "
    "GDBEMU_DEBIAN_686=1 runs it",
)


def _fetch(arch: str) -> debian.DebianKernel:
    try:
        return debian.fetch(arch)
    except debian.UnavailableError as exc:
        pytest.skip(f"Debian's {arch} kernel cannot be fetched: {exc}")


def boot_gdbemu(kernel: Path, append: str, limit: int) -> tuple[str, Machine, str]:
    """Run until the root-fs panic, the S5 power-off or any other end; (serial log, machine, how it ended)."""
    serial = io.BytesIO()
    m = Machine(ram_size=RAM)
    build_pc(m.bus, PCConfig(serial=[serial]))
    m.load_kernel(str(kernel), append)
    ended = "budget"
    while m.cpu.icount < limit:
        stop = m.run(max_insns=min(50_000_000, limit - m.cpu.icount))
        log = serial.getvalue().decode(errors="replace")
        if stop.kind != "limit":
            ended = f"{stop.kind} ({stop.detail})"
            break
        if PANIC in log:
            ended = "panic"
            break
    return serial.getvalue().decode(errors="replace"), m, ended


def where(log: str, m: Machine, ended: str) -> str:
    tail = "\n    ".join(log.strip().splitlines()[-5:]) or "(no serial output)"
    return f"stopped: {ended} at RIP {m.cpu.eip:#x} after {m.cpu.icount} instructions; serial tail:\n    {tail}"


def _qemu(kernel: Path, arch: str, tmp_path: Path, initrd: Path | None = None) -> str:
    out = tmp_path / f"qemu-{arch}.log"
    try:
        debian.run_qemu(kernel, debian.APPEND, initrd, arch, out)
    except debian.UnavailableError as exc:
        pytest.skip(str(exc))
    return out.read_text(errors="replace")


# ---- the images ----------------------------------------------------------------------------------
def test_amd64_vmlinux_pvh_note_is_pvh_start_xen():
    """Debian's System.map is a stub (the real one is in the -dbg package) and the vmlinux carries
    no symbols, so pvh_start_xen is recognised by its code (arch/x86/platform/pvh/head.S): the
    note's physical address, inside an executable segment, holds ``cld; lgdt``."""
    k = _fetch("amd64")
    data = k.vmlinux().read_bytes()
    entry = find_pvh_entry(data)
    assert entry is not None
    elf = parse_elf(data)
    seg = next(s for s in elf.segments if s.paddr <= entry < s.paddr + s.filesz)
    assert seg.flags & 1  # PF_X
    code = data[seg.offset + entry - seg.paddr :][:4]
    assert code == bytes.fromhex("fc0f0115")  # cld; lgdt m32


def test_686_vmlinux_without_pvh_note_refused_like_qemu(tmp_path):
    k = _fetch("i386")
    vmlinux = k.vmlinux()
    assert vmlinux.read_bytes()[:5] == b"\x7fELF\x01"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-m", "gdbemu.cli", "-nographic", str(vmlinux)],
        capture_output=True, timeout=120, env=env, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.returncode == 2
    err = proc.stderr.decode().strip()
    assert err.count("\n") == 0 and MISSING_NOTE in err
    q = subprocess.run(
        ["qemu-system-i386", "-display", "none", "-kernel", str(vmlinux)],
        capture_output=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert q.returncode != 0 and MISSING_NOTE in q.stderr.decode()


@pytest.mark.parametrize("arch", ["amd64", "i386"])
def test_bzimage_setup_header_and_entry(arch):
    k = _fetch(arch)
    m = Machine(ram_size=RAM)
    build_pc(m.bus, PCConfig(serial=["null"]))
    info = m.load_kernel(str(k.bzimage), debian.APPEND)
    assert getattr(info, "protocol", 0) == 0x020F  # Debian 12's kernels: boot protocol 2.15
    zp = m.mem.read(0x10000, 4096)
    assert zp[0x210] == 0xB0 and zp[0x211] & 0x81 == 0x81
    assert m.mem.read(0x20000, len(debian.APPEND)) == debian.APPEND.encode()
    stop = m.run(max_insns=50)
    assert stop.kind == "limit"  # the kernel's startup_32 runs


# ---- to the root-fs panic, compared with QEMU ---------------------------------------------------
def _panic_run(kernel: Path, arch: str, tmp_path: Path, limit: int) -> None:
    log, m, ended = boot_gdbemu(kernel, debian.APPEND, budget(limit))
    assert ended == "panic", where(log, m, ended)
    qlog = _qemu(kernel, arch, tmp_path)
    assert PANIC in qlog
    ours, theirs = debian.banner(log), debian.banner(qlog)
    assert ours["version"] == theirs["version"] and ours["version"]
    assert ours["e820"] == theirs["e820"]


def test_amd64_bzimage_to_root_fs_panic(tmp_path):
    k = _fetch("amd64")
    _panic_run(k.bzimage, "amd64", tmp_path, BZ_BUDGET)


def test_amd64_vmlinux_pvh_to_root_fs_panic(tmp_path):
    k = _fetch("amd64")
    _panic_run(k.vmlinux(), "amd64", tmp_path, PVH_BUDGET)


def test_686_bzimage_to_root_fs_panic(tmp_path):
    k = _fetch("i386")
    _panic_run(k.bzimage, "i386", tmp_path, I386_BUDGET)


# ---- an initramfs whose /init powers off ----------------------------------------------------
def _poweroff_run(kernel: Path, initrd: Path, tmp_path: Path, limit: int) -> None:
    """``gdbemu -kernel K -initrd I``, the command people type: /init's line, the kernel's S5 line as
    the last one, and the gdbemu process's exit status 0 (ACPI S5 through PM1a_CNT ends the run)."""
    log = tmp_path / "serial.log"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    argv = [sys.executable, "-m", "gdbemu.cli", "-kernel", str(kernel), "-initrd", str(initrd), "-append",
            debian.APPEND, "-m", str(RAM >> 20), "-display", "none", "-serial", f"file:{log}", "-monitor", "none",
            "-no-reboot", "-max-insns", str(budget(limit)), "-d", "int", "-D", os.devnull]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, timeout=3600, env=env, stdin=subprocess.DEVNULL)
    text = log.read_text(errors="replace") if log.exists() else ""
    tail = "\n    ".join(text.strip().splitlines()[-5:]) or "(no serial output)"
    err = proc.stderr.decode(errors="replace")
    what = f"exit status {proc.returncode}, stderr {err[-300:]!r}; serial tail:\n    {tail}"
    assert debian.INIT_LINE in text and S5 in text, what
    assert proc.returncode == 0, what
    # -d makes gdbemu name how the run ended: the guest's power-off, not the instruction budget
    assert re.search(r"^gdbemu: exit\b.*: \d+ instructions", err, re.M), what
    # nothing after the power-off: S5 is prepared, the kernel says "reboot: Power down" and writes PM1a_CNT
    last = [line.split("] ", 1)[-1] for line in text.rstrip().splitlines()[-2:]]
    assert last in ([S5, "reboot: Power down"], [last[0], S5]), what


def test_amd64_vmlinux_initramfs_poweroff_ends_gdbemu_with_0(tmp_path):
    k = _fetch("amd64")
    _poweroff_run(k.vmlinux(), k.initramfs(), tmp_path, INITRAMFS_BUDGET)


@RUN_686
def test_686_bzimage_initramfs_poweroff_ends_gdbemu_with_0(tmp_path):
    k = _fetch("i386")
    _poweroff_run(k.bzimage, k.initramfs(), tmp_path, I386_BUDGET + 500_000_000)


def test_initramfs_poweroff_on_qemu(tmp_path):
    """The reference for the two tests above: QEMU prints the init line, enters S5 and exits."""
    k = _fetch("amd64")
    log = _qemu(k.bzimage, "amd64", tmp_path, k.initramfs())
    assert debian.INIT_LINE in log and S5 in log
