"""The predict loop: every face of every frame, through the detector, the crop spec and the model.

Per frame: the shipped face detector finds every face, as the model's crop spec names
(``pipeline.faces.locate.locator``: a second, levelled look at each face by default); each is
cropped by the model's own crop spec (``crop_pixels``) and run through the artifact (``PoseModel``).
One row per face, or one row for a frame without a face or an input that could not be read (its
``error`` column says why); nothing stops the loop but a bad model or a SOURCE that names nothing.
With ``smooth`` each face in a video is followed from frame to frame (box overlap) and its angles are
filtered as the app filters them (:class:`pipeline.faces.smoothing.PoseSmoother`, constants from the
model's meta); still images are not a sequence and are never smoothed.
"""

from __future__ import annotations

import csv
import glob
import io
import logging
import os
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pipeline.data.transforms import frame_pose
from pipeline.faces.crop import crop_angle, crop_pixels
from pipeline.faces.detector import MIN_SCORE
from pipeline.faces.locate import locator
from pipeline.faces.smoothing import PoseSmoother
from pipeline.predict.media import (
    VideoReader,
    annotate,
    kind_of,
    list_inputs,
    read_image,
    video_writer,
)
from pipeline.predict.model import DEFAULT_MODEL, POSE, PoseModel, open_model
from pipeline.runs import atomic_save, atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

COLUMNS = ("file", "frame", "time_s", "face", "track", "left", "top", "right", "bottom", "score", *POSE,
           *(f"{a}_smoothed" for a in POSE), "detect_ms", "crop_ms", "infer_ms", "error")
STAGES = ("detect_ms", "crop_ms", "infer_ms")
TRACK_IOU = 0.3  # a face overlapping a tracked face's last box by more is the same face
NO_FACE = "no face"
# Counts of inputs that were skipped: any of them makes the command exit 1 (the rest is still written).
SKIPPED = ("unreadable", "unsupported")


@dataclass
class PredictResult:
    """What :func:`predict` returns: the rows (one dict per face or per skipped frame / file, keys
    ``COLUMNS``), the counts, per-stage timing, and where the files went."""

    rows: list[dict]
    counts: dict[str, int]
    timing: dict
    out_dir: Path
    model: dict
    files: dict[str, str] = field(default_factory=dict)

    @property
    def skipped(self) -> int:
        return sum(self.counts.get(k, 0) for k in SKIPPED)


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class Tracks:
    """Faces followed through one video: each detection joins the unclaimed track whose last box it
    overlaps most (IoU > ``TRACK_IOU``), or starts a new one with a fresh filter."""

    def __init__(self, meta: dict):
        self.meta = meta
        self.max_gap_s = PoseSmoother.from_meta(meta).max_gap_s  # a face unseen for longer is gone
        self.live: list[dict] = []  # {"id", "box", "time", "smoother"}
        self.next_id = 0

    def assign(self, boxes: list, t_s: float) -> list[tuple[int, PoseSmoother]]:
        self.live = [tr for tr in self.live if 0.0 <= t_s - tr["time"] <= self.max_gap_s]
        pairs = sorted(((_iou(b, tr["box"]), i, j) for i, b in enumerate(boxes) for j, tr in enumerate(self.live)),
                       reverse=True)
        chosen: dict[int, dict] = {}
        taken: set[int] = set()
        for iou, i, j in pairs:
            if iou > TRACK_IOU and i not in chosen and j not in taken:
                chosen[i] = self.live[j]
                taken.add(j)
        out = []
        for i, box in enumerate(boxes):
            tr = chosen.get(i)
            if tr is None:
                tr = {"id": self.next_id, "smoother": PoseSmoother.from_meta(self.meta)}
                self.next_id += 1
                self.live.append(tr)
            tr["box"], tr["time"] = box, t_s
            out.append((tr["id"], tr["smoother"]))
        return out


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000.0, 3)


def _row(file: str, frame: int, time_s: float | None, **kw) -> dict:
    row = dict.fromkeys(COLUMNS)
    row.update(file=file, frame=frame, time_s=None if time_s is None else round(time_s, 6), **kw)
    return row


def _frame_rows(model: PoseModel, rgb: np.ndarray, file: str, frame: int, time_s: float | None,
                tracks: Tracks | None, min_score: float) -> tuple[list[dict], list]:
    """Rows of one frame, and (box, pose to draw) per face."""
    t0 = time.perf_counter()
    faces = locator(model.spec.box_source)(rgb, min_score)
    detect_ms = _ms(t0)
    if not faces:
        return [_row(file, frame, time_s, detect_ms=detect_ms, error=NO_FACE)], []
    followed = tracks.assign([f.box for f in faces], time_s or 0.0) if tracks is not None else [None] * len(faces)
    rows, drawn = [], []
    for k, (face, track) in enumerate(zip(faces, followed, strict=True)):
        t0 = time.perf_counter()
        pixels = crop_pixels(rgb, face.box, model.spec, face.keypoints)
        crop_ms = _ms(t0)
        t0 = time.perf_counter()
        # a crop turned with the eye line gives the pose on the turned crop: turn it back into the frame
        pose = frame_pose(model.predict(pixels), crop_angle(model.spec, face.keypoints))
        infer_ms = _ms(t0)
        left, top, right, bottom = (round(float(v), 2) for v in face.box)
        row = _row(file, frame, time_s, face=k, left=left, top=top, right=right, bottom=bottom,
                   score=round(face.score, 4), **{a: round(float(v), 3) for a, v in zip(POSE, pose, strict=True)},
                   detect_ms=detect_ms, crop_ms=crop_ms, infer_ms=infer_ms)
        shown = pose
        if track is not None:
            track_id, smoother = track
            shown = smoother.update(pose, time_s or 0.0)
            row["track"] = track_id
            row.update({f"{a}_smoothed": round(float(v), 3) for a, v in zip(POSE, shown, strict=True)})
        rows.append(row)
        drawn.append((face.box, shown))
    return rows, drawn


def _annotated_path(out_dir: Path, path: Path, root: Path, video: bool) -> Path:
    rel = path.relative_to(root) if path.is_relative_to(root) else Path(path.name)
    if video:
        return out_dir / "annotated" / rel.with_suffix(".mp4")
    keep = rel.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp", ".webp")
    return out_dir / "annotated" / (rel if keep else rel.with_name(rel.name + ".png"))


def _save_image(dest: Path, rgb: np.ndarray) -> None:
    from PIL import Image

    fmt = {".jpg": "JPEG", ".jpeg": "JPEG"}.get(dest.suffix.lower(), dest.suffix.lstrip(".").upper())
    atomic_save(dest, lambda tmp: Image.fromarray(rgb).save(tmp, format=fmt))


def _next_frame(frames, name: str, index: int, counts: Counter, rows: list[dict]):
    """The next decoded frame, or None at the end or where a damaged stream breaks (reported in a row)."""
    try:
        return next(frames)
    except StopIteration:
        if index == 0:
            counts["unreadable"] += 1
            rows.append(_row(name, None, None, error="unreadable: no frame could be decoded"))
        return None
    except Exception as exc:  # a damaged stream: keep what was decoded, report where it broke
        counts["unreadable"] += 1
        rows.append(_row(name, index, None, error=f"unreadable from this frame on: {exc}"))
        return None


def _video(model: PoseModel, path: Path, name: str, save_to: Path | None, smooth: bool, min_score: float,
           counts: Counter) -> list[dict]:
    try:
        reader = VideoReader(path)
    except Exception as exc:  # any decoder failure is this file's problem, reported in its row
        counts["unreadable"] += 1
        return [_row(name, None, None, error=f"unreadable: {exc}")]
    tracks = Tracks(model.meta) if smooth else None
    rows: list[dict] = []
    frames = iter(reader)

    def loop(frame, writer) -> None:
        with tqdm(total=reader.frames or None, desc=path.name, unit="frame", disable=None, leave=False,
                  dynamic_ncols=True) as bar:
            while frame is not None:
                got, drawn = _frame_rows(model, frame.rgb, name, frame.index, frame.time_s, tracks, min_score)
                rows.extend(got)
                counts["frames"] += 1
                if writer is not None:
                    writer.write(annotate(frame.rgb, drawn, model.spec.scale, model.spec.shift_y))
                bar.update(1)
                frame = _next_frame(frames, name, frame.index + 1, counts, rows)

    try:
        # the first frame before the writer: a file that decodes to nothing leaves no empty video behind
        first = _next_frame(frames, name, 0, counts, rows)
        if first is not None:
            counts["videos"] += 1
            if save_to is None:
                loop(first, None)
            else:
                with video_writer(save_to, reader.rate) as writer:
                    loop(first, writer)
    finally:
        reader.close()
    return rows


def _image(model: PoseModel, path: Path, name: str, save_to: Path | None, min_score: float,
           counts: Counter) -> list[dict]:
    try:
        rgb = read_image(path)
    except Exception as exc:  # Pillow raises many kinds for damaged or foreign files
        counts["unreadable"] += 1
        return [_row(name, None, None, error=f"unreadable: {type(exc).__name__}: {exc}")]
    counts["images"] += 1
    counts["frames"] += 1
    rows, drawn = _frame_rows(model, rgb, name, 0, None, None, min_score)
    if save_to is not None:
        _save_image(save_to, annotate(rgb, drawn, model.spec.scale, model.spec.shift_y))
    return rows


def timing_summary(rows: list[dict]) -> dict:
    """Median and interquartile range (ms) of each stage over the rows that ran it; detect once per frame."""
    out = {}
    for stage in STAGES:
        if stage == "detect_ms":
            seen = {(r["file"], r["frame"]): r[stage] for r in rows if r[stage] is not None}
            values = list(seen.values())
        else:
            values = [r[stage] for r in rows if r[stage] is not None]
        if values:
            q1, med, q3 = np.percentile(values, [25, 50, 75])
            out[stage] = {"median": round(float(med), 3), "iqr": [round(float(q1), 3), round(float(q3), 3)],
                          "n": len(values)}
    return out


def to_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in r.items()} for r in rows)
    return buf.getvalue()


def default_out(source: str | Path) -> Path:
    """``runs/predict/<name>``: a file's stem, a folder's name, a pattern's last folder before its wildcards."""
    text = str(source).rstrip("/\\") or "source"
    if glob.has_magic(text) and not Path(text).exists():
        fixed = list(Path(text).parts[:-1])
        cut = next((i for i, part in enumerate(fixed) if glob.has_magic(part)), len(fixed))
        name = fixed[cut - 1] if cut else "glob"
    else:
        name = Path(text).stem if Path(text).is_file() else Path(text).name
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "source"
    return Path("runs") / "predict" / name


def predict(source: str | Path, model: str | Path | PoseModel = DEFAULT_MODEL, *, out: str | Path | None = None,
            save: bool = False, smooth: bool = False, recursive: bool = False, threads: int = 1,
            min_score: float = MIN_SCORE) -> PredictResult:
    """Run the pose model on every face of SOURCE; write ``predictions.csv`` and ``predictions.json``
    (and with ``save`` the annotated images and videos under ``annotated/``) into ``out``."""
    files = list_inputs(source, recursive)
    pose_model = model if isinstance(model, PoseModel) else open_model(model, threads)
    out_dir = Path(out) if out is not None else default_out(source)
    root = Path(os.path.commonpath([str(p.parent.resolve()) for p in files]))
    counts: Counter = Counter({k: 0 for k in ("files", "images", "videos", "frames", "faces", "no_face",
                                              *SKIPPED)})
    rows: list[dict] = []
    start = time.perf_counter()
    for path in tqdm(files, desc="predict", unit="file", disable=None if len(files) > 1 else True,
                     dynamic_ncols=True):
        counts["files"] += 1
        kind = kind_of(path)
        name = str(path)
        save_to = _annotated_path(out_dir, path.resolve(), root, kind == "video") if save else None
        if kind == "unsupported":
            counts["unsupported"] += 1
            rows.append(_row(name, None, None, error=f"unsupported format: {path.suffix or 'no suffix'}"))
        elif kind == "video":
            rows.extend(_video(pose_model, path, name, save_to, smooth, min_score, counts))
        else:
            rows.extend(_image(pose_model, path, name, save_to, min_score, counts))
    wall = time.perf_counter() - start
    counts["faces"] = sum(1 for r in rows if r["face"] is not None)
    counts["no_face"] = sum(1 for r in rows if r["error"] == NO_FACE)
    timing = {**timing_summary(rows), "wall_s": round(wall, 3),
              "frames_per_s": round(counts["frames"] / wall, 2) if wall > 0 else None}
    result = PredictResult(rows, dict(counts), timing, out_dir, pose_model.describe())
    result.files["csv"] = str(atomic_write_text(out_dir / "predictions.csv", to_csv(rows)))
    filt = PoseSmoother.from_meta(pose_model.meta)
    result.files["json"] = str(atomic_write_json(out_dir / "predictions.json", {
        "source": str(source), "model": result.model,
        "smoothing": {"alpha": filt.alpha, "max_gap_s": filt.max_gap_s} if smooth else None,
        "counts": result.counts, "timing": timing, "columns": list(COLUMNS), "rows": rows}))
    if save:
        result.files["annotated"] = str(out_dir / "annotated")
    if not isinstance(model, PoseModel):
        pose_model.close()
    return result
