"""The report's sections, in order, built only from a run's products (``pipeline.contract``).

Each section is a list of blocks (text, table, figure); ``pipeline.report.render`` writes them as one
self-contained HTML file and as Markdown. Numbers are formatted by :func:`num` in both.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.backends import FAMILY_BACKEND
from benchmarks.harness import LEGEND
from benchmarks.photo_check import METRICS as PHOTO_METRICS
from exporters.formats import FORMATS, SHIPPED_FORMAT, TEACHER_REFERENCE_FORMAT
from pipeline import contract
from pipeline.ablation_tables import load_ablation, markdown_table, plot
from pipeline.contract import Run
from pipeline.device import describe_host
from pipeline.report import figures

WORST_FLAGGED = 12


@dataclass
class Table:
    id: str
    header: list[str]
    rows: list[list[Any]]
    caption: str = ""


@dataclass
class Figure:
    name: str  # file stem
    png: bytes
    alt: str


@dataclass
class Alert:
    """A block the reader must not miss (rendered boxed in red at the top of the page)."""

    title: str
    lines: list[str]
    footer: str = ""


@dataclass
class Section:
    id: str
    title: str
    blocks: list[Any] = field(default_factory=list)


def num(v: Any) -> str:
    """One formatting for every number in the report (4 significant digits); None is a dash."""
    if v is None:
        return "–"
    if isinstance(v, bool) or not isinstance(v, int | float):
        return str(v)
    if isinstance(v, int):
        return str(v)
    return f"{v:.4g}"


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def headline_rows(bench: dict) -> dict[str, dict | None]:
    """The rows the headline compares: int8 TFLite student and fp32 TFLite teacher on the host
    (LiteRT, the fewest threads measured), when they ran."""
    threads = min(bench.get("threads") or [1])

    on = FAMILY_BACKEND[FORMATS[SHIPPED_FORMAT].family]

    def pick(artifact: str) -> dict | None:
        return next((r for r in bench["rows"] if r["artifact"] == artifact and r["backend"] == on
                     and r["threads"] == threads and r["status"] == "ok"), None)
    return {"student": pick(f"student/{SHIPPED_FORMAT}"), "teacher": pick(f"teacher/{TEACHER_REFERENCE_FORMAT}")}


def failures_section(run: Run, bench: dict | None) -> Section | None:
    """Artifacts that failed export or parity and so are neither benchmarked nor shipped; None when none.
    First on the page: the figures below it were measured without them."""
    exp = run.metrics("export") if run.stage("export") else None
    lines = [line if line.startswith("teacher/") else f"student/{line}" for line in (exp.failures if exp else [])]
    if not lines:
        return None
    where = [str(run.stage("export") / "export_report.json")]
    if any(line.startswith("teacher/") for line in lines):
        where.append(str(run.stage("export") / "teacher" / "export_report.json"))
    s = Section("failures", "Failed artifacts")
    s.blocks.append(Alert(f"{len(lines)} artifact(s) failed: not benchmarked, not shipped", lines,
                          f"Figures and reasons: {', '.join(where)}. Once the cause is fixed, retry with "
                          "`python -m pipeline run <config> --force export`; until then the run exits 1."))
    return s


def headline(run: Run, bench: dict | None, units: str) -> Section:
    s = Section("headline", "Headline")
    rows = headline_rows(bench) if bench else {"student": None, "teacher": None}
    st, te = rows["student"], rows["teacher"]
    if st is None or te is None:
        s.blocks.append(f"No int8-TFLite-student vs fp32-TFLite-teacher benchmark rows (benchmark stage: "
                        f"{run.status('benchmark')}); clean-test MAE from the training stages instead.")
        q, t = run.metrics("qat"), run.metrics("teacher")
        d = run.metrics("distill")
        s.blocks.append(Table("headline", ["model", f"clean-test MAE ({units})"],
                              [["student (int8, torch)" if q else "student (float)", (q or d).test_mae if (q or d) else None],
                               ["teacher", t.test_mae if t else None]]))
        return s
    s.blocks.append(Table("headline", ["model", "artifact", f"own clean-test MAE ({units})", "p50 latency (ms)",
                                       "size (bytes)"],
                          [["student", st["artifact"], st["test_mae"], st["p50_ms"], st["size_bytes"]],
                           ["teacher", te["artifact"], te["test_mae"], te["p50_ms"], te["size_bytes"]],
                           ["student / teacher", "ratio", _ratio(st["test_mae"], te["test_mae"]),
                            _ratio(st["p50_ms"], te["p50_ms"]), _ratio(st["size_bytes"], te["size_bytes"])]],
                          f"LiteRT on the host, {st['threads']} thread(s), batch 1"))
    return s


def provenance(run: Run, bench: dict | None) -> Table:
    host = (bench or {}).get("host") or run.host()  # no benchmark: the host the run itself recorded
    export_dir = run.stage("export")
    started = contract.manifest(run.stage("benchmark"))["started"] if run.stage("benchmark") else "–"
    machine = describe_host(host) if host else platform.platform()
    return Table("provenance", ["what", "value"],
                 [["run", run.root.name], ["config hash (export stage, in every artifact's metadata)",
                                           export_dir.name.rsplit("-", 1)[-1] if export_dir else "–"],
                  ["benchmarked", started], ["machine", machine]])


def data_section(run: Run, cfg: dict, figs: list[Figure]) -> Section:
    s = Section("data", "Data")
    data_dir = run.stage("data")
    if data_dir is None:
        s.blocks.append(f"data stage: {run.status('data')}")
        return s
    arts = contract.artifacts(data_dir)
    if "contact_sheet" in arts and arts["contact_sheet"].is_file():
        figs.append(Figure("contact_sheet", arts["contact_sheet"].read_bytes(),
                           "training samples with their pose axes; injected outliers framed red"))
        s.blocks.append(figs[-1])
    dm = contract.read_metrics(data_dir)
    noise = (cfg.get("data") or {}).get("noise") or {}
    s.blocks.append(Table("noise", ["label-noise setting", "value"],
                          [[k, v] for k, v in noise.items()]
                          + [["measured train outlier fraction", dm.train_outlier_fraction],
                             ["measured train inlier noise std", dm.train_inlier_noise_std]]))
    d_dir = run.stage("distill")
    if d_dir is None:
        return s
    fl = contract.read_metrics(d_dir).flagger
    s.blocks.append(Table("flagger", ["flagged-outlier summary", "value"],
                          [["flagged samples", fl.flagged_samples], ["flagged elements", fl.flagged_elements],
                           ["precision vs injected outliers", fl.precision], ["recall vs injected outliers", fl.recall]]
                          + [[f"threshold e_out ({k})", v] for k, v in fl.threshold.items()]))
    flagged = contract.load_flagged(d_dir)
    if flagged:
        names = [k.removeprefix("label_") for k in flagged[0] if k.startswith("label_")]
        worst = sorted(flagged, key=lambda r: -max(abs(r[f"residual_{n}"]) for n in names))[:WORST_FLAGGED]
        idx = [r["index"] for r in worst]
        from pipeline.data.dataset import load_dataset

        x = load_dataset(data_dir).x("train")
        if x.ndim == 4:
            figs.append(Figure("flagged", figures.flagged_thumbnails(
                np.asarray(x[idx]), np.array([[r[f"label_{n}"] for n in names] for r in worst]),
                np.array([[r[f"teacher_{n}"] for n in names] for r in worst]), idx, names),
                "worst flagged training samples with label and teacher prediction"))
            s.blocks.append(figs[-1])
        s.blocks.append(Table("worst_flagged", ["sample"] + [f"label {n}" for n in names]
                              + [f"teacher {n}" for n in names],
                              [[r["index"], *(r[f"label_{n}"] for n in names), *(r[f"teacher_{n}"] for n in names)]
                               for r in worst], "largest teacher residual first"))
    return s


def training_section(run: Run, units: str, figs: list[Figure]) -> Section:
    s = Section("training", "Training")
    curves, best, rows = {}, {}, []
    for name in ("teacher", "distill", "qat"):
        d = run.stage(name)
        if d is None:
            continue
        curves[name] = contract.load_curves(d)
        m = contract.read_metrics(d)
        best[name] = m.best_epoch
        rows.append([name, len(curves[name]), m.best_epoch, m.val_mae, m.test_mae, m.train_seconds])
    if any(curves.values()):
        figs.append(Figure("training", figures.training_curves(curves, best, units),
                           "training loss components and noisy-validation MAE per epoch"))
        s.blocks.append(figs[-1])
    s.blocks.append(Table("training", ["stage", "epochs", "chosen epoch", f"noisy-val MAE ({units})",
                                       f"clean-test MAE ({units})", "train time (s)"], rows))
    return s


def ablation_section(ablation_dir: Path | None, figs: list[Figure]) -> Section | None:
    if ablation_dir is None:
        return None
    result, grid = load_ablation(ablation_dir)
    s = Section("method", "Method: ablation")
    s.blocks.append(f"{len(result['rows'])} runs from {ablation_dir / 'ablation.json'}")
    # The ablation's own plot when it has one; else drawn here. Either way render writes it into the
    # report's folder: a stage writes only into its own folder, never into the ablation's.
    drawn = Path(ablation_dir) / "ablation.png"
    png = drawn.read_bytes() if drawn.is_file() else plot(result["rows"], grid)
    figs.append(Figure("ablation", png, "clean-test MAE vs outlier fraction per method"))
    s.blocks.append(figs[-1])
    s.blocks.append(("markdown", markdown_table(result["rows"], grid)))
    return s


def export_section(run: Run) -> Section:
    s = Section("export", "Export")
    d = run.stage("export")
    if d is None:
        s.blocks.append(f"export stage: {run.status('export')}")
        return s
    m = contract.read_metrics(d)
    report = contract.load_export_report(d)["artifacts"]
    rows = [[name, a.status, a.size_bytes, a.max_abs_diff, a.mean_abs_diff, a.tolerance,
             a.reason if a.status == "failed" else (report.get(name) or {}).get("verified_by") or a.reason or ""]
            for name, a in m.artifacts.items()]
    s.blocks.append(Table("parity", ["artifact", "status", "size (bytes)", "max |diff|", "mean |diff|",
                                     "tolerance", "verified by (or why it failed)"], rows,
                          "each artifact against the PyTorch model it came from, on clean test images"))
    delegated = {name: rec["details"] for name, rec in report.items() if (rec.get("details") or {}).get("backend")}
    if delegated:
        s.blocks.append(Table("delegation", ["artifact", "delegate", "ops delegated", "ops left portable",
                                             "delegated share", "portable ops"],
                              [[name, d["backend"], d["delegated_ops"], d["portable_ops"], d["delegated_share"],
                                ", ".join(f"{op} x{n}" for op, n in d["portable_by_op"].items()) or "none"]
                               for name, d in delegated.items()],
                              "graph ops the delegate runs vs ops left to ExecuTorch's portable CPU kernels"))
    return s


BENCH_COLS = ["artifact", "backend", "threads", "legend", "p50_ms", "p90_ms", "p99_ms", "fps", "load_ms",
              "peak_rss_mb", "rss_increase_mb", "size_bytes", "test_mae", "macs_per_s"]


def legend_cell(row: dict) -> str:
    """The row's legend, with the reason when it was not timed (rows of runs before the legend existed: status)."""
    shown = row.get("legend") or row["status"]
    return shown if row["status"] == "ok" or shown.startswith("failed") else f"{shown} ({row['status']})"


def benchmark_section(run: Run, bench: dict | None, units: str, figs: list[Figure]) -> Section:
    s = Section("benchmark", "Benchmark")
    if bench is None:
        s.blocks.append(f"benchmark stage: {run.status('benchmark')}")
        return s
    s.blocks += list((bench.get("headline") or {}).get("int8_notes") or [])  # int8 slower than fp32 here, and why
    s.blocks.append(Table("bench_rows", BENCH_COLS, [[legend_cell(r) if c == "legend" else r.get(c) for c in BENCH_COLS]
                                                     for r in bench["rows"]],
                          f"timing plan {json.dumps(bench.get('plan'))}; latency per batch-1 call, fps = 1000 / p50; "
                          "load: opening the model in its runtime (library already imported); peak/increase: "
                          "the worker's peak resident memory (MiB) over import, load and runs, and its "
                          "increase over the idle worker"))
    s.blocks.append("Legend: " + "; ".join(f"{k} = {v}" for k, v in LEGEND.items()) + ".")
    profiles = {r["artifact"]: r["profile"] for r in bench["rows"]
                if r.get("profile") and r["model"] == "student" and r["precision"] in ("int8", "fp32")}
    if profiles:
        figs.append(Figure("op_profile", figures.op_breakdown(profiles), "time per operator type"))
        s.blocks.append(figs[-1])
        for name, prof in profiles.items():
            s.blocks.append(Table(f"profile_{name.replace('/', '_')}", ["op", "nodes", "µs per run", "%"],
                                  [[p["op"], p["nodes"], p["us_per_run"], p["percent"]] for p in prof],
                                  f"onnxruntime per-op profile of {name}"))
    timed = [r for r in bench["rows"] if r["status"] == "ok" and r.get("p50_ms") and r.get("test_mae") is not None]
    if timed:
        figs.append(Figure("latency_vs_error", figures.latency_vs_error(timed, units),
                           "p50 latency vs own clean-test MAE per artifact, Pareto front dashed"))
        s.blocks.append(figs[-1])
    return s


PHOTO_COLS = ["model", "photo", "pose (yaw, pitch, roll)", "roll slope", "roll R^2", "yaw drift", "pitch drift",
              "mirror error", "passes"]


CONTROL_COLS = ["model", "renders passing", "roll slope", "roll R^2", "yaw drift", "pitch drift", "mirror error",
                "pose error (mean / worst)"]


def real_photos_section(run: Run, figs: list[Figure]) -> Section | None:
    """The real-photo check: what the default model is, the per-photo table and the photos with axes."""
    bench_dir = run.stage("benchmark")
    found = contract.load_real_photos(bench_dir) if bench_dir else None
    if found is None:
        return None
    result, png = found
    s = Section("real_photos", "Real photos")
    t = result["targets"]
    s.blocks.append(
        "How the run's models read real faces (the default synthetic source trains on rendered faces only). "
        "Real photos carry no pose label, but what an image transform does to the pose is exact: "
        f"turning the photo in its plane by t (here {result['sweep'][0]:g} to {result['sweep'][-1]:g} degrees) "
        "turns roll by t, a mirror negates yaw and roll. Each photo goes through the shipped face detector and "
        f"the run's crop spec. Targets: roll slope {t['roll_slope'][0]}-{t['roll_slope'][1]} with R^2 >= "
        f"{t['roll_r2_min']}, yaw and pitch drift <= {t['drift_max']}, mirror error <= {t['mirror_error_max']} "
        "degrees, on every photo. A model that misses them should not be trusted on real faces; for real "
        "faces with labels, train on 300W-LP (preset face_pose_300wlp.yaml).")
    rows = []
    for model, r in result["models"].items():
        for name, m in r["photos"].items():
            if "error" in m:
                rows.append([model, name, m["error"]] + [None] * (len(PHOTO_COLS) - 3))
                continue
            rows.append([model, name, ", ".join(num(v) for v in m["pose"]), m["roll_slope"], m["roll_r2"],
                         m["yaw_drift"], m["pitch_drift"], m["mirror_error"],
                         contract.photo_verdict(m["passes"], m["yaw_drift"] is None)])
    s.blocks.append(Table("real_photos", PHOTO_COLS, rows, "ref_eye_line: roll read off the detector's eye "
                          "keypoints, what a roll that follows the face scores (it has no yaw or pitch); "
                          "ref_constant: a reading of zero in every crop, what the tests grant a model that does "
                          "not look (passing them is necessary, not sufficient)"))
    control = result.get("control")
    if control:  # checks written before the control have none
        s.blocks.append(f"Control: {control['what']}. Here the models read faces of their own domain, so what they "
                        "miss here is the targets asking more than the models' precision, not the gap to real skin.")
        rows = []
        for model, r in control["models"].items():
            agg = r["aggregate"]
            rows.append([model, "-" if "yaw_drift" not in agg else f"{agg['passing']} of {agg['photos']}"]
                        + [agg[k]["worst"] if k in agg else None for k in PHOTO_METRICS]
                        + [f"{agg['pose_error']['mean']} / {agg['pose_error']['worst']}" if agg.get("pose_error")
                           else None])
        s.blocks.append(Table("real_photos_control", CONTROL_COLS, rows, "worst over the rendered faces; pose "
                              "error: the unturned render's reading against its exact pose, which the label-change "
                              "tests cannot see (a constant reading passes them)"))
    figs.append(Figure("real_photos", png, "the real photos' crops with the int8 model's predicted axes"))
    s.blocks.append(figs[-1])
    return s
