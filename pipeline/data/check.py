"""``python -m pipeline dataset check --format FORMAT --root DIR [--json]``: read a dataset as the
pipeline would and say what it holds (count, skipped samples by reason, label names and units,
per-label min / max / mean, the first labels in the pipeline's convention) before a long run.
"""

from __future__ import annotations

import json

import numpy as np

from pipeline.config import Config, DataConfig, data_problems, root_problems
from pipeline.data.reading import SourceError
from pipeline.data.sources import SOURCES
from pipeline.schema import ConfigError, apply_overrides, build


def check(fmt: str, root: str, overrides: list[str] | None = None) -> dict:
    """The report as a dict: ``count``, ``skipped``, ``label_names``, ``units``, ``stats``, ``first``.

    Every sample is read in order into one split (validation and test carving off, no test sets),
    so ``first`` is the first samples read; MPIIGaze keeps its test person apart and counts it.
    """
    if fmt not in SOURCES:
        raise ConfigError([f"--format {fmt}: unknown format; use one of: {', '.join(SOURCES)}"])
    section = SOURCES[fmt].section
    raw: dict = {"data": {"source": fmt, section: {"root": root}}}
    for key, value in (("test", []), ("val_fraction", 0.0), ("test_fraction", 0.0)):
        if hasattr(getattr(DataConfig(), section), key):
            raw["data"][section][key] = value
    raw = apply_overrides(raw, list(overrides or []))
    problems: list[str] = []
    data_cfg = build(Config, raw, "", problems).data
    problems += (data_problems(data_cfg) or root_problems(data_cfg)) if not problems else []
    if problems:
        raise ConfigError(problems)
    try:
        src = SOURCES[fmt].read(data_cfg)
    except SourceError as exc:
        raise ConfigError([str(exc)]) from exc
    order = ("train", "test", "val")
    ys = [src.splits[s].y for s in order if len(src.splits[s].y)]
    y = np.concatenate(ys) if ys else np.zeros((0, len(src.output_names)), np.float32)
    stats = {name: {"min": float(y[:, i].min()), "max": float(y[:, i].max()), "mean": float(y[:, i].mean())}
             for i, name in enumerate(src.output_names)} if len(y) else {}
    return {"count": int(len(y)), "skipped": {k: int(v) for k, v in sorted(src.skipped.items())},
            "label_names": list(src.output_names), "units": src.units, "stats": stats,
            "first": [[round(float(v), 4) for v in row] for row in y[:5]]}


def format_report(fmt: str, root: str, report: dict) -> str:
    lines = [f"{fmt} at {root}: {report['count']} samples, {sum(report['skipped'].values())} skipped"]
    for reason, n in report["skipped"].items():
        lines.append(f"  skipped {n:>6}  {reason}")
    lines.append(f"labels ({report['units']}):")
    for name, s in report["stats"].items():
        lines.append(f"  {name:<10} min {s['min']:9.3f}  max {s['max']:9.3f}  mean {s['mean']:9.3f}")
    lines.append("first labels (" + ", ".join(report["label_names"]) + "):")
    lines += ["  " + "  ".join(f"{v:9.3f}" for v in row) for row in report["first"]]
    return "\n".join(lines)


def main(fmt: str, root: str, as_json: bool, overrides: list[str] | None = None) -> int:
    report = check(fmt, root, overrides)
    print(json.dumps(report) if as_json else format_report(fmt, root, report))
    return 0
