"""The exec loop: exact instruction counts, budgets inside looping TBs, determinism, tiers.

Virtual time will be derived from the instruction count, so a run stopped
after N instructions must be in exactly the state N single steps reach,
whatever the TB shapes (tier 1, tier 2 looping inside the function, TBs
truncated at the budget).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess

import pytest

from gdbemu.machine import Machine

pytestmark = pytest.mark.skipif(shutil.which("as") is None, reason="GNU binutils not installed")

PROGRAM = r"""
.code32
.globl _start
_start:
    mov     $0x90000, %esp
    mov     $3000, %ecx
    xor     %eax, %eax
    mov     $data, %edi
1:  add     %ecx, %eax              # a loop the hot tier runs inside one function
    mov     %eax, (%edi)
    add     (%edi), %eax
    rol     $3, %eax
    dec     %ecx
    jnz     1b
    mov     $200, %ecx
2:  push    %ecx                    # calls, the stack and flags across TBs
    call    f
    pop     %ecx
    loop    2b
    mov     %eax, %ebx
    mov     $0, %al
    out     %al, $0xf4
f:  imul    $7, %eax, %edx
    xor     %edx, %eax
    cmp     $0x1000, %eax
    jb      3f
    sub     $0x800, %eax
3:  ret
.data
data: .long 0
"""


@pytest.fixture(scope="module")
def program(tmp_path_factory) -> str:
    d = tmp_path_factory.mktemp("exec")
    (d / "p.s").write_text(PROGRAM)
    subprocess.run(["as", "--32", str(d / "p.s"), "-o", str(d / "p.o")], check=True)
    subprocess.run(["ld", "-m", "elf_i386", "-Ttext=0x100000", str(d / "p.o"), "-o", str(d / "p.elf")], check=True)
    return str(d / "p.elf")


def state(m: Machine) -> tuple:
    cpu = m.cpu
    return (tuple(cpu.regs), cpu.eip, cpu.get_eflags(), cpu.icount)


def ram_hash(m: Machine) -> str:
    return hashlib.sha256(m.mem.ram).hexdigest()


def test_runs_to_completion_identically_in_both_tiers(program):
    results = []
    for tier in (None, 1, 2):
        m = Machine(ram_size=8 << 20)
        m.translator.force_tier = tier
        m.load_elf(program)
        stop = m.run(max_insns=10**6)
        assert stop.kind == "exit"
        results.append((state(m), ram_hash(m)))
    assert results[0] == results[1] == results[2]


@pytest.mark.parametrize("budget", [1, 7, 64, 1000, 5003, 12345, 18001])
def test_stopping_after_n_instructions_is_exact(program, budget):
    """A run of N instructions lands where N single steps land (in-TB loops honour the budget)."""
    m = Machine(ram_size=8 << 20)
    m.load_elf(program)
    # warm the hot tier up first so looping TBs are compiled, then stop mid-loop
    m.run(max_insns=budget)
    assert m.cpu.icount == budget
    ref = Machine(ram_size=8 << 20)
    ref.load_elf(program)
    for _ in range(budget):
        ref.run(max_insns=1)
    assert state(m) == state(ref)
    assert ram_hash(m) == ram_hash(ref)


def test_deterministic_across_runs(program):
    """The same guest twice: the same instruction count and the same RAM, byte for byte."""
    outs = []
    for _ in range(2):
        m = Machine(ram_size=8 << 20)
        m.load_elf(program)
        m.run(max_insns=10**6)
        outs.append((m.cpu.icount, ram_hash(m), m.exit_code))
    assert outs[0] == outs[1]


def test_hot_code_is_compiled(program):
    m = Machine(ram_size=8 << 20)
    m.load_elf(program)
    m.run(max_insns=10**6)
    stats = m.stats()
    assert stats["tier2_built"] >= 1  # the loop got hot
    assert stats["tier1_built"] >= stats["tier2_built"]


# ---- named hook points (core/trace.py), stop kinds (core/stop.py) ------------------------------


def test_trace_hooks_see_every_tb_built_and_run(program):
    """tb_built after each translation, tb_exec before each TB runs (chained ones included)."""
    from gdbemu.core.trace import TraceHooks

    built: list = []
    ran: list = []
    trace = TraceHooks(tb_built=lambda cpu, tb: built.append(tb), tb_exec=lambda cpu, tb: ran.append(tb))
    m = Machine(ram_size=8 << 20, trace=trace)
    m.translator.force_tier = 1  # no TB loops inside itself: each block entry is a TB run
    m.load_elf(program)
    stop = m.run(max_insns=10**6)
    assert stop.kind == "exit"
    assert built and m.tbs.stats["tb_built"] <= len(built)
    assert set(map(id, ran)) <= set(map(id, built))
    assert sum(tb.n_insns for tb in ran) >= m.cpu.icount  # every retired instruction came from a TB seen
    # The same run without hooks: identical state (the hooks are observers).
    plain = Machine(ram_size=8 << 20)
    plain.translator.force_tier = 1
    plain.load_elf(program)
    plain.run(max_insns=10**6)
    assert state(plain) == state(m)


def test_trace_hooks_for_interrupts_and_tlb_fills():
    """interrupt before an event is delivered; tlb_fill after each fill, with the paddr (or the fault)."""
    from gdbemu.core.exceptions import GuestFault
    from gdbemu.core.trace import TraceHooks
    from gdbemu.softmmu.tlb import ACCESS_READ, MMU_KNOSMAP_IDX

    m = Machine(ram_size=1 << 20)
    events: list = []
    fills: list = []
    m.trace.interrupt = lambda cpu, vector, soft, err, next_eip: events.append((vector, soft, err, next_eip))
    m.trace.tlb_fill = lambda cpu, vaddr, access, idx, paddr, fault: fills.append((vaddr, access, idx, paddr, fault))
    assert isinstance(m.trace, TraceHooks)
    cpu = m.cpu
    cpu.setup_flat32()
    assert cpu.softmmu.load(MMU_KNOSMAP_IDX, 0x4321, 4) == 0
    assert fills == [(0x4321, ACCESS_READ, MMU_KNOSMAP_IDX, 0x4321, None)]
    # paging on with an empty page directory: the walk's #PF reaches the hook, then the caller
    cpu.cr[3] = 0x10000
    cpu.cr[0] |= 0x80000000
    cpu.compute_hflags()
    cpu.tlb.flush()
    with pytest.raises(GuestFault) as exc:
        cpu.softmmu.load(MMU_KNOSMAP_IDX, 0x5000, 4)
    assert fills[-1][:4] == (0x5000, ACCESS_READ, MMU_KNOSMAP_IDX, None) and fills[-1][4] is exc.value
    m.deliver_exception(cpu, exc.value)  # no IDT: #PF -> #DF -> triple fault, each seen by the hook
    assert [e[0] for e in events][:1] == [14]
    assert m.stop_reason is not None and m.stop_reason.kind == "triple_fault"


def test_stop_kinds_are_one_enum_and_compare_as_strings():
    from gdbemu.core.stop import RunStop, StopKind
    from gdbemu.machine import Stop

    assert Stop is RunStop
    stop = RunStop("exit", "isa-debug-exit 0x0")
    assert stop.kind is StopKind.EXIT and stop.kind == "exit"
    assert {k.value for k in StopKind} >= {"exit", "halt", "idle", "limit", "triple_fault", "debug", "reset", "step"}


def test_clock_pacer_runs_before_a_halt_skip():
    """sleep=on's hook: the pacer sees the deadline first; True means it moved the clock itself."""
    from gdbemu.clock import VirtualClock

    clock = VirtualClock(lambda: 0, 3)
    seen: list[int] = []

    def pacer(deadline: int) -> bool:
        seen.append(deadline)
        if deadline == 5000:
            clock.advance_to(1000)  # input arrived early: stop there
            return True
        return False

    clock.set_pacer(pacer)
    clock.skip_to(5000)
    assert seen == [5000] and clock.now() == 1000
    clock.skip_to(2000)
    assert seen == [5000, 2000] and clock.now() == 2000
    clock.set_pacer(None)
    clock.skip_to(3000)
    assert seen == [5000, 2000] and clock.now() == 3000
    clock.advance_to(100)  # never backwards
    assert clock.now() == 3000


# ---- chaining across pages (core/exec.py): links die with the mapping --------------------------

REMAP = r"""
.code32
.globl _start
_start:
    mov     $0x90000, %esp
    mov     $0x201000, %edi         # identity-map the first 4 MiB with 4 KiB pages
    mov     $0x003, %eax
    mov     $1024, %ecx
1:  mov     %eax, (%edi)
    add     $0x1000, %eax
    add     $4, %edi
    loop    1b
    movl    $0x201003, 0x200000
    movl    $0x202003, 0x200000 + 256 * 4
    movl    $0x300003, 0x202000     # V = 0x40000000 -> frame A (mov $1, %ebx; ret)
    mov     $0x200000, %eax
    mov     %eax, %cr3
    mov     %cr0, %eax
    or      $0x80000000, %eax
    mov     %eax, %cr0
    xor     %esi, %esi
    mov     $300, %ecx
2:  call    callv
    add     %ebx, %esi
    loop    2b
    movl    $0x301003, 0x202000     # V -> frame B (mov $2, %ebx; ret), then invlpg
    invlpg  0x40000000
    mov     $300, %ecx
3:  call    callv
    add     %ebx, %esi
    loop    3b
    movl    $0x300003, 0x202000     # V -> frame A again, by a CR3 reload
    mov     %cr3, %eax
    mov     %eax, %cr3
    mov     $300, %ecx
4:  call    callv
    add     %ebx, %esi
    loop    4b
    mov     $0, %al
    out     %al, $0xf4
callv:
    call    0x40000000              # one call site, a direct call to another page: chained
    ret
"""


@pytest.fixture(scope="module")
def remap_program(tmp_path_factory) -> str:
    d = tmp_path_factory.mktemp("remap")
    (d / "p.s").write_text(REMAP)
    subprocess.run(["as", "--32", str(d / "p.s"), "-o", str(d / "p.o")], check=True)
    subprocess.run(["ld", "-m", "elf_i386", "-Ttext=0x100000", str(d / "p.o"), "-o", str(d / "p.elf")], check=True)
    return str(d / "p.elf")


@pytest.mark.parametrize("tier", [None, 1, 2])
def test_cross_page_chain_follows_a_remapped_page(remap_program, tier):
    """A direct call chained to a TB on another page stops using it once the page is remapped.

    The call site stays hot across the remaps, so a link that outlived the
    TLB flush (invlpg, then a CR3 reload) would run frame A's code in the
    second phase: ESI would not be 300 * (1 + 2 + 1).
    """
    m = Machine(ram_size=8 << 20)
    m.translator.force_tier = tier
    m.load_elf(remap_program)
    m.mem.write(0x300000, bytes.fromhex("bb01000000c3"))  # mov $1, %ebx; ret
    m.mem.write(0x301000, bytes.fromhex("bb02000000c3"))  # mov $2, %ebx; ret
    stop = m.run(max_insns=10**6)
    assert stop.kind == "exit"
    assert m.cpu.regs[6] == 1200
    if tier != 1:
        assert m.stats()["tier2_built"] >= 2  # the call site and the callee ran compiled


def test_cross_page_links_are_made_and_dropped_at_a_tlb_flush(remap_program):
    m = Machine(ram_size=8 << 20)
    m.load_elf(remap_program)
    m.mem.write(0x300000, bytes.fromhex("bb01000000c3"))
    m.mem.write(0x301000, bytes.fromhex("bb02000000c3"))
    m.run(max_insns=5000)  # in the first loop: the call is linked to the callee on page V
    links = list(m.cpu.xlinks)
    assert any(tb.jmp[slot] is not None and tb.jmp[slot].pc == 0x40000000 for tb, slot in links)
    m.cpu.tlb.flush()
    assert not m.cpu.xlinks and all(tb.jmp[slot] is None for tb, slot in links)
