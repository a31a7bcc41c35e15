"""The data stages' on-disk contract.

The source stage (``source-<hash>/``, hashed by the source's config only) holds the clean data:
``{split}_x.npy`` per split (memory-mapped when read, so a second run or another noise level reads
images at memory speed without decoding anything), ``labels.npz`` (clean labels and groups per split)
and ``source.json`` (label names, units, mirror signs, skipped samples by reason).

The data stage (``data-<hash>/``, hashed by the noise settings on top) holds ``dataset.npz`` (noisy
and clean labels, outlier masks), ``stats.json`` (input/label statistics baked into every model,
output names and units) and ``inputs.json`` (where its images are: the source stage's folder,
relative to its own). :func:`load_dataset` reads both through the data stage's folder;
:func:`write_source` writes the source stage's folder (here, beside its reader, so a benchmark can
build that cache without the stage).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.data.reading import SourceData
from pipeline.runs import (
    ArtifactError,
    atomic_write_json,
    atomic_write_npy,
    atomic_write_npz,
    read_json,
    read_npz,
)

DATASET_FILE = "dataset.npz"
STATS_FILE = "stats.json"
INPUTS_FILE = "inputs.json"
LABELS_FILE = "labels.npz"
SOURCE_FILE = "source.json"
SPLITS = ("train", "val", "test")


def images_file(split: str) -> str:
    return f"{split}_x.npy"


def open_images(source_dir: Path, split: str) -> np.ndarray:
    """A split's inputs, memory-mapped copy-on-write (writable for torch, the file is never changed)."""
    path = Path(source_dir) / images_file(split)
    try:
        return np.load(path, mmap_mode="c")
    except FileNotFoundError as exc:
        raise ArtifactError(f"{path} is missing; rebuild it with --force source") from exc
    except Exception as exc:
        raise ArtifactError(f"{path} is not a readable array file ({type(exc).__name__}); "
                            "rebuild it with --force source") from exc


def summary(data: SourceData, seconds: float) -> dict:
    """The source's headline figures: split sizes, skipped samples by reason, reading speed."""
    total = sum(len(s.y) for s in data.splits.values())
    return {**{f"n_{s}": int(len(data.splits[s].y)) for s in SPLITS},
            "skipped": int(sum(data.skipped.values())), "skipped_by_reason": dict(sorted(data.skipped.items())),
            "read_seconds": round(seconds, 2), "samples_per_second": round(total / max(seconds, 1e-9), 1)}


def write_source(data: SourceData, input_kind: str, out_dir: Path, metrics: dict) -> None:
    """Write the cache: inputs per split (.npy), labels and groups (.npz), and source.json last."""
    labels = {}
    for s in SPLITS:
        sp = data.splits[s]
        atomic_write_npy(out_dir / images_file(s), np.ascontiguousarray(sp.x))
        labels[f"{s}_y"] = sp.y.astype(np.float32)
        if sp.group is not None:
            labels[f"{s}_group"] = sp.group.astype(np.int32)
    atomic_write_npz(out_dir / LABELS_FILE, **labels)
    meta = {"input_kind": input_kind, "output_names": list(data.output_names), "units": data.units,
            "mirror_signs": list(data.mirror_signs) if data.mirror_signs else None,
            "group_names": {s: data.splits[s].group_names for s in SPLITS if data.splits[s].group is not None},
            "metrics": metrics}
    atomic_write_json(out_dir / SOURCE_FILE, meta)


@dataclass(frozen=True)
class Dataset:
    """Arrays by split. ``y`` is what training may see (noisy for train/val, clean for test)."""

    arrays: dict[str, np.ndarray]  # labels: {split}_y, {split}_y_clean, {split}_outlier_mask, {split}_group
    stats: dict
    images: dict[str, np.ndarray] = field(default_factory=dict)  # split -> inputs (memory-mapped)
    group_names: dict[str, list[str]] = field(default_factory=dict)

    def x(self, split: str) -> np.ndarray:
        return self.images[split]

    def y(self, split: str) -> np.ndarray:
        return self.arrays[f"{split}_y"]

    def y_clean(self, split: str) -> np.ndarray:
        return self.arrays[f"{split}_y_clean"]

    def outlier_mask(self, split: str) -> np.ndarray:
        return self.arrays[f"{split}_outlier_mask"]

    def groups(self, split: str) -> tuple[np.ndarray, list[str]] | None:
        """(group index per sample, group names): subjects, persons/days, or test sets; None if ungrouped."""
        g = self.arrays.get(f"{split}_group")
        return None if g is None else (g, self.group_names.get(split, []))

    @property
    def output_names(self) -> list[str]:
        return list(self.stats["output_names"])


def load_dataset(stage_dir: Path) -> Dataset:
    """The data stage's dataset: its labels and statistics, and the source stage's images."""
    stage_dir = Path(stage_dir)
    arrays = read_npz(stage_dir / DATASET_FILE, "data")
    try:
        inputs = read_json(stage_dir / INPUTS_FILE)
    except (FileNotFoundError, ValueError) as exc:
        raise ArtifactError(f"{stage_dir / INPUTS_FILE} is missing or unreadable; rebuild it with --force data") from exc
    source_dir = stage_dir / inputs["source_dir"]
    images = {s: open_images(source_dir, s) for s in SPLITS}
    return Dataset(arrays, read_json(stage_dir / STATS_FILE), images, inputs.get("group_names", {}))
