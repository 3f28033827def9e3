"""Instructions whose meaning the manual fixes where gdbemu once differed (issue 10):
``rep bsf`` executes as BSF on a CPU without BMI1 (gcc -m32 -O2 emits it for __builtin_ctz),
``mov %ax, %cs`` raises #UD, not #GP."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from unit.test_ops_system import check

pytestmark = pytest.mark.skipif(shutil.which("as") is None, reason="GNU binutils not installed")

SNIPPET = r"""
.macro TRY name, insns:vararg
        EXPECT_FAULT .Ltry\@
        \insns
        movl $-1, last_vec
        movl $0, resume_eip
.Ltry\@:
        REPORT \name, last_vec
.endm
main:
        movl $0x80, %ecx
        movl $0x1234, %eax
        rep bsf %ecx, %eax
        REPORT rep_bsf, %eax
        movw %cs, %ax
        TRY mov_cs, movw %ax, %cs
        ret
"""


def test_rep_bsf_and_mov_cs(tmp_path: Path) -> None:
    check(tmp_path, "gating", SNIPPET, {"rep_bsf": 7, "mov_cs": 6})
