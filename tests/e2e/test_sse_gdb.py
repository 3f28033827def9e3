"""Real gdb sees and changes the SSE and x87 state, in 32-bit and 64-bit sessions (issue 10's gdb bullet).

``gdb_sse`` (tests/support/guests/gdb_sse.s) loads known values into
xmm0-xmm7, MXCSR and the x87 stack in 32-bit code (``loaded32``), stores what
it then sees after gdb's writes (``checked32``), and on a CPU with long mode
goes on into 64-bit code, loads xmm8-xmm15 (``loaded64``) and stores again
(``done64``).  A 32-bit session (the default ``qemu32``) gets the i386
description with gdb's SSE feature, a 64-bit one (``-cpu qemu64``) the amd64
description; a CPU without SSE (``-cpu pentium``) the i386 description without
it, where the x87 registers still work.  Every write is checked by what the
guest reads back (a store to memory, a conversion under MXCSR's rounding).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from support import build

from gdbemu.testing import BuildError, GdbError, GdbNotFoundError, Session, build_kernel, find_gdb

try:
    GDB: str | None = find_gdb()
except GdbNotFoundError:
    GDB = None

pytestmark = [pytest.mark.gdb, pytest.mark.skipif(GDB is None, reason="gdb is not installed")]

M64 = (1 << 64) - 1
XMM15 = 0xFEDCBA98765432100123456789ABCDEF


@pytest.fixture(scope="module")
def guest(build_guest: Callable[[str], Path]) -> Path:
    return build_guest("gdb_sse")


@pytest.fixture(scope="module")
def sym(guest: Path) -> dict[str, int]:
    # Numeric addresses: gdb refuses to cast ``&symbol`` of a no-debug-info ELF32 symbol to a
    # 64-bit pointer type ("Invalid cast") in an x86-64 session.
    return build.symbols(guest)


def _u(s: Session, expr: str) -> int:
    """``expr`` as an unsigned 64-bit value (read_int goes through ``long long``)."""
    return s.read_int(expr) & M64


def _flags(s: Session, reg: str) -> int:
    """A register of a flags type (gdb refuses to cast those to an integer), through ``p/x``."""
    return int(s.gdb_command(f"p/x {reg}").split("=")[1], 16)


def _u128(s: Session, addr: int) -> int:
    return _u(s, f"{{unsigned long long}}{addr:#x}") | _u(s, f"{{unsigned long long}}{addr + 8:#x}") << 64


def _vector_rows(text: str) -> dict[str, str]:
    """``info vector``'s lines by register name."""
    return {m.group(1): m.group(2) for m in re.finditer(r"^(\w+)\s+(.*)$", text, re.MULTILINE)}


def _check_loaded32(s: Session, sym: dict[str, int]) -> None:
    """What the guest loaded in 32-bit code, as gdb prints it."""
    assert s.read("$xmm1.v4_int32") == "{1, -2, 3, 2147483647}"
    assert s.read("$xmm2.v4_float") == "{1.5, -2, 0.25, 1024}"
    assert s.read("$xmm3.v2_double") == "{3.25, -0.5}"
    assert _u(s, "$xmm0.v2_int64[0]") == 0x0706050403020100 and _u(s, "$xmm0.v2_int64[1]") == 0x0F0E0D0C0B0A0908
    p = s.gdb_command("p $xmm1")
    assert "v4_int32 = {1, -2, 3, 2147483647}" in p and "v16_int8 = {1, 0, 0, 0, -2, -1, -1, -1, 3" in p, p
    assert s.read("$mxcsr") == "[ IM DM ZM OM UM PM FZ ]"
    assert _flags(s, "$mxcsr") == 0x9F80
    assert s.read("$st0").startswith("3.14159265358979") and s.read("$st1") == "1"
    vec = _vector_rows(s.gdb_command("info vector"))
    assert "uint128 = 0xfedcba98765432107777777777777777" in vec["xmm7"], vec["xmm7"]
    assert "v4_int32 = {0x3fc00000, 0xc0000000, 0x3e800000, 0x44800000}" in vec["xmm2"], vec["xmm2"]
    assert vec["mxcsr"].split()[0] == "0x9f80" and "FZ" in vec["mxcsr"], vec["mxcsr"]
    fl = s.gdb_command("info float")
    assert (
        "=>R6: Valid   0x4000c90fdaa22168c235 +3.14159265358979" in fl and "R7: Valid   0x3fff8000000000000000 +1" in fl
    )
    assert "R5: Empty" in fl and re.search(r"TOP: 6", fl), fl


def _write32_and_check(s: Session, sym: dict[str, int]) -> None:
    """Writes through gdb at loaded32, read back by the guest at checked32."""
    s.write("$xmm2.v4_int32[1]", "0x7f00ff00")
    s.write("$xmm3.v2_int64[0]", "0x00112233445566ff")
    s.write("$xmm3.v2_double[1]", "-7.75")
    s.write("$mxcsr", "0x7f80")  # RC = toward zero, FZ clear
    s.write("$st0", "2.5")
    assert s.read("$xmm2.v4_float[1]") != "-2" and _flags(s, "$mxcsr") == 0x7F80
    s.run_to("checked32")
    assert _u128(s, sym["out_xmm2"]) == 0x44800000_3E800000_7F00FF00_3FC00000
    assert _u128(s, sym["out_xmm3"]) == 0xC01F000000000000_00112233445566FF  # -7.75
    assert s.read_int(f"{{int}}{sym['out_cvt']:#x}") == 2  # cvtss2si 2.75 toward zero (3 to nearest)
    assert s.read_int(f"{{int}}{sym['out_mxcsr']:#x}") == 0x7F80 | 0x20  # ... which set PE
    assert (
        s.read(f"{{long double}}{sym['out_st0']:#x}") == "2.5" and s.read(f"{{long double}}{sym['out_st1']:#x}") == "1"
    )


def test_sse_and_x87_in_a_32_bit_session(guest: Path, sym: dict[str, int]) -> None:
    with Session.boot(guest, timeout=60) as s:
        assert "i386" in s.gdb_command("show architecture")
        s.run_to("loaded32")
        _check_loaded32(s, sym)
        vec = _vector_rows(s.gdb_command("info vector"))
        assert "xmm7" in vec and "xmm8" not in vec  # eight xmm registers in a 32-bit description
        assert s.read("$xmm8") == "void"  # not a register here: an unset convenience variable
        _write32_and_check(s, sym)
        s.run_to("done32")  # qemu32 has no long mode: the guest stops in 32-bit code


def test_sse_and_x87_in_a_64_bit_session(guest: Path, sym: dict[str, int]) -> None:
    with Session.boot(guest, extra_args=["-cpu", "qemu64"], timeout=60) as s:
        assert "x86-64" in s.gdb_command("show architecture")
        s.run_to("loaded32")  # 32-bit code under the amd64 description: the same values
        _check_loaded32(s, sym)
        _write32_and_check(s, sym)
        s.run_to("loaded64")
        assert _u(s, "$rip") == sym["loaded64"]
        assert s.gdb_command("p/x $xmm15.uint128").split("=")[1].strip() == f"{XMM15:#x}"
        assert _u(s, "$xmm8.v2_int64[0]") == 0x8888888888888888 and s.read_int("$xmm8.v2_int64[1]") == 8
        vec = _vector_rows(s.gdb_command("info vector"))
        assert all(f"xmm{i}" in vec for i in range(16)), vec.keys()
        assert f"uint128 = {XMM15:#x}" in vec["xmm15"], vec["xmm15"]
        assert vec["mxcsr"].split()[0] == "0x7fa0" and "PE" in vec["mxcsr"], vec["mxcsr"]
        assert s.read("$st0").startswith("3.32192809488736")  # fldl2t
        fl = s.gdb_command("info float")
        assert "=>R7: Valid   0x4000d49a784bcd1b8afe +3.32192809488736" in fl and "TOP: 7" in fl, fl
        # writes in 64-bit code, read back by the guest at done64
        s.write("$xmm15.v2_int64[1]", "0x0102030405060708")
        s.write("$xmm9.v4_float[2]", "0.5")
        s.write("$xmm1.v8_int16[7]", "-3")
        s.write("$mxcsr", "0x1f80")  # back to nearest
        s.write("$st0", "-1.25")
        s.run_to("done64")
        out = sym["out64"]
        assert _u128(s, out) == 0x0102030405060708_0123456789ABCDEF
        assert _u128(s, out + 16) == 0x00000000_3F000000_99999999_99999999
        assert _u128(s, out + 32) == 0xFFFDFFFF_00000003_FFFFFFFE_00000001
        assert (
            s.read_int(f"{{int}}{out + 48:#x}") == 0x1F80
        )  # stored before the cvtss2si: PE and RC cleared by the write
        assert s.read(f"{{long double}}{out + 64:#x}") == "-1.25"
        assert s.read_int(f"{{int}}{out + 80:#x}") == 3  # cvtss2si 2.75 to nearest


X87_KERNEL = r"""
        .text
        .balign 4
        .long 0x1BADB002, 0, -0x1BADB002
        .globl _start
_start:
        fninit
        fld1
        fldl2e                          /* ST(0) = log2(e), ST(1) = 1 */
        .globl loaded
loaded:
        nop
        fstpt result
        .globl done
done:
        nop
1:      jmp 1b
        .data
        .balign 16
        .globl result
result: .quad 0, 0
"""


def test_a_cpu_without_sse_has_x87_registers_only(tmp_path: Path) -> None:
    src = tmp_path / "x87only.s"
    src.write_text(X87_KERNEL)
    try:
        kernel = build_kernel([src], tmp_path / "x87only.elf")
    except BuildError as exc:
        if exc.missing_tool:
            pytest.skip(str(exc))
        raise
    with Session.boot(kernel, extra_args=["-cpu", "pentium"], timeout=60) as s:
        s.run_to("loaded")
        assert s.read("$st0").startswith("1.44269504088896") and s.read("$st1") == "1"
        assert "=>R6: Valid" in s.gdb_command("info float")
        assert s.read("$xmm0") == "void"
        with pytest.raises(GdbError):
            s.read("$mxcsr.IM")  # no such register: a void convenience variable has no fields
        assert "xmm" not in s.gdb_command("info vector")
        assert _flags(s, "$cr0") & 1 == 1 and s.read_int("$cs_base") == 0  # multiboot: PE; the system registers work
        s.write("$st0", "0.75")
        s.run_to("done")
        assert s.read("{long double}&result") == "0.75"


def _sse_view(s: Session, sym: dict[str, int]) -> dict[str, object]:
    """The SSE state gdb shows at loaded32, then what the guest reads back after the same writes."""
    s.run_to("loaded32")
    view: dict[str, object] = {}
    view.update({f"p $xmm{i}": s.gdb_command(f"p $xmm{i}").split("=", 1)[1].strip() for i in range(8)})
    view.update({reg: _flags(s, reg) for reg in ("$mxcsr", "$fctrl", "$fstat")})
    s.write("$xmm2.v4_int32[1]", "0x7f00ff00")
    s.write("$xmm3.v2_double[1]", "-7.75")
    s.write("$mxcsr", "0x7f80")
    s.run_to("checked32")
    view["out_xmm2"] = _u128(s, sym["out_xmm2"])
    view["out_xmm3"] = _u128(s, sym["out_xmm3"])
    view["out_cvt"] = s.read_int(f"{{int}}{sym['out_cvt']:#x}")
    view["out_mxcsr"] = s.read_int(f"{{int}}{sym['out_mxcsr']:#x}")
    return view


@pytest.mark.skipif(shutil.which("qemu-system-i386") is None, reason="qemu-system-i386 is not installed")
def test_the_sse_view_matches_qemus(guest: Path, sym: dict[str, int]) -> None:
    """QEMU (qemu-system-i386, qemu32) as the reference for what gdb shows of xmm0-7 and mxcsr and for
    writes through its stub.  (Not for the x87 stack: QEMU 7.2's stub sends st0-st7 by physical register
    and ftag as 0, where gdb's i387 code expects ST(i) and the full tag word, as gdbemu sends them; nor
    for ``info vector``, where gdb lists no xmm register of QEMU's description.)"""
    with Session.qemu(guest, timeout=60) as q:
        expected = _sse_view(q, sym)
    with Session.boot(guest, timeout=60) as s:
        got = _sse_view(s, sym)
    assert len(expected) == 8 + 3 + 4
    assert got == expected
