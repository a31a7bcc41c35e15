"""Parse the text that TFLite's / LiteRT's ``benchmark_model`` prints.

Two binaries share the name and differ in output:

* the classic TFLite tool (``tflite/tools/benchmark``) prints ``count= first= curr= min= max= avg=
  std=`` lines in microseconds (``p5= median= p95=`` in newer builds, ``2.95034e+06`` style numbers
  in some), ``Inference timings in us: Init: ..., First inference: ..., Warmup (avg): ...,
  Inference (avg): ...`` (older: ``Average inference timings in us: Warmup: ..., Init: ...,
  Inference: ...``) and a memory line (``Memory footprint delta from the start of the tool (MB):`` or
  the older ``Peak memory footprint (MB):``);
* the LiteRT CompiledModel tool (``litert/tools/benchmark_litert_model.h``) prints the same
  ``count=`` lines plus a ``========== BENCHMARK RESULTS ==========`` block in milliseconds
  (``Model initialization``, ``Warmup (first)``, ``Inference (avg|min|max|std)``, ``Init footprint``,
  ``Overall footprint``, ``Peak memory``).

Both print TFLite's ``Replacing N out of M node(s) with delegate (NAME) node, yielding P partitions``
when a delegate takes nodes, and, with op profiling on, a ``Summary by node type`` table.
``parse_benchmark_output`` reads either; nothing here touches a device.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"

_TIMINGS = re.compile(
    rf"Inference timings in us: Init: (?P<init>{NUM}), First inference: (?P<first>{NUM}), "
    rf"Warmup \(avg\): (?P<warmup>{NUM}), Inference \(avg\): (?P<avg>{NUM})")
_TIMINGS_OLD = re.compile(
    rf"Average inference timings in us: Warmup: (?P<warmup>{NUM}), Init: (?P<init>{NUM}), "
    rf"Inference: (?P<avg>{NUM})")
_STAT_LINE = re.compile(r"\bcount=\d+")
_KEY_VALUE = re.compile(rf"\b(count|first|curr|min|max|avg|std|p5|median|p95)=({NUM})")
_MEM = re.compile(
    rf"(?:Memory footprint delta from the start of the tool|Peak memory footprint) \(MB\): "
    rf"init=(?P<init>{NUM}) overall=(?P<overall>{NUM})")
_MEM_PEAK = re.compile(rf"Overall peak memory footprint \(MB\) via periodic monitoring: ({NUM})")
_REPLACING = re.compile(
    r"Replacing (?P<n>\d+)(?: out of (?P<m>\d+))? node\(s\) with delegate \((?P<name>[^)]*)\) node, "
    r"yielding (?P<p>\d+) partitions(?: for subgraph (?P<sg>\d+))?")
_GPU_SPLIT = re.compile(r"(\d+) operations? will run on the GPU, and the remaining (\d+) operations? will run on the CPU")
_UNCONSUMED = re.compile(r"Unconsumed cmdline flags: (.+)")
_LITERT = {
    "init": rf"Model initialization:\s*({NUM}) ms",
    "first": rf"(?:Warmup \(first\)|First inference):\s*({NUM}) ms",
    "warmup": rf"Warmup \(avg\):\s*({NUM}) ms",
    "avg": rf"Inference \(avg\):\s*({NUM}) ms",
    "count": rf"Inference \(avg\):\s*{NUM} ms \((\d+) runs\)",
    "min": rf"Inference \(min\):\s*({NUM}) ms",
    "max": rf"Inference \(max\):\s*({NUM}) ms",
    "std": rf"Inference \(std\):\s*({NUM})",
    "mem_init": rf"Init footprint:\s*({NUM}) MB",
    "mem_overall": rf"Overall footprint:\s*({NUM}) MB",
    "mem_peak": rf"Peak memory:\s*({NUM}) MB",
}
_SUMMARY_HEADER = re.compile(r"=+ Summary by node type =+")
_SUMMARY_ROW = re.compile(
    rf"^\s*(?P<type>\S.*?)\s+(?P<count>\d+)\s+(?P<avg>{NUM})\s+(?P<pct>{NUM})%\s+{NUM}%\s+{NUM}(?:\s+-?\d+)?\s*$")
_DELEGATE_KINDS = (("xnnpack", "xnnpack"), ("nnapi", "nnapi"), ("gpu", "gpu"), ("drift", "gpu"),
                   ("opencl", "gpu"), ("dispatch", "npu"), ("npu", "npu"))


@dataclass
class Delegation:
    """One ``Replacing N out of M node(s) with delegate (NAME)`` line."""

    delegate: str
    replaced: int
    total: int | None  # None: builds whose wording has no ``out of M``
    partitions: int
    subgraph: int | None = None

    @property
    def kind(self) -> str:
        """xnnpack | gpu | nnapi | npu | other, from the delegate's name."""
        low = self.delegate.lower()
        return next((kind for key, kind in _DELEGATE_KINDS if key in low), "other")


@dataclass
class OpTypeStat:
    """One row of the profile's ``Summary by node type`` table."""

    node_type: str
    count: int
    avg_ms: float
    percent: float


@dataclass
class BenchmarkModelResult:
    """What one ``benchmark_model`` run printed; times in ms, memory in MB, None when not printed."""

    tool: str = "unknown"  # tflite | litert | unknown
    count: int | None = None
    mean_ms: float | None = None
    std_ms: float | None = None
    min_ms: float | None = None
    max_ms: float | None = None
    median_ms: float | None = None
    p5_ms: float | None = None
    p95_ms: float | None = None
    init_ms: float | None = None
    first_inference_ms: float | None = None
    warmup_avg_ms: float | None = None
    init_memory_mb: float | None = None
    overall_memory_mb: float | None = None
    peak_memory_mb: float | None = None  # explicit peak if printed, else the overall footprint
    delegations: list[Delegation] = field(default_factory=list)
    gpu_split: tuple[int, int] | None = None  # (on GPU, on CPU) from the GPU delegate's own message
    op_profile: list[OpTypeStat] = field(default_factory=list)
    unconsumed_flags: str | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def p50_ms(self) -> float | None:
        """The median where the binary printed one, else the mean."""
        return self.median_ms if self.median_ms is not None else self.mean_ms

    def delegate_applied(self, requested: str) -> str:
        """``full``, ``partial: CPU fallback N of M nodes`` or ``none`` for the requested delegate.

        For ``cpu`` (no delegate asked for) any delegate that still took nodes is named.
        """
        if requested == "cpu":
            if not self.delegations:
                return "none"
            names = ", ".join(sorted({d.delegate for d in self.delegations}))
            return f"{names}: {_coverage(self.delegations, None)}"
        relevant = [d for d in self.delegations if d.kind in (requested, "other")]
        if not relevant:
            return "none"
        return _coverage(relevant, self.gpu_split if requested == "gpu" else None)


def _coverage(delegations: list[Delegation], gpu_split: tuple[int, int] | None) -> str:
    """Sum the delegated and total node counts per subgraph: full, or the CPU fallback."""
    by_subgraph: dict[int | None, list[Delegation]] = {}
    for d in delegations:
        by_subgraph.setdefault(d.subgraph, []).append(d)
    replaced = sum(d.replaced for ds in by_subgraph.values() for d in ds)
    totals = [ds[0].total for ds in by_subgraph.values()]
    if any(t is None for t in totals):
        if gpu_split is not None:
            on_gpu, on_cpu = gpu_split
            return "full" if on_cpu == 0 else f"partial: CPU fallback {on_cpu} of {on_gpu + on_cpu} nodes"
        if all(d.partitions == 1 for d in delegations):
            return "full"
        return (f"partial: CPU fallback ({replaced} nodes delegated in "
                f"{sum(d.partitions for d in delegations)} partitions; this build does not print the total)")
    total = sum(t for t in totals if t is not None)
    return "full" if replaced >= total else f"partial: CPU fallback {total - replaced} of {total} nodes"


def _f(value: str | None) -> float | None:
    return float(value) if value is not None else None


def _us_to_ms(value: str | None) -> float | None:
    """Microseconds as printed to milliseconds, rounded to the printed precision (no 42.3948000001)."""
    return round(float(value) / 1000.0, 9) if value is not None else None


def _last_stat_line(text: str) -> dict[str, str] | None:
    """Key/values of the last ``count=`` line that is not part of an op-profile table."""
    lines = [line for line in text.splitlines()
             if _STAT_LINE.search(line) and "Timings (microseconds)" not in line and "Memory (bytes)" not in line]
    return dict(_KEY_VALUE.findall(lines[-1])) if lines else None


def _close(a: float, b: float, abs_tol: float) -> bool:
    return abs(a - b) <= max(abs_tol, 1e-4 * max(abs(a), abs(b)))


def _apply_stat_line(res: BenchmarkModelResult, kv: dict[str, str], reported_avg_ms: float | None,
                     reported_count: int | None, abs_tol: float) -> None:
    """Fill the latency stats from a ``count=`` line if it is the inference one (not the warm-up)."""
    count = int(float(kv["count"]))
    avg = _us_to_ms(kv.get("avg", kv.get("curr")))  # a single run prints only ``curr=``
    if count == 0 or avg is None:
        return
    if reported_avg_ms is not None and not _close(avg, reported_avg_ms, abs_tol):
        return  # the last stats line is the warm-up's: the inference run printed none
    if reported_count is not None and count != reported_count:
        return
    same = "avg" not in kv
    res.count, res.mean_ms = count, avg
    res.std_ms = 0.0 if same else _us_to_ms(kv.get("std"))
    res.min_ms = avg if same else _us_to_ms(kv.get("min"))
    res.max_ms = avg if same else _us_to_ms(kv.get("max"))
    res.median_ms, res.p5_ms, res.p95_ms = (_us_to_ms(kv.get(k)) for k in ("median", "p5", "p95"))


def parse_op_profile(text: str) -> list[OpTypeStat]:
    """The last ``Summary by node type`` table (the regular runs' one; initialisation comes first)."""
    headers = list(_SUMMARY_HEADER.finditer(text))
    if not headers:
        return []
    rows: list[OpTypeStat] = []
    for line in text[headers[-1].end():].splitlines()[1:]:
        if "[Node type]" in line or "[node type]" in line:
            continue
        m = _SUMMARY_ROW.match(line)
        if m is None:
            if rows or line.strip():
                break
            continue
        rows.append(OpTypeStat(m["type"].strip(), int(m["count"]), float(m["avg"]), float(m["pct"])))
    return rows


def _parse_litert(text: str, res: BenchmarkModelResult) -> None:
    found = {key: (m.group(1) if (m := re.search(rx, text)) else None) for key, rx in _LITERT.items()}
    res.init_ms, res.first_inference_ms = _f(found["init"]), _f(found["first"])
    res.warmup_avg_ms = _f(found["warmup"])
    res.init_memory_mb, res.overall_memory_mb = _f(found["mem_init"]), _f(found["mem_overall"])
    peak = _f(found["mem_peak"])
    res.peak_memory_mb = peak if peak is not None else res.overall_memory_mb
    reported_avg = _f(found["avg"])
    reported_count = int(found["count"]) if found["count"] is not None else None
    kv = _last_stat_line(text)
    if kv is not None:  # microsecond precision and a median, when it is the inference line
        _apply_stat_line(res, kv, reported_avg, reported_count, abs_tol=0.006)
    if res.mean_ms is None and reported_avg is not None:  # only the block's 2-decimal figures
        res.count, res.mean_ms = reported_count, reported_avg
        res.min_ms, res.max_ms, res.std_ms = _f(found["min"]), _f(found["max"]), _f(found["std"])


def _parse_classic(text: str, res: BenchmarkModelResult) -> None:
    reported_avg = None
    if m := _TIMINGS.search(text):
        res.init_ms, res.first_inference_ms = _us_to_ms(m["init"]), _us_to_ms(m["first"])
        res.warmup_avg_ms, reported_avg = _us_to_ms(m["warmup"]), _us_to_ms(m["avg"])
    elif m := _TIMINGS_OLD.search(text):
        res.init_ms, res.warmup_avg_ms, reported_avg = (_us_to_ms(m[k]) for k in ("init", "warmup", "avg"))
    kv = _last_stat_line(text)
    if kv is not None:
        _apply_stat_line(res, kv, reported_avg, None, abs_tol=0.0)
    if res.mean_ms is None:
        res.mean_ms = reported_avg
    if m := _MEM.search(text):
        res.init_memory_mb, res.overall_memory_mb = float(m["init"]), float(m["overall"])
    peak = _MEM_PEAK.search(text)
    res.peak_memory_mb = float(peak.group(1)) if peak else res.overall_memory_mb


def parse_benchmark_output(text: str) -> BenchmarkModelResult:
    """Parse either binary's output; fields it did not print stay None (never guessed)."""
    res = BenchmarkModelResult()
    if "BENCHMARK RESULTS" in text or "Model initialization:" in text:
        res.tool = "litert"
        _parse_litert(text, res)
    else:
        if _STAT_LINE.search(text) or "inference timings in us" in text.lower() or _MEM.search(text):
            res.tool = "tflite"
        _parse_classic(text, res)
    res.delegations = [Delegation(m["name"], int(m["n"]), int(m["m"]) if m["m"] else None, int(m["p"]),
                                  int(m["sg"]) if m["sg"] else None) for m in _REPLACING.finditer(text)]
    if m := _GPU_SPLIT.search(text):
        res.gpu_split = (int(m.group(1)), int(m.group(2)))
    res.op_profile = parse_op_profile(text)
    if m := _UNCONSUMED.search(text):
        res.unconsumed_flags = m.group(1).strip()
    res.errors = [line.strip() for line in text.splitlines()
                  if line.lstrip().startswith("ERROR") or " ERROR: " in line or line.lstrip().startswith("Failed")]
    return res
