package org.tordistill.headpose.core

/** model_meta.json is missing a key, has a value the app cannot handle, or does not match the model. */
class MetaException(message: String) : IllegalArgumentException("model_meta.json: $message")

/** Affine int8 quantization: real = (q - zeroPoint) * scale. */
data class Quantization(val scale: Double, val zeroPoint: Int) {
    init {
        if (!(scale > 0.0)) throw MetaException("quantization scale must be > 0, got $scale")
    }
}

enum class Layout { NHWC, NCHW }

enum class DType { FLOAT32, INT8 }

/** How a detector's face box becomes the square model crop (see [FaceCrop]). */
data class CropSpec(val scale: Double = DEFAULT_SCALE, val shiftY: Double = DEFAULT_SHIFT_Y) {
    companion object {
        /** The defaults, equal to exporters/golden.py DEFAULT_CROP (checked by the golden tests). */
        const val DEFAULT_SCALE = 2.0
        const val DEFAULT_SHIFT_Y = 0.08
    }
}

/** What the model takes: an image of [height] x [width] RGB pixels, mapped to [range], normalized, laid out, typed. */
data class InputSpec(
    val name: String,
    val height: Int,
    val width: Int,
    val channels: Int,
    val layout: Layout,
    val dtype: DType,
    val rangeLow: Double,
    val rangeHigh: Double,
    val mean: DoubleArray,
    val std: DoubleArray,
    val quantization: Quantization?,
    val crop: CropSpec,
) {
    val size: Int get() = height * width * channels
}

/** What the model gives: one vector whose entries are [names] in [units]. */
data class OutputSpec(
    val name: String,
    val names: List<String>,
    val units: String,
    val dtype: DType,
    val quantization: Quantization?,
)

/** The parts of model_meta.json (written by exporters/metadata.py) the app needs. */
data class ModelMeta(val name: String, val format: String, val input: InputSpec, val output: OutputSpec) {
    companion object {
        fun parse(text: String): ModelMeta {
            @Suppress("UNCHECKED_CAST")
            val root = Json.parse(text) as? Map<String, Any?> ?: throw MetaException("top level is not an object")
            return fromJson(root)
        }

        fun fromJson(root: Map<String, Any?>): ModelMeta {
            val inp = root.obj("input")
            val layout = when (val l = inp.str("layout")) {
                "NHWC" -> Layout.NHWC
                "NCHW" -> Layout.NCHW
                else -> throw MetaException("input layout '$l' is not an image layout; export an image model (NHWC or NCHW)")
            }
            val color = inp["color"] as? String
            if (color != null && color != "RGB") throw MetaException("input color '$color' is not supported; the app feeds RGB")
            val shape = inp.list("shape").map { (it as Double).toInt() }
            if (shape.size != 4 || shape[0] != 1) throw MetaException("input shape $shape is not [1, H, W, C] / [1, C, H, W]")
            val (h, w, c) = if (layout == Layout.NHWC) Triple(shape[1], shape[2], shape[3]) else Triple(shape[2], shape[3], shape[1])
            if (c != 3) throw MetaException("input has $c channels; the app feeds 3 (RGB)")
            val range = (inp["range"] as? List<*>)?.map { it as Double } ?: listOf(0.0, 1.0)
            val mean = inp.doubles("mean")
            val std = inp.doubles("std")
            if (mean.size != c || std.size != c) throw MetaException("mean/std must have $c entries")
            if (std.any { it == 0.0 }) throw MetaException("std has a zero entry")
            val dtype = dtypeOf(inp.str("dtype"), "input")
            val inQ = quantization(inp)
            if (dtype == DType.INT8 && inQ == null) throw MetaException("int8 input without quantization parameters; re-export the model")
            val crop = inp.objOrNull("crop")?.let {
                CropSpec((it["scale"] as? Double) ?: CropSpec.DEFAULT_SCALE, (it["shift_y"] as? Double) ?: CropSpec.DEFAULT_SHIFT_Y)
            } ?: CropSpec()
            val outputs = root.list("outputs")
            if (outputs.isEmpty()) throw MetaException("no outputs")
            @Suppress("UNCHECKED_CAST")
            val out = outputs[0] as Map<String, Any?>
            val outDtype = dtypeOf(out.str("dtype"), "output")
            val outQ = quantization(out)
            if (outDtype == DType.INT8 && outQ == null) throw MetaException("int8 output without quantization parameters; re-export the model")
            val names = out.list("names").map { it as String }
            return ModelMeta(
                name = root["name"] as? String ?: "model",
                format = root["format"] as? String ?: "unknown",
                input = InputSpec(inp.str("name"), h, w, c, layout, dtype, range[0], range[1], mean, std, inQ, crop),
                output = OutputSpec(out.str("name"), names, out.str("units"), outDtype, outQ),
            )
        }

        private fun dtypeOf(s: String, which: String) = when (s) {
            "float32" -> DType.FLOAT32
            "int8" -> DType.INT8
            else -> throw MetaException("$which dtype '$s' is not supported (float32 or int8)")
        }

        private fun quantization(m: Map<String, Any?>): Quantization? =
            m.objOrNull("quantization")?.let { Quantization(it.num("scale"), it.num("zero_point").toInt()) }
    }
}
