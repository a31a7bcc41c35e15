"""Shared parts of the dataset readers: what a reader returns, skip tallies, group-aware splits,
image decoding and cropping, and a parallel map over samples.

A reader never drops a sample silently: every skipped sample is counted under a reason, and the
source stage writes the tally (``dataset check`` prints it). A missing or malformed dataset (the root,
a whole-dataset file) is a :class:`SourceError` naming the file and the fix; one unreadable sample
among thousands is a skip.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SPLITS = ("train", "val", "test")


class SourceError(Exception):
    """A dataset that cannot be read at all: one line naming the file or folder and the fix."""


@dataclass
class SplitData:
    x: np.ndarray  # images (N, H, W, 3) uint8, or vectors (N, F) float32
    y: np.ndarray  # clean labels (N, D) float32, in the pipeline's convention
    group: np.ndarray | None = None  # (N,) int32 index into group_names (subject, person, test set)
    group_names: list[str] = field(default_factory=list)


@dataclass
class SourceData:
    """A source's clean splits and what its labels mean."""

    splits: dict[str, SplitData]
    output_names: tuple[str, ...]
    units: str
    mirror_signs: tuple[float, ...] | None
    skipped: Counter = field(default_factory=Counter)  # reason -> count


def require_dir(root: str, key: str, what: str) -> Path:
    """The dataset folder, or a SourceError naming the config key and what the folder should hold."""
    if not root:
        raise SourceError(f"{key}: not set; point it at the {what}")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise SourceError(f"{key}: {path} is not a folder; point it at the {what}")
    return path


def carve(n: int, fraction: float, seed: int, groups: np.ndarray | None = None) -> np.ndarray:
    """Boolean mask of ``round(fraction * n)``-ish held-out samples; whole groups when ``groups`` is given.

    Groups (subjects, days, source images of augmented copies) are held out whole so no identity
    is on both sides; they are taken in a seeded random order until the fraction is reached.
    """
    mask = np.zeros(n, bool)
    target = int(round(fraction * n))
    if target == 0 or n == 0:
        return mask
    rng = np.random.default_rng([seed, 0xCA57])
    if groups is None:
        mask[rng.permutation(n)[:target]] = True
        return mask
    ids = np.unique(groups)
    for g in rng.permutation(ids):
        if mask.sum() >= target:
            break
        grown = mask | (groups == g)
        if grown.all():  # never hold out everything
            break
        mask = grown
    return mask


def select(split: SplitData, mask: np.ndarray) -> SplitData:
    return SplitData(split.x[mask], split.y[mask], None if split.group is None else split.group[mask],
                     split.group_names)


def concat(parts: list[SplitData], names: list[str]) -> SplitData:
    """Concatenate splits (e.g. several test sets), each part becoming one group named ``names[i]``."""
    group = np.concatenate([np.full(len(p.y), i, np.int32) for i, p in enumerate(parts)])
    return SplitData(np.concatenate([p.x for p in parts]), np.concatenate([p.y for p in parts]), group,
                     list(names))


def square_box(points: np.ndarray, margin: float) -> tuple[float, float, float, float]:
    """(left, top, right, bottom) of the square centred on the points' bounding box, side
    ``(1 + 2 * margin) * max(width, height)`` (pixel edges; points are pixel coordinates)."""
    lo, hi = points.min(0), points.max(0)
    cx, cy = (lo + hi) / 2.0
    half = (1.0 + 2.0 * margin) * float(max(hi - lo)) / 2.0
    return cx - half, cy - half, cx + half, cy + half


def crop_resize(img, box: tuple[float, float, float, float], size: tuple[int, int]) -> np.ndarray:
    """Crop a PIL image to ``box`` (may extend past the edges: padded with black) and resize to
    ``size`` = (height, width); returns uint8 (H, W, 3) RGB."""
    from PIL import Image

    img = img.convert("RGB")
    out = img.transform((size[1], size[0]), Image.Transform.EXTENT, box, resample=Image.Resampling.BILINEAR,
                        fillcolor=(0, 0, 0))
    return np.asarray(out, np.uint8)


def open_image(path: Path, draft_size: tuple[int, int] | None = None):
    """PIL image, fully decoded (errors surface here, not later); ``draft_size`` lets JPEG decode at a
    reduced scale when the crop is much smaller than the image (several times faster)."""
    from PIL import Image

    img = Image.open(path)
    if draft_size is not None and img.format == "JPEG":
        img.draft("RGB", draft_size)
    img.load()
    return img


def workers(n: int) -> int:
    """Threads for decoding: ``n``, or every core this process may use when 0."""
    if n > 0:
        return n
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def parallel_map(fn: Callable, items: Iterable, n_workers: int) -> list:
    """``[fn(i) for i in items]`` on threads (PIL and scipy release the GIL while decoding)."""
    items = list(items)
    if n_workers <= 1 or len(items) < 2:
        return [fn(i) for i in items]
    with ThreadPoolExecutor(n_workers) as pool:
        return list(pool.map(fn, items, chunksize=16))


def gather(results: list, size: tuple[int, int], skipped: Counter) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Results of ``(image, label)`` or ``str`` (a skip reason) -> stacked images, labels, kept indices."""
    keep = [i for i, r in enumerate(results) if not isinstance(r, str)]
    skipped.update(r for r in results if isinstance(r, str))
    if not keep:
        return np.zeros((0, *size, 3), np.uint8), np.zeros((0, 0), np.float32), keep
    x = np.stack([results[i][0] for i in keep])
    y = np.stack([results[i][1] for i in keep]).astype(np.float32)
    return x, y, keep
