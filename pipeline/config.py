"""The config schema: every option of every stage, with its default, type, range and help.

This file is the single source of truth for defaults. A preset YAML (``pipeline/presets/*.yaml``)
only states what differs from these; ``python -m pipeline show-config CONFIG`` prints the resolved
result. Options that pick an implementation are short names from a table (``source``, ``arch``,
``method``, ``formats``), never import paths.

Load a config with :func:`load_config`; it raises :class:`~pipeline.schema.ConfigError` listing
every problem (unknown keys, wrong types, ranges, contradictions) with its key path and fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from benchmarks.backends import BACKENDS
from exporters.formats import DEFAULT_FORMATS, FORMATS, TEACHER_FORMATS, installed_formats
from pipeline.data.read_csv import CsvConfig
from pipeline.data.read_gaze import MpiigazeConfig
from pipeline.data.read_pose import BiwiConfig, PoseMatConfig
from pipeline.data.sinusoid import SinusoidConfig
from pipeline.data.sources import SOURCES, TEST_SETS, sections_used
from pipeline.data.synthetic_faces import SyntheticFacesConfig
from pipeline.losses import METHODS
from pipeline.models import MODELS
from pipeline.schema import ConfigError, apply_overrides, build, defaults_of, option, to_dict

# Choices come from the implementation tables, so a new row is usable without touching the schema.
SourceName = Literal[tuple(SOURCES)]
TeacherArch = Literal[tuple(n for n, m in MODELS.items() if m.role == "teacher")]
StudentArch = Literal[tuple(n for n, m in MODELS.items() if m.role == "student")]
MethodName = Literal[tuple(METHODS)]

PRESETS_DIR = Path(__file__).parent / "presets"



@dataclass
class NoiseConfig:
    """Label noise injected into the train and validation splits (test labels stay clean)."""

    std: float = option(3.0, "Gaussian annotation noise, standard deviation in label units (degrees)", min=0, max=90)
    outlier_fraction: float = option(0.2, "fraction of samples whose label is a gross error", min=0, max=0.9)
    outlier_mode: Literal["uniform", "offset"] = option(
        "uniform", "uniform: the label is redrawn uniformly over the label range; "
        "offset: each output is shifted by a random sign times U(offset_min, offset_max)")
    offset_min: float = option(20.0, "smallest outlier shift for outlier_mode=offset (label units)", min=0)
    offset_max: float = option(60.0, "largest outlier shift for outlier_mode=offset (label units)", min=0)


@dataclass
class DataConfig:
    """The dataset: ``source`` picks a reader, whose options live in its own section below (only the
    sections the source reads are part of the data stages' hashes and of ``show-config``)."""

    source: SourceName = option(
        "synthetic_faces", "dataset source (a name from pipeline.data.sources.SOURCES); its options are in "
                           "data.<source> (300w_lp: data.w300_lp)")
    seed: int = option(0, "seed of the dataset draw (synthetic samples, random splits, noise)", min=0)
    n_train: int = option(20000, "synthetic sources: training samples", min=16)
    n_val: int = option(2000, "synthetic sources: validation samples (noisy labels, like training)", min=8)
    n_test: int = option(2000, "synthetic sources: test samples (clean labels)", min=8)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    synthetic_faces: SyntheticFacesConfig = field(default_factory=SyntheticFacesConfig)
    sinusoid: SinusoidConfig = field(default_factory=SinusoidConfig)
    csv: CsvConfig = field(default_factory=CsvConfig)
    w300_lp: PoseMatConfig = field(default_factory=lambda: PoseMatConfig(test=["aflw2000"]))
    aflw2000: PoseMatConfig = field(default_factory=lambda: PoseMatConfig(max_angle=99.0))
    biwi: BiwiConfig = field(default_factory=BiwiConfig)
    mpiigaze: MpiigazeConfig = field(default_factory=MpiigazeConfig)


BY_COUNT_KEYS = ("n_train", "n_val", "n_test")


@dataclass
class TrainConfig:
    """One training run's budget and optimizer; shared by the teacher, distill and qat sections."""

    epochs: int = option(12, "passes over the training split", min=1, max=10000)
    batch_size: int = option(128, "samples per step", min=1, max=65536)
    lr: float = option(3e-3, "peak learning rate (AdamW, one-cycle cosine schedule)", min=0, max=10)
    weight_decay: float = option(1e-4, "AdamW weight decay", min=0, max=1)
    warmup_fraction: float = option(0.05, "fraction of steps spent warming up the learning rate", min=0, max=0.5)
    patience: int = option(0, "early stopping: epochs without validation improvement before stopping "
                          "(0 = never stop early; the best epoch on noisy validation is kept either way)",
                       min=0)
    augment: bool = option(True, "horizontal flip with mirrored labels (faces only)")
    frame_jitter: float = option(0.0, "images only: each step moves every image by up to this fraction of its "
                                      "side in x and y and scales it by 1 +- this much (edge pixels repeated), as a "
                                      "detector's box moves from frame to frame; the pose is unchanged. 0: off",
                                 min=0, max=0.25)
    seed: int = option(0, "seed of initialization and batch order", min=0)
    checkpoint_every_s: float = option(60.0, "write a recovery checkpoint at least this often (seconds)",
                                   min=1)
    cpu_bf16: bool = option(True, "on a CPU with native bf16 (AVX512-BF16 or AMX, checked at run time), train "
                                  "the networks that get faster in it (the cnn_* teachers, see the models table) "
                                  "under bf16 autocast; others, and CPUs without native bf16, train in fp32. CUDA "
                                  "always trains under bf16 autocast. Evaluation and predictions stay fp32")


@dataclass
class TeacherConfig:
    arch: TeacherArch = option(
        "cnn_l", "teacher network (pipeline.models.MODELS): cnn_* for images, mlp_* for vectors")
    loss: Literal["l1", "l2", "huber"] = option(
        "l1", "loss on the noisy labels. l2 learns the conditional mean, which gross outliers drag "
              "toward the label range's centre; l1 learns the median, which they barely move")
    huber_delta: float = option(5.0, "huber: delta in label units", min=0)
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class TorConfig:
    """Teacher outlier rejection loss knobs (docs/method.md)."""

    outlier_branch: Literal["sqrt", "l1", "l2", "none"] = option(
        "sqrt", "loss on samples flagged as outliers: sqrt(|h-y_T|+eps), |h-y_T|, (h-y_T)^2, or 0")
    threshold: Literal["chauvenet", "mad_k", "fixed"] = option(
        "chauvenet", "rule for the outlier threshold e_out on the teacher residual |y~ - y_T|")
    alpha: float = option(2.0, "chauvenet: expected count alpha at the threshold", min=1e-6)
    k: float = option(3.0, "mad_k: e_out = k * 1.4826 * MAD", min=0)
    fixed: float = option(15.0, "fixed: e_out in label units", min=0)
    sigma_from: Literal["batch", "dataset"] = option(
        "dataset", "where the robust sigma (and chauvenet's beta) come from: each batch, or once "
        "over the training set after the teacher is trained")
    eps: float = option(1e-6, "keeps the sqrt branch's gradient finite at 0", min=0)
    reject: Literal["element", "sample"] = option(
        "element", "what a large teacher residual rejects: that output of the sample only (element, the "
                   "re-implementations), or every output of the sample (sample: a mislabelled image is "
                   "usually wrong in all its outputs)")


@dataclass
class DistillConfig:
    method: MethodName = option(
        "tor_mt", "training objective (pipeline.losses.METHODS); tor_mt is the paper's full method")
    arch: StudentArch = option(
        "mobile_s", "student network (pipeline.models.MODELS)")
    width_mult: float = option(1.0, "student width multiplier", min=0.25, max=4)
    tor: TorConfig = field(default_factory=TorConfig)
    label_weight: float = option(1.0, "lambda_L: weight of the label-head loss", min=0)
    teacher_weight: float = option(1.0, "lambda_T: weight of the teacher-head L2 loss (two-headed methods)",
                               min=0)
    kd_mix_weight: float = option(0.5, "kd_mix: weight w of the teacher term", min=0, max=1)
    huber_delta: float = option(5.0, "scratch_huber: Huber delta in label units", min=0)
    tbr_margin: float = option(0.0, "tbr: margin m (squared label units)", min=0)
    tbr_nu: float = option(0.5, "tbr: weight nu of the teacher bound term", min=0)
    inference_head: Literal["teacher", "label", "mean", "auto"] = option(
        "auto", "which head the exported single-output student answers with (two-headed methods); 'auto' "
                "picks, after training, the head with the lowest noisy-validation error on the samples the "
                "teacher does not flag (epochs are selected on the 'mean' head). docs/results.md: knob defaults")
    real_faces: int = option(
        0, "face-pose sources: times each crop of the real-face pseudo-labels (scikit-image's 100 LFW faces, "
           "turned and mirrored, the teacher's readings made exactly consistent; pipeline.data.pseudo_faces) "
           "is added to the student's training set, in distill and QAT; 0: renders only", min=0, max=20)
    # Flips and framing jitter: the student sees the 20000 renders 40 times; shown each one way it reads
    # 6.24 deg on the default preset, flipped 5.54, flipped and moved / scaled by up to 4 % 4.93 (one seed,
    # docs/results.md: augmenting the student). The teacher's predictions on mirrored images are computed
    # once (objective.flipped_teacher_extras); a moved image keeps its unmoved image's targets, as a pose is.
    # cpu_bf16 off: every student in the models table trains slower in bf16 (benchmarks.train_precision).
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=40, lr=5e-3, weight_decay=5e-5,
                                                                   augment=True, frame_jitter=0.04,
                                                                   cpu_bf16=False))


@dataclass
class QatConfig:
    enabled: bool = option(True, "run int8 quantization-aware fine-tuning (false: the stage is skipped)")
    calibration_batches: int = option(16, "batches used to calibrate observers (PTQ baseline and QAT start)",
                                  min=1)
    freeze_observers_epoch: int = option(2, "epoch after which observers stop updating", min=0)
    freeze_bn_epoch: int = option(1, "epoch after which batch-norm statistics stop updating", min=0)
    # cpu_bf16 off: the fake-quantized graph is calibrated and trained in fp32, as it is converted.
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=3, lr=2e-4, weight_decay=0.0,
                                                                   augment=False, cpu_bf16=False))


@dataclass
class ExportConfig:
    # ExecuTorch's rows need the executorch extra: without it the default leaves them out.
    formats: list[str] = option(installed_formats(list(DEFAULT_FORMATS)),
                                "artifacts to write (names from exporters.formats.FORMATS; the default has the "
                                "executorch rows when the executorch extra is installed)")
    int8_io: bool = option(False, "tflite_int8: int8 input/output tensors instead of float I/O")
    parity_samples: int = option(32, "clean test images every artifact is checked on", min=1, max=4096)
    teacher_formats: list[str] = option(list(TEACHER_FORMATS),
                                        "float formats the teacher is also exported to (under teacher/), so the "
                                        "benchmark measures student/teacher ratios")


@dataclass
class AndroidBenchConfig:
    """A phone over adb; rows are skipped (with the reason) while ``benchmark_model`` is empty."""

    benchmark_model: str = option("", "path to a benchmark_model binary for Android (not on PyPI; see docs/benchmarks.md)")
    serial: str = option("", "adb device serial (empty: the only attached device)")
    delegate: Literal["xnnpack", "gpu", "nnapi", "cpu"] = option("xnnpack", "delegate benchmark_model applies")
    warmup_runs: int = option(10, "untimed runs on the device", min=0)
    num_runs: int = option(100, "timed runs on the device", min=1)
    taskset: str = option("", "CPU mask to pin benchmark_model to (e.g. f0 for the big cores); empty: no pinning")


@dataclass
class BenchmarkConfig:
    enabled: bool = option(True, "run the benchmark stage (false: the stage is skipped)")
    backends: list[str] = option(list(BACKENDS), f"backends to measure ({', '.join(BACKENDS)})")
    threads: list[int] = option([1, 2], "CPU thread counts; every artifact is timed at each")
    repeats: int = option(5, "timing repeats per artifact and thread count (the spread is reported)", min=1, max=100)
    warmup: int = option(50, "untimed calls before each repeat", min=0)
    min_runs: int = option(100, "timed calls per repeat, at least", min=1)
    min_time_s: float = option(0.2, "seconds per repeat, at least", min=0)
    profile: bool = option(True, "per-op profile where the runtime offers one (onnxruntime on the host)")
    real_photos: bool = option(True, "on head-pose runs, the real-photo check: float student, int8 TFLite and "
                                     "teacher on the real photos shipped by installed packages (docs: Real faces)")
    android: AndroidBenchConfig = field(default_factory=AndroidBenchConfig)


@dataclass
class ReportConfig:
    ablation: str = option("", "an ablation folder (<out>/<experiment>_ablation[/NAME]) to include; empty: the "
                               "one `python -m pipeline ablate` wrote beside the run, if any")


@dataclass
class Config:
    experiment: str = option("face_pose", "run folder name under --out")
    device: Literal["auto", "cpu", "cuda"] = option("auto", "auto: CUDA when present, else CPU")
    threads: int = option(0, "CPU threads for torch (0 = all cores)", min=0, max=1024)
    data: DataConfig = field(default_factory=DataConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    qat: QatConfig = field(default_factory=QatConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    benchmark: BenchmarkConfig = field(default_factory=BenchmarkConfig)
    report: ReportConfig = field(default_factory=ReportConfig)


defaults_of(Config)


def resolve_config_path(name_or_path: str) -> Path:
    """A path if it exists, else the name of a bundled preset (with or without .yaml)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    preset = PRESETS_DIR / (name_or_path if name_or_path.endswith(".yaml") else name_or_path + ".yaml")
    if preset.is_file() and path.parent == Path("."):
        return preset
    names = ", ".join(p.name for p in sorted(PRESETS_DIR.glob("*.yaml")))
    raise ConfigError([f"{name_or_path}: no such config file or bundled preset; "
                       f"give a path to a YAML file or one of: {names}"])


def load_raw(name_or_path: str) -> dict:
    path = resolve_config_path(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError([f"{path}:{where} is not valid YAML ({getattr(exc, 'problem', exc)}); "
                           "fix the syntax"]) from exc
    if not isinstance(raw, dict):
        raise ConfigError([f"{path}: the top level must be a mapping of sections (data:, teacher:, ...)"])
    return raw


def load_config(name_or_path: str, overrides: list[str] | None = None) -> Config:
    """Read a preset or YAML file, apply overrides, validate everything, return the Config."""
    raw = apply_overrides(load_raw(name_or_path), list(overrides or []))
    return validate(raw)


def validate(raw: dict) -> Config:
    problems: list[str] = []
    cfg = build(Config, raw, "", problems)
    try:
        problems += consistency_problems(cfg)
    except (KeyError, TypeError):
        # A field the checks read is itself invalid; that problem is already reported.
        if not problems:
            raise
    if problems:
        raise ConfigError(problems)
    return cfg


def consistency_problems(cfg: Config) -> list[str]:
    """Options that are each valid but contradict each other."""
    out: list[str] = []
    kind = SOURCES[cfg.data.source].input_kind if cfg.data.source in SOURCES else None
    for key, arch in (("teacher.arch", cfg.teacher.arch), ("distill.arch", cfg.distill.arch)):
        if kind and arch in MODELS and MODELS[arch].input_kind != kind:
            fitting = ", ".join(n for n, m in MODELS.items() if m.input_kind == kind and
                                m.role == MODELS[arch].role)
            out.append(f"{key}: {arch!r} takes {MODELS[arch].input_kind} inputs but data.source "
                       f"{cfg.data.source!r} gives {kind}; use one of: {fitting}")
    noise = cfg.data.noise
    if noise.outlier_mode == "offset" and noise.offset_min > noise.offset_max:
        out.append(f"data.noise.offset_min ({noise.offset_min}) > data.noise.offset_max "
                   f"({noise.offset_max}); make offset_min <= offset_max")
    for i, name in enumerate(cfg.export.formats):
        if name not in FORMATS:
            out.append(f"export.formats[{i}]: unknown format {name!r}; use any of: " + ", ".join(FORMATS))
        elif name not in installed_formats([name]):
            out.append(f"export.formats[{i}]: {name} needs the {FORMATS[name].family_row.extra} extra; "
                       f"install it with: pip install -e \".[{FORMATS[name].family_row.extra}]\" (or drop {name})")
    if cfg.report.ablation and not (Path(cfg.report.ablation) / "ablation.json").is_file():
        out.append(f"report.ablation {cfg.report.ablation}: no ablation.json there; give the folder "
                   "`python -m pipeline ablate` wrote (<out>/<experiment>_ablation)")
    for i, name in enumerate(cfg.export.teacher_formats):
        if name not in FORMATS or FORMATS[name].needs_int8_model:
            out.append(f"export.teacher_formats[{i}]: {name!r} is not a float format; use any of: "
                       + ", ".join(n for n, f in FORMATS.items() if not f.needs_int8_model))
    for i, name in enumerate(cfg.benchmark.backends):
        if name not in BACKENDS:
            out.append(f"benchmark.backends[{i}]: unknown backend {name!r}; use any of: " + ", ".join(BACKENDS))
    for i, n in enumerate(cfg.benchmark.threads):
        if n < 1:
            out.append(f"benchmark.threads[{i}]: {n} threads; use 1 or more")
    if len(set(cfg.export.formats)) != len(cfg.export.formats):
        out.append("export.formats: a format is listed twice; list each once")
    out += data_problems(cfg.data)
    by_count = cfg.data.source in SOURCES and SOURCES[cfg.data.source].by_count
    for section in ("teacher", "distill", "qat"):
        train = getattr(cfg, section).train
        if by_count and train.batch_size > cfg.data.n_train:
            out.append(f"{section}.train.batch_size ({train.batch_size}) exceeds data.n_train "
                       f"({cfg.data.n_train}); lower the batch size or raise n_train")
    if cfg.distill.real_faces and not _has_face_crop(cfg.data):
        out.append(f"distill.real_faces: data.source {cfg.data.source!r} has no face crop spec to cut real faces "
                   "with (face-pose sources framed as a detector frames a face have one); set distill.real_faces=0")
    if cfg.qat.freeze_bn_epoch > cfg.qat.freeze_observers_epoch:
        out.append(f"qat.freeze_bn_epoch ({cfg.qat.freeze_bn_epoch}) is after qat.freeze_observers_epoch "
                   f"({cfg.qat.freeze_observers_epoch}); freeze batch-norm statistics first")
    if cfg.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            out.append("device: 'cuda' but no CUDA device is visible; use device=auto or device=cpu")
    return out


def _has_face_crop(data: DataConfig) -> bool:
    source = SOURCES.get(data.source)
    return bool(source and source.crop and source.crop(data) is not None)


def data_problems(data: DataConfig) -> list[str]:
    """The active source's test sets exist. (Dataset paths are checked when the data is read, by
    :func:`root_problems`, so a preset validates before the user has pointed it at their disk.)"""
    if data.source not in SOURCES:
        return []
    out: list[str] = []
    own = getattr(data, SOURCES[data.source].section)
    for i, name in enumerate(getattr(own, "test", [])):
        if name not in TEST_SETS or name == data.source:
            choices = ", ".join(t for t in TEST_SETS if t != data.source)
            out.append(f"data.{SOURCES[data.source].section}.test[{i}]: {name!r} is not a test set of "
                       f"{data.source!r}; use any of: {choices}")
    return out


def root_problems(data: DataConfig) -> list[str]:
    """Every dataset path the active source reads that is not set or does not exist, with its key."""
    out: list[str] = []
    for section in sections_used(data):
        root = getattr(getattr(data, section), "root", None)
        if root is None:
            continue
        if not root:
            out.append(f"data.{section}.root: not set; point it at the dataset on your disk "
                       f"(data.{section}.root=/path/to/it)")
        elif not Path(root).expanduser().exists():
            out.append(f"data.{section}.root: {root} does not exist; point it at the dataset on your disk")
    return out


def public_dict(cfg: Config) -> dict:
    """The config as plain data with only the data sections the active source reads (for show-config)."""
    d = to_dict(cfg)
    if cfg.data.source in SOURCES:
        used = set(sections_used(cfg.data))
        for name in {s.section for s in SOURCES.values()} - used:
            d["data"].pop(name, None)
        if not SOURCES[cfg.data.source].by_count:
            for key in BY_COUNT_KEYS:
                d["data"].pop(key, None)
    return d
