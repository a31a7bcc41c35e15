"""Where training runs: CUDA with bf16 autocast and channels_last when present, else CPU threads."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DeviceInfo:
    device: torch.device
    threads: int
    is_writer: bool = True  # the one process that writes artifacts (rank 0 under torchrun)

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def channels_last(self) -> bool:
        # Measured on a 2-core CPU: channels_last trains the teacher CNN ~2x faster than NCHW.
        return True

    def autocast(self):
        if self.is_cuda:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def describe(self) -> str:
        if self.is_cuda:
            return f"cuda ({torch.cuda.get_device_name(self.device)}, bf16 autocast)"
        return f"cpu ({self.threads} threads)"


def resolve_device(kind: str, threads: int) -> DeviceInfo:
    """``kind``: auto | cpu | cuda; ``threads`` 0 means every core this process may use."""
    use_cuda = kind == "cuda" or (kind == "auto" and torch.cuda.is_available())
    n = threads or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    torch.set_num_threads(n)
    if use_cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        return DeviceInfo(torch.device("cuda"), n)
    return DeviceInfo(torch.device("cpu"), n)
