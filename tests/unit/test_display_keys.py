"""The curses display's key translation: terminal bytes to set-1 scancodes (cli/display.py, "Keys")."""

from __future__ import annotations

from gdbemu.cli.display import CP437, bytes_to_scancodes


def test_letters_enter_backspace_and_escape():
    assert bytes_to_scancodes(b"a") == bytes((0x1E, 0x9E))
    assert bytes_to_scancodes(b"A") == bytes((0x2A, 0x1E, 0x9E, 0xAA))  # shift held around the key
    assert bytes_to_scancodes(b"\r") == bytes((0x1C, 0x9C))
    assert bytes_to_scancodes(b"\x7f") == bytes((0x0E, 0x8E))  # the terminal's DEL is Backspace
    assert bytes_to_scancodes(b"\x1b") == bytes((0x01, 0x81))


def test_xterm_sequences_become_extended_keys():
    assert bytes_to_scancodes(b"\x1b[A") == bytes((0xE0, 0x48, 0xE0, 0xC8))  # up
    assert bytes_to_scancodes(b"\x1b[3~x") == bytes((0xE0, 0x53, 0xE0, 0xD3, 0x2D, 0xAD))  # delete, then x
    assert bytes_to_scancodes(b"\x1bOP") == bytes((0x3B, 0xBB))  # F1


def test_code_page_437_glyphs():
    assert CP437[0x01] == "☺" and CP437[0xDB] == "█" and CP437[0x41] == "A" and CP437[0] == " "
