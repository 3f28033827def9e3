"""Dirty-memory tracking per client (QEMU's ram_addr.h / physmem.c dirty bitmaps).

Three clients, as in QEMU, each a numpy ``uint8`` array with one entry per RAM
page (1 = dirty):

``DIRTY_MEMORY_VGA``        the display: pages the VGA refresh must redraw
``DIRTY_MEMORY_CODE``       SMC detection: 0 means "this page holds translated
                            code", so stores to it must go through notdirty_write
``DIRTY_MEMORY_MIGRATION``  snapshots / migration: pages written since the last sync

A client only cares about pages where its logging is enabled (VGA over the
VGA window, MIGRATION while logging is on, CODE everywhere).  A TLB write
entry gets TLB_NOTDIRTY when its page is *clean for some enabled client*; the
first store then goes slow once, sets the bits, and the flag is dropped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .tlb import PAGE_BITS

if TYPE_CHECKING:
    import numpy as np

DIRTY_MEMORY_VGA = 0
DIRTY_MEMORY_CODE = 1
DIRTY_MEMORY_MIGRATION = 2
DIRTY_MEMORY_NUM = 3
CLIENT_NAMES = ("vga", "code", "migration")


class DirtyMemory:
    """Per-client dirty bitmaps.

    Each client's map is a ``bytearray`` (Python indexing is fast for the
    single-page updates of the store slow path) with a numpy view over the
    same buffer for bulk work (``bitmaps[client]``: counts, snapshots),
    made on first use: numpy is not imported at start-up.
    """

    def __init__(self, n_pages: int) -> None:
        self.n_pages = n_pages
        self.maps = [bytearray(b"\x01" * n_pages) for _ in range(DIRTY_MEMORY_NUM)]
        self._bitmaps: list[np.ndarray] | None = None
        # Per-page: which clients log this page (bit per client).  CODE always.
        self.logging = bytearray(bytes([1 << DIRTY_MEMORY_CODE]) * n_pages)
        self.migration_on = False

    @property
    def bitmaps(self) -> list[np.ndarray]:
        if self._bitmaps is None:
            import numpy

            self._bitmaps = [numpy.frombuffer(m, dtype=numpy.uint8) for m in self.maps]
        return self._bitmaps

    # ---- queries ------------------------------------------------------------
    def get_dirty(self, client: int, page_number: int) -> bool:
        return page_number >= self.n_pages or bool(self.maps[client][page_number])

    def is_clean(self, page_number: int) -> bool:
        """Clean for some client that logs this page: stores must take the slow path."""
        if page_number >= self.n_pages:
            return False
        log = self.logging[page_number]
        maps = self.maps
        return bool(
            (log & 1 and not maps[0][page_number])
            or (log & 2 and not maps[1][page_number])
            or (log & 4 and not maps[2][page_number])
        )

    def count_dirty(self, client: int) -> int:
        return int(self.bitmaps[client].sum())

    # ---- updates ------------------------------------------------------------
    def set_dirty_range(self, paddr: int, length: int, clients: int = 0b111) -> None:
        if length <= 0:
            return
        first = paddr >> PAGE_BITS
        last = min((paddr + length - 1) >> PAGE_BITS, self.n_pages - 1)
        if first == last:  # one page: the store slow path's case, kept cheap
            maps = self.maps
            if clients & 1:
                maps[0][first] = 1
            if clients & 2:
                maps[1][first] = 1
            if clients & 4:
                maps[2][first] = 1
            return
        if first > last:
            return
        for c in range(DIRTY_MEMORY_NUM):
            if clients & (1 << c):
                if first == last:
                    self.maps[c][first] = 1
                else:
                    self.maps[c][first : last + 1] = b"\x01" * (last + 1 - first)

    def reset_dirty_range(self, client: int, paddr: int, length: int) -> None:
        if length <= 0:
            return
        first = paddr >> PAGE_BITS
        last = min((paddr + length - 1) >> PAGE_BITS, self.n_pages - 1)
        if first == last:
            self.maps[client][first] = 0
        elif first < last:
            self.maps[client][first : last + 1] = bytes(last + 1 - first)

    def test_and_clear(self, client: int, paddr: int, length: int) -> np.ndarray:
        """Return the dirty pages of a range and clear them (display refresh, snapshots).

        Callers that clear a client's bits must also put TLB_NOTDIRTY back on
        live TLB write entries: use ``Machine.dirty_test_and_clear``.
        """
        if length <= 0:
            return self.bitmaps[client][:0].copy()
        first = paddr >> PAGE_BITS
        last = min((paddr + length - 1) >> PAGE_BITS, self.n_pages - 1)
        out = self.bitmaps[client][first : last + 1].copy()
        self.bitmaps[client][first : last + 1] = 0
        return out

    def enable_logging(self, client: int, paddr: int, length: int) -> None:
        if length <= 0:
            return
        first = paddr >> PAGE_BITS
        last = min((paddr + length - 1) >> PAGE_BITS, self.n_pages - 1)
        for page in range(first, last + 1):
            self.logging[page] |= 1 << client
