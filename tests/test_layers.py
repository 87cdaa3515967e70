"""The package's layers point one way: commands on top, the library beneath, no cycles.

Walks every module's imports (module-level and inside functions) with ``ast`` and
checks them against the layer map below, which is the architecture of
docs/architecture.md written as data.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "rdbench"

# layer -> the layers it may import (besides itself)
BELOW: dict[str, set[str]] = {
    "__main__": {"cli"},
    "cli": {"commands"},
    "commands": {"api", "memory", "study", "phase", "report", "bench", "container", "tracking", "systems", "balance",
                 "config", "provenance", "processes", "progress", "plots"},
    "api": {"memory", "study", "phase", "report", "tracking", "systems", "balance", "config", "provenance", "progress",
            "plots"},
    "study": {"memory", "tracking", "systems", "balance", "config", "provenance"},
    "phase": {"memory", "study", "tracking", "systems", "balance", "config", "provenance", "plots"},  # maps over (F, k)
    "report": {"tracking", "config", "provenance", "plots"},  # the report reads the store, never a system
    "bench": {"memory", "study", "tracking", "systems", "balance", "config", "provenance", "processes"},  # bench ray times a grid
    "container": {"config", "provenance"},  # no torch, no MLflow: fails fast without an engine
    "tracking": {"balance", "config", "provenance", "processes"},
    "systems": {"memory", "balance", "config", "plots"},  # systems never import MLflow: they log through the Recorder
    "balance": set(),
    "config": set(),
    "provenance": set(),
    "processes": set(),
    "progress": set(),  # timestamped progress lines off a terminal: standard library only
    "plots": set(),  # what figures share: the undefined colour, coinciding series
    "memory": {"config"},  # estimates against what the host has left
}
# The package rdbench.phase is also the public function rdbench.phase(...): its __init__ forwards a call to
# rdbench.api.phase, the one import that points up (a call, never at import time).
EXCEPTIONS = {("rdbench.phase", "rdbench.api")}
ONLY_IN = {"click": {"commands"}, "mlflow": {"api", "tracking", "study", "phase", "report", "commands", "bench"}}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports(source: str, name: str, is_package: bool = False) -> set[str]:
    """Every module that module ``name`` imports (absolute names), wherever the import statement stands."""
    found: set[str] = set()
    package = name if is_package else name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # `from rdbench import tracking`
    return found


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
IMPORTS = {name: imports(path.read_text(), name, path.name == "__init__.py") for name, path in MODULES.items()}
GRAPH = {name: {m for m in found if m in MODULES and m != name} for name, found in IMPORTS.items()}


def test_every_module_has_a_layer():
    unknown = {layer(m) for m in MODULES} - set(BELOW) - {"__init__"}
    assert not unknown, f"modules outside the layer map: {unknown}"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_point_down(name):
    here = layer(name)
    if here == "__init__":  # the public API, imported on first use
        assert GRAPH[name] <= {"rdbench.api", "rdbench.phase"}, "rdbench/__init__.py imports only the API"
        return
    upward = sorted(m for m in GRAPH[name]
                    if layer(m) != here and layer(m) not in BELOW[here] and (name, m) not in EXCEPTIONS)
    assert not upward, f"{name} ({here}) imports {upward}; {here} may import only {sorted(BELOW[here])}"
    for lib, layers in ONLY_IN.items():
        used = {m for m in IMPORTS[name] if m == lib or m.startswith(f"{lib}.")}
        assert not used or here in layers, f"{name} ({here}) imports {lib}; only {sorted(layers)} may"


def test_nothing_but_the_entry_point_imports_commands():
    importers = sorted(n for n, deps in GRAPH.items()
                       if layer(n) != "commands" and any(layer(d) == "commands" for d in deps))
    assert importers == ["rdbench.cli"]


def test_no_import_cycles():
    """Tarjan's strongly connected components of the module graph: each must be a single module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in GRAPH[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(GRAPH):
        if node not in index:
            visit(node)
    assert not cycles, f"import cycles: {cycles}"


def test_the_walker_sees_upward_and_relative_imports():
    """The check can fail: an import inside a function, relative or absolute, is seen."""
    source = "def f():\n    from ..commands.options import CliError\n    import rdbench.study.cells\n"
    found = imports(source, "rdbench.report.table")
    assert {"rdbench.commands.options", "rdbench.study.cells"} <= found
    assert layer("rdbench.commands.options") not in BELOW["report"] and "study" not in BELOW["report"]
