"""Export trained students to ONNX, TFLite and CoreML, verify every artifact, describe it with one meta.

Public API (imported lazily, so ``import exporters.formats`` for config validation stays light):

* :data:`FORMATS` / :class:`Format` / :class:`ExportOptions` - the formats table (``exporters.formats``)
* :func:`export_all`, :class:`ExportError` - export + verify + report (``exporters.export``)
* :func:`check_parity`, :class:`ParityError` - artifact vs torch (``exporters.parity``)
* :func:`base_meta`, :func:`artifact_meta`, :func:`compare_meta` - the meta dict (``exporters.metadata``)

``python -m exporters.formats`` prints the table; ``python -m exporters.export --help`` runs a demo.
"""

from __future__ import annotations

import importlib
from typing import Any

_API = {
    "FORMATS": "exporters.formats", "Format": "exporters.formats", "ExportOptions": "exporters.formats",
    "TOLERANCES": "exporters.formats",
    "export_all": "exporters.export", "ExportError": "exporters.export",
    "check_parity": "exporters.parity", "ParityError": "exporters.parity", "ParityResult": "exporters.parity",
    "base_meta": "exporters.metadata", "artifact_meta": "exporters.metadata", "compare_meta": "exporters.metadata",
}

__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'exporters' has no attribute {name!r}")
