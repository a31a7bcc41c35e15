"""Data stage: make the splits from the configured source, inject label noise, write the dataset,
its statistics and a contact sheet. Test labels stay clean; the outlier masks are kept."""

from __future__ import annotations

import logging
import time

import numpy as np

from pipeline.config import Config
from pipeline.data.dataset import DATASET_FILE, STATS_FILE
from pipeline.data.noise import inject_label_noise
from pipeline.data.sources import SOURCES
from pipeline.runs import StageContext, atomic_write_json, atomic_write_npz
from pipeline.schema import to_dict
from pipeline.stages.base import Stage, StageOutput

log = logging.getLogger(__name__)


def config_slice(cfg: Config) -> dict:
    d = cfg.data
    # Only the active source's options: editing another source's section must not rerun anything.
    return {"source": d.source, "seed": d.seed, "n_train": d.n_train, "n_val": d.n_val,
            "n_test": d.n_test, "noise": to_dict(d.noise), d.source: to_dict(getattr(d, d.source))}


def _stats(x: np.ndarray, y: np.ndarray, source) -> dict:
    if x.dtype == np.uint8:
        # Images enter models as RGB in [0, 1]; the per-channel statistics are baked into the model.
        xs = x[: min(len(x), 4096)].reshape(-1, x.shape[-1]).astype(np.float32) / 255.0
        mean, std = xs.mean(0), xs.std(0) + 1e-6
    else:
        mean, std = x.mean(0), x.std(0) + 1e-6
    return {"input_kind": source.input_kind, "input_shape": list(x.shape[1:]),
            "input_mean": mean.tolist(), "input_std": std.tolist(),
            # Robust label statistics (median / MAD-based) so outliers do not skew the output scale.
            "label_mean": np.median(y, 0).tolist(),
            "label_std": (1.4826 * np.median(np.abs(y - np.median(y, 0)), 0) + 1e-6).tolist(),
            "output_names": list(source.output_names), "units": source.units,
            "mirror_signs": list(source.mirror_signs) if source.mirror_signs else None}


def run(cfg: Config, ctx: StageContext) -> StageOutput:
    source = SOURCES[cfg.data.source]
    t0 = time.perf_counter()
    splits = source.make(cfg.data)
    make_seconds = time.perf_counter() - t0
    low, high = source.label_range(cfg.data)
    n = cfg.data.noise
    arrays: dict[str, np.ndarray] = {}
    for i, (name, split) in enumerate(splits.items()):
        arrays[f"{name}_x"] = split.x
        arrays[f"{name}_y_clean"] = split.y
        if name == "test":
            arrays[f"{name}_y"] = split.y
            arrays[f"{name}_outlier_mask"] = np.zeros(split.y.shape, bool)
            continue
        noisy, mask = inject_label_noise(split.y, std=n.std, outlier_fraction=n.outlier_fraction,
                                         mode=n.outlier_mode, low=low, high=high, offset_min=n.offset_min,
                                         offset_max=n.offset_max, seed=cfg.data.seed * 1000 + 17 + i)
        arrays[f"{name}_y"] = noisy
        arrays[f"{name}_outlier_mask"] = mask
    stats = _stats(arrays["train_x"], arrays["train_y"], source)
    atomic_write_npz(ctx.dir / DATASET_FILE, **arrays)
    atomic_write_json(ctx.dir / STATS_FILE, stats)
    artifacts = {"dataset": DATASET_FILE, "stats": STATS_FILE}
    if source.input_kind == "image":
        from pipeline.data.visualize import contact_sheet

        k = min(48, len(arrays["train_x"]))
        contact_sheet(arrays["train_x"][:k], arrays["train_y_clean"][:k], ctx.dir / "contact_sheet.png",
                      labels_noisy=arrays["train_y"][:k], outlier_mask=arrays["train_outlier_mask"][:k].any(1))
        artifacts["contact_sheet"] = "contact_sheet.png"
    total = sum(len(s.x) for s in splits.values())
    resid = arrays["train_y"] - arrays["train_y_clean"]
    inl = ~arrays["train_outlier_mask"]
    metrics = {"n_train": len(arrays["train_x"]), "n_val": len(arrays["val_x"]), "n_test": len(arrays["test_x"]),
               "train_outlier_fraction": float(arrays["train_outlier_mask"].any(1).mean()),
               "train_inlier_noise_std": float(resid[inl].std()) if inl.any() else 0.0,
               "make_seconds": round(make_seconds, 2), "samples_per_second": round(total / make_seconds, 1)}
    log.info("data: %d samples from %s in %.1fs (%.0f/s)", total, source.name, make_seconds,
             metrics["samples_per_second"])
    return StageOutput(metrics, artifacts)


STAGE = Stage("data", (), config_slice, run)
