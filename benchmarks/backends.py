"""The benchmark backends, by the names ``benchmark.backends`` and ``--backends`` use.

A leaf module (no imports), so config validation can read it without importing the harness.
"""

# name -> what it runs
BACKENDS: dict[str, str] = {
    "torch": "the PyTorch models themselves (float student, converted int8 student, teacher), eager, CPU",
    "onnxruntime": "ONNX artifacts in onnxruntime's CPU execution provider",
    "litert": "TFLite artifacts in the LiteRT interpreter (XNNPACK) on the host CPU",
    "coreml": "CoreML packages with MLModel.predict (macOS only; skipped elsewhere)",
    "executorch": "ExecuTorch .pte programs in executorch.runtime (XNNPACK delegate) on the host CPU",
    "android": "TFLite artifacts on a phone over adb with benchmark_model",
}
# exporter family -> the host backend that runs its artifacts
FAMILY_BACKEND: dict[str, str] = {"onnx": "onnxruntime", "tflite": "litert", "coreml": "coreml",
                                  "executorch": "executorch"}
