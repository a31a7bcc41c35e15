"""The benchmark harness: every model of a run x backend x thread count, one row each.

For each :class:`Target` and thread count it starts one worker process (:mod:`benchmarks.worker`)
that opens the model once, warms up and times bounded runs, repeated; it measures the target's own
clean-test error in this process (:mod:`benchmarks.accuracy`), and reads achieved MAC/s against the
host's measured matmul peak. A backend that fails or is absent becomes a row with a ``failed: ...``
or ``skipped: ...`` status, never a crash. Android rows come from :mod:`benchmarks.android`.

Results: ``benchmark.json`` (host, rows with every repeat, op profiles, headline ratios with a one-line
note per int8 artifact slower than its fp32 sibling, and the artifacts that failed export and so were
not timed) and ``benchmark.csv`` (one flat row per artifact x backend x threads), and :func:`format_table`.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from benchmarks.backends import BACKENDS, FAMILY_BACKEND  # noqa: F401  (re-exported)
from benchmarks.host import matmul_peak_macs
from benchmarks.timing import TimingPlan
from exporters.formats import FORMATS, SHIPPED_FORMAT, TEACHER_REFERENCE_FORMAT
from pipeline.device import host_description, int8_dot_features

log = logging.getLogger(__name__)

CSV_FIELDS = ("artifact", "model", "format", "precision", "backend", "threads", "device", "status", "legend",
              "size_bytes", "params", "macs", "load_ms", "first_run_ms", "peak_rss_mb", "rss_increase_mb", "fps",
              "p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "p50_min_ms", "p50_max_ms", "runs", "macs_per_s",
              "peak_fraction", "test_mae", "how")
# What each row's ``legend`` says, in the order an artifact goes through them (Ultralytics-style pass/fail).
LEGEND = {
    "benchmarked": "exported, verified against PyTorch and timed here",
    "verified": "exported and verified against PyTorch, not timed on this host (the reason is its status)",
    "exported": "written but not verified (its runtime is missing here), not timed",
    "failed": "export, parity, the runtime or the timing failed; the reason follows",
}
# worker figures copied onto a row as they are
WORKER_FIGURES = ("import_ms", "load_ms", "first_run_ms", "idle_rss_mb", "peak_rss_mb", "rss_increase_mb")
WORKER_TIMEOUT_S = 600


@dataclass
class Target:
    """One model to measure. ``path``: the artifact, or the stage folder for torch models."""

    artifact: str  # a readable id, e.g. "student/tflite_int8"
    model: str  # "student" | "teacher"
    format: str  # a FORMATS name, or torch_fp32 / torch_int8 / torch_teacher
    precision: str
    backend: str
    path: Path
    meta: Path | None = None  # model_meta.json beside an artifact
    params: int | None = None
    macs: int | None = None
    shape: list[int] = field(default_factory=list)  # torch input shape (batch 1)
    verified: bool = True  # an exported artifact whose parity was not checked here: False

    @property
    def size_bytes(self) -> int | None:
        p = Path(self.path)
        if self.backend == "torch" or not p.exists():
            return None
        return p.stat().st_size if p.is_file() else sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def _row(t: Target, threads: int, device: str, status: str) -> dict:
    return {"artifact": t.artifact, "model": t.model, "format": t.format, "precision": t.precision,
            "backend": t.backend, "threads": threads, "device": device, "status": status,
            "size_bytes": t.size_bytes, "params": t.params, "macs": t.macs}


def legend(row: dict, verified: bool = True) -> str:
    """The row's :data:`LEGEND` entry: ``failed: <reason>`` when its status failed, else how far it got."""
    status = row.get("status") or ""
    if status.startswith("failed"):
        return "failed: " + status.removeprefix("failed:").strip()
    if status == "ok":
        return "benchmarked"
    return "verified" if verified else "exported"


def _unavailable(t: Target) -> str | None:
    """A reason this host cannot time the target, or None."""
    import platform

    from exporters.formats import has_module

    backend = BACKENDS.get(t.backend)
    if backend and backend.system and platform.system() != backend.system:
        return "skipped: needs macOS (Core ML runtime); on Linux parity uses a MIL emulation, not timed"
    mod = backend.module if backend else ""
    if mod and not has_module(mod):
        return f"skipped: {mod} is not installed"
    return None


def run_worker(t: Target, threads: int, plan: TimingPlan, profile: bool) -> dict:
    job = {"backend": t.backend, "format": t.format, "path": str(t.path), "threads": threads,
           "meta": str(t.meta) if t.meta else None, "plan": asdict(plan), "profile": profile, "shape": t.shape}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.worker", json.dumps(job)], capture_output=True,
                          text=True, timeout=WORKER_TIMEOUT_S)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"worker exited {proc.returncode}: {tail[:300]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure_host(t: Target, threads: int, plan: TimingPlan, profile: bool, peak: float, device: str) -> dict:
    reason = _unavailable(t)
    if reason:
        return _row(t, threads, device, reason)
    row = _row(t, threads, device, "ok")
    try:
        res = run_worker(t, threads, plan, profile)
    except (RuntimeError, subprocess.TimeoutExpired, json.JSONDecodeError, IndexError) as exc:
        row["status"] = f"failed: {exc}"
        log.warning("%s %s x%d: %s", t.artifact, t.backend, threads, row["status"])
        return row
    lat = res["latency"]
    row.update({k: round(v, 5) if isinstance(v, float) else v for k, v in lat.items()})
    row["how"], row["repeats_detail"], row["profile"] = res["how"], res["repeats"], res["profile"]
    row.update({k: res.get(k) for k in WORKER_FIGURES})
    row["fps"] = round(1e3 / lat["p50_ms"], 2) if lat.get("p50_ms") else None  # batch 1: images per second
    if t.macs:
        row["macs_per_s"] = t.macs / (lat["p50_ms"] / 1e3)
        row["peak_fraction"] = round(row["macs_per_s"] / peak, 5) if peak else None
    return row


def run_benchmark(targets: list[Target], threads: list[int], plan: TimingPlan, errors: dict[str, dict],
                  profile: bool = True, android_rows: list[dict] | None = None,
                  failures: list[dict] | None = None) -> dict:
    """Time every target at every thread count; ``errors`` maps artifact id -> its own test error.

    ``failures``: artifacts that failed export or parity and so are not timed, each
    ``{"artifact", "stage", "reason"}``; kept in the result so every reader sees them first."""
    host = host_description()
    peaks = {n: matmul_peak_macs(n) for n in threads}
    host["matmul_peak_macs_per_s"] = {str(n): round(p) for n, p in peaks.items()}
    device = f"host: {host['cpu']} ({host['cores']} cores)"
    rows = []
    for t in targets:
        for n in threads:
            row = measure_host(t, n, plan, profile, peaks[n], device)
            err = errors.get(t.artifact) or {}
            row["test_mae"] = err.get("test_mae")
            row["test_mae_per_output"] = err.get("test_mae_per_output")
            if "error_status" in err:
                row["error_status"] = err["error_status"]
            row["legend"] = legend(row, t.verified)
            log.info("bench %-22s %-11s x%d %-8s p50 %s ms  test MAE %s", t.artifact, t.backend, n,
                     row["status"][:8], row.get("p50_ms"), row["test_mae"])
            rows.append(row)
    for r in android_rows or []:
        r.setdefault("legend", legend(r))
        rows.append(r)
    return {"host": host, "failures": list(failures or []), "plan": asdict(plan), "threads": threads,
            "rows": rows, "headline": headline(rows, host)}


def _p50(rows: list[dict], artifact: str, backend: str, threads: int = 1) -> float | None:
    for r in rows:
        if r["artifact"] == artifact and r["backend"] == backend and r["threads"] == threads and r.get("p50_ms"):
            return r["p50_ms"]
    return None


# int8 artifact vs its fp32 sibling on the same runtime: (family, backend) for every family with both rows
# and a host backend; headline ratio keys follow it
INT8_PAIRS = tuple((fam, backend) for fam, backend in FAMILY_BACKEND.items()
                   if f"{fam}_int8" in FORMATS and f"{fam}_fp32" in FORMATS)


def int8_note(family: str, ratio: float | None, host: dict, threads: int = 1) -> str | None:
    """One line when ``{family}_int8`` is slower than ``{family}_fp32`` (``ratio`` = int8 / fp32 p50), and why
    this host's ISA may explain it; None when int8 is not slower or either was not timed."""
    if not ratio or ratio <= 1:
        return None
    wanted, have = int8_dot_features(host)
    if not have:
        why = (f"no {'/'.join(wanted)} (int8 dot products take 3 instructions without VNNI)" if "avx_vnni" in wanted
               else f"no {'/'.join(wanted)} (int8 dot products need widening multiplies and adds without SDOT)")
    else:  # the dot-product instructions are there: the cost is elsewhere (quantize/requantize, small layers)
        why = (f"it has {'/'.join(have)}, so not the dot-product instructions; quantize/requantize overhead on "
               "small layers (see the op profile)")
    at = f"{threads} thread" + ("s" if threads != 1 else "")
    return f"{family}_int8 is {ratio:.2f}x slower than {family}_fp32 at {at} on this host: {why}"


def headline(rows: list[dict], host: dict | None = None) -> dict:
    """The ratios that matter, each from figures of this one run (1 thread); ``int8_notes`` says in one
    line each where int8 is slower than fp32 here and why (from ``host``'s ISA features)."""
    def ratio(a: float | None, b: float | None) -> float | None:
        return round(a / b, 4) if a and b else None

    s = "student/"
    shipped, teacher = s + SHIPPED_FORMAT, "teacher/" + TEACHER_REFERENCE_FORMAT
    on = FAMILY_BACKEND[FORMATS[SHIPPED_FORMAT].family]
    out: dict = {f"int8_vs_fp32_{fam}_p50": ratio(_p50(rows, f"{s}{fam}_int8", backend),
                                                  _p50(rows, f"{s}{fam}_fp32", backend))
                 for fam, backend in INT8_PAIRS}
    out.update({
        "student_int8_tflite_vs_teacher_fp32_tflite_p50": ratio(_p50(rows, shipped, on), _p50(rows, teacher, on)),
        "student_int8_tflite_p50_ms": _p50(rows, shipped, on),
        "teacher_fp32_tflite_p50_ms": _p50(rows, teacher, on),
    })
    notes = [int8_note(fam, out[f"int8_vs_fp32_{fam}_p50"], host or {}) for fam, _ in INT8_PAIRS]
    out["int8_notes"] = [n for n in notes if n]
    maes = {r["artifact"]: r["test_mae"] for r in rows if r.get("test_mae") is not None}
    float_mae = maes.get(s + "torch_fp32")
    int8 = {a: m for a, m in maes.items() if a.startswith(s) and "int8" in a}
    if float_mae is not None and int8:
        out["float_student_test_mae"] = float_mae
        out["worst_int8_minus_float_mae"] = round(max(int8.values()) - float_mae, 4)
    return out


def write_results(result: dict, out_dir: Path) -> tuple[Path, Path]:
    from pipeline.runs import atomic_write_json, atomic_write_text

    json_path = atomic_write_json(Path(out_dir) / "benchmark.json", result)
    lines: list[dict] = []
    for r in result["rows"]:
        lines.append({k: r.get(k) for k in CSV_FIELDS})
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS)
    w.writeheader()
    w.writerows(lines)
    csv_path = atomic_write_text(Path(out_dir) / "benchmark.csv", buf.getvalue())
    return json_path, csv_path


def format_table(result: dict) -> str:
    """A fixed-width table of the rows, for the console and logs; failed artifacts first, int8 notes last."""
    out = [f"FAILED {f['artifact']} ({f['stage']}): {f['reason']} - not timed" for f in result.get("failures") or []]
    if out:
        out.append("")
    head = f"{'artifact':<22} {'backend':<11} {'thr':>3} {'p50 ms':>8} {'p50 spread':>17} {'p99 ms':>8} " \
           f"{'fps':>7} {'load ms':>8} {'peak MB':>7} {'+MB':>6} {'size KB':>8} {'MAE':>7}  legend"
    out += [head, "-" * len(head)]
    for r in result["rows"]:
        spread = f"{r['p50_min_ms']:.4f}-{r['p50_max_ms']:.4f}" if r.get("p50_min_ms") is not None else ""
        def f(v: object, spec: str) -> str:
            return format(v, spec) if isinstance(v, (int, float)) and not isinstance(v, bool) else ""
        size = f(r["size_bytes"] / 1024, ".1f") if r.get("size_bytes") else ""
        shown = r.get("legend") or r["status"]
        if r["status"] not in ("ok",) and not shown.startswith("failed"):
            shown += f" ({r['status']})"
        out.append(f"{r['artifact']:<22} {r['backend']:<11} {r['threads']:>3} {f(r.get('p50_ms'), '.4f'):>8} "
                   f"{spread:>17} {f(r.get('p99_ms'), '.4f'):>8} {f(r.get('fps'), '.0f'):>7} "
                   f"{f(r.get('load_ms'), '.1f'):>8} {f(r.get('peak_rss_mb'), '.0f'):>7} "
                   f"{f(r.get('rss_increase_mb'), '.0f'):>6} {size:>8} {f(r.get('test_mae'), '.3f'):>7}  {shown[:70]}")
    out.append("legend: " + "; ".join(f"{k} = {v}" for k, v in LEGEND.items()))
    out.append("fps = 1000 / p50 ms at batch 1; peak MB = the worker's peak resident memory over import, load and "
               "runs; +MB = its increase over the idle worker")
    h = dict(result["headline"])
    notes = h.pop("int8_notes", None) or []
    out.append("")
    out += [f"{k}: {v}" for k, v in h.items()]
    out += [f"note: {n}" for n in notes]
    return "\n".join(out)


def accuracy_violations(result: dict, max_error: float) -> list[str]:
    """One line per artifact whose own clean-test error is above ``max_error`` (label units), or could not
    be measured: what ``bench --max-error`` fails on. Each artifact once, whatever its backends and threads."""
    out: dict[str, str] = {}
    for r in result["rows"]:
        name, mae = r["artifact"], r.get("test_mae")
        if name in out or (mae is None and "error_status" not in r):
            continue
        if mae is None:
            out[name] = f"{name}: own clean-test error not measured ({r['error_status']})"
        elif mae > max_error:
            out[name] = f"{name}: own clean-test MAE {mae:.4g} > --max-error {max_error:g}"
    return list(out.values())
