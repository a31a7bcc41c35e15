"""Parity of artifacts on an emulated x86 CPU (qemu-user), so CPU-specific int8 kernels are checked anywhere.

Why: onnxruntime picks its u8s8 int8 kernels by CPUID. Without VNNI (AVX2, AVX-512F) they multiply with
VPMADDUBSW, whose int16 pair sums saturate unless weights stay within +-64
(``pipeline.quant.quantizer.WEIGHT_QMAX``); with VNNI they do not. A parity check run natively on a VNNI
machine cannot see that bug; under ``qemu-x86_64 -cpu Haswell`` the same artifact runs the AVX2 kernels.

Two halves:

* the worker, ``python -m exporters.emulated_parity --inputs X.npy --out DIR ARTIFACT...``: numpy and the
  runtimes only (torch under emulation is slow and not needed). Per artifact (its ``model_meta.json``
  beside it) it lays out and quantizes ``X`` (NCHW float) as the meta says, runs it with one thread and
  writes ``DIR/<format>.npy`` in label units, and the runtimes' descriptions to ``DIR/how.json``;
* :func:`emulated_parity`, in the calling process: runs the worker under qemu and judges the outputs with
  :mod:`exporters.parity`'s rule against the same torch reference as the native check.

Only what QEMU's TCG implements is emulated: QEMU 7.2 (Debian 12) has no AVX-512 and no VNNI, so
``-cpu Skylake-Server`` or ``Cascadelake-Server`` run as AVX2 (QEMU warns "TCG doesn't support requested
feature"; the warnings are appended to each result's ``how``). ``-cpu Nehalem`` gives the SSE4 kernels.
Emulated run times mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from exporters.artifact_io import runtime_inputs, runtime_outputs
from exporters.formats import FORMATS
from exporters.metadata import META_FILE, read_meta
from exporters.runtimes import open_runtime
from pipeline.runs import atomic_write_json, atomic_write_npy

QEMU_BINARIES = ("qemu-x86_64", "qemu-x86_64-static")
QEMU_MISSING = ("qemu-user is not installed (no qemu-x86_64 on PATH): the int8 parity check on emulated CPUs "
                "needs it; install it with `apt-get install qemu-user`")
ROOT = Path(__file__).resolve().parents[1]


def _meta_beside(path: Path) -> dict:
    """The ``model_meta.json`` export wrote beside the artifact."""
    return read_meta(Path(path).parent / META_FILE)


def qemu_binary() -> str:
    """Path of qemu-user's x86-64 emulator; raises with the install command when it is missing."""
    for name in QEMU_BINARIES:
        found = shutil.which(name)
        if found:
            return found
    raise FileNotFoundError(QEMU_MISSING)


def run_artifacts(artifacts: list[Path], x: np.ndarray, out: Path) -> dict[str, str]:
    """The worker: run each artifact on ``x``; ``<format>.npy`` outputs into ``out``; returns format -> how."""
    how = {}
    for path in artifacts:
        meta = _meta_beside(path)
        session = open_runtime(meta["format"], Path(path), threads=1)
        try:
            raw = session.run(runtime_inputs(x, meta))
        finally:
            session.close()
        atomic_write_npy(out / f"{meta['format']}.npy", runtime_outputs(raw, meta))
        how[meta["format"]] = session.how
    atomic_write_json(out / "how.json", how)
    return how


def run_emulated(artifacts: list[Path], x: np.ndarray, cpu: str = "Haswell",
                 timeout: float = 900) -> dict[str, tuple[np.ndarray, str]]:
    """Run the worker on ``x`` under ``qemu-x86_64 -cpu <cpu>``: format -> (outputs in label units, how)."""
    qemu = qemu_binary()
    with tempfile.TemporaryDirectory(prefix="emulated_parity_") as tmp:
        atomic_write_npy(Path(tmp) / "inputs.npy", np.ascontiguousarray(x, np.float32))
        cmd = [qemu, "-cpu", cpu, sys.executable, "-m", "exporters.emulated_parity",
               "--inputs", str(Path(tmp) / "inputs.npy"), "--out", tmp, *map(str, artifacts)]
        # cwd: `-m exporters...` then imports this checkout, installed or not; quiet TensorFlow-style logs
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "OMP_NUM_THREADS": "1"}
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"emulated run failed ({' '.join(cmd)}): exit {done.returncode}\n"
                               f"{done.stderr[-3000:]}")
        # QEMU drops the vector features its TCG lacks (AVX-512, VNNI): name them, as the CPU that ran differs
        dropped = sorted({name for line in done.stderr.splitlines() if "TCG doesn't support" in line
                          for name in [line.rsplit(".", 1)[-1].split(" ")[0]] if "avx" in name})
        note = f" under qemu-x86_64 -cpu {cpu}" + (f" (without {', '.join(dropped)})" if dropped else "")
        how = json.loads((Path(tmp) / "how.json").read_text())
        return {name: (np.load(Path(tmp) / f"{name}.npy"), h + note) for name, h in how.items()}


def emulated_parity(artifacts: list[Path], inputs: Any, float_model: Any, int8_model: Any = None,
                    cpu: str = "Haswell") -> tuple[list[Any], dict[str, np.ndarray]]:
    """:func:`exporters.parity.check_parity` for each artifact, its runtime run on the emulated ``cpu``.

    ``inputs``: NCHW torch tensor. Returns one ``ParityResult`` per artifact, in order, and format -> the
    artifact's outputs (label units), to compare CPUs. Needs torch (the reference), so it runs in the
    calling process, never under emulation.
    """
    from exporters.parity import compare_outputs, parity_tolerance, pick_reference

    x = inputs.detach().float().cpu().numpy()
    outputs = run_emulated(artifacts, x, cpu)
    results = []
    for path in artifacts:
        meta = _meta_beside(path)
        fmt = FORMATS[meta["format"]]
        got, how = outputs[fmt.name]
        reference, ref_name = pick_reference(fmt, float_model, int8_model)
        if reference is None:
            raise ValueError(f"{fmt.name} needs the int8 (PT2E-converted) torch model as its reference")
        results.append(compare_outputs(fmt, got, x, meta, float_model, reference, ref_name,
                                       parity_tolerance(fmt, meta), how))
    return results, {name: got for name, (got, _) in outputs.items()}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Run artifacts (model_meta.json beside each) on NCHW float "
                                            "inputs; write <format>.npy outputs in label units.")
    p.add_argument("artifacts", nargs="+", type=Path)
    p.add_argument("--inputs", required=True, type=Path, help=".npy of NCHW float inputs")
    p.add_argument("--out", required=True, type=Path)
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, how in run_artifacts(args.artifacts, np.load(args.inputs), args.out).items():
        print(f"{name}: {how}")


if __name__ == "__main__":
    main()
