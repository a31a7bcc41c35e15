"""The pipeline's one label convention, and each dataset's mapping to it.

Head pose: outputs ``(yaw, pitch, roll)`` in degrees, in this order, with the signs of
``pipeline.data.synthetic_faces`` (the convention Hopenet's ``draw_axis`` draws for 300W-LP /
AFLW2000): yaw > 0 turns the face towards the image's left, pitch > 0 looks up, roll > 0 turns the
head clockwise in the image. A horizontal flip maps (yaw, pitch, roll) to (-yaw, pitch, -roll).

Gaze: outputs ``(pitch, yaw)`` in degrees of the gaze direction in the normalized camera frame,
pitch = asin(-y), yaw = atan2(-x, -z) for a unit gaze vector (x, y, z) (MPIIGaze's normalized data,
camera x right, y down, z forward). pitch > 0 looks up, yaw > 0 looks towards the image's left; a
horizontal flip maps (pitch, yaw) to (pitch, -yaw).

Each dataset's mapping:

=========  ================================================  ============================
dataset    stored as                                          to the convention
=========  ================================================  ============================
300W-LP,   ``.mat`` ``Pose_Para[:3]`` = pitch, yaw, roll       (yaw, pitch, roll) = degrees
AFLW2000   (radians), then translation and scale              of (P[1], P[0], P[2])
BIWI       ``.npz`` ``pose`` = yaw, pitch, roll (degrees)       unchanged
MPIIGaze   ``data.right/left.gaze`` = unit 3D vector           (asin(-y), atan2(-x, -z)) in
                                                               degrees; left eye mirrored:
                                                               image flipped, yaw negated
CSV        one column per label, named in the header          as written (units from config)
=========  ================================================  ============================
"""

from __future__ import annotations

import numpy as np

POSE_NAMES = ("yaw", "pitch", "roll")
POSE_MIRROR = (-1.0, 1.0, -1.0)
GAZE_NAMES = ("pitch", "yaw")
GAZE_MIRROR = (1.0, -1.0)
DEGREES = "degrees"


def pose_from_pose_para(pose_para: np.ndarray) -> np.ndarray:
    """300W-LP / AFLW2000 ``Pose_Para`` (..., >=3) radians (pitch, yaw, roll) -> (..., 3) degrees (yaw, pitch, roll)."""
    p = np.degrees(np.asarray(pose_para, np.float64)[..., :3])
    return np.stack([p[..., 1], p[..., 0], p[..., 2]], -1).astype(np.float32)


def gaze_from_vector(gaze: np.ndarray) -> np.ndarray:
    """MPIIGaze unit gaze vectors (N, 3) -> (N, 2) degrees (pitch, yaw) = (asin(-y), atan2(-x, -z))."""
    g = np.asarray(gaze, np.float64).reshape(-1, 3)
    g = g / np.linalg.norm(g, axis=1, keepdims=True)
    pitch = np.arcsin(np.clip(-g[:, 1], -1.0, 1.0))
    yaw = np.arctan2(-g[:, 0], -g[:, 2])
    return np.degrees(np.stack([pitch, yaw], 1)).astype(np.float32)


def mirror_labels(y: np.ndarray, signs: tuple[float, ...]) -> np.ndarray:
    """Labels of horizontally flipped inputs: each output times its mirror sign."""
    return (np.asarray(y, np.float32) * np.asarray(signs, np.float32)).astype(np.float32)
