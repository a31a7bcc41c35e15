"""The real-photo check on a finished run: float student, int8 TFLite and teacher on shipped photos.

Each photo goes through the shipped face detector and the crop spec (pipeline/faces), then through
the label-change tests of benchmarks/photo_check.py: roll slope and R^2 over a +-40 degree
in-plane sweep, yaw / pitch drift, mirror error; per photo and in aggregate, against the targets.

    python -m benchmarks.real_faces runs/face_pose [--json out.json] [--scale S] [--shift-y D]
        [--box-source blazeface_short_range | blazeface_short_range_second_look] [--mirror-average]

Two reference rows: ``ref_eye_line`` reads roll off the detector's own eye keypoints on each crop (no
yaw or pitch): it shows what the sweep and the crops allow a roll estimate that follows the face;
``ref_constant`` reads nothing (zero in every crop), which with eye-line crops passes most photos: the
tests are necessary, not sufficient, and only the control's pose error (renders have labels) tells a
reader from a constant.

The run folder needs complete distill, teacher and export stages (its summary.json names them).
The crop spec is the run's own (``input.crop`` of the int8 TFLite's model_meta.json, which export
writes from the data source's framing); --scale / --shift-y / --box-source override its framing (a run
exported before the detector's second look measures both ways: its own spec, and
``--box-source blazeface_short_range_second_look --scale 1.86 --shift-y -0.021``).
"""

from __future__ import annotations

import argparse
import io
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from benchmarks.photo_check import (
    CONTROL_RENDERS,
    JITTER,
    METRICS,
    REFERENCES,
    TARGETS,
    Predict,
    check,
    constant_reading,
    crops_for,
    eye_line_roll,
    jittered_crops,
    mirror_averaged,
    photo_crops,
    pose_error,
    rendered_photos,
    rendered_poses,
)
from exporters.formats import SHIPPED_FORMAT
from pipeline import contract
from pipeline.faces import photos as photo_set
from pipeline.faces.crop import CropSpec, normalize
from pipeline.faces.detector import DETECTOR_NAME
from pipeline.faces.locate import BOX_SOURCE
from pipeline.predict.model import POSE, open_model
from pipeline.runs import UserError, atomic_write_json


def _order(names: list[str]) -> list[int]:
    missing = [n for n in POSE if n not in names]
    if missing:
        raise ValueError(f"the model's outputs are {names}, without {missing}: this check needs a head-pose run")
    return [names.index(n) for n in POSE]


def torch_predict(model: torch.nn.Module, spec: CropSpec, names: list[str]) -> Predict:
    idx = _order(names)

    @torch.no_grad()
    def predict(crops: np.ndarray) -> np.ndarray:
        return model(torch.from_numpy(normalize(crops, spec))).float().numpy()[:, idx]

    return predict


def models_of(stages: dict[str, Path], framing: dict | None = None) -> tuple[dict[str, Predict], CropSpec]:
    """The three predictors of a run (its complete stage folders by name) and its crop spec: the run's own
    (model_meta.json ``input.crop``) with ``framing`` (e.g. ``{"scale": 1.9}``) put over it."""
    for need in ("distill", "teacher", "export"):
        if need not in stages:
            raise FileNotFoundError(f"the run has no complete {need} stage: run the pipeline through export first")
    int8 = contract.exported_artifacts(stages["export"]).get(SHIPPED_FORMAT)
    if int8 is None:
        raise FileNotFoundError(f"{stages['export']} has no verified {SHIPPED_FORMAT}: add it to export.formats")
    try:  # read through its model_meta.json exactly as `predict` reads it
        shipped = open_model(int8)
    except UserError as exc:
        raise ValueError(str(exc)) from None
    meta = shipped.meta
    # NCHW for the torch models; the shipped artifact reads its own layout from its meta
    spec = replace(CropSpec.from_meta(meta), **(framing or {}), layout="NCHW")
    names = list(meta["outputs"][0]["names"])
    predicts = {"student_float": torch_predict(contract.load_student(stages["distill"]), spec, names),
                # one crop at a time: the artifact has a fixed batch of 1
                SHIPPED_FORMAT: lambda crops: np.stack([shipped.predict(c) for c in crops]),
                "teacher": torch_predict(contract.load_teacher(stages["teacher"]), spec, names),
                # roll read off the detector's eye keypoints: what a roll that follows the face scores
                "ref_eye_line": eye_line_roll,
                # reads nothing: what the label-change tests grant a model that does not look
                "ref_constant": constant_reading}
    return predicts, spec


def grid_png(result: dict, crops: dict[str, dict], model: str = SHIPPED_FORMAT, cell: int = 192) -> bytes:
    """The photos' crops side by side, each with ``model``'s predicted axes drawn (x red, y green, z
    blue: the convention of pipeline/data/visualize.py) and its roll slope / mirror error below."""
    from PIL import Image, ImageDraw

    from pipeline.data.visualize import draw_pose_axes

    tiles = []
    for name, c in crops.items():
        m = result["models"][model]["photos"][name]
        tile = Image.new("RGB", (cell, cell + 30), "white")
        if "error" not in c:
            big = np.asarray(Image.fromarray(c["shown"]).resize((cell, cell), Image.BILINEAR))
            tile.paste(Image.fromarray(draw_pose_axes(big, np.nan_to_num(np.asarray(m["pose"], float)), width=3)))
        text = (f"{name}: {m['error']}" if "error" in m else
                f"{name}  slope {m['roll_slope']}  mirror {m['mirror_error']}")
        ImageDraw.Draw(tile).text((4, cell + 8), text[:40], fill="black")
        tiles.append(np.asarray(tile))
    buf = io.BytesIO()
    Image.fromarray(np.concatenate(tiles, 1)).save(buf, format="PNG")
    return buf.getvalue()


def run_check(stages: dict[str, Path]) -> tuple[dict, bytes]:
    """The check on a run's stage folders: (result, PNG of the photos under the shipped int8 model)."""
    predicts, spec = models_of(stages)
    result, crops = check_with_control(predicts, spec)
    return result, grid_png(result, crops)


def check_with_control(predicts: dict[str, Predict], spec: CropSpec) -> tuple[dict, dict[str, dict]]:
    """The check on the shipped photos with its control on renders, and the photos' crops."""
    crops = photo_crops(spec)
    result = check(predicts, spec, crops=crops)
    result["control"] = control(predicts, spec)
    return result, crops


def control(predicts: dict[str, Predict], spec: CropSpec) -> dict:
    """The same check on rendered faces (``photo_check.rendered_photos``), where the models are in their own
    domain: ``{"what", "models": {model: {"photos", "aggregate"}}}``."""
    crops = {name: crops_for(image, spec) for name, image in rendered_photos().items()}
    models = check(predicts, spec, crops=crops)["models"]
    poses = rendered_poses()
    for model, r in models.items():
        if model != "ref_eye_line":  # it reads roll only; the constant's error is the poses' own spread
            r["aggregate"]["pose_error"] = pose_error(r["photos"], poses)
    return {"what": f"{CONTROL_RENDERS} near-frontal faces of the training renderer, each in a larger frame, "
                    "through the same detector, crop spec and label-change tests",
            "models": models}


def steadiness(predicts: dict[str, Predict], spec: CropSpec) -> dict[str, dict[str, np.ndarray]]:
    """How far each model's reading of one face moves as its box moves and scales by ``JITTER`` of its side
    (``photo_check.jittered_crops``): per model and face set (the shipped photos, the control renders), the
    range (max - min) of yaw, pitch and roll over the 27 crops of each face, (faces, 3) degrees."""
    sets = {"photos": {n: photo_set.load(n) for n in photo_set.NAMES}, "renders": rendered_photos()}
    crops = {k: [c for c in (jittered_crops(im, spec) for im in images.values()) if c is not None]
             for k, images in sets.items()}
    return {model: {k: np.array([np.ptp(np.asarray(predict(c), np.float64), 0) for c in faces])
                    for k, faces in crops.items()}
            for model, predict in predicts.items() if model not in REFERENCES}  # they do not read the pixels


def steadiness_table(ranges: dict[str, dict[str, np.ndarray]]) -> str:
    """``steadiness`` per model and face set: the median and largest range over the faces."""
    lines = [f"reading range over 27 crops, box moved and scaled by {JITTER:.0%} of its side (yaw / pitch / roll)",
             f"{'model':<14} {'faces':<8} {'median':>20} {'largest':>20}"]
    for model, sets in ranges.items():
        for k, r in sets.items():
            med, top = (" / ".join(f"{v:.1f}" for v in row) for row in (np.median(r, 0), r.max(0)))
            lines.append(f"{model:<14} {k:<8} {med:>20} {top:>20}")
    return "\n".join(lines)


def headline(result: dict) -> dict:
    """summary.json's figures: per model, whether every photo passes and the worst value of each metric."""
    return {model: {"passes_all": r["aggregate"]["passes_all"],
                    **{k: r["aggregate"][k]["worst"] for k in METRICS if k in r["aggregate"]}}
            for model, r in result["models"].items()}


def table(result: dict) -> str:
    """Per model and photo: the metrics, then the aggregate's worst values; then the control's worst values
    and how many renders pass, per model."""
    cols = ("angles",) + METRICS + ("pass",)
    lines = [f"{'model':<14} {'photo':<15} " + " ".join(f"{c:>12}" for c in cols)]
    for model, r in result["models"].items():
        for name, m in r["photos"].items():
            if "error" in m:
                lines.append(f"{model:<14} {name:<15} {m['error']}")
                continue
            vals = ([m["angles_detected"]] + [m[k] for k in METRICS]
                    + [contract.photo_verdict(m["passes"], m["yaw_drift"] is None)])
            lines.append(f"{model:<14} {name:<15} " + " ".join(f"{'-' if v is None else v:>12}" for v in vals))
        agg = r["aggregate"]
        worst = [f"{agg[k]['worst']:>12}" if k in agg else f"{'-':>12}" for k in METRICS]
        lines.append(f"{model:<14} {'WORST':<15} {agg['scored']:>12} " + " ".join(worst)
                     + f" {contract.photo_verdict(agg['passes_all'], 'yaw_drift' not in agg):>12}")
    if "control" in result:
        lines.append("control, rendered faces (the models' own domain):")
        for model, r in result["control"]["models"].items():
            agg = r["aggregate"]
            worst = [f"{agg[k]['worst']:>12}" if k in agg else f"{'-':>12}" for k in METRICS]
            verdict = "-" if "yaw_drift" not in agg else f"{agg['passing']} of {agg['photos']}"
            err = agg.get("pose_error")
            lines.append(f"{model:<14} {'WORST':<15} {agg['scored']:>12} " + " ".join(worst) + f" {verdict:>12}"
                         + (f"  pose error mean {err['mean']} worst {err['worst']}" if err else ""))
    lines.append(f"targets: roll slope {TARGETS['roll_slope'][0]}-{TARGETS['roll_slope'][1]}, R^2 >= "
                 f"{TARGETS['roll_r2_min']}, yaw/pitch drift <= {TARGETS['drift_max']}, mirror error <= "
                 f"{TARGETS['mirror_error_max']} (degrees), on every photo")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--json", type=Path, help="also write the full result here")
    ap.add_argument("--scale", type=float, help="crop side over the detector box's longer side")
    ap.add_argument("--shift-y", type=float, help="crop centre moved down by this fraction of the crop side")
    ap.add_argument("--box-source", choices=(BOX_SOURCE, DETECTOR_NAME),
                    help="how faces are found: with the detector's second, levelled look, or one detection")
    ap.add_argument("--steadiness", action="store_true", help="also print how far each model's reading moves as "
                                                               "the box moves and scales by 2 %% of its side")
    ap.add_argument("--mirror-average", action="store_true",
                    help="average each model's reading of a crop with its mirrored reading of the crop mirrored")
    args = ap.parse_args(argv)
    try:
        framing = {k: v for k, v in (("scale", args.scale), ("shift_y", args.shift_y),
                                     ("box_source", args.box_source)) if v is not None}
        predicts, spec = models_of(contract.Run.open(args.run_dir).dirs, framing)
    except (FileNotFoundError, ValueError, contract.ArtifactError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.mirror_average:  # the eye-line reference reads keypoints, not pixels: it stays as it is
        predicts = {k: p if k in REFERENCES else mirror_averaged(p) for k, p in predicts.items()}
    result, _ = check_with_control(predicts, spec)
    result.update(run=str(args.run_dir), mirror_average=args.mirror_average)
    print(table(result))
    if args.steadiness:
        print(steadiness_table(steadiness(predicts, spec)))
    if args.json:
        atomic_write_json(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
