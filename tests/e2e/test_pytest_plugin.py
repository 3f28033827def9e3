"""The gdbemu pytest plugin, run through pytester: the example regression test, reports, golden traces, options.

The example (examples/test_stray_write.py with its kernel) is copied into a
pytester directory and run against both variants: the buggy kernel must
fail with a report naming the stray writer and carrying the serial output,
the fixed one must pass.  Runs are in-process (pytester's default), so they
use the gdbemu package this test imports.
"""

from __future__ import annotations

import os
import shutil
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from gdbemu.testing import BuildError, build_kernel, pid_alive

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
EXAMPLE_FILES = ("conftest.py", "test_stray_write.py", "stray_write.c", "stray_write.ld")
GDB = shutil.which(os.environ.get("GDBEMU_GDB") or "gdb")

pytestmark = [pytest.mark.gdb, pytest.mark.skipif(GDB is None, reason="gdb is not installed")]


# hypothesis's terminal summary costs seconds per in-process run, and these runs need nothing from it
QUIET = ("-p", "no:hypothesispytest")


def plugin_args() -> list[str]:
    """``-p gdbemu.pytest_plugin`` unless the installed entry point loads it already (twice is an error)."""
    installed = any(ep.value == "gdbemu.pytest_plugin" for ep in entry_points(group="pytest11"))
    return [*QUIET] if installed else [*QUIET, "-p", "gdbemu.pytest_plugin"]


@pytest.fixture(scope="module")
def toolchain(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Skip the example's runs where the 32-bit C toolchain is missing (the example would skip too)."""
    try:
        build_kernel(
            [EXAMPLES / "stray_write.c"],
            tmp_path_factory.mktemp("probe") / "k.elf",
            ldscript=EXAMPLES / "stray_write.ld",
        )
    except BuildError as exc:
        if exc.missing_tool:
            pytest.skip(str(exc))
        raise


@pytest.fixture
def example(pytester: pytest.Pytester, toolchain: None) -> pytest.Pytester:
    for name in EXAMPLE_FILES:
        shutil.copy(EXAMPLES / name, pytester.path / name)
    return pytester


def test_buggy_kernel_fails_naming_the_stray_writer(example: pytest.Pytester) -> None:
    result = example.runpytest("--stray-variant=buggy", *QUIET)  # the example's conftest loads the plugin if needed
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*stray write to obj->count: write watchpoint * (pool[[]0].count): 1 -> 0 * in flush_stats (stray_write.c:*",  # noqa: E501
            "*gdbemu session 1 (stray_write-buggy.elf): serial output*",
            "stray-write example kernel",
            "flush: netdev had 1",
            "*gdbemu session 1 (stray_write-buggy.elf): last stops*",
            "*in owner_update*",
            "*in flush_stats*",
            "*gdbemu session 1 (stray_write-buggy.elf): registers*",
            "*eip=*",
            "backtrace:",
            "*#0 0x* in flush_stats (stray_write.c:*)",
            "*#1 0x* in run_deferred (stray_write.c:*)",
        ]
    )


def test_fixed_kernel_passes(example: pytest.Pytester) -> None:
    result = example.runpytest("--stray-variant=fixed", *QUIET)
    result.assert_outcomes(passed=1)
    assert "gdbemu session" not in result.stdout.str()  # no report sections for a pass


GOLDEN_TEST = """
import pytest

@pytest.mark.gdb
def test_prime_count_history(gdbemu, gdbemu_golden):
    s = gdbemu()  # the demo kernel
    s.watch("*(int *)&prime_count")
    gdbemu_golden.check(s.cont_to_exit())
"""


def test_golden_trace_recorded_compared_updated(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_golden=GOLDEN_TEST)
    golden = pytester.path / "golden" / "test_prime_count_history.trace"

    first = pytester.runpytest(*plugin_args())
    first.assert_outcomes(passed=1, warnings=1)  # recorded, with a warning saying so
    first.stdout.fnmatch_lines(["*GoldenTraceRecorded: recorded golden stop trace*"])
    lines = golden.read_text().splitlines()
    assert lines[1:] == [
        "write *(int *)&prime_count: 0 -> 303 in sieve at 0x001000c2",
        "write *(int *)&prime_count: 303 -> 5 in record_sample at 0x001000d4",
        "write *(int *)&prime_count: 5 -> 303 in sieve at 0x001000c2",
    ]

    golden.write_text(golden.read_text().replace("303 -> 5 in record_sample", "303 -> 303 in record_sample"))
    changed = pytester.runpytest(*plugin_args())
    changed.assert_outcomes(failed=1)
    changed.stdout.fnmatch_lines(
        [
            "*the stop trace differs from *test_prime_count_history.trace",
            "*rerun with --gdbemu-update-golden to accept it*",
            "*-write *(int *)&prime_count: 303 -> 303 in record_sample at 0x001000d4",
            "*+write *(int *)&prime_count: 303 -> 5 in record_sample at 0x001000d4",
        ]
    )

    updated = pytester.runpytest("--gdbemu-update-golden", *plugin_args())
    updated.assert_outcomes(passed=1)
    assert golden.read_text().splitlines()[1:] == lines[1:]


OPTIONS_TEST = """
import os, pytest

@pytest.mark.gdb
def test_options_reach_the_session(gdbemu):
    s = gdbemu()
    assert s.timeout == 7.5
    with open("pids.txt", "w") as f:
        f.write(f"{s.gdb_pid} {s.gdbemu_pid}")
    assert False, "fail with the session open"
"""


def test_options_and_teardown(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_options=OPTIONS_TEST)
    result = pytester.runpytest("--gdbemu-timeout=7.5", *plugin_args())
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*fail with the session open*", "*gdbemu session 1 (demo.elf): registers*", "*eip=0010000c*"]
    )  # held at the entry point (-S)
    pids = [int(p) for p in (pytester.path / "pids.txt").read_text().split()]
    assert len(pids) == 2 and not any(pid_alive(p) for p in pids)  # closed at teardown, failure or not


def test_missing_gdb_skips(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_skip="def test_needs_gdb(gdbemu):\n    gdbemu()\n")
    result = pytester.runpytest("--gdbemu-gdb=/nonexistent/gdb", "-rs", *plugin_args())
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*gdb not found ('/nonexistent/gdb')*"])


def test_help_lists_the_options(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help", *plugin_args())
    result.stdout.fnmatch_lines(
        ["*gdbemu sessions*", "*--gdbemu-gdb=PATH*", "*--gdbemu-timeout=SECONDS*", "*--gdbemu-update-golden*"]
    )


XDIST_TEST = """
import os
import re


def _record(gdbemu, name):
    s = gdbemu()  # the demo kernel
    s.break_at("round_loop")
    stop = s.cont()
    assert stop.function == "round_loop"
    port = re.search(r"waiting for gdb on [^ ]+:(\\d+)", s.gdbemu_stderr).group(1)
    with open(os.environ["RECORD_FILE"], "a") as f:
        f.write(f"{name} {os.environ.get('PYTEST_XDIST_WORKER', '-')} {port} {s.directory}\\n")


def test_a(gdbemu):
    _record(gdbemu, "a")


def test_b(gdbemu):
    _record(gdbemu, "b")


def test_c(gdbemu):
    _record(gdbemu, "c")


def test_d(gdbemu):
    _record(gdbemu, "d")
"""


def test_plugin_suite_runs_under_xdist(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """``pytest -n 2``: each worker's sessions take their own free ports and temporary directories."""
    pytest.importorskip("xdist")
    record = pytester.path / "record.txt"
    monkeypatch.setenv("RECORD_FILE", str(record))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    pytester.makepyfile(test_parallel=XDIST_TEST)
    result = pytester.runpytest_subprocess("-n", "2", "-p", "xdist", *plugin_args(), timeout=300)
    result.assert_outcomes(passed=4)
    rows = [line.split() for line in record.read_text().splitlines()]
    assert sorted(r[0] for r in rows) == ["a", "b", "c", "d"]
    assert {r[1] for r in rows} == {"gw0", "gw1"}
    assert all(r[2].isdigit() and r[2] != "1234" for r in rows)  # free ports, never a fixed one
    assert len({r[3] for r in rows}) == 4  # a directory of its own per session
