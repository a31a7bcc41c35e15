"""The torch models a run produced, as the benchmark loads them: by kind and stage folder.

``torch_fp32`` is the deployable float student (distill stage), ``torch_int8`` the PT2E-converted
int8 student (qat stage: Q/DQ graph computed in float by torch, the reference the int8 artifacts are
checked against), ``torch_teacher`` the teacher (teacher stage).
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

TORCH_KINDS = ("torch_fp32", "torch_int8", "torch_teacher")


def load_torch_model(kind: str, stage_dir: Path) -> nn.Module:
    """Load the model ``kind`` from its stage folder, on the CPU, in inference mode."""
    if kind == "torch_fp32":
        from pipeline.contract import load_student

        return load_student(Path(stage_dir), "cpu")
    if kind == "torch_int8":
        from pipeline.contract import load_int8

        return load_int8(Path(stage_dir))
    if kind == "torch_teacher":
        from pipeline.contract import load_teacher

        return load_teacher(Path(stage_dir), "cpu")
    raise ValueError(f"unknown torch model kind {kind!r}; use one of: {', '.join(TORCH_KINDS)}")
