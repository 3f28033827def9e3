"""The PC devices: 16550A UART, 8254 PIT and port 0x61, MC146818 RTC/CMOS, 8042, fw_cfg, VGA text, debug ports.

Three layers, per device:

* register-level tests driven from Python (``m.mem.io_write``/``io_read``)
  on a board from ``build_pc``, with an IRQ recorder added to
  ``machine.bus.irq_sinks`` that timestamps every ``set_irq`` on the virtual
  clock; time is advanced by jumping the clock from deadline to deadline
  (``advance``), so the timing assertions are exact, not approximate;
* guest programs (tests/support/guests/dev_*.s) that drive the devices the way a
  kernel does, through the 8259 where interrupts are involved;
* the same guests on qemu-system-i386 (the behavioural reference): serial
  transcripts and the RTC/CMOS/fw_cfg report must be identical.
"""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from support import build

from gdbemu.hw import kbd as kbd_mod
from gdbemu.hw import vga as vga_mod
from gdbemu.hw.pc import PCConfig, build_pc
from gdbemu.hw.pit import PIT_FREQ, ticks_to_ns
from gdbemu.machine import Machine, Stop

NS = 1_000_000_000
RAM = 32 << 20


# ---- harness ---------------------------------------------------------------------------
class IrqRecorder:
    """A fake interrupt sink: every set_irq call with the virtual time it happened at."""

    def __init__(self, clock) -> None:
        self.clock = clock
        self.events: list[tuple[int, int, int]] = []
        self.baseline: dict[int, int] = {}  # levels when the log was last cleared

    def set_irq(self, line: int, level: int) -> None:
        self.events.append((self.clock.now(), line, level))

    def edges(self, line: int, rising: bool = True) -> list[int]:
        out = []
        level = self.baseline.get(line, 0)
        for t, ln, lv in self.events:
            if ln != line:
                continue
            if lv and not level and rising or not lv and level and not rising:
                out.append(t)
            level = lv
        return out

    def level(self, line: int) -> int:
        levels = [lv for _, ln, lv in self.events if ln == line]
        return levels[-1] if levels else self.baseline.get(line, 0)

    def clear(self) -> None:
        for line in {ln for _, ln, _ in self.events}:
            self.baseline[line] = self.level(line)
        self.events.clear()


def make_pc(ram: int = RAM, **cfg) -> tuple[Machine, IrqRecorder]:
    cfg.setdefault("serial", [io.BytesIO()])
    m = Machine(ram)
    rec = IrqRecorder(m.clock)
    m.bus.irq_sinks.append(rec)  # first, so it sees the levels the devices set when they attach
    build_pc(m.bus, PCConfig(**cfg))
    rec.clear()  # keep the attach-time levels as the baseline, log only what follows
    rec.baseline[0] = m.bus.devices["pit"].irq_level  # the PIT takes IRQ0 as high until its first fall
    return m, rec


def advance(m: Machine, ns: int) -> None:
    """Let ``ns`` of virtual time pass with no guest code, firing timers exactly at their deadlines."""
    clock = m.clock
    target = clock.now() + ns
    while True:
        deadline = clock.next_deadline()
        if deadline is None or deadline > target:
            break
        clock.skip_to(deadline)
        clock.run_timers()
    clock.skip_to(target)
    clock.run_timers()


def outb(m: Machine, port: int, value: int) -> None:
    m.mem.io_write(port, 1, value)


def inb(m: Machine, port: int) -> int:
    return m.mem.io_read(port, 1)


def run_guarded(m: Machine, max_insns: int, max_ns: int = 5 * NS) -> Stop:
    """Run with a virtual-time watchdog too: a halted guest waiting for an interrupt that never
    comes lets virtual time run on without retiring instructions, so max_insns alone never ends it."""
    dog = m.clock.new_timer(lambda: m.request_stop(Stop("limit", "watchdog")))
    dog.mod(m.clock.now() + max_ns)
    try:
        return m.run(max_insns=max_insns)
    finally:
        dog.cancel()


# ======================================================================== UART
COM1 = 0x3F8


def uart_8n1(m: Machine, divisor: int = 1, fcr: int = 0xC7, mcr: int = 0x0B, base: int = COM1) -> None:
    outb(m, base + 1, 0)
    outb(m, base + 3, 0x80)
    outb(m, base, divisor & 0xFF)
    outb(m, base + 1, divisor >> 8)
    outb(m, base + 3, 0x03)
    outb(m, base + 2, fcr)
    outb(m, base + 4, mcr)


def test_uart_reset_state_is_what_a_kernel_sees_on_qemu() -> None:
    m, _ = make_pc()
    regs = [inb(m, COM1 + i) for i in range(8)]
    assert regs == [0x00, 0x00, 0x01, 0x00, 0x08, 0x60, 0xB0, 0x00]


def test_uart_polled_transmit_reaches_the_sink_whole() -> None:
    out = io.BytesIO()
    m, _ = make_pc(serial=[out])
    outb(m, COM1, ord("A"))  # LCR still 0 (5 data bits): the host still gets the whole byte, as on QEMU
    uart_8n1(m)
    for ch in b"hi\n":
        assert inb(m, COM1 + 5) & 0x60 == 0x60
        outb(m, COM1, ch)
    assert out.getvalue() == b"Ahi\n"
    assert m.bus.devices["uart"][0].tx_bytes == 4


def test_uart_divisor_latch_and_scratch() -> None:
    m, _ = make_pc()
    outb(m, COM1 + 1, 0x05)
    outb(m, COM1 + 3, 0x80)
    outb(m, COM1, 0x34)
    outb(m, COM1 + 1, 0x12)
    assert (inb(m, COM1), inb(m, COM1 + 1)) == (0x34, 0x12)
    outb(m, COM1 + 3, 0x03)
    assert inb(m, COM1 + 1) == 0x05  # IER untouched by the latch writes
    assert m.bus.devices["uart"][0].divisor == 0x1234
    outb(m, COM1 + 7, 0xA5)
    assert inb(m, COM1 + 7) == 0xA5


def test_uart_thre_interrupt_semantics() -> None:
    m, rec = make_pc()
    uart_8n1(m)
    outb(m, COM1 + 1, 0x02)  # ETBEI with THR empty: THRE at once
    assert rec.level(4) == 1
    assert inb(m, COM1 + 2) == 0xC2
    assert rec.level(4) == 0  # reading IIR cleared it
    assert inb(m, COM1 + 2) == 0xC1
    outb(m, COM1, ord("x"))  # THR written and (instantly) empty again: THRE anew
    assert rec.level(4) == 1
    outb(m, COM1 + 1, 0x00)  # disabling ETBEI drops the line
    assert rec.level(4) == 0
    assert len(rec.edges(4)) == 2


def test_uart_irq_line_ignores_out2_and_loopback_as_qemu() -> None:
    m, rec = make_pc()
    uart_8n1(m, mcr=0x00)  # no OUT2 (an xv6-style driver writes 0 to MCR)
    outb(m, COM1 + 1, 0x02)
    assert rec.level(4) == 1  # THRE reaches the PIC without OUT2, as on QEMU
    outb(m, COM1 + 1, 0x00)
    assert rec.level(4) == 0
    outb(m, COM1 + 1, 0x02)
    outb(m, COM1 + 4, 0x1B)  # loopback: still raised (QEMU does not gate it either)
    assert rec.level(4) == 1


def test_uart_rx_fifo_trigger_level_and_arrival_timing() -> None:
    m, rec = make_pc()
    uart = m.bus.devices["uart"][0]
    uart_8n1(m, fcr=0x47)  # FIFO, trigger level 4
    outb(m, COM1 + 1, 0x01)  # ERBFI
    t0 = m.clock.now()
    uart.feed(b"abcdef")
    char = uart.char_time_ns()
    assert char == 10 * NS // 115200  # start + 8 data + stop at 115200 baud
    advance(m, 3 * char + char // 2)
    assert len(uart.rx_fifo) == 3 and rec.level(4) == 0  # below the trigger level
    advance(m, char)
    assert len(uart.rx_fifo) == 4 and rec.level(4) == 1
    assert rec.edges(4) == [t0 + 4 * char]
    assert inb(m, COM1 + 2) == 0xC4  # received data available
    assert bytes(inb(m, COM1) for _ in range(4)) == b"abcd"
    assert rec.level(4) == 0
    advance(m, 10 * char)
    assert bytes(inb(m, COM1) for _ in range(2)) == b"ef"
    assert inb(m, COM1 + 5) & 1 == 0


def test_uart_character_timeout_interrupt() -> None:
    m, rec = make_pc()
    uart = m.bus.devices["uart"][0]
    uart_8n1(m, fcr=0xC7)  # trigger level 14
    outb(m, COM1 + 1, 0x01)
    uart.feed(b"xy")
    char = uart.char_time_ns()
    advance(m, 2 * char)
    assert len(uart.rx_fifo) == 2 and rec.level(4) == 0
    advance(m, 4 * char - 1)
    assert rec.level(4) == 0
    advance(m, 1)  # four character times after the last byte
    assert rec.level(4) == 1
    assert inb(m, COM1 + 2) == 0xCC
    assert inb(m, COM1) == ord("x")  # a read clears the timeout, restarts it for the rest
    assert rec.level(4) == 0
    advance(m, 4 * char)
    assert inb(m, COM1 + 2) == 0xCC
    assert inb(m, COM1) == ord("y")
    assert inb(m, COM1 + 2) == 0xC1


def test_uart_receiver_waits_for_room_instead_of_overrunning() -> None:
    m, _ = make_pc()
    uart = m.bus.devices["uart"][0]
    uart_8n1(m, fcr=0x00)  # no FIFO: one byte at a time
    uart.feed(b"123")
    advance(m, 10 * uart.char_time_ns())
    assert inb(m, COM1 + 5) & 0x03 == 0x01  # data ready, no overrun
    assert [inb(m, COM1)] == [ord("1")]
    advance(m, 10 * uart.char_time_ns())
    assert inb(m, COM1) == ord("2")


def test_uart_loopback_echo_msr_and_overrun() -> None:
    m, _ = make_pc()
    uart_8n1(m, fcr=0x00)
    outb(m, COM1 + 4, 0x10)  # loopback, all modem outputs off
    assert inb(m, COM1 + 6) & 0xF0 == 0x00
    outb(m, COM1 + 4, 0x1F)  # DTR RTS OUT1 OUT2 -> DSR CTS RI DCD
    msr = inb(m, COM1 + 6)
    assert msr == 0xF0 | 0x0B  # lines up; deltas DCTS DDSR DDCD (RI counts trailing edges only)
    assert inb(m, COM1 + 6) == 0xF0  # reading cleared the deltas
    outb(m, COM1 + 4, 0x1B)  # OUT1 off: RI trailing edge
    assert inb(m, COM1 + 6) & 0x0F == 0x04
    outb(m, COM1 + 1, 0x0C)  # ELSI | EDSSI
    outb(m, COM1, 0x11)
    outb(m, COM1, 0x22)  # RBR still full: overrun
    assert inb(m, COM1 + 2) == 0x06  # receiver line status has the highest priority
    assert inb(m, COM1 + 5) & 0x03 == 0x03
    assert inb(m, COM1 + 5) & 0x02 == 0  # LSR read cleared OE
    assert inb(m, COM1) == 0x22


def test_uart_modem_status_interrupt_in_loopback() -> None:
    m, _ = make_pc()
    outb(m, COM1 + 4, 0x10)
    inb(m, COM1 + 6)
    outb(m, COM1 + 1, 0x08)
    assert inb(m, COM1 + 2) == 0x01
    outb(m, COM1 + 4, 0x12)  # RTS -> CTS changes
    assert inb(m, COM1 + 2) == 0x00
    inb(m, COM1 + 6)
    assert inb(m, COM1 + 2) == 0x01


def test_uart_serial_input_stream_and_com2(tmp_path: Path) -> None:
    log = tmp_path / "com2.txt"
    m, rec = make_pc(serial=[io.BytesIO(), f"file:{log}"], serial_input=io.BytesIO(b"ok"))
    uart_8n1(m, fcr=0x00)
    outb(m, COM1 + 1, 0x01)
    advance(m, NS // 1000)  # the first byte was already on the line at the reset rate (9600 baud)
    assert rec.level(4) == 1 and inb(m, COM1) == ord("o")
    advance(m, m.bus.devices["uart"][0].char_time_ns())
    assert inb(m, COM1) == ord("k")
    uart_8n1(m, base=0x2F8)
    outb(m, 0x2F9, 0x02)
    assert rec.level(3) == 1  # COM2 is IRQ3
    for ch in b"com2\n":
        outb(m, 0x2F8, ch)
    assert log.read_bytes() == b"com2\n"  # flushed at the newline
    m.bus.devices["uart"].close()


def test_uart_word_access_splits_into_byte_accesses() -> None:
    m, _ = make_pc()
    m.mem.io_write(COM1 + 3, 2, 0x0B83)  # LCR = 0x83 (DLAB), then MCR = 0x0B
    assert (inb(m, COM1 + 3), inb(m, COM1 + 4)) == (0x83, 0x0B)
    assert m.mem.io_read(COM1 + 5, 2) == 0xB060  # LSR, MSR


# ======================================================================== PIT
def pit_program(m: Machine, channel: int, mode: int, count: int, rw: int = 3, bcd: bool = False) -> int:
    outb(m, 0x43, (channel << 6) | (rw << 4) | (mode << 1) | int(bcd))
    if rw in (1, 3):
        outb(m, 0x40 + channel, count & 0xFF)
    if rw in (2, 3):
        outb(m, 0x40 + channel, (count >> 8) & 0xFF)
    return m.clock.now()


def pit_read_latched(m: Machine, channel: int) -> int:
    outb(m, 0x43, channel << 6)
    return inb(m, 0x40 + channel) | (inb(m, 0x40 + channel) << 8)


def test_pit_power_on_state_counts_nothing() -> None:
    m, rec = make_pc()
    for channel in range(3):
        outb(m, 0x43, 0xE0 | (2 << channel))
        assert inb(m, 0x40 + channel) == 0x86  # OUT high, mode 3, no access mode programmed
    assert m.clock.next_deadline() is None  # a bare board has no timer: a halted guest is "idle"
    t0 = pit_program(m, 0, 2, 0)  # what SeaBIOS (boot/firmware.py) programs: 18.2 Hz
    assert rec.events == []  # OUT stays high: no edge when the counter is programmed
    assert m.clock.next_deadline() == t0 + ticks_to_ns(0xFFFF)  # the first falling edge


def test_pit_mode2_irq0_edges_every_divisor_ticks() -> None:
    m, rec = make_pc()
    n = 1193
    t0 = pit_program(m, 0, 2, n)
    rec.clear()
    advance(m, 5 * n * NS // PIT_FREQ + 1000)
    rises = rec.edges(0)
    assert rises == [t0 + ticks_to_ns(k * n) for k in range(1, 6)]
    falls = rec.edges(0, rising=False)
    assert falls == [t0 + ticks_to_ns(k * n - 1) for k in range(1, 6)]  # low for one CLK
    period = rises[1] - rises[0]
    assert abs(period - n * NS / PIT_FREQ) <= 1


def test_pit_mode3_square_wave_halves() -> None:
    m, rec = make_pc()
    n = 1001  # odd: high (n + 1) / 2, low (n - 1) / 2
    t0 = pit_program(m, 0, 3, n)
    rec.clear()
    advance(m, ticks_to_ns(3 * n) + 10)
    assert rec.edges(0, rising=False) == [t0 + ticks_to_ns(k * n + 501) for k in range(3)]
    assert rec.edges(0) == [t0 + ticks_to_ns(k * n) for k in range(1, 4)]


def test_pit_mode0_single_edge_then_no_timer() -> None:
    m, rec = make_pc()
    t0 = pit_program(m, 0, 0, 100)
    assert rec.level(0) == 0
    assert inb(m, 0x40) == 100 and inb(m, 0x40) == 0
    advance(m, ticks_to_ns(40))
    assert pit_read_latched(m, 0) == 60
    advance(m, ticks_to_ns(100))
    assert rec.edges(0) == [t0 + ticks_to_ns(100)]
    assert m.bus.devices["pit"].timer.pending is False
    assert m.clock.next_deadline() is None  # nothing left to wake a halted CPU
    assert pit_read_latched(m, 0) == (100 - 140) & 0xFFFF  # the counter wraps and keeps counting


def test_pit_mode0_first_byte_stops_counting() -> None:
    m, rec = make_pc()
    pit_program(m, 0, 0, 50)
    advance(m, ticks_to_ns(10))
    outb(m, 0x40, 0x20)  # LSB of a new count: counting stops, OUT low
    advance(m, ticks_to_ns(100))
    assert rec.edges(0) == []
    outb(m, 0x40, 0x00)  # MSB: count 0x20 starts
    t1 = m.clock.now()
    advance(m, ticks_to_ns(40))
    assert rec.edges(0) == [t1 + ticks_to_ns(0x20)]


def test_pit_mode2_new_count_waits_for_the_period_end() -> None:
    m, rec = make_pc()
    t0 = pit_program(m, 0, 2, 1000)
    advance(m, ticks_to_ns(300))
    outb(m, 0x40, 500 & 0xFF)
    outb(m, 0x40, 500 >> 8)
    rec.clear()
    advance(m, ticks_to_ns(2100))
    first_end = t0 + ticks_to_ns(1000)
    assert rec.edges(0) == [first_end, first_end + ticks_to_ns(500), first_end + ticks_to_ns(1000)]


def test_pit_mode4_strobe() -> None:
    m, rec = make_pc()
    t0 = pit_program(m, 0, 4, 100)
    assert rec.level(0) == 1
    advance(m, ticks_to_ns(300))
    assert rec.edges(0, rising=False) == [t0 + ticks_to_ns(100)]
    assert rec.edges(0) == [t0 + ticks_to_ns(101)]


def test_pit_counter_latch_holds_until_read_and_access_modes() -> None:
    m, _ = make_pc()
    outb(m, 0x61, 0x01)  # channel 2 gate on
    pit_program(m, 2, 2, 0x1234)
    advance(m, ticks_to_ns(0x100))
    outb(m, 0x43, 0x80)  # latch channel 2
    advance(m, ticks_to_ns(0x10))
    outb(m, 0x43, 0x80)  # a second latch before reading is ignored
    assert inb(m, 0x42) | inb(m, 0x42) << 8 == 0x1134
    assert pit_read_latched(m, 2) == 0x1124
    pit_program(m, 2, 2, 0x80, rw=1)  # LSB only
    advance(m, ticks_to_ns(0x10))
    outb(m, 0x43, 0x80)
    assert inb(m, 0x42) == 0x70
    pit_program(m, 2, 2, 0x2000, rw=2)  # MSB only
    advance(m, ticks_to_ns(0x100))
    outb(m, 0x43, 0x80)
    assert inb(m, 0x42) == 0x1F
    assert inb(m, 0x42) == 0x1F  # live read, same byte each time in MSB mode (count moved 0)


def test_pit_bcd_counting() -> None:
    m, _ = make_pc()
    outb(m, 0x61, 0x01)
    pit_program(m, 2, 2, 0x1000, bcd=True)  # 1000 decimal
    advance(m, ticks_to_ns(1))
    assert pit_read_latched(m, 2) == 0x0999
    advance(m, ticks_to_ns(999))
    assert pit_read_latched(m, 2) == 0x1000  # reloaded at the period end
    pit_program(m, 2, 0, 0x0000, bcd=True)  # 0 means 10000 in BCD
    advance(m, ticks_to_ns(1))
    assert pit_read_latched(m, 2) == 0x9999


def test_pit_read_back_command() -> None:
    m, _ = make_pc()
    outb(m, 0x61, 0x01)
    pit_program(m, 2, 3, 1000)
    pit_program(m, 1, 5, 200, rw=1)
    advance(m, ticks_to_ns(10))
    outb(m, 0x43, 0xC0 | 0x08 | 0x04)  # count and status of channels 1 and 2
    assert inb(m, 0x42) == 0x80 | 0x30 | 0x06  # OUT high (first half), LSB/MSB, mode 3
    assert inb(m, 0x42) | inb(m, 0x42) << 8 == 1000 - 20  # square wave counts by two
    assert inb(m, 0x41) == 0x80 | 0x10 | 0x0A  # mode 5 waits for a gate edge: OUT high
    assert inb(m, 0x41) == 200


def test_pit_channel2_gate_modes_through_port_61() -> None:
    m, _ = make_pc()
    pit_program(m, 2, 1, 50)  # one-shot waits for the gate's rising edge
    assert inb(m, 0x61) & 0x20
    outb(m, 0x61, 0x01)
    advance(m, ticks_to_ns(1))
    assert not inb(m, 0x61) & 0x20
    advance(m, ticks_to_ns(49))
    assert inb(m, 0x61) & 0x20
    outb(m, 0x61, 0x00)
    pit_program(m, 2, 2, 100)  # rate generator: gate low holds OUT high and stops counting
    advance(m, ticks_to_ns(500))
    assert pit_read_latched(m, 2) == 100 and inb(m, 0x61) & 0x20
    outb(m, 0x61, 0x01)
    advance(m, ticks_to_ns(99))
    assert not inb(m, 0x61) & 0x20  # the counter reached 1: OUT low
    pit_program(m, 2, 0, 100)  # mode 0: gate low pauses
    advance(m, ticks_to_ns(30))
    outb(m, 0x61, 0x00)
    advance(m, ticks_to_ns(1000))
    assert pit_read_latched(m, 2) == 70
    outb(m, 0x61, 0x01)
    advance(m, ticks_to_ns(70))
    assert inb(m, 0x61) & 0x20


def test_speaker_state_and_refresh_toggle() -> None:
    m, _ = make_pc()
    spk = m.bus.devices["speaker"]
    assert spk.frequency() is None
    pit_program(m, 2, 3, 1193)
    outb(m, 0x61, inb(m, 0x61) | 0x03)
    assert spk.frequency() == pytest.approx(PIT_FREQ / 1193)
    assert inb(m, 0x61) & 0x03 == 0x03
    outb(m, 0x61, 0x0C)  # check-enable bits read back, speaker off
    assert spk.frequency() is None and inb(m, 0x61) & 0x0F == 0x0C
    assert [f is not None for _, f in spk.tones[-2:]] == [True, False]
    seen = set()
    for _ in range(4):
        advance(m, 15_085)
        seen.add(inb(m, 0x61) & 0x10)
    assert seen == {0, 0x10}


def test_pit_guest_ticks_through_the_pic(build_guest: Callable[[str], Path]) -> None:
    pytest.importorskip("gdbemu.hw.pic", reason="the 8259 (gdbemu/hw/pic.py) is not there yet")
    m, rec = make_pc()
    m.load_elf(str(build_guest("dev_pit")))
    stop = run_guarded(m, 2_000_000)
    out = m.debug_output.decode()
    assert stop.kind == "exit" and m.exit_code == 1, out
    assert "not ok" not in out
    # 50 ticks of 1193 pulses after the PIT was programmed, then ~1024 pulses of channel 2
    elapsed = m.clock.now()
    assert 50 * 1193 * NS // PIT_FREQ < elapsed < 52 * 1193 * NS // PIT_FREQ + ticks_to_ns(1100)
    assert 50 <= len(rec.edges(0)) <= 51  # the 51st may come while channel 2 counts, after the check


# ======================================================================== CMOS / RTC
def cmos(m: Machine, index: int) -> int:
    outb(m, 0x70, index)
    return inb(m, 0x71)


def cmos_write(m: Machine, index: int, value: int) -> None:
    outb(m, 0x70, index)
    outb(m, 0x71, value)


def test_rtc_time_from_rtc_base_in_bcd() -> None:
    m, _ = make_pc(rtc_base=1_700_000_000)  # 2023-11-14 22:13:20 UTC, a Tuesday
    regs = [cmos(m, i) for i in (0, 2, 4, 6, 7, 8, 9, 0x32)]
    assert regs == [0x20, 0x13, 0x22, 0x03, 0x14, 0x11, 0x23, 0x20]
    assert (cmos(m, 0x0A), cmos(m, 0x0B), cmos(m, 0x0C), cmos(m, 0x0D)) == (0x26, 0x02, 0x00, 0x80)
    advance(m, 100 * NS)
    assert (cmos(m, 0), cmos(m, 2)) == (0x00, 0x15)


def test_rtc_binary_and_12_hour_modes() -> None:
    m, _ = make_pc(rtc_base=1_700_000_000)
    cmos_write(m, 0x0B, 0x04)  # binary, 12-hour
    assert (cmos(m, 0), cmos(m, 2), cmos(m, 4), cmos(m, 9)) == (20, 13, 0x80 | 10, 23)
    cmos_write(m, 0x0B, 0x00)  # BCD, 12-hour
    assert cmos(m, 4) == 0x80 | 0x10


def test_rtc_set_bit_freezes_and_sets_the_time() -> None:
    m, _ = make_pc(rtc_base=1_700_000_000)
    cmos_write(m, 0x0B, 0x82)  # SET
    advance(m, 5 * NS)
    assert cmos(m, 0) == 0x20  # updates inhibited
    for index, value in ((0, 0x58), (2, 0x59), (4, 0x23), (7, 0x31), (8, 0x12), (9, 0x99), (0x32, 0x19)):
        cmos_write(m, index, value)
    assert cmos(m, 0x0A) & 0x80 == 0  # no UIP while SET
    cmos_write(m, 0x0B, 0x02)
    advance(m, 3 * NS)
    assert [cmos(m, i) for i in (0, 2, 4, 7, 8, 9, 0x32, 6)] == [0x01, 0x00, 0x00, 0x01, 0x01, 0x00, 0x20, 0x07]


def test_rtc_uip_in_the_last_244us_of_each_second() -> None:
    m, _ = make_pc()
    now = m.clock.now()
    advance(m, NS - 244_141 - 1 - now % NS)
    assert cmos(m, 0x0A) & 0x80 == 0
    advance(m, 1)
    assert cmos(m, 0x0A) & 0x80
    sec = cmos(m, 0)
    advance(m, 244_141)
    assert cmos(m, 0x0A) & 0x80 == 0 and cmos(m, 0) == sec + 1


def test_rtc_periodic_interrupt_rate_and_c_register() -> None:
    m, rec = make_pc()
    cmos_write(m, 0x0A, 0x26)  # 1024 Hz
    cmos_write(m, 0x0B, 0x42)  # PIE
    period = NS * 32 // 32768
    advance(m, 10 * period)
    assert len(rec.edges(8)) == 1  # C not read: IRQF stays, no new edge
    assert cmos(m, 0x0C) == 0xC0  # IRQF | PF
    rec.clear()
    t = m.clock.now()
    for _ in range(5):
        advance(m, period)
        cmos(m, 0x0C)
    edges = rec.edges(8)
    assert len(edges) == 5
    assert all(abs((b - a) - period) <= 1 for a, b in zip(edges, edges[1:], strict=False))
    assert edges[0] > t
    cmos_write(m, 0x0B, 0x02)
    cmos(m, 0x0C)
    assert m.bus.devices["cmos"].timer.pending is False  # nothing enabled: no timer left


def test_rtc_update_ended_and_alarm_interrupts() -> None:
    m, rec = make_pc(rtc_base=1_700_000_000)
    cmos_write(m, 0x0B, 0x12)  # UIE
    advance(m, 2 * NS)
    assert rec.edges(8) == [NS]  # the first update after time 0
    assert cmos(m, 0x0C) == 0xD0  # IRQF | UF, and PF: set at rate 6 even with PIE clear
    cmos_write(m, 0x0B, 0x22)  # AIE only
    cmos_write(m, 0x01, 0x25)  # alarm at xx:13:25 (seconds 25)
    cmos_write(m, 0x03, 0xC0)  # any minute
    cmos_write(m, 0x05, 0xFF)  # any hour
    rec.clear()
    advance(m, 10 * NS)
    assert rec.edges(8) == [5 * NS]
    assert cmos(m, 0x0C) & 0xA0 == 0xA0


def test_rtc_divider_reset_holds_the_clock() -> None:
    m, _ = make_pc(rtc_base=1_700_000_000)
    cmos_write(m, 0x0A, 0x66)  # DV = 110: divider held in reset
    advance(m, 3 * NS)
    assert cmos(m, 0) == 0x20
    cmos_write(m, 0x0A, 0x26)
    advance(m, NS // 2 - 1)
    assert cmos(m, 0) == 0x20
    advance(m, 1)  # first update 500 ms after release
    assert cmos(m, 0) == 0x21


def test_cmos_nvram_memory_sizes_as_qemu() -> None:
    m, _ = make_pc()
    nv = [cmos(m, i) for i in range(0x80)]
    assert nv[0x15] | nv[0x16] << 8 == 640
    assert nv[0x17] | nv[0x18] << 8 == 31 * 1024
    assert nv[0x30] | nv[0x31] << 8 == 31 * 1024
    assert nv[0x34] | nv[0x35] << 8 == (16 << 20) // 65536
    assert nv[0x5B:0x5E] == [0, 0, 0] and nv[0x5F] == 0
    assert (nv[0x10], nv[0x14], nv[0x38], nv[0x3D]) == (0x00, 0x06, 0x30, 0x12)
    assert nv[0x2E] << 8 | nv[0x2F] == sum(nv[0x10:0x2E])
    m2, _ = make_pc(ram=128 << 20, ncpus=1)
    assert cmos(m2, 0x17) | cmos(m2, 0x18) << 8 == 65535  # capped
    assert cmos(m2, 0x34) | cmos(m2, 0x35) << 8 == (112 << 20) // 65536


def test_cmos_nmi_bit_and_nvram_storage() -> None:
    m, _ = make_pc()
    outb(m, 0x70, 0x80 | 0x40)
    outb(m, 0x71, 0x5A)
    rtc = m.bus.devices["cmos"]
    assert rtc.nmi_disabled and cmos(m, 0x40) == 0x5A and not rtc.nmi_disabled
    assert inb(m, 0x70) == 0xFF
    m.reset()
    assert cmos(m, 0x40) == 0x5A  # battery-backed


# ======================================================================== 8042
def kbc_cmd(m: Machine, cmd: int, *args: int) -> None:
    outb(m, 0x64, cmd)
    for a in args:
        outb(m, 0x60, a)


def drain(m: Machine) -> list[int]:
    out = []
    while inb(m, 0x64) & 1:
        out.append(inb(m, 0x60))
    return out


def test_kbc_state_after_seabios_and_self_tests() -> None:
    m, _ = make_pc()
    assert inb(m, 0x64) == 0x1C
    kbc_cmd(m, 0x20)
    assert drain(m) == [0x61]
    kbc_cmd(m, 0xD0)
    assert drain(m) == [0xCF]
    kbc_cmd(m, 0xAA)
    assert drain(m) == [0x55]
    kbc_cmd(m, 0xAB)
    assert drain(m) == [0x00]
    assert m.mem.io_read(0x92, 1) == 0x02


def test_kbd_keys_arrive_translated_with_irq1() -> None:
    m, rec = make_pc()
    kbc = m.bus.devices["kbd"]
    kbc.feed_keys("aB")
    assert rec.level(1) == 1 and inb(m, 0x64) & 0x21 == 0x01
    codes = []
    while inb(m, 0x64) & 1:
        codes.append(inb(m, 0x60))
    assert codes == [0x1E, 0x9E, 0x2A, 0x30, 0xB0, 0xAA]
    assert rec.level(1) == 0
    assert len(rec.edges(1)) == 6  # one edge per byte


def test_kbd_untranslated_set2_and_set1_selection() -> None:
    m, _ = make_pc()
    kbc = m.bus.devices["kbd"]
    kbc_cmd(m, 0x60, 0x21)  # command byte without translation
    kbc.feed_keys("a")
    assert drain(m) == [0x1C, 0xF0, 0x1C]
    outb(m, 0x60, 0xF0)
    outb(m, 0x60, 0x00)
    assert drain(m) == [0xFA, 0xFA, 0x02]
    outb(m, 0x60, 0xF0)
    outb(m, 0x60, 0x01)
    assert drain(m) == [0xFA, 0xFA]
    kbc.feed_scancodes(bytes([0xE0, 0x48, 0xE0, 0xC8]))  # cursor up, set 1 passes through
    assert drain(m) == [0xE0, 0x48, 0xE0, 0xC8]
    kbc_cmd(m, 0x60, 0x61)  # translation back on; back to set 2
    outb(m, 0x60, 0xF0)
    outb(m, 0x60, 0x02)
    drain(m)
    outb(m, 0x60, 0xF0)
    outb(m, 0x60, 0x00)
    assert drain(m) == [0xFA, 0xFA, 0x41]  # the set number is translated too
    outb(m, 0x60, 0xF0)
    outb(m, 0x60, 0x03)
    assert drain(m) == [0xFA, 0xFE]  # set 3 refused


def test_kbd_commands() -> None:
    m, _ = make_pc()
    outb(m, 0x60, 0xFF)
    assert drain(m) == [0xFA, 0xAA]
    outb(m, 0x60, 0xF2)
    assert drain(m) == [0xFA, 0xAB, 0x41]  # AB 83 translated
    outb(m, 0x60, 0xED)
    outb(m, 0x60, 0x07)
    assert drain(m) == [0xFA, 0xFA] and m.bus.devices["kbd"].kbd.leds == 7
    outb(m, 0x60, 0xF3)
    outb(m, 0x60, 0x20)
    assert drain(m) == [0xFA, 0xFA]
    outb(m, 0x60, 0xEE)
    assert drain(m) == [0xEE]
    outb(m, 0x60, 0xFE)
    assert drain(m) == [0xEE]  # resend
    outb(m, 0x60, 0xF5)
    m.bus.devices["kbd"].feed_keys("x")
    assert drain(m) == [0xFA]  # scanning off: the key is lost
    outb(m, 0x60, 0xF4)
    m.bus.devices["kbd"].feed_keys("x")
    assert drain(m) == [0xFA, 0x2D, 0xAD]
    outb(m, 0x60, 0x12)
    assert drain(m) == [0xFE]


def test_kbc_disable_keyboard_holds_keys_and_controller_buffers() -> None:
    m, rec = make_pc()
    kbc_cmd(m, 0xAD)
    m.bus.devices["kbd"].feed_keys("q")
    assert drain(m) == []
    kbc_cmd(m, 0xAE)
    assert drain(m) == [0x10, 0x90]
    kbc_cmd(m, 0xD2, 0x99)  # as if from the keyboard
    assert rec.level(1) == 1
    assert drain(m) == [0x99]
    kbc_cmd(m, 0x60, 0x43)  # IRQ12 on, aux enabled
    kbc_cmd(m, 0xD3, 0x5A)  # aux loopback
    assert inb(m, 0x64) & 0x21 == 0x21 and rec.level(12) == 1
    assert drain(m) == [0x5A]
    kbc_cmd(m, 0x61, 0x77)
    kbc_cmd(m, 0x21)
    assert drain(m) == [0x77]


def test_kbc_a20_and_output_port() -> None:
    m, _ = make_pc()
    kbc = m.bus.devices["kbd"]
    outb(m, 0x92, 0x00)
    kbc_cmd(m, 0xD1, 0xCD)  # A20 off, reset line high
    assert not kbc.a20_enabled
    kbc_cmd(m, 0xDF)
    assert kbc.a20_enabled
    kbc_cmd(m, 0xDD)
    outb(m, 0x92, 0x02)
    assert kbc.a20_enabled and m.mem.io_read(0x92, 1) == 0x02
    m.bus.devices["kbd"].feed_keys("a")
    kbc_cmd(m, 0xD0)
    assert drain(m)[0] & 0x10  # output port bit 4 mirrors OBF


@pytest.mark.parametrize(
    ("port", "value"),
    [(0x64, 0xFE), (0x92, 0x01), (0xCF9, 0x06), (0xCF9, 0x04)],
)
def test_reset_requests(port: int, value: int) -> None:
    m, _ = make_pc(no_reboot=True)
    outb(m, port, value)
    assert m.stop_reason is not None and m.stop_reason.kind == "reset"
    m, _ = make_pc()
    booted = []
    m.on_reset.append(lambda: booted.append(m.cpu.eip))
    m.cpu.eip = 0x123456
    outb(m, port, value)
    assert booted == []  # not inside the port write: at the next instruction boundary
    m.clock.run_timers()
    assert len(booted) == 1 and m.cpu.eip != 0x123456


def test_kbd_guest_reads_keys_on_irq1(build_guest: Callable[[str], Path]) -> None:
    pytest.importorskip("gdbemu.hw.pic", reason="the 8259 (gdbemu/hw/pic.py) is not there yet")
    m, _ = make_pc()
    m.bus.devices["kbd"].feed_keys("hi there")
    m.load_elf(str(build_guest("dev_kbd")))
    stop = run_guarded(m, 2_000_000)
    out = m.debug_output.decode()
    assert stop.kind == "exit" and m.exit_code == 1, out
    keys = next(line for line in out.splitlines() if line.startswith("keys"))
    got = bytes.fromhex(keys[4:])
    assert got == kbd_mod.keys_to_scancodes("hi there")[: len(got)] and len(got) >= 12


# ======================================================================== fw_cfg
def fw_read(m: Machine, key: int, n: int) -> bytes:
    m.mem.io_write(0x510, 2, key)
    return bytes(inb(m, 0x511) for _ in range(n))


def test_fw_cfg_items_and_directory() -> None:
    m, _ = make_pc(ncpus=1)
    assert fw_read(m, 0x00, 4) == b"QEMU"
    assert fw_read(m, 0x01, 4) == b"\x01\x00\x00\x00"
    assert struct.unpack("<Q", fw_read(m, 0x03, 8))[0] == RAM
    assert fw_read(m, 0x05, 2) == b"\x01\x00" and fw_read(m, 0x0F, 2) == b"\x01\x00"
    assert fw_read(m, 0x04, 2) == b"\x00\x00"
    assert fw_read(m, 0x8002, 4) == b"\x01\x00\x00\x00"
    assert fw_read(m, 0x1234, 4) == bytes(4)  # no such item
    assert fw_read(m, 0x00, 6) == b"QEMU\x00\x00"  # past the end: zeros
    m.mem.io_write(0x511, 1, 0x55)  # data writes ignored
    m.bus.devices["fw_cfg"].add_file("etc/zz-test", b"abc")
    (count,) = struct.unpack(">I", fw_read(m, 0x19, 4))
    entries = {}
    for _ in range(count):
        size, select, _, name = struct.unpack(">IHH56s", bytes(inb(m, 0x511) for _ in range(64)))
        entries[name.rstrip(b"\x00").decode()] = (size, select)
    assert entries == {"etc/e820": (20, 0x20), "etc/zz-test": (3, 0x21)}
    assert struct.unpack("<QQI", fw_read(m, 0x20, 20)) == (0, RAM, 1)
    assert m.mem.io_read(0x511, 2) == 0  # continues after the 20 bytes: zeros
    assert fw_read(m, 0x21, 3) == b"abc"


# ======================================================================== VGA
def test_vga_registers_mode3_and_crtc_access() -> None:
    m, _ = make_pc()
    assert inb(m, 0x3CC) == 0x67
    crtc = []
    for i in range(0x19):
        outb(m, 0x3D4, i)
        crtc.append(inb(m, 0x3D5))
    assert bytes(crtc) == vga_mod.MODE3_CRTC
    m.mem.io_write(0x3D4, 2, 0x340E)  # outw: index 0x0E, data 0x34
    outb(m, 0x3D4, 0x0E)
    assert inb(m, 0x3D5) == 0x34
    outb(m, 0x3D4, 0x01)
    outb(m, 0x3D5, 0x27)  # CR11 bit 7 protects CR00-CR07
    assert inb(m, 0x3D5) == 0x4F
    assert inb(m, 0x3B5) == 0xFF  # colour addressing: the mono CRTC is not decoded
    outb(m, 0x3C2, 0x66)
    assert inb(m, 0x3D5) == 0xFF and inb(m, 0x3B4) == 0x01


def test_vga_attribute_flipflop_status_toggle_and_dac() -> None:
    m, _ = make_pc()
    a, b = inb(m, 0x3DA), inb(m, 0x3DA)
    assert (a ^ b) == 0x09
    outb(m, 0x3C0, 0x21)  # index 1 with PAS
    outb(m, 0x3C0, 0x3A)  # data
    assert inb(m, 0x3C1) == 0x3A and inb(m, 0x3C0) == 0x21
    outb(m, 0x3C0, 0x22)  # an index write again (the flip-flop toggled back)
    inb(m, 0x3DA)
    outb(m, 0x3C0, 0x30)  # index 0x10 after the reset by 0x3DA
    assert inb(m, 0x3C1) == 0x0C
    outb(m, 0x3C8, 5)
    for v in (1, 2, 3, 4, 5, 6):
        outb(m, 0x3C9, v)
    outb(m, 0x3C7, 5)
    assert [inb(m, 0x3C9) for _ in range(6)] == [1, 2, 3, 4, 5, 6]
    assert inb(m, 0x3C8) == 7 and inb(m, 0x3C7) == 3
    outb(m, 0x3C4, 0x04)
    assert inb(m, 0x3C5) == 0x02
    outb(m, 0x3CE, 0x06)
    assert inb(m, 0x3CF) == 0x0E


def test_vga_text_cells_cursor_and_refresh_rows() -> None:
    m, _ = make_pc()
    vga = m.bus.devices["vga"]
    assert vga.refresh() == list(range(25))  # first refresh: everything
    assert vga.refresh() == []
    assert vga.text()[0] == " " * 80 and vga.cells()[0][0] == (0x20, 0x07)
    m.mem.write(0xB8000 + 160 * 7 + 2 * 3, b"H\x1fi\x1f")
    assert vga.refresh() == [7]
    assert vga.text()[7][3:5] == "Hi" and vga.cells()[7][3] == (ord("H"), 0x1F)
    m.mem.io_write(0x3D4, 2, ((80 * 9 + 4) >> 8) << 8 | 0x0E)
    m.mem.io_write(0x3D4, 2, ((80 * 9 + 4) & 0xFF) << 8 | 0x0F)
    assert vga.cursor() == (9, 4)
    assert vga.refresh() == [0, 9]  # the cursor left row 0 and entered row 9
    m.mem.io_write(0x3D4, 2, (80 << 8) | 0x0D)  # start address 80: scrolled by one row
    assert vga.text()[6][3:5] == "Hi" and vga.cursor() == (8, 4)
    assert vga.refresh() == list(range(25))


def test_vga_refresh_reads_memory_only_when_pages_are_dirty(monkeypatch: pytest.MonkeyPatch) -> None:
    m, _ = make_pc()
    vga = m.bus.devices["vga"]
    vga.refresh()
    calls = []
    real = vga._cells_array
    monkeypatch.setattr(vga, "_cells_array", lambda: calls.append(1) or real())
    for _ in range(3):
        assert vga.refresh() == []
    assert calls == []
    m.mem.write(0x100000, b"elsewhere")
    assert vga.refresh() == [] and calls == []


VGA_ROWS_GUEST = """
        .include "lib.inc"
        .text
main:
        xorl %ebx, %ebx                 /* row */
1:      movl %ebx, %eax
        imull $160, %eax
        addl $0xb8000 + 10, %eax
        movb $'#', (%eax)
        movb $0x2f, 1(%eax)
        movl $2000, %ecx
2:      decl %ecx
        jnz 2b
        incl %ebx
        cmpl $25, %ebx
        jb 1b
        ret
"""


def test_vga_dirty_logging_sees_guest_stores_between_refreshes(tmp_path: Path) -> None:
    """Each refresh re-arms the pages (TLB_NOTDIRTY) so later fast-path stores are still seen."""
    try:
        build.toolchain()
    except build.ToolchainMissingError as exc:
        pytest.skip(str(exc))
    src = tmp_path / "vga_rows.s"
    src.write_text(VGA_ROWS_GUEST)
    m, _ = make_pc()
    m.load_elf(str(build.build_guest(src, tmp_path)))
    vga = m.bus.devices["vga"]
    vga.refresh()
    seen: list[int] = []
    for _ in range(100):
        stop = m.run(max_insns=10_000)
        rows = vga.refresh()
        seen += rows
        if stop.kind != "limit":
            break
    assert stop.kind == "exit"
    assert seen == list(range(25))  # every row exactly once, in order
    assert all(line[5] == "#" for line in vga.text())


def _png_pixels(path: Path) -> np.ndarray:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos = 8
    idat = b""
    width = height = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        tag = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(tag + body) & 0xFFFFFFFF
        if tag == b"IHDR":
            width, height, depth, ctype = struct.unpack(">IIBB", body[:10])
            assert (depth, ctype) == (8, 2)
        elif tag == b"IDAT":
            idat += body
        pos += 12 + length
    raw = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(height, 1 + 3 * width)
    assert (raw[:, 0] == 0).all()
    return raw[:, 1:].reshape(height, width, 3)


@pytest.mark.parametrize("font", ["console", "builtin"])
def test_vga_guest_text_cursor_and_screenshot(build_guest: Callable[[str], Path], tmp_path: Path, font: str) -> None:
    m, _ = make_pc()
    m.load_elf(str(build_guest("dev_vga")))
    stop = m.run(max_insns=200_000)
    out = m.debug_output.decode()
    assert stop.kind == "exit" and m.exit_code == 1, out
    vga = m.bus.devices["vga"]
    text = vga.text()
    assert len(text) == 25 and all(len(line) == 80 for line in text)
    assert text[2][5:15] == "Hello, VGA" and text[4].startswith("gdbemu text mode 80x25")
    assert vga.cursor() == (2, 15)
    assert vga.cells()[2][5] == (ord("H"), 0x1E)
    if font == "console" and vga_mod.find_console_font() is None:
        pytest.skip("no PSF console font in /usr/share/consolefonts (Debian: console-setup-linux)")
    chosen = vga_mod.default_font() if font == "console" else vga_mod.builtin_font()
    path = tmp_path / "screen.png"
    assert vga.screenshot(path, font=chosen) == (640, 400)
    img = _png_pixels(path)
    blue, yellow, red = (0, 0, 170), (255, 255, 85), (170, 0, 0)
    cell = img[2 * 16 : 3 * 16, 5 * 8 : 15 * 8].reshape(-1, 3)
    colours = {tuple(int(c) for c in px) for px in cell}
    assert colours == {blue, yellow}  # "Hello, VGA": yellow glyphs on blue
    assert tuple(int(c) for c in img[4 * 16 + 1, 0]) in (red, (255, 255, 255))
    bar = [tuple(int(c) for c in img[24 * 16 + 8, i * 8 + 4]) for i in range(16)]
    expected = [tuple(int(v) * 255 // 63 for v in rgb) for rgb in vga_mod.ega_dac()[:64]]
    assert bar == [expected[i] for i in vga_mod.MODE3_ATTR[:16]]  # the 16 colours through the palette
    cursor_rows = img[2 * 16 + 13 : 2 * 16 + 15, 15 * 8 : 16 * 8]
    assert (cursor_rows == 170).any()  # the underline cursor (light grey on the default attribute)
    assert (img[2 * 16 : 2 * 16 + 13, 15 * 8 : 16 * 8] == 0).all()


def test_psf_loader_reads_a_console_font() -> None:
    path = vga_mod.find_console_font()
    if path is None:
        pytest.skip("no PSF console font in /usr/share/consolefonts (Debian: console-setup-linux)")
    font = vga_mod.load_psf(path)
    assert (font.height, font.width) == (16, 8)
    table = font.cp437_table()
    assert table[ord("A")].any() and not table[0x20].any() and not table[0].any()
    assert table[0xDB].all()  # full block


# ======================================================================== debug ports
def test_debug_ports_config() -> None:
    con = io.BytesIO()
    m, _ = make_pc(debug_exit=(0x501, 2), debugcon=con)
    outb(m, 0xE9, ord("!"))
    assert con.getvalue() == b"!" and m.debug_output == b"" and inb(m, 0xE9) == 0xE9
    outb(m, 0xF4, 1)
    assert m.stop_reason is None
    outb(m, 0x502, 0x21)
    assert m.stop_reason.kind == "exit" and m.exit_code == 0x43
    m, _ = make_pc(debug_exit=None)
    outb(m, 0xF4, 1)
    assert m.stop_reason is None and inb(m, 0xF4) == 0xFF


def test_debug_ports_are_the_bare_machines_reconfigured_by_the_board() -> None:
    """A bare Machine has isa-debug-exit at 0xF4 and the 0xE9 console into ``debug_output``;
    ``build_pc`` reconfigures that one device (no second copy replacing it)."""
    m = Machine(RAM)
    ports = m.bus.devices["debugport"]
    outb(m, 0xE9, ord("a"))
    assert m.debug_output == b"a" and inb(m, 0xE9) == 0xE9
    outb(m, 0xF5, 2)
    assert m.stop_reason.kind == "exit" and m.exit_code == 5
    m = Machine(RAM)
    ports = m.bus.devices["debugport"]
    con = io.BytesIO()
    build_pc(m.bus, PCConfig(serial=[io.BytesIO()], debug_exit=(0x501, 2), debugcon=con))
    assert m.bus.devices["debugport"] is ports
    outb(m, 0xE9, ord("b"))
    outb(m, 0xF4, 1)
    assert con.getvalue() == b"b" and m.debug_output == b"" and m.stop_reason is None and inb(m, 0xF4) == 0xFF
    outb(m, 0x501, 3)
    assert m.stop_reason.kind == "exit" and m.exit_code == 7


# ======================================================================== guests, and QEMU
def test_uart_guests_on_gdbemu(build_guest: Callable[[str], Path]) -> None:
    for name in ("dev_uart_polled", "dev_uart_irq"):
        if name == "dev_uart_irq":
            pytest.importorskip("gdbemu.hw.pic", reason="the 8259 (gdbemu/hw/pic.py) is not there yet")
        ser = io.BytesIO()
        m, _ = make_pc(serial=[ser])
        m.load_elf(str(build_guest(name)))
        stop = run_guarded(m, 1_000_000)
        out = m.debug_output.decode()
        assert stop.kind == "exit" and m.exit_code == 1, out
        assert "not ok" not in out and ser.getvalue().startswith(b"gdbemu serial: ")


def run_qemu_dev(elf: Path, tmp_path: Path) -> tuple[int, bytes, bytes]:
    """(exit status, debugcon bytes, COM1 bytes) of a guest on qemu-system-i386 with VGA and COM1."""
    qemu = shutil.which("qemu-system-i386")
    if not qemu:
        pytest.skip("qemu-system-i386 not installed (Debian: qemu-system-x86)")
    base = datetime.fromtimestamp(PCConfig().rtc_base, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    dc, ser = tmp_path / f"{elf.stem}.dc", tmp_path / f"{elf.stem}.ser"
    cmd = [
        qemu, "-nodefaults", "-vga", "std", "-display", "none", "-no-reboot", "-m", "32", "-accel", "tcg",
        "-kernel", str(elf), "-debugcon", f"file:{dc}", "-serial", f"file:{ser}",
        "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-rtc", f"base={base}",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, timeout=120)
    return proc.returncode, dc.read_bytes() if dc.exists() else b"", ser.read_bytes() if ser.exists() else b""


@pytest.mark.parametrize("name", ["dev_uart_polled", "dev_uart_irq", "dev_rtc_fwcfg", "dev_pit", "dev_vga"])
def test_dev_guest_matches_qemu(build_guest: Callable[[str], Path], tmp_path: Path, name: str) -> None:
    """Same guest, same transcripts: the debug console (checks and reports) and COM1 byte for byte."""
    if name in ("dev_uart_irq", "dev_pit"):
        pytest.importorskip("gdbemu.hw.pic", reason="the 8259 (gdbemu/hw/pic.py) is not there yet")
    elf = build_guest(name)
    status, q_dc, q_ser = run_qemu_dev(elf, tmp_path)
    assert status == 1, q_dc.decode(errors="replace")  # every check passed on QEMU
    ser = io.BytesIO()
    m, _ = make_pc(serial=[ser])
    m.load_elf(str(elf))
    stop = run_guarded(m, 2_000_000)
    assert stop.kind == "exit" and m.exit_code == 1, m.debug_output.decode()
    assert m.debug_output.decode().splitlines() == q_dc.decode().splitlines()
    assert ser.getvalue() == q_ser


def test_guest_runs_are_deterministic(build_guest: Callable[[str], Path]) -> None:
    """Same guest, same devices: the same instructions, the same IRQ events at the same virtual times."""
    pytest.importorskip("gdbemu.hw.pic", reason="the 8259 (gdbemu/hw/pic.py) is not there yet")
    elf = build_guest("dev_pit")
    runs = []
    for _ in range(2):
        m, rec = make_pc()
        m.load_elf(str(elf))
        run_guarded(m, 2_000_000)
        runs.append((m.cpu.icount, m.clock.now(), bytes(m.debug_output), list(rec.events)))
    assert runs[0] == runs[1]


def test_system_reset_returns_devices_to_their_boot_state() -> None:
    m, _ = make_pc(nographic=True)
    assert fw_read(m, 0x04, 2) == b"\x01\x00"
    pit_program(m, 0, 0, 5)
    uart_8n1(m)
    outb(m, COM1 + 7, 0x77)
    kbc_cmd(m, 0x60, 0x00)
    m.mem.io_write(0x3D4, 2, 0x120E)
    m.reset()
    outb(m, 0x43, 0xE2)
    assert inb(m, 0x40) == 0x86 and m.clock.next_deadline() is None
    assert [inb(m, COM1 + i) for i in range(8)] == [0x00, 0x00, 0x01, 0x00, 0x08, 0x60, 0xB0, 0x00]
    kbc_cmd(m, 0x20)
    assert drain(m) == [0x61]
    assert m.bus.devices["vga"].cursor() == (0, 0) and m.bus.devices["vga"].text()[0] == " " * 80
