"""Rendering throughput of the synthetic face renderer (``pipeline.data.synthetic_faces``).

    python -m benchmarks.render_speed [--n 4000] [--threads 2] [--repeats 5] [--size 64] [--chunk 16]

Renders ``--n`` random poses with the default config (clutter, occluders, blur, noise all on) using
``--threads`` worker threads, ``--repeats`` times after one full-size warm-up call (the first calls
of a process are slower: page faults, caches), and prints the median,
min and max images per second with the chunk size and image size. Each repeat uses a new seed so
every call renders different faces; a checksum of the pixels is printed to show the work was done.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time

import numpy as np

from pipeline.data.synthetic_faces import SyntheticFacesConfig, render_faces, sample_poses

log = logging.getLogger(__name__)


def measure(n: int, threads: int, repeats: int, cfg: SyntheticFacesConfig) -> tuple[list[float], int]:
    """Images per second of ``repeats`` timed renders of n images, and a pixel checksum."""
    render_faces(sample_poses(n, 999, cfg), 999, cfg, threads=threads)  # warm-up: caches, page faults, clocks
    rates, checksum = [], 0
    for r in range(repeats):
        poses = sample_poses(n, r, cfg)
        t0 = time.perf_counter()
        images = render_faces(poses, r, cfg, threads=threads)
        rates.append(n / (time.perf_counter() - t0))
        checksum += int(images.astype(np.int64).sum())
    return rates, checksum


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Synthetic face rendering throughput")
    ap.add_argument("--n", type=int, default=4000, help="images per timed call")
    ap.add_argument("--threads", type=int, default=2, help="render worker threads")
    ap.add_argument("--repeats", type=int, default=5, help="timed calls")
    ap.add_argument("--size", type=int, default=64, help="image side in pixels")
    ap.add_argument("--chunk", type=int, default=None, help="images per vectorised batch (default: config)")
    args = ap.parse_args(argv)
    cfg = SyntheticFacesConfig(image_size=args.size)
    if args.chunk:
        cfg.chunk_size = args.chunk
    rates, checksum = measure(args.n, args.threads, args.repeats, cfg)
    print(f"render_faces: {args.n} images of {args.size}x{args.size}, chunk {cfg.chunk_size}, "
          f"{args.threads} thread(s), {args.repeats} repeats")
    print(f"images/s: median {statistics.median(rates):.0f}  min {min(rates):.0f}  max {max(rates):.0f}"
          f"  (checksum {checksum})")


if __name__ == "__main__":
    main()
