"""Which crop spec makes a detector's box frame a real face the way the synthetic renders are framed.

The training renders fill their crop: the frame *is* the crop. Rendering faces with framing jitter
off, pasting each into a larger canvas (edge-padded) and running the detector on it, the spec that
maps the detector's box back onto the render's frame is ``scale = frame side / box side`` and
``shift_y = (frame centre y - box centre y) / frame side``; the medians over many poses are the
spec's numbers. The same detector's keypoints are compared with the renders' exact eye and mouth
positions, and the box side is compared with the eye-to-mouth distance on renders and on the
shipped real photos: if the detector anchors its box on the same facial geometry in both, the
spec measured on renders frames real faces alike. Boxes and keypoints are the crop spec's box source:
the detector with its second, levelled look (``pipeline.faces.locate``); ``photos_turned`` compares it
with single detections on the shipped photos turned by up to 40 degrees.

    python -m pipeline.data.framing [--n 200] [--size 128]
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from pipeline.data.synthetic_faces import (
    SyntheticFacesConfig,
    draw_appearance,
    head_landmarks,
    project_points,
    render_with_appearance,
    sample_poses,
)
from pipeline.data.transforms import rotate_image
from pipeline.faces import photos
from pipeline.faces.crop import CropSpec, box_centre, crop_angle
from pipeline.faces.detector import box_geometry, detect
from pipeline.faces.locate import locate

# Pose ranges of the two measured sets: faces a phone app meets most (near frontal) and the training ranges.
LEVEL = CropSpec(rotate="eye_line")  # crop_angle under it: the eye line's angle, the crop spec's own formula
POSE_SETS = {"near_frontal": dict(yaw_range=30.0, pitch_range=20.0, roll_range=20.0), "training_ranges": {}}


def _eye_mouth(kps: np.ndarray) -> float:
    """Distance from the eyes' midpoint to the mouth: (right eye, left eye, nose, mouth, ...) rows."""
    return float(np.linalg.norm((kps[0] + kps[1]) / 2.0 - kps[3]))


def measure_renders(n: int = 200, size: int = 128, seed: int = 7, pose_set: str = "near_frontal") -> dict:
    """Median spec (scale, shift_y) mapping the detector's box onto the render frame, and how well the
    detector's keypoints hit the renders' exact landmarks (as a fraction of the box side)."""
    cfg = SyntheticFacesConfig(image_size=size, scale_jitter=0.0, translate_jitter=0.0, occlusion_prob=0.0,
                               **POSE_SETS[pose_set])
    poses = sample_poses(n, seed, cfg)
    app = draw_appearance(n, seed, cfg)
    images = render_with_appearance(poses, app, cfg)
    lm = head_landmarks(app)
    # (n, 4, 2) pixels in the render: subject's right eye, left eye, nose tip, mouth (the detector's order)
    truth = project_points(np.stack([lm["eye_right"], lm["eye_left"], lm["nose_tip"], lm["mouth"]], 1),
                           poses, app, size)
    pad = size // 2
    scale, shift, kp_err, ratio, ratio_det = [], [], [], [], []
    for i, im in enumerate(images):
        found = locate(np.pad(im, ((pad, pad), (pad, pad), (0, 0)), mode="edge"))
        if not found:
            continue
        det = found[0]
        left, top, right, bottom = det.box
        side = det.size
        scale.append(size / side)
        # detector and project_points both put pixel i's centre at i: the render's centre is at size / 2 - 0.5
        shift.append((pad + size / 2.0 - 0.5 - (top + bottom) / 2.0) / size)
        kp_err.append(float(np.abs(det.keypoints[:4] - pad - truth[i]).max() / side))
        ratio.append(side / _eye_mouth(truth[i]))
        ratio_det.append(side / _eye_mouth(det.keypoints))
    q = lambda v: [round(float(x), 3) for x in np.percentile(v, [25, 50, 75])]  # noqa: E731
    return {"pose_set": pose_set, "n": n, "detected": len(scale), "scale_q25_50_75": q(scale),
            "shift_y_q25_50_75": q(shift), "keypoint_error_q25_50_75": q(kp_err),
            "box_over_eye_mouth_q25_50_75": q(ratio), "box_over_detected_eye_mouth_q25_50_75": q(ratio_det)}


def measure_photos() -> dict:
    """Box side over the detector's own eye-to-mouth distance on each shipped real photo."""
    out = {}
    for name in photos.NAMES:
        found = locate(photos.load(name))
        out[name] = round(found[0].size / _eye_mouth(found[0].keypoints), 3) if found else None
    return out


def measure_box_geometry() -> dict:
    """Where the detector puts its box relative to its eye and mouth keypoints on real faces (scikit-image's
    LFW faces, upscaled 4x and padded): the numbers behind ``detector.box_from_landmarks``."""
    from PIL import Image

    rows = []
    for face in photos.lfw_faces():
        big = np.asarray(Image.fromarray(face).resize((100, 100), Image.BICUBIC))
        found = locate(np.pad(np.repeat(big[..., None], 3, 2), ((50, 50), (50, 50), (0, 0)), mode="edge"))
        if found:
            rows.append(box_geometry(found[0]))
    q = np.percentile(np.array(rows), [25, 50, 75], axis=0).round(3)
    return {"faces": len(rows), "side_over_eye_mouth_q25_50_75": q[:, 0].tolist(),
            "centre_along_eye_mouth_q25_50_75": q[:, 1].tolist()}


def measure_turns(angles: tuple[float, ...] = tuple(range(-40, 41, 10))) -> dict:
    """How one detection and the second look follow each shipped photo turned by ``angles`` about its
    face: the largest error of the eye line's angle against the turn, and the box side's range over the
    turns, relative to the upright photo's."""
    out = {}
    for name in photos.NAMES:
        image = photos.load(name)
        centre = box_centre(detect(image)[0].box)
        row = {}
        for kind, find in (("one_detection", detect), ("second_look", locate)):
            first = find(image)[0]
            errs, sides = [], []
            for t in angles:
                found = find(rotate_image(image, float(t), centre))
                det = min(found, key=lambda d: float(np.hypot(*np.subtract(box_centre(d.box), centre))))
                errs.append(abs(crop_angle(LEVEL, det.keypoints) - crop_angle(LEVEL, first.keypoints) - t))
                sides.append(det.size / first.size)
            row[kind] = {"eye_line_error_max": round(max(errs), 1), "box_side_range": [round(min(sides), 3),
                                                                                       round(max(sides), 3)]}
        out[name] = row
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--size", type=int, default=128)
    args = ap.parse_args(argv)
    result = {"renders": [measure_renders(args.n, args.size, pose_set=s) for s in POSE_SETS],
              "photos_box_over_eye_mouth": measure_photos(), "lfw_box_geometry": measure_box_geometry(),
              "photos_turned": measure_turns()}
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
