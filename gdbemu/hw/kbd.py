"""8042 keyboard controller (0x60/0x64) with an MF2 keyboard, fast A20 / reset (0x92), reset control (0xCF9).

Theory of operation (IBM PC/AT Technical Reference, "Keyboard Controller":
status register, command byte, controller commands, output port; IBM
"Keyboard/Auxiliary Device Controller" for the PS/2 commands; the MF2
keyboard command set; Intel PIIX4 datasheet, Reset Control Register 0xCF9):

* Port 0x64 read: status — bit 0 OBF, 1 IBF (always 0: every write is
  processed at once), 2 system flag, 3 last write was a command (0x64),
  4 keyboard not inhibited, 5 the output byte came from the auxiliary port,
  6 time-out, 7 parity error.  Port 0x64 write: a controller command; port
  0x60 write: that command's parameter if it takes one, otherwise a byte
  for the keyboard.  Port 0x60 read: the output buffer (clears OBF).
* Command byte (0x20 read, 0x60 write): bit 0 IRQ1 on keyboard data, 1
  IRQ12 on auxiliary data, 2 system flag, 4 keyboard disabled, 5 auxiliary
  disabled, 6 translate set 2 to set 1.  IRQ1 (IRQ12) follows "OBF holds a
  keyboard (aux) byte and its interrupt is enabled"; reading 0x60 lowers it.
* Controller commands: 0x20-0x3F / 0x60-0x7F read/write its RAM (byte 0
  is the command byte), 0xA7/0xA8 disable/enable aux, 0xA9 aux interface
  test (0x00), 0xAA self test (0x55), 0xAB keyboard interface test (0x00),
  0xAD/0xAE disable/enable the keyboard, 0xC0 input port, 0xD0/0xD1 read/
  write the output port (bit 0 = 0 resets the system, bit 1 = A20 gate),
  0xD2/0xD3 write the keyboard/aux output buffer, 0xD4 write to the aux
  device (none is attached: the byte goes nowhere), 0xDD/0xDF A20 off/on,
  0xE0 test inputs, 0xF0-0xFF pulse output port bits (bit 0 low: reset,
  so 0xFE resets).
* Translation (command byte bit 6): the controller turns the keyboard's
  set-2 codes into set-1 codes with the fixed 8042 table, and swallows a
  0xF0 break prefix, setting bit 7 of the next byte instead.  Keyboard
  replies (0xFA, 0xAA, 0xAB ...) are >= 0x80 and pass unchanged, except the
  table's own entries (0x83 -> 0x41: identify reads FA AB 41 translated).
* The keyboard (MF2): 0xFF reset -> FA AA, 0xFE resend, 0xF6 defaults,
  0xF5 disable / 0xF4 enable scanning, 0xF3 typematic + byte, 0xF2
  identify -> FA AB 83, 0xF0 scancode set + byte (0 reports the set; sets 1
  and 2 are supported, set 3 is refused with 0xFE), 0xEE echo, 0xED LEDs +
  byte, 0xF7-0xFD (set-3 key types) acknowledged; anything else -> 0xFE.
* Host input: ``feed_scancodes`` takes set-1 codes (what a guest sees in
  the default translated mode) and ``feed_keys`` turns ASCII into set-1
  make/break codes with Shift/Ctrl.  They wait in a host queue and enter the
  keyboard's 16-byte buffer as it has room, converted to the selected set;
  while scanning is disabled (0xF5) keys are lost, as on a keyboard, while
  the controller merely inhibits the keyboard (0xAD) they wait.
  ``PCConfig.keyboard_input`` (a non-blocking stream of ASCII) is typed the
  same way, read as the keyboard buffer drains.
* Resets: 0xFE (and D1 with bit 0 clear), port 0x92 bit 0 rising, port
  0xCF9 bit 2 set: ``bus.request_reset``: a system reset at the next
  instruction boundary, or with ``PCConfig.no_reboot`` a ``reset`` stop.  The A20 gate (output
  port bit 1 OR port 0x92 bit 1) is tracked in ``a20_enabled``; the core
  has no A20 masking, so addresses never wrap at 1 MiB either way.
* Initial state is what a kernel sees on QEMU after SeaBIOS: command byte
  0x61 (IRQ1, aux disabled, translation), status 0x1C, output port 0xCF,
  port 0x92 = 0x02 (A20 on).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, BinaryIO

from .bus import Bus
from .state import State, capture, restore

if TYPE_CHECKING:
    from .pc import PCConfig


KBD_IRQ = 1
AUX_IRQ = 12

ST_OBF = 0x01
ST_SYS = 0x04
ST_CMD = 0x08
ST_UNLOCKED = 0x10
ST_AUX = 0x20

CB_KBD_INT = 0x01
CB_AUX_INT = 0x02
CB_SYS = 0x04
CB_KBD_DISABLE = 0x10
CB_AUX_DISABLE = 0x20
CB_XLATE = 0x40

OUT_RESET = 0x01
OUT_A20 = 0x02
OUT_KBD_OBF = 0x10
OUT_AUX_OBF = 0x20

KBD_BUFFER = 16

# The 8042's set-2 -> set-1 translation for codes 0x00-0x7F and the two
# codes above it that it also maps (0x83 F7, 0x84 SysRq); every other byte
# passes unchanged.  A property of the controller's ROM, listed by rows of 16.
_XLATE_ROWS = (
    "ff43413f3d3b3c58644442403e0f2959",
    "65382a701d10025a66712c1f1e11035b",
    "672e2d201205045c68392f211413065d",
    "693130232215075e6a7232241608095f",
    "6b332517180b0a606c34352627190c61",
    "6d7328741a0d626e3a361c1b752b6376",
    "55567778797a0e7b7c4f7d4b477e7f6f",
    "5253504c4d480145574e514a37494654",
)
TRANSLATE = bytes.fromhex("".join(_XLATE_ROWS)) + bytes(range(0x80, 0x100))
assert len(TRANSLATE) == 256
TRANSLATE = TRANSLATE[:0x83] + b"\x41\x54" + TRANSLATE[0x85:]

# Set-1 make code -> set-2 make code: the inverse of the translation, with
# the real keys chosen where two set-2 codes translate alike (F7, SysRq).
SET1_TO_SET2 = {}
for _s2 in range(0x7F, -1, -1):
    SET1_TO_SET2[TRANSLATE[_s2]] = _s2
SET1_TO_SET2[0x41] = 0x83
SET1_TO_SET2[0x54] = 0x84
SET1_TO_SET2.pop(0xFF, None)

# ASCII -> (set-1 make code, shift) on a US layout.
_UNSHIFTED = "\x1b1234567890-=\b\tqwertyuiop[]\n\x00asdfghjkl;'`\x00\\zxcvbnm,./"
_SHIFTED = '\x00!@#$%^&*()_+\x00\x00QWERTYUIOP{}\x00\x00ASDFGHJKL:"~\x00|ZXCVBNM<>?'
ASCII_KEYS: dict[str, tuple[int, bool]] = {" ": (0x39, False), "\r": (0x1C, False)}
for _i, _ch in enumerate(_UNSHIFTED):
    if _ch != "\x00":
        ASCII_KEYS[_ch] = (0x01 + _i, False)
for _i, _ch in enumerate(_SHIFTED):
    if _ch != "\x00":
        ASCII_KEYS[_ch] = (0x01 + _i, True)
LSHIFT = 0x2A
LCTRL = 0x1D


def keys_to_scancodes(text: str, strict: bool = True) -> bytes:
    """Set-1 make/break codes typing ``text`` (US layout; control characters as Ctrl+letter).

    A character no key types raises ValueError, or is skipped when not ``strict``.
    """
    out = bytearray()
    for ch in text:
        if ch in ASCII_KEYS:
            code, shift = ASCII_KEYS[ch]
            if shift:
                out.append(LSHIFT)
            out += bytes((code, code | 0x80))
            if shift:
                out.append(LSHIFT | 0x80)
        elif "\x01" <= ch <= "\x1a":
            code, _ = ASCII_KEYS[chr(ord(ch) + 0x60)]
            out += bytes((LCTRL, code, code | 0x80, LCTRL | 0x80))
        elif strict:
            raise ValueError(f"no key types {ch!r}")
    return bytes(out)


def set1_to_set2(codes: bytes) -> bytes:
    """Re-encode set-1 codes in set 2: prefixes pass, a break becomes 0xF0 + make."""
    out = bytearray()
    for b in codes:
        if b in (0xE0, 0xE1):
            out.append(b)
        elif b & 0x80:
            out += bytes((0xF0, SET1_TO_SET2.get(b & 0x7F, b & 0x7F)))
        else:
            out.append(SET1_TO_SET2.get(b, b))
    return bytes(out)


class PS2Keyboard:
    """The MF2 keyboard behind the controller's keyboard port."""

    # ---- snapshots (hw/state.py) -----------------------------------------------------
    STATE_EXCLUDE = frozenset({"source"})  # collaborators and configuration, not state

    def save_state(self) -> State:
        """This device's state for a snapshot (its declared fields minus ``STATE_EXCLUDE``)."""
        return capture(self, self.STATE_EXCLUDE)

    def load_state(self, state: State) -> None:
        """Restore what ``save_state`` returned."""
        restore(self, state, self.STATE_EXCLUDE)

    def __init__(self) -> None:
        self.host: deque[int] = deque()  # set-1 codes typed by the host, not yet in the keyboard
        self.source: BinaryIO | None = None  # a non-blocking binary stream of ASCII to type (PCConfig.keyboard_input)
        self.reset_state()

    def reset_state(self) -> None:
        self.buffer: deque[int] = deque()
        self.scanning = True
        self.scancode_set = 2
        self.leds = 0
        self.typematic = 0x2B
        self.expecting: int | None = None
        self.last = 0xAA

    def _send(self, *data: int) -> None:
        self.buffer.extend(data)
        self.last = data[-1]

    def write(self, value: int) -> None:
        """A byte from the controller (the guest's port 0x60 write)."""
        cmd = self.expecting
        if cmd is not None and value < 0xED:
            self.expecting = None
            if cmd == 0xED:
                self.leds = value & 7
                self._send(0xFA)
            elif cmd == 0xF3:
                self.typematic = value & 0x7F
                self._send(0xFA)
            elif cmd == 0xF0:
                if value == 0:
                    self._send(0xFA, self.scancode_set)
                elif value in (1, 2):
                    self.scancode_set = value
                    self.buffer.clear()
                    self._send(0xFA)
                else:
                    self._send(0xFE)  # set 3 is not supported by this keyboard
            return
        self.expecting = None
        if value == 0xFF:
            self.reset_state()
            self._send(0xFA, 0xAA)
        elif value == 0xFE:
            self.buffer.append(self.last)
        elif value == 0xF6:
            self.scancode_set, self.typematic, self.leds = 2, 0x2B, 0
            self._send(0xFA)
        elif value == 0xF5:
            self.scancode_set, self.typematic, self.leds = 2, 0x2B, 0
            self.scanning = False
            self.buffer.clear()
            self._send(0xFA)
        elif value == 0xF4:
            self.scanning = True
            self.buffer.clear()
            self._send(0xFA)
        elif value in (0xF3, 0xF0, 0xED):
            self.expecting = value
            self._send(0xFA)
        elif value == 0xF2:
            self._send(0xFA, 0xAB, 0x83)
        elif value == 0xEE:
            self._send(0xEE)
        elif 0xF7 <= value <= 0xFD:
            self._send(0xFA)
        else:
            self._send(0xFE)

    def pump(self) -> None:
        """Move typed keys into the keyboard buffer as it has room (lost while not scanning)."""
        if not self.scanning:
            self.host.clear()
            return
        if not self.host and self.source is not None:
            chunk = self.source.read(64)
            if chunk:
                self.host.extend(keys_to_scancodes(chunk.decode("latin-1"), strict=False))
            else:
                self.source = None
        while self.host and len(self.buffer) < KBD_BUFFER:
            # Move one whole key code (prefixes with the byte they prefix).
            code = [self.host.popleft()]
            while code[-1] in (0xE0, 0xE1) and self.host:
                code.append(self.host.popleft())
            data = bytes(code) if self.scancode_set == 1 else set1_to_set2(bytes(code))
            self.buffer.extend(data)


class KeyboardController:
    """The 8042 (``bus.devices["kbd"]``), plus ports 0x92 and 0xCF9."""

    # ---- snapshots (hw/state.py) -----------------------------------------------------
    STATE_EXCLUDE = frozenset({"bus"})  # collaborators and configuration, not state

    def save_state(self) -> State:
        """This device's state for a snapshot (its declared fields minus ``STATE_EXCLUDE``)."""
        return capture(self, self.STATE_EXCLUDE)

    def load_state(self, state: State) -> None:
        """Restore what ``save_state`` returned."""
        restore(self, state, self.STATE_EXCLUDE)

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.kbd = PS2Keyboard()
        self.reset()

    def reset(self) -> None:
        self.command_byte = CB_KBD_INT | CB_AUX_DISABLE | CB_XLATE
        self.status = ST_SYS | ST_CMD | ST_UNLOCKED
        self.outport = 0xCF
        self.port92 = 0x02
        self.rcr = 0
        self.ram = bytearray(32)
        self.obf: int | None = None  # the output buffer's byte
        self.obf_aux = False
        self.last_read = 0
        self.ctrl_queue: deque[tuple[int, bool]] = deque()  # controller-generated bytes
        self.pending: int | None = None  # controller command waiting for its 0x60 parameter
        self.break_prefix = False  # translation saw 0xF0
        self.kbd.reset_state()
        self.irq1 = self.irq12 = 0
        self.bus.set_irq(KBD_IRQ, 0)
        self.bus.set_irq(AUX_IRQ, 0)

    @property
    def a20_enabled(self) -> bool:
        return bool(self.outport & OUT_A20 or self.port92 & 0x02)

    # ---- host input ----------------------------------------------------------------
    def feed_scancodes(self, codes: bytes) -> None:
        """Set-1 scancodes from the host keyboard (make, break = make | 0x80, E0/E1 prefixes)."""
        self.kbd.host.extend(codes)
        self._refill()

    def feed_keys(self, text: str) -> None:
        """Type ASCII text (US layout)."""
        self.feed_scancodes(keys_to_scancodes(text))

    # ---- output buffer -----------------------------------------------------------------
    def _refill(self) -> None:
        """Load the next byte into an empty output buffer: controller bytes first, then the keyboard."""
        self.kbd.pump()
        while self.obf is None:
            if self.ctrl_queue:
                self.obf, self.obf_aux = self.ctrl_queue.popleft()
                break
            if self.command_byte & CB_KBD_DISABLE or not self.kbd.buffer:
                break
            byte = self.kbd.buffer.popleft()
            self.kbd.pump()
            if self.command_byte & CB_XLATE:
                if byte == 0xF0:
                    self.break_prefix = True
                    continue
                byte = TRANSLATE[byte] | (0x80 if self.break_prefix else 0)
                self.break_prefix = False
            self.obf, self.obf_aux = byte, False
        self._update_irq()

    def _queue(self, byte: int, aux: bool = False) -> None:
        self.ctrl_queue.append((byte & 0xFF, aux))
        self._refill()

    def _update_irq(self) -> None:
        full = self.obf is not None
        irq1 = int(full and not self.obf_aux and bool(self.command_byte & CB_KBD_INT))
        irq12 = int(full and self.obf_aux and bool(self.command_byte & CB_AUX_INT))
        if irq1 != self.irq1:
            self.irq1 = irq1
            self.bus.set_irq(KBD_IRQ, irq1)
        if irq12 != self.irq12:
            self.irq12 = irq12
            self.bus.set_irq(AUX_IRQ, irq12)

    def read_status(self) -> int:
        st = self.status & ~(ST_OBF | ST_AUX)
        if self.obf is not None:
            st |= ST_OBF | (ST_AUX if self.obf_aux else 0)
        return st

    def read_data(self) -> int:
        if self.obf is None:
            return self.last_read  # an empty buffer reads its previous byte again
        value = self.obf
        self.last_read = value
        self.obf = None
        self._update_irq()  # the line drops before the next byte raises it: one edge per byte
        self._refill()
        return value

    # ---- commands ----------------------------------------------------------------------
    def _set_command_byte(self, value: int) -> None:
        self.command_byte = value & 0x7F
        self.ram[0] = self.command_byte
        if value & CB_SYS:
            self.status |= ST_SYS
        else:
            self.status &= ~ST_SYS
        self._refill()

    def _write_outport(self, value: int) -> None:
        self.outport = value
        if not value & OUT_RESET:
            self.bus.request_reset("keyboard controller output port reset line")

    def command(self, value: int) -> None:
        self.status |= ST_CMD
        self.pending = None
        if value == 0x20:
            self._queue(self.command_byte)
        elif 0x21 <= value <= 0x3F:
            self._queue(self.ram[value & 0x1F])
        elif 0x60 <= value <= 0x7F or value in (0xD1, 0xD2, 0xD3, 0xD4):
            self.pending = value
        elif value == 0xA7:
            self._set_command_byte(self.command_byte | CB_AUX_DISABLE)
        elif value == 0xA8:
            self._set_command_byte(self.command_byte & ~CB_AUX_DISABLE)
        elif value == 0xA9:
            self._queue(0x00)
        elif value == 0xAA:
            self.status |= ST_SYS
            self._queue(0x55)
        elif value == 0xAB:
            self._queue(0x00)
        elif value == 0xAD:
            self._set_command_byte(self.command_byte | CB_KBD_DISABLE)
        elif value == 0xAE:
            self._set_command_byte(self.command_byte & ~CB_KBD_DISABLE)
        elif value == 0xC0:
            self._queue(0x80)  # keyboard not inhibited by the key lock
        elif value == 0xD0:
            out = self.outport & ~(OUT_KBD_OBF | OUT_AUX_OBF)
            if self.obf is not None:
                out |= OUT_AUX_OBF if self.obf_aux else OUT_KBD_OBF
            self._queue(out)
        elif value == 0xDD:
            self.outport &= ~OUT_A20
        elif value == 0xDF:
            self.outport |= OUT_A20
        elif value == 0xE0:
            self._queue(0x00)
        elif value >= 0xF0:
            if not value & 1:
                self.bus.request_reset(f"keyboard controller command {value:#04x}")
        # other commands (password, vendor specific) are ignored, as an 8042 without them does

    def write_data(self, value: int) -> None:
        self.status &= ~ST_CMD
        cmd = self.pending
        self.pending = None
        if cmd is None:
            # A byte for the keyboard; sending it re-enables the keyboard interface.
            self.command_byte &= ~CB_KBD_DISABLE
            self.ram[0] = self.command_byte
            self.kbd.write(value)
            self._refill()
        elif 0x60 <= cmd <= 0x7F:
            if cmd == 0x60:
                self._set_command_byte(value)
            else:
                self.ram[cmd & 0x1F] = value
        elif cmd == 0xD1:
            self._write_outport(value)
        elif cmd == 0xD2:
            self._queue(value)
        elif cmd == 0xD3:
            self._queue(value, aux=True)
        # 0xD4: no auxiliary device is attached; the byte is lost

    # ---- ports -------------------------------------------------------------------------
    def port_handlers(self, port: int, size: int) -> tuple[Callable[[], int], Callable[[int], None]] | None:
        """The status and data registers for translated in/out (``softmmu.memory.port_handlers``):
        a guest polling the status port (grub-invaders) reads it straight."""
        if size != 1:
            return None
        if port == 0x64:
            return self.read_status, partial(self.io_write, port, 1)
        if port == 0x60:
            return self.read_data, partial(self.io_write, port, 1)
        return None

    def io_read(self, port: int, size: int) -> int:
        if size > 1:
            return self.bus.split_read(port, size)
        if port == 0x60:
            return self.read_data()
        if port == 0x64:
            return self.read_status()
        if port == 0x92:
            return self.port92 & ~0x01
        if port == 0xCF9:
            return self.rcr
        return 0xFF

    def io_write(self, port: int, size: int, value: int) -> None:
        if size > 1:
            self.bus.split_write(port, size, value)
            return
        value &= 0xFF
        if port == 0x60:
            self.write_data(value)
        elif port == 0x64:
            self.command(value)
        elif port == 0x92:
            old = self.port92
            self.port92 = value
            if value & 1 and not old & 1:
                self.bus.request_reset("port 0x92 fast reset")
        elif port == 0xCF9:
            if value & 0x04:
                kind = "hard" if value & 0x02 else "soft"
                self.bus.request_reset(f"port 0xCF9 {kind} reset")
                return
            self.rcr = value & 0x02


def attach(bus: Bus, config: PCConfig) -> KeyboardController:
    kbc = KeyboardController(bus)
    bus.add_port(0x60, 1, kbc)
    bus.add_port(0x64, 1, kbc)
    bus.add_port(0x92, 1, kbc)
    if bus.port_device(0xCF9) is None:
        bus.add_port(0xCF9, 1, kbc)
    bus.add_reset_hook(kbc.reset)
    if config.keyboard_input is not None:
        kbc.kbd.source = config.keyboard_input  # typed as the guest reads, like serial_input
        kbc._refill()
    return kbc
