"""Random-code guest fuzzer (issue 14): kernels of random bytes never make the emulator raise.

Each case is a kernel in the multiboot entry state (32-bit flat protected
mode, paging off, EAX=0x2BADB002, loaded at 1 MiB as a multiboot loader
leaves it): a short prologue of real code, then 4 KiB of random bytes.  With
an IDT the prologue loads a GDT (flat code 0x08, data 0x10), a stack and an
IDT whose 256 interrupt gates point into the random bytes, so exceptions are
delivered and the random code goes on; without one the first exception is a
triple fault.  Each guest runs to a bounded instruction count; the run must
end in an architectural state (a ``StopKind``), never a Python exception,
and must end: a handler that faults at once would make the CPU deliver
exceptions forever with nothing retiring (the fuzzer found it hanging the
run); a budgeted run now ends such a slice with a "limit" stop naming the
exception storm (core/exec.cpu_exec).

The default suite runs 300 guests (``GDBEMU_FUZZ_GUESTS``); ``-m slow`` runs
10,000 (``GDBEMU_FUZZ_GUESTS_SLOW``) in ten shards that ``-n`` workers share,
and prints the rate and the stop kinds seen.

Each guest runs under a watchdog (any overrun fails).  It caught a rep
string instruction whose pages could not be handled in bulk (a page holding
translated code, a watched or MMIO page) running all its ~2**32 iterations
in one call; each rep iteration now counts as one instruction of the budget,
as QEMU counts them (core/ops/string.py), so such a rep ends with the slice.
"""

from __future__ import annotations

import collections
import os
import random
import signal
import struct
import time
import traceback

import pytest

from gdbemu.core.stop import StopKind
from gdbemu.machine import Machine

BASE = 0x100000  # where the multiboot loader put the kernel
GDT = 0x8000
IDT = 0x9000
RANDOM = BASE + 0x1000
RANDOM_SIZE = 0x1000
STACK = 0x180000
RAM = 2 << 20
INSNS = 2000
CASES = int(os.environ.get("GDBEMU_FUZZ_GUESTS", "300"))
SLOW_CASES = int(os.environ.get("GDBEMU_FUZZ_GUESTS_SLOW", "10000"))
SLOW_SHARDS = 10
WATCHDOG_S = 6  # a guest of INSNS instructions takes well under a second


class _WatchdogError(Exception):
    """Raised by SIGALRM inside a guest that overruns WATCHDOG_S."""


def _alarm(signum: int, frame: object) -> None:
    raise _WatchdogError()


def run_watched(seed: int, with_idt: bool) -> StopKind:
    """run_guest under the watchdog: its stop kind; an overrun fails with where it was."""
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(WATCHDOG_S)
    try:
        return run_guest(seed, with_idt)
    except _WatchdogError as exc:
        frames = [(f.name, f.filename) for f in traceback.extract_tb(exc.__traceback__)]
        raise AssertionError(f"guest {seed} (idt={with_idt}) overran {WATCHDOG_S} s: {frames[-3:]}") from exc
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def prologue(with_idt: bool) -> bytes:
    """lgdt; ljmp 0x08; data segments 0x10; esp; lidt (with_idt); jmp to the random bytes."""
    code = bytearray()
    if with_idt:
        code += b"\x0f\x01\x15" + struct.pack("<I", GDT)  # lgdt [GDT] (the GDTR image is at GDT)
        here = BASE + len(code) + 7
        code += b"\xea" + struct.pack("<IH", here, 0x08)  # ljmp 0x08:here
        code += b"\x66\xb8\x10\x00"  # mov ax, 0x10
        for sreg in (0xD8, 0xC0, 0xD0, 0xE0, 0xE8):  # mov ds/es/ss/fs/gs, ax
            code += bytes([0x8E, sreg])
        code += b"\xbc" + struct.pack("<I", STACK)  # mov esp, STACK
        code += b"\x0f\x01\x1d" + struct.pack("<I", IDT)  # lidt [IDT]
    target = RANDOM - (BASE + len(code) + 5)
    code += b"\xe9" + struct.pack("<i", target)  # jmp RANDOM
    return bytes(code)


def tables(rng: random.Random) -> tuple[bytes, bytes]:
    """(GDT image with its GDTR at the start, IDT image with its IDTR at the start)."""
    gdt_base = GDT + 8
    descriptors = [0, 0x00CF9A000000FFFF, 0x00CF92000000FFFF]  # null, flat code, flat data
    gdt = struct.pack("<HI", 8 * len(descriptors) - 1, gdt_base).ljust(8, b"\0")
    gdt += b"".join(struct.pack("<Q", d) for d in descriptors)
    idt_base = IDT + 8
    idt = struct.pack("<HI", 256 * 8 - 1, idt_base).ljust(8, b"\0")
    for _ in range(256):
        handler = RANDOM + rng.randrange(RANDOM_SIZE)
        idt += struct.pack("<HHBBH", handler & 0xFFFF, 0x08, 0, 0x8E, handler >> 16)
    return gdt, idt


def run_guest(seed: int, with_idt: bool, insns: int = INSNS) -> StopKind:
    rng = random.Random(seed)
    machine = Machine(ram_size=RAM)
    code = prologue(with_idt)
    machine.mem.write(BASE, code)
    machine.mem.write(RANDOM, rng.randbytes(RANDOM_SIZE))
    if with_idt:
        gdt, idt = tables(rng)
        machine.mem.write(GDT, gdt)
        machine.mem.write(IDT, idt)
    cpu = machine.cpu
    cpu.setup_flat32()
    cpu.eip = BASE
    cpu.regs[0] = 0x2BADB002
    cpu.regs[3] = 0x9500  # EBX: a multiboot info pointer (not read by random code, usually)
    left = insns
    stop = machine.run(max_insns=left)
    # A debug-port exit or a halt ends a guest; "limit" is the budget. Nothing else may come out.
    assert isinstance(stop.kind, StopKind), stop
    assert stop.kind in (
        StopKind.LIMIT,
        StopKind.HALT,
        StopKind.IDLE,
        StopKind.EXIT,
        StopKind.TRIPLE_FAULT,
        StopKind.RESET,
    ), stop
    assert cpu.icount <= insns
    return stop.kind


@pytest.mark.parametrize("with_idt", [False, True], ids=["no-idt", "idt"])
def test_random_guests(with_idt):
    kinds: collections.Counter[str] = collections.Counter()
    for seed in range(CASES // 2):
        kinds[run_watched(seed * 2 + with_idt, with_idt)] += 1
    assert sum(kinds.values()) == CASES // 2
    if with_idt:
        assert kinds[StopKind.LIMIT] > 0, kinds  # exceptions are delivered and the code runs on


def test_rep_over_a_code_page_is_bounded_by_the_budget():
    """Seed 15 (with an IDT) reaches a rep stos with ECX near 2**32 over a page holding code (it hung)."""
    assert run_watched(15, True) == StopKind.LIMIT


def test_exception_storm_ends_a_budgeted_run():
    """Every gate points at a ud2: #UD forever, nothing retires; run(max_insns) still returns."""
    machine = Machine(ram_size=RAM)
    machine.mem.write(BASE, prologue(True))
    machine.mem.write(RANDOM, b"\x0f\x0b" * (RANDOM_SIZE // 2))
    gdt, idt = tables(random.Random(2))
    machine.mem.write(GDT, gdt)
    machine.mem.write(IDT, idt[:8] + struct.pack("<HHBBH", RANDOM & 0xFFFF, 0x08, 0, 0x8E, RANDOM >> 16) * 256)
    machine.cpu.setup_flat32()
    machine.cpu.eip = BASE
    stop = machine.run(max_insns=500)
    assert stop.kind == StopKind.LIMIT and "storm" in stop.detail, stop
    assert machine.cpu.eip == RANDOM
    stop = machine.run(max_insns=500)  # and on again: the same storm, still bounded
    assert stop.kind == StopKind.LIMIT, stop


def test_prologue_reaches_the_random_bytes_with_its_tables():
    """The IDT case really installs its tables: a ud2 first is delivered through gate 6."""
    rng = random.Random(1)
    machine = Machine(ram_size=RAM)
    machine.mem.write(BASE, prologue(True))
    machine.mem.write(RANDOM, b"\x0f\x0b" + b"\xf4" * (RANDOM_SIZE - 2))  # ud2, then hlt everywhere
    gdt, idt = tables(rng)
    machine.mem.write(GDT, gdt)
    machine.mem.write(IDT, idt)
    machine.cpu.setup_flat32()
    machine.cpu.eip = BASE
    stop = machine.run(max_insns=100)
    assert stop.kind == StopKind.HALT, stop  # through gate 6 to a hlt (IF=0 in an interrupt gate)
    assert int.from_bytes(machine.mem.read(STACK - 12, 4), "little") == RANDOM  # the #UD frame's EIP


def test_guest_1002719_call_across_the_4gib_wrap():
    """The slow run's second finding: a ``call [eax]`` at EIP 0xFFFFFFFF pushed 0x100000001."""
    assert run_watched(1_002_719, True) in (StopKind.LIMIT, StopKind.HALT, StopKind.TRIPLE_FAULT)


def _run_code(code: bytes, at: int = BASE, insns: int = 10) -> Machine:
    machine = Machine(ram_size=RAM)
    machine.mem.write(at, code)
    machine.cpu.setup_flat32()
    machine.cpu.eip = at
    machine.cpu.regs[4] = STACK
    machine.run(max_insns=insns)
    return machine


def test_call_across_the_4gib_wrap_pushes_a_32_bit_return_address():
    """EIP wraps at 4 GiB: ``ff 10`` (call [eax]) at 0xFFFFFFFF returns to 0x00000001.

    The first byte is unassigned memory (reads 0xFF), the second is at address 0.
    A push first makes the stack page's TLB entry hot, so the store takes the
    fast path (which requires an in-range value).
    """
    target = BASE + 0x100
    code = b"\x50" + b"\xb8" + struct.pack("<I", BASE + 0x80) + b"\xbb\xff\xff\xff\xff\xff\xe3"
    # push eax; mov eax, BASE+0x80; mov ebx, 0xFFFFFFFF; jmp ebx
    machine = Machine(ram_size=RAM)
    machine.mem.write(BASE, code)
    machine.mem.write(BASE + 0x80, struct.pack("<I", target))
    machine.mem.write(target, b"\xf4")
    machine.mem.write(0, b"\x10")
    machine.cpu.setup_flat32()
    machine.cpu.eip = BASE
    machine.cpu.regs[4] = STACK
    stop = machine.run(max_insns=10)
    assert stop.kind == StopKind.HALT, stop
    assert machine.cpu.eip == target + 1
    assert machine.cpu.regs[4] == STACK - 8
    assert int.from_bytes(machine.mem.read(STACK - 8, 4), "little") == 1


def test_call_rel16_in_32_bit_code_pushes_ip():
    """``66 e8 rel16`` pushes the 16-bit IP and clears EIP's upper half (SDM CALL), on the fast path too."""
    machine = _run_code(b"\x50\x66\xe8\x00\x00", insns=2)  # push eax; call rel16 +0
    assert machine.cpu.eip == (BASE + 5) & 0xFFFF
    assert machine.cpu.regs[4] == STACK - 6
    assert int.from_bytes(machine.mem.read(STACK - 6, 2), "little") == (BASE + 5) & 0xFFFF


@pytest.mark.slow
@pytest.mark.parametrize("shard", range(SLOW_SHARDS))
def test_random_guests_slow(shard: int) -> None:
    """SLOW_CASES guests in SLOW_SHARDS shards, so ``-n`` workers share them."""
    kinds: collections.Counter[str] = collections.Counter()
    t0 = time.perf_counter()
    seeds = range(shard, SLOW_CASES, SLOW_SHARDS)
    for seed in seeds:
        kinds[run_watched(1_000_000 + seed, bool(seed & 1))] += 1
    elapsed = time.perf_counter() - t0
    assert sum(kinds.values()) == len(seeds)
    print(
        f"\nshard {shard}: {len(seeds)} of {SLOW_CASES} random guests ({INSNS} instructions max each) "
        f"in {elapsed:.1f} s ({len(seeds) / elapsed:.0f} guests/s): {dict(kinds)}"
    )
