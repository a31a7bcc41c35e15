"""Export a trained student to every requested format, verify each artifact, write one report.

Why: the export stage must ship artifacts that provably compute what the torch model computes. This
is the one entry point: per format it exports (the family exporter from the formats table), writes
``<out_dir>/<format>/model_meta.json`` beside the artifact, reads the embedded meta back, runs parity
(:mod:`exporters.parity`), and records everything in ``<out_dir>/export_report.json``.

Statuses: ``verified`` (parity passed), ``exported`` (written, runtime missing so not checked),
``failed`` (conversion error, metadata mismatch or parity failure), ``skipped`` (int8 model or exporter
module missing). A failed format never stops the others: each is written and verified on its own, and
the report lists every failure as a one-line summary (:func:`failure_line`). Then, with ``strict`` (the
default, and this module's demo), a parity failure raises :class:`ParityError` and any other failure
:class:`ExportError`; the pipeline's export stage passes ``strict=False`` and ships the verified
artifacts, leaving the failed ones out of its manifest.

Smoke run on a random-weight student (int8 rows need ``pipeline.quant``, else they are skipped):

    python -m exporters.export --arch mobile_xs --out /tmp/export_demo --formats onnx_fp32 tflite_fp32
"""

from __future__ import annotations

import argparse
import logging
import shutil
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from exporters.formats import (
    FORMATS,
    ExportOptions,
    Format,
    exporter,
    meta_reader,
    missing_for_export,
    resolve,
)
from exporters.metadata import META_FILE, artifact_meta, base_meta, compare_meta, write_meta
from exporters.parity import ParityError, ParityResult, check_parity, torch_outputs
from exporters.qdq import eval_copy
from pipeline.runs import atomic_write_json

log = logging.getLogger(__name__)

REPORT_FILE = "export_report.json"
NO_INT8 = "no int8 model (run the qat stage)"


class ExportError(RuntimeError):
    """One or more requested formats could not be exported (or their metadata did not read back)."""


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _check_embedded(fmt: Format, path: Path, meta: dict) -> tuple[str, list[str]]:
    """(how the embedded meta read back, problems); no problems when it is not readable here."""
    try:
        embedded = meta_reader(fmt)(path)
    except ImportError as exc:  # the reader's module is absent here: nothing to compare
        return f"could not be read back here ({type(exc).__name__}: {exc})", []
    except Exception as exc:  # the reader rejected the file: its embedded metadata is broken
        return "read back failed", [f"embedded metadata unreadable ({type(exc).__name__}: {exc})"]
    if embedded is None:
        return "not embedded / no reader available here", []
    problems = compare_meta(meta, embedded)
    return ("read back equal" if not problems else "read back different"), problems


def _details(fmt: Format, path: Path) -> dict | None:
    """What the family reports about a written file (ExecuTorch: the share of ops XNNPACK took), or None."""
    if not fmt.family_row.describe:
        return None
    try:
        return resolve(fmt.family_row.describe)(path)
    except Exception as exc:  # the file is judged by the metadata and parity checks that follow
        log.warning("%s: could not describe %s (%s: %s)", fmt.name, path, type(exc).__name__, exc)
        return None


def _export_one(fmt: Format, float_model: nn.Module, int8_model: nn.Module | None, inputs: torch.Tensor,
                out_dir: Path, base: dict, n_outputs: int, options: ExportOptions) -> dict:
    rec: dict = {"format": fmt.name, "family": fmt.family, "precision": fmt.precision, "path": None,
                 "meta_path": None, "size_bytes": None, "status": "skipped", "reason": "",
                 "tolerance": options.tolerance(fmt.name), "verified_by": None, "metadata": None,
                 "parity": None, "seconds": None, "details": None}
    model = int8_model if fmt.needs_int8_model else float_model
    rec["reason"] = NO_INT8 if model is None else (missing_for_export(fmt) or "")
    if rec["reason"]:
        log.warning("%s skipped: %s", fmt.name, rec["reason"])
        return rec
    fmt_dir = out_dir / fmt.name
    shutil.rmtree(fmt_dir, ignore_errors=True)  # no stale artifact from an earlier run
    fmt_dir.mkdir(parents=True)
    meta = artifact_meta(base, fmt, tuple(inputs.shape), n_outputs, int8_io=options.int8_io)
    start = time.perf_counter()
    try:
        path = exporter(fmt)(model, inputs, fmt_dir, replace(options, format=fmt.name, meta=meta))
    except Exception as exc:
        log.exception("%s export failed", fmt.name)
        rec.update(status="failed", reason=f"export: {type(exc).__name__}: {str(exc)[:2000]}")
        return rec
    rec["seconds"] = round(time.perf_counter() - start, 2)
    meta_path = write_meta(meta, fmt_dir / META_FILE)
    rec.update(path=str(path.relative_to(out_dir)), meta_path=str(meta_path.relative_to(out_dir)),
               size_bytes=_size(path), status="exported")
    rec["details"] = _details(fmt, path)
    rec["metadata"], problems = _check_embedded(fmt, path, meta)
    if problems:
        rec.update(status="failed", reason="embedded metadata differs: " + "; ".join(problems[:10]))
        return rec
    parity = check_parity(fmt, path, meta, inputs, float_model, int8_model, options.tolerance(fmt.name))
    rec["parity"], rec["verified_by"], rec["tolerance"] = parity.as_dict(), parity.how or None, parity.tolerance
    rec["status"] = {"passed": "verified", "failed": "failed", "skipped": "exported"}[parity.status]
    rec["reason"] = parity.reason
    return rec


def failure_line(rec: dict) -> str:
    """A failed record as one line, figures first: ``onnx_int8: parity failed: max 8.19 mean 1.02 (tol 4.5 / 1)``."""
    par = rec.get("parity") or {}
    if par.get("status") == "failed" and par.get("max_abs") is not None:
        mean_tol = FORMATS[rec["format"]].mean_tolerance
        tol = f"{par['tolerance']:.3g}" + (f" / {mean_tol:.3g}" if mean_tol is not None else "")
        return f"{rec['format']}: parity failed: max {par['max_abs']:.3g} mean {par['mean_abs']:.3g} (tol {tol})"
    reason = (str(rec.get("reason") or "unknown").strip().splitlines() or ["unknown"])[0]
    return f"{rec['format']}: {reason[:300]}"  # an exporter's error can be pages long: the report has it all


def export_all(float_model: nn.Module, int8_model: nn.Module | None, inputs: torch.Tensor, out_dir: Path,
               formats: list[str], meta: dict, options: ExportOptions | dict | None = None,
               strict: bool = True) -> dict:
    """Export ``formats`` into ``out_dir``, verify each on ``inputs`` (fixed NCHW test samples), report.

    ``meta`` is the base meta (:func:`exporters.metadata.base_meta`); ``int8_model`` is the
    PT2E-converted model (None: int8 formats are skipped). Returns the report written to
    ``export_report.json`` (its ``failures``: one :func:`failure_line` per failed format). With
    ``strict``, a failed format raises :class:`ParityError` / :class:`ExportError` after the report is
    written; without it the caller reads the failures from the report and carries on.
    """
    options = ExportOptions(**options) if isinstance(options, dict) else (options or ExportOptions())
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown formats {unknown}; use any of: {', '.join(FORMATS)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    inputs = inputs.detach().float().cpu()
    # Inference-mode copies: a float model left in train mode would give batch-statistics BN references.
    float_model = eval_copy(float_model)
    int8_model = eval_copy(int8_model) if int8_model is not None else None
    n_outputs = int(torch_outputs(float_model, inputs[:1]).reshape(1, -1).shape[1])
    records = {name: _export_one(FORMATS[name], float_model, int8_model, inputs, out_dir, meta, n_outputs,
                                 options) for name in formats}
    failures = [failure_line(r) for r in records.values() if r["status"] == "failed"]
    report = {"out_dir": str(out_dir), "n_parity_samples": int(inputs.shape[0]),
              "input_shape": list(inputs.shape[1:]), "int8_io": options.int8_io, "failures": failures,
              "artifacts": records}
    report_path = atomic_write_json(out_dir / REPORT_FILE, report)
    log.info("export report: %s", {n: r["status"] for n, r in records.items()})
    for line in failures:
        log.error("export failed: %s (details in %s)", line, report_path)
    if not strict:
        return report
    parity_failures = [r for r in records.values() if r["status"] == "failed" and r["parity"]
                       and r["parity"]["status"] == "failed"]
    if parity_failures:
        raise ParityError([ParityResult(**r["parity"]) for r in parity_failures], report_path)
    failed = [f"{r['format']}: {r['reason']}" for r in records.values() if r["status"] == "failed"]
    if failed:
        raise ExportError(f"export failed (see {report_path}):\n  " + "\n  ".join(failed))
    return report


def _demo(args: argparse.Namespace) -> dict:
    """Random-weight student from pipeline.models, random images; int8 via pipeline.quant when present."""
    from exporters.formats import has_module
    from pipeline.models import build_model
    from pipeline.models.student import SingleOutput

    torch.manual_seed(0)
    stats = {"input_mean": [0.5] * 3, "input_std": [0.25] * 3, "label_mean": [0.0] * 3,
             "label_std": [30.0] * 3}
    model = SingleOutput(build_model(args.arch, stats), "teacher").eval()
    inputs = torch.rand(args.samples, 3, 64, 64)
    int8 = None
    if has_module("pipeline.quant"):
        from pipeline import quant

        prepared = quant.prepare_ptq(model, inputs[:1])
        quant.calibrate(prepared, [inputs])
        int8 = quant.convert(prepared)
    meta = base_meta(name=f"demo_{args.arch}", version="0.0.0", description="random-weight smoke test",
                     author="demo", license="Apache-2.0", config_hash="demo")
    return export_all(model, int8, inputs, Path(args.out), args.formats, meta, ExportOptions(int8_io=args.int8_io))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="mobile_xs")
    p.add_argument("--out", required=True)
    p.add_argument("--formats", nargs="+", default=list(FORMATS), choices=list(FORMATS))
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--int8-io", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    report = _demo(args)
    for name, rec in report["artifacts"].items():
        par = rec["parity"] or {}
        print(f"{name:<12} {rec['status']:<9} {rec['size_bytes'] or 0:>9} B  max {par.get('max_abs')}  "
              f"{rec['reason']}")


if __name__ == "__main__":
    main()
