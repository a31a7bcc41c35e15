"""``python -m pipeline predict``: real photos and a video made from them through an exported int8 TFLite
face model; rows, annotated output, skipped inputs, exit codes, model errors and the smoothing filter.

The model is the briefly trained tiny student of tests/test_exporters.py, exported to tflite_int8 with a
face model's meta (``input.crop`` from the default ``CropSpec``, ``smoothing``): its angles are not a
head pose, but every number it gives is checked against the same artifact run apart from predict.
"""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks.predict_video import make_video
from exporters.export import export_all
from exporters.formats import ExportOptions
from exporters.metadata import META_FILE, artifact_meta, base_meta
from pipeline import api
from pipeline.cli import main
from pipeline.data.transforms import frame_pose
from pipeline.faces import photos, smoothing
from pipeline.faces.crop import CropSpec, crop_angle, crop_pixels, normalize
from pipeline.faces.locate import BOX_SOURCE, locator
from pipeline.faces.smoothing import PoseSmoother
from pipeline.predict.media import count_frames
from pipeline.predict.run import COLUMNS, Tracks
from tests.test_exporters import _images, _meta, ptq_student

PHOTOS = ("hopper", "astronaut", "camera")


@pytest.fixture(scope="module")
def artifact(tmp_path_factory) -> Path:
    model, int8 = ptq_student()
    out = tmp_path_factory.mktemp("export")
    export_all(model, int8, _images(8, 7), out, ["tflite_int8"],
               _meta(crop=CropSpec().framing()), ExportOptions(output_range=(-120.0, 120.0)))
    return out / "tflite_int8" / "tflite_int8.tflite"


def _reference(artifact: Path, rgb: np.ndarray) -> list[tuple[tuple, np.ndarray]]:
    """(box, yaw/pitch/roll) per face, computed apart from predict's model class: the runtime straight."""
    from exporters.artifact_io import runtime_inputs, runtime_outputs
    from exporters.runtimes import open_runtime

    meta = json.loads((artifact.parent / META_FILE).read_text())
    spec = CropSpec.from_meta(meta)
    assert spec.box_source == BOX_SOURCE  # export names the detector's second look
    session = open_runtime("tflite_int8", artifact, 1)
    names = meta["outputs"][0]["names"]
    idx = [names.index(n) for n in ("yaw", "pitch", "roll")]

    def run(crop: np.ndarray) -> np.ndarray:
        x = runtime_inputs(normalize(crop, replace(spec, layout="NCHW")), meta)
        return runtime_outputs(session.run(x), meta)[0, idx]

    # a crop turned with the eye line reads the pose on the turned crop: turned back into the frame
    return [(d.box, frame_pose(run(crop_pixels(rgb, d.box, spec, d.keypoints)), crop_angle(spec, d.keypoints)))
            for d in locator(spec.box_source)(rgb)]


def _csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _photo_folder(folder: Path) -> Path:
    folder.mkdir()
    for name in PHOTOS:
        Image.fromarray(photos.load(name)).save(folder / f"{name}.png")
    return folder


def test_folder_of_real_photos(artifact, tmp_path, capsys):
    folder = _photo_folder(tmp_path / "photos")
    (folder / "more").mkdir()
    Image.fromarray(photos.load("hopper_grey")).save(folder / "more" / "grey.png")
    out = tmp_path / "out"
    assert main(["predict", str(folder), "--model", str(artifact), "--out", str(out), "--save"]) == 0
    assert "3 face(s)" in capsys.readouterr().out
    rows = _csv(out / "predictions.csv")
    assert list(rows[0]) == list(COLUMNS)
    assert [Path(r["file"]).stem for r in rows] == sorted(PHOTOS)  # not the subfolder: no --recursive
    for row in rows:
        assert row["error"] == "" and row["face"] == "0" and row["frame"] == "0"
        (box, pose), = _reference(artifact, photos.load(Path(row["file"]).stem))
        assert np.allclose([float(row[k]) for k in ("left", "top", "right", "bottom")], box, atol=0.01)
        assert np.allclose([float(row[k]) for k in ("yaw", "pitch", "roll")], pose, atol=1e-3)
        assert 0.5 <= float(row["score"]) <= 1 and all(float(row[k]) > 0 for k in ("detect_ms", "crop_ms",
                                                                                      "infer_ms"))
    saved = json.loads((out / "predictions.json").read_text())
    assert saved["counts"]["faces"] == 3 and saved["model"]["format"] == "tflite_int8"
    assert [r["yaw"] for r in saved["rows"]] == [float(r["yaw"]) for r in rows]
    for name in PHOTOS:  # annotated copies: same size, pixels changed where the box and axes are drawn
        drawn = np.asarray(Image.open(out / "annotated" / f"{name}.png"))
        assert drawn.shape == photos.load(name).shape and (drawn != photos.load(name)).any()

    assert main(["predict", str(folder), "--model", str(artifact.parent), "--out", str(out), "-r"]) == 0
    assert len(_csv(out / "predictions.csv")) == 4  # the subfolder too; the format folder names the artifact
    assert api.predict(folder, model=artifact.parent.parent, out=out).model["path"] == str(artifact)  # export folder
    result = api.predict(str(folder / "*.png"), model=artifact, out=tmp_path / "glob")
    assert len(result.rows) == 3 and result.counts["files"] == 3


def test_video_rows_per_frame_smoothing_and_annotated_video(artifact, tmp_path):
    video = make_video(tmp_path / "sweep.mp4", "hopper", frames=12, max_angle=30.0)
    out = tmp_path / "out"
    assert main(["predict", str(video), "--model", str(artifact), "--out", str(out), "--save", "--smooth"]) == 0
    rows = _csv(out / "predictions.csv")
    assert [int(r["frame"]) for r in rows] == list(range(12)) and {r["face"] for r in rows} == {"0"}
    assert np.allclose(np.diff([float(r["time_s"]) for r in rows]), 1 / 30, atol=1e-3)
    assert {r["track"] for r in rows} == {"0"}  # the one face followed through the sweep
    raw = np.array([[float(r[a]) for a in ("yaw", "pitch", "roll")] for r in rows])
    assert raw[:, 2].std() > 0  # the model's answers move with the turning face: the filter has work
    expected = [raw[0]]
    for x in raw[1:]:  # the app's PoseSmoother by hand: alpha 0.5 on each new value
        expected.append(expected[-1] + 0.5 * (x - expected[-1]))
    got = np.array([[float(r[f"{a}_smoothed"]) for a in ("yaw", "pitch", "roll")] for r in rows])
    assert np.allclose(got, expected, atol=2e-3)  # rows keep 3 decimals
    annotated = out / "annotated" / "sweep.mp4"
    assert count_frames(annotated) == 12
    assert json.loads((out / "predictions.json").read_text())["smoothing"] == {"alpha": 0.5, "max_gap_s": 0.5}


def test_corrupt_unsupported_and_faceless_inputs_are_reported_and_skipped(artifact, tmp_path, capsys):
    folder = tmp_path / "mixed"
    folder.mkdir()
    Image.fromarray(photos.load("hopper")).save(folder / "hopper.jpg")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (folder / "clip.mp4").write_bytes(b"not a video either")
    (folder / "notes.txt").write_text("hello")
    Image.fromarray(np.full((90, 120, 3), 128, np.uint8)).save(folder / "blank.png")
    out = tmp_path / "out"
    assert main(["predict", str(folder), "--model", str(artifact), "--out", str(out)]) == 1  # some input skipped
    err = capsys.readouterr().err
    assert "3 input(s) skipped" in err and len(err.strip().splitlines()) == 1
    rows = {Path(r["file"]).name: r for r in _csv(out / "predictions.csv")}
    assert rows["broken.jpg"]["error"].startswith("unreadable")
    assert rows["clip.mp4"]["error"].startswith("unreadable")
    assert rows["notes.txt"]["error"] == "unsupported format: .txt"
    assert rows["blank.png"]["error"] == "no face" and rows["blank.png"]["yaw"] == ""
    assert rows["hopper.jpg"]["error"] == "" and rows["hopper.jpg"]["yaw"] != ""
    counts = json.loads((out / "predictions.json").read_text())["counts"]
    assert (counts["unreadable"], counts["unsupported"], counts["no_face"], counts["faces"]) == (2, 1, 1, 1)
    # a frame without a face is a result, not a failure
    assert main(["predict", str(folder / "blank.png"), "--model", str(artifact), "--out", str(out)]) == 0


def test_bad_model_or_source_is_one_line_and_exit_2(artifact, tmp_path, capsys):
    def one_line(*args: str) -> str:
        assert main(["predict", *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: "), err
        return err[0]

    photo = tmp_path / "hopper.png"
    Image.fromarray(photos.load("hopper")).save(photo)
    assert "no such file or folder" in one_line(str(photo), "--model", str(tmp_path / "nope.tflite"))
    assert "not an artifact kind" in one_line(str(photo), "--model", str(photo))
    assert ".mlmodel" in one_line(str(photo), "--model", str(_touch(tmp_path / "m.mlmodel")))
    assert "no model_meta.json" in one_line(str(photo), "--model", str(_copy(artifact, tmp_path / "bare")))
    no_crop = _copy(artifact, tmp_path / "old", meta=lambda m: {**m, "input": {k: v for k, v in m["input"].items()
                                                                                if k != "crop"}})
    assert "no input.crop" in one_line(str(photo), "--model", str(no_crop))
    assert "no such file or folder" in one_line(str(tmp_path / "missing.jpg"), "--model", str(artifact))
    assert "matches no file" in one_line(str(tmp_path / "*.gif"), "--model", str(artifact))


def _touch(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def _copy(artifact: Path, folder: Path, meta=None) -> Path:
    folder.mkdir()
    (folder / artifact.name).write_bytes(artifact.read_bytes())
    if meta is not None:
        m = json.loads((artifact.parent / META_FILE).read_text())
        (folder / META_FILE).write_text(json.dumps(meta(m)))
    return folder / artifact.name


def test_smoother_is_the_apps_filter_and_export_writes_its_constants():
    s = PoseSmoother(alpha=0.25, max_gap_s=0.5)
    a, b, c = np.array([10.0, 0, -4]), np.array([30.0, 8, 0]), np.array([-50.0, 1, 2])
    assert np.allclose(s.update(a, 0.0), a)
    assert np.allclose(s.update(b, 0.1), a + 0.25 * (b - a))  # 10 + 0.25 * 20 = 15
    assert np.allclose(s.update(c, 0.7), c)  # 0.6 s later: more than the gap, starts again
    assert np.allclose(s.update(a, 0.6), a)  # time ran backwards (a new clip): starts again
    with pytest.raises(ValueError, match="alpha"):
        PoseSmoother(alpha=0.0)
    face = base_meta(name="m", version="1", description="d", author="a", license="l", config_hash="h",
                     crop=CropSpec().framing())
    meta = artifact_meta(face, "tflite_int8", (1, 3, 64, 64), 3)
    assert meta["smoothing"] == {"alpha": smoothing.ALPHA, "max_gap_s": smoothing.MAX_GAP_S} == {"alpha": 0.5,
                                                                                               "max_gap_s": 0.5}
    plain = base_meta(name="m", version="1", description="d", author="a", license="l", config_hash="h")
    assert "smoothing" not in artifact_meta(plain, "tflite_int8", (1, 3, 64, 64), 3)  # not a face model
    assert PoseSmoother.from_meta({**meta, "smoothing": {"alpha": 0.2, "max_gap_s": 1.0}}).alpha == 0.2


def test_tracks_follow_faces_by_overlap_not_by_order():
    tracks = Tracks({"smoothing": {"alpha": 0.5, "max_gap_s": 0.5}})
    left, right = (0.0, 0.0, 10.0, 10.0), (50.0, 0.0, 60.0, 10.0)
    first = [t for t, _ in tracks.assign([left, right], 0.0)]
    swapped = [t for t, _ in tracks.assign([(51.0, 0.0, 61.0, 10.0), (1.0, 0.0, 11.0, 10.0)], 0.04)]
    assert swapped == first[::-1]
    assert [t for t, _ in tracks.assign([left], 1.0)] == [2]  # after a gap: a new face, a fresh filter


@pytest.mark.slow
def test_a_run_folder_predicts_with_its_shipped_int8_tflite(smoke_run, tmp_path):
    out, _ = smoke_run
    photo = tmp_path / "astronaut.png"
    Image.fromarray(photos.load("astronaut")).save(photo)
    result = api.predict(photo, model=out / "smoke", out=tmp_path / "pred")
    assert result.model["format"] == "tflite_int8" and Path(result.model["path"]).name == "tflite_int8.tflite"
    (row,) = result.rows
    (box, pose), = _reference(Path(result.model["path"]), photos.load("astronaut"))
    assert np.allclose([row[a] for a in ("yaw", "pitch", "roll")], pose, atol=1e-3)
