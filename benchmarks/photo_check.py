"""The real-photo check: label changes a model must follow on real faces, whose pose nobody measured.

A photo's true pose is unknown, but what an image transform does to it is exact
(pipeline/data/transforms.py). For each photo the face is found by the shipped detector, then:

* **roll sweep**: the photo is turned clockwise by each t in ``SWEEP`` (+-40 degrees) about the face
  centre; the detector runs again on the turned photo (as the phone's would), the crop spec crops it
  and the model predicts. The expected pose at t is ``rotate_pose(prediction at t=0, t)``.
  ``roll_slope`` and ``roll_r2`` fit predicted roll against expected roll (ideal 1 and 1);
  ``yaw_drift`` / ``pitch_drift`` are the range (max - min) over the sweep of predicted minus expected
  yaw / pitch (ideal 0; for a face looking at the camera, simply how far yaw or pitch wander).
* **mirror**: the photo is mirrored, detected, cropped and predicted; ``mirror_error`` is the largest
  of |prediction - mirror_pose(prediction of the original)| over yaw, pitch and roll (ideal 0).

Where the crop spec turns crops with the eye line (``rotate: eye_line``) each crop's turn is kept and
every prediction is turned back into its frame (``in_frame``) before it is scored, as ``predict`` and
the app do.

Faces are found as the model's crop spec names (``box_source``): by default the detector and its
second, levelled look at each face (``pipeline.faces.locate``), as ``predict`` finds them.
``mirror_averaged`` (``python -m benchmarks.real_faces RUN --mirror-average``, a test-time lever;
docs/real-faces.md has its figures) averages a model's reading of a crop with the mirrored reading of
the crop mirrored, which makes the model itself mirror-symmetric (what is left of the mirror error is
the detector's).

A **control** (``rendered_photos``) puts rendered faces through the same check: faces of the training
renderer, near frontal as the photos are, each in a larger frame. There the model is in its own domain,
so what it misses on them is the check asking more than the model's precision, not the gap to real skin.

``check`` runs every photo through one ``predict`` (uint8 crops (N, size, size, 3) RGB -> (N, 3)
degrees (yaw, pitch, roll)), tests each against ``TARGETS`` and aggregates: worst and mean over photos.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from pipeline import contract
from pipeline.data.synthetic_faces import SyntheticFacesConfig, render_faces, sample_poses
from pipeline.data.transforms import mirror_pose, rotate_pose
from pipeline.data.turns import SWEEP, centre_of, crops_for, found_crops, in_frame
from pipeline.faces import photos as photo_set
from pipeline.faces.crop import CropSpec, crop_pixels
from pipeline.faces.detector import detect
from pipeline.faces.locate import locator

Predict = Callable[[np.ndarray], np.ndarray]
# What a face model must meet on every photo for the check to pass (docs/real-faces.md).
TARGETS = {"roll_slope": (0.9, 1.1), "roll_r2_min": 0.95, "drift_max": 8.0, "mirror_error_max": 5.0}
METRICS = ("roll_slope", "roll_r2", "yaw_drift", "pitch_drift", "mirror_error")
CONTROL_RENDERS = 6
# The control's renders: the training renderer's defaults, near frontal as the shipped photos, no framing
# jitter or occluders, drawn at 128 px
_CONTROL = SyntheticFacesConfig(image_size=128, yaw_range=20.0, pitch_range=15.0, scale_jitter=0.0,
                                translate_jitter=0.0, occlusion_prob=0.0)
JITTER = 0.02  # jittered_crops: box moves and scalings, a fraction of its side


def mirror_averaged(predict: Predict) -> Predict:
    """A predictor that averages a model's reading of each crop with the mirrored (``mirror_pose``)
    reading of the crop mirrored: mirror-equivariant by construction, at twice the model's cost."""

    def averaged(crops: np.ndarray) -> np.ndarray:
        crops = np.asarray(crops)
        plain = np.asarray(predict(crops), np.float64)
        flipped = np.asarray(predict(np.ascontiguousarray(crops[:, :, ::-1])), np.float64)
        return (plain + mirror_pose(flipped)) / 2.0

    return averaged


def _fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares slope of y on x and its R^2."""
    slope, icpt = np.polyfit(x, y, 1)
    ss_res = float(((y - (slope * x + icpt)) ** 2).sum())
    ss_tot = float(((y - y.mean()) ** 2).sum())
    return float(slope), (1.0 - ss_res / ss_tot) if ss_tot > 0 else 0.0


def score(crops: dict, predict: Predict, sweep: Sequence[float] = SWEEP) -> dict:
    """One photo's metrics from its ``crops_for`` crops under one model."""
    if "error" in crops:
        return {"error": crops["error"]}
    batch, found = found_crops(crops, sweep)
    t = np.array([f.turn for f in found if f.kind == "turned"])
    if len(t) < 3:
        return {"error": f"face found at only {len(t)} of {len(sweep)} sweep angles"}
    pred = in_frame(np.asarray(predict(np.stack(batch)), np.float64).reshape(len(batch), 3),
                    [f.crop_turn for f in found])
    base = pred[0]
    got = pred[1:1 + len(t)]
    if not np.isfinite(base[2]):
        return {"error": "the model gave no roll for the unturned photo"}
    # a model without yaw or pitch (NaN) is taken as seeing a frontal face
    want = np.stack([rotate_pose(np.nan_to_num(base), a) for a in t])
    # expected roll unwrapped around the base roll, so a +-40 degree sweep never jumps by 360
    want_roll = base[2] + (want[:, 2] - base[2] + 180.0) % 360.0 - 180.0
    fit = np.isfinite(got[:, 2])
    if fit.sum() < 3:
        return {"error": f"roll predicted at only {int(fit.sum())} sweep angles"}
    slope, r2 = _fit(want_roll[fit], got[fit, 2])
    resid = got - want

    def num(v: float, digits: int = 2) -> float | None:  # NaN (an output a model does not give) -> None
        return round(float(v), digits) if np.isfinite(v) else None

    out = {"box": crops["box"], "detector_score": crops["score"], "angles_detected": len(t),
           "pose": [num(v) for v in base], "roll_slope": num(slope, 3), "roll_r2": num(r2, 3),
           "yaw_drift": num(np.ptp(resid[:, 0])), "pitch_drift": num(np.ptp(resid[:, 1])), "mirror_error": None}
    if crops["mirror"] is not None:
        out["mirror_error"] = num(np.nanmax(np.abs(pred[-1] - mirror_pose(base))))
    out["passes"] = passes(out)
    return out


def passes(m: dict) -> bool:
    if any(m.get(k) is None for k in METRICS):
        return False
    lo, hi = TARGETS["roll_slope"]
    return (lo <= m["roll_slope"] <= hi and m["roll_r2"] >= TARGETS["roll_r2_min"]
            and max(m["yaw_drift"], m["pitch_drift"]) <= TARGETS["drift_max"]
            and m["mirror_error"] <= TARGETS["mirror_error_max"])


def aggregate(per_photo: dict[str, dict]) -> dict:
    """Mean and worst of each metric over the photos that could be scored, how many photos pass; passes
    only if every photo does."""
    ok = [m for m in per_photo.values() if "error" not in m]
    out: dict = {"photos": len(per_photo), "scored": len(ok), "passing": sum(bool(m["passes"]) for m in ok),
                 "passes_all": bool(ok) and len(ok) == len(per_photo) and all(m["passes"] for m in ok)}
    for key in METRICS:
        vals = np.array([m[key] for m in ok if m.get(key) is not None], np.float64)
        if not len(vals):
            continue
        worst = (vals[np.argmax(np.abs(vals - 1.0))] if key == "roll_slope" else vals.min() if key == "roll_r2"
                 else vals.max())
        out[key] = {"mean": round(float(vals.mean()), 3), "worst": round(float(worst), 3)}
    return out


def eye_line_roll(crops: np.ndarray) -> np.ndarray:
    """A reference "model" that reads roll off the detector's eye keypoints on each crop (yaw and pitch
    NaN: it has none). It shows what the check measures for a roll estimate that follows the face: its
    slope and R^2 test the sweep, the re-detection and the crop spec, not a trained network."""
    out = np.full((len(crops), 3), np.nan)
    for i, c in enumerate(crops):
        found = detect(c)
        if found:
            right_eye, left_eye = found[0].keypoints[0], found[0].keypoints[1]
            # roll > 0 turns the head clockwise: the subject's left eye (image right) drops (y down)
            out[i, 2] = np.degrees(np.arctan2(left_eye[1] - right_eye[1], left_eye[0] - right_eye[0]))
    return out


def constant_reading(crops: np.ndarray) -> np.ndarray:
    """A reference "model" that reads nothing: a frontal, level face in every crop. Where crops turn with the
    eye line it still follows a turning face (its roll is the crop's turn) and never drifts, so it shows what
    the label-change tests grant a model that does not look: passing them is necessary, not sufficient."""
    return np.zeros((len(crops), 3))


# Rows of the check that are not models, named once in the run's contract (summary.json leaves them out)
REFERENCES = contract.PHOTO_REFERENCES


def photo_crops(spec: CropSpec, names: Sequence[str] = photo_set.NAMES, sweep: Sequence[float] = SWEEP
                ) -> dict[str, dict]:
    """``crops_for`` of every shipped photo: detection and cropping, once for all models."""
    return {name: crops_for(photo_set.load(name), spec, sweep) for name in names}


def jittered_crops(image: np.ndarray, spec: CropSpec, step: float = JITTER) -> np.ndarray | None:
    """The crops of the face ``image`` shows with its box moved by -step, 0, +step of its side in x and y
    and scaled by 1 - step, 1, 1 + step (27 crops, every one turned by the same eye line): what a model
    reads of one face as the detector's box wanders by about its own spread. None without a face."""
    found = locator(spec.box_source)(image)
    if not found:
        return None
    face = found[0]
    cx, cy = centre_of(face.box)
    out = []
    for dx in (-step, 0.0, step):
        for dy in (-step, 0.0, step):
            for ds in (-step, 0.0, step):
                half = face.size * (1.0 + ds) / 2.0
                x, y = cx + dx * face.size, cy + dy * face.size
                out.append(crop_pixels(image, (x - half, y - half, x + half, y + half), spec, face.keypoints))
    return np.stack(out)


def rendered_photos(n: int = CONTROL_RENDERS, seed: int = 9) -> dict[str, np.ndarray]:
    """``n`` faces of the training renderer (default options, no framing jitter or occluders), near frontal
    (|yaw| <= 20, |pitch| <= 15, as the shipped photos), each 128 px square edge-padded to 384 px so the
    face is about as large in the frame as on the photos (a quarter of its side): the check's control."""
    images = render_faces(sample_poses(n, seed, _CONTROL), seed, _CONTROL)
    return {f"render{i}": np.pad(im, ((128, 128), (128, 128), (0, 0)), mode="edge") for i, im in enumerate(images)}


def rendered_poses(n: int = CONTROL_RENDERS, seed: int = 9) -> dict[str, np.ndarray]:
    """The exact pose (yaw, pitch, roll in the image's frame) of each ``rendered_photos`` face."""
    return {f"render{i}": p.astype(np.float64) for i, p in enumerate(sample_poses(n, seed, _CONTROL))}


def pose_error(per_face: dict[str, dict], poses: dict[str, np.ndarray]) -> dict:
    """How far a model's reading of each unturned face (``score``'s ``pose``) is from its exact pose: the
    mean over faces and angles of the absolute error, and the largest. Why: the label-change tests alone
    pass a model that reads nothing: with crops turned by the eye line, a constant reading in the crop
    has roll slope 1 (the eye line's), zero drift and the eye line's mirror error. Only labelled faces
    tell a reader from a constant, and only the renders have labels."""
    errs = np.array([np.abs(np.asarray(m["pose"], np.float64) - poses[name])
                     for name, m in per_face.items() if "error" not in m and None not in m["pose"]])
    if not len(errs):
        return {}
    return {"mean": round(float(errs.mean()), 2), "worst": round(float(errs.max()), 2)}


def check(predicts: dict[str, Predict], spec: CropSpec, names: Sequence[str] = photo_set.NAMES,
          sweep: Sequence[float] = SWEEP, crops: dict[str, dict] | None = None) -> dict:
    """Every photo under every model: ``{"spec", "targets", "sweep", "models": {model: {"photos":
    {name: metrics}, "aggregate": {...}}}}``. ``crops``: :func:`photo_crops` output when the caller
    needs the crops too (else made here)."""
    crops = crops if crops is not None else photo_crops(spec, names, sweep)
    models = {}
    for model, predict in predicts.items():
        per = {name: score(c, predict, sweep) for name, c in crops.items()}
        models[model] = {"photos": per, "aggregate": aggregate(per)}
    return {"spec": spec.to_dict(), "targets": TARGETS, "sweep": list(sweep), "models": models}
