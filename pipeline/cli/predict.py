"""``predict SOURCE [--model ARTIFACT|RUN] [--out DIR] [--save] [--smooth] [--recursive]``: run an exported
pose model on every face of one's own images and video; write ``predictions.csv`` / ``predictions.json``
(and with ``--save`` annotated images and video). Exit 0 when every input was read (frames without a
face are results, not errors), 1 when some input was unreadable or of an unsupported format (its row
says which; the rest is written), 2 for a bad --model or a SOURCE that names nothing."""

from __future__ import annotations

import sys

from pipeline import api
from pipeline.cli.common import EXIT_STAGE_FAILED
from pipeline.faces.detector import MIN_SCORE
from pipeline.predict.model import DEFAULT_MODEL
from pipeline.schema import ConfigError


def register(sub) -> None:
    p = sub.add_parser("predict", help="pose of every face in images / video: python -m pipeline predict "
                       "photos/ --save")
    p.add_argument("source", help="an image, a video, a folder or a quoted glob pattern ('clips/*.mp4')")
    p.add_argument("--model", default=str(DEFAULT_MODEL),
                   help="an exported artifact (.tflite, .onnx, .pte; .mlpackage on macOS), its export format "
                        "folder, or an export stage or run folder, whose shipped int8 TFLite is used (default: "
                        f"{DEFAULT_MODEL})")
    p.add_argument("--out", help="output folder (default: runs/predict/<source name>)")
    p.add_argument("--save", action="store_true", help="also write annotated images / video (box and pose "
                   "axes) under OUT/annotated/")
    p.add_argument("--smooth", action="store_true", help="video: filter each face's angles over time as the "
                   "app does (the model meta's smoothing constants); adds *_smoothed columns")
    p.add_argument("-r", "--recursive", action="store_true", help="a folder SOURCE: its subfolders too "
                   "(default: only the files directly in it)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads of the model runtime (default 1)")
    p.add_argument("--min-score", type=float, default=MIN_SCORE,
                   help=f"face detector score threshold (default {MIN_SCORE})")
    p.set_defaults(handler=handle)


def summary(result) -> str:
    c, t = result.counts, result.timing
    lines = [f"{c['files']} file(s): {c['images']} image(s), {c['videos']} video(s), {c['frames']} frame(s), "
             f"{c['faces']} face(s); {c['no_face']} frame(s) without a face, {c['unreadable']} unreadable, "
             f"{c['unsupported']} unsupported"]
    stages = ", ".join(f"{k[:-3]} {v['median']:.2f} ms" for k, v in t.items() if isinstance(v, dict))
    if stages:
        lines.append(f"median per frame / face: {stages}; {t['frames_per_s']} frames/s end to end")
    lines.append(f"model: {result.model['path']} ({result.model['runtime']})")
    lines += [f"wrote {v}" for v in result.files.values()]
    return "\n".join(lines)


def handle(args) -> int:
    if args.threads < 1:
        raise ConfigError([f"--threads {args.threads}: give a whole number >= 1"])
    if not 0.0 < args.min_score < 1.0:
        raise ConfigError([f"--min-score {args.min_score}: give a detector score in (0, 1), e.g. {MIN_SCORE}"])
    result = api.predict(args.source, model=args.model, out=args.out, save=args.save, smooth=args.smooth,
                         recursive=args.recursive, threads=args.threads, min_score=args.min_score)
    print(summary(result))
    if result.skipped:
        print(f"error: {result.skipped} input(s) skipped (unreadable or unsupported): see the error column of "
              f"{result.files['csv']}", file=sys.stderr)
        return EXIT_STAGE_FAILED
    return 0
