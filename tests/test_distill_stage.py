"""The distill stage's parts: flip augmentation reads the teacher's predictions on mirrored images (computed once
before training), the outlier flagger's report and scores, and the real-face pseudo-labels."""

from __future__ import annotations

import types

import numpy as np
import torch

from pipeline import api, contract, objective
from pipeline.data import pseudo_faces
from pipeline.data.transforms import mirror_pose, rotate_pose
from pipeline.data.turns import Found
from pipeline.device import DeviceInfo
from pipeline.faces.crop import CropSpec
from pipeline.stages import distill, qat
from pipeline.train import TrainData, to_model_input
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


def test_real_face_targets_follow_turns_and_the_mirror_exactly() -> None:
    """Whatever the teacher reads, the targets of one face's crops are one pose carried exactly into each
    crop: brought back into the frame (the crop's turn, the sweep's turn or the mirror undone) they agree."""
    rng = np.random.default_rng(3)
    kinds = [Found("original", 0.0, 2.0), Found("turned", -40.0, -37.0), Found("turned", 20.0, 23.5),
             Found("mirror", 0.0, -1.5)]
    readings = rng.uniform(-25, 25, size=(len(kinds), 3))
    targets = pseudo_faces.consistent_targets(readings, kinds)
    upright = []
    for (kind, t, a), q in zip(kinds, targets, strict=True):
        framed = rotate_pose(q, a)
        upright.append(mirror_pose(framed) if kind == "mirror" else rotate_pose(framed, -t))
    assert np.allclose(upright, upright[0], atol=1e-6)
    # and that pose is the readings' mean in the upright frame
    mean = np.mean([mirror_pose(rotate_pose(q, a)) if k == "mirror" else rotate_pose(rotate_pose(q, a), -t)
                    for (k, t, a), q in zip(kinds, readings, strict=True)], 0)
    assert np.allclose(upright[0], mean, atol=1e-6)


def test_real_face_set_cuts_lfw_faces_and_joins_the_training_set(monkeypatch) -> None:
    spec = CropSpec(size=64, rotate="eye_line")
    every = pseudo_faces.photos.lfw_faces()
    monkeypatch.setattr(pseudo_faces.photos, "lfw_faces", lambda: every[:2])
    x, y = pseudo_faces.pseudo_labelled(lambda crops: crops.reshape(len(crops), -1)[:, :3] / 10.0, spec,
                                        sides=(100,))
    # two faces, each upright, turned at 9 angles and mirrored, when the detector finds it every time
    assert x.dtype == np.uint8 and x.shape[1:] == (64, 64, 3) and 12 <= len(x) <= 22
    assert y.shape == (len(x), 3) and np.isfinite(y).all()
    train = TrainData(torch.zeros(5, 64, 64, 3, dtype=torch.uint8), torch.zeros(5, 3),
                      extras={"y_t": torch.ones(5, 3), "y_t_flip": torch.ones(5, 3)},
                      mirror_signs=torch.tensor([-1.0, 1.0, -1.0]))
    both = objective.with_real_faces(train, x, y, repeats=2)
    assert len(both) == 5 + 2 * len(x)
    assert torch.equal(both.y[5:5 + len(x)], torch.from_numpy(y))
    assert torch.equal(both.extras["y_t"][5:], both.y[5:])  # the consistent target is both targets
    assert torch.equal(both.extras["y_t_flip"][5:], both.y[5:] * torch.tensor([-1.0, 1.0, -1.0]))


def test_distill_and_qat_train_on_the_real_face_set(tmp_path, monkeypatch) -> None:
    """distill.real_faces: distill cuts the set, trains on it and keeps it for QAT, which trains on it too."""
    every = pseudo_faces.photos.lfw_faces()
    monkeypatch.setattr(pseudo_faces.photos, "lfw_faces", lambda: every[:2])
    monkeypatch.setattr(pseudo_faces, "SIDES", (100,))
    sizes = []
    joined = objective.with_real_faces

    def spy(train, x, y, repeats):
        out = joined(train, x, y, repeats)
        sizes.append((len(train), len(x), len(out)))
        return out

    monkeypatch.setattr(distill, "with_real_faces", spy)
    monkeypatch.setattr(qat, "with_real_faces", spy)
    result = api.run("smoke", ["distill.real_faces=3", "threads=1", "data.n_train=128", "data.n_val=32",
                               "data.n_test=32", "teacher.train.epochs=1", "distill.train.epochs=1"],
                     out=tmp_path, only=["qat"])
    assert not result.failed, result.failures
    (stage,) = tmp_path.glob("smoke/distill-*")
    x, y = contract.load_real_faces(stage)
    assert x.dtype == np.uint8 and x.shape[1:] == (64, 64, 3) and y.shape == (len(x), 3) and len(x) >= 12
    assert sizes == [(128, len(x), 128 + 3 * len(x))] * 2  # distill, then QAT on the same set
