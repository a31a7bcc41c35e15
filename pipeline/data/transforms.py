"""Image transforms whose effect on the head-pose label is known exactly.

Under the project's orthographic camera (pipeline/data/synthetic_faces.py) turning the image in its
own plane by ``t`` degrees clockwise is the same as turning the head about the camera's z axis: the
rotation matrix becomes ``R_z(-t) @ R`` (R_z(a) turns camera x, the image's right, towards camera y,
the image's top, so a clockwise turn on screen is R_z(-t)). Roll is applied first in the convention
``R = R_x(-pitch) @ R_y(-yaw) @ R_z(-roll)``, so the new label is *not* ``roll + t`` with yaw and pitch
unchanged unless the head faces the camera: ``rotate_pose`` reads yaw, pitch and roll back from the
composed matrix. A left-right mirror maps (yaw, pitch, roll) to (-yaw, pitch, -roll) exactly
(``pipeline.data.convention.POSE_MIRROR``).
"""

from __future__ import annotations

import numpy as np

from pipeline.data.convention import POSE_MIRROR, mirror_labels
from pipeline.data.face_render import rotation_matrices


def _rz(deg: float) -> np.ndarray:
    a = np.radians(deg)
    return np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])


def pose_from_matrices(rot: np.ndarray) -> np.ndarray:
    """Inverse of ``rotation_matrices``: (N, 3, 3) -> (N, 3) degrees (yaw, pitch, roll), yaw in [-90, 90].

    With a = -pitch, b = -yaw, c = -roll, R = R_x(a) R_y(b) R_z(c) has R[0, 2] = sin b,
    (R[1, 2], R[2, 2]) = cos b (-sin a, cos a) and (R[0, 1], R[0, 0]) = cos b (-sin c, cos c).
    """
    r = np.asarray(rot, np.float64).reshape(-1, 3, 3)
    b = np.arcsin(np.clip(r[:, 0, 2], -1.0, 1.0))
    a = np.arctan2(-r[:, 1, 2], r[:, 2, 2])
    c = np.arctan2(-r[:, 0, 1], r[:, 0, 0])
    return -np.degrees(np.stack([b, a, c], 1))


def rotate_pose(poses_deg: np.ndarray, t_deg: float) -> np.ndarray:
    """Exact (yaw, pitch, roll) of the head after the image is turned ``t_deg`` clockwise; (N, 3) or (3,)."""
    p = np.asarray(poses_deg, np.float64)
    out = pose_from_matrices(_rz(-t_deg) @ rotation_matrices(p.reshape(-1, 3)))
    return out.reshape(p.shape)


def frame_pose(pose_deg: np.ndarray, angle: float) -> np.ndarray:
    """A model's (yaw, pitch, roll) on a crop turned ``angle`` degrees counter-clockwise out of its frame
    (``pipeline.faces.crop.crop_angle``) -> the pose in the frame: the frame is the crop turned
    clockwise by ``angle``. Angle 0 returns the reading unchanged (no round trip through a matrix)."""
    return np.asarray(pose_deg, np.float64) if angle == 0.0 else rotate_pose(pose_deg, angle)


def mirror_pose(poses_deg: np.ndarray) -> np.ndarray:
    """Exact label of the left-right mirrored image."""
    return mirror_labels(poses_deg, POSE_MIRROR)


def rotate_points(points: np.ndarray, t_deg: float, centre: tuple[float, float]) -> np.ndarray:
    """(..., 2) image points (x right, y down) turned ``t_deg`` clockwise on screen about ``centre``."""
    a = np.radians(t_deg)
    c, s = np.cos(a), np.sin(a)
    d = np.asarray(points, np.float64) - np.asarray(centre, np.float64)
    # clockwise on screen with y pointing down is the usual counter-clockwise formula in (x, y)
    return np.stack([c * d[..., 0] - s * d[..., 1], s * d[..., 0] + c * d[..., 1]], -1) + np.asarray(centre)


def rotate_image(image: np.ndarray, t_deg: float, centre: tuple[float, float] | None = None,
                 fill: str = "edge") -> np.ndarray:
    """uint8 (H, W, 3) image turned ``t_deg`` clockwise about ``centre`` (pixel coordinates, pixel
    centres at +0.5; default the image centre), same size, bilinear. Outside the source: the nearest
    edge pixel (``fill="edge"``) or black (``"zero"``)."""
    img = np.asarray(image)
    h, w = img.shape[:2]
    cx, cy = centre if centre is not None else (w / 2.0, h / 2.0)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64) + 0.5
    # the source of each output pixel: the output point turned back (counter-clockwise) by t
    src = rotate_points(np.stack([xs, ys], -1), -t_deg, (cx, cy)) - 0.5
    pad = img if fill == "edge" else np.pad(img, ((1, 1), (1, 1), (0, 0)))
    if fill == "zero":
        src = src + 1.0
    ph, pw = pad.shape[:2]
    x0, y0 = np.floor(src[..., 0]), np.floor(src[..., 1])
    ax, ay = (src[..., 0] - x0)[..., None], (src[..., 1] - y0)[..., None]
    xa, xb = np.clip(x0.astype(int), 0, pw - 1), np.clip(x0.astype(int) + 1, 0, pw - 1)
    ya, yb = np.clip(y0.astype(int), 0, ph - 1), np.clip(y0.astype(int) + 1, 0, ph - 1)
    # gather the four neighbours as uint8, then widen: the same float64 values, an eighth of the memory moved
    def at(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        return pad[yy, xx].astype(np.float64)

    v = (1 - ay) * ((1 - ax) * at(ya, xa) + ax * at(ya, xb)) + ay * ((1 - ax) * at(yb, xa) + ax * at(yb, xb))
    return np.clip(np.rint(v), 0, 255).astype(np.uint8)


def mirror_image(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(image)[:, ::-1])
