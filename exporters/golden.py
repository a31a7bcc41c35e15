"""Golden files for the Android demo's Kotlin core: test frames, the exact input tensors and what the exported TFLite computes.

Why: the app's pre- and post-processing must provably match the Python side. This module writes, from
the TFLite artifacts of a run (their ``model_meta.json`` and the ``.tflite`` itself), a few frames with a
face box, the crop the app must cut from them, the model input tensor it must build (bit for bit: range,
mean/std, layout and int8 quantization all read from ``model_meta.json``), the raw output the artifact
computes on that tensor (LiteRT interpreter), the dequantized pose, and the pose axes as drawn by
:func:`pipeline.data.visualize.projected_axes`. ``android_demo/core`` checks itself against these files.

Nothing here hard-codes the model's I/O: a re-exported model (moved normalization, another int8 input
quantization) gets new goldens by running this again.

    python -m exporters.golden RUN_DIR OUT_DIR [--formats tflite_fp32 tflite_int8]

RUN_DIR is a run folder (``runs/face_pose``), an export stage folder or one format folder; every
``model_meta.json`` of a TFLite artifact under it is used (the newest per golden name). Files written:
``frames.json`` (shared, deterministic) and ``<format>[_int8io].json`` per artifact. Frames and crops are
base64 RGB bytes (the Kotlin test packs them into ARGB ints, as Bitmap.getPixels gives them); the input
tensor is stored whole (base64, little-endian) for the first case and as a SHA-256 of its bytes for all.
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
from pipeline.data.visualize import AXES_LENGTH_FRACTION
from pipeline.faces import crop as faces_crop
from pipeline.runs import atomic_write_text

log = logging.getLogger(__name__)

GOLDEN_VERSION = 1
FRAMES_FILE = "frames.json"
# How the app turns a detector's face box into the model's square crop: side = scale * max(w, h), centre
# moved down by shift_y * side (the training crops show the whole head with the face a little above the
# centre). model_meta.json may override it with input.crop = {"scale", "shift_y"}.
DEFAULT_CROP = {"scale": 2.0, "shift_y": 0.08}
# Post-processing tolerances the Kotlin tests use (preprocessing is compared bit for bit).
TOLERANCES = {"pose_deg": 1e-4, "axes_px": 1e-6}


@dataclass(frozen=True)
class Case:
    """One test frame: a rendered face of ``pose`` pasted at ``offset`` into a ``size`` frame, with a face ``box``."""

    name: str
    pose: tuple[float, float, float]
    size: tuple[int, int]  # (width, height)
    offset: tuple[int, int]
    box: tuple[float, float, float, float]  # left, top, right, bottom in frame pixels


CASES = (
    Case("frontal_tilt", (20.0, -10.0, 15.0), (96, 80), (16, 8), (30.5, 19.25, 65.5, 55.75)),
    Case("turned_up", (-45.0, 25.0, -5.0), (96, 80), (24, 10), (41.0, 22.0, 72.0, 58.0)),
    Case("edge_clipped", (60.0, 5.0, -30.0), (96, 80), (40, 16), (56.0, 31.5, 89.0, 70.0)),
)


def _b64(a: np.ndarray, dtype: str) -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype=np.dtype(dtype).newbyteorder("<")).tobytes()).decode()


def _sha256(a: np.ndarray) -> str:
    """SHA-256 of the array's little-endian bytes (what the Kotlin core hashes)."""
    return hashlib.sha256(np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")).tobytes()).hexdigest()


def decode(text: str, dtype: str) -> np.ndarray:
    """Inverse of the writer's encoding: base64 little-endian ``dtype`` -> flat array."""
    return np.frombuffer(base64.b64decode(text), dtype=np.dtype(dtype).newbyteorder("<")).astype(dtype)


def crop_square(box: Sequence[float], crop: dict) -> tuple[float, float, float]:
    """(left, top, side) of the square crop around a face box; mirrored by the Kotlin ``FaceCrop``."""
    return faces_crop.crop_square(box, float(crop["scale"]), float(crop["shift_y"]))


# The bilinear resample is the crop spec's (pipeline.faces.crop): one copy of the formulas the Kotlin core mirrors.
crop_resize = faces_crop.crop_resize


def input_tensor(rgb: np.ndarray, meta: dict) -> np.ndarray:
    """The model input for an (H, W, 3) uint8 RGB crop, exactly as ``meta["input"]`` describes it (batch 1)."""
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


def make_frames() -> list[dict]:
    """The shared test frames (deterministic): rendered faces pasted on a gradient, (H, W, 3) uint8 RGB."""
    from pipeline.data.synthetic_faces import SyntheticFacesConfig, render_faces

    cfg = SyntheticFacesConfig()
    faces = render_faces(np.array([c.pose for c in CASES]), seed=20240607, cfg=cfg, threads=1)
    frames = []
    for case, face in zip(CASES, faces, strict=True):
        w, h = case.size
        yy, xx = np.mgrid[0:h, 0:w]
        frame = np.stack([40 + 150 * xx / w, 60 + 120 * yy / h, 200 - 120 * xx / w], -1).astype(np.uint8)
        ox, oy = case.offset
        fh, fw = face.shape[:2]
        frame[oy:oy + fh, ox:ox + fw] = face[:max(0, min(fh, h - oy)), :max(0, min(fw, w - ox))]
        frames.append({"name": case.name, "width": w, "height": h, "pose_rendered": list(case.pose),
                       "box": list(case.box), "rgb": frame})
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


def crop_spec(meta: dict) -> dict:
    return {**DEFAULT_CROP, **(meta["input"].get("crop") or {})}


def golden_for(artifact: Path, frames: list[dict]) -> dict:
    """The golden dict of one artifact over the shared frames."""
    meta = read_meta(artifact.parent / META_FILE)
    _, height, width = (meta["input"]["shape"][i] for i in ((0, 1, 2) if meta["input"]["layout"] == "NHWC"
                                                            else (0, 2, 3)))
    crop = crop_spec(meta)
    out_spec = meta["outputs"][0]
    cases = []
    for i, fr in enumerate(frames):
        rgb = fr["rgb"]
        square = crop_square(fr["box"], crop)
        crop_rgb = crop_resize(rgb, square, width, height)
        tensor = input_tensor(crop_rgb, meta)
        raw = _run(artifact, tensor).reshape(-1)
        pose = dequantize(raw, out_spec)
        center = (square[0] + square[2] / 2.0, square[1] + square[2] / 2.0)
        ypr = [float(pose[out_spec["names"].index(n)]) for n in ("yaw", "pitch", "roll")]
        cases.append({
            "name": fr["name"], "square": list(square),
            "crop_rgb": _b64(crop_rgb.reshape(-1), "uint8"),
            # the full tensor for the first case (readable mismatches), a SHA-256 of its bytes for all
            "input": _b64(tensor.reshape(-1), tensor.dtype.name) if i == 0 else None,
            "input_sha256": _sha256(tensor), "input_dtype": tensor.dtype.name,
            "output_raw": [int(v) if raw.dtype.kind == "i" else float(v) for v in raw],
            "output_dtype": raw.dtype.name,
            "pose": [float(v) for v in pose],
            "axes": axes(ypr, center, AXES_LENGTH_FRACTION * square[2]),
        })
    return {"golden_version": GOLDEN_VERSION, "artifact": artifact.name, "meta": meta, "crop": crop,
            "tolerances": TOLERANCES, "frames_file": FRAMES_FILE, "cases": cases}


def write_goldens(run_dir: Path, out_dir: Path, formats: Sequence[str] | None = None) -> list[Path]:
    """Write ``frames.json`` and one golden per TFLite artifact under ``run_dir``; return the paths."""
    artifacts = find_artifacts(run_dir, formats)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    frames = make_frames()
    shared = {"golden_version": GOLDEN_VERSION,
              "frames": [{**{k: v for k, v in f.items() if k != "rgb"}, "rgb": _b64(f["rgb"].reshape(-1), "uint8")}
                         for f in frames]}
    paths = [out_dir / FRAMES_FILE]
    atomic_write_text(paths[0], json.dumps(shared, indent=1) + "\n")
    for name, artifact in sorted(artifacts.items()):
        path = out_dir / f"{name}.json"
        atomic_write_text(path, json.dumps(golden_for(artifact, frames), indent=1) + "\n")
        log.info("golden %s from %s (%d cases)", path, artifact, len(frames))
        paths.append(path)
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m exporters.golden", description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir", type=Path, help="run, export-stage or format folder holding tflite_*/model_meta.json")
    ap.add_argument("out_dir", type=Path, help="where to write frames.json and <format>.json")
    ap.add_argument("--formats", nargs="*", default=None, help="only these tflite formats (default: all found)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        paths = write_goldens(args.run_dir, args.out_dir, args.formats)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for p in paths:
        print(f"{p} ({p.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
