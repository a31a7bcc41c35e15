"""The ablation through the CLI on a tiny sinusoid grid: rows, table values, reuse of data and teachers."""

import json
import subprocess
import sys

import numpy as np
import pytest

from pipeline.contract import Run
from tests.conftest import TINY_SINUSOID

pytestmark = pytest.mark.slow


def test_tiny_ablation_grid(tmp_path):
    args = [sys.executable, "-m", "pipeline", "ablate", "sinusoid", *TINY_SINUSOID, "--out", str(tmp_path),
            "--methods", "scratch_l2,tor_mt", "--fractions", "0,0.2", "--seeds", "2", "--jobs", "2", "--name", "study"]
    r = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    root = tmp_path / "sinusoid_ablation"
    study = root / "study"  # --name: the tables in a subfolder, the stage cache shared in root
    assert not (root / "ablation.json").exists()
    result = json.loads((study / "ablation.json").read_text())
    rows = result["rows"]
    assert len(rows) == 2 * 2 * 2
    assert {(x["method"], x["outlier_fraction"], x["seed"]) for x in rows} == {
        (m, f, s) for m in ("scratch_l2", "tor_mt") for f in (0.0, 0.2) for s in (0, 1)}
    for x in rows:
        assert set(x) >= {"method", "outlier_fraction", "noise_std", "seed", "test_mae", "test_mae_per_output",
                          "flagger_precision", "flagger_recall"}
        assert x["test_mae"] > 0 and set(x["test_mae_per_output"]) == {"y"}
        # the flagger is scored for the TOR methods only, and only where outliers exist
        assert (x["flagger_recall"] is not None) == (x["method"] == "tor_mt" and x["outlier_fraction"] > 0)
    # one data and one teacher folder per outlier fraction, shared by both methods and seeds
    assert len(list(root.glob("teacher-*"))) == 2 and len(list(root.glob("data-*"))) == 2
    assert len(list(root.glob("distill-*"))) == 8
    table = (study / "ablation.md").read_text()
    sel = [x["test_mae"] for x in rows if x["method"] == "tor_mt" and x["outlier_fraction"] == 0.2]
    expected = f"{np.mean(sel):.3f} ± {np.std(sel):.3f}"
    tor_line = next(line for line in table.splitlines() if line.startswith("| tor_mt |"))
    assert expected in tor_line
    # the per-head table: auto is the head with the lowest noisy-validation error on unflagged samples
    picks = [min(("label", "teacher", "mean"), key=x["heads_val_mae_unflagged"].get) for x in rows
             if x["method"] == "tor_mt" and x["outlier_fraction"] == 0.2]
    auto = [x["heads_test_mae"][h] for x, h in zip(
        [x for x in rows if x["method"] == "tor_mt" and x["outlier_fraction"] == 0.2], picks, strict=True)]
    auto_line = next(line for line in table.splitlines() if line.startswith("| tor_mt, auto |"))
    assert auto_line.split("|")[3].strip() == f"{np.mean(auto):.3f}"
    assert "| tor_mt: auto picked the clean-test best head |" in table
    assert not any(line.startswith("| scratch_l2, ") for line in table.splitlines())
    assert (study / "ablation.png").stat().st_size > 5000
    # the report of a run of the same preset shows the ablation: its tables (heads included) and plot
    run = subprocess.run([sys.executable, "-m", "pipeline", "run", "sinusoid", *TINY_SINUSOID, "benchmark.enabled=false",
                          "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    # the report writes only into its own folder: with the ablation's plot gone it draws one for itself
    (study / "ablation.png").unlink()
    before = {p.name: p.stat().st_mtime_ns for p in study.iterdir()}
    rep = subprocess.run([sys.executable, "-m", "pipeline", "report", str(tmp_path / "run" / "sinusoid"),
                          "--ablation", str(study)], capture_output=True, text=True, timeout=600)
    assert rep.returncode == 0, rep.stderr[-3000:]
    assert {p.name: p.stat().st_mtime_ns for p in study.iterdir()} == before
    report_dir = Run.open(tmp_path / "run" / "sinusoid").stage("report")  # the one with the ablation
    assert (report_dir / "figures" / "ablation.png").stat().st_size > 5000
    md = (report_dir / "report.md").read_text()
    assert "Method: ablation" in md and tor_line in md and auto_line in md
    html = (report_dir / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 2  # the ablation plot is inlined with the others
    # bad grid arguments are user errors
    bad = subprocess.run([sys.executable, "-m", "pipeline", "ablate", "sinusoid", "--methods", "tor_mtt"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown method" in bad.stderr
    bad = subprocess.run([sys.executable, "-m", "pipeline", "ablate", "sinusoid", "--name", "../elsewhere"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "--name ../elsewhere: use a plain folder name" in bad.stderr


def test_auto_head_is_the_lowest_noisy_validation_error(tmp_path):
    """inference_head=auto picks the head by noisy-validation error on unflagged samples, never by clean test."""
    args = [sys.executable, "-m", "pipeline", "run", "sinusoid", *TINY_SINUSOID, "distill.inference_head=auto",
            "distill.tor.reject=sample", "--only", "distill", "--out", str(tmp_path)]
    r = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    manifest = json.loads(next(tmp_path.rglob("distill-*/manifest.json")).read_text())
    m = manifest["metrics"]
    val = m["heads_val_mae_unflagged"]
    assert m["head"] == min(val, key=val.get)
    assert m["test_mae"] == m["heads"][m["head"]]["test_mae"]
    assert m["val_mae_unflagged"] == val[m["head"]]
