"""Pose axes drawn on face crops, and contact sheets of a dataset's images with their labels.

The axes follow the convention of ``pipeline.data.synthetic_faces``: head x (towards the subject's
left ear) in red, head y (towards the top of the head) in green, head z (out through the nose) in
blue, each the orthographic projection of a unit vector. Noisy labels are drawn thinner and dashed
over the true axes, and samples whose label is an injected outlier get a red border.

    python -m pipeline.data.synthetic_faces --n 48 --out /tmp/faces.png   # writes a contact sheet
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from pipeline.data.face_render import rotation_matrices
from pipeline.runs import atomic_save

log = logging.getLogger(__name__)

AXIS_COLOURS = ((230, 30, 30), (30, 200, 30), (40, 80, 255))
# Axis length as a fraction of the face crop's side (or of a lone crop's smaller side): the length the
# Android goldens (exporters/golden.py) store, the app draws and ``predict --save`` draws.
AXES_LENGTH_FRACTION = 0.4


def projected_axes(pose_deg: np.ndarray) -> np.ndarray:
    """(3, 2) image-plane directions (x right, y down) of the head's unit x, y, z axes."""
    r = rotation_matrices(np.asarray(pose_deg, np.float64).reshape(1, 3))[0]
    return np.stack([r[0, :], -r[1, :]], 1)  # column k of R is head axis k in the camera frame


def _dashed(draw: ImageDraw.ImageDraw, a: tuple[float, float], b: tuple[float, float], fill, width: int,
            dash: float) -> None:
    """A dashed segment from a to b (PIL has no dash style)."""
    length = float(np.hypot(b[0] - a[0], b[1] - a[1]))
    steps = max(1, int(length / dash))
    for i in range(0, steps, 2):
        t0, t1 = i / steps, min(1.0, (i + 1) / steps)
        draw.line([(a[0] + (b[0] - a[0]) * t0, a[1] + (b[1] - a[1]) * t0),
                   (a[0] + (b[0] - a[0]) * t1, a[1] + (b[1] - a[1]) * t1)], fill=fill, width=width)


def draw_axes(draw: ImageDraw.ImageDraw, pose_deg, center: tuple[float, float], length: float, width: int,
              dashed: bool = False) -> None:
    """Draw the head axes of ``pose_deg`` from ``center`` onto a PIL drawing (several faces on one image)."""
    axes = projected_axes(pose_deg)
    # Draw the axis pointing most away from the viewer first so the nearest stays on top.
    depth = rotation_matrices(np.asarray(pose_deg, np.float64).reshape(1, 3))[0][2]
    for k in np.argsort(depth):
        end = (center[0] + length * axes[k, 0], center[1] + length * axes[k, 1])
        if dashed:
            _dashed(draw, center, end, AXIS_COLOURS[k], width, dash=max(2.0, length / 8))
        else:
            draw.line([center, end], fill=AXIS_COLOURS[k], width=width)


def draw_pose_axes(img_uint8_hwc: np.ndarray, pose_deg, center: tuple[float, float] | None = None,
                   length: float | None = None, width: int = 2, dashed: bool = False) -> np.ndarray:
    """Copy of the (H, W, 3) uint8 image with the head axes of ``pose_deg`` (yaw, pitch, roll) drawn.

    ``center`` defaults to the image centre, ``length`` (pixels) to ``AXES_LENGTH_FRACTION`` of the smaller side.
    """
    im = Image.fromarray(np.ascontiguousarray(img_uint8_hwc, np.uint8))
    h, w = img_uint8_hwc.shape[:2]
    c = center if center is not None else (w / 2.0, h / 2.0)
    draw_axes(ImageDraw.Draw(im), pose_deg, c, length or AXES_LENGTH_FRACTION * min(h, w), width, dashed)
    return np.asarray(im)


def contact_sheet(images: np.ndarray, poses_true: np.ndarray, path: str | Path,
                  labels_noisy: np.ndarray | None = None, outlier_mask: np.ndarray | None = None,
                  cols: int = 8, scale: int = 2) -> Path:
    """Write a PNG grid of the images (upscaled by ``scale``) with their pose axes; return its path.

    True axes are solid; ``labels_noisy`` (N, 3), if given, are drawn thin and dashed on top, and
    ``outlier_mask`` (N,) marks injected outliers with a red border. Each tile is captioned with the
    true (yaw, pitch, roll) in degrees.
    """
    images = np.asarray(images)
    n = len(images)
    if n == 0:
        raise ValueError("contact_sheet needs at least one image")
    h, w = images.shape[1] * scale, images.shape[2] * scale
    cap = 12
    pad = 4
    cols = max(1, min(cols, n))
    rows = (n + cols - 1) // cols
    sheet = Image.new("RGB", (cols * (w + pad) + pad, rows * (h + cap + pad) + pad), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    for i in range(n):
        x0 = pad + (i % cols) * (w + pad)
        y0 = pad + (i // cols) * (h + cap + pad)
        tile = Image.fromarray(np.ascontiguousarray(images[i], np.uint8)).resize((w, h), Image.BILINEAR)
        sheet.paste(tile, (x0, y0))
        center = (x0 + w / 2.0, y0 + h / 2.0)
        length = 0.38 * min(w, h)
        draw_axes(draw, poses_true[i], center, length, max(1, scale), dashed=False)
        if labels_noisy is not None:
            draw_axes(draw, labels_noisy[i], center, length * 0.9, 1, dashed=True)
        if outlier_mask is not None and bool(np.asarray(outlier_mask)[i]):
            draw.rectangle([x0 - 2, y0 - 2, x0 + w + 1, y0 + h + 1], outline=(255, 0, 0), width=2)
        y, p, r = (float(v) for v in poses_true[i])
        draw.text((x0, y0 + h + 1), f"{y:.0f} {p:.0f} {r:.0f}", fill=(220, 220, 220))
    path = atomic_save(Path(path), lambda tmp: sheet.save(tmp, format="PNG"))
    log.info("contact sheet of %d images -> %s", n, path)
    return path
