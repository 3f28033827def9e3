"""The import layers of gdbemu (SPEC section 7, STYLE.md's layering rule), checked mechanically.

The checker (tests/support/layers.py) parses imports with ``ast``: every
import statement counts for the layer rules, function-level and
``TYPE_CHECKING`` ones included; relative imports are resolved.  The cycle
check looks at module-level imports only -- imports inside functions (and
type-only ones) do not run when a module is imported, so they cannot close
an import circle; they are still held to the layer rules.

The rules (a layer may always import itself):

* ``rsp`` imports nothing outside ``rsp`` (the stub talks to a Target protocol);
* ``softmmu`` imports nothing from ``core`` nor anything above it (page walks
  and exceptions reach it as callables);
* ``core`` imports only ``core`` and ``softmmu``;
* ``hw`` imports only ``hw``, ``softmmu``, ``clock`` and the types of
  ``core.stop`` / ``core.events`` (devices get a bus, never the Machine);
* ``boot`` imports only ``boot``, ``softmmu``, ``core``, ``hw`` and ``clock`` (it sets up
  the board as firmware would);
* ``machine`` imports no ``debug``, ``rsp`` or ``cli``;
* ``debug`` imports anything below it, not ``cli`` (nor the test API above it);
* ``cli``, ``testing`` and ``pytest_plugin`` may import everything;
* no import cycles between modules.

The unit tests of the checker build a small fake package in tmp_path with one
deliberate violation of each kind and assert that each is reported.  Besides,
two older rsp rules: only ``rsp/server.py`` does I/O, and importing the rsp
package loads no emulator module.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from support.layers import Rule, check_layers, cycle_edges, find_cycles, scan_imports

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "gdbemu"
RSP = PACKAGE / "rsp"
RSP_FILES = sorted(RSP.rglob("*.py"))
IO_MODULES = {"socket", "select", "selectors", "asyncio", "os", "sys", "time", "threading", "subprocess", "io"}

RULES = (
    Rule("rsp", only=(), why="the stub talks to the emulator only through the Target protocol"),
    Rule("softmmu", only=(), why="page walks and exceptions reach the softmmu as callables"),
    Rule("core", only=("softmmu",)),
    Rule("hw", only=("softmmu", "clock", "core.stop", "core.events"), why="devices get a bus, never the Machine"),
    Rule("boot", only=("softmmu", "core", "hw", "clock"), why="the loader sets up the board as firmware would"),
    Rule("machine", never=("debug", "rsp", "cli"), why="machine.py wires the parts; the debugger attaches to it"),
    Rule("debug", never=("cli", "testing", "pytest_plugin")),
)


# ---- the checker, on a fake package with deliberate violations ------------------------------------
def make_package(root: Path, files: dict[str, str]) -> Path:
    """Write ``files`` (package-relative path -> source) as the package ``root``; __init__.py everywhere."""
    for rel, source in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    for directory in [root, *[p for p in root.rglob("*") if p.is_dir()]]:
        (directory / "__init__.py").touch()
    return root


@pytest.fixture
def fake(tmp_path: Path) -> Path:
    return make_package(
        tmp_path / "fakepkg",
        {
            "core/cpu.py": "from ..softmmu import tlb\nimport numpy\n",
            "core/stop.py": "import enum\n",
            "softmmu/tlb.py": "PAGE = 4096\n",
            "softmmu/access.py": "from . import tlb\n\ndef fault():\n    from ..core.cpu import CPU  # deliberate\n",
            "rsp/stub.py": "from .protocol import frame\n\ndef attach():\n    import fakepkg.machine  # deliberate\n",
            "rsp/protocol.py": "def frame(): ...\n",
            "hw/uart.py": (
                "from typing import TYPE_CHECKING\nfrom fakepkg.core.stop import RunStop\n"
                "if TYPE_CHECKING:\n    from fakepkg.machine import Machine  # deliberate\n"
            ),
            "machine.py": "from .core import cpu\nfrom .hw import uart\nfrom . import debug  # deliberate\n",
            "debug/__init__.py": "",
            "debug/target.py": "from ..machine import Machine\nfrom ..rsp import stub\n",
            "cli.py": "from .debug import target\nfrom .machine import Machine\n",
            "a.py": "from . import b  # deliberate cycle\n",
            "b.py": "import fakepkg.a\n\ndef later():\n    from . import cli\n",
            "c.py": "def later():\n    from . import d  # a function-level circle is no import cycle\n",
            "d.py": "from . import c\n",
        },
    )


def test_scan_resolves_relative_function_level_and_type_only_imports(fake: Path) -> None:
    found = {(i.importer, i.imported, i.local, i.type_only) for i in scan_imports(fake)}
    assert ("core.cpu", "softmmu.tlb", False, False) in found  # from ..softmmu import tlb: the module
    assert ("softmmu.access", "core.cpu", True, False) in found  # in a function, relative
    assert ("hw.uart", "machine", False, True) in found  # under TYPE_CHECKING
    assert ("rsp.stub", "rsp.protocol", False, False) in found  # from .protocol import frame: the module
    assert ("a", "b", False, False) in found and ("b", "a", False, False) in found
    assert not any(i.imported.startswith("numpy") or i.imported == "" for i in scan_imports(fake))


def test_checker_reports_each_deliberate_violation(fake: Path) -> None:
    got = {(v.imp.importer, v.imp.imported, v.rule.layer) for v in check_layers(fake, RULES)}
    assert got == {
        ("softmmu.access", "core.cpu", "softmmu"),  # softmmu imports core (in a function)
        ("rsp.stub", "machine", "rsp"),  # rsp imports machine (in a function, absolute)
        ("hw.uart", "machine", "hw"),  # a device names the Machine (type only)
        ("machine", "debug", "machine"),  # machine imports debug
    }, got
    text = "\n".join(map(str, check_layers(fake, RULES)))
    assert "softmmu/access.py:4: softmmu.access imports core.cpu (in a function)" in text
    assert "rule: softmmu imports only softmmu" in text


def test_checker_reports_the_cycle_and_not_function_level_circles(fake: Path) -> None:
    assert find_cycles(fake) == [["a", "b"]]
    edges = cycle_edges(fake, ["a", "b"])
    assert len(edges) == 2 and any("a.py:1: a imports b" in e for e in edges), edges


def test_a_clean_package_has_no_violations(tmp_path: Path) -> None:
    pkg = make_package(
        tmp_path / "cleanpkg",
        {
            "softmmu/tlb.py": "",
            "core/cpu.py": "from ..softmmu.tlb import *\nfrom cleanpkg.core import stop\n",
            "core/stop.py": "",
            "hw/pit.py": "from ..core.stop import RunStop\nfrom .. import clock\n",
            "clock.py": "",
            "cli.py": "from . import machine, hw\n",
            "machine.py": "from .core import cpu\n",
        },
    )
    assert check_layers(pkg, RULES) == []
    assert find_cycles(pkg) == []


def test_a_deny_rule_and_an_allow_rule_read_as_the_spec_says() -> None:
    hw = RULES[3]
    assert not hw.forbids("hw", "core.stop") and not hw.forbids("hw", "hw.bus") and not hw.forbids("hw", "clock")
    assert hw.forbids("hw", "core.cpu") and hw.forbids("hw", "machine")
    machine = RULES[5]
    assert machine.forbids("machine", "debug.target") and not machine.forbids("machine", "hw.pc")


# ---- the real tree ------------------------------------------------------------------------------------
def test_the_checker_sees_the_real_tree() -> None:
    imports = scan_imports(PACKAGE)
    assert any(i.importer == "machine" and i.imported.startswith("core") for i in imports)
    assert any(i.importer == "rsp.stub" and i.imported == "rsp.target" for i in imports)


def test_gdbemu_obeys_the_layer_rules() -> None:
    violations = check_layers(PACKAGE, RULES)
    assert not violations, f"{len(violations)} imports break the layer rules:\n" + "\n".join(map(str, violations))


def test_gdbemu_has_no_import_cycles() -> None:
    cycles = find_cycles(PACKAGE)
    report = "\n".join(f"{' <-> '.join(c)}:\n  " + "\n  ".join(cycle_edges(PACKAGE, c)) for c in cycles)
    assert not cycles, f"{len(cycles)} import cycles:\n{report}"


# ---- rsp: the older, stricter rules ---------------------------------------------------------------------
def test_there_are_files_to_check() -> None:
    names = {p.name for p in RSP_FILES}
    assert {"protocol.py", "commands.py", "target.py", "stub.py", "server.py", "i386.py"} <= names


@pytest.mark.parametrize("path", RSP_FILES, ids=lambda p: str(p.relative_to(RSP)))
def test_rsp_imports_nothing_from_the_emulator(path: Path) -> None:
    bad = [str(v) for v in check_layers(PACKAGE, RULES[:1]) if v.imp.path == path]
    assert not bad, "\n".join(bad)


def _stdlib_imports(path: Path) -> set[str]:
    import ast

    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", [p for p in RSP_FILES if p.name != "server.py"], ids=lambda p: str(p.relative_to(RSP)))
def test_only_the_server_does_io(path: Path) -> None:
    bad = sorted(name for name in _stdlib_imports(path) if name.split(".")[0] in IO_MODULES)
    assert not bad, f"{path.relative_to(REPO)} imports {bad}: only rsp/server.py may do I/O"


def test_the_import_resolver_sees_relative_imports() -> None:
    names = {i.imported for i in scan_imports(PACKAGE) if i.importer == "rsp.stub"}
    assert "rsp.commands" in names and "rsp.target" in names


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
