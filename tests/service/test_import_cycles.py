"""The service's modules import each other without cycles.

The oracle is the source itself: every ``import`` statement of every module of
``bnncore_service`` is read with :mod:`ast` (nothing is imported) and the
import graph is searched for cycles (Tarjan's strongly connected components).
Two graphs are checked:

* import time: the statements Python runs when the module is imported
  (module level, inside ``try``/``if`` too, but not ``if TYPE_CHECKING:``);
  a cycle there makes the import order matter. None is allowed.
* every import, function bodies included: a function-level import is how a
  cycle is hidden, not ended. The definition language (``schemas``, the
  Keras JSON translator ``schemas.from_keras`` among them) must be in no cycle
  at all, and only ``keras_json`` (the front) imports the definitions, never
  the reverse.
"""

from __future__ import annotations

import ast
import functools
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "bnncore_service"

Graph = dict[str, set[str]]


def _modules(root: Path, package: str) -> dict[str, Path]:
    modules = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.Module, import_time: bool) -> list[ast.Import | ast.ImportFrom]:
    """The import statements of a module: those run at import time, or all."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
            return
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if import_time and isinstance(
            node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda
        ):
            return
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph(root: Path, package: str, import_time: bool) -> Graph:
    """Module → the modules of ``package`` it imports (by name, resolved to the
    most specific module that exists; relative imports resolved)."""
    modules = _modules(root, package)
    graph: Graph = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        here = name if is_package else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in _imports(tree, import_time):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    parts = here.split(".")
                    parts = parts[: len(parts) - node.level + 1]
                    base = ".".join([*parts, *([base] if base else [])])
                # ``from a import b`` imports module a.b when it is one.
                targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: Graph) -> list[list[str]]:
    """The strongly connected components of more than one module (each
    holds at least one cycle), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(graph) + 100))
    try:
        for node in sorted(graph):
            if node not in index:
                connect(node)
    finally:
        sys.setrecursionlimit(limit)
    return sorted(found)


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_cycle_finder_finds_hidden_and_import_time_cycles(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "from pkg.b import thing\n",
            "pkg/b.py": "def f():\n    from pkg import a\n",
            "pkg/c.py": "from . import d\n",
            "pkg/d.py": "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from pkg.c import x\n",
            "pkg/sub/__init__.py": "",
            "pkg/sub/e.py": "from ..sub import f\n",
            "pkg/sub/f.py": "import pkg.sub.e\n",
        },
    )
    at_import = import_graph(tmp_path, "pkg", import_time=True)
    everything = import_graph(tmp_path, "pkg", import_time=False)
    assert at_import["pkg.a"] == {"pkg.b"} and at_import["pkg.b"] == set()
    assert everything["pkg.b"] == {"pkg", "pkg.a"}
    # ``from . import d`` runs the package's __init__, then imports pkg.d.
    assert at_import["pkg.c"] == {"pkg", "pkg.d"} and everything["pkg.d"] == set()
    assert cycles(at_import) == [["pkg.sub.e", "pkg.sub.f"]]
    assert cycles(everything) == [["pkg.a", "pkg.b"], ["pkg.sub.e", "pkg.sub.f"]]


def test_no_import_time_cycle_among_service_modules() -> None:
    graph = _service_graph(True)
    assert len(graph) > 40  # the whole package was read
    assert cycles(graph) == []


def test_no_cycle_among_service_modules_even_through_lazy_imports() -> None:
    """Function-level imports count too: no module of the service needs,
    even lazily, a module that needs it back."""
    graph = _service_graph(False)
    assert len(graph) > 40
    assert cycles(graph) == []


@functools.cache
def _service_graph(import_time: bool) -> Graph:
    return import_graph(ROOT, PACKAGE, import_time)


def _schema_modules() -> list[str]:
    return sorted(
        name for name in _service_graph(True) if name.startswith(f"{PACKAGE}.schemas")
    )


@pytest.mark.parametrize("module", _schema_modules())
def test_the_definition_language_is_in_no_cycle_even_through_lazy_imports(
    module: str,
) -> None:
    graph = _service_graph(False)
    tangled = {name for component in cycles(graph) for name in component}
    assert module not in tangled


def test_the_translator_returns_data_and_the_definitions_import_it() -> None:
    graph = _service_graph(False)
    translator = f"{PACKAGE}.schemas.from_keras"
    definitions = f"{PACKAGE}.schemas.definitions"
    front = f"{PACKAGE}.keras_json"
    assert translator in graph[definitions] and definitions in graph[front]
    assert not graph[translator] & {definitions, front}
    assert front not in graph[definitions]
