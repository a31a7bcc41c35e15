"""The host's measured arithmetic peak (the host itself is described by :func:`pipeline.device.host_description`).

The peak is a float32 matrix multiply timed with torch at the given thread count (the best of a few
repeats of a 1024 x 1024 x 1024 product): achieved MAC/s of a small model is read against it. It is
a measured figure for this host, not a datasheet number; int8 kernels can exceed it.
"""

from __future__ import annotations

import time


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
