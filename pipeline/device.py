"""Where training runs: CUDA with bf16 autocast and channels_last when present, else CPU threads; and,
under ``torchrun``, which rank this process is (rank 0 is the only writer of artifacts).

One process: ``DeviceInfo(device, threads)`` with ``rank 0 of 1``. Under ``torchrun --nproc_per_node N``
(``WORLD_SIZE`` > 1 in the environment) :func:`resolve_device` joins the process group (NCCL on CUDA,
gloo on CPU), takes ``cuda:LOCAL_RANK`` or its share of the CPU cores, and the collectives below
(barrier, all-reduce) become real; with one process they are no-ops, so callers never branch.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)

# The training set is copied to the GPU once when it takes at most this share of the free memory;
# otherwise it stays in pinned host memory and each batch is copied asynchronously.
ON_DEVICE_FRACTION = 0.25


@dataclass(frozen=True)
class DeviceInfo:
    device: torch.device
    threads: int
    is_writer: bool = True  # the one process that writes artifacts (rank 0 under torchrun)
    rank: int = 0
    world_size: int = 1

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def channels_last(self) -> bool:
        # Measured on a 2-core CPU: channels_last trains the teacher CNN ~2x faster than NCHW; on CUDA
        # it is the layout cuDNN's bf16 convolutions run fastest in.
        return True

    def autocast(self, cpu_bf16: bool = False):
        """bf16 autocast on CUDA; on the CPU only when asked and the CPU computes bf16 natively."""
        if self.is_cuda:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        if cpu_bf16 and cpu_has_native_bf16():
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def precision(self, cpu_bf16: bool = False) -> str:
        """What :meth:`autocast` runs: ``bf16`` or ``fp32``."""
        return "bf16" if self.is_cuda or (cpu_bf16 and cpu_has_native_bf16()) else "fp32"

    def describe(self) -> str:
        ranks = f", {self.world_size} processes" if self.distributed else ""
        if self.is_cuda:
            return f"cuda ({torch.cuda.get_device_name(self.device)}, bf16 autocast{ranks})"
        return f"cpu ({self.threads} threads{ranks})"

    def stage_tensor(self, t: torch.Tensor) -> torch.Tensor:
        """Where a training array lives: on the GPU when it fits comfortably (no copy per step), else
        in pinned host memory so per-batch copies are asynchronous; unchanged on the CPU."""
        if not self.is_cuda:
            return t
        free, _ = torch.cuda.mem_get_info(self.device)
        if t.numel() * t.element_size() <= ON_DEVICE_FRACTION * free:
            return t.to(self.device, non_blocking=True)
        return t.pin_memory()

    def shard(self, idx: torch.Tensor) -> torch.Tensor:
        """This rank's disjoint share of one global batch (every rank sees the same epoch order)."""
        return idx[self.rank::self.world_size] if self.distributed else idx

    def barrier(self) -> None:
        if self.distributed:
            torch.distributed.barrier()

    def all_mean(self, t: torch.Tensor) -> torch.Tensor:
        """The mean of ``t`` over ranks (a copy; ``t`` itself on one process)."""
        if not self.distributed:
            return t
        t = t.detach().clone()
        torch.distributed.all_reduce(t)
        return t / self.world_size

    def any_rank(self, flag: bool) -> bool:
        """True when ``flag`` is true on any rank: a stage-boundary barrier that also shares failure."""
        if not self.distributed:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.device if self.is_cuda else "cpu")
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return bool(t.item())


@functools.cache  # asked on every training step; the hardware does not change within a process
def cpu_has_native_bf16() -> bool:
    """True when oneDNN runs bf16 on this CPU in hardware (AVX512-BF16 or AMX). Without it bf16 is
    emulated and several times slower than fp32, so :meth:`DeviceInfo.autocast` keeps fp32 there.
    PyTorch exposes the check only as this private op; if it ever goes away the answer is False."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def resolve_device(kind: str, threads: int) -> DeviceInfo:
    """``kind``: auto | cpu | cuda; ``threads`` 0 means every core this process may use (its share of
    them when several processes run on one machine)."""
    use_cuda = kind == "cuda" or (kind == "auto" and torch.cuda.is_available())
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    n = threads or max(1, _cores() // max(1, local_world))
    torch.set_num_threads(n)
    rank, device = 0, torch.device("cuda" if use_cuda else "cpu")
    if world > 1:
        import torch.distributed as dist

        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if use_cuda:
            torch.cuda.set_device(local_rank)
            device = torch.device("cuda", local_rank)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if use_cuda else "gloo")
        rank = dist.get_rank()
        log.debug("rank %d of %d on %s", rank, world, device)
    if use_cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
    return DeviceInfo(device, n, is_writer=rank == 0, rank=rank, world_size=world)
