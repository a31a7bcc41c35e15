"""The real-photo check on a finished run: float student, int8 TFLite and teacher on shipped photos.

Each photo goes through the shipped face detector and the crop spec (pipeline/faces), then through
the label-change tests of pipeline/faces/photo_check.py: roll slope and R^2 over a +-40 degree
in-plane sweep, yaw / pitch drift, mirror error; per photo and in aggregate, against the targets.

    python -m benchmarks.real_faces runs/face_pose [--json out.json] [--scale S] [--shift-y D]

A reference row, ``ref_eye_line``, reads roll off the detector's own eye keypoints on each crop (no
yaw or pitch): it shows what the sweep and the crops allow a roll estimate that follows the face.

The run folder needs complete distill, teacher and export stages (its summary.json names them).
The crop spec is the run's own (``input.crop`` of the int8 TFLite's model_meta.json, which export
writes from the data source's framing); --scale / --shift-y override its framing.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from exporters.formats import SHIPPED_FORMAT
from pipeline import contract
from pipeline.faces.crop import CropSpec, normalize
from pipeline.faces.photo_check import METRICS, TARGETS, Predict, check, eye_line_roll
from pipeline.runs import atomic_write_json

POSE = ("yaw", "pitch", "roll")


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


def tflite_predict(path: Path, meta: dict, spec: CropSpec) -> Predict:
    from exporters.artifact_io import runtime_inputs, runtime_outputs
    from exporters.runtimes import open_runtime

    session = open_runtime(SHIPPED_FORMAT, path, 1)
    idx = _order(list(meta["outputs"][0]["names"]))
    nchw = replace(spec, layout="NCHW")  # runtime_inputs lays NCHW out as the artifact wants

    def predict(crops: np.ndarray) -> np.ndarray:
        # one crop at a time: the artifact has a fixed batch of 1
        return np.concatenate([runtime_outputs(session.run(runtime_inputs(normalize(c, nchw), meta)), meta)
                               for c in crops])[:, idx]

    return predict


def models_of(run_dir: Path, spec: CropSpec | None = None) -> tuple[dict[str, Predict], CropSpec]:
    """The three predictors of a run and the crop spec sized to its input."""
    stages = contract.Run.open(run_dir).dirs
    for need in ("distill", "teacher", "export"):
        if need not in stages:
            raise FileNotFoundError(f"{run_dir} has no {need} stage: run the pipeline through export first")
    int8 = contract.exported_artifacts(stages["export"]).get(SHIPPED_FORMAT)
    if int8 is None:
        raise FileNotFoundError(f"{stages['export']} has no verified {SHIPPED_FORMAT}: add it to export.formats")
    meta = json.loads((int8.parent / "model_meta.json").read_text())
    # the run's own framing (model_meta.json input.crop); the tensor half is NCHW for the torch models
    own = replace(CropSpec.from_meta(meta), layout="NCHW")
    spec = own if spec is None else replace(own, scale=spec.scale, shift_y=spec.shift_y)
    names = list(meta["outputs"][0]["names"])
    predicts = {"student_float": torch_predict(contract.load_student(stages["distill"]), spec, names),
                SHIPPED_FORMAT: tflite_predict(int8, meta, spec),
                "teacher": torch_predict(contract.load_teacher(stages["teacher"]), spec, names),
                # roll read off the detector's eye keypoints: what a roll that follows the face scores
                "ref_eye_line": eye_line_roll}
    return predicts, spec


def table(result: dict) -> str:
    """Per model and photo: the metrics, then the aggregate's worst values."""
    cols = ("angles",) + METRICS + ("pass",)
    lines = [f"{'model':<14} {'photo':<15} " + " ".join(f"{c:>12}" for c in cols)]
    for model, r in result["models"].items():
        for name, m in r["photos"].items():
            if "error" in m:
                lines.append(f"{model:<14} {name:<15} {m['error']}")
                continue
            vals = [m["angles_detected"]] + [m[k] for k in METRICS] + ["yes" if m["passes"] else "no"]
            lines.append(f"{model:<14} {name:<15} " + " ".join(f"{'-' if v is None else v:>12}" for v in vals))
        agg = r["aggregate"]
        worst = [f"{agg[k]['worst']:>12}" if k in agg else f"{'-':>12}" for k in METRICS]
        lines.append(f"{model:<14} {'WORST':<15} {agg['scored']:>12} " + " ".join(worst)
                     + f" {'yes' if agg['passes_all'] else 'no':>12}")
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
    args = ap.parse_args(argv)
    try:
        base = None
        if args.scale is not None or args.shift_y is not None:
            base = CropSpec()
            base = replace(base, scale=args.scale if args.scale is not None else base.scale,
                           shift_y=args.shift_y if args.shift_y is not None else base.shift_y)
        predicts, spec = models_of(args.run_dir, base)
    except (FileNotFoundError, ValueError, contract.ArtifactError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result = check(predicts, spec)
    result["run"] = str(args.run_dir)
    print(table(result))
    if args.json:
        atomic_write_json(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
