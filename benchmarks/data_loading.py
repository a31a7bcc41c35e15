"""Loading speed of a real-data source: images/s decoded and cropped, then the cached crops read back.

Writes a 300W-LP-like folder (450 x 450 JPEGs with their ``.mat``, as in the dataset) under a
temporary folder, reads it with the ``300w_lp`` reader (decode, crop from the landmarks, resize to
64 px) on ``--workers`` threads, writes the source stage's cache (one ``.npy`` per split) and reads
it back memory-mapped, as every later run and every noise level of an ablation does::

    python -m benchmarks.data_loading --n 400 --workers 2
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from pipeline.runs import atomic_save


def write_fixture(root: Path, n: int, size: int = 450) -> None:
    import scipy.io
    from PIL import Image

    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, size=(size // 8, size // 8, 3)).astype(np.uint8)
    for i in range(n):
        img = Image.fromarray(np.roll(base, i, 0)).resize((size, size), Image.Resampling.BILINEAR)
        path = root / "AFW" / f"AFW_{i // 10}_{i % 10}.jpg"
        atomic_save(path, lambda p, img=img: img.save(p, quality=90))
        t = np.linspace(0, 1, 68)
        pose = {"Pose_Para": rng.uniform(-1, 1, size=(1, 7)), "pt2d": np.stack([150 + 150 * t, 150 + 170 * t[::-1]])}
        atomic_save(path.with_suffix(".mat"), lambda p, pose=pose: scipy.io.savemat(str(p), pose))


def main(argv: list[str] | None = None) -> dict:
    from pipeline.config import validate
    from pipeline.data.dataset import open_images, summary, write_source
    from pipeline.data.sources import SOURCES

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=400, help="images in the generated folder")
    ap.add_argument("--workers", type=int, default=2, help="decoding threads")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "300W_LP"
        write_fixture(root, args.n)
        cfg = validate({"data": {"source": "300w_lp", "w300_lp": {
            "root": str(root), "test": [], "workers": args.workers, "val_fraction": 0.05,
            "test_fraction": 0.1}}}).data
        t0 = time.perf_counter()
        data = SOURCES["300w_lp"].read(cfg)
        read_s = time.perf_counter() - t0
        cache = Path(tmp) / "cache"
        cache.mkdir()
        write_source(data, "image", cache, summary(data, read_s))
        t0 = time.perf_counter()
        arrays = [np.array(open_images(cache, s)) for s in ("train", "val", "test")]  # every page read
        total = sum(len(a) for a in arrays)
        cached_s = time.perf_counter() - t0
        nbytes = sum((cache / f"{s}_x.npy").stat().st_size for s in ("train", "val", "test"))
    result = {"images": int(total), "workers": args.workers,
              "decode_crop_images_per_s": round(total / read_s, 1),
              "cached_read_images_per_s": round(total / cached_s, 1),
              "cached_read_mb_per_s": round(nbytes / cached_s / 1e6, 1)}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
