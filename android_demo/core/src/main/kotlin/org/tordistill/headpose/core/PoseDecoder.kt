package org.tordistill.headpose.core

/**
 * Raw model output -> [HeadPose]: dequantized with the output's scale and zero point when it is int8,
 * picked by the output names of the meta (any order), converted from radians when the units say so.
 */
class PoseDecoder(private val spec: OutputSpec) {
    private val index: IntArray = intArrayOf(find("yaw"), find("pitch"), find("roll"))
    private val toDegrees: Double = when (spec.units.lowercase()) {
        "degrees", "degree", "deg" -> 1.0
        "radians", "radian", "rad" -> 180.0 / Math.PI
        else -> throw MetaException("output units '${spec.units}' are not degrees or radians")
    }

    private fun find(name: String): Int = spec.names.indexOf(name).also {
        if (it < 0) throw MetaException("output names ${spec.names} have no '$name'; export a yaw/pitch/roll model")
    }

    /** Real values of a float output (a float32 tensor; never quantized). */
    fun decode(raw: FloatArray): HeadPose = pose(DoubleArray(raw.size) { raw[it].toDouble() })

    /** Real values of an int8 output: (q - zeroPoint) * scale. */
    fun decode(raw: ByteArray): HeadPose {
        val q = spec.quantization ?: throw MetaException("int8 output without quantization parameters")
        return pose(DoubleArray(raw.size) { (raw[it].toDouble() - q.zeroPoint) * q.scale })
    }

    private fun pose(v: DoubleArray): HeadPose {
        require(v.size == spec.names.size) { "output has ${v.size} values, model_meta.json names ${spec.names.size}" }
        return HeadPose(v[index[0]] * toDegrees, v[index[1]] * toDegrees, v[index[2]] * toDegrees)
    }
}
