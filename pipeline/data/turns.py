"""A face turned in its photo, cropped as the model sees it: the crops behind every exact label change.

A photo's pose is unknown, but what turning or mirroring the photo does to it is exact
(:mod:`pipeline.data.transforms`). ``crops_for`` finds the face as the crop spec's ``box_source`` says
(``pipeline.faces.locate.locator``), turns the photo about it by each angle of a sweep, finds the face
again in each turned photo (as a phone's detector would) and crops it, and does the same for the mirrored
photo. Where the spec turns crops with the eye line, each crop's turn is kept so that a reading can be
brought back into its frame (``in_frame``).

Two callers share it, so the crops are the same bits in both: the real-photo check
(``benchmarks.photo_check``), which scores how a model's reading follows the turns, and the real-face
pseudo-labels (:mod:`pipeline.data.pseudo_faces`), which train a student on them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import NamedTuple

import numpy as np

from pipeline.data.transforms import frame_pose, mirror_image, rotate_image
from pipeline.faces.crop import CropSpec, crop_angle, crop_pixels
from pipeline.faces.detector import Detection
from pipeline.faces.locate import locator

SWEEP = tuple(float(t) for t in range(-40, 41, 10))


def centre_of(box: Sequence[float]) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0])


def nearest(found: list[Detection], centre: np.ndarray) -> Detection | None:
    """The detection whose box centre is closest to ``centre`` (the face being followed)."""
    return min(found, key=lambda d: float(np.linalg.norm(centre_of(d.box) - centre)), default=None)


def crops_for(image: np.ndarray, spec: CropSpec, sweep: Sequence[float] = SWEEP) -> dict:
    """The crops a model sees for one photo: ``sweep`` crops (None where no face was found), the
    original's and the mirror's, each with the angle its crop turned (``angles``: original, sweep...,
    mirror; 0 unless the spec turns crops with the eye line); or ``{"error": ...}`` when the original
    shows no face. Faces are found as the spec's ``box_source`` says (``pipeline.faces.locate.locator``)."""

    draw_boxes = locator(spec.box_source)

    def find(img: np.ndarray, near: np.ndarray | None) -> Detection | None:
        found = draw_boxes(img)
        return (found[0] if found else None) if near is None else nearest(found, near)

    face = find(image, None)
    if face is None:
        return {"error": "no face detected"}
    centre = centre_of(face.box)
    sweep_crops, angles = [], [crop_angle(spec, face.keypoints)]
    for t in sweep:
        turned = rotate_image(image, t, tuple(centre))
        det = find(turned, centre)
        sweep_crops.append(None if det is None else crop_pixels(turned, det.box, spec, det.keypoints))
        angles.append(None if det is None else crop_angle(spec, det.keypoints))
    mirrored = mirror_image(image)
    det_m = find(mirrored, np.array([image.shape[1] - centre[0], centre[1]]))
    angles.append(None if det_m is None else crop_angle(spec, det_m.keypoints))
    return {"box": [round(v, 1) for v in face.box], "score": round(face.score, 3),
            "original": crop_pixels(image, face.box, spec, face.keypoints), "sweep": sweep_crops,
            "mirror": None if det_m is None else crop_pixels(mirrored, det_m.box, spec, det_m.keypoints),
            "angles": angles,
            # the photo's crop as it stands in the frame (not turned): what a pose in the frame is drawn on
            "shown": crop_pixels(image, face.box, replace(spec, rotate="none"))}


class Found(NamedTuple):
    """One crop ``crops_for`` found: ``kind`` "original", "turned" or "mirror", the sweep angle it was turned
    by (0 unless turned) and the angle its crop turned (``crop_angle``)."""

    kind: str
    turn: float
    crop_turn: float


def found_crops(c: dict, sweep: Sequence[float] = SWEEP) -> tuple[list[np.ndarray], list[Found]]:
    """``crops_for``'s crops where a face was found, in order (original, turned..., mirror), each with what
    it is: the batch a model reads, and what brings each reading back into the upright frame."""
    angles = c.get("angles") or [0.0] * (len(sweep) + 2)
    crops, found = [c["original"]], [Found("original", 0.0, angles[0])]
    for t, crop, a in zip(sweep, c["sweep"], angles[1:-1], strict=True):
        if crop is not None:
            crops.append(crop)
            found.append(Found("turned", float(t), a))
    if c["mirror"] is not None:
        crops.append(c["mirror"])
        found.append(Found("mirror", 0.0, angles[-1]))
    return crops, found


def in_frame(pred: np.ndarray, angles: Sequence[float]) -> np.ndarray:
    """(N, 3) model readings on turned crops -> poses in their frames (``frame_pose``); an output the
    model does not give (NaN) stays NaN, the others read as if it were 0."""
    out = np.array(pred, np.float64)
    for i, a in enumerate(angles):
        if a:
            missing = ~np.isfinite(out[i])
            out[i] = frame_pose(np.nan_to_num(out[i]), a)
            out[i, missing] = np.nan
    return out
