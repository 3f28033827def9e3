"""Real gdb sees the x87 state: ``p $st0``, ``info float``, writing ``$st0`` and ``$fctrl`` (issue 10)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from gdbemu.testing import BuildError, Session, build_kernel

GDB = shutil.which(os.environ.get("GDBEMU_GDB") or "gdb")
pytestmark = pytest.mark.skipif(GDB is None, reason="gdb is not installed")

KERNEL = r"""
        .text
        .balign 4
        .long 0x1BADB002, 0, -0x1BADB002
        .globl _start
_start:
        fninit
        fldpi
        fld1                            /* ST(0) = 1, ST(1) = pi */
        .globl loaded
loaded:
        nop
        fadd %st(1), %st                /* ST(0) = ST(0) + pi */
        fstpl result
        .globl done
done:
        nop
1:      jmp 1b
        .data
        .balign 8
        .globl result
result: .double 0
"""


def test_info_float_and_st_registers(tmp_path: Path) -> None:
    src = tmp_path / "x87k.s"
    src.write_text(KERNEL)
    try:
        kernel = build_kernel([src], tmp_path / "x87k.elf")
    except BuildError as exc:
        if exc.missing_tool:
            pytest.skip(str(exc))
        raise
    with Session.boot(kernel) as s:
        s.run_to("loaded")
        assert s.read("$st0") == "1"
        assert s.read("$st1").startswith("3.14159265358979")
        assert s.read_int("$fctrl") == 0x37F
        assert s.read_int("$fstat") >> 11 & 7 == 6  # TOP after two pushes
        text = s.gdb_command("info float")
        assert "=>R6: Valid" in text and "R7: Valid" in text and "R0: Empty" in text, text
        assert "0x3fff8000000000000000" in text and "+1" in text, text
        s.write("$st0", "2.5")  # a P packet in i387_ext
        assert s.read("$st0") == "2.5"
        s.run_to("done")
        assert s.read("*(double *)&result").startswith("5.64159265358979")
