"""Training-loop overhead: ``pipeline.train.fit`` vs a bare PyTorch loop on the same model and batches.

    python -m benchmarks.train_overhead [--arch cnn_m] [--steps 30] [--batch 128] [--repeats 3] [--threads 2]

Both loops run the same number of AdamW steps on the same uint8 images (index, convert to float NCHW,
forward, L2 loss, backward, step). ``fit`` adds the LR schedule, loss-component bookkeeping, progress
bar, per-epoch validation (here a trivial one) and recovery checkpoints. Prints the median seconds
per step of each and their ratio, measured interleaved in one process so machine noise hits both.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from pipeline.config import TrainConfig
from pipeline.device import resolve_device
from pipeline.models import build_model
from pipeline.train import TrainData, fit, l2_step, to_model_input

STATS = {"input_mean": [0.5] * 3, "input_std": [0.25] * 3, "label_mean": [0.0] * 3, "label_std": [40.0] * 3}


def bare_loop(model, data: TrainData, steps: int, batch: int, dev) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    g = torch.Generator().manual_seed(0)
    order = torch.randperm(len(data), generator=g)
    t0 = time.perf_counter()
    for s in range(steps):
        idx = order[s * batch:(s + 1) * batch]
        x = to_model_input(data.x[idx], dev)
        loss = ((model(x) - data.y[idx]) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return (time.perf_counter() - t0) / steps


def pipeline_loop(model, data: TrainData, steps: int, batch: int, dev, cpu_bf16: bool = False) -> float:
    """Seconds per step of ``fit`` itself (one epoch of ``steps`` steps, recovery checkpoint included)."""
    cfg = TrainConfig(epochs=1, batch_size=batch, augment=False, checkpoint_every_s=60.0, cpu_bf16=cpu_bf16)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        fit(model, l2_step, TrainData(data.x[:steps * batch], data.y[:steps * batch]),
            lambda m: {"val_mae": 0.0}, cfg, dev, tmp)
        return (time.perf_counter() - t0) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", default="cnn_m")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    dev = resolve_device("cpu", args.threads)
    n = args.steps * args.batch
    g = torch.Generator().manual_seed(0)
    data = TrainData(torch.randint(0, 256, (n, 64, 64, 3), dtype=torch.uint8, generator=g),
                     torch.randn(n, 3, generator=g) * 30)
    bare, ours = [], []
    for r in range(args.repeats + 1):  # the first round warms up allocators and kernels, not reported
        for fn, sink in ((bare_loop, bare), (pipeline_loop, ours)):
            torch.manual_seed(r)
            model = build_model(args.arch, STATS).to(memory_format=torch.channels_last)
            t = fn(model, data, args.steps, args.batch, dev)
            if r:
                sink.append(t)
    mb, mo = statistics.median(bare), statistics.median(ours)
    print(f"model {args.arch}, batch {args.batch}, {args.steps} steps x {args.repeats} repeats, "
          f"{dev.describe()}")
    print(f"bare loop      median {mb * 1e3:8.2f} ms/step  (all: {', '.join(f'{t * 1e3:.1f}' for t in bare)})")
    print(f"pipeline fit   median {mo * 1e3:8.2f} ms/step  (all: {', '.join(f'{t * 1e3:.1f}' for t in ours)})")
    print(f"overhead ratio fit/bare = {mo / mb:.3f}  (target <= 1.10)")


if __name__ == "__main__":
    main()
