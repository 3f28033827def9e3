"""Layering rules of gdbemu/rsp, checked mechanically.

1. rsp imports nothing from the emulator (gdbemu.core, gdbemu.softmmu,
   gdbemu.machine, nor any other gdbemu package outside rsp): the stub talks
   to the Target protocol only, so it can be tested with a fake and reused.
2. Only rsp/server.py does I/O: the framer, parsers, stub, target and arch
   modules import no socket/select/os/sys/time/threading (STYLE.md, practice 1).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
RSP = REPO / "gdbemu" / "rsp"
RSP_FILES = sorted(RSP.rglob("*.py"))
IO_MODULES = {"socket", "select", "selectors", "asyncio", "os", "sys", "time", "threading", "subprocess", "io"}


def imported_modules(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved)."""
    package = ".".join(path.relative_to(REPO).with_suffix("").parts)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def test_there_are_files_to_check() -> None:
    names = {p.name for p in RSP_FILES}
    assert {"protocol.py", "commands.py", "target.py", "stub.py", "server.py", "i386.py"} <= names


@pytest.mark.parametrize("path", RSP_FILES, ids=lambda p: str(p.relative_to(RSP)))
def test_rsp_imports_nothing_from_the_emulator(path: Path) -> None:
    bad = sorted(
        name
        for name in imported_modules(path)
        if name.startswith("gdbemu") and not (name == "gdbemu.rsp" or name.startswith("gdbemu.rsp."))
    )
    assert not bad, f"{path.relative_to(REPO)} imports {bad}: rsp must talk to the emulator only through Target"


@pytest.mark.parametrize("path", [p for p in RSP_FILES if p.name != "server.py"], ids=lambda p: str(p.relative_to(RSP)))
def test_only_the_server_does_io(path: Path) -> None:
    bad = sorted(name for name in imported_modules(path) if name.split(".")[0] in IO_MODULES)
    assert not bad, f"{path.relative_to(REPO)} imports {bad}: only rsp/server.py may do I/O"


def test_the_import_resolver_sees_relative_imports() -> None:
    names = imported_modules(RSP / "stub.py")
    assert "gdbemu.rsp.commands" in names or "gdbemu.rsp" in names
    assert "gdbemu.rsp.target.Target" in names


def test_importing_rsp_loads_no_emulator_module() -> None:
    code = (
        "import sys, gdbemu.rsp.server, gdbemu.rsp.stub, gdbemu.rsp.arch.i386\n"
        "bad = [m for m in sys.modules if m.startswith(('gdbemu.core', 'gdbemu.softmmu', 'gdbemu.machine', "
        "'gdbemu.hw', 'gdbemu.boot'))]\n"
        "assert not bad, bad\n"
        "assert gdbemu.rsp.server.__file__.startswith(sys.argv[1]), gdbemu.rsp.server.__file__\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(REPO)], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
