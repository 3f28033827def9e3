"""EFLAGS.TF over a rep string instruction traps after each iteration, as on hardware and QEMU."""

from __future__ import annotations

import shutil

import pytest
from support import build

AT_REP = 3  # #DB traps whose saved EIP is the rep: iterations 1..3 of 4 (tests/support/guests/rep_tf.s)


def test_tf_traps_after_each_rep_iteration(run_guest):
    run = run_guest("rep_tf", 100_000)
    assert run.stop_kind == "exit", run
    assert run.exit_code == (AT_REP << 1) | 1, run


@pytest.mark.skipif(shutil.which("qemu-system-i386") is None, reason="QEMU not installed")
def test_qemu_agrees(build_guest):
    status, _ = build.run_qemu(build_guest("rep_tf"))
    assert status == (AT_REP << 1) | 1
