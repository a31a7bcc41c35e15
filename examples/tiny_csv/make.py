"""Regenerate this folder: 48 head-pose images from the project's synthetic renderer and labels.csv.

    python examples/tiny_csv/make.py

The images stand in for a user's own photos; nothing here needs the renderer at run time. Two rows
are broken on purpose (a missing image and a label that is not a number) so that
``python -m pipeline dataset check`` shows how skipped rows are reported.
"""

from __future__ import annotations

import csv
from pathlib import Path

from PIL import Image

from pipeline.data.synthetic_faces import SyntheticFacesConfig, render_faces, sample_poses

HERE = Path(__file__).parent
SPLITS = ["train"] * 32 + ["val"] * 8 + ["test"] * 8


def main() -> None:
    cfg = SyntheticFacesConfig()
    poses = sample_poses(len(SPLITS), seed=7, cfg=cfg)
    images = render_faces(poses, seed=7, cfg=cfg, threads=1)
    (HERE / "images").mkdir(exist_ok=True)
    rows = []
    for i, (img, pose, split) in enumerate(zip(images, poses, SPLITS, strict=True)):
        name = f"images/face_{i:03d}.png"
        Image.fromarray(img).save(HERE / name, optimize=True)
        rows.append([name, *(f"{v:.2f}" for v in pose), split])
    rows.append(["images/missing.png", "10.0", "0.0", "0.0", "train"])  # skipped: image missing
    rows.append([rows[0][0], "n/a", "0.0", "0.0", "train"])  # skipped: label not a finite number
    with open(HERE / "labels.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "yaw", "pitch", "roll", "split"])
        writer.writerows(rows)


if __name__ == "__main__":
    main()
