"""2D layers of the synthetic-face renderer: facial decals, background clutter, occluder, blur, noise.

Decals (eyes, brows, mouth, beard, glasses) are evaluated on the head-frame (x, y) of each face
pixel's 3D hit point, on flat arrays of the selected pixels with per-pixel parameter vectors, so they
move and foreshorten with the head. Background and occluder are soft-edged rotated ellipses and
rectangles in normalised image coordinates (u right, v up, both in [-1, 1]). Everything is float32
numpy arithmetic; comparisons and ``where`` are avoided on big arrays because they are slow.

Used by ``pipeline.data.face_render``; not meant to be run directly.
"""

from __future__ import annotations

import functools
import logging

import numpy as np

from pipeline.data.face_render_params import N_CLUTTER, NOISE_TILES, Appearance

log = logging.getLogger(__name__)

F32 = np.float32

# Per-image parameters the decals read (expanded to one value per face pixel).
DECAL_KEYS = ("eye_x", "eye_y", "eye_w", "eye_h", "iris_r", "gaze_x", "gaze_y", "brow_dy", "brow_len",
              "brow_thick", "brow_tilt", "brow_alpha", "mouth_y", "mouth_w", "lip_h", "smile", "mouth_open",
              "beard_top", "beard_strength", "glasses")
DECAL_COLOURS = ("hair_rgb", "iris_rgb", "lip_rgb", "glasses_rgb")


@functools.lru_cache(maxsize=16)
def grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates u (right), v (up) in [-1, 1], each (1, size * size) float32."""
    c = ((np.arange(size) + 0.5) / size * 2.0 - 1.0).astype(F32)
    return np.tile(c, size)[None, :], np.repeat(-c, size)[None, :]


@functools.lru_cache(maxsize=8)
def noise_bank(size: int) -> np.ndarray:
    """Fixed unit-variance noise tiles (NOISE_TILES * size * size,), shared by every sample."""
    return np.random.default_rng(20240611).standard_normal(NOISE_TILES * size * size).astype(F32)


def soft(r: np.ndarray, sharp: float) -> np.ndarray:
    """Coverage of the implicit shape r < 1 with a soft edge, clip((1 - r) * sharp, 0, 1), in place on r."""
    np.subtract(1.0, r, out=r)
    r *= sharp
    return np.clip(r, 0.0, 1.0, out=r)


def blend(rgb: list[np.ndarray], alpha: np.ndarray, col: tuple[np.ndarray, ...] | np.ndarray) -> None:
    """In place: rgb[c] += alpha * (col[c] - rgb[c]); col[c] broadcasts against rgb[c]."""
    for ch in range(3):
        rgb[ch] += alpha * (col[ch] - rgb[ch])


def paint_face(rgb: list[np.ndarray], px: np.ndarray, py: np.ndarray, gate: np.ndarray,
               q: dict[str, np.ndarray], sharp: float) -> None:
    """Paint beard, eyes, brows, mouth and glasses onto flat face-pixel colours ``rgb`` (in place).

    ``px, py``: head-frame hit point; ``gate``: 0..1 weight (front of the face); ``q``: per-pixel
    parameters (DECAL_KEYS, and DECAL_COLOURS as (3, M) arrays).
    """
    ax = np.abs(px)
    ex, ey, ew, eh = q["eye_x"], q["eye_y"], q["eye_w"], q["eye_h"]
    dx = ax - ex
    dy = py - ey
    hair = q["hair_rgb"]
    beard = soft((py - q["beard_top"]) * 8.0 + 1.0, 1.0)
    beard *= gate * q["beard_strength"]
    blend(rgb, beard, hair)
    # Eye socket shadow, a dark rim (lids and lashes), the white, iris and pupil.
    socket = soft((dx * (1 / 0.2)) ** 2 + ((dy - 0.03) * (1 / 0.13)) ** 2, 1.5)
    socket *= gate * F32(0.25)
    np.subtract(1.0, socket, out=socket)
    for ch in range(3):
        rgb[ch] *= socket
    rx = dx / ew
    rx *= rx
    ry = (dy - 0.008) / (eh * 1.45)
    ry *= ry
    rim = soft(rx * (1 / 1.35) + ry, sharp)
    rim *= gate
    blend(rgb, rim, hair * 0.3)
    ry = dy / eh
    ry *= ry
    white = soft(rx + ry, sharp)
    white *= gate
    blend(rgb, white, (F32(0.92), F32(0.91), F32(0.88)))
    ix = px - np.copysign(ex, px) - q["gaze_x"]
    iy = dy - q["gaze_y"]
    ir2 = ix * ix + iy * iy
    ir2 /= q["iris_r"] ** 2
    pupil = ir2 * (1 / 0.25)
    iris = soft(ir2, sharp)
    iris *= white
    blend(rgb, iris, q["iris_rgb"])
    pupil = soft(pupil, sharp)
    pupil *= white
    blend(rgb, pupil, (F32(0.02), F32(0.02), F32(0.02)))
    # Brows: an arched, tilted bar above each eye.
    bx = dx + 0.02
    by = dy - q["brow_dy"] - q["brow_tilt"] * bx + 1.2 * bx * bx
    brow = soft((bx / q["brow_len"]) ** 2 + (by / q["brow_thick"]) ** 2, sharp)
    brow *= gate * q["brow_alpha"]
    blend(rgb, brow, hair * 0.7)
    # Mouth: lips following a smile curve, then the dark line between them.
    mw = q["mouth_w"]
    my = py - q["mouth_y"] - q["smile"] * 0.5 * px * px
    mx2 = (px / mw) ** 2
    lips = soft(mx2 + (my / q["lip_h"]) ** 2, sharp)
    lips *= gate
    blend(rgb, lips, q["lip_rgb"])
    gap = soft(mx2 * 1.15 + (my / (0.012 + q["mouth_open"])) ** 2, sharp)
    gap *= lips
    blend(rgb, gap, q["lip_rgb"] * 0.25)
    # Glasses: elliptical rims around the eyes and a bridge between them.
    g = q["glasses"] * gate
    ring = np.abs(rx * (1 / 1.55**2) + ((dy + 0.01) / (eh * 2.6)) ** 2 - 1.0)
    ring = soft(ring * 6.0, sharp)
    bx2 = (px / np.maximum(ex - ew * 1.4, 0.05)) ** 2
    bridge = soft(bx2 * bx2 + ((dy - 0.03) / 0.02) ** 2, sharp)
    np.maximum(ring, bridge, out=ring)
    ring *= g
    blend(rgb, ring, q["glasses_rgb"])


def _col(x: np.ndarray) -> np.ndarray:
    """Per-image scalars (N,) as a float32 column (N, 1) for broadcasting over pixels."""
    return np.asarray(x, F32).reshape(-1, 1)


def shape_alpha(u, v, cx, cy, rx, ry, angle, kind, sharp: float) -> np.ndarray:
    """Coverage of rotated ellipses (kind 0) or rectangles (kind 1); params are (N, 1) columns."""
    du, dv = u - cx, v - cy
    ca, sa = np.cos(angle), np.sin(angle)
    x = (du * ca + dv * sa) / rx
    y = (dv * ca - du * sa) / ry
    x *= x
    y *= y
    r = x + y
    r -= kind * np.minimum(x, y)
    return soft(r, sharp)


def background(a: Appearance, size: int) -> np.ndarray:
    """(N, 3, size * size) background: gradient, stripes and clutter shapes (drawn at half size if even)."""
    n = len(a)
    half = size % 2 == 0 and size >= 32
    s = size // 2 if half else size
    u, v = grid(s)
    t = np.clip(0.5 + _col(a["bg_gx"]) * u + _col(a["bg_gy"]) * v, 0.0, 1.0)
    bga, bgb = a["bg_a"].astype(F32), a["bg_b"].astype(F32)
    stripe = np.sin(_col(a["stripe_freq"]) * (_col(a["stripe_dx"]) * u + _col(a["stripe_dy"]) * v)
                    + _col(a["stripe_phase"]))
    stripe *= _col(a["stripe_amp"])
    rgb = [bga[:, ch:ch + 1] + (bgb[:, ch:ch + 1] - bga[:, ch:ch + 1]) * t + stripe for ch in range(3)]
    sharp = F32(s / 3.0)
    for k in range(N_CLUTTER):
        on = a["clutter_on"][:, k]
        if not on.any():
            continue
        al = shape_alpha(u, v, _col(a["clutter_cx"][:, k]), _col(a["clutter_cy"][:, k]),
                         _col(a["clutter_rx"][:, k]), _col(a["clutter_ry"][:, k]),
                         _col(a["clutter_angle"][:, k]), _col(a["clutter_kind"][:, k]), sharp)
        al *= _col(on)
        col = a["clutter_rgb"][:, k].astype(F32)
        blend(rgb, al, [col[:, ch:ch + 1] for ch in range(3)])
    out = np.stack(rgb, 1).reshape(n, 3, s, s)
    if half:
        up = _upsample_matrix(size)
        out = np.matmul(np.matmul(up, out), up.T)
    return out.reshape(n, 3, size * size)


@functools.lru_cache(maxsize=8)
def _upsample_matrix(size: int) -> np.ndarray:
    """(size, size // 2) bilinear 2x interpolation with pixel-centre alignment and edge clamping."""
    half = size // 2
    m = np.zeros((size, half), F32)
    for i in range(size):
        c = (i + 0.5) / 2 - 0.5
        lo = int(np.floor(c))
        m[i, min(max(lo, 0), half - 1)] += 1 - (c - lo)
        m[i, min(lo + 1, half - 1)] += c - lo
    return m


def occlude(img: np.ndarray, a: Appearance, size: int) -> None:
    """In place on (N, 3, HW): paint the occluder on the images that have one."""
    rows = np.flatnonzero(a["occ_on"] > 0.5)
    if not len(rows):
        return
    u, v = grid(size)
    o = a.select(rows)
    al = shape_alpha(u, v, _col(o["occ_cx"]), _col(o["occ_cy"]), _col(o["occ_rx"]), _col(o["occ_ry"]),
                     _col(o["occ_angle"]), _col(o["occ_kind"]), F32(size / 3.0))
    sub = [img[rows, ch] for ch in range(3)]
    col = o["occ_rgb"].astype(F32)
    blend(sub, al, [col[:, ch:ch + 1] for ch in range(3)])
    for ch in range(3):
        img[rows, ch] = sub[ch]


def blur(img: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Per-image Gaussian blur of (N, C, H, W): separable, five taps, edge pixels replicated."""
    n = len(img)
    taps = np.exp(-(np.arange(3)[None, :] ** 2) / (2.0 * np.maximum(sigma, 1e-3) ** 2)[:, None])
    taps /= (taps[:, :1] + 2 * taps[:, 1:].sum(1, keepdims=True))
    w0, w1, w2 = (taps[:, k].astype(F32).reshape(n, 1, 1, 1) for k in range(3))
    for axis in (3, 2):
        length = img.shape[axis]
        first = np.take(img, [0, 0], axis=axis)
        last = np.take(img, [length - 1, length - 1], axis=axis)
        xp = np.concatenate([first, img, last], axis=axis)

        def shifted(k: int, xp: np.ndarray = xp, axis: int = axis, length: int = length) -> np.ndarray:
            sl = [slice(None)] * 4
            sl[axis] = slice(k, k + length)
            return xp[tuple(sl)]

        out = shifted(1) + shifted(3)
        out *= w1
        out += w2 * (shifted(0) + shifted(4))
        out += w0 * img
        img = out
    return img


def add_noise(img: np.ndarray, a: Appearance, size: int) -> None:
    """In place on (N, 3, H, W): sensor noise read from the shared bank at a per-image offset.

    The bank is read with a per-image cyclic shift (and mirrored columns when ``noise_flip``), so the
    noise of a mirrored appearance is the mirror of the original's.
    """
    sig = a["noise_sigma"]
    if not np.any(sig > 0):
        return
    bank = noise_bank(size)
    n = len(a)
    x = np.arange(size)[None, :]
    x = np.where(a["noise_flip"][:, None] > 0.5, size - 1 - x, x)
    cols = (x + a["noise_dx"][:, None].astype(np.int64)) % size
    rows = (np.arange(size)[None, :] + a["noise_dy"][:, None].astype(np.int64)) % size
    tile = (a["noise_tile"].astype(np.int64)[:, None] + np.arange(3)[None, :]) % NOISE_TILES  # (N, 3)
    idx = (tile[:, :, None, None] * (size * size) + rows[:, None, :, None] * size
           + cols[:, None, None, :]).astype(np.int32)  # (N, 3, H, W)
    noise = bank.take(idx)
    noise *= np.asarray(sig, F32).reshape(n, 1, 1, 1)
    img += noise
