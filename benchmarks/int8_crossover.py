"""At what model size does int8 start to pay on this host? fp32 vs int8 latency across model sizes.

Builds students of growing width (``mobile_s`` at several width multipliers) and the ``cnn_m``
teacher with random weights and BN statistics from random images, quantizes each with the
pipeline's own PTQ route (same quantizer and converter as the qat stage), exports fp32 and int8
ONNX and TFLite with the shipped exporters (parity-checked), and times every artifact with the
benchmark worker (one process per artifact, warm-up, bounded runs, repeats). Latency does not depend
on the weights' values, so no training is needed.

    python -m benchmarks.int8_crossover --widths 0.5,1,2,3,4 --threads 1 --repeats 5 [--json out.json]

Prints one row per model: MACs, p50 of each artifact (median over repeats, with the spread) and the
int8/fp32 ratio per runtime, then the smallest model whose int8 artifact is at most 0.8x its fp32 one.
"""

from __future__ import annotations

import argparse
import logging
import platform
import tempfile
from pathlib import Path

import torch

from benchmarks.harness import BACKENDS, FAMILY_BACKEND, INT8_PAIRS, Target, run_worker
from benchmarks.timing import TimingPlan
from pipeline.runs import atomic_write_json

log = logging.getLogger(__name__)

# The int8 and fp32 artifacts of every family the harness compares, where this host can time them
FAMILIES = tuple(fam for fam, backend in INT8_PAIRS if BACKENDS[backend].system in ("", platform.system()))
FORMATS = tuple(f"{fam}_{p}" for fam in FAMILIES for p in ("fp32", "int8"))
STATS = {"input_mean": [0.5, 0.45, 0.4], "input_std": [0.25, 0.25, 0.25], "label_mean": [0.0, 0.0, 0.0],
         "label_std": [40.0, 25.0, 20.0]}
PAYS = 0.8  # the target ratio int8 / fp32


def _images(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 8, 8, generator=g)
    return torch.nn.functional.interpolate(low, size=(64, 64), mode="bilinear", align_corners=False)


def _model(arch: str, width: float) -> torch.nn.Module:
    from pipeline.models import MODELS, build_model
    from pipeline.models.student import SingleOutput

    torch.manual_seed(0)
    model = build_model(arch, STATS, width)
    if MODELS[arch].role == "student":
        model = SingleOutput(model, "mean")
    model.train()
    with torch.no_grad():  # BN statistics as training would leave them
        for i in range(3):
            model(_images(32, i))
    return model.eval()


def _export(model: torch.nn.Module, out: Path) -> dict:
    from exporters.export import export_all
    from exporters.formats import ExportOptions
    from exporters.metadata import base_meta
    from pipeline import quant

    prepared = quant.prepare_ptq(model, _images(2, 10))
    quant.calibrate(prepared, [_images(32, 20 + i) for i in range(4)])
    int8 = quant.convert(prepared)
    meta = base_meta(name=out.name, version="0", description="int8 crossover benchmark model",
                     author="benchmarks", license="Apache-2.0", config_hash="0")
    return export_all(model, int8, _images(8, 30), out, list(FORMATS), meta, ExportOptions())


def measure(arch: str, width: float, threads: int, plan: TimingPlan, work: Path) -> dict:
    from exporters.metadata import META_FILE
    from pipeline.models.complexity import count_macs

    model = _model(arch, width)
    out = work / f"{arch}_x{width:g}"
    report = _export(model, out)
    row: dict = {"model": f"{arch} x{width:g}", "macs": count_macs(model, _images(1, 0))}
    for name, rec in report["artifacts"].items():
        path = out / rec["path"]
        target = Target(name, "crossover", name, rec["precision"], FAMILY_BACKEND[rec["family"]], path,
                        path.parent / META_FILE)
        lat = run_worker(target, threads, plan, profile=False)["latency"]
        row[name] = {k: round(lat[k], 5) for k in ("p50_ms", "p50_min_ms", "p50_max_ms")}
    for rt in FAMILIES:
        row[f"{rt}_int8_vs_fp32"] = round(row[f"{rt}_int8"]["p50_ms"] / row[f"{rt}_fp32"]["p50_ms"], 3)
    return row


def format_rows(rows: list[dict]) -> str:
    def cell(r: dict, name: str) -> str:
        v = r[name]
        return f"{v['p50_ms']:.4f} ({v['p50_min_ms']:.4f}-{v['p50_max_ms']:.4f})"
    lines = [f"{'model':<16} {'MMACs':>7}  " + "  ".join(f"{n + ' p50 ms (spread)':<28}" for n in FORMATS)
             + "".join(f"  {rt + ' int8/fp32':>16}" for rt in FAMILIES)]
    for r in rows:
        lines.append(f"{r['model']:<16} {r['macs'] / 1e6:>7.1f}  " + "  ".join(f"{cell(r, n):<28}" for n in FORMATS)
                     + "".join(f"  {r[rt + '_int8_vs_fp32']:>16.3f}" for rt in FAMILIES))
    for rt in FAMILIES:
        pays = [r for r in rows if r[f"{rt}_int8_vs_fp32"] <= PAYS]
        first = min(pays, key=lambda r: r["macs"]) if pays else None
        lines.append(f"{rt}: int8 <= {PAYS}x fp32 from " + (f"{first['model']} ({first['macs'] / 1e6:.1f} MMACs)"
                                                           if first else "no model measured"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arch", default="mobile_s", help="student architecture to widen")
    p.add_argument("--widths", default="0.5,1,2,3,4", help="comma-separated width multipliers")
    p.add_argument("--teacher", default="cnn_m", help="also measure this teacher ('' to skip)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", type=Path, help="also write the rows here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    plan = TimingPlan(warmup=50, min_runs=100, min_time_s=0.2, repeats=args.repeats)
    jobs = [(args.arch, float(w)) for w in args.widths.split(",")] + ([(args.teacher, 1.0)] if args.teacher else [])
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(arch, w, args.threads, plan, Path(tmp)) for arch, w in jobs]
    print(format_rows(rows))
    if args.json:
        atomic_write_json(args.json, rows)


if __name__ == "__main__":
    main()
