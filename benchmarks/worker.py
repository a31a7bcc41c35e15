"""Time one model in one runtime at one thread count, in a process of its own; print one JSON object.

The harness starts one worker per artifact x backend x thread count so that runtimes never share a
process (thread pools, allocators and JIT caches stay apart), and reads the JSON it prints last.

    python -m benchmarks.worker '{"backend": "onnxruntime", "format": "onnx_int8", "path": "...",
                                  "meta": ".../model_meta.json", "threads": 1, "plan": {...}, "profile": true}'

Backends: ``onnxruntime``, ``litert`` and ``coreml`` open an exported artifact through
``exporters.runtimes``; ``torch`` loads a model with :mod:`benchmarks.models` (``path`` names a
stage folder, ``format`` says which model: ``torch_fp32``, ``torch_int8``, ``torch_teacher``; ``shape``
gives the input shape).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.timing import TimingPlan, time_repeated

PROFILE_RUNS = 300


def _input(meta: dict, batch: int = 1) -> np.ndarray:
    """A batch of random images in [0, 1] laid out and typed as the artifact's meta says."""
    from exporters.artifact_io import runtime_inputs

    shape = [batch] + [int(d) for d in meta["input"]["shape"][1:]]
    if meta["input"]["layout"] == "NHWC":  # runtime_inputs expects NCHW and transposes itself
        shape = [shape[0], shape[3], shape[1], shape[2]]
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    return runtime_inputs(x, meta)


def summarize_ort_profile(trace_path: str, runs: int) -> list[dict]:
    """onnxruntime's JSON trace -> per op type: nodes, microseconds per run, share of the total."""
    events = json.loads(Path(trace_path).read_text())
    total: dict[str, float] = {}
    nodes: dict[str, set] = {}
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            op = e["args"]["op_name"]
            total[op] = total.get(op, 0.0) + float(e["dur"])
            nodes.setdefault(op, set()).add(e["name"])
    grand = sum(total.values()) or 1.0
    rows = [{"op": op, "nodes": len(nodes[op]), "us_per_run": round(us / runs, 3),
             "percent": round(100 * us / grand, 1)} for op, us in total.items()]
    return sorted(rows, key=lambda r: -r["us_per_run"])


def _profile_onnx(path: str, threads: int, x: np.ndarray) -> list[dict]:
    from exporters.runtimes import OnnxSession

    with tempfile.TemporaryDirectory() as tmp:
        session = OnnxSession(Path(path), threads, profile_prefix=str(Path(tmp) / "ort"))
        for _ in range(PROFILE_RUNS):
            session.run(x)
        return summarize_ort_profile(session.end_profiling(), PROFILE_RUNS)


def run_job(job: dict) -> dict:
    plan = TimingPlan(**job.get("plan", {}))
    threads = int(job["threads"])
    result: dict = {"profile": None}
    if job["backend"] == "torch":
        import torch

        from benchmarks.models import load_torch_model

        torch.set_num_threads(threads)
        model = load_torch_model(job["format"], Path(job["path"]))
        x = torch.rand(*job["shape"], generator=torch.Generator().manual_seed(0))

        def call() -> object:
            with torch.inference_mode():
                return model(x)
        result["how"] = f"torch {torch.__version__} eager, {threads} thread(s)"
    else:
        from exporters.runtimes import open_runtime

        meta = json.loads(Path(job["meta"]).read_text())
        x = _input(meta)
        session = open_runtime(job["format"], Path(job["path"]), threads)

        def call() -> object:
            return session.run(x)
        call()
        result["how"] = session.how
        if job.get("profile") and job["backend"] == "onnxruntime":
            result["profile"] = _profile_onnx(job["path"], threads, x)
    result.update(time_repeated(call, plan))
    return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    job = json.loads(argv[0])
    print(json.dumps(run_job(job)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
