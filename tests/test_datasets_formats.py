"""Dataset readers on tiny fixtures written in each real format (``scipy.io.savemat``, real JPEGs):
exact label conversion, crop geometry, skip reasons, split protocols, escaping paths, corrupt files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from pipeline.config import Config, validate
from pipeline.data.convention import POSE_MIRROR, gaze_from_vector, mirror_labels, pose_from_pose_para
from pipeline.data.reading import SourceError, carve
from pipeline.data.sources import SOURCES
from pipeline.faces.crop import CropSpec, crop_pixels
from pipeline.faces.detector import box_from_landmarks
from pipeline.schema import build


def data_cfg(raw: dict):
    """The data section as the readers get it (the config's own path checks are tested separately)."""
    problems: list[str] = []
    cfg = build(Config, {"data": raw}, "", problems)
    assert not problems, problems
    return cfg.data


def write_jpeg(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr.astype(np.uint8)).save(path, quality=95)


def pattern(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, size=(h, w, 3)).astype(np.uint8)


def landmarks(x0: float, y0: float, x1: float, y1: float, hidden: int = 0) -> np.ndarray:
    """2 x 68 points spanning the box, ``hidden`` of them (inside the span) invisible (negative)."""
    t = np.linspace(0, 1, 68)
    pt = np.stack([x0 + (x1 - x0) * t, y0 + (y1 - y0) * t[::-1]])
    pt[:, 30:30 + hidden] = -1.0
    return pt


def write_mat_sample(root: Path, name: str, pose_rad=(0.1, -0.5, 0.2), box=(60, 50, 100, 90),
                     size=(160, 200), seed=0, hidden=3) -> Path:
    img = root / f"{name}.jpg"
    write_jpeg(img, pattern(*size, seed))
    para = np.array([[*pose_rad, 0.0, 0.0, 0.0, 1e-3]])
    scipy.io.savemat(str(img.with_suffix(".mat")), {"Pose_Para": para, "pt2d": landmarks(*box, hidden=hidden)})
    return img


def write_300wlp(root: Path) -> None:
    for i, name in enumerate(["AFW/AFW_1_0", "AFW/AFW_1_1", "AFW_Flip/AFW_1_0", "HELEN/HELEN_2_0",
                              "HELEN/HELEN_3_0", "IBUG/IBUG_4_0"]):
        write_mat_sample(root, name, pose_rad=(0.1 * i, -0.2 * i, 0.05 * i), seed=i)
    write_jpeg(root / "AFW" / "AFW_9_0.jpg", pattern(40, 40))  # no .mat
    (root / "AFW" / "AFW_8_0.jpg").write_bytes(b"not a jpeg")  # unreadable image, valid .mat
    scipy.io.savemat(str(root / "AFW" / "AFW_8_0.mat"), {"Pose_Para": np.zeros((1, 7)), "pt2d": landmarks(1, 1, 9, 9)})
    write_jpeg(root / "AFW" / "AFW_7_0.jpg", pattern(40, 40))
    scipy.io.savemat(str(root / "AFW" / "AFW_7_0.mat"), {"roi": np.zeros(4)})  # no Pose_Para


def write_aflw(root: Path) -> None:
    write_mat_sample(root, "image00002", pose_rad=(0.3, 0.4, -0.1), seed=10)
    write_mat_sample(root, "image00004", pose_rad=(0.0, math.radians(120), 0.0), seed=11)  # beyond 99 deg
    write_mat_sample(root, "image00006", pose_rad=(-0.2, 0.1, 0.3), seed=12)


def write_biwi(path: Path, n: int = 12, subjects: bool = False, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, size=(n, 64, 64, 3)).astype(np.uint8)
    pose = rng.uniform(-60, 60, size=(n, 3)).astype(np.float32)
    arrays = {"image": image, "pose": pose, "img_size": np.array(64)}
    if subjects:
        arrays["subject"] = np.repeat(np.arange(4), n // 4)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return image, pose


def unit(v) -> np.ndarray:
    v = np.asarray(v, np.float64)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def write_mpiigaze(root: Path, persons=(0, 1, 2), days=(1, 2), n=3) -> None:
    for p in persons:
        for d in days:
            rng = np.random.default_rng(p * 10 + d)
            path = root / "Data" / "Normalized" / f"p{p:02d}" / f"day{d:02d}.mat"
            path.parent.mkdir(parents=True, exist_ok=True)
            scipy.io.savemat(str(path), {"data": {"right": _eye(rng, n), "left": _eye(rng, n)}})


def _eye(rng: np.random.Generator, n: int) -> dict:
    return {"image": rng.integers(0, 255, size=(n, 36, 60)).astype(np.uint8),
            "gaze": unit(rng.normal([0, 0, -1], 0.2, size=(n, 3))), "pose": rng.normal(0, 0.1, size=(n, 3))}


def write_csv(root: Path, n_good: int = 10, size: int = 24) -> list[tuple[str, float, float]]:
    rows = []
    for i in range(n_good):
        write_jpeg(root / "img" / f"{i}.jpg", pattern(size + i, size, i))
        rows.append((f"img/{i}.jpg", 1.5 * i, -2.0 * i))
    (root / "img" / "bad.jpg").write_bytes(b"garbage")
    write_jpeg(root.parent / "outside.jpg", pattern(8, 8))
    extra = ["img/missing.jpg,1,2", "img/bad.jpg,1,2", "img/0.jpg,nan,2", "img/0.jpg,1,inf", "img/0.jpg,x,2",
             "../outside.jpg,1,2", f"{root.parent / 'outside.jpg'},1,2"]
    lines = ["path,age,score"] + [f"{p},{a},{b}" for p, a, b in rows] + extra
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return rows


# ---------------------------------------------------------------- conventions


def test_pose_para_maps_to_yaw_pitch_roll_degrees_and_flip_negates_yaw_and_roll():
    y = pose_from_pose_para(np.array([0.1, -0.5, 0.2, 9, 9, 9, 1]))
    np.testing.assert_allclose(y, np.degrees([-0.5, 0.1, 0.2]).astype(np.float32))
    assert all(s == (-1.0, 1.0, -1.0) for s in [POSE_MIRROR])
    for name in ("synthetic_faces", "300w_lp", "aflw2000", "biwi"):  # every pose source
        assert SOURCES[name].input_kind == "image"
    flipped = pose_from_pose_para(np.array([0.1, 0.5, -0.2]))  # the same head mirrored
    np.testing.assert_allclose(mirror_labels(y, POSE_MIRROR), flipped)


def test_gaze_vector_to_pitch_yaw():
    g = gaze_from_vector(np.array([[0.0, 0.0, -1.0], [0.0, -0.5, -math.sqrt(0.75)], [-0.5, 0.0, -math.sqrt(0.75)]]))
    np.testing.assert_allclose(g, [[0, 0], [30, 0], [0, 30]], atol=1e-5)


# ---------------------------------------------------------------- 300W-LP / AFLW2000


def test_300wlp_labels_crop_geometry_groups_and_skips(tmp_path):
    root = tmp_path / "300W_LP"
    write_300wlp(root)
    cfg = data_cfg({"source": "300w_lp", "w300_lp": {"root": str(root), "margin": 0.25, "image_size": 60,
                                                     "framing": "landmarks", "test": [], "val_fraction": 0.0,
                                                     "test_fraction": 0.0}})
    src = SOURCES["300w_lp"].read(cfg)
    tr = src.splits["train"]
    assert len(tr.y) == 6 and src.output_names == ("yaw", "pitch", "roll") and src.mirror_signs == POSE_MIRROR
    assert dict(src.skipped) == {"no .mat next to the image": 1, "unreadable image": 1,
                                 "no Pose_Para or pt2d in the .mat": 1}
    # Sorted paths: AFW/AFW_1_0 (i=0), AFW/AFW_1_1 (i=1), AFW_Flip/AFW_1_0 (i=2), ...
    np.testing.assert_allclose(tr.y[1], np.degrees([-0.2, 0.1, 0.05]).astype(np.float32), rtol=1e-6)
    # Visible landmarks span x 60..100, y 50..90 (the 3 hidden ones are ignored); margin 0.25 of 40 px
    # on each side gives the 60 px square (50, 40)-(110, 100), here at scale 1.
    expected = np.asarray(Image.open(root / "AFW" / "AFW_1_0.jpg").convert("RGB"))[40:100, 50:110]
    assert np.abs(tr.x[0].astype(int) - expected.astype(int)).max() <= 1
    names = [tr.group_names[g] for g in tr.group]
    assert names[:3] == ["AFW_1", "AFW_1", "AFW_1"]  # views and flips of one face share a group


def test_crop_past_the_edge_is_padded_black(tmp_path):
    write_mat_sample(tmp_path, "edge", box=(0, 0, 40, 40), size=(60, 60))
    cfg = data_cfg({"source": "aflw2000", "aflw2000": {"root": str(tmp_path), "margin": 0.5, "image_size": 80,
                                                       "framing": "landmarks", "val_fraction": 0.0,
                                                       "test_fraction": 0.0}})
    x = SOURCES["aflw2000"].read(cfg).splits["train"].x[0]  # box (-20, -20)-(60, 60)
    assert x[:20, :20].max() == 0 and x[30:, 30:].mean() > 20


def test_detector_framing_is_the_crop_spec_of_the_detectors_box(tmp_path):
    """300W-LP / AFLW2000 by default: the box the shipped detector draws around the eyes and mouth, cropped
    by the crop spec exactly as the app and predict crop a detected face; export writes that spec."""
    write_mat_sample(tmp_path, "face", box=(60, 50, 100, 90))
    cfg = data_cfg({"source": "aflw2000", "aflw2000": {"root": str(tmp_path), "image_size": 48,
                                                       "val_fraction": 0.0, "test_fraction": 0.0}})
    x = SOURCES["aflw2000"].read(cfg).splits["train"].x[0]
    pt = landmarks(60, 50, 100, 90, hidden=3)
    centres = [pt[:, [i for i in idx if (pt[:, i] >= 0).all()]].mean(1)
               for idx in (range(36, 42), range(42, 48), range(48, 68))]
    want = crop_pixels(np.asarray(Image.open(tmp_path / "face.jpg").convert("RGB")), box_from_landmarks(*centres),
                       CropSpec(size=48))
    assert x.shape == (48, 48, 3) and np.abs(x.astype(int) - want).max() <= 1
    assert SOURCES["aflw2000"].crop(cfg).framing() == CropSpec().framing()
    landmark_cfg = data_cfg({"source": "aflw2000", "aflw2000": {"root": str(tmp_path), "framing": "landmarks"}})
    assert SOURCES["aflw2000"].crop(landmark_cfg) is None


def test_aflw2000_drops_beyond_99_degrees_by_default_and_cross_dataset_split(tmp_path):
    write_300wlp(tmp_path / "lp")
    write_aflw(tmp_path / "aflw")
    write_biwi(tmp_path / "BIWI_noTrack.npz", n=5)
    cfg = data_cfg({"source": "300w_lp", "seed": 3,
                    "w300_lp": {"root": str(tmp_path / "lp"), "test": ["aflw2000", "biwi"], "val_fraction": 0.3},
                    "aflw2000": {"root": str(tmp_path / "aflw")}, "biwi": {"root": str(tmp_path / "BIWI_noTrack.npz")}})
    src = SOURCES["300w_lp"].read(cfg)
    test = src.splits["test"]
    assert len(test.y) == 2 + 5 and test.group_names == ["aflw2000", "biwi"]
    assert list(test.group) == [0, 0, 1, 1, 1, 1, 1]
    assert src.skipped["aflw2000: an angle beyond +-99 deg"] == 1
    np.testing.assert_allclose(test.y[0], np.degrees([0.4, 0.3, -0.1]).astype(np.float32), rtol=1e-6)
    tr, va = src.splits["train"], src.splits["val"]
    assert len(tr.y) + len(va.y) == 6 and len(va.y) > 0
    assert not {tr.group_names[g] for g in tr.group} & {va.group_names[g] for g in va.group}
    lp_only = data_cfg({"source": "300w_lp", "w300_lp": {"root": str(tmp_path / "aflw"), "test": [],
                                                         "val_fraction": 0.0, "test_fraction": 0.0}})
    assert len(SOURCES["300w_lp"].read(lp_only).splits["train"].y) == 3  # 300W-LP keeps every angle


def test_missing_or_empty_roots_are_clear_errors(tmp_path):
    with pytest.raises(SourceError, match=r"data.w300_lp.root: .* is not a folder"):
        SOURCES["300w_lp"].read(data_cfg({"source": "300w_lp", "w300_lp": {"root": str(tmp_path / "nope")}}))
    with pytest.raises(SourceError, match=r"data.aflw2000.root: no .jpg/.png images"):
        SOURCES["aflw2000"].read(data_cfg({"source": "aflw2000", "aflw2000": {"root": str(tmp_path)}}))


# ---------------------------------------------------------------- BIWI


def test_biwi_pair_bgr_to_rgb_and_exact_labels(tmp_path):
    img_tr, pose_tr = write_biwi(tmp_path / "BIWI_train.npz", n=20, seed=1)
    img_te, pose_te = write_biwi(tmp_path / "BIWI_test.npz", n=6, seed=2)
    src = SOURCES["biwi"].read(data_cfg({"source": "biwi", "biwi": {"root": str(tmp_path), "val_fraction": 0.25}}))
    assert np.array_equal(src.splits["test"].x, img_te[..., ::-1]) and np.array_equal(src.splits["test"].y, pose_te)
    # Validation: the last rows of the training file (ordered by subject), never test rows.
    assert np.array_equal(src.splits["val"].y, pose_tr[15:]) and np.array_equal(src.splits["train"].y, pose_tr[:15])


def test_biwi_one_file_splits_by_subject_or_explains_why_not(tmp_path):
    write_biwi(tmp_path / "subj.npz", n=16, subjects=True)
    src = SOURCES["biwi"].read(data_cfg({"source": "biwi", "biwi": {"root": str(tmp_path / "subj.npz"),
                                                                    "test_fraction": 0.25, "val_fraction": 0.25}}))
    subj = {s: {src.splits[s].group_names[g] for g in src.splits[s].group} for s in ("train", "val", "test")}
    assert len(subj["test"]) == 1 and len(subj["val"]) == 1 and len(subj["train"]) == 2
    assert not (subj["train"] & subj["test"]) and not (subj["val"] & subj["test"])
    write_biwi(tmp_path / "nosubj.npz", n=8)
    with pytest.raises(SourceError, match="no 'subject' array"):
        SOURCES["biwi"].read(data_cfg({"source": "biwi", "biwi": {"root": str(tmp_path / "nosubj.npz")}}))


def test_corrupt_npz_is_a_clear_error(tmp_path):
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(SourceError, match=r"bad.npz is not a readable .npz"):
        SOURCES["biwi"].read(data_cfg({"source": "biwi", "biwi": {"root": str(tmp_path / "bad.npz")}}))
    np.savez(tmp_path / "wrong.npz", images=np.zeros((2, 64, 64, 3)))
    with pytest.raises(SourceError, match="no 'image' and 'pose' arrays"):
        SOURCES["biwi"].read(data_cfg({"source": "biwi", "biwi": {"root": str(tmp_path / "wrong.npz")}}))


# ---------------------------------------------------------------- MPIIGaze


def test_mpiigaze_leave_one_person_out_mirrored_left_eye(tmp_path):
    write_mpiigaze(tmp_path)
    cfg = data_cfg({"source": "mpiigaze", "mpiigaze": {"root": str(tmp_path), "test_person": 1,
                                                       "val_fraction": 0.25}})
    src = SOURCES["mpiigaze"].read(cfg)
    assert src.output_names == ("pitch", "yaw") and src.mirror_signs == (1.0, -1.0)
    te = src.splits["test"]
    assert {te.group_names[g].split("/")[0] for g in te.group} == {"p01"} and len(te.y) == 2 * 2 * 3
    tr, va = src.splits["train"], src.splits["val"]
    assert len(tr.y) + len(va.y) == 2 * 2 * 2 * 3 and len(va.y) == 6  # one whole day held out
    assert not {tr.group_names[g] for g in tr.group} & {va.group_names[g] for g in va.group}
    m = scipy.io.loadmat(str(tmp_path / "Data/Normalized/p01/day01.mat"))["data"][0, 0]
    right, left = m["right"][0, 0], m["left"][0, 0]
    np.testing.assert_allclose(te.y[:3], gaze_from_vector(right["gaze"]), atol=1e-5)
    np.testing.assert_allclose(te.y[3:6], gaze_from_vector(left["gaze"]) * [1, -1], atol=1e-5)
    assert te.x.shape[1:] == (36, 60, 3)
    assert np.array_equal(te.x[3, :, :, 0], left["image"][0, :, ::-1])
    one_eye = data_cfg({"source": "mpiigaze", "mpiigaze": {"root": str(tmp_path), "both_eyes": False}})
    assert len(SOURCES["mpiigaze"].read(one_eye).splits["test"].y) == 2 * 3


def test_mpiigaze_corrupt_day_file_and_missing_person(tmp_path):
    write_mpiigaze(tmp_path, persons=(0, 1))
    with pytest.raises(SourceError, match="test_person: p05 is not in"):
        SOURCES["mpiigaze"].read(data_cfg({"source": "mpiigaze", "mpiigaze": {"root": str(tmp_path),
                                                                             "test_person": 5}}))
    (tmp_path / "Data/Normalized/p01/day02.mat").write_bytes(b"MATLAB 5.0 garbage")
    with pytest.raises(SourceError, match=r"day02.mat is not a readable MPIIGaze .mat"):
        SOURCES["mpiigaze"].read(data_cfg({"source": "mpiigaze", "mpiigaze": {"root": str(tmp_path)}}))


# ---------------------------------------------------------------- CSV


def test_csv_labels_skips_and_escaping_paths(tmp_path):
    root = tmp_path / "ds"
    rows = write_csv(root)
    cfg = data_cfg({"source": "csv", "csv": {"root": str(root), "image_size": 16, "units": "years",
                                             "val_fraction": 0.0, "test_fraction": 0.0}})
    src = SOURCES["csv"].read(cfg)
    tr = src.splits["train"]
    assert src.output_names == ("age", "score") and src.units == "years" and src.mirror_signs is None
    np.testing.assert_array_equal(tr.y, np.array([r[1:] for r in rows], np.float32))
    assert tr.x.shape == (10, 16, 16, 3)
    assert dict(src.skipped) == {"image missing": 1, "image unreadable": 1, "label not a finite number": 3,
                                 "path outside the root (set data.csv.allow_outside_root to accept)": 2}
    allowed = data_cfg({"source": "csv", "csv": {"root": str(root), "allow_outside_root": True,
                                                 "val_fraction": 0.0, "test_fraction": 0.0}})
    assert len(SOURCES["csv"].read(allowed).splits["train"].y) == 12


def test_csv_split_column_columns_and_errors(tmp_path):
    root = tmp_path / "ds"
    write_csv(root)
    text = (root / "labels.csv").read_text().splitlines()
    tagged = [text[0] + ",split"] + [f"{line},{'test' if i % 4 == 0 else 'train'}" for i, line in enumerate(text[1:11])]
    (root / "tagged.csv").write_text("\n".join(tagged) + "\n")
    cfg = data_cfg({"source": "csv", "csv": {"root": str(root), "file": "tagged.csv", "columns": ["score"],
                                             "val_fraction": 0.2}})
    src = SOURCES["csv"].read(cfg)
    assert src.output_names == ("score",)
    np.testing.assert_array_equal(src.splits["test"].y[:, 0], [0.0, -8.0, -16.0])
    assert len(src.splits["val"].y) == 1 and len(src.splits["train"].y) == 6  # val carved from train
    bad = data_cfg({"source": "csv", "csv": {"root": str(root), "columns": ["height"]}})
    with pytest.raises(SourceError, match=r"data.csv.columns: height not in"):
        SOURCES["csv"].read(bad)
    (root / "labels.csv").write_text("file,age\nimg/0.jpg,3\n")
    with pytest.raises(SourceError, match=r"data.csv.path_column: .* has no 'path' column"):
        SOURCES["csv"].read(data_cfg({"source": "csv", "csv": {"root": str(root)}}))


# ---------------------------------------------------------------- splits and config


def test_carve_holds_out_whole_groups_and_never_everything():
    groups = np.repeat(np.arange(5), 4)
    mask = carve(20, 0.3, seed=0, groups=groups)
    assert mask.sum() in (8, 12) and all(mask[groups == g].all() or not mask[groups == g].any() for g in range(5))
    assert not carve(4, 0.9, seed=0, groups=np.zeros(4, int)).any()


def test_config_errors_name_the_key_and_show_config_prints_only_the_active_source(tmp_path):
    from pipeline.config import public_dict
    from pipeline.schema import ConfigError

    with pytest.raises(ConfigError) as exc:
        validate({"data": {"source": "300w_lp", "w300_lp": {"root": str(tmp_path / "x"), "test": ["aflw2001"]},
                           "csv": {"image_size": 2}}})
    probs = exc.value.problems
    assert any(p.startswith("data.w300_lp.test[0]: 'aflw2001' is not a test set") for p in probs)
    assert any(p.startswith("data.csv.image_size: 2 is out of range") for p in probs)
    from pipeline.config import root_problems

    probs = root_problems(validate({"data": {"source": "300w_lp", "w300_lp": {"root": str(tmp_path / "x")}}}).data)
    assert probs[0].startswith("data.w300_lp.root:") and "does not exist" in probs[0]
    assert probs[1].startswith("data.aflw2000.root: not set; point it at")
    shown = public_dict(validate({"data": {"source": "sinusoid"}, "teacher": {"arch": "mlp_l"},
                                  "distill": {"arch": "mlp_s"}}))["data"]
    assert "sinusoid" in shown and "synthetic_faces" not in shown and "csv" not in shown
    shown = public_dict(validate({"data": {"source": "csv", "csv": {"root": str(tmp_path)}}}))["data"]
    assert "csv" in shown and "n_train" not in shown and "sinusoid" not in shown
