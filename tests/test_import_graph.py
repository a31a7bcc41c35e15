"""No import cycles between the project's modules, lazy (in-function) imports included.

A cycle works until someone moves an import to module level or imports the other end first; it also
means two modules cannot be understood apart. The graph is read statically from every ``import`` and
``from ... import`` statement in the packages, and ``graphlib`` reports any cycle.
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipeline", "exporters", "benchmarks")


def _modules(root: Path) -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for path in (root / pkg).rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return mods


def _targets(module: str, path: Path, node: ast.AST) -> list[str]:
    """Every dotted name an import statement may load (``from a import b`` may load ``a.b``)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    assert isinstance(node, ast.ImportFrom)
    base = node.module or ""
    if node.level:  # relative: from the module's package, one level up per extra dot
        package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        package = package[:len(package) - node.level + 1]
        base = ".".join(package + ([base] if base else []))
    return [base] + [f"{base}.{a.name}" for a in node.names]


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """module -> the project modules it imports (a package's own submodules and parents excluded)."""
    mods = _modules(root)
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for module, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            for target in _targets(module, path, node):
                while target and target not in mods:
                    target = target.rpartition(".")[0]
                related = target == module or module.startswith(target + ".") or target.startswith(module + ".")
                if target and not related:
                    graph[module].add(target)
    return graph


def test_graph_is_read():
    graph = import_graph()
    assert "pipeline.orchestrate" in graph["pipeline.__main__"]  # a lazy import, inside a function
    assert "pipeline.data.face_render" in graph["pipeline.data.visualize"]


def test_no_import_cycles():
    try:
        tuple(graphlib.TopologicalSorter(import_graph()).static_order())
    except graphlib.CycleError as exc:
        raise AssertionError(f"import cycle: {' -> '.join(exc.args[1])}") from None


def test_a_cycle_is_caught(tmp_path):
    """The check itself: two modules importing each other inside functions are reported."""
    pkg = tmp_path / "benchmarks"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from benchmarks.b import g\n")
    (pkg / "b.py").write_text("def g():\n    from . import a\n")
    graph = import_graph(tmp_path)
    assert graph["benchmarks.a"] == {"benchmarks.b"} and graph["benchmarks.b"] == {"benchmarks.a"}
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError:
        return
    raise AssertionError("the cycle a <-> b was not reported")
