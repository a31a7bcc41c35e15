package org.tordistill.headpose.core

import java.util.Locale

/**
 * What the overlay says about speed: frames per second over the last [window] analysed frames, and the
 * median detector, crop (frame conversion, crop and input tensor) and model time of those frames.
 * Medians, not means: one frame stalled by the garbage collector or a camera hiccup should not move
 * the figure. A stage a frame did not reach (no face, no model yet) is left out of its median.
 */
class FrameStats(private val window: Int = 30) {
    init {
        require(window >= 2) { "window must be >= 2 frames, got $window" }
    }

    data class Summary(val fps: Double?, val detectMs: Double?, val cropMs: Double?, val inferMs: Double?) {
        /** One overlay line, e.g. "24.8 fps  detect 12.1  crop 1.9  infer 3.4 ms"; "-" for a stage with no sample. */
        fun text(): String {
            fun ms(v: Double?) = v?.let { String.format(Locale.US, "%.1f", it) } ?: "-"
            val rate = fps?.let { String.format(Locale.US, "%.1f fps", it) } ?: "- fps"
            return "$rate  detect ${ms(detectMs)}  crop ${ms(cropMs)}  infer ${ms(inferMs)} ms"
        }
    }

    private val times = LongArray(window)
    private val stages = Array(3) { LongArray(window) }  // detect, crop, infer; -1 = not reached
    private val scratch = LongArray(window)
    private var count = 0  // frames recorded, all time
    private var next = 0  // ring position of the next frame

    /** One analysed frame ending at [timeNanos]; null for a stage the frame did not run. */
    fun add(timeNanos: Long, detectNanos: Long, cropNanos: Long?, inferNanos: Long?) {
        times[next] = timeNanos
        stages[0][next] = detectNanos
        stages[1][next] = cropNanos ?: -1
        stages[2][next] = inferNanos ?: -1
        next = (next + 1) % window
        count++
    }

    fun reset() {
        count = 0
        next = 0
    }

    fun summary(): Summary {
        val n = minOf(count, window)
        val oldest = if (count <= window) 0 else next
        val newest = (next - 1 + window) % window
        val span = times[newest] - times[oldest]
        val fps = if (n >= 2 && span > 0) (n - 1) * 1e9 / span else null
        return Summary(fps, median(0, n), median(1, n), median(2, n))
    }

    private fun median(stage: Int, n: Int): Double? {
        var m = 0
        for (k in 0 until n) if (stages[stage][k] >= 0) scratch[m++] = stages[stage][k]
        if (m == 0) return null
        java.util.Arrays.sort(scratch, 0, m)
        val mid = if (m % 2 == 1) scratch[m / 2].toDouble() else (scratch[m / 2 - 1] + scratch[m / 2]) / 2.0
        return mid / 1e6
    }
}
