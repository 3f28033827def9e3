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


# ---- CPU models: CPUID and the instructions it gates ---------------------------------------------
GATED = r"""
.macro TRY name, insns:vararg
        EXPECT_FAULT .Ltry\@
        \insns
        movl $-1, last_vec
        movl $0, resume_eip
.Ltry\@:
        REPORT \name, last_vec
.endm
main:
        movl $1, %eax
        cpuid
        REPORT sig, %eax
        REPORT edx1, %edx
        TRY cmov, cmovz %eax, %ebx
        TRY clflush, clflush scratch
        TRY mfence, mfence
        TRY lfence, lfence
        TRY sfence, sfence
        TRY stac, stac
        TRY clac, clac
        TRY fninit, fninit
        ret
"""

UD, NONE = 6, 0xFFFFFFFF


@pytest.mark.parametrize(
    "model, expected",
    [
        ("pentium", {"sig": 0x543, "cmov": UD, "clflush": UD, "mfence": UD, "sfence": UD, "stac": UD, "fninit": NONE}),
        ("pentium2", {"sig": 0x652, "cmov": NONE, "clflush": UD, "lfence": UD, "stac": UD, "fninit": NONE}),
        ("qemu32,-cmov", {"sig": 0x663, "cmov": UD, "clac": UD}),
        ("max", {"cmov": NONE, "clflush": NONE, "mfence": NONE, "stac": NONE, "clac": NONE, "fninit": NONE}),
    ],
)
def test_cpu_model_gates_instructions(tmp_path: Path, model: str, expected: dict[str, int]) -> None:
    from unit import test_ops_system as harness

    from gdbemu.boot import firmware
    from gdbemu.machine import Machine

    elf = harness.build(tmp_path, "gated", harness.source(GATED))
    m = Machine(32 << 20)
    resolved = firmware.apply_cpu_model(m, model)
    m.load_elf(str(elf))
    stop = m.run(max_insns=200_000)
    assert stop.kind == "exit" and m.exit_code == 1, (stop, m.debug_output)
    got = {}
    for line in bytes(m.debug_output).decode().splitlines():
        key, _, val = line.partition("=")
        got[key] = int(val, 16)
    assert {k: got.get(k) for k in expected} == expected
    edx = got["edx1"]
    assert bool(edx & (1 << 15)) == ("cmov" in resolved.features)  # CPUID says what executes
    assert edx & 1  # FPU
    assert not edx & (1 << 25)  # SSE: not emulated, so never reported


def test_cpu_option_spellings() -> None:
    from gdbemu.cli.options import parse_args

    opts = parse_args(["-cpu", "qemu64,+umip"])
    assert opts.cpu == "qemu64,+umip" and any("umip" in n for n in opts.notes)
    opts = parse_args(["-cpu", "host"])
    assert any("no KVM" in n for n in opts.notes)
    for name in ("qemu32", "kvm32", "kvm64", "486", "pentium3", "core2duo", "max"):
        assert parse_args(["-cpu", name]).cpu == name
