"""VGA in text mode: registers, the text window in RAM with dirty tracking, text/cell/cursor views, PNG screenshots.

Theory of operation (IBM VGA Technical Reference; register layouts as in
FreeVGA's "CRT Controller", "Attribute Controller", "Graphics", "Sequencer",
"DAC" and "General" register pages):

* The text window (0xB8000-0xBFFFF with the mode-3 memory map) stays guest
  RAM, so kernel stores to the screen are ordinary fast RAM stores.  The
  display learns what changed through the VGA dirty-memory client
  (softmmu/dirty.py): logging is enabled over 0xA0000-0xBFFFF, and
  ``refresh()`` takes the dirty pages of the active window with
  ``bus.dirty_test_and_clear`` (which re-arms TLB_NOTDIRTY, so the next
  store to a cleaned page goes through the slow path once and marks it
  again).  Only when a page is dirty (or a display register changed) are
  the cells read and compared row by row.  Host writes (``mem.write``, gdb)
  mark the pages dirty through ``bus.on_phys_write``.
* Geometry comes from the CRTC as programmed: columns = horizontal display
  end + 1, the row pitch = 2 x offset (word mode), character height = max
  scan line + 1, rows = (vertical display end + 1) / character height;
  the start address (0x0C/0x0D) and cursor location (0x0E/0x0F) count
  character cells from the window base; the window base is the graphics
  controller's memory map select (misc register 0x06 bits 3-2).  CRTC
  registers 0-7 are write-protected while CR11 bit 7 is set (except the
  line-compare bit 4 of CR07).
* The CRTC and input status 1 sit at 0x3D4/0x3D5/0x3DA when the misc
  output register's bit 0 selects colour addressing, at 0x3B4/0x3B5/0x3BA
  otherwise.  Reading input status 1 flips its display-enable and vertical
  retrace bits on every read (as QEMU does), so polling loops always
  progress, and resets the attribute controller's index/data flip-flop.
* Sequencer, graphics controller, attribute controller and DAC registers
  are stored and read back; colours for screenshots go through them as on
  the hardware: attribute nibble -> palette register (+ colour select) ->
  DAC entry & pixel mask -> 6-bit RGB.  With attribute mode control bit 3,
  attribute bit 7 means blink and only 8 background colours exist.
* Initial state is BIOS mode 3 (80x25, 16 colours, 8x16 characters) as a
  kernel finds it after SeaBIOS on QEMU, with a cleared screen (0x0720
  everywhere) and the cursor at the top left.  ``text()`` and ``cells()``
  always show the text interpretation of the window.
* Screenshots (``render_screen``/``screenshot``, ``monitor screendump``) draw what
  the hardware shows: the Bochs VBE framebuffer when it is enabled, VGA
  mode 13h (attribute mode control bits 0 and 6: graphics, 256 colours;
  one byte per pixel, chain-4, from the window; width (CR01 + 1) x 4,
  height from the vertical display end over the scan lines per row) through
  the DAC, and text otherwise.  The 16-colour planar modes are not drawn
  (a screenshot shows the text interpretation).
* The Bochs VBE ("DISPI") interface, as QEMU's ``-vga std``: index port
  0x1CE, data port 0x1CF (16-bit; 0x1D0 is a data alias), registers ID
  (0xB0C0-0xB0C5), XRES, YRES, BPP (8, 15, 16, 24, 32), ENABLE (bit 0
  enabled, bit 1 read the maxima, bit 6 linear framebuffer, bit 7 keep
  memory), BANK, VIRT_WIDTH/HEIGHT, X/Y_OFFSET, VIDEO_MEMORY_64K.  The
  linear framebuffer (16 MiB) is at QEMU's address 0xFD000000, fixed here
  (QEMU places it with PCI BAR 0 of the VGA; gdbemu has no PCI yet: when
  hw/pci.py lands, the BAR should report this address).  It is an MMIO
  region backed by a bytearray allocated at the first access; 8 bpp pixels
  go through the DAC.  The banked window at 0xA0000 is not emulated.
* Screenshots draw 8-pixel-wide glyphs from a PSF console font found in
  /usr/share/consolefonts (Debian's console-setup-linux or kbd), mapping
  code page 437 through the font's Unicode table; without one a built-in
  rendering draws the block-graphics characters exactly and every other
  visible character as a solid block.  The PNG encoder is zlib + struct.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

from ..softmmu.dirty import DIRTY_MEMORY_VGA
from .bus import Bus
from .state import State, capture, restore

if TYPE_CHECKING:  # numpy is imported by the functions that need it (start-up time)
    import numpy as np

    from .pc import PCConfig

VGA_LOW = 0xA0000
VGA_SIZE = 0x20000
FONT_DIRS = ("/usr/share/consolefonts", "/usr/share/kbd/consolefonts", "/lib/kbd/consolefonts")
FONT_PREFERENCE = (
    "Lat15-VGA16.psf.gz",
    "Uni2-VGA16.psf.gz",
    "default8x16.psfu.gz",
    "default8x16.psf.gz",
    "Lat15-Fixed16.psf.gz",
)

# BIOS mode 3 register values (IBM VGA Technical Reference, "BIOS video modes").
MODE3_MISC = 0x67
MODE3_SEQ = bytes((0x03, 0x00, 0x03, 0x00, 0x02))
MODE3_GC = bytes((0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x0E, 0x0F, 0xFF))
MODE3_ATTR = bytes.fromhex("000102030405140738393a3b3c3d3e3f 0c000f0800")
MODE3_CRTC = bytes.fromhex("5f4f50825581bf1f004f0d0e00000000 9c8e8f281f96b9a3ff")

# Code page 437 as Unicode, with its graphic symbols for the control range.
_CP437_LOW = " ☺☻♥♦♣♠•◘○◙♂♀♪♫☼►◄↕‼¶§▬↨↑↓→←∟↔▲▼"
CP437 = _CP437_LOW + "".join(chr(c) for c in range(0x20, 0x7F)) + "⌂" + bytes(range(0x80, 0x100)).decode("cp437")
assert len(CP437) == 256


def ega_dac() -> list[tuple[int, int, int]]:
    """The BIOS's first 64 DAC entries: the EGA palette (bits rgbRGB: primary 2/3, secondary 1/3)."""
    out = []
    for i in range(64):
        r = 42 * ((i >> 2) & 1) + 21 * ((i >> 5) & 1)
        g = 42 * ((i >> 1) & 1) + 21 * ((i >> 4) & 1)
        b = 42 * (i & 1) + 21 * ((i >> 3) & 1)
        out.append((r, g, b))
    return out + [(0, 0, 0)] * 192


# ---- fonts --------------------------------------------------------------------------
class Font:
    """Glyph bitmaps (N x height x 8, bool) and a Unicode -> glyph index map."""

    def __init__(self, glyphs: np.ndarray, unicode_map: dict[str, int], name: str) -> None:
        self.glyphs = glyphs
        self.unicode_map = unicode_map
        self.name = name
        self.height = glyphs.shape[1]
        self.width = glyphs.shape[2]

    def cp437_table(self) -> np.ndarray:
        """256 x height x width glyphs in code page 437 order."""
        import numpy as np

        out = np.zeros((256, self.height, self.width), dtype=bool)
        n = len(self.glyphs)
        fallback = self.unicode_map.get("?", 0x3F if n > 0x3F else 0)
        for code, ch in enumerate(CP437):
            if self.unicode_map:
                index = self.unicode_map.get(ch, fallback if code not in (0, 0x20, 0xFF) else None)
            else:
                index = code if code < n else None
            if index is not None and index < n:
                out[code] = self.glyphs[index]
        out[0] = False
        return out


def load_psf(path: str | os.PathLike[str]) -> Font:
    """Parse a PSF1 or PSF2 console font (optionally gzip-compressed)."""
    import numpy as np

    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    unicode_map: dict[str, int] = {}
    if raw[:2] == b"\x36\x04":
        mode, height = raw[2], raw[3]
        count = 512 if mode & 1 else 256
        width, row_bytes, header = 8, 1, 4
        table = raw[header + count * height :] if mode & 6 else b""
        index = 0
        pos = 0
        in_seq = False
        while index < count and pos + 1 < len(table):
            value = table[pos] | (table[pos + 1] << 8)
            pos += 2
            if value == 0xFFFF:
                index += 1
                in_seq = False
            elif value == 0xFFFE:
                in_seq = True
            elif not in_seq:
                unicode_map.setdefault(chr(value), index)
    elif raw[:4] == b"\x72\xb5\x4a\x86":
        _, header, flags, count, charsize, height, width = struct.unpack_from("<7I", raw, 4)
        row_bytes = (width + 7) // 8
        if charsize != row_bytes * height:
            raise ValueError(f"{path}: inconsistent PSF2 glyph size")
        table = raw[header + count * charsize :] if flags & 1 else b""
        index = 0
        for entry in table.split(b"\xff"):
            if index >= count:
                break
            first = entry.split(b"\xfe")[0]
            for ch in first.decode("utf-8", errors="ignore"):
                unicode_map.setdefault(ch, index)
            index += 1
    else:
        raise ValueError(f"{path}: not a PSF font")
    data = np.frombuffer(raw, dtype=np.uint8, count=count * height * row_bytes, offset=header)
    bits = np.unpackbits(data.reshape(count, height, row_bytes), axis=2)[:, :, :width].astype(bool)
    if width != 8:
        cell = np.zeros((count, height, 8), dtype=bool)
        cell[:, :, : min(width, 8)] = bits[:, :, :8]
        bits = cell
    return Font(bits, unicode_map, Path(path).name)


def builtin_font(height: int = 16) -> Font:
    """No console font installed: block graphics drawn exactly, other visible characters as solid blocks."""
    import numpy as np

    g = np.zeros((256, height, 8), dtype=bool)
    half = height // 2
    for code in range(256):
        if code in (0x00, 0x20, 0xFF):
            continue
        if code == 0xDB:
            g[code] = True
        elif code == 0xDC:
            g[code, half:] = True
        elif code == 0xDF:
            g[code, :half] = True
        elif code == 0xDD:
            g[code, :, :4] = True
        elif code == 0xDE:
            g[code, :, 4:] = True
        elif code in (0xB0, 0xB1, 0xB2):
            yy, xx = np.mgrid[0:height, 0:8]
            if code == 0xB0:
                g[code] = (yy % 2 == 0) & (xx % 4 == (yy // 2) % 2 * 2)
            elif code == 0xB1:
                g[code] = (yy + xx) % 2 == 0
            else:
                g[code] = ~((yy % 2 == 0) & (xx % 4 == (yy // 2) % 2 * 2))
        else:
            g[code, 2 : height - 3, 1:7] = True
    return Font(g, {}, "builtin")


def find_console_font() -> Path | None:
    """An 8x16 PSF font from the usual console font directories, or None."""
    for directory in FONT_DIRS:
        d = Path(directory)
        if not d.is_dir():
            continue
        for name in FONT_PREFERENCE:
            if (d / name).is_file():
                return d / name
        for pattern in ("*VGA16.psf*", "*Fixed16.psf*", "*16.psf*"):
            found = sorted(d.glob(pattern))
            if found:
                return found[0]
    return None


_FONT_CACHE: dict[str, Font] = {}


def default_font() -> Font:
    path = find_console_font()
    key = str(path) if path else "builtin"
    if key not in _FONT_CACHE:
        font = None
        if path is not None:
            try:
                font = load_psf(path)
            except (OSError, ValueError):
                font = None
        _FONT_CACHE[key] = font or builtin_font()
    return _FONT_CACHE[key]


def write_png(path: str | os.PathLike[str], rgb: np.ndarray) -> None:
    """An 8-bit RGB PNG (PNG spec: signature, IHDR, one IDAT of filter-0 rows, IEND)."""
    import numpy as np

    height, width, _ = rgb.shape
    rows = np.zeros((height, 1 + width * 3), dtype=np.uint8)
    rows[:, 1:] = rgb.reshape(height, width * 3)

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6))
        + chunk(b"IEND", b"")
    )
    Path(path).write_bytes(png)


class _PrivateVRAM:
    """Backing for the VGA window on a machine whose RAM does not reach 0xC0000."""

    def __init__(self, vga: VGA) -> None:
        self.vga = vga
        self.data = bytearray(VGA_SIZE)

    # ---- snapshots (hw/state.py) -----------------------------------------------------
    STATE_EXCLUDE = frozenset({"vga"})  # the owner, not state

    def save_state(self) -> State:
        """The private VRAM's bytes."""
        return capture(self, self.STATE_EXCLUDE)

    def load_state(self, state: State) -> None:
        """Restore what ``save_state`` returned."""
        restore(self, state, self.STATE_EXCLUDE)

    def mmio_read(self, offset: int, size: int) -> int:
        return int.from_bytes(self.data[offset : offset + size], "little")

    def mmio_write(self, offset: int, size: int, value: int) -> None:
        self.data[offset : offset + size] = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
        self.vga._private_dirty = True


# ---- Bochs VBE ----------------------------------------------------------------------------
VBE_LFB = 0xFD000000  # QEMU's -vga std framebuffer address (PCI BAR 0); fixed until hw/pci.py places it
VBE_VRAM = 16 << 20
VBE_INDEX_PORT = 0x1CE
VBE_DATA_PORT = 0x1CF
VBE_ID, VBE_XRES, VBE_YRES, VBE_BPP, VBE_ENABLE, VBE_BANK = range(6)
VBE_VIRT_WIDTH, VBE_VIRT_HEIGHT, VBE_X_OFFSET, VBE_Y_OFFSET, VBE_VIDEO_MEMORY_64K = range(6, 11)
VBE_ENABLED = 0x01
VBE_GETCAPS = 0x02
VBE_LFB_ENABLED = 0x40
VBE_NOCLEARMEM = 0x80
VBE_MAX_XRES, VBE_MAX_YRES, VBE_MAX_BPP = 2560, 1600, 32


class BochsVBE:
    """The DISPI registers and the linear framebuffer (module docstring)."""

    def __init__(self) -> None:
        self.regs = [0] * 11
        self.index = 0
        self.vram: bytearray | None = None

    def reset(self) -> None:
        self.regs = [0xB0C5, 0, 0, 0, 0, 0, 0, 0, 0, 0, VBE_VRAM >> 16]
        self.index = 0

    @property
    def enabled(self) -> bool:
        return bool(self.regs[VBE_ENABLE] & VBE_ENABLED)

    # ---- snapshots (hw/state.py) -----------------------------------------------------
    def save_state(self) -> State:
        """The DISPI registers and, once the guest has touched it, the framebuffer's bytes."""
        return capture(self, frozenset())

    def load_state(self, state: State) -> None:
        restore(self, state, frozenset())

    def memory(self) -> bytearray:
        if self.vram is None:
            self.vram = bytearray(VBE_VRAM)
        return self.vram

    # ports
    def io_read(self, port: int, size: int) -> int:
        if port == VBE_INDEX_PORT:
            return self.index
        i = self.index  # 0x1CF and 0x1D0: the data port
        if i >= len(self.regs):
            return 0
        if self.regs[VBE_ENABLE] & VBE_GETCAPS and i in (VBE_XRES, VBE_YRES, VBE_BPP):
            return (VBE_MAX_XRES, VBE_MAX_YRES, VBE_MAX_BPP)[i - VBE_XRES]
        return self.regs[i]

    def io_write(self, port: int, size: int, value: int) -> None:
        if port == VBE_INDEX_PORT:
            self.index = value & 0xFFFF
            return
        i, value = self.index, value & 0xFFFF
        if i >= len(self.regs) or i == VBE_VIDEO_MEMORY_64K:
            return
        if i == VBE_ID:
            if 0xB0C0 <= value <= 0xB0C5:
                self.regs[i] = value
            return
        if i == VBE_BPP and value not in (0, 4, 8, 15, 16, 24, 32):
            return
        if i == VBE_ENABLE and value & VBE_ENABLED and not self.enabled:
            r = self.regs
            r[VBE_VIRT_WIDTH], r[VBE_VIRT_HEIGHT] = r[VBE_XRES], r[VBE_YRES]
            r[VBE_X_OFFSET] = r[VBE_Y_OFFSET] = 0
            if not value & VBE_NOCLEARMEM and self.vram is not None:
                self.vram[:] = bytes(len(self.vram))
        self.regs[i] = value

    # the linear framebuffer (an MMIO region)
    def mmio_read(self, offset: int, size: int) -> int:
        return int.from_bytes(self.memory()[offset : offset + size], "little")

    def mmio_write(self, offset: int, size: int, value: int) -> None:
        self.memory()[offset : offset + size] = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")

    def render(self, dac: np.ndarray) -> np.ndarray:
        """The visible framebuffer as RGB (height x width x 3); ``dac`` is 256 x 3 for 8 bpp."""
        import numpy as np

        r = self.regs
        width, height, bpp = max(r[VBE_XRES], 1), max(r[VBE_YRES], 1), r[VBE_BPP] or 8
        virt_width = max(r[VBE_VIRT_WIDTH], width)
        bytes_pp = (bpp + 7) // 8
        pitch = virt_width * bytes_pp
        start = r[VBE_Y_OFFSET] * pitch + r[VBE_X_OFFSET] * bytes_pp
        vram = np.frombuffer(self.memory(), dtype=np.uint8)
        need = start + (height - 1) * pitch + width * bytes_pp
        if need > len(vram):
            return np.zeros((height, width, 3), dtype=np.uint8)
        rows = np.lib.stride_tricks.as_strided(
            vram[start:], shape=(height, width * bytes_pp), strides=(pitch, 1)
        ).reshape(height, width, bytes_pp)
        if bpp == 8:
            out: np.ndarray = dac[rows[:, :, 0]]
            return out
        if bytes_pp == 2:
            v = rows[:, :, 0].astype(np.uint32) | (rows[:, :, 1].astype(np.uint32) << 8)
            if bpp == 15:
                rgb = [(v >> 10) & 31, (v >> 5) & 31, v & 31]
                scale = [255 / 31] * 3
            else:
                rgb = [(v >> 11) & 31, (v >> 5) & 63, v & 31]
                scale = [255 / 31, 255 / 63, 255 / 31]
            return np.stack([(c * k + 0.5).astype(np.uint8) for c, k in zip(rgb, scale, strict=True)], axis=-1)
        return np.ascontiguousarray(rows[:, :, 2::-1][:, :, :3])  # B, G, R(, X) in memory


# ---- the device -----------------------------------------------------------------------
class VGA:
    """The VGA (``bus.devices["vga"]``)."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.mem = bus.memory
        self.private: _PrivateVRAM | None = None
        self._private_dirty = True
        if bus.ram_size < VGA_LOW + VGA_SIZE:
            self.private = _PrivateVRAM(self)
            bus.add_mmio(VGA_LOW, VGA_SIZE, self.private, "vga")
        else:
            bus.enable_dirty_logging(DIRTY_MEMORY_VGA, VGA_LOW, VGA_SIZE)
            bus.on_phys_write(self._phys_written)
        self._shown: np.ndarray | None = None  # the cells as of the last refresh (rows x cols x 2)
        self._shown_key: tuple[object, ...] | None = None
        self._shown_cursor: tuple[tuple[int, int], tuple[int, int, bool]] | None = None
        self.vbe = BochsVBE()
        self.reset()

    # ---- snapshots (hw/state.py) -----------------------------------------------------
    # Collaborators, and the display's cache of what it last drew (redrawn in full after a load).
    STATE_EXCLUDE = frozenset({"bus", "mem", "_shown", "_shown_key", "_shown_cursor"})

    def save_state(self) -> State:
        """The VGA's registers (and private VRAM) for a snapshot."""
        return capture(self, self.STATE_EXCLUDE)

    def load_state(self, state: State) -> None:
        """Restore what ``save_state`` returned; the next refresh redraws everything."""
        restore(self, state, self.STATE_EXCLUDE)
        self._shown = None
        self._shown_key = None
        self._shown_cursor = None
        self._private_dirty = True

    def reset(self) -> None:
        """BIOS mode 3 with a cleared screen."""
        self.vbe.reset()
        self.misc = MODE3_MISC
        self.seq = bytearray(MODE3_SEQ)
        self.gc = bytearray(MODE3_GC)
        self.attr = bytearray(MODE3_ATTR)
        self.crtc = bytearray(MODE3_CRTC) + bytearray(256 - len(MODE3_CRTC))
        self.seq_index = self.gc_index = self.crtc_index = 0
        self.attr_index = 0x20  # palette address source set: the display is on
        self.attr_flipflop = False  # False: next 0x3C0 write is an index
        self.st01 = 0
        self.feature = 0
        self.subsystem_enable = 1
        self.dac = [list(c) for c in ega_dac()]
        self.dac_write_index = 0
        self.dac_read_index = 0
        self.dac_component = 0
        self.dac_state = 0  # 0: last 0x3C7/0x3C8 write was the write index, 3: the read index
        self.pel_mask = 0xFF
        base, size = self.window()
        self.mem.write(base, b"\x20\x07" * (size // 2))
        self._shown = None

    # ---- geometry ----------------------------------------------------------------------
    def window(self) -> tuple[int, int]:
        """(physical base, size) of the memory map selected by GC register 6."""
        sel = (self.gc[6] >> 2) & 3
        return ((0xA0000, 0x20000), (0xA0000, 0x10000), (0xB0000, 0x8000), (0xB8000, 0x8000))[sel]

    def geometry(self) -> tuple[int, int, int]:
        """(columns, rows, pitch in cells) from the CRTC; mode 3 gives (80, 25, 80)."""
        c = self.crtc
        cols = c[0x01] + 1
        pitch = 2 * c[0x13] or cols
        char_height = (c[0x09] & 0x1F) + 1
        vde = c[0x12] | ((c[0x07] & 0x02) << 7) | ((c[0x07] & 0x40) << 3)
        rows = (vde + 1) // char_height
        if not 1 <= rows <= 128:
            rows = 25
        return cols, rows, max(pitch, cols)

    def start_address(self) -> int:
        return (self.crtc[0x0C] << 8) | self.crtc[0x0D]

    def cursor_address(self) -> int:
        return (self.crtc[0x0E] << 8) | self.crtc[0x0F]

    def cursor(self) -> tuple[int, int]:
        """(row, column) of the cursor on the screen (may lie outside it)."""
        cols, rows, pitch = self.geometry()
        offset = (self.cursor_address() - self.start_address()) & 0xFFFF
        return offset // pitch, offset % pitch

    def cursor_shape(self) -> tuple[int, int, bool]:
        """(start scan line, end scan line, visible)."""
        return self.crtc[0x0A] & 0x1F, self.crtc[0x0B] & 0x1F, not self.crtc[0x0A] & 0x20

    # ---- memory --------------------------------------------------------------------------
    def _window_bytes(self) -> np.ndarray:
        import numpy as np

        base, size = self.window()
        if self.private is not None:
            return np.frombuffer(self.private.data, dtype=np.uint8)[base - VGA_LOW : base - VGA_LOW + size]
        return self.mem.np[base : base + size]

    def _cells_array(self) -> np.ndarray:
        """rows x cols x 2 (character, attribute) as displayed, start address applied."""
        import numpy as np

        cols, rows, pitch = self.geometry()
        window = self._window_bytes()
        cells = len(window) // 2
        start = self.start_address()
        index = (start + np.arange(rows)[:, None] * pitch + np.arange(cols)[None, :]) % cells
        pairs = window[: cells * 2].reshape(cells, 2)
        out: np.ndarray = pairs[index]
        return out

    def cells(self) -> list[list[tuple[int, int]]]:
        """The screen as rows of (character code, attribute) pairs."""
        return [[(int(ch), int(at)) for ch, at in row] for row in self._cells_array()]

    def text(self) -> list[str]:
        """The screen as text lines (code page 437 decoded; NUL shows as a space)."""
        arr = self._cells_array()
        return ["".join(CP437[c] for c in row[:, 0]) for row in arr]

    def _phys_written(self, paddr: int, length: int) -> None:
        if paddr < VGA_LOW + VGA_SIZE and paddr + length > VGA_LOW:
            lo = max(paddr, VGA_LOW)
            hi = min(paddr + length, VGA_LOW + VGA_SIZE)
            self.bus.set_dirty(lo, hi - lo, clients=1 << DIRTY_MEMORY_VGA)

    def test_and_clear_written(self) -> bool:
        """Whether the VGA window (0xA0000-0xBFFFF) was written since the last call (VGA dirty client).

        Used before a display shows anything (the curses display's "the
        guest uses VGA" rule); once ``refresh`` runs, it owns the bits.
        """
        if self.private is not None:
            dirty = self._private_dirty
            self._private_dirty = False
            return dirty
        return bool(self.bus.dirty_test_and_clear(DIRTY_MEMORY_VGA, VGA_LOW, VGA_SIZE).any())

    def refresh(self) -> list[int]:
        """Rows that changed since the last call (content, or the cursor entering/leaving them).

        Memory is read only if the VGA dirty bitmap says a page of the window
        was written, or a register that changes what is shown was written.
        """
        import numpy as np

        base, size = self.window()
        if self.private is not None:
            dirty = self._private_dirty
            self._private_dirty = False
        else:
            dirty = bool(self.bus.dirty_test_and_clear(DIRTY_MEMORY_VGA, base, size).any())
        key = (self.geometry(), self.start_address(), self.window())
        cursor_key = (self.cursor(), self.cursor_shape())
        changed: set[int] = set()
        if self._shown is None or key != self._shown_key:
            dirty = True
            self._shown = None
        if dirty:
            arr = self._cells_array().copy()
            if self._shown is None:
                changed.update(range(arr.shape[0]))
            else:
                diff = (arr != self._shown).any(axis=(1, 2))
                changed.update(int(r) for r in np.nonzero(diff)[0])
            self._shown = arr
            self._shown_key = key
        if cursor_key != self._shown_cursor:
            old = self._shown_cursor
            rows = self._shown.shape[0] if self._shown is not None else 0
            for ck in (old, cursor_key):
                if ck is not None and 0 <= ck[0][0] < rows:
                    changed.add(ck[0][0])
            self._shown_cursor = cursor_key
        return sorted(changed)

    # ---- rendering ----------------------------------------------------------------------------
    def palette_rgb(self) -> np.ndarray:
        """16 x 3 uint8: the colours of the 16 text attributes through palette registers and DAC."""
        import numpy as np

        a = self.attr
        out = np.zeros((16, 3), dtype=np.uint8)
        for i in range(16):
            index = a[i] & 0x3F
            if a[0x10] & 0x80:  # P54S: bits 5-4 from the colour select register
                index = (index & 0x0F) | ((a[0x14] & 0x03) << 4)
            index |= (a[0x14] & 0x0C) << 4
            r, g, b = self.dac[index & self.pel_mask]
            out[i] = (r * 255 // 63, g * 255 // 63, b * 255 // 63)
        return out

    def render(self, font: Font | None = None) -> np.ndarray:
        """The screen as an RGB image (rows*h x cols*8 x 3, uint8)."""
        import numpy as np

        font = font or default_font()
        glyphs = font.cp437_table()
        h, w = font.height, font.width
        arr = self._cells_array()
        rows, cols = arr.shape[:2]
        chars = arr[:, :, 0]
        attrs = arr[:, :, 1].astype(np.int64)
        blink = bool(self.attr[0x10] & 0x08)
        fg_idx = attrs & 0x0F
        bg_idx = (attrs >> 4) & (0x07 if blink else 0x0F)
        pal = self.palette_rgb()
        fg = pal[fg_idx]  # rows x cols x 3
        bg = pal[bg_idx]
        mask = glyphs[chars].copy()  # rows x cols x h x w
        row, col = self.cursor()
        start, end, visible = self.cursor_shape()
        if visible and 0 <= row < rows and 0 <= col < cols and start <= end:
            mask[row, col, start : min(end, h - 1) + 1, :] = True
        img = np.where(mask[..., None], fg[:, :, None, None, :], bg[:, :, None, None, :])
        out: np.ndarray = img.transpose(0, 2, 1, 3, 4).reshape(rows * h, cols * w, 3).astype(np.uint8)
        return out

    def dac_rgb(self) -> np.ndarray:
        """256 x 3 uint8: the DAC entries (through the pixel mask) in 8-bit RGB."""
        import numpy as np

        dac = np.array(self.dac, dtype=np.uint32)[np.arange(256) & self.pel_mask]
        out: np.ndarray = (dac * 255 // 63).astype(np.uint8)
        return out

    def mode(self) -> str:
        """What the screen shows: "vbe", "mode13h", "planar" (not drawn) or "text" (module docstring)."""
        if self.vbe.enabled:
            return "vbe"
        if self.attr[0x10] & 0x01 and self.gc[6] & 0x01:
            return "mode13h" if self.attr[0x10] & 0x40 else "planar"
        return "text"

    def render_mode13h(self) -> np.ndarray:
        """Chain-4 256-colour graphics (mode 13h) as RGB."""
        import numpy as np

        c = self.crtc
        width = (c[0x01] + 1) * 4
        vde = c[0x12] | ((c[0x07] & 0x02) << 7) | ((c[0x07] & 0x40) << 3)
        lines = (c[0x09] & 0x1F) + 1
        if c[0x09] & 0x80:
            lines *= 2
        height = max(1, (vde + 1) // lines)
        window = self._window_bytes()
        start = self.start_address() * 4 if self.seq[4] & 0x08 else self.start_address()
        pixels = np.zeros(width * height, dtype=np.uint8)
        avail = window[start : start + width * height]
        pixels[: len(avail)] = avail
        out: np.ndarray = self.dac_rgb()[pixels.reshape(height, width)]
        return out

    def render_screen(self, font: Font | None = None) -> np.ndarray:
        """The screen in whatever mode it is (module docstring) as RGB."""
        mode = self.mode()
        if mode == "vbe":
            return self.vbe.render(self.dac_rgb())
        if mode == "mode13h":
            return self.render_mode13h()
        return self.render(font)

    def screenshot(self, path: str | os.PathLike[str], font: Font | None = None, fmt: str = "png") -> tuple[int, int]:
        """Write the screen as a PNG (or a binary PPM), in its current mode; returns (width, height) in pixels."""
        import numpy as np

        img = self.render_screen(font)
        if fmt == "ppm":
            with open(path, "wb") as f:
                f.write(b"P6\n%d %d\n255\n" % (img.shape[1], img.shape[0]) + np.ascontiguousarray(img).tobytes())
            return img.shape[1], img.shape[0]
        write_png(path, img)
        return img.shape[1], img.shape[0]

    # ---- ports -------------------------------------------------------------------------------------
    def _crtc_base(self) -> int:
        return 0x3D0 if self.misc & 1 else 0x3B0

    def io_read(self, port: int, size: int) -> int:
        if size > 1:
            return self.bus.split_read(port, size)
        return self._read(port)

    def io_write(self, port: int, size: int, value: int) -> None:
        if size > 1:  # e.g. outw(0x3D4, index | data << 8): index port, then data port
            self.bus.split_write(port, size, value)
            return
        self._write(port, value & 0xFF)

    def _read(self, port: int) -> int:
        if port in (0x3B4, 0x3B5, 0x3BA, 0x3D4, 0x3D5, 0x3DA):
            if port & 0xFFF0 != self._crtc_base():
                return 0xFF  # the other (mono/colour) address range is not decoded
            low = port & 0xF
            if low == 0x4:
                return self.crtc_index
            if low == 0x5:
                return self.crtc[self.crtc_index] if self.crtc_index < 0x19 else 0xFF
            self.st01 ^= 0x09  # display enable and vertical retrace toggle on each read
            self.attr_flipflop = False
            return self.st01
        if port == 0x3C0:
            return self.attr_index
        if port == 0x3C1:
            index = self.attr_index & 0x1F
            return self.attr[index] if index < len(self.attr) else 0
        if port == 0x3C2:
            return 0x00  # input status 0
        if port == 0x3C3:
            return self.subsystem_enable
        if port == 0x3C4:
            return self.seq_index
        if port == 0x3C5:
            return self.seq[self.seq_index] if self.seq_index < len(self.seq) else 0xFF
        if port == 0x3C6:
            return self.pel_mask
        if port == 0x3C7:
            return self.dac_state
        if port == 0x3C8:
            return self.dac_write_index
        if port == 0x3C9:
            value = self.dac[self.dac_read_index][self.dac_component]
            self.dac_component += 1
            if self.dac_component == 3:
                self.dac_component = 0
                self.dac_read_index = (self.dac_read_index + 1) & 0xFF
            return value
        if port == 0x3CA:
            return self.feature
        if port == 0x3CC:
            return self.misc
        if port == 0x3CE:
            return self.gc_index
        if port == 0x3CF:
            return self.gc[self.gc_index] if self.gc_index < len(self.gc) else 0xFF
        return 0xFF

    def _write(self, port: int, value: int) -> None:
        if port in (0x3B4, 0x3B5, 0x3BA, 0x3D4, 0x3D5, 0x3DA):
            if port & 0xFFF0 != self._crtc_base():
                return
            low = port & 0xF
            if low == 0x4:
                self.crtc_index = value
            elif low == 0x5:
                self._write_crtc(self.crtc_index, value)
            else:
                self.feature = value
            return
        if port == 0x3C0:
            if not self.attr_flipflop:
                self.attr_index = value & 0x3F
            else:
                index = self.attr_index & 0x1F
                if index < len(self.attr):
                    self.attr[index] = value
            self.attr_flipflop = not self.attr_flipflop
        elif port == 0x3C2:
            self.misc = value
        elif port == 0x3C3:
            self.subsystem_enable = value & 1
        elif port == 0x3C4:
            self.seq_index = value
        elif port == 0x3C5:
            if self.seq_index < len(self.seq):
                self.seq[self.seq_index] = value
        elif port == 0x3C6:
            self.pel_mask = value
        elif port == 0x3C7:
            self.dac_read_index = value
            self.dac_component = 0
            self.dac_state = 3
        elif port == 0x3C8:
            self.dac_write_index = value
            self.dac_component = 0
            self.dac_state = 0
        elif port == 0x3C9:
            self.dac[self.dac_write_index][self.dac_component] = value & 0x3F
            self.dac_component += 1
            if self.dac_component == 3:
                self.dac_component = 0
                self.dac_write_index = (self.dac_write_index + 1) & 0xFF
        elif port == 0x3CE:
            self.gc_index = value
        elif port == 0x3CF:
            if self.gc_index < len(self.gc):
                self.gc[self.gc_index] = value

    def _write_crtc(self, index: int, value: int) -> None:
        if index >= 0x19:
            return
        if index <= 7 and self.crtc[0x11] & 0x80:  # CR11 bit 7 protects CR00-CR07 ...
            if index == 7:  # ... except the line compare bit 8 in CR07
                self.crtc[7] = (self.crtc[7] & ~0x10) | (value & 0x10)
            return
        self.crtc[index] = value


VGA_PORTS = (0x3B4, 0x3B5, 0x3BA, *range(0x3C0, 0x3D0), 0x3D4, 0x3D5, 0x3DA)


def attach(bus: Bus, config: PCConfig) -> VGA | None:
    if not config.vga:
        return None
    vga = VGA(bus)
    for port in VGA_PORTS:
        bus.add_port(port, 1, vga)
    bus.add_port(VBE_INDEX_PORT, 3, vga.vbe)  # 0x1CE index, 0x1CF data, 0x1D0 data alias (QEMU)
    bus.add_mmio(VBE_LFB, VBE_VRAM, vga.vbe, "vbe-lfb")
    bus.add_reset_hook(vga.reset)
    return vga
