"""ExecuTorch export (fp32 and int8, XNNPACK delegate), its runtime session, and a ``.pte`` inspector.

Why: ExecuTorch is PyTorch's own on-device runtime. The int8 model is already a PT2E Q/DQ graph,
which is what ExecuTorch's XNNPACK backend lowers to integer kernels, so the int8 ``.pte`` is the
same converted model as every other int8 artifact (no second quantizer).

How: ``torch.export`` at batch 1 (phones run one image per call), ``to_edge_transform_and_lower``
with ``XnnpackPartitioner``; ops XNNPACK does not take stay in the program as portable (reference
CPU) kernels. The meta JSON and the delegation summary (how many graph ops XNNPACK took, and which
stayed portable) are stored as constant methods ``model_meta`` and ``delegation``, so the file
describes itself: ``python -m exporters.executorch PATH`` prints both (exit 2 when PATH is not a
readable program). Needs the ``executorch`` extra: ``pip install -e ".[executorch]"``.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from exporters.formats import FAMILIES, FORMATS, ExportOptions
from exporters.qdq import eval_copy, is_quantized

log = logging.getLogger(__name__)

META_METHOD = "model_meta"
DELEGATION_METHOD = "delegation"
INSTALL_HINT = f'install it with: pip install -e ".[{FAMILIES["executorch"].extra}]"'
# graph bookkeeping, not ops: a delegate's outputs are unpacked with getitem outside it
_NOT_OPS = {"getitem"}


def delegation_summary(graph_module: torch.fx.GraphModule) -> dict:
    """Which graph ops XNNPACK took and which stayed portable, from a lowered edge program."""
    from executorch.devtools.backend_debug import get_delegation_info

    info = get_delegation_info(graph_module)
    delegated: dict[str, int] = {}
    portable: dict[str, int] = {}
    for rec in info.get_operator_delegation_dataframe().to_dict("records"):
        op = rec["op_type"]
        if op == "Total" or op in _NOT_OPS:
            continue
        if rec["occurrences_in_delegated_graphs"]:
            delegated[op] = int(rec["occurrences_in_delegated_graphs"])
        if rec["occurrences_in_non_delegated_graphs"]:
            portable[op] = int(rec["occurrences_in_non_delegated_graphs"])
    n_del, n_port = sum(delegated.values()), sum(portable.values())
    return {"backend": "XnnpackBackend", "delegated_subgraphs": int(info.num_delegated_subgraphs),
            "delegated_ops": n_del, "portable_ops": n_port,
            "delegated_share": round(n_del / (n_del + n_port), 4) if n_del + n_port else None,
            "delegated_by_op": delegated, "portable_by_op": portable}


def export_executorch(model: nn.Module, sample: torch.Tensor, out_dir: Path, options: ExportOptions) -> Path:
    """Write ``<format>.pte`` into ``out_dir`` from ``model`` (float, or PT2E-converted for int8)."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import EdgeCompileConfig, EdgeProgramManager, to_edge_transform_and_lower

    from pipeline.runs import atomic_save

    fmt = FORMATS[options.format]
    model = model if is_quantized(model) else eval_copy(model)
    program = torch.export.export(model, (sample[:1].float(),))
    lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
    summary = delegation_summary(lowered.exported_program().graph_module)
    # The summary is only known after lowering; constant methods are fixed when the edge program is
    # made, so the lowered program is wrapped once more (already verified, so not re-checked).
    edge = EdgeProgramManager(lowered.exported_program(),
                              constant_methods={META_METHOD: json.dumps(options.meta, sort_keys=True),
                                                DELEGATION_METHOD: json.dumps(summary, sort_keys=True)},
                              compile_config=EdgeCompileConfig(_check_ir_validity=False))
    buffer = edge.to_executorch().buffer
    path = atomic_save(Path(out_dir) / f"{fmt.name}{fmt.suffix}", lambda tmp: tmp.write_bytes(buffer))
    log.info("wrote %s (%d bytes): XNNPACK took %d of %d ops; portable: %s", path, path.stat().st_size,
             summary["delegated_ops"], summary["delegated_ops"] + summary["portable_ops"],
             summary["portable_by_op"] or "none")
    return path


def _load_program(path: Path):
    try:
        from executorch.runtime import Runtime
    except ImportError as exc:
        raise ImportError(f"executorch is not installed; {INSTALL_HINT}") from exc
    try:
        return Runtime.get().load_program(Path(path))
    except RuntimeError as exc:
        raise ValueError(f"{path}: not a readable ExecuTorch program ({exc}); re-export it") from exc


def _constant(program, name: str) -> dict | None:
    if name not in program.method_names:
        return None
    return json.loads(program.load_method(name).execute([])[0])


def read_executorch_meta(path: Path) -> dict | None:
    """The meta embedded in a ``.pte`` (None if absent)."""
    return _constant(_load_program(path), META_METHOD)


def describe(path: Path) -> dict | None:
    """The delegation summary embedded in a ``.pte`` (None if absent), for the export report."""
    return _constant(_load_program(path), DELEGATION_METHOD)


class ExecutorchSession:
    """The ``forward`` method through ``executorch.runtime``; the program takes batch 1, so a batch is
    run one sample at a time. XNNPACK's thread pool is process-wide: it is set to ``threads``."""

    def __init__(self, path: Path, threads: int = 1):
        import executorch
        from executorch.extension.pybindings import portable_lib

        portable_lib._unsafe_reset_threadpool(threads)  # the only thread control the Python runtime has
        program = _load_program(path)
        try:
            self.method = program.load_method("forward")
        except RuntimeError as exc:  # e.g. a delegate payload that XNNPACK cannot compile
            raise ValueError(f"{path}: its forward method does not load ({exc}); re-export it") from exc
        self.program = program
        version = getattr(executorch, "__version__", None) or _dist_version("executorch")
        self.how = f"executorch {version} runtime (XNNPACK delegate), {threads} thread(s)"

    def run(self, inputs: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(inputs))
        return np.concatenate([self.method.execute([x[i:i + 1]])[0].numpy() for i in range(x.shape[0])])

    def close(self) -> None:
        self.method = self.program = None


def _dist_version(name: str) -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    """``python -m exporters.executorch PATH``: print a ``.pte``'s methods, meta and delegation summary."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m exporters.executorch PATH.pte", file=sys.stderr)
        return 2
    path = Path(args[0])
    if not path.is_file():
        print(f"error: {path}: no such file; give the path of a .pte the export stage wrote", file=sys.stderr)
        return 2
    try:
        program = _load_program(path)
        session = ExecutorchSession(path)
        session.close()
        out = {"methods": sorted(program.method_names), "meta": _constant(program, META_METHOD),
               "delegation": _constant(program, DELEGATION_METHOD)}
    except (ImportError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(out, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
