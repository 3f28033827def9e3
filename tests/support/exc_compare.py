"""Comparing a guest's transcript on gdbemu with the same ELF's on QEMU, allowing recorded differences.

Used by tests/guests/test_exceptions.py and tests/guests/test_task_sysenter.py for the
tests/support/guests/exc_*.s programs.  QEMU (qemu-system-i386, TCG) is the
behavioural reference; where it departs from the Intel SDM, gdbemu follows
the SDM and the check is listed, with the SDM passage that decides it, in the
test module's ``QEMU_DIFFERENCES``.  A listed check must still differ (gdbemu
"ok", QEMU "not ok"), so the list cannot go stale silently; every other line
must be byte-identical.
"""

from __future__ import annotations

import re

_CHECK = re.compile(r"^(?:not )?ok (\d+) (\S+)")


def check_name(line: str) -> str | None:
    """The check name of an "ok N name" / "not ok N name # ..." line, else None."""
    m = _CHECK.match(line)
    return m.group(2) if m else None


def compare(gdbemu: str, qemu: str, differences: dict[str, str]) -> list[str]:
    """Problems found comparing two transcripts line by line; empty when they agree as recorded."""
    glines, qlines = gdbemu.splitlines(), qemu.splitlines()
    problems = []
    if len(glines) != len(qlines):
        problems.append(f"{len(glines)} lines on gdbemu, {len(qlines)} on QEMU")
    seen = set()
    for g, q in zip(glines, qlines, strict=False):
        name = check_name(g)
        if name in differences:
            seen.add(name)
            if g == q:
                problems.append(f"QEMU now agrees on {name!r}: drop it from QEMU_DIFFERENCES ({g})")
            elif not (g.startswith("ok ") and q.startswith("not ok ") and check_name(q) == name):
                problems.append(f"recorded difference {name!r} changed: gdbemu {g!r}, QEMU {q!r}")
        elif g != q:
            problems.append(f"gdbemu {g!r} != QEMU {q!r}")
    for name in sorted(set(differences) - seen):
        problems.append(f"recorded difference {name!r} is not in the transcript")
    return problems


def failures(output: str) -> list[str]:
    """The "not ok" lines of a transcript."""
    return [line for line in output.splitlines() if line.startswith("not ok")]


def assert_passes_on_gdbemu(run) -> None:
    """Every check of a guest run passed and it exited with status 0 (exit code 1)."""
    assert run.crash is None, run.describe()
    assert failures(run.output) == [], run.describe()
    last = [line for line in run.output.splitlines() if line.startswith("1..")][-1:]
    assert run.output.splitlines()[-1:] == last and last, run.describe()
    assert (run.stop_kind, run.exit_code) == ("exit", 1), run.describe()


def assert_matches_qemu(run, elf, differences: dict[str, str], extra: list[str] | None = None) -> None:
    """QEMU's transcript is gdbemu's line for line, but for the recorded SDM-vs-QEMU differences."""
    from support import build

    status, out = build.run_qemu(elf, extra=extra)
    problems = compare(run.output, out.decode("latin-1"), differences)
    assert problems == [], "\n".join(problems)
    assert status == (3 if differences else 1)  # guest status 1 (a check failed) or 0, as (s << 1) | 1
