"""Run the stage list in order with caching, forcing and a summary.

A stage whose folder's manifest says complete is ``cached``; otherwise it runs (resuming from its
recovery checkpoint if a previous run was killed). ``force`` reruns the named stages and everything
downstream from scratch. A failing stage is recorded as ``failed`` with its reason and every stage
that needs it as ``skipped``; ``<out>/<experiment>/summary.json`` is written after every stage.
"""

from __future__ import annotations

import logging
import shutil
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pipeline.config import Config
from pipeline.device import resolve_device
from pipeline.runs import StageContext, StageDir, atomic_write_json, atomic_write_text, dir_size, stage_hash
from pipeline.schema import to_dict
from pipeline.stages import STAGES, Stage
from pipeline.stages.base import StageSkipped

log = logging.getLogger(__name__)

SUMMARY = "summary.json"


@dataclass
class PlannedStage:
    stage: Stage
    dir: StageDir
    slice: object


@dataclass
class RunResult:
    summary: dict
    path: Path
    failed: list[str] = field(default_factory=list)


def plan(cfg: Config, out: Path) -> list[PlannedStage]:
    """Every stage's folder, from its config slice and upstream hashes (computed in order)."""
    root = Path(out) / cfg.experiment
    hashes: dict[str, str] = {}
    planned = []
    for st in STAGES:
        sl = st.config_slice(cfg)
        h = stage_hash(st.name, sl, {n: hashes[n] for n in st.needs})
        hashes[st.name] = h
        planned.append(PlannedStage(st, StageDir(st.name, h, root / f"{st.name}-{h}"), sl))
    return planned


def downstream_of(names: set[str]) -> set[str]:
    out = set(names)
    for st in STAGES:
        if any(n in out for n in st.needs):
            out.add(st.name)
    return out


def upstream_of(names: set[str]) -> set[str]:
    by_name = {s.name: s for s in STAGES}
    out = set(names)
    for st in reversed(STAGES):
        if st.name in out:
            out.update(by_name[st.name].needs)
    return out


class _StageLog:
    """Copy every log record to the stage's ``stage.log`` while it runs."""

    def __init__(self, path: Path):
        self.handler = logging.FileHandler(path, mode="a")
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def __enter__(self):
        logging.getLogger().addHandler(self.handler)

    def __exit__(self, *exc):
        logging.getLogger().removeHandler(self.handler)
        self.handler.close()


def run_pipeline(cfg: Config, out: Path, force: set[str] | None = None, only: set[str] | None = None,
                 config_source: str = "") -> RunResult:
    force = downstream_of(force or set())
    selected = upstream_of(only) if only else {s.name for s in STAGES}
    dev = resolve_device(cfg.device, cfg.threads)
    planned = plan(cfg, out)
    root = Path(out) / cfg.experiment
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(root / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
    summary: dict = {"experiment": cfg.experiment, "config": config_source, "device": dev.describe(),
                     "stages": {}}
    result = RunResult(summary, root / SUMMARY)
    dirs = {p.stage.name: p.dir for p in planned}
    bad: dict[str, str] = {}  # stage -> why its dependents cannot run
    for p in planned:
        name, sd = p.stage.name, p.dir
        entry: dict = {"dir": str(sd.path)}
        summary["stages"][name] = entry
        blocked = [n for n in p.stage.needs if n in bad]
        if name not in selected:
            entry.update(status="skipped", reason="not selected (--only)")
        elif blocked:
            entry.update(status="skipped", reason=f"upstream stage {blocked[0]!r} {bad[blocked[0]]}")
            bad[name] = "was skipped"
        elif sd.is_complete() and name not in force:
            m = sd.manifest()
            entry.update(status="cached", metrics=m.get("metrics", {}), duration_s=m.get("duration_s"))
            log.info("%s: cached (%s)", name, sd.path)
        else:
            if name in force and sd.path.exists():
                shutil.rmtree(sd.path)
            _run_one(cfg, p, dirs, dev, entry)
            if entry["status"] == "failed":
                result.failed.append(name)
                bad[name] = "failed"
            # A stage switched off by its config (StageSkipped) does not block its dependents: they
            # see it has no complete manifest and do without it (export skips int8 formats).
        atomic_write_json(result.path, summary)
    summary["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    atomic_write_json(result.path, summary)
    return result


def _run_one(cfg: Config, p: PlannedStage, dirs: dict[str, StageDir], dev, entry: dict) -> None:
    name, sd = p.stage.name, p.dir
    sd.begin(p.slice)
    ctx = StageContext(sd.path, {n: dirs[n] for n in p.stage.needs}, dev)
    started = time.time()
    with _StageLog(sd.path / "stage.log"):
        log.info("%s: start -> %s", name, sd.path)
        try:
            out = p.stage.run(cfg, ctx)
        except StageSkipped as exc:
            entry.update(status="skipped", reason=str(exc))
            log.info("%s: skipped (%s)", name, exc)
            return
        except Exception as exc:  # a stage failure is recorded, never half-marked complete
            entry.update(status="failed", reason=f"{type(exc).__name__}: {exc}",
                         log=str(sd.path / "stage.log"))
            log.error("%s: failed: %s\n%s", name, exc, traceback.format_exc())
            return
        manifest = sd.complete(out.metrics, out.artifacts, {n: dirs[n].hash for n in p.stage.needs}, started)
        size = sum(dir_size(sd.path / a) for a in out.artifacts.values() if (sd.path / a).exists())
        log.info("%s: done in %.1fs -> %s (%.1f MB of artifacts)", name, manifest["duration_s"], sd.path,
                 size / 1e6)
    entry.update(status="ran", metrics=out.metrics, duration_s=manifest["duration_s"])
