"""Head-pose datasets from the user's disk: 300W-LP and AFLW2000 (image + ``.mat``) and BIWI (``.npz``).

300W-LP / AFLW2000: every ``*.jpg`` (or ``.png``) under the root with a ``.mat`` of the same stem
holding ``Pose_Para`` (pitch, yaw, roll in radians, then translation and scale) and ``pt2d`` (2 x 68
landmarks, row 0 x, row 1 y, in pixels; negative when invisible). With ``framing: detector`` (the
default) the crop is the one a face detector's box gives through the crop spec (pipeline/faces/crop.py):
the box the shipped detector would draw around the eyes (landmarks 36-41, 42-47) and mouth (48-67)
(``detector.box_from_landmarks``), cropped exactly as the app and ``predict`` crop a detected face, so
the model is trained on the framing it will be given (export writes the spec into model_meta.json).
With ``framing: landmarks`` it is the literature's crop: the square centred on the visible landmarks'
bounding box with side ``(1 + 2 * margin)`` times its longer side, padded with black past the image
edge; resized to ``image_size``. 300W-LP's synthesized views of one face
(``AFW_134212_1_0`` .. ``_17``, and the ``*_Flip`` folders) share a group, so validation holds out
whole faces.

BIWI: the preprocessed ``.npz`` widely used since FSA-Net (``image`` N x 64 x 64 x 3, written by
OpenCV so BGR by default; ``pose`` N x 3 yaw, pitch, roll in degrees; an optional ``subject`` array),
one file or a ``BIWI_train.npz`` / ``BIWI_test.npz`` pair in a folder. Labels map to the pipeline's
convention as documented in ``pipeline.data.convention``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from pipeline.data.convention import DEGREES, POSE_MIRROR, POSE_NAMES, pose_from_pose_para
from pipeline.data.reading import (
    SourceData,
    SourceError,
    SplitData,
    carve,
    concat,
    crop_resize,
    gather,
    parallel_map,
    require_dir,
    select,
    square_box,
    workers,
)
from pipeline.faces.crop import CropSpec, crop_square
from pipeline.faces.crop import crop_resize as crop_resize_spec
from pipeline.faces.detector import box_from_landmarks
from pipeline.schema import option

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass
class PoseMatConfig:
    """Schema of ``data.w300_lp`` (source ``300w_lp``) and ``data.aflw2000``: image + .mat folders."""

    root: str = option("", "dataset folder (e.g. .../300W_LP or .../AFLW2000), searched recursively")
    image_size: int = option(64, "side of the square RGB crop in pixels", min=16, max=512)
    framing: Literal["detector", "landmarks"] = option(
        "detector", "detector: crop as the crop spec crops the shipped face detector's box (placed from the eye "
                    "and mouth landmarks), the framing the app gives the model; landmarks: the landmark box with "
                    "`margin` (the published protocol, for comparing with papers)")
    margin: float = option(0.2, "framing: landmarks: crop margin on each side, as a fraction of the landmark "
                                "box's longer side", min=0, max=2)
    max_angle: float = option(0.0, "skip samples with any |angle| above this (degrees; 0 = keep all; "
                                   "AFLW2000's usual protocol is 99)", min=0, max=180)
    val_fraction: float = option(0.05, "validation share carved from the training data (whole faces)",
                                 min=0, max=0.5)
    test_fraction: float = option(0.2, "test share carved from this dataset when `test` is empty",
                                  min=0, max=0.9)
    test: list[str] = option([], "datasets read whole as the test split (aflw2000, biwi); empty: carve "
                                 "test_fraction of this dataset")
    limit: int = option(0, "read at most this many images (sorted by path; 0 = all)", min=0)
    workers: int = option(0, "decoding threads (0 = every core)", min=0, max=256)


@dataclass
class BiwiConfig:
    """Schema of ``data.biwi``: the preprocessed BIWI ``.npz`` (one file, or a train/test pair)."""

    root: str = option("", "a BIWI .npz file, or a folder holding train_file and test_file")
    train_file: str = option("BIWI_train.npz", "training file inside a root folder")
    test_file: str = option("BIWI_test.npz", "test file inside a root folder (also the file used when BIWI "
                                             "is another source's test set)")
    channel_order: Literal["bgr", "rgb"] = option("bgr", "channel order of `image` (bgr: written by OpenCV, "
                                                         "as FSA-Net's preprocessing does)")
    image_size: int = option(64, "side of the crops fed to the model (resized when the file's differ)",
                             min=16, max=512)
    max_angle: float = option(0.0, "skip samples with any |angle| above this (degrees; 0 = keep all)",
                              min=0, max=180)
    val_fraction: float = option(0.1, "validation share carved from training (whole subjects when the file "
                                      "has `subject`, else its last rows)", min=0, max=0.5)
    test_fraction: float = option(0.3, "one file with `subject`: share of subjects held out for test",
                                  min=0, max=0.9)


def _group_of(path: Path) -> str:
    """300W-LP's synthesized views ``NAME_k`` (and their flips) come from one face ``NAME``."""
    return re.sub(r"_\d+$", "", path.stem)


# 68-point landmark indices (iBUG): the subject's right eye, left eye, mouth
_RIGHT_EYE, _LEFT_EYE, _MOUTH = range(36, 42), range(42, 48), range(48, 68)


def _detector_box(pt: np.ndarray) -> tuple[float, float, float, float] | str:
    """The shipped detector's box for a face with these 68 landmarks (2 x 68), or why there is none."""
    if pt.shape[1] != 68:
        return "framing detector needs 68 landmarks"
    ok = (pt >= 0).all(0) & np.isfinite(pt).all(0)
    centres = []
    for idx in (_RIGHT_EYE, _LEFT_EYE, _MOUTH):
        sel = [i for i in idx if ok[i]]
        if not sel:
            return "eye or mouth landmarks not visible"
        centres.append(pt[:, sel].mean(1))
    return box_from_landmarks(*centres)


def _load_one(path: Path, margin: float, max_angle: float, size: int, framing: str = "landmarks"
              ) -> tuple[np.ndarray, np.ndarray] | str:
    """One sample's (crop, label), or the reason it is skipped."""
    import scipy.io
    from PIL import Image

    mat = path.with_suffix(".mat")
    if not mat.is_file():
        return "no .mat next to the image"
    try:
        m = scipy.io.loadmat(str(mat), variable_names=["Pose_Para", "pt2d"])
    except Exception:
        return "unreadable .mat"
    if "Pose_Para" not in m or "pt2d" not in m:
        return "no Pose_Para or pt2d in the .mat"
    para, pt = np.asarray(m["Pose_Para"], np.float64).ravel(), np.asarray(m["pt2d"], np.float64)
    if para.size < 3 or pt.ndim != 2 or pt.shape[0] != 2:
        return "malformed Pose_Para or pt2d"
    y = pose_from_pose_para(para)
    if not np.isfinite(y).all():
        return "non-finite pose"
    if max_angle and np.abs(y).max() > max_angle:
        return f"an angle beyond +-{max_angle:g} deg"
    visible = pt[:, (pt >= 0).all(0) & np.isfinite(pt).all(0)].T
    if len(visible) < 2 or np.ptp(visible, 0).max() <= 0:
        return "fewer than 2 distinct visible landmarks"
    if framing == "detector":
        det_box = _detector_box(pt)
        if isinstance(det_box, str):
            return det_box
        spec = CropSpec(size=size)
        left, top, side = crop_square(det_box, spec.scale, spec.shift_y)
        box = (left, top, left + side, top + side)
    else:
        box = square_box(visible, margin)
    try:
        img = Image.open(path)
        full_w = img.size[0]
        side = box[2] - box[0]
        if img.format == "JPEG" and side > 2 * size:  # decode at a reduced scale when it cannot matter
            img.draft("RGB", (int(img.size[0] * size / side) + 1, int(img.size[1] * size / side) + 1))
        img.load()
    except Exception:
        return "unreadable image"
    f = img.size[0] / full_w
    if framing == "detector":  # the crop spec's own resample and padding, as on the phone
        rgb = np.asarray(img.convert("RGB"))
        return crop_resize_spec(rgb, (box[0] * f, box[1] * f, (box[2] - box[0]) * f), size, size, spec.padding), y
    return crop_resize(img, tuple(b * f for b in box), (size, size)), y


def read_mat_folder(cfg: PoseMatConfig, key: str, size: int, skipped: Counter, prefix: str = "") -> SplitData:
    """Every sample of a 300W-LP / AFLW2000 folder, one group per source face."""
    root = require_dir(cfg.root, f"{key}.root", "folder holding the images and their .mat files")
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if cfg.limit:
        paths = paths[:cfg.limit]
    if not paths:
        raise SourceError(f"{key}.root: no .jpg/.png images under {root}; point it at the dataset folder")
    results = parallel_map(lambda p: _load_one(p, cfg.margin, cfg.max_angle, size, cfg.framing), paths,
                           workers(cfg.workers))
    local: Counter = Counter()
    x, y, keep = gather(results, (size, size), local)
    skipped.update({prefix + k: v for k, v in local.items()})
    if not keep:
        raise SourceError(f"{key}.root: none of the {len(paths)} images under {root} could be used "
                          f"({dict(local)}); check the folder holds images with their .mat files")
    names = sorted({_group_of(paths[i]) for i in keep})
    index = {n: i for i, n in enumerate(names)}
    group = np.array([index[_group_of(paths[i])] for i in keep], np.int32)
    return SplitData(x, y.reshape(-1, 3), group, names)


def _read_npz(path: Path, key: str, cfg: BiwiConfig, size: int, skipped: Counter, prefix: str) -> SplitData:
    if not path.is_file():
        raise SourceError(f"{key}: {path} does not exist; point data.biwi.root at a BIWI .npz or its folder")
    try:
        with np.load(path) as z:
            files = set(z.files)
            if not {"image", "pose"} <= files:
                raise SourceError(f"{key}: {path} has no 'image' and 'pose' arrays (has {sorted(files)}); "
                                  "expected the preprocessed BIWI .npz")
            image, pose = z["image"], z["pose"]
            subject = z["subject"] if "subject" in files else None
    except SourceError:
        raise
    except Exception as exc:
        raise SourceError(f"{key}: {path} is not a readable .npz ({type(exc).__name__}); "
                          "re-create or re-copy the file") from exc
    if image.ndim != 4 or image.shape[-1] != 3 or pose.ndim != 2 or pose.shape[1] != 3 or len(pose) != len(image):
        raise SourceError(f"{key}: {path}: expected image N x H x W x 3 and pose N x 3, got "
                          f"{image.shape} and {pose.shape}; use the preprocessed BIWI .npz")
    y = pose.astype(np.float32)  # (yaw, pitch, roll) degrees: already the pipeline's convention
    ok = np.isfinite(y).all(1)
    skipped[prefix + "non-finite pose"] += int((~ok).sum())
    if cfg.max_angle:
        far = ok & (np.abs(y) > cfg.max_angle).any(1)
        skipped[prefix + f"an angle beyond +-{cfg.max_angle:g} deg"] += int(far.sum())
        ok &= ~far
    x = image[ok].astype(np.uint8)
    if cfg.channel_order == "bgr":
        x = np.ascontiguousarray(x[..., ::-1])
    if x.shape[1:3] != (size, size):
        from PIL import Image

        x = np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.Resampling.BILINEAR))
                      for im in x]) if len(x) else np.zeros((0, size, size, 3), np.uint8)
    names, group = [], None
    if subject is not None:
        names_arr, group = np.unique(subject[ok].astype(str), return_inverse=True)
        names, group = [str(n) for n in names_arr], group.astype(np.int32)
    return SplitData(x, y[ok], group, names)


def _biwi_paths(cfg: BiwiConfig) -> tuple[Path, Path | None]:
    """(file, None) for one file, (train, test) for a folder."""
    if not cfg.root:
        raise SourceError("data.biwi.root: not set; point it at a BIWI .npz file or the folder holding "
                          f"{cfg.train_file} and {cfg.test_file}")
    root = Path(cfg.root).expanduser()
    if root.is_file():
        return root, None
    if root.is_dir():
        return root / cfg.train_file, root / cfg.test_file
    raise SourceError(f"data.biwi.root: {root} does not exist; point it at a BIWI .npz file or its folder")


def read_aflw2000_whole(data_cfg, size: int, skipped: Counter) -> SplitData:
    """AFLW2000 read whole, as another source's test split (``Source.read_whole``)."""
    return read_mat_folder(data_cfg.aflw2000, "data.aflw2000", size, skipped, "aflw2000: ")


def read_biwi_whole(data_cfg, size: int, skipped: Counter) -> SplitData:
    """BIWI's test file (or its one file) read whole, as another source's test split."""
    first, test = _biwi_paths(data_cfg.biwi)
    return _read_npz(test or first, "data.biwi.root", data_cfg.biwi, size, skipped, "biwi: ")


def _tail(n: int, fraction: float) -> np.ndarray:
    mask = np.zeros(n, bool)
    k = int(round(fraction * n))
    if k:
        mask[n - k:] = True
    return mask


def _finish(full: SplitData, test: SplitData | None, val_fraction: float, test_fraction: float, seed: int,
            skipped: Counter) -> SourceData:
    """Carve test (when no separate test set) and then validation from training, by group."""
    if test is None:
        held = carve(len(full.y), test_fraction, seed * 10 + 2, full.group)
        test, full = select(full, held), select(full, ~held)
    held = carve(len(full.y), val_fraction, seed * 10 + 1, full.group) if full.group is not None \
        else _tail(len(full.y), val_fraction)
    splits = {"train": select(full, ~held), "val": select(full, held), "test": test}
    return SourceData(splits, POSE_NAMES, DEGREES, POSE_MIRROR, skipped)


def read_pose_mat(data_cfg, section: str, read_test_set: Callable[[str, Any, int, Counter], SplitData]
                  ) -> SourceData:
    """Source ``300w_lp`` (section ``w300_lp``) or ``aflw2000``: train/val from this folder, test from
    the ``test`` datasets (cross-dataset, each read by ``read_test_set(name, data_cfg, size, skipped)``,
    which the sources table supplies) or carved from it."""
    cfg: PoseMatConfig = getattr(data_cfg, section)
    skipped: Counter = Counter()
    full = read_mat_folder(cfg, f"data.{section}", cfg.image_size, skipped)
    test = None
    if cfg.test:
        parts = [read_test_set(n, data_cfg, cfg.image_size, skipped) for n in cfg.test]
        test = concat(parts, list(cfg.test))
    return _finish(full, test, cfg.val_fraction, cfg.test_fraction, data_cfg.seed, skipped)


def read_biwi(data_cfg) -> SourceData:
    """Source ``biwi``: the train/test pair as given, or one file split by subject."""
    cfg: BiwiConfig = data_cfg.biwi
    skipped: Counter = Counter()
    first, test_path = _biwi_paths(cfg)
    full = _read_npz(first, "data.biwi.root", cfg, cfg.image_size, skipped, "")
    test = None
    if test_path is not None:
        test = _read_npz(test_path, "data.biwi.root", cfg, cfg.image_size, skipped, "")
    elif full.group is None and cfg.test_fraction > 0:
        raise SourceError(f"data.biwi.root: {first} has no 'subject' array, so it cannot be split by subject; "
                          "give a folder with the train/test pair, or use BIWI as a test set (data.w300_lp.test)")
    return _finish(full, test, cfg.val_fraction, cfg.test_fraction, data_cfg.seed, skipped)


def pose_range(max_angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Label range of a head-pose source: +-max_angle, or +-99 deg (the usual protocol's bound) when 0."""
    high = np.full(3, max_angle or 99.0, np.float32)
    return -high, high
