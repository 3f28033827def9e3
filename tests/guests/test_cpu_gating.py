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
        TRY fcmov, fcmovb %st(0), %st
        TRY fcomi, fcomi %st(0), %st
        TRY hint_nop, nopl 0(%eax)
        fninit
        ret
"""

UD, NONE = 6, 0xFFFFFFFF


@pytest.mark.parametrize(
    "model, expected",
    [
        (
            "pentium",
            {"sig": 0x543, "cmov": UD, "clflush": UD, "mfence": UD, "sfence": UD, "stac": UD, "fninit": NONE}
            | {"fcmov": UD, "fcomi": UD, "hint_nop": UD},
        ),
        (
            "pentium2",
            {"sig": 0x652, "cmov": NONE, "clflush": UD, "lfence": UD, "stac": UD, "fninit": NONE}
            | {"fcmov": NONE, "fcomi": NONE, "hint_nop": NONE},
        ),
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
    assert bool(edx & (1 << 25)) == ("sse" in resolved.features)


def test_cpu_option_spellings() -> None:
    from gdbemu.cli.options import parse_args

    opts = parse_args(["-cpu", "qemu64,+umip"])
    assert opts.cpu == "qemu64,+umip" and any("umip" in n for n in opts.notes)
    opts = parse_args(["-cpu", "host"])
    assert any("no KVM" in n for n in opts.notes)
    for name in ("qemu32", "kvm32", "kvm64", "486", "pentium3", "core2duo", "max"):
        assert parse_args(["-cpu", name]).cpu == name


def test_task_switch_to_conforming_code_with_dpl_below_rpl() -> None:
    """SDM vol. 3, 7.3 / QEMU's tss_load_seg: a conforming CS needs DPL <= RPL, not DPL = RPL."""
    from guests import test_task_sysenter as ts

    from gdbemu.core.cpu import DESC_P
    from gdbemu.core.helpers import far_jmp  # type: ignore[attr-defined]

    m = ts._board()
    cpu = m.cpu
    extra = ts._desc(0, 0xFFFFF, 0x9E, 0xC) + ts._desc(0, 0xFFFFF, 0xF2, 0xC)  # 0x30 conforming DPL0, 0x38 data DPL3
    m.mem.write(ts.GDT + 0x30, extra)
    cpu.gdtr_limit = 0x3F
    for off, value in ((0x4C, 0x33), (0x50, 0x3B), (0x48, 0x3B), (0x54, 0x3B), (0x58, 0x3B), (0x5C, 0x3B)):
        m.mem.write(ts.NEW_TSS + off, value.to_bytes(4, "little"))
    far_jmp(cpu, ts.SEL_NEW, 0, 4, 0x9007)
    assert cpu.segs[1].selector == 0x33 and cpu.eip == 0x5000
    assert cpu.segs[1].flags & DESC_P and cpu.segs[1].limit == 0xFFFFFFFF  # the descriptor was loaded
    assert cpu.cpl == 3  # the conforming segment runs at the RPL's privilege
