"""One interface for running an exported artifact: open once, run batches, close.

Parity, each artifact's own test error and the host benchmark all use it, so what is verified is
what is timed. ``open_runtime(format, path, threads)`` returns a :class:`Session`; ``session.run``
takes inputs already laid out and typed for the artifact (see ``exporters.artifact_io.runtime_inputs``)
and returns its raw outputs. Opening is the expensive part (graph optimization, delegate set-up):
callers that time or loop keep the session.

Runtimes, one per family:

* onnx - onnxruntime ``InferenceSession`` on the CPU provider, ``intra_op_num_threads = threads``,
  sequential execution. Graphs with a fixed batch are run one sample at a time.
* tflite - the LiteRT ``Interpreter`` with ``num_threads = threads`` set explicitly (its Python
  default is 1) and its default delegate (XNNPACK on CPU); the input is resized to the batch once
  per new batch size, so a batch is one ``invoke``.
* coreml - ``MLModel.predict`` on macOS, the MIL evaluator elsewhere (``exporters.coreml``).
* executorch - ``executorch.runtime`` with the XNNPACK delegate (``exporters.executorch``); the
  program takes batch 1, so batches run one sample at a time.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

import numpy as np

log = logging.getLogger(__name__)


class Session(Protocol):
    """An open artifact. ``how`` names the runtime and its settings, for reports."""

    how: str

    def run(self, inputs: np.ndarray) -> np.ndarray: ...

    def close(self) -> None: ...


class OnnxSession:
    def __init__(self, path: Path, threads: int = 1, profile_prefix: str | None = None):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        if profile_prefix:
            opts.enable_profiling = True
            opts.profile_file_prefix = profile_prefix
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0]
        self.fixed_batch = self.input.shape[0] if isinstance(self.input.shape[0], int) else None
        self.how = f"onnxruntime {ort.__version__} CPUExecutionProvider, {threads} thread(s)"

    def run(self, inputs: np.ndarray) -> np.ndarray:
        if self.fixed_batch is not None and self.fixed_batch != inputs.shape[0]:
            return np.concatenate([self.session.run(None, {self.input.name: inputs[i:i + 1]})[0]
                                   for i in range(inputs.shape[0])])
        return self.session.run(None, {self.input.name: inputs})[0]

    def end_profiling(self) -> str:
        """Stop onnxruntime's profiler; returns the path of its JSON trace."""
        return self.session.end_profiling()

    def close(self) -> None:
        self.session = None


class TfliteSession:
    def __init__(self, path: Path, threads: int = 1):
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.batch = int(self.input["shape"][0])
        self.how = f"ai_edge_litert Interpreter (CPU, XNNPACK), {threads} thread(s)"

    def run(self, inputs: np.ndarray) -> np.ndarray:
        want = np.dtype(self.input["dtype"])
        if want != inputs.dtype:
            raise TypeError(f"the artifact takes {want.name} input, got {inputs.dtype}")
        if inputs.shape[0] != self.batch:
            self.interpreter.resize_tensor_input(self.input["index"], list(inputs.shape))
            self.interpreter.allocate_tensors()
            self.batch = inputs.shape[0]
        self.interpreter.set_tensor(self.input["index"], inputs)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output["index"]).copy()

    def close(self) -> None:
        self.interpreter = None


class CoremlSession:
    def __init__(self, path: Path, threads: int = 1):
        self.path = Path(path)
        self.how = "coreml (not yet run)"

    def run(self, inputs: np.ndarray) -> np.ndarray:
        from exporters.coreml import run_coreml

        out, self.how = run_coreml(self.path, inputs)
        return np.asarray(out)

    def close(self) -> None:
        pass


def open_runtime(fmt: object, path: Path, threads: int = 1) -> Session:
    """Open ``path`` (an artifact of format ``fmt``, a name or ``Format``) in its family's runtime."""
    from exporters.formats import FORMATS, resolve

    fmt = FORMATS[fmt] if isinstance(fmt, str) else fmt
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    # the family's session class, from the one table (imported only when its artifacts are opened)
    return resolve(fmt.family_row.session)(Path(path), threads)
