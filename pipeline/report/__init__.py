"""The run report: one self-contained ``report.html`` (styles and PNGs inlined) and ``report.md``.

Built by the ``report`` stage (last in the stage list) and by ``python -m pipeline report RUN_DIR``
from the run's products only (``pipeline.contract``): every figure and number comes from its JSON.
"""

from pipeline.report.render import find_ablation, render_report

__all__ = ["find_ablation", "render_report"]
