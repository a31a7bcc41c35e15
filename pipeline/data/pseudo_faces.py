"""Real faces for the student without pose labels: the teacher's readings, made exactly consistent.

The renders have exact poses but cartoon skin; real photos have real skin but no pose. What an image
transform does to a pose is exact, though (:mod:`pipeline.data.transforms`), and that is what this set
uses. Each of scikit-image's 100 LFW faces (different people, grey, 25 px; ``photos.lfw_faces``) is
upscaled to each of ``SIDES`` pixels, edge-padded to a frame and put through the real-photo check's
protocol (:func:`pipeline.data.turns.crops_for`): found by the crop spec's detector, turned by each angle
of a +-40 degree sweep and found again, mirrored and found again, each crop cut by the crop spec. The
teacher reads every crop; each reading is brought back into the upright photo's frame (the crop's turn,
then the sweep's turn or the mirror undone) and the readings are averaged: one pose per face, the
teacher's consensus. Each crop's target is that pose carried exactly into the crop (the sweep's turn or
the mirror, then the crop's own turn).

So a student trained on these crops is taught to read a real face as the teacher reads it on average,
and to follow a turning or mirrored real face exactly, on skin the renders do not have. What it is not
taught is any pose a person really had: the targets are the teacher's (itself trained on renders), so
this can make a student more consistent on real faces, not more right. The real-photo check's photos
are other people (matplotlib's and scikit-image's portraits), so the check scores how this carries to
faces the student never saw.

Why LFW at 25 px: it is the only set of many different real faces that ships inside a package this
project installs (nothing is downloaded); upscaled, the faces are about as large in the model's 64-px
crop as a detected face is, if blurrier.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image

from pipeline.data.transforms import mirror_pose, rotate_pose
from pipeline.data.turns import SWEEP, Found, crops_for, found_crops
from pipeline.faces import photos
from pipeline.faces.crop import CropSpec

log = logging.getLogger(__name__)

# Face sides in the frame, in pixels: two sizes so a student meets the upscaling blur at two strengths
# (the shipped photos' faces are 100-200 px across).
SIDES = (100, 140)

Predict = Callable[[np.ndarray], np.ndarray]  # uint8 crops (N, size, size, 3) -> (N, 3) degrees


def lfw_frames(sides: Sequence[int] = SIDES) -> list[np.ndarray]:
    """Each LFW face upscaled (bicubic) to each side and edge-padded by half its side: uint8 RGB frames,
    face by face, side by side."""
    frames = []
    for face in photos.lfw_faces():
        for side in sides:
            big = np.asarray(Image.fromarray(face).resize((side, side), Image.BICUBIC))
            pad = side // 2
            frames.append(np.pad(np.repeat(big[..., None], 3, 2), ((pad, pad), (pad, pad), (0, 0)), mode="edge"))
    return frames


def consistent_targets(readings: np.ndarray, found: Sequence[Found]) -> np.ndarray:
    """(N, 3) readings of one face's crops -> (N, 3) targets: the mean of the readings in the upright
    photo's frame, carried exactly back into each crop. Exactly consistent by construction: the targets
    of a turned crop and of the mirrored crop are the turn and the mirror of the upright one."""
    upright = []
    for (kind, t, a), q in zip(found, np.asarray(readings, np.float64), strict=True):
        framed = rotate_pose(q, a) if a else q
        upright.append(mirror_pose(framed) if kind == "mirror" else rotate_pose(framed, -t) if t else framed)
    pose = np.mean(upright, 0)
    out = []
    for kind, t, a in found:
        framed = mirror_pose(pose) if kind == "mirror" else rotate_pose(pose, t) if t else pose
        out.append(rotate_pose(framed, -a) if a else framed)
    return np.stack(out)


def pseudo_labelled(teacher: Predict, spec: CropSpec, sides: Sequence[int] = SIDES
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 crops (N, size, size, 3), float32 targets (N, 3)) over every LFW face the detector finds."""
    xs, ys, faces = [], [], 0
    frames = lfw_frames(sides)
    for image in frames:
        c = crops_for(image, spec, SWEEP)
        if "error" in c:
            continue
        crops, found = found_crops(c)
        faces += 1
        stack = np.stack(crops)
        xs.append(stack)
        ys.append(consistent_targets(teacher(stack), found))
    if not xs:
        raise RuntimeError("the detector found no face in any LFW frame; the crop spec's box source is broken")
    x, y = np.concatenate(xs), np.concatenate(ys).astype(np.float32)
    log.info("real-face pseudo-labels: %d crops of %d of %d LFW frames (faces %s px); teacher consensus "
             "spread yaw / pitch / roll %s deg", len(x), faces, len(frames), "/".join(map(str, sides)),
             " / ".join(f"{v:.1f}" for v in y.std(0)))
    return x, y
