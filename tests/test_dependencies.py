"""The declared dependencies are exactly what the packages use.

Why: a declared runtime dependency that nothing imports costs every install its size (tensorflow-cpu
was 1.3 GB of it), and an import that is not declared works only while some other package happens to
pull it in. The imports are read with ``ast`` from the source (lazy imports inside functions
included) and mapped to distributions with ``importlib.metadata.packages_distributions()``.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import sys
from pathlib import Path

from packaging.requirements import Requirement

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the test extra installs tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipeline", "exporters", "benchmarks")
FIRST_PARTY = {*PACKAGES, "tests"}
DEV_EXTRAS = {"test"}  # tools for developing the project, not features of it

# Declared runtime dependencies that are needed without being imported by the packages. Each entry
# says who needs it and why that user does not bring it in itself.
# Checked and not needed here: ai-edge-quantizer (litert-torch's fp16 recipe) is a requirement of
# litert-torch; cattrs is a requirement of coremltools, whose converters the tests run with cattrs 26.
NEEDED_WITHOUT_IMPORT = {
    "onnxscript": "torch.onnx.export(dynamo=True) in exporters/onnx.py imports it at run time, and torch "
                  "does not declare it",
}


def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pyproject() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]


def _names(requirements: list[str]) -> set[str]:
    return {_canon(Requirement(r).name) for r in requirements}


def runtime_deps() -> set[str]:
    return _names(_pyproject()["dependencies"])


def extras() -> dict[str, set[str]]:
    return {name: _names(reqs) for name, reqs in _pyproject().get("optional-dependencies", {}).items()}


def imported_modules(folders: tuple[str, ...]) -> dict[str, set[str]]:
    """Top-level third-party module names imported anywhere under ``folders`` -> the files importing them."""
    found: dict[str, set[str]] = {}
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.partition(".")[0]
                    if top not in sys.stdlib_module_names and top not in FIRST_PARTY:
                        found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


@functools.cache
def _packages_distributions() -> dict[str, list[str]]:
    # a scan of every installed distribution's file list (seconds): once per test session, not per module
    return importlib.metadata.packages_distributions()


def distributions_of(module: str) -> set[str]:
    """Distributions that install the top-level ``module`` (empty when none is installed)."""
    return {_canon(d) for d in _packages_distributions().get(module, [])}


def requirement_closure(roots: set[str]) -> set[str]:
    """``roots`` and every distribution they require, transitively, as installed here."""
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [(r, frozenset[str]()) for r in roots]
    while todo:
        item = todo.pop()
        if item in seen:
            continue
        seen.add(item)
        name, wanted_extras = item
        try:
            specs = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for spec in specs:
            req = Requirement(spec)
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in wanted_extras | {""}):
                todo.append((_canon(req.name), frozenset(req.extras)))
    return {name for name, _ in seen}


def _undeclared(imports: dict[str, set[str]], allowed: set[str]) -> list[str]:
    bad = []
    for module, files in sorted(imports.items()):
        dists = distributions_of(module)
        if not dists & allowed:
            where = ", ".join(sorted(files))
            got = f"installed by {sorted(dists)}" if dists else "not installed"
            bad.append(f"{module} ({got}) imported in {where}")
    return bad


def test_every_import_of_the_packages_is_declared() -> None:
    allowed = runtime_deps().union(*[deps for name, deps in extras().items() if name not in DEV_EXTRAS])
    bad = _undeclared(imported_modules(PACKAGES), allowed)
    assert not bad, ("imported but not a declared dependency (add it to [project] dependencies in "
                     "pyproject.toml):\n  " + "\n  ".join(bad))


def test_every_import_of_the_tests_is_declared() -> None:
    allowed = runtime_deps().union(*extras().values())
    bad = _undeclared(imported_modules(("tests",)), allowed)
    assert not bad, ("tests import something neither a runtime dependency nor in an extra (add it to the "
                     "'test' extra in pyproject.toml):\n  " + "\n  ".join(bad))


def test_every_declared_dependency_is_used() -> None:
    used = set().union(*(distributions_of(m) for m in imported_modules(PACKAGES)))
    declared = runtime_deps().union(*[deps for name, deps in extras().items() if name not in DEV_EXTRAS])
    unused = sorted(declared - used - set(NEEDED_WITHOUT_IMPORT))
    assert not unused, (f"declared but never imported by {', '.join(PACKAGES)}: {unused}; remove them from "
                        "pyproject.toml, or list them in NEEDED_WITHOUT_IMPORT with the reason")


def test_allow_list_is_current() -> None:
    """An allow-list entry must be declared and still not imported, or it hides nothing and must go."""
    used = set().union(*(distributions_of(m) for m in imported_modules(PACKAGES)))
    stale = sorted(d for d in NEEDED_WITHOUT_IMPORT if d not in runtime_deps() or d in used)
    assert not stale, f"NEEDED_WITHOUT_IMPORT entries that are not declared or are imported: {stale}"


def test_modules_the_formats_table_needs_come_with_the_declared_dependencies() -> None:
    """Modules looked up by name (``find_spec``) rather than imported are installed by the declared set:
    the default dependencies, plus the family's extra where it names one (``Family.extra``)."""
    from exporters.formats import FAMILIES, FORMATS

    missing = []
    for fam in FAMILIES.values():
        modules = {m.partition(".")[0] for m in fam.requires}
        modules |= {f.runtime.partition(".")[0] for f in FORMATS.values() if f.family == fam.name}
        assert not fam.extra or fam.extra in extras(), f"{fam.name}: no extra {fam.extra!r} in pyproject.toml"
        installed = requirement_closure(runtime_deps() | (extras()[fam.extra] if fam.extra else set()))
        missing += sorted(m for m in modules - FIRST_PARTY if not distributions_of(m) & installed)
    assert not missing, f"the formats table needs {missing}, which no declared dependency installs"


def test_the_test_extra_installs_every_optional_family() -> None:
    """CI installs ``.[test]``: every optional format family's extra must come with it, so its tests run."""
    from exporters.formats import FAMILIES

    test = extras()["test"]
    left_out = sorted(f.extra for f in FAMILIES.values() if f.extra and not extras()[f.extra] <= test)
    assert not left_out, f"extras {left_out} are not in the test extra: their tests would not run in CI"
