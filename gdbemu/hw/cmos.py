"""MC146818 real-time clock and CMOS NVRAM at ports 0x70 (index, bit 7 = NMI mask) / 0x71 (data).

Theory of operation (Motorola MC146818A datasheet: "Address Map", "Time,
Calendar and Alarm Locations", "Update Cycle", "Registers A-D",
"Interrupts", "Divider Stages"; memory-size bytes as QEMU's pc_cmos_init
and SeaBIOS use them):

* Time is never ticked.  The divider chain has an origin in virtual time;
  update cycles happen at every whole second after it, and the time of day
  is ``base + (updates since the time was last set)``.  ``PCConfig.rtc_base``
  (epoch seconds) is the time at virtual time 0, so every run reads the
  same clock.  Setting the time (registers 0-9, normally between SET = 1
  and SET = 0 in register B) rebases it; it does not move the divider phase.
  Divider select DV = 11x in register A holds the divider in reset; the
  first update comes 500 ms after it is released (datasheet, "Divider").
* UIP (register A bit 7) is 1 during the last 244 us before each update, as
  the datasheet guarantees it ("update transfer will occur soon"), never
  while SET = 1.  The update itself takes no time here.
* Registers 0-9 read in BCD or binary (B bit 2, DM) and 24- or 12-hour
  format (B bit 1; 12-hour: bit 7 = PM).  The century is at 0x32 (and 0x37,
  the PS/2 location, which QEMU also fills).
* Interrupt flags in register C: PF at each periodic tick (rate RS in
  register A: 256 Hz ... 2 Hz from the 32.768 kHz time base), UF at each
  update, AF at an update whose time matches the alarm registers (values
  0xC0-0xFF are "don't care").  Flags are set whether or not enabled; IRQF
  = (PF & PIE) | (AF & AIE) | (UF & UIE) drives IRQ8; reading C clears all
  and lowers the line.  Flags are computed lazily from virtual time on
  every access; a virtual-clock timer is armed only while an enabled
  interrupt can fire, so a guest that enables none leaves no timer behind.
* SET = 1 inhibits updates and clears UIE (datasheet, register B).
* NVRAM (0x0E-0x7F) is plain memory, kept across a system reset.  Its
  initial contents are what a kernel finds on QEMU with SeaBIOS: base
  memory 640 KiB (0x15/0x16), extended memory in KiB above 1 MiB capped at
  65535 (0x17/0x18 and 0x30/0x31), memory above 16 MiB in 64 KiB blocks
  (0x34/0x35), memory above 4 GiB in 64 KiB blocks (0x5B-0x5D), CPU count
  minus one (0x5F), no floppy (0x10), equipment byte FPU + PS/2 mouse
  (0x14), boot order "cad" (0x3D = 0x12, 0x38 = 0x30), status A = 0x26 and
  B = 0x02 as SeaBIOS programs them.  Unlike QEMU this module also stores
  the IBM AT checksum of 0x10-0x2D at 0x2E (high) / 0x2F (low).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..clock import NS_PER_SEC
from ..softmmu.ram_layout import ram_above_4g, ram_below_4g
from .bus import Bus
from .state import State, capture, restore

if TYPE_CHECKING:
    from .pc import PCConfig


RTC_IRQ = 8
UIP_NS = 244_141  # 8 cycles of the 32.768 kHz time base
DIVIDER_RESET_DELAY_NS = 500_000_000

REG_A = 0x0A
REG_B = 0x0B
REG_C = 0x0C
REG_D = 0x0D
CENTURY = 0x32
CENTURY_PS2 = 0x37

A_UIP = 0x80
B_SET = 0x80
B_PIE = 0x40
B_AIE = 0x20
B_UIE = 0x10
B_DM_BINARY = 0x04
B_24H = 0x02
C_IRQF = 0x80
C_PF = 0x40
C_AF = 0x20
C_UF = 0x10


def days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (tolerates out-of-range days)."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    mp = (m + 9) % 12
    doy = (153 * mp + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def civil_from_days(z: int) -> tuple[int, int, int]:
    z += 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return y + (m <= 2), m, d


def _bcd(v: int) -> int:
    return ((v // 10) << 4) | (v % 10)


def _unbcd(v: int) -> int:
    return (v >> 4) * 10 + (v & 0xF)


def memory_nvram(ram_size: int, ncpus: int) -> dict[int, int]:
    """The memory-size and board bytes QEMU's pc_cmos_init (and SeaBIOS) leave in the NVRAM."""
    below_4g = ram_below_4g(ram_size)
    above_4g = ram_above_4g(ram_size)
    out: dict[int, int] = {}
    base = min(below_4g // 1024, 640)
    out[0x15], out[0x16] = base & 0xFF, base >> 8
    ext = min(max(below_4g - (1 << 20), 0) // 1024, 65535)
    out[0x17], out[0x18] = ext & 0xFF, ext >> 8
    out[0x30], out[0x31] = ext & 0xFF, ext >> 8
    high = min(max(below_4g - (16 << 20), 0) // 65536, 65535)
    out[0x34], out[0x35] = high & 0xFF, high >> 8
    above = above_4g // 65536
    out[0x5B], out[0x5C], out[0x5D] = above & 0xFF, (above >> 8) & 0xFF, (above >> 16) & 0xFF
    out[0x5F] = ncpus - 1
    out[0x10] = 0x00  # no floppy drives
    out[0x14] = 0x06  # equipment: FPU present, PS/2 mouse installed
    out[0x3D] = 0x12  # boot order "cad": hard disk, then floppy
    out[0x38] = 0x30  # ... then CD-ROM; floppy boot-sector check on
    return out


class RTC:
    """The MC146818 (``bus.devices["cmos"]``)."""

    # ---- snapshots (hw/state.py) -----------------------------------------------------
    STATE_EXCLUDE = frozenset({"bus", "clock"})  # collaborators and configuration, not state

    def save_state(self) -> State:
        """This device's state for a snapshot (its declared fields minus ``STATE_EXCLUDE``)."""
        return capture(self, self.STATE_EXCLUDE)

    def load_state(self, state: State) -> None:
        """Restore what ``save_state`` returned."""
        restore(self, state, self.STATE_EXCLUDE)

    def __init__(self, bus: Bus, rtc_base: int, ncpus: int = 1) -> None:
        self.bus = bus
        self.clock = bus.clock
        self.nvram = bytearray(128)
        for index, value in memory_nvram(bus.ram_size, ncpus).items():
            self.nvram[index] = value
        checksum = sum(self.nvram[0x10:0x2E])
        self.nvram[0x2E], self.nvram[0x2F] = (checksum >> 8) & 0xFF, checksum & 0xFF
        self.rtc_base = rtc_base
        self.timer = self.clock.new_timer(self._tick)
        self.index = 0
        self.nmi_disabled = False
        self.irq_level = 0
        self.div_origin = 0  # rtc_base is the time at virtual time 0
        self.base_sec = rtc_base
        self.sec_ref = 0
        self.frozen_sec: int | None = None  # SET or divider reset: the time stands here
        self.nvram[REG_A] = 0x26
        self.nvram[REG_B] = B_24H
        self.flags = 0
        self.checked_ns = self.clock.now()
        self._write_time_regs(self.epoch())

    def reset(self) -> None:
        """The RESET pin: PIE, AIE, UIE, SQWE and the C flags clear; time and NVRAM survive."""
        self._catch_up()
        self.nvram[REG_B] &= ~(B_PIE | B_AIE | B_UIE | 0x08)
        self.flags = 0
        self._update_irq()

    # ---- time keeping ---------------------------------------------------------------
    def running(self) -> bool:
        return self.frozen_sec is None

    def _divider_running(self) -> bool:
        return (self.nvram[REG_A] & 0x60) != 0x60

    def _dsec(self, now: int) -> int:
        """Update cycles (whole seconds of the divider) since its origin."""
        return (now - self.div_origin) // NS_PER_SEC

    def epoch(self, now: int | None = None) -> int:
        """The RTC's time of day, as epoch seconds."""
        if self.frozen_sec is not None:
            return self.frozen_sec
        now = self.clock.now() if now is None else now
        return self.base_sec + self._dsec(now) - self.sec_ref

    def _second_ns(self, epoch_sec: int) -> int:
        """Virtual time of the update cycle that makes the clock read ``epoch_sec``."""
        return self.div_origin + (self.sec_ref + epoch_sec - self.base_sec) * NS_PER_SEC

    def _rebase(self, epoch_sec: int, now: int) -> None:
        self.base_sec = epoch_sec
        self.sec_ref = self._dsec(now)
        self.checked_ns = max(self.checked_ns, now)

    def _binary(self) -> bool:
        return bool(self.nvram[REG_B] & B_DM_BINARY)

    def _enc(self, v: int) -> int:
        return v if self._binary() else _bcd(v)

    def _dec(self, v: int) -> int:
        return v if self._binary() else _unbcd(v)

    def _enc_hour(self, h: int) -> int:
        if self.nvram[REG_B] & B_24H:
            return self._enc(h)
        h12 = h % 12 or 12
        return self._enc(h12) | (0x80 if h >= 12 else 0)

    def _dec_hour(self, v: int) -> int:
        if self.nvram[REG_B] & B_24H:
            return self._dec(v)
        h = self._dec(v & 0x7F) % 12
        return h + 12 if v & 0x80 else h

    def _write_time_regs(self, epoch_sec: int) -> None:
        days, sod = divmod(epoch_sec, 86400)
        y, m, d = civil_from_days(days)
        nv = self.nvram
        nv[0x00] = self._enc(sod % 60)
        nv[0x02] = self._enc((sod // 60) % 60)
        nv[0x04] = self._enc_hour(sod // 3600)
        nv[0x06] = (days + 4) % 7 + 1  # 1 = Sunday; 1970-01-01 was a Thursday
        nv[0x07] = self._enc(d)
        nv[0x08] = self._enc(m)
        nv[0x09] = self._enc(y % 100)
        nv[CENTURY] = nv[CENTURY_PS2] = self._enc((y // 100) % 100)

    def _parse_time_regs(self) -> int:
        nv = self.nvram
        year = self._dec(nv[CENTURY]) * 100 + self._dec(nv[0x09])
        days = days_from_civil(year, max(1, min(self._dec(nv[0x08]), 12)), self._dec(nv[0x07]))
        return days * 86400 + self._dec_hour(nv[0x04]) * 3600 + self._dec(nv[0x02]) * 60 + self._dec(nv[0x00])

    def _sync_regs(self) -> None:
        if self.frozen_sec is None:
            self._write_time_regs(self.epoch())

    # ---- alarm -------------------------------------------------------------------------
    def _alarm_fields(self) -> tuple[int | None, int | None, int | None] | None:
        """Alarm (hour, minute, second), None for don't-care; None overall if it can never match."""
        nv = self.nvram
        out: list[int | None] = []
        for reg, limit in ((0x05, 24), (0x03, 60), (0x01, 60)):
            raw = nv[reg]
            if raw & 0xC0 == 0xC0:
                out.append(None)
                continue
            value = self._dec_hour(raw) if reg == 0x05 else self._dec(raw)
            if value >= limit:
                return None
            out.append(value)
        return out[0], out[1], out[2]

    def _next_alarm(self, after: int) -> int | None:
        """The first epoch second > ``after`` whose update matches the alarm, within a day."""
        fields = self._alarm_fields()
        if fields is None:
            return None
        ah, am, as_ = fields
        e = after + 1
        limit = after + 86400 + 1
        while e <= limit:
            sod = e % 86400
            h, m, s = sod // 3600, (sod // 60) % 60, sod % 60
            if ah is not None and h != ah:
                e = e - sod % 3600 + 3600
            elif am is not None and m != am:
                e = e - s + 60
            elif as_ is not None and s != as_:
                e = e + (as_ - s) if s < as_ else e - s + 60
            else:
                return e
        return None

    # ---- interrupt flags --------------------------------------------------------------------
    def _period_ticks(self) -> int | None:
        """Periodic interrupt period in 32.768 kHz ticks from RS (register A bits 3-0)."""
        rs = self.nvram[REG_A] & 0x0F
        if rs == 0 or not self._divider_running():
            return None
        if rs <= 2:
            rs += 7  # RS 1 and 2 give 256 Hz and 128 Hz with a 32.768 kHz time base
        return 1 << (rs - 1)

    def _ticks32(self, now: int) -> int:
        return (now - self.div_origin) * 32768 // NS_PER_SEC

    def _catch_up(self, now: int | None = None) -> None:
        """Set the C flags for the events between the last check and ``now``."""
        now = self.clock.now() if now is None else now
        last = self.checked_ns
        if now <= last:
            return
        period = self._period_ticks()
        if period is not None and self._ticks32(now) // period > self._ticks32(last) // period:
            self.flags |= C_PF
        if self.running() and self._dsec(now) > self._dsec(last):
            self.flags |= C_UF
            e_last = self.base_sec + self._dsec(last) - self.sec_ref
            nxt = self._next_alarm(e_last)
            if nxt is not None and nxt <= self.epoch(now):
                self.flags |= C_AF
        self.checked_ns = now

    def _irqf(self) -> bool:
        b = self.nvram[REG_B]
        f = self.flags
        return bool((f & C_PF and b & B_PIE) or (f & C_AF and b & B_AIE) or (f & C_UF and b & B_UIE))

    def _update_irq(self) -> None:
        level = 1 if self._irqf() else 0
        if level != self.irq_level:
            self.irq_level = level
            self.bus.set_irq(RTC_IRQ, level)
        self._arm()

    def _arm(self) -> None:
        """Wake at the next event that could raise IRQ8 (none while IRQF is already set)."""
        if self.irq_level:
            self.timer.cancel()
            return
        now = self.clock.now()
        b = self.nvram[REG_B]
        candidates = []
        period = self._period_ticks()
        if b & B_PIE and period is not None:
            t = (self._ticks32(now) // period + 1) * period
            candidates.append(self.div_origin + -(-t * NS_PER_SEC // 32768))
        if self.running() and b & (B_UIE | B_AIE):
            if b & B_UIE:
                candidates.append(self.div_origin + (self._dsec(now) + 1) * NS_PER_SEC)
            else:
                nxt = self._next_alarm(self.epoch(now))
                if nxt is not None:
                    candidates.append(self._second_ns(nxt))
        if candidates:
            self.timer.mod(max(min(candidates), now + 1))
        else:
            self.timer.cancel()

    def _tick(self) -> None:
        self._catch_up()
        self._update_irq()

    # ---- registers ----------------------------------------------------------------------
    def read_reg(self, index: int) -> int:
        now = self.clock.now()
        if index <= 9 or index in (CENTURY, CENTURY_PS2):
            self._sync_regs()
            return self.nvram[index]
        if index == REG_A:
            value = self.nvram[REG_A] & 0x7F
            if self.running() and (now - self.div_origin) % NS_PER_SEC >= NS_PER_SEC - UIP_NS:
                value |= A_UIP
            return value
        if index == REG_C:
            self._catch_up(now)
            value = self.flags | (C_IRQF if self._irqf() else 0)
            self.flags = 0
            self._update_irq()
            return value
        if index == REG_D:
            return 0x80  # VRT: the battery is good
        return self.nvram[index]

    def write_reg(self, index: int, value: int) -> None:
        now = self.clock.now()
        self._catch_up(now)
        if index <= 9 or index in (CENTURY, CENTURY_PS2):
            self._sync_regs()
            self.nvram[index] = value
            if index in (0x01, 0x03, 0x05):
                self._update_irq()  # alarm changed
                return
            if index == CENTURY_PS2:
                self.nvram[CENTURY] = value
            elif index == CENTURY:
                self.nvram[CENTURY_PS2] = value
            if self.frozen_sec is None:
                self._rebase(self._parse_time_regs(), now)
            else:
                self.frozen_sec = self._parse_time_regs()
            self._update_irq()
            return
        if index == REG_A:
            was_running = self._divider_running()
            self.nvram[REG_A] = value & 0x7F
            if was_running and not self._divider_running():
                self._sync_regs()
                self.frozen_sec = self.epoch(now) if self.frozen_sec is None else self.frozen_sec
            elif not was_running and self._divider_running():
                self.div_origin = now + DIVIDER_RESET_DELAY_NS - NS_PER_SEC
                self.checked_ns = now
                if not self.nvram[REG_B] & B_SET:
                    self._thaw(now)
            self._update_irq()
            return
        if index == REG_B:
            old = self.nvram[REG_B]
            if value & B_SET:
                value &= ~B_UIE  # SET clears UIE
            self.nvram[REG_B] = value
            if value & B_SET and not old & B_SET:
                self._sync_regs()
                if self.frozen_sec is None:
                    self.frozen_sec = self.epoch(now)
            elif old & B_SET and not value & B_SET and self._divider_running():
                self._thaw(now)
            elif (old ^ value) & (B_DM_BINARY | B_24H):
                self._write_time_regs(self.epoch(now))  # re-encode (frozen or not) in the new format
            self._update_irq()
            return
        if index in (REG_C, REG_D):
            return  # read-only
        self.nvram[index] = value

    def _thaw(self, now: int) -> None:
        """Updates resume: the time registers as they stand now are the time."""
        self.frozen_sec = None
        self._rebase(self._parse_time_regs(), now)

    # ---- ports ----------------------------------------------------------------------------
    def io_read(self, port: int, size: int) -> int:
        if size > 1:
            return self.bus.split_read(port, size)
        if port == 0x70:
            return 0xFF  # the index register is write-only
        return self.read_reg(self.index)

    def io_write(self, port: int, size: int, value: int) -> None:
        if size > 1:
            self.bus.split_write(port, size, value)
            return
        value &= 0xFF
        if port == 0x70:
            self.index = value & 0x7F
            self.nmi_disabled = bool(value & 0x80)
        else:
            self.write_reg(self.index, value)


def attach(bus: Bus, config: PCConfig) -> RTC:
    rtc = RTC(bus, config.rtc_base, config.ncpus)
    bus.add_port(0x70, 2, rtc)
    bus.add_reset_hook(rtc.reset)
    return rtc
