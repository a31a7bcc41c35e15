"""Distillation objectives: the TOR loss, TBR, and the baselines, in one table keyed by method name.

All losses are computed in label units (degrees for pose), as docs/method.md states them: the Chauvenet
threshold depends on those units. Every loss returns a dict of components with ``loss`` the total,
so the training loop logs every method the same way.

TOR (teacher outlier rejection), element-wise over outputs::

    r = |y~ - y_T|;  inlier (r <= e_out): (h_L - y~)^2;  outlier: branch(h_L - y_T);  L_TOR = mean

With ``tor.reject: sample`` one output beyond its threshold makes every output of that sample an outlier.

Thresholds ``e_out`` per output dimension, from a robust sigma = 1.4826 * MAD(y~ - y_T):

- ``chauvenet``: e_out = sigma * sqrt(-2 ln(sqrt(2 pi) sigma alpha / beta)), beta = samples the
  statistics came from. When the log's argument is >= 1 the equation beta N(e; 0, sigma) = alpha has
  no solution (the residual density is below alpha/beta everywhere). We then flag nothing
  (e_out = +inf): with no usable threshold the loss falls back to fitting the labels, the
  conservative choice; it never silently turns into pure distillation.
- ``mad_k``: e_out = k * sigma (scale-invariant).
- ``fixed``: e_out given in label units.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

MAD_TO_SIGMA = 1.4826


def robust_sigma(residual: torch.Tensor) -> torch.Tensor:
    """1.4826 * median(|r - median(r)|) per output dimension (dim 0 is the sample axis)."""
    med = residual.median(dim=0).values
    return MAD_TO_SIGMA * (residual - med).abs().median(dim=0).values


def outlier_threshold(sigma: torch.Tensor, rule: str, beta: int, alpha: float, k: float,
                      fixed: float) -> torch.Tensor:
    """e_out per output dimension; +inf where the chauvenet rule has no solution. The knobs have no
    defaults here: theirs are in the config schema (``pipeline.config.TorConfig``), the one place."""
    if rule == "fixed":
        return torch.full_like(sigma, fixed)
    if rule == "mad_k":
        return k * sigma
    if rule == "chauvenet":
        arg = math.sqrt(2 * math.pi) * sigma * alpha / beta
        solvable = (arg < 1) & (sigma > 0)
        e = sigma * torch.sqrt(-2 * torch.log(torch.where(solvable, arg, torch.ones_like(arg))))
        return torch.where(solvable, e, torch.full_like(sigma, math.inf))
    raise ValueError(f"unknown threshold rule {rule!r}")


@dataclass(frozen=True)
class LossParams:
    """The distill section's loss knobs, flattened (built from DistillConfig by ``from_config``). No
    defaults here: the config schema (``pipeline.config.DistillConfig`` / ``TorConfig``) holds them, so
    ``LossParams.from_config(DistillConfig())`` is the default set."""

    outlier_branch: str
    threshold: str
    alpha: float
    k: float
    fixed: float
    sigma_from: str
    eps: float
    reject: str
    label_weight: float
    teacher_weight: float
    kd_mix_weight: float
    huber_delta: float
    tbr_margin: float
    tbr_nu: float
    # Set by the distill stage when sigma_from == "dataset": e_out per output from the whole train set.
    dataset_threshold: tuple[float, ...] | None = None

    @classmethod
    def from_config(cls, d, dataset_threshold: tuple[float, ...] | None = None) -> LossParams:
        t = d.tor
        return cls(t.outlier_branch, t.threshold, t.alpha, t.k, t.fixed, t.sigma_from, t.eps, t.reject,
                   d.label_weight, d.teacher_weight, d.kd_mix_weight, d.huber_delta, d.tbr_margin, d.tbr_nu, dataset_threshold)


def _threshold(y: torch.Tensor, y_t: torch.Tensor, p: LossParams) -> torch.Tensor:
    if p.sigma_from == "dataset":
        if p.dataset_threshold is None:
            raise ValueError("sigma_from='dataset' needs dataset_threshold (computed by the distill stage)")
        return torch.tensor(p.dataset_threshold, dtype=y.dtype, device=y.device)
    r = (y - y_t).detach()
    return outlier_threshold(robust_sigma(r), p.threshold, r.shape[0], p.alpha, p.k, p.fixed)


def inlier_mask(residual: torch.Tensor, e_out: torch.Tensor, reject: str) -> torch.Tensor:
    """(N, D) True where the label is kept. ``element``: per output; ``sample``: a sample with any
    output beyond its threshold is rejected in every output."""
    keep = residual.abs() <= e_out
    if reject == "sample":
        return keep.all(dim=1, keepdim=True).expand_as(keep)
    if reject != "element":
        raise ValueError(f"unknown rejection unit {reject!r}")
    return keep


def outlier_branch(h: torch.Tensor, y_t: torch.Tensor, branch: str, eps: float) -> torch.Tensor:
    d = h - y_t
    if branch == "sqrt":
        return torch.sqrt(d.abs() + eps)
    if branch == "l1":
        return d.abs()
    if branch == "l2":
        return d * d
    if branch == "none":
        return torch.zeros_like(d)
    raise ValueError(f"unknown outlier branch {branch!r}")


def tor_loss(h: torch.Tensor, y: torch.Tensor, y_t: torch.Tensor, p: LossParams
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """(L_TOR, inlier mask). ``h``: label-head predictions; ``y``: noisy labels; ``y_t``: teacher."""
    e_out = _threshold(y, y_t, p)
    inlier = inlier_mask(y - y_t, e_out, p.reject)
    per_elem = torch.where(inlier, (h - y) ** 2, outlier_branch(h, y_t, p.outlier_branch, p.eps))
    return per_elem.mean(), inlier


def tbr_loss(s: torch.Tensor, y: torch.Tensor, y_t: torch.Tensor, p: LossParams) -> dict[str, torch.Tensor]:
    """Teacher-bounded regression (Chen et al. 2017): smoothL1 + nu * L2 where the student is worse
    than the teacher (by margin m) on that sample, else 0. Norms are over output dimensions."""
    ds = ((s - y) ** 2).sum(1)
    dt = ((y_t - y) ** 2).sum(1)
    bound = torch.where(ds + p.tbr_margin > dt, ds, torch.zeros_like(ds)).mean()
    sl1 = F.smooth_l1_loss(s, y)
    return {"loss": sl1 + p.tbr_nu * bound, "smooth_l1": sl1.detach(), "bound": bound.detach()}


def _l2(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return ((a - b) ** 2).mean()


LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None, LossParams],
                  dict[str, torch.Tensor]]


def _scratch_l2(hl, ht, y, y_t, p):
    return {"loss": _l2(hl, y)}


def _scratch_huber(hl, ht, y, y_t, p):
    return {"loss": F.huber_loss(hl, y, delta=p.huber_delta)}


def _kd(hl, ht, y, y_t, p):
    return {"loss": _l2(hl, y_t)}


def _kd_mix(hl, ht, y, y_t, p):
    label, teacher = _l2(hl, y), _l2(hl, y_t)
    return {"loss": (1 - p.kd_mix_weight) * label + p.kd_mix_weight * teacher,
            "label_l2": label.detach(), "teacher_l2": teacher.detach()}


def _tbr(hl, ht, y, y_t, p):
    return tbr_loss(hl, y, y_t, p)


def _tor(hl, ht, y, y_t, p):
    loss, inlier = tor_loss(hl, y, y_t, p)
    return {"loss": p.label_weight * loss, "tor": loss.detach(), "inlier_fraction": inlier.float().mean()}


def _tor_mt(hl, ht, y, y_t, p):
    tor, inlier = tor_loss(hl, y, y_t, p)
    teacher = _l2(ht, y_t)
    return {"loss": p.label_weight * tor + p.teacher_weight * teacher, "tor": tor.detach(),
            "teacher_l2": teacher.detach(), "inlier_fraction": inlier.float().mean()}


@dataclass(frozen=True)
class Method:
    name: str
    two_heads: bool  # trains the teacher head too (the exported head is then a choice)
    uses_teacher: bool
    rejects_outliers: bool  # uses the TOR flagger, so its precision/recall describe this method
    loss: LossFn
    summary: str


METHODS: dict[str, Method] = {m.name: m for m in [
    Method("scratch_l2", False, False, False, _scratch_l2, "student on noisy labels, L2"),
    Method("scratch_huber", False, False, False, _scratch_huber, "student on noisy labels, Huber"),
    Method("kd", False, True, False, _kd, "student on teacher outputs, L2"),
    Method("kd_mix", False, True, False, _kd_mix, "(1-w) L2(label) + w L2(teacher), one head"),
    Method("tbr", False, True, False, _tbr, "teacher-bounded regression (Chen et al. 2017)"),
    Method("tor", False, True, True, _tor, "TOR loss, one head"),
    Method("tor_mt", True, True, True, _tor_mt, "TOR on the label head + L2 to the teacher on the teacher head"),
]}
