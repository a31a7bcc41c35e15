"""What machine the figures come from, and its measured arithmetic peak.

The peak is a float32 matrix multiply timed with torch at the given thread count (the best of a few
repeats of a 1024 x 1024 x 1024 product): achieved MAC/s of a small model is read against it. It is
a measured figure for this host, not a datasheet number; int8 kernels can exceed it.
"""

from __future__ import annotations

import os
import platform
import time


def cpu_description() -> dict:
    """CPU model, logical cores and the SIMD features that decide int8 speed on x86."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name") and ":" in line:
                    model = line.split(":", 1)[1].strip()
                elif line.startswith(("flags", "Features")) and ":" in line:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")
    return {"cpu": model, "machine": platform.machine(), "cores": os.cpu_count(),
            "features": [f for f in wanted if f in flags], "system": platform.system()}


def matmul_peak_macs(threads: int, n: int = 1024, repeats: int = 5) -> float:
    """Best float32 MAC/s of an n x n x n matmul in torch with ``threads`` threads."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.rand(n, n), torch.rand(n, n)
        torch.mm(a, b)
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            torch.mm(a, b)
            best = min(best, time.perf_counter() - t0)
    finally:
        torch.set_num_threads(old)
    return n ** 3 / best
