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

enum class Padding { EDGE, ZERO }

/** Whether the crop turns with the face: [EYE_LINE] by the angle of the detector's eye landmarks. */
enum class Rotate { NONE, EYE_LINE }

/**
 * How a detector's face box becomes the square model crop (see [FaceCrop]): the framing half of
 * pipeline/faces/crop.py CropSpec, read from model_meta.json input.crop. [boxSource] names the detector
 * whose boxes [scale] and [shiftY] were measured on (and [secondLook] whether it looked twice); with [rotate] EYE_LINE the square turns about the
 * box centre by the angle of the eye landmarks, and the model's pose is turned back ([PoseAxes.turned]).
 * No defaults: a model trained on other framing
 * (another detector, the 300W-LP crops) would silently get the wrong crop, so a meta without input.crop
 * is an error here as in CropSpec.from_meta.
 */
data class CropSpec(
    val boxSource: String, val scale: Double, val shiftY: Double, val padding: Padding, val rotate: Rotate = Rotate.NONE,
) {
    /**
     * Whether [boxSource]'s boxes come from a second, levelled look at each face (pipeline/faces/locate.py,
     * box source `blazeface_short_range_second_look`): the app then reads each face again on a turned
     * patch ([SecondLook]) before cropping. Other box sources are read as single detections, as before.
     */
    val secondLook: Boolean get() = boxSource.endsWith(SECOND_LOOK_SUFFIX)

    init {
        if (!(scale > 0.0)) throw MetaException("input.crop.scale must be > 0, got $scale")
        if (!(shiftY > -1.0 && shiftY < 1.0)) throw MetaException("input.crop.shift_y must be in (-1, 1), got $shiftY")
    }

    companion object {
        const val SECOND_LOOK_SUFFIX = "_second_look"

        fun fromJson(crop: Map<String, Any?>): CropSpec {
            val padding = when (val p = crop.str("padding")) {
                "edge" -> Padding.EDGE
                "zero" -> Padding.ZERO
                else -> throw MetaException("input.crop.padding '$p' is not edge or zero")
            }
            // absent: a model exported before crops could turn, whose crops never do
            val rotate = when (val r = crop["rotate"] ?: "none") {
                "none" -> Rotate.NONE
                "eye_line" -> Rotate.EYE_LINE
                else -> throw MetaException("input.crop.rotate '$r' is not none or eye_line")
            }
            return CropSpec(crop.str("box_source"), crop.num("scale"), crop.num("shift_y"), padding, rotate)
        }
    }
}

/**
 * The live-estimate smoothing of [PoseSmoother], from model_meta.json's top-level "smoothing" (written
 * from pipeline/faces/smoothing.py, the one definition `predict` shares). An older meta without it gets
 * [DEFAULT], the same numbers.
 */
data class SmoothingSpec(val alpha: Double, val maxGapSeconds: Double) {
    init {
        if (!(alpha > 0.0 && alpha <= 1.0)) throw MetaException("smoothing.alpha must be in (0, 1], got $alpha")
        if (!(maxGapSeconds >= 0.0)) throw MetaException("smoothing.max_gap_s must be >= 0, got $maxGapSeconds")
    }

    companion object {
        val DEFAULT = SmoothingSpec(alpha = 0.5, maxGapSeconds = 0.5)

        fun fromJson(m: Map<String, Any?>?): SmoothingSpec =
            m?.let { SmoothingSpec(it.num("alpha"), it.num("max_gap_s")) } ?: DEFAULT
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
data class ModelMeta(
    val name: String,
    val format: String,
    val input: InputSpec,
    val output: OutputSpec,
    val smoothing: SmoothingSpec = SmoothingSpec.DEFAULT,
) {
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
            val crop = CropSpec.fromJson(inp.objOrNull("crop") ?: throw MetaException(
                "input.crop is missing: the model's face framing is unknown; re-export it with this version of the pipeline"))
            if (h != w) throw MetaException("input is ${h}x$w; the crop is square, export a square-input model")
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
                smoothing = SmoothingSpec.fromJson(root.objOrNull("smoothing")),
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
