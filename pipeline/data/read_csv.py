"""Any image regression dataset described by a CSV file: the door for tasks without a reader of their own.

``<root>/labels.csv`` (``data.csv.file``) has a header row, a ``path`` column (the image, relative to
the root) and one numeric column per label; the label names are the header's, the units and which
columns to use come from the config. An optional ``split`` column (train / val / test) fixes the
splits; test and then validation rows it does not give are carved at random by ``data.seed``. Images are resized
(stretched) to ``image_size`` squares. Rows are skipped, and counted by reason, when the image is
missing or unreadable, a label is not a finite number, or the path leaves the root (unless
``allow_outside_root``).
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from pipeline.data.reading import (
    SourceData,
    SourceError,
    SplitData,
    carve,
    gather,
    open_image,
    parallel_map,
    require_dir,
    select,
    workers,
)
from pipeline.schema import option


@dataclass
class CsvConfig:
    """Schema of ``data.csv``."""

    root: str = option("", "dataset folder; image paths in the CSV are relative to it")
    file: str = option("labels.csv", "the CSV file, relative to root (or an absolute path)")
    path_column: str = option("path", "column holding each image's path")
    columns: list[str] = option([], "label columns, in output order (empty: every column but path and split)")
    units: str = option("units", "units of the labels (shown in reports and exported metadata)")
    image_size: int = option(64, "images are resized to this square size in pixels", min=8, max=512)
    split_column: str = option("split", "column with train/val/test per row, used when the CSV has it")
    val_fraction: float = option(0.1, "validation share carved from training (when the CSV gives no val rows)",
                                 min=0, max=0.5)
    test_fraction: float = option(0.2, "test share carved at random (when the CSV gives no test rows)",
                                  min=0, max=0.9)
    allow_outside_root: bool = option(False, "accept image paths that resolve outside root")
    mirror_signs: list[float] = option([], "sign of each label under a horizontal flip (empty: flipping "
                                           "is not a symmetry of this task; no flip augmentation)")
    label_range: list[float] = option([], "[low, high] of every label, for injected outliers (empty: each "
                                          "label's min and max in the file)")
    workers: int = option(0, "decoding threads (0 = every core)", min=0, max=256)


def csv_path(cfg: CsvConfig) -> Path:
    root = require_dir(cfg.root, "data.csv.root", "folder holding the images and the CSV file")
    path = root / cfg.file
    if not path.is_file():
        raise SourceError(f"data.csv.file: {path} does not exist; write it (a header with a "
                          f"{cfg.path_column!r} column and one column per label) or set data.csv.file")
    return path


@lru_cache(maxsize=8)
def _table(path: str, mtime: float) -> tuple[list[str], list[dict[str, str]]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            return list(reader.fieldnames or []), rows
    except (UnicodeDecodeError, csv.Error) as exc:
        raise SourceError(f"data.csv.file: {path} is not a readable CSV ({exc}); save it as UTF-8 CSV") from exc


def read_table(cfg: CsvConfig) -> tuple[list[str], list[dict[str, str]], list[str]]:
    """(header, rows, label columns), with errors naming the key to fix."""
    path = csv_path(cfg)
    header, rows = _table(str(path), path.stat().st_mtime)
    if cfg.path_column not in header:
        raise SourceError(f"data.csv.path_column: {path} has no {cfg.path_column!r} column (columns: "
                          f"{', '.join(header) or 'none'}); set data.csv.path_column")
    labels = list(cfg.columns) or [c for c in header if c not in (cfg.path_column, cfg.split_column)]
    missing = [c for c in labels if c not in header]
    if missing:
        raise SourceError(f"data.csv.columns: {', '.join(missing)} not in {path} (columns: {', '.join(header)}); "
                          "list existing columns")
    if not labels:
        raise SourceError(f"data.csv.columns: {path} has no label column besides {cfg.path_column!r}; add one")
    if cfg.mirror_signs and len(cfg.mirror_signs) != len(labels):
        raise SourceError(f"data.csv.mirror_signs: {len(cfg.mirror_signs)} signs for {len(labels)} labels "
                          f"({', '.join(labels)}); give one per label")
    return header, rows, labels


def _label(row: dict[str, str], labels: list[str]) -> np.ndarray | None:
    try:
        values = [float(row[c]) for c in labels]
    except (TypeError, ValueError):
        return None
    return np.array(values, np.float32) if all(math.isfinite(v) for v in values) else None


def _load_one(item, root: Path, cfg: CsvConfig) -> tuple[np.ndarray, np.ndarray] | str:
    rel, y = item
    if y is None:
        return "label not a finite number"
    if not rel:
        return "empty path"
    path = (root / rel).resolve()
    if not cfg.allow_outside_root and not path.is_relative_to(root.resolve()):
        return "path outside the root (set data.csv.allow_outside_root to accept)"
    if not path.is_file():
        return "image missing"
    size = cfg.image_size
    try:
        img = open_image(path, (size, size)).convert("RGB")
    except Exception:
        return "image unreadable"
    from PIL import Image

    return np.asarray(img.resize((size, size), Image.Resampling.BILINEAR), np.uint8), y


def read_csv_source(data_cfg) -> SourceData:
    """Source ``csv``: the rows' images and labels, split by the split column or at random."""
    cfg: CsvConfig = data_cfg.csv
    root = Path(cfg.root).expanduser()
    header, rows, labels = read_table(cfg)
    items = [(r.get(cfg.path_column) or "", _label(r, labels)) for r in rows]
    results = parallel_map(lambda it: _load_one(it, root, cfg), items, workers(cfg.workers))
    use_split = cfg.split_column in header
    if use_split:
        for i, r in enumerate(rows):
            if not isinstance(results[i], str) and (r.get(cfg.split_column) or "").strip().lower() \
                    not in ("train", "val", "test"):
                results[i] = "split not one of train/val/test"
    skipped: Counter = Counter()
    size = (cfg.image_size, cfg.image_size)
    x, y, keep = gather(results, size, skipped)
    if not keep:
        raise SourceError(f"data.csv.root: no usable row in {csv_path(cfg)} ({dict(skipped) or 'no rows'}); "
                          "check the paths and labels")
    full = SplitData(x, y.reshape(len(keep), len(labels)))
    tag = np.array([(rows[i].get(cfg.split_column) or "").strip().lower() if use_split else "train" for i in keep])
    rest, val, test = select(full, tag == "train"), select(full, tag == "val"), select(full, tag == "test")
    if not len(test.y):  # no test rows given: carve them at random
        held = carve(len(rest.y), cfg.test_fraction, data_cfg.seed * 10 + 2)
        test, rest = select(rest, held), select(rest, ~held)
    if not len(val.y):  # validation always comes from training data
        held = carve(len(rest.y), cfg.val_fraction, data_cfg.seed * 10 + 1)
        val, rest = select(rest, held), select(rest, ~held)
    splits = {"train": rest, "val": val, "test": test}
    empty = [s for s, frac in (("train", 1), ("val", cfg.val_fraction), ("test", cfg.test_fraction))
             if frac and not len(splits[s].y)]
    if empty:
        raise SourceError(f"data.csv: split(s) {', '.join(empty)} have no rows out of {len(keep)} usable; "
                          "add rows, fix the split column or raise val_fraction/test_fraction")
    mirror = tuple(float(s) for s in cfg.mirror_signs) or None
    return SourceData(splits, tuple(labels), cfg.units, mirror, skipped)


def csv_range(cfg: CsvConfig) -> tuple[np.ndarray, np.ndarray]:
    """[low, high] per label: the configured range, or each label's min and max over the file's rows."""
    _, rows, labels = read_table(cfg)
    if cfg.label_range:
        return (np.full(len(labels), cfg.label_range[0], np.float32),
                np.full(len(labels), cfg.label_range[1], np.float32))
    ys = [y for y in (_label(r, labels) for r in rows) if y is not None]
    if not ys:
        raise SourceError(f"data.csv: no row of {csv_path(cfg)} has finite labels; fix the label columns")
    arr = np.stack(ys)
    return arr.min(0), arr.max(0)
