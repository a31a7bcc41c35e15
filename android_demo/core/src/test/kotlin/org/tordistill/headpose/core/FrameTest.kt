package org.tordistill.headpose.core

import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertNull
import org.junit.Assert.assertSame
import org.junit.Test
import java.nio.ByteBuffer

/** The per-frame pieces around the crop: camera rows -> upright pixels, zero padding, reused buffers, speed figures. */
class FrameTest {
    private fun rgb(r: Int, g: Int, b: Int) = (0xFF shl 24) or (r shl 16) or (g shl 8) or b

    /** A 3 x 2 sensor frame, pixel value = its index, as RGBA rows of [stride] bytes. */
    private fun sensor(stride: Int): ByteBuffer {
        val b = ByteBuffer.allocate(stride * 2)
        for (y in 0 until 2) for (x in 0 until 3) {
            val i = y * stride + 4 * x
            b.put(i, (10 * (y * 3 + x)).toByte()); b.put(i + 1, 1); b.put(i + 2, 2); b.put(i + 3, 99)
        }
        return b
    }

    private fun px(index: Int) = rgb(10 * index, 1, 2)

    @Test
    fun cameraRowsTurnUpright() {
        // Sensor:  0 1 2     90 deg clockwise:  3 0     180:  5 4 3     270:  2 5
        //          3 4 5                        4 1           2 1 0           1 4
        //                                       5 2                           0 3
        val f = UprightFrame()
        val want = mapOf(
            0 to Triple(3, 2, intArrayOf(0, 1, 2, 3, 4, 5)),
            90 to Triple(2, 3, intArrayOf(3, 0, 4, 1, 5, 2)),
            180 to Triple(3, 2, intArrayOf(5, 4, 3, 2, 1, 0)),
            270 to Triple(2, 3, intArrayOf(2, 5, 1, 4, 0, 3)),
        )
        for ((deg, w) in want) {
            val out = f.fill(sensor(stride = 16), 3, 2, 16, deg) // rows padded to 16 bytes, as cameras do
            assertEquals("$deg width", w.first, f.width)
            assertEquals("$deg height", w.second, f.height)
            assertArrayEquals("$deg pixels", IntArray(6) { px(w.third[it]) }, out)
        }
        val first = f.pixels
        f.fill(sensor(stride = 12), 3, 2, 12, 0)
        assertSame("the pixel array is reused across frames", first, f.pixels)
    }

    @Test
    fun zeroPaddingReadsBlackOutsideTheFrame() {
        val white = IntArray(4) { rgb(255, 255, 255) }
        val inside = FaceCrop.resize(white, 2, 2, Square(0.0, 0.0, 2.0), 2, 2, Padding.ZERO)
        assertArrayEquals(white, inside) // inside the frame both paddings agree
        val half = FaceCrop.resize(white, 2, 2, Square(-1.0, 0.0, 2.0), 2, 2, Padding.ZERO)
        assertArrayEquals(intArrayOf(rgb(0, 0, 0), white[0], rgb(0, 0, 0), white[0]), half)
        val edge = FaceCrop.resize(white, 2, 2, Square(-1.0, 0.0, 2.0), 2, 2, Padding.EDGE)
        assertArrayEquals(white, edge)
        // A sample half a pixel outside is the average of the edge pixel and black: 127.5 rounds up.
        val blend = FaceCrop.resize(white, 2, 2, Square(-0.5, 0.0, 2.0), 2, 2, Padding.ZERO)
        assertEquals(rgb(128, 128, 128), blend[0])
    }

    @Test
    fun pipelineReusesItsBuffers() {
        val meta = ModelMeta.parse("""{"input": {"name": "i", "shape": [1, 2, 2, 3], "layout": "NHWC", "dtype": "float32",
            "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0], "crop": {"box_source": "b", "scale": 1.0, "shift_y": 0.0, "padding": "edge"}},
            "outputs": [{"name": "o", "names": ["yaw", "pitch", "roll"], "units": "degrees", "dtype": "float32"}]}""")
        val p = PosePipeline(meta)
        val frame = IntArray(16) { rgb(it, it, it) }
        val a = p.prepare(frame, 4, 4, listOf(Face(Box(0.0, 0.0, 2.0, 2.0))))!!
        val firstValue = (a.tensor as InputTensor.Float32).data[0]
        val b = p.prepare(frame, 4, 4, listOf(Face(Box(2.0, 2.0, 4.0, 4.0))))!!
        assertSame(a.tensor, b.tensor)
        assertEquals(0f, firstValue, 0f)
        assertEquals(10 / 255f, (b.tensor as InputTensor.Float32).data[0], 1e-7f) // rewritten: pixel (2, 2)
    }

    @Test
    fun frameStatsGiveFpsAndMedians() {
        val s = FrameStats(window = 4)
        assertEquals(FrameStats.Summary(null, null, null, null), s.summary())
        assertEquals("- fps  detect -  crop -  infer - ms", s.summary().text())
        val ms = 1_000_000L
        s.add(0, 10 * ms, null, null) // no face: detector only
        s.add(100 * ms, 12 * ms, 2 * ms, 4 * ms)
        s.add(200 * ms, 11 * ms, 3 * ms, 5 * ms)
        var sum = s.summary()
        assertEquals(10.0, sum.fps!!, 1e-9) // 2 intervals in 0.2 s
        assertEquals(11.0, sum.detectMs!!, 1e-9)
        assertEquals(2.5, sum.cropMs!!, 1e-9) // the no-face frame is left out
        assertEquals(4.5, sum.inferMs!!, 1e-9)
        assertEquals("10.0 fps  detect 11.0  crop 2.5  infer 4.5 ms", sum.text())
        // The window forgets the oldest frames: 4 frames 50 ms apart after a slow start.
        for (t in 1..4) s.add(200 * ms + 50 * ms * t, 100 * ms, 1 * ms, 1 * ms)
        sum = s.summary()
        assertEquals(20.0, sum.fps!!, 1e-9)
        assertEquals(100.0, sum.detectMs!!, 1e-9)
        s.reset()
        assertNull(s.summary().fps)
    }

    @Test
    fun loadErrorsStayAndAnalysisErrorsFade() {
        val p = Problems(holdNanos = 100)
        assertNull(p.current(0))
        p.analysisFailed("ML Kit failed", 10)
        assertEquals("ML Kit failed", p.current(110))
        assertNull(p.current(111))
        p.loadFailed("model.tflite is missing")
        p.analysisFailed("bad box", 200)
        assertEquals("model.tflite is missing", p.current(200)) // the load error wins and does not fade
        assertEquals("model.tflite is missing", p.current(1_000_000))
        p.loaded()
        assertNull(p.current(1_000_000))
    }
}
