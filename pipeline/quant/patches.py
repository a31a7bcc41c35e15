"""Compatibility patches of third-party internals that the int8 route needs, each pinned to a version.

Each patch is a context manager active only while the call that needs it runs. Each names the
library and the exact version it was written against; :func:`check_versions` raises when the
installed version differs, because a private function a patch replaces may have changed shape
(re-check the patch against the new release, then update :data:`TARGETS`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from importlib.metadata import version
from typing import Any

import torch
from torch import nn
from torch.fx import GraphModule

# distribution -> the version every patch below was written and tested against
TARGETS: dict[str, str] = {"torchao": "0.18.0", "litert-torch": "0.10.0", "torch": "2.13.0"}


def check_versions() -> None:
    """Fail loudly when a patched library is not the version the patches target."""
    wrong = []
    for dist, want in TARGETS.items():
        have = version(dist).split("+")[0]
        if have != want:
            wrong.append(f"{dist} {have} (patches target {want})")
    if wrong:
        raise RuntimeError("pipeline.quant.patches: " + ", ".join(wrong) + "; re-check each patch in "
                           "pipeline/quant/patches.py against the installed release, then update TARGETS")


@contextlib.contextmanager
def export_patterns_as_modules() -> Iterator[None]:
    """Let litert-torch's conv-bn QAT annotator build its match patterns on torch >= 2.9.

    ``litert_torch.quantize.pt2e_quantizer_utils._do_annotate_conv_bn`` hands a plain function to
    torchao's ``_get_aten_graph_module_for_pattern``, which calls ``torch.export.export`` on it;
    torch 2.13 refuses (``ValueError: Expected `mod` to be an instance of `torch.nn.Module`, got
    <class 'function'>``). torchao's own patterns are wrapped in ``WrapperModule``; this does the
    same for litert's, for the duration of the annotation only. Targets litert-torch 0.10.0 on torch 2.13.0.
    """
    check_versions()
    import litert_torch.quantize.pt2e_quantizer_utils as utils

    original = utils._get_aten_graph_module_for_pattern

    def wrapped(pattern: Any, example_inputs: tuple, is_cuda: bool = False, **kwargs: Any) -> GraphModule:
        if not isinstance(pattern, nn.Module):
            from torchao.quantization.pt2e import WrapperModule

            pattern = WrapperModule(pattern)
        return original(pattern, example_inputs, is_cuda, **kwargs)

    utils._get_aten_graph_module_for_pattern = wrapped
    try:
        yield
    finally:
        utils._get_aten_graph_module_for_pattern = original


_CONV_OPS = {
    "conv1d": (torch.ops.aten.conv1d.default,),
    "conv2d": (torch.ops.aten.conv2d.default, torch.ops.aten.conv2d.padding),
    "conv_transpose1d": (torch.ops.aten.conv_transpose1d.default,),
    "conv_transpose2d": (torch.ops.aten.conv_transpose2d.input,),
}


@contextlib.contextmanager
def only_present_conv_patterns() -> Iterator[None]:
    """Skip torchao's conv-bn QAT rewrites for conv kinds the graph does not contain.

    ``_fuse_conv_bn_qat`` (prepare) and ``_fold_conv_bn_qat`` (convert) try conv1d, conv2d,
    conv_transpose1d and conv_transpose2d in turn, exporting every match/replacement pattern with
    dynamo each time (96 exports at convert, 10-25 s on a 2-core CPU). A pattern cannot match
    when its conv op is absent, so those helpers are skipped; results are unchanged. Targets torchao 0.18.0.
    """
    check_versions()
    from torchao.quantization.pt2e import qat_utils

    originals = {name: getattr(qat_utils, name)
                 for name in ("_fuse_conv_bn_qat_helper", "_fold_conv_bn_qat_helper")}

    def guarded(original: Any) -> Any:
        def helper(m: GraphModule, conv_fn: Any, *args: Any, **kwargs: Any) -> GraphModule:
            ops = _CONV_OPS.get(getattr(conv_fn, "__name__", ""))
            present = {n.target for n in m.graph.nodes if n.op == "call_function"}
            if ops is not None and torch.ops.aten.convolution.default not in present \
                    and not present.intersection(ops):
                return m
            return original(m, conv_fn, *args, **kwargs)
        return helper

    for name, fn in originals.items():
        setattr(qat_utils, name, guarded(fn))
    try:
        yield
    finally:
        for name, fn in originals.items():
            setattr(qat_utils, name, fn)

