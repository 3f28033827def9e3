"""ACPI fixed hardware of the PIIX4 power-management function, at QEMU's ``pc`` addresses.

Theory of operation (ACPI 2.0 section 4.7, "ACPI Hardware Specification";
QEMU ``hw/acpi/core.c`` and ``hw/acpi/piix4.c``):

* **PM1a event block**, 0x600, 4 bytes: PM1_STS (16 bits, write 1 to clear;
  bit 0 TMR_STS, set whenever bit 23 of the PM timer changes; bit 15
  WAK_STS) and PM1_EN (16 bits; bit 0 TMR_EN).  With TMR_EN and TMR_STS both
  set the SCI (ISA IRQ 9, level, active high as the MADT says) is asserted.
* **PM1a control block**, 0x604, 2 bytes: SCI_EN (bit 0, set: the OS sees
  the board in ACPI mode from the start, the FADT's SMI_CMD being 0),
  SLP_TYP (bits 10-12), SLP_EN (bit 13, write-only).  Writing SLP_EN with
  SLP_TYP 0 -- the S5 value of the DSDT's ``\\_S5`` package, as in QEMU's
  DSDT -- powers the machine off: the run ends with exit status 0
  (``bus.request_stop("exit", ...)``), as QEMU exits when a guest runs
  ``poweroff``.  Other sleep types are recorded and ignored (no S3 here).
* **PM timer**, 0x608, 4 bytes: a 24-bit counter at 3.579545 MHz
  (``PM_TIMER_FREQ``) from virtual time: ``now_ns * 3579545 // 10**9``
  mod 2**24.  Read at an exact instruction count (a read inside a
  multi-instruction TB restarts the instruction alone, as the APIC's current
  count does), so calibration loops see the same values on every run.
* **GPE0 block**, 0xAFE0, 4 bytes: two status bytes (write 1 to clear) and
  two enable bytes; nothing raises a general-purpose event here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .bus import Bus
from .state import State, capture, restore

if TYPE_CHECKING:
    from .pc import PCConfig

PM_BASE = 0x600
PM1A_EVT = PM_BASE
PM1A_CNT = PM_BASE + 4
PM_TMR = PM_BASE + 8
GPE0_BASE = 0xAFE0
GPE0_LEN = 4
PM_TIMER_FREQ = 3_579_545
SCI_IRQ = 9
S5_SLP_TYP = 0  # the \_S5 package's SLP_TYPa (firmware.build_dsdt)

TMR_STS = 1 << 0
TMR_EN = 1 << 0
WAK_STS = 1 << 15
SCI_EN = 1 << 0
SLP_EN = 1 << 13


class ACPIPM:
    """The PM1a event/control blocks, the PM timer and GPE0 (``bus.devices["acpi_pm"]``)."""

    # ---- snapshots (hw/state.py) -----------------------------------------------------
    STATE_EXCLUDE = frozenset({"bus", "clock"})  # collaborators and configuration, not state

    def save_state(self) -> State:
        """The PM1 and GPE0 registers (the PM timer is virtual time itself)."""
        return capture(self, self.STATE_EXCLUDE)

    def load_state(self, state: State) -> None:
        """Restore what ``save_state`` returned."""
        restore(self, state, self.STATE_EXCLUDE)

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.clock = bus.clock
        self.timer = bus.clock.new_timer(self._overflow)
        self.sleep_requests: list[int] = []  # SLP_TYP values written with SLP_EN
        self.reset()

    def reset(self) -> None:
        self.pm1_sts = 0
        self.pm1_en = 0
        self.pm1_cnt = SCI_EN
        self.gpe_sts = bytearray(GPE0_LEN // 2)
        self.gpe_en = bytearray(GPE0_LEN // 2)
        self._tmr_epoch = self.ticks() >> 23  # the half of the 2**24 period TMR_STS last saw
        self.timer.cancel()
        self._update_sci()

    # ---- the PM timer ----------------------------------------------------------------
    def ticks(self) -> int:
        """The PM timer's count since the machine started (unbounded; the register is mod 2**24)."""
        return self.clock.now() * PM_TIMER_FREQ // 1_000_000_000

    def _sync_tmr_sts(self) -> None:
        epoch = self.ticks() >> 23
        if epoch != self._tmr_epoch:
            self._tmr_epoch = epoch
            self.pm1_sts |= TMR_STS

    def _arm(self) -> None:
        """With TMR_EN, fire when bit 23 next changes (to raise the SCI)."""
        if not self.pm1_en & TMR_EN:
            self.timer.cancel()
            return
        next_tick = (self._tmr_epoch + 1) << 23
        deadline = -(-next_tick * 1_000_000_000 // PM_TIMER_FREQ)
        self.timer.mod(max(deadline, self.clock.now() + 1))

    def _overflow(self) -> None:
        self._sync_tmr_sts()
        self._update_sci()
        self._arm()

    def _update_sci(self) -> None:
        level = bool(self.pm1_sts & self.pm1_en & TMR_EN) or any(
            s & e for s, e in zip(self.gpe_sts, self.gpe_en, strict=True)
        )
        self.bus.set_irq(SCI_IRQ, int(level))

    # ---- ports ----------------------------------------------------------------------
    def io_read(self, port: int, size: int) -> int:
        if port >= GPE0_BASE:
            gpe = bytes(self.gpe_sts) + bytes(self.gpe_en)
            off = port - GPE0_BASE
            return int.from_bytes(gpe[off : off + size].ljust(size, b"\xff"), "little")
        off = port - PM_BASE
        if off >= 8:  # PM_TMR
            if self.bus.tb_insns() > 1:
                self.bus.restart_instruction()  # read it at an exact icount
            value = self.ticks() & 0xFFFFFF
            return (value >> (8 * (off - 8))) & ((1 << (8 * size)) - 1)
        if off < 4:
            self._sync_tmr_sts()
            regs = self.pm1_sts | (self.pm1_en << 16)
            return (regs >> (8 * off)) & ((1 << (8 * size)) - 1)
        return (self.pm1_cnt >> (8 * (off - 4))) & ((1 << (8 * size)) - 1)

    def io_write(self, port: int, size: int, value: int) -> None:
        if port >= GPE0_BASE:
            for i in range(size):
                off, byte = port - GPE0_BASE + i, (value >> (8 * i)) & 0xFF
                if off < 2:
                    self.gpe_sts[off] &= ~byte & 0xFF
                elif off < 4:
                    self.gpe_en[off - 2] = byte
            self._update_sci()
            return
        off = port - PM_BASE
        if off < 4:
            self._sync_tmr_sts()
            for i in range(size):
                reg, byte = off + i, (value >> (8 * i)) & 0xFF
                if reg < 2:
                    self.pm1_sts &= ~(byte << (8 * reg))
                else:
                    shift = 8 * (reg - 2)
                    self.pm1_en = (self.pm1_en & ~(0xFF << shift)) | (byte << shift)
            self._update_sci()
            self._arm()
            return
        if off < 6:
            shift = 8 * (off - 4)
            mask = ((1 << (8 * min(size, 6 - off))) - 1) << shift
            new = (self.pm1_cnt & ~mask) | ((value << shift) & mask)
            self.pm1_cnt = new & ~SLP_EN
            if new & SLP_EN:
                slp_typ = (new >> 10) & 7
                self.sleep_requests.append(slp_typ)
                if slp_typ == S5_SLP_TYP:
                    self.bus.request_stop("exit", "ACPI S5 power-off (PM1a_CNT SLP_EN)", 0)
        # PM_TMR is read-only


def attach(bus: Bus, config: PCConfig) -> ACPIPM:
    pm = ACPIPM(bus)
    bus.add_port(PM_BASE, 12, pm)
    bus.add_port(GPE0_BASE, GPE0_LEN, pm)
    bus.add_reset_hook(pm.reset)
    return pm
