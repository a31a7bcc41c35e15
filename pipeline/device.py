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
import importlib.metadata
import logging
import os
import platform
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)

# The training set is copied to the GPU once when it takes at most this share of the free memory;
# otherwise it stays in pinned host memory and each batch is copied asynchronously.
ON_DEVICE_FRACTION = 0.25

# The CPU features that decide which kernels the runtimes pick (oneDNN, MLAS, XNNPACK): the one list
# every host record, benchmark note and report line reads. x86 first, then ARM (dot product, int8
# matrix multiply, bf16).
ISA_FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "amx_tile",
                "asimddp", "i8mm", "bf16")
# Single-instruction int8 dot products; without them an int8 kernel multiplies, widens and adds separately.
INT8_DOT_FEATURES = {"x86": ("avx512_vnni", "avx_vnni"), "arm": ("asimddp",)}
# Distributions whose versions say which kernels ran; read from package metadata, never by importing them.
RUNTIME_DISTRIBUTIONS = ("torch", "onnxruntime", "ai_edge_litert", "coremltools", "executorch", "numpy")
ISA_CAP_ENV = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")  # oneDNN reads the second as an older spelling


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


def _cpuinfo() -> tuple[str, set[str]]:
    """(CPU model, feature flags) from /proc/cpuinfo; the platform's words and no flags elsewhere."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "Model", "Hardware") and value.strip():
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:  # x86 / ARM spelling; every core alike
                    flags = set(value.split())
    except OSError:
        pass
    return model, flags


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def host_description() -> dict:
    """What machine a figure comes from: CPU model, the ISA features that pick kernels, logical cores,
    torch's thread count, runtime versions, and the oneDNN ISA cap when one is set in the environment."""
    model, flags = _cpuinfo()
    cap = next(((k, os.environ[k]) for k in ISA_CAP_ENV if os.environ.get(k)), None)
    return {"cpu": model, "machine": platform.machine(), "system": platform.system(), "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "features": [f for f in ISA_FEATURES if f in flags],
            "runtimes": {d: _version(d) for d in RUNTIME_DISTRIBUTIONS},
            "onednn_max_cpu_isa": f"{cap[0]}={cap[1]}" if cap else None}


def _arch(host: dict) -> str:
    m = str(host.get("machine", "")).lower()
    return "arm" if m.startswith(("arm", "aarch64")) else "x86"


def int8_dot_features(host: dict) -> tuple[tuple[str, ...], list[str]]:
    """(the int8 dot-product features this host's architecture can have, those it has)."""
    wanted = INT8_DOT_FEATURES[_arch(host)]
    return wanted, [f for f in wanted if f in (host.get("features") or [])]


def describe_host(host: dict) -> str:
    """One readable line: model, ISA features, cores/threads, runtime versions (and the oneDNN cap)."""
    if not host:
        return "not recorded"
    runtimes = ", ".join(f"{k} {v}" for k, v in (host.get("runtimes") or {}).items() if v)
    parts = [f"{host.get('cpu', '?')} ({host.get('system', '')} {host.get('machine', '')})".replace("( ", "("),
             "ISA " + (" ".join(host.get("features") or []) or "none of " + "/".join(ISA_FEATURES)),
             f"{host.get('cores', '?')} logical cores, {host.get('torch_threads', '?')} torch thread(s)"]
    if runtimes:
        parts.append(runtimes)
    if host.get("onednn_max_cpu_isa"):
        parts.append(host["onednn_max_cpu_isa"])
    return "; ".join(parts)
