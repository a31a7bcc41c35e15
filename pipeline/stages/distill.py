"""Distill stage: train the two-headed mobile student with the configured method (TOR-MT by default),
write the flagged-outlier report, evaluate both heads on the clean test split, and save the
single-output student (the chosen head) for QAT and export."""

from __future__ import annotations

import logging

import numpy as np
import torch

from pipeline.config import Config
from pipeline.contract import (
    DistillMetrics,
    as_metrics,
    from_dict,
    load_predictions,
    read_metrics,
)
from pipeline.data.dataset import Dataset, load_dataset
from pipeline.evaluate import errors, mae
from pipeline.losses import METHODS, LossParams, inlier_mask
from pipeline.models import build_model
from pipeline.models.complexity import count_macs, count_params
from pipeline.models.student import HEADS, auto_head, select_head
from pipeline.objective import (
    dataset_threshold,
    distill_step,
    flipped_teacher_extras,
    real_face_set,
    with_real_faces,
)
from pipeline.runs import (
    StageContext,
    atomic_torch_save,
    atomic_write_json,
    atomic_write_npz,
    atomic_write_text,
)
from pipeline.schema import to_dict
from pipeline.stages.base import Stage, StageOutput
from pipeline.train import TrainData, fit, network_train_config, predict, to_model_input

log = logging.getLogger(__name__)

MODEL_FILE = "student.pt"
FLAGGED_FILE = "flagged_outliers.csv"
THRESHOLD_FILE = "tor_threshold.json"
REAL_FACES_FILE = "real_faces.npz"


def config_slice(cfg: Config) -> dict:
    return {"distill": to_dict(cfg.distill)}


def exported_head(cfg: Config) -> str:
    """Single-head methods train and answer with the label head; two-headed ones use the knob. With
    ``auto`` the epochs are selected on the ``mean`` head and the head is chosen after training."""
    if not METHODS[cfg.distill.method].two_heads:
        return "label"
    return "mean" if cfg.distill.inference_head == "auto" else cfg.distill.inference_head


def flag_report(data: Dataset, y_t: np.ndarray, e_out: np.ndarray, path, reject: str) -> dict:
    """Write the CSV of training samples whose teacher residual exceeds e_out; score the flagger."""
    y = data.y("train")
    residual = y - y_t
    flags = ~inlier_mask(torch.from_numpy(residual), torch.from_numpy(e_out), reject).numpy()
    names = data.output_names
    lines = [",".join(["index"] + [f"label_{n}" for n in names] + [f"teacher_{n}" for n in names]
                      + [f"residual_{n}" for n in names])]
    for i in np.flatnonzero(flags.any(1)):
        vals = [*y[i], *y_t[i], *residual[i]]
        lines.append(",".join([str(i)] + [f"{v:.3f}" for v in vals]))
    atomic_write_text(path, "\n".join(lines) + "\n")
    truth = data.outlier_mask("train")
    tp = int((flags & truth).sum())
    sq_err = (y - data.y_clean("train")) ** 2
    kept_clean = float(sq_err[~flags & ~truth].sum())
    return {"threshold": {n: (None if not np.isfinite(v) else round(float(v), 4)) for n, v in zip(names, e_out, strict=True)},
            "flagged_samples": int(flags.any(1).sum()), "flagged_elements": int(flags.sum()),
            "precision": round(tp / flags.sum(), 4) if flags.sum() else None,
            "recall": round(tp / truth.sum(), 4) if truth.sum() else None,
            "missed_error_share": round(float(sq_err[~flags & truth].sum()) / kept_clean, 4)
            if truth.sum() and kept_clean > 0 else None}


def run(cfg: Config, ctx: StageContext) -> StageOutput:
    dev = ctx.device
    d = cfg.distill
    method = METHODS[d.method]
    data = load_dataset(ctx.upstream["data"].path)
    teacher_dir = ctx.upstream["teacher"].path
    preds = load_predictions(teacher_dir)
    y_t_train, y_t_val = preds["train"], preds["val"]
    e_out = dataset_threshold(d.tor, data.y("train") - y_t_train)
    flagger = flag_report(data, y_t_train, e_out, ctx.dir / FLAGGED_FILE, d.tor.reject)
    threshold = tuple(float(v) for v in e_out)
    params = LossParams.from_config(d, threshold)

    torch.manual_seed(d.train.seed)
    student = build_model(d.arch, data.stats, d.width_mult).to(dev.device)
    example = to_model_input(torch.from_numpy(data.x("test")[:1]), dev)
    n_params, macs = count_params(student), count_macs(student, example)
    teacher_macs = read_metrics(ctx.upstream["teacher"]).macs
    if dev.channels_last and example.dim() == 4:
        student = student.to(memory_format=torch.channels_last)
    mirror = data.stats["mirror_signs"]
    augment = d.train.augment and mirror is not None
    extras = {"y_t": torch.from_numpy(y_t_train)}
    if augment and method.uses_teacher:
        extras.update(flipped_teacher_extras(teacher_dir, data.x("train"), dev))
    train = TrainData(torch.from_numpy(data.x("train")), torch.from_numpy(data.y("train")), extras=extras,
                      mirror_signs=torch.tensor(mirror) if mirror else None)
    products = {}
    if d.real_faces:
        real_x, real_y = real_face_set(cfg.data, teacher_dir, dev)
        train = with_real_faces(train, real_x, real_y, d.real_faces)
        if ctx.is_writer:  # QAT fine-tunes on the same set; kept for inspection as well
            atomic_write_npz(ctx.dir / REAL_FACES_FILE, x=real_x, y=real_y)
        products["real_faces"] = REAL_FACES_FILE
    head = exported_head(cfg)

    step = distill_step(method, params, tied_heads=False)

    val_x, val_y = torch.from_numpy(data.x("val")), data.y("val")

    def val_fn(model):  # model selection on the noisy validation split, never on clean labels
        both = predict(model, val_x, dev)
        return {"val_mae": mae(select_head((both[0], both[1]), head), val_y)}

    log.info("student %s x%.2f (%d params, %.2fM MACs = 1/%.0f of the teacher), method %s, on %s",
             d.arch, d.width_mult, n_params, macs / 1e6, teacher_macs / macs, d.method, dev.describe())
    train_cfg = network_train_config(d.train, d.arch)
    result = fit(student, step, train, val_fn, train_cfg, dev, ctx.dir, desc=f"distill[{d.method}]")

    names = data.output_names
    test_x, test_y = torch.from_numpy(data.x("test")), data.y("test")
    heads = predict(student, test_x, dev)  # (2, N, D): label head, teacher head
    by_head = {h: select_head((heads[0], heads[1]), h) for h in HEADS}
    val_heads = predict(student, val_x, dev)
    heads_val_mae = {h: mae(select_head((val_heads[0], val_heads[1]), h), val_y) for h in by_head}
    # The same on validation samples the teacher does not flag: gross label errors add a large, nearly
    # constant term to the plain figure that hides differences between heads and knobs. Still no clean
    # labels: only the noisy labels and the teacher's threshold are used.
    keep = (np.abs(val_y - y_t_val) <= np.asarray(threshold)).all(1)
    heads_val_mae_unflagged = {h: float(np.abs(select_head((val_heads[0], val_heads[1]), h)[keep]
                                               - val_y[keep]).mean()) for h in by_head}
    if method.two_heads and d.inference_head == "auto":  # chosen on noisy validation, never on clean test
        head = auto_head(heads_val_mae_unflagged)
        log.info("distill: inference_head auto -> %s (noisy-validation MAE on unflagged samples: %s)", head,
                 ", ".join(f"{h} {v:.4f}" for h, v in heads_val_mae_unflagged.items()))
    metrics = {**errors(by_head[head], test_y, names), "head": head, "method": d.method,
               "heads": {h: errors(p, test_y, names) for h, p in by_head.items()},
               "heads_val_mae": {h: round(v, 4) for h, v in heads_val_mae.items()},
               "heads_val_mae_unflagged": {h: round(v, 4) for h, v in heads_val_mae_unflagged.items()},
               "val_mae_unflagged": round(heads_val_mae_unflagged[head], 4),
               "val_mae": round(result.best_metric, 4), "best_epoch": result.best_epoch,
               "train_seconds": result.train_seconds, "train_precision": dev.precision(train_cfg.cpu_bf16),
               "params": n_params, "macs": macs,
               "teacher_macs": teacher_macs, "macs_fraction_of_teacher": round(macs / teacher_macs, 5),
               "teacher_test_mae": read_metrics(ctx.upstream["teacher"]).test_mae,
               "flagger": flagger}
    if ctx.is_writer:
        # the exact threshold the loss used, for QAT to fine-tune with the same objective (null: infinite)
        atomic_write_json(ctx.dir / THRESHOLD_FILE, {"output_names": names, "threshold": [
            v if np.isfinite(v) else None for v in threshold]})
        atomic_torch_save(ctx.dir / MODEL_FILE, {
            "arch": d.arch, "width_mult": d.width_mult, "stats": data.stats, "head": head,
            "state_dict": {k: v.cpu() for k, v in student.state_dict().items()}})
    log.info("distill[%s]: clean test MAE %.3f (%s head); teacher %.3f; flagger precision %s recall %s",
             d.method, metrics["test_mae"], head, metrics["teacher_test_mae"], flagger["precision"],
             flagger["recall"])
    return StageOutput(as_metrics(from_dict(DistillMetrics, metrics)), {"model": MODEL_FILE, "flagged_outliers": FLAGGED_FILE,
                                 "threshold": THRESHOLD_FILE, "metrics": "metrics.jsonl", **products})


STAGE = Stage("distill", ("data", "teacher"), config_slice, run)
