"""String instructions (core/ops/string.py) run as tiny guests, in both translation tiers.

Each test assembles a few instructions with GNU as at test time, sets the
registers and memory from Python, runs the guest on a Machine and compares
with the element-by-element result computed here.  Why these cases:

* rep movs/stos are done a page-sized slice at a time; the slices must stop
  at every page boundary, honour DF, wrap 16-bit SI/DI, and give the
  byte-by-byte result when source and destination overlap (a forward movsb
  with dst = src + 1 replicates one byte, a memmove would not);
* repe/repne cmps/scas stop on the first (mis)match with ECX/ESI/EDI and the
  flags of the last compared pair;
* a store into translated code, a device page or a watched access must
  not use the bulk path: TBs are invalidated and devices see every access;
* a #PF in iteration k leaves the state after k-1 iterations (demand paging
  restarts the instruction), including the flags of completed comparisons;
* each rep iteration is one instruction of the budget (QEMU's -icount),
  and a large rep is fast.

Tier 2 is forced by setting the exec loop's threshold to 1, so each TB is
compiled as a whole function the first time it runs.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import gdbemu.core.exec as core_exec
from gdbemu.core.exceptions import GuestFault
from gdbemu.core.ops import string as string_ops
from gdbemu.machine import Machine, Stop

EAX, ECX, EDX, EBX, ESP, EBP, ESI, EDI = range(8)
CF, ZF, SF, DF = 0x1, 0x40, 0x80, 0x400
TEXT = 0x100000
SRC, DST = 0x200000, 0x300000  # data buffers, away from the code page
RAM = 8 << 20

pytestmark = pytest.mark.skipif(not (shutil.which("as") and shutil.which("ld")), reason="GNU binutils needed")


@pytest.fixture(params=[1, 2], ids=["tier1", "tier2"])
def tier(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    if request.param == 2:
        monkeypatch.setattr(core_exec, "TIER2_THRESHOLD", 1)
    return request.param


@pytest.fixture(scope="module")
def asm(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``asm(body) -> elf``: body at _start (0x100000), followed by an exit through port 0xF4."""
    out = tmp_path_factory.mktemp("strguests")
    cache: dict[str, Path] = {}

    def build(body: str) -> Path:
        if body not in cache:
            n = len(cache)
            src = out / f"g{n}.s"
            src.write_text(f".code32\n.globl _start\n.text\n_start:\n{body}\n    out %al, $0xf4\n")
            subprocess.run(["as", "--32", str(src), "-o", str(out / f"g{n}.o")], check=True, capture_output=True)
            subprocess.run(
                ["ld", "-m", "elf_i386", f"-Ttext={TEXT:#x}", str(out / f"g{n}.o"), "-o", str(out / f"g{n}.elf")],
                check=True,
                capture_output=True,
            )
            cache[body] = out / f"g{n}.elf"
        return cache[body]

    return build


def machine(
    elf: Path, regs: dict[int, int] | None = None, mem: dict[int, bytes] | None = None, eflags: int | None = None
) -> Machine:
    m = Machine(RAM)
    m.load_elf(str(elf))
    m.cpu.regs[ESP] = 0x90000
    for addr, data in (mem or {}).items():
        m.mem.write(addr, data)
    for r, v in (regs or {}).items():
        m.cpu.regs[r] = v
    if eflags is not None:
        m.cpu.set_eflags(eflags)
    return m


def run(m: Machine, max_insns: int = 10**6) -> Stop:
    stop = m.run(max_insns=max_insns)
    assert stop.kind == "exit", stop
    return stop


def pattern(n: int, seed: int = 1) -> bytes:
    return bytes((i * 7 + seed * 13 + (i >> 8) * 3) & 0xFF for i in range(n))


def ref_movs(mem: bytearray, src: int, dst: int, count: int, size: int, step: int) -> None:
    """The architectural definition: one element after another, in order."""
    for _ in range(count):
        mem[dst : dst + size] = mem[src : src + size]
        src += step
        dst += step


# ---- movs ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("insn", "size", "df", "src", "dst", "count"),
    [
        ("movsb", 1, False, SRC + 0xF80, DST + 0x7B3, 0x2345),
        ("movsl", 4, False, SRC + 0xFFE, DST + 0x1FFD, 0x900),
        ("movsb", 1, True, SRC + 0x3100, DST + 0x2803, 0x2200),
        ("movsl", 4, True, SRC + 0x2FFE, DST + 0x3001, 0x600),
        ("movsw", 2, False, SRC + 0x1001, DST + 0xFFF, 0x999),
        # overlapping source and destination in one buffer
        ("movsb", 1, False, SRC + 0xFF0, SRC + 0xFF1, 0x2000),  # dst = src + 1: replicates a byte
        ("movsb", 1, False, SRC + 0xF00, SRC + 0xF07, 0x1800),  # period 7
        ("movsl", 4, False, SRC + 0x1FF0, SRC + 0x1FF2, 0x500),  # distance < element size
        ("movsl", 4, False, SRC + 0x100, SRC + 0x10C, 0x800),
        ("movsb", 1, False, SRC + 0x1001, SRC + 0x1000, 0x2000),  # dst below src: plain copy
        ("movsb", 1, True, SRC + 0x3010, SRC + 0x300F, 0x2000),  # DF=1, dst = src - 1
        ("movsl", 4, True, SRC + 0x3010, SRC + 0x300D, 0x500),
        ("movsw", 2, True, SRC + 0x2000, SRC + 0x2005, 0x900),  # DF=1, dst above: plain copy
    ],
)
def test_rep_movs(asm, tier, insn: str, size: int, df: bool, src: int, dst: int, count: int) -> None:
    elf = asm(f"    rep {insn}")
    image = bytearray(pattern(0x8000))
    m = machine(
        elf, {ESI: src, EDI: dst, ECX: count}, {SRC: bytes(image), DST: bytes(image)}, eflags=0x2 | (DF if df else 0)
    )
    run(m)
    step = -size if df else size
    want = bytearray(RAM)
    want[SRC : SRC + 0x8000] = image
    want[DST : DST + 0x8000] = image
    ref_movs(want, src, dst, count, size, step)
    assert m.mem.ram[SRC : SRC + 0x8000] == want[SRC : SRC + 0x8000]
    assert m.mem.ram[DST : DST + 0x8000] == want[DST : DST + 0x8000]
    regs = m.cpu.regs
    assert (regs[ECX], regs[ESI], regs[EDI]) == (0, src + count * step, dst + count * step)
    assert m.cpu.icount == count + 1  # one per iteration, as QEMU's -icount, and the exit


def test_movs_single_and_count_zero(asm, tier) -> None:
    """No prefix: one element, ECX untouched; rep with ECX = 0: nothing at all."""
    elf = asm("    movsw\n    std\n    movsb\n    cld\n    xor %ecx, %ecx\n    rep movsl")
    m = machine(elf, {ESI: SRC + 0xFFF, EDI: DST + 0x10, ECX: 0x1234}, {SRC: pattern(0x2000)})
    run(m)
    ram = m.mem.ram
    assert ram[DST + 0x10 : DST + 0x12] == pattern(0x2000)[0xFFF:0x1001]
    assert ram[DST + 0x12] == pattern(0x2000)[0x1001]
    assert (m.cpu.regs[ESI], m.cpu.regs[EDI], m.cpu.regs[ECX]) == (SRC + 0x1000, DST + 0x11, 0)


def test_segment_override_source(asm, tier) -> None:
    """fs: applies to the source; the destination is ES whatever the prefix."""
    elf = asm("    rep movsb %fs:(%esi), %es:(%edi)")
    m = machine(elf, {ESI: 0x10, EDI: DST, ECX: 0x20}, {SRC: pattern(0x100)})
    m.cpu.segs[4].base = SRC
    m.cpu.compute_hflags()
    run(m)
    assert m.mem.ram[DST : DST + 0x20] == pattern(0x100)[0x10:0x30]
    assert (m.cpu.regs[ESI], m.cpu.regs[EDI]) == (0x30, DST + 0x20)


def test_addr16_wraps_si_di(asm, tier) -> None:
    """With a 67 prefix SI/DI/CX count and wrap at 64 KiB; the high halves stay (SDM vol. 1, 3.6)."""
    elf = asm(
        "    .byte 0x67, 0xf3, 0xa4   /* addr16 rep movsb */\n    .byte 0x67, 0xf3, 0xab   /* addr16 rep stosd */"
    )
    m = machine(elf, {ESI: 0xAAAA_FFF0, EDI: 0xBBBB_8000, ECX: 0xCCCC_0020, EAX: 0x11223344}, {0: pattern(0x10000)})
    image = bytearray(m.mem.ram[:0x10000])
    run(m)
    regs = m.cpu.regs
    assert regs[ECX] == 0xCCCC_0000
    assert regs[ESI] == 0xAAAA_0010 and regs[EDI] == 0xBBBB_8020
    expect = image[0xFFF0:0x10000] + image[0:0x10]
    assert m.mem.ram[0x8000:0x8020] == expect
    assert m.mem.ram[0x10000:0x10010] == bytes(0x10)  # nothing past 64 KiB
    # the stosd after it found CX = 0 and did nothing; run it alone with a count
    m2 = machine(elf, {ESI: 0, EDI: 0xFFF8, ECX: 0, EAX: 0x11223344})
    m2.cpu.eip = TEXT + 3
    m2.cpu.regs[ECX] = 0x7777_0004
    run(m2)
    assert m2.cpu.regs[EDI] == 0x0008 and m2.cpu.regs[ECX] == 0x7777_0000
    assert m2.mem.ram[0xFFF8:0x10000] == bytes.fromhex("4433221144332211")
    assert m2.mem.ram[0:8] == bytes.fromhex("4433221144332211")


# ---- stos / lods ----------------------------------------------------------------------------
@pytest.mark.parametrize(("df", "start"), [(False, DST + 0xFFE), (True, DST + 0x2FFE)])
def test_rep_stosd_across_pages(asm, tier, df: bool, start: int) -> None:
    elf = asm("    rep stosl")
    m = machine(elf, {EDI: start, ECX: 0x801, EAX: 0xDEADBEEF}, {DST: b"\xee" * 0x4000}, eflags=0x2 | (DF if df else 0))
    run(m)
    step = -4 if df else 4
    lo = start if not df else start - 0x800 * 4
    assert m.mem.ram[lo : lo + 0x801 * 4] == bytes.fromhex("efbeadde") * 0x801
    assert m.mem.ram[lo - 1] == 0xEE and m.mem.ram[lo + 0x801 * 4] == 0xEE
    assert (m.cpu.regs[EDI], m.cpu.regs[ECX]) == (start + 0x801 * step, 0)


def test_lods(asm, tier) -> None:
    """rep lods leaves the last element in AL/AX/EAX; plain lods steps once."""
    elf = asm("    rep lodsw\n    lodsb")
    data = pattern(0x3000)
    m = machine(elf, {ESI: SRC + 0xFF0, ECX: 0x900, EAX: 0x12345678}, {SRC: data})
    run(m)
    last = 0xFF0 + 2 * 0x8FF  # the last word rep lodsw loads; its high byte stays in AH
    assert m.cpu.regs[EAX] == 0x12340000 | data[last + 1] << 8 | data[last + 2]
    assert m.cpu.regs[ESI] == SRC + 0xFF0 + 2 * 0x900 + 1


# ---- cmps / scas ----------------------------------------------------------------------------
def test_repe_cmpsb_stops_at_difference(asm, tier) -> None:
    elf = asm("    repe cmpsb")
    a = bytearray(pattern(0x3000))
    b = bytearray(a)
    b[0x1800] = (a[0x1800] + 1) & 0xFF  # a < b there: CF set
    m = machine(elf, {ESI: SRC, EDI: DST, ECX: 0x2000}, {SRC: bytes(a), DST: bytes(b)})
    run(m)
    regs = m.cpu.regs
    assert (regs[ECX], regs[ESI], regs[EDI]) == (0x2000 - 0x1801, SRC + 0x1801, DST + 0x1801)
    fl = m.cpu.get_eflags()
    assert not fl & ZF and fl & CF


def test_repe_cmpsd_backward_all_equal(asm, tier) -> None:
    elf = asm("    std\n    repe cmpsl\n    cld")
    data = pattern(0x3000)
    m = machine(elf, {ESI: SRC + 0x2FFC, EDI: DST + 0x2FFC, ECX: 0x800}, {SRC: data, DST: data})
    run(m)
    assert (m.cpu.regs[ECX], m.cpu.regs[ESI]) == (0, SRC + 0x2FFC - 0x2000)
    assert m.cpu.get_eflags() & ZF


def test_repne_cmpsw_finds_equal(asm, tier) -> None:
    elf = asm("    repne cmpsw")
    a = bytes(range(256)) * 64
    b = bytearray(b"\x01\x00" * 0x2000)
    b[0x1402:0x1404] = a[0x1402:0x1404]
    m = machine(elf, {ESI: SRC, EDI: DST, ECX: 0x1000}, {SRC: a, DST: bytes(b)})
    run(m)
    assert (m.cpu.regs[ECX], m.cpu.regs[EDI]) == (0x1000 - 0xA02, DST + 0x1404)
    assert m.cpu.get_eflags() & ZF


def test_repne_scasb_finds_byte(asm, tier) -> None:
    """strlen: repne scasb with ECX = -1 over a string crossing a page."""
    elf = asm("    repne scasb")
    text = b"x" * 0x1234 + b"\0"
    m = machine(elf, {EDI: DST + 0xF00, ECX: 0xFFFFFFFF, EAX: 0xAABBCC00}, {DST + 0xF00: text})
    run(m)
    assert m.cpu.regs[EDI] == DST + 0xF00 + 0x1235
    assert m.cpu.regs[ECX] == (0xFFFFFFFF - 0x1235) & 0xFFFFFFFF
    assert m.cpu.get_eflags() & ZF


def test_scas_flags_and_not_found(asm, tier) -> None:
    """repne scasd that never matches runs ECX down to 0 with the last pair's flags."""
    elf = asm("    repne scasl")
    m = machine(elf, {EDI: DST, ECX: 0x500, EAX: 5}, {DST: (7).to_bytes(4, "little") * 0x500})
    run(m)
    fl = m.cpu.get_eflags()
    assert m.cpu.regs[ECX] == 0 and not fl & ZF and fl & CF and fl & SF  # 5 - 7
    # repe with ECX = 0 leaves the flags alone
    elf = asm("    cmp %eax, %eax\n    mov $0, %ecx\n    repe scasb")
    m = machine(elf, {EDI: DST, EAX: 1})
    run(m)
    assert m.cpu.get_eflags() & ZF and m.cpu.regs[EDI] == DST


def test_single_cmps_scas(asm, tier) -> None:
    elf = asm("    cmpsb\n    mov %eax, %ebx\n    scasw")
    m = machine(elf, {ESI: SRC, EDI: DST, EAX: 0x0302}, {SRC: b"\x05", DST: b"\x09\x02\x03"})
    run(m)
    fl = m.cpu.get_eflags()
    assert fl & ZF and m.cpu.regs[EDI] == DST + 3 and m.cpu.regs[ESI] == SRC + 1


# ---- self-modifying code ----------------------------------------------------------------------
SMC_OTHER_TB = """
    call patch
    mov %eax, %ebx
    mov $patch, %edi
    mov $0x90, %eax
    mov $15, %ecx
    rep stosb
    call patch
    jmp done
    .balign 64
patch:
    mov $1, %eax
    .fill 10, 1, 0x90
    ret
done:
"""


def test_rep_stos_over_code_is_retranslated(asm, tier) -> None:
    """Code that ran is overwritten by rep stos: its TB must go, the new bytes must run."""
    for follow in (False, True):
        before = dict(string_ops.STATS)
        m = machine(asm(SMC_OTHER_TB))
        # Following the calls (core/translate.py) puts `patch` into the TBs that call it, so
        # the first store empties the page of TBs and the rest may go in bulk: both exact.
        m.translator.follow_jumps = follow
        run(m)
        assert m.cpu.regs[EBX] == 1  # the first call ran the original code
        assert m.cpu.regs[EAX] == 0x90  # the second ran the NOPs: eax kept the stos value
        assert m.stats()["tb_invalidated"] > 0
        if not follow:  # other TBs stay on the page: every element goes through the softmmu
            assert string_ops.STATS["slow_elements"] - before["slow_elements"] >= 15  # not the bulk path


def test_rep_stos_over_own_tb(asm, tier) -> None:
    """rep stos rewriting the instructions right after it, in the same TB (SMC restart)."""
    m = machine(
        asm("    mov $target, %edi\n    mov $0x90, %al\n    mov $5, %ecx\n    rep stosb\ntarget:\n    mov $5, %ebx"),
        {EBX: 0},
    )
    run(m)
    assert m.cpu.regs[EBX] == 0 and m.cpu.regs[ECX] == 0
    stats = m.stats()
    assert stats["smc_restarts"] >= 1 and stats["tb_invalidated"] >= 1


def test_code_page_slow_data_page_fast(asm, tier) -> None:
    """One rep movs over a code page and a data page: per element on the first only."""
    before = dict(string_ops.STATS)
    # the guest's own page holds translated code; the copy runs 0x100800 .. 0x101800
    m = machine(asm("    rep movsb"), {ESI: SRC, EDI: TEXT + 0x800, ECX: 0x1000}, {SRC: pattern(0x1000)})
    run(m)
    assert m.mem.ram[TEXT + 0x800 : TEXT + 0x1800] == pattern(0x1000)
    slow = string_ops.STATS["slow_elements"] - before["slow_elements"]
    assert 0 < slow <= 0x800
    assert string_ops.STATS["bulk_bytes"] - before["bulk_bytes"] >= 0x800


# ---- devices, watch stops, port I/O -----------------------------------------------------------
class Recorder:
    """An MMIO device that logs every access and can raise a stop at the n-th one."""

    def __init__(self, m: Machine, stop_at: int = -1) -> None:
        self.m = m
        self.log: list[tuple] = []
        self.data = bytearray(pattern(0x1000, 9))
        self.stop_at = stop_at

    def _tick(self) -> None:
        if len(self.log) == self.stop_at:
            self.m.cpu.watch_hit = True  # what a watchpoint would do
            self.m.request_stop(Stop("watch"))

    def mmio_read(self, offset: int, size: int) -> int:
        self.log.append(("r", offset, size))
        self._tick()
        return int.from_bytes(self.data[offset : offset + size], "little")

    def mmio_write(self, offset: int, size: int, value: int) -> None:
        self.log.append(("w", offset, size, value))
        self.data[offset : offset + size] = value.to_bytes(size, "little")
        self._tick()


MMIO = 0xFE000000


def test_mmio_sees_every_element(asm, tier) -> None:
    elf = asm(
        "    rep movsl\n    std\n    mov %ebx, %esi\n    mov $0x300010, %edi\n    mov $4, %ecx\n    rep movsw\n    cld"
    )
    m = machine(elf, {ESI: SRC, EDI: MMIO + 0x100, ECX: 16, EBX: MMIO + 0x20}, {SRC: pattern(64)})
    dev = Recorder(m)
    m.mem.add_mmio(MMIO, 0x1000, dev, "rec")
    run(m)
    src = pattern(64)
    writes = [("w", 0x100 + 4 * i, 4, int.from_bytes(src[4 * i : 4 * i + 4], "little")) for i in range(16)]
    reads = [("r", 0x20 - 2 * i, 2) for i in range(4)]
    assert dev.log == writes + reads
    assert m.mem.ram[DST + 0xA : DST + 0x12] == dev.data[0x1A:0x22]


def test_stop_mid_rep_keeps_eip_and_resumes(asm, tier) -> None:
    """A watch hit / stop request in iteration k: EIP on the rep, registers after k iterations."""
    elf = asm("    nop\n    rep stosl\n    mov %ecx, %ebx")
    m = machine(elf, {EDI: MMIO, ECX: 10, EAX: 0x01020304, EBX: 0xFFFF})
    dev = Recorder(m, stop_at=4)
    m.mem.add_mmio(MMIO, 0x1000, dev, "rec")
    stop = m.run(max_insns=100)
    assert stop.kind == "watch"
    assert m.cpu.eip == TEXT + 1  # the rep instruction itself
    assert (m.cpu.regs[ECX], m.cpu.regs[EDI], m.cpu.regs[EBX]) == (6, MMIO + 16, 0xFFFF)
    m.cpu.watch_hit = None
    run(m)
    assert (m.cpu.regs[ECX], m.cpu.regs[EDI], m.cpu.regs[EBX]) == (0, MMIO + 40, 0)
    assert len(dev.log) == 10


class Port:
    def __init__(self) -> None:
        self.out: list[tuple[int, int, int]] = []
        self.counter = 0

    def io_read(self, port: int, size: int) -> int:
        self.counter += 1
        return (self.counter * 0x01010101) & ((1 << (8 * size)) - 1)

    def io_write(self, port: int, size: int, value: int) -> None:
        self.out.append((port, size, value))


def test_ins_outs(asm, tier) -> None:
    elf = asm(
        "    mov $0xe9, %dx\n    rep outsb\n    mov $0x70, %dx\n    mov $0x300000, %edi\n    mov $3, %ecx\n"
        "    rep insw\n    outsl\n    std\n    insb\n    cld"
    )
    m = machine(elf, {ESI: SRC, ECX: 6}, {SRC: b"hello!\x01\x02\x03\x04"})
    port = Port()
    m.mem.add_port(0x70, 1, port)
    run(m)
    assert bytes(m.debug_output) == b"hello!"
    assert m.mem.ram[DST : DST + 6] == bytes.fromhex("010102020303")
    assert port.out == [(0x70, 4, 0x04030201)]
    assert m.mem.ram[DST + 6] == 4 and m.cpu.regs[EDI] == DST + 5
    assert m.cpu.regs[ESI] == SRC + 10


def test_sse_movsd_is_ud(asm, tier) -> None:
    """capstone calls SSE2 movsd by the same name; without SSE it is #UD."""
    m = machine(asm("    movsd %xmm1, %xmm0"))
    seen: list[int] = []

    def deliver(cpu, fault: GuestFault) -> None:
        seen.append(fault.vector)
        m.request_stop(Stop("fault"))

    m.exec_ctx.deliver_exception = deliver
    m.run(max_insns=10)
    assert seen == [6]


# ---- page faults in the middle of a rep -------------------------------------------------------
PD, PT = 0x700000, 0x701000


def paging(m: Machine, missing: set[int]) -> list[tuple]:
    """Identity-map 4 MiB except the pages in ``missing``; a #PF maps the page and retries.

    Returns the log of faults: (cr2, error code, regs, eip, eflags), taken at
    delivery time, i.e. the state the guest's handler would see.
    """
    m.mem.write(PD, (PT | 3).to_bytes(4, "little"))
    m.mem.write(
        PT, b"".join(((i << 12) | (0 if (i << 12) in missing else 3)).to_bytes(4, "little") for i in range(1024))
    )
    cpu = m.cpu
    cpu.cr[3] = PD
    cpu.cr[0] |= 0x80000000
    cpu.compute_hflags()
    cpu.tlb.flush()
    log: list[tuple] = []

    def deliver(cpu_, fault: GuestFault) -> None:
        assert fault.vector == 14, fault
        log.append((fault.cr2, fault.error_code, list(cpu_.regs), cpu_.eip, cpu_.get_eflags()))
        page = fault.cr2 & ~0xFFF
        m.mem.write(PT + (page >> 12) * 4, (page | 3).to_bytes(4, "little"))
        cpu_.tlb.flush_page(page)

    m.exec_ctx.deliver_exception = deliver
    return log


def test_fault_mid_rep_stos_is_precise(asm, tier) -> None:
    elf = asm("    nop\n    rep stosb")
    m = machine(elf, {EDI: DST + 0xFF0, ECX: 0x40, EAX: 0x77}, {DST: b"\0" * 0x2000})
    log = paging(m, {DST + 0x1000})
    run(m)
    assert len(log) == 1
    cr2, err, regs, eip, _ = log[0]
    assert (cr2, err, eip) == (DST + 0x1000, 2, TEXT + 1)
    assert (regs[ECX], regs[EDI]) == (0x30, DST + 0x1000)
    assert m.mem.ram[DST + 0xFF0 : DST + 0x1030] == b"\x77" * 0x40
    assert (m.cpu.regs[ECX], m.cpu.regs[EDI]) == (0, DST + 0x1030)


def test_fault_mid_rep_movsd_backward_straddling(asm, tier) -> None:
    """DF=1 movsd whose source dword straddles into a missing page: nothing of it is stored."""
    elf = asm("    std\n    rep movsl\n    cld")
    m = machine(elf, {ESI: SRC + 0x100A, EDI: DST + 0x800, ECX: 8}, {SRC: pattern(0x2000)})
    log = paging(m, {SRC})
    run(m)
    assert len(log) == 1
    cr2, err, regs, eip, _ = log[0]
    # elements at 0x100a, 0x1006, 0x1002 are fine; 0xffe straddles into the missing page
    assert (cr2, err, eip) == (SRC + 0xFFE, 0, TEXT + 1)
    assert (regs[ECX], regs[ESI], regs[EDI]) == (5, SRC + 0xFFE, DST + 0x800 - 12)
    both = bytearray(RAM)
    both[SRC : SRC + 0x2000] = pattern(0x2000)
    ref_movs(both, SRC + 0x100A, DST + 0x800, 8, 4, -4)
    assert m.mem.ram[DST + 0x700 : DST + 0x900] == both[DST + 0x700 : DST + 0x900]


def test_fault_mid_repe_cmps_keeps_flags(asm, tier) -> None:
    """The flags of the comparisons completed before the #PF are the ones the handler sees."""
    elf = asm("    or $1, %eax\n    repe cmpsb")  # ZF=0 before the instruction
    data = pattern(0x2000)
    m = machine(
        elf,
        {ESI: SRC + 0xFF0, EDI: DST + 0xFF0, ECX: 0x20, EAX: 0},
        {SRC: data, DST: data[:0x1008] + b"\xff" + data[0x1009:]},
    )
    log = paging(m, {DST + 0x1000})
    run(m)
    assert len(log) == 1
    cr2, _, regs, _, eflags = log[0]
    assert cr2 == DST + 0x1000 and regs[ECX] == 0x10 and eflags & ZF
    assert m.cpu.regs[ECX] == 0x20 - 0x19 and not m.cpu.get_eflags() & ZF


def test_loop_of_reps_in_one_tb(asm, tier) -> None:
    """A TB that loops on itself around a rep (tier 2 runs it as a while loop)."""
    elf = asm(
        "    mov $100, %ebx\n1:\n    mov $0x200000, %esi\n    mov %ebx, %edi\n    add $0x300000, %edi\n"
        "    mov $3, %ecx\n    rep movsb\n    dec %ebx\n    jnz 1b"
    )
    m = machine(elf, {}, {SRC: b"abc"})
    run(m)
    assert m.mem.ram[DST + 1 : DST + 103] == b"ab" + b"c" * 100  # each copy one byte lower
    assert m.cpu.icount == 2 + 100 * (6 + 3)  # the rep movsb counts its 3 iterations


@pytest.mark.parametrize("where", ["data", "code"])
def test_rep_is_bounded_by_the_budget(asm, tier, where: str) -> None:
    """Each iteration is one instruction of the budget, as QEMU counts them under -icount.

    A slice ends between two iterations (EIP on the rep, ECX/EDI of the
    completed ones) and the next one carries on.  "code": the destination is
    the rep's own code page, whose stores take the element-by-element path
    (the random guest fuzzer's hang: that path ran every iteration in one
    call, unbounded).
    """
    elf = asm("    rep stosb")
    dst = TEXT + 0x800 if where == "code" else DST
    m = machine(elf, {EDI: dst, ECX: 1000, EAX: 0x5A})
    slow = string_ops.STATS["slow_elements"]
    stop = m.run(max_insns=300)
    assert stop.kind == "limit", stop
    assert (m.cpu.icount, m.cpu.eip) == (300, TEXT)
    assert (m.cpu.regs[ECX], m.cpu.regs[EDI]) == (700, dst + 300)
    assert m.mem.ram[dst : dst + 301] == b"\x5a" * 300 + b"\0"
    if where == "code":
        assert string_ops.STATS["slow_elements"] > slow
    run(m)
    assert m.cpu.icount == 1000 + 1  # the iterations and the exit
    assert (m.cpu.regs[ECX], m.cpu.regs[EDI]) == (0, dst + 1000)
    assert m.mem.ram[dst : dst + 1001] == b"\x5a" * 1000 + b"\0"


def test_rep_with_ecx_zero_counts_one(asm, tier) -> None:
    elf = asm("    rep stosb\n    rep movsb")
    m = machine(elf, {EDI: DST, ESI: SRC, ECX: 0})
    run(m)
    assert m.cpu.icount == 3


def test_rep_in_a_tb_ends_it_exactly_at_the_budget(asm, tier) -> None:
    """Instructions after a rep in the same TB (or a tier-2 loop around it) do not overrun the budget."""
    elf = asm(
        "    mov $50, %ebx\n1:\n    mov $0x300000, %edi\n    mov $7, %ecx\n    rep stosb\n    dec %ebx\n    jnz 1b"
    )
    for budget in (1, 5, 17, 100, 333):
        m = machine(elf)
        stop = m.run(max_insns=budget)
        assert stop.kind == "limit" and m.cpu.icount == budget, (budget, stop, m.cpu.icount)
    m = machine(elf)
    run(m)
    assert m.cpu.icount == 1 + 50 * (4 + 7) + 1


# ---- speed ----------------------------------------------------------------------------------
def test_rep_movsd_one_mib_is_fast(asm) -> None:
    elf = asm("    rep movsl")
    m = machine(elf, {ESI: 0x110000, EDI: 0x400000, ECX: (1 << 20) // 4}, {0x110000: bytes(range(251)) * 4178})
    t0 = time.perf_counter()
    run(m)
    dt = time.perf_counter() - t0
    print(f"rep movsd of 1 MiB: {dt * 1000:.1f} ms")
    assert m.mem.ram[0x400000:0x500000] == m.mem.ram[0x110000:0x210000]
