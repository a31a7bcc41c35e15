"""Batch ray-caster for the synthetic faces: a union of ellipsoids, z-buffered, shaded, on clutter.

The figure is nine ellipsoids: cranium, jaw, nose, two ears, a hair cap clipped at the hairline and
optional long hair in the head frame; neck and shoulders in a body frame that follows the head only
partly (the head turns on its neck). Each pixel casts an orthographic ray; for one ellipsoid the ray
depth is ``t = l(u, v) + sqrt(D(u, v))`` with ``l`` linear and ``D`` quadratic in the pixel
coordinates, so all depths of a batch come out of one small stacked matmul of per-image
coefficients against a fixed polynomial basis. The nearest hit wins; cranium and jaw normals are
blended across their seam. Eyes, brows, mouth,
beard and glasses are painted as soft decals on the 3D hit point (head-frame x, y), so they move
and foreshorten with the head. Lambert plus Blinn-Phong shading with a per-image light, then
background clutter, an optional occluder, a per-image Gaussian blur and sensor noise.

All per-pixel work is float32 numpy arithmetic on (N, H*W) arrays or on flat arrays of the selected
(foreground, face) pixels, with no per-pixel or per-image Python loops; each image's result depends
on its own parameters only, so any chunking gives the same bits. Small batches (about 16 images)
keep the working set in the CPU cache. Entry points: :func:`prepare` (per-image geometry, for a
whole call) and :func:`render_chunk`, used by ``pipeline.data.synthetic_faces``.
"""

from __future__ import annotations

import functools
import logging

import numpy as np

from pipeline.data.face_render_paint import (
    DECAL_COLOURS,
    DECAL_KEYS,
    add_noise,
    background,
    blur,
    grid,
    occlude,
    paint_face,
)
from pipeline.data.face_render_params import Appearance
from pipeline.data.face_textures import apply_texture, texture_affine

log = logging.getLogger(__name__)

F32 = np.float32
_BIG = F32(1e4)
K = 9  # ellipsoids per figure
CRANIUM, JAW, NOSE, EAR_R, EAR_L, HAIR_CAP, LONG_HAIR, NECK, TORSO = range(K)
_IS_HAIR = np.array([0, 0, 0, 0, 0, 1, 1, 0, 0], F32)
_IS_FACE = np.array([1, 1, 0, 0, 0, 0, 0, 0, 0], F32)
_IS_CLOTH = np.array([0, 0, 0, 0, 0, 0, 0, 0, 1], F32)
_ALBEDO_MULT = np.array([1.0, 1.0, 1.02, 0.93, 0.93, 1.0, 1.0, 0.8, 1.0], F32)


@functools.lru_cache(maxsize=8)
def _basis(size: int) -> np.ndarray:
    """The polynomial basis [1, u, v, u², uv, v²] over the pixel grid, (6, size * size) float32."""
    u, v = grid(size)
    return np.concatenate([np.ones_like(u), u, v, u * u, u * v, v * v]).astype(F32)


def rotation_matrices(poses_deg: np.ndarray) -> np.ndarray:
    """(N, 3, 3) float64 head-to-camera rotations R = R_x(-pitch) R_y(-yaw) R_z(-roll).

    Camera frame x right, y up, z towards the viewer; poses are (yaw, pitch, roll) in degrees (see
    ``pipeline.data.synthetic_faces`` for the full convention).
    """
    p = np.radians(np.asarray(poses_deg, np.float64).reshape(-1, 3))
    y, x, z = -p[:, 0], -p[:, 1], -p[:, 2]  # angles about camera y (yaw), x (pitch), z (roll)
    n = len(p)
    one, zero = np.ones(n), np.zeros(n)
    cx, sx, cy, sy, cz, sz = np.cos(x), np.sin(x), np.cos(y), np.sin(y), np.cos(z), np.sin(z)
    rx = np.stack([one, zero, zero, zero, cx, -sx, zero, sx, cx], 1).reshape(n, 3, 3)
    ry = np.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], 1).reshape(n, 3, 3)
    rz = np.stack([cz, -sz, zero, sz, cz, zero, zero, zero, one], 1).reshape(n, 3, 3)
    return rx @ ry @ rz


def _primitives(rot: np.ndarray, rot_body: np.ndarray, a: Appearance) -> tuple[np.ndarray, ...]:
    """Ellipsoids (N, K): centre in its own frame (N, K, 3), semi-axes (N, K, 3), head-to-own-frame
    rotation Q (N, K, 3, 3) and an enabled flag (N, K).

    Head parts are axis-aligned in the head frame (Q = I); neck and torso are axis-aligned in the body
    frame (Q = R_body^T R), which follows the head only partly, so the head turns on the neck.
    """
    n = len(a)
    hw, hh, hd = a["head_w"], a["head_h"], a["head_d"]
    zero = np.zeros(n)
    c = np.zeros((n, K, 3))
    s = np.ones((n, K, 3))
    c[:, CRANIUM] = np.stack([zero, zero + 0.1, zero - 0.08], 1)
    s[:, CRANIUM] = np.stack([hw, hh, hd], 1)
    c[:, JAW] = np.stack([zero, a["jaw_y"], a["jaw_z"]], 1)
    s[:, JAW] = np.stack([a["jaw_w"], a["jaw_h"], 0.8 * hd], 1)
    ny, nl = a["nose_y"], a["nose_len"]
    zsurf = -0.08 + hd * np.sqrt(np.clip(1 - ((ny - 0.1) / hh) ** 2, 0.05, 1))  # cranium front at the nose
    c[:, NOSE] = np.stack([zero, ny, zsurf - 0.3 * nl], 1)
    s[:, NOSE] = np.stack([a["nose_w"], a["nose_h"], nl], 1)
    es = a["ear_scale"]
    for k, side in ((EAR_R, 1.0), (EAR_L, -1.0)):
        c[:, k] = np.stack([side * 0.95 * hw, zero - 0.04, zero - 0.06], 1)
        s[:, k] = np.stack([0.07 * es, 0.18 * es, 0.11 * es], 1)
    vol = a["hair_volume"]
    c[:, HAIR_CAP] = np.stack([zero, 0.1 + 0.4 * vol, -0.08 - 0.3 * vol], 1)
    s[:, HAIR_CAP] = np.stack([hw + vol, hh + vol, hd + vol], 1)
    bot = a["long_hair_bottom"]
    c[:, LONG_HAIR] = np.stack([zero, (0.6 + bot) / 2, zero - 0.22], 1)
    s[:, LONG_HAIR] = np.stack([hw + vol + 0.08, (0.6 - bot) / 2, 0.78 * hd], 1)
    nw = a["neck_w"]
    c[:, NECK] = np.stack([zero, zero - 1.0, zero - 0.18], 1)
    s[:, NECK] = np.stack([nw, zero + 0.8, 1.05 * nw], 1)
    ts = a["torso_w"]
    c[:, TORSO] = np.stack([zero, a["torso_y"], zero - 0.3], 1)
    s[:, TORSO] = np.stack([ts, zero + 0.7, 0.55 + zero], 1)
    q = np.broadcast_to(np.eye(3), (n, K, 3, 3)).copy()
    body = rot_body.transpose(0, 2, 1) @ rot  # R_body^T R
    q[:, NECK] = body
    q[:, TORSO] = body
    on = np.ones((n, K))
    on[:, HAIR_CAP] = a["hair_on"]
    on[:, LONG_HAIR] = a["long_hair"]
    return c, s, q, on


def head_landmarks(a: Appearance) -> dict[str, np.ndarray]:
    """Head-frame 3D landmarks (N, 3) of each sample: eye centres, nose tip, mouth centre.

    Eye and mouth centres lie on the cranium / jaw surface where their decals are centred.
    """
    eye = np.broadcast_to(np.eye(3), (len(a), 3, 3))
    c, s, _, _ = _primitives(eye, eye, a)

    def on_surface(k: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        r = 1.0 - ((x - c[:, k, 0]) / s[:, k, 0]) ** 2 - ((y - c[:, k, 1]) / s[:, k, 1]) ** 2
        return c[:, k, 2] + s[:, k, 2] * np.sqrt(np.clip(r, 0.0, 1.0))

    ex, ey, my = a["eye_x"], a["eye_y"], a["mouth_y"]
    mz = np.maximum(on_surface(CRANIUM, 0 * my, my), on_surface(JAW, 0 * my, my))
    return {"eye_left": np.stack([ex, ey, on_surface(CRANIUM, ex, ey)], 1),  # subject's left: +x
            "eye_right": np.stack([-ex, ey, on_surface(CRANIUM, -ex, ey)], 1),
            "nose_tip": c[:, NOSE] + np.stack([0 * ex, 0 * ex, s[:, NOSE, 2]], 1),
            "mouth": np.stack([0 * my, my, mz], 1)}


def _mv(m: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Batched matrix @ vector over the last axes, written out so every sample sums in the same order."""
    return m[..., 0] * v[..., None, 0] + m[..., 1] * v[..., None, 1] + m[..., 2] * v[..., None, 2]


def _mtv(m: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Batched matrix.T @ vector over the last axes."""
    return m[..., 0, :] * v[..., 0, None] + m[..., 1, :] * v[..., 1, None] + m[..., 2, :] * v[..., 2, None]


def prepare(poses_deg: np.ndarray, a: Appearance) -> dict[str, np.ndarray]:
    """Per-image geometry and lighting for :func:`render_chunk` (float64 maths, float32 results).

    ``coef`` (N, 2K+3, 6): over the basis [1, u, v, u², uv, v²], rows D_k and l_k (the ray depth of
    ellipsoid k is t = l + sqrt(D), missed where D < 0), then the head-frame ray origin xyz. The
    pixel (u, v) ray in the head frame is p(t) = ((u - tx) e1 + (v - ty) e2) / S + t e3 with e1, e2,
    e3 the rows of R (R maps head to camera); t grows towards the viewer. ``nm`` (N, K, 6) and ``nb``
    (N, K, 3): the head-frame gradient of ellipsoid k at p is M p - b with M = Q^T diag(1/s²) Q
    (symmetric entries 00, 01, 02, 11, 12, 22) and b = M c.
    """
    poses = np.asarray(poses_deg, np.float64).reshape(-1, 3)
    rot = rotation_matrices(poses)
    follow = a["body_follow"][:, None]
    rot_body = rotation_matrices(poses * np.concatenate([follow, 0.0 * follow, follow], 1))
    tilted = a["camera_roll"] > 0
    if tilted.any():
        # A tilted camera turns the whole picture: the head's roll is the camera's, the body keeps its
        # share of the yaw and turns in the image plane by the roll too (R_z(-roll) @ R_y(-f yaw)).
        # The rendered head, and so the label, is the same either way; only the context changes.
        r = np.radians(poses[tilted, 2])
        tilt = np.zeros((len(r), 3, 3))
        tilt[:, 0, 0] = tilt[:, 1, 1] = np.cos(r)
        tilt[:, 0, 1], tilt[:, 1, 0] = np.sin(r), -np.sin(r)
        tilt[:, 2, 2] = 1.0
        yaw_only = poses[tilted] * np.concatenate([follow[tilted], 0.0 * follow[tilted], 0.0 * follow[tilted]], 1)
        rot_body[tilted] = tilt @ rotation_matrices(yaw_only)
    c, s, q, on = _primitives(rot, rot_body, a)
    S = a["scale"][:, None, None]
    e1, e2, e3 = (_mv(q, rot[:, None, i, :]) for i in range(3))
    tx, ty = a["tx"][:, None, None], a["ty"][:, None, None]
    a1 = e1 / (S * s)
    a2 = e2 / (S * s)
    d = e3 / s
    a0 = -(tx * e1 + ty * e2) / (S * s) - c / s

    def dot(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return x[..., 0] * y[..., 0] + x[..., 1] * y[..., 1] + x[..., 2] * y[..., 2]

    A = dot(d, d)
    b0, b1, b2 = dot(a0, d), dot(a1, d), dot(a2, d)
    q00, q01, q02 = dot(a0, a0), dot(a0, a1), dot(a0, a2)
    q11, q12, q22 = dot(a1, a1), dot(a1, a2), dot(a2, a2)
    disc = np.stack([b0 * b0 - A * q00 + A, 2 * (b0 * b1 - A * q01), 2 * (b0 * b2 - A * q02),
                     b1 * b1 - A * q11, 2 * (b1 * b2 - A * q12), b2 * b2 - A * q22], -1) / (A * A)[..., None]
    disc[on < 0.5] = np.array([-1.0, 0, 0, 0, 0, 0])
    lin = np.zeros_like(disc)
    lin[..., 0], lin[..., 1], lin[..., 2] = -b0 / A, -b1 / A, -b2 / A
    pb = np.zeros((len(a), 3, 6))
    Sv = a["scale"][:, None]
    r0, r1 = rot[:, 0, :], rot[:, 1, :]
    pb[..., 0] = -(a["tx"][:, None] * r0 + a["ty"][:, None] * r1) / Sv
    pb[..., 1] = r0 / Sv
    pb[..., 2] = r1 / Sv
    inv2 = 1.0 / s**2
    m = np.zeros(q.shape)
    for i in range(3):
        for j in range(3):
            m[..., i, j] = q[..., 0, i] * inv2[..., 0] * q[..., 0, j] + q[..., 1, i] * inv2[..., 1] * q[..., 1, j] \
                + q[..., 2, i] * inv2[..., 2] * q[..., 2, j]
    centre = _mtv(q, c)  # Q^T c
    light = np.stack([a["light_x"], a["light_y"], a["light_z"]], 1)
    light /= np.sqrt(dot(light, light))[:, None]
    halfway = light + np.array([0.0, 0.0, 1.0])
    halfway /= np.sqrt(dot(halfway, halfway))[:, None]
    out = {"coef": np.concatenate([disc, lin, pb], 1), "nm": m[..., [0, 0, 0, 1, 1, 2], [0, 1, 2, 1, 2, 2]],
           "nb": _mv(m, centre), "face_c": c[:, [CRANIUM, JAW]], "face_s": inv2[:, [CRANIUM, JAW]],
           "e3": rot[:, 2, :], "up": rot[:, 1, :], "lh": _mtv(rot, light), "hh": _mtv(rot, halfway)}
    return {k: np.ascontiguousarray(v, F32) for k, v in out.items()}


def select(prep: dict[str, np.ndarray], rows: slice) -> dict[str, np.ndarray]:
    """The prepared arrays of a sub-batch."""
    return {k: v[rows] for k, v in prep.items()}


class _Pixels:
    """A sorted subset of a batch's pixels: flat indices into (N, HW), their image rows and counts."""

    def __init__(self, idx: np.ndarray, n: int, hw: int):
        self.idx = idx
        self.rows = idx // hw
        self.pix = idx - self.rows * hw
        self.counts = np.bincount(self.rows, minlength=n)
        self.n, self.hw = n, hw

    def subset(self, keep: np.ndarray) -> tuple[_Pixels, np.ndarray]:
        """The pixels where ``keep`` (over this subset) is true, and their positions in this subset."""
        sel = np.flatnonzero(keep)
        return _Pixels(self.idx[sel], self.n, self.hw), sel

    def expand(self, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Per-image values (N,) or (N, 3) -> one float32 value per pixel, (M,) or (3, M)."""
        rows = [np.asarray(v, F32).reshape(self.n, -1).T for v in values.values()]
        table = np.repeat(np.concatenate(rows, 0), self.counts, axis=1)
        out, i = {}, 0
        for key, r in zip(values, rows, strict=True):
            out[key] = table[i] if len(r) == 1 else table[i:i + len(r)]
            i += len(r)
        return out


def _clip_hair(t: np.ndarray, pb: np.ndarray, e3: np.ndarray, a: Appearance) -> None:
    """In place: drop hair-cap hits below the hairline and long-hair hits in front of the face."""
    def col(x: np.ndarray) -> np.ndarray:
        return np.asarray(x, F32).reshape(-1, 1)

    th = t[:, HAIR_CAP]
    hx = pb[:, 0] + th * e3[:, 0:1]
    hy = pb[:, 1] + th * e3[:, 1:2]
    hz = pb[:, 2] + th * e3[:, 2:3]
    hb, hf = col(a["hairline_back"]), col(a["hairline_front"])
    np.clip(hz * (1 / 0.55), 0.0, 1.0, out=hz)
    line = hb + (hf - hb) * hz + col(a["hair_part"]) * hx
    th -= (hy < line) * _BIG
    # Long hair shows behind the head and, beside the face (|x| > 0.5) above the chin, falls forward.
    tl = t[:, LONG_HAIR]
    lx = np.abs(pb[:, 0] + tl * e3[:, 0:1])
    lx -= 0.5
    lx *= 1.5
    lx -= ((pb[:, 1] + tl * e3[:, 1:2]) < -0.75) * F32(2.0)
    tl -= ((pb[:, 2] + tl * e3[:, 2:3]) > lx) * _BIG


def _normals(p: list[np.ndarray], win: np.ndarray, fg: _Pixels, prep: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Unit head-frame normals at the hit points; cranium and jaw blend smoothly across their seam."""
    prim = fg.rows * K + win
    nm = prep["nm"].reshape(-1, 6)
    nb = prep["nb"].reshape(-1, 3)
    m00, m01, m02, m11, m12, m22 = (nm[:, i].take(prim) for i in range(6))
    g = [m00 * p[0] + m01 * p[1] + m02 * p[2] - nb[:, 0].take(prim),
         m01 * p[0] + m11 * p[1] + m12 * p[2] - nb[:, 1].take(prim),
         m02 * p[0] + m12 * p[1] + m22 * p[2] - nb[:, 2].take(prim)]
    # Soft union of cranium and jaw: f_k = |(p - c_k) / s_k|^2 - 1 is 0 on surface k and > 0 outside it;
    # the gradients of both are blended by how far the point is from the other surface.
    q = fg.expand({"cc": prep["face_c"][:, 0], "sc": prep["face_s"][:, 0],
                   "cj": prep["face_c"][:, 1], "sj": prep["face_s"][:, 1]})
    dc = [p[j] - q["cc"][j] for j in range(3)]
    dj = [p[j] - q["cj"][j] for j in range(3)]
    gc = [dc[j] * q["sc"][j] for j in range(3)]
    gj = [dj[j] * q["sj"][j] for j in range(3)]
    w = dc[0] * gc[0] + dc[1] * gc[1] + dc[2] * gc[2]
    w -= dj[0] * gj[0] + dj[1] * gj[1] + dj[2] * gj[2]
    w = np.clip(0.5 + 2.0 * w, 0.0, 1.0)  # weight of the jaw gradient
    w *= _IS_FACE.take(win)
    face = _IS_FACE.take(win)
    out = [g[j] + face * (gc[j] - g[j]) + w * (gj[j] - gc[j]) for j in range(3)]
    inv = 1.0 / np.sqrt(out[0] * out[0] + out[1] * out[1] + out[2] * out[2] + 1e-12)
    return [o * inv for o in out]


def render_chunk(prep: dict[str, np.ndarray], a: Appearance, size: int, out: np.ndarray | None = None) -> np.ndarray:
    """Render one batch from :func:`prepare` output and appearance ``a`` into ``out`` (N, size, size, 3) uint8."""
    n, hw = len(a), size * size
    m = np.matmul(prep["coef"], _basis(size))  # (N, 2K+3, HW)
    disc = m[:, :K]
    with np.errstate(invalid="ignore"):
        t = np.sqrt(disc)  # NaN where the ray misses
    t += m[:, K:2 * K]
    e3 = prep["e3"]
    _clip_hair(t, m[:, 2 * K:], e3, a)
    best = np.fmax.reduce(t, axis=1)
    fg = _Pixels(np.flatnonzero(best > -_BIG / 2), n, hw)
    # Everything below runs on the foreground pixels only, as flat arrays.
    depth = best.reshape(-1).take(fg.idx)
    tflat = t.reshape(-1)
    base = fg.rows * (K * hw) + fg.pix
    win = np.zeros(len(depth), np.int64)
    for k in range(1, K):
        win += (tflat.take(base + k * hw) == depth) * k
    np.minimum(win, K - 1, out=win)
    q = fg.expand({"e3": e3, "lh": prep["lh"], "hh": prep["hh"], "up": prep["up"],
                   "ambient": a["ambient"], "diffuse": a["diffuse"], "specular": a["specular"],
                   "skin": a["skin"], "hair": a["hair_rgb"], "cloth": a["cloth_rgb"], "light_rgb": a["light_rgb"]})
    mflat = m.reshape(-1)
    mb = fg.rows * ((2 * K + 3) * hw) + fg.pix + 2 * K * hw
    p = [mflat.take(mb + j * hw) + depth * q["e3"][j] for j in range(3)]  # head-frame hit point
    nrm = _normals(p, win, fg, prep)

    def dot(vec: np.ndarray) -> np.ndarray:
        return nrm[0] * vec[0] + nrm[1] * vec[1] + nrm[2] * vec[2]

    # Highlight lobe: a clipped ramp of n.h, squared (high powers would underflow to slow denormals).
    spec = np.clip((dot(q["hh"]) - 0.8) * 5.0, 0.0, 1.0)
    spec *= spec
    is_hair, is_cloth = _IS_HAIR.take(win), _IS_CLOTH.take(win)
    spec *= q["specular"] * (1.0 - 0.7 * is_hair - 0.5 * is_cloth)
    shade = q["ambient"] * (0.8 + 0.2 * dot(q["up"])) + q["diffuse"] * np.clip(dot(q["lh"]), 0.0, 1.0)
    shade *= _ALBEDO_MULT.take(win)
    # Hair strands: a faint stripe pattern on the 3D hair surface, parted in the middle.
    shade *= 1.0 - is_hair * 0.06 * (1.0 + np.sin(45.0 * np.abs(p[0]) + 15.0 * p[1]))
    rgb = [q["skin"][ch] + is_hair * (q["hair"][ch] - q["skin"][ch]) + is_cloth * (q["cloth"][ch] - q["skin"][ch])
           for ch in range(3)]
    gate = _IS_FACE.take(win) * np.clip((p[2] - 0.2) * 6.0, 0.0, 1.0)
    face, sel = fg.subset(gate > 0)
    if len(sel):
        vals = {k: a[k] for k in DECAL_KEYS if k != "beard_strength"}
        vals["beard_strength"] = a["beard"] * a["beard_alpha"]
        vals.update({k: a[k] for k in DECAL_COLOURS})
        sub = [c.take(sel) for c in rgb]
        skin = [c.copy() for c in sub]
        fx, fy, fgate = p[0].take(sel), p[1].take(sel), gate.take(sel)
        paint_face(sub, fx, fy, fgate, face.expand(vals), F32(size / 8.0))
        if a["tex_on"].any():
            tex = face.expand({"tex_on": a["tex_on"], "tex_id": a["tex_id"], "tex_sign": a["tex_sign"],
                               "tex_coef": texture_affine(a["eye_x"], a["eye_y"], a["mouth_y"], a["tex_id"])})
            apply_texture(sub, skin, fx, fy, fgate * tex["tex_on"], tex)
        for ch in range(3):
            rgb[ch][sel] = sub[ch]
    img = background(a, size)
    iflat = img.reshape(-1)
    ib = fg.rows * (3 * hw) + fg.pix
    for ch in range(3):
        rgb[ch] *= shade * q["light_rgb"][ch]
        rgb[ch] += spec
        iflat[ib + ch * hw] = rgb[ch]
    occlude(img, a, size)
    img = blur(img.reshape(n, 3, size, size), a["blur_sigma"] * size / 64.0)
    add_noise(img, a, size)
    grey = np.flatnonzero(a["grey"])
    if len(grey):  # ITU-R BT.601 luma in all three channels, as PIL's "L" makes grey photos
        img[grey] = (0.299 * img[grey, 0] + 0.587 * img[grey, 1] + 0.114 * img[grey, 2])[:, None]
    img *= 255.0
    img += 0.5
    np.clip(img, 0.0, 255.0, out=img)
    if out is None:
        out = np.empty((n, size, size, 3), np.uint8)
    out[...] = img.transpose(0, 2, 3, 1)  # the cast truncates; +0.5 above makes it round
    return out
