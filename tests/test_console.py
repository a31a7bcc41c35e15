"""What a user sees on the console: the pipeline's own lines, no third-party noise unless --verbose.

The smoke run is the one the end-to-end tests make (``smoke_run`` in conftest.py), so checking its
stderr costs nothing extra; the rest runs in a few seconds.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys

import pytest

from exporters.coreml import export_coreml
from exporters.metadata import artifact_meta, base_meta
from tests.conftest import run_cli, tiny_images

# FutureWarning, DeprecationWarning, UserWarning ... all contain "Warning"; the bars are coremltools'.
NOISE = re.compile(r"Warning|Failed to load|Detected no triton|Running MIL|Converting PyTorch Frontend")
EMIT_NOISE = """
import logging, warnings
from pipeline.console import setup_console
setup_console(verbose={verbose})
logging.getLogger("torchao").warning("Failed to load /site-packages/torchao/_C_mxfp8.so")
logging.getLogger("torch.utils._pytree").warning("register_constant() on Enum subclasses is deprecated")
warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated", FutureWarning)
logging.getLogger("pipeline.orchestrate").info("data: start")
logging.getLogger("torchao").error("a real torchao error")
"""


@pytest.mark.slow
def test_smoke_run_console_is_clean(smoke_run):
    _, first = smoke_run
    noisy = [line for line in first.stderr.splitlines() if NOISE.search(line)]
    assert noisy == [], "\n".join(noisy[:20])
    assert "INFO pipeline.orchestrate: export: done" in first.stderr  # our own lines stay


@pytest.mark.parametrize("verbose", [False, True])
def test_known_noise_hidden_unless_verbose(verbose: bool):
    # a clean environment: an in-process CLI call by another test may have set PYTHONWARNINGS here
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONWARNINGS", "TF_CPP_MIN_LOG_LEVEL")}
    r = subprocess.run([sys.executable, "-c", EMIT_NOISE.format(verbose=verbose)], capture_output=True,
                       text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    assert "INFO pipeline.orchestrate: data: start" in r.stderr and "a real torchao error" in r.stderr
    shown = [w for w in ("Failed to load", "Enum subclasses", "FutureWarning") if w in r.stderr]
    assert shown == (["Failed to load", "Enum subclasses", "FutureWarning"] if verbose else [])


@pytest.mark.parametrize("argv", [["--verbose", "validate", "smoke.yaml"], ["validate", "smoke.yaml", "-v"],
                                  ["validate", "smoke.yaml"]])
def test_verbose_flag_before_or_after_the_command(argv: list[str]):
    r = run_cli(*argv)
    assert r.returncode == 0 and r.stdout == "smoke.yaml: ok\n", r.stderr


@pytest.mark.parametrize("debug", [False, True])
def test_coreml_progress_bars_only_when_verbose(debug: bool, tiny_student, tmp_path, capfd):
    base = base_meta(name="tiny", version="0", description="d", author="t", license="Apache-2.0",
                     config_hash="0", output_names=("yaw", "pitch", "roll"))
    x = tiny_images(1, seed=0)
    logger = logging.getLogger("exporters.coreml")
    old = logger.level
    logger.setLevel(logging.DEBUG if debug else logging.INFO)
    try:
        export_coreml(tiny_student(), x, tmp_path / "m.mlpackage", "int8",
                      artifact_meta(base, "coreml_int8", tuple(x.shape), 3))
    finally:
        logger.setLevel(old)
    err = capfd.readouterr().err
    assert ("Running MIL" in err and "Converting PyTorch Frontend" in err) == debug, err[-2000:]
