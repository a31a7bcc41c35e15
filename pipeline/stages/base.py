"""What a stage is: a name, the stages it needs, the config slice its hash covers, and ``run``.

The orchestrator (``pipeline/orchestrate.py``) is an ordered list of these, not a framework: a stage
reads its own config section and its upstream stages' folders, and writes only into its own folder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipeline.config import Config
from pipeline.runs import StageContext


@dataclass
class StageOutput:
    metrics: dict[str, Any]  # headline figures, copied into summary.json
    artifacts: dict[str, str] = field(default_factory=dict)  # name -> file name inside the stage folder


class StageSkipped(Exception):
    """Raised by a stage that is switched off by its config; the reason goes into summary.json."""


@dataclass(frozen=True)
class Stage:
    name: str
    needs: tuple[str, ...]
    config_slice: Callable[[Config], Any]  # the part of the config this stage's hash covers
    run: Callable[[Config, StageContext], StageOutput]
