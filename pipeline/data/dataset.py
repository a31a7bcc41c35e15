"""The data stage's on-disk contract: ``dataset.npz`` (splits, noisy and clean labels, outlier masks)
and ``stats.json`` (input/label statistics baked into every model, output names and units)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.runs import read_json, read_npz

DATASET_FILE = "dataset.npz"
STATS_FILE = "stats.json"


@dataclass(frozen=True)
class Dataset:
    """Arrays by split. ``y`` is what training may see (noisy for train/val, clean for test)."""

    arrays: dict[str, np.ndarray]
    stats: dict

    def x(self, split: str) -> np.ndarray:
        return self.arrays[f"{split}_x"]

    def y(self, split: str) -> np.ndarray:
        return self.arrays[f"{split}_y"]

    def y_clean(self, split: str) -> np.ndarray:
        return self.arrays[f"{split}_y_clean"]

    def outlier_mask(self, split: str) -> np.ndarray:
        return self.arrays[f"{split}_outlier_mask"]

    @property
    def output_names(self) -> list[str]:
        return list(self.stats["output_names"])


def load_dataset(stage_dir: Path) -> Dataset:
    return Dataset(read_npz(Path(stage_dir) / DATASET_FILE, "data"), read_json(Path(stage_dir) / STATS_FILE))
