"""The pose model ``predict`` runs: an exported artifact, found from ``--model``, opened in its runtime.

``--model`` is an artifact file (``.tflite``, ``.onnx``, ``.pte``; ``.mlpackage`` on macOS), a format
folder of an export stage (the one artifact beside a ``model_meta.json``), an export stage folder or a
run folder; of the last two the shipped artifact (``exporters.formats.SHIPPED_FORMAT``, the int8 TFLite
the app ships) is used. Everything about the model's input and output comes from the ``model_meta.json`` beside the
artifact: the crop spec (``CropSpec.from_meta``), the tensor layout, dtype and int8 quantization
(``exporters.artifact_io``), the output names and the video smoothing constants.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from exporters.artifact_io import runtime_inputs, runtime_outputs
from exporters.formats import FORMATS, SHIPPED_FORMAT
from exporters.metadata import META_FILE
from exporters.runtimes import Session, open_runtime
from pipeline import contract
from pipeline.faces.crop import CropSpec, normalize
from pipeline.faces.locate import locator
from pipeline.runs import UserError

POSE = ("yaw", "pitch", "roll")
DEFAULT_MODEL = Path("runs/face_pose")
SUFFIXES = sorted({f.suffix for f in FORMATS.values()})
_KINDS = f"an exported artifact ({', '.join(SUFFIXES)}), its format folder, an export folder or a run folder"


@dataclass
class PoseModel:
    """An open artifact with its meta and crop spec; :meth:`predict` maps one face crop to (yaw, pitch, roll)."""

    path: Path
    format: str
    meta: dict
    spec: CropSpec
    session: Session
    order: list[int]  # indices of yaw, pitch, roll among the artifact's outputs

    def predict(self, crop_rgb: np.ndarray) -> np.ndarray:
        """(size, size, 3) uint8 RGB crop -> float64 (yaw, pitch, roll) in the model's units."""
        # NCHW floats first: runtime_inputs lays them out and quantizes them as the artifact's meta says
        x = runtime_inputs(normalize(crop_rgb, replace(self.spec, layout="NCHW")), self.meta)
        return runtime_outputs(self.session.run(x), self.meta)[0, self.order].astype(np.float64)

    def describe(self) -> dict:
        return {"path": str(self.path), "format": self.format, "runtime": self.session.how,
                "name": self.meta.get("name"), "config_hash": self.meta.get("config_hash"),
                "units": self.meta["outputs"][0].get("units"), "crop": self.spec.framing()}

    def close(self) -> None:
        self.session.close()


def _shipped_artifact(run_dir: Path) -> Path:
    export = contract.Run.open(run_dir).stage("export")
    if export is None:
        raise UserError(f"--model {run_dir}: the run has no complete export stage; run the pipeline through "
                        "export first, or give an artifact path")
    artifact = contract.exported_artifacts(export).get(SHIPPED_FORMAT)
    if artifact is None:
        raise UserError(f"--model {run_dir}: its export stage has no verified {SHIPPED_FORMAT}; add it to "
                        "export.formats and re-export (python -m pipeline export RUN), or give an artifact path")
    return artifact


def _in_folder(folder: Path) -> Path:
    """The artifact of a format folder: the one file or package beside model_meta.json of a known suffix."""
    found = [p for p in sorted(folder.iterdir()) if p.suffix in SUFFIXES and not p.name.startswith(".")]
    if len(found) != 1:
        raise UserError(f"--model {folder}: expected one artifact ({', '.join(SUFFIXES)}) beside "
                        f"{META_FILE}, found {len(found)}; give the artifact's path")
    return found[0]


def find_artifact(model: str | Path) -> Path:
    """The artifact path ``--model`` names (see the module docstring)."""
    path = Path(model)
    if not path.exists():
        hint = " (the default: train one with `python -m pipeline run face_pose.yaml`)" \
            if path == DEFAULT_MODEL else ""
        raise UserError(f"--model {path}: no such file or folder{hint}; give {_KINDS}")
    if path.suffix in (".mlpackage", ".mlmodel"):
        return path
    if path.is_dir():
        if (path / "summary.json").is_file():
            return _shipped_artifact(path)
        if (path / META_FILE).is_file():
            return _in_folder(path)
        if (path / SHIPPED_FORMAT / META_FILE).is_file():  # an export stage folder: its shipped artifact
            return _in_folder(path / SHIPPED_FORMAT)
        raise UserError(f"--model {path}: a folder with no summary.json (a run), {META_FILE} (an export format "
                        f"folder) or {SHIPPED_FORMAT}/{META_FILE} (an export folder); give {_KINDS}")
    if path.suffix not in SUFFIXES:
        raise UserError(f"--model {path}: {path.suffix or 'no suffix'} is not an artifact kind the pipeline "
                        f"exports; give {_KINDS}")
    return path


def _check_coreml(path: Path) -> None:
    if path.suffix == ".mlmodel":
        raise UserError(f"--model {path}: .mlmodel (Core ML's older format) is not exported by this pipeline; "
                        "give its .mlpackage (on macOS) or the run's .tflite / .onnx")
    from exporters.coreml import _can_predict

    if not _can_predict():
        raise UserError(f"--model {path}: Core ML packages run only on macOS (coremltools cannot predict on "
                        f"{sys.platform}); give the run's .tflite or .onnx artifact here")


def read_model_meta(artifact: Path) -> dict:
    meta_path = artifact.parent / META_FILE
    if not meta_path.is_file():
        raise UserError(f"--model {artifact}: no {META_FILE} beside it; predict reads the crop spec and I/O from "
                        "it: give the artifact inside its export folder, as export wrote it")
    try:
        return json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{meta_path}: unreadable ({exc}); re-export the model") from None


def open_model(model: str | Path = DEFAULT_MODEL, threads: int = 1) -> PoseModel:
    """Find, check and open the model ``--model`` names; every problem is one-line :class:`UserError`."""
    artifact = find_artifact(model)
    meta = read_model_meta(artifact)
    fmt = meta.get("format")
    if fmt not in FORMATS or FORMATS[fmt].suffix != artifact.suffix:
        raise UserError(f"{artifact.parent / META_FILE}: format {fmt!r} does not describe {artifact.name}; "
                        "give the artifact with the model_meta.json export wrote beside it")
    try:
        spec = CropSpec.from_meta(meta)
        locator(spec.box_source)  # a box source this package cannot draw fails here, not on every frame
    except (ValueError, KeyError) as exc:
        raise UserError(f"--model {artifact}: {exc}") from None
    names = list(meta["outputs"][0].get("names") or [])
    missing = [n for n in POSE if n not in names]
    if missing:
        raise UserError(f"--model {artifact}: its outputs are {names}, without {missing}; predict needs a "
                        "head-pose model (yaw, pitch, roll)")
    if FORMATS[fmt].family == "coreml":
        _check_coreml(artifact)
    try:
        session = open_runtime(fmt, artifact, threads)
    except ModuleNotFoundError as exc:
        raise UserError(f"--model {artifact}: the {fmt} runtime is not installed ({exc.name}); install the "
                        "project's extra for it or give another format") from None
    except (RuntimeError, ValueError, OSError) as exc:
        raise UserError(f"--model {artifact}: the runtime cannot open it ({exc}); re-export it") from None
    return PoseModel(artifact, fmt, meta, spec, session, [names.index(n) for n in POSE])
