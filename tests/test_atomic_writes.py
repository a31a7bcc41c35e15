"""Every write is atomic: a writer killed mid-file leaves the old artifact or none, never a torn one,
and no write in the packages bypasses ``pipeline.runs``' helpers.

The kill is deterministic: a child process writes half of a large artifact through the helper, says
so on a pipe, then blocks until the test SIGKILLs it. The static check reads every module's syntax
tree for file-writing calls that are not inside ``with atomic_path(...)`` or a writer handed to
``atomic_save``; the few legitimate exceptions are listed with the reason.
"""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pipeline.runs import PARTIAL_PREFIX, StageDir, atomic_path, atomic_save, atomic_write_bytes

ROOT = Path(__file__).resolve().parents[1]
HALF = 4 << 20  # bytes written before the kill: large enough that a torn file would be obvious

# Written by the child: half the new content, a line on stdout, then it waits on stdin until killed.
WRITER = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    from pipeline.runs import atomic_path

    dest, kind = Path(sys.argv[1]), sys.argv[2]
    with atomic_path(dest) as tmp:
        if kind == "folder":  # a package like .mlpackage: a folder of files
            tmp.mkdir()
            (tmp / "Manifest.json").write_text("{}")
            target = tmp / "weight.bin"
        else:
            target = tmp
        with open(target, "wb") as fh:
            fh.write(b"n" * HALF)
            fh.flush()
            os.fsync(fh.fileno())
            print("half", flush=True)
            sys.stdin.read()  # never returns: the parent kills this process here
            fh.write(b"n" * HALF)
""").replace("HALF", str(HALF))


def _kill_mid_write(dest: Path, kind: str = "file") -> None:
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(dest), kind], cwd=ROOT, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "half", "the writer did not reach the middle of the file"
        partial = [p for p in dest.parent.iterdir() if p.name.startswith(PARTIAL_PREFIX + dest.name)]
        assert len(partial) == 1  # the half-written copy exists right now, beside the destination
        written = partial[0] / dest.name / ("weight.bin" if kind == "folder" else "")
        assert written.stat().st_size == HALF
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def _visible(folder: Path) -> list[str]:
    """What a reader looking artifacts up by name sees: no hidden temporaries."""
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


@pytest.mark.parametrize("existing", [False, True])
def test_a_killed_writer_leaves_the_old_file_or_none(tmp_path, existing):
    stage = StageDir("export", "0" * 12, tmp_path / "export-000000000000")
    stage.path.mkdir()
    dest = stage.path / "model.onnx"
    old = b"old complete artifact\n" * 1000
    if existing:
        atomic_write_bytes(dest, old)
    _kill_mid_write(dest)
    if existing:
        assert dest.read_bytes() == old
    else:
        assert not dest.exists()
    assert _visible(stage.path) == (["model.onnx"] if existing else [])
    assert list(stage.path.glob("*.onnx")) == ([dest] if existing else [])  # the temporary is not a match
    assert not stage.is_complete()  # no manifest: the stage reruns
    stage.begin({"k": 1})  # the rerun clears what the kill left behind
    assert not [p for p in stage.path.rglob("*") if p.name.startswith(PARTIAL_PREFIX)]
    assert _visible(stage.path) == sorted(["config.yaml"] + (["model.onnx"] if existing else []))


def test_a_killed_package_writer_leaves_the_old_package(tmp_path):
    dest = tmp_path / "coreml_fp32.mlpackage"
    atomic_save(dest, lambda p: (p.mkdir(), (p / "weight.bin").write_bytes(b"old")))
    _kill_mid_write(dest, "folder")
    assert sorted(p.name for p in dest.iterdir()) == ["weight.bin"] and (dest / "weight.bin").read_bytes() == b"old"
    assert _visible(tmp_path) == ["coreml_fp32.mlpackage"]
    with atomic_path(dest) as tmp:  # a completed rewrite replaces the whole folder
        tmp.mkdir()
        (tmp / "Manifest.json").write_text("{}")
    assert sorted(p.name for p in dest.iterdir()) == ["Manifest.json"]
    assert _visible(tmp_path) == ["coreml_fp32.mlpackage"]


def test_a_writer_error_leaves_the_old_file_and_no_temporary(tmp_path):
    dest = tmp_path / "figure.png"
    atomic_write_bytes(dest, b"old")
    with pytest.raises(RuntimeError, match="boom"), atomic_path(dest) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("boom")
    assert dest.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["figure.png"]
    with pytest.raises(FileNotFoundError, match="wrote nothing"), atomic_path(dest):
        pass  # a writer that silently wrote nothing must not look like success
    assert dest.read_bytes() == b"old"


# ------------------------------------------------------------------------------------------------
# Static: no write in the packages bypasses the helpers.
# ------------------------------------------------------------------------------------------------

PACKAGES = ("pipeline", "exporters", "benchmarks")
HELPERS = "pipeline/runs.py"  # where the writes are implemented
# Method names that write a file whatever object they are called on.
WRITE_METHODS = {"write_text", "write_bytes", "savefig", "save", "savez", "savez_compressed", "savemat", "tofile",
                 "to_csv", "to_parquet"}
# module.function calls that write (or move a file into place).
WRITE_FUNCTIONS = {("os", "replace"), ("os", "rename"), ("shutil", "copy"), ("shutil", "copy2"),
                   ("shutil", "copyfile"), ("shutil", "copytree"), ("shutil", "move"), ("json", "dump"),
                   ("pickle", "dump"), ("torch", "save"), ("np", "save"), ("np", "savez"), ("onnx", "save"),
                   ("logging", "FileHandler")}
# (path, call) -> why it is not an artifact write
ALLOWED = {
    ("pipeline/stages/source.py", "open"): "the lock file of the shared source folder: opened for flock, never "
                                           "written",
    ("pipeline/orchestrate.py", "logging.FileHandler"): "stage.log is an append-only log followed while the stage "
                                                        "runs; after a kill its last line may be cut, as a log's is",
    ("benchmarks/real_faces.py", "save"): "PIL encodes the photo grid into an in-memory buffer (io.BytesIO); the "
                                          "benchmark stage writes those bytes with atomic_write_bytes",
}


def _call_name(call: ast.Call) -> str | None:
    """The name of a file-writing call, or None."""
    f = call.func
    if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and (f.value.id, f.attr) in WRITE_FUNCTIONS:
        return f"{f.value.id}.{f.attr}"
    if isinstance(f, ast.Attribute) and f.attr in WRITE_METHODS:
        return f.attr
    is_open = (isinstance(f, ast.Name) and f.id == "open") or (isinstance(f, ast.Attribute) and f.attr == "open")
    if is_open:  # open(path, mode), gzip.open(path, mode) or Path.open(mode): any mode that writes
        modes = call.args[:2] + [k.value for k in call.keywords if k.arg == "mode"]
        if any(isinstance(m, ast.Constant) and isinstance(m.value, str) and 0 < len(m.value) <= 3
               and set(m.value) <= set("rwaxbt+") and set(m.value) & set("wax+") for m in modes):
            return "open"
    if isinstance(f, ast.Name) and f.id == "FileHandler":
        return "logging.FileHandler"
    return None


def _is_helper_call(node: ast.AST, names: tuple[str, ...]) -> bool:
    return isinstance(node, ast.Call) and (
        (isinstance(node.func, ast.Name) and node.func.id in names)
        or (isinstance(node.func, ast.Attribute) and node.func.attr in names))


def _in_memory(call: ast.Call, buffers: set[str]) -> bool:
    """``savefig(buf, ...)`` into an ``io.BytesIO``: no file is written."""
    return bool(call.args) and isinstance(call.args[0], ast.Name) and call.args[0].id in buffers


def bypassing_writes(root: Path = ROOT) -> list[str]:
    """Every file-writing call in the packages outside the atomic helpers, as ``path:line call``."""
    found = []
    for pkg in PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            if rel == HELPERS:
                continue
            tree = ast.parse(path.read_text(), rel)
            buffers = {t.id for node in ast.walk(tree) if isinstance(node, ast.Assign)
                       and _is_helper_call(node.value, ("BytesIO", "StringIO"))
                       for t in node.targets if isinstance(t, ast.Name)}
            safe: set[int] = set()  # ids of nodes inside `with atomic_path(...)` or a writer given to atomic_save
            for node in ast.walk(tree):
                if isinstance(node, ast.With) and any(_is_helper_call(i.context_expr, ("atomic_path",))
                                                      for i in node.items):
                    safe.update(id(n) for stmt in node.body for n in ast.walk(stmt))
                if _is_helper_call(node, ("atomic_save",)):
                    safe.update(id(n) for arg in node.args[1:] for n in ast.walk(arg))
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call) or id(node) in safe:
                    continue
                name = _call_name(node)
                if name is None or (name == "savefig" and _in_memory(node, buffers)):
                    continue
                if (rel, name) not in ALLOWED:
                    found.append((rel, node.lineno, node.col_offset, name))
    return [f"{rel}:{line} {name}" for rel, line, _, name in sorted(found)]


def test_no_write_bypasses_the_atomic_helpers():
    found = bypassing_writes()
    assert not found, ("file writes outside pipeline.runs' atomic helpers (write through atomic_write_*/atomic_save, "
                       "or `with atomic_path(dest) as tmp:` for a third-party writer; list a true exception in "
                       "ALLOWED with the reason):\n" + "\n".join(found))


def test_every_allowed_exception_still_exists():
    """An allowlist entry whose call is gone would silently allow a future one."""
    used = set()
    for rel, name in ALLOWED:
        tree = ast.parse((ROOT / rel).read_text(), rel)
        if any(isinstance(n, ast.Call) and _call_name(n) == name for n in ast.walk(tree)):
            used.add((rel, name))
    assert used == set(ALLOWED)


def test_the_static_check_catches_bypasses(tmp_path):
    """The check itself: direct writes are reported, the same writes through the helpers are not."""
    (tmp_path / "pipeline").mkdir()
    (tmp_path / "exporters").mkdir()
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "pipeline" / "bad.py").write_text(textwrap.dedent("""
        import io, json, os, shutil
        def f(path, fig, data, proto, onnx):
            path.write_text("x")
            with open(path, "wb") as fh:
                fh.write(data)
            fig.savefig(path)
            shutil.copyfile(path, path)
            os.replace(path, path)
            onnx.save(proto, str(path))
            json.dump(data, path.open("w"))
    """))
    (tmp_path / "pipeline" / "good.py").write_text(textwrap.dedent("""
        import io
        from pipeline.runs import atomic_path, atomic_save
        def f(path, fig, proto, onnx):
            with atomic_path(path) as tmp:
                onnx.save(proto, str(tmp))
            atomic_save(path, lambda p: fig.savefig(p))
            buf = io.BytesIO()
            fig.savefig(buf, format="png")
            with open(path) as fh:
                return fh.read()
    """))
    found = bypassing_writes(tmp_path)
    assert [line.split(" ", 1)[1] for line in found if line.startswith("pipeline/bad.py")] == [
        "write_text", "open", "savefig", "shutil.copyfile", "os.replace", "onnx.save", "json.dump", "open"]
    assert not [line for line in found if line.startswith("pipeline/good.py")]


@pytest.mark.slow
def test_every_stage_writes_only_into_its_own_folder(tmp_path, monkeypatch, tiny_sinusoid):
    """A whole tiny run with every write recorded: each lands in the folder of the stage that is running
    (or, for the orchestrator's run-level files, directly in the run folder), nowhere else."""
    import contextlib

    from pipeline import runs
    from pipeline.config import load_config
    from pipeline.orchestrate import run_pipeline

    current: dict[str, Path] = {}
    writes: list[tuple[Path | None, Path]] = []
    real_begin, real_atomic_path = runs.StageDir.begin, runs.atomic_path

    def begin(self, config_slice):
        current["dir"] = self.path
        return real_begin(self, config_slice)

    @contextlib.contextmanager
    def recorded(path):
        writes.append((current.get("dir"), Path(path)))
        with real_atomic_path(path) as tmp:
            yield tmp

    monkeypatch.setattr(runs.StageDir, "begin", begin)
    for module in list(sys.modules.values()):  # the helpers, and modules that imported atomic_path by name
        if getattr(module, "atomic_path", None) is real_atomic_path:
            monkeypatch.setattr(module, "atomic_path", recorded)
    cfg = load_config("sinusoid", tiny_sinusoid + [
        "benchmark.backends=[torch,onnxruntime]", "benchmark.threads=[1]", "export.teacher_formats=[onnx_fp32]",
        "benchmark.repeats=1", "benchmark.warmup=0", "benchmark.min_runs=1", "benchmark.min_time_s=0",
        "benchmark.profile=false"])
    result = run_pipeline(cfg, tmp_path)
    root = tmp_path / cfg.experiment
    stages = {s: Path(v["dir"]) for s, v in result.summary["stages"].items() if v.get("dir")}
    assert {"export", "benchmark", "report"} <= set(stages) and len(writes) > 20
    outside = [f"{dest} (while {stage.name if stage else 'no stage'} ran)" for stage, dest in writes
               if dest.parent != root and (stage is None or not dest.is_relative_to(stage))]
    assert not outside, "writes outside the running stage's folder:\n" + "\n".join(outside)
    # every stage wrote into its own folder, its manifest last
    for name, folder in stages.items():
        mine = [dest for stage, dest in writes if stage == folder and dest.is_relative_to(folder)]
        assert mine and mine[-1] == folder / "manifest.json", name
