"""Data stage: inject label noise into the cached source's train and validation labels, and write the
labels, the statistics every model bakes in, and a contact sheet. Test labels stay clean; the
outlier masks are kept. Its hash adds only the noise settings to the source stage's, so changing
them never re-reads or re-renders an image.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from pipeline.config import Config
from pipeline.contract import DataMetrics, as_metrics
from pipeline.data.convention import POSE_NAMES
from pipeline.data.dataset import DATASET_FILE, INPUTS_FILE, LABELS_FILE, SOURCE_FILE, STATS_FILE, open_images
from pipeline.data.noise import inject_label_noise
from pipeline.data.sources import SOURCES
from pipeline.runs import StageContext, atomic_write_json, atomic_write_npz, read_json, read_npz
from pipeline.schema import to_dict
from pipeline.stages.base import Stage, StageOutput

log = logging.getLogger(__name__)


def config_slice(cfg: Config) -> dict:
    return {"seed": cfg.data.seed, "noise": to_dict(cfg.data.noise)}


def _stats(x: np.ndarray, y: np.ndarray, meta: dict) -> dict:
    if x.dtype == np.uint8:
        # Images enter models as RGB in [0, 1]; the per-channel statistics are baked into the model.
        xs = x[: min(len(x), 4096)].reshape(-1, x.shape[-1]).astype(np.float32) / 255.0
        mean, std = xs.mean(0), xs.std(0) + 1e-6
    else:
        mean, std = x.mean(0), x.std(0) + 1e-6
    return {"input_kind": meta["input_kind"], "input_shape": list(x.shape[1:]),
            "input_mean": mean.tolist(), "input_std": std.tolist(),
            # Robust label statistics (median / MAD-based) so outliers do not skew the output scale.
            "label_mean": np.median(y, 0).tolist(),
            "label_std": (1.4826 * np.median(np.abs(y - np.median(y, 0)), 0) + 1e-6).tolist(),
            "output_names": list(meta["output_names"]), "units": meta["units"],
            "mirror_signs": meta["mirror_signs"]}


def run(cfg: Config, ctx: StageContext) -> StageOutput:
    src_dir = ctx.upstream["source"].path
    meta = read_json(src_dir / SOURCE_FILE)
    clean = read_npz(src_dir / LABELS_FILE, "source")
    low, high = SOURCES[cfg.data.source].label_range(cfg.data)
    n = cfg.data.noise
    arrays: dict[str, np.ndarray] = {}
    for i, name in enumerate(("train", "val", "test")):
        y = clean[f"{name}_y"]
        arrays[f"{name}_y_clean"] = y
        if f"{name}_group" in clean:
            arrays[f"{name}_group"] = clean[f"{name}_group"]
        if name == "test":
            arrays[f"{name}_y"] = y
            arrays[f"{name}_outlier_mask"] = np.zeros(y.shape, bool)
            continue
        noisy, mask = inject_label_noise(y, std=n.std, outlier_fraction=n.outlier_fraction,
                                         mode=n.outlier_mode, low=low, high=high, offset_min=n.offset_min,
                                         offset_max=n.offset_max, seed=cfg.data.seed * 1000 + 17 + i)
        arrays[f"{name}_y"] = noisy
        arrays[f"{name}_outlier_mask"] = mask
    train_x = open_images(src_dir, "train")
    stats = _stats(train_x, arrays["train_y"], meta)
    atomic_write_npz(ctx.dir / DATASET_FILE, **arrays)
    atomic_write_json(ctx.dir / STATS_FILE, stats)
    atomic_write_json(ctx.dir / INPUTS_FILE, {"source_dir": os.path.relpath(src_dir, ctx.dir),
                                              "group_names": meta.get("group_names", {})})
    artifacts = {"dataset": DATASET_FILE, "stats": STATS_FILE, "inputs": INPUTS_FILE}
    if meta["input_kind"] == "image" and tuple(meta["output_names"]) == POSE_NAMES and len(train_x):
        from pipeline.data.visualize import contact_sheet

        k = min(48, len(train_x))
        contact_sheet(np.asarray(train_x[:k]), arrays["train_y_clean"][:k], ctx.dir / "contact_sheet.png",
                      labels_noisy=arrays["train_y"][:k], outlier_mask=arrays["train_outlier_mask"][:k].any(1))
        artifacts["contact_sheet"] = "contact_sheet.png"
    resid = arrays["train_y"] - arrays["train_y_clean"]
    inl = ~arrays["train_outlier_mask"]
    metrics = {"n_train": len(arrays["train_y"]), "n_val": len(arrays["val_y"]), "n_test": len(arrays["test_y"]),
               "train_outlier_fraction": float(arrays["train_outlier_mask"].any(1).mean()),
               "train_inlier_noise_std": float(resid[inl].std()) if inl.any() else 0.0}
    log.info("data: %d train / %d val / %d test labels, %.0f%% injected outliers", metrics["n_train"],
             metrics["n_val"], metrics["n_test"], 100 * metrics["train_outlier_fraction"])
    return StageOutput(as_metrics(DataMetrics(**metrics)), artifacts)


STAGE = Stage("data", ("source",), config_slice, run)
