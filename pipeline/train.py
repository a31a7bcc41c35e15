"""The training loop shared by the teacher, distill and qat stages.

``fit`` runs AdamW with a warm-up + cosine schedule over in-memory tensors, calls a stage-specific
``step_fn(model, batch) -> {"loss": ..., other components}`` (so logging is uniform whatever the
objective), validates each epoch on the noisy validation split, keeps the best epoch's weights
(model selection never sees clean labels), and writes an atomic recovery checkpoint every
``checkpoint_every_s`` seconds and at each epoch end. Batch order and flips are a pure function of
``(seed, epoch)``, so a killed run that restarts from its checkpoint continues the same sequence.

Resume: the checkpoint holds weights, optimizer, schedule, RNG, the running loss sums of the epoch
in progress and the epoch history; ``metrics.jsonl`` is rewritten from that history (atomically), so
a run killed between writing an epoch's row and its checkpoint never shows the epoch twice. It is
loaded with ``weights_only=True``: tensors and plain data, nothing executed.

Divergence: a non-finite training loss stops the run before it overwrites the last good checkpoint,
with a message naming the options to change (:class:`TrainingDiverged`).

Several processes (``torchrun``): the model is wrapped in DistributedDataParallel, each rank trains on
its disjoint share of every global batch (``DeviceInfo.shard``), loss sums are averaged over ranks,
and only rank 0 writes the checkpoint and ``metrics.jsonl``.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from pipeline.config import TrainConfig
from pipeline.device import DeviceInfo
from pipeline.models import MODELS
from pipeline.quant.modes import set_train_mode
from pipeline.runs import UserError, atomic_torch_save, atomic_write_text

log = logging.getLogger(__name__)

StepFn = Callable[[nn.Module, dict[str, torch.Tensor]], dict[str, torch.Tensor]]
ValFn = Callable[[nn.Module], dict[str, float]]


def l2_step(model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The plain squared-error step (the teacher's default; benchmarks.train_overhead times ``fit`` with it)."""
    pred = model(batch["x"])
    return {"loss": ((pred.float() - batch["y"]) ** 2).mean()}


def l1_step(model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {"loss": (model(batch["x"]).float() - batch["y"]).abs().mean()}


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


def network_train_config(cfg: TrainConfig, arch: str) -> TrainConfig:
    """``cfg`` with ``cpu_bf16`` kept only for a network the models table says trains faster in bf16."""
    return replace(cfg, cpu_bf16=cfg.cpu_bf16 and MODELS[arch].cpu_bf16_faster)


def lr_lambda(total_steps: int, warmup_fraction: float) -> Callable[[int], float]:
    warmup = max(1, int(total_steps * warmup_fraction))

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return f


def frame_jitter(x: torch.Tensor, amount: float, seed: int, epoch: int, step: int) -> torch.Tensor:
    """NCHW images each moved by up to ``amount`` of the side in x and y and scaled by 1 +- ``amount``,
    edge pixels repeated (the crop spec's padding), bilinear. Why: a model read on a detector's boxes sees
    each face framed a little differently in every frame, and a training set of fixed renders shows each
    face one way only; the readings then move with the box (benchmarks.real_faces --steadiness). A pure
    function of (seed, epoch, step), so a resumed run draws the same moves."""
    g = torch.Generator().manual_seed(seed * 100_003 + epoch * 1_009 + step + 1)
    n = x.shape[0]
    u = (torch.rand(n, 3, generator=g) * 2.0 - 1.0) * amount
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0 / (1.0 + u[:, 0])  # output pixel -> input: a larger face reads less
    theta[:, :, 2] = 2.0 * u[:, 1:]  # a move of ``u`` of the side is 2u in affine_grid's [-1, 1] units
    grid = nn.functional.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    return nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def epoch_order(n: int, seed: int, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The permutation and flip coins of one epoch: a pure function of (seed, epoch)."""
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n, generator=g), torch.rand(n, generator=g) < 0.5


class TrainingDiverged(UserError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""


def _load_recovery(path: Path, model: nn.Module, opt, sched, dev: DeviceInfo, section: str) -> dict:
    """The recovery checkpoint's ``state``, after loading its weights, optimizer and schedule."""
    fix = f"delete it (training restarts) or rerun with --force {section}"
    try:
        ckpt = torch.load(path, map_location=dev.device, weights_only=True)
    except Exception as exc:
        raise UserError(f"{path} is not a readable recovery checkpoint ({type(exc).__name__}); {fix}") from exc
    try:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        torch.set_rng_state(ckpt["torch_rng"].cpu())
        state = ckpt["state"]
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path} does not match this {section} model or optimizer ({first}); {fix}") from exc
    return state


def _write_history(path: Path, history: list[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(row) + "\n" for row in history))


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
    section = desc.split("[")[0]  # the config section: teacher, distill, qat
    params = params if params is not None else [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, len(data) // cfg.batch_size)  # drop the ragged last batch: BN-friendly
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lr_lambda(steps_per_epoch * cfg.epochs, cfg.warmup_fraction))
    state = {"epoch": 0, "step_in_epoch": 0, "best_metric": math.inf, "best_epoch": -1,
             "best_state": None, "history": [], "bad_epochs": 0, "train_seconds": 0.0, "sums": {}}
    if ckpt_path.exists():
        state = _load_recovery(ckpt_path, model, opt, sched, dev, section)
        log.info("resuming %s from %s at epoch %d step %d", desc, ckpt_path, state["epoch"],
                 state["step_in_epoch"])
    _write_history(metrics_path, state["history"])  # drops rows written after the checkpoint

    def save_checkpoint() -> None:
        if dev.is_writer:
            atomic_torch_save(ckpt_path, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                                          "scheduler": sched.state_dict(), "torch_rng": torch.get_rng_state(),
                                          "state": state})

    def check_finite(sums: dict[str, torch.Tensor], epoch: int, step: int) -> dict[str, torch.Tensor]:
        """Sums averaged over ranks; raise before a non-finite loss can reach a checkpoint."""
        sums = {k: dev.all_mean(v) for k, v in sums.items()}
        loss = sums.get("loss")
        if loss is not None and not bool(torch.isfinite(loss)):
            kept = f"after epoch {state['epoch']}" if state["epoch"] else "none yet"
            raise TrainingDiverged(
                f"{section} training diverged at epoch {epoch + 1} step {step} (loss is {float(loss)}); "
                f"last good checkpoint: {ckpt_path} ({kept}). Lower {section}.train.lr (now {cfg.lr:g}) or "
                f"raise {section}.train.warmup_fraction (now {cfg.warmup_fraction:g}), then run again")
        return sums

    train_model: nn.Module = model
    if dev.distributed:
        from torch.nn.parallel import DistributedDataParallel

        train_model = DistributedDataParallel(model, device_ids=[dev.device.index] if dev.is_cuda else None)
    log.debug("%s: training steps in %s", desc, dev.precision(cfg.cpu_bf16))
    x_all, y_all = dev.stage_tensor(data.x), dev.stage_tensor(data.y)
    extras = {k: dev.stage_tensor(v) for k, v in data.extras.items()}
    mirror = data.mirror_signs.to(dev.device) if (cfg.augment and data.mirror_signs is not None) else None
    stopped_early = False
    while state["epoch"] < cfg.epochs:
        epoch = state["epoch"]
        if epoch_hook is not None:
            epoch_hook(model, epoch)
        order, flips = epoch_order(len(data), cfg.seed, epoch)
        set_train_mode(model, True)
        sums: dict[str, torch.Tensor] = dict(state.get("sums") or {}) if state["step_in_epoch"] else {}
        t0, last_ckpt = time.perf_counter(), time.perf_counter()
        bar = tqdm(range(state["step_in_epoch"], steps_per_epoch), desc=f"{desc} {epoch + 1}/{cfg.epochs}",
                   leave=False, disable=None, dynamic_ncols=True)
        for step in bar:
            idx = dev.shard(order[step * cfg.batch_size:(step + 1) * cfg.batch_size])
            src = idx.to(x_all.device)
            batch = {"x": to_model_input(x_all[src], dev), "y": y_all[src].to(dev.device, non_blocking=True),
                     "index": idx.to(dev.device)}
            batch.update({k: v[src].to(dev.device, non_blocking=True) for k, v in extras.items()})
            if mirror is not None:
                flip = flips[idx].to(dev.device)
                batch["x"] = torch.where(flip.view(-1, 1, 1, 1), batch["x"].flip(3), batch["x"])
                batch["y"] = torch.where(flip.view(-1, 1), batch["y"] * mirror, batch["y"])
                batch["flip"] = flip
            if cfg.frame_jitter and batch["x"].dim() == 4:
                batch["x"] = frame_jitter(batch["x"], cfg.frame_jitter, cfg.seed, epoch, step)
            with dev.autocast(cfg.cpu_bf16):
                parts = step_fn(train_model, batch)
            opt.zero_grad(set_to_none=True)
            parts["loss"].backward()
            opt.step()
            sched.step()
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v.detach().float()
            if time.perf_counter() - last_ckpt > cfg.checkpoint_every_s:
                check_finite(sums, epoch, step + 1)
                state["step_in_epoch"], state["sums"] = step + 1, sums
                state["train_seconds"] += time.perf_counter() - last_ckpt
                last_ckpt = time.perf_counter()
                save_checkpoint()
        state["train_seconds"] += time.perf_counter() - last_ckpt
        sums = check_finite(sums, epoch, steps_per_epoch)
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
            _write_history(metrics_path, state["history"])
        state["epoch"] += 1
        state["step_in_epoch"], state["sums"] = 0, {}
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
