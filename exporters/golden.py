"""Golden files for the Android demo's Kotlin core, from a trained student: frames with a face box, the
exact crop and input tensor, what the exported TFLite computes, and the pose the face really has.

Why: the app's pre- and post-processing must provably match the Python side, and the app's path must
give the right pose. This module writes, from the TFLite artifacts of a finished run (their
``model_meta.json``, the ``.tflite`` itself and the run's measured test errors):

- frames: faces rendered by ``pipeline.data.synthetic_faces`` at known poses (the box around each is
  the one the model's crop spec turns back into the rendered square, the eyes where the render put
  them), and real photos (``pipeline.faces.photos``) downscaled to a phone-camera face size, with the
  shipped BlazeFace detector's box and eye keypoints as the model's ``box_source`` draws them, and its
  second look in pieces (``second_look_record``: first detection, region, patch hashes, the detection on
  the patch, the face mapped back) for the Kotlin core's ``SecondLook`` to recompute;
- per artifact: the crop both sides cut (``pipeline.faces.crop`` with ``CropSpec.from_meta``: the spec
  is read from model_meta.json on both sides, never written here), the input tensor (a SHA-256 of its
  bytes), the crop's turn (a spec with ``rotate: eye_line`` turns it with the eyes), the raw output the
  LiteRT interpreter computes on it, the dequantized pose, that pose turned back into the frame, its axes, and
  the tolerances: one output quantization step for decoding, and for the known pose a multiple of the
  run's worst per-angle test MAE (``POSE_TOLERANCE_MAE_MULTIPLE``).

``pose_failures`` is the pose assertion the Kotlin ``GoldenTest`` makes, written once more here so the
writer can report and tests/test_golden.py can show that a constant model fails it.

    python -m exporters.golden RUN_DIR OUT_DIR [--formats tflite_fp32 tflite_int8]

RUN_DIR is a finished run folder (``runs/golden_face_pose``); every exported TFLite artifact of its
export stages is used (the newest per golden name). ``android_demo/golden/regenerate.sh`` trains the
small student and runs this. Frames and crops are base64 RGB bytes (the Kotlin test packs them into
ARGB ints, as Bitmap.getPixels gives them).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from exporters.artifact_io import quantize_np
from exporters.metadata import META_FILE, read_meta
from pipeline.contract import Run
from pipeline.data.transforms import frame_pose
from pipeline.data.visualize import AXES_LENGTH_FRACTION
from pipeline.faces import crop as faces_crop
from pipeline.runs import ArtifactError, atomic_write_text

log = logging.getLogger(__name__)

GOLDEN_VERSION = 4
FRAMES_FILE = "frames.json"
# Post-processing tolerances the Kotlin tests use (preprocessing is compared bit for bit): decoding a
# float output, and the axes drawn from a pose.
FLOAT_POSE_DEG = 1e-4
AXES_PX = 1e-6
# Known-pose tolerance per angle = this x the run's worst test MAE of that angle: generous, because a
# single frame's error is often a few times the mean. GoldenTest also caps it (MAX_POSE_TOLERANCE_DEG):
# the rendered yaws span -60..55, so any constant yaw is at least 57.5 degrees off one case, beyond the cap.
POSE_TOLERANCE_MAE_MULTIPLE = 2.5
MAX_POSE_TOLERANCE_DEG = 40.0
RENDER_SEED = 20240607
RENDER_SIDE = 80  # rendered square in frame pixels: the app downsamples it to the model's side
PHOTO_SIDE = 160  # real photos are downscaled to this longer side (a face of ~40-70 px, as a phone sees it)
# The Android app's second-look patch side (SecondLook.APP_PATCH_SIDE in the Kotlin core): the goldens
# hash the photos' patches at it too, besides the detector's 128 px the Python side reads.
APP_PATCH_SIDE = 256


@dataclass(frozen=True)
class Case:
    """One rendered test frame: a face of known ``pose`` rendered as a RENDER_SIDE square at ``offset`` of a
    ``size`` frame (partly outside the frame when the offset says so: the edge padding is exercised)."""

    name: str
    pose: tuple[float, float, float]
    size: tuple[int, int]  # (width, height)
    offset: tuple[int, int]


# Yaw spans -60..55 so that any constant yaw misses one case by more than MAX_POSE_TOLERANCE_DEG (57.5 > 40).
CASES = (
    Case("left_up", (-60.0, 20.0, -15.0), (96, 88), (8, 4)),
    Case("right_down", (55.0, -15.0, 5.0), (96, 88), (10, 6)),
    Case("frontal", (0.0, 0.0, 0.0), (96, 88), (6, 2)),
    Case("tilted", (15.0, 10.0, -30.0), (96, 88), (12, 5)),
    Case("clipped_top", (-30.0, -15.0, 10.0), (96, 88), (12, -4)),
)
PHOTOS = ("hopper", "astronaut")


def _b64(a: np.ndarray, dtype: str) -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype=np.dtype(dtype).newbyteorder("<")).tobytes()).decode()


def _sha256(a: np.ndarray) -> str:
    """SHA-256 of the array's little-endian bytes (what the Kotlin core hashes)."""
    return hashlib.sha256(np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")).tobytes()).hexdigest()


def decode(text: str, dtype: str) -> np.ndarray:
    """Inverse of the writer's encoding: base64 little-endian ``dtype`` -> flat array."""
    return np.frombuffer(base64.b64decode(text), dtype=np.dtype(dtype).newbyteorder("<")).astype(dtype)


def input_tensor(rgb: np.ndarray, meta: dict) -> np.ndarray:
    """The model input for an (H, W, 3) uint8 RGB crop, exactly as ``meta["input"]`` describes it (batch 1),
    in float64 up to the final cast or quantization, as the Kotlin ``TensorBuilder`` does it."""
    spec = meta["input"]
    if spec.get("color") not in (None, "RGB"):
        raise ValueError(f"input color {spec.get('color')!r} is not supported; expected RGB")
    lo, hi = spec.get("range") or (0.0, 1.0)
    mean = np.asarray(spec["mean"], np.float64)
    std = np.asarray(spec["std"], np.float64)
    x = float(lo) + (rgb.astype(np.float64) / 255.0) * (float(hi) - float(lo))
    x = (x - mean) / std
    if spec["layout"] == "NCHW":
        x = x.transpose(2, 0, 1)
    elif spec["layout"] != "NHWC":
        raise ValueError(f"input layout {spec['layout']!r} is not an image layout (NHWC or NCHW)")
    if spec["dtype"] == "float32":
        return x.astype(np.float32)[None]
    if spec["dtype"] != "int8" or not spec.get("quantization"):
        raise ValueError(f"input dtype {spec['dtype']!r} without quantization is not supported")
    q = spec["quantization"]
    return quantize_np(x, float(q["scale"]), int(q["zero_point"]), "int8")[None]


def dequantize(raw: np.ndarray, out_spec: dict) -> np.ndarray:
    q = out_spec.get("quantization")
    if not q:
        return raw.astype(np.float64)
    return (raw.astype(np.float64) - int(q["zero_point"])) * float(q["scale"])


def axes(pose_deg: Sequence[float], center: tuple[float, float], length: float) -> dict:
    """End points of the head's x, y, z axes and the order they are drawn in (farthest first)."""
    from pipeline.data.synthetic_faces import rotation_matrices
    from pipeline.data.visualize import projected_axes

    dirs = projected_axes(np.asarray(pose_deg, np.float64))
    depth = rotation_matrices(np.asarray(pose_deg, np.float64).reshape(1, 3))[0][2]
    ends = [[center[0] + length * dirs[k, 0], center[1] + length * dirs[k, 1]] for k in range(3)]
    return {"center": list(center), "length": length, "ends": ends,
            "draw_order": [int(k) for k in np.argsort(depth, kind="stable")]}


def box_for_square(left: float, top: float, side: float, spec: faces_crop.CropSpec) -> list[float]:
    """The square face box whose crop (``crop_square`` with the spec's scale and shift) is this square."""
    box_side = side / spec.scale
    cx, cy = left + side / 2.0, top + side / 2.0 - spec.shift_y * side
    return [cx - box_side / 2.0, cy - box_side / 2.0, cx + box_side / 2.0, cy + box_side / 2.0]


def rendered_frames(spec: faces_crop.CropSpec) -> list[dict]:
    """CASES rendered (deterministic) on a gradient, each with the box the spec maps back onto its face."""
    from dataclasses import replace

    from pipeline.data.synthetic_faces import (
        SyntheticFacesConfig,
        draw_appearance,
        head_landmarks,
        project_points,
        render_faces,
    )

    cfg = replace(SyntheticFacesConfig(), image_size=RENDER_SIDE)
    poses = np.array([c.pose for c in CASES])
    faces = render_faces(poses, seed=RENDER_SEED, cfg=cfg, threads=1)
    # the eye centres where the render put them (the landmarks a detector gives: subject's right, left)
    app = draw_appearance(len(CASES), RENDER_SEED, cfg)
    marks = head_landmarks(app)
    eyes = project_points(np.stack([marks["eye_right"], marks["eye_left"]], 1), poses, app, RENDER_SIDE)
    frames = []
    for case, face, kp in zip(CASES, faces, eyes, strict=True):
        w, h = case.size
        yy, xx = np.mgrid[0:h, 0:w]
        frame = np.stack([40 + 150 * xx / w, 60 + 120 * yy / h, 200 - 120 * xx / w], -1).astype(np.uint8)
        ox, oy = case.offset
        fy0, fx0 = max(0, -oy), max(0, -ox)  # the part of the render inside the frame
        fy1, fx1 = min(RENDER_SIDE, h - oy), min(RENDER_SIDE, w - ox)
        frame[oy + fy0:oy + fy1, ox + fx0:ox + fx1] = face[fy0:fy1, fx0:fx1]
        frames.append({"name": case.name, "kind": "rendered", "width": w, "height": h, "pose": list(case.pose),
                       "box": box_for_square(float(ox), float(oy), float(RENDER_SIDE), spec),
                       "box_from": "the crop spec, inverted on the rendered square",
                       "eyes": (kp + np.array([ox, oy], np.float64)).tolist(), "rgb": frame})
    return frames


def _face(det) -> dict:
    """A detection as the goldens store a face: box (left, top, right, bottom) and the two eye keypoints."""
    return {"box": [float(v) for v in det.box], "eyes": np.asarray(det.keypoints[:2], np.float64).tolist()}


def second_look_record(rgb: np.ndarray, first) -> tuple[dict, object]:
    """``pipeline.faces.locate.second_look`` of ``first`` (a BlazeFace detection on ``rgb``) in the pieces
    GoldenTest recomputes in Kotlin, and the face it gives: the first detection, its region (square,
    turn, pivot), the SHA-256 of the patch's RGB bytes at the detector's side and at the app's
    (``APP_PATCH_SIDE``), the detection nearest the patch centre in patch pixels (null: none, the first
    detection stands) and that detection mapped back into the frame."""
    from pipeline.faces import locate
    from pipeline.faces.detector import INPUT_SIZE, detect

    reg = locate.region(first)
    found = detect(locate.patch(rgb, reg))
    again = locate.nearest(found) if found else None
    face = first if again is None else locate.from_patch(again, reg)
    return {"first": _face(first),
            "region": {"square": list(reg.square), "turn": list(reg.turn), "pivot": list(reg.pivot)},
            "patch_side": INPUT_SIZE,
            "patch_sha256": {str(s): _sha256(locate.patch(rgb, reg, s)) for s in (INPUT_SIZE, APP_PATCH_SIDE)},
            "again": None if again is None else _face(again), "face": _face(face)}, face


def photo_frames(spec: faces_crop.CropSpec) -> list[dict]:
    """PHOTOS downscaled to PHOTO_SIDE (whole: the second look's turned region reaches most of it) with
    the detector's best face as the model's ``box_source`` frames it, and that face's second look."""
    from PIL import Image

    from pipeline.faces import photos
    from pipeline.faces.detector import detect
    from pipeline.faces.locate import BOX_SOURCE, locator

    locator(spec.box_source)  # a box source this package cannot draw is refused with the fix
    frames = []
    for name in PHOTOS:
        full = photos.load(name)
        k = PHOTO_SIDE / max(full.shape[:2])
        size = (round(full.shape[1] * k), round(full.shape[0] * k))
        rgb = np.asarray(Image.fromarray(full).resize(size, Image.Resampling.BILINEAR, reducing_gap=None))
        found = detect(rgb)
        if not found:
            raise ValueError(f"the detector finds no face in photo {name!r} at {size}; raise PHOTO_SIDE")
        look, face = second_look_record(rgb, found[0])
        best = face if spec.box_source == BOX_SOURCE else found[0]
        frames.append({"name": f"photo_{name}", "kind": "photo", "width": size[0], "height": size[1],
                       "pose": None, **_face(best), "box_from": f"detector {spec.box_source}, score {best.score:.3f}",
                       "second_look": look, "rgb": rgb})
    return frames


def find_artifacts(run_dir: Path, formats: Sequence[str] | None = None) -> dict[str, Path]:
    """Golden name -> TFLite artifact path, for every TFLite model_meta.json under ``run_dir`` (newest wins)."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise FileNotFoundError(f"{run_dir} does not exist; pass a run folder written by `python -m pipeline run`")
    found: dict[str, Path] = {}
    if (run_dir / META_FILE).exists():  # a format folder
        metas = [run_dir / META_FILE]
    elif any(run_dir.glob("export-*")):  # a run folder: the student's exports only (the benchmark stage
        metas = list(run_dir.glob(f"export-*/*/{META_FILE}"))  # also holds the teacher's)
    else:  # an export-stage folder
        metas = list(run_dir.glob(f"*/{META_FILE}"))
    for meta_path in sorted(metas, key=lambda p: p.stat().st_mtime):
        meta = read_meta(meta_path)
        fmt = meta.get("format", "")
        if not fmt.startswith("tflite") or (formats and fmt not in formats):
            continue
        artifact = meta_path.parent / f"{fmt}.tflite"
        if not artifact.exists():
            continue
        name = fmt + ("_int8io" if meta["input"]["dtype"] == "int8" else "")
        if name in found:
            log.info("%s: %s replaces the older %s", name, artifact, found[name])
        found[name] = artifact
    if not found:
        raise FileNotFoundError(f"no exported TFLite artifact (tflite_*/{META_FILE}) under {run_dir}; "
                                "run the export stage with a tflite format first")
    return found


def run_test_mae(run_dir: Path) -> dict[str, float]:
    """Per-angle test MAE of the run's student: the worst of the float student and its int8 version
    (the goldens hold both, one tolerance serves them all)."""
    try:
        run = Run.open(Path(run_dir))
    except ArtifactError as exc:
        raise ValueError(f"{exc}; the pose tolerance comes from the run's test MAE (or pass --mae)") from exc
    per: list[dict[str, float]] = []
    if (d := run.metrics("distill")) is not None:
        per.append(d.test_mae_per_output)
    if (q := run.metrics("qat")) is not None:
        per += [q.test_mae_per_output, q.float_test_mae_per_output]
    if not per:
        raise ValueError(f"{run_dir}: no distill or qat stage finished, so there is no trained student to test")
    return {n: max(float(p[n]) for p in per) for n in ("yaw", "pitch", "roll")}


def _run(path: Path, tensor: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path), num_threads=1)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    if list(inp["shape"]) != list(tensor.shape) or np.dtype(inp["dtype"]) != tensor.dtype:
        raise ValueError(f"{path.name} takes {np.dtype(inp['dtype']).name}{list(inp['shape'])} but its "
                         f"model_meta.json describes {tensor.dtype}{list(tensor.shape)}; re-export it")
    interp.set_tensor(inp["index"], tensor)
    interp.invoke()
    return interp.get_tensor(out["index"]).copy()


def tolerances(meta: dict, test_mae: dict[str, float]) -> dict:
    """Decode tolerance (one output quantization step, or float rounding), known-pose tolerance per angle."""
    q = meta["outputs"][0].get("quantization")
    return {"decode_deg": float(q["scale"]) if q else FLOAT_POSE_DEG, "axes_px": AXES_PX,
            "test_mae_deg": test_mae, "pose_mae_multiple": POSE_TOLERANCE_MAE_MULTIPLE,
            "pose_deg": {n: POSE_TOLERANCE_MAE_MULTIPLE * float(v) for n, v in test_mae.items()}}


def golden_for(artifact: Path, frames: list[dict], test_mae: dict[str, float]) -> dict:
    """The golden dict of one artifact over the shared frames."""
    meta = read_meta(artifact.parent / META_FILE)
    spec = faces_crop.CropSpec.from_meta(meta)
    out_spec = meta["outputs"][0]
    cases = []
    for i, fr in enumerate(frames):
        square = faces_crop.crop_square(fr["box"], spec.scale, spec.shift_y)
        eyes = np.asarray(fr["eyes"], np.float64)
        crop_rgb = faces_crop.crop_pixels(fr["rgb"], fr["box"], spec, eyes)
        turn = faces_crop.crop_turn(spec, eyes)
        tensor = input_tensor(crop_rgb, meta)
        raw = _run(artifact, tensor).reshape(-1)
        pose = dequantize(raw, out_spec)
        center = (square[0] + square[2] / 2.0, square[1] + square[2] / 2.0)
        ypr = [float(pose[out_spec["names"].index(n)]) for n in ("yaw", "pitch", "roll")]
        in_frame = frame_pose(np.array(ypr), faces_crop.crop_angle(spec, eyes))
        cases.append({
            "name": fr["name"], "square": list(square),
            # the whole crop for the first case (a readable first mismatch), a SHA-256 of its bytes for all
            "crop_rgb": _b64(crop_rgb.reshape(-1), "uint8") if i == 0 else None,
            "crop_sha256": _sha256(crop_rgb), "input_sha256": _sha256(tensor), "input_dtype": tensor.dtype.name,
            "output_raw": [int(v) if raw.dtype.kind == "i" else float(v) for v in raw],
            "output_dtype": raw.dtype.name,
            "pose": [float(v) for v in pose],
            # the crop's turn (cos, sin; null: none) and the pose turned back into the frame (yaw, pitch, roll)
            "turn": None if turn is None else [float(v) for v in turn],
            "pose_in_frame": [float(v) for v in in_frame],
            "axes": axes([float(v) for v in in_frame], center, AXES_LENGTH_FRACTION * square[2]),
        })
    return {"golden_version": GOLDEN_VERSION, "artifact": artifact.name, "meta": meta,
            "tolerances": tolerances(meta, test_mae), "frames_file": FRAMES_FILE, "cases": cases}


def pose_failures(golden: dict, frames: list[dict]) -> list[str]:
    """What GoldenTest's pose assertion reports, one line per failure (empty: the model passes): every
    known pose within the golden's per-angle tolerance, that tolerance at most MAX_POSE_TOLERANCE_DEG,
    and the predicted yaw spread at least half the known one (a model that ignores its input cannot)."""
    tol = golden["tolerances"]["pose_deg"]
    bad = [f"{n}: tolerance {tol[n]:.1f} deg exceeds {MAX_POSE_TOLERANCE_DEG}; train the golden model longer"
           for n in ("yaw", "pitch", "roll") if tol[n] > MAX_POSE_TOLERANCE_DEG]
    known, got = [], []
    for fr, case in zip(frames, golden["cases"], strict=True):
        if fr["pose"] is None:
            continue
        pred = case["pose_in_frame"]
        known.append(fr["pose"][0])
        got.append(pred[0])
        for k, n in enumerate(("yaw", "pitch", "roll")):
            if abs(pred[k] - fr["pose"][k]) > tol[n]:
                bad.append(f"{case['name']} {n}: {pred[k]:.1f} vs known {fr['pose'][k]:.1f} (tolerance {tol[n]:.1f})")
    if max(got) - min(got) < 0.5 * (max(known) - min(known)):
        bad.append(f"yaw spread {max(got) - min(got):.1f} deg is under half the known {max(known) - min(known):.1f}")
    return bad


def write_goldens(run_dir: Path, out_dir: Path, formats: Sequence[str] | None = None,
                  test_mae: dict[str, float] | None = None) -> list[Path]:
    """Write ``frames.json`` and one golden per TFLite artifact under ``run_dir``; return the paths.
    ``test_mae`` (per angle) defaults to the run's own (``run_test_mae``)."""
    artifacts = find_artifacts(run_dir, formats)
    test_mae = test_mae or run_test_mae(run_dir)
    specs = {name: faces_crop.CropSpec.from_meta(read_meta(a.parent / META_FILE)) for name, a in artifacts.items()}
    spec = next(iter(specs.values()))
    if any(s.framing() != spec.framing() for s in specs.values()):
        raise ValueError(f"the artifacts disagree on the crop framing {[s.framing() for s in specs.values()]}; "
                         "write goldens from one run")
    frames = rendered_frames(spec) + photo_frames(spec)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    shared = {"golden_version": GOLDEN_VERSION,
              "frames": [{**{k: v for k, v in f.items() if k != "rgb"}, "rgb": _b64(f["rgb"].reshape(-1), "uint8")}
                         for f in frames]}
    paths = [out_dir / FRAMES_FILE]
    atomic_write_text(paths[0], json.dumps(shared, indent=1) + "\n")
    for name, artifact in sorted(artifacts.items()):
        g = golden_for(artifact, frames, test_mae)
        path = out_dir / f"{name}.json"
        atomic_write_text(path, json.dumps(g, indent=1) + "\n")
        failures = pose_failures(g, frames)
        log.info("golden %s from %s (%d cases)%s", path, artifact, len(frames),
                 "".join(f"\n  FAILS: {f}" for f in failures) or ": the known poses pass")
        paths.append(path)
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m exporters.golden", description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir", type=Path, help="run, export-stage or format folder holding tflite_*/model_meta.json")
    ap.add_argument("out_dir", type=Path, help="where to write frames.json and <format>.json")
    ap.add_argument("--formats", nargs="*", default=None, help="only these tflite formats (default: all found)")
    ap.add_argument("--mae", type=float, nargs=3, metavar=("YAW", "PITCH", "ROLL"),
                    help="test MAE per angle in degrees (default: the run's own, from its distill and qat stages)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        mae = dict(zip(("yaw", "pitch", "roll"), args.mae, strict=True)) if args.mae else None
        paths = write_goldens(args.run_dir, args.out_dir, args.formats, mae)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for p in paths:
        print(f"{p} ({p.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
