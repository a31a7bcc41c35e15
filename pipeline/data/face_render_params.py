"""Per-sample appearance of the synthetic faces: drawn from a counter-based hash, and mirrorable.

Every number that decides how sample ``i`` looks (head shape, colours, hair, light, background
clutter, occluder, blur, sensor noise) is a function of ``(seed, index, parameter number)`` only,
through a SplitMix64 hash evaluated for the whole batch at once. Rendering a range in chunks, in
threads or in another process therefore gives bit-identical images.

:meth:`Appearance.mirrored` returns the parameters of the left-right mirror image: every quantity
measured along the head's or the image's x axis changes sign and the sensor-noise field is read
mirrored, so that ``fliplr(render(yaw, pitch, roll, a)) == render(-yaw, pitch, -roll, a.mirrored())``
up to float rounding (see ``pipeline.data.synthetic_faces``).

Used by ``pipeline.data.synthetic_faces``; not meant to be run directly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from pipeline.data.face_textures import N_TEXTURES

log = logging.getLogger(__name__)

N_CLUTTER = 8  # clutter shape slots per image; ``clutter_shapes`` of the config caps how many are used
NOISE_TILES = 8  # tiles in the shared sensor-noise bank

SKIN = np.array([[0.98, 0.84, 0.74], [0.93, 0.74, 0.61], [0.84, 0.62, 0.47], [0.70, 0.50, 0.36],
                 [0.52, 0.35, 0.25], [0.33, 0.22, 0.16]])
HAIR = np.array([[0.06, 0.05, 0.05], [0.17, 0.11, 0.07], [0.33, 0.21, 0.12], [0.58, 0.44, 0.27],
                 [0.86, 0.74, 0.50], [0.52, 0.22, 0.09], [0.52, 0.52, 0.52], [0.88, 0.88, 0.86]])
HAIR_P = np.array([0.26, 0.24, 0.16, 0.10, 0.08, 0.05, 0.06, 0.05])
IRIS = np.array([[0.22, 0.13, 0.07], [0.10, 0.07, 0.05], [0.22, 0.38, 0.58], [0.26, 0.42, 0.28],
                 [0.42, 0.32, 0.18]])

# Keys whose value changes sign under a left-right mirror, and keys that toggle (v -> 1 - v).
ODD_KEYS = frozenset({"gaze_x", "hair_part", "light_x", "tx", "bg_gx", "stripe_dx", "clutter_cx",
                      "clutter_angle", "occ_cx", "occ_angle", "tex_sign"})
TOGGLE_KEYS = frozenset({"noise_flip"})

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _splitmix(z: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on a uint64 array (wrapping arithmetic)."""
    z = z + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


class _Stream:
    """Uniform numbers in [0, 1) keyed by (seed, sample index, running parameter number)."""

    def __init__(self, seed: int, indices: np.ndarray):
        with np.errstate(over="ignore"):
            s = _splitmix(np.array([seed & 0xFFFFFFFFFFFFFFFF], np.uint64))
            self._keys = _splitmix(s ^ indices.astype(np.uint64))[:, None]
        self._next = 0

    def __call__(self, k: int = 1) -> np.ndarray:
        """(N, k) uniforms; k == 1 returns (N,)."""
        ids = np.arange(self._next, self._next + k, dtype=np.uint64) * _GOLDEN
        self._next += k
        with np.errstate(over="ignore"):
            h = _splitmix(_splitmix(self._keys ^ ids[None, :]))
        u = (h >> np.uint64(11)).astype(np.float64) * (1.0 / 2.0**53)
        return u[:, 0] if k == 1 else u


@dataclass
class Appearance:
    """Per-sample appearance parameters: ``values[key]`` has leading dimension N (float64)."""

    values: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.values["scale"])

    def __getitem__(self, key: str) -> np.ndarray:
        return self.values[key]

    def select(self, rows: slice | np.ndarray) -> Appearance:
        """A sub-batch (e.g. one rendering chunk)."""
        return Appearance({k: v[rows] for k, v in self.values.items()})

    def mirrored(self) -> Appearance:
        """Parameters of the left-right mirrored scene (pair it with yaw -> -yaw, roll -> -roll)."""
        out = {}
        for k, v in self.values.items():
            out[k] = -v if k in ODD_KEYS else (1.0 - v) if k in TOGGLE_KEYS else v.copy()
        return Appearance(out)


def _lerp(u: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return lo + (hi - lo) * u


def _around(u: np.ndarray, mean: float, half: float, amount: float) -> np.ndarray:
    """mean +- half, the spread scaled by ``amount`` (the config's shape_variation)."""
    return mean + (2.0 * u - 1.0) * half * amount


def _palette(u: np.ndarray, colours: np.ndarray, probs: np.ndarray | None = None) -> np.ndarray:
    cdf = np.cumsum(probs if probs is not None else np.ones(len(colours))) / (
        probs.sum() if probs is not None else len(colours))
    return colours[np.minimum(np.searchsorted(cdf, u, side="right"), len(colours) - 1)]


def draw_appearance_params(n: int, seed: int, cfg, start_index: int = 0) -> Appearance:
    """Draw the appearance of samples ``start_index .. start_index + n - 1`` (``cfg``: SyntheticFacesConfig)."""
    r = _Stream(seed, np.arange(start_index, start_index + n, dtype=np.int64))
    sv = cfg.shape_variation
    v: dict[str, np.ndarray] = {}
    # Head geometry (head frame units: the cranium is about 1 high).
    v["head_w"] = _around(r(), 0.74, 0.06, sv)
    v["head_h"] = _around(r(), 0.90, 0.05, sv)
    v["head_d"] = _around(r(), 0.94, 0.05, sv)
    v["jaw_w"] = _around(r(), 0.58, 0.07, sv)
    v["jaw_h"] = _around(r(), 0.60, 0.06, sv)
    v["jaw_y"] = _around(r(), -0.30, 0.04, sv)
    v["jaw_z"] = _around(r(), 0.02, 0.05, sv)
    v["nose_w"] = _around(r(), 0.115, 0.025, sv)
    v["nose_h"] = _around(r(), 0.23, 0.05, sv)
    v["nose_len"] = _around(r(), 0.24, 0.06, sv)
    v["nose_y"] = _around(r(), -0.14, 0.05, sv)
    v["ear_scale"] = _around(r(), 1.0, 0.2, sv)
    v["neck_w"] = _around(r(), 0.36, 0.05, sv)
    v["torso_w"] = _around(r(), 1.45, 0.25, sv)
    v["torso_y"] = _around(r(), -2.0, 0.15, sv)
    v["body_follow"] = _lerp(r(), 0.0, 0.4)
    # Eyes, brows, mouth: positions on the front of the head, (x, y) in the head frame.
    v["eye_x"] = _around(r(), 0.30, 0.035, sv)
    v["eye_y"] = _around(r(), 0.10, 0.05, sv)
    v["eye_w"] = _around(r(), 0.125, 0.02, sv)
    v["eye_h"] = _around(r(), 0.062, 0.015, sv)
    v["iris_r"] = _around(r(), 0.058, 0.008, sv)
    v["gaze_x"] = _around(r(), 0.0, 0.035, 1.0)
    v["gaze_y"] = _around(r(), 0.0, 0.012, 1.0)
    v["brow_dy"] = _around(r(), 0.15, 0.03, sv)
    v["brow_len"] = _around(r(), 0.16, 0.025, sv)
    v["brow_thick"] = _around(r(), 0.036, 0.01, sv)
    v["brow_tilt"] = _around(r(), 0.0, 0.35, sv)
    v["brow_alpha"] = _lerp(r(), 0.55, 0.95)
    v["mouth_y"] = _around(r(), -0.52, 0.05, sv)
    v["mouth_w"] = _around(r(), 0.2, 0.04, sv)
    v["lip_h"] = _around(r(), 0.05, 0.015, sv)
    v["smile"] = _lerp(r(), -0.6, 1.6)
    v["mouth_open"] = np.where(r() < 0.2, _lerp(r(), 0.01, 0.035), 0.0)
    # Colours.
    tone = r() * (len(SKIN) - 1)
    lo = np.floor(tone).astype(int)
    hi = np.minimum(lo + 1, len(SKIN) - 1)
    skin = SKIN[lo] + (SKIN[hi] - SKIN[lo]) * (tone - lo)[:, None]
    v["skin"] = np.clip(skin * (1 + 0.06 * (r(3) - 0.5)), 0, 1)
    hair = _palette(r(), HAIR, HAIR_P)
    v["hair_rgb"] = np.clip(hair * _lerp(r(), 0.8, 1.15)[:, None], 0, 1)
    v["iris_rgb"] = _palette(r(), IRIS)
    grey = r()[:, None]
    v["cloth_rgb"] = grey + (r(3) - grey) * _lerp(r(), 0.2, 0.9)[:, None]
    v["lip_rgb"] = np.clip(v["skin"] * np.array([0.86, 0.55, 0.55]) * _lerp(r(), 0.8, 1.05)[:, None]
                           + np.array([0.06, 0.0, 0.0]), 0, 1)
    # Hair style, beard, glasses.
    v["hair_on"] = (r() < cfg.hair_prob).astype(np.float64)
    v["hairline_front"] = _lerp(r(), 0.32, 0.62)
    v["hairline_back"] = _lerp(r(), -0.55, -0.05)
    v["hair_volume"] = _lerp(r(), 0.03, 0.11)
    v["hair_part"] = _lerp(r(), -0.3, 0.3)
    v["long_hair"] = (r() < cfg.long_hair_prob).astype(np.float64) * v["hair_on"]
    v["long_hair_bottom"] = _lerp(r(), -0.9, -1.7)
    v["beard"] = (r() < cfg.beard_prob).astype(np.float64)
    v["beard_top"] = _lerp(r(), -0.45, -0.2)
    v["beard_alpha"] = _lerp(r(), 0.35, 0.9)
    v["glasses"] = (r() < cfg.glasses_prob).astype(np.float64)
    v["glasses_rgb"] = _palette(r(), np.array([[0.05, 0.05, 0.05], [0.35, 0.2, 0.1], [0.6, 0.6, 0.62],
                                               [0.5, 0.1, 0.1]]))
    # Light: a direction in the camera frame towards the viewer's side, intensity and tint.
    v["light_x"] = _lerp(r(), -0.9, 0.9) * cfg.light_variation
    v["light_y"] = _lerp(r(), -0.3, 0.9) * cfg.light_variation + 0.3 * (1 - cfg.light_variation)
    v["light_z"] = _lerp(r(), 0.5, 1.0)
    v["ambient"] = _lerp(r(), 0.3, 0.55)
    v["diffuse"] = _lerp(r(), 0.55, 0.95)
    v["specular"] = _lerp(r(), 0.0, 0.25)
    v["light_rgb"] = 1.0 + 0.1 * (r(3) - 0.5) * cfg.light_variation
    # Framing: head scale (fraction of the image half-height per head unit) and offset.
    v["scale"] = 0.80 * (1.0 + (2.0 * r() - 1.0) * cfg.scale_jitter)
    v["tx"] = (2.0 * r() - 1.0) * 2.0 * cfg.translate_jitter
    v["ty"] = 0.10 + (2.0 * r() - 1.0) * 2.0 * cfg.translate_jitter
    _background(r, cfg, v)
    _post(r, cfg, v)
    _realism(r, cfg, v)
    return Appearance(v)


def _muted(r: _Stream, k: int) -> np.ndarray:
    """(N, k) colour channels (k a multiple of 3): a random grey level plus a partly saturated hue."""
    n3 = k // 3
    grey = np.repeat(r(n3), 3, axis=1) if n3 > 1 else np.repeat(r()[:, None], 3, axis=1)
    sat = np.repeat(_lerp(r(n3), 0.15, 0.85), 3, axis=1) if n3 > 1 else _lerp(r(), 0.15, 0.85)[:, None]
    return np.clip(grey + (r(k) - grey) * sat, 0.0, 1.0)


def _background(r: _Stream, cfg, v: dict[str, np.ndarray]) -> None:
    """Two-colour gradient, a stripe texture and up to N_CLUTTER rotated ellipses / rectangles."""
    clutter = cfg.background == "clutter"
    plain = cfg.background == "plain"
    v["bg_a"] = _muted(r, 3)
    v["bg_b"] = v["bg_a"] if plain else _muted(r, 3)
    v["bg_gx"] = _lerp(r(), -0.8, 0.8)
    v["bg_gy"] = _lerp(r(), -0.8, 0.8)
    v["stripe_amp"] = _lerp(r(), 0.0, 0.12) * (r() < 0.5) * clutter
    v["stripe_freq"] = _lerp(r(), 6.0, 25.0)
    angle = r() * np.pi
    v["stripe_dx"], v["stripe_dy"] = np.cos(angle), np.sin(angle)
    v["stripe_phase"] = r() * 2 * np.pi
    k = N_CLUTTER
    v["clutter_on"] = ((np.arange(k)[None, :] < cfg.clutter_shapes) * (r(k) < 0.75) * clutter).astype(np.float64)
    v["clutter_cx"] = _lerp(r(k), -1.1, 1.1)
    v["clutter_cy"] = _lerp(r(k), -1.1, 1.1)
    v["clutter_rx"] = _lerp(r(k), 0.06, 0.5)
    v["clutter_ry"] = _lerp(r(k), 0.06, 0.5)
    v["clutter_angle"] = _lerp(r(k), -np.pi / 2, np.pi / 2)
    v["clutter_kind"] = (r(k) < 0.5).astype(np.float64)  # 1: rectangle, 0: ellipse
    v["clutter_rgb"] = _muted(r, 3 * k).reshape(-1, k, 3)


def _post(r: _Stream, cfg, v: dict[str, np.ndarray]) -> None:
    """Occluder, blur and sensor noise."""
    v["occ_on"] = (r() < cfg.occlusion_prob).astype(np.float64)
    v["occ_cx"] = _lerp(r(), -0.5, 0.5)
    v["occ_cy"] = _lerp(r(), -0.6, 0.5)
    v["occ_rx"] = _lerp(r(), 0.15, 0.45)
    v["occ_ry"] = _lerp(r(), 0.12, 0.35)
    v["occ_angle"] = _lerp(r(), -np.pi / 2, np.pi / 2)
    v["occ_kind"] = (r() < 0.5).astype(np.float64)
    skin_like = r() < 0.4
    v["occ_rgb"] = np.where(skin_like[:, None], _palette(r(), SKIN), r(3))
    v["blur_sigma"] = _lerp(r(), cfg.blur_min, max(cfg.blur_min, cfg.blur_max))
    v["noise_sigma"] = r() * cfg.noise_std / 255.0
    v["noise_tile"] = np.floor(r() * NOISE_TILES)
    v["noise_dx"] = np.floor(r() * 4096)
    v["noise_dy"] = np.floor(r() * 4096)
    v["noise_flip"] = np.zeros(len(v["occ_on"]))


def _realism(r: _Stream, cfg, v: dict[str, np.ndarray]) -> None:
    """A real face photo as the face's texture (pipeline.data.face_textures), grey images and a tilted
    camera (the neck and shoulders turn with the head's roll, as when a phone or photo is turned). Drawn last,
    so every earlier parameter of a sample is what it was without them."""
    v["tex_on"] = (r() < cfg.real_face_prob).astype(np.float64)
    v["tex_id"] = np.minimum(np.floor(r() * N_TEXTURES), N_TEXTURES - 1)
    v["tex_sign"] = np.ones(len(v["tex_on"]))
    v["grey"] = (r() < cfg.grey_prob).astype(np.float64)
    v["camera_roll"] = (r() < cfg.camera_roll_prob).astype(np.float64)
