"""Shared fixtures (a plugin: pyproject.toml's addopts load it): building guest programs and running them.

Guests are assembled once per session (``as``/``ld`` are the only build
dependency, and a missing toolchain is a skip with the reason, not an
error) and each guest is run at most once per session: several tests look
at one run (its transcript line by line, its exit code, its statistics), and
re-running a guest for each of them would multiply the suite's time.
"""

from __future__ import annotations

import dataclasses
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest

from . import build

# QEMU is started with -m 32 when the guests are validated; the core gets
# the same RAM so a guest sees the same machine in both.
GUEST_RAM = 32 << 20


@dataclasses.dataclass
class GuestRun:
    """Everything a test may want to know about one run of a guest on the core."""

    name: str
    stop_kind: str | None
    stop_detail: str
    exit_code: int | None
    output: str
    stats: dict[str, int]
    icount: int
    seconds: float
    crash: str | None  # a Python exception escaping Machine.run (a core crash), formatted

    def describe(self) -> str:
        """A failure message footer: how the run ended and the tail of its transcript."""
        tail = "\n".join(self.output.splitlines()[-8:])
        how = self.crash or f"stop={self.stop_kind} {self.stop_detail} exit_code={self.exit_code}"
        return f"[{self.name}: {how}; icount={self.icount}]\n--- transcript tail ---\n{tail}"


@pytest.fixture(scope="session")
def build_guest(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """Return ``build(name) -> Path`` of tests/support/guests/NAME.s linked at 1 MiB, cached per session."""
    try:
        build.toolchain()
    except build.ToolchainMissingError as exc:
        pytest.skip(str(exc))
    out_dir = tmp_path_factory.mktemp("guests")
    built: dict[str, Path] = {}

    def build_one(name: str) -> Path:
        if name not in built:
            built[name] = build.build_guest(name, out_dir)
        return built[name]

    return build_one


@pytest.fixture(scope="session")
def run_guest(build_guest: Callable[[str], Path]) -> Callable[[str, int], GuestRun]:
    """Return ``run(name, max_insns) -> GuestRun``; each guest runs once per session.

    The core is imported here, not at module level, so that collecting the
    tests works while gdbemu/machine.py does not exist yet (they skip).
    ``max_insns`` bounds the run so a broken core fails instead of hanging.
    """
    machine_mod = pytest.importorskip("gdbemu.machine", reason="the gdbemu core (gdbemu/machine.py) is not there yet")
    runs: dict[str, GuestRun] = {}

    def run(name: str, max_insns: int) -> GuestRun:
        if name in runs:
            return runs[name]
        elf = build_guest(name)
        m = machine_mod.Machine(ram_size=GUEST_RAM)
        crash = None
        stop_kind, stop_detail = None, ""
        t0 = time.perf_counter()
        try:
            m.load_elf(str(elf))
            stop = m.run(max_insns=max_insns)
            stop_kind, stop_detail = stop.kind, getattr(stop, "detail", "")
        except Exception:  # a core crash must fail this guest's tests, not the session
            crash = traceback.format_exc(limit=6)
        seconds = time.perf_counter() - t0
        try:
            stats = dict(m.stats())
        except Exception:
            stats = {}
        runs[name] = GuestRun(
            name=name,
            stop_kind=stop_kind,
            stop_detail=stop_detail,
            exit_code=m.exit_code,
            output=bytes(m.debug_output).decode("latin-1"),
            stats=stats,
            icount=m.cpu.icount,
            seconds=seconds,
            crash=crash,
        )
        return runs[name]

    return run
