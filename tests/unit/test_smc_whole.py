"""Self-modifying code that rewrites whole instructions (opcode and operands), run exactly.

The guest (tests/support/guests/smc_whole.s) rewrites a 5-byte slot before
each run of it with one of four instructions (add, sub, inc + nops, a short
jmp), in the running block, in another block, across a page boundary, and
rewrites a function with its own bytes before changing them.  Every form
must give the sums computed here; a stale translation anywhere gives another
sum.  Each run is repeated in both tiers, with long slices and with short
ones (budget-truncated blocks), and the statistics show the fast paths were
taken (a guard that never ran would pass by accident).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support import build

from gdbemu.machine import Machine

N = 200


def expected() -> dict[str, int]:
    same = 0
    for k in range(1, N + 1):
        same += {0: k, 1: -k, 2: 1, 3: 0}[k % 4]
    esi, imm, add = 0, 0x1000, True
    for _ in range(N):
        r = imm if add else -imm
        esi += 2 * r
        add, imm = not add, imm + 1
    return {"N": N, "EXP_SAME": same & 0xFFFFFFFF, "EXP_BYTES": esi & 0xFFFFFFFF}


@pytest.fixture(scope="module")
def elf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        build.toolchain()
    except build.ToolchainMissingError as exc:
        pytest.skip(str(exc))
    return build.build_guest("smc_whole", tmp_path_factory.mktemp("smcw"), defsyms=expected())


def run(elf: Path, tier: int | None, slice_insns: int | None) -> Machine:
    m = Machine(ram_size=32 << 20)
    m.translator.force_tier = tier
    m.load_elf(str(elf))
    for _ in range(200_000 if slice_insns else 1):
        stop = m.run(max_insns=slice_insns or 3_000_000)
        if stop.kind != "limit":
            break
    assert stop.kind == "exit", (stop, m.debug_output.decode(errors="replace"))
    return m


@pytest.mark.parametrize("tier", [None, 1, 2])
@pytest.mark.parametrize("slice_insns", [None, 7, 13])
def test_whole_instruction_rewrites_run_exactly(elf: Path, tier: int | None, slice_insns: int | None) -> None:
    m = run(elf, tier, slice_insns)
    out = m.debug_output.decode()
    assert "not ok" not in out, out
    assert out.count("ok ") == 4, out
    assert m.exit_code == 1


@pytest.mark.parametrize("slices", [[1, 2, 3, 5, 7, 9, 11, 12, 17, 20]])
def test_budget_cut_blocks_never_run_a_stale_slot(elf: Path, slices: list[int]) -> None:
    # A block cut short by the budget is uncached: a store into one of its
    # later instructions must restart it even when the cached block it
    # shortens holds those bytes as a guarded slot (no invalidation there).
    for n in slices:
        m = run(elf, None, n)
        assert "not ok" not in m.debug_output.decode(), n


@pytest.mark.parametrize("source", ["smc_op_loop.s", "smc_call_loop.s"])
def test_alternating_slot_costs_no_invalidation(tmp_path: Path, source: str) -> None:
    # The benchmark loops (add/sub rewritten every iteration, same block and
    # another block): once the slot is guarded, its rewrites invalidate
    # nothing and each form is translated once.
    iters = 2000
    elf = build.build_guest(Path(__file__).parents[2] / "benchmarks" / source, tmp_path, defsyms={"ITERS": iters})
    m = Machine(ram_size=32 << 20)
    m.load_elf(str(elf))
    stop = m.run(max_insns=10_000_000)
    assert stop.kind == "exit" and m.exit_code == 1, m.debug_output.decode(errors="replace")
    s = m.stats()
    assert s["tb_invalidated"] < 20
    assert s["smc_guard_variants"] >= 1
    assert s["smc_guard_misses"] == 0
    # the guarded blocks reached tier 2, with the variants inline
    assert any(tb.guards and tb.tier == 2 for tb in m.tbs.tbs.values())


def test_store_of_the_same_bytes_invalidates_nothing() -> None:
    # mov byte [0x2000], 0xb0 rewrites the first byte of the code at 0x2000
    # with itself; the block there stays valid (and a changing store does not).
    m = Machine(ram_size=1 << 20)
    cpu = m.cpu
    cpu.setup_flat32()
    code = bytes.fromhex("b007e6f4")  # 0x2000: mov al, 7; out 0xf4, al
    m.mem.write(0x2000, code)
    # 0x1000: mov byte [0x2000], 0xb0; mov byte [0x2001], 7; jmp 0x2000
    stub = bytes.fromhex("c60500200000b0c6050120000007e9") + (0x2000 - (0x1000 + 19)).to_bytes(4, "little", signed=True)
    m.mem.write(0x1000, stub)
    cpu.eip = 0x2000
    assert m.run(max_insns=100).kind == "exit" and m.exit_code == 15
    before = m.stats()["tb_invalidated"]
    cpu.eip = 0x1000
    assert m.run(max_insns=100).kind == "exit" and m.exit_code == 15
    assert m.stats()["tb_invalidated"] == before
    m.mem.write(0x1000 + 13, b"\x09")  # the second store now writes 9 over the 7
    cpu.eip = 0x1000
    assert m.run(max_insns=100).kind == "exit" and m.exit_code == 19
    assert m.stats()["tb_invalidated"] > before


def test_qemu_agrees(elf: Path) -> None:
    import shutil

    if shutil.which("qemu-system-i386") is None:
        pytest.skip("qemu-system-i386 not installed")
    status, out = build.run_qemu(elf, timeout=120)
    assert status == 1, out
    assert b"not ok" not in out
