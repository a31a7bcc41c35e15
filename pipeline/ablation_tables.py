"""An ablation's result, apart from running it: the grid it covers, ``ablation.json`` read back, its
Markdown tables and its error-vs-outlier-fraction plot.

``pipeline.ablate`` runs the grid and writes these; the run report (``pipeline.report``) shows an
existing ablation with the same tables. They live here, below both, so that the report never imports
the module that runs pipelines (``pipeline.ablate`` -> ``pipeline.orchestrate`` -> the stages, whose
report stage imports the report back).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.losses import METHODS
from pipeline.models.student import HEADS, auto_head
from pipeline.runs import ArtifactError, read_json


@dataclass(frozen=True)
class Variant:
    label: str  # the row name in tables and plots
    method: str
    overrides: tuple[str, ...]


@dataclass(frozen=True)
class Grid:
    variants: tuple[Variant, ...]
    fractions: tuple[float, ...]
    noise: tuple[float, ...]
    seeds: tuple[int, ...]
    overrides: tuple[str, ...]  # extra overrides that define the grid (quick: fewer epochs)


def load_ablation(root: Path) -> tuple[dict, Grid]:
    """An ablation folder's ``ablation.json`` and the grid it ran, for tables and plots of it."""
    path = Path(root) / "ablation.json"
    if not path.is_file():
        raise ArtifactError(f"{path} is missing; give the folder `python -m pipeline ablate` wrote "
                            "(<out>/<experiment>_ablation)")
    result = read_json(path)
    g = result["grid"]
    methods = {r["variant"]: r["method"] for r in result["rows"]}
    variants = tuple(Variant(v, methods.get(v, v), ()) for v in g["variants"])
    return result, Grid(variants, tuple(g["fractions"]), tuple(g["noise"]), tuple(g["seeds"]), ())


def _agg(rows: list[dict], key: str) -> tuple[float, float]:
    vals = np.array([r[key] for r in rows], float)
    return float(vals.mean()), float(vals.std())


def markdown_table(rows: list[dict], grid: Grid) -> str:
    """Mean ± std over seeds of clean-test MAE, one row per method, one column per setting."""
    lines = []
    for metric, title in (("test_mae", "clean-test MAE"),
                          ("val_mae_unflagged", "noisy-validation MAE on samples the teacher does not flag "
                                                "(what defaults are chosen by)")):
        lines.append(f"### {title}, mean ± std over {len(grid.seeds)} seeds\n")
        cols = list(itertools.product(grid.noise, grid.fractions))
        lines.append("| method | " + " | ".join(f"noise {n:g}, outliers {f:g}" for n, f in cols) + " |")
        lines.append("|---" * (len(cols) + 1) + "|")
        for v in grid.variants:
            m = v.label
            cells = []
            for n, f in cols:
                sel = [r for r in rows if r["variant"] == m and r["noise_std"] == n and r["outlier_fraction"] == f]
                cells.append("{:.3f} ± {:.3f}".format(*_agg(sel, metric)) if sel else "-")
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        teach = []
        for n, f in cols:
            sel = [r for r in rows if r["noise_std"] == n and r["outlier_fraction"] == f]
            teach.append(f"{sel[0]['teacher_test_mae']:.3f}" if sel and metric == "test_mae" else "-")
        if metric == "test_mae":
            lines.append("| (teacher) | " + " | ".join(teach) + " |")
        lines.append("")
    lines += heads_table(rows, grid)
    return "\n".join(lines)


def heads_table(rows: list[dict], grid: Grid) -> list[str]:
    """Two-headed variants: clean-test MAE of each head and of the head ``auto`` picks on noisy
    validation, mean over seeds; how often ``auto`` picked the head that was best on clean test."""
    two = [v for v in grid.variants if METHODS[v.method].two_heads]
    if not two:
        return []
    cols = list(itertools.product(grid.noise, grid.fractions))
    lines = [f"### two-headed methods: clean-test MAE per inference head, mean over {len(grid.seeds)} seeds "
             "(auto: the head with the lowest noisy-validation MAE on unflagged samples, chosen per run)\n",
             "| variant, head | " + " | ".join(f"noise {n:g}, outliers {f:g}" for n, f in cols) + " |",
             "|---" * (len(cols) + 1) + "|"]
    for v in two:
        for head in (*HEADS, "auto"):
            cells = []
            for n, f in cols:
                sel = [r for r in rows if r["variant"] == v.label and r["noise_std"] == n and r["outlier_fraction"] == f]
                vals = [r["heads_test_mae"][auto_head(r["heads_val_mae_unflagged"]) if head == "auto" else head] for r in sel]
                cells.append(f"{np.mean(vals):.3f}" if vals else "-")
            lines.append(f"| {v.label}, {head} | " + " | ".join(cells) + " |")
        sel = [r for r in rows if r["variant"] == v.label]
        hits = sum(auto_head(r["heads_val_mae_unflagged"]) == min(r["heads_test_mae"], key=r["heads_test_mae"].get) for r in sel)
        lines.append(f"| {v.label}: auto picked the clean-test best head | {hits} of {len(sel)} runs |"
                     + " |" * (len(cols) - 1))
    lines.append("")
    return lines


def plot(rows: list[dict], grid: Grid) -> bytes:
    """Clean-test MAE vs outlier fraction, one panel per noise level, one line per variant: PNG bytes
    (the caller writes them into its own folder)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(grid.noise), figsize=(6 * len(grid.noise), 4.5), squeeze=False)
    for ax, n in zip(axes[0], grid.noise, strict=True):
        for v in grid.variants:
            m = v.label
            means, stds = [], []
            for f in grid.fractions:
                sel = [r for r in rows if r["variant"] == m and r["noise_std"] == n and r["outlier_fraction"] == f]
                mu, sd = _agg(sel, "test_mae") if sel else (np.nan, np.nan)
                means.append(mu)
                stds.append(sd)
            ax.errorbar(grid.fractions, means, yerr=stds, marker="o", capsize=3, label=m,
                        linewidth=2.5 if v.method == "tor_mt" else 1.2)
        ax.set_xlabel("outlier fraction")
        ax.set_ylabel("clean-test MAE")
        ax.set_title(f"Gaussian noise {n:g}")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()
