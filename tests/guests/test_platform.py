"""The platform pieces Linux probes, as on QEMU's ``pc`` machine: PCI configuration space (i440FX,
PIIX3, PIIX4 PM), the ACPI PM blocks (PM timer, S5 power-off), the HPET.

* units: each device through the port/MMIO bus of a built PC, virtual time
  moved by hand (the PM timer's rate, its 24-bit wrap and TMR_STS; HPET
  counter, one-shot and periodic comparators, level interrupts and their
  status; PCI byte/word accesses and empty slots; power-off);
* ``dev_platform``, a guest that probes them as Linux does, on gdbemu and on
  qemu-system-i386: the same PCI functions (QEMU's pc also has the PIIX3
  IDE function 01.1, which gdbemu has no disks for: the one recorded
  difference), the same checks passing, and both runs ending at the ACPI S5
  write with exit status 0.  The timing checks (PM timer and HPET against
  PIT channel 2) are exact on gdbemu (virtual time from the instruction
  count) but follow the host's clock on QEMU, so on QEMU only their being
  present is compared.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from gdbemu.hw.acpi_pm import PM_TIMER_FREQ
from gdbemu.hw.pc import PCConfig, build_pc
from gdbemu.machine import Machine

REPO = Path(__file__).resolve().parents[2]
HPET = 0xFED00000


def _pc() -> Machine:
    m = Machine(ram_size=32 << 20)
    build_pc(m.bus, PCConfig(serial=["null"]))
    return m


def _advance(m: Machine, ns: int) -> None:
    """Move virtual time by ``ns`` with no guest code, firing the timers due on the way."""
    target = m.clock.now() + ns
    while True:
        deadline = m.clock.next_deadline()
        if deadline is None or deadline > target:
            break
        m.clock.advance_to(deadline)
        m.clock.run_timers()
    m.clock.advance_to(target)


# ---- PCI ------------------------------------------------------------------------------------
def _cfg(m: Machine, bus: int, dev: int, fn: int, reg: int, size: int = 4) -> int:
    m.mem.io_write(0xCF8, 4, 0x80000000 | (bus << 16) | (dev << 11) | (fn << 8) | (reg & 0xFC))
    return m.mem.io_read(0xCFC + (reg & 3), size)


def test_pci_functions_of_the_pc_board():
    m = _pc()
    assert _cfg(m, 0, 0, 0, 0) == 0x12378086  # i440FX
    assert _cfg(m, 0, 1, 0, 0) == 0x70008086  # PIIX3 ISA
    assert _cfg(m, 0, 1, 0, 0x0E, 1) & 0x80  # multi-function header
    assert _cfg(m, 0, 1, 3, 0) == 0x71138086  # PIIX4 PM
    assert _cfg(m, 0, 1, 3, 0x08) == 0x06800003
    assert _cfg(m, 0, 1, 3, 0x40) & 0xFFC0 == 0x600
    assert _cfg(m, 0, 1, 3, 0x3C, 1) == 9  # the SCI
    assert _cfg(m, 0, 2, 0, 0) == 0xFFFFFFFF  # empty slot
    assert _cfg(m, 1, 0, 0, 0) == 0xFFFFFFFF  # no bus 1
    assert _cfg(m, 0, 0, 0, 2, 2) == 0x1237  # word access at 0xCFE
    m.mem.io_write(0xCF8, 4, 0x00000000)  # enable bit clear: reads all ones
    assert m.mem.io_read(0xCFC, 4) == 0xFFFFFFFF
    _cfg(m, 0, 1, 3, 0x00)
    m.mem.io_write(0xCFC, 4, 0xDEADBEEF)  # vendor/device are read-only
    assert _cfg(m, 0, 1, 3, 0) == 0x71138086


# ---- ACPI PM --------------------------------------------------------------------------------
def test_pm_timer_counts_3_579545_mhz_in_24_bits():
    m = _pc()
    start = m.mem.io_read(0x608, 4)
    _advance(m, 1_000_000_000)
    assert (m.mem.io_read(0x608, 4) - start) & 0xFFFFFF == PM_TIMER_FREQ & 0xFFFFFF
    assert not m.mem.io_read(0x600, 2) & 1  # bit 23 changes every 2**23 ticks (2.34 s)
    _advance(m, 2_000_000_000)
    assert m.mem.io_read(0x600, 2) & 1  # TMR_STS: bit 23 changed
    m.mem.io_write(0x600, 2, 1)  # write 1 to clear
    assert not m.mem.io_read(0x600, 2) & 1
    _advance(m, 10 * 1_000_000_000)
    assert m.mem.io_read(0x608, 4) < 1 << 24


def test_pm_timer_sci_when_enabled():
    m = _pc()
    pm = m.bus.devices["acpi_pm"]
    levels: list[int] = []

    class Sink:
        def set_irq(self, line: int, level: int) -> None:
            if line == 9:
                levels.append(level)

    m.bus.irq_sinks.append(Sink())
    m.mem.io_write(0x602, 2, 1)  # TMR_EN
    _advance(m, (1 << 23) * 1_000_000_000 // PM_TIMER_FREQ + 1000)
    assert levels and levels[-1] == 1
    m.mem.io_write(0x600, 2, 1)
    assert levels[-1] == 0
    assert pm.pm1_en == 1


def test_s5_power_off_ends_the_run_with_status_0():
    m = _pc()
    # A guest that writes SLP_TYP 0 | SLP_EN to PM1a_CNT: mov dx,0x604; mov ax,0x2000; out dx,ax; hlt
    code = bytes.fromhex("66ba040666b8002066eff4")
    m.mem.write(0x100000, code)
    m.cpu.setup_flat32()
    m.cpu.eip = 0x100000
    stop = m.run(max_insns=100)
    assert stop.kind == "exit" and m.exit_code == 0 and "S5" in stop.detail
    assert m.bus.devices["acpi_pm"].sleep_requests == [0]


# ---- HPET -----------------------------------------------------------------------------------
def test_hpet_counter_one_shot_and_periodic():
    m = _pc()
    hpet = m.bus.devices["hpet"]
    mmio = hpet.mmio_read
    assert mmio(0, 4) == 0x8086A201 and mmio(4, 4) == 10_000_000
    hpet.mmio_write(0x10, 4, 1)
    _advance(m, 1_000_000)  # 1 ms = 100,000 ticks
    assert mmio(0xF0, 8) == 100_000
    irqs: list[tuple[int, int, int]] = []

    class Sink:
        def set_irq(self, line: int, level: int) -> None:
            if line in (0, 8, 20):
                irqs.append((m.clock.now(), line, level))

    m.bus.irq_sinks.append(Sink())
    # timer 0, legacy route, one-shot 500 ticks from now (5 us)
    hpet.mmio_write(0x108, 8, 100_500)
    hpet.mmio_write(0x100, 4, 0x04)
    hpet.mmio_write(0x10, 4, 3)
    _advance(m, 10_000)
    assert [(line, lvl) for _t, line, lvl in irqs] == [(0, 1), (0, 0)]
    assert irqs[0][0] == 1_000_000 + 5_000
    # timer 1, periodic, level-triggered, routed to GSI 20 (legacy off): every 1000 ticks
    irqs.clear()
    hpet.mmio_write(0x10, 4, 1)
    hpet.mmio_write(0x120, 4, 0x4E | (20 << 9))  # level, INT_ENB, periodic, VAL_SET, route 20
    hpet.mmio_write(0x128, 8, mmio(0xF0, 8) + 1000)  # VAL_SET: the first match (and the period)
    hpet.mmio_write(0x128, 8, 1000)  # ...then the period alone, as Linux's hpet_set_periodic writes it
    _advance(m, 10_000)
    assert (20, 1) in [(line, lvl) for _t, line, lvl in irqs]
    assert mmio(0x20, 4) & 2  # Tn_INT_STS of timer 1
    hpet.mmio_write(0x20, 4, 2)
    assert irqs[-1][1:] == (20, 0)
    count = hpet.timers[1].interrupts
    _advance(m, 100_000)  # 10,000 ticks: ten more periods
    assert hpet.timers[1].interrupts == count + 10


# ---- the guest, on gdbemu and on QEMU ---------------------------------------------------------
TIMING_CHECKS = {"pm-timer-3.58MHz", "hpet-counter-100MHz"}


def _lines(out: bytes) -> tuple[list[str], dict[str, bool]]:
    text = out.decode(errors="replace").splitlines()
    pci = [line for line in text if line.startswith("pci ")]
    checks = {}
    for line in text:
        words = line.split()
        if line.startswith("ok "):
            checks[words[2]] = True
        elif line.startswith("not ok "):
            checks[words[3]] = False
    return pci, checks


def test_platform_guest_on_gdbemu(build_guest: Callable[[str], Path]):
    m = _pc()
    m.load_kernel(str(build_guest("dev_platform")))
    stop = m.run(max_insns=50_000_000)
    out = bytes(m.debug_output)
    assert stop.kind == "exit" and m.exit_code == 0, (stop, out.decode())
    pci, checks = _lines(out)
    assert len(checks) == 10 and all(checks.values()), out.decode()
    assert out.decode().rstrip().endswith("1..poweroff")
    # The TSC ticks once per instruction and virtual time is icount << shift (3 by default: 8 ns),
    # so its stated frequency is 10**9 / 2**3 = 125 MHz: 1,250,000 ticks in the PIT's 10 ms.
    tsc = next(int(line.split()[2], 16) for line in out.decode().splitlines() if line.startswith("info tsc"))
    assert abs(tsc - 1_250_000) < 1_250_000 // 1000
    assert pci == [
        "pci 0x00000000 0x12378086 0x06000002",
        "pci 0x00000800 0x70008086 0x06010000",
        "pci 0x00000b00 0x71138086 0x06800003",
    ]


def test_platform_guest_poweroff_through_the_command_line(build_guest: Callable[[str], Path]):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-m", "gdbemu.cli", "-nographic", "-debugcon", "stdio", str(build_guest("dev_platform"))],
        capture_output=True, timeout=120, env=env, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()
    assert "1..poweroff" in proc.stdout.decode()


def test_platform_guest_matches_qemu(build_guest: Callable[[str], Path], tmp_path: Path):
    qemu = shutil.which("qemu-system-i386")
    if not qemu:
        pytest.skip("qemu-system-i386 not installed (Debian: qemu-system-x86)")
    elf = build_guest("dev_platform")
    dc = tmp_path / "q.dc"
    proc = subprocess.run(
        [qemu, "-nodefaults", "-display", "none", "-no-reboot", "-m", "32", "-accel", "tcg", "-kernel", str(elf),
         "-debugcon", f"file:{dc}", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"],
        capture_output=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0  # QEMU powered off at the S5 write
    q_pci, q_checks = _lines(dc.read_bytes())
    m = _pc()
    m.load_kernel(str(elf))
    stop = m.run(max_insns=50_000_000)
    assert stop.kind == "exit" and m.exit_code == 0
    g_pci, g_checks = _lines(bytes(m.debug_output))
    # the recorded difference: QEMU's PIIX3 IDE function (01.1), which gdbemu does not have
    assert [line for line in q_pci if not line.startswith("pci 0x00000900 ")] == g_pci
    assert set(q_checks) == set(g_checks)
    assert {k: v for k, v in q_checks.items() if k not in TIMING_CHECKS} == {
        k: v for k, v in g_checks.items() if k not in TIMING_CHECKS
    }
