"""Float32 I/O for int8 .tflite files whose converter made the graph boundary int8.

litert-torch folds a quantize that sits directly on a graph input (or a dequantize directly on an
output) into the I/O tensor's type. Image students quantize their raw pixels first thing (scale
1/255, zero point -128), so the converter gives them an int8 input; the default artifact promises
float32 I/O, which :func:`tflite_float_io` restores by adding a QUANTIZE (inputs) or DEQUANTIZE
(outputs) op with the same quantization. ``export.int8_io: true`` keeps the int8 boundary instead.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def tflite_float_io(model: bytes) -> bytes:
    """Give an int8 .tflite float32 inputs/outputs by adding QUANTIZE / DEQUANTIZE at the boundary.

    This rewrites the flatbuffer:
    every int8/uint8 input/output of the signature subgraphs is replaced by a float32 tensor of the
    same name and shape, converted by a QUANTIZE (inputs) or DEQUANTIZE (outputs) op with the
    original quantization. Models with float I/O come back unchanged (the same object).
    """
    import flatbuffers
    from ai_edge_litert import schema_py_generated as fb

    m = fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(model, 0))
    quantized = (fb.TensorType.INT8, fb.TensorType.UINT8)

    def opcode(builtin: int) -> int:
        for i, oc in enumerate(m.operatorCodes):
            if max(oc.builtinCode, oc.deprecatedBuiltinCode) == builtin:
                return i
        oc = fb.OperatorCodeT()
        oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = builtin, min(builtin, 127), 2
        m.operatorCodes.append(oc)
        return len(m.operatorCodes) - 1

    def float_twin(sg: Any, idx: int) -> int:
        old = sg.tensors[idx]
        new = fb.TensorT()
        new.shape, new.shapeSignature, new.type, new.name = old.shape, old.shapeSignature, fb.TensorType.FLOAT32, old.name
        m.buffers.append(fb.BufferT())
        new.buffer = len(m.buffers) - 1
        old.name = old.name + b"_int8" if isinstance(old.name, bytes) else f"{old.name}_int8"
        sg.tensors.append(new)
        return len(sg.tensors) - 1

    def op(code: int, src: int, dst: int) -> Any:
        o = fb.OperatorT()
        o.opcodeIndex, o.inputs, o.outputs = code, [src], [dst]
        return o

    subgraphs = sorted({sd.subgraphIndex for sd in (m.signatureDefs or [])}) or [0]
    changed = 0
    for si in subgraphs:
        sg = m.subgraphs[si]
        sg.inputs, sg.outputs = [int(i) for i in sg.inputs], [int(i) for i in sg.outputs]
        remap: dict[int, int] = {}
        for pos, idx in enumerate(sg.inputs):
            if sg.tensors[idx].type in quantized:
                remap[idx] = float_twin(sg, idx)
                sg.operators.insert(0, op(opcode(fb.BuiltinOperator.QUANTIZE), remap[idx], idx))
                sg.inputs[pos] = remap[idx]
        for pos, idx in enumerate(sg.outputs):
            if sg.tensors[idx].type in quantized:
                remap[idx] = float_twin(sg, idx)
                sg.operators.append(op(opcode(fb.BuiltinOperator.DEQUANTIZE), idx, remap[idx]))
                sg.outputs[pos] = remap[idx]
        for sd in m.signatureDefs or []:
            if sd.subgraphIndex == si:
                for tm in list(sd.inputs or []) + list(sd.outputs or []):
                    tm.tensorIndex = remap.get(tm.tensorIndex, tm.tensorIndex)
        changed += len(remap)
    if not changed:
        return model
    builder = flatbuffers.Builder(len(model) + 1024)
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    log.info("tflite: %d int8 I/O tensors wrapped to float32", changed)
    return bytes(builder.Output())

