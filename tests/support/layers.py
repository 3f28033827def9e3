"""Import-layer checker: which module of a package imports which, against a list of rules, and cycles.

Theory of operation
-------------------
:func:`scan_imports` parses every ``.py`` file of a package with :mod:`ast`
(nothing is imported or run) and records one :class:`Import` per imported
module of the package itself (imports of other packages -- the standard
library, numpy -- are not recorded):

* every ``import`` / ``from ... import`` statement anywhere in the file,
  including the ones inside functions (``local=True``) and under
  ``if TYPE_CHECKING:`` (``type_only=True``);
* relative imports are resolved against the importing module's package
  (``from ..core import cpu`` in ``pkg/softmmu/tlb.py`` is ``pkg.core.cpu``);
* ``from X import Y`` is an import of module ``X.Y`` when ``X/Y.py`` (or the
  package ``X/Y/``) exists, else of ``X`` (``Y`` is a name defined in ``X``).
  An import of the bare root package (``from pkg import __version__``) is
  not recorded: the root is the namespace, not a layer.

:func:`check_layers` applies :class:`Rule` s.  A rule names a layer by its
dotted path below the package (``"core"``, ``"machine"``, ``"core.stop"``);
a module belongs to the most specific layer that contains it (``pkg.core.cpu``
is in ``core``).  A layer may import itself, then either *only* the listed
layers (an allow list) or anything *but* the listed layers (a deny list).
Every import counts, function-level and type-only ones included: a device
that names ``Machine`` in a type annotation still depends on it.

:func:`find_cycles` builds the graph of module-level imports and returns its
strongly connected components of more than one module (Tarjan's
algorithm).  Imports inside functions and under
``if TYPE_CHECKING:`` are left out of *this* check only: they do not run when
the module is imported, so they cannot make an import circle (they remain
subject to the layer rules above).
"""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class Rule:
    """What the modules of one layer may import.

    ``layer`` is a dotted path below the package (``"rsp"``, ``"machine"``).
    ``only``: the layers it may import besides itself (None: no allow list);
    ``never``: layers it must not import.  ``why`` goes into the report.
    """

    layer: str
    only: tuple[str, ...] | None = None
    never: tuple[str, ...] = ()
    why: str = ""

    def forbids(self, layer_of_importer: str, imported: str) -> bool:
        """True if a module of this layer may not import the (package-relative) module ``imported``."""
        if _within(imported, layer_of_importer):
            return False
        if self.only is not None and not any(_within(imported, allowed) for allowed in self.only):
            return True
        return any(_within(imported, denied) for denied in self.never)

    def describe(self) -> str:
        text = f"{self.layer} imports only {self.layer}" if self.only is not None else f"{self.layer} imports"
        if self.only:
            text += ", " + ", ".join(self.only)
        if self.never:
            text += (" and " if self.only is not None else " anything but ") + ", ".join(self.never)
        return text + (f" ({self.why})" if self.why else "")


@dataclasses.dataclass(frozen=True)
class Import:
    """One import of a module of the package by another: names are package-relative (``"core.cpu"``)."""

    importer: str
    imported: str
    path: Path
    line: int
    local: bool  # inside a function: runs when the function is called, not at import
    type_only: bool  # under ``if TYPE_CHECKING:``

    def where(self) -> str:
        kind = " (in a function)" if self.local else " (for type checking)" if self.type_only else ""
        return f"{self.path}:{self.line}: {self.importer} imports {self.imported}{kind}"


@dataclasses.dataclass(frozen=True)
class Violation:
    """An import a rule forbids."""

    rule: Rule
    imp: Import

    def __str__(self) -> str:
        return f"{self.imp.where()} -- rule: {self.rule.describe()}"


def _within(module: str, layer: str) -> bool:
    """``module`` is ``layer`` or a module below it (dotted, package-relative names)."""
    return module == layer or module.startswith(layer + ".")


def _module_name(package_dir: Path, path: Path) -> str:
    """Package-relative dotted name of a file: ``core/cpu.py`` -> ``core.cpu``; ``core/__init__.py`` -> ``core``."""
    parts = list(path.relative_to(package_dir).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST, local: bool, type_only: bool) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool, bool]]:
    """Every import statement below ``node``, with whether it is in a function / under TYPE_CHECKING."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child, local, type_only
        elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            yield from _walk(child, True, type_only)
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for stmt in child.body:
                yield from _walk(ast.Module(body=[stmt], type_ignores=[]), local, True)
            for stmt in child.orelse:
                yield from _walk(ast.Module(body=[stmt], type_ignores=[]), local, type_only)
        else:
            yield from _walk(child, local, type_only)


def scan_imports(package_dir: Path) -> list[Import]:
    """Every import of the package's own modules by its modules (see the module docstring)."""
    package_dir = Path(package_dir)
    root = package_dir.name
    files = sorted(package_dir.rglob("*.py"))
    modules = {_module_name(package_dir, p) for p in files}

    def is_module(name: str) -> bool:
        return name in modules

    out: list[Import] = []
    for path in files:
        me = _module_name(package_dir, path)
        # the package a relative import starts from: the module's own package (itself for an __init__)
        here = me.split(".") if path.name == "__init__.py" else me.split(".")[:-1]
        if me == "":
            here = []
        tree = ast.parse(path.read_text(), str(path))
        for node, local, type_only in _walk(tree, False, False):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == root or alias.name.startswith(root + "."):
                        targets.append(alias.name[len(root) + 1 :])
            else:
                if node.level:
                    up = node.level - 1
                    if up > len(here):
                        continue  # beyond the package: not ours
                    base = here[: len(here) - up]
                    module = ".".join(base + ([node.module] if node.module else []))
                elif node.module == root or (node.module or "").startswith(root + "."):
                    module = (node.module or "")[len(root) + 1 :]
                else:
                    continue
                for alias in node.names:
                    sub = f"{module}.{alias.name}" if module else alias.name
                    targets.append(sub if is_module(sub) else module)
            for target in dict.fromkeys(targets):
                if target and target != me:
                    out.append(Import(me, target, path, node.lineno, local, type_only))
    return out


def layer_of(module: str, rules: Iterable[Rule]) -> Rule | None:
    """The rule of the most specific layer containing ``module``, or None."""
    best: Rule | None = None
    for rule in rules:
        if _within(module, rule.layer) and (best is None or len(rule.layer) > len(best.layer)):
            best = rule
    return best


def check_layers(package_dir: Path, rules: Sequence[Rule]) -> list[Violation]:
    """Every import in the package that breaks a rule (function-level and type-only imports included)."""
    out: list[Violation] = []
    for imp in scan_imports(package_dir):
        rule = layer_of(imp.importer, rules)
        if rule is not None and rule.forbids(rule.layer, imp.imported):
            out.append(Violation(rule, imp))
    return out


def find_cycles(package_dir: Path) -> list[list[str]]:
    """Import circles among module-level imports: each a sorted list of package-relative module names."""
    graph: dict[str, set[str]] = {}
    for imp in scan_imports(package_dir):
        graph.setdefault(imp.importer, set())
        graph.setdefault(imp.imported, set())
        if not imp.local and not imp.type_only:
            graph[imp.importer].add(imp.imported)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = 0

    def strongconnect(v: str) -> None:  # Tarjan; the graphs are small enough for recursion
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    return sorted(cycles)


def cycle_edges(package_dir: Path, cycle: Sequence[str]) -> list[str]:
    """The module-level imports inside one cycle, as ``file:line: a imports b`` (for failure messages)."""
    members = set(cycle)
    return [
        imp.where()
        for imp in scan_imports(package_dir)
        if imp.importer in members and imp.imported in members and not imp.local and not imp.type_only
    ]
