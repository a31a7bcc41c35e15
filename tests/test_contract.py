"""Stage outputs as a contract: typed metrics round-trip through JSON, a manifest missing a field or an
artifact gives one line naming it and the fix, and every stage registers its metrics type."""

from __future__ import annotations

import dataclasses
import json

import pytest

from pipeline import contract
from pipeline.contract import (
    METRICS,
    ContractError,
    DistillMetrics,
    FlaggerMetrics,
    HeadErrors,
    as_metrics,
    from_dict,
)
from pipeline.runs import ArtifactError, StageDir
from pipeline.stages import STAGES


def _distill() -> DistillMetrics:
    e = HeadErrors(1.5, {"yaw": 1.0, "pitch": 2.0}, 2.0)
    return DistillMetrics(1.5, {"yaw": 1.0, "pitch": 2.0}, 2.0, "teacher", "tor_mt",
                          {"label": e, "teacher": e}, {"label": 3.0}, {"label": 2.5}, 2.5, 3.0, 4, 1.2, 100,
                          1000, 10000, 0.1, 1.4, FlaggerMetrics({"yaw": 5.0, "pitch": None}, 3, 4, 0.5, None))


def test_every_stage_has_a_metrics_type():
    assert [s.name for s in STAGES] == list(METRICS)


def test_metrics_round_trip_through_json():
    m = _distill()
    d = json.loads(json.dumps(as_metrics(m)))
    assert d["flagger"]["precision"] == 0.5 and d["heads"]["label"]["test_mae"] == 1.5  # summary.json keys
    back = from_dict(DistillMetrics, d)
    assert back == m and isinstance(back.flagger, FlaggerMetrics) and isinstance(back.heads["teacher"], HeadErrors)


def test_missing_field_is_named():
    d = as_metrics(_distill())
    del d["flagger"]["recall"]
    with pytest.raises(ContractError, match=r"flagger: missing field 'recall' of FlaggerMetrics"):
        from_dict(DistillMetrics, d)
    with pytest.raises(TypeError, match="must be a dataclass"):
        as_metrics({"test_mae": 1.0})


def _stage(tmp_path, metrics: dict, artifacts: dict) -> StageDir:
    sd = StageDir("distill", "abc", tmp_path / "distill-abc")
    sd.begin({})
    sd.complete(metrics, artifacts, {}, 0.0)
    return sd


def test_read_metrics_and_artifacts_through_the_manifest(tmp_path):
    sd = _stage(tmp_path, as_metrics(_distill()), {"flagged_outliers": "flags.csv", "model": "student.pt"})
    (sd.path / "flags.csv").write_text("index,label_yaw,teacher_yaw,residual_yaw\n7,40.0,1.0,39.0\n")
    assert contract.read_metrics(sd) == _distill()
    assert contract.load_flagged(sd) == [{"index": 7, "label_yaw": 40.0, "teacher_yaw": 1.0, "residual_yaw": 39.0}]
    with pytest.raises(ArtifactError, match=r"student\.pt is missing; rebuild it with --force distill"):
        contract.artifact_path(sd, "model")
    with pytest.raises(ArtifactError, match=r"lists no artifact 'int8_model' \(has: flagged_outliers, model\)"):
        contract.artifact_path(sd, "int8_model")
    assert contract.load_curves(sd) == []  # no training curves listed: nothing to plot


def test_old_manifest_names_the_fix(tmp_path):
    d = as_metrics(_distill())
    del d["flagger"]
    sd = _stage(tmp_path, d, {})
    with pytest.raises(ContractError, match=r"missing field 'flagger'.*rebuild it with --force distill"):
        contract.read_metrics(sd)


def test_incomplete_stage_and_missing_run(tmp_path):
    sd = StageDir("teacher", "x", tmp_path / "teacher-x")
    sd.begin({})
    with pytest.raises(ArtifactError, match="missing or unreadable"):
        contract.read_metrics(sd)
    with pytest.raises(ArtifactError, match="not a run folder"):
        contract.Run.open(tmp_path)


def test_metric_types_are_plain_dataclasses():
    for cls in METRICS.values():
        assert dataclasses.is_dataclass(cls)
