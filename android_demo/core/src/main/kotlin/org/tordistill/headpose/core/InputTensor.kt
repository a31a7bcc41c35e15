package org.tordistill.headpose.core

import java.nio.ByteBuffer
import java.nio.ByteOrder

/** A model input, typed as the model takes it. */
sealed class InputTensor {
    class Float32(val data: FloatArray) : InputTensor()
    class Int8(val data: ByteArray) : InputTensor()

    /** Little-endian bytes, as the tensor sits in memory on the device (and as the goldens hash them). */
    fun toBytes(): ByteArray = when (this) {
        is Int8 -> data.copyOf()
        is Float32 -> ByteBuffer.allocate(4 * data.size).order(ByteOrder.LITTLE_ENDIAN)
            .also { b -> data.forEach { b.putFloat(it) } }.array()
    }
}

/**
 * ARGB crop -> model input, exactly as [InputSpec] says: pixel / 255 mapped to the input range, minus
 * mean, over std, in the model's layout, and for an int8 input quantized with its scale and zero point
 * (round half to even, clamped to [-128, 127]). Mirrors pipeline/faces/crop.py normalize and
 * exporters/golden.py input_tensor. One tensor is allocated per builder and rewritten by every [build]
 * (a camera frame a time, no garbage per frame): use or copy it before the next call.
 */
class TensorBuilder(private val spec: InputSpec) {
    private val tensor: InputTensor = when (spec.dtype) {
        DType.FLOAT32 -> InputTensor.Float32(FloatArray(spec.size))
        DType.INT8 -> InputTensor.Int8(ByteArray(spec.size))
    }

    fun build(argb: IntArray): InputTensor {
        require(argb.size == spec.height * spec.width) {
            "crop has ${argb.size} pixels; the model takes ${spec.width} x ${spec.height}"
        }
        val span = spec.rangeHigh - spec.rangeLow
        val hw = spec.height * spec.width
        val q = spec.quantization
        val floats = (tensor as? InputTensor.Float32)?.data
        val bytes = (tensor as? InputTensor.Int8)?.data
        for (p in 0 until hw) {
            val px = argb[p]
            for (c in 0 until 3) {
                val byte = (px shr (16 - 8 * c)) and 0xFF
                val x = spec.rangeLow + (byte.toDouble() / 255.0) * span
                val index = if (spec.layout == Layout.NHWC) p * 3 + c else c * hw + p
                val v = (x - spec.mean[c]) / spec.std[c]
                if (floats != null) floats[index] = v.toFloat()
                else bytes!![index] = (Math.rint(v / q!!.scale) + q.zeroPoint).coerceIn(-128.0, 127.0).toInt().toByte()
            }
        }
        return tensor
    }
}
