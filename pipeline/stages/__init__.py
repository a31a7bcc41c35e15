"""The ordered stage list. Later stages (benchmark, report) append here."""

from pipeline.stages import benchmark, data, distill, export, qat, report, source, teacher
from pipeline.stages.base import Stage, StageOutput, StageSkipped

STAGES: list[Stage] = [source.STAGE, data.STAGE, teacher.STAGE, distill.STAGE, qat.STAGE, export.STAGE,
                       benchmark.STAGE, report.STAGE]

__all__ = ["STAGES", "Stage", "StageOutput", "StageSkipped"]
