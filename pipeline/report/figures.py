"""The report's figures, each drawn from a run's JSON (never typed in) and returned as PNG bytes."""

from __future__ import annotations

import io
from typing import Any

import numpy as np

DPI = 100


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=DPI)
    _plt().close(fig)
    return buf.getvalue()


def training_curves(curves: dict[str, list[dict]], best_epoch: dict[str, int], units: str) -> bytes:
    """One panel per training stage: loss components (left axis, log scale) and noisy-validation MAE
    (right axis) per epoch, the epoch the stage kept marked."""
    plt = _plt()
    stages = [s for s, recs in curves.items() if recs]
    fig, axes = plt.subplots(1, len(stages), figsize=(5 * len(stages), 3.6), squeeze=False)
    for ax, stage in zip(axes[0], stages, strict=True):
        recs = curves[stage]
        epochs = [r["epoch"] for r in recs]
        keys = [k for k in recs[0] if k.startswith("train_") and k != "train_inlier_fraction"]
        for k in keys:
            vals = [r.get(k) for r in recs]
            ax.plot(epochs, vals, marker=".", label=k.removeprefix("train_"))
        if all(r.get(k, 0) > 0 for r in recs for k in keys):
            ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel("training loss")
        ax2 = ax.twinx()
        ax2.plot(epochs, [r.get("val_mae") for r in recs], color="black", marker="o", label="noisy-val MAE")
        ax2.set_ylabel(f"noisy-validation MAE ({units})")
        if stage in best_epoch:
            ax.axvline(best_epoch[stage], color="tab:red", linestyle="--", label=f"chosen epoch {best_epoch[stage]}")
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="upper right")
        ax.set_title(stage)
        ax.grid(alpha=0.3)
    return _png(fig)


def flagged_thumbnails(images: np.ndarray, labels: np.ndarray, teacher: np.ndarray, index: list[int],
                       names: list[str]) -> bytes:
    """The worst flagged training samples: each image with its (noisy) label and the teacher's prediction."""
    plt = _plt()
    n = len(images)
    cols = min(n, 6)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(2.1 * cols, 2.5 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, img, y, t, i in zip(axes.ravel(), images, labels, teacher, index, strict=False):
        ax.imshow(img if img.dtype == np.uint8 else np.clip(img, 0, 1))
        fmt = "/".join
        ax.set_title(f"#{i}\nlabel {fmt(f'{v:.0f}' for v in y)}\nteacher {fmt(f'{v:.0f}' for v in t)}",
                     fontsize=7)
    fig.suptitle(f"worst flagged samples ({'/'.join(names)})", fontsize=9)
    return _png(fig)


def op_breakdown(profiles: dict[str, list[dict]]) -> bytes:
    """Horizontal bars of time per operator type (µs per run), one panel per profiled artifact."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(profiles), figsize=(5 * len(profiles), 3.4), squeeze=False)
    for ax, (name, prof) in zip(axes[0], profiles.items(), strict=True):
        top = sorted(prof, key=lambda p: p["us_per_run"])[-10:]
        ax.barh([p["op"] for p in top], [p["us_per_run"] for p in top], color="tab:blue")
        ax.set_xlabel("time per run (µs)")
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3, axis="x")
    return _png(fig)


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both latency and error, by latency."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], points[i][1]))
    front, best = [], float("inf")
    for i in order:
        if points[i][1] < best:
            front.append(i)
            best = points[i][1]
    return front


def latency_vs_error(rows: list[dict[str, Any]], units: str) -> bytes:
    """Every timed artifact as a labelled point (p50 latency, own clean-test MAE); the Pareto front drawn."""
    plt = _plt()
    pts = [(r["p50_ms"], r["test_mae"]) for r in rows]
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    front = pareto_front(pts)
    for i, (r, (x, y)) in enumerate(zip(rows, pts, strict=True)):
        color = "tab:orange" if r["model"] == "teacher" else "tab:blue"
        ax.scatter(x, y, color=color, marker="s" if r["precision"] == "int8" else "o", zorder=3,
                   alpha=1.0 if i in front else 0.45)
        if i in front:  # labels on the front only: the rest would overlap (every row is in the table)
            ax.annotate(f"{r['artifact']} ({r['backend']} x{r['threads']})", (x, y), fontsize=7,
                        xytext=(5, 4), textcoords="offset points")
    ax.plot([pts[i][0] for i in front], [pts[i][1] for i in front], color="tab:green", linestyle="--",
            label="Pareto front", zorder=2)
    ax.scatter([], [], color="tab:blue", label="student")
    ax.scatter([], [], color="tab:orange", label="teacher")
    ax.scatter([], [], color="grey", marker="s", label="int8")
    ax.set_xscale("log")
    ax.set_xlabel("p50 latency per sample (ms, log scale)")
    ax.set_ylabel(f"own clean-test MAE ({units})")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    return _png(fig)
