"""Latency measurement: warm-up, then runs bounded by a minimum count and a minimum time, repeated.

One repeat = ``warmup`` untimed calls, then timed calls until both ``min_runs`` calls and
``min_time_s`` seconds are done (ultralytics ``ProfileModels`` and timm ``benchmark.py`` bound runs
the same way). Statistics are per repeat; the spread across repeats is reported next to the median
so that no figure rests on one run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TimingPlan:
    warmup: int = 50
    min_runs: int = 200
    min_time_s: float = 0.25
    repeats: int = 5


def time_calls(fn: Callable[[], object], warmup: int, min_runs: int, min_time_s: float) -> np.ndarray:
    """Seconds per call of ``fn`` for one repeat (warm-up excluded)."""
    for _ in range(warmup):
        fn()
    samples: list[float] = []
    start = time.perf_counter()
    while len(samples) < min_runs or time.perf_counter() - start < min_time_s:
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return np.asarray(samples)


def latency_stats(seconds: np.ndarray) -> dict[str, float]:
    """p50, p90, p99, mean, std, min, max in milliseconds, and the count."""
    ms = np.asarray(seconds, dtype=np.float64) * 1e3
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {"p50_ms": float(p50), "p90_ms": float(p90), "p99_ms": float(p99), "mean_ms": float(ms.mean()),
            "std_ms": float(ms.std()), "min_ms": float(ms.min()), "max_ms": float(ms.max()), "count": int(ms.size)}


def time_repeated(fn: Callable[[], object], plan: TimingPlan) -> dict:
    """Every repeat's stats, and the headline: medians over repeats, with the p50 spread (min, max)."""
    repeats = [latency_stats(time_calls(fn, plan.warmup, plan.min_runs, plan.min_time_s))
               for _ in range(plan.repeats)]
    keys = ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms")
    headline = {k: float(np.median([r[k] for r in repeats])) for k in keys}
    p50s = [r["p50_ms"] for r in repeats]
    headline.update(p50_min_ms=float(min(p50s)), p50_max_ms=float(max(p50s)),
                    runs=int(sum(r["count"] for r in repeats)), repeats=len(repeats))
    return {"latency": headline, "repeats": repeats}
