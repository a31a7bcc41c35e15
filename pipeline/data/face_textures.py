"""Real faces as textures on the synthetic heads: real appearance with an exactly known pose.

The painted decals of the renderer (eyes, brows, mouth) are cartoons; a model trained on them alone
reads one real face well and another badly. Here a real, grey, near-frontal face photo is laid on
the front of the 3D head like a mask: each face pixel's head-frame hit point (x, y) is mapped by an
affine map that sends the head's eye centres and mouth to the photo's eyes and mouth, and the photo is
sampled there. The texture turns, foreshortens and is lit with the head, so the label stays the
rendered head's pose exactly; the photo's own small pose off frontal (a few degrees) moves features
slightly on the head, a little appearance noise, not label noise of the rendered geometry.

The photos: scikit-image's ``lfw_subset.npy`` (100 faces of different people from Labeled Faces in the
Wild, 25 x 25 grey, aligned by LFW's funnelling), installed with scikit-image; nothing is downloaded.
Their eyes and mouth come from the shipped face detector on each photo (upscaled), once per process;
a face it misses (5 of 100) uses the median of the others, which the alignment makes a good guess.
The shipped real-photo check (pipeline/faces/photos.py) uses none of these faces.

Grey photo, colour head: the texture modulates the head's skin colour by the photo's relative
brightness (photo / its mean over the inner face), so skin tones stay the renderer's.
"""

from __future__ import annotations

import functools
import threading

import numpy as np
from PIL import Image

from pipeline.faces import photos
from pipeline.faces.detector import detect

F32 = np.float32
TEXTURE_SIDE = 25  # lfw_subset's side in pixels
# Keypoint rows used: subject's right eye, left eye, mouth (the detector's rows 0, 1, 3)
_KP_ROWS = (0, 1, 3)
_UPSCALE = 4  # the detector needs a face of ~100 px; LFW's 25 px faces are upscaled for it
N_TEXTURES = 100
_LOCK = threading.Lock()  # rendering threads ask for the bank at once; the detector is one interpreter


def texture_bank() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The bank, built once per process (thread-safe): see :func:`_build_bank`."""
    with _LOCK:
        return _build_bank()


@functools.lru_cache(maxsize=1)
def _build_bank() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images (N, 25, 25) float32 in [0, 1], keypoints (N, 3, 2) texture pixels (x right, y down, pixel
    centres at integers) of right eye, left eye, mouth, mean brightness of the inner face (N,))."""
    faces = photos.lfw_faces()[:N_TEXTURES]
    kps = np.full((len(faces), 3, 2), np.nan)
    pad = TEXTURE_SIDE * _UPSCALE // 2
    for i, f in enumerate(faces):
        big = np.asarray(Image.fromarray(f).resize((TEXTURE_SIDE * _UPSCALE,) * 2, Image.BICUBIC))
        rgb = np.pad(np.repeat(big[..., None], 3, 2), ((pad, pad), (pad, pad), (0, 0)), mode="edge")
        found = detect(rgb)
        if found:
            # detector pixel centres at integers in the upscaled, padded frame -> texture pixel centres
            kps[i] = ((found[0].keypoints[list(_KP_ROWS)] - pad) + 0.5) / _UPSCALE - 0.5
    missing = np.isnan(kps[:, 0, 0])
    kps[missing] = np.median(kps[~missing], axis=0)
    images = faces.astype(F32) / 255.0
    inner = images[:, 6:20, 5:20]
    return images, kps.astype(F32), inner.mean(axis=(1, 2)).astype(F32)


def texture_affine(eye_x: np.ndarray, eye_y: np.ndarray, mouth_y: np.ndarray, tex_id: np.ndarray) -> np.ndarray:
    """(N, 6) coefficients (a, b, c, d, e, f): texture (u, v) = (a x + b y + c, d x + e y + f) for head-frame
    (x, y), sending the head's eyes (-+eye_x, eye_y) and mouth (0, mouth_y) to the texture's."""
    _, kps, _ = texture_bank()
    k = kps[tex_id.astype(np.int64)].astype(np.float64)  # (N, 3, 2)
    n = len(eye_x)
    src = np.stack([np.stack([-eye_x, eye_y, np.ones(n)], 1), np.stack([eye_x, eye_y, np.ones(n)], 1),
                    np.stack([np.zeros(n), mouth_y, np.ones(n)], 1)], 1)  # (N, 3 points, 3)
    coef = np.linalg.solve(src, k)  # (N, 3, 2): columns give u and v
    return np.concatenate([coef[:, :, 0], coef[:, :, 1]], 1)


def apply_texture(rgb: list[np.ndarray], skin: list[np.ndarray], px: np.ndarray, py: np.ndarray,
                  weight: np.ndarray, q: dict[str, np.ndarray]) -> None:
    """In place on flat face-pixel colours ``rgb`` (decals painted): blend in ``skin`` modulated by the
    texture, by ``weight`` (M,) per pixel, so the photo's eyes and mouth replace the painted ones.

    ``q``: per-pixel ``tex_id``, ``tex_sign`` (+1, or -1 in the mirrored scene: the photo is read
    mirrored), ``tex_coef`` (6, M) from :func:`texture_affine`.
    """
    images, _, means = texture_bank()
    c = q["tex_coef"]
    x = px * q["tex_sign"]
    u = c[0] * x + c[1] * py + c[2]
    v = c[3] * x + c[4] * py + c[5]
    last = TEXTURE_SIDE - 1
    # fade out over the outer pixel of the photo: no hard seam where the photo ends on the head
    fade = np.clip(np.minimum(np.minimum(u, last - u), np.minimum(v, last - v)), 0.0, 1.0)
    w = weight * fade
    u0 = np.clip(np.floor(u), 0, last - 1)
    v0 = np.clip(np.floor(v), 0, last - 1)
    au, av = np.clip(u - u0, 0.0, 1.0), np.clip(v - v0, 0.0, 1.0)
    tid = q["tex_id"].astype(np.int64)
    flat = images.reshape(-1)
    base = tid * (TEXTURE_SIDE * TEXTURE_SIDE) + v0.astype(np.int64) * TEXTURE_SIDE + u0.astype(np.int64)
    g = ((1 - av) * ((1 - au) * flat.take(base) + au * flat.take(base + 1))
         + av * ((1 - au) * flat.take(base + TEXTURE_SIDE) + au * flat.take(base + TEXTURE_SIDE + 1)))
    g = g / means.take(tid)
    for ch in range(3):
        rgb[ch] += w * (np.minimum(skin[ch] * g, 1.5) - rgb[ch])
