"""Training step time in fp32 and under CPU bf16 autocast, per network, through ``pipeline.train.fit``.

    python -m benchmarks.train_precision [--archs cnn_m,mobile_s] [--steps 20] [--batch 128]
        [--repeats 3] [--threads 0]

Why the teacher trains in bf16 on the CPU and the students do not (``train.cpu_bf16``): on a CPU with
native bf16 (AVX512-BF16 or AMX) oneDNN's bf16 convolutions speed up the dense teacher, while the
students' depthwise convolutions and batch norms get slower. Each round times both precisions of
every network, interleaved, so machine noise hits all of them; the first round is a warm-up. Prints
the median ms per step, every repeat, and the bf16/fp32 ratio. Without native bf16 it says so and
times fp32 only (``fit`` would not use bf16 there).
"""

from __future__ import annotations

import argparse
import statistics

import torch

from benchmarks.train_overhead import STATS, pipeline_loop
from pipeline.device import cpu_has_native_bf16, resolve_device
from pipeline.models import MODELS, build_model
from pipeline.train import TrainData


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--archs", default="cnn_m,mobile_s")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    archs = args.archs.split(",")
    unknown = [a for a in archs if a not in MODELS or MODELS[a].input_kind != "image"]
    if unknown:
        ap.error(f"--archs {','.join(unknown)}: not an image network; use any of: "
                 + ", ".join(n for n, m in MODELS.items() if m.input_kind == "image"))
    dev = resolve_device("cpu", args.threads)
    native = cpu_has_native_bf16()
    precisions = (False, True) if native else (False,)
    n = args.steps * args.batch
    g = torch.Generator().manual_seed(0)
    data = TrainData(torch.randint(0, 256, (n, 64, 64, 3), dtype=torch.uint8, generator=g),
                     torch.randn(n, 3, generator=g) * 30)
    times: dict[tuple[str, bool], list[float]] = {(a, p): [] for a in archs for p in precisions}
    for r in range(args.repeats + 1):  # round 0 warms up allocators and kernels, not reported
        for arch in archs:
            for bf16 in precisions:
                torch.manual_seed(r)
                model = build_model(arch, STATS).to(memory_format=torch.channels_last)
                t = pipeline_loop(_FirstHead(model), data, args.steps, args.batch, dev, cpu_bf16=bf16)
                if r:
                    times[(arch, bf16)].append(t)
    print(f"batch {args.batch}, {args.steps} steps x {args.repeats} repeats, {dev.describe()}, "
          f"native bf16: {'yes' if native else 'no (fp32 only)'}")
    for arch in archs:
        fp32 = statistics.median(times[(arch, False)])
        line = f"{arch:<10} fp32 {fp32 * 1e3:8.1f} ms/step ({_all(times[(arch, False)])})"
        if native:
            bf16 = statistics.median(times[(arch, True)])
            line += f"   bf16 {bf16 * 1e3:8.1f} ms/step ({_all(times[(arch, True)])})   bf16/fp32 {bf16 / fp32:.2f}"
        print(line)


def _all(ts: list[float]) -> str:
    return ", ".join(f"{t * 1e3:.1f}" for t in ts)


class _FirstHead(torch.nn.Module):
    """A two-headed student's label head alone, so every network trains on the same L2 step."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        return out[0] if isinstance(out, tuple) else out


if __name__ == "__main__":
    main()
