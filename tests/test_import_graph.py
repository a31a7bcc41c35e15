"""The project's import graph: no cycles, and no import from a lower layer to a higher one.

A cycle works until someone moves an import to module level or imports the other end first; it also
means two modules cannot be understood apart. An upward import (a training module reaching for the
stage list, an exporter for the report) ties the reusable parts to the CLI that drives them, and is
how cycles start. The graph is read statically from every ``import`` and ``from ... import``
statement, lazy ones inside functions included, and a package's ``__init__`` importing its own
submodules counts as an edge too: importing the package runs those imports.
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipeline", "exporters", "benchmarks")

# Lowest first. A module belongs to the layer of its longest matching prefix (a prefix matches itself
# and its submodules); it may import its own layer and the ones below, never one above. The bare
# ``pipeline`` entry places any pipeline module not named here in the lowest layer, the strictest
# place: a new module that imports the stages fails until it is listed with them.
# ``exporters.formats`` and ``benchmarks.backends`` are the name tables config validation checks
# ``export.formats`` and ``benchmark.backends`` against: project-import-free leaves by design (the
# formats table names its exporter modules as strings, imported only when a format is exported), so
# they sit in the lowest layer, and this test keeps them from growing imports of their packages.
# ``pipeline.predict.media`` (reading and writing images and video) needs no model runtime, so the
# benchmarks can make test video with it; ``pipeline.predict.model`` opens an exported artifact through
# its model_meta.json (exporters below it), for ``predict`` and for the benchmarks' real-photo check;
# the rest of ``pipeline.predict`` is the command.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("pipeline", "pipeline.models", "pipeline.quant", "pipeline.data", "pipeline.losses", "pipeline.train",
     "pipeline.objective", "pipeline.runs", "pipeline.contract", "pipeline.config", "pipeline.schema",
     "pipeline.device", "pipeline.console", "pipeline.evaluate", "pipeline.ablation_tables", "pipeline.faces",
     "pipeline.predict.media",
     "exporters.formats", "benchmarks.backends"),
    ("exporters", "benchmarks", "pipeline.predict.model"),
    ("pipeline.stages", "pipeline.orchestrate", "pipeline.ablate", "pipeline.sweep", "pipeline.report",
     "pipeline.summary", "pipeline.predict", "pipeline.api", "pipeline.cli", "pipeline.__main__"),
)


def _modules(root: Path) -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for path in (root / pkg).rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return mods


def _targets(module: str, path: Path, node: ast.AST, mods: dict[str, Path]) -> list[str]:
    """The dotted names an import statement makes ``module`` depend on. ``from pkg import name`` depends
    on ``pkg.name`` where that is a module, else on ``pkg`` itself (its ``__init__`` defines ``name``):
    counting ``pkg`` as well would turn every package whose ``__init__`` re-exports a submodule into a
    cycle with that submodule's siblings."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    assert isinstance(node, ast.ImportFrom)
    base = node.module or ""
    if node.level:  # relative: from the module's package, one level up per extra dot
        package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        package = package[:len(package) - node.level + 1]
        base = ".".join(package + ([base] if base else []))
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """module -> the project modules it imports, at module level or inside functions."""
    mods = _modules(root)
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for module, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            for target in _targets(module, path, node, mods):
                while target and target not in mods:  # `import a.b.name`: the nearest module
                    target = target.rpartition(".")[0]
                if target and target != module:
                    graph[module].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as ``[a, b, ..., a]``, or None."""
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        return list(reversed(exc.args[1]))  # graphlib lists it against the import direction
    return None


def layer_of(module: str) -> int | None:
    matches = [(len(p), i) for i, prefixes in enumerate(LAYERS) for p in prefixes
               if module == p or module.startswith(p + ".")]
    return max(matches)[1] if matches else None


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Every import from a lower layer to a higher one, as readable lines."""
    return sorted(f"{m} (layer {layer_of(m)}) imports {t} (layer {layer_of(t)})"
                  for m, targets in graph.items() for t in targets if layer_of(t) > layer_of(m))


def test_graph_is_read():
    graph = import_graph()
    assert "benchmarks.android" in graph["pipeline.stages.benchmark"]  # a lazy import, inside a function
    assert "pipeline.data.face_render" in graph["pipeline.data.visualize"]
    assert "pipeline.stages.report" in graph["pipeline.stages"]  # a package __init__ importing its submodule


def test_cli_is_a_table_of_small_command_modules():
    """The command line stays a thin layer over pipeline.api: one small module per command group."""
    from pipeline.cli import COMMAND_MODULES, build_parser

    sizes = {p.name: len(p.read_text().splitlines()) for p in (ROOT / "pipeline" / "cli").glob("*.py")}
    assert sizes and max(sizes.values()) < 200, sizes
    listed = {m.__name__.rpartition(".")[2] + ".py" for m in COMMAND_MODULES}
    assert listed == set(sizes) - {"__init__.py", "common.py"}, "a command module missing from COMMAND_MODULES"
    assert "pipeline.api" in import_graph()["pipeline.cli.run"]
    assert {"run", "export", "bench", "report", "sweep", "ablate"} <= set(build_parser()._subparsers._group_actions[0].choices)


def test_every_module_has_a_layer():
    assert [m for m in import_graph() if layer_of(m) is None] == []


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, f"import cycle: {' -> '.join(cycle)}"


def test_no_upward_imports():
    up = upward_imports(import_graph())
    assert not up, ("imports from a lower layer to a higher one (move the shared code down, or list a new "
                    "module in LAYERS):\n" + "\n".join(up))


def _package(tmp_path: Path, files: dict[str, str]) -> dict[str, set[str]]:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return import_graph(tmp_path)


def test_a_cycle_is_caught(tmp_path):
    """The check itself: two modules importing each other inside functions are reported."""
    graph = _package(tmp_path, {"benchmarks/__init__.py": "", "benchmarks/a.py": "def f():\n    from benchmarks.b import g\n",
                                "benchmarks/b.py": "def g():\n    from . import a\n"})
    assert graph["benchmarks.a"] == {"benchmarks.b"} and graph["benchmarks.b"] == {"benchmarks.a"}
    assert find_cycle(graph) in (["benchmarks.a", "benchmarks.b", "benchmarks.a"],
                                 ["benchmarks.b", "benchmarks.a", "benchmarks.b"])


def test_a_cycle_through_a_package_init_is_caught(tmp_path):
    """The shape of the cycle this test was written for: a package's ``__init__`` re-exports a
    submodule that (lazily) imports a module which imports the package back."""
    graph = _package(tmp_path, {"pipeline/__init__.py": "", "pipeline/report/__init__.py": "from .render import r\n",
                                "pipeline/report/render.py": "def r():\n    from pipeline.ablate import t\n",
                                "pipeline/ablate.py": "from pipeline.report import r\n"})
    assert graph["pipeline.report"] == {"pipeline.report.render"}
    assert graph["pipeline.ablate"] == {"pipeline.report"}  # `r` is a name in the package, not a module
    assert find_cycle(graph) is not None


def test_an_upward_import_is_caught(tmp_path):
    graph = _package(tmp_path, {"pipeline/__init__.py": "", "pipeline/runs.py": "def f():\n    import pipeline.stages\n",
                                "pipeline/stages/__init__.py": "from pipeline import runs\n",
                                "exporters/__init__.py": "", "exporters/x.py": "from pipeline.report.render import y\n",
                                "pipeline/report/__init__.py": "", "pipeline/report/render.py": "from exporters import x\n"})
    assert upward_imports(graph) == ["exporters.x (layer 1) imports pipeline.report.render (layer 2)",
                                     "pipeline.runs (layer 0) imports pipeline.stages (layer 2)"]
    assert find_cycle(graph) is not None  # runs <-> stages and x <-> render
