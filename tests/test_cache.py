"""Stage hashes, cache skip, --force and --only, failure handling, and resume from a checkpoint."""

import json
from pathlib import Path

import pytest

from pipeline.config import load_config
from pipeline.orchestrate import plan, run_pipeline
from pipeline.runs import atomic_save, atomic_write_json, stage_hash

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_hash_covers_slice_upstream_and_is_stable():
    h = stage_hash("teacher", {"a": 1}, {"data": "x"})
    assert h == stage_hash("teacher", {"a": 1}, {"data": "x"})
    assert h != stage_hash("teacher", {"a": 2}, {"data": "x"})
    assert h != stage_hash("teacher", {"a": 1}, {"data": "y"})
    assert h != stage_hash("distill", {"a": 1}, {"data": "x"})


def test_changing_one_stage_changes_only_it_and_downstream(tiny_sinusoid, tmp_path):
    base = {p.stage.name: p.dir.hash for p in plan(load_config("sinusoid", tiny_sinusoid), tmp_path)}
    changed = {p.stage.name: p.dir.hash for p in
               plan(load_config("sinusoid", tiny_sinusoid + ["distill.tor.k=2.0"]), tmp_path)}
    assert changed["data"] == base["data"] and changed["teacher"] == base["teacher"]
    assert changed["distill"] != base["distill"] and changed["qat"] != base["qat"]
    # Another source's options are outside the data stage's slice.
    other = {p.stage.name: p.dir.hash for p in
             plan(load_config("sinusoid", tiny_sinusoid + ["data.synthetic_faces.yaw_range=10"]), tmp_path)}
    assert other == base


def _statuses(result):
    return {k: v["status"] for k, v in result.summary["stages"].items()}


def test_cached_forced_only_and_failures(tiny_sinusoid, tmp_path):
    only = {"source", "data", "teacher", "distill"}
    cfg = load_config("sinusoid", tiny_sinusoid)
    first = run_pipeline(cfg, tmp_path, only={"distill"})
    st = _statuses(first)
    assert st["data"] == st["teacher"] == st["distill"] == "ran"
    assert all(st[s] == "skipped" for s in st if s not in only)
    summary = json.loads((tmp_path / "sinusoid" / "summary.json").read_text())
    assert summary["stages"]["teacher"]["metrics"]["test_mae"] > 0
    teacher_dir = Path(summary["stages"]["teacher"]["dir"])
    manifest = json.loads((teacher_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete" and (teacher_dir / "teacher.pt").exists()

    second = run_pipeline(cfg, tmp_path, only={"distill"})
    assert {s: _statuses(second)[s] for s in only} == {s: "cached" for s in only}

    forced = run_pipeline(cfg, tmp_path, force={"teacher"}, only={"distill"})
    assert _statuses(forced)["data"] == "cached"
    assert _statuses(forced)["teacher"] == _statuses(forced)["distill"] == "ran"

    # A corrupt upstream artifact fails the stage; it is not marked complete and dependents are skipped.
    distill_dir = Path(forced.summary["stages"]["distill"]["dir"])
    (teacher_dir / "teacher_predictions.npz").write_bytes(b"not an npz")
    broken = run_pipeline(cfg, tmp_path, force={"distill"})
    assert _statuses(broken)["distill"] == "failed"
    reason = broken.summary["stages"]["distill"]["reason"]
    assert "teacher_predictions.npz is not a readable array file" in reason and "--force teacher" in reason
    assert _statuses(broken)["qat"] == "skipped"
    assert not (distill_dir / "manifest.json").exists()


def test_killed_run_resumes_to_the_same_result(tiny_sinusoid, tmp_path, monkeypatch):
    """Kill the teacher at the start of epoch 3; the rerun resumes from checkpoint.pt (epochs 1-2 are not
    redone) and ends with exactly the weights of an uninterrupted run."""
    import pipeline.train as train

    cfg = load_config("sinusoid", tiny_sinusoid + ["teacher.train.epochs=4"])
    clean = run_pipeline(cfg, tmp_path / "clean", only={"teacher"})

    real_order = train.epoch_order

    def dying_order(n, seed, epoch):
        if epoch == 2:
            raise KeyboardInterrupt("simulated kill")
        return real_order(n, seed, epoch)

    monkeypatch.setattr(train, "epoch_order", dying_order)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(cfg, tmp_path / "killed", only={"teacher"})
    teacher_dir = next(p.dir.path for p in plan(cfg, tmp_path / "killed") if p.stage.name == "teacher")
    assert (teacher_dir / "checkpoint.pt").exists() and not (teacher_dir / "manifest.json").exists()
    monkeypatch.setattr(train, "epoch_order", real_order)
    resumed = run_pipeline(cfg, tmp_path / "killed", only={"teacher"})
    epochs = [json.loads(x)["epoch"] for x in (teacher_dir / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3, 4]  # each epoch trained once
    a = clean.summary["stages"]["teacher"]["metrics"]
    b = resumed.summary["stages"]["teacher"]["metrics"]
    assert a["test_mae"] == b["test_mae"] and a["val_mae"] == b["val_mae"]


def test_atomic_write_leaves_no_temp_files(tmp_path):
    target = tmp_path / "m.json"
    atomic_write_json(target, {"a": 1})
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]

    def torn(p: Path) -> None:  # the writer dies after writing part of the file: old file kept, no temp left
        p.write_text('{"a": 3')
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_save(target, torn)
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]
