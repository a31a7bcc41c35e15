"""Report stage: render the run's report (``pipeline.report``) from its upstream stages' products."""

from __future__ import annotations

from pipeline.config import Config
from pipeline.contract import Run, as_metrics
from pipeline.report import find_ablation, render_report
from pipeline.runs import StageContext
from pipeline.stages.base import Stage, StageOutput


def config_slice(cfg: Config) -> dict:
    return {}  # a view of its upstream stages: their hashes are its whole identity


def run(cfg: Config, ctx: StageContext) -> StageOutput:
    root = ctx.dir.parent
    m = render_report(Run.from_upstream(root, ctx.upstream), ctx.dir, find_ablation(root))
    return StageOutput(as_metrics(m), {"html": m.html, "markdown": m.markdown})


STAGE = Stage("report", ("source", "data", "teacher", "distill", "qat", "export", "benchmark"), config_slice, run)
