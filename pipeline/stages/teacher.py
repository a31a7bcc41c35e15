"""Teacher stage: train the large network on the noisy labels, select its epoch on the noisy
validation split, evaluate on the clean test split, and cache its predictions for distillation."""

from __future__ import annotations

import logging

import numpy as np
import torch

from pipeline.config import Config
from pipeline.contract import TeacherMetrics, as_metrics
from pipeline.data.dataset import load_dataset
from pipeline.evaluate import errors, mae
from pipeline.models import build_model
from pipeline.models.complexity import count_macs, count_params
from pipeline.runs import StageContext, atomic_torch_save, atomic_write_npz
from pipeline.schema import to_dict
from pipeline.stages.base import Stage, StageOutput
from pipeline.train import TrainData, fit, l1_step, l2_step, network_train_config, predict, to_model_input

log = logging.getLogger(__name__)

MODEL_FILE = "teacher.pt"
PREDICTIONS_FILE = "teacher_predictions.npz"


def config_slice(cfg: Config) -> dict:
    return {"teacher": to_dict(cfg.teacher)}


def teacher_step(cfg: Config):
    """The teacher's training step for ``teacher.loss``."""
    if cfg.teacher.loss == "l2":
        return l2_step
    if cfg.teacher.loss == "l1":
        return l1_step
    delta = cfg.teacher.huber_delta
    return lambda model, batch: {"loss": torch.nn.functional.huber_loss(model(batch["x"]).float(), batch["y"],
                                                                        delta=delta)}


def run(cfg: Config, ctx: StageContext) -> StageOutput:
    data = load_dataset(ctx.upstream["data"].path)
    dev = ctx.device
    torch.manual_seed(cfg.teacher.train.seed)
    model = build_model(cfg.teacher.arch, data.stats).to(dev.device)
    example = to_model_input(torch.from_numpy(data.x("test")[:1]), dev)
    params, macs = count_params(model), count_macs(model, example)
    if dev.channels_last and example.dim() == 4:
        model = model.to(memory_format=torch.channels_last)
    mirror = data.stats["mirror_signs"]
    train = TrainData(torch.from_numpy(data.x("train")), torch.from_numpy(data.y("train")),
                      mirror_signs=torch.tensor(mirror) if mirror else None)
    val_x, val_y = torch.from_numpy(data.x("val")), data.y("val")

    def val_fn(m):
        return {"val_mae": mae(predict(m, val_x, dev), val_y)}

    train_cfg = network_train_config(cfg.teacher.train, cfg.teacher.arch)
    precision = dev.precision(train_cfg.cpu_bf16)
    log.info("teacher %s: %.2fM params, %.1fM MACs, on %s, training in %s", cfg.teacher.arch, params / 1e6,
             macs / 1e6, dev.describe(), precision)
    result = fit(model, teacher_step(cfg), train, val_fn, train_cfg, dev, ctx.dir, desc="teacher")
    names = data.output_names
    preds = {s: predict(model, torch.from_numpy(data.x(s)), dev) for s in ("train", "val", "test")}
    metrics = {**errors(preds["test"], data.y("test"), names), "val_mae": round(result.best_metric, 4),
               "best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
               "stopped_early": result.stopped_early, "train_seconds": result.train_seconds,
               "params": params, "macs": macs, "arch": cfg.teacher.arch, "train_precision": precision}
    if ctx.is_writer:
        atomic_torch_save(ctx.dir / MODEL_FILE, {"arch": cfg.teacher.arch, "stats": data.stats,
                                                 "state_dict": {k: v.cpu() for k, v in model.state_dict().items()}})
        atomic_write_npz(ctx.dir / PREDICTIONS_FILE, **{s: p.astype(np.float32) for s, p in preds.items()})
    log.info("teacher: clean test MAE %.3f %s (best epoch %d)", metrics["test_mae"],
             data.stats["units"], result.best_epoch)
    return StageOutput(as_metrics(TeacherMetrics(**metrics)), {"model": MODEL_FILE, "predictions": PREDICTIONS_FILE,
                                 "metrics": "metrics.jsonl"})


STAGE = Stage("teacher", ("data",), config_slice, run)
