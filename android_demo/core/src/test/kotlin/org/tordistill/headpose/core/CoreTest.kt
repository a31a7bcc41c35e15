package org.tordistill.headpose.core

import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertNull
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Test

/** Unit tests of the core's pieces on hand-made metas and images (the goldens cover the real export). */
class CoreTest {
    private fun meta(
        layout: String = "NHWC", dtype: String = "float32", inQ: String = "null", mean: String = "[0.0, 0.0, 0.0]",
        std: String = "[1.0, 1.0, 1.0]", names: String = "[\"yaw\", \"pitch\", \"roll\"]", units: String = "degrees",
        outDtype: String = "float32", outQ: String = "null", extra: String = "",
        crop: String? = """{"box_source": "blazeface_short_range", "scale": 2.01, "shift_y": -0.026, "padding": "edge"}""",
    ): String {
        val shape = if (layout == "NCHW") "[1, 3, 2, 2]" else "[1, 2, 2, 3]"
        return """{"name": "t", "format": "tflite_fp32", "input": {"name": "image", "shape": $shape, "layout": "$layout",
            "dtype": "$dtype", "color": "RGB", "range": [0.0, 1.0], "mean": $mean, "std": $std, "quantization": $inQ
            ${crop?.let { ", \"crop\": $it" } ?: ""} $extra},
            "outputs": [{"name": "pose", "shape": [1, 3], "names": $names, "units": "$units", "dtype": "$outDtype", "quantization": $outQ}]}"""
    }

    private fun rgb(r: Int, g: Int, b: Int) = (0xFF shl 24) or (r shl 16) or (g shl 8) or b

    private val pixels = intArrayOf(rgb(0, 51, 255), rgb(255, 0, 0), rgb(10, 20, 30), rgb(128, 127, 1))

    @Test
    fun jsonReadsNestedValuesAndRejectsGarbage() {
        val v = Json.parse("""{"a": [1, -2.5e-3, true, null, "x\"y\u0041"], "b": {}}""") as Map<*, *>
        assertEquals(listOf(1.0, -2.5e-3, true, null, "x\"yA"), v["a"])
        assertEquals(emptyMap<String, Any?>(), v["b"])
        for (bad in listOf("{", "[1,]", "{\"a\" 1}", "tru", "1 2")) {
            try { Json.parse(bad); fail("parsed '$bad'") } catch (e: IllegalArgumentException) { assertTrue(e.message!!.startsWith("JSON")) }
        }
    }

    @Test
    fun nhwcFloatTensorIsPixelOver255() {
        val t = TensorBuilder(ModelMeta.parse(meta()).input).build(pixels) as InputTensor.Float32
        assertEquals(12, t.data.size)
        assertEquals((51 / 255.0).toFloat(), t.data[1], 0f)
        assertEquals(1.0f, t.data[2], 0f)
        assertEquals(1.0f, t.data[3], 0f) // second pixel's red
    }

    @Test
    fun nchwLayoutAndMeanStd() {
        val m = ModelMeta.parse(meta(layout = "NCHW", mean = "[0.5, 0.5, 0.5]", std = "[0.25, 0.5, 1.0]"))
        val t = TensorBuilder(m.input).build(pixels) as InputTensor.Float32
        assertEquals(((0.0 - 0.5) / 0.25).toFloat(), t.data[0], 0f) // R plane, pixel 0
        assertEquals(((1.0 - 0.5) / 0.25).toFloat(), t.data[1], 0f) // R plane, pixel 1
        assertEquals(((51 / 255.0 - 0.5) / 0.5).toFloat(), t.data[4], 0f) // G plane, pixel 0
    }

    @Test
    fun int8InputUsesTheMetaQuantization() {
        val t = TensorBuilder(ModelMeta.parse(meta(dtype = "int8", inQ = """{"scale": 0.00392156862745098, "zero_point": -128}""")).input)
            .build(pixels) as InputTensor.Int8
        assertArrayEquals(byteArrayOf(-128, -77, 127, 127, -128, -128, -118, -108, -98, 0, -1, -127), t.data)
        // Another quantization (as a re-exported graph might have): scale 2/255, zero point 0, clamped.
        val t2 = TensorBuilder(ModelMeta.parse(meta(dtype = "int8", inQ = """{"scale": 0.00784313725490196, "zero_point": 0}""")).input)
            .build(pixels) as InputTensor.Int8
        assertEquals(0.toByte(), t2.data[0])
        assertEquals(5.toByte(), t2.data[6]) // 10 / 2
        assertEquals(127.toByte(), t2.data[2]) // 127.5 -> 128 -> clamped
    }

    @Test
    fun badMetaGivesOneLineErrors() {
        val cases = mapOf(
            meta(layout = "NC") to "layout",
            meta(dtype = "int8") to "int8 input without quantization",
            meta(names = "[\"a\", \"b\", \"c\"]") to "no 'yaw'",
            meta(units = "furlongs") to "units",
            meta(outDtype = "int8") to "int8 output without quantization",
            meta(std = "[1.0, 0.0, 1.0]") to "zero",
        )
        for ((text, needle) in cases) {
            try {
                val m = ModelMeta.parse(text)
                PoseDecoder(m.output)
                fail("accepted meta with $needle")
            } catch (e: MetaException) {
                assertTrue("${e.message} should mention $needle", e.message!!.contains(needle) && !e.message!!.contains("\n"))
            }
        }
    }

    @Test
    fun cropSpecAndSmoothingComeFromTheMeta() {
        val m = ModelMeta.parse(meta(crop = """{"box_source": "other", "scale": 1.5, "shift_y": 0.1, "padding": "zero"}"""))
        assertEquals(CropSpec("other", 1.5, 0.1, Padding.ZERO), m.input.crop)
        assertEquals(SmoothingSpec.DEFAULT, m.smoothing) // an older meta without "smoothing"
        assertEquals(SmoothingSpec(0.25, 2.0),
            ModelMeta.parse(meta().replaceFirst("{", """{"smoothing": {"alpha": 0.25, "max_gap_s": 2.0}, """)).smoothing)
        val bad = mapOf(
            meta(crop = null) to "input.crop is missing",
            meta(crop = """{"box_source": "b", "scale": 2.0, "shift_y": 0.0, "padding": "reflect"}""") to "padding 'reflect'",
            meta(crop = """{"box_source": "b", "scale": 0.0, "shift_y": 0.0, "padding": "edge"}""") to "scale must be > 0",
            meta(crop = """{"scale": 2.0, "shift_y": 0.0, "padding": "edge"}""") to "'box_source' is missing",
            meta().replaceFirst("{", """{"smoothing": {"alpha": 1.5, "max_gap_s": 0.5}, """) to "smoothing.alpha",
        )
        for ((text, needle) in bad) {
            try { ModelMeta.parse(text); fail("accepted meta with $needle") } catch (e: MetaException) {
                assertTrue("${e.message} should mention $needle", e.message!!.contains(needle))
            }
        }
    }

    @Test
    fun decoderReordersConvertsAndDequantizes() {
        val m = ModelMeta.parse(meta(names = "[\"roll\", \"yaw\", \"pitch\"]", units = "radians"))
        val p = PoseDecoder(m.output).decode(floatArrayOf(0.5f, 1.0f, -0.25f))
        assertEquals(Math.toDegrees(1.0), p.yaw, 1e-9)
        assertEquals(Math.toDegrees(-0.25), p.pitch, 1e-9)
        assertEquals(Math.toDegrees(0.5), p.roll, 1e-9)
        val q = ModelMeta.parse(meta(outDtype = "int8", outQ = """{"scale": 0.5, "zero_point": -10}"""))
        assertEquals(HeadPose(5.0, -1.0, 0.0), PoseDecoder(q.output).decode(byteArrayOf(0, -12, -10)))
    }

    @Test
    fun axesFollowThePoseConvention() {
        val c = Point(50.0, 50.0)
        val zero = PoseAxes.project(HeadPose(0.0, 0.0, 0.0), c, 10.0)
        assertEquals(Point(60.0, 50.0), zero.ends[0]) // head x to the image's right
        assertEquals(Point(50.0, 40.0), zero.ends[1]) // head y up (image y down)
        assertEquals(2, zero.drawOrder.last()) // z points at the viewer: drawn last
        val yaw = PoseAxes.project(HeadPose(30.0, 0.0, 0.0), c, 10.0)
        assertTrue("yaw > 0 turns the nose to the image's left", yaw.ends[2].x < c.x)
        val pitch = PoseAxes.project(HeadPose(0.0, 30.0, 0.0), c, 10.0)
        assertTrue("pitch > 0 looks up", pitch.ends[2].y < c.y)
        val roll = PoseAxes.project(HeadPose(0.0, 0.0, 30.0), c, 10.0)
        assertTrue("roll > 0 is clockwise: head y tips to the right", roll.ends[1].x > c.x)
        // A mirror maps (yaw, pitch, roll) to (-yaw, pitch, -roll).
        val pose = HeadPose(25.0, -12.0, 17.0)
        val mirrored = PoseAxes.project(pose, c, 10.0, mirrored = true)
        val flipped = PoseAxes.project(HeadPose(-pose.yaw, pose.pitch, -pose.roll), c, 10.0)
        for (k in listOf(1, 2)) { // x axis flips sign under the mirror; y and z map onto each other exactly
            assertEquals(flipped.ends[k].x, mirrored.ends[k].x, 1e-9)
            assertEquals(flipped.ends[k].y, mirrored.ends[k].y, 1e-9)
        }
        assertEquals(2 * c.x - flipped.ends[0].x, mirrored.ends[0].x, 1e-9)
    }

    @Test
    fun cropRepeatsEdgesAndKeepsPixelsOnIdentity() {
        val sq = Square(0.0, 0.0, 2.0)
        assertArrayEquals(pixels, FaceCrop.resize(pixels, 2, 2, sq, 2, 2))
        val outside = FaceCrop.resize(pixels, 2, 2, Square(-10.0, -10.0, 2.0), 1, 1)
        assertEquals(pixels[0], outside[0])
        val s = FaceCrop.square(Box(10.0, 20.0, 30.0, 60.0), CropSpec("test", 2.0, 0.1, Padding.EDGE))
        assertEquals(Square(-20.0, 8.0, 80.0), s)
        // the second look is named by the box source; other sources are single detections, still accepted
        assertTrue(CropSpec("blazeface_short_range_second_look", 1.86, -0.021, Padding.EDGE).secondLook)
        assertTrue(!CropSpec("blazeface_short_range", 2.01, -0.026, Padding.EDGE).secondLook)
        assertTrue(!CropSpec("mlkit", 2.0, 0.0, Padding.EDGE).secondLook)
    }

    @Test
    fun turnedCropAndPoseFollowTheEyeLine() {
        // 3 x 3 frame: a quarter turn clockwise about the centre shows the frame turned back (np.rot90)
        val frame = IntArray(9) { (0xFF shl 24) or (it * 20 shl 16) or (it * 10 shl 8) or it }
        val turn = FaceCrop.eyeLine(Point(1.0, 1.0), Point(1.0, 5.0)) // left eye straight below: 90 degrees
        assertEquals(90.0, turn.degrees, 1e-12)
        val quarter = FaceCrop.resize(frame, 3, 3, Square(0.0, 0.0, 3.0), 3, 3, turn = turn)
        for (i in 0 until 3) for (j in 0 until 3) assertEquals(frame[j * 3 + (2 - i)], quarter[i * 3 + j])
        // pipeline/data/transforms.py rotate_pose([25, -15, 5], 30) = [28.900040937918593, 0.5344279607689341, 38.48131135491247]
        val p = PoseAxes.turned(HeadPose(25.0, -15.0, 5.0), 30.0)
        assertEquals(28.900040937918593, p.yaw, 1e-9)
        assertEquals(0.5344279607689341, p.pitch, 1e-9)
        assertEquals(38.48131135491247, p.roll, 1e-9)
        val spec = CropSpec("test", 2.0, 0.0, Padding.EDGE, Rotate.EYE_LINE)
        try { FaceCrop.turn(Face(Box(0.0, 0.0, 1.0, 1.0)), spec); fail("a turning spec without eyes accepted") } catch (_: IllegalArgumentException) {}
        assertNull(FaceCrop.turn(Face(Box(0.0, 0.0, 1.0, 1.0)), spec.copy(rotate = Rotate.NONE)))
    }

    @Test
    fun secondLookMapsThePatchCentreOntoTheRegionCentre() {
        // an upright face: 40 px box around (100, 80), eyes level
        val first = Face(Box(80.0, 60.0, 120.0, 100.0), Point(90.0, 75.0), Point(110.0, 75.0))
        val region = SecondLook.region(first)
        assertEquals(Square(60.0, 40.0, 80.0), region.square) // twice the box, no shift
        assertEquals(Turn(1.0, 0.0), region.turn)
        assertEquals(Point(100.0, 80.0), region.pivot)
        // pixel i's centre at i: the middle of a 128-px patch is 63.5, which the patch's grid put at the
        // square's centre, (100, 80) less half a pixel; a 64-px box there is 64 x 80 / 128 = 40 px in the frame
        val centred = Face(Box(31.5, 31.5, 95.5, 95.5), Point(47.5, 55.5), Point(79.5, 55.5))
        val mapped = SecondLook.fromPatch(centred, region, 128)
        assertEquals(Box(79.5, 59.5, 119.5, 99.5), mapped.box)
        assertEquals(Point(89.5, 74.5), mapped.rightEye)
        assertEquals(Point(109.5, 74.5), mapped.leftEye)
        // the box is the square of the detection's longer side; no eyes stay no eyes
        val tall = SecondLook.fromPatch(Face(Box(43.5, 28.5, 83.5, 98.5)), region, 128)
        assertEquals(70.0 * 80.0 / 128.0, tall.box.width, 1e-12)
        assertEquals(tall.box.width, tall.box.height, 1e-12)
        assertNull(tall.rightEye)
        // the face nearest the patch centre is the one mapped back; none found, none chosen
        assertEquals(centred, SecondLook.nearest(listOf(Face(Box(0.0, 0.0, 20.0, 20.0)), centred, Face(Box(100.0, 100.0, 128.0, 128.0))), 128))
        assertNull(SecondLook.nearest(emptyList(), 128))
        try { SecondLook.region(Face(first.box)); fail("a second look without eyes accepted") } catch (_: IllegalArgumentException) {}
    }

    @Test
    fun secondLookPatchTurnsWithTheEyesAndMapsBack() {
        // frame pixel (x, y) holds red x, green y: a patch pixel tells where it came from
        val w = 200
        val h = 160
        val frame = IntArray(w * h) { rgb(it % w, it / w, 7) }
        // left eye straight below the right one: the eye line points down, 90 degrees clockwise
        val first = Face(Box(80.0, 60.0, 120.0, 100.0), Point(100.0, 70.0), Point(100.0, 90.0))
        val region = SecondLook.region(first)
        assertEquals(90.0, region.turn.degrees, 1e-12)
        // an 80-px patch of the 80-px square: one frame pixel per patch pixel, every sample on a pixel centre
        val look = SecondLook(80)
        val patch = look.patch(frame, w, h, region)
        assertTrue(patch === look.pixels)
        // the patch shows the frame turned back (counter-clockwise): its top-left is the square's top-right
        assertEquals(Point(139.0, 40.0), SecondLook.toFrame(Point(0.0, 0.0), region, 80))
        assertEquals(Point(60.0, 40.0), SecondLook.toFrame(Point(0.0, 79.0), region, 80))
        assertEquals(Point(139.0, 119.0), SecondLook.toFrame(Point(79.0, 0.0), region, 80))
        for (i in 0 until 80 step 7) for (j in 0 until 80 step 5) {
            val at = SecondLook.toFrame(Point(j.toDouble(), i.toDouble()), region, 80)
            assertEquals("patch ($j, $i) from $at", frame[at.y.toInt() * w + at.x.toInt()], patch[i * 80 + j])
        }
        // a face whose box reaches past the frame's corner: its window is clipped, edge pixels repeat
        val corner = look.patch(frame, w, h, SecondLook.region(Face(Box(-10.0, -10.0, 10.0, 10.0), Point(-5.0, 0.0), Point(5.0, 0.0))))
        assertEquals(frame[0], corner[0])
    }

    @Test
    fun largestFaceAndNoFace() {
        assertNull(FaceSelection.largest(emptyList()))
        val big = Box(0.0, 0.0, 10.0, 10.0)
        assertEquals(big, FaceSelection.largest(listOf(Box(0.0, 0.0, 5.0, 5.0), big, Box(1.0, 1.0, 2.0, 9.0))))
        val p = PosePipeline(ModelMeta.parse(meta()))
        assertNull(p.prepare(pixels, 2, 2, emptyList()))
        assertTrue(p.prepare(pixels, 2, 2, listOf(Face(big)))!!.tensor is InputTensor.Float32)
    }

    @Test
    fun smootherAveragesAndRestartsAfterAGap() {
        val s = PoseSmoother(SmoothingSpec(alpha = 0.5, maxGapSeconds = 100e-9))
        assertEquals(HeadPose(10.0, 0.0, 0.0), s.update(HeadPose(10.0, 0.0, 0.0), 0))
        assertEquals(HeadPose(15.0, 1.0, -1.0), s.update(HeadPose(20.0, 2.0, -2.0), 50))
        assertEquals(HeadPose(40.0, 0.0, 0.0), s.update(HeadPose(40.0, 0.0, 0.0), 500))
        try { SmoothingSpec(alpha = 0.0, maxGapSeconds = 0.5); fail("alpha 0 accepted") } catch (_: MetaException) {}
    }

    @Test
    fun viewMappingFillsCentresAndMirrors() {
        val m = ViewMapping(imageWidth = 480, imageHeight = 640, viewWidth = 1080, viewHeight = 1920, mirrored = true)
        assertEquals(3.0, m.scale, 0.0)
        val p = m.map(Point(0.0, 0.0))
        assertEquals(1080.0 + 180.0, p.x, 1e-9) // 1440-wide image centred in 1080: 180 px cut each side, then mirrored
        assertEquals(0.0, p.y, 1e-9)
        val b = m.map(Box(10.0, 10.0, 20.0, 30.0))
        assertTrue(b.left < b.right && b.top < b.bottom)
    }
}
