package org.tordistill.headpose.core

import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Test
import java.io.File
import java.security.MessageDigest
import java.util.Base64
import kotlin.math.abs

/**
 * The Kotlin core against goldens written by `python -m exporters.golden` from a real export: the crop,
 * the input tensor (bit for bit), the decoded pose (within the golden's pose_deg tolerance) and the
 * axes (within axes_px). The Python side computed the outputs with the LiteRT interpreter on exactly
 * the stored tensor, so a matching tensor means the device is fed what the artifact was verified on.
 */
class GoldenTest {
    private fun resource(name: String): String =
        javaClass.getResource("/golden/$name")?.readText() ?: error("test resource golden/$name is missing")

    @Suppress("UNCHECKED_CAST")
    private fun obj(text: String) = Json.parse(text) as Map<String, Any?>

    private val frames: List<Map<String, Any?>> by lazy {
        @Suppress("UNCHECKED_CAST")
        obj(resource("frames.json"))["frames"] as List<Map<String, Any?>>
    }

    private val goldenNames: List<String> by lazy {
        val dir = File(javaClass.getResource("/golden/frames.json")!!.toURI()).parentFile
        dir.list()!!.filter { it.endsWith(".json") && it != "frames.json" }.sorted()
    }

    private fun bytes(b64: String) = Base64.getDecoder().decode(b64)

    /** RGB bytes -> ARGB ints (alpha 255), as Bitmap.getPixels returns them. */
    private fun argb(rgb: ByteArray) = IntArray(rgb.size / 3) { i ->
        (0xFF shl 24) or ((rgb[3 * i].toInt() and 0xFF) shl 16) or ((rgb[3 * i + 1].toInt() and 0xFF) shl 8) or (rgb[3 * i + 2].toInt() and 0xFF)
    }

    private fun sha256(b: ByteArray) = MessageDigest.getInstance("SHA-256").digest(b).joinToString("") { "%02x".format(it) }

    private fun box(l: List<*>) = Box(l[0] as Double, l[1] as Double, l[2] as Double, l[3] as Double)

    @Test
    fun goldensArePresent() {
        assertTrue("expected goldens for fp32 and int8 artifacts, found $goldenNames", goldenNames.size >= 2)
        assertEquals(3, frames.size)
    }

    @Test
    fun defaultCropMatchesTheWriter() {
        for (name in goldenNames) {
            val g = obj(resource(name))
            val meta = ModelMeta.fromJson(g.obj("meta"))
            val crop = g.obj("crop")
            assertEquals(name, crop.num("scale"), meta.input.crop.scale, 0.0)
            assertEquals(name, crop.num("shift_y"), meta.input.crop.shiftY, 0.0)
        }
    }

    @Test
    fun preprocessingIsBitExact() {
        for (name in goldenNames) {
            val g = obj(resource(name))
            val meta = ModelMeta.fromJson(g.obj("meta"))
            val builder = TensorBuilder(meta.input)
            @Suppress("UNCHECKED_CAST")
            val cases = g["cases"] as List<Map<String, Any?>>
            for ((i, case) in cases.withIndex()) {
                val frame = frames[i]
                val where = "$name/${case["name"]}"
                assertEquals(where, frame["name"], case["name"])
                val w = frame.num("width").toInt()
                val h = frame.num("height").toInt()
                val square = FaceCrop.square(box(frame.list("box")), meta.input.crop)
                val sq = case.list("square").map { it as Double }
                assertEquals("$where square", listOf(square.left, square.top, square.side), sq)
                val crop = FaceCrop.resize(argb(bytes(frame.str("rgb"))), w, h, square, meta.input.width, meta.input.height)
                assertArrayEquals("$where crop pixels", argb(bytes(case.str("crop_rgb"))), crop)
                val tensor = builder.build(crop)
                assertEquals("$where input dtype", case.str("input_dtype"), if (tensor is InputTensor.Int8) "int8" else "float32")
                val got = tensor.toBytes()
                (case["input"] as? String)?.let { expected ->
                    val want = bytes(expected)
                    assertEquals("$where tensor size", want.size, got.size)
                    val first = want.indices.firstOrNull { want[it] != got[it] }
                    if (first != null) fail("$where tensor differs first at byte $first of ${want.size}")
                }
                assertEquals("$where tensor sha256", case.str("input_sha256"), sha256(got))
            }
        }
    }

    @Test
    fun postprocessingMatchesWithinTolerance() {
        for (name in goldenNames) {
            val g = obj(resource(name))
            val meta = ModelMeta.fromJson(g.obj("meta"))
            val tolDeg = g.obj("tolerances").num("pose_deg")
            val tolPx = g.obj("tolerances").num("axes_px")
            val pipeline = PosePipeline(meta, smoothing = null)
            @Suppress("UNCHECKED_CAST")
            val cases = g["cases"] as List<Map<String, Any?>>
            for (case in cases) {
                val where = "$name/${case["name"]}"
                val raw = case.list("output_raw").map { it as Double }
                val pose = when (case.str("output_dtype")) {
                    "int8" -> pipeline.decode(ByteArray(raw.size) { raw[it].toInt().toByte() })
                    "float32" -> pipeline.decode(FloatArray(raw.size) { raw[it].toFloat() })
                    else -> error("$where: unexpected output dtype ${case["output_dtype"]}")
                }
                val want = case.list("pose").map { it as Double }
                val order = meta.output.names
                val got = mapOf("yaw" to pose.yaw, "pitch" to pose.pitch, "roll" to pose.roll)
                for ((k, n) in order.withIndex()) assertEquals("$where $n", want[k], got.getValue(n), tolDeg)
                val axes = case.obj("axes")
                val sq = case.list("square").map { it as Double }
                val proj = pipeline.axes(HeadPose(want[order.indexOf("yaw")], want[order.indexOf("pitch")], want[order.indexOf("roll")]), Square(sq[0], sq[1], sq[2]))
                val center = axes.list("center").map { it as Double }
                assertEquals("$where centre x", center[0], proj.center.x, tolPx)
                assertEquals("$where centre y", center[1], proj.center.y, tolPx)
                assertEquals("$where axis length", axes.num("length"), PosePipeline.AXES_LENGTH_FRACTION * sq[2], tolPx)
                @Suppress("UNCHECKED_CAST")
                val ends = axes["ends"] as List<List<Double>>
                for (k in 0 until 3) {
                    assertTrue("$where axis $k end ${proj.ends[k]} vs ${ends[k]}",
                        abs(ends[k][0] - proj.ends[k].x) <= tolPx && abs(ends[k][1] - proj.ends[k].y) <= tolPx)
                }
                assertEquals("$where draw order", axes.list("draw_order").map { (it as Double).toInt() }, proj.drawOrder)
            }
        }
    }
}
