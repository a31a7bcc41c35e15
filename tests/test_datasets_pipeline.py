"""The data stages in the pipeline: the source is cached apart from the noise, ``dataset check``,
and an end-to-end run on a CSV dataset through the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import load_config
from pipeline.data.dataset import load_dataset
from pipeline.orchestrate import run_pipeline
from tests.test_datasets_formats import pattern, write_300wlp, write_csv, write_jpeg

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def cli(*args):
    return subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True, text=True, timeout=600)


def test_noise_change_reuses_the_cached_source(tiny_sinusoid, tmp_path):
    first = run_pipeline(load_config("sinusoid", tiny_sinusoid), tmp_path, only={"data"})
    again = run_pipeline(load_config("sinusoid", tiny_sinusoid + ["data.noise.outlier_fraction=0.4"]), tmp_path,
                         only={"data"})
    s1, s2 = first.summary["stages"], again.summary["stages"]
    assert s1["source"]["status"] == "ran" and s2["source"]["status"] == "cached"
    assert s2["data"]["status"] == "ran" and s1["source"]["dir"] == s2["source"]["dir"]
    a, b = load_dataset(Path(s1["data"]["dir"])), load_dataset(Path(s2["data"]["dir"]))
    assert isinstance(b.x("train"), np.memmap) and np.array_equal(a.x("train"), b.x("train"))
    assert np.array_equal(a.y_clean("train"), b.y_clean("train"))
    assert b.outlier_mask("train").any(1).mean() == pytest.approx(0.4, abs=0.01)
    assert np.array_equal(a.y("test"), b.y("test"))  # test labels stay clean


def test_dataset_check_json_and_text(tmp_path):
    write_300wlp(tmp_path / "lp")
    r = cli("dataset", "check", "--format", "300w_lp", "--root", str(tmp_path / "lp"), "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert set(report) == {"count", "skipped", "label_names", "units", "stats", "first"}
    assert report["count"] == 6 and sum(report["skipped"].values()) == 3
    assert report["label_names"] == ["yaw", "pitch", "roll"] and report["units"] == "degrees"
    np.testing.assert_allclose(report["first"][1], np.degrees([-0.2, 0.1, 0.05]), atol=1e-3)
    assert report["stats"]["yaw"]["min"] == pytest.approx(np.degrees(-1.0), abs=1e-3)
    write_csv(tmp_path / "ds")
    r = cli("dataset", "check", "--format", "csv", "--root", str(tmp_path / "ds"), "data.csv.units=years")
    assert r.returncode == 0, r.stderr
    assert "10 samples, 7 skipped" in r.stdout and "labels (years)" in r.stdout and "image missing" in r.stdout
    r = cli("dataset", "check", "--format", "biwi", "--root", str(tmp_path / "none.npz"))
    assert r.returncode == 2 and r.stderr.startswith("error: data.biwi.root:") and "Traceback" not in r.stderr


@pytest.mark.slow
def test_end_to_end_on_a_csv_dataset(tmp_path):
    root = tmp_path / "ds"
    lines = ["path,angle,split"]
    for i in range(72):
        write_jpeg(root / f"{i}.jpg", pattern(32, 32, i))
        lines.append(f"{i}.jpg,{(i % 9) * 5.0},{'test' if i % 6 == 0 else 'train'}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    cfg = load_config("smoke.yaml", [
        "experiment=csv_smoke", "data.source=csv", f"data.csv.root={root}", "data.csv.image_size=32",
        "data.csv.units=degrees", "teacher.train.epochs=1", "teacher.train.batch_size=16",
        "distill.train.epochs=1", "distill.train.batch_size=16", "qat.train.batch_size=16",
        "qat.calibration_batches=1", "export.formats=[onnx_fp32,onnx_int8]", "export.parity_samples=4"])
    summary = run_pipeline(cfg, tmp_path / "runs").summary
    stages = summary["stages"]
    assert all(s["status"] == "ran" for s in stages.values()), stages
    src = stages["source"]["metrics"]
    assert (src["n_train"], src["n_val"], src["n_test"]) == (54, 6, 12)
    assert set(stages["teacher"]["metrics"]["test_mae_per_output"]) == {"angle"}
    assert {a["status"] for a in stages["export"]["metrics"]["artifacts"].values()} == {"verified"}


def test_real_data_presets_validate_once_their_roots_are_given(tmp_path):
    from tests.test_datasets_formats import write_aflw, write_biwi, write_mpiigaze

    write_300wlp(tmp_path / "lp")
    write_aflw(tmp_path / "aflw")
    write_biwi(tmp_path / "biwi.npz")
    write_mpiigaze(tmp_path / "mpii")
    cfg = load_config("face_pose_300wlp.yaml", [f"data.w300_lp.root={tmp_path / 'lp'}",
                                                f"data.aflw2000.root={tmp_path / 'aflw'}",
                                                f"data.biwi.root={tmp_path / 'biwi.npz'}"])
    assert cfg.data.source == "300w_lp" and cfg.data.w300_lp.test == ["aflw2000", "biwi"]
    cfg = load_config("gaze_mpiigaze.yaml", [f"data.mpiigaze.root={tmp_path / 'mpii'}"])
    assert cfg.data.source == "mpiigaze" and cfg.data.mpiigaze.both_eyes
