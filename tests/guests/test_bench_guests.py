"""The benchmark workloads (benchmarks/*.s) compute the right thing.

benchmarks/run.py only times these guests; this checks, with small
iteration counts, that each one runs to its end on the core and that its
own result check passes, so a benchmark figure is never the speed of a
guest that went wrong. Marked ``bench`` with the benchmarks: not run by
default, and no timing is asserted.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from support import build

ROOT = Path(__file__).resolve().parents[2]


def _load_bench_run():
    """Import benchmarks/run.py under a unique name (benchmarks/ is not a package,
    and a bare ``import run`` could pick up any module called run)."""
    spec = importlib.util.spec_from_file_location("gdbemu_bench_run", ROOT / "benchmarks" / "run.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


bench_run = _load_bench_run()

pytestmark = pytest.mark.bench

SMALL_ITERS = {"reg-loop": 1000, "mem-loop": 3, "smc-loop": 300}


@pytest.mark.parametrize("workload", bench_run.WORKLOADS, ids=lambda w: w.name)
def test_benchmark_guest_completes_on_core(workload: bench_run.Workload, tmp_path: Path) -> None:
    """Runs to isa-debug-exit with status 0 and the guest's result check passing."""
    machine_mod = pytest.importorskip("gdbemu.machine", reason="the gdbemu core is not there yet")
    try:
        build.toolchain()
    except build.ToolchainMissingError as exc:
        pytest.skip(str(exc))
    iters = SMALL_ITERS[workload.name]
    elf = bench_run.build(workload, tmp_path, iters)
    m = machine_mod.Machine(ram_size=32 << 20)
    m.load_elf(str(elf))
    stop = m.run(max_insns=iters * workload.insns_per_iter + 1_000_000)
    out = bytes(m.debug_output).decode("latin-1")
    assert stop.kind == "exit", (stop, out)
    assert m.exit_code == 1, out
    assert out.splitlines()[0].startswith("ok 1 "), out
