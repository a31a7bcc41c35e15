"""The ablation: methods x outlier fractions x noise levels x seeds, through the cached stage runs.

    python -m pipeline ablate face_pose.yaml [key=value ...] [--grid quick|full] [--out DIR]
        [--methods a,b] [--fractions 0,0.1] [--noise 0,2,5] [--seeds 3] [--jobs 2]
        [--vary distill.tor.threshold=chauvenet,mad_k]

Every grid point is an ordinary pipeline run (stages data -> teacher -> distill) of the preset with
``data.noise.std``, ``data.noise.outlier_fraction``, ``distill.method`` and ``distill.train.seed``
overridden, so data and teachers are built once per noise setting and reused by every method and
seed (the seed varies the student's initialization and batch order). ``--vary KEY=v1,v2`` crosses
every method with values of one more option (a knob sweep); each combination is a row "variant". Phase 1 builds the data and
teachers, phase 2 the students; each phase runs ``--jobs`` processes of ``threads / jobs`` threads.

Writes ``<out>/<experiment>_ablation/`` (or its subfolder ``--name NAME``): ``ablation.json`` (one row per run), ``ablation.md``
(mean ± std of clean-test MAE per method and setting, and the noisy-validation MAE used for any
choice of defaults) and ``ablation.png`` (error vs outlier fraction, one line per method), with
``pipeline.ablation_tables``, which the run report shares.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing as mp
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from tqdm import tqdm

from pipeline.ablation_tables import Grid, Variant, markdown_table, plot
from pipeline.config import load_config
from pipeline.contract import DistillMetrics, TeacherMetrics, read_metrics
from pipeline.losses import METHODS
from pipeline.orchestrate import run_pipeline
from pipeline.runs import atomic_write_bytes, atomic_write_json, atomic_write_text
from pipeline.schema import ConfigError

log = logging.getLogger(__name__)

DEFAULT_FRACTIONS = (0.0, 0.1, 0.2, 0.4)


# `--grid quick` divides the epochs: the student's budget is cut harder because there are 7 methods x
# 4 fractions x 2 seeds of them, against 4 teachers (measured: the face grid then fits in 20 min on 2 cores).
QUICK_TEACHER_DIVISOR = 3
QUICK_STUDENT_DIVISOR = 8


def quick_overrides(cfg) -> tuple[str, ...]:
    """`--grid quick`: a third of the teacher's epochs, an eighth of the student's, and 2 seeds."""
    return (f"teacher.train.epochs={max(1, cfg.teacher.train.epochs // QUICK_TEACHER_DIVISOR)}",
            f"distill.train.epochs={max(1, cfg.distill.train.epochs // QUICK_STUDENT_DIVISOR)}")


def make_grid(config: str, overrides: list[str], grid: str, methods: str | None, fractions: str | None,
              noise: str | None, seeds: int | None, vary: str | None = None) -> Grid:
    cfg = load_config(config, overrides)
    problems = []
    ms = tuple(methods.split(",")) if methods else tuple(METHODS)
    problems += [f"--methods {m}: unknown method; use any of: {', '.join(METHODS)}" for m in ms if m not in METHODS]

    def floats(text: str | None, default: tuple[float, ...], flag: str) -> tuple[float, ...]:
        if not text:
            return default
        try:
            return tuple(float(v) for v in text.split(","))
        except ValueError:
            problems.append(f"{flag} {text}: expected comma-separated numbers, e.g. 0,0.1,0.2")
            return default
    fr = floats(fractions, DEFAULT_FRACTIONS, "--fractions")
    nz = floats(noise, (cfg.data.noise.std,), "--noise")
    n_seeds = seeds if seeds is not None else (2 if grid == "quick" else 3)
    if n_seeds < 1:
        problems.append(f"--seeds {n_seeds}: need at least 1")
    variants = [Variant(m, m, ()) for m in ms]
    if vary:
        key, _, values = vary.partition("=")
        if not values:
            problems.append(f"--vary {vary}: write KEY=v1,v2 (e.g. distill.tor.threshold=chauvenet,mad_k)")
        else:
            variants = [Variant(f"{m} {key.rsplit('.', 1)[-1]}={v}", m, (f"{key}={v}",))
                        for m in ms for v in values.split(",")]
            for v in variants:  # every combination must be a valid config
                try:
                    load_config(config, overrides + list(v.overrides))
                except ConfigError as exc:
                    problems += [f"--vary: {p}" for p in exc.problems]
                    break
    if problems:
        raise ConfigError(problems)
    extra = quick_overrides(cfg) if grid == "quick" else ()
    return Grid(tuple(variants), fr, nz, tuple(range(n_seeds)), extra)


def point_overrides(noise: float, fraction: float, variant: Variant | None, seed: int | None) -> list[str]:
    out = [f"data.noise.std={noise}", f"data.noise.outlier_fraction={fraction}"]
    if variant is not None:
        out += [f"distill.method={variant.method}", f"distill.train.seed={seed}", *variant.overrides]
    return out


def _run_point(config: str, overrides: list[str], out: str, threads: int, only: str) -> dict:
    """One pipeline run in a worker process; returns the typed metrics of its teacher and of ``only``."""
    import torch

    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(threads)
    cfg = load_config(config, overrides + [f"threads={threads}"])
    res = run_pipeline(cfg, Path(out), only={only})
    entry = res.summary["stages"][only]
    if entry["status"] not in ("ran", "cached"):
        raise RuntimeError(f"{only} {entry['status']}: {entry.get('reason')}")
    return {name: read_metrics(Path(res.summary["stages"][name]["dir"])) for name in {"teacher", only}}


def run_ablation(config: str, overrides: list[str], out: Path, grid: Grid, jobs: int, name: str | None = None
                 ) -> dict:
    base = load_config(config, overrides)
    experiment = f"{base.experiment}_ablation"
    common = list(overrides) + list(grid.overrides) + [f"experiment={experiment}"]
    total_threads = base.threads or len(os.sched_getaffinity(0))
    jobs = max(1, min(jobs, total_threads))
    threads = max(1, total_threads // jobs)
    t0 = time.perf_counter()
    ctx = mp.get_context("spawn")  # torch + fork can deadlock; spawn is safe everywhere
    teachers: dict[tuple[float, float], TeacherMetrics] = {}
    rows = []
    settings = list(itertools.product(grid.noise, grid.fractions))
    points = list(itertools.product(grid.noise, grid.fractions, grid.variants, grid.seeds))
    with ProcessPoolExecutor(jobs, mp_context=ctx) as pool, \
            tqdm(total=len(settings) + len(points), desc="ablation", dynamic_ncols=True) as bar:
        futs = {pool.submit(_run_point, config, common + point_overrides(n, f, None, None), str(out), threads,
                            "teacher"): (n, f) for n, f in settings}
        for fut in as_completed(futs):
            teachers[futs[fut]] = fut.result()["teacher"]
            bar.update()
        futs = {pool.submit(_run_point, config, common + point_overrides(n, f, m, s), str(out), threads,
                            "distill"): (n, f, m, s) for n, f, m, s in points}
        for fut in as_completed(futs):
            n, f, v, s = futs[fut]
            m = v.method
            d: DistillMetrics = fut.result()["distill"]
            flag = d.flagger if METHODS[m].rejects_outliers else None
            rows.append({"method": m, "variant": v.label, "outlier_fraction": f, "noise_std": n, "seed": s,
                         "test_mae": d.test_mae, "test_mae_per_output": d.test_mae_per_output,
                         "val_mae": d.val_mae, "val_mae_unflagged": d.val_mae_unflagged,
                         "heads_val_mae": d.heads_val_mae, "heads_val_mae_unflagged": d.heads_val_mae_unflagged,
                         "heads_test_mae": {h: e.test_mae for h, e in d.heads.items()},
                         "teacher_test_mae": teachers[(n, f)].test_mae,
                         "flagger_precision": flag.precision if flag else None,
                         "flagger_recall": flag.recall if flag else None,
                         "flagger_missed_error_share": flag.missed_error_share if flag else None})
            bar.update()
            bar.set_postfix_str(f"{v.label} f={f} seed={s}: {d.test_mae:.3f}")
    labels = [v.label for v in grid.variants]
    rows.sort(key=lambda r: (r["noise_std"], r["outlier_fraction"], labels.index(r["variant"]), r["seed"]))
    wall = time.perf_counter() - t0
    root = Path(out) / experiment / (name or "")
    result = {"config": config, "overrides": common, "jobs": jobs, "threads_per_job": threads,
              "wall_seconds": round(wall, 1), "grid": {"variants": labels, "fractions": grid.fractions,
                                                         "noise": grid.noise, "seeds": grid.seeds},
              "rows": rows}
    atomic_write_json(root / "ablation.json", result)
    atomic_write_text(root / "ablation.md", markdown_table(rows, grid))
    atomic_write_bytes(root / "ablation.png", plot(rows, grid))
    return result


def format_summary(result: dict) -> str:
    return (f"ablation: {len(result['rows'])} runs in {result['wall_seconds']:.0f}s "
            f"({result['jobs']} jobs x {result['threads_per_job']} threads)")
