"""Source stage: read the configured source once (decode, crop, convert labels to the pipeline's
convention) and cache it, images as one memory-mappable ``.npy`` per split.

Its hash covers only the source's own config (``data.source``, ``data.seed``, the counts of synthetic
sources and the sections the source reads), never the label-noise settings: an ablation over noise
levels reads (or renders) the images once. Parallel ablation workers that reach the same source
folder take a file lock; the second finds the first's result and reuses it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

from pipeline.config import Config, root_problems
from pipeline.contract import SourceMetrics, as_metrics
from pipeline.data.dataset import LABELS_FILE, SOURCE_FILE, SPLITS, images_file, summary, write_source
from pipeline.data.reading import SourceError
from pipeline.data.sources import SOURCES, sections_used
from pipeline.runs import StageContext, read_json
from pipeline.schema import to_dict
from pipeline.stages.base import Stage, StageOutput

log = logging.getLogger(__name__)

NOT_HASHED = ("workers",)  # speed only: the data do not depend on them


def config_slice(cfg: Config) -> dict:
    d = cfg.data
    out: dict = {"source": d.source, "seed": d.seed}
    if SOURCES[d.source].by_count:
        out.update(n_train=d.n_train, n_val=d.n_val, n_test=d.n_test)
    for section in sections_used(d):  # another source's options never rerun anything
        out[section] = {k: v for k, v in to_dict(getattr(d, section)).items() if k not in NOT_HASHED}
    return out


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive lock on ``path`` across processes (a no-op where fcntl is missing)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def run(cfg: Config, ctx: StageContext) -> StageOutput:
    source = SOURCES[cfg.data.source]
    problems = root_problems(cfg.data)
    if problems:  # all at once, each naming its key
        raise SourceError("; ".join(problems))
    artifacts = {"labels": LABELS_FILE, "source": SOURCE_FILE, **{f"{s}_x": images_file(s) for s in SPLITS}}
    with _locked(ctx.dir / ".lock"):
        if (ctx.dir / SOURCE_FILE).exists():  # built by a parallel run of the same source
            log.info("source: reusing %s", ctx.dir)
            return StageOutput(as_metrics(SourceMetrics(**read_json(ctx.dir / SOURCE_FILE)["metrics"])), artifacts)
        t0 = time.perf_counter()
        data = source.read(cfg.data)
        metrics = summary(data, time.perf_counter() - t0)
        if ctx.is_writer:
            write_source(data, source.input_kind, ctx.dir, metrics)
    log.info("source %s: %d/%d/%d train/val/test samples in %.1fs (%.0f/s), %d skipped %s", source.name,
             metrics["n_train"], metrics["n_val"], metrics["n_test"], metrics["read_seconds"],
             metrics["samples_per_second"], metrics["skipped"], metrics["skipped_by_reason"] or "")
    return StageOutput(as_metrics(SourceMetrics(**metrics)), artifacts)


STAGE = Stage("source", (), config_slice, run)
