"""Shared fixtures: a tiny sinusoid config that runs every stage in seconds."""

import pytest

TINY_SINUSOID = [
    "data.n_train=256", "data.n_val=64", "data.n_test=64",
    "teacher.train.epochs=2", "teacher.train.batch_size=64",
    "distill.train.epochs=2", "distill.train.batch_size=64",
    "qat.train.epochs=1", "qat.train.batch_size=64", "qat.calibration_batches=1",
    "qat.freeze_bn_epoch=0", "qat.freeze_observers_epoch=0",
    "export.formats=[onnx_fp32]", "threads=1",
]


@pytest.fixture
def tiny_sinusoid() -> list[str]:
    return list(TINY_SINUSOID)
