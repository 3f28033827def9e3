"""Real gdb on Debian's amd64 kernel, the way people debug Linux on QEMU: ``gdb vmlinux``, ``break start_kernel``.

Slow: the kernel runs under gdb from its PVH entry through ``start_kernel``
to its first timer tick (about a minute here).  The vmlinux is the xz payload
of Debian's bzImage (tests/support/debian.py), booted through its PVH note.
Debian ships a stub ``System.map`` (the real one is in the 819 MiB -dbg
package), so the addresses come from the kernel's own kallsyms tables
(tests/support/kallsyms.py), written out as a System.map first; the decoder
is checked against what the image itself proves: the PVH note's physical
entry is ``pvh_start_xen``'s, and ``start_kernel`` is where gdbemu stops.

With Debian's ``linux-image-VERSION-dbg`` (819 MiB, the vmlinux with DWARF)
already in the cache (``debian.cached_debug_vmlinux``: never downloaded
here; fetch it once with ``apt-get download linux-image-6.1.0-57-amd64-dbg``
in the cache's ``amd64`` directory), gdb loads its symbols and the same
session shows source lines: ``break start_kernel`` stops in init/main.c.
The sources are not shipped, so the test reads what the line table says
(``info line``, the stop's file and line, ``frame``, ``info source``).
"""

from __future__ import annotations

from bisect import bisect_right
from pathlib import Path

import pytest
from support import debian
from support.kallsyms import KallSyms, kallsyms, write_system_map

from gdbemu.boot.pvh import find_pvh_entry
from gdbemu.testing import GdbNotFoundError, Session, find_gdb

try:
    GDB: str | None = find_gdb()
except GdbNotFoundError:
    GDB = None

pytestmark = [pytest.mark.slow, pytest.mark.gdb, pytest.mark.skipif(GDB is None, reason="gdb is not installed")]
ROOT = Path(__file__).resolve().parents[2]
KERNEL_MAP = 0xFFFFFFFF80000000  # __START_KERNEL_map: virtual = physical + this for the kernel image
EFER_LME, EFER_LMA = 1 << 8, 1 << 10
# What writes jiffies_64 (kernel/time/timekeeping.c do_timer, kernel/time/tick-sched.c): the periodic
# tick early in boot, the nohz one later.
TIMER_PATH = {"do_timer", "tick_do_update_jiffies64", "tick_periodic", "tick_handle_periodic"}


@pytest.fixture(scope="module")
def kernel() -> tuple[Path, KallSyms]:
    try:
        k = debian.fetch("amd64")
    except debian.UnavailableError as exc:
        pytest.skip(f"Debian's amd64 kernel cannot be fetched: {exc}")
    vmlinux = k.vmlinux()
    syms = kallsyms(vmlinux.read_bytes())
    write_system_map(syms, k.root / f"System.map-kallsyms-{k.version}")
    return vmlinux, syms


@pytest.fixture(scope="module")
def debug_vmlinux(kernel: tuple[Path, KallSyms]) -> Path:
    k = debian.fetch("amd64")
    dbg = debian.cached_debug_vmlinux(k)
    if dbg is None:
        pytest.skip(
            f"{k.package}-dbg is not in the cache ({k.root}); 819 MiB, never downloaded by the test: "
            f"`cd {k.root} && apt-get download {k.package}-dbg` once to run it"
        )
    return dbg


def _function_at(syms: KallSyms, pc: int) -> str:
    text = sorted((a, n) for n, a in syms.addresses.items() if syms.types[n] in "tTwW")
    i = bisect_right([a for a, _ in text], pc) - 1
    return text[i][1] if i >= 0 else "?"


def test_kallsyms_agree_with_the_pvh_note(kernel: tuple[Path, KallSyms]) -> None:
    vmlinux, syms = kernel
    assert len(syms.addresses) > 50_000
    entry = find_pvh_entry(vmlinux.read_bytes())
    assert entry is not None and syms.addresses["pvh_start_xen"] == entry + KERNEL_MAP
    assert syms.types["start_kernel"] == "T" and syms.types["jiffies_64"] in "dD"


def test_break_start_kernel_watch_jiffies_info_registers(kernel: tuple[Path, KallSyms]) -> None:
    vmlinux, syms = kernel
    start_kernel, jiffies = syms.addresses["start_kernel"], syms.addresses["jiffies"]
    s = Session.boot(vmlinux, append=debian.APPEND, memory=256, timeout=600)
    try:
        regs = s.registers()
        assert regs["rip"] == syms.addresses["pvh_start_xen"] - KERNEL_MAP  # PVH: 32-bit entry, paging off
        assert regs["efer"] & EFER_LMA == 0

        s.break_at(f"*{start_kernel:#x}")
        stop = s.cont()
        assert stop.reason == "breakpoint" and stop.pc == start_kernel
        regs = s.registers()
        assert regs["rip"] == start_kernel and regs["cs"] == 0x10  # __KERNEL_CS
        assert regs["efer"] & (EFER_LME | EFER_LMA) == EFER_LME | EFER_LMA
        assert regs["cr0"] & 0x80000001 == 0x80000001 and regs["cr4"] & 0x20  # PG, PE; PAE
        assert regs["rsp"] >> 47 == (1 << 17) - 1  # a kernel-half stack (init_thread_union)
        info = s.gdb_command("info registers rip efer cs r15")
        assert f"{start_kernel:#x}" in info and "r15" in info and "efer" in info
        s.gdb_command("delete")

        before = int.from_bytes(s.read_memory(jiffies, 8), "little")
        s.watch(f"*(unsigned long *){jiffies:#x}")
        stop = s.cont()
        assert stop.reason == "watchpoint", stop
        after = int.from_bytes(s.read_memory(jiffies, 8), "little")
        assert after == (before + 1) % (1 << 64) and int(stop.new or "0", 0) == after
        assert _function_at(syms, stop.pc) in TIMER_PATH, (hex(stop.pc), _function_at(syms, stop.pc))
    finally:
        s.close()


def test_debug_package_shows_start_kernel_source_lines(kernel: tuple[Path, KallSyms], debug_vmlinux: Path) -> None:
    vmlinux, syms = kernel
    s = Session.boot(vmlinux, append=debian.APPEND, memory=256, timeout=600)
    try:
        s.gdb_command(f"symbol-file {debug_vmlinux}")
        # The -dbg vmlinux is this image's: its start_kernel is where kallsyms puts it.
        where = s.gdb_command("info address start_kernel")
        assert f"{syms.addresses['start_kernel']:#x}" in where, where
        line = s.gdb_command("info line start_kernel")
        assert 'of "init/main.c" starts at address' in line, line
        first = int(line.split("Line ", 1)[1].split()[0])

        s.break_at("start_kernel")  # by name: gdb puts it past the prologue, from the line table
        stop = s.cont()
        assert stop.reason == "breakpoint" and stop.function == "start_kernel", stop
        assert stop.file is not None and stop.file.endswith("init/main.c") and stop.line is not None, stop
        assert syms.addresses["start_kernel"] <= (stop.pc or 0) < syms.addresses["start_kernel"] + 0x100
        assert first <= stop.line < first + 50
        at = s.gdb_command("info line *$pc")
        assert f'Line {stop.line} of "init/main.c"' in at, at
        frame = s.gdb_command("frame")
        assert "start_kernel" in frame and f"init/main.c:{stop.line}" in frame, frame
        # No sources here: `list` names the file and line it would show.
        listing = s.gdb_command("list")
        assert "init/main.c" in listing, listing
        source = s.gdb_command("info source")
        assert "Current source file is init/main.c" in source and "Source language is c" in source, source
    finally:
        s.close()
