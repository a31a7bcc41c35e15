"""Where a face is, for the crop spec: the detector, then a second look at each face, levelled and close.

BlazeFace reads the whole frame at 128 x 128, so a face a fifth of a 512-pixel photo wide is about 25
input pixels across, and its eye keypoints (which turn an ``eye_line`` crop) and box (which sizes every
crop) move with it: on the shipped photos turned by up to 40 degrees, the eye line of a single
detection misses the turn by up to 8-12 degrees per photo and its box side ranges over 0.83-1.06 of the
upright one. MediaPipe's own face-landmark graph does not crop from the detection either: it turns a
region around it by the eye line and reads the face again there. ``locate`` does the same with the
detector itself: the square of ``REGION`` x the box side around each detection, turned by its eye line,
resampled to the detector's input side, is detected again; the face nearest the region's centre, mapped
back into the frame, is what comes out. On the same turns its eye line misses by at most 2-6 degrees
(9 on the camera photo) and its box side stays within 0.98-1.12 (``python -m pipeline.data.framing``,
``photos_turned``; ``tests/test_faces.py`` holds hopper at +-40 degrees).

The second look draws a slightly larger box than a single detection does (crop scale 1.86 instead of
2.01 frames the training renders, ``python -m pipeline.data.framing``), so a crop spec names which of the
two drew its boxes: ``BOX_SOURCE`` for this one. It costs one more detector call per face, on a
128 x 128 patch (``predict``'s ``detect_ms`` column includes it). Its pieces (``region``, ``patch``,
``nearest``, ``to_frame``, ``from_patch``) are what the Android core's ``SecondLook`` computes in the same
float64 order, with ML Kit as the detector and a patch side of its own; the goldens
(``exporters.golden.second_look_record``) hold both sides to the same bits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pipeline.faces.crop import box_centre, crop_resize, crop_square, eye_line
from pipeline.faces.detector import DETECTOR_NAME, INPUT_SIZE, MIN_SCORE, Detection, as_rgb, detect

BOX_SOURCE = f"{DETECTOR_NAME}_second_look"
# The second look's square, in first-detection box sides: about the crop the model sees, so the face
# fills about half the detector's input (the short-range model is made for a tenth to three quarters)
# whatever its size in the frame.
REGION = 2.0


@dataclass(frozen=True)
class Region:
    """Where the second look reads a face: ``square`` = (left, top, side) of ``REGION`` x the first box's
    longer side around its centre (``crop_square``, no shift), ``turn`` = (cos, sin) of its eye line,
    ``pivot`` = the box centre the square turns about. The Android core's ``SecondLook`` computes the
    same from ML Kit's face, in the same float64 order (GoldenTest holds it to these bits)."""

    square: tuple[float, float, float]
    turn: tuple[float, float]
    pivot: tuple[float, float]


def region(det: Detection) -> Region:
    """The region ``second_look`` reads ``det`` again in."""
    return Region(crop_square(det.box, REGION, 0.0), eye_line(det.keypoints), box_centre(det.box))


def patch(image: np.ndarray, reg: Region, side: int = INPUT_SIZE) -> np.ndarray:
    """(side, side, 3) uint8: ``reg``'s square of ``image`` turned level (``crop_resize``, edge padding,
    turned by the eye line about the box centre), what the detector reads the second time."""
    x0, y0, sq = reg.square
    px, py = reg.pivot
    # resample from the window the turned square reaches (its circumcircle, 2 px for the bilinear taps),
    # not the whole frame: the same pixels (edge clamping only ever meets the frame's own edges), a
    # fraction of the work on a large frame
    reach = sq / 2.0 ** 0.5 + 2.0
    h, w = image.shape[:2]
    wx, wy = max(0, int(np.floor(px - reach))), max(0, int(np.floor(py - reach)))
    window = image[wy:min(h, int(np.ceil(py + reach)) + 1), wx:min(w, int(np.ceil(px + reach)) + 1)]
    return crop_resize(window, (x0 - wx, y0 - wy, sq), side, side, "edge", turn=reg.turn, pivot=(px - wx, py - wy))


def nearest(found: list[Detection], side: int = INPUT_SIZE) -> Detection:
    """The detection whose box centre is nearest the centre of a ``side`` x ``side`` patch."""
    middle = np.full(2, side / 2.0 - 0.5)
    return min(found, key=lambda f: float(np.linalg.norm(np.asarray(box_centre(f.box)) - middle)))


def to_frame(q: np.ndarray, reg: Region, side: int = INPUT_SIZE) -> np.ndarray:
    """Pixel positions (..., 2) on a ``side`` x ``side`` patch of ``reg`` -> the frame's."""
    x0, y0, sq = reg.square
    px, py = reg.pivot
    c, s = reg.turn
    k = sq / side
    # patch pixel q (centre at q, the detector's convention) sat at x0 + (q + 0.5) k on the square's
    # grid before crop_resize turned that grid clockwise by the eye line about (px, py)
    q = np.asarray(q, np.float64)
    dx, dy = x0 + (q[..., 0] + 0.5) * k - px, y0 + (q[..., 1] + 0.5) * k - py
    return np.stack([px + c * dx - s * dy - 0.5, py + s * dx + c * dy - 0.5], -1)


def from_patch(again: Detection, reg: Region, side: int = INPUT_SIZE) -> Detection:
    """A detection on a ``side`` x ``side`` patch of ``reg``, in the frame: its box centre and keypoints
    through ``to_frame``, its box the square of its side (``Detection.size``) scaled to the frame."""
    cx, cy = to_frame(np.asarray(box_centre(again.box)), reg, side)
    half = again.size * (reg.square[2] / side) / 2.0
    return Detection((float(cx - half), float(cy - half), float(cx + half), float(cy + half)), again.score,
                     to_frame(again.keypoints, reg, side))


def second_look(image: np.ndarray, det: Detection) -> Detection:
    """``det`` read again on the square of ``REGION`` x its side around its centre, turned level by its
    eye line: box (the second box's side, square, around its centre mapped back), keypoints and score of
    the second detection nearest the patch centre. ``det`` itself when the second look finds no face."""
    reg = region(det)
    found = detect(patch(image, reg))
    if not found:
        return det
    return from_patch(nearest(found), reg)


def locate(image: np.ndarray, min_score: float = MIN_SCORE) -> list[Detection]:
    """Every face in ``image`` (uint8 grey or RGB) as the crop spec's ``BOX_SOURCE`` frames it, best first
    detection score first."""
    rgb = as_rgb(image)
    return [second_look(rgb, d) for d in detect(rgb, min_score)]


def locator(box_source: str) -> Callable[..., list[Detection]]:
    """The function that draws ``box_source`` boxes (a crop spec's ``box_source``): ``locate`` for
    ``BOX_SOURCE``, the single detection for models whose spec was measured on it."""
    found = {DETECTOR_NAME: detect, BOX_SOURCE: locate}.get(box_source)
    if found is None:
        raise ValueError(f"the crop spec's boxes come from {box_source!r}, which this package does not ship; "
                         f"use a model whose input.crop.box_source is {BOX_SOURCE!r} or {DETECTOR_NAME!r}")
    return found
