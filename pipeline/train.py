"""The training loop shared by the teacher, distill and qat stages.

``fit`` runs AdamW with a warm-up + cosine schedule over in-memory tensors, calls a stage-specific
``step_fn(model, batch) -> {"loss": ..., other components}`` (so logging is uniform whatever the
objective), validates each epoch on the noisy validation split, keeps the best epoch's weights
(model selection never sees clean labels), and writes an atomic recovery checkpoint every
``checkpoint_every_s`` seconds and at each epoch end. Batch order and flips are a pure function of
``(seed, epoch)``, so a killed run that restarts from its checkpoint continues the same sequence.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from pipeline.config import TrainConfig
from pipeline.device import DeviceInfo
from pipeline.quant.modes import set_train_mode
from pipeline.runs import atomic_torch_save

log = logging.getLogger(__name__)

StepFn = Callable[[nn.Module, dict[str, torch.Tensor]], dict[str, torch.Tensor]]
ValFn = Callable[[nn.Module], dict[str, float]]


@dataclass
class TrainData:
    """Training split in memory: raw inputs (uint8 NHWC images or float vectors), labels, extras."""

    x: torch.Tensor
    y: torch.Tensor
    extras: dict[str, torch.Tensor] = field(default_factory=dict)
    mirror_signs: torch.Tensor | None = None  # per-output sign under a horizontal flip

    def __len__(self) -> int:
        return len(self.x)


def to_model_input(x: torch.Tensor, dev: DeviceInfo) -> torch.Tensor:
    """uint8 NHWC images -> float NCHW in [0, 1] on the device, channels_last in memory; vectors as is."""
    x = x.to(dev.device, non_blocking=True)
    if x.dtype == torch.uint8:
        x = x.permute(0, 3, 1, 2).float().div_(255.0)
        if dev.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        else:
            x = x.contiguous()
    return x


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, dev: DeviceInfo, batch_size: int = 512) -> np.ndarray:
    """Model outputs on raw inputs, in eval mode; a tuple output (two heads) is stacked on dim 0."""
    set_train_mode(model, False)
    outs = []
    for i in range(0, len(x), batch_size):
        with dev.autocast():
            out = model(to_model_input(x[i:i + batch_size], dev))
        out = torch.stack(out) if isinstance(out, tuple) else out
        outs.append(out.float().cpu())
    return torch.cat(outs, dim=-2).numpy()


def lr_lambda(total_steps: int, warmup_fraction: float) -> Callable[[int], float]:
    warmup = max(1, int(total_steps * warmup_fraction))

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return f


def epoch_order(n: int, seed: int, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The permutation and flip coins of one epoch: a pure function of (seed, epoch)."""
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n, generator=g), torch.rand(n, generator=g) < 0.5


@dataclass
class FitResult:
    best_epoch: int
    best_metric: float
    epochs_run: int
    history: list[dict]
    stopped_early: bool
    train_seconds: float


def fit(model: nn.Module, step_fn: StepFn, data: TrainData, val_fn: ValFn, cfg: TrainConfig,
        dev: DeviceInfo, work_dir: Path, select_metric: str = "val_mae", desc: str = "train",
        epoch_hook: Callable[[nn.Module, int], None] | None = None,
        params: list[nn.Parameter] | None = None) -> FitResult:
    """Train ``model`` in place; on return it holds the best epoch's weights.

    ``epoch_hook(model, epoch)`` runs before each epoch (QAT uses it to freeze observers on schedule).
    Resumes from ``work_dir/checkpoint.pt`` when present.
    """
    ckpt_path = Path(work_dir) / "checkpoint.pt"
    metrics_path = Path(work_dir) / "metrics.jsonl"
    params = params if params is not None else [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, len(data) // cfg.batch_size)  # drop the ragged last batch: BN-friendly
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lr_lambda(steps_per_epoch * cfg.epochs, cfg.warmup_fraction))
    state = {"epoch": 0, "step_in_epoch": 0, "best_metric": math.inf, "best_epoch": -1,
             "best_state": None, "history": [], "bad_epochs": 0, "train_seconds": 0.0}
    if ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location=dev.device, weights_only=False)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        torch.set_rng_state(ckpt["torch_rng"])
        state = ckpt["state"]
        log.info("resuming %s from %s at epoch %d step %d", desc, ckpt_path, state["epoch"],
                 state["step_in_epoch"])

    def save_checkpoint() -> None:
        if dev.is_writer:
            atomic_torch_save(ckpt_path, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                                          "scheduler": sched.state_dict(), "torch_rng": torch.get_rng_state(),
                                          "state": state})

    mirror = data.mirror_signs.to(dev.device) if (cfg.augment and data.mirror_signs is not None) else None
    stopped_early = False
    while state["epoch"] < cfg.epochs:
        epoch = state["epoch"]
        if epoch_hook is not None:
            epoch_hook(model, epoch)
        order, flips = epoch_order(len(data), cfg.seed, epoch)
        set_train_mode(model, True)
        sums: dict[str, torch.Tensor] = {}
        t0, last_ckpt = time.perf_counter(), time.perf_counter()
        bar = tqdm(range(state["step_in_epoch"], steps_per_epoch), desc=f"{desc} {epoch + 1}/{cfg.epochs}",
                   leave=False, disable=None, dynamic_ncols=True)
        for step in bar:
            idx = order[step * cfg.batch_size:(step + 1) * cfg.batch_size]
            batch = {"x": to_model_input(data.x[idx], dev), "y": data.y[idx].to(dev.device),
                     "index": idx.to(dev.device)}
            batch.update({k: v[idx].to(dev.device) for k, v in data.extras.items()})
            if mirror is not None:
                flip = flips[idx].to(dev.device)
                batch["x"] = torch.where(flip.view(-1, 1, 1, 1), batch["x"].flip(3), batch["x"])
                batch["y"] = torch.where(flip.view(-1, 1), batch["y"] * mirror, batch["y"])
                batch["flip"] = flip
            with dev.autocast():
                parts = step_fn(model, batch)
            opt.zero_grad(set_to_none=True)
            parts["loss"].backward()
            opt.step()
            sched.step()
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v.detach().float()
            state["step_in_epoch"] = step + 1
            if time.perf_counter() - last_ckpt > cfg.checkpoint_every_s:
                state["train_seconds"] += time.perf_counter() - last_ckpt
                last_ckpt = time.perf_counter()
                save_checkpoint()
        state["train_seconds"] += time.perf_counter() - last_ckpt
        n_steps = max(1, steps_per_epoch)
        row = {"epoch": epoch + 1, **{f"train_{k}": round(float(v) / n_steps, 6) for k, v in sums.items()},
               "lr": opt.param_groups[0]["lr"], "epoch_seconds": round(time.perf_counter() - t0, 2)}
        row.update({k: round(v, 6) for k, v in val_fn(model).items()})
        state["history"].append(row)
        metric = row[select_metric]
        if metric < state["best_metric"]:
            state.update(best_metric=metric, best_epoch=epoch + 1, bad_epochs=0,
                         best_state=copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()}))
        else:
            state["bad_epochs"] += 1
        log.info("%s epoch %d/%d  loss %.4f  %s %.4f  (%.1fs)", desc, epoch + 1, cfg.epochs,
                 row.get("train_loss", float("nan")), select_metric, metric, row["epoch_seconds"])
        if dev.is_writer:
            with open(metrics_path, "a") as fh:
                fh.write(json.dumps(row) + "\n")
        state["epoch"] += 1
        state["step_in_epoch"] = 0
        if cfg.patience and state["bad_epochs"] >= cfg.patience:
            stopped_early = True
            log.info("%s: early stop after epoch %d (no %s improvement for %d epochs)", desc, epoch + 1,
                     select_metric, cfg.patience)
            state["epoch"] = cfg.epochs
        save_checkpoint()
    if state["best_state"] is not None:
        model.load_state_dict(state["best_state"])
    return FitResult(state["best_epoch"], state["best_metric"], len(state["history"]), state["history"],
                     stopped_early, round(state["train_seconds"], 2))
