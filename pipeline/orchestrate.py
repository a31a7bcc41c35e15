"""Run the stage list in order with caching, forcing and a summary.

A stage whose folder's manifest says complete is ``cached``; otherwise it runs (resuming from its
recovery checkpoint if a previous run was killed). ``force`` reruns the named stages and everything
downstream from scratch. A failing stage is recorded as ``failed`` with its reason and every stage
that needs it as ``skipped``; ``<out>/<experiment>/summary.json`` is written after every stage.

A failure the user can fix (:class:`~pipeline.runs.UserError`, a dataset :class:`SourceError`) is
marked ``user_error`` so the command exits with code 2; the traceback of any failure goes to the
stage's ``stage.log`` and reaches the console only with ``debug``. Before anything runs, the output
folder is probed for writability and the dataset paths are checked (:func:`preflight`).

Under ``torchrun`` every rank walks the same plan: training stages (``DISTRIBUTED_STAGES``) run on
every rank, the others on rank 0 alone, and each stage ends with a barrier that also tells every rank
whether the stage failed anywhere; rank 0 writes all folders, manifests and the summary.

A stage can also complete with failures inside it (the export stage with a format that failed parity):
its metrics carry ``failures``, one line each. They do not block the stages downstream, so a long run
still ends with a benchmark and a report of what did verify, but they are copied into the stage's
summary entry (``failures``) and :attr:`RunResult.failures`, and the command exits 1; a cached stage
carries its failures too, so a rerun exits 1 until the stage is rebuilt with ``--force``.
The summary also records the host (:func:`pipeline.device.host_description`).
"""

from __future__ import annotations

import logging
import shutil
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pipeline.config import Config, root_problems
from pipeline.data.reading import SourceError
from pipeline.device import DeviceInfo, host_description, resolve_device
from pipeline.runs import (
    StageContext,
    StageDir,
    UserError,
    atomic_write_json,
    atomic_write_text,
    check_writable,
    dir_size,
    set_writer,
    stage_hash,
)
from pipeline.schema import ConfigError, to_dict
from pipeline.stages import STAGES, Stage
from pipeline.stages.base import StageSkipped

log = logging.getLogger(__name__)

SUMMARY = "summary.json"
DISTRIBUTED_STAGES = ("teacher", "distill", "qat")  # the stages that train; the rest run on rank 0 only
USER_ERRORS = (UserError, SourceError, ConfigError)


@dataclass
class PlannedStage:
    stage: Stage
    dir: StageDir
    slice: object


@dataclass
class RunResult:
    summary: dict
    path: Path  # the run's summary.json
    failed: list[str] = field(default_factory=list)
    user_errors: list[str] = field(default_factory=list)  # failed stages whose cause the user can fix
    failures: dict[str, list[str]] = field(default_factory=dict)  # stage -> failures inside a completed stage
    writer: bool = True  # False on torchrun ranks other than 0, which print and write nothing

    @property
    def run_dir(self) -> Path:
        """The run folder, ``<out>/<experiment>``."""
        return self.path.parent


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
    """Copy every log record to the stage's ``stage.log`` while it runs (rank 0 only)."""

    def __init__(self, path: Path, enabled: bool = True):
        self.handler = logging.FileHandler(path, mode="a") if enabled else logging.NullHandler()
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def __enter__(self) -> _StageLog:
        logging.getLogger().addHandler(self.handler)
        return self

    def write(self, text: str) -> None:
        """Text for the log file only (a traceback), not the console."""
        if isinstance(self.handler, logging.FileHandler):
            self.handler.stream.write(text)
            self.handler.flush()

    def __exit__(self, *exc):
        logging.getLogger().removeHandler(self.handler)
        self.handler.close()


def preflight(cfg: Config, out: Path, planned: list[PlannedStage]) -> None:
    """Fail before any work on what can be checked up front: an output folder this process cannot
    write to, dataset paths that do not exist (only when the source stage still has to read them)."""
    check_writable(Path(out) / cfg.experiment)
    source = next((p for p in planned if p.stage.name == "source"), None)
    if source is not None and not source.dir.is_complete():
        problems = root_problems(cfg.data)
        if problems:
            raise ConfigError(problems)


def run_pipeline(cfg: Config, out: Path, force: set[str] | None = None, only: set[str] | None = None,
                 config_source: str = "", debug: bool = False) -> RunResult:
    force = downstream_of(force or set())
    selected = upstream_of(only) if only else {s.name for s in STAGES}
    dev = resolve_device(cfg.device, cfg.threads)
    set_writer(dev.is_writer)
    planned = plan(cfg, out)
    root = Path(out) / cfg.experiment
    if dev.is_writer:
        preflight(cfg, out, planned)
    atomic_write_text(root / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
    summary: dict = {"experiment": cfg.experiment, "config": config_source, "device": dev.describe(),
                     "host": host_description(), "stages": {}}
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
            on_this_rank = dev.is_writer or name in DISTRIBUTED_STAGES
            if name in force and sd.path.exists() and dev.is_writer:
                shutil.rmtree(sd.path)
            dev.barrier()  # every rank sees the cleared folder before any reads it
            if on_this_rank:
                _run_one(cfg, p, dirs, dev, entry, debug)
            if dev.any_rank(entry.get("status") == "failed"):  # the stage-boundary barrier
                entry.setdefault("status", "failed")
                entry.setdefault("reason", "failed on another rank")
                result.failed.append(name)
                if entry.get("user_error"):
                    result.user_errors.append(name)
                bad[name] = "failed"
                if dev.distributed:  # ranks may be mid-collective: stop them all (torchrun does)
                    atomic_write_json(result.path, summary)
                    raise SystemExit(2 if entry.get("user_error") else 1)
            # A stage switched off by its config (StageSkipped) does not block its dependents: they
            # see it has no complete manifest and do without it (export skips int8 formats).
        failures = (entry.get("metrics") or {}).get("failures") if entry.get("status") in ("ran", "cached") else None
        if failures:
            entry["failures"] = result.failures[name] = list(failures)
            log.error("%s: %d failed: %s (rerun with --force %s)", name, len(failures), "; ".join(failures), name)
        atomic_write_json(result.path, summary)
    summary["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    atomic_write_json(result.path, summary)
    result.writer = dev.is_writer
    if dev.distributed:
        for entry in summary["stages"].values():
            entry.setdefault("status", "ran on rank 0")
        dev.barrier()
        import torch.distributed

        torch.distributed.destroy_process_group()
    return result


def _run_one(cfg: Config, p: PlannedStage, dirs: dict[str, StageDir], dev: DeviceInfo, entry: dict,
             debug: bool = False) -> None:
    name, sd = p.stage.name, p.dir
    sd.begin(p.slice)
    ctx = StageContext(sd.path, {n: dirs[n] for n in p.stage.needs}, dev)
    started = time.time()
    with _StageLog(sd.path / "stage.log", dev.is_writer) as stage_log:
        log.info("%s: start -> %s", name, sd.path)
        try:
            out = p.stage.run(cfg, ctx)
        except StageSkipped as exc:
            entry.update(status="skipped", reason=str(exc))
            log.info("%s: skipped (%s)", name, exc)
            return
        except Exception as exc:  # a stage failure is recorded, never half-marked complete
            user = isinstance(exc, USER_ERRORS)
            reason = str(exc) if user else f"{type(exc).__name__}: {exc}"
            entry.update(status="failed", reason=reason, log=str(sd.path / "stage.log"), user_error=user)
            stage_log.write(traceback.format_exc())
            if debug:
                log.error("%s: failed: %s\n%s", name, reason, traceback.format_exc())
            else:
                log.error("%s: failed: %s (traceback in %s)", name, reason, sd.path / "stage.log")
            return
        manifest = sd.complete(out.metrics, out.artifacts, {n: dirs[n].hash for n in p.stage.needs}, started)
        size = sum(dir_size(sd.path / a) for a in out.artifacts.values() if (sd.path / a).exists())
        log.info("%s: done in %.1fs -> %s (%.1f MB of artifacts)", name, manifest["duration_s"], sd.path,
                 size / 1e6)
    entry.update(status="ran", metrics=out.metrics, duration_s=manifest["duration_s"])
