"""Report stage: render the run's report (``pipeline.report``) from its upstream stages' products."""

from __future__ import annotations

from pathlib import Path

from pipeline.config import Config
from pipeline.contract import Run, as_metrics
from pipeline.report import find_ablation, render_report
from pipeline.runs import StageContext
from pipeline.schema import to_dict
from pipeline.stages.base import Stage, StageOutput


def config_slice(cfg: Config) -> dict:
    return {"report": to_dict(cfg.report)}  # otherwise a view of its upstream stages


def run(cfg: Config, ctx: StageContext) -> StageOutput:
    root = ctx.dir.parent
    ablation = Path(cfg.report.ablation) if cfg.report.ablation else find_ablation(root)
    m = render_report(Run.from_upstream(root, ctx.upstream), ctx.dir, ablation)
    return StageOutput(as_metrics(m), {"html": m.html, "markdown": m.markdown})


STAGE = Stage("report", ("source", "data", "teacher", "distill", "qat", "export", "benchmark"), config_slice, run)
