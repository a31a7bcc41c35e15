"""The table of data sources: how each one reads its splits, where its options live, what its labels mean.

A source turns the ``data`` config section into clean inputs and labels for train/val/test
(``SourceData``); the source stage caches them once, and the data stage injects label noise the
same way for every source. Each source reads its options from its own section, ``data.<section>``.
Splits are per source: by count (synthetic), cross-dataset (300W-LP -> AFLW2000 / BIWI), by subject
(BIWI), leave-one-person-out (MPIIGaze), by a split column or at random (CSV); validation is always
carved from training data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pipeline.data import read_csv, read_gaze, read_pose, sinusoid, synthetic_faces
from pipeline.data.convention import DEGREES, POSE_MIRROR, POSE_NAMES
from pipeline.data.reading import SourceData, SourceError, SplitData
from pipeline.faces.crop import CropSpec


@dataclass(frozen=True)
class Source:
    name: str
    input_kind: str  # "image" or "vector": which model families fit
    section: str  # the config section under ``data`` holding this source's options
    read: Callable[..., SourceData]  # (DataConfig) -> clean splits and label meaning
    label_range: Callable[..., tuple[np.ndarray, np.ndarray]]  # (DataConfig) -> (low, high) per output
    by_count: bool = False  # split sizes come from data.n_train / n_val / n_test
    # (DataConfig, image size, skip counter) -> the whole dataset as another source's test split; None:
    # this source cannot serve as one (cross-dataset protocol: data.<section>.test)
    read_whole: Callable[..., SplitData] | None = None
    # (DataConfig) -> how a face detector's box must be cropped to frame a face as this source's training
    # images are framed (export writes it into model_meta.json as input.crop); None: not detector-framed
    crop: Callable[..., CropSpec] | None = None


def _split_sizes(cfg) -> dict[str, int]:
    return {"train": cfg.n_train, "val": cfg.n_val, "test": cfg.n_test}


def _read_faces(cfg) -> SourceData:
    out = {}
    for i, (split, n) in enumerate(_split_sizes(cfg).items()):
        # Each split has its own stream so changing n_test never changes the training images.
        seed = cfg.seed * 10 + i
        poses = synthetic_faces.sample_poses(n, seed, cfg.synthetic_faces)
        images = synthetic_faces.render_faces(poses, seed, cfg.synthetic_faces)
        out[split] = SplitData(images, poses.astype(np.float32))
    return SourceData(out, POSE_NAMES, DEGREES, POSE_MIRROR)


def _faces_range(cfg) -> tuple[np.ndarray, np.ndarray]:
    s = cfg.synthetic_faces
    roll = s.roll_range
    if s.roll_frame == "eye_line":  # the level-eye roll at the widest yaw and pitch, plus the tilt left
        roll = float(synthetic_faces.level_roll(min(s.yaw_range, 90.0), s.pitch_range)) + s.eye_line_jitter
    high = np.array([s.yaw_range, s.pitch_range, roll], np.float32)
    return -high, high


def _synthetic_crop(cfg) -> CropSpec:
    """Renders drawn with level eyes (roll_frame: eye_line) are what a crop turned with the eye line shows."""
    sf = cfg.synthetic_faces
    return CropSpec(size=sf.image_size, rotate="eye_line" if sf.roll_frame == "eye_line" else "none")


def _mat_crop(section) -> CropSpec | None:
    """300W-LP / AFLW2000 crops follow the crop spec under ``framing: detector`` (pipeline.data.read_pose)."""
    return CropSpec(size=section.image_size) if section.framing == "detector" else None


def _read_sinusoid(cfg) -> SourceData:
    splits = {split: SplitData(*sinusoid.generate(n, cfg.seed * 10 + i, cfg.sinusoid))
              for i, (split, n) in enumerate(_split_sizes(cfg).items())}
    return SourceData(splits, ("y",), "units", None)


def _read_test_set(name: str, data_cfg, size: int, skipped) -> SplitData:
    if name not in TEST_SETS:
        raise SourceError(f"unknown test set {name!r}; use one of: {', '.join(TEST_SETS)}")
    return SOURCES[name].read_whole(data_cfg, size, skipped)


SOURCES: dict[str, Source] = {
    "synthetic_faces": Source("synthetic_faces", "image", "synthetic_faces", _read_faces, _faces_range, True,
                              crop=_synthetic_crop),
    "sinusoid": Source("sinusoid", "vector", "sinusoid", _read_sinusoid,
                       lambda cfg: sinusoid.label_range(cfg.sinusoid), True),
    "300w_lp": Source("300w_lp", "image", "w300_lp", lambda cfg: read_pose.read_pose_mat(cfg, "w300_lp", _read_test_set),
                      lambda cfg: read_pose.pose_range(cfg.w300_lp.max_angle), crop=lambda cfg: _mat_crop(cfg.w300_lp)),
    "aflw2000": Source("aflw2000", "image", "aflw2000",
                       lambda cfg: read_pose.read_pose_mat(cfg, "aflw2000", _read_test_set),
                       lambda cfg: read_pose.pose_range(cfg.aflw2000.max_angle),
                       read_whole=read_pose.read_aflw2000_whole, crop=lambda cfg: _mat_crop(cfg.aflw2000)),
    "biwi": Source("biwi", "image", "biwi", read_pose.read_biwi, lambda cfg: read_pose.pose_range(cfg.biwi.max_angle),
                   read_whole=read_pose.read_biwi_whole),
    "mpiigaze": Source("mpiigaze", "image", "mpiigaze", read_gaze.read_mpiigaze,
                       lambda cfg: read_gaze.gaze_range(cfg.mpiigaze)),
    "csv": Source("csv", "image", "csv", read_csv.read_csv_source, lambda cfg: read_csv.csv_range(cfg.csv)),
}


# The sources another source can read whole as its test split (config validation lists these)
TEST_SETS: tuple[str, ...] = tuple(n for n, s in SOURCES.items() if s.read_whole is not None)


def sections_used(cfg) -> list[str]:
    """The ``data`` sections the active source reads: its own, plus the test sets it reads whole."""
    src = SOURCES[cfg.source]
    own = getattr(cfg, src.section)
    tests = [SOURCES[t].section for t in getattr(own, "test", [])]
    return [src.section] + [t for t in tests if t != src.section]
