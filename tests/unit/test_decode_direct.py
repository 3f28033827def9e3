"""Decoder._decode (capstone's C API read directly) gives the records of _decode_wrapped (its Python classes)."""

from __future__ import annotations

import random

import pytest

from gdbemu.core.decode import DecodeError, Decoder

# Opcode-ish byte soup: prefixes, REX, escapes, ModRM/SIB forms, immediates.
_BYTES = [0x66, 0x67, 0xF2, 0xF3, 0xF0, 0x2E, 0x26, 0x64, 0x65, 0x0F, 0x38, 0x3A, 0x48, 0x4C, 0x41, 0xC4, 0xC5]


def _windows(seed: int, n: int) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        head = bytes(rng.choice(_BYTES) for _ in range(rng.randrange(0, 4)))
        out.append((head + bytes(rng.randrange(256) for _ in range(15)))[:15])
    return out


@pytest.mark.parametrize("bits", [16, 32, 64])
def test_direct_decoding_equals_the_wrapped_one(bits):
    d = Decoder(bits)
    addr = 0xFFFFFFFF81000FF0 if bits == 64 else 0x7FF0
    agree = 0
    for window in _windows(bits, 4000):
        try:
            want = d._decode_wrapped(window, addr)
        except DecodeError:
            with pytest.raises(DecodeError):
                d._decode(window, addr)
            continue
        assert d._decode(window, addr) == want, window.hex()
        agree += 1
    assert agree > 2000
