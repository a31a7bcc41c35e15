"""Tests for exporters.golden: goldens are self-consistent, follow the crop spec of model_meta.json, and
the committed ones (android_demo/core/src/test/resources/golden) assert a trained model's pose.

A tiny student (the one tests/test_exporters.py trains) is exported to tflite_fp32 and to tflite_int8
with int8 I/O; the writer's files must hold the crop and tensor its own preprocessing builds from the
stored frames (bit for bit), the outputs the LiteRT interpreter computes on exactly that tensor, their
dequantization, and the axes of pipeline.data.visualize. The Kotlin core checks itself against the same
kind of files (android_demo/test-core.sh); ``pose_failures`` is its pose assertion, so a constant model
failing it here is a constant model failing the Kotlin test.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from exporters import golden
from exporters.export import export_all
from exporters.formats import ExportOptions, has_module
from exporters.metadata import META_FILE, read_meta
from pipeline.data.transforms import frame_pose
from pipeline.faces.crop import CropSpec
from tests.test_exporters import _images, _meta, ptq_student

COMMITTED = Path(__file__).resolve().parents[1] / "android_demo/core/src/test/resources/golden"
MAE = {"yaw": 10.0, "pitch": 8.0, "roll": 6.0}
needs_litert = pytest.mark.skipif(not has_module("litert_torch"), reason="litert-torch is not installed")


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    model, int8 = ptq_student()
    run = tmp_path_factory.mktemp("run")
    export_all(model, int8, _images(8, 7), run, ["tflite_fp32", "tflite_int8"],
               _meta(crop=CropSpec().framing()), ExportOptions(int8_io=True, output_range=(-120.0, 120.0)))
    return run


@pytest.fixture(scope="module")
def goldens(exported, tmp_path_factory) -> tuple:
    out = tmp_path_factory.mktemp("golden")
    return exported, out, golden.write_goldens(exported, out, test_mae=MAE)


def _load(path) -> dict:
    return json.loads(path.read_text())


def _rgb(frame: dict) -> np.ndarray:
    return golden.decode(frame["rgb"], "uint8").reshape(frame["height"], frame["width"], 3)


@needs_litert
def test_files_written_and_small(goldens) -> None:
    _, out, paths = goldens
    assert sorted(p.name for p in paths) == ["frames.json", "tflite_fp32.json", "tflite_int8_int8io.json"]
    assert sum(p.stat().st_size for p in paths) < 500_000
    frames = _load(out / golden.FRAMES_FILE)["frames"]
    assert [f["name"] for f in frames] == [c.name for c in golden.CASES] + [f"photo_{p}" for p in golden.PHOTOS]
    assert all(f["kind"] == "photo" and f["pose"] is None and "detector" in f["box_from"] for f in frames[-2:])
    assert all(f["second_look"]["face"] == {"box": f["box"], "eyes": f["eyes"]} for f in frames[-2:])  # spec: second look


@needs_litert
@pytest.mark.parametrize("name", ["tflite_fp32", "tflite_int8_int8io"])
def test_golden_is_what_the_artifact_computes(goldens, name: str) -> None:
    from ai_edge_litert.interpreter import Interpreter

    run, out, _ = goldens
    g = _load(out / f"{name}.json")
    fmt = name.removesuffix("_int8io")
    meta = read_meta(run / fmt / META_FILE)
    spec = CropSpec.from_meta(meta)
    assert g["meta"] == meta and g["tolerances"]["pose_deg"]["yaw"] == golden.POSE_TOLERANCE_MAE_MULTIPLE * MAE["yaw"]
    frames = _load(out / golden.FRAMES_FILE)["frames"]
    interp = Interpreter(model_path=str(run / fmt / f"{fmt}.tflite"))
    interp.allocate_tensors()
    inp, outp = interp.get_input_details()[0], interp.get_output_details()[0]
    for i, (frame, case) in enumerate(zip(frames, g["cases"], strict=True)):
        crop = golden.faces_crop.crop_pixels(_rgb(frame), frame["box"], spec)
        assert case["crop_sha256"] == golden._sha256(crop)
        if i == 0:
            assert np.array_equal(golden.decode(case["crop_rgb"], "uint8").reshape(crop.shape), crop)
        tensor = golden.input_tensor(crop, meta)
        assert golden._sha256(tensor) == case["input_sha256"]
        interp.set_tensor(inp["index"], tensor)
        interp.invoke()
        raw = interp.get_tensor(outp["index"]).reshape(-1)
        assert raw.tolist() == case["output_raw"] and raw.dtype.name == case["output_dtype"]
        pose = golden.dequantize(raw, meta["outputs"][0])
        assert np.allclose(pose, case["pose"], rtol=0, atol=1e-12)
        q = meta["outputs"][0]["quantization"]
        assert g["tolerances"]["decode_deg"] == (q["scale"] if q else golden.FLOAT_POSE_DEG)
        axes = golden.axes(case["pose"], tuple(case["axes"]["center"]), case["axes"]["length"])
        assert axes == case["axes"]


@needs_litert
def test_crop_spec_comes_from_model_meta(exported, tmp_path) -> None:
    """Another framing in model_meta.json moves every box-derived square; no input.crop is an error."""
    fmt = tmp_path / "tflite_fp32"
    shutil.copytree(exported / "tflite_fp32", fmt)
    meta = read_meta(fmt / META_FILE)
    meta["input"]["crop"] = {**meta["input"]["crop"], "scale": 1.7, "shift_y": 0.05, "padding": "zero"}
    (fmt / META_FILE).write_text(json.dumps(meta))
    paths = golden.write_goldens(fmt, tmp_path / "out", test_mae=MAE)
    g, frames = _load(paths[1]), _load(paths[0])["frames"]
    spec = CropSpec.from_meta(meta)
    for frame, case in zip(frames, g["cases"], strict=True):
        assert case["square"] == list(golden.faces_crop.crop_square(frame["box"], 1.7, 0.05))
        assert case["crop_sha256"] == golden._sha256(golden.faces_crop.crop_pixels(_rgb(frame), frame["box"], spec))
    del meta["input"]["crop"]
    (fmt / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="no input.crop"):
        golden.write_goldens(fmt, tmp_path / "out2", test_mae=MAE)


def test_rendered_boxes_map_back_onto_the_rendered_square() -> None:
    spec = CropSpec()
    box = golden.box_for_square(8.0, -4.0, 80.0, spec)
    assert np.allclose(golden.faces_crop.crop_square(box, spec.scale, spec.shift_y), (8.0, -4.0, 80.0))


def test_committed_goldens_pass_and_a_constant_model_fails() -> None:
    """The committed goldens come from a trained model that gives the known poses; the same files with
    every output replaced by one constant (an untrained model) fail the same assertion."""
    frames = _load(COMMITTED / golden.FRAMES_FILE)["frames"]
    names = sorted(p.name for p in COMMITTED.glob("*.json") if p.name != golden.FRAMES_FILE)
    assert len(names) >= 2
    for name in names:
        g = _load(COMMITTED / name)
        assert g["golden_version"] == golden.GOLDEN_VERSION
        assert golden.pose_failures(g, frames) == [], name
        spec = CropSpec.from_meta(g["meta"])  # the crop the Kotlin core must cut, from the meta's spec
        for frame, case in zip(frames, g["cases"], strict=True):
            eyes = np.asarray(frame["eyes"])
            assert golden._sha256(golden.faces_crop.crop_pixels(_rgb(frame), frame["box"], spec, eyes)) == \
                case["crop_sha256"]
        constant = copy.deepcopy(g)
        mean = np.mean([c["pose"] for c in g["cases"]], axis=0).tolist()
        for frame, case in zip(frames, constant["cases"], strict=True):  # one reading on every crop,
            case["pose"] = mean  # turned back into each frame as the app turns it
            angle = golden.faces_crop.crop_angle(spec, np.asarray(frame["eyes"]))
            case["pose_in_frame"] = frame_pose(np.asarray(mean), angle).tolist()
        failures = golden.pose_failures(constant, frames)
        assert any("yaw spread" in f for f in failures) and any("vs known" in f for f in failures), failures


def test_committed_photos_carry_their_second_look() -> None:
    """The photos' second look in the pieces the Kotlin core recomputes (GoldenTest.secondLookMatchesPython)
    follows pipeline.faces.locate: the region of the first detection, the patch hashes, the detection on
    the patch mapped back, which is what ``locate`` finds and the face the crop is cut from."""
    from pipeline.faces import locate
    from pipeline.faces.detector import Detection, detect

    spec = CropSpec.from_meta(_load(COMMITTED / "tflite_int8.json")["meta"])
    photos = [f for f in _load(COMMITTED / golden.FRAMES_FILE)["frames"] if f["kind"] == "photo"]
    assert len(photos) == len(golden.PHOTOS)
    for f in photos:
        look, rgb = f["second_look"], _rgb(f)
        first = Detection(tuple(look["first"]["box"]), 1.0, np.asarray(look["first"]["eyes"]))
        reg = locate.region(first)
        assert look["region"] == {"square": list(reg.square), "turn": list(reg.turn), "pivot": list(reg.pivot)}
        assert set(look["patch_sha256"]) == {str(look["patch_side"]), str(golden.APP_PATCH_SIDE)}
        for side, sha in look["patch_sha256"].items():
            assert golden._sha256(locate.patch(rgb, reg, int(side))) == sha, (f["name"], side)
        if look["again"] is None:  # the patch showed no face: the first detection stands
            assert look["face"] == look["first"]
        else:
            again = Detection(tuple(look["again"]["box"]), 1.0, np.asarray(look["again"]["eyes"]))
            assert golden._face(locate.from_patch(again, reg, look["patch_side"])) == look["face"]
        found = locate.locate(rgb)[0]
        assert golden._face(found) == look["face"] and golden._face(first) == golden._face(detect(rgb)[0])
        want = look["face"] if spec.box_source == locate.BOX_SOURCE else look["first"]
        assert {"box": f["box"], "eyes": f["eyes"]} == want


def test_clear_error_without_artifacts(tmp_path, capsys) -> None:
    with pytest.raises(FileNotFoundError, match="no exported TFLite artifact"):
        golden.find_artifacts(tmp_path)
    assert golden.main([str(tmp_path / "missing"), str(tmp_path / "out")]) == 2
    assert "does not exist" in capsys.readouterr().err
