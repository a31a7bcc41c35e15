"""One table per concept: format names only in ``exporters.formats``, backend names only in
``benchmarks.backends``, data source names only in ``pipeline.data.sources`` (and the test-set readers
keyed by them), loss defaults only in the config schema; everything else derives from these.

Read statically from every module's syntax tree (docstrings aside: prose may name a format), so a new
hand-written list fails here instead of drifting from its table.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
from pathlib import Path

from benchmarks.backends import BACKENDS, FAMILY_BACKEND
from exporters.formats import DEFAULT_FORMATS, FAMILIES, FORMATS, SHIPPED_FORMAT, TEACHER_FORMATS
from pipeline import losses
from pipeline.config import BenchmarkConfig, DistillConfig, ExportConfig, TorConfig
from pipeline.data.sources import SOURCES, TEST_SETS

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipeline", "exporters", "benchmarks")
# Collections that hold two or more backend names but are not lists of backends: distributions whose
# versions are recorded (a backend and its distribution share a name).
NOT_BACKEND_LISTS = {"pipeline/device.py": "RUNTIME_DISTRIBUTIONS: distributions whose versions a run records",
                     "exporters/formats.py": "Family.tools: distributions whose versions go into an artifact's meta"}


def _modules():
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            tree = ast.parse(path.read_text(), rel)
            docs = {id(n.body[0].value) for n in ast.walk(tree)
                    if isinstance(n, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
                    and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
            yield rel, tree, docs


def _strings(node: ast.AST) -> list[str]:
    elts = node.keys if isinstance(node, ast.Dict) else node.elts
    return [e.value for e in elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]


def _collections(tree: ast.AST):
    return (n for n in ast.walk(tree) if isinstance(n, ast.List | ast.Tuple | ast.Set | ast.Dict))


def test_format_names_are_written_only_in_the_formats_table():
    found = [f"{rel}:{n.lineno} {n.value!r}" for rel, tree, docs in _modules() if rel != "exporters/formats.py"
             for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
             and id(n) not in docs and n.value.rpartition("/")[2] in FORMATS]
    assert not found, "format names written outside exporters/formats.py (derive them from it):\n" + "\n".join(found)


def test_backend_and_source_names_are_listed_only_in_their_tables():
    found = []
    for rel, tree, _ in _modules():
        for node in _collections(tree):
            names = _strings(node)
            backends = [s for s in names if s in BACKENDS]
            if len(backends) > 1 and rel not in ("benchmarks/backends.py", *NOT_BACKEND_LISTS):
                found.append(f"{rel}:{node.lineno} backends {backends}")
            sources = [s for s in names if s in SOURCES]
            if len(sources) > 1 and rel != "pipeline/data/sources.py":
                found.append(f"{rel}:{node.lineno} sources {sources}")
    assert not found, "name lists outside their tables (derive them from the table):\n" + "\n".join(found)


def test_defaults_and_derived_tables_come_from_the_tables():
    assert ExportConfig().formats == list(DEFAULT_FORMATS) == [n for n, f in FORMATS.items() if f.default]
    assert BenchmarkConfig().backends == list(BACKENDS)
    assert ExportConfig().teacher_formats == list(TEACHER_FORMATS)
    assert all(n in FORMATS and not FORMATS[n].needs_int8_model for n in TEACHER_FORMATS)
    assert FORMATS[SHIPPED_FORMAT].precision == "int8"
    assert set(FAMILY_BACKEND) <= set(FAMILIES)  # every host backend runs a family that exists
    assert TEST_SETS == ("aflw2000", "biwi")  # the sources with a whole-dataset reader


def test_loss_defaults_live_only_in_the_schema():
    """LossParams and the loss functions carry no defaults of their own, and the schema's defaults
    reach them whole through ``LossParams.from_config``."""
    no_default = [f.name for f in dataclasses.fields(losses.LossParams)
                  if f.default is not dataclasses.MISSING and f.default is not None]
    assert no_default == []
    with_defaults = {name: [p for p, v in inspect.signature(fn).parameters.items() if v.default is not v.empty]
                     for name, fn in vars(losses).items()
                     if inspect.isfunction(fn) and fn.__module__ == losses.__name__}
    assert {n: d for n, d in with_defaults.items() if d} == {}
    params = losses.LossParams.from_config(DistillConfig())
    tor, distill = TorConfig(), DistillConfig()
    for f in dataclasses.fields(losses.LossParams):
        if f.name == "dataset_threshold":
            continue
        expected = getattr(tor, f.name) if hasattr(tor, f.name) else getattr(distill, f.name)
        assert getattr(params, f.name) == expected, f.name
