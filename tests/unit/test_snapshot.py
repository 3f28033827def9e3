"""Machine snapshots (debug/snapshot.py): complete state, incremental memory, the file, the devices' state.

The multitask kernel (tests/support/kernels) is the guest: it runs the PIT,
the UART by interrupts, paging with demand-mapped pages and ring 3, so a
snapshot that missed any piece of state would show in its continued serial
output or its RAM.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from support import build

from gdbemu.debug.snapshot import CPU_EXCLUDE, FORMAT_VERSION, SnapshotError, SnapshotStore, capture_cpu, restore_cpu
from gdbemu.hw.pc import PCConfig, build_pc
from gdbemu.machine import Machine
from gdbemu.softmmu.dirty import DIRTY_MEMORY_MIGRATION

RAM = 32 << 20


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        build.toolchain()
    except build.ToolchainMissingError as exc:
        pytest.skip(str(exc))
    return build.build_multitask(tmp_path_factory.mktemp("snapkernel"))


def boot(kernel: Path) -> tuple[Machine, io.BytesIO]:
    buf = io.BytesIO()
    m = Machine(RAM)
    build_pc(m.bus, PCConfig(serial=[buf], no_reboot=True))
    m.load_multiboot(str(kernel))
    return m, buf


def ram_hash(m: Machine) -> str:
    return hashlib.sha256(bytes(m.mem.ram)).hexdigest()


def run_and_capture(m: Machine, buf: io.BytesIO, insns: int) -> tuple[bytes, str, int]:
    pos = len(buf.getvalue())
    m.run(max_insns=insns)
    m.bus.devices["uart"].flush()  # type: ignore[attr-defined]
    return buf.getvalue()[pos:], ram_hash(m), m.cpu.icount


def test_cpu_fields_are_captured_or_excluded() -> None:
    """Every CPU field is in the snapshot or named in CPU_EXCLUDE; no stale exclusions."""
    m = Machine(1 << 20)
    cpu = m.cpu
    state = capture_cpu(cpu)
    fields = set(vars(cpu))
    assert not CPU_EXCLUDE - fields, f"CPU_EXCLUDE names fields the CPU no longer has: {CPU_EXCLUDE - fields}"
    uncovered = fields - set(state) - CPU_EXCLUDE
    assert not uncovered, f"CPU fields neither captured nor excluded: {sorted(uncovered)}"
    # And what is captured survives JSON and comes back in place (generated code binds these lists).
    regs, cr = cpu.regs, cpu.cr
    cpu.regs[3] = 0x1234
    cpu.msr[0x10] = 99
    saved = json.loads(json.dumps(capture_cpu(cpu)))
    cpu.regs[3] = 0
    cpu.msr.clear()
    cpu.cr[0] = 0
    restore_cpu(cpu, saved)
    assert cpu.regs is regs and cpu.cr is cr
    assert capture_cpu(cpu) == saved
    assert cpu.regs[3] == 0x1234 and cpu.msr[0x10] == 99


def test_every_device_round_trips(kernel: Path) -> None:
    """Every device build_pc attaches has save_state/load_state, through JSON, on a running machine."""
    m, _ = boot(kernel)
    m.run(max_insns=400_000)
    assert m.bus.devices, "build_pc attached no device"
    for name, dev in m.bus.devices.items():
        assert hasattr(dev, "save_state") and hasattr(dev, "load_state"), f"device {name} has no snapshot methods"
        state = dev.save_state()
        dev.load_state(json.loads(json.dumps(state)))
        assert dev.save_state() == state, name


def test_clock_timers_rebound_by_index(kernel: Path) -> None:
    m, _ = boot(kernel)
    m.run(max_insns=300_000)
    state = json.loads(json.dumps(m.clock.save_state()))
    assert state["pending"], "the PIT should have a timer armed"
    armed = [(t.deadline, i) for i, t in enumerate(m.clock.timers) if t.pending]
    for t in m.clock.timers:
        t.cancel()
    m.clock.load_state(state)
    assert [(t.deadline, i) for i, t in enumerate(m.clock.timers) if t.pending] == armed
    assert m.clock.next_deadline() == min(d for d, _ in armed if d is not None)


def test_savevm_loadvm_identical_continuation(kernel: Path, tmp_path: Path) -> None:
    """loadvm, run N instructions: the same serial bytes, RAM hash and icount as the first time."""
    m, buf = boot(kernel)
    store = SnapshotStore(m, str(tmp_path / "vm.snapshots"))
    m.run(max_insns=300_000)
    first = store.take("early")
    assert len(first.pages) + len(first.zero) == m.mem.n_pages  # the first snapshot holds every page
    out1, hash1, icount1 = run_and_capture(m, buf, 1_500_000)
    assert out1, "the kernel printed nothing in the window: the test would prove little"
    second = store.take("late")
    # Incremental: only the pages written since "early".
    assert 0 < len(second.pages) + len(second.zero) < m.mem.n_pages // 4
    store.load("early")
    assert m.cpu.icount == first.icount
    out2, hash2, icount2 = run_and_capture(m, buf, 1_500_000)
    assert (out2, hash2, icount2) == (out1, hash1, icount1)
    # Loading the later one lands on its exact state.
    store.load("late")
    assert ram_hash(m) == hash1 and m.cpu.icount == icount1
    store.save()

    # A fresh machine reads the file (as -loadvm does) and continues identically.
    m2, buf2 = boot(kernel)
    store2 = SnapshotStore(m2, str(tmp_path / "vm.snapshots"))
    assert "early" in store2.info() and "late" in store2.info()
    store2.load("early")
    out3, hash3, icount3 = run_and_capture(m2, buf2, 1_500_000)
    assert (out3, hash3, icount3) == (out1, hash1, icount1)


def test_writes_after_a_snapshot_are_seen(kernel: Path) -> None:
    """TLB_NOTDIRTY re-arms when the MIGRATION bits are cleared: the next store to a hot page is logged."""
    m, _ = boot(kernel)
    store = SnapshotStore(m)
    m.run(max_insns=500_000)  # the kernel's stack and data pages are in the TLB as fast write entries now
    store.take("a")
    before = m.mem.np.copy()
    m.run(max_insns=1_300_000)
    changed = set(np.flatnonzero((m.mem.np != before).reshape(-1, 4096).any(axis=1)).tolist())
    assert changed, "the kernel wrote nothing: the test would prove nothing"
    dirty = set(np.flatnonzero(m.dirty.bitmaps[DIRTY_MEMORY_MIGRATION]).tolist())
    assert changed <= dirty, f"pages written but not logged: {sorted(changed - dirty)[:10]}"
    # The debugger's writes (no TLB) are seen too.
    store.take("b")
    m.mem.write(0x300000, b"\x5a" * 16)
    assert m.dirty.get_dirty(DIRTY_MEMORY_MIGRATION, 0x300000 >> 12)
    store.load("b")
    assert m.mem.read(0x300000, 16) != b"\x5a" * 16


def test_delvm_keeps_later_snapshots_whole(kernel: Path) -> None:
    m, buf = boot(kernel)
    store = SnapshotStore(m)
    m.run(max_insns=300_000)
    store.take("a")
    m.run(max_insns=500_000)
    store.take("b")
    want = ram_hash(m)
    m.run(max_insns=500_000)
    store.delete("a")
    assert store.find("a") is None
    store.load("b")
    assert ram_hash(m) == want
    with pytest.raises(SnapshotError, match="does not exist"):
        store.load("a")


def test_file_of_another_version_or_machine_is_refused(kernel: Path, tmp_path: Path) -> None:
    m, _ = boot(kernel)
    path = tmp_path / "vm.snapshots"
    store = SnapshotStore(m, str(path))
    store.take("a")
    store.save()
    # Another machine configuration: 64 MiB instead of 32.
    other = Machine(64 << 20)
    build_pc(other.bus, PCConfig(serial=[io.BytesIO()], no_reboot=True))
    with pytest.raises(SnapshotError, match="another machine configuration.*ram_size"):
        SnapshotStore(other, str(path))
    # Another format version.
    npz = dict(np.load(path))
    meta = json.loads(bytes(npz["meta"]).decode())
    meta["version"] = FORMAT_VERSION + 1
    npz["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **npz)
    with pytest.raises(SnapshotError, match=f"version {FORMAT_VERSION + 1}"):
        SnapshotStore(boot(kernel)[0], str(path))
    path.write_bytes(b"not a snapshot")
    with pytest.raises(SnapshotError, match="not a gdbemu snapshot file"):
        SnapshotStore(boot(kernel)[0], str(path))


def test_cli_loadvm_errors_name_the_problem(kernel: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``gdbemu -loadvm NAME``: a missing snapshot or a foreign file is a one-line error, status 2."""
    from gdbemu.cli.run import main

    path = tmp_path / "vm.snapshots"
    assert main([str(kernel), "-snapshot-file", str(path), "-loadvm", "nope", "-serial", "null"]) == 2
    assert "snapshot 'nope' does not exist" in capsys.readouterr().err
    path.write_bytes(b"junk")
    assert main([str(kernel), "-snapshot-file", str(path), "-loadvm", "x", "-serial", "null"]) == 2
    assert "not a gdbemu snapshot file" in capsys.readouterr().err
    # A good file: the run starts from the snapshot and goes on to the kernel's end.
    m, _ = boot(kernel)
    store = SnapshotStore(m, str(path.with_suffix(".good")))
    m.run(max_insns=1_000_000)
    store.take("mid")
    store.save()
    status = main(
        [str(kernel), "-m", "32", "-snapshot-file", str(path.with_suffix(".good")), "-loadvm", "mid", "-serial", "null"]
    )
    assert status == 1  # the multitask kernel's verdict through isa-debug-exit: all checks passed (QEMU's 1)
