"""Which student to ship: distil, quantize, export and benchmark several students of one config.

``python -m pipeline sweep CONFIG --students mobile_xs,mobile_s,mobile_m`` runs the pipeline once per
student (``distill.arch``) in the same run folder, so the source, data and teacher stages are
computed once and reused from the cache; every student gets its own distill, qat, export and
benchmark stages. It then writes ``<out>/<experiment>_sweep/``:

* ``sweep.json`` and ``sweep.md``: one row per timed artifact (teacher and every student, 1 thread on
  the host): latency, own clean-test error, size, MACs, and whether it is on the Pareto front;
* ``sweep.png``: latency vs error, every artifact a labelled point, the Pareto front drawn;
* the choice: the smallest student whose int8 TFLite artifact is within ``TEACHER_RATIO`` of the
  teacher's error, or the closest one, with the latency it costs.
"""

from __future__ import annotations

import logging
from pathlib import Path

from benchmarks.backends import FAMILY_BACKEND
from exporters.formats import FORMATS, SHIPPED_FORMAT
from pipeline.config import load_config
from pipeline.contract import load_benchmark, load_data_stats
from pipeline.orchestrate import run_pipeline
from pipeline.report.figures import latency_vs_error, pareto_front
from pipeline.runs import atomic_write_bytes, atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

TEACHER_RATIO = 1.15  # the student's int8 error may be at most this multiple of the teacher's
SHIPPED = (SHIPPED_FORMAT, FAMILY_BACKEND[FORMATS[SHIPPED_FORMAT].family])  # the (format, backend) the choice is made on


def _rows_of(bench: dict, student: str, threads: int) -> list[dict]:
    keep = ("artifact", "model", "format", "precision", "backend", "threads", "p50_ms", "p50_min_ms",
            "p50_max_ms", "test_mae", "size_bytes", "params", "macs")
    out = []
    for r in bench["rows"]:
        if r.get("status") != "ok" or r.get("threads") != threads or r.get("test_mae") is None:
            continue
        row = {k: r.get(k) for k in keep}
        row["student"] = student if r["model"] == "student" else "teacher"
        if r["model"] == "student":  # one name per student in the table and the plot
            row["artifact"] = r["artifact"].replace("student/", f"{student}/", 1)
        out.append(row)
    return out


def pareto(rows: list[dict]) -> None:
    """Mark ``on_front`` on the rows no other row beats on both latency and error."""
    front = set(pareto_front([(r["p50_ms"], r["test_mae"]) for r in rows]))
    for i, r in enumerate(rows):
        r["on_front"] = i in front


def choose(rows: list[dict], teacher_mae: float) -> dict:
    """The smallest student (by MACs) whose shipped int8 artifact is within TEACHER_RATIO of the teacher."""
    shipped = [r for r in rows if r["model"] == "student" and (r["format"], r["backend"]) == SHIPPED]
    if not shipped:
        return {"student": None, "why": "no student has a timed int8 TFLite artifact"}
    within = [r for r in shipped if r["test_mae"] <= TEACHER_RATIO * teacher_mae]
    pick = min(within, key=lambda r: r["macs"]) if within else min(shipped, key=lambda r: r["test_mae"])
    why = (f"smallest student within {TEACHER_RATIO}x the teacher's error" if within else
           f"no student within {TEACHER_RATIO}x the teacher's error: the closest one")
    return {"student": pick["student"], "why": why, "test_mae": pick["test_mae"], "p50_ms": pick["p50_ms"],
            "teacher_test_mae": teacher_mae, "error_ratio": round(pick["test_mae"] / teacher_mae, 3),
            "macs": pick["macs"]}


def format_md(rows: list[dict], choice: dict) -> str:
    lines = ["| artifact | student | backend | MMACs | size KB | p50 ms (spread) | own test MAE | Pareto |",
             "|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: r["p50_ms"]):
        size = f"{r['size_bytes'] / 1024:.0f}" if r.get("size_bytes") else ""
        lines.append(f"| {r['artifact']} | {r['student']} | {r['backend']} | {(r['macs'] or 0) / 1e6:.1f} | {size} | "
                     f"{r['p50_ms']:.4f} ({r['p50_min_ms']:.4f}-{r['p50_max_ms']:.4f}) | {r['test_mae']:.3f} | "
                     f"{'yes' if r['on_front'] else ''} |")
    lines.append("")
    if choice.get("student"):
        lines.append(f"Choice: **{choice['student']}** ({choice['why']}): int8 TFLite own test MAE "
                     f"{choice['test_mae']:.3f} = {choice['error_ratio']}x the teacher's {choice['teacher_test_mae']:.3f}, "
                     f"p50 {choice['p50_ms']:.4f} ms.")
    else:
        lines.append(f"Choice: none ({choice['why']}).")
    return "\n".join(lines) + "\n"


def run_sweep(config: str, overrides: list[str], students: list[str], out: Path, threads: int = 1) -> dict:
    """Run the pipeline once per student and collect one table; returns the sweep's JSON."""
    rows: list[dict] = []
    teacher_mae = None
    cfg = None
    units = "label units"
    for student in students:
        cfg = load_config(config, list(overrides) + [f"distill.arch={student}"])
        if threads not in cfg.benchmark.threads:
            cfg.benchmark.threads = sorted({*cfg.benchmark.threads, threads})
        log.info("sweep: student %s", student)
        result = run_pipeline(cfg, out, config_source=config)
        stage = result.summary["stages"].get("benchmark", {})
        if stage.get("status") not in ("ran", "cached"):
            raise RuntimeError(f"sweep: the benchmark stage of student {student} did not complete "
                               f"({stage.get('status')}: {stage.get('reason', '')}); see {result.path}")
        student_rows = _rows_of(load_benchmark(Path(stage["dir"])), student, threads)
        units = load_data_stats(Path(result.summary["stages"]["data"]["dir"])).get("units", units)
        if teacher_mae is None:
            teacher = [r for r in student_rows if r["artifact"] == "teacher/torch_teacher"]
            teacher_mae = teacher[0]["test_mae"] if teacher else None
            rows += [r for r in student_rows if r["model"] == "teacher"]
        rows += [r for r in student_rows if r["model"] == "student"]
    pareto(rows)
    choice = choose(rows, teacher_mae) if teacher_mae else {"student": None, "why": "teacher error missing"}
    root = Path(out) / f"{cfg.experiment}_sweep"
    root.mkdir(parents=True, exist_ok=True)
    result = {"config": config, "overrides": list(overrides), "students": students, "threads": threads,
              "rows": rows, "choice": choice}
    atomic_write_json(root / "sweep.json", result)
    atomic_write_text(root / "sweep.md", format_md(rows, choice))
    # deployable artifacts only in the plot (torch eager rows stay in the table)
    atomic_write_bytes(root / "sweep.png", latency_vs_error([r for r in rows if r["backend"] != "torch"], units))
    log.info("sweep: wrote %s", root)
    return result
