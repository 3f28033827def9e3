"""16550A UARTs on COM1-COM4 (0x3F8/IRQ4, 0x2F8/IRQ3, 0x3E8/IRQ4, 0x2E8/IRQ3).

Theory of operation (register map and behaviour from the National/TI
PC16550D datasheet, "Register Description" and tables 2-4; the PC wiring of
OUT2 from the IBM PC/AT Asynchronous Communications Adapter manual):

* Registers, by offset from the base, DLAB = LCR bit 7 selecting the divisor
  latch at offsets 0/1: RBR (read) / THR (write), IER, IIR (read) / FCR
  (write), LCR, MCR, LSR, MSR, SCR.
* Bytes pass between the guest and the host whole, whatever the word
  length in LCR: the host end is a byte stream, not a UART, and a kernel
  that never programs LCR (reset value: 5 data bits) prints the same text
  as on QEMU.  Loopback, which stays inside the chip, keeps N data bits.
* Transmit completes instantly in virtual time: a byte written to THR goes to
  the host sink at once and THR/TSR are empty again (LSR.THRE and TEMT stay
  1).  QEMU does the same.  A real line at 115200 baud takes ~87 us a byte,
  ~11,000 guest instructions here, so modelling the wire would make every
  kernel that prints through a polled UART spin for millions of instructions
  without changing anything it can observe except how long it waits.
* The THRE interrupt follows the datasheet: it becomes pending whenever THR
  empties (so right after each THR write, transmission being instant) and
  when ETBEI is set while THR is empty; it is cleared by reading IIR while
  it is the reported source, or by writing THR.
* Receive: host bytes (``feed()``, or a ``PCConfig.serial_input`` stream)
  arrive one per character time on the virtual clock (start + data + parity
  + stop bits at the programmed divisor), and only while the receiver has
  room: the host side is flow-controlled instead of overrunning (an
  overrun is still produced by loopback writes into a full receiver).  The
  RX FIFO is 16 bytes (1 byte with FIFOs disabled); RDA is raised at the
  trigger level (FCR bits 7-6: 1, 4, 8, 14), the character timeout (CTI)
  after four character times without input or reads while data is below the
  trigger level.
* IIR priorities (datasheet table 4): receiver line status, then received
  data available / character timeout, then THRE, then modem status.
  IIR bits 7-6 are 11 with FIFOs enabled.
* Loopback (MCR bit 4): THR feeds the receiver, MSR reflects MCR
  (CTS=RTS, DSR=DTR, RI=OUT1, DCD=OUT2), host input and output are
  disconnected.  Outside loopback the modem inputs read as a connected
  terminal: CTS, DSR and DCD asserted (MSR = 0xB0), as QEMU presents them.
* The IRQ line follows the UART's INTR output whatever MCR holds, as
  QEMU's serial.c does (``serial_update_irq`` looks at IIR only).  On a real
  PC serial adapter INTR reaches the ISA bus through a buffer enabled by
  OUT2 (MCR bit 3), forced off in loopback; we do not gate on it, because
  kernels written against QEMU (xv6 among them) write 0 to MCR and still
  expect their receive interrupt.  MSR's DCD still reflects OUT2 in loopback.
* Reset state is what a kernel sees on QEMU at entry: LCR 0, divisor 12
  (9600 baud), MCR = OUT2, LSR = THRE|TEMT, MSR = 0xB0, FIFOs off.

Output goes to a ``hw.bus.CharSink``, as the 0xE9 debug console's does.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, BinaryIO

from .bus import Bus, CharSink

if TYPE_CHECKING:
    from .pc import PCConfig

from ..clock import NS_PER_SEC
from .state import State, capture, restore

UART_CLOCK_BAUD = 115200  # 1.8432 MHz / 16: the baud rate at divisor 1

# (base port, ISA IRQ) of COM1..COM4, in PCConfig.serial order.
COM_PORTS = [(0x3F8, 4), (0x2F8, 3), (0x3E8, 4), (0x2E8, 3)]

# IER bits
IER_RDI = 0x01  # received data available
IER_THRI = 0x02  # transmitter holding register empty
IER_RLSI = 0x04  # receiver line status
IER_MSI = 0x08  # modem status
# IIR interrupt identifications (bits 3-0)
IIR_NONE = 0x01
IIR_RLS = 0x06
IIR_RDA = 0x04
IIR_CTI = 0x0C
IIR_THRE = 0x02
IIR_MSR = 0x00
IIR_FIFO = 0xC0
# FCR bits
FCR_ENABLE = 0x01
FCR_CLEAR_RX = 0x02
FCR_CLEAR_TX = 0x04
FCR_DMA = 0x08
RX_TRIGGER = (1, 4, 8, 14)
# LCR / MCR bits
LCR_DLAB = 0x80
MCR_DTR = 0x01
MCR_RTS = 0x02
MCR_OUT1 = 0x04
MCR_OUT2 = 0x08
MCR_LOOP = 0x10
# LSR bits
LSR_DR = 0x01
LSR_OE = 0x02
LSR_PE = 0x04
LSR_FE = 0x08
LSR_BI = 0x10
LSR_THRE = 0x20
LSR_TEMT = 0x40
LSR_FIFO_ERR = 0x80
LSR_ERRORS = LSR_OE | LSR_PE | LSR_FE | LSR_BI
# MSR bits
MSR_DCTS = 0x01
MSR_DDSR = 0x02
MSR_TERI = 0x04
MSR_DDCD = 0x08
MSR_CTS = 0x10
MSR_DSR = 0x20
MSR_RI = 0x40
MSR_DCD = 0x80
MSR_DELTAS = 0x0F
MSR_CONNECTED = MSR_CTS | MSR_DSR | MSR_DCD

FIFO_SIZE = 16


class SerialInput:
    """Bytes on their way from the host to a UART's receiver.

    ``feed(data)`` queues bytes (the CLI pushes console input here); a
    ``source`` stream, if given, is read lazily when the queue runs dry.  The
    stream must not block (a file or ``io.BytesIO``); an interactive console
    uses ``feed``.
    """

    # ---- snapshots (hw/state.py) -----------------------------------------------------
    STATE_EXCLUDE = frozenset({"source"})  # collaborators and configuration, not state

    def save_state(self) -> State:
        """This device's state for a snapshot (its declared fields minus ``STATE_EXCLUDE``)."""
        return capture(self, self.STATE_EXCLUDE)

    def load_state(self, state: State) -> None:
        """Restore what ``save_state`` returned."""
        restore(self, state, self.STATE_EXCLUDE)

    def __init__(self, source: BinaryIO | None = None) -> None:
        self.queue: deque[int] = deque()
        self.source = source
        self.listeners: list[Callable[[], None]] = []  # called when bytes arrive through feed()

    def feed(self, data: bytes) -> None:
        self.queue.extend(data)
        for fn in self.listeners:
            fn()

    def _fill(self) -> None:
        if self.queue or self.source is None:
            return
        chunk = self.source.read(64)
        if chunk:
            self.queue.extend(chunk)
        else:
            self.source = None  # end of file

    def pending(self) -> bool:
        self._fill()
        return bool(self.queue)

    def pop(self) -> int | None:
        self._fill()
        return self.queue.popleft() if self.queue else None


class UART16550:
    """One 16550A; ``io_read``/``io_write`` take ports ``base .. base+7``."""

    # ---- snapshots (hw/state.py) -----------------------------------------------------
    STATE_EXCLUDE = frozenset(
        {"bus", "clock", "sink", "name", "base", "irq"}
    )  # collaborators and configuration, not state

    def save_state(self) -> State:
        """This device's state for a snapshot (its declared fields minus ``STATE_EXCLUDE``)."""
        return capture(self, self.STATE_EXCLUDE)

    def load_state(self, state: State) -> None:
        """Restore what ``save_state`` returned."""
        restore(self, state, self.STATE_EXCLUDE)

    def __init__(
        self, bus: Bus, base: int, irq: int, sink: CharSink, line: Callable[[UART16550, int], None], name: str = ""
    ) -> None:
        self.bus = bus
        self.clock = bus.clock
        self.base = base
        self.irq = irq
        self.sink = sink
        self.line = line  # (uart, level) -> None: the shared ISA line this UART drives
        self.name = name or f"uart@{base:#x}"
        self.input = SerialInput()
        self.input.listeners.append(self._input_arrived)
        self.rx_timer = self.clock.new_timer(self._receive_next)
        self.timeout_timer = self.clock.new_timer(self._char_timeout)
        self.tx_bytes = 0
        self.reset()

    # ---- state -------------------------------------------------------------------
    def reset(self) -> None:
        """Master reset, then the state QEMU leaves for a kernel (MCR = OUT2, divisor 12)."""
        self.rx_fifo: deque[int] = deque()
        self.ier = 0
        self.lcr = 0
        self.mcr = MCR_OUT2
        self.lsr = LSR_THRE | LSR_TEMT
        self.msr = MSR_CONNECTED
        self.scr = 0
        self.divisor = 12
        self.fcr = 0
        self.thr_ipending = False
        self.timeout_ipending = False
        self.irq_level = 0
        self.rx_timer.cancel()
        self.timeout_timer.cancel()
        self.line(self, 0)
        self._schedule_receive()

    @property
    def fifo_enabled(self) -> bool:
        return bool(self.fcr & FCR_ENABLE)

    @property
    def rx_trigger(self) -> int:
        return RX_TRIGGER[self.fcr >> 6] if self.fifo_enabled else 1

    def char_time_ns(self) -> int:
        """One character on the line: start bit, data bits, parity, stop bits at the divisor's baud rate."""
        data_bits = (self.lcr & 3) + 5
        stop = 1 if not self.lcr & 4 else (1.5 if data_bits == 5 else 2)
        parity = 1 if self.lcr & 8 else 0
        bits = 1 + data_bits + parity + stop
        divisor = self.divisor or 0x10000  # datasheet: 0 is not a valid divisor; the latch counts 65536
        return int(bits * divisor * NS_PER_SEC / UART_CLOCK_BAUD)

    # ---- interrupts ----------------------------------------------------------------
    def interrupt_id(self) -> int:
        """The highest-priority pending, enabled source (datasheet table 4)."""
        ier = self.ier
        if ier & IER_RLSI and self.lsr & LSR_ERRORS:
            return IIR_RLS
        if ier & IER_RDI:
            if self.timeout_ipending:
                return IIR_CTI
            if self.lsr & LSR_DR and (not self.fifo_enabled or len(self.rx_fifo) >= self.rx_trigger):
                return IIR_RDA
        if ier & IER_THRI and self.thr_ipending:
            return IIR_THRE
        if ier & IER_MSI and self.msr & MSR_DELTAS:
            return IIR_MSR
        return IIR_NONE

    def _update_irq(self) -> None:
        """INTR onto the ISA line, not gated by OUT2 or loopback (as QEMU; module docstring)."""
        level = 1 if self.interrupt_id() != IIR_NONE else 0
        if level != self.irq_level:
            self.irq_level = level
            self.line(self, level)

    # ---- receiver --------------------------------------------------------------------
    def _rx_room(self) -> bool:
        if self.fifo_enabled:
            return len(self.rx_fifo) < FIFO_SIZE
        return not self.lsr & LSR_DR

    def _receive(self, byte: int) -> None:
        """A character completed in the receive shift register."""
        if self.fifo_enabled:
            if len(self.rx_fifo) >= FIFO_SIZE:
                self.lsr |= LSR_OE  # the shift register's character is lost, the FIFO kept
            else:
                self.rx_fifo.append(byte)
            self.timeout_ipending = False
            self.timeout_timer.mod(self.clock.now() + 4 * self.char_time_ns())
        else:
            if self.lsr & LSR_DR:
                self.lsr |= LSR_OE  # RBR overwritten
            self.rx_fifo.clear()
            self.rx_fifo.append(byte)
        self.lsr |= LSR_DR
        self._update_irq()

    def _schedule_receive(self) -> None:
        """Arm the line for the next host byte if one waits and the receiver can take it."""
        if self.rx_timer.pending or self.mcr & MCR_LOOP:
            return
        if self._rx_room() and self.input.pending():
            self.rx_timer.mod(self.clock.now() + self.char_time_ns())

    def _receive_next(self) -> None:
        if self.mcr & MCR_LOOP or not self._rx_room():
            return  # rescheduled when the guest reads or leaves loopback
        byte = self.input.pop()
        if byte is not None:
            self._receive(byte)
        self._schedule_receive()

    def _input_arrived(self) -> None:
        self._schedule_receive()

    def _char_timeout(self) -> None:
        if self.fifo_enabled and self.rx_fifo:
            self.timeout_ipending = True
            self._update_irq()

    def feed(self, data: bytes) -> None:
        """Host bytes for this port's receiver (console input)."""
        self.input.feed(data)

    def _read_rbr(self) -> int:
        if not self.rx_fifo:
            return 0
        byte = self.rx_fifo.popleft()
        if not self.rx_fifo:
            self.lsr &= ~LSR_DR
            self.timeout_timer.cancel()
        elif self.fifo_enabled:
            self.timeout_timer.mod(self.clock.now() + 4 * self.char_time_ns())
        self.timeout_ipending = False
        self._update_irq()
        self._schedule_receive()
        return byte

    # ---- transmitter ------------------------------------------------------------------
    def _write_thr(self, value: int) -> None:
        self.thr_ipending = False
        self.tx_bytes += 1
        if self.mcr & MCR_LOOP:
            self._receive(value & ((1 << ((self.lcr & 3) + 5)) - 1))  # the receiver assembles N data bits
        else:
            self.sink.write(bytes((value,)))
        # Instant transmission: THR and the shift register are empty again.
        self.lsr |= LSR_THRE | LSR_TEMT
        self.thr_ipending = True
        self._update_irq()

    # ---- modem lines --------------------------------------------------------------------
    def _modem_inputs(self) -> int:
        if self.mcr & MCR_LOOP:
            m = self.mcr
            return (
                (MSR_CTS if m & MCR_RTS else 0)
                | (MSR_DSR if m & MCR_DTR else 0)
                | (MSR_RI if m & MCR_OUT1 else 0)
                | (MSR_DCD if m & MCR_OUT2 else 0)
            )
        return MSR_CONNECTED

    def _write_mcr(self, value: int) -> None:
        was_loop = self.mcr & MCR_LOOP
        self.mcr = value & 0x1F
        old = self.msr & 0xF0
        new = self._modem_inputs()
        delta = 0
        if (old ^ new) & MSR_CTS:
            delta |= MSR_DCTS
        if (old ^ new) & MSR_DSR:
            delta |= MSR_DDSR
        if old & MSR_RI and not new & MSR_RI:
            delta |= MSR_TERI  # trailing edge of RI only
        if (old ^ new) & MSR_DCD:
            delta |= MSR_DDCD
        self.msr = new | (self.msr & MSR_DELTAS) | delta
        self._update_irq()
        if was_loop and not self.mcr & MCR_LOOP:
            self._schedule_receive()

    # ---- port interface ---------------------------------------------------------------------
    def io_read(self, port: int, size: int) -> int:
        if size > 1:
            return self.bus.split_read(port, size)
        off = (port - self.base) & 7
        dlab = self.lcr & LCR_DLAB
        if off == 0:
            return self.divisor & 0xFF if dlab else self._read_rbr()
        if off == 1:
            return self.divisor >> 8 if dlab else self.ier
        if off == 2:
            iid = self.interrupt_id()
            if iid == IIR_THRE:
                self.thr_ipending = False  # reading IIR clears a reported THRE interrupt
                self._update_irq()
            return iid | (IIR_FIFO if self.fifo_enabled else 0)
        if off == 3:
            return self.lcr
        if off == 4:
            return self.mcr
        if off == 5:
            value = self.lsr
            if self.fifo_enabled and self.lsr & LSR_ERRORS:
                value |= LSR_FIFO_ERR
            self.lsr &= ~(LSR_ERRORS | LSR_FIFO_ERR)
            if value & LSR_ERRORS:
                self._update_irq()
            return value
        if off == 6:
            value = self.msr
            self.msr &= ~MSR_DELTAS
            if value & MSR_DELTAS:
                self._update_irq()
            return value
        return self.scr

    def io_write(self, port: int, size: int, value: int) -> None:
        if size > 1:
            self.bus.split_write(port, size, value)
            return
        off = (port - self.base) & 7
        value &= 0xFF
        dlab = self.lcr & LCR_DLAB
        if off == 0:
            if dlab:
                self.divisor = (self.divisor & 0xFF00) | value
            else:
                self._write_thr(value)
        elif off == 1:
            if dlab:
                self.divisor = (self.divisor & 0x00FF) | (value << 8)
            else:
                old = self.ier
                self.ier = value & 0x0F
                if self.ier & IER_THRI and not old & IER_THRI and self.lsr & LSR_THRE:
                    self.thr_ipending = True  # enabling ETBEI with THR empty interrupts at once
                self._update_irq()
        elif off == 2:
            self._write_fcr(value)
        elif off == 3:
            self.lcr = value
        elif off == 4:
            self._write_mcr(value)
        elif off == 7:
            self.scr = value
        # LSR and MSR are read-only (the datasheet's factory-test writes are not modelled)

    def _write_fcr(self, value: int) -> None:
        enable = value & FCR_ENABLE
        if bool(enable) != self.fifo_enabled:
            self.rx_fifo.clear()  # changing FIFO mode empties both FIFOs
            self.lsr &= ~LSR_DR
            self.timeout_ipending = False
            self.timeout_timer.cancel()
        if not enable:
            self.fcr = 0  # FCR0 must be set for the other bits to be written
        else:
            if value & FCR_CLEAR_RX:
                self.rx_fifo.clear()
                self.lsr &= ~LSR_DR
                self.timeout_ipending = False
                self.timeout_timer.cancel()
            self.fcr = value & (FCR_ENABLE | FCR_DMA | 0xC0)
        self._update_irq()
        self._schedule_receive()


class SerialPorts:
    """The board's UARTs (``bus.devices["uart"]``); ``ports[0]`` is COM1.

    COM1/COM3 and COM2/COM4 share an ISA line; the line carries the OR of
    the UARTs driving it (an ISA line is not really shareable; this only
    keeps two enabled ports from cancelling each other's level).
    """

    # ---- snapshots (hw/state.py) -----------------------------------------------------
    STATE_EXCLUDE = frozenset({"bus"})  # collaborators and configuration, not state

    def save_state(self) -> State:
        """This device's state for a snapshot (its declared fields minus ``STATE_EXCLUDE``)."""
        return capture(self, self.STATE_EXCLUDE)

    def load_state(self, state: State) -> None:
        """Restore what ``save_state`` returned."""
        restore(self, state, self.STATE_EXCLUDE)

    def __init__(self, bus: Bus, specs: list[object], input_stream: BinaryIO | None) -> None:
        if len(specs) > len(COM_PORTS):
            raise ValueError(f"at most {len(COM_PORTS)} serial ports (COM1-COM4), got {len(specs)}")
        self.bus = bus
        self.levels: dict[int, dict[int, int]] = {}
        self.ports: list[UART16550 | None] = []
        for i, spec in enumerate(specs):
            if spec is None:
                self.ports.append(None)
                continue
            base, irq = COM_PORTS[i]
            uart = UART16550(bus, base, irq, CharSink(spec), self._line, name=f"COM{i + 1}")
            bus.add_port(base, 8, uart)
            self.ports.append(uart)
        if input_stream is not None and self.ports and self.ports[0] is not None:
            self.ports[0].input.source = input_stream
            self.ports[0]._schedule_receive()

    def _line(self, uart: UART16550, level: int) -> None:
        per_line = self.levels.setdefault(uart.irq, {})
        old = any(per_line.values())
        per_line[uart.base] = level
        new = any(per_line.values())
        if new != old:
            self.bus.set_irq(uart.irq, int(new))

    def __getitem__(self, index: int) -> UART16550 | None:
        return self.ports[index]

    def __len__(self) -> int:
        return len(self.ports)

    def feed(self, data: bytes, port: int = 0) -> None:
        """Host input for COM1 (or ``port``): the CLI pushes console bytes here."""
        uart = self.ports[port]
        if uart is None:
            raise ValueError(f"COM{port + 1} is not configured")
        uart.feed(data)

    def reset(self) -> None:
        for uart in self.ports:
            if uart is not None:
                uart.reset()

    def flush(self) -> None:
        for uart in self.ports:
            if uart is not None:
                uart.sink.flush()

    def close(self) -> None:
        for uart in self.ports:
            if uart is not None:
                uart.sink.close()


def attach(bus: Bus, config: PCConfig) -> SerialPorts:
    """COM ports per ``config.serial``; ``config.serial_input`` feeds COM1's receiver."""
    ports = SerialPorts(bus, list(config.serial), config.serial_input)
    bus.add_reset_hook(ports.reset)
    return ports
