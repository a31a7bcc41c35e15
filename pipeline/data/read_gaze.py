"""MPIIGaze's normalized eye images from the user's disk, split leave-one-person-out.

Layout: ``<root>/Data/Normalized/pXX/dayYY.mat`` (or ``root`` pointing at ``Normalized`` itself), each
with ``data.right`` and ``data.left`` holding ``image`` (N x 36 x 60 grey), ``gaze`` (N x 3 unit
vectors in the normalized camera frame) and ``pose``. Labels are (pitch, yaw) in degrees,
pitch = asin(-y), yaw = atan2(-x, -z) (``pipeline.data.convention``). With ``both_eyes`` the left eye
is mirrored into the right eye's frame: its image flipped left-right and its yaw negated. Images
are kept at their native 36 x 60, as three equal channels.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.data.convention import DEGREES, GAZE_MIRROR, GAZE_NAMES, gaze_from_vector
from pipeline.data.reading import SourceData, SourceError, SplitData, carve, select
from pipeline.schema import option


@dataclass
class MpiigazeConfig:
    """Schema of ``data.mpiigaze``."""

    root: str = option("", "MPIIGaze folder (holding Data/Normalized/pXX/dayYY.mat), or the Normalized folder")
    test_person: int = option(0, "leave-one-person-out: this person (pXX) is the test split", min=0, max=99)
    both_eyes: bool = option(True, "use the left eye too, mirrored into the right eye's frame (yaw negated)")
    val_fraction: float = option(0.1, "validation share carved from the training persons (whole days)",
                                 min=0, max=0.5)
    max_angle: float = option(45.0, "label range for injected outliers: +-max_angle degrees", min=1, max=90)
    limit_per_day: int = option(0, "read at most this many samples per eye and day (0 = all)", min=0)


def _normalized_dir(cfg: MpiigazeConfig) -> Path:
    if not cfg.root:
        raise SourceError("data.mpiigaze.root: not set; point it at the MPIIGaze folder (with Data/Normalized)")
    root = Path(cfg.root).expanduser()
    for cand in (root / "Data" / "Normalized", root / "Normalized", root):
        if cand.is_dir() and any(p.is_dir() and re.fullmatch(r"p\d+", p.name) for p in cand.iterdir()):
            return cand
    raise SourceError(f"data.mpiigaze.root: no pXX folders in {root}, {root}/Data/Normalized or {root}/Normalized;"
                      " point it at the MPIIGaze folder")


def _eye(rec, side: str, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 36, 60) uint8, gaze (N, 3)) of one eye of a day file."""
    try:
        eye = rec[side][0, 0]
        image, gaze = np.asarray(eye["image"]), np.asarray(eye["gaze"], np.float64)
    except (KeyError, ValueError, IndexError) as exc:
        raise SourceError(f"{path}: no data.{side}.image / data.{side}.gaze; expected MPIIGaze's "
                          "normalized .mat files") from exc
    if image.ndim == 2:
        image, gaze = image[None], gaze.reshape(1, 3)
    if image.ndim != 3 or gaze.shape != (len(image), 3):
        raise SourceError(f"{path}: data.{side}.image {image.shape} and gaze {gaze.shape} do not match; "
                          "expected N x H x W images and N x 3 gaze vectors")
    return image.astype(np.uint8), gaze


def _read_day(path: Path, cfg: MpiigazeConfig, skipped: Counter) -> tuple[np.ndarray, np.ndarray]:
    import scipy.io

    try:
        m = scipy.io.loadmat(str(path))
        rec = m["data"][0, 0]
    except Exception as exc:
        raise SourceError(f"{path} is not a readable MPIIGaze .mat ({type(exc).__name__}); re-copy the file "
                          "or remove it") from exc
    xs, ys = [], []
    for side in ("right", "left") if cfg.both_eyes else ("right",):
        image, gaze = _eye(rec, side, path)
        if cfg.limit_per_day:
            image, gaze = image[:cfg.limit_per_day], gaze[:cfg.limit_per_day]
        norm = np.linalg.norm(gaze, axis=1)
        ok = np.isfinite(gaze).all(1) & (norm > 0)
        skipped["non-finite or zero gaze vector"] += int((~ok).sum())
        image, y = image[ok], gaze_from_vector(gaze[ok]) if ok.any() else np.zeros((0, 2), np.float32)
        if side == "left":  # into the right eye's frame
            image, y = image[:, :, ::-1], y * np.asarray(GAZE_MIRROR, np.float32)
        xs.append(np.repeat(image[..., None], 3, -1))
        ys.append(y)
    return np.concatenate(xs), np.concatenate(ys)


def read_mpiigaze(data_cfg) -> SourceData:
    """Source ``mpiigaze``: test = person ``test_person``; train/val = the others, validation by whole days."""
    cfg: MpiigazeConfig = data_cfg.mpiigaze
    base = _normalized_dir(cfg)
    persons = sorted((p for p in base.iterdir() if p.is_dir() and re.fullmatch(r"p\d+", p.name)),
                     key=lambda p: int(p.name[1:]))
    if cfg.test_person not in [int(p.name[1:]) for p in persons]:
        raise SourceError(f"data.mpiigaze.test_person: p{cfg.test_person:02d} is not in {base} (persons: "
                          f"{', '.join(p.name for p in persons)}); choose one of them")
    skipped: Counter = Counter()
    xs, ys, groups, names, is_test = [], [], [], [], []
    for person in persons:
        days = sorted(person.glob("day*.mat"))
        if not days:
            skipped[f"{person.name}: no dayYY.mat files"] += 1
        for day in days:
            x, y = _read_day(day, cfg, skipped)
            names.append(f"{person.name}/{day.stem}")
            xs.append(x)
            ys.append(y)
            groups.append(np.full(len(y), len(names) - 1, np.int32))
            is_test.append(np.full(len(y), int(person.name[1:]) == cfg.test_person))
    full = SplitData(np.concatenate(xs), np.concatenate(ys), np.concatenate(groups), names)
    test_mask = np.concatenate(is_test)
    train = select(full, ~test_mask)
    if not len(train.y) or not test_mask.any():
        raise SourceError(f"data.mpiigaze.root: {base} gives {len(train.y)} training and {int(test_mask.sum())} "
                          "test samples; it needs at least two persons with data")
    held = carve(len(train.y), cfg.val_fraction, data_cfg.seed * 10 + 1, train.group)
    splits = {"train": select(train, ~held), "val": select(train, held), "test": select(full, test_mask)}
    return SourceData(splits, GAZE_NAMES, DEGREES, GAZE_MIRROR, skipped)


def gaze_range(cfg: MpiigazeConfig) -> tuple[np.ndarray, np.ndarray]:
    high = np.full(2, cfg.max_angle, np.float32)
    return -high, high
