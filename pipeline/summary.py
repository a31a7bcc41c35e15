"""The table a finished command prints: one line per stage, one per exported artifact, and the failures.

Failures inside completed stages (``RunResult.failures``: a format that failed parity, a teacher format
the benchmark could not export) come last, where the eye lands, with where the details are and the
``--force`` that retries them: the run exits 1 for them while the rest of it is still benchmarked and
reported.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.contract import PHOTO_REFERENCES, load_export_report
from pipeline.runs import ArtifactError


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _stage_headline(name: str, metrics: dict) -> str:
    parts = [f"test_mae {metrics['test_mae']:.3f}"] if "test_mae" in metrics else []
    flagger = metrics.get("flagger") if name == "distill" else None
    if flagger:  # how well the teacher-residual threshold found the injected label outliers
        parts.append(f"outlier flagger precision {_ratio(flagger.get('precision'))} "
                     f"recall {_ratio(flagger.get('recall'))}")
    if metrics.get("failures"):
        parts.append(f"{len(metrics['failures'])} failed")
    photos = metrics.get("real_photos") if name == "benchmark" else None
    scored = {m: p for m, p in (photos or {}).items()
              if isinstance(p, dict) and "roll_slope" in p and m not in PHOTO_REFERENCES}
    if scored:  # the real-photo check, per model; its figures are in summary.json and the report
        parts.append("real photos: " + ", ".join(f"{m} {'pass' if p['passes_all'] else 'FAIL'}"
                                                 for m, p in scored.items()))
    return ", ".join(parts)


def _artifact_rows(stage: dict) -> list[tuple[str, str, str]]:
    """(format, status, detail) per exported artifact; CoreML says whether Core ML itself verified it."""
    try:
        records = load_export_report(Path(stage["dir"]))["artifacts"]
    except ArtifactError:  # an export stage that did not finish writes no report
        records = {}
    rows = []
    for fmt, a in stage.get("metrics", {}).get("artifacts", {}).items():
        status, how = a["status"], (records.get(fmt) or {}).get("verified_by") or ""
        if status == "verified" and (records.get(fmt) or {}).get("family") == "coreml":
            # Apple's runtime ran it (macOS) or the project's numpy MIL evaluator did (elsewhere)
            status = "verified (Core ML runtime)" if how.startswith(("Core ML runtime", "MLModel.predict")) \
                else "verified (MIL emulation)"
        if status != "failed" and a.get("max_abs_diff") is not None:
            detail = f"max |diff| {a['max_abs_diff']:.2g} <= {a['tolerance']:g}"
        else:  # a failed artifact shows why, whatever its figures
            detail = a.get("reason") or ""
        rows.append((fmt, status, detail))
    return rows


def failure_lines(summary: dict) -> list[str]:
    """What failed inside completed stages, where to read why, and the command that retries it."""
    out = []
    config = summary.get("config") or "<config>"
    for name, e in summary["stages"].items():
        if not e.get("failures"):
            continue
        out += [f"FAILED {name}: {line}" for line in e["failures"]]
        out.append(f"  details in {e['dir']}; the rest of the run went on without "
                   f"{'it' if len(e['failures']) == 1 else 'them'} (exit code 1)")
        out.append(f"  retry: python -m pipeline run {config} --force {name}   (with this run's overrides)")
    return out


def print_summary(result) -> None:
    rows, artifacts = [], []
    for name, e in result.summary["stages"].items():
        rows.append((name, e["status"], _stage_headline(name, e.get("metrics", {})),
                     e.get("reason", "") or Path(e["dir"]).name))
        if name == "export" and e["status"] in ("ran", "cached"):
            artifacts = _artifact_rows(e)
    w = [max(len(r[i]) for r in rows) for i in range(3)]
    print()
    for r in rows:
        print(f"  {r[0]:<{w[0]}}  {r[1]:<{w[1]}}  {r[2]:<{w[2]}}  {r[3]}")
    if artifacts:
        aw = [max(len(r[i]) for r in artifacts) for i in range(2)]
        print()
        for fmt, status, detail in artifacts:
            print(f"  {fmt:<{aw[0]}}  {status:<{aw[1]}}  {detail}")
    failed = failure_lines(result.summary)
    if failed:
        print("\n" + "\n".join(failed))
    print(f"\nsummary: {result.path}")
