"""Adapts ``exporters.coreml`` to the family signatures used by the formats table.

``exporters.coreml`` exposes ``export_coreml(model, sample, out_path, precision, meta) -> Path``
(``exporters.runtimes`` runs the result). This module gives them the ``(model, sample, out_dir, options)`` shape of every other family
and reads the embedded meta back. Normally used via ``export_all``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from exporters.formats import FORMATS, ExportOptions

log = logging.getLogger(__name__)


def export(model: nn.Module, sample: torch.Tensor, out_dir: Path, options: ExportOptions) -> Path:
    """Write ``<format>.mlpackage`` into ``out_dir`` via ``exporters.coreml.export_coreml``."""
    from exporters.coreml import export_coreml

    fmt = FORMATS[options.format]
    out_path = Path(out_dir) / f"{fmt.name}{fmt.suffix}"
    return Path(export_coreml(model, sample, out_path, fmt.precision, options.meta))


def read_meta(path: Path) -> dict | None:
    """The meta embedded in the package's ``user_defined_metadata`` (None if absent)."""
    from exporters.coreml import read_metadata

    return read_metadata(path)
