"""TOR, TBR and the threshold rules against plain element-wise references on seeded tensors."""

import math
from dataclasses import replace

import pytest
import torch

from pipeline.config import DistillConfig
from pipeline.losses import (
    METHODS,
    LossParams,
    inlier_mask,
    outlier_threshold,
    robust_sigma,
    tbr_loss,
    tor_loss,
)


def _params(**changes) -> LossParams:
    """The schema's default loss knobs with ``changes``: the defaults live only in the config schema."""
    return replace(LossParams.from_config(DistillConfig()), **changes)


def _data(seed=0, n=64, d=3):
    g = torch.Generator().manual_seed(seed)
    y = torch.randn(n, d, generator=g) * 20
    y_t = y + torch.randn(n, d, generator=g) * 3
    y[:8] += 80  # gross outliers: far from the teacher
    h = y_t + torch.randn(n, d, generator=g)
    return h.requires_grad_(True), y, y_t


def ref_sigma(r):
    out = []
    for j in range(r.shape[1]):
        col = sorted(r[:, j].tolist())
        med = _median(col)
        out.append(1.4826 * _median(sorted(abs(v - med) for v in col)))
    return out


def _median(v):
    # torch.median returns the lower of the two middle values for even counts
    return v[(len(v) - 1) // 2]


def ref_threshold(sigma, rule, beta, alpha=2.0, k=3.0, fixed=15.0):
    if rule == "fixed":
        return fixed
    if rule == "mad_k":
        return k * sigma
    arg = math.sqrt(2 * math.pi) * sigma * alpha / beta
    return sigma * math.sqrt(-2 * math.log(arg)) if arg < 1 else math.inf


def ref_tor(h, y, y_t, branch, e_out, eps):
    total, n = 0.0, 0
    for i in range(h.shape[0]):
        for j in range(h.shape[1]):
            hv, yv, tv = float(h[i, j]), float(y[i, j]), float(y_t[i, j])
            if abs(yv - tv) <= e_out[j]:
                v = (hv - yv) ** 2
            else:
                d = hv - tv
                v = {"sqrt": math.sqrt(abs(d) + eps), "l1": abs(d), "l2": d * d, "none": 0.0}[branch]
            total += v
            n += 1
    return total / n


def test_robust_sigma_matches_reference():
    _, y, y_t = _data()
    r = y - y_t
    assert robust_sigma(r).tolist() == pytest.approx(ref_sigma(r), rel=1e-5)


@pytest.mark.parametrize("branch", ["sqrt", "l1", "l2", "none"])
@pytest.mark.parametrize("rule", ["chauvenet", "mad_k", "fixed"])
def test_tor_batch_sigma_matches_reference(branch, rule):
    h, y, y_t = _data(seed=1)
    p = _params(outlier_branch=branch, threshold=rule, sigma_from="batch", eps=1e-6)
    loss, inlier = tor_loss(h, y, y_t, p)
    sig = ref_sigma(y - y_t)
    e_out = [ref_threshold(s, rule, y.shape[0]) for s in sig]
    assert float(loss) == pytest.approx(ref_tor(h, y, y_t, branch, e_out, 1e-6), rel=1e-5)
    # both branches are exercised: the injected gross errors are flagged, most others are not
    assert not inlier[:8].any() and inlier[8:].float().mean() > 0.8
    loss.backward()
    assert torch.isfinite(h.grad).all()


def test_tor_dataset_threshold_is_used_as_given():
    h, y, y_t = _data(seed=2)
    p = _params(sigma_from="dataset", dataset_threshold=(1.0, 1000.0, 5.0), outlier_branch="l1")
    loss, inlier = tor_loss(h, y, y_t, p)
    assert float(loss) == pytest.approx(ref_tor(h, y, y_t, "l1", [1.0, 1000.0, 5.0], 0), rel=1e-5)
    assert inlier[:, 1].all()


def test_chauvenet_values_and_no_solution_case():
    sigma = torch.tensor([3.0, 50.0, 0.0])
    e = outlier_threshold(sigma, "chauvenet", beta=128, alpha=2.0, k=3.0, fixed=15.0)
    assert float(e[0]) == pytest.approx(ref_threshold(3.0, "chauvenet", 128), rel=1e-6)
    # sqrt(2 pi) * 50 * 2 / 128 = 1.96 >= 1: no solution -> flag nothing
    assert math.isinf(float(e[1])) and math.isinf(float(e[2]))
    # beta N(e_out; 0, sigma) == alpha at the threshold
    density = 128 * math.exp(-float(e[0]) ** 2 / (2 * 9)) / (math.sqrt(2 * math.pi) * 3)
    assert density == pytest.approx(2.0, rel=1e-5)


def test_sqrt_branch_gradient_finite_at_zero():
    y_t = torch.zeros(4, 1)
    y = torch.full((4, 1), 100.0)  # all outliers
    h = torch.zeros(4, 1, requires_grad=True)  # exactly on the teacher: |h - y_T| = 0
    loss, _ = tor_loss(h, y, y_t, _params(threshold="fixed", fixed=1.0, sigma_from="batch", eps=1e-6))
    loss.backward()
    assert torch.isfinite(h.grad).all()


def test_tbr_matches_reference():
    h, y, y_t = _data(seed=3)
    p = _params(tbr_margin=2.0, tbr_nu=0.3)
    out = tbr_loss(h, y, y_t, p)
    n = h.shape[0]
    sl1 = 0.0
    bound = 0.0
    for i in range(n):
        ds = sum(float(h[i, j] - y[i, j]) ** 2 for j in range(3))
        dt = sum(float(y_t[i, j] - y[i, j]) ** 2 for j in range(3))
        bound += ds if ds + 2.0 > dt else 0.0
        for j in range(3):
            a = abs(float(h[i, j] - y[i, j]))
            sl1 += 0.5 * a * a if a < 1 else a - 0.5
    expected = sl1 / (n * 3) + 0.3 * bound / n
    assert float(out["loss"]) == pytest.approx(expected, rel=1e-5)
    out["loss"].backward()
    assert torch.isfinite(h.grad).all()


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_gives_finite_loss_and_grads(name):
    h, y, y_t = _data(seed=4)
    ht = h.detach().clone().requires_grad_(True)
    out = METHODS[name].loss(h, ht, y, y_t, _params(sigma_from="batch"))
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and torch.isfinite(h.grad).all()
    # only two-headed methods train the teacher head
    assert (ht.grad is not None and ht.grad.abs().sum() > 0) == METHODS[name].two_heads


def test_kd_mix_endpoints():
    h, y, y_t = _data(seed=5)
    for w, target in ((0.0, y), (1.0, y_t)):
        out = METHODS["kd_mix"].loss(h, h, y, y_t, _params(kd_mix_weight=w))
        assert float(out["loss"]) == pytest.approx(float(((h - target) ** 2).mean()), rel=1e-6)


def test_sample_rejection_rejects_every_output_of_a_flagged_sample():
    h, y, y_t = _data(seed=3)
    y = y.clone()
    y[:8, 1] = y_t[:8, 1]  # outlier samples with one output that agrees with the teacher
    e_out = (10.0, 10.0, 10.0)
    by_elem = _params(sigma_from="dataset", dataset_threshold=e_out, reject="element", outlier_branch="l1")
    by_sample = _params(sigma_from="dataset", dataset_threshold=e_out, reject="sample", outlier_branch="l1")
    _, keep_elem = tor_loss(h, y, y_t, by_elem)
    loss, keep_sample = tor_loss(h, y, y_t, by_sample)
    assert keep_elem[:8, 1].all() and not keep_sample[:8].any()
    assert torch.equal(keep_sample[8:], keep_elem[8:].all(1, keepdim=True).expand(-1, 3))
    # reference: the element-wise loss with the sample mask written out by hand
    ref = torch.where(keep_sample, (h - y) ** 2, (h - y_t).abs()).mean()
    assert float(loss.detach()) == pytest.approx(float(ref.detach()), rel=1e-6)
    with pytest.raises(ValueError, match="rejection unit"):
        inlier_mask(y - y_t, torch.tensor(e_out), "row")
