"""The one crop spec: from a face detector's box to the model's input tensor.

A ``CropSpec`` names everything between a camera frame and the model: which detector drew the box
(``box_source``: a scale measured on one detector's boxes does not carry over to another's, whose
boxes frame a face differently), the square around the box (side = ``scale`` x the box's longer side,
centre moved down by ``shift_y`` x side), whether the square turns with the face (``rotate``:
``"eye_line"`` turns it by the angle of the detector's eye keypoints, as MediaPipe's face-landmark
graph turns its region of interest, so the model always sees the eyes level and the roll it reads is
what is left; ``crop_angle`` says by how much, and ``pipeline.data.transforms.rotate_pose`` turns the
model's reading back into the frame), what fills the square outside the frame (``padding``), the
output ``size``, ``layout``, ``channels`` order and the normalisation ``(pixel / 255 * (hi - lo) + lo
- mean) / std``. ``to_dict`` is what export writes as ``input.crop`` in model_meta.json; ``from_dict``
reads it back and rejects unknown keys and bad values with the fix in the message.

The geometry (``crop_square``) and the bilinear resample with edge padding (``crop_resize``) are the
formulas of the Android demo's ``FaceCrop.kt``, in the same float64 order, so a crop made here and
one made on the phone agree byte for byte (exporters/golden.py checks it against the Kotlin core).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields

import numpy as np

PADDINGS = ("edge", "zero")
ROTATIONS = ("none", "eye_line")
LAYOUTS = ("NCHW", "NHWC")
CHANNEL_ORDERS = ("RGB", "BGR")
# The model input side of the default face model; every data source passes its own image_size
DEFAULT_SIZE = 64


@dataclass(frozen=True)
class CropSpec:
    """From detector box to model input. Defaults: the framing of the synthetic training renders as
    BlazeFace short-range boxes after their second look see them (``pipeline.faces.locate``; ``python -m
    pipeline.data.framing``: medians over 200 near-frontal renders, scale 1.86, shift_y -0.021, IQR
    1.80-1.93 and -0.042-0.007; a single detection's boxes would want 2.01 and -0.026), the app's edge
    padding, and the exported models' input contract (RGB in [0, 1], mean 0, std 1, NCHW)."""

    box_source: str = "blazeface_short_range_second_look"  # pipeline.faces.locate.BOX_SOURCE
    scale: float = 1.86
    shift_y: float = -0.021
    padding: str = "edge"
    rotate: str = "none"
    size: int = DEFAULT_SIZE  # the model's input side; users set it from the model
    layout: str = "NCHW"
    channels: str = "RGB"
    range: tuple[float, float] = (0.0, 1.0)
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def __post_init__(self) -> None:
        problems = []
        if not self.scale > 0:
            problems.append(f"scale must be > 0, got {self.scale}")
        if not -1.0 < self.shift_y < 1.0:
            problems.append(f"shift_y must be in (-1, 1) (a fraction of the crop side), got {self.shift_y}")
        if self.rotate not in ROTATIONS:
            problems.append(f"rotate {self.rotate!r} is not one of {ROTATIONS}")
        if self.padding not in PADDINGS:
            problems.append(f"padding {self.padding!r} is not one of {PADDINGS}")
        if not (isinstance(self.size, int) and 8 <= self.size <= 1024):
            problems.append(f"size must be an integer in [8, 1024], got {self.size!r}")
        if self.layout not in LAYOUTS:
            problems.append(f"layout {self.layout!r} is not one of {LAYOUTS}")
        if self.channels not in CHANNEL_ORDERS:
            problems.append(f"channels {self.channels!r} is not one of {CHANNEL_ORDERS}")
        if len(self.range) != 2 or not self.range[1] > self.range[0]:
            problems.append(f"range must be [lo, hi] with hi > lo, got {list(self.range)}")
        if len(self.mean) != 3 or len(self.std) != 3 or any(s == 0 for s in self.std):
            problems.append("mean and std need 3 entries each and std no zero")
        if problems:
            raise ValueError("bad crop spec: " + "; ".join(problems))

    def framing(self) -> dict:
        """The framing half, what export writes as ``input.crop`` in model_meta.json (the tensor half is
        the rest of ``input``: shape, layout, color, range, mean, std)."""
        out = {"box_source": self.box_source, "scale": float(self.scale), "shift_y": float(self.shift_y),
               "padding": self.padding}
        if self.rotate != "none":  # absent means "none": models exported before the key existed read the same
            out["rotate"] = self.rotate
        return out

    @classmethod
    def from_meta(cls, meta: dict) -> CropSpec:
        """The whole spec of an exported artifact from its model_meta.json: ``input.crop`` for the
        framing, the rest of ``input`` for the tensor (side, layout, channel order, range, mean, std)."""
        inp = meta.get("input") or {}
        crop = inp.get("crop")
        if not crop:
            raise ValueError("model_meta.json has no input.crop: the model was not trained on detector-framed "
                             "face crops; re-export a face model with this version of the pipeline")
        return cls.from_dict({**crop, **tensor_spec(meta)})

    def to_dict(self) -> dict:
        d = asdict(self)
        for key in ("range", "mean", "std"):
            d[key] = [float(v) for v in d[key]]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> CropSpec:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"crop spec has unknown keys {unknown}: use only {sorted(known)}")
        d = dict(d)
        for key in ("range", "mean", "std"):
            if key in d:
                d[key] = tuple(float(v) for v in d[key])
        return cls(**d)


def tensor_spec(meta: dict) -> dict:
    """The tensor half of a crop spec (size, layout, channels, range, mean, std) from model_meta.json."""
    inp = meta.get("input") or {}
    shape, layout = list(inp.get("shape") or []), inp.get("layout")
    if len(shape) != 4 or layout not in LAYOUTS:
        raise ValueError(f"model_meta.json input is {layout} {shape}, not an image model")
    h, w = (shape[1], shape[2]) if layout == "NHWC" else (shape[2], shape[3])
    if h != w:
        raise ValueError(f"model_meta.json input is {h}x{w}; the crop spec makes square crops")
    return {"size": int(h), "layout": layout, "channels": inp.get("color") or "RGB",
            "range": tuple(inp.get("range") or (0.0, 1.0)), "mean": tuple(inp["mean"]), "std": tuple(inp["std"])}


def crop_square(box: Sequence[float], scale: float, shift_y: float) -> tuple[float, float, float]:
    """(left, top, side) of the square crop around a (left, top, right, bottom) face box."""
    left, top, right, bottom = (float(v) for v in box)
    side = float(scale) * max(right - left, bottom - top)
    cx = (left + right) / 2.0
    cy = (top + bottom) / 2.0 + float(shift_y) * side
    return cx - side / 2.0, cy - side / 2.0, side


def eye_line(keypoints: np.ndarray) -> tuple[float, float]:
    """(cos, sin) of the clockwise on-screen angle (y down) of the line from the subject's right eye
    (image left at an upright pose) to their left eye: detector keypoints 0 and 1. Made of the keypoints
    with one correctly rounded square root and no trigonometry, so the Kotlin core turns its crop by
    the same bits."""
    kp = np.asarray(keypoints, np.float64)
    dx, dy = float(kp[1, 0] - kp[0, 0]), float(kp[1, 1] - kp[0, 1])
    length = float(np.sqrt(dx * dx + dy * dy))
    if not length > 0.0:
        raise ValueError("the detector's two eye keypoints coincide: the eye line has no direction")
    return dx / length, dy / length


def crop_turn(spec: CropSpec, keypoints: np.ndarray | None) -> tuple[float, float] | None:
    """(cos, sin) of how far the crop turns clockwise on screen, or None: unless ``spec.rotate ==
    "eye_line"`` it does not."""
    if spec.rotate == "none":
        return None
    if keypoints is None:
        raise ValueError("this crop spec turns the crop with the eye line (rotate: eye_line): pass the "
                         "detector's keypoints with its box")
    return eye_line(keypoints)


def crop_angle(spec: CropSpec, keypoints: np.ndarray | None) -> float:
    """How far the crop turns, in degrees clockwise on screen (0 unless ``spec.rotate == "eye_line"``).
    A head with roll r facing the camera gives r (pipeline/data/convention.py: roll > 0 turns the
    head clockwise)."""
    turn = crop_turn(spec, keypoints)
    return 0.0 if turn is None else float(np.degrees(np.arctan2(turn[1], turn[0])))


def crop_resize(rgb: np.ndarray, square: tuple[float, float, float], out_w: int, out_h: int,
                padding: str = "edge", turn: tuple[float, float] | None = None,
                pivot: tuple[float, float] | None = None) -> np.ndarray:
    """Bilinear resample of a square region to (out_h, out_w, C) uint8, sampling at pixel centres.

    ``turn`` = (cos, sin) of an angle clockwise on screen turns the sampling grid by it about ``pivot``
    (default the square's centre): the crop shows the frame turned counter-clockwise by that angle.

    ``padding="edge"`` repeats the frame's edge pixels outside it (the app's rule); ``"zero"`` reads
    black there (the 300W-LP crops' rule), done by one black pixel around the frame and clamping into
    it, which is exactly bilinear interpolation with zeros outside. Every operation is spelled out in
    float64 in the order the Kotlin core uses, so edge-padded crops match it byte for byte.
    """
    if padding not in PADDINGS:
        raise ValueError(f"padding {padding!r} is not one of {PADDINGS}")
    if padding == "zero":
        rgb = np.pad(rgb, ((1, 1), (1, 1), (0, 0)))
        square = (square[0] + 1.0, square[1] + 1.0, square[2])
    h, w = rgb.shape[:2]
    x0, y0, side = square
    sx = x0 + (np.arange(out_w, dtype=np.float64) + 0.5) * (side / out_w) - 0.5
    sy = y0 + (np.arange(out_h, dtype=np.float64) + 0.5) * (side / out_h) - 0.5
    p = np.asarray(rgb)  # uint8: each tap is gathered, then widened to float64 (exact), as the Kotlin core reads it
    if turn is not None:
        pad = 1.0 if padding == "zero" else 0.0  # the black border moved every coordinate by one pixel
        piv = (x0 + side / 2.0, y0 + side / 2.0) if pivot is None else (pivot[0] + pad, pivot[1] + pad)
        return _sample_turned(p, sx, sy, turn, piv)
    fx0, fy0 = np.floor(sx), np.floor(sy)
    ax, ay = sx - fx0, sy - fy0
    xa = np.clip(fx0.astype(np.int64), 0, w - 1)
    xb = np.clip(fx0.astype(np.int64) + 1, 0, w - 1)
    ya = np.clip(fy0.astype(np.int64), 0, h - 1)
    yb = np.clip(fy0.astype(np.int64) + 1, 0, h - 1)
    ax_, ay_ = ax[None, :, None], ay[:, None, None]
    f64 = np.float64
    top = (1.0 - ax_) * p[ya][:, xa].astype(f64) + ax_ * p[ya][:, xb].astype(f64)
    bottom = (1.0 - ax_) * p[yb][:, xa].astype(f64) + ax_ * p[yb][:, xb].astype(f64)
    v = (1.0 - ay_) * top + ay_ * bottom
    return np.clip(np.floor(v + 0.5), 0, 255).astype(np.uint8)


def _sample_turned(p: np.ndarray, sx: np.ndarray, sy: np.ndarray, turn: tuple[float, float],
                   pivot: tuple[float, float]) -> np.ndarray:
    """``crop_resize``'s grid (pixel-centre sample positions ``sx`` x ``sy``) turned clockwise by the
    angle whose (cos, sin) is ``turn`` about ``pivot``, sampled bilinearly from pixels ``p`` (each tap widened to float64)
    whose edge pixels repeat outside (the Kotlin core: FaceCrop.resize, same float64 order)."""
    h, w = p.shape[:2]
    px, py = pivot
    c, s = turn
    dx, dy = sx[None, :] + 0.5 - px, sy[:, None] + 0.5 - py  # offsets of pixel centres from the pivot
    gx = px + (c * dx - s * dy) - 0.5
    gy = py + (s * dx + c * dy) - 0.5
    fx0, fy0 = np.floor(gx), np.floor(gy)
    ax, ay = (gx - fx0)[..., None], (gy - fy0)[..., None]
    xa = np.clip(fx0.astype(np.int64), 0, w - 1)
    xb = np.clip(fx0.astype(np.int64) + 1, 0, w - 1)
    ya = np.clip(fy0.astype(np.int64), 0, h - 1)
    yb = np.clip(fy0.astype(np.int64) + 1, 0, h - 1)
    f64 = np.float64
    top = (1.0 - ax) * p[ya, xa].astype(f64) + ax * p[ya, xb].astype(f64)
    bottom = (1.0 - ax) * p[yb, xa].astype(f64) + ax * p[yb, xb].astype(f64)
    v = (1.0 - ay) * top + ay * bottom
    return np.clip(np.floor(v + 0.5), 0, 255).astype(np.uint8)


def box_centre(box: Sequence[float]) -> tuple[float, float]:
    return (float(box[0]) + float(box[2])) / 2.0, (float(box[1]) + float(box[3])) / 2.0


def crop_pixels(image: np.ndarray, box: Sequence[float], spec: CropSpec,
                keypoints: np.ndarray | None = None) -> np.ndarray:
    """The (size, size, 3) uint8 RGB crop of an RGB frame around a face box; a spec that turns with the
    eye line needs the detector's ``keypoints`` too, and turns the square about the box's centre (so
    ``shift_y`` moves it towards the face's chin, not the frame's bottom)."""
    return crop_resize(image, crop_square(box, spec.scale, spec.shift_y), spec.size, spec.size, spec.padding,
                       turn=crop_turn(spec, keypoints), pivot=box_centre(box))


def normalize(pixels: np.ndarray, spec: CropSpec) -> np.ndarray:
    """uint8 (..., H, W, 3) RGB crops -> float32 model input in the spec's channel order, range,
    normalisation and layout; a single crop gains a batch axis of 1."""
    x = np.asarray(pixels)
    if x.ndim == 3:
        x = x[None]
    if spec.channels == "BGR":
        x = x[..., ::-1]
    lo, hi = spec.range
    x = lo + x.astype(np.float64) / 255.0 * (hi - lo)
    x = (x - np.asarray(spec.mean, np.float64)) / np.asarray(spec.std, np.float64)
    if spec.layout == "NCHW":
        x = x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x, np.float32)


def crop(image: np.ndarray, box: Sequence[float], spec: CropSpec, keypoints: np.ndarray | None = None
         ) -> np.ndarray:
    """Frame + detector box (and keypoints) -> the model's float32 input (1, C, H, W) or (1, H, W, C)."""
    return normalize(crop_pixels(image, box, spec, keypoints), spec)
