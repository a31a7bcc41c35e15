"""Real face photos that ship inside installed packages: nothing is downloaded, and each one's
licence allows shipping results computed on it.

=============  ===============  ======================================  ============================
name           package          file                                    person, licence
=============  ===============  ======================================  ============================
hopper         matplotlib       mpl-data/sample_data/grace_hopper.jpg   Grace Hopper, US Navy photo,
                                                                        public domain
astronaut      scikit-image     skimage/data/astronaut.png              Eileen Collins, NASA photo,
                                                                        public domain
camera         scikit-image     skimage/data/camera.png (grey)          a photographer (by Lav
                                                                        Varshney), CC0
=============  ===============  ======================================  ============================

``hopper_grey`` and ``astronaut_grey`` are the two colour photos in grey (ITU-R BT.601 luma, repeated
over R, G and B), so every person is seen both ways where the package has a colour original.
scikit-image also ships ``lfw_subset.npy``: 100 faces of different people from Labeled Faces in the
Wild, 25 x 25 grey; too small for a pose check, it serves the detector test (``lfw_faces``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Photo:
    name: str
    package: str
    file: str  # inside the package's install folder
    person: str
    licence: str
    grey: bool = False  # convert the colour original to grey


PHOTOS = (
    Photo("hopper", "matplotlib", "mpl-data/sample_data/grace_hopper.jpg", "Grace Hopper",
          "public domain (US Navy)"),
    Photo("astronaut", "skimage", "data/astronaut.png", "Eileen Collins", "public domain (NASA)"),
    Photo("camera", "skimage", "data/camera.png", "photographer", "CC0 (Lav Varshney)"),
    Photo("hopper_grey", "matplotlib", "mpl-data/sample_data/grace_hopper.jpg", "Grace Hopper",
          "public domain (US Navy)", grey=True),
    Photo("astronaut_grey", "skimage", "data/astronaut.png", "Eileen Collins", "public domain (NASA)",
          grey=True),
)
NAMES = tuple(p.name for p in PHOTOS)


def _matplotlib_dir() -> Path:
    import matplotlib

    return Path(matplotlib.__file__).parent


def _skimage_dir() -> Path:
    import skimage

    return Path(skimage.__file__).parent


# Spelled-out imports (not importlib by name) so the dependency check sees which packages the photos need.
_PACKAGE_DIRS = {"matplotlib": _matplotlib_dir, "skimage": _skimage_dir}


def _package_dir(package: str) -> Path:
    try:
        return _PACKAGE_DIRS[package]()
    except ImportError as exc:
        raise ModuleNotFoundError(f"package {package!r} is not installed: pip install the project "
                                  f"(it depends on {package})") from exc


def photo_path(photo: Photo) -> Path:
    path = _package_dir(photo.package) / photo.file
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed {photo.package}: reinstall it")
    return path


def load(name: str) -> np.ndarray:
    """uint8 (H, W, 3) RGB pixels of one photo (grey ones repeat the luma over the three channels)."""
    from PIL import Image

    by_name = {p.name: p for p in PHOTOS}
    if name not in by_name:
        raise KeyError(f"no photo {name!r}: choose from {list(NAMES)}")
    photo = by_name[name]
    with Image.open(photo_path(photo)) as im:
        im = im.convert("L" if photo.grey else "RGB").convert("RGB")  # PIL's "L" is BT.601 luma
        return np.asarray(im, np.uint8).copy()


def lfw_faces() -> np.ndarray:
    """scikit-image's 100 LFW faces, uint8 (100, 25, 25) grey."""
    a = np.load(_package_dir("skimage") / "data" / "lfw_subset.npy")[:100]
    return np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8)
