"""Regression test for the stray-write kernel: only owner_update() ever writes obj->count.

A hardware watchpoint on every object's ``count`` stops the guest at each
store that changes it; gdb names the function that made the store.  On the
buggy kernel, ``flush_stats()`` writes the count through a dangling pointer
(the object was freed and reused by another owner), and the test fails
naming it; on the fixed kernel only ``owner_update()`` ever writes.

    pytest examples                        # the buggy kernel: fails, naming flush_stats
    pytest examples --stray-variant=fixed  # passes
"""

from __future__ import annotations

import pytest

ALLOWED_WRITERS = {"owner_update"}


@pytest.mark.gdb
def test_only_owner_update_writes_count(gdbemu, stray_kernel):
    s = gdbemu(stray_kernel)
    nobj = s.read_int("sizeof(pool) / sizeof(pool[0])")
    for i in range(nobj):
        s.watch(f"pool[{i}].count")
    writes = 0
    while not (stop := s.cont()).ended:
        # Fail at the stray store itself, so the report's registers and backtrace show who made it.
        assert stop.function in ALLOWED_WRITERS, f"stray write to obj->count: {stop.describe()}"
        writes += 1
    assert writes, "no write to any obj->count was seen: is the watchpoint right?"
    assert s.exit_code == 1, f"the kernel reported a failure (exit code {s.exit_code})"
