"""Direct tests of the tricky corners of the muldiv, shift, bitops, bcd and misc op families.

Each test assembles a short snippet (GNU as, at test time), runs it on a bare
Machine in flat 32-bit protected mode and checks the architectural result
against the Intel SDM.  The differential suite (test_differential.py) covers
these instructions broadly against Unicorn; the cases here are the ones
where a plausible implementation is wrong in a way random states rarely
show: precise #DE (also from a tier-2 TB), count-0 shifts, bit strings
reaching below the operand, cmpxchg's failure path, ENTER's nesting, and
POPF's privilege masks.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

machine_mod = pytest.importorskip("gdbemu.machine")
from gdbemu.core import flags as F  # noqa: E402,N812 - the project-wide name for the flags module
from gdbemu.core.cpu import CR0_PG, CR4_PSE, CS, SS, SegmentCache  # noqa: E402

CODE = 0x100000
DATA = 0x200000
STACK = 0x300000
M32 = 0xFFFFFFFF
EAX, ECX, EDX, EBX, ESP, EBP, ESI, EDI = range(8)


@functools.cache
def assemble(text: str) -> bytes:
    """Assemble an Intel-syntax 32-bit snippet into raw bytes (skips without binutils)."""
    as_path, objcopy = shutil.which("as"), shutil.which("objcopy")
    if not (as_path and objcopy):
        pytest.skip("GNU binutils (as, objcopy) not found")
    with tempfile.TemporaryDirectory() as tmp:
        src, obj, binf = Path(tmp, "x.s"), Path(tmp, "x.o"), Path(tmp, "x.bin")
        src.write_text(".intel_syntax noprefix\n.code32\n.text\n" + text + "\n")
        subprocess.run([as_path, "--32", "-o", str(obj), str(src)], check=True, capture_output=True)
        subprocess.run([objcopy, "-O", "binary", "-j", ".text", str(obj), str(binf)], check=True)
        return binf.read_bytes()


def make(
    text: str, regs: dict[int, int] | None = None, eflags: int = 0x2, mem: dict[int, bytes] | None = None
) -> machine_mod.Machine:
    """A Machine with ``text`` (followed by hlt) at CODE, ready to run: flat 32-bit, CPL 0, no IDT."""
    m = machine_mod.Machine(ram_size=4 << 20)
    m.mem.write(CODE, assemble(text + "\nhlt"))
    for addr, data in (mem or {}).items():
        m.mem.write(addr, data)
    cpu = m.cpu
    cpu.setup_flat32()
    cpu.eip = CODE
    cpu.regs[ESP] = STACK
    for r, v in (regs or {}).items():
        cpu.regs[r] = v & M32
    cpu.set_eflags(eflags)
    return m


def run(
    text: str, regs: dict[int, int] | None = None, eflags: int = 0x2, mem: dict[int, bytes] | None = None
) -> tuple[machine_mod.Machine, machine_mod.Stop]:
    """``make`` and run to the final hlt (or a triple fault)."""
    m = make(text, regs, eflags, mem)
    stop = m.run(max_insns=100_000)
    return m, stop


def dword(m: machine_mod.Machine, addr: int) -> int:
    return int.from_bytes(m.mem.read(addr, 4), "little")


# ---- #DE is precise ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "regs"),
    [
        ("div ecx", {EAX: 0x12345678, EDX: 5, ECX: 5}),  # quotient >= 2**32
        ("div ecx", {EAX: 1, EDX: 0, ECX: 0}),  # divide by zero
        ("idiv ecx", {EAX: 0, EDX: 0x80000000, ECX: -1}),  # -2**63 / -1
        ("idiv ecx", {EAX: 0x80000000, EDX: -1, ECX: -1}),  # -2**31 / -1: +2**31 does not fit
        ("div cl", {EAX: 0x1234, ECX: 0x12}),  # AX / CL: quotient 0x102
        ("idiv bh", {EAX: 0x8000, EBX: 0xFF00}),  # -32768 / -1
        ("div word ptr [ebx]", {EAX: 0xFFFF, EDX: 0x10, EBX: DATA}),  # DX:AX / 0x10
        ("aam 0", {EAX: 0x55}),  # AAM with a zero immediate is #DE too
    ],
)
def test_divide_error_is_precise(text: str, regs: dict[int, int]) -> None:
    """#DE (zero divisor or quotient overflow) leaves every register as before the instruction.

    With no IDT, #DE cannot be delivered: #DF, then a triple fault.
    """
    m = make(text, {ESI: 0x5A5A, EDI: 0xA5A5, **regs}, mem={DATA: (0x10).to_bytes(2, "little")})
    before = list(m.cpu.regs)
    stop = m.run(max_insns=10)
    assert stop.kind == "triple_fault"
    assert m.cpu.regs == before


def test_divide_error_is_precise_in_tier2() -> None:
    """A loop hot enough for tier 2 divides by a shrinking ECX until it reaches 0: #DE precise there too."""
    text = """
        mov ecx, 200
    1:  mov eax, 1000
        xor edx, edx
        add esi, 1
        div ecx
        add edi, eax
        dec ecx
        jmp 1b
    """
    m, stop = run(text)
    assert stop.kind == "triple_fault"
    assert m.translator.stats["tier2_built"] >= 1
    regs = m.cpu.regs
    # The faulting iteration: ECX = 0, EAX/EDX reloaded, ESI counted it, EDI not yet.
    assert regs[ECX] == 0 and regs[EAX] == 1000 and regs[EDX] == 0
    assert regs[ESI] == 201
    assert regs[EDI] == sum(1000 // c for c in range(1, 201))


def test_divide_results() -> None:
    m, stop = run(
        "mov eax, -7\ncdq\nmov ecx, 2\nidiv ecx\nmov esi, eax\nmov edi, edx\n"
        "mov ax, 1003\nmov bl, 10\ndiv bl\nmov ebp, eax"
    )
    assert stop.kind == "halt"
    assert m.cpu.regs[ESI] == (-3) & M32  # truncated toward zero
    assert m.cpu.regs[EDI] == (-1) & M32  # remainder has the dividend's sign
    assert m.cpu.regs[EBP] & 0xFFFF == (3 << 8) | 100  # AH = remainder, AL = quotient


def test_multiply_flags() -> None:
    """CF = OF = 1 exactly when the product does not fit the destination (SDM MUL/IMUL)."""
    m, _ = run(
        "mov eax, 0x10000\nmov ecx, 0x10000\nmul ecx\nsetc bl\nseto bh\n"  # 2**32: EDX = 1
        "mov eax, -2\nmov ecx, 3\nimul ecx\nsetc cl\nseto ch\n"  # -6 fits: EDX = -1
        "mov esi, 0x40000000\nimul esi, esi, 2\nseto dl\n"  # 2**31 does not fit signed
        "mov di, -0x100\nimul di, di, 0x7f\nsetc dh"  # -0x7f00 fits in 16 bits
    )
    regs = m.cpu.regs
    assert regs[EBX] & 0xFFFF == 0x0101
    assert regs[ECX] & 0xFFFF == 0x0000 and regs[EAX] == (-6) & M32
    assert regs[EDX] & 0xFFFF == 0x0001
    assert regs[ESI] == 0x80000000 and regs[EDI] & 0xFFFF == 0x8100


# ---- shifts -------------------------------------------------------------------------------


def test_shift_count_zero_leaves_flags_and_destination() -> None:
    """A masked count of 0 changes neither the destination nor any flag (SDM SAL/SHL ..., RCL ...)."""
    text = """
        mov eax, 0x80000001
        mov ecx, 32            # masked to 0
        mov ebx, 0xF0
        mov dword ptr [0x200000], 0x11223344
        cmp ebx, 0xF1          # CF=1 SF=1 ZF=0 AF=1 PF=1 OF=0
        shl eax, cl
        sar eax, cl
        rcr eax, cl
        rol ebx, cl
        shld ebx, eax, cl
        shl dword ptr [0x200000], cl
        shl eax, 0             # immediate 0
        ror bl, 0x20           # immediate masked to 0
        rcl al, 9              # 9 mod 9 = 0: no rotation, flags kept (as QEMU)
        rcl ax, 17             # 17 mod 17 = 0
        pushfd
        pop edx
    """
    m, stop = run(text)
    assert stop.kind == "halt"
    regs = m.cpu.regs
    assert regs[EAX] == 0x80000001 and regs[EBX] == 0xF0
    assert dword(m, DATA) == 0x11223344
    expected = F.CF | F.PF | F.AF | F.SF
    assert regs[EDX] & F.ARITH == expected


def test_shift_flags_and_rotates() -> None:
    m, _ = run(
        "mov eax, 0x80000000\nshl eax, 1\nsetc bl\nseto bh\nsetz cl\n"  # CF=1, OF=1 (sign changed), ZF
        "mov edx, 0x81\nstc\nrcr dl, 1\nsetc ch\n"  # CF:DL rotated: DL=0xC0, CF=1
        "mov esi, 0x12345678\nrol esi, 8\n"
        "mov edi, 0x80000000\nsar edi, 31"
    )
    regs = m.cpu.regs
    assert regs[EBX] & 0xFFFF == 0x0101 and regs[ECX] & 0xFFFF == 0x0101
    assert regs[EDX] & 0xFF == 0xC0
    assert regs[ESI] == 0x34567812 and regs[EDI] == M32


def test_shld_shrd() -> None:
    m, _ = run(
        "mov eax, 0x12345678\nmov ebx, 0x9ABCDEF0\nshld eax, ebx, 8\n"
        "mov edx, 0x12345678\nshrd edx, ebx, 4\n"
        "mov si, 0x1234\nmov di, 0x5678\nmov cl, 20\nshld si, di, cl"  # count > 16: dst:src:dst, as hardware
    )
    regs = m.cpu.regs
    assert regs[EAX] == 0x3456789A
    assert regs[EDX] == 0x01234567
    # (0x1234 << 32 | 0x5678 << 16 | 0x1234) << 20 >> 32, low 16 bits
    assert regs[ESI] & 0xFFFF == (((0x1234 << 32 | 0x5678 << 16 | 0x1234) << 20) >> 32) & 0xFFFF


# ---- bit strings -------------------------------------------------------------------------------


def test_bt_register_offset_reaches_below_the_operand() -> None:
    """A register bit offset on a memory operand is signed: it addresses before the operand (SDM BT)."""
    base = DATA + 0x100
    mem = {base - 8: (0x80000000).to_bytes(4, "little") + (0x80000001).to_bytes(4, "little")}
    text = f"""
        mov ebx, {base}
        mov ecx, -1                      # dword at base-4, bit 31
        bt dword ptr [ebx], ecx
        setc al
        mov ecx, -33                     # dword at base-8, bit 31
        btr dword ptr [ebx], ecx
        setc ah
        mov edx, -32                     # dword at base-4, bit 0
        bts dword ptr [ebx], edx
        setc dl
        mov si, -2                       # word at base-2, bit 14
        btc word ptr [ebx], si
        setc dh
        mov edi, 100                     # forward: dword at base+12, bit 4
        bts dword ptr [ebx], edi
    """
    m, stop = run(text, mem=mem)
    assert stop.kind == "halt"
    regs = m.cpu.regs
    assert regs[EAX] & 0xFFFF == 0x0101  # both bits were set
    assert regs[EDX] & 0xFFFF == 0x0001  # bit 0 was set; bit 14 of the upper word was clear
    assert dword(m, base - 8) == 0  # btr cleared bit 31
    assert dword(m, base - 4) == 0x80000001 ^ (1 << 30)  # btc flipped bit 14 of the word at base-2
    assert dword(m, base + 12) == 1 << 4


def test_bt_keeps_zf() -> None:
    m, _ = run("xor eax, eax\nmov ecx, 1\nbt ecx, 0\nsetz bl\nsetc bh\nbtc ecx, 33\nsetz dl\nsetc dh")
    regs = m.cpu.regs
    assert regs[EBX] & 0xFFFF == 0x0101  # ZF from xor survives; CF = bit 0
    assert regs[EDX] & 0xFFFF == 0x0001  # offset 33 -> bit 1 (was clear)
    assert regs[ECX] == 3


def test_bsf_bsr_zero_source_keeps_destination() -> None:
    m, _ = run(
        "mov eax, 0x1234\nxor ecx, ecx\nbsf eax, ecx\nsetz bl\nmov edx, 0x00F0\nbsf esi, edx\nbsr edi, edx\nsetz bh"
    )
    regs = m.cpu.regs
    assert regs[EAX] == 0x1234 and regs[EBX] & 0xFFFF == 0x0001
    assert regs[ESI] == 4 and regs[EDI] == 7


def test_cmov_memory_source_is_always_read() -> None:
    """CMOVcc with a false condition still performs the load, so it faults (SDM CMOVcc).

    Paging maps only the first 4 MiB (one PSE page); the source is beyond it.
    """
    m = make("xor eax, eax\ncmovnz ecx, dword ptr [0x800000]\nmov edx, 1", {ECX: 0x55})
    cpu = m.cpu
    pd = 0x380000
    m.mem.write(pd, (0x87).to_bytes(4, "little"))  # P RW US PS: 0..4 MiB identity
    cpu.cr[3] = pd
    cpu.cr[4] |= CR4_PSE
    cpu.cr[0] |= CR0_PG
    cpu.tlb.flush()
    cpu.compute_hflags()
    stop = m.run(max_insns=10)
    assert stop.kind == "triple_fault"
    assert cpu.regs[ECX] == 0x55 and cpu.regs[EDX] == 0
    assert cpu.cr[2] == 0x800000


# ---- cmpxchg / xadd / cmpxchg8b -------------------------------------------------------------------


def test_cmpxchg_failure_path() -> None:
    """Not equal: ZF=0, accumulator <- destination, destination (rewritten with) its old value."""
    m, _ = run(
        "mov eax, 1\nmov edx, 0x99\ncmpxchg dword ptr [0x200000], edx\nsetz bl\nmov esi, eax\n"
        "mov eax, 7\nmov ecx, 8\ncmpxchg ecx, edx\nsetz bh\nmov edi, eax\n"
        "mov eax, 0x5A\nmov ebp, 0x5A\ncmpxchg ebp, edx\nsetz cl",
        mem={DATA: (0x1234).to_bytes(4, "little")},
    )
    regs = m.cpu.regs
    assert regs[EBX] & 0xFFFF == 0 and regs[ESI] == 0x1234 and dword(m, DATA) == 0x1234
    assert regs[EDI] == 8 and regs[ECX] & 0xFF == 1  # register failure, then success
    assert regs[EBP] == 0x99


def test_xadd_and_cmpxchg8b() -> None:
    m, _ = run(
        "mov ecx, 5\nxadd ecx, ecx\nmov esi, ecx\n"  # 10
        "mov eax, 1\nmov edx, 2\nmov ebx, 0xB\nmov ecx, 0xC\n"
        "cmpxchg8b qword ptr [0x200000]\nsetz bl\n"  # fails: EDX:EAX <- m64
        "mov ebx, 0xB\ncmpxchg8b qword ptr [0x200000]\nsetz bh",  # now equal: m64 <- ECX:EBX
        mem={DATA: bytes.fromhex("1111111122222222")},
    )
    regs = m.cpu.regs
    assert regs[ESI] == 10
    assert regs[EAX] == 0x11111111 and regs[EDX] == 0x22222222
    assert regs[EBX] >> 8 & 0xFF == 1
    assert m.mem.read(DATA, 8) == bytes.fromhex("0b0000000c000000")


# ---- enter / leave ------------------------------------------------------------------------------


def test_enter_nesting_level_2() -> None:
    """ENTER 16, 2: push EBP, copy one frame pointer from [EBP-4], push FrameTemp (SDM ENTER)."""
    old_ebp = STACK - 0x40
    mem = {old_ebp - 4: (0xCAFEF00D).to_bytes(4, "little")}
    m, _ = run("enter 0x10, 2", {EBP: old_ebp}, mem=mem)
    regs = m.cpu.regs
    frame = STACK - 4
    assert regs[EBP] == frame
    assert dword(m, STACK - 4) == old_ebp
    assert dword(m, STACK - 8) == 0xCAFEF00D
    assert dword(m, STACK - 12) == frame
    assert regs[ESP] == frame - 8 - 0x10


def test_enter_leave_roundtrip() -> None:
    m, _ = run("mov ebp, 0x1234\nenter 0x20, 0\nmov esi, ebp\nleave\nmov edi, esp")
    regs = m.cpu.regs
    assert regs[ESI] == STACK - 4 and regs[EBP] == 0x1234 and regs[EDI] == STACK


# ---- pushf / popf ------------------------------------------------------------------------------


def _at_cpl(m: machine_mod.Machine, cpl: int, iopl: int) -> None:
    """Put the CPU at ``cpl`` (SS/CS descriptor caches of that DPL) with EFLAGS.IOPL = ``iopl``."""
    cpu = m.cpu
    for seg in (CS, SS):
        c = cpu.segs[seg]
        cpu.segs[seg] = SegmentCache((c.selector & ~3) | cpl, c.base, c.limit, (c.flags & ~(3 << 13)) | (cpl << 13))
    cpu.set_eflags(cpu.get_eflags() & ~F.IOPL | (iopl << 12))
    assert cpu.cpl == cpl


POPF_IMAGE = F.CF | F.ZF | F.DF | F.IF | F.IOPL | F.NT | F.AC | F.ID | F.RF | F.VM | F.VIF | F.VIP


@pytest.mark.parametrize(
    ("cpl", "iopl", "changes"),
    [
        (0, 0, F.IOPL | F.IF),  # CPL 0: IOPL and IF may change
        (3, 0, 0),  # CPL > IOPL: neither
        (3, 3, F.IF),  # CPL <= IOPL: IF only
        (1, 2, F.IF),
    ],
)
def test_popfd_privilege_masks(cpl: int, iopl: int, changes: int) -> None:
    """POPFD: IOPL only at CPL 0, IF only if CPL <= IOPL; VM, VIF, VIP kept; RF cleared (SDM POPF)."""
    m = make(f"push {POPF_IMAGE:#x}\npopfd")
    _at_cpl(m, cpl, iopl)
    m.run(max_insns=2)
    fl = m.cpu.get_eflags()
    always = F.CF | F.ZF | F.DF | F.NT | F.AC | F.ID
    assert fl & always == always
    assert fl & (F.VM | F.VIF | F.VIP | F.RF) == 0
    assert fl & F.IF == (F.IF if changes & F.IF else 0)
    assert fl & F.IOPL == (F.IOPL if changes & F.IOPL else iopl << 12)


def test_popf16_touches_low_word_only() -> None:
    # First all low-word bits but TF (which would single-step), then the image.
    m = make(f"pushw {POPF_IMAGE & 0xFFFF:#x}\npushw {0xFEFF:#x}\npopfw\nmov esi, esp\npopfw")
    cpu = m.cpu
    cpu.set_eflags(F.AC | F.ID | 2)
    m.run(max_insns=5)
    assert cpu.regs[ESI] == STACK - 2
    fl = cpu.get_eflags()
    assert fl & (F.AC | F.ID) == F.AC | F.ID  # the upper word is untouched
    assert fl & 0xFFFF == (POPF_IMAGE & 0xFFFF & ~0x8028) | 2  # reserved bits 3, 5, 15 stay 0


def test_pushf_clears_rf_and_vm_in_image() -> None:
    m = make("stc\npushfd\npop eax\npushfw\npop bx")
    m.cpu.set_eflags(F.RF | F.AC | 2)
    m.run(max_insns=5)
    regs = m.cpu.regs
    assert regs[EAX] & (F.RF | F.VM) == 0
    assert regs[EAX] & (F.AC | F.CF | 2) == F.AC | F.CF | 2
    assert regs[EBX] & 0xFFFF == (F.CF | 2)


# ---- BCD ---------------------------------------------------------------------------------------


def test_bcd_adjusts() -> None:
    m, _ = run(
        "mov al, 0x79\nadd al, 0x35\ndaa\nsetc bl\nmov esi, eax\n"  # 79 + 35 = 114: AL=0x14, CF
        "mov al, 0x35\nsub al, 0x47\ndas\nsetc bh\nmov edi, eax\n"  # 35 - 47 = -12: AL=0x88, CF
        "mov ax, 0x0109\nadd al, 0x08\naaa\nmov ecx, eax\n"  # 9 + 8 = 17: AX=0x0207
        "mov al, 77\naam\nmov edx, eax\n"  # AH=7, AL=7
        "mov ax, 0x0705\naad\nmov ebp, eax"  # 75
    )
    regs = m.cpu.regs
    assert regs[ESI] & 0xFF == 0x14 and regs[EDI] & 0xFF == 0x88 and regs[EBX] & 0xFFFF == 0x0101
    assert regs[ECX] & 0xFFFF == 0x0207
    assert regs[EDX] & 0xFFFF == 0x0707
    assert regs[EBP] & 0xFFFF == 75


def test_bound() -> None:
    """BOUND: signed bounds at m and m+4; out of range is #BR (vector 5), precise."""
    mem = {DATA: (-5 & M32).to_bytes(4, "little") + (10).to_bytes(4, "little")}
    m, stop = run("mov eax, -5\nbound eax, [0x200000]\nmov eax, 10\nbound eax, [0x200000]\nmov ecx, 1", mem=mem)
    assert stop.kind == "halt" and m.cpu.regs[ECX] == 1
    m, stop = run("mov eax, 11\nbound eax, [0x200000]\nmov ecx, 1", mem=mem)
    assert stop.kind == "triple_fault" and m.cpu.regs[ECX] == 0 and m.cpu.regs[EAX] == 11
