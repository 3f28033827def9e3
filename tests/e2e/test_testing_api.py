"""gdbemu.testing: the session API, driven the way a test author drives it.

Against the demo kernel (its bug: record_sample's store through a cursor that
runs past `samples` overwrites prime_count in round 5) and against the
stray-write example kernel (examples/stray_write.c, C with line info: steps,
finish with a return value, conditions on locals).  The first group needs no
gdb: how MI stop records become typed Stops.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gdbemu.testing import (
    BuildError,
    GdbError,
    GuestExitedError,
    Session,
    SessionError,
    SessionTimeout,
    Stop,
    StopReason,
    build_kernel,
    pid_alive,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
GDB = shutil.which(os.environ.get("GDBEMU_GDB") or "gdb")
needs_gdb = pytest.mark.skipif(GDB is None, reason="gdb is not installed")


@pytest.fixture(scope="module")
def stray_kernel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The buggy stray-write kernel, built once for this module (skip without gcc -m32)."""
    out = tmp_path_factory.mktemp("stray") / "stray_write.elf"
    try:
        return build_kernel([EXAMPLES / "stray_write.c"], out, ldscript=EXAMPLES / "stray_write.ld")
    except BuildError as exc:
        if exc.missing_tool:
            pytest.skip(str(exc))
        raise


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line contains ``text`` (a /proc scan: no psutil needed)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if text.encode() in cmdline and pid_alive(int(entry)):
            found.append(int(entry))
    return found


def assert_gone(*pids: int | None) -> None:
    deadline = time.monotonic() + 5
    while any(p is not None and pid_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not [p for p in pids if p is not None and pid_alive(p)], pids


# ---- MI records -> Stop (no gdb) -------------------------------------------------------------------


def _session_without_processes() -> Session:
    s = Session.__new__(Session)
    s._watches = {}
    return s


def test_watchpoint_record_becomes_a_typed_stop() -> None:
    payload = {
        "reason": "watchpoint-trigger",
        "wpt": {"number": "2", "exp": "*(int *)&prime_count"},
        "value": {"old": "303", "new": "5"},
        "thread-id": "1",
        "stopped-threads": "all",
        "frame": {"addr": "0x001000d4", "func": "record_sample", "args": [], "arch": "i386"},
    }
    stop = _session_without_processes()._parse_stop(payload)
    assert stop.reason == StopReason.WATCHPOINT == "watchpoint"
    assert (stop.breakpoint, stop.expression, stop.watch_kind) == (2, "*(int *)&prime_count", "write")
    assert (stop.old, stop.new, stop.pc, stop.function, stop.thread) == ("303", "5", 0x1000D4, "record_sample", 1)
    assert stop.describe() == "write watchpoint 2 (*(int *)&prime_count): 303 -> 5 at 0x001000d4 in record_sample"
    assert stop.trace_line() == "write *(int *)&prime_count: 303 -> 5 in record_sample at 0x001000d4"
    assert not stop.ended


@pytest.mark.parametrize(
    ("payload", "reason", "fields"),
    [
        ({"reason": "exited", "exit-code": "013"}, StopReason.EXITED, {"exit_code": 11}),  # MI's octal
        ({"reason": "exited-normally"}, StopReason.EXITED, {"exit_code": 0}),
        ({"reason": "exited-signalled", "signal-name": "SIGSEGV"}, StopReason.KILLED, {"signal": "SIGSEGV"}),
        (
            {"reason": "signal-received", "signal-name": "SIGINT", "frame": {"addr": "0x10"}},
            StopReason.SIGNAL,
            {"signal": "SIGINT", "pc": 0x10},
        ),
        (
            {
                "reason": "breakpoint-hit",
                "bkptno": "3",
                "frame": {"addr": "0x100", "func": "f", "file": "k.c", "line": "12"},
            },
            StopReason.BREAKPOINT,
            {"breakpoint": 3, "file": "k.c", "line": 12},
        ),
        (
            {"reason": "read-watchpoint-trigger", "hw-rwpt": {"number": "4", "exp": "x"}, "value": {"value": "7"}},
            StopReason.WATCHPOINT,
            {"watch_kind": "read", "value": "7"},
        ),
        (
            {"reason": "function-finished", "return-value": "1", "frame": {"func": "??"}},
            StopReason.FINISH,
            {"return_value": "1", "function": None},
        ),
        ({"frame": {"addr": "0x20"}}, StopReason.STOPPED, {"pc": 0x20}),
    ],
)
def test_other_stop_records(payload: dict, reason: StopReason, fields: dict) -> None:
    stop = _session_without_processes()._parse_stop(payload)
    assert stop.reason == reason
    for name, value in fields.items():
        assert getattr(stop, name) == value, name
    assert stop.describe()
    assert stop.ended == (reason in (StopReason.EXITED, StopReason.KILLED))


def test_stops_compare_without_their_raw_payload() -> None:
    a = Stop(StopReason.STEP, pc=1, raw={"x": 1})
    assert a == Stop(StopReason.STEP, pc=1, raw={"y": 2})


# ---- the demo kernel -------------------------------------------------------------------------------


@pytest.mark.gdb
@needs_gdb
def test_demo_watchpoint_catches_the_stray_store() -> None:
    """The README's session: watch prime_count, continue, the stop names record_sample in round 5."""
    with Session.boot(timeout=60) as s:
        number = s.watch("*(int *)&prime_count")
        prime_count = s.read_int("&prime_count")
        first = s.cont()
        assert first.reason == "watchpoint" and first.function == "sieve" and (first.old, first.new) == ("0", "303")
        stray = s.cont_until(lambda st: st.function != "sieve")
        assert stray.reason == StopReason.WATCHPOINT
        assert (stray.breakpoint, stray.watch_kind, stray.thread) == (number, "write", 1)
        assert (stray.function, stray.old, stray.new) == ("record_sample", "303", "5")
        assert stray.address == prime_count
        assert s.read_int("*(int *)&round") == 5
        assert s.stops == [first, stray]

        regs = s.registers()
        assert regs["eip"] == stray.pc  # the stop is after the store
        assert regs["edx"] == prime_count and regs["eax"] == 5  # mov %eax, (%edx): the cursor past the buffer
        assert regs["cs"] == 0x08 and regs["cr0"] & 0x80000000  # paging is on
        assert s.backtrace()[0].function == "record_sample"

        assert "round 4: 303 primes" in s.serial_output and "round 5" not in s.serial_output
        assert "c0000000-c0001000" in s.monitor("info mem")  # the sieve's second mapping
        assert "watchpoint" in s.monitor("help")
        assert s.read_memory("&samples", 16) == b"".join(i.to_bytes(4, "little") for i in (1, 2, 3, 4))

        s.delete(number)
        end = s.cont()
        assert end.reason == StopReason.EXITED and end.ended and s.exit_code == 1  # isa-debug-exit 0 -> 1
        assert "round 5: 5 primes" in s.serial_output and s.serial_output.endswith("done.\n")
        with pytest.raises(GuestExitedError, match="exited with code"):
            s.cont()
    assert_gone(s.gdb_pid, s.gdbemu_pid)
    assert "done.\n" in s.serial_output  # still readable after close


@pytest.mark.gdb
@needs_gdb
def test_same_stops_every_run_and_over_stdio() -> None:
    """Determinism: two runs (a TCP port, then `target remote | gdbemu -gdb stdio`) give the same stops."""
    traces = []
    for transport in ("tcp", "stdio"):
        with Session.boot(transport=transport, timeout=60) as s:
            s.watch("*(int *)&prime_count")
            s.watch("*(int *)&largest")
            stops = s.cont_to_exit()
            traces.append([(st.reason, st.pc, st.function, st.expression, st.old, st.new) for st in stops])
            assert s.exit_code == 1 and s.serial_output.endswith("done.\n")
        assert_gone(s.gdb_pid, s.gdbemu_pid)
    assert traces[0] == traces[1]
    assert ("watchpoint", 0x1000D4, "record_sample", "*(int *)&prime_count", "303", "5") in traces[0]
    assert any(t[2] == "record_sample" and t[3] == "*(int *)&largest" for t in traces[0])  # round 6


@pytest.mark.gdb
@needs_gdb
@pytest.mark.skipif(shutil.which("qemu-system-i386") is None, reason="qemu-system-i386 is not installed")
def test_qemu_as_the_stub_through_the_same_api() -> None:
    """``Session.qemu``: QEMU's stub, driven like gdbemu's, stops at the same watchpoint hits."""
    kernel = ROOT / "gdbemu" / "demo" / "demo.elf"
    traces = []
    for start in (Session.boot, Session.qemu):
        with start(kernel, timeout=60) as s:
            s.watch("*(int *)&prime_count")
            stops = [s.cont() for _ in range(3)]
            traces.append([(st.reason, st.pc, st.function, st.old, st.new) for st in stops])
            assert "Hardware watchpoint 1" in stops[0].console
            version = s.mi("-gdb-version")  # any MI command, through the same session
            assert version == {}  # -gdb-version prints on the console stream; its result has no fields
        assert_gone(s.gdb_pid, s.gdbemu_pid)
    assert traces[0] == traces[1]
    assert traces[0][0][0] == "watchpoint" and traces[0][0][2] == "sieve"


@pytest.mark.gdb
@needs_gdb
def test_errors_are_gdbs_words() -> None:
    with Session.boot() as s:
        with pytest.raises(GdbError, match="No symbol") as info:
            s.read("no_such_symbol")
        assert info.value.command.startswith("-data-evaluate-expression")
        with pytest.raises(GdbError, match="constant"):
            s.watch("1 + 2")
        with pytest.raises(ValueError):
            s.watch("prime_count", kind="sometimes")  # type: ignore[arg-type]
        assert s.cont_until(lambda st: st.ended).reason == StopReason.EXITED  # the predicate may accept the end


@pytest.mark.gdb
@needs_gdb
def test_gdbemu_watch_condition_and_log() -> None:
    """gdbemu's own watch features, when this gdbemu has them (monitor watch cond / watch log)."""
    with Session.boot() as s:
        if not (s.has_monitor("watch cond") and s.has_monitor("watch log")):
            pytest.skip("this gdbemu has no monitor watch cond / watch log")
        s.watch("*(int *)&prime_count", target_condition="new == 5")
        stop = s.cont()  # the 303s of rounds 1-4 never reach gdb
        assert (stop.function, stop.new, s.read_int("*(int *)&round")) == ("record_sample", "5", 5)
        s.delete()
        s.watch("*(int *)&largest")
        s.watch_log()
        s.break_at("*&report")
        assert s.cont().reason == StopReason.BREAKPOINT  # round 5's report: nothing wrote largest since
        assert s.watch_records() == []
        assert s.cont().reason == StopReason.BREAKPOINT  # round 6's: the sieve's store, then the stray one
        records = s.watch_records()
        assert [(r.function, r.access, r.old, r.new) for r in records] == [
            ("sieve", "w", 1999, 1999),  # the same value: a gdb watchpoint would not even have stopped
            ("record_sample", "w", 1999, 6),
        ]
        assert records[1].address == s.read_int("&largest") and records[1].size == 4


# ---- a guest of our own: C with line info ------------------------------------------------------------


@pytest.mark.gdb
@needs_gdb
def test_breakpoints_steps_finish_and_writes(stray_kernel: Path) -> None:
    with Session.boot(stray_kernel) as s:
        bp = s.break_at("has_word")
        stop = s.cont()
        assert (stop.reason, stop.breakpoint, stop.function, stop.file) == (
            "breakpoint",
            bp,
            "has_word",
            "stray_write.c",
        )
        assert stop.line is not None
        done = s.finish()
        assert done.reason == StopReason.FINISH and done.function == "kmain" and done.return_value == "0"

        s.delete()
        stop = s.run_to("flush_stats")
        assert [f.function for f in s.backtrace()] == ["flush_stats", "run_deferred", "kmain", "_start"]
        assert s.read("s->owner").endswith('"netdev"')  # the object was reused: the pointer is stale
        pc = s.registers()["eip"]
        one = s.stepi()
        assert one.reason == StopReason.STEP and one.pc != pc and one.pc == s.registers()["eip"]
        into = s.step()
        assert into.reason == StopReason.STEP and into.function == "puts"
        back = s.finish()
        assert back.function == "flush_stats"

        # Point the stale pointer at the unused pool[3]: the netdev's count survives, the kernel says ok.
        s.write("s", "&pool[3]")
        s.write_memory("&pool[2].count", (1234).to_bytes(4, "little"))
        assert s.read_int("pool[2].count") == 1234
        s.delete()
        assert s.cont().reason == StopReason.EXITED
        assert s.exit_code == 1 and "ok\n" in s.serial_output and "FAIL" not in s.serial_output


@pytest.mark.gdb
@needs_gdb
def test_conditional_breakpoint_and_cont_until(stray_kernel: Path) -> None:
    with Session.boot(stray_kernel) as s:
        s.dprintf("owner_update", "count=%d owner=%s\n", "count", "s->owner")  # gdb's dprintf-style: console
        s.break_at("owner_update", condition="count == 9")  # target-side when gdbemu supports it (gdb's auto)
        stop = s.cont()
        assert stop.reason == StopReason.BREAKPOINT and s.read_int("count") == 9
        assert s.read("s->owner").endswith('"netdev"')
        assert "count=7 owner=logger\ncount=0 owner=netdev\ncount=1 owner=netdev\n" in s.console_output
        s.delete()
        s.watch("pool[0].count")
        with pytest.raises(SessionError, match="no stop matched in 1 stops"):
            s.cont_until(lambda st: st.function == "nobody", max_stops=1)
        with pytest.raises(GuestExitedError, match="before the predicate held"):
            s.cont_until(lambda st: st.function == "nobody")
        assert s.exit_code == 3  # the buggy kernel reports its failure


@pytest.mark.gdb
@needs_gdb
def test_timeout_interrupts_and_names_what_was_awaited(stray_kernel: Path) -> None:
    """A guest that never stops: cont raises after its timeout, and the session is still usable."""
    with Session.boot(stray_kernel, append="hang", memory=16) as s:
        with pytest.raises(
            SessionTimeout,
            match=r"timed out after 1 s waiting for the guest to stop after continue"
            r"; interrupted the guest: SIGINT at 0x[0-9a-f]+ in kmain",
        ) as info:
            s.cont(timeout=1)  # the message names the 1 s bound that fired (no wall-clock assert)
        assert "hanging as asked" in str(info.value)  # the serial tail is part of the message
        assert s.last_stop is not None and s.last_stop.signal == "SIGINT"
        assert "hang\nhanging as asked\n" in s.serial_output
        assert s.registers()["eip"] == s.last_stop.pc  # still usable
    assert_gone(s.gdb_pid, s.gdbemu_pid)


# ---- teardown --------------------------------------------------------------------------------------------


@pytest.mark.gdb
@needs_gdb
def test_no_processes_left_when_the_test_fails(tmp_path: Path) -> None:
    kernel = tmp_path / "marker-kernel-fails.elf"
    shutil.copy(ROOT / "gdbemu" / "demo" / "demo.elf", kernel)
    with pytest.raises(ZeroDivisionError), Session.boot(kernel) as s:
        s.watch("*(int *)&prime_count")
        s.cont()
        raise ZeroDivisionError  # a failing test inside the session
    assert_gone(s.gdb_pid, s.gdbemu_pid)
    assert processes_mentioning(str(kernel)) == []


@pytest.mark.gdb
@needs_gdb
def test_a_hung_gdb_is_killed_with_a_clear_error(tmp_path: Path) -> None:
    """gdb that never answers: boot fails naming what it waited for, and nothing survives."""
    kernel = tmp_path / "marker-kernel-hung.elf"
    shutil.copy(ROOT / "gdbemu" / "demo" / "demo.elf", kernel)
    pidfile = tmp_path / "gdb.pid"
    fake = tmp_path / "hung-gdb"
    fake.write_text(f"#!/bin/sh\necho $$ > {pidfile}\nexec sleep 600\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    with pytest.raises(SessionTimeout, match=r"timed out after 1\.5 s waiting for gdb to start"):
        Session.boot(kernel, gdb=fake, timeout=1.5)
    assert_gone(int(pidfile.read_text()))
    assert processes_mentioning(str(kernel)) == []


@pytest.mark.gdb
@needs_gdb
def test_a_kernel_gdbemu_refuses_is_an_error_with_its_words(tmp_path: Path) -> None:
    bogus = tmp_path / "not-a-kernel.elf"
    bogus.write_bytes(b"\x7fELF nonsense")
    with pytest.raises(SessionError, match=r"gdbemu exited with status 2 before listening for gdb:\n.*cannot boot"):
        Session.boot(bogus)
    assert processes_mentioning(str(bogus)) == []


# ---- gdbinit -----------------------------------------------------------------------------------------------


@pytest.mark.gdb
@needs_gdb
def test_gdbinit_connects_and_names_the_monitor_commands(tmp_path: Path) -> None:
    """gdb -x gdbinit: gdbemu-connect PORT, then tlb/pagemap/dirty/tbs/watchlog, each with help text."""
    log = tmp_path / "gdbemu.stderr"
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gdbemu.cli",
                "-gdb",
                "tcp:127.0.0.1:0",
                "-S",
                "-serial",
                "null",
                "-display",
                "none",
            ],
            stdin=subprocess.DEVNULL,
            stdout=err,
            stderr=err,
            env=env,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 30
        while not (m := re.search(r"waiting for gdb on 127\.0\.0\.1:(\d+)", log.read_text())):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.02)
        commands = [
            f"gdbemu-connect {m.group(1)}",
            "show architecture",
            "break report",
            "continue",
            "pagemap",
            "tlb",
            "dirty",
            "tbs",
            "watchlog",
            "gdbemu-help",
            "help tlb",
            "help user-defined",
            "kill",
        ]
        argv = [GDB or "gdb", "-nx", "-batch", "-x", str(ROOT / "gdbinit")]
        for c in commands:
            argv += ["-ex", c]
        out = subprocess.run(
            [*argv, str(ROOT / "gdbemu" / "demo" / "demo.elf")], capture_output=True, text=True, timeout=60
        )
        text = out.stdout + out.stderr
        assert proc.wait(timeout=10) == 0, text  # gdb's kill ended gdbemu
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    # i386, from gdbemu's description (gdbinit no longer forces it: a 64-bit machine's is x86-64)
    assert 'The target architecture is set to "auto" (currently "i386")' in text, text
    assert "Breakpoint 1, 0x001000de in report ()" in text, text
    assert re.search(r"^c0000000-c0001000 00001000 -> [0-9a-f]{8} -rw", text, re.M), text  # pagemap
    assert "mmu_idx 1 (kernel):" in text  # tlb
    assert re.search(r"^\d+ RAM pages", text, re.M) and "code     :" in text  # dirty
    assert re.search(r"^\d+ TBs on \d+ pages", text, re.M)  # tbs
    assert "gdbemu monitor commands" in text  # gdbemu-help
    assert "Show gdbemu's software TLB (monitor info tlb)." in text  # help tlb
    for name in ("gdbemu-connect", "tlb", "pagemap", "dirty", "tbs", "watchlog"):
        assert re.search(rf"^{name} -- ", text, re.M), name  # help user-defined: each one documented
    if "watch log" in text.split("gdbemu monitor commands", 1)[1]:
        assert re.search(r"^watch log (on|off): \d+ records", text, re.M), text
    assert "not supported by this target" not in text and "Undefined command" not in text, text


@pytest.mark.gdb
@pytest.mark.slow
@needs_gdb
def test_cond_bench_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """benchmarks/cond_bench.py end to end, with few iterations (a smoke test, not a measurement)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import cond_bench
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    assert cond_bench.main(["--iterations", "20", "--no-qemu"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^gdbemu, host-side evaluation +\S+ s", out, re.M) or "host-side evaluation" in out, out
    target = next(line for line in out.splitlines() if line.startswith("gdbemu, target-side"))
    assert "failed" not in target, out
    if "n/a" not in target:
        assert "gdbemu counted 22 evaluations, 2 true, 0 errors" in target, out
