"""Decoding follows a direct jmp/call inside the TB's page (core/translate.py decode_block).

The TB goes on at the target, so the jump costs no TB exit.  What must not
change: instruction counts and EIPs (every budget, both tiers, faults inside
the followed code), SMC (the TB's code is its runs: a store into the gap
invalidates nothing, a store into the followed run does), breakpoints set
later inside the followed code, and the one-page extent of such a TB.
"""

from __future__ import annotations

import pytest

from gdbemu.machine import Machine

NOP = b"\x90"
EXIT7 = b"\xb0\x07\xe6\xf4\xf4"  # mov al, 7; out 0xf4, al; hlt
# 0x1000: nop; nop; jmp 0x1020  |  0x1020: nop; mov al, 7; out; hlt
JMP_PROGRAM = (NOP * 2 + b"\xeb\x1c").ljust(0x20, b"\xcc") + NOP + EXIT7

# 0x1000: mov ecx, 50; L: call f (0x1100); dec ecx; jnz L; mov al, 0; out 0xf4, al; hlt
# 0x1100: f: add eax, ecx; mov [0x3000 + ecx * 4], eax; ret
CALL_PROGRAM = (
    bytes.fromhex("b932000000") + bytes.fromhex("e8f6000000") + bytes.fromhex("4975f8") + bytes.fromhex("b000e6f4f4")
).ljust(0x100, b"\xcc") + bytes.fromhex("01c8" + "89048d00300000" + "c3")


def boot(code: bytes, tier: int | None = None, follow: bool = True) -> Machine:
    m = Machine(ram_size=1 << 20)
    m.translator.force_tier = tier
    m.translator.follow_jumps = follow
    m.mem.write(0x1000, code)
    m.cpu.setup_flat32()
    m.cpu.eip = 0x1000
    m.cpu.regs[4] = 0x9000
    return m


def state(m: Machine) -> tuple[object, ...]:
    return (
        tuple(m.cpu.regs),
        m.cpu.eip,
        m.cpu.get_eflags(),
        m.cpu.icount,
        m.mem.read(0x3000, 0x100),
        m.mem.read(0x8F00, 0x100),
    )


def test_a_direct_jump_is_followed_into_one_tb_with_two_runs():
    m = boot(JMP_PROGRAM)
    assert m.run(max_insns=100).kind == "exit" and m.exit_code == 15
    (tb,) = m.tbs.tbs.values()
    assert tb.pc == 0x1000 and tb.eips[:4] == (0x1000, 0x1001, 0x1002, 0x1020)
    assert tb.ranges[0] == (0x1000, 0x1004) and tb.ranges[1][0] == 0x1020
    assert tb.pages == (0x1000,) and tb.phys_pc == 0x1000


def test_stores_into_the_gap_invalidate_nothing_and_into_the_followed_run_do():
    m = boot(JMP_PROGRAM)
    m.run(max_insns=100)
    (tb,) = m.tbs.tbs.values()
    m.mem.write(0x1010, b"\xcc")  # between the runs
    assert tb.valid
    m.cpu.softmmu.store(1, 0x1022, 1, 0x2A)  # mov al, 0x2a (a store through the softmmu)
    assert not tb.valid
    m.cpu.eip = 0x1000
    assert m.run(max_insns=100).kind == "exit" and m.exit_code == 0x55


def test_a_breakpoint_set_later_in_the_followed_code_stops_there():
    m = boot(JMP_PROGRAM)
    m.run(max_insns=100)
    (tb,) = m.tbs.tbs.values()
    m.breakpoints.add(0x1021)  # mov al, 7: in the followed run
    assert not tb.valid
    m.cpu.eip = 0x1000
    icount = m.cpu.icount
    stop = m.run(max_insns=100)
    assert stop.kind == "debug" and m.cpu.eip == 0x1021 and m.cpu.icount == icount + 4


@pytest.mark.parametrize("tier", [1, 2])
@pytest.mark.parametrize("budget", [1, 2, 3, 7, 50, 149, 10_000])
def test_calls_followed_or_not_give_the_same_state_at_every_budget(tier, budget):
    runs = []
    for follow in (False, True):
        m = boot(CALL_PROGRAM, tier, follow)
        m.run(max_insns=budget)
        runs.append(state(m))
    assert runs[0] == runs[1]
    m = boot(CALL_PROGRAM, tier)
    assert m.run(max_insns=10_000).kind == "exit"
    assert any(len(tb.ranges) == 2 for tb in m.tbs.tbs.values())  # the call was followed


@pytest.mark.parametrize("tier", [1, 2])
def test_a_fault_in_followed_code_reports_its_own_eip(tier):
    code = bytearray(CALL_PROGRAM)
    code[0x100:0x102] = bytes.fromhex("f7f6")  # div esi (esi = 0): #DE at 0x1100, right after the call
    m = boot(bytes(code), tier)
    seen = []

    def deliver(cpu, fault):
        seen.append((cpu.eip, cpu.icount, fault.vector))
        raise SystemExit

    m.exec_ctx.deliver_exception = deliver
    with pytest.raises(SystemExit):
        m.run(max_insns=1000)
    assert seen == [(0x1100, 2, 0)]
    assert m.cpu.regs[4] == 0x9000 - 4  # the call's push happened


def test_a_followed_tb_stays_in_its_page():
    # 0x1FF0: jmp 0x1FF8 ... 0x1FF8: nops running into the next page
    m = Machine(ram_size=1 << 20)
    m.mem.write(0x1FF0, b"\xeb\x06".ljust(8, b"\xcc") + NOP * 0x20 + EXIT7)
    m.cpu.setup_flat32()
    m.cpu.eip = 0x1FF0
    assert m.run(max_insns=1000).kind == "exit"
    assert all(len(tb.pages) == 1 for tb in m.tbs.tbs.values())
    first = next(tb for tb in m.tbs.tbs.values() if tb.pc == 0x1FF0)
    assert first.eips[1] == 0x1FF8 and len(first.ranges) == 2


# 0x1000: mov edx, 5 | again: xor ecx, ecx; jmp L | M: cmp ecx, 50; jae out | L: inc ecx; jmp M
# out: dec edx; jnz again; exit.  The TB at L follows `jmp M`, and its jae's fall-through is L,
# the TB's own start, by slot 1; its taken exit (slot 0) is chained to `out` after a round.
FALL_TO_START = bytes.fromhex("ba05000000" + "31c9eb05" + "83f9327303" + "41ebf8" + "4a75f1" + "b000e6f4f4")


@pytest.mark.parametrize("tier", [1, 2])
@pytest.mark.parametrize("slice_", [5, 7, 11, 50, 1000])
def test_a_fall_through_to_the_tb_start_leaves_by_its_own_slot(tier, slice_):
    """A tier-2 loop that ends on its budget must not leave by the slot of the taken exit."""
    runs = []
    for follow in (False, True):
        m = boot(FALL_TO_START, tier, follow)
        trace = []
        for _ in range(2000):
            stop = m.run(max_insns=slice_)
            trace.append(state(m)[:4])
            if stop.kind != "limit":
                break
        runs.append((stop.kind, trace, m.cpu.regs[1], m.cpu.regs[2]))
    assert runs[0] == runs[1]
    assert runs[1][0] == "exit" and runs[1][2:] == (50, 0)
