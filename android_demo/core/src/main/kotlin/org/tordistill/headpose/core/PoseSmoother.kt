package org.tordistill.headpose.core

/**
 * Optional temporal smoothing of the live estimate: an exponential moving average per angle with
 * weight [alpha] on the new value (1 = no smoothing). Frames more than [maxGapNanos] apart (face lost,
 * app paused) restart from the new value instead of dragging the old one in.
 */
class PoseSmoother(private val alpha: Double = 0.5, private val maxGapNanos: Long = 500_000_000L) {
    init {
        require(alpha > 0.0 && alpha <= 1.0) { "alpha must be in (0, 1], got $alpha" }
    }

    private var last: HeadPose? = null
    private var lastTime: Long = 0

    fun update(pose: HeadPose, timeNanos: Long): HeadPose {
        val prev = last
        val out = if (prev == null || timeNanos - lastTime > maxGapNanos || timeNanos < lastTime) pose else HeadPose(
            prev.yaw + alpha * (pose.yaw - prev.yaw),
            prev.pitch + alpha * (pose.pitch - prev.pitch),
            prev.roll + alpha * (pose.roll - prev.roll),
        )
        last = out
        lastTime = timeNanos
        return out
    }

    fun reset() {
        last = null
    }
}
