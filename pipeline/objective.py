"""The distillation objective the distill and QAT stages share: the per-output outlier threshold from the
teacher's residuals, the training step of a method on the teacher's cached predictions, the teacher's
predictions on mirrored images for flip augmentation, and the real-face pseudo-labels added to the
training set (``distill.real_faces``).

It sits below the stages so that QAT fine-tunes with exactly distill's objective without importing the
distill stage: a stage reads another stage's products through :mod:`pipeline.contract`, never its code.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from pipeline.contract import load_teacher
from pipeline.data import pseudo_faces
from pipeline.data.sources import SOURCES
from pipeline.losses import LossParams, Method, outlier_threshold, robust_sigma
from pipeline.runs import StageDir
from pipeline.train import TrainData, predict

log = logging.getLogger(__name__)


def dataset_threshold(tor, residual: np.ndarray) -> np.ndarray:
    """e_out per output from the whole training set's teacher residuals (beta = N); ``tor`` is the
    ``distill.tor`` config section."""
    r = torch.from_numpy(residual)
    return outlier_threshold(robust_sigma(r), tor.threshold, len(r), tor.alpha, tor.k, tor.fixed).numpy()


def distill_step(method: Method, params: LossParams, tied_heads: bool):
    """The training step of a method, on the teacher's cached predictions: ``batch["y_t"]``, and for
    horizontally flipped samples ``batch["y_t_flip"]`` (the teacher on the mirrored image, see
    :func:`flipped_teacher_extras`). ``tied_heads``: the model has one output standing in for both
    heads (the QAT stage's single-output student)."""

    def step(model, batch):
        out = model(batch["x"])
        hl, ht = (out, out) if tied_heads else out
        y_t = batch["y_t"]
        if "flip" in batch and "y_t_flip" in batch:
            y_t = torch.where(batch["flip"].view(-1, 1), batch["y_t_flip"], y_t)
        return method.loss(hl.float(), ht.float(), batch["y"], y_t, params)
    return step


def flipped_teacher_extras(teacher_stage: StageDir | Path, x_train: np.ndarray, dev) -> dict[str, torch.Tensor]:
    """``{"y_t_flip": teacher predictions on the mirrored training images}``, computed once.

    Why: flip augmentation is a fixed mirror of each image, so the teacher's answer to every flipped
    sample can be computed in one pass before training instead of re-running the 28x larger teacher
    on every flipped batch of every epoch (measured on the default preset, 2 CPU threads: 12.8-14.8 s
    per distill epoch with the teacher in the loop, against 3.7 s without augmentation).
    """
    teacher = load_teacher(teacher_stage, dev.device)
    mirrored = np.ascontiguousarray(np.asarray(x_train)[:, :, ::-1, :])  # uint8 NHWC: flip the width axis
    y_flip = predict(teacher, torch.from_numpy(mirrored), dev)
    log.info("teacher predictions on %d mirrored training images computed once for flip augmentation",
             len(mirrored))
    return {"y_t_flip": torch.from_numpy(y_flip)}


def real_face_set(data_cfg, teacher_stage: StageDir | Path, dev) -> tuple[np.ndarray, np.ndarray]:
    """The real-face pseudo-labels (:mod:`pipeline.data.pseudo_faces`): LFW crops cut by the data source's
    crop spec, with the teacher's readings made exactly consistent as targets."""
    spec = SOURCES[data_cfg.source].crop(data_cfg)
    teacher = load_teacher(teacher_stage, dev.device)
    return pseudo_faces.pseudo_labelled(lambda crops: predict(teacher, torch.from_numpy(crops), dev), spec)


def with_real_faces(train: TrainData, x: np.ndarray, y: np.ndarray, repeats: int) -> TrainData:
    """``train`` with the pseudo-labelled crops appended ``repeats`` times. Their label and teacher targets
    are both the consistent target (the teacher has already spoken: no label noise to reject), and a
    flipped one's is the target mirrored, exactly as the flip changes the pose."""
    xr, yr = torch.from_numpy(np.concatenate([x] * repeats)), torch.from_numpy(np.concatenate([y] * repeats))
    yr = yr.to(train.y.dtype)
    extras = {"y_t": torch.cat([train.extras["y_t"], yr.to(train.extras["y_t"].dtype)])}
    if "y_t_flip" in train.extras:
        extras["y_t_flip"] = torch.cat([train.extras["y_t_flip"], yr * train.mirror_signs.to(yr.dtype)])
    return TrainData(torch.cat([train.x, xr]), torch.cat([train.y, yr]), extras=extras,
                     mirror_signs=train.mirror_signs)
