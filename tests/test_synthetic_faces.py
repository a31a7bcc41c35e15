"""Synthetic face renderer: determinism, shapes, pose sampling, the pose convention and mirroring."""

import dataclasses
import typing
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from pipeline.data.synthetic_faces import (
    SyntheticFacesConfig,
    draw_appearance,
    head_landmarks,
    project_points,
    render_faces,
    render_with_appearance,
    rotation_matrices,
    sample_poses,
)
from pipeline.data.visualize import contact_sheet, draw_pose_axes, projected_axes

CFG = SyntheticFacesConfig()
# Clean renders for geometry checks: one grey background, no noise, blur, occluder, hair, accessories,
# real-face textures or grey images.
CLEAN = SyntheticFacesConfig(image_size=128, background="plain", noise_std=0.0, occlusion_prob=0.0, blur_min=0.0,
                             blur_max=0.0, hair_prob=0.0, glasses_prob=0.0, beard_prob=0.0, light_variation=0.0,
                             real_face_prob=0.0, grey_prob=0.0)


def _poses(n: int, seed: int = 0) -> np.ndarray:
    return sample_poses(n, seed, CFG)


def test_shape_dtype_and_content():
    for size in (64, 33):
        img = render_faces(_poses(6), 1, dataclasses.replace(CFG, image_size=size), threads=1)
        assert img.shape == (6, size, size, 3) and img.dtype == np.uint8
        assert img.reshape(6, -1).std(1).min() > 10  # not blank
    assert render_faces(np.zeros((0, 3)), 0, CFG).shape == (0, 64, 64, 3)


def test_deterministic_and_chunk_invariant():
    poses = _poses(40, 3)
    whole = render_faces(poses, 7, CFG, threads=1)
    assert np.array_equal(whole, render_faces(poses, 7, CFG, threads=1))
    other = render_faces(poses, 8, CFG, threads=1)
    assert np.abs(whole.astype(int) - other).mean() > 10
    split = np.concatenate([render_faces(poses[:13], 7, CFG, start_index=0, threads=1),
                            render_faces(poses[13:], 7, CFG, start_index=13, threads=1)])
    assert np.array_equal(whole, split)
    for chunk, threads in ((1, 1), (7, 2), (64, 1)):
        cfg = dataclasses.replace(CFG, chunk_size=chunk)
        assert np.array_equal(whole, render_faces(poses, 7, cfg, threads=threads)), (chunk, threads)


def test_sample_poses_uniform_in_ranges():
    """In the camera's frame every angle is uniform in its range (the default draws level-eyed heads:
    tests/test_faces.py, crops turned with the eyes)."""
    cfg = SyntheticFacesConfig(yaw_range=80.0, pitch_range=30.0, roll_range=10.0, roll_frame="camera")
    p = sample_poses(4000, 5, cfg)
    assert p.shape == (4000, 3)
    high = np.array([80.0, 30.0, 10.0])
    assert np.all(np.abs(p) <= high)
    assert np.all(p.max(0) > 0.97 * high) and np.all(p.min(0) < -0.97 * high)
    assert np.all(np.abs(p.mean(0)) < 0.05 * high)
    assert np.array_equal(p, sample_poses(4000, 5, cfg)) and not np.array_equal(p, sample_poses(4000, 6, cfg))


def test_rotation_matches_hopenet_draw_axis():
    """Projected axes equal Hopenet's draw_axis formulas (image y down, its yaw negated)."""
    rng = np.random.default_rng(0)
    for y, p, r in rng.uniform(-80, 80, size=(20, 3)):
        yy, pp, rr = np.radians([-y, p, r])
        x_axis = [np.cos(yy) * np.cos(rr), np.cos(pp) * np.sin(rr) + np.cos(rr) * np.sin(pp) * np.sin(yy)]
        down = [-np.cos(yy) * np.sin(rr), np.cos(pp) * np.cos(rr) - np.sin(pp) * np.sin(yy) * np.sin(rr)]
        z_axis = [np.sin(yy), -np.cos(yy) * np.sin(pp)]
        axes = projected_axes([y, p, r])
        np.testing.assert_allclose(axes[0], x_axis, atol=1e-9)
        np.testing.assert_allclose(-axes[1], down, atol=1e-9)
        np.testing.assert_allclose(axes[2], z_axis, atol=1e-9)
    rot = rotation_matrices(rng.uniform(-180, 180, size=(10, 3)))
    np.testing.assert_allclose(rot @ rot.transpose(0, 2, 1), np.broadcast_to(np.eye(3), rot.shape), atol=1e-12)
    assert np.allclose(np.linalg.det(rot), 1.0)


def _blue_eyes(poses: np.ndarray):
    """Render clean faces with pure blue irises; return images, appearance and projected eye centres."""
    app = draw_appearance(len(poses), 11, CLEAN)
    app.values["iris_rgb"][:] = [0.0, 0.0, 1.0]
    app.values["bg_a"][:] = app.values["bg_b"][:] = 0.5
    app.values["gaze_x"][:] = app.values["gaze_y"][:] = 0.0
    images = render_with_appearance(poses, app, CLEAN, threads=1)
    lm = head_landmarks(app)
    eyes = project_points(np.stack([lm["eye_left"], lm["eye_right"]], 1), poses, app, CLEAN.image_size)
    return images, eyes


def _blue_centroids(img: np.ndarray, split_col: float) -> tuple[np.ndarray, np.ndarray]:
    """(col, row) centroids of strongly blue pixels right and left of ``split_col``."""
    rows, cols = np.nonzero((img[..., 2] > 150) & (img[..., 0] < 90) & (img[..., 1] < 90))
    right = cols > split_col
    assert right.sum() >= 3 and (~right).sum() >= 3
    return (np.array([cols[right].mean(), rows[right].mean()]),
            np.array([cols[~right].mean(), rows[~right].mean()]))


def test_rendered_eyes_sit_where_the_pose_projects_them():
    poses = np.array([[0, 0, 0], [30, 0, 0], [-30, 0, 0], [0, 25, 0], [0, -25, 0], [0, 0, 30], [20, 15, -25]], float)
    images, eyes = _blue_eyes(poses)
    for img, (left, right) in zip(images, eyes, strict=True):
        got_left, got_right = _blue_centroids(img, (left[0] + right[0]) / 2)
        np.testing.assert_allclose(got_left, left, atol=1.5)  # subject's left eye: image right at pose 0
        np.testing.assert_allclose(got_right, right, atol=1.5)


def test_pose_signs_are_visible_in_the_image():
    """yaw > 0 turns the face to the image left, pitch > 0 up, roll > 0 clockwise (image y down)."""
    poses = np.array([[0, 0, 0], [35, 0, 0], [-35, 0, 0], [0, 30, 0], [0, -30, 0], [0, 0, 30]], float)
    images, eyes = _blue_eyes(poses)
    (l0, r0), (ly, ry), (lny, rny), (lp, rp), (lnp, rnp), (lr, rr) = (
        _blue_centroids(img, e[:, 0].mean()) for img, e in zip(images, eyes, strict=True))
    mid = [(a + b) / 2 for a, b in ((l0, r0), (ly, ry), (lny, rny), (lp, rp), (lnp, rnp))]
    assert mid[1][0] < mid[0][0] - 8 and mid[2][0] > mid[0][0] + 8  # yaw moves the eyes left / right
    assert mid[3][1] < mid[0][1] - 8 and mid[4][1] > mid[0][1] + 8  # pitch moves them up / down
    assert lr[1] > rr[1] + 8  # roll > 0: the eye on the image right drops (clockwise)


def test_mirroring_flips_yaw_and_roll():
    """fliplr(render(y, p, r, a)) == render(-y, p, -r, a.mirrored()) up to float rounding, noise included."""
    poses = _poses(24, 9)
    app = draw_appearance(24, 9, CFG)
    img = render_with_appearance(poses, app, CFG, threads=1)
    mirrored = render_with_appearance(poses * [-1, 1, -1], app.mirrored(), CFG, threads=1)
    diff = np.abs(img[:, :, ::-1].astype(int) - mirrored)
    assert diff.mean() < 0.1 and np.percentile(diff, 99.9) <= 2
    assert np.abs(img.astype(int) - mirrored).mean() > 10  # the flip itself is far from identity
    assert app.mirrored().mirrored().values.keys() == app.values.keys()
    assert all(np.array_equal(v, app.mirrored().mirrored()[k]) for k, v in app.values.items())


def test_config_fields_are_documented_plain_types():
    hints = typing.get_type_hints(SyntheticFacesConfig)
    for f in dataclasses.fields(SyntheticFacesConfig):
        assert f.metadata.get("help"), f.name
        tp = hints[f.name]
        assert tp in (int, float, bool, str) or typing.get_origin(tp) in (typing.Literal, tuple), f.name
        if tp in (int, float):
            assert "min" in f.metadata and "max" in f.metadata, f.name
            assert f.metadata["min"] <= getattr(CFG, f.name) <= f.metadata["max"], f.name


def test_draw_pose_axes_and_contact_sheet(tmp_path):
    img = np.zeros((64, 64, 3), np.uint8)
    out = draw_pose_axes(img, [0, 0, 0], length=20)
    red = np.nonzero((out[..., 0] > 200) & (out[..., 1] < 80))
    green = np.nonzero((out[..., 1] > 150) & (out[..., 0] < 80))
    assert red[1].min() >= 31 and red[1].max() >= 50  # x axis points right
    assert green[0].max() <= 33 and green[0].min() <= 14  # y axis points up
    turned = draw_pose_axes(img, [60, 0, 0], length=20)
    blue = np.nonzero((turned[..., 2] > 200) & (turned[..., 0] < 80))
    assert blue[1].min() < 20  # yaw 60: the nose axis points to the image left
    poses = _poses(5)
    path = contact_sheet(render_faces(poses, 0, CFG, threads=1), poses, tmp_path / "sheet.png",
                         labels_noisy=poses + 20, outlier_mask=np.array([1, 0, 0, 0, 0], bool), cols=3, scale=2)
    sheet = np.asarray(Image.open(path))
    assert sheet.shape[1] == 3 * (128 + 4) + 4 and sheet.shape[0] > 2 * 128
    assert (sheet[2, 2:130] == [255, 0, 0]).all()  # the outlier's red border


@pytest.mark.parametrize("bad", [{"yaw_range": 200.0}, {"background": "noise"}, {"image_size": 8}])
def test_schema_rejects_bad_values(bad):
    from pipeline.config import validate
    from pipeline.schema import ConfigError

    with pytest.raises(ConfigError):
        validate({"data": {"synthetic_faces": bad}})


def test_real_face_texture_puts_its_eyes_and_mouth_on_the_heads():
    """A real LFW face laid on the head: the face detector finds its eyes and mouth where the rendered
    head's eyes and mouth project, so the photo turns with the head (the label stays exact)."""
    from pipeline.faces.detector import detect

    cfg = replace(CLEAN, real_face_prob=1.0)
    poses = np.array([[0, 0, 0], [25, 0, 0], [0, 15, 0], [0, 0, 25], [-20, -10, 15]], float)
    app = draw_appearance(len(poses), 4, cfg)
    assert app["tex_on"].all() and len(set(app["tex_id"].tolist())) > 1
    images = render_with_appearance(poses, app, cfg, threads=1)
    lm = head_landmarks(app)
    truth = project_points(np.stack([lm["eye_right"], lm["eye_left"], lm["mouth"]], 1), poses, app, cfg.image_size)
    plain = render_with_appearance(poses, type(app)({**app.values, "tex_on": 0.0 * app["tex_on"]}), cfg, threads=1)
    assert np.abs(images.astype(int) - plain).mean() > 2  # the texture changed the face
    pad = cfg.image_size // 2
    for img, want in zip(images, truth, strict=True):
        found = detect(np.pad(img, ((pad, pad), (pad, pad), (0, 0)), mode="edge"))
        assert found, "no face found on a textured render"
        got = found[0].keypoints[[0, 1, 3]] - pad
        eye_gap = np.linalg.norm(want[1] - want[0])
        assert np.abs(got - want).max() < 0.35 * eye_gap, (got, want)


def test_grey_renders_are_grey_and_mirror_with_textures():
    cfg = SyntheticFacesConfig(grey_prob=1.0, real_face_prob=1.0)
    poses = _poses(12, 3)
    app = draw_appearance(12, 3, cfg)
    img = render_with_appearance(poses, app, cfg, threads=1).astype(int)
    assert np.abs(img[..., 0] - img[..., 1]).max() <= 1 and np.abs(img[..., 1] - img[..., 2]).max() <= 1
    mirrored = render_with_appearance(poses * [-1, 1, -1], app.mirrored(), cfg, threads=1)
    diff = np.abs(img[:, :, ::-1] - mirrored)
    assert diff.mean() < 0.1 and np.percentile(diff, 99.9) <= 2


def test_camera_roll_turns_the_whole_figure_and_is_off_by_default():
    """A tilted camera (camera_roll_prob) turns neck and shoulders with the head's roll: a frontal head at
    roll t is then the upright figure turned by t about the head's centre, so a model cannot read roll off
    an upright neck. Off (the default), the same draw gives the old renders bit for bit."""
    from pipeline.data.transforms import rotate_image

    cfg = replace(CLEAN, camera_roll_prob=1.0)
    app = draw_appearance(3, 5, cfg)
    assert app["camera_roll"].all()
    t = 30.0
    upright = render_with_appearance(np.zeros((3, 3)), app, cfg, threads=1)
    tilted = render_with_appearance(np.array([[0, 0, t]] * 3, float), app, cfg, threads=1)
    neck_up = render_with_appearance(np.array([[0, 0, t]] * 3, float),
                                     type(app)({**app.values, "camera_roll": 0.0 * app["camera_roll"]}), cfg,
                                     threads=1)
    centre = project_points(np.zeros((3, 1, 3)), np.zeros((3, 3)), app, cfg.image_size)[:, 0]

    def figure(img: np.ndarray) -> np.ndarray:  # the silhouette: the light stays with the camera
        return np.abs(img.astype(int) - img[1, 1]).sum(-1)[16:112, 16:112] > 24  # away from the edges

    for i in range(3):
        turned = figure(rotate_image(upright[i], t, tuple(centre[i] + 0.5)))
        miss_tilted = (turned != figure(tilted[i])).mean()
        miss_neck_up = (turned != figure(neck_up[i])).mean()
        assert miss_tilted < 0.02 and miss_neck_up > 3 * miss_tilted, (miss_tilted, miss_neck_up)
    off = replace(CFG, camera_roll_prob=0.0)
    poses = _poses(8, 2)
    assert np.array_equal(render_faces(poses, 4, CFG, threads=1), render_faces(poses, 4, off, threads=1))
