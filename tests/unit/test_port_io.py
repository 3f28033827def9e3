"""Port I/O from translated code (core/ops/system.py ``in``/``out``), in both translation tiers.

``in``/``out`` call the port's handler straight from TB code: no register
write-back, the handler looked up at run time in ``PhysMemory.io_rd``/``io_wr``
by (port, size), the IOPL check inline and the TSS bitmap only when it
fails, and an ``out`` that leaves its TB only when the write set
``cpu.interrupt_request``.  Each of these is a cache or a shortcut; the tests
make sure none of them can go stale or change what the guest sees:

* a port remapped while TBs that use it exist (between runs from Python, and
  by the guest itself from inside the very TB that reads the port, as a PCI
  BAR write would) reaches the new device, with no retranslation;
* at ring 3 the IOPL and the I/O permission bitmap are still enforced by a
  TB built and run before (IOPL is not in hflags: the same TB runs under
  IOPL 0 and 3; the bitmap is read when IOPL denies): #GP(0) at the ``in``
  with the state before it;
* a device reading the virtual clock during ``in`` sees the exact count;
* an interrupt raised by an ``out`` is taken right after it (IF=1), or after
  the STI shadow (IF=0), though the TB goes on past the ``out``; a stop
  asked by an ``out`` (isa-debug-exit) runs nothing after it.

Tier 2 is forced by setting the exec loop's threshold to 1.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

import gdbemu.core.exec as core_exec
from gdbemu.core import interrupts
from gdbemu.core.cpu import (
    CPU,
    DESC_A,
    DESC_B,
    DESC_CS,
    DESC_DPL_SHIFT,
    DESC_G,
    DESC_P,
    DESC_R,
    DESC_S,
    DESC_TYPE_SHIFT,
    DESC_W,
    SegmentCache,
)
from gdbemu.core.exceptions import GuestFault
from gdbemu.machine import Machine, Stop

EAX, ECX, EDX, EBX, ESP, EBP, ESI, EDI = range(8)
TEXT = 0x100000
BUF = 0x200000
TSS = 0x80000
RAM = 4 << 20

pytestmark = pytest.mark.skipif(not (shutil.which("as") and shutil.which("ld")), reason="GNU binutils needed")


@pytest.fixture(params=[1, 2], ids=["tier1", "tier2"])
def tier(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    if request.param == 2:
        monkeypatch.setattr(core_exec, "TIER2_THRESHOLD", 1)
    return int(request.param)


@pytest.fixture(scope="module")
def asm(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], tuple[Path, dict[str, int]]]:
    """``asm(body) -> (elf, symbols)``: body at _start (0x100000); its labels' addresses from nm."""
    out = tmp_path_factory.mktemp("ioguests")
    cache: dict[str, tuple[Path, dict[str, int]]] = {}

    def build(body: str) -> tuple[Path, dict[str, int]]:
        if body not in cache:
            n = len(cache)
            src = out / f"g{n}.s"
            src.write_text(f".code32\n.globl _start\n.text\n_start:\n{body}\n")
            subprocess.run(["as", "--32", str(src), "-o", str(out / f"g{n}.o")], check=True, capture_output=True)
            elf = out / f"g{n}.elf"
            subprocess.run(
                ["ld", "-m", "elf_i386", f"-Ttext={TEXT:#x}", str(out / f"g{n}.o"), "-o", str(elf)],
                check=True,
                capture_output=True,
            )
            nm = subprocess.run(["nm", str(elf)], check=True, capture_output=True, text=True).stdout
            syms = {
                parts[2]: int(parts[0], 16) for parts in (line.split() for line in nm.splitlines()) if len(parts) == 3
            }
            cache[body] = (elf, syms)
        return cache[body]

    return build


def machine(elf: Path) -> Machine:
    m = Machine(RAM)
    m.load_elf(str(elf))
    m.cpu.regs[ESP] = 0x90000
    return m


class Reg:
    """A port device that answers ``tag + n`` on the n-th read and logs writes."""

    def __init__(self, tag: int) -> None:
        self.tag = tag
        self.reads = 0
        self.writes: list[tuple[int, int, int]] = []

    def io_read(self, port: int, size: int) -> int:
        self.reads += 1
        return (self.tag + self.reads) & ((1 << (8 * size)) - 1)

    def io_write(self, port: int, size: int, value: int) -> None:
        self.writes.append((port, size, value))


# ---- a stale port handler -------------------------------------------------------------------
REMAP_LOOP = """
    mov $0x300, %dx
loop:
    inb $0x70, %al
    movb %al, (%edi)
    outb %al, $0x71
    inb (%dx), %al
    movb %al, 1(%edi)
    outb %al, (%dx)
    addl $2, %edi
    decl %ecx
    jnz loop
    out %al, $0xf4
"""


def loop_tb(m: Machine, eip: int) -> object:
    (tb,) = [tb for pc, tb in m.cpu.jmp_cache.items() if pc == eip]
    return tb


def test_port_remapped_between_runs_reaches_the_new_device(asm, tier: int) -> None:
    """Built TBs (both tiers, an in-TB loop in tier 2) follow add_port/remove_port without retranslation."""
    elf, syms = asm(REMAP_LOOP)
    m = machine(elf)
    old, new, far = Reg(0x10), Reg(0x40), Reg(0x80)
    m.mem.add_port(0x70, 2, old)
    m.mem.add_port(0x300, 1, far)
    m.cpu.regs[ECX] = 100
    m.cpu.regs[EDI] = BUF
    m.run(max_insns=1 + 9 * 40)  # 40 iterations; the loop's TBs are built (and compiled in tier 2)
    assert old.reads == 40 and far.reads == 40
    tb = loop_tb(m, syms["loop"])
    m.bus.add_port(0x70, 2, new)  # replaces the device of 0x70-0x71
    m.bus.remove_port(0x300, 1)  # unassigned: reads all ones, writes dropped
    stop = m.run(max_insns=10_000)
    assert stop.kind == "exit"
    assert loop_tb(m, syms["loop"]) is tb, "the remap is seen by the TB built before it"
    assert m.stats()["tb_invalidated"] == 0
    assert old.reads == 40 and len(old.writes) == 40 and far.reads == 40 and len(far.writes) == 40
    assert new.reads == 60 and len(new.writes) == 60
    got = bytes(m.mem.ram[BUF : BUF + 200])
    want = b"".join(bytes([0x10 + i, 0x80 + i]) for i in range(1, 41)) + b"".join(
        bytes([0x40 + i, 0xFF]) for i in range(1, 61)
    )
    assert got == want
    assert new.writes[0] == (0x71, 1, 0x41)


class Relocatable:
    """A data register at a port the guest chooses by writing it to port 0x90 (as a PCI BAR write)."""

    def __init__(self, m: Machine, port: int) -> None:
        self.m = m
        self.port = port
        self.reads = 0
        m.mem.add_port(0x90, 1, self)
        m.mem.add_port(port, 1, self)

    def io_read(self, port: int, size: int) -> int:
        if port == 0x90:
            return self.port
        self.reads += 1
        return 0x20 + self.reads

    def io_write(self, port: int, size: int, value: int) -> None:
        if port == 0x90:
            self.m.bus.remove_port(self.port, 1)
            self.port = value & 0xFF
            self.m.bus.add_port(self.port, 1, self)


GUEST_REMAP = """
    movb $0x50, %bl
1:  movb %bl, %al
    outb %al, $0x90         /* the register moves to port BL */
    inb $0x50, %al          /* same TB as the out: the device only while BL = 0x50 */
    movb %al, (%edi)
    inb $0x60, %al          /* the device only while BL = 0x60 */
    movb %al, 1(%edi)
    addl $2, %edi
    xorb $0x30, %bl         /* 0x50 <-> 0x60 */
    decl %ecx
    jnz 1b
    out %al, $0xf4
"""


def test_port_remapped_by_the_guest_inside_the_tb(asm, tier: int) -> None:
    """The guest moves a register back and forth between two ports from inside the TB that reads
    both: each read reaches what is mapped at that moment (the TB goes on past the out)."""
    elf, _ = asm(GUEST_REMAP)
    m = machine(elf)
    dev = Relocatable(m, 0x50)
    m.cpu.regs[ECX] = 10
    m.cpu.regs[EDI] = BUF
    stop = m.run(max_insns=10_000)
    assert stop.kind == "exit"
    got = bytes(m.mem.ram[BUF : BUF + 20])
    want = bytearray()
    for i in range(10):
        want += bytes([0x21 + i, 0xFF]) if i % 2 == 0 else bytes([0xFF, 0x21 + i])
    assert got == bytes(want)
    assert dev.reads == 10


# ---- IOPL and the I/O permission bitmap at ring 3 ---------------------------------------------
RING3_LOOP = """
1:  inb $0x70, %al
u_add1:
    addl %eax, %esi
u_in71:
    inb $0x71, %al
    addl %eax, %edi
    decl %ecx
    jnz 1b
    out %al, $0xf4
"""


def ring3(m: Machine, allowed: set[int]) -> None:
    """CPL 3 (SS.DPL = 3), flat segments, paging off; a TSS whose bitmap allows ``allowed`` (ports < 256)."""
    cpu = m.cpu
    code = DESC_P | DESC_S | DESC_CS | DESC_R | DESC_A | DESC_B | DESC_G | (3 << DESC_DPL_SHIFT)
    data = DESC_P | DESC_S | DESC_W | DESC_A | DESC_B | DESC_G | (3 << DESC_DPL_SHIFT)
    cpu.segs[1] = SegmentCache(0x1B, 0, 0xFFFFFFFF, code)
    for seg in (0, 2, 3, 4, 5):
        cpu.segs[seg] = SegmentCache(0x23, 0, 0xFFFFFFFF, data)
    tss = bytearray(104 + 32 + 1)
    tss[0x66:0x68] = (104).to_bytes(2, "little")
    set_bitmap(tss, allowed)
    m.mem.write(TSS, bytes(tss))
    cpu.tr = SegmentCache(0x28, TSS, 104 + 32, DESC_P | (11 << DESC_TYPE_SHIFT))
    cpu.eflags = 0x2  # IOPL 0
    cpu.compute_hflags()
    assert cpu.cpl == 3


def set_bitmap(tss: bytearray, allowed: set[int]) -> None:
    for i in range(33):
        tss[104 + i] = 0xFF
    for port in allowed:
        tss[104 + port // 8] &= ~(1 << (port % 8)) & 0xFF


def faults(m: Machine) -> list[tuple[int, int | None, int]]:
    """Record each exception (vector, error code, EIP) and stop the run there."""
    seen: list[tuple[int, int | None, int]] = []

    def deliver(cpu: CPU, fault: GuestFault) -> None:
        seen.append((fault.vector, fault.error_code, cpu.eip))
        m.request_stop(Stop("fault"))

    m.exec_ctx.deliver_exception = deliver
    return seen


def restart(m: Machine, start: int, count: int) -> None:
    m.cpu.eip = start
    m.cpu.regs[ECX] = count
    m.cpu.regs[EAX] = 0
    m.cpu.regs[ESI] = 0
    m.cpu.regs[EDI] = 0


def test_iopl_and_bitmap_are_enforced_by_built_tbs(asm, tier: int) -> None:
    elf, syms = asm(RING3_LOOP)
    m = machine(elf)
    dev = Reg(0)
    m.mem.add_port(0x70, 2, dev)
    ring3(m, {0x70, 0xF4})
    seen = faults(m)
    start = syms["_start"]

    # IOPL 0, 0x71 denied by the bitmap: #GP(0) at that in, the add before it done, nothing after.
    restart(m, start, 100)
    m.run(max_insns=10_000)
    assert seen == [(13, 0, syms["u_in71"])]
    assert m.cpu.regs[ESI] == 1 and m.cpu.regs[EDI] == 0 and dev.reads == 1

    # IOPL 3 (not in hflags: the same TBs run): every port; the loop runs out (compiled in tier 2).
    seen.clear()
    m.cpu.eflags |= 0x3000
    restart(m, start, 100)
    assert m.run(max_insns=10_000).kind == "exit"
    assert seen == [] and dev.reads == 201
    built = m.stats()["tb_built"]

    # IOPL 0 again: the same (built, compiled) TB checks the bitmap again.
    m.cpu.eflags &= ~0x3000
    restart(m, start, 100)
    m.run(max_insns=10_000)
    assert seen == [(13, 0, syms["u_in71"])]
    assert m.cpu.regs[ESI] == 202 and m.cpu.regs[EDI] == 0

    # The kernel opens 0x71 in the bitmap (a plain RAM write): now allowed.
    seen.clear()
    m.mem.write(TSS + 104 + 0x71 // 8, bytes([0xFF & ~(1 << (0x71 % 8)) & ~(1 << (0x70 % 8))]))
    restart(m, start, 100)
    assert m.run(max_insns=10_000).kind == "exit"
    assert seen == []

    # ... and closes 0x70: #GP at the first in of the loop.
    m.mem.write(TSS + 104 + 0x70 // 8, bytes([0xFF]))
    restart(m, start, 100)
    m.run(max_insns=10_000)
    assert seen == [(13, 0, start)]
    assert m.cpu.regs[ESI] == 0
    assert m.stats()["tb_built"] == built


def test_ring0_and_real_mode_need_no_permission(asm, tier: int) -> None:
    """CPL 0 ignores IOPL and the bitmap (a TSS with no bitmap at all): no check is emitted."""
    elf, _ = asm(RING3_LOOP)
    m = machine(elf)
    dev = Reg(0)
    m.mem.add_port(0x70, 2, dev)
    m.cpu.tr = SegmentCache(0x28, TSS, 0x67, DESC_P | (11 << DESC_TYPE_SHIFT))
    m.cpu.regs[ECX] = 50
    assert m.run(max_insns=10_000).kind == "exit"
    assert dev.reads == 100


# ---- time seen by a device ------------------------------------------------------------------
class Clock:
    """Port 0x52 reads the instruction count the virtual clock sees now."""

    def __init__(self, m: Machine) -> None:
        self.m = m
        m.mem.add_port(0x52, 1, self)

    def io_read(self, port: int, size: int) -> int:
        return self.m.clock.icount() & ((1 << (8 * size)) - 1)

    def io_write(self, port: int, size: int, value: int) -> None:
        pass


def test_in_sees_the_exact_instruction_count(asm, tier: int) -> None:
    elf, _ = asm(
        """
    mov $3, %ecx
1:  nop
    nop
    inl $0x52, %eax
    movl %eax, (%edi)
    movw $0x52, %dx
    inl (%dx), %eax
    movl %eax, 4(%edi)
    addl $8, %edi
    decl %ecx
    jnz 1b
    out %al, $0xf4
"""
    )
    m = machine(elf)
    Clock(m)
    m.cpu.regs[EDI] = BUF
    assert m.run(max_insns=1000).kind == "exit"
    got = [int.from_bytes(m.mem.ram[BUF + 4 * i : BUF + 4 * i + 4], "little") for i in range(6)]
    # per iteration of 10 instructions: the first in is the 3rd, the second the 6th
    assert got == [3, 6, 13, 16, 23, 26]


# ---- what an out asks of the exec loop --------------------------------------------------------
class Raiser:
    """A byte written to port 0x80 makes an interrupt with that vector pending (until acknowledged)."""

    def __init__(self, m: Machine) -> None:
        self.m = m
        self.vector: int | None = None
        m.mem.add_port(0x80, 2, self)
        m.bus.add_interrupt_source(self)

    def io_read(self, port: int, size: int) -> int:
        return 0xFF

    def io_write(self, port: int, size: int, value: int) -> None:
        if port == 0x81 and value & 0xFF != 5:
            return  # port 0x81: only the value 5 raises (vector 0x45)
        self.vector = value & 0xFF if port == 0x80 else 0x45
        self.m.bus.update_interrupt()

    def has_interrupt(self) -> bool:
        return self.vector is not None

    def acknowledge(self) -> int | None:
        vector, self.vector = self.vector, None
        return vector


def deliveries(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int, int, int, int]]:
    """Record external interrupts (vector, EIP, icount, EBX, ESI) instead of delivering them."""
    seen: list[tuple[int, int, int, int, int]] = []

    def deliver_external(cpu: CPU, vector: int) -> None:
        seen.append((vector, cpu.eip, cpu.icount, cpu.regs[EBX], cpu.regs[ESI]))

    monkeypatch.setattr(interrupts, "deliver_external", deliver_external)
    return seen


def test_interrupt_raised_by_out_lands_right_after_it(asm, tier: int, monkeypatch: pytest.MonkeyPatch) -> None:
    elf, syms = asm(
        """
    nop
    movl $1, %ebx
    movb $0x41, %al
    outb %al, $0x80
after_out:
    movl $2, %ebx
    movl $3, %ecx
    out %al, $0xf4
"""
    )
    m = machine(elf)
    Raiser(m)
    seen = deliveries(monkeypatch)
    m.cpu.set_eflags(0x202)  # IF=1
    assert m.run(max_insns=100).kind == "exit"
    assert seen == [(0x41, syms["after_out"], 4, 1, 0)]


def test_interrupt_raised_by_out_with_if_clear_waits_for_sti(asm, tier: int, monkeypatch: pytest.MonkeyPatch) -> None:
    elf, syms = asm(
        """
    movb $0x42, %al
    outb %al, $0x80
    movl $2, %ebx
    sti
    movl $3, %ebx
lands:
    movl $4, %ebx
    out %al, $0xf4
"""
    )
    m = machine(elf)
    Raiser(m)
    seen = deliveries(monkeypatch)
    assert m.run(max_insns=100).kind == "exit"
    assert seen == [(0x42, syms["lands"], 5, 3, 0)]


def test_interrupt_raised_by_out_in_a_looping_tb(asm, tier: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The out inside a TB that loops on itself (tier 2): the exit after the out counts the
    iterations done inside the TB."""
    elf, syms = asm(
        """
    xorl %ebx, %ebx
loop:
    incl %ebx
    movl %ebx, %eax
    outb %al, $0x81         /* raises on the value 5 only */
lands:
    movl %ebx, %esi
    cmpl $8, %ebx
    jne loop
    out %al, $0xf4
"""
    )
    m = machine(elf)
    Raiser(m)
    seen = deliveries(monkeypatch)
    m.cpu.set_eflags(0x202)
    m.cpu.regs[ESI] = 0
    assert m.run(max_insns=1000).kind == "exit"
    assert seen == [(0x45, syms["lands"], 1 + 4 * 6 + 3, 5, 4)]
    assert m.cpu.icount == 1 + 8 * 6 + 1


def test_exit_port_stops_right_after_the_out(asm, tier: int) -> None:
    elf, syms = asm(
        """
    movl $1, %ebx
    outb %al, $0xf4
after_exit:
    movl $2, %ebx
    outb %al, $0xf4
"""
    )
    m = machine(elf)
    stop = m.run(max_insns=100)
    assert stop.kind == "exit"
    assert (m.cpu.regs[EBX], m.cpu.icount, m.cpu.eip) == (1, 2, syms["after_exit"])


def test_breakpoint_right_after_an_out(asm, tier: int) -> None:
    """out no longer ends its TB: a breakpoint on the next instruction (set after the TB was
    built) still stops there, before it runs."""
    elf, syms = asm(
        """
loop:
    incl %ebx
    outb %al, $0x80
after_out:
    incl %esi
    cmpl $50, %ebx
    jne loop
    out %al, $0xf4
"""
    )
    m = machine(elf)
    m.mem.add_port(0x80, 1, Reg(0))
    m.cpu.regs[EBX] = m.cpu.regs[ESI] = 0
    assert m.run(max_insns=5 * 10).kind == "limit"  # 10 iterations: the loop TB is built and run
    m.breakpoints.add(syms["after_out"])
    stop = m.run(max_insns=1000)
    assert stop.kind == "debug"
    assert (m.cpu.eip, m.cpu.regs[EBX], m.cpu.regs[ESI]) == (syms["after_out"], 11, 10)
