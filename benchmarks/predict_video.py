"""End-to-end speed of ``python -m pipeline predict`` on a video: frames per second, and where the time goes.

Makes a short video from a shipped photo (a sweep of in-plane turns, ``pipeline.data.transforms
.rotate_image``, -40 to +40 degrees by default: the face moves, so the detector and the crop do real
work on every frame), runs the command on it as a user would (a subprocess), and reports from its
``predictions.json``: frames per second of the predict loop (reading, decoding, detection, crop,
model; without the process start and the model's opening), the whole command's wall time, and the
median and interquartile range of each stage in milliseconds (detector per frame; crop and model per
face). The CPU is named from ``pipeline.device.host_description``.

    python -m benchmarks.predict_video --model runs/face_pose [--frames 90] [--photo hopper] [--save]
        [--smooth] [--threads 1] [--out runs/predict/bench] [--json result.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

from pipeline.data.transforms import rotate_image
from pipeline.device import host_description
from pipeline.faces import photos
from pipeline.predict.media import video_writer
from pipeline.runs import atomic_write_json


def sweep_angles(frames: int, max_angle: float) -> np.ndarray:
    return np.linspace(-max_angle, max_angle, frames)


def make_video(path: Path, photo: str = "hopper", frames: int = 90, max_angle: float = 40.0,
               fps: int = 30) -> Path:
    """An MP4 of ``photo`` turned from -max_angle to +max_angle degrees in ``frames`` steps."""
    image = photos.load(photo)
    with video_writer(path, Fraction(fps)) as writer:
        for angle in sweep_angles(frames, max_angle):
            writer.write(rotate_image(image, float(angle)))
    return path


def run(model: str, out: Path, frames: int, photo: str, max_angle: float, threads: int, save: bool,
        smooth: bool) -> dict:
    video = make_video(out / f"{photo}_sweep.mp4", photo, frames, max_angle)
    cmd = [sys.executable, "-m", "pipeline", "predict", str(video), "--model", model, "--out", str(out / "predict"),
           "--threads", str(threads)] + (["--save"] if save else []) + (["--smooth"] if smooth else [])
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"predict exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    result = json.loads((out / "predict" / "predictions.json").read_text())
    return {"video": str(video), "frames": frames, "photo": photo, "max_angle": max_angle, "threads": threads,
            "save": save, "smooth": smooth, "model": result["model"], "counts": result["counts"],
            "timing": result["timing"], "command_wall_s": round(wall, 3), "host": host_description()}


def table(r: dict) -> str:
    t, c = r["timing"], r["counts"]
    lines = [f"host: {r['host']['cpu']} ({r['host']['cores']} logical cores), model runtime {r['threads']} "
             f"thread(s)",
             f"model: {r['model']['path']} ({r['model']['format']}, {r['model']['runtime']})",
             f"video: {r['frames']} frames of {r['photo']} turned {-r['max_angle']:g}..{r['max_angle']:g} deg; "
             f"{c['faces']} faces, {c['no_face']} frames without a face",
             f"predict loop: {t['frames_per_s']} frames/s ({t['wall_s']} s){' with --save' if r['save'] else ''}"
             f"{' --smooth' if r['smooth'] else ''}; whole command {r['command_wall_s']} s (process start and "
             "model opening included)",
             f"{'stage':<8} {'median ms':>10} {'IQR ms':>16} {'n':>5}"]
    for stage in ("detect_ms", "crop_ms", "infer_ms"):
        if stage in t:
            s = t[stage]
            lines.append(f"{stage[:-3]:<8} {s['median']:>10.2f} {s['iqr'][0]:>7.2f}-{s['iqr'][1]:<8.2f} {s['n']:>5}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="runs/face_pose", help="an artifact or a run folder (as predict takes)")
    ap.add_argument("--frames", type=int, default=90)
    ap.add_argument("--photo", default="hopper", choices=photos.NAMES)
    ap.add_argument("--max-angle", type=float, default=40.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--save", action="store_true", help="also time writing the annotated video")
    ap.add_argument("--smooth", action="store_true")
    ap.add_argument("--out", type=Path, default=Path("runs/predict/bench"))
    ap.add_argument("--json", type=Path, help="also write the result here")
    args = ap.parse_args(argv)
    if args.frames < 2:
        print(f"error: --frames {args.frames}: give at least 2", file=sys.stderr)
        return 2
    try:
        result = run(args.model, args.out, args.frames, args.photo, args.max_angle, args.threads, args.save,
                     args.smooth)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(table(result))
    if args.json:
        atomic_write_json(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
