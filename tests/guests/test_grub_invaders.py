"""grub-invaders on gdbemu: a real PC guest that nobody here wrote.

Debian's ``grub-invaders`` package ships ``/boot/invaders.exec``, a multiboot
kernel with the a.out kludge (header flag 16) that plays Space Invaders in
VGA text mode.  It uses no interrupts: it reprograms PIT channel 0 for every
delay (mode 0, then read-back commands until the count is loaded, then
latched reads until it has counted down), polls the 8042 keyboard controller
(set-1 scancodes, E0-prefixed arrows) during those delays, beeps through PIT
channel 2 and port 0x61, and draws each frame into an off-screen buffer that
it copies to 0xB8000 in one go (the copy returns to FRAME_DRAWN).

Because the game's state only changes once per frame and never reads the
clock for anything but waiting, frame N is the same whatever the
emulator's speed: so the first frames on gdbemu are compared byte for byte
with QEMU's (taken through QEMU's gdbstub at the same address), and the
keyboard tests can run with a faster virtual clock (icount shift 6: ~1M
instead of ~8M instructions per frame) without changing what is drawn.

The game is not built here; the test skips when the package is absent
(.ci/run installs it: ``apt-get install -y -qq grub-invaders``).
"""

from __future__ import annotations

import io
import shutil
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
INVADERS = Path("/boot/invaders.exec")
BSS_END = 0x105B50  # the multiboot header's bss_end_addr (flag 16 address fields)
FRAME_DRAWN = 0x100464  # the instruction after the call that copies a frame to 0xB8000
TEXT_BASE = 0xB8000
FRAME_BYTES = 80 * 25 * 2
MAX_INSNS_PER_FRAME = 50_000_000  # ~8M at the default clock; a bound, so a hung game fails

# What the screen holds (observed on QEMU): 8 columns x 5 rows of invaders "-*-" in cyan (attribute 3)
# on rows 0, 2, 4, 6, 8; the player's ship "_" over "/ \" in magenta (attribute 5) on rows 23-24,
# starting at the centre; shots "|"; the pause box "PAUSE" / "PRESS 'P'" on rows 10-11.
INVADER, INVADER_ATTR = "-*-", 0x03
SHIP_ATTR = 0x05

pytestmark = pytest.mark.skipif(
    not INVADERS.exists(),
    reason=f"{INVADERS} not found: install Debian's grub-invaders package (apt-get install -y grub-invaders)",
)


class Game:
    """grub-invaders booted on a gdbemu PC, advanced one drawn frame at a time."""

    def __init__(self, icount_shift: int | None = None) -> None:
        if str(REPO) not in sys.path:
            sys.path.insert(0, str(REPO))
        pytest.importorskip("gdbemu.hw.vga", reason="the VGA device is not written yet")
        pytest.importorskip("gdbemu.hw.kbd", reason="the keyboard controller is not written yet")
        from gdbemu.hw.pc import PCConfig, build_pc
        from gdbemu.machine import Machine

        self.m = Machine(32 << 20) if icount_shift is None else Machine(32 << 20, icount_shift=icount_shift)
        build_pc(self.m.bus, PCConfig(serial=[io.BytesIO()], no_reboot=True))
        self.boot_info = self.m.load_multiboot(str(INVADERS))
        self.vga = self.m.bus.devices["vga"]
        self.kbd = self.m.bus.devices["kbd"]
        self.frames = 0
        self.seconds = 0.0
        self.m.breakpoints.add(FRAME_DRAWN)

    def next_frame(self) -> list[str]:
        """Run until the game has copied its next frame to the screen; return the screen's rows."""
        t0 = time.perf_counter()
        stop = self.m.run(max_insns=MAX_INSNS_PER_FRAME)
        assert stop.kind == "debug" and stop.addr == FRAME_DRAWN, f"no frame drawn: {stop} at icount {self.icount}"
        # Step over the breakpoint so the next run() goes on to the next frame.
        self.m.breakpoints.remove(FRAME_DRAWN)
        self.m.step()
        self.m.breakpoints.add(FRAME_DRAWN)
        self.seconds += time.perf_counter() - t0
        self.frames += 1
        return self.rows()

    def run_without_frame(self, insns: int) -> None:
        """Run ``insns`` instructions and check the game drew nothing meanwhile (it is paused)."""
        stop = self.m.run(max_insns=insns)
        assert stop.kind == "limit", f"the game drew a frame while paused ({stop})"

    def rows(self) -> list[str]:
        return self.vga.text()

    def raw(self) -> bytes:
        return bytes(self.m.mem.read(TEXT_BASE, FRAME_BYTES))

    def cell(self, row: int, col: int) -> tuple[int, int]:
        return self.vga.cells()[row][col]

    @property
    def icount(self) -> int:
        return self.m.cpu.icount

    def ship_column(self) -> int:
        """Column of the ship's nose "_" on row 23."""
        row = self.rows()[23]
        assert row.count("_") == 1, f"no ship on row 23: {row!r}"
        return row.index("_")

    def invaders(self) -> int:
        return sum(r.count(INVADER) for r in self.rows()[:23])


def screen_dump(rows: list[str]) -> str:
    return "\n".join(f"{i:2d}|{r}|" for i, r in enumerate(rows))


def qemu_frame(n: int) -> bytes:
    """The text buffer when QEMU's game has drawn frame ``n``: QEMU's gdbstub stops at FRAME_DRAWN
    for the n-th time and gdb reads 0xB8000 (QEMU's monitor cannot stop at an instruction)."""
    from gdbemu.testing import GdbNotFoundError, Session, find_gdb

    try:
        find_gdb()
    except GdbNotFoundError:
        pytest.skip("gdb is needed for the comparison with QEMU")
    if not shutil.which("qemu-system-i386"):
        pytest.skip("qemu-system-i386 is needed for the comparison with QEMU")
    with Session.qemu(INVADERS, board="pc", timeout=120) as s:  # an a.out-kludge image: no symbols
        s.break_at(f"*{FRAME_DRAWN:#x}")
        for _ in range(n):
            stop = s.cont()
            assert stop.pc == FRAME_DRAWN, stop.describe()
        return s.read_memory(TEXT_BASE, FRAME_BYTES)


def rows_of(raw: bytes) -> list[str]:
    return ["".join(chr(c) if 32 <= c < 127 else " " for c in raw[r * 160 : (r + 1) * 160 : 2]) for r in range(25)]


def test_first_frames_are_qemus(tmp_path: Path, capsys) -> None:
    """Boot at the default clock: frames 1 and 2 (the invaders have moved in between) are byte for
    byte what QEMU draws, and frame 1 shows the starting position seen on QEMU's screen."""
    game = Game()
    # Loaded through the a.out kludge as QEMU does, not as an ELF: the kernel's extent ends at the
    # header's bss_end_addr, past the ELF's last segment (0x101a64).
    assert (game.boot_info.entry, game.boot_info.kernel_high) == (0x100024, BSS_END)
    first = game.next_frame()
    first_raw = game.raw()
    assert game.invaders() == 40, screen_dump(first)
    assert [r.count(INVADER) for r in first[0:10:2]] == [8] * 5, screen_dump(first)
    assert game.ship_column() == 40 and first[24][39:42] == "/ \\", screen_dump(first)
    assert game.cell(0, first[0].index(INVADER))[1] == INVADER_ATTR
    assert game.cell(23, 40) == (ord("_"), SHIP_ATTR)
    second = game.next_frame()
    second_raw = game.raw()
    assert second != first  # the invaders moved
    assert game.invaders() == 40, screen_dump(second)
    with capsys.disabled():
        print(f"\n[grub-invaders on gdbemu: 2 frames in {game.icount} instructions, {game.seconds:.1f} s wall]")
    for n, ours in ((1, first_raw), (2, second_raw)):
        theirs = qemu_frame(n)
        assert rows_of(ours) == rows_of(theirs), f"frame {n}: the text differs from QEMU's"
        assert ours == theirs, f"frame {n}: the attributes differ from QEMU's"


def test_keyboard_drives_the_game(tmp_path: Path, capsys) -> None:
    """Keys typed through the 8042 reach the game: P pauses (the pause box is drawn and no frame
    follows until P again), the right arrow held moves the ship one column per frame, space fires.
    Saves PNG screenshots of the paused and the running game."""
    game = Game(icount_shift=6)
    game.next_frame()
    game.next_frame()
    assert game.invaders() == 40

    game.kbd.feed_keys("p")
    paused = game.next_frame()
    assert paused[10][30:43] == "    PAUSE    ", screen_dump(paused)
    assert paused[11][30:43] == "  PRESS 'P'  ", screen_dump(paused)
    pause_png = tmp_path / "invaders-paused.png"
    game.vga.screenshot(pause_png)
    game.run_without_frame(2_000_000)
    assert game.rows() == paused

    game.kbd.feed_keys("p")
    resumed = game.next_frame()
    assert "PAUSE" not in "".join(resumed), screen_dump(resumed)
    assert game.ship_column() == 40

    game.kbd.feed_scancodes(b"\xe0\x4d")  # right arrow: make (held)
    cols = [game.ship_column()]
    for _ in range(3):
        game.next_frame()
        cols.append(game.ship_column())
    game.kbd.feed_scancodes(b"\xe0\xcd")  # right arrow: break
    assert cols == [40, 41, 42, 43], cols
    game.next_frame()
    game.next_frame()
    stopped_at = game.ship_column()
    assert stopped_at in (43, 44)  # at most the frame in flight when the key was released
    game.next_frame()
    assert game.ship_column() == stopped_at  # released: the ship stays

    game.kbd.feed_keys(" ")
    shots = []
    for _ in range(3):
        rows = game.next_frame()
        shots.append([r for r in range(23) if rows[r][stopped_at] == "|"])
    assert any(shots), screen_dump(game.rows())
    flight = [s[0] for s in shots if s]
    assert flight == sorted(flight, reverse=True) and len(set(flight)) == len(flight), shots  # it flies up

    png = tmp_path / "invaders.png"
    width, height = game.vga.screenshot(png)
    for path in (png, pause_png):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (width, height) in ((640, 400), (720, 400))
    with capsys.disabled():
        print(f"\n[grub-invaders keyboard run: {game.frames} frames, {game.icount} instructions, "
              f"{game.seconds:.1f} s wall; screenshots {png} {pause_png}]")  # fmt: skip
