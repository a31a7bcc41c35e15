"""The distill stage's parts: flip augmentation reads the teacher's predictions on mirrored images (computed once
before training), and the outlier flagger's report and scores."""

from __future__ import annotations

import types

import numpy as np
import torch

from pipeline import objective
from pipeline.device import DeviceInfo
from pipeline.stages import distill
from pipeline.train import to_model_input
from tests.conftest import make_tiny_student


def test_precomputed_mirror_predictions_equal_the_teacher_on_flipped_batches(monkeypatch) -> None:
    teacher = make_tiny_student("mobile_xs", width_mult=0.5)  # any image network stands in for the teacher
    monkeypatch.setattr(objective, "load_teacher", lambda _dir, _device: teacher)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(12, 64, 64, 3), dtype=np.uint8)  # uint8 NHWC, as the data stage stores it
    dev = DeviceInfo(torch.device("cpu"), 1)
    y_flip = objective.flipped_teacher_extras("unused", x, dev)["y_t_flip"]
    with torch.no_grad():  # what the training loop feeds the teacher for a flipped sample
        on_the_fly = teacher(to_model_input(torch.from_numpy(x), dev).flip(3))
    assert torch.allclose(y_flip, on_the_fly, atol=1e-4)
    assert not torch.allclose(y_flip, teacher(to_model_input(torch.from_numpy(x), dev)), atol=1e-2)


def test_step_takes_the_mirror_prediction_for_flipped_samples() -> None:
    seen = {}

    def loss(hl, ht, y, y_t, params):
        seen["y_t"] = y_t
        return {"loss": hl.sum() * 0}

    step = objective.distill_step(types.SimpleNamespace(loss=loss), None, tied_heads=True)
    batch = {"x": torch.zeros(3, 2), "y": torch.zeros(3, 1), "y_t": torch.tensor([[1.0], [2.0], [3.0]]),
             "y_t_flip": torch.tensor([[-1.0], [-2.0], [-3.0]]), "flip": torch.tensor([True, False, True])}
    step(lambda x: x[:, :1], batch)
    assert seen["y_t"].flatten().tolist() == [-1.0, 2.0, -3.0]
    del batch["flip"]  # no augmentation: the cached predictions as they are
    step(lambda x: x[:, :1], batch)
    assert seen["y_t"].flatten().tolist() == [1.0, 2.0, 3.0]


def test_flag_report_scores_element_and_sample_rejection(tmp_path) -> None:
    """Precision, recall and the missed outliers' share of label error, against a hand count."""
    from pipeline.data.dataset import Dataset

    clean = np.zeros((4, 2), np.float32)
    noisy = np.array([[1, -1], [30, 2], [40, 50], [2, 1]], np.float32)  # samples 1 and 2 are outliers
    mask = np.array([[0, 0], [1, 1], [1, 1], [0, 0]], bool)
    data = Dataset({"train_y": noisy, "train_y_clean": clean, "train_outlier_mask": mask},
                   {"output_names": ["a", "b"]})
    y_t, e_out = np.zeros_like(noisy), np.array([10.0, 10.0], np.float32)
    by_elem = distill.flag_report(data, y_t, e_out, tmp_path / "e.csv", "element")
    # flagged elements: (1,a), (2,a), (2,b); the outlier element (1,b) = 2 is missed
    assert (by_elem["flagged_elements"], by_elem["precision"], by_elem["recall"]) == (3, 1.0, 0.75)
    assert by_elem["missed_error_share"] == round(2 ** 2 / (1 + 1 + 4 + 1), 4)
    by_sample = distill.flag_report(data, y_t, e_out, tmp_path / "s.csv", "sample")
    assert (by_sample["flagged_elements"], by_sample["precision"], by_sample["recall"]) == (4, 1.0, 1.0)
    assert by_sample["missed_error_share"] == 0.0
    assert (tmp_path / "s.csv").read_text().count("\n") == 3  # header + the two flagged samples


def test_frame_jitter_moves_and_scales_each_image_repeatably() -> None:
    """``train.frame_jitter``: a pure function of (seed, epoch, step), so a resumed run draws the same moves;
    every image moves on its own; a flat image stays flat (edge pixels repeated, no black border); and the
    move is what it says: a bright dot moves by at most ``amount`` of the side (plus the scaling's share)."""
    from pipeline.train import frame_jitter

    x = torch.zeros(8, 3, 64, 64)
    x[:, :, 31:33, 31:33] = 1.0  # a dot at the centre
    a, b = frame_jitter(x, 0.05, 0, 3, 7), frame_jitter(x, 0.05, 0, 3, 7)
    assert torch.equal(a, b)
    assert not torch.equal(a, frame_jitter(x, 0.05, 0, 3, 8))
    grid = torch.arange(64, dtype=torch.float32)
    w = a[:, 0]
    centre = torch.stack([(w.sum(1) * grid).sum(1), (w.sum(2) * grid).sum(1)], 1) / w.sum((1, 2)).unsqueeze(1)
    moved = (centre - 31.5).abs()
    assert float(moved.max()) <= 0.05 * 64 + 0.5 and float(moved.max()) > 0.5, moved
    assert len({tuple(c.round(decimals=2).tolist()) for c in centre}) == len(x)  # one move per image
    flat = torch.full((4, 3, 64, 64), 0.4)
    assert torch.allclose(frame_jitter(flat, 0.08, 1, 0, 0), flat, atol=1e-6)
