"""The table of data sources: how each one makes its splits, and what its labels mean.

A source turns the ``data`` config section into clean inputs and labels for train/val/test; label
noise is injected afterwards by the data stage, the same way for every source. Real datasets plug in
here as further rows (a loader reading the user's disk, same ``Splits`` result).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pipeline.data import sinusoid, synthetic_faces


@dataclass(frozen=True)
class CleanSplit:
    x: np.ndarray  # images (N, H, W, 3) uint8, or vectors (N, F) float32
    y: np.ndarray  # clean labels (N, D) float32


@dataclass(frozen=True)
class Source:
    name: str
    input_kind: str  # "image" or "vector": which model families fit
    output_names: tuple[str, ...]
    units: str
    # Sign of each output under a horizontal mirror of the input (None: mirroring is not a symmetry).
    mirror_signs: tuple[float, ...] | None
    make: Callable[..., dict[str, CleanSplit]]  # (DataConfig) -> {"train", "val", "test"}
    label_range: Callable[..., tuple[np.ndarray, np.ndarray]]  # (DataConfig) -> (low, high) per output


def _split_sizes(cfg) -> dict[str, int]:
    return {"train": cfg.n_train, "val": cfg.n_val, "test": cfg.n_test}


def _make_faces(cfg) -> dict[str, CleanSplit]:
    out = {}
    for i, (split, n) in enumerate(_split_sizes(cfg).items()):
        # Each split has its own stream so changing n_test never changes the training images.
        seed = cfg.seed * 10 + i
        poses = synthetic_faces.sample_poses(n, seed, cfg.synthetic_faces)
        images = synthetic_faces.render_faces(poses, seed, cfg.synthetic_faces)
        out[split] = CleanSplit(images, poses.astype(np.float32))
    return out


def _faces_range(cfg) -> tuple[np.ndarray, np.ndarray]:
    s = cfg.synthetic_faces
    high = np.array([s.yaw_range, s.pitch_range, s.roll_range], np.float32)
    return -high, high


def _make_sinusoid(cfg) -> dict[str, CleanSplit]:
    return {split: CleanSplit(*sinusoid.generate(n, cfg.seed * 10 + i, cfg.sinusoid))
            for i, (split, n) in enumerate(_split_sizes(cfg).items())}


SOURCES: dict[str, Source] = {
    "synthetic_faces": Source("synthetic_faces", "image", ("yaw", "pitch", "roll"), "degrees",
                              (-1.0, 1.0, -1.0), _make_faces, _faces_range),
    "sinusoid": Source("sinusoid", "vector", ("y",), "units", None, _make_sinusoid,
                       lambda cfg: sinusoid.label_range(cfg.sinusoid)),
}
