"""QAT stage: int8 quantization-aware fine-tuning of the distilled student, with a PTQ baseline.

Route (``pipeline/quant/``): ``torch.export`` with a dynamic batch -> torchao PT2E
``prepare_qat_pt2e`` with litert-torch's quantizer (int8 per-channel symmetric weights, int8
activations, batch norm folded) -> fine-tune -> ``convert_pt2e``. The PTQ baseline calibrates the
same quantizer's observers on the same batches and converts without training, so the value of QAT
is measured in the same run.

Objective: the distill stage's method loss, with the single exported output standing in for both
heads (label head and teacher head tied), and the teacher's cached predictions in the loop. Observers
are calibrated before the first step; batch-norm statistics and then observers freeze on the
configured epochs, so the last epochs train against fixed quantization grids.
"""

from __future__ import annotations

import copy
import logging

import numpy as np
import torch

from pipeline import quant
from pipeline.config import Config
from pipeline.contract import (
    QatMetrics,
    as_metrics,
    load_predictions,
    load_real_faces,
    load_student,
    load_threshold,
)
from pipeline.data.dataset import load_dataset
from pipeline.evaluate import errors, mae
from pipeline.losses import METHODS, LossParams
from pipeline.objective import distill_step, flipped_teacher_extras, with_real_faces
from pipeline.runs import StageContext, atomic_save, atomic_write_json
from pipeline.schema import to_dict
from pipeline.stages.base import Stage, StageOutput, StageSkipped
from pipeline.train import TrainData, fit, predict, to_model_input

log = logging.getLogger(__name__)

INT8_FILE = "student_int8.pt2"


def config_slice(cfg: Config) -> dict:
    return {"qat": to_dict(cfg.qat)}


def _calibration_batches(x: np.ndarray, n_batches: int, batch_size: int, dev) -> list[torch.Tensor]:
    # A fixed, evenly spaced subset: the same batches calibrate PTQ and the start of QAT.
    n = min(len(x), n_batches * batch_size)
    idx = np.linspace(0, len(x) - 1, n).astype(int)
    return [to_model_input(torch.from_numpy(x[idx[i:i + batch_size]]), dev) for i in range(0, n, batch_size)]


def run(cfg: Config, ctx: StageContext) -> StageOutput:
    if not cfg.qat.enabled:
        raise StageSkipped("qat.enabled is false")
    dev = ctx.device
    q = cfg.qat
    data = load_dataset(ctx.upstream["data"].path)
    names = data.output_names
    float_model = load_student(ctx.upstream["distill"].path, dev.device)
    test_x, test_y = torch.from_numpy(data.x("test")), data.y("test")
    val_x, val_y = torch.from_numpy(data.x("val")), data.y("val")
    float_metrics = errors(predict(float_model, test_x, dev), test_y, names)
    example = to_model_input(torch.from_numpy(data.x("train")[:2]), dev)
    calib = _calibration_batches(data.x("train"), q.calibration_batches, q.train.batch_size, dev)

    # PTQ baseline: calibrate observers only, convert.
    ptq = quant.prepare_ptq(copy.deepcopy(float_model), example)
    quant.calibrate(ptq, calib)
    ptq_int8 = quant.convert(ptq)
    ptq_metrics = errors(predict(ptq_int8, test_x, dev), test_y, names)

    # QAT: same quantizer, observers calibrated first, then the distillation objective.
    qat_model = quant.prepare_qat(copy.deepcopy(float_model), example)
    quant.calibrate(qat_model, calib)
    y_t = load_predictions(ctx.upstream["teacher"].path)["train"]
    method = METHODS[cfg.distill.method]
    params = LossParams.from_config(cfg.distill, load_threshold(ctx.upstream["distill"]))
    mirror = data.stats["mirror_signs"]
    extras = {"y_t": torch.from_numpy(y_t)}
    if q.train.augment and mirror is not None and method.uses_teacher:
        extras.update(flipped_teacher_extras(ctx.upstream["teacher"].path, data.x("train"), dev))
    train = TrainData(torch.from_numpy(data.x("train")), torch.from_numpy(data.y("train")),
                      extras=extras, mirror_signs=torch.tensor(mirror) if mirror else None)
    if cfg.distill.real_faces:  # the student's real-face pseudo-labels, as distill trained on them
        train = with_real_faces(train, *load_real_faces(ctx.upstream["distill"]), cfg.distill.real_faces)
    step = distill_step(method, params, tied_heads=True)

    def schedule(model, epoch: int) -> None:
        if epoch >= q.freeze_bn_epoch:
            quant.freeze_bn_stats(model)
        if epoch >= q.freeze_observers_epoch:
            quant.freeze_observers(model)

    def val_fn(model):
        return {"val_mae": mae(predict(model, val_x, dev), val_y)}

    result = fit(qat_model, step, train, val_fn, q.train, dev, ctx.dir, desc="qat", epoch_hook=schedule)
    int8 = quant.convert(qat_model)
    int8_metrics = errors(predict(int8, test_x, dev), test_y, names)
    summary = quant.quant_summary(int8)
    if ctx.is_writer:
        batch = torch.export.Dim("batch", min=1, max=quant.MAX_BATCH)
        exported = torch.export.export(int8, (example,), dynamic_shapes=({0: batch},))
        atomic_save(ctx.dir / INT8_FILE, lambda path: torch.export.save(exported, path))
        atomic_write_json(ctx.dir / "quant_summary.json", summary)
    metrics = {**int8_metrics, "float_test_mae": float_metrics["test_mae"],
               "float_test_mae_per_output": float_metrics["test_mae_per_output"],
               "ptq_test_mae": ptq_metrics["test_mae"], "ptq_test_mae_per_output": ptq_metrics["test_mae_per_output"],
               "qat_minus_float": round(int8_metrics["test_mae"] - float_metrics["test_mae"], 4),
               "val_mae": round(result.best_metric, 4), "best_epoch": result.best_epoch,
               "train_seconds": result.train_seconds, "quantization": summary}
    log.info("qat: int8 test MAE %.3f (float %.3f, PTQ %.3f)", metrics["test_mae"], metrics["float_test_mae"],
             metrics["ptq_test_mae"])
    return StageOutput(as_metrics(QatMetrics(**metrics)), {"int8_model": INT8_FILE, "metrics": "metrics.jsonl",
                                 "quant_summary": "quant_summary.json"})


STAGE = Stage("qat", ("data", "teacher", "distill"), config_slice, run)
