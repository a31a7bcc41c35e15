"""Stage outputs as a contract: each stage's typed metrics, and the one place that loads its products.

A stage returns ``StageOutput(as_metrics(XMetrics(...)), artifacts)``: the dataclass fixes the field
names and types, ``as_metrics`` turns it into the JSON written to ``manifest.json`` and copied into
``summary.json`` (the same keys as before, so readers of the summary keep working). Readers never
index those dicts by string: :func:`read_metrics` rebuilds the dataclass from a manifest and names
the missing field and the fix when a manifest is older than the code.

Artifact paths are resolved through the manifest's ``artifacts`` map (:func:`artifact_path`), and
the loaders here (teacher, student, int8 student, predictions, training curves, benchmark and export
reports) are what later stages, the ablation and the report use.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, Union

from exporters.formats import FORMATS
from pipeline.models import build_model
from pipeline.models.student import SingleOutput
from pipeline.runs import (
    MANIFEST,
    ArtifactError,
    StageDir,
    load_checkpoint,
    load_weights,
    read_json,
    read_npz,
)

T = TypeVar("T")
PerOutput = dict[str, float]


class ContractError(ArtifactError):
    """A manifest's metrics do not match the stage's contract; the message names the field and the fix."""


# ---------------------------------------------------------------------------- metrics, one per stage
@dataclass
class SourceMetrics:
    n_train: int
    n_val: int
    n_test: int
    skipped: int
    skipped_by_reason: dict[str, int]
    read_seconds: float
    samples_per_second: float


@dataclass
class DataMetrics:
    n_train: int
    n_val: int
    n_test: int
    train_outlier_fraction: float
    train_inlier_noise_std: float


@dataclass
class TeacherMetrics:
    test_mae: float
    test_mae_per_output: PerOutput
    test_rmse: float
    val_mae: float
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    train_seconds: float
    params: int
    macs: int
    arch: str
    train_precision: str = "fp32"  # bf16 or fp32: what the training steps ran in (DeviceInfo.precision)


@dataclass
class HeadErrors:
    test_mae: float
    test_mae_per_output: PerOutput
    test_rmse: float


@dataclass
class FlaggerMetrics:
    """The teacher-residual outlier flagger on the training labels; precision/recall need injected outliers."""

    threshold: dict[str, float | None]
    flagged_samples: int
    flagged_elements: int
    precision: float | None
    recall: float | None
    # Squared label error of the injected outliers the flagger keeps, over that of the clean labels it
    # keeps: above 1, the missed outliers put more error into the label loss than annotation noise does.
    missed_error_share: float | None = None


@dataclass
class DistillMetrics:
    test_mae: float
    test_mae_per_output: PerOutput
    test_rmse: float
    head: str
    method: str
    heads: dict[str, HeadErrors]
    heads_val_mae: dict[str, float]
    heads_val_mae_unflagged: dict[str, float]
    val_mae_unflagged: float
    val_mae: float
    best_epoch: int
    train_seconds: float
    params: int
    macs: int
    teacher_macs: int
    macs_fraction_of_teacher: float
    teacher_test_mae: float
    flagger: FlaggerMetrics
    train_precision: str = "fp32"  # bf16 or fp32 (DeviceInfo.precision)


@dataclass
class QatMetrics:
    test_mae: float
    test_mae_per_output: PerOutput
    test_rmse: float
    float_test_mae: float
    float_test_mae_per_output: PerOutput
    ptq_test_mae: float
    ptq_test_mae_per_output: PerOutput
    qat_minus_float: float
    val_mae: float
    best_epoch: int
    train_seconds: float
    quantization: dict[str, Any]


@dataclass
class ExportedArtifact:
    status: str
    size_bytes: int | None
    max_abs_diff: float | None
    mean_abs_diff: float | None
    tolerance: float | None
    reason: str | None


@dataclass
class ExportMetrics:
    artifacts: dict[str, ExportedArtifact]
    status_counts: dict[str, int]
    # One line per failed format ("onnx_int8: parity failed: max 8.19 mean 1.02 (tol 4.5 / 1)"); such a
    # format is not in the manifest's artifact map. Any stage's metrics may carry ``failures``: the
    # orchestrator copies them into summary.json and the run exits 1 (pipeline.orchestrate).
    failures: list[str] = field(default_factory=list)
    teacher_artifacts: dict[str, ExportedArtifact] = field(default_factory=dict)  # "teacher/<format>" keys


@dataclass
class BenchmarkMetrics:
    headline: dict[str, Any]  # ratios student vs teacher and int8 vs fp32 (see benchmarks/harness.py)
    host: dict[str, Any]  # pipeline.device.host_description()
    failures: list[str] = field(default_factory=list)  # teacher formats this stage failed to export
    # the real-photo check's worst figures per model (benchmarks.real_faces.headline), or {"skipped": why}
    real_photos: dict[str, Any] = field(default_factory=dict)


@dataclass
class ReportMetrics:
    html: str
    markdown: str
    figures: int
    ablation: str | None = None
    sections: list[str] = field(default_factory=list)


METRICS: dict[str, type] = {"source": SourceMetrics, "data": DataMetrics, "teacher": TeacherMetrics,
                            "distill": DistillMetrics, "qat": QatMetrics, "export": ExportMetrics,
                            "benchmark": BenchmarkMetrics, "report": ReportMetrics}


def as_metrics(metrics: Any) -> dict[str, Any]:
    """A stage's metrics dataclass as the JSON-ready dict its manifest and ``summary.json`` hold."""
    if not dataclasses.is_dataclass(metrics):
        raise TypeError(f"stage metrics must be a dataclass from pipeline.contract, got {type(metrics).__name__}")
    return dataclasses.asdict(metrics)


def _build(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        if value is None:
            return None
        return _build(next(a for a in typing.get_args(tp) if a is not type(None)), value, where)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if origin is dict:
        _, inner = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ContractError(f"{where}: expected a mapping, got {type(value).__name__}")
        return {k: _build(inner, v, f"{where}.{k}") for k, v in value.items()}
    return value


def from_dict(cls: type[T], data: Any, where: str = "metrics") -> T:
    """Rebuild ``cls`` from its JSON; a missing field is a :class:`ContractError` naming it."""
    if not isinstance(data, dict):
        raise ContractError(f"{where}: expected a mapping for {cls.__name__}, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            kwargs[f.name] = _build(hints[f.name], data[f.name], f"{where}.{f.name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ContractError(f"{where}: missing field {f.name!r} of {cls.__name__}")
    return cls(**kwargs)


# ---------------------------------------------------------------------------- manifests and paths
def _dir(stage: StageDir | Path) -> Path:
    return stage.path if isinstance(stage, StageDir) else Path(stage)


def manifest(stage: StageDir | Path) -> dict:
    """A complete stage's manifest; a missing or incomplete one names the folder and the fix."""
    path = _dir(stage) / MANIFEST
    try:
        m = read_json(path)
    except (FileNotFoundError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path} is missing or unreadable; rerun that stage (python -m pipeline run ... "
                            f"--force {path.parent.name.rsplit('-', 1)[0]})") from exc
    if m.get("status") != "complete":
        raise ArtifactError(f"{path}: stage {m.get('stage')!r} is not complete; rerun it")
    return m


def read_metrics(stage: StageDir | Path) -> Any:
    """The stage's typed metrics (the dataclass registered in ``METRICS``) from its manifest."""
    m = manifest(stage)
    name = m.get("stage", "")
    if name not in METRICS:
        raise ContractError(f"{_dir(stage) / MANIFEST}: unknown stage {name!r}")
    try:
        return from_dict(METRICS[name], m.get("metrics", {}), f"{name} metrics")
    except ContractError as exc:
        raise ContractError(f"{_dir(stage) / MANIFEST}: {exc}; rebuild it with --force {name}") from exc


def artifact_path(stage: StageDir | Path, key: str) -> Path:
    """The file the stage's manifest lists under ``key``, checked to exist."""
    m = manifest(stage)
    rel = m.get("artifacts", {}).get(key)
    if rel is None:
        raise ArtifactError(f"{_dir(stage) / MANIFEST} lists no artifact {key!r} "
                            f"(has: {', '.join(m.get('artifacts', {})) or 'none'}); rebuild it with "
                            f"--force {m.get('stage')}")
    path = _dir(stage) / rel
    if not path.exists():
        raise ArtifactError(f"{path} is missing; rebuild it with --force {m.get('stage')}")
    return path


def artifacts(stage: StageDir | Path) -> dict[str, Path]:
    """Every artifact the manifest lists, as paths (existing or not)."""
    return {k: _dir(stage) / v for k, v in manifest(stage).get("artifacts", {}).items()}


def exported_artifacts(stage: StageDir | Path, model: str = "student") -> dict[str, Path]:
    """The export stage's verified artifacts of ``model`` ("student" or "teacher") by format name: the
    student's are listed under their format, the teacher's under ``teacher/<format>``."""
    prefix = "" if model == "student" else f"{model}/"
    return {k[len(prefix):]: p for k, p in artifacts(stage).items()
            if k.startswith(prefix) and k[len(prefix):] in FORMATS}


# ---------------------------------------------------------------------------- product loaders
def load_teacher(stage: StageDir | Path, device: Any = "cpu"):
    """The teacher network from the teacher stage, in eval mode on ``device``."""
    ckpt = load_checkpoint(artifact_path(stage, "model"), "teacher", device)
    model = build_model(ckpt["arch"], ckpt["stats"], ckpt.get("width_mult", 1.0))
    load_weights(model, ckpt["state_dict"], artifact_path(stage, "model"), "teacher")
    return model.to(device).eval()


def load_predictions(stage: StageDir | Path) -> dict[str, Any]:
    """The teacher's cached predictions per split ("train", "val", "test")."""
    return read_npz(artifact_path(stage, "predictions"), "teacher")


def load_real_faces(stage: StageDir | Path) -> tuple[Any, Any]:
    """The distill stage's real-face pseudo-labels (``distill.real_faces``): uint8 crops and their targets."""
    z = read_npz(artifact_path(stage, "real_faces"), "distill")
    return z["x"], z["y"]


def load_data_stats(stage: StageDir | Path) -> dict[str, Any]:
    """The data stage's ``stats.json``: output names, units, normalisation, mirror signs."""
    return read_json(artifact_path(stage, "stats"))


def load_threshold(stage: StageDir | Path) -> tuple[float, ...]:
    """The distill stage's per-output outlier threshold e_out, exactly as its loss used it."""
    values = read_json(artifact_path(stage, "threshold")).get("threshold", [])
    return tuple(float("inf") if v is None else float(v) for v in values)


def load_student(stage: StageDir | Path, device: Any = "cpu"):
    """The distilled student as the single-output module (its chosen head) QAT and export consume."""
    ckpt = load_checkpoint(artifact_path(stage, "model"), "distill", device)
    student = build_model(ckpt["arch"], ckpt["stats"], ckpt["width_mult"])
    load_weights(student, ckpt["state_dict"], artifact_path(stage, "model"), "distill")
    return SingleOutput(student, ckpt["head"]).to(device).eval()


def load_int8(stage: StageDir | Path):
    """The QAT stage's converted (Q/DQ) student."""
    import torch

    # the graph calls quantized_decomposed ops: register them before deserializing (a fresh process
    # that has not imported torchao has none)
    from torch.ao.quantization.fx._decomposed import quantized_decomposed_lib  # noqa: F401

    return torch.export.load(artifact_path(stage, "int8_model")).module()


def load_curves(stage: StageDir | Path) -> list[dict]:
    """The per-epoch records of a training stage's ``metrics.jsonl`` (empty when it trained nothing)."""
    try:
        path = artifact_path(stage, "metrics")
    except ArtifactError:
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def load_flagged(stage: StageDir | Path) -> list[dict[str, float]]:
    """The distill stage's flagged training samples: index, label_*, teacher_*, residual_* per row."""
    lines = artifact_path(stage, "flagged_outliers").read_text().splitlines()
    head = lines[0].split(",")
    return [{k: (int(v) if k == "index" else float(v)) for k, v in zip(head, ln.split(","), strict=True)}
            for ln in lines[1:] if ln]


def load_export_report(stage: StageDir | Path, model: str = "student") -> dict:
    """``export_report.json`` of the student's formats, or of the teacher's (``teacher/``)."""
    return read_json(artifact_path(stage, "report" if model == "student" else f"{model}_report"))


def load_benchmark(stage: StageDir | Path) -> dict:
    """``benchmark.json``: host, plan, threads, rows (one per artifact x backend x threads), headline."""
    return read_json(artifact_path(stage, "benchmark_json"))


def load_real_photos(stage: StageDir | Path) -> tuple[dict, bytes] | None:
    """The benchmark stage's real-photo check (``real_photos.json``: per model and photo, the metrics
    of benchmarks/real_faces.py) and its PNG; None when the check did not run (see the stage's metrics)."""
    if "real_photos_json" not in manifest(stage).get("artifacts", {}):
        return None
    return read_json(artifact_path(stage, "real_photos_json")), artifact_path(stage, "real_photos_png").read_bytes()


# Rows of the real-photo check that are not models (benchmarks.photo_check): a roll read off the detector's
# eyes and a constant reading, what the tests grant a model that follows the eyes or does not look at all
PHOTO_REFERENCES = ("ref_eye_line", "ref_constant")


def photo_verdict(passed: bool, roll_only: bool) -> str:
    """How a row of the real-photo check reads: "yes" / "no", or "-" for a reader with no yaw or pitch (the
    eye-line reference), which the targets cannot judge."""
    return "-" if roll_only else "yes" if passed else "no"


# ---------------------------------------------------------------------------- a whole run
@dataclass
class Run:
    """A run folder ``<out>/<experiment>``: each complete stage's folder and every stage's status."""

    root: Path
    dirs: dict[str, Path]  # complete stages only
    statuses: dict[str, str] = field(default_factory=dict)

    @classmethod
    def open(cls, root: Path) -> Run:
        """From ``summary.json`` of a finished ``python -m pipeline run``."""
        root = Path(root)
        path = root / "summary.json"
        if not path.is_file():
            raise ArtifactError(f"{root}: not a run folder (no summary.json); give <out>/<experiment> of a "
                                "finished `python -m pipeline run`")
        stages = read_json(path).get("stages", {})
        # stage folders always sit in the run folder: found by name, a moved or copied run still opens
        dirs = {n: root / Path(e["dir"]).name for n, e in stages.items() if e.get("status") in ("ran", "cached")}
        return cls(root, dirs, {n: e.get("status", "") + (f": {e['reason']}" if e.get("reason") else "")
                                for n, e in stages.items()})

    @classmethod
    def from_upstream(cls, root: Path, upstream: dict[str, StageDir]) -> Run:
        """From a stage's context: the upstream stages whose manifests say complete."""
        done = {n: sd.path for n, sd in upstream.items() if sd.is_complete()}
        return cls(Path(root), done, {n: "complete" if n in done else "not complete" for n in upstream})

    def stage(self, name: str) -> Path | None:
        return self.dirs.get(name)

    def host(self) -> dict:
        """The host the run recorded in ``summary.json`` (:func:`pipeline.device.host_description`), or {}."""
        path = self.root / "summary.json"
        return (read_json(path).get("host") or {}) if path.is_file() else {}

    def status(self, name: str) -> str:
        return self.statuses.get(name, "absent")

    def metrics(self, name: str) -> Any:
        """The stage's typed metrics, or None when the stage did not complete."""
        d = self.stage(name)
        return None if d is None else read_metrics(d)
